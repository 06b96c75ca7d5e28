//! The OpenAPI document describes what the server answers: schemathesis (PyPI) generates
//! requests from it — valid and invalid parameters and bodies — against a server holding real
//! entries, and no request may get a 5xx or an answer that contradicts the documented schema.

mod common;

use std::process::Command;

use common::*;

/// The `st` command pip installed next to this python3.
fn schemathesis_cli() -> Option<std::path::PathBuf> {
    python_module("schemathesis", "schemathesis")?;
    let out = Command::new("python3")
        .args([
            "-c",
            "import sysconfig; print(sysconfig.get_path('scripts'))",
        ])
        .output()
        .ok()?;
    let st = std::path::Path::new(String::from_utf8_lossy(&out.stdout).trim()).join("st");
    if st.exists() {
        Some(st)
    } else {
        eprintln!(
            "SKIP: schemathesis is installed but {} is missing",
            st.display()
        );
        None
    }
}

#[test]
fn schemathesis_finds_no_server_errors() {
    if !corpus_available() {
        return;
    }
    let Some(st) = schemathesis_cli() else { return };
    let dir = temp_dir("openapi");
    let server = Server::start(&dir.join("data"));
    import(&[
        "--server",
        &server.flight,
        pcap("http1_keepalive.pcap").to_str().unwrap(),
        pcap("dns_udp.pcap").to_str().unwrap(),
    ]);
    let (status, doc) = server.get("/api/v1/openapi.json");
    assert_eq!(status, 200);
    assert!(
        doc["paths"]["/api/v1/servicemap"]["get"].is_object(),
        "{doc}"
    );

    let out = Command::new(st)
        .args([
            "run",
            &format!("{}/api/v1/openapi.json", server.http),
            "--checks",
            "not_a_server_error,response_schema_conformance",
            "--max-examples",
            "40",
            "--request-timeout",
            "30",
            "--generation-deterministic",
            // The WebSocket endpoints answer a plain GET with 400 (no upgrade), as documented.
            "--exclude-path-regex",
            "/(stream|servicemap/live)$",
        ])
        .env("NO_COLOR", "1")
        // It keeps a cache in the working directory: not in the repo.
        .current_dir(&dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!(
        "{}",
        stdout
            .lines()
            .rev()
            .take(15)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        out.status.success(),
        "schemathesis found problems:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(server.get("/healthz").0, 200);
}

/// The dashboard is served at `/` from the assets built into the binary: `index.html` with
/// `no-cache` and an ETag (304 when it matches), hashed assets cached for a year and gzipped
/// for clients that accept it, client-side routes answered with the page, an unknown API path
/// a JSON 404 (never the page).
#[test]
fn dashboard_is_served_with_caching_headers() {
    let dir = temp_dir("ui-serve");
    let server = Server::start(&dir.join("data"));
    let client = reqwest::blocking::Client::builder()
        .no_gzip()
        .build()
        .unwrap();
    let get = |path: &str, headers: &[(&str, &str)]| {
        let mut r = client.get(format!("{}{path}", server.http));
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        r.send().unwrap()
    };
    let index = get("/", &[]);
    assert_eq!(index.status(), 200);
    let h = index.headers().clone();
    assert_eq!(h["cache-control"], "no-cache");
    assert!(h["content-type"].to_str().unwrap().starts_with("text/html"));
    let etag = h["etag"].to_str().unwrap().to_string();
    let page = index.text().unwrap();
    assert!(page.contains("<div id=\"app\""), "{page}");
    assert_eq!(get("/", &[("if-none-match", &etag)]).status(), 304);
    // Client-side routes are the same page.
    for route in ["/traffic", "/map", "/sql", "/snapshots"] {
        let r = get(route, &[]);
        assert_eq!(r.status(), 200, "{route}");
        assert_eq!(r.headers()["etag"].to_str().unwrap(), etag, "{route}");
    }
    // Every asset the page names is served, cached for a year, gzipped on request.
    let assets: Vec<&str> = page
        .split(['"', '\''])
        .filter(|s| s.starts_with("/assets/"))
        .collect();
    assert!(!assets.is_empty(), "the page names its assets: {page}");
    for a in assets {
        let r = get(a, &[("accept-encoding", "gzip")]);
        assert_eq!(r.status(), 200, "{a}");
        assert_eq!(
            r.headers()["cache-control"],
            "public, max-age=31536000, immutable",
            "{a}"
        );
        if a.ends_with(".js") {
            assert_eq!(r.headers()["content-encoding"], "gzip", "{a}");
            assert!(r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/javascript"));
        }
    }
    assert_eq!(get("/assets/no-such-file.js", &[]).status(), 404);
    let r = get("/api/v1/no-such-route", &[]);
    assert_eq!(r.status(), 404);
    let v: serde_json::Value = r.json().unwrap();
    assert!(v["error"]["message"].as_str().unwrap().contains("no route"));
    // The API still answers beside it.
    assert_eq!(get("/healthz", &[]).text().unwrap(), "ok");
}
