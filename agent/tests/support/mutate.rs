//! Mutations of real captures, shared by `tests/mutation.rs` (a fixed-seed set) and
//! `examples/mutation_bench.rs` (the long run): bytes flipped anywhere, header bytes
//! overwritten, packets cut short, duplicated, reordered and dropped.

#![allow(dead_code)]

use std::path::Path;

use wiretrail_agent::{CaptureReader, Packet};

/// xorshift64: tiny, fast and reproducible from its seed.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

pub fn packets(path: &Path) -> Vec<Packet> {
    let mut r = CaptureReader::open(path).unwrap();
    let mut out = Vec::new();
    while let Some(p) = r.next_packet().unwrap() {
        out.push(p);
    }
    out
}

/// A mutated copy of `pkts`; about 3 packets in 10 are changed, duplicated, moved or dropped.
pub fn mutate(pkts: &[Packet], rng: &mut Rng) -> Vec<Packet> {
    mutate_counted(pkts, rng).0
}

/// [`mutate`], also returning how many packets were changed, duplicated, moved or dropped.
pub fn mutate_counted(pkts: &[Packet], rng: &mut Rng) -> (Vec<Packet>, u64) {
    let mut out = Vec::with_capacity(pkts.len() + 8);
    let mut changed = 0;
    for p in pkts {
        let mut p = p.clone();
        let what = rng.below(20);
        if what <= 5 {
            changed += 1;
        }
        match what {
            0 => {
                // Flip bytes anywhere, headers included.
                for _ in 0..1 + rng.below(4) {
                    if !p.data.is_empty() {
                        let i = rng.below(p.data.len());
                        p.data[i] ^= 1 << rng.below(8);
                    }
                }
            }
            1 => {
                let keep = rng.below(p.data.len() + 1);
                p.data.truncate(keep);
            }
            // Flip a byte among the link/IP/TCP headers (ports, flags, sequence numbers).
            5 if !p.data.is_empty() => {
                let i = rng.below(p.data.len().min(70));
                p.data[i] = rng.next() as u8;
            }
            2 => out.push(p.clone()),
            3 => continue,
            4 if !out.is_empty() => {
                let i = rng.below(out.len().min(4));
                let at = out.len() - 1 - i;
                out.insert(at, p);
                continue;
            }
            _ => {}
        }
        out.push(p);
    }
    (out, changed)
}
