//! PostgreSQL wire protocol v3: the startup exchange (SSLRequest/GSSENCRequest answered with
//! one byte, startup parameters, authentication — passwords and SASL payloads are never kept),
//! the simple query protocol (one entry per `Query`, multi-statement tags listed) and the
//! extended protocol (one entry per `Execute`, its text from the `Parse` of its statement
//! through the `Bind` of its portal). The backend answers frontend messages in order, so
//! every backend message is attributed to the oldest frontend message still awaiting an
//! answer; an error in an extended batch skips the rest of it until `Sync`, as the server
//! does. COPY data is counted, not kept.

use std::collections::{HashMap, VecDeque};

use serde_json::{json, Map, Value};
use wiretrail_proto::{Entry, EntryId};

use super::{Dir, DissectConfig, Dissector, Parser, Probe};

/// Largest message accepted (a declared length above it means the stream is not PostgreSQL
/// or lost its framing: the connection is no longer dissected).
const MAX_MESSAGE: usize = 64 << 20;
/// Query text kept in `path` and the detail.
const QUERY_CAP: usize = 4096;
/// Bind parameters kept per entry (each cut to 256 bytes).
const MAX_PARAMS: usize = 32;
/// Frontend messages awaiting an answer, and prepared statements/portals remembered.
const MAX_PENDING: usize = 4096;

const PROTOCOL_3: u32 = 196_608;
const SSL_REQUEST: u32 = 80_877_103;
const GSSENC_REQUEST: u32 = 80_877_104;
const CANCEL_REQUEST: u32 = 80_877_102;

pub struct Postgres;

impl Dissector for Postgres {
    fn name(&self) -> &'static str {
        "postgres"
    }

    /// A client's first message: StartupMessage (protocol 3.x), SSLRequest, GSSENCRequest
    /// or CancelRequest — an Int32 length then an Int32 code.
    fn probe_stream(&self, data: &[u8]) -> Probe {
        let (Some(len), Some(code)) = (be32(data, 0), be32(data, 4)) else {
            return if data.len() < 8 && data.first() == Some(&0) {
                Probe::NeedMore
            } else {
                Probe::No
            };
        };
        match code {
            SSL_REQUEST | GSSENC_REQUEST if len == 8 => Probe::Client,
            CANCEL_REQUEST if len == 16 => Probe::Client,
            c if c >> 16 == PROTOCOL_3 >> 16 && (9..=10_000).contains(&len) => Probe::Client,
            _ => Probe::No,
        }
    }

    fn new_stream(&self, _cfg: &DissectConfig) -> Box<dyn Parser> {
        Box::new(PgParser {
            startup: true,
            ..Default::default()
        })
    }

    fn port_hint(&self, port: u16) -> bool {
        port == 5432
    }
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn be16(b: &[u8], at: usize) -> Option<i16> {
    Some(i16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

/// A NUL-terminated string at `at`; returns it and the offset after the NUL.
fn cstr(b: &[u8], at: usize) -> Option<(String, usize)> {
    let rest = b.get(at..)?;
    let end = rest.iter().position(|&c| c == 0)?;
    Some((
        String::from_utf8_lossy(&rest[..end]).into_owned(),
        at + end + 1,
    ))
}

fn cap(s: &str, n: usize) -> String {
    if s.len() <= n {
        return s.to_string();
    }
    let mut end = n;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// The SQL command of a query text: its first keyword, upper-cased.
fn first_keyword(sql: &str) -> Option<String> {
    let mut s = sql.trim_start();
    while let Some(rest) = s.strip_prefix("--") {
        s = rest.split_once('\n').map_or("", |(_, r)| r).trim_start();
    }
    let w: String = s.chars().take_while(|c| c.is_ascii_alphabetic()).collect();
    (!w.is_empty()).then(|| w.to_ascii_uppercase())
}

/// What an awaited frontend message is.
#[derive(Debug)]
enum Awaiting {
    Startup,
    /// A simple `Query`, or an extended `Execute`: both become entries.
    Statement(Box<Pending>),
    /// Parse, Bind, Describe, Close: answered, no entry of their own (a failing Parse
    /// with no Execute after it still becomes one).
    Step {
        parse_query: Option<String>,
    },
    Sync,
}

#[derive(Debug, Default)]
struct Pending {
    ts: i64,
    query: String,
    extended: bool,
    statement: Option<String>,
    portal: Option<String>,
    params: Vec<Value>,
    size: u64,
    tags: Vec<String>,
    rows: u64,
    columns: Vec<String>,
    error: Option<Value>,
    notices: Vec<Value>,
    response_size: u64,
    copy_bytes: u64,
}

#[derive(Default)]
pub struct PgParser {
    /// The next client message is untyped (startup, SSLRequest).
    startup: bool,
    /// The server's one-byte answer to SSLRequest/GSSENCRequest is expected.
    ssl_answer: bool,
    bufs: [Vec<u8>; 2],
    buf_ts: [i64; 2],
    awaiting: VecDeque<Awaiting>,
    statements: HashMap<String, String>,
    portals: HashMap<String, String>,
    /// The startup entry, until ReadyForQuery (or an error) completes it.
    startup_entry: Option<Entry>,
    startup_detail: Map<String, Value>,
    /// An error in an extended batch, for the Execute it skipped.
    batch_error: Option<Value>,
    /// Parameters of the last Bind, for the Execute that follows it.
    binds: Vec<Value>,
    /// TLS after `S`, or lost framing: the rest is not dissected.
    stopped: bool,
    upgraded: bool,
    errors: u64,
}

/// The authentication method a server asks for (AuthenticationXXX).
fn auth_kind(body: &[u8]) -> Option<Value> {
    Some(match be32(body, 0)? {
        0 => json!("ok"),
        3 => json!("cleartext"),
        5 => json!("md5"),
        7 => json!("gss"),
        9 => json!("sspi"),
        10 => {
            let mut mechs = Vec::new();
            let mut at = 4;
            while let Some((m, next)) = cstr(body, at) {
                if m.is_empty() {
                    break;
                }
                mechs.push(m);
                at = next;
            }
            json!(format!("SASL {}", mechs.join(",")))
        }
        _ => return None,
    })
}

impl PgParser {
    fn frontend(&mut self, ts: i64, kind: u8, body: &[u8], size: usize, out: &mut Vec<Entry>) {
        if self.awaiting.len() >= MAX_PENDING {
            if let Some(a) = self.awaiting.pop_front() {
                self.finish(a, out);
            }
        }
        match kind {
            b'Q' => {
                let query = cstr(body, 0).map(|(q, _)| q).unwrap_or_default();
                self.awaiting
                    .push_back(Awaiting::Statement(Box::new(Pending {
                        ts,
                        query,
                        size: size as u64,
                        ..Default::default()
                    })));
            }
            b'P' => {
                let Some((name, at)) = cstr(body, 0) else {
                    return self.errors += 1;
                };
                let query = cstr(body, at).map(|(q, _)| q).unwrap_or_default();
                if self.statements.len() >= MAX_PENDING {
                    self.statements.clear();
                }
                self.statements.insert(name, query.clone());
                self.awaiting.push_back(Awaiting::Step {
                    parse_query: Some(query),
                });
            }
            b'B' => {
                let Some((portal, at)) = cstr(body, 0) else {
                    return self.errors += 1;
                };
                let Some((stmt, at)) = cstr(body, at) else {
                    return self.errors += 1;
                };
                if self.portals.len() >= MAX_PENDING {
                    self.portals.clear();
                }
                self.portals.insert(portal, stmt);
                self.binds = bind_params(body, at);
                self.awaiting
                    .push_back(Awaiting::Step { parse_query: None });
            }
            b'E' => {
                let portal = cstr(body, 0).map(|(p, _)| p).unwrap_or_default();
                let statement = self.portals.get(&portal).cloned().unwrap_or_default();
                let query = self.statements.get(&statement).cloned().unwrap_or_default();
                self.awaiting
                    .push_back(Awaiting::Statement(Box::new(Pending {
                        ts,
                        query,
                        extended: true,
                        statement: Some(statement),
                        portal: Some(portal),
                        params: std::mem::take(&mut self.binds),
                        size: size as u64,
                        ..Default::default()
                    })));
            }
            b'D' | b'C' => self
                .awaiting
                .push_back(Awaiting::Step { parse_query: None }),
            b'S' => self.awaiting.push_back(Awaiting::Sync),
            b'p' => {
                // Password / SASL: nothing kept; answered as part of the startup.
                if let Some(e) = self.startup_entry.as_mut() {
                    e.request_size += size as u64;
                }
            }
            b'd' | b'c' | b'f' => {
                if let Some(Awaiting::Statement(p)) = self.awaiting.back_mut() {
                    p.copy_bytes += size as u64;
                    p.size += size as u64;
                }
            }
            // Flush, Terminate, FunctionCall and the rest: nothing to pair.
            _ => {}
        }
    }

    fn startup_message(&mut self, ts: i64, msg: &[u8]) {
        let code = be32(msg, 4).unwrap_or(0);
        match code {
            SSL_REQUEST | GSSENC_REQUEST => {
                self.ssl_answer = true;
                self.startup_detail
                    .insert("encryption_requested".into(), json!(code == SSL_REQUEST));
                return;
            }
            CANCEL_REQUEST => {
                let mut e = Entry::new(EntryId([0; 16]), ts, "", "postgres", "");
                e.method = Some("cancel".into());
                e.request_size = msg.len() as u64;
                e.request = Some(json!({"backend_pid": be32(msg, 8)}).to_string());
                self.startup_entry = Some(e);
                self.stopped = true;
                return;
            }
            _ => {}
        }
        self.startup = false;
        let mut params = Map::new();
        let mut at = 8;
        while let Some((k, next)) = cstr(msg, at) {
            if k.is_empty() {
                break;
            }
            let Some((v, next)) = cstr(msg, next) else {
                break;
            };
            params.insert(k, json!(v));
            at = next;
        }
        let mut e = Entry::new(EntryId([0; 16]), ts, "", "postgres", "");
        e.method = Some("startup".into());
        e.path = params
            .get("database")
            .or_else(|| params.get("user"))
            .and_then(Value::as_str)
            .map(str::to_string);
        e.request_size = msg.len() as u64;
        self.startup_detail.insert(
            "protocol_version".into(),
            json!(format!("{}.{}", code >> 16, code & 0xffff)),
        );
        self.startup_detail
            .insert("parameters".into(), Value::Object(params));
        self.startup_entry = Some(e);
        self.awaiting.push_back(Awaiting::Startup);
    }

    fn backend(&mut self, ts: i64, kind: u8, body: &[u8], size: usize, out: &mut Vec<Entry>) {
        // Asynchronous messages belong to no request.
        if matches!(kind, b'A' | b'S' | b'K' | b'v')
            && !matches!(self.awaiting.front(), Some(Awaiting::Startup))
        {
            return;
        }
        let Some(head) = self.awaiting.front_mut() else {
            if kind == b'E' || kind == b'N' {
                return; // e.g. FATAL on termination
            }
            self.errors += 1;
            return;
        };
        /// What the message does to the queue, decided while `head` is borrowed.
        enum Then {
            Stay,
            Pop,
            Finish,
            SkipBatch(Option<Value>),
        }
        let then = match head {
            Awaiting::Startup => {
                if let Some(e) = self.startup_entry.as_mut() {
                    e.response_size += size as u64;
                    e.elapsed_us.get_or_insert(ts.saturating_sub(e.ts_us));
                }
                match kind {
                    b'R' => {
                        if let Some(auth) = auth_kind(body) {
                            self.startup_detail.entry("auth").or_insert(auth);
                        }
                        Then::Stay
                    }
                    b'S' => {
                        if let Some((k, at)) = cstr(body, 0) {
                            if k == "server_version" || k == "application_name" {
                                let v = cstr(body, at).map(|(v, _)| v);
                                self.startup_detail.insert(k, json!(v));
                            }
                        }
                        Then::Stay
                    }
                    b'E' => {
                        self.startup_detail
                            .insert("error".into(), error_fields(body));
                        Then::Finish
                    }
                    b'Z' => Then::Finish,
                    _ => Then::Stay,
                }
            }
            Awaiting::Statement(p) => {
                p.response_size += size as u64;
                match kind {
                    b'T' => {
                        p.columns = columns(body);
                        Then::Stay
                    }
                    b'D' => {
                        p.rows += 1;
                        Then::Stay
                    }
                    b'C' => {
                        if let Some((tag, _)) = cstr(body, 0) {
                            p.tags.push(tag);
                        }
                        if p.extended {
                            Then::Finish
                        } else {
                            Then::Stay
                        }
                    }
                    b'I' | b's' if p.extended => Then::Finish,
                    b'E' => {
                        p.error = Some(error_fields(body));
                        if p.extended {
                            Then::SkipBatch(None)
                        } else {
                            Then::Stay
                        }
                    }
                    b'N' => {
                        if p.notices.len() < 16 {
                            p.notices.push(error_fields(body));
                        }
                        Then::Stay
                    }
                    b'd' => {
                        p.copy_bytes += size as u64;
                        Then::Stay
                    }
                    b'Z' if !p.extended => Then::Finish,
                    _ => Then::Stay,
                }
            }
            Awaiting::Step { parse_query } => match kind {
                // Describe of a statement answers `t` and then `T`/`n`.
                b't' | b'N' => Then::Stay,
                b'E' => Then::SkipBatch(Some(
                    json!({"error": error_fields(body), "query": parse_query.take()}),
                )),
                _ => Then::Pop,
            },
            Awaiting::Sync => {
                if kind == b'Z' {
                    self.batch_error = None;
                    Then::Pop
                } else {
                    Then::Stay
                }
            }
        };
        match then {
            Then::Stay => {}
            Then::Pop => {
                self.awaiting.pop_front();
            }
            Then::Finish => self.pop_finish(out),
            Then::SkipBatch(err) => {
                if err.is_some() {
                    self.batch_error = err;
                } else if let Some(Awaiting::Statement(p)) = self.awaiting.pop_front() {
                    // The failing Execute itself.
                    self.batch_error = p.error.clone().map(|e| json!({"error": e}));
                    self.finish(Awaiting::Statement(p), out);
                }
                self.skip_batch(out);
            }
        }
    }

    fn pop_finish(&mut self, out: &mut Vec<Entry>) {
        if let Some(a) = self.awaiting.pop_front() {
            self.finish(a, out);
        }
    }

    /// After an error in an extended batch the server ignores everything up to `Sync`.
    fn skip_batch(&mut self, out: &mut Vec<Entry>) {
        let mut made = false;
        while let Some(a) = self.awaiting.pop_front() {
            match a {
                Awaiting::Sync => {
                    self.awaiting.push_front(Awaiting::Sync);
                    break;
                }
                Awaiting::Statement(mut p) => {
                    if p.error.is_none() {
                        p.error = self.batch_error.as_ref().map(|b| b["error"].clone());
                        p.notices
                            .push(json!({"skipped": "an earlier message of the batch failed"}));
                    }
                    made = true;
                    self.finish(Awaiting::Statement(p), out);
                }
                _ => {}
            }
        }
        // A failed Parse with no Execute after it is still the query that failed.
        if let (false, Some(b)) = (made, self.batch_error.take()) {
            if let Some(q) = b["query"].as_str() {
                let p = Pending {
                    query: q.to_string(),
                    extended: true,
                    error: Some(b["error"].clone()),
                    ..Default::default()
                };
                self.finish(Awaiting::Statement(Box::new(p)), out);
            }
        }
    }

    fn finish(&mut self, a: Awaiting, out: &mut Vec<Entry>) {
        match a {
            Awaiting::Startup => {
                if let Some(mut e) = self.startup_entry.take() {
                    let err = self.startup_detail.get("error").cloned();
                    e.status = Some(i32::from(err.is_some()));
                    e.status_text = err
                        .as_ref()
                        .and_then(|v| v["code"].as_str().map(str::to_string))
                        .or(Some("OK".into()));
                    e.request =
                        Some(Value::Object(std::mem::take(&mut self.startup_detail)).to_string());
                    e.response = Some(json!({"error": err}).to_string());
                    out.push(e);
                }
            }
            Awaiting::Statement(p) => out.push(statement_entry(*p)),
            _ => {}
        }
    }
}

/// Bind parameters in text form (binary ones in hex), capped.
fn bind_params(body: &[u8], mut at: usize) -> Vec<Value> {
    let nfmt = be16(body, at).unwrap_or(0).max(0) as usize;
    let fmts: Vec<i16> = (0..nfmt)
        .filter_map(|i| be16(body, at + 2 + 2 * i))
        .collect();
    at += 2 + 2 * nfmt;
    let n = be16(body, at).unwrap_or(0).max(0) as usize;
    at += 2;
    let mut out = Vec::new();
    for i in 0..n {
        let Some(len) = be32(body, at).map(|l| l as i32) else {
            break;
        };
        at += 4;
        if len < 0 {
            out.push(Value::Null);
            continue;
        }
        let Some(v) = body.get(at..at + len as usize) else {
            break;
        };
        at += len as usize;
        if out.len() < MAX_PARAMS {
            let binary = match fmts.len() {
                0 => false,
                1 => fmts[0] == 1,
                _ => fmts.get(i) == Some(&1),
            };
            let v = &v[..v.len().min(256)];
            out.push(if binary {
                json!(format!("\\x{}", data_encoding::HEXLOWER.encode(v)))
            } else {
                json!(String::from_utf8_lossy(v))
            });
        }
    }
    out
}

fn columns(body: &[u8]) -> Vec<String> {
    let n = be16(body, 0).unwrap_or(0).max(0) as usize;
    let mut at = 2;
    let mut out = Vec::new();
    for _ in 0..n.min(256) {
        let Some((name, next)) = cstr(body, at) else {
            break;
        };
        out.push(name);
        at = next + 18;
    }
    out
}

/// ErrorResponse / NoticeResponse fields: severity, SQLSTATE code, message.
fn error_fields(body: &[u8]) -> Value {
    let mut m = Map::new();
    let mut at = 0;
    while let Some(&code) = body.get(at) {
        if code == 0 {
            break;
        }
        let Some((v, next)) = cstr(body, at + 1) else {
            break;
        };
        let key = match code {
            b'V' => "severity",
            b'C' => "code",
            b'M' => "message",
            b'D' => "detail",
            b'H' => "hint",
            b'P' => "position",
            _ => "",
        };
        if !key.is_empty() {
            m.insert(key.into(), json!(cap(&v, 1024)));
        }
        at = next;
    }
    Value::Object(m)
}

fn statement_entry(p: Pending) -> Entry {
    let mut e = Entry::new(EntryId([0; 16]), p.ts, "", "postgres", "");
    let failed = p.error.is_some();
    e.method = p
        .tags
        .first()
        .and_then(|t| t.split_whitespace().next().map(str::to_string))
        .or_else(|| first_keyword(&p.query));
    e.path = (!p.query.is_empty()).then(|| cap(&p.query, QUERY_CAP));
    e.request_size = p.size;
    e.response_size = p.response_size;
    let answered = p.response_size > 0 || failed;
    if answered {
        e.status = Some(i32::from(failed));
        e.status_text = match &p.error {
            Some(err) => err["code"].as_str().map(str::to_string),
            None => Some("OK".into()),
        };
    }
    let mut req = json!({
        "query": cap(&p.query, QUERY_CAP),
        "protocol": if p.extended { "extended" } else { "simple" },
    });
    if p.extended {
        req["statement"] = json!(p.statement);
        req["portal"] = json!(p.portal);
        req["parameters"] = json!(p.params);
    }
    e.request = Some(req.to_string());
    if answered {
        let mut resp = json!({
            "command_tags": p.tags,
            "rows": p.rows,
            "columns": p.columns,
            "error": p.error,
        });
        if !p.notices.is_empty() {
            resp["notices"] = json!(p.notices);
        }
        if p.copy_bytes > 0 {
            resp["copy_bytes"] = json!(p.copy_bytes);
        }
        e.response = Some(resp.to_string());
    }
    e
}

impl Parser for PgParser {
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
        while pos < buf.len() && !self.stopped {
            let rest = &buf[pos..];
            let msg_ts = if pos == 0 { self.buf_ts[i] } else { ts };
            if dir == Dir::Response && self.ssl_answer {
                self.ssl_answer = false;
                match rest[0] {
                    b'S' | b'G' => {
                        // Encrypted from here on.
                        self.upgraded = true;
                        self.stopped = true;
                    }
                    b'N' => {}
                    _ => {
                        self.errors += 1;
                        self.stopped = true;
                    }
                }
                self.startup_detail
                    .insert("encryption_accepted".into(), json!(rest[0] != b'N'));
                pos += 1;
                continue;
            }
            let untyped = dir == Dir::Request && self.startup;
            let (head, len) = if untyped {
                (0, be32(rest, 0).map(|l| l as usize))
            } else {
                (1, be32(rest, 1).map(|l| l as usize))
            };
            let Some(len) = len else {
                break;
            };
            if !(4..=MAX_MESSAGE).contains(&len) {
                self.errors += 1;
                self.stopped = true;
                break;
            }
            let total = head + len;
            let Some(msg) = rest.get(..total) else {
                break;
            };
            if untyped {
                self.startup_message(msg_ts, msg);
            } else {
                let body = &msg[5..];
                match dir {
                    Dir::Request => self.frontend(msg_ts, msg[0], body, total, out),
                    Dir::Response => self.backend(msg_ts, msg[0], body, total, out),
                }
            }
            pos += total;
        }
        let mut buf = buf;
        if self.stopped {
            buf.clear();
        } else {
            buf.drain(..pos.min(buf.len()));
        }
        self.bufs[i] = buf;
    }

    fn gap(&mut self, _dir: Dir, _len: u64, _out: &mut Vec<Entry>) {
        // Message boundaries are lost; what is pending is emitted at `end`.
        self.errors += 1;
        self.stopped = true;
    }

    fn end(&mut self, out: &mut Vec<Entry>) {
        while let Some(a) = self.awaiting.pop_front() {
            self.finish(a, out);
        }
        if let Some(e) = self.startup_entry.take() {
            out.push(e);
        }
    }

    fn errors(&self) -> u64 {
        self.errors
    }

    fn upgraded(&self) -> bool {
        self.upgraded
    }
}

#[cfg(test)]
mod tests;
