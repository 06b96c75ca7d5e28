//! The agent's data path, one module per stage:
//! `capture` (pcap/pcapng files, link and IP decoding) → `reassembly` (TCP streams, UDP flows)
//! → `dissect` (one file per protocol behind the [`dissect::Dissector`] trait, pairing requests
//! with responses) → `identity` (IP → pod/service at capture time) → `redact` (secrets out before the
//! entry leaves the node) → [`Pipeline`], which hands
//! out finished [`wiretrail_proto::Entry`] values for batching and shipping.

pub mod capture;
pub mod dissect;
mod error;
mod flow;
pub mod identity;
pub mod keylog;
mod pipeline;
pub mod reassembly;
pub mod redact;

pub use capture::{CaptureReader, CaptureStats, LinkType, LiveCapture, LiveConfig, Packet};
pub use error::AgentError;
pub use identity::{IdentityHistory, IdentityMap, IdentityResolver, IdentityStats, PodFilter};
pub use keylog::KeyLog;
pub use pipeline::{Pipeline, PipelineConfig, PipelineStats, StreamMark};
pub use redact::{RedactionCounts, Redactor};

/// Wall-clock time in µs since the Unix epoch: the capture clock of live capture.
pub fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}
