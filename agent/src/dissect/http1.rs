//! HTTP/1.0 and HTTP/1.1: keep-alive, pipelining (responses pair with requests in order),
//! Content-Length, chunked bodies with trailers in both directions, gzip/deflate bodies,
//! `Expect: 100-continue` and other interim 1xx responses, bodiless HEAD/204/304 responses,
//! read-until-close responses, and `101 Switching Protocols` (after which the connection is no
//! longer HTTP/1 and is left alone).

use std::collections::VecDeque;

use serde_json::{json, Map, Value};
use wiretrail_proto::{Entry, EntryId};

use super::body::Body;
use super::{Dir, DissectConfig, Dissector, Parser, Probe};

/// Largest request/status line plus headers we buffer before calling the message malformed.
const MAX_HEAD: usize = 64 * 1024;
const MAX_HEADERS: usize = 256;
const MAX_CHUNK_LINE: usize = 4096;

pub struct Http1;

fn first_line(data: &[u8]) -> Option<&[u8]> {
    data.windows(2)
        .position(|w| w == b"\r\n")
        .map(|i| &data[..i])
}

fn is_token_char(b: u8) -> bool {
    b.is_ascii_uppercase() || b == b'-' || b == b'_'
}

/// `METHOD SP target SP HTTP/1.x`; `None` when the line is not complete yet.
fn request_line_ok(data: &[u8]) -> Option<bool> {
    let tok = data.iter().take_while(|b| is_token_char(**b)).count();
    if tok == data.len() && tok < 24 {
        return None;
    }
    if tok == 0 || tok > 24 || data.get(tok) != Some(&b' ') {
        return Some(false);
    }
    match first_line(data) {
        Some(line) => Some(line.ends_with(b" HTTP/1.1") || line.ends_with(b" HTTP/1.0")),
        None if data.len() < 8192 => None,
        None => Some(false),
    }
}

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
    gap: bool,
}

#[derive(Default)]
struct Side {
    buf: Vec<u8>,
    /// Capture time of the packet that carried `buf[0]`.
    buf_ts: i64,
    msg: Option<Msg>,
}

/// One request and (once it arrives) its response.
struct Exchange {
    entry: Entry,
    req_done: bool,
    has_resp: bool,
}

pub struct Http1Parser {
    cfg: DissectConfig,
    req: Side,
    resp: Side,
    exchanges: VecDeque<Exchange>,
    /// After `101 Switching Protocols` or a successful CONNECT the bytes are not HTTP/1.
    upgraded: bool,
    errors: u64,
}

enum Head {
    Complete(usize),
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

fn content_length(headers: &[(String, String)]) -> Option<u64> {
    header(headers, "content-length").and_then(|v| v.trim().parse().ok())
}

impl Http1Parser {
    fn new(cfg: DissectConfig) -> Self {
        Http1Parser {
            cfg,
            req: Side::default(),
            resp: Side::default(),
            exchanges: VecDeque::new(),
            upgraded: false,
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
            gap: false,
        }
    }

    /// Parses a request head at the start of `data`.
    fn request_head(&mut self, data: &[u8], ts: i64) -> Head {
        let mut hs = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut r = httparse::Request::new(&mut hs);
        let n = match r.parse(data) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => return Head::Partial,
            Err(_) => return Head::Invalid,
        };
        let headers = parse_headers(r.headers);
        let method = r.method.unwrap_or_default().to_string();
        let mode = if is_chunked(&headers) {
            Some(Mode::Chunked(Chunk::Size))
        } else {
            content_length(&headers)
                .filter(|l| *l > 0)
                .map(Mode::Length)
        };
        let mut e = Entry::new(EntryId([0; 16]), ts, "", "http", "");
        e.method = Some(method);
        e.path = r.path.map(str::to_string);
        let mut detail = Map::new();
        detail.insert(
            "version".into(),
            json!(format!("HTTP/1.{}", r.version.unwrap_or(1))),
        );
        detail.insert("target".into(), json!(r.path));
        e.request = Some(Value::Object(detail).to_string());
        e.request_size = n as u64;
        e.request_headers = Some(headers.clone());
        let msg = mode.map(|m| self.new_msg(n, m, &headers));
        let done = msg.is_none();
        self.exchanges.push_back(Exchange {
            entry: e,
            req_done: done,
            has_resp: false,
        });
        self.req.msg = msg;
        Head::Complete(n)
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
        if (100..200).contains(&code) && code != 101 {
            return Head::Complete(n); // interim (100 Continue, 103 Early Hints): not the answer
        }
        let headers = parse_headers(r.headers);
        let idx = self.exchanges.iter().position(|x| !x.has_resp);
        let method = idx
            .and_then(|i| self.exchanges[i].entry.method.clone())
            .unwrap_or_default();
        let bodiless = method == "HEAD"
            || code == 204
            || code == 304
            || code == 101
            || (method == "CONNECT" && (200..300).contains(&code));
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
        let exchange = match idx {
            Some(i) => &mut self.exchanges[i],
            None => {
                // A response to a request we did not see (capture started mid-connection).
                let e = Entry::new(EntryId([0; 16]), ts, "", "http", "");
                self.exchanges.push_back(Exchange {
                    entry: e,
                    req_done: true,
                    has_resp: false,
                });
                self.exchanges.back_mut().expect("just pushed")
            }
        };
        exchange.has_resp = true;
        let e = &mut exchange.entry;
        e.status = Some(i32::from(code));
        e.status_text = r.reason.map(str::to_string);
        e.response_size = n as u64;
        e.response_headers = Some(headers.clone());
        if e.method.is_some() {
            e.elapsed_us = Some(ts - e.ts_us);
        }
        e.response =
            Some(json!({"version": format!("HTTP/1.{}", r.version.unwrap_or(1))}).to_string());
        if code == 101 || (method == "CONNECT" && (200..300).contains(&code)) {
            self.upgraded = true;
        }
        self.resp.msg = mode.map(|m| self.new_msg(n, m, &headers));
        if self.resp.msg.is_none() {
            self.emit_ready(out);
        }
        Head::Complete(n)
    }

    /// Moves finished exchanges at the front of the queue to `out`, in order.
    fn emit_ready(&mut self, out: &mut Vec<Entry>) {
        while self
            .exchanges
            .front()
            .is_some_and(|x| x.req_done && x.has_resp)
        {
            if let Some(x) = self.exchanges.pop_front() {
                out.push(x.entry);
            }
        }
    }

    /// Stores a finished body into the exchange it belongs to.
    fn finish_msg(&mut self, dir: Dir, out: &mut Vec<Entry>) {
        let side = match dir {
            Dir::Request => &mut self.req,
            Dir::Response => &mut self.resp,
        };
        let Some(msg) = side.msg.take() else { return };
        let encoding = msg.body.encoding().map(str::to_string);
        let (body, truncated, decode_error) = msg.body.finish();
        let chunked = matches!(msg.mode, Mode::Chunked(_));
        let x = match dir {
            Dir::Request => self.exchanges.iter_mut().rev().find(|x| !x.req_done),
            Dir::Response => self.exchanges.iter_mut().rev().find(|x| x.has_resp),
        };
        let Some(x) = x else { return };
        let e = &mut x.entry;
        let (size, headers, body_slot, trunc_slot, detail) = match dir {
            Dir::Request => (
                &mut e.request_size,
                &mut e.request_headers,
                &mut e.request_body,
                &mut e.request_body_truncated,
                &mut e.request,
            ),
            Dir::Response => (
                &mut e.response_size,
                &mut e.response_headers,
                &mut e.response_body,
                &mut e.response_body_truncated,
                &mut e.response,
            ),
        };
        *size = msg.head_len + msg.wire_body;
        if let Some(h) = headers.as_mut() {
            h.extend(msg.trailers.iter().cloned());
        }
        *body_slot = (!body.is_empty()).then_some(body);
        *trunc_slot = truncated;
        let mut d: Map<String, Value> = detail
            .as_deref()
            .and_then(|s| serde_json::from_str(s).ok())
            .unwrap_or_default();
        if chunked {
            d.insert("chunked".into(), json!(true));
        }
        if let Some(enc) = encoding {
            d.insert("content_encoding".into(), json!(enc));
        }
        if !msg.trailers.is_empty() {
            d.insert(
                "trailers".into(),
                json!(msg
                    .trailers
                    .iter()
                    .map(|(k, v)| json!({"name": k, "value": v}))
                    .collect::<Vec<_>>()),
            );
        }
        if decode_error {
            d.insert("body_decode_error".into(), json!(true));
        }
        if msg.gap {
            d.insert("incomplete".into(), json!("bytes missing from the capture"));
        }
        *detail = Some(Value::Object(d).to_string());
        match dir {
            Dir::Request => x.req_done = true,
            Dir::Response => {}
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
                                msg.gap = true;
                                return (data.len(), true);
                            }
                            return (used, false);
                        };
                        let n = line.len() + 2;
                        msg.wire_body += n as u64;
                        used += n;
                        if matches!(state, Chunk::Trailers) {
                            if line.is_empty() {
                                return (used, true);
                            }
                            let text = String::from_utf8_lossy(line);
                            if let Some((k, v)) = text.split_once(':') {
                                msg.trailers
                                    .push((k.trim().to_string(), v.trim().to_string()));
                            }
                        } else {
                            let hex = String::from_utf8_lossy(line);
                            let hex = hex.split(';').next().unwrap_or("").trim();
                            match u64::from_str_radix(hex, 16) {
                                Ok(0) => *state = Chunk::Trailers,
                                Ok(n) => *state = Chunk::Data(n),
                                Err(_) => {
                                    *errors += 1;
                                    msg.gap = true;
                                    return (used, true);
                                }
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
                        }
                        *state = Chunk::Size;
                    }
                },
            }
        }
    }
}

impl Parser for Http1Parser {
    fn data(&mut self, dir: Dir, ts: i64, data: &[u8], out: &mut Vec<Entry>) {
        if self.upgraded {
            return;
        }
        let side = match dir {
            Dir::Request => &mut self.req,
            Dir::Response => &mut self.resp,
        };
        let old_len = side.buf.len();
        if old_len == 0 {
            side.buf_ts = ts;
        }
        side.buf.extend_from_slice(data);
        let mut buf = std::mem::take(&mut side.buf);
        let buf_ts = side.buf_ts;
        let mut pos = 0;
        while pos < buf.len() && !self.upgraded {
            let side = match dir {
                Dir::Request => &mut self.req,
                Dir::Response => &mut self.resp,
            };
            if let Some(msg) = side.msg.as_mut() {
                let (used, done) = Self::feed_body(msg, &buf[pos..], &mut self.errors);
                pos += used;
                if done {
                    self.finish_msg(dir, out);
                    continue;
                }
                break;
            }
            let msg_ts = if pos < old_len { buf_ts } else { ts };
            let head = match dir {
                Dir::Request => self.request_head(&buf[pos..], msg_ts),
                Dir::Response => self.response_head(&buf[pos..], msg_ts, out),
            };
            match head {
                Head::Complete(n) => pos += n,
                Head::Partial if buf.len() - pos <= MAX_HEAD => break,
                Head::Partial | Head::Invalid => {
                    // Not a message start: skip to the next line and try again (resync).
                    self.errors += 1;
                    let rest = &buf[pos..];
                    pos += rest
                        .windows(2)
                        .position(|w| w == b"\r\n")
                        .map_or(rest.len(), |i| i + 2);
                }
            }
        }
        buf.drain(..pos);
        let side = match dir {
            Dir::Request => &mut self.req,
            Dir::Response => &mut self.resp,
        };
        if !buf.is_empty() && pos >= old_len {
            side.buf_ts = ts;
        }
        side.buf = buf;
    }

    fn gap(&mut self, dir: Dir, len: u64, out: &mut Vec<Entry>) {
        self.errors += 1;
        let side = match dir {
            Dir::Request => &mut self.req,
            Dir::Response => &mut self.resp,
        };
        side.buf.clear();
        if let Some(msg) = side.msg.as_mut() {
            msg.gap = true;
            if let Mode::Length(rem) = &mut msg.mode {
                if len < *rem {
                    *rem -= len;
                    msg.wire_body += len;
                    return;
                }
            }
            self.finish_msg(dir, out);
        }
    }

    fn end(&mut self, out: &mut Vec<Entry>) {
        for dir in [Dir::Request, Dir::Response] {
            let side = match dir {
                Dir::Request => &mut self.req,
                Dir::Response => &mut self.resp,
            };
            if let Some(msg) = side.msg.as_mut() {
                if !matches!(msg.mode, Mode::UntilClose) {
                    msg.gap = true;
                }
                self.finish_msg(dir, out);
            }
        }
        // Requests without a response are still entries (one-way, no elapsed time).
        out.extend(self.exchanges.drain(..).map(|x| x.entry));
    }

    fn errors(&self) -> u64 {
        self.errors
    }
}
