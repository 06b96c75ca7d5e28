//! The entry Arrow schema (DESIGN.md "The entry"). Column names are constants so that the
//! query compiler, the writer and the REST layer cannot drift apart.

use std::sync::{Arc, OnceLock};

use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};

pub const ID: &str = "id";
pub const TS: &str = "ts";
pub const ELAPSED_US: &str = "elapsed_us";
pub const NODE: &str = "node";
pub const PROTOCOL: &str = "protocol";
pub const CAPTURE: &str = "capture";
pub const SRC_IP: &str = "src_ip";
pub const DST_IP: &str = "dst_ip";
pub const SRC_PORT: &str = "src_port";
pub const DST_PORT: &str = "dst_port";
pub const METHOD: &str = "method";
pub const PATH: &str = "path";
pub const STATUS: &str = "status";
pub const STATUS_TEXT: &str = "status_text";
pub const REQUEST_SIZE: &str = "request_size";
pub const RESPONSE_SIZE: &str = "response_size";
pub const REQUEST_HEADERS: &str = "request_headers";
pub const RESPONSE_HEADERS: &str = "response_headers";
pub const REQUEST_BODY: &str = "request_body";
pub const RESPONSE_BODY: &str = "response_body";
pub const REQUEST_BODY_TRUNCATED: &str = "request_body_truncated";
pub const RESPONSE_BODY_TRUNCATED: &str = "response_body_truncated";
pub const REQUEST: &str = "request";
pub const RESPONSE: &str = "response";

/// Identity attributes kept for each side, as `src_<attr>` and `dst_<attr>` columns.
pub const IDENTITY_ATTRS: [&str; 6] = ["name", "namespace", "pod", "service", "workload", "node"];

/// Bodies longer than this are cut and flagged `*_truncated`.
pub const DEFAULT_BODY_CAP: usize = 64 * 1024;

/// `Dictionary(Int32, Utf8)`: low-cardinality strings (node, protocol, identities).
pub fn dict() -> DataType {
    DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8))
}

/// `Timestamp(µs, UTC)`, the type of `ts`.
pub fn ts_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

/// `Map<Utf8, Utf8>` for headers; names keep their case, lookups are case-insensitive.
pub fn headers_type() -> DataType {
    let entries = Field::new(
        "entries",
        DataType::Struct(Fields::from(vec![
            Field::new("keys", DataType::Utf8, false),
            Field::new("values", DataType::Utf8, true),
        ])),
        false,
    );
    DataType::Map(Arc::new(entries), false)
}

/// The entry schema, built once.
pub fn entry_schema() -> SchemaRef {
    static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            let mut fields = vec![
                Field::new(ID, DataType::FixedSizeBinary(16), false),
                Field::new(TS, ts_type(), false),
                Field::new(ELAPSED_US, DataType::Int64, true),
                Field::new(NODE, dict(), false),
                Field::new(PROTOCOL, dict(), false),
                Field::new(CAPTURE, dict(), false),
                Field::new(SRC_IP, DataType::Utf8, false),
                Field::new(DST_IP, DataType::Utf8, false),
                Field::new(SRC_PORT, DataType::UInt16, false),
                Field::new(DST_PORT, DataType::UInt16, false),
            ];
            for side in ["src", "dst"] {
                for attr in IDENTITY_ATTRS {
                    fields.push(Field::new(format!("{side}_{attr}"), dict(), attr != "name"));
                }
            }
            fields.extend([
                Field::new(METHOD, DataType::Utf8, true),
                Field::new(PATH, DataType::Utf8, true),
                Field::new(STATUS, DataType::Int32, true),
                Field::new(STATUS_TEXT, DataType::Utf8, true),
                Field::new(REQUEST_SIZE, DataType::UInt64, false),
                Field::new(RESPONSE_SIZE, DataType::UInt64, false),
                Field::new(REQUEST_HEADERS, headers_type(), true),
                Field::new(RESPONSE_HEADERS, headers_type(), true),
                Field::new(REQUEST_BODY, DataType::Binary, true),
                Field::new(RESPONSE_BODY, DataType::Binary, true),
                Field::new(REQUEST_BODY_TRUNCATED, DataType::Boolean, false),
                Field::new(RESPONSE_BODY_TRUNCATED, DataType::Boolean, false),
                Field::new(REQUEST, DataType::Utf8, true),
                Field::new(RESPONSE, DataType::Utf8, true),
            ]);
            Arc::new(Schema::new(fields))
        })
        .clone()
}

/// Checks that a batch received from the network has exactly the entry schema.
pub fn check_schema(schema: &Schema) -> Result<(), crate::ProtoError> {
    let expected = entry_schema();
    if schema.fields().len() != expected.fields().len() {
        return Err(crate::ProtoError::Schema(format!(
            "{} columns, expected {}",
            schema.fields().len(),
            expected.fields().len()
        )));
    }
    for (got, want) in schema.fields().iter().zip(expected.fields()) {
        if got.name() != want.name() || got.data_type() != want.data_type() {
            return Err(crate::ProtoError::Schema(format!(
                "column {} {:?}, expected {} {:?}",
                got.name(),
                got.data_type(),
                want.name(),
                want.data_type()
            )));
        }
    }
    Ok(())
}

/// Whether an entry counts as an error on the service map and in the rollups: HTTP-family
/// statuses ≥ 500 (the server failed; 4xx are the client's business, as in Linkerd and Istio),
/// any non-zero status elsewhere (gRPC status, DNS rcode, Kafka error code, AMQP reply code ≥
/// 300, Redis/Postgres error markers). One definition so rollups and SQL agree.
pub fn is_error(protocol: &str, status: Option<i32>) -> bool {
    match (protocol, status) {
        (_, None) => false,
        ("http" | "http2" | "graphql", Some(s)) => s >= 500,
        ("amqp", Some(s)) => s >= 300,
        (_, Some(s)) => s != 0,
    }
}

/// The status classes of the volume histogram, in [`status_class`] order.
pub const STATUS_CLASSES: [&str; 7] = ["2xx", "3xx", "4xx", "5xx", "ok", "error", "other"];

/// An entry's status class (index into [`STATUS_CLASSES`]): HTTP-family statuses by their
/// hundreds (1xx and a missing status are `other`); elsewhere `error` as in [`is_error`], `ok`
/// for any other status, `other` without one. One definition so rollups and scans agree.
pub fn status_class(protocol: &str, status: Option<i32>) -> usize {
    match (protocol, status) {
        (_, None) => 6,
        ("http" | "http2" | "graphql", Some(s)) => match s {
            200..=299 => 0,
            300..=399 => 1,
            400..=499 => 2,
            500..=599 => 3,
            _ => 6,
        },
        (p, s) if is_error(p, s) => 5,
        _ => 4,
    }
}
