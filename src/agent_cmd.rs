//! `wiretrail agent`: live capture on this node → agent pipeline → Arrow batches → the ingest
//! sender (acks, retry, spool) of `wiretrail import --server`. The same chain runs inside
//! `wiretrail up` when capture is permitted ([`CaptureRun`]).
//!
//! Threads: one capture thread per ring (see `wiretrail_agent::capture::live`), one dissection
//! thread, and the sender as a tokio task. Each hands over through a bounded queue, so a slow
//! ingest slows the sender, then dissection, and finally makes capture shed whole streams —
//! memory stays bounded and every loss is counted.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use arrow::record_batch::RecordBatch;
use tokio::sync::mpsc;
use wiretrail_agent::{IdentityMap, LinkType, LiveCapture, LiveConfig, Pipeline, PipelineConfig};
use wiretrail_ingest::{IngestClient, SendStats, SenderConfig};
use wiretrail_proto::EntryBatchBuilder;

use crate::agent_metrics::AgentMetrics;

/// Capture options shared by `wiretrail agent` and `wiretrail up`.
#[derive(clap::Args, Debug, Clone)]
pub struct CaptureArgs {
    /// Interface to capture on (repeatable); `any` = every interface of the network namespace.
    /// Default: `any` for `agent`, `lo` for `up`.
    #[arg(long, value_name = "IFACE")]
    pub interface: Vec<String>,
    /// BPF filter expression (tcpdump syntax, compiled with libpcap and run in the kernel),
    /// e.g. `tcp port 80 or udp port 53`. Link-layer fields (`ether …`) are not available.
    #[arg(long, value_name = "EXPR")]
    pub filter: Option<String>,
    /// Put the named interfaces in promiscuous mode (off by default; not with `any`).
    #[arg(long)]
    pub promiscuous: bool,
    /// Capture method: `af_packet`. (`ebpf_tls` is not supported in this build.)
    #[arg(long, value_name = "MODE", default_value = "af_packet")]
    pub capture: String,
    /// Size of one TPACKET_V3 ring block in KiB (≥ 72; a block holds whole packets, up to
    /// 64 KiB with GRO).
    #[arg(long, value_name = "KIB", default_value_t = 1024)]
    pub ring_block_kib: usize,
    /// Blocks per ring (per interface); the ring takes blocks × block size of memory (it
    /// counts in the agent's RSS).
    #[arg(long, value_name = "N", default_value_t = 16)]
    pub ring_blocks: usize,
    /// Captured bytes waiting for dissection above which whole streams are shed (MiB).
    #[arg(long, value_name = "MIB", default_value_t = 64)]
    pub queue_mib: usize,
    /// Capture inside this network namespace (e.g. /run/netns/NAME or /proc/PID/ns/net);
    /// the connection to ingest and the metrics stay in the process's own namespace.
    #[arg(long, value_name = "PATH")]
    pub netns: Option<PathBuf>,
}

impl CaptureArgs {
    /// The only capture method of this build is AF_PACKET; anything else is a clear error.
    pub fn check_mode(&self) -> anyhow::Result<()> {
        match self.capture.as_str() {
            "af_packet" => Ok(()),
            "ebpf_tls" | "ebpf" => bail!(
                "--capture {}: eBPF capture (TLS plaintext via uprobes) is not supported in this \
                 build; use --capture af_packet (TLS connections are recorded as handshakes, and \
                 decrypted from captures with `wiretrail import --keylog`)",
                self.capture
            ),
            other => bail!("--capture {other:?}: unknown capture method (af_packet)"),
        }
    }

    pub fn live_config(&self, default_iface: &str, exclude_ports: Vec<u16>) -> LiveConfig {
        LiveConfig {
            interfaces: if self.interface.is_empty() {
                vec![default_iface.to_string()]
            } else {
                self.interface.clone()
            },
            filter: self.filter.clone(),
            promiscuous: self.promiscuous,
            block_size: self.ring_block_kib.saturating_mul(1024),
            block_count: self.ring_blocks,
            block_timeout_ms: 50,
            queue_bytes: self.queue_mib.max(1) << 20,
            exclude_ports,
            netns: self.netns.clone(),
        }
    }
}

#[derive(clap::Args, Debug)]
pub struct AgentArgs {
    /// Flight URL of ingest, e.g. http://wiretrail:8900.
    #[arg(long, env = "WIRETRAIL_SERVER", value_name = "URL")]
    server: String,
    #[command(flatten)]
    capture: CaptureArgs,
    /// Node name recorded as `node.name` and in the agent id; default: this host's name.
    #[arg(long, env = "NODE_NAME", value_name = "NAME")]
    node: Option<String>,
    /// Keep batches in this directory while ingest is unreachable and send them when it is
    /// back (also across agent restarts).
    #[arg(long, value_name = "DIR")]
    spool: Option<PathBuf>,
    /// Largest spool size in MiB; beyond it batches are dropped and counted.
    #[arg(long, value_name = "MIB", default_value_t = 1024)]
    spool_max_mib: u64,
    /// Address of the Prometheus `/metrics` and `/healthz` endpoint.
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:9100")]
    metrics_listen: SocketAddr,
    /// Identity map (JSON object: IP → {pod, namespace, service, workload, node}).
    #[arg(long, value_name = "FILE")]
    identities: Option<PathBuf>,
    /// Largest request/response body stored per message, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = wiretrail_proto::schema::DEFAULT_BODY_CAP)]
    body_cap: usize,
    #[command(flatten)]
    redact: crate::redact_args::RedactArgs,
    /// Entries per Arrow batch (a batch is also shipped once a second).
    #[arg(long, value_name = "ROWS", default_value_t = 1024)]
    batch_rows: usize,
    /// On SIGTERM, how long to wait for ingest to acknowledge the last batches (with --spool
    /// the rest stays spooled for the next start).
    #[arg(long, value_name = "AGE", default_value = "20s", value_parser = crate::server::parse_age)]
    shutdown_timeout: Duration,
}

/// `/proc/sys/kernel/random/boot_id`: with the node name, the agent id, so a restarted agent
/// on the same boot continues its stream and a rebooted node starts a new one.
pub fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "no-boot-id".into())
}

fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// A sender config for a capturing process: batch numbers start from the clock (µs), so a
/// restart under the same agent id without a spool is not mistaken for a resend. A window of
/// 4 unacknowledged batches (16 for imports) keeps the agent's memory small; at a batch a
/// second it also bounds how far the acknowledged-rows metric lags.
pub fn sender_config(
    spool: Option<PathBuf>,
    spool_max_mib: u64,
    give_up: Duration,
) -> SenderConfig {
    SenderConfig {
        window: 4,
        spool_dir: spool,
        spool_max_bytes: spool_max_mib << 20,
        give_up_after: give_up,
        first_seq: now_us().max(1) as u64,
    }
}

/// Bytes of entry data after which a batch is shipped even with fewer rows.
const BATCH_BYTES: usize = 16 << 20;
/// A batch with entries is shipped at least this often (latency of live views).
const SHIP_EVERY: Duration = Duration::from_secs(1);

/// A running capture → dissection → sender chain.
pub struct CaptureRun {
    pub metrics: Arc<AgentMetrics>,
    stop: Arc<AtomicBool>,
    dissect: tokio::task::JoinHandle<anyhow::Result<()>>,
    sender: tokio::task::JoinHandle<anyhow::Result<SendStats>>,
}

impl CaptureRun {
    pub fn start(
        capture: LiveCapture,
        config: PipelineConfig,
        client: IngestClient,
        batch_rows: usize,
        finish_timeout: Duration,
    ) -> CaptureRun {
        let metrics = Arc::new(AgentMetrics::new(capture.stats()));
        let stop = capture.stop_handle();
        let (tx, rx) = mpsc::channel::<RecordBatch>(4);
        let m = metrics.clone();
        let dissect = tokio::task::spawn_blocking(move || {
            dissect_loop(capture, config, batch_rows.max(1), tx, &m)
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

fn dissect_loop(
    capture: LiveCapture,
    config: PipelineConfig,
    batch_rows: usize,
    tx: mpsc::Sender<RecordBatch>,
    metrics: &AgentMetrics,
) -> anyhow::Result<()> {
    let mut pipeline = Pipeline::new(config);
    let mut builder = EntryBatchBuilder::new();
    let mut builder_bytes = 0usize;
    let mut first_entry: Option<Instant> = None;
    let mut last_stats = Instant::now();
    loop {
        let closed = match capture.recv(Duration::from_millis(100)) {
            Ok(Some(batch)) => {
                for (ts, frame) in batch.packets() {
                    pipeline.packet(ts, LinkType::LinuxSll, frame);
                }
                false
            }
            Ok(None) => false,
            Err(_) => true,
        };
        if closed {
            pipeline.finish();
        } else {
            pipeline.tick(now_us());
        }
        for e in pipeline.take_entries() {
            builder_bytes += e.request_body.as_ref().map_or(0, Vec::len)
                + e.response_body.as_ref().map_or(0, Vec::len)
                + 512;
            builder.push(&e);
            first_entry.get_or_insert_with(Instant::now);
            if builder.len() >= batch_rows || builder_bytes >= BATCH_BYTES {
                tx.blocking_send(builder.finish()?)
                    .context("the sender stopped")?;
                builder_bytes = 0;
                first_entry = None;
            }
        }
        let due = first_entry.is_some_and(|t| t.elapsed() >= SHIP_EVERY);
        if !builder.is_empty() && (closed || due) {
            tx.blocking_send(builder.finish()?)
                .context("the sender stopped")?;
            builder_bytes = 0;
            first_entry = None;
        }
        if closed || last_stats.elapsed() >= Duration::from_millis(500) {
            metrics.set_pipeline(pipeline.stats(), pipeline.live_flows());
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

async fn serve_metrics(addr: SocketAddr, metrics: Arc<AgentMetrics>) -> anyhow::Result<SocketAddr> {
    use axum::routing::get;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen for metrics on {addr}"))?;
    let bound = listener.local_addr()?;
    let app = axum::Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/metrics",
            get(move || {
                let m = metrics.clone();
                async move {
                    (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "text/plain; version=0.0.4",
                        )],
                        m.render() + &crate::agent_metrics::capture_enabled(true, "af_packet"),
                    )
                }
            }),
        );
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "metrics server stopped");
        }
    });
    Ok(bound)
}

pub async fn run(a: AgentArgs) -> anyhow::Result<()> {
    a.capture.check_mode()?;
    let redactor = a.redact.build()?;
    let node = a.node.clone().unwrap_or_else(crate::import::host_name);
    let identities = match &a.identities {
        Some(p) => IdentityMap::load(p)
            .with_context(|| format!("cannot load identities from {}", p.display()))?,
        None => IdentityMap::default(),
    };
    let live = a.capture.live_config("any", Vec::new());
    let interfaces = live.interfaces.join(",");
    let capture = LiveCapture::start(live)?;
    let agent_id = format!("{node}-{}", boot_id());
    let client = IngestClient::with_config(
        &a.server,
        agent_id.clone(),
        sender_config(a.spool.clone(), a.spool_max_mib, a.shutdown_timeout),
    )?;
    let config = PipelineConfig {
        node: node.clone(),
        capture: "af_packet".into(),
        body_cap: a.body_cap,
        identities,
        keylog: None,
        redactor: Some(redactor),
    };
    let run = CaptureRun::start(capture, config, client, a.batch_rows, a.shutdown_timeout);
    let metrics = serve_metrics(a.metrics_listen, run.metrics.clone()).await?;
    tracing::info!(%node, %agent_id, interfaces, server = %a.server, %metrics, "wiretrail agent is capturing");
    let signal = crate::server::shutdown_signal();
    tokio::pin!(signal);
    loop {
        tokio::select! {
            _ = &mut signal => break,
            _ = tokio::time::sleep(Duration::from_millis(500)) => {
                if run.is_finished() {
                    break;
                }
            }
        }
    }
    tracing::info!("stopping: capture off, dissecting what is queued, shipping the last entries");
    let m = run.metrics.clone();
    let sent = run.stop().await?;
    let p = m.pipeline();
    tracing::info!(
        packets = p.packets,
        entries = p.entries_total(),
        acked = sent.acked_rows,
        spooled = sent.spooled_batches,
        dropped = sent.dropped_rows,
        "wiretrail agent stopped"
    );
    Ok(())
}
