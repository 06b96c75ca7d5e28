//! Link → IP → TCP/UDP decoding with `etherparse`. Anything we cannot or need not decode
//! (ARP, ICMP, IP fragments after the first, truncated headers) is reported as such so the
//! pipeline can count it instead of dropping it silently.

use std::net::IpAddr;

use etherparse::{EtherType, NetSlice, SlicedPacket, TransportSlice};

use super::LinkType;

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
    /// A non-first IP fragment, or a fragmented datagram (not reassembled).
    Fragment,
    /// Headers cut short or invalid.
    Malformed,
}

fn slice(link: LinkType, data: &[u8]) -> Option<Result<SlicedPacket<'_>, ()>> {
    let r = match link {
        LinkType::Ethernet => SlicedPacket::from_ethernet(data),
        LinkType::Raw | LinkType::Ipv4 | LinkType::Ipv6 => SlicedPacket::from_ip(data),
        LinkType::Null | LinkType::Loop => match data.get(4..) {
            Some(rest) => SlicedPacket::from_ip(rest),
            None => return Some(Err(())),
        },
        LinkType::LinuxSll => SlicedPacket::from_linux_sll(data),
        LinkType::LinuxSll2 => {
            // SLL2: protocol type (2) · reserved (2) · ifindex (4) · hatype (2) · pkttype (1) · addr len (1) · addr (8)
            let (Some(proto), Some(rest)) = (data.get(0..2), data.get(20..)) else {
                return Some(Err(()));
            };
            SlicedPacket::from_ether_type(EtherType(u16::from_be_bytes([proto[0], proto[1]])), rest)
        }
        LinkType::Other(_) => return None,
    };
    Some(r.map_err(|_| ()))
}

/// Decodes one frame.
pub fn decode(link: LinkType, data: &[u8]) -> Decoded<'_> {
    let pkt = match slice(link, data) {
        None => return Decoded::Other,
        Some(Err(())) => return Decoded::Malformed,
        Some(Ok(p)) => p,
    };
    let (src_ip, dst_ip, fragmenting): (IpAddr, IpAddr, bool) = match &pkt.net {
        Some(NetSlice::Ipv4(v4)) => {
            let h = v4.header();
            (
                h.source_addr().into(),
                h.destination_addr().into(),
                v4.payload().fragmented,
            )
        }
        Some(NetSlice::Ipv6(v6)) => {
            let h = v6.header();
            (
                h.source_addr().into(),
                h.destination_addr().into(),
                v6.payload().fragmented,
            )
        }
        _ => return Decoded::Other,
    };
    if fragmenting {
        return Decoded::Fragment;
    }
    match pkt.transport {
        Some(TransportSlice::Tcp(t)) => Decoded::Segment(Segment {
            src: (src_ip, t.source_port()),
            dst: (dst_ip, t.destination_port()),
            transport: Transport::Tcp {
                seq: t.sequence_number(),
                syn: t.syn(),
                ack: t.ack(),
                fin: t.fin(),
                rst: t.rst(),
            },
            payload: t.payload(),
        }),
        Some(TransportSlice::Udp(u)) => Decoded::Segment(Segment {
            src: (src_ip, u.source_port()),
            dst: (dst_ip, u.destination_port()),
            transport: Transport::Udp,
            payload: u.payload(),
        }),
        _ => Decoded::Other,
    }
}
