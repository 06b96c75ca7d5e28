//! Entry ids: 16 bytes, time-prefixed so that ids sort by capture time.
//!
//! Layout: capture time in µs (8 bytes, big endian) · FNV-1a hash of the node name (4 bytes) ·
//! per-agent sequence (4 bytes). Shown as 26 lowercase base32hex characters, which keep the sort
//! order of the bytes.

use std::fmt;

use data_encoding::BASE32_DNSSEC;

use crate::ProtoError;

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EntryId(pub [u8; 16]);

impl EntryId {
    pub fn new(ts_us: i64, node: &str, seq: u32) -> Self {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&ts_us.to_be_bytes());
        b[8..12].copy_from_slice(&fnv1a(node.as_bytes()).to_be_bytes());
        b[12..].copy_from_slice(&seq.to_be_bytes());
        EntryId(b)
    }

    /// The capture time (µs since the epoch) encoded in the id; used to prune files on lookup.
    pub fn ts_us(&self) -> i64 {
        let mut t = [0u8; 8];
        t.copy_from_slice(&self.0[..8]);
        i64::from_be_bytes(t)
    }

    pub fn parse(s: &str) -> Result<Self, ProtoError> {
        let bad = || ProtoError::BadId(s.chars().take(64).collect());
        if s.len() != 26 {
            return Err(bad());
        }
        let bytes = BASE32_DNSSEC
            .decode(s.to_ascii_lowercase().as_bytes())
            .map_err(|_| bad())?;
        let arr: [u8; 16] = bytes.try_into().map_err(|_| bad())?;
        Ok(EntryId(arr))
    }
}

impl fmt::Display for EntryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&BASE32_DNSSEC.encode(&self.0))
    }
}

impl fmt::Debug for EntryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EntryId({self})")
    }
}

fn fnv1a(data: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in data {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_sorts_by_time() {
        let a = EntryId::new(1_700_000_000_000_000, "node-a", 7);
        let b = EntryId::new(1_700_000_000_000_001, "node-a", 0);
        let s = a.to_string();
        assert_eq!(s.len(), 26);
        assert_eq!(EntryId::parse(&s).unwrap(), a);
        assert!(a.to_string() < b.to_string());
        assert_eq!(a.ts_us(), 1_700_000_000_000_000);
        assert!(EntryId::parse("not-an-id").is_err());
        assert!(EntryId::parse("zzzzzzzzzzzzzzzzzzzzzzzzzz").is_err());
    }
}
