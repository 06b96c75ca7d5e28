//! KFL over REST on the mini cluster capture: each query's count is computed independently
//! from tshark's per-frame truth and the identity map, then compared with the API.

mod common;

use std::collections::BTreeMap;

use common::*;
use serde_json::Value;

/// `.*/api/v[0-9]+/.*` written out, so the expected count does not reuse the regex engine.
fn regex_lite(uri: &str) -> bool {
    uri.match_indices("/api/v").any(|(i, m)| {
        let rest = &uri[i + m.len()..];
        let digits = rest.chars().take_while(char::is_ascii_digit).count();
        digits > 0 && rest[digits..].starts_with('/')
    })
}

struct Truth {
    http: Vec<HttpReq>,
    dns: Vec<DnsQuery>,
    ids: BTreeMap<String, Value>,
}

impl Truth {
    fn ns(&self, ip: &str) -> Option<&str> {
        self.ids.get(ip).and_then(|v| v["namespace"].as_str())
    }
    fn name(&self, ip: &str) -> String {
        let v = self.ids.get(ip);
        ["pod", "service", "workload"]
            .iter()
            .find_map(|k| v.and_then(|v| v[*k].as_str()))
            .unwrap_or(ip)
            .to_string()
    }
}

#[test]
fn kfl_queries_match_independent_counts() {
    if !corpus_available() {
        return;
    }
    let dir = temp_dir("kfl");
    // A user macro from the command line, next to the default `https`.
    let server = Server::start_on(
        &dir.join("data"),
        free_port(),
        free_port(),
        &["--kfl-macro", "slowhttp = http and elapsedTime >= 300"],
    );
    let ids_path = pcap("cluster_mix.identities.json");
    import_cluster_mix(&server.flight, &[]);
    import(&[
        "--server",
        &server.flight,
        "--node",
        "lab",
        pcap("http1_keepalive.pcap").to_str().unwrap(),
        pcap("dns_udp.pcap").to_str().unwrap(),
    ]);

    // HTTP inside TLS, decrypted with the key log: `tls`, `https` (the default user macro).
    import(&[
        "--server",
        &server.flight,
        "--node",
        "tls",
        "--keylog",
        pcap("http2_tls.keylog").to_str().unwrap(),
        pcap("http2_tls.pcap").to_str().unwrap(),
    ]);
    let tls_rows = truth_rows("http2_tls");
    let values = |col: &str| -> Vec<String> {
        tls_rows
            .iter()
            .flat_map(|r| split(r.get(col).map(String::as_str).unwrap_or("")))
            .collect()
    };
    let tls_http = values("http2.headers.method").len() + values("http.request.method").len();
    let client_hellos = values("tls.handshake.type")
        .iter()
        .filter(|t| *t == "1")
        .count();
    assert_eq!(tls_http, 13, "corpus README: 11 h2 + 2 HTTP/1.1 requests");

    let t = Truth {
        http: http_truth("cluster_mix"),
        dns: dns_truth("cluster_mix"),
        ids: serde_json::from_str(&std::fs::read_to_string(&ids_path).unwrap()).unwrap(),
    };
    let redis = redis_truth("cluster_mix", "6379");
    let kafka = kafka_requests("cluster_mix", "9092");
    let cmd = |c: &str| redis.iter().filter(|(x, _)| x == c).count();
    let lab_http = http_truth("http1_keepalive");
    let lab_dns = dns_truth("dns_udp");
    assert_eq!(
        (t.http.len(), t.dns.len()),
        (602, 111),
        "corpus README figures"
    );

    let h = |f: &dyn Fn(&HttpReq) -> bool| t.http.iter().filter(|r| f(r)).count();
    let d = |f: &dyn Fn(&DnsQuery) -> bool| t.dns.iter().filter(|q| f(q)).count();
    let status = |r: &HttpReq| r.status.unwrap_or(0);
    let ms = |r: &HttpReq| r.elapsed_s.unwrap_or(0.0) * 1000.0;
    let cases: Vec<(&str, usize)> = vec![
        ("node.name == \"node-a\" and http", t.http.len()),
        ("node.name == \"node-a\" and dns", t.dns.len()),
        ("node.name == \"lab\"", lab_http.len() + lab_dns.len()),
        ("node.name == \"node-a\" and (http or dns)", t.http.len() + t.dns.len()),
        ("node.name == \"node-a\" and !http", t.dns.len() + redis.len() + kafka),
        ("node.name == \"node-a\" and kafka", kafka),
        ("node.name == \"node-a\" and redis", redis.len()),
        ("redis and request.method == \"GET\"", cmd("GET")),
        ("redis and request.method in [\"SET\", \"INCR\"]", cmd("SET") + cmd("INCR")),
        ("redis and request.path.startsWith(\"cart:\")", redis.iter().filter(|(_, k)| k.starts_with("cart:")).count()),
        ("redis and response.status == 1", redis_errors("cluster_mix", "6379")),
        ("node.name == \"node-a\" and http and response.status >= 400", h(&|r| status(r) >= 400)),
        ("node.name == \"node-a\" && status_code == 401", h(&|r| status(r) == 401)),
        ("node.name == \"node-a\" and response.status == \"404\"", h(&|r| status(r) == 404)),
        ("node.name == \"node-a\" and http and response.status >= 500", h(&|r| status(r) >= 500)),
        ("node.name == \"node-a\" and http and !(response.status == 200)", h(&|r| status(r) != 200)),
        ("request.headers[\"Authorization\"] == r\"Token.*\"", h(&|r| r.authorization.starts_with("Token"))),
        ("request.headers[\"authorization\"] == r\"^Bearer \"", h(&|r| r.authorization.starts_with("Bearer "))),
        ("request.headers[\"AUTHORIZATION\"] == r\"^Basic \"", h(&|r| r.authorization.starts_with("Basic "))),
        ("node.name == \"node-a\" and http and request.headers[\"Authorization\"] == nil", h(&|r| r.authorization.is_empty())),
        ("request.headers[\"Authorization\"] == r\"tk_live_4f9a2c7e1b8d6035aa91c2e7f04b3d58\"", h(&|r| r.authorization.contains("tk_live_4f9a2c7e1b8d6035aa91c2e7f04b3d58"))),
        ("request.headers[\"Authorization\"] == r\"Token.*\" and dst.name == \"api-6f7b9c4d8-9tq7m\"", h(&|r| r.authorization.starts_with("Token") && r.dst == "127.0.10.2")),
        ("node.name != \"tls\" and request.headers[\"User-Agent\"] == r\"curl.*\"", h(&|r| r.user_agent.contains("curl")) + lab_http.iter().filter(|r| r.user_agent.contains("curl")).count()),
        ("request.headers[\"user-agent\"] == r\"kube-probe\"", h(&|r| r.user_agent.contains("kube-probe"))),
        ("node.name == \"node-a\" and request.path.startsWith(\"/api/v1/orders\")", h(&|r| r.uri.starts_with("/api/v1/orders"))),
        ("node.name == \"node-a\" and request.path.contains(\"export\")", h(&|r| r.uri.contains("export"))),
        ("node.name == \"node-a\" and request.path == r\"^/healthz$\"", h(&|r| r.uri == "/healthz")),
        ("node.name == \"node-a\" and request.method == \"POST\"", h(&|r| r.method == "POST")),
        ("node.name == \"node-a\" and http and request.method != \"GET\"", h(&|r| r.method != "GET")),
        ("node.name == \"node-a\" and http and elapsedTime >= 300", h(&|r| ms(r) >= 300.0)),
        ("node.name == \"node-a\" and slowhttp", h(&|r| ms(r) >= 300.0)),
        ("node.name == \"node-a\" and dns and request.path.endsWith(\".cluster.local\")", d(&|q| q.name.ends_with(".cluster.local"))),
        ("node.name == \"node-a\" and dns and response.status == 3", d(&|q| q.rcode == Some(3))),
        ("node.name == \"node-a\" and dns and response.statusText == \"REFUSED\"", d(&|q| q.rcode == Some(5))),
        ("node.name == \"node-a\" and dns and request.method == \"AAAA\"", d(&|q| q.qtype == "28")),
        ("dns and request.path == \"payments\"", d(&|q| q.name == "payments")),
        ("node.name == \"node-a\" and src.namespace == \"shop\" and http", h(&|r| t.ns(&r.src) == Some("shop"))),
        ("node.name == \"node-a\" and dst.namespace == \"infra\"", t.dns.len() + redis.len() + kafka),
        ("node.name == \"node-a\" and http and src.namespace == nil", h(&|r| t.ns(&r.src).is_none())),
        ("src.name == \"reports-29384710-5hxpz\" and http", h(&|r| r.src == "127.0.10.4")),
        ("src.pod.namespace == \"shop\" && dst.service.name == \"auth\"", h(&|r| t.ns(&r.src) == Some("shop") && r.dst == "127.0.10.3")),
        ("dst.service == \"api\" and (request.headers[\"Authorization\"] == r\"^Token\" or response.status == 401)", h(&|r| r.dst == "127.0.10.2" && (r.authorization.starts_with("Token") || status(r) == 401))),
        ("http and src.node == \"node-b\" and dst.node == \"node-a\"", h(&|r| t.ids.get(&r.src).and_then(|v| v["node"].as_str()) == Some("node-b") && t.ids.get(&r.dst).and_then(|v| v["node"].as_str()) == Some("node-a"))),
        ("src.ip == \"127.0.1.1\"", h(&|r| r.src == "127.0.1.1")),
        ("dst.port == 8080 and node.name == \"node-a\"", h(&|_| true)),
        ("node.name == \"node-a\" and (dns or response.status == 201) and !(src.name == \"frontend-7c9d5b8f6-m8v4d\")",
            d(&|q| t.name(&q.src) != "frontend-7c9d5b8f6-m8v4d") + h(&|r| status(r) == 201 && t.name(&r.src) != "frontend-7c9d5b8f6-m8v4d")),
        ("limit(7) and http", 7),
        // Reference §1.10 examples that our data answers (restricted to the cluster capture).
        ("node.name == \"node-a\" and http and response.status == r\"4.*\"", h(&|r| r.status.is_some_and(|s| s.to_string().contains('4')))),
        ("http and (response.status==500)", h(&|r| status(r) == 500) + lab_http.iter().filter(|r| r.status == Some(500)).count()),
        ("node.name == \"node-a\" and !dns and !tcp", t.http.len() + redis.len() + kafka),
        ("node.name == \"node-a\" and !dns and !tcp and !udp and !icmp", t.http.len() + redis.len() + kafka),
        ("node.name == \"node-a\" and http and !error", h(&|r| r.status.is_none_or(|s| s < 500))),
        ("node.name == \"node-a\" and http and (response.status > 400 or error or icmp or tcp)", h(&|r| status(r) > 400)),
        ("gql and (src.name == \"my-pod-name\" or dst.name == \"my-pod-name\")", 0),
        ("request.headers[\"Authorization\"] == r\"Token.*\" and src.ip != \"192.168.49.2\"", h(&|r| r.authorization.contains("Token"))),
        ("dns && \"payments\" in dns_questions", d(&|q| q.name == "payments")),
        ("node.name == \"node-a\" and dns && dns_response && status_code != 0", d(&|q| q.rcode.is_some_and(|c| c != 0))),
        ("node.name == \"node-a\" and http && url.matches(\".*/api/v[0-9]+/.*\")", h(&|r| regex_lite(&r.uri))),
        ("node.name == \"node-a\" and http && \"authorization\" in request.headers", h(&|r| !r.authorization.is_empty())),
        ("node.name == \"node-a\" and http && elapsed_time > 300000", h(&|r| ms(r) > 300.0)),
        ("node.name == \"node-a\" and tls and (http or http2)", 0),
        ("node.name == \"node-a\" and https", 0),
        ("node.name == \"tls\" and https", tls_http),
        ("node.name == \"tls\" and tls", tls_http + client_hellos),
        ("node.name == \"tls\" and tls and !https", client_hellos),
        ("node.name == \"tls\" and request.tls.decrypted == true", tls_http),
        ("node.name == \"tls\" and http2 and request.tls.sni.endsWith(\"corpus.test\")", values("http2.headers.method").len()),
        ("node.name == \"node-a\" && \"shop\" in namespaces && http", h(&|r| t.ns(&r.src) == Some("shop") || t.ns(&r.dst) == Some("shop"))),
        ("node.name == \"node-a\" and request.pathSegments[0] == \"api\"", h(&|r| r.uri.starts_with("/api/") || r.uri == "/api")),
    ];
    assert!(cases.len() >= 30);
    let mut failures = Vec::new();
    for (q, want) in &cases {
        let got = server.count(q);
        eprintln!("{got:>5} {want:>5}  {q}");
        if got != *want {
            failures.push(format!("{q}: got {got}, want {want}"));
        }
    }
    assert!(failures.is_empty(), "mismatches:\n{}", failures.join("\n"));

    // Bad queries: 400 with the position of the problem.
    for (q, pos) in [
        ("http and", 8),
        ("request.headers[\"x\"", 19),
        ("foo.bar == 1", 0),
        ("response.status == \"abc\"", 19),
    ] {
        let r = reqwest::blocking::Client::new()
            .get(format!("{}/api/v1/entries", server.http))
            .query(&[("kfl", q)])
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), 400, "{q}");
        let v: Value = r.json().unwrap();
        assert_eq!(v["error"]["position"], pos, "{q}: {v}");
        let r = reqwest::blocking::Client::new()
            .get(format!("{}/api/v1/kfl/validate", server.http))
            .query(&[("q", q)])
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), 400);
    }
    let (status, v) = server.get("/api/v1/kfl/validate?q=http");
    assert_eq!((status, v["ok"].as_bool()), (200, Some(true)));

    // Hostile or odd queries: a 400 with a position, or a 200; never a 5xx.
    let long_or = "dns or ".repeat(9_000) + "http";
    let deep = format!("{}http{}", "(".repeat(5_000), ")".repeat(5_000));
    for q in [
        "http and",
        "((((",
        "))))",
        "\"unterminated",
        "r\"(\"",
        "request.path.matches(\"[\")",
        "response.body.json()..x == 1",
        "request.headers[\"x\"].json().a == 1",
        "response.body.xml().a.b.* == \"x\"",
        "size(request.pathSegments) > 1",
        "kafka_api_key_name == \"x\"",
        "namespaces == \"shop\"",
        "map_get(request.headers, \"a\", \"b\") == \"b\"",
        "request.cookies[\"a\"] == request.queryString[\"b\"]",
        "timestamp > years(99999999999)",
        "timestamp > now() - duration(\"999999999999h\")",
        "response.status == 99999999999",
        "response.status > 1e400",
        "\u{0}",
        "http ? dns : redis",
        "!(!(!(http)))",
        "request.payload..name.contains(response.payload..name)",
        "response.body.json()[999999999999]",
        "response.body.json()[-1] == 1",
        "elapsed_time / 0",
        "request.path == request.method",
        "src.port == src.ip",
        "redact(\"..password\") and http",
        "limit(99999999999999) and http",
        "size(response.answers.*.data) >= 1",
        "\"x\" in request.args",
        "1 in [1, 2]",
        &long_or,
        &deep,
        "é",
        "http && ||",
        "response.status in []",
    ] {
        let r = reqwest::blocking::Client::new()
            .get(format!("{}/api/v1/entries", server.http))
            .query(&[("kfl", q), ("limit", "5")])
            .send()
            .unwrap();
        let code = r.status().as_u16();
        let v: Value = r.json().unwrap_or(Value::Null);
        assert!(matches!(code, 200 | 400 | 414), "{q:.80}: {code} {v}");
        if code == 400 {
            assert!(
                v["error"]["position"].is_u64() || v["error"]["message"].is_string(),
                "{q:.80}: {v}"
            );
        }
    }

    let (status, v) = server.get("/api/v1/kfl/validate?q=slowhttp%20and%20https");
    assert_eq!((status, v["ok"].as_bool()), (200, Some(true)), "{v}");
    // A macro that does not compile stops the server at start, naming the problem.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wiretrail"))
        .args(["up", "--no-capture", "--kfl-macro", "bad=http and and"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("macro bad"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // redact(): the filter is unchanged, the named fields are masked in what comes back.
    let (status, v) = server.get("/api/v1/entries?limit=5&kfl=redact(%22request.path%22%2C%20%22src.name%22)%20and%20http%20and%20node.name%20%3D%3D%20%22node-a%22");
    assert_eq!(status, 200, "{v}");
    let entries = v["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 5);
    for e in entries {
        assert_eq!(e["path"], "[REDACTED]", "{e}");
        assert_eq!(e["src"]["name"], "[REDACTED]", "{e}");
        assert_eq!(e["protocol"], "http");
        assert_ne!(e["dst"]["name"], "[REDACTED]");
    }
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}
