//! AMQP 0-9-1 against tshark: every method frame tshark decodes in `amqp_rabbitmq` (from
//! `truth/amqp_rabbitmq.json`, which keeps several frames of one packet apart, unlike the
//! `|`-joined fields TSV) must be in our entries, in the same order per connection and
//! channel, with the same sender, method, exchange, routing key, queue, delivery tag, reply
//! code/text, and for content-carrying methods the same body size and properties. Message
//! bodies are checked against what `helpers/amqp_client.py` published (tshark only shows
//! them as hex, clipped).

use std::collections::BTreeMap;

use serde_json::Value;

mod support;

use support::{corpus, run, skip, Conformance};
use wiretrail_proto::Entry;

const CAPTURE: &str = "amqp_rabbitmq";
const SERVER_PORT: u16 = 35672;

/// One method frame, as both sides describe it.
#[derive(Debug, Default, PartialEq)]
struct Method {
    sender: &'static str,
    name: String,
    exchange: Option<String>,
    routing_key: Option<String>,
    queue: Option<String>,
    delivery_tag: Option<String>,
    reply_code: Option<String>,
    reply_text: Option<String>,
    body_size: Option<String>,
    content_type: Option<String>,
    correlation_id: Option<String>,
    message_id: Option<String>,
}

/// Spec names, written out here so the test does not trust the dissector's table.
fn spec_name(class: &str, method: &str) -> String {
    let c = match class {
        "10" => "connection",
        "20" => "channel",
        "40" => "exchange",
        "50" => "queue",
        "60" => "basic",
        "85" => "confirm",
        "90" => "tx",
        _ => "?",
    };
    let m = match (class, method) {
        ("10", "10") => "start",
        ("10", "11") => "start-ok",
        ("10", "30") => "tune",
        ("10", "31") => "tune-ok",
        ("10", "40") | ("20", "10") => "open",
        ("10", "41") | ("20", "11") => "open-ok",
        ("10", "50") | ("20", "40") => "close",
        ("10", "51") | ("20", "41") => "close-ok",
        ("40" | "50", "10") => "declare",
        ("40" | "50", "11") => "declare-ok",
        ("50", "20") => "bind",
        ("50", "21") => "bind-ok",
        ("50", "30") => "purge",
        ("50", "31") => "purge-ok",
        ("50", "40") => "delete",
        ("50", "41") => "delete-ok",
        ("60", "10") => "qos",
        ("60", "11") => "qos-ok",
        ("60", "20") => "consume",
        ("60", "21") => "consume-ok",
        ("60", "30") => "cancel",
        ("60", "31") => "cancel-ok",
        ("60", "40") => "publish",
        ("60", "50") => "return",
        ("60", "60") => "deliver",
        ("60", "70") => "get",
        ("60", "71") => "get-ok",
        ("60", "72") => "get-empty",
        ("60", "80") => "ack",
        ("60", "90") => "reject",
        ("60", "120") => "nack",
        ("85" | "90", "10") => "select",
        ("85" | "90", "11") => "select-ok",
        ("90", "20") => "commit",
        ("90", "21") => "commit-ok",
        ("90", "30") => "rollback",
        ("90", "31") => "rollback-ok",
        _ => "?",
    };
    format!("{c}.{m}")
}

/// A string or number as text; empty = absent (tshark writes empty strings, we may not).
fn val(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) if s.is_empty() => None,
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

type Key = (u16, String);

/// tshark's method frames by (client port, channel), in capture order.
fn truth_methods() -> BTreeMap<Key, Vec<Method>> {
    let text = std::fs::read_to_string(corpus().join(format!("truth/{CAPTURE}.json"))).unwrap();
    let mut out: BTreeMap<Key, Vec<Method>> = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim().trim_end_matches(',');
        let Ok(pkt) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let port = |k: &str| pkt["tcp"][k].as_str().unwrap().parse::<u16>().unwrap();
        let (sp, dp) = (port("tcp.srcport"), port("tcp.dstport"));
        let (client, sender) = if sp == SERVER_PORT {
            (dp, "server")
        } else {
            (sp, "client")
        };
        let frames = match &pkt["amqp"] {
            Value::Array(a) => a.clone(),
            v => vec![v.clone()],
        };
        for f in frames {
            let channel = val(f.get("amqp.channel")).unwrap_or_default();
            let seq = out.entry((client, channel)).or_default();
            match f["amqp.type"].as_str() {
                Some("1") => {
                    let a = &f["amqp.method.arguments"];
                    let arg = |n: &str| val(a.get(format!("amqp.method.arguments.{n}")));
                    seq.push(Method {
                        sender,
                        name: spec_name(
                            f["amqp.method.class"].as_str().unwrap(),
                            f["amqp.method.method"].as_str().unwrap(),
                        ),
                        exchange: arg("exchange"),
                        routing_key: arg("routing_key"),
                        queue: arg("queue"),
                        delivery_tag: arg("delivery_tag"),
                        reply_code: arg("reply_code"),
                        reply_text: arg("reply_text"),
                        ..Default::default()
                    });
                }
                Some("2") => {
                    let m = seq.last_mut().expect("content header after a method");
                    let p = &f["amqp.header.properties"];
                    let prop = |n: &str| val(p.get(format!("amqp.method.properties.{n}")));
                    m.body_size = val(f.get("amqp.header.body-size"));
                    m.content_type = prop("content_type");
                    m.correlation_id = prop("correlation_id");
                    m.message_id = prop("message_id");
                }
                _ => {}
            }
        }
    }
    out.retain(|_, v| !v.is_empty());
    out
}

fn method_of(detail: &Value) -> Method {
    let props = &detail["properties"];
    Method {
        sender: if detail["sender"] == "server" {
            "server"
        } else {
            "client"
        },
        name: format!(
            "{}.{}",
            detail["class"].as_str().unwrap(),
            detail["method"].as_str().unwrap()
        ),
        exchange: val(detail.get("exchange")),
        routing_key: val(detail.get("routing_key")),
        queue: val(detail.get("queue")),
        delivery_tag: val(detail.get("delivery_tag")),
        reply_code: val(detail.get("reply_code")),
        reply_text: val(detail.get("reply_text")),
        body_size: val(detail.get("body_size")),
        content_type: val(props.get("content_type")),
        correlation_id: val(props.get("correlation_id")),
        message_id: val(props.get("message_id")),
    }
}

/// Our method frames grouped the same way: each entry gives its request and its reply,
/// ordered by capture time (ties by emission order).
fn our_methods(entries: &[Entry]) -> BTreeMap<Key, Vec<Method>> {
    let mut parts: Vec<(Key, i64, usize, Method)> = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        let sides = [
            (false, e.ts_us, e.request.as_deref()),
            (
                true,
                e.ts_us + e.elapsed_us.unwrap_or(0),
                e.response.as_deref(),
            ),
        ];
        for (reply, ts, detail) in sides {
            let Some(d) = detail else { continue };
            let d: Value = serde_json::from_str(d).unwrap();
            if reply && d["method"] == "close" {
                // A Channel/Connection.Close answering the request it interrupted: the same
                // frame is also the request of its own entry.
                continue;
            }
            let key = (e.src.port, d["channel"].to_string());
            parts.push((key, ts, i, method_of(&d)));
        }
    }
    parts.sort_by_key(|p| (p.1, p.2));
    let mut out: BTreeMap<Key, Vec<Method>> = BTreeMap::new();
    for (key, _, _, m) in parts {
        out.entry(key).or_default().push(m);
    }
    out
}

fn methods(entries: &[Entry], name: &str) -> Vec<Entry> {
    entries
        .iter()
        .filter(|e| e.method.as_deref() == Some(name))
        .cloned()
        .collect()
}

#[test]
fn amqp_rabbitmq_matches_tshark() {
    if skip() {
        return;
    }
    let (entries, stats) = run(CAPTURE, 1 << 20);
    let entries: Vec<Entry> = entries
        .into_iter()
        .filter(|e| e.protocol == "amqp")
        .collect();
    let truth = truth_methods();
    let ours = our_methods(&entries);
    let mut conf = Conformance::new("amqp", CAPTURE);
    for (key, want) in &truth {
        let got = ours.get(key).map(Vec::as_slice).unwrap_or_default();
        for (i, w) in want.iter().enumerate() {
            let what = format!("port {} channel {} #{i} {}", key.0, key.1, w.name);
            conf.check(&what, w, got.get(i));
        }
        for g in got.iter().skip(want.len()) {
            conf.mismatches
                .push(format!("port {} channel {}: extra {g:?}", key.0, key.1));
        }
    }
    for key in ours.keys().filter(|k| !truth.contains_key(*k)) {
        conf.mismatches
            .push(format!("extra connection/channel {key:?}"));
    }
    conf.print_and_assert();

    // counts.tsv: 45 client method frames, 40 server ones, 27 `-Ok`/Get-Empty replies.
    let count = |s: &str| ours.values().flatten().filter(|m| m.sender == s).count();
    assert_eq!((count("client"), count("server")), (45, 40));
    let paired = entries
        .iter()
        .filter_map(|e| serde_json::from_str::<Value>(e.response.as_deref()?).ok())
        .filter(|r| {
            let m = r["method"].as_str().unwrap_or_default();
            m.ends_with("-ok") || m == "get-empty"
        })
        .count();
    assert_eq!(paired, 27);
    assert_eq!(stats.dissect_errors, 0, "{stats:?}");

    // Bodies, as amqp_client.py sent them.
    let big: Vec<u8> = (0..400_000u32).map(|i| ((i * 13) & 0xFF) as u8).collect();
    let order = |i: u32| format!("{{\"order\":{i}}}").into_bytes();
    let bodies = |v: Vec<Entry>, response: bool| -> Vec<Vec<u8>> {
        v.into_iter()
            .map(|e| {
                let (b, t) = if response {
                    (e.response_body, e.response_body_truncated)
                } else {
                    (e.request_body, e.request_body_truncated)
                };
                assert!(!t);
                b.unwrap_or_default()
            })
            .collect()
    };
    let mut published: Vec<Vec<u8>> = (0..5).map(order).collect();
    published.extend([b"0.42".to_vec(), big.clone(), b"unroutable".to_vec()]);
    published.extend([b"in-tx".to_vec(), b"in-tx-2".to_vec()]);
    let publishes = methods(&entries, "basic.publish");
    assert_eq!(bodies(publishes.clone(), false), published);
    let paths: Vec<_> = publishes.iter().map(|e| e.path.clone().unwrap()).collect();
    assert_eq!(paths[0], "corpus.direct/orders");
    assert_eq!(paths[5], "corpus.topic/metrics.cpu.load");
    assert_eq!(paths[8], "corpus.q1");
    let first: Value = serde_json::from_str(publishes[0].request.as_deref().unwrap()).unwrap();
    assert_eq!(first["properties"]["headers"]["x-tenant"], "acme");
    assert_eq!(first["properties"]["headers"]["x-attempt"], 0);
    assert_eq!(first["properties"]["delivery_mode"], 2);
    // Deliveries: orders 2..4 and the big one (0 and 1 were taken by Basic.Get, 1 twice
    // because of the Nack with requeue).
    let mut delivered: Vec<Vec<u8>> = (2..5).map(order).collect();
    delivered.push(big.clone());
    assert_eq!(bodies(methods(&entries, "basic.deliver"), false), delivered);
    let gets = bodies(methods(&entries, "basic.get"), true);
    assert_eq!(gets, [order(0), order(1), order(1), b"0.42".to_vec()]);
    let returned = methods(&entries, "basic.return");
    assert_eq!(bodies(returned.clone(), false), [b"unroutable".to_vec()]);
    assert_eq!(returned[0].status_text.as_deref(), Some("NO_ROUTE"));
    // The passive declare answered by Channel.Close 404.
    let missing = methods(&entries, "queue.declare")
        .into_iter()
        .find(|e| e.path.as_deref() == Some("does.not.exist"))
        .unwrap();
    assert_eq!(missing.status, Some(404));
    assert!(missing.elapsed_us.is_some());

    // With the default 64 KiB cap the big body is cut and flagged.
    let (entries, _) = run(CAPTURE, 64 << 10);
    let big_pub = methods(&entries, "basic.publish").swap_remove(6);
    assert!(big_pub.request_body_truncated);
    assert_eq!(big_pub.request_body.as_deref(), Some(&big[..64 << 10]));
}

/// No other capture (HTTP, DNS, Redis, Kafka, TLS, PostgreSQL, the cluster mix) is taken
/// for AMQP.
#[test]
fn other_captures_make_no_amqp_entries() {
    if skip() {
        return;
    }
    let mut checked = 0;
    for f in std::fs::read_dir(corpus().join("pcaps")).unwrap() {
        let path = f.unwrap().path();
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        if path.extension().is_some_and(|e| e == "pcap") && name != CAPTURE {
            let (entries, _) = run(&name, 1024);
            assert!(!entries.iter().any(|e| e.protocol == "amqp"), "{name}");
            checked += 1;
        }
    }
    assert!(checked >= 20, "{checked} captures");
}
