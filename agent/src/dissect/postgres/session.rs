//! The protocol state of one PostgreSQL connection: the startup/authentication exchange,
//! prepared statements and portals, and the frontend messages still waiting for their
//! responses (the server answers strictly in order, and after an error skips everything up
//! to the next Sync).

use std::collections::{HashMap, VecDeque};

use serde_json::{json, Map, Value};
use wiretrail_proto::{Entry, EntryId};

use super::wire::{auth_name, bind_params, columns, cut, error_fields, first_keyword, Rd};
use super::{CANCEL_REQUEST, GSSENC_REQUEST, SSL_REQUEST};
use crate::dissect::Dir;

/// Query text kept in `path`.
const PATH_CAP: usize = 4096;
/// Parameters, command tags, notices and startup parameters kept in the JSON detail.
pub(super) const DETAIL_ITEMS: usize = 32;
/// Columns kept from a RowDescription.
pub(super) const MAX_COLUMNS: usize = 256;
/// Bytes of one value (parameter, notice text) kept in the JSON detail.
pub(super) const VALUE_CAP: usize = 256;
/// Query text kept per query and per prepared statement (`path` shows [`PATH_CAP`] of it,
/// `request_body` up to the body cap of it).
const QUERY_CAP: usize = 16 << 10;
/// Prepared statements and portals remembered per connection; past this an arbitrary name
/// is forgotten (its Executes then have no query text).
const MAX_NAMES: usize = 256;
/// Frontend messages awaiting a response; past this the oldest is emitted unanswered.
/// With [`QUERY_CAP`] and [`MAX_NAMES`] this bounds a connection's state to about 20 MiB.
const MAX_PENDING: usize = 1024;

fn entry(ts: i64) -> Entry {
    Entry::new(EntryId([0; 16]), ts, "", "postgres", "")
}

/// The startup and authentication exchange, until ReadyForQuery or an error.
#[derive(Default)]
struct Startup {
    ts: i64,
    request: Map<String, Value>,
    database: Option<String>,
    auth: Vec<i32>,
    mechanisms: Vec<String>,
    mechanism: Option<String>,
    params: Map<String, Value>,
    backend_pid: Option<i32>,
    req_bytes: u64,
}

/// A query entry being built: a simple Query, or an extended-protocol Execute.
struct Pending {
    ts: i64,
    query: Option<Vec<u8>>,
    /// Method when the query text says nothing (FunctionCall).
    fixed_method: Option<&'static str>,
    request: Value,
    tags: Vec<String>,
    rows: u64,
    columns: Vec<String>,
    error: Option<Value>,
    notices: Vec<Value>,
    copy: Option<(&'static str, u64)>,
    skipped: bool,
    suspended: bool,
    empty: bool,
    first_resp: Option<i64>,
    req_bytes: u64,
}

enum Op {
    Query(Box<Pending>),
    Execute(Box<Pending>),
    /// Parse, Bind, Describe or Close: what the query would have been, for an error entry.
    Other {
        kind: &'static str,
        query: Option<Vec<u8>>,
        statement: String,
        portal: Option<String>,
        /// Statement or portal named by a Describe, whose Execute gets the columns.
        describe: Option<(bool, String)>,
    },
    Sync,
}

pub(super) struct Session {
    body_cap: usize,
    pub(super) errors: u64,
    pub(super) upgraded: bool,
    /// `None` before the client's first byte; then whether its messages are untyped.
    client_untyped: Option<bool>,
    ssl_reply_due: bool,
    ssl: Option<(&'static str, char)>,
    startup: Option<Startup>,
    last_auth: i32,
    ops: VecDeque<Op>,
    statements: HashMap<String, Vec<u8>>,
    portals: HashMap<String, (String, Value)>,
    /// Frontend bytes (and the first one's time) not yet given to an entry.
    req_bytes: u64,
    req_ts: Option<i64>,
    resp_bytes: u64,
}

impl Session {
    pub(super) fn new(body_cap: usize) -> Self {
        Session {
            body_cap,
            errors: 0,
            upgraded: false,
            client_untyped: None,
            ssl_reply_due: false,
            ssl: None,
            startup: None,
            last_auth: -1,
            ops: VecDeque::new(),
            statements: HashMap::new(),
            portals: HashMap::new(),
            req_bytes: 0,
            req_ts: None,
            resp_bytes: 0,
        }
    }

    /// Whether the client message starting with `first` is an untyped startup packet:
    /// decided by the connection's first byte (message types are never 0).
    pub(super) fn client_untyped(&mut self, first: u8) -> bool {
        *self.client_untyped.get_or_insert(first == 0)
    }

    /// Consumes the server's one-byte answer to SSLRequest/GSSENCRequest, if one is due.
    pub(super) fn take_ssl_reply(&mut self, b: u8, ts: i64, out: &mut Vec<Entry>) -> bool {
        if !self.ssl_reply_due || !matches!(b, b'N' | b'S' | b'G') {
            return false;
        }
        self.ssl_reply_due = false;
        let what = self.ssl.map_or("ssl", |(w, _)| w);
        self.ssl = Some((what, b as char));
        if b != b'N' {
            // Encrypted from here on: one entry for the negotiation, then stop.
            self.upgraded = true;
            let mut e = entry(self.req_ts.unwrap_or(ts));
            e.method = Some("startup".into());
            e.elapsed_us = Some(ts - e.ts_us);
            e.status = Some(0);
            e.request_size = std::mem::take(&mut self.req_bytes);
            e.response_size = 1;
            e.request = Some(json!({ "encryption_request": what }).to_string());
            e.response = Some(
                json!({ "encryption_response": (b as char).to_string(), "upgraded": true })
                    .to_string(),
            );
            self.req_ts = None;
            out.push(e);
        }
        true
    }

    pub(super) fn message(
        &mut self,
        dir: Dir,
        typ: Option<u8>,
        body: &[u8],
        len: usize,
        ts: i64,
        out: &mut Vec<Entry>,
    ) {
        let size = len as u64 + if typ.is_some() { 5 } else { 4 };
        match (dir, typ) {
            (Dir::Request, None) => self.startup_packet(body, size, ts, out),
            (Dir::Request, Some(t)) => self.frontend(t, body, len, size, ts, out),
            (Dir::Response, Some(t)) => {
                self.resp_bytes += size;
                self.backend(t, body, len, ts, out)
            }
            (Dir::Response, None) => {}
        }
    }

    fn startup_packet(&mut self, body: &[u8], size: u64, ts: i64, out: &mut Vec<Entry>) {
        let mut r = Rd(body);
        let code = r.i32().unwrap_or(0) as u32;
        self.req_ts.get_or_insert(ts);
        self.req_bytes += size;
        match code {
            SSL_REQUEST | GSSENC_REQUEST => {
                self.ssl_reply_due = true;
                let what = if code == SSL_REQUEST { "ssl" } else { "gssenc" };
                self.ssl = Some((what, '?'));
            }
            CANCEL_REQUEST => {
                // The secret key is not kept.
                let mut e = entry(self.req_ts.take().unwrap_or(ts));
                e.method = Some("CANCEL".into());
                e.request_size = std::mem::take(&mut self.req_bytes);
                e.request = Some(json!({ "backend_pid": r.i32() }).to_string());
                out.push(e);
            }
            c if c >> 16 == 3 => {
                self.client_untyped = Some(false);
                let mut st = Startup {
                    ts: self.req_ts.take().unwrap_or(ts),
                    req_bytes: std::mem::take(&mut self.req_bytes),
                    ..Default::default()
                };
                let mut other = Map::new();
                loop {
                    let k = r.string();
                    if k.is_empty() {
                        break;
                    }
                    let v = cut(r.cstr(), VALUE_CAP);
                    match k.as_str() {
                        "user" | "database" | "application_name" => {
                            st.request.insert(k.clone(), Value::String(v.clone()));
                        }
                        _ if other.len() < DETAIL_ITEMS => {
                            other.insert(k.clone(), Value::String(v.clone()));
                        }
                        _ => {}
                    }
                    if k == "database" {
                        st.database = Some(v);
                    }
                }
                if st.database.is_none() {
                    // The database defaults to the user name.
                    st.database = st
                        .request
                        .get("user")
                        .and_then(Value::as_str)
                        .map(str::to_string);
                }
                st.request.insert(
                    "protocol_version".into(),
                    json!(format!("{}.{}", c >> 16, c & 0xffff)),
                );
                if !other.is_empty() {
                    st.request.insert("parameters".into(), Value::Object(other));
                }
                if let Some((what, answer)) = self.ssl {
                    st.request.insert("encryption_request".into(), json!(what));
                    st.request
                        .insert("encryption_response".into(), json!(answer.to_string()));
                }
                self.startup = Some(st);
            }
            _ => self.errors += 1,
        }
    }

    fn push(&mut self, op: Op, out: &mut Vec<Entry>) {
        if self.ops.len() >= MAX_PENDING {
            if let Some(old) = self.ops.pop_front() {
                self.flush(old, None, out);
            }
        }
        self.ops.push_back(op);
    }

    fn pending(&mut self, ts: i64, query: Option<Vec<u8>>, request: Value) -> Box<Pending> {
        Box::new(Pending {
            ts: self.req_ts.take().unwrap_or(ts),
            query,
            fixed_method: None,
            request,
            tags: Vec::new(),
            rows: 0,
            columns: Vec::new(),
            error: None,
            notices: Vec::new(),
            copy: None,
            skipped: false,
            suspended: false,
            empty: false,
            first_resp: None,
            req_bytes: std::mem::take(&mut self.req_bytes),
        })
    }

    fn remember<V>(map: &mut HashMap<String, V>, k: String, v: V) {
        if map.len() >= MAX_NAMES && !map.contains_key(&k) {
            // Forget an arbitrary name rather than grow without bound.
            if let Some(old) = map.keys().next().cloned() {
                map.remove(&old);
            }
        }
        map.insert(k, v);
    }

    fn frontend(
        &mut self,
        t: u8,
        body: &[u8],
        len: usize,
        size: u64,
        ts: i64,
        out: &mut Vec<Entry>,
    ) {
        let mut r = Rd(body);
        if matches!(t, b'S' | b'H' | b'd' | b'c' | b'f' | b'X') {
            // Sync, Flush, COPY data and Terminate belong to the query already sent.
            match self.ops.iter_mut().rev().find_map(|op| match op {
                Op::Query(p) | Op::Execute(p) => Some(p),
                _ => None,
            }) {
                Some(p) => p.req_bytes += size,
                None => self.req_bytes += size,
            }
        } else {
            self.req_ts.get_or_insert(ts);
            self.req_bytes += size;
        }
        match t {
            b'Q' => {
                let q = r.cstr();
                let q = q[..q.len().min(QUERY_CAP)].to_vec();
                let req = json!({ "query": cut(&q, PATH_CAP), "protocol": "simple" });
                let p = self.pending(ts, Some(q), req);
                self.push(Op::Query(p), out);
            }
            b'P' => {
                let statement = r.string();
                let q = r.cstr();
                let q = q[..q.len().min(QUERY_CAP)].to_vec();
                Self::remember(&mut self.statements, statement.clone(), q.clone());
                let op = Op::Other {
                    kind: "Parse",
                    query: Some(q),
                    statement,
                    portal: None,
                    describe: None,
                };
                self.push(op, out);
            }
            b'B' => {
                let portal = r.string();
                let statement = r.string();
                let params = bind_params(&mut r);
                let query = self.statements.get(&statement).cloned();
                Self::remember(
                    &mut self.portals,
                    portal.clone(),
                    (statement.clone(), params),
                );
                let op = Op::Other {
                    kind: "Bind",
                    query,
                    statement,
                    portal: Some(portal),
                    describe: None,
                };
                self.push(op, out);
            }
            b'D' => {
                let portal = r.take(1) == Some(&b"P"[..]);
                let name = r.string();
                let statement = if portal {
                    self.portals
                        .get(&name)
                        .map(|(s, _)| s.clone())
                        .unwrap_or_default()
                } else {
                    name.clone()
                };
                let query = self.statements.get(&statement).cloned();
                let op = Op::Other {
                    kind: "Describe",
                    query,
                    statement,
                    portal: None,
                    describe: Some((portal, name)),
                };
                self.push(op, out);
            }
            b'E' => {
                let portal = r.string();
                let (statement, params) = self.portals.get(&portal).cloned().unwrap_or_default();
                let query = self.statements.get(&statement).cloned();
                let req = json!({
                    "query": query.as_deref().map(|q| cut(q, PATH_CAP)),
                    "statement": statement,
                    "portal": portal,
                    "parameters": params,
                    "max_rows": r.i32(),
                    "protocol": "extended",
                });
                let p = self.pending(ts, query, req);
                self.push(Op::Execute(p), out);
            }
            b'C' => {
                let portal = r.take(1) == Some(&b"P"[..]);
                let name = r.string();
                if portal {
                    self.portals.remove(&name);
                } else {
                    self.statements.remove(&name);
                }
                let op = Op::Other {
                    kind: "Close",
                    query: None,
                    statement: String::new(),
                    portal: None,
                    describe: None,
                };
                self.push(op, out);
            }
            b'S' => self.push(Op::Sync, out),
            b'F' => {
                let req = json!({ "function_oid": r.i32(), "protocol": "function" });
                let mut p = self.pending(ts, None, req);
                p.fixed_method = Some("FUNCTION_CALL");
                self.push(Op::Query(p), out);
            }
            b'd' => {
                if let Some(p) = self.current() {
                    let c = p.copy.get_or_insert(("in", 0));
                    c.1 += len as u64;
                }
            }
            // Password, GSS or SASL messages: only the SASL mechanism name is kept.
            b'p' => {
                if let Some(st) = self.startup.as_mut() {
                    st.req_bytes += std::mem::take(&mut self.req_bytes);
                    self.req_ts = None;
                    if self.last_auth == 10 && st.mechanism.is_none() {
                        st.mechanism = Some(cut(r.cstr(), VALUE_CAP));
                    }
                }
            }
            // Flush, CopyDone, CopyFail, Terminate.
            b'H' | b'c' | b'f' | b'X' => {}
            _ => self.errors += 1,
        }
    }

    /// The Query or Execute the next backend data belongs to.
    fn current(&mut self) -> Option<&mut Pending> {
        self.ops.iter_mut().find_map(|op| match op {
            Op::Query(p) | Op::Execute(p) => Some(p.as_mut()),
            Op::Sync => None,
            Op::Other { .. } => None,
        })
    }

    fn backend(&mut self, t: u8, body: &[u8], len: usize, ts: i64, out: &mut Vec<Entry>) {
        let mut r = Rd(body);
        if let Some(p) = self.current() {
            p.first_resp.get_or_insert(ts);
        }
        match t {
            b'R' => {
                let at = r.i32().unwrap_or(-1);
                self.last_auth = at;
                if let Some(st) = self.startup.as_mut() {
                    st.auth.push(at);
                    if at == 10 {
                        loop {
                            let m = r.string();
                            if m.is_empty() || st.mechanisms.len() >= DETAIL_ITEMS {
                                break;
                            }
                            st.mechanisms.push(m);
                        }
                    }
                }
            }
            b'S' => {
                if let Some(st) = self.startup.as_mut() {
                    let (k, v) = (r.string(), cut(r.cstr(), VALUE_CAP));
                    if st.params.len() < DETAIL_ITEMS {
                        st.params.insert(k, Value::String(v));
                    }
                }
            }
            b'K' => {
                if let Some(st) = self.startup.as_mut() {
                    st.backend_pid = r.i32();
                }
            }
            b'Z' => self.ready(ts, out),
            b'E' => self.error(error_fields(body), ts, out),
            b'N' => {
                let n = error_fields(body);
                if let Some(p) = self.current() {
                    if p.notices.len() < DETAIL_ITEMS {
                        p.notices.push(n);
                    }
                }
            }
            b'A' => {
                let pid = r.i32();
                let channel = r.string();
                let mut e = entry(ts);
                e.method = Some("NOTIFICATION".into());
                e.path = Some(cut(channel.as_bytes(), PATH_CAP));
                e.response_size = len as u64 + 5;
                self.resp_bytes = self.resp_bytes.saturating_sub(e.response_size);
                e.response = Some(
                    json!({ "pid": pid, "channel": channel, "payload": cut(r.cstr(), VALUE_CAP) })
                        .to_string(),
                );
                out.push(e);
            }
            b'1' | b'2' | b'3' => self.pop_other(),
            b't' => {}
            b'T' | b'n' => {
                let cols = if t == b'T' {
                    columns(&mut r)
                } else {
                    Vec::new()
                };
                if let Some(Op::Other {
                    describe: Some((portal, name)),
                    ..
                }) = self.ops.front()
                {
                    let (portal, name) = (*portal, name.clone());
                    self.ops.pop_front();
                    // The Execute of the described portal (or of a portal of the statement).
                    for op in self.ops.iter_mut() {
                        if let Op::Execute(p) = op {
                            let key = if portal { "portal" } else { "statement" };
                            if p.request[key].as_str() == Some(name.as_str()) {
                                p.columns = cols;
                                break;
                            }
                        }
                    }
                } else if let Some(p) = self.current() {
                    p.columns = cols;
                }
            }
            b'D' => {
                if let Some(p) = self.current() {
                    p.rows += 1;
                }
            }
            b'C' | b'I' | b's' => {
                let tag = (t == b'C').then(|| cut(r.cstr(), VALUE_CAP));
                self.pop_other();
                match self.ops.front_mut() {
                    Some(Op::Query(p)) => {
                        p.tags.extend(tag.filter(|_| p.tags.len() < DETAIL_ITEMS));
                        p.empty |= t == b'I';
                    }
                    Some(Op::Execute(p)) => {
                        p.tags.extend(tag);
                        p.empty = t == b'I';
                        p.suspended = t == b's';
                        if let Some(op) = self.ops.pop_front() {
                            self.flush(op, Some(ts), out);
                        }
                    }
                    _ => {}
                }
            }
            b'G' | b'H' | b'W' => {
                if let Some(p) = self.current() {
                    p.copy = Some((
                        match t {
                            b'G' => "in",
                            b'H' => "out",
                            _ => "both",
                        },
                        0,
                    ));
                }
            }
            b'd' => {
                if let Some(p) = self.current() {
                    let c = p.copy.get_or_insert(("out", 0));
                    c.1 += len as u64;
                }
            }
            // CopyDone, ParameterDescription, FunctionCallResponse, NegotiateProtocolVersion.
            b'c' | b'V' | b'v' => {}
            _ => self.errors += 1,
        }
    }

    /// ParseComplete, BindComplete, CloseComplete (and data reaching an Execute) answer the
    /// Parse/Bind/Describe/Close at the front.
    fn pop_other(&mut self) {
        if matches!(self.ops.front(), Some(Op::Other { .. })) {
            self.ops.pop_front();
        }
    }

    fn ready(&mut self, ts: i64, out: &mut Vec<Entry>) {
        if self.ops.is_empty() {
            if let Some(st) = self.startup.take() {
                self.finish_startup(st, None, ts, out);
            }
            return;
        }
        while let Some(op) = self.ops.pop_front() {
            let done = matches!(op, Op::Query(_) | Op::Sync);
            self.flush(op, Some(ts), out);
            if done {
                break;
            }
        }
    }

    fn error(&mut self, err: Value, ts: i64, out: &mut Vec<Entry>) {
        match self.ops.front_mut() {
            Some(Op::Query(p)) => {
                p.error.get_or_insert(err);
            }
            Some(Op::Execute(_) | Op::Other { .. }) => {
                // Everything up to the next Sync is skipped by the server.
                let mut first = true;
                let mut failed_other = None;
                while matches!(self.ops.front(), Some(Op::Execute(_) | Op::Other { .. })) {
                    let Some(op) = self.ops.pop_front() else {
                        break;
                    };
                    match op {
                        Op::Execute(mut p) => {
                            p.error = Some(err.clone());
                            p.skipped = !first;
                            first = false;
                            self.flush(Op::Execute(p), Some(ts), out);
                        }
                        other if failed_other.is_none() => failed_other = Some(other),
                        _ => {}
                    }
                }
                // A Parse/Bind/Describe/Close that failed with no Execute behind it.
                if let (
                    true,
                    Some(Op::Other {
                        kind,
                        query,
                        statement,
                        portal,
                        ..
                    }),
                ) = (first, failed_other)
                {
                    let req = json!({
                        "query": query.as_deref().map(|q| cut(q, PATH_CAP)),
                        "statement": statement,
                        "portal": portal,
                        "message": kind,
                        "protocol": "extended",
                    });
                    let mut p = self.pending(ts, query, req);
                    p.error = Some(err);
                    self.flush(Op::Execute(p), Some(ts), out);
                }
            }
            Some(Op::Sync) | None => {
                if let Some(st) = self.startup.take() {
                    self.finish_startup(st, Some(err), ts, out);
                } else {
                    let mut p = self.pending(ts, None, json!({}));
                    p.fixed_method = Some("ERROR");
                    p.error = Some(err);
                    let mut e = self.finish(*p, None);
                    e.ts_us = ts;
                    out.push(e);
                }
            }
        }
    }

    fn finish_startup(&mut self, st: Startup, err: Option<Value>, ts: i64, out: &mut Vec<Entry>) {
        let mut e = entry(st.ts);
        e.method = Some("startup".into());
        e.path = st.database.clone();
        e.elapsed_us = Some(ts - st.ts);
        e.request_size = st.req_bytes;
        e.response_size = std::mem::take(&mut self.resp_bytes);
        let mut resp = Map::new();
        if let Some(&a) = st.auth.iter().find(|a| !matches!(a, 0 | 8 | 11 | 12)) {
            resp.insert("auth".into(), json!(auth_name(a)));
        }
        if !st.mechanisms.is_empty() {
            resp.insert("sasl_mechanisms".into(), json!(st.mechanisms));
        }
        if let Some(m) = st.mechanism {
            resp.insert("sasl_mechanism".into(), json!(m));
        }
        resp.insert("authenticated".into(), json!(st.auth.contains(&0)));
        if let Some(v) = st.params.get("server_version") {
            resp.insert("server_version".into(), v.clone());
        }
        if !st.params.is_empty() {
            resp.insert("parameters".into(), Value::Object(st.params));
        }
        if let Some(pid) = st.backend_pid {
            resp.insert("backend_pid".into(), json!(pid));
        }
        match err {
            Some(err) => {
                e.status = Some(1);
                e.status_text = err["code"].as_str().map(str::to_string);
                resp.insert("error".into(), err);
            }
            None => e.status = Some(0),
        }
        e.request = Some(Value::Object(st.request).to_string());
        e.response = Some(Value::Object(resp).to_string());
        out.push(e);
    }

    /// Emits the entry of a completed (`ts` = end of response) or unanswered op.
    fn flush(&mut self, op: Op, ts: Option<i64>, out: &mut Vec<Entry>) {
        if let Op::Query(p) | Op::Execute(p) = op {
            let answered = ts.is_some() || p.first_resp.is_some();
            let mut e = self.finish(*p, ts);
            if !answered {
                e.elapsed_us = None;
                e.status = None;
            }
            out.push(e);
        }
    }

    fn finish(&mut self, mut p: Pending, ts: Option<i64>) -> Entry {
        let mut e = entry(p.ts);
        let query = p.query.take().unwrap_or_default();
        let text = String::from_utf8_lossy(&query[..query.len().min(PATH_CAP)]).into_owned();
        e.method = match (&p.error, p.tags.first(), p.fixed_method) {
            (_, _, Some(m)) => Some(m.to_string()),
            (None, Some(tag), _) => tag.split(' ').next().map(str::to_string),
            _ => first_keyword(&text),
        };
        e.path = (!query.is_empty()).then_some(text);
        if !query.is_empty() {
            e.request_body = Some(query[..query.len().min(self.body_cap)].to_vec());
            e.request_body_truncated = query.len() > self.body_cap;
        }
        e.elapsed_us = p.first_resp.or(ts).map(|r| r - p.ts);
        e.request_size = p.req_bytes;
        e.response_size = std::mem::take(&mut self.resp_bytes);
        let mut resp = Map::new();
        resp.insert("command_tags".into(), json!(p.tags));
        resp.insert("rows".into(), json!(p.rows));
        if !p.columns.is_empty() {
            resp.insert("columns".into(), json!(p.columns));
        }
        let affected: u64 = p
            .tags
            .iter()
            .filter(|t| {
                ["INSERT", "UPDATE", "DELETE", "MERGE", "COPY"]
                    .iter()
                    .any(|c| t.starts_with(c))
            })
            .filter_map(|t| t.rsplit(' ').next()?.parse::<u64>().ok())
            .sum();
        if affected > 0 {
            resp.insert("rows_affected".into(), json!(affected));
        }
        if let Some((dir, bytes)) = p.copy {
            resp.insert("copy".into(), json!({ "direction": dir, "bytes": bytes }));
        }
        if p.empty {
            resp.insert("empty_query".into(), json!(true));
        }
        if p.suspended {
            resp.insert("portal_suspended".into(), json!(true));
        }
        if !p.notices.is_empty() {
            resp.insert("notices".into(), json!(p.notices));
        }
        match p.error {
            Some(err) => {
                e.status = Some(1);
                e.status_text = err["code"].as_str().map(str::to_string);
                resp.insert("error".into(), err);
                if p.skipped {
                    resp.insert("skipped".into(), json!(true));
                }
            }
            None => e.status = Some(0),
        }
        e.request = Some(p.request.to_string());
        e.response = Some(Value::Object(resp).to_string());
        e
    }

    pub(super) fn end(&mut self, out: &mut Vec<Entry>) {
        if let Some(st) = self.startup.take() {
            let mut e = entry(st.ts);
            e.method = Some("startup".into());
            e.path = st.database;
            e.request_size = st.req_bytes;
            e.request = Some(Value::Object(st.request).to_string());
            out.push(e);
        }
        while let Some(op) = self.ops.pop_front() {
            self.flush(op, None, out);
        }
    }
}
