//! Socket ownership events (raw tracepoint `sock:inet_sock_set_state` in `tls.bpf.c`) →
//! claims in the AF_PACKET pipeline: a TCP socket a pod's process connected or listens on is
//! named after that pod, even when the pod shares the node's address (host network).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use wiretrail_proto::Identity;

use super::record::{addrs_at, u32_at, u64_at};
use crate::Pipeline;

/// Size of `struct sock_record` (checked by `_Static_assert`s in the C file).
const SOCK_RECORD_LEN: usize = 72;
/// Sockets claimed at once; beyond it new ones stay attributed by address (a missed CLOSE
/// must not grow the table without bound).
const MAX_CLAIMED: usize = 65536;
/// How long a closed socket keeps its claim: its last packets (which may complete its entry)
/// reach the pipeline through the AF_PACKET ring's blocks later than the close event.
pub const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// What happened to a socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocketKind {
    /// An outgoing connection was established (`local` is the process's end).
    Connect,
    /// The process listens on `local` (possibly 0.0.0.0 / ::).
    Listen,
    /// A socket reported before is closed.
    Close,
}

/// One socket state change of a process.
#[derive(Debug, Clone)]
pub struct SocketEvent {
    pub kind: SocketKind,
    /// Identifies the socket until its `Close` (the kernel's socket pointer).
    pub sock: u64,
    /// The process that connected or listened.
    pub pid: u32,
    pub cgroup_id: u64,
    pub local: Option<SocketAddr>,
    pub peer: Option<SocketAddr>,
}

pub(super) fn parse(b: &[u8]) -> Option<SocketEvent> {
    if b.len() < SOCK_RECORD_LEN {
        return None;
    }
    let kind = match b[28] {
        1 => SocketKind::Connect,
        2 => SocketKind::Listen,
        3 => SocketKind::Close,
        _ => return None,
    };
    let (local, peer) = addrs_at(b, 32);
    Some(SocketEvent {
        kind,
        sock: u64_at(b, 16),
        pid: u32_at(b, 24),
        cgroup_id: u64_at(b, 8),
        local,
        peer,
    })
}

/// The identity of a cgroup's processes (e.g. its pod), if known.
pub type CgroupIdentity = Box<dyn FnMut(u64) -> Option<Identity> + Send>;

/// What [`SocketClaims`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SocketClaimStats {
    /// Sockets claimed for their process's identity.
    pub claimed: u64,
    /// Connect/listen events whose process has no known identity (left to addresses).
    pub unattributed: u64,
    /// Claims ended by the socket's close.
    pub released: u64,
}

/// Applies [`SocketEvent`]s to a pipeline as claims.
pub struct SocketClaims {
    identity: CgroupIdentity,
    /// Socket → the address claimed for it.
    claimed: HashMap<u64, (IpAddr, u16)>,
    /// Addresses of closed sockets and when the close was read, oldest first (out of
    /// `claimed` at once: the kernel may reuse the socket pointer for a new socket).
    closed: std::collections::VecDeque<((IpAddr, u16), Instant)>,
    stats: SocketClaimStats,
}

impl SocketClaims {
    pub fn new(identity: CgroupIdentity) -> Self {
        SocketClaims {
            identity,
            claimed: HashMap::new(),
            closed: std::collections::VecDeque::new(),
            stats: SocketClaimStats::default(),
        }
    }

    pub fn stats(&self) -> SocketClaimStats {
        self.stats
    }

    /// Claims connected/listening sockets now. A close ends its claim [`CLOSE_GRACE`] later
    /// (see [`SocketClaims::release_closed`]), so a short connection whose last packets are
    /// read after its close event is still named.
    pub fn apply(&mut self, ev: &SocketEvent, pipeline: &mut Pipeline) {
        if ev.kind == SocketKind::Close {
            if let Some(addr) = self.claimed.remove(&ev.sock) {
                self.closed.push_back((addr, Instant::now()));
            }
            return;
        }
        let Some(local) = ev.local.filter(|a| a.port() != 0) else {
            return;
        };
        if self.claimed.len() >= MAX_CLAIMED || self.claimed.contains_key(&ev.sock) {
            return;
        }
        match (self.identity)(ev.cgroup_id) {
            Some(identity) => {
                let addr = (local.ip(), local.port());
                pipeline.claim(addr, identity);
                self.claimed.insert(ev.sock, addr);
                self.stats.claimed += 1;
            }
            None => self.stats.unattributed += 1,
        }
    }

    /// Ends the claims of the sockets closed at least [`CLOSE_GRACE`] before `now`.
    pub fn release_closed(&mut self, pipeline: &mut Pipeline, now: Instant) {
        while let Some(&(addr, at)) = self.closed.front() {
            if now.saturating_duration_since(at) < CLOSE_GRACE {
                break;
            }
            self.closed.pop_front();
            pipeline.release(addr);
            self.stats.released += 1;
        }
    }
}

/// This node's interface addresses (where a claim on a wildcard listener applies).
pub fn node_ips() -> Vec<IpAddr> {
    let mut out = Vec::new();
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list we only read and then free once.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        tracing::warn!(error = %std::io::Error::last_os_error(), "cannot list this node's addresses");
        return out;
    }
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list getifaddrs returned, not yet freed.
        let ifa = unsafe { &*cur };
        if !ifa.ifa_addr.is_null() {
            // SAFETY: ifa_addr points to a sockaddr whose family tells its real type.
            match i32::from(unsafe { (*ifa.ifa_addr).sa_family }) {
                libc::AF_INET => {
                    let a = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
                    out.push(std::net::Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr)).into());
                }
                libc::AF_INET6 => {
                    let a = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in6) };
                    out.push(std::net::Ipv6Addr::from(a.sin6_addr.s6_addr).into());
                }
                _ => {}
            }
        }
        cur = ifa.ifa_next;
    }
    // SAFETY: the list from getifaddrs above, freed once.
    unsafe { libc::freeifaddrs(head) };
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(kind: u8, sk: u64, local: [u8; 4], lport: u16) -> Vec<u8> {
        let mut b = vec![0u8; SOCK_RECORD_LEN];
        b[8..16].copy_from_slice(&77u64.to_ne_bytes());
        b[16..24].copy_from_slice(&sk.to_ne_bytes());
        b[24..28].copy_from_slice(&42u32.to_ne_bytes());
        b[28] = kind;
        b[32..34].copy_from_slice(&2u16.to_ne_bytes());
        b[34..36].copy_from_slice(&lport.to_ne_bytes());
        b[40..44].copy_from_slice(&local);
        b
    }

    #[test]
    fn records_parse_and_a_close_releases_only_its_own_claim() {
        let listen = parse(&record(2, 1, [127, 0, 0, 1], 8080)).unwrap();
        assert_eq!(listen.kind, SocketKind::Listen);
        assert_eq!(listen.local, Some(SocketAddr::from(([127, 0, 0, 1], 8080))));
        assert_eq!((listen.cgroup_id, listen.pid, listen.sock), (77, 42, 1));
        let mut claims = SocketClaims::new(Box::new(|cg| {
            (cg == 77).then(|| Identity {
                name: "web".into(),
                ..Default::default()
            })
        }));
        let mut p = Pipeline::new(crate::PipelineConfig::default());
        claims.apply(&listen, &mut p);
        // An accepted socket on the same address was never reported: its close is ignored.
        claims.apply(&parse(&record(3, 9, [127, 0, 0, 1], 8080)).unwrap(), &mut p);
        claims.release_closed(&mut p, Instant::now() + CLOSE_GRACE);
        assert_eq!(claims.stats().claimed, 1);
        assert_eq!(claims.stats().released, 0);
        claims.apply(&parse(&record(3, 1, [0; 4], 0)).unwrap(), &mut p);
        // The claim outlives the close by the grace period.
        claims.release_closed(&mut p, Instant::now());
        assert_eq!(claims.stats().released, 0);
        claims.release_closed(&mut p, Instant::now() + CLOSE_GRACE);
        assert_eq!(claims.stats().released, 1);
        assert!(parse(&record(9, 1, [0; 4], 0)).is_none());
    }
}
