//! TCP reassembly of one direction of a connection: bytes come out in sequence order exactly
//! once, whatever order segments arrived in. Retransmissions and overlaps are trimmed;
//! segments ahead of a hole wait in a bounded buffer; when the buffer is full, or the
//! connection ends, the hole is reported as a gap and delivery resumes after it.
//! Sequence numbers are mapped to 64-bit offsets, so wraparound at 2^32 is invisible.

use std::collections::BTreeMap;

/// Most out-of-order bytes buffered per direction before a hole is declared lost.
pub const MAX_OUT_OF_ORDER: usize = 4 << 20;

/// What reassembly hands to the dissector.
#[derive(Debug, PartialEq, Eq)]
pub enum Delivery<'a> {
    /// In-order bytes with the capture time of the segment that carried them.
    Data(i64, &'a [u8]),
    /// This many bytes were never captured.
    Gap(u64),
}

/// One direction of a TCP connection.
#[derive(Debug, Default)]
pub struct TcpHalf {
    /// (next expected sequence number, its 64-bit offset); `None` before the first segment.
    next: Option<(u32, u64)>,
    /// Sequence number of the SYN, when it was captured.
    isn: Option<u32>,
    ooo: BTreeMap<u64, (i64, Vec<u8>)>,
    ooo_bytes: usize,
    /// Bytes dropped as already delivered (retransmissions, overlaps).
    pub duplicate_bytes: u64,
    /// Bytes reported as gaps.
    pub gap_bytes: u64,
}

impl TcpHalf {
    /// A SYN fixes the initial sequence number (data starts at ISN + 1).
    pub fn syn(&mut self, seq: u32) {
        if self.next.is_none() {
            self.next = Some((seq.wrapping_add(1), 0));
            self.isn = Some(seq);
        }
    }

    /// The SYN's sequence number, if it was seen before any data.
    pub fn syn_seq(&self) -> Option<u32> {
        self.isn
    }

    /// Whether a SYN or data has been seen in this direction.
    pub fn started(&self) -> bool {
        self.next.is_some()
    }

    /// Whether any byte after the SYN was taken in: a SYN that follows cannot be a
    /// retransmission of this connection's SYN, even with the same sequence number.
    pub fn has_data(&self) -> bool {
        self.next.is_some_and(|(_, offset)| offset > 0)
    }

    /// Bytes waiting for a hole to be filled.
    pub fn buffered(&self) -> usize {
        self.ooo_bytes
    }

    /// Drops everything buffered (the flow is not being dissected).
    pub fn clear(&mut self) {
        self.ooo.clear();
        self.ooo_bytes = 0;
    }

    fn offset(&self, seq: u32) -> Option<u64> {
        let (nseq, noff) = self.next?;
        let diff = i64::from(seq.wrapping_sub(nseq) as i32);
        u64::try_from(noff as i64 + diff).ok()
    }

    fn advance(&mut self, to: u64) {
        if let Some((nseq, noff)) = self.next {
            if to > noff {
                self.next = Some((nseq.wrapping_add((to - noff) as u32), to));
            }
        }
    }

    fn next_off(&self) -> u64 {
        self.next.map_or(0, |n| n.1)
    }

    /// Adds a segment and delivers whatever became contiguous.
    pub fn push(&mut self, seq: u32, ts: i64, data: &[u8], out: &mut impl FnMut(Delivery)) {
        if data.is_empty() {
            return;
        }
        if self.next.is_none() {
            // The connection's start was not captured: begin at the first byte we see.
            self.next = Some((seq, 0));
        }
        let Some(start) = self.offset(seq) else {
            self.duplicate_bytes += data.len() as u64;
            return;
        };
        let next = self.next_off();
        let end = start + data.len() as u64;
        if end <= next {
            self.duplicate_bytes += data.len() as u64;
            return;
        }
        if start <= next {
            let skip = (next - start) as usize;
            self.duplicate_bytes += skip as u64;
            out(Delivery::Data(ts, &data[skip..]));
            self.advance(end);
            self.drain(out);
        } else {
            let keep = match self.ooo.get(&start) {
                Some((_, old)) => old.len() < data.len(),
                None => true,
            };
            if keep {
                if let Some((_, old)) = self.ooo.insert(start, (ts, data.to_vec())) {
                    self.ooo_bytes -= old.len();
                }
                self.ooo_bytes += data.len();
            }
            if self.ooo_bytes > MAX_OUT_OF_ORDER {
                self.skip_hole(out);
            }
        }
    }

    /// Delivers buffered segments that are now contiguous.
    fn drain(&mut self, out: &mut impl FnMut(Delivery)) {
        loop {
            let next = self.next_off();
            let Some(entry) = self.ooo.first_entry() else {
                break;
            };
            let start = *entry.key();
            if start > next {
                break;
            }
            let (ts, data) = entry.remove();
            self.ooo_bytes -= data.len();
            let end = start + data.len() as u64;
            if end <= next {
                self.duplicate_bytes += data.len() as u64;
                continue;
            }
            let skip = (next - start) as usize;
            self.duplicate_bytes += skip as u64;
            out(Delivery::Data(ts, &data[skip..]));
            self.advance(end);
        }
    }

    fn skip_hole(&mut self, out: &mut impl FnMut(Delivery)) {
        if let Some((&start, _)) = self.ooo.first_key_value() {
            let gap = start - self.next_off();
            self.gap_bytes += gap;
            out(Delivery::Gap(gap));
            self.advance(start);
            self.drain(out);
        }
    }

    /// The connection ended: deliver everything still buffered, holes reported as gaps.
    pub fn flush(&mut self, out: &mut impl FnMut(Delivery)) {
        while !self.ooo.is_empty() {
            self.skip_hole(out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(half: &mut TcpHalf, segs: &[(u32, &[u8])]) -> (Vec<u8>, u64) {
        let mut got = Vec::new();
        let mut gaps = 0;
        for (seq, d) in segs {
            half.push(*seq, 0, d, &mut |x| match x {
                Delivery::Data(_, b) => got.extend_from_slice(b),
                Delivery::Gap(n) => gaps += n,
            });
        }
        half.flush(&mut |x| match x {
            Delivery::Data(_, b) => got.extend_from_slice(b),
            Delivery::Gap(n) => gaps += n,
        });
        (got, gaps)
    }

    #[test]
    fn reorders_and_trims_retransmissions() {
        let mut h = TcpHalf::default();
        h.syn(99);
        let (got, gaps) = run(
            &mut h,
            &[
                (106, b"world"),
                (100, b"hello "),
                (100, b"hello "),
                (103, b"lo wo"),
                (111, b"!"),
            ],
        );
        assert_eq!(got, b"hello world!");
        assert_eq!(gaps, 0);
        assert!(h.duplicate_bytes >= 11);
    }

    #[test]
    fn reports_gaps_and_resumes() {
        let mut h = TcpHalf::default();
        h.syn(0);
        let (got, gaps) = run(&mut h, &[(1, b"abc"), (10, b"xyz")]);
        assert_eq!(got, b"abcxyz");
        assert_eq!(gaps, 6);
    }

    #[test]
    fn survives_sequence_wraparound_and_missing_syn() {
        let mut h = TcpHalf::default();
        let start = u32::MAX - 2;
        let (got, _) = run(
            &mut h,
            &[
                (start, b"abc"),
                (start.wrapping_add(3), b"def"),
                (start.wrapping_add(6), b"g"),
            ],
        );
        assert_eq!(got, b"abcdefg");
    }

    #[test]
    fn out_of_order_across_wraparound() {
        let mut h = TcpHalf::default();
        let isn = u32::MAX - 4;
        h.syn(isn);
        let base = isn.wrapping_add(1);
        let (got, gaps) = run(
            &mut h,
            &[
                (base.wrapping_add(6), b"ghij"),
                (base.wrapping_add(3), b"def"),
                (base, b"abc"),
                (base.wrapping_add(8), b"ijkl"),
            ],
        );
        assert_eq!(got, b"abcdefghijkl");
        assert_eq!(gaps, 0);
        assert_eq!(h.syn_seq(), Some(isn));
    }

    #[test]
    fn overlapping_buffered_segments_are_trimmed() {
        let mut h = TcpHalf::default();
        h.syn(0);
        // Two buffered segments overlapping each other, then the hole fills.
        let (got, gaps) = run(
            &mut h,
            &[(5, b"efgh"), (4, b"defg"), (7, b"ghijk"), (1, b"abc")],
        );
        assert_eq!(got, b"abcdefghijk");
        assert_eq!(gaps, 0);
        assert_eq!(h.duplicate_bytes, 5);
    }

    #[test]
    fn no_syn_starts_at_first_byte_seen_and_drops_older() {
        let mut h = TcpHalf::default();
        assert!(!h.started());
        let (got, _) = run(
            &mut h,
            &[(5000, b"middle"), (4990, b"before----"), (5006, b"!")],
        );
        assert_eq!(got, b"middle!");
        assert!(h.started());
        assert_eq!(h.syn_seq(), None);
    }

    #[test]
    fn gap_at_end_is_flushed() {
        let mut h = TcpHalf::default();
        h.syn(100);
        let mut got = Vec::new();
        let mut events = Vec::new();
        for (seq, d) in [(101u32, &b"one"[..]), (110, b"two")] {
            h.push(seq, 0, d, &mut |x| match x {
                Delivery::Data(_, b) => got.extend_from_slice(b),
                Delivery::Gap(n) => events.push(n),
            });
        }
        assert_eq!(got, b"one");
        assert_eq!(h.buffered(), 3);
        h.flush(&mut |x| match x {
            Delivery::Data(_, b) => got.extend_from_slice(b),
            Delivery::Gap(n) => events.push(n),
        });
        assert_eq!(got, b"onetwo");
        assert_eq!(events, vec![6]);
        assert_eq!(h.buffered(), 0);
    }

    #[test]
    fn bounds_out_of_order_memory() {
        let mut h = TcpHalf::default();
        h.syn(0);
        let chunk = vec![7u8; 64 * 1024];
        let mut delivered = 0usize;
        for i in 0..200u32 {
            // Byte 1 never arrives: everything after it waits until the buffer is full.
            h.push(2 + i * chunk.len() as u32, 0, &chunk, &mut |x| {
                if let Delivery::Data(_, b) = x {
                    delivered += b.len();
                }
            });
            assert!(h.ooo_bytes <= MAX_OUT_OF_ORDER + chunk.len());
        }
        assert!(delivered > 0);
        assert_eq!(h.gap_bytes, 1);
    }
}
