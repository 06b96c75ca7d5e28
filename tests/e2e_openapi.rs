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
