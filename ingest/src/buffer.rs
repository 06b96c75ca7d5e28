//! Acknowledged rows that are not in Parquet yet. Queries read them together with the files,
//! so an entry is queryable as soon as it is acknowledged.

use std::collections::BTreeMap;

use arrow::array::{Array, TimestampMicrosecondArray};
use arrow::record_batch::RecordBatch;
use wiretrail_proto::schema::TS;
use wiretrail_storage::{Micros, SourceBatch};

pub(crate) struct Buffered {
    pub segment: u64,
    pub agent: String,
    pub seq: u64,
    pub batch: RecordBatch,
    pub min_ts: Micros,
    pub max_ts: Micros,
}

impl Buffered {
    pub fn new(segment: u64, agent: String, seq: u64, batch: RecordBatch) -> Self {
        let (min_ts, max_ts) = batch
            .column_by_name(TS)
            .and_then(|c| c.as_any().downcast_ref::<TimestampMicrosecondArray>())
            .map(|ts| {
                let v = ts.values();
                (
                    v.iter().copied().min().unwrap_or(i64::MAX),
                    v.iter().copied().max().unwrap_or(i64::MIN),
                )
            })
            .unwrap_or((i64::MAX, i64::MIN));
        Buffered {
            segment,
            agent,
            seq,
            batch,
            min_ts,
            max_ts,
        }
    }
}

#[derive(Default)]
pub(crate) struct Buffer {
    items: Vec<Buffered>,
    rows: usize,
    bytes: usize,
}

impl Buffer {
    pub fn push(&mut self, b: Buffered) {
        self.rows += b.batch.num_rows();
        self.bytes += b.batch.get_array_memory_size();
        self.items.push(b);
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Batches that may hold rows in `[from, to)`.
    pub fn overlapping(&self, from: Micros, to: Micros) -> Vec<RecordBatch> {
        self.items
            .iter()
            .filter(|b| b.min_ts < to && b.max_ts >= from)
            .map(|b| b.batch.clone())
            .collect()
    }

    /// The batches of WAL segments up to `segment`, and the highest seq per agent among them.
    pub fn up_to(&self, segment: u64) -> (Vec<SourceBatch>, BTreeMap<String, u64>) {
        let mut seqs = BTreeMap::new();
        let mut batches = Vec::new();
        for b in self.items.iter().filter(|b| b.segment <= segment) {
            batches.push(SourceBatch {
                agent: b.agent.clone(),
                seq: b.seq,
                batch: b.batch.clone(),
            });
            let e = seqs.entry(b.agent.clone()).or_insert(b.seq);
            *e = (*e).max(b.seq);
        }
        (batches, seqs)
    }

    pub fn remove_up_to(&mut self, segment: u64) {
        self.items.retain(|b| b.segment > segment);
        self.rows = self.items.iter().map(|b| b.batch.num_rows()).sum();
        self.bytes = self
            .items
            .iter()
            .map(|b| b.batch.get_array_memory_size())
            .sum();
    }
}
