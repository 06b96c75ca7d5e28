//! The dissectors against the real captures in `../shared/corpus`, compared with tshark's
//! ground truth (`truth/<name>.fields.tsv`, `counts.tsv`, `<name>.http_objects.tsv`): every
//! HTTP request and DNS query becomes exactly one entry, with the same method, path, status,
//! query name, type and rcode, in the same order per TCP stream / per query.

use std::collections::{BTreeMap, BTreeSet};

mod support;

use support::{corpus, run, split, truth};
use wiretrail_agent::{CaptureReader, IdentityMap, Pipeline, PipelineConfig};
use wiretrail_proto::Entry;

/// tshark's request count for a capture (`counts.tsv`).
fn tshark_requests(pcap: &str) -> usize {
    let text = std::fs::read_to_string(corpus().join("truth/counts.tsv")).unwrap();
    text.lines()
        .find(|l| l.split('\t').next() == Some(pcap))
        .and_then(|l| l.split('\t').nth(2))
        .and_then(|v| v.parse().ok())
        .unwrap()
}

/// One TCP connection as tshark saw it: requests (method, uri) and final statuses, in order.
#[derive(Debug, Default, PartialEq)]
struct Conn {
    requests: Vec<(String, String)>,
    statuses: Vec<i32>,
}

/// Connections keyed by (client port, server port), from tshark's `tcp.stream` rows.
fn http_truth(name: &str) -> BTreeMap<(u16, u16), Conn> {
    let mut by_stream: BTreeMap<u64, ((u16, u16), Conn)> = BTreeMap::new();
    for row in truth(name) {
        let Ok(stream) = row["tcp.stream"].parse::<u64>() else {
            continue;
        };
        let (sp, dp): (u16, u16) = (
            row["tcp.srcport"].parse().unwrap(),
            row["tcp.dstport"].parse().unwrap(),
        );
        let methods = split(&row["http.request.method"]);
        let codes = split(&row["http.response.code"]);
        if methods.is_empty() && codes.is_empty() {
            continue; // another protocol in the same capture (cluster_mix: Redis, Kafka)
        }
        let key = if methods.is_empty() {
            (dp, sp)
        } else {
            (sp, dp)
        };
        let conn = &mut by_stream.entry(stream).or_insert((key, Conn::default())).1;
        for (m, u) in methods.into_iter().zip(split(&row["http.request.uri"])) {
            conn.requests.push((m, u));
        }
        for c in codes {
            let c: i32 = c.parse().unwrap();
            if !(100..200).contains(&c) || c == 101 {
                conn.statuses.push(c);
            }
        }
    }
    let mut out: BTreeMap<(u16, u16), Conn> = BTreeMap::new();
    for (_, (key, conn)) in by_stream {
        let c = out.entry(key).or_default();
        c.requests.extend(conn.requests);
        c.statuses.extend(conn.statuses);
    }
    out
}

/// Our HTTP entries grouped the same way, in emission order (which is request order).
fn http_ours(entries: &[Entry]) -> BTreeMap<(u16, u16), Conn> {
    let mut out: BTreeMap<(u16, u16), Conn> = BTreeMap::new();
    for e in entries
        .iter()
        .filter(|e| matches!(e.protocol.as_str(), "http" | "graphql"))
    {
        let c = out.entry((e.src.port, e.dst.port)).or_default();
        if let Some(m) = &e.method {
            c.requests
                .push((m.clone(), e.path.clone().unwrap_or_default()));
        }
        if let Some(s) = e.status {
            c.statuses.push(s);
        }
    }
    out
}

const HTTP_CAPTURES: [&str; 7] = [
    "http1_keepalive",
    "http1_chunked",
    "http1_gzip",
    "http1_large_bodies",
    "http1_pipelining",
    "graphql_http",
    "cluster_mix",
];

#[test]
fn http1_captures_match_tshark_per_stream_in_order() {
    if !corpus().exists() {
        eprintln!("SKIP: corpus not found at {}", corpus().display());
        return;
    }
    eprintln!(
        "{:<20} {:>7} {:>7} {:>8} {:>8} {:>7} {:>6}",
        "capture", "tshark", "ours", "statuses", "one-way", "errors", "gaps"
    );
    for name in HTTP_CAPTURES {
        let (entries, stats) = run(name, 64 * 1024);
        let want = http_truth(name);
        let got = http_ours(&entries);
        let n_want: usize = want.values().map(|c| c.requests.len()).sum();
        let n_got = entries
            .iter()
            .filter(|e| matches!(e.protocol.as_str(), "http" | "graphql") && e.method.is_some())
            .count();
        if name != "cluster_mix" {
            assert_eq!(n_want, tshark_requests(&format!("{name}.pcap")), "{name}");
        }
        eprintln!(
            "{:<20} {:>7} {:>7} {:>8} {:>8} {:>7} {:>6}",
            name,
            n_want,
            n_got,
            got.values().map(|c| c.statuses.len()).sum::<usize>(),
            entries
                .iter()
                .filter(
                    |e| matches!(e.protocol.as_str(), "http" | "graphql") && e.elapsed_us.is_none()
                )
                .count(),
            stats.dissect_errors,
            stats.gap_bytes
        );
        assert_eq!(n_got, n_want, "{name}: one entry per request");
        let differing: Vec<_> = want
            .iter()
            .filter(|(k, c)| got.get(k) != Some(c))
            .map(|(k, c)| (k, c, got.get(k)))
            .collect();
        assert!(
            differing.is_empty(),
            "{name}: per connection, in order: {differing:#?}"
        );
        assert_eq!(got.len(), want.len(), "{name}: connections");
        assert_eq!(stats.dissect_errors, 0, "{name}");
        for e in entries
            .iter()
            .filter(|e| matches!(e.protocol.as_str(), "http" | "graphql"))
        {
            for json in [&e.request, &e.response].into_iter().flatten() {
                serde_json::from_str::<serde_json::Value>(json).unwrap();
            }
            assert!(e.request_size > 0 || e.method.is_none());
        }
    }
}

#[test]
fn pipelined_requests_pair_in_order() {
    if !corpus().exists() {
        eprintln!("SKIP: corpus not found");
        return;
    }
    let (entries, stats) = run("http1_pipelining", 64 * 1024);
    let want = http_truth("http1_pipelining");
    // The pipelining client writes 5 requests in one segment: all share one capture time and
    // still pair with the 5 responses in order.
    let five = want.values().find(|c| c.requests.len() == 5).unwrap();
    let ours = http_ours(&entries);
    let got = ours.values().find(|c| c.requests == five.requests).unwrap();
    assert_eq!(got.statuses, five.statuses);
    let first = entries
        .iter()
        .find(|e| e.path.as_deref() == Some(five.requests[0].1.as_str()))
        .unwrap();
    let same_segment = entries
        .iter()
        .filter(|e| e.src.port == first.src.port && e.ts_us == first.ts_us)
        .count();
    assert_eq!(same_segment, 5);
    assert!(entries.iter().all(|e| e.elapsed_us.is_some()));
    assert_eq!(stats.dissect_errors, 0);
}

/// DNS type names as numbers, as tshark writes `dns.qry.type`.
fn qtype_number(name: &str) -> String {
    match name {
        "A" => "1",
        "NS" => "2",
        "CNAME" => "5",
        "SOA" => "6",
        "PTR" => "12",
        "MX" => "15",
        "TXT" => "16",
        "AAAA" => "28",
        "SRV" => "33",
        "ANY" => "255",
        other => other,
    }
    .to_string()
}

#[test]
fn dns_matches_tshark() {
    if !corpus().exists() {
        eprintln!("SKIP: corpus not found");
        return;
    }
    for name in ["dns_udp", "dns_tcp"] {
        let (entries, stats) = run(name, 64 * 1024);
        // Per query id: (name, type, rcode) of tshark's responses, in capture order.
        let mut want = Vec::new();
        for row in truth(name) {
            if row["dns.flags.response"] == "1" {
                want.push((
                    row["dns.id"].clone(),
                    split(&row["dns.qry.name"])
                        .first()
                        .cloned()
                        .unwrap_or_default(),
                    split(&row["dns.qry.type"])
                        .first()
                        .cloned()
                        .unwrap_or_default(),
                    row["dns.flags.rcode"].parse::<i32>().unwrap_or(-1),
                ));
            }
        }
        let dns: Vec<&Entry> = entries.iter().filter(|e| e.protocol == "dns").collect();
        let mut got: Vec<(String, String, String, i32)> = dns
            .iter()
            .map(|e| {
                let req: serde_json::Value =
                    serde_json::from_str(e.request.as_deref().unwrap()).unwrap();
                (
                    format!("0x{:04x}", req["id"].as_u64().unwrap()),
                    e.path.clone().unwrap_or_default(),
                    qtype_number(e.method.as_deref().unwrap_or_default()),
                    e.status.unwrap_or(-1),
                )
            })
            .collect();
        eprintln!(
            "{name}: tshark {} answered queries, ours {} entries ({} answered), errors {}",
            want.len(),
            dns.len(),
            dns.iter().filter(|e| e.elapsed_us.is_some()).count(),
            stats.dissect_errors
        );
        assert!(
            dns.iter().all(|e| e.elapsed_us.is_some()),
            "{name}: every query answered"
        );
        assert_eq!(dns.len(), tshark_requests(&format!("{name}.pcap")));
        got.sort();
        want.sort();
        assert_eq!(got, want, "{name}: ids, names, types and rcodes");
        for e in &dns {
            let resp: serde_json::Value =
                serde_json::from_str(e.response.as_deref().unwrap()).unwrap();
            assert_eq!(resp["rcode"].as_i64(), e.status.map(i64::from));
            assert!(e.request_size >= 12 && e.response_size >= 12);
        }
    }
}

#[test]
fn cluster_mix_http_and_dns_with_identities() {
    if !corpus().exists() {
        eprintln!("SKIP: corpus not found");
        return;
    }
    let ids = IdentityMap::load(corpus().join("pcaps/cluster_mix.identities.json")).unwrap();
    let mut p = Pipeline::new(PipelineConfig {
        node: "node-a".into(),
        identities: ids.into(),
        ..Default::default()
    });
    let mut r = CaptureReader::open(corpus().join("pcaps/cluster_mix.pcap")).unwrap();
    while let Some(pkt) = r.next_packet().unwrap() {
        p.packet(pkt.ts_us, pkt.link, &pkt.data);
    }
    p.finish();
    let entries = p.take_entries();
    let http = entries
        .iter()
        .filter(|e| matches!(e.protocol.as_str(), "http" | "graphql"))
        .count();
    let dns: Vec<&Entry> = entries.iter().filter(|e| e.protocol == "dns").collect();
    assert_eq!(
        (http, dns.len()),
        (602, 111),
        "corpus README: 602 HTTP pairs, 111 DNS queries"
    );
    let mut rcodes: BTreeMap<i32, usize> = BTreeMap::new();
    for e in &dns {
        *rcodes.entry(e.status.unwrap_or(-1)).or_default() += 1;
    }
    assert_eq!(rcodes, BTreeMap::from([(0, 75), (3, 34), (5, 2)]));
    let token = entries
        .iter()
        .filter(|e| {
            e.request_headers.as_ref().is_some_and(|h| {
                h.iter()
                    .any(|(k, v)| k.eq_ignore_ascii_case("authorization") && v.starts_with("Token"))
            })
        })
        .count();
    assert_eq!(token, 112);
    let api = entries.iter().find(|e| e.dst.ip == "127.0.10.2").unwrap();
    assert_eq!(api.dst.identity.namespace.as_deref(), Some("shop"));
    assert_eq!(api.dst.identity.name, "api-6f7b9c4d8-9tq7m");
    let ids: BTreeSet<_> = entries.iter().map(|e| e.id).collect();
    assert_eq!(ids.len(), entries.len(), "ids are unique");
    assert!(entries
        .iter()
        .all(|e| e.node == "node-a" && e.capture == "pcap"));
}

/// Decoded bodies against `tshark --export-objects http` (bodies de-chunked and gunzipped),
/// by hash membership: every object tshark exports must be one of our decoded bodies.
#[test]
fn decoded_bodies_match_tshark_objects() {
    if !corpus().exists() {
        eprintln!("SKIP: corpus not found");
        return;
    }
    for name in HTTP_CAPTURES {
        let (entries, _) = run(name, 16 << 20);
        let text = std::fs::read_to_string(
            corpus()
                .join("truth")
                .join(format!("{name}.http_objects.tsv")),
        )
        .unwrap();
        let hashes: BTreeSet<String> = entries
            .iter()
            .flat_map(|e| [&e.request_body, &e.response_body])
            .flatten()
            .map(|b| sha256_hex(b))
            .collect();
        let mut missing = Vec::new();
        let mut total = 0;
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split('\t').collect();
            total += 1;
            if !hashes.contains(cols[2]) {
                missing.push(format!("{} ({} bytes)", cols[0], cols[1]));
            }
        }
        eprintln!(
            "{name}: {}/{total} tshark objects matched by hash",
            total - missing.len()
        );
        assert!(missing.is_empty(), "{name}: not decoded alike: {missing:?}");
        assert!(entries
            .iter()
            .all(|e| !e.request_body_truncated && !e.response_body_truncated));
    }
    // With the default cap, large bodies are cut at the cap and flagged.
    let (entries, _) = run("http1_large_bodies", 64 * 1024);
    let big: Vec<&Entry> = entries
        .iter()
        .filter(|e| e.response_body_truncated)
        .collect();
    assert!(!big.is_empty());
    for e in big {
        assert_eq!(e.response_body.as_ref().map(Vec::len), Some(64 * 1024));
        assert!(
            e.response_size > 1_000_000,
            "the wire size is still counted"
        );
    }
}

fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Commands per name, from tshark's `counts.json` (`detail.commands`), for a capture.
fn redis_commands(pcap: &str) -> BTreeMap<String, u64> {
    let text = std::fs::read_to_string(corpus().join("truth/counts.json")).unwrap();
    let all: serde_json::Value = serde_json::from_str(&text).unwrap();
    let item = all
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["pcap"] == pcap)
        .unwrap();
    item["detail"]["commands"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_u64().unwrap()))
        .collect()
}

#[test]
fn redis_commands_and_replies_match_the_capture() {
    if !corpus().exists() {
        eprintln!("SKIP: corpus not found");
        return;
    }
    for name in ["redis_cli", "redis_pipeline", "redis_pubsub", "redis_resp3"] {
        let (entries, stats) = run(name, 64 * 1024);
        let commands: Vec<&Entry> = entries
            .iter()
            .filter(|e| e.protocol == "redis" && e.request.is_some())
            .collect();
        let mut got: BTreeMap<String, u64> = BTreeMap::new();
        for e in &commands {
            *got.entry(e.method.clone().unwrap_or_default()).or_default() += 1;
        }
        assert_eq!(
            got,
            redis_commands(&format!("{name}.pcap")),
            "{name}: commands by name"
        );
        let unanswered = commands.iter().filter(|e| e.elapsed_us.is_none()).count();
        assert_eq!(unanswered, 0, "{name}: every command has its reply");
        assert_eq!(stats.dissect_errors, 0, "{name}");
        if name == "redis_pubsub" {
            let pushed = entries
                .iter()
                .filter(|e| {
                    e.method.as_deref() == Some("message")
                        || e.method.as_deref() == Some("pmessage")
                })
                .count();
            // 7 PUBLISH, one to a channel nobody listens on: 4 `message` + 2 `pmessage` pushes,
            // as tshark shows them (`resp.bulk_string.value` from the server).
            assert_eq!(pushed, 6, "published messages arrive as one-way entries");
        }
    }
    // Errors and nils in the redis-cli session: WRONGTYPE and an unknown command.
    let (entries, _) = run("redis_cli", 64 * 1024);
    let errors: Vec<_> = entries
        .iter()
        .filter(|e| e.status == Some(1))
        .map(|e| e.status_text.clone().unwrap_or_default())
        .collect();
    assert!(
        errors.contains(&"WRONGTYPE".to_string()) && errors.contains(&"ERR".to_string()),
        "{errors:?}"
    );
}
