use loona_hpack::Encoder;

use super::*;

fn frame(ty: u8, flags: u8, sid: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len();
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, ty, flags];
    f.extend_from_slice(&sid.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

fn block(enc: &mut Encoder, h: &[(&str, &str)]) -> Vec<u8> {
    enc.encode(h.iter().map(|(k, v)| (k.as_bytes(), v.as_bytes())))
}

fn cfg() -> DissectConfig {
    DissectConfig {
        body_cap: 1 << 20,
        ..Default::default()
    }
}

/// Feeds both directions in `step`-byte pieces, client first per round.
fn run(client: &[u8], server: &[u8], step: usize) -> (Vec<Entry>, u64) {
    let mut p = Http2Parser::new(cfg());
    let mut out = Vec::new();
    for (i, c) in client.chunks(step).enumerate() {
        p.data(Dir::Request, 10 + i as i64, c, &mut out);
    }
    for (i, c) in server.chunks(step).enumerate() {
        p.data(Dir::Response, 1000 + i as i64, c, &mut out);
    }
    p.end(&mut out);
    (out, p.errors())
}

#[test]
fn request_response_with_continuation_padding_and_dynamic_table() {
    let mut ce = Encoder::new();
    let mut se = Encoder::new();
    let mut client = PREFACE.to_vec();
    client.extend(frame(4, 0, 0, &[]));
    for sid in [1u32, 3] {
        let hb = block(
            &mut ce,
            &[
                (":method", "GET"),
                (":path", "/a"),
                (":scheme", "http"),
                (":authority", "x"),
                ("x-token", "Token abc"),
            ],
        );
        // Split the block: HEADERS (padded) + CONTINUATION.
        let (a, b) = hb.split_at(hb.len() / 2);
        let mut padded = vec![3];
        padded.extend_from_slice(a);
        padded.extend_from_slice(&[0, 0, 0]);
        client.extend(frame(HEADERS, END_STREAM | PADDED, sid, &padded));
        client.extend(frame(CONTINUATION, END_HEADERS, sid, b));
    }
    let mut server = frame(4, 0, 0, &[]);
    for sid in [1u32, 3] {
        let hb = block(
            &mut se,
            &[(":status", "200"), ("content-type", "text/plain")],
        );
        server.extend(frame(HEADERS, END_HEADERS, sid, &hb));
        server.extend(frame(DATA, 0, sid, b"hello "));
        server.extend(frame(DATA, END_STREAM, sid, b"world"));
    }
    for step in [1, 7, 4096] {
        let (entries, errors) = run(&client, &server, step);
        assert_eq!(errors, 0);
        assert_eq!(entries.len(), 2, "step {step}");
        for e in &entries {
            assert_eq!(e.protocol, "http2");
            assert_eq!(e.method.as_deref(), Some("GET"));
            assert_eq!(e.path.as_deref(), Some("/a"));
            assert_eq!(e.status, Some(200));
            assert_eq!(e.response_body.as_deref(), Some(&b"hello world"[..]));
            let h = e.request_headers.as_ref().unwrap();
            assert!(h.iter().any(|(k, v)| k == "x-token" && v == "Token abc"));
            assert!(e.elapsed_us.unwrap() > 0);
        }
    }
}

#[test]
fn grpc_trailers_reset_and_one_way() {
    let mut ce = Encoder::new();
    let mut se = Encoder::new();
    let req = [
        (":method", "POST"),
        (":path", "/pkg.Svc/Get"),
        ("content-type", "application/grpc"),
    ];
    let mut client = PREFACE.to_vec();
    client.extend(frame(HEADERS, END_HEADERS, 1, &block(&mut ce, &req)));
    client.extend(frame(DATA, END_STREAM, 1, &[0, 0, 0, 0, 2, 0x08, 0x05]));
    client.extend(frame(HEADERS, END_HEADERS, 3, &block(&mut ce, &req)));
    client.extend(frame(RST_STREAM, 0, 3, &8u32.to_be_bytes()));
    client.extend(frame(
        HEADERS,
        END_HEADERS | END_STREAM,
        5,
        &block(&mut ce, &req),
    ));
    let mut server = frame(
        HEADERS,
        END_HEADERS,
        1,
        &block(
            &mut se,
            &[(":status", "200"), ("content-type", "application/grpc")],
        ),
    );
    server.extend(frame(DATA, 0, 1, &[0, 0, 0, 0, 2, 0x08, 0x07]));
    server.extend(frame(
        HEADERS,
        END_HEADERS | END_STREAM,
        1,
        &block(&mut se, &[("grpc-status", "5"), ("grpc-message", "nope")]),
    ));
    let (entries, errors) = run(&client, &server, 5);
    assert_eq!(errors, 0);
    let by = |sid: u64| {
        entries
            .iter()
            .find(|e| {
                serde_json::from_str::<Value>(e.request.as_deref().unwrap()).unwrap()["stream"]
                    == sid
            })
            .unwrap()
    };
    let call = by(1);
    assert_eq!(call.protocol, "grpc");
    assert_eq!(call.method.as_deref(), Some("/pkg.Svc/Get"));
    assert_eq!(
        (call.status, call.status_text.as_deref()),
        (Some(5), Some("nope"))
    );
    let resp: Value = serde_json::from_str(call.response.as_deref().unwrap()).unwrap();
    assert_eq!(resp["grpc"]["messages"][0], json!({"1": 7}));
    assert_eq!(resp["http_status"], 200);
    let req: Value = serde_json::from_str(call.request.as_deref().unwrap()).unwrap();
    assert_eq!(req["grpc"]["messages"][0], json!({"1": 5}));
    assert_eq!(req["grpc"]["service"], "pkg.Svc");
    assert_eq!(by(3).status_text.as_deref(), Some("RST_STREAM CANCEL"));
    assert!(by(5).elapsed_us.is_none());
}

#[test]
fn garbage_is_counted_not_a_panic() {
    let mut client = PREFACE.to_vec();
    client.extend(frame(
        HEADERS,
        END_HEADERS,
        1,
        &[0xff, 0xff, 0xff, 0xff, 0xff],
    ));
    client.extend(frame(CONTINUATION, END_HEADERS, 1, b"x"));
    let (entries, errors) = run(&client, &[0xff; 64], 3);
    assert!(errors >= 1);
    assert!(entries.len() <= 1);
}

#[test]
fn probes() {
    assert_eq!(Http2.probe_stream(PREFACE), Probe::Client);
    assert_eq!(Http2.probe_stream(&PREFACE[..5]), Probe::NeedMore);
    assert_eq!(Http2.probe_stream(&frame(4, 0, 0, &[0; 12])), Probe::Server);
    assert_eq!(Http2.probe_stream(b"GET / HTTP/1.1\r\n"), Probe::No);
}
