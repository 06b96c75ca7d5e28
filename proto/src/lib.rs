//! The one definition of what a wiretrail entry is: its Arrow schema ([`schema`]), the Rust
//! value an agent fills ([`Entry`]), the builder that turns entries into Arrow batches
//! ([`EntryBatchBuilder`]), entry ids ([`EntryId`]) and the ingest wire messages ([`ingest`]).
//!
//! Every other crate takes the schema from here, so a column is added in exactly one place.

mod builder;
mod entry;
mod error;
mod id;
pub mod schema;
mod text;

pub use builder::EntryBatchBuilder;
pub use entry::{Endpoint, Entry, Identity};
pub use error::ProtoError;
pub use id::EntryId;
pub use text::url_decode;

/// Messages that identify and acknowledge batches on the Flight DoPut stream (`proto/ingest.proto`).
pub mod ingest {
    include!(concat!(env!("OUT_DIR"), "/wiretrail.ingest.v1.rs"));
}
