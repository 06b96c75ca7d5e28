//! Dissection throughput on one core: reads capture files through the whole agent pipeline
//! (pcap parsing, IP/TCP decoding, reassembly, protocol detection, dissection, pairing) and
//! prints one JSON line per file: bytes, packets, entries per protocol, seconds, MB/s,
//! entries/s. No storage: this is the number to put next to `tshark -T fields` on the same
//! file (`bench/dissect_vs_tshark.sh`).
//!
//! usage: [IDENTITIES=FILE] cargo run --release -p wiretrail-agent --example dissect -- FILE…

use std::collections::BTreeMap;

/// The allocator the `wiretrail` binary uses, so the figure is the one users get.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use std::time::Instant;

use wiretrail_agent::{CaptureReader, Pipeline, PipelineConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files: Vec<String> = std::env::args().skip(1).collect();
    if files.is_empty() {
        return Err("usage: dissect FILE [FILE ...]".into());
    }
    for f in files {
        let start = Instant::now();
        let mut r = CaptureReader::open(&f)?;
        // IDENTITIES=FILE resolves addresses with an `--identities` map (time-aware resolver).
        let identities = match std::env::var_os("IDENTITIES") {
            Some(path) => wiretrail_agent::IdentityMap::load(path)?.into(),
            None => Default::default(),
        };
        let mut p = Pipeline::new(PipelineConfig {
            node: "bench".into(),
            identities,
            ..Default::default()
        });
        let mut by_protocol: BTreeMap<String, u64> = BTreeMap::new();
        let mut count = |p: &mut Pipeline| {
            for e in p.take_entries() {
                *by_protocol.entry(e.protocol).or_default() += 1;
            }
        };
        let mut n = 0u64;
        while let Some(pkt) = r.next_packet()? {
            p.packet(pkt.ts_us, pkt.link, &pkt.data);
            n += 1;
            if n.is_multiple_of(4096) {
                count(&mut p);
            }
        }
        p.finish();
        count(&mut p);
        let secs = start.elapsed().as_secs_f64();
        let entries: u64 = by_protocol.values().sum();
        let s = p.stats();
        if std::env::var_os("DISSECT_STATS").is_some() {
            eprintln!("{s:#?}");
        }
        println!(
            "{}",
            serde_json::json!({
                "file": f,
                "bytes": r.total_bytes(),
                "packets": s.packets,
                "entries": entries,
                "by_protocol": by_protocol,
                "dissect_errors": s.dissect_errors,
                "seconds": secs,
                "mb_per_s": r.total_bytes() as f64 / 1e6 / secs,
                "entries_per_s": entries as f64 / secs,
            })
        );
    }
    Ok(())
}
