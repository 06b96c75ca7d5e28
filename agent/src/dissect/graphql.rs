//! GraphQL over HTTP (HTTP/1 and HTTP/2): recognised from the request itself — a POST whose
//! JSON body has a `query` string, an `application/graphql` body, or a GET with a `query=`
//! parameter — and only when that text really starts like a GraphQL document. Such an
//! exchange becomes protocol `graphql` with the operation type, operation name and variables
//! in the request detail and the response's `errors` in the response detail.

use serde_json::{json, Map, Value};
use wiretrail_proto::url_decode;

/// Longest query text kept in the detail.
const QUERY_CAP: usize = 4096;
/// Error messages kept from a response.
const ERRORS_CAP: usize = 16;

/// The GraphQL part of a request's detail, or `None` if it is not a GraphQL request.
pub(crate) fn request(
    method: &str,
    target: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> Option<Value> {
    let (query, name, variables) = if method.eq_ignore_ascii_case("GET") {
        let (_, qs) = target.split_once('?')?;
        let mut query = None;
        let mut name = None;
        let mut vars = None;
        for pair in qs.split('&') {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            match k {
                "query" => query = Some(url_decode(v)),
                "operationName" => name = Some(url_decode(v)),
                "variables" => vars = serde_json::from_str(&url_decode(v)).ok(),
                _ => {}
            }
        }
        (query?, name, vars)
    } else {
        let ct = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
            .map(|(_, v)| v.to_ascii_lowercase())
            .unwrap_or_default();
        if ct.starts_with("application/graphql") && !ct.contains("json") {
            (String::from_utf8_lossy(body).into_owned(), None, None)
        } else {
            // Most JSON bodies are not GraphQL: look for the key before parsing the whole body.
            if !body.windows(7).any(|w| w == b"\"query\"") {
                return None;
            }
            let v: Value = serde_json::from_slice(body).ok()?;
            // A batch is an array of operations; describe the first.
            let op = match &v {
                Value::Array(a) => a.first()?,
                other => other,
            };
            (
                op.get("query")?.as_str()?.to_string(),
                op.get("operationName")
                    .and_then(Value::as_str)
                    .map(str::to_string),
                op.get("variables").filter(|v| !v.is_null()).cloned(),
            )
        }
    };
    let (kind, doc_name) = operation(&query, name.as_deref())?;
    let mut d = Map::new();
    d.insert("operation_type".into(), json!(kind));
    if let Some(n) = name.or(doc_name) {
        d.insert("operation_name".into(), json!(n));
    }
    if let Some(v) = variables {
        d.insert("variables".into(), v);
    }
    d.insert(
        "query".into(),
        json!(query.chars().take(QUERY_CAP).collect::<String>()),
    );
    Some(Value::Object(d))
}

/// The GraphQL part of a response's detail: the `errors` messages, if any.
pub(crate) fn response(body: &[u8]) -> Option<Value> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let errors: Vec<Value> = v
        .get("errors")?
        .as_array()?
        .iter()
        .take(ERRORS_CAP)
        .map(|e| e.get("message").cloned().unwrap_or_else(|| e.clone()))
        .collect();
    Some(json!({ "errors": errors, "data": v.get("data").is_some_and(|d| !d.is_null()) }))
}

/// Skips whitespace, commas and `#` comments (GraphQL's ignored tokens).
fn skip_ignored(s: &str) -> &str {
    let mut s = s;
    loop {
        let t = s.trim_start_matches(|c: char| c.is_whitespace() || c == ',' || c == '\u{feff}');
        if let Some(rest) = t.strip_prefix('#') {
            s = rest.split_once('\n').map_or("", |(_, r)| r);
        } else {
            return t;
        }
    }
}

fn name_at(s: &str) -> Option<&str> {
    let end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    (end > 0).then(|| &s[..end])
}

/// The operation type (and name) of a document: the one named `wanted`, else the first
/// operation. `None` if the text does not start like a GraphQL document.
fn operation(doc: &str, wanted: Option<&str>) -> Option<(&'static str, Option<String>)> {
    let mut rest = skip_ignored(doc);
    let mut first = None;
    let mut depth_guard = 0;
    while !rest.is_empty() && depth_guard < 1024 {
        depth_guard += 1;
        let (kind, name) = if rest.starts_with('{') {
            ("query", None)
        } else {
            let word = name_at(rest)?;
            let kind = match word {
                "query" => "query",
                "mutation" => "mutation",
                "subscription" => "subscription",
                "fragment" => "fragment",
                _ => return first,
            };
            rest = skip_ignored(&rest[word.len()..]);
            (kind, name_at(rest).map(str::to_string))
        };
        if kind != "fragment" {
            if wanted.is_none() || wanted == name.as_deref() {
                return Some((kind, name));
            }
            first.get_or_insert((kind, name));
        }
        // Skip to the end of this definition's selection set.
        let open = rest.find('{')?;
        let mut depth = 0usize;
        let mut end = None;
        for (i, c) in rest[open..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        end = Some(open + i + 1);
                        break;
                    }
                }
                _ => {}
            }
        }
        rest = skip_ignored(&rest[end?..]);
    }
    first
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_post_get_and_names() {
        let h = vec![("Content-Type".to_string(), "application/json".to_string())];
        let body = br#"{"query":"mutation AddBook($t: String!) { addBook(title: $t) { id } }","variables":{"t":"x"}}"#;
        let d = request("POST", "/graphql", &h, body).unwrap();
        assert_eq!(d["operation_type"], "mutation");
        assert_eq!(d["operation_name"], "AddBook");
        assert_eq!(d["variables"]["t"], "x");
        let d = request(
            "GET",
            "/graphql?query=%7B+books+%7B+title+%7D+%7D",
            &[],
            b"",
        )
        .unwrap();
        assert_eq!(d["operation_type"], "query");
        let doc = r##"{"query":"# c\nquery A { a } query B { b }","operationName":"B"}"##;
        let d = request("POST", "/g", &h, doc.as_bytes()).unwrap();
        assert_eq!(d["operation_name"], "B");
        assert!(request("POST", "/x", &h, br#"{"query": "SELECT 1"}"#).is_none());
        assert!(request("POST", "/x", &h, br#"{"a": 1}"#).is_none());
        let r = response(br#"{"errors":[{"message":"boom"}],"data":null}"#).unwrap();
        assert_eq!(r["errors"][0], "boom");
    }
}
