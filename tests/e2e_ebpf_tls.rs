//! eBPF TLS capture end to end: `wiretrail agent --capture ebpf_tls` ships to a `wiretrail up
//! --no-capture`; curl (linking the system libssl) requests a python3 `ssl` HTTPS server (same
//! libssl) with a certificate made by `openssl req` at test time. After SIGTERM the stored
//! entries are exactly the requests curl made — capture `ebpf_tls`, method, path and status as
//! curl saw them, one entry per request although both ends are probed — and none is TLS
//! ciphertext. With `--kubeconfig` (the recorded-API server of the identity tests) curl run
//! inside a pod's cgroup is named after that host-network pod, and so are AF_PACKET flows to a
//! plain-HTTP server listening from a pod's cgroup (`--capture af_packet,ebpf_tls`, the
//! probes' socket events). Also: a probe that cannot load
//! falls back to AF_PACKET and says so; an unknown capture method is a clear error.
//!
//! Needs root, curl, openssl and python3; skips with a printed reason otherwise, and when the
//! kernel refuses the probes (the agent's metric says `ebpf_tls_not_supported`).

mod common;
// The identity tests' recorded-API server; this test uses only part of it.
#[allow(dead_code)]
#[path = "../agent/tests/kube_api/mod.rs"]
mod kube_api;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const HTTPS_SERVER: &str = r#"
import http.server, ssl, sys
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[1], sys.argv[2])
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def reply(self, status, body):
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def do_GET(self):
        if self.path.startswith("/missing"):
            return self.reply(404, b"no such thing")
        self.reply(200, b"hello " + self.path.encode())
    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        self.reply(201, b"got " + self.rfile.read(n))
    def log_message(self, *a): pass
s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
s.socket = ctx.wrap_socket(s.socket, server_side=True)
print(s.server_address[1], flush=True)
s.serve_forever()
"#;

/// A process killed on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn skip_reason() -> Option<String> {
    let uid = Command::new("id").arg("-u").output().ok()?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return Some("needs root (eBPF)".into());
    }
    ["curl", "openssl", "python3"]
        .into_iter()
        .find(|t| !have(t))
        .map(|t| format!("{t} not installed"))
}

/// A self-signed certificate and the HTTPS server; (server, port).
fn https_server(dir: &Path) -> (Proc, u16) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let st = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", "/CN=localhost", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success(), "openssl req");
    let mut child = Command::new("python3")
        .args(["-c", HTTPS_SERVER])
        .arg(&cert)
        .arg(&key)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port = line.trim().parse().expect("the HTTPS server's port");
    (Proc(child), port)
}

/// Starts the agent and waits for its metrics; (agent, metrics text).
fn agent(flight: &str, node: &str, extra: &[&str]) -> (Proc, String, String) {
    let mport = free_port();
    let child = Command::new(BIN)
        .args(["agent", "--server", flight, "--node", node])
        .args(["--metrics-listen", &format!("127.0.0.1:{mport}")])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut agent = Proc(child);
    let url = format!("http://127.0.0.1:{mport}/metrics");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = reqwest::blocking::get(&url) {
            return (agent, r.text().unwrap(), url);
        }
        if let Some(st) = agent.0.try_wait().unwrap() {
            let mut err = String::new();
            let _ = std::io::Read::read_to_string(agent.0.stderr.as_mut().unwrap(), &mut err);
            panic!("the agent exited ({st}): {err}");
        }
        assert!(Instant::now() < deadline, "the agent did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn terminate(p: &mut Proc) -> String {
    let st = Command::new("kill")
        .args(["-TERM", &p.0.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let out = p.0.wait().unwrap();
    assert!(out.success(), "agent exit: {out:?}");
    let mut err = String::new();
    let _ = std::io::Read::read_to_string(p.0.stderr.as_mut().unwrap(), &mut err);
    err
}

/// The agent's entries of connections to our server. The probes see every process on the
/// machine, so HTTPS that other tests (or the machine) make at the same time is left out by
/// its port; every connection to ours must be one of our requests.
fn ours(server: &Server, node: &str, port: u16) -> Vec<serde_json::Value> {
    let all = server.all(&format!("node == \"{node}\""), None, None);
    let (ours, others): (Vec<_>, Vec<_>) = all
        .into_iter()
        .partition(|e| e["dst"]["port"] == port || e["src"]["port"] == port);
    if !others.is_empty() {
        eprintln!("{} entries of other processes' TLS left out", others.len());
    }
    ours
}

fn curl(method: &str, url: &str) -> i64 {
    let mut args = vec!["-sk", "-o", "/dev/null", "-w", "%{http_code}", "-X", method];
    if method == "POST" {
        args.extend(["-d", "a=1&b=two"]);
    }
    let out = Command::new("curl").args(&args).arg(url).output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

#[test]
fn agent_records_https_plaintext() {
    if let Some(why) = skip_reason() {
        eprintln!("SKIP agent_records_https_plaintext: {why}");
        return;
    }
    let dir = temp_dir("ebpf-tls");
    let (_https, port) = https_server(&dir);
    let server = Server::start(&dir.join("data"));
    let node = format!("tls-node-{}", std::process::id());
    let (mut agent, metrics, url) = agent(&server.flight, &node, &["--capture", "ebpf_tls"]);
    if metrics.contains("reason=\"ebpf_tls_not_supported\"") {
        let err = terminate(&mut agent);
        eprintln!("SKIP agent_records_https_plaintext: the probes do not load here: {err}");
        return;
    }
    assert!(
        metrics.contains("wiretrail_capture_enabled{reason=\"ebpf_tls\"} 1"),
        "{metrics}"
    );
    assert!(
        !metrics.contains("reason=\"af_packet\""),
        "ebpf_tls alone captures no packets: {metrics}"
    );

    let mut want: BTreeMap<(String, String, i64), usize> = BTreeMap::new();
    for (method, path) in [
        ("GET", "/some/path?x=1"),
        ("GET", "/orders/42"),
        ("POST", "/orders"),
        ("GET", "/missing/thing"),
        ("DELETE", "/missing/too"),
    ] {
        let status = curl(method, &format!("https://127.0.0.1:{port}{path}"));
        *want
            .entry((method.to_string(), path.to_string(), status))
            .or_default() += 1;
    }
    // The probes' records reach the agent within its poll tick; give them a moment.
    std::thread::sleep(Duration::from_millis(500));
    let m = reqwest::blocking::get(&url).unwrap().text().unwrap();
    assert!(m.contains("wiretrail_agent_tls_events_total "), "{m}");
    assert!(
        m.contains("wiretrail_agent_tls_ringbuf_drops_total 0"),
        "{m}"
    );
    terminate(&mut agent);

    let entries = ours(&server, &node, port);
    let mut got: BTreeMap<(String, String, i64), usize> = BTreeMap::new();
    for e in &entries {
        assert_eq!(e["capture"], "ebpf_tls", "{e}");
        assert_eq!(e["protocol"], "http", "{e}");
        assert_eq!(e["dst"]["port"], port, "{e}");
        assert_eq!(e["dst"]["ip"], "127.0.0.1", "{e}");
        let k = (
            e["method"].as_str().unwrap_or_default().to_string(),
            e["path"].as_str().unwrap_or_default().to_string(),
            e["status"].as_i64().unwrap_or(-1),
        );
        *got.entry(k).or_default() += 1;
    }
    // Exactly the requests, once each although curl and the server were both probed.
    assert_eq!(got, want);
    // The full entry carries the plaintext bodies both ways.
    let post = entries.iter().find(|e| e["method"] == "POST").unwrap();
    let (code, full) = server.get(&format!("/api/v1/entries/{}", post["id"].as_str().unwrap()));
    assert_eq!(code, 200, "{full}");
    assert_eq!(full["request_body"]["data"], "a=1&b=two", "{full}");
    assert_eq!(full["response_body"]["data"], "got a=1&b=two", "{full}");
}

#[test]
fn a_process_in_a_pod_cgroup_is_named_after_its_pod() {
    if let Some(why) = skip_reason() {
        eprintln!("SKIP a_process_in_a_pod_cgroup_is_named_after_its_pod: {why}");
        return;
    }
    let uid = "0b4c5a1e-6f0d-4c8e-9a51-3d2f1e7c9b10";
    let cgroup = match PodCgroup::create(uid) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("SKIP a_process_in_a_pod_cgroup_is_named_after_its_pod: no writable cgroup v2 tree ({e})");
            return;
        }
    };
    let node = format!("tls-pod-node-{}", std::process::id());
    let dir = temp_dir("ebpf-tls-pod");
    let (_rt, api, kubeconfig) = api_with_pod(&dir, &node, ("tools", "curl-client", uid));
    let (_https, port) = https_server(&dir);
    let server = Server::start(&dir.join("data"));
    let (mut agent, metrics, _) = agent(
        &server.flight,
        &node,
        &[
            "--capture",
            "ebpf_tls",
            "--kubeconfig",
            kubeconfig.to_str().unwrap(),
        ],
    );
    if metrics.contains("reason=\"ebpf_tls_not_supported\"") {
        terminate(&mut agent);
        eprintln!(
            "SKIP a_process_in_a_pod_cgroup_is_named_after_its_pod: the probes do not load here"
        );
        return;
    }
    // curl inside the pod's cgroup.
    let url = format!("https://127.0.0.1:{port}/from/the/pod");
    let procs = cgroup.0.join("cgroup.procs");
    let out = Command::new("sh")
        .args([
            "-c",
            "echo $$ > \"$1\" && exec curl -sk -o /dev/null -w '%{http_code}' \"$2\"",
            "sh",
        ])
        .arg(&procs)
        .arg(&url)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "200", "{out:?}");
    std::thread::sleep(Duration::from_millis(500));
    terminate(&mut agent);
    drop(api);

    let entries = ours(&server, &node, port);
    assert_eq!(entries.len(), 1, "{entries:?}");
    let e = &entries[0];
    assert_eq!(e["path"], "/from/the/pod");
    assert_eq!(e["src"]["pod"], "curl-client", "{e}");
    assert_eq!(e["src"]["namespace"], "tools", "{e}");
    assert_eq!(e["src"]["ip"], "127.0.0.1", "{e}");
    // The server runs in no pod: its end keeps its address.
    assert_eq!(e["dst"]["name"], "127.0.0.1", "{e}");
    assert!(e["dst"]["pod"].is_null(), "{e}");
}

/// A pod cgroup as the kubelet's cgroupfs driver names it, under this machine's cgroup v2 tree,
/// removed on drop; an error when the tree is not writable.
struct PodCgroup(std::path::PathBuf, std::path::PathBuf);

impl PodCgroup {
    fn create(uid: &str) -> Result<PodCgroup, std::io::Error> {
        let base = wiretrail_agent::identity::cgroup::cgroup2_root().join(format!(
            "wt-e2e-{}-{}",
            std::process::id(),
            &uid[..8]
        ));
        let cgroup = base.join(format!("pod{uid}"));
        std::fs::create_dir_all(&cgroup)?;
        Ok(PodCgroup(cgroup, base))
    }
}

impl Drop for PodCgroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
        let _ = std::fs::remove_dir(&self.1);
    }
}

/// The recorded Kubernetes API serving one running host-network pod `(namespace, name, uid)` of
/// `node`, and a kubeconfig for it in `dir`. The runtime runs the server: keep it alive.
fn api_with_pod(
    dir: &Path,
    node: &str,
    (namespace, name, uid): (&str, &str, &str),
) -> (
    tokio::runtime::Runtime,
    kube_api::KubeApi,
    std::path::PathBuf,
) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let api = rt.block_on(kube_api::KubeApi::start());
    api.apply(
        "Pod",
        serde_json::json!({
            "kind": "Pod", "apiVersion": "v1",
            "metadata": {"name": name, "namespace": namespace, "uid": uid,
                "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"nodeName": node, "hostNetwork": true,
                "containers": [{"name": "main", "image": "debian:bookworm-slim"}]},
            "status": {"phase": "Running", "hostIP": "127.0.0.1", "podIP": "127.0.0.1",
                "podIPs": [{"ip": "127.0.0.1"}], "startTime": "2026-01-01T00:00:00Z"}
        }),
    );
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(&kubeconfig, api.kubeconfig()).unwrap();
    (rt, api, kubeconfig)
}

#[test]
fn a_listening_pod_process_names_its_af_packet_flows() {
    const NAME: &str = "a_listening_pod_process_names_its_af_packet_flows";
    if let Some(why) = skip_reason() {
        eprintln!("SKIP {NAME}: {why}");
        return;
    }
    let uid = "5e0d2a77-3c41-4b9e-8f16-a2c4d8e0b7f3";
    let cg = match PodCgroup::create(uid) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("SKIP {NAME}: no writable cgroup v2 tree ({e})");
            return;
        }
    };
    let node = format!("sock-pod-node-{}", std::process::id());
    let dir = temp_dir("ebpf-sock-pod");
    let (_rt, api, kubeconfig) = api_with_pod(&dir, &node, ("shop", "web-server", uid));
    let server = Server::start(&dir.join("data"));
    let (mut agent, metrics, murl) = agent(
        &server.flight,
        &node,
        &[
            "--capture",
            "af_packet,ebpf_tls",
            "--interface",
            "lo",
            "--kubeconfig",
            kubeconfig.to_str().unwrap(),
        ],
    );
    if metrics.contains("reason=\"ebpf_tls_not_supported\"") {
        terminate(&mut agent);
        eprintln!("SKIP {NAME}: the probes do not load here");
        return;
    }
    // The plain-HTTP server listens from inside the pod's cgroup, after the agent started.
    let port = free_port();
    let procs = cg.0.join("cgroup.procs");
    let _web = Proc(
        Command::new("sh")
            .args([
                "-c",
                "echo $$ > \"$1\" && exec python3 -m http.server --bind 127.0.0.1 \"$2\"",
                "sh",
            ])
            .arg(&procs)
            .arg(port.to_string())
            .current_dir(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the HTTP server did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    // curl from outside the pod.
    let out = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
        .arg(format!("http://127.0.0.1:{port}/kubeconfig"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "200", "{out:?}");
    // curl inside the pod's cgroup: its connected socket is the pod's too; the listener's
    // claim outlives the first connection's close.
    let out = Command::new("sh")
        .args([
            "-c",
            "echo $$ > \"$1\" && exec curl -s -o /dev/null -w '%{http_code}' \"$2\"",
            "sh",
        ])
        .arg(&procs)
        .arg(format!("http://127.0.0.1:{port}/data/"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "200", "{out:?}");
    std::thread::sleep(Duration::from_millis(1500));
    let m = reqwest::blocking::get(&murl).unwrap().text().unwrap();
    terminate(&mut agent);
    drop(api);
    assert!(
        m.contains("wiretrail_agent_tls_socket_claims_total ")
            && !m.contains("wiretrail_agent_tls_socket_claims_total 0\n"),
        "{m}"
    );

    let entries: Vec<_> = ours(&server, &node, port)
        .into_iter()
        .filter(|e| e["capture"] == "af_packet" && e["dst"]["port"] == port)
        .collect();
    assert_eq!(entries.len(), 2, "{entries:?}");
    let inside = entries
        .iter()
        .find(|e| e["path"] == "/data/")
        .expect("GET /data/");
    assert_eq!(inside["src"]["pod"], "web-server", "{inside}");
    assert_eq!(inside["dst"]["pod"], "web-server", "{inside}");
    let e = entries
        .iter()
        .find(|e| e["path"] == "/kubeconfig")
        .expect("GET /kubeconfig");
    assert_eq!(e["status"], 200, "{e}");
    assert_eq!(e["dst"]["pod"], "web-server", "{e}");
    assert_eq!(e["dst"]["namespace"], "shop", "{e}");
    assert_eq!(e["dst"]["ip"], "127.0.0.1", "{e}");
    // curl runs in no pod: its end keeps its address.
    assert!(e["src"]["pod"].is_null(), "{e}");
    assert_eq!(e["src"]["name"], "127.0.0.1", "{e}");
}

#[test]
fn probes_that_cannot_load_fall_back_to_af_packet() {
    if let Some(why) = skip_reason() {
        eprintln!("SKIP probes_that_cannot_load_fall_back_to_af_packet: {why}");
        return;
    }
    let dir = temp_dir("ebpf-fallback");
    let server = Server::start(&dir.join("data"));
    // /bin/sh is no libssl: the probes cannot attach, which is "not supported here".
    let (mut agent, metrics, _) = agent(
        &server.flight,
        "fallback-node",
        &[
            "--capture",
            "ebpf_tls",
            "--libssl",
            "/bin/sh",
            "--interface",
            "lo",
        ],
    );
    let err = terminate(&mut agent);
    assert!(
        metrics.contains("wiretrail_capture_enabled{reason=\"ebpf_tls_not_supported\"} 0"),
        "{metrics}"
    );
    assert!(
        metrics.contains("wiretrail_capture_enabled{reason=\"af_packet\"} 1"),
        "{metrics}"
    );
    assert!(
        err.contains("capturing with af_packet instead"),
        "the log says why: {err}"
    );
}

#[test]
fn unknown_capture_method_is_a_clear_error() {
    let o = Command::new(BIN)
        .args([
            "agent",
            "--server",
            "http://127.0.0.1:1",
            "--capture",
            "pcap_ng",
        ])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("unknown capture method") && err.contains("ebpf_tls"),
        "{err}"
    );
}
