//! Decoding of message bodies: a bounds-checked reader, error/notice fields, RowDescription
//! columns, Bind parameters, and text helpers for the JSON detail.

use serde_json::{json, Map, Value};

use super::session::{DETAIL_ITEMS, MAX_COLUMNS, VALUE_CAP};

pub(super) fn cut(b: &[u8], cap: usize) -> String {
    let s = String::from_utf8_lossy(&b[..b.len().min(cap)]);
    if b.len() > cap {
        format!("{s}…")
    } else {
        s.into_owned()
    }
}

pub(super) fn hex(b: &[u8]) -> String {
    let mut s: String = b
        .iter()
        .take(VALUE_CAP / 2)
        .map(|x| format!("{x:02x}"))
        .collect();
    if b.len() > VALUE_CAP / 2 {
        s.push('…');
    }
    s
}

/// Reads a message body; every read fails cleanly past the end (bodies may be cut at KEEP).
pub(super) struct Rd<'a>(pub(super) &'a [u8]);

impl<'a> Rd<'a> {
    pub(super) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (h, t) = (self.0.get(..n)?, self.0.get(n..)?);
        self.0 = t;
        Some(h)
    }
    pub(super) fn i16(&mut self) -> Option<i16> {
        self.take(2).map(|b| i16::from_be_bytes([b[0], b[1]]))
    }
    pub(super) fn i32(&mut self) -> Option<i32> {
        self.take(4)
            .map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    /// A NUL-terminated string; a cut body gives what is there.
    pub(super) fn cstr(&mut self) -> &'a [u8] {
        let n = self.0.iter().position(|b| *b == 0).unwrap_or(self.0.len());
        let s = &self.0[..n];
        self.0 = self.0.get(n + 1..).unwrap_or_default();
        s
    }
    pub(super) fn string(&mut self) -> String {
        String::from_utf8_lossy(self.cstr()).into_owned()
    }
}

/// First keyword of a query (after blanks, comments and parentheses), upper-cased.
pub(super) fn first_keyword(q: &str) -> Option<String> {
    let mut s = q;
    loop {
        s = s.trim_start_matches(|c: char| c.is_whitespace() || c == '(');
        if let Some(r) = s.strip_prefix("--") {
            s = r.split_once('\n').map_or("", |(_, r)| r);
        } else if let Some(r) = s.strip_prefix("/*") {
            s = r.split_once("*/").map_or("", |(_, r)| r);
        } else {
            break;
        }
    }
    let w: String = s.chars().take_while(|c| c.is_ascii_alphabetic()).collect();
    (!w.is_empty()).then(|| w.to_ascii_uppercase())
}

/// ErrorResponse / NoticeResponse fields.
pub(super) fn error_fields(body: &[u8]) -> Value {
    let mut r = Rd(body);
    let mut m = Map::new();
    let mut severity = None;
    while let Some(&[code]) = r.take(1) {
        if code == 0 {
            break;
        }
        let v = cut(r.cstr(), 1024);
        let key = match code {
            b'S' => {
                severity.get_or_insert(v);
                continue;
            }
            // The non-localised severity wins over the localised one.
            b'V' => {
                severity = Some(v);
                continue;
            }
            b'C' => "code",
            b'M' => "message",
            b'D' => "detail",
            b'H' => "hint",
            b'P' => "position",
            b'W' => "where",
            b's' => "schema",
            b't' => "table",
            b'c' => "column",
            b'n' => "constraint",
            _ => continue,
        };
        m.insert(key.into(), Value::String(v));
    }
    if let Some(s) = severity {
        m.insert("severity".into(), Value::String(s));
    }
    Value::Object(m)
}

pub(super) fn auth_name(t: i32) -> String {
    match t {
        0 => "ok".into(),
        2 => "KerberosV5".into(),
        3 => "CleartextPassword".into(),
        5 => "MD5Password".into(),
        7 => "GSS".into(),
        8 => "GSSContinue".into(),
        9 => "SSPI".into(),
        10 => "SASL".into(),
        11 => "SASLContinue".into(),
        12 => "SASLFinal".into(),
        t => format!("unknown({t})"),
    }
}

pub(super) fn columns(r: &mut Rd) -> Vec<String> {
    let n = r.i16().unwrap_or(0).max(0) as usize;
    let mut cols = Vec::new();
    for _ in 0..n.min(MAX_COLUMNS) {
        if r.0.is_empty() {
            break;
        }
        cols.push(cut(r.cstr(), VALUE_CAP));
        // table oid, column number, type oid, type size, type modifier, format
        if r.take(18).is_none() {
            break;
        }
    }
    cols
}

/// Bind parameters: text-format values as text, binary ones as hex, NULL as null.
pub(super) fn bind_params(r: &mut Rd) -> Value {
    let nfmt = r.i16().unwrap_or(0).max(0) as usize;
    let mut fmts = Vec::new();
    for _ in 0..nfmt {
        match r.i16() {
            Some(f) => fmts.push(f),
            None => break,
        }
    }
    let n = r.i16().unwrap_or(0).max(0) as usize;
    let mut vals = Vec::new();
    for i in 0..n.min(DETAIL_ITEMS) {
        let Some(l) = r.i32() else { break };
        if l < 0 {
            vals.push(Value::Null);
            continue;
        }
        let Some(v) = r.take(l as usize) else {
            vals.push(json!("…"));
            break;
        };
        let fmt = if fmts.len() == 1 {
            fmts[0]
        } else {
            fmts.get(i).copied().unwrap_or(0)
        };
        vals.push(Value::String(if fmt == 0 {
            cut(v, VALUE_CAP)
        } else {
            hex(v)
        }));
    }
    Value::Array(vals)
}
