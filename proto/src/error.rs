use thiserror::Error;

/// Errors of the proto crate: building batches and decoding ids.
#[derive(Debug, Error)]
pub enum ProtoError {
    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    #[error("invalid entry id {0:?}: expected 26 base32hex characters")]
    BadId(String),
    #[error("batch does not have the entry schema: {0}")]
    Schema(String),
}
