//! Prometheus metrics of live capture, for `wiretrail agent`'s `/metrics` and for the
//! in-process capture of `wiretrail up` (appended to its ingest metrics).

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

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
}

impl AgentMetrics {
    pub fn new(capture: Arc<CaptureStats>) -> Self {
        AgentMetrics {
            capture,
            ..Default::default()
        }
    }

    pub fn set_pipeline(&self, s: &PipelineStats, live_flows: usize) {
        if let Ok(mut p) = self.pipeline.lock() {
            *p = (s.clone(), live_flows);
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
        let (p, live) = self.pipeline.lock().map(|p| p.clone()).unwrap_or_default();
        let s = self.sender.lock().map(|s| *s).unwrap_or_default();
        let counters: [(&str, &str, u64); 23] = [
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
        ];
        for (name, help, v) in counters {
            let _ = writeln!(
                out,
                "# HELP wiretrail_agent_{name} {help}\n# TYPE wiretrail_agent_{name} counter\nwiretrail_agent_{name} {v}"
            );
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
            let _ = writeln!(
                out,
                "# HELP wiretrail_agent_{name} {help}\n# TYPE wiretrail_agent_{name} gauge\nwiretrail_agent_{name} {v}"
            );
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
        for (kind, n) in p.redactions.by_kind() {
            let _ = writeln!(
                out,
                "wiretrail_agent_redactions_total{{kind=\"{kind}\"}} {n}"
            );
        }
        out
    }
}

/// `wiretrail_capture_enabled`: 1 when live capture runs, else 0 with the reason as a label.
pub fn capture_enabled(on: bool, reason: &str) -> String {
    format!(
        "# HELP wiretrail_capture_enabled Whether live capture runs in this process (reason when not).\n# TYPE wiretrail_capture_enabled gauge\nwiretrail_capture_enabled{{reason=\"{reason}\"}} {}\n",
        u8::from(on)
    )
}
