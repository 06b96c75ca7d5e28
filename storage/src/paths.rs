//! The on-disk layout (DESIGN.md "Storage layout"), in one place:
//!
//! ```text
//! <data>/LOCK                                   held by the process that owns the directory
//! <data>/wal/                                   write-ahead log segments (ingest)
//! <data>/entries/dt=YYYY-MM-DD/hh=HH/<level>-<min_ts>-<file_id>.parquet
//! <data>/entries/dt=YYYY-MM-DD/hh=HH/manifest.json  the hour's files (for `index rebuild`)
//! <data>/entries/pins.json                      snapshot pins (mirror of the catalog's)
//! <data>/index/                                 RocksDB catalog
//! ```
//! Hive-style `dt=`/`hh=` folders let DuckDB, Spark and Trino read the same tree.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Datelike, Timelike, Utc};

use crate::Micros;

pub const HOUR_US: Micros = 3_600_000_000;

#[derive(Clone, Debug)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        DataDir { root: root.into() }
    }
    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn lock_file(&self) -> PathBuf {
        self.root.join("LOCK")
    }
    pub fn wal(&self) -> PathBuf {
        self.root.join("wal")
    }
    pub fn entries(&self) -> PathBuf {
        self.root.join("entries")
    }
    pub fn index(&self) -> PathBuf {
        self.root.join("index")
    }
    /// Absolute path of a file from its catalog path (relative to `entries/`).
    pub fn entry_file(&self, rel: &str) -> PathBuf {
        self.entries().join(rel)
    }
}

/// Start of the hour that contains `ts`.
pub fn hour_start(ts: Micros) -> Micros {
    ts.div_euclid(HOUR_US) * HOUR_US
}

/// `dt=YYYY-MM-DD/hh=HH` for the hour containing `ts`.
pub fn partition(ts: Micros) -> String {
    let t: DateTime<Utc> = DateTime::from_timestamp_micros(ts).unwrap_or_default();
    format!(
        "dt={:04}-{:02}-{:02}/hh={:02}",
        t.year(),
        t.month(),
        t.day(),
        t.hour()
    )
}

/// `entries/`-relative folder of the hour starting at `hour`.
pub fn hour_folder(hour: Micros) -> String {
    partition(hour)
}

/// Parses `dt=YYYY-MM-DD/hh=HH` back into the start of its hour.
pub fn parse_partition(dt: &str, hh: &str) -> Option<Micros> {
    let day = chrono::NaiveDate::parse_from_str(dt.strip_prefix("dt=")?, "%Y-%m-%d").ok()?;
    let hour: u32 = hh.strip_prefix("hh=")?.parse().ok()?;
    let t = day.and_hms_opt(hour, 0, 0)?.and_utc();
    Some(t.timestamp_micros())
}

/// Catalog path (relative to `entries/`) of a new file.
pub fn entry_file_name(level: u8, min_ts: Micros, file_id: u64) -> String {
    format!(
        "{}/{level}-{min_ts}-{file_id:016x}.parquet",
        partition(min_ts)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_by_utc_hour() {
        // 2026-11-25T03:12:44Z
        let ts = 1_795_576_364_269_324;
        assert_eq!(partition(ts), "dt=2026-11-25/hh=03");
        assert_eq!(hour_start(ts) % HOUR_US, 0);
        assert_eq!(
            parse_partition("dt=2026-11-25", "hh=03"),
            Some(hour_start(ts))
        );
        assert!(entry_file_name(0, ts, 7).starts_with("dt=2026-11-25/hh=03/0-1795576364269324-"));
    }
}
