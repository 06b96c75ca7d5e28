//! `GET /api/v1/histogram`: entries per time bucket of a window, stacked by status class or by
//! protocol — the volume chart a person zooms with.
//!
//! Like the service map, two paths give the same numbers: an unfiltered window whose buckets
//! are whole minutes reads the catalog's per-minute volume (a few keys per protocol and minute,
//! no file opened; the service-map rollups in a store made before the volume family) and aggregates only the partial minutes at its ends and the ingest buffer from
//! rows; a KFL-scoped or node-focused window streams `ts`, `protocol` and `status` of the
//! matching rows through DataFusion and counts them batch by batch in bounded memory.

use std::collections::HashMap;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Int32Type, TimestampMicrosecondType};
use futures::StreamExt;
use serde::Serialize;
use wiretrail_proto::schema::{status_class, PROTOCOL, STATUS, STATUS_CLASSES, TS};
use wiretrail_storage::rollup::Rollup;

use crate::kfl;
use crate::service::QueryService;
use crate::QueryError;

const MINUTE_US: i64 = 60_000_000;
pub const DEFAULT_BUCKETS: usize = 100;
pub const MAX_BUCKETS: usize = 2_000;

/// Bucket widths a chart can label: the smallest one that fits the requested count is used, so
/// bucket edges fall on round times (and on whole minutes from one minute up).
const NICE_US: &[i64] = &[
    1_000,
    2_000,
    5_000,
    10_000,
    20_000,
    50_000,
    100_000,
    200_000,
    500_000,
    1_000_000,
    2_000_000,
    5_000_000,
    10_000_000,
    15_000_000,
    30_000_000,
    MINUTE_US,
    2 * MINUTE_US,
    5 * MINUTE_US,
    10 * MINUTE_US,
    15 * MINUTE_US,
    30 * MINUTE_US,
    60 * MINUTE_US,
    120 * MINUTE_US,
    180 * MINUTE_US,
    360 * MINUTE_US,
    720 * MINUTE_US,
    1_440 * MINUTE_US,
    2 * 1_440 * MINUTE_US,
    7 * 1_440 * MINUTE_US,
];

/// What the bars are stacked by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stack {
    /// `2xx` … `5xx` for the HTTP family, `ok`/`error` elsewhere, `other` without a status.
    #[default]
    Status,
    Protocol,
}

impl Stack {
    pub fn parse(s: &str) -> Result<Stack, QueryError> {
        match s {
            "" | "status" => Ok(Stack::Status),
            "protocol" => Ok(Stack::Protocol),
            other => Err(QueryError::BadRequest(format!(
                "stack {other:?}: use status or protocol"
            ))),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct HistogramRequest {
    pub kfl: String,
    /// `[from, to)` in µs; `None` = where the data is (the store's boundaries).
    pub from: Option<i64>,
    pub to: Option<i64>,
    pub nodes: Vec<String>,
    pub buckets: Option<usize>,
    pub stack: Stack,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Bucket {
    pub start_us: i64,
    pub total: u64,
    /// One count per entry of `series`.
    pub counts: Vec<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Histogram {
    pub from_us: i64,
    pub to_us: i64,
    pub bucket_us: i64,
    pub stack: Stack,
    pub series: Vec<String>,
    pub buckets: Vec<Bucket>,
    /// `rollups` (catalog minutes + rows at the ends) or `scan`.
    pub source: &'static str,
    pub files_scanned: usize,
}

/// The smallest round width that covers `span` in at most `n` buckets.
pub fn bucket_width(span: i64, n: usize) -> i64 {
    let want = span.div_euclid(n.max(1) as i64).max(1);
    NICE_US
        .iter()
        .copied()
        .find(|w| *w >= want)
        // Wider than a week per bucket: whole weeks.
        .unwrap_or_else(|| {
            let week = NICE_US[NICE_US.len() - 1];
            (want + week - 1) / week * week
        })
}

/// Counts per bucket and series while a histogram is being built.
struct Acc {
    first: i64,
    width: i64,
    from: i64,
    to: i64,
    stack: Stack,
    series: Vec<String>,
    index: HashMap<String, usize>,
    /// `counts[bucket][series]`.
    counts: Vec<Vec<u64>>,
}

impl Acc {
    fn new(from: i64, to: i64, width: i64, stack: Stack) -> Acc {
        let first = from.div_euclid(width) * width;
        let n =
            usize::try_from((to - first).div_euclid(width) + i64::from((to - first) % width != 0))
                .unwrap_or(0);
        let series: Vec<String> = match stack {
            Stack::Status => STATUS_CLASSES.iter().map(|s| s.to_string()).collect(),
            Stack::Protocol => Vec::new(),
        };
        let index = series
            .iter()
            .enumerate()
            .map(|(i, s)| (s.clone(), i))
            .collect();
        Acc {
            first,
            width,
            from,
            to,
            stack,
            counts: vec![vec![0; series.len()]; n],
            series,
            index,
        }
    }

    fn series_of(&mut self, name: &str) -> usize {
        if let Some(i) = self.index.get(name) {
            return *i;
        }
        let i = self.series.len();
        self.series.push(name.to_string());
        self.index.insert(name.to_string(), i);
        for c in &mut self.counts {
            c.push(0);
        }
        i
    }

    /// Adds one minute's rollup; false when it predates status classes (scan instead).
    fn add_rollup(&mut self, minute: i64, protocol: &str, r: &Rollup) -> bool {
        match self.stack {
            Stack::Status => {
                if !r.classified() {
                    return false;
                }
                for (c, n) in r.classes.iter().enumerate() {
                    self.add(minute, c, *n);
                }
            }
            Stack::Protocol => {
                let s = self.series_of(protocol);
                self.add(minute, s, r.count);
            }
        }
        true
    }

    fn add(&mut self, ts: i64, series: usize, n: u64) {
        if ts < self.from || ts >= self.to {
            return;
        }
        let b = ((ts - self.first) / self.width) as usize;
        if let Some(c) = self.counts.get_mut(b).and_then(|c| c.get_mut(series)) {
            *c += n;
        }
    }

    /// Counts the rows of a batch holding at least `ts`, `protocol` and `status`.
    fn add_rows(&mut self, b: &RecordBatch) -> Result<(), QueryError> {
        let missing = |c: &str| QueryError::BadRequest(format!("histogram batch without {c}"));
        let ts = b
            .column_by_name(TS)
            .ok_or_else(|| missing(TS))?
            .as_primitive::<TimestampMicrosecondType>();
        let proto = b
            .column_by_name(PROTOCOL)
            .ok_or_else(|| missing(PROTOCOL))?;
        let status = b
            .column_by_name(STATUS)
            .ok_or_else(|| missing(STATUS))?
            .as_primitive::<Int32Type>();
        // The protocol column is dictionary-encoded in files and the buffer (anything else is
        // made so): each (dictionary key, status) is classified once.
        let dict_type = DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8));
        let proto = arrow::compute::cast(proto, &dict_type)?;
        let proto = proto.as_dictionary::<Int32Type>();
        let names = arrow::compute::cast(proto.values(), &DataType::Utf8)?;
        let names = names.as_string::<i32>();
        let mut memo: HashMap<(Option<i32>, Option<i32>), usize> = HashMap::new();
        for i in 0..b.num_rows() {
            let t = ts.value(i);
            if t < self.from || t >= self.to {
                continue;
            }
            let key = proto.keys().is_valid(i).then(|| proto.keys().value(i));
            let st = status.is_valid(i).then(|| status.value(i));
            let s = match memo.get(&(key, st)) {
                Some(s) => *s,
                None => {
                    let name = key
                        .and_then(|k| usize::try_from(k).ok())
                        .filter(|k| *k < names.len() && names.is_valid(*k))
                        .map_or("", |k| names.value(k));
                    let s = match self.stack {
                        Stack::Status => status_class(name, st),
                        Stack::Protocol => self.series_of(name),
                    };
                    memo.insert((key, st), s);
                    s
                }
            };
            self.add(t, s, 1);
        }
        Ok(())
    }

    fn finish(mut self, source: &'static str, files_scanned: usize) -> Histogram {
        // Protocols in name order, so two windows list them alike.
        if self.stack == Stack::Protocol {
            let mut order: Vec<usize> = (0..self.series.len()).collect();
            order.sort_by(|a, b| self.series[*a].cmp(&self.series[*b]));
            self.series = order.iter().map(|i| self.series[*i].clone()).collect();
            for c in &mut self.counts {
                *c = order.iter().map(|i| c[*i]).collect();
            }
        }
        let buckets = self
            .counts
            .into_iter()
            .enumerate()
            .map(|(i, counts)| Bucket {
                start_us: self.first + i as i64 * self.width,
                total: counts.iter().sum(),
                counts,
            })
            .collect();
        Histogram {
            from_us: self.from,
            to_us: self.to,
            bucket_us: self.width,
            stack: self.stack,
            series: self.series,
            buckets,
            source,
            files_scanned,
        }
    }
}

impl QueryService {
    /// The volume histogram of a window, optionally scoped by KFL and capture nodes.
    pub async fn histogram(&self, req: &HistogramRequest) -> Result<Histogram, QueryError> {
        let compiled = kfl::compile(&req.kfl, &self.kfl_options())?;
        if compiled.limit.is_some() {
            return Err(QueryError::BadRequest(
                "limit(n) has no meaning for a histogram: it counts every matching entry".into(),
            ));
        }
        let n = req.buckets.unwrap_or(DEFAULT_BUCKETS);
        if n == 0 || n > MAX_BUCKETS {
            return Err(QueryError::BadRequest(format!(
                "buckets must be between 1 and {MAX_BUCKETS}"
            )));
        }
        let (from, to) = match (req.from, req.to) {
            (Some(f), Some(t)) => (f, t),
            (f, t) => {
                let b = self.boundaries().await?;
                let Some(o) = b.overall else {
                    // An empty store: an empty chart of the last hour (or of what was asked).
                    let now = chrono::Utc::now().timestamp_micros();
                    let t = t.unwrap_or(now);
                    let f = f.unwrap_or(t - 60 * MINUTE_US);
                    return self.finish_empty(f, t, n, req.stack);
                };
                (
                    f.unwrap_or(o.oldest_us),
                    t.unwrap_or(o.newest_us.saturating_add(1)),
                )
            }
        };
        if from >= to {
            return Err(QueryError::BadRequest("`from` must be before `to`".into()));
        }
        let width = bucket_width(to - from, n);
        let mut acc = Acc::new(from, to, width, req.stack);
        if compiled.filter.is_none() && req.nodes.is_empty() && width % MINUTE_US == 0 {
            if let Some(files) = self.histogram_from_rollups(&mut acc).await? {
                return Ok(acc.finish("rollups", files));
            }
            acc = Acc::new(from, to, width, req.stack);
        }
        let files = self
            .histogram_scan(&mut acc, from, to, compiled.filter, &req.nodes)
            .await?;
        Ok(acc.finish("scan", files))
    }

    fn finish_empty(
        &self,
        from: i64,
        to: i64,
        n: usize,
        stack: Stack,
    ) -> Result<Histogram, QueryError> {
        if from >= to {
            return Err(QueryError::BadRequest("`from` must be before `to`".into()));
        }
        Ok(Acc::new(from, to, bucket_width(to - from, n), stack).finish("rollups", 0))
    }

    /// Whole minutes from the catalog's rollups, the rest from rows; `None` when a rollup in
    /// the window predates status classes (the caller scans instead).
    async fn histogram_from_rollups(&self, acc: &mut Acc) -> Result<Option<usize>, QueryError> {
        let (from, to) = (acc.from, acc.to);
        let lo = from.saturating_add(MINUTE_US - 1).div_euclid(MINUTE_US) * MINUTE_US;
        let hi = to.div_euclid(MINUTE_US) * MINUTE_US;
        if lo >= hi {
            return Ok(None);
        }
        let buffered = match self.ingest().volume_snapshot(lo, hi).await? {
            // Per minute and protocol: a few keys a minute.
            Some((volume, buffered)) => {
                for (minute, protocol, r) in &volume {
                    if !acc.add_rollup(*minute, protocol, r) {
                        return Ok(None);
                    }
                }
                buffered
            }
            // A store made before the volume family: the service-map rollups.
            None => {
                let (rollups, buffered) = self.ingest().rollup_snapshot(lo, hi).await?;
                for (k, r) in &rollups {
                    if !acc.add_rollup(k.minute, &k.protocol, r) {
                        return Ok(None);
                    }
                }
                buffered
            }
        };
        let inner = (acc.from, acc.to);
        (acc.from, acc.to) = (lo, hi);
        for b in &buffered {
            acc.add_rows(b)?;
        }
        (acc.from, acc.to) = inner;
        let mut files = 0;
        for (a, b) in [(from, lo), (hi, to)] {
            if a < b {
                files += self.histogram_scan(acc, a, b, None, &[]).await?;
            }
        }
        Ok(Some(files))
    }

    /// Counts the matching rows of `[from, to)` into `acc`; returns the files scanned.
    async fn histogram_scan(
        &self,
        acc: &mut Acc,
        from: i64,
        to: i64,
        filter: Option<datafusion::prelude::Expr>,
        nodes: &[String],
    ) -> Result<usize, QueryError> {
        let (df, stats) = self
            .scan(Some(from), Some(to), filter.into_iter().collect(), nodes)
            .await?;
        let mut stream = df
            .select_columns(&[TS, PROTOCOL, STATUS])?
            .execute_stream()
            .await?;
        let inner = (acc.from, acc.to);
        (acc.from, acc.to) = (from.max(inner.0), to.min(inner.1));
        while let Some(b) = stream.next().await {
            acc.add_rows(&b?)?;
        }
        (acc.from, acc.to) = inner;
        Ok(stats.files_scanned)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn widths_are_round_and_cover_the_span() {
        assert_eq!(bucket_width(60 * MINUTE_US, 60), MINUTE_US);
        assert_eq!(bucket_width(60 * MINUTE_US, 100), MINUTE_US);
        assert_eq!(bucket_width(3 * 1_440 * MINUTE_US, 100), 60 * MINUTE_US);
        assert_eq!(bucket_width(75_000_000, 100), 1_000_000);
        assert_eq!(bucket_width(1, 100), 1_000);
        let year = 365 * 1_440 * MINUTE_US;
        assert!(bucket_width(year, 10) * 10 >= year);
    }

    #[test]
    fn buckets_start_on_round_times_and_drop_rows_outside() {
        let mut a = Acc::new(90 * 1_000_000, 200 * 1_000_000, MINUTE_US, Stack::Status);
        assert_eq!(a.counts.len(), 3, "60 s, 120 s and 180 s buckets");
        a.add(89_999_999, 0, 1);
        a.add(90_000_000, 0, 1);
        a.add(199_999_999, 3, 2);
        a.add(200_000_000, 3, 5);
        let h = a.finish("scan", 0);
        assert_eq!(h.buckets[0].start_us, 60_000_000);
        assert_eq!(h.buckets[0].counts[0], 1);
        assert_eq!(h.buckets[2].total, 2);
    }
}
