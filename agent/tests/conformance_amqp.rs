//! AMQP 0-9-1 against tshark (`truth/amqp_rabbitmq.fields.tsv`): every method frame, per
//! direction and in order — class and method, and the exchange, routing key, queue and
//! delivery tag arguments — plus the method counts of `counts.json` and what
//! `helpers/amqp_client.py` published.

mod support;

use std::collections::BTreeMap;

use serde_json::Value;
use support::{corpus, run, skip, split, truth, Conformance};

const SERVER: &str = "35672";

/// (direction, class, method) sequence and the argument values per direction.
#[derive(Debug, Default, PartialEq)]
struct Side {
    methods: Vec<(u16, u16)>,
    args: BTreeMap<&'static str, Vec<String>>,
}

const ARGS: [(&str, &str); 4] = [
    ("exchange", "amqp.method.arguments.exchange"),
    ("routing_key", "amqp.method.arguments.routing_key"),
    ("queue", "amqp.method.arguments.queue"),
    ("delivery_tag", "amqp.method.arguments.delivery_tag"),
];

#[test]
fn amqp_matches_tshark() {
    if skip() {
        return;
    }
    let name = "amqp_rabbitmq";
    let mut want: [Side; 2] = Default::default();
    for row in truth(name) {
        let d = usize::from(row["tcp.srcport"] == SERVER);
        let types = split(&row["amqp.type"]);
        let classes = split(&row["amqp.method.class"]);
        let methods = split(&row["amqp.method.method"]);
        let n = types.iter().filter(|t| *t == "1").count();
        assert_eq!(classes.len(), n, "frame {}", row["frame.number"]);
        for (c, m) in classes.iter().zip(&methods) {
            want[d]
                .methods
                .push((c.parse().unwrap(), m.parse().unwrap()));
        }
        for (k, col) in ARGS {
            let vals = split(&row[col]).into_iter().filter(|v| !v.is_empty());
            want[d].args.entry(k).or_default().extend(vals);
        }
    }
    let (entries, stats) = run(name, 1 << 20);
    let mut frames: Vec<(usize, u64, Value)> = Vec::new();
    for e in entries.iter().filter(|e| e.protocol == "amqp") {
        for j in [&e.request, &e.response].into_iter().flatten() {
            let v: Value = serde_json::from_str(j).unwrap();
            let d = usize::from(v["from"] == "server");
            frames.push((d, v["seq"].as_u64().unwrap(), v));
        }
    }
    frames.sort_by_key(|(d, seq, _)| (*d, *seq));
    let mut got: [Side; 2] = Default::default();
    for (d, _, v) in &frames {
        got[*d].methods.push((
            v["class_id"].as_u64().unwrap() as u16,
            v["method_id"].as_u64().unwrap() as u16,
        ));
        for (k, _) in ARGS {
            let val = match &v[k] {
                Value::String(s) if !s.is_empty() => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            };
            got[*d].args.entry(k).or_default().extend(val);
        }
    }
    let mut c = Conformance::new("amqp", name);
    for d in 0..2 {
        let side = if d == 0 { "client" } else { "server" };
        for (i, m) in want[d].methods.iter().enumerate() {
            c.check(&format!("{side} method {i}"), m, got[d].methods.get(i));
        }
        for (k, _) in ARGS {
            let mut w = want[d].args.get(k).cloned().unwrap_or_default();
            let mut g = got[d].args.get(k).cloned().unwrap_or_default();
            w.sort();
            g.sort();
            c.check(&format!("{side} {k} values"), &w, Some(&g));
        }
        if got[d].methods.len() != want[d].methods.len() {
            c.mismatches.push(format!(
                "{side}: {} method frames, tshark {}",
                got[d].methods.len(),
                want[d].methods.len()
            ));
        }
    }
    c.print_and_assert();
    assert_eq!(stats.dissect_errors, 0);
    // Method counts by name equal counts.json.
    let counts: Value =
        serde_json::from_str(&std::fs::read_to_string(corpus().join("truth/counts.json")).unwrap())
            .unwrap();
    let entry = counts
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["pcap"] == "amqp_rabbitmq.pcap")
        .unwrap();
    for (d, key) in [(0, "client_methods"), (1, "server_methods")] {
        let mut ours: BTreeMap<String, u64> = BTreeMap::new();
        for (fd, _, v) in &frames {
            if *fd == d {
                // counts.json spells methods `Basic.Get-Ok`.
                let n = v["method"].as_str().unwrap();
                let title = n
                    .split('.')
                    .map(|p| {
                        p.split('-')
                            .map(|w| {
                                let mut c = w.chars();
                                c.next().map_or(String::new(), |f| {
                                    f.to_uppercase().collect::<String>() + c.as_str()
                                })
                            })
                            .collect::<Vec<_>>()
                            .join("-")
                    })
                    .collect::<Vec<_>>()
                    .join(".");
                *ours.entry(title).or_default() += 1;
            }
        }
        let want: BTreeMap<String, u64> =
            serde_json::from_value(entry["detail"][key].clone()).unwrap();
        assert_eq!(ours, want, "{key}");
    }
    // What the client published: 10 messages, bodies joined from their body frames; the one
    // to an unroutable key comes back as basic.return NO_ROUTE.
    let published: Vec<_> = entries
        .iter()
        .filter(|e| e.method.as_deref() == Some("basic.publish"))
        .collect();
    assert_eq!(published.len(), 10);
    assert!(published.iter().all(|e| e.request_body.is_some()));
    let ret = entries
        .iter()
        .find(|e| e.method.as_deref() == Some("basic.return"))
        .unwrap();
    assert_eq!(
        (ret.status, ret.status_text.as_deref()),
        (Some(312), Some("NO_ROUTE"))
    );
}
