//! The sending side of the ingest protocol, used by agents and `wiretrail import --server`.
//!
//! Batches get consecutive sequence numbers and stay in memory until ingest acknowledges them
//! (at most `window` at a time, which bounds memory and applies backpressure). If the stream
//! breaks or ingest answers `RESOURCE_EXHAUSTED`, the client reconnects with backoff and
//! resends every unacknowledged batch in order; ingest drops the ones it already stored, so
//! nothing is lost or stored twice.
//!
//! With a spool directory, a client that cannot reach ingest keeps accepting batches: the
//! unacknowledged ones and every new one go to disk (one Arrow IPC file per batch, fsynced),
//! bounded by `spool_max_bytes` (beyond it batches are dropped and counted). The spool is
//! drained in sequence order once ingest answers again. The spool also remembers the agent id
//! and the next sequence number, so a restarted sender resumes where it stopped.
//!
//! With a token ([`SenderConfig::token`]) every stream carries `authorization: Bearer …`. A
//! refusal (UNAUTHENTICATED, PERMISSION_DENIED) is not retried: the sender fails at once with
//! the server's message ([`IngestError::Refused`]); batches already spooled stay spooled.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use arrow::ipc::reader::FileReader;
use arrow::ipc::writer::{FileWriter, IpcWriteOptions};
use arrow::ipc::CompressionType;
use arrow::record_batch::RecordBatch;
use arrow_flight::encode::{DictionaryHandling, FlightDataEncoderBuilder};
use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::{FlightData, FlightDescriptor, PutResult};
use futures::{StreamExt, TryStreamExt};
use prost::Message;
use serde::Serialize;
use tokio::sync::mpsc;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::{Channel, Endpoint};
use wiretrail_proto::ingest::{BatchAck, BatchMeta, PutHeader};

use crate::IngestError;

/// Counters of one client.
#[derive(Debug, Default, Clone, Copy, Serialize)]
pub struct SendStats {
    pub batches: u64,
    pub rows: u64,
    pub acked_batches: u64,
    pub acked_rows: u64,
    pub duplicate_batches: u64,
    pub reconnects: u64,
    /// Times ingest answered RESOURCE_EXHAUSTED (busy) and the client backed off.
    pub busy_retries: u64,
    /// Batches written to the spool (each counted once).
    pub spooled_batches: u64,
    /// Bytes in the spool now.
    pub spool_bytes: u64,
    /// Batches dropped because the spool was full.
    pub dropped_spool_full: u64,
    pub dropped_rows: u64,
}

/// How a client behaves when ingest is slow or away.
#[derive(Debug, Clone)]
pub struct SenderConfig {
    /// Unacknowledged batches in flight before `send` waits for acks.
    pub window: usize,
    /// Where batches go while ingest is unreachable (`None`: `send` waits instead).
    pub spool_dir: Option<PathBuf>,
    pub spool_max_bytes: u64,
    /// `finish` (and `send` without a spool) give up after trying this long without progress.
    pub give_up_after: Duration,
    /// Sequence number of the first batch when no spool state says otherwise. Ingest drops a
    /// batch whose number is not above the last one stored for the agent id, so a sender that
    /// restarts under the same id without a spool (a node agent) starts from the clock.
    pub first_seq: u64,
    /// Sent as `authorization: Bearer <token>` on every stream (`up --auth tokens`).
    pub token: Option<BearerToken>,
}

/// A bearer token that never shows in `Debug` output or logs.
#[derive(Clone)]
pub struct BearerToken(String);

impl BearerToken {
    pub fn new(token: impl Into<String>) -> BearerToken {
        BearerToken(token.into())
    }

    /// The `authorization` metadata value, marked sensitive (kept out of HTTP/2 header
    /// compression tables and debug output).
    fn metadata(&self) -> Result<MetadataValue<Ascii>, IngestError> {
        let mut v: MetadataValue<Ascii> = format!("Bearer {}", self.0).parse().map_err(|_| {
            IngestError::Refused("the token holds characters a header cannot carry".into())
        })?;
        v.set_sensitive(true);
        Ok(v)
    }
}

impl std::fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BearerToken(<redacted>)")
    }
}

impl Default for SenderConfig {
    fn default() -> Self {
        SenderConfig {
            window: 16,
            spool_dir: None,
            spool_max_bytes: 1 << 30,
            give_up_after: Duration::from_secs(600),
            first_seq: 1,
            token: None,
        }
    }
}

struct Stream {
    tx: mpsc::Sender<FlightData>,
    acks: tonic::Streaming<PutResult>,
}

pub struct IngestClient {
    endpoint: Endpoint,
    agent_id: String,
    next_seq: u64,
    config: SenderConfig,
    unacked: VecDeque<(u64, RecordBatch)>,
    stream: Option<Stream>,
    stats: SendStats,
    /// Sequence numbers waiting in the spool, oldest first.
    spooled: VecDeque<u64>,
    /// While ingest is away with a spool configured: when to try again.
    retry_at: Option<(Instant, Duration)>,
}

fn client_err(e: impl std::fmt::Display) -> IngestError {
    IngestError::Unavailable(format!("ingest connection: {e}"))
}

fn is_busy(e: &IngestError) -> bool {
    e.to_string().contains("busy")
}

fn spool_err(path: &Path) -> impl FnOnce(std::io::Error) -> IngestError + '_ {
    move |e| IngestError::Unavailable(format!("spool {}: {e}", path.display()))
}

/// Encodes one batch as Flight messages: schema, dictionaries, then the record batch, every
/// message carrying the batch's sequence number (LZ4-compressed Arrow IPC).
async fn encode(
    agent_id: &str,
    seq: u64,
    batch: &RecordBatch,
) -> Result<Vec<FlightData>, IngestError> {
    let options = IpcWriteOptions::default()
        .try_with_compression(Some(CompressionType::LZ4_FRAME))
        .map_err(IngestError::Arrow)?;
    let header = PutHeader {
        agent_id: agent_id.to_string(),
    };
    let meta = BatchMeta { batch_seq: seq }.encode_to_vec();
    let stream = FlightDataEncoderBuilder::new()
        .with_options(options)
        .with_dictionary_handling(DictionaryHandling::Resend)
        // Never split a batch: a batch is the unit of acknowledgement.
        .with_max_flight_data_size(usize::MAX)
        .with_flight_descriptor(Some(FlightDescriptor::new_cmd(header.encode_to_vec())))
        .build(futures::stream::iter([Ok(batch.clone())]));
    let mut msgs: Vec<FlightData> = stream.try_collect().await.map_err(client_err)?;
    for m in &mut msgs {
        m.app_metadata = meta.clone().into();
    }
    Ok(msgs)
}

impl IngestClient {
    /// `url` is the Flight endpoint of ingest, e.g. `http://127.0.0.1:8081`.
    pub fn new(url: &str, agent_id: impl Into<String>) -> Result<Self, IngestError> {
        Self::with_config(url, agent_id, SenderConfig::default())
    }

    /// A client with a spool and limits. When the spool directory already holds a previous
    /// sender's state, its agent id and sequence numbers are resumed and its spooled batches
    /// are sent first.
    pub fn with_config(
        url: &str,
        agent_id: impl Into<String>,
        config: SenderConfig,
    ) -> Result<Self, IngestError> {
        let endpoint = Endpoint::from_shared(url.to_string())
            .map_err(|e| IngestError::Unavailable(format!("invalid ingest URL {url:?}: {e}")))?
            .connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true);
        let mut c = IngestClient {
            endpoint,
            agent_id: agent_id.into(),
            next_seq: config.first_seq.max(1),
            config,
            unacked: VecDeque::new(),
            stream: None,
            stats: SendStats::default(),
            spooled: VecDeque::new(),
            retry_at: None,
        };
        c.open_spool()?;
        Ok(c)
    }

    pub fn stats(&self) -> SendStats {
        self.stats
    }

    pub fn agent_id(&self) -> &str {
        &self.agent_id
    }

    /// Highest sequence number ingest has acknowledged (every lower one is acknowledged too).
    pub fn acked_through(&self) -> u64 {
        let oldest = self
            .spooled
            .front()
            .copied()
            .into_iter()
            .chain(self.unacked.front().map(|(s, _)| *s))
            .min();
        oldest.unwrap_or(self.next_seq).saturating_sub(1)
    }

    fn open_spool(&mut self) -> Result<(), IngestError> {
        let Some(dir) = self.config.spool_dir.clone() else {
            return Ok(());
        };
        std::fs::create_dir_all(&dir).map_err(spool_err(&dir))?;
        let state = dir.join("sender.json");
        if let Ok(b) = std::fs::read(&state) {
            let v: serde_json::Value = serde_json::from_slice(&b)
                .map_err(|e| IngestError::Unavailable(format!("{}: {e}", state.display())))?;
            if let (Some(a), Some(n)) = (v["agent_id"].as_str(), v["next_seq"].as_u64()) {
                self.agent_id = a.to_string();
                self.next_seq = self.next_seq.max(n);
            }
        }
        let mut seqs = Vec::new();
        for e in std::fs::read_dir(&dir).map_err(spool_err(&dir))? {
            let e = e.map_err(spool_err(&dir))?;
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(seq) = name
                .strip_suffix(".arrow")
                .and_then(|s| s.parse::<u64>().ok())
            {
                self.stats.spool_bytes += e.metadata().map(|m| m.len()).unwrap_or(0);
                seqs.push(seq);
            } else if name.ends_with(".tmp") {
                let _ = std::fs::remove_file(e.path());
            }
        }
        seqs.sort_unstable();
        if let Some(last) = seqs.last() {
            self.next_seq = self.next_seq.max(last + 1);
            tracing::info!(batches = seqs.len(), dir = %dir.display(), "resuming spooled batches");
        }
        self.spooled = seqs.into();
        self.save_state()
    }

    fn save_state(&self) -> Result<(), IngestError> {
        let Some(dir) = &self.config.spool_dir else {
            return Ok(());
        };
        let state = dir.join("sender.json");
        let tmp = dir.join("sender.json.tmp");
        let body = serde_json::json!({"agent_id": self.agent_id, "next_seq": self.next_seq});
        std::fs::write(&tmp, body.to_string()).map_err(spool_err(&tmp))?;
        std::fs::rename(&tmp, &state).map_err(spool_err(&state))
    }

    fn spool_path(&self, seq: u64) -> Option<PathBuf> {
        self.config
            .spool_dir
            .as_ref()
            .map(|d| d.join(format!("{seq:020}.arrow")))
    }

    /// Writes a batch to the spool (or drops it, counted, when the spool is full).
    fn spool(&mut self, seq: u64, batch: &RecordBatch) -> Result<(), IngestError> {
        let path = self.spool_path(seq).expect("spooling needs a spool dir");
        let size = batch.get_array_memory_size() as u64;
        if self.stats.spool_bytes + size / 2 > self.config.spool_max_bytes {
            self.stats.dropped_spool_full += 1;
            self.stats.dropped_rows += batch.num_rows() as u64;
            tracing::warn!(seq, rows = batch.num_rows(), "spool full: batch dropped");
            return Ok(());
        }
        let tmp = path.with_extension("arrow.tmp");
        let res = (|| -> Result<u64, IngestError> {
            let file = std::fs::File::create(&tmp).map_err(spool_err(&tmp))?;
            let opts = IpcWriteOptions::default()
                .try_with_compression(Some(CompressionType::LZ4_FRAME))?;
            let mut w = FileWriter::try_new_with_options(file, &batch.schema(), opts)?;
            w.write(batch)?;
            w.finish()?;
            let file = w.into_inner()?;
            file.sync_all().map_err(spool_err(&tmp))?;
            std::fs::rename(&tmp, &path).map_err(spool_err(&path))?;
            Ok(std::fs::metadata(&path).map(|m| m.len()).unwrap_or(size))
        })();
        match res {
            Ok(bytes) => {
                self.stats.spool_bytes += bytes;
                self.stats.spooled_batches += 1;
                self.spooled.push_back(seq);
                Ok(())
            }
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                self.stats.dropped_spool_full += 1;
                self.stats.dropped_rows += batch.num_rows() as u64;
                tracing::error!(seq, error = %e, "cannot write the spool: batch dropped");
                Ok(())
            }
        }
    }

    fn read_spooled(&self, seq: u64) -> Result<RecordBatch, IngestError> {
        let path = self
            .spool_path(seq)
            .expect("spooled batches have a spool dir");
        let file = std::fs::File::open(&path).map_err(spool_err(&path))?;
        let mut r = FileReader::try_new(file, None)?;
        r.next()
            .transpose()?
            .ok_or_else(|| IngestError::Unavailable(format!("{}: empty", path.display())))
    }

    fn unspool(&mut self, seq: u64) {
        if let Some(p) = self.spool_path(seq) {
            let len = std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
            if std::fs::remove_file(&p).is_ok() {
                self.stats.spool_bytes = self.stats.spool_bytes.saturating_sub(len);
            }
        }
    }

    async fn open_stream(&self) -> Result<Stream, IngestError> {
        let channel: Channel = self.endpoint.connect().await.map_err(client_err)?;
        let auth = self
            .config
            .token
            .as_ref()
            .map(BearerToken::metadata)
            .transpose()?;
        let mut client = FlightServiceClient::with_interceptor(
            channel,
            move |mut req: tonic::Request<()>| -> Result<tonic::Request<()>, tonic::Status> {
                if let Some(v) = &auth {
                    req.metadata_mut().insert("authorization", v.clone());
                }
                Ok(req)
            },
        )
        .max_decoding_message_size(256 << 20)
        .max_encoding_message_size(256 << 20);
        let (tx, rx) = mpsc::channel::<FlightData>(64);
        let req = crate::util::receiver_stream(rx);
        let acks = client
            .do_put(req)
            .await
            .map_err(|s| self.status_err(s))?
            .into_inner();
        Ok(Stream { tx, acks })
    }

    /// A refusal of our credentials is final ([`IngestError::Refused`]); anything else is a
    /// connection problem worth retrying.
    fn status_err(&self, status: tonic::Status) -> IngestError {
        match status.code() {
            tonic::Code::Unauthenticated | tonic::Code::PermissionDenied => {
                IngestError::Refused(format!(
                    "ingest at {} refused this sender ({:?}): {}",
                    self.endpoint.uri(),
                    status.code(),
                    status.message()
                ))
            }
            tonic::Code::ResourceExhausted => IngestError::Busy { bytes: 0, limit: 0 },
            _ => client_err(status),
        }
    }

    async fn write(&mut self, seq: u64, batch: &RecordBatch) -> Result<(), IngestError> {
        let msgs = encode(&self.agent_id, seq, batch).await?;
        let s = self
            .stream
            .as_ref()
            .ok_or_else(|| client_err("not connected"))?;
        for m in msgs {
            s.tx.send(m)
                .await
                .map_err(|_| client_err("stream closed by ingest"))?;
        }
        Ok(())
    }

    /// Waits for the next acknowledgement and retires the batches it covers.
    async fn read_ack(&mut self) -> Result<(), IngestError> {
        let s = self
            .stream
            .as_mut()
            .ok_or_else(|| client_err("not connected"))?;
        let msg = match s.acks.next().await {
            None => return Err(client_err("ingest closed the stream")),
            Some(Err(status)) => return Err(self.status_err(status)),
            Some(Ok(m)) => m,
        };
        let ack = BatchAck::decode(msg.app_metadata.as_ref()).map_err(client_err)?;
        while let Some((seq, batch)) = self.unacked.front() {
            if *seq > ack.batch_seq {
                break;
            }
            self.stats.acked_batches += 1;
            self.stats.acked_rows += batch.num_rows() as u64;
            if *seq == ack.batch_seq && ack.duplicate {
                self.stats.duplicate_batches += 1;
            }
            let seq = *seq;
            self.unacked.pop_front();
            self.unspool(seq);
        }
        Ok(())
    }

    /// One reconnect attempt: a new stream, then every unacknowledged batch again.
    async fn reconnect(&mut self) -> Result<(), IngestError> {
        self.stats.reconnects += 1;
        self.stream = None;
        self.stream = Some(self.open_stream().await?);
        let pending: Vec<(u64, RecordBatch)> = self.unacked.iter().cloned().collect();
        for (seq, b) in &pending {
            self.write(*seq, b).await?;
        }
        Ok(())
    }

    /// Without a spool: reconnects with backoff until it works or `give_up_after` passes.
    async fn recover(&mut self, first: IngestError) -> Result<(), IngestError> {
        let started = Instant::now();
        let mut err = first;
        let mut delay = Duration::from_millis(100);
        loop {
            if err.is_refused() {
                return Err(err);
            }
            if is_busy(&err) {
                self.stats.busy_retries += 1;
            }
            if started.elapsed() >= self.config.give_up_after {
                return Err(IngestError::Unavailable(format!(
                    "gave up after {:?}; {} batches were not acknowledged: {err}",
                    self.config.give_up_after,
                    self.unacked.len()
                )));
            }
            tracing::warn!(error = %err, unacked = self.unacked.len(), "ingest stream failed; reconnecting");
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(5));
            match self.reconnect().await {
                Ok(()) => return Ok(()),
                Err(e) => err = e,
            }
        }
    }

    /// With a spool: moves the in-flight batches to disk and schedules a later retry.
    fn go_offline(&mut self, err: &IngestError) -> Result<(), IngestError> {
        if is_busy(err) {
            self.stats.busy_retries += 1;
        }
        let delay = self.retry_at.map_or(Duration::from_millis(200), |(_, d)| {
            (d * 2).min(Duration::from_secs(5))
        });
        if self.retry_at.is_none() {
            tracing::warn!(error = %err, "ingest unreachable: spooling batches to disk");
        }
        self.retry_at = Some((Instant::now() + delay, delay));
        self.stream = None;
        // In-flight batches go first so the spool stays in sequence order. Those that came
        // from the spool are still on disk (a spooled file goes only when acknowledged).
        let inflight: Vec<(u64, RecordBatch)> = self.unacked.drain(..).collect();
        let mut spooled: VecDeque<u64> = std::mem::take(&mut self.spooled);
        for (seq, b) in inflight.iter().rev() {
            let on_disk = self.spool_path(*seq).is_some_and(|p| p.exists());
            if !on_disk {
                self.spool(*seq, b)?;
                if self.spooled.pop_back() != Some(*seq) {
                    continue; // dropped: the spool is full
                }
            }
            spooled.push_front(*seq);
        }
        self.spooled = spooled;
        Ok(())
    }

    /// With a spool: tries to reconnect and drain it if the retry time has come. Returns true
    /// when online.
    async fn try_online(&mut self, force: bool) -> Result<bool, IngestError> {
        if let Some((at, _)) = self.retry_at {
            if !force && Instant::now() < at {
                return Ok(false);
            }
        }
        let res = async {
            if self.stream.is_none() {
                self.reconnect().await?;
            }
            while let Some(seq) = self.spooled.front().copied() {
                let batch = self.read_spooled(seq)?;
                self.write(seq, &batch).await?;
                self.spooled.pop_front();
                self.unacked.push_back((seq, batch));
                while self.unacked.len() >= self.config.window {
                    self.read_ack().await?;
                }
            }
            Ok::<(), IngestError>(())
        }
        .await;
        match res {
            Ok(()) => {
                if self.retry_at.take().is_some() {
                    tracing::info!("ingest reachable again: spool drained");
                }
                Ok(true)
            }
            Err(e) if e.is_refused() => Err(e),
            Err(e) => {
                self.go_offline(&e)?;
                Ok(false)
            }
        }
    }

    /// Queues a batch; returns once it is sent or spooled (not necessarily acknowledged).
    pub async fn send(&mut self, batch: RecordBatch) -> Result<(), IngestError> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.stats.batches += 1;
        self.stats.rows += batch.num_rows() as u64;
        if self.config.spool_dir.is_some() {
            self.save_state()?;
            let online = (self.retry_at.is_none() && self.stream.is_some())
                || self.try_online(false).await?;
            if !online {
                return self.spool(seq, &batch);
            }
            self.unacked.push_back((seq, batch.clone()));
            let res = async {
                self.write(seq, &batch).await?;
                while self.unacked.len() >= self.config.window {
                    self.read_ack().await?;
                }
                Ok::<(), IngestError>(())
            }
            .await;
            if let Err(e) = res {
                if e.is_refused() {
                    return Err(e);
                }
                self.go_offline(&e)?;
            }
            return Ok(());
        }
        if self.stream.is_none() {
            if let Err(e) = self.open_stream().await.map(|s| self.stream = Some(s)) {
                self.recover(e).await?;
            }
        }
        self.unacked.push_back((seq, batch.clone()));
        if let Err(e) = self.write(seq, &batch).await {
            self.recover(e).await?;
        }
        while self.unacked.len() >= self.config.window {
            if let Err(e) = self.read_ack().await {
                self.recover(e).await?;
            }
        }
        Ok(())
    }

    /// Waits until every batch (including spooled ones) is acknowledged, retrying for up to
    /// `give_up_after` without progress. On failure the spool keeps what was not sent.
    pub async fn finish(mut self) -> Result<SendStats, IngestError> {
        let mut last_progress = Instant::now();
        let mut acked = self.stats.acked_batches;
        loop {
            if self.config.spool_dir.is_some()
                && !self.spooled.is_empty()
                && !self.try_online(true).await?
            {
                if last_progress.elapsed() >= self.config.give_up_after {
                    return Err(IngestError::Unavailable(format!(
                        "ingest unreachable for {:?}; {} batches stay spooled in {} and are sent by the next run with the same spool",
                        self.config.give_up_after,
                        self.spooled.len(),
                        self.config.spool_dir.as_deref().unwrap_or(Path::new("")).display()
                    )));
                }
                let wait = self.retry_at.map_or(Duration::from_millis(200), |(_, d)| d);
                tokio::time::sleep(wait).await;
                continue;
            }
            if self.unacked.is_empty() && self.spooled.is_empty() {
                self.save_state()?;
                return Ok(self.stats);
            }
            if let Err(e) = self.read_ack().await {
                if e.is_refused() {
                    return Err(e);
                }
                if self.config.spool_dir.is_some() {
                    self.go_offline(&e)?;
                } else {
                    self.recover(e).await?;
                }
            }
            if self.stats.acked_batches > acked {
                acked = self.stats.acked_batches;
                last_progress = Instant::now();
            }
        }
    }
}
