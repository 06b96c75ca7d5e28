//! KFL evaluated by DataFusion over entries built here, against a straightforward reference
//! evaluation of each query written as a Rust predicate over the same entries.

use std::sync::Arc;

use arrow::array::AsArray;
use arrow::datatypes::TimestampMicrosecondType;
use datafusion::datasource::MemTable;
use datafusion::prelude::{col, SessionContext};
use serde_json::{json, Value};
use wiretrail_proto::{schema, Endpoint, Entry, EntryBatchBuilder, EntryId, Identity};

use super::tests::{opts, NOW};
use super::*;

const T0: i64 = 1_795_576_364_000_000; // 2026-11-25T03:12:44Z in µs

struct E {
    e: Entry,
    req: Value,
    resp: Value,
}

fn ep(
    ip: &str,
    port: u16,
    name: &str,
    ns: Option<&str>,
    pod: Option<&str>,
    svc: Option<&str>,
) -> Endpoint {
    Endpoint {
        ip: ip.into(),
        port,
        identity: Identity {
            name: name.into(),
            namespace: ns.map(Into::into),
            pod: pod.map(Into::into),
            service: svc.map(Into::into),
            workload: None,
            node: Some("node-a".into()),
        },
    }
}

#[allow(clippy::too_many_arguments)]
fn entry(
    i: i64,
    proto: &str,
    method: &str,
    path: &str,
    status: Option<i32>,
    status_text: Option<&str>,
    req: Value,
    resp: Value,
) -> E {
    let mut e = Entry::new(
        EntryId([i as u8; 16]),
        T0 + i * 1_000_000,
        if i % 3 == 0 { "node-b" } else { "node-a" },
        proto,
        "pcap",
    );
    e.method = (!method.is_empty()).then(|| method.to_string());
    e.path = (!path.is_empty()).then(|| path.to_string());
    e.status = status;
    e.status_text = status_text.map(Into::into);
    e.elapsed_us = status.map(|_| 1000 * (i * 70));
    e.request_size = 100 + i as u64;
    e.response_size = 1000 * i as u64;
    e.request = (!req.is_null()).then(|| req.to_string());
    e.response = (!resp.is_null()).then(|| resp.to_string());
    let (sns, dns) = match i % 4 {
        0 => (Some("shop"), Some("infra")),
        1 => (Some("shop"), Some("shop")),
        2 => (None, Some("infra")),
        _ => (Some("kube-system"), None),
    };
    e.src = ep(
        &format!("10.0.0.{i}"),
        40000 + i as u16,
        &format!("pod-{i}"),
        sns,
        Some(&format!("pod-{i}")),
        None,
    );
    e.dst = ep(
        "10.0.1.1",
        [8080, 53, 6379, 9092][(i % 4) as usize],
        "api-1",
        dns,
        Some("api-1"),
        (i % 2 == 0).then_some("api"),
    );
    E { e, req, resp }
}

fn corpus() -> Vec<E> {
    let mut v = vec![
        entry(
            0,
            "http",
            "GET",
            "/api/v1/orders?id=7&x=a",
            Some(200),
            Some("OK"),
            json!({"version": "HTTP/1.1", "target": "/api/v1/orders?id=7&x=a"}),
            json!({"version": "HTTP/1.1"}),
        ),
        entry(
            1,
            "http",
            "POST",
            "/api/v1/orders",
            Some(201),
            Some("Created"),
            json!({"version": "HTTP/1.1"}),
            json!({}),
        ),
        entry(
            2,
            "http",
            "GET",
            "/healthz",
            Some(404),
            Some("Not Found"),
            json!({"version": "HTTP/1.0"}),
            Value::Null,
        ),
        entry(
            3,
            "http",
            "DELETE",
            "/api/v2/items/9",
            Some(500),
            Some("Internal Server Error"),
            json!({"version": "HTTP/1.1"}),
            json!({}),
        ),
        entry(
            4,
            "http2",
            "GET",
            "/static/app.js",
            Some(204),
            None,
            json!({"version": "HTTP/2", "stream": 3, "authority": "shop.local"}),
            json!({}),
        ),
        entry(
            5,
            "grpc",
            "/shop.Cart/Add",
            "/shop.Cart/Add",
            Some(5),
            Some("not found"),
            json!({"grpc": {"service": "shop.Cart", "method": "Add"}}),
            json!({"grpc": {"status": 5}}),
        ),
        entry(
            6,
            "dns",
            "A",
            "google.com",
            Some(0),
            Some("NOERROR"),
            json!({"id": 1, "opcode": 0, "questions": [{"name": "google.com.", "qtype": "A"}], "transport": "udp"}),
            json!({"rcode": 0, "answers": [{"name": "google.com.", "rtype": "A", "ttl": 30, "data": "142.250.1.1"}, {"name": "google.com.", "rtype": "A", "ttl": 30, "data": "142.250.1.2"}]}),
        ),
        entry(
            7,
            "dns",
            "AAAA",
            "missing.cluster.local",
            Some(3),
            Some("NXDOMAIN"),
            json!({"id": 2, "opcode": 0, "questions": [{"name": "missing.cluster.local.", "qtype": "AAAA"}], "transport": "tcp"}),
            json!({"rcode": 3, "answers": []}),
        ),
        entry(
            8,
            "redis",
            "GET",
            "cart:1",
            Some(0),
            Some("OK"),
            json!({"command": "GET", "args": ["cart:1"], "argc": 2}),
            json!({"type": "bulk", "value": "3"}),
        ),
        entry(
            9,
            "redis",
            "SET",
            "session:9",
            Some(1),
            Some("WRONGTYPE"),
            json!({"command": "SET", "args": ["session:9", "v-9"], "argc": 3}),
            json!({"type": "error", "value": {"error": "WRONGTYPE"}}),
        ),
        entry(
            10,
            "kafka",
            "Produce",
            "orders",
            Some(2),
            Some("CORRUPT_MESSAGE"),
            json!({"api_key": 0, "api_version": 7, "client_id": "rdkafka", "topics": [{"name": "orders", "partitions": [0, 1]}]}),
            json!({"error_code": 2, "topics": [{"name": "orders"}]}),
        ),
        entry(
            11,
            "kafka",
            "ApiVersions",
            "",
            Some(0),
            None,
            json!({"api_key": 18, "client_id": "kcat", "topics": []}),
            json!({"error_code": 0}),
        ),
        entry(
            12,
            "amqp",
            "basic.publish",
            "orders",
            None,
            None,
            json!({"method": "publish", "exchange": "", "routing_key": "orders", "properties": {"headers": {"x-tenant": "acme", "n": 7}}}),
            Value::Null,
        ),
        entry(
            13,
            "amqp",
            "queue.declare",
            "test-q",
            Some(200),
            None,
            json!({"method": "declare", "queue": "test-q"}),
            json!({"queue": "test-q"}),
        ),
        entry(
            14,
            "tls",
            "handshake",
            "secure.example",
            Some(0),
            Some("TLS 1.3"),
            json!({"sni": "secure.example", "alpn": ["h2"]}),
            json!({}),
        ),
        entry(
            15,
            "http",
            "GET",
            "/account",
            Some(302),
            Some("Found"),
            json!({"version": "HTTP/1.1", "tls": {"sni": "secure.example", "decrypted": true}}),
            json!({}),
        ),
        entry(
            16,
            "postgres",
            "SELECT",
            "select * from nope",
            Some(1),
            Some("42P01"),
            json!({"query": "select * from nope"}),
            json!({"error": {"code": "42P01"}}),
        ),
        entry(
            17,
            "graphql",
            "POST",
            "/graphql",
            Some(200),
            Some("OK"),
            json!({"graphql": {"operation_type": "query", "operation_name": "Books"}}),
            json!({"graphql": {"errors": 0}}),
        ),
    ];
    let h = |pairs: &[(&str, &str)]| {
        Some(
            pairs
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect::<Vec<_>>(),
        )
    };
    v[0].e.request_headers = h(&[
        ("Authorization", "Token tk_live_1"),
        ("User-Agent", "curl/7.88.1"),
        ("Cookie", "sid=abc; theme=dark"),
        ("Accept", "application/json"),
    ]);
    v[0].e.response_headers = h(&[
        ("Content-Type", "application/json"),
        ("Set-Cookie", "sid=abc; Path=/"),
    ]);
    v[0].e.response_body = Some(br#"{"brand":{"name":"Chevrolet"},"items":[{"name":"a","price":3},{"name":"b","price":12}],"year":2021,"salesYear":2021}"#.to_vec());
    v[1].e.request_headers = h(&[
        ("authorization", "Bearer abc.def"),
        ("User-Agent", "python-requests/2.31"),
        ("Content-Type", "application/x-www-form-urlencoded"),
    ]);
    v[1].e.request_body = Some(b"user=ann&password=s3cret&tag=a&tag=b".to_vec());
    v[1].e.response_body = Some(b"<bookstore><book><title>A</title></book><book lang=\"en\"><title>Harry Potter</title></book></bookstore>".to_vec());
    v[2].e.request_headers = h(&[("User-Agent", "kube-probe/1.27+")]);
    v[3].e.request_headers = h(&[
        ("Authorization", "Basic dXNlcjpwdw=="),
        ("User-Agent", "curl/8.0"),
    ]);
    v[3].e.response_body = Some(vec![0xff, 0xfe, 0x00, b'{']);
    v[4].e.request_headers = h(&[
        (":method", "GET"),
        (":path", "/static/app.js"),
        ("content-type", "application/json"),
    ]);
    v[5].e.request_headers = h(&[
        (":path", "/shop.Cart/Add"),
        ("content-type", "application/grpc"),
    ]);
    v[15].e.request_headers = h(&[("Authorization", "Token other")]);
    v
}

/// Runs a compiled query over the corpus; the indices of the matching entries.
fn run(ctx: &SessionContext, rt: &tokio::runtime::Runtime, q: &str) -> Result<Vec<usize>, String> {
    let c = compile(q, &opts()).map_err(|e| e.render(q))?;
    rt.block_on(async {
        let mut df = ctx.table("entries").await.map_err(|e| e.to_string())?;
        if let Some(f) = c.filter {
            df = df.filter(f).map_err(|e| e.to_string())?;
        }
        let batches = df
            .select(vec![col(schema::TS)])
            .map_err(|e| e.to_string())?
            .collect()
            .await
            .map_err(|e| format!("{q}: {e}"))?;
        let mut out: Vec<usize> = batches
            .iter()
            .flat_map(|b| {
                let ts = b
                    .column(0)
                    .as_primitive::<TimestampMicrosecondType>()
                    .clone();
                (0..b.num_rows()).map(move |i| ((ts.value(i) - T0) / 1_000_000) as usize)
            })
            .collect();
        out.sort();
        Ok(out)
    })
}

fn setup() -> (SessionContext, tokio::runtime::Runtime, Vec<E>) {
    let rows = corpus();
    let mut b = EntryBatchBuilder::new();
    for r in &rows {
        b.push(&r.e);
    }
    let batch = b.finish().unwrap();
    let ctx = SessionContext::new();
    for u in udfs() {
        ctx.register_udf(u);
    }
    let table = MemTable::try_new(batch.schema(), vec![vec![batch]]).unwrap();
    ctx.register_table("entries", Arc::new(table)).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    (ctx, rt, rows)
}

fn hdr<'a>(e: &'a Entry, resp: bool, name: &str) -> Option<&'a str> {
    let hs = if resp {
        &e.response_headers
    } else {
        &e.request_headers
    };
    hs.as_ref()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn s(o: &Option<String>) -> &str {
    o.as_deref().unwrap_or("")
}

type Pred = Box<dyn Fn(&E) -> bool>;

#[test]
fn queries_match_a_reference_evaluation() {
    let (ctx, rt, rows) = setup();
    let http_family = |x: &E| ["http", "http2", "graphql"].contains(&x.e.protocol.as_str());
    let status = |x: &E| x.e.status;
    let cases: Vec<(&str, Pred)> = vec![
        ("", Box::new(|_| true)),
        ("http", Box::new(|x| x.e.protocol == "http")),
        ("http2", Box::new(|x| x.e.protocol == "http2")),
        ("grpc", Box::new(|x| x.e.protocol == "grpc")),
        ("gql", Box::new(|x| x.e.protocol == "graphql")),
        ("redis", Box::new(|x| x.e.protocol == "redis")),
        ("kafka", Box::new(|x| x.e.protocol == "kafka")),
        ("amqp", Box::new(|x| x.e.protocol == "amqp")),
        ("dns", Box::new(|x| x.e.protocol == "dns")),
        ("tcp or udp or icmp", Box::new(|_| false)),
        ("!dns and !tcp", Box::new(|x| x.e.protocol != "dns")),
        ("!dns and !tcp and !udp and !icmp", Box::new(|x| x.e.protocol != "dns")),
        ("tls", Box::new(|x| x.e.protocol == "tls" || x.req.get("tls").is_some())),
        ("https", Box::new(|x| x.req.get("tls").is_some() && x.e.protocol == "http")),
        ("tls and (http or http2)", Box::new(|x| x.req.get("tls").is_some() && x.e.protocol.starts_with("http"))),
        ("error", Box::new(move |x| match status(x) {
            None => false,
            Some(st) if http_family(x) => st >= 500,
            Some(st) if x.e.protocol == "amqp" => st != 200 && st != 0,
            Some(st) => st != 0,
        })),
        ("!dns and !error", Box::new(move |x| x.e.protocol != "dns" && !match status(x) {
            None => false,
            Some(st) if http_family(x) => st >= 500,
            Some(st) if x.e.protocol == "amqp" => st != 200 && st != 0,
            Some(st) => st != 0,
        })),
        ("protocol.abbr == \"HTTP/2\" or protocol.name == \"DNS\"", Box::new(|x| x.e.protocol == "http2" || x.e.protocol == "dns")),
        ("http and response.status == r\"4.*\"", Box::new(|x| x.e.protocol == "http" && x.e.status.is_some_and(|s| s.to_string().contains('4')))),
        ("http and response.status >= 400", Box::new(|x| x.e.protocol == "http" && x.e.status >= Some(400))),
        ("response.status > 400 or error or icmp or tcp", Box::new(|x| x.e.status.is_some_and(|s| s > 400) || match x.e.status {
            None => false,
            Some(st) if ["http", "http2", "graphql"].contains(&x.e.protocol.as_str()) => st >= 500,
            Some(st) if x.e.protocol == "amqp" => st != 200 && st != 0,
            Some(st) => st != 0,
        })),
        ("http && method == \"GET\" && status_code >= 400", Box::new(|x| x.e.protocol == "http" && s(&x.e.method) == "GET" && x.e.status >= Some(400))),
        ("response.status == \"200\"", Box::new(|x| x.e.status == Some(200))),
        ("!(response.status == 200)", Box::new(|x| x.e.status != Some(200))),
        ("response.status != 200", Box::new(|x| x.e.status.is_some_and(|s| s != 200))),
        ("response.status == nil", Box::new(|x| x.e.status.is_none())),
        ("response.status in [201, 204, 302]", Box::new(|x| matches!(x.e.status, Some(201 | 204 | 302)))),
        ("request.method in [\"GET\", \"SET\"]", Box::new(|x| ["GET", "SET"].contains(&s(&x.e.method)))),
        ("http and request.path == \"/healthz\"", Box::new(|x| x.e.protocol == "http" && s(&x.e.path) == "/healthz")),
        ("request.path.startsWith(\"/api\")", Box::new(|x| s(&x.e.path).starts_with("/api"))),
        ("!request.path.startsWith(\"/api\") and http", Box::new(|x| !s(&x.e.path).starts_with("/api") && x.e.protocol == "http")),
        ("request.path.endsWith(\".local\")", Box::new(|x| s(&x.e.path).ends_with(".local"))),
        ("request.path.contains(\"orders\")", Box::new(|x| s(&x.e.path).contains("orders"))),
        ("path.matches(\"^/api/v[0-9]+/\")", Box::new(|x| regex::Regex::new("^/api/v[0-9]+/").unwrap().is_match(s(&x.e.path)))),
        ("http && url.matches(\".*/api/v[0-9]+/.*\")", Box::new(|x| x.e.protocol == "http" && regex::Regex::new(".*/api/v[0-9]+/.*").unwrap().is_match(s(&x.e.path)))),
        ("request.headers[\"Authorization\"] == r\"Token.*\"", Box::new(|x| hdr(&x.e, false, "authorization").is_some_and(|v| v.contains("Token")))),
        ("request.headers[\"authorization\"] == r\"^Bearer \"", Box::new(|x| hdr(&x.e, false, "authorization").is_some_and(|v| v.starts_with("Bearer ")))),
        ("request.headers[\"Authorization\"] == nil and http", Box::new(|x| x.e.protocol == "http" && hdr(&x.e, false, "authorization").is_none())),
        ("request.headers.Authorization.startsWith(\"Basic\")", Box::new(|x| hdr(&x.e, false, "authorization").is_some_and(|v| v.starts_with("Basic")))),
        ("request.headers[\"User-Agent\"] == \"kube-probe/1.27+\"", Box::new(|x| hdr(&x.e, false, "user-agent") == Some("kube-probe/1.27+"))),
        ("http and request.headers[\"Accept\"] == r\"application/json.*\"", Box::new(|x| x.e.protocol == "http" && hdr(&x.e, false, "accept").is_some_and(|v| v.contains("application/json")))),
        ("grpc and request.headers[\":path\"] == r\".*Cart.*\"", Box::new(|x| x.e.protocol == "grpc" && hdr(&x.e, false, ":path").is_some_and(|v| v.contains("Cart")))),
        ("http2 && request.headers[\"content-type\"] == \"application/json\"", Box::new(|x| x.e.protocol == "http2" && hdr(&x.e, false, "content-type") == Some("application/json"))),
        ("\"authorization\" in request.headers", Box::new(|x| hdr(&x.e, false, "authorization").is_some())),
        ("http && \"authorization\" in request.headers", Box::new(|x| x.e.protocol == "http" && hdr(&x.e, false, "authorization").is_some())),
        ("map_get(request.headers, \"user-agent\", \"none\") == \"none\"", Box::new(|x| hdr(&x.e, false, "user-agent").is_none())),
        ("response.content.mimeType == \"application/json\"", Box::new(|x| hdr(&x.e, true, "content-type") == Some("application/json"))),
        ("request.cookies[\"sid\"] == \"abc\"", Box::new(|x| hdr(&x.e, false, "cookie").is_some_and(|c| c.contains("sid=abc")))),
        ("response.cookies[\"sid\"] == \"abc\"", Box::new(|x| hdr(&x.e, true, "set-cookie").is_some_and(|c| c.starts_with("sid=abc")))),
        ("request.queryString[\"id\"] == 7", Box::new(|x| s(&x.e.path).contains("id=7"))),
        ("request.queryString[\"x\"] == \"a\"", Box::new(|x| s(&x.e.path).contains("x=a"))),
        ("query_string == \"id=7&x=a\"", Box::new(|x| s(&x.e.path).ends_with("?id=7&x=a"))),
        ("request.pathSegments[1] == \"v1\"", Box::new(|x| s(&x.e.path).split('?').next().unwrap().split('/').filter(|p| !p.is_empty()).nth(1) == Some("v1"))),
        ("request.pathSegments.* == \"items\"", Box::new(|x| s(&x.e.path).split('?').next().unwrap().split('/').any(|p| p == "items"))),
        ("request.pathSegments.* != \"api\" and http", Box::new(|x| x.e.protocol == "http" && { let segs: Vec<&str> = s(&x.e.path).split('?').next().unwrap().split('/').filter(|p| !p.is_empty()).collect(); !segs.is_empty() && !segs.contains(&"api") })),
        ("size(request.pathSegments) == 4", Box::new(|x| s(&x.e.path).split('?').next().unwrap().split('/').filter(|p| !p.is_empty()).count() == 4 && x.e.path.is_some())),
        ("request.postData.params[\"user\"] == \"ann\"", Box::new(|x| x.e.request_body.as_deref().is_some_and(|b| b.starts_with(b"user=ann")))),
        ("request.postData.params[\"tag\"] == \"b\"", Box::new(|x| x.e.request_body.as_deref().is_some_and(|b| std::str::from_utf8(b).unwrap_or("").contains("tag=b")))),
        ("request.postData.text.contains(\"password\")", Box::new(|x| x.e.request_body.as_deref().is_some_and(|b| std::str::from_utf8(b).unwrap_or("").contains("password")))),
        ("response.body.json().brand.name == \"Chevrolet\"", Box::new(|x| x.e.id.0[0] == 0)),
        ("response.body.json().brand[\"name\"].startsWith(\"Chev\")", Box::new(|x| x.e.id.0[0] == 0)),
        ("response.content.text.json().brand.name.endsWith(\"let\")", Box::new(|x| x.e.id.0[0] == 0)),
        ("response.body.json().brand.name.contains(\"ro\")", Box::new(|x| x.e.id.0[0] == 0)),
        ("response.body.json()..name == \"b\"", Box::new(|x| x.e.id.0[0] == 0)),
        ("response.body.json()..name == \"Chevrolet\"", Box::new(|x| x.e.id.0[0] == 0)),
        ("response.body.json().items[1].price > 10", Box::new(|x| x.e.id.0[0] == 0)),
        ("response.body.json().items.*.price > 20", Box::new(|_| false)),
        ("response.body.json().items[0][\"name\"] == \"a\"", Box::new(|x| x.e.id.0[0] == 0)),
        ("response.body.json().year == response.body.json().salesYear", Box::new(|x| x.e.id.0[0] == 0)),
        ("response.body.json().year != response.body.json().salesYear", Box::new(|_| false)),
        ("size(response.body.json().items) == 2", Box::new(|x| x.e.id.0[0] == 0)),
        ("response.body.json().model == nil", Box::new(|_| true)),
        ("response.body.json().brand.game == \"Chevrolet\"", Box::new(|_| false)),
        ("response.body.xml().bookstore.book[1].title == \"Harry Potter\"", Box::new(|x| x.e.id.0[0] == 1)),
        ("response.body.xml().bookstore.book.*.title == \"A\"", Box::new(|x| x.e.id.0[0] == 1)),
        ("response.body.xml().bookstore.book[1][\"-lang\"] == \"en\"", Box::new(|x| x.e.id.0[0] == 1)),
        ("response.body.contains(\"Harry\")", Box::new(|x| x.e.id.0[0] == 1)),
        ("response.bodySize > 50", Box::new(|x| x.e.response_body.as_ref().is_some_and(|b| b.len() > 50))),
        ("request.bodySize == 0", Box::new(|x| x.e.request_body.is_none())),
        ("request.httpVersion == \"HTTP/1.0\"", Box::new(|x| x.req["version"] == "HTTP/1.0")),
        ("http_version == \"HTTP/2\"", Box::new(|x| x.req["version"] == "HTTP/2")),
        ("request.authority == \"shop.local\"", Box::new(|x| x.req["authority"] == "shop.local")),
        ("request.tls.decrypted == true", Box::new(|x| x.req["tls"]["decrypted"] == true)),
        ("request.tls", Box::new(|x| x.req.get("tls").is_some())),
        ("dns and request.questions[0].name.endsWith(\".local\")", Box::new(|x| x.e.protocol == "dns" && s(&x.e.path).ends_with(".local"))),
        ("request.opCode == 0", Box::new(|x| x.req["opcode"] == 0)),
        ("request.questions.*.qtype == \"AAAA\"", Box::new(|x| x.e.protocol == "dns" && s(&x.e.method) == "AAAA")),
        ("response.answers.*.data == \"142.250.1.2\"", Box::new(|x| x.e.id.0[0] == 6)),
        ("dns && \"google.com\" in dns_questions", Box::new(|x| x.e.protocol == "dns" && s(&x.e.path) == "google.com")),
        ("dns && dns_response && status_code != 0", Box::new(|x| x.e.protocol == "dns" && x.e.status.is_some_and(|s| s != 0))),
        ("dns && dns_response && size(dns_answers) > 0", Box::new(|x| x.e.protocol == "dns" && x.resp["answers"].as_array().is_some_and(|a| !a.is_empty()))),
        ("size(response.answers) == 0", Box::new(|x| x.resp["answers"].as_array().is_some_and(|a| a.is_empty()))),
        ("\"udp\" in request.transport", Box::new(|x| x.req["transport"] == "udp")),
        ("dns_question_types == \"AAAA\"", Box::new(|x| x.e.protocol == "dns" && s(&x.e.method) == "AAAA")),
        ("redis and request.key == \"cart:1\"", Box::new(|x| x.e.protocol == "redis" && s(&x.e.path) == "cart:1")),
        ("redis && redis_key.startsWith(\"session:\")", Box::new(|x| x.e.protocol == "redis" && s(&x.e.path).starts_with("session:"))),
        ("request.command == \"SET\" and request.value == \"v-9\"", Box::new(|x| s(&x.e.method) == "SET" && x.req["args"][1] == "v-9")),
        ("redis_command == \"GET\"", Box::new(|x| x.e.protocol == "redis" && s(&x.e.method) == "GET")),
        ("request.args.* == \"cart:1\"", Box::new(|x| x.req["args"].as_array().is_some_and(|a| a.contains(&json!("cart:1"))))),
        ("kafka && kafka_api_key_name == \"PRODUCE\"", Box::new(|x| x.e.protocol == "kafka" && s(&x.e.method) == "Produce")),
        ("kafka_api_key_name in [\"PRODUCE\", \"FETCH\"]", Box::new(|x| x.e.protocol == "kafka" && s(&x.e.method) == "Produce")),
        ("kafka_api_key_name == \"API_VERSIONS\"", Box::new(|x| x.e.protocol == "kafka" && s(&x.e.method) == "ApiVersions")),
        ("kafka and request.apiKeyName == \"Produce\"", Box::new(|x| x.e.protocol == "kafka" && s(&x.e.method) == "Produce")),
        ("kafka and response.payload.errorCode == 2", Box::new(|x| x.e.protocol == "kafka" && x.resp["error_code"] == 2)),
        ("request.clientID == \"kcat\"", Box::new(|x| x.req["client_id"] == "kcat")),
        ("kafka_client_id.startsWith(\"rd\")", Box::new(|x| x.req["client_id"].as_str().is_some_and(|c| c.starts_with("rd")))),
        ("request.payload.topics.*.name == \"orders\"", Box::new(|x| x.e.protocol == "kafka" && s(&x.e.path) == "orders")),
        ("kafka_api_key == 18", Box::new(|x| x.req["api_key"] == 18)),
        ("amqp and request.queue.startsWith(\"test\")", Box::new(|x| x.e.protocol == "amqp" && x.req["queue"].as_str().is_some_and(|q| q.starts_with("test")))),
        ("amqp and request.routingKey == \"orders\"", Box::new(|x| x.req["routing_key"] == "orders")),
        ("request.properties.headers[\"x-tenant\"] == \"acme\"", Box::new(|x| x.req["properties"]["headers"]["x-tenant"] == "acme")),
        ("request.properties.headers.n >= 7", Box::new(|x| x.req["properties"]["headers"]["n"] == 7)),
        ("\"x-tenant\" in request.properties.headers", Box::new(|x| x.req["properties"]["headers"].get("x-tenant").is_some())),
        ("grpc && grpc_status != 0", Box::new(|x| x.e.protocol == "grpc" && x.e.status != Some(0))),
        ("grpc_method == \"/shop.Cart/Add\"", Box::new(|x| x.e.protocol == "grpc")),
        ("postgresql && postgresql_error_code != \"\"", Box::new(|x| x.e.protocol == "postgres" && x.e.status_text.is_some())),
        ("src.namespace == \"shop\"", Box::new(|x| x.e.src.identity.namespace.as_deref() == Some("shop"))),
        ("src.namespace == r\"sh.*\"", Box::new(|x| x.e.src.identity.namespace.as_deref().is_some_and(|n| n.contains("sh")))),
        ("dst.pod.namespace == \"infra\"", Box::new(|x| x.e.dst.identity.namespace.as_deref() == Some("infra"))),
        ("!(src.pod.namespace == \"kube-system\")", Box::new(|x| x.e.src.identity.namespace.as_deref() != Some("kube-system"))),
        ("src.namespace == dst.namespace", Box::new(|x| x.e.src.identity.namespace.is_some() && x.e.src.identity.namespace == x.e.dst.identity.namespace)),
        ("src.service.namespace != dst.service.namespace", Box::new(|x| x.e.src.identity.namespace.is_some() && x.e.dst.identity.namespace.is_some() && x.e.src.identity.namespace != x.e.dst.identity.namespace)),
        ("(src.namespace==\"shop\" and dst.namespace==\"infra\") or (src.namespace==\"infra\" and dst.namespace==\"shop\")", Box::new(|x| x.e.src.identity.namespace.as_deref() == Some("shop") && x.e.dst.identity.namespace.as_deref() == Some("infra"))),
        ("dst.namespace==\"\"", Box::new(|_| false)),
        ("dst.namespace == nil", Box::new(|x| x.e.dst.identity.namespace.is_none())),
        ("\"kube-system\" in namespaces", Box::new(|x| x.e.src.identity.namespace.as_deref() == Some("kube-system") || x.e.dst.identity.namespace.as_deref() == Some("kube-system"))),
        ("namespace == \"shop\"", Box::new(|x| x.e.src.identity.namespace.as_deref() == Some("shop") || x.e.dst.identity.namespace.as_deref() == Some("shop"))),
        ("\"api\" in services", Box::new(|x| x.e.dst.identity.service.as_deref() == Some("api"))),
        ("size(services) == 1", Box::new(|x| x.e.dst.identity.service.is_some())),
        ("dst.service.name == \"api\" && src.pod.name == \"pod-4\"", Box::new(|x| x.e.dst.identity.service.as_deref() == Some("api") && x.e.src.identity.name == "pod-4")),
        ("src.name == \"pod-3\" or dst.name == \"pod-3\"", Box::new(|x| x.e.src.identity.name == "pod-3")),
        ("src.ip.startsWith(\"10.0.0.1\")", Box::new(|x| x.e.src.ip.starts_with("10.0.0.1"))),
        ("src.ip != \"10.0.0.2\" and dns", Box::new(|x| x.e.src.ip != "10.0.0.2" && x.e.protocol == "dns")),
        ("dst.port >= 8000 && dst.port <= 9000", Box::new(|x| (8000..=9000).contains(&x.e.dst.port))),
        ("dst.port == 53 || dst.port == 6379", Box::new(|x| x.e.dst.port == 53 || x.e.dst.port == 6379)),
        ("src.port > 40010", Box::new(|x| x.e.src.port > 40010)),
        ("node.name == \"node-b\"", Box::new(|x| x.e.node == "node-b")),
        ("node_name != \"node-b\" and redis", Box::new(|x| x.e.node != "node-b" && x.e.protocol == "redis")),
        ("node.ip == \"10.1.1.1\"", Box::new(|_| false)),
        ("!(worker == \"w\")", Box::new(|_| true)),
        ("dst.dns != \"\" && !dst.dns.endsWith(\".internal\")", Box::new(|_| false)),
        ("map_get(local_labels, \"app\", \"\") == \"payments\"", Box::new(|_| false)),
        ("map_get(local_labels, \"app\", \"none\") == \"none\"", Box::new(|_| true)),
        ("conn && conn_state == \"open\" && conn_local_bytes > 1000000", Box::new(|_| false)),
        ("tcp_flow && flow_local_bps > 5000000", Box::new(|_| false)),
        ("capture_source == \"ebpf_tls\"", Box::new(|_| false)),
        ("http && status_code >= 500 || (tcp && tcp_error_type != \"\")", Box::new(|x| x.e.protocol == "http" && x.e.status >= Some(500))),
        ("timestamp >= datetime(\"11/25/2026, 3:12:50.000 AM\")", Box::new(|x| x.e.ts_us >= T0 + 6_000_000)),
        ("timestamp < datetime(\"11/25/2026, 3:12:46.500 AM\")", Box::new(|x| x.e.ts_us < T0 + 2_500_000)),
        ("timestamp > \"2026-11-25T03:12:55Z\"", Box::new(|x| x.e.ts_us > T0 + 11_000_000)),
        ("timestamp >= timestamp(\"2026-11-25T03:12:44Z\") && timestamp <= timestamp(\"2026-11-25T03:12:47Z\")", Box::new(|x| x.e.ts_us <= T0 + 3_000_000)),
        ("timestamp > now() - duration(\"30s\")", Box::new(|x| x.e.ts_us / 1000 > NOW - 30_000)),
        ("timestamp >= seconds(30)", Box::new(|x| x.e.ts_us / 1000 >= NOW - 30_000)),
        ("timestamp <= now()", Box::new(|x| x.e.ts_us / 1000 <= NOW)),
        ("timestamp >= now()", Box::new(|x| x.e.ts_us / 1000 >= NOW)),
        ("elapsedTime >= 700", Box::new(|x| x.e.elapsed_us.is_some_and(|u| u / 1000 >= 700))),
        ("http && elapsed_time > 200000", Box::new(|x| x.e.protocol == "http" && x.e.elapsed_us.is_some_and(|u| u > 200_000))),
        ("requestSize > 110 and responseSize < 15000", Box::new(|x| x.e.request_size > 110 && x.e.response_size < 15000)),
        ("response.statusText == \"NXDOMAIN\"", Box::new(|x| s(&x.e.status_text) == "NXDOMAIN")),
        ("status_text.contains(\"Found\")", Box::new(|x| s(&x.e.status_text).contains("Found"))),
        ("http ? response.status >= 300 : dns", Box::new(|x| if x.e.protocol == "http" { x.e.status >= Some(300) } else { x.e.protocol == "dns" })),
        ("(redis ? request.key.startsWith(\"cart\") : false) || kafka", Box::new(|x| (x.e.protocol == "redis" && s(&x.e.path).starts_with("cart")) || x.e.protocol == "kafka")),
        ("http or dns and response.status == 3", Box::new(|x| x.e.protocol == "http" || (x.e.protocol == "dns" && x.e.status == Some(3)))),
        ("(http or dns) and response.status == 3", Box::new(|x| (x.e.protocol == "http" || x.e.protocol == "dns") && x.e.status == Some(3))),
        ("not (http and status >= 400)", Box::new(|x| !(x.e.protocol == "http" && x.e.status >= Some(400)))),
        ("src.namespace", Box::new(|x| x.e.src.identity.namespace.is_some())),
        ("limit(3) and http", Box::new(|x| x.e.protocol == "http")),
        ("redact(\"request.path\", \"src.name\") and dns", Box::new(|x| x.e.protocol == "dns")),
        ("(http and request.method == \"PUT\") or (amqp and request.queue.startsWith(\"test\")) or (kafka and response.payload.errorCode == 2) or (redis and request.key == \"example\") or (grpc and request.headers[\":path\"] == r\".*Add.*\")",
            Box::new(|x| (x.e.protocol == "amqp" && x.e.id.0[0] == 13) || (x.e.protocol == "kafka" && x.e.id.0[0] == 10) || x.e.protocol == "grpc")),
        ("response.status == 500 and request.headers[\"User-Agent\"] == \"curl/8.0\" and src.name == \"pod-3\"", Box::new(|x| x.e.id.0[0] == 3)),
        ("\"production\" in namespaces", Box::new(|_| false)),
        ("request.path.startsWith(\"/api\") == true", Box::new(|x| s(&x.e.path).starts_with("/api"))),
        ("request.path.startsWith(\"/api\") == false and http", Box::new(|x| x.e.protocol == "http" && !s(&x.e.path).starts_with("/api"))),
    ];
    assert!(cases.len() >= 100, "{} cases", cases.len());
    let mut failures = Vec::new();
    for (q, want) in &cases {
        let expected: Vec<usize> = rows
            .iter()
            .enumerate()
            .filter(|(_, r)| want(r))
            .map(|(i, _)| i)
            .collect();
        match run(&ctx, &rt, q) {
            Ok(got) if got == expected => {}
            Ok(got) => failures.push(format!("{q}\n   got {got:?}\n  want {expected:?}")),
            Err(e) => failures.push(format!("{q}: {e}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn redact_masks_returned_fields() {
    let c = compile(
        "redact(\"request.path\", \"src.name\", \"request.headers['Authorization']\", \"response.body.json()..name\", \"..password\") and http",
        &opts(),
    )
    .unwrap();
    assert_eq!(c.redact.len(), 5);
    let mut e = vec![json!({
        "path": "/x", "src": {"name": "a", "ip": "1"},
        "request_headers": [{"name": "authorization", "value": "Token t"}],
        "response_body": {"encoding": "utf8", "data": "{\"brand\":{\"name\":\"Chevrolet\"},\"password\":\"p\"}"},
    })];
    redact_entries(&mut e, &c.redact);
    assert_eq!(e[0]["path"], MASK);
    assert_eq!(e[0]["src"]["name"], MASK);
    assert_eq!(e[0]["src"]["ip"], "1");
    assert_eq!(e[0]["request_headers"][0]["value"], MASK);
    let body: Value =
        serde_json::from_str(e[0]["response_body"]["data"].as_str().unwrap()).unwrap();
    assert_eq!(body, json!({"brand": {"name": MASK}, "password": MASK}));
    for bad in [
        "redact(1) and http",
        "redact(\"nope.x\") and http",
        "http or redact(\"path\")",
    ] {
        assert!(compile(bad, &opts()).is_err(), "{bad}");
    }
}

#[test]
fn user_macros() {
    let mut o = opts();
    o.macros.push(("slow".into(), "elapsedTime > 500".into()));
    o.macros.push(("loop".into(), "loop and http".into()));
    let (ctx, rt, rows) = setup();
    let c = compile("slow and http", &o).unwrap();
    let got = rt.block_on(async {
        let df = ctx
            .table("entries")
            .await
            .unwrap()
            .filter(c.filter.unwrap())
            .unwrap();
        df.count().await.unwrap()
    });
    let want = rows
        .iter()
        .filter(|r| r.e.protocol == "http" && r.e.elapsed_us.is_some_and(|u| u / 1000 > 500))
        .count();
    assert_eq!(got, want);
    let e = compile("http and loop", &o).unwrap_err();
    assert!(e.message.contains("expands into itself"), "{e:?}");
    assert_eq!(e.position, 9);
    assert!(parse_macro("fast=elapsedTime < 10").is_ok());
    assert!(parse_macro("bad name=http").is_err());
    assert!(parse_macro("x=http and and").is_err());
    assert!(parse_macro("novalue").is_err());
}

/// Queries generated from the grammar: each compiles or fails with a position, and each that
/// compiles also runs in DataFusion without an execution error (which the API would turn into
/// a 500).
#[test]
fn generated_queries_compile_and_run() {
    let (ctx, rt, _) = setup();
    let fields = [
        "response.status",
        "request.path",
        "request.method",
        "src.namespace",
        "dst.port",
        "timestamp",
        "elapsedTime",
        "request.headers[\"Authorization\"]",
        "response.body.json().brand.name",
        "request.payload.topics.*.name",
        "namespaces",
        "dns_answers",
        "kafka_api_key_name",
        "request.queryString[\"id\"]",
        "request.cookies[\"sid\"]",
        "node.ip",
        "dst.dns",
        "status_code",
        "response.body.xml().a.b",
        "request.pathSegments.*",
        "local_labels",
        "request.headers",
        "grpc_status",
        "request.bodySize",
        "redis_key",
        "request.args[0]",
        "response.answers",
    ];
    let lits = [
        "200",
        "\"x\"",
        "r\"^a.*\"",
        "nil",
        "-1",
        "3.5",
        "true",
        "now()",
        "minutes(5)",
        "datetime(\"11/25/2026, 3:12:44.000 AM\")",
        "now() - duration(\"1h\")",
        "\"2026-11-25T03:12:44Z\"",
    ];
    let ops = ["==", "!=", "<", "<=", ">", ">="];
    let helpers = [
        "startsWith(\"a\")",
        "endsWith(\"z\")",
        "contains(\"o\")",
        "matches(\"[0-9]+\")",
        "size()",
    ];
    let macros = [
        "http",
        "dns",
        "error",
        "tls",
        "https",
        "tcp",
        "conn",
        "dns_response",
    ];
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move |n: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % n as u64) as usize
    };
    fn gen(
        next: &mut dyn FnMut(usize) -> usize,
        depth: usize,
        f: &[&str],
        l: &[&str],
        o: &[&str],
        h: &[&str],
        m: &[&str],
    ) -> String {
        let pick =
            |next: &mut dyn FnMut(usize) -> usize, xs: &[&str]| xs[next(xs.len())].to_string();
        match if depth > 3 { next(5) } else { next(10) } {
            0 => pick(next, m),
            1 => format!("{} {} {}", pick(next, f), pick(next, o), pick(next, l)),
            2 => format!("{}.{}", pick(next, f), pick(next, h)),
            3 => format!(
                "{} in [{}, {}]",
                pick(next, f),
                pick(next, l),
                pick(next, l)
            ),
            4 => format!("{} {} {}", pick(next, f), pick(next, o), pick(next, f)),
            5 => format!(
                "({} and {})",
                gen(next, depth + 1, f, l, o, h, m),
                gen(next, depth + 1, f, l, o, h, m)
            ),
            6 => format!(
                "{} or {}",
                gen(next, depth + 1, f, l, o, h, m),
                gen(next, depth + 1, f, l, o, h, m)
            ),
            7 => format!("!({})", gen(next, depth + 1, f, l, o, h, m)),
            8 => format!(
                "{} ? {} : {}",
                pick(next, m),
                gen(next, depth + 1, f, l, o, h, m),
                gen(next, depth + 1, f, l, o, h, m)
            ),
            _ => format!("\"k\" in {} && size({}) > 0", pick(next, f), pick(next, f)),
        }
    }
    let (mut ok, mut err) = (0, 0);
    for _ in 0..1500 {
        let q = gen(&mut next, 0, &fields, &lits, &ops, &helpers, &macros);
        match compile(&q, &opts()) {
            Ok(_) => {
                ok += 1;
                if let Err(e) = run(&ctx, &rt, &q) {
                    panic!("{q:?} compiled but failed to run: {e}");
                }
            }
            Err(e) => {
                err += 1;
                assert!(e.position <= q.chars().count(), "{q:?}: {e:?}");
            }
        }
    }
    assert!(ok > 300 && err > 10, "ok {ok}, errors {err}");
}
