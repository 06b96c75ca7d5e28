//! `wiretrail`: records the API traffic of a Kubernetes cluster and lets you investigate it
//! after the fact. This binary wires the crates of the data path together; see README.md.

mod agent_cmd;
mod agent_metrics;
mod auth_cmd;
mod capture_run;
mod identity_args;
mod import;
mod query_cmd;
mod redact_args;
mod server;
mod snapshot_cmd;

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// mimalloc: dissection allocates many small strings per entry; it measured 20–30 % faster
/// than the system allocator on `bench/dissect_vs_tshark.sh` inputs.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "wiretrail", version, about = "Keep the API traffic of a cluster and investigate it after the fact", long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run ingest, query API and capture in one process, storing under --data.
    Up(server::UpArgs),
    /// Capture live traffic on this node (AF_PACKET) and ship entries to ingest: the node
    /// agent (a DaemonSet in Kubernetes).
    Agent(agent_cmd::AgentArgs),
    /// Import pcap/pcapng captures through the agent → Flight → ingest path.
    Import(import::ImportArgs),
    /// Query stored entries with a KFL filter.
    Query(query_cmd::QueryArgs),
    /// Maintain the RocksDB index of a data dir.
    #[command(subcommand)]
    Index(IndexCommand),
    /// Snapshots for auditors: pin a window, export it as a verifiable bundle, verify, import.
    #[command(subcommand)]
    Snapshot(snapshot_cmd::SnapshotCommand),
    /// Access control: bearer tokens of `up --auth tokens`.
    #[command(subcommand)]
    Auth(auth_cmd::AuthCommand),
}

#[derive(Subcommand)]
enum IndexCommand {
    /// Rebuild the index from the per-hour manifest.json files and the Parquet footers (the
    /// old index is kept as index.old-<time>). The server must be stopped.
    Rebuild {
        /// Data directory.
        #[arg(long, value_name = "DIR", default_value = DEFAULT_DATA)]
        data: PathBuf,
    },
}

fn index_rebuild(data: &std::path::Path) -> anyhow::Result<()> {
    let dir = wiretrail_storage::paths::DataDir::new(data);
    let _lock = wiretrail_storage::DataDirLock::acquire(&dir)?;
    let r = wiretrail_storage::rebuild_index(&dir)?;
    println!(
        "rebuilt the index of {}: {} hours, {} files, {} entries, {} pins",
        data.display(),
        r.hours,
        r.files,
        r.rows,
        r.pins
    );
    for m in &r.missing {
        println!("not registered (missing or unreadable): {m}");
    }
    for u in &r.unlisted {
        println!("left alone (no manifest lists it): {u}");
    }
    Ok(())
}

/// Where a command finds the store: a local data directory, or a running server.
#[derive(clap::Args, Debug, Clone)]
#[group(required = false, multiple = false)]
pub struct Target {
    /// Data directory to open directly (default ./wiretrail-data; fails if a running
    /// `wiretrail up` owns it).
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// URL of a running server (for import: its Flight URL, e.g. http://127.0.0.1:8900; for
    /// query: its HTTP URL, e.g. http://127.0.0.1:8899).
    #[arg(long, value_name = "URL")]
    pub server: Option<String>,
}

pub const DEFAULT_DATA: &str = "./wiretrail-data";
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8899";
pub const DEFAULT_FLIGHT: &str = "127.0.0.1:8900";
pub const DEFAULT_FLIGHT_SQL: &str = "127.0.0.1:8901";

pub fn default_listen() -> SocketAddr {
    DEFAULT_LISTEN.parse().expect("valid default address")
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("WIRETRAIL_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        match cli.command {
            Command::Up(a) => server::up(a).await,
            Command::Agent(a) => agent_cmd::run(a).await,
            Command::Import(a) => import::run(a).await,
            Command::Query(a) => query_cmd::run(a).await,
            Command::Index(IndexCommand::Rebuild { data }) => index_rebuild(&data),
            Command::Snapshot(c) => snapshot_cmd::run(c).await,
            Command::Auth(c) => auth_cmd::run(c),
        }
    })
}
