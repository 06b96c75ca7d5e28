//! TLS plaintext events → the pipeline's TCP streams, so the same dissectors (HTTP/1, HTTP/2,
//! gRPC, …) read them. Each TLS connection as one process sees it (`TlsEvent::conn`) becomes
//! the flow of its socket's 4-tuple: a synthetic handshake (SYN from the sender of the first
//! bytes, SYN-ACK back) marks who started talking, then each event's bytes follow at their
//! offset in the direction they travelled. When both ends of a connection run on this node,
//! both processes report the same bytes: the first view of a 4-tuple owns it, the other end's
//! view (same 4-tuple, ends swapped) is counted and skipped, so each exchange is one entry.
//! With an [`Attribution`], each view's local socket is claimed for the process's pod (its
//! cgroup), so the entry names the pod even when it shares the node's address.

use std::collections::HashMap;
use std::net::SocketAddr;

use wiretrail_proto::Identity;

use super::TlsEvent;
use crate::{Pipeline, StreamMark};

/// The identity of the process behind an event (e.g. its pod, from its cgroup), if known.
pub type Attribution = Box<dyn FnMut(&TlsEvent) -> Option<Identity> + Send>;

/// A connection view quiet for this long is forgotten (its flow has timed out long before).
const FORGET_US: i64 = 600_000_000;
/// How often (event time) forgotten views are looked for.
const SWEEP_US: i64 = 10_000_000;
/// Sequence number of the synthetic SYNs; data starts right after it.
const ISN: u32 = 0;

/// What [`TlsStreams`] did with the events it was given.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TlsStreamStats {
    /// Events whose bytes went to the pipeline.
    pub events: u64,
    /// Events of the other end of a connection already followed (both ends on this node).
    pub mirrored_events: u64,
    /// Events without socket addresses (no flow to put them in), not dissected.
    pub unknown_address_events: u64,
    /// Bytes the probes cut off (calls longer than the capture limit): gaps in the stream.
    pub truncated_bytes: u64,
    /// Connection views whose process was attributed (its local socket named after its pod).
    pub attributed_views: u64,
}

#[derive(Debug)]
struct View {
    local: SocketAddr,
    peer: SocketAddr,
    /// The other end of a connection another view owns.
    mirror: bool,
    started: bool,
    /// Its local socket is claimed in the pipeline.
    claimed: bool,
    /// Bytes so far local → peer and peer → local.
    sent: [u32; 2],
    last_ts: i64,
}

/// Turns [`TlsEvent`]s into stream bytes for a [`Pipeline`] (whose capture is `ebpf_tls`).
#[derive(Default)]
pub struct TlsStreams {
    views: HashMap<(u32, u64), View>,
    /// 4-tuple in canonical order → the view that owns it.
    owners: HashMap<(SocketAddr, SocketAddr), (u32, u64)>,
    attribution: Option<Attribution>,
    stats: TlsStreamStats,
    last_sweep: i64,
}

fn canonical(a: SocketAddr, b: SocketAddr) -> (SocketAddr, SocketAddr) {
    if a <= b {
        (a, b)
    } else {
        (b, a)
    }
}

fn end(a: SocketAddr) -> (std::net::IpAddr, u16) {
    (a.ip(), a.port())
}

impl TlsStreams {
    /// Streams whose local sockets are named by `attribution` where it knows the process.
    pub fn with_attribution(attribution: Attribution) -> Self {
        TlsStreams {
            attribution: Some(attribution),
            ..Default::default()
        }
    }

    pub fn stats(&self) -> TlsStreamStats {
        self.stats
    }

    /// Views followed now (one per TLS connection and process).
    pub fn live(&self) -> usize {
        self.views.len()
    }

    pub fn feed(&mut self, ev: &TlsEvent, pipeline: &mut Pipeline) {
        let (Some(local), Some(peer)) = (ev.local, ev.peer) else {
            self.stats.unknown_address_events += 1;
            return;
        };
        if ev.ts_us.saturating_sub(self.last_sweep) > SWEEP_US {
            self.sweep(ev.ts_us, pipeline);
        }
        let key = (ev.pid, ev.conn);
        let known = self
            .views
            .get(&key)
            .is_some_and(|v| v.local == local && v.peer == peer);
        if !known {
            // A new connection (or an SSL object reused for another socket).
            let tuple = canonical(local, peer);
            let mirror = match self.owners.get(&tuple) {
                Some(owner) if *owner != key => self
                    .views
                    .get(owner)
                    .is_some_and(|o| o.local == peer && o.peer == local),
                _ => false,
            };
            if !mirror {
                self.owners.insert(tuple, key);
            }
            // Both views claim their own end: the mirror names the other process's pod.
            let who = self.attribution.as_mut().and_then(|f| f(ev));
            let claimed = who.is_some();
            if let Some(identity) = who {
                pipeline.claim(end(local), identity);
                self.stats.attributed_views += 1;
            }
            if let Some(old) = self.views.get(&key).filter(|v| v.claimed) {
                pipeline.release(end(old.local));
            }
            let view = View {
                local,
                peer,
                mirror,
                started: false,
                claimed,
                sent: [0; 2],
                last_ts: ev.ts_us,
            };
            self.views.insert(key, view);
        }
        let Some(v) = self.views.get_mut(&key) else {
            return;
        };
        v.last_ts = ev.ts_us;
        if v.mirror {
            self.stats.mirrored_events += 1;
            return;
        }
        let (src, dst, dir) = if ev.write {
            (local, peer, 0)
        } else {
            (peer, local, 1)
        };
        let ts = ev.ts_us;
        if !v.started {
            // The sender of the first bytes is taken as the client, as a SYN would say.
            pipeline.stream_data(ts, end(src), end(dst), ISN, &[], StreamMark::Open);
            pipeline.stream_data(ts, end(dst), end(src), ISN, &[], StreamMark::OpenReply);
            v.started = true;
        }
        let seq = ISN.wrapping_add(1).wrapping_add(v.sent[dir]);
        pipeline.stream_data(ts, end(src), end(dst), seq, &ev.data, StreamMark::Data);
        // The original length: bytes the probe cut off become a gap the parsers skip.
        v.sent[dir] = v.sent[dir].wrapping_add(ev.len as u32);
        self.stats.events += 1;
        self.stats.truncated_bytes += ev.len.saturating_sub(ev.data.len()) as u64;
    }

    fn sweep(&mut self, now: i64, pipeline: &mut Pipeline) {
        self.last_sweep = now;
        self.views.retain(|_, v| {
            let keep = now.saturating_sub(v.last_ts) < FORGET_US;
            if !keep && v.claimed {
                pipeline.release(end(v.local));
            }
            keep
        });
        let views = &self.views;
        self.owners.retain(|_, k| views.contains_key(k));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PipelineConfig;

    fn ev(pid: u32, conn: u64, write: bool, local: &str, peer: &str, data: &[u8]) -> TlsEvent {
        TlsEvent {
            ts_us: 1_700_000_000_000_000,
            pid,
            tid: pid,
            cgroup_id: 1,
            comm: "t".into(),
            conn,
            write,
            local: Some(local.parse().unwrap()),
            peer: Some(peer.parse().unwrap()),
            data: data.to_vec(),
            len: data.len(),
        }
    }

    #[test]
    fn both_ends_on_this_node_make_one_entry_per_exchange() {
        let mut p = Pipeline::new(PipelineConfig {
            capture: "ebpf_tls".into(),
            ..Default::default()
        });
        let mut s = TlsStreams::default();
        let (c, srv) = ("10.0.0.1:40000", "10.0.0.2:443");
        let req = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n";
        let resp = b"HTTP/1.1 204 No Content\r\n\r\n";
        // Server first (it reads the request), then the client's own view of the same bytes.
        s.feed(&ev(2, 9, false, srv, c, req), &mut p);
        s.feed(&ev(1, 7, true, c, srv, req), &mut p);
        s.feed(&ev(1, 7, false, c, srv, resp), &mut p);
        s.feed(&ev(2, 9, true, srv, c, resp), &mut p);
        // A second request on the same connection, split across two reads.
        s.feed(&ev(2, 9, false, srv, c, &req[..10]), &mut p);
        s.feed(&ev(2, 9, false, srv, c, &req[10..]), &mut p);
        s.feed(&ev(2, 9, true, srv, c, resp), &mut p);
        let mut no_addr = ev(3, 1, true, c, srv, req);
        no_addr.peer = None;
        s.feed(&no_addr, &mut p);
        p.finish();
        let entries = p.take_entries();
        assert_eq!(entries.len(), 2, "{entries:?}");
        for e in &entries {
            assert_eq!(e.method.as_deref(), Some("GET"));
            assert_eq!(e.status, Some(204));
            assert_eq!(e.capture, "ebpf_tls");
            assert_eq!(e.src.port, 40000);
            assert_eq!(e.dst.port, 443);
        }
        let st = s.stats();
        assert_eq!((st.events, st.mirrored_events), (5, 2));
        assert_eq!(st.unknown_address_events, 1);
    }

    #[test]
    fn an_attributed_process_names_its_socket() {
        let mut p = Pipeline::new(PipelineConfig {
            capture: "ebpf_tls".into(),
            ..Default::default()
        });
        let mut s = TlsStreams::with_attribution(Box::new(|e: &TlsEvent| {
            (e.cgroup_id == 77).then(|| Identity {
                name: "api-0".into(),
                pod: Some("api-0".into()),
                namespace: Some("shop".into()),
                ..Default::default()
            })
        }));
        let (c, srv) = ("10.0.0.1:40000", "10.0.0.2:443");
        let req = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n";
        let resp = b"HTTP/1.1 204 No Content\r\n\r\n";
        // The server's view owns the connection; the client (cgroup 77) is its mirror.
        let mut client = ev(1, 7, true, c, srv, req);
        client.cgroup_id = 77;
        s.feed(&ev(2, 9, false, srv, c, req), &mut p);
        s.feed(&client, &mut p);
        s.feed(&ev(2, 9, true, srv, c, resp), &mut p);
        p.finish();
        let e = p.take_entries();
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].src.identity.pod.as_deref(), Some("api-0"));
        assert_eq!(e[0].src.ip, "10.0.0.1");
        assert_eq!(e[0].dst.identity.name, "10.0.0.2");
        assert_eq!(s.stats().attributed_views, 1);
    }
}
