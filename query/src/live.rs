//! Live views over WebSockets: `GET /api/v1/stream?kfl=` pushes matching entries as they are
//! acknowledged; `GET /api/v1/servicemap/live?kfl=&group_by=` pushes service-map deltas.
//!
//! Both subscribe to the ingest's bounded broadcast of acknowledged batches and evaluate the
//! compiled KFL with a DataFusion physical expression per batch. A client that reads slower
//! than traffic arrives never makes the server hold more than `LIVE_BATCHES` batches: it gets
//! `{"type": "dropped", "batches": N}` for what it missed and continues with current traffic.
//!
//! The upgrade answers with the subprotocol the client offered for authentication (see
//! `auth::http`): browsers cannot send an `Authorization` header on a WebSocket.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{AsArray, RecordBatch};
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use datafusion::physical_expr::PhysicalExpr;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;
use wiretrail_proto::schema::NODE;
use wiretrail_storage::rollup::{Rollup, RollupKey};
use wiretrail_storage::{batch_rollups, merge_rollups};

use crate::auth::http::ws_protocol;
use crate::kfl;
use crate::servicemap::{build_with_nodes, GroupBy};
use crate::{batch_to_json, QueryError, QueryService};

/// A compiled live filter: KFL and capture nodes, evaluated by DataFusion per batch.
struct LiveFilter {
    expr: Option<Arc<dyn PhysicalExpr>>,
    limit: Option<usize>,
    /// From `redact(…)`: masked in every streamed entry.
    redact: Vec<kfl::Redaction>,
}

impl LiveFilter {
    fn new(svc: &QueryService, q: &str, nodes: &[String]) -> Result<LiveFilter, QueryError> {
        let compiled = kfl::compile(q, &svc.kfl_options())?;
        let mut preds: Vec<_> = compiled.filter.into_iter().collect();
        if !nodes.is_empty() {
            preds.push(
                datafusion::prelude::col(NODE).in_list(
                    nodes
                        .iter()
                        .map(|n| datafusion::prelude::lit(n.as_str()))
                        .collect(),
                    false,
                ),
            );
        }
        let expr = datafusion::logical_expr::utils::conjunction(preds)
            .map(|e| svc.physical_filter(e))
            .transpose()?;
        Ok(LiveFilter {
            expr,
            limit: compiled.limit,
            redact: compiled.redact,
        })
    }

    fn apply(&self, b: &RecordBatch) -> Result<RecordBatch, QueryError> {
        let Some(expr) = &self.expr else {
            return Ok(b.clone());
        };
        let mask = expr.evaluate(b)?.into_array(b.num_rows())?;
        Ok(arrow::compute::filter_record_batch(b, mask.as_boolean())?)
    }
}

#[derive(Debug, Deserialize)]
pub struct LiveParams {
    #[serde(default)]
    kfl: String,
    nodes: Option<String>,
    #[serde(default)]
    group_by: String,
}

fn nodes_of(p: &LiveParams) -> Vec<String> {
    crate::rest::parse_nodes(p.nodes.as_deref())
}

/// `GET /api/v1/stream?kfl=&nodes=`: one `{"type":"entry","entry":{…}}` message per matching
/// entry; `limit(n)` closes the stream after n entries.
pub(crate) async fn stream(
    ws: WebSocketUpgrade,
    headers: HeaderMap,
    State(svc): State<Arc<QueryService>>,
    Query(p): Query<LiveParams>,
) -> Result<Response, QueryError> {
    let ws = ws.protocols(ws_protocol(&headers));
    // Compile before upgrading, so a bad query is a 400 with its position.
    let filter = LiveFilter::new(&svc, &p.kfl, &nodes_of(&p))?;
    let rx = svc.ingest().subscribe();
    Ok(ws.on_upgrade(move |socket| run_stream(socket, rx, filter)))
}

async fn run_stream(
    mut socket: WebSocket,
    mut rx: tokio::sync::broadcast::Receiver<RecordBatch>,
    filter: LiveFilter,
) {
    let mut sent = 0usize;
    loop {
        let batch = tokio::select! {
            r = rx.recv() => r,
            m = socket.recv() => match m {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => continue,
            },
        };
        let msgs: Vec<String> = match batch {
            Ok(b) => match filter.apply(&b) {
                Ok(m) => {
                    let mut entries = batch_to_json(&m, false);
                    kfl::redact_entries(&mut entries, &filter.redact);
                    entries
                }
                .into_iter()
                .map(|e| json!({"type": "entry", "entry": e}).to_string())
                .collect(),
                Err(e) => vec![json!({"type": "error", "message": e.to_string()}).to_string()],
            },
            Err(RecvError::Lagged(n)) => {
                vec![json!({"type": "dropped", "batches": n}).to_string()]
            }
            Err(RecvError::Closed) => return,
        };
        for m in msgs {
            if socket.send(Message::Text(m.into())).await.is_err() {
                return;
            }
            sent += 1;
            if filter.limit.is_some_and(|l| sent >= l) {
                let _ = socket.send(Message::Close(None)).await;
                return;
            }
        }
    }
}

/// How often the live map pushes what changed.
const MAP_TICK: Duration = Duration::from_secs(1);

/// `GET /api/v1/servicemap/live?kfl=&group_by=&nodes=`: every second with traffic, one
/// `{"type":"delta","nodes":[…],"edges":[…]}` with the counts of that second (add them up on the
/// client; percentiles are of that second).
pub(crate) async fn service_map(
    ws: WebSocketUpgrade,
    headers: HeaderMap,
    State(svc): State<Arc<QueryService>>,
    Query(p): Query<LiveParams>,
) -> Result<Response, QueryError> {
    let ws = ws.protocols(ws_protocol(&headers));
    let filter = LiveFilter::new(&svc, &p.kfl, &nodes_of(&p))?;
    if filter.limit.is_some() {
        return Err(QueryError::BadRequest(
            "limit(n) has no meaning for a service map".into(),
        ));
    }
    let group_by = GroupBy::parse(&p.group_by)?;
    let rx = svc.ingest().subscribe();
    Ok(ws.on_upgrade(move |socket| run_map(socket, rx, filter, group_by)))
}

async fn run_map(
    mut socket: WebSocket,
    mut rx: tokio::sync::broadcast::Receiver<RecordBatch>,
    filter: LiveFilter,
    group_by: GroupBy,
) {
    let mut acc: HashMap<RollupKey, Rollup> = HashMap::new();
    let mut dropped = 0u64;
    let mut tick = tokio::time::interval(MAP_TICK);
    loop {
        tokio::select! {
            r = rx.recv() => match r {
                Ok(b) => match filter.apply(&b) {
                    Ok(m) if m.num_rows() > 0 => merge_rollups(&mut acc, batch_rollups(&m)),
                    Ok(_) => {}
                    Err(e) => {
                        let m = json!({"type": "error", "message": e.to_string()}).to_string();
                        if socket.send(Message::Text(m.into())).await.is_err() {
                            return;
                        }
                    }
                },
                Err(RecvError::Lagged(n)) => dropped += n,
                Err(RecvError::Closed) => return,
            },
            _ = tick.tick() => {
                if acc.is_empty() && dropped == 0 {
                    continue;
                }
                let (nodes, edges) = build_with_nodes(std::mem::take(&mut acc), group_by);
                let m = json!({"type": "delta", "nodes": nodes, "edges": edges, "dropped_batches": dropped});
                dropped = 0;
                if socket.send(Message::Text(m.to_string().into())).await.is_err() {
                    return;
                }
            }
            m = socket.recv() => match m {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            },
        }
    }
}
