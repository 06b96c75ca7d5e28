use std::path::PathBuf;

use thiserror::Error;

/// Errors of the ingest service.
#[derive(Debug, Error)]
pub enum IngestError {
    #[error(transparent)]
    Storage(#[from] wiretrail_storage::StorageError),
    #[error("write-ahead log {path}: {source}")]
    Wal {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    #[error("bad batch from {agent}: {reason}")]
    BadBatch { agent: String, reason: String },
    #[error(
        "ingest is busy: {bytes} bytes of entries wait for Parquet (limit {limit}); retry later"
    )]
    Busy { bytes: usize, limit: usize },
    #[error("{0}")]
    Unavailable(String),
    /// Ingest refused the sender's credentials (UNAUTHENTICATED / PERMISSION_DENIED): retrying
    /// cannot help, so senders stop at once with this message.
    #[error("{0}")]
    Refused(String),
    #[error("ingest is shutting down")]
    ShuttingDown,
    #[error("background task failed: {0}")]
    Task(String),
}

impl IngestError {
    /// True when retrying cannot help (the server refused who we are).
    pub fn is_refused(&self) -> bool {
        matches!(self, IngestError::Refused(_))
    }
}

impl From<IngestError> for tonic::Status {
    fn from(e: IngestError) -> Self {
        match e {
            IngestError::BadBatch { .. } => tonic::Status::invalid_argument(e.to_string()),
            IngestError::ShuttingDown | IngestError::Unavailable(_) => {
                tonic::Status::unavailable(e.to_string())
            }
            IngestError::Busy { .. } => tonic::Status::resource_exhausted(e.to_string()),
            IngestError::Refused(_) => tonic::Status::permission_denied(e.to_string()),
            _ => tonic::Status::internal(e.to_string()),
        }
    }
}
