//! A PCAP rebuilt from the stored HTTP/1 exchanges, so the window opens in Wireshark/tshark.
//! Raw payloads are not stored, so the HTTP/1 text is rebuilt from method, path, headers and
//! body (status line from status/status_text) and carried in synthesized TCP segments per
//! connection: SYN, SYN-ACK, ACK, each request at its captured `ts`, each response at
//! `ts + elapsed`, then FIN/FIN-ACK/ACK. Other protocols are left out and counted: their
//! bytes on the wire cannot be reproduced honestly from what is stored.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufWriter, Write};
use std::net::IpAddr;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::har::body_bytes;
use super::headers;
use crate::QueryError;

/// TCP payload per segment (Ethernet MTU 1500 − IPv4 − TCP headers).
const MSS: usize = 1460;
const LINKTYPE_ETHERNET: u32 = 1;
const SNAPLEN: u32 = 262_144;
const CLIENT_ISN: u32 = 0x1000_0000;
const SERVER_ISN: u32 = 0x5000_0000;
const SYN: u8 = 0x02;
const ACK: u8 = 0x10;
const PSH: u8 = 0x08;
const FIN: u8 = 0x01;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PcapSummary {
    pub file: String,
    /// HTTP/1 exchanges in the PCAP.
    pub entries: u64,
    pub connections: u64,
    pub packets: u64,
    /// Entries not in the PCAP, by protocol (HTTP/1 entries without a request line count as
    /// `http`).
    pub left_out: BTreeMap<String, u64>,
    pub note: String,
}

/// One HTTP/1 exchange, rebuilt.
struct Exchange {
    ts: i64,
    resp_ts: Option<i64>,
    request: Vec<u8>,
    response: Option<Vec<u8>>,
}

#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct ConnKey {
    client: (IpAddr, u16),
    server: (IpAddr, u16),
}

#[derive(Default)]
pub struct PcapBuilder {
    conns: HashMap<ConnKey, Vec<Exchange>>,
    entries: u64,
    left_out: BTreeMap<String, u64>,
}

/// Header block + body. Bodies are stored decoded, so framing headers are replaced by one
/// `Content-Length` matching the stored bytes; a bodiless response keeps its headers as sent.
fn message(first_line: &str, hs: &[(String, String)], body: &[u8], bodiless: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(first_line.len() + body.len() + 256);
    out.extend_from_slice(first_line.as_bytes());
    out.extend_from_slice(b"\r\n");
    let framing = |n: &str| {
        ["content-length", "transfer-encoding", "content-encoding"]
            .iter()
            .any(|f| n.eq_ignore_ascii_case(f))
    };
    let had_framing = hs.iter().any(|(n, _)| framing(n));
    for (n, v) in hs {
        if bodiless || !framing(n) {
            out.extend_from_slice(format!("{n}: {v}\r\n").as_bytes());
        }
    }
    if !bodiless && (had_framing || !body.is_empty()) {
        out.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    if !bodiless {
        out.extend_from_slice(body);
    }
    out
}

impl PcapBuilder {
    fn leave_out(&mut self, protocol: &str) {
        *self.left_out.entry(protocol.to_string()).or_default() += 1;
    }

    /// Takes an entry (full JSON form); anything but an HTTP/1 request is counted as left out.
    pub fn add(&mut self, e: &Value) {
        let protocol = e["protocol"].as_str().unwrap_or("");
        let version = e["request"]["version"].as_str().unwrap_or("");
        let method = e["method"].as_str();
        let (Some(method), true) = (method, version.starts_with("HTTP/1.")) else {
            self.leave_out(protocol);
            return;
        };
        let addr = |side: &str| -> Option<(IpAddr, u16)> {
            let ip: IpAddr = e[side]["ip"].as_str()?.parse().ok()?;
            let port = u16::try_from(e[side]["port"].as_u64()?).ok()?;
            Some((ip, port))
        };
        let (Some(client), Some(server), Some(ts)) =
            (addr("src"), addr("dst"), e["ts_us"].as_i64())
        else {
            self.leave_out(protocol);
            return;
        };
        if client.0.is_ipv4() != server.0.is_ipv4() {
            self.leave_out(protocol);
            return;
        }
        let path = e["path"].as_str().unwrap_or("/");
        let req_body = body_bytes(&e["request_body"]).unwrap_or_default();
        let request = message(
            &format!("{method} {path} {version}"),
            &headers(&e["request_headers"]),
            &req_body,
            false,
        );
        let response = e["status"]
            .as_i64()
            .filter(|_| !e["response"].is_null())
            .map(|status| {
                let rv = e["response"]["version"].as_str().unwrap_or(version);
                let reason = e["status_text"].as_str().unwrap_or("");
                let bodiless = method.eq_ignore_ascii_case("HEAD")
                    || (100..200).contains(&status)
                    || status == 204
                    || status == 304;
                let body = body_bytes(&e["response_body"]).unwrap_or_default();
                message(
                    &format!("{rv} {status} {reason}"),
                    &headers(&e["response_headers"]),
                    &body,
                    bodiless,
                )
            });
        let resp_ts = response
            .as_ref()
            .map(|_| ts + e["elapsed_us"].as_i64().unwrap_or(0).max(0));
        self.conns
            .entry(ConnKey { client, server })
            .or_default()
            .push(Exchange {
                ts,
                resp_ts,
                request,
                response,
            });
        self.entries += 1;
    }

    /// Writes the PCAP (classic format, µs timestamps, Ethernet) and returns its summary.
    pub fn write(self, path: &Path) -> Result<PcapSummary, QueryError> {
        let io =
            |e: std::io::Error| QueryError::Io(format!("cannot write {}: {e}", path.display()));
        let mut conns: Vec<(ConnKey, Vec<Exchange>)> = self.conns.into_iter().collect();
        conns.sort_by(|a, b| a.0.cmp(&b.0));
        let mut packets: Vec<(i64, usize, usize, Vec<u8>)> = Vec::new();
        for (ci, (key, mut xs)) in conns.into_iter().enumerate() {
            xs.sort_by_key(|x| x.ts);
            for (order, (t, frame)) in connection_packets(&key, &xs).into_iter().enumerate() {
                packets.push((t, ci, order, frame));
            }
        }
        packets.sort_by_key(|a| (a.0, a.1, a.2));
        let f = std::fs::File::create(path).map_err(io)?;
        let mut w = BufWriter::new(f);
        let mut head = Vec::with_capacity(24);
        head.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
        head.extend_from_slice(&2u16.to_le_bytes());
        head.extend_from_slice(&4u16.to_le_bytes());
        head.extend_from_slice(&0i32.to_le_bytes());
        head.extend_from_slice(&0u32.to_le_bytes());
        head.extend_from_slice(&SNAPLEN.to_le_bytes());
        head.extend_from_slice(&LINKTYPE_ETHERNET.to_le_bytes());
        w.write_all(&head).map_err(io)?;
        for (t, _, _, frame) in &packets {
            let sec = t.div_euclid(1_000_000) as u32;
            let usec = t.rem_euclid(1_000_000) as u32;
            let len = frame.len() as u32;
            for v in [sec, usec, len, len] {
                w.write_all(&v.to_le_bytes()).map_err(io)?;
            }
            w.write_all(frame).map_err(io)?;
        }
        w.flush().map_err(io)?;
        Ok(PcapSummary {
            file: super::PCAP_FILE.into(),
            entries: self.entries,
            connections: packets
                .iter()
                .map(|p| p.1)
                .max()
                .map_or(0, |m| m as u64 + 1),
            packets: packets.len() as u64,
            left_out: self.left_out,
            note: "HTTP/1 exchanges rebuilt from stored headers and bodies (decoded bodies with \
                   Content-Length; bodies cut at the body cap stay cut); handshake and FIN \
                   times synthesized; protocols in left_out are not in the PCAP because their \
                   raw payloads are not stored"
                .into(),
        })
    }
}

/// The packets of one connection, in order, with their times.
fn connection_packets(key: &ConnKey, xs: &[Exchange]) -> Vec<(i64, Vec<u8>)> {
    // (time, exchange index, 0 = request / 1 = response, bytes); a direction's times never go
    // backwards, so sequence numbers follow time.
    let mut events: Vec<(i64, usize, u8, &[u8])> = Vec::new();
    let mut last_resp = i64::MIN;
    for (i, x) in xs.iter().enumerate() {
        events.push((x.ts, i, 0, &x.request));
        if let (Some(r), Some(t)) = (&x.response, x.resp_ts) {
            let t = t.max(x.ts).max(last_resp);
            last_resp = t;
            events.push((t, i, 1, r));
        }
    }
    events.sort_by_key(|e| (e.0, e.1, e.2));
    let first = xs.first().map_or(0, |x| x.ts);
    let last = events.last().map_or(first, |e| e.0);
    let mut seq = [CLIENT_ISN, SERVER_ISN];
    let mut out = Vec::new();
    let mut ip_id = 0u16;
    let mut seg = |t: i64, dir: usize, flags: u8, payload: &[u8], seq: &mut [u32; 2]| {
        let (src, dst) = if dir == 0 {
            (key.client, key.server)
        } else {
            (key.server, key.client)
        };
        let ack = if flags & ACK != 0 { seq[1 - dir] } else { 0 };
        ip_id = ip_id.wrapping_add(1);
        out.push((
            t,
            frame(src, dst, seq[dir], ack, flags, payload, ip_id, dir),
        ));
        let mut adv = payload.len() as u32;
        if flags & (SYN | FIN) != 0 {
            adv += 1;
        }
        seq[dir] = seq[dir].wrapping_add(adv);
    };
    seg(first - 3, 0, SYN, &[], &mut seq);
    seg(first - 2, 1, SYN | ACK, &[], &mut seq);
    seg(first - 1, 0, ACK, &[], &mut seq);
    for (t, _, dir, bytes) in events {
        let dir = dir as usize;
        let chunks: Vec<&[u8]> = bytes.chunks(MSS).collect();
        let n = chunks.len();
        for (k, c) in chunks.into_iter().enumerate() {
            let flags = if k + 1 == n { ACK | PSH } else { ACK };
            seg(t, dir, flags, c, &mut seq);
        }
    }
    seg(last + 1, 0, FIN | ACK, &[], &mut seq);
    seg(last + 2, 1, FIN | ACK, &[], &mut seq);
    seg(last + 3, 0, ACK, &[], &mut seq);
    out
}

fn checksum(chunks: &[&[u8]]) -> u16 {
    let mut sum = 0u32;
    for c in chunks {
        let mut it = c.chunks_exact(2);
        for w in &mut it {
            sum += u32::from(u16::from_be_bytes([w[0], w[1]]));
        }
        if let [b] = it.remainder() {
            sum += u32::from(*b) << 8;
        }
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// One Ethernet frame carrying a TCP segment (IPv4 or IPv6), checksums filled in.
#[allow(clippy::too_many_arguments)]
fn frame(
    src: (IpAddr, u16),
    dst: (IpAddr, u16),
    seq: u32,
    ack: u32,
    flags: u8,
    payload: &[u8],
    ip_id: u16,
    dir: usize,
) -> Vec<u8> {
    let mut tcp = Vec::with_capacity(20 + payload.len());
    tcp.extend_from_slice(&src.1.to_be_bytes());
    tcp.extend_from_slice(&dst.1.to_be_bytes());
    tcp.extend_from_slice(&seq.to_be_bytes());
    tcp.extend_from_slice(&ack.to_be_bytes());
    tcp.push(5 << 4);
    tcp.push(flags);
    tcp.extend_from_slice(&65535u16.to_be_bytes());
    tcp.extend_from_slice(&[0, 0, 0, 0]);
    tcp.extend_from_slice(payload);
    let tcp_len = tcp.len();
    // Locally administered MACs: 02:…:01 is the client, 02:…:02 the server.
    let mac = |who: u8| [0x02, 0, 0, 0, 0, who];
    let (smac, dmac) = if dir == 0 {
        (mac(1), mac(2))
    } else {
        (mac(2), mac(1))
    };
    let mut f = Vec::with_capacity(14 + 40 + tcp_len);
    f.extend_from_slice(&dmac);
    f.extend_from_slice(&smac);
    match (src.0, dst.0) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            f.extend_from_slice(&0x0800u16.to_be_bytes());
            let mut ip = [0u8; 20];
            ip[0] = 0x45;
            ip[2..4].copy_from_slice(&((20 + tcp_len) as u16).to_be_bytes());
            ip[4..6].copy_from_slice(&ip_id.to_be_bytes());
            ip[6] = 0x40; // don't fragment
            ip[8] = 64;
            ip[9] = 6;
            ip[12..16].copy_from_slice(&s.octets());
            ip[16..20].copy_from_slice(&d.octets());
            let c = checksum(&[&ip[..]]);
            ip[10..12].copy_from_slice(&c.to_be_bytes());
            let mut pseudo = Vec::with_capacity(12);
            pseudo.extend_from_slice(&s.octets());
            pseudo.extend_from_slice(&d.octets());
            pseudo.extend_from_slice(&[0, 6]);
            pseudo.extend_from_slice(&(tcp_len as u16).to_be_bytes());
            let c = checksum(&[&pseudo[..], &tcp[..]]);
            tcp[16..18].copy_from_slice(&c.to_be_bytes());
            f.extend_from_slice(&ip);
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            f.extend_from_slice(&0x86ddu16.to_be_bytes());
            let mut ip = [0u8; 40];
            ip[0] = 0x60;
            ip[4..6].copy_from_slice(&(tcp_len as u16).to_be_bytes());
            ip[6] = 6;
            ip[7] = 64;
            ip[8..24].copy_from_slice(&s.octets());
            ip[24..40].copy_from_slice(&d.octets());
            let mut pseudo = Vec::with_capacity(40);
            pseudo.extend_from_slice(&s.octets());
            pseudo.extend_from_slice(&d.octets());
            pseudo.extend_from_slice(&(tcp_len as u32).to_be_bytes());
            pseudo.extend_from_slice(&[0, 0, 0, 6]);
            let c = checksum(&[&pseudo[..], &tcp[..]]);
            tcp[16..18].copy_from_slice(&c.to_be_bytes());
            f.extend_from_slice(&ip);
        }
        _ => unreachable!("mixed address families are left out in add()"),
    }
    f.extend_from_slice(&tcp);
    f
}

/// Packets in a classic PCAP file (for `snapshot verify`).
pub fn count_packets(path: &Path) -> Result<u64, String> {
    let b = std::fs::read(path).map_err(|e| format!("cannot read: {e}"))?;
    if b.len() < 24 || b[..4] != 0xa1b2_c3d4u32.to_le_bytes() {
        return Err("not a little-endian µs PCAP".into());
    }
    let mut at = 24usize;
    let mut n = 0u64;
    while at < b.len() {
        let Some(h) = b.get(at..at + 16) else {
            return Err(format!("truncated packet header at byte {at}"));
        };
        let incl = u32::from_le_bytes([h[8], h[9], h[10], h[11]]) as usize;
        at += 16 + incl;
        if at > b.len() {
            return Err(format!("truncated packet {n}"));
        }
        n += 1;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_fold_to_zero_when_included() {
        let src = ("10.0.0.1".parse().unwrap(), 40000);
        let dst = ("10.0.0.2".parse().unwrap(), 80);
        let f = frame(src, dst, 1, 2, ACK | PSH, b"GET / HTTP/1.1\r\n\r\n", 7, 0);
        let ip = &f[14..34];
        assert_eq!(checksum(&[ip]), 0, "IPv4 header checksum");
        let tcp = &f[34..];
        let mut pseudo = Vec::new();
        pseudo.extend_from_slice(&ip[12..20]);
        pseudo.extend_from_slice(&[0, 6]);
        pseudo.extend_from_slice(&(tcp.len() as u16).to_be_bytes());
        assert_eq!(checksum(&[&pseudo[..], tcp]), 0, "TCP checksum");
    }

    #[test]
    fn framing_headers_follow_the_stored_body() {
        let hs = vec![
            ("Host".to_string(), "x".to_string()),
            ("Transfer-Encoding".to_string(), "chunked".to_string()),
            ("Content-Encoding".to_string(), "gzip".to_string()),
        ];
        let m = message("HTTP/1.1 200 OK", &hs, b"hello", false);
        let text = String::from_utf8(m).unwrap();
        assert_eq!(
            text,
            "HTTP/1.1 200 OK\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
        );
    }
}
