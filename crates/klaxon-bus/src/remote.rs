//! The log server's gRPC client: an [`EventLog`] for the distributed topology.

use std::time::Duration;

use futures_util::future::BoxFuture;
use klaxon_log::{Appended, Error, ExpectedVersion, NewEvent, Position, Record, StreamId, StreamVersion};
use klaxon_proto::v1::event_log_client::EventLogClient;
use klaxon_proto::v1::{
    LogAppendRequest, LogHeadRequest, LogLoadCheckpointRequest, LogLocateRequest, LogReadAllRequest, LogReadOneRequest,
    LogReadStreamRequest, LogRecords, LogSaveCheckpointRequest, LogStreamVersionRequest, LogSubscribeRequest,
};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};
use tonic::{Code, Status};

use crate::source::EventLog;
use crate::wire;

/// How long a call keeps retrying while the log server is unreachable,
/// unless configured otherwise.
pub const RETRY_FOR_DEFAULT: Duration = Duration::from_secs(30);

/// The log server, over gRPC. Cheap to clone; clones share one connection.
///
/// While the server is unreachable (restarting, say), every call retries
/// with backoff for up to `retry_for`, then fails with
/// [`Error::Unavailable`]. Retrying an append is safe: the log deduplicates
/// event ids and answers a retry with the original positions.
#[derive(Clone)]
pub struct RemoteLog {
    client: Client,
    retry_for: Duration,
}

type Client = EventLogClient<InterceptedService<Channel, Credentials>>;

/// The bearer token this process presents to the log server (a token of
/// role `service`), on every call.
#[derive(Clone, Default)]
struct Credentials(Option<MetadataValue<Ascii>>);

impl Interceptor for Credentials {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
        if let Some(value) = &self.0 {
            request.metadata_mut().insert("authorization", value.clone());
        }
        Ok(request)
    }
}

impl RemoteLog {
    /// A client of the log server at `address` (`host:port` or a URL). It
    /// connects on first use and reconnects by itself.
    pub fn connect_lazy(address: &str) -> Result<RemoteLog, Error> {
        Self::connect_lazy_tls(address, None, None)
    }

    /// Like [`RemoteLog::connect_lazy`], over TLS when `tls` is given
    /// (`host:port` then means `https://host:port`; an identity in `tls` is
    /// the client certificate for a log server that requires one),
    /// presenting `token` (of role `service`) when the log server requires
    /// one.
    pub fn connect_lazy_tls(
        address: &str,
        tls: Option<ClientTlsConfig>,
        token: Option<&str>,
    ) -> Result<RemoteLog, Error> {
        let scheme = if tls.is_some() { "https" } else { "http" };
        let url = if address.contains("://") { address.to_owned() } else { format!("{scheme}://{address}") };
        let invalid =
            |e: &dyn std::fmt::Display| Error::Rejected { message: format!("log server address {address:?}: {e}") };
        let mut endpoint = Endpoint::from_shared(url.clone())
            .map_err(|e| invalid(&e))?
            .connect_timeout(Duration::from_secs(2))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(5))
            .keep_alive_timeout(Duration::from_secs(5));
        if let Some(tls) = tls {
            endpoint = endpoint.tls_config(tls).map_err(|e| invalid(&e))?;
        }
        let credentials = match token {
            Some(token) => Some(
                format!("Bearer {token}")
                    .parse()
                    .map_err(|_| Error::Rejected { message: "the service token is not valid header text".into() })?,
            ),
            None => None,
        };
        let client = EventLogClient::with_interceptor(endpoint.connect_lazy(), Credentials(credentials))
            .max_decoding_message_size(16 * 1024 * 1024)
            .max_encoding_message_size(16 * 1024 * 1024);
        Ok(RemoteLog { client, retry_for: RETRY_FOR_DEFAULT })
    }

    /// Retry unreachable-server failures for `retry_for` (0 = never).
    pub fn with_retry_for(mut self, retry_for: Duration) -> RemoteLog {
        self.retry_for = retry_for;
        self
    }

    /// The server's Subscribe stream from `from`, as raw batches. The
    /// services follow the log through [`crate::JetStreamSource`]; this is
    /// for tools and tests.
    pub async fn subscribe_rpc(
        &self,
        from: Position,
    ) -> Result<impl futures_util::Stream<Item = Result<Vec<Record>, Error>> + use<>, Error> {
        use futures_util::StreamExt;
        let stream = self
            .client
            .clone()
            .subscribe(LogSubscribeRequest { from: from.0 })
            .await
            .map_err(|s| wire::from_status(&s))?
            .into_inner();
        Ok(stream.map(|batch| match batch {
            Ok(batch) => records(batch),
            Err(status) => Err(wire::from_status(&status)),
        }))
    }

    /// Calls `call` until it succeeds, fails for a reason other than an
    /// unreachable server, or `retry_for` has passed.
    async fn retrying<T, F, Fut>(&self, what: &str, mut call: F) -> Result<T, Error>
    where
        F: FnMut(Client) -> Fut,
        Fut: std::future::Future<Output = Result<T, Status>>,
    {
        let deadline = tokio::time::Instant::now() + self.retry_for;
        let mut pause = Duration::from_millis(25);
        loop {
            let status = match call(self.client.clone()).await {
                Ok(answer) => return Ok(answer),
                Err(status) => status,
            };
            let error = wire::from_status(&status);
            let transient = matches!(error, Error::Unavailable { .. })
                && matches!(status.code(), Code::Unavailable | Code::Unknown | Code::Cancelled);
            if !transient || tokio::time::Instant::now() + pause > deadline {
                return Err(error);
            }
            tracing::debug!(%what, %error, ?pause, "log server unreachable; retrying");
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(1));
        }
    }
}

fn records(batch: LogRecords) -> Result<Vec<Record>, Error> {
    batch.records.iter().map(wire::record_from_wire).collect()
}

impl EventLog for RemoteLog {
    fn append<'a>(
        &'a self,
        stream: &'a StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> BoxFuture<'a, Result<Appended, Error>> {
        let (kind, version) = wire::expected_to_wire(expected);
        let request = LogAppendRequest {
            stream: stream.to_string(),
            expected: kind,
            expected_version: version,
            events: events.iter().map(wire::event_to_wire).collect(),
        };
        // The trace travels in gRPC metadata too, as W3C trace context.
        let traceparent = events.iter().find_map(|e| e.metadata.traceparent.clone());
        Box::pin(async move {
            let a = self
                .retrying("append", |mut c| {
                    let mut request = tonic::Request::new(request.clone());
                    if let Some(value) = traceparent.as_deref().and_then(|t| t.parse().ok()) {
                        request.metadata_mut().insert("traceparent", value);
                    }
                    async move { c.append(request).await.map(tonic::Response::into_inner) }
                })
                .await?;
            Ok(Appended {
                first: Position(a.first),
                last: Position(a.last),
                next_version: StreamVersion(a.next_version),
                deduplicated: a.deduplicated,
            })
        })
    }

    fn head(&self) -> BoxFuture<'_, Result<Position, Error>> {
        Box::pin(async move {
            let h =
                self.retrying("head", |mut c| async move {
                    c.head(LogHeadRequest {}).await.map(tonic::Response::into_inner)
                })
                .await?;
            Ok(Position(h.head))
        })
    }

    fn read_all(&self, from: Position, max: usize) -> BoxFuture<'_, Result<Vec<Record>, Error>> {
        Box::pin(async move {
            let mut out: Vec<Record> = Vec::new();
            let mut next = from.0;
            loop {
                let want = u32::try_from(max - out.len()).unwrap_or(u32::MAX);
                let batch = self
                    .retrying("read_all", |mut c| async move {
                        c.read_all(LogReadAllRequest { from: next, max: want }).await.map(tonic::Response::into_inner)
                    })
                    .await?;
                let more = batch.more;
                out.extend(records(batch)?);
                if !more || out.len() >= max {
                    return Ok(out);
                }
                next = out.last().map_or(next, |r| r.position.0 + 1);
            }
        })
    }

    fn read_stream<'a>(
        &'a self,
        stream: &'a StreamId,
        from: StreamVersion,
        max: usize,
    ) -> BoxFuture<'a, Result<Vec<Record>, Error>> {
        Box::pin(async move {
            let mut out: Vec<Record> = Vec::new();
            let mut next = from.0;
            loop {
                let want = u32::try_from(max - out.len()).unwrap_or(u32::MAX);
                let request = LogReadStreamRequest { stream: stream.to_string(), from: next, max: want };
                let batch = self
                    .retrying("read_stream", |mut c| {
                        let request = request.clone();
                        async move { c.read_stream(request).await.map(tonic::Response::into_inner) }
                    })
                    .await?;
                let more = batch.more;
                out.extend(records(batch)?);
                if !more || out.len() >= max {
                    return Ok(out);
                }
                next = out.last().map_or(next, |r| r.version.0 + 1);
            }
        })
    }

    fn read_one(&self, position: Position) -> BoxFuture<'_, Result<Record, Error>> {
        Box::pin(async move {
            let record = self
                .retrying("read_one", |mut c| async move {
                    c.read_one(LogReadOneRequest { position: position.0 }).await.map(tonic::Response::into_inner)
                })
                .await?;
            wire::record_from_wire(&record)
        })
    }

    fn locate(&self, id: uuid::Uuid) -> BoxFuture<'_, Result<crate::source::Located, Error>> {
        Box::pin(async move {
            let found = self
                .retrying("locate", |mut c| async move {
                    c.locate(LogLocateRequest { id: id.to_string() }).await.map(tonic::Response::into_inner)
                })
                .await?;
            if !found.found {
                return Ok(None);
            }
            Ok(Some((Position(found.position), StreamId::new(found.stream)?, StreamVersion(found.version))))
        })
    }

    fn stream_version<'a>(&'a self, stream: &'a StreamId) -> BoxFuture<'a, Result<StreamVersion, Error>> {
        Box::pin(async move {
            let v = self
                .retrying("stream_version", |mut c| async move {
                    c.stream_version(LogStreamVersionRequest { stream: stream.to_string() })
                        .await
                        .map(tonic::Response::into_inner)
                })
                .await?;
            Ok(StreamVersion(v.version))
        })
    }

    fn load_checkpoint<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Position, Error>> {
        Box::pin(async move {
            let c = self
                .retrying("load_checkpoint", |mut c| async move {
                    c.load_checkpoint(LogLoadCheckpointRequest { name: name.to_owned() })
                        .await
                        .map(tonic::Response::into_inner)
                })
                .await?;
            Ok(Position(c.position))
        })
    }

    fn save_checkpoint<'a>(&'a self, name: &'a str, position: Position) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            self.retrying("save_checkpoint", |mut c| async move {
                c.save_checkpoint(LogSaveCheckpointRequest { name: name.to_owned(), position: position.0 })
                    .await
                    .map(tonic::Response::into_inner)
            })
            .await?;
            Ok(())
        })
    }
}
