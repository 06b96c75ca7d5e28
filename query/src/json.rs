//! Entry rows as the JSON objects of the REST API.

use arrow::array::{Array, ArrayRef, AsArray, MapArray, RecordBatch, StringArray};
use arrow::compute::cast;
use arrow::datatypes::{
    DataType, Int32Type, Int64Type, TimestampMicrosecondType, UInt16Type, UInt64Type,
};
use base64::Engine;
use serde_json::{json, Map, Value};
use wiretrail_proto::schema::{self as s, IDENTITY_ATTRS};
use wiretrail_proto::EntryId;

use crate::time::format_ts;

/// Columns of the list view: everything but headers and bodies, which only the single-entry
/// view returns (so listing never reads them from Parquet).
pub fn list_columns() -> Vec<String> {
    let mut cols: Vec<String> = [
        s::ID,
        s::TS,
        s::ELAPSED_US,
        s::NODE,
        s::PROTOCOL,
        s::CAPTURE,
        s::SRC_IP,
        s::DST_IP,
        s::SRC_PORT,
        s::DST_PORT,
        s::METHOD,
        s::PATH,
        s::STATUS,
        s::STATUS_TEXT,
        s::REQUEST_SIZE,
        s::RESPONSE_SIZE,
    ]
    .iter()
    .map(|c| c.to_string())
    .collect();
    for side in ["src", "dst"] {
        for a in IDENTITY_ATTRS {
            cols.push(format!("{side}_{a}"));
        }
    }
    cols
}

/// Column accessor that tolerates projections (missing columns read as null).
struct Row<'a> {
    batch: &'a RecordBatch,
    strings: std::collections::HashMap<String, StringArray>,
}

fn as_utf8(col: &ArrayRef) -> Option<StringArray> {
    match col.data_type() {
        DataType::Utf8 => Some(col.as_string::<i32>().clone()),
        _ => cast(col, &DataType::Utf8)
            .ok()
            .map(|c| c.as_string::<i32>().clone()),
    }
}

impl<'a> Row<'a> {
    fn new(batch: &'a RecordBatch) -> Self {
        Row {
            batch,
            strings: Default::default(),
        }
    }

    fn col(&self, name: &str) -> Option<&ArrayRef> {
        self.batch.column_by_name(name)
    }

    fn string(&mut self, name: &str, i: usize) -> Value {
        if !self.strings.contains_key(name) {
            match self.col(name).and_then(as_utf8) {
                Some(a) => {
                    self.strings.insert(name.to_string(), a);
                }
                None => return Value::Null,
            }
        }
        let a = &self.strings[name];
        if a.is_null(i) {
            Value::Null
        } else {
            Value::String(a.value(i).to_string())
        }
    }
}

fn num<T: arrow::datatypes::ArrowPrimitiveType>(batch: &RecordBatch, name: &str, i: usize) -> Value
where
    T::Native: Into<Value>,
{
    match batch.column_by_name(name) {
        Some(c) if !c.is_null(i) => c.as_primitive::<T>().value(i).into(),
        _ => Value::Null,
    }
}

fn headers(batch: &RecordBatch, name: &str, i: usize) -> Value {
    let Some(col) = batch.column_by_name(name) else {
        return Value::Null;
    };
    if col.is_null(i) {
        return Value::Null;
    }
    let map: &MapArray = col.as_map();
    let entries = map.value(i);
    let keys = entries.column(0).as_string::<i32>();
    let values = entries.column(1).as_string::<i32>();
    Value::Array(
        (0..entries.len())
            .map(|j| json!({"name": keys.value(j), "value": if values.is_null(j) { Value::Null } else { values.value(j).into() }}))
            .collect(),
    )
}

fn body(batch: &RecordBatch, name: &str, truncated: &str, i: usize) -> Value {
    let Some(col) = batch.column_by_name(name) else {
        return Value::Null;
    };
    if col.is_null(i) {
        return Value::Null;
    }
    let bytes = col.as_binary::<i32>().value(i);
    let trunc = batch
        .column_by_name(truncated)
        .map(|c| c.as_boolean().value(i))
        .unwrap_or(false);
    let (encoding, data) = match std::str::from_utf8(bytes) {
        Ok(s) => ("utf8", s.to_string()),
        Err(_) => (
            "base64",
            base64::engine::general_purpose::STANDARD.encode(bytes),
        ),
    };
    json!({"encoding": encoding, "data": data, "truncated": trunc, "size": bytes.len()})
}

fn detail(row: &mut Row, name: &str, i: usize) -> Value {
    match row.string(name, i) {
        Value::String(s) => serde_json::from_str(&s).unwrap_or(Value::String(s)),
        other => other,
    }
}

/// Converts every row of `batch` to an entry object; `full` adds headers, bodies and detail.
pub fn batch_to_json(batch: &RecordBatch, full: bool) -> Vec<Value> {
    let mut row = Row::new(batch);
    let ids = batch
        .column_by_name(s::ID)
        .map(|c| c.as_fixed_size_binary().clone());
    (0..batch.num_rows())
        .map(|i| {
            let mut o = Map::new();
            let id = ids
                .as_ref()
                .and_then(|a| <[u8; 16]>::try_from(a.value(i)).ok())
                .map(|b| EntryId(b).to_string());
            o.insert("id".into(), id.map(Value::String).unwrap_or(Value::Null));
            let ts = batch
                .column_by_name(s::TS)
                .map(|c| c.as_primitive::<TimestampMicrosecondType>().value(i));
            o.insert(
                "ts".into(),
                ts.map(|t| Value::String(format_ts(t)))
                    .unwrap_or(Value::Null),
            );
            o.insert("ts_us".into(), ts.map(Value::from).unwrap_or(Value::Null));
            o.insert("protocol".into(), row.string(s::PROTOCOL, i));
            o.insert("method".into(), row.string(s::METHOD, i));
            o.insert("path".into(), row.string(s::PATH, i));
            o.insert("status".into(), num::<Int32Type>(batch, s::STATUS, i));
            o.insert("status_text".into(), row.string(s::STATUS_TEXT, i));
            o.insert(
                "elapsed_us".into(),
                num::<Int64Type>(batch, s::ELAPSED_US, i),
            );
            o.insert("node".into(), row.string(s::NODE, i));
            o.insert("capture".into(), row.string(s::CAPTURE, i));
            o.insert(
                "request_size".into(),
                num::<UInt64Type>(batch, s::REQUEST_SIZE, i),
            );
            o.insert(
                "response_size".into(),
                num::<UInt64Type>(batch, s::RESPONSE_SIZE, i),
            );
            for (side, ip, port) in [
                ("src", s::SRC_IP, s::SRC_PORT),
                ("dst", s::DST_IP, s::DST_PORT),
            ] {
                let mut e = Map::new();
                e.insert("ip".into(), row.string(ip, i));
                e.insert("port".into(), num::<UInt16Type>(batch, port, i));
                for a in IDENTITY_ATTRS {
                    e.insert(a.into(), row.string(&format!("{side}_{a}"), i));
                }
                o.insert(side.into(), Value::Object(e));
            }
            if full {
                o.insert(
                    "request_headers".into(),
                    headers(batch, s::REQUEST_HEADERS, i),
                );
                o.insert(
                    "response_headers".into(),
                    headers(batch, s::RESPONSE_HEADERS, i),
                );
                o.insert(
                    "request_body".into(),
                    body(batch, s::REQUEST_BODY, s::REQUEST_BODY_TRUNCATED, i),
                );
                o.insert(
                    "response_body".into(),
                    body(batch, s::RESPONSE_BODY, s::RESPONSE_BODY_TRUNCATED, i),
                );
                o.insert("request".into(), detail(&mut row, s::REQUEST, i));
                o.insert("response".into(), detail(&mut row, s::RESPONSE, i));
            }
            Value::Object(o)
        })
        .collect()
}
