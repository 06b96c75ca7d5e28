//! A running capture → dissection → sender chain, shared by `wiretrail agent` and the
//! in-process capture of `wiretrail up`.
//!
//! Threads: one capture thread per AF_PACKET ring (see `wiretrail_agent::capture::live`), one
//! dissection thread that also drains the eBPF TLS ring buffer, and the sender as a tokio task.
//! Each hands over through a bounded queue, so a slow ingest slows the sender, then dissection,
//! and finally makes capture shed whole streams (AF_PACKET) or the kernel drop TLS records
//! (eBPF) — memory stays bounded and every loss is counted.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use arrow::record_batch::RecordBatch;
use tokio::sync::mpsc;
use wiretrail_agent::capture::ebpf::{node_ips, SocketClaims, SocketEvent, TlsCapture, TlsStreams};
use wiretrail_agent::identity::cgroup::CgroupPods;
use wiretrail_agent::IdentityResolver;
use wiretrail_agent::{now_us, LinkType, LiveCapture, Pipeline, PipelineConfig};
use wiretrail_ingest::{IngestClient, SendStats};
use wiretrail_proto::EntryBatchBuilder;

use crate::agent_metrics::AgentMetrics;

/// Bytes of entry data after which a batch is shipped even with fewer rows.
const BATCH_BYTES: usize = 16 << 20;
/// A batch with entries is shipped at least this often (latency of live views).
const SHIP_EVERY: Duration = Duration::from_secs(1);

/// What one chain reads from: AF_PACKET rings, the eBPF TLS probes, or both.
pub struct Sources {
    pub live: Option<LiveCapture>,
    pub tls: Option<TlsCapture>,
    /// Where the probes' cgroup ids are looked up (TLS traffic → its process's pod).
    pub cgroup_root: std::path::PathBuf,
}

/// TLS streams whose processes are named after their pods when Kubernetes is watched.
fn tls_streams(ids: &IdentityResolver, cgroup_root: &std::path::Path) -> TlsStreams {
    if !ids.watches_kubernetes() {
        return TlsStreams::default();
    }
    let ids = ids.clone();
    let mut cgroups = CgroupPods::new(cgroup_root);
    TlsStreams::with_attribution(Box::new(move |ev| ids.pod(&cgroups.pod_uid(ev.cgroup_id)?)))
}

/// Claims of the probes' socket events on the AF_PACKET pipeline (a pod's connected and
/// listening sockets), when Kubernetes is watched.
fn socket_claims(ids: &IdentityResolver, cgroup_root: &std::path::Path) -> Option<SocketClaims> {
    if !ids.watches_kubernetes() {
        return None;
    }
    let ids = ids.clone();
    let mut cgroups = CgroupPods::new(cgroup_root);
    Some(SocketClaims::new(Box::new(move |cg| {
        ids.pod(&cgroups.pod_uid(cg)?)
    })))
}

/// A running capture → dissection → sender chain.
pub struct CaptureRun {
    pub metrics: Arc<AgentMetrics>,
    stop: Arc<AtomicBool>,
    dissect: tokio::task::JoinHandle<anyhow::Result<()>>,
    sender: tokio::task::JoinHandle<anyhow::Result<SendStats>>,
}

impl CaptureRun {
    /// `config.capture` is ignored: entries from the rings are `af_packet`, from the probes
    /// `ebpf_tls`. `metrics` must come from [`AgentMetrics::new`] for these sources.
    pub fn start(
        sources: Sources,
        config: PipelineConfig,
        client: IngestClient,
        batch_rows: usize,
        finish_timeout: Duration,
        metrics: Arc<AgentMetrics>,
    ) -> CaptureRun {
        let stop = match &sources.live {
            Some(c) => c.stop_handle(),
            None => Arc::new(AtomicBool::new(false)),
        };
        let (tx, rx) = mpsc::channel::<RecordBatch>(4);
        let (m, s) = (metrics.clone(), stop.clone());
        let dissect = tokio::task::spawn_blocking(move || {
            dissect_loop(sources, config, batch_rows.max(1), tx, &m, &s)
        });
        let sender = tokio::spawn(send_loop(client, rx, metrics.clone(), finish_timeout));
        CaptureRun {
            metrics,
            stop,
            dissect,
            sender,
        }
    }

    /// True once the chain ended by itself (a capture thread failed, the sender stopped).
    pub fn is_finished(&self) -> bool {
        self.dissect.is_finished() || self.sender.is_finished()
    }

    /// Stops capture, dissects what is queued, ends every open stream, ships the last
    /// entries and waits (bounded) for their acknowledgement.
    pub async fn stop(self) -> anyhow::Result<SendStats> {
        self.stop.store(true, Ordering::Relaxed);
        let dissected = self.dissect.await.context("dissection thread")?;
        let sent = self.sender.await.context("sender task")?;
        dissected?;
        sent
    }
}

/// Entries of both pipelines into Arrow batches, shipped when full or a second old.
struct Batcher {
    builder: EntryBatchBuilder,
    bytes: usize,
    first_entry: Option<Instant>,
    rows: usize,
    tx: mpsc::Sender<RecordBatch>,
}

impl Batcher {
    fn add(&mut self, p: &mut Pipeline) -> anyhow::Result<()> {
        for e in p.take_entries() {
            self.bytes += e.request_body.as_ref().map_or(0, Vec::len)
                + e.response_body.as_ref().map_or(0, Vec::len)
                + 512;
            self.builder.push(&e);
            self.first_entry.get_or_insert_with(Instant::now);
            if self.builder.len() >= self.rows || self.bytes >= BATCH_BYTES {
                self.ship()?;
            }
        }
        Ok(())
    }

    fn ship(&mut self) -> anyhow::Result<()> {
        self.tx
            .blocking_send(self.builder.finish()?)
            .context("the sender stopped")?;
        self.bytes = 0;
        self.first_entry = None;
        Ok(())
    }

    fn ship_if(&mut self, closed: bool) -> anyhow::Result<()> {
        let due = self.first_entry.is_some_and(|t| t.elapsed() >= SHIP_EVERY);
        if !self.builder.is_empty() && (closed || due) {
            self.ship()?;
        }
        Ok(())
    }
}

fn dissect_loop(
    mut sources: Sources,
    config: PipelineConfig,
    batch_rows: usize,
    tx: mpsc::Sender<RecordBatch>,
    metrics: &AgentMetrics,
    stop: &AtomicBool,
) -> anyhow::Result<()> {
    let mut live = Pipeline::new(PipelineConfig {
        capture: "af_packet".into(),
        ..config.clone()
    });
    live.set_local_ips(node_ips());
    let mut streams = tls_streams(&config.identities, &sources.cgroup_root);
    let mut claims = sources
        .tls
        .as_ref()
        .filter(|t| t.stats().sockets)
        .and_then(|_| socket_claims(&config.identities, &sources.cgroup_root));
    let mut socket_events: Vec<SocketEvent> = Vec::new();
    let mut tls = Pipeline::new(PipelineConfig {
        capture: "ebpf_tls".into(),
        ..config
    });
    let mut events = Vec::new();
    let mut out = Batcher {
        builder: EntryBatchBuilder::new(),
        bytes: 0,
        first_entry: None,
        rows: batch_rows,
        tx,
    };
    let mut last_stats = Instant::now();
    // With both sources, each waits briefly so neither starves the other.
    let wait = if sources.live.is_some() && sources.tls.is_some() {
        Duration::from_millis(10)
    } else {
        Duration::from_millis(100)
    };
    loop {
        let mut closed = stop.load(Ordering::Relaxed) && sources.live.is_none();
        if let Some(capture) = &sources.live {
            let received = capture.recv(wait);
            // Sockets connected before these packets were sent are claimed first (read on
            // every turn, so a quiet interface does not leave the ring to fill); closes end
            // their claims a grace period later (see SocketClaims).
            // Without Kubernetes nothing names a socket's pod: the events are drained and
            // dropped, so the ring never fills (and its drop counter stays meaningful).
            if let Some(probes) = &mut sources.tls {
                socket_events.clear();
                probes.drain_sockets(&mut socket_events);
                if let Some(c) = &mut claims {
                    for ev in &socket_events {
                        c.apply(ev, &mut live);
                    }
                }
            }
            match received {
                Ok(Some(batch)) => {
                    for (ts, frame) in batch.packets() {
                        live.packet(ts, LinkType::LinuxSll, frame);
                    }
                }
                Ok(None) => {}
                Err(_) => closed = true,
            }
            if let Some(c) = &mut claims {
                c.release_closed(&mut live, Instant::now());
            }
        }
        if let Some(probes) = &mut sources.tls {
            events.clear();
            if let Err(e) = probes.poll(wait, &mut events) {
                tracing::error!(error = %e, "eBPF TLS capture stopped");
                closed = true;
            }
            for ev in &events {
                streams.feed(ev, &mut tls);
            }
        }
        for p in [&mut live, &mut tls] {
            if closed {
                p.finish();
            } else {
                p.tick(now_us());
            }
            out.add(p)?;
        }
        out.ship_if(closed)?;
        if closed || last_stats.elapsed() >= Duration::from_millis(500) {
            metrics.set_pipeline(live.stats(), live.live_flows());
            if let Some(probes) = &sources.tls {
                metrics.set_tls(probes.stats(), streams.stats(), tls.stats(), streams.live());
                if let Some(c) = &claims {
                    metrics.set_socket_claims(c.stats());
                }
            }
            last_stats = Instant::now();
        }
        if closed {
            return Ok(());
        }
    }
}

async fn send_loop(
    mut client: IngestClient,
    mut rx: mpsc::Receiver<RecordBatch>,
    metrics: Arc<AgentMetrics>,
    finish_timeout: Duration,
) -> anyhow::Result<SendStats> {
    while let Some(batch) = rx.recv().await {
        if let Err(e) = client.send(batch).await {
            metrics.sender_errors.fetch_add(1, Ordering::Relaxed);
            if e.is_refused() {
                // Wrong or missing token: retrying cannot help; stop the chain with the reason.
                metrics.set_sender(client.stats());
                return Err(e).context("ingest refused this agent");
            }
            tracing::error!(error = %e, "cannot ship a batch to ingest (it is kept and resent with the next one)");
        }
        metrics.set_sender(client.stats());
    }
    // `finish` gives up after the sender's own give-up time without progress; the outer
    // bound also covers an ingest that accepts but never answers.
    match tokio::time::timeout(finish_timeout * 2, client.finish()).await {
        Ok(Ok(s)) => {
            metrics.set_sender(s);
            Ok(s)
        }
        Ok(Err(e)) => Err(e).context("the last batches were not acknowledged"),
        Err(_) => bail!("ingest did not acknowledge the last batches within {finish_timeout:?}"),
    }
}
