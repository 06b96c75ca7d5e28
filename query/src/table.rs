//! The `entries` table as DataFusion sees it: the Parquet files the catalog lists for the
//! window, plus the acknowledged rows still in the ingest buffer. Files outside the window are
//! never opened; inside a file, row groups and pages are pruned by statistics and the page
//! index, and filters are evaluated during the scan (`pushdown_filters`).

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::DFSchema;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder, ParquetSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::error::Result;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown, TableType};
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::union::UnionExec;
use datafusion::physical_plan::ExecutionPlan;
use wiretrail_ingest::Snapshot;
use wiretrail_proto::schema::entry_schema;

/// A snapshot of the store for one query.
#[derive(Debug)]
pub struct EntriesTable {
    /// Local files: (absolute path, size).
    files: Vec<(String, u64)>,
    /// Files in object storage: (object key, size), read through the store registered under
    /// `remote_url` (see [`register_remote`]).
    remote_files: Vec<(String, u64)>,
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
                (path.to_string_lossy().into_owned(), f.bytes)
            })
            .collect();
        let (remote_files, remote_url) = match &snapshot.remote {
            Some(r) if !remote.is_empty() => (
                remote
                    .iter()
                    .map(|f| (r.object_path(&f.path).to_string(), f.bytes))
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
        // Used for pruning and early filtering; DataFusion still applies them exactly above.
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let schema = entry_schema();
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
            if files.is_empty() {
                continue;
            }
            let mut source = ParquetSource::new(schema.clone())
                .with_pushdown_filters(true)
                .with_reorder_filters(true)
                .with_enable_page_index(true);
            if let Some(pred) = conjunction(filters.to_vec()) {
                let df_schema = DFSchema::try_from(schema.as_ref().clone())?;
                source = source.with_predicate(state.create_physical_expr(pred, &df_schema)?);
            }
            // One group per file up to the number of target partitions, so files are read in
            // parallel.
            let parts = state.config().target_partitions().max(1);
            let mut groups: Vec<Vec<PartitionedFile>> = vec![Vec::new(); parts.min(files.len())];
            for (i, (path, size)) in files.iter().enumerate() {
                let n = groups.len();
                groups[i % n].push(PartitionedFile::new(path.clone(), *size));
            }
            let config = FileScanConfigBuilder::new(store, Arc::new(source))
                .with_file_groups(groups.into_iter().map(FileGroup::new).collect())
                .with_projection_indices(projection.cloned())?
                .with_limit(limit)
                .build();
            inputs.push(DataSourceExec::from_data_source(config));
        }
        if !self.buffered.is_empty() {
            inputs.push(MemorySourceConfig::try_new_exec(
                std::slice::from_ref(&self.buffered),
                schema.clone(),
                projection.cloned(),
            )?);
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
