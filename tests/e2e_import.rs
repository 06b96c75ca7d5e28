//! Import the HTTP/1 and DNS captures through `wiretrail up` and compare what the REST API
//! returns with tshark's ground truth, capture by capture.

mod common;

use std::collections::BTreeMap;

use base64::Engine;
use common::*;
use sha2::Digest;

const HTTP_CAPTURES: [&str; 6] = [
    "http1_keepalive",
    "http1_chunked",
    "http1_gzip",
    "http1_large_bodies",
    "http1_pipelining",
    "graphql_http",
];

fn body_bytes(v: &serde_json::Value) -> Option<Vec<u8>> {
    let data = v["data"].as_str()?;
    Some(match v["encoding"].as_str()? {
        "base64" => base64::engine::general_purpose::STANDARD
            .decode(data)
            .unwrap(),
        _ => data.as_bytes().to_vec(),
    })
}

#[test]
fn http_and_dns_entries_match_tshark() {
    if !corpus_available() {
        return;
    }
    let dir = temp_dir("import");
    let server = Server::start(&dir.join("data"));
    for name in HTTP_CAPTURES.iter().chain(&["dns_udp"]) {
        let pcap = pcap(&format!("{name}.pcap"));
        let s = import(&[
            "--server",
            &server.flight,
            "--node",
            name,
            "--body-cap",
            "16777216",
            pcap.to_str().unwrap(),
        ]);
        assert_eq!(
            s["acked_entries"], s["entries"],
            "{name}: everything read was acknowledged"
        );
    }
    eprintln!(
        "{:<22} {:>6} {:>6} {:>9}",
        "capture", "truth", "got", "statuses"
    );
    for name in HTTP_CAPTURES {
        let truth = http_truth(name);
        let got = server.all(
            &format!("(http or gql) and node.name == \"{name}\""),
            None,
            None,
        );
        let answered = got.iter().filter(|e| !e["status"].is_null()).count();
        eprintln!(
            "{:<22} {:>6} {:>6} {:>9}",
            name,
            truth.len(),
            got.len(),
            answered
        );
        assert_eq!(
            got.len(),
            truth.len(),
            "{name}: one entry per request tshark saw"
        );
        // Per TCP connection and in order: the same method, target and status.
        let mut ours: BTreeMap<u64, Vec<(String, String, Option<i64>)>> = BTreeMap::new();
        let mut sorted = got.clone();
        sorted.sort_by_key(|e| (e["ts_us"].as_i64(), e["id"].as_str().map(str::to_string)));
        for e in &sorted {
            ours.entry(e["src"]["port"].as_u64().unwrap())
                .or_default()
                .push((
                    e["method"].as_str().unwrap().to_string(),
                    e["path"].as_str().unwrap().to_string(),
                    e["status"].as_i64(),
                ));
        }
        let mut theirs: BTreeMap<String, Vec<(String, String, Option<i64>)>> = BTreeMap::new();
        for r in &truth {
            theirs.entry(r.stream.clone()).or_default().push((
                r.method.clone(),
                r.uri.clone(),
                r.status,
            ));
        }
        let mut a: Vec<_> = ours.into_values().collect();
        let mut b: Vec<_> = theirs.into_values().collect();
        a.sort();
        b.sort();
        assert_eq!(
            a, b,
            "{name}: per-connection sequences of (method, path, status)"
        );
    }
    // DNS: one entry per query, names, types and rcodes as tshark decoded them.
    let truth = dns_truth("dns_udp");
    let got = server.all("dns and node.name == \"dns_udp\"", None, None);
    assert_eq!(got.len(), truth.len());
    let mut a: Vec<(String, i64)> = got
        .iter()
        .map(|e| {
            (
                e["path"].as_str().unwrap().to_string(),
                e["status"].as_i64().unwrap(),
            )
        })
        .collect();
    let mut b: Vec<(String, i64)> = truth
        .iter()
        .map(|q| (q.name.clone(), q.rcode.unwrap()))
        .collect();
    a.sort();
    b.sort();
    assert_eq!(a, b, "dns_udp: query names and rcodes");
    // Bodies: de-chunked and gunzipped bodies hash to what tshark exported.
    for name in ["http1_gzip", "http1_chunked"] {
        let mut hashes = Vec::new();
        for e in server.all(&format!("node.name == \"{name}\""), None, None) {
            let (status, full) =
                server.get(&format!("/api/v1/entries/{}", e["id"].as_str().unwrap()));
            assert_eq!(status, 200);
            for side in ["request_body", "response_body"] {
                if let Some(b) = body_bytes(&full[side]) {
                    assert_eq!(full[side]["truncated"], false);
                    hashes.push(format!("{:x}", sha2::Sha256::digest(&b)));
                }
            }
        }
        let objects = std::fs::read_to_string(
            corpus()
                .join("truth")
                .join(format!("{name}.http_objects.tsv")),
        )
        .unwrap();
        for line in objects.lines().skip(1) {
            let c: Vec<&str> = line.split('\t').collect();
            assert!(
                hashes.iter().any(|h| h == c[2]),
                "{name}: body of {} ({} bytes) matches tshark's export",
                c[0],
                c[1]
            );
        }
    }
    let (status, _) = server.get("/api/v1/entries/not-an-id");
    assert_eq!(status, 400);
    let (status, _) = server.get("/api/v1/entries/00000000000000000000000000");
    assert_eq!(status, 404);
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn pipelined_requests_pair_in_order() {
    if !corpus_available() {
        return;
    }
    let dir = temp_dir("pipeline");
    let server = Server::start(&dir.join("data"));
    import(&[
        "--server",
        &server.flight,
        pcap("http1_pipelining.pcap").to_str().unwrap(),
    ]);
    let truth = http_truth("http1_pipelining");
    let mut got = server.all("http", None, None);
    got.sort_by_key(|e| {
        (
            e["src"]["port"].as_u64(),
            e["ts_us"].as_i64(),
            e["id"].as_str().map(str::to_string),
        )
    });
    let mut by_stream: BTreeMap<String, Vec<(String, Option<i64>)>> = BTreeMap::new();
    for r in &truth {
        by_stream
            .entry(r.stream.clone())
            .or_default()
            .push((r.uri.clone(), r.status));
    }
    let mut ours: BTreeMap<u64, Vec<(String, Option<i64>)>> = BTreeMap::new();
    for e in &got {
        ours.entry(e["src"]["port"].as_u64().unwrap())
            .or_default()
            .push((e["path"].as_str().unwrap().into(), e["status"].as_i64()));
    }
    let mut a: Vec<_> = ours.into_values().collect();
    let mut b: Vec<_> = by_stream.into_values().collect();
    a.sort();
    b.sort();
    assert_eq!(a, b);
    assert!(
        a.iter().any(|s| s.len() == 5),
        "the five requests written in one segment are paired in order"
    );
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `wiretrail query --data` with a relative data dir reads the Parquet files (DataFusion's
/// local store needs absolute paths; the table makes them so).
#[test]
fn query_reads_a_relative_data_dir() {
    if !corpus_available() {
        return;
    }
    let dir = temp_dir("reldata");
    import(&[
        "--data",
        dir.join("data").to_str().unwrap(),
        pcap("http1_keepalive.pcap").to_str().unwrap(),
    ]);
    let out = std::process::Command::new(BIN)
        .current_dir(&dir)
        .args([
            "query", "--data", "data", "--format", "json", "--limit", "10000", "http",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        rows["entries"].as_array().unwrap().len(),
        http_truth("http1_keepalive").len(),
        "every HTTP request tshark sees"
    );
}
