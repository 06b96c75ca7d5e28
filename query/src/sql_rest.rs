//! `POST /api/v1/sql`: the request body and the three answer encodings (JSON, CSV, Arrow IPC
//! stream), chosen by `Accept` or `?format=`.

use std::sync::Arc;
use std::time::Duration;

use arrow::array::RecordBatch;
use arrow::datatypes::Schema;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use crate::sql::{SqlAnswer, SqlRequest};
use crate::time::json_time;
use crate::{QueryError, QueryService};

/// The JSON body; a `text/plain` body is the statement alone.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SqlBody {
    sql: String,
    /// A time string or epoch milliseconds.
    from: Option<serde_json::Value>,
    to: Option<serde_json::Value>,
    timeout_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
pub struct FormatParam {
    format: Option<String>,
}

const ARROW_STREAM: &str = "application/vnd.apache.arrow.stream";

#[derive(Clone, Copy, PartialEq)]
enum Format {
    Json,
    Csv,
    Arrow,
}

fn format(headers: &HeaderMap, param: Option<&str>) -> Result<Format, QueryError> {
    if let Some(f) = param {
        return match f {
            "json" => Ok(Format::Json),
            "csv" => Ok(Format::Csv),
            "arrow" => Ok(Format::Arrow),
            other => Err(QueryError::BadRequest(format!(
                "format {other:?}: use json, csv or arrow"
            ))),
        };
    }
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    Ok(if accept.contains(ARROW_STREAM) {
        Format::Arrow
    } else if accept.contains("text/csv") {
        Format::Csv
    } else {
        Format::Json
    })
}

fn parse_body(headers: &HeaderMap, body: &[u8]) -> Result<SqlRequest, QueryError> {
    let text = std::str::from_utf8(body)
        .map_err(|_| QueryError::BadRequest("the body is not UTF-8".into()))?;
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("application/json"));
    if !is_json {
        return Ok(SqlRequest {
            sql: text.to_string(),
            ..Default::default()
        });
    }
    let b: SqlBody = serde_json::from_str(text).map_err(|e| {
        QueryError::BadRequest(format!(
            "body: {e}; expected {{\"sql\": \"SELECT …\", \"from\"?, \"to\"?, \"timeout_ms\"?}}"
        ))
    })?;
    let now = chrono::Utc::now().timestamp_micros();
    Ok(SqlRequest {
        sql: b.sql,
        from: json_time(&b.from, now, "from")?,
        to: json_time(&b.to, now, "to")?,
        timeout: b.timeout_ms.map(Duration::from_millis),
    })
}

pub(crate) async fn sql(
    State(svc): State<Arc<QueryService>>,
    Query(p): Query<FormatParam>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, QueryError> {
    let fmt = format(&headers, p.format.as_deref())?;
    let req = parse_body(&headers, &body)?;
    let answer = svc.sql(&req).await?;
    let truncated = if answer.truncated { "true" } else { "false" };
    let (ctype, bytes) = match fmt {
        Format::Json => ("application/json", to_json(&answer)?),
        Format::Csv => ("text/csv; charset=utf-8", to_csv(&answer)?),
        Format::Arrow => (ARROW_STREAM, to_arrow(&answer)?),
    };
    Ok((
        [
            (header::CONTENT_TYPE, ctype),
            (
                header::HeaderName::from_static("x-wiretrail-truncated"),
                truncated,
            ),
        ],
        bytes,
    )
        .into_response())
}

fn to_json(a: &SqlAnswer) -> Result<Vec<u8>, QueryError> {
    let columns: Vec<_> = a
        .schema
        .fields()
        .iter()
        .map(|f| json!({"name": f.name(), "type": f.data_type().to_string()}))
        .collect();
    let mut rows = arrow::json::ArrayWriter::new(Vec::new());
    let refs: Vec<&RecordBatch> = a.batches.iter().collect();
    rows.write_batches(&refs)?;
    rows.finish()?;
    let mut rows = rows.into_inner();
    if rows.is_empty() {
        rows = b"[]".to_vec();
    }
    let n: usize = a.batches.iter().map(RecordBatch::num_rows).sum();
    let mut out = format!(
        "{{\"columns\":{},\"row_count\":{n},\"truncated\":{},\"rows\":",
        serde_json::Value::from(columns),
        a.truncated
    )
    .into_bytes();
    out.extend_from_slice(&rows);
    out.push(b'}');
    Ok(out)
}

/// RFC 4180: quote a field when it holds a comma, quote or line break.
fn csv_field(out: &mut String, s: &str) {
    if s.contains([',', '"', '\n', '\r']) {
        out.push('"');
        out.push_str(&s.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(s);
    }
}

fn to_csv(a: &SqlAnswer) -> Result<Vec<u8>, QueryError> {
    let mut out = String::new();
    let header: &Schema = &a.schema;
    for (i, f) in header.fields().iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        csv_field(&mut out, f.name());
    }
    out.push_str("\r\n");
    let opts = FormatOptions::default().with_display_error(true);
    for b in &a.batches {
        let fmts = b
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &opts))
            .collect::<Result<Vec<_>, _>>()?;
        for row in 0..b.num_rows() {
            for (i, f) in fmts.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                csv_field(&mut out, &f.value(row).to_string());
            }
            out.push_str("\r\n");
        }
    }
    Ok(out.into_bytes())
}

fn to_arrow(a: &SqlAnswer) -> Result<Vec<u8>, QueryError> {
    let mut w = arrow::ipc::writer::StreamWriter::try_new(Vec::new(), &a.schema)?;
    for b in &a.batches {
        w.write(b)?;
    }
    w.finish()?;
    Ok(w.into_inner()?)
}
