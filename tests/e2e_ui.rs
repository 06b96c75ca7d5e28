//! The web dashboard in a real browser: Debian's Chromium driven by Playwright for Python
//! (`tests/ui/dashboard.py`) on a `wiretrail up` that serves the embedded `ui/dist` and holds
//! `cluster_mix.pcap` imported with its identities. The script's expected figures come from
//! the corpus's truth and phases files; see its flows. A second test checks that the committed
//! `ui/dist` is what `npm ci && npm run build` makes from `ui/` (when npm is present).

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// The Playwright for Python release the flows are written against.
const PLAYWRIGHT: &str = "playwright==1.65.3";
const CHROMIUM: &str = "/usr/bin/chromium";
/// The whole browser run may take this long.
const BOUND: Duration = Duration::from_secs(300);

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Debian's Chromium at /usr/bin/chromium, installed with apt when running as root; `None`
/// (after printing why) when it cannot be had.
fn chromium() -> Option<()> {
    if Path::new(CHROMIUM).exists() {
        return Some(());
    }
    if !is_root() {
        eprintln!("SKIP: {CHROMIUM} is missing and this is not root (./dev.sh installs it)");
        return None;
    }
    eprintln!("{CHROMIUM} is missing: apt-get install -y chromium");
    let ok = Command::new("sh")
        .args([
            "-c",
            "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium",
        ])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if ok && Path::new(CHROMIUM).exists() {
        Some(())
    } else {
        eprintln!("SKIP: cannot install chromium with apt-get");
        None
    }
}

/// Runs `cmd`, its output going straight to the test's, killed after `bound`.
fn run_bounded(cmd: &mut Command, bound: Duration) -> std::process::ExitStatus {
    let mut child = cmd.spawn().expect("start the browser script");
    let deadline = Instant::now() + bound;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the browser flows did not finish in {} s", bound.as_secs());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn dashboard_user_flows_in_chromium() {
    if !corpus_available() {
        return;
    }
    if python_module("playwright", PLAYWRIGHT).is_none() || chromium().is_none() {
        return;
    }
    let dir = temp_dir("ui");
    let server = Server::start(&dir.join("data"));
    import_cluster_mix(&server.flight, &[]);

    // The dashboard is served at `/` from the assets embedded in the binary.
    let r = reqwest::blocking::get(format!("{}/", server.http)).unwrap();
    let status = r.status();
    let mut body = String::new();
    r.take(1 << 20).read_to_string(&mut body).unwrap();
    assert!(
        status.is_success() && body.to_ascii_lowercase().contains("<html"),
        "GET / must serve the dashboard: HTTP {status}: {}",
        body.chars().take(200).collect::<String>()
    );

    run_flows(&server, &dir.join("screenshots"), &[]);
    drop(server);
    let _ = std::fs::remove_dir_all(dir.join("data"));
}

/// Runs `tests/ui/dashboard.py` against `server` with `extra` arguments; panics when a flow fails.
fn run_flows(server: &Server, out: &Path, extra: &[&str]) {
    std::fs::create_dir_all(out).unwrap();
    eprintln!("screenshots and downloads: {}", out.display());
    let status = run_bounded(
        Command::new("python3")
            .arg("-u")
            .arg(repo().join("tests/ui/dashboard.py"))
            .args([
                "--url",
                &server.http,
                "--flight",
                &server.flight,
                "--bin",
                BIN,
            ])
            .arg("--corpus")
            .arg(corpus())
            .arg("--out")
            .arg(out)
            .args(extra)
            .stdin(Stdio::null()),
        BOUND,
    );
    assert!(
        status.success(),
        "browser flows failed ({status}); screenshots in {}",
        out.display()
    );
}

/// `wiretrail auth token add --data DATA NAME --role ROLE`: the token (its stdout line).
fn token_add(data: &Path, name: &str, role: &str) -> String {
    let out = Command::new(BIN)
        .args(["auth", "token", "add", "--data"])
        .arg(data)
        .args(["--role", role, name])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "auth token add: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(token.starts_with("wt_"), "a token on stdout: {token:?}");
    token
}

/// `wiretrail up --auth tokens` (retried on other ports when one was taken).
fn start_with_tokens(data: &Path) -> Server {
    for _ in 0..5 {
        let mut s = Server::spawn_on(data, free_port(), free_port(), &["--auth", "tokens"]);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if reqwest::blocking::get(format!("{}/healthz", s.http))
                .is_ok_and(|r| r.status().is_success())
            {
                return s;
            }
            if s.child.try_wait().ok().flatten().is_some() {
                eprintln!("up --auth tokens exited at start (a port was taken?); retrying");
                break;
            }
            assert!(
                Instant::now() < deadline,
                "up --auth tokens did not become healthy in 60 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    panic!("up --auth tokens did not start in 5 attempts");
}

/// The dashboard on `up --auth tokens`: the sign-in screen, a refused token, the viewer's reads
/// (the Token query's 112 entries from the truth, SQL and its download, live tail through the
/// `bearer.<token>` WebSocket subprotocol), a 403 shown in place, sign-out, and the admin's
/// snapshot downloaded with the token (`tests/ui/dashboard.py`, token flows).
#[test]
fn dashboard_sign_in_with_tokens_in_chromium() {
    if !corpus_available() {
        return;
    }
    if python_module("playwright", PLAYWRIGHT).is_none() || chromium().is_none() {
        return;
    }
    let dir = temp_dir("ui-auth");
    let data = dir.join("data");
    let viewer = token_add(&data, "ui-viewer", "viewer");
    let admin = token_add(&data, "ui-admin", "admin");
    let agent = token_add(&data, "ui-agent", "agent");
    let server = start_with_tokens(&data);

    // Without a token the API refuses; the dashboard's files are public.
    let r = reqwest::blocking::get(format!("{}/api/v1/boundaries", server.http)).unwrap();
    assert_eq!(r.status().as_u16(), 401, "the API needs a token");
    let r = reqwest::blocking::get(format!("{}/", server.http)).unwrap();
    assert!(
        r.status().is_success(),
        "GET / is public: HTTP {}",
        r.status()
    );

    import_cluster_mix(&server.flight, &["--token", &agent]);
    run_flows(
        &server,
        &dir.join("screenshots"),
        &[
            "--token-viewer",
            &viewer,
            "--token-admin",
            &admin,
            "--token-agent",
            &agent,
        ],
    );
    drop(server);
    let _ = std::fs::remove_dir_all(&data);
}

/// Files under `dir` (relative, sorted) with their bytes.
fn tree(dir: &Path) -> Vec<(String, Vec<u8>)> {
    files_under(dir, |_| true)
        .into_iter()
        .map(|p| {
            let rel = p.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
            let bytes = std::fs::read(&p).unwrap();
            (rel, bytes)
        })
        .collect()
}

/// Copies `from` into `to`, leaving out `node_modules` and `dist`.
fn copy_sources(from: &Path, to: &Path) {
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let name = e.file_name();
        if name == "node_modules" || name == "dist" {
            continue;
        }
        let (src, dst) = (e.path(), to.join(&name));
        if src.is_dir() {
            std::fs::create_dir_all(&dst).unwrap();
            copy_sources(&src, &dst);
        } else {
            std::fs::copy(&src, &dst).unwrap();
        }
    }
}

#[test]
fn committed_ui_build_is_fresh() {
    let ui = repo().join("ui");
    let dist = ui.join("dist");
    assert!(
        dist.join("index.html").is_file(),
        "ui/dist/index.html is missing: the built dashboard must be committed (cd ui && npm ci && npm run build)"
    );
    if !have("npm") || !have("node") {
        eprintln!("SKIP: node/npm not installed: cannot rebuild ui/ to compare with ui/dist");
        return;
    }
    let dir = temp_dir("ui-build");
    let copy = dir.join("ui");
    std::fs::create_dir_all(&copy).unwrap();
    copy_sources(&ui, &copy);
    for args in [
        &["ci", "--no-audit", "--no-fund"][..],
        &["run", "build"][..],
        // The UI's unit tests (vitest): URL state, KFL clauses, copy-as-curl quoting, times.
        &["test"][..],
    ] {
        let out = Command::new("npm")
            .args(args)
            .current_dir(&copy)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "npm {args:?} failed in a copy of ui/:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let (built, committed) = (tree(&copy.join("dist")), tree(&dist));
    let names = |t: &[(String, Vec<u8>)]| t.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    assert_eq!(
        names(&built),
        names(&committed),
        "ui/dist is stale: the files differ from a fresh `npm run build` (rebuild and commit ui/dist)"
    );
    for ((name, a), (_, b)) in built.iter().zip(&committed) {
        assert!(
            a == b,
            "ui/dist/{name} is stale: it differs from a fresh `npm run build` (rebuild and commit ui/dist)"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
