//! A real S3 endpoint for tests: moto's standalone server (`python3 -m moto.server`) on a free
//! loopback port, one per test so tests stay independent; killed when the fixture drops.
//! Credentials are dummies passed through [`S3Config`], never through the process environment
//! (tests run in parallel threads of one process).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use wiretrail_storage::S3Config;

/// moto's server needs flask, werkzeug and flask-cors besides moto itself (the `server` extra).
const IMPORTS: &str = "import moto.server, flask, werkzeug, flask_cors";
const PIP_PACKAGE: &str = "moto[server]==5.2.1";
const STARTUP: Duration = Duration::from_secs(60);

pub struct Moto {
    child: Child,
    pub endpoint: String,
    port: u16,
    log: PathBuf,
}

impl Moto {
    /// Starts moto, or prints `SKIP: <reason>` and returns `None` when it cannot run here.
    pub fn start(test: &str) -> Option<Moto> {
        if !moto_importable() {
            return None;
        }
        let port = match TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()) {
            Ok(a) => a.port(),
            Err(e) => {
                eprintln!("SKIP: no free loopback port for moto: {e}");
                return None;
            }
        };
        let log = std::env::temp_dir().join(format!("wt-moto-{test}-{}.log", std::process::id()));
        // werkzeug logs every request to stderr: a file, not a pipe nobody drains.
        let stderr = match std::fs::File::create(&log) {
            Ok(f) => f,
            Err(e) => {
                eprintln!("SKIP: cannot create moto log {}: {e}", log.display());
                return None;
            }
        };
        let child = Command::new("python3")
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn();
        let child = match child {
            Ok(c) => c,
            Err(e) => {
                eprintln!("SKIP: cannot run python3 -m moto.server: {e}");
                return None;
            }
        };
        let mut moto = Moto {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
            port,
            log,
        };
        let deadline = Instant::now() + STARTUP;
        loop {
            if let Ok(Some(status)) = moto.child.try_wait() {
                eprintln!(
                    "SKIP: moto server exited at startup ({status}): {}",
                    moto.log_tail()
                );
                return None;
            }
            if matches!(moto.request("GET", "/"), Ok(200)) {
                return Some(moto);
            }
            if Instant::now() > deadline {
                eprintln!(
                    "SKIP: moto server did not answer on port {port} within {STARTUP:?}: {}",
                    moto.log_tail()
                );
                return None;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Creates a bucket with a plain path-style `PUT /<bucket>` (moto does not check
    /// signatures, and object_store has no bucket API).
    pub fn create_bucket(&self, bucket: &str) {
        let status = self
            .request("PUT", &format!("/{bucket}"))
            .unwrap_or_else(|e| panic!("PUT /{bucket} on moto: {e}"));
        assert_eq!(status, 200, "creating bucket {bucket} on moto");
    }

    /// Config for `bucket` on this server with dummy credentials.
    pub fn config(&self, bucket: &str, prefix: &str) -> S3Config {
        S3Config {
            bucket: bucket.into(),
            prefix: prefix.into(),
            region: Some("us-east-1".into()),
            endpoint: Some(self.endpoint.clone()),
            access_key_id: Some("testing".into()),
            secret_access_key: Some("testing".into()),
            session_token: None,
            allow_http: true,
        }
    }

    /// One HTTP/1.1 request without a body; returns the status code.
    fn request(&self, method: &str, path: &str) -> std::io::Result<u16> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.port
        )?;
        let mut response = String::new();
        s.read_to_string(&mut response)?;
        response
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("not an HTTP response: {response:.200}")))
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(5)..].join(" | ")
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

/// True if moto's server imports, installing `moto[server]` with pip once if it does not.
fn moto_importable() -> bool {
    let imports = || {
        Command::new("python3")
            .args(["-c", IMPORTS])
            .output()
            .map(|o| o.status.success())
    };
    match imports() {
        Ok(true) => return true,
        Ok(false) => {}
        Err(e) => {
            eprintln!("SKIP: python3 not available: {e}");
            return false;
        }
    }
    let install = Command::new("python3")
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            PIP_PACKAGE,
        ])
        .output();
    match install {
        Ok(o) if o.status.success() && matches!(imports(), Ok(true)) => true,
        Ok(o) => {
            eprintln!(
                "SKIP: moto server not importable and pip install {PIP_PACKAGE} failed: {}",
                String::from_utf8_lossy(&o.stderr)
                    .lines()
                    .last()
                    .unwrap_or("")
            );
            false
        }
        Err(e) => {
            eprintln!("SKIP: cannot run pip for {PIP_PACKAGE}: {e}");
            false
        }
    }
}
