//! Column builders for the entry schema: entries in, one Arrow `RecordBatch` out.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BinaryBuilder, BooleanBuilder, FixedSizeBinaryBuilder, Int32Builder, Int64Builder,
    MapBuilder, StringBuilder, StringDictionaryBuilder, TimestampMicrosecondBuilder, UInt16Builder,
    UInt64Builder,
};
use arrow::datatypes::Int32Type;
use arrow::record_batch::RecordBatch;

use crate::schema::entry_schema;
use crate::{Entry, Identity, ProtoError};

type DictBuilder = StringDictionaryBuilder<Int32Type>;

/// Accumulates entries column by column.
pub struct EntryBatchBuilder {
    rows: usize,
    id: FixedSizeBinaryBuilder,
    ts: TimestampMicrosecondBuilder,
    elapsed_us: Int64Builder,
    node: DictBuilder,
    protocol: DictBuilder,
    capture: DictBuilder,
    src_ip: StringBuilder,
    dst_ip: StringBuilder,
    src_port: UInt16Builder,
    dst_port: UInt16Builder,
    src_identity: IdentityBuilders,
    dst_identity: IdentityBuilders,
    method: StringBuilder,
    path: StringBuilder,
    status: Int32Builder,
    status_text: StringBuilder,
    request_size: UInt64Builder,
    response_size: UInt64Builder,
    request_headers: MapBuilder<StringBuilder, StringBuilder>,
    response_headers: MapBuilder<StringBuilder, StringBuilder>,
    request_body: BinaryBuilder,
    response_body: BinaryBuilder,
    request_body_truncated: BooleanBuilder,
    response_body_truncated: BooleanBuilder,
    request: StringBuilder,
    response: StringBuilder,
}

#[derive(Default)]
struct IdentityBuilders {
    name: DictBuilder,
    namespace: DictBuilder,
    pod: DictBuilder,
    service: DictBuilder,
    workload: DictBuilder,
    node: DictBuilder,
}

impl IdentityBuilders {
    fn append(&mut self, id: &Identity) {
        self.name.append_value(&id.name);
        self.namespace.append_option(id.namespace.as_deref());
        self.pod.append_option(id.pod.as_deref());
        self.service.append_option(id.service.as_deref());
        self.workload.append_option(id.workload.as_deref());
        self.node.append_option(id.node.as_deref());
    }

    /// In the order of `schema::IDENTITY_ATTRS`.
    fn finish(&mut self) -> [ArrayRef; 6] {
        [
            Arc::new(self.name.finish()),
            Arc::new(self.namespace.finish()),
            Arc::new(self.pod.finish()),
            Arc::new(self.service.finish()),
            Arc::new(self.workload.finish()),
            Arc::new(self.node.finish()),
        ]
    }
}

fn append_headers(
    b: &mut MapBuilder<StringBuilder, StringBuilder>,
    h: Option<&[(String, String)]>,
) {
    match h {
        None => b
            .append(false)
            .expect("map builder keys and values stay aligned"),
        Some(h) => {
            for (k, v) in h {
                b.keys().append_value(k);
                b.values().append_value(v);
            }
            b.append(true)
                .expect("map builder keys and values stay aligned");
        }
    }
}

impl Default for EntryBatchBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl EntryBatchBuilder {
    pub fn new() -> Self {
        EntryBatchBuilder {
            rows: 0,
            id: FixedSizeBinaryBuilder::new(16),
            ts: TimestampMicrosecondBuilder::new().with_timezone("UTC"),
            elapsed_us: Int64Builder::new(),
            node: DictBuilder::new(),
            protocol: DictBuilder::new(),
            capture: DictBuilder::new(),
            src_ip: StringBuilder::new(),
            dst_ip: StringBuilder::new(),
            src_port: UInt16Builder::new(),
            dst_port: UInt16Builder::new(),
            src_identity: IdentityBuilders::default(),
            dst_identity: IdentityBuilders::default(),
            method: StringBuilder::new(),
            path: StringBuilder::new(),
            status: Int32Builder::new(),
            status_text: StringBuilder::new(),
            request_size: UInt64Builder::new(),
            response_size: UInt64Builder::new(),
            request_headers: MapBuilder::new(None, StringBuilder::new(), StringBuilder::new()),
            response_headers: MapBuilder::new(None, StringBuilder::new(), StringBuilder::new()),
            request_body: BinaryBuilder::new(),
            response_body: BinaryBuilder::new(),
            request_body_truncated: BooleanBuilder::new(),
            response_body_truncated: BooleanBuilder::new(),
            request: StringBuilder::new(),
            response: StringBuilder::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.rows
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    pub fn push(&mut self, e: &Entry) {
        self.rows += 1;
        self.id
            .append_value(e.id.0)
            .expect("ids are always 16 bytes");
        self.ts.append_value(e.ts_us);
        self.elapsed_us.append_option(e.elapsed_us);
        self.node.append_value(&e.node);
        self.protocol.append_value(&e.protocol);
        self.capture.append_value(&e.capture);
        self.src_ip.append_value(&e.src.ip);
        self.dst_ip.append_value(&e.dst.ip);
        self.src_port.append_value(e.src.port);
        self.dst_port.append_value(e.dst.port);
        self.src_identity.append(&e.src.identity);
        self.dst_identity.append(&e.dst.identity);
        self.method.append_option(e.method.as_deref());
        self.path.append_option(e.path.as_deref());
        self.status.append_option(e.status);
        self.status_text.append_option(e.status_text.as_deref());
        self.request_size.append_value(e.request_size);
        self.response_size.append_value(e.response_size);
        append_headers(&mut self.request_headers, e.request_headers.as_deref());
        append_headers(&mut self.response_headers, e.response_headers.as_deref());
        self.request_body.append_option(e.request_body.as_deref());
        self.response_body.append_option(e.response_body.as_deref());
        self.request_body_truncated
            .append_value(e.request_body_truncated);
        self.response_body_truncated
            .append_value(e.response_body_truncated);
        self.request.append_option(e.request.as_deref());
        self.response.append_option(e.response.as_deref());
    }

    /// Returns the accumulated rows as one batch and resets the builder.
    pub fn finish(&mut self) -> Result<RecordBatch, ProtoError> {
        self.rows = 0;
        let mut cols: Vec<ArrayRef> = vec![
            Arc::new(self.id.finish()),
            Arc::new(self.ts.finish()),
            Arc::new(self.elapsed_us.finish()),
            Arc::new(self.node.finish()),
            Arc::new(self.protocol.finish()),
            Arc::new(self.capture.finish()),
            Arc::new(self.src_ip.finish()),
            Arc::new(self.dst_ip.finish()),
            Arc::new(self.src_port.finish()),
            Arc::new(self.dst_port.finish()),
        ];
        cols.extend(self.src_identity.finish());
        cols.extend(self.dst_identity.finish());
        cols.extend([
            Arc::new(self.method.finish()) as ArrayRef,
            Arc::new(self.path.finish()),
            Arc::new(self.status.finish()),
            Arc::new(self.status_text.finish()),
            Arc::new(self.request_size.finish()),
            Arc::new(self.response_size.finish()),
            Arc::new(self.request_headers.finish()),
            Arc::new(self.response_headers.finish()),
            Arc::new(self.request_body.finish()),
            Arc::new(self.response_body.finish()),
            Arc::new(self.request_body_truncated.finish()),
            Arc::new(self.response_body_truncated.finish()),
            Arc::new(self.request.finish()),
            Arc::new(self.response.finish()),
        ]);
        Ok(RecordBatch::try_new(entry_schema(), cols)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Endpoint, EntryId};

    #[test]
    fn builds_a_batch_with_the_entry_schema() {
        let mut e = Entry::new(EntryId::new(1, "n", 1), 1, "n", "http", "pcap");
        e.src = Endpoint {
            ip: "10.0.0.1".into(),
            port: 1234,
            identity: Identity {
                name: "10.0.0.1".into(),
                ..Default::default()
            },
        };
        e.request_headers = Some(vec![("Host".into(), "x".into())]);
        let mut b = EntryBatchBuilder::new();
        b.push(&e);
        b.push(&e);
        let batch = b.finish().unwrap();
        assert_eq!(batch.num_rows(), 2);
        crate::schema::check_schema(&batch.schema()).unwrap();
        assert!(b.is_empty());
    }
}
