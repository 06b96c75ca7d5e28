//! Crash safety through the real binary: every entry acknowledged to an import survives a
//! SIGKILL of the server exactly once, and a data directory has one owner.

mod common;

use std::collections::BTreeSet;
use std::process::Command;

use common::*;

#[test]
fn acked_entries_survive_kill_9_exactly_once() {
    if !corpus_available() {
        return;
    }
    let dir = temp_dir("durability");
    let data = dir.join("data");
    let server = Server::start(&data);
    let mut acked = 0;
    for name in ["cluster_mix.pcap", "http1_keepalive.pcap", "dns_udp.pcap"] {
        let s = import(&["--server", &server.flight, pcap(name).to_str().unwrap()]);
        acked += s["acked_entries"].as_u64().unwrap() as usize;
    }
    // Right after the last acknowledgement: no flush has happened (the interval is 60 s).
    server.kill();
    let server = Server::start(&data);
    let all = server.all("", None, None);
    let ids: BTreeSet<&str> = all.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(all.len(), acked, "every acknowledged entry is back");
    let metrics = reqwest::blocking::get(format!("{}/metrics", server.http))
        .unwrap()
        .text()
        .unwrap();
    assert!(
        metrics.contains(&format!("wiretrail_buffer_rows {acked}")),
        "replayed rows are in the buffer:\n{metrics}"
    );
    assert_eq!(ids.len(), acked, "and none twice");

    // A second owner is refused while the server runs, and nothing is damaged.
    let out = Command::new(BIN)
        .args(["import", "--data"])
        .arg(&data)
        .arg(pcap("dns_udp.pcap"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("in use"), "{err}");
    assert_eq!(server.count(""), acked);

    // Kill again after the data reached Parquet (graceful stop flushes), then once more.
    let status = server.terminate();
    assert!(
        status.success(),
        "wiretrail up exits cleanly on SIGTERM: {status}"
    );
    let server = Server::start(&data);
    assert_eq!(server.count(""), acked);
    server.kill();
    let server = Server::start(&data);
    assert_eq!(server.count(""), acked);
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}
