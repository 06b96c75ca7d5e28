//! `wiretrail up`: ingest (Arrow Flight) and the query API (HTTP) in one process.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use wiretrail_ingest::{Ingest, IngestConfig, IngestFlightService};
use wiretrail_query::QueryService;

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
    /// Identity map (JSON: IP → pod, namespace, service, workload, node) for live capture.
    #[arg(long, value_name = "FILE")]
    identities: Option<PathBuf>,
    /// Do not try to capture live traffic on this machine.
    #[arg(long)]
    no_capture: bool,
    /// Write buffered entries to Parquet at least this often (seconds).
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    flush_interval: u64,
}

/// Starts the Flight endpoint on `addr`; returns the bound address.
pub async fn serve_flight(ingest: Arc<Ingest>, addr: SocketAddr) -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen for Arrow Flight on {addr}"))?;
    let bound = listener.local_addr()?;
    let svc = IngestFlightService::new(ingest).into_server();
    let incoming = tonic_incoming(listener);
    tokio::spawn(async move {
        if let Err(e) = tonic::transport::Server::builder()
            .add_service(svc)
            .serve_with_incoming(incoming)
            .await
        {
            tracing::error!(error = %e, "Flight server stopped");
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
    let config = IngestConfig {
        flush_interval: Duration::from_secs(a.flush_interval.max(1)),
        ..Default::default()
    };
    let ingest = Ingest::open(&a.data, config).await?;
    tokio::spawn(ingest.clone().run_flusher());
    let flight = serve_flight(ingest.clone(), a.flight_listen).await?;
    let query = Arc::new(QueryService::new(ingest.clone()));
    let listener = TcpListener::bind(a.listen)
        .await
        .with_context(|| format!("cannot listen for HTTP on {}", a.listen))?;
    let http = listener.local_addr()?;
    tracing::info!(data = %a.data.display(), %http, %flight, "wiretrail is up");
    if a.no_capture {
        tracing::info!("live capture off (--no-capture)");
    } else {
        tracing::warn!(
            "live capture (AF_PACKET/eBPF) is not part of this build yet; import captures with \
             `wiretrail import --server http://{flight} FILE.pcap`"
        );
    }
    if let Some(path) = &a.identities {
        // Checked now so a bad file fails at start; live capture (not in this build) will use it.
        let ids = wiretrail_agent::IdentityMap::load(path)?;
        tracing::info!(addresses = ids.len(), file = %path.display(), "identity map loaded");
    }
    eprintln!("wiretrail is up: API http://{http}  (try: curl 'http://{http}/api/v1/entries?kfl=http')  ingest (Arrow Flight) http://{flight}  data {}", a.data.display());
    axum::serve(listener, wiretrail_query::rest::router(query))
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    tracing::info!("shutting down: flushing buffered entries to Parquet");
    ingest.flush().await?;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("install SIGTERM handler");
    tokio::select! {
        _ = ctrl_c => {}
        _ = term.recv() => {}
    }
}
