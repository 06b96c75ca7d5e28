//! The sending side of the ingest protocol, used by agents and `wiretrail import --server`.
//!
//! Batches get consecutive sequence numbers and stay in memory until ingest acknowledges them
//! (at most `window` at a time, which bounds memory and applies backpressure). If the stream
//! breaks, the client reconnects with backoff and resends every unacknowledged batch in order;
//! ingest drops the ones it already stored, so nothing is lost or stored twice.

use std::collections::VecDeque;
use std::time::Duration;

use arrow::ipc::writer::IpcWriteOptions;
use arrow::ipc::CompressionType;
use arrow::record_batch::RecordBatch;
use arrow_flight::encode::{DictionaryHandling, FlightDataEncoderBuilder};
use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::{FlightData, FlightDescriptor, PutResult};
use futures::{StreamExt, TryStreamExt};
use prost::Message;
use tokio::sync::mpsc;
use tonic::transport::{Channel, Endpoint};
use wiretrail_proto::ingest::{BatchAck, BatchMeta, PutHeader};

use crate::IngestError;

/// Counters of one client.
#[derive(Debug, Default, Clone, Copy)]
pub struct SendStats {
    pub batches: u64,
    pub rows: u64,
    pub acked_rows: u64,
    pub duplicate_batches: u64,
    pub reconnects: u64,
}

struct Stream {
    tx: mpsc::Sender<FlightData>,
    acks: tonic::Streaming<PutResult>,
}

pub struct IngestClient {
    endpoint: Endpoint,
    agent_id: String,
    next_seq: u64,
    window: usize,
    unacked: VecDeque<(u64, RecordBatch)>,
    stream: Option<Stream>,
    stats: SendStats,
    max_retries: u32,
}

fn client_err(e: impl std::fmt::Display) -> IngestError {
    IngestError::Task(format!("ingest connection: {e}"))
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
        let endpoint = Endpoint::from_shared(url.to_string())
            .map_err(|e| IngestError::Task(format!("invalid ingest URL {url:?}: {e}")))?
            .connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true);
        Ok(IngestClient {
            endpoint,
            agent_id: agent_id.into(),
            next_seq: 1,
            window: 16,
            unacked: VecDeque::new(),
            stream: None,
            stats: SendStats::default(),
            max_retries: 8,
        })
    }

    pub fn stats(&self) -> SendStats {
        self.stats
    }

    async fn open_stream(&self) -> Result<Stream, IngestError> {
        let channel: Channel = self.endpoint.connect().await.map_err(client_err)?;
        let mut client = FlightServiceClient::new(channel)
            .max_decoding_message_size(256 << 20)
            .max_encoding_message_size(256 << 20);
        let (tx, rx) = mpsc::channel::<FlightData>(64);
        let req = crate::util::receiver_stream(rx);
        let acks = client.do_put(req).await.map_err(client_err)?.into_inner();
        Ok(Stream { tx, acks })
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

    /// Waits for the oldest unacknowledged batch's acknowledgement.
    async fn read_ack(&mut self) -> Result<(), IngestError> {
        let s = self
            .stream
            .as_mut()
            .ok_or_else(|| client_err("not connected"))?;
        let msg = s
            .acks
            .next()
            .await
            .ok_or_else(|| client_err("ingest closed the stream"))?
            .map_err(client_err)?;
        let ack = BatchAck::decode(msg.app_metadata.as_ref()).map_err(client_err)?;
        while let Some((seq, batch)) = self.unacked.front() {
            if *seq > ack.batch_seq {
                break;
            }
            if *seq == ack.batch_seq {
                self.stats.acked_rows += batch.num_rows() as u64;
                if ack.duplicate {
                    self.stats.duplicate_batches += 1;
                }
            }
            self.unacked.pop_front();
        }
        Ok(())
    }

    /// Reconnects and resends every unacknowledged batch, with exponential backoff.
    async fn recover(&mut self, first: IngestError) -> Result<(), IngestError> {
        let mut err = first;
        let mut delay = Duration::from_millis(100);
        for attempt in 1..=self.max_retries {
            tracing::warn!(error = %err, attempt, unacked = self.unacked.len(), "ingest stream failed; reconnecting");
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(5));
            self.stats.reconnects += 1;
            self.stream = None;
            let res = async {
                self.stream = Some(self.open_stream().await?);
                let pending: Vec<(u64, RecordBatch)> = self.unacked.iter().cloned().collect();
                for (seq, b) in &pending {
                    self.write(*seq, b).await?;
                }
                Ok::<(), IngestError>(())
            }
            .await;
            match res {
                Ok(()) => return Ok(()),
                Err(e) => err = e,
            }
        }
        Err(IngestError::Task(format!(
            "gave up after {} attempts; {} batches were not acknowledged: {err}",
            self.max_retries,
            self.unacked.len()
        )))
    }

    /// Queues a batch; returns once it is sent (not necessarily acknowledged).
    pub async fn send(&mut self, batch: RecordBatch) -> Result<(), IngestError> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        if self.stream.is_none() {
            match self.open_stream().await {
                Ok(s) => self.stream = Some(s),
                Err(e) => self.recover(e).await?,
            }
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.stats.batches += 1;
        self.stats.rows += batch.num_rows() as u64;
        self.unacked.push_back((seq, batch.clone()));
        if let Err(e) = self.write(seq, &batch).await {
            self.recover(e).await?;
        }
        while self.unacked.len() >= self.window {
            if let Err(e) = self.read_ack().await {
                self.recover(e).await?;
            }
        }
        Ok(())
    }

    /// Waits until every batch is acknowledged (durable in ingest).
    pub async fn finish(mut self) -> Result<SendStats, IngestError> {
        while !self.unacked.is_empty() {
            if let Err(e) = self.read_ack().await {
                self.recover(e).await?;
            }
        }
        Ok(self.stats)
    }
}
