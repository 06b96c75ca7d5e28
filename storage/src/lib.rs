//! The storage engine: time-partitioned Parquet files under `<data>/entries/`, the RocksDB
//! catalog under `<data>/index/` that indexes them (files, tags, rollups, pins, agent
//! sequence numbers), per-hour manifests that let the catalog be rebuilt from the files,
//! compaction and retention. [`paths`] is the one place that knows the layout; [`remote`]
//! keeps the same layout in an S3-compatible bucket for closed hours.

mod catalog;
mod compact;
mod error;
mod facts;
mod lock;
mod manifest;
pub mod paths;
pub mod remote;
mod retention;
pub mod rollup;
mod writer;

pub use catalog::{Catalog, FileMeta, Pin, VolumeRow};
pub use compact::{backlog as compaction_backlog, compact, CompactionConfig, CompactionReport};
pub use error::StorageError;
pub use facts::{
    merge_rollups, rollups as batch_rollups, tags as batch_tags, FileTags, TagKind, ROLLUP_COLUMNS,
};
pub use lock::DataDirLock;
pub use manifest::{
    rebuild_index, repair, write_manifest, write_pins, RebuildReport, RepairReport,
};
pub use remote::{RemoteObject, RemoteStore, S3Config};
pub use retention::{apply_retention, disk_usage, RetentionConfig, RetentionReport};
pub use writer::{write_partitioned, ParquetSettings, SourceBatch};

/// µs since the epoch; every timestamp in the storage API uses it.
pub type Micros = i64;
