//! Getting packets: capture files (`pcap`), live `AF_PACKET` capture (`live`, with its BPF
//! filter compiler in `bpf`), TLS plaintext from eBPF uprobes (`ebpf`), and decoding link, IP and transport headers into [`Segment`]s for
//! reassembly.

mod bpf;
mod decode;
pub mod ebpf;
pub mod live;
mod pcap;

pub use decode::{decode, Decoded, Segment, Transport};
pub use live::{CaptureStats, LiveCapture, LiveConfig, PacketBatch};
pub use pcap::{CaptureReader, Packet};

/// Link-layer header types we decode (pcap LINKTYPE_* values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkType {
    Ethernet,
    /// BSD loopback / NULL: 4-byte address family in host order.
    Null,
    /// OpenBSD loopback: 4-byte address family in network order.
    Loop,
    /// No link header: IPv4 or IPv6 by the version nibble.
    Raw,
    Ipv4,
    Ipv6,
    /// Linux cooked capture v1.
    LinuxSll,
    /// Linux cooked capture v2.
    LinuxSll2,
    Other(i32),
}

impl LinkType {
    pub fn from_linktype(v: i32) -> Self {
        match v {
            1 => LinkType::Ethernet,
            0 => LinkType::Null,
            108 => LinkType::Loop,
            101 | 12 | 14 => LinkType::Raw,
            228 => LinkType::Ipv4,
            229 => LinkType::Ipv6,
            113 => LinkType::LinuxSll,
            276 => LinkType::LinuxSll2,
            other => LinkType::Other(other),
        }
    }
}
