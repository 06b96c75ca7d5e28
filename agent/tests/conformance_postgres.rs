//! PostgreSQL against tshark (`truth/pgsql_*.fields.tsv`), per connection and in order: the
//! query texts the client sent (`Simple query` and `Parse`; consecutive repeats of a prepared
//! statement count once, as tshark shows its `Parse` once), the command tags the server
//! completed them with, and the SQLSTATE codes of its errors.

mod support;

use std::collections::BTreeMap;

use serde_json::Value;
use support::{run, skip, split, truth, Conformance};
use wiretrail_proto::Entry;

const PORT: &str = "15432";

#[derive(Debug, Default, PartialEq)]
struct Conn {
    queries: Vec<String>,
    tags: Vec<String>,
    codes: Vec<String>,
}

fn dedup(v: &mut Vec<String>) {
    v.dedup();
}

fn truth_conns(name: &str) -> BTreeMap<String, Conn> {
    let mut out: BTreeMap<String, Conn> = BTreeMap::new();
    for row in truth(name) {
        let to_server = row["tcp.dstport"] == PORT;
        let client = if to_server {
            &row["tcp.srcport"]
        } else {
            &row["tcp.dstport"]
        };
        let c = out.entry(client.clone()).or_default();
        let types = split(&row["pgsql.type"]);
        if to_server {
            let mut queries = split(&row["pgsql.query"]).into_iter();
            for t in &types {
                if t == "Simple query" || t == "Parse" {
                    // tshark unescapes nothing; newlines arrive as the two characters "\n".
                    if let Some(q) = queries.next() {
                        c.queries.push(q.replace("\\n", "\n"));
                    }
                }
            }
        } else {
            c.tags.extend(split(&row["pgsql.tag"]));
            // Notices (code 00000 and warnings) are not errors.
            let errors = types.iter().filter(|t| *t == "Error").count();
            c.codes
                .extend(split(&row["pgsql.code"]).into_iter().take(errors));
        }
    }
    for c in out.values_mut() {
        dedup(&mut c.queries);
    }
    out
}

fn ours(entries: &[Entry]) -> BTreeMap<String, Conn> {
    let mut out: BTreeMap<String, Conn> = BTreeMap::new();
    for e in entries.iter().filter(|e| e.protocol == "postgres") {
        let c = out.entry(e.src.port.to_string()).or_default();
        if matches!(e.method.as_deref(), Some("startup") | Some("cancel")) {
            continue;
        }
        if let Some(q) = &e.path {
            c.queries.push(q.clone());
        }
        let r: Value = e
            .response
            .as_deref()
            .and_then(|r| serde_json::from_str(r).ok())
            .unwrap_or(Value::Null);
        for t in r["command_tags"].as_array().into_iter().flatten() {
            c.tags.push(t.as_str().unwrap_or_default().to_string());
        }
        let skipped = r["notices"]
            .as_array()
            .is_some_and(|n| n.iter().any(|n| n.get("skipped").is_some()));
        if let (Some(code), false) = (r["error"]["code"].as_str(), skipped) {
            c.codes.push(code.to_string());
        }
    }
    for c in out.values_mut() {
        dedup(&mut c.queries);
    }
    out
}

fn check(name: &str) {
    let (entries, stats) = run(name, 1 << 20);
    let want = truth_conns(name);
    let got = ours(&entries);
    let mut c = Conformance::new("postgres", name);
    for (port, w) in &want {
        let g = got.get(port);
        for (i, q) in w.queries.iter().enumerate() {
            c.check(
                &format!("{port} query {i}"),
                q,
                g.and_then(|g| g.queries.get(i)),
            );
        }
        for (i, t) in w.tags.iter().enumerate() {
            c.check(&format!("{port} tag {i}"), t, g.and_then(|g| g.tags.get(i)));
        }
        for (i, code) in w.codes.iter().enumerate() {
            c.check(
                &format!("{port} error {i}"),
                code,
                g.and_then(|g| g.codes.get(i)),
            );
        }
        if let Some(g) = g {
            if g.queries.len() > w.queries.len() || g.tags.len() > w.tags.len() {
                c.mismatches.push(format!("{port}: ours has more: {g:?}"));
            }
        }
    }
    c.print_and_assert();
    assert_eq!(stats.dissect_errors, 0, "{name}");
    // Every connection starts with an authenticated startup entry (scram-sha-256).
    for e in entries
        .iter()
        .filter(|e| e.method.as_deref() == Some("startup"))
    {
        assert_eq!(e.status, Some(0));
        assert!(e.request.as_deref().unwrap().contains("SASL SCRAM-SHA-256"));
    }
}

#[test]
fn psql_matches_tshark() {
    if !skip() {
        check("pgsql_psql");
    }
}

#[test]
fn psycopg2_simple_protocol_matches_tshark() {
    if !skip() {
        check("pgsql_psycopg2");
    }
}

#[test]
fn psycopg3_extended_protocol_matches_tshark() {
    if !skip() {
        check("pgsql_psycopg3");
    }
}
