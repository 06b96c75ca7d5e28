//! Who an address belongs to, resolved when the traffic is captured and stored with the
//! entry (IPs are reused by new pods; resolving at query time would rewrite history).
//!
//! [`IdentityResolver`] answers `resolve(ip, ts_us)` from, in order: the Kubernetes watchers'
//! [`IdentityHistory`] (validity intervals, see [`kubernetes`]), the static `--identities`
//! [`IdentityMap`] (valid at every time), else an identity named after the IP (counted as a
//! miss). [`PodFilter`] selects the pods whose traffic is dissected at all.

pub mod cgroup;
mod file;
mod history;
pub mod kubernetes;
mod rdns;
mod target;

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use wiretrail_proto::Identity;

pub use file::IdentityMap;
pub use history::{IdentityHistory, OPEN};
pub use rdns::ReverseDns;
pub use target::PodFilter;

/// Counters of the identity stage, shared by the resolver and the watchers.
#[derive(Debug, Default)]
pub struct IdentityCounters {
    /// Resolutions that found no identity (the entry carries the bare IP).
    pub misses: AtomicU64,
    /// Resolutions that found one.
    pub hits: AtomicU64,
    /// Watch stream errors (connection lost, 410 Gone, bad responses); each is retried.
    pub watch_errors: AtomicU64,
    /// Watch events applied (added, modified, deleted, listed).
    pub watch_events: AtomicU64,
    /// Full lists (the first one, and each relist after an error or 410 Gone).
    pub relists: AtomicU64,
    /// Reverse DNS lookups made (`--reverse-dns`), those that found a name, and misses not
    /// queued because too many lookups were waiting.
    pub rdns_lookups: AtomicU64,
    pub rdns_names: AtomicU64,
    pub rdns_dropped: AtomicU64,
}

/// A copy of [`IdentityCounters`] for metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct IdentityStats {
    pub misses: u64,
    pub hits: u64,
    pub watch_errors: u64,
    pub watch_events: u64,
    pub relists: u64,
}

/// IP and capture time → identity. Cloning shares the sources and counters.
#[derive(Debug, Clone, Default)]
pub struct IdentityResolver {
    live: Option<Arc<IdentityHistory>>,
    file: Arc<IdentityMap>,
    rdns: Option<Arc<ReverseDns>>,
    counters: Arc<IdentityCounters>,
    /// The watchers that keep `live` current run as long as a resolver needs them.
    _watchers: Option<Arc<kubernetes::Tasks>>,
}

impl From<IdentityMap> for IdentityResolver {
    fn from(map: IdentityMap) -> Self {
        IdentityResolver::default().with_static(map)
    }
}

impl IdentityResolver {
    /// A resolver over a history the watchers keep current, counting into `counters`.
    pub fn live(history: Arc<IdentityHistory>, counters: Arc<IdentityCounters>) -> Self {
        IdentityResolver {
            live: Some(history),
            file: Arc::default(),
            rdns: None,
            counters,
            _watchers: None,
        }
    }

    fn keeping(mut self, tasks: Arc<kubernetes::Tasks>) -> Self {
        self._watchers = Some(tasks);
        self
    }

    /// Adds the static map of `--identities FILE`, consulted after the live history.
    pub fn with_static(mut self, map: IdentityMap) -> Self {
        self.file = Arc::new(map);
        self
    }

    /// Adds reverse DNS names for addresses the other sources do not know (looked up in the
    /// background; see [`ReverseDns`]).
    pub fn with_reverse_dns(mut self) -> Self {
        self.rdns = Some(Arc::new(ReverseDns::start(self.counters.clone())));
        self
    }

    /// The running pod of this node with this UID (Kubernetes watchers only).
    pub fn pod(&self, uid: &str) -> Option<Identity> {
        self.live.as_ref()?.pod(uid).map(|i| (*i).clone())
    }

    /// True when Kubernetes watchers feed this resolver.
    pub fn watches_kubernetes(&self) -> bool {
        self.live.is_some()
    }

    /// The identity `ip` had at `ts_us`, if any source knows it.
    pub fn lookup(&self, ip: &IpAddr, ts_us: i64) -> Option<Identity> {
        let found = match self.live.as_ref().and_then(|h| h.lookup(ip, ts_us)) {
            Some(id) => Some((*id).clone()),
            None => self.file.get(ip).cloned().or_else(|| {
                let name = self.rdns.as_ref()?.name(ip)?;
                Some(Identity {
                    name,
                    ..Default::default()
                })
            }),
        };
        let c = if found.is_some() {
            &self.counters.hits
        } else {
            &self.counters.misses
        };
        c.fetch_add(1, Ordering::Relaxed);
        found
    }

    /// The identity `ip` had at `ts_us`; unknown addresses get one named after the IP.
    pub fn resolve(&self, ip: &IpAddr, ts_us: i64) -> Identity {
        self.lookup(ip, ts_us).unwrap_or_else(|| Identity {
            name: ip.to_string(),
            ..Default::default()
        })
    }

    pub fn counters(&self) -> &Arc<IdentityCounters> {
        &self.counters
    }

    pub fn stats(&self) -> IdentityStats {
        let c = &self.counters;
        IdentityStats {
            misses: c.misses.load(Ordering::Relaxed),
            hits: c.hits.load(Ordering::Relaxed),
            watch_errors: c.watch_errors.load(Ordering::Relaxed),
            watch_events: c.watch_events.load(Ordering::Relaxed),
            relists: c.relists.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_history_first_then_the_file_then_the_ip() {
        let h = Arc::new(IdentityHistory::new());
        let ip: IpAddr = "10.1.0.9".parse().unwrap();
        h.open(
            ip,
            "pod/u1",
            Identity {
                name: "web-0".into(),
                ..Default::default()
            },
            100,
            100,
        );
        let r = IdentityResolver::live(h, Arc::default());
        assert_eq!(r.resolve(&ip, 150).name, "web-0");
        assert_eq!(r.resolve(&ip, 50).name, "10.1.0.9");
        assert_eq!(r.stats().misses, 1);
        assert_eq!(r.stats().hits, 1);
    }
}
