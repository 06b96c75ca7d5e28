//! The query logic behind the REST API and `wiretrail query`: a window, a KFL filter and a
//! cursor become one DataFusion plan over a store snapshot.

use std::sync::Arc;

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::TimestampMicrosecondType;
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::prelude::{col, lit, DataFrame, Expr, SessionConfig, SessionContext};
use datafusion::scalar::ScalarValue;
use serde::Serialize;
use serde_json::Value;
use wiretrail_ingest::Ingest;
use wiretrail_proto::schema::{ID, NODE, TS};
use wiretrail_proto::EntryId;

use crate::json::{batch_to_json, list_columns};
use crate::kfl::{self, KflOptions};
use crate::sql::SqlLimits;
use crate::QueryError;

pub const DEFAULT_LIMIT: usize = 100;
pub const MAX_LIMIT: usize = 10_000;

/// One page request; times are µs since the epoch, `[from, to)`.
#[derive(Debug, Clone, Default)]
pub struct EntriesRequest {
    pub kfl: String,
    pub from: Option<i64>,
    pub to: Option<i64>,
    pub limit: Option<usize>,
    pub cursor: Option<String>,
    /// Only entries captured on these nodes (`?nodes=`); empty = all.
    pub nodes: Vec<String>,
}

/// How much of the store a query touched (the catalog prunes whole files by time).
#[derive(Debug, Clone, Serialize)]
pub struct ScanStats {
    pub files_scanned: usize,
    pub files_pruned: usize,
    pub buffered_batches: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct EntriesPage {
    pub entries: Vec<Value>,
    pub next_cursor: Option<String>,
    pub stats: ScanStats,
}

pub struct QueryService {
    ingest: Arc<Ingest>,
    ctx: SessionContext,
    sql_limits: SqlLimits,
}

/// A DataFusion session with the KFL functions and the object store of remote files; `runtime`
/// carries per-query memory limits (SQL), `None` the shared default.
pub(crate) fn session(ingest: &Ingest, runtime: Option<Arc<RuntimeEnv>>) -> SessionContext {
    let config = SessionConfig::new().with_target_partitions(2);
    let ctx = match runtime {
        Some(rt) => SessionContext::new_with_config_rt(config, rt),
        None => SessionContext::new_with_config(config),
    };
    for udf in kfl::udfs() {
        ctx.register_udf(udf);
    }
    if let Some(r) = ingest.remote() {
        ctx.register_object_store(&r.url(), r.object_store());
    }
    ctx
}

pub(crate) fn ts_lit(us: i64) -> Expr {
    lit(ScalarValue::TimestampMicrosecond(
        Some(us),
        Some("UTC".into()),
    ))
}

fn id_lit(id: &EntryId) -> Expr {
    lit(ScalarValue::FixedSizeBinary(16, Some(id.0.to_vec())))
}

/// `ts_us.id` of the last entry of a page, plus `.remaining` under a KFL `limit(n)`; the next page
/// starts strictly after it.
fn encode_cursor(ts: i64, id: &EntryId, remaining: Option<usize>) -> String {
    match remaining {
        Some(r) => format!("{ts}.{id}.{r}"),
        None => format!("{ts}.{id}"),
    }
}

fn decode_cursor(c: &str) -> Result<(i64, EntryId, Option<usize>), QueryError> {
    let bad = || QueryError::BadRequest("invalid cursor: pass next_cursor back unchanged".into());
    let mut parts = c.split('.');
    let (ts, id) = (parts.next().ok_or_else(bad)?, parts.next().ok_or_else(bad)?);
    let remaining = parts
        .next()
        .map(|r| r.parse::<usize>().map_err(|_| bad()))
        .transpose()?;
    if parts.next().is_some() {
        return Err(bad());
    }
    Ok((
        ts.parse().map_err(|_| bad())?,
        EntryId::parse(id).map_err(|_| bad())?,
        remaining,
    ))
}

impl QueryService {
    pub fn new(ingest: Arc<Ingest>) -> Self {
        let ctx = session(&ingest, None);
        QueryService {
            ingest,
            ctx,
            sql_limits: SqlLimits::default(),
        }
    }

    /// Limits for `POST /api/v1/sql` (memory, time, rows).
    pub fn with_sql_limits(mut self, limits: SqlLimits) -> Self {
        self.sql_limits = limits;
        self
    }

    pub(crate) fn sql_limits(&self) -> &SqlLimits {
        &self.sql_limits
    }

    pub fn ingest(&self) -> &Arc<Ingest> {
        &self.ingest
    }

    /// The entries in `[from, to)` (`None` = unbounded) captured on one of `nodes` (empty =
    /// all) that satisfy every predicate in `preds`, over a snapshot of the store: files
    /// outside the window or ruled out by the tag index are never opened.
    pub(crate) async fn scan(
        &self,
        from: Option<i64>,
        to: Option<i64>,
        mut preds: Vec<Expr>,
        nodes: &[String],
    ) -> Result<(DataFrame, ScanStats), QueryError> {
        let (lo, hi) = (from.unwrap_or(i64::MIN), to.unwrap_or(i64::MAX));
        if let Some(f) = from {
            preds.push(col(TS).gt_eq(ts_lit(f)));
        }
        if let Some(t) = to.filter(|t| *t != i64::MAX) {
            preds.push(col(TS).lt(ts_lit(t)));
        }
        if !nodes.is_empty() {
            preds.push(col(NODE).in_list(nodes.iter().map(|n| lit(n.as_str())).collect(), false));
        }
        let filter = datafusion::logical_expr::utils::conjunction(preds);
        let mut snap = self.ingest.snapshot(lo, hi).await?;
        let by_tags =
            crate::prune::prune_by_tags(self.ingest.catalog(), &mut snap, filter.as_ref())
                .map_err(wiretrail_ingest::IngestError::from)?;
        let stats = ScanStats {
            files_scanned: snap.files.len(),
            files_pruned: snap.files_pruned + by_tags,
            buffered_batches: snap.buffered.len(),
        };
        let table = crate::table::EntriesTable::new(&snap);
        let mut df = self.ctx.read_table(Arc::new(table))?;
        if let Some(p) = filter {
            df = df.filter(p)?;
        }
        Ok((df, stats))
    }

    /// A KFL filter as a physical expression over the entry schema, for evaluating it on
    /// single batches (live views) with the session's functions.
    pub(crate) fn physical_filter(
        &self,
        e: Expr,
    ) -> Result<Arc<dyn datafusion::physical_expr::PhysicalExpr>, QueryError> {
        let schema = wiretrail_proto::schema::entry_schema();
        let df_schema = datafusion::common::DFSchema::try_from(schema.as_ref().clone())?;
        Ok(self.ctx.state().create_physical_expr(e, &df_schema)?)
    }

    /// Newest first, by (ts, id).
    pub async fn entries(&self, req: &EntriesRequest) -> Result<EntriesPage, QueryError> {
        let now_ms = chrono::Utc::now().timestamp_millis();
        let compiled = kfl::compile(&req.kfl, &KflOptions { now_ms })?;
        let mut limit = req.limit.unwrap_or(DEFAULT_LIMIT);
        if limit == 0 || limit > MAX_LIMIT {
            return Err(QueryError::BadRequest(format!(
                "limit must be between 1 and {MAX_LIMIT}"
            )));
        }
        let from = req.from.unwrap_or(i64::MIN);
        let mut to = req.to.unwrap_or(i64::MAX);
        if from >= to {
            return Err(QueryError::BadRequest("`from` must be before `to`".into()));
        }
        let cursor = req.cursor.as_deref().map(decode_cursor).transpose()?;
        // `limit(n)` caps the whole result across pages: the cursor carries what is left.
        let remaining = compiled
            .limit
            .map(|n| cursor.as_ref().and_then(|c| c.2).unwrap_or(n).min(n));
        if let Some(r) = remaining {
            limit = limit.min(r);
        }
        if let Some((cts, _, _)) = cursor {
            to = to.min(cts.saturating_add(1));
        }
        let mut preds: Vec<Expr> = Vec::new();
        if let Some((cts, cid, _)) = &cursor {
            preds.push(
                col(TS)
                    .lt(ts_lit(*cts))
                    .or(col(TS).eq(ts_lit(*cts)).and(col(ID).lt(id_lit(cid)))),
            );
        }
        preds.extend(compiled.filter);
        let (df, stats) = self
            .scan(req.from.map(|_| from), Some(to), preds, &req.nodes)
            .await?;
        let cols = list_columns();
        let df = df
            .select_columns(&cols.iter().map(String::as_str).collect::<Vec<_>>())?
            .sort(vec![col(TS).sort(false, false), col(ID).sort(false, false)])?
            .limit(0, Some(limit + 1))?;
        let batches = df.collect().await?;
        let mut entries = Vec::with_capacity(limit + 1);
        let mut last: Option<(i64, EntryId)> = None;
        for b in &batches {
            let ts = b
                .column_by_name(TS)
                .map(|c| c.as_primitive::<TimestampMicrosecondType>().clone());
            let ids = b
                .column_by_name(ID)
                .map(|c| c.as_fixed_size_binary().clone());
            for (i, v) in batch_to_json(b, false).into_iter().enumerate() {
                if entries.len() == limit {
                    break;
                }
                if let (Some(ts), Some(ids)) = (&ts, &ids) {
                    if let Ok(b) = <[u8; 16]>::try_from(ids.value(i)) {
                        last = Some((ts.value(i), EntryId(b)));
                    }
                }
                entries.push(v);
            }
        }
        let left = remaining.map(|r| r - entries.len());
        let more = batches.iter().map(RecordBatch::num_rows).sum::<usize>() > limit
            && left.is_none_or(|l| l > 0);
        let next_cursor = if more {
            last.map(|(t, id)| encode_cursor(t, &id, left))
        } else {
            None
        };
        Ok(EntriesPage {
            entries,
            next_cursor,
            stats,
        })
    }

    /// Distinct values of a tag (`protocol`, `node`, `namespace`, `service`) in `[from, to)`,
    /// from the catalog's per-hour tag index plus the buffer: no file is opened. Hour
    /// granularity: a value seen in an hour the window touches is listed.
    pub async fn tag_values(
        &self,
        tag: &str,
        from: Option<i64>,
        to: Option<i64>,
    ) -> Result<Vec<String>, QueryError> {
        let kind = wiretrail_storage::TagKind::parse(tag).ok_or_else(|| {
            QueryError::BadRequest(format!(
                "unknown tag {tag:?}: use protocol, node, namespace or service"
            ))
        })?;
        let (from, to) = (from.unwrap_or(i64::MIN), to.unwrap_or(i64::MAX));
        let snap = self.ingest.snapshot(from, to).await?;
        let mut values = std::collections::BTreeSet::new();
        if let (Some(lo), Some(hi)) = (
            snap.files.iter().map(|f| f.min_ts).min(),
            snap.files.iter().map(|f| f.max_ts).max(),
        ) {
            values = self
                .ingest
                .catalog()
                .tag_values(kind, from.max(lo), to.min(hi.saturating_add(1)))
                .map_err(wiretrail_ingest::IngestError::from)?;
        }
        for b in &snap.buffered {
            let t = wiretrail_storage::batch_tags(b);
            let (_, v) = t
                .kinds()
                .into_iter()
                .find(|(k, _)| *k == kind)
                .expect("every kind is listed");
            values.extend(v.iter().cloned());
        }
        Ok(values.into_iter().collect())
    }

    /// The full entry (headers, bodies, detail) with this id, if stored.
    pub async fn entry(&self, id: &str) -> Result<Value, QueryError> {
        let id = EntryId::parse(id).map_err(|e| QueryError::BadRequest(e.to_string()))?;
        let ts = id.ts_us();
        let snap = self.ingest.snapshot(ts, ts.saturating_add(1)).await?;
        let table = crate::table::EntriesTable::new(&snap);
        let df = self
            .ctx
            .read_table(Arc::new(table))?
            .filter(col(TS).eq(ts_lit(ts)).and(col(ID).eq(id_lit(&id))))?
            .limit(0, Some(1))?;
        let batches = df.collect().await?;
        batches
            .iter()
            .flat_map(|b| batch_to_json(b, true))
            .next()
            .ok_or_else(|| QueryError::NotFound(format!("no entry with id {id}")))
    }
}
