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
    #[error("redaction rule: {0}")]
    Redaction(String),
    #[error("live capture: {0}")]
    Capture(String),
    /// The process may not open packet sockets (not root, no CAP_NET_RAW).
    #[error("live capture not permitted: {0}")]
    CaptureNotPermitted(String),
    #[error("filter {expr:?}: {reason}")]
    Filter { expr: String, reason: String },
    #[error("{0}")]
    Config(String),
    #[error("Kubernetes: {0}")]
    Kubernetes(String),
    /// eBPF capture cannot run here (privileges, kernel features, verifier, no libssl): the
    /// agent falls back to AF_PACKET.
    #[error("eBPF TLS capture not supported here: {0}")]
    EbpfNotSupported(String),
    #[error("eBPF TLS capture failed: {0}")]
    Ebpf(String),
    #[error("TLS key log {path}: {reason}")]
    KeyLog { path: PathBuf, reason: String },
}
