//! Unit tests of the HTTP/1 parser: pipelining, bodies, interim responses, resync, upgrade.

use super::*;

fn parse(req: &[&[u8]], resp: &[&[u8]]) -> (Vec<Entry>, u64) {
    let mut p = Http1Parser::new(DissectConfig {
        body_cap: 1 << 20,
        ..Default::default()
    });
    let mut out = Vec::new();
    for (i, r) in req.iter().enumerate() {
        p.data(Dir::Request, 10 + i as i64, r, &mut out);
    }
    for (i, r) in resp.iter().enumerate() {
        p.data(Dir::Response, 100 + i as i64, r, &mut out);
    }
    p.end(&mut out);
    (out, p.errors())
}

#[test]
fn pipelined_requests_pair_in_order_with_bodies() {
    let (e, errors) = parse(
        &[b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nPOST /b HTTP/1.1\r\nContent-Length: 3\r\n\r\nabcHEAD /c HTTP/1.1\r\n\r\n"],
        &[b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhiHTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\nX-T: 1\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n"],
    );
    assert_eq!(errors, 0);
    let got: Vec<_> = e
        .iter()
        .map(|e| (e.path.clone().unwrap(), e.status.unwrap()))
        .collect();
    assert_eq!(
        got,
        vec![("/a".into(), 200), ("/b".into(), 201), ("/c".into(), 200)]
    );
    assert_eq!(e[1].request_body.as_deref(), Some(&b"abc"[..]));
    assert_eq!(e[1].response_body.as_deref(), Some(&b"ok"[..]));
    let detail: Value = serde_json::from_str(e[1].response.as_deref().unwrap()).unwrap();
    assert_eq!(detail["trailers"]["X-T"], "1");
    assert_eq!(detail["chunked"], true);
    assert!(e[1]
        .response_headers
        .as_ref()
        .unwrap()
        .contains(&("X-T".into(), "1".into())));
    assert_eq!(e[0].elapsed_us, Some(90));
    // HEAD: no body although Content-Length says 99.
    assert_eq!(e[2].response_body, None);
}

#[test]
fn continue_and_one_way_and_resync() {
    let (e, errors) = parse(
        &[
            b"PUT /u HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n",
            b"data",
            b"\x00\x01garbage\r\nGET /next HTTP/1.1\r\n\r\n",
        ],
        &[b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n"],
    );
    assert_eq!(e.len(), 2);
    assert_eq!(e[0].status, Some(204));
    assert_eq!(e[0].request_body.as_deref(), Some(&b"data"[..]));
    assert_eq!(e[1].path.as_deref(), Some("/next"));
    assert_eq!(e[1].elapsed_us, None, "no response: one-way");
    assert_eq!(errors, 1, "one resync, one error");
}

#[test]
fn switching_protocols_stops_parsing() {
    let mut p = Http1Parser::new(DissectConfig {
        body_cap: 1024,
        ..Default::default()
    });
    let mut out = Vec::new();
    p.data(
        Dir::Request,
        1,
        b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\n\r\n",
        &mut out,
    );
    p.data(
        Dir::Response,
        2,
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x05hello",
        &mut out,
    );
    p.data(Dir::Request, 3, b"\x81\x85mask!", &mut out);
    p.end(&mut out);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].status, Some(101));
    assert!(p.upgraded());
    assert_eq!(p.errors(), 0);
}

/// `Upgrade: h2c` hands the connection to the HTTP/2 parser; the upgraded request is
/// answered on stream 1 and becomes one `http2` entry.
#[test]
fn h2c_upgrade_continues_as_http2() {
    let mut p = Http1Parser::new(DissectConfig {
        body_cap: 1024,
        ..Default::default()
    });
    let mut out = Vec::new();
    p.data(
        Dir::Request,
        1,
        b"GET /up HTTP/1.1\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n",
        &mut out,
    );
    // 101, then in the same segment the server's SETTINGS and HEADERS(:status 200, END_STREAM)
    // on stream 1 (0x88 = indexed `:status: 200`).
    let mut resp = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n".to_vec();
    resp.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
    resp.extend_from_slice(&[0, 0, 1, 1, 5, 0, 0, 0, 1, 0x88]);
    p.data(Dir::Response, 2, &resp, &mut out);
    p.data(Dir::Request, 3, super::super::http2::PREFACE, &mut out);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].protocol, "http2");
    assert_eq!(out[0].path.as_deref(), Some("/up"));
    assert_eq!(out[0].status, Some(200));
    assert!(!p.upgraded());
    assert_eq!(p.errors(), 0);
}

#[test]
fn response_without_request_and_read_until_close() {
    let (e, _) = parse(&[], &[b"HTTP/1.0 200 OK\r\n\r\nall ", b"of it"]);
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].method, None);
    assert_eq!(e[0].response_body.as_deref(), Some(&b"all of it"[..]));
    assert_eq!(e[0].response_size, 19 + 9);
}
