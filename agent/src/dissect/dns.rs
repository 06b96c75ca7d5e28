//! DNS over UDP and over TCP (2-byte length prefix). Queries pair with answers by DNS id
//! within a flow (the 5-tuple); unanswered queries and unsolicited answers become one-way
//! entries. Names, types and records are decoded by the `simple-dns` crate.

use std::collections::HashMap;

use serde::Serialize;
use serde_json::{json, Value};
use simple_dns::rdata::RData;
use simple_dns::{Packet, QTYPE, TYPE};
use wiretrail_proto::{Entry, EntryId};

use super::{Dir, DissectConfig, Dissector, Parser, Probe};

pub struct Dns;

/// Queries awaiting an answer per flow; beyond this the oldest becomes a one-way entry.
const MAX_PENDING: usize = 4096;

/// Header fields read straight from the wire (id, QR, opcode, TC, rcode, QDCOUNT).
struct Header {
    id: u16,
    response: bool,
    opcode: u8,
    truncated: bool,
    rcode: u8,
    qdcount: u16,
}

fn header(m: &[u8]) -> Option<Header> {
    let h = m.get(..12)?;
    Some(Header {
        id: u16::from_be_bytes([h[0], h[1]]),
        response: h[2] & 0x80 != 0,
        opcode: (h[2] >> 3) & 0x0f,
        truncated: h[2] & 0x02 != 0,
        rcode: h[3] & 0x0f,
        qdcount: u16::from_be_bytes([h[4], h[5]]),
    })
}

fn plausible(m: &[u8]) -> Option<Header> {
    let h = header(m)?;
    (h.opcode <= 6 && (1..=16).contains(&h.qdcount) && Packet::parse(m).is_ok()).then_some(h)
}

pub fn rcode_name(rcode: u8) -> String {
    match rcode {
        0 => "NOERROR",
        1 => "FORMERR",
        2 => "SERVFAIL",
        3 => "NXDOMAIN",
        4 => "NOTIMP",
        5 => "REFUSED",
        6 => "YXDOMAIN",
        7 => "YXRRSET",
        8 => "NXRRSET",
        9 => "NOTAUTH",
        10 => "NOTZONE",
        n => return n.to_string(),
    }
    .to_string()
}

fn type_name(t: TYPE) -> String {
    match t {
        TYPE::Unknown(n) => n.to_string(),
        other => format!("{other:?}"),
    }
}

fn qtype_name(q: QTYPE) -> String {
    match q {
        QTYPE::TYPE(t) => type_name(t),
        other => format!("{other:?}"),
    }
}

fn rdata_text(r: &RData) -> Value {
    match r {
        RData::A(a) => json!(std::net::Ipv4Addr::from(a.address).to_string()),
        RData::AAAA(a) => json!(std::net::Ipv6Addr::from(a.address).to_string()),
        RData::CNAME(n) => json!(n.0.to_string()),
        RData::PTR(n) => json!(n.0.to_string()),
        RData::NS(n) => json!(n.0.to_string()),
        RData::SRV(s) => {
            json!({"priority": s.priority, "weight": s.weight, "port": s.port, "target": s.target.to_string()})
        }
        RData::TXT(t) => json!(t
            .iter_raw()
            .map(|(k, v)| match v {
                Some(v) => format!(
                    "{}={}",
                    String::from_utf8_lossy(k),
                    String::from_utf8_lossy(v)
                ),
                None => String::from_utf8_lossy(k).into_owned(),
            })
            .collect::<Vec<_>>()),
        RData::MX(m) => json!({"preference": m.preference, "exchange": m.exchange.to_string()}),
        _ => Value::Null,
    }
}

impl Dissector for Dns {
    fn name(&self) -> &'static str {
        "dns"
    }

    fn probe_stream(&self, data: &[u8]) -> Probe {
        let Some(len) = data
            .get(..2)
            .map(|l| u16::from_be_bytes([l[0], l[1]]) as usize)
        else {
            return Probe::NeedMore;
        };
        if len < 12 {
            return Probe::No;
        }
        match data.get(2..2 + len) {
            None if data.len() < 2 + 12 => Probe::NeedMore,
            None => match header(&data[2..]) {
                Some(h) if h.opcode <= 6 && (1..=16).contains(&h.qdcount) => Probe::NeedMore,
                _ => Probe::No,
            },
            Some(m) => match plausible(m) {
                Some(h) if h.response => Probe::Server,
                Some(_) => Probe::Client,
                None => Probe::No,
            },
        }
    }

    fn new_stream(&self, _cfg: &DissectConfig) -> Box<dyn Parser> {
        Box::new(DnsParser {
            tcp: true,
            ..Default::default()
        })
    }

    fn probe_datagram(&self, data: &[u8]) -> Probe {
        match plausible(data) {
            Some(h) if h.response => Probe::Server,
            Some(_) => Probe::Client,
            None => Probe::No,
        }
    }

    fn new_datagram(&self, _cfg: &DissectConfig) -> Box<dyn Parser> {
        Box::new(DnsParser::default())
    }

    fn port_hint(&self, port: u16) -> bool {
        matches!(port, 53 | 5353 | 5355)
    }
}

#[derive(Default)]
pub struct DnsParser {
    tcp: bool,
    /// Length-prefixed TCP messages still incomplete, per direction (at most 64 KiB each).
    bufs: [Vec<u8>; 2],
    /// Capture time of the first buffered byte per direction.
    buf_ts: [i64; 2],
    pending: HashMap<u16, Entry>,
    errors: u64,
}

// The detail JSON, serialized straight from these structs (no intermediate `Value` maps:
// DNS entries are small and many, and building maps dominated their cost).
#[derive(Serialize)]
struct Question {
    name: String,
    #[serde(rename = "type")]
    qtype: String,
    class: String,
}

#[derive(Serialize)]
struct Flags {
    rd: bool,
    cd: bool,
}

#[derive(Serialize)]
struct Query<'a> {
    id: u16,
    opcode: u8,
    questions: &'a [Question],
    flags: Flags,
    transport: &'static str,
}

#[derive(Serialize)]
struct Answer {
    name: String,
    #[serde(rename = "type")]
    rtype: String,
    ttl: u32,
    data: Value,
}

#[derive(Serialize)]
struct Reply<'a> {
    id: u16,
    rcode: u8,
    rcode_name: String,
    truncated: bool,
    authoritative: bool,
    questions: &'a [Question],
    answers: Vec<Answer>,
    authorities: usize,
    additionals: usize,
}

fn to_json<T: Serialize>(v: &T) -> Option<String> {
    serde_json::to_string(v).ok()
}

impl DnsParser {
    fn message(&mut self, ts: i64, m: &[u8], out: &mut Vec<Entry>) {
        let (Some(h), Ok(p)) = (header(m), Packet::parse(m)) else {
            self.errors += 1;
            return;
        };
        let questions: Vec<Question> = p
            .questions
            .iter()
            .map(|q| Question {
                name: q.qname.to_string(),
                qtype: qtype_name(q.qtype),
                class: format!("{:?}", q.qclass),
            })
            .collect();
        if !h.response {
            let mut e = Entry::new(EntryId([0; 16]), ts, "", "dns", "");
            if let Some(q) = questions.first() {
                e.method = Some(q.qtype.clone());
                e.path = Some(q.name.trim_end_matches('.').to_string());
            }
            e.request_size = m.len() as u64;
            e.request = to_json(&Query {
                id: h.id,
                opcode: h.opcode,
                questions: &questions,
                flags: Flags {
                    rd: m[2] & 0x01 != 0,
                    cd: m[3] & 0x10 != 0,
                },
                transport: if self.tcp { "tcp" } else { "udp" },
            });
            if let Some(old) = self.pending.insert(h.id, e) {
                out.push(old); // the same id again before an answer: the first stays one-way
            }
            if self.pending.len() > MAX_PENDING {
                let oldest = self
                    .pending
                    .iter()
                    .min_by_key(|(_, e)| e.ts_us)
                    .map(|(id, _)| *id);
                if let Some(e) = oldest.and_then(|id| self.pending.remove(&id)) {
                    out.push(e);
                }
            }
            return;
        }
        let mut e = match self.pending.remove(&h.id) {
            Some(mut q) => {
                q.elapsed_us = Some(ts.saturating_sub(q.ts_us));
                q
            }
            None => {
                let mut e = Entry::new(EntryId([0; 16]), ts, "", "dns", "");
                if let Some(q) = questions.first() {
                    e.method = Some(q.qtype.clone());
                    e.path = Some(q.name.trim_end_matches('.').to_string());
                }
                e
            }
        };
        e.status = Some(i32::from(h.rcode));
        e.status_text = Some(rcode_name(h.rcode));
        e.response_size = m.len() as u64;
        let answers: Vec<Answer> = p
            .answers
            .iter()
            .map(|a| Answer {
                name: a.name.to_string(),
                rtype: type_name(a.rdata.type_code()),
                ttl: a.ttl,
                data: rdata_text(&a.rdata),
            })
            .collect();
        e.response = to_json(&Reply {
            id: h.id,
            rcode: h.rcode,
            rcode_name: rcode_name(h.rcode),
            truncated: h.truncated,
            authoritative: m[2] & 0x04 != 0,
            questions: &questions,
            answers,
            authorities: p.name_servers.len(),
            additionals: p.additional_records.len(),
        });
        out.push(e);
    }
}

impl Parser for DnsParser {
    fn data(&mut self, dir: Dir, ts: i64, data: &[u8], out: &mut Vec<Entry>) {
        if !self.tcp {
            self.message(ts, data, out);
            return;
        }
        let i = dir as usize;
        if self.bufs[i].is_empty() {
            self.buf_ts[i] = ts;
        }
        self.bufs[i].extend_from_slice(data);
        loop {
            let buf = &self.bufs[i];
            let Some(len) = buf
                .get(..2)
                .map(|l| u16::from_be_bytes([l[0], l[1]]) as usize)
            else {
                break;
            };
            if buf.len() < 2 + len {
                break;
            }
            let m: Vec<u8> = self.bufs[i].drain(..2 + len).skip(2).collect();
            // A message that started in an earlier segment is timed by that segment.
            let first = std::mem::replace(&mut self.buf_ts[i], ts);
            self.message(first, &m, out);
        }
    }

    fn gap(&mut self, dir: Dir, _len: u64, _out: &mut Vec<Entry>) {
        self.errors += 1;
        self.bufs[dir as usize].clear();
    }

    fn end(&mut self, out: &mut Vec<Entry>) {
        let mut left: Vec<Entry> = self.pending.drain().map(|(_, e)| e).collect();
        left.sort_by_key(|e| e.ts_us);
        out.extend(left);
    }

    fn errors(&self) -> u64 {
        self.errors
    }
}
