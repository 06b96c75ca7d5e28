//! What the catalog remembers about the rows of a file besides where it is: its tag values
//! (node, namespace, service, protocol: for pruning and instant "distinct values") and its
//! per-minute service-map rollups. Both are computed from dictionary keys first and turned into
//! strings once per distinct group, so a 1M-row flush costs a few hash lookups per row.

use std::collections::{BTreeSet, HashMap};

use arrow::array::{
    Array, AsArray, DictionaryArray, Int32Array, Int64Array, StringArray, UInt64Array,
};
use arrow::datatypes::{Int32Type, TimestampMicrosecondType};
use arrow::record_batch::RecordBatch;
use serde::{Deserialize, Serialize};
use wiretrail_proto::schema::{self, is_error, status_class};

use crate::rollup::{Rollup, RollupKey, Side};

/// Distinct tag values of one file. Namespaces and services are those of either side.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileTags {
    pub node: BTreeSet<String>,
    pub namespace: BTreeSet<String>,
    pub service: BTreeSet<String>,
    pub protocol: BTreeSet<String>,
}

impl FileTags {
    /// `(kind, values)` pairs; `kind` is the byte used in the tag index keys.
    pub fn kinds(&self) -> [(TagKind, &BTreeSet<String>); 4] {
        [
            (TagKind::Node, &self.node),
            (TagKind::Namespace, &self.namespace),
            (TagKind::Service, &self.service),
            (TagKind::Protocol, &self.protocol),
        ]
    }

    pub fn merge(&mut self, other: &FileTags) {
        self.node.extend(other.node.iter().cloned());
        self.namespace.extend(other.namespace.iter().cloned());
        self.service.extend(other.service.iter().cloned());
        self.protocol.extend(other.protocol.iter().cloned());
    }
}

/// The tag dimensions the catalog indexes per hour.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TagKind {
    Node = 1,
    Namespace = 2,
    Service = 3,
    Protocol = 4,
}

impl TagKind {
    pub fn parse(s: &str) -> Option<TagKind> {
        Some(match s {
            "node" => TagKind::Node,
            "namespace" => TagKind::Namespace,
            "service" => TagKind::Service,
            "protocol" => TagKind::Protocol,
            _ => return None,
        })
    }
}

fn dict<'a>(batch: &'a RecordBatch, name: &str) -> &'a DictionaryArray<Int32Type> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_dictionary_opt::<Int32Type>())
        .expect("batches are checked against the entry schema")
}

fn dict_values(d: &DictionaryArray<Int32Type>) -> &StringArray {
    d.values().as_string::<i32>()
}

/// Values of a dictionary column that rows actually reference (a slice keeps the whole
/// dictionary).
fn referenced(d: &DictionaryArray<Int32Type>, out: &mut BTreeSet<String>) {
    let values = dict_values(d);
    let mut seen = vec![false; values.len()];
    for k in d.keys().iter().flatten() {
        if let Some(s) = seen.get_mut(k as usize) {
            *s = true;
        }
    }
    for (i, s) in seen.into_iter().enumerate() {
        if s && values.is_valid(i) {
            out.insert(values.value(i).to_string());
        }
    }
}

/// Tag values of a batch.
pub fn tags(batch: &RecordBatch) -> FileTags {
    let mut t = FileTags::default();
    referenced(dict(batch, schema::NODE), &mut t.node);
    referenced(dict(batch, schema::PROTOCOL), &mut t.protocol);
    for side in ["src", "dst"] {
        referenced(dict(batch, &format!("{side}_namespace")), &mut t.namespace);
        referenced(dict(batch, &format!("{side}_service")), &mut t.service);
    }
    t
}

const MINUTE_US: i64 = 60_000_000;

/// The columns [`rollups`] reads (enough to recompute rollups from a file).
pub const ROLLUP_COLUMNS: [&str; 18] = [
    "ts",
    "protocol",
    "src_name",
    "src_namespace",
    "src_service",
    "src_workload",
    "src_pod",
    "src_node",
    "dst_name",
    "dst_namespace",
    "dst_service",
    "dst_workload",
    "dst_pod",
    "dst_node",
    "status",
    "elapsed_us",
    "request_size",
    "response_size",
];
/// Identity columns that make up a rollup side, in [`Side`] field order.
const SIDE_ATTRS: [&str; 6] = ["name", "namespace", "service", "workload", "pod", "node"];

/// Per-minute service-map rollups of a batch: (minute, protocol, src identity, dst identity) →
/// count, errors, bytes and a latency sketch.
pub fn rollups(batch: &RecordBatch) -> HashMap<RollupKey, Rollup> {
    let ts = batch
        .column_by_name(schema::TS)
        .expect("ts")
        .as_primitive::<TimestampMicrosecondType>();
    let protocol = dict(batch, schema::PROTOCOL);
    let sides: Vec<Vec<&DictionaryArray<Int32Type>>> = ["src", "dst"]
        .iter()
        .map(|s| {
            SIDE_ATTRS
                .iter()
                .map(|a| dict(batch, &format!("{s}_{a}")))
                .collect()
        })
        .collect();
    let status = batch
        .column_by_name(schema::STATUS)
        .and_then(|c| c.as_any().downcast_ref::<arrow::array::Int32Array>())
        .expect("status");
    let elapsed = batch
        .column_by_name(schema::ELAPSED_US)
        .and_then(|c| c.as_any().downcast_ref::<Int64Array>())
        .expect("elapsed_us");
    let size = |name| {
        batch
            .column_by_name(name)
            .and_then(|c| c.as_any().downcast_ref::<UInt64Array>())
            .expect("sizes")
    };
    let (req_size, resp_size) = (size(schema::REQUEST_SIZE), size(schema::RESPONSE_SIZE));

    // Group by dictionary keys; strings are built once per group below.
    let key_of = |d: &DictionaryArray<Int32Type>, i: usize| -> i32 {
        let keys: &Int32Array = d.keys();
        if keys.is_valid(i) {
            keys.value(i)
        } else {
            -1
        }
    };
    let mut groups: HashMap<(i64, [i32; 13]), Rollup> = HashMap::new();
    let mut class_by_proto: HashMap<(i32, Option<i32>), (bool, usize)> = HashMap::new();
    for i in 0..batch.num_rows() {
        let minute = ts.value(i).div_euclid(MINUTE_US) * MINUTE_US;
        let mut k = [0i32; 13];
        k[0] = key_of(protocol, i);
        for (s, cols) in sides.iter().enumerate() {
            for (a, c) in cols.iter().enumerate() {
                k[1 + s * 6 + a] = key_of(c, i);
            }
        }
        let st = status.is_valid(i).then(|| status.value(i));
        let (err, class) = *class_by_proto.entry((k[0], st)).or_insert_with(|| {
            let p = dict_str(protocol, k[0]).unwrap_or_default();
            (is_error(p, st), status_class(p, st))
        });
        let r = groups.entry((minute, k)).or_default();
        let lat = elapsed.is_valid(i).then(|| elapsed.value(i));
        r.add(
            class,
            err,
            req_size.value(i).saturating_add(resp_size.value(i)),
            lat,
        );
    }
    let side = |s: usize, k: &[i32; 13]| -> Side {
        let cols = &sides[s];
        let get = |a: usize| {
            dict_str(cols[a], k[1 + s * 6 + a])
                .unwrap_or_default()
                .to_string()
        };
        Side {
            name: get(0),
            namespace: get(1),
            service: get(2),
            workload: get(3),
            pod: get(4),
            node: get(5),
        }
    };
    // Two dictionary keys can stand for the same string (a dictionary concatenated from several
    // batches is not deduplicated), so groups are merged by their strings, never overwritten.
    let mut out: HashMap<RollupKey, Rollup> = HashMap::with_capacity(groups.len());
    for ((minute, k), r) in groups {
        let key = RollupKey {
            minute,
            protocol: dict_str(protocol, k[0]).unwrap_or_default().to_string(),
            src: side(0, &k),
            dst: side(1, &k),
        };
        out.entry(key).or_default().merge(&r);
    }
    out
}

fn dict_str(d: &DictionaryArray<Int32Type>, key: i32) -> Option<&str> {
    let values = dict_values(d);
    let i = usize::try_from(key).ok()?;
    (i < values.len() && values.is_valid(i)).then(|| values.value(i))
}

/// Adds `b` into `a`.
pub fn merge_rollups(a: &mut HashMap<RollupKey, Rollup>, b: HashMap<RollupKey, Rollup>) {
    for (k, r) in b {
        a.entry(k).or_default().merge(&r);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Array, ArrayRef, AsArray, DictionaryArray, Int32Array};
    use arrow::datatypes::Int32Type;
    use arrow::record_batch::RecordBatch;
    use wiretrail_proto::{Endpoint, Entry, EntryBatchBuilder, EntryId, Identity};

    /// `n` entries of one edge in one minute whose dictionary columns hold every value twice,
    /// rows alternating between the two keys, as a dictionary concatenated from batches does.
    fn batch_with_duplicate_dictionary_values(n: usize) -> RecordBatch {
        let mut b = EntryBatchBuilder::new();
        for i in 0..n {
            let mut e = Entry::new(EntryId::new(1, "n", i as u32), 1, "n", "http", "pcap");
            for (ep, name) in [(&mut e.src, "a"), (&mut e.dst, "b")] {
                *ep = Endpoint {
                    ip: "10.0.0.1".into(),
                    port: 80,
                    identity: Identity {
                        name: name.into(),
                        namespace: Some("ns".into()),
                        ..Default::default()
                    },
                };
            }
            e.request_size = 1;
            e.response_size = 1;
            b.push(&e);
        }
        let batch = b.finish().unwrap();
        let cols: Vec<ArrayRef> = batch
            .columns()
            .iter()
            .map(|c| match c.as_dictionary_opt::<Int32Type>() {
                Some(d) => {
                    let len = d.values().len() as i32;
                    let keys = Int32Array::from_iter((0..d.len()).map(|i| {
                        d.keys()
                            .is_valid(i)
                            .then(|| d.keys().value(i) + if i % 2 == 1 { len } else { 0 })
                    }));
                    let values =
                        arrow::compute::concat(&[d.values().as_ref(), d.values().as_ref()])
                            .unwrap();
                    Arc::new(DictionaryArray::<Int32Type>::try_new(keys, values).unwrap())
                }
                None => c.clone(),
            })
            .collect();
        RecordBatch::try_new(batch.schema(), cols).unwrap()
    }

    #[test]
    fn rollups_merge_dictionary_keys_with_the_same_string() {
        let r = super::rollups(&batch_with_duplicate_dictionary_values(10));
        assert_eq!(r.len(), 1, "one edge: {:?}", r.keys());
        let (_, v) = r.into_iter().next().unwrap();
        assert_eq!(v.count, 10, "every row counted once");
        assert_eq!(v.bytes, 20);
    }
}
