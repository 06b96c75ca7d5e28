//! KFL: syntax, errors with positions, and evaluation on real DataFusion over a small batch.

use std::sync::Arc;

use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;
use wiretrail_proto::{Endpoint, Entry, EntryBatchBuilder, EntryId, Identity};

use super::*;

const NOW: i64 = 1_795_576_400_000;

fn opts() -> KflOptions {
    KflOptions { now_ms: NOW }
}

#[test]
fn valid_queries_compile() {
    for q in [
        "",
        "http",
        "!http",
        "not dns",
        "http and response.status >= 400",
        "http && status_code == 404",
        "response.status == \"200\"",
        "response.status == 200.0",
        "request.headers[\"User-Agent\"] == r\"curl.*\"",
        "request.headers[\"authorization\"] == r\"Token.*\"",
        "request.headers['X-Request-Id'] != nil",
        "dns and request.path.endsWith(\".test\")",
        "request.path.startsWith(\"/api\") and request.path.contains(\"orders\")",
        "path.matches(\"^/api/v[0-9]+/\")",
        "(http or dns) and !(response.status == 200)",
        "http or dns and response.status == 3",
        "src.name == \"frontend\" and dst.namespace == \"shop\"",
        "dst.pod.namespace == \"shop\" && src.service.name == \"api\"",
        "timestamp >= datetime(\"11/25/2026, 3:12:44.000 AM\")",
        "timestamp >= 1795576364269 and timestamp < \"2026-11-25T03:13:09Z\"",
        "timestamp > minutes(5)",
        "timestamp <= now()",
        "timestamp >= timestamp(\"2026-11-25T03:12:44Z\")",
        "limit(10) and http",
        "http and limit(5)",
        "elapsedTime >= 300",
        "protocol in [\"http\", \"dns\"]",
        "response.status in [401, 403]",
        "node.name == \"node-a\"",
        "src.port > 1024 and dst.port == 8080",
        "requestSize > 1000 or responseSize > 100000",
        "request.method == \"POST\" and !request.path.startsWith(\"/healthz\")",
        "method == r\"^(PUT|PATCH)$\"",
        "src.ip == \"127.0.10.1\"",
        "src.namespace == dst.namespace",
        "200 == response.status",
        "request.path.startsWith(\"/api\") == true",
        "gql or grpc or redis or kafka or amqp or tls or http2 or postgres",
        "capture == \"pcap\"",
        "response.statusText == \"Not Found\"",
        "request.headers[\"Authorization\"]",
        "  http\n  and response.status >= 500  ",
    ] {
        if let Err(e) = compile(q, &opts()) {
            panic!("{q:?} should compile: {}", e.render(q));
        }
    }
}

#[test]
fn bad_queries_report_where() {
    for (q, pos, needle) in [
        ("http and and", 9, "expected a value"),
        ("http and", 8, "expected a value"),
        ("request.headers[\"x\"", 19, "`]`"),
        ("request.path == \"abc", 16, "unterminated"),
        (
            "request.httpVersion == \"1.1\"",
            0,
            "unknown field `request.httpVersion`",
        ),
        ("foo.bar == 1", 0, "unknown field"),
        ("response.status == \"abc\"", 19, "is a number"),
        ("respons.status == 200", 0, "did you mean `response.status`"),
        ("response.status = 200", 16, "use `==`"),
        ("http)", 4, "unexpected `)`"),
        ("(http", 5, "`)`"),
        ("1 < 2 < 3", 6, "chained"),
        ("request.path == r\"(\"", 16, "invalid regular expression"),
        ("request.path.startsWithx(\"a\")", 24, "unknown helper"),
        ("response.status > r\"4.*\"", 16, "only be compared"),
        ("http or limit(3)", 8, "limit"),
        ("\"just a string\"", 0, "not a condition"),
        ("datetime(\"yesterday\") < timestamp", 0, "datetime()"),
        ("timestamp > \"soon\"", 12, "as a time"),
        ("http & dns", 5, "unexpected character"),
        ("request.body.json().a == 1", 19, "not supported yet"),
        ("now()", 0, "not a condition"),
    ] {
        match compile(q, &opts()) {
            Ok(_) => panic!("{q:?} should fail"),
            Err(e) => {
                assert!(
                    e.message.contains(needle),
                    "{q:?}: {e:?} should mention {needle:?}"
                );
                assert_eq!(e.position, pos, "{q:?}: {}", e.render(q));
            }
        }
    }
    let e = compile("http and\n  foo == 1", &opts()).unwrap_err();
    assert_eq!((e.line, e.column), (2, 3));
}

#[test]
fn hostile_input_is_refused_not_crashed() {
    let deep = format!("{}http{}", "(".repeat(10_000), ")".repeat(10_000));
    assert!(compile(&deep, &opts())
        .unwrap_err()
        .message
        .contains("nests deeper"));
    let nots = format!("{}http", "!".repeat(10_000));
    assert!(compile(&nots, &opts()).is_err());
    let long = "http or ".repeat(20_000) + "http";
    assert!(compile(&long, &opts())
        .unwrap_err()
        .message
        .contains("longer than"));
}

#[test]
fn random_queries_never_panic() {
    let atoms = [
        "http",
        "dns",
        "and",
        "or",
        "&&",
        "||",
        "!",
        "not",
        "(",
        ")",
        "[",
        "]",
        ".",
        ",",
        "==",
        "!=",
        "<",
        ">=",
        "in",
        "request.path",
        "response.status",
        "request.headers[\"Host\"]",
        "src.name",
        "\"x\"",
        "r\"a.*\"",
        "r\"(\"",
        "42",
        "-1",
        "3.5",
        "nil",
        "true",
        "startsWith(\"a\")",
        "limit(2)",
        "datetime(\"1/2/2006, 3:04:05.000 PM\")",
        "timestamp",
        "\"unterminated",
        "=",
        "&",
        "é",
        "\\",
        "'",
        "`",
        "*",
        "now()",
        "minutes(3)",
        "foo",
    ];
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut compiled = 0;
    for _ in 0..20_000 {
        let n = 1 + (next() % 9) as usize;
        let q: Vec<&str> = (0..n)
            .map(|_| atoms[(next() % atoms.len() as u64) as usize])
            .collect();
        let q = q.join(if next() % 3 == 0 { "" } else { " " });
        match compile(&q, &opts()) {
            Ok(_) => compiled += 1,
            Err(e) => assert!(e.position <= q.chars().count(), "{q:?}: {e:?}"),
        }
    }
    assert!(
        compiled > 100,
        "the generator should produce some valid queries ({compiled})"
    );
}

#[allow(clippy::too_many_arguments)]
fn entry(
    i: u32,
    proto: &str,
    method: Option<&str>,
    path: &str,
    status: Option<i32>,
    headers: &[(&str, &str)],
    src: &str,
    ns: Option<&str>,
) -> Entry {
    let ts = 1_795_576_364_000_000 + i64::from(i) * 1_000_000;
    let mut e = Entry::new(
        EntryId::new(ts, "node-a", i),
        ts,
        if i.is_multiple_of(2) {
            "node-a"
        } else {
            "node-b"
        },
        proto,
        "pcap",
    );
    e.method = method.map(str::to_string);
    e.path = Some(path.to_string());
    e.status = status;
    e.elapsed_us = status.map(|_| i64::from(i) * 100_000);
    e.request_headers = (!headers.is_empty()).then(|| {
        headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    });
    e.src = Endpoint {
        ip: format!("10.0.0.{i}"),
        port: 40000 + i as u16,
        identity: Identity {
            name: src.into(),
            namespace: ns.map(str::to_string),
            ..Default::default()
        },
    };
    e.dst = Endpoint {
        ip: "10.0.1.1".into(),
        port: 8080,
        identity: Identity {
            name: "api".into(),
            namespace: Some("shop".into()),
            ..Default::default()
        },
    };
    e
}

async fn ctx() -> SessionContext {
    let rows = [
        entry(
            0,
            "http",
            Some("GET"),
            "/api/v1/products/1",
            Some(200),
            &[("User-Agent", "curl/7.88"), ("Authorization", "Bearer abc")],
            "frontend",
            Some("shop"),
        ),
        entry(
            1,
            "http",
            Some("POST"),
            "/api/v1/orders",
            Some(201),
            &[
                ("user-agent", "python-requests"),
                ("authorization", "Token tk_live_1"),
            ],
            "reports",
            Some("shop"),
        ),
        entry(
            2,
            "http",
            Some("GET"),
            "/healthz",
            Some(404),
            &[],
            "kubelet",
            None,
        ),
        entry(
            3,
            "dns",
            Some("A"),
            "api.shop.svc.cluster.local",
            Some(0),
            &[],
            "frontend",
            Some("shop"),
        ),
        entry(
            4,
            "dns",
            Some("AAAA"),
            "redis.infra.shop.svc.cluster.local",
            Some(3),
            &[],
            "api",
            Some("shop"),
        ),
        entry(
            5,
            "http",
            Some("GET"),
            "/api/v1/orders/export?page=2",
            None,
            &[("Authorization", "Token tk_live_2")],
            "frontend",
            Some("shop"),
        ),
        entry(
            6,
            "http",
            Some("DELETE"),
            "/api/v1/cart/9",
            Some(503),
            &[("X-Fault-Abort", "503")],
            "frontend",
            Some("shop"),
        ),
    ];
    let mut b = EntryBatchBuilder::new();
    for r in &rows {
        b.push(r);
    }
    let batch = b.finish().unwrap();
    let ctx = SessionContext::new();
    for u in udfs() {
        ctx.register_udf(u);
    }
    ctx.register_table(
        "entries",
        Arc::new(MemTable::try_new(batch.schema(), vec![vec![batch]]).unwrap()),
    )
    .unwrap();
    ctx
}

async fn matching(ctx: &SessionContext, q: &str) -> Vec<u32> {
    let c = compile(q, &opts()).unwrap_or_else(|e| panic!("{}", e.render(q)));
    let mut df = ctx.table("entries").await.unwrap();
    if let Some(f) = c.filter {
        df = df.filter(f).unwrap();
    }
    let batches = df
        .select_columns(&["src_port"])
        .unwrap()
        .collect()
        .await
        .unwrap();
    let mut out: Vec<u32> = batches
        .iter()
        .flat_map(|b| {
            let a = b
                .column(0)
                .as_any()
                .downcast_ref::<arrow::array::UInt16Array>()
                .unwrap()
                .clone();
            (0..a.len())
                .map(move |i| u32::from(a.value(i)) - 40000)
                .collect::<Vec<_>>()
        })
        .collect();
    out.sort();
    out
}

#[tokio::test]
async fn queries_select_the_right_rows() {
    let ctx = ctx().await;
    for (q, want) in [
        ("", vec![0, 1, 2, 3, 4, 5, 6]),
        ("http", vec![0, 1, 2, 5, 6]),
        ("!http", vec![3, 4]),
        ("dns", vec![3, 4]),
        ("http and response.status >= 400", vec![2, 6]),
        ("response.status >= 400", vec![2, 6]),
        ("response.status == \"200\"", vec![0]),
        ("response.status == 200", vec![0]),
        ("!(response.status == 200)", vec![1, 2, 3, 4, 5, 6]),
        ("response.status != 200", vec![1, 2, 3, 4, 6]),
        (
            "request.headers[\"Authorization\"] == r\"Token.*\"",
            vec![1, 5],
        ),
        (
            "request.headers[\"AUTHORIZATION\"] == r\"^Bearer \"",
            vec![0],
        ),
        ("request.headers[\"User-Agent\"] == r\"curl.*\"", vec![0]),
        ("request.headers[\"user-agent\"] == r\"requests\"", vec![1]),
        ("request.headers[\"Authorization\"] != r\"Token\"", vec![0]),
        (
            "!(request.headers[\"Authorization\"] == r\"Token\")",
            vec![2, 3, 4, 6, 0]
                .into_iter()
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect(),
        ),
        ("request.headers[\"X-Fault-Abort\"]", vec![6]),
        (
            "dns and request.path.endsWith(\".cluster.local\")",
            vec![3, 4],
        ),
        ("dns and response.status == 3", vec![4]),
        ("request.path.startsWith(\"/api/v1/orders\")", vec![1, 5]),
        ("request.path.contains(\"cart\")", vec![6]),
        ("path.matches(\"^/api/v1/(orders|cart)\")", vec![1, 5, 6]),
        ("request.path == r\"orders\"", vec![1, 5]),
        (
            "http or dns and response.status == 3",
            vec![0, 1, 2, 4, 5, 6],
        ),
        ("(http or dns) and response.status == 3", vec![4]),
        (
            "http and request.method == \"GET\" or dns and request.method == \"AAAA\"",
            vec![0, 2, 4, 5],
        ),
        (
            "src.name == \"frontend\" and dst.namespace == \"shop\"",
            vec![0, 3, 5, 6],
        ),
        ("src.namespace == \"shop\"", vec![0, 1, 3, 4, 5, 6]),
        ("src.namespace != \"shop\"", vec![]),
        ("src.namespace == nil", vec![2]),
        ("src.namespace == dst.namespace", vec![0, 1, 3, 4, 5, 6]),
        ("node.name == \"node-b\"", vec![1, 3, 5]),
        (
            "protocol in [\"dns\"] or response.status in [503]",
            vec![3, 4, 6],
        ),
        ("elapsedTime >= 300", vec![3, 4, 6]),
        ("elapsedTime < 300", vec![0, 1, 2]),
        ("src.port >= 40005", vec![5, 6]),
        (
            "timestamp >= 1795576366000 and timestamp < \"2026-11-25T03:12:48Z\"",
            vec![2, 3],
        ),
        (
            "timestamp >= datetime(\"11/25/2026, 3:12:49.000 AM\")",
            vec![5, 6],
        ),
        ("timestamp > minutes(1)", vec![0, 1, 2, 3, 4, 5, 6]),
        ("timestamp < minutes(1)", vec![]),
        (
            "request.method == \"POST\" && !request.path.startsWith(\"/healthz\")",
            vec![1],
        ),
        ("method == r\"^(PUT|DELETE)$\"", vec![6]),
    ] {
        assert_eq!(matching(&ctx, q).await, want, "{q}");
    }
}

#[test]
fn limit_is_returned() {
    let c = compile("limit(7) and http", &opts()).unwrap();
    assert_eq!(c.limit, Some(7));
    assert!(c.filter.is_some());
    assert_eq!(compile("limit(3)", &opts()).unwrap().filter, None);
}

#[test]
fn v1_datetime_layout() {
    assert_eq!(
        compile::parse_v1_datetime("11/25/2026, 3:12:44.269 AM"),
        Some(1_795_576_364_269)
    );
    assert_eq!(
        compile::parse_v1_datetime("1/2/2006, 3:04:05.000 PM"),
        Some(1_136_214_245_000)
    );
}
