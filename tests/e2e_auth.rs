//! Access control with the real binary (`up --auth tokens`, tokens made by `wiretrail auth
//! token add`): every operation of the OpenAPI document refuses a request without a valid
//! token (the walk reads the document, so a new route cannot slip through), roles decide what
//! a valid token may do on HTTP, Flight SQL and ingest, WebSockets take the token as a
//! subprotocol, revocation needs no restart, and no token ever reaches the server's log.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

/// `wiretrail auth token add`: the token, read from its stdout line.
fn token_add(data: &Path, name: &str, role: &str, namespaces: &str) -> String {
    let out = Command::new(BIN)
        .args(["auth", "token", "add", "--data"])
        .arg(data)
        .args(["--role", role, "--namespaces", namespaces, name])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "the token alone on stdout: {stdout:?}");
    assert!(
        lines[0].starts_with("wt_") && lines[0].len() >= 3 + 22,
        "{stdout}"
    );
    lines[0].to_string()
}

fn auth_cmd(data: &Path, args: &[&str]) -> Output {
    let out = Command::new(BIN)
        .args(["auth", "token"])
        .args(&args[..1])
        .arg("--data")
        .arg(data)
        .args(&args[1..])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `up --auth tokens EXTRA…` with its stderr in a file (to look for leaked tokens).
fn start(data: &Path, extra: &[&str]) -> (Server, PathBuf) {
    for attempt in 0..5 {
        let (hp, fp, sp) = (free_port(), free_port(), free_port());
        let log = data.with_file_name(format!("server-{attempt}.log"));
        let child = Command::new(BIN)
            .args(["up", "--no-capture", "--auth", "tokens", "--data"])
            .arg(data)
            .args(["--listen", &format!("127.0.0.1:{hp}")])
            .args(["--flight-listen", &format!("127.0.0.1:{fp}")])
            .args(["--flight-sql-listen", &format!("127.0.0.1:{sp}")])
            .args(extra)
            // Debug logging of our crates: more chances for a token to leak, were it logged.
            .env(
                "WIRETRAIL_LOG",
                "info,wiretrail=debug,wiretrail_query=debug,wiretrail_ingest=debug",
            )
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut server = Server {
            child,
            http: format!("http://127.0.0.1:{hp}"),
            flight: format!("http://127.0.0.1:{fp}"),
            flight_sql: format!("http://127.0.0.1:{sp}"),
            data: data.to_path_buf(),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if reqwest::blocking::get(format!("{}/healthz", server.http))
                .is_ok_and(|r| r.status().is_success())
            {
                return (server, log);
            }
            if server.child.try_wait().ok().flatten().is_some() {
                break;
            }
            assert!(Instant::now() < deadline, "up did not become healthy");
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!(
            "up exited at start: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }
    panic!("up --auth tokens did not start");
}

/// Stops the server and checks its log holds none of `tokens`.
fn assert_no_token_logged(server: Server, log: &Path, tokens: &[&str]) {
    server.kill();
    let text = std::fs::read_to_string(log).unwrap();
    assert!(text.contains("token authentication on"), "{text}");
    for t in tokens {
        // Also the part after the prefix, in case something logged a fragment.
        assert!(
            !text.contains(&t[3..]),
            "a token is in the server's log:\n{text}"
        );
    }
}

fn request(
    method: &str,
    url: &str,
    body: Option<&Value>,
    token: Option<&str>,
) -> reqwest::blocking::Response {
    let c = reqwest::blocking::Client::new();
    let mut rb = c.request(method.to_uppercase().parse().unwrap(), url);
    if let Some(b) = body {
        rb = rb.json(b);
    }
    if let Some(t) = token {
        rb = rb.bearer_auth(t);
    }
    rb.send().unwrap()
}

const ADMIN_ONLY: [&str; 2] = ["post /api/v1/snapshots", "delete /api/v1/snapshots/{name}"];
const OPEN: [&str; 2] = ["/healthz", "/metrics"];

#[test]
fn every_operation_of_the_openapi_document_needs_a_token_and_roles_decide() {
    if !corpus_available() {
        return;
    }
    let dir = temp_dir("auth-walk");
    let data = dir.join("data");
    let viewer = token_add(&data, "vera", "viewer", "shop,payments");
    let admin = token_add(&data, "adam", "admin", "*");
    let agent = token_add(&data, "agent-node-a", "agent", "*");
    let (server, log) = start(&data, &[]);
    import_cluster_mix(&server.flight, &["--token", &agent]);

    let (status, _) = server.get("/api/v1/openapi.json");
    assert_eq!(status, 401, "the document itself needs a token");
    let doc: Value = request(
        "get",
        &format!("{}/api/v1/openapi.json", server.http),
        None,
        Some(&viewer),
    )
    .json()
    .unwrap();
    let page: Value = request(
        "get",
        &format!("{}/api/v1/entries?limit=1", server.http),
        None,
        Some(&viewer),
    )
    .json()
    .unwrap();
    let id = page["entries"][0]["id"].as_str().unwrap().to_string();
    let wrong = format!("wt_{}", "A".repeat(43));

    let mut walked = 0;
    // What the walk is refused, to compare with the server's counters (1: the document).
    let (mut unauthenticated, mut forbidden) = (1, 0);
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            walked += 1;
            let key = format!("{method} {path}");
            let url = format!(
                "{}{}",
                server.http,
                path.replace("{id}", &id)
                    .replace("{tag}", "namespace")
                    .replace("{name}", "walk")
            );
            let body = op.get("requestBody").map(|_| {
                if path.ends_with("/sql") {
                    json!({"sql": "SELECT count(*) AS n FROM entries"})
                } else {
                    json!({"name": "walk"})
                }
            });
            let open = OPEN.contains(&path.as_str());
            for token in [None, Some(wrong.as_str())] {
                let r = request(method, &url, body.as_ref(), token);
                let status = r.status().as_u16();
                if open {
                    assert_eq!(status, 200, "{key} is open");
                    continue;
                }
                assert_eq!(status, 401, "{key} without a valid token");
                unauthenticated += 1;
                assert_eq!(
                    r.headers()["www-authenticate"].to_str().unwrap(),
                    "Bearer realm=\"wiretrail\"",
                    "{key}"
                );
                let text = r.text().unwrap();
                assert!(!text.contains(&wrong), "{key} echoes the token: {text}");
                let v: Value = serde_json::from_str(&text).unwrap();
                assert!(
                    v["error"]["message"].as_str().unwrap().contains("token"),
                    "{key}: {v}"
                );
            }
            let status = |t: &str| {
                request(method, &url, body.as_ref(), Some(t))
                    .status()
                    .as_u16()
            };
            let s = status(&agent);
            assert_eq!(s, if open { 200 } else { 403 }, "{key} as an agent");
            forbidden += u64::from(!open);
            let s = status(&viewer);
            forbidden += u64::from(s == 403);
            assert_ne!(s, 401, "{key} as a viewer");
            assert_eq!(
                s == 403,
                ADMIN_ONLY.contains(&key.as_str()),
                "{key} as a viewer: {s}"
            );
            let s = status(&admin);
            assert!(s != 401 && s != 403, "{key} as an admin: {s}");
            if key == "post /api/v1/snapshots" {
                assert_eq!(s, 201, "an admin makes a snapshot");
            }
        }
    }
    assert!(walked >= 19, "only {walked} operations in the document");

    // The dashboard's assets are public; its API calls are not.
    let r = request("get", &format!("{}/", server.http), None, None);
    assert!(![401, 403].contains(&r.status().as_u16()), "{}", r.status());
    assert!(
        metric(
            &server,
            "wiretrail_http_auth_rejected_total{reason=\"unauthenticated\"}"
        ) >= unauthenticated as f64
    );
    assert!(
        metric(
            &server,
            "wiretrail_http_auth_rejected_total{reason=\"forbidden\"}"
        ) >= forbidden as f64
    );

    // Flight SQL: viewers and admins.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sql = |token: Option<&str>| {
        rt.block_on(async {
            let channel = tonic::transport::Endpoint::from_shared(server.flight_sql.clone())
                .unwrap()
                .connect()
                .await
                .unwrap();
            let mut c = arrow_flight::sql::client::FlightSqlServiceClient::new(channel);
            if let Some(t) = token {
                c.set_token(t.to_string());
            }
            c.execute("SELECT count(*) FROM entries".into(), None)
                .await
                .map(|_| ())
                .map_err(|e| format!("{e:?}"))
        })
    };
    sql(Some(&viewer)).unwrap();
    assert!(sql(None).unwrap_err().contains("Unauthenticated"));
    assert!(sql(Some(&wrong)).unwrap_err().contains("Unauthenticated"));
    assert!(sql(Some(&agent)).unwrap_err().contains("PermissionDenied"));

    // The CLI sends the token (here from the environment) and says what is missing.
    let query = |token: Option<&str>| {
        let mut c = Command::new(BIN);
        c.args(["query", "--server", &server.http, "--format", "json", "dns"]);
        c.env_remove("WIRETRAIL_TOKEN");
        if let Some(t) = token {
            c.env("WIRETRAIL_TOKEN", t);
        }
        c.output().unwrap()
    };
    let out = query(Some(&viewer));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(!v["entries"].as_array().unwrap().is_empty());
    let out = query(None);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("401") && err.contains("WIRETRAIL_TOKEN"),
        "{err}"
    );
    let out = Command::new(BIN)
        .args([
            "snapshot",
            "list",
            "--server",
            &server.http,
            "--format",
            "json",
        ])
        .env("WIRETRAIL_TOKEN", &viewer)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new(BIN)
        .args(["snapshot", "create", "--server", &server.http, "cli-snap"])
        .env("WIRETRAIL_TOKEN", &viewer)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("403") && err.contains("admin"),
        "{err}"
    );

    assert_no_token_logged(server, &log, &[&viewer, &admin, &agent, &wrong]);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Runs `wiretrail import --server …` of the cluster capture; (success, stderr, seconds).
fn import_with(server: &Server, token: Option<&str>, extra: &[&str]) -> (bool, String, f64) {
    let mut c = Command::new(BIN);
    c.args([
        "import",
        "--format",
        "json",
        "--server",
        &server.flight,
        "--node",
        "node-a",
    ])
    .args(extra)
    .arg(pcap("cluster_mix.pcap"))
    .env_remove("WIRETRAIL_TOKEN");
    if let Some(t) = token {
        c.env("WIRETRAIL_TOKEN", t);
    }
    let started = Instant::now();
    let out = c.output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        started.elapsed().as_secs_f64(),
    )
}

#[test]
fn ingest_takes_agent_and_admin_tokens_and_refuses_others_at_once() {
    if !corpus_available() {
        return;
    }
    let dir = temp_dir("auth-ingest");
    let data = dir.join("data");
    let viewer = token_add(&data, "vera", "viewer", "*");
    let agent = token_add(&data, "node-a", "agent", "*");
    let (server, log) = start(&data, &["--metrics-auth"]);

    let (ok, err, _) = import_with(&server, Some(&agent), &[]);
    assert!(ok, "{err}");
    let (status, _) = server.get("/api/v1/count");
    assert_eq!(status, 401);
    let count: Value = request(
        "get",
        &format!("{}/api/v1/count", server.http),
        None,
        Some(&viewer),
    )
    .json()
    .unwrap();
    assert!(count["count"].as_u64().unwrap() > 1000, "{count}");

    let spool = dir.join("spool");
    let wrong = format!("wt_{}", "B".repeat(43));
    for (token, extra, says) in [
        (None, vec![], "needs a bearer token"),
        (Some(viewer.as_str()), vec![], "may not ship entries"),
        (Some(wrong.as_str()), vec![], "not valid"),
        (
            None,
            vec!["--spool", spool.to_str().unwrap()],
            "needs a bearer token",
        ),
    ] {
        let (ok, err, secs) = import_with(&server, token, &extra);
        assert!(!ok, "import succeeded without an agent token");
        assert!(secs < 10.0, "the refusal took {secs:.1} s: {err}");
        assert!(
            err.contains("refused") && err.contains(says),
            "{says}: {err}"
        );
    }
    // `--metrics-auth`: the counters need a token too.
    assert_eq!(server.get("/metrics").0, 401);
    let text = request(
        "get",
        &format!("{}/metrics", server.http),
        None,
        Some(&viewer),
    )
    .text()
    .unwrap();
    let value = |l: &str| -> u64 {
        text.lines()
            .find_map(|x| x.strip_prefix(l))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("{l}: {text}"))
    };
    assert!(value("wiretrail_ingest_auth_rejected_total{reason=\"unauthenticated\"}") >= 3);
    assert!(value("wiretrail_ingest_auth_rejected_total{reason=\"forbidden\"}") >= 1);
    assert_no_token_logged(server, &log, &[&viewer, &agent, &wrong]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websockets_take_the_token_as_a_subprotocol_and_revocation_needs_no_restart() {
    use futures::StreamExt;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::http::HeaderValue;
    use tokio_tungstenite::tungstenite::Message;
    if !corpus_available() {
        return;
    }
    let dir = temp_dir("auth-ws");
    let data = dir.join("data");
    let viewer = token_add(&data, "vera", "viewer", "*");
    let agent = token_add(&data, "node-a", "agent", "*");
    let (server, log) = tokio::task::block_in_place(|| start(&data, &[]));
    let ws_url = format!(
        "{}/api/v1/stream?kfl=dns",
        server.http.replace("http://", "ws://")
    );
    let connect = |header: Option<(&'static str, String)>| {
        let mut req = ws_url.clone().into_client_request().unwrap();
        if let Some((k, v)) = header {
            req.headers_mut()
                .insert(k, HeaderValue::from_str(&v).unwrap());
        }
        tokio_tungstenite::connect_async(req)
    };
    let refused = |r: Result<_, tokio_tungstenite::tungstenite::Error>| match r {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => resp.status().as_u16(),
        Err(e) => panic!("{e}"),
        Ok(_) => 101,
    };
    assert_eq!(refused(connect(None).await.map(|_| ())), 401);
    let bad = Some((
        "sec-websocket-protocol",
        "wiretrail, bearer.wt_nope".to_string(),
    ));
    assert_eq!(refused(connect(bad).await.map(|_| ())), 401);
    let agent_ws = Some(("authorization", format!("Bearer {agent}")));
    assert_eq!(refused(connect(agent_ws).await.map(|_| ())), 403);

    // As a browser does it: the token as a subprotocol, `wiretrail` chosen in the answer.
    let (mut tail, resp) = connect(Some((
        "sec-websocket-protocol",
        format!("wiretrail, bearer.{viewer}"),
    )))
    .await
    .unwrap();
    assert_eq!(resp.headers()["sec-websocket-protocol"], "wiretrail");
    // The token alone: echoed, since a handshake must answer with an offered protocol.
    let (_, resp) = connect(Some(("sec-websocket-protocol", format!("bearer.{viewer}"))))
        .await
        .unwrap();
    assert_eq!(
        resp.headers()["sec-websocket-protocol"].to_str().unwrap(),
        format!("bearer.{viewer}")
    );
    let (_, _) = connect(Some(("authorization", format!("Bearer {viewer}"))))
        .await
        .unwrap();
    let srv = &server;
    let agent2 = agent.clone();
    tokio::task::block_in_place(|| import_cluster_mix(&srv.flight, &["--token", &agent2]));
    let first = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match tail.next().await {
                Some(Ok(Message::Text(t))) => return serde_json::from_str::<Value>(&t).unwrap(),
                Some(Ok(_)) => continue,
                other => panic!("tail ended: {other:?}"),
            }
        }
    })
    .await
    .expect("an entry on the tail");
    assert_eq!(first["type"], "entry", "{first}");
    assert_eq!(first["entry"]["protocol"], "dns", "{first}");

    tokio::task::block_in_place(|| {
        let count = |t: &str| {
            request(
                "get",
                &format!("{}/api/v1/count", server.http),
                None,
                Some(t),
            )
            .status()
            .as_u16()
        };
        let within = |what: &str, ok: &dyn Fn() -> bool| {
            let deadline = Instant::now() + Duration::from_secs(5);
            while !ok() {
                assert!(
                    Instant::now() < deadline,
                    "{what} did not take effect within 5 s"
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        };
        assert_eq!(count(&viewer), 200);
        // A token added while the server runs works without a restart…
        let late = token_add(&data, "late", "viewer", "*");
        within("adding a token", &|| count(&late) == 200);
        // …and a revoked one stops working.
        auth_cmd(&data, &["revoke", "vera"]);
        within("revoking a token", &|| count(&viewer) == 401);
        assert_eq!(count(&late), 200);
        // A broken file keeps the last good one (and says why in the log).
        let file = data.join("auth").join("tokens.json");
        std::fs::write(&file, b"{\"principals\": [").unwrap();
        std::thread::sleep(Duration::from_millis(2500));
        assert_eq!(count(&late), 200);
        assert_eq!(count(&viewer), 401);
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(
            text.contains("cannot be used, the last good one stays in force"),
            "{text}"
        );
        assert_no_token_logged(server, &log, &[&viewer, &agent, &late]);
    });
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_token_commands_keep_hashes_only_and_unsupported_modes_do_not_start() {
    let dir = temp_dir("auth-cli");
    let data = dir.join("data");
    let t = token_add(&data, "ci@example", "admin", "*");
    let u = token_add(&data, "ops", "viewer", "shop,payments");
    let file = data.join("auth").join("tokens.json");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(!text.contains(&t) && !text.contains(&u), "{text}");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let out = auth_cmd(&data, &["list", "--format", "json"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["principals"][1]["name"], "ops");
    assert_eq!(v["principals"][1]["namespaces"], "payments,shop");
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(
        !listed.contains("sha256") && !listed.contains(&t[3..]),
        "{listed}"
    );
    // A name is unique; a bad role or namespace is refused.
    for args in [
        vec!["add", "--role", "viewer", "ops"],
        vec!["add", "--role", "root", "x"],
        vec![
            "add",
            "--role",
            "viewer",
            "--namespaces",
            "Not_A_Namespace",
            "x",
        ],
        vec!["revoke", "nobody"],
    ] {
        let out = Command::new(BIN)
            .args(["auth", "token", args[0], "--data"])
            .arg(&data)
            .args(&args[1..])
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?}");
    }

    let up = |data: &Path, mode: &str| {
        let started = Instant::now();
        let out = Command::new(BIN)
            .args(["up", "--no-capture", "--auth", mode, "--data"])
            .arg(data)
            .args(["--listen", &format!("127.0.0.1:{}", free_port())])
            .args(["--flight-listen", &format!("127.0.0.1:{}", free_port())])
            .args(["--flight-sql-listen", &format!("127.0.0.1:{}", free_port())])
            .output()
            .unwrap();
        assert!(started.elapsed() < Duration::from_secs(10));
        assert!(!out.status.success(), "up --auth {mode} started");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    for mode in ["jwt", "kubernetes"] {
        let err = up(&data, mode);
        assert!(err.contains("not supported in this build yet"), "{err}");
    }
    let err = up(&dir.join("empty"), "tokens");
    assert!(err.contains("wiretrail auth token add"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
