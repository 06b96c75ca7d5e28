//! The agent pipeline for one capture source: packets in, finished entries out.
//! decode → flow table (TCP reassembly / UDP flows, see [`crate::flow`]) → protocol detection
//! by content → per-connection parser → ids, addresses and identities.
//!
//! Memory is bounded: at most [`MAX_FLOWS`] live flows (the least recently active are ended
//! early and counted), [`crate::reassembly::MAX_OUT_OF_ORDER`] buffered bytes per direction,
//! a few KiB of probe bytes per undetected flow, and per message what each parser documents.

use std::collections::{BTreeMap, HashMap, HashSet};

use wiretrail_proto::{Endpoint, Entry, EntryId, Identity};

use crate::capture::{decode, Decoded, LinkType, Transport};
use crate::dissect::{registry, DissectConfig, Dissector};
use crate::flow::{Addr, Env, Flow, TcpFlags};
use crate::identity::{IdentityResolver, PodFilter};

/// Flows tracked at once; beyond it the least recently active ones are ended early.
pub const MAX_FLOWS: usize = 100_000;
/// Flows ended at once when the table is full (amortises the search for the oldest).
const EVICT_BATCH: usize = MAX_FLOWS / 64;
/// A connection with no packet for this long (capture time) is ended.
const TCP_IDLE_US: i64 = 300_000_000;
const UDP_IDLE_US: i64 = 60_000_000;
/// How often (capture time) idle flows are looked for.
const SWEEP_EVERY_US: i64 = 10_000_000;
/// After FIN/RST, stray segments of the same 4-tuple (retransmissions, late ACKs with data)
/// are counted instead of starting a bogus headless connection; a SYN always starts anew.
const CLOSED_LINGER_US: i64 = 60_000_000;

#[derive(Debug, Clone)]
pub struct PipelineConfig {
    /// Name of the capturing node (`node.name`).
    pub node: String,
    /// `pcap`, `af_packet`, `ebpf`, …
    pub capture: String,
    /// Largest decoded body kept per message; the rest is counted, not stored.
    pub body_cap: usize,
    /// IP and capture time → identity (Kubernetes history, `--identities` file).
    pub identities: IdentityResolver,
    /// Pod targeting: when set, a flow with neither end targeted is not dissected.
    pub target: Option<PodFilter>,
    /// TLS key log for decrypting captured TLS connections.
    pub keylog: Option<std::sync::Arc<crate::KeyLog>>,
    /// Secrets removed from each finished entry before it is handed out for batching.
    pub redactor: Option<crate::Redactor>,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            node: "localhost".into(),
            capture: "pcap".into(),
            body_cap: wiretrail_proto::schema::DEFAULT_BODY_CAP,
            identities: IdentityResolver::default(),
            target: None,
            keylog: None,
            redactor: None,
        }
    }
}

/// What a [`Pipeline::stream_data`] call stands for in TCP terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamMark {
    /// The connection starts; its sender is the client (a SYN).
    Open,
    /// The other end answers the start (a SYN-ACK).
    OpenReply,
    Data,
    /// The sender is done (a FIN).
    Close,
}

/// What happened to every packet; nothing is dropped without being counted here.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PipelineStats {
    pub packets: u64,
    pub bytes: u64,
    /// Not TCP/UDP over IP (ARP, ICMP, unknown link types): the "non-IP" count.
    pub other_packets: u64,
    /// Headers cut short or invalid: undecodable packets.
    pub malformed_packets: u64,
    /// IP fragments that could not be used (fragments are not reassembled).
    pub ip_fragments: u64,
    /// TCP segments after their connection closed (FIN/RST) that started nothing new.
    pub late_packets: u64,
    pub tcp_streams: u64,
    pub udp_flows: u64,
    /// Flows (TCP streams or UDP flows) no dissector recognised.
    pub undissected_flows: u64,
    /// Flows not dissected because neither end is a targeted pod (`PipelineConfig::target`).
    pub untargeted_flows: u64,
    /// Flows ended early because the flow table was full.
    pub evicted_flows: u64,
    /// Bytes never captured (holes skipped by reassembly).
    pub gap_bytes: u64,
    /// Bytes received more than once (retransmissions, overlaps), delivered once.
    pub duplicate_bytes: u64,
    /// Malformed messages the dissectors resynchronised past.
    pub dissect_errors: u64,
    /// Connections that left HTTP/1 (`101 Switching Protocols`, CONNECT tunnels).
    pub upgraded_streams: u64,
    /// Entries by protocol.
    pub entries: BTreeMap<String, u64>,
    /// Values replaced by the redactor, by kind.
    pub redactions: crate::RedactionCounts,
}

impl PipelineStats {
    pub fn entries_total(&self) -> u64 {
        self.entries.values().sum()
    }
}

/// Flow key: transport (TCP or UDP) and the two endpoints in canonical order.
type Key = (bool, Addr, Addr);

fn key(tcp: bool, a: Addr, b: Addr) -> (Key, usize) {
    if a <= b {
        ((tcp, a, b), 0)
    } else {
        ((tcp, b, a), 1)
    }
}

pub struct Pipeline {
    config: PipelineConfig,
    dissect: DissectConfig,
    dissectors: Vec<Box<dyn Dissector>>,
    flows: HashMap<Key, Flow>,
    /// TCP flows closed recently, with the capture time they closed.
    closed: HashMap<Key, i64>,
    out: Vec<Entry>,
    /// Scratch space for one flow operation's entries.
    scratch: Vec<Entry>,
    /// IP → its text, see [`Pipeline::endpoint`].
    ip_text: HashMap<std::net::IpAddr, String>,
    /// Sockets whose owner is known better than by address (eBPF: the process's pod), with
    /// the number of claims on each.
    claims: HashMap<Addr, (Identity, usize)>,
    /// This node's addresses besides loopback: a claim on a wildcard listener (0.0.0.0 / ::)
    /// stands for these only, never for a remote host's socket with the same port.
    local_ips: HashSet<std::net::IpAddr>,
    seq: u32,
    stats: PipelineStats,
    last_sweep: i64,
}

impl Pipeline {
    pub fn new(config: PipelineConfig) -> Self {
        // Ids are (time, node, sequence): starting the sequence from the clock keeps two
        // imports of the same capture on the same node from producing the same ids.
        let seq = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| {
                let n = d.as_nanos();
                (n as u32) ^ ((n >> 32) as u32).rotate_left(16)
            })
            .unwrap_or(0);
        Pipeline {
            dissect: DissectConfig {
                body_cap: config.body_cap,
                keylog: config.keylog.clone(),
            },
            config,
            dissectors: registry(),
            flows: HashMap::new(),
            closed: HashMap::new(),
            out: Vec::new(),
            scratch: Vec::new(),
            ip_text: HashMap::new(),
            claims: HashMap::new(),
            local_ips: HashSet::new(),
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

    /// One captured frame with its capture time (µs since the epoch).
    pub fn packet(&mut self, ts_us: i64, link: LinkType, data: &[u8]) {
        self.stats.packets += 1;
        self.stats.bytes += data.len() as u64;
        let seg = match decode(link, data) {
            Decoded::Segment(s) => s,
            Decoded::Other => return self.stats.other_packets += 1,
            Decoded::Fragment => return self.stats.ip_fragments += 1,
            Decoded::Malformed => return self.stats.malformed_packets += 1,
        };
        if ts_us.saturating_sub(self.last_sweep) > SWEEP_EVERY_US {
            self.sweep(ts_us);
        }
        match seg.transport {
            Transport::Tcp {
                seq,
                syn,
                ack,
                fin,
                rst,
            } => {
                let flags = TcpFlags { syn, ack, fin, rst };
                self.tcp(ts_us, seg.src, seg.dst, seq, flags, seg.payload);
            }
            Transport::Udp => self.udp(ts_us, seg.src, seg.dst, seg.payload),
        }
    }

    /// Bytes of a TCP connection as a process wrote or read them (eBPF TLS capture sees
    /// plaintext, not packets): `seq` is the offset of `data` in the sender's byte stream, so
    /// chunks reassemble like segments; `mark` stands for the TCP flags a packet would carry.
    pub fn stream_data(
        &mut self,
        ts_us: i64,
        src: (std::net::IpAddr, u16),
        dst: (std::net::IpAddr, u16),
        seq: u32,
        data: &[u8],
        mark: StreamMark,
    ) {
        self.stats.packets += 1;
        self.stats.bytes += data.len() as u64;
        if ts_us.saturating_sub(self.last_sweep) > SWEEP_EVERY_US {
            self.sweep(ts_us);
        }
        let flags = TcpFlags {
            syn: matches!(mark, StreamMark::Open | StreamMark::OpenReply),
            ack: !matches!(mark, StreamMark::Open),
            fin: matches!(mark, StreamMark::Close),
            rst: false,
        };
        self.tcp(ts_us, src, dst, seq, flags, data);
    }

    /// `addr` (a socket of a process on this node) belongs to `identity`, whatever its IP
    /// resolves to; flows resolve their ends when their first entry is made.
    pub fn claim(&mut self, addr: (std::net::IpAddr, u16), identity: Identity) {
        let c = self.claims.entry(addr).or_insert((identity.clone(), 0));
        c.0 = identity;
        c.1 += 1;
    }

    /// The node's own addresses, where a claim on a wildcard listener's port applies
    /// (loopback always does).
    pub fn set_local_ips(&mut self, ips: impl IntoIterator<Item = std::net::IpAddr>) {
        self.local_ips = ips.into_iter().collect();
    }

    /// The claim on `(ip, port)`, else, for an address of this node, on a wildcard listener
    /// of that port: its own family's, then `::` (dual-stack sockets take IPv4 too).
    fn claimed(&self, ip: std::net::IpAddr, port: u16) -> Option<&Identity> {
        use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
        if let Some((identity, _)) = self.claims.get(&(ip, port)) {
            return Some(identity);
        }
        if self.claims.is_empty() || !(ip.is_loopback() || self.local_ips.contains(&ip)) {
            return None;
        }
        let any4 = (IpAddr::V4(Ipv4Addr::UNSPECIFIED), port);
        let any6 = (IpAddr::V6(Ipv6Addr::UNSPECIFIED), port);
        let wild: &[Addr] = if ip.is_ipv4() { &[any4, any6] } else { &[any6] };
        wild.iter()
            .find_map(|a| self.claims.get(a).map(|(identity, _)| identity))
    }

    /// Ends one [`Pipeline::claim`] on `addr`.
    pub fn release(&mut self, addr: (std::net::IpAddr, u16)) {
        if let Some(c) = self.claims.get_mut(&addr) {
            c.1 = c.1.saturating_sub(1);
            if c.1 == 0 {
                self.claims.remove(&addr);
            }
        }
    }

    /// Live capture: lets idle flows time out while no packet arrives (`now_us`: wall clock).
    pub fn tick(&mut self, now_us: i64) {
        if now_us.saturating_sub(self.last_sweep) > SWEEP_EVERY_US {
            self.sweep(now_us);
        }
    }

    /// Flows (TCP streams and UDP flows) open now.
    pub fn live_flows(&self) -> usize {
        self.flows.len()
    }

    /// End of capture: every open flow is ended and its pending entries emitted.
    pub fn finish(&mut self) {
        let mut flows: Vec<Flow> = self.flows.drain().map(|(_, f)| f).collect();
        flows.sort_by_key(|f| f.last_ts);
        for f in flows {
            self.end_flow(f);
        }
        self.closed.clear();
    }

    fn tcp(&mut self, ts: i64, src: Addr, dst: Addr, seq: u32, flags: TcpFlags, payload: &[u8]) {
        let (k, side) = key(true, src, dst);
        let starts = flags.syn && !flags.ack;
        if starts {
            if let Some(old) = self.flows.get(&k) {
                if old.is_new_connection(side, seq) {
                    if let Some(f) = self.flows.remove(&k) {
                        self.end_flow(f);
                    }
                }
            }
            self.closed.remove(&k);
        }
        if !self.flows.contains_key(&k) {
            // Bare ACKs and FINs of connections we never saw (or just closed) start nothing.
            if !flags.syn && payload.is_empty() {
                return;
            }
            if let Some(&closed_at) = self.closed.get(&k) {
                if !flags.syn && ts.saturating_sub(closed_at) < CLOSED_LINGER_US {
                    self.stats.late_packets += 1;
                    return;
                }
                self.closed.remove(&k);
            }
            self.make_room();
            self.stats.tcp_streams += 1;
            let flow = self.new_flow([k.1, k.2], true, ts);
            self.flows.insert(k, flow);
        }
        let Some(mut flow) = self.flows.remove(&k) else {
            return;
        };
        let closed = self.run(&mut flow, |f, env| {
            f.tcp_segment(env, side, ts, seq, flags, payload)
        });
        if closed {
            self.closed.insert(k, ts);
            self.end_flow(flow);
        } else {
            self.flows.insert(k, flow);
        }
    }

    fn udp(&mut self, ts: i64, src: Addr, dst: Addr, payload: &[u8]) {
        let (k, side) = key(false, src, dst);
        let mut flow = match self.flows.remove(&k) {
            Some(f) => f,
            None => {
                self.make_room();
                self.stats.udp_flows += 1;
                self.new_flow([k.1, k.2], false, ts)
            }
        };
        self.run(&mut flow, |f, env| f.datagram(env, side, ts, payload));
        self.flows.insert(k, flow);
    }

    /// A new flow; with pod targeting its ends are resolved now and a flow with neither end
    /// targeted is ignored before any of its bytes is looked at.
    fn new_flow(&mut self, ends: [Addr; 2], tcp: bool, ts: i64) -> Flow {
        let mut flow = Flow::new(ends, tcp, ts);
        if self
            .config
            .target
            .as_ref()
            .is_some_and(|t| !t.is_everything())
        {
            let eps = [self.endpoint(ends[0], ts), self.endpoint(ends[1], ts)];
            let target = self.config.target.as_ref();
            if !eps
                .iter()
                .any(|e| target.is_some_and(|t| t.matches(&e.identity)))
            {
                flow.ignore();
                self.stats.untargeted_flows += 1;
            }
            flow.endpoints = Some(Box::new(eps));
        }
        flow
    }

    /// Ends flows idle for longer than their timeout and forgets old closed connections.
    fn sweep(&mut self, now: i64) {
        self.last_sweep = now;
        let idle: Vec<Key> = self
            .flows
            .iter()
            .filter(|(_, f)| {
                let limit = if f.tcp { TCP_IDLE_US } else { UDP_IDLE_US };
                now.saturating_sub(f.last_ts) > limit
            })
            .map(|(k, _)| *k)
            .collect();
        for k in idle {
            if let Some(f) = self.flows.remove(&k) {
                self.end_flow(f);
            }
        }
        self.closed
            .retain(|_, at| now.saturating_sub(*at) < CLOSED_LINGER_US);
    }

    /// Keeps the flow table under [`MAX_FLOWS`] by ending the least recently active flows.
    fn make_room(&mut self) {
        if self.flows.len() < MAX_FLOWS {
            return;
        }
        let mut by_age: Vec<(i64, Key)> = self.flows.iter().map(|(k, f)| (f.last_ts, *k)).collect();
        let n = EVICT_BATCH.min(by_age.len());
        if n == 0 {
            return;
        }
        by_age.select_nth_unstable(n - 1);
        by_age.truncate(n);
        by_age.sort_unstable();
        for (_, k) in by_age {
            if let Some(f) = self.flows.remove(&k) {
                self.stats.evicted_flows += 1;
                self.end_flow(f);
            }
        }
        if self.closed.len() > MAX_FLOWS {
            self.closed.clear();
        }
    }

    fn end_flow(&mut self, mut flow: Flow) {
        self.run(&mut flow, |f, env| f.end(env));
    }

    /// Runs one step of a flow (taken out of the table) with the dissectors, then stamps and
    /// hands out the entries it produced.
    fn run<R>(&mut self, flow: &mut Flow, step: impl FnOnce(&mut Flow, &mut Env) -> R) -> R {
        let mut out = std::mem::take(&mut self.scratch);
        let r = step(
            flow,
            &mut Env {
                dissectors: &self.dissectors,
                cfg: &self.dissect,
                stats: &mut self.stats,
                out: &mut out,
            },
        );
        if !out.is_empty() {
            let eps = match flow.endpoints.take() {
                Some(eps) => eps,
                None => {
                    let [a, b] = flow.ends();
                    Box::new([
                        self.endpoint(a, flow.first_ts),
                        self.endpoint(b, flow.first_ts),
                    ])
                }
            };
            self.decorate(flow.client_side(), &eps, &mut out);
            flow.endpoints = Some(eps);
        }
        self.scratch = out;
        r
    }

    /// An address with its identity as of `ts` (resolved once per flow: an IP reused by a new
    /// pod must not rename an old flow's entries). Its text is formatted once per address
    /// (formatting an IP for every entry was a tenth of the dissection time).
    fn endpoint(&mut self, (ip, port): Addr, ts: i64) -> Endpoint {
        if self.ip_text.len() >= MAX_FLOWS {
            self.ip_text.clear();
        }
        let text = self
            .ip_text
            .entry(ip)
            .or_insert_with(|| ip.to_string())
            .clone();
        if let Some(identity) = self.claimed(ip, port) {
            return Endpoint {
                ip: text,
                port,
                identity: identity.clone(),
            };
        }
        let identity = match self.config.identities.lookup(&ip, ts) {
            Some(id) => id,
            None => Identity {
                name: text.clone(),
                ..Default::default()
            },
        };
        Endpoint {
            ip: text,
            port,
            identity,
        }
    }

    /// Adds ids, node, capture source, addresses and identities, and moves the entries out.
    fn decorate(&mut self, client: usize, ends: &[Endpoint; 2], entries: &mut Vec<Entry>) {
        let (src, dst) = (&ends[client & 1], &ends[1 - (client & 1)]);
        for mut e in entries.drain(..) {
            self.seq = self.seq.wrapping_add(1);
            e.id = EntryId::new(e.ts_us, &self.config.node, self.seq);
            e.node.clone_from(&self.config.node);
            e.capture.clone_from(&self.config.capture);
            e.src = src.clone();
            e.dst = dst.clone();
            if let Some(r) = &self.config.redactor {
                r.redact(&mut e, &mut self.stats.redactions);
            }
            match self.stats.entries.get_mut(&e.protocol) {
                Some(n) => *n += 1,
                None => {
                    self.stats.entries.insert(e.protocol.clone(), 1);
                }
            }
            self.out.push(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_wildcard_listener_claim_names_the_nodes_addresses_only() {
        let mut p = Pipeline::new(PipelineConfig::default());
        p.set_local_ips([ip("10.0.0.5")]);
        let web = Identity {
            name: "web".into(),
            ..Default::default()
        };
        let db = Identity {
            name: "db".into(),
            ..Default::default()
        };
        p.claim((ip("0.0.0.0"), 8080), web.clone());
        p.claim((ip("::"), 5432), db.clone());
        p.claim((ip("10.0.0.5"), 9000), db.clone());
        let name =
            |p: &mut Pipeline, a: &str, port: u16| p.endpoint((ip(a), port), 0).identity.name;
        assert_eq!(name(&mut p, "127.0.0.1", 8080), "web");
        assert_eq!(name(&mut p, "10.0.0.5", 8080), "web");
        // Dual-stack `::` listener: IPv4 and IPv6 peers.
        assert_eq!(name(&mut p, "10.0.0.5", 5432), "db");
        assert_eq!(name(&mut p, "::1", 5432), "db");
        // An IPv6 address never falls back to the IPv4 wildcard.
        assert_eq!(name(&mut p, "::1", 8080), "::1");
        // A remote host's socket with the same port is not this node's listener.
        assert_eq!(name(&mut p, "192.0.2.7", 8080), "192.0.2.7");
        // Other ports, and exact claims, are unaffected.
        assert_eq!(name(&mut p, "10.0.0.5", 8081), "10.0.0.5");
        assert_eq!(name(&mut p, "10.0.0.5", 9000), "db");
        p.release((ip("0.0.0.0"), 8080));
        assert_eq!(name(&mut p, "127.0.0.1", 8080), "127.0.0.1");
    }
}
