//! End-to-end ingest benchmark against a running `wiretrail up`.
//!
//! C senders (own agent ids, own DoPut streams, W unacknowledged batches each) push entry
//! batches as fast as ingest acknowledges them. Rows come from the Parquet files of a data dir
//! written by `wiretrail import`, replicated with shifted `ts` and fresh ids so nothing dedups.
//! The Flight client is used directly (not `IngestClient`) so each batch is timed from send to
//! ack, and a few sampled batches are polled on the REST API to time "ack → visible".
//!
//! ```text
//! cargo run --release -p wiretrail-ingest --example ingest_bench -- \
//!     --source DATA_DIR --flight http://127.0.0.1:8900 --http http://127.0.0.1:8899 -c 2
//! ```
//! Prints a human summary and one `RESULT key=value …` line for scripts.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{Array, ArrayRef, FixedSizeBinaryBuilder, TimestampMicrosecondArray};
use arrow::compute::{cast, concat_batches, sort_to_indices, take_record_batch};
use arrow::ipc::writer::IpcWriteOptions;
use arrow::ipc::CompressionType;
use arrow::record_batch::RecordBatch;
use arrow_flight::encode::{DictionaryHandling, FlightDataEncoderBuilder};
use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::{FlightData, FlightDescriptor};
use clap::Parser;
use futures::{StreamExt, TryStreamExt};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use prost::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, Semaphore};
use tonic::transport::Endpoint;
use wiretrail_proto::ingest::{BatchAck, BatchMeta, PutHeader};
use wiretrail_proto::schema::{entry_schema, TS};
use wiretrail_proto::EntryId;

type Error = Box<dyn std::error::Error + Send + Sync>;
type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Parser, Debug, Clone)]
#[command(about = "Push replicated entries into a running `wiretrail up` and time acks")]
struct Args {
    /// Data dir written by `wiretrail import`; its `entries/**/*.parquet` are the source rows.
    #[arg(long, env = "BENCH_SOURCE")]
    source: PathBuf,
    /// Flight endpoint of `wiretrail up`.
    #[arg(long, env = "BENCH_FLIGHT", default_value = "http://127.0.0.1:8900")]
    flight: String,
    /// HTTP API of `wiretrail up` (for ack → visible).
    #[arg(long, env = "BENCH_HTTP", default_value = "http://127.0.0.1:8899")]
    http: String,
    /// Entries to send in total (split evenly over the senders).
    #[arg(long, env = "BENCH_ENTRIES", default_value_t = 2_000_000)]
    entries: u64,
    /// Concurrent senders (DoPut streams, each with its own agent id).
    #[arg(short = 'c', long, env = "BENCH_CONCURRENCY", default_value_t = 2)]
    concurrency: usize,
    /// Unacknowledged batches in flight per sender.
    #[arg(short = 'w', long, env = "BENCH_WINDOW", default_value_t = 8)]
    window: usize,
    /// Entries per batch (the import default).
    #[arg(long, env = "BENCH_BATCH_ROWS", default_value_t = 8192)]
    batch_rows: usize,
    /// Batches per sender whose visibility on the REST API is timed.
    #[arg(long, env = "BENCH_VISIBLE_SAMPLES", default_value_t = 5)]
    visible_samples: u64,
    /// Arrow IPC compression on the wire (agents use lz4).
    #[arg(long, env = "BENCH_COMPRESSION", default_value = "lz4", value_parser = ["lz4", "zstd", "none"])]
    compression: String,
    /// Capture-time rate of the replicated rows: consecutive rows of a sender are 1/rate apart.
    #[arg(long, env = "BENCH_TS_RATE", default_value_t = 200_000)]
    ts_rate: u64,
    /// Capture time of every sender's first row, µs since the epoch (default: now). With a low
    /// `--ts-rate` this spreads a large store over days (bench/query_24m.py).
    #[arg(long, env = "BENCH_T0_US")]
    t0_us: Option<i64>,
}

/// Source rows sorted by `ts`, repeated so any window of `batch_rows` is one zero-copy slice.
struct Source {
    rows: usize,
    pool: RecordBatch,
}

fn parquet_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for e in std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))? {
        let path = e?.path();
        if path.is_dir() {
            parquet_files(&path, out)?;
        } else if path.extension().is_some_and(|x| x == "parquet") {
            out.push(path);
        }
    }
    Ok(())
}

/// Reads every Parquet file of the data dir and casts it to the entry schema (Parquet gives
/// back the Arrow types from its embedded schema; the cast only guards against drift).
fn load_source(data: &Path, batch_rows: usize) -> Result<Source> {
    let mut files = Vec::new();
    parquet_files(&data.join("entries"), &mut files)?;
    files.sort();
    let schema = entry_schema();
    let mut batches = Vec::new();
    for f in &files {
        let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(f)?)?.build()?;
        for b in reader {
            let b = b?;
            let cols = b
                .columns()
                .iter()
                .zip(schema.fields())
                .map(|(c, f)| {
                    if c.data_type() == f.data_type() {
                        Ok(c.clone())
                    } else {
                        cast(c, f.data_type())
                    }
                })
                .collect::<Result<Vec<ArrayRef>, _>>()?;
            batches.push(RecordBatch::try_new(schema.clone(), cols)?);
        }
    }
    let all = concat_batches(&schema, &batches)?;
    if all.num_rows() == 0 {
        return Err(format!("no rows in {}/entries", data.display()).into());
    }
    let order = sort_to_indices(all.column_by_name(TS).ok_or("no ts column")?, None, None)?;
    let sorted = take_record_batch(&all, &order)?;
    let copies = batch_rows.div_ceil(sorted.num_rows()) + 1;
    let pool = concat_batches(&schema, &vec![sorted.clone(); copies])?;
    eprintln!(
        "source: {} rows from {} Parquet file(s) in {}",
        sorted.num_rows(),
        files.len(),
        data.display()
    );
    Ok(Source {
        rows: sorted.num_rows(),
        pool,
    })
}

/// Rows `[first, first + rows)` of sender `node`'s endless replica: source rows in `ts` order,
/// cycled, with `ts = t0 + index / rate` and a fresh id from (ts, node, index).
fn make_batch(
    src: &Source,
    node: &str,
    t0_us: i64,
    step_ns: u64,
    first: u64,
    rows: usize,
) -> Result<RecordBatch> {
    let body = src.pool.slice((first % src.rows as u64) as usize, rows);
    let mut ids = FixedSizeBinaryBuilder::with_capacity(rows, 16);
    let mut ts = Vec::with_capacity(rows);
    for i in 0..rows as u64 {
        let idx = first + i;
        let t = t0_us + (idx * step_ns / 1000) as i64;
        ts.push(t);
        ids.append_value(EntryId::new(t, node, idx as u32).0)?;
    }
    let ts = TimestampMicrosecondArray::from(ts).with_timezone("UTC");
    let mut cols = body.columns().to_vec();
    cols[0] = Arc::new(ids.finish());
    cols[1] = Arc::new(ts);
    Ok(RecordBatch::try_new(body.schema(), cols)?)
}

/// One batch as Flight messages, exactly as `IngestClient` sends it.
async fn encode(
    agent: &str,
    seq: u64,
    batch: RecordBatch,
    compression: Option<CompressionType>,
) -> Result<Vec<FlightData>> {
    let options = IpcWriteOptions::default().try_with_compression(compression)?;
    let header = PutHeader {
        agent_id: agent.to_string(),
    };
    let meta = BatchMeta { batch_seq: seq }.encode_to_vec();
    let mut msgs: Vec<FlightData> = FlightDataEncoderBuilder::new()
        .with_options(options)
        .with_dictionary_handling(DictionaryHandling::Resend)
        .with_max_flight_data_size(usize::MAX)
        .with_flight_descriptor(Some(FlightDescriptor::new_cmd(header.encode_to_vec())))
        .build(futures::stream::iter([Ok(batch)]))
        .try_collect()
        .await?;
    for m in &mut msgs {
        m.app_metadata = meta.clone().into();
    }
    Ok(msgs)
}

/// Minimal HTTP/1.1 GET (no client dependency needed for one endpoint): returns the status.
async fn http_status(host: &str, path: &str) -> Result<u16> {
    let mut s = tokio::net::TcpStream::connect(host).await?;
    s.set_nodelay(true)?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await?;
    let head = String::from_utf8_lossy(&buf[..buf.len().min(32)]).to_string();
    head.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("bad HTTP response: {head:?}").into())
}

/// Polls `GET /api/v1/entries/{id}` from the ack until it answers 200; returns the delay.
async fn time_visible(host: String, id: String, acked: Instant) -> Result<Duration> {
    let path = format!("/api/v1/entries/{id}");
    loop {
        match http_status(&host, &path).await? {
            200 => return Ok(acked.elapsed()),
            404 => {}
            s => return Err(format!("GET {path}: HTTP {s}").into()),
        }
        if acked.elapsed() > Duration::from_secs(60) {
            return Err(format!("entry {id} not visible 60 s after its ack").into());
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

struct CloseOnDrop(Arc<Semaphore>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.0.close();
    }
}

#[derive(Default)]
struct SenderReport {
    rows: u64,
    ipc_bytes: u64,
    ack_latencies: Vec<Duration>,
    visible: Vec<Duration>,
}

struct Sent {
    seq: u64,
    at: Instant,
    rows: u64,
    /// (id, ts) of the batch's first row when this batch is sampled for visibility.
    sample: Option<String>,
}

async fn sender(c: usize, args: Arc<Args>, src: Arc<Source>, t0_us: i64) -> Result<SenderReport> {
    let agent = format!("ingest-bench-{}-{c}", std::process::id());
    let total = args.entries / args.concurrency as u64
        + u64::from((c as u64) < args.entries % args.concurrency as u64);
    let batches = total.div_ceil(args.batch_rows as u64);
    let sample_every = (batches / args.visible_samples.max(1)).max(1);
    let compression = match args.compression.as_str() {
        "lz4" => Some(CompressionType::LZ4_FRAME),
        "zstd" => Some(CompressionType::ZSTD),
        _ => None,
    };
    let step_ns = 1_000_000_000 / args.ts_rate.max(1);
    let http_host = args
        .http
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();

    let channel = Endpoint::from_shared(args.flight.clone())?
        .tcp_nodelay(true)
        .connect()
        .await?;
    let mut client = FlightServiceClient::new(channel)
        .max_decoding_message_size(256 << 20)
        .max_encoding_message_size(256 << 20);
    let (tx, mut rx) = mpsc::channel::<FlightData>(64);
    let req = futures::stream::poll_fn(move |cx| rx.poll_recv(cx));
    let mut acks = client.do_put(req).await?.into_inner();

    let window = Arc::new(Semaphore::new(args.window.max(1)));
    let (sent_tx, mut sent_rx) = mpsc::unbounded_channel::<Sent>();
    let ack_window = window.clone();
    let acker = tokio::spawn(async move {
        // Closing the window on failure wakes a sender blocked on it.
        let _close = CloseOnDrop(ack_window.clone());
        let mut report = SenderReport::default();
        let mut pollers = Vec::new();
        while let Some(sent) = sent_rx.recv().await {
            let msg = acks
                .next()
                .await
                .ok_or("ingest closed the stream before acking every batch")??;
            let now = Instant::now();
            let ack = BatchAck::decode(msg.app_metadata.as_ref())?;
            if ack.batch_seq != sent.seq || ack.duplicate {
                return Err(format!(
                    "ack for batch {} (duplicate={}), expected {}",
                    ack.batch_seq, ack.duplicate, sent.seq
                )
                .into());
            }
            ack_window.add_permits(1);
            report.rows += sent.rows;
            report.ack_latencies.push(now - sent.at);
            if let Some(id) = sent.sample {
                pollers.push(tokio::spawn(time_visible(http_host.clone(), id, now)));
            }
        }
        for p in pollers {
            report.visible.push(p.await??);
        }
        Ok::<SenderReport, Error>(report)
    });

    let mut ipc_bytes = 0u64;
    for seq in 1..=batches {
        let first = (seq - 1) * args.batch_rows as u64;
        let rows = (total - first).min(args.batch_rows as u64) as usize;
        let batch = make_batch(&src, &agent, t0_us, step_ns, first, rows)?;
        let sample = (seq % sample_every == sample_every / 2).then(|| {
            let id = batch
                .column(0)
                .as_any()
                .downcast_ref::<arrow::array::FixedSizeBinaryArray>();
            id.and_then(|a| <[u8; 16]>::try_from(a.value(0)).ok())
                .map(|b| EntryId(b).to_string())
        });
        let msgs = encode(&agent, seq, batch, compression).await?;
        match window.acquire().await {
            Ok(p) => p.forget(),
            // The ack reader stopped: its error says why.
            Err(_) => {
                return Err(acker
                    .await?
                    .err()
                    .unwrap_or_else(|| "ack reader stopped".into()))
            }
        }
        let at = Instant::now();
        for m in msgs {
            ipc_bytes += (m.data_header.len() + m.data_body.len()) as u64;
            tx.send(m).await.map_err(|_| "ingest closed the stream")?;
        }
        sent_tx.send(Sent {
            seq,
            at,
            rows: rows as u64,
            sample: sample.flatten(),
        })?;
    }
    drop(sent_tx);
    let mut report = acker.await??;
    drop(tx);
    report.ipc_bytes = ipc_bytes;
    Ok(report)
}

/// User + system CPU seconds of this process (the client competes for the same cores).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 (utime, stime, in ticks of 1/100 s) are the 12th and 13th after the
    // command name.
    let tick = |i: usize| f.get(i).and_then(|x| x.parse::<f64>().ok()).unwrap_or(0.0);
    (tick(11) + tick(12)) / 100.0
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e3
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Arc::new(Args::parse());
    let src = Arc::new(load_source(&args.source, args.batch_rows.max(1))?);
    let t0_us = match args.t0_us {
        Some(t) => t,
        None => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_micros() as i64,
    };
    let cpu0 = cpu_seconds();
    let started = Instant::now();
    let tasks: Vec<_> = (0..args.concurrency.max(1))
        .map(|c| tokio::spawn(sender(c, args.clone(), src.clone(), t0_us)))
        .collect();
    let mut total = SenderReport::default();
    for t in tasks {
        let r = t.await??;
        total.rows += r.rows;
        total.ipc_bytes += r.ipc_bytes;
        total.ack_latencies.extend(r.ack_latencies);
        total.visible.extend(r.visible);
    }
    let secs = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    total.ack_latencies.sort();
    total.visible.sort();
    let (eps, mbs) = (
        total.rows as f64 / secs,
        total.ipc_bytes as f64 / 1e6 / secs,
    );
    let lat = &total.ack_latencies;
    let vis = &total.visible;
    println!(
        "sent {} entries in {} batches of ≤{} from {} sender(s), window {}: {secs:.2} s, {eps:.0} entries/s, {mbs:.1} MB/s Arrow IPC ({})",
        total.rows, lat.len(), args.batch_rows, args.concurrency, args.window, args.compression
    );
    println!(
        "ack latency (send → ack, per batch): p50 {:.1} ms  p99 {:.1} ms  max {:.1} ms",
        pct(lat, 0.5),
        pct(lat, 0.99),
        pct(lat, 1.0)
    );
    println!(
        "ack → visible (GET /api/v1/entries/{{id}} answers 200, {} sampled batches): p50 {:.1} ms  max {:.1} ms",
        vis.len(),
        pct(vis, 0.5),
        pct(vis, 1.0)
    );
    println!(
        "client CPU: {cpu:.2} s ({:.0} % of one core)",
        cpu / secs * 100.0
    );
    println!(
        "RESULT entries={} secs={secs:.3} eps={eps:.0} mbps={mbs:.2} ipc_bytes={} ack_p50_ms={:.1} ack_p99_ms={:.1} ack_max_ms={:.1} vis_n={} vis_p50_ms={:.1} vis_max_ms={:.1} client_cpu_s={cpu:.2}",
        total.rows,
        total.ipc_bytes,
        pct(lat, 0.5),
        pct(lat, 0.99),
        pct(lat, 1.0),
        vis.len(),
        pct(vis, 0.5),
        pct(vis, 1.0)
    );
    Ok(())
}
