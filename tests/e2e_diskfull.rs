//! A full disk: ingest stops acknowledging with a clear error and a metric, keeps everything
//! it acknowledged, and resumes when space returns. Runs on a small tmpfs, so it needs root
//! (mount); it skips with a printed reason otherwise.

mod common;

use std::process::Command;

use common::*;
use wiretrail_ingest::{Ingest, IngestConfig};

struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(dir: &std::path::Path, size: &str) -> Option<Tmpfs> {
        let uid = Command::new("id").arg("-u").output().ok()?;
        if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
            eprintln!("SKIP: the disk-full test mounts a tmpfs and needs root");
            return None;
        }
        std::fs::create_dir_all(dir).ok()?;
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !ok {
            eprintln!(
                "SKIP: cannot mount a tmpfs at {} (no mount permission in this container?)",
                dir.display()
            );
            return None;
        }
        Some(Tmpfs(dir.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

async fn rows_in(ingest: &Ingest) -> u64 {
    let snap = ingest.snapshot(i64::MIN, i64::MAX).await.unwrap();
    snap.files.iter().map(|f| f.rows).sum::<u64>()
        + snap
            .buffered
            .iter()
            .map(|b| b.num_rows() as u64)
            .sum::<u64>()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_full_stops_acks_keeps_data_and_resumes() {
    if !corpus_available() {
        return;
    }
    let source = corpus_batches(&["cluster_mix.pcap"]);
    let base = temp_dir("diskfull");
    let mnt = base.join("mnt");
    let Some(_tmpfs) = Tmpfs::mount(&mnt, "24m") else {
        return;
    };
    let data = mnt.join("data");
    // Ballast that can be removed to "add space" later.
    let ballast = mnt.join("ballast");
    std::fs::write(&ballast, vec![0u8; 8 << 20]).unwrap();

    let ingest = Ingest::open(&data, IngestConfig::default()).await.unwrap();
    let mut acked_rows = 0u64;
    let mut seq = 0u64;
    let mut error = None;
    'fill: for copy in 0..10_000u32 {
        for b in &source {
            seq += 1;
            let b = reshape(b, "full", copy * 100_000 + seq as u32, |t| {
                t + i64::from(copy)
            });
            let rows = b.num_rows() as u64;
            match ingest.append("full", seq, b).await {
                Ok(_) => acked_rows += rows,
                Err(e) => {
                    error = Some(e.to_string());
                    break 'fill;
                }
            }
        }
    }
    let error = error.expect("the 24 MiB tmpfs fills up");
    eprintln!("append on a full disk: {error}");
    assert!(error.contains("disk full"), "{error}");
    assert!(error.contains("not acknowledged"), "{error}");
    let metrics = ingest.metrics_text().await;
    assert!(
        metrics.contains("wiretrail_ingest_accepting 0"),
        "{metrics}"
    );
    assert!(metrics.contains("wiretrail_ingest_rejected_batches_total{reason=\"io\"} 1"));
    // A flush cannot write Parquet either: it fails cleanly and leaves no temporary file.
    assert!(ingest.flush().await.is_err());
    assert!(parquet_files(&data.join("entries")).is_empty());
    assert_eq!(
        rows_in(&ingest).await,
        acked_rows,
        "everything acknowledged is still there"
    );

    // Space returns: the same batch is accepted now, the gauge flips back, a flush works.
    std::fs::remove_file(&ballast).unwrap();
    let b = reshape(&source[0], "full", 4_000_000_000, |t| t);
    let rows = b.num_rows() as u64;
    ingest.append("full", seq, b).await.unwrap();
    acked_rows += rows;
    assert!(ingest
        .metrics_text()
        .await
        .contains("wiretrail_ingest_accepting 1"));
    ingest.flush().await.unwrap();
    assert_eq!(rows_in(&ingest).await, acked_rows);

    // And after a restart (replay of whatever the WAL still holds) nothing is lost or doubled.
    drop(ingest);
    let ingest = Ingest::open(&data, IngestConfig::default()).await.unwrap();
    assert_eq!(rows_in(&ingest).await, acked_rows);
    drop(ingest);
}
