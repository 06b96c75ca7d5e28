//! Newest-first pages over a store that spans days with gaps (files of several hours plus rows
//! still in the ingest buffer): every page is exactly the reference order (ts, id descending,
//! computed here from the rows the test appended), a small first page reads only the newest
//! files, and `count` equals the reference count for the whole store and for windows.

mod common;

use std::collections::HashSet;

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::{Int64Type, TimestampMicrosecondType};
use common::*;
use wiretrail_ingest::{Ingest, IngestConfig};
use wiretrail_proto::EntryId;
use wiretrail_query::sql::SqlRequest;
use wiretrail_query::{EntriesRequest, QueryService};
use wiretrail_storage::paths::HOUR_US;

const MIN_US: i64 = 60_000_000;
/// 2026-11-20T00:00:00Z
const BASE: i64 = 1_795_132_800_000_000;

/// Whether a `ts` satisfies a SQL condition (the reference for the query).
type TsCheck = Box<dyn Fn(i64) -> bool>;

/// (ts, id, protocol) of every appended row.
type Row = (i64, [u8; 16], String);

fn rows_of(b: &RecordBatch) -> Vec<Row> {
    let ts = b
        .column_by_name("ts")
        .unwrap()
        .as_primitive::<TimestampMicrosecondType>();
    let ids = b.column_by_name("id").unwrap().as_fixed_size_binary();
    let proto = b.column_by_name("protocol").unwrap();
    let proto = arrow::compute::cast(proto, &arrow::datatypes::DataType::Utf8).unwrap();
    let proto = proto.as_string::<i32>();
    (0..b.num_rows())
        .map(|i| {
            (
                ts.value(i),
                ids.value(i).try_into().unwrap(),
                proto.value(i).to_string(),
            )
        })
        .collect()
}

/// Every page of `kfl` (page size `limit`), following cursors; the ids in order.
async fn pages(q: &QueryService, kfl: &str, limit: usize) -> (Vec<String>, usize) {
    let (mut ids, mut n_pages, mut cursor) = (Vec::new(), 0, None);
    loop {
        let page = q
            .entries(&EntriesRequest {
                kfl: kfl.into(),
                limit: Some(limit),
                cursor: cursor.clone(),
                ..Default::default()
            })
            .await
            .unwrap();
        n_pages += 1;
        ids.extend(
            page.entries
                .iter()
                .map(|e| e["id"].as_str().unwrap().to_string()),
        );
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => return (ids, n_pages),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn newest_first_pages_and_counts_over_days_with_gaps() {
    if !corpus_available() {
        return;
    }
    let source = corpus_batches(&["cluster_mix.pcap", "http1_keepalive.pcap", "dns_udp.pcap"]);
    let t0 = min_ts(&source);
    let dir = temp_dir("paging");
    let ingest = Ingest::open(&dir, IngestConfig::default()).await.unwrap();

    // Copies of the corpus, each squeezed into 10 minutes, at hours with gaps of 1 h to 40 h
    // (the newest-first reader widens its slice from a minute by 4× until the page is full, so
    // pages cross slices, files and gaps); the last copy stays in the ingest buffer.
    let starts = [0, 1, 2, 2, 7, 30, 70];
    let mut all: Vec<Row> = Vec::new();
    let mut seq = 0u64;
    for (copy, hour) in starts.iter().enumerate() {
        let start = BASE + hour * HOUR_US + (copy as i64 % 3) * 15 * MIN_US;
        let mut n = 0u32;
        for b in &source {
            let shifted = reshape(b, "gen", copy as u32 * 100_000 + n, |t| {
                start + (t - t0).rem_euclid(10 * MIN_US)
            });
            n += b.num_rows() as u32;
            all.extend(rows_of(&shifted));
            seq += 1;
            ingest.append("gen", seq, shifted).await.unwrap();
        }
        if copy + 1 < starts.len() {
            ingest.flush().await.unwrap();
        }
    }
    let unique: HashSet<[u8; 16]> = all.iter().map(|r| r.1).collect();
    assert_eq!(unique.len(), all.len(), "ids are unique");
    all.sort_by_key(|r| std::cmp::Reverse((r.0, r.1)));
    let expect = |keep: &dyn Fn(&Row) -> bool| -> Vec<String> {
        all.iter()
            .filter(|r| keep(r))
            .map(|r| EntryId(r.1).to_string())
            .collect()
    };
    let q = QueryService::new(ingest.clone());
    let files = ingest.catalog().files().unwrap().len();
    assert!(files >= 6, "{files} files");

    // Every page, at page sizes that do and do not divide the slices.
    let http = expect(&|r| r.2 == "http");
    let everything = expect(&|_| true);
    for limit in [37, 1000] {
        let (got, n) = pages(&q, "http", limit).await;
        assert_eq!(got, http, "kfl http, limit {limit}");
        assert_eq!(
            n,
            http.len().div_ceil(limit).max(1),
            "pages at limit {limit}"
        );
    }
    let (got, _) = pages(&q, "", 5000).await;
    assert_eq!(got, everything);

    // A first page of the newest rows reads the newest files only.
    let page = q
        .entries(&EntriesRequest {
            limit: Some(5),
            ..Default::default()
        })
        .await
        .unwrap();
    let ids: Vec<&str> = page
        .entries
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, everything[..5].to_vec());
    assert!(
        page.stats.files_scanned < files,
        "first page read {} of {files} files",
        page.stats.files_scanned
    );

    // Counts: everything, a KFL filter, and a window that cuts hours.
    let count = |kfl: &str, from: Option<i64>, to: Option<i64>| {
        let q = &q;
        let kfl = kfl.to_string();
        async move {
            q.count(&EntriesRequest {
                kfl,
                from,
                to,
                ..Default::default()
            })
            .await
            .unwrap()
            .count
        }
    };
    assert_eq!(count("", None, None).await, all.len());
    assert_eq!(
        count("dns", None, None).await,
        expect(&|r| r.2 == "dns").len()
    );
    let (from, to) = (BASE + HOUR_US + 5 * MIN_US, BASE + 7 * HOUR_US + 3 * MIN_US);
    let in_window = |r: &Row| r.0 >= from && r.0 < to;
    assert_eq!(
        count("", Some(from), Some(to)).await,
        expect(&|r| in_window(r)).len()
    );
    assert_eq!(count("http and limit(3)", None, None).await, 3);

    // SQL time bounds in every form the table applies exactly (files wholly inside are read
    // without a per-row check, files at an end and the buffer with one), with and without `ts`
    // in the projection, and the `from`/`to` of the request on top.
    let sql = |text: String, from: Option<i64>, to: Option<i64>| {
        let q = &q;
        async move {
            let a = q
                .sql(&SqlRequest {
                    sql: text.clone(),
                    from,
                    to,
                    timeout: None,
                })
                .await
                .unwrap_or_else(|e| panic!("{text}: {e}"));
            let n = a.batches[0].column(0).as_primitive::<Int64Type>().value(0);
            n as usize
        }
    };
    let t = |us: i64| format!("to_timestamp_micros({us})");
    let (a, b) = (
        BASE + 2 * HOUR_US + 7 * MIN_US + 1,
        BASE + 30 * HOUR_US + 4 * MIN_US,
    );
    let cases: Vec<(String, TsCheck)> = vec![
        (
            format!("ts >= {} AND ts < {}", t(a), t(b)),
            Box::new(move |x| x >= a && x < b),
        ),
        (
            format!("ts > {} AND ts <= {}", t(a), t(b)),
            Box::new(move |x| x > a && x <= b),
        ),
        (
            format!("{} <= ts AND {} > ts", t(a), t(b)),
            Box::new(move |x| x >= a && x < b),
        ),
        (
            format!("ts >= {}", t(BASE + 7 * HOUR_US)),
            Box::new(|x| x >= BASE + 7 * HOUR_US),
        ),
        (
            format!("ts < {}", t(BASE + 2 * HOUR_US + 5 * MIN_US)),
            Box::new(|x| x < BASE + 2 * HOUR_US + 5 * MIN_US),
        ),
    ];
    for (cond, keep) in &cases {
        let want = all.iter().filter(|r| keep(r.0)).count();
        for select in ["count(*)", "count(protocol)"] {
            let text = format!("SELECT {select} FROM entries WHERE {cond}");
            assert_eq!(sql(text.clone(), None, None).await, want, "{text}");
        }
        let text = format!("SELECT count(*) FROM (SELECT ts FROM entries WHERE {cond} ORDER BY ts DESC LIMIT 100000)");
        assert_eq!(sql(text.clone(), None, None).await, want, "{text}");
        let windowed = all.iter().filter(|r| keep(r.0) && in_window(r)).count();
        let text = format!("SELECT count(*) FROM entries WHERE {cond}");
        assert_eq!(
            sql(text.clone(), Some(from), Some(to)).await,
            windowed,
            "{text} in [from, to)"
        );
    }
    let err = q
        .count(&EntriesRequest {
            kfl: "response.sttus == 200".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(err.to_string().contains("status"), "{err}");
}
