//! The log server: the event log served over gRPC (`klaxond serve log`).
//!
//! Reads and subscriptions are served from the [`Log`] in this process.
//! Writes (appends and checkpoints) go through a [`Writes`]: the same log
//! for a single log server, or a replicated group (`klaxon-raft`), which
//! refuses them on a node that is not the leader
//! ([`WriteError::NotLeader`]).

use std::pin::Pin;
use std::sync::Arc;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use klaxon_log::{Appended, ExpectedVersion, Log, NewEvent, Position, StreamId, StreamVersion};
use klaxon_proto::v1::event_log_server::{EventLog as EventLogRpc, EventLogServer};
use klaxon_proto::v1::{
    LogAppendRequest, LogAppendResponse, LogCheckpoint, LogHeadRequest, LogHeadResponse, LogLoadCheckpointRequest,
    LogLocateRequest, LogLocateResponse, LogReadAllRequest, LogReadOneRequest, LogReadStreamRequest, LogRecord,
    LogRecords, LogSaveCheckpointRequest, LogStreamVersionRequest, LogStreamVersionResponse, LogSubscribeRequest,
};
use tokio_stream::Stream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};
use tracing::Instrument;

use crate::wire;

/// Records per response at most, whatever the request asks.
pub const RECORDS_PER_RESPONSE_MAX: usize = 1024;
/// Record bytes per response at most (gRPC's default message limit is 4 MiB).
pub const BYTES_PER_RESPONSE_MAX: usize = 2 * 1024 * 1024;

/// Why a write was not done.
#[derive(Debug)]
pub enum WriteError {
    /// The log refused it or failed (as [`Log::append`]).
    Log(klaxon_log::Error),
    /// This node of a group is not its leader; `leader` is the leader's
    /// address when known. Nothing was written: retry there.
    NotLeader {
        /// The leader's address.
        leader: Option<String>,
    },
}

impl std::fmt::Display for WriteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WriteError::Log(e) => e.fmt(f),
            WriteError::NotLeader { leader: Some(leader) } => {
                write!(f, "this log server is not the leader; the leader is {leader}")
            }
            WriteError::NotLeader { leader: None } => {
                f.write_str("this log server is not the leader, and no leader is known yet")
            }
        }
    }
}

impl klaxon_domain::class::Classify for WriteError {
    fn class(&self) -> klaxon_domain::class::Class {
        match self {
            WriteError::Log(e) => e.class(),
            WriteError::NotLeader { .. } => klaxon_domain::class::Class::Unavailable,
        }
    }

    fn current_version(&self) -> Option<u64> {
        match self {
            WriteError::Log(e) => e.current_version(),
            WriteError::NotLeader { .. } => None,
        }
    }

    /// The leader's address, for a follower's refusal.
    fn leader_hint(&self) -> Option<&str> {
        match self {
            WriteError::Log(_) => None,
            WriteError::NotLeader { leader } => leader.as_deref(),
        }
    }
}

impl From<klaxon_log::Error> for WriteError {
    fn from(e: klaxon_log::Error) -> WriteError {
        WriteError::Log(e)
    }
}

/// Where the log server's writes go. Implemented by [`Log`] (a single log
/// server) and by `klaxon-raft`'s group (a replicated log).
pub trait Writes: Send + Sync + 'static {
    /// Appends as [`Log::append`] does, answered once durable (and, in a
    /// group, committed).
    fn append<'a>(
        &'a self,
        stream: &'a StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> BoxFuture<'a, Result<Appended, WriteError>>;
    /// Saves a consumer checkpoint as [`Log::save_checkpoint`] does.
    fn save_checkpoint<'a>(&'a self, name: &'a str, position: Position) -> BoxFuture<'a, Result<(), WriteError>>;
}

impl Writes for Log {
    fn append<'a>(
        &'a self,
        stream: &'a StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> BoxFuture<'a, Result<Appended, WriteError>> {
        Box::pin(async move { Ok(Log::append(self, stream, expected, events).await?) })
    }

    fn save_checkpoint<'a>(&'a self, name: &'a str, position: Position) -> BoxFuture<'a, Result<(), WriteError>> {
        Box::pin(async move { Ok(Log::save_checkpoint(self, name, position).await?) })
    }
}

/// The gRPC service over one open [`Log`].
#[derive(Clone)]
pub struct LogServer {
    log: Log,
    writes: Arc<dyn Writes>,
    shutdown: CancellationToken,
}

impl LogServer {
    /// Serves `log`, reads and writes; subscriptions end when `shutdown` is
    /// cancelled.
    pub fn new(log: Log, shutdown: CancellationToken) -> LogServer {
        LogServer { writes: Arc::new(log.clone()), log, shutdown }
    }

    /// Serves reads from `log` and sends writes to `writes` (a group whose
    /// state machine is `log`).
    pub fn with_writes(log: Log, writes: Arc<dyn Writes>, shutdown: CancellationToken) -> LogServer {
        LogServer { log, writes, shutdown }
    }

    /// The tonic service.
    pub fn into_server(self) -> EventLogServer<LogServer> {
        EventLogServer::new(self)
    }
}

fn status(e: klaxon_log::Error) -> Status {
    wire::to_status(&e)
}

fn stream_id(s: String) -> Result<StreamId, Status> {
    StreamId::new(s).map_err(status)
}

fn limit(max: u32) -> usize {
    if max == 0 { RECORDS_PER_RESPONSE_MAX } else { (max as usize).min(RECORDS_PER_RESPONSE_MAX) }
}

/// Records as a response: cut at the byte limit (never below one record),
/// `more` when cut or when the count limit, not the request, ended it.
fn batch(records: Vec<klaxon_log::Record>, asked: u32) -> LogRecords {
    let mut out = Vec::with_capacity(records.len());
    let mut bytes = 0;
    let read = records.len();
    for record in &records {
        let wire = wire::record_to_wire(record);
        bytes += wire.bytes.len();
        if !out.is_empty() && bytes > BYTES_PER_RESPONSE_MAX {
            break;
        }
        out.push(wire);
    }
    let asked = if asked == 0 { usize::MAX } else { asked as usize };
    let more = out.len() < read || (read == RECORDS_PER_RESPONSE_MAX && asked > read);
    LogRecords { records: out, more }
}

type RecordStream = Pin<Box<dyn Stream<Item = Result<LogRecords, Status>> + Send>>;

/// A `log.append` span below the caller's, when the request carries a
/// `traceparent` (an append outside any trace, such as a checkpoint, gets
/// none rather than a trace of its own).
fn append_span(request: &Request<LogAppendRequest>) -> tracing::Span {
    let traceparent = request.metadata().get("traceparent").and_then(|v| v.to_str().ok());
    match traceparent.filter(|t| klaxon_log::is_traceparent(t)) {
        Some(traceparent) => {
            let r = request.get_ref();
            let span = tracing::info_span!(parent: None, "log.append", stream = %r.stream, events = r.events.len());
            klaxon_telemetry::Traced::new(span, Some(traceparent)).span().clone()
        }
        None => tracing::Span::none(),
    }
}

#[tonic::async_trait]
impl EventLogRpc for LogServer {
    async fn append(&self, request: Request<LogAppendRequest>) -> Result<Response<LogAppendResponse>, Status> {
        let span = append_span(&request);
        let r = request.into_inner();
        let stream = stream_id(r.stream)?;
        let expected = wire::expected_from_wire(&r.expected, r.expected_version).map_err(status)?;
        let events = r.events.into_iter().map(wire::event_from_wire).collect::<Result<Vec<_>, _>>().map_err(status)?;
        let appended = self
            .writes
            .append(&stream, expected, events)
            .instrument(span)
            .await
            .map_err(|e| wire::write_error_to_status(&e))?;
        Ok(Response::new(LogAppendResponse {
            first: appended.first.0,
            last: appended.last.0,
            next_version: appended.next_version.0,
            deduplicated: appended.deduplicated,
        }))
    }

    async fn read_all(&self, request: Request<LogReadAllRequest>) -> Result<Response<LogRecords>, Status> {
        let r = request.into_inner();
        let records = self.log.read_all(Position(r.from), limit(r.max)).map_err(status)?;
        Ok(Response::new(batch(records, r.max)))
    }

    async fn read_stream(&self, request: Request<LogReadStreamRequest>) -> Result<Response<LogRecords>, Status> {
        let r = request.into_inner();
        let stream = stream_id(r.stream)?;
        let records = self.log.read_stream(&stream, StreamVersion(r.from), limit(r.max)).map_err(status)?;
        Ok(Response::new(batch(records, r.max)))
    }

    async fn read_one(&self, request: Request<LogReadOneRequest>) -> Result<Response<LogRecord>, Status> {
        let record = self.log.read_one(Position(request.into_inner().position)).map_err(status)?;
        Ok(Response::new(wire::record_to_wire(&record)))
    }

    async fn locate(&self, request: Request<LogLocateRequest>) -> Result<Response<LogLocateResponse>, Status> {
        let id = request.into_inner().id;
        let id = uuid::Uuid::parse_str(&id)
            .map_err(|e| status(klaxon_log::Error::Rejected { message: format!("event id {id:?}: {e}") }))?;
        let found = self.log.locate(id).map_err(status)?;
        Ok(Response::new(match found {
            Some((position, stream, version)) => {
                LogLocateResponse { found: true, position: position.0, stream: stream.to_string(), version: version.0 }
            }
            None => LogLocateResponse::default(),
        }))
    }

    async fn stream_version(
        &self,
        request: Request<LogStreamVersionRequest>,
    ) -> Result<Response<LogStreamVersionResponse>, Status> {
        let stream = stream_id(request.into_inner().stream)?;
        let version = self.log.stream_version(&stream).map_err(status)?;
        Ok(Response::new(LogStreamVersionResponse { version: version.0 }))
    }

    async fn head(&self, _: Request<LogHeadRequest>) -> Result<Response<LogHeadResponse>, Status> {
        Ok(Response::new(LogHeadResponse { head: self.log.head().0 }))
    }

    type SubscribeStream = RecordStream;

    async fn subscribe(&self, request: Request<LogSubscribeRequest>) -> Result<Response<RecordStream>, Status> {
        let mut subscription = self.log.subscribe(Position(request.into_inner().from));
        let shutdown = self.shutdown.clone();
        let stream = async_stream(move |tx| async move {
            loop {
                let first = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    next = subscription.next() => next,
                };
                let Some(first) = first else { return };
                let mut records = Vec::new();
                let mut failed = None;
                match first {
                    Ok(r) => records.push(r),
                    Err(e) => failed = Some(e),
                }
                // Whatever else is durable already goes in the same message.
                while failed.is_none() && records.len() < RECORDS_PER_RESPONSE_MAX {
                    match subscription.next().now_or_never() {
                        Some(Some(Ok(r))) => records.push(r),
                        Some(Some(Err(e))) => failed = Some(e),
                        _ => break,
                    }
                }
                if !records.is_empty() && tx.send(Ok(batch(records, 0))).await.is_err() {
                    return;
                }
                if let Some(e) = failed {
                    let _ = tx.send(Err(status(e))).await;
                    return;
                }
            }
        });
        Ok(Response::new(stream))
    }

    async fn load_checkpoint(
        &self,
        request: Request<LogLoadCheckpointRequest>,
    ) -> Result<Response<LogCheckpoint>, Status> {
        let name = request.into_inner().name;
        let position = self.log.load_checkpoint(&name).map_err(status)?;
        Ok(Response::new(LogCheckpoint { name, position: position.0 }))
    }

    async fn save_checkpoint(
        &self,
        request: Request<LogSaveCheckpointRequest>,
    ) -> Result<Response<LogCheckpoint>, Status> {
        let r = request.into_inner();
        self.writes
            .save_checkpoint(&r.name, Position(r.position))
            .await
            .map_err(|e| wire::write_error_to_status(&e))?;
        Ok(Response::new(LogCheckpoint { name: r.name, position: r.position }))
    }
}

/// A response stream fed by a task through a small channel: the task stops
/// when the client goes away (the send fails).
fn async_stream<F, Fut>(body: F) -> RecordStream
where
    F: FnOnce(tokio::sync::mpsc::Sender<Result<LogRecords, Status>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::spawn(body(tx));
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
}
