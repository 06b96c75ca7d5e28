use super::*;

/// Builds frames in either encoding.
#[derive(Default)]
struct W {
    b: Vec<u8>,
    flex: bool,
}

impl W {
    fn new(flex: bool) -> Self {
        Self {
            b: Vec::new(),
            flex,
        }
    }
    fn i8(mut self, v: i8) -> Self {
        self.b.extend(v.to_be_bytes());
        self
    }
    fn i16(mut self, v: i16) -> Self {
        self.b.extend(v.to_be_bytes());
        self
    }
    fn i32(mut self, v: i32) -> Self {
        self.b.extend(v.to_be_bytes());
        self
    }
    fn i64(mut self, v: i64) -> Self {
        self.b.extend(v.to_be_bytes());
        self
    }
    fn uvarint(mut self, mut v: u64) -> Self {
        while v >= 0x80 {
            self.b.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.b.push(v as u8);
        self
    }
    /// A string in the current encoding.
    fn s(self, v: &str) -> Self {
        let mut w = if self.flex {
            self.uvarint(v.len() as u64 + 1)
        } else {
            self.i16(v.len() as i16)
        };
        w.b.extend(v.as_bytes());
        w
    }
    /// A classic (non-compact) string, as the client id of every request header.
    fn cs(self, v: &str) -> Self {
        let mut w = self.i16(v.len() as i16);
        w.b.extend(v.as_bytes());
        w
    }
    fn arr(self, n: usize) -> Self {
        if self.flex {
            self.uvarint(n as u64 + 1)
        } else {
            self.i32(n as i32)
        }
    }
    fn bytes(self, v: &[u8]) -> Self {
        let mut w = self.arr(v.len());
        w.b.extend(v);
        w
    }
    fn tags(self) -> Self {
        if self.flex {
            self.uvarint(0)
        } else {
            self
        }
    }
    fn frame(self) -> Vec<u8> {
        let mut f = (self.b.len() as i32).to_be_bytes().to_vec();
        f.extend(self.b);
        f
    }
}

/// A v2 record batch holding `n` records (only the header matters to the parser).
fn batch(n: i32) -> Vec<u8> {
    let mut b = W::new(false)
        .i64(0)
        .i32(49 + 3)
        .i32(0)
        .i8(2)
        .i32(0)
        .i16(0)
        .i32(n - 1);
    b = b.i64(0).i64(0).i64(-1).i16(-1).i32(-1).i32(n);
    b.b.extend([0, 0, 0]);
    b.b
}

fn produce_v9() -> (Vec<u8>, Vec<u8>) {
    let req = W::new(false).i16(0).i16(9).i32(7).cs("cli");
    let req = W { flex: true, ..req }.tags();
    let req = req.s("").i16(1).i32(1000).arr(1).s("orders").arr(1).i32(2);
    let req = req.bytes(&batch(5)).tags().tags().tags().frame();
    let resp = W::new(false).i32(7);
    let resp = W { flex: true, ..resp }.tags();
    let resp = resp
        .arr(1)
        .s("orders")
        .arr(1)
        .i32(2)
        .i16(0)
        .i64(40)
        .i64(-1)
        .i64(0);
    let resp = resp.arr(0).s("").tags().tags().i32(0).tags().frame();
    (req, resp)
}

fn feed(p: &mut KafkaParser, dir: Dir, data: &[u8], chunk: usize, out: &mut Vec<Entry>) {
    for (n, c) in data.chunks(chunk).enumerate() {
        p.data(dir, 1000 + n as i64, c, out);
    }
}

#[test]
fn flexible_produce_in_pieces() {
    let (req, resp) = produce_v9();
    for chunk in [1, 3, 1000] {
        let mut p = KafkaParser::default();
        let mut out = Vec::new();
        feed(&mut p, Dir::Request, &req, chunk, &mut out);
        assert!(out.is_empty());
        feed(&mut p, Dir::Response, &resp, chunk, &mut out);
        assert_eq!(p.errors(), 0, "chunk {chunk}");
        assert_eq!(out.len(), 1);
        let e = &out[0];
        assert_eq!(e.method.as_deref(), Some("Produce"));
        assert_eq!(e.path.as_deref(), Some("orders"));
        assert_eq!(e.status, Some(0));
        assert_eq!(e.request_size, req.len() as u64);
        assert_eq!(e.response_size, resp.len() as u64);
        assert!(e.request_body.is_none());
        let r: Value = serde_json::from_str(e.request.as_deref().unwrap()).unwrap();
        assert_eq!(r["client_id"], "cli");
        assert_eq!(r["topics"][0]["records"], 5);
        assert_eq!(r["topics"][0]["partitions"][0], 2);
        let r: Value = serde_json::from_str(e.response.as_deref().unwrap()).unwrap();
        assert_eq!(r["topics"][0]["partitions"][0]["base_offset"], 40);
        assert_eq!(r["throttle_ms"], 0);
    }
}

#[test]
fn legacy_metadata_error_and_out_of_order_pairing() {
    let req = |corr| {
        W::new(false)
            .i16(3)
            .i16(1)
            .i32(corr)
            .cs("c")
            .arr(1)
            .s("nope")
            .frame()
    };
    let resp = |corr| {
        let w = W::new(false)
            .i32(corr)
            .arr(1)
            .i32(1)
            .s("h")
            .i32(9092)
            .s("r");
        let w = w.i32(1).arr(1).i16(3).s("nope").i8(0).arr(0);
        w.frame()
    };
    let mut both = req(1);
    both.extend(req(2));
    let mut p = KafkaParser::default();
    let mut out = Vec::new();
    p.data(Dir::Request, 10, &both, &mut out);
    p.data(Dir::Response, 20, &resp(2), &mut out);
    p.data(Dir::Response, 30, &resp(1), &mut out);
    assert_eq!(p.errors(), 0);
    assert_eq!(out.len(), 2);
    assert_eq!(out[0].status, Some(3));
    assert_eq!(
        out[0].status_text.as_deref(),
        Some("UNKNOWN_TOPIC_OR_PARTITION")
    );
    assert_eq!(out[0].elapsed_us, Some(10));
    assert_eq!(out[1].elapsed_us, Some(20));
    assert_eq!(out[1].path.as_deref(), Some("nope"));
}

#[test]
fn api_versions_response_header_v0_and_one_way() {
    let req = W::new(false).i16(18).i16(3).i32(1).cs("k");
    let req = W { flex: true, ..req }
        .tags()
        .s("lib")
        .s("1.0")
        .tags()
        .frame();
    // Header v0 even though v3 is flexible: error code right after the correlation id.
    let resp = W::new(true).i32(1).i16(35).arr(0).i32(0).tags().frame();
    let mut p = KafkaParser::default();
    let mut out = Vec::new();
    p.data(Dir::Request, 1, &req, &mut out);
    p.data(Dir::Response, 2, &resp, &mut out);
    p.data(Dir::Request, 3, &req, &mut out);
    p.end(&mut out);
    assert_eq!(p.errors(), 0);
    assert_eq!(out.len(), 2);
    assert_eq!(out[0].status_text.as_deref(), Some("UNSUPPORTED_VERSION"));
    assert_eq!(out[1].elapsed_us, None);
}

#[test]
fn acks_zero_is_one_way_and_bad_length_stops() {
    let req = W::new(false)
        .i16(0)
        .i16(3)
        .i32(5)
        .cs("p")
        .s("")
        .i16(0)
        .i32(0)
        .arr(0);
    let mut p = KafkaParser::default();
    let mut out = Vec::new();
    p.data(Dir::Request, 1, &req.frame(), &mut out);
    assert_eq!(out.len(), 1);
    p.data(Dir::Request, 2, &[0x7f, 0, 0, 0, 1, 2], &mut out);
    assert_eq!(p.errors(), 1);
    p.data(Dir::Request, 3, &produce_v9().0, &mut out);
    assert_eq!(out.len(), 1, "connection no longer dissected");
}

#[test]
fn gap_resyncs_at_next_frame() {
    let (req, resp) = produce_v9();
    let mut p = KafkaParser::default();
    let mut out = Vec::new();
    p.data(Dir::Request, 1, &req[..10], &mut out);
    p.gap(Dir::Request, 100, &mut out);
    p.data(Dir::Request, 2, &req[20..], &mut out);
    p.data(Dir::Request, 3, &req, &mut out);
    p.data(Dir::Response, 4, &resp, &mut out);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].status, Some(0));
    assert_eq!(p.errors(), 1);
}

#[test]
fn probe() {
    let (req, _) = produce_v9();
    assert_eq!(Kafka.probe_stream(&req), Probe::Client);
    assert_eq!(Kafka.probe_stream(&req[..5]), Probe::NeedMore);
    assert_eq!(Kafka.probe_stream(b"GET / HTTP/1.1\r\n"), Probe::No);
    assert_eq!(Kafka.probe_stream(b"*1\r\n$4\r\nPING\r\n"), Probe::No);
    assert_eq!(Kafka.probe_stream(b"\x16\x03\x01\x02\x00\x01"), Probe::No);
    // DNS over TCP: length, id, flags 0x0100.
    assert_eq!(
        Kafka.probe_stream(b"\x00\x1c\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00"),
        Probe::No
    );
    // Postgres StartupMessage.
    let mut pg = b"\x00\x00\x00\x29\x00\x03\x00\x00user\x00postgres\x00".to_vec();
    pg.extend(b"database\x00postgres\x00\x00");
    assert_eq!(Kafka.probe_stream(&pg), Probe::No);
}

#[test]
fn never_panics_on_garbage() {
    let (req, resp) = produce_v9();
    let mut seed = 0x1234_5678u32;
    for _ in 0..2000 {
        let mut p = KafkaParser::default();
        let mut out = Vec::new();
        for (dir, src) in [(Dir::Request, &req), (Dir::Response, &resp)] {
            let mut m = src.clone();
            for _ in 0..3 {
                seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
                let i = (seed >> 8) as usize % m.len();
                m[i] = (seed >> 16) as u8;
            }
            p.data(dir, 0, &m, &mut out);
            let _ = Kafka.probe_stream(&m);
        }
        p.end(&mut out);
    }
}
