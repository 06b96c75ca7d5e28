//! `POST /api/v1/sql` on a real capture: the three answer formats agree with the entries API,
//! and a list of hostile statements (file access, DDL, DML, `COPY`, endless or huge queries,
//! parser bombs) is refused or bounded with a 400 — the server stays up and nothing changes.

mod common;

use common::*;
use serde_json::{json, Value};

fn post(server: &Server, body: Value, accept: &str) -> (u16, Vec<u8>) {
    let r = reqwest::blocking::Client::new()
        .post(format!("{}/api/v1/sql", server.http))
        .header("accept", accept)
        .json(&body)
        .send()
        .unwrap();
    (r.status().as_u16(), r.bytes().unwrap().to_vec())
}

fn post_json(server: &Server, body: Value) -> (u16, Value) {
    let (s, b) = post(server, body, "application/json");
    (s, serde_json::from_slice(&b).unwrap_or(Value::Null))
}

#[test]
fn sql_formats_and_hostile_statements() {
    if !corpus_available() {
        return;
    }
    let dir = temp_dir("sql");
    let server = Server::start_on(
        &dir.join("data"),
        free_port(),
        free_port(),
        &["--sql-memory-mib", "16", "--sql-timeout", "20"],
    );
    import(&[
        "--server",
        &server.flight,
        pcap("http1_keepalive.pcap").to_str().unwrap(),
        pcap("dns_udp.pcap").to_str().unwrap(),
    ]);
    let total = server.count("");
    let http = server.count("http");
    assert!(total > http && http > 0);

    // JSON, CSV and Arrow IPC give the same rows.
    let q = "SELECT protocol, count(*) AS n FROM entries GROUP BY protocol ORDER BY protocol";
    let (status, v) = post_json(&server, json!({ "sql": q }));
    assert_eq!(status, 200, "{v}");
    let rows = v["rows"].as_array().unwrap();
    let n_of = |p: &str| {
        rows.iter()
            .find(|r| r["protocol"] == p)
            .map(|r| r["n"].as_u64().unwrap() as usize)
    };
    assert_eq!(n_of("http"), Some(http));
    assert_eq!(
        rows.iter()
            .map(|r| r["n"].as_u64().unwrap() as usize)
            .sum::<usize>(),
        total
    );
    assert_eq!(v["truncated"], false);

    let (status, csv) = post(&server, json!({ "sql": q }), "text/csv");
    assert_eq!(status, 200);
    let csv = String::from_utf8(csv).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "protocol,n");
    assert!(lines.contains(&format!("http,{http}").as_str()), "{csv}");

    let (status, ipc) = post(
        &server,
        json!({ "sql": "SELECT id, ts, request_headers FROM entries" }),
        "application/vnd.apache.arrow.stream",
    );
    assert_eq!(status, 200);
    let reader =
        arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(ipc), None).unwrap();
    let n: usize = reader.map(|b| b.unwrap().num_rows()).sum();
    assert_eq!(n, total);

    // A window restricts rows, not only files.
    let first = server.all("", None, None).last().unwrap()["ts"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, v) = post_json(
        &server,
        json!({ "sql": "SELECT count(*) AS n FROM entries", "from": first, "to": first }),
    );
    assert_eq!(status, 400, "empty window: {v}");
    let (status, v) = post_json(
        &server,
        json!({ "sql": "SELECT count(*) AS n FROM entries", "to": first }),
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v["rows"][0]["n"], 0,
        "nothing is older than the oldest entry"
    );
    // Epoch milliseconds as JSON numbers, like the strings.
    let (status, v) = post_json(
        &server,
        json!({ "sql": "SELECT count(*) AS n FROM entries", "from": 0, "to": 4_102_444_800_000i64 }),
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v["rows"][0]["n"], total as u64,
        "1970 to 2100 holds everything"
    );
    let (status, v) = post_json(&server, json!({ "sql": "SELECT 1", "from": true }));
    assert_eq!(status, 400, "{v}");
    assert!(v.to_string().contains("from"), "{v}");

    // The row cap cuts an endless answer and says so.
    let endless = "WITH RECURSIVE t(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM t) SELECT n FROM t";
    let (status, v) = post_json(&server, json!({ "sql": endless }));
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["truncated"], true);
    assert_eq!(v["row_count"], 100_000);

    let copy_target = dir.join("copied.csv");
    let deep = format!("SELECT {}1{}", "(".repeat(5000), ")".repeat(5000));
    let long = format!("SELECT '{}'", "x".repeat(70_000));
    let hostile: Vec<(String, &str)> = vec![
        (format!("COPY entries TO '{}'", copy_target.display()), "COPY"),
        (
            format!(
                "COPY (SELECT * FROM entries) TO '{}' STORED AS CSV",
                copy_target.display()
            ),
            "COPY query",
        ),
        (
            "CREATE EXTERNAL TABLE p (a VARCHAR) STORED AS CSV LOCATION '/etc/passwd'".into(),
            "external table",
        ),
        ("SELECT * FROM '/etc/passwd'".into(), "URL table"),
        ("SELECT * FROM read_csv('/etc/passwd')".into(), "file function"),
        ("SELECT * FROM read_parquet('/etc/passwd')".into(), "file function"),
        ("INSERT INTO entries (method) VALUES ('x')".into(), "DML"),
        ("DELETE FROM entries".into(), "DML"),
        ("UPDATE entries SET method = 'x'".into(), "DML"),
        ("DROP TABLE entries".into(), "DDL"),
        ("CREATE TABLE t AS SELECT 1".into(), "DDL"),
        ("CREATE VIEW v AS SELECT * FROM entries".into(), "DDL"),
        ("SET datafusion.execution.target_partitions = 1000".into(), "SET"),
        ("SHOW TABLES".into(), "catalog"),
        ("SELECT * FROM information_schema.tables".into(), "catalog"),
        ("PREPARE p AS SELECT 1".into(), "statement"),
        ("SELECT 1; DROP TABLE entries".into(), "two statements"),
        (
            format!("EXPLAIN ANALYZE COPY entries TO '{}'", copy_target.display()),
            "COPY in EXPLAIN",
        ),
        (deep, "nesting bomb"),
        (long, "too long"),
        ("SELECT * FROM entries WHERE method = 'GET".into(), "syntax"),
        ("SELECT nope FROM entries".into(), "unknown column"),
        ("SELECT 1 / 0".into(), "division by zero"),
        ("".into(), "empty"),
        (
            "WITH RECURSIVE t(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM t) SELECT count(*) FROM t"
                .into(),
            "endless aggregate (timeout)",
        ),
        (
            "WITH RECURSIVE t(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM t WHERE n < 2000000) \
             SELECT n, repeat('x', 200) AS pad FROM t ORDER BY n DESC"
                .into(),
            "sort over the memory limit",
        ),
    ];
    for (sql, what) in &hostile {
        let timeout = if what.contains("timeout") {
            2000
        } else {
            20_000
        };
        let (status, v) = post_json(&server, json!({ "sql": sql, "timeout_ms": timeout }));
        assert_eq!(status, 400, "{what}: {v}");
        let msg = v["error"]["message"].as_str().unwrap_or_default();
        assert!(!msg.is_empty(), "{what}: a message says why");
        eprintln!(
            "refused ({what}): {}",
            msg.chars().take(140).collect::<String>()
        );
    }
    // A body that is not the documented JSON.
    let r = reqwest::blocking::Client::new()
        .post(format!("{}/api/v1/sql", server.http))
        .header("content-type", "application/json")
        .body("{\"query\": 1}")
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);

    // Nothing changed and the server is fine.
    assert!(!copy_target.exists(), "COPY wrote a file");
    assert_eq!(server.get("/healthz").0, 200);
    assert_eq!(server.count(""), total);
    let (status, v) = post_json(
        &server,
        json!({ "sql": "SELECT count(*) AS n FROM entries" }),
    );
    assert_eq!(status, 200);
    assert_eq!(v["rows"][0]["n"].as_u64(), Some(total as u64));
}

/// An analyst's tool over Flight SQL: the ADBC driver (PyPI `adbc-driver-flightsql`) with
/// pyarrow runs a query and gets the same counts as the REST SQL endpoint.
#[test]
fn flight_sql_answers_an_adbc_client() {
    if !corpus_available()
        || python_module("pyarrow", "pyarrow").is_none()
        || python_module("adbc_driver_flightsql", "adbc-driver-flightsql").is_none()
    {
        return;
    }
    let dir = temp_dir("flightsql");
    let server = Server::start(&dir.join("data"));
    import(&[
        "--server",
        &server.flight,
        pcap("http1_keepalive.pcap").to_str().unwrap(),
        pcap("dns_udp.pcap").to_str().unwrap(),
    ]);
    let script = r#"
import json, sys
import adbc_driver_flightsql.dbapi as flightsql
with flightsql.connect(sys.argv[1]) as conn:
    with conn.cursor() as cur:
        cur.execute("SELECT protocol, count(*) AS n FROM entries GROUP BY protocol ORDER BY protocol")
        t = cur.fetch_arrow_table()
        print(json.dumps({"columns": t.column_names, "rows": t.to_pylist()}))
        try:
            cur.execute("DROP TABLE entries")
            cur.fetch_arrow_table()
            print("DROP accepted")
        except Exception as e:
            print(json.dumps({"refused": str(e)[:200]}))
"#;
    let out = std::process::Command::new("python3")
        .args(["-c", script, &server.flight_sql])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut lines = stdout.lines();
    let got: Value = serde_json::from_str(lines.next().unwrap()).unwrap();
    assert_eq!(got["columns"], json!(["protocol", "n"]));
    let (_, rest) = post_json(
        &server,
        json!({"sql": "SELECT protocol, count(*) AS n FROM entries GROUP BY protocol ORDER BY protocol"}),
    );
    assert_eq!(got["rows"], rest["rows"], "Flight SQL and REST agree");
    let refused: Value = serde_json::from_str(lines.next().unwrap()).unwrap();
    assert!(refused["refused"].is_string(), "{stdout}");
}
