//! The `entries` table as DataFusion sees it: the Parquet files the catalog lists for the
//! window, plus the acknowledged rows still in the ingest buffer. Files outside the window are
//! never opened; inside a file, row groups and pages are pruned by statistics and the page
//! index, and filters are evaluated during the scan (`pushdown_filters`).
//!
//! Time bounds (`ts` compared with a literal) are applied exactly here: a file the catalog
//! knows to lie wholly inside them is read without evaluating `ts` per row, which was most of
//! the cost of a count or group-by over whole hours.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::DFSchema;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::physical_plan::parquet::CachedParquetFileReaderFactory;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder, ParquetSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::error::Result;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{
    BinaryExpr, Expr, Operator, TableProviderFilterPushDown, TableType,
};
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::projection::{ProjectionExec, ProjectionExpr};
use datafusion::physical_plan::union::UnionExec;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::scalar::ScalarValue;
use wiretrail_ingest::Snapshot;
use wiretrail_proto::schema::{entry_schema, TS};

#[derive(Debug, Clone)]
struct FileRef {
    path: String,
    bytes: u64,
    /// Inclusive `ts` range from the catalog.
    min_ts: i64,
    max_ts: i64,
}

/// A snapshot of the store for one query.
#[derive(Debug)]
pub struct EntriesTable {
    /// Local files: absolute path, size and `ts` range.
    files: Vec<FileRef>,
    /// Files in object storage (object keys), read through the store registered under
    /// `remote_url`.
    remote_files: Vec<FileRef>,
    remote_url: Option<ObjectStoreUrl>,
    buffered: Vec<arrow::record_batch::RecordBatch>,
}

impl EntriesTable {
    pub fn new(snapshot: &Snapshot) -> Self {
        let (remote, local): (Vec<_>, Vec<_>) = snapshot.files.iter().partition(|f| f.remote);
        let files = local
            .iter()
            .map(|f| {
                // DataFusion's local object store wants absolute paths (`--data ./dir` is not).
                let path = snapshot.dir.entry_file(&f.path);
                let path = std::path::absolute(&path).unwrap_or(path);
                FileRef {
                    path: path.to_string_lossy().into_owned(),
                    bytes: f.bytes,
                    min_ts: f.min_ts,
                    max_ts: f.max_ts,
                }
            })
            .collect();
        let (remote_files, remote_url) = match &snapshot.remote {
            Some(r) if !remote.is_empty() => (
                remote
                    .iter()
                    .map(|f| FileRef {
                        path: r.object_path(&f.path).to_string(),
                        bytes: f.bytes,
                        min_ts: f.min_ts,
                        max_ts: f.max_ts,
                    })
                    .collect(),
                ObjectStoreUrl::parse(r.url().as_str()).ok(),
            ),
            _ => (Vec::new(), None),
        };
        EntriesTable {
            files,
            remote_files,
            remote_url,
            buffered: snapshot.buffered.clone(),
        }
    }
}

#[async_trait]
impl TableProvider for EntriesTable {
    fn schema(&self) -> SchemaRef {
        entry_schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        // Time bounds are applied exactly by `scan`; the rest is used for pruning and early
        // filtering, and DataFusion still applies it exactly above.
        Ok(filters
            .iter()
            .map(|f| match ts_bound(f) {
                Some(_) => TableProviderFilterPushDown::Exact,
                None => TableProviderFilterPushDown::Inexact,
            })
            .collect())
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let schema = entry_schema();
        let df_schema = DFSchema::try_from(schema.as_ref().clone())?;
        let physical = |exprs: Vec<Expr>| -> Result<Option<Arc<dyn PhysicalExpr>>> {
            conjunction(exprs)
                .map(|e| state.create_physical_expr(e, &df_schema))
                .transpose()
        };
        // [lo, hi) from the time bounds; `bounds` checks them on rows of files that straddle
        // an end and on buffered rows.
        let (mut lo, mut hi) = (i64::MIN, i64::MAX);
        let (mut bounds, mut rest) = (Vec::new(), Vec::new());
        for f in filters {
            match ts_bound(f) {
                Some((l, h)) => {
                    (lo, hi) = (lo.max(l), hi.min(h));
                    bounds.push(f.clone());
                }
                None => rest.push(f.clone()),
            }
        }
        let bounds = physical(bounds)?;
        let (pred_inside, pred_edge) = (physical(rest)?, physical(filters.to_vec())?);
        let mut inputs: Vec<Arc<dyn ExecutionPlan>> = Vec::new();
        let scans = [
            (&self.files, ObjectStoreUrl::local_filesystem()),
            (
                &self.remote_files,
                self.remote_url
                    .clone()
                    .unwrap_or_else(ObjectStoreUrl::local_filesystem),
            ),
        ];
        for (files, store) in scans {
            let (inside, edge): (Vec<FileRef>, Vec<FileRef>) = files
                .iter()
                .filter(|f| f.max_ts >= lo && f.min_ts < hi)
                .cloned()
                .partition(|f| f.min_ts >= lo && f.max_ts < hi);
            if !inside.is_empty() {
                let p = pred_inside.clone();
                inputs.push(parquet_exec(state, &store, &inside, p, projection, limit)?);
            }
            if !edge.is_empty() {
                inputs.push(filtered(bounds.as_ref(), projection, |proj| {
                    parquet_exec(state, &store, &edge, pred_edge.clone(), proj, None)
                })?);
            }
        }
        if !self.buffered.is_empty() {
            inputs.push(filtered(bounds.as_ref(), projection, |proj| {
                let exec = MemorySourceConfig::try_new_exec(
                    std::slice::from_ref(&self.buffered),
                    schema.clone(),
                    proj.cloned(),
                )?;
                Ok(exec as Arc<dyn ExecutionPlan>)
            })?);
        }
        if inputs.is_empty() {
            let projected = match projection {
                Some(p) => Arc::new(schema.project(p)?),
                None => schema,
            };
            return Ok(Arc::new(EmptyExec::new(projected)));
        }
        UnionExec::try_new(inputs)
    }
}

/// A Parquet scan of `files` with `pred` pushed down (pruning and early filtering only).
fn parquet_exec(
    state: &dyn Session,
    store: &ObjectStoreUrl,
    files: &[FileRef],
    pred: Option<Arc<dyn PhysicalExpr>>,
    projection: Option<&Vec<usize>>,
    limit: Option<usize>,
) -> Result<Arc<dyn ExecutionPlan>> {
    // Footers and page indexes come from the runtime's metadata cache (shared by every
    // session of the query service), not from disk on every query.
    let reader = CachedParquetFileReaderFactory::new(
        state.runtime_env().object_store(store)?,
        state.runtime_env().cache_manager.get_file_metadata_cache(),
    );
    let mut source = ParquetSource::new(entry_schema())
        .with_parquet_file_reader_factory(Arc::new(reader))
        .with_pushdown_filters(true)
        .with_reorder_filters(true)
        .with_enable_page_index(true);
    if let Some(p) = pred {
        source = source.with_predicate(p);
    }
    // One group per file up to the number of target partitions, so files are read in parallel.
    let parts = state.config().target_partitions().max(1);
    let mut groups: Vec<Vec<PartitionedFile>> = vec![Vec::new(); parts.min(files.len())];
    for (i, f) in files.iter().enumerate() {
        let n = groups.len();
        groups[i % n].push(PartitionedFile::new(f.path.clone(), f.bytes));
    }
    let config = FileScanConfigBuilder::new(store.clone(), Arc::new(source))
        .with_file_groups(groups.into_iter().map(FileGroup::new).collect())
        .with_projection_indices(projection.cloned())?
        .with_limit(limit)
        .build();
    Ok(DataSourceExec::from_data_source(config))
}

/// The plan `make` builds for `projection`, with the time bounds applied exactly (they are
/// declared `Exact`, so nothing above re-checks them). A projection without `ts` is scanned
/// with `ts` added, filtered, and projected back.
fn filtered(
    bounds: Option<&Arc<dyn PhysicalExpr>>,
    projection: Option<&Vec<usize>>,
    make: impl FnOnce(Option<&Vec<usize>>) -> Result<Arc<dyn ExecutionPlan>>,
) -> Result<Arc<dyn ExecutionPlan>> {
    let Some(bounds) = bounds else {
        return make(projection);
    };
    let ts = entry_schema().index_of(TS)?;
    let widened = projection.filter(|p| !p.contains(&ts)).map(|p| {
        let mut w = p.clone();
        w.push(ts);
        w
    });
    let exec = make(widened.as_ref().or(projection))?;
    // The bounds refer to columns by name; bind them to their positions in this input.
    let input = exec.schema();
    let pred = bounds
        .clone()
        .transform(|node| {
            if let Some(c) = node.downcast_ref::<Column>() {
                let i = input.index_of(c.name())?;
                return Ok(Transformed::yes(Arc::new(Column::new(c.name(), i)) as _));
            }
            Ok(Transformed::no(node))
        })?
        .data;
    let filter: Arc<dyn ExecutionPlan> = Arc::new(FilterExec::try_new(pred, exec)?);
    match (widened, projection) {
        (Some(_), Some(p)) => {
            let exprs: Vec<ProjectionExpr> = (0..p.len())
                .map(|i| {
                    let name = input.field(i).name().clone();
                    ProjectionExpr::new(Arc::new(Column::new(&name, i)) as _, name)
                })
                .collect();
            Ok(Arc::new(ProjectionExec::try_new(exprs, filter)?))
        }
        _ => Ok(filter),
    }
}

/// `[lo, hi)` in µs if `e` compares `ts` with a timestamp literal (either side), the only
/// filters the table applies exactly.
fn ts_bound(e: &Expr) -> Option<(i64, i64)> {
    let Expr::BinaryExpr(BinaryExpr { left, op, right }) = e else {
        return None;
    };
    let (op, v) = match (left.as_ref(), right.as_ref()) {
        (Expr::Column(c), Expr::Literal(v, _)) if c.name == TS => (*op, v),
        (Expr::Literal(v, _), Expr::Column(c)) if c.name == TS => (op.swap()?, v),
        _ => return None,
    };
    let us = match v {
        ScalarValue::TimestampMicrosecond(Some(t), _) => *t,
        ScalarValue::TimestampMillisecond(Some(t), _) => t.checked_mul(1_000)?,
        ScalarValue::TimestampSecond(Some(t), _) => t.checked_mul(1_000_000)?,
        // Rounded outwards below; exactness needs a whole number of µs.
        ScalarValue::TimestampNanosecond(Some(t), _) if t % 1_000 == 0 => t / 1_000,
        _ => return None,
    };
    match op {
        Operator::GtEq => Some((us, i64::MAX)),
        Operator::Gt => Some((us.checked_add(1)?, i64::MAX)),
        Operator::Lt => Some((i64::MIN, us)),
        Operator::LtEq => Some((i64::MIN, us.checked_add(1)?)),
        _ => None,
    }
}
