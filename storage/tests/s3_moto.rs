//! RemoteStore against a real S3 API (moto's server): real Parquet files go up (single PUT and
//! multipart), are listed, read by range, come back byte-identical and readable, and go away.

mod support;

use std::fs::File;
use std::path::{Path, PathBuf};

use arrow::array::{Array, AsArray};
use arrow::compute::concat_batches;
use arrow::record_batch::RecordBatch;
use object_store::ObjectStoreExt;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use support::moto::Moto;
use wiretrail_proto::schema::ID;
use wiretrail_proto::{Endpoint, Entry, EntryBatchBuilder, EntryId, Identity};
use wiretrail_storage::paths::entry_file_name;
use wiretrail_storage::remote::{MULTIPART_THRESHOLD, PART_SIZE};
use wiretrail_storage::{RemoteStore, StorageError};

/// 2026-11-25T03:12:44Z
const TS: i64 = 1_795_576_364_269_324;

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("wt-s3-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("create temp dir");
    d
}

/// Entries with `body` bytes of incompressible response body each (xorshift noise).
fn entries(start: i64, n: usize, body: usize) -> RecordBatch {
    let mut rng = 0x9e37_79b9_7f4a_7c15u64 ^ start as u64;
    let mut b = EntryBatchBuilder::new();
    for i in 0..n {
        let ts = start + i as i64 * 1_000;
        let mut e = Entry::new(EntryId::new(ts, "n", i as u32), ts, "n", "http", "pcap");
        let side = |ip: &str, port, name: &str| Endpoint {
            ip: ip.into(),
            port,
            identity: Identity {
                name: name.into(),
                ..Default::default()
            },
        };
        e.src = side("10.0.0.1", 40000, "a");
        e.dst = side("10.0.0.2", 80, "b");
        e.method = Some("GET".into());
        e.path = Some(format!("/item/{i}"));
        e.status = Some(200);
        if body > 0 {
            let bytes = (0..body)
                .map(|_| {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    rng as u8
                })
                .collect::<Vec<u8>>();
            e.response_size = bytes.len() as u64;
            e.response_body = Some(bytes);
        }
        b.push(&e);
    }
    b.finish().expect("entry batch")
}

fn write_parquet(path: &Path, batch: &RecordBatch) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    let file = File::create(path).expect("create parquet file");
    let mut w = ArrowWriter::try_new(file, batch.schema(), None).expect("parquet writer");
    w.write(batch).expect("write batch");
    w.close().expect("close parquet");
}

fn read_parquet(path: &Path) -> RecordBatch {
    let file = File::open(path).expect("open parquet");
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .expect("parquet footer")
        .build()
        .expect("parquet reader");
    let batches = reader.collect::<Result<Vec<_>, _>>().expect("read batches");
    concat_batches(&batches[0].schema(), &batches).expect("concat")
}

fn ids(batch: &RecordBatch) -> Vec<Vec<u8>> {
    let col = batch
        .column_by_name(ID)
        .expect("id column")
        .as_fixed_size_binary();
    (0..col.len()).map(|i| col.value(i).to_vec()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parquet_files_round_trip_through_s3() {
    let Some(moto) = Moto::start("roundtrip") else {
        return;
    };
    moto.create_bucket("traffic");
    let store = RemoteStore::new(&moto.config("traffic", "wt/prod")).expect("store");
    store.check().await.expect("bucket reachable");
    let local = temp_dir("roundtrip");

    // A flush-sized file and an hour file above the multipart threshold, in two hours.
    let small_rel = entry_file_name(0, TS, 1);
    let big_rel = entry_file_name(1, TS + 3_600_000_000, 2);
    let small = entries(TS, 200, 0);
    let big = entries(TS + 3_600_000_000, 330, 64 * 1024);
    for (rel, batch) in [(&small_rel, &small), (&big_rel, &big)] {
        write_parquet(&local.join("entries").join(rel), batch);
    }
    let small_len = std::fs::metadata(local.join("entries").join(&small_rel))
        .expect("stat")
        .len();
    let big_len = std::fs::metadata(local.join("entries").join(&big_rel))
        .expect("stat")
        .len();
    assert!(small_len < MULTIPART_THRESHOLD, "{small_len}");
    assert!(big_len > MULTIPART_THRESHOLD, "{big_len}");
    eprintln!("small file {small_len} bytes, big file {big_len} bytes");

    let up_small = store
        .upload(&local.join("entries").join(&small_rel), &small_rel)
        .await
        .expect("upload small");
    let up_big = store
        .upload(&local.join("entries").join(&big_rel), &big_rel)
        .await
        .expect("upload big");
    assert_eq!((up_small.size, up_big.size), (small_len, big_len));
    // S3 gives a multipart object the ETag `<md5 of part md5s>-<parts>`.
    let parts = big_len.div_ceil(PART_SIZE as u64);
    let big_etag = up_big.e_tag.clone().unwrap_or_default();
    assert!(
        big_etag.trim_matches('"').ends_with(&format!("-{parts}")),
        "multipart ETag with {parts} parts, got {big_etag}"
    );
    assert!(!up_small.e_tag.unwrap_or_default().contains('-'));

    // list: whole tree, one day, one hour; sizes as uploaded.
    let all = store.list("").await.expect("list all");
    let listed: Vec<(&str, u64)> = all.iter().map(|o| (o.rel.as_str(), o.size)).collect();
    assert_eq!(
        listed,
        vec![(small_rel.as_str(), small_len), (big_rel.as_str(), big_len)]
    );
    assert_eq!(
        store.list("dt=2026-11-25").await.expect("list day").len(),
        2
    );
    let hour = store.list("dt=2026-11-25/hh=03").await.expect("list hour");
    assert_eq!(hour.len(), 1);
    assert_eq!(hour[0].rel, small_rel);
    assert!(store.list("dt=2026-11-24").await.expect("list").is_empty());
    assert_eq!(store.head(&big_rel).await.expect("head").size, big_len);

    // The bucket holds the local layout under the prefix: another client without a prefix
    // (what DuckDB or Spark would be) sees `wt/prod/dt=…/hh=…/<file>.parquet`.
    let raw = RemoteStore::new(&moto.config("traffic", "")).expect("raw store");
    let keys: Vec<String> = raw
        .list("")
        .await
        .expect("raw list")
        .into_iter()
        .map(|o| o.rel)
        .collect();
    assert_eq!(
        keys,
        vec![format!("wt/prod/{small_rel}"), format!("wt/prod/{big_rel}")]
    );
    let meta = store
        .object_store()
        .head(&store.object_path(&big_rel))
        .await
        .expect("head through the DataFusion handle");
    assert_eq!(meta.size, big_len);
    assert_eq!(
        store.file_url(&big_rel),
        format!("s3://traffic/wt/prod/{big_rel}")
    );

    // Byte ranges: equal to the same bytes of the local file; the tail is the Parquet magic.
    let local_big = std::fs::read(local.join("entries").join(&big_rel)).expect("read local");
    let mid = 9_000_000..9_000_000 + 100_000u64;
    let got = store.get_range(&big_rel, mid.clone()).await.expect("range");
    assert_eq!(&got[..], &local_big[mid.start as usize..mid.end as usize]);
    let tail = store
        .get_range(&big_rel, big_len - 4..big_len)
        .await
        .expect("tail");
    assert_eq!(&tail[..], b"PAR1");

    // Download into a fresh tree: byte-identical, and parquet reads the same rows.
    let back = temp_dir("roundtrip-back");
    for (rel, batch) in [(&small_rel, &small), (&big_rel, &big)] {
        let dest = back.join("entries").join(rel);
        let n = store.download(rel, &dest).await.expect("download");
        assert_eq!(
            std::fs::read(&dest).expect("read downloaded"),
            std::fs::read(local.join("entries").join(rel)).expect("read original")
        );
        assert_eq!(n, std::fs::metadata(&dest).expect("stat").len());
        let read = read_parquet(&dest);
        assert_eq!(read.num_rows(), batch.num_rows());
        assert_eq!(ids(&read), ids(batch));
        assert_eq!(read.schema(), batch.schema());
    }

    // Delete: gone from head and list; deleting again is fine.
    store.delete(&small_rel).await.expect("delete");
    assert!(matches!(
        store.head(&small_rel).await,
        Err(StorageError::RemoteNotFound { .. })
    ));
    store.delete(&small_rel).await.expect("delete twice");
    store.delete(&big_rel).await.expect("delete big");
    assert!(store.list("").await.expect("list").is_empty());

    let _ = std::fs::remove_dir_all(&local);
    let _ = std::fs::remove_dir_all(&back);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_bucket_and_key_errors_name_them() {
    let Some(moto) = Moto::start("errors") else {
        return;
    };
    moto.create_bucket("present");
    let dir = temp_dir("errors");
    let rel = entry_file_name(0, TS, 3);
    let file = dir.join("entries").join(&rel);
    write_parquet(&file, &entries(TS, 10, 0));

    // Missing bucket: startup check and upload both say which bucket.
    let absent = RemoteStore::new(&moto.config("absent-bucket", "")).expect("store");
    let e = absent.check().await.expect_err("missing bucket");
    eprintln!("missing bucket, check: {e}");
    assert!(e.to_string().contains("s3://absent-bucket/"), "{e}");
    assert!(e.to_string().contains("NoSuchBucket"), "{e}");
    let e = absent
        .upload(&file, &rel)
        .await
        .expect_err("upload to missing bucket");
    eprintln!("missing bucket, upload: {e}");
    assert!(matches!(e, StorageError::Remote { .. }), "{e:?}");
    assert!(e.to_string().contains("NoSuchBucket"), "{e}");
    assert!(
        e.to_string().contains(&format!("s3://absent-bucket/{rel}")),
        "{e}"
    );

    // Missing key: head, range and download say which key; no file or `.part` left behind.
    let store = RemoteStore::new(&moto.config("present", "p")).expect("store");
    let missing = "dt=2026-11-25/hh=03/0-1-0000000000000000.parquet";
    let e = store.head(missing).await.expect_err("head missing");
    eprintln!("missing key, head: {e}");
    assert!(matches!(e, StorageError::RemoteNotFound { .. }), "{e:?}");
    assert!(
        e.to_string().contains(&format!("s3://present/p/{missing}")),
        "{e}"
    );
    let e = store
        .get_range(missing, 0..4)
        .await
        .expect_err("range missing");
    assert!(matches!(e, StorageError::RemoteNotFound { .. }), "{e:?}");
    let dest = dir.join("back").join("x.parquet");
    let e = store
        .download(missing, &dest)
        .await
        .expect_err("download missing");
    eprintln!("missing key, download: {e}");
    assert!(matches!(e, StorageError::RemoteNotFound { .. }), "{e:?}");
    let left: Vec<_> = std::fs::read_dir(dir.join("back"))
        .expect("read dir")
        .collect();
    assert!(left.is_empty(), "download left {left:?}");

    // A missing local file names the local path.
    let e = store
        .upload(&dir.join("nope.parquet"), &rel)
        .await
        .expect_err("missing local file");
    assert!(e.to_string().contains("nope.parquet"), "{e}");

    let _ = std::fs::remove_dir_all(&dir);
}
