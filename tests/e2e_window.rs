//! Time windows: `[from, to)` returns exactly the entries whose first request byte lies in it,
//! and a window outside the data opens no Parquet file.

mod common;

use common::*;

#[test]
fn cluster_phases_and_windows() {
    if !corpus_available() {
        return;
    }
    let dir = temp_dir("window");
    let data = dir.join("data");
    let ids = pcap("cluster_mix.identities.json");
    // Offline import (flushes to Parquet), then serve the directory.
    import(&[
        "--data",
        data.to_str().unwrap(),
        "--identities",
        ids.to_str().unwrap(),
        pcap("cluster_mix.pcap").to_str().unwrap(),
    ]);
    import(&[
        "--data",
        data.to_str().unwrap(),
        pcap("http1_keepalive.pcap").to_str().unwrap(),
    ]);
    let server = Server::start(&data);

    let phases = std::fs::read_to_string(pcap("cluster_mix.phases.tsv")).unwrap();
    let mut lines = phases.lines();
    let cols: Vec<&str> = lines.next().unwrap().split('\t').collect();
    let col = |name: &str| cols.iter().position(|c| *c == name).unwrap();
    for line in lines {
        let f: Vec<&str> = line.split('\t').collect();
        let (start, end) = (f[col("start")], f[col("end")]);
        let http = server.all("http", Some(start), Some(end)).len();
        let dns = server.all("dns", Some(start), Some(end)).len();
        eprintln!(
            "phase {}: http {http} (truth {}), dns {dns} (truth {})",
            f[0],
            f[col("http_requests")],
            f[col("dns_queries")]
        );
        assert_eq!(
            http.to_string(),
            f[col("http_requests")],
            "phase {} HTTP",
            f[0]
        );
        assert_eq!(dns.to_string(), f[col("dns_queries")], "phase {} DNS", f[0]);
    }

    // A window between two requests of http1_keepalive, from the truth's frame times.
    let base = first_packet_us(&pcap("http1_keepalive.pcap"));
    let mut times: Vec<i64> = http_truth("http1_keepalive")
        .iter()
        .map(|r| base + (r.time_rel * 1e6).round() as i64)
        .collect();
    times.sort();
    let from_us = (times[4] + times[5]) / 2;
    let to_us = (times[19] + times[20]) / 2;
    let want = times
        .iter()
        .filter(|t| **t >= from_us && **t < to_us)
        .count();
    let fmt = |us: i64| chrono_like(us);
    let got = server.all("http", Some(&fmt(from_us)), Some(&fmt(to_us)));
    assert_eq!(got.len(), want, "entries with ts in [from, to)");
    assert!(got.iter().all(|e| {
        let t = e["ts_us"].as_i64().unwrap();
        t >= from_us && t < to_us
    }));
    // Inclusive start, exclusive end, to the microsecond.
    let exact = server.all("http", Some(&fmt(times[5])), Some(&fmt(times[6])));
    assert_eq!(
        exact.len(),
        times
            .iter()
            .filter(|t| **t >= times[5] && **t < times[6])
            .count()
    );

    // Outside the data: nothing, and no file opened.
    let (status, v) =
        server.get("/api/v1/entries?from=2020-01-01T00:00:00Z&to=2020-01-02T00:00:00Z");
    assert_eq!(status, 200);
    assert_eq!(v["entries"].as_array().unwrap().len(), 0);
    assert_eq!(v["stats"]["files_scanned"], 0, "{v}");
    assert!(v["stats"]["files_pruned"].as_u64().unwrap() >= 2);
    let (_, v) = server.get("/api/v1/entries?from=1795576364000&to=1795576365000");
    assert_eq!(
        v["stats"]["files_scanned"], 1,
        "only the cluster_mix file overlaps: {}",
        v["stats"]
    );
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

/// RFC 3339 with microseconds, without pulling in a date crate for the test.
fn chrono_like(us: i64) -> String {
    // The API also takes epoch milliseconds, but this window needs µs precision.
    let secs = us.div_euclid(1_000_000);
    let micros = us.rem_euclid(1_000_000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{micros:06}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// `limit(n)` caps the whole answer, not the first page: following cursors with a page size
/// smaller than n returns exactly the newest n matching entries, in order, each once.
#[test]
fn kfl_limit_is_exact_across_pages() {
    if !corpus_available() {
        return;
    }
    let dir = temp_dir("limitpages");
    let server = Server::start(&dir.join("data"));
    import(&[
        "--server",
        &server.flight,
        pcap("http1_keepalive.pcap").to_str().unwrap(),
        pcap("dns_udp.pcap").to_str().unwrap(),
    ]);
    let all: Vec<String> = server
        .all("dns", None, None)
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect();
    assert!(all.len() > 7, "{}", all.len());
    let mut got = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut q = vec![
            ("kfl", "dns and limit(7)".to_string()),
            ("limit", "3".into()),
        ];
        if let Some(c) = &cursor {
            q.push(("cursor", c.clone()));
        }
        let v: serde_json::Value = reqwest::blocking::Client::new()
            .get(format!("{}/api/v1/entries", server.http))
            .query(&q)
            .send()
            .unwrap()
            .json()
            .unwrap();
        pages += 1;
        got.extend(
            v["entries"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["id"].as_str().unwrap().to_string()),
        );
        match v["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(pages, 3, "3 + 3 + 1");
    assert_eq!(got, all[..7].to_vec());
}
