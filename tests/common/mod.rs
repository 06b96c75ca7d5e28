//! Helpers for the end-to-end tests: run the real `wiretrail` binary on the corpus captures
//! and read tshark's ground truth.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_wiretrail");

pub fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus")
}

pub fn pcap(name: &str) -> PathBuf {
    corpus().join("pcaps").join(name)
}

/// Tests need the corpus beside the repo; say so loudly when it is missing.
pub fn corpus_available() -> bool {
    let ok = corpus().join("pcaps").is_dir();
    if !ok {
        eprintln!("SKIP: corpus not found at {}", corpus().display());
    }
    ok
}

pub fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("wt-e2e-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running `wiretrail up`, killed (SIGKILL) on drop.
pub struct Server {
    pub child: Child,
    pub http: String,
    pub flight: String,
    /// Arrow Flight SQL (`grpc://127.0.0.1:port`).
    pub flight_sql: String,
    pub data: PathBuf,
}

impl Server {
    pub fn start(data: &Path) -> Server {
        // A port from `free_port` can be taken by another test before `up` binds it; `up` then
        // exits at once, and is started again on other ports.
        for _ in 0..5 {
            let mut s = Self::spawn_on(data, free_port(), free_port(), &[]);
            if s.healthy_unless_exited() {
                return s;
            }
            eprintln!("wiretrail up exited at start (a port was taken?); retrying on other ports");
        }
        panic!("wiretrail up did not start in 5 attempts");
    }

    /// Waits until it answers (true) or has exited (false); panics after 60 s.
    fn healthy_unless_exited(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = reqwest::blocking::get(format!("{}/healthz", self.http)) {
                if r.status().is_success() {
                    return true;
                }
            }
            if self.child.try_wait().ok().flatten().is_some() {
                return false;
            }
            assert!(
                Instant::now() < deadline,
                "wiretrail up did not become healthy in 60 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `wiretrail up` on given ports with extra options (a restart keeps its ports).
    pub fn start_on(data: &Path, hp: u16, fp: u16, extra: &[&str]) -> Server {
        let s = Self::spawn_on(data, hp, fp, extra);
        s.wait_healthy();
        s
    }

    /// Starts without waiting until it answers.
    pub fn spawn_on(data: &Path, hp: u16, fp: u16, extra: &[&str]) -> Server {
        let sp = free_port();
        let child = Command::new(BIN)
            .args(["up", "--no-capture", "--data"])
            .arg(data)
            .args([
                "--listen",
                &format!("127.0.0.1:{hp}"),
                "--flight-listen",
                &format!("127.0.0.1:{fp}"),
                "--flight-sql-listen",
                &format!("127.0.0.1:{sp}"),
            ])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start wiretrail up");
        Server {
            child,
            http: format!("http://127.0.0.1:{hp}"),
            flight: format!("http://127.0.0.1:{fp}"),
            flight_sql: format!("grpc://127.0.0.1:{sp}"),
            data: data.to_path_buf(),
        }
    }

    pub fn wait_healthy(&self) {
        let s = self;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = reqwest::blocking::get(format!("{}/healthz", s.http)) {
                if r.status().is_success() {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "wiretrail up did not become healthy in 60 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGKILL, as a crash would.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM (graceful: the server flushes) and wait for the exit.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        // The shell's built-in `kill`: no dependency on procps.
        let ok = Command::new("sh")
            .arg("-c")
            .arg(format!("kill -TERM {}", self.child.id()))
            .status()
            .unwrap();
        assert!(ok.success());
        self.child.wait().unwrap()
    }

    pub fn get(&self, path_and_query: &str) -> (u16, Value) {
        let r = reqwest::blocking::get(format!("{}{}", self.http, path_and_query)).unwrap();
        let status = r.status().as_u16();
        (status, r.json().unwrap_or(Value::Null))
    }

    /// Every entry matching `kfl` in `[from, to)` (epoch ms or RFC 3339), following cursors.
    pub fn all(&self, kfl: &str, from: Option<&str>, to: Option<&str>) -> Vec<Value> {
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut q: Vec<(&str, String)> =
                vec![("kfl", kfl.to_string()), ("limit", "1000".into())];
            if let Some(f) = from {
                q.push(("from", f.to_string()));
            }
            if let Some(t) = to {
                q.push(("to", t.to_string()));
            }
            if let Some(c) = &cursor {
                q.push(("cursor", c.clone()));
            }
            let r = reqwest::blocking::Client::new()
                .get(format!("{}/api/v1/entries", self.http))
                .query(&q)
                .send()
                .unwrap();
            assert!(r.status().is_success(), "{kfl:?}: HTTP {}", r.status());
            let v: Value = r.json().unwrap();
            out.extend(v["entries"].as_array().unwrap().iter().cloned());
            match v["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_string()),
                None => return out,
            }
        }
    }

    pub fn count(&self, kfl: &str) -> usize {
        self.all(kfl, None, None).len()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `wiretrail import --format json ARGS…` and returns its summary.
pub fn import(args: &[&str]) -> Value {
    let out = Command::new(BIN)
        .arg("import")
        .args(["--format", "json"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "import {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Imports the mini cluster capture with its identity map as captured on `node-a` (the setup
/// of the KFL, service-map and live-view tests); `extra` goes before the file.
pub fn import_cluster_mix(flight: &str, extra: &[&str]) -> Value {
    let ids = pcap("cluster_mix.identities.json");
    let capture = pcap("cluster_mix.pcap");
    let mut args = vec![
        "--server",
        flight,
        "--identities",
        ids.to_str().unwrap(),
        "--node",
        "node-a",
    ];
    args.extend_from_slice(extra);
    args.push(capture.to_str().unwrap());
    import(&args)
}

/// Rows of `truth/<name>.fields.tsv` as column → value.
pub fn truth_rows(name: &str) -> Vec<BTreeMap<String, String>> {
    let text =
        std::fs::read_to_string(corpus().join("truth").join(format!("{name}.fields.tsv"))).unwrap();
    let mut lines = text.lines();
    let cols: Vec<String> = lines
        .next()
        .unwrap()
        .split('\t')
        .map(str::to_string)
        .collect();
    lines
        .map(|l| {
            cols.iter()
                .cloned()
                .zip(l.split('\t').map(str::to_string))
                .collect()
        })
        .collect()
}

pub fn split(v: &str) -> Vec<String> {
    if v.is_empty() {
        vec![]
    } else {
        v.split('|').map(str::to_string).collect()
    }
}

/// One HTTP request as tshark saw it, with its response.
#[derive(Debug, Clone, Default)]
pub struct HttpReq {
    pub frame: u64,
    pub time_rel: f64,
    pub epoch: Option<f64>,
    pub stream: String,
    pub method: String,
    pub uri: String,
    pub user_agent: String,
    pub authorization: String,
    pub src: String,
    pub dst: String,
    pub status: Option<i64>,
    pub elapsed_s: Option<f64>,
}

/// Requests of a capture, with statuses from the responses that point back at them.
pub fn http_truth(name: &str) -> Vec<HttpReq> {
    let rows = truth_rows(name);
    let mut reqs: Vec<HttpReq> = Vec::new();
    let mut by_frame: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
    for r in &rows {
        let g = |c: &str| r.get(c).cloned().unwrap_or_default();
        let frame: u64 = g("frame.number").parse().unwrap();
        let methods = split(&g("http.request.method"));
        let uris = split(&g("http.request.uri"));
        let uas = split(&g("http.user_agent"));
        let auths = split(&g("http.authorization"));
        for (i, m) in methods.iter().enumerate() {
            by_frame.entry(frame).or_default().push(reqs.len());
            reqs.push(HttpReq {
                frame,
                time_rel: g("frame.time_relative").parse().unwrap(),
                epoch: g("frame.time_epoch").parse().ok(),
                stream: g("tcp.stream"),
                method: m.clone(),
                uri: uris.get(i).cloned().unwrap_or_default(),
                user_agent: if methods.len() == uas.len() {
                    uas[i].clone()
                } else {
                    uas.first().cloned().unwrap_or_default()
                },
                authorization: if methods.len() == auths.len() {
                    auths[i].clone()
                } else {
                    auths.first().cloned().unwrap_or_default()
                },
                src: g("ip.src"),
                dst: g("ip.dst"),
                ..Default::default()
            });
        }
    }
    // HTTP/1 answers requests in order on a connection, so the n-th final response of a TCP
    // stream belongs to its n-th request. (tshark's own `request_in` links miss pipelined
    // requests, which it cannot pair.)
    let mut responses: BTreeMap<String, Vec<(i64, Option<f64>)>> = BTreeMap::new();
    for r in &rows {
        let g = |c: &str| r.get(c).cloned().unwrap_or_default();
        let times = split(&g("http.time"));
        for (i, c) in split(&g("http.response.code")).iter().enumerate() {
            let code: i64 = c.parse().unwrap();
            if (100..200).contains(&code) && code != 101 {
                continue;
            }
            let t = times.get(i).or(times.first()).and_then(|t| t.parse().ok());
            responses
                .entry(g("tcp.stream"))
                .or_default()
                .push((code, t));
        }
    }
    let _ = by_frame;
    let mut next: BTreeMap<String, usize> = BTreeMap::new();
    for req in reqs.iter_mut() {
        let n = next.entry(req.stream.clone()).or_default();
        if let Some((code, t)) = responses.get(&req.stream).and_then(|v| v.get(*n)) {
            req.status = Some(*code);
            req.elapsed_s = *t;
        }
        *n += 1;
    }
    reqs
}

/// One DNS query as tshark saw it, with its answer's rcode.
#[derive(Debug, Clone, Default)]
pub struct DnsQuery {
    pub frame: u64,
    pub epoch: Option<f64>,
    pub name: String,
    pub qtype: String,
    pub src: String,
    pub rcode: Option<i64>,
}

pub fn dns_truth(name: &str) -> Vec<DnsQuery> {
    let rows = truth_rows(name);
    let mut qs: Vec<DnsQuery> = Vec::new();
    let mut idx: BTreeMap<u64, usize> = BTreeMap::new();
    for r in &rows {
        let g = |c: &str| r.get(c).cloned().unwrap_or_default();
        if g("dns.flags.response").is_empty() {
            continue;
        }
        let frame: u64 = g("frame.number").parse().unwrap();
        if g("dns.flags.response") == "0" {
            idx.insert(frame, qs.len());
            qs.push(DnsQuery {
                frame,
                epoch: g("frame.time_epoch").parse().ok(),
                name: split(&g("dns.qry.name"))
                    .first()
                    .cloned()
                    .unwrap_or_default(),
                qtype: split(&g("dns.qry.type"))
                    .first()
                    .cloned()
                    .unwrap_or_default(),
                src: g("ip.src"),
                rcode: None,
            });
        } else if let Some(i) = g("dns.response_to")
            .parse::<u64>()
            .ok()
            .and_then(|f| idx.get(&f))
        {
            qs[*i].rcode = g("dns.flags.rcode").parse().ok();
        }
    }
    qs
}

/// Timestamp of the first packet of a pcap (µs), read from the file itself.
pub fn first_packet_us(path: &Path) -> i64 {
    let b = std::fs::read(path).unwrap();
    let le = u32::from_le_bytes(b[0..4].try_into().unwrap());
    let (sec, frac) = if le == 0xa1b2c3d4 || le == 0xa1b23c4d {
        (
            u32::from_le_bytes(b[24..28].try_into().unwrap()),
            u32::from_le_bytes(b[28..32].try_into().unwrap()),
        )
    } else {
        (
            u32::from_be_bytes(b[24..28].try_into().unwrap()),
            u32::from_be_bytes(b[28..32].try_into().unwrap()),
        )
    };
    let nanos = le == 0xa1b23c4d || u32::from_be_bytes(b[0..4].try_into().unwrap()) == 0xa1b23c4d;
    i64::from(sec) * 1_000_000
        + if nanos {
            i64::from(frac) / 1000
        } else {
            i64::from(frac)
        }
}

/// Redis commands (upper-cased name, first argument) that clients sent to `port`, decoded
/// from tshark's `resp.array.length` and hex `resp.bulk_string.value` fields.
pub fn redis_truth(name: &str, port: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for r in truth_rows(name) {
        let g = |c: &str| r.get(c).cloned().unwrap_or_default();
        if g("tcp.dstport") != port {
            continue;
        }
        let lens: Vec<usize> = split(&g("resp.array.length"))
            .iter()
            .filter_map(|l| l.parse().ok())
            .collect();
        let values = split(&g("resp.bulk_string.value"));
        let mut at = 0;
        for l in lens {
            let text = |i: usize| {
                let hex = values.get(i).map(String::as_str).unwrap_or("");
                let bytes: Vec<u8> = (0..hex.len() / 2)
                    .filter_map(|j| u8::from_str_radix(&hex[2 * j..2 * j + 2], 16).ok())
                    .collect();
                String::from_utf8_lossy(&bytes).into_owned()
            };
            let key = if l > 1 { text(at + 1) } else { String::new() };
            out.push((text(at).to_ascii_uppercase(), key));
            at += l;
        }
    }
    out
}

/// Error replies (`-ERR …`) the server on `port` sent.
pub fn redis_errors(name: &str, port: &str) -> usize {
    truth_rows(name)
        .iter()
        .filter(|r| r.get("tcp.srcport").map(String::as_str) == Some(port))
        .map(|r| split(r.get("resp.error").map(String::as_str).unwrap_or("")).len())
        .sum()
}

/// Kafka requests clients sent to `port` (tshark's `kafka.api_key` values on request frames).
pub fn kafka_requests(name: &str, port: &str) -> usize {
    truth_rows(name)
        .iter()
        .filter(|r| r.get("tcp.dstport").map(String::as_str) == Some(port))
        .map(|r| split(r.get("kafka.api_key").map(String::as_str).unwrap_or("")).len())
        .sum()
}

/// Entries of real captures as Arrow batches: imported into a scratch data dir by the binary
/// and read back from its Parquet files (the synthetic-but-realistic source of the storage
/// tests).
pub fn corpus_batches(names: &[&str]) -> Vec<arrow::record_batch::RecordBatch> {
    let dir = temp_dir(&format!("corpus-rows-{}", names.join("+")));
    let data = dir.join("data");
    let mut args = vec!["--data".to_string(), data.display().to_string()];
    args.extend(names.iter().map(|n| pcap(n).display().to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    import(&args);
    let mut out = Vec::new();
    for f in parquet_files(&data.join("entries")) {
        let file = std::fs::File::open(&f).unwrap();
        let r = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap();
        out.extend(r.map(|b| b.unwrap()));
    }
    let _ = std::fs::remove_dir_all(&dir);
    out
}

/// Every `.parquet` file under `dir`, sorted.
pub fn parquet_files(dir: &Path) -> Vec<PathBuf> {
    files_under(dir, |p| p.extension().is_some_and(|x| x == "parquet"))
}

/// Every file under `dir` that `keep` accepts, sorted.
pub fn files_under(dir: &Path, keep: impl Fn(&Path) -> bool) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if keep(&p) {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Earliest `ts` of some entry batches.
pub fn min_ts(batches: &[arrow::record_batch::RecordBatch]) -> i64 {
    use arrow::array::AsArray;
    use arrow::datatypes::TimestampMicrosecondType;
    batches
        .iter()
        .flat_map(|b| {
            let ts = b.column_by_name("ts").unwrap();
            ts.as_primitive::<TimestampMicrosecondType>()
                .values()
                .iter()
                .copied()
                .min()
        })
        .min()
        .expect("some entries")
}

/// A copy of `batch` whose timestamps are mapped by `ts` and whose ids are new and unique
/// (`node`, `seq` make the id; see `EntryId::new`).
pub fn reshape(
    batch: &arrow::record_batch::RecordBatch,
    node: &str,
    first_seq: u32,
    ts: impl Fn(i64) -> i64,
) -> arrow::record_batch::RecordBatch {
    use arrow::array::{Array, AsArray, FixedSizeBinaryArray, TimestampMicrosecondArray};
    use arrow::datatypes::TimestampMicrosecondType;
    use std::sync::Arc;
    let schema = batch.schema();
    let old = batch
        .column_by_name("ts")
        .unwrap()
        .as_primitive::<TimestampMicrosecondType>();
    let new_ts: Vec<i64> = old.values().iter().map(|t| ts(*t)).collect();
    let ids: Vec<[u8; 16]> = new_ts
        .iter()
        .enumerate()
        .map(|(i, t)| wiretrail_proto::EntryId::new(*t, node, first_seq + i as u32).0)
        .collect();
    let id_arr = FixedSizeBinaryArray::try_from_iter(ids.iter()).unwrap();
    let ts_arr = TimestampMicrosecondArray::from(new_ts).with_timezone("UTC");
    let mut cols = batch.columns().to_vec();
    cols[schema.index_of("id").unwrap()] = Arc::new(id_arr);
    cols[schema.index_of("ts").unwrap()] = Arc::new(ts_arr);
    assert_eq!(cols[0].len(), batch.num_rows());
    arrow::record_batch::RecordBatch::try_new(schema, cols).unwrap()
}

/// Makes `module` importable with pip if needed; `None` (after printing why) if it cannot be had.
pub fn python_module(module: &str, package: &str) -> Option<()> {
    let have = |m: &str| {
        Command::new("python3")
            .args(["-c", &format!("import {m}")])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    };
    if have(module) {
        return Some(());
    }
    let install = Command::new("python3")
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            package,
        ])
        .output();
    match install {
        Ok(o) if o.status.success() && have(module) => Some(()),
        Ok(o) => {
            eprintln!(
                "SKIP: cannot install {package} with pip: {}",
                String::from_utf8_lossy(&o.stderr)
                    .lines()
                    .last()
                    .unwrap_or("")
            );
            None
        }
        Err(e) => {
            eprintln!("SKIP: python3 not available: {e}");
            None
        }
    }
}

/// True when `bin` is on PATH.
pub fn have(bin: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {bin}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A counter or gauge of `/metrics` (`name` may carry labels: `x_total{reason="y"}`).
pub fn metric(server: &Server, name: &str) -> f64 {
    let text = reqwest::blocking::get(format!("{}/metrics", server.http))
        .unwrap()
        .text()
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} not in /metrics"))
}
