//! HAR 1.2 (http://www.softwareishard.com/blog/har-12-spec/) of the HTTP-family entries
//! (`http`, `http2`, `graphql`, `grpc`), written entry by entry so an export never holds the
//! whole log in memory. wiretrail's own fields are `_`-prefixed, as the spec allows.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::headers;
use crate::QueryError;

/// Protocols whose entries are HTTP exchanges.
pub const HAR_PROTOCOLS: [&str; 4] = ["http", "http2", "graphql", "grpc"];

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HarSummary {
    pub file: String,
    pub entries: u64,
    pub protocols: Vec<String>,
}

pub struct HarWriter {
    path: PathBuf,
    w: BufWriter<File>,
    entries: u64,
}

fn io(path: &Path, e: std::io::Error) -> QueryError {
    QueryError::Io(format!("cannot write {}: {e}", path.display()))
}

impl HarWriter {
    pub fn create(path: &Path) -> Result<Self, QueryError> {
        let f = File::create(path).map_err(|e| io(path, e))?;
        let mut w = BufWriter::new(f);
        let head = json!({"version": "1.2", "creator": {"name": "wiretrail", "version": env!("CARGO_PKG_VERSION")}});
        let head = head.to_string();
        // `{"log":{…creator…,"entries":[` — the entries follow one by one.
        write!(w, "{{\"log\":{},\"entries\":[", &head[..head.len() - 1])
            .map_err(|e| io(path, e))?;
        Ok(HarWriter {
            path: path.to_path_buf(),
            w,
            entries: 0,
        })
    }

    /// Adds the entry if it is an HTTP exchange (others are skipped).
    pub fn add(&mut self, e: &Value) -> Result<(), QueryError> {
        let Some(h) = har_entry(e) else {
            return Ok(());
        };
        if self.entries > 0 {
            self.w.write_all(b",\n").map_err(|x| io(&self.path, x))?;
        } else {
            self.w.write_all(b"\n").map_err(|x| io(&self.path, x))?;
        }
        serde_json::to_writer(&mut self.w, &h)
            .map_err(|x| QueryError::Io(format!("cannot write {}: {x}", self.path.display())))?;
        self.entries += 1;
        Ok(())
    }

    pub fn finish(mut self) -> Result<HarSummary, QueryError> {
        self.w
            .write_all(b"\n]}}\n")
            .map_err(|x| io(&self.path, x))?;
        self.w.flush().map_err(|x| io(&self.path, x))?;
        Ok(HarSummary {
            file: super::HAR_FILE.into(),
            entries: self.entries,
            protocols: HAR_PROTOCOLS.iter().map(|p| p.to_string()).collect(),
        })
    }
}

/// Entries of a HAR file (for `snapshot verify`).
pub fn count_entries(path: &Path) -> Result<u64, String> {
    let text = std::fs::read(path).map_err(|e| format!("cannot read: {e}"))?;
    let v: Value = serde_json::from_slice(&text).map_err(|e| format!("not JSON: {e}"))?;
    v["log"]["entries"]
        .as_array()
        .map(|a| a.len() as u64)
        .ok_or_else(|| "no log.entries array".to_string())
}

fn header<'a>(hs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    hs.iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn name_values(hs: &[(String, String)]) -> Vec<Value> {
    hs.iter()
        .map(|(n, v)| json!({"name": n, "value": v}))
        .collect()
}

/// The body as HAR text: UTF-8 as is, anything else base64 (`encoding` says which).
pub(crate) fn body_bytes(b: &Value) -> Option<Vec<u8>> {
    let data = b["data"].as_str()?;
    match b["encoding"].as_str() {
        Some("base64") => base64::engine::general_purpose::STANDARD.decode(data).ok(),
        _ => Some(data.as_bytes().to_vec()),
    }
}

fn query_string(path: &str) -> Vec<Value> {
    let Some((_, q)) = path.split_once('?') else {
        return Vec::new();
    };
    let q = q.split('#').next().unwrap_or("");
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (n, v) = p.split_once('=').unwrap_or((p, ""));
            json!({"name": n, "value": v})
        })
        .collect()
}

fn request_cookies(hs: &[(String, String)]) -> Vec<Value> {
    hs.iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("cookie"))
        .flat_map(|(_, v)| v.split(';'))
        .filter_map(|c| {
            let (n, v) = c.trim().split_once('=')?;
            Some(json!({"name": n, "value": v}))
        })
        .collect()
}

fn response_cookies(hs: &[(String, String)]) -> Vec<Value> {
    hs.iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("set-cookie"))
        .filter_map(|(_, v)| {
            let first = v.split(';').next()?;
            let (n, val) = first.trim().split_once('=')?;
            Some(json!({"name": n, "value": val}))
        })
        .collect()
}

fn host_port(ip: &str, port: u64) -> String {
    if ip.contains(':') {
        format!("[{ip}]:{port}")
    } else {
        format!("{ip}:{port}")
    }
}

fn http_version(e: &Value, detail: &str) -> String {
    if let Some(v) = e[detail]["version"].as_str() {
        return v.to_string();
    }
    match e["protocol"].as_str() {
        Some("http") => "HTTP/1.1".into(),
        _ => "HTTP/2".into(),
    }
}

/// One HAR entry, or `None` for entries that are not HTTP requests.
fn har_entry(e: &Value) -> Option<Value> {
    let protocol = e["protocol"].as_str()?;
    if !HAR_PROTOCOLS.contains(&protocol) {
        return None;
    }
    let method = e["method"].as_str()?;
    let path = e["path"].as_str().unwrap_or("/");
    let req_h = headers(&e["request_headers"]);
    let resp_h = headers(&e["response_headers"]);
    let tls = !e["request"]["tls"].is_null();
    let scheme = header(&req_h, ":scheme").unwrap_or(if tls { "https" } else { "http" });
    let dst_ip = e["dst"]["ip"].as_str().unwrap_or_default();
    let dst_port = e["dst"]["port"].as_u64().unwrap_or_default();
    let authority = header(&req_h, ":authority")
        .or_else(|| header(&req_h, "host"))
        .map(str::to_string)
        .unwrap_or_else(|| host_port(dst_ip, dst_port));
    let url = if path.starts_with('/') {
        format!("{scheme}://{authority}{path}")
    } else if path.contains("://") {
        path.to_string()
    } else {
        format!("{scheme}://{authority}/{path}")
    };
    let version = http_version(e, "request");
    let req_body = &e["request_body"];
    let mut request = json!({
        "method": method,
        "url": url,
        "httpVersion": version,
        "cookies": request_cookies(&req_h),
        "headers": name_values(&req_h),
        "queryString": query_string(path),
        "headersSize": -1,
        "bodySize": req_body["size"].as_u64().map_or(-1, |s| s as i64),
    });
    if let Some(text) = req_body["data"].as_str() {
        let mut post = json!({
            "mimeType": header(&req_h, "content-type").unwrap_or(""),
            "text": text,
        });
        if req_body["encoding"] == "base64" {
            post["_encoding"] = json!("base64");
        }
        if req_body["truncated"] == true {
            post["comment"] = json!("body cut at the capture's body cap");
        }
        request["postData"] = post;
    }
    let elapsed_ms = e["elapsed_us"].as_i64().map(|us| us as f64 / 1000.0);
    let response = match e["status"].as_i64() {
        Some(status) if !e["response"].is_null() || !resp_h.is_empty() => {
            let body = &e["response_body"];
            let mut content = json!({
                "size": body["size"].as_u64().unwrap_or(0),
                "mimeType": header(&resp_h, "content-type").unwrap_or(""),
            });
            if let Some(text) = body["data"].as_str() {
                content["text"] = json!(text);
                if body["encoding"] == "base64" {
                    content["encoding"] = json!("base64");
                }
                if body["truncated"] == true {
                    content["comment"] = json!("body cut at the capture's body cap");
                }
            }
            json!({
                "status": status,
                "statusText": e["status_text"].as_str().unwrap_or(""),
                "httpVersion": http_version(e, "response"),
                "cookies": response_cookies(&resp_h),
                "headers": name_values(&resp_h),
                "content": content,
                "redirectURL": header(&resp_h, "location").unwrap_or(""),
                "headersSize": -1,
                "bodySize": body["size"].as_u64().map_or(-1, |s| s as i64),
            })
        }
        _ => json!({
            "status": 0,
            "statusText": "",
            "httpVersion": "",
            "cookies": [],
            "headers": [],
            "content": {"size": 0, "mimeType": ""},
            "redirectURL": "",
            "headersSize": -1,
            "bodySize": -1,
            "comment": "no response was captured",
        }),
    };
    let wait = elapsed_ms.unwrap_or(0.0);
    let src_ip = e["src"]["ip"].as_str().unwrap_or_default();
    let src_port = e["src"]["port"].as_u64().unwrap_or_default();
    Some(json!({
        "startedDateTime": e["ts"],
        "time": wait,
        "request": request,
        "response": response,
        "cache": {},
        "timings": {"send": 0, "wait": wait, "receive": 0},
        "serverIPAddress": dst_ip,
        "connection": format!("{}-{}", host_port(src_ip, src_port), host_port(dst_ip, dst_port)),
        "_id": e["id"],
        "_protocol": protocol,
        "_node": e["node"],
        "_src": e["src"],
        "_dst": e["dst"],
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_url_query_cookies_and_no_response() {
        let e = json!({
            "id": "X", "ts": "2026-11-25T03:12:44.270010Z", "protocol": "http",
            "method": "GET", "path": "/a/b?x=1&y=", "status": null, "elapsed_us": null,
            "request_headers": [{"name": "Host", "value": "api:8080"}, {"name": "Cookie", "value": "s=1; t=2"}],
            "response_headers": null, "request_body": null, "response_body": null,
            "request": {"version": "HTTP/1.1"}, "response": null,
            "src": {"ip": "10.0.0.1", "port": 40000}, "dst": {"ip": "10.0.0.2", "port": 8080},
        });
        let h = har_entry(&e).unwrap();
        assert_eq!(h["request"]["url"], "http://api:8080/a/b?x=1&y=");
        assert_eq!(
            h["request"]["queryString"][1],
            json!({"name": "y", "value": ""})
        );
        assert_eq!(
            h["request"]["cookies"][1],
            json!({"name": "t", "value": "2"})
        );
        assert_eq!(h["response"]["status"], 0);
        assert_eq!(h["time"], 0.0);
        assert!(har_entry(&json!({"protocol": "dns", "method": "A"})).is_none());
    }
}
