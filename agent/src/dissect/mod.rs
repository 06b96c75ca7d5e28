//! Protocol dissectors. Each protocol is one file implementing [`Dissector`]; adding one is a
//! new file plus one line in [`registry`]. A connection's protocol is chosen **by content**:
//! the first bytes of each direction are offered to every dissector's probe, so HTTP on 18080
//! or DNS on 15353 is found as readily as on 80 or 53. Port numbers ([`Dissector::port_hint`])
//! only break ties when two dissectors claim the same bytes.
//!
//! Parsers turn the bytes of one connection (or one UDP flow) into paired [`Entry`] values with
//! the protocol fields filled; the pipeline adds ids, addresses and identities.

pub mod amqp;
mod body;
pub mod dns;
pub mod http1;
pub mod redis;

use wiretrail_proto::Entry;

/// Which side sent the bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    /// Client → server.
    Request,
    /// Server → client.
    Response,
}

/// What a probe concluded from the first bytes seen in one direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// The bytes are this protocol, sent by the client.
    Client,
    /// The bytes are this protocol, sent by the server.
    Server,
    /// Could be this protocol; more bytes are needed to tell.
    NeedMore,
    /// Not this protocol.
    No,
}

/// Settings every parser gets.
#[derive(Debug, Clone)]
pub struct DissectConfig {
    /// Largest body kept per message (decoded); the rest is counted, not stored.
    pub body_cap: usize,
}

/// The parser of one connection or UDP flow.
pub trait Parser: Send {
    /// Bytes in order (a stream) or one datagram, with the capture time of the packet that
    /// carried them.
    fn data(&mut self, dir: Dir, ts_us: i64, data: &[u8], out: &mut Vec<Entry>);
    /// `len` bytes in `dir` were never captured; the parser resynchronises.
    fn gap(&mut self, dir: Dir, len: u64, out: &mut Vec<Entry>);
    /// The connection ended (FIN/RST, idle or end of capture): emit what is pending, including
    /// requests that never got a response (one-way entries).
    fn end(&mut self, out: &mut Vec<Entry>);
    /// Malformed messages seen so far (each one also ends up in an entry or is resynced past).
    fn errors(&self) -> u64;
    /// The connection switched to another protocol this parser does not speak (HTTP/1
    /// `101 Switching Protocols`, a tunnel after `CONNECT`); the rest of it is not dissected.
    fn upgraded(&self) -> bool {
        false
    }
}

/// One protocol.
pub trait Dissector: Send + Sync {
    fn name(&self) -> &'static str;
    /// Probe the first bytes of a TCP direction.
    fn probe_stream(&self, data: &[u8]) -> Probe;
    fn new_stream(&self, cfg: &DissectConfig) -> Box<dyn Parser>;
    /// Probe a UDP datagram; `No` for protocols that are not carried over UDP.
    fn probe_datagram(&self, _data: &[u8]) -> Probe {
        Probe::No
    }
    fn new_datagram(&self, cfg: &DissectConfig) -> Box<dyn Parser> {
        self.new_stream(cfg)
    }
    /// Whether `port` is a usual port of this protocol; consulted only to break a tie between
    /// dissectors that both claim a flow's first bytes.
    fn port_hint(&self, _port: u16) -> bool {
        false
    }
}

/// Every dissector, in probe order.
pub fn registry() -> Vec<Box<dyn Dissector>> {
    vec![
        Box::new(http1::Http1),
        Box::new(redis::Redis),
        Box::new(dns::Dns),
        Box::new(amqp::Amqp),
    ]
}
