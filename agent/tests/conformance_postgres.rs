//! PostgreSQL against tshark's ground truth (`truth/pgsql_*.json`, one message per object, so
//! multi-message frames keep their structure). Per connection, in order:
//! - every request tshark decodes (a Simple query, or an Execute whose query text tshark's
//!   own Parse/Bind fields lead to) is one of our entries with the same query text, command
//!   tags, error (code, severity, message), notices, column names and DataRow count;
//! - the startup message and authentication request match our `startup` entry (user,
//!   database, application_name, auth type, SASL mechanism).
//!
//! tshark's JSON shortens strings over 512 characters to `<96 chars>…[truncated: len=N
//! sha256=H]`; our text is shortened the same way before comparing.

mod support;

use std::collections::{BTreeMap, HashMap, VecDeque};

use serde_json::Value;
use sha2::{Digest, Sha256};
use support::{corpus, detail, run, skip, strings, Conformance};
use wiretrail_proto::Entry;

/// The same shortening as `helpers/truth.py`'s `shrink`.
fn shrink(s: &str) -> String {
    let n = s.chars().count();
    if n <= 512 {
        return s.to_string();
    }
    let h = Sha256::digest(s.as_bytes());
    let hex: String = h.iter().take(8).map(|b| format!("{b:02x}")).collect();
    let head: String = s.chars().take(96).collect();
    format!("{head}…[truncated: len={n} sha256={hex}]")
}

/// What one request looks like in the comparison.
#[derive(Debug, Default, Clone, PartialEq)]
struct Req {
    query: String,
    tags: Vec<String>,
    /// (code, severity, message)
    error: Option<(String, String, String)>,
    notices: Vec<String>,
    columns: Vec<String>,
    rows: u64,
}

#[derive(Debug, Default, Clone, PartialEq)]
struct Startup {
    user: String,
    database: String,
    application_name: String,
    auth: String,
    sasl_mechanism: String,
}

#[derive(Debug, Default)]
struct Conn {
    startup: Option<Startup>,
    reqs: Vec<Req>,
}

/// Every value of `key` anywhere inside `v`, in document order.
fn find(v: &Value, key: &str, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                if k == key {
                    match x {
                        Value::Array(a) => {
                            out.extend(a.iter().filter_map(|s| s.as_str().map(String::from)))
                        }
                        Value::String(s) => out.push(s.clone()),
                        _ => {}
                    }
                } else {
                    find(x, key, out);
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| find(x, key, out)),
        _ => {}
    }
}

fn one(v: &Value, key: &str) -> String {
    let mut out = Vec::new();
    find(v, key, &mut out);
    out.into_iter().next().unwrap_or_default()
}

/// tshark's view, keyed by the client port.
fn truth(name: &str) -> BTreeMap<u16, Conn> {
    let text = std::fs::read_to_string(corpus().join(format!("truth/{name}.json"))).unwrap();
    #[derive(Default)]
    struct State {
        conn: Conn,
        statements: HashMap<String, String>,
        portals: HashMap<String, String>,
        /// Index of the request the next response belongs to.
        cur: usize,
        /// What each ReadyForQuery answers: `Some(i)` a simple query, `None` a Sync.
        ready: VecDeque<Option<usize>>,
        simple: Vec<bool>,
    }
    let mut conns: BTreeMap<u16, State> = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim().trim_end_matches(',');
        if line.is_empty() || line == "[" || line == "]" {
            continue;
        }
        let pkt: Value = serde_json::from_str(line).unwrap();
        let Some(pg) = pkt.get("pgsql") else { continue };
        let port = |k: &str| -> u16 { pkt["tcp"][k].as_str().unwrap().parse().unwrap() };
        let msgs: Vec<&Value> = match pg {
            Value::Array(a) => a.iter().collect(),
            m => vec![m],
        };
        for m in msgs {
            let frontend = m["pgsql.frontend"] == "1";
            let client = if frontend {
                port("tcp.srcport")
            } else {
                port("tcp.dstport")
            };
            let st = conns.entry(client).or_default();
            let typ = m["pgsql.type"].as_str().unwrap_or_default();
            let push = |st: &mut State, query: String, simple: bool| {
                st.conn.reqs.push(Req {
                    query,
                    ..Default::default()
                });
                st.simple.push(simple);
                if simple {
                    st.ready.push_back(Some(st.conn.reqs.len() - 1));
                }
            };
            match (frontend, typ) {
                (true, "Startup message") => {
                    let (mut names, mut values) = (Vec::new(), Vec::new());
                    find(m, "pgsql.parameter_name", &mut names);
                    find(m, "pgsql.parameter_value", &mut values);
                    let p: HashMap<_, _> = names.into_iter().zip(values).collect();
                    let get = |k: &str| p.get(k).cloned().unwrap_or_default();
                    st.conn.startup = Some(Startup {
                        user: get("user"),
                        database: get("database"),
                        application_name: get("application_name"),
                        ..Default::default()
                    });
                }
                (true, "SASLInitialResponse message") => {
                    if let Some(s) = st.conn.startup.as_mut() {
                        s.sasl_mechanism = one(m, "pgsql.auth.sasl.mech");
                    }
                }
                (true, "Simple query") => push(st, one(m, "pgsql.query"), true),
                (true, "Parse") => {
                    st.statements
                        .insert(one(m, "pgsql.statement"), one(m, "pgsql.query"));
                }
                (true, "Bind") => {
                    st.portals
                        .insert(one(m, "pgsql.portal"), one(m, "pgsql.statement"));
                }
                (true, "Execute") => {
                    let stmt = st
                        .portals
                        .get(&one(m, "pgsql.portal"))
                        .cloned()
                        .unwrap_or_default();
                    let q = st.statements.get(&stmt).cloned().unwrap_or_default();
                    push(st, q, false);
                }
                (true, "Sync") => st.ready.push_back(None),
                (false, "Authentication request") => {
                    let t = one(m, "pgsql.authtype");
                    if let Some(s) = st.conn.startup.as_mut() {
                        if s.auth.is_empty() && !["0", "8", "11", "12"].contains(&t.as_str()) {
                            s.auth = match t.as_str() {
                                "3" => "CleartextPassword",
                                "5" => "MD5Password",
                                "7" => "GSS",
                                "10" => "SASL",
                                _ => "other",
                            }
                            .into();
                        }
                    }
                }
                (false, "Ready for query") => {
                    if let Some(Some(i)) = st.ready.pop_front() {
                        st.cur = st.cur.max(i + 1);
                    }
                }
                (false, t) => {
                    let cur = st.cur;
                    let simple = st.simple.get(cur).copied().unwrap_or(true);
                    let Some(r) = st.conn.reqs.get_mut(cur) else {
                        continue;
                    };
                    match t {
                        "Command completion" => {
                            r.tags.push(one(m, "pgsql.tag"));
                            st.cur += usize::from(!simple);
                        }
                        "Error" => {
                            r.error = Some((
                                one(m, "pgsql.code"),
                                one(m, "pgsql.severity"),
                                one(m, "pgsql.message"),
                            ));
                            st.cur += usize::from(!simple);
                        }
                        "Empty query" | "Portal suspended" => st.cur += usize::from(!simple),
                        "Notice" => r.notices.push(one(m, "pgsql.message")),
                        "Row description" => {
                            r.columns.clear();
                            find(m, "pgsql.col.name", &mut r.columns);
                        }
                        "Data row" => r.rows += 1,
                        _ => {}
                    }
                }
                _ => {}
            }
        }
    }
    conns.into_iter().map(|(k, s)| (k, s.conn)).collect()
}

/// Our entries, keyed the same way.
fn ours(entries: &[Entry]) -> BTreeMap<u16, Conn> {
    let mut out: BTreeMap<u16, Conn> = BTreeMap::new();
    for e in entries.iter().filter(|e| e.protocol == "postgres") {
        let (req, resp) = (detail(&e.request), detail(&e.response));
        let c = out.entry(e.src.port).or_default();
        if e.method.as_deref() == Some("startup") {
            let s = |v: &Value, k: &str| v[k].as_str().unwrap_or_default().to_string();
            c.startup = Some(Startup {
                user: s(&req, "user"),
                database: s(&req, "database"),
                application_name: s(&req, "application_name"),
                auth: s(&resp, "auth"),
                sasl_mechanism: s(&resp, "sasl_mechanism"),
            });
            continue;
        }
        if !matches!(req["protocol"].as_str(), Some("simple" | "extended")) {
            continue;
        }
        let full = e
            .request_body
            .as_deref()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .unwrap_or_default();
        let err = &resp["error"];
        c.reqs.push(Req {
            query: shrink(&full),
            tags: strings(&resp["command_tags"]),
            error: err.is_object().then(|| {
                let f = |k: &str| err[k].as_str().unwrap_or_default().to_string();
                (f("code"), f("severity"), f("message"))
            }),
            notices: resp["notices"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|n| n["message"].as_str().unwrap_or_default().to_string())
                        .collect()
                })
                .unwrap_or_default(),
            columns: strings(&resp["columns"]),
            rows: resp["rows"].as_u64().unwrap_or(0),
        });
    }
    out
}

#[test]
fn postgres_matches_tshark() {
    if skip() {
        return;
    }
    for name in ["pgsql_psql", "pgsql_psycopg2", "pgsql_psycopg3"] {
        let (entries, stats) = run(name, 64 * 1024);
        let want = truth(name);
        let got = ours(&entries);
        let mut c = Conformance::new("postgres", name);
        for (port, conn) in &want {
            let mine = got.get(port);
            if let Some(s) = &conn.startup {
                c.check(
                    &format!("{port} startup"),
                    s,
                    mine.and_then(|m| m.startup.as_ref()),
                );
            }
            for (i, r) in conn.reqs.iter().enumerate() {
                c.check(&format!("{port} #{i}"), r, mine.and_then(|m| m.reqs.get(i)));
            }
            let extra = mine.map_or(0, |m| m.reqs.len().saturating_sub(conn.reqs.len()));
            assert_eq!(extra, 0, "{name} {port}: entries tshark does not list");
        }
        assert_eq!(
            got.len(),
            want.len(),
            "{name}: connections (tshark {:?}, ours {:?})",
            want.keys().collect::<Vec<_>>(),
            got.keys().collect::<Vec<_>>()
        );
        c.print_and_assert();
        assert_eq!(stats.dissect_errors, 0, "{name}: dissect errors");
        // Every query was answered; the startups succeeded. (A NOTIFY is one-way.)
        for e in entries
            .iter()
            .filter(|e| e.protocol == "postgres" && e.method.as_deref() != Some("NOTIFICATION"))
        {
            assert!(
                e.elapsed_us.is_some() && e.status.is_some(),
                "{name}: unanswered {:?} {:?}",
                e.method,
                e.path
            );
        }
    }
}

/// Details tshark does not line up per request: COPY byte counts, bind parameters, the
/// statement/portal names, failed-query methods, LISTEN/NOTIFY.
#[test]
fn postgres_extended_details() {
    if skip() {
        return;
    }
    let (entries, _) = run("pgsql_psycopg3", 64 * 1024);
    let find = |q: &str| {
        entries
            .iter()
            .filter(|e| e.path.as_deref().is_some_and(|p| p.starts_with(q)))
            .collect::<Vec<_>>()
    };
    let ins = find("INSERT INTO items (name, price, tags, meta)");
    assert_eq!(ins.len(), 5);
    let req = detail(&ins[0].request);
    assert_eq!(req["protocol"], "extended");
    assert_eq!(req["statement"], "");
    assert_eq!(req["portal"], "");
    // item-0 as text, 9.99 as a binary float8 (hex), the array and jsonb as text.
    assert_eq!(
        req["parameters"],
        serde_json::json!(["item-0", "4023fae147ae147b", "{a,t0}", "{\"i\": 0}"])
    );
    assert_eq!(ins[0].method.as_deref(), Some("INSERT"));
    let prepared = find("SELECT id, name, price FROM items WHERE id = $1");
    assert_eq!(prepared.len(), 3);
    assert_eq!(detail(&prepared[2].request)["statement"], "_pg3_0");
    assert_eq!(
        detail(&prepared[2].request)["parameters"],
        serde_json::json!(["0003"])
    );
    // COPY: bytes counted, no entry per CopyData.
    let copy_in = find("COPY items (name, price) FROM STDIN");
    assert_eq!(copy_in.len(), 1);
    let resp = detail(&copy_in[0].response);
    assert_eq!(resp["copy"]["direction"], "in");
    assert!(resp["copy"]["bytes"].as_u64().unwrap() > 0);
    assert_eq!(resp["rows_affected"], 20);
    let copy_out = find("COPY (SELECT id, name FROM items ORDER BY id) TO STDOUT");
    let resp = detail(&copy_out[0].response);
    assert_eq!(resp["copy"]["direction"], "out");
    assert!(resp["copy"]["bytes"].as_u64().unwrap() > 25 * 3);
    let failed = find("SELECT * FROM no_such_table");
    assert_eq!(failed[0].status, Some(1));
    assert_eq!(failed[0].status_text.as_deref(), Some("42P01"));
    assert_eq!(failed[0].method.as_deref(), Some("SELECT"));
    let notify: Vec<_> = entries
        .iter()
        .filter(|e| e.method.as_deref() == Some("NOTIFICATION"))
        .collect();
    assert_eq!(notify.len(), 1);
    assert_eq!(notify[0].path.as_deref(), Some("corpus_events"));
    // The pipeline batch: 5 Executes before one Sync, all answered in order.
    let updates = find("UPDATE items SET price = price + $1");
    assert_eq!(updates.len(), 4);
    assert!(updates.iter().all(|e| e.status == Some(0)));
}

/// psql first asks for SSL; the server says 'N' and the startup goes on in plain text.
#[test]
fn postgres_ssl_refused_then_startup() {
    if skip() {
        return;
    }
    let (entries, stats) = run("pgsql_psql", 64 * 1024);
    let startups: Vec<_> = entries
        .iter()
        .filter(|e| e.method.as_deref() == Some("startup"))
        .collect();
    assert_eq!(startups.len(), 2);
    let req = detail(&startups[0].request);
    assert_eq!(req["encryption_request"], "ssl");
    assert_eq!(req["encryption_response"], "N");
    assert_eq!(startups[0].status, Some(0));
    assert_eq!(startups[0].path.as_deref(), Some("postgres"));
    let resp = detail(&startups[0].response);
    assert_eq!(resp["authenticated"], true);
    assert!(resp["server_version"].as_str().unwrap().starts_with("15."));
    // No password material in the entry.
    for e in &startups {
        let all = format!("{:?}{:?}", e.request, e.response);
        assert!(
            !all.contains("n,,n=") && !all.contains("corpus-secret"),
            "{all}"
        );
    }
    assert_eq!(stats.upgraded_streams, 0);
}

/// Prints our entries (`cargo test … -- --ignored --nocapture dump`), for a look by eye.
#[test]
#[ignore]
fn dump() {
    for name in ["pgsql_psql", "pgsql_psycopg2", "pgsql_psycopg3"] {
        for e in run(name, 64 * 1024).0 {
            println!(
                "{name} {} {:?} {:?} {:?} {:?} {:?} {}/{} {} {}",
                e.src.port,
                e.method,
                e.path
                    .as_deref()
                    .map(|p| p.chars().take(60).collect::<String>()),
                e.status,
                e.status_text,
                e.elapsed_us,
                e.request_size,
                e.response_size,
                e.request.unwrap_or_default(),
                e.response.unwrap_or_default()
            );
        }
    }
}
