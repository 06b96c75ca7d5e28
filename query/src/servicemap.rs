//! The service map: who talked to whom, per protocol, in a window — nodes are identities as of
//! capture time, edges carry count, errors, bytes and latency percentiles.
//!
//! Both ways of computing it end in the same per-minute [`Rollup`]s, so a filtered and an
//! unfiltered map of the same traffic agree to the last entry and the last latency bucket:
//! - unfiltered: the whole minutes of the window come from the catalog's rollups (a few keys
//!   per edge and minute instead of every entry), the partial minutes at both ends and the
//!   ingest buffer are aggregated from rows;
//! - KFL-scoped or node-focused: DataFusion evaluates the filter over the window's files and
//!   only the rollup columns stream back, aggregated batch by batch with the same code the
//!   ingest path uses ([`wiretrail_storage::batch_rollups`]), in bounded memory.

use std::collections::{BTreeMap, HashMap};

use arrow::array::{AsArray, BooleanArray, RecordBatch};
use arrow::datatypes::TimestampMicrosecondType;
use futures::StreamExt;
use serde::Serialize;
use wiretrail_proto::schema::TS;
use wiretrail_storage::rollup::{Rollup, RollupKey, Side};
use wiretrail_storage::{batch_rollups, merge_rollups, ROLLUP_COLUMNS};

use crate::kfl;
use crate::service::QueryService;
use crate::QueryError;

const MINUTE_US: i64 = 60_000_000;

/// What a map node stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum GroupBy {
    /// Service, else workload, else pod, else the address's name.
    #[default]
    Service,
    /// Workload (Deployment, StatefulSet, CronJob…), else pod, else name.
    Workload,
    Pod,
    Namespace,
    /// The Kubernetes node the identity runs on.
    Node,
}

impl GroupBy {
    pub fn parse(s: &str) -> Result<GroupBy, QueryError> {
        Ok(match s {
            "" | "service" => GroupBy::Service,
            "workload" => GroupBy::Workload,
            "pod" => GroupBy::Pod,
            "namespace" => GroupBy::Namespace,
            "node" => GroupBy::Node,
            other => {
                return Err(QueryError::BadRequest(format!(
                    "group_by {other:?}: use service, workload, pod, namespace or node"
                )))
            }
        })
    }
}

#[derive(Debug, Clone, Default)]
pub struct ServiceMapRequest {
    pub kfl: String,
    /// `[from, to)` in µs; `None` = unbounded.
    pub from: Option<i64>,
    pub to: Option<i64>,
    pub group_by: GroupBy,
    /// Capture nodes (`?nodes=`); empty = all.
    pub nodes: Vec<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct MapNode {
    pub id: String,
    pub name: String,
    pub namespace: String,
    /// `service`, `workload`, `pod`, `namespace`, `node` or `external` (only an address or a
    /// DNS name is known).
    pub kind: &'static str,
    /// Entries this node took part in, as source or destination.
    pub count: u64,
    pub bytes: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct MapEdge {
    pub source: String,
    pub target: String,
    pub protocol: String,
    pub count: u64,
    /// Entries that failed (see `wiretrail_proto::schema::is_error`).
    pub errors: u64,
    pub bytes: u64,
    /// Latency percentiles of the entries with a response, within 1 % (log-bucketed sketch).
    pub p50_us: Option<u64>,
    pub p99_us: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ServiceMap {
    pub nodes: Vec<MapNode>,
    pub edges: Vec<MapEdge>,
    /// How it was computed: `rollups` (catalog minutes + rows at the edges) or `scan`.
    pub source: &'static str,
    pub files_scanned: usize,
}

/// `(id, name, namespace, kind)` of one side at the requested level.
fn identity(s: &Side, g: GroupBy) -> (String, String, String, &'static str) {
    let pick = |cands: &[(&String, &'static str)]| -> (String, &'static str) {
        cands
            .iter()
            .find(|(v, _)| !v.is_empty())
            .map(|(v, k)| ((*v).clone(), *k))
            .unwrap_or_else(|| ("unknown".into(), "external"))
    };
    let ext = (&s.name, "external");
    let (label, kind) = match g {
        GroupBy::Service => pick(&[
            (&s.service, "service"),
            (&s.workload, "workload"),
            (&s.pod, "pod"),
            ext,
        ]),
        GroupBy::Workload => pick(&[(&s.workload, "workload"), (&s.pod, "pod"), ext]),
        GroupBy::Pod => pick(&[(&s.pod, "pod"), ext]),
        GroupBy::Namespace => pick(&[(&s.namespace, "namespace"), ext]),
        GroupBy::Node => pick(&[(&s.node, "node"), ext]),
    };
    let namespace = match kind {
        "node" | "external" => String::new(),
        _ => s.namespace.clone(),
    };
    // Namespaced identities read `ns/name`; node-level processes (kubelet, host network) have
    // no namespace and are told apart by their node; an outside address is itself.
    let id = if kind == "namespace" || kind == "node" {
        label.clone()
    } else if !namespace.is_empty() {
        format!("{namespace}/{label}")
    } else if !s.node.is_empty() {
        format!("{label}@{}", s.node)
    } else {
        label.clone()
    };
    (id, label, namespace, kind)
}

/// Folds per-minute rollups into the map at one grouping level.
pub fn build(rollups: impl IntoIterator<Item = (RollupKey, Rollup)>, g: GroupBy) -> Vec<MapEdge> {
    build_with_nodes(rollups, g).1
}

pub(crate) fn build_with_nodes(
    rollups: impl IntoIterator<Item = (RollupKey, Rollup)>,
    g: GroupBy,
) -> (Vec<MapNode>, Vec<MapEdge>) {
    let mut edges: BTreeMap<(String, String, String), Rollup> = BTreeMap::new();
    let mut nodes: BTreeMap<String, MapNode> = BTreeMap::new();
    for (k, r) in rollups {
        let (sid, sname, sns, skind) = identity(&k.src, g);
        let (did, dname, dns, dkind) = identity(&k.dst, g);
        let mut touch = |id: &String, name: String, namespace: String, kind| {
            let n = nodes.entry(id.clone()).or_insert_with(|| MapNode {
                id: id.clone(),
                name,
                namespace,
                kind,
                count: 0,
                bytes: 0,
            });
            n.count += r.count;
            n.bytes = n.bytes.saturating_add(r.bytes);
        };
        touch(&sid, sname, sns, skind);
        if did != sid {
            touch(&did, dname, dns, dkind);
        }
        edges.entry((sid, did, k.protocol)).or_default().merge(&r);
    }
    let edges = edges
        .into_iter()
        .map(|((source, target, protocol), r)| MapEdge {
            source,
            target,
            protocol,
            count: r.count,
            errors: r.errors,
            bytes: r.bytes,
            p50_us: r.quantile_us(0.5),
            p99_us: r.quantile_us(0.99),
        })
        .collect();
    (nodes.into_values().collect(), edges)
}

/// Rows of `b` with `lo <= ts < hi`.
fn rows_between(b: &RecordBatch, lo: i64, hi: i64) -> Result<RecordBatch, QueryError> {
    let ts = b
        .column_by_name(TS)
        .ok_or_else(|| QueryError::BadRequest("batch without ts".into()))?
        .as_primitive::<TimestampMicrosecondType>();
    let keep: BooleanArray = ts.iter().map(|t| t.map(|t| t >= lo && t < hi)).collect();
    Ok(arrow::compute::filter_record_batch(b, &keep)?)
}

impl QueryService {
    /// The service map of a window, optionally scoped by KFL and capture nodes.
    pub async fn service_map(&self, req: &ServiceMapRequest) -> Result<ServiceMap, QueryError> {
        let compiled = kfl::compile(&req.kfl, &self.kfl_options())?;
        if compiled.limit.is_some() {
            return Err(QueryError::BadRequest(
                "limit(n) has no meaning for a service map: it aggregates every matching entry"
                    .into(),
            ));
        }
        let (from, to) = (req.from.unwrap_or(i64::MIN), req.to.unwrap_or(i64::MAX));
        if from >= to {
            return Err(QueryError::BadRequest("`from` must be before `to`".into()));
        }
        let mut acc: HashMap<RollupKey, Rollup> = HashMap::new();
        let mut files_scanned = 0;
        let source = if compiled.filter.is_none() && req.nodes.is_empty() {
            // Whole minutes from the catalog; the partial minutes at the ends from rows.
            let lo = from.saturating_add(MINUTE_US - 1).div_euclid(MINUTE_US) * MINUTE_US;
            let hi = to.div_euclid(MINUTE_US) * MINUTE_US;
            if lo < hi {
                let (rollups, buffered) = self.ingest().rollup_snapshot(lo, hi).await?;
                for (k, r) in rollups {
                    acc.entry(k).or_default().merge(&r);
                }
                for b in &buffered {
                    merge_rollups(&mut acc, batch_rollups(&rows_between(b, lo, hi)?));
                }
                for (a, b) in [(from, lo), (hi, to)] {
                    if a < b {
                        files_scanned += self.scan_rollups(a, b, None, &[], &mut acc).await?;
                    }
                }
            } else {
                files_scanned += self.scan_rollups(from, to, None, &[], &mut acc).await?;
            }
            "rollups"
        } else {
            files_scanned += self
                .scan_rollups(from, to, compiled.filter, &req.nodes, &mut acc)
                .await?;
            "scan"
        };
        let (nodes, edges) = build_with_nodes(acc, req.group_by);
        Ok(ServiceMap {
            nodes,
            edges,
            source,
            files_scanned,
        })
    }

    /// Aggregates the matching rows of `[from, to)` into `acc`; returns the files scanned.
    async fn scan_rollups(
        &self,
        from: i64,
        to: i64,
        filter: Option<datafusion::prelude::Expr>,
        nodes: &[String],
        acc: &mut HashMap<RollupKey, Rollup>,
    ) -> Result<usize, QueryError> {
        let bound = |t: i64| (t != i64::MIN && t != i64::MAX).then_some(t);
        let (df, stats) = self
            .scan(bound(from), bound(to), filter.into_iter().collect(), nodes)
            .await?;
        let mut stream = df.select_columns(&ROLLUP_COLUMNS)?.execute_stream().await?;
        while let Some(b) = stream.next().await {
            merge_rollups(acc, batch_rollups(&b?));
        }
        Ok(stats.files_scanned)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn side(ns: &str, service: &str, workload: &str, pod: &str, name: &str, node: &str) -> Side {
        Side {
            name: name.into(),
            namespace: ns.into(),
            service: service.into(),
            workload: workload.into(),
            pod: pod.into(),
            node: node.into(),
        }
    }

    #[test]
    fn identities_at_each_level() {
        let api = side("shop", "api", "api", "api-1", "api-1", "node-a");
        let job = side("shop", "", "reports", "reports-9", "reports-9", "node-b");
        let kubelet = side("", "", "kubelet", "", "kubelet", "node-a");
        let ext = side("", "", "", "", "10.9.8.7", "");
        let id = |s: &Side, g| identity(s, g).0;
        assert_eq!(id(&api, GroupBy::Service), "shop/api");
        assert_eq!(id(&job, GroupBy::Service), "shop/reports");
        assert_eq!(id(&job, GroupBy::Pod), "shop/reports-9");
        assert_eq!(id(&kubelet, GroupBy::Service), "kubelet@node-a");
        assert_eq!(id(&kubelet, GroupBy::Pod), "kubelet@node-a");
        assert_eq!(id(&api, GroupBy::Namespace), "shop");
        assert_eq!(id(&api, GroupBy::Node), "node-a");
        assert_eq!(id(&ext, GroupBy::Service), "10.9.8.7");
        assert_eq!(identity(&ext, GroupBy::Node).3, "external");
    }

    #[test]
    fn edges_merge_minutes_and_nodes_count_both_sides() {
        let a = side("shop", "api", "api", "api-1", "api-1", "n");
        let b = side("shop", "api", "api", "api-2", "api-2", "n");
        let r = side("infra", "redis", "redis", "redis-0", "redis-0", "n");
        let mut one = Rollup::default();
        one.add(0, false, 10, Some(100));
        let mut two = Rollup::default();
        two.add(3, true, 5, Some(300));
        let key = |minute, src: &Side| RollupKey {
            minute,
            protocol: "redis".into(),
            src: src.clone(),
            dst: r.clone(),
        };
        let (nodes, edges) = build_with_nodes(
            vec![(key(0, &a), one.clone()), (key(60_000_000, &b), two)],
            GroupBy::Service,
        );
        assert_eq!(
            edges.len(),
            1,
            "two pods of one service, two minutes: one edge"
        );
        let e = &edges[0];
        assert_eq!((e.count, e.errors, e.bytes), (2, 1, 15));
        assert_eq!(
            (e.source.as_str(), e.target.as_str()),
            ("shop/api", "infra/redis")
        );
        assert_eq!(nodes.len(), 2);
        assert!(nodes.iter().all(|n| n.count == 2 && n.bytes == 15));
        let by_pod = build(
            vec![(key(0, &a), one.clone()), (key(0, &b), one)],
            GroupBy::Pod,
        );
        assert_eq!(by_pod.len(), 2);
    }
}
