//! The long robustness run: every corpus capture, mutated over and over (bytes flipped, header
//! bytes overwritten, packets cut short, duplicated, reordered, dropped), through the whole
//! pipeline — capture decoding, reassembly, detection and every dissector. Runs until at least
//! `MUTATED` packets were mutated (default 1,000,000), then prints what it fed, what came out,
//! the dissect errors counted, and the peak memory (VmHWM) of the process. Any panic is caught,
//! reported with the seed that reproduces it, and makes the run fail.
//!
//! usage: cargo run --release -p wiretrail-agent --example mutation_bench -- [MUTATED] [SEED]

#[path = "../tests/support/mutate.rs"]
mod mutate;

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::time::Instant;

use mutate::{mutate_counted, packets, Rng};
use wiretrail_agent::{Packet, Pipeline, PipelineConfig};

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let target: u64 = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let seed: u64 = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(0x005e_ed0f_f00d);
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus/pcaps");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus not found at {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "pcap"))
        .collect();
    files.sort();
    let captures: Vec<(String, Vec<Packet>)> = files
        .iter()
        .map(|f| {
            let name = f.file_stem().unwrap().to_string_lossy().into_owned();
            (name, packets(f))
        })
        .collect();
    std::panic::set_hook(Box::new(|_| {})); // reported below, with the seed
    let start = Instant::now();
    let mut rng = Rng(seed);
    let (mut variants, mut fed, mut mutated, mut panics) = (0u64, 0u64, 0u64, 0u64);
    let mut entries: BTreeMap<String, u64> = BTreeMap::new();
    let mut dissect_errors = 0u64;
    let mut round = 0u64;
    while mutated < target {
        for (name, pkts) in &captures {
            // One whole-capture variant per capture every 8 rounds, windows otherwise (a
            // window starts mid-connection, which exercises the no-handshake paths).
            let window: &[Packet] = if round.is_multiple_of(8) || pkts.len() <= 300 {
                pkts
            } else {
                let start = rng.below(pkts.len() - 300);
                &pkts[start..start + 1 + rng.below(300)]
            };
            let variant_seed = rng.next();
            let mut vrng = Rng(variant_seed | 1);
            let (input, changed) = mutate_counted(window, &mut vrng);
            let body_cap = 1 + vrng.below(1 << 16);
            let run = catch_unwind(AssertUnwindSafe(|| {
                let mut p = Pipeline::new(PipelineConfig {
                    body_cap,
                    ..Default::default()
                });
                let mut out = Vec::new();
                for pkt in &input {
                    p.packet(pkt.ts_us, pkt.link, &pkt.data);
                    out.extend(p.take_entries().into_iter().map(|e| e.protocol));
                }
                p.finish();
                out.extend(p.take_entries().into_iter().map(|e| e.protocol));
                (out, p.stats().dissect_errors)
            }));
            match run {
                Ok((protocols, errs)) => {
                    for proto in protocols {
                        *entries.entry(proto).or_default() += 1;
                    }
                    dissect_errors += errs;
                }
                Err(_) => {
                    panics += 1;
                    eprintln!("PANIC: capture {name}, variant seed {variant_seed:#x}");
                }
            }
            variants += 1;
            fed += input.len() as u64;
            mutated += changed;
        }
        round += 1;
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{}",
        serde_json::json!({
            "captures": captures.len(),
            "variants": variants,
            "packets_fed": fed,
            "packets_mutated": mutated,
            "entries_by_protocol": entries,
            "dissect_errors": dissect_errors,
            "panics": panics,
            "seconds": secs,
            "peak_rss_mib": peak_rss_mib(),
            "seed": seed,
        })
    );
    if panics > 0 {
        std::process::exit(1);
    }
}
