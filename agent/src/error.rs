use std::path::PathBuf;

use thiserror::Error;

/// Errors of the agent: reading captures and configuration. Malformed packets are not errors
/// (they are counted in [`crate::PipelineStats`]); a capture file that cannot be read is.
#[derive(Debug, Error)]
pub enum AgentError {
    #[error("cannot open {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a pcap or pcapng file ({reason})")]
    NotACapture { path: PathBuf, reason: String },
    #[error("{path}: corrupt capture at byte {offset}: {reason}")]
    Corrupt {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
    #[error("identities file {path}: {reason}")]
    Identities { path: PathBuf, reason: String },
    #[error("{0}")]
    Config(String),
    #[error("Kubernetes: {0}")]
    Kubernetes(String),
    #[error("TLS key log {path}: {reason}")]
    KeyLog { path: PathBuf, reason: String },
}
