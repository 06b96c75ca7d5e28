//! AMQP 0-9-1 (RabbitMQ): frames (method, content header, body, heartbeat) per channel;
//! method arguments decoded per the spec (exchange, routing key, queue, delivery tag, reply
//! code, field tables as JSON); a content header and its body frames are joined to the method
//! that carries them (publish, deliver, return, get-ok). Synchronous methods pair with their
//! `-ok` from the other side on the same channel (either side may ask: `connection.start`
//! and `channel.close` come from the server); asynchronous methods (publish, deliver, ack,
//! nack, reject, return, …) and `no-wait` requests are one-way entries. Credentials
//! (`connection.start-ok` response) are never kept.

mod args;

use std::collections::{HashMap, VecDeque};

use serde_json::{json, Map, Value};
use wiretrail_proto::{Entry, EntryId};

use super::{Dir, DissectConfig, Dissector, Parser, Probe};
use args::{method_args, method_name, properties, responses};

const HEADER: &[u8] = b"AMQP\x00\x00\x09\x01";
/// Largest frame accepted (RabbitMQ's default `frame_max` is 128 KiB; the protocol allows
/// 4 GiB): a larger size means the stream is not AMQP or lost its framing.
const MAX_FRAME: usize = 16 << 20;
/// Synchronous requests awaiting their `-ok` per connection; past this the oldest is emitted
/// one-way.
const MAX_PENDING: usize = 1024;

pub struct Amqp;

impl Dissector for Amqp {
    fn name(&self) -> &'static str {
        "amqp"
    }

    /// The client's protocol header `AMQP 0 0 9 1`.
    fn probe_stream(&self, data: &[u8]) -> Probe {
        let n = data.len().min(HEADER.len());
        if n == 0 || data[..n] != HEADER[..n] {
            return Probe::No;
        }
        if n < HEADER.len() {
            Probe::NeedMore
        } else {
            Probe::Client
        }
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

/// A method frame's decoded content.
struct Method {
    ts: i64,
    dir: Dir,
    channel: u16,
    class: u16,
    id: u16,
    args: Map<String, Value>,
    size: u64,
    /// Order of this method frame among its direction's method frames.
    seq: u64,
}

/// A method waiting for its content header and body frames.
struct Content {
    method: Method,
    props: Value,
    body_size: u64,
    body: Vec<u8>,
    /// Frame bytes of the header and body frames.
    received: u64,
    body_received: u64,
}

#[derive(Default)]
pub struct AmqpParser {
    cap: usize,
    bufs: [Vec<u8>; 2],
    buf_ts: [i64; 2],
    header_seen: bool,
    /// Per channel: the method whose content is being assembled.
    content: HashMap<u16, Content>,
    /// Synchronous requests awaiting their reply, in order.
    pending: VecDeque<Method>,
    seq: [u64; 2],
    stopped: bool,
    errors: u64,
}

fn path_of(class: u16, args: &Map<String, Value>) -> Option<String> {
    let s = |k: &str| args.get(k).and_then(Value::as_str).unwrap_or_default();
    match class {
        60 if !s("routing_key").is_empty() || !s("exchange").is_empty() => {
            Some(if s("exchange").is_empty() {
                s("routing_key").to_string()
            } else {
                format!("{}/{}", s("exchange"), s("routing_key"))
            })
        }
        50 | 60 if !s("queue").is_empty() => Some(s("queue").to_string()),
        40 if !s("exchange").is_empty() => Some(s("exchange").to_string()),
        40 if !s("destination").is_empty() => Some(s("destination").to_string()),
        10 if !s("virtual_host").is_empty() => Some(s("virtual_host").to_string()),
        _ => None,
    }
}

fn detail(m: &Method) -> Value {
    let mut d = m.args.clone();
    d.insert("method".into(), json!(method_name(m.class, m.id)));
    d.insert("class_id".into(), json!(m.class));
    d.insert("method_id".into(), json!(m.id));
    d.insert("channel".into(), json!(m.channel));
    d.insert(
        "from".into(),
        json!(if m.dir == Dir::Request {
            "client"
        } else {
            "server"
        }),
    );
    d.insert("seq".into(), json!(m.seq));
    Value::Object(d)
}

impl AmqpParser {
    fn entry(&self, req: Method, content: Option<(Value, Vec<u8>, u64)>) -> Entry {
        let mut e = Entry::new(EntryId([0; 16]), req.ts, "", "amqp", "");
        e.method = Some(method_name(req.class, req.id));
        e.path = path_of(req.class, &req.args);
        e.request_size = req.size;
        let mut d = detail(&req);
        if let Some((props, body, body_size)) = content {
            d["properties"] = props;
            d["body_size"] = json!(body_size);
            e.request_body_truncated = body_size > body.len() as u64;
            e.request_body = (!body.is_empty()).then_some(body);
        }
        if let Some(code) = req.args.get("reply_code").and_then(Value::as_i64) {
            e.status = Some(code as i32);
            e.status_text = req
                .args
                .get("reply_text")
                .and_then(Value::as_str)
                .map(str::to_string);
        }
        e.request = Some(d.to_string());
        e
    }

    fn method(&mut self, m: Method, out: &mut Vec<Entry>) {
        if matches!((m.class, m.id), (60, 40) | (60, 50) | (60, 60) | (60, 71)) {
            // Carries content: wait for the header and body frames of this channel.
            if let Some(old) = self.content.remove(&m.channel) {
                self.errors += 1;
                self.finish_content(old, out);
            }
            self.content.insert(
                m.channel,
                Content {
                    method: m,
                    props: Value::Null,
                    body_size: 0,
                    body: Vec::new(),
                    received: 0,
                    body_received: 0,
                },
            );
            return;
        }
        self.dispatch(m, None, out);
    }

    /// Pairs a reply with its request, queues a synchronous request, or emits a one-way entry.
    fn dispatch(
        &mut self,
        m: Method,
        content: Option<(Value, Vec<u8>, u64)>,
        out: &mut Vec<Entry>,
    ) {
        let answered = self.pending.iter().position(|p| {
            p.channel == m.channel
                && p.dir != m.dir
                && p.class == m.class
                && responses(p.class, p.id).contains(&m.id)
        });
        if let Some(i) = answered {
            let Some(req) = self.pending.remove(i) else {
                return;
            };
            let mut e = self.entry(req, None);
            e.elapsed_us = Some(m.ts.saturating_sub(e.ts_us));
            e.response_size = m.size;
            e.status.get_or_insert(0);
            e.status_text.get_or_insert_with(|| "OK".into());
            let mut d = detail(&m);
            if let Some((props, body, body_size)) = content {
                d["properties"] = props;
                d["body_size"] = json!(body_size);
                e.response_body_truncated = body_size > body.len() as u64;
                e.response_body = (!body.is_empty()).then_some(body);
            }
            e.response = Some(d.to_string());
            out.push(e);
            return;
        }
        let no_wait = m.args.get("no_wait").and_then(Value::as_bool) == Some(true);
        if !responses(m.class, m.id).is_empty() && !no_wait {
            if self.pending.len() >= MAX_PENDING {
                if let Some(old) = self.pending.pop_front() {
                    out.push(self.entry(old, None));
                }
            }
            self.pending.push_back(m);
            return;
        }
        out.push(self.entry(m, content));
    }

    fn finish_content(&mut self, c: Content, out: &mut Vec<Entry>) {
        let Content {
            mut method,
            props,
            body_size,
            body,
            received,
            ..
        } = c;
        method.size += received;
        self.dispatch(method, Some((props, body, body_size)), out);
    }

    fn frame(
        &mut self,
        dir: Dir,
        ts: i64,
        kind: u8,
        channel: u16,
        payload: &[u8],
        out: &mut Vec<Entry>,
    ) {
        let size = payload.len() as u64 + 8;
        match kind {
            1 => {
                let (Some(class), Some(id)) = (args::u16_at(payload, 0), args::u16_at(payload, 2))
                else {
                    self.errors += 1;
                    return;
                };
                let args = match method_args(class, id, &payload[4..]) {
                    Some(a) => a,
                    None => {
                        self.errors += 1;
                        Map::new()
                    }
                };
                let i = dir as usize;
                self.seq[i] += 1;
                let m = Method {
                    ts,
                    dir,
                    channel,
                    class,
                    id,
                    args,
                    size,
                    seq: self.seq[i],
                };
                self.method(m, out);
            }
            2 => {
                let Some(c) = self.content.get_mut(&channel) else {
                    self.errors += 1;
                    return;
                };
                c.body_size = args::u64_at(payload, 4).unwrap_or(0);
                c.props = properties(payload.get(12..).unwrap_or_default());
                c.received += size;
                if c.body_size == 0 {
                    if let Some(c) = self.content.remove(&channel) {
                        self.finish_content(c, out);
                    }
                }
            }
            3 => {
                let cap = self.cap;
                let Some(c) = self.content.get_mut(&channel) else {
                    self.errors += 1;
                    return;
                };
                let room = cap.saturating_sub(c.body.len());
                c.body
                    .extend_from_slice(&payload[..payload.len().min(room)]);
                c.received += size;
                c.body_received += payload.len() as u64;
                // The body frames carry exactly `body_size` bytes in total.
                if c.body_received >= c.body_size {
                    if let Some(c) = self.content.remove(&channel) {
                        self.finish_content(c, out);
                    }
                }
            }
            _ => {} // heartbeat (8) and unknown frame types
        }
    }
}

impl Parser for AmqpParser {
    fn data(&mut self, dir: Dir, ts: i64, data: &[u8], out: &mut Vec<Entry>) {
        if self.stopped || data.is_empty() {
            return;
        }
        let i = dir as usize;
        if self.bufs[i].is_empty() {
            self.buf_ts[i] = ts;
        }
        self.bufs[i].extend_from_slice(data);
        let buf = std::mem::take(&mut self.bufs[i]);
        let mut pos = 0;
        if dir == Dir::Request && !self.header_seen {
            if buf.len() < HEADER.len() {
                self.bufs[i] = buf;
                return;
            }
            self.header_seen = true;
            if buf.starts_with(HEADER) {
                pos = HEADER.len();
            }
        }
        while let Some(h) = buf.get(pos..pos + 7) {
            let size = u32::from_be_bytes([h[3], h[4], h[5], h[6]]) as usize;
            if size > MAX_FRAME || !matches!(h[0], 1 | 2 | 3 | 8) {
                // Not a frame: the framing is lost (or this is a protocol-header reply).
                self.errors += 1;
                self.stopped = true;
                return;
            }
            let Some(frame) = buf.get(pos..pos + 8 + size) else {
                break;
            };
            if frame[7 + size] != 0xce {
                self.errors += 1;
                self.stopped = true;
                return;
            }
            let msg_ts = if pos == 0 { self.buf_ts[i] } else { ts };
            let channel = u16::from_be_bytes([h[1], h[2]]);
            self.frame(dir, msg_ts, h[0], channel, &frame[7..7 + size], out);
            pos += 8 + size;
        }
        let mut buf = buf;
        buf.drain(..pos.min(buf.len()));
        self.bufs[i] = buf;
        if pos > 0 {
            self.buf_ts[i] = ts;
        }
    }

    fn gap(&mut self, _dir: Dir, _len: u64, _out: &mut Vec<Entry>) {
        // Frame boundaries are lost; what is pending is emitted at `end`.
        self.errors += 1;
        self.stopped = true;
    }

    fn end(&mut self, out: &mut Vec<Entry>) {
        let contents: Vec<Content> = self.content.drain().map(|(_, c)| c).collect();
        for c in contents {
            self.finish_content(c, out);
        }
        while let Some(m) = self.pending.pop_front() {
            out.push(self.entry(m, None));
        }
    }

    fn errors(&self) -> u64 {
        self.errors
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, channel: u16, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![kind];
        f.extend_from_slice(&channel.to_be_bytes());
        f.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        f.extend_from_slice(payload);
        f.push(0xce);
        f
    }

    #[test]
    fn publish_with_content_in_pieces_and_garbage() {
        // basic.publish(exchange "x", routing key "k"), header (5-byte body), two body frames.
        let publish = frame(1, 1, b"\x00\x3c\x00\x28\x00\x00\x01x\x01k\x00");
        let mut header = b"\x00\x3c\x00\x00\x00\x00\x00\x00\x00\x00\x00\x05".to_vec();
        header.extend_from_slice(&[0x80, 0x00, 4]);
        header.extend_from_slice(b"text");
        let wire = [
            HEADER.to_vec(),
            publish,
            frame(2, 1, &header),
            frame(3, 1, b"hel"),
            frame(3, 1, b"lo"),
        ]
        .concat();
        for step in [1, 5, wire.len()] {
            let mut p = Amqp.new_stream(&DissectConfig {
                body_cap: 1024,
                ..Default::default()
            });
            let mut out = Vec::new();
            for (i, c) in wire.chunks(step).enumerate() {
                p.data(Dir::Request, i as i64, c, &mut out);
            }
            p.end(&mut out);
            assert_eq!(out.len(), 1);
            assert_eq!(out[0].method.as_deref(), Some("basic.publish"));
            assert_eq!(out[0].path.as_deref(), Some("x/k"));
            assert_eq!(out[0].request_body.as_deref(), Some(&b"hello"[..]));
            assert!(out[0]
                .request
                .as_deref()
                .unwrap()
                .contains("\"content_type\":\"text\""));
            assert_eq!(p.errors(), 0);
        }
        let mut p = Amqp.new_stream(&DissectConfig::default());
        let mut out = Vec::new();
        p.data(Dir::Request, 0, HEADER, &mut out);
        p.data(
            Dir::Request,
            1,
            &[1, 0, 0, 0xff, 0xff, 0xff, 0xff, 1, 2, 3],
            &mut out,
        );
        p.end(&mut out);
        assert_eq!(p.errors(), 1);
        assert_eq!(Amqp.probe_stream(b"AMQP"), Probe::NeedMore);
        assert_eq!(Amqp.probe_stream(b"GET / HTTP/1.1"), Probe::No);
    }
}
