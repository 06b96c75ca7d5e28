//! Redis RESP2 and RESP3. Commands (arrays of bulk strings, or inline commands) pair with
//! replies in order, which covers pipelining and MULTI/EXEC (`QUEUED` replies pair with the
//! queued commands). Pub/sub and RESP3 push messages are one-way entries; the extra
//! confirmations of a multi-channel (P)SUBSCRIBE belong to its entry. Error replies set
//! `status` 1 and the error code (`ERR`, `WRONGTYPE`, …) as `status_text`.

use std::collections::VecDeque;

use serde_json::{json, Value};
use wiretrail_proto::{Entry, EntryId};

use super::{Dir, DissectConfig, Dissector, Parser, Probe};

/// Bytes buffered per direction while waiting for the rest of a value; past this the stream
/// is resynchronised (the value counted as an error).
const MAX_BUFFER: usize = 64 << 20;
const MAX_DEPTH: usize = 64;
/// Arguments and values kept in the JSON detail (each also cut to 256 bytes).
const DETAIL_ITEMS: usize = 16;

pub struct Redis;

fn digits(data: &[u8]) -> usize {
    data.iter().take_while(|b| b.is_ascii_digit()).count()
}

impl Dissector for Redis {
    fn name(&self) -> &'static str {
        "redis"
    }

    /// A client's first bytes: `*<n>\r\n$<len>\r\n<command>`.
    fn probe_stream(&self, data: &[u8]) -> Probe {
        if data.first() != Some(&b'*') {
            return Probe::No;
        }
        let n = digits(&data[1..]);
        let rest = &data[1 + n..];
        if rest.len() < 3 {
            return if n > 0 || data.len() == 1 {
                Probe::NeedMore
            } else {
                Probe::No
            };
        }
        if n == 0 || &rest[..3] != b"\r\n$" {
            return Probe::No;
        }
        let m = digits(&rest[3..]);
        match rest.get(3 + m..5 + m) {
            Some(b"\r\n") if m > 0 => Probe::Client,
            None => Probe::NeedMore,
            _ => Probe::No,
        }
    }

    fn new_stream(&self, cfg: &DissectConfig) -> Box<dyn Parser> {
        Box::new(RedisParser {
            cap: cfg.body_cap,
            ..Default::default()
        })
    }
}

/// A parsed RESP value (strings kept as bytes).
#[derive(Debug, Clone)]
enum Resp {
    Simple(Vec<u8>),
    Error(Vec<u8>),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Resp>>),
    Null,
    Bool(bool),
    Double(Vec<u8>),
    Map(Vec<(Resp, Resp)>),
    Set(Vec<Resp>),
    Push(Vec<Resp>),
}

enum Parsed {
    Done(Resp, usize),
    Incomplete,
    Invalid,
}

fn line(data: &[u8]) -> Option<(&[u8], usize)> {
    let mut from = 0;
    while let Some(i) = data[from..].iter().position(|&b| b == b'\r') {
        let at = from + i;
        if data.get(at + 1) == Some(&b'\n') {
            return Some((&data[..at], at + 2));
        }
        from = at + 1;
    }
    None
}

/// The length of the complete value at the start of `data`, without building it: replies
/// arrive in many segments, and building the value tree on every segment only to find it
/// incomplete was most of the Redis time (quadratic in the reply size).
fn complete(data: &[u8], depth: usize) -> Result<usize, Parsed> {
    if depth > MAX_DEPTH {
        return Err(Parsed::Invalid);
    }
    let Some(&t) = data.first() else {
        return Err(Parsed::Incomplete);
    };
    let Some((l, n)) = line(&data[1..]) else {
        return Err(if data.len() > 64 * 1024 {
            Parsed::Invalid
        } else {
            Parsed::Incomplete
        });
    };
    let head = 1 + n;
    match t {
        b'+' | b'-' | b':' | b'(' | b',' | b'_' | b'#' => Ok(head),
        b'$' | b'=' | b'!' => match num(l) {
            Some(len) if len < 0 => Ok(head),
            Some(len) => {
                let end = head.saturating_add(len as usize).saturating_add(2);
                if data.len() < end {
                    Err(Parsed::Incomplete)
                } else {
                    Ok(end)
                }
            }
            None => Err(Parsed::Invalid),
        },
        b'*' | b'~' | b'>' | b'%' | b'|' => {
            let count = num(l).ok_or(Parsed::Invalid)?;
            let total = if t == b'%' || t == b'|' {
                count.saturating_mul(2)
            } else {
                count
            };
            let mut at = head;
            for _ in 0..total.max(0) {
                at += complete(&data[at..], depth + 1)?;
            }
            if t == b'|' {
                at += complete(&data[at..], depth + 1)?;
            }
            Ok(at)
        }
        _ => Err(Parsed::Invalid),
    }
}

fn num(l: &[u8]) -> Option<i64> {
    std::str::from_utf8(l).ok()?.parse().ok()
}

fn parse(data: &[u8], depth: usize) -> Parsed {
    if depth > MAX_DEPTH {
        return Parsed::Invalid;
    }
    let Some(&t) = data.first() else {
        return Parsed::Incomplete;
    };
    let Some((l, n)) = line(&data[1..]) else {
        return if data.len() > 64 * 1024 {
            Parsed::Invalid
        } else {
            Parsed::Incomplete
        };
    };
    let head = 1 + n;
    let items = |count: i64, data: &[u8], pairs: bool| -> Result<(Vec<Resp>, usize), Parsed> {
        let mut out = Vec::new();
        let mut at = head;
        let total = if pairs { count * 2 } else { count };
        for _ in 0..total {
            match parse(&data[at..], depth + 1) {
                Parsed::Done(v, used) => {
                    out.push(v);
                    at += used;
                }
                other => return Err(other),
            }
        }
        Ok((out, at))
    };
    let blob = |len: i64| -> Parsed {
        if len < 0 {
            return Parsed::Done(Resp::Bulk(None), head);
        }
        let len = len as usize;
        if data.len() < head + len + 2 {
            return Parsed::Incomplete;
        }
        if &data[head + len..head + len + 2] != b"\r\n" {
            return Parsed::Invalid;
        }
        Parsed::Done(
            Resp::Bulk(Some(data[head..head + len].to_vec())),
            head + len + 2,
        )
    };
    match t {
        b'+' => Parsed::Done(Resp::Simple(l.to_vec()), head),
        b'-' => Parsed::Done(Resp::Error(l.to_vec()), head),
        b':' | b'(' => match num(l) {
            Some(i) => Parsed::Done(Resp::Int(i), head),
            None if t == b'(' => Parsed::Done(Resp::Double(l.to_vec()), head),
            None => Parsed::Invalid,
        },
        b',' => Parsed::Done(Resp::Double(l.to_vec()), head),
        b'_' => Parsed::Done(Resp::Null, head),
        b'#' => Parsed::Done(Resp::Bool(l == b"t"), head),
        b'$' | b'=' => match num(l) {
            Some(len) => blob(len),
            None => Parsed::Invalid,
        },
        b'!' => match (num(l), blob(num(l).unwrap_or(-1))) {
            (Some(_), Parsed::Done(Resp::Bulk(Some(b)), used)) => {
                Parsed::Done(Resp::Error(b), used)
            }
            (_, other) => other,
        },
        b'*' | b'~' | b'>' | b'%' | b'|' => {
            let Some(count) = num(l) else {
                return Parsed::Invalid;
            };
            if count < 0 {
                return Parsed::Done(Resp::Array(None), head);
            }
            match items(count, data, t == b'%' || t == b'|') {
                Err(p) => p,
                Ok((v, used)) => match t {
                    b'*' => Parsed::Done(Resp::Array(Some(v)), used),
                    b'~' => Parsed::Done(Resp::Set(v), used),
                    b'>' => Parsed::Done(Resp::Push(v), used),
                    b'%' => {
                        let mut it = v.into_iter();
                        let mut pairs = Vec::new();
                        while let (Some(k), Some(val)) = (it.next(), it.next()) {
                            pairs.push((k, val));
                        }
                        Parsed::Done(Resp::Map(pairs), used)
                    }
                    // Attributes describe the reply that follows them: parse and return that.
                    _ => match parse(&data[used..], depth + 1) {
                        Parsed::Done(v, n) => Parsed::Done(v, used + n),
                        other => other,
                    },
                },
            }
        }
        _ => Parsed::Invalid,
    }
}

fn text(b: &[u8]) -> String {
    let s = String::from_utf8_lossy(&b[..b.len().min(256)]);
    if b.len() > 256 {
        format!("{s}…")
    } else {
        s.into_owned()
    }
}

fn summary(v: &Resp) -> Value {
    match v {
        Resp::Simple(s) | Resp::Double(s) => json!(text(s)),
        Resp::Error(e) => json!({"error": text(e)}),
        Resp::Int(i) => json!(i),
        Resp::Bulk(None) | Resp::Array(None) | Resp::Null => Value::Null,
        Resp::Bulk(Some(b)) => json!(text(b)),
        Resp::Bool(b) => json!(b),
        Resp::Array(Some(items)) | Resp::Set(items) | Resp::Push(items) => {
            json!(items
                .iter()
                .take(DETAIL_ITEMS)
                .map(summary)
                .collect::<Vec<_>>())
        }
        Resp::Map(pairs) => json!(pairs
            .iter()
            .take(DETAIL_ITEMS)
            .map(|(k, v)| json!([summary(k), summary(v)]))
            .collect::<Vec<_>>()),
    }
}

fn kind(v: &Resp) -> &'static str {
    match v {
        Resp::Simple(_) => "simple",
        Resp::Error(_) => "error",
        Resp::Int(_) => "integer",
        Resp::Bulk(_) => "bulk",
        Resp::Array(_) => "array",
        Resp::Null => "null",
        Resp::Bool(_) => "boolean",
        Resp::Double(_) => "double",
        Resp::Map(_) => "map",
        Resp::Set(_) => "set",
        Resp::Push(_) => "push",
    }
}

fn as_str(v: &Resp) -> Option<String> {
    match v {
        Resp::Bulk(Some(b)) | Resp::Simple(b) => Some(String::from_utf8_lossy(b).into_owned()),
        _ => None,
    }
}

/// Server-initiated messages: RESP3 pushes, and RESP2 pub/sub arrays.
fn pubsub(v: &Resp) -> Option<(String, Vec<Resp>)> {
    let items = match v {
        Resp::Push(items) => items,
        Resp::Array(Some(items)) => items,
        _ => return None,
    };
    let kind = as_str(items.first()?)?.to_ascii_lowercase();
    matches!(
        kind.as_str(),
        "message"
            | "pmessage"
            | "smessage"
            | "subscribe"
            | "psubscribe"
            | "ssubscribe"
            | "unsubscribe"
            | "punsubscribe"
            | "sunsubscribe"
    )
    .then(|| (kind, items.clone()))
}

#[derive(Default)]
pub struct RedisParser {
    cap: usize,
    bufs: [Vec<u8>; 2],
    buf_ts: [i64; 2],
    pending: VecDeque<Entry>,
    /// Confirmations still due for the (P)SUBSCRIBE/UNSUBSCRIBE just answered.
    extra_confirms: usize,
    subscribed: bool,
    errors: u64,
}

impl RedisParser {
    fn command(&mut self, ts: i64, v: Resp, size: usize, raw: &[u8]) {
        let args: Vec<String> = match &v {
            Resp::Array(Some(items)) => items
                .iter()
                .map(|i| as_str(i).unwrap_or_default())
                .collect(),
            _ => Vec::new(),
        };
        let mut e = Entry::new(EntryId([0; 16]), ts, "", "redis", "");
        e.method = args.first().map(|c| c.to_ascii_uppercase());
        e.path = args.get(1).cloned();
        e.request_size = size as u64;
        e.request_body = Some(raw[..raw.len().min(self.cap)].to_vec()).filter(|b| !b.is_empty());
        e.request_body_truncated = raw.len() > self.cap;
        e.request = Some(json!({"command": e.method, "args": args.iter().skip(1).take(DETAIL_ITEMS).map(|a| text(a.as_bytes())).collect::<Vec<_>>(), "argc": args.len()}).to_string());
        self.pending.push_back(e);
    }

    fn inline(&mut self, ts: i64, l: &[u8], size: usize) {
        let words: Vec<Resp> = l
            .split(|b| *b == b' ')
            .filter(|w| !w.is_empty())
            .map(|w| Resp::Bulk(Some(w.to_vec())))
            .collect();
        if !words.is_empty() {
            self.command(ts, Resp::Array(Some(words)), size, l);
        }
    }

    fn reply(&mut self, ts: i64, v: Resp, size: usize, raw: &[u8], out: &mut Vec<Entry>) {
        if let Some((push, items)) = pubsub(&v) {
            let confirm = !push.ends_with("message");
            if confirm && self.extra_confirms > 0 {
                self.extra_confirms -= 1;
                return;
            }
            if !confirm
                || !self.pending.front().is_some_and(|c| {
                    c.method
                        .as_deref()
                        .is_some_and(|m| m.ends_with("SUBSCRIBE"))
                })
            {
                // A message pushed by the server: one-way.
                let mut e = Entry::new(EntryId([0; 16]), ts, "", "redis", "");
                e.method = Some(push.clone());
                e.path = items
                    .get(if push == "pmessage" { 2 } else { 1 })
                    .and_then(as_str);
                e.response_size = size as u64;
                e.response_body = Some(raw[..raw.len().min(self.cap)].to_vec());
                e.response =
                    Some(json!({"type": kind(&v), "push": true, "value": summary(&v)}).to_string());
                out.push(e);
                return;
            }
            if let Some(front) = self.pending.front() {
                let channels = front
                    .request
                    .as_deref()
                    .and_then(|r| serde_json::from_str::<Value>(r).ok())
                    .and_then(|r| r["argc"].as_u64())
                    .unwrap_or(2);
                self.extra_confirms = channels.saturating_sub(2) as usize;
                self.subscribed = push.ends_with("subscribe")
                    && !push.starts_with("un")
                    && !push.starts_with("pun");
            }
        }
        let mut e = match self.pending.pop_front() {
            Some(mut c) => {
                c.elapsed_us = Some(ts - c.ts_us);
                c
            }
            None => Entry::new(EntryId([0; 16]), ts, "", "redis", ""),
        };
        match &v {
            Resp::Error(msg) => {
                e.status = Some(1);
                e.status_text = Some(
                    String::from_utf8_lossy(msg)
                        .split(' ')
                        .next()
                        .unwrap_or("ERR")
                        .to_string(),
                );
            }
            _ => {
                e.status = Some(0);
                e.status_text = Some("OK".into());
            }
        }
        e.response_size = size as u64;
        e.response_body = Some(raw[..raw.len().min(self.cap)].to_vec()).filter(|b| !b.is_empty());
        e.response_body_truncated = raw.len() > self.cap;
        e.response = Some(json!({"type": kind(&v), "value": summary(&v)}).to_string());
        out.push(e);
    }
}

impl Parser for RedisParser {
    fn data(&mut self, dir: Dir, ts: i64, data: &[u8], out: &mut Vec<Entry>) {
        let i = dir as usize;
        if self.bufs[i].is_empty() {
            self.buf_ts[i] = ts;
        }
        self.bufs[i].extend_from_slice(data);
        let buf = std::mem::take(&mut self.bufs[i]);
        let mut pos = 0;
        while pos < buf.len() {
            let msg_ts = if pos == 0 { self.buf_ts[i] } else { ts };
            let rest = &buf[pos..];
            let inline = dir == Dir::Request && !matches!(rest[0], b'*');
            if inline {
                match line(rest) {
                    Some((l, n)) => {
                        self.inline(msg_ts, l, n);
                        pos += n;
                    }
                    None => break,
                }
                continue;
            }
            let parsed = match complete(rest, 0) {
                Ok(n) => parse(&rest[..n], 0),
                Err(p) => p,
            };
            match parsed {
                Parsed::Done(v, n) => {
                    let raw = &rest[..n];
                    match dir {
                        Dir::Request => self.command(msg_ts, v, n, raw),
                        Dir::Response => self.reply(msg_ts, v, n, raw, out),
                    }
                    pos += n;
                }
                Parsed::Incomplete if rest.len() <= MAX_BUFFER => break,
                Parsed::Incomplete | Parsed::Invalid => {
                    // Resync at the next line.
                    self.errors += 1;
                    pos += line(rest).map_or(rest.len(), |(_, n)| n);
                }
            }
        }
        let mut buf = buf;
        buf.drain(..pos.min(buf.len()));
        self.bufs[i] = buf;
        if pos > 0 {
            self.buf_ts[i] = ts;
        }
    }

    fn gap(&mut self, dir: Dir, _len: u64, _out: &mut Vec<Entry>) {
        self.errors += 1;
        self.bufs[dir as usize].clear();
    }

    fn end(&mut self, out: &mut Vec<Entry>) {
        out.extend(self.pending.drain(..));
    }

    fn errors(&self) -> u64 {
        self.errors
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_resp2_and_resp3() {
        let cases: &[&[u8]] = &[
            b"+OK\r\n",
            b"-ERR x\r\n",
            b":42\r\n",
            b"$3\r\nfoo\r\n",
            b"$-1\r\n",
            b"*2\r\n$1\r\na\r\n:1\r\n",
            b"_\r\n",
            b"#t\r\n",
            b",3.14\r\n",
            b"%1\r\n+a\r\n:1\r\n",
            b"~1\r\n+a\r\n",
            b">2\r\n+message\r\n+x\r\n",
            b"|1\r\n+k\r\n+v\r\n+OK\r\n",
            b"(123\r\n",
            b"!3\r\nerr\r\n",
            b"=7\r\ntxt:abc\r\n",
        ];
        for c in cases {
            assert!(
                matches!(parse(c, 0), Parsed::Done(_, n) if n == c.len()),
                "{}",
                String::from_utf8_lossy(c)
            );
            assert!(
                matches!(parse(&c[..c.len() - 1], 0), Parsed::Incomplete),
                "partial {}",
                String::from_utf8_lossy(c)
            );
        }
        assert!(matches!(parse(b"?nope\r\n", 0), Parsed::Invalid));
        let deep = "*1\r\n".repeat(200) + ":1\r\n";
        assert!(matches!(parse(deep.as_bytes(), 0), Parsed::Invalid));
    }

    #[test]
    fn probes_clients_only() {
        assert_eq!(Redis.probe_stream(b"*1\r\n$4\r\nPING\r\n"), Probe::Client);
        assert_eq!(Redis.probe_stream(b"*1"), Probe::NeedMore);
        assert_eq!(Redis.probe_stream(b"GET / HTTP/1.1\r\n"), Probe::No);
        assert_eq!(Redis.probe_stream(b"+OK\r\n"), Probe::No);
    }
}
