//! Reverse DNS names for addresses no other source knows (`--reverse-dns`, outside
//! Kubernetes). Lookups never block dissection: a miss queues the address for a background
//! thread (the system resolver, `getnameinfo`) and the flow keeps its bare IP; flows that start
//! after the answer get the name. Answers are kept for [`TTL`], failures for [`NEGATIVE_TTL`].

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::IdentityCounters;

/// How long a name is used before it is looked up again.
pub const TTL: Duration = Duration::from_secs(600);
/// How long an address without a name is not asked about again.
pub const NEGATIVE_TTL: Duration = Duration::from_secs(120);
/// Addresses remembered at most (the cache is cleared when it is full).
const MAX_CACHED: usize = 65_536;
/// Lookups waiting at most; more misses are counted as `dropped`, not queued.
const MAX_PENDING: usize = 1_024;

#[derive(Debug, Clone)]
enum Slot {
    /// Queued or being looked up.
    Pending,
    Known(Option<String>, Instant),
}

/// A reverse DNS cache filled by one background thread.
#[derive(Debug)]
pub struct ReverseDns {
    cache: Arc<Mutex<HashMap<IpAddr, Slot>>>,
    queue: SyncSender<IpAddr>,
    counters: Arc<IdentityCounters>,
}

impl ReverseDns {
    /// Starts the lookup thread, counting into `counters`; it ends when the `ReverseDns` is
    /// dropped.
    pub fn start(counters: Arc<IdentityCounters>) -> Self {
        let cache: Arc<Mutex<HashMap<IpAddr, Slot>>> = Arc::default();
        let (queue, rx) = sync_channel::<IpAddr>(MAX_PENDING);
        let (c, n) = (cache.clone(), counters.clone());
        let spawned = std::thread::Builder::new()
            .name("wiretrail-rdns".into())
            .spawn(move || {
                for ip in rx {
                    n.rdns_lookups.fetch_add(1, Ordering::Relaxed);
                    let name = reverse_lookup(ip);
                    if name.is_some() {
                        n.rdns_names.fetch_add(1, Ordering::Relaxed);
                    }
                    if let Ok(mut m) = c.lock() {
                        m.insert(ip, Slot::Known(name, Instant::now()));
                    }
                }
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "reverse DNS thread not started; names stay unresolved");
        }
        ReverseDns {
            cache,
            queue,
            counters,
        }
    }

    /// The name of `ip` if it is known now; otherwise queues a lookup and answers `None`.
    pub fn name(&self, ip: &IpAddr) -> Option<String> {
        let Ok(mut m) = self.cache.lock() else {
            return None;
        };
        match m.get(ip) {
            Some(Slot::Pending) => return None,
            Some(Slot::Known(name, at)) => {
                let ttl = if name.is_some() { TTL } else { NEGATIVE_TTL };
                if at.elapsed() < ttl {
                    return name.clone();
                }
            }
            None => {}
        }
        if m.len() >= MAX_CACHED {
            m.clear();
        }
        match self.queue.try_send(*ip) {
            Ok(()) => {
                m.insert(*ip, Slot::Pending);
            }
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.counters.rdns_dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
        None
    }
}

/// `getnameinfo(NI_NAMEREQD)`: the system resolver's name for `ip` (hosts file, DNS PTR).
fn reverse_lookup(ip: IpAddr) -> Option<String> {
    let mut host = [0 as libc::c_char; 1025];
    // SAFETY: the sockaddr is fully initialised for its family and its size is passed; `host`
    // is a writable buffer of the length given, NUL-terminated by getnameinfo on success.
    let rc = unsafe {
        match ip {
            IpAddr::V4(v4) => {
                let mut sa: libc::sockaddr_in = std::mem::zeroed();
                sa.sin_family = libc::AF_INET as libc::sa_family_t;
                sa.sin_addr.s_addr = u32::from_ne_bytes(v4.octets());
                libc::getnameinfo(
                    &sa as *const _ as *const libc::sockaddr,
                    std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
                    host.as_mut_ptr(),
                    host.len() as libc::socklen_t,
                    std::ptr::null_mut(),
                    0,
                    libc::NI_NAMEREQD,
                )
            }
            IpAddr::V6(v6) => {
                let mut sa: libc::sockaddr_in6 = std::mem::zeroed();
                sa.sin6_family = libc::AF_INET6 as libc::sa_family_t;
                sa.sin6_addr.s6_addr = v6.octets();
                libc::getnameinfo(
                    &sa as *const _ as *const libc::sockaddr,
                    std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t,
                    host.as_mut_ptr(),
                    host.len() as libc::socklen_t,
                    std::ptr::null_mut(),
                    0,
                    libc::NI_NAMEREQD,
                )
            }
        }
    };
    if rc != 0 {
        return None;
    }
    // SAFETY: getnameinfo succeeded, so `host` holds a NUL-terminated string.
    let name = unsafe { std::ffi::CStr::from_ptr(host.as_ptr()) };
    let name = name.to_string_lossy().trim_end_matches('.').to_string();
    (!name.is_empty()).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_gets_its_hosts_file_name_without_blocking() {
        let hosts = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
        let want = hosts.lines().find_map(|l| {
            let mut f = l.split_whitespace();
            (f.next() == Some("127.0.0.1")).then(|| f.next().map(str::to_string))?
        });
        let Some(want) = want else {
            println!("skipped: /etc/hosts names no 127.0.0.1");
            return;
        };
        let r = ReverseDns::start(Arc::default());
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        assert_eq!(
            r.name(&ip),
            None,
            "the first lookup is queued, not waited for"
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        let got = loop {
            if let Some(n) = r.name(&ip) {
                break n;
            }
            assert!(Instant::now() < deadline, "no reverse name for 127.0.0.1");
            std::thread::sleep(Duration::from_millis(10));
        };
        assert_eq!(got, want);
        assert_eq!(r.counters.rdns_lookups.load(Ordering::Relaxed), 1);
    }
}
