//! Per-minute service-map rollups kept in RocksDB: `(minute, protocol, src, dst)` → count,
//! errors, bytes and a latency sketch. Values are merged by a RocksDB merge operator, so a flush
//! adds its counts with `merge` in the same WriteBatch that registers its files (exactly once,
//! crash-safe), and an unfiltered service map over hours reads a few thousand keys instead of
//! scanning entries.
//!
//! The latency sketch is a log-bucketed histogram (buckets grow by 2 %, as in DDSketch), so
//! p50/p99 of any merged window are within ~2 % of the exact values.

use std::collections::BTreeMap;

use serde::Serialize;

/// One side of an edge: the identity attributes a service map groups by.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Side {
    pub name: String,
    pub namespace: String,
    pub service: String,
    pub workload: String,
    pub pod: String,
    pub node: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct RollupKey {
    /// Start of the minute, µs since the epoch.
    pub minute: i64,
    pub protocol: String,
    pub src: Side,
    pub dst: Side,
}

/// Relative growth of latency buckets.
const GAMMA: f64 = 1.02;
const SEP: u8 = 0x1f;

/// Order-preserving big-endian encoding of a signed timestamp.
pub(crate) fn ts_key(ts: i64) -> [u8; 8] {
    ((ts as u64) ^ (1 << 63)).to_be_bytes()
}

pub(crate) fn ts_from_key(b: &[u8]) -> Option<i64> {
    Some((u64::from_be_bytes(b.get(..8)?.try_into().ok()?) ^ (1 << 63)) as i64)
}

impl RollupKey {
    pub fn encode(&self) -> Vec<u8> {
        let mut k = ts_key(self.minute).to_vec();
        let parts = [
            &self.protocol,
            &self.src.name,
            &self.src.namespace,
            &self.src.service,
            &self.src.workload,
            &self.src.pod,
            &self.src.node,
            &self.dst.name,
            &self.dst.namespace,
            &self.dst.service,
            &self.dst.workload,
            &self.dst.pod,
            &self.dst.node,
        ];
        for (i, p) in parts.iter().enumerate() {
            if i > 0 {
                k.push(SEP);
            }
            // Identity strings never contain the unit separator; drop it if one ever does.
            k.extend(p.bytes().filter(|b| *b != SEP));
        }
        k
    }

    pub fn decode(b: &[u8]) -> Option<RollupKey> {
        let minute = ts_from_key(b)?;
        let rest = std::str::from_utf8(b.get(8..)?).ok()?;
        let p: Vec<&str> = rest.split(SEP as char).collect();
        if p.len() != 13 {
            return None;
        }
        let side = |o: usize| Side {
            name: p[o].into(),
            namespace: p[o + 1].into(),
            service: p[o + 2].into(),
            workload: p[o + 3].into(),
            pod: p[o + 4].into(),
            node: p[o + 5].into(),
        };
        Some(RollupKey {
            minute,
            protocol: p[0].into(),
            src: side(1),
            dst: side(7),
        })
    }
}

/// Counts of one edge in one minute.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rollup {
    pub count: u64,
    pub errors: u64,
    pub bytes: u64,
    /// Latency bucket → entries; bucket `b` holds latencies in `(GAMMA^(b-1), GAMMA^b]` µs.
    pub latency: BTreeMap<u16, u64>,
    /// Entries per status class (`wiretrail_proto::schema::STATUS_CLASSES`), for the volume
    /// histogram. Rollups written before classes existed decode with zeros here, so a reader
    /// checks `classified()` before trusting them.
    pub classes: [u64; 7],
}

fn bucket(us: i64) -> u16 {
    if us <= 1 {
        return 0;
    }
    ((us as f64).ln() / GAMMA.ln()).ceil().min(u16::MAX as f64) as u16
}

impl Rollup {
    /// One entry of status class `class` (index into `STATUS_CLASSES`).
    pub fn add(&mut self, class: usize, error: bool, bytes: u64, latency_us: Option<i64>) {
        self.count += 1;
        if let Some(c) = self.classes.get_mut(class) {
            *c += 1;
        }
        self.errors += u64::from(error);
        self.bytes = self.bytes.saturating_add(bytes);
        if let Some(l) = latency_us {
            *self.latency.entry(bucket(l)).or_default() += 1;
        }
    }

    pub fn merge(&mut self, o: &Rollup) {
        self.merge_counts(o);
        for (b, n) in &o.latency {
            *self.latency.entry(*b).or_default() += n;
        }
    }

    /// Adds `o`'s counts, bytes and status classes, not its latency sketch (the volume family).
    pub fn merge_counts(&mut self, o: &Rollup) {
        self.count += o.count;
        self.errors += o.errors;
        self.bytes = self.bytes.saturating_add(o.bytes);
        for (c, n) in self.classes.iter_mut().zip(o.classes) {
            *c += n;
        }
    }

    /// The `q` quantile (0..=1) of latency in µs, `None` without latencies. Returns the bucket's
    /// geometric middle, so the relative error is below 1 %.
    pub fn quantile_us(&self, q: f64) -> Option<u64> {
        let total: u64 = self.latency.values().sum();
        if total == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (b, n) in &self.latency {
            seen += n;
            if seen >= rank {
                if *b == 0 {
                    return Some(1);
                }
                return Some(GAMMA.powf(f64::from(*b) - 0.5).round() as u64);
            }
        }
        None
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(26 + self.latency.len() * 10);
        v.extend_from_slice(&self.count.to_le_bytes());
        v.extend_from_slice(&self.errors.to_le_bytes());
        v.extend_from_slice(&self.bytes.to_le_bytes());
        v.extend_from_slice(&(self.latency.len() as u16).to_le_bytes());
        for (b, n) in &self.latency {
            v.extend_from_slice(&b.to_le_bytes());
            v.extend_from_slice(&n.to_le_bytes());
        }
        // Appended after the latency sketch: older readers ignore it, older values lack it.
        for c in self.classes {
            v.extend_from_slice(&c.to_le_bytes());
        }
        v
    }

    /// Whether every entry has its status class (false for rollups written before classes).
    pub fn classified(&self) -> bool {
        self.classes.iter().sum::<u64>() == self.count
    }

    pub fn decode(b: &[u8]) -> Option<Rollup> {
        let u64_at = |o: usize| -> Option<u64> {
            Some(u64::from_le_bytes(b.get(o..o + 8)?.try_into().ok()?))
        };
        let n = u16::from_le_bytes(b.get(24..26)?.try_into().ok()?) as usize;
        let mut latency = BTreeMap::new();
        for i in 0..n {
            let o = 26 + i * 10;
            let bk = u16::from_le_bytes(b.get(o..o + 2)?.try_into().ok()?);
            latency.insert(bk, u64_at(o + 2)?);
        }
        let mut classes = [0u64; 7];
        let c0 = 26 + n * 10;
        if b.len() >= c0 + 56 {
            for (i, c) in classes.iter_mut().enumerate() {
                *c = u64_at(c0 + i * 8)?;
            }
        }
        Some(Rollup {
            count: u64_at(0)?,
            errors: u64_at(8)?,
            bytes: u64_at(16)?,
            latency,
            classes,
        })
    }
}

/// RocksDB associative merge: the sum of every operand. An undecodable operand (never written
/// by us) is skipped rather than failing the whole read.
pub(crate) fn merge_operator(
    _key: &[u8],
    existing: Option<&[u8]>,
    operands: &rocksdb::MergeOperands,
) -> Option<Vec<u8>> {
    let mut acc = existing.and_then(Rollup::decode).unwrap_or_default();
    for op in operands {
        if let Some(r) = Rollup::decode(op) {
            acc.merge(&r);
        }
    }
    Some(acc.encode())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_and_value_round_trip_and_quantiles_are_close() {
        let k = RollupKey {
            minute: -60_000_000,
            protocol: "http".into(),
            src: Side {
                name: "frontend".into(),
                namespace: "shop".into(),
                ..Default::default()
            },
            dst: Side {
                name: "10.0.0.9".into(),
                ..Default::default()
            },
        };
        assert_eq!(RollupKey::decode(&k.encode()), Some(k.clone()));
        let later = RollupKey {
            minute: 0,
            ..k.clone()
        };
        assert!(k.encode() < later.encode(), "keys sort by minute");
        let mut r = Rollup::default();
        for us in 1..=10_000 {
            r.add((us % 7) as usize, us % 100 == 0, 10, Some(us));
        }
        r.add(6, false, 5, None);
        assert_eq!(Rollup::decode(&r.encode()), Some(r.clone()));
        assert!(r.classified());
        // A value written before status classes decodes with none and says so.
        let old = &r.encode()[..r.encode().len() - 56];
        let o = Rollup::decode(old).unwrap();
        assert_eq!((o.count, o.classes), (r.count, [0; 7]));
        assert!(!o.classified());
        assert_eq!((r.count, r.errors, r.bytes), (10_001, 100, 100_005));
        for (q, exact) in [(0.5, 5_000.0), (0.99, 9_900.0)] {
            let got = r.quantile_us(q).unwrap() as f64;
            assert!((got - exact).abs() / exact < 0.02, "q{q}: {got} vs {exact}");
        }
    }
}
