//! The Rust value of one entry, filled by the agent's pairing stage.

use serde::{Deserialize, Serialize};

use crate::EntryId;

/// Who an address belonged to at capture time. Unknown addresses keep `name` = the IP.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Identity {
    pub name: String,
    pub namespace: Option<String>,
    pub pod: Option<String>,
    pub service: Option<String>,
    pub workload: Option<String>,
    pub node: Option<String>,
}

/// One side of an exchange.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Endpoint {
    pub ip: String,
    pub port: u16,
    pub identity: Identity,
}

/// One request/response pair or one-way message. See DESIGN.md for the meaning of each field.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub id: EntryId,
    /// First byte of the request, µs since the epoch.
    pub ts_us: i64,
    /// Response first byte − request first byte; `None` without a response.
    pub elapsed_us: Option<i64>,
    pub node: String,
    pub protocol: String,
    pub capture: String,
    pub src: Endpoint,
    pub dst: Endpoint,
    pub method: Option<String>,
    pub path: Option<String>,
    pub status: Option<i32>,
    pub status_text: Option<String>,
    pub request_size: u64,
    pub response_size: u64,
    /// `None` when the protocol has no headers; names keep their case.
    pub request_headers: Option<Vec<(String, String)>>,
    pub response_headers: Option<Vec<(String, String)>>,
    pub request_body: Option<Vec<u8>>,
    pub response_body: Option<Vec<u8>>,
    pub request_body_truncated: bool,
    pub response_body_truncated: bool,
    /// Protocol detail as a JSON object (text).
    pub request: Option<String>,
    pub response: Option<String>,
}

impl Entry {
    /// An entry with everything optional left empty.
    pub fn new(id: EntryId, ts_us: i64, node: &str, protocol: &str, capture: &str) -> Self {
        Entry {
            id,
            ts_us,
            elapsed_us: None,
            node: node.to_string(),
            protocol: protocol.to_string(),
            capture: capture.to_string(),
            src: Endpoint::default(),
            dst: Endpoint::default(),
            method: None,
            path: None,
            status: None,
            status_text: None,
            request_size: 0,
            response_size: 0,
            request_headers: None,
            response_headers: None,
            request_body: None,
            response_body: None,
            request_body_truncated: false,
            response_body_truncated: false,
            request: None,
            response: None,
        }
    }
}
