//! Real capture of real TLS traffic: a python3 `ssl` HTTPS server with a certificate made by
//! `openssl req` at test time, requested by curl; both link the system libssl. Skips (with a
//! printed reason) unless we are root, the tools exist and the probes load here.
use std::{
    io::{BufRead, BufReader},
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::atomic::{AtomicUsize, Ordering},
    sync::{RwLock, RwLockReadGuard, RwLockWriteGuard},
    time::{Duration, Instant},
};

use wiretrail_agent::capture::ebpf::{AddrHook, TlsCapture, TlsConfig, TlsEvent};
use wiretrail_agent::AgentError;

const SERVER: &str = r#"
import http.server, socket, ssl, sys
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[1], sys.argv[2])
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        n = int(self.path.split("n=")[1]) if "n=" in self.path else 0
        body = bytes(i % 251 for i in range(n)) if n else b"hello " + self.path.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a): pass
class S(http.server.ThreadingHTTPServer):
    address_family = socket.AF_INET6 if ":" in sys.argv[3] else socket.AF_INET
s = S((sys.argv[3], 0), H)
s.socket = ctx.wrap_socket(s.socket, server_side=True)
print(s.server_address[1], flush=True)
s.serve_forever()
"#;

struct Server {
    child: Child,
    port: u16,
    _dir: TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct TempDir(PathBuf);
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// `Some(reason)` when the environment cannot run the capture tests.
fn skip_reason() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not root".into());
    }
    for tool in ["curl", "openssl", "python3"] {
        if !have(tool) {
            return Some(format!("{tool} not installed"));
        }
    }
    None
}

/// Every capture sees every process's TLS, so the test that floods the ring buffers on purpose
/// runs alone (write lock) and the others share (read lock).
static FLOOD: RwLock<()> = RwLock::new(());

enum Turn {
    Shared(#[allow(dead_code)] RwLockReadGuard<'static, ()>),
    Alone(#[allow(dead_code)] RwLockWriteGuard<'static, ()>),
}

/// A running capture holding its test's [`Turn`].
struct Capture {
    cap: TlsCapture,
    _turn: Turn,
}

impl std::ops::Deref for Capture {
    type Target = TlsCapture;
    fn deref(&self) -> &TlsCapture {
        &self.cap
    }
}

impl std::ops::DerefMut for Capture {
    fn deref_mut(&mut self) -> &mut TlsCapture {
        &mut self.cap
    }
}

/// Starts the capture, or `None` (printing why) when eBPF is not supported here.
fn start(max_capture: usize) -> Option<Capture> {
    start_with(max_capture, AddrHook::Auto)
}

fn start_with(max_capture: usize, addr_hook: AddrHook) -> Option<Capture> {
    let turn = Turn::Shared(FLOOD.read().unwrap_or_else(|e| e.into_inner()));
    start_in_turn(max_capture, addr_hook, turn)
}

fn start_in_turn(max_capture: usize, addr_hook: AddrHook, turn: Turn) -> Option<Capture> {
    if let Some(why) = skip_reason() {
        eprintln!("SKIP: {why}");
        return None;
    }
    match TlsCapture::start(TlsConfig {
        libssl: Vec::new(),
        max_capture,
        addr_hook,
        sockets: false,
    }) {
        Ok(cap) => Some(Capture { cap, _turn: turn }),
        Err(e @ AgentError::EbpfNotSupported(_)) => {
            eprintln!("SKIP: {e}");
            None
        }
        Err(e) => panic!("unexpected start error: {e}"),
    }
}

fn server(tag: &str) -> Server {
    server_with(tag, "127.0.0.1", None)
}

/// HTTPS server on `host`; `lib_dir` goes to LD_LIBRARY_PATH (to load a copied libssl).
fn server_with(tag: &str, host: &str, lib_dir: Option<&Path>) -> Server {
    static SEQ: AtomicUsize = AtomicUsize::new(0);
    let seq = SEQ.fetch_add(1, Ordering::Relaxed);
    let name = format!("ebpf-tls-{tag}-{}-{seq}", std::process::id());
    let dir = std::env::temp_dir().join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let dir = TempDir(dir);
    let (cert, key) = (dir.0.join("cert.pem"), dir.0.join("key.pem"));
    let ok = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success();
    assert!(ok, "openssl req failed");
    let script = dir.0.join("server.py");
    std::fs::write(&script, SERVER).unwrap();
    let mut cmd = Command::new("python3");
    cmd.arg(&script)
        .arg(&cert)
        .arg(&key)
        .arg(host)
        .stdout(Stdio::piped());
    if let Some(lib) = lib_dir {
        cmd.env("LD_LIBRARY_PATH", lib);
    }
    let mut child = cmd.spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port = line.trim().parse().expect("server port");
    Server {
        child,
        port,
        _dir: dir,
    }
}

fn curl(url: &str) -> (u32, Vec<u8>) {
    let child = Command::new("curl")
        .args(["-sk", url])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "curl {url} failed");
    (pid, out.stdout)
}

/// Polls until `done` holds for the events gathered so far (bounded, not a timing assertion).
fn collect(cap: &mut TlsCapture, done: impl Fn(&[TlsEvent]) -> bool) -> Vec<TlsEvent> {
    let mut evs = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done(&evs) && Instant::now() < deadline {
        cap.poll(Duration::from_millis(200), &mut evs).unwrap();
    }
    evs
}

#[test]
fn curl_https_request_and_response_with_addresses() {
    check_curl_https(AddrHook::Auto);
}

/// The preferred address hook, forced: fails (rather than skips) on kernels < 6.4.
#[test]
fn curl_https_with_the_socket_tracepoint_address_hook() {
    check_curl_https(AddrHook::SockTracepoints);
}

/// The fallback address hook (raw tracepoint on sys_enter) must report the same.
#[test]
fn curl_https_with_the_sys_enter_address_hook() {
    check_curl_https(AddrHook::SysEnter);
}

fn check_curl_https(hook: AddrHook) {
    let Some(mut cap) = start_with(16384, hook) else {
        return;
    };
    if hook != AddrHook::Auto {
        assert_eq!(cap.stats().addr_hook, Some(hook));
    }
    let srv = server("curl");
    let (curl_pid, body) = curl(&format!("https://127.0.0.1:{}/some/path?x=1", srv.port));
    assert_eq!(body, b"hello /some/path?x=1");
    let srv_pid = srv.child.id();
    let evs = collect(&mut cap, |evs| {
        let n = |pid: u32, write: bool| evs.iter().any(|e| e.pid == pid && e.write == write);
        n(curl_pid, true) && n(curl_pid, false) && n(srv_pid, true) && n(srv_pid, false)
    });
    let find = |pid: u32, write: bool, prefix: &[u8]| -> &TlsEvent {
        evs.iter()
            .find(|e| e.pid == pid && e.write == write && e.data.starts_with(prefix))
            .unwrap_or_else(|| panic!("no event pid={pid} write={write} {prefix:?}: {evs:#?}"))
    };
    let request = b"GET /some/path?x=1 HTTP/1.1";
    let c_req = find(curl_pid, true, request);
    let c_resp = find(curl_pid, false, b"HTTP/1.");
    let s_req = find(srv_pid, false, request);
    let s_resp = find(srv_pid, true, b"HTTP/1.1 200");

    let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let server_addr = SocketAddr::new(lo, srv.port);
    let curl_addr = c_req.local.expect("curl local address");
    assert_eq!(curl_addr.ip(), lo);
    for e in [c_req, c_resp] {
        assert_eq!(e.comm, "curl");
        assert_eq!((e.local, e.peer), (Some(curl_addr), Some(server_addr)));
        assert_eq!(e.conn, c_req.conn);
    }
    for e in [s_req, s_resp] {
        assert_eq!((e.local, e.peer), (Some(server_addr), Some(curl_addr)));
        assert_eq!(e.conn, s_req.conn);
    }
    // Also calls served from OpenSSL's buffer without a syscall carry the connection's
    // addresses (remembered per SSL *).
    for e in evs.iter().filter(|e| e.pid == curl_pid || e.pid == srv_pid) {
        let want = if e.pid == curl_pid {
            (Some(curl_addr), Some(server_addr))
        } else {
            (Some(server_addr), Some(curl_addr))
        };
        assert_eq!((e.local, e.peer), want, "{e:?}");
    }
    assert_eq!(c_req.len, c_req.data.len());
    assert_eq!(s_req.data, c_req.data, "the server reads what curl wrote");
    let now_us = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64;
    assert!(
        (now_us - c_req.ts_us).abs() < 60_000_000,
        "wall clock conversion"
    );
    let stats = cap.stats();
    assert!(
        stats.events >= 4 && !stats.libraries.is_empty(),
        "{stats:?}"
    );
}

#[test]
fn large_writes_are_chunked_and_truncated_with_original_length() {
    let Some(mut cap) = start(65536) else { return };
    let srv = server("large");
    let n = 100_000;
    let (_, body) = curl(&format!("https://127.0.0.1:{}/big?n={n}", srv.port));
    let expected: Vec<u8> = (0..n).map(|i| (i % 251) as u8).collect();
    assert_eq!(body, expected);
    let srv_pid = srv.child.id();
    let evs = collect(&mut cap, |evs| {
        evs.iter().any(|e| e.pid == srv_pid && e.len == n)
    });
    let big = evs
        .iter()
        .find(|e| e.pid == srv_pid && e.write && e.len == n)
        .unwrap_or_else(|| panic!("no {n}-byte SSL_write from the server: {evs:#?}"));
    assert_eq!(big.data.len(), 65536);
    assert_eq!(big.data, expected[..65536]);
}

#[test]
fn ipv6_addresses() {
    let Some(mut cap) = start(4096) else { return };
    let srv = server_with("v6", "::1", None);
    let (curl_pid, body) = curl(&format!("https://[::1]:{}/v6", srv.port));
    assert_eq!(body, b"hello /v6");
    let evs = collect(&mut cap, |evs| {
        evs.iter().any(|e| e.pid == curl_pid && e.write)
    });
    let req = evs
        .iter()
        .find(|e| e.pid == curl_pid && e.write && e.data.starts_with(b"GET /v6 "))
        .unwrap_or_else(|| panic!("no request event from curl: {evs:#?}"));
    let lo6 = IpAddr::V6(std::net::Ipv6Addr::LOCALHOST);
    assert_eq!(req.peer, Some(SocketAddr::new(lo6, srv.port)));
    assert_eq!(req.local.map(|a| a.ip()), Some(lo6));
}

/// A libssl file that only a process started after `start` maps (a copy loaded through
/// LD_LIBRARY_PATH, like a new container's library) is found by `rescan` and then captured.
#[test]
fn rescan_attaches_to_a_library_mapped_later() {
    let Some(mut cap) = start(4096) else { return };
    let Some(system_lib) = cap.stats().libraries.first().cloned() else {
        return;
    };
    let dir = TempDir(std::env::temp_dir().join(format!("ebpf-tls-lib-{}", std::process::id())));
    std::fs::create_dir_all(&dir.0).unwrap();
    std::fs::copy(&system_lib, dir.0.join("libssl.so.3")).unwrap();
    let srv = server_with("rescan", "127.0.0.1", Some(&dir.0));
    let srv_pid = srv.child.id();
    let maps = std::fs::read_to_string(format!("/proc/{srv_pid}/maps")).unwrap();
    assert!(
        maps.contains(dir.0.to_str().unwrap()),
        "server does not map the copied libssl"
    );

    assert!(
        cap.rescan() >= 1,
        "rescan found no new library: {:?}",
        cap.stats()
    );
    let copied = dir.0.join("libssl.so.3");
    let libs = cap.stats().libraries;
    assert!(
        libs.iter()
            .any(|p| p.ends_with(copied.strip_prefix("/").unwrap())),
        "{libs:?}"
    );

    let (_, body) = curl(&format!("https://127.0.0.1:{}/later", srv.port));
    assert_eq!(body, b"hello /later");
    let evs = collect(&mut cap, |evs| {
        evs.iter().any(|e| e.pid == srv_pid && !e.write)
    });
    assert!(
        evs.iter()
            .any(|e| e.pid == srv_pid && !e.write && e.data.starts_with(b"GET /later ")),
        "no server read through the copied libssl: {evs:#?}"
    );
}

/// A consumer that does not keep up loses records, and the loss is counted, not silent.
#[test]
fn ring_buffer_overflow_is_counted() {
    let alone = Turn::Alone(FLOOD.write().unwrap_or_else(|e| e.into_inner()));
    let Some(mut cap) = start_in_turn(65536, AddrHook::Auto, alone) else {
        return;
    };
    let srv = server("drops");
    // 150 responses of 64 KiB over one connection: ~19 MiB of records (server write + client
    // read) into the 8 MiB ring, which nobody drains meanwhile.
    let client = format!(
        "import http.client, ssl\n\
         c = http.client.HTTPSConnection('127.0.0.1', {}, context=ssl._create_unverified_context())\n\
         for i in range(150):\n    c.request('GET', '/d?n=65536'); assert len(c.getresponse().read()) == 65536\n",
        srv.port
    );
    let ok = Command::new("python3")
        .args(["-c", &client])
        .status()
        .unwrap()
        .success();
    assert!(ok, "python client failed");
    let drops = cap.stats().ringbuf_drops;
    assert!(drops > 0, "expected ring-buffer drops: {:?}", cap.stats());
    // The capture goes on working after the overflow.
    let mut evs = Vec::new();
    cap.poll(Duration::from_millis(500), &mut evs).unwrap();
    assert!(!evs.is_empty());
    eprintln!("drops={drops} delivered={}", evs.len());
}

#[test]
fn bogus_library_paths_are_a_clear_not_supported_error() {
    if let Some(why) = skip_reason() {
        eprintln!("SKIP: {why}");
        return;
    }
    let cases: [(&Path, &str); 2] = [
        (
            Path::new("/nonexistent/libssl.so.3"),
            "/nonexistent/libssl.so.3",
        ),
        (Path::new("/bin/sh"), "SSL_"),
    ];
    for (lib, needle) in cases {
        let cfg = TlsConfig {
            libssl: vec![lib.to_path_buf()],
            ..TlsConfig::default()
        };
        match TlsCapture::start(cfg) {
            Err(e @ AgentError::EbpfNotSupported(_)) => {
                let msg = e.to_string();
                // Kernels without eBPF support fail earlier, also with NotSupported.
                assert!(msg.contains(needle) || !msg.contains("libssl"), "{msg}");
                eprintln!("{}: {msg}", lib.display());
            }
            Err(e) => panic!("{}: expected NotSupported, got {e}", lib.display()),
            Ok(_) => panic!("{}: start succeeded", lib.display()),
        }
    }
}

/// Without privileges `start` must say what is missing instead of failing obscurely. Runs this
/// very test again as user `nobody` (uid 65534) in a child process.
#[test]
fn unprivileged_start_is_a_clear_not_supported_error() {
    if std::env::var_os("EBPF_DEV_CHILD").is_some() {
        match TlsCapture::start(TlsConfig::default()) {
            Err(e @ AgentError::EbpfNotSupported(_)) => {
                assert!(e.to_string().contains("CAP_BPF"), "{e}");
                println!("child got: {e}");
            }
            Err(e) => panic!("expected NotSupported, got {e}"),
            Ok(_) => panic!("unprivileged start succeeded"),
        }
        return;
    }
    if let Some(why) = skip_reason() {
        eprintln!("SKIP: {why} (needed to switch to uid 65534)");
        return;
    }
    use std::os::unix::process::CommandExt;
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "unprivileged_start_is_a_clear_not_supported_error",
            "--nocapture",
        ])
        .env("EBPF_DEV_CHILD", "1")
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && text.contains("child got:"),
        "{text}"
    );
    eprintln!(
        "{}",
        text.lines()
            .find(|l| l.contains("child got:"))
            .unwrap_or("")
    );
}
