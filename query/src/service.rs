//! The query logic behind the REST API and `wiretrail query`: a window, a KFL filter and a
//! cursor become one DataFusion plan over a store snapshot.

use std::sync::Arc;

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::TimestampMicrosecondType;
use datafusion::execution::cache::cache_manager::{CacheManagerConfig, FileMetadataCache};
use datafusion::execution::cache::default_cache::DefaultCache;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::{col, lit, DataFrame, Expr, SessionConfig, SessionContext};
use datafusion::scalar::ScalarValue;
use serde::Serialize;
use serde_json::Value;
use wiretrail_ingest::{Ingest, Snapshot};
use wiretrail_proto::schema::{ID, NODE, TS};
use wiretrail_proto::EntryId;

use crate::json::{batch_to_json, list_columns};
use crate::kfl::{self, KflOptions};
use crate::sql::SqlLimits;
use crate::QueryError;

pub const DEFAULT_LIMIT: usize = 100;
/// First slice of a newest-first page (see [`QueryService::newest_first`]): one minute, then
/// 4×, 16×, … (seven slices reach three days).
const SLICE_US: i64 = 60_000_000;
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

#[derive(Debug, Clone, Serialize)]
pub struct CountResult {
    pub count: usize,
    pub stats: ScanStats,
}

pub struct QueryService {
    ingest: Arc<Ingest>,
    ctx: SessionContext,
    /// Parquet footers and page indexes of recently read files, shared by every session:
    /// decoding them was most of a short query's time (files are immutable, names unique).
    meta_cache: Arc<FileMetadataCache>,
    sql_limits: SqlLimits,
    /// KFL user macros (`--kfl-macro`), on top of the defaults.
    macros: Vec<(String, String)>,
}

/// Bytes of Parquet metadata kept in memory across queries.
const METADATA_CACHE_BYTES: usize = 128 << 20;

/// A DataFusion session with the KFL functions, the shared Parquet metadata cache and the object
/// store of remote files; `runtime` starts from a builder with per-query limits (SQL).
pub(crate) fn session(
    ingest: &Ingest,
    meta_cache: &Arc<FileMetadataCache>,
    runtime: RuntimeEnvBuilder,
) -> Result<SessionContext, QueryError> {
    let config = SessionConfig::new().with_target_partitions(2);
    let runtime = runtime
        .with_cache_manager(
            // The limit is applied to the shared cache on every build: keep it the same.
            CacheManagerConfig::default()
                .with_file_metadata_cache(Some(meta_cache.clone()))
                .with_metadata_cache_limit(METADATA_CACHE_BYTES),
        )
        .build_arc()?;
    let ctx = SessionContext::new_with_config_rt(config, runtime);
    for udf in kfl::udfs() {
        ctx.register_udf(udf);
    }
    if let Some(r) = ingest.remote() {
        ctx.register_object_store(&r.url(), r.object_store());
    }
    Ok(ctx)
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

/// Smallest and largest `ts` of a buffered batch.
fn batch_ts_range(b: &RecordBatch) -> Option<(i64, i64)> {
    let ts = b
        .column_by_name(TS)?
        .as_primitive_opt::<TimestampMicrosecondType>()?;
    Some((arrow::compute::min(ts)?, arrow::compute::max(ts)?))
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
        let meta_cache: Arc<FileMetadataCache> = Arc::new(
            DefaultCache::new(METADATA_CACHE_BYTES).with_name("wiretrail-parquet-metadata"),
        );
        let ctx = session(&ingest, &meta_cache, RuntimeEnvBuilder::new())
            .expect("the default DataFusion runtime builds");
        QueryService {
            ingest,
            ctx,
            meta_cache,
            sql_limits: SqlLimits::default(),
            macros: kfl::default_macros(),
        }
    }

    /// Adds KFL user macros (`NAME`, `EXPR`); a name given twice keeps the last definition.
    pub fn with_macros(mut self, macros: Vec<(String, String)>) -> Self {
        for (name, body) in macros {
            self.macros.retain(|(n, _)| *n != name);
            self.macros.push((name, body));
        }
        self
    }

    /// KFL options for a query compiled now.
    pub fn kfl_options(&self) -> KflOptions {
        KflOptions {
            now_ms: chrono::Utc::now().timestamp_millis(),
            macros: self.macros.clone(),
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

    /// A session for one query with its own runtime limits (SQL), sharing the metadata cache.
    pub(crate) fn session_with(
        &self,
        runtime: RuntimeEnvBuilder,
    ) -> Result<SessionContext, QueryError> {
        session(&self.ingest, &self.meta_cache, runtime)
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
        preds: Vec<Expr>,
        nodes: &[String],
    ) -> Result<(DataFrame, ScanStats), QueryError> {
        let (snap, filter, stats) = self.pruned_snapshot(from, to, preds, nodes).await?;
        Ok((self.frame(&snap, filter)?, stats))
    }

    /// The snapshot of `[from, to)` minus the files the tag index rules out, and the whole
    /// filter (window, nodes and `preds`).
    async fn pruned_snapshot(
        &self,
        from: Option<i64>,
        to: Option<i64>,
        mut preds: Vec<Expr>,
        nodes: &[String],
    ) -> Result<(Snapshot, Option<Expr>, ScanStats), QueryError> {
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
        Ok((snap, filter, stats))
    }

    /// The rows of `snap` that satisfy `filter`.
    fn frame(&self, snap: &Snapshot, filter: Option<Expr>) -> Result<DataFrame, QueryError> {
        let table = crate::table::EntriesTable::new(snap);
        let mut df = self.ctx.read_table(Arc::new(table))?;
        if let Some(p) = filter {
            df = df.filter(p)?;
        }
        Ok(df)
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
        let compiled = kfl::compile(&req.kfl, &self.kfl_options())?;
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
        let (snap, filter, mut stats) = self
            .pruned_snapshot(req.from.map(|_| from), Some(to), preds, &req.nodes)
            .await?;
        let batches = self
            .newest_first(&snap, filter, from, to, limit + 1, &mut stats)
            .await?;
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
        kfl::redact_entries(&mut entries, &compiled.redact);
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

    /// Up to `want` rows of `snap` matching `filter`, newest first by (ts, id), with the list
    /// columns. Reads the window in slices from its newest end (a minute, then 4×, 16×, …
    /// as long as rows are missing), so a first page touches the newest files only instead of
    /// sorting the whole window. Slices are disjoint in time, so their results concatenate in
    /// order. `stats.files_scanned` becomes the number of files actually read.
    async fn newest_first(
        &self,
        snap: &Snapshot,
        filter: Option<Expr>,
        from: i64,
        to: i64,
        want: usize,
        stats: &mut ScanStats,
    ) -> Result<Vec<RecordBatch>, QueryError> {
        let buffered = snap.buffered.iter().filter_map(batch_ts_range);
        let (oldest, newest) = snap
            .files
            .iter()
            .map(|f| (f.min_ts, f.max_ts))
            .chain(buffered)
            .fold((i64::MAX, i64::MIN), |(lo, hi), (a, b)| {
                (lo.min(a), hi.max(b))
            });
        if oldest > newest {
            return Ok(Vec::new());
        }
        let (floor, mut hi) = (from.max(oldest), to.min(newest.saturating_add(1)));
        let cols = list_columns();
        let cols: Vec<&str> = cols.iter().map(String::as_str).collect();
        let (mut out, mut got, mut step, mut read) = (Vec::new(), 0, SLICE_US, 0);
        while got < want && hi > floor {
            let lo = hi.saturating_sub(step).max(floor);
            let mut slice = Snapshot {
                dir: snap.dir.clone(),
                remote: snap.remote.clone(),
                files: Vec::new(),
                files_pruned: 0,
                buffered: snap.buffered.clone(),
            };
            slice.files = snap
                .files
                .iter()
                .filter(|f| f.max_ts >= lo && f.min_ts < hi)
                .cloned()
                .collect();
            read += slice.files.len();
            let window = col(TS).gt_eq(ts_lit(lo)).and(col(TS).lt(ts_lit(hi)));
            let f = Some(filter.clone().map_or(window.clone(), |f| f.and(window)));
            let batches = self
                .frame(&slice, f)?
                .select_columns(&cols)?
                .sort(vec![col(TS).sort(false, false), col(ID).sort(false, false)])?
                .limit(0, Some(want - got))?
                .collect()
                .await?;
            got += batches.iter().map(RecordBatch::num_rows).sum::<usize>();
            out.extend(batches);
            hi = lo;
            step = step.saturating_mul(4);
        }
        stats.files_scanned = read;
        Ok(out)
    }

    /// How many entries in the window match (`limit(n)` caps it at n), for totals next to a
    /// page. Only the columns the filter needs are read.
    pub async fn count(&self, req: &EntriesRequest) -> Result<CountResult, QueryError> {
        let compiled = kfl::compile(&req.kfl, &self.kfl_options())?;
        if let (Some(f), Some(t)) = (req.from, req.to) {
            if f >= t {
                return Err(QueryError::BadRequest("`from` must be before `to`".into()));
            }
        }
        let (df, stats) = self
            .scan(
                req.from,
                req.to,
                compiled.filter.into_iter().collect(),
                &req.nodes,
            )
            .await?;
        let n = df.count().await?;
        Ok(CountResult {
            count: compiled.limit.map_or(n, |l| n.min(l)),
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
        let df = self
            .frame(
                &snap,
                Some(col(TS).eq(ts_lit(ts)).and(col(ID).eq(id_lit(&id)))),
            )?
            .limit(0, Some(1))?;
        let batches = df.collect().await?;
        batches
            .iter()
            .flat_map(|b| batch_to_json(b, true))
            .next()
            .ok_or_else(|| QueryError::NotFound(format!("no entry with id {id}")))
    }
}
