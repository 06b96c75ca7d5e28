//! Nothing acknowledged is lost: a sender streams known entries while `wiretrail up` is killed
//! with SIGKILL at random points (during appends, flushes, compactions) and restarted; at the
//! end every entry is stored exactly once, every file is readable and the catalog, the
//! manifests and the files on disk agree. Also: an import whose server is down spools to disk
//! and delivers everything once the server is up.
//!
//! `WIRETRAIL_KILLS=100 cargo test --release --test e2e_kill` is the benchmark variant
//! (bench/kill_test.sh).

mod common;

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{Array, FixedSizeBinaryArray};
use arrow::record_batch::RecordBatch;
use common::*;
use wiretrail_ingest::{IngestClient, SenderConfig};

/// 2026-11-20T00:00:00Z: entries land in closed hours, so compaction runs while we kill.
const BASE: i64 = 1_795_132_800_000_000;

fn ids_of(b: &RecordBatch) -> Vec<[u8; 16]> {
    let col = b.column_by_name("id").unwrap();
    let id = col.as_any().downcast_ref::<FixedSizeBinaryArray>().unwrap();
    (0..id.len())
        .map(|i| id.value(i).try_into().unwrap())
        .collect()
}

/// A cheap xorshift: the kill points only need to be spread, not secure.
fn rand(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[test]
fn sigkill_during_ingest_loses_nothing_acked() {
    if !corpus_available() {
        return;
    }
    let kills_wanted: usize = std::env::var("WIRETRAIL_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let source = corpus_batches(&["cluster_mix.pcap", "http1_keepalive.pcap"]);
    let dir = temp_dir("kill");
    let data = dir.join("data");
    let spool = dir.join("spool");
    let (hp, fp) = (free_port(), free_port());
    let opts = [
        "--flush-interval",
        "1",
        "--maintenance-interval",
        "1",
        "--wal-commit-ms",
        "2",
    ];
    let server = Server::start_on(&data, hp, fp, &opts);
    let flight = server.flight.clone();

    // The sender: batches of corpus entries with new ids spread over 3 past hours, until the
    // killer is done. It records every id it sent; all must be stored exactly once at the end.
    let done = Arc::new(AtomicBool::new(false));
    let sent_batches = Arc::new(AtomicUsize::new(0));
    let sender = {
        let (done, sent_batches, spool) = (done.clone(), sent_batches.clone(), spool.clone());
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let config = SenderConfig {
                    spool_dir: Some(spool),
                    window: 8,
                    give_up_after: Duration::from_secs(120),
                    ..Default::default()
                };
                let mut c = IngestClient::with_config(&flight, "killtest", config).unwrap();
                let mut sent: Vec<[u8; 16]> = Vec::new();
                let mut copy = 0u32;
                while !done.load(Ordering::Relaxed) || copy < 20 {
                    copy += 1;
                    let start =
                        BASE + i64::from(copy % 3) * 3_600_000_000 + i64::from(copy) * 1_000_000;
                    let mut n = 0u32;
                    for b in &source {
                        let b = reshape(b, "kill", copy * 100_000 + n, |t| start + t % 1_000_000);
                        n += b.num_rows() as u32;
                        sent.extend(ids_of(&b));
                        c.send(b).await.unwrap();
                        sent_batches.fetch_add(1, Ordering::Relaxed);
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                let stats = c
                    .finish()
                    .await
                    .expect("everything acknowledged in the end");
                (sent, stats)
            })
        })
    };

    // The killer: SIGKILL at a random point every 150–900 ms, restart at once on the same
    // ports (the sender spools while the server is away).
    let mut seed = 0x9e37_79b9_7f4a_7c15u64 ^ std::process::id() as u64;
    let mut server = server;
    let started = Instant::now();
    for _ in 0..kills_wanted {
        std::thread::sleep(Duration::from_millis(150 + rand(&mut seed) % 750));
        server.kill();
        server = Server::spawn_on(&data, hp, fp, &opts);
        // Sometimes kill again before it is even healthy (mid-replay / mid-repair).
        if rand(&mut seed).is_multiple_of(4) {
            std::thread::sleep(Duration::from_millis(rand(&mut seed) % 200));
            server.kill();
            server = Server::spawn_on(&data, hp, fp, &opts);
        }
        server.wait_healthy();
    }
    done.store(true, Ordering::Relaxed);
    let (sent, stats) = sender.join().unwrap();
    eprintln!(
        "{kills_wanted} kills in {:.1} s; sender: {} batches, {} acked, {} duplicates, {} reconnects, {} spooled, {} busy retries",
        started.elapsed().as_secs_f64(),
        stats.batches,
        stats.acked_batches,
        stats.duplicate_batches,
        stats.reconnects,
        stats.spooled_batches,
        stats.busy_retries
    );
    assert_eq!(stats.acked_batches, stats.batches);
    assert_eq!(stats.dropped_rows, 0);
    assert!(sent_batches.load(Ordering::Relaxed) > 0);

    // A graceful stop flushes; then the store is read directly from its files.
    assert!(server.terminate().success());
    let catalog = wiretrail_storage::Catalog::open(&data.join("index")).unwrap();
    let files = catalog.files().unwrap();
    let mut seen: HashMap<[u8; 16], usize> = HashMap::new();
    for f in &files {
        let path = data.join("entries").join(&f.path);
        let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{}: {e}", f.path));
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap_or_else(|e| panic!("{} unreadable: {e}", f.path))
            .build()
            .unwrap();
        let mut rows = 0;
        for b in reader {
            let b = b.unwrap();
            rows += b.num_rows();
            for id in ids_of(&b) {
                *seen.entry(id).or_default() += 1;
            }
        }
        assert_eq!(rows as u64, f.rows, "{}", f.path);
    }
    let twice = seen.values().filter(|n| **n > 1).count();
    assert_eq!(twice, 0, "{twice} entries stored more than once");
    let missing = sent.iter().filter(|id| !seen.contains_key(*id)).count();
    assert_eq!(
        missing,
        0,
        "{missing} of {} acknowledged entries missing",
        sent.len()
    );
    assert_eq!(seen.len(), sent.len());

    // The catalog matches the files on disk and the manifests.
    let on_disk: BTreeSet<String> = parquet_files(&data.join("entries"))
        .iter()
        .map(|p| {
            p.strip_prefix(data.join("entries"))
                .unwrap()
                .display()
                .to_string()
        })
        .collect();
    let listed: BTreeSet<String> = files.iter().map(|f| f.path.clone()).collect();
    assert_eq!(on_disk, listed, "files on disk = files in the catalog");
    let mut in_manifests = BTreeSet::new();
    for m in files_under(&data.join("entries"), |p| p.ends_with("manifest.json")) {
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&m).unwrap()).unwrap();
        for f in v["files"].as_array().unwrap() {
            in_manifests.insert(f["path"].as_str().unwrap().to_string());
        }
    }
    assert_eq!(in_manifests, listed, "manifests = catalog");
    drop(catalog);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn import_spools_while_the_server_is_down() {
    if !corpus_available() {
        return;
    }
    let dir = temp_dir("spool");
    let data = dir.join("data");
    let (hp, fp) = (free_port(), free_port());
    // Reference count: the same capture imported straight into a data dir.
    let direct = import(&[
        "--data",
        dir.join("direct").to_str().unwrap(),
        "--batch-rows",
        "50",
        pcap("cluster_mix.pcap").to_str().unwrap(),
    ]);
    let entries = direct["acked_entries"].as_u64().unwrap();
    // The import starts while nothing listens; the server comes up 3 s later.
    let spool = dir.join("spool");
    let child = std::process::Command::new(BIN)
        .args([
            "import",
            "--format",
            "json",
            "--batch-rows",
            "50",
            "--server",
        ])
        .arg(format!("http://127.0.0.1:{fp}"))
        .arg("--spool")
        .arg(&spool)
        .arg(pcap("cluster_mix.pcap"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    let server = Server::start_on(&data, hp, fp, &[]);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let sender = &summary["sender"];
    eprintln!("sender: {sender}");
    assert!(
        sender["spooled_batches"].as_u64().unwrap() > 0,
        "batches were spooled"
    );
    assert_eq!(sender["dropped_rows"].as_u64(), Some(0));
    assert_eq!(summary["acked_entries"].as_u64(), Some(entries));
    assert_eq!(server.count("") as u64, entries, "everything arrived, once");
    assert_eq!(
        sender["spool_bytes"].as_u64(),
        Some(0),
        "the spool is empty"
    );
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}
