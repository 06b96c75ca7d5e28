//! Link → IP → TCP/UDP decoding with `etherparse`'s lax slicer, so that frames cut by a small
//! snaplen still yield their headers (the missing payload later shows up as a reassembly gap
//! instead of a silently dropped packet). Anything we cannot or need not decode (ARP, ICMP,
//! non-first IP fragments, truncated headers) is reported as such so the pipeline counts it.

use std::net::IpAddr;

use etherparse::{EtherType, IpNumber, LaxNetSlice, LaxSlicedPacket, TcpSlice, TransportSlice};

use super::LinkType;

/// The transport header fields reassembly needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Tcp {
        seq: u32,
        syn: bool,
        ack: bool,
        fin: bool,
        rst: bool,
    },
    Udp,
}

/// A TCP segment or UDP datagram with its addresses.
#[derive(Debug)]
pub struct Segment<'a> {
    pub src: (IpAddr, u16),
    pub dst: (IpAddr, u16),
    pub transport: Transport,
    pub payload: &'a [u8],
}

#[derive(Debug)]
pub enum Decoded<'a> {
    Segment(Segment<'a>),
    /// Not TCP/UDP over IP (ARP, ICMP, unknown link type …).
    Other,
    /// An IP fragment that cannot be used on its own (fragments are not reassembled).
    Fragment,
    /// Headers cut short or invalid.
    Malformed,
}

/// SLL (v1): packet type (2) · ARPHRD (2) · address length (2) · address (8) · protocol (2).
const SLL_LEN: usize = 16;
/// SLL2: protocol (2) · reserved (2) · ifindex (4) · ARPHRD (2) · packet type (1) ·
/// address length (1) · address (8).
const SLL2_LEN: usize = 20;

fn ether_type_at(data: &[u8], at: usize) -> Option<EtherType> {
    let b = data.get(at..at + 2)?;
    Some(EtherType(u16::from_be_bytes([b[0], b[1]])))
}

/// `None`: a link type we do not decode; `Some(None)`: the link header itself is broken.
fn slice(link: LinkType, data: &[u8]) -> Option<Option<LaxSlicedPacket<'_>>> {
    let sliced = match link {
        LinkType::Ethernet => LaxSlicedPacket::from_ethernet(data).ok(),
        LinkType::Raw | LinkType::Ipv4 | LinkType::Ipv6 => LaxSlicedPacket::from_ip(data).ok(),
        // The 4-byte address family is in host (NULL) or network (LOOP) order and its values
        // differ per OS for IPv6; the IP version nibble decides instead.
        LinkType::Null | LinkType::Loop => data
            .get(4..)
            .and_then(|rest| LaxSlicedPacket::from_ip(rest).ok()),
        LinkType::LinuxSll => match (ether_type_at(data, 14), data.get(SLL_LEN..)) {
            (Some(t), Some(rest)) => Some(LaxSlicedPacket::from_ether_type(t, rest)),
            _ => None,
        },
        LinkType::LinuxSll2 => match (ether_type_at(data, 0), data.get(SLL2_LEN..)) {
            (Some(t), Some(rest)) => Some(LaxSlicedPacket::from_ether_type(t, rest)),
            _ => None,
        },
        LinkType::Other(_) => return None,
    };
    Some(sliced)
}

/// Decodes one frame.
pub fn decode(link: LinkType, data: &[u8]) -> Decoded<'_> {
    let pkt = match slice(link, data) {
        None => return Decoded::Other,
        Some(None) => return Decoded::Malformed,
        Some(Some(p)) => p,
    };
    let (src_ip, dst_ip, payload, first_fragment): (IpAddr, IpAddr, _, bool) = match &pkt.net {
        Some(LaxNetSlice::Ipv4(v4)) => {
            let h = v4.header();
            (
                h.source_addr().into(),
                h.destination_addr().into(),
                v4.payload(),
                h.fragments_offset().value() == 0,
            )
        }
        Some(LaxNetSlice::Ipv6(v6)) => {
            let h = v6.header();
            // The offset of an IPv6 fragment sits in an extension header; IPv6 fragments of
            // TCP/UDP are rare enough that every fragment is simply counted and skipped.
            (
                h.source_addr().into(),
                h.destination_addr().into(),
                v6.payload(),
                false,
            )
        }
        Some(LaxNetSlice::Arp(_)) => return Decoded::Other,
        None if pkt.stop_err.is_some() => return Decoded::Malformed,
        None => return Decoded::Other,
    };
    if payload.fragmented {
        // The first fragment of a TCP segment carries the header and the start of the payload;
        // the rest becomes a reassembly gap. UDP needs the whole datagram, so it is skipped.
        if first_fragment && payload.ip_number == IpNumber::TCP {
            if let Ok(t) = TcpSlice::from_slice(payload.payload) {
                return tcp_segment(src_ip, dst_ip, &t);
            }
        }
        return Decoded::Fragment;
    }
    match &pkt.transport {
        Some(TransportSlice::Tcp(t)) => tcp_segment(src_ip, dst_ip, t),
        Some(TransportSlice::Udp(u)) => Decoded::Segment(Segment {
            src: (src_ip, u.source_port()),
            dst: (dst_ip, u.destination_port()),
            transport: Transport::Udp,
            payload: u.payload(),
        }),
        Some(_) => Decoded::Other,
        None if matches!(payload.ip_number, IpNumber::TCP | IpNumber::UDP) => Decoded::Malformed,
        None => Decoded::Other,
    }
}

fn tcp_segment<'a>(src: IpAddr, dst: IpAddr, t: &TcpSlice<'a>) -> Decoded<'a> {
    Decoded::Segment(Segment {
        src: (src, t.source_port()),
        dst: (dst, t.destination_port()),
        transport: Transport::Tcp {
            seq: t.sequence_number(),
            syn: t.syn(),
            ack: t.ack(),
            fin: t.fin(),
            rst: t.rst(),
        },
        payload: t.payload(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::PacketBuilder;

    /// An IPv4 TCP packet (no link header) carrying `payload`.
    fn ipv4_tcp(payload: &[u8]) -> Vec<u8> {
        let b = PacketBuilder::ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .tcp(40000, 80, 1000, 65535)
            .syn();
        let mut out = Vec::new();
        b.write(&mut out, payload).unwrap();
        out
    }

    fn assert_tcp(d: Decoded<'_>, payload: &[u8]) {
        match d {
            Decoded::Segment(s) => {
                assert_eq!(s.src, ("10.0.0.1".parse().unwrap(), 40000));
                assert_eq!(s.dst.1, 80);
                assert_eq!(s.payload, payload);
                assert!(matches!(
                    s.transport,
                    Transport::Tcp {
                        seq: 1000,
                        syn: true,
                        ..
                    }
                ));
            }
            other => panic!("not a segment: {other:?}"),
        }
    }

    #[test]
    fn decodes_every_link_type() {
        let ip = ipv4_tcp(b"GET / HTTP/1.1\r\n\r\n");
        let p = b"GET / HTTP/1.1\r\n\r\n";
        // Ethernet with an 802.1Q tag.
        let mut eth = vec![0u8; 12];
        eth.extend_from_slice(&[0x81, 0x00, 0x00, 0x05, 0x08, 0x00]);
        eth.extend_from_slice(&ip);
        assert_tcp(decode(LinkType::Ethernet, &eth), p);
        // BSD NULL (host order AF_INET) and OpenBSD LOOP (network order).
        for hdr in [[2, 0, 0, 0], [0, 0, 0, 2]] {
            let mut null = hdr.to_vec();
            null.extend_from_slice(&ip);
            assert_tcp(decode(LinkType::Null, &null), p);
            assert_tcp(decode(LinkType::Loop, &null), p);
        }
        assert_tcp(decode(LinkType::Raw, &ip), p);
        assert_tcp(decode(LinkType::Ipv4, &ip), p);
        // SLL: protocol at bytes 14..16.
        let mut sll = vec![0u8; 14];
        sll.extend_from_slice(&[0x08, 0x00]);
        sll.extend_from_slice(&ip);
        assert_tcp(decode(LinkType::LinuxSll, &sll), p);
        // SLL2: protocol at bytes 0..2, 20-byte header.
        let mut sll2 = vec![0x08, 0x00];
        sll2.extend_from_slice(&[0u8; 18]);
        sll2.extend_from_slice(&ip);
        assert_tcp(decode(LinkType::LinuxSll2, &sll2), p);
        // IPv6 UDP through raw IP.
        let mut v6 = Vec::new();
        PacketBuilder::ipv6([1; 16], [2; 16], 64)
            .udp(5353, 53)
            .write(&mut v6, b"dns")
            .unwrap();
        match decode(LinkType::Raw, &v6) {
            Decoded::Segment(s) => {
                assert_eq!(s.transport, Transport::Udp);
                assert_eq!(s.payload, b"dns");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(decode(LinkType::Other(147), &ip), Decoded::Other));
    }

    #[test]
    fn cut_frames_keep_their_headers_and_junk_is_malformed() {
        let ip = ipv4_tcp(&[b'x'; 100]);
        // Cut by a snaplen: the header survives, the payload is short.
        match decode(LinkType::Raw, &ip[..60]) {
            Decoded::Segment(s) => assert_eq!(s.payload.len(), 20),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            decode(LinkType::Raw, &ip[..30]),
            Decoded::Malformed
        ));
        assert!(matches!(decode(LinkType::Raw, &[]), Decoded::Malformed));
        assert!(matches!(
            decode(LinkType::LinuxSll2, &[8, 0]),
            Decoded::Malformed
        ));
        assert!(matches!(
            decode(LinkType::Ethernet, &[0; 5]),
            Decoded::Malformed
        ));
    }

    #[test]
    fn fragments_are_counted_first_tcp_fragment_kept() {
        let mut ip = ipv4_tcp(b"0123456789");
        // Set "more fragments": the first fragment of a larger datagram.
        ip[6] |= 0x20;
        assert_tcp(decode(LinkType::Raw, &ip), b"0123456789");
        // A later fragment (offset 8 × 8 bytes) is counted and skipped.
        ip[6] = 0x20;
        ip[7] = 8;
        assert!(matches!(decode(LinkType::Raw, &ip), Decoded::Fragment));
    }
}
