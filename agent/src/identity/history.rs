//! Who held an address when: per IP, the identities it had with their validity intervals
//! `[from, to)` in µs since the epoch (the capture clock). Pod IPs are reused; a flow is
//! resolved with its own capture time, so a new owner never rewrites what an old one sent.
//!
//! Written by the Kubernetes watchers (one writer task per resource), read by the pipeline once
//! per address per flow: a read lock and a short scan of the address's few intervals.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, RwLock};

use wiretrail_proto::Identity;

/// Closed intervals kept per address (the newest); older ones are forgotten.
const MAX_SPANS_PER_IP: usize = 8;
/// Closed intervals that ended longer ago than this are forgotten (capture lags seconds).
const KEEP_CLOSED_US: i64 = 3_600_000_000;

/// Still valid (no end seen yet).
pub const OPEN: i64 = i64::MAX;

#[derive(Debug, Clone)]
struct Span {
    /// What owns the address: `pod/<uid>`, `service/<ns>/<name>`, `node/<name>`.
    owner: Arc<str>,
    identity: Arc<Identity>,
    from: i64,
    to: i64,
}

/// IP → identities over time, and the pods of this node by UID. Cheap to share (`Arc`).
#[derive(Debug, Default)]
pub struct IdentityHistory {
    by_ip: RwLock<HashMap<IpAddr, Vec<Span>>>,
    /// Pod UID → identity of the running pods of this node, host-network ones included: what
    /// a process's cgroup names (eBPF attribution), whatever address it uses.
    pods: RwLock<HashMap<String, Arc<Identity>>>,
}

impl IdentityHistory {
    pub fn new() -> Self {
        Self::default()
    }

    /// `owner` holds `ip` since `from` (or still holds it: then its identity is updated, e.g.
    /// when its service becomes known). Another owner still open on the address was replaced
    /// without its end being seen: it ends at `now`, the time of this observation. The new
    /// interval never starts before an earlier owner's end (creation times are coarse, and a
    /// new pod is often created before the old one is gone).
    pub fn open(&self, ip: IpAddr, owner: &str, identity: Identity, from: i64, now: i64) {
        let mut map = self.by_ip.write().unwrap_or_else(|e| e.into_inner());
        let spans = map.entry(ip).or_default();
        if let Some(last) = spans.last_mut() {
            if last.to == OPEN && &*last.owner == owner {
                if *last.identity != identity {
                    last.identity = Arc::new(identity);
                }
                return;
            }
        }
        let mut from = from;
        for s in spans.iter_mut() {
            if s.to == OPEN {
                s.to = now.max(s.from.saturating_add(1));
            }
            from = from.max(s.to);
        }
        spans.push(Span {
            owner: owner.into(),
            identity: Arc::new(identity),
            from,
            to: OPEN,
        });
        prune(spans, now);
    }

    /// Sets the service of `ip`'s open interval when it has none and is in `namespace` (a pod
    /// listed by an EndpointSlice that arrived after the pod).
    pub fn fill_service(&self, ip: &IpAddr, namespace: &str, service: &str) {
        let mut map = self.by_ip.write().unwrap_or_else(|e| e.into_inner());
        let Some(last) = map.get_mut(ip).and_then(|s| s.last_mut()) else {
            return;
        };
        if last.to == OPEN
            && last.identity.service.is_none()
            && last.identity.pod.is_some()
            && last.identity.namespace.as_deref() == Some(namespace)
        {
            let mut id = (*last.identity).clone();
            id.service = Some(service.to_string());
            last.identity = Arc::new(id);
        }
    }

    /// `owner` no longer holds `ip` from `at` on (deleted, or its pod finished).
    pub fn close(&self, ip: IpAddr, owner: &str, at: i64) {
        let mut map = self.by_ip.write().unwrap_or_else(|e| e.into_inner());
        if let Some(spans) = map.get_mut(&ip) {
            for s in spans.iter_mut() {
                if s.to == OPEN && &*s.owner == owner {
                    s.to = at.max(s.from.saturating_add(1));
                }
            }
        }
    }

    /// The pod with `uid` runs on this node as `identity` (until [`IdentityHistory::forget_pod`]).
    pub fn set_pod(&self, uid: &str, identity: Identity) {
        let mut pods = self.pods.write().unwrap_or_else(|e| e.into_inner());
        if pods.get(uid).is_none_or(|i| **i != identity) {
            pods.insert(uid.to_string(), Arc::new(identity));
        }
    }

    pub fn forget_pod(&self, uid: &str) {
        let mut pods = self.pods.write().unwrap_or_else(|e| e.into_inner());
        pods.remove(uid);
    }

    /// The running pod of this node with this UID.
    pub fn pod(&self, uid: &str) -> Option<Arc<Identity>> {
        let pods = self.pods.read().unwrap_or_else(|e| e.into_inner());
        pods.get(uid).cloned()
    }

    /// After a relist: every open interval of an owner whose name starts with `kind` and that
    /// is not in `live` ends at `at` (its Deleted event was missed while the watch was down).
    pub fn close_missing(&self, kind: &str, live: &HashSet<String>, at: i64) -> usize {
        let mut map = self.by_ip.write().unwrap_or_else(|e| e.into_inner());
        if kind == "pod/" {
            let mut pods = self.pods.write().unwrap_or_else(|e| e.into_inner());
            pods.retain(|uid, _| live.contains(&format!("pod/{uid}")));
        }
        let mut closed = 0;
        for spans in map.values_mut() {
            for s in spans.iter_mut() {
                if s.to == OPEN && s.owner.starts_with(kind) && !live.contains(&*s.owner) {
                    s.to = at.max(s.from.saturating_add(1));
                    closed += 1;
                }
            }
        }
        closed
    }

    /// The identity `ip` had at `ts_us`, if any.
    pub fn lookup(&self, ip: &IpAddr, ts_us: i64) -> Option<Arc<Identity>> {
        let map = self.by_ip.read().unwrap_or_else(|e| e.into_inner());
        let spans = map.get(ip)?;
        spans
            .iter()
            .rev()
            .find(|s| s.from <= ts_us && ts_us < s.to)
            .map(|s| s.identity.clone())
    }

    /// Addresses with at least one interval.
    pub fn len(&self) -> usize {
        self.by_ip.read().map(|m| m.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn prune(spans: &mut Vec<Span>, now: i64) {
    spans.retain(|s| s.to == OPEN || now.saturating_sub(s.to) < KEEP_CLOSED_US);
    if spans.len() > MAX_SPANS_PER_IP {
        let extra = spans.len() - MAX_SPANS_PER_IP;
        spans.drain(..extra);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(name: &str) -> Identity {
        Identity {
            name: name.into(),
            pod: Some(name.into()),
            ..Default::default()
        }
    }

    #[test]
    fn a_reused_address_keeps_its_past() {
        let h = IdentityHistory::new();
        let ip: IpAddr = "10.1.0.7".parse().unwrap();
        h.open(ip, "pod/a", id("a"), 1_000, 1_000);
        assert!(h.lookup(&ip, 999).is_none());
        assert_eq!(h.lookup(&ip, 1_000).unwrap().name, "a");
        h.close(ip, "pod/a", 5_000);
        assert!(h.lookup(&ip, 5_500).is_none());
        // The new pod was created before the old one's deletion was seen: it starts at the end.
        h.open(ip, "pod/b", id("b"), 4_000, 5_100);
        assert_eq!(h.lookup(&ip, 4_500).unwrap().name, "a");
        assert_eq!(h.lookup(&ip, 6_000).unwrap().name, "b");
        // A third owner seen while b is still open: b ends when c is seen.
        h.open(ip, "pod/c", id("c"), 7_000, 9_000);
        assert_eq!(h.lookup(&ip, 8_999).unwrap().name, "b");
        assert_eq!(h.lookup(&ip, 9_000).unwrap().name, "c");
        assert_eq!(h.lookup(&ip, 2_000).unwrap().name, "a");
    }

    #[test]
    fn relist_closes_owners_that_vanished() {
        let h = IdentityHistory::new();
        let ip: IpAddr = "10.1.0.8".parse().unwrap();
        let svc: IpAddr = "10.96.0.10".parse().unwrap();
        h.open(ip, "pod/a", id("a"), 0, 0);
        h.open(svc, "service/kube-system/dns", id("dns"), 0, 0);
        let live: HashSet<String> = HashSet::new();
        assert_eq!(h.close_missing("pod/", &live, 100), 1);
        assert!(h.lookup(&ip, 150).is_none());
        assert_eq!(h.lookup(&ip, 50).unwrap().name, "a");
        assert_eq!(h.lookup(&svc, 150).unwrap().name, "dns");
    }
}
