//! Writes entry batches as Parquet: sorted by `ts`, split by UTC hour into the Hive layout,
//! ZSTD, page-level statistics and page index on, `sorting_columns` set, row groups bounded by
//! rows and bytes, a bloom filter on `id` in compacted files, and the file's own catalog record
//! in the footer (`wiretrail.file`), so the index can be rebuilt from the files alone. Files are
//! written to a temporary name, fsynced and renamed, so a crash never leaves a half file under a
//! real name.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};

use arrow::array::{Array, TimestampMicrosecondArray};
use arrow::compute::{concat_batches, sort_to_indices, take_record_batch};
use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::{KeyValue, SortingColumn};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;
use wiretrail_proto::schema::{entry_schema, ID, TS};

use crate::error::IoContext;
use crate::facts::{self, FileTags};
use crate::paths::{entry_file_name, hour_start, DataDir, HOUR_US};
use crate::rollup::{Rollup, RollupKey};
use crate::{Catalog, FileMeta, Micros, StorageError};

/// Footer key holding the file's [`FileMeta`] as JSON.
pub const FILE_META_KEY: &str = "wiretrail.file";

/// Knobs of the Parquet writer; the defaults are what DESIGN.md asks for.
#[derive(Clone, Debug)]
pub struct ParquetSettings {
    pub zstd_level: i32,
    pub max_row_group_rows: usize,
    pub max_row_group_bytes: usize,
}

impl Default for ParquetSettings {
    fn default() -> Self {
        ParquetSettings {
            zstd_level: 3,
            max_row_group_rows: 128 * 1024,
            max_row_group_bytes: 128 << 20,
        }
    }
}

/// One acknowledged batch and where it came from.
pub struct SourceBatch {
    pub agent: String,
    pub seq: u64,
    pub batch: RecordBatch,
}

fn properties(s: &ParquetSettings, level: u8) -> WriterProperties {
    let ts_idx = entry_schema()
        .index_of(TS)
        .expect("ts is in the entry schema");
    let mut b = WriterProperties::builder()
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(s.zstd_level).unwrap_or_default(),
        ))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_max_row_group_row_count(Some(s.max_row_group_rows))
        .set_max_row_group_bytes(Some(s.max_row_group_bytes))
        .set_sorting_columns(Some(vec![SortingColumn {
            column_idx: ts_idx as i32,
            descending: false,
            nulls_first: false,
        }]))
        .set_created_by(format!("wiretrail {}", env!("CARGO_PKG_VERSION")));
    if level > 0 {
        // Entry-by-id lookups skip row groups without reading pages; flush files are
        // short-lived, so they skip the cost.
        b = b
            .set_column_bloom_filter_enabled(ColumnPath::from(ID), true)
            .set_column_bloom_filter_fpp(ColumnPath::from(ID), 0.01);
    }
    b.build()
}

pub(crate) fn ts_column(batch: &RecordBatch) -> &TimestampMicrosecondArray {
    batch
        .column_by_name(TS)
        .and_then(|c| c.as_any().downcast_ref::<TimestampMicrosecondArray>())
        .expect("batches were checked against the entry schema")
}

/// Streams sorted batches of one hour into one Parquet file.
pub(crate) struct FileWriter {
    /// `None` once sealed.
    writer: Option<ArrowWriter<File>>,
    tmp: PathBuf,
    meta: FileMeta,
}

impl Drop for FileWriter {
    /// An unfinished file (an error, a full disk) leaves nothing behind.
    fn drop(&mut self) {
        if self.writer.is_some() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

impl FileWriter {
    /// Starts a file of `level` for the hour of `first_ts`.
    pub fn create(
        dir: &DataDir,
        catalog: &Catalog,
        level: u8,
        first_ts: Micros,
        settings: &ParquetSettings,
    ) -> Result<Self, StorageError> {
        let file_id = catalog.next_file_id();
        let rel = entry_file_name(level, first_ts, file_id);
        let path = dir.entry_file(&rel);
        let parent = path
            .parent()
            .expect("entry files live in a partition folder");
        std::fs::create_dir_all(parent).at(parent)?;
        let tmp = path.with_extension("parquet.tmp");
        let file = File::create(&tmp).at(&tmp)?;
        let writer = ArrowWriter::try_new(file, entry_schema(), Some(properties(settings, level)))
            .map_err(|source| StorageError::Parquet {
                path: tmp.clone(),
                source,
            })?;
        Ok(FileWriter {
            writer: Some(writer),
            tmp,
            meta: FileMeta {
                path: rel,
                level,
                file_id,
                min_ts: Micros::MAX,
                max_ts: Micros::MIN,
                rows: 0,
                bytes: 0,
                tags: FileTags::default(),
                sources: BTreeMap::new(),
                remote: false,
            },
        })
    }

    /// Appends rows (sorted by `ts`, after any rows written before).
    pub fn write(&mut self, batch: &RecordBatch) -> Result<(), StorageError> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let ts = ts_column(batch).values();
        self.meta.min_ts = self.meta.min_ts.min(ts[0]);
        self.meta.max_ts = self.meta.max_ts.max(ts[ts.len() - 1]);
        self.meta.rows += batch.num_rows() as u64;
        self.meta.tags.merge(&facts::tags(batch));
        self.writer
            .as_mut()
            .expect("written before finish")
            .write(batch)
            .map_err(|source| StorageError::Parquet {
                path: self.tmp.clone(),
                source,
            })
    }

    /// Bytes written so far plus the row group in memory.
    pub fn size(&self) -> usize {
        self.writer
            .as_ref()
            .map_or(0, |w| w.bytes_written() + w.in_progress_size())
    }

    pub fn add_sources(&mut self, sources: &BTreeMap<String, (u64, u64)>) {
        merge_sources(&mut self.meta.sources, sources);
    }

    /// Seals the file under its real name (fsynced, directory synced) and returns its record.
    pub fn finish(mut self, dir: &DataDir) -> Result<FileMeta, StorageError> {
        let record = serde_json::to_string(&self.meta).expect("FileMeta serializes");
        let mut writer = self.writer.take().expect("finished once");
        for (k, v) in [
            (FILE_META_KEY, record),
            ("wiretrail.min_ts", self.meta.min_ts.to_string()),
            ("wiretrail.max_ts", self.meta.max_ts.to_string()),
        ] {
            writer.append_key_value_metadata(KeyValue::new(k.into(), v));
        }
        let tmp = self.tmp.clone();
        let cleanup = |e| {
            let _ = std::fs::remove_file(&tmp);
            e
        };
        let file = writer
            .into_inner()
            .map_err(|source| StorageError::Parquet {
                path: tmp.clone(),
                source,
            })
            .map_err(cleanup)?;
        file.sync_all().at(&tmp).map_err(cleanup)?;
        self.meta.bytes = file.metadata().at(&tmp).map_err(cleanup)?.len();
        drop(file);
        let path = dir.entry_file(&self.meta.path);
        std::fs::rename(&tmp, &path).at(&path).map_err(cleanup)?;
        sync_dir(path.parent().expect("partition folder"))?;
        Ok(self.meta.clone())
    }
}

/// Widens `into` by `from` (agent → first/last batch sequence number).
pub(crate) fn merge_sources(
    into: &mut BTreeMap<String, (u64, u64)>,
    from: &BTreeMap<String, (u64, u64)>,
) {
    for (agent, (lo, hi)) in from {
        let e = into.entry(agent.clone()).or_insert((*lo, *hi));
        e.0 = e.0.min(*lo);
        e.1 = e.1.max(*hi);
    }
}

/// Sorts the batches of a flush by `ts`, writes one level-0 file per UTC hour and returns their
/// records and the flush's rollups. The caller registers both with [`Catalog::commit_flush`].
pub fn write_partitioned(
    dir: &DataDir,
    catalog: &Catalog,
    inputs: &[SourceBatch],
    settings: &ParquetSettings,
) -> Result<(Vec<FileMeta>, HashMap<RollupKey, Rollup>), StorageError> {
    let mut sources = BTreeMap::new();
    let mut rollups = HashMap::new();
    for s in inputs {
        merge_sources(
            &mut sources,
            &BTreeMap::from([(s.agent.clone(), (s.seq, s.seq))]),
        );
        facts::merge_rollups(&mut rollups, facts::rollups(&s.batch));
    }
    let batches: Vec<&RecordBatch> = inputs.iter().map(|s| &s.batch).collect();
    let all = concat_batches(&entry_schema(), batches)?;
    if all.num_rows() == 0 {
        return Ok((Vec::new(), rollups));
    }
    let order = sort_to_indices(ts_column(&all), None, None)?;
    let sorted = take_record_batch(&all, &order)?;
    let ts = ts_column(&sorted).values().to_vec();

    let mut out = Vec::new();
    let mut start = 0;
    while start < ts.len() {
        let hour_end = hour_start(ts[start]) + HOUR_US;
        let end = start + ts[start..].partition_point(|t| *t < hour_end);
        let mut w = FileWriter::create(dir, catalog, 0, ts[start], settings)?;
        w.write(&sorted.slice(start, end - start))?;
        w.add_sources(&sources);
        out.push(w.finish(dir)?);
        start = end;
    }
    Ok((out, rollups))
}

/// Makes a rename durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    File::open(dir).and_then(|d| d.sync_all()).at(dir)
}
