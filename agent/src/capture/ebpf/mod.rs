//! eBPF TLS plaintext capture: uprobes on OpenSSL's `SSL_{read,write}[_ex]` (see `tls.bpf.c`)
//! deliver the plaintext of every successful call through a BPF ring buffer, together with the
//! socket addresses the kernel side resolved while the call was inside `read`/`write`/`send*`.
//!
//! Uprobes are per inode, so attaching once to a library *file* covers every process that maps
//! it, including ones started later; [`TlsCapture::rescan`] picks up new library files (e.g. a
//! new container's `/proc/PID/root/.../libssl.so.3`). Statically linked TLS stacks (BoringSSL in
//! Chrome/Envoy, Go's crypto/tls, rustls) are not covered.

mod libs;
mod record;
mod sockets;
mod streams;

use std::{
    collections::HashSet,
    error::Error as StdError,
    io,
    os::fd::AsRawFd,
    path::PathBuf,
    time::{Duration, Instant},
};

use aya::{
    maps::{MapData, PerCpuArray, RingBuf},
    programs::{
        uprobe::{UProbeError, UProbeScope},
        ProgramError, RawTracePoint, UProbe,
    },
    Ebpf, EbpfLoader,
};

pub use record::TlsEvent;
pub use sockets::{
    node_ips, CgroupIdentity, SocketClaimStats, SocketClaims, SocketEvent, SocketKind,
};
pub use streams::{TlsStreamStats, TlsStreams};

use crate::AgentError;
use record::{Assembler, Clock};

/// The compiled probes (build.rs runs clang on `tls.bpf.c`).
static BPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/tls.bpf.o"));

/// Per-call capture ceiling of the kernel side (`CHUNK * MAX_CHUNKS` in `tls.bpf.c`).
pub const MAX_CAPTURE_LIMIT: usize = 16384 * 4;

/// How often `poll` looks for new libssl files when the library list is discovered.
const RESCAN_EVERY: Duration = Duration::from_secs(5);

/// Longest time a record can sit in a quiet ring buffer before `poll` sees it.
pub const POLL_TICK: Duration = Duration::from_millis(10);

/// (program name, symbol). Return probes are attached first so an entry probe never runs
/// without its partner.
const PROBES: [(&str, &str); 9] = [
    ("ssl_write_leave", "SSL_write"),
    ("ssl_write_enter", "SSL_write"),
    ("ssl_read_leave", "SSL_read"),
    ("ssl_read_enter", "SSL_read"),
    ("ssl_write_ex_leave", "SSL_write_ex"),
    ("ssl_write_ex_enter", "SSL_write_ex"),
    ("ssl_read_ex_leave", "SSL_read_ex"),
    ("ssl_read_ex_enter", "SSL_read_ex"),
    ("ssl_free_enter", "SSL_free"),
];

/// What to attach to and how much plaintext to keep per call.
#[derive(Debug, Clone)]
pub struct TlsConfig {
    /// libssl files to probe; empty = discover (distribution default paths plus every
    /// `libssl*.so*` mapped in `/proc/*/maps`, re-scanned every few seconds).
    pub libssl: Vec<PathBuf>,
    /// Bytes kept per SSL call (the original length is reported too); capped at
    /// [`MAX_CAPTURE_LIMIT`].
    pub max_capture: usize,
    /// How socket addresses are found (tests force each path; the agent keeps `Auto`).
    pub addr_hook: AddrHook,
    /// Also report TCP connect/listen/close of every process (see [`TlsCapture::drain_sockets`]),
    /// so AF_PACKET flows can be named after the process's pod.
    pub sockets: bool,
}

impl Default for TlsConfig {
    fn default() -> Self {
        Self {
            libssl: Vec::new(),
            max_capture: 16384,
            addr_hook: AddrHook::Auto,
            sockets: false,
        }
    }
}

/// Kernel hook that reads the socket addresses while a thread is inside an SSL call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddrHook {
    /// `SockTracepoints`, or `SysEnter` on kernels without them (< 6.4).
    Auto,
    /// raw tracepoints `sock:sock_send_length`/`sock_recv_length`: only socket I/O pays; no fd.
    SockTracepoints,
    /// raw tracepoint `sys_enter`: every syscall on the host pays ~130 ns; also yields the fd.
    SysEnter,
}

/// Counters for the agent's metrics.
#[derive(Debug, Clone, Default)]
pub struct TlsStats {
    /// Events delivered by `poll`.
    pub events: u64,
    /// Plaintext bytes delivered (after truncation).
    pub bytes: u64,
    /// Ring-buffer records the kernel could not queue (consumer too slow): data lost.
    pub ringbuf_drops: u64,
    /// Calls whose user buffer could not be read by the probe (e.g. paged out).
    pub read_failures: u64,
    /// Events delivered with missing chunks (a chunk was dropped).
    pub incomplete_events: u64,
    /// Events without known socket addresses.
    pub unknown_address_events: u64,
    /// The address hook in use (`SockTracepoints` or `SysEnter`).
    pub addr_hook: Option<AddrHook>,
    /// Library files the probes are attached to.
    pub libraries: Vec<PathBuf>,
    /// Most recent failure to attach to a discovered library (attachment goes on elsewhere).
    pub last_attach_error: Option<String>,
    /// Socket events are reported (asked for and the tracepoint attached).
    pub sockets: bool,
    /// Socket events delivered by `drain_sockets`.
    pub socket_events: u64,
    /// Socket records the kernel could not queue (their sockets stay attributed by address).
    pub socket_drops: u64,
}

/// A running capture. Single consumer: call `poll` from one thread.
pub struct TlsCapture {
    bpf: Ebpf,
    ring: RingBuf<MapData>,
    counters: PerCpuArray<MapData, u64>,
    /// Socket events, when asked for and attached.
    sockets: Option<RingBuf<MapData>>,
    cfg: TlsConfig,
    /// (dev, inode) of every library file tried, attached or not: a file that failed half-way
    /// is not retried, since a retry would duplicate the probes that did attach.
    tried: HashSet<(u64, u64)>,
    clock: Clock,
    asm: Assembler,
    stats: TlsStats,
    last_scan: Instant,
}

impl TlsCapture {
    /// Loads the probes and attaches them to every configured or discovered libssl.
    pub fn start(cfg: TlsConfig) -> Result<TlsCapture, AgentError> {
        preflight()?;
        // Kernels before 5.11 charge BPF maps to RLIMIT_MEMLOCK (8 MiB ring); later ones ignore it.
        let unlimited = libc::rlimit {
            rlim_cur: libc::RLIM_INFINITY,
            rlim_max: libc::RLIM_INFINITY,
        };
        // SAFETY: valid pointer to an initialised rlimit; failure is harmless (checked at load).
        unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &unlimited) };
        let max_capture = cfg.max_capture.clamp(1, MAX_CAPTURE_LIMIT) as u32;
        let mut bpf = EbpfLoader::new()
            .override_global("max_capture", &max_capture, true)
            .load(BPF_OBJECT)
            .map_err(|e| classify("loading the eBPF object", &e))?;
        for (name, _) in PROBES {
            let prog: &mut UProbe = program(&mut bpf, name)?;
            prog.load().map_err(|e| program_error(name, e))?;
        }
        let hook = attach_addr_hook(&mut bpf, cfg.addr_hook)?;

        let ring = bpf
            .take_map("events")
            .ok_or_else(|| fail("map `events` missing"))?;
        let ring = RingBuf::try_from(ring).map_err(|e| classify("opening ring buffer", &e))?;
        let counters = bpf
            .take_map("counters")
            .ok_or_else(|| fail("map `counters` missing"))?;
        let counters =
            PerCpuArray::try_from(counters).map_err(|e| classify("opening counters", &e))?;

        let sockets = if cfg.sockets {
            match attach_sockets(&mut bpf) {
                Ok(r) => Some(r),
                Err(e) => {
                    tracing::warn!(error = %e, "eBPF socket events unavailable: AF_PACKET flows are attributed by address only");
                    None
                }
            }
        } else {
            None
        };

        let mut cap = TlsCapture {
            bpf,
            ring,
            counters,
            sockets,
            cfg,
            tried: HashSet::new(),
            clock: Clock::now(),
            asm: Assembler::default(),
            stats: TlsStats::default(),
            last_scan: Instant::now(),
        };
        let explicit = !cap.cfg.libssl.is_empty();
        let candidates = if explicit {
            cap.cfg.libssl.clone()
        } else {
            libs::discover()
        };
        let mut errors = Vec::new();
        for path in candidates {
            if let Err(e) = cap.attach_library(path) {
                errors.push(detail(&e));
            }
        }
        if cap.stats.libraries.is_empty() || (explicit && !errors.is_empty()) {
            let why = if errors.is_empty() {
                "no libssl found (searched default paths and /proc/*/maps)".to_string()
            } else {
                errors.join("; ")
            };
            return Err(AgentError::EbpfNotSupported(why));
        }
        cap.stats.last_attach_error = errors.pop();
        cap.stats.addr_hook = Some(hook);
        cap.stats.sockets = cap.sockets.is_some();
        Ok(cap)
    }

    /// Attaches to libssl files that appeared since the last scan (new processes, containers).
    /// Returns how many new library files were attached. Only meaningful in discovery mode.
    pub fn rescan(&mut self) -> usize {
        self.last_scan = Instant::now();
        let mut n = 0;
        for path in libs::discover() {
            match self.attach_library(path) {
                Ok(true) => n += 1,
                Ok(false) => {}
                Err(e) => self.stats.last_attach_error = Some(detail(&e)),
            }
        }
        n
    }

    /// Waits up to `timeout` for TLS events and appends all that are ready to `out`.
    /// Returns as soon as at least one event is there; the kernel side only wakes us when data
    /// piles up, so a quiet ring is checked every [`POLL_TICK`] (the added latency bound).
    pub fn poll(&mut self, timeout: Duration, out: &mut Vec<TlsEvent>) -> Result<(), AgentError> {
        if self.cfg.libssl.is_empty() && self.last_scan.elapsed() >= RESCAN_EVERY {
            self.rescan();
        }
        let deadline = Instant::now() + timeout;
        let before = out.len();
        loop {
            self.drain(out);
            let left = deadline.saturating_duration_since(Instant::now());
            if out.len() > before || left.is_zero() {
                return Ok(());
            }
            let mut pfd = libc::pollfd {
                fd: self.ring.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            let ms = left.min(POLL_TICK).as_millis().max(1) as i32;
            // SAFETY: one valid pollfd, count 1.
            if unsafe { libc::poll(&mut pfd, 1, ms) } < 0 {
                let err = io::Error::last_os_error();
                if err.kind() != io::ErrorKind::Interrupted {
                    return Err(AgentError::Ebpf(format!("poll on ring buffer: {err}")));
                }
            }
        }
    }

    /// Counters; the kernel-side drop counters are read on each call.
    pub fn stats(&self) -> TlsStats {
        let mut s = self.stats.clone();
        let sum = |i: u32| -> u64 {
            self.counters
                .get(&i, 0)
                .map(|v| v.iter().copied().sum())
                .unwrap_or(0)
        };
        s.ringbuf_drops = sum(0);
        s.read_failures = sum(1);
        s.socket_drops = sum(2);
        s.incomplete_events = self.asm.incomplete;
        s
    }

    /// Appends the socket events queued so far (none unless [`TlsConfig::sockets`] and
    /// attached). Call it after `poll`, which waits for the TLS ring only.
    pub fn drain_sockets(&mut self, out: &mut Vec<SocketEvent>) {
        let Some(ring) = &mut self.sockets else {
            return;
        };
        while let Some(item) = ring.next() {
            if let Some(ev) = sockets::parse(&item) {
                out.push(ev);
                self.stats.socket_events += 1;
            }
        }
    }

    fn drain(&mut self, out: &mut Vec<TlsEvent>) {
        self.clock.refresh_if_stale();
        let before = out.len();
        while let Some(item) = self.ring.next() {
            self.asm.push(&item, &self.clock, out);
        }
        self.asm.flush_stale(&self.clock, out);
        for ev in &out[before..] {
            self.stats.events += 1;
            self.stats.bytes += ev.data.len() as u64;
            if ev.peer.is_none() {
                self.stats.unknown_address_events += 1;
            }
        }
    }

    /// Attaches all probes to one library file; Ok(false) if that file was tried before.
    fn attach_library(&mut self, path: PathBuf) -> Result<bool, AgentError> {
        let id = libs::file_id(&path)
            .map_err(|e| AgentError::EbpfNotSupported(format!("libssl {}: {e}", path.display())))?;
        if !self.tried.insert(id) {
            return Ok(false);
        }
        for (name, sym) in PROBES {
            let prog: &mut UProbe = program(&mut self.bpf, name)?;
            match prog.attach(sym, &path, UProbeScope::AllProcesses) {
                Ok(_) => {}
                // OpenSSL < 1.1.1 has no _ex variants: probe what exists.
                Err(ProgramError::UProbeError(UProbeError::SymbolError { .. }))
                    if sym.ends_with("_ex") => {}
                Err(ProgramError::UProbeError(UProbeError::SymbolError { .. })) => {
                    return Err(AgentError::EbpfNotSupported(format!(
                        "{} does not export {sym} (not OpenSSL's libssl?)",
                        path.display()
                    )));
                }
                Err(e) => {
                    // Links stay attached to the other probes' programs until drop; harmless
                    // for a file that fails half-way (entry probes pair with return probes).
                    return Err(classify(
                        &format!("attaching {name} to {}:{sym}", path.display()),
                        &e,
                    ));
                }
            }
        }
        self.stats.libraries.push(path);
        Ok(true)
    }
}

/// Loads and attaches the address hook; `Auto` falls back from the socket tracepoints to
/// sys_enter. A half-attached first choice is harmless: both hooks only fill in addresses.
fn attach_addr_hook(bpf: &mut Ebpf, want: AddrHook) -> Result<AddrHook, AgentError> {
    if want != AddrHook::SysEnter {
        let sock = [
            ("sock_send", "sock_send_length"),
            ("sock_recv", "sock_recv_length"),
        ];
        match attach_raw_tps(bpf, &sock) {
            Ok(()) => return Ok(AddrHook::SockTracepoints),
            Err(e) if want == AddrHook::SockTracepoints => return Err(e),
            Err(_) => {} // kernel < 6.4: no such tracepoints
        }
    }
    attach_raw_tps(bpf, &[("sys_enter", "sys_enter")])?;
    Ok(AddrHook::SysEnter)
}

/// The socket state tracepoint and its ring buffer.
fn attach_sockets(bpf: &mut Ebpf) -> Result<RingBuf<MapData>, AgentError> {
    attach_raw_tps(bpf, &[("sock_state", "inet_sock_set_state")])?;
    let ring = bpf
        .take_map("sockets")
        .ok_or_else(|| fail("map `sockets` missing"))?;
    RingBuf::try_from(ring).map_err(|e| classify("opening socket ring buffer", &e))
}

fn attach_raw_tps(bpf: &mut Ebpf, tps: &[(&str, &str)]) -> Result<(), AgentError> {
    for &(name, tp_name) in tps {
        let tp: &mut RawTracePoint = program(bpf, name)?;
        tp.load().map_err(|e| program_error(name, e))?;
        tp.attach(tp_name)
            .map_err(|e| classify(&format!("attaching raw tracepoint {tp_name}"), &e))?;
    }
    Ok(())
}

/// Checks what loading needs, so the common "cannot work here" cases get a precise message.
fn preflight() -> Result<(), AgentError> {
    if !cfg!(target_arch = "x86_64") {
        return Err(AgentError::EbpfNotSupported(
            "probes are written for x86_64 only".into(),
        ));
    }
    let caps = libs::effective_caps()
        .map_err(|e| AgentError::Ebpf(format!("reading /proc/self/status: {e}")))?;
    const CAP_SYS_ADMIN: u32 = 21;
    const CAP_PERFMON: u32 = 38;
    const CAP_BPF: u32 = 39;
    let has = |c: u32| caps & (1u64 << c) != 0;
    if !(has(CAP_SYS_ADMIN) || (has(CAP_BPF) && has(CAP_PERFMON))) {
        return Err(AgentError::EbpfNotSupported(format!(
            "needs CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN); effective capabilities are {caps:#x}"
        )));
    }
    for (path, what) in [
        (
            "/sys/kernel/btf/vmlinux",
            "kernel BTF (CONFIG_DEBUG_INFO_BTF) for CO-RE",
        ),
        (
            "/sys/bus/event_source/devices/uprobe/type",
            "the uprobe PMU (CONFIG_UPROBES)",
        ),
    ] {
        if !std::path::Path::new(path).exists() {
            return Err(AgentError::EbpfNotSupported(format!(
                "{path} missing: needs {what}"
            )));
        }
    }
    Ok(())
}

fn program<'a, T>(bpf: &'a mut Ebpf, name: &str) -> Result<&'a mut T, AgentError>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = ProgramError>,
{
    let prog = bpf
        .program_mut(name)
        .ok_or_else(|| fail(&format!("program {name} missing")))?;
    prog.try_into()
        .map_err(|e| fail(&format!("program {name}: {e}")))
}

fn fail(msg: &str) -> AgentError {
    AgentError::Ebpf(msg.to_string())
}

/// A program the kernel refuses (verifier, missing helper) means "not supported here".
fn program_error(name: &str, e: ProgramError) -> AgentError {
    match e {
        ProgramError::LoadError {
            io_error,
            verifier_log,
        } => {
            let log = verifier_log.to_string();
            let tail: String = log.lines().rev().take(12).collect::<Vec<_>>().join(" | ");
            AgentError::EbpfNotSupported(format!(
                "kernel rejected program {name} ({io_error}); verifier (last lines, reversed): {tail}"
            ))
        }
        other => classify(&format!("loading program {name}"), &other),
    }
}

/// Permission/feature errnos anywhere in the chain make it `NotSupported`.
fn classify(context: &str, err: &(dyn StdError + 'static)) -> AgentError {
    let mut text = format!("{context}: {err}");
    let mut cur: Option<&(dyn StdError + 'static)> = Some(err);
    let mut unsupported = false;
    while let Some(e) = cur {
        if let Some(io) = e.downcast_ref::<io::Error>() {
            unsupported |= matches!(
                io.raw_os_error(),
                Some(libc::EPERM | libc::EACCES | libc::ENOSYS | libc::EOPNOTSUPP | libc::ENOENT)
            );
        }
        if !std::ptr::eq(e, err) {
            text.push_str(&format!(": {e}"));
        }
        cur = e.source();
    }
    if unsupported {
        AgentError::EbpfNotSupported(text)
    } else {
        AgentError::Ebpf(text)
    }
}

/// The agent moves the capture onto its own thread.
const _: () = {
    const fn assert_send<T: Send>() {}
    assert_send::<TlsCapture>();
};

/// An error's message without its variant's prefix (collected per library).
fn detail(e: &AgentError) -> String {
    match e {
        AgentError::EbpfNotSupported(m) | AgentError::Ebpf(m) => m.clone(),
        other => other.to_string(),
    }
}
