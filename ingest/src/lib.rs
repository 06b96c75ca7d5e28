//! The ingest service: an Arrow Flight `DoPut` endpoint in front of a write-ahead log, a
//! queryable buffer and a flusher that writes time-partitioned Parquet and registers it in the
//! RocksDB catalog. An acknowledgement means the batch is fsynced and queryable; a resent batch
//! (same agent and sequence number) is acknowledged without being stored twice.

mod buffer;
mod client;
mod error;
mod flight;
mod metrics;
mod store;
mod util;
pub mod wal;

pub use client::{BearerToken, IngestClient, SendStats, SenderConfig};
pub use error::IngestError;
pub use flight::IngestFlightService;
pub use store::{
    Appended, ExtraMetrics, Ingest, IngestConfig, IngestCounters, MaintenanceReport, Snapshot,
};

#[cfg(test)]
mod tests;
