//! One TCP connection or UDP flow: its two reassembled directions, which side is the client,
//! and protocol detection by content. While the protocol is unknown the first bytes of each
//! direction are held (bounded) and offered to every dissector; once one claims them they are
//! replayed into its parser and the flow streams from then on.

use std::net::IpAddr;

use wiretrail_proto::{Endpoint, Entry};

use crate::dissect::{Dir, DissectConfig, Dissector, Parser, Probe};
use crate::pipeline::PipelineStats;
use crate::reassembly::{Delivery, TcpHalf};

/// Bytes per direction held while the protocol of a connection is not known yet.
const MAX_PROBE_BYTES: usize = 16 * 1024;
/// UDP datagrams offered to the dissectors before a flow is declared undissectable.
const MAX_PROBE_DATAGRAMS: u32 = 8;

pub(crate) type Addr = (IpAddr, u16);

/// What a flow operation needs from the pipeline; entries land in `out` without ids or
/// addresses (the pipeline adds them, see `Pipeline::emit`).
pub(crate) struct Env<'a> {
    pub dissectors: &'a [Box<dyn Dissector>],
    pub cfg: &'a DissectConfig,
    pub stats: &'a mut PipelineStats,
    pub out: &'a mut Vec<Entry>,
}

enum State {
    /// Protocol not known yet: the first bytes of each direction, in arrival order.
    Probing(Vec<(usize, i64, Vec<u8>)>),
    Parsing(Box<dyn Parser>),
    /// No dissector claimed the flow (or it was handed over to a protocol we do not parse).
    Ignored,
}

/// Everything but reassembly, so that a reassembly callback can borrow it mutably.
struct Conn {
    ends: [Addr; 2],
    /// Index in `ends` of the client, once known (SYN, content or ports).
    client: Option<usize>,
    state: State,
    datagrams_probed: u32,
    /// `Parser::errors()` already added to the stats.
    errors_seen: u64,
}

pub(crate) struct Flow {
    pub tcp: bool,
    /// Capture time of the flow's first packet: its ends' identities are resolved as of then.
    pub first_ts: i64,
    pub last_ts: i64,
    /// The two ends with their identities (same order as `ends()`), once resolved.
    pub endpoints: Option<Box<[Endpoint; 2]>>,
    halves: [TcpHalf; 2],
    fin: [bool; 2],
    conn: Conn,
}

/// Flags of one TCP segment.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TcpFlags {
    pub syn: bool,
    pub ack: bool,
    pub fin: bool,
    pub rst: bool,
}

impl Flow {
    pub fn new(ends: [Addr; 2], tcp: bool, ts: i64) -> Self {
        Flow {
            tcp,
            first_ts: ts,
            last_ts: ts,
            endpoints: None,
            halves: Default::default(),
            fin: [false; 2],
            conn: Conn {
                ends,
                client: None,
                state: State::Probing(Vec::new()),
                datagrams_probed: 0,
                errors_seen: 0,
            },
        }
    }

    /// The client's index in the flow's two ends: decided by SYN, else by content, else the
    /// side with the well-known (or lower) port is taken to be the server.
    pub fn client_side(&self) -> usize {
        self.conn.client_side()
    }

    pub fn ends(&self) -> [Addr; 2] {
        self.conn.ends
    }

    /// Nothing of this flow is dissected (pod targeting): its packets are only counted.
    pub fn ignore(&mut self) {
        self.conn.state = State::Ignored;
    }

    /// A SYN without ACK from `side` that starts a different connection on the same ports
    /// (a new ISN, data already sent after the old SYN — port reuse, even with the same ISN —
    /// or data already seen without a handshake): the old flow must end first.
    pub fn is_new_connection(&self, side: usize, seq: u32) -> bool {
        let h = &self.halves[side];
        match h.syn_seq() {
            Some(isn) => isn != seq || h.has_data(),
            None => h.started(),
        }
    }

    /// Adds one TCP segment; returns true when the connection is over (RST, or FIN both ways).
    pub fn tcp_segment(
        &mut self,
        env: &mut Env,
        side: usize,
        ts: i64,
        seq: u32,
        flags: TcpFlags,
        payload: &[u8],
    ) -> bool {
        self.last_ts = ts;
        if flags.syn {
            self.halves[side].syn(seq);
            if self.conn.client.is_none() {
                self.conn.client = Some(if flags.ack { 1 - side } else { side });
            }
        }
        if !matches!(self.conn.state, State::Ignored) {
            let Flow { halves, conn, .. } = self;
            let half = &mut halves[side];
            let dup_before = half.duplicate_bytes;
            half.push(seq, ts, payload, &mut |d| conn.delivery(env, side, d));
            env.stats.duplicate_bytes += half.duplicate_bytes - dup_before;
            conn.sync_errors(env);
        }
        if flags.fin {
            self.fin[side] = true;
        }
        flags.rst || (self.fin[0] && self.fin[1])
    }

    /// One UDP datagram.
    pub fn datagram(&mut self, env: &mut Env, side: usize, ts: i64, payload: &[u8]) {
        self.last_ts = ts;
        self.conn.datagram(env, side, ts, payload);
        self.conn.sync_errors(env);
    }

    /// The flow is over (FIN/RST, idle, evicted or end of capture): buffered data is delivered
    /// with its holes reported as gaps, then the parser emits what is pending.
    pub fn end(&mut self, env: &mut Env) {
        let Flow { halves, conn, .. } = self;
        for (side, half) in halves.iter_mut().enumerate() {
            if matches!(conn.state, State::Ignored) {
                half.clear();
                continue;
            }
            let dup_before = half.duplicate_bytes;
            half.flush(&mut |d| conn.delivery(env, side, d));
            env.stats.duplicate_bytes += half.duplicate_bytes - dup_before;
        }
        match std::mem::replace(&mut conn.state, State::Ignored) {
            State::Parsing(mut p) => {
                p.end(env.out);
                if p.upgraded() {
                    env.stats.upgraded_streams += 1;
                }
                let e = p.errors();
                env.stats.dissect_errors += e.saturating_sub(conn.errors_seen);
            }
            State::Probing(pending) => {
                if !pending.is_empty() {
                    env.stats.undissected_flows += 1;
                }
            }
            State::Ignored => {}
        }
    }
}

impl Conn {
    fn client_side(&self) -> usize {
        if let Some(c) = self.client {
            return c;
        }
        let (p0, p1) = (self.ends[0].1, self.ends[1].1);
        let server = match (p0 < 1024, p1 < 1024) {
            (true, false) => 0,
            (false, true) => 1,
            _ if p1 < p0 => 1,
            _ => 0,
        };
        1 - server
    }

    fn dir(&self, side: usize) -> Dir {
        if self.client_side() == side {
            Dir::Request
        } else {
            Dir::Response
        }
    }

    fn sync_errors(&mut self, env: &mut Env) {
        if let State::Parsing(p) = &self.state {
            let e = p.errors();
            env.stats.dissect_errors += e.saturating_sub(self.errors_seen);
            self.errors_seen = e;
        }
    }

    fn delivery(&mut self, env: &mut Env, side: usize, d: Delivery) {
        match d {
            Delivery::Data(ts, data) => self.deliver(env, side, ts, data),
            Delivery::Gap(n) => {
                env.stats.gap_bytes += n;
                match &mut self.state {
                    State::Parsing(_) => {
                        let dir = self.dir(side);
                        if let State::Parsing(p) = &mut self.state {
                            p.gap(dir, n, env.out);
                        }
                    }
                    // A hole before the protocol is known: what was held cannot be trusted
                    // to start a message, so detection starts over after it.
                    State::Probing(pending) => pending.retain(|(s, _, _)| *s != side),
                    State::Ignored => {}
                }
            }
        }
    }

    fn deliver(&mut self, env: &mut Env, side: usize, ts: i64, data: &[u8]) {
        let dir = self.dir(side);
        match &mut self.state {
            State::Ignored => {}
            State::Parsing(p) => p.data(dir, ts, data, env.out),
            State::Probing(pending) => {
                pending.push((side, ts, data.to_vec()));
                self.probe(env);
            }
        }
    }

    /// Offers the first bytes of each direction to every dissector; when several claim them,
    /// a port hint breaks the tie, else registration order does.
    fn probe(&mut self, env: &mut Env) {
        let State::Probing(pending) = &self.state else {
            return;
        };
        let mut by_side: [Vec<u8>; 2] = Default::default();
        for (s, _, d) in pending {
            if let Some(b) = by_side.get_mut(*s) {
                b.extend_from_slice(d);
            }
        }
        let mut undecided = false;
        let mut claims: Vec<(usize, usize)> = Vec::new();
        for (i, d) in env.dissectors.iter().enumerate() {
            for (side, bytes) in by_side.iter().enumerate() {
                if bytes.is_empty() {
                    continue;
                }
                match d.probe_stream(bytes) {
                    Probe::Client => claims.push((i, side)),
                    Probe::Server => claims.push((i, 1 - side)),
                    Probe::NeedMore => undecided = true,
                    Probe::No => {}
                }
            }
        }
        let chosen = self.pick(env, &claims);
        let too_much = by_side.iter().any(|b| b.len() > MAX_PROBE_BYTES);
        match chosen {
            Some((i, client)) => {
                // The SYN, when captured, is the better witness of who the client is.
                let client = *self.client.get_or_insert(client);
                let Some(d) = env.dissectors.get(i) else {
                    return;
                };
                let mut parser = d.new_stream(env.cfg);
                let State::Probing(pending) = std::mem::replace(&mut self.state, State::Ignored)
                else {
                    return;
                };
                for (side, ts, data) in pending {
                    let dir = if side == client {
                        Dir::Request
                    } else {
                        Dir::Response
                    };
                    parser.data(dir, ts, &data, env.out);
                }
                self.state = State::Parsing(parser);
            }
            None if !undecided || too_much => {
                env.stats.undissected_flows += 1;
                self.state = State::Ignored;
            }
            None => {}
        }
    }

    /// Among dissectors claiming the flow, the first whose port hint matches, else the first.
    fn pick(&self, env: &Env, claims: &[(usize, usize)]) -> Option<(usize, usize)> {
        if claims.len() > 1 {
            let hinted = claims.iter().find(|(i, _)| {
                env.dissectors
                    .get(*i)
                    .is_some_and(|d| self.ends.iter().any(|(_, port)| d.port_hint(*port)))
            });
            if hinted.is_some() {
                return hinted.copied();
            }
        }
        claims.first().copied()
    }

    fn datagram(&mut self, env: &mut Env, side: usize, ts: i64, data: &[u8]) {
        if let State::Probing(_) = self.state {
            let claims: Vec<(usize, usize)> = env
                .dissectors
                .iter()
                .enumerate()
                .filter_map(|(i, d)| match d.probe_datagram(data) {
                    Probe::Client => Some((i, side)),
                    Probe::Server => Some((i, 1 - side)),
                    _ => None,
                })
                .collect();
            match self.pick(env, &claims) {
                Some((i, client)) => {
                    self.client = Some(client);
                    if let Some(d) = env.dissectors.get(i) {
                        self.state = State::Parsing(d.new_datagram(env.cfg));
                    }
                }
                None => {
                    self.datagrams_probed += 1;
                    if self.datagrams_probed >= MAX_PROBE_DATAGRAMS {
                        env.stats.undissected_flows += 1;
                        self.state = State::Ignored;
                    }
                    return;
                }
            }
        }
        let dir = self.dir(side);
        if let State::Parsing(p) = &mut self.state {
            p.data(dir, ts, data, env.out);
        }
    }
}
