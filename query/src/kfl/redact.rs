//! `redact(…)`: masks fields of the entries a query returns, after they are turned into JSON
//! (the filter itself is unaffected, as in v1 where `redact()` was `true`). Each selector is
//! resolved like any KFL field, then mapped to where that field appears in the REST entry.

use serde_json::Value;
use wiretrail_proto::schema as sc;

use super::jsonpath::Step;

pub const MASK: &str = "[REDACTED]";

/// One thing to mask in a returned entry.
#[derive(Debug, Clone, PartialEq)]
pub enum Redaction {
    /// A promoted column (`path`, `src_name`, `ts` …).
    Column(&'static str),
    /// One header's value (name matched ignoring case).
    Header { response: bool, name: String },
    /// Every header value of one side.
    AllHeaders { response: bool },
    /// A path inside the protocol detail (`request`/`response` object).
    Detail { response: bool, steps: Vec<Step> },
    /// A body, or a path inside it (`json()` first).
    Body { response: bool, steps: Vec<Step> },
    /// `..name`: every key `name`, anywhere in the entry and in JSON bodies.
    Recursive(String),
}

/// Where a column's value is in a REST entry.
fn column_keys(c: &str) -> Vec<Vec<String>> {
    let one = |a: &str| vec![vec![a.to_string()]];
    if c == sc::TS {
        return vec![vec!["ts".into()], vec!["ts_us".into()]];
    }
    for side in ["src", "dst"] {
        if let Some(attr) = c.strip_prefix(side).and_then(|r| r.strip_prefix('_')) {
            return vec![vec![side.to_string(), attr.to_string()]];
        }
    }
    one(c)
}

fn mask(v: &mut Value) {
    if !v.is_null() {
        *v = Value::String(MASK.into());
    }
}

/// Masks what `steps` reach inside `v`.
fn set(v: &mut Value, steps: &[Step]) {
    let Some((first, rest)) = steps.split_first() else {
        mask(v);
        return;
    };
    match first {
        Step::Field(k) | Step::Key(k) => {
            if let Some(x) = v.get_mut(k.as_str()) {
                set(x, rest);
            }
        }
        Step::Index(i) => {
            if let Value::Array(a) = v {
                let idx = if *i < 0 { a.len() as i64 + i } else { *i };
                if let Some(x) = usize::try_from(idx).ok().and_then(|i| a.get_mut(i)) {
                    set(x, rest);
                }
            }
        }
        Step::Wildcard => match v {
            Value::Array(a) => a.iter_mut().for_each(|x| set(x, rest)),
            Value::Object(m) => m.values_mut().for_each(|x| set(x, rest)),
            _ => {}
        },
        Step::Recursive(name) => recurse(v, name, rest),
        Step::Decode(kind) if kind == "json" => match v {
            Value::String(s) => {
                if let Ok(mut doc) = serde_json::from_str::<Value>(s) {
                    set(&mut doc, rest);
                    *s = doc.to_string();
                } else if !s.is_empty() {
                    // Not JSON text (base64, say): mask all of it rather than leak it.
                    mask(v);
                }
            }
            Value::Object(_) | Value::Array(_) => set(v, rest),
            _ => {}
        },
        // xml(), query strings, cookies: the whole text is masked.
        Step::Decode(_) => mask(v),
    }
}

fn recurse(v: &mut Value, name: &str, rest: &[Step]) {
    match v {
        Value::Object(m) => {
            for (k, x) in m.iter_mut() {
                if k == name {
                    set(x, rest);
                } else {
                    recurse(x, name, rest);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| recurse(x, name, rest)),
        _ => {}
    }
}

fn body_data(e: &mut Value, response: bool) -> Option<&mut Value> {
    let key = if response {
        "response_body"
    } else {
        "request_body"
    };
    e.get_mut(key)?.get_mut("data")
}

/// Applies every redaction to every entry.
pub fn apply(entries: &mut [Value], rs: &[Redaction]) {
    for e in entries.iter_mut() {
        for r in rs {
            match r {
                Redaction::Column(c) => {
                    for keys in column_keys(c) {
                        let steps: Vec<Step> = keys.into_iter().map(Step::Field).collect();
                        set(e, &steps);
                    }
                }
                Redaction::Header { response, .. } | Redaction::AllHeaders { response } => {
                    let key = if *response {
                        "response_headers"
                    } else {
                        "request_headers"
                    };
                    let only = name_of(r);
                    if let Some(Value::Array(hs)) = e.get_mut(key) {
                        for h in hs {
                            let hit = only.is_none_or(|n| {
                                h["name"]
                                    .as_str()
                                    .is_some_and(|x| x.eq_ignore_ascii_case(n))
                            });
                            if hit {
                                if let Some(v) = h.get_mut("value") {
                                    mask(v);
                                }
                            }
                        }
                    }
                }
                Redaction::Detail { response, steps } => {
                    let key = if *response { "response" } else { "request" };
                    if let Some(d) = e.get_mut(key) {
                        set(d, steps);
                    }
                }
                Redaction::Body { response, steps } => {
                    if let Some(d) = body_data(e, *response) {
                        set(d, steps);
                    }
                }
                Redaction::Recursive(name) => {
                    recurse(e, name, &[]);
                    for response in [false, true] {
                        if let Some(d) = body_data(e, response) {
                            set(
                                d,
                                &[Step::Decode("json".into()), Step::Recursive(name.clone())],
                            );
                        }
                    }
                }
            }
        }
    }
}

fn name_of(r: &Redaction) -> Option<&str> {
    match r {
        Redaction::Header { name, .. } => Some(name),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn masks_columns_headers_detail_bodies_and_names() {
        let mut e = vec![json!({
            "path": "/x", "status": 200, "src": {"name": "a", "ip": "1.2.3.4"},
            "request_headers": [{"name": "Authorization", "value": "Token x"}, {"name": "Host", "value": "h"}],
            "request": {"tls": {"sni": "s"}, "args": ["k", "v"]},
            "response_body": {"encoding": "utf8", "data": "{\"user\":{\"password\":\"p\",\"name\":\"n\"}}"},
        })];
        apply(
            &mut e,
            &[
                Redaction::Column("path"),
                Redaction::Column("src_name"),
                Redaction::Header {
                    response: false,
                    name: "authorization".into(),
                },
                Redaction::Detail {
                    response: false,
                    steps: vec![Step::Field("args".into()), Step::Index(1)],
                },
                Redaction::Recursive("password".into()),
            ],
        );
        let e = &e[0];
        assert_eq!(e["path"], MASK);
        assert_eq!(e["src"]["name"], MASK);
        assert_eq!(e["src"]["ip"], "1.2.3.4");
        assert_eq!(e["request_headers"][0]["value"], MASK);
        assert_eq!(e["request_headers"][1]["value"], "h");
        assert_eq!(e["request"]["args"], json!(["k", MASK]));
        let body: Value =
            serde_json::from_str(e["response_body"]["data"].as_str().unwrap()).unwrap();
        assert_eq!(body, json!({"user": {"password": MASK, "name": "n"}}));
    }
}
