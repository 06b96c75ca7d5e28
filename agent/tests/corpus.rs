//! The dissectors against the real captures in `../shared/corpus`, compared with tshark's
//! ground truth (`truth/<name>.fields.tsv`): every HTTP request and DNS query becomes exactly
//! one entry, with the same method, path, status and query name, in the same order per stream.

use std::collections::BTreeMap;
use std::path::PathBuf;

use wiretrail_agent::{CaptureReader, IdentityMap, Pipeline, PipelineConfig};
use wiretrail_proto::Entry;

fn corpus() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus")
}

fn run(name: &str, body_cap: usize) -> (Vec<Entry>, wiretrail_agent::PipelineStats) {
    let mut p = Pipeline::new(PipelineConfig {
        node: "t".into(),
        body_cap,
        ..Default::default()
    });
    let mut r = CaptureReader::open(&corpus().join("pcaps").join(name)).unwrap();
    let mut out = Vec::new();
    while let Some(pkt) = r.next_packet().unwrap() {
        p.packet(pkt.ts_us, pkt.link, &pkt.data);
        out.extend(p.take_entries());
    }
    p.finish();
    out.extend(p.take_entries());
    (out, p.stats().clone())
}

/// Rows of a truth TSV as column → value maps.
fn truth(name: &str) -> Vec<BTreeMap<String, String>> {
    let text =
        std::fs::read_to_string(corpus().join("truth").join(format!("{name}.fields.tsv"))).unwrap();
    let mut lines = text.lines();
    let cols: Vec<&str> = lines.next().unwrap().split('\t').collect();
    lines
        .map(|l| {
            cols.iter()
                .zip(l.split('\t'))
                .map(|(c, v)| (c.to_string(), v.to_string()))
                .collect()
        })
        .collect()
}

fn split(v: &str) -> Vec<String> {
    if v.is_empty() {
        vec![]
    } else {
        v.split('|').map(str::to_string).collect()
    }
}

/// (tcp stream, method, uri) per request; final statuses per stream.
type HttpTruth = (Vec<(String, String, String)>, BTreeMap<String, Vec<i32>>);

fn http_truth(name: &str) -> HttpTruth {
    let mut reqs = Vec::new();
    let mut statuses: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    for row in truth(name) {
        let stream = row["tcp.stream"].clone();
        for (m, u) in split(&row["http.request.method"])
            .into_iter()
            .zip(split(&row["http.request.uri"]))
        {
            reqs.push((stream.clone(), m, u));
        }
        for c in split(&row["http.response.code"]) {
            let c: i32 = c.parse().unwrap();
            if !(100..200).contains(&c) || c == 101 {
                statuses.entry(stream.clone()).or_default().push(c);
            }
        }
    }
    (reqs, statuses)
}

#[test]
fn http1_captures_match_tshark() {
    if !corpus().exists() {
        eprintln!("SKIP: corpus not found at {}", corpus().display());
        return;
    }
    eprintln!(
        "{:<28} {:>8} {:>8} {:>9} {:>9}",
        "capture", "truth", "entries", "statuses", "errors"
    );
    for name in [
        "http1_keepalive",
        "http1_chunked",
        "http1_gzip",
        "http1_large_bodies",
        "http1_pipelining",
        "graphql_http",
    ] {
        let (entries, stats) = run(&format!("{name}.pcap"), 64 * 1024);
        let (reqs, statuses) = http_truth(name);
        let http: Vec<&Entry> = entries
            .iter()
            .filter(|e| e.protocol == "http" && e.method.is_some())
            .collect();
        eprintln!(
            "{:<28} {:>8} {:>8} {:>9} {:>9}",
            name,
            reqs.len(),
            http.len(),
            statuses.values().map(Vec::len).sum::<usize>(),
            stats.dissect_errors
        );
        assert_eq!(http.len(), reqs.len(), "{name}: one entry per request");
        // Per client connection, in order: same methods and targets as tshark.
        let mut ours: BTreeMap<u16, Vec<(String, String, Option<i32>)>> = BTreeMap::new();
        for e in &http {
            ours.entry(e.src.port).or_default().push((
                e.method.clone().unwrap(),
                e.path.clone().unwrap_or_default(),
                e.status,
            ));
        }
        let mut got: Vec<(String, String)> = ours
            .values()
            .flatten()
            .map(|(m, p, _)| (m.clone(), p.clone()))
            .collect();
        let mut want: Vec<(String, String)> = reqs
            .iter()
            .map(|(_, m, u)| (m.clone(), u.clone()))
            .collect();
        got.sort();
        want.sort();
        assert_eq!(got, want, "{name}: methods and targets");
        let mut got_status: Vec<i32> = http.iter().filter_map(|e| e.status).collect();
        let mut want_status: Vec<i32> = statuses.values().flatten().copied().collect();
        got_status.sort();
        want_status.sort();
        assert_eq!(got_status, want_status, "{name}: final statuses");
    }
}

#[test]
fn pipelined_requests_pair_in_order() {
    if !corpus().exists() {
        eprintln!("SKIP: corpus not found");
        return;
    }
    let (entries, _) = run("http1_pipelining.pcap", 64 * 1024);
    let (reqs, statuses) = http_truth("http1_pipelining");
    // For each stream, tshark's responses in order pair with its requests in order.
    for (stream, codes) in statuses {
        let paths: Vec<&String> = reqs
            .iter()
            .filter(|(s, _, _)| *s == stream)
            .map(|(_, _, u)| u)
            .collect();
        let port = entries
            .iter()
            .find(|e| Some(e.path.as_ref().unwrap()) == paths.first().copied())
            .map(|e| e.src.port);
        let mut ours: Vec<&Entry> = entries
            .iter()
            .filter(|e| Some(e.src.port) == port)
            .collect();
        ours.sort_by_key(|e| e.ts_us);
        let got: Vec<(String, i32)> = ours
            .iter()
            .map(|e| (e.path.clone().unwrap(), e.status.unwrap_or(0)))
            .collect();
        let want: Vec<(String, i32)> = paths.iter().map(|p| p.to_string()).zip(codes).collect();
        assert_eq!(got, want, "stream {stream}");
    }
}

#[test]
fn dns_matches_tshark() {
    if !corpus().exists() {
        eprintln!("SKIP: corpus not found");
        return;
    }
    for name in ["dns_udp", "dns_tcp"] {
        let (entries, _) = run(&format!("{name}.pcap"), 64 * 1024);
        let mut want = Vec::new();
        for row in truth(name) {
            if row["dns.flags.response"] == "1" {
                let q = split(&row["dns.qry.name"])
                    .first()
                    .cloned()
                    .unwrap_or_default();
                want.push((q, row["dns.flags.rcode"].parse::<i32>().unwrap_or(-1)));
            }
        }
        let mut got: Vec<(String, i32)> = entries
            .iter()
            .filter(|e| e.protocol == "dns")
            .map(|e| (e.path.clone().unwrap_or_default(), e.status.unwrap_or(-1)))
            .collect();
        assert!(
            entries.iter().all(|e| e.elapsed_us.is_some()),
            "{name}: every query answered"
        );
        got.sort();
        want.sort();
        assert_eq!(got, want, "{name}: query names and rcodes");
    }
}

#[test]
fn cluster_mix_http_and_dns_with_identities() {
    if !corpus().exists() {
        eprintln!("SKIP: corpus not found");
        return;
    }
    let ids = IdentityMap::load(&corpus().join("pcaps/cluster_mix.identities.json")).unwrap();
    let mut p = Pipeline::new(PipelineConfig {
        node: "node-a".into(),
        identities: ids,
        ..Default::default()
    });
    let mut r = CaptureReader::open(&corpus().join("pcaps/cluster_mix.pcap")).unwrap();
    while let Some(pkt) = r.next_packet().unwrap() {
        p.packet(pkt.ts_us, pkt.link, &pkt.data);
    }
    p.finish();
    let entries = p.take_entries();
    let http = entries.iter().filter(|e| e.protocol == "http").count();
    let dns = entries.iter().filter(|e| e.protocol == "dns").count();
    assert_eq!(
        (http, dns),
        (602, 111),
        "corpus README: 602 HTTP pairs, 111 DNS queries"
    );
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
}

#[test]
fn gzip_and_chunked_bodies_match_tshark_objects() {
    if !corpus().exists() {
        eprintln!("SKIP: corpus not found");
        return;
    }
    for name in ["http1_gzip", "http1_chunked"] {
        let (entries, _) = run(&format!("{name}.pcap"), 16 << 20);
        let text = std::fs::read_to_string(
            corpus()
                .join("truth")
                .join(format!("{name}.http_objects.tsv")),
        )
        .unwrap();
        let hashes: Vec<String> = entries
            .iter()
            .flat_map(|e| [&e.request_body, &e.response_body])
            .flatten()
            .map(|b| sha256_hex(b))
            .collect();
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split('\t').collect();
            assert!(
                hashes.iter().any(|h| h == cols[2]),
                "{name}: object {} ({} bytes) decoded",
                cols[0],
                cols[1]
            );
        }
    }
}

fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
