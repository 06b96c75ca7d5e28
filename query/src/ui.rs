//! The web dashboard's files, served at `/` next to the API: embedded in the binary from
//! `ui/dist/` (see `build.rs`), or read from a directory (`wiretrail up --ui-dir`) for UI work.
//!
//! `index.html` and other fixed names are revalidated on every load (`no-cache` + ETag), so an
//! upgrade shows at once; Vite's content-hashed files under `assets/` are cached for a year. A
//! path without a file extension is a client-side route and gets `index.html`; an unknown
//! `/api/…` path is a JSON 404, never the page.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use bytes::Bytes;
use serde_json::json;
use sha2::{Digest, Sha256};

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/ui_assets.rs"));
}

/// Where the dashboard's files come from.
#[derive(Debug, Clone)]
pub enum UiSource {
    /// Built into the binary.
    Embedded,
    /// Read from this directory on every request (`--ui-dir`).
    Dir(PathBuf),
}

/// One file ready to send.
struct Asset {
    bytes: Bytes,
    etag: String,
    /// Gzip of `bytes`, when compressing is worth it.
    gzip: Option<Bytes>,
}

struct Ui {
    source: UiSource,
    /// Embedded assets are hashed and compressed once, on first request.
    cache: Mutex<HashMap<String, Arc<Asset>>>,
}

/// Whether this binary carries a built dashboard.
pub fn embedded_available() -> bool {
    embedded::ASSETS.iter().any(|(p, _)| *p == "index.html")
}

/// A router that answers every path the API does not: the dashboard.
pub fn router(source: UiSource) -> Router {
    let ui = Arc::new(Ui {
        source,
        cache: Mutex::new(HashMap::new()),
    });
    Router::new().fallback(serve).with_state(ui)
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, e)| e) {
        Some("html") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("json" | "map") => "application/json",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        Some("woff2") => "font/woff2",
        Some("txt") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

fn compressible(path: &str) -> bool {
    matches!(
        path.rsplit_once('.').map(|(_, e)| e),
        Some("html" | "js" | "mjs" | "css" | "svg" | "json" | "map" | "txt")
    )
}

fn make_asset(path: &str, bytes: Vec<u8>) -> Asset {
    let digest = Sha256::digest(&bytes);
    let etag = format!(
        "\"{}\"",
        digest[..12]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    );
    let gzip = (compressible(path) && bytes.len() > 1024)
        .then(|| {
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            enc.write_all(&bytes).ok()?;
            enc.finish().ok()
        })
        .flatten()
        .map(Bytes::from);
    Asset {
        bytes: Bytes::from(bytes),
        etag,
        gzip,
    }
}

/// `a/b.js` relative to `dir`, refusing anything that climbs out of it.
fn safe_join(dir: &Path, rel: &str) -> Option<PathBuf> {
    let rel = Path::new(rel);
    rel.components()
        .all(|c| matches!(c, Component::Normal(_)))
        .then(|| dir.join(rel))
}

impl Ui {
    fn load(&self, rel: &str) -> Option<Arc<Asset>> {
        match &self.source {
            UiSource::Embedded => {
                if let Some(a) = self.cache.lock().ok()?.get(rel) {
                    return Some(a.clone());
                }
                let (_, bytes) = embedded::ASSETS.iter().find(|(p, _)| *p == rel)?;
                let a = Arc::new(make_asset(rel, bytes.to_vec()));
                self.cache.lock().ok()?.insert(rel.to_string(), a.clone());
                Some(a)
            }
            UiSource::Dir(dir) => {
                let p = safe_join(dir, rel)?;
                std::fs::read(p).ok().map(|b| Arc::new(make_asset(rel, b)))
            }
        }
    }
}

fn not_built(source: &UiSource) -> Response {
    let why = match source {
        UiSource::Embedded => "this binary was built without ui/dist".to_string(),
        UiSource::Dir(d) => format!("{} has no index.html", d.display()),
    };
    (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        format!(
            "<!doctype html><title>wiretrail</title><p>The wiretrail dashboard is not available: \
             {why}. Build it with <code>npm ci &amp;&amp; npm run build</code> in <code>ui/</code>, \
             or start <code>wiretrail up --ui-dir DIR</code>. The API is at \
             <a href=\"/api/v1/openapi.json\">/api/v1/openapi.json</a>.</p>"
        ),
    )
        .into_response()
}

async fn serve(
    State(ui): State<Arc<Ui>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let path = uri.path();
    if path.starts_with("/api/") || path == "/api" {
        return (
            StatusCode::NOT_FOUND,
            axum::Json(json!({"error": {"message": format!("no route {method} {path}: see /api/v1/openapi.json")}})),
        )
            .into_response();
    }
    if method != Method::GET && method != Method::HEAD {
        return (
            StatusCode::METHOD_NOT_ALLOWED,
            "the dashboard is read with GET",
        )
            .into_response();
    }
    let rel = path.trim_start_matches('/');
    let last = rel.rsplit('/').next().unwrap_or_default();
    // A client-side route (no extension) is the page itself.
    let (rel, route) = if rel.is_empty() || !last.contains('.') {
        ("index.html", true)
    } else {
        (rel, false)
    };
    let Some(asset) = ui.load(rel) else {
        if route {
            return not_built(&ui.source);
        }
        return (StatusCode::NOT_FOUND, format!("no file {path}")).into_response();
    };
    let cache = if rel.starts_with("assets/") {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    let mut h = HeaderMap::new();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type(rel)),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    if let Ok(v) = HeaderValue::from_str(&asset.etag) {
        h.insert(header::ETAG, v);
    }
    h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|t| t.trim() == asset.etag || t.trim() == "*")
        });
    if fresh {
        return (StatusCode::NOT_MODIFIED, h).into_response();
    }
    let gzip_ok = headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|e| e.trim().starts_with("gzip")));
    let bytes = match (&asset.gzip, gzip_ok) {
        (Some(gz), true) => {
            h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            gz.clone()
        }
        _ => asset.bytes.clone(),
    };
    if method == Method::HEAD {
        return (StatusCode::OK, h).into_response();
    }
    (StatusCode::OK, h, Body::from(bytes)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_cannot_climb_out_of_the_ui_dir() {
        let d = Path::new("/srv/ui");
        assert_eq!(safe_join(d, "assets/a.js"), Some(d.join("assets/a.js")));
        assert_eq!(safe_join(d, "../etc/passwd"), None);
        assert_eq!(safe_join(d, "/etc/passwd"), None);
        assert_eq!(safe_join(d, "assets/../../x"), None);
    }

    #[test]
    fn etags_follow_content_and_text_is_compressed() {
        let a = make_asset("assets/app.js", vec![b'x'; 4096]);
        let b = make_asset("assets/app.js", vec![b'y'; 4096]);
        assert_ne!(a.etag, b.etag);
        assert!(a.gzip.as_ref().unwrap().len() < 4096);
        assert!(make_asset("logo.png", vec![0; 4096]).gzip.is_none());
    }
}
