//! The storage engine: time-partitioned Parquet files under `<data>/entries/` and the RocksDB
//! catalog under `<data>/index/` that says which files exist, which time range each covers and
//! which agent batches they contain. [`paths`] is the one place that knows the layout;
//! [`remote`] keeps the same layout in an S3-compatible bucket for closed hours.

mod catalog;
mod error;
mod lock;
pub mod paths;
pub mod remote;
mod writer;

pub use catalog::{Catalog, FileMeta};
pub use error::StorageError;
pub use lock::DataDirLock;
pub use remote::{RemoteObject, RemoteStore, S3Config};
pub use writer::{write_partitioned, ParquetSettings};

/// µs since the epoch; every timestamp in the storage API uses it.
pub type Micros = i64;
