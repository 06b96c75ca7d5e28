//! Ingest against a real Flight server on loopback, a real WAL and a real RocksDB catalog.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arrow::record_batch::RecordBatch;
use tokio::net::TcpListener;
use wiretrail_proto::{Endpoint, Entry, EntryBatchBuilder, EntryId, Identity};

use crate::{Ingest, IngestClient, IngestConfig, IngestError, IngestFlightService};

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("wt-ingest-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn batch(start: i64, n: usize) -> RecordBatch {
    let mut b = EntryBatchBuilder::new();
    for i in 0..n {
        let ts = start + i as i64 * 1_000;
        let mut e = Entry::new(EntryId::new(ts, "n", i as u32), ts, "n", "http", "pcap");
        e.src = Endpoint {
            ip: "10.0.0.1".into(),
            port: 40000,
            identity: Identity {
                name: "a".into(),
                ..Default::default()
            },
        };
        e.dst = Endpoint {
            ip: "10.0.0.2".into(),
            port: 80,
            identity: Identity {
                name: "b".into(),
                ..Default::default()
            },
        };
        e.method = Some("GET".into());
        e.path = Some(format!("/item/{i}"));
        e.status = Some(200);
        b.push(&e);
    }
    b.finish().unwrap()
}

/// A Flight server on loopback; dropping the returned sender stops it.
async fn serve(
    ingest: Arc<Ingest>,
) -> (
    SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let incoming = futures::stream::unfold(listener, |l| async move {
        Some((l.accept().await.map(|(s, _)| s), l))
    });
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(IngestFlightService::new(ingest).into_server())
            .serve_with_incoming_shutdown(incoming, async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
    });
    (addr, stop, task)
}

async fn rows_in(ingest: &Ingest) -> usize {
    let snap = ingest.snapshot(i64::MIN, i64::MAX).await.unwrap();
    let files: u64 = snap.files.iter().map(|f| f.rows).sum();
    files as usize + snap.buffered.iter().map(|b| b.num_rows()).sum::<usize>()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acked_batches_survive_restart_exactly_once() {
    let dir = temp_dir("restart");
    let ts0 = 1_795_576_364_000_000;
    {
        let ingest = Ingest::open(&dir, IngestConfig::default()).await.unwrap();
        let (addr, stop, server) = serve(ingest.clone()).await;
        let mut c = IngestClient::new(&format!("http://{addr}"), "agent-1").unwrap();
        for i in 0..40 {
            c.send(batch(ts0 + i * 10_000_000, 100)).await.unwrap();
        }
        let stats = c.finish().await.unwrap();
        assert_eq!(stats.acked_rows, 4000);
        assert_eq!(
            rows_in(&ingest).await,
            4000,
            "acked rows are queryable before any flush"
        );
        // A second data-dir owner is refused while this one is open.
        let err = Ingest::open(&dir, IngestConfig::default())
            .await
            .err()
            .expect("lock held");
        assert!(err.to_string().contains("in use"), "{err}");
        // Half of it reaches Parquet; the rest stays in the WAL only. No flush at "crash".
        ingest.flush().await.unwrap();
        c = IngestClient::new(&format!("http://{addr}"), "agent-1").unwrap();
        // A resend of already stored sequence numbers (a client retrying after a lost ack).
        for i in 0..5 {
            c.send(batch(ts0 + i * 10_000_000, 100)).await.unwrap();
        }
        let stats = c.finish().await.unwrap();
        assert_eq!(stats.duplicate_batches, 5);
        let mut c2 = IngestClient::new(&format!("http://{addr}"), "agent-2").unwrap();
        c2.send(batch(ts0 + 500_000_000, 50)).await.unwrap();
        c2.finish().await.unwrap();
        assert_eq!(rows_in(&ingest).await, 4050);
        // Simulate a crash: stop serving and drop everything without a final flush.
        drop(stop);
        server.await.unwrap();
    }
    // The lock is released when the owner goes away; the WAL is replayed. In-process, the
    // "owner" is every task holding the Ingest: a connection task of the stopped server can
    // outlive `server.await` by a moment on a loaded machine, so wait for it (bounded).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let ingest = loop {
        match Ingest::open(&dir, IngestConfig::default()).await {
            Ok(i) => break i,
            Err(e) if e.to_string().contains("in use") && std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("reopen after the crash: {e}"),
        }
    };
    assert_eq!(rows_in(&ingest).await, 4050);
    assert_eq!(
        ingest.buffered_rows().await,
        50,
        "only agent-2's batch was still in the WAL"
    );
    ingest.flush().await.unwrap();
    assert_eq!(ingest.buffered_rows().await, 0);
    assert_eq!(rows_in(&ingest).await, 4050);
    let files = ingest.catalog().files().unwrap();
    for f in &files {
        assert!(
            ingest.data_dir().entry_file(&f.path).is_file(),
            "{} exists",
            f.path
        );
        assert!(f.path.starts_with("dt=2026-11-25/hh="), "{}", f.path);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn torn_wal_tail_is_truncated_and_counted() {
    let dir = temp_dir("torn");
    {
        let ingest = Ingest::open(&dir, IngestConfig::default()).await.unwrap();
        ingest.append("a", 1, batch(1_000_000, 10)).await.unwrap();
        ingest.append("a", 2, batch(2_000_000, 10)).await.unwrap();
    }
    // Cut the last record in half, as a crash in the middle of a write would.
    let wal = dir.join("wal");
    let seg = std::fs::read_dir(&wal)
        .unwrap()
        .map(|e| e.unwrap().path())
        .max()
        .unwrap();
    let len = std::fs::metadata(&seg).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(&seg).unwrap();
    f.set_len(len - 100).unwrap();
    drop(f);
    let ingest = Ingest::open(&dir, IngestConfig::default()).await.unwrap();
    assert_eq!(rows_in(&ingest).await, 10);
    assert!(
        ingest
            .counters
            .wal_torn_bytes
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0
    );
    // The sender never got an ack for seq 2, so it resends it: stored once.
    assert!(
        !ingest
            .append("a", 2, batch(2_000_000, 10))
            .await
            .unwrap()
            .duplicate
    );
    assert_eq!(rows_in(&ingest).await, 20);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejects_batches_that_are_not_entries() {
    let dir = temp_dir("schema");
    let ingest = Ingest::open(&dir, IngestConfig::default()).await.unwrap();
    let other =
        RecordBatch::try_from_iter([("x", Arc::new(arrow::array::Int32Array::from(vec![1])) as _)])
            .unwrap();
    let err = ingest.append("a", 1, other).await.unwrap_err();
    assert!(err.to_string().contains("schema"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backpressure_refuses_when_over_the_memory_limit_and_the_sender_retries() {
    let dir = temp_dir("busy");
    let config = IngestConfig {
        // Tiny limit; the size-based flush trigger is out of the way so only admission acts.
        memory_limit: 64 << 10,
        flush_rows: usize::MAX,
        flush_bytes: usize::MAX,
        flush_interval: std::time::Duration::from_secs(3600),
        ..Default::default()
    };
    let ingest = Ingest::open(&dir, config).await.unwrap();
    let ts0 = 1_795_576_364_000_000;
    // Admission looks at what is buffered before the batch: the first goes in.
    ingest.append("a", 1, batch(ts0, 2000)).await.unwrap();
    assert!(ingest.buffered_rows().await == 2000);
    // Over twice the limit and no flusher running: refused, with the reason.
    let err = ingest.append("a", 2, batch(ts0 + 1, 10)).await.unwrap_err();
    assert!(matches!(err, IngestError::Busy { .. }), "{err}");
    let status = tonic::Status::from(err);
    assert_eq!(status.code(), tonic::Code::ResourceExhausted);
    assert!(ingest.metrics_text().await.contains("reason=\"busy\"} 1"));

    // A sender over Flight gets RESOURCE_EXHAUSTED, backs off and resends; once the flusher
    // runs, everything is acknowledged exactly once.
    let (addr, _stop, _server) = serve(ingest.clone()).await;
    let mut c = IngestClient::new(&format!("http://{addr}"), "b").unwrap();
    let sending = tokio::spawn(async move {
        for i in 0..5 {
            c.send(batch(ts0 + 10_000_000 * i, 100)).await.unwrap();
        }
        c.finish().await.unwrap()
    });
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    tokio::spawn(ingest.clone().run_flusher());
    let stats = sending.await.unwrap();
    assert_eq!(stats.acked_rows, 500);
    assert!(stats.busy_retries > 0, "{stats:?}");
    assert_eq!(rows_in(&ingest).await, 2500);
    let _ = std::fs::remove_dir_all(&dir);
}
