//! KFL selectors → entry columns. v1 names (`response.status`, `src.name`) and KFL2 flat
//! names (`status_code`, `dst.pod.namespace`) resolve to the same promoted columns; other
//! `request.…`/`response.…` paths read the protocol-detail JSON, and `response.body.json()…`,
//! `request.queryString["x"]`, `request.cookies["x"]` read a document made from a column.

use wiretrail_proto::schema as sc;

use super::ast::{path_string, Seg};
use super::jsonpath::Step;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Str,
    Int,
}

/// The text a JSON selector starts from.
#[derive(Debug, Clone, PartialEq)]
pub enum Doc {
    /// The `request` / `response` protocol-detail JSON column.
    Detail { response: bool },
    /// The `request_body` / `response_body` column.
    Body { response: bool },
    /// The `path` column (query string, path segments).
    Path,
    /// A header value (cookies).
    Header { response: bool, name: String },
}

#[derive(Debug, Clone, PartialEq)]
pub enum Field {
    Column {
        name: &'static str,
        kind: Kind,
        nullable: bool,
    },
    /// A column that only means something for one protocol (KFL2 `grpc_status`,
    /// `redis_key` …): NULL on other entries.
    Scoped {
        protocol: &'static str,
        name: &'static str,
        kind: Kind,
    },
    /// A header value by case-insensitive name.
    Header { response: bool, name: String },
    /// The whole headers map, for `"k" in request.headers` and `map_get()`.
    Headers { response: bool },
    /// `ts`, compared with epoch milliseconds, RFC 3339 or datetime().
    Timestamp,
    /// `elapsed_us` in milliseconds.
    ElapsedMs,
    /// Size of a body in bytes (0 without one).
    BodySize { response: bool },
    /// Kafka API names in KFL2 spelling (`PRODUCE`, `API_VERSIONS`) against ours (`Produce`,
    /// `ApiVersions`): both sides are compared uppercased without `_`.
    KafkaApiName,
    /// A path into a document.
    Json { doc: Doc, steps: Vec<Step> },
    /// Either side's column (`namespaces`, `pods`, `services`, v1 `namespace`): a comparison
    /// holds when it holds for one of them.
    AnyOf(&'static [&'static str]),
    /// A v1 name wiretrail does not record (`node.ip`, `worker`): always missing.
    Absent,
    /// A KFL2 variable wiretrail does not record: its KFL2 default (`""`, `0`, `{}`).
    Default(Fallback),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fallback {
    Str,
    Int,
    Map,
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
    ("postgres", "postgres"),
    ("postgresql", "postgres"),
    // Entries of bare L4 connections: wiretrail does not record them, so these match nothing
    // (and the historic default filter `!dns and !tcp and !udp` keeps every L7 entry).
    ("tcp", "tcp"),
    ("udp", "udp"),
    ("icmp", "icmp"),
    ("sctp", "sctp"),
    // KFL2 names for DNS messages: every DNS entry is a request; `dns_response` is computed.
    ("dns_request", "dns"),
];

/// KFL2 protocol flags and L4 tracking flags of protocols wiretrail does not dissect or
/// record: always false, as KFL2 defaults a missing boolean.
pub const FALSE_FLAGS: &[&str] = &[
    "ws", "ldap", "radius", "diameter", "mongodb", "mysql", "conn", "flow", "tcp_conn", "udp_conn",
    "tcp_flow", "udp_flow", "gqlv1", "gqlv2", "has_pcap",
];

/// KFL2 variables wiretrail does not record, with the type of their default.
const DEFAULTS: &[(&str, Fallback)] = &[
    ("src.dns", Fallback::Str),
    ("dst.dns", Fallback::Str),
    ("local_labels", Fallback::Map),
    ("remote_labels", Fallback::Map),
    ("local_annotations", Fallback::Map),
    ("remote_annotations", Fallback::Map),
    ("local_process_name", Fallback::Str),
    ("remote_process_name", Fallback::Str),
    ("local_resolution_status", Fallback::Str),
    ("remote_resolution_status", Fallback::Str),
    ("local_node_name", Fallback::Str),
    ("remote_node_name", Fallback::Str),
    ("dns_resolutions", Fallback::Map),
    ("capture_source", Fallback::Str),
    ("capture_backend", Fallback::Str),
    ("capture_source_code", Fallback::Int),
    ("node_id", Fallback::Str),
    ("conn_id", Fallback::Str),
    ("flow_id", Fallback::Str),
    ("conn_state", Fallback::Str),
    ("conn_local_pkts", Fallback::Int),
    ("conn_remote_pkts", Fallback::Int),
    ("conn_local_bytes", Fallback::Int),
    ("conn_remote_bytes", Fallback::Int),
    ("conn_l7_detected", Fallback::Str),
    ("conn_group_id", Fallback::Int),
    ("flow_state", Fallback::Str),
    ("flow_local_pkts", Fallback::Int),
    ("flow_remote_pkts", Fallback::Int),
    ("flow_local_bytes", Fallback::Int),
    ("flow_remote_bytes", Fallback::Int),
    ("flow_local_pps", Fallback::Int),
    ("flow_remote_pps", Fallback::Int),
    ("flow_local_bps", Fallback::Int),
    ("flow_remote_bps", Fallback::Int),
    ("tcp_method", Fallback::Str),
    ("tcp_payload", Fallback::Str),
    ("tcp_error_type", Fallback::Str),
    ("tcp_error_message", Fallback::Str),
    ("udp_length", Fallback::Int),
    ("udp_checksum", Fallback::Int),
    ("udp_payload", Fallback::Str),
    ("icmp_type", Fallback::Str),
    ("icmp_version", Fallback::Int),
    ("icmp_length", Fallback::Int),
    ("ws_opcode", Fallback::Str),
    ("tls_summary", Fallback::Str),
    ("tls_info", Fallback::Str),
];

/// v1 entry fields wiretrail does not record: always missing (comparisons are false).
const ABSENT: &[&str] = &[
    "node.ip", "node_ip", "worker", "stream", "index", "outgoing", "passed", "failed",
];

/// Keys our dissectors write at the top of the request/response detail, plus v1 detail
/// names; a `request.X` path with X close to a promoted name (a typo such as
/// `response.stauts`) is refused with a suggestion unless X is one of these.
const DETAIL_KEYS: &[&str] = &[
    "version",
    "target",
    "upgrade",
    "chunked",
    "content_encoding",
    "trailers",
    "body_decode_error",
    "incomplete",
    "graphql",
    "tls",
    "stream",
    "pushed",
    "authority",
    "grpc",
    "http_status",
    "duration_us",
    "interim",
    "reset",
    "goaway",
    "data_frames",
    "id",
    "opcode",
    "questions",
    "flags",
    "transport",
    "rcode",
    "rcode_name",
    "truncated",
    "authoritative",
    "answers",
    "authorities",
    "additionals",
    "command",
    "args",
    "argc",
    "type",
    "value",
    "api_key",
    "api_version",
    "correlation_id",
    "client_id",
    "topics",
    "group",
    "acks",
    "error_code",
    "throttle_ms",
    "sender",
    "channel",
    "class",
    "properties",
    "body_size",
    "queue",
    "exchange",
    "routing_key",
    "sni",
    "alpn",
    "parameters",
    "error",
    "columns",
    "rows",
    "command_tags",
    "keyword",
    "query",
    "params",
    "payload",
];

/// v1 document roots: (path, document, steps that start it).
fn doc_roots() -> Vec<(&'static str, Doc, Vec<Step>)> {
    let j = || Step::Decode("json".into());
    let detail = |response| Doc::Detail { response };
    vec![
        ("response.body", Doc::Body { response: true }, vec![]),
        (
            "response.content.text",
            Doc::Body { response: true },
            vec![],
        ),
        ("request.body", Doc::Body { response: false }, vec![]),
        (
            "request.postData.text",
            Doc::Body { response: false },
            vec![],
        ),
        (
            "request.postData.params",
            Doc::Body { response: false },
            vec![Step::Decode("form".into())],
        ),
        (
            "request.queryString",
            Doc::Path,
            vec![Step::Decode("query".into())],
        ),
        (
            "request.pathSegments",
            Doc::Path,
            vec![Step::Decode("segments".into())],
        ),
        (
            "query_string",
            Doc::Path,
            vec![Step::Decode("querytext".into())],
        ),
        (
            "request.cookies",
            Doc::Header {
                response: false,
                name: "cookie".into(),
            },
            vec![Step::Decode("cookies".into())],
        ),
        (
            "response.cookies",
            Doc::Header {
                response: true,
                name: "set-cookie".into(),
            },
            vec![Step::Decode("setcookie".into())],
        ),
        (
            "request.httpVersion",
            detail(false),
            vec![j(), Step::Field("version".into())],
        ),
        (
            "http_version",
            detail(false),
            vec![j(), Step::Field("version".into())],
        ),
        (
            "response.httpVersion",
            detail(true),
            vec![j(), Step::Field("version".into())],
        ),
        (
            "request.opCode",
            detail(false),
            vec![j(), Step::Field("opcode".into())],
        ),
        (
            "request.clientID",
            detail(false),
            vec![j(), Step::Field("client_id".into())],
        ),
        (
            "kafka_client_id",
            detail(false),
            vec![j(), Step::Field("client_id".into())],
        ),
        (
            "kafka_api_key",
            detail(false),
            vec![j(), Step::Field("api_key".into())],
        ),
        (
            "request.routingKey",
            detail(false),
            vec![j(), Step::Field("routing_key".into())],
        ),
        (
            "request.value",
            detail(false),
            vec![j(), Step::Field("args".into()), Step::Index(1)],
        ),
        (
            "response.payload.errorCode",
            detail(true),
            vec![j(), Step::Field("error_code".into())],
        ),
        ("request.payload", detail(false), vec![j()]),
        ("response.payload", detail(true), vec![j()]),
        (
            "dns_answers",
            detail(true),
            vec![
                j(),
                Step::Field("answers".into()),
                Step::Wildcard,
                Step::Field("data".into()),
            ],
        ),
        (
            "dns_questions",
            detail(false),
            vec![
                j(),
                Step::Field("questions".into()),
                Step::Wildcard,
                Step::Field("name".into()),
                Step::Decode("dnsname".into()),
            ],
        ),
    ]
}
const fn scoped(protocol: &'static str, name: &'static str, kind: Kind) -> Field {
    Field::Scoped {
        protocol,
        name,
        kind,
    }
}

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
        &[
            "request.method",
            "method",
            "request.command",
            "request.apiKeyName",
        ],
        col(sc::METHOD, Kind::Str, true),
    ),
    (
        &[
            "request.path",
            "path",
            "request.url",
            "url",
            "request.targetUri",
            "request.key",
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
        &["node.name", "node", "node_name", "node[\"name\"]"],
        col(sc::NODE, Kind::Str, false),
    ),
    (&["capture"], col(sc::CAPTURE, Kind::Str, false)),
    (
        &["elapsed_us", "elapsed_time"],
        col(sc::ELAPSED_US, Kind::Int, true),
    ),
    (&["timestamp"], Field::Timestamp),
    (&["elapsedTime"], Field::ElapsedMs),
    (
        &["request.bodySize", "request_body_size"],
        Field::BodySize { response: false },
    ),
    (
        &["response.bodySize", "response_body_size"],
        Field::BodySize { response: true },
    ),
    (&["kafka_api_key_name"], Field::KafkaApiName),
    (
        &["namespaces", "namespace"],
        Field::AnyOf(&["src_namespace", "dst_namespace"]),
    ),
    (&["pods"], Field::AnyOf(&["src_pod", "dst_pod"])),
    (&["services"], Field::AnyOf(&["src_service", "dst_service"])),
    (&["grpc_status"], scoped("grpc", sc::STATUS, Kind::Int)),
    (&["grpc_method"], scoped("grpc", sc::METHOD, Kind::Str)),
    (&["redis_key"], scoped("redis", sc::PATH, Kind::Str)),
    (&["redis_command"], scoped("redis", sc::METHOD, Kind::Str)),
    (&["amqp_method"], scoped("amqp", sc::METHOD, Kind::Str)),
    (
        &["dns_question_types"],
        scoped("dns", sc::METHOD, Kind::Str),
    ),
    (
        &["postgresql_command"],
        scoped("postgres", sc::METHOD, Kind::Str),
    ),
    (
        &["postgresql_query"],
        scoped("postgres", sc::PATH, Kind::Str),
    ),
    (
        &["postgresql_error_code"],
        scoped("postgres", sc::STATUS_TEXT, Kind::Str),
    ),
    // KFL2 per-protocol sizes: the entry's sizes, on that protocol's entries only.
    (
        &["dns_request_length"],
        scoped("dns", sc::REQUEST_SIZE, Kind::Int),
    ),
    (
        &["dns_response_length"],
        scoped("dns", sc::RESPONSE_SIZE, Kind::Int),
    ),
    (
        &["redis_request_size"],
        scoped("redis", sc::REQUEST_SIZE, Kind::Int),
    ),
    (
        &["redis_response_size"],
        scoped("redis", sc::RESPONSE_SIZE, Kind::Int),
    ),
    (
        &["kafka_request_size"],
        scoped("kafka", sc::REQUEST_SIZE, Kind::Int),
    ),
    (
        &["kafka_response_size"],
        scoped("kafka", sc::RESPONSE_SIZE, Kind::Int),
    ),
    (
        &["amqp_request_size"],
        scoped("amqp", sc::REQUEST_SIZE, Kind::Int),
    ),
    (
        &["amqp_response_size"],
        scoped("amqp", sc::RESPONSE_SIZE, Kind::Int),
    ),
    (
        &["postgresql_request_size"],
        scoped("postgres", sc::REQUEST_SIZE, Kind::Int),
    ),
    (
        &["postgresql_response_size"],
        scoped("postgres", sc::RESPONSE_SIZE, Kind::Int),
    ),
    (
        &["tls_request_size"],
        scoped("tls", sc::REQUEST_SIZE, Kind::Int),
    ),
    (
        &["tls_response_size"],
        scoped("tls", sc::RESPONSE_SIZE, Kind::Int),
    ),
    (&["request.headers"], Field::Headers { response: false }),
    (&["response.headers"], Field::Headers { response: true }),
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

fn to_steps(segs: &[Seg]) -> Vec<Step> {
    segs.iter()
        .map(|s| match s {
            Seg::Field(f) => Step::Field(f.clone()),
            Seg::Index(i) => Step::Index(*i),
            Seg::Key(k) => Step::Key(k.clone()),
            Seg::Wildcard => Step::Wildcard,
            Seg::Recursive(n) => Step::Recursive(n.clone()),
            Seg::Decode(d) => Step::Decode(d.to_string()),
        })
        .collect()
}

/// The longest prefix of `segs` that renders as one of `names`, and its length.
fn prefix_len(segs: &[Seg], name: &str) -> Option<usize> {
    (1..=segs.len())
        .rev()
        .find(|n| path_string(&segs[..*n]) == name)
}

/// Resolves a selector; `Err(message)` names what is wrong.
pub fn resolve(segs: &[Seg]) -> Result<Field, String> {
    let path = path_string(segs);
    if let Some((_, f)) = NAMES
        .iter()
        .find(|(names, _)| names.contains(&path.as_str()))
    {
        return Ok(f.clone());
    }
    if let [Seg::Field(side), Seg::Field(h), Seg::Key(name), rest @ ..] = segs {
        if (side == "request" || side == "response") && h == "headers" {
            let response = side == "response";
            if rest.is_empty() {
                return Ok(Field::Header {
                    response,
                    name: name.clone(),
                });
            }
            return Ok(Field::Json {
                doc: Doc::Header {
                    response,
                    name: name.clone(),
                },
                steps: to_steps(rest),
            });
        }
    }
    if let [Seg::Field(side), Seg::Field(h), Seg::Field(name)] = segs {
        if (side == "request" || side == "response") && h == "headers" {
            return Ok(Field::Header {
                response: side == "response",
                name: name.clone(),
            });
        }
    }
    if path == "response.content.mimeType" {
        return Ok(Field::Header {
            response: true,
            name: "content-type".into(),
        });
    }
    if ABSENT.contains(&path.as_str()) {
        return Ok(Field::Absent);
    }
    if let Some((_, d)) = DEFAULTS.iter().find(|(n, _)| *n == path) {
        return Ok(Field::Default(*d));
    }
    // Longest document root first (`response.payload.errorCode` before `response.payload`).
    let mut best: Option<(usize, Doc, Vec<Step>)> = None;
    for (name, doc, steps) in doc_roots() {
        if let Some(n) = prefix_len(segs, name) {
            if best.as_ref().is_none_or(|(b, _, _)| n > *b) {
                best = Some((n, doc, steps));
            }
        }
    }
    if let Some((n, doc, mut steps)) = best {
        steps.extend(to_steps(&segs[n..]));
        return Ok(Field::Json { doc, steps });
    }
    if let [Seg::Field(side), first, rest @ ..] = segs {
        if side == "request" || side == "response" {
            if let Seg::Field(key) = first {
                let promoted = format!("{side}.{key}");
                if NAMES.iter().any(|(n, _)| n.contains(&promoted.as_str())) {
                    return Err(format!(
                        "`{promoted}` is a single value: `{path}` does not exist"
                    ));
                }
                if !DETAIL_KEYS.contains(&key.as_str()) {
                    let near = NAMES
                        .iter()
                        .flat_map(|(n, _)| n.iter())
                        .filter_map(|n| n.strip_prefix(side.as_str())?.strip_prefix('.'))
                        .filter(|n| !n.contains('.') && !n.contains('['))
                        .any(|n| {
                            let d = levenshtein(&key.to_ascii_lowercase(), &n.to_ascii_lowercase());
                            d > 0 && d <= 2
                        });
                    if near {
                        return Err(format!("unknown field `{path}`"));
                    }
                }
            }
            let mut steps = vec![Step::Decode("json".into())];
            steps.extend(to_steps(std::slice::from_ref(first)));
            steps.extend(to_steps(rest));
            return Ok(Field::Json {
                doc: Doc::Detail {
                    response: side == "response",
                },
                steps,
            });
        }
    }
    Err(format!("unknown field `{path}`"))
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
