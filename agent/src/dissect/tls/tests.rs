use serde_json::Value;

use super::*;

/// A self-signed P-256 certificate, subject and issuer `CN=client.test, O=Wiretrail`.
const CERT: &[u8] = include_bytes!("testdata/cert.der");

fn u16b(v: usize) -> [u8; 2] {
    (v as u16).to_be_bytes()
}

fn ext(kind: u16, data: &[u8]) -> Vec<u8> {
    let mut v = kind.to_be_bytes().to_vec();
    v.extend(u16b(data.len()));
    v.extend(data);
    v
}

fn vec8(data: &[u8]) -> Vec<u8> {
    let mut v = vec![data.len() as u8];
    v.extend(data);
    v
}

fn vec16(data: &[u8]) -> Vec<u8> {
    let mut v = u16b(data.len()).to_vec();
    v.extend(data);
    v
}

fn vec24(data: &[u8]) -> Vec<u8> {
    let mut v = (data.len() as u32).to_be_bytes()[1..].to_vec();
    v.extend(data);
    v
}

fn handshake(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![kind];
    v.extend(vec24(body));
    v
}

fn record(kind: u8, frag: &[u8]) -> Vec<u8> {
    let mut v = vec![kind, 3, 3];
    v.extend(vec16(frag));
    v
}

fn sni(name: &str) -> Vec<u8> {
    let mut entry = vec![0];
    entry.extend(vec16(name.as_bytes()));
    ext(0, &vec16(&entry))
}

fn alpn(protos: &[&str]) -> Vec<u8> {
    let list: Vec<u8> = protos.iter().flat_map(|p| vec8(p.as_bytes())).collect();
    ext(16, &vec16(&list))
}

fn client_key_share(groups: &[u16]) -> Vec<u8> {
    let list: Vec<u8> = groups
        .iter()
        .flat_map(|g| {
            let mut e = g.to_be_bytes().to_vec();
            e.extend(vec16(&[7; 32]));
            e
        })
        .collect();
    ext(51, &vec16(&list))
}

fn client_hello(exts: &[Vec<u8>], session_id: &[u8]) -> Vec<u8> {
    let mut b = vec![3, 3];
    b.extend([1; 32]);
    b.extend(vec8(session_id));
    b.extend(vec16(&[0x13, 0x02, 0x13, 0x01, 0xc0, 0x2c]));
    b.extend(vec8(&[0]));
    b.extend(vec16(&exts.concat()));
    handshake(1, &b)
}

fn server_hello(random: [u8; 32], session_id: &[u8], cipher: u16, exts: &[Vec<u8>]) -> Vec<u8> {
    let mut b = vec![3, 3];
    b.extend(random);
    b.extend(vec8(session_id));
    b.extend(cipher.to_be_bytes());
    b.push(0);
    b.extend(vec16(&exts.concat()));
    handshake(2, &b)
}

fn tls13_client_hello(groups: &[u16]) -> Vec<u8> {
    client_hello(
        &[
            sni("api.example"),
            alpn(&["h2", "http/1.1"]),
            ext(43, &vec8(&[3, 4, 3, 3])),
            client_key_share(groups),
        ],
        &[9; 32],
    )
}

fn run(flow: &[(Dir, Vec<u8>)], piece: usize) -> (Vec<Entry>, u64) {
    let mut p = TlsParser::default();
    let mut out = Vec::new();
    for (n, (dir, bytes)) in flow.iter().enumerate() {
        for (k, chunk) in bytes.chunks(piece.max(1)).enumerate() {
            p.data(*dir, (n * 1000 + k) as i64, chunk, &mut out);
        }
    }
    p.end(&mut out);
    (out, p.errors())
}

fn detail(s: &Option<String>) -> Value {
    serde_json::from_str(s.as_deref().unwrap_or("null")).unwrap()
}

#[test]
fn probes_client_and_server_hellos_only() {
    let ch = record(22, &tls13_client_hello(&[29]));
    assert_eq!(Tls.probe_stream(&ch), Probe::Client);
    let sh = record(22, &server_hello([2; 32], &[], 0x1302, &[]));
    assert_eq!(Tls.probe_stream(&sh), Probe::Server);
    for n in 1..11 {
        assert_eq!(Tls.probe_stream(&ch[..n]), Probe::NeedMore, "{n}");
    }
    assert_eq!(Tls.probe_stream(b"GET / HTTP/1.1\r\n"), Probe::No);
    assert_eq!(Tls.probe_stream(b"*1\r\n$4\r\nPING\r\n"), Probe::No);
    assert_eq!(Tls.probe_stream(&[0, 30, 0x16, 3, 1, 0]), Probe::No);
    // Application data, or a handshake that is not a hello, is no start of a connection.
    assert_eq!(Tls.probe_stream(&record(23, &[0; 40])), Probe::No);
    assert_eq!(
        Tls.probe_stream(&record(22, &handshake(11, &[0; 40]))),
        Probe::No
    );
}

#[test]
fn tls13_handshake_in_any_pieces() {
    let sh = server_hello(
        [2; 32],
        &[9; 32],
        0x1302,
        &[ext(43, &[3, 4]), ext(51, &[0, 29, 0, 2, 1, 2])],
    );
    let flow = vec![
        (Dir::Request, record(22, &tls13_client_hello(&[29, 23]))),
        (
            Dir::Response,
            [record(22, &sh), record(20, &[1]), record(23, &[0; 50])].concat(),
        ),
        (Dir::Request, record(23, &[0; 80])),
    ];
    for piece in [1, 3, 7, 1000] {
        let (out, errors) = run(&flow, piece);
        assert_eq!(errors, 0);
        assert_eq!(out.len(), 1, "piece {piece}");
        let e = &out[0];
        assert_eq!(e.protocol, "tls");
        assert_eq!(e.method.as_deref(), Some("handshake"));
        assert_eq!(e.path.as_deref(), Some("api.example"));
        assert_eq!(e.status, Some(0));
        assert_eq!(e.status_text.as_deref(), Some("TLS 1.3"));
        assert_eq!(e.ts_us, 0);
        assert_eq!(e.elapsed_us, Some(1000));
        let req = detail(&e.request);
        assert_eq!(req["alpn"], serde_json::json!(["h2", "http/1.1"]));
        assert_eq!(req["versions"], serde_json::json!(["TLS 1.3", "TLS 1.2"]));
        assert_eq!(req["groups"], serde_json::json!(["x25519", "secp256r1"]));
        assert_eq!(req["cipher_count"], 3);
        assert_eq!(req["ciphers"][0], "TLS_AES_256_GCM_SHA384");
        let resp = detail(&e.response);
        assert_eq!(resp["version"], "TLS 1.3");
        assert_eq!(resp["cipher"], "TLS_AES_256_GCM_SHA384");
        assert_eq!(resp["group"], "x25519");
        assert_eq!(resp["hrr"], false);
        // A TLS 1.3 session id echo is compatibility mode, not resumption.
        assert_eq!(resp["resumed"], false);
    }
}

#[test]
fn hello_retry_request_is_followed_to_the_second_hello() {
    let hrr = server_hello(
        HRR_RANDOM,
        &[9; 32],
        0x1302,
        &[ext(43, &[3, 4]), ext(51, &[0, 29])],
    );
    let sh = server_hello(
        [2; 32],
        &[9; 32],
        0x1302,
        &[
            ext(43, &[3, 4]),
            ext(51, &[0, 29, 0, 2, 1, 2]),
            ext(41, &[0, 0]),
        ],
    );
    let flow = vec![
        (Dir::Request, record(22, &tls13_client_hello(&[23]))),
        (Dir::Response, record(22, &hrr)),
        (
            Dir::Request,
            [record(20, &[1]), record(22, &tls13_client_hello(&[29]))].concat(),
        ),
        (Dir::Response, record(22, &sh)),
    ];
    let (out, errors) = run(&flow, 5);
    assert_eq!((out.len(), errors), (1, 0));
    let req = detail(&out[0].request);
    assert_eq!(req["groups"], serde_json::json!(["secp256r1"]));
    assert_eq!(req["retry_groups"], serde_json::json!(["x25519"]));
    let resp = detail(&out[0].response);
    assert_eq!(resp["hrr"], true);
    assert_eq!(resp["hrr_group"], "x25519");
    assert_eq!(resp["resumed"], true, "pre_shared_key selected");
    assert_eq!(out[0].elapsed_us, Some(3000));
}

/// TLS 1.2 with mutual authentication: certificates of both sides, the certificate message
/// spread over two records, and the entry only after both ChangeCipherSpecs.
#[test]
fn tls12_certificates_of_both_sides() {
    let ch = client_hello(&[sni("mtls.example"), alpn(&["http/1.1"])], &[]);
    let sh = server_hello([2; 32], &[5; 32], 0xc02c, &[alpn(&["http/1.1"])]);
    let cert = handshake(11, &vec24(&vec24(CERT)));
    let (a, b) = cert.split_at(100);
    let server_flight = [
        record(22, &[sh, a.to_vec()].concat()),
        record(
            22,
            &[
                b.to_vec(),
                handshake(12, &[3, 0, 29, 1, 7]),
                handshake(13, &[1, 1, 0, 0, 0, 0]),
                handshake(14, &[]),
            ]
            .concat(),
        ),
    ]
    .concat();
    let client_flight = [
        record(22, &[cert.clone(), handshake(16, &[0; 33])].concat()),
        record(20, &[1]),
        record(22, &[0; 40]),
    ]
    .concat();
    let flow = vec![
        (Dir::Request, record(22, &ch)),
        (Dir::Response, server_flight),
        (Dir::Request, client_flight),
        (
            Dir::Response,
            [record(20, &[1]), record(22, &[0; 40])].concat(),
        ),
        (Dir::Request, record(23, &[0; 100])),
    ];
    let (out, errors) = run(&flow, 11);
    assert_eq!((out.len(), errors), (1, 0));
    let e = &out[0];
    assert_eq!(e.status_text.as_deref(), Some("TLS 1.2"));
    let resp = detail(&e.response);
    assert_eq!(resp["cipher"], "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384");
    assert_eq!(resp["alpn"], "http/1.1");
    assert_eq!(resp["client_auth"], true);
    assert_eq!(resp["group"], "x25519", "from the ServerKeyExchange");
    assert_eq!(resp["resumed"], false);
    let want = serde_json::json!([{"subject": "CN=client.test, O=Wiretrail", "issuer": "CN=client.test, O=Wiretrail"}]);
    assert_eq!(resp["certificates"], want);
    assert_eq!(resp["client_certificates"], want);
    // Sizes are the bytes up to the entry: the application data after it is not counted.
    assert!(e.request_size > 0 && e.response_size > 0);
}

#[test]
fn tls12_abbreviated_handshake_is_resumption() {
    let ch = client_hello(&[sni("r.example")], &[5; 32]);
    let sh = server_hello([2; 32], &[5; 32], 0xc02f, &[]);
    let flow = vec![
        (Dir::Request, record(22, &ch)),
        (
            Dir::Response,
            [record(22, &sh), record(20, &[1]), record(22, &[0; 40])].concat(),
        ),
        (
            Dir::Request,
            [record(20, &[1]), record(22, &[0; 40])].concat(),
        ),
    ];
    let (out, _) = run(&flow, 1000);
    assert_eq!(out.len(), 1);
    assert_eq!(detail(&out[0].response)["resumed"], true);
}

#[test]
fn fatal_alert_is_the_status() {
    let flow = vec![
        (Dir::Request, record(22, &tls13_client_hello(&[29]))),
        (Dir::Response, record(21, &[2, 40])),
    ];
    let (out, errors) = run(&flow, 1000);
    assert_eq!((out.len(), errors), (1, 0));
    assert_eq!(out[0].status, Some(40));
    assert_eq!(out[0].status_text.as_deref(), Some("handshake_failure"));
    assert_eq!(out[0].elapsed_us, None);
    assert_eq!(detail(&out[0].response)["alert"]["from"], "server");
}

#[test]
fn unanswered_hello_is_one_way_at_end() {
    let (out, _) = run(&[(Dir::Request, record(22, &tls13_client_hello(&[29])))], 1);
    assert_eq!(out.len(), 1);
    assert_eq!((out[0].status, out[0].elapsed_us), (None, None));
    assert!(out[0].response.is_none());
}

#[test]
fn gap_and_garbage_stop_parsing_without_panic() {
    let mut p = TlsParser::default();
    let mut out = Vec::new();
    let ch = record(22, &tls13_client_hello(&[29]));
    p.data(Dir::Request, 1, &ch[..20], &mut out);
    p.gap(Dir::Request, 100, &mut out);
    p.data(Dir::Request, 2, &ch[20..], &mut out);
    p.end(&mut out);
    assert_eq!(p.errors(), 1);
    assert!(out.is_empty());

    let mut p = TlsParser::default();
    p.data(
        Dir::Request,
        1,
        b"\x16\x03\x01\xff\xffnot tls at all",
        &mut out,
    );
    assert_eq!(p.errors(), 1);

    // Every truncation and every single-byte change of a valid exchange.
    let sh = server_hello(
        [2; 32],
        &[],
        0x1302,
        &[ext(43, &[3, 4]), ext(51, &[0, 29, 0, 0])],
    );
    let whole = [ch.clone(), record(22, &sh)].concat();
    for i in 0..whole.len() {
        for v in [0u8, 1, 0x7f, 0xff] {
            let mut m = whole.clone();
            m[i] = v;
            let mut p = TlsParser::default();
            let (a, b) = m.split_at(ch.len());
            p.data(Dir::Request, 1, a, &mut out);
            p.data(Dir::Response, 2, b, &mut out);
            p.data(Dir::Response, 3, &m[..i], &mut out);
            p.end(&mut out);
        }
    }
}
