//! Redaction on real entries: every corpus capture's entries, mutated (fields cut short,
//! bytes flipped, JSON punctuation, digits and secrets spliced in), go through the
//! redactor without a panic; detail that was valid JSON stays valid JSON; a second pass
//! changes nothing. A fixed seed keeps the run reproducible.

use wiretrail_agent::Redactor;
use wiretrail_proto::Entry;

mod support;

use support::mutate::Rng;

const SPLICES: [&[u8]; 12] = [
    b"\"",
    b"\\",
    b"{",
    b"}]",
    b"\"password\": ",
    b"\"token\":\"x",
    b"?token=",
    b"&secret=s3",
    b"4111111111111111",
    b"5555 5555 5555 4444",
    b"=",
    b"\xff\xfe",
];

fn mutate_bytes(b: &mut Vec<u8>, rng: &mut Rng) {
    for _ in 0..1 + rng.below(4) {
        match rng.below(4) {
            0 if !b.is_empty() => b.truncate(rng.below(b.len())),
            1 if !b.is_empty() => {
                let i = rng.below(b.len());
                b[i] ^= 1 << rng.below(8);
            }
            _ => {
                let at = rng.below(b.len() + 1);
                let s = SPLICES[rng.below(SPLICES.len())];
                b.splice(at..at, s.iter().copied());
            }
        }
    }
}

fn mutate_string(s: &mut String, rng: &mut Rng) {
    let mut b = std::mem::take(s).into_bytes();
    mutate_bytes(&mut b, rng);
    *s = String::from_utf8_lossy(&b).into_owned();
}

fn mutate_entry(e: &mut Entry, rng: &mut Rng) {
    for h in [&mut e.request_headers, &mut e.response_headers]
        .into_iter()
        .flatten()
    {
        for (n, v) in h.iter_mut() {
            if rng.below(3) == 0 {
                mutate_string(v, rng);
            }
            if rng.below(8) == 0 {
                *n = ["Authorization", "cookie", "Set-Cookie", "x-api-key"][rng.below(4)].into();
            }
        }
    }
    for b in [&mut e.request_body, &mut e.response_body]
        .into_iter()
        .flatten()
    {
        mutate_bytes(b, rng);
    }
    for s in [&mut e.path, &mut e.request, &mut e.response]
        .into_iter()
        .flatten()
    {
        if rng.below(2) == 0 {
            mutate_string(s, rng);
        }
    }
}

#[test]
fn redaction_never_panics_on_mutated_entries() {
    if support::skip() {
        return;
    }
    let redactors = [
        Redactor::default(),
        Redactor::default()
            .with_header("x-api-key")
            .with_json_key("id")
            .unwrap()
            .with_regex(r"(?i)bearer\s+[a-z0-9._~+/-]+=*")
            .unwrap(),
    ];
    let names = [
        "cluster_mix",
        "graphql_http",
        "http1_chunked",
        "http1_gzip",
        "http1_large_bodies",
        "http2_h2c_prior_knowledge",
        "grpc_unary_streaming",
        "redis_cli",
        "redis_pipeline",
        "http1_keepalive",
        "pgsql_psycopg3",
        "kafka_tansu",
        "dns_udp",
        "amqp_rabbitmq",
    ];
    let (mut variants, mut redacted) = (0u64, 0u64);
    let corpus: Vec<_> = names
        .iter()
        .map(|name| (name, support::run(name, 4096).0))
        .collect();
    for seed in [
        0x00c0_ffee_5eed_0007,
        0x0bad_cafe_0000_0042,
        0x1234_5678_9abc_def1,
        7,
        0xdead_beef,
        0x5151_5151_0101_0101,
    ] {
        let mut rng = Rng(seed);
        for (name, entries) in &corpus {
            assert!(!entries.is_empty(), "{name}: no entries");
            for e in entries {
                for v in 0..3 {
                    let mut m = e.clone();
                    if v > 0 {
                        mutate_entry(&mut m, &mut rng);
                    }
                    let valid: Vec<bool> = [&m.request, &m.response]
                        .iter()
                        .map(|d| {
                            d.as_deref().is_some_and(|d| {
                                serde_json::from_str::<serde_json::Value>(d).is_ok()
                            })
                        })
                        .collect();
                    let r = &redactors[rng.below(redactors.len())];
                    let mut c = Default::default();
                    r.redact(&mut m, &mut c);
                    redacted += c.total();
                    for (d, was_valid) in [&m.request, &m.response].iter().zip(valid) {
                        if was_valid {
                            let d = d.as_deref().unwrap();
                            assert!(
                                serde_json::from_str::<serde_json::Value>(d).is_ok(),
                                "{name}: detail no longer JSON: {d}"
                            );
                        }
                    }
                    let once = m.clone();
                    r.redact(&mut m, &mut Default::default());
                    assert_eq!(m, once, "{name}: a second pass changed the entry");
                    variants += 1;
                }
            }
        }
    }
    eprintln!("{variants} entries (two thirds mutated) redacted without a panic; {redacted} values replaced");
    assert!(variants > 30000, "{variants}");
    // A figure for the report (no assertion on time): the default rules over the unmutated
    // entries, 20 rounds.
    let r = Redactor::default();
    let started = std::time::Instant::now();
    let mut n = 0u64;
    for _ in 0..20 {
        for (_, entries) in &corpus {
            for e in entries {
                let mut m = e.clone();
                r.redact(&mut m, &mut Default::default());
                n += 1;
            }
        }
    }
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "default redaction (clone included): {n} entries in {secs:.3} s = {:.0} entries/s",
        n as f64 / secs
    );
    assert!(redacted > 0);
}
