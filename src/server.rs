//! `wiretrail up`: ingest (Arrow Flight) and the query API (HTTP) in one process.
//!
//! Access control (`--auth`) is decided once, before anything listens: the same
//! [`Authenticator`] guards the HTTP routes (a layer per route), Flight SQL and ingest (tonic
//! interceptors).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use wiretrail_query::ui::UiSource;

use anyhow::Context;
use tokio::net::TcpListener;
use tonic::service::interceptor::InterceptedService;
use wiretrail_agent::{AgentError, PipelineConfig};
use wiretrail_ingest::{BearerToken, Ingest, IngestClient, IngestConfig, IngestFlightService};
use wiretrail_query::auth::grpc::GrpcGuard;
use wiretrail_query::auth::{AuthConfig, AuthMode, Authenticator, Role};
use wiretrail_query::flight_sql::WiretrailFlightSql;
use wiretrail_query::sql::SqlLimits;
use wiretrail_query::QueryService;

use crate::agent_metrics::capture_enabled;
use crate::capture_run::CaptureRun;

#[derive(clap::Args, Debug)]
pub struct UpArgs {
    /// Data directory (WAL, Parquet files, RocksDB index).
    #[arg(long, value_name = "DIR", default_value = crate::DEFAULT_DATA)]
    data: PathBuf,
    /// Address of the HTTP API (REST, health).
    #[arg(long, value_name = "ADDR", default_value = crate::DEFAULT_LISTEN)]
    listen: SocketAddr,
    /// Address of the Arrow Flight endpoint agents and `wiretrail import --server` ship to.
    #[arg(long, value_name = "ADDR", default_value = crate::DEFAULT_FLIGHT)]
    flight_listen: SocketAddr,
    /// Address of the Arrow Flight SQL endpoint (read-only SQL for ADBC/JDBC tools).
    #[arg(long, value_name = "ADDR", default_value = crate::DEFAULT_FLIGHT_SQL)]
    flight_sql_listen: SocketAddr,
    /// Do not capture live traffic on this machine. Without it, `up` captures in-process on
    /// `--interface` (default `lo`) when permitted (root or CAP_NET_RAW), leaving out its own
    /// ports, and stores what it captures here.
    #[arg(long)]
    no_capture: bool,
    #[command(flatten)]
    capture: crate::agent_cmd::CaptureArgs,
    #[command(flatten)]
    identity: crate::identity_args::IdentityArgs,
    #[command(flatten)]
    redact: crate::redact_args::RedactArgs,
    /// Memory one `POST /api/v1/sql` query may hold (MiB); above it the query fails.
    #[arg(long, value_name = "MIB", default_value_t = 512)]
    sql_memory_mib: usize,
    /// Longest time one SQL query may run (seconds) before it is cancelled.
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    sql_timeout: u64,
    /// Write buffered entries to Parquet at least this often (seconds).
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    flush_interval: u64,
    /// A KFL macro, e.g. `--kfl-macro 'slow=elapsedTime > 1000'` (repeatable; `https` is
    /// predefined as `tls and (http or http2)`).
    #[arg(long = "kfl-macro", value_name = "NAME=EXPR", value_parser = wiretrail_query::kfl::parse_macro)]
    kfl_macros: Vec<(String, String)>,
    /// Serve the dashboard from this directory instead of the copy built into the binary
    /// (for UI work: `npm run build` in ui/, then reload the page).
    #[arg(long, value_name = "DIR", env = "WIRETRAIL_UI_DIR")]
    ui_dir: Option<PathBuf>,
    #[command(flatten)]
    storage: StorageArgs,
    #[command(flatten)]
    auth: AuthArgs,
}

/// Access control of the API, Flight SQL and ingest ports.
#[derive(clap::Args, Debug, Clone)]
pub struct AuthArgs {
    /// `none`: anyone who can reach a port may read and ship everything (fine on loopback; a
    /// warning otherwise). `tokens`: bearer tokens of the principals file (make them with
    /// `wiretrail auth token add`). `jwt` and `kubernetes` are not supported in this build yet.
    #[arg(long = "auth", value_name = "MODE", default_value = "none", value_parser = ["none", "tokens", "jwt", "kubernetes"])]
    mode: String,
    /// The principals file of `--auth tokens` (default DATA/auth/tokens.json); re-read within a
    /// second when it changes, no restart needed.
    #[arg(long, value_name = "FILE")]
    auth_tokens: Option<PathBuf>,
    /// `/metrics` needs a viewer or admin token too (by default it is open, for Prometheus).
    #[arg(long)]
    metrics_auth: bool,
}

impl AuthArgs {
    pub fn build(&self, data: &std::path::Path) -> anyhow::Result<Arc<Authenticator>> {
        let mode: AuthMode = self.mode.parse().map_err(anyhow::Error::msg)?;
        let config = AuthConfig {
            mode,
            tokens_file: self
                .auth_tokens
                .clone()
                .unwrap_or_else(|| wiretrail_query::auth::tokens::default_path(data)),
            metrics_auth: self.metrics_auth,
            reload_interval: Duration::from_secs(1),
        };
        Authenticator::new(&config).with_context(|| format!("--auth {mode}"))
    }
}

/// `--auth none` on an address others can reach: say so loudly, on the terminal and in the log.
fn warn_if_open(auth: &Authenticator, addrs: &[(&str, SocketAddr)]) {
    if auth.enabled() {
        return;
    }
    for (what, addr) in addrs {
        if !addr.ip().is_loopback() {
            eprintln!(
                "WARNING: --auth none and {what} listens on {addr}, which is not a loopback address: anyone who can reach it can read every stored request and response (headers, bodies, leaked credentials) and ship entries. Use --auth tokens (README, Security)."
            );
            tracing::warn!(%addr, what, "no authentication on a non-loopback address");
        }
    }
}

/// Durability, memory, compaction and retention settings of ingest.
#[derive(clap::Args, Debug, Clone)]
pub struct StorageArgs {
    /// How long an append waits for others before one WAL fsync covers them all (group commit).
    #[arg(long, value_name = "MS", default_value_t = 5)]
    wal_commit_ms: u64,
    /// Buffered (acknowledged, not yet in Parquet) entries above which senders are slowed;
    /// above twice this they get RESOURCE_EXHAUSTED and retry (MiB).
    #[arg(long, value_name = "MIB", default_value_t = 512)]
    memory_limit_mib: usize,
    /// Drop hours older than this (e.g. 7d, 36h, 90m). Default: keep everything.
    #[arg(long, value_name = "AGE", value_parser = parse_age)]
    retention: Option<Duration>,
    /// Drop the oldest hours while the Parquet files take more than this many GiB.
    #[arg(long, value_name = "GIB")]
    retention_max_gib: Option<f64>,
    /// Drop the oldest hours while the data dir's filesystem is fuller than this percentage.
    #[arg(long, value_name = "PERCENT", default_value_t = 90.0)]
    disk_high_watermark: f64,
    /// How often compaction and retention run (seconds).
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    maintenance_interval: u64,
    /// Move older hours to S3-compatible storage, same layout:
    /// s3://BUCKET/PREFIX[?endpoint=URL&region=R&allow_http=true]. Credentials come from the
    /// usual AWS variables (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, …) or instance roles.
    #[arg(long, value_name = "URL")]
    s3: Option<String>,
    /// With --s3: hours move once they ended this long ago (e.g. 6h, 2d).
    #[arg(long, value_name = "AGE", default_value = "6h", value_parser = parse_age)]
    upload_after: Duration,
}

/// `7d`, `36h`, `90m`, `45s`.
pub fn parse_age(s: &str) -> Result<Duration, String> {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?}: expected a number and a unit, e.g. 7d, 36h, 90m"))?;
    let secs = match unit {
        "d" => 86_400,
        "h" => 3_600,
        "m" => 60,
        "s" | "" => 1,
        _ => return Err(format!("{s:?}: unit must be d, h, m or s")),
    };
    Ok(Duration::from_secs(n.saturating_mul(secs)))
}

impl StorageArgs {
    pub fn apply(&self, c: &mut IngestConfig) {
        c.wal_commit_interval = Duration::from_millis(self.wal_commit_ms);
        c.memory_limit = self.memory_limit_mib.max(1) << 20;
        c.retention.max_age = self.retention;
        c.retention.max_bytes = self
            .retention_max_gib
            .map(|g| (g * (1u64 << 30) as f64) as u64);
        c.retention.disk_high_watermark =
            (self.disk_high_watermark < 100.0).then_some(self.disk_high_watermark / 100.0);
        c.maintenance_interval = Duration::from_secs(self.maintenance_interval.max(1));
        c.upload_after = self.upload_after;
    }

    /// Connects to the --s3 store and checks the bucket answers, so a typo fails now, not
    /// hours later at the first upload.
    pub async fn remote(&self) -> anyhow::Result<Option<Arc<wiretrail_storage::RemoteStore>>> {
        let Some(url) = &self.s3 else {
            return Ok(None);
        };
        let config = wiretrail_storage::S3Config::from_url(url)?;
        let store = wiretrail_storage::RemoteStore::new(&config)?;
        store
            .check()
            .await
            .with_context(|| format!("--s3 {url}: the bucket does not answer"))?;
        Ok(Some(Arc::new(store)))
    }
}

/// Starts the Flight endpoint on `addr`, behind `auth` (agents and admins may ship); returns
/// the bound address.
pub async fn serve_flight(
    ingest: Arc<Ingest>,
    addr: SocketAddr,
    auth: Arc<Authenticator>,
) -> anyhow::Result<SocketAddr> {
    let svc = InterceptedService::new(
        IngestFlightService::new(ingest).into_server(),
        GrpcGuard::ingest(auth),
    );
    serve_grpc(
        tonic::transport::Server::builder().add_service(svc),
        addr,
        "Arrow Flight",
    )
    .await
}

/// Serves one Flight service (ingest or Flight SQL) on its own listener.
async fn serve_grpc(
    router: tonic::transport::server::Router,
    addr: SocketAddr,
    what: &'static str,
) -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen for {what} on {addr}"))?;
    let bound = listener.local_addr()?;
    let incoming = tonic_incoming(listener);
    tokio::spawn(async move {
        if let Err(e) = router.serve_with_incoming(incoming).await {
            tracing::error!(error = %e, "{what} server stopped");
        }
    });
    Ok(bound)
}

fn tonic_incoming(
    listener: TcpListener,
) -> impl futures::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    futures::stream::unfold(listener, |l| async move {
        let r = l.accept().await.map(|(s, _)| {
            let _ = s.set_nodelay(true);
            s
        });
        Some((r, l))
    })
}

pub async fn up(a: UpArgs) -> anyhow::Result<()> {
    // Before anything opens or listens: a mode we cannot enforce must not start.
    let auth = a.auth.build(&a.data)?;
    warn_if_open(
        &auth,
        &[
            ("the HTTP API (--listen)", a.listen),
            ("ingest (--flight-listen)", a.flight_listen),
            ("Flight SQL (--flight-sql-listen)", a.flight_sql_listen),
        ],
    );
    let mut config = IngestConfig {
        flush_interval: Duration::from_secs(a.flush_interval.max(1)),
        ..Default::default()
    };
    a.storage.apply(&mut config);
    config.remote = a.storage.remote().await?;
    let ingest = Ingest::open(&a.data, config).await?;
    tokio::spawn(ingest.clone().run_flusher());
    tokio::spawn(ingest.clone().run_maintenance());
    let m = auth.clone();
    ingest.add_metrics(Arc::new(move || m.render_metrics()));
    let flight = serve_flight(ingest.clone(), a.flight_listen, auth.clone()).await?;
    let query = Arc::new(
        QueryService::new(ingest.clone())
            .with_sql_limits(SqlLimits {
                memory_bytes: a.sql_memory_mib << 20,
                timeout: Duration::from_secs(a.sql_timeout),
                ..Default::default()
            })
            .with_macros(a.kfl_macros.clone()),
    );
    let flight_sql = serve_grpc(
        tonic::transport::Server::builder().add_service(InterceptedService::new(
            WiretrailFlightSql::new(query.clone()).into_server(),
            GrpcGuard::flight_sql(auth.clone()),
        )),
        a.flight_sql_listen,
        "Arrow Flight SQL",
    )
    .await?;
    let listener = TcpListener::bind(a.listen)
        .await
        .with_context(|| format!("cannot listen for HTTP on {}", a.listen))?;
    let http = listener.local_addr()?;
    tracing::info!(data = %a.data.display(), %http, %flight, %flight_sql, auth = %auth.mode(), "wiretrail is up");
    let capture = start_capture(&a, &ingest, [http, flight, flight_sql], &auth).await?;
    let ui = match &a.ui_dir {
        Some(d) => UiSource::Dir(d.clone()),
        None => UiSource::Embedded,
    };
    let dashboard = if a.ui_dir.is_some() || wiretrail_query::ui::embedded_available() {
        format!("dashboard http://{http}/")
    } else {
        "dashboard not built into this binary (see ui/README.md)".to_string()
    };
    eprintln!("wiretrail is up: {dashboard}  API http://{http}/api/v1  ingest (Arrow Flight) http://{flight}  data {}  auth {}", a.data.display(), auth.mode());
    // The dashboard's assets stay public (they hold no data); every API call they make is
    // authenticated by the API routes' own layers.
    let app =
        wiretrail_query::rest::router(query, auth.clone()).merge(wiretrail_query::ui::router(ui));
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    if let Some(run) = capture {
        tracing::info!("stopping live capture: shipping the last entries");
        match run.stop().await {
            Ok(s) => tracing::info!(acked = s.acked_rows, "live capture stopped"),
            Err(e) => tracing::warn!(error = %e, "live capture stopped with an error"),
        }
    }
    tracing::info!("shutting down: flushing buffered entries to Parquet");
    ingest.shutdown().await?;
    Ok(())
}

/// Starts the in-process capture of `up` unless it is off or not permitted (then says so in
/// the log and in `wiretrail_capture_enabled`).
async fn start_capture(
    a: &UpArgs,
    ingest: &Arc<Ingest>,
    own: [SocketAddr; 3],
    auth: &Authenticator,
) -> anyhow::Result<Option<CaptureRun>> {
    if a.no_capture {
        tracing::info!("live capture off (--no-capture)");
        ingest.add_metrics(Arc::new(|| {
            capture_enabled(&[(false, "no_capture".into())])
        }));
        return Ok(None);
    }
    a.capture.modes()?;
    let redactor = a.redact.build()?;
    let node = crate::import::host_name();
    let (identities, pods) = a.identity.build(&node).await?;
    let exclude: Vec<u16> = own.iter().map(SocketAddr::port).collect();
    let interfaces = a
        .capture
        .live_config("lo", exclude.clone())
        .interfaces
        .join(",");
    let started = match a
        .capture
        .start("lo", exclude, identities.counters().clone())
    {
        Ok(s) => s,
        Err(AgentError::CaptureNotPermitted(why)) => {
            tracing::warn!("not root: live capture off; use `wiretrail import` ({why})");
            ingest.add_metrics(Arc::new(|| {
                capture_enabled(&[(false, "not_permitted".into())])
            }));
            return Ok(None);
        }
        Err(e) => return Err(e).context("live capture (--no-capture turns it off)"),
    };
    let (af, tls) = (
        started.sources.live.is_some(),
        started.sources.tls.is_some(),
    );
    // Shipped over loopback Flight to this process's own ingest: the same path as an agent's.
    let mut target = own[1];
    if target.ip().is_unspecified() {
        target.set_ip(if target.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    let finish = Duration::from_secs(20);
    // With --auth tokens, a token for this process alone (never written anywhere).
    let token = if auth.enabled() {
        Some(BearerToken::new(
            auth.internal_token("up-capture", Role::Agent)?,
        ))
    } else {
        None
    };
    let client = IngestClient::with_config(
        &format!("http://{target}"),
        format!("up-{node}-{}", crate::agent_cmd::boot_id()),
        wiretrail_ingest::SenderConfig {
            token,
            ..crate::agent_cmd::sender_config(None, 0, finish)
        },
    )?;
    let config = PipelineConfig {
        node,
        capture: "af_packet".into(),
        body_cap: wiretrail_proto::schema::DEFAULT_BODY_CAP,
        identities,
        target: pods,
        keylog: None,
        redactor: Some(redactor),
    };
    let run = CaptureRun::start(
        started.sources,
        config,
        client,
        1024,
        finish,
        started.metrics,
    );
    let m = run.metrics.clone();
    ingest.add_metrics(Arc::new(move || m.render()));
    if tls {
        tracing::info!(
            "eBPF TLS capture on: OpenSSL plaintext of this machine's processes is stored here"
        );
    }
    if af {
        tracing::info!(
            interfaces,
            "live capture on (AF_PACKET): traffic on {interfaces} is stored here, wiretrail's own ports left out"
        );
    }
    Ok(Some(run))
}

pub(crate) async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("install SIGTERM handler");
    tokio::select! {
        _ = ctrl_c => {}
        _ = term.recv() => {}
    }
}
