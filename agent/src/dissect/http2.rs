//! HTTP/2 (RFC 9113): h2c with prior knowledge (the client preface), h2c after an HTTP/1
//! `Upgrade: h2c` (the HTTP/1 parser hands the connection over, the upgraded request becoming
//! stream 1), and HTTP/2 inside TLS once plaintext is available. Frames are split per
//! direction, header blocks (HEADERS/PUSH_PROMISE + CONTINUATION, padding and priority
//! removed) are decoded with a per-direction HPACK decoder ([`hpack`], dynamic table
//! included), and each stream becomes one entry when both sides ended it, it was reset, or the
//! connection ended. DATA flows into decompressed bodies; `application/grpc` streams become
//! `grpc` entries (see [`super::grpc`]) and GraphQL requests `graphql` entries.

use std::collections::{BTreeMap, VecDeque};

use serde_json::{json, Map, Value};
use wiretrail_proto::{Entry, EntryId};

mod hpack;

use hpack::Decoder;

use super::body::Body;
use super::grpc::{self, GrpcReader};
use super::{graphql, Dir, DissectConfig, Dissector, Parser, Probe};

pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// Largest frame accepted (the protocol maximum, 2^24-1); a frame is buffered whole, so this
/// also bounds the bytes buffered per direction.
const MAX_FRAME: usize = (1 << 24) - 1;
/// Largest header block (HEADERS + CONTINUATIONs) assembled before giving up.
const MAX_HEADER_BLOCK: usize = 1 << 20;
/// Largest HPACK dynamic table a peer may announce; bounds the decoder's memory.
const MAX_HPACK_TABLE: usize = 1 << 20;
/// Streams tracked at once per connection; past this the oldest is emitted as incomplete.
const MAX_STREAMS: usize = 4096;
/// After one side resets a stream, how long (capture time) the other side's last frames
/// (e.g. the server's `grpc-status` after a client's cancel) may still join the entry.
const RESET_GRACE_US: i64 = 1_000_000;

const DATA: u8 = 0;
const HEADERS: u8 = 1;
const RST_STREAM: u8 = 3;
const PUSH_PROMISE: u8 = 5;
const GOAWAY: u8 = 7;
const CONTINUATION: u8 = 9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;

pub struct Http2;

impl Dissector for Http2 {
    fn name(&self) -> &'static str {
        "http2"
    }

    /// The client preface, or a server's first frame: SETTINGS on stream 0.
    fn probe_stream(&self, data: &[u8]) -> Probe {
        let n = data.len().min(PREFACE.len());
        if data[..n] == PREFACE[..n] && n > 0 {
            return if n == PREFACE.len() {
                Probe::Client
            } else {
                Probe::NeedMore
            };
        }
        match data {
            [0, ..] if data.len() < 9 => Probe::NeedMore,
            [0, a, b, 4, 0, 0, 0, 0, 0, ..]
                if (usize::from(*a) << 8 | usize::from(*b)) % 6 == 0 =>
            {
                Probe::Server
            }
            _ => Probe::No,
        }
    }

    fn new_stream(&self, cfg: &DissectConfig) -> Box<dyn Parser> {
        Box::new(Http2Parser::new(cfg.clone()))
    }
}

/// Name of an HTTP/2 error code (RST_STREAM, GOAWAY).
pub fn error_name(code: u32) -> String {
    const NAMES: [&str; 14] = [
        "NO_ERROR",
        "PROTOCOL_ERROR",
        "INTERNAL_ERROR",
        "FLOW_CONTROL_ERROR",
        "SETTINGS_TIMEOUT",
        "STREAM_CLOSED",
        "FRAME_SIZE_ERROR",
        "REFUSED_STREAM",
        "CANCEL",
        "COMPRESSION_ERROR",
        "CONNECT_ERROR",
        "ENHANCE_YOUR_CALM",
        "INADEQUATE_SECURITY",
        "HTTP_1_1_REQUIRED",
    ];
    usize::try_from(code)
        .ok()
        .and_then(|i| NAMES.get(i))
        .map_or_else(|| format!("0x{code:x}"), |n| n.to_string())
}

/// One direction of one stream.
#[derive(Default)]
struct Half {
    headers: Option<Vec<(String, String)>>,
    trailers: Vec<(String, String)>,
    /// Created at the first DATA frame, which also fixes the two fields below (the headers
    /// are complete by then), so later frames do no header lookups.
    body: Option<Body>,
    is_grpc: bool,
    grpc_encoding: Option<String>,
    grpc: GrpcReader,
    /// Frame bytes (headers included) carried for this stream in this direction.
    wire: u64,
    data_frames: u64,
    ended: bool,
    end_ts: Option<i64>,
}

struct Stream {
    /// Capture time of the request headers (or of the first frame seen).
    ts: i64,
    resp_ts: Option<i64>,
    req: Half,
    resp: Half,
    interim: Vec<i32>,
    reset: Option<(Dir, u32)>,
    reset_ts: i64,
    pushed: bool,
    upgraded: bool,
}

impl Stream {
    fn new(ts: i64) -> Self {
        Self {
            ts,
            resp_ts: None,
            req: Half::default(),
            resp: Half::default(),
            interim: Vec::new(),
            reset: None,
            reset_ts: 0,
            pushed: false,
            upgraded: false,
        }
    }

    fn half(&mut self, dir: Dir) -> &mut Half {
        match dir {
            Dir::Request => &mut self.req,
            Dir::Response => &mut self.resp,
        }
    }

    fn grpc(&self) -> bool {
        header(self.req.headers.as_deref(), "content-type")
            .or_else(|| header(self.resp.headers.as_deref(), "content-type"))
            .is_some_and(|ct| ct.starts_with("application/grpc"))
    }
}

/// A header block being assembled from HEADERS/PUSH_PROMISE and CONTINUATION frames.
struct Block {
    stream: u32,
    end_stream: bool,
    promised: Option<u32>,
    bytes: Vec<u8>,
}

struct Side {
    buf: Vec<u8>,
    /// The client preface is still expected at the start of this direction.
    preface: bool,
    hpack: Decoder,
    block: Option<Block>,
    /// Framing or HPACK state was lost (a gap, a bad frame): the rest is not dissected.
    dead: bool,
}

impl Side {
    fn new(preface: bool) -> Self {
        Self {
            buf: Vec::new(),
            preface,
            hpack: Decoder::new(MAX_HPACK_TABLE),
            block: None,
            dead: false,
        }
    }
}

pub struct Http2Parser {
    cfg: DissectConfig,
    client: Side,
    server: Side,
    streams: BTreeMap<u32, Stream>,
    goaway: Option<(Dir, u32, u32)>,
    /// Highest stream id opened so far, by parity (client-initiated odd, pushed even): stream
    /// ids only grow, so a frame for a lower id that is not open belongs to a closed stream.
    opened: [u32; 2],
    /// (reset time, stream) in reset order, for [`Self::sweep_resets`].
    resets: VecDeque<(i64, u32)>,
    errors: u64,
}

fn header<'a>(headers: Option<&'a [(String, String)]>, name: &str) -> Option<&'a str> {
    headers?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Removes padding (and the priority fields of HEADERS) from a frame payload.
fn unpad(flags: u8, payload: &[u8], priority: bool) -> Option<&[u8]> {
    let (pad, mut p) = if flags & PADDED != 0 {
        (usize::from(*payload.first()?), &payload[1..])
    } else {
        (0, payload)
    };
    if priority && flags & PRIORITY != 0 {
        p = p.get(5..)?;
    }
    p.get(..p.len().checked_sub(pad)?)
}

impl Http2Parser {
    pub fn new(cfg: DissectConfig) -> Self {
        Self {
            cfg,
            client: Side::new(true),
            server: Side::new(false),
            streams: BTreeMap::new(),
            goaway: None,
            opened: [0; 2],
            resets: VecDeque::new(),
            errors: 0,
        }
    }

    /// The connection after an HTTP/1 `101 Switching Protocols` to h2c: `upgraded` is the
    /// HTTP/1 request, which becomes stream 1 (its response comes as HTTP/2).
    pub fn after_upgrade(cfg: DissectConfig, upgraded: &Entry) -> Self {
        let mut p = Self::new(cfg);
        let mut s = Stream::new(upgraded.ts_us);
        s.upgraded = true;
        let mut h = vec![
            (
                ":method".to_string(),
                upgraded.method.clone().unwrap_or_default(),
            ),
            (
                ":path".to_string(),
                upgraded.path.clone().unwrap_or_default(),
            ),
        ];
        h.extend(upgraded.request_headers.iter().flatten().cloned());
        s.req.headers = Some(h);
        s.req.wire = upgraded.request_size;
        s.req.ended = true;
        p.streams.insert(1, s);
        p.opened[1] = 1;
        p
    }

    fn side(&mut self, dir: Dir) -> &mut Side {
        match dir {
            Dir::Request => &mut self.client,
            Dir::Response => &mut self.server,
        }
    }

    /// Splits `input` into frames; returns the bytes consumed.
    fn process(&mut self, dir: Dir, ts: i64, input: &[u8], out: &mut Vec<Entry>) -> usize {
        let mut pos = 0;
        if self.side(dir).preface {
            let n = input.len().min(PREFACE.len());
            if input[..n] != PREFACE[..n] {
                // Not the preface (capture started mid-connection): read frames directly.
                self.side(dir).preface = false;
            } else if n < PREFACE.len() {
                return 0;
            } else {
                self.side(dir).preface = false;
                pos = PREFACE.len();
            }
        }
        while let Some(head) = input.get(pos..pos + 9) {
            let len = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
            if len > MAX_FRAME {
                self.fail(dir);
                return input.len();
            }
            let Some(payload) = input.get(pos + 9..pos + 9 + len) else {
                break;
            };
            let sid = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
            self.frame(dir, ts, head[3], head[4], sid, payload, out);
            pos += 9 + len;
            if self.side(dir).dead {
                return input.len();
            }
        }
        pos
    }

    fn fail(&mut self, dir: Dir) {
        self.errors += 1;
        let side = self.side(dir);
        side.dead = true;
        side.buf = Vec::new();
        side.block = None;
    }

    /// The open stream `sid`; a new id opens one when `open` (HEADERS, PUSH_PROMISE), and
    /// `None` is a frame of a stream already closed (or never seen, for DATA).
    fn stream(
        &mut self,
        sid: u32,
        ts: i64,
        open: bool,
        out: &mut Vec<Entry>,
    ) -> Option<&mut Stream> {
        if !self.streams.contains_key(&sid) {
            let max = &mut self.opened[(sid & 1) as usize];
            if !open || sid <= *max {
                return None;
            }
            *max = sid;
            if self.streams.len() >= MAX_STREAMS {
                if let Some((id, s)) = self.streams.pop_first() {
                    out.push(self.entry(id, s, true));
                }
            }
        }
        Some(self.streams.entry(sid).or_insert_with(|| Stream::new(ts)))
    }

    #[allow(clippy::too_many_arguments)]
    fn frame(
        &mut self,
        dir: Dir,
        ts: i64,
        ty: u8,
        flags: u8,
        sid: u32,
        payload: &[u8],
        out: &mut Vec<Entry>,
    ) {
        let wire = 9 + payload.len() as u64;
        if self.side(dir).block.is_some() && ty != CONTINUATION {
            // A header block must continue without interleaving (RFC 9113 §6.10).
            self.fail(dir);
            return;
        }
        match ty {
            DATA if sid != 0 => {
                let Some(data) = unpad(flags, payload, false) else {
                    self.errors += 1;
                    return;
                };
                let cap = self.cfg.body_cap;
                let Some(s) = self.stream(sid, ts, false, out) else {
                    return;
                };
                if s.half(dir).body.is_none() {
                    let grpc = s.grpc();
                    let own = s.half(dir).headers.as_deref();
                    let grpc_encoding = header(own, "grpc-encoding").map(str::to_string);
                    // gRPC compresses per message (`grpc-encoding`), not the whole body.
                    let body = Body::new(header(own, "content-encoding").filter(|_| !grpc), cap);
                    let h = s.half(dir);
                    h.body = Some(body);
                    h.is_grpc = grpc;
                    h.grpc_encoding = grpc_encoding;
                }
                let h = s.half(dir);
                h.wire += wire;
                h.data_frames += 1;
                if let Some(b) = h.body.as_mut() {
                    b.write(data);
                }
                if h.is_grpc {
                    h.grpc.write(data, h.grpc_encoding.as_deref());
                }
                if flags & END_STREAM != 0 {
                    h.ended = true;
                    h.end_ts = Some(ts);
                    self.maybe_done(sid, out);
                }
            }
            HEADERS | PUSH_PROMISE if sid != 0 => {
                let Some(mut frag) = unpad(flags, payload, ty == HEADERS) else {
                    self.fail(dir);
                    return;
                };
                let mut promised = None;
                if ty == PUSH_PROMISE {
                    let Some(p) = frag.get(..4) else {
                        self.fail(dir);
                        return;
                    };
                    promised = Some(u32::from_be_bytes([p[0], p[1], p[2], p[3]]) & 0x7fff_ffff);
                    frag = &frag[4..];
                }
                if let Some(s) = self.stream(sid, ts, ty == HEADERS, out) {
                    s.half(dir).wire += wire;
                }
                let block = Block {
                    stream: sid,
                    end_stream: ty == HEADERS && flags & END_STREAM != 0,
                    promised,
                    bytes: frag.to_vec(),
                };
                if flags & END_HEADERS != 0 {
                    self.header_block(dir, ts, block, out);
                } else {
                    self.side(dir).block = Some(block);
                }
            }
            CONTINUATION => {
                let Some(mut block) = self.side(dir).block.take() else {
                    self.fail(dir);
                    return;
                };
                if block.stream != sid || block.bytes.len() + payload.len() > MAX_HEADER_BLOCK {
                    self.fail(dir);
                    return;
                }
                block.bytes.extend_from_slice(payload);
                if let Some(s) = self.stream(sid, ts, false, out) {
                    s.half(dir).wire += wire;
                }
                if flags & END_HEADERS != 0 {
                    self.header_block(dir, ts, block, out);
                } else {
                    self.side(dir).block = Some(block);
                }
            }
            RST_STREAM if sid != 0 => {
                let code = payload
                    .get(..4)
                    .map_or(0, |c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]));
                if let Some(s) = self.stream(sid, ts, false, out) {
                    let first = s.reset.is_none();
                    if first {
                        s.reset = Some((dir, code));
                        s.reset_ts = ts;
                    }
                    let h = s.half(dir);
                    h.ended = true;
                    h.end_ts.get_or_insert(ts);
                    if first {
                        if self.resets.len() >= MAX_STREAMS {
                            self.sweep_resets(i64::MAX, out);
                        }
                        self.resets.push_back((ts, sid));
                    }
                    self.maybe_done(sid, out);
                }
            }
            GOAWAY => {
                if let Some(p) = payload.get(..8) {
                    let last = u32::from_be_bytes([p[0], p[1], p[2], p[3]]) & 0x7fff_ffff;
                    let code = u32::from_be_bytes([p[4], p[5], p[6], p[7]]);
                    self.goaway = Some((dir, last, code));
                }
            }
            _ => {} // SETTINGS, PING, PRIORITY, WINDOW_UPDATE, unknown extension frames
        }
    }

    fn header_block(&mut self, dir: Dir, ts: i64, block: Block, out: &mut Vec<Entry>) {
        let side = self.side(dir);
        let decoded = side.hpack.decode(&block.bytes);
        let Ok(headers) = decoded else {
            // The dynamic table is now unknown: every later block would decode wrongly.
            self.fail(dir);
            return;
        };
        if let Some(promised) = block.promised {
            // A server push: the promised request, answered on the promised stream.
            let Some(s) = self.stream(promised, ts, true, out) else {
                return;
            };
            s.pushed = true;
            s.req.headers = Some(headers);
            s.req.ended = true;
            return;
        }
        let sid = block.stream;
        // Decoded even for a closed stream: the HPACK table must see every block.
        let Some(s) = self.stream(sid, ts, false, out) else {
            return;
        };
        let status = header(Some(&headers), ":status").and_then(|v| v.parse::<i32>().ok());
        match dir {
            Dir::Request if s.req.headers.is_none() => {
                s.ts = ts;
                s.req.headers = Some(headers);
            }
            Dir::Response if s.resp.headers.is_none() => match status {
                Some(code) if (100..200).contains(&code) => s.interim.push(code),
                _ => {
                    s.resp_ts = Some(ts);
                    s.resp.headers = Some(headers);
                }
            },
            _ => s.half(dir).trailers.extend(headers),
        }
        if block.end_stream {
            let h = s.half(dir);
            h.ended = true;
            h.end_ts = Some(ts);
            self.maybe_done(sid, out);
        }
    }

    fn maybe_done(&mut self, sid: u32, out: &mut Vec<Entry>) {
        let done = self
            .streams
            .get(&sid)
            .is_some_and(|s| s.req.ended && s.resp.ended);
        if done {
            if let Some(s) = self.streams.remove(&sid) {
                out.push(self.entry(sid, s, false));
            }
        }
    }

    /// Emits reset streams whose other side stayed silent for [`RESET_GRACE_US`].
    fn sweep_resets(&mut self, now: i64, out: &mut Vec<Entry>) {
        while let Some(&(t, sid)) = self.resets.front() {
            if now.saturating_sub(t) <= RESET_GRACE_US {
                break;
            }
            self.resets.pop_front();
            // Streams that finished meanwhile are gone already.
            if let Some(s) = self.streams.remove(&sid) {
                out.push(self.entry(sid, s, false));
            }
        }
    }

    /// The entry of a finished (or abandoned) stream.
    fn entry(&self, sid: u32, mut s: Stream, incomplete: bool) -> Entry {
        let grpc = s.grpc();
        let mut e = Entry::new(EntryId([0; 16]), s.ts, "", "http2", "");
        let mut req = Map::new();
        let mut resp = Map::new();
        req.insert("version".into(), json!("HTTP/2"));
        req.insert("stream".into(), json!(sid));
        if s.upgraded {
            req.insert("upgrade".into(), json!("h2c"));
        }
        if s.pushed {
            req.insert("pushed".into(), json!(true));
        }
        let req_h = s.req.headers.as_deref();
        e.method = header(req_h, ":method").map(str::to_string);
        e.path = header(req_h, ":path").map(str::to_string);
        if let Some(a) = header(req_h, ":authority") {
            req.insert("authority".into(), json!(a));
        }
        e.status = header(s.resp.headers.as_deref(), ":status").and_then(|v| v.parse().ok());
        e.elapsed_us = s.resp_ts.map(|t| t.saturating_sub(s.ts));
        e.request_size = s.req.wire;
        e.response_size = s.resp.wire;
        let (req_body, req_trunc, req_err) =
            s.req.body.take().map(Body::finish).unwrap_or_default();
        let (resp_body, resp_trunc, resp_err) =
            s.resp.body.take().map(Body::finish).unwrap_or_default();
        if req_err || resp_err {
            resp.insert("body_decode_error".into(), json!(true));
        }
        if grpc {
            e.protocol = "grpc".into();
            e.method = e.path.clone();
            let mut g = s.req.grpc.detail();
            if let Some((svc, m)) = e
                .path
                .as_deref()
                .and_then(|p| p.trim_start_matches('/').split_once('/'))
            {
                g["service"] = json!(svc);
                g["method"] = json!(m);
            }
            req.insert("grpc".into(), g);
            // The status is in the trailers, or in the headers of a trailers-only response.
            let code = header(Some(&s.resp.trailers), "grpc-status")
                .or_else(|| header(s.resp.headers.as_deref(), "grpc-status"))
                .and_then(|v| v.trim().parse::<i32>().ok());
            let message = header(Some(&s.resp.trailers), "grpc-message")
                .or_else(|| header(s.resp.headers.as_deref(), "grpc-message"))
                .map(str::to_string);
            let mut g = s.resp.grpc.detail();
            if let Some(code) = code {
                g["status"] = json!(code);
                g["status_name"] = json!(grpc::status_name(code));
            }
            if let Some(m) = &message {
                g["message"] = json!(m);
            }
            if s.req.grpc.incomplete() || s.resp.grpc.incomplete() {
                g["incomplete_message"] = json!(true);
            }
            resp.insert("grpc".into(), g);
            resp.insert("http_status".into(), json!(e.status));
            e.status = code;
            e.status_text = message.or_else(|| code.map(|c| grpc::status_name(c).to_string()));
        } else if let (Some(m), Some(p)) = (e.method.as_deref(), e.path.as_deref()) {
            if let Some(g) = graphql::request(m, p, req_h.unwrap_or_default(), &req_body) {
                e.protocol = "graphql".into();
                req.insert("graphql".into(), g);
                if let Some(r) = graphql::response(&resp_body) {
                    resp.insert("graphql".into(), r);
                }
            }
        }
        if let Some(end) = s.resp.end_ts {
            resp.insert("duration_us".into(), json!(end.saturating_sub(s.ts)));
        }
        if !s.interim.is_empty() {
            resp.insert("interim".into(), json!(s.interim));
        }
        if let Some((by, code)) = s.reset {
            let by = if by == Dir::Request {
                "client"
            } else {
                "server"
            };
            resp.insert("reset".into(), json!({"by": by, "error": error_name(code)}));
            if e.status_text.is_none() || e.status.is_none() {
                e.status_text = Some(format!("RST_STREAM {}", error_name(code)));
            }
        }
        if let Some((by, last, code)) = self.goaway {
            if sid > last && !s.resp.ended {
                let by = if by == Dir::Request {
                    "client"
                } else {
                    "server"
                };
                resp.insert(
                    "goaway".into(),
                    json!({"by": by, "last_stream": last, "error": error_name(code)}),
                );
                e.status_text
                    .get_or_insert_with(|| format!("GOAWAY {}", error_name(code)));
            }
        }
        if incomplete || !(s.req.ended && (s.resp.ended || s.reset.is_some())) {
            resp.insert("incomplete".into(), json!(true));
        }
        for (half, d) in [(&s.req, &mut req), (&s.resp, &mut resp)] {
            if !half.trailers.is_empty() {
                let t: Map<String, Value> = half
                    .trailers
                    .iter()
                    .map(|(k, v)| (k.clone(), json!(v)))
                    .collect();
                d.insert("trailers".into(), Value::Object(t));
            }
            d.insert("data_frames".into(), json!(half.data_frames));
        }
        e.request_headers = s.req.headers.map(|mut h| {
            h.extend(s.req.trailers);
            h
        });
        let has_resp = s.resp.headers.is_some() || s.reset.is_some();
        e.response_headers = s.resp.headers.map(|mut h| {
            h.extend(s.resp.trailers);
            h
        });
        e.request_body = (!req_body.is_empty()).then_some(req_body);
        e.response_body = (!resp_body.is_empty()).then_some(resp_body);
        e.request_body_truncated = req_trunc;
        e.response_body_truncated = resp_trunc;
        e.request = Some(Value::Object(req).to_string());
        if has_resp || incomplete {
            e.response = Some(Value::Object(resp).to_string());
        }
        e
    }
}

impl Parser for Http2Parser {
    fn data(&mut self, dir: Dir, ts: i64, data: &[u8], out: &mut Vec<Entry>) {
        if self.side(dir).dead || data.is_empty() {
            return;
        }
        if self
            .resets
            .front()
            .is_some_and(|(t, _)| ts.saturating_sub(*t) > RESET_GRACE_US)
        {
            self.sweep_resets(ts, out);
        }
        let mut buf = std::mem::take(&mut self.side(dir).buf);
        if buf.is_empty() {
            let used = self.process(dir, ts, data, out);
            buf.extend_from_slice(data.get(used..).unwrap_or_default());
        } else {
            buf.extend_from_slice(data);
            let used = self.process(dir, ts, &buf, out);
            buf.drain(..used.min(buf.len()));
        }
        if !self.side(dir).dead {
            self.side(dir).buf = buf;
        }
    }

    /// Missing bytes break both the framing and the HPACK state of that direction.
    fn gap(&mut self, dir: Dir, _len: u64, _out: &mut Vec<Entry>) {
        if !self.side(dir).dead {
            self.fail(dir);
        }
    }

    fn end(&mut self, out: &mut Vec<Entry>) {
        let streams = std::mem::take(&mut self.streams);
        for (sid, s) in streams {
            out.push(self.entry(sid, s, true));
        }
    }

    fn errors(&self) -> u64 {
        self.errors
    }
}

#[cfg(test)]
mod tests;
