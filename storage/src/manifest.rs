//! Per-hour `manifest.json` files next to the Parquet files, start-up repair, and
//! `wiretrail index rebuild`.
//!
//! The catalog is the source of truth while it exists; each hour's manifest mirrors the
//! catalog's records of that hour and is rewritten after every change to the hour (flush,
//! compaction, upload, retention). A crash between a catalog commit and the manifest write is
//! repaired on the next start, which rewrites every manifest from the catalog and deletes files
//! the catalog does not list (outputs of an interrupted flush, whose rows are still in the WAL;
//! outputs of an interrupted compaction, whose inputs are still registered; inputs of a finished
//! compaction whose deletion was still waiting). If the catalog itself is lost, the manifests
//! (and pins.json) rebuild it; files no manifest lists are reported and left alone.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ProjectionMask;
use serde::{Deserialize, Serialize};

use crate::error::IoContext;
use crate::facts;
use crate::paths::{hour_folder, parse_partition, DataDir, HOUR_US};
use crate::writer::sync_dir;
use crate::{Catalog, FileMeta, Micros, Pin, StorageError};

const MANIFEST: &str = "manifest.json";
const PINS: &str = "pins.json";

#[derive(Serialize, Deserialize)]
struct Manifest {
    version: u32,
    hour: Micros,
    files: Vec<FileMeta>,
}

/// Writes `bytes` to `path` atomically and durably.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StorageError> {
    let tmp = path.with_extension("json.tmp");
    let mut f = File::create(&tmp).at(&tmp)?;
    f.write_all(bytes).at(&tmp)?;
    f.sync_all().at(&tmp)?;
    drop(f);
    std::fs::rename(&tmp, path).at(path)?;
    sync_dir(path.parent().expect("manifests live in a folder"))
}

/// Rewrites the manifest of one hour from the catalog; removes it (and the empty folders) when
/// the hour has no files left.
pub fn write_manifest(dir: &DataDir, catalog: &Catalog, hour: Micros) -> Result<(), StorageError> {
    let _one_writer = catalog
        .manifest_lock
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    let files: Vec<FileMeta> = catalog
        .files_overlapping(hour, hour + HOUR_US)?
        .into_iter()
        .filter(|f| f.hour() == hour)
        .collect();
    let folder = dir.entries().join(hour_folder(hour));
    if files.is_empty() {
        let m = folder.join(MANIFEST);
        if m.exists() {
            std::fs::remove_file(&m).at(&m)?;
        }
        // Best effort: the folders go when nothing else is in them.
        if std::fs::remove_dir(&folder).is_ok() {
            if let Some(day) = folder.parent() {
                let _ = std::fs::remove_dir(day);
            }
        }
        return Ok(());
    }
    std::fs::create_dir_all(&folder).at(&folder)?;
    let m = Manifest {
        version: 1,
        hour,
        files,
    };
    write_atomic(
        &folder.join(MANIFEST),
        &serde_json::to_vec_pretty(&m).expect("manifest serializes"),
    )
}

/// Mirrors the catalog's pins into `entries/pins.json`, so a rebuilt index keeps them.
pub fn write_pins(dir: &DataDir, catalog: &Catalog) -> Result<(), StorageError> {
    let pins = catalog.pins()?;
    std::fs::create_dir_all(dir.entries()).at(&dir.entries())?;
    write_atomic(
        &dir.entries().join(PINS),
        &serde_json::to_vec_pretty(&pins).expect("pins serialize"),
    )
}

/// Hour folders under `entries/`: (hour start, path).
fn hour_folders(dir: &DataDir) -> Result<Vec<(Micros, PathBuf)>, StorageError> {
    let mut out = Vec::new();
    let root = dir.entries();
    let Ok(days) = std::fs::read_dir(&root) else {
        return Ok(out);
    };
    for day in days {
        let day = day.at(&root)?;
        let dt = day.file_name().to_string_lossy().into_owned();
        if !day.path().is_dir() || !dt.starts_with("dt=") {
            continue;
        }
        for h in std::fs::read_dir(day.path()).at(&day.path())? {
            let h = h.at(&day.path())?;
            let hh = h.file_name().to_string_lossy().into_owned();
            if let Some(hour) = parse_partition(&dt, &hh) {
                out.push((hour, h.path()));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// What start-up repair did.
#[derive(Debug, Default, Clone)]
pub struct RepairReport {
    pub manifests: usize,
    /// Files on disk the catalog does not list (deleted).
    pub orphans_removed: Vec<String>,
    /// The catalog was empty but manifests existed: it was rebuilt from them.
    pub rebuilt: Option<RebuildReport>,
}

/// Brings the data dir in line with the catalog at start (see the module doc). Call with the
/// data dir lock held and before the WAL is replayed.
pub fn repair(dir: &DataDir, catalog: &Catalog) -> Result<RepairReport, StorageError> {
    let mut report = RepairReport::default();
    let folders = hour_folders(dir)?;
    if catalog.is_empty()? && folders.iter().any(|(_, p)| p.join(MANIFEST).is_file()) {
        tracing::warn!(
            "the index is empty but entries/ has manifests: rebuilding the index from them"
        );
        report.rebuilt = Some(load_manifests(dir, catalog)?);
    }
    let known: BTreeSet<String> = catalog
        .files()?
        .into_iter()
        .filter(|f| !f.remote)
        .map(|f| f.path)
        .collect();
    let mut hours: BTreeSet<Micros> = catalog.files()?.iter().map(FileMeta::hour).collect();
    for (hour, folder) in &folders {
        hours.insert(*hour);
        let rel_folder = hour_folder(*hour);
        for e in std::fs::read_dir(folder).at(folder)? {
            let e = e.at(folder)?;
            let name = e.file_name().to_string_lossy().into_owned();
            let rel = format!("{rel_folder}/{name}");
            let stale =
                name.ends_with(".tmp") || (name.ends_with(".parquet") && !known.contains(&rel));
            if stale {
                std::fs::remove_file(e.path()).at(&e.path())?;
                if name.ends_with(".parquet") {
                    tracing::info!(file = %rel, "removed a file the catalog does not list (left by an interrupted flush or compaction)");
                    report.orphans_removed.push(rel);
                }
            }
        }
    }
    for hour in hours {
        write_manifest(dir, catalog, hour)?;
        report.manifests += 1;
    }
    Ok(report)
}

/// What `wiretrail index rebuild` found.
#[derive(Debug, Default, Clone, Serialize)]
pub struct RebuildReport {
    pub hours: usize,
    pub files: usize,
    pub rows: u64,
    pub pins: usize,
    /// Listed in a manifest but missing or unreadable (not registered).
    pub missing: Vec<String>,
    /// Parquet files no manifest lists (left alone).
    pub unlisted: Vec<String>,
}

/// Rebuilds the catalog of `dir` from its manifests, pins.json and the files' footers. The old
/// index is kept as `index.old-<unix secs>`. Call with the data dir lock held.
pub fn rebuild_index(dir: &DataDir) -> Result<RebuildReport, StorageError> {
    let index = dir.index();
    if index.exists() {
        let secs = chrono::Utc::now().timestamp();
        let old = dir.root().join(format!("index.old-{secs}"));
        std::fs::rename(&index, &old).at(&old)?;
        tracing::info!(old = %old.display(), "kept the previous index");
    }
    let catalog = Catalog::open(&index)?;
    let report = load_manifests(dir, &catalog)?;
    for (hour, _) in hour_folders(dir)? {
        write_manifest(dir, &catalog, hour)?;
    }
    Ok(report)
}

/// Registers every file the manifests list (after checking its footer), with tags and
/// rollups recomputed from the file, and the pins of pins.json.
fn load_manifests(dir: &DataDir, catalog: &Catalog) -> Result<RebuildReport, StorageError> {
    let mut report = RebuildReport::default();
    for (hour, folder) in hour_folders(dir)? {
        let mpath = folder.join(MANIFEST);
        let listed: Vec<FileMeta> = match std::fs::read(&mpath) {
            Ok(b) => {
                serde_json::from_slice::<Manifest>(&b)
                    .map_err(|e| StorageError::CorruptCatalog {
                        key: mpath.display().to_string(),
                        reason: e.to_string(),
                    })?
                    .files
            }
            Err(_) => Vec::new(),
        };
        let names: BTreeSet<String> = listed.iter().map(|f| f.path.clone()).collect();
        for e in std::fs::read_dir(&folder).at(&folder)? {
            let name = e.at(&folder)?.file_name().to_string_lossy().into_owned();
            let rel = format!("{}/{name}", hour_folder(hour));
            if name.ends_with(".parquet") && !names.contains(&rel) {
                report.unlisted.push(rel);
            }
        }
        let mut files = Vec::new();
        let mut rollups = HashMap::new();
        let mut seqs: BTreeMap<String, u64> = BTreeMap::new();
        for f in listed {
            if f.remote {
                // Lives in object storage; registered as listed.
                files.push(f);
                continue;
            }
            match read_back(&dir.entry_file(&f.path)) {
                Ok((rows, r)) if rows == f.rows => {
                    facts::merge_rollups(&mut rollups, r);
                    catalog.bump_file_id(f.file_id);
                    for (agent, (_, hi)) in &f.sources {
                        let e = seqs.entry(agent.clone()).or_insert(*hi);
                        *e = (*e).max(*hi);
                    }
                    report.rows += f.rows;
                    files.push(f);
                }
                Ok((rows, _)) => {
                    tracing::warn!(file = %f.path, rows, listed = f.rows, "row count differs from the manifest; not registered");
                    report.missing.push(f.path);
                }
                Err(e) => {
                    tracing::warn!(file = %f.path, error = %e, "unreadable; not registered");
                    report.missing.push(f.path);
                }
            }
        }
        if !files.is_empty() {
            report.hours += 1;
            report.files += files.len();
            catalog.commit_flush(&files, &seqs, &rollups)?;
        }
    }
    if let Ok(b) = std::fs::read(dir.entries().join(PINS)) {
        let pins: Vec<Pin> =
            serde_json::from_slice(&b).map_err(|e| StorageError::CorruptCatalog {
                key: "entries/pins.json".into(),
                reason: e.to_string(),
            })?;
        for p in &pins {
            catalog.put_pin(p)?;
        }
        report.pins = pins.len();
    }
    Ok(report)
}

/// Reads a file's rows back (the columns rollups need): its row count and rollups.
fn read_back(
    path: &Path,
) -> Result<
    (
        u64,
        HashMap<crate::rollup::RollupKey, crate::rollup::Rollup>,
    ),
    StorageError,
> {
    let perr = |source| StorageError::Parquet {
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).at(path)?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(perr)?;
    let names = facts::ROLLUP_COLUMNS;
    let schema = builder.parquet_schema();
    let idx: Vec<usize> = (0..schema.num_columns())
        .filter(|i| {
            let p = schema.column(*i).path().parts()[0].clone();
            names.contains(&p.as_str())
        })
        .collect();
    let mask = ProjectionMask::leaves(schema, idx);
    let reader = builder.with_projection(mask).build().map_err(perr)?;
    let mut rows = 0u64;
    let mut rollups = HashMap::new();
    for b in reader {
        let b = b?;
        rows += b.num_rows() as u64;
        facts::merge_rollups(&mut rollups, facts::rollups(&b));
    }
    Ok((rows, rollups))
}
