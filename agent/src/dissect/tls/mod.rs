//! TLS handshakes: one `tls` entry per connection, made from what is still plaintext — the
//! ClientHello (SNI, offered ALPN, versions, ciphers, key share groups), the ServerHello
//! (negotiated version incl. TLS 1.3 via `supported_versions`, cipher, ALPN, group,
//! resumption), a HelloRetryRequest, and for TLS 1.2 and below the certificates of both
//! sides and the handshake's alerts. Handshake messages are reassembled across records and
//! records across segments; the messages themselves are decoded by `tls-parser` and the
//! certificates by `x509-parser`.
//!
//! The entry is emitted once nothing more can be learnt in the clear: at the final TLS 1.3
//! ServerHello (everything after it is encrypted), after both ChangeCipherSpecs in TLS 1.2
//! (so the client's certificate and a plaintext alert rejecting it are included), at a fatal
//! alert, or at `end` for an unfinished handshake. `request_size`/`response_size` count the
//! TLS bytes up to the entry.
//!
//! With a key log holding the connection's secrets ([`decrypt`]), the records after the
//! hellos are decrypted: TLS 1.3's encrypted handshake (ALPN from EncryptedExtensions, the
//! certificates) joins the entry, which then waits for the server's Finished, and the
//! application data is dissected (HTTP/1, HTTP/2, gRPC, … inside TLS) as entries of their own.

mod decrypt;
mod names;
#[cfg(test)]
mod tests;

use decrypt::Decryptor;

use serde_json::{json, Map, Value};
use tls_parser::{
    parse_tls_client_hello_extensions, parse_tls_handshake_client_hello,
    parse_tls_handshake_msg_certificate, parse_tls_handshake_server_hello,
    parse_tls_server_hello_extensions, TlsCipherKx, TlsCipherSuite, TlsExtension,
    TlsMessageHandshake,
};
use wiretrail_proto::{Entry, EntryId};

use super::{Dir, DissectConfig, Dissector, Parser, Probe};

/// Largest record fragment allowed on the wire (2^14 plus the 2048 bytes of expansion a
/// TLSCiphertext may add); a longer length means the stream is not TLS, or lost its framing.
const MAX_RECORD: usize = 16384 + 2048;
/// Handshake bytes buffered per direction while a message is incomplete. Certificate chains
/// are the largest plaintext messages (a few KiB, tens at most); past this the connection's
/// handshake is given up on (counted as an error).
const MAX_HANDSHAKE: usize = 256 << 10;
/// Certificates kept per chain in the detail JSON.
const MAX_CERTS: usize = 8;
/// Offered cipher suites listed by name in the request JSON (the count is always given).
const MAX_CIPHERS: usize = 64;
/// Items kept from the other offered lists (ALPN, versions, groups).
const MAX_LIST: usize = 32;

/// ServerHello.random of a HelloRetryRequest (RFC 8446 §4.1.3: SHA-256 of
/// "HelloRetryRequest").
const HRR_RANDOM: [u8; 32] = [
    0xcf, 0x21, 0xad, 0x74, 0xe5, 0x9a, 0x61, 0x11, 0xbe, 0x1d, 0x8c, 0x02, 0x1e, 0x65, 0xb8, 0x91,
    0xc2, 0xa2, 0x11, 0x16, 0x7a, 0xbb, 0x8c, 0x5e, 0x07, 0x9e, 0x09, 0xe2, 0xc8, 0xa8, 0x33, 0x9c,
];

const CT_CHANGE_CIPHER_SPEC: u8 = 20;
const CT_ALERT: u8 = 21;
const CT_HANDSHAKE: u8 = 22;
const CT_APPLICATION_DATA: u8 = 23;

pub struct Tls;

impl Dissector for Tls {
    fn name(&self) -> &'static str {
        "tls"
    }

    /// A handshake record (`16 03 0x`) whose first message is a ClientHello (client) or a
    /// ServerHello (server) with a plausible 24-bit length and a `03 0x` hello version.
    fn probe_stream(&self, data: &[u8]) -> Probe {
        type ByteCheck = (usize, fn(u8) -> bool);
        let checks: [ByteCheck; 7] = [
            (0, |b| b == CT_HANDSHAKE),
            (1, |b| b == 3),
            (2, |b| b <= 4),
            (5, |b| b == 1 || b == 2),
            (6, |b| b == 0),
            (9, |b| b == 3),
            (10, |b| b <= 4),
        ];
        if checks
            .iter()
            .any(|(i, ok)| data.get(*i).is_some_and(|b| !ok(*b)))
        {
            return Probe::No;
        }
        if let Some(len) = u16_at(data, 3) {
            if !(4..=MAX_RECORD).contains(&usize::from(len)) {
                return Probe::No;
            }
        }
        match data.get(5) {
            _ if data.len() < 11 => Probe::NeedMore,
            Some(1) => Probe::Client,
            _ => Probe::Server,
        }
    }

    fn new_stream(&self, cfg: &DissectConfig) -> Box<dyn Parser> {
        let mut p = TlsParser::default();
        if let Some(log) = &cfg.keylog {
            p.decrypt = Some(Box::new(Decryptor::new(log.clone(), cfg.clone())));
        }
        Box::new(p)
    }

    fn port_hint(&self, port: u16) -> bool {
        matches!(port, 443 | 8443 | 993 | 995 | 465 | 636 | 853 | 6443)
    }
}

/// Record and handshake reassembly state of one direction.
#[derive(Default)]
struct Side {
    /// Bytes of a record not yet complete (at most one record's worth).
    buf: Vec<u8>,
    buf_ts: i64,
    /// Handshake bytes not yet a whole message.
    hs: Vec<u8>,
    hs_ts: i64,
    /// A ChangeCipherSpec was sent: in TLS 1.2 and below what follows is encrypted.
    ccs: bool,
    /// TLS bytes seen so far in this direction.
    bytes: u64,
}

#[derive(Default)]
pub struct TlsParser {
    sides: [Side; 2],
    first_ts: Option<i64>,
    /// First ClientHello's time and detail.
    ch_ts: Option<i64>,
    sni: Option<String>,
    request: Map<String, Value>,
    client_session_id: Vec<u8>,
    /// Final ServerHello (not a HelloRetryRequest).
    sh_ts: Option<i64>,
    version: Option<u16>,
    cipher: Option<u16>,
    alpn: Option<String>,
    group: Option<u16>,
    hrr: bool,
    hrr_group: Option<u16>,
    resumed: bool,
    session_ticket: bool,
    client_auth: bool,
    server_done: bool,
    certificates: Vec<Value>,
    client_certificates: Vec<Value>,
    /// First alert seen: level, description, sent by the client.
    alert: Option<(u8, u8, bool)>,
    /// The entry is out or the connection was given up on: the rest is ignored.
    done: bool,
    /// Framing lost: nothing more is parsed, the entry waits for `end`.
    broken: bool,
    /// The server's Finished was decrypted (TLS 1.3 with a key log).
    server_finished: bool,
    decrypt: Option<Box<Decryptor>>,
    errors: u64,
}

fn list<T>(items: impl Iterator<Item = T>, cap: usize) -> Vec<T> {
    items.take(cap).collect()
}

fn utf8(b: &[u8]) -> String {
    String::from_utf8_lossy(&b[..b.len().min(256)]).into_owned()
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

/// Groups of a ClientHello `key_share` (a list of group, length-prefixed key).
fn client_key_share_groups(ext: &[u8]) -> Option<Vec<u16>> {
    let total = usize::from(u16_at(ext, 0)?);
    let entries = ext.get(2..2 + total)?;
    let mut out = Vec::new();
    let mut at = 0;
    while at < entries.len() && out.len() < MAX_LIST {
        out.push(u16_at(entries, at)?);
        at += 4 + usize::from(u16_at(entries, at + 2)?);
    }
    (at == entries.len() || out.len() == MAX_LIST).then_some(out)
}

fn cert_detail(der: &[u8], errors: &mut u64) -> Value {
    match x509_parser::parse_x509_certificate(der) {
        Ok((_, cert)) => json!({
            "subject": cert.subject().to_string(),
            "issuer": cert.issuer().to_string(),
        }),
        Err(_) => {
            *errors += 1;
            json!({"subject": null, "issuer": null})
        }
    }
}

/// Subject and issuer of each certificate in a TLS 1.2 Certificate message body.
fn certificates(body: &[u8], errors: &mut u64) -> Vec<Value> {
    let Ok((_, TlsMessageHandshake::Certificate(c))) = parse_tls_handshake_msg_certificate(body)
    else {
        *errors += 1;
        return Vec::new();
    };
    c.cert_chain
        .iter()
        .take(MAX_CERTS)
        .map(|raw| cert_detail(raw.data, errors))
        .collect()
}

fn u24_at(b: &[u8], at: usize) -> Option<usize> {
    Some(u32::from_be_bytes([0, *b.get(at)?, *b.get(at + 1)?, *b.get(at + 2)?]) as usize)
}

/// The same for a TLS 1.3 Certificate message (RFC 8446 §4.4.2: a request context, then
/// entries of certificate + extensions), seen only when decrypted.
fn certificates13(body: &[u8], errors: &mut u64) -> Vec<Value> {
    let parse = || -> Option<Vec<&[u8]>> {
        let mut at = 1 + usize::from(*body.first()?);
        let end = at + 3 + u24_at(body, at)?;
        at += 3;
        let mut certs = Vec::new();
        while at < end.min(body.len()) && certs.len() < MAX_CERTS {
            let len = u24_at(body, at)?;
            certs.push(body.get(at + 3..at + 3 + len)?);
            at += 3 + len;
            at += 2 + usize::from(u16_at(body, at)?);
        }
        Some(certs)
    };
    match parse() {
        Some(certs) => certs.iter().map(|c| cert_detail(c, errors)).collect(),
        None => {
            *errors += 1;
            Vec::new()
        }
    }
}

impl TlsParser {
    fn client_hello(&mut self, ts: i64, body: &[u8]) {
        let Ok((_, ch)) = parse_tls_handshake_client_hello(body) else {
            self.errors += 1;
            return;
        };
        let exts = match ch.ext.map(parse_tls_client_hello_extensions) {
            None => Vec::new(),
            Some(Ok((_, exts))) => exts,
            Some(Err(_)) => {
                self.errors += 1;
                Vec::new()
            }
        };
        let mut groups = Vec::new();
        let mut sni = None;
        let mut alpn = Vec::new();
        let mut versions = Vec::new();
        let mut supported_groups = Vec::new();
        let mut resumption = Value::Null;
        for ext in &exts {
            match ext {
                TlsExtension::SNI(names) => {
                    sni = names.first().map(|(_, n)| utf8(n));
                }
                TlsExtension::ALPN(protos) => {
                    alpn = list(protos.iter().map(|p| utf8(p)), MAX_LIST);
                }
                TlsExtension::SupportedVersions(v) => {
                    versions = list(v.iter().map(|v| names::version(v.0)), MAX_LIST);
                }
                TlsExtension::EllipticCurves(g) => {
                    supported_groups = list(g.iter().map(|g| names::group(g.0)), MAX_LIST);
                }
                TlsExtension::KeyShare(raw) => match client_key_share_groups(raw) {
                    Some(g) => groups = g,
                    None => self.errors += 1,
                },
                TlsExtension::PreSharedKey(_) => resumption = json!("psk"),
                TlsExtension::SessionTicket(t) if !t.is_empty() && resumption.is_null() => {
                    resumption = json!("ticket");
                }
                _ => {}
            }
        }
        if self.ch_ts.is_some() {
            // The second ClientHello after a HelloRetryRequest: only its new key shares
            // are news.
            if self.hrr {
                self.request.insert(
                    "retry_groups".into(),
                    json!(groups.iter().map(|g| names::group(*g)).collect::<Vec<_>>()),
                );
            }
            return;
        }
        self.ch_ts = Some(ts);
        if let Some(d) = self.decrypt.as_mut() {
            d.client_hello(ch.random, sni.as_deref());
        }
        self.sni.clone_from(&sni);
        self.client_session_id = ch.session_id.unwrap_or_default().to_vec();
        let ciphers: Vec<String> = list(ch.ciphers.iter().map(|c| names::cipher(c.0)), MAX_CIPHERS);
        let Value::Object(request) = json!({
            "sni": sni,
            "alpn": alpn,
            "versions": versions,
            "legacy_version": names::version(ch.version.0),
            "ciphers": ciphers,
            "cipher_count": ch.ciphers.len(),
            "groups": groups.iter().map(|g| names::group(*g)).collect::<Vec<_>>(),
            "supported_groups": supported_groups,
            "resumption": resumption,
        }) else {
            return;
        };
        self.request = request;
    }

    fn server_hello(&mut self, ts: i64, body: &[u8]) {
        let Ok((_, sh)) = parse_tls_handshake_server_hello(body) else {
            self.errors += 1;
            return;
        };
        let exts = match sh.ext.map(parse_tls_server_hello_extensions) {
            None => Vec::new(),
            Some(Ok((_, exts))) => exts,
            Some(Err(_)) => {
                self.errors += 1;
                Vec::new()
            }
        };
        let mut version = sh.version.0;
        let mut group = None;
        let mut alpn = None;
        let mut psk = false;
        for ext in &exts {
            match ext {
                TlsExtension::SupportedVersions(v) => {
                    if let Some(v) = v.first() {
                        version = v.0;
                    }
                }
                TlsExtension::KeyShare(raw) => group = u16_at(raw, 0),
                TlsExtension::ALPN(p) => alpn = p.first().map(|p| utf8(p)),
                TlsExtension::PreSharedKey(_) => psk = true,
                _ => {}
            }
        }
        self.version = Some(version);
        self.cipher = Some(sh.cipher.0);
        if sh.random == HRR_RANDOM {
            self.hrr = true;
            self.hrr_group = group;
            return;
        }
        self.sh_ts = Some(ts);
        self.group = group;
        self.alpn = alpn;
        if let Some(d) = self.decrypt.as_mut() {
            d.server_hello(sh.random, sh.cipher.0, version >= 0x0304);
            d.alpn(self.alpn.as_deref());
        }
        let sid = sh.session_id.unwrap_or_default();
        // In TLS 1.3 the session id echo is only middlebox compatibility, not resumption.
        self.resumed = psk
            || (version < 0x0304 && !sid.is_empty() && sid == self.client_session_id.as_slice());
    }

    fn handshake_message(&mut self, dir: Dir, ts: i64, kind: u8, body: &[u8]) {
        match (kind, dir) {
            (1, Dir::Request) => self.client_hello(ts, body),
            (2, Dir::Response) => self.server_hello(ts, body),
            (4, Dir::Response) => self.session_ticket = true,
            // EncryptedExtensions (TLS 1.3, decrypted): the selected ALPN.
            (8, Dir::Response) => {
                if let Some(Ok((_, exts))) = body.get(2..).map(parse_tls_server_hello_extensions) {
                    for ext in exts {
                        if let TlsExtension::ALPN(p) = ext {
                            self.alpn = p.first().map(|p| utf8(p));
                        }
                    }
                }
                if let Some(d) = self.decrypt.as_mut() {
                    d.alpn(self.alpn.as_deref());
                }
            }
            (20, Dir::Response) => self.server_finished = true,
            (11, _) => {
                let certs = if self.tls13() {
                    certificates13(body, &mut self.errors)
                } else {
                    certificates(body, &mut self.errors)
                };
                match dir {
                    Dir::Request => self.client_certificates = certs,
                    Dir::Response => self.certificates = certs,
                }
            }
            // ECDHE ServerKeyExchange: curve_type named_curve (3), then the group.
            (12, Dir::Response) if body.first() == Some(&3) && self.ecdhe() => {
                self.group = u16_at(body, 1);
            }
            (13, Dir::Response) => self.client_auth = true,
            (14, Dir::Response) => self.server_done = true,
            _ => {}
        }
    }

    fn ecdhe(&self) -> bool {
        self.cipher
            .and_then(TlsCipherSuite::from_id)
            .is_some_and(|c| c.kx == TlsCipherKx::Ecdhe)
    }

    fn tls13(&self) -> bool {
        self.version.is_some_and(|v| v >= 0x0304)
    }

    #[allow(clippy::too_many_arguments)]
    fn record(
        &mut self,
        dir: Dir,
        ts: i64,
        kind: u8,
        version: u16,
        frag: &[u8],
        out: &mut Vec<Entry>,
    ) {
        let i = dir as usize;
        // After a ChangeCipherSpec, TLS 1.2 handshake records and alerts are encrypted; in
        // TLS 1.3 the CCS is a compatibility no-op and encrypted records use type 23.
        let encrypted = self.sides[i].ccs && !self.tls13();
        if (encrypted || (self.tls13() && kind == CT_APPLICATION_DATA))
            && self.decrypt.as_ref().is_some_and(|d| d.active(dir))
        {
            let opened = self
                .decrypt
                .as_mut()
                .and_then(|d| d.open(dir, kind, version, frag));
            match opened {
                Some((CT_HANDSHAKE, plain)) => self.handshake_bytes(dir, ts, &plain),
                Some((CT_ALERT, plain)) if plain.len() == 2 => self.alert(dir, &plain),
                Some((CT_APPLICATION_DATA, plain)) => {
                    if let Some(d) = self.decrypt.as_mut() {
                        d.application_data(dir, ts, &plain, out);
                    }
                }
                _ => {}
            }
            return;
        }
        match kind {
            CT_CHANGE_CIPHER_SPEC => {
                if let Some(d) = self.decrypt.as_mut() {
                    d.change_cipher_spec(dir);
                }
                if dir == Dir::Response && !self.tls13() && !self.server_done {
                    // Straight from ServerHello to ChangeCipherSpec: an abbreviated
                    // (resumed) TLS 1.2 handshake.
                    self.resumed |= self.sh_ts.is_some();
                }
                self.sides[i].ccs = true;
            }
            // An encrypted alert is longer than the two plaintext bytes.
            CT_ALERT if !encrypted && frag.len() == 2 => self.alert(dir, frag),
            CT_HANDSHAKE if !encrypted => self.handshake_bytes(dir, ts, frag),
            _ => {}
        }
    }

    fn alert(&mut self, dir: Dir, body: &[u8]) {
        if let [level, desc] = body {
            if self.alert.is_none_or(|(l, _, _)| l != 2) {
                self.alert = Some((*level, *desc, dir == Dir::Request));
            }
        }
    }

    /// Records are being decrypted (a key log holds this connection's secrets).
    fn decrypting(&self) -> bool {
        self.decrypt
            .as_ref()
            .is_some_and(|d| d.active(Dir::Request) || d.active(Dir::Response))
    }

    fn handshake_bytes(&mut self, dir: Dir, ts: i64, frag: &[u8]) {
        let i = dir as usize;
        let side = &mut self.sides[i];
        if side.hs.is_empty() {
            side.hs_ts = ts;
        }
        if side.hs.len() + frag.len() > MAX_HANDSHAKE {
            self.errors += 1;
            self.broken = true;
            return;
        }
        side.hs.extend_from_slice(frag);
        let hs = std::mem::take(&mut side.hs);
        let first_ts = side.hs_ts;
        let mut pos = 0;
        while let Some(head) = hs.get(pos..pos + 4) {
            let len = u32::from_be_bytes([0, head[1], head[2], head[3]]) as usize;
            let Some(body) = hs.get(pos + 4..pos + 4 + len) else {
                break;
            };
            let msg_ts = if pos == 0 { first_ts } else { ts };
            self.handshake_message(dir, msg_ts, head[0], body);
            pos += 4 + len;
        }
        let side = &mut self.sides[i];
        side.hs = hs.get(pos..).unwrap_or_default().to_vec();
        if pos > 0 {
            side.hs_ts = ts;
        }
    }

    /// Whether the plaintext part of the handshake is over.
    fn complete(&self) -> bool {
        if self.alert.is_some_and(|(level, _, _)| level == 2) {
            return true;
        }
        if self.tls13() {
            // With the keys, wait for the decrypted server flight (ALPN, certificates).
            self.sh_ts.is_some() && (self.server_finished || !self.decrypting())
        } else {
            self.sh_ts.is_some() && self.sides[0].ccs && self.sides[1].ccs
        }
    }

    fn emit(&mut self, out: &mut Vec<Entry>) {
        if self.done {
            return;
        }
        self.done = true;
        let Some(ts) = self.ch_ts.or(self.sh_ts).or(self.first_ts) else {
            return;
        };
        if self.ch_ts.is_none() && self.sh_ts.is_none() && self.alert.is_none() {
            return;
        }
        let mut e = Entry::new(EntryId([0; 16]), ts, "", "tls", "");
        e.method = Some("handshake".into());
        e.path = self.sni.take();
        e.elapsed_us = self.ch_ts.zip(self.sh_ts).map(|(c, s)| s - c);
        e.request_size = self.sides[0].bytes;
        e.response_size = self.sides[1].bytes;
        let fatal = self.alert.filter(|(level, _, _)| *level == 2);
        if let Some((_, desc, _)) = fatal {
            e.status = Some(i32::from(desc));
            e.status_text = Some(names::alert(desc));
        } else if self.sh_ts.is_some() {
            e.status = Some(0);
            e.status_text = self.version.map(names::version);
        }
        if self.ch_ts.is_some() {
            e.request = Some(Value::Object(std::mem::take(&mut self.request)).to_string());
        }
        if self.sh_ts.is_some() || self.hrr || self.alert.is_some() {
            let alert = self.alert.map(|(level, desc, from_client)| {
                json!({
                    "level": if level == 2 { "fatal" } else { "warning" },
                    "description": names::alert(desc),
                    "code": desc,
                    "from": if from_client { "client" } else { "server" },
                })
            });
            e.response = Some(
                json!({
                    "version": self.version.map(names::version),
                    "cipher": self.cipher.map(names::cipher),
                    "cipher_id": self.cipher.map(|c| format!("0x{c:04x}")),
                    "alpn": self.alpn.take(),
                    "group": self.group.map(names::group),
                    "hrr": self.hrr,
                    "hrr_group": self.hrr_group.map(names::group),
                    "resumed": self.resumed,
                    "session_ticket": self.session_ticket,
                    "client_auth": self.client_auth,
                    "certificates": std::mem::take(&mut self.certificates),
                    "client_certificates": std::mem::take(&mut self.client_certificates),
                    "alert": alert,
                    "decryption": self.decrypt.as_ref().map(|d| d.detail()),
                })
                .to_string(),
            );
        }
        out.push(e);
    }
}

impl Parser for TlsParser {
    fn data(&mut self, dir: Dir, ts: i64, data: &[u8], out: &mut Vec<Entry>) {
        if self.done && !self.decrypting() {
            return;
        }
        self.first_ts.get_or_insert(ts);
        let i = dir as usize;
        self.sides[i].bytes += data.len() as u64;
        if self.broken {
            return;
        }
        let side = &mut self.sides[i];
        if side.buf.is_empty() {
            side.buf_ts = ts;
        }
        side.buf.extend_from_slice(data);
        let buf = std::mem::take(&mut side.buf);
        let buf_ts = side.buf_ts;
        let mut pos = 0;
        while let Some(h) = buf.get(pos..pos + 5) {
            let len = usize::from(u16::from_be_bytes([h[3], h[4]]));
            if !(20..=24).contains(&h[0]) || h[1] != 3 || h[2] > 4 || len > MAX_RECORD {
                self.errors += 1;
                self.broken = true;
                return;
            }
            let Some(frag) = buf.get(pos + 5..pos + 5 + len) else {
                break;
            };
            let rec_ts = if pos == 0 { buf_ts } else { ts };
            let version = u16::from_be_bytes([h[1], h[2]]);
            self.record(dir, rec_ts, h[0], version, frag, out);
            pos += 5 + len;
            if self.broken {
                return;
            }
            if !self.done && self.complete() {
                self.emit(out);
                if !self.decrypting() {
                    return;
                }
            }
        }
        let side = &mut self.sides[i];
        side.buf = buf.get(pos..).unwrap_or_default().to_vec();
        if pos > 0 {
            side.buf_ts = ts;
        }
    }

    fn gap(&mut self, dir: Dir, _len: u64, _out: &mut Vec<Entry>) {
        if self.done || self.broken {
            return;
        }
        // Record boundaries are lost; what was learnt so far is emitted at `end`.
        self.errors += 1;
        self.broken = true;
        self.sides[dir as usize].buf.clear();
    }

    fn end(&mut self, out: &mut Vec<Entry>) {
        self.emit(out);
        if let Some(d) = self.decrypt.as_mut() {
            d.end(out);
        }
    }

    fn errors(&self) -> u64 {
        self.errors + self.decrypt.as_ref().map_or(0, |d| d.errors())
    }
}
