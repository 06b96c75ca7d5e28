use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use thiserror::Error;

use crate::kfl::KflError;

/// Errors of the query service. User mistakes are 4xx with a message that says what to fix;
/// only a failure of our own is a 500.
#[derive(Debug, Error)]
pub enum QueryError {
    #[error("KFL: {0}")]
    Kfl(KflError),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    /// The request clashes with what exists (a snapshot name already taken).
    #[error("{0}")]
    Conflict(String),
    /// No credentials, or credentials no principal holds: 401 with `WWW-Authenticate`.
    #[error("{0}")]
    Unauthenticated(String),
    /// A principal whose role may not do this: 403.
    #[error("{0}")]
    Forbidden(String),
    /// Authentication cannot be set up (an unsupported mode, an unreadable principals file).
    #[error("{0}")]
    Auth(String),
    /// A file of ours (a snapshot bundle) could not be read or written; the message names it.
    #[error("{0}")]
    Io(String),
    #[error("parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error(transparent)]
    Ingest(#[from] wiretrail_ingest::IngestError),
    #[error("query engine: {0}")]
    DataFusion(#[from] datafusion::error::DataFusionError),
    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
}

impl From<KflError> for QueryError {
    fn from(e: KflError) -> Self {
        QueryError::Kfl(e)
    }
}

impl QueryError {
    pub fn status(&self) -> StatusCode {
        match self {
            QueryError::Kfl(_) | QueryError::BadRequest(_) => StatusCode::BAD_REQUEST,
            QueryError::NotFound(_) => StatusCode::NOT_FOUND,
            QueryError::Conflict(_) => StatusCode::CONFLICT,
            QueryError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            QueryError::Forbidden(_) => StatusCode::FORBIDDEN,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The `error` object of an error response.
    pub fn body(&self) -> serde_json::Value {
        match self {
            QueryError::Kfl(e) => {
                serde_json::to_value(e).unwrap_or_else(|_| json!({"message": e.to_string()}))
            }
            other => json!({ "message": other.to_string() }),
        }
    }
}

impl IntoResponse for QueryError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(error = %self, "query failed");
        }
        let mut resp = (status, Json(json!({ "error": self.body() }))).into_response();
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer realm=\"wiretrail\""),
            );
        }
        resp
    }
}
