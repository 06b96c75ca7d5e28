use std::path::PathBuf;

use thiserror::Error;

/// Errors of the storage engine. Each names the file or directory it concerns.
#[derive(Debug, Error)]
pub enum StorageError {
    #[error("data directory {dir} is in use by another wiretrail process{holder}; stop it or talk to it with --server")]
    InUse { dir: PathBuf, holder: String },
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("RocksDB index at {path}: {source}")]
    Rocks {
        path: PathBuf,
        #[source]
        source: rocksdb::Error,
    },
    #[error("Parquet file {path}: {source}")]
    Parquet {
        path: PathBuf,
        #[source]
        source: parquet::errors::ParquetError,
    },
    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    #[error("corrupt catalog record {key}: {reason}")]
    CorruptCatalog { key: String, reason: String },
    #[error("object storage configuration: {0}")]
    RemoteConfig(String),
    #[error("S3 {op} s3://{bucket}/{key}: {source}")]
    Remote {
        op: &'static str,
        bucket: String,
        key: String,
        #[source]
        source: Box<object_store::Error>,
    },
    /// Kept apart from [`StorageError::Remote`] so tiering can tell "already gone" from failure.
    #[error("S3 object s3://{bucket}/{key} not found: {source}")]
    RemoteNotFound {
        bucket: String,
        key: String,
        #[source]
        source: Box<object_store::Error>,
    },
    #[error("S3 {op} s3://{bucket}/{key}: expected {expected} bytes, found {actual}")]
    RemoteSize {
        op: &'static str,
        bucket: String,
        key: String,
        expected: u64,
        actual: u64,
    },
}

pub(crate) trait IoContext<T> {
    fn at(self, path: &std::path::Path) -> Result<T, StorageError>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, path: &std::path::Path) -> Result<T, StorageError> {
        self.map_err(|source| StorageError::Io {
            path: path.to_path_buf(),
            source,
        })
    }
}
