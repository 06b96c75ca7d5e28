//! Service map, node focus and boundaries over REST on the mini cluster capture. Expected
//! figures come from the corpus's own service-map truth (client-side records joined with the
//! identities, `truth/cluster_mix.servicemap.json`) and from a straightforward SQL computation
//! over the same window (`POST /api/v1/sql`), grouped and ranked by this test.

mod common;

use std::collections::BTreeMap;

use common::*;
use serde_json::{json, Value};

/// `(source, target, protocol)` → edge.
type Edges = BTreeMap<(String, String, String), Value>;

fn edges(map: &Value) -> Edges {
    map["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let k = |f: &str| e[f].as_str().unwrap().to_string();
            ((k("source"), k("target"), k("protocol")), e.clone())
        })
        .collect()
}

fn map(server: &Server, query: &[(&str, &str)]) -> Value {
    get_ok(server, "/api/v1/servicemap", query)
}

/// GET `path` with `query`; asserts a 2xx and returns the JSON.
fn get_ok(server: &Server, path: &str, query: &[(&str, &str)]) -> Value {
    let r = reqwest::blocking::Client::new()
        .get(format!("{}{path}", server.http))
        .query(query)
        .send()
        .unwrap();
    let status = r.status();
    let v: Value = r.json().unwrap();
    assert!(status.is_success(), "{query:?}: {status} {v}");
    v
}

pub fn sql(server: &Server, body: Value) -> (u16, Value) {
    let r = reqwest::blocking::Client::new()
        .post(format!("{}/api/v1/sql", server.http))
        .json(&body)
        .send()
        .unwrap();
    (r.status().as_u16(), r.json().unwrap_or(Value::Null))
}

/// Errors as the map counts them (HTTP 5xx; DNS, Kafka, Redis: non-zero status).
fn truth_errors(e: &Value) -> u64 {
    if e["protocol"] == "http" {
        e["status"]
            .as_object()
            .unwrap()
            .iter()
            .filter(|(s, _)| s.parse::<u16>().is_ok_and(|s| s >= 500))
            .map(|(_, n)| n.as_u64().unwrap())
            .sum()
    } else {
        e["error_count"].as_u64().unwrap()
    }
}

/// The truth's names → ours (`node/node-a` is how it names a kubelet at pod level).
fn our_name(truth: &str) -> String {
    match truth.strip_prefix("node/") {
        Some(n) => format!("kubelet@{n}"),
        None => truth.to_string(),
    }
}

/// HTTP and DNS edges (the protocols the truth records one row per exchange for) against ours;
/// `keep` selects truth edges and `count_of` picks the count (whole capture or one phase).
fn check_against_truth(
    ours: &Edges,
    truth: &[Value],
    keep: impl Fn(&Value) -> bool,
    count_of: impl Fn(&Value) -> (u64, Option<u64>),
    what: &str,
) -> usize {
    let mut checked = 0;
    for t in truth.iter().filter(|t| keep(t)) {
        let p = t["protocol"].as_str().unwrap();
        if p != "http" && p != "dns" {
            continue;
        }
        let (count, errors) = count_of(t);
        if count == 0 {
            continue;
        }
        let key = (
            our_name(t["src"].as_str().unwrap()),
            our_name(t["dst"].as_str().unwrap()),
            p.to_string(),
        );
        let e = ours
            .get(&key)
            .unwrap_or_else(|| panic!("{what}: edge {key:?} missing; ours: {:?}", ours.keys()));
        assert_eq!(e["count"].as_u64(), Some(count), "{what}: {key:?}");
        if let Some(errors) = errors {
            assert_eq!(
                e["errors"].as_u64(),
                Some(errors),
                "{what}: errors of {key:?}"
            );
        }
        checked += 1;
    }
    checked
}

/// Nearest-rank quantile of sorted values (what the map's sketch approximates within 1 %).
fn nearest_rank(sorted: &[i64], q: f64) -> i64 {
    let rank = ((q * sorted.len() as f64).ceil() as usize).max(1);
    sorted[rank - 1]
}

/// The same map computed by SQL: one row per (src, dst, protocol) at workload level, named by
/// this test (`ns/workload`, else pod, else the address name; `@node` without a namespace).
const SQL_MAP: &str = r#"
SELECT protocol,
       src_namespace, coalesce(nullif(src_workload, ''), nullif(src_pod, ''), src_name) AS src, src_node,
       dst_namespace, coalesce(nullif(dst_workload, ''), nullif(dst_pod, ''), dst_name) AS dst, dst_node,
       count(*) AS n,
       sum(CASE WHEN status IS NULL THEN 0
                WHEN protocol IN ('http', 'http2', 'graphql') AND status >= 500 THEN 1
                WHEN protocol IN ('http', 'http2', 'graphql') THEN 0
                WHEN protocol = 'amqp' AND status >= 300 THEN 1
                WHEN protocol = 'amqp' THEN 0
                WHEN status <> 0 THEN 1 ELSE 0 END) AS errors,
       sum(request_size + response_size) AS bytes,
       array_agg(elapsed_us) FILTER (WHERE elapsed_us IS NOT NULL) AS lat
FROM entries
GROUP BY 1, 2, 3, 4, 5, 6, 7
"#;

fn sql_name(ns: &Value, name: &Value, node: &Value) -> String {
    let (ns, name, node) = (
        ns.as_str().unwrap_or(""),
        name.as_str().unwrap_or(""),
        node.as_str().unwrap_or(""),
    );
    if !ns.is_empty() {
        format!("{ns}/{name}")
    } else if !node.is_empty() {
        format!("{name}@{node}")
    } else {
        name.to_string()
    }
}

/// Count, errors, bytes and latencies of one edge, summed over SQL rows.
type Folded = (u64, u64, u64, Vec<i64>);

fn check_against_sql(server: &Server, ours: &Edges, window: (&str, &str)) {
    let (status, v) = sql(
        server,
        json!({"sql": SQL_MAP, "from": window.0, "to": window.1}),
    );
    assert_eq!(status, 200, "{v}");
    // SQL groups by node too (two replicas on two nodes): fold rows that name the same edge.
    let mut folded: BTreeMap<(String, String, String), Folded> = BTreeMap::new();
    for r in v["rows"].as_array().unwrap() {
        let key = (
            sql_name(&r["src_namespace"], &r["src"], &r["src_node"]),
            sql_name(&r["dst_namespace"], &r["dst"], &r["dst_node"]),
            r["protocol"].as_str().unwrap().to_string(),
        );
        let f = folded.entry(key).or_default();
        f.0 += r["n"].as_u64().unwrap();
        f.1 += r["errors"].as_u64().unwrap();
        f.2 += r["bytes"].as_u64().unwrap();
        if let Some(a) = r["lat"].as_array() {
            f.3.extend(a.iter().filter_map(Value::as_i64));
        }
    }
    assert_eq!(folded.len(), ours.len(), "one SQL group per map edge");
    for (key, (n, errors, bytes, mut lat)) in folded {
        let e = ours
            .get(&key)
            .unwrap_or_else(|| panic!("{key:?} not on the map"));
        assert_eq!(e["count"].as_u64(), Some(n), "{key:?}");
        assert_eq!(e["errors"].as_u64(), Some(errors), "{key:?}");
        assert_eq!(e["bytes"].as_u64(), Some(bytes), "{key:?}");
        lat.sort_unstable();
        for (q, field) in [(0.5, "p50_us"), (0.99, "p99_us")] {
            if lat.is_empty() {
                assert!(e[field].is_null(), "{key:?} {field}");
                continue;
            }
            let exact = nearest_rank(&lat, q) as f64;
            let got = e[field].as_f64().unwrap();
            assert!(
                (got - exact).abs() <= exact * 0.011 + 1.0,
                "{key:?} {field}: map {got}, SQL {exact}"
            );
        }
    }
}

#[test]
fn service_map_matches_truth_sql_windows_and_node_focus() {
    if !corpus_available() {
        return;
    }
    let dir = temp_dir("smap");
    let data = dir.join("data");
    let (hp, fp) = (free_port(), free_port());
    let server = Server::start_on(&data, hp, fp, &[]);
    import_cluster_mix(&server.flight, &[]);
    import(&[
        "--server",
        &server.flight,
        "--node",
        "lab",
        pcap("http1_keepalive.pcap").to_str().unwrap(),
    ]);
    let truth: Value = serde_json::from_str(
        &std::fs::read_to_string(corpus().join("truth/cluster_mix.servicemap.json")).unwrap(),
    )
    .unwrap();
    let phase = |p: &str, k: &str| truth["phases"][p][k].as_str().unwrap().to_string();
    // The whole capture with a minute of margin (client clocks vs capture), epoch ms: both
    // ends cut a minute, so the map comes from rollups inside and rows at the ends.
    let start = format!("{}", parse_rfc3339_ms(&phase("A", "start")) - 60_000);
    let end_incl = format!("{}", parse_rfc3339_ms(&phase("C", "end")) + 60_000);
    let wl = truth["edges"].as_array().unwrap();
    let pods = truth["pod_edges"].as_array().unwrap();
    let whole = |t: &Value| (t["count"].as_u64().unwrap(), Some(truth_errors(t)));

    // 1. Rows in the ingest buffer, then (after a restart that flushes) the catalog's rollups:
    //    the same map both times, equal to the truth and to SQL.
    let mut before: Option<Edges> = None;
    let mut server = server;
    for round in ["buffer", "rollups"] {
        let m = map(
            &server,
            &[
                ("group_by", "workload"),
                ("from", &start),
                ("to", &end_incl),
            ],
        );
        assert_eq!(m["source"], "rollups");
        let e = edges(&m);
        let n = check_against_truth(&e, wl, |_| true, whole, round);
        assert_eq!(n, 8, "every HTTP and DNS edge of the truth");
        check_against_sql(&server, &e, (&start, &end_incl));
        if let Some(b) = &before {
            assert_eq!(b, &e, "the map from rollups equals the map from rows");
        }
        before = Some(e);
        if round == "buffer" {
            assert!(server.terminate().success());
            server = Server::start_on(&data, hp, fp, &[]);
        }
    }
    let reference = before.unwrap();

    // 2. A KFL that matches everything takes the scan path and gives the very same map.
    let m = map(
        &server,
        &[
            ("group_by", "workload"),
            ("from", &start),
            ("to", &end_incl),
            ("kfl", r#"protocol != "no-such-protocol""#),
        ],
    );
    assert_eq!(m["source"], "scan");
    assert_eq!(edges(&m), reference);

    // 3. Each phase: windows that cut minutes (rollups inside, rows at both ends).
    for p in ["A", "B", "C"] {
        let m = map(
            &server,
            &[
                ("group_by", "workload"),
                ("from", &phase(p, "start")),
                ("to", &phase(p, "end")),
            ],
        );
        let by_phase = |t: &Value| {
            let n = t["by_phase"][p].as_u64().unwrap_or(0);
            (n, None)
        };
        let n = check_against_truth(&edges(&m), wl, |_| true, by_phase, p);
        assert!(n >= 6, "phase {p}: {n} edges checked");
    }

    // 4. The mission's case: ingress of two pods (api, auth) and egress of a third (frontend
    //    replica 1), scoped by KFL, at pod level.
    let api = "api-6f7b9c4d8-9tq7m";
    let auth = "auth-58c6f9d7b-kw4rz";
    let fe1 = "frontend-7c9d5b8f6-2xkqp";
    let kfl = format!(r#"dst.pod == "{api}" or dst.pod == "{auth}" or src.pod == "{fe1}""#);
    let m = map(&server, &[("group_by", "pod"), ("kfl", &kfl)]);
    let e = edges(&m);
    let pod_of = |s: &str| s.rsplit('/').next().unwrap().to_string();
    let wanted = |t: &Value| {
        let (s, d) = (t["src"].as_str().unwrap(), t["dst"].as_str().unwrap());
        pod_of(d) == api || pod_of(d) == auth || pod_of(s) == fe1
    };
    let pod_truth = |t: &Value| {
        let st = json!({"protocol": t["protocol"], "status": t["status"], "error_count": t["error_count"]});
        (t["count"].as_u64().unwrap(), Some(truth_errors(&st)))
    };
    let n = check_against_truth(&e, pods, wanted, pod_truth, "pods");
    assert_eq!(
        n, 7,
        "HTTP/DNS pod edges: 4 into api, 2 into auth, frontend-1 → DNS"
    );
    for (s, d, _) in e.keys() {
        assert!(
            pod_of(d) == api || pod_of(d) == auth || pod_of(s) == fe1,
            "edge {s} → {d} is outside the scope"
        );
    }
    assert!(
        e.keys().any(|(s, d, p)| s.ends_with(fe1)
            && d == "infra/kube-dns-5d8f7c6b9-tz4qn"
            && p == "dns"),
        "frontend-1's egress to DNS is on the map"
    );

    // 5. Node focus: ?nodes=lab holds only the lab capture, node-a only the cluster.
    let lab = map(&server, &[("nodes", "lab")]);
    let lab_total: u64 = lab["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["count"].as_u64().unwrap())
        .sum();
    let lab_entries = reqwest::blocking::get(format!(
        "{}/api/v1/entries?nodes=lab&limit=10000",
        server.http
    ))
    .unwrap()
    .json::<Value>()
    .unwrap()["entries"]
        .as_array()
        .unwrap()
        .len() as u64;
    assert!(lab_total > 0);
    assert_eq!(lab_total, lab_entries);
    let a = map(&server, &[("group_by", "workload"), ("nodes", "node-a")]);
    assert_eq!(
        edges(&a),
        reference,
        "node-a holds exactly the cluster capture"
    );

    // 6. Boundaries: overall and per node equal min/max over SQL.
    let (_, b) = server.get("/api/v1/boundaries");
    let (status, v) = sql(
        &server,
        json!({"sql": "SELECT node, CAST(min(ts) AS BIGINT) AS lo, CAST(max(ts) AS BIGINT) AS hi FROM entries GROUP BY node ORDER BY node"}),
    );
    assert_eq!(status, 200, "{v}");
    let rows = v["rows"].as_array().unwrap();
    let nodes = b["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), rows.len(), "{b}");
    for (n, r) in nodes.iter().zip(rows) {
        assert_eq!(n["node"], r["node"]);
        assert_eq!(n["oldest_us"], r["lo"], "{n}");
        assert_eq!(n["newest_us"], r["hi"], "{n}");
    }
    let lo = rows.iter().map(|r| r["lo"].as_i64().unwrap()).min();
    assert_eq!(b["overall"]["oldest_us"].as_i64(), lo);

    // 7. Bad input is a 400 with a message.
    for q in [
        "group_by=planet",
        "kfl=response.status%20%3D%3D",
        "from=yesterday",
        "kfl=limit(3)",
    ] {
        let (status, v) = server.get(&format!("/api/v1/servicemap?{q}"));
        assert_eq!(status, 400, "{q}: {v}");
        assert!(v["error"]["message"].is_string(), "{q}: {v}");
    }
}

fn parse_rfc3339_ms(s: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(s)
        .unwrap()
        .timestamp_millis()
}

/// Status classes as the histogram defines them (`schema::status_class`), in SQL.
const SQL_CLASS: &str = "CASE WHEN status IS NULL THEN 'other' \
    WHEN protocol IN ('http', 'http2', 'graphql') THEN CASE \
      WHEN status >= 200 AND status < 300 THEN '2xx' WHEN status >= 300 AND status < 400 THEN '3xx' \
      WHEN status >= 400 AND status < 500 THEN '4xx' WHEN status >= 500 AND status < 600 THEN '5xx' \
      ELSE 'other' END \
    WHEN protocol = 'amqp' THEN CASE WHEN status >= 300 THEN 'error' ELSE 'ok' END \
    WHEN status <> 0 THEN 'error' ELSE 'ok' END";

/// `(bucket start µs, series)` → count, from a histogram answer.
fn histogram_cells(h: &Value) -> BTreeMap<(i64, String), u64> {
    let series: Vec<String> = h["series"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect();
    let mut out = BTreeMap::new();
    for b in h["buckets"].as_array().unwrap() {
        let counts = b["counts"].as_array().unwrap();
        let total: u64 = counts.iter().map(|c| c.as_u64().unwrap()).sum();
        assert_eq!(b["total"].as_u64(), Some(total), "total = sum of the stack");
        for (s, c) in series.iter().zip(counts) {
            if c.as_u64().unwrap() > 0 {
                out.insert(
                    (b["start_us"].as_i64().unwrap(), s.clone()),
                    c.as_u64().unwrap(),
                );
            }
        }
    }
    out
}

/// The same cells from `SELECT <bucket start>, <series>, count(*) … GROUP BY 1, 2` (µs since
/// the epoch rounded down to the width: the histogram's buckets start at multiples of it).
fn sql_cells(
    server: &Server,
    width_us: i64,
    series: &str,
    filter: &str,
    window: (&str, &str),
) -> BTreeMap<(i64, String), u64> {
    let q = format!(
        "SELECT CAST(ts AS BIGINT) - CAST(ts AS BIGINT) % {width_us} AS b, \
         CAST({series} AS VARCHAR) AS s, count(*) AS n FROM entries WHERE {filter} GROUP BY 1, 2"
    );
    let (status, v) = sql(server, json!({"sql": q, "from": window.0, "to": window.1}));
    assert_eq!(status, 200, "{v}");
    v["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                (
                    r["b"].as_i64().unwrap(),
                    r["s"].as_str().unwrap().to_string(),
                ),
                r["n"].as_u64().unwrap(),
            )
        })
        .collect()
}

fn histogram(server: &Server, query: &[(&str, &str)]) -> Value {
    get_ok(server, "/api/v1/histogram", query)
}

/// The volume histogram equals a SQL GROUP BY over the same window: from the buffer, from the
/// catalog's rollups after a flush (minute buckets, partial minutes at both ends from rows),
/// stacked by status class and by protocol, KFL-filtered (scan) and node-focused; and it
/// agrees with `/api/v1/count`.
#[test]
fn histogram_equals_sql_group_by() {
    if !corpus_available() {
        return;
    }
    let dir = temp_dir("histogram");
    let data = dir.join("data");
    let (hp, fp) = (free_port(), free_port());
    let mut server = Server::start_on(&data, hp, fp, &[]);
    import_cluster_mix(&server.flight, &[]);
    let phases: Value = serde_json::from_str(
        &std::fs::read_to_string(corpus().join("truth/cluster_mix.servicemap.json")).unwrap(),
    )
    .unwrap();
    let phase_ms = |p: &str, k: &str| parse_rfc3339_ms(phases["phases"][p][k].as_str().unwrap());
    // Not minute-aligned on purpose: whole minutes inside, partial ones at both ends.
    let from = (phase_ms("A", "start") - 61_500).to_string();
    let to = (phase_ms("C", "end") + 60_700).to_string();
    let window = (from.as_str(), to.as_str());
    let all = "true";
    for round in ["buffer", "rollups"] {
        for (stack, series) in [("status", SQL_CLASS), ("protocol", "protocol")] {
            let h = histogram(
                &server,
                &[
                    ("from", &from),
                    ("to", &to),
                    ("buckets", "5"),
                    ("stack", stack),
                ],
            );
            let w = h["bucket_us"].as_i64().unwrap();
            assert_eq!(w, 60_000_000, "{round} {stack}: minute buckets");
            assert_eq!(h["source"], "rollups", "{round} {stack}");
            let cells = histogram_cells(&h);
            assert!(cells.len() >= 3, "{round} {stack}: {cells:?}");
            assert_eq!(
                cells,
                sql_cells(&server, w, series, all, window),
                "{round} {stack}"
            );
        }
        if round == "buffer" {
            assert!(server.terminate().success());
            server = Server::start_on(&data, hp, fp, &[]);
        }
    }
    // Status classes from rollups show the 4xx/5xx of phase B.
    let h = histogram(&server, &[("from", &from), ("to", &to), ("buckets", "5")]);
    let cells = histogram_cells(&h);
    let sum = |class: &str| -> u64 {
        cells
            .iter()
            .filter(|((_, s), _)| s == class)
            .map(|(_, n)| n)
            .sum()
    };
    assert!(
        sum("5xx") > 0 && sum("4xx") > 0 && sum("2xx") > sum("4xx"),
        "{cells:?}"
    );

    // KFL-scoped: the scan path, equal to SQL with the same filter, total = /count.
    for (kfl, filter) in [
        (r#"protocol == "dns""#, "protocol = 'dns'"),
        (
            r#"http and response.status >= 400"#,
            "protocol = 'http' AND status >= 400",
        ),
    ] {
        let h = histogram(
            &server,
            &[
                ("from", &from),
                ("to", &to),
                ("buckets", "20"),
                ("kfl", kfl),
            ],
        );
        assert_eq!(h["source"], "scan");
        let w = h["bucket_us"].as_i64().unwrap();
        assert_eq!(w, 10_000_000, "20 buckets over 197 s: 10 s");
        let cells = histogram_cells(&h);
        assert_eq!(
            cells,
            sql_cells(&server, w, SQL_CLASS, filter, window),
            "{kfl}"
        );
        let total: u64 = cells.values().sum();
        let (_, c) = server.get(&format!(
            "/api/v1/count?from={from}&to={to}&kfl={}",
            kfl.replace(' ', "%20")
                .replace('"', "%22")
                .replace('=', "%3D")
                .replace('>', "%3E")
        ));
        assert_eq!(
            c["count"].as_u64(),
            Some(total),
            "{kfl}: histogram total = count"
        );
    }
    // Node focus: only that node's entries (all of cluster_mix is on its capture nodes).
    let (_, nodes) = server.get("/api/v1/values/node");
    let node = nodes["values"][0].as_str().unwrap().to_string();
    let h = histogram(&server, &[("from", &from), ("to", &to), ("nodes", &node)]);
    assert_eq!(h["source"], "scan");
    let w = h["bucket_us"].as_i64().unwrap();
    assert_eq!(
        histogram_cells(&h),
        sql_cells(&server, w, SQL_CLASS, &format!("node = '{node}'"), window)
    );
    // The default window is where the data is; bad input is a 400 with a message.
    let h = histogram(&server, &[]);
    let total: u64 = histogram_cells(&h).values().sum();
    assert_eq!(total as usize, server.count(""));
    for q in [
        "stack=colour",
        "buckets=0",
        "buckets=x",
        "kfl=limit(3)",
        "from=2&to=1",
        "kfl=status%20==",
    ] {
        let (status, v) = server.get(&format!("/api/v1/histogram?{q}"));
        assert_eq!(status, 400, "{q}: {v}");
        assert!(v["error"]["message"].is_string(), "{q}: {v}");
    }
}
