//! Robustness: every corpus capture, mutated (bytes flipped, packets cut short, duplicated,
//! reordered, dropped), goes through the whole pipeline without a panic. A fixed seed keeps
//! the run reproducible; `bench/` is the place for the long version.

use std::path::PathBuf;

use wiretrail_agent::{CaptureReader, Packet, Pipeline, PipelineConfig, Redactor};

mod support;

use support::mutate::{mutate, packets, Rng};

#[test]
fn mutated_corpus_never_panics() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus/pcaps");
    if !dir.exists() {
        eprintln!("SKIP: corpus not found at {}", dir.display());
        return;
    }
    let mut rng = Rng(0x5eed_cafe_f00d_1234);
    let (mut variants, mut inputs, mut entries) = (0u64, 0u64, 0u64);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "pcap"))
        .collect();
    files.sort();
    for f in &files {
        let pkts = packets(f);
        // Two whole-capture variants, then many short windows (each starts mid-connection,
        // which exercises the no-SYN paths) so that thousands of variants stay fast.
        for v in 0..122 {
            let window: &[Packet] = if v < 2 || pkts.len() <= 200 {
                &pkts
            } else {
                let start = rng.below(pkts.len() - 200);
                &pkts[start..start + 1 + rng.below(200)]
            };
            let mutated = mutate(window, &mut rng);
            let mut p = Pipeline::new(PipelineConfig {
                body_cap: 1 + rng.below(8192),
                // Redaction runs on every finished entry, so it sees the mutated ones too.
                redactor: Some(Redactor::default()),
                ..Default::default()
            });
            for pkt in &mutated {
                p.packet(pkt.ts_us, pkt.link, &pkt.data);
                inputs += 1;
            }
            p.finish();
            entries += p.take_entries().len() as u64;
            let s = p.stats();
            assert_eq!(s.packets as usize, mutated.len());
            variants += 1;
        }
    }
    eprintln!(
        "{variants} variants, {inputs} mutated packets from {} captures, {entries} entries, no panic",
        files.len()
    );
    assert!(variants >= 2500);
}

#[test]
fn mutated_capture_files_never_panic() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus/pcaps");
    let Ok(real) = std::fs::read(dir.join("dns_udp.pcap")) else {
        eprintln!("SKIP: corpus not found");
        return;
    };
    let tmp = std::env::temp_dir().join(format!("wt-mutfile-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let mut rng = Rng(0xfeed_beef_1234_5678);
    let (mut errors, mut packets_read) = (0u64, 0u64);
    for i in 0..300 {
        let mut bytes = real.clone();
        for _ in 0..1 + rng.below(8) {
            // Mostly the file and record headers, where lengths and magic numbers live.
            let at = if rng.below(2) == 0 {
                rng.below(64)
            } else {
                rng.below(bytes.len())
            };
            bytes[at] = rng.next() as u8;
        }
        if rng.below(4) == 0 {
            bytes.truncate(rng.below(bytes.len()));
        }
        let path = tmp.join(format!("m{i}.pcap"));
        std::fs::write(&path, &bytes).unwrap();
        let Ok(mut r) = CaptureReader::open(&path) else {
            errors += 1;
            continue;
        };
        let mut p = Pipeline::new(PipelineConfig::default());
        loop {
            match r.next_packet() {
                Ok(Some(pkt)) => {
                    packets_read += 1;
                    p.packet(pkt.ts_us, pkt.link, &pkt.data);
                }
                Ok(None) => break,
                Err(e) => {
                    assert!(!e.to_string().is_empty());
                    errors += 1;
                    break;
                }
            }
        }
        p.finish();
    }
    let _ = std::fs::remove_dir_all(&tmp);
    eprintln!("300 mutated files: {packets_read} packets read, {errors} clear errors");
}

#[test]
fn corrupt_capture_files_are_errors_not_panics() {
    let dir = std::env::temp_dir().join(format!("wt-corrupt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let real =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus/pcaps/dns_udp.pcap");
    let bytes = std::fs::read(&real).unwrap_or_default();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", vec![]),
        ("garbage", b"this is not a capture file at all".to_vec()),
        (
            "cut",
            bytes
                .get(..bytes.len().saturating_sub(7))
                .unwrap_or_default()
                .to_vec(),
        ),
        (
            "cut-in-header",
            bytes.get(..30).unwrap_or_default().to_vec(),
        ),
        ("header-only", bytes.get(..24).unwrap_or_default().to_vec()),
    ];
    for (name, data) in cases {
        let path = dir.join(name);
        std::fs::write(&path, &data).unwrap();
        match CaptureReader::open(&path) {
            Err(e) => eprintln!("{name}: {e}"),
            Ok(mut r) => {
                let mut n = 0;
                loop {
                    match r.next_packet() {
                        Ok(Some(_)) => n += 1,
                        Ok(None) => break,
                        Err(e) => panic!(
                            "{name}: a truncated last record ends the file, not an error: {e}"
                        ),
                    }
                }
                if name == "cut" {
                    assert!(
                        n > 40,
                        "cut: packets before the truncated record are kept ({n})"
                    );
                }
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
