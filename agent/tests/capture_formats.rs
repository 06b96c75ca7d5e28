//! Capture file formats the reader must accept, built byte by byte: pcap in both byte orders
//! with µs and ns timestamps, pcapng in both byte orders with `if_tsresol`, several link
//! types; and files that must give a clear error or a clean stop instead of a panic.

use std::path::PathBuf;

use wiretrail_agent::{CaptureReader, LinkType, Packet};

/// An IPv4/UDP packet without link header (LINKTYPE_RAW).
fn raw_udp() -> Vec<u8> {
    let mut out = Vec::new();
    etherparse::PacketBuilder::ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
        .udp(40000, 53)
        .write(&mut out, b"payload")
        .unwrap();
    out
}

const SECS: u32 = 1_795_000_000;

fn tmp(name: &str, bytes: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("wt-formats-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

fn read_all(path: &PathBuf) -> Vec<Packet> {
    let mut r = CaptureReader::open(path).unwrap();
    let mut out = Vec::new();
    while let Some(p) = r.next_packet().unwrap() {
        out.push(p);
    }
    assert_eq!(r.bytes_read(), r.total_bytes());
    out
}

/// A legacy pcap file: `be` for big-endian, `nanos` for the nanosecond magic.
fn pcap(be: bool, nanos: bool, linktype: u32, frac: u32, data: &[u8]) -> Vec<u8> {
    let u32b = |v: u32| if be { v.to_be_bytes() } else { v.to_le_bytes() };
    let u16b = |v: u16| if be { v.to_be_bytes() } else { v.to_le_bytes() };
    let mut f = Vec::new();
    f.extend_from_slice(&u32b(if nanos { 0xa1b2_3c4d } else { 0xa1b2_c3d4 }));
    f.extend_from_slice(&u16b(2));
    f.extend_from_slice(&u16b(4));
    f.extend_from_slice(&u32b(0));
    f.extend_from_slice(&u32b(0));
    f.extend_from_slice(&u32b(262_144));
    f.extend_from_slice(&u32b(linktype));
    f.extend_from_slice(&u32b(SECS));
    f.extend_from_slice(&u32b(frac));
    f.extend_from_slice(&u32b(data.len() as u32));
    f.extend_from_slice(&u32b(data.len() as u32));
    f.extend_from_slice(data);
    f
}

/// A pcapng block: type, total length, body (padded to 4 bytes), total length.
fn block(be: bool, kind: u32, body: &[u8]) -> Vec<u8> {
    let u32b = |v: u32| if be { v.to_be_bytes() } else { v.to_le_bytes() };
    let mut body = body.to_vec();
    while !body.len().is_multiple_of(4) {
        body.push(0);
    }
    let len = 12 + body.len() as u32;
    let mut b = Vec::new();
    b.extend_from_slice(&u32b(kind));
    b.extend_from_slice(&u32b(len));
    b.extend_from_slice(&body);
    b.extend_from_slice(&u32b(len));
    b
}

/// A pcapng file with one interface (`tsresol` option if given) and one packet at
/// `SECS` seconds + `frac_units` in the interface's resolution.
fn pcapng(
    be: bool,
    linktype: u16,
    tsresol: Option<u8>,
    units_per_s: u64,
    frac_units: u64,
    data: &[u8],
) -> Vec<u8> {
    let u32b = |v: u32| if be { v.to_be_bytes() } else { v.to_le_bytes() };
    let u16b = |v: u16| if be { v.to_be_bytes() } else { v.to_le_bytes() };
    let mut shb = Vec::new();
    shb.extend_from_slice(&u32b(0x1a2b_3c4d));
    shb.extend_from_slice(&u16b(1));
    shb.extend_from_slice(&u16b(0));
    shb.extend_from_slice(&[0xff; 8]);
    let mut idb = Vec::new();
    idb.extend_from_slice(&u16b(linktype));
    idb.extend_from_slice(&u16b(0));
    idb.extend_from_slice(&u32b(262_144));
    if let Some(r) = tsresol {
        idb.extend_from_slice(&u16b(9));
        idb.extend_from_slice(&u16b(1));
        idb.extend_from_slice(&[r, 0, 0, 0]);
        idb.extend_from_slice(&u16b(0));
        idb.extend_from_slice(&u16b(0));
    }
    let ts = u64::from(SECS) * units_per_s + frac_units;
    let mut epb = Vec::new();
    epb.extend_from_slice(&u32b(0));
    epb.extend_from_slice(&u32b((ts >> 32) as u32));
    epb.extend_from_slice(&u32b(ts as u32));
    epb.extend_from_slice(&u32b(data.len() as u32));
    epb.extend_from_slice(&u32b(data.len() as u32));
    epb.extend_from_slice(data);
    let mut f = block(be, 0x0a0d_0d0a, &shb);
    f.extend(block(be, 1, &idb));
    f.extend(block(be, 6, &epb));
    f
}

#[test]
fn pcap_both_byte_orders_and_resolutions() {
    let data = raw_udp();
    let want = i64::from(SECS) * 1_000_000 + 123_456;
    for (be, nanos, frac) in [
        (false, false, 123_456),
        (true, false, 123_456),
        (false, true, 123_456_789),
        (true, true, 123_456_789),
    ] {
        let p = tmp(
            &format!("p-{be}-{nanos}.pcap"),
            &pcap(be, nanos, 101, frac, &data),
        );
        let pkts = read_all(&p);
        assert_eq!(pkts.len(), 1, "be={be} nanos={nanos}");
        assert_eq!(pkts[0].ts_us, want, "be={be} nanos={nanos}");
        assert_eq!(pkts[0].link, LinkType::Raw);
        assert_eq!(pkts[0].data, data);
    }
    for (lt, want) in [
        (1, LinkType::Ethernet),
        (0, LinkType::Null),
        (108, LinkType::Loop),
        (113, LinkType::LinuxSll),
        (276, LinkType::LinuxSll2),
        (228, LinkType::Ipv4),
        (229, LinkType::Ipv6),
        (12, LinkType::Raw),
        (14, LinkType::Raw),
    ] {
        let p = tmp(&format!("lt-{lt}.pcap"), &pcap(false, false, lt, 0, &data));
        assert_eq!(read_all(&p)[0].link, want);
    }
}

#[test]
fn pcapng_both_byte_orders_and_tsresol() {
    let data = raw_udp();
    let want = i64::from(SECS) * 1_000_000 + 123_456;
    for be in [false, true] {
        // Default resolution: microseconds.
        let p = tmp(
            &format!("ng-{be}-us.pcapng"),
            &pcapng(be, 101, None, 1_000_000, 123_456, &data),
        );
        let pkts = read_all(&p);
        assert_eq!((pkts.len(), pkts[0].ts_us), (1, want), "be={be}");
        assert_eq!(pkts[0].data, data);
        // if_tsresol = 9: nanoseconds.
        let p = tmp(
            &format!("ng-{be}-ns.pcapng"),
            &pcapng(be, 276, Some(9), 1_000_000_000, 123_456_789, &data),
        );
        let pkts = read_all(&p);
        assert_eq!(pkts[0].ts_us, want, "be={be} ns");
        assert_eq!(pkts[0].link, LinkType::LinuxSll2);
        // if_tsresol = 0x80 | 10: units of 2^-10 s.
        let p = tmp(
            &format!("ng-{be}-pow2.pcapng"),
            &pcapng(be, 1, Some(0x80 | 10), 1024, 512, &data),
        );
        assert_eq!(read_all(&p)[0].ts_us, i64::from(SECS) * 1_000_000 + 500_000);
    }
}

#[test]
fn broken_files_give_errors_or_stop_cleanly() {
    let data = raw_udp();
    let good = pcap(false, false, 101, 0, &data);
    // A record length far beyond the file: the file ends cleanly after the last whole record.
    let mut bad_len = good.clone();
    bad_len.extend_from_slice(&good[24..]);
    let at = good.len() + 8;
    bad_len[at..at + 4].copy_from_slice(&0x7fff_ffffu32.to_le_bytes());
    let p = tmp("bad-len.pcap", &bad_len);
    let mut r = CaptureReader::open(&p).unwrap();
    let mut n = 0;
    loop {
        match r.next_packet() {
            Ok(Some(_)) => n += 1,
            Ok(None) => break,
            Err(e) => {
                assert!(e.to_string().contains("bad-len.pcap"), "{e}");
                break;
            }
        }
    }
    assert_eq!(n, 1);
    // Not a capture at all, an empty file, a missing file: errors naming the file.
    for (name, bytes) in [
        ("junk.pcap", &b"hello, world, not a pcap"[..]),
        ("empty.pcap", &b""[..]),
    ] {
        let err = CaptureReader::open(tmp(name, bytes))
            .err()
            .map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains(name)), "{name}");
    }
    assert!(CaptureReader::open("/nonexistent/x.pcap").is_err());
    // pcapng cut in the middle of a block: what came before is kept.
    let ng = pcapng(false, 101, None, 1_000_000, 0, &data);
    let mut two = ng.clone();
    two.extend_from_slice(&ng[ng.len() - 60..]);
    let p = tmp("cut.pcapng", &two[..two.len() - 10]);
    let mut r = CaptureReader::open(&p).unwrap();
    let mut n = 0;
    while let Ok(Some(_)) = r.next_packet() {
        n += 1;
    }
    assert!(n >= 1);
}
