//! `GET /api/v1/boundaries`: the oldest and newest entry overall and per capture node, so a
//! user knows which windows hold data before asking.
//!
//! Overall bounds come from the catalog (every file records its exact min/max ts) and the
//! ingest buffer. Per node, the tag index says which files hold a node; its oldest entry lies
//! in a file that starts before the earliest *end* of those files, so only those few files
//! (and the buffer) are scanned, and symmetrically for the newest.

use arrow::array::{Array, AsArray};
use arrow::datatypes::TimestampMicrosecondType;
use datafusion::functions_aggregate::expr_fn::{max, min};
use datafusion::prelude::col;
use serde::Serialize;
use wiretrail_proto::schema::TS;
use wiretrail_storage::TagKind;

use crate::service::QueryService;
use crate::time::format_ts;
use crate::QueryError;

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Bounds {
    /// RFC 3339, µs precision.
    pub oldest: String,
    pub newest: String,
    pub oldest_us: i64,
    pub newest_us: i64,
}

impl Bounds {
    fn new(lo: i64, hi: i64) -> Bounds {
        Bounds {
            oldest: format_ts(lo),
            newest: format_ts(hi),
            oldest_us: lo,
            newest_us: hi,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct NodeBounds {
    pub node: String,
    #[serde(flatten)]
    pub bounds: Bounds,
}

#[derive(Debug, Clone, Serialize)]
pub struct Boundaries {
    /// `None` when the store is empty.
    pub overall: Option<Bounds>,
    pub nodes: Vec<NodeBounds>,
}

impl QueryService {
    pub async fn boundaries(&self) -> Result<Boundaries, QueryError> {
        let storage = |e| QueryError::from(wiretrail_ingest::IngestError::from(e));
        let snap = self.ingest().snapshot(i64::MIN, i64::MAX).await?;
        let mut lo = snap.files.iter().map(|f| f.min_ts).min();
        let mut hi = snap.files.iter().map(|f| f.max_ts).max();
        let mut nodes = std::collections::BTreeSet::new();
        for b in &snap.buffered {
            if let Some(ts) = b.column_by_name(TS) {
                let ts = ts.as_primitive::<TimestampMicrosecondType>();
                let (bl, bh) = (
                    arrow::compute::min(ts).unwrap_or(i64::MAX),
                    arrow::compute::max(ts).unwrap_or(i64::MIN),
                );
                lo = Some(lo.map_or(bl, |l| l.min(bl)));
                hi = Some(hi.map_or(bh, |h| h.max(bh)));
            }
            nodes.extend(wiretrail_storage::batch_tags(b).node);
        }
        let catalog = self.ingest().catalog();
        // The tag index is walked hour by hour: bound it by the files' span.
        let span = snap
            .files
            .iter()
            .map(|f| f.min_ts)
            .min()
            .zip(snap.files.iter().map(|f| f.max_ts.saturating_add(1)).max());
        if let Some((a, b)) = span {
            nodes.extend(catalog.tag_values(TagKind::Node, a, b).map_err(storage)?);
        }
        let mut out = Vec::new();
        for node in nodes {
            let ids = match span {
                Some((a, b)) => catalog
                    .files_with_tag(TagKind::Node, &[node.as_str()], a, b)
                    .map_err(storage)?,
                None => Default::default(),
            };
            let files: Vec<_> = snap
                .files
                .iter()
                .filter(|f| ids.contains(&f.file_id))
                .collect();
            // Oldest: in a file starting before the earliest end; newest: after the latest start.
            let earliest_end = files.iter().map(|f| f.max_ts).min();
            let latest_start = files.iter().map(|f| f.min_ts).max();
            let first = self
                .node_extreme(&node, None, earliest_end.map(|t| t.saturating_add(1)), true)
                .await?;
            let last = self.node_extreme(&node, latest_start, None, false).await?;
            if let (Some(a), Some(b)) = (first, last) {
                out.push(NodeBounds {
                    node,
                    bounds: Bounds::new(a, b),
                });
            }
        }
        Ok(Boundaries {
            overall: lo.zip(hi).map(|(l, h)| Bounds::new(l, h)),
            nodes: out,
        })
    }

    /// min (or max) `ts` of `node`'s entries in `[from, to)`.
    async fn node_extreme(
        &self,
        node: &str,
        from: Option<i64>,
        to: Option<i64>,
        oldest: bool,
    ) -> Result<Option<i64>, QueryError> {
        let (df, _) = self.scan(from, to, vec![], &[node.to_string()]).await?;
        let agg = if oldest { min(col(TS)) } else { max(col(TS)) };
        let batches = df
            .aggregate(vec![], vec![agg.alias("t")])?
            .collect()
            .await?;
        Ok(batches.iter().find_map(|b| {
            let c = b.column(0).as_primitive::<TimestampMicrosecondType>();
            (!c.is_empty() && c.is_valid(0)).then(|| c.value(0))
        }))
    }
}
