use super::*;

fn msg(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![kind];
    m.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
    m.extend_from_slice(body);
    m
}

fn startup() -> Vec<u8> {
    let params = b"user\0app\0database\0shop\0\0";
    let mut m = ((params.len() + 8) as u32).to_be_bytes().to_vec();
    m.extend_from_slice(&PROTOCOL_3.to_be_bytes());
    m.extend_from_slice(params);
    m
}

fn run(client: &[Vec<u8>], server: &[Vec<u8>], step: usize) -> (Vec<Entry>, u64) {
    let mut p = Postgres.new_stream(&DissectConfig::default());
    let mut out = Vec::new();
    let (c, s): (Vec<u8>, Vec<u8>) = (client.concat(), server.concat());
    // Interleave: the whole client side first is fine, answers come in order.
    for (i, chunk) in c.chunks(step).enumerate() {
        p.data(Dir::Request, i as i64, chunk, &mut out);
    }
    for (i, chunk) in s.chunks(step).enumerate() {
        p.data(Dir::Response, 1000 + i as i64, chunk, &mut out);
    }
    p.end(&mut out);
    (out, p.errors())
}

#[test]
fn simple_and_extended_queries_with_errors() {
    let client = vec![
        vec![0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f], // SSLRequest
        startup(),
        msg(b'Q', b"SELECT 1; SELECT 2\0"),
        msg(b'P', b"s1\0SELECT $1\0\0\0"),
        msg(b'B', b"\0s1\0\0\0\0\x01\0\0\0\x0242\0\0"),
        msg(b'E', b"\0\0\0\0\0"),
        msg(b'S', b""),
        msg(b'P', b"\0SELEC oops\0\0\0"),
        msg(b'B', b"\0\0\0\0\0\0\0\0"),
        msg(b'E', b"\0\0\0\0\0"),
        msg(b'S', b""),
    ];
    let err = b"SERROR\0C42601\0Msyntax error\0\0";
    let server = vec![
        b"N".to_vec(),
        msg(b'R', &[0, 0, 0, 0]),
        msg(b'S', b"server_version\x0015.18\0"),
        msg(b'Z', b"I"),
        msg(b'T', b"\0\x01?column?\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0"),
        msg(b'D', b"\0\x01\0\0\0\x011"),
        msg(b'C', b"SELECT 1\0"),
        msg(b'C', b"SELECT 1\0"),
        msg(b'Z', b"I"),
        msg(b'1', b""),
        msg(b'2', b""),
        msg(b'D', b"\0\x01\0\0\0\x0242"),
        msg(b'C', b"SELECT 1\0"),
        msg(b'Z', b"I"),
        msg(b'E', err),
        msg(b'Z', b"I"),
    ];
    for step in [1, 3, 1 << 16] {
        let (out, errors) = run(&client, &server, step);
        assert_eq!(errors, 0);
        assert_eq!(out.len(), 4, "{out:#?}");
        let start = &out[0];
        assert_eq!(start.method.as_deref(), Some("startup"));
        assert_eq!(start.path.as_deref(), Some("shop"));
        assert_eq!(start.status, Some(0));
        let simple = &out[1];
        assert_eq!(simple.path.as_deref(), Some("SELECT 1; SELECT 2"));
        let r: Value = serde_json::from_str(simple.response.as_deref().unwrap()).unwrap();
        assert_eq!(r["command_tags"], json!(["SELECT 1", "SELECT 1"]));
        let ext = &out[2];
        assert_eq!(ext.path.as_deref(), Some("SELECT $1"));
        let q: Value = serde_json::from_str(ext.request.as_deref().unwrap()).unwrap();
        assert_eq!(q["parameters"], json!(["42"]));
        let bad = &out[3];
        assert_eq!(
            (bad.status, bad.status_text.as_deref()),
            (Some(1), Some("42601"))
        );
        assert_eq!(bad.path.as_deref(), Some("SELEC oops"));
    }
}

#[test]
fn probe_and_garbage() {
    assert_eq!(Postgres.probe_stream(&startup()), Probe::Client);
    assert_eq!(Postgres.probe_stream(b"GET / HTTP/1.1\r\n"), Probe::No);
    let mut p = Postgres.new_stream(&DissectConfig::default());
    let mut out = Vec::new();
    p.data(Dir::Request, 0, &startup(), &mut out);
    p.data(
        Dir::Response,
        1,
        &[b'R', 0xff, 0xff, 0xff, 0xff, 0],
        &mut out,
    );
    p.data(Dir::Request, 2, &[0xff; 64], &mut out);
    p.end(&mut out);
    assert!(p.errors() >= 1);
}
