//! The agent pipeline for one capture source: packets in, finished entries out.
//! decode → flow table (TCP reassembly / UDP flows) → protocol detection by content →
//! per-connection parser → ids, addresses and identities.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use wiretrail_proto::{Endpoint, Entry, EntryId};

use crate::capture::{decode, Decoded, LinkType, Transport};
use crate::dissect::{registry, Dir, DissectConfig, Dissector, Parser, Probe};
use crate::identity::IdentityMap;
use crate::reassembly::{Delivery, TcpHalf};

/// Bytes per direction held while the protocol of a connection is not known yet.
const MAX_PROBE_BYTES: usize = 16 * 1024;
/// Connections tracked at once; beyond it the least recently active one is ended early.
pub const MAX_FLOWS: usize = 100_000;
/// A connection with no packet for this long (capture time) is ended.
const TCP_IDLE_US: i64 = 300_000_000;
const UDP_IDLE_US: i64 = 60_000_000;

#[derive(Debug, Clone)]
pub struct PipelineConfig {
    /// Name of the capturing node (`node.name`).
    pub node: String,
    /// `pcap`, `af_packet`, `ebpf`, …
    pub capture: String,
    pub body_cap: usize,
    pub identities: IdentityMap,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            node: "localhost".into(),
            capture: "pcap".into(),
            body_cap: wiretrail_proto::schema::DEFAULT_BODY_CAP,
            identities: IdentityMap::default(),
        }
    }
}

/// What happened to every packet; nothing is dropped without being counted here.
#[derive(Debug, Default, Clone)]
pub struct PipelineStats {
    pub packets: u64,
    pub bytes: u64,
    /// Not TCP/UDP over IP (ARP, ICMP, unknown link types).
    pub other_packets: u64,
    pub malformed_packets: u64,
    pub ip_fragments: u64,
    pub tcp_streams: u64,
    pub udp_flows: u64,
    /// Flows no dissector recognised.
    pub undissected_flows: u64,
    /// Flows ended early because the flow table was full.
    pub evicted_flows: u64,
    pub gap_bytes: u64,
    pub duplicate_bytes: u64,
    pub dissect_errors: u64,
    pub entries: BTreeMap<String, u64>,
}

impl PipelineStats {
    pub fn entries_total(&self) -> u64 {
        self.entries.values().sum()
    }
}

type Addr = (IpAddr, u16);
type Key = (Addr, Addr);

enum State {
    /// Protocol not known yet: the first bytes of each direction, in arrival order.
    Probing(Vec<(usize, i64, Vec<u8>)>),
    Parsing(Box<dyn Parser>),
    Ignored,
}

struct Flow {
    ends: [Addr; 2],
    tcp: bool,
    halves: [TcpHalf; 2],
    /// Index in `ends` of the client, once known (SYN or content).
    client: Option<usize>,
    state: State,
    fin: [bool; 2],
    last_ts: i64,
    datagrams_probed: u32,
}

pub struct Pipeline {
    config: PipelineConfig,
    dissect: DissectConfig,
    dissectors: Vec<Box<dyn Dissector>>,
    flows: HashMap<Key, Flow>,
    out: Vec<Entry>,
    seq: u32,
    stats: PipelineStats,
    last_sweep: i64,
}

fn key(a: Addr, b: Addr) -> (Key, usize) {
    if a <= b {
        ((a, b), 0)
    } else {
        ((b, a), 1)
    }
}

impl Pipeline {
    pub fn new(config: PipelineConfig) -> Self {
        let seq = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos() ^ (d.as_secs() as u32).rotate_left(16))
            .unwrap_or(0);
        Pipeline {
            dissect: DissectConfig {
                body_cap: config.body_cap,
            },
            config,
            dissectors: registry(),
            flows: HashMap::new(),
            out: Vec::new(),
            seq,
            stats: PipelineStats::default(),
            last_sweep: i64::MIN,
        }
    }

    pub fn stats(&self) -> &PipelineStats {
        &self.stats
    }

    /// Entries finished since the last call.
    pub fn take_entries(&mut self) -> Vec<Entry> {
        std::mem::take(&mut self.out)
    }

    /// One captured frame.
    pub fn packet(&mut self, ts: i64, link: LinkType, data: &[u8]) {
        self.stats.packets += 1;
        self.stats.bytes += data.len() as u64;
        let seg = match decode(link, data) {
            Decoded::Segment(s) => s,
            Decoded::Other => return self.stats.other_packets += 1,
            Decoded::Fragment => return self.stats.ip_fragments += 1,
            Decoded::Malformed => return self.stats.malformed_packets += 1,
        };
        if ts.saturating_sub(self.last_sweep) > 10_000_000 {
            self.sweep(ts);
        }
        let (k, side) = key(seg.src, seg.dst);
        let tcp = matches!(seg.transport, Transport::Tcp { .. });
        if !self.flows.contains_key(&k) {
            if self.flows.len() >= MAX_FLOWS {
                self.evict_oldest();
            }
            if tcp {
                self.stats.tcp_streams += 1;
            } else {
                self.stats.udp_flows += 1;
            }
            self.flows.insert(
                k,
                Flow {
                    ends: [k.0, k.1],
                    tcp,
                    halves: Default::default(),
                    client: None,
                    state: State::Probing(Vec::new()),
                    fin: [false; 2],
                    last_ts: ts,
                    datagrams_probed: 0,
                },
            );
        }
        let mut flow = self.flows.remove(&k).expect("inserted above");
        flow.last_ts = ts;
        let closed = match seg.transport {
            Transport::Tcp {
                seq,
                syn,
                ack,
                fin,
                rst,
            } => {
                if syn {
                    flow.halves[side].syn(seq);
                    if flow.client.is_none() {
                        flow.client = Some(if ack { 1 - side } else { side });
                    }
                }
                let mut deliveries: Vec<(i64, Option<Vec<u8>>, u64)> = Vec::new();
                flow.halves[side].push(seq, ts, seg.payload, &mut |d| match d {
                    Delivery::Data(t, b) => deliveries.push((t, Some(b.to_vec()), 0)),
                    Delivery::Gap(n) => deliveries.push((ts, None, n)),
                });
                for (t, bytes, gap) in deliveries {
                    match bytes {
                        Some(b) => self.deliver(&mut flow, side, t, &b),
                        None => self.gap(&mut flow, side, gap),
                    }
                }
                if fin {
                    flow.fin[side] = true;
                }
                rst || (flow.fin[0] && flow.fin[1])
            }
            Transport::Udp => {
                self.datagram(&mut flow, side, ts, seg.payload);
                false
            }
        };
        if closed {
            self.end_flow(flow);
        } else {
            self.flows.insert(k, flow);
        }
    }

    /// End of capture: every open flow is ended and its pending entries emitted.
    pub fn finish(&mut self) {
        let mut flows: Vec<Flow> = self.flows.drain().map(|(_, f)| f).collect();
        flows.sort_by_key(|f| f.last_ts);
        for f in flows {
            self.end_flow(f);
        }
    }

    fn sweep(&mut self, now: i64) {
        self.last_sweep = now;
        let idle: Vec<Key> = self
            .flows
            .iter()
            .filter(|(_, f)| now - f.last_ts > if f.tcp { TCP_IDLE_US } else { UDP_IDLE_US })
            .map(|(k, _)| *k)
            .collect();
        for k in idle {
            if let Some(f) = self.flows.remove(&k) {
                self.end_flow(f);
            }
        }
    }

    fn evict_oldest(&mut self) {
        if let Some(k) = self
            .flows
            .iter()
            .min_by_key(|(_, f)| f.last_ts)
            .map(|(k, _)| *k)
        {
            self.stats.evicted_flows += 1;
            if let Some(f) = self.flows.remove(&k) {
                self.end_flow(f);
            }
        }
    }

    fn end_flow(&mut self, mut flow: Flow) {
        for side in 0..2 {
            let mut deliveries: Vec<(i64, Option<Vec<u8>>, u64)> = Vec::new();
            flow.halves[side].flush(&mut |d| match d {
                Delivery::Data(t, b) => deliveries.push((t, Some(b.to_vec()), 0)),
                Delivery::Gap(n) => deliveries.push((0, None, n)),
            });
            for (t, bytes, gap) in deliveries {
                match bytes {
                    Some(b) => self.deliver(&mut flow, side, t, &b),
                    None => self.gap(&mut flow, side, gap),
                }
            }
            self.stats.gap_bytes += flow.halves[side].gap_bytes;
            self.stats.duplicate_bytes += flow.halves[side].duplicate_bytes;
        }
        match std::mem::replace(&mut flow.state, State::Ignored) {
            State::Parsing(mut p) => {
                let mut out = Vec::new();
                p.end(&mut out);
                self.stats.dissect_errors += p.errors();
                self.emit(&flow, out);
            }
            State::Probing(pending) => {
                if !pending.is_empty() {
                    self.stats.undissected_flows += 1;
                }
            }
            State::Ignored => {}
        }
    }

    fn dir(flow: &Flow, side: usize) -> Dir {
        if flow.client == Some(side) {
            Dir::Request
        } else {
            Dir::Response
        }
    }

    fn deliver(&mut self, flow: &mut Flow, side: usize, ts: i64, data: &[u8]) {
        let dir = Self::dir(flow, side);
        match &mut flow.state {
            State::Ignored => {}
            State::Parsing(p) => {
                let mut out = Vec::new();
                p.data(dir, ts, data, &mut out);
                self.emit(flow, out);
            }
            State::Probing(pending) => {
                pending.push((side, ts, data.to_vec()));
                self.probe(flow);
            }
        }
    }

    fn gap(&mut self, flow: &mut Flow, side: usize, len: u64) {
        let dir = Self::dir(flow, side);
        if let State::Parsing(p) = &mut flow.state {
            let mut out = Vec::new();
            p.gap(dir, len, &mut out);
            self.emit(flow, out);
        }
    }

    /// Offers the first bytes of each direction to every dissector.
    fn probe(&mut self, flow: &mut Flow) {
        let State::Probing(pending) = &flow.state else {
            return;
        };
        let mut by_side: [Vec<u8>; 2] = Default::default();
        for (s, _, d) in pending {
            by_side[*s].extend_from_slice(d);
        }
        let mut undecided = false;
        let mut chosen = None;
        'outer: for (i, d) in self.dissectors.iter().enumerate() {
            for (side, bytes) in by_side.iter().enumerate() {
                if bytes.is_empty() {
                    continue;
                }
                match d.probe_stream(bytes) {
                    Probe::Client => {
                        chosen = Some((i, side));
                        break 'outer;
                    }
                    Probe::Server => {
                        chosen = Some((i, 1 - side));
                        break 'outer;
                    }
                    Probe::NeedMore => undecided = true,
                    Probe::No => {}
                }
            }
        }
        let too_much = by_side.iter().any(|b| b.len() > MAX_PROBE_BYTES);
        match chosen {
            Some((i, client)) => {
                // The SYN, when captured, is the better witness of who the client is.
                let client = *flow.client.get_or_insert(client);
                let parser = self.dissectors[i].new_stream(&self.dissect);
                let State::Probing(pending) =
                    std::mem::replace(&mut flow.state, State::Parsing(parser))
                else {
                    return;
                };
                let mut out = Vec::new();
                if let State::Parsing(p) = &mut flow.state {
                    for (side, ts, data) in pending {
                        let dir = if side == client {
                            Dir::Request
                        } else {
                            Dir::Response
                        };
                        p.data(dir, ts, &data, &mut out);
                    }
                }
                self.emit(flow, out);
            }
            None if !undecided || too_much => {
                self.stats.undissected_flows += 1;
                flow.state = State::Ignored;
            }
            None => {}
        }
    }

    fn datagram(&mut self, flow: &mut Flow, side: usize, ts: i64, data: &[u8]) {
        if let State::Probing(_) = flow.state {
            let found = self.dissectors.iter().enumerate().find_map(|(i, d)| {
                match d.probe_datagram(data) {
                    Probe::Client => Some((i, side)),
                    Probe::Server => Some((i, 1 - side)),
                    _ => None,
                }
            });
            match found {
                Some((i, client)) => {
                    flow.client = Some(client);
                    flow.state = State::Parsing(self.dissectors[i].new_datagram(&self.dissect));
                }
                None => {
                    flow.datagrams_probed += 1;
                    if flow.datagrams_probed >= 8 {
                        self.stats.undissected_flows += 1;
                        flow.state = State::Ignored;
                    }
                    return;
                }
            }
        }
        let dir = Self::dir(flow, side);
        if let State::Parsing(p) = &mut flow.state {
            let mut out = Vec::new();
            p.data(dir, ts, data, &mut out);
            self.emit(flow, out);
        }
    }

    /// Adds ids, node, capture source, addresses and identities.
    fn emit(&mut self, flow: &Flow, entries: Vec<Entry>) {
        let client = flow.client.unwrap_or(0);
        let (c, s) = (flow.ends[client], flow.ends[1 - client]);
        for mut e in entries {
            self.seq = self.seq.wrapping_add(1);
            e.id = EntryId::new(e.ts_us, &self.config.node, self.seq);
            e.node.clone_from(&self.config.node);
            e.capture.clone_from(&self.config.capture);
            e.src = Endpoint {
                ip: c.0.to_string(),
                port: c.1,
                identity: self.config.identities.resolve(&c.0),
            };
            e.dst = Endpoint {
                ip: s.0.to_string(),
                port: s.1,
                identity: self.config.identities.resolve(&s.0),
            };
            *self.stats.entries.entry(e.protocol.clone()).or_default() += 1;
            self.out.push(e);
        }
    }
}
