//! Live capture: one `AF_PACKET` socket per interface (or one for `any`) with a `TPACKET_V3`
//! memory-mapped ring, read by its own thread. Packets are cooked (`SOCK_DGRAM`: they start at
//! the network header, whatever the link), given a 16-byte Linux cooked (SLL) header built from
//! the ring's `sockaddr_ll`, and handed to the dissection thread in one [`PacketBatch`] per ring
//! block through an in-memory queue bounded in bytes.
//!
//! The ring is never blocked by dissection: when the queue is over its bound the capture thread
//! **sheds whole streams** — the flow of the packet that did not fit is remembered and all its
//! later packets are dropped too (counted), so dissection sees complete streams or none rather
//! than every stream with holes. Above half the bound, new TCP connections (a SYN) are shed
//! first. What the kernel drops because the ring was full is read from `PACKET_STATISTICS` once
//! a second and counted; no drop is silent.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::bpf::{self, BpfInsn};
use super::{decode, Decoded, Transport};
use crate::AgentError;

const SOL_PACKET: libc::c_int = 263;
const PACKET_ADD_MEMBERSHIP: libc::c_int = 1;
const PACKET_RX_RING: libc::c_int = 5;
const PACKET_STATISTICS: libc::c_int = 6;
const PACKET_VERSION: libc::c_int = 10;
const TPACKET_V3: libc::c_int = 2;
const PACKET_MR_PROMISC: libc::c_ushort = 1;
const PACKET_OUTGOING: u8 = 4;
const TP_STATUS_USER: u32 = 1;
const TP_STATUS_KERNEL: u32 = 0;
const SO_ATTACH_FILTER: libc::c_int = 26;
const ETH_P_ALL: u16 = 0x0003;
/// `TPACKET_ALIGN(sizeof(struct tpacket3_hdr))`: where the `sockaddr_ll` of a frame starts.
const TPACKET3_HDRLEN: usize = 48;
/// Length of the cooked header given to every packet (see [`super::LinkType::LinuxSll`]).
pub const SLL_LEN: usize = 16;
/// How long the capture thread waits in `poll` before it looks at its stop flag again.
const POLL_MS: libc::c_int = 100;
/// Shed flows idle for this long are forgotten (a later packet starts it afresh).
const SHED_IDLE: Duration = Duration::from_secs(120);
/// Most flows remembered as shed; beyond it the set is cleared (those flows are re-admitted).
const MAX_SHED_FLOWS: usize = 1 << 20;

/// `struct tpacket_req3`.
#[repr(C)]
struct TpacketReq3 {
    block_size: u32,
    block_nr: u32,
    frame_size: u32,
    frame_nr: u32,
    retire_blk_tov: u32,
    sizeof_priv: u32,
    feature_req_word: u32,
}

/// `struct tpacket_stats_v3`.
#[repr(C)]
#[derive(Default)]
struct TpacketStatsV3 {
    packets: u32,
    drops: u32,
    freeze_q_cnt: u32,
}

/// `struct packet_mreq`.
#[repr(C)]
struct PacketMreq {
    ifindex: libc::c_int,
    kind: libc::c_ushort,
    alen: libc::c_ushort,
    address: [u8; 8],
}

/// `struct sock_fprog`.
#[repr(C)]
struct SockFprog {
    len: libc::c_ushort,
    filter: *const BpfInsn,
}

/// How to capture.
#[derive(Debug, Clone)]
pub struct LiveConfig {
    /// Interface names; `any` (alone) captures on all interfaces of the network namespace.
    pub interfaces: Vec<String>,
    /// tcpdump-style filter expression, compiled with libpcap and run in the kernel.
    pub filter: Option<String>,
    pub promiscuous: bool,
    /// Bytes per ring block (a multiple of the page size, ≥ the largest packet: 64 KiB GRO
    /// packets on `lo` and veths).
    pub block_size: usize,
    pub block_count: usize,
    /// A block that is not full is handed over after this long (latency of quiet links).
    pub block_timeout_ms: u32,
    /// Bytes of packets waiting for dissection above which streams are shed.
    pub queue_bytes: usize,
    /// Packets to or from these TCP/UDP ports are not captured (wiretrail's own ports).
    pub exclude_ports: Vec<u16>,
    /// Capture inside this network namespace (a file such as `/run/netns/NAME` or
    /// `/proc/PID/ns/net`) while the rest of the process stays in its own.
    pub netns: Option<std::path::PathBuf>,
}

impl Default for LiveConfig {
    fn default() -> Self {
        LiveConfig {
            interfaces: vec!["any".into()],
            filter: None,
            promiscuous: false,
            block_size: 1 << 20,
            block_count: 16,
            block_timeout_ms: 50,
            queue_bytes: 64 << 20,
            exclude_ports: Vec::new(),
            netns: None,
        }
    }
}

/// Counters of a live capture, shared with the metrics endpoint.
#[derive(Debug, Default)]
pub struct CaptureStats {
    /// Packets read from the rings (before shedding and port exclusion).
    pub packets: AtomicU64,
    pub bytes: AtomicU64,
    /// Packets the kernel saw for the sockets (`PACKET_STATISTICS`, including drops).
    pub kernel_packets: AtomicU64,
    /// Packets the kernel dropped because a ring was full.
    pub kernel_drops: AtomicU64,
    /// Times a ring was frozen because it was full.
    pub kernel_freezes: AtomicU64,
    /// Flows shed because dissection fell behind, and their packets.
    pub shed_streams: AtomicU64,
    pub shed_packets: AtomicU64,
    /// Packets of excluded ports (wiretrail's own traffic).
    pub excluded_packets: AtomicU64,
    /// Bytes waiting for dissection now.
    pub queued_bytes: AtomicUsize,
}

/// The packets of one ring block, each with a cooked header, in one buffer.
#[derive(Debug, Default)]
pub struct PacketBatch {
    data: Vec<u8>,
    /// (capture time µs, offset, length) per packet.
    index: Vec<(i64, u32, u32)>,
}

impl PacketBatch {
    /// Packets with their capture time (µs since the epoch), link type
    /// [`super::LinkType::LinuxSll`].
    pub fn packets(&self) -> impl Iterator<Item = (i64, &[u8])> {
        self.index.iter().map(|&(ts, off, len)| {
            let (off, len) = (off as usize, len as usize);
            (ts, &self.data[off..off + len])
        })
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    pub fn bytes(&self) -> usize {
        self.data.len()
    }
}

/// A running capture: its threads, their queue and counters. Dropping it stops the threads.
pub struct LiveCapture {
    rx: mpsc::Receiver<PacketBatch>,
    stop: Arc<AtomicBool>,
    stats: Arc<CaptureStats>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

/// One open socket with its ring.
struct Ring {
    fd: OwnedFd,
    map: *mut u8,
    block_size: usize,
    block_count: usize,
    /// Index of the loopback interface: its outgoing copies are skipped (each packet on `lo`
    /// is seen twice, going out and coming in; libpcap skips the same copy).
    lo_index: i32,
}

// SAFETY: the mapping belongs to this ring alone and is only touched by the thread that owns it.
unsafe impl Send for Ring {}

impl Drop for Ring {
    fn drop(&mut self) {
        // SAFETY: `map` is the mapping of `block_size * block_count` bytes made in `open`.
        unsafe {
            libc::munmap(self.map.cast(), self.block_size * self.block_count);
        }
    }
}

fn os_err(what: &str, iface: &str) -> AgentError {
    let e = std::io::Error::last_os_error();
    if matches!(e.raw_os_error(), Some(libc::EPERM) | Some(libc::EACCES)) {
        return AgentError::CaptureNotPermitted(format!(
            "{what} on {iface}: {e} (live capture needs root or CAP_NET_RAW)"
        ));
    }
    AgentError::Capture(format!("{what} on {iface}: {e}"))
}

fn setsockopt<T>(fd: &OwnedFd, level: libc::c_int, name: libc::c_int, v: &T) -> libc::c_int {
    // SAFETY: `v` is a live value of the size passed.
    unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (v as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    }
}

fn if_index(name: &str) -> Result<i32, AgentError> {
    let c = std::ffi::CString::new(name)
        .map_err(|_| AgentError::Capture(format!("bad interface name {name:?}")))?;
    // SAFETY: NUL-terminated name.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if i == 0 {
        return Err(AgentError::Capture(format!("no interface named {name:?}")));
    }
    Ok(i as i32)
}

impl Ring {
    /// Opens a cooked packet socket on `iface` (`any`: ifindex 0) with filter and ring.
    fn open(iface: &str, cfg: &LiveConfig, filter: Option<&[BpfInsn]>) -> Result<Ring, AgentError> {
        let ifindex = if iface == "any" { 0 } else { if_index(iface)? };
        // Protocol 0: the socket receives nothing until `bind`, so no packet bypasses the filter.
        // SAFETY: plain syscall; the descriptor is owned right away.
        let raw =
            unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(os_err("socket(AF_PACKET)", iface));
        }
        // SAFETY: `raw` is a fresh descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        if let Some(insns) = filter {
            let prog = SockFprog {
                len: insns.len() as libc::c_ushort,
                filter: insns.as_ptr(),
            };
            if setsockopt(&fd, libc::SOL_SOCKET, SO_ATTACH_FILTER, &prog) != 0 {
                return Err(os_err("SO_ATTACH_FILTER", iface));
            }
        }
        if setsockopt(&fd, SOL_PACKET, PACKET_VERSION, &TPACKET_V3) != 0 {
            return Err(os_err("PACKET_VERSION TPACKET_V3", iface));
        }
        let frame_size = 2048u32;
        let req = TpacketReq3 {
            block_size: cfg.block_size as u32,
            block_nr: cfg.block_count as u32,
            frame_size,
            frame_nr: (cfg.block_size as u32 / frame_size) * cfg.block_count as u32,
            retire_blk_tov: cfg.block_timeout_ms,
            sizeof_priv: 0,
            feature_req_word: 0,
        };
        if setsockopt(&fd, SOL_PACKET, PACKET_RX_RING, &req) != 0 {
            return Err(os_err("PACKET_RX_RING", iface));
        }
        let len = cfg.block_size * cfg.block_count;
        // SAFETY: maps the ring the kernel just allocated for this socket.
        let map = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if map == libc::MAP_FAILED {
            return Err(os_err("mmap of the ring", iface));
        }
        let ring = Ring {
            fd,
            map: map.cast(),
            block_size: cfg.block_size,
            block_count: cfg.block_count,
            lo_index: if_index("lo").unwrap_or(-1),
        };
        // SAFETY: zeroed sockaddr_ll with the fields bind needs.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = ETH_P_ALL.to_be();
        sll.sll_ifindex = ifindex;
        // SAFETY: `sll` is a valid sockaddr_ll of the size passed.
        let rc = unsafe {
            libc::bind(
                ring.fd.as_raw_fd(),
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(os_err("bind", iface));
        }
        if cfg.promiscuous {
            let mreq = PacketMreq {
                ifindex,
                kind: PACKET_MR_PROMISC,
                alen: 0,
                address: [0; 8],
            };
            if setsockopt(&ring.fd, SOL_PACKET, PACKET_ADD_MEMBERSHIP, &mreq) != 0 {
                return Err(os_err("promiscuous mode", iface));
            }
        }
        Ok(ring)
    }

    /// Adds the kernel's counters since the last read (reading resets them).
    fn read_kernel_stats(&self, stats: &CaptureStats) {
        let mut s = TpacketStatsV3::default();
        let mut len = std::mem::size_of::<TpacketStatsV3>() as libc::socklen_t;
        // SAFETY: `s` is writable for `len` bytes.
        let rc = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                SOL_PACKET,
                PACKET_STATISTICS,
                (&mut s as *mut TpacketStatsV3).cast(),
                &mut len,
            )
        };
        if rc == 0 {
            stats
                .kernel_packets
                .fetch_add(u64::from(s.packets), Ordering::Relaxed);
            stats
                .kernel_drops
                .fetch_add(u64::from(s.drops), Ordering::Relaxed);
            stats
                .kernel_freezes
                .fetch_add(u64::from(s.freeze_q_cnt), Ordering::Relaxed);
        }
    }

    fn block(&self, i: usize) -> *mut u8 {
        // SAFETY: `i < block_count`, so the offset stays inside the mapping.
        unsafe { self.map.add(i * self.block_size) }
    }

    /// The block's status word, shared with the kernel.
    fn status(&self, i: usize) -> &AtomicU32 {
        // SAFETY: `block_status` is the aligned u32 at offset 8 of `struct tpacket_block_desc`.
        unsafe { &*(self.block(i).add(8) as *const AtomicU32) }
    }

    fn wait(&self) {
        let mut p = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN | libc::POLLERR,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        unsafe {
            libc::poll(&mut p, 1, POLL_MS);
        }
    }
}

fn read_u32(p: *const u8, off: usize) -> u32 {
    // SAFETY: callers pass offsets inside a block the kernel handed to user space.
    unsafe { std::ptr::read_unaligned(p.add(off) as *const u32) }
}

fn read_u16(p: *const u8, off: usize) -> u16 {
    // SAFETY: as `read_u32`.
    unsafe { std::ptr::read_unaligned(p.add(off) as *const u16) }
}

/// A flow's identity for shedding: the two endpoints in canonical order and the transport.
fn flow_hash(tcp: bool, a: (IpAddr, u16), b: (IpAddr, u16)) -> u64 {
    let (x, y) = if a <= b { (a, b) } else { (b, a) };
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (tcp, x, y).hash(&mut h);
    h.finish()
}

/// What the capture thread decides per packet.
struct Shedder {
    limit: usize,
    exclude: Vec<u16>,
    shed: HashMap<u64, Instant>,
    last_purge: Instant,
}

enum Verdict {
    Keep,
    Exclude,
    Shed,
}

impl Shedder {
    fn verdict(&mut self, frame: &[u8], depth: usize, stats: &CaptureStats) -> Verdict {
        let Decoded::Segment(seg) = decode(super::LinkType::LinuxSll, frame) else {
            // Not a TCP/UDP packet (ARP, ICMP, fragments): no stream to keep whole.
            return if depth > self.limit {
                Verdict::Shed
            } else {
                Verdict::Keep
            };
        };
        if self
            .exclude
            .iter()
            .any(|p| *p == seg.src.1 || *p == seg.dst.1)
        {
            return Verdict::Exclude;
        }
        let (tcp, new_conn) = match seg.transport {
            Transport::Tcp { syn, ack, .. } => (true, syn && !ack),
            Transport::Udp => (false, false),
        };
        let h = flow_hash(tcp, seg.src, seg.dst);
        let now = Instant::now();
        if let Some(seen) = self.shed.get_mut(&h) {
            // A new connection on a shed 4-tuple starts afresh once there is room again.
            if !(new_conn && depth < self.limit / 2) {
                *seen = now;
                return Verdict::Shed;
            }
            self.shed.remove(&h);
        }
        if depth > self.limit || (new_conn && depth > self.limit / 2) {
            if self.shed.len() >= MAX_SHED_FLOWS {
                self.shed.clear();
            }
            self.shed.insert(h, now);
            stats.shed_streams.fetch_add(1, Ordering::Relaxed);
            return Verdict::Shed;
        }
        Verdict::Keep
    }

    fn purge(&mut self) {
        if self.last_purge.elapsed() < Duration::from_secs(10) {
            return;
        }
        self.last_purge = Instant::now();
        self.shed.retain(|_, seen| seen.elapsed() < SHED_IDLE);
    }
}

/// Enters the network namespace `path` on the calling thread only.
fn enter_netns(path: &std::path::Path) -> Result<(), AgentError> {
    let f = std::fs::File::open(path)
        .map_err(|e| AgentError::Capture(format!("network namespace {}: {e}", path.display())))?;
    // SAFETY: a valid namespace descriptor; setns changes only this thread's namespace.
    if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(os_err("setns", &path.display().to_string()));
    }
    Ok(())
}

impl LiveCapture {
    /// Opens every socket (errors — no permission, unknown interface, bad filter — are
    /// reported now) and starts one capture thread per socket.
    pub fn start(cfg: LiveConfig) -> Result<LiveCapture, AgentError> {
        if cfg.interfaces.is_empty() {
            return Err(AgentError::Capture("no interface to capture on".into()));
        }
        if cfg.interfaces.len() > 1 && cfg.interfaces.iter().any(|i| i == "any") {
            return Err(AgentError::Capture(
                "`any` already captures every interface; give it alone".into(),
            ));
        }
        if cfg.promiscuous && cfg.interfaces.iter().any(|i| i == "any") {
            return Err(AgentError::Capture(
                "promiscuous mode needs named interfaces (it is not supported on `any`)".into(),
            ));
        }
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as usize;
        if cfg.block_size < 65_536 + 4096 || !cfg.block_size.is_multiple_of(page) {
            return Err(AgentError::Capture(format!(
                "ring block size {} must be a multiple of the page size ({page}) and above 68 KiB",
                cfg.block_size
            )));
        }
        if cfg.block_count < 2 {
            return Err(AgentError::Capture(
                "the ring needs at least 2 blocks".into(),
            ));
        }
        let filter = cfg.filter.as_deref().map(bpf::compile).transpose()?;
        let stats = Arc::new(CaptureStats::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel();
        let mut threads = Vec::new();
        for iface in &cfg.interfaces {
            // The socket is opened by its capture thread, so that with `netns` only that thread
            // enters the namespace; the result comes back before `start` returns.
            let (ready_tx, ready_rx) = mpsc::sync_channel::<Result<(), AgentError>>(1);
            let (cfg2, iface2, filter2) = (cfg.clone(), iface.clone(), filter.clone());
            let (stats2, stop2, tx2) = (stats.clone(), stop.clone(), tx.clone());
            let t = std::thread::Builder::new()
                .name(format!("capture-{iface}"))
                .spawn(move || {
                    let opened = cfg2
                        .netns
                        .as_deref()
                        .map_or(Ok(()), enter_netns)
                        .and_then(|()| Ring::open(&iface2, &cfg2, filter2.as_deref()));
                    let ring = match opened {
                        Ok(r) => {
                            let _ = ready_tx.send(Ok(()));
                            r
                        }
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return;
                        }
                    };
                    run_ring(ring, &cfg2, &stats2, &stop2, &tx2);
                })
                .map_err(|e| AgentError::Capture(format!("cannot start a thread: {e}")))?;
            let ready = ready_rx
                .recv()
                .unwrap_or_else(|_| Err(AgentError::Capture("capture thread died".into())));
            threads.push(t);
            if let Err(e) = ready {
                stop.store(true, Ordering::Relaxed);
                return Err(e);
            }
            tracing::info!(interface = %iface, filter = cfg.filter.as_deref().unwrap_or(""),
                netns = cfg.netns.as_ref().map(|p| p.display().to_string()).unwrap_or_default(),
                "live capture (AF_PACKET, TPACKET_V3) started");
        }
        Ok(LiveCapture {
            rx,
            stop,
            stats,
            threads,
        })
    }

    pub fn stats(&self) -> Arc<CaptureStats> {
        self.stats.clone()
    }

    /// Asks the capture threads to stop; [`LiveCapture::recv`] then returns what is queued and
    /// `Err(Closed)` once the threads are gone.
    pub fn stop_handle(&self) -> Arc<AtomicBool> {
        self.stop.clone()
    }

    /// The next batch, `Ok(None)` after `timeout` without one, `Err` when capture has ended.
    pub fn recv(&self, timeout: Duration) -> Result<Option<PacketBatch>, Closed> {
        match self.rx.recv_timeout(timeout) {
            Ok(b) => {
                self.stats
                    .queued_bytes
                    .fetch_sub(b.bytes(), Ordering::Relaxed);
                Ok(Some(b))
            }
            Err(mpsc::RecvTimeoutError::Timeout) => Ok(None),
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(Closed),
        }
    }
}

/// Capture has stopped and every queued batch was received.
#[derive(Debug)]
pub struct Closed;

impl Drop for LiveCapture {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// The loop of one capture thread: blocks in ring order, each turned into a batch.
fn run_ring(
    ring: Ring,
    cfg: &LiveConfig,
    stats: &CaptureStats,
    stop: &AtomicBool,
    tx: &mpsc::Sender<PacketBatch>,
) {
    let mut shed = Shedder {
        limit: cfg.queue_bytes,
        exclude: cfg.exclude_ports.clone(),
        shed: HashMap::new(),
        last_purge: Instant::now(),
    };
    let mut cur = 0usize;
    let mut last_stats = Instant::now();
    // After a stop request the ring is drained: the kernel hands over a partly filled block
    // once its timeout passes, so packets captured just before the stop are not lost.
    let mut drain_until: Option<Instant> = None;
    loop {
        if drain_until.is_none() && stop.load(Ordering::Relaxed) {
            let grace = Duration::from_millis(u64::from(cfg.block_timeout_ms) * 2 + 100);
            drain_until = Some(Instant::now() + grace);
        }
        if last_stats.elapsed() >= Duration::from_secs(1) {
            ring.read_kernel_stats(stats);
            shed.purge();
            last_stats = Instant::now();
        }
        if ring.status(cur).load(Ordering::Acquire) & TP_STATUS_USER == 0 {
            if drain_until.is_some_and(|t| Instant::now() >= t) {
                break;
            }
            ring.wait();
            continue;
        }
        let batch = read_block(&ring, cur, &mut shed, stats);
        ring.status(cur).store(TP_STATUS_KERNEL, Ordering::Release);
        cur = (cur + 1) % ring.block_count;
        if !batch.is_empty() {
            stats
                .queued_bytes
                .fetch_add(batch.bytes(), Ordering::Relaxed);
            if tx.send(batch).is_err() {
                break; // the consumer is gone
            }
        }
    }
    ring.read_kernel_stats(stats);
}

/// Copies the packets of one block out of the ring, deciding per packet.
fn read_block(ring: &Ring, i: usize, shed: &mut Shedder, stats: &CaptureStats) -> PacketBatch {
    let block = ring.block(i) as *const u8;
    let num = read_u32(block, 12) as usize;
    let mut off = read_u32(block, 16) as usize;
    let mut batch = PacketBatch {
        data: Vec::with_capacity(read_u32(block, 20) as usize + num * SLL_LEN),
        index: Vec::with_capacity(num),
    };
    let base_depth = stats.queued_bytes.load(Ordering::Relaxed);
    for _ in 0..num {
        if off == 0 || off + TPACKET3_HDRLEN + 20 > ring.block_size {
            break;
        }
        let h = block.wrapping_add(off);
        let next = read_u32(h, 0) as usize;
        let (sec, nsec) = (read_u32(h, 4), read_u32(h, 8));
        let snaplen = read_u32(h, 12) as usize;
        let mac = read_u16(h, 24) as usize;
        if off + mac + snaplen > ring.block_size {
            break; // a corrupt frame header: the rest of the block is skipped
        }
        // sockaddr_ll after the header: family(2) protocol(2) ifindex(4) hatype(2) pkttype(1)
        // halen(1) addr(8).
        let sll = h.wrapping_add(TPACKET3_HDRLEN);
        let protocol = read_u16(sll, 2);
        let ifindex = read_u32(sll, 4) as i32;
        let hatype = read_u16(sll, 8);
        // SAFETY: inside the block (checked above).
        let (pkttype, halen) = unsafe { (*sll.add(10), *sll.add(11)) };
        if !(pkttype == PACKET_OUTGOING && ifindex == ring.lo_index) {
            // SAFETY: `mac + snaplen` lies within this block (checked above).
            let payload = unsafe { std::slice::from_raw_parts(h.add(mac), snaplen) };
            stats.packets.fetch_add(1, Ordering::Relaxed);
            stats
                .bytes
                .fetch_add(payload.len() as u64, Ordering::Relaxed);
            let start = batch.data.len();
            batch
                .data
                .extend_from_slice(&u16::from(pkttype).to_be_bytes());
            batch.data.extend_from_slice(&hatype.to_be_bytes());
            batch
                .data
                .extend_from_slice(&u16::from(halen).to_be_bytes());
            // SAFETY: the 8 address bytes of the sockaddr_ll.
            batch
                .data
                .extend_from_slice(unsafe { std::slice::from_raw_parts(sll.add(12), 8) });
            // `sll_protocol` is in network order already: keep its bytes.
            batch.data.extend_from_slice(&protocol.to_ne_bytes());
            batch.data.extend_from_slice(payload);
            let frame = &batch.data[start..];
            match shed.verdict(frame, base_depth + start, stats) {
                Verdict::Keep => {
                    let ts = i64::from(sec) * 1_000_000 + i64::from(nsec / 1000);
                    batch
                        .index
                        .push((ts, start as u32, (SLL_LEN + snaplen) as u32));
                }
                Verdict::Exclude => {
                    stats.excluded_packets.fetch_add(1, Ordering::Relaxed);
                    batch.data.truncate(start);
                }
                Verdict::Shed => {
                    stats.shed_packets.fetch_add(1, Ordering::Relaxed);
                    batch.data.truncate(start);
                }
            }
        }
        if next == 0 {
            break;
        }
        off += next;
    }
    batch
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::PacketBuilder;

    fn cooked_tcp(src_port: u16, syn: bool) -> Vec<u8> {
        let mut out = vec![0, 0, 0, 1, 0, 6, 0, 0, 0, 0, 0, 0, 0, 0, 0x08, 0x00];
        let b = PacketBuilder::ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64).tcp(src_port, 80, 1, 1000);
        let b = if syn { b.syn() } else { b };
        b.write(&mut out, b"x").unwrap();
        out
    }

    #[test]
    fn sheds_whole_streams_and_new_connections_first() {
        let stats = CaptureStats::default();
        let mut s = Shedder {
            limit: 1000,
            exclude: vec![8900],
            shed: HashMap::new(),
            last_purge: Instant::now(),
        };
        let a = cooked_tcp(40000, false);
        assert!(matches!(s.verdict(&a, 0, &stats), Verdict::Keep));
        // Over the bound: this flow is shed, and stays shed when there is room again.
        assert!(matches!(s.verdict(&a, 2000, &stats), Verdict::Shed));
        assert!(matches!(s.verdict(&a, 0, &stats), Verdict::Shed));
        // Above half the bound a new connection is shed, an established one is not.
        let b = cooked_tcp(40001, true);
        assert!(matches!(s.verdict(&b, 600, &stats), Verdict::Shed));
        let c = cooked_tcp(40002, false);
        assert!(matches!(s.verdict(&c, 600, &stats), Verdict::Keep));
        // A new connection on a shed 4-tuple starts afresh once the queue is short.
        let a_syn = cooked_tcp(40000, true);
        assert!(matches!(s.verdict(&a_syn, 0, &stats), Verdict::Keep));
        assert_eq!(stats.shed_streams.load(Ordering::Relaxed), 2);
        // Excluded ports, either direction.
        let own = cooked_tcp(8900, false);
        assert!(matches!(s.verdict(&own, 0, &stats), Verdict::Exclude));
    }

    #[test]
    fn bad_configurations_are_errors() {
        let e = |c: LiveConfig| LiveCapture::start(c).err().unwrap().to_string();
        let msg = e(LiveConfig {
            interfaces: vec!["any".into()],
            promiscuous: true,
            ..Default::default()
        });
        assert!(msg.contains("promiscuous"), "{msg}");
        let msg = e(LiveConfig {
            block_size: 4096,
            ..Default::default()
        });
        assert!(msg.contains("block size"), "{msg}");
        let msg = e(LiveConfig {
            interfaces: vec!["no-such-if0".into()],
            ..Default::default()
        });
        assert!(
            msg.contains("no interface") || msg.contains("root or CAP_NET_RAW"),
            "{msg}"
        );
    }
}
