//! Redaction end to end on a real capture: `cluster_mix.pcap` carries `Authorization`
//! headers (Bearer JWTs, Basic, Token; the corpus has no cookies) on 566 HTTP/1 requests by
//! tshark's count. Imported with `--redact`, no stored entry (headers, bodies, detail) holds
//! any of those credentials, every one keeps its scheme, and the redaction counts of the
//! import summary equal tshark's count. Imported without it, the credentials are there (so
//! the check above can fail).

mod common;

use std::collections::BTreeSet;

use common::*;
use serde_json::Value;

/// Every stored entry in full (`GET /api/v1/entries/{id}`), as JSON.
fn stored_entries(server: &Server) -> Vec<Value> {
    server
        .all("", None, None)
        .iter()
        .map(|e| {
            let (status, full) =
                server.get(&format!("/api/v1/entries/{}", e["id"].as_str().unwrap()));
            assert_eq!(status, 200, "{e}");
            full
        })
        .collect()
}

fn authorization(e: &Value) -> Option<String> {
    e["request_headers"].as_array()?.iter().find_map(|h| {
        h["name"]
            .as_str()?
            .eq_ignore_ascii_case("authorization")
            .then(|| h["value"].as_str().unwrap_or_default().to_string())
    })
}

#[test]
fn secrets_are_gone_from_stored_entries_and_counted() {
    if !corpus_available() {
        return;
    }
    let truth: Vec<HttpReq> = http_truth("cluster_mix")
        .into_iter()
        .filter(|r| !r.authorization.is_empty())
        .collect();
    assert_eq!(truth.len(), 566, "corpus changed?");
    // The credential of each header (what follows the scheme), and the schemes seen.
    let secrets: BTreeSet<String> = truth
        .iter()
        .map(|r| {
            r.authorization
                .split_once(' ')
                .map_or(r.authorization.clone(), |(_, c)| c.to_string())
        })
        .collect();
    let mut schemes: Vec<String> = truth
        .iter()
        .map(|r| r.authorization.split(' ').next().unwrap().to_string())
        .collect();
    schemes.sort();
    assert!(secrets.len() > 10 && secrets.iter().all(|s| s.len() >= 8));

    let capture = pcap("cluster_mix.pcap");
    let capture = capture.to_str().unwrap();

    // With --redact.
    let data = temp_dir("redact-on");
    let summary = import(&["--data", data.to_str().unwrap(), "--redact", capture]);
    let r = &summary["redactions"];
    assert_eq!(r["authorization"], truth.len() as u64, "{summary}");
    assert_eq!(r["cookie"], 0);
    let server = Server::start(&data);
    let entries = stored_entries(&server);
    assert_eq!(entries.len() as u64, summary["entries"].as_u64().unwrap());
    let mut got_schemes = Vec::new();
    for e in &entries {
        let text = e.to_string();
        for s in &secrets {
            assert!(
                !text.contains(s.as_str()),
                "credential {s} stored in {text}"
            );
        }
        if let Some(a) = authorization(e) {
            let (scheme, rest) = a.split_once(' ').expect("scheme kept");
            assert_eq!(rest, "[REDACTED]");
            got_schemes.push(scheme.to_string());
        }
    }
    got_schemes.sort();
    assert_eq!(got_schemes, schemes);
    drop(server);

    // Without it, the same import stores the credentials.
    let plain = temp_dir("redact-off");
    let summary = import(&["--data", plain.to_str().unwrap(), capture]);
    assert_eq!(summary["redactions"]["authorization"], 0);
    let server = Server::start(&plain);
    let stored: BTreeSet<String> = stored_entries(&server)
        .iter()
        .filter_map(authorization)
        .map(|a| a.split_once(' ').map_or(a.clone(), |(_, c)| c.to_string()))
        .collect();
    assert_eq!(stored, secrets);
    let _ = std::fs::remove_dir_all(&data);
    let _ = std::fs::remove_dir_all(&plain);
}

#[test]
fn bad_redaction_rules_are_refused() {
    let capture = pcap("http1_keepalive.pcap");
    let data = temp_dir("redact-bad");
    for args in [
        vec!["--redact", "--redact-regex", "(unclosed"],
        vec!["--redact-json-key", "password"],
    ] {
        let out = std::process::Command::new(BIN)
            .arg("import")
            .args(["--data", data.to_str().unwrap()])
            .args(&args)
            .arg(&capture)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("redact"), "{args:?}: {err}");
    }
    let _ = std::fs::remove_dir_all(&data);
}
