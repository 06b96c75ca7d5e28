//! KFL selectors → entry columns. v1 names (`response.status`, `src.name`) and KFL2 flat
//! names (`status_code`, `dst.pod.namespace`) resolve to the same promoted columns.

use wiretrail_proto::schema as sc;

use super::ast::{path_string, Seg};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Str,
    Int,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Field {
    Column {
        name: &'static str,
        kind: Kind,
        nullable: bool,
    },
    /// A header value by case-insensitive name.
    Header { response: bool, name: String },
    /// `ts`, compared with epoch milliseconds, RFC 3339 or datetime().
    Timestamp,
    /// `elapsed_us` in milliseconds.
    ElapsedMs,
}

/// Protocol macros: whole identifiers only, so `request.httpVersion` is never rewritten.
pub const MACROS: &[(&str, &str)] = &[
    ("http", "http"),
    ("http2", "http2"),
    ("grpc", "grpc"),
    ("gql", "graphql"),
    ("graphql", "graphql"),
    ("redis", "redis"),
    ("kafka", "kafka"),
    ("amqp", "amqp"),
    ("dns", "dns"),
    ("tls", "tls"),
    ("postgres", "postgres"),
];

const fn col(name: &'static str, kind: Kind, nullable: bool) -> Field {
    Field::Column {
        name,
        kind,
        nullable,
    }
}

/// (KFL names, field). The first name of each row is the one suggested in errors. Identity
/// columns (`src_name` …) have no constant in the schema module (they are built from
/// `IDENTITY_ATTRS`); a test checks that every column named here exists.
const NAMES: &[(&[&str], Field)] = &[
    (
        &["protocol", "protocol.name", "protocol.abbr"],
        col(sc::PROTOCOL, Kind::Str, false),
    ),
    (
        &["request.method", "method"],
        col(sc::METHOD, Kind::Str, true),
    ),
    (
        &[
            "request.path",
            "path",
            "request.url",
            "url",
            "request.questions[0].name",
            "dns_question",
        ],
        col(sc::PATH, Kind::Str, true),
    ),
    (
        &["response.status", "status_code", "status", "response.code"],
        col(sc::STATUS, Kind::Int, true),
    ),
    (
        &["response.statusText", "status_text"],
        col(sc::STATUS_TEXT, Kind::Str, true),
    ),
    (
        &["requestSize", "request_size", "request.size"],
        col(sc::REQUEST_SIZE, Kind::Int, false),
    ),
    (
        &["responseSize", "response_size", "response.size"],
        col(sc::RESPONSE_SIZE, Kind::Int, false),
    ),
    (
        &["node.name", "node", "node_name"],
        col(sc::NODE, Kind::Str, false),
    ),
    (&["capture"], col(sc::CAPTURE, Kind::Str, false)),
    (&["elapsed_us"], col(sc::ELAPSED_US, Kind::Int, true)),
    (&["timestamp"], Field::Timestamp),
    (&["elapsedTime", "elapsed_time"], Field::ElapsedMs),
    (&["src.ip", "src_ip"], col(sc::SRC_IP, Kind::Str, false)),
    (
        &["src.port", "src_port"],
        col(sc::SRC_PORT, Kind::Int, false),
    ),
    (&["src.name", "src_name"], col("src_name", Kind::Str, false)),
    (
        &[
            "src.namespace",
            "src.pod.namespace",
            "src.service.namespace",
            "src_namespace",
        ],
        col("src_namespace", Kind::Str, true),
    ),
    (
        &["src.pod", "src.pod.name", "src_pod"],
        col("src_pod", Kind::Str, true),
    ),
    (
        &["src.service", "src.service.name", "src_service"],
        col("src_service", Kind::Str, true),
    ),
    (
        &["src.workload", "src.workload.name", "src_workload"],
        col("src_workload", Kind::Str, true),
    ),
    (
        &["src.node", "src.node.name", "src_node"],
        col("src_node", Kind::Str, true),
    ),
    (&["dst.ip", "dst_ip"], col(sc::DST_IP, Kind::Str, false)),
    (
        &["dst.port", "dst_port"],
        col(sc::DST_PORT, Kind::Int, false),
    ),
    (&["dst.name", "dst_name"], col("dst_name", Kind::Str, false)),
    (
        &[
            "dst.namespace",
            "dst.pod.namespace",
            "dst.service.namespace",
            "dst_namespace",
        ],
        col("dst_namespace", Kind::Str, true),
    ),
    (
        &["dst.pod", "dst.pod.name", "dst_pod"],
        col("dst_pod", Kind::Str, true),
    ),
    (
        &["dst.service", "dst.service.name", "dst_service"],
        col("dst_service", Kind::Str, true),
    ),
    (
        &["dst.workload", "dst.workload.name", "dst_workload"],
        col("dst_workload", Kind::Str, true),
    ),
    (
        &["dst.node", "dst.node.name", "dst_node"],
        col("dst_node", Kind::Str, true),
    ),
];

/// Every name a user may write, for suggestions and the docs.
pub fn known_names() -> Vec<&'static str> {
    let mut v: Vec<&str> = NAMES.iter().flat_map(|(n, _)| n.iter().copied()).collect();
    v.extend(["request.headers[\"Name\"]", "response.headers[\"Name\"]"]);
    v
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The closest known name (v1 or KFL2 spelling, whichever is nearer), if one is close enough
/// to be a typo. Names longer than any known one are not compared (the distance is quadratic).
pub fn suggest(name: &str) -> Option<String> {
    if name.chars().count() > 64 {
        return None;
    }
    let lower = name.to_ascii_lowercase();
    NAMES
        .iter()
        .flat_map(|(names, _)| names.iter().copied())
        .chain(["request.headers", "response.headers"])
        .chain(MACROS.iter().map(|(m, _)| *m))
        .map(|k| (levenshtein(&lower, &k.to_ascii_lowercase()), k))
        .filter(|(d, k)| *d <= 3.max(k.len() / 4))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k.to_string())
}

/// Resolves a selector; `Err(message)` names what is wrong.
pub fn resolve(segs: &[Seg]) -> Result<Field, String> {
    if let [Seg::Field(side), Seg::Field(h), Seg::Key(name)] = segs {
        if (side == "request" || side == "response") && h == "headers" {
            return Ok(Field::Header {
                response: side == "response",
                name: name.clone(),
            });
        }
    }
    let path = path_string(segs);
    NAMES
        .iter()
        .find(|(names, _)| names.contains(&path.as_str()))
        .map(|(_, f)| f.clone())
        .ok_or_else(|| format!("unknown field `{path}`"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_column_exists_in_the_schema() {
        let schema = sc::entry_schema();
        for (names, f) in NAMES {
            if let Field::Column { name, .. } = f {
                assert!(schema.field_with_name(name).is_ok(), "{names:?} → {name}");
            }
        }
    }

    #[test]
    fn suggestions() {
        assert_eq!(
            suggest("respons.status").as_deref(),
            Some("response.status")
        );
        assert_eq!(suggest("status_cod").as_deref(), Some("status_code"));
        assert_eq!(suggest("dst.namespac").as_deref(), Some("dst.namespace"));
        assert_eq!(suggest("completely.unrelated.thing"), None);
    }
}
