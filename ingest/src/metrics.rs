//! Prometheus text exposition of ingest: counters, gauges and the WAL fsync latency histogram.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::store::IngestCounters;

/// Upper bounds (seconds) of the fsync latency buckets.
const BOUNDS: [f64; 12] = [
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 5.0,
];

/// A fixed-bucket latency histogram updated without locks.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; 12],
    count: AtomicU64,
    sum_us: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, d: Duration) {
        let s = d.as_secs_f64();
        if let Some(i) = BOUNDS.iter().position(|b| s <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_us
            .fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }

    fn render(&self, name: &str, help: &str, out: &mut String) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cum = 0;
        for (b, n) in BOUNDS.iter().zip(&self.buckets) {
            cum += n.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {cum}");
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let sum = self.sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {count}");
    }
}

/// Values read at scrape time.
pub struct Gauges {
    pub buffer_rows: u64,
    pub buffer_bytes: u64,
    pub memory_limit: u64,
    pub catalog_files: u64,
    pub catalog_bytes: u64,
    pub pending_deletes: u64,
    pub accepting: bool,
}

pub fn render(c: &IngestCounters, g: &Gauges) -> String {
    let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let counters: [(&str, &str, u64); 18] = [
        (
            "wiretrail_uploaded_files_total",
            "Files moved to object storage.",
            get(&c.uploaded_files),
        ),
        (
            "wiretrail_ingest_batches_total",
            "Batches stored (acknowledged after WAL fsync).",
            get(&c.batches),
        ),
        (
            "wiretrail_ingest_rows_total",
            "Entries stored; its rate is the ingest rate.",
            get(&c.rows),
        ),
        (
            "wiretrail_ingest_duplicate_batches_total",
            "Resent batches acknowledged without storing them again.",
            get(&c.duplicates),
        ),
        (
            "wiretrail_ingest_flushes_total",
            "Buffer flushes to Parquet.",
            get(&c.flushes),
        ),
        (
            "wiretrail_ingest_flush_errors_total",
            "Failed flushes (rows stay in the WAL and are retried).",
            get(&c.flush_errors),
        ),
        (
            "wiretrail_ingest_files_written_total",
            "Parquet files written by flushes.",
            get(&c.files_written),
        ),
        (
            "wiretrail_wal_torn_bytes_total",
            "Bytes of torn WAL tail truncated at start.",
            get(&c.wal_torn_bytes),
        ),
        (
            "wiretrail_ingest_throttled_appends_total",
            "Appends that waited because buffered entries were over the memory limit.",
            get(&c.throttled),
        ),
        (
            "wiretrail_compactions_total",
            "Compaction jobs run.",
            get(&c.compactions),
        ),
        (
            "wiretrail_compacted_files_total",
            "Files merged away by compaction.",
            get(&c.compacted_inputs),
        ),
        (
            "wiretrail_retention_dropped_hours_total",
            "Hours dropped by retention.",
            get(&c.retention_hours),
        ),
        (
            "wiretrail_retention_dropped_rows_total",
            "Entries dropped by retention.",
            get(&c.retention_rows),
        ),
        (
            "wiretrail_retention_dropped_bytes_total",
            "Parquet bytes dropped by retention.",
            get(&c.retention_bytes),
        ),
        (
            "wiretrail_orphan_files_removed_total",
            "Files left by an interrupted flush or compaction, removed at start.",
            get(&c.orphans_removed),
        ),
        (
            "wiretrail_obsolete_files_deleted_total",
            "Compaction inputs and expired files deleted after their grace period.",
            get(&c.files_deleted),
        ),
        (
            "wiretrail_ingest_rejected_batches_total{reason=\"busy\"}",
            "Batches refused (not acknowledged; the sender keeps and resends them), by reason.",
            get(&c.rejected_busy),
        ),
        (
            "wiretrail_ingest_rejected_batches_total{reason=\"io\"}",
            "",
            get(&c.rejected_io),
        ),
    ];
    let mut out = String::new();
    for (name, help, v) in counters {
        let base = name.split('{').next().unwrap_or(name);
        if !help.is_empty() {
            let _ = writeln!(out, "# HELP {base} {help}\n# TYPE {base} counter");
        }
        let _ = writeln!(out, "{name} {v}");
    }
    let _ = writeln!(
        out,
        "wiretrail_ingest_rejected_batches_total{{reason=\"bad_batch\"}} {}",
        get(&c.rejected_bad)
    );
    let gauges: [(&str, &str, u64); 8] = [
        (
            "wiretrail_buffer_rows",
            "Acknowledged entries not yet in Parquet (the queue depth).",
            g.buffer_rows,
        ),
        (
            "wiretrail_buffer_bytes",
            "Arrow memory of the buffered entries.",
            g.buffer_bytes,
        ),
        (
            "wiretrail_buffer_memory_limit_bytes",
            "Above this appends are slowed; above twice this refused.",
            g.memory_limit,
        ),
        (
            "wiretrail_catalog_files",
            "Parquet files in the catalog.",
            g.catalog_files,
        ),
        (
            "wiretrail_catalog_bytes",
            "Bytes of the Parquet files in the catalog.",
            g.catalog_bytes,
        ),
        (
            "wiretrail_compaction_backlog",
            "Compaction jobs waiting.",
            get(&c.compaction_backlog),
        ),
        (
            "wiretrail_pending_file_deletes",
            "Obsolete files waiting for their grace period.",
            g.pending_deletes,
        ),
        (
            "wiretrail_ingest_accepting",
            "1 while the WAL is writable; 0 after a write failed (disk full).",
            u64::from(g.accepting),
        ),
    ];
    for (name, help, v) in gauges {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
    }
    c.wal_fsync.render(
        "wiretrail_wal_fsync_seconds",
        "Time to write and fsync one WAL group commit.",
        &mut out,
    );
    out
}
