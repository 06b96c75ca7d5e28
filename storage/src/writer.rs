//! Writes entry batches as Parquet: sorted by `ts`, split by UTC hour into the Hive layout,
//! ZSTD, page-level statistics and page index on, `sorting_columns` set. Files are written to a
//! temporary name, fsynced and renamed, so a crash never leaves a half file under a real name.

use std::fs::File;
use std::path::Path;

use arrow::array::{Array, TimestampMicrosecondArray};
use arrow::compute::{concat_batches, sort_to_indices, take_record_batch};
use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::{KeyValue, SortingColumn};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use wiretrail_proto::schema::{entry_schema, TS};

use crate::error::IoContext;
use crate::paths::{entry_file_name, hour_start, DataDir, HOUR_US};
use crate::{Catalog, FileMeta, Micros, StorageError};

/// Knobs of the Parquet writer; the defaults are what DESIGN.md asks for.
#[derive(Clone, Debug)]
pub struct ParquetSettings {
    pub zstd_level: i32,
    pub max_row_group_rows: usize,
}

impl Default for ParquetSettings {
    fn default() -> Self {
        ParquetSettings {
            zstd_level: 3,
            max_row_group_rows: 128 * 1024,
        }
    }
}

fn properties(s: &ParquetSettings, min_ts: Micros, max_ts: Micros) -> WriterProperties {
    let ts_idx = entry_schema()
        .index_of(TS)
        .expect("ts is in the entry schema");
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(s.zstd_level).unwrap_or_default(),
        ))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_max_row_group_row_count(Some(s.max_row_group_rows))
        .set_max_row_group_bytes(Some(128 << 20))
        .set_sorting_columns(Some(vec![SortingColumn {
            column_idx: ts_idx as i32,
            descending: false,
            nulls_first: false,
        }]))
        .set_key_value_metadata(Some(vec![
            KeyValue::new("wiretrail.min_ts".into(), min_ts.to_string()),
            KeyValue::new("wiretrail.max_ts".into(), max_ts.to_string()),
        ]))
        .set_created_by(format!("wiretrail {}", env!("CARGO_PKG_VERSION")))
        .build()
}

fn ts_column(batch: &RecordBatch) -> &TimestampMicrosecondArray {
    batch
        .column_by_name(TS)
        .and_then(|c| c.as_any().downcast_ref::<TimestampMicrosecondArray>())
        .expect("batches were checked against the entry schema")
}

/// Sorts `batches` by `ts`, writes one file per UTC hour and returns their metadata. The
/// caller registers them in the catalog (together with the WAL positions they cover).
pub fn write_partitioned(
    dir: &DataDir,
    catalog: &Catalog,
    batches: &[RecordBatch],
    settings: &ParquetSettings,
) -> Result<Vec<FileMeta>, StorageError> {
    let all = concat_batches(&entry_schema(), batches)?;
    if all.num_rows() == 0 {
        return Ok(Vec::new());
    }
    let order = sort_to_indices(ts_column(&all), None, None)?;
    let sorted = take_record_batch(&all, &order)?;
    let ts = ts_column(&sorted).values().to_vec();

    let mut out = Vec::new();
    let mut start = 0;
    while start < ts.len() {
        let hour_end = hour_start(ts[start]) + HOUR_US;
        let end = start + ts[start..].partition_point(|t| *t < hour_end);
        let part = sorted.slice(start, end - start);
        out.push(write_file(
            dir,
            catalog,
            &part,
            ts[start],
            ts[end - 1],
            settings,
        )?);
        start = end;
    }
    Ok(out)
}

fn write_file(
    dir: &DataDir,
    catalog: &Catalog,
    batch: &RecordBatch,
    min_ts: Micros,
    max_ts: Micros,
    settings: &ParquetSettings,
) -> Result<FileMeta, StorageError> {
    let file_id = catalog.next_file_id();
    let rel = entry_file_name(0, min_ts, file_id);
    let path = dir.entry_file(&rel);
    let parent = path
        .parent()
        .expect("entry files live in a partition folder");
    std::fs::create_dir_all(parent).at(parent)?;
    let tmp = path.with_extension("parquet.tmp");
    let file = File::create(&tmp).at(&tmp)?;
    let parquet_err = |source| StorageError::Parquet {
        path: tmp.clone(),
        source,
    };
    let mut w = ArrowWriter::try_new(
        file,
        entry_schema(),
        Some(properties(settings, min_ts, max_ts)),
    )
    .map_err(parquet_err)?;
    w.write(batch).map_err(parquet_err)?;
    let file = w.into_inner().map_err(parquet_err)?;
    file.sync_all().at(&tmp)?;
    let bytes = file.metadata().at(&tmp)?.len();
    drop(file);
    std::fs::rename(&tmp, &path).at(&path)?;
    sync_dir(parent)?;
    Ok(FileMeta {
        path: rel,
        level: 0,
        file_id,
        min_ts,
        max_ts,
        rows: batch.num_rows() as u64,
        bytes,
    })
}

/// Makes a rename durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    File::open(dir).and_then(|d| d.sync_all()).at(dir)
}
