//! Read-only SQL over the `entries` table for analysts (`POST /api/v1/sql`).
//!
//! Every statement runs in its own DataFusion session that knows one table, `entries` (a
//! snapshot of the store for the requested window), with:
//! - DDL, DML and statements refused by the planner (`CREATE [EXTERNAL] TABLE`, `COPY`,
//!   `INSERT`, `DROP`, `SET` …); URL tables are off, so `SELECT * FROM '/etc/passwd'` is an
//!   unknown table, and no file-reading table function is registered;
//! - a memory pool with a hard limit and no spill directory (a query that needs more fails
//!   with "resources exhausted" instead of growing the process);
//! - a wall-clock timeout (the plan is dropped, which cancels its tasks) and a row cap on the
//!   answer, so an endless recursive CTE or a cross join ends with a clear message.

use std::sync::Arc;
use std::time::Duration;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use datafusion::error::DataFusionError;
use datafusion::execution::context::SQLOptions;
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use futures::StreamExt;

use datafusion::prelude::{col, DataFrame};
use wiretrail_proto::schema::TS;

use crate::service::{ts_lit, QueryService};
use crate::QueryError;

/// Bounds on one SQL query.
#[derive(Debug, Clone)]
pub struct SqlLimits {
    /// Memory the plan may hold (hash tables, sorts, join build sides).
    pub memory_bytes: usize,
    /// Wall-clock time before the query is cancelled.
    pub timeout: Duration,
    /// Rows returned at most; the answer says when it was cut.
    pub max_rows: usize,
}

impl Default for SqlLimits {
    fn default() -> Self {
        SqlLimits {
            memory_bytes: 512 << 20,
            timeout: Duration::from_secs(30),
            max_rows: 100_000,
        }
    }
}

/// One SQL request; the window bounds the snapshot the `entries` table shows (µs, `[from, to)`).
#[derive(Debug, Clone, Default)]
pub struct SqlRequest {
    pub sql: String,
    pub from: Option<i64>,
    pub to: Option<i64>,
    /// Shorter than the server's limit if the caller wants (never longer).
    pub timeout: Option<Duration>,
}

#[derive(Debug)]
pub struct SqlAnswer {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
    /// More rows existed than `max_rows`.
    pub truncated: bool,
}

/// Longest statement accepted (the parser also limits nesting depth).
const MAX_SQL_LEN: usize = 64 * 1024;

/// User mistakes (syntax, unknown column, refused statement, limit hit) are 400s; only I/O and
/// internal failures are ours.
fn sql_error(e: DataFusionError) -> QueryError {
    match e.find_root() {
        DataFusionError::IoError(_)
        | DataFusionError::ObjectStore(_)
        | DataFusionError::Internal(_)
        | DataFusionError::External(_) => QueryError::DataFusion(e),
        DataFusionError::ResourcesExhausted(m) => QueryError::BadRequest(format!(
            "the query needs more memory than its limit ({m}); narrow the window or aggregate"
        )),
        _ => QueryError::BadRequest(format!("SQL: {}", e.find_root())),
    }
}

impl QueryService {
    /// Plans one read-only statement over `entries` (nothing runs yet).
    pub async fn sql_plan(&self, req: &SqlRequest) -> Result<DataFrame, QueryError> {
        let limits = self.sql_limits();
        if req.sql.trim().is_empty() {
            return Err(QueryError::BadRequest(
                "empty SQL: e.g. SELECT protocol, count(*) FROM entries GROUP BY protocol".into(),
            ));
        }
        if req.sql.len() > MAX_SQL_LEN {
            return Err(QueryError::BadRequest(format!(
                "SQL longer than {MAX_SQL_LEN} bytes"
            )));
        }
        let (from, to) = (req.from.unwrap_or(i64::MIN), req.to.unwrap_or(i64::MAX));
        if from >= to {
            return Err(QueryError::BadRequest("`from` must be before `to`".into()));
        }
        let ctx = self.session_with(
            RuntimeEnvBuilder::new()
                .with_memory_limit(limits.memory_bytes, 1.0)
                .with_disk_manager_builder(
                    DiskManagerBuilder::default().with_mode(DiskManagerMode::Disabled),
                ),
        )?;
        let snap = self.ingest().snapshot(from, to).await?;
        // The window bounds which files the snapshot holds and, as a view filter, the rows.
        let mut entries = ctx.read_table(Arc::new(crate::table::EntriesTable::new(&snap)))?;
        if req.from.is_some() {
            entries = entries.filter(col(TS).gt_eq(ts_lit(from)))?;
        }
        if req.to.is_some() {
            entries = entries.filter(col(TS).lt(ts_lit(to)))?;
        }
        ctx.register_table("entries", entries.into_view())
            .map_err(QueryError::DataFusion)?;
        let options = SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false);
        ctx.sql_with_options(&req.sql, options)
            .await
            .map_err(sql_error)
    }

    /// Runs one read-only statement over `entries` within the limits.
    pub async fn sql(&self, req: &SqlRequest) -> Result<SqlAnswer, QueryError> {
        let limits = self.sql_limits().clone();
        let timeout = req.timeout.unwrap_or(limits.timeout).min(limits.timeout);
        let run = async {
            let df = self.sql_plan(req).await?;
            let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
            let mut stream = df.execute_stream().await.map_err(sql_error)?;
            let (mut batches, mut rows, mut truncated) = (Vec::new(), 0usize, false);
            while let Some(b) = stream.next().await {
                let b = b.map_err(sql_error)?;
                let room = limits.max_rows - rows;
                if b.num_rows() > room {
                    batches.push(b.slice(0, room));
                    truncated = true;
                    break;
                }
                rows += b.num_rows();
                batches.push(b);
            }
            Ok::<_, QueryError>(SqlAnswer {
                schema,
                batches,
                truncated,
            })
        };
        tokio::time::timeout(timeout, run).await.map_err(|_| {
            QueryError::BadRequest(format!(
                "the query ran longer than its {} ms limit and was cancelled",
                timeout.as_millis()
            ))
        })?
    }
}
