//! The storage engine over hours of realistic entries (corpus entries replayed with shifted
//! timestamps): compaction to hour files, late data folded in, retention by age that keeps a
//! pinned hour, rollups that match the rows, and `wiretrail index rebuild` reproducing the
//! catalog from the files.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::process::Command;
use std::time::Duration;

use arrow::array::{Array, FixedSizeBinaryArray};
use arrow::record_batch::RecordBatch;
use common::*;
use wiretrail_ingest::{Ingest, IngestConfig};
use wiretrail_storage::paths::HOUR_US;
use wiretrail_storage::{CompactionConfig, FileMeta, Pin, TagKind};

const MIN_US: i64 = 60_000_000;
/// 2026-11-20T00:00:00Z
const BASE: i64 = 1_795_132_800_000_000;

fn rows_per_hour(files: &[FileMeta]) -> BTreeMap<i64, u64> {
    let mut m = BTreeMap::new();
    for f in files {
        *m.entry((f.hour() - BASE) / HOUR_US).or_default() += f.rows;
    }
    m
}

fn files_per_hour(files: &[FileMeta]) -> BTreeMap<i64, usize> {
    let mut m = BTreeMap::new();
    for f in files {
        *m.entry((f.hour() - BASE) / HOUR_US).or_default() += 1;
    }
    m
}

/// Reads every catalogued file back: all readable, ids unique, total rows.
fn check_files(ingest: &Ingest) -> usize {
    let mut ids = HashSet::new();
    let mut rows = 0;
    for f in ingest.catalog().files().unwrap() {
        let path = ingest.data_dir().entry_file(&f.path);
        let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{}: {e}", f.path));
        let r = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap();
        let mut n = 0;
        for b in r {
            let b = b.unwrap();
            let col = b.column_by_name("id").unwrap();
            let id = col.as_any().downcast_ref::<FixedSizeBinaryArray>().unwrap();
            for i in 0..id.len() {
                assert!(
                    ids.insert(id.value(i).to_vec()),
                    "duplicate id in {}",
                    f.path
                );
            }
            n += b.num_rows();
        }
        assert_eq!(n as u64, f.rows, "{} rows as catalogued", f.path);
        rows += n;
    }
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_retention_pins_and_index_rebuild() {
    if !corpus_available() {
        return;
    }
    let source: Vec<RecordBatch> =
        corpus_batches(&["cluster_mix.pcap", "http1_keepalive.pcap", "dns_udp.pcap"]);
    let t0 = min_ts(&source);
    let per_copy: usize = source.iter().map(|b| b.num_rows()).sum();
    assert!(per_copy > 500, "{per_copy} source entries");

    let dir = temp_dir("storage");
    let mut config = IngestConfig {
        delete_grace: Duration::ZERO,
        ..Default::default()
    };
    config.retention.max_age = Some(Duration::from_secs(3 * 3600));
    let ingest = Ingest::open(&dir, config.clone()).await.unwrap();

    // Hours 0..=5 closed, hour 7 open (now = 07:30). Each copy of the corpus is squeezed into
    // 5 minutes; 12 copies per closed hour, flushed every 3 copies → several level-0 files per
    // hour (a flush spanning two hours writes one file per hour).
    let now = BASE + 7 * HOUR_US + 30 * MIN_US;
    let mut seq = 0u64;
    let mut appended: BTreeMap<i64, u64> = BTreeMap::new();
    let mut copy = 0u32;
    for hour in 0..6 {
        for k in 0..12 {
            copy += 1;
            let start = BASE + hour * HOUR_US + k * 5 * MIN_US;
            let n = put(&ingest, &source, t0, start, 5 * MIN_US, copy, &mut seq).await;
            *appended.entry(hour).or_default() += n;
            if k % 3 == 2 {
                ingest.flush().await.unwrap();
            }
        }
    }
    // The open hour: three flushes inside the 07:00–07:10 window.
    for k in 0..3 {
        copy += 1;
        let start = BASE + 7 * HOUR_US + k * 3 * MIN_US;
        let n = put(&ingest, &source, t0, start, 3 * MIN_US, copy, &mut seq).await;
        *appended.entry(7).or_default() += n;
        ingest.flush().await.unwrap();
    }
    let total: u64 = appended.values().sum();
    let before = ingest.catalog().files().unwrap();
    assert!(
        files_per_hour(&before).values().all(|n| *n >= 3),
        "several flush files per hour before compaction: {:?}",
        files_per_hour(&before)
    );
    assert_eq!(rows_per_hour(&before), appended);

    // Compaction alone (no retention yet).
    let report = wiretrail_storage::compact(
        ingest.data_dir(),
        ingest.catalog(),
        &CompactionConfig::default(),
        now,
    )
    .unwrap();
    let after = ingest.catalog().files().unwrap();
    eprintln!(
        "compaction: {} jobs, {} → {} files, {} → {} bytes",
        report.jobs, report.inputs, report.outputs, report.bytes_in, report.bytes_out
    );
    for (h, n) in files_per_hour(&after) {
        assert!(n <= 3, "hour {h}: {n} files after compaction");
    }
    for f in &after {
        let hour = (f.hour() - BASE) / HOUR_US;
        let want = if hour == 7 { 1 } else { 2 };
        assert_eq!(f.level, want, "{}", f.path);
    }
    assert_eq!(rows_per_hour(&after), appended, "no row lost or added");
    assert_eq!(check_files(&ingest) as u64, total);
    // Compaction inputs are out of the catalog but stay on disk until the caller deletes them.
    assert!(report.obsolete.iter().all(|p| p.exists()));
    for p in &report.obsolete {
        std::fs::remove_file(p).unwrap();
    }

    // Late data for hour 2 (a slow agent): a new level-0 file there, folded in by the next pass.
    put(
        &ingest,
        &source,
        t0,
        BASE + 2 * HOUR_US + 7 * MIN_US,
        MIN_US,
        999,
        &mut seq,
    )
    .await;
    ingest.flush().await.unwrap();
    assert_eq!(files_per_hour(&ingest.catalog().files().unwrap())[&2], 2);

    // Pin 01:10–01:20 for an auditor, then let maintenance run: compaction folds the late
    // file, retention (max age 3 h at 07:30 → hours ending by 04:30) drops hours 0, 2 and 3
    // but keeps the pinned hour 1.
    ingest
        .pin(&Pin {
            name: "audit".into(),
            from: BASE + HOUR_US + 10 * MIN_US,
            to: BASE + HOUR_US + 20 * MIN_US,
            query: serde_json::json!({"kfl": "http"}),
            created_us: now,
        })
        .unwrap();
    let m = ingest.maintain(now).await.unwrap();
    assert_eq!(m.compaction.jobs, 1, "the late file is folded into hour 2");
    let dropped: Vec<i64> = m
        .retention
        .hours
        .iter()
        .map(|h| (h - BASE) / HOUR_US)
        .collect();
    assert_eq!(dropped, vec![0, 2, 3]);
    assert_eq!(m.retention.pinned_kept, 1);
    let kept = ingest.catalog().files().unwrap();
    assert_eq!(
        files_per_hour(&kept).keys().copied().collect::<Vec<_>>(),
        vec![1, 4, 5, 7]
    );
    for h in [0, 2, 3] {
        let folder = ingest
            .data_dir()
            .entries()
            .join(wiretrail_storage::paths::partition(BASE + h * HOUR_US));
        assert!(!folder.exists(), "{} is gone", folder.display());
    }
    let kept_rows: u64 = kept.iter().map(|f| f.rows).sum();
    assert_eq!(check_files(&ingest) as u64, kept_rows);

    // Rollups: the dropped hours' are gone, the rest sum to the rows kept.
    let rollups = ingest.catalog().rollups(i64::MIN, i64::MAX).unwrap();
    let counted: u64 = rollups.iter().map(|(_, r)| r.count).sum();
    assert_eq!(counted, kept_rows);
    assert!(ingest
        .catalog()
        .rollups(BASE, BASE + HOUR_US)
        .unwrap()
        .is_empty());
    let protocols = ingest
        .catalog()
        .tag_values(TagKind::Protocol, BASE + 4 * HOUR_US, BASE + 5 * HOUR_US)
        .unwrap();
    assert!(
        protocols.contains("http") && protocols.contains("dns"),
        "{protocols:?}"
    );

    // The tag index prunes whole files before any footer is read, and lists distinct values.
    let q = wiretrail_query::QueryService::new(ingest.clone());
    let req = |kfl: &str| wiretrail_query::EntriesRequest {
        kfl: kfl.into(),
        limit: Some(10),
        ..Default::default()
    };
    let none = q
        .entries(&req(r#"node.name == "no-such-node""#))
        .await
        .unwrap();
    assert!(none.entries.is_empty());
    assert_eq!(none.stats.files_scanned, 0);
    assert_eq!(none.stats.files_pruned, kept.len());
    let dns = q.entries(&req("dns and node.name != \"x\"")).await.unwrap();
    assert_eq!(dns.entries.len(), 10);
    assert!(dns.entries.iter().all(|e| e["protocol"] == "dns"));
    let protocols = q.tag_values("protocol", None, None).await.unwrap();
    assert!(protocols.contains(&"redis".to_string()), "{protocols:?}");
    drop(q);

    // `wiretrail index rebuild` from the manifests reproduces the catalog.
    let files_before = ingest.catalog().files().unwrap();
    let pins_before = ingest.catalog().pins().unwrap();
    drop(ingest);
    std::fs::remove_dir_all(dir.join("index")).unwrap();
    let out = Command::new(BIN)
        .args(["index", "rebuild", "--data"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{}", String::from_utf8_lossy(&out.stdout));
    let ingest = Ingest::open(&dir, config.clone()).await.unwrap();
    assert_eq!(ingest.catalog().files().unwrap(), files_before);
    assert_eq!(ingest.catalog().pins().unwrap(), pins_before);
    let mut again = ingest.catalog().rollups(i64::MIN, i64::MAX).unwrap();
    let mut want = rollups.clone();
    again.sort_by(|a, b| a.0.cmp(&b.0));
    want.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(again, want, "rollups recomputed from the files");

    // Losing the index without running the command: the next start rebuilds it itself.
    drop(ingest);
    std::fs::remove_dir_all(dir.join("index")).unwrap();
    let ingest = Ingest::open(&dir, config).await.unwrap();
    assert_eq!(ingest.catalog().files().unwrap(), files_before);
    drop(ingest);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Appends one copy of the corpus entries squeezed into `[start, start + span)`, with new ids
/// (copy number `copy`); returns the rows appended.
async fn put(
    ingest: &Ingest,
    source: &[RecordBatch],
    t0: i64,
    start: i64,
    span: i64,
    copy: u32,
    seq: &mut u64,
) -> u64 {
    let mut n = 0u32;
    for b in source {
        let shifted = reshape(b, "gen", copy * 100_000 + n, |t| {
            start + (t - t0).rem_euclid(span)
        });
        n += b.num_rows() as u32;
        *seq += 1;
        ingest.append("gen", *seq, shifted).await.unwrap();
    }
    u64::from(n)
}
