//! `wiretrail import`: captures → agent pipeline → Arrow batches → Flight DoPut → ingest.
//!
//! With `--data` the ingest service runs in this process on a loopback port, so an offline
//! import takes exactly the path live traffic takes; with `--server` the batches go to a
//! running `wiretrail up` / `wiretrail ingest`.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context};
use arrow::record_batch::RecordBatch;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use tokio::sync::mpsc;
use wiretrail_agent::{CaptureReader, IdentityMap, KeyLog, Pipeline, PipelineConfig};
use wiretrail_ingest::{Ingest, IngestClient, IngestConfig, SenderConfig};
use wiretrail_proto::EntryBatchBuilder;

#[derive(clap::Args, Debug)]
pub struct ImportArgs {
    #[command(flatten)]
    target: crate::Target,
    #[command(flatten)]
    token: crate::auth_cmd::TokenArg,
    /// Identity map (JSON object: IP → {pod, namespace, service, workload, node}).
    #[arg(long, value_name = "FILE")]
    identities: Option<PathBuf>,
    /// TLS key log (`SSLKEYLOGFILE` format, as written by curl, browsers, OpenSSL, Go); TLS
    /// connections whose secrets it holds are decrypted and dissected (HTTP/1, HTTP/2, gRPC
    /// inside TLS). Repeat the option for several files.
    #[arg(long, value_name = "FILE")]
    keylog: Vec<PathBuf>,
    /// Node name recorded as `node.name` (the capturing node); default: this host's name.
    #[arg(long, value_name = "NAME")]
    node: Option<String>,
    /// Largest request/response body stored per message, in bytes (longer ones are cut and
    /// flagged as truncated).
    #[arg(long, value_name = "BYTES", default_value_t = wiretrail_proto::schema::DEFAULT_BODY_CAP)]
    body_cap: usize,
    /// Entries per Arrow batch shipped to ingest.
    #[arg(long, value_name = "ROWS", default_value_t = 8192)]
    batch_rows: usize,
    /// With --server: keep batches in this directory while the server is unreachable and send
    /// them when it is back (a later import with the same --spool sends what is left).
    #[arg(long, value_name = "DIR", requires = "server")]
    spool: Option<PathBuf>,
    /// Largest spool size in MiB; beyond it batches are dropped and counted.
    #[arg(long, value_name = "MIB", default_value_t = 1024)]
    spool_max_mib: u64,
    /// Give up when the server has not acknowledged anything for this long (e.g. 10m, 30s).
    #[arg(long, value_name = "AGE", default_value = "10m", value_parser = crate::server::parse_age)]
    give_up_after: std::time::Duration,
    /// Summary format: `text` for people, `json` for scripts.
    #[arg(long, value_name = "FORMAT", default_value = "text", value_parser = ["text", "json"])]
    format: String,
    #[command(flatten)]
    redact: crate::redact_args::ImportRedactArgs,
    /// pcap or pcapng files, read in the order given as one continuous capture (a connection
    /// may continue from one file into the next, as with rotated capture files).
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
}

/// Bytes of Arrow memory after which a batch is shipped even if it has fewer rows.
const BATCH_BYTES: usize = 16 << 20;

pub(crate) fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

#[derive(Default, Debug)]
struct ReadTotals {
    packets: u64,
    bytes: u64,
    streams: u64,
    entries: u64,
    stats: wiretrail_agent::PipelineStats,
}

/// Reads every file through the pipeline on a blocking thread, sending batches to `tx`.
fn read_captures(
    files: Vec<PathBuf>,
    config: PipelineConfig,
    batch_rows: usize,
    tx: mpsc::Sender<RecordBatch>,
    bar: ProgressBar,
) -> anyhow::Result<ReadTotals> {
    let mut pipeline = Pipeline::new(config);
    let mut builder = EntryBatchBuilder::new();
    let mut builder_bytes = 0usize;
    let mut done_bytes = 0u64;
    let ship =
        |builder: &mut EntryBatchBuilder, force: bool, bytes: &mut usize| -> anyhow::Result<()> {
            if builder.is_empty() || (!force && builder.len() < batch_rows && *bytes < BATCH_BYTES)
            {
                return Ok(());
            }
            let batch = builder.finish()?;
            *bytes = 0;
            tx.blocking_send(batch).context("the sender stopped")?;
            Ok(())
        };
    for file in &files {
        let mut reader =
            CaptureReader::open(file).with_context(|| format!("cannot read {}", file.display()))?;
        let mut n = 0u64;
        while let Some(pkt) = reader
            .next_packet()
            .with_context(|| format!("reading {}", file.display()))?
        {
            pipeline.packet(pkt.ts_us, pkt.link, &pkt.data);
            n += 1;
            if n.is_multiple_of(256) {
                bar.set_position(done_bytes + reader.bytes_read());
                for e in pipeline.take_entries() {
                    builder_bytes += e.request_body.as_ref().map_or(0, Vec::len)
                        + e.response_body.as_ref().map_or(0, Vec::len)
                        + 512;
                    builder.push(&e);
                    ship(&mut builder, false, &mut builder_bytes)?;
                }
            }
        }
        done_bytes += reader.total_bytes();
        bar.set_position(done_bytes);
    }
    pipeline.finish();
    for e in pipeline.take_entries() {
        builder.push(&e);
        ship(&mut builder, false, &mut builder_bytes)?;
    }
    ship(&mut builder, true, &mut builder_bytes)?;
    let s = pipeline.stats().clone();
    Ok(ReadTotals {
        packets: s.packets,
        bytes: s.bytes,
        streams: s.tcp_streams + s.udp_flows,
        entries: s.entries_total(),
        stats: s,
    })
}

pub async fn run(a: ImportArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let redactor = a.redact.build()?;
    let identities = match &a.identities {
        Some(p) => IdentityMap::load(p)
            .with_context(|| format!("cannot load identities from {}", p.display()))?,
        None => IdentityMap::default(),
    };
    let keylog = if a.keylog.is_empty() {
        None
    } else {
        let mut log = KeyLog::default();
        for p in &a.keylog {
            log.merge(KeyLog::load(p)?);
        }
        Some(std::sync::Arc::new(log))
    };
    // Decide where batches go before reading anything, so a busy data dir fails fast.
    let (url, local) = match (&a.target.data, &a.target.server) {
        (_, Some(url)) => (url.clone(), None),
        (data, None) => {
            let dir = data.clone().unwrap_or_else(|| crate::DEFAULT_DATA.into());
            let ingest = Ingest::open(&dir, IngestConfig::default()).await?;
            let addr = crate::server::serve_flight(
                ingest.clone(),
                "127.0.0.1:0".parse()?,
                // Our own loopback port, used by this process alone.
                wiretrail_query::auth::Authenticator::disabled(),
            )
            .await?;
            (format!("http://{addr}"), Some(ingest))
        }
    };
    let total: u64 = a
        .files
        .iter()
        .map(|f| {
            std::fs::metadata(f)
                .map(|m| m.len())
                .with_context(|| format!("cannot read {}", f.display()))
        })
        .sum::<anyhow::Result<u64>>()?;
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} importing [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    let node = a.node.clone().unwrap_or_else(host_name);
    let config = PipelineConfig {
        node: node.clone(),
        capture: "pcap".into(),
        body_cap: a.body_cap,
        identities: identities.into(),
        target: None,
        keylog,
        redactor,
    };
    let agent_id = format!(
        "import-{node}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default()
    );
    let sender = SenderConfig {
        spool_dir: a.spool.clone(),
        spool_max_bytes: a.spool_max_mib << 20,
        give_up_after: a.give_up_after,
        token: a.token.bearer(),
        ..Default::default()
    };
    let mut client = IngestClient::with_config(&url, agent_id, sender)?;
    let (tx, mut rx) = mpsc::channel::<RecordBatch>(4);
    let files = a.files.clone();
    let batch_rows = a.batch_rows.max(1);
    let reader_bar = bar.clone();
    let reader = tokio::task::spawn_blocking(move || {
        read_captures(files, config, batch_rows, tx, reader_bar)
    });
    while let Some(batch) = rx.recv().await {
        client.send(batch).await?;
    }
    let totals = reader.await.context("reader thread")??;
    let sent = client.finish().await?;
    bar.finish_and_clear();
    if let Some(ingest) = local {
        ingest.flush().await?;
    }
    if sent.acked_rows + sent.dropped_rows < totals.entries {
        bail!(
            "{} entries were read but {} were acknowledged",
            totals.entries,
            sent.acked_rows
        );
    }
    if sent.dropped_rows > 0 {
        eprintln!(
            "warning: {} entries in {} batches were dropped because the spool was full (--spool-max-mib)",
            sent.dropped_rows, sent.dropped_spool_full
        );
    }
    let secs = started.elapsed().as_secs_f64();
    let s = &totals.stats;
    if a.format == "json" {
        println!(
            "{}",
            json!({"files": a.files.len(), "packets": totals.packets, "bytes": totals.bytes,
                   "streams": totals.streams, "entries": totals.entries, "acked_entries": sent.acked_rows,
                   "entries_by_protocol": s.entries, "duplicate_batches": sent.duplicate_batches,
                   "dissect_errors": s.dissect_errors, "undissected_flows": s.undissected_flows,
                   "gap_bytes": s.gap_bytes, "other_packets": s.other_packets,
                   "malformed_packets": s.malformed_packets, "ip_fragments": s.ip_fragments,
                   "evicted_flows": s.evicted_flows, "redactions": s.redactions,
                   "sender": sent, "seconds": secs})
        );
    } else {
        println!(
            "imported {} file(s): {} packets, {:.1} MB, {} streams → {} entries acknowledged ({} dissect errors) in {:.2} s ({:.0} entries/s, {:.1} MB/s)",
            a.files.len(),
            totals.packets,
            totals.bytes as f64 / 1e6,
            totals.streams,
            sent.acked_rows,
            s.dissect_errors,
            secs,
            totals.entries as f64 / secs,
            total as f64 / 1e6 / secs
        );
        if sent.spooled_batches + sent.reconnects + sent.busy_retries > 0 {
            println!(
                "sender: {} reconnects, {} busy retries, {} batches spooled while the server was away",
                sent.reconnects, sent.busy_retries, sent.spooled_batches
            );
        }
        if a.redact.redact {
            let kinds: Vec<String> = s
                .redactions
                .by_kind()
                .iter()
                .filter(|(_, n)| *n > 0)
                .map(|(k, n)| format!("{n} {k}"))
                .collect();
            println!(
                "redacted {} values{}",
                s.redactions.total(),
                if kinds.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", kinds.join(", "))
                }
            );
        }
        if s.undissected_flows + s.malformed_packets + s.ip_fragments + s.gap_bytes > 0 {
            println!(
                "not dissected: {} flows of other protocols, {} malformed packets, {} IP fragments, {} bytes missing from the capture",
                s.undissected_flows, s.malformed_packets, s.ip_fragments, s.gap_bytes
            );
        }
    }
    Ok(())
}
