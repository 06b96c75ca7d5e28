//! KFL syntax: what compiles, what fails and where, hostile input, random token soups.
//! Evaluation against DataFusion is in `tests_eval.rs`, the reference's examples in
//! `tests_conformance.rs`.

use super::*;

pub const NOW: i64 = 1_795_576_400_000;

pub fn opts() -> KflOptions {
    KflOptions::new(NOW)
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
        "protocol.abbr == \"HTTP/2\" or protocol.name == \"DNS\"",
        "!dns and !tls",
        "not (http and status >= 500)",
        "http and request.path == r'^/api/v[0-9]+/'",
        "request.path.matches(\"\\d+$\")",
        "response.headers[\"Content-Type\"].startsWith(\"application/json\")",
        "request.questions[0].name.endsWith(\".local\")",
        "src.pod.name == \"a\" or dst.service.name == \"b\" or src.workload == \"c\"",
        "elapsed_us > 1_000_000",
        "timestamp >= \"2026-11-25T03:12:44.269+01:00\"",
        "timestamp >= seconds(30) and timestamp < now()",
        "timestamp > days(1) or timestamp > weeks(2) or timestamp > hours(3)",
        "src.namespace",
        "response.status < -1",
        "url == `/x`",
        "(((((http)))))",
        "true",
        "http and true and !false",
        "request.headers[\"x\"] == nil and response.headers[\"y\"] != null",
        "method != r\"GET\"",
        "status_text == \"OK\"",
    ] {
        if let Err(e) = compile(q, &opts()) {
            panic!("{q:?} should compile: {}", e.render(q));
        }
    }
}

#[test]
fn bad_queries_report_where() {
    let mut n = 0;
    for (q, pos, needle) in [
        ("http and and", 9, "expected a value"),
        ("http and", 8, "expected a value"),
        ("request.headers[\"x\"", 19, "`]`"),
        ("request.path == \"abc", 16, "unterminated"),
        (
            "response.stauts == 200",
            0,
            "did you mean `response.status`",
        ),
        (
            "request.methd == \"GET\"",
            0,
            "unknown field `request.methd`",
        ),
        ("request.path.x == 1", 0, "does not exist"),
        ("json() == 1", 0, "decodes a field"),
        ("path.json().a == 1", 0, "unknown field"),
        ("timestamp > now() - \"x\"", 18, "`+` and `-`"),
        ("timestamp > duration(\"5 parsecs\")", 12, "duration()"),
        ("http ? dns", 10, "`:`"),
        ("\"k\" in status_code", 0, "is a number"),
        ("request.headers == \"x\"", 0, "a map is not compared"),
        ("size(timestamp) > 1", 0, "size()"),
        ("map_get(request.headers, 1, 2) == 3", 0, "map_get()"),
        ("redact(src.name) and http", 7, "redact() takes"),
        ("[1, 2]", 0, "expected a value"),
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
        ("request.body.json().a.startsWith(1, 2)", 32, "one argument"),
        ("now()", 0, "not a condition"),
        ("", 0, ""),
        ("!response.status == 200", 0, "write `!(a == b)`"),
        ("request.path.startsWith(\"/a\") == 3", 23, "true or false"),
        ("path.matches(\"[\")", 13, "invalid regular expression"),
        ("response.status == true", 19, "not a boolean"),
        ("response.status in [r\"4\"]", 20, "regex"),
        ("response.status >= nil", 16, "nil"),
        ("src.namespace == \"shop\" and", 27, "expected a value"),
        ("http or", 7, "expected a value"),
        ("response.status ==", 18, "expected a value"),
        ("== 200", 0, "expected a value"),
        ("status_cod == 200", 0, "did you mean `status_code`"),
        ("request.headers[0] == \"x\"", 0, "does not exist"),
        ("limit(0) and http", 0, "positive"),
        ("limit(\"x\")", 0, "positive"),
        ("minutes(\"x\") < timestamp", 0, "takes one number"),
        ("now(1) < timestamp", 0, "no arguments"),
        ("frobnicate(1)", 0, "unknown function"),
        ("r\"abc", 1, "unterminated"),
        ("'abc", 0, "unterminated"),
        ("path == \"a\\\"", 8, "unterminated"),
        ("99999999999999999999 == status", 0, "out of range"),
        ("- http", 0, "followed by a number"),
        ("http dns", 5, "unexpected `dns`"),
        ("request..", 8, "after `..`"),
        ("request.[0]", 8, "field name"),
        ("request.headers[foo]", 16, "inside `[ ]`"),
        ("\"a\" == \"b\"", 0, "field on one side"),
        ("timestamp == true", 13, "timestamp compares"),
        (
            "src.name == src.namespace.contains(\"x\")",
            34,
            "not with a condition",
        ),
        ("é == 1", 0, "unknown field `é`"),
        ("http and\n  €", 11, "unexpected character"),
    ] {
        n += 1;
        if q.is_empty() {
            assert_eq!(compile(q, &opts()).unwrap().filter, None);
            continue;
        }
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
    assert!(n >= 40, "{n} cases");
    let e = compile("http and\n  qqqqqq == 1", &opts()).unwrap_err();
    assert_eq!((e.line, e.column, e.position), (2, 3, 11));
    assert_eq!(
        e.render("http and\n  qqqqqq == 1"),
        "  qqqqqq == 1\n  ^ unknown field `qqqqqq`"
    );
    assert!(validate("http and and").is_err());
    assert!(validate("http and response.status >= 400").is_ok());
}

#[test]
fn hostile_input_is_refused_not_crashed() {
    let deep = format!("{}http{}", "(".repeat(10_000), ")".repeat(10_000));
    let e = compile(&deep, &opts()).unwrap_err();
    assert!(e.message.contains("nests deeper"), "{e:?}");
    // The error points just past the parenthesis that went one level too deep.
    assert_eq!(e.position, MAX_DEPTH + 1);
    // Exactly the limit is fine.
    let ok = format!("{}http{}", "(".repeat(MAX_DEPTH), ")".repeat(MAX_DEPTH));
    assert!(compile(&ok, &opts()).is_ok());
    let nots = format!("{}http", "!".repeat(10_000));
    assert!(compile(&nots, &opts())
        .unwrap_err()
        .message
        .contains("nests deeper"));
    let calls = format!("{}1{}", "now(".repeat(5_000), ")".repeat(5_000));
    assert!(compile(&calls, &opts()).is_err());
    let long = "http or ".repeat(20_000) + "http";
    assert!(compile(&long, &opts())
        .unwrap_err()
        .message
        .contains("longer than"));
    // Under the byte limit but too many values: refused before DataFusion sees it.
    let wide = "dns or ".repeat(8_000) + "http";
    assert!(wide.len() <= MAX_QUERY_LEN);
    let e = compile(&wide, &opts()).unwrap_err();
    assert!(e.message.contains("more than"), "{e:?}");
    let wide = "http and ".repeat(MAX_TERMS - 1) + "http";
    assert!(compile(&wide, &opts()).is_ok());
    let list = format!("status in [{}1]", "1, ".repeat(MAX_TERMS));
    assert!(compile(&list, &opts()).is_err());
    // Arithmetic on user numbers saturates instead of overflowing.
    for q in [
        "timestamp > minutes(-9223372036854775807)",
        "timestamp > years(9223372036854775807)",
        "timestamp > 9223372036854775807",
        "timestamp > -9223372036854775807",
        "limit(9223372036854775807) and http",
        "status == 1e",
        "status == 123456789012345678901234567890.5",
    ] {
        let _ = compile(q, &opts());
    }
    let ident = "a".repeat(60_000);
    let e = compile(&ident, &opts()).unwrap_err();
    assert_eq!((e.position, e.suggestion), (0, None));
    let e = compile(&format!("{ident} == 1"), &opts()).unwrap_err();
    assert!(e.message.len() < 61_000);
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
        "request.httpVersion",
        "response.headers['content-type']",
        ".startsWith(",
        ".matches(\"[\")",
        "r'x'",
        "\"a\\\"",
        "-",
        "9223372036854775807",
        "99999999999999999999",
        "1.5",
        "status_code",
        "src.pod.namespace",
        "protocol.abbr",
        "\n",
        "null",
        "gql",
        "limit(",
        "seconds(-1)",
        "?",
        ":",
        "+",
        "..",
        ".json()",
        ".xml()",
        "response.body.json()",
        "..name",
        "size(",
        "map_get(request.headers, \"a\", \"\")",
        "duration(\"5m\")",
        "now() - duration(\"1h\")",
        "redact(\"src.name\")",
        "namespaces",
        "dns_questions",
        "request.payload.topics.*.name",
        "https",
        "error",
        "tls",
        "[*]",
        "[0]",
        "request.queryString[\"a\"]",
        "kafka_api_key_name",
        "local_labels",
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
        let n = 1 + (next() % 12) as usize;
        let q: Vec<&str> = (0..n)
            .map(|_| atoms[(next() % atoms.len() as u64) as usize])
            .collect();
        let q = q.join(if next() % 3 == 0 { "" } else { " " });
        check(&q, &mut compiled);
    }
    assert!(
        compiled > 100,
        "the generator should produce some valid queries ({compiled})"
    );
    // Character-level mutations of valid queries: deletions, insertions, swaps.
    let seeds = [
        "http and response.status >= 400",
        "request.headers[\"User-Agent\"] == r\"curl.*\"",
        "(http or dns) and !(response.status == 200)",
        "timestamp >= datetime(\"11/25/2026, 3:12:44.000 AM\") and limit(10)",
        "dns and request.path.endsWith(\".test\") || src.pod.namespace in [\"a\", 'b']",
    ];
    let noise: Vec<char> = "()[]\"'`r.,!=<>&|-_ 0a\\é\n".chars().collect();
    for _ in 0..10_000 {
        let mut q: Vec<char> = seeds[(next() % seeds.len() as u64) as usize]
            .chars()
            .collect();
        for _ in 0..1 + next() % 4 {
            let i = (next() % (q.len() as u64 + 1)) as usize;
            let c = noise[(next() % noise.len() as u64) as usize];
            match next() % 3 {
                0 if i < q.len() => {
                    q.remove(i);
                }
                1 if i < q.len() => q[i] = c,
                _ => q.insert(i, c),
            }
        }
        check(&q.into_iter().collect::<String>(), &mut compiled);
    }
}

/// Compiles, or fails with a position inside the query that renders.
fn check(q: &str, compiled: &mut usize) {
    match std::panic::catch_unwind(|| compile(q, &opts())) {
        Ok(Ok(_)) => *compiled += 1,
        Ok(Err(e)) => {
            assert!(e.position <= q.chars().count(), "{q:?}: {e:?}");
            assert!(e.line >= 1 && e.column >= 1, "{q:?}: {e:?}");
            let _ = e.render(q);
        }
        Err(_) => panic!("compile panicked on {q:?}"),
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
