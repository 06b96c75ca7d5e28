use super::*;

fn frame(ty: u8, channel: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![ty];
    f.extend_from_slice(&channel.to_be_bytes());
    f.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    f.extend_from_slice(payload);
    f.push(FRAME_END);
    f
}

fn shortstr(s: &str) -> Vec<u8> {
    let mut v = vec![s.len() as u8];
    v.extend_from_slice(s.as_bytes());
    v
}

fn method(channel: u16, class: u16, method: u16, args: &[u8]) -> Vec<u8> {
    let mut p = class.to_be_bytes().to_vec();
    p.extend_from_slice(&method.to_be_bytes());
    p.extend_from_slice(args);
    frame(1, channel, &p)
}

fn publish(channel: u16, exchange: &str, rk: &str, body: &[u8], frame_body: usize) -> Vec<u8> {
    let mut args = vec![0, 0];
    args.extend(shortstr(exchange));
    args.extend(shortstr(rk));
    args.push(0);
    let mut f = method(channel, 60, 40, &args);
    // content-type + headers {"x-tenant": "acme", "n": 7i32} + correlation id
    let mut table = shortstr("x-tenant");
    table.push(b'S');
    table.extend_from_slice(&4u32.to_be_bytes());
    table.extend_from_slice(b"acme");
    table.extend(shortstr("n"));
    table.push(b'I');
    table.extend_from_slice(&7u32.to_be_bytes());
    let mut h = vec![0, 60, 0, 0];
    h.extend_from_slice(&(body.len() as u64).to_be_bytes());
    h.extend_from_slice(&0xA400u16.to_be_bytes());
    h.extend(shortstr("text/plain"));
    h.extend_from_slice(&(table.len() as u32).to_be_bytes());
    h.extend(table);
    h.extend(shortstr("corr-1"));
    f.extend(frame(2, channel, &h));
    for chunk in body.chunks(frame_body) {
        f.extend(frame(3, channel, chunk));
    }
    f
}

fn parser(cap: usize) -> AmqpParser {
    AmqpParser {
        cap,
        ..Default::default()
    }
}

/// The conversation used by several tests: (direction, bytes).
fn conversation() -> Vec<(Dir, Vec<u8>)> {
    let mut tune = 2047u16.to_be_bytes().to_vec();
    tune.extend_from_slice(&131072u32.to_be_bytes());
    tune.extend_from_slice(&0u16.to_be_bytes());
    let mut start = vec![0, 9, 0, 0, 0, 0];
    start.extend_from_slice(&5u32.to_be_bytes());
    start.extend_from_slice(b"PLAIN");
    start.extend_from_slice(&5u32.to_be_bytes());
    start.extend_from_slice(b"en_US");
    let mut start_ok = vec![0, 0, 0, 0];
    start_ok.extend(shortstr("PLAIN"));
    start_ok.extend_from_slice(&12u32.to_be_bytes());
    start_ok.extend_from_slice(b"\0guest\0guest");
    start_ok.extend(shortstr("en_US"));
    let mut get = vec![0, 0];
    get.extend(shortstr("q1"));
    get.push(0);
    let mut get_ok = 1u64.to_be_bytes().to_vec();
    get_ok.push(0);
    get_ok.extend(shortstr(""));
    get_ok.extend(shortstr("q1"));
    get_ok.extend_from_slice(&0u32.to_be_bytes());
    let mut get_ok = method(1, 60, 71, &get_ok);
    get_ok.extend(frame(2, 1, &[0, 60, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0]));
    get_ok.extend(frame(3, 1, b"hi"));
    let mut declare = vec![0, 0];
    declare.extend(shortstr("missing"));
    declare.extend([1, 0, 0, 0, 0]);
    let mut close = 404u16.to_be_bytes().to_vec();
    close.extend(shortstr("NOT_FOUND"));
    close.extend([0, 50, 0, 10]);
    let mut ack = 1u64.to_be_bytes().to_vec();
    ack.push(0);
    vec![
        (Dir::Request, PROTOCOL_HEADER.to_vec()),
        (Dir::Response, method(0, 10, 10, &start)),
        (Dir::Request, method(0, 10, 11, &start_ok)),
        (Dir::Response, method(0, 10, 30, &tune)),
        (Dir::Request, method(0, 10, 31, &tune)),
        (Dir::Request, frame(8, 0, b"")),
        (Dir::Request, publish(1, "ex", "rk", &[7u8; 300], 128)),
        (Dir::Response, method(1, 60, 80, &ack)),
        (Dir::Request, method(1, 60, 70, &get)),
        (Dir::Response, get_ok),
        (Dir::Request, method(1, 50, 10, &declare)),
        (Dir::Response, method(1, 20, 40, &close)),
        (Dir::Request, method(1, 20, 41, &[])),
    ]
}

fn run(p: &mut AmqpParser, split: usize) -> Vec<Entry> {
    let mut out = Vec::new();
    for (n, (dir, bytes)) in conversation().into_iter().enumerate() {
        for chunk in bytes.chunks(split) {
            p.data(dir, n as i64 * 10, chunk, &mut out);
        }
    }
    p.end(&mut out);
    out
}

#[test]
fn pairs_sync_methods_and_joins_content() {
    let mut p = parser(100);
    let out = run(&mut p, 1 << 20);
    assert_eq!(p.errors(), 0);
    let methods: Vec<_> = out.iter().map(|e| e.method.as_deref().unwrap()).collect();
    assert_eq!(
        methods,
        [
            "connection.start",
            "connection.tune",
            "basic.publish",
            "basic.ack",
            "basic.get",
            "queue.declare",
            "channel.close"
        ]
    );
    let start = &out[0];
    assert_eq!((start.status, start.elapsed_us), (Some(0), Some(10)));
    let resp: Value = serde_json::from_str(start.response.as_deref().unwrap()).unwrap();
    assert_eq!(resp["response"], "<12 bytes>", "SASL secret is not stored");
    assert_eq!(resp["sender"], "client");
    let publish = &out[2];
    assert_eq!(publish.path.as_deref(), Some("ex/rk"));
    assert_eq!((publish.status, publish.elapsed_us), (None, None));
    assert_eq!(publish.request_body.as_deref(), Some(&[7u8; 100][..]));
    assert!(publish.request_body_truncated);
    let req: Value = serde_json::from_str(publish.request.as_deref().unwrap()).unwrap();
    assert_eq!(req["body_size"], 300);
    assert_eq!(req["properties"]["headers"]["x-tenant"], "acme");
    assert_eq!(req["properties"]["headers"]["n"], 7);
    assert_eq!(req["properties"]["correlation_id"], "corr-1");
    assert_eq!(req["class"], "basic");
    assert_eq!(req["method"], "publish");
    let get = &out[4];
    assert_eq!(get.path.as_deref(), Some("q1"));
    assert_eq!(get.response_body.as_deref(), Some(&b"hi"[..]));
    assert_eq!(get.status, Some(0));
    let declare = &out[5];
    assert_eq!(declare.status, Some(404));
    assert_eq!(declare.status_text.as_deref(), Some("NOT_FOUND"));
    assert_eq!(declare.path.as_deref(), Some("missing"));
    let close = &out[6];
    assert_eq!((close.status, close.elapsed_us), (Some(404), Some(10)));
}

#[test]
fn any_split_gives_the_same_entries() {
    let whole = run(&mut parser(100), 1 << 20);
    for split in [1, 2, 3, 7, 64] {
        let mut p = parser(100);
        let out = run(&mut p, split);
        assert_eq!(p.errors(), 0, "split {split}");
        let strip = |v: &[Entry]| {
            v.iter()
                .map(|e| {
                    (
                        e.method.clone(),
                        e.path.clone(),
                        e.request.clone(),
                        e.response.clone(),
                    )
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(strip(&out), strip(&whole), "split {split}");
    }
}

#[test]
fn oversized_frame_stops_dissecting() {
    let mut p = parser(100);
    let mut out = Vec::new();
    p.data(Dir::Request, 0, PROTOCOL_HEADER, &mut out);
    let mut f = vec![1, 0, 1];
    f.extend_from_slice(&(MAX_FRAME as u32 + 1).to_be_bytes());
    p.data(Dir::Request, 1, &f, &mut out);
    assert_eq!(p.errors(), 1);
    p.data(Dir::Request, 2, &method(1, 90, 10, &[]), &mut out);
    p.end(&mut out);
    assert!(out.is_empty());
    // After Tune, frame_max applies.
    let mut p = parser(100);
    let mut tune = 0u16.to_be_bytes().to_vec();
    tune.extend_from_slice(&4096u32.to_be_bytes());
    tune.extend_from_slice(&0u16.to_be_bytes());
    p.data(Dir::Request, 0, &method(0, 10, 31, &tune), &mut out);
    p.data(Dir::Request, 0, &frame(3, 1, &[0; 5000]), &mut out);
    assert_eq!(p.errors(), 1);
}

#[test]
fn resyncs_after_gap() {
    let mut p = parser(100);
    let mut out = Vec::new();
    p.data(Dir::Request, 0, PROTOCOL_HEADER, &mut out);
    let f = method(1, 90, 10, &[]);
    p.data(Dir::Request, 1, &f[..5], &mut out);
    p.gap(Dir::Request, 100, &mut out);
    let mut junk = vec![0xCE, 1, 2, 3];
    junk.extend(method(1, 90, 20, &[]));
    for b in junk.chunks(3) {
        p.data(Dir::Request, 2, b, &mut out);
    }
    p.data(Dir::Response, 3, &method(1, 90, 21, &[]), &mut out);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].method.as_deref(), Some("tx.commit"));
    assert_eq!(out[0].status, Some(0));
}

#[test]
fn garbage_never_panics() {
    let mut seed = 0x1234_5678_u64;
    for round in 0..300 {
        let mut p = parser(64);
        let mut out = Vec::new();
        let mut bytes: Vec<u8> = conversation().into_iter().flat_map(|(_, b)| b).collect();
        for _ in 0..(round % 20 + 1) {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let at = (seed >> 33) as usize % bytes.len();
            bytes[at] = (seed >> 20) as u8;
        }
        for (k, c) in bytes.chunks(1 + round % 13).enumerate() {
            let dir = if k % 3 == 0 {
                Dir::Response
            } else {
                Dir::Request
            };
            p.data(dir, k as i64, c, &mut out);
        }
        p.end(&mut out);
    }
}

#[test]
fn probes() {
    assert_eq!(Amqp.probe_stream(PROTOCOL_HEADER), Probe::Client);
    assert_eq!(Amqp.probe_stream(b"AMQ"), Probe::NeedMore);
    assert_eq!(Amqp.probe_stream(b"AMQP\x01\x01\x00\x0a"), Probe::No);
    let start = method(0, 10, 10, &[0, 9]);
    assert_eq!(Amqp.probe_stream(&start), Probe::Server);
    assert_eq!(Amqp.probe_stream(b"GET / HTTP/1.1\r\n"), Probe::No);
    assert_eq!(Amqp.probe_stream(b"*1\r\n$4\r\nPING\r\n"), Probe::No);
}
