//! HTTP/1.0 and HTTP/1.1: keep-alive, pipelining (responses pair with requests in order, a
//! FIFO of pending requests per connection), Content-Length, chunked bodies with trailers in
//! both directions, gzip/deflate bodies, `Expect: 100-continue` and other interim 1xx
//! responses, bodiless HEAD/204/304 responses, read-until-close responses, and
//! `101 Switching Protocols` (after which the connection is no longer HTTP/1 and is left
//! alone). Bodies stream through [`Body`], so a message costs at most `body_cap` plus
//! [`MAX_HEAD`] bytes of memory however large it is on the wire.

use std::collections::VecDeque;

use serde_json::{json, Map, Value};
use wiretrail_proto::{Entry, EntryId};

use super::body::Body;
use super::graphql;
use super::http2::Http2Parser;
use super::{Dir, DissectConfig, Dissector, Parser, Probe};

/// Largest request/status line plus headers buffered before the message is called malformed.
const MAX_HEAD: usize = 64 * 1024;
const MAX_HEADERS: usize = 256;
/// Longest chunk-size or trailer line accepted.
const MAX_CHUNK_LINE: usize = 4096;
/// Requests waiting for their responses; beyond this the oldest is emitted one-way (a
/// server that never answers must not grow memory without bound).
const MAX_PENDING: usize = 256;
/// Longest method token accepted when looking for a request line.
const MAX_METHOD: usize = 24;

pub struct Http1;

fn first_line(data: &[u8]) -> Option<&[u8]> {
    data.windows(2)
        .position(|w| w == b"\r\n")
        .map(|i| &data[..i])
}

fn is_method_char(b: u8) -> bool {
    b.is_ascii_uppercase() || b == b'-' || b == b'_'
}

/// `METHOD SP target SP HTTP/1.x`; `None` when the line is not complete yet.
fn request_line_ok(data: &[u8]) -> Option<bool> {
    let tok = data.iter().take_while(|b| is_method_char(**b)).count();
    if tok == data.len() && tok < MAX_METHOD {
        return None;
    }
    if tok == 0 || tok > MAX_METHOD || data.get(tok) != Some(&b' ') {
        return Some(false);
    }
    match first_line(data) {
        Some(line) => Some(line.ends_with(b" HTTP/1.1") || line.ends_with(b" HTTP/1.0")),
        None if data.len() < 8192 && !data.contains(&b'\n') => None,
        None => Some(false),
    }
}

/// `HTTP/1.x SP 3DIGIT`; `None` when too short to tell.
fn status_line_ok(data: &[u8]) -> Option<bool> {
    let p = b"HTTP/1.";
    if data.len() < 12 {
        return if p.starts_with(&data[..data.len().min(p.len())]) {
            None
        } else {
            Some(false)
        };
    }
    Some(
        data.starts_with(p)
            && matches!(data[7], b'0' | b'1')
            && data[8] == b' '
            && data[9..12].iter().all(u8::is_ascii_digit),
    )
}

fn plausible_start(dir: Dir, data: &[u8]) -> bool {
    let ok = match dir {
        Dir::Request => request_line_ok(data),
        Dir::Response => status_line_ok(data),
    };
    ok != Some(false)
}

impl Dissector for Http1 {
    fn name(&self) -> &'static str {
        "http"
    }

    fn probe_stream(&self, data: &[u8]) -> Probe {
        match (request_line_ok(data), status_line_ok(data)) {
            (Some(true), _) => Probe::Client,
            (_, Some(true)) => Probe::Server,
            (Some(false), Some(false)) => Probe::No,
            _ => Probe::NeedMore,
        }
    }

    fn new_stream(&self, cfg: &DissectConfig) -> Box<dyn Parser> {
        Box::new(Http1Parser::new(cfg.clone()))
    }

    fn port_hint(&self, port: u16) -> bool {
        matches!(port, 80 | 8000 | 8080 | 8081 | 3000 | 5000 | 9090)
    }
}

enum Chunk {
    Size,
    Data(u64),
    DataEnd,
    Trailers,
}

enum Mode {
    Length(u64),
    Chunked(Chunk),
    UntilClose,
}

/// A message whose head is parsed and whose body is being read.
struct Msg {
    head_len: u64,
    mode: Mode,
    body: Body,
    wire_body: u64,
    trailers: Vec<(String, String)>,
    /// Bytes of this message were missing from the capture, or its framing was broken.
    incomplete: bool,
}

/// One direction's parse state.
#[derive(Default)]
struct Side {
    /// Bytes not consumed yet (a partial head or chunk line), at most about [`MAX_HEAD`].
    buf: Vec<u8>,
    /// (offset in `buf`, capture time) of each packet's bytes in `buf`.
    marks: Vec<(usize, i64)>,
    msg: Option<Box<Msg>>,
    /// Looking for the next plausible message start after malformed bytes or a gap.
    resync: bool,
    /// While resyncing, offset 0 of the next bytes may itself be a message start.
    resync_here: bool,
}

/// One request and (once it arrives) its response.
struct Exchange {
    entry: Entry,
    req_detail: Map<String, Value>,
    resp_detail: Map<String, Value>,
    req_done: bool,
    has_resp: bool,
    resp_done: bool,
}

pub struct Http1Parser {
    cfg: DissectConfig,
    req: Side,
    resp: Side,
    exchanges: VecDeque<Exchange>,
    /// After `101 Switching Protocols` or a successful CONNECT the bytes are not HTTP/1.
    upgraded: bool,
    /// After an upgrade to h2c the connection continues as HTTP/2.
    h2: Option<Box<Http2Parser>>,
    errors: u64,
}

enum Head {
    Complete(usize, Option<Box<Msg>>),
    Partial,
    Invalid,
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn parse_headers(h: &[httparse::Header]) -> Vec<(String, String)> {
    h.iter()
        .map(|h| {
            (
                h.name.to_string(),
                String::from_utf8_lossy(h.value).into_owned(),
            )
        })
        .collect()
}

fn is_chunked(headers: &[(String, String)]) -> bool {
    header(headers, "transfer-encoding")
        .and_then(|te| te.rsplit(',').next())
        .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"))
}

/// The Content-Length (the first of a repeated list such as `12, 12`).
fn content_length(headers: &[(String, String)]) -> Option<u64> {
    header(headers, "content-length").and_then(|v| v.split(',').next()?.trim().parse().ok())
}

/// Capture time of the byte at `pos`, from the packet marks of the buffer.
fn ts_at(marks: &[(usize, i64)], pos: usize) -> i64 {
    marks
        .iter()
        .rev()
        .find(|(at, _)| *at <= pos)
        .or(marks.first())
        .map_or(0, |m| m.1)
}

/// Where the next plausible message start is in `data` (a line start that looks like a
/// request or status line, or offset 0 when `here`).
fn find_start(dir: Dir, data: &[u8], here: bool) -> Option<usize> {
    if here && plausible_start(dir, data) {
        return Some(0);
    }
    let mut from = 0;
    while let Some(i) = data[from..].iter().position(|b| *b == b'\n') {
        let at = from + i + 1;
        if at < data.len() && plausible_start(dir, &data[at..]) {
            return Some(at);
        }
        from = at;
    }
    None
}

impl Http1Parser {
    fn new(cfg: DissectConfig) -> Self {
        Http1Parser {
            cfg,
            req: Side::default(),
            resp: Side::default(),
            exchanges: VecDeque::new(),
            upgraded: false,
            h2: None,
            errors: 0,
        }
    }

    fn new_msg(&self, head_len: usize, mode: Mode, headers: &[(String, String)]) -> Msg {
        Msg {
            head_len: head_len as u64,
            mode,
            body: Body::new(header(headers, "content-encoding"), self.cfg.body_cap),
            wire_body: 0,
            trailers: Vec::new(),
            incomplete: false,
        }
    }

    /// Parses a request head at the start of `data`.
    fn request_head(&mut self, data: &[u8], ts: i64, out: &mut Vec<Entry>) -> Head {
        let mut hs = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut r = httparse::Request::new(&mut hs);
        let n = match r.parse(data) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => return Head::Partial,
            Err(_) => return Head::Invalid,
        };
        let headers = parse_headers(r.headers);
        let mode = if is_chunked(&headers) {
            Some(Mode::Chunked(Chunk::Size))
        } else {
            content_length(&headers)
                .filter(|l| *l > 0)
                .map(Mode::Length)
        };
        let mut e = Entry::new(EntryId([0; 16]), ts, "", "http", "");
        e.method = r.method.map(str::to_string);
        e.path = r.path.map(str::to_string);
        e.request_size = n as u64;
        let mut detail = Map::new();
        detail.insert(
            "version".into(),
            json!(format!("HTTP/1.{}", r.version.unwrap_or(1))),
        );
        detail.insert("target".into(), json!(r.path));
        let msg = mode.map(|m| Box::new(self.new_msg(n, m, &headers)));
        e.request_headers = Some(headers);
        if self.exchanges.len() >= MAX_PENDING {
            if let Some(x) = self.exchanges.pop_front() {
                out.push(Self::into_entry(x));
            }
        }
        self.exchanges.push_back(Exchange {
            entry: e,
            req_detail: detail,
            resp_detail: Map::new(),
            req_done: msg.is_none(),
            has_resp: false,
            resp_done: false,
        });
        Head::Complete(n, msg)
    }

    /// Parses a response head at the start of `data`.
    fn response_head(&mut self, data: &[u8], ts: i64, out: &mut Vec<Entry>) -> Head {
        let mut hs = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut r = httparse::Response::new(&mut hs);
        let n = match r.parse(data) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => return Head::Partial,
            Err(_) => return Head::Invalid,
        };
        let code = r.code.unwrap_or(0);
        let idx = self.exchanges.iter().position(|x| !x.has_resp);
        if (100..200).contains(&code) && code != 101 {
            // Interim (100 Continue, 103 Early Hints): not the answer, but worth noting.
            if let Some(x) = idx.and_then(|i| self.exchanges.get_mut(i)) {
                let interim = x
                    .resp_detail
                    .entry("interim")
                    .or_insert_with(|| Value::Array(Vec::new()));
                if let Value::Array(a) = interim {
                    a.push(json!(code));
                }
            }
            return Head::Complete(n, None);
        }
        let headers = parse_headers(r.headers);
        let method = idx
            .and_then(|i| self.exchanges.get(i))
            .and_then(|x| x.entry.method.clone())
            .unwrap_or_default();
        let tunnel = method == "CONNECT" && (200..300).contains(&code);
        let bodiless = method == "HEAD" || code == 204 || code == 304 || code == 101 || tunnel;
        let mode = if bodiless {
            None
        } else if is_chunked(&headers) {
            Some(Mode::Chunked(Chunk::Size))
        } else {
            match content_length(&headers) {
                Some(0) => None,
                Some(l) => Some(Mode::Length(l)),
                None => Some(Mode::UntilClose),
            }
        };
        let msg = mode.map(|m| Box::new(self.new_msg(n, m, &headers)));
        let i = match idx {
            Some(i) => i,
            None => {
                // A response to a request we did not see (capture started mid-connection).
                if self.exchanges.len() >= MAX_PENDING {
                    if let Some(x) = self.exchanges.pop_front() {
                        out.push(Self::into_entry(x));
                    }
                }
                self.exchanges.push_back(Exchange {
                    entry: Entry::new(EntryId([0; 16]), ts, "", "http", ""),
                    req_detail: Map::new(),
                    resp_detail: Map::new(),
                    req_done: true,
                    has_resp: false,
                    resp_done: false,
                });
                self.exchanges.len() - 1
            }
        };
        let Some(x) = self.exchanges.get_mut(i) else {
            return Head::Complete(n, msg);
        };
        x.has_resp = true;
        x.resp_done = msg.is_none();
        let e = &mut x.entry;
        e.status = Some(i32::from(code));
        e.status_text = r.reason.map(str::to_string);
        e.response_size = n as u64;
        e.response_headers = Some(headers);
        if e.method.is_some() {
            e.elapsed_us = Some(ts.saturating_sub(e.ts_us));
        }
        x.resp_detail.insert(
            "version".into(),
            json!(format!("HTTP/1.{}", r.version.unwrap_or(1))),
        );
        if code == 101 || tunnel {
            self.upgraded = true;
            let to = e
                .response_headers
                .as_deref()
                .and_then(|h| header(h, "upgrade"))
                .map_or_else(|| "tunnel".to_string(), str::to_string);
            let h2c = code == 101 && to.eq_ignore_ascii_case("h2c");
            x.resp_detail.insert("upgrade".into(), json!(to));
            if h2c {
                // RFC 9113 §3.2 (as in RFC 7540): the upgraded request is stream 1 and its
                // response comes as HTTP/2, so its entry is made by the HTTP/2 parser.
                if let Some(x) = self.exchanges.remove(i) {
                    self.h2 = Some(Box::new(Http2Parser::after_upgrade(
                        self.cfg.clone(),
                        &x.entry,
                    )));
                }
            }
        }
        self.emit_ready(out);
        Head::Complete(n, msg)
    }

    fn into_entry(mut x: Exchange) -> Entry {
        let mut e = x.entry;
        if let (Some(m), Some(p)) = (e.method.as_deref(), e.path.as_deref()) {
            let h = e.request_headers.as_deref().unwrap_or_default();
            let body = e.request_body.as_deref().unwrap_or_default();
            if let Some(g) = graphql::request(m, p, h, body) {
                e.protocol = "graphql".into();
                x.req_detail.insert("graphql".into(), g);
                if let Some(r) = e.response_body.as_deref().and_then(graphql::response) {
                    x.resp_detail.insert("graphql".into(), r);
                }
            }
        }
        if e.method.is_some() {
            e.request = Some(Value::Object(x.req_detail).to_string());
        }
        if x.has_resp {
            e.response = Some(Value::Object(x.resp_detail).to_string());
        }
        e
    }

    /// Moves finished exchanges at the front of the queue to `out`, in order.
    fn emit_ready(&mut self, out: &mut Vec<Entry>) {
        while self
            .exchanges
            .front()
            .is_some_and(|x| x.req_done && x.resp_done)
        {
            if let Some(x) = self.exchanges.pop_front() {
                out.push(Self::into_entry(x));
            }
        }
    }

    /// Stores a finished message's size, body and trailers into its exchange.
    fn finish_msg(&mut self, dir: Dir, msg: Box<Msg>, out: &mut Vec<Entry>) {
        let msg = *msg;
        let encoding = msg.body.encoding().map(str::to_string);
        let (body, truncated, decode_error) = msg.body.finish();
        let chunked = matches!(msg.mode, Mode::Chunked(_));
        let x = match dir {
            Dir::Request => self.exchanges.iter_mut().rev().find(|x| !x.req_done),
            Dir::Response => self
                .exchanges
                .iter_mut()
                .find(|x| x.has_resp && !x.resp_done),
        };
        let Some(x) = x else { return };
        let e = &mut x.entry;
        let (size, headers, body_slot, trunc_slot, d) = match dir {
            Dir::Request => (
                &mut e.request_size,
                &mut e.request_headers,
                &mut e.request_body,
                &mut e.request_body_truncated,
                &mut x.req_detail,
            ),
            Dir::Response => (
                &mut e.response_size,
                &mut e.response_headers,
                &mut e.response_body,
                &mut e.response_body_truncated,
                &mut x.resp_detail,
            ),
        };
        *size = msg.head_len + msg.wire_body;
        if let Some(h) = headers.as_mut() {
            h.extend(msg.trailers.iter().cloned());
        }
        *body_slot = (!body.is_empty()).then_some(body);
        *trunc_slot = truncated;
        if chunked {
            d.insert("chunked".into(), json!(true));
        }
        if let Some(enc) = encoding {
            d.insert("content_encoding".into(), json!(enc));
        }
        if !msg.trailers.is_empty() {
            let t: Map<String, Value> = msg
                .trailers
                .into_iter()
                .map(|(k, v)| (k, Value::String(v)))
                .collect();
            d.insert("trailers".into(), Value::Object(t));
        }
        if decode_error {
            d.insert("body_decode_error".into(), json!(true));
        }
        if msg.incomplete {
            d.insert("incomplete".into(), json!(true));
        }
        match dir {
            Dir::Request => x.req_done = true,
            Dir::Response => x.resp_done = true,
        }
        self.emit_ready(out);
    }

    /// Feeds body bytes; returns how many were used and whether the body is complete.
    fn feed_body(msg: &mut Msg, data: &[u8], errors: &mut u64) -> (usize, bool) {
        let mut used = 0;
        loop {
            let rest = &data[used..];
            match &mut msg.mode {
                Mode::Length(rem) => {
                    let take = (*rem).min(rest.len() as u64) as usize;
                    msg.body.write(&rest[..take]);
                    msg.wire_body += take as u64;
                    *rem -= take as u64;
                    return (used + take, *rem == 0);
                }
                Mode::UntilClose => {
                    msg.body.write(rest);
                    msg.wire_body += rest.len() as u64;
                    return (data.len(), false);
                }
                Mode::Chunked(state) => match state {
                    Chunk::Size | Chunk::Trailers => {
                        let Some(line) = first_line(rest) else {
                            if rest.len() > MAX_CHUNK_LINE {
                                *errors += 1;
                                msg.incomplete = true;
                                return (used, true);
                            }
                            return (used, false);
                        };
                        let n = line.len() + 2;
                        if matches!(state, Chunk::Trailers) {
                            msg.wire_body += n as u64;
                            used += n;
                            if line.is_empty() {
                                return (used, true);
                            }
                            let text = String::from_utf8_lossy(line);
                            if let Some((k, v)) = text.split_once(':') {
                                msg.trailers
                                    .push((k.trim().to_string(), v.trim().to_string()));
                            }
                            continue;
                        }
                        let hex = String::from_utf8_lossy(line);
                        let hex = hex.split(';').next().unwrap_or("").trim();
                        match u64::from_str_radix(hex, 16) {
                            Ok(size) => {
                                msg.wire_body += n as u64;
                                used += n;
                                *state = if size == 0 {
                                    Chunk::Trailers
                                } else {
                                    Chunk::Data(size)
                                };
                            }
                            Err(_) => {
                                // Broken framing: the message ends here and the bytes are
                                // resynchronised past as a new message.
                                *errors += 1;
                                msg.incomplete = true;
                                return (used, true);
                            }
                        }
                    }
                    Chunk::Data(rem) => {
                        if rest.is_empty() {
                            return (used, false);
                        }
                        let take = (*rem).min(rest.len() as u64) as usize;
                        msg.body.write(&rest[..take]);
                        msg.wire_body += take as u64;
                        used += take;
                        *rem -= take as u64;
                        if *rem == 0 {
                            *state = Chunk::DataEnd;
                        }
                    }
                    Chunk::DataEnd => {
                        if rest.len() < 2 {
                            return (used, false);
                        }
                        if &rest[..2] == b"\r\n" {
                            used += 2;
                            msg.wire_body += 2;
                        } else {
                            *errors += 1;
                            msg.incomplete = true;
                        }
                        *state = Chunk::Size;
                    }
                },
            }
        }
    }

    /// Parses as much of `input` as possible; returns the bytes consumed.
    fn process(
        &mut self,
        dir: Dir,
        side: &mut Side,
        input: &[u8],
        marks: &[(usize, i64)],
        out: &mut Vec<Entry>,
    ) -> usize {
        let mut pos = 0;
        while pos < input.len() && !self.upgraded {
            if let Some(msg) = side.msg.as_mut() {
                let (used, done) = Self::feed_body(msg, &input[pos..], &mut self.errors);
                pos += used;
                if done {
                    if let Some(m) = side.msg.take() {
                        self.finish_msg(dir, m, out);
                    }
                    continue;
                }
                break;
            }
            if side.resync {
                match find_start(dir, &input[pos..], side.resync_here) {
                    Some(off) => {
                        pos += off;
                        side.resync = false;
                    }
                    None => {
                        // Keep a short tail: a message may start right after its last line
                        // break once more bytes arrive.
                        side.resync_here = false;
                        let tail = input[pos..]
                            .iter()
                            .rposition(|b| *b == b'\n')
                            .map_or(input.len(), |i| pos + i);
                        return tail.max(input.len().saturating_sub(MAX_HEAD));
                    }
                }
            }
            let ts = ts_at(marks, pos);
            let head = match dir {
                Dir::Request => self.request_head(&input[pos..], ts, out),
                Dir::Response => self.response_head(&input[pos..], ts, out),
            };
            match head {
                Head::Complete(n, msg) => {
                    pos += n;
                    side.msg = msg;
                }
                Head::Partial if input.len() - pos <= MAX_HEAD => break,
                Head::Partial | Head::Invalid => {
                    self.errors += 1;
                    side.resync = true;
                    side.resync_here = false;
                    pos += 1;
                }
            }
        }
        pos
    }

    fn side_mut(&mut self, dir: Dir) -> &mut Side {
        match dir {
            Dir::Request => &mut self.req,
            Dir::Response => &mut self.resp,
        }
    }
}

impl Parser for Http1Parser {
    fn data(&mut self, dir: Dir, ts: i64, data: &[u8], out: &mut Vec<Entry>) {
        if let Some(h2) = self.h2.as_mut() {
            return h2.data(dir, ts, data, out);
        }
        if self.upgraded || data.is_empty() {
            return;
        }
        let mut side = std::mem::take(self.side_mut(dir));
        if side.buf.is_empty() {
            // The common case: parse straight from the segment, keep only what is left.
            let marks = [(0, ts)];
            let used = self.process(dir, &mut side, data, &marks, out);
            if let Some(rest) = data.get(used..) {
                side.buf.extend_from_slice(rest);
            }
            side.marks.clear();
            side.marks.push((0, ts));
        } else {
            let mut buf = std::mem::take(&mut side.buf);
            let mut marks = std::mem::take(&mut side.marks);
            marks.push((buf.len(), ts));
            buf.extend_from_slice(data);
            let used = self.process(dir, &mut side, &buf, &marks, out);
            let first = ts_at(&marks, used);
            buf.drain(..used.min(buf.len()));
            marks.retain(|(at, _)| *at > used);
            for m in &mut marks {
                m.0 -= used;
            }
            marks.insert(0, (0, first));
            side.buf = buf;
            side.marks = marks;
        }
        if self.upgraded {
            // What follows the `101` in the same segment is already HTTP/2 (or not ours).
            let rest = std::mem::take(&mut side.buf);
            if let Some(h2) = self.h2.as_mut() {
                h2.data(dir, ts, &rest, out);
            }
        }
        *self.side_mut(dir) = side;
    }

    fn gap(&mut self, dir: Dir, len: u64, out: &mut Vec<Entry>) {
        if let Some(h2) = self.h2.as_mut() {
            return h2.gap(dir, len, out);
        }
        let mut side = std::mem::take(self.side_mut(dir));
        side.buf.clear();
        side.marks.clear();
        if let Some(mut msg) = side.msg.take() {
            msg.incomplete = true;
            // A hole inside a body whose end is still known: keep counting through it.
            let inside = match &mut msg.mode {
                Mode::Length(rem) | Mode::Chunked(Chunk::Data(rem)) if len < *rem => {
                    *rem -= len;
                    true
                }
                Mode::UntilClose => true,
                _ => false,
            };
            if inside {
                msg.wire_body += len;
                side.msg = Some(msg);
                *self.side_mut(dir) = side;
                return;
            }
            self.finish_msg(dir, msg, out);
        }
        side.resync = true;
        side.resync_here = true;
        *self.side_mut(dir) = side;
    }

    fn end(&mut self, out: &mut Vec<Entry>) {
        for dir in [Dir::Request, Dir::Response] {
            if let Some(mut msg) = self.side_mut(dir).msg.take() {
                if !matches!(msg.mode, Mode::UntilClose) {
                    msg.incomplete = true;
                }
                self.finish_msg(dir, msg, out);
            }
        }
        // Requests without a response are still entries (one-way, no elapsed time).
        out.extend(self.exchanges.drain(..).map(Self::into_entry));
        if let Some(h2) = self.h2.as_mut() {
            h2.end(out);
        }
    }

    fn errors(&self) -> u64 {
        self.errors + self.h2.as_ref().map_or(0, |h| h.errors())
    }

    fn upgraded(&self) -> bool {
        self.upgraded && self.h2.is_none()
    }
}

#[cfg(test)]
mod tests;
