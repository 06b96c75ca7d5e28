//! The Arrow Flight endpoint agents ship to. Only `DoPut` is served: the first message's
//! descriptor carries a [`PutHeader`] (who is sending), each record batch message carries a
//! [`BatchMeta`] (its sequence number) in `app_metadata`, and every batch is answered with a
//! `PutResult` holding a [`BatchAck`] once it is durable.

use std::pin::Pin;
use std::sync::Arc;

use arrow_flight::decode::{DecodedPayload, FlightDataDecoder};
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::{FlightService, FlightServiceServer};
use arrow_flight::{
    Action, ActionType, Criteria, Empty, FlightData, FlightDescriptor, FlightInfo,
    HandshakeRequest, HandshakeResponse, PollInfo, PutResult, SchemaResult, Ticket,
};
use futures::{Stream, StreamExt, TryStreamExt};
use prost::Message;
use tonic::{Request, Response, Status, Streaming};
use wiretrail_proto::ingest::{BatchAck, BatchMeta, PutHeader};

use crate::Ingest;

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// Flight service backed by an [`Ingest`].
pub struct IngestFlightService {
    ingest: Arc<Ingest>,
}

impl IngestFlightService {
    pub fn new(ingest: Arc<Ingest>) -> Self {
        IngestFlightService { ingest }
    }

    /// The tonic service, with message limits large enough for 64 MiB batches.
    pub fn into_server(self) -> FlightServiceServer<Self> {
        FlightServiceServer::new(self)
            .max_decoding_message_size(256 << 20)
            .max_encoding_message_size(256 << 20)
    }
}

fn unsupported<T>(what: &str) -> Result<T, Status> {
    Err(Status::unimplemented(format!(
        "{what} is not served by wiretrail ingest; ship entries with DoPut (queries go to the REST API)"
    )))
}

#[tonic::async_trait]
impl FlightService for IngestFlightService {
    type HandshakeStream = BoxStream<HandshakeResponse>;
    type ListFlightsStream = BoxStream<FlightInfo>;
    type DoGetStream = BoxStream<FlightData>;
    type DoPutStream = BoxStream<PutResult>;
    type DoExchangeStream = BoxStream<FlightData>;
    type DoActionStream = BoxStream<arrow_flight::Result>;
    type ListActionsStream = BoxStream<ActionType>;

    async fn handshake(
        &self,
        _: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<Self::HandshakeStream>, Status> {
        unsupported("Handshake")
    }
    async fn list_flights(
        &self,
        _: Request<Criteria>,
    ) -> Result<Response<Self::ListFlightsStream>, Status> {
        unsupported("ListFlights")
    }
    async fn get_flight_info(
        &self,
        _: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        unsupported("GetFlightInfo")
    }
    async fn poll_flight_info(
        &self,
        _: Request<FlightDescriptor>,
    ) -> Result<Response<PollInfo>, Status> {
        unsupported("PollFlightInfo")
    }
    async fn get_schema(
        &self,
        _: Request<FlightDescriptor>,
    ) -> Result<Response<SchemaResult>, Status> {
        unsupported("GetSchema")
    }
    async fn do_get(&self, _: Request<Ticket>) -> Result<Response<Self::DoGetStream>, Status> {
        unsupported("DoGet")
    }
    async fn do_exchange(
        &self,
        _: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoExchangeStream>, Status> {
        unsupported("DoExchange")
    }
    async fn do_action(
        &self,
        _: Request<Action>,
    ) -> Result<Response<Self::DoActionStream>, Status> {
        unsupported("DoAction")
    }
    async fn list_actions(
        &self,
        _: Request<Empty>,
    ) -> Result<Response<Self::ListActionsStream>, Status> {
        unsupported("ListActions")
    }

    async fn do_put(
        &self,
        request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoPutStream>, Status> {
        let input = request
            .into_inner()
            .map_err(|e| FlightError::Tonic(Box::new(e)));
        let mut decoder = FlightDataDecoder::new(input);
        let ingest = self.ingest.clone();
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<PutResult, Status>>(64);
        tokio::spawn(async move {
            let mut agent: Option<String> = None;
            while let Some(msg) = decoder.next().await {
                let res: Result<Option<PutResult>, Status> = async {
                    let msg =
                        msg.map_err(|e| Status::invalid_argument(format!("bad Flight data: {e}")))?;
                    if agent.is_none() {
                        if let Some(desc) = &msg.inner.flight_descriptor {
                            let h = PutHeader::decode(desc.cmd.as_ref()).map_err(|e| {
                                Status::invalid_argument(format!(
                                    "descriptor cmd is not a PutHeader: {e}"
                                ))
                            })?;
                            if h.agent_id.is_empty() {
                                return Err(Status::invalid_argument(
                                    "PutHeader.agent_id is empty",
                                ));
                            }
                            agent = Some(h.agent_id);
                        }
                    }
                    let DecodedPayload::RecordBatch(batch) = msg.payload else {
                        return Ok(None);
                    };
                    let agent = agent.as_deref().ok_or_else(|| {
                        Status::invalid_argument(
                            "the first message must carry a FlightDescriptor with a PutHeader",
                        )
                    })?;
                    let meta = BatchMeta::decode(msg.inner.app_metadata.as_ref()).map_err(|e| {
                        Status::invalid_argument(format!("app_metadata is not a BatchMeta: {e}"))
                    })?;
                    if meta.batch_seq == 0 {
                        return Err(Status::invalid_argument(
                            "BatchMeta.batch_seq must start at 1",
                        ));
                    }
                    let done = ingest.append(agent, meta.batch_seq, batch).await?;
                    let ack = BatchAck {
                        batch_seq: meta.batch_seq,
                        duplicate: done.duplicate,
                        rows: done.rows as u32,
                    };
                    Ok(Some(PutResult {
                        app_metadata: ack.encode_to_vec().into(),
                    }))
                }
                .await;
                match res {
                    Ok(None) => {}
                    Ok(Some(r)) => {
                        if tx.send(Ok(r)).await.is_err() {
                            return;
                        }
                    }
                    Err(status) => {
                        tracing::warn!(%status, "DoPut stream rejected");
                        let _ = tx.send(Err(status)).await;
                        return;
                    }
                }
            }
        });
        let out = crate::util::receiver_stream(rx);
        Ok(Response::new(Box::pin(out)))
    }
}
