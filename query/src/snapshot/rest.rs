//! Snapshot handlers (routed by `rest::router` from `openapi::OPS`): create (pin), list, show,
//! delete, export as a tar bundle, HAR or PCAP.
//! Exports are written to a temporary directory and streamed from disk, so a large window
//! is never held in memory; the directory is removed when the response ends.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::io::AsyncReadExt;

use super::{ExportFormat, SnapshotSpec};
use crate::{QueryError, QueryService};

/// The body of `POST /api/v1/snapshots`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    name: String,
    from: Option<Value>,
    to: Option<Value>,
    #[serde(default)]
    kfl: String,
    #[serde(default)]
    nodes: Vec<String>,
}

/// A time in a JSON body: a string in any API form, or epoch milliseconds as a number.
pub(crate) async fn create(
    State(svc): State<Arc<QueryService>>,
    body: Bytes,
) -> Result<impl IntoResponse, QueryError> {
    let b: CreateBody = serde_json::from_slice(&body).map_err(|e| {
        QueryError::BadRequest(format!(
            "body must be JSON {{\"name\", \"from\"?, \"to\"?, \"kfl\"?, \"nodes\"?}}: {e}"
        ))
    })?;
    let now = chrono::Utc::now().timestamp_micros();
    let spec = SnapshotSpec {
        from: crate::time::json_time(&b.from, now, "from")?,
        to: crate::time::json_time(&b.to, now, "to")?,
        name: b.name,
        kfl: b.kfl,
        nodes: b.nodes,
    };
    let info = super::create(&svc, &spec).await?;
    Ok((StatusCode::CREATED, Json(info)))
}

pub(crate) async fn list(
    State(svc): State<Arc<QueryService>>,
) -> Result<impl IntoResponse, QueryError> {
    Ok(Json(json!({ "snapshots": super::list(&svc)? })))
}

pub(crate) async fn show(
    State(svc): State<Arc<QueryService>>,
    Path(name): Path<String>,
) -> Result<impl IntoResponse, QueryError> {
    Ok(Json(super::SnapshotInfo::from_pin(&super::find(
        &svc, &name,
    )?)))
}

pub(crate) async fn delete(
    State(svc): State<Arc<QueryService>>,
    Path(name): Path<String>,
) -> Result<impl IntoResponse, QueryError> {
    super::delete(&svc, &name)?;
    Ok(Json(json!({ "deleted": name })))
}

#[derive(Debug, Deserialize)]
pub(crate) struct ExportParams {
    #[serde(default)]
    format: String,
}

/// A temporary directory removed when dropped (after the response body is sent).
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Result<Self, QueryError> {
        static N: AtomicU64 = AtomicU64::new(0);
        let p = std::env::temp_dir().join(format!(
            "wiretrail-export-{}-{}-{}",
            std::process::id(),
            chrono::Utc::now().timestamp_micros(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&p)
            .map_err(|e| QueryError::Io(format!("cannot create {}: {e}", p.display())))?;
        Ok(TempDir(p))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub(crate) async fn export(
    State(svc): State<Arc<QueryService>>,
    Path(name): Path<String>,
    Query(p): Query<ExportParams>,
) -> Result<Response, QueryError> {
    let format = ExportFormat::parse(&p.format)?;
    super::find(&svc, &name)?;
    let tmp = TempDir::new()?;
    let dir = tmp.0.join("bundle");
    super::export(&svc, &name, &dir, format).await?;
    let (file, content_type, ext) = match format {
        ExportFormat::Bundle => {
            let tar = tmp.0.join("bundle.tar");
            let d = dir.clone();
            let t = tar.clone();
            tokio::task::spawn_blocking(move || -> Result<(), QueryError> {
                let f = std::fs::File::create(&t)
                    .map_err(|e| QueryError::Io(format!("cannot create {}: {e}", t.display())))?;
                let w = super::write_tar(&d, std::io::BufWriter::new(f))?;
                w.into_inner()
                    .map_err(|e| QueryError::Io(format!("cannot write {}: {e}", t.display())))?;
                Ok(())
            })
            .await
            .map_err(|e| QueryError::Io(format!("archiving the bundle failed: {e}")))??;
            (tar, "application/x-tar", "tar")
        }
        ExportFormat::Har => (dir.join(super::HAR_FILE), "application/json", "har"),
        ExportFormat::Pcap => (
            dir.join(super::PCAP_FILE),
            "application/vnd.tcpdump.pcap",
            "pcap",
        ),
    };
    let f = tokio::fs::File::open(&file)
        .await
        .map_err(|e| QueryError::Io(format!("cannot open {}: {e}", file.display())))?;
    let len = f.metadata().await.map(|m| m.len()).ok();
    // The stream owns the temporary directory, so it lives until the last chunk is sent.
    let stream = futures::stream::unfold((Some(f), tmp), |(f, tmp)| async move {
        let mut f = f?;
        let mut buf = vec![0u8; 1 << 16];
        match f.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok::<_, std::io::Error>(Bytes::from(buf)), (Some(f), tmp)))
            }
            Err(e) => Some((Err(e), (None, tmp))),
        }
    });
    let mut resp = Response::builder()
        .header(header::CONTENT_TYPE, content_type)
        .header(
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{name}.{ext}\""),
        );
    if let Some(len) = len {
        resp = resp.header(header::CONTENT_LENGTH, len);
    }
    resp.body(Body::from_stream(stream))
        .map_err(|e| QueryError::Io(format!("cannot build the response: {e}")))
}
