//! Selectors into JSON documents, evaluated by the `kfl_json*` UDFs (see `udf.rs`) inside
//! DataFusion: the protocol detail (`request`/`response` columns), bodies decoded with `json()`
//! or `xml()`, and the few text fields that v1 treated as documents (path segments, query
//! string, form body, cookies).
//!
//! A path is a list of [`Step`]s, passed to the UDF as one JSON string literal so that it is
//! parsed once per batch. Evaluation follows KFL v1: a step that finds nothing drops that
//! branch; `.*` and `..name` give several values; a comparison is true when any value
//! satisfies it (`!=` and the negated regex: when none does).

use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use wiretrail_proto::url_decode;

/// One step of a document path.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Step {
    Field(String),
    Index(i64),
    Key(String),
    Wildcard,
    Recursive(String),
    /// Decodes text: `json`, `xml`, `segments` (URL path → list), `query` (the `?…` part →
    /// object), `form` (`a=1&b=2` → object), `cookies` (`Cookie:` → object), `setcookie`
    /// (`Set-Cookie:` → `{name: value}`).
    Decode(String),
}

/// Most values one path may produce per row (a `..name` over a huge body stays bounded).
const MAX_VALUES: usize = 10_000;

pub fn encode(steps: &[Step]) -> String {
    serde_json::to_string(steps).unwrap_or_else(|_| "[]".into())
}

pub fn decode_steps(s: &str) -> Option<Vec<Step>> {
    serde_json::from_str(s).ok()
}

/// Whether the path can give several values (then a plain read returns them as a list).
pub fn is_multi(steps: &[Step]) -> bool {
    steps
        .iter()
        .any(|s| matches!(s, Step::Wildcard | Step::Recursive(_)))
}

fn recurse(v: &Value, name: &str, out: &mut Vec<Value>) {
    if out.len() >= MAX_VALUES {
        return;
    }
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                if k == name {
                    out.push(x.clone());
                }
                recurse(x, name, out);
            }
        }
        Value::Array(a) => a.iter().for_each(|x| recurse(x, name, out)),
        _ => {}
    }
}

/// `a=1&b=2&a=3` → `{"a": ["1", "3"], "b": "2"}` (repeated names become lists, as in v1).
fn params(s: &str) -> Value {
    let mut m = Map::new();
    for pair in s.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let (k, v) = (url_decode(k), Value::String(url_decode(v)));
        match m.get_mut(&k) {
            Some(Value::Array(a)) => a.push(v),
            Some(old) => *old = Value::Array(vec![old.take(), v]),
            None => {
                m.insert(k, v);
            }
        }
    }
    Value::Object(m)
}

fn decode_json(s: &str) -> Option<Value> {
    serde_json::from_str(s).ok().or_else(|| {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(s.trim())
            .ok()?;
        serde_json::from_slice(&bytes).ok()
    })
}

/// XML → JSON as v1 did: an element is an object of its children (repeated names become a
/// list), attributes are `-name`, an element with only text is that text, mixed text is
/// `#text`.
fn decode_xml(s: &str) -> Option<Value> {
    use quick_xml::events::Event;
    use quick_xml::Reader;
    let mut reader = Reader::from_str(s);
    // (name, children, text)
    let mut stack: Vec<(String, Map<String, Value>, String)> =
        vec![(String::new(), Map::new(), String::new())];
    fn add(m: &mut Map<String, Value>, k: String, v: Value) {
        match m.get_mut(&k) {
            Some(Value::Array(a)) => a.push(v),
            Some(old) => *old = Value::Array(vec![old.take(), v]),
            None => {
                m.insert(k, v);
            }
        }
    }
    fn finish(children: Map<String, Value>, text: String) -> Value {
        let text = text.trim().to_string();
        if children.is_empty() {
            Value::String(text)
        } else {
            let mut c = children;
            if !text.is_empty() {
                c.insert("#text".into(), Value::String(text));
            }
            Value::Object(c)
        }
    }
    let attrs = |e: &quick_xml::events::BytesStart| -> Map<String, Value> {
        let mut m = Map::new();
        for a in e.attributes().flatten() {
            let k = format!("-{}", String::from_utf8_lossy(a.key.as_ref()));
            let v = String::from_utf8_lossy(&a.value).into_owned();
            m.insert(k, Value::String(v));
        }
        m
    };
    loop {
        if stack.len() > 256 {
            return None;
        }
        match reader.read_event().ok()? {
            Event::Start(e) => {
                let name = String::from_utf8_lossy(e.name().as_ref()).into_owned();
                stack.push((name, attrs(&e), String::new()));
            }
            Event::Empty(e) => {
                let name = String::from_utf8_lossy(e.name().as_ref()).into_owned();
                let a = attrs(&e);
                let top = stack.last_mut()?;
                add(&mut top.1, name, finish(a, String::new()));
            }
            Event::End(_) => {
                let (name, children, text) = stack.pop()?;
                let top = stack.last_mut()?;
                add(&mut top.1, name, finish(children, text));
            }
            Event::Text(t) => {
                let txt = t.decode().ok()?;
                stack.last_mut()?.2.push_str(&txt);
            }
            Event::CData(t) => {
                let txt = t.decode().ok()?;
                stack.last_mut()?.2.push_str(&txt);
            }
            Event::GeneralRef(r) => {
                let name = r.decode().ok()?;
                let c = match name.as_ref() {
                    "lt" => Some('<'),
                    "gt" => Some('>'),
                    "amp" => Some('&'),
                    "quot" => Some('"'),
                    "apos" => Some('\''),
                    n => n
                        .strip_prefix("#x")
                        .map(|h| u32::from_str_radix(h, 16).ok())
                        .unwrap_or_else(|| n.strip_prefix('#').and_then(|d| d.parse().ok()))
                        .and_then(char::from_u32),
                };
                stack.last_mut()?.2.extend(c);
            }
            Event::Eof => break,
            _ => {}
        }
    }
    let (_, root, _) = stack.pop()?;
    (!root.is_empty() && stack.is_empty()).then_some(Value::Object(root))
}

fn decode(kind: &str, v: &Value) -> Option<Value> {
    let s = match v {
        Value::String(s) => s.as_str(),
        // Already a document (the protocol detail): json() is a no-op on it.
        Value::Object(_) | Value::Array(_) if kind == "json" => return Some(v.clone()),
        _ => return None,
    };
    match kind {
        "json" => decode_json(s),
        "xml" => decode_xml(s),
        "segments" => {
            let path = s.split(['?', '#']).next().unwrap_or("");
            Some(Value::Array(
                path.split('/')
                    .filter(|p| !p.is_empty())
                    .map(|p| Value::String(url_decode(p)))
                    .collect(),
            ))
        }
        "query" => Some(params(s.split_once('?').map_or("", |(_, q)| q))),
        "form" => Some(params(s.trim())),
        "querytext" => Some(Value::String(
            s.split_once('?').map_or("", |(_, q)| q).to_string(),
        )),
        "dnsname" => Some(Value::String(s.trim_end_matches('.').to_string())),
        "cookies" => {
            let mut m = Map::new();
            for c in s.split(';') {
                if let Some((k, v)) = c.split_once('=') {
                    m.insert(k.trim().into(), Value::String(v.trim().into()));
                }
            }
            Some(Value::Object(m))
        }
        "setcookie" => {
            let first = s.split(';').next()?;
            let (k, v) = first.split_once('=')?;
            let mut m = Map::new();
            m.insert(k.trim().into(), Value::String(v.trim().into()));
            Some(Value::Object(m))
        }
        _ => None,
    }
}

/// Every value the path reaches from `root`; JSON `null`s count as absent.
pub fn eval(root: Value, steps: &[Step]) -> Vec<Value> {
    let mut vals = vec![root];
    for step in steps {
        let mut next = Vec::new();
        for v in &vals {
            if next.len() >= MAX_VALUES {
                break;
            }
            match step {
                Step::Field(k) | Step::Key(k) => {
                    if let Some(x) = v.get(k.as_str()) {
                        next.push(x.clone());
                    }
                }
                Step::Index(i) => {
                    if let Value::Array(a) = v {
                        let idx = if *i < 0 { a.len() as i64 + i } else { *i };
                        if let Some(x) = usize::try_from(idx).ok().and_then(|i| a.get(i)) {
                            next.push(x.clone());
                        }
                    }
                }
                Step::Wildcard => match v {
                    Value::Array(a) => next.extend(a.iter().cloned()),
                    Value::Object(m) => next.extend(m.values().cloned()),
                    _ => {}
                },
                Step::Recursive(name) => recurse(v, name, &mut next),
                Step::Decode(kind) => next.extend(decode(kind, v)),
            }
        }
        vals = next;
        if vals.is_empty() {
            break;
        }
    }
    vals.retain(|v| !v.is_null());
    vals
}

/// A value as text: strings as they are, everything else as JSON.
pub fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        Value::Bool(b) => Some(f64::from(u8::from(*b))),
        _ => None,
    }
}

/// v1 truthiness: non-empty text, a number above zero, `true`, a non-empty list or object.
pub fn truthy(v: &Value) -> bool {
    match v {
        Value::String(s) => !s.is_empty(),
        Value::Number(n) => n.as_f64().is_some_and(|f| f > 0.0),
        Value::Bool(b) => *b,
        Value::Array(a) => !a.is_empty(),
        Value::Object(m) => !m.is_empty(),
        Value::Null => false,
    }
}

/// What a `kfl_json_test` call checks.
pub enum Test<'a> {
    Cmp(&'a str, &'a str),
    Regex(&'a regex::Regex, bool),
    StartsWith(&'a str),
    EndsWith(&'a str),
    Contains(&'a str),
    Truthy,
    Exists,
    HasKey(&'a str),
}

fn cmp_one(op: &str, v: &Value, arg: &str) -> bool {
    use std::cmp::Ordering;
    let ord = match (number(v), arg.trim().parse::<f64>()) {
        (Some(a), Ok(b)) if !matches!(v, Value::Bool(_)) => a.partial_cmp(&b),
        _ => Some(text(v).as_str().cmp(arg)),
    };
    let Some(ord) = ord else { return false };
    match op {
        "eq" | "ne" => ord == Ordering::Equal,
        "lt" => ord == Ordering::Less,
        "le" => ord != Ordering::Greater,
        "gt" => ord == Ordering::Greater,
        "ge" => ord != Ordering::Less,
        _ => false,
    }
}

/// Applies `test` to the values a path reached (`multi`: the path had `.*` or `..`). A single
/// list value is searched element by element, as v1 did (`request.path == "v1"` on a list).
pub fn test(vals: &[Value], multi: bool, t: &Test) -> bool {
    let flat: Vec<&Value> = if !multi && vals.len() == 1 {
        match &vals[0] {
            Value::Array(a) if !matches!(t, Test::Truthy | Test::Exists | Test::HasKey(_)) => {
                a.iter().filter(|v| !v.is_null()).collect()
            }
            v => vec![v],
        }
    } else {
        vals.iter().collect()
    };
    match t {
        Test::Cmp("ne", arg) => !flat.is_empty() && !flat.iter().any(|v| cmp_one("eq", v, arg)),
        Test::Cmp(op, arg) => flat.iter().any(|v| cmp_one(op, v, arg)),
        Test::Regex(re, negated) => {
            !flat.is_empty() && (flat.iter().any(|v| re.is_match(&text(v))) != *negated)
        }
        Test::StartsWith(s) => flat.iter().any(|v| text(v).starts_with(s)),
        Test::EndsWith(s) => flat.iter().any(|v| text(v).ends_with(s)),
        Test::Contains(s) => flat.iter().any(|v| text(v).contains(s)),
        Test::Truthy => flat.iter().any(|v| truthy(v)),
        Test::Exists => !flat.is_empty(),
        Test::HasKey(k) => flat.iter().any(|v| match v {
            Value::Object(m) => m.keys().any(|x| x.eq_ignore_ascii_case(k)),
            Value::Array(a) => a.iter().any(|x| text(x) == *k),
            v => text(v) == *k,
        }),
    }
}

/// `size()`: the number of values of a `.*`/`..` path; else the length of the list, object or
/// text reached.
pub fn size(vals: &[Value], multi: bool) -> Option<i64> {
    if multi {
        return (!vals.is_empty()).then_some(vals.len() as i64);
    }
    Some(match vals.first()? {
        Value::Array(a) => a.len() as i64,
        Value::Object(m) => m.len() as i64,
        Value::String(s) => s.chars().count() as i64,
        _ => return None,
    })
}

/// The value of a path as text: the list of values (JSON) for a `.*`/`..` path.
pub fn get(vals: Vec<Value>, multi: bool) -> Option<String> {
    if multi {
        return (!vals.is_empty()).then(|| Value::Array(vals).to_string());
    }
    vals.into_iter().next().map(|v| text(&v))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(doc: Value, steps: Vec<Step>) -> Vec<Value> {
        eval(doc, &steps)
    }

    #[test]
    fn paths_wildcards_and_descent() {
        use Step::*;
        let d =
            json!({"request": {"path": ["api", "v1", "example"]}, "brand": {"name": "Chevrolet"}});
        assert_eq!(
            run(d.clone(), vec![Field("brand".into()), Field("name".into())]),
            vec![json!("Chevrolet")]
        );
        let p = vec![Field("request".into()), Field("path".into()), Wildcard];
        let vals = run(d.clone(), p.clone());
        assert!(test(&vals, true, &Test::Cmp("eq", "v1")));
        assert!(!test(&vals, true, &Test::Cmp("eq", "v2")));
        assert!(test(&vals, true, &Test::Cmp("ne", "v2")));
        assert_eq!(size(&vals, true), Some(3));
        let n = run(json!({"p": [1, 2, 3]}), vec![Field("p".into()), Wildcard]);
        assert!(test(&n, true, &Test::Cmp("gt", "2")));
        assert!(!test(&n, true, &Test::Cmp("gt", "4")));
        let body = json!({"b": "{\"items\":[{\"name\":\"a\"},{\"x\":{\"name\":\"Chevrolet\"}}]}"});
        let r = run(
            body,
            vec![
                Field("b".into()),
                Decode("json".into()),
                Recursive("name".into()),
            ],
        );
        assert_eq!(r, vec![json!("a"), json!("Chevrolet")]);
        let xml = json!("<bookstore><book><title>A</title></book><book lang=\"en\"><title>Harry Potter</title></book></bookstore>");
        let r = run(
            xml,
            vec![
                Decode("xml".into()),
                Field("bookstore".into()),
                Field("book".into()),
                Index(1),
                Field("title".into()),
            ],
        );
        assert_eq!(r, vec![json!("Harry Potter")]);
        let q = run(
            json!("/a/b%20c?x=1&y=2&x=3"),
            vec![Decode("query".into()), Key("x".into())],
        );
        assert_eq!(q, vec![json!(["1", "3"])]);
        assert!(test(&q, false, &Test::Cmp("eq", "3")));
        let s = run(
            json!("/a/b%20c?x=1"),
            vec![Decode("segments".into()), Index(1)],
        );
        assert_eq!(s, vec![json!("b c")]);
        let c = run(
            json!("a=1; sid=xyz"),
            vec![Decode("cookies".into()), Key("sid".into())],
        );
        assert_eq!(c, vec![json!("xyz")]);
        assert!(run(json!("not json"), vec![Decode("json".into())]).is_empty());
        assert!(run(json!({"m": null}), vec![Field("m".into())]).is_empty());
        assert_eq!(url_decode("%zz%4"), "%zz%4");
    }
}
