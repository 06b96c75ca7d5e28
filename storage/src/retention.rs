//! Retention: drops whole hours, oldest first, by age and when local files exceed a byte budget
//! or the disk holding the data dir passes a high watermark. An hour that overlaps a pin
//! (a snapshot) is never dropped, and neither is the current hour. The catalog change is one
//! `WriteBatch` (files, tags and the hour's rollups); the files are deleted by the caller after
//! the same grace period as compaction inputs.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use crate::manifest::write_manifest;
use crate::paths::{hour_start, DataDir, HOUR_US};
use crate::{Catalog, FileMeta, Micros, StorageError};

#[derive(Clone, Debug, Default)]
pub struct RetentionConfig {
    /// Drop hours that ended longer ago than this.
    pub max_age: Option<Duration>,
    /// Drop the oldest hours while local Parquet files take more than this.
    pub max_bytes: Option<u64>,
    /// Drop the oldest hours while the filesystem of the data dir is fuller than this (0..1).
    pub disk_high_watermark: Option<f64>,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct RetentionReport {
    /// Start of each dropped hour (µs).
    pub hours: Vec<Micros>,
    pub files: usize,
    pub rows: u64,
    pub bytes: u64,
    /// Hours that would have been dropped but are pinned by a snapshot.
    pub pinned_kept: usize,
    /// Why the hours went: "age", "max_bytes" or "disk_watermark".
    pub reasons: BTreeSet<&'static str>,
    #[serde(skip)]
    pub obsolete: Vec<PathBuf>,
    /// Object-storage paths of dropped remote files (the caller deletes them).
    #[serde(skip)]
    pub remote_obsolete: Vec<String>,
}

/// Used and total bytes of the filesystem holding `path`.
pub fn disk_usage(path: &Path) -> Option<(u64, u64)> {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).ok()?;
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated path and `s` a writable statvfs.
    if unsafe { libc::statvfs(c.as_ptr(), &mut s) } != 0 {
        return None;
    }
    let frsize = s.f_frsize as u64;
    let total = s.f_blocks as u64 * frsize;
    let avail = s.f_bavail as u64 * frsize;
    Some((total.saturating_sub(avail), total))
}

/// Applies `config` as of `now` (µs since the epoch).
pub fn apply_retention(
    dir: &DataDir,
    catalog: &Catalog,
    config: &RetentionConfig,
    now: Micros,
) -> Result<RetentionReport, StorageError> {
    let mut report = RetentionReport::default();
    let mut hours: BTreeMap<Micros, Vec<FileMeta>> = BTreeMap::new();
    for f in catalog.files()? {
        hours.entry(f.hour()).or_default().push(f);
    }
    let pins = catalog.pins()?;
    let pinned = |h: Micros| pins.iter().any(|p| p.from < h + HOUR_US && p.to > h);
    let current = hour_start(now);
    let local_bytes =
        |fs: &[FileMeta]| -> u64 { fs.iter().filter(|f| !f.remote).map(|f| f.bytes).sum() };

    let mut drop: BTreeMap<Micros, &'static str> = BTreeMap::new();
    if let Some(age) = config.max_age {
        let cutoff = now - age.as_micros() as Micros;
        for h in hours.keys().filter(|h| **h + HOUR_US <= cutoff) {
            drop.insert(*h, "age");
        }
    }
    let mut total: u64 = hours.values().map(|f| local_bytes(f)).sum();
    let mut budget: Vec<(u64, &'static str)> = Vec::new();
    if let Some(max) = config.max_bytes {
        budget.push((max, "max_bytes"));
    }
    if let Some(wm) = config.disk_high_watermark {
        if let Some((used, size)) = disk_usage(dir.root()) {
            let allowed = (wm.clamp(0.0, 1.0) * size as f64) as u64;
            // Free what is over the watermark from our own files.
            budget.push((
                total.saturating_sub(used.saturating_sub(allowed)),
                "disk_watermark",
            ));
        }
    }
    for (limit, reason) in budget {
        for (h, files) in &hours {
            if total <= limit {
                break;
            }
            if *h >= current || pinned(*h) {
                continue;
            }
            if drop.insert(*h, reason).is_none() {
                total = total.saturating_sub(local_bytes(files));
            }
        }
    }
    let mut files = Vec::new();
    let mut dropped_hours = Vec::new();
    for (h, reason) in drop {
        if h >= current {
            continue;
        }
        if pinned(h) {
            report.pinned_kept += 1;
            continue;
        }
        report.reasons.insert(reason);
        dropped_hours.push(h);
        files.extend(hours.remove(&h).unwrap_or_default());
    }
    if dropped_hours.is_empty() {
        return Ok(report);
    }
    catalog.drop_hours(&dropped_hours, &files)?;
    for h in &dropped_hours {
        write_manifest(dir, catalog, *h)?;
    }
    for f in &files {
        report.rows += f.rows;
        report.bytes += f.bytes;
        if f.remote {
            report.remote_obsolete.push(f.path.clone());
        } else {
            report.obsolete.push(dir.entry_file(&f.path));
        }
    }
    report.files = files.len();
    tracing::info!(hours = dropped_hours.len(), files = report.files, rows = report.rows, bytes = report.bytes,
        reasons = ?report.reasons, pinned_kept = report.pinned_kept, "retention dropped hours");
    report.hours = dropped_hours;
    Ok(report)
}
