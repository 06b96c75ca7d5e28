//! Prometheus metrics of live capture, for `wiretrail agent`'s `/metrics` and for the
//! in-process capture of `wiretrail up` (appended to its ingest metrics).

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use wiretrail_agent::capture::ebpf::{SocketClaimStats, TlsStats, TlsStreamStats};
use wiretrail_agent::identity::IdentityCounters;
use wiretrail_agent::{CaptureStats, PipelineStats};
use wiretrail_ingest::SendStats;

/// Counters of one capture → dissection → sender chain, updated by its threads.
#[derive(Default)]
pub struct AgentMetrics {
    pub capture: Arc<CaptureStats>,
    /// The pipeline's counters and its open flows, copied by the dissection thread.
    pipeline: Mutex<(PipelineStats, usize)>,
    sender: Mutex<SendStats>,
    /// `send` calls that failed (ingest away longer than the give-up time, no spool).
    pub sender_errors: AtomicU64,
    /// Shared with the pipeline's resolver and the Kubernetes watchers.
    identity: Arc<IdentityCounters>,
    /// The eBPF TLS probes, their streams, their pipeline and its open streams.
    tls: Mutex<Option<(TlsStats, TlsStreamStats, PipelineStats, usize)>>,
    /// AF_PACKET sockets claimed for their process's pod through the probes' socket events.
    socket_claims: Mutex<SocketClaimStats>,
    /// `wiretrail_capture_enabled` lines: (on, method or reason).
    enabled: Vec<(bool, String)>,
}

impl AgentMetrics {
    pub fn new(
        capture: Arc<CaptureStats>,
        identity: Arc<IdentityCounters>,
        enabled: Vec<(bool, String)>,
    ) -> Self {
        AgentMetrics {
            capture,
            identity,
            enabled,
            ..Default::default()
        }
    }

    pub fn set_pipeline(&self, s: &PipelineStats, live_flows: usize) {
        if let Ok(mut p) = self.pipeline.lock() {
            *p = (s.clone(), live_flows);
        }
    }

    pub fn set_tls(&self, t: TlsStats, s: TlsStreamStats, p: &PipelineStats, live: usize) {
        if let Ok(mut m) = self.tls.lock() {
            *m = Some((t, s, p.clone(), live));
        }
    }

    pub fn set_socket_claims(&self, s: SocketClaimStats) {
        if let Ok(mut m) = self.socket_claims.lock() {
            *m = s;
        }
    }

    pub fn set_sender(&self, s: SendStats) {
        if let Ok(mut p) = self.sender.lock() {
            *p = s;
        }
    }

    pub fn pipeline(&self) -> PipelineStats {
        self.pipeline
            .lock()
            .map(|p| p.0.clone())
            .unwrap_or_default()
    }

    /// Prometheus text (version 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::new();
        let c = &self.capture;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let (mut p, mut live) = self.pipeline.lock().map(|p| p.clone()).unwrap_or_default();
        let tls = self.tls.lock().ok().and_then(|t| t.clone());
        // Entries and redactions count both pipelines (AF_PACKET and eBPF TLS).
        let mut redactions: std::collections::BTreeMap<&str, u64> = p.redactions.by_kind().into();
        if let Some((_, _, tp, tlive)) = &tls {
            for (proto, n) in &tp.entries {
                *p.entries.entry(proto.clone()).or_default() += n;
            }
            for (kind, n) in tp.redactions.by_kind() {
                *redactions.entry(kind).or_default() += n;
            }
            p.dissect_errors += tp.dissect_errors;
            p.untargeted_flows += tp.untargeted_flows;
            live += tlive;
        }
        let s = self.sender.lock().map(|s| *s).unwrap_or_default();
        let i = &self.identity;
        let counters: [(&str, &str, u64); 32] = [
            ("packets_total", "Packets read from the capture rings.", get(&c.packets)),
            ("bytes_total", "Bytes of the packets read from the capture rings.", get(&c.bytes)),
            ("kernel_packets_total", "Packets the kernel passed to the capture sockets, drops included (PACKET_STATISTICS).", get(&c.kernel_packets)),
            ("kernel_drops_total", "Packets the kernel dropped because a capture ring was full.", get(&c.kernel_drops)),
            ("kernel_freezes_total", "Times a capture ring was full.", get(&c.kernel_freezes)),
            ("shed_streams_total", "Streams shed whole because dissection fell behind.", get(&c.shed_streams)),
            ("shed_packets_total", "Packets of shed streams (not dissected).", get(&c.shed_packets)),
            ("excluded_packets_total", "Packets of wiretrail's own ports, not captured.", get(&c.excluded_packets)),
            ("dissected_packets_total", "Packets given to dissection.", p.packets),
            ("streams_total", "TCP streams and UDP flows seen.", p.tcp_streams + p.udp_flows),
            ("undissected_streams_total", "Streams no dissector recognised.", p.undissected_flows),
            ("evicted_streams_total", "Streams ended early because the flow table was full.", p.evicted_flows),
            ("dissect_errors_total", "Malformed messages the dissectors skipped.", p.dissect_errors),
            ("malformed_packets_total", "Packets whose headers could not be decoded.", p.malformed_packets),
            ("gap_bytes_total", "Stream bytes missing from the capture.", p.gap_bytes),
            ("sender_batches_total", "Batches handed to the sender.", s.batches),
            ("sender_acked_batches_total", "Batches ingest acknowledged.", s.acked_batches),
            ("sender_acked_rows_total", "Entries ingest acknowledged.", s.acked_rows),
            ("sender_reconnects_total", "Reconnections to ingest.", s.reconnects),
            ("sender_busy_retries_total", "Times ingest answered busy and the sender backed off.", s.busy_retries),
            ("sender_spooled_batches_total", "Batches written to the spool.", s.spooled_batches),
            ("sender_dropped_rows_total", "Entries dropped because the spool was full.", s.dropped_rows),
            ("sender_errors_total", "Sends that failed after retrying (no spool).", get(&self.sender_errors)),
            ("identity_misses_total", "Address lookups no identity source knew (the entry names the bare IP).", get(&i.misses)),
            ("identity_hits_total", "Address lookups resolved to a pod, service, node or --identities entry.", get(&i.hits)),
            ("identity_watch_events_total", "Kubernetes watch events applied.", get(&i.watch_events)),
            ("identity_watch_errors_total", "Kubernetes watch errors (each retried with backoff).", get(&i.watch_errors)),
            ("identity_relists_total", "Full Kubernetes lists (the first, and after errors or 410 Gone).", get(&i.relists)),
            ("identity_reverse_dns_lookups_total", "Reverse DNS lookups made (--reverse-dns).", get(&i.rdns_lookups)),
            ("identity_reverse_dns_names_total", "Reverse DNS lookups that found a name.", get(&i.rdns_names)),
            ("identity_reverse_dns_dropped_total", "Addresses not looked up because too many lookups were waiting.", get(&i.rdns_dropped)),
            ("untargeted_streams_total", "Streams not dissected because neither end is a targeted pod.", p.untargeted_flows),
        ];
        for (name, help, v) in counters {
            metric(&mut out, "counter", name, help, v);
        }
        let gauges: [(&str, &str, u64); 3] = [
            ("live_streams", "Streams open now.", live as u64),
            (
                "queue_bytes",
                "Captured bytes waiting for dissection.",
                c.queued_bytes.load(Ordering::Relaxed) as u64,
            ),
            ("spool_bytes", "Bytes in the sender's spool.", s.spool_bytes),
        ];
        for (name, help, v) in gauges {
            metric(&mut out, "gauge", name, help, v);
        }
        let _ = writeln!(
            out,
            "# HELP wiretrail_agent_entries_total Entries produced, by protocol.\n# TYPE wiretrail_agent_entries_total counter"
        );
        for (proto, n) in &p.entries {
            let _ = writeln!(
                out,
                "wiretrail_agent_entries_total{{protocol=\"{proto}\"}} {n}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP wiretrail_agent_redactions_total Values replaced by the redactor before leaving the node, by kind.\n# TYPE wiretrail_agent_redactions_total counter"
        );
        for (kind, n) in redactions {
            let _ = writeln!(
                out,
                "wiretrail_agent_redactions_total{{kind=\"{kind}\"}} {n}"
            );
        }
        if let Some((t, st, tp, _)) = &tls {
            let claims = self.socket_claims.lock().map(|c| *c).unwrap_or_default();
            let tls_counters: [(&str, &str, u64); 13] = [
                (
                    "tls_events_total",
                    "SSL_read/SSL_write calls delivered by the eBPF probes.",
                    t.events,
                ),
                (
                    "tls_bytes_total",
                    "Plaintext bytes delivered by the eBPF probes.",
                    t.bytes,
                ),
                (
                    "tls_ringbuf_drops_total",
                    "Probe records lost because the ring buffer was full.",
                    t.ringbuf_drops,
                ),
                (
                    "tls_read_failures_total",
                    "SSL calls whose buffer the probe could not read.",
                    t.read_failures,
                ),
                (
                    "tls_incomplete_events_total",
                    "SSL calls delivered with a part missing.",
                    t.incomplete_events,
                ),
                (
                    "tls_unknown_address_events_total",
                    "SSL calls without socket addresses (not dissected).",
                    t.unknown_address_events + st.unknown_address_events,
                ),
                (
                    "tls_mirrored_events_total",
                    "SSL calls of the other end of a connection already followed.",
                    st.mirrored_events,
                ),
                (
                    "tls_truncated_bytes_total",
                    "Plaintext bytes beyond the per-call capture limit.",
                    st.truncated_bytes,
                ),
                (
                    "tls_attributed_streams_total",
                    "TLS connection views named after their process's pod (cgroup).",
                    st.attributed_views,
                ),
                (
                    "tls_socket_events_total",
                    "TCP connect/listen/close events of processes (af_packet,ebpf_tls).",
                    t.socket_events,
                ),
                (
                    "tls_socket_ringbuf_drops_total",
                    "Socket events lost because their ring buffer was full.",
                    t.socket_drops,
                ),
                (
                    "tls_socket_claims_total",
                    "af_packet sockets named after their process's pod (cgroup).",
                    claims.claimed,
                ),
                (
                    "tls_entries_total",
                    "Entries made from eBPF TLS plaintext (capture = ebpf_tls).",
                    tp.entries_total(),
                ),
            ];
            for (name, help, v) in tls_counters {
                metric(&mut out, "counter", name, help, v);
            }
            let help = "libssl files the eBPF probes are attached to.";
            metric(
                &mut out,
                "gauge",
                "tls_libraries",
                help,
                t.libraries.len() as u64,
            );
        }
        out + &capture_enabled(&self.enabled)
    }
}

/// One `wiretrail_agent_{name}` sample with its HELP and TYPE lines.
fn metric(out: &mut String, kind: &str, name: &str, help: &str, v: u64) {
    let _ = writeln!(
        out,
        "# HELP wiretrail_agent_{name} {help}\n# TYPE wiretrail_agent_{name} {kind}\nwiretrail_agent_{name} {v}"
    );
}

/// `wiretrail_capture_enabled`: 1 per capture method running, 0 with the reason for one that
/// is not.
pub fn capture_enabled(lines: &[(bool, String)]) -> String {
    let mut out = String::from(
        "# HELP wiretrail_capture_enabled Whether live capture runs in this process, by method (reason when not).\n# TYPE wiretrail_capture_enabled gauge\n",
    );
    for (on, reason) in lines {
        let _ = writeln!(
            out,
            "wiretrail_capture_enabled{{reason=\"{reason}\"}} {}",
            u8::from(*on)
        );
    }
    out
}
