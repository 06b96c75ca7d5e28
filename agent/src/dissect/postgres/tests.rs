use serde_json::Value;
use wiretrail_proto::Entry;

use super::*;

fn msg(t: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![t];
    m.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
    m.extend_from_slice(body);
    m
}

fn cs(parts: &[&[u8]]) -> Vec<u8> {
    parts
        .iter()
        .flat_map(|p| p.iter().copied().chain([0]))
        .collect()
}

fn startup(params: &[&[u8]]) -> Vec<u8> {
    let mut body = 196_608u32.to_be_bytes().to_vec();
    body.extend(cs(params));
    body.push(0);
    let mut m = (body.len() as u32 + 4).to_be_bytes().to_vec();
    m.extend(body);
    m
}

fn auth(t: i32, extra: &[u8]) -> Vec<u8> {
    let mut b = t.to_be_bytes().to_vec();
    b.extend_from_slice(extra);
    msg(b'R', &b)
}

fn ready() -> Vec<u8> {
    msg(b'Z', b"I")
}

fn error(code: &str, text: &str) -> Vec<u8> {
    let mut b = Vec::new();
    for (k, v) in [(b'S', "ERROR"), (b'V', "ERROR"), (b'C', code), (b'M', text)] {
        b.push(k);
        b.extend(cs(&[v.as_bytes()]));
    }
    b.push(0);
    msg(b'E', &b)
}

fn row_description(cols: &[&str]) -> Vec<u8> {
    let mut b = (cols.len() as i16).to_be_bytes().to_vec();
    for c in cols {
        b.extend(cs(&[c.as_bytes()]));
        b.extend([0u8; 18]);
    }
    msg(b'T', &b)
}

fn parser() -> Box<dyn Parser> {
    Postgres.new_stream(&DissectConfig {
        body_cap: 1024,
        ..Default::default()
    })
}

/// Feeds (dir, bytes) in order, each chunk `step` bytes at a time (0 = whole).
fn feed(p: &mut dyn Parser, script: &[(Dir, Vec<u8>)], step: usize) -> Vec<Entry> {
    let mut out = Vec::new();
    for (i, (dir, bytes)) in script.iter().enumerate() {
        let step = if step == 0 { bytes.len().max(1) } else { step };
        for c in bytes.chunks(step) {
            p.data(*dir, 1000 + i as i64 * 10, c, &mut out);
        }
    }
    p.end(&mut out);
    out
}

fn json(s: &Option<String>) -> Value {
    serde_json::from_str(s.as_deref().unwrap_or("null")).unwrap()
}

fn login() -> Vec<(Dir, Vec<u8>)> {
    vec![
        (
            Dir::Request,
            startup(&[b"user", b"alice", b"database", b"shop"]),
        ),
        (Dir::Response, auth(3, b"")),
        (Dir::Request, msg(b'p', b"hunter2\0")),
        (
            Dir::Response,
            [
                auth(0, b""),
                msg(b'S', b"server_version\x0015.1\0"),
                ready(),
            ]
            .concat(),
        ),
    ]
}

#[test]
fn probes_startup_packets_only() {
    let s = startup(&[b"user", b"u"]);
    assert_eq!(Postgres.probe_stream(&s), Probe::Client);
    assert_eq!(Postgres.probe_stream(&s[..6]), Probe::NeedMore);
    assert_eq!(Postgres.probe_stream(&s[..s.len() - 1]), Probe::NeedMore);
    assert_eq!(
        Postgres.probe_stream(&startup(&[b"database", b"d"])),
        Probe::No
    );
    let ssl = [0, 0, 0, 8, 4, 210, 22, 47];
    assert_eq!(Postgres.probe_stream(&ssl), Probe::Client);
    assert_eq!(
        Postgres.probe_stream(&msg(b'Q', b"select 1\0")),
        Probe::Client
    );
    let parse = msg(b'P', b"\0SELECT $1\0\0\x01\0\0\0\x17");
    assert_eq!(Postgres.probe_stream(&parse), Probe::Client);
    for other in [
        &b"GET / HTTP/1.1\r\n"[..],
        b"POST /x HTTP/1.1\r\n",
        b"PUT",
        b"*1\r\n$4\r\nPING\r\n",
        b"\x16\x03\x01\x02\x00",
        // Kafka Metadata v0 (api key 3, version 0) looks like protocol 3.0 at first.
        b"\0\0\0\x15\0\x03\0\0\0\0\0\x01\0\x03abc\0\0\0\0",
        b"Q\0\0\0\x05\0",
    ] {
        assert_eq!(Postgres.probe_stream(other), Probe::No, "{other:?}");
    }
}

#[test]
fn startup_then_simple_query_in_any_split() {
    let mut script = login();
    script.push((
        Dir::Request,
        msg(b'Q', b"select 1; insert into t values (1)\0"),
    ));
    script.push((
        Dir::Response,
        [
            row_description(&["?column?"]),
            msg(b'D', b"\0\x01\0\0\0\x011"),
            msg(b'C', b"SELECT 1\0"),
            msg(b'C', b"INSERT 0 1\0"),
            ready(),
        ]
        .concat(),
    ));
    let whole = feed(parser().as_mut(), &script, 0);
    for step in [1, 2, 3, 7] {
        assert_eq!(feed(parser().as_mut(), &script, step), whole, "step {step}");
    }
    assert_eq!(whole.len(), 2);
    let st = &whole[0];
    assert_eq!(st.method.as_deref(), Some("startup"));
    assert_eq!(st.path.as_deref(), Some("shop"));
    assert_eq!(st.status, Some(0));
    let all = format!("{:?}", st);
    assert!(!all.contains("hunter2"), "password kept: {all}");
    assert_eq!(json(&st.response)["auth"], "CleartextPassword");
    let q = &whole[1];
    assert_eq!(q.method.as_deref(), Some("SELECT"));
    assert_eq!(q.status, Some(0));
    assert_eq!(q.elapsed_us, Some(10));
    let r = json(&q.response);
    assert_eq!(
        r["command_tags"],
        serde_json::json!(["SELECT 1", "INSERT 0 1"])
    );
    assert_eq!(r["rows"], 1);
    assert_eq!(r["columns"], serde_json::json!(["?column?"]));
}

#[test]
fn ssl_accepted_means_upgraded() {
    let mut p = parser();
    let mut out = Vec::new();
    p.data(Dir::Request, 1, &[0, 0, 0, 8, 4, 210, 22, 47], &mut out);
    p.data(Dir::Response, 2, b"S\x16\x03\x03", &mut out);
    p.data(Dir::Request, 3, b"\x16\x03\x01\x02\x00\x01", &mut out);
    assert!(p.upgraded());
    assert_eq!(out.len(), 1);
    assert_eq!(json(&out[0].response)["encryption_response"], "S");
    assert_eq!(p.errors(), 0);
}

#[test]
fn extended_errors_skip_to_sync() {
    let mut script = login();
    // A Parse that fails, with nothing executed behind it.
    script.push((
        Dir::Request,
        [msg(b'P', b"s1\0selec 1\0\0\0"), msg(b'S', b"")].concat(),
    ));
    script.push((
        Dir::Response,
        [error("42601", "syntax error"), ready()].concat(),
    ));
    // Two pipelined Executes before one Sync; the first fails, the second is skipped.
    let batch = [
        msg(b'P', b"\0SELECT 1/$1\0\0\0"),
        msg(b'B', b"\0\0\0\x01\0\0\0\x01\0\0\0\x010\0\0"),
        msg(b'E', b"\0\0\0\0\0"),
        msg(b'B', b"p2\0\0\0\0\0\x01\0\0\0\x011\0\0"),
        msg(b'E', b"p2\0\0\0\0\0"),
        msg(b'S', b""),
    ];
    script.push((Dir::Request, batch.concat()));
    script.push((
        Dir::Response,
        [
            msg(b'1', b""),
            msg(b'2', b""),
            error("22012", "division by zero"),
            ready(),
        ]
        .concat(),
    ));
    let out = feed(parser().as_mut(), &script, 0);
    assert_eq!(out.len(), 4, "{out:#?}");
    assert_eq!(out[1].path.as_deref(), Some("selec 1"));
    assert_eq!(out[1].method.as_deref(), Some("SELEC"));
    assert_eq!(out[1].status_text.as_deref(), Some("42601"));
    assert_eq!(json(&out[1].request)["statement"], "s1");
    assert_eq!(out[2].path.as_deref(), Some("SELECT 1/$1"));
    assert_eq!(out[2].status_text.as_deref(), Some("22012"));
    assert_eq!(
        json(&out[2].request)["parameters"],
        serde_json::json!(["0"])
    );
    assert_eq!(json(&out[3].request)["portal"], "p2");
    assert_eq!(json(&out[3].response)["skipped"], true);
}

#[test]
fn oversized_length_stops_the_connection() {
    let mut script = login();
    script.push((Dir::Request, [b'Q', 0x7f, 0xff, 0xff, 0xff, b's'].to_vec()));
    script.push((Dir::Request, msg(b'Q', b"select 1\0")));
    let mut p = parser();
    let out = feed(p.as_mut(), &script, 0);
    assert_eq!(p.errors(), 1);
    assert_eq!(out.len(), 1, "only the startup");
}

#[test]
fn big_rows_stream_and_gaps_inside_them_resync() {
    let mut script = login();
    script.push((Dir::Request, msg(b'Q', b"select big\0")));
    let mut row = b"\0\x01".to_vec();
    row.extend((300_000u32).to_be_bytes());
    row.extend(vec![b'x'; 300_000]);
    let mut resp = [row_description(&["big"]), msg(b'D', &row)].concat();
    let tail = [msg(b'C', b"SELECT 1\0"), ready()].concat();
    let mut p = parser();
    let mut out = feed_no_end(p.as_mut(), &script);
    // Deliver the row's first 1000 bytes, lose 5000 inside it, then the rest.
    let rest = resp.split_off(1000);
    p.data(Dir::Response, 5000, &resp, &mut out);
    p.gap(Dir::Response, 5000, &mut out);
    p.data(Dir::Response, 5001, &rest[5000..], &mut out);
    p.data(Dir::Response, 5002, &tail, &mut out);
    p.end(&mut out);
    assert_eq!(out.len(), 2);
    assert_eq!(out[1].status, Some(0));
    assert_eq!(json(&out[1].response)["rows"], 1);
    assert_eq!(p.errors(), 1);
}

fn feed_no_end(p: &mut dyn Parser, script: &[(Dir, Vec<u8>)]) -> Vec<Entry> {
    let mut out = Vec::new();
    for (i, (dir, bytes)) in script.iter().enumerate() {
        p.data(*dir, 1000 + i as i64 * 10, bytes, &mut out);
    }
    out
}

#[test]
fn unanswered_queries_are_one_way() {
    let mut script = login();
    script.push((Dir::Request, msg(b'Q', b"select pg_sleep(100)\0")));
    let out = feed(parser().as_mut(), &script, 0);
    assert_eq!(out.len(), 2);
    assert_eq!(out[1].elapsed_us, None);
    assert_eq!(out[1].status, None);
    assert_eq!(out[1].method.as_deref(), Some("SELECT"));
}

#[test]
fn random_bytes_never_panic() {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let base: Vec<(Dir, Vec<u8>)> = login();
    for _ in 0..2000 {
        let mut p = parser();
        let mut out = Vec::new();
        for (dir, bytes) in &base {
            let mut b = bytes.clone();
            let i = next() as usize % b.len();
            b[i] = next() as u8;
            let cut = next() as usize % (b.len() + 1);
            p.data(*dir, 1, &b[..cut], &mut out);
            let junk: Vec<u8> = (0..next() % 64).map(|_| next() as u8).collect();
            p.data(
                if next() % 2 == 0 {
                    Dir::Request
                } else {
                    Dir::Response
                },
                2,
                &junk,
                &mut out,
            );
        }
        p.end(&mut out);
    }
}
