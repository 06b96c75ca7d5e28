//! Kafka wire protocol, legacy and flexible (KIP-482) versions. Every message is a frame
//! with a 4-byte length; a request header carries api key, version, correlation id and
//! client id, a response header only the correlation id, so each request's key and version
//! are remembered per connection to read its response (requests may be answered out of
//! order, so pairing is by correlation id). Produce with `acks=0` gets no response and is
//! emitted at once as a one-way entry.
//!
//! Entry: `method` = API name, `path` = topic names (comma-joined), `status` = first non-zero
//! error code in the response (top-level or per topic/partition) else 0, `status_text` = its
//! Kafka name; `request`/`response` hold the header fields and topics/partitions as JSON.
//! Record batches are counted (records per topic/partition, frame sizes), not stored.

mod body;
mod names;
mod wire;

use std::collections::VecDeque;

use serde_json::{json, Value};
use wiretrail_proto::{Entry, EntryId};

use super::{Dir, DissectConfig, Dissector, Parser, Probe};
use body::{Request, Response, TopicIds, DETAIL_ITEMS};
use names::{api_name, error_name, flexible, MAX_API_KEY};
use wire::Reader;

/// Largest frame buffered (Kafka's own defaults stay below: 1 MiB messages, 50 MiB
/// fetches). A length past it, or negative, means the stream is not (or no longer) Kafka:
/// the error is counted and the rest of the connection is not dissected. A connection thus
/// holds at most one partial frame per direction (2 × 64 MiB) plus [`MAX_PENDING`] entries.
const MAX_FRAME: usize = 64 << 20;
/// Requests awaiting a response per connection; past it the oldest is emitted as one-way.
const MAX_PENDING: usize = 1024;
/// Highest API version the probe accepts (Kafka 4.x stays below 20).
const MAX_PROBE_VERSION: i16 = 30;
/// Topic names joined into `path`.
const PATH_TOPICS: usize = 16;

pub struct Kafka;

/// The start of a request frame: length, api key, version.
struct Head {
    len: usize,
    key: i16,
    version: i16,
}

fn head(data: &[u8]) -> Option<Head> {
    let mut r = Reader::new(data, false);
    let len = usize::try_from(r.i32()?).ok()?;
    Some(Head {
        len,
        key: r.i16()?,
        version: r.i16()?,
    })
}

/// Whether `data` starts with a plausible request frame: a length within bounds, a known API
/// key, a small version, and a client id that fits the frame and is printable.
fn plausible_request(data: &[u8]) -> Probe {
    let Some(h) = head(data) else {
        return match data.first() {
            Some(b) if usize::from(*b) << 24 > MAX_FRAME => Probe::No,
            _ => Probe::NeedMore,
        };
    };
    if !(10..=MAX_FRAME).contains(&h.len)
        || !(0..=MAX_API_KEY).contains(&h.key)
        || !(0..=MAX_PROBE_VERSION).contains(&h.version)
    {
        return Probe::No;
    }
    let Some(id_len) = data.get(12..14).map(|b| i16::from_be_bytes([b[0], b[1]])) else {
        return Probe::NeedMore;
    };
    if id_len < -1 || usize::try_from(id_len).is_ok_and(|n| n + 10 > h.len) {
        return Probe::No;
    }
    let id = data.get(14..).unwrap_or_default();
    let id = &id[..id.len().min(usize::try_from(id_len).unwrap_or(0))];
    if id.iter().all(|b| (0x20..0x7f).contains(b)) {
        Probe::Client
    } else {
        Probe::No
    }
}

impl Dissector for Kafka {
    fn name(&self) -> &'static str {
        "kafka"
    }

    /// Only a client's request header is distinctive; responses (length + correlation id)
    /// are not.
    fn probe_stream(&self, data: &[u8]) -> Probe {
        plausible_request(data)
    }

    fn new_stream(&self, _cfg: &DissectConfig) -> Box<dyn Parser> {
        Box::<KafkaParser>::default()
    }

    fn port_hint(&self, port: u16) -> bool {
        port == 9092
    }
}

/// A request waiting for its response.
struct Pending {
    key: i16,
    version: i16,
    corr: i32,
    entry: Entry,
}

#[derive(Default)]
pub struct KafkaParser {
    bufs: [Vec<u8>; 2],
    /// Capture time of the first byte of each direction's buffered frame.
    buf_ts: [i64; 2],
    /// After a gap, the direction drops data until a segment starts with a frame again.
    resync: [bool; 2],
    /// A bad frame length was seen: the rest of the connection is ignored.
    dead: bool,
    pending: VecDeque<Pending>,
    ids: TopicIds,
    errors: u64,
}

fn topics_json(req: &Request) -> Value {
    json!(req
        .topics
        .iter()
        .take(DETAIL_ITEMS)
        .map(|t| {
            let mut v = json!({"name": t.name, "partitions": t.partitions.iter().take(DETAIL_ITEMS).collect::<Vec<_>>()});
            if let (Some(n), Some(o)) = (t.records, v.as_object_mut()) {
                o.insert("records".into(), json!(n));
            }
            v
        })
        .collect::<Vec<_>>())
}

/// Topic names, first occurrence order, comma-joined; `None` without topics.
fn path(names: impl Iterator<Item = String>) -> Option<String> {
    let mut seen: Vec<String> = Vec::new();
    for n in names {
        if !seen.contains(&n) && seen.len() < PATH_TOPICS {
            seen.push(n);
        }
    }
    (!seen.is_empty()).then(|| seen.join(","))
}

impl KafkaParser {
    fn request(&mut self, ts: i64, frame: &[u8], out: &mut Vec<Entry>) {
        let mut r = Reader::new(frame, false);
        let (Some(key), Some(version), Some(corr)) = (r.i16(), r.i16(), r.i32()) else {
            self.errors += 1;
            return;
        };
        let client_id = r.nullable_string();
        let flex = flexible(key, version);
        r.flex = flex;
        let mut req = Request::default();
        let parsed = client_id.is_some()
            && r.tags().is_some()
            && body::request(key, version, &mut r, &self.ids, &mut req).is_some();
        if !parsed {
            self.errors += 1;
        }
        let mut e = Entry::new(EntryId([0; 16]), ts, "", "kafka", "");
        e.method = Some(api_name(key).map_or_else(|| format!("ApiKey{key}"), str::to_string));
        e.path = path(req.topics.iter().map(|t| t.name.clone()));
        e.request_size = frame.len() as u64 + 4;
        let mut detail = json!({
            "api_key": key,
            "api_version": version,
            "correlation_id": corr,
            "client_id": client_id.flatten(),
            "topics": topics_json(&req),
        });
        if let Some(o) = detail.as_object_mut() {
            if let Some(g) = &req.group {
                o.insert("group".into(), json!(g));
            }
            if let Some(a) = req.acks {
                o.insert("acks".into(), json!(a));
            }
        }
        e.request = Some(detail.to_string());
        if key == 0 && req.acks == Some(0) {
            out.push(e);
            return;
        }
        if self.pending.len() >= MAX_PENDING {
            out.extend(self.pending.pop_front().map(|p| p.entry));
        }
        self.pending.push_back(Pending {
            key,
            version,
            corr,
            entry: e,
        });
    }

    fn response(&mut self, ts: i64, frame: &[u8], out: &mut Vec<Entry>) {
        let mut r = Reader::new(frame, false);
        let Some(corr) = r.i32() else {
            self.errors += 1;
            return;
        };
        let Some(i) = self.pending.iter().position(|p| p.corr == corr) else {
            // No request to say how to read it (capture started mid-connection, or junk).
            self.errors += 1;
            let mut e = Entry::new(EntryId([0; 16]), ts, "", "kafka", "");
            e.response_size = frame.len() as u64 + 4;
            e.response = Some(json!({ "correlation_id": corr }).to_string());
            out.push(e);
            return;
        };
        let Some(Pending {
            key,
            version,
            mut entry,
            ..
        }) = self.pending.remove(i)
        else {
            return;
        };
        // Response header v1 (tagged fields) for flexible versions, except ApiVersions,
        // whose response header stays v0 so that any client can read it.
        r.flex = flexible(key, version) && key != 18;
        let mut resp = Response::default();
        let parsed = r.tags().is_some() && {
            r.flex = flexible(key, version);
            body::response(key, version, &mut r, &mut self.ids, &mut resp).is_some()
        };
        if !parsed {
            self.errors += 1;
        }
        let status = resp.errors.iter().copied().find(|e| *e != 0).unwrap_or(0);
        entry.elapsed_us = Some(ts - entry.ts_us);
        entry.status = Some(i32::from(status));
        entry.status_text = (status != 0).then(|| error_name(status));
        entry.response_size = frame.len() as u64 + 4;
        if entry.path.is_none() {
            entry.path = path(
                resp.topics
                    .iter()
                    .filter_map(|t| t["name"].as_str().map(str::to_string)),
            );
        }
        let mut detail = json!({
            "correlation_id": corr,
            "error_code": resp.error_code,
            "topics": resp.topics,
        });
        if let (Some(t), Some(o)) = (resp.throttle_ms, detail.as_object_mut()) {
            o.insert("throttle_ms".into(), json!(t));
        }
        entry.response = Some(detail.to_string());
        out.push(entry);
    }

    /// Whether a segment arriving after a gap starts a frame we can read.
    fn starts_frame(&self, dir: Dir, data: &[u8]) -> bool {
        match dir {
            Dir::Request => plausible_request(data) == Probe::Client,
            Dir::Response => {
                let mut r = Reader::new(data, false);
                let (Some(len), Some(corr)) = (r.i32(), r.i32()) else {
                    return false;
                };
                usize::try_from(len).is_ok_and(|l| (4..=MAX_FRAME).contains(&l))
                    && self.pending.iter().any(|p| p.corr == corr)
            }
        }
    }
}

impl Parser for KafkaParser {
    fn data(&mut self, dir: Dir, ts: i64, data: &[u8], out: &mut Vec<Entry>) {
        let i = dir as usize;
        if self.dead {
            return;
        }
        if self.resync[i] {
            if !self.starts_frame(dir, data) {
                return;
            }
            self.resync[i] = false;
        }
        if self.bufs[i].is_empty() {
            self.buf_ts[i] = ts;
        }
        self.bufs[i].extend_from_slice(data);
        let buf = std::mem::take(&mut self.bufs[i]);
        let mut pos = 0;
        while let Some(len) = buf.get(pos..pos + 4) {
            let len = i32::from_be_bytes([len[0], len[1], len[2], len[3]]);
            let Some(len) = usize::try_from(len).ok().filter(|l| *l <= MAX_FRAME) else {
                self.errors += 1;
                self.dead = true;
                return;
            };
            let Some(frame) = buf.get(pos + 4..pos + 4 + len) else {
                break;
            };
            let msg_ts = if pos == 0 { self.buf_ts[i] } else { ts };
            match dir {
                Dir::Request => self.request(msg_ts, frame, out),
                Dir::Response => self.response(msg_ts, frame, out),
            }
            pos += 4 + len;
        }
        if pos > 0 {
            self.buf_ts[i] = ts;
        }
        self.bufs[i] = buf;
        self.bufs[i].drain(..pos);
    }

    fn gap(&mut self, dir: Dir, _len: u64, _out: &mut Vec<Entry>) {
        self.errors += 1;
        self.bufs[dir as usize].clear();
        self.resync[dir as usize] = true;
    }

    fn end(&mut self, out: &mut Vec<Entry>) {
        out.extend(self.pending.drain(..).map(|p| p.entry));
    }

    fn errors(&self) -> u64 {
        self.errors
    }
}

#[cfg(test)]
mod tests;
