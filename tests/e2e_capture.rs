//! Live capture end to end, with real servers and real clients in network namespaces.
//!
//! 1. `agent_on_veth`: two namespaces joined by a veth pair (addresses only inside them),
//!    Python's http.server, redis-server and dnsmasq in one, curl, redis-cli and dig in the
//!    other; `wiretrail agent` captures on the server's veth (`--netns`) and ships to a
//!    `wiretrail up --no-capture`; after SIGTERM the stored entries equal what the clients sent
//!    (methods, paths, statuses as the clients saw them; Redis commands and keys; DNS names and
//!    rcodes as dig printed them), and the kernel drop counter is exported.
//! 2. `up_captures_loopback`: `wiretrail up` inside a fresh namespace captures its `lo`
//!    in-process; the entries equal the curl requests and none is of its own API traffic.
//! 3. `up_without_permission`: without CAP_NET_RAW, `up` says so in one line and a metric.
//!
//! Needs root and `ip netns`; each server binary that is missing skips its part with a printed
//! reason (./dev.sh installs redis-server, dnsmasq-base and bind9-dnsutils).

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

fn sh(cmd: &[&str]) -> Output {
    Command::new(cmd[0])
        .args(&cmd[1..])
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"))
}

fn ok(cmd: &[&str]) -> String {
    let o = sh(cmd);
    assert!(
        o.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Root and a working `ip netns`, or a printed reason.
fn netns_available(test: &str) -> bool {
    let uid = String::from_utf8_lossy(&sh(&["id", "-u"]).stdout)
        .trim()
        .to_string();
    if uid != "0" {
        eprintln!("SKIP {test}: needs root (network namespaces, AF_PACKET)");
        return false;
    }
    if !have("ip") {
        eprintln!("SKIP {test}: `ip` (iproute2) not found");
        return false;
    }
    // Unique per call: the tests of this file run in parallel and each probes.
    static PROBES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = PROBES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let probe = format!("wtprobe{}-{n}", std::process::id());
    if !sh(&["ip", "netns", "add", &probe]).status.success() {
        eprintln!("SKIP {test}: `ip netns add` does not work here");
        return false;
    }
    let _ = sh(&["ip", "netns", "del", &probe]);
    true
}

/// Network namespaces (and the veth between them) deleted on drop, also when a test fails.
struct Netns {
    names: Vec<String>,
    veth: Option<String>,
}

impl Drop for Netns {
    fn drop(&mut self) {
        for n in &self.names {
            let _ = sh(&["ip", "netns", "del", n]);
        }
        if let Some(v) = &self.veth {
            // Gone with its namespace unless setup failed before moving it.
            let _ = Command::new("ip")
                .args(["link", "del", v])
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// A process killed on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_in(ns: &str, cmd: &[&str]) -> Proc {
    Proc(
        Command::new("ip")
            .args(["netns", "exec", ns])
            .args(cmd)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{cmd:?}: {e}")),
    )
}

fn run_in(ns: &str, cmd: &[&str]) -> Output {
    Command::new("ip")
        .args(["netns", "exec", ns])
        .args(cmd)
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"))
}

/// Waits until something listens on `port` in `ns` (checked with `ss`, so the check itself
/// sends no traffic the capture could see).
fn wait_listening(ns: &str, port: u16, udp: bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let flag = if udp { "-lun" } else { "-ltn" };
    loop {
        let out = String::from_utf8_lossy(&run_in(ns, &["ss", flag]).stdout).into_owned();
        if out.contains(&format!(":{port} ")) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "nothing listens on {port} in {ns}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn terminate(p: &mut Proc) -> std::process::ExitStatus {
    assert!(sh(&["kill", "-TERM", &p.0.id().to_string()])
        .status
        .success());
    p.0.wait().unwrap()
}

/// (method, path, status) multiset of HTTP entries.
fn http_tuples(entries: &[Value]) -> BTreeMap<(String, String, i64), usize> {
    let mut m = BTreeMap::new();
    for e in entries {
        let k = (
            e["method"].as_str().unwrap_or_default().to_string(),
            e["path"].as_str().unwrap_or_default().to_string(),
            e["status"].as_i64().unwrap_or(-1),
        );
        *m.entry(k).or_default() += 1;
    }
    m
}

/// Files for http.server and the requests the HTTP clients make.
fn http_site(dir: &Path) -> Vec<(&'static str, &'static str)> {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("index.html"), "<h1>wiretrail</h1>").unwrap();
    std::fs::write(dir.join("a.txt"), "a".repeat(5000)).unwrap();
    vec![
        ("GET", "/index.html"),
        ("GET", "/a.txt?x=1&y=two"),
        ("HEAD", "/a.txt"),
        ("GET", "/missing"),
        ("POST", "/form"),
        ("GET", "/"),
    ]
}

/// Runs curl in `ns` and returns the status it saw.
fn curl(ns: &str, method: &str, url: &str) -> i64 {
    let mut args = vec!["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}"];
    if method == "HEAD" {
        args.push("-I");
    } else {
        args.extend(["-X", method]);
    }
    if method == "POST" {
        args.extend(["-d", "a=1"]);
    }
    args.push(url);
    let out = run_in(ns, &args);
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

fn rcode(status: &str) -> i64 {
    match status {
        "NOERROR" => 0,
        "FORMERR" => 1,
        "SERVFAIL" => 2,
        "NXDOMAIN" => 3,
        "NOTIMP" => 4,
        "REFUSED" => 5,
        other => panic!("unexpected DNS status {other}"),
    }
}

#[test]
fn agent_on_veth() {
    if !netns_available("agent_on_veth") || !corpus_available() {
        return;
    }
    let pid = std::process::id();
    let (srv, cli) = (format!("wtcapS{pid}"), format!("wtcapC{pid}"));
    let (va, vb) = (format!("wtva{pid}"), format!("wtvb{pid}"));
    let _ns = Netns {
        names: vec![srv.clone(), cli.clone()],
        veth: Some(va.clone()),
    };
    ok(&["ip", "netns", "add", &srv]);
    ok(&["ip", "netns", "add", &cli]);
    ok(&[
        "ip", "link", "add", &va, "type", "veth", "peer", "name", &vb,
    ]);
    ok(&["ip", "link", "set", &va, "netns", &srv]);
    ok(&["ip", "link", "set", &vb, "netns", &cli]);
    for (ns, dev, addr, addr6) in [
        (&srv, &va, "10.77.0.1/24", "fd77::1/64"),
        (&cli, &vb, "10.77.0.2/24", "fd77::2/64"),
    ] {
        ok(&["ip", "-n", ns, "addr", "add", addr, "dev", dev]);
        ok(&[
            "ip", "-n", ns, "-6", "addr", "add", addr6, "dev", dev, "nodad",
        ]);
        ok(&["ip", "-n", ns, "link", "set", dev, "up"]);
        ok(&["ip", "-n", ns, "link", "set", "lo", "up"]);
    }

    // Servers first (their readiness is checked without traffic), then the agent.
    let dir = temp_dir("capture-veth");
    let site = http_site(&dir.join("site"));
    let site_dir = dir.join("site");
    let _http = spawn_in(
        &srv,
        &[
            "python3",
            "-m",
            "http.server",
            "8080",
            "--bind",
            "10.77.0.1",
            "--directory",
            site_dir.to_str().unwrap(),
        ],
    );
    wait_listening(&srv, 8080, false);
    // The same site over IPv6.
    let _http6 = spawn_in(
        &srv,
        &[
            "python3",
            "-m",
            "http.server",
            "8081",
            "--bind",
            "fd77::1",
            "--directory",
            site_dir.to_str().unwrap(),
        ],
    );
    wait_listening(&srv, 8081, false);
    let redis = have("redis-server") && have("redis-cli");
    let _redis = redis.then(|| {
        let p = spawn_in(
            &srv,
            &[
                "redis-server",
                "--bind",
                "10.77.0.1",
                "--port",
                "6379",
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "no",
            ],
        );
        wait_listening(&srv, 6379, false);
        p
    });
    if !redis {
        eprintln!("SKIP agent_on_veth (redis part): redis-server/redis-cli not installed");
    }
    let dns = have("dnsmasq") && have("dig");
    let _dns = dns.then(|| {
        let pidfile = dir.join("dnsmasq.pid");
        let p = spawn_in(
            &srv,
            &[
                "dnsmasq",
                "--no-daemon",
                "--conf-file=/dev/null",
                "--no-resolv",
                "--no-hosts",
                "--bind-interfaces",
                "--listen-address=10.77.0.1",
                "--address=/svc.test/10.77.0.9",
                &format!("--pid-file={}", pidfile.display()),
            ],
        );
        wait_listening(&srv, 53, true);
        p
    });
    if !dns {
        eprintln!("SKIP agent_on_veth (DNS part): dnsmasq or dig not installed");
    }

    let server = Server::start(&dir.join("data"));
    let mport = free_port();
    let node = format!("veth-node-{pid}");
    let netns_path = format!("/run/netns/{srv}");
    let mut cmd = Command::new(BIN);
    cmd.args(["agent", "--server", &server.flight, "--node", &node])
        .args(["--interface", &va, "--netns", &netns_path])
        .args(["--metrics-listen", &format!("127.0.0.1:{mport}")]);
    // A kernel filter (compiled by libpcap, loaded at run time) when libpcap is installed.
    let libpcap =
        String::from_utf8_lossy(&sh(&["sh", "-c", "ldconfig -p"]).stdout).contains("libpcap.so");
    if libpcap {
        cmd.args(["--filter", "tcp or udp"]);
    } else {
        eprintln!("agent_on_veth: libpcap not installed, running without --filter");
    }
    let mut agent = Proc(
        cmd.stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    let metrics_url = format!("http://127.0.0.1:{mport}/metrics");
    let deadline = Instant::now() + Duration::from_secs(30);
    while reqwest::blocking::get(&metrics_url).is_err() {
        assert!(Instant::now() < deadline, "the agent did not start");
        assert!(agent.0.try_wait().unwrap().is_none(), "the agent exited");
        std::thread::sleep(Duration::from_millis(100));
    }

    // The clients, each result as the client saw it.
    let mut want_http = BTreeMap::new();
    for (method, path) in &site {
        let status = curl(&cli, method, &format!("http://10.77.0.1:8080{path}"));
        *want_http
            .entry((method.to_string(), path.to_string(), status))
            .or_insert(0usize) += 1;
    }
    let mut want_http6 = BTreeMap::new();
    for (method, path) in &site {
        let status = curl(&cli, method, &format!("http://[fd77::1]:8081{path}"));
        *want_http6
            .entry((method.to_string(), path.to_string(), status))
            .or_insert(0usize) += 1;
    }
    let mut want_redis: BTreeMap<(String, String), usize> = BTreeMap::new();
    if redis {
        let cmds: [&[&str]; 5] = [
            &["SET", "user:1", "alice"],
            &["GET", "user:1"],
            &["INCR", "visits"],
            &["LPUSH", "queue", "a", "b"],
            &["DEL", "user:1"],
        ];
        for c in cmds {
            let mut args = vec!["redis-cli", "-h", "10.77.0.1", "-p", "6379"];
            args.extend_from_slice(c);
            let o = run_in(&cli, &args);
            assert!(o.status.success(), "redis-cli {c:?}");
            *want_redis
                .entry((c[0].to_string(), c[1].to_string()))
                .or_default() += 1;
        }
    }
    let mut want_dns: BTreeMap<(String, String, i64), usize> = BTreeMap::new();
    if dns {
        for (name, qtype) in [
            ("api.svc.test", "A"),
            ("db.svc.test", "A"),
            ("api.svc.test", "AAAA"),
            ("nowhere.example", "A"),
        ] {
            let o = run_in(
                &cli,
                &["dig", "+tries=1", "+time=3", "@10.77.0.1", name, qtype],
            );
            let text = String::from_utf8_lossy(&o.stdout);
            let status = text
                .split("status: ")
                .nth(1)
                .and_then(|s| s.split(',').next())
                .unwrap_or_else(|| panic!("dig printed no status: {text}"));
            *want_dns
                .entry((qtype.to_string(), name.to_string(), rcode(status)))
                .or_default() += 1;
        }
    }

    // Exported counters, before the agent stops.
    let m = reqwest::blocking::get(&metrics_url)
        .unwrap()
        .text()
        .unwrap();
    for name in [
        "wiretrail_agent_kernel_drops_total ",
        "wiretrail_agent_shed_streams_total ",
        "wiretrail_agent_packets_total ",
        "wiretrail_agent_live_streams ",
        "wiretrail_agent_spool_bytes ",
    ] {
        assert!(m.contains(name), "{name} missing from:\n{m}");
    }

    // SIGTERM: whatever was captured is dissected, shipped and acknowledged before exit.
    let status = terminate(&mut agent);
    assert!(status.success(), "agent exit: {status:?}");

    let kfl = |p: &str| format!("{p} and node == \"{node}\"");
    let http = server.all(&kfl("http and dst.port == 8080"), None, None);
    assert_eq!(http_tuples(&http), want_http, "HTTP entries");
    for e in &http {
        assert_eq!(e["capture"], "af_packet");
        assert_eq!(e["src"]["ip"], "10.77.0.2");
        assert_eq!(e["dst"]["ip"], "10.77.0.1");
        assert_eq!(e["dst"]["port"], 8080);
    }
    let http6 = server.all(&kfl("http and dst.port == 8081"), None, None);
    assert_eq!(http_tuples(&http6), want_http6, "HTTP entries over IPv6");
    for e in &http6 {
        assert_eq!(e["src"]["ip"], "fd77::2");
        assert_eq!(e["dst"]["ip"], "fd77::1");
    }
    if redis {
        let got: BTreeMap<(String, String), usize> = server
            .all(&kfl("redis"), None, None)
            .iter()
            .fold(BTreeMap::new(), |mut m, e| {
                let k = (
                    e["method"].as_str().unwrap_or_default().to_string(),
                    e["path"].as_str().unwrap_or_default().to_string(),
                );
                *m.entry(k).or_default() += 1;
                m
            });
        assert_eq!(got, want_redis, "Redis entries");
    }
    if dns {
        let got = http_tuples(&server.all(&kfl("dns"), None, None));
        assert_eq!(got, want_dns, "DNS entries");
    }
    // Nothing but what the clients sent.
    let want_total = want_http.values().sum::<usize>()
        + want_http6.values().sum::<usize>()
        + want_redis.values().sum::<usize>()
        + want_dns.values().sum::<usize>();
    assert_eq!(
        server.count(&format!("node == \"{node}\"")),
        want_total,
        "all entries"
    );
}

/// GET `url` from inside `ns` with curl; (status, body).
fn ns_get(ns: &str, url: &str) -> (i64, String) {
    let o = run_in(
        ns,
        &[
            "curl",
            "-s",
            "-w",
            "\n%{http_code}",
            "--max-time",
            "10",
            url,
        ],
    );
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

fn ns_entries(ns: &str, kfl: &str) -> Vec<Value> {
    let q: String = kfl
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    let (code, body) = ns_get(
        ns,
        &format!("http://127.0.0.1:8899/api/v1/entries?limit=1000&kfl={q}"),
    );
    assert_eq!(code, 200, "{kfl}: {body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    v["entries"].as_array().cloned().unwrap_or_default()
}

#[test]
fn up_captures_loopback() {
    if !netns_available("up_captures_loopback") {
        return;
    }
    let pid = std::process::id();
    let ns = format!("wtcapL{pid}");
    let _ns = Netns {
        names: vec![ns.clone()],
        veth: None,
    };
    ok(&["ip", "netns", "add", &ns]);
    ok(&["ip", "-n", &ns, "link", "set", "lo", "up"]);
    let dir = temp_dir("capture-lo");
    let site = http_site(&dir.join("site"));
    let site_dir = dir.join("site");
    let _http = spawn_in(
        &ns,
        &[
            "python3",
            "-m",
            "http.server",
            "8080",
            "--bind",
            "127.0.0.1",
            "--directory",
            site_dir.to_str().unwrap(),
        ],
    );
    wait_listening(&ns, 8080, false);
    let data = dir.join("data");
    let mut up = Proc(
        Command::new("ip")
            .args(["netns", "exec", &ns, BIN, "up", "--data"])
            .arg(&data)
            .args(["--listen", "127.0.0.1:8899"])
            .args(["--flight-listen", "127.0.0.1:8900"])
            .args(["--flight-sql-listen", "127.0.0.1:8901"])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while ns_get(&ns, "http://127.0.0.1:8899/healthz").0 != 200 {
        assert!(Instant::now() < deadline, "up did not become healthy");
        assert!(up.0.try_wait().unwrap().is_none(), "up exited");
        std::thread::sleep(Duration::from_millis(200));
    }
    let mut want = BTreeMap::new();
    for (method, path) in &site {
        let status = curl(&ns, method, &format!("http://127.0.0.1:8080{path}"));
        *want
            .entry((method.to_string(), path.to_string(), status))
            .or_insert(0usize) += 1;
    }
    // Entries arrive within about a second (the agent ships at least once a second); wait
    // for them, bounded.
    let n: usize = want.values().sum();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut got = Vec::new();
    while got.len() < n && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500));
        got = ns_entries(&ns, "http and dst.port == 8080");
    }
    assert_eq!(http_tuples(&got), want, "HTTP entries captured by up");
    assert!(got.iter().all(|e| e["capture"] == "af_packet"));
    // Its own API and Flight traffic (these very queries, the shipping) is not recorded.
    let own = ns_entries(
        &ns,
        "dst.port == 8899 or dst.port == 8900 or dst.port == 8901 or src.port == 8899 or src.port == 8900",
    );
    assert!(own.is_empty(), "own traffic recorded: {own:?}");
    let (_, m) = ns_get(&ns, "http://127.0.0.1:8899/metrics");
    assert!(
        m.contains("wiretrail_capture_enabled{reason=\"af_packet\"} 1"),
        "{m}"
    );
    assert!(m.contains("wiretrail_agent_kernel_drops_total "), "{m}");
    assert!(terminate(&mut up).success());
}

#[test]
fn up_without_permission() {
    if !netns_available("up_without_permission") {
        return;
    }
    if !have("setpriv") {
        eprintln!("SKIP up_without_permission: setpriv (util-linux) not found");
        return;
    }
    let dir = temp_dir("capture-noperm");
    let (hp, fp, sp) = (free_port(), free_port(), free_port());
    let log = dir.join("up.log");
    let mut up = Proc(
        Command::new("setpriv")
            .args([
                "--bounding-set",
                "-net_raw",
                "--inh-caps",
                "-net_raw",
                BIN,
                "up",
            ])
            .arg("--data")
            .arg(dir.join("data"))
            .args(["--listen", &format!("127.0.0.1:{hp}")])
            .args(["--flight-listen", &format!("127.0.0.1:{fp}")])
            .args(["--flight-sql-listen", &format!("127.0.0.1:{sp}")])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let url = format!("http://127.0.0.1:{hp}");
    let deadline = Instant::now() + Duration::from_secs(60);
    while reqwest::blocking::get(format!("{url}/healthz")).is_err() {
        assert!(Instant::now() < deadline, "up did not become healthy");
        assert!(up.0.try_wait().unwrap().is_none(), "up exited");
        std::thread::sleep(Duration::from_millis(200));
    }
    let m = reqwest::blocking::get(format!("{url}/metrics"))
        .unwrap()
        .text()
        .unwrap();
    assert!(
        m.contains("wiretrail_capture_enabled{reason=\"not_permitted\"} 0"),
        "{m}"
    );
    assert!(terminate(&mut up).success());
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        text.matches("not root: live capture off; use `wiretrail import`")
            .count(),
        1,
        "{text}"
    );
}
