//! Every example query of the reference (`../shared/reference/kubeshark.md` §1.10), verbatim:
//! each parses; each that names only what wiretrail records compiles; the rest (generic JSON
//! documents such as `brand.name`, fields we do not record such as `id == 114906`) fail with a
//! positioned "unknown field" error. Row-level results on the corpus are in `tests/e2e_kfl.rs`
//! and `tests_eval.rs`.

use super::tests::opts;
use super::*;

/// (query, compiles). Multi-line examples keep their line breaks.
const V1: &[(&str, bool)] = &[
    (r#"http and response.status == r"4.*""#, true),
    // `request.query.a` is the docs' generic example; ours is `request.queryString["a"]`.
    (r#"http and request.method == "GET" and request.path != "/example" and (request.query.a > 42 or request.headers["x"] == "y")"#, true),
    (r#"brand.name.startsWith("Chev")"#, false),
    (r#"brand.name.endsWith("let")"#, false),
    (r#"brand.name.contains("ro")"#, false),
    (r#"timestamp > datetime("10/19/2021, 6:29:02 PM")"#, true),
    (r#"timestamp > datetime("10/19/2021, 6:29:02.000 PM")"#, true),
    (r#"request.path.* == "v1""#, false),
    (r#"request.path.* == "v2""#, false),
    (r#"request.path.* != "v2""#, false),
    (r#"request.path.* > 2"#, false),
    (r#"request.path.* > 4"#, false),
    (r#"request.path.* == response.header.*"#, false),
    (r#"year == salesYear"#, false),
    (r#"year != salesYear"#, false),
    (r#"http and request.path == "/catalogue""#, true),
    (r#"http and request.headers["Accept"] == r"application/json.*""#, true),
    (r#"http and response.status >= 400"#, true),
    (r#"timestamp < datetime("10/28/2021, 9:13:02.905 PM")"#, true),
    ("(http and request.method == \"PUT\") or (amqp and request.queue.startsWith(\"test\"))\n or (kafka and response.payload.errorCode == 2) or (redis and request.key == \"example\")\n or (grpc and request.headers[\":path\"] == r\".*foo.*\")", true),
    // `request.query["x"]` is generic JSON too; `request.queryString["x"]` is the HTTP form.
    ("http and (request.query[\"x\"] == response.headers[\"y\"]\n or response.content.text.contains(request.query[\"x\"]))", true),
    (r#"response.content.text.json().some.path == "somevalue""#, true),
    (r#"http and redact("request.path", "src.name")"#, true),
    (r#"http and limit(100)"#, true),
    (r#"response.body.json()..name == "Chevrolet""#, true),
    (r#"response.body.xml().bookstore.book[1].title == "Harry Potter""#, true),
    (r#"redact("model", "..name") and id == 114906"#, false),
    (r#"model == nil"#, false),
    (r#"true and !(5 == a)"#, false),
    (r#"brand["name"].startsWithx("Chev")"#, false),
    (r#"timestamp >= seconds(-5)"#, true),
    (r#"timestamp <= now()"#, true),
    ("(response.status == 500) and \n(request.headers[\"User-Agent\"] == \"kube-probe/1.27+\") and \n(src.name == \"kube-prometheus-stack-prometheus-node-exporter\")", true),
    (r#"response.status > 400 or error or icmp or tcp"#, true),
    (r#"dst.namespace=="""#, true),
    (r#"(src.namespace=="ns1" and dst.namespace=="ns2") or (src.namespace=="ns2" and dst.namespace=="ns1")"#, true),
    (r#"dst.name=="www.domain.com""#, true),
    (r#"gql and (src.name == "my-pod-name" or dst.name == "my-pod-name")"#, true),
    (r#"request.headers["Authorization"] == r"Token.*" and src.ip != "192.168.49.2""#, true),
    (r#"http and (response.status==500)"#, true),
    (r#"dns"#, true),
    (r#"response.status > 300 and node.name == "ip-10-0-41-65.ec2.internal""#, true),
    (r#"!dns and !tcp"#, true),
    (r#"!dns and !tcp and !udp and !icmp"#, true),
    (r#"!dns and !error"#, true),
    (r#"tls and (http or http2)"#, true),
    ("!request.path.startsWith(\"/actuator\") and \n!request.path.startsWith(\"/health\") and \n!request.path.startsWith(\"/metrics\") and \n!request.path.startsWith(\"/ready\") and \n!request.path.startsWith(\"/live\") and \n!request.path.startsWith(\"/favicon\") and \nhttp and \ndst.name != \"pgadmin.development\"", true),
    (r#"src.namespace == "something""#, true),
    (r#"src.namespace == r"something*""#, true),
];

const KFL2: &[&str] = &[
    r#"http && method == "GET" && status_code >= 400"#,
    r#"dst.pod.namespace == "production""#,
    r#"dns && "google.com" in dns_questions"#,
    r#"grpc && grpc_status != 0"#,
    r#"http && elapsed_time > 5000000"#,
    r#"timestamp > now() - duration("5m")"#,
    r#"src.ip.startsWith("192.168.")"#,
    r#"dst.port >= 8000 && dst.port <= 9000"#,
    r#""production" in namespaces"#,
    r#"map_get(local_labels, "app", "") == "payments""#,
    r#"http && "authorization" in request.headers"#,
    r#"http && request.headers["content-type"] == "application/json""#,
    r#"http && url.matches(".*/api/v[0-9]+/.*")"#,
    r#"dns && dns_response && status_code != 0"#,
    r#"dns && dns_response && size(dns_answers) > 0"#,
    r#"dst.dns != "" && !dst.dns.endsWith(".internal")"#,
    r#"redis && redis_key.startsWith("session:")"#,
    r#"kafka && kafka_api_key_name == "PRODUCE""#,
    r#"conn && conn_state == "open" && conn_local_bytes > 1000000"#,
    r#"tcp_flow && flow_local_bps > 5000000"#,
    r#"!(src.pod.namespace == "kube-system")"#,
    r#"timestamp >= timestamp("2026-03-14T22:00:00Z") && timestamp <= timestamp("2026-03-14T23:00:00Z")"#,
    r#"http && status_code >= 500 || (tcp && tcp_error_type != "")"#,
    r#"src.service.namespace != dst.service.namespace"#,
    r#"capture_source == "ebpf_tls""#,
    r#"timestamp >= now()"#,
    r#"postgresql && postgresql_error_code != """#,
];

fn parses(q: &str) -> Result<(), KflError> {
    let toks = lexer::lex(q)?;
    parser::Parser::new(toks, q).parse().map(|_| ())
}

#[test]
fn every_reference_example_parses_and_compiles_where_we_record_the_fields() {
    for (q, compiles) in V1 {
        if let Err(e) = parses(q) {
            panic!("{q:?} does not parse: {}", e.render(q));
        }
        match (compile(q, &opts()), compiles) {
            (Ok(_), true) => {}
            (Err(e), false) => {
                assert!(
                    e.message.contains("unknown") || e.message.contains("does not exist"),
                    "{q:?}: {e:?}"
                );
                assert!(e.position < q.chars().count(), "{q:?}: {e:?}");
            }
            (Ok(_), false) => panic!("{q:?} should not compile"),
            (Err(e), true) => panic!("{q:?} should compile: {}", e.render(q)),
        }
    }
    for q in KFL2 {
        if let Err(e) = compile(q, &opts()) {
            panic!("{q:?} should compile: {}", e.render(q));
        }
    }
    assert_eq!(V1.len() + KFL2.len(), 76);
}

#[test]
fn generic_json_examples_run_on_bodies() {
    // §1.10 #3, #6–#9, #18, #20 name generic documents; prefixed with a body decoder they are
    // the same queries over a JSON body (evaluated in tests_eval.rs).
    for q in [
        r#"response.body.json().brand.name.startsWith("Chev")"#,
        r#"response.body.json().request.path.* == "v1""#,
        r#"response.body.json().request.path.* > 2"#,
        r#"response.body.json().request.path.* == response.body.json().response.header.*"#,
        r#"response.body.json().year == response.body.json().salesYear"#,
        r#"response.body.json().model == nil"#,
        r#"response.body.json()["brand"]["name"].startsWith("Chev")"#,
    ] {
        if let Err(e) = compile(q, &opts()) {
            panic!("{q:?}: {}", e.render(q));
        }
    }
}

/// Reference §1.8, every field name the Kubeshark UI and docs use, verbatim: each resolves (a
/// promoted column, a header, the protocol detail, a body, or a name we do not record and
/// treat as missing).
#[test]
fn every_v1_field_name_resolves() {
    let fields = [
        "protocol.name",
        "protocol.abbr",
        "capture",
        "src.ip",
        "src.port",
        "src.name",
        "dst.ip",
        "dst.port",
        "dst.name",
        "namespace",
        "src.namespace",
        "dst.namespace",
        "node.name",
        "node.ip",
        "worker",
        "stream",
        "index",
        "outgoing",
        "timestamp",
        "elapsedTime",
        "requestSize",
        "responseSize",
        "passed",
        "failed",
        // HTTP
        "request.method",
        "request.path",
        "request.pathSegments",
        "request.url",
        "request.targetUri",
        "request.httpVersion",
        r#"request.headers["X"]"#,
        r#"request.cookies["X"]"#,
        r#"request.queryString["X"]"#,
        "request.postData.text",
        "request.postData.params",
        "request.bodySize",
        "response.status",
        "response.statusText",
        r#"response.headers["X"]"#,
        r#"response.cookies["X"]"#,
        "response.content.text",
        "response.content.mimeType",
        "response.bodySize",
        // gRPC, DNS, Redis, Kafka, AMQP
        r#"request.headers[":path"]"#,
        "request.opCode",
        "request.questions[0].name",
        "response.code",
        "response.answers",
        "request.type",
        "request.command",
        "request.key",
        "request.value",
        "request.keyword",
        "request.apiKeyName",
        "request.clientID",
        "request.payload.*",
        "response.payload.errorCode",
        "request.queue",
        "request.exchange",
        "request.routingKey",
        r#"request.properties.headers["X"]"#,
    ];
    for f in fields {
        let q = format!("{f} == \"1\"");
        if let Err(e) = compile(&q, &opts()) {
            panic!("{q:?}: {}", e.render(&q));
        }
    }
    for flag in [
        "tls", "error", "http", "http2", "grpc", "gql", "redis", "kafka", "amqp", "dns", "tcp",
        "udp", "icmp", "https",
    ] {
        compile(flag, &opts()).unwrap_or_else(|e| panic!("{flag}: {e}"));
    }
}

/// Reference §1.9 variables our entries can answer.
#[test]
fn kfl2_variables_resolve() {
    for v in [
        "status_code",
        "method",
        "path",
        "url",
        "protocol",
        "src.ip",
        "dst.port",
        "src.pod.name",
        "dst.pod.namespace",
        "src.service.name",
        "dst.service.namespace",
        "src.name",
        "dst.namespace",
        "node_name",
        r#"node["name"]"#,
        "timestamp",
        "elapsed_time",
        "http_version",
        "query_string",
        "request_body_size",
        "response_body_size",
        "grpc_method",
        "grpc_status",
        "dns_question_types",
        "redis_command",
        "redis_key",
        "kafka_api_key",
        "kafka_api_key_name",
        "kafka_client_id",
        "amqp_method",
        "postgresql_command",
        "postgresql_query",
        "postgresql_error_code",
        "dns_request_length",
        "redis_request_size",
        "kafka_response_size",
    ] {
        let q = format!("{v} == \"1\" || {v} != \"1\"");
        if let Err(e) = compile(&q, &opts()) {
            panic!("{q:?}: {}", e.render(&q));
        }
    }
    for v in [
        "namespaces",
        "pods",
        "services",
        "dns_questions",
        "dns_answers",
        "request.headers",
        "response.headers",
        "request.cookies",
        "local_labels",
    ] {
        let q = format!("\"a\" in {v} && size({v}) >= 0");
        if matches!(v, "request.headers" | "response.headers") {
            let q = format!("\"a\" in {v} && map_get({v}, \"a\", \"\") == \"\"");
            compile(&q, &opts()).unwrap_or_else(|e| panic!("{q}: {e}"));
            continue;
        }
        compile(&q, &opts()).unwrap_or_else(|e| panic!("{q}: {e}"));
    }
    for flag in [
        "dns_request",
        "dns_response",
        "conn",
        "flow",
        "tcp_flow",
        "ws",
        "mysql",
        "has_pcap",
    ] {
        compile(flag, &opts()).unwrap_or_else(|e| panic!("{flag}: {e}"));
    }
}
