//! [`Ingest`]: the write path of one data directory — dedupe, WAL, queryable buffer, flush to
//! Parquet + catalog — and the consistent snapshot that queries read.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::record_batch::RecordBatch;
use tokio::sync::{Mutex, Notify, RwLock};
use wiretrail_proto::schema::check_schema;
use wiretrail_storage::paths::DataDir;
use wiretrail_storage::rollup::{Rollup, RollupKey};
use wiretrail_storage::VolumeRow;
use wiretrail_storage::{
    Catalog, CompactionConfig, DataDirLock, FileMeta, Micros, ParquetSettings, RemoteStore,
    RetentionConfig,
};

use crate::buffer::{Buffer, Buffered};
use crate::metrics::Histogram;
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
    /// How long the WAL waits for more appends before one fsync (group commit).
    pub wal_commit_interval: Duration,
    /// Above this many bytes of buffered (not yet flushed) entries, appends wait for the
    /// flusher; above twice this, they are refused with `RESOURCE_EXHAUSTED` and the sender
    /// retries later.
    pub memory_limit: usize,
    pub compaction: CompactionConfig,
    pub retention: RetentionConfig,
    /// How often compaction, retention and file deletion run.
    pub maintenance_interval: Duration,
    /// Files out of the catalog (compaction inputs, expired hours) are deleted this long
    /// after, so queries planned with them still finish.
    pub delete_grace: Duration,
    /// Object storage for older hours (`None`: everything stays on local disk).
    pub remote: Option<Arc<RemoteStore>>,
    /// Hours stay local until they ended this long ago, then move to `remote`.
    pub upload_after: Duration,
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            flush_interval: Duration::from_secs(60),
            flush_rows: 1_000_000,
            flush_bytes: 256 << 20,
            parquet: ParquetSettings::default(),
            wal_commit_interval: Duration::from_millis(5),
            memory_limit: 512 << 20,
            compaction: CompactionConfig::default(),
            retention: RetentionConfig::default(),
            maintenance_interval: Duration::from_secs(30),
            delete_grace: Duration::from_secs(60),
            remote: None,
            upload_after: Duration::from_secs(6 * 3600),
        }
    }
}

/// What a query reads: the files and the buffered batches of a window, taken together so that
/// no row is seen twice or missed while a flush moves rows from the buffer into a file.
pub struct Snapshot {
    pub dir: DataDir,
    /// Where files with `remote: true` live.
    pub remote: Option<Arc<RemoteStore>>,
    pub files: Vec<FileMeta>,
    /// Files in the catalog that the window excluded.
    pub files_pruned: usize,
    pub buffered: Vec<RecordBatch>,
}

/// What one maintenance pass did.
#[derive(Debug, Default)]
pub struct MaintenanceReport {
    pub compaction: wiretrail_storage::CompactionReport,
    pub retention: wiretrail_storage::RetentionReport,
    /// Files moved to object storage.
    pub uploaded: usize,
    /// Obsolete files deleted in this pass (their grace period was over).
    pub deleted: usize,
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
    pub flush_errors: AtomicU64,
    pub files_written: AtomicU64,
    pub wal_torn_bytes: AtomicU64,
    /// Batches refused because the buffer was over twice the memory limit.
    pub rejected_busy: AtomicU64,
    /// Batches refused because of bad data (schema, agent id).
    pub rejected_bad: AtomicU64,
    /// Batches refused because the WAL could not be written (disk full, I/O error).
    pub rejected_io: AtomicU64,
    /// Appends that waited for the flusher (memory above the limit).
    pub throttled: AtomicU64,
    pub compactions: AtomicU64,
    pub compacted_inputs: AtomicU64,
    pub compaction_backlog: AtomicU64,
    pub retention_hours: AtomicU64,
    pub retention_rows: AtomicU64,
    pub retention_bytes: AtomicU64,
    pub orphans_removed: AtomicU64,
    pub files_deleted: AtomicU64,
    pub uploaded_files: AtomicU64,
    pub wal_fsync: Histogram,
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
    /// Signalled after every flush (appends waiting for memory wake up).
    flushed: Notify,
    maintenance_lock: Mutex<()>,
    /// Files out of the catalog, deleted once their deadline passes.
    obsolete: std::sync::Mutex<Vec<(Instant, PathBuf)>>,
    /// False while the WAL cannot be written (disk full); the /metrics gauge.
    accepting: AtomicBool,
    /// Set by [`Ingest::shutdown`]: no maintenance pass starts after it.
    stopping: AtomicBool,
    pub counters: Arc<IngestCounters>,
    /// Every acknowledged batch, for live tails and the live service map. Bounded: a
    /// subscriber that falls behind by more than [`LIVE_BATCHES`] batches is told how many it
    /// missed (tokio's `Lagged`) instead of holding memory.
    live: tokio::sync::broadcast::Sender<RecordBatch>,
    /// More metrics appended to `/metrics` (e.g. the in-process capture of `wiretrail up`).
    extra_metrics: std::sync::Mutex<Vec<ExtraMetrics>>,
    _lock: DataDirLock,
}

/// Renders Prometheus text for [`Ingest::add_metrics`].
pub type ExtraMetrics = Arc<dyn Fn() -> String + Send + Sync>;

/// Batches a live subscriber may lag behind before it loses some.
pub const LIVE_BATCHES: usize = 16;

impl Ingest {
    /// Opens (or creates) a data directory: takes its lock, opens the catalog and replays the WAL.
    pub async fn open(
        root: impl Into<std::path::PathBuf>,
        config: IngestConfig,
    ) -> Result<Arc<Self>, IngestError> {
        let dir = DataDir::new(root);
        let lock = DataDirLock::acquire(&dir)?;
        let catalog = Arc::new(Catalog::open(&dir.index())?);
        let repaired = wiretrail_storage::repair(&dir, &catalog)?;
        if let Some(r) = &repaired.rebuilt {
            tracing::warn!(
                files = r.files,
                rows = r.rows,
                missing = r.missing.len(),
                "index rebuilt from manifests"
            );
        }
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
        let counters = Arc::new(IngestCounters::default());
        let wal = Wal::start(&dir.wal(), config.wal_commit_interval, counters.clone())?;
        counters
            .orphans_removed
            .store(repaired.orphans_removed.len() as u64, Ordering::Relaxed);
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
            flushed: Notify::new(),
            maintenance_lock: Mutex::new(()),
            obsolete: std::sync::Mutex::new(Vec::new()),
            accepting: AtomicBool::new(true),
            stopping: AtomicBool::new(false),
            counters,
            live: tokio::sync::broadcast::channel(LIVE_BATCHES).0,
            extra_metrics: std::sync::Mutex::new(Vec::new()),
            _lock: lock,
        });
        ingest
            .counters
            .wal_torn_bytes
            .store(stats.torn_bytes, Ordering::Relaxed);
        Ok(ingest)
    }

    /// Batches as they are acknowledged (after the WAL fsync), from now on.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<RecordBatch> {
        self.live.subscribe()
    }

    pub fn data_dir(&self) -> &DataDir {
        &self.dir
    }

    /// The object storage older hours move to, if configured.
    pub fn remote(&self) -> Option<&Arc<RemoteStore>> {
        self.config.remote.as_ref()
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
        if let Err(e) = check_schema(&batch.schema()) {
            self.counters.rejected_bad.fetch_add(1, Ordering::Relaxed);
            return Err(IngestError::BadBatch {
                agent: agent.to_string(),
                reason: e.to_string(),
            });
        }
        self.admit().await?;
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
        let segment = match self.wal.append(payload).await {
            Ok(s) => {
                if !self.accepting.swap(true, Ordering::Relaxed) {
                    tracing::info!("the write-ahead log is writable again; acknowledging batches");
                }
                s
            }
            Err(e) => {
                self.counters.rejected_io.fetch_add(1, Ordering::Relaxed);
                if self.accepting.swap(false, Ordering::Relaxed) {
                    tracing::error!(error = %e, "cannot write the write-ahead log: not acknowledging batches until it works again (nothing stored is affected)");
                }
                return Err(e);
            }
        };
        seqs.insert(agent.to_string(), seq);
        drop(seqs);
        if self.live.receiver_count() > 0 {
            let _ = self.live.send(batch.clone());
        }
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

    /// Backpressure: waits while the buffer is over the memory limit (the flusher is asked to
    /// run), refuses when it is over twice the limit or stays over it for 5 s.
    async fn admit(&self) -> Result<(), IngestError> {
        let limit = self.config.memory_limit;
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut counted = false;
        loop {
            let bytes = self.buffer.read().await.bytes();
            if bytes <= limit {
                return Ok(());
            }
            // Whatever happens to this append, the buffer must shrink.
            self.flush_wanted.notify_one();
            if bytes > 2 * limit || Instant::now() >= deadline {
                self.counters.rejected_busy.fetch_add(1, Ordering::Relaxed);
                return Err(IngestError::Busy { bytes, limit });
            }
            if !counted {
                self.counters.throttled.fetch_add(1, Ordering::Relaxed);
                counted = true;
            }
            let _ = tokio::time::timeout(Duration::from_millis(100), self.flushed.notified()).await;
        }
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
        let rows: usize = batches.iter().map(|b| b.batch.num_rows()).sum();
        let (dir, catalog, settings) = (
            self.dir.clone(),
            self.catalog.clone(),
            self.config.parquet.clone(),
        );
        let (files, rollups) = tokio::task::spawn_blocking(move || {
            wiretrail_storage::write_partitioned(&dir, &catalog, &batches, &settings)
        })
        .await
        .map_err(|e| IngestError::Task(e.to_string()))??;
        {
            let mut buf = self.buffer.write().await;
            self.catalog.commit_flush(&files, &seqs, &rollups)?;
            buf.remove_up_to(closed);
        }
        self.flushed.notify_waiters();
        let hours: BTreeSet<Micros> = files.iter().map(FileMeta::hour).collect();
        for h in hours {
            wiretrail_storage::write_manifest(&self.dir, &self.catalog, h)?;
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
                self.counters.flush_errors.fetch_add(1, Ordering::Relaxed);
                tracing::error!(error = %e, "flush failed; rows stay in the WAL and the buffer, will retry");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }

    /// Compaction, retention and deletion of obsolete files; runs until the process ends.
    pub async fn run_maintenance(self: Arc<Self>) {
        loop {
            tokio::time::sleep(self.config.maintenance_interval).await;
            let now = chrono::Utc::now().timestamp_micros();
            if let Err(e) = self.maintain(now).await {
                tracing::error!(error = %e, "maintenance failed; will retry");
            }
        }
    }

    /// One maintenance pass as of `now` (µs since the epoch): compaction, retention, then
    /// deletion of files whose grace period is over.
    pub async fn maintain(&self, now: Micros) -> Result<MaintenanceReport, IngestError> {
        let _one = self.maintenance_lock.lock().await;
        if self.stopping.load(Ordering::SeqCst) {
            return Ok(MaintenanceReport::default());
        }
        let (dir, catalog, config) = (self.dir.clone(), self.catalog.clone(), self.config.clone());
        let (compaction, retention, backlog) = tokio::task::spawn_blocking(move || {
            let c = wiretrail_storage::compact(&dir, &catalog, &config.compaction, now)?;
            let r = wiretrail_storage::apply_retention(&dir, &catalog, &config.retention, now)?;
            let b = wiretrail_storage::compaction_backlog(&catalog, &config.compaction, now)?;
            Ok::<_, IngestError>((c, r, b))
        })
        .await
        .map_err(|e| IngestError::Task(e.to_string()))??;
        let c = &self.counters;
        c.compactions
            .fetch_add(compaction.jobs as u64, Ordering::Relaxed);
        c.compacted_inputs
            .fetch_add(compaction.inputs as u64, Ordering::Relaxed);
        c.compaction_backlog
            .store(backlog as u64, Ordering::Relaxed);
        c.retention_hours
            .fetch_add(retention.hours.len() as u64, Ordering::Relaxed);
        c.retention_rows
            .fetch_add(retention.rows, Ordering::Relaxed);
        c.retention_bytes
            .fetch_add(retention.bytes, Ordering::Relaxed);
        let uploaded = self.tier(now).await?;
        if let Some(remote) = &self.config.remote {
            for rel in &retention.remote_obsolete {
                // Object storage has no open handles to protect: delete now.
                remote.delete(rel).await?;
            }
        }
        let deadline = Instant::now() + self.config.delete_grace;
        {
            let mut o = self.obsolete.lock().unwrap_or_else(|p| p.into_inner());
            o.extend(compaction.obsolete.iter().cloned().map(|p| (deadline, p)));
            o.extend(retention.obsolete.iter().cloned().map(|p| (deadline, p)));
        }
        let deleted = self.delete_obsolete(Instant::now());
        Ok(MaintenanceReport {
            compaction,
            retention,
            uploaded,
            deleted,
        })
    }

    /// Moves hours that ended more than `upload_after` ago to object storage: upload, verify,
    /// swap the catalog record, then delete the local file after the grace period.
    async fn tier(&self, now: Micros) -> Result<usize, IngestError> {
        let Some(remote) = &self.config.remote else {
            return Ok(0);
        };
        let cutoff = now - self.config.upload_after.as_micros() as Micros;
        let due: Vec<FileMeta> = self
            .catalog
            .files()?
            .into_iter()
            .filter(|f| !f.remote && f.hour() + wiretrail_storage::paths::HOUR_US <= cutoff)
            .collect();
        let mut hours = BTreeSet::new();
        for f in &due {
            let local = self.dir.entry_file(&f.path);
            remote.upload(&local, &f.path).await?;
            let moved = FileMeta {
                remote: true,
                ..f.clone()
            };
            self.catalog.swap_files(std::slice::from_ref(f), &[moved])?;
            hours.insert(f.hour());
            let deadline = Instant::now() + self.config.delete_grace;
            self.obsolete
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push((deadline, local));
        }
        for h in hours {
            wiretrail_storage::write_manifest(&self.dir, &self.catalog, h)?;
        }
        if !due.is_empty() {
            tracing::info!(
                files = due.len(),
                bucket = remote.bucket(),
                "moved closed hours to object storage"
            );
        }
        self.counters
            .uploaded_files
            .fetch_add(due.len() as u64, Ordering::Relaxed);
        Ok(due.len())
    }

    /// Graceful stop: waits for a running maintenance pass, flushes the buffer, and deletes the
    /// files waiting for their grace period (no query runs any more). Maintenance is not
    /// started again.
    pub async fn shutdown(&self) -> Result<(), IngestError> {
        let _running_pass_done = self.maintenance_lock.lock().await;
        self.stopping.store(true, Ordering::SeqCst);
        self.flush().await?;
        self.delete_obsolete(Instant::now() + Duration::from_secs(365 * 86_400));
        Ok(())
    }

    /// Deletes obsolete files whose deadline is before `now`; returns how many.
    pub fn delete_obsolete(&self, now: Instant) -> usize {
        let due: Vec<PathBuf> = {
            let mut o = self.obsolete.lock().unwrap_or_else(|p| p.into_inner());
            let (due, keep): (Vec<_>, Vec<_>) = o.drain(..).partition(|(t, _)| *t <= now);
            *o = keep;
            due.into_iter().map(|(_, p)| p).collect()
        };
        let mut n = 0;
        for p in due {
            match std::fs::remove_file(&p) {
                Ok(()) => n += 1,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(file = %p.display(), error = %e, "cannot delete an obsolete file; it is removed at the next start")
                }
            }
            // The hour folder goes when its last file does.
            if let Some(folder) = p.parent() {
                if std::fs::remove_dir(folder).is_ok() {
                    if let Some(day) = folder.parent() {
                        let _ = std::fs::remove_dir(day);
                    }
                }
            }
        }
        self.counters
            .files_deleted
            .fetch_add(n as u64, Ordering::Relaxed);
        n
    }

    /// Pins `[from, to)` under `name` (retention keeps those hours) and mirrors the pins next
    /// to the files.
    pub fn pin(&self, pin: &wiretrail_storage::Pin) -> Result<(), IngestError> {
        self.catalog.put_pin(pin)?;
        wiretrail_storage::write_pins(&self.dir, &self.catalog)?;
        Ok(())
    }

    pub fn unpin(&self, name: &str) -> Result<bool, IngestError> {
        let existed = self.catalog.delete_pin(name)?;
        wiretrail_storage::write_pins(&self.dir, &self.catalog)?;
        Ok(existed)
    }

    /// The files and buffered batches that may hold rows in `[from, to)`.
    pub async fn snapshot(&self, from: Micros, to: Micros) -> Result<Snapshot, IngestError> {
        let buf = self.buffer.read().await;
        let files = self.catalog.files_overlapping(from, to)?;
        let total = self.catalog.file_count();
        Ok(Snapshot {
            dir: self.dir.clone(),
            remote: self.config.remote.clone(),
            files_pruned: total - files.len(),
            files,
            buffered: buf.overlapping(from, to),
        })
    }

    /// Service-map rollups of the minutes in `[from, to)` (`from`/`to` minute-aligned) from the
    /// catalog, plus the buffered batches in that window, read under the buffer lock so that a
    /// flush committing in between can neither count a batch twice nor lose it.
    pub async fn rollup_snapshot(
        &self,
        from: Micros,
        to: Micros,
    ) -> Result<(Vec<(RollupKey, Rollup)>, Vec<RecordBatch>), IngestError> {
        let buf = self.buffer.read().await;
        let rollups = self.catalog.rollups(from, to)?;
        Ok((rollups, buf.overlapping(from, to)))
    }

    /// Per-minute volume (protocol, status classes) of `[from, to)` (minute-aligned) from the
    /// catalog plus the buffered batches in that window, under the buffer lock like
    /// [`Ingest::rollup_snapshot`]; `None` when the catalog's volume does not cover the window.
    pub async fn volume_snapshot(
        &self,
        from: Micros,
        to: Micros,
    ) -> Result<Option<(Vec<VolumeRow>, Vec<RecordBatch>)>, IngestError> {
        let buf = self.buffer.read().await;
        Ok(self
            .catalog
            .volume(from, to)?
            .map(|v| (v, buf.overlapping(from, to))))
    }

    /// Adds metrics of another component of this process to [`Ingest::metrics_text`].
    pub fn add_metrics(&self, render: ExtraMetrics) {
        if let Ok(mut m) = self.extra_metrics.lock() {
            m.push(render);
        }
    }

    /// Prometheus text exposition of the ingest counters (and of [`Ingest::add_metrics`]).
    pub async fn metrics_text(&self) -> String {
        let (rows, bytes) = {
            let b = self.buffer.read().await;
            (b.rows(), b.bytes())
        };
        let files = self.catalog.files().unwrap_or_default();
        let pending = self.obsolete.lock().map(|o| o.len()).unwrap_or(0);
        let extra: Vec<ExtraMetrics> = self
            .extra_metrics
            .lock()
            .map(|m| m.clone())
            .unwrap_or_default();
        let mut text = crate::metrics::render(
            &self.counters,
            &crate::metrics::Gauges {
                buffer_rows: rows as u64,
                buffer_bytes: bytes as u64,
                memory_limit: self.config.memory_limit as u64,
                catalog_files: files.len() as u64,
                catalog_bytes: files.iter().map(|f| f.bytes).sum(),
                pending_deletes: pending as u64,
                accepting: self.accepting.load(Ordering::Relaxed),
            },
        );
        for f in extra {
            text.push_str(&f());
        }
        text
    }

    /// Rows acknowledged but not yet in Parquet.
    pub async fn buffered_rows(&self) -> usize {
        self.buffer.read().await.rows()
    }
}
