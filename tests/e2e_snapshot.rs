//! Snapshots for auditors, end to end with the real binary on real captures: pin a window
//! (locally and over REST), export a bundle, verify it, flip one byte and see verify name the
//! file, import into a fresh data dir and get the same rows back; the HAR follows HAR 1.2 and
//! the rebuilt PCAP shows tshark the captures' HTTP requests.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::*;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

fn wt(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().unwrap()
}

/// Runs a command that must succeed; returns its stdout.
fn ok(args: &[&str]) -> String {
    let out = wt(args);
    assert!(
        out.status.success(),
        "wiretrail {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn rel_files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = files_under(dir, |_| true)
        .iter()
        .map(|p| p.strip_prefix(dir).unwrap().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn copy_dir(from: &Path, to: &Path) {
    for rel in rel_files(from) {
        let dst = to.join(&rel);
        std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
        std::fs::copy(from.join(&rel), dst).unwrap();
    }
}

fn flip_byte(path: &Path) {
    let mut b = std::fs::read(path).unwrap();
    let i = b.len() / 2;
    b[i] ^= 0x01;
    std::fs::write(path, b).unwrap();
}

/// Entry ids of the Parquet parts of a bundle, read with the parquet crate.
fn bundle_ids(dir: &Path) -> Vec<String> {
    use arrow::array::AsArray;
    let mut ids = Vec::new();
    for f in parquet_files(&dir.join("entries")) {
        let r = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
            std::fs::File::open(f).unwrap(),
        )
        .unwrap()
        .build()
        .unwrap();
        for b in r {
            let b = b.unwrap();
            let col = b.column_by_name("id").unwrap().as_fixed_size_binary();
            for i in 0..b.num_rows() {
                let raw: [u8; 16] = col.value(i).try_into().unwrap();
                ids.push(wiretrail_proto::EntryId(raw).to_string());
            }
        }
    }
    ids.sort();
    ids
}

fn ids_of(entries: &[Value]) -> Vec<String> {
    let mut ids: Vec<String> = entries
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

fn post(url: &str, body: &Value) -> (u16, Value) {
    let r = reqwest::blocking::Client::new()
        .post(url)
        .json(body)
        .send()
        .unwrap();
    (r.status().as_u16(), r.json().unwrap_or(Value::Null))
}

/// Required members of HAR 1.2 (http://www.softwareishard.com/blog/har-12-spec/), checked
/// against the spec's tables, not against our writer.
fn check_har(har: &Value) -> usize {
    let log = &har["log"];
    assert_eq!(log["version"], "1.2");
    assert!(log["creator"]["name"].is_string() && log["creator"]["version"].is_string());
    let entries = log["entries"].as_array().expect("log.entries");
    let nv = |v: &Value, what: &str| {
        for x in v.as_array().unwrap_or_else(|| panic!("{what} is an array")) {
            assert!(
                x["name"].is_string() && x["value"].is_string(),
                "{what}: {x}"
            );
        }
    };
    for e in entries {
        let started = e["startedDateTime"].as_str().expect("startedDateTime");
        assert!(
            started.len() >= 20 && started.as_bytes()[10] == b'T' && started.ends_with('Z'),
            "ISO 8601: {started}"
        );
        let time = e["time"].as_f64().expect("time");
        let req = &e["request"];
        for k in ["method", "url", "httpVersion"] {
            assert!(req[k].is_string(), "request.{k}: {e}");
        }
        assert!(
            req["url"].as_str().unwrap().starts_with("http"),
            "absolute url"
        );
        nv(&req["cookies"], "request.cookies");
        nv(&req["headers"], "request.headers");
        nv(&req["queryString"], "request.queryString");
        assert!(req["headersSize"].is_i64() && req["bodySize"].is_i64());
        if !req["postData"].is_null() {
            assert!(req["postData"]["mimeType"].is_string());
            assert!(req["postData"]["text"].is_string() || req["postData"]["params"].is_array());
        }
        let resp = &e["response"];
        assert!(resp["status"].is_i64(), "response.status: {e}");
        for k in ["statusText", "httpVersion", "redirectURL"] {
            assert!(resp[k].is_string(), "response.{k}: {e}");
        }
        nv(&resp["cookies"], "response.cookies");
        nv(&resp["headers"], "response.headers");
        assert!(resp["content"]["size"].is_i64() && resp["content"]["mimeType"].is_string());
        assert!(resp["headersSize"].is_i64() && resp["bodySize"].is_i64());
        assert!(e["cache"].is_object());
        let t = &e["timings"];
        let mut sum = 0.0;
        for k in ["send", "wait", "receive"] {
            let v = t[k].as_f64().unwrap_or_else(|| panic!("timings.{k}: {e}"));
            assert!(v >= 0.0, "timings.{k} must not be negative");
            sum += v;
        }
        assert!((sum - time).abs() < 1e-6, "time is the sum of the timings");
    }
    entries.len()
}

/// (method, path) of each HTTP/1 request tshark sees in a pcap, decoding the given ports as
/// HTTP; `None` (with a printed reason) when tshark is missing.
fn tshark_requests(pcap: &Path, ports: &[u64]) -> Option<Vec<(String, String)>> {
    if Command::new("tshark").arg("--version").output().is_err() {
        eprintln!("SKIP: tshark is not installed (./dev.sh installs it); PCAP check skipped");
        return None;
    }
    let mut cmd = Command::new("tshark");
    cmd.arg("-r").arg(pcap);
    for p in ports {
        cmd.args(["-d", &format!("tcp.port=={p},http")]);
    }
    let out = cmd
        .args(["-Y", "http.request", "-T", "fields"])
        .args(["-e", "http.request.method", "-e", "http.request.uri"])
        .args(["-E", "occurrence=a", "-E", "aggregator=|"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "tshark failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut reqs = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let (m, u) = line.split_once('\t').unwrap_or((line, ""));
        for (m, u) in split(m).into_iter().zip(split(u)) {
            reqs.push((m, u));
        }
    }
    reqs.sort();
    Some(reqs)
}

/// Polls a metric until `done` accepts it (the maintenance loop runs every second here).
fn wait_for(server: &Server, name: &str, done: impl Fn(f64) -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    loop {
        let v = metric(server, name);
        if done(v) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{name} stayed at {v} for 90 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

#[test]
fn snapshot_export_verify_tamper_import() {
    if !corpus_available() {
        return;
    }
    let dir = temp_dir("snapshot");
    let data = dir.join("data");
    let ids = pcap("cluster_mix.identities.json");
    import(&[
        "--data",
        s(&data),
        "--identities",
        s(&ids),
        s(&pcap("cluster_mix.pcap")),
    ]);
    import(&[
        "--data",
        s(&data),
        "--node",
        "snap-node-b",
        s(&pcap("http1_keepalive.pcap")),
    ]);

    // Independent expectations from tshark's ground truth of the two captures.
    let mut truth_http: Vec<(String, String)> = http_truth("cluster_mix")
        .into_iter()
        .chain(http_truth("http1_keepalive"))
        .map(|r| (r.method, r.uri))
        .collect();
    truth_http.sort();
    let truth_dns = dns_truth("cluster_mix").len() as u64;

    // --- With --data: create, list, export (no server running).
    ok(&[
        "snapshot",
        "create",
        "--data",
        s(&data),
        "--kfl",
        "http or dns",
        "local-http-dns",
    ]);
    let listed: Value = serde_json::from_str(&ok(&[
        "snapshot",
        "list",
        "--data",
        s(&data),
        "--format",
        "json",
    ]))
    .unwrap();
    assert_eq!(listed["snapshots"][0]["name"], "local-http-dns");
    assert_eq!(listed["snapshots"][0]["kfl"], "http or dns");
    let local_out = dir.join("local-bundle");
    ok(&[
        "snapshot",
        "export",
        "--data",
        s(&data),
        "local-http-dns",
        s(&local_out),
    ]);
    let local_manifest: Value =
        serde_json::from_slice(&std::fs::read(local_out.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(local_manifest["counts"]["http"], truth_http.len() as u64);
    assert_eq!(local_manifest["counts"]["dns"], truth_dns);
    assert_eq!(
        local_manifest["counts"].as_object().unwrap().len(),
        2,
        "only http and dns: {}",
        local_manifest["counts"]
    );

    // --- Over REST.
    let server = Server::start(&data);
    let api = format!("{}/api/v1/snapshots", server.http);
    for (body, want) in [
        (json!({"name": "../x"}), 400),
        (json!({"name": "bad-kfl", "kfl": "response.status =="}), 400),
        (
            json!({"name": "empty", "from": "2026-11-25T04:00:00Z", "to": "2026-11-25T03:00:00Z"}),
            400,
        ),
        (json!({"name": "t", "from": true}), 400),
        (json!({"nme": "typo"}), 400),
        (json!({"name": "local-http-dns"}), 409),
    ] {
        let (status, v) = post(&api, &body);
        assert_eq!(status, want, "{body} → {v}");
        assert!(v["error"]["message"].is_string(), "{v}");
    }
    let (status, v) = post(
        &api,
        &json!({"name": "bad-kfl", "kfl": "response.status =="}),
    );
    assert_eq!(status, 400);
    assert!(
        v["error"]["position"].is_u64(),
        "KFL errors carry a position: {v}"
    );
    let (status, audit) = post(&api, &json!({"name": "audit"}));
    assert_eq!(status, 201, "{audit}");
    let (status, v) = server.get("/api/v1/snapshots");
    assert_eq!(status, 200);
    let names: Vec<&str> = v["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["audit", "local-http-dns"]);
    assert_eq!(server.get("/api/v1/snapshots/nope/export").0, 404);
    assert_eq!(
        server.get("/api/v1/snapshots/audit/export?format=zip").0,
        400
    );

    // The CLI over --server, with node focus: only what snap-node-b captured.
    ok(&[
        "snapshot",
        "create",
        "--server",
        &server.http,
        "--node",
        "snap-node-b",
        "node-b",
    ]);
    let listed: Value = serde_json::from_str(&ok(&[
        "snapshot",
        "list",
        "--server",
        &server.http,
        "--format",
        "json",
    ]))
    .unwrap();
    assert_eq!(listed["snapshots"].as_array().unwrap().len(), 3, "{listed}");
    let r = reqwest::blocking::get(format!("{api}/node-b/export?format=har")).unwrap();
    let node_har: Value = r.json().unwrap();
    assert_eq!(
        check_har(&node_har),
        http_truth("http1_keepalive").len(),
        "the node-b snapshot holds exactly http1_keepalive's requests"
    );
    assert!(node_har["log"]["entries"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["_node"] == "snap-node-b"));
    ok(&["snapshot", "delete", "--server", &server.http, "node-b"]);

    let out = dir.join("bundle");
    ok(&[
        "snapshot",
        "export",
        "--server",
        &server.http,
        "audit",
        s(&out),
    ]);
    // Both modes write the same layout.
    assert_eq!(rel_files(&out), rel_files(&local_out));
    assert_eq!(
        rel_files(&out),
        [
            "README.txt",
            "entries.har",
            "entries/part-00000.parquet",
            "manifest.json",
            "manifest.sha256",
            "traffic.pcap"
        ]
    );

    // The manifest: counts from the truth, hashes recomputed here.
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["name"], "audit");
    assert_eq!(manifest["counts"]["http"], truth_http.len() as u64);
    assert_eq!(manifest["counts"]["dns"], truth_dns);
    assert!(manifest["wiretrail_version"].is_string());
    assert!(manifest["window"]["from"].is_string() && manifest["window"]["to"].is_string());
    let counted: u64 = manifest["counts"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(manifest["entries"], counted);
    for f in manifest["files"].as_array().unwrap() {
        let bytes = std::fs::read(out.join(f["path"].as_str().unwrap())).unwrap();
        let sha: String = Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(f["sha256"], sha, "{}", f["path"]);
        assert_eq!(f["bytes"], bytes.len() as u64);
    }
    // The bundle holds exactly the rows the live store answers for the window.
    let all_live = server.all("", None, None);
    assert_eq!(bundle_ids(&out), ids_of(&all_live));
    assert_eq!(all_live.len() as u64, counted);

    // verify passes on both bundles.
    ok(&["snapshot", "verify", s(&out)]);
    ok(&["snapshot", "verify", s(&local_out)]);

    // One flipped byte in any file fails verify, naming that file.
    for victim in [
        "entries/part-00000.parquet",
        "traffic.pcap",
        "entries.har",
        "manifest.json",
    ] {
        let t = dir.join(format!("tampered-{}", victim.replace('/', "_")));
        copy_dir(&out, &t);
        flip_byte(&t.join(victim));
        let r = wt(&["snapshot", "verify", s(&t)]);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&r.stdout),
            String::from_utf8_lossy(&r.stderr)
        );
        assert!(!r.status.success(), "verify passed a changed {victim}");
        assert!(
            text.lines()
                .any(|l| l.contains("FAILED") && l.contains(victim)),
            "verify must name {victim}: {text}"
        );
        if victim.ends_with(".parquet") {
            // …and a bundle that fails verify is not imported.
            let r = wt(&[
                "snapshot",
                "import",
                "--data",
                s(&dir.join("refused")),
                s(&t),
            ]);
            assert!(!r.status.success(), "a tampered bundle was imported");
            assert!(String::from_utf8_lossy(&r.stderr).contains("verification"));
        }
    }

    // HAR 1.2: structure, and the HTTP/1 requests are the captures' requests.
    let har: Value =
        serde_json::from_slice(&std::fs::read(out.join("entries.har")).unwrap()).unwrap();
    assert_eq!(
        check_har(&har) as u64,
        manifest["har"]["entries"].as_u64().unwrap()
    );
    let mut har_http: Vec<(String, String)> = har["log"]["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| {
            e["request"]["httpVersion"]
                .as_str()
                .unwrap()
                .starts_with("HTTP/1")
        })
        .map(|e| {
            let url = e["request"]["url"].as_str().unwrap();
            let path_at = url.find("://").map(|i| i + 3).unwrap();
            let path = &url[path_at + url[path_at..].find('/').unwrap()..];
            (
                e["request"]["method"].as_str().unwrap().to_string(),
                path.to_string(),
            )
        })
        .collect();
    har_http.sort();
    assert_eq!(har_http, truth_http);

    // The REST export's other formats carry the same content.
    let r = reqwest::blocking::get(format!("{api}/audit/export?format=har")).unwrap();
    assert_eq!(r.status(), 200);
    let rest_har: Value = r.json().unwrap();
    assert_eq!(check_har(&rest_har), check_har(&har));
    let r = reqwest::blocking::get(format!("{api}/audit/export?format=pcap")).unwrap();
    assert_eq!(r.status(), 200);
    let pcap_bytes = r.bytes().unwrap();
    assert_eq!(
        pcap_bytes.as_ref(),
        std::fs::read(out.join("traffic.pcap")).unwrap()
    );

    // The PCAP opens in tshark and shows the captures' HTTP requests.
    let mut ports: Vec<u64> = all_live
        .iter()
        .filter(|e| e["protocol"] == "http")
        .map(|e| e["dst"]["port"].as_u64().unwrap())
        .collect();
    ports.sort();
    ports.dedup();
    if let Some(seen) = tshark_requests(&out.join("traffic.pcap"), &ports) {
        assert_eq!(
            seen.len(),
            truth_http.len(),
            "HTTP requests tshark sees in the PCAP"
        );
        assert_eq!(seen, truth_http);
        assert_eq!(manifest["pcap"]["entries"], truth_http.len() as u64);
    }
    assert_eq!(manifest["pcap"]["left_out"]["dns"], truth_dns);

    // Import into a fresh data dir: the same queries give the same rows.
    let data2 = dir.join("data2");
    let first: Value = serde_json::from_str(&ok(&[
        "snapshot",
        "import",
        "--data",
        s(&data2),
        "--format",
        "json",
        s(&out),
    ]))
    .unwrap();
    assert_eq!(first["entries"], counted);
    assert_eq!(first["pinned"], true);
    let again: Value = serde_json::from_str(&ok(&[
        "snapshot",
        "import",
        "--data",
        s(&data2),
        "--format",
        "json",
        s(&out),
    ]))
    .unwrap();
    assert_eq!(
        again["entries"], 0,
        "a second import stores nothing twice: {again}"
    );
    // The imported window is pinned in its new home: with a 1 h retention (all of it is days
    // old) a maintenance pass keeps every row while the pin exists and drops them once it is
    // deleted.
    let server2 = Server::start_on(
        &data2,
        free_port(),
        free_port(),
        &["--retention", "1h", "--maintenance-interval", "1"],
    );
    wait_for(&server2, "wiretrail_compactions_total", |v| v > 0.0);
    assert_eq!(
        metric(&server2, "wiretrail_retention_dropped_rows_total"),
        0.0
    );
    for kfl in [
        "",
        "http",
        "dns and response.status == 3",
        r#"http and request.headers["Authorization"] == r"Token.*""#,
        "src.namespace == \"shop\" and http and response.status >= 400",
    ] {
        let a = ids_of(&server.all(kfl, None, None));
        let b = ids_of(&server2.all(kfl, None, None));
        assert!(
            !a.is_empty() || kfl.contains("namespace"),
            "{kfl:?} matches something"
        );
        assert_eq!(a, b, "{kfl:?}: same rows after import");
    }
    let (_, v) = server2.get("/api/v1/snapshots");
    assert_eq!(v["snapshots"][0]["name"], "audit");
    assert!(v["snapshots"][0]["imported"].is_object(), "{v}");
    let r = reqwest::blocking::Client::new()
        .delete(format!("{}/api/v1/snapshots/audit", server2.http))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    wait_for(&server2, "wiretrail_retention_dropped_rows_total", |v| {
        v == counted as f64
    });
    assert_eq!(
        server2.count(""),
        0,
        "unpinned, retention dropped the import"
    );

    // Delete unpins.
    let r = reqwest::blocking::Client::new()
        .delete(format!("{api}/audit"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(server.get("/api/v1/snapshots/audit").0, 404);
    let r = reqwest::blocking::Client::new()
        .delete(format!("{api}/audit"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 404);
    drop(server);
    drop(server2);
    let _ = std::fs::remove_dir_all(&dir);
}
