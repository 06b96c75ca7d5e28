//! `wiretrail agent`: live capture on this node (AF_PACKET, eBPF TLS probes) → agent pipeline
//! → Arrow batches → the ingest sender (acks, retry, spool) of `wiretrail import --server`. The
//! same chain ([`CaptureRun`]) runs inside `wiretrail up` when capture is permitted.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use wiretrail_agent::capture::ebpf::{TlsCapture, TlsConfig, MAX_CAPTURE_LIMIT};
use wiretrail_agent::identity::IdentityCounters;
use wiretrail_agent::{AgentError, LiveCapture, LiveConfig, PipelineConfig};
use wiretrail_ingest::{IngestClient, SenderConfig};

use crate::agent_metrics::AgentMetrics;
use crate::capture_run::{CaptureRun, Sources};

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
    /// Capture methods, comma-separated: `af_packet` (packets on the interfaces) and
    /// `ebpf_tls` (plaintext of OpenSSL's SSL_read/SSL_write in every process, through eBPF
    /// uprobes; needs CAP_BPF+CAP_PERFMON or root). When the probes cannot load here, the agent
    /// says why and captures with `af_packet` instead.
    #[arg(
        long,
        value_name = "MODE,MODE",
        default_value = "af_packet",
        value_delimiter = ','
    )]
    pub capture: Vec<String>,
    /// libssl files to probe with `ebpf_tls` (repeatable). Default: the distribution's
    /// libssl plus every libssl mapped by a running process, looked for again every 5 s.
    #[arg(long, value_name = "FILE")]
    pub libssl: Vec<PathBuf>,
    /// cgroup v2 directory under which processes' cgroups are found, to name the pod of a
    /// process's TLS traffic (with --kubernetes) whatever address it uses. Default: this
    /// process's cgroup2 mount; in a container, mount the host's /sys/fs/cgroup and name it.
    #[arg(long, value_name = "DIR")]
    pub cgroup_root: Option<PathBuf>,
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

/// The capture methods `--capture` asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Modes {
    pub af_packet: bool,
    pub ebpf_tls: bool,
}

/// What [`CaptureArgs::start`] got running, and what it says about itself.
pub struct Started {
    pub sources: Sources,
    pub metrics: Arc<AgentMetrics>,
}

impl CaptureArgs {
    /// The methods of `--capture`; an unknown one is a clear error.
    pub fn modes(&self) -> anyhow::Result<Modes> {
        let mut m = Modes {
            af_packet: false,
            ebpf_tls: false,
        };
        for c in &self.capture {
            match c.trim() {
                "af_packet" => m.af_packet = true,
                "ebpf_tls" | "ebpf" => m.ebpf_tls = true,
                other => bail!("--capture {other:?}: unknown capture method (af_packet, ebpf_tls)"),
            }
        }
        if !m.af_packet && !m.ebpf_tls {
            bail!("--capture: name at least one method (af_packet, ebpf_tls)");
        }
        Ok(m)
    }

    /// Starts the asked-for sources. eBPF that cannot load here (no privileges, no BTF, no
    /// libssl) falls back to AF_PACKET with a log line and `wiretrail_capture_enabled`; an
    /// AF_PACKET error (e.g. `CaptureNotPermitted`) is returned for the caller to explain.
    pub fn start(
        &self,
        default_iface: &str,
        exclude_ports: Vec<u16>,
        identity: Arc<IdentityCounters>,
    ) -> Result<Started, AgentError> {
        let modes = self
            .modes()
            .map_err(|e| AgentError::Capture(e.to_string()))?;
        let mut enabled = Vec::new();
        let mut tls = None;
        let mut af_packet = modes.af_packet;
        if modes.ebpf_tls {
            let cfg = TlsConfig {
                libssl: self.libssl.clone(),
                max_capture: MAX_CAPTURE_LIMIT,
                // With both sources, connect/listen events name af_packet flows' pods.
                sockets: modes.af_packet,
                ..TlsConfig::default()
            };
            match TlsCapture::start(cfg) {
                Ok(t) => {
                    let libs = t.stats().libraries;
                    tracing::info!(?libs, "eBPF TLS capture on: OpenSSL plaintext of every process using these libraries");
                    enabled.push((true, "ebpf_tls".to_string()));
                    tls = Some(t);
                }
                Err(AgentError::EbpfNotSupported(why)) => {
                    tracing::warn!("eBPF TLS capture not available here, capturing with af_packet instead: {why}");
                    enabled.push((false, "ebpf_tls_not_supported".to_string()));
                    af_packet = true;
                }
                Err(e) => return Err(e),
            }
        }
        let live = if af_packet {
            let live = LiveCapture::start(self.live_config(default_iface, exclude_ports))?;
            enabled.push((true, "af_packet".to_string()));
            Some(live)
        } else {
            None
        };
        let capture_stats = live.as_ref().map(LiveCapture::stats).unwrap_or_default();
        let metrics = Arc::new(AgentMetrics::new(capture_stats, identity, enabled));
        let cgroup_root = self
            .cgroup_root
            .clone()
            .unwrap_or_else(wiretrail_agent::identity::cgroup::cgroup2_root);
        Ok(Started {
            sources: Sources {
                live,
                tls,
                cgroup_root,
            },
            metrics,
        })
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
    token: crate::auth_cmd::TokenArg,
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
    #[command(flatten)]
    identity: crate::identity_args::IdentityArgs,
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
        first_seq: wiretrail_agent::now_us().max(1) as u64,
        token: None,
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
                        m.render(),
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
    a.capture.modes()?;
    let redactor = a.redact.build()?;
    let node = a.node.clone().unwrap_or_else(crate::import::host_name);
    let (identities, pods) = a.identity.build(&node).await?;
    let interfaces = a
        .capture
        .live_config("any", Vec::new())
        .interfaces
        .join(",");
    let agent_id = format!("{node}-{}", boot_id());
    let sender = SenderConfig {
        token: a.token.bearer(),
        ..sender_config(a.spool.clone(), a.spool_max_mib, a.shutdown_timeout)
    };
    let client = IngestClient::with_config(&a.server, agent_id.clone(), sender)?;
    let config = PipelineConfig {
        node: node.clone(),
        capture: "af_packet".into(),
        body_cap: a.body_cap,
        identities,
        target: pods,
        keylog: None,
        redactor: Some(redactor),
    };
    let started = a
        .capture
        .start("any", Vec::new(), config.identities.counters().clone())?;
    let run = CaptureRun::start(
        started.sources,
        config,
        client,
        a.batch_rows,
        a.shutdown_timeout,
        started.metrics,
    );
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
