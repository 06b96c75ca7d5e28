//! Kafka against tshark 4.0.17 (`truth/<capture>.fields.tsv`). Every request tshark lists
//! must match one of our entries on (api key, version, correlation id, client id) — tshark
//! decodes the request header even for versions it does not know — and every response must
//! be paired to its request. Where tshark also decodes the body (no "Unsupported",
//! "Malformed", "Unknown" or "Undecoded" in its Info column) the topic names and the status
//! (first non-zero `kafka.error`) must match too. tshark 4.0 cannot decode the newer versions
//! in `kafka_tansu` (53 malformed frames); there the test checks the capture's bytes against
//! what `helpers/kafka_clients.py` sent: the topics, the record counts and the rejected
//! first JoinGroup. Request counts per "Api vN" come from `counts.json`.

use std::collections::{BTreeMap, BTreeSet, HashMap};

mod support;

use serde_json::Value;
use support::{corpus, detail, run, skip, split, truth, Conformance};
use wiretrail_proto::Entry;

const SERVER_PORTS: [u16; 2] = [19092, 9092];

/// tshark's Kafka numbers for a capture (`counts.json`; cluster_mix keeps them per protocol).
fn counts(pcap: &str) -> Value {
    let all: Value =
        serde_json::from_str(&std::fs::read_to_string(corpus().join("truth/counts.json")).unwrap())
            .unwrap();
    let c = all
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["pcap"] == format!("{pcap}.pcap"))
        .unwrap()
        .clone();
    match c["detail"]["by_protocol"].get("kafka") {
        Some(k) => k.clone(),
        None => c,
    }
}

fn topics_of(e: &Entry) -> BTreeSet<String> {
    e.path
        .as_deref()
        .map(|p| p.split(',').map(str::to_string).collect())
        .unwrap_or_default()
}

/// Runs one capture, prints its conformance row and returns our Kafka entries.
fn conform(name: &str) -> Vec<Entry> {
    let (entries, stats) = run(name, 64 << 10);
    let ours: Vec<Entry> = entries
        .into_iter()
        .filter(|e| e.protocol == "kafka")
        .collect();
    let mut by_key: HashMap<(u16, i64), &Entry> = HashMap::new();
    for e in &ours {
        let corr = detail(&e.request)["correlation_id"].as_i64().unwrap_or(-1);
        by_key.entry((e.src.port, corr)).or_insert(e);
    }
    let mut c = Conformance::new("kafka", name);
    for row in truth(name) {
        let (Ok(sp), Ok(dp)) = (
            row["tcp.srcport"].parse::<u16>(),
            row["tcp.dstport"].parse::<u16>(),
        ) else {
            continue;
        };
        if row["kafka.correlation_id"].is_empty() {
            continue;
        }
        let info = &row["_ws.col.Info"];
        let decoded = !["Unsupported", "Malformed", "Unknown", "Undecoded"]
            .iter()
            .any(|w| info.contains(w));
        let topics: BTreeSet<String> = split(&row["kafka.topic_name"]).into_iter().collect();
        let corrs = split(&row["kafka.correlation_id"]);
        assert_eq!(corrs.len(), 1, "one PDU per frame in this corpus");
        let corr: i64 = corrs[0].parse().unwrap();
        let frame = &row["frame.number"];
        if SERVER_PORTS.contains(&dp) {
            let want = (
                row["kafka.api_key"].clone(),
                row["kafka.api_version"].clone(),
                corr,
                row["kafka.client_id"].clone(),
                decoded.then_some(topics),
            );
            let got = by_key.get(&(sp, corr)).map(|e| {
                let r = detail(&e.request);
                (
                    r["api_key"].to_string(),
                    r["api_version"].to_string(),
                    r["correlation_id"].as_i64().unwrap_or(-1),
                    r["client_id"].as_str().unwrap_or_default().to_string(),
                    decoded.then(|| topics_of(e)),
                )
            });
            c.check(&format!("request frame {frame}"), &want, got.as_ref());
        } else if SERVER_PORTS.contains(&sp) {
            let errors = split(&row["kafka.error"]);
            let decoded = decoded && !errors.is_empty();
            let status = errors
                .iter()
                .map(|e| e.parse::<i32>().unwrap())
                .find(|e| *e != 0)
                .unwrap_or(0);
            let want = (corr, decoded.then_some((status, topics)));
            let got = by_key
                .get(&(dp, corr))
                .filter(|e| e.response_size > 0)
                .map(|e| {
                    (
                        corr,
                        decoded.then(|| (e.status.unwrap_or(-1), topics_of(e))),
                    )
                });
            c.check(&format!("response frame {frame}"), &want, got.as_ref());
        }
    }
    c.print_and_assert();
    // KAFKA_DUMP=1 prints our entries, for eyeballing against the capture.
    if std::env::var_os("KAFKA_DUMP").is_some() {
        for e in &ours {
            eprintln!(
                "{:?} {:?} {:?} {:?} {:?} {} {} {:?} {:?}",
                e.method,
                e.path,
                e.status,
                e.status_text,
                e.elapsed_us,
                e.request_size,
                e.response_size,
                e.request,
                e.response
            );
        }
    }

    // Counts against tshark's: requests, responses, and requests per "Api vN".
    let t = counts(name);
    let requests = ours.iter().filter(|e| e.method.is_some()).count();
    let responses = ours.iter().filter(|e| e.response_size > 0).count();
    assert_eq!(requests as u64, t["requests"].as_u64().unwrap(), "{name}");
    assert_eq!(responses as u64, t["responses"].as_u64().unwrap(), "{name}");
    let mut by_api: BTreeMap<String, u64> = BTreeMap::new();
    for e in &ours {
        let v = detail(&e.request)["api_version"].clone();
        let api = format!("{} v{v}", e.method.as_deref().unwrap_or("?"));
        *by_api.entry(api).or_default() += 1;
    }
    let want: BTreeMap<String, u64> = t["detail"]["requests_by_api"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_u64().unwrap()))
        .collect();
    assert_eq!(by_api, want, "{name}: requests per API and version");
    // Every request of these clients is answered, and nothing failed to parse.
    assert!(
        ours.iter().all(|e| e.elapsed_us.is_some()),
        "{name}: all paired"
    );
    assert_eq!(stats.dissect_errors, 0, "{name}: dissector errors");
    ours
}

/// Sum of the records per topic in Produce requests.
fn produced(ours: &[Entry]) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for e in ours
        .iter()
        .filter(|e| e.method.as_deref() == Some("Produce"))
    {
        for t in detail(&e.request)["topics"].as_array().unwrap() {
            *out.entry(t["name"].as_str().unwrap().to_string())
                .or_default() += t["records"].as_u64().unwrap();
        }
    }
    out
}

fn paths(ours: &[Entry], method: &str) -> Vec<String> {
    ours.iter()
        .filter(|e| e.method.as_deref() == Some(method))
        .map(|e| e.path.clone().unwrap_or_default())
        .collect()
}

#[test]
fn kafka_tansu() {
    if skip() {
        return;
    }
    let ours = conform("kafka_tansu");
    // tshark cannot read these versions: check against what kafka_clients.py did.
    assert_eq!(paths(&ours, "CreateTopics"), ["orders,events,scratch"]);
    assert_eq!(paths(&ours, "DeleteTopics"), ["scratch"]);
    let topics: BTreeSet<String> = ours.iter().flat_map(topics_of).collect();
    assert!(topics.is_subset(&["orders", "events", "scratch"].map(String::from).into()));
    // kafka-python: 6 to orders, 5 gzip to events; librdkafka: 10 to orders, 1 big to events.
    let want: BTreeMap<String, u64> = [("events".into(), 6), ("orders".into(), 16)].into();
    assert_eq!(produced(&ours), want);
    for e in ours.iter().filter(|e| e.method.as_deref() == Some("Fetch")) {
        assert!(
            ["orders", "events"].contains(&e.path.as_deref().unwrap_or_default()),
            "{:?}",
            e.path
        );
    }
    let joins: Vec<_> = ours
        .iter()
        .filter(|e| e.method.as_deref() == Some("JoinGroup"))
        .map(|e| (e.status, e.status_text.as_deref()))
        .collect();
    assert_eq!(
        joins,
        [(Some(79), Some("MEMBER_ID_REQUIRED")), (Some(0), None)]
    );
    // The consumer group fetched the 16 records of `orders`, the assigned consumer `events`.
    let mut fetched: BTreeMap<String, u64> = BTreeMap::new();
    for e in ours.iter().filter(|e| e.method.as_deref() == Some("Fetch")) {
        for t in detail(&e.response)["topics"].as_array().unwrap() {
            for p in t["partitions"].as_array().unwrap() {
                *fetched
                    .entry(t["name"].as_str().unwrap().into())
                    .or_default() += p["records"].as_u64().unwrap();
            }
        }
    }
    assert_eq!(fetched, want, "records fetched per topic");
}

#[test]
fn kafka_tansu_legacy_versions() {
    if skip() {
        return;
    }
    let ours = conform("kafka_tansu_legacy_versions");
    let want: BTreeMap<String, u64> = [("legacy".into(), 12)].into();
    assert_eq!(produced(&ours), want);
}

#[test]
fn kafka_kcat_apiversions() {
    if skip() {
        return;
    }
    let ours = conform("kafka_kcat_apiversions");
    assert!(ours
        .iter()
        .all(|e| e.method.as_deref() == Some("ApiVersions")));
}

#[test]
fn cluster_mix_kafka() {
    if skip() {
        return;
    }
    let ours = conform("cluster_mix");
    assert!(ours.iter().all(|e| e.dst.port == 9092));
}

/// The probe claims no flow of the other captures (HTTP/1, HTTP/2, gRPC, TLS, AMQP,
/// PostgreSQL, Redis, DNS), whatever dissectors exist for them.
#[test]
fn no_kafka_in_other_captures() {
    if skip() {
        return;
    }
    let mut names: Vec<String> = std::fs::read_dir(corpus().join("pcaps"))
        .unwrap()
        .filter_map(|d| {
            let name = d.ok()?.file_name().into_string().ok()?;
            name.strip_suffix(".pcap").map(str::to_string)
        })
        .filter(|n| !n.starts_with("kafka_") && n != "cluster_mix")
        .collect();
    names.sort();
    assert!(names.len() >= 20);
    for name in names {
        let (entries, _) = run(&name, 1024);
        let n = entries.iter().filter(|e| e.protocol == "kafka").count();
        assert_eq!(n, 0, "{name}: Kafka entries");
    }
}
