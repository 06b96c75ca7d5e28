//! Ring-buffer records → [`TlsEvent`]s: header parsing (layout of `struct record` in
//! `tls.bpf.c`), chunk reassembly and monotonic → wall-clock conversion.
use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    time::{Duration, Instant},
};

/// One successful `SSL_read*`/`SSL_write*` call's plaintext.
#[derive(Debug, Clone)]
pub struct TlsEvent {
    /// Wall clock, µs since the Unix epoch (converted from the kernel's monotonic stamp).
    pub ts_us: i64,
    pub pid: u32,
    pub tid: u32,
    pub cgroup_id: u64,
    pub comm: String,
    /// Stable per TLS connection: a mix of the `SSL *` pointer and the pid.
    pub conn: u64,
    /// true = `SSL_write` (egress from this process), false = `SSL_read` (ingress).
    pub write: bool,
    /// This process's end of the socket, if the kernel side saw it.
    pub local: Option<SocketAddr>,
    /// The other end.
    pub peer: Option<SocketAddr>,
    /// Plaintext, at most `max_capture` bytes.
    pub data: Vec<u8>,
    /// Length of the call before truncation.
    pub len: usize,
}

/// Offsets in `struct record` (checked by `_Static_assert`s in the C file).
const HDR_LEN: usize = 112;
const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;

fn u16_at(b: &[u8], o: usize) -> u16 {
    u16::from_ne_bytes([b[o], b[o + 1]])
}
pub(super) fn u32_at(b: &[u8], o: usize) -> u32 {
    u32::from_ne_bytes(b[o..o + 4].try_into().unwrap_or_default())
}
pub(super) fn u64_at(b: &[u8], o: usize) -> u64 {
    u64::from_ne_bytes(b[o..o + 8].try_into().unwrap_or_default())
}

struct Header {
    ts_ns: u64,
    cgroup: u64,
    ssl: u64,
    pid: u32,
    tid: u32,
    len: u32,
    off: u32,
    chunk_len: u32,
    local: Option<SocketAddr>,
    peer: Option<SocketAddr>,
    write: bool,
    last: bool,
    comm: String,
}

/// (local, peer) of a `struct addrs` at offset `o` of `b` (which must hold its 40 bytes).
pub(super) fn addrs_at(b: &[u8], o: usize) -> (Option<SocketAddr>, Option<SocketAddr>) {
    let family = u16_at(b, o);
    let (sport, dport) = (u16_at(b, o + 2), u16_at(b, o + 4));
    let ip = |o: usize| -> Option<IpAddr> {
        match family {
            AF_INET => Some(IpAddr::V4(Ipv4Addr::new(
                b[o],
                b[o + 1],
                b[o + 2],
                b[o + 3],
            ))),
            AF_INET6 => {
                let a: [u8; 16] = b[o..o + 16].try_into().ok()?;
                let v6 = Ipv6Addr::from(a);
                // Dual-stack sockets report IPv4 peers as ::ffff:a.b.c.d; AF_PACKET flows are v4.
                Some(v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4))
            }
            _ => None,
        }
    };
    (
        ip(o + 8).map(|a| SocketAddr::new(a, sport)),
        ip(o + 24).map(|a| SocketAddr::new(a, dport)),
    )
}

fn parse(b: &[u8]) -> Option<(Header, &[u8])> {
    if b.len() < HDR_LEN {
        return None;
    }
    let (local, peer) = addrs_at(b, 48);
    let comm = &b[96..112];
    let comm_end = comm.iter().position(|&c| c == 0).unwrap_or(comm.len());
    let h = Header {
        ts_ns: u64_at(b, 0),
        cgroup: u64_at(b, 8),
        ssl: u64_at(b, 16),
        pid: u32_at(b, 24),
        tid: u32_at(b, 28),
        len: u32_at(b, 32),
        off: u32_at(b, 36),
        chunk_len: u32_at(b, 40),
        local,
        peer,
        write: b[88] != 0,
        last: b[89] != 0,
        comm: String::from_utf8_lossy(&comm[..comm_end]).into_owned(),
    };
    let end = (HDR_LEN + h.chunk_len as usize).min(b.len());
    Some((h, &b[HDR_LEN..end]))
}

/// CLOCK_REALTIME − CLOCK_MONOTONIC, refreshed now and then so NTP steps are followed.
pub(super) struct Clock {
    offset_ns: i128,
    taken: Instant,
}

fn clock_ns(id: libc::clockid_t) -> i128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid out pointer; both clocks always exist on Linux.
    unsafe { libc::clock_gettime(id, &mut ts) };
    ts.tv_sec as i128 * 1_000_000_000 + ts.tv_nsec as i128
}

impl Clock {
    pub(super) fn now() -> Clock {
        let mono = clock_ns(libc::CLOCK_MONOTONIC);
        let real = clock_ns(libc::CLOCK_REALTIME);
        Clock {
            offset_ns: real - mono,
            taken: Instant::now(),
        }
    }
    pub(super) fn refresh_if_stale(&mut self) {
        if self.taken.elapsed() > Duration::from_secs(10) {
            *self = Clock::now();
        }
    }
    fn wall_us(&self, mono_ns: u64) -> i64 {
        ((mono_ns as i128 + self.offset_ns) / 1000) as i64
    }
}

/// Joins the chunks of one call (the kernel emits them back to back per thread).
#[derive(Default)]
pub(super) struct Assembler {
    partial: HashMap<u32, TlsEvent>,
    /// Events emitted with a gap (a chunk was dropped by a full ring buffer).
    pub(super) incomplete: u64,
}

impl Assembler {
    /// Delivers calls whose remaining chunks were dropped (all chunks of a call are queued
    /// back to back, so one still missing after a second never comes).
    pub(super) fn flush_stale(&mut self, clock: &Clock, out: &mut Vec<TlsEvent>) {
        if self.partial.is_empty() {
            return;
        }
        let cutoff = clock.wall_us(clock_ns(libc::CLOCK_MONOTONIC) as u64) - 1_000_000;
        let stale: Vec<u32> = self
            .partial
            .iter()
            .filter(|(_, e)| e.ts_us < cutoff)
            .map(|(&t, _)| t)
            .collect();
        for tid in stale {
            if let Some(ev) = self.partial.remove(&tid) {
                self.incomplete += 1;
                out.push(ev);
            }
        }
    }

    pub(super) fn push(&mut self, rec: &[u8], clock: &Clock, out: &mut Vec<TlsEvent>) {
        let Some((h, data)) = parse(rec) else { return };
        if h.off == 0 {
            // A previous call of this thread whose last chunk never came: deliver what we have.
            if let Some(prev) = self.partial.remove(&h.tid) {
                self.incomplete += 1;
                out.push(prev);
            }
            let ev = TlsEvent {
                ts_us: clock.wall_us(h.ts_ns),
                pid: h.pid,
                tid: h.tid,
                cgroup_id: h.cgroup,
                comm: h.comm,
                conn: h.ssl ^ u64::from(h.pid).wrapping_mul(0x9E37_79B9_7F4A_7C15),
                write: h.write,
                local: h.local,
                peer: h.peer,
                data: data.to_vec(),
                len: h.len as usize,
            };
            if h.last {
                out.push(ev);
            } else {
                self.partial.insert(h.tid, ev);
            }
            return;
        }
        let Some(mut ev) = self.partial.remove(&h.tid) else {
            self.incomplete += 1; // first chunk lost: nothing to attach this one to
            return;
        };
        if ev.data.len() == h.off as usize {
            ev.data.extend_from_slice(data);
        } else {
            self.incomplete += 1; // a middle chunk was lost: keep the contiguous prefix only
        }
        if h.last {
            out.push(ev);
        } else {
            self.partial.insert(h.tid, ev);
        }
    }
}
