//! Compaction: many small flush files (level 0) become 10-minute files (level 1) while their
//! hour is open, and one file per hour (level 2, split at the target size) once the hour is
//! closed. Late data that lands in a closed hour makes a new level-0 file there, which the next
//! pass folds into the hour's file.
//!
//! Inputs are sorted by `ts`, so outputs come from a streaming k-way merge that holds one batch
//! per input (sized from the memory budget), never the whole hour. Outputs are sealed and
//! fsynced first; then one catalog `WriteBatch` swaps inputs for outputs. Inputs are deleted by
//! the caller after a grace period, so queries that planned with them still finish.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::fs::File;
use std::path::PathBuf;

use arrow::compute::interleave_record_batch;
use arrow::record_batch::RecordBatch;
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use serde::Serialize;
use wiretrail_proto::schema::entry_schema;

use crate::error::IoContext;
use crate::manifest::write_manifest;
use crate::paths::{DataDir, HOUR_US};
use crate::writer::{ts_column, FileWriter};
use crate::{Catalog, FileMeta, Micros, ParquetSettings, StorageError};

const TEN_MINUTES: Micros = 600_000_000;
/// Rows per merged output batch.
const OUT_ROWS: usize = 8192;

#[derive(Clone, Debug)]
pub struct CompactionConfig {
    /// An hour is closed (compacted into hour files) this long after it ends; data later than
    /// that is folded in by a later pass.
    pub late_grace: Micros,
    /// A 10-minute window is compacted this long after it ends.
    pub window_grace: Micros,
    /// Outputs are split when they reach this size.
    pub target_file_bytes: u64,
    /// Memory the merge may use for input batches.
    pub memory_budget: usize,
    pub parquet: ParquetSettings,
}

impl Default for CompactionConfig {
    fn default() -> Self {
        CompactionConfig {
            late_grace: 10 * 60_000_000,
            window_grace: 60_000_000,
            target_file_bytes: 256 << 20,
            memory_budget: 64 << 20,
            parquet: ParquetSettings::default(),
        }
    }
}

/// What one pass did.
#[derive(Debug, Default, Clone, Serialize)]
pub struct CompactionReport {
    pub jobs: usize,
    pub inputs: usize,
    pub outputs: usize,
    pub rows: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Input files now out of the catalog; the caller deletes them after a grace period.
    #[serde(skip)]
    pub obsolete: Vec<PathBuf>,
}

struct Job {
    level: u8,
    inputs: Vec<FileMeta>,
}

fn plan(files: Vec<FileMeta>, config: &CompactionConfig, now: Micros) -> Vec<Job> {
    let mut hours: BTreeMap<Micros, Vec<FileMeta>> = BTreeMap::new();
    for f in files.into_iter().filter(|f| !f.remote) {
        hours.entry(f.hour()).or_default().push(f);
    }
    let mut jobs = Vec::new();
    for (hour, files) in hours {
        if hour + HOUR_US + config.late_grace <= now {
            let total: u64 = files.iter().map(|f| f.bytes).sum();
            let inputs: Vec<FileMeta> = if total <= 2 * config.target_file_bytes {
                files
            } else {
                // Big hour: leave full hour files alone, fold the rest into a new one.
                files.into_iter().filter(|f| f.level < 2).collect()
            };
            if inputs.len() > 1 || inputs.first().is_some_and(|f| f.level < 2) {
                jobs.push(Job { level: 2, inputs });
            }
            continue;
        }
        let mut windows: BTreeMap<Micros, Vec<FileMeta>> = BTreeMap::new();
        for f in files.into_iter().filter(|f| f.level == 0) {
            let w = f.min_ts.div_euclid(TEN_MINUTES) * TEN_MINUTES;
            if f.max_ts < w + TEN_MINUTES && w + TEN_MINUTES + config.window_grace <= now {
                windows.entry(w).or_default().push(f);
            }
        }
        jobs.extend(
            windows
                .into_values()
                .filter(|w| w.len() > 1)
                .map(|inputs| Job { level: 1, inputs }),
        );
    }
    jobs
}

/// Runs one compaction pass over the catalog of `dir` as of `now` (µs since the epoch).
pub fn compact(
    dir: &DataDir,
    catalog: &Catalog,
    config: &CompactionConfig,
    now: Micros,
) -> Result<CompactionReport, StorageError> {
    let mut report = CompactionReport::default();
    for job in plan(catalog.files()?, config, now) {
        let outputs = merge_job(dir, catalog, config, &job)?;
        catalog.swap_files(&job.inputs, &outputs)?;
        let hour = job.inputs[0].hour();
        write_manifest(dir, catalog, hour)?;
        report.jobs += 1;
        report.inputs += job.inputs.len();
        report.outputs += outputs.len();
        report.rows += outputs.iter().map(|f| f.rows).sum::<u64>();
        report.bytes_in += job.inputs.iter().map(|f| f.bytes).sum::<u64>();
        report.bytes_out += outputs.iter().map(|f| f.bytes).sum::<u64>();
        report
            .obsolete
            .extend(job.inputs.iter().map(|f| dir.entry_file(&f.path)));
        tracing::info!(
            level = job.level,
            inputs = job.inputs.len(),
            outputs = outputs.len(),
            rows = report.rows,
            "compacted"
        );
    }
    Ok(report)
}

/// Jobs a pass would run now (the compaction backlog metric).
pub fn backlog(
    catalog: &Catalog,
    config: &CompactionConfig,
    now: Micros,
) -> Result<usize, StorageError> {
    Ok(plan(catalog.files()?, config, now).len())
}

fn merge_job(
    dir: &DataDir,
    catalog: &Catalog,
    config: &CompactionConfig,
    job: &Job,
) -> Result<Vec<FileMeta>, StorageError> {
    let k = job.inputs.len().max(1);
    let mut readers = Vec::with_capacity(k);
    let mut sources = BTreeMap::new();
    for f in &job.inputs {
        // Decoded rows are ~4× their compressed size; size batches so k of them fit the budget.
        let row_bytes = (f.bytes.saturating_mul(4) / f.rows.max(1)).max(64) as usize;
        let batch_rows = (config.memory_budget / k / row_bytes).clamp(256, OUT_ROWS);
        let path = dir.entry_file(&f.path);
        let perr = |source| StorageError::Parquet {
            path: path.clone(),
            source,
        };
        let file = File::open(&path).at(&path)?;
        let reader = ParquetRecordBatchReaderBuilder::try_new(file)
            .map_err(perr)?
            .with_batch_size(batch_rows)
            .build()
            .map_err(perr)?;
        readers.push(reader);
        crate::writer::merge_sources(&mut sources, &f.sources);
    }
    let mut outputs = Vec::new();
    let mut writer: Option<FileWriter> = None;
    merge_sorted(readers, |batch| {
        let w = match writer.as_mut() {
            Some(w) if (w.size() as u64) < config.target_file_bytes => w,
            _ => {
                if let Some(full) = writer.take() {
                    outputs.push(full.finish(dir)?);
                }
                let first = ts_column(&batch).value(0);
                writer.insert(FileWriter::create(
                    dir,
                    catalog,
                    job.level,
                    first,
                    &config.parquet,
                )?)
            }
        };
        w.add_sources(&sources);
        w.write(&batch)
    })?;
    if let Some(w) = writer {
        outputs.push(w.finish(dir)?);
    }
    Ok(outputs)
}

struct Cursor {
    reader: ParquetRecordBatchReader,
    batch: RecordBatch,
    row: usize,
    slot: usize,
}

impl Cursor {
    fn ts(&self) -> Micros {
        ts_column(&self.batch).value(self.row)
    }
}

/// Streams the rows of `ts`-sorted inputs in `ts` order, `OUT_ROWS` at a time.
fn merge_sorted(
    readers: Vec<ParquetRecordBatchReader>,
    mut emit: impl FnMut(RecordBatch) -> Result<(), StorageError>,
) -> Result<(), StorageError> {
    let schema = entry_schema();
    let mut slots: Vec<RecordBatch> = Vec::new();
    let mut cursors: Vec<Option<Cursor>> = Vec::new();
    let mut heap = BinaryHeap::new();
    for mut reader in readers {
        if let Some(batch) = next_nonempty(&mut reader)? {
            let c = Cursor {
                reader,
                batch: batch.clone(),
                row: 0,
                slot: slots.len(),
            };
            slots.push(batch);
            heap.push(Reverse((c.ts(), cursors.len())));
            cursors.push(Some(c));
        }
    }
    let mut pending: Vec<(usize, usize)> = Vec::with_capacity(OUT_ROWS);
    let mut flush = |slots: &mut Vec<RecordBatch>,
                     cursors: &mut Vec<Option<Cursor>>,
                     pending: &mut Vec<(usize, usize)>|
     -> Result<(), StorageError> {
        if pending.is_empty() {
            return Ok(());
        }
        let refs: Vec<&RecordBatch> = slots.iter().collect();
        let merged = interleave_record_batch(&refs, pending)?;
        emit(RecordBatch::try_new(
            schema.clone(),
            merged.columns().to_vec(),
        )?)?;
        pending.clear();
        // Keep only the batches the cursors still read from.
        slots.clear();
        for c in cursors.iter_mut().flatten() {
            c.slot = slots.len();
            slots.push(c.batch.clone());
        }
        Ok(())
    };
    while let Some(Reverse((_, i))) = heap.pop() {
        let c = cursors[i].as_mut().expect("cursors in the heap are live");
        pending.push((c.slot, c.row));
        c.row += 1;
        if c.row < c.batch.num_rows() {
            heap.push(Reverse((c.ts(), i)));
        } else {
            match next_nonempty(&mut c.reader)? {
                Some(b) => {
                    c.batch = b.clone();
                    c.row = 0;
                    c.slot = slots.len();
                    slots.push(b);
                    heap.push(Reverse((c.ts(), i)));
                }
                None => cursors[i] = None,
            }
        }
        if pending.len() >= OUT_ROWS {
            flush(&mut slots, &mut cursors, &mut pending)?;
        }
    }
    flush(&mut slots, &mut cursors, &mut pending)
}

fn next_nonempty(r: &mut ParquetRecordBatchReader) -> Result<Option<RecordBatch>, StorageError> {
    for b in r.by_ref() {
        let b = b?;
        if b.num_rows() > 0 {
            return Ok(Some(b));
        }
    }
    Ok(None)
}
