//! HTTP/2, gRPC and GraphQL against tshark, stream by stream: per connection (client port)
//! and stream id, the request's `:method`/`:path`, the response's `:status`, and for gRPC the
//! `grpc-status` of the trailers (or of a trailers-only response). The h2c Upgrade capture
//! also checks the request that carried `Upgrade: h2c` (answered as HTTP/2 stream 1).
//! GraphQL is checked against the JSON members tshark decoded from each request and against
//! what `helpers/graphql_client.py` sent.

mod support;

use std::collections::{BTreeMap, BTreeSet};

use support::{detail, run, run_with_keylog, skip, split, truth, Conformance};
use wiretrail_proto::Entry;

#[derive(Debug, Default, Clone, PartialEq)]
struct Call {
    method: String,
    path: String,
    status: Option<i32>,
    grpc_status: Option<i32>,
}

/// tshark's streams: (client port, stream id) → call.
fn h2_truth(name: &str, server_port: u16) -> BTreeMap<(u16, u32), Call> {
    let mut out: BTreeMap<(u16, u32), Call> = BTreeMap::new();
    let mut seen_req = BTreeSet::new();
    let mut seen_resp = BTreeSet::new();
    let mut upgrade_requests = BTreeMap::new();
    for row in truth(name) {
        let (Ok(sp), Ok(dp)) = (
            row["tcp.srcport"].parse::<u16>(),
            row["tcp.dstport"].parse::<u16>(),
        ) else {
            continue;
        };
        let to_server = dp == server_port;
        let client = if to_server { sp } else { dp };
        // The HTTP/1 request that asked for `Upgrade: h2c` is stream 1 once a 101 agreed.
        let field = |k: &str| row.get(k).map(String::as_str).unwrap_or_default();
        if field("http.upgrade") == "h2c" && !field("http.request.method").is_empty() {
            upgrade_requests.insert(
                client,
                (
                    field("http.request.method").to_string(),
                    field("http.request.uri").to_string(),
                ),
            );
            continue;
        }
        if field("http.response.code") == "101" {
            if let Some((method, path)) = upgrade_requests.remove(&client) {
                let c = out.entry((client, 1)).or_default();
                c.method = method;
                c.path = path;
                seen_req.insert((client, 1));
            }
            continue;
        }
        let sids = split(field("http2.streamid"));
        let types = split(field("http2.type"));
        let mut ends = split(field("http2.flags.end_stream")).into_iter();
        let mut methods = split(field("http2.headers.method")).into_iter();
        let mut paths = split(field("http2.headers.path")).into_iter();
        let mut statuses = split(field("http2.headers.status")).into_iter();
        let names = split(field("http2.header.name"));
        let values = split(field("http2.header.value"));
        let mut grpc = names
            .iter()
            .zip(values.iter())
            .filter(|(n, _)| *n == "grpc-status")
            .map(|(_, v)| v.parse::<i32>().ok())
            .collect::<Vec<_>>()
            .into_iter();
        for (sid, ty) in sids.iter().zip(types.iter()) {
            let Ok(sid) = sid.parse::<u32>() else {
                continue;
            };
            let end = if ty == "0" || ty == "1" {
                ends.next().as_deref() == Some("1")
            } else {
                false
            };
            if ty != "1" {
                continue;
            }
            let key = (client, sid);
            if to_server {
                if seen_req.insert(key) {
                    let c = out.entry(key).or_default();
                    c.method = methods.next().unwrap_or_default();
                    c.path = paths.next().unwrap_or_default();
                }
            } else {
                if seen_resp.insert(key) {
                    out.entry(key).or_default().status =
                        statuses.next().and_then(|s| s.parse().ok());
                }
                if end && names.iter().any(|n| n == "grpc-status") {
                    out.entry(key).or_default().grpc_status = grpc.next().flatten();
                }
            }
        }
    }
    out
}

/// Our HTTP/2 entries the same way.
fn h2_ours(entries: &[Entry]) -> BTreeMap<(u16, u32), Call> {
    let mut out = BTreeMap::new();
    for e in entries
        .iter()
        .filter(|e| matches!(e.protocol.as_str(), "http2" | "grpc" | "graphql"))
    {
        let req = detail(&e.request);
        let Some(sid) = req["stream"].as_u64() else {
            continue; // an HTTP/1 graphql entry
        };
        let h = e.request_headers.as_deref().unwrap_or_default();
        let get = |n: &str| {
            h.iter()
                .find(|(k, _)| k == n)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        let resp = detail(&e.response);
        let call = if e.protocol == "grpc" {
            Call {
                method: get(":method"),
                path: get(":path"),
                status: resp["http_status"].as_i64().map(|s| s as i32),
                grpc_status: e.status,
            }
        } else {
            Call {
                method: get(":method"),
                path: get(":path"),
                status: e.status,
                grpc_status: None,
            }
        };
        out.insert((e.src.port, sid as u32), call);
    }
    out
}

fn conformance(protocol: &'static str, name: &str, port: u16) -> Vec<Entry> {
    conformance_keylog(protocol, name, port, false)
}

fn conformance_keylog(protocol: &'static str, name: &str, port: u16, keylog: bool) -> Vec<Entry> {
    let (entries, stats) = run_with_keylog(name, 1 << 20, keylog);
    let want = h2_truth(name, port);
    let got = h2_ours(&entries);
    let mut c = Conformance::new(protocol, name);
    for (k, w) in &want {
        c.check(
            &format!("client port {} stream {}", k.0, k.1),
            w,
            got.get(k),
        );
    }
    for k in got.keys().filter(|k| !want.contains_key(k)) {
        c.mismatches.push(format!("{k:?}: ours only"));
    }
    c.print_and_assert();
    assert_eq!(stats.dissect_errors, 0, "{name}");
    entries
}

#[test]
fn http2_prior_knowledge_matches_tshark() {
    if skip() {
        return;
    }
    let entries = conformance("http2", "http2_h2c_prior_knowledge", 18082);
    // nginx answers `POST /upload` before reading the body, then resets the stream (corpus
    // README): that stream carries the reset as its status text.
    let upload = entries
        .iter()
        .find(|e| e.path.as_deref() == Some("/upload"))
        .expect("the /upload stream");
    let resp = detail(&upload.response);
    assert!(resp["reset"].is_object(), "{resp}");
    // Bodies flow through: every 2xx GET with a body has one.
    assert!(entries
        .iter()
        .filter(|e| e.method.as_deref() == Some("GET") && e.status == Some(200))
        .all(|e| e.response_size > 0));
}

#[test]
fn h2c_upgrade_matches_tshark() {
    if skip() {
        return;
    }
    let entries = conformance("http2", "http2_h2c_upgrade", 18085);
    let up: Vec<&Entry> = entries
        .iter()
        .filter(|e| detail(&e.request)["upgrade"] == "h2c")
        .collect();
    assert_eq!(
        up.len(),
        2,
        "two upgraded connections (nghttp -u, curl --http2)"
    );
    for e in up {
        assert_eq!(e.protocol, "http2");
        assert_eq!(e.status, Some(200));
        assert!(e.response_body.as_ref().is_some_and(|b| !b.is_empty()));
    }
    // The POST that asked for an upgrade was answered in HTTP/1.1, and the plain request too.
    let h1: BTreeSet<&str> = entries
        .iter()
        .filter(|e| e.protocol == "http")
        .filter_map(|e| e.path.as_deref())
        .collect();
    assert_eq!(h1, BTreeSet::from(["/curl/upgrade-post", "/curl/http11"]));
}

#[test]
fn grpc_matches_tshark() {
    if skip() {
        return;
    }
    let entries = conformance("grpc", "grpc_unary_streaming", 50051);
    let calls: Vec<&Entry> = entries.iter().filter(|e| e.protocol == "grpc").collect();
    assert_eq!(calls.len(), 9);
    // All four call kinds: message counts per call and direction equal tshark's
    // `grpc.message_length` rows (a frame whose DATA all belongs to one stream).
    let mut want: BTreeMap<(u16, u32, bool), u64> = BTreeMap::new();
    for row in truth("grpc_unary_streaming") {
        let to_server = row["tcp.dstport"] == "50051";
        let client: u16 = if to_server {
            &row["tcp.srcport"]
        } else {
            &row["tcp.dstport"]
        }
        .parse()
        .unwrap();
        let data_sids: BTreeSet<String> = split(&row["http2.streamid"])
            .into_iter()
            .zip(split(&row["http2.type"]))
            .filter(|(_, t)| t == "0")
            .map(|(s, _)| s)
            .collect();
        let n = split(&row["grpc.message_length"]).len() as u64;
        if n == 0 {
            continue;
        }
        assert_eq!(
            data_sids.len(),
            1,
            "frame {}: unambiguous",
            row["frame.number"]
        );
        let sid: u32 = data_sids.first().unwrap().parse().unwrap();
        *want.entry((client, sid, to_server)).or_default() += n;
    }
    let mut got: BTreeMap<(u16, u32, bool), u64> = BTreeMap::new();
    for e in &calls {
        let sid = detail(&e.request)["stream"].as_u64().unwrap() as u32;
        for (to_server, d) in [(true, detail(&e.request)), (false, detail(&e.response))] {
            let n = d["grpc"]["message_count"].as_u64().unwrap_or(0);
            if n > 0 {
                got.insert((e.src.port, sid, to_server), n);
            }
        }
    }
    assert_eq!(got, want, "messages per call and direction");
    let kinds: BTreeSet<&str> = calls.iter().filter_map(|e| e.method.as_deref()).collect();
    for m in ["SayHello", "ListFeatures", "RecordRoute", "Chat"] {
        assert!(
            kinds.contains(format!("/corpus.Greeter/{m}").as_str()),
            "{m}"
        );
    }
    // Errors: NOT_FOUND with its message, DEADLINE_EXCEEDED.
    let statuses: BTreeSet<(Option<i32>, Option<String>)> = calls
        .iter()
        .map(|e| (e.status, e.status_text.clone()))
        .collect();
    assert!(statuses.contains(&(Some(5), Some("no such user: missing".into()))));
    assert!(statuses.contains(&(Some(4), Some("Deadline Exceeded".into()))));
    // The gzip-compressed request decodes like the others (schemaless protobuf → JSON).
    let gz = calls
        .iter()
        .find(|e| detail(&e.request)["grpc"]["compressed_messages"] == 1)
        .expect("a compressed call");
    let m = &detail(&gz.request)["grpc"]["messages"][0];
    assert!(m["1"].is_string(), "{m}");
}

#[test]
fn graphql_matches_tshark_and_the_client() {
    if skip() {
        return;
    }
    let name = "graphql_http";
    let (entries, _) = run(name, 1 << 20);
    let gql: Vec<&Entry> = entries.iter().filter(|e| e.protocol == "graphql").collect();
    let mut c = Conformance::new("graphql", name);
    let mut i = 0;
    for row in truth(name) {
        if row["http.request.method"].is_empty() {
            continue;
        }
        let members = split(&row["json.member_with_value"]);
        let query = members
            .iter()
            .find_map(|m| m.strip_prefix("query:").map(str::to_string))
            .or_else(|| {
                row["http.request.uri"]
                    .contains("query=")
                    .then(|| "{ books { title } }".to_string())
            });
        let op = members
            .iter()
            .find_map(|m| m.strip_prefix("operationName:").map(str::to_string));
        let want = (row["http.request.method"].clone(), query, op);
        let got = gql.get(i).map(|e| {
            let d = detail(&e.request);
            (
                e.method.clone().unwrap_or_default(),
                d["graphql"]["query"].as_str().map(str::to_string),
                d["graphql"]["operation_name"].as_str().map(str::to_string),
            )
        });
        c.check(
            &format!("request {}", row["frame.number"]),
            &want,
            got.as_ref(),
        );
        i += 1;
    }
    c.print_and_assert();
    // What the client sent: two mutations, the failing mutation and the unknown field answer
    // with GraphQL errors.
    let kinds: Vec<String> = gql
        .iter()
        .map(|e| detail(&e.request)["graphql"]["operation_type"].to_string())
        .collect();
    assert_eq!(kinds.iter().filter(|k| *k == "\"mutation\"").count(), 2);
    let with_errors = gql
        .iter()
        .filter(|e| {
            detail(&e.response)["graphql"]["errors"]
                .as_array()
                .is_some_and(|a| !a.is_empty())
        })
        .count();
    assert_eq!(with_errors, 2, "Bad mutation and {{ nosuchfield }}");
}

/// HTTP/2 (and HTTP/1.1) inside TLS 1.3, decrypted with `pcaps/http2_tls.keylog` as tshark
/// did for the truth: the same streams, methods, paths and statuses.
#[test]
fn http2_over_tls_with_keylog_matches_tshark() {
    if skip() {
        return;
    }
    let entries = conformance_keylog("http2+tls", "http2_tls", 18443, true);
    let inner: Vec<&Entry> = entries.iter().filter(|e| e.protocol != "tls").collect();
    assert!(inner
        .iter()
        .all(|e| detail(&e.request)["tls"]["decrypted"] == true));
    // The handshakes: decrypted, with the TLS 1.3 ALPN and server certificate that are
    // only visible inside the encrypted handshake.
    for e in entries.iter().filter(|e| e.protocol == "tls") {
        let r = detail(&e.response);
        assert_eq!(r["decryption"]["decrypted"], true, "{r}");
        assert_eq!(r["decryption"]["failed_records"], 0, "{r}");
        assert!(
            r["certificates"][0]["subject"]
                .as_str()
                .is_some_and(|s| s.contains("corpus.test")),
            "{r}"
        );
    }
    // Without the key log the same capture yields only the handshakes.
    let (plain, _) = run("http2_tls", 1 << 20);
    assert!(plain.iter().all(|e| e.protocol == "tls"));
}
