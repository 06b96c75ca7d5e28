//! AMQP 0-9-1 (RabbitMQ and friends). Frames are reassembled per direction; a method that
//! carries content (publish, deliver, return, get-ok) is joined with its content header and
//! body frames into one message. Synchronous methods pair with their `-ok` on the same
//! channel, whichever side asked (the server asks for Connection.Start/Tune); a
//! Channel.Close or Connection.Close also answers the requests it interrupts (status = reply
//! code). Asynchronous methods (publish, deliver, ack, nack, reject, return, …) and requests
//! sent with `nowait` are one-way entries. Heartbeats make no entries.
//!
//! Entry mapping: `method` = `class.method` as in the spec (`basic.publish`,
//! `queue.declare`); `path` = routing key (or `exchange/routing_key` when the exchange is
//! named) for publish/deliver/return, the queue for queue.* / basic.get / basic.consume, the
//! exchange for exchange.*, the virtual host for connection.open. The initiating message
//! fills the `request*` columns and its reply the `response*` ones, whichever side sent it
//! (the JSON says `"sender"`); message bodies go to `request_body` / `response_body`.

mod wire;

use std::collections::{HashMap, VecDeque};

use serde_json::{json, Map, Value};
use wiretrail_proto::{Entry, EntryId};

use super::{Dir, DissectConfig, Dissector, Parser, Probe};
use wire::Reader;

/// What a client sends first.
const PROTOCOL_HEADER: &[u8; 8] = b"AMQP\x00\x00\x09\x01";
/// Largest frame payload accepted whatever Connection.Tune negotiated (`frame_max` 0 means
/// "no limit"); a bigger one stops dissecting the connection, so the buffer of a direction
/// never holds more than one such frame.
const MAX_FRAME: usize = 16 << 20;
/// Frame header (type, channel, size) and the frame-end octet.
const FRAME_OVERHEAD: usize = 8;
const FRAME_END: u8 = 0xCE;
/// Requests awaiting a reply per connection; past this the oldest becomes a one-way entry.
const MAX_PENDING: usize = 1024;
/// Channels with a message being assembled per connection (each holds up to `body_cap`).
const MAX_ASSEMBLING: usize = 64;

pub struct Amqp;

impl Dissector for Amqp {
    fn name(&self) -> &'static str {
        "amqp"
    }

    /// The client's protocol header, or the server's Connection.Start (a capture that
    /// missed the client's first segment).
    fn probe_stream(&self, data: &[u8]) -> Probe {
        let n = data.len().min(PROTOCOL_HEADER.len());
        if n > 0 && data[..n] == PROTOCOL_HEADER[..n] {
            return if n == PROTOCOL_HEADER.len() {
                Probe::Client
            } else {
                Probe::NeedMore
            };
        }
        const START: [u8; 11] = [1, 0, 0, 0, 0, 0, 0, 0, 10, 0, 10];
        let m = data.len().min(START.len());
        let same = |i: usize| (3..7).contains(&i) || data[i] == START[i];
        if m > 0 && (0..m).all(same) {
            return if m == START.len() {
                Probe::Server
            } else {
                Probe::NeedMore
            };
        }
        Probe::No
    }

    fn new_stream(&self, cfg: &DissectConfig) -> Box<dyn Parser> {
        Box::new(AmqpParser {
            cap: cfg.body_cap,
            ..Default::default()
        })
    }

    fn port_hint(&self, port: u16) -> bool {
        port == 5672
    }
}

fn side(dir: Dir) -> usize {
    dir as usize
}

fn sender(dir: Dir) -> &'static str {
    match dir {
        Dir::Request => "client",
        Dir::Response => "server",
    }
}

/// One method, with its content once assembled.
struct Message {
    dir: Dir,
    ts: i64,
    channel: u16,
    class: u16,
    method: u16,
    name: String,
    args: Map<String, Value>,
    properties: Option<Map<String, Value>>,
    body_size: u64,
    /// Body bytes seen so far (all of them are counted, at most `body_cap` kept).
    received: u64,
    body: Vec<u8>,
    /// Bytes on the wire, frames included.
    wire: u64,
}

impl Message {
    fn arg(&self, name: &str) -> Option<&str> {
        self.args.get(name).and_then(Value::as_str)
    }

    fn detail(&self) -> String {
        let mut o = Map::new();
        o.insert("sender".into(), json!(sender(self.dir)));
        o.insert("channel".into(), json!(self.channel));
        o.insert(
            "class".into(),
            json!(wire::class_name(self.class).unwrap_or("?")),
        );
        let short = self.name.split_once('.').map_or("", |(_, m)| m);
        o.insert("method".into(), json!(short));
        o.extend(self.args.clone());
        if let Some(p) = &self.properties {
            o.insert("properties".into(), Value::Object(p.clone()));
            o.insert("body_size".into(), json!(self.body_size));
        }
        Value::Object(o).to_string()
    }

    /// `true` when the body was cut to the cap.
    fn truncated(&self) -> bool {
        self.received > self.body.len() as u64
    }

    fn body(&self) -> Option<Vec<u8>> {
        self.properties.as_ref().map(|_| self.body.clone())
    }

    fn path(&self) -> Option<String> {
        let s = |v: Option<&str>| v.filter(|s| !s.is_empty()).map(str::to_string);
        match (self.class, self.method) {
            (60, 40 | 50 | 60 | 71) => {
                let rk = self.arg("routing_key").unwrap_or_default();
                match self.arg("exchange").unwrap_or_default() {
                    "" => Some(rk.to_string()),
                    ex => Some(format!("{ex}/{rk}")),
                }
            }
            (50, _) | (60, 20 | 70) => s(self.arg("queue")),
            (40, _) => s(self.arg("exchange").or(self.arg("destination"))),
            (10, 40) => s(self.arg("virtual_host")),
            _ => None,
        }
    }

    fn reply_code(&self) -> Option<i32> {
        self.args
            .get("reply_code")
            .and_then(Value::as_i64)
            .map(|c| c as i32)
    }
}

/// Reply method ids a synchronous method expects (same class); empty for asynchronous ones.
fn replies(class: u16, method: u16) -> &'static [u16] {
    match (class, method) {
        (40, 40) => &[51],
        (60, 70) => &[71, 72],
        (10, 10 | 20 | 30 | 40 | 50 | 70)
        | (20, 10 | 20 | 40)
        | (40, 10 | 20 | 30)
        | (50, 10 | 20 | 30 | 40 | 50)
        | (60, 10 | 20 | 30 | 110)
        | (85, 10)
        | (90, 10 | 20 | 30) => match method {
            10 => &[11],
            20 => &[21],
            30 => &[31],
            40 => &[41],
            50 => &[51],
            70 => &[71],
            _ => &[111],
        },
        _ => &[],
    }
}

fn is_close(m: &Message) -> bool {
    matches!((m.class, m.method), (10, 50) | (20, 40))
}

struct Pending {
    dir: Dir,
    channel: u16,
    class: u16,
    expects: &'static [u16],
    entry: Entry,
}

#[derive(Default)]
pub struct AmqpParser {
    cap: usize,
    bufs: [Vec<u8>; 2],
    /// Capture time of the first byte in each buffer.
    buf_ts: [i64; 2],
    /// Whether each direction's protocol header has been looked for.
    started: [bool; 2],
    /// After a gap: skip bytes until a plausible method frame.
    lost: [bool; 2],
    /// A framing error we cannot step over: the rest of the connection is ignored.
    dead: bool,
    /// `frame_max` from Connection.Tune(-Ok); 0 = not negotiated / no limit.
    frame_max: usize,
    /// Messages waiting for their content header / body frames, by (direction, channel).
    assembling: HashMap<(usize, u16), Message>,
    pending: VecDeque<Pending>,
    errors: u64,
}

impl AmqpParser {
    fn limit(&self) -> usize {
        match self.frame_max {
            0 => MAX_FRAME,
            n => n.min(MAX_FRAME),
        }
    }

    /// Handles the complete frames at the start of `buf` (`now` = time of the newest bytes);
    /// returns how many bytes were consumed.
    fn frames(&mut self, dir: Dir, now: i64, buf: &[u8], out: &mut Vec<Entry>) -> usize {
        let i = side(dir);
        let mut pos = 0;
        if !self.started[i] {
            if buf.len() < 4 && PROTOCOL_HEADER.starts_with(buf) {
                return 0;
            }
            self.started[i] = true;
            if buf.starts_with(b"AMQP") {
                if buf.len() < PROTOCOL_HEADER.len() {
                    self.started[i] = false;
                    return 0;
                }
                pos = PROTOCOL_HEADER.len();
            }
        }
        while !self.dead {
            let rest = buf.get(pos..).unwrap_or_default();
            if self.lost[i] {
                match resync(rest, self.limit()) {
                    Resync::Found(skip) => {
                        pos += skip;
                        self.lost[i] = false;
                    }
                    Resync::Wait(skip) => return pos + skip,
                    // Keep a tail that may hold the start of the next frame.
                    Resync::None => return pos + rest.len().saturating_sub(RESYNC_HEAD),
                }
                continue;
            }
            let Some(head) = rest.get(..7) else { break };
            let ty = head[0];
            let channel = u16::from_be_bytes([head[1], head[2]]);
            let size = u32::from_be_bytes([head[3], head[4], head[5], head[6]]) as usize;
            if size > self.limit() {
                self.errors += 1;
                self.dead = true;
                break;
            }
            let Some(frame) = rest.get(..size + FRAME_OVERHEAD) else {
                break;
            };
            if frame[size + 7] != FRAME_END {
                self.errors += 1;
                self.dead = true;
                break;
            }
            // Only a frame at the start of the buffer can have begun in an earlier segment.
            let ts = if pos == 0 { self.buf_ts[i] } else { now };
            pos += frame.len();
            let payload = &frame[7..size + 7];
            match ty {
                1 => self.method(dir, ts, channel, payload, out),
                2 => self.header(dir, channel, payload, out),
                3 => self.body(dir, channel, payload, out),
                8 => {}
                _ => self.errors += 1,
            }
        }
        pos
    }

    fn method(&mut self, dir: Dir, ts: i64, channel: u16, payload: &[u8], out: &mut Vec<Entry>) {
        // A method while content is still due on the channel: that message ended short.
        if let Some(m) = self.assembling.remove(&(side(dir), channel)) {
            self.errors += 1;
            self.handle(m, out);
        }
        let mut r = Reader::new(payload);
        let (Some(class), Some(method)) = (r.u16(), r.u16()) else {
            self.errors += 1;
            return;
        };
        let Some((name, sig)) = wire::method_spec(class, method) else {
            self.errors += 1;
            return;
        };
        let Some(args) = wire::arguments(sig, &mut r) else {
            self.errors += 1;
            return;
        };
        let m = Message {
            dir,
            ts,
            channel,
            class,
            method,
            name: format!("{}.{name}", wire::class_name(class).unwrap_or("?")),
            args,
            properties: None,
            body_size: 0,
            received: 0,
            body: Vec::new(),
            wire: (payload.len() + FRAME_OVERHEAD) as u64,
        };
        if matches!((class, method), (10, 30 | 31)) {
            if let Some(n) = m.args.get("frame_max").and_then(Value::as_u64) {
                self.frame_max = n as usize;
            }
        }
        if matches!((class, method), (60, 40 | 50 | 60 | 71)) {
            if self.assembling.len() >= MAX_ASSEMBLING {
                self.errors += 1;
                self.handle(m, out);
            } else {
                self.assembling.insert((side(dir), channel), m);
            }
        } else {
            self.handle(m, out);
        }
    }

    fn header(&mut self, dir: Dir, channel: u16, payload: &[u8], out: &mut Vec<Entry>) {
        let key = (side(dir), channel);
        let Some(m) = self.assembling.get_mut(&key) else {
            self.errors += 1;
            return;
        };
        if m.properties.is_some() {
            self.errors += 1;
            return;
        }
        let mut r = Reader::new(payload);
        let props = (|| {
            let (_class, _weight, size) = (r.u16()?, r.u16()?, r.u64()?);
            Some((size, wire::properties(&mut r)?))
        })();
        let Some((size, props)) = props else {
            self.errors += 1;
            if let Some(m) = self.assembling.remove(&key) {
                self.handle(m, out);
            }
            return;
        };
        m.body_size = size;
        m.properties = Some(props);
        m.wire += (payload.len() + FRAME_OVERHEAD) as u64;
        if size == 0 {
            self.finish(key, out);
        }
    }

    fn body(&mut self, dir: Dir, channel: u16, payload: &[u8], out: &mut Vec<Entry>) {
        let key = (side(dir), channel);
        let cap = self.cap;
        let Some(m) = self
            .assembling
            .get_mut(&key)
            .filter(|m| m.properties.is_some())
        else {
            self.errors += 1;
            return;
        };
        let keep = cap.saturating_sub(m.body.len()).min(payload.len());
        m.body.extend_from_slice(&payload[..keep]);
        m.received += payload.len() as u64;
        m.wire += (payload.len() + FRAME_OVERHEAD) as u64;
        if m.received >= m.body_size {
            if m.received > m.body_size {
                self.errors += 1;
            }
            self.finish(key, out);
        }
    }

    fn finish(&mut self, key: (usize, u16), out: &mut Vec<Entry>) {
        if let Some(m) = self.assembling.remove(&key) {
            self.handle(m, out);
        }
    }

    /// A complete method (with its content): pair it, open a request, or emit it.
    fn handle(&mut self, m: Message, out: &mut Vec<Entry>) {
        let found = self.pending.iter().position(|p| {
            p.channel == m.channel
                && p.dir != m.dir
                && p.class == m.class
                && p.expects.contains(&m.method)
        });
        if let Some(i) = found {
            if let Some(p) = self.pending.remove(i) {
                out.push(respond(p.entry, &m, Some(0)));
            }
            return;
        }
        if is_close(&m) {
            // The close answers whatever the other side was still waiting for.
            let all = m.class == 10;
            let mut k = 0;
            while k < self.pending.len() {
                let p = &self.pending[k];
                if p.dir != m.dir && (all || p.channel == m.channel) {
                    if let Some(p) = self.pending.remove(k) {
                        out.push(respond(p.entry, &m, m.reply_code()));
                    }
                } else {
                    k += 1;
                }
            }
        }
        let nowait = m.args.get("nowait").and_then(Value::as_bool) == Some(true);
        let expects = replies(m.class, m.method);
        let mut e = request(&m);
        if m.class == 60 && m.method == 50 {
            e.status_text = m.arg("reply_text").map(str::to_string);
        }
        if expects.is_empty() || nowait {
            out.push(e);
            return;
        }
        if self.pending.len() >= MAX_PENDING {
            self.errors += 1;
            if let Some(p) = self.pending.pop_front() {
                out.push(p.entry);
            }
        }
        self.pending.push_back(Pending {
            dir: m.dir,
            channel: m.channel,
            class: m.class,
            expects,
            entry: e,
        });
    }
}

/// The entry of an initiating message.
fn request(m: &Message) -> Entry {
    let mut e = Entry::new(EntryId([0; 16]), m.ts, "", "amqp", "");
    e.method = Some(m.name.clone());
    e.path = m.path();
    e.request_size = m.wire;
    e.request_body = m.body();
    e.request_body_truncated = m.truncated();
    e.request = Some(m.detail());
    if is_close(m) {
        e.status = m.reply_code();
        e.status_text = m.arg("reply_text").map(str::to_string);
    }
    e
}

/// Complete `e` with its reply `m`.
fn respond(mut e: Entry, m: &Message, status: Option<i32>) -> Entry {
    e.elapsed_us = Some(m.ts - e.ts_us);
    if e.path.is_none() {
        // A server-named queue: its name comes back in Queue.Declare-Ok.
        e.path = m.arg("queue").filter(|q| !q.is_empty()).map(str::to_string);
    }
    if e.status.is_none() {
        e.status = status;
    }
    if is_close(m) && status != Some(0) {
        e.status_text = m.arg("reply_text").map(str::to_string);
    }
    e.response_size = m.wire;
    e.response_body = m.body();
    e.response_body_truncated = m.truncated();
    e.response = Some(m.detail());
    e
}

/// Bytes needed to judge a candidate method frame: header, class and method ids.
const RESYNC_HEAD: usize = 11;

enum Resync {
    /// A method frame (known class/method, frame end in place) starts here.
    Found(usize),
    /// A candidate starts here but its end has not arrived yet.
    Wait(usize),
    /// No candidate in the data.
    None,
}

fn resync(data: &[u8], limit: usize) -> Resync {
    for p in 0..data.len() {
        let Some(h) = data.get(p..p + RESYNC_HEAD) else {
            break;
        };
        let size = u32::from_be_bytes([h[3], h[4], h[5], h[6]]) as usize;
        let known = wire::method_spec(
            u16::from_be_bytes([h[7], h[8]]),
            u16::from_be_bytes([h[9], h[10]]),
        )
        .is_some();
        if h[0] != 1 || size < 4 || size > limit || !known {
            continue;
        }
        match data.get(p + 7 + size) {
            Some(&FRAME_END) => return Resync::Found(p),
            Some(_) => {}
            None => return Resync::Wait(p),
        }
    }
    Resync::None
}

impl Parser for AmqpParser {
    fn data(&mut self, dir: Dir, ts: i64, data: &[u8], out: &mut Vec<Entry>) {
        if self.dead {
            return;
        }
        let i = side(dir);
        if self.bufs[i].is_empty() {
            self.buf_ts[i] = ts;
        }
        self.bufs[i].extend_from_slice(data);
        let buf = std::mem::take(&mut self.bufs[i]);
        let used = self.frames(dir, ts, &buf, out);
        if !self.dead {
            self.bufs[i] = buf.get(used..).unwrap_or_default().to_vec();
            if used > 0 {
                self.buf_ts[i] = ts;
            }
        }
    }

    fn gap(&mut self, dir: Dir, _len: u64, out: &mut Vec<Entry>) {
        let i = side(dir);
        self.errors += 1;
        self.bufs[i].clear();
        self.started[i] = true;
        self.lost[i] = true;
        // Content being assembled in that direction lost some of its frames.
        let keys: Vec<_> = self
            .assembling
            .keys()
            .filter(|k| k.0 == i)
            .copied()
            .collect();
        for k in keys {
            self.finish(k, out);
        }
    }

    fn end(&mut self, out: &mut Vec<Entry>) {
        let mut rest: Vec<Message> = self.assembling.drain().map(|(_, m)| m).collect();
        rest.sort_by_key(|m| m.ts);
        for m in rest {
            self.handle(m, out);
        }
        out.extend(self.pending.drain(..).map(|p| p.entry));
    }

    fn errors(&self) -> u64 {
        self.errors
    }
}

#[cfg(test)]
mod tests;
