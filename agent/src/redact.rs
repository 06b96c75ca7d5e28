//! Redaction of secrets before entries leave the node: header values, JSON keys (in bodies
//! and in the protocol detail), query-string and form parameters, card numbers and
//! user-supplied regexes are replaced by [`MARKER`] and counted per kind.
//!
//! Bodies are rewritten in place at the byte level (never parsed and re-serialized), so
//! their formatting is kept and a body cut at the body cap (invalid JSON) is still scanned.
//! The protocol detail is JSON written by our dissectors; it is parsed, walked and written
//! back only when something in it was redacted, so it stays valid JSON.
//!
//! This is distinct from the query-time `redact(...)` KFL helper: that one masks fields of
//! stored entries when they are read; this one decides what is stored at all.

use regex::bytes::Regex;
use serde::Serialize;
use serde_json::Value;
use wiretrail_proto::Entry;

use crate::AgentError;

/// What a redacted value is replaced with.
pub const MARKER: &str = "[REDACTED]";

/// Redactions by kind, as counted in [`crate::PipelineStats::redactions`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RedactionCounts {
    /// `Authorization` / `Proxy-Authorization` credentials (the scheme is kept).
    pub authorization: u64,
    /// `Cookie` / `Set-Cookie` values (cookie names and attributes are kept).
    pub cookie: u64,
    /// Values of headers named with `--redact-header`.
    pub header: u64,
    /// Values of JSON keys (bodies and protocol detail).
    pub json_key: u64,
    /// Values of query-string and form parameters named like the JSON keys.
    pub query_param: u64,
    /// Card numbers: 13–19 digits with a card-network first digit (2–6) passing Luhn.
    pub card_number: u64,
    /// Matches of `--redact-regex` patterns.
    pub regex: u64,
}

impl RedactionCounts {
    pub fn total(&self) -> u64 {
        self.authorization
            + self.cookie
            + self.header
            + self.json_key
            + self.query_param
            + self.card_number
            + self.regex
    }

    /// `(kind, count)` pairs, e.g. for metrics labels.
    pub fn by_kind(&self) -> [(&'static str, u64); 7] {
        [
            ("authorization", self.authorization),
            ("cookie", self.cookie),
            ("header", self.header),
            ("json_key", self.json_key),
            ("query_param", self.query_param),
            ("card_number", self.card_number),
            ("regex", self.regex),
        ]
    }
}

/// How one header's value is redacted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HeaderRule {
    /// `Bearer abc` → `Bearer [REDACTED]`: the scheme says what kind of credential it was.
    KeepScheme,
    /// `a=1; b=2` → `a=[REDACTED]; b=[REDACTED]`.
    Cookie,
    /// `id=1; Path=/; HttpOnly` → `id=[REDACTED]; Path=/; HttpOnly`.
    SetCookie,
    Whole,
}

/// The secrets to remove from entries; see the module doc. `Redactor::default()` has the
/// default rules; [`Redactor::off`] removes nothing (`--no-redact`).
#[derive(Debug, Clone)]
pub struct Redactor {
    enabled: bool,
    /// Lower-case header names.
    headers: Vec<(String, HeaderRule)>,
    /// JSON keys / parameter names as lower-case word components (`access_token` →
    /// `[access, token]`).
    keys: Vec<Vec<String>>,
    regexes: Vec<Regex>,
    cards: bool,
}

/// Keys redacted by default wherever they appear as a word of a key (`password`,
/// `access_token`, `clientSecret`, …).
pub const DEFAULT_JSON_KEYS: [&str; 3] = ["password", "token", "secret"];

impl Default for Redactor {
    fn default() -> Self {
        Redactor {
            enabled: true,
            headers: vec![
                ("authorization".into(), HeaderRule::KeepScheme),
                ("proxy-authorization".into(), HeaderRule::KeepScheme),
                ("cookie".into(), HeaderRule::Cookie),
                ("set-cookie".into(), HeaderRule::SetCookie),
            ],
            keys: DEFAULT_JSON_KEYS
                .iter()
                .map(|k| words(k.as_bytes()))
                .collect(),
            regexes: Vec::new(),
            cards: true,
        }
    }
}

impl Redactor {
    /// A redactor that leaves entries as captured (the security-hunting use case).
    pub fn off() -> Self {
        Redactor {
            enabled: false,
            headers: Vec::new(),
            keys: Vec::new(),
            regexes: Vec::new(),
            cards: false,
        }
    }

    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    /// Also replaces the whole value of header `name` (case-insensitive).
    pub fn with_header(mut self, name: &str) -> Self {
        let name = name.trim().to_ascii_lowercase();
        if !self.headers.iter().any(|(n, _)| *n == name) {
            self.headers.push((name, HeaderRule::Whole));
        }
        self
    }

    /// Also redacts the values of JSON keys and query/form parameters named `key`
    /// (case-insensitive, matched as words: `api_key` matches `x-api-key` and `apiKey`).
    pub fn with_json_key(mut self, key: &str) -> Result<Self, AgentError> {
        let w = words(key.as_bytes());
        if w.is_empty() {
            return Err(AgentError::Redaction(format!(
                "JSON key {key:?} has no letters or digits"
            )));
        }
        self.keys.push(w);
        Ok(self)
    }

    /// Also replaces every match of `pattern` in header values, paths, bodies and detail.
    pub fn with_regex(mut self, pattern: &str) -> Result<Self, AgentError> {
        let re = Regex::new(pattern)
            .map_err(|e| AgentError::Redaction(format!("regex {pattern:?}: {e}")))?;
        if re.is_match(b"") {
            return Err(AgentError::Redaction(format!(
                "regex {pattern:?} matches the empty string"
            )));
        }
        self.regexes.push(re);
        Ok(self)
    }

    /// Removes the secrets of one finished entry, adding what it replaced to `counts`.
    pub fn redact(&self, e: &mut Entry, counts: &mut RedactionCounts) {
        if !self.enabled {
            return;
        }
        for headers in [&mut e.request_headers, &mut e.response_headers]
            .into_iter()
            .flatten()
        {
            for (name, value) in headers.iter_mut() {
                self.header(name, value, counts);
            }
        }
        if e.protocol == "redis" {
            redis_auth(e, counts);
        }
        if let Some(p) = &mut e.path {
            self.text(p, counts);
        }
        for body in [&mut e.request_body, &mut e.response_body]
            .into_iter()
            .flatten()
        {
            if let Some(b) = self.bytes(body, counts) {
                *body = b;
            }
        }
        for detail in [&mut e.request, &mut e.response].into_iter().flatten() {
            self.detail(detail, counts);
        }
    }

    fn header(&self, name: &str, value: &mut String, c: &mut RedactionCounts) {
        let rule = self
            .headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, r)| *r);
        match rule {
            Some(HeaderRule::KeepScheme) => {
                let v = value.trim();
                let new = match v.split_once(char::is_whitespace) {
                    Some((scheme, _)) => format!("{scheme} {MARKER}"),
                    None => MARKER.to_string(),
                };
                if !v.is_empty() && new != v {
                    c.authorization += 1;
                    *value = new;
                }
            }
            Some(HeaderRule::Cookie) => {
                if let Some(v) = cookie_values(value, value.len()) {
                    c.cookie += 1;
                    *value = v;
                }
            }
            Some(HeaderRule::SetCookie) => {
                let first = value.find(';').unwrap_or(value.len());
                if let Some(v) = cookie_values(value, first) {
                    c.cookie += 1;
                    *value = v;
                }
            }
            Some(HeaderRule::Whole) => {
                if !value.is_empty() {
                    c.header += 1;
                    *value = MARKER.to_string();
                }
            }
            None => self.text(value, c),
        }
    }

    /// Path or header value: parameters, card numbers, regexes.
    fn text(&self, s: &mut String, c: &mut RedactionCounts) {
        if let Some(b) = self.scrub(s.as_bytes(), false, c) {
            *s = String::from_utf8(b)
                .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into());
        }
    }

    /// A body: JSON keys (`"key":` pairs wherever they stand, so a body cut short or JSON
    /// inside another format counts too), then parameters, card numbers, regexes.
    fn bytes(&self, body: &[u8], c: &mut RedactionCounts) -> Option<Vec<u8>> {
        let json = body
            .iter()
            .find(|b| !b.is_ascii_whitespace())
            .is_some_and(|b| matches!(b, b'{' | b'['));
        let keyed = self.json_keys(body, c);
        match keyed {
            Some(k) => Some(self.scrub(&k, json, c).unwrap_or(k)),
            None => self.scrub(body, json, c),
        }
    }

    /// The protocol detail (JSON text): walked as a value so it stays valid JSON.
    fn detail(&self, d: &mut String, c: &mut RedactionCounts) {
        let Ok(mut v) = serde_json::from_str::<Value>(d) else {
            // Not JSON after all: treated as a body.
            if let Some(b) = self.bytes(d.as_bytes(), c) {
                *d = String::from_utf8(b)
                    .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into());
            }
            return;
        };
        if self.value(&mut v, c) {
            *d = v.to_string();
        }
    }

    fn value(&self, v: &mut Value, c: &mut RedactionCounts) -> bool {
        match v {
            Value::Object(m) => {
                let mut changed = false;
                for (k, x) in m.iter_mut() {
                    if self.key_matches(k.as_bytes()) {
                        if !matches!(x, Value::Null) && x.as_str() != Some(MARKER) {
                            c.json_key += 1;
                            *x = Value::String(MARKER.into());
                            changed = true;
                        }
                    } else {
                        changed |= self.value(x, c);
                    }
                }
                changed
            }
            Value::Array(a) => a.iter_mut().fold(false, |ch, x| self.value(x, c) | ch),
            Value::String(s) => {
                let before = c.total();
                self.text(s, c);
                c.total() != before
            }
            Value::Number(n) => {
                let t = n.to_string();
                if self.cards && card_spans(t.as_bytes()).next().is_some() {
                    c.card_number += 1;
                    *v = Value::String(MARKER.into());
                    return true;
                }
                false
            }
            _ => false,
        }
    }

    fn key_matches(&self, key: &[u8]) -> bool {
        // Fast rejection without allocating: a matching key contains the rule's first word.
        let maybe = self.keys.iter().any(|k| {
            let first = k[0].as_bytes();
            key.windows(first.len())
                .any(|w| w.eq_ignore_ascii_case(first))
        });
        if !maybe {
            return false;
        }
        let w = words(key);
        let joined: String = w.concat();
        self.keys.iter().any(|k| {
            w.windows(k.len()).any(|win| win == k.as_slice())
                || (k.len() > 1 && joined == k.concat())
        })
    }

    /// Replaces the values of matching keys in JSON text without re-serializing it; works on
    /// truncated or invalid JSON (it only looks at strings followed by `:`).
    fn json_keys(&self, s: &[u8], c: &mut RedactionCounts) -> Option<Vec<u8>> {
        let mut out: Option<Vec<u8>> = None;
        let mut last = 0;
        let mut i = 0;
        while i < s.len() {
            if s[i] != b'"' {
                i += 1;
                continue;
            }
            let end = string_end(s, i);
            let terminated = end <= s.len() && end > i + 1 && s[end - 1] == b'"';
            let colon = skip_ws(s, end);
            if terminated
                && colon < s.len()
                && s[colon] == b':'
                && self.key_matches(&s[i + 1..end - 1])
            {
                let start = skip_ws(s, colon + 1);
                let vend = value_end(s, start);
                let quoted = format!("\"{MARKER}\"");
                if vend > start
                    && &s[start..vend] != quoted.as_bytes()
                    && &s[start..vend] != b"null"
                {
                    let o = out.get_or_insert_with(|| Vec::with_capacity(s.len()));
                    o.extend_from_slice(&s[last..start]);
                    o.extend_from_slice(quoted.as_bytes());
                    last = vend;
                    c.json_key += 1;
                }
                i = vend.max(start).max(i + 1);
                continue;
            }
            i = end.max(i + 1);
        }
        out.map(|mut o| {
            o.extend_from_slice(&s[last..]);
            o
        })
    }

    /// Parameters (`key=value` after start, `?`, `&`, `;` or whitespace; a value never takes
    /// a quote or backslash, so JSON strings keep their bounds), card numbers and regexes. In JSON text a card number outside quotes becomes a quoted marker.
    fn scrub(&self, s: &[u8], json: bool, c: &mut RedactionCounts) -> Option<Vec<u8>> {
        let mut cur: Option<Vec<u8>> = None;
        if !self.keys.is_empty() && s.contains(&b'=') {
            cur = self.params(s, c);
        }
        if self.cards {
            let src = cur.as_deref().unwrap_or(s);
            let spans: Vec<(usize, usize)> = card_spans(src).collect();
            if !spans.is_empty() {
                let mut o = Vec::with_capacity(src.len());
                let mut last = 0;
                for (a, b) in spans {
                    o.extend_from_slice(&src[last..a]);
                    let bare = json && bare_json_number(src, a);
                    if bare {
                        o.push(b'"');
                    }
                    o.extend_from_slice(MARKER.as_bytes());
                    if bare {
                        o.push(b'"');
                    }
                    last = b;
                    c.card_number += 1;
                }
                o.extend_from_slice(&src[last..]);
                cur = Some(o);
            }
        }
        for re in &self.regexes {
            let src = cur.as_deref().unwrap_or(s);
            let n = re
                .find_iter(src)
                .filter(|m| m.as_bytes() != MARKER.as_bytes())
                .count();
            if n > 0 {
                c.regex += n as u64;
                let o = re.replace_all(src, MARKER.as_bytes()).into_owned();
                cur = Some(o);
            }
        }
        cur
    }

    fn params(&self, s: &[u8], c: &mut RedactionCounts) -> Option<Vec<u8>> {
        let mut out: Option<Vec<u8>> = None;
        let mut last = 0;
        let mut i = 0;
        while i < s.len() {
            if s[i] != b'=' {
                i += 1;
                continue;
            }
            let mut k = i;
            while k > 0 && is_param_char(s[k - 1]) {
                k -= 1;
            }
            let boundary = k == 0
                || matches!(s[k - 1], b'?' | b'&' | b';' | b'"')
                || s[k - 1].is_ascii_whitespace();
            let mut v = i + 1;
            while v < s.len()
                && !matches!(
                    s[v],
                    b'&' | b'#' | b';' | b'"' | b'\\' | b'\'' | b'<' | b'>'
                )
                && !s[v].is_ascii_whitespace()
            {
                v += 1;
            }
            if k < i
                && boundary
                && v > i + 1
                && &s[i + 1..v] != MARKER.as_bytes()
                && self.key_matches(&s[k..i])
            {
                let o = out.get_or_insert_with(|| Vec::with_capacity(s.len()));
                o.extend_from_slice(&s[last..i + 1]);
                o.extend_from_slice(MARKER.as_bytes());
                last = v;
                c.query_param += 1;
            }
            i = v.max(i + 1);
        }
        out.map(|mut o| {
            o.extend_from_slice(&s[last..]);
            o
        })
    }
}

/// Redis `AUTH [user] password` and `HELLO … AUTH user password`: the password (for AUTH
/// every argument, since one argument is the password) leaves the path and the detail.
/// Counted as `authorization`.
fn redis_auth(e: &mut Entry, c: &mut RedactionCounts) {
    let Some(m) = e.method.as_deref() else {
        return;
    };
    let auth = m.eq_ignore_ascii_case("AUTH");
    if !auth && !m.eq_ignore_ascii_case("HELLO") {
        return;
    }
    let mut changed = false;
    if auth {
        if let Some(p) = e.path.as_mut().filter(|p| p.as_str() != MARKER) {
            *p = MARKER.into();
            changed = true;
        }
    }
    if let Some(d) = &mut e.request {
        if let Ok(mut v) = serde_json::from_str::<Value>(d) {
            if let Some(args) = v.get_mut("args").and_then(Value::as_array_mut) {
                let from = if auth {
                    Some(0)
                } else {
                    args.iter()
                        .position(|a| a.as_str().is_some_and(|a| a.eq_ignore_ascii_case("AUTH")))
                        .map(|i| i + 2)
                };
                for a in args
                    .iter_mut()
                    .skip(from.unwrap_or(usize::MAX))
                    .take(if auth { usize::MAX } else { 1 })
                {
                    if a.as_str() != Some(MARKER) {
                        *a = Value::String(MARKER.into());
                        changed = true;
                    }
                }
                if changed {
                    *d = v.to_string();
                }
            }
        }
    }
    if changed {
        c.authorization += 1;
    }
}

fn is_param_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'[' | b']' | b'%')
}

/// `name=value` pairs separated by `;` in `v[..upto]` get their values replaced.
fn cookie_values(v: &str, upto: usize) -> Option<String> {
    let (pairs, rest) = v.split_at(upto.min(v.len()));
    let mut changed = false;
    let parts: Vec<String> = pairs
        .split(';')
        .map(|p| match p.split_once('=') {
            Some((n, val)) if !val.trim().is_empty() && val.trim() != MARKER => {
                changed = true;
                format!("{n}={MARKER}")
            }
            Some(_) => p.to_string(),
            None if !p.trim().is_empty() && upto == v.len() && !p.contains(MARKER) => {
                // A cookie without a name is all value.
                changed = true;
                let lead = &p[..p.len() - p.trim_start().len()];
                format!("{lead}{MARKER}")
            }
            None => p.to_string(),
        })
        .collect();
    changed.then(|| parts.join(";") + rest)
}

/// Lower-case words of a key: split at non-alphanumerics and at lower→upper case changes.
fn words(key: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut prev_lower = false;
    for &b in key {
        if !b.is_ascii_alphanumeric() {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            prev_lower = false;
            continue;
        }
        if b.is_ascii_uppercase() && prev_lower && !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
        }
        prev_lower = b.is_ascii_lowercase() || b.is_ascii_digit();
        cur.push(b.to_ascii_lowercase() as char);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Index just past the string starting at `s[i] == '"'` (or `s.len()` if unterminated).
fn string_end(s: &[u8], i: usize) -> usize {
    let mut j = i + 1;
    while j < s.len() {
        match s[j] {
            b'\\' => j += 2,
            b'"' => return j + 1,
            _ => j += 1,
        }
    }
    s.len()
}

fn skip_ws(s: &[u8], mut i: usize) -> usize {
    while i < s.len() && s[i].is_ascii_whitespace() {
        i += 1;
    }
    i
}

/// Index just past the JSON value starting at `i` (nested values included).
fn value_end(s: &[u8], i: usize) -> usize {
    if i >= s.len() {
        return s.len();
    }
    match s[i] {
        b'"' => string_end(s, i),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut j = i;
            while j < s.len() {
                match s[j] {
                    b'"' => {
                        j = string_end(s, j);
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return j + 1;
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
            s.len()
        }
        _ => {
            let mut j = i;
            while j < s.len() && !matches!(s[j], b',' | b'}' | b']') && !s[j].is_ascii_whitespace()
            {
                j += 1;
            }
            j
        }
    }
}

/// Whether a number at `s[a]` stands where a JSON value would: outside any string (scanned from the
/// start, so a number inside a string is never given quotes that would split the string).
fn bare_json_number(s: &[u8], a: usize) -> bool {
    let mut in_string = false;
    let mut k = 0;
    while k < a {
        match s[k] {
            b'\\' if in_string => k += 1,
            b'"' => in_string = !in_string,
            _ => {}
        }
        k += 1;
    }
    !in_string
}

/// Spans of card numbers: 13–19 digits (single spaces or dashes allowed between them), not
/// next to other letters or digits, first digit 2–6 (the card networks' ranges; keeps epoch
/// timestamps and most ids out), passing the Luhn check. A longer run of digits and
/// separators is skipped whole, so no part of it is taken for a number of its own.
fn card_spans(s: &[u8]) -> impl Iterator<Item = (usize, usize)> + '_ {
    let mut i = 0;
    std::iter::from_fn(move || {
        while i < s.len() {
            if !s[i].is_ascii_digit() || (i > 0 && s[i - 1].is_ascii_alphanumeric()) {
                i += 1;
                continue;
            }
            let start = i;
            let mut digits = [0u8; 20];
            let mut n = 0usize;
            let mut j = i;
            let mut end = i;
            while j < s.len() {
                if s[j].is_ascii_digit() {
                    if n < digits.len() {
                        digits[n] = s[j] - b'0';
                    }
                    n += 1;
                    j += 1;
                    end = j;
                } else if matches!(s[j], b' ' | b'-')
                    && j + 1 < s.len()
                    && s[j + 1].is_ascii_digit()
                {
                    j += 1;
                } else {
                    break;
                }
            }
            // Skip the whole run (and letters glued to its end).
            i = end;
            while i < s.len() && s[i].is_ascii_alphanumeric() {
                i += 1;
            }
            let alone = end >= s.len() || !s[end].is_ascii_alphanumeric();
            if alone && (13..=19).contains(&n) && (2..=6).contains(&digits[0]) && luhn(&digits[..n])
            {
                return Some((start, end));
            }
        }
        None
    })
}

fn luhn(d: &[u8]) -> bool {
    let sum: u32 = d
        .iter()
        .rev()
        .enumerate()
        .map(|(k, &x)| {
            let x = x as u32;
            if k % 2 == 1 {
                let y = x * 2;
                if y > 9 {
                    y - 9
                } else {
                    y
                }
            } else {
                x
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

#[cfg(test)]
#[path = "redact_tests.rs"]
mod tests;
