//! Object storage against a real S3 API (moto on 127.0.0.1): closed hours are compacted and
//! moved to the bucket, a time window is queried from S3 with the same result as from local
//! files, and retention deletes expired hours from the bucket.

mod common;
#[path = "../storage/tests/support/moto.rs"]
mod moto;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use wiretrail_ingest::{Ingest, IngestConfig};
use wiretrail_query::{EntriesRequest, QueryService};
use wiretrail_storage::paths::HOUR_US;
use wiretrail_storage::RemoteStore;

const MIN_US: i64 = 60_000_000;
/// 2026-11-20T00:00:00Z
const BASE: i64 = 1_795_132_800_000_000;

async fn ids_in_window(q: &QueryService, from: i64, to: i64) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut cursor = None;
    loop {
        let page = q
            .entries(&EntriesRequest {
                kfl: String::new(),
                from: Some(from),
                to: Some(to),
                limit: Some(5000),
                cursor: cursor.clone(),
                ..Default::default()
            })
            .await
            .unwrap();
        out.extend(
            page.entries
                .iter()
                .map(|e| e["id"].as_str().unwrap().to_string()),
        );
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => return out,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hours_move_to_s3_and_stay_queryable() {
    if !corpus_available() {
        return;
    }
    let Some(moto) = moto::Moto::start("e2e_s3") else {
        return;
    };
    moto.create_bucket("wiretrail");
    let remote = Arc::new(RemoteStore::new(&moto.config("wiretrail", "prod")).unwrap());
    remote.check().await.unwrap();

    let source = corpus_batches(&["cluster_mix.pcap"]);
    let t0 = min_ts(&source);
    let dir = temp_dir("s3");
    let mut config = IngestConfig {
        remote: Some(remote.clone()),
        upload_after: Duration::from_secs(3600),
        delete_grace: Duration::ZERO,
        ..Default::default()
    };
    config.retention.max_age = Some(Duration::from_secs(5 * 3600));
    let ingest = Ingest::open(&dir, config).await.unwrap();
    let mut seq = 0;
    for hour in 0..4 {
        for k in 0..6u32 {
            let start = BASE + hour * HOUR_US + i64::from(k) * 10 * MIN_US;
            let mut n = 0u32;
            for b in &source {
                let id_seq = (hour as u32 * 10 + k) * 100_000 + n;
                let b = reshape(b, "s3", id_seq, |t| {
                    start + (t - t0).rem_euclid(10 * MIN_US)
                });
                n += b.num_rows() as u32;
                seq += 1;
                ingest.append("s3", seq, b).await.unwrap();
            }
            ingest.flush().await.unwrap();
        }
    }
    let q = QueryService::new(ingest.clone());
    let (from, to) = (BASE + HOUR_US + 10 * MIN_US, BASE + HOUR_US + 20 * MIN_US);
    let local = ids_in_window(&q, from, to).await;
    assert!(!local.is_empty());

    // 04:30: hours 0–3 are compacted; hours 0–2 ended more than an hour ago and move to S3.
    let now = BASE + 4 * HOUR_US + 30 * MIN_US;
    let m = ingest.maintain(now).await.unwrap();
    assert_eq!(m.uploaded, 3);
    let files = ingest.catalog().files().unwrap();
    for f in &files {
        let hour = (f.hour() - BASE) / HOUR_US;
        assert_eq!(f.remote, hour < 3, "{}", f.path);
        assert_eq!(
            ingest.data_dir().entry_file(&f.path).exists(),
            !f.remote,
            "{}: local copy removed after upload",
            f.path
        );
    }
    let objects = remote.list("").await.unwrap();
    let remote_paths: BTreeSet<String> = objects.iter().map(|o| o.rel.clone()).collect();
    let want: BTreeSet<String> = files
        .iter()
        .filter(|f| f.remote)
        .map(|f| f.path.clone())
        .collect();
    assert_eq!(remote_paths, want);
    for o in &objects {
        let f = files.iter().find(|f| f.path == o.rel).unwrap();
        assert_eq!(o.size, f.bytes, "{}", o.rel);
    }

    // The same window, now read from S3.
    let q = QueryService::new(ingest.clone());
    assert_eq!(ids_in_window(&q, from, to).await, local);

    // 07:30 with a 5 h maximum age: hours 0 and 1 expire (ended by 02:30); their objects
    // are deleted from the bucket; hour 3 moves to it.
    let m = ingest
        .maintain(BASE + 7 * HOUR_US + 30 * MIN_US)
        .await
        .unwrap();
    assert_eq!(m.retention.hours, vec![BASE, BASE + HOUR_US]);
    let left: BTreeSet<String> = remote
        .list("")
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.rel)
        .collect();
    let kept: BTreeSet<String> = ingest
        .catalog()
        .files()
        .unwrap()
        .into_iter()
        .filter(|f| f.remote)
        .map(|f| f.path)
        .collect();
    assert_eq!(left, kept);
    // Hour 3 ended at 04:00, more than an hour before 07:30: it moved too.
    assert_eq!(left.len(), 2, "hours 2 and 3 are in the bucket: {left:?}");
    assert!(
        ids_in_window(&q, from, to).await.is_empty(),
        "expired hours are gone from queries too"
    );
    drop(q);
    drop(ingest);
    let _ = std::fs::remove_dir_all(&dir);
}
