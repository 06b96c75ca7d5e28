//! PostgreSQL frontend/backend protocol v3. One entry for the startup and authentication
//! exchange (method `startup`), one per simple `Query` (all statements of a multi-statement
//! query together, ending at `ReadyForQuery`) and one per extended-protocol `Execute` (query
//! text found through Bind's portal → Parse's statement, ending at `CommandComplete`,
//! `ErrorResponse`, `EmptyQueryResponse` or `PortalSuspended`). `method` is the SQL command
//! (first word of the command tag, or the query's first keyword when it failed), `path` the
//! query text, `status` 0/1 and `status_text` the SQLSTATE of an error.
//!
//! `elapsed_us` of a query runs to its first response message; of the startup entry, to the
//! ReadyForQuery (or error) that ends the whole authentication exchange. `response_size`
//! counts the backend bytes since the previous entry ended, so the ReadyForQuery answering
//! an extended-protocol Sync is counted with the next entry.
//!
//! After an SSLRequest or GSSENCRequest that the server accepts (`S` / `G`) the rest of the
//! connection is encrypted: the parser reports [`Parser::upgraded`] and stops. Passwords and
//! SASL payloads are never kept, only the mechanism name.
//!
//! Framing streams: a message body is kept only up to [`KEEP`] bytes and the rest is counted
//! as it passes, so a 100 MB DataRow or COPY costs no memory; a declared length over
//! [`MAX_MESSAGE`] means the framing is lost and the connection is no longer dissected.

mod session;
#[cfg(test)]
mod tests;
mod wire;

use wiretrail_proto::Entry;

use super::{Dir, DissectConfig, Dissector, Parser, Probe};
use session::Session;

/// Largest message length accepted from a 4-byte length field. Larger ones are far beyond
/// what clients and servers send in practice and almost always mean lost framing (or a
/// hostile peer): the message counts as an error and the connection is no longer dissected.
pub const MAX_MESSAGE: usize = 64 << 20;
/// Bytes of one message body kept for decoding (query text, Bind parameters, errors); the
/// rest of a longer message is skipped as it streams by. Together with the small header
/// buffer this bounds the framing memory of a connection to 2 × `KEEP`.
pub const KEEP: usize = 64 << 10;
/// Longest startup packet (the server's own `MAX_STARTUP_PACKET_LENGTH`).
const MAX_STARTUP: usize = 10_000;
/// A mid-stream `Query`/`Parse` is only recognised when it is complete within this length.
const MAX_PROBE_MESSAGE: usize = 1 << 20;

pub(crate) const SSL_REQUEST: u32 = 80_877_103;
pub(crate) const GSSENC_REQUEST: u32 = 80_877_104;
pub(crate) const CANCEL_REQUEST: u32 = 80_877_102;

pub struct Postgres;

fn be32(b: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(..4)?.try_into().ok()?))
}

/// `key\0value\0…\0` of a startup packet: keys are GUC-like names, `user` is mandatory.
fn startup_params_ok(params: &[u8]) -> bool {
    let Some((&0, pairs)) = params.split_last() else {
        return false;
    };
    let mut parts = pairs.split(|b| *b == 0);
    let mut user = false;
    // `pairs` ends with the NUL of the last value, so the final split part is empty.
    while let Some(key) = parts.next() {
        if key.is_empty() {
            return parts.next().is_none() && user;
        }
        if !key
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
            || parts.next().is_none()
        {
            return false;
        }
        user |= key == b"user";
    }
    false
}

fn probe_startup(data: &[u8]) -> Probe {
    // Lengths are below MAX_STARTUP, so the two high bytes are zero.
    if data.get(1).is_some_and(|b| *b != 0) {
        return Probe::No;
    }
    let (Some(len), Some(code)) = (be32(data), data.get(4..).and_then(be32)) else {
        return Probe::NeedMore;
    };
    let len = len as usize;
    match code {
        SSL_REQUEST | GSSENC_REQUEST if len == 8 => Probe::Client,
        CANCEL_REQUEST if len == 16 => Probe::Client,
        c if c >> 16 == 3 && (9..=MAX_STARTUP).contains(&len) => match data.get(8..len) {
            Some(params) if startup_params_ok(params) => Probe::Client,
            Some(_) => Probe::No,
            None => Probe::NeedMore,
        },
        _ => Probe::No,
    }
}

/// A client caught mid-connection: a complete, well-formed `Query` or `Parse` message.
fn probe_typed(data: &[u8]) -> Probe {
    if data.get(1).is_some_and(|b| *b != 0) {
        return Probe::No;
    }
    let Some(len) = data.get(1..).and_then(be32) else {
        return Probe::NeedMore;
    };
    let len = len as usize;
    if !(5..=MAX_PROBE_MESSAGE).contains(&len) {
        return Probe::No;
    }
    let Some(body) = data.get(5..1 + len) else {
        return Probe::NeedMore;
    };
    let text_ok = |t: &[u8]| {
        std::str::from_utf8(t).is_ok_and(|s| {
            s.trim_start()
                .starts_with(|c: char| c.is_ascii_alphabetic() || c == '(')
        })
    };
    let ok = match data.first() {
        Some(b'Q') => body
            .split_last()
            .is_some_and(|(last, t)| *last == 0 && !t.contains(&0) && text_ok(t)),
        Some(b'P') => {
            let mut parts = body.splitn(3, |b| *b == 0);
            let (_, query, rest) = (parts.next(), parts.next(), parts.next());
            match (query, rest) {
                (Some(q), Some(r)) if text_ok(q) => {
                    let n = r
                        .get(..2)
                        .map(|n| u16::from_be_bytes([n[0], n[1]]) as usize);
                    n.is_some_and(|n| r.len() == 2 + 4 * n)
                }
                _ => false,
            }
        }
        _ => false,
    };
    if ok {
        Probe::Client
    } else {
        Probe::No
    }
}

impl Dissector for Postgres {
    fn name(&self) -> &'static str {
        "postgres"
    }

    /// A startup packet (StartupMessage protocol 3.x with a `user`, SSLRequest, GSSENCRequest,
    /// CancelRequest), or for a connection captured mid-way a complete Query/Parse message.
    fn probe_stream(&self, data: &[u8]) -> Probe {
        match data.first() {
            None => Probe::NeedMore,
            Some(0) => probe_startup(data),
            Some(b'Q' | b'P') => probe_typed(data),
            Some(_) => Probe::No,
        }
    }

    fn new_stream(&self, cfg: &DissectConfig) -> Box<dyn Parser> {
        Box::new(PgParser {
            session: Session::new(cfg.body_cap),
            sides: Default::default(),
            dead: false,
        })
    }

    fn port_hint(&self, port: u16) -> bool {
        port == 5432
    }
}

/// One message being read: its type (`None` for the untyped startup packets), the declared
/// body length, what is kept of the body, and how many body bytes are still to come.
struct Msg {
    typ: Option<u8>,
    len: usize,
    body: Vec<u8>,
    left: usize,
    /// Bytes were lost inside the body; nothing after the hole is kept.
    lossy: bool,
}

#[derive(Default)]
struct Side {
    head: Vec<u8>,
    msg: Option<Msg>,
    /// Capture time of the current message's first byte.
    ts: i64,
}

pub struct PgParser {
    session: Session,
    sides: [Side; 2],
    /// Framing lost: nothing more is dissected on this connection.
    dead: bool,
}

impl PgParser {
    fn stop(&mut self) {
        self.session.errors += 1;
        self.dead = true;
        self.sides = Default::default();
    }
}

impl Parser for PgParser {
    fn data(&mut self, dir: Dir, ts: i64, data: &[u8], out: &mut Vec<Entry>) {
        let mut rest = data;
        while !rest.is_empty() && !self.dead && !self.session.upgraded {
            let side = &mut self.sides[dir as usize];
            if side.msg.is_none() {
                if side.head.is_empty() {
                    side.ts = ts;
                    // The one-byte answer to SSLRequest / GSSENCRequest has no framing.
                    if dir == Dir::Response && self.session.take_ssl_reply(rest[0], ts, out) {
                        rest = &rest[1..];
                        continue;
                    }
                }
                let untyped = dir == Dir::Request && self.session.client_untyped(rest[0]);
                let need: usize = if untyped { 4 } else { 5 };
                let take = need.saturating_sub(side.head.len()).min(rest.len());
                side.head.extend_from_slice(&rest[..take]);
                rest = &rest[take..];
                if side.head.len() < need {
                    break;
                }
                let typ = (!untyped).then(|| side.head[0]);
                let len = be32(&side.head[need - 4..]).unwrap_or(0) as usize;
                let max = if untyped { MAX_STARTUP } else { MAX_MESSAGE };
                if !(4..=max).contains(&len) {
                    self.stop();
                    break;
                }
                side.head.clear();
                side.msg = Some(Msg {
                    typ,
                    len: len - 4,
                    body: Vec::with_capacity((len - 4).min(KEEP)),
                    left: len - 4,
                    lossy: false,
                });
            }
            let Some(msg) = side.msg.as_mut() else {
                break;
            };
            let n = msg.left.min(rest.len());
            let keep = if msg.lossy {
                0
            } else {
                n.min(KEEP.saturating_sub(msg.body.len()))
            };
            msg.body.extend_from_slice(&rest[..keep]);
            msg.left -= n;
            rest = &rest[n..];
            if msg.left == 0 {
                let msg_ts = side.ts;
                if let Some(m) = side.msg.take() {
                    self.session
                        .message(dir, m.typ, &m.body, m.len, msg_ts, out);
                }
            }
        }
    }

    /// A hole inside the body of the message being read only loses (unneeded) bytes of it;
    /// anywhere else the framing is gone and the connection stops being dissected.
    fn gap(&mut self, dir: Dir, len: u64, _out: &mut Vec<Entry>) {
        let side = &mut self.sides[dir as usize];
        match side.msg.as_mut() {
            Some(m) if usize::try_from(len).is_ok_and(|l| l < m.left) => {
                self.session.errors += 1;
                m.left -= len as usize;
                // What follows the hole does not continue the kept prefix: keep no more.
                m.lossy = true;
            }
            _ => self.stop(),
        }
    }

    fn end(&mut self, out: &mut Vec<Entry>) {
        self.session.end(out);
    }

    fn errors(&self) -> u64 {
        self.session.errors
    }

    fn upgraded(&self) -> bool {
        self.session.upgraded
    }
}
