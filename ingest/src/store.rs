//! [`Ingest`]: the write path of one data directory — dedupe, WAL, queryable buffer, flush to
//! Parquet + catalog — and the consistent snapshot that queries read.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arrow::record_batch::RecordBatch;
use tokio::sync::{Mutex, Notify, RwLock};
use wiretrail_proto::schema::check_schema;
use wiretrail_storage::paths::DataDir;
use wiretrail_storage::{Catalog, DataDirLock, FileMeta, Micros, ParquetSettings};

use crate::buffer::{Buffer, Buffered};
use crate::wal::{self, Wal};
use crate::IngestError;

/// Settings of the ingest service (shown by `wiretrail up --help`).
#[derive(Clone, Debug)]
pub struct IngestConfig {
    /// Flush the buffer to Parquet at least this often.
    pub flush_interval: Duration,
    /// Flush as soon as the buffer holds this many rows.
    pub flush_rows: usize,
    /// Flush as soon as the buffer holds this many bytes of Arrow memory.
    pub flush_bytes: usize,
    pub parquet: ParquetSettings,
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            flush_interval: Duration::from_secs(60),
            flush_rows: 1_000_000,
            flush_bytes: 512 << 20,
            parquet: ParquetSettings::default(),
        }
    }
}

/// What a query reads: the files and the buffered batches of a window, taken together so that
/// no row is seen twice or missed while a flush moves rows from the buffer into a file.
pub struct Snapshot {
    pub dir: DataDir,
    pub files: Vec<FileMeta>,
    /// Files in the catalog that the window excluded.
    pub files_pruned: usize,
    pub buffered: Vec<RecordBatch>,
}

/// Outcome of one append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub rows: usize,
    pub duplicate: bool,
}

#[derive(Debug, Default)]
pub struct IngestCounters {
    pub batches: AtomicU64,
    pub rows: AtomicU64,
    pub duplicates: AtomicU64,
    pub flushes: AtomicU64,
    pub files_written: AtomicU64,
    pub wal_torn_bytes: AtomicU64,
}

pub struct Ingest {
    dir: DataDir,
    catalog: Arc<Catalog>,
    wal: Wal,
    config: IngestConfig,
    buffer: RwLock<Buffer>,
    /// Appenders hold it shared across WAL append + buffer insert; a flush holds it exclusively
    /// while it rotates the WAL, so no acknowledged batch can sit in a segment the flush deletes
    /// without being in the flushed set.
    append_gate: RwLock<()>,
    seqs: Mutex<HashMap<String, u64>>,
    flush_lock: Mutex<()>,
    flush_wanted: Notify,
    pub counters: IngestCounters,
    _lock: DataDirLock,
}

impl Ingest {
    /// Opens (or creates) a data directory: takes its lock, opens the catalog and replays the WAL.
    pub async fn open(
        root: impl Into<std::path::PathBuf>,
        config: IngestConfig,
    ) -> Result<Arc<Self>, IngestError> {
        let dir = DataDir::new(root);
        let lock = DataDirLock::acquire(&dir)?;
        let catalog = Arc::new(Catalog::open(&dir.index())?);
        let mut seqs = catalog.agent_seqs()?;
        let (records, stats) = wal::replay(&dir.wal())?;
        let mut buffer = Buffer::default();
        let mut replayed = 0usize;
        for r in records {
            // Already in Parquet (crash between catalog commit and WAL deletion), or a second
            // copy of a batch whose first append failed: skip.
            if seqs.get(&r.agent).is_some_and(|last| *last >= r.seq) {
                continue;
            }
            seqs.insert(r.agent.clone(), r.seq);
            replayed += r.batch.num_rows();
            buffer.push(Buffered::new(r.segment, r.agent, r.seq, r.batch));
        }
        if stats.records > 0 || stats.torn_bytes > 0 {
            tracing::info!(
                segments = stats.segments,
                records = stats.records,
                rows = replayed,
                torn_bytes = stats.torn_bytes,
                "replayed write-ahead log"
            );
        }
        if buffer.rows() == 0 && stats.segments > 0 {
            // Everything in the old segments is already in Parquet (or they are empty).
            wal::delete_segments(&dir.wal())?;
        }
        let wal = Wal::start(&dir.wal())?;
        let ingest = Arc::new(Ingest {
            dir,
            catalog,
            wal,
            config,
            buffer: RwLock::new(buffer),
            append_gate: RwLock::new(()),
            seqs: Mutex::new(seqs),
            flush_lock: Mutex::new(()),
            flush_wanted: Notify::new(),
            counters: IngestCounters::default(),
            _lock: lock,
        });
        ingest
            .counters
            .wal_torn_bytes
            .store(stats.torn_bytes, Ordering::Relaxed);
        Ok(ingest)
    }

    pub fn data_dir(&self) -> &DataDir {
        &self.dir
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// Stores a batch durably. Returns once it is fsynced in the WAL and queryable; a batch whose
    /// `(agent, seq)` was stored before is acknowledged again but not stored twice.
    pub async fn append(
        &self,
        agent: &str,
        seq: u64,
        batch: RecordBatch,
    ) -> Result<Appended, IngestError> {
        check_schema(&batch.schema()).map_err(|e| IngestError::BadBatch {
            agent: agent.to_string(),
            reason: e.to_string(),
        })?;
        let rows = batch.num_rows();
        let _gate = self.append_gate.read().await;
        let mut seqs = self.seqs.lock().await;
        if seqs.get(agent).is_some_and(|last| *last >= seq) {
            self.counters.duplicates.fetch_add(1, Ordering::Relaxed);
            return Ok(Appended {
                rows,
                duplicate: true,
            });
        }
        let payload = wal::encode(agent, seq, &batch)?;
        let segment = self.wal.append(payload).await?;
        seqs.insert(agent.to_string(), seq);
        drop(seqs);
        let mut buf = self.buffer.write().await;
        buf.push(Buffered::new(segment, agent.to_string(), seq, batch));
        let full = buf.rows() >= self.config.flush_rows || buf.bytes() >= self.config.flush_bytes;
        drop(buf);
        self.counters.batches.fetch_add(1, Ordering::Relaxed);
        self.counters.rows.fetch_add(rows as u64, Ordering::Relaxed);
        if full {
            self.flush_wanted.notify_one();
        }
        Ok(Appended {
            rows,
            duplicate: false,
        })
    }

    /// Moves every buffered row into Parquet files, registers them, then deletes the WAL
    /// segments they came from. Safe to call concurrently with appends and queries.
    pub async fn flush(&self) -> Result<usize, IngestError> {
        let _one_at_a_time = self.flush_lock.lock().await;
        let closed = {
            let _gate = self.append_gate.write().await;
            self.wal.rotate().await?
        };
        let (batches, seqs) = self.buffer.read().await.up_to(closed);
        if batches.is_empty() {
            self.wal.delete_up_to(closed).await?;
            return Ok(0);
        }
        let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
        let (dir, catalog, settings) = (
            self.dir.clone(),
            self.catalog.clone(),
            self.config.parquet.clone(),
        );
        let files = tokio::task::spawn_blocking(move || {
            wiretrail_storage::write_partitioned(&dir, &catalog, &batches, &settings)
        })
        .await
        .map_err(|e| IngestError::Task(e.to_string()))??;
        {
            let mut buf = self.buffer.write().await;
            self.catalog.commit_files(&files, &seqs)?;
            buf.remove_up_to(closed);
        }
        self.wal.delete_up_to(closed).await?;
        self.counters.flushes.fetch_add(1, Ordering::Relaxed);
        self.counters
            .files_written
            .fetch_add(files.len() as u64, Ordering::Relaxed);
        tracing::info!(rows, files = files.len(), "flushed buffer to Parquet");
        Ok(rows)
    }

    /// Flushes on a timer and whenever the buffer is full; runs until the process ends.
    pub async fn run_flusher(self: Arc<Self>) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(self.config.flush_interval) => {}
                _ = self.flush_wanted.notified() => {}
            }
            if let Err(e) = self.flush().await {
                tracing::error!(error = %e, "flush failed; rows stay in the WAL and the buffer, will retry");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }

    /// The files and buffered batches that may hold rows in `[from, to)`.
    pub async fn snapshot(&self, from: Micros, to: Micros) -> Result<Snapshot, IngestError> {
        let buf = self.buffer.read().await;
        let all = self.catalog.files()?;
        let total = all.len();
        let files: Vec<FileMeta> = all.into_iter().filter(|f| f.overlaps(from, to)).collect();
        Ok(Snapshot {
            dir: self.dir.clone(),
            files_pruned: total - files.len(),
            files,
            buffered: buf.overlapping(from, to),
        })
    }

    /// Prometheus text exposition of the ingest counters.
    pub async fn metrics_text(&self) -> String {
        let c = &self.counters;
        let (rows, bytes) = {
            let b = self.buffer.read().await;
            (b.rows(), b.bytes())
        };
        let files = self.catalog.files().map(|f| f.len()).unwrap_or(0);
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let metrics: [(&str, &str, &str, u64); 9] = [
            (
                "wiretrail_ingest_batches_total",
                "counter",
                "Batches stored (acknowledged after WAL fsync).",
                get(&c.batches),
            ),
            (
                "wiretrail_ingest_rows_total",
                "counter",
                "Entries stored.",
                get(&c.rows),
            ),
            (
                "wiretrail_ingest_duplicate_batches_total",
                "counter",
                "Resent batches acknowledged without storing them again.",
                get(&c.duplicates),
            ),
            (
                "wiretrail_ingest_flushes_total",
                "counter",
                "Buffer flushes to Parquet.",
                get(&c.flushes),
            ),
            (
                "wiretrail_ingest_files_written_total",
                "counter",
                "Parquet files written.",
                get(&c.files_written),
            ),
            (
                "wiretrail_wal_torn_bytes_total",
                "counter",
                "Bytes of torn WAL tail truncated at start.",
                get(&c.wal_torn_bytes),
            ),
            (
                "wiretrail_buffer_rows",
                "gauge",
                "Acknowledged entries not yet in Parquet.",
                rows as u64,
            ),
            (
                "wiretrail_buffer_bytes",
                "gauge",
                "Arrow memory of the buffered entries.",
                bytes as u64,
            ),
            (
                "wiretrail_catalog_files",
                "gauge",
                "Parquet files in the catalog.",
                files as u64,
            ),
        ];
        let mut out = String::new();
        for (name, kind, help, v) in metrics {
            out.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}\n"
            ));
        }
        out
    }

    /// Rows acknowledged but not yet in Parquet.
    pub async fn buffered_rows(&self) -> usize {
        self.buffer.read().await.rows()
    }
}
