//! The REST API (axum). Every handler validates its input and answers 4xx with a message
//! (and, for KFL, the position of the error) instead of failing.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use crate::service::{EntriesRequest, QueryService};
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
}

impl EntriesParams {
    fn into_request(self) -> Result<EntriesRequest, QueryError> {
        let now = chrono::Utc::now().timestamp_micros();
        let limit = self
            .limit
            .map(|l| {
                l.parse::<usize>()
                    .map_err(|_| QueryError::BadRequest(format!("limit {l:?} is not a number")))
            })
            .transpose()?;
        Ok(EntriesRequest {
            kfl: self.kfl,
            from: self
                .from
                .as_deref()
                .map(|t| parse_time(t, now))
                .transpose()?,
            to: self.to.as_deref().map(|t| parse_time(t, now)).transpose()?,
            limit,
            cursor: self.cursor,
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
    let now = chrono::Utc::now().timestamp_micros();
    let from = p.from.as_deref().map(|t| parse_time(t, now)).transpose()?;
    let to = p.to.as_deref().map(|t| parse_time(t, now)).transpose()?;
    let values = svc.tag_values(&tag, from, to).await?;
    Ok(Json(json!({"tag": tag, "values": values})))
}

#[derive(Debug, Deserialize)]
pub struct ValidateParams {
    #[serde(default)]
    q: String,
}

async fn validate(Query(p): Query<ValidateParams>) -> impl IntoResponse {
    match kfl::validate(&p.q) {
        Ok(()) => (StatusCode::OK, Json(json!({"ok": true}))),
        Err(e) => (
            StatusCode::BAD_REQUEST,
            Json(json!({"ok": false, "error": QueryError::Kfl(e).body()})),
        ),
    }
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

/// All routes of the query service.
pub fn router(svc: Arc<QueryService>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/api/v1/entries", get(entries))
        .route("/api/v1/entries/{id}", get(entry))
        .route("/api/v1/kfl/validate", get(validate))
        .route("/api/v1/values/{tag}", get(values))
        .merge(crate::snapshot::rest::routes())
        .with_state(svc)
}
