//! The bundle on disk: Parquet parts, HAR, PCAP, a README and `manifest.json` (window, KFL,
//! counts per protocol, SHA-256 and size of every file), itself hashed in `manifest.sha256` so
//! that no byte of the bundle can change unnoticed. Also: verification, import into a data dir
//! through the normal ingest path, and the tar form used over HTTP.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use arrow::array::{AsArray, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::{DataType, TimestampMicrosecondType};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::{ArrowWriter, ProjectionMask};
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::SortingColumn;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use wiretrail_ingest::Ingest;
use wiretrail_proto::schema::{entry_schema, PROTOCOL, TS};
use wiretrail_storage::Pin;

use super::har::{HarSummary, HarWriter};
use super::pcap::{PcapBuilder, PcapSummary};
use super::ExportFormat;
use crate::time::format_ts;
use crate::{batch_to_json, QueryError};

pub const MANIFEST_FILE: &str = "manifest.json";
pub const MANIFEST_SUM: &str = "manifest.sha256";
pub const README_FILE: &str = "README.txt";
pub const HAR_FILE: &str = "entries.har";
pub const PCAP_FILE: &str = "traffic.pcap";
const PARTS_DIR: &str = "entries";
/// Rows per Parquet part, so no single file of a large snapshot is unwieldy.
const ROWS_PER_PART: usize = 1 << 20;
pub const FORMAT: &str = "wiretrail-snapshot/1";
/// Buffered rows after which an import flushes to Parquet (keeps memory bounded).
const IMPORT_FLUSH_ROWS: usize = 256 * 1024;

fn io_err(path: &Path, what: &str, e: impl std::fmt::Display) -> QueryError {
    QueryError::Io(format!("{what} {}: {e}", path.display()))
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FileRecord {
    /// Relative to the bundle directory, `/`-separated.
    pub path: String,
    pub sha256: String,
    pub bytes: u64,
    /// Entries in a Parquet part.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Window {
    pub from: String,
    pub to: String,
    pub from_us: i64,
    pub to_us: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub name: String,
    pub wiretrail_version: String,
    pub created: String,
    pub created_us: i64,
    pub exported: String,
    /// The pinned window, `[from, to)`.
    pub window: Window,
    pub kfl: String,
    pub nodes: Vec<String>,
    pub entries: u64,
    pub first_ts: Option<String>,
    pub last_ts: Option<String>,
    pub counts: BTreeMap<String, u64>,
    pub har: Option<HarSummary>,
    pub pcap: Option<PcapSummary>,
    pub files: Vec<FileRecord>,
}

/// What an export wrote.
#[derive(Debug, Clone, Serialize)]
pub struct ExportReport {
    pub entries: u64,
    pub counts: BTreeMap<String, u64>,
    /// Relative paths of the files written.
    pub files: Vec<String>,
    pub manifest: Option<Manifest>,
}

pub(crate) fn sha256_file(path: &Path) -> std::io::Result<(String, u64)> {
    let mut f = File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut n = 0u64;
    loop {
        let k = f.read(&mut buf)?;
        if k == 0 {
            break;
        }
        h.update(&buf[..k]);
        n += k as u64;
    }
    Ok((hex(&h.finalize()), n))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn parquet_props() -> WriterProperties {
    let ts_idx = entry_schema()
        .index_of(TS)
        .expect("ts is in the entry schema");
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).unwrap_or_default()))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_sorting_columns(Some(vec![SortingColumn {
            column_idx: ts_idx as i32,
            descending: false,
            nulls_first: false,
        }]))
        .set_created_by(format!("wiretrail {}", env!("CARGO_PKG_VERSION")))
        .build()
}

/// A batch with exactly the entry schema (Parquet round trips keep the types; casting covers
/// a reader that returns plain strings for dictionaries).
fn conform(batch: &RecordBatch) -> Result<RecordBatch, QueryError> {
    let schema = entry_schema();
    if batch.schema().fields() == schema.fields() {
        return Ok(batch.clone());
    }
    let mut cols = Vec::with_capacity(schema.fields().len());
    for f in schema.fields() {
        let c = batch.column_by_name(f.name()).ok_or_else(|| {
            QueryError::BadRequest(format!("the entries lack the column {}", f.name()))
        })?;
        cols.push(if c.data_type() == f.data_type() {
            c.clone()
        } else {
            cast(c, f.data_type())?
        });
    }
    Ok(RecordBatch::try_new(schema, cols)?)
}

fn protocol_counts(
    batch: &RecordBatch,
    counts: &mut BTreeMap<String, u64>,
) -> Result<(), QueryError> {
    let Some(c) = batch.column_by_name(PROTOCOL) else {
        return Ok(());
    };
    let s = cast(c, &DataType::Utf8)?;
    for v in s.as_string::<i32>().iter() {
        *counts.entry(v.unwrap_or("").to_string()).or_default() += 1;
    }
    Ok(())
}

/// Streams the entries of an export into the bundle's files.
pub(crate) struct BundleWriter {
    out: PathBuf,
    format: ExportFormat,
    pin: Pin,
    kfl: String,
    nodes: Vec<String>,
    parquet: Option<(ArrowWriter<File>, String, u64)>,
    parts: Vec<(String, u64)>,
    har: Option<HarWriter>,
    pcap: Option<PcapBuilder>,
    entries: u64,
    counts: BTreeMap<String, u64>,
    first_ts: Option<i64>,
    last_ts: Option<i64>,
}

impl BundleWriter {
    /// `out` must not exist or be empty: a bundle never mixes with other files.
    pub fn create(
        out: &Path,
        format: ExportFormat,
        pin: &Pin,
        kfl: &str,
        nodes: &[String],
    ) -> Result<Self, QueryError> {
        ensure_empty_dir(out)?;
        let har = match format {
            ExportFormat::Bundle | ExportFormat::Har => {
                Some(HarWriter::create(&out.join(HAR_FILE))?)
            }
            ExportFormat::Pcap => None,
        };
        let pcap = match format {
            ExportFormat::Bundle | ExportFormat::Pcap => Some(PcapBuilder::default()),
            ExportFormat::Har => None,
        };
        Ok(BundleWriter {
            out: out.to_path_buf(),
            format,
            pin: pin.clone(),
            kfl: kfl.to_string(),
            nodes: nodes.to_vec(),
            parquet: None,
            parts: Vec::new(),
            har,
            pcap,
            entries: 0,
            counts: BTreeMap::new(),
            first_ts: None,
            last_ts: None,
        })
    }

    fn open_part(&mut self) -> Result<(), QueryError> {
        let rel = format!("{PARTS_DIR}/part-{:05}.parquet", self.parts.len());
        let path = self.out.join(&rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| io_err(parent, "cannot create", e))?;
        }
        let f = File::create(&path).map_err(|e| io_err(&path, "cannot create", e))?;
        let w = ArrowWriter::try_new(f, entry_schema(), Some(parquet_props()))?;
        self.parquet = Some((w, rel, 0));
        Ok(())
    }

    fn close_part(&mut self) -> Result<(), QueryError> {
        if let Some((w, rel, rows)) = self.parquet.take() {
            w.close()?;
            self.parts.push((rel, rows));
        }
        Ok(())
    }

    pub fn write(&mut self, batch: &RecordBatch) -> Result<(), QueryError> {
        let batch = conform(batch)?;
        self.entries += batch.num_rows() as u64;
        protocol_counts(&batch, &mut self.counts)?;
        if let Some(ts) = batch.column_by_name(TS) {
            let ts = ts.as_primitive::<TimestampMicrosecondType>();
            for t in ts.iter().flatten() {
                self.first_ts = Some(self.first_ts.map_or(t, |f| f.min(t)));
                self.last_ts = Some(self.last_ts.map_or(t, |l| l.max(t)));
            }
        }
        if self.format == ExportFormat::Bundle {
            if self.parquet.is_none() {
                self.open_part()?;
            }
            if let Some((w, _, rows)) = self.parquet.as_mut() {
                w.write(&batch)?;
                *rows += batch.num_rows() as u64;
                if *rows as usize >= ROWS_PER_PART {
                    self.close_part()?;
                }
            }
        }
        if self.har.is_some() || self.pcap.is_some() {
            for e in batch_to_json(&batch, true) {
                if let Some(h) = self.har.as_mut() {
                    h.add(&e)?;
                }
                if let Some(p) = self.pcap.as_mut() {
                    p.add(&e);
                }
            }
        }
        Ok(())
    }

    pub fn finish(mut self) -> Result<ExportReport, QueryError> {
        if self.format == ExportFormat::Bundle && self.parts.is_empty() && self.parquet.is_none() {
            // An empty window still yields a readable (empty) part.
            self.open_part()?;
        }
        self.close_part()?;
        let mut files: Vec<String> = self.parts.iter().map(|(p, _)| p.clone()).collect();
        let har = match self.har.take() {
            Some(h) => {
                files.push(HAR_FILE.into());
                Some(h.finish()?)
            }
            None => None,
        };
        let pcap = match self.pcap.take() {
            Some(p) => {
                files.push(PCAP_FILE.into());
                Some(p.write(&self.out.join(PCAP_FILE))?)
            }
            None => None,
        };
        let mut report = ExportReport {
            entries: self.entries,
            counts: self.counts.clone(),
            files,
            manifest: None,
        };
        if self.format != ExportFormat::Bundle {
            return Ok(report);
        }
        let readme = self.out.join(README_FILE);
        std::fs::write(&readme, readme_text(&self.pin.name))
            .map_err(|e| io_err(&readme, "cannot write", e))?;
        report.files.push(README_FILE.into());
        let rows: BTreeMap<&str, u64> = self.parts.iter().map(|(p, r)| (p.as_str(), *r)).collect();
        let mut records = Vec::new();
        for rel in &report.files {
            let path = self.out.join(rel);
            let (sha256, bytes) =
                sha256_file(&path).map_err(|e| io_err(&path, "cannot read", e))?;
            records.push(FileRecord {
                path: rel.clone(),
                sha256,
                bytes,
                rows: rows.get(rel.as_str()).copied(),
            });
        }
        let manifest = Manifest {
            format: FORMAT.into(),
            name: self.pin.name.clone(),
            wiretrail_version: env!("CARGO_PKG_VERSION").into(),
            created: format_ts(self.pin.created_us),
            created_us: self.pin.created_us,
            exported: format_ts(chrono::Utc::now().timestamp_micros()),
            window: Window {
                from: format_ts(self.pin.from),
                to: format_ts(self.pin.to),
                from_us: self.pin.from,
                to_us: self.pin.to,
            },
            kfl: self.kfl.clone(),
            nodes: self.nodes.clone(),
            entries: self.entries,
            first_ts: self.first_ts.map(format_ts),
            last_ts: self.last_ts.map(format_ts),
            counts: self.counts.clone(),
            har,
            pcap,
            files: records,
        };
        let text = serde_json::to_vec_pretty(&manifest).expect("manifest serializes");
        let mpath = self.out.join(MANIFEST_FILE);
        std::fs::write(&mpath, &text).map_err(|e| io_err(&mpath, "cannot write", e))?;
        let sum = format!("{}  {MANIFEST_FILE}\n", hex(&Sha256::digest(&text)));
        let spath = self.out.join(MANIFEST_SUM);
        std::fs::write(&spath, sum).map_err(|e| io_err(&spath, "cannot write", e))?;
        report.files.push(MANIFEST_FILE.into());
        report.files.push(MANIFEST_SUM.into());
        report.manifest = Some(manifest);
        Ok(report)
    }
}

fn readme_text(name: &str) -> String {
    format!(
        "wiretrail snapshot {name}\n\
         \n\
         manifest.json     window, KFL and nodes the snapshot was taken with, entry counts per\n\
         \x20                 protocol, and the SHA-256 and size of every other file\n\
         manifest.sha256   SHA-256 of manifest.json (sha256sum -c manifest.sha256)\n\
         entries/*.parquet the entries (wiretrail's entry schema; DuckDB, Spark, pyarrow read it)\n\
         entries.har       HAR 1.2 of the HTTP-family entries (http, http2, graphql, grpc)\n\
         traffic.pcap      the HTTP/1 exchanges rebuilt as TCP packets (see below)\n\
         \n\
         Check it:  wiretrail snapshot verify DIR   (fails on any changed byte, naming the file)\n\
         Load it:   wiretrail snapshot import --data DATA_DIR DIR\n\
         \n\
         traffic.pcap is rebuilt from what wiretrail stores, not copied from the wire: per TCP\n\
         connection a SYN/SYN-ACK/ACK, each request at its captured time, each response at\n\
         request time + elapsed, then FIN. Bodies are stored de-chunked and decompressed, so\n\
         they are sent with Content-Length and without Transfer-Encoding/Content-Encoding;\n\
         bodies cut at the capture's body cap stay cut. Handshake and FIN times are\n\
         synthesized one microsecond apart. Entries of other protocols (HTTP/2, gRPC, DNS,\n\
         Kafka, ...) are not in the PCAP because their raw payloads are not stored; manifest.json\n\
         counts them under pcap.left_out.\n"
    )
}

fn ensure_empty_dir(dir: &Path) -> Result<(), QueryError> {
    match std::fs::read_dir(dir) {
        Ok(mut rd) => {
            if rd.next().is_some() {
                return Err(QueryError::BadRequest(format!(
                    "{} is not empty: export into a new or empty directory",
                    dir.display()
                )));
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir).map_err(|e| io_err(dir, "cannot create", e))
        }
        Err(e) => Err(io_err(dir, "cannot read", e)),
    }
}

/// The outcome of `snapshot verify`: `problems` names the file of every mismatch.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    pub ok: bool,
    pub name: Option<String>,
    pub files_checked: usize,
    pub entries: u64,
    pub counts: BTreeMap<String, u64>,
    pub problems: Vec<String>,
}

fn safe_relative(p: &str) -> bool {
    !p.is_empty()
        && Path::new(p)
            .components()
            .all(|c| matches!(c, Component::Normal(_)))
}

fn files_under(root: &Path, dir: &Path, out: &mut Vec<String>) -> std::io::Result<()> {
    for e in std::fs::read_dir(dir)? {
        let p = e?.path();
        if p.is_dir() {
            files_under(root, &p, out)?;
        } else if let Ok(rel) = p.strip_prefix(root) {
            let parts: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            out.push(parts.join("/"));
        }
    }
    Ok(())
}

/// Reads and checks the manifest's own hash.
fn read_manifest(dir: &Path, problems: &mut Vec<String>) -> Option<Manifest> {
    let mpath = dir.join(MANIFEST_FILE);
    let text = match std::fs::read(&mpath) {
        Ok(t) => t,
        Err(e) => {
            problems.push(format!("{MANIFEST_FILE}: cannot read: {e}"));
            return None;
        }
    };
    match std::fs::read_to_string(dir.join(MANIFEST_SUM)) {
        Ok(sum) => {
            let want = sum
                .split_whitespace()
                .next()
                .unwrap_or("")
                .to_ascii_lowercase();
            let got = hex(&Sha256::digest(&text));
            if want != got {
                problems.push(format!(
                    "{MANIFEST_FILE}: SHA-256 {got} does not match {MANIFEST_SUM} ({want}): the manifest was changed"
                ));
            }
        }
        Err(e) => problems.push(format!("{MANIFEST_SUM}: cannot read: {e}")),
    }
    match serde_json::from_slice::<Manifest>(&text) {
        Ok(m) if m.format == FORMAT => Some(m),
        Ok(m) => {
            problems.push(format!(
                "{MANIFEST_FILE}: format {:?} is not {FORMAT:?}",
                m.format
            ));
            None
        }
        Err(e) => {
            problems.push(format!("{MANIFEST_FILE}: not a snapshot manifest: {e}"));
            None
        }
    }
}

/// Checks every file's size and SHA-256 against the manifest, the manifest against
/// `manifest.sha256`, that no file is unlisted, and that the entry counts (total, per part,
/// per protocol), the HAR entries and the PCAP packets are what the manifest says.
pub fn verify(dir: &Path) -> Result<VerifyReport, QueryError> {
    if !dir.is_dir() {
        return Err(QueryError::BadRequest(format!(
            "{} is not a directory",
            dir.display()
        )));
    }
    let mut problems = Vec::new();
    let mut report = VerifyReport {
        ok: false,
        name: None,
        files_checked: 0,
        entries: 0,
        counts: BTreeMap::new(),
        problems: Vec::new(),
    };
    let Some(m) = read_manifest(dir, &mut problems) else {
        report.problems = problems;
        return Ok(report);
    };
    report.name = Some(m.name.clone());
    let mut intact = BTreeSet::new();
    for f in &m.files {
        if !safe_relative(&f.path) {
            problems.push(format!("{}: not a path inside the bundle", f.path));
            continue;
        }
        let path = dir.join(&f.path);
        match sha256_file(&path) {
            Ok((sha, bytes)) => {
                report.files_checked += 1;
                if bytes != f.bytes {
                    problems.push(format!(
                        "{}: {bytes} bytes, the manifest says {}",
                        f.path, f.bytes
                    ));
                } else if sha != f.sha256 {
                    problems.push(format!(
                        "{}: SHA-256 {sha} does not match the manifest ({}): the file was changed",
                        f.path, f.sha256
                    ));
                } else {
                    intact.insert(f.path.clone());
                }
            }
            Err(e) => problems.push(format!("{}: cannot read: {e}", f.path)),
        }
    }
    let mut present = Vec::new();
    files_under(dir, dir, &mut present).map_err(|e| io_err(dir, "cannot list", e))?;
    let listed: BTreeSet<&str> = m.files.iter().map(|f| f.path.as_str()).collect();
    for p in &present {
        if p != MANIFEST_FILE && p != MANIFEST_SUM && !listed.contains(p.as_str()) {
            problems.push(format!("{p}: not listed in {MANIFEST_FILE}"));
        }
    }
    // Counts, from the intact files only (a changed file is already reported).
    let mut total = 0u64;
    let mut counts = BTreeMap::new();
    let mut all_parts_intact = true;
    for f in m.files.iter().filter(|f| f.path.ends_with(".parquet")) {
        if !intact.contains(&f.path) {
            all_parts_intact = false;
            continue;
        }
        match part_counts(&dir.join(&f.path), &mut counts) {
            Ok(rows) => {
                total += rows;
                if f.rows.is_some_and(|r| r != rows) {
                    problems.push(format!(
                        "{}: {rows} entries, the manifest says {}",
                        f.path,
                        f.rows.unwrap_or_default()
                    ));
                }
            }
            Err(e) => problems.push(format!("{}: unreadable Parquet: {e}", f.path)),
        }
    }
    if all_parts_intact {
        if total != m.entries {
            problems.push(format!(
                "entries/: {total} entries in the Parquet parts, the manifest says {}",
                m.entries
            ));
        }
        if counts != m.counts {
            problems.push(format!(
                "entries/: entries per protocol {counts:?}, the manifest says {:?}",
                m.counts
            ));
        }
    }
    if let Some(h) = &m.har {
        if intact.contains(&h.file) {
            match super::har::count_entries(&dir.join(&h.file)) {
                Ok(n) if n == h.entries => {}
                Ok(n) => problems.push(format!(
                    "{}: {n} entries, the manifest says {}",
                    h.file, h.entries
                )),
                Err(e) => problems.push(format!("{}: {e}", h.file)),
            }
        }
    }
    if let Some(p) = &m.pcap {
        if intact.contains(&p.file) {
            match super::pcap::count_packets(&dir.join(&p.file)) {
                Ok(n) if n == p.packets => {}
                Ok(n) => problems.push(format!(
                    "{}: {n} packets, the manifest says {}",
                    p.file, p.packets
                )),
                Err(e) => problems.push(format!("{}: {e}", p.file)),
            }
        }
    }
    report.entries = total;
    report.counts = counts;
    report.ok = problems.is_empty();
    report.problems = problems;
    Ok(report)
}

/// Rows of one Parquet part, adding its protocols to `counts`.
fn part_counts(path: &Path, counts: &mut BTreeMap<String, u64>) -> Result<u64, QueryError> {
    let f = File::open(path).map_err(|e| io_err(path, "cannot open", e))?;
    let b = ParquetRecordBatchReaderBuilder::try_new(f)?;
    let idx = b
        .schema()
        .index_of(PROTOCOL)
        .map_err(|_| QueryError::BadRequest("no protocol column".into()))?;
    let mask = ProjectionMask::roots(b.parquet_schema(), [idx]);
    let mut rows = 0u64;
    for batch in b.with_projection(mask).build()? {
        let batch = batch?;
        rows += batch.num_rows() as u64;
        protocol_counts(&batch, counts)?;
    }
    Ok(rows)
}

fn read_verified_manifest(dir: &Path) -> Result<Manifest, QueryError> {
    let report = verify(dir)?;
    if !report.ok {
        return Err(QueryError::BadRequest(format!(
            "{} failed verification, not importing it: {}",
            dir.display(),
            report.problems.join("; ")
        )));
    }
    let mut problems = Vec::new();
    read_manifest(dir, &mut problems).ok_or_else(|| QueryError::BadRequest(problems.join("; ")))
}

#[derive(Debug, Clone, Serialize)]
pub struct ImportReport {
    pub name: String,
    pub entries: u64,
    /// Batches already stored by an earlier import of the same bundle (not stored twice).
    pub duplicate_batches: u64,
    /// Whether the snapshot was pinned in the target (false: a pin of that name existed).
    pub pinned: bool,
}

/// Imports a verified bundle: its Parquet rows go through the ingest path (WAL, buffer,
/// Parquet, catalog, tags, rollups) as agent `snapshot:<name>`, keeping their ids, and the
/// window is pinned under the snapshot's name. Importing the same bundle twice stores it once.
pub async fn import_bundle(ingest: &Arc<Ingest>, dir: &Path) -> Result<ImportReport, QueryError> {
    let m = read_verified_manifest(dir)?;
    let agent = format!("snapshot:{}", m.name);
    let mut seq = 0u64;
    let mut entries = 0u64;
    let mut duplicates = 0u64;
    for f in m.files.iter().filter(|f| f.path.ends_with(".parquet")) {
        let path = dir.join(&f.path);
        let file = File::open(&path).map_err(|e| io_err(&path, "cannot open", e))?;
        let reader = ParquetRecordBatchReaderBuilder::try_new(file)?
            .with_batch_size(8192)
            .build()?;
        for batch in reader {
            let batch = conform(&batch?)?;
            if batch.num_rows() == 0 {
                continue;
            }
            seq += 1;
            let a = ingest.append(&agent, seq, batch).await?;
            if a.duplicate {
                duplicates += 1;
            } else {
                entries += a.rows as u64;
            }
            if ingest.buffered_rows().await >= IMPORT_FLUSH_ROWS {
                ingest.flush().await?;
            }
        }
    }
    ingest.flush().await?;
    let exists = ingest
        .catalog()
        .pins()
        .map_err(wiretrail_ingest::IngestError::from)?
        .iter()
        .any(|p| p.name == m.name);
    if !exists {
        ingest.pin(&Pin {
            name: m.name.clone(),
            from: m.window.from_us,
            to: m.window.to_us,
            query: serde_json::json!({
                "kfl": m.kfl,
                "nodes": m.nodes,
                "imported": {"exported": m.exported, "entries": m.entries, "wiretrail_version": m.wiretrail_version},
            }),
            created_us: m.created_us,
        })?;
    }
    Ok(ImportReport {
        name: m.name,
        entries,
        duplicate_batches: duplicates,
        pinned: !exists,
    })
}

/// Writes the files of `dir` as a tar archive (paths relative to `dir`, sorted).
pub fn write_tar<W: Write>(dir: &Path, w: W) -> Result<W, QueryError> {
    let mut files = Vec::new();
    files_under(dir, dir, &mut files).map_err(|e| io_err(dir, "cannot list", e))?;
    files.sort();
    let mut b = tar::Builder::new(w);
    b.mode(tar::HeaderMode::Deterministic);
    for rel in &files {
        let path = dir.join(rel);
        b.append_path_with_name(&path, rel)
            .map_err(|e| io_err(&path, "cannot archive", e))?;
    }
    b.into_inner().map_err(|e| io_err(dir, "cannot archive", e))
}

/// Unpacks a bundle tar into the new or empty directory `out`; entries that would land
/// outside it are refused.
pub fn unpack_bundle<R: Read>(r: R, out: &Path) -> Result<(), QueryError> {
    ensure_empty_dir(out)?;
    let mut a = tar::Archive::new(r);
    for entry in a
        .entries()
        .map_err(|e| io_err(out, "cannot read the archive for", e))?
    {
        let mut entry = entry.map_err(|e| io_err(out, "cannot read the archive for", e))?;
        let name = entry
            .path()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        let inside = entry
            .unpack_in(out)
            .map_err(|e| io_err(out, "cannot unpack into", e))?;
        if !inside {
            return Err(QueryError::BadRequest(format!(
                "the archive entry {name:?} points outside the bundle"
            )));
        }
    }
    Ok(())
}
