//! The REST API (axum). Every handler validates its input and answers 4xx with a message
//! (and, for KFL, the position of the error) instead of failing.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{delete, get, post, MethodRouter};
use axum::{middleware, Json, Router};
use serde::Deserialize;
use serde_json::json;

use crate::auth::http::RouteGuard;
use crate::auth::Authenticator;
use crate::histogram::{HistogramRequest, Stack};
use crate::service::{EntriesRequest, QueryService};
use crate::servicemap::{GroupBy, ServiceMapRequest};
use crate::snapshot::rest as snapshot;
use crate::time::parse_time;
use crate::{kfl, QueryError};

#[derive(Debug, Deserialize)]
pub struct EntriesParams {
    #[serde(default)]
    kfl: String,
    from: Option<String>,
    to: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
    nodes: Option<String>,
}

/// `?nodes=a,b` → `["a", "b"]`.
pub(crate) fn parse_nodes(nodes: Option<&str>) -> Vec<String> {
    nodes
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(String::from)
        .collect()
}

fn window(from: Option<&str>, to: Option<&str>) -> Result<(Option<i64>, Option<i64>), QueryError> {
    let now = chrono::Utc::now().timestamp_micros();
    Ok((
        from.map(|t| parse_time(t, now)).transpose()?,
        to.map(|t| parse_time(t, now)).transpose()?,
    ))
}

impl EntriesParams {
    fn into_request(self) -> Result<EntriesRequest, QueryError> {
        let (from, to) = window(self.from.as_deref(), self.to.as_deref())?;
        let limit = self
            .limit
            .map(|l| {
                l.parse::<usize>()
                    .map_err(|_| QueryError::BadRequest(format!("limit {l:?} is not a number")))
            })
            .transpose()?;
        Ok(EntriesRequest {
            kfl: self.kfl,
            from,
            to,
            limit,
            cursor: self.cursor,
            nodes: parse_nodes(self.nodes.as_deref()),
        })
    }
}

async fn entries(
    State(svc): State<Arc<QueryService>>,
    Query(p): Query<EntriesParams>,
) -> Result<impl IntoResponse, QueryError> {
    let page = svc.entries(&p.into_request()?).await?;
    Ok(Json(page))
}

async fn count(
    State(svc): State<Arc<QueryService>>,
    Query(p): Query<EntriesParams>,
) -> Result<impl IntoResponse, QueryError> {
    if p.limit.is_some() || p.cursor.is_some() {
        return Err(QueryError::BadRequest(
            "count takes kfl, from, to and nodes (no limit or cursor)".into(),
        ));
    }
    Ok(Json(svc.count(&p.into_request()?).await?))
}

#[derive(Debug, Deserialize)]
pub struct HistogramParams {
    #[serde(default)]
    kfl: String,
    from: Option<String>,
    to: Option<String>,
    nodes: Option<String>,
    buckets: Option<String>,
    #[serde(default)]
    stack: String,
}

async fn histogram(
    State(svc): State<Arc<QueryService>>,
    Query(p): Query<HistogramParams>,
) -> Result<impl IntoResponse, QueryError> {
    let (from, to) = window(p.from.as_deref(), p.to.as_deref())?;
    let buckets = p
        .buckets
        .map(|b| {
            b.parse::<usize>()
                .map_err(|_| QueryError::BadRequest(format!("buckets {b:?} is not a number")))
        })
        .transpose()?;
    let req = HistogramRequest {
        kfl: p.kfl,
        from,
        to,
        nodes: parse_nodes(p.nodes.as_deref()),
        buckets,
        stack: Stack::parse(&p.stack)?,
    };
    Ok(Json(svc.histogram(&req).await?))
}

async fn entry(
    State(svc): State<Arc<QueryService>>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, QueryError> {
    Ok(Json(svc.entry(&id).await?))
}

#[derive(Debug, Deserialize)]
pub struct WindowParams {
    from: Option<String>,
    to: Option<String>,
}

/// Distinct values of a tag in a window (autocomplete), from the tag index.
async fn values(
    State(svc): State<Arc<QueryService>>,
    Path(tag): Path<String>,
    Query(p): Query<WindowParams>,
) -> Result<impl IntoResponse, QueryError> {
    let (from, to) = window(p.from.as_deref(), p.to.as_deref())?;
    let values = svc.tag_values(&tag, from, to).await?;
    Ok(Json(json!({"tag": tag, "values": values})))
}

#[derive(Debug, Deserialize)]
pub struct ValidateParams {
    #[serde(default)]
    q: String,
}

async fn validate(
    State(svc): State<Arc<QueryService>>,
    Query(p): Query<ValidateParams>,
) -> impl IntoResponse {
    match kfl::compile(&p.q, &svc.kfl_options()) {
        Ok(_) => (StatusCode::OK, Json(json!({"ok": true}))),
        Err(e) => (
            StatusCode::BAD_REQUEST,
            Json(json!({"ok": false, "error": QueryError::Kfl(e).body()})),
        ),
    }
}

#[derive(Debug, Deserialize)]
pub struct ServiceMapParams {
    #[serde(default)]
    kfl: String,
    from: Option<String>,
    to: Option<String>,
    #[serde(default)]
    group_by: String,
    nodes: Option<String>,
}

async fn service_map(
    State(svc): State<Arc<QueryService>>,
    Query(p): Query<ServiceMapParams>,
) -> Result<impl IntoResponse, QueryError> {
    let (from, to) = window(p.from.as_deref(), p.to.as_deref())?;
    let req = ServiceMapRequest {
        kfl: p.kfl,
        from,
        to,
        group_by: GroupBy::parse(&p.group_by)?,
        nodes: parse_nodes(p.nodes.as_deref()),
    };
    Ok(Json(svc.service_map(&req).await?))
}

async fn boundaries(State(svc): State<Arc<QueryService>>) -> Result<impl IntoResponse, QueryError> {
    Ok(Json(svc.boundaries().await?))
}

async fn healthz() -> &'static str {
    "ok"
}

async fn metrics(State(svc): State<Arc<QueryService>>) -> impl IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        svc.ingest().metrics_text().await,
    )
}

async fn openapi() -> impl IntoResponse {
    Json(crate::openapi::document())
}

/// The handler of one documented operation.
fn handler(method: &str, path: &str) -> MethodRouter<Arc<QueryService>> {
    match (method, path) {
        ("get", "/healthz") => get(healthz),
        ("get", "/metrics") => get(metrics),
        ("get", "/api/v1/openapi.json") => get(openapi),
        ("get", "/api/v1/entries") => get(entries),
        ("get", "/api/v1/entries/{id}") => get(entry),
        ("get", "/api/v1/count") => get(count),
        ("get", "/api/v1/histogram") => get(histogram),
        ("get", "/api/v1/kfl/validate") => get(validate),
        ("get", "/api/v1/values/{tag}") => get(values),
        ("get", "/api/v1/servicemap") => get(service_map),
        ("get", "/api/v1/servicemap/live") => get(crate::live::service_map),
        ("get", "/api/v1/stream") => get(crate::live::stream),
        ("get", "/api/v1/boundaries") => get(boundaries),
        ("post", "/api/v1/sql") => post(crate::sql_rest::sql),
        ("get", "/api/v1/snapshots") => get(snapshot::list),
        ("post", "/api/v1/snapshots") => post(snapshot::create),
        ("get", "/api/v1/snapshots/{name}") => get(snapshot::show),
        ("delete", "/api/v1/snapshots/{name}") => delete(snapshot::delete),
        ("get", "/api/v1/snapshots/{name}/export") => get(snapshot::export),
        _ => panic!("{method} {path} is in the OpenAPI list but has no handler"),
    }
}

/// All routes of the query service: exactly the operations of the OpenAPI document, each
/// behind the authentication layer with the access its operation names (so no route can be
/// served without deciding who may call it). [`crate::auth::Authenticator::disabled`] lets
/// everyone in as the anonymous admin.
pub fn router(svc: Arc<QueryService>, auth: Arc<Authenticator>) -> Router {
    let mut r = Router::new();
    for op in crate::openapi::OPS {
        let guard = RouteGuard::new(auth.clone(), op.access, op.websocket);
        r = r.route(
            op.path,
            handler(op.method, op.path).route_layer(middleware::from_fn_with_state(
                guard,
                crate::auth::http::guard,
            )),
        );
    }
    r.with_state(svc)
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_documented_operation_has_a_handler_and_the_document_is_valid_json() {
        for op in crate::openapi::OPS {
            let _ = super::handler(op.method, op.path);
        }
        let doc = crate::openapi::document();
        let methods: usize = doc["paths"]
            .as_object()
            .unwrap()
            .values()
            .map(|item| item.as_object().unwrap().len())
            .sum();
        assert_eq!(
            methods,
            crate::openapi::OPS.len(),
            "one operation per method and path"
        );
    }
}
