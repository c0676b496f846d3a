//! The log server's gRPC client: an [`EventLog`] for the distributed topology.
//!
//! It knows every log server of a group (one address for a single log
//! server). Writes go to the node it believes leads; a follower's refusal
//! names the leader (`klaxon-leader`), which it follows at once; a node that
//! is down or does not answer in time makes it try the next. A hint naming
//! a node already asked in this round (a follower still naming a leader
//! that just died) is not followed: every known node is asked once per
//! round before the call pauses, so the new leader is found as soon as it
//! is elected. Reads go to the same node while it answers, so a client
//! reads its own writes.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

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

/// How long a call keeps retrying while no log server can serve it,
/// unless configured otherwise.
pub const RETRY_FOR_DEFAULT: Duration = Duration::from_secs(30);
/// How long one attempt of a call may take before the next node is tried.
/// Above a group leader's append timeout (5 s), so that a leader that lost
/// its majority answers first.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(8);
/// The longest pause between two rounds over a group's nodes.
const GROUP_PAUSE_MAX: Duration = Duration::from_millis(200);
/// Log servers a client knows at most (the configured ones and hinted ones).
const NODES_MAX: usize = 16;
/// How long calls may fail without one answered before the process's log
/// says so: longer than a group's election, so a failover is not an outage.
pub const OUTAGE_SAID_AFTER: Duration = Duration::from_secs(3);

/// The log server (or every node of a log group), over gRPC. Cheap to
/// clone; clones share connections and the belief of who leads.
///
/// While no server can serve a call (restarting, electing a leader), every
/// call retries with backoff for up to `retry_for`, then fails with
/// [`Error::Unavailable`]. Retrying an append is safe: the log deduplicates
/// event ids and answers a retry with the original positions, also when
/// the first attempt was committed by a leader that died before answering.
#[derive(Clone)]
pub struct RemoteLog {
    nodes: Arc<Nodes>,
    retry_for: Duration,
}

struct Nodes {
    known: RwLock<Vec<(String, Client)>>,
    /// The node calls go to.
    current: AtomicUsize,
    connect: Connect,
    /// Since when calls fail with no call answered, once one has failed
    /// (`troubled` says so without taking the lock on every answer).
    outage: Mutex<Option<Outage>>,
    troubled: AtomicBool,
    /// A refusal of this process (its token) was said since the last answer.
    refusal_said: AtomicBool,
}

/// Calls failing with no answer in between: said once in the process's log
/// when it lasts [`OUTAGE_SAID_AFTER`], and its end once it was said.
struct Outage {
    since: Instant,
    said: bool,
}

/// How to make a client for an address.
struct Connect {
    tls: Option<ClientTlsConfig>,
    credentials: Credentials,
}

impl Connect {
    fn client(&self, address: &str) -> Result<Client, Error> {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let url = if address.contains("://") { address.to_owned() } else { format!("{scheme}://{address}") };
        let invalid =
            |e: &dyn std::fmt::Display| Error::Rejected { message: format!("log server address {address:?}: {e}") };
        let mut endpoint = Endpoint::from_shared(url.clone())
            .map_err(|e| invalid(&e))?
            .connect_timeout(Duration::from_secs(2))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(2))
            .keep_alive_timeout(Duration::from_secs(3));
        if let Some(tls) = &self.tls {
            endpoint = endpoint.tls_config(tls.clone()).map_err(|e| invalid(&e))?;
        }
        Ok(EventLogClient::with_interceptor(endpoint.connect_lazy(), self.credentials.clone())
            .max_decoding_message_size(16 * 1024 * 1024)
            .max_encoding_message_size(16 * 1024 * 1024))
    }
}

impl Nodes {
    /// The node calls start from, and its client.
    fn pick(&self) -> (usize, Client) {
        let known = self.known.read().expect("nodes lock");
        let i = self.current.load(Ordering::Relaxed) % known.len();
        (i, known[i].1.clone())
    }

    /// Node `i`'s client.
    fn client(&self, i: usize) -> Client {
        let known = self.known.read().expect("nodes lock");
        known[i % known.len()].1.clone()
    }

    fn len(&self) -> usize {
        self.known.read().expect("nodes lock").len()
    }

    /// The index of the node at `address`, learning it if it is new (up to
    /// [`NODES_MAX`]).
    fn learn(&self, address: &str) -> Option<usize> {
        let mut known = self.known.write().expect("nodes lock");
        if let Some(i) = known.iter().position(|(a, _)| a == address) {
            return Some(i);
        }
        if known.len() >= NODES_MAX {
            return None;
        }
        let client = self.connect.client(address).ok()?;
        known.push((address.to_owned(), client));
        Some(known.len() - 1)
    }

    /// The first node after `from`, in order, that is not in `tried` (a
    /// bit per node).
    fn untried(&self, from: usize, tried: u32) -> Option<usize> {
        let len = self.len();
        (1..=len).map(|step| (from + step) % len).find(|i| tried & (1 << i) == 0)
    }

    /// Makes node `i` the one calls start from.
    fn make_current(&self, i: usize) {
        self.current.store(i, Ordering::Relaxed);
    }

    /// Node `i` answered a call: it becomes the current one, and an outage
    /// or a refusal that was said is over.
    fn answered(&self, i: usize) {
        self.make_current(i);
        // Read first: most calls find nothing to reset, and a load keeps
        // the cache line shared between the threads calling.
        if self.refusal_said.load(Ordering::Relaxed) {
            self.refusal_said.store(false, Ordering::Relaxed);
        }
        self.reached(i);
    }

    /// Node `i` refused this process (its token is missing, unknown,
    /// revoked or not of role `service`): said once until a call is
    /// answered. It is reachable, so an outage is over.
    fn refused(&self, i: usize, error: &Error) {
        self.reached(i);
        if !self.refusal_said.swap(true, Ordering::Relaxed) {
            let server = self.address(i);
            // The error says where a service reads its token.
            tracing::warn!(%server, %error, "the log server refuses this process");
        }
    }

    /// The address of node `i`.
    fn address(&self, i: usize) -> String {
        let known = self.known.read().expect("nodes lock");
        known[i % known.len()].0.clone()
    }

    /// Node `i` answered, with an answer or a refusal: an outage that was
    /// said is over.
    fn reached(&self, i: usize) {
        if !self.troubled.load(Ordering::Relaxed) {
            return;
        }
        let ended = {
            let mut outage = self.outage.lock().expect("outage lock");
            self.troubled.store(false, Ordering::Relaxed);
            outage.take()
        };
        if let Some(outage) = ended.filter(|o| o.said) {
            let server = self.address(i);
            tracing::info!(%server, after = ?outage.since.elapsed(), "the log server answers again");
        }
    }

    /// A call failed because no log server could serve it (yet).
    fn failed(&self, error: &Error) {
        let mut outage = self.outage.lock().expect("outage lock");
        self.troubled.store(true, Ordering::Relaxed);
        let outage = outage.get_or_insert_with(|| Outage { since: Instant::now(), said: false });
        if !outage.said && outage.since.elapsed() >= OUTAGE_SAID_AFTER {
            outage.said = true;
            let servers: Vec<String> = self.known.read().expect("nodes lock").iter().map(|(a, _)| a.clone()).collect();
            tracing::warn!(
                servers = %servers.join(","),
                %error,
                "log server unavailable; retrying until it answers (writes wait, then fail; services catch up after)"
            );
        }
    }
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
    /// A client of the log server at `address` (`host:port` or a URL; for a
    /// log group, every node's, separated by commas). It connects on first
    /// use and reconnects by itself.
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
        let credentials = match token {
            Some(token) => Some(
                format!("Bearer {token}")
                    .parse()
                    .map_err(|_| Error::Rejected { message: "the service token is not valid header text".into() })?,
            ),
            None => None,
        };
        let connect = Connect { tls, credentials: Credentials(credentials) };
        let addresses: Vec<&str> = address.split(',').map(str::trim).filter(|a| !a.is_empty()).collect();
        if addresses.is_empty() || addresses.len() > NODES_MAX {
            return Err(Error::Rejected {
                message: format!("log server address {address:?}: name 1 to {NODES_MAX} addresses"),
            });
        }
        let known =
            addresses.iter().map(|a| Ok(((*a).to_owned(), connect.client(a)?))).collect::<Result<Vec<_>, Error>>()?;
        let nodes = Nodes {
            known: RwLock::new(known),
            current: AtomicUsize::new(0),
            connect,
            outage: Mutex::new(None),
            troubled: AtomicBool::new(false),
            refusal_said: AtomicBool::new(false),
        };
        Ok(RemoteLog { nodes: Arc::new(nodes), retry_for: RETRY_FOR_DEFAULT })
    }

    /// Retry unreachable-server failures for `retry_for` (0 = never).
    pub fn with_retry_for(mut self, retry_for: Duration) -> RemoteLog {
        self.retry_for = retry_for;
        self
    }

    /// The address calls go to now (the leader, as far as this client
    /// knows).
    pub fn current_address(&self) -> String {
        self.nodes.address(self.nodes.current.load(Ordering::Relaxed))
    }

    /// The server's Subscribe stream from `from`, as raw batches. The
    /// services follow the log through [`crate::JetStreamSource`]; this is
    /// for tools and tests.
    pub async fn subscribe_rpc(
        &self,
        from: Position,
    ) -> Result<impl futures_util::Stream<Item = Result<Vec<Record>, Error>> + use<>, Error> {
        use futures_util::StreamExt;
        let (_, mut client) = self.nodes.pick();
        let stream = client
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
    /// unavailable server, or `retry_for` has passed. A round asks each
    /// known node at most once: a follower's leader hint is followed at
    /// once unless that node was already asked in this round (a follower
    /// still naming a leader that just died); otherwise, and when a node is
    /// down or slow, the next node not yet asked is. Once every node has
    /// been asked, the call pauses (doubling, at most [`GROUP_PAUSE_MAX`]
    /// for a group) and starts a new round. So a new leader is found as
    /// soon as it is elected, whichever node it is.
    async fn retrying<T, F, Fut>(&self, what: &str, mut call: F) -> Result<T, Error>
    where
        F: FnMut(Client) -> Fut,
        Fut: std::future::Future<Output = Result<T, Status>>,
    {
        let deadline = tokio::time::Instant::now() + self.retry_for;
        let mut pause = Duration::from_millis(25);
        let (mut node, mut client) = self.nodes.pick();
        // The nodes asked in this round, a bit each (at most NODES_MAX).
        let mut tried: u32 = 0;
        loop {
            let status = match tokio::time::timeout(ATTEMPT_TIMEOUT, call(client)).await {
                Ok(Ok(answer)) => {
                    self.nodes.answered(node);
                    return Ok(answer);
                }
                Ok(Err(status)) => status,
                Err(_) => klaxon_proto::status::refuse(
                    klaxon_domain::class::Class::Unavailable,
                    format!("no answer within {ATTEMPT_TIMEOUT:?}"),
                ),
            };
            let error = wire::from_status(&status);
            let transient = matches!(error, Error::Unavailable { .. })
                && matches!(
                    status.code(),
                    Code::Unavailable | Code::Internal | Code::Unknown | Code::Cancelled | Code::DeadlineExceeded
                );
            if transient {
                self.nodes.failed(&error);
            } else if matches!(status.code(), Code::Unauthenticated | Code::PermissionDenied) {
                self.nodes.refused(node, &error);
            } else {
                // A refusal of the call itself (a conflict, say): the server answered.
                self.nodes.reached(node);
            }
            if !transient || tokio::time::Instant::now() > deadline {
                return Err(error);
            }
            tried |= 1 << node;
            let hinted = match wire::leader_hint(&status) {
                Some(Some(leader)) => self.nodes.learn(&leader),
                _ => None,
            };
            let next = match hinted {
                Some(leader) if tried & (1 << leader) == 0 => {
                    tracing::debug!(%what, %error, "following the log group's leader");
                    Some(leader)
                }
                _ => self.nodes.untried(node, tried),
            };
            if let Some(next) = next {
                tracing::debug!(%what, %error, "log server unavailable; trying the next one");
                self.nodes.make_current(next);
                (node, client) = (next, self.nodes.client(next));
                continue;
            }
            if tokio::time::Instant::now() + pause > deadline {
                return Err(error);
            }
            tracing::debug!(%what, %error, ?pause, "no log server can serve this now; retrying");
            tokio::time::sleep(pause).await;
            // A group elects a new leader within a second or two: look for it
            // often. A single server comes back when it is restarted.
            let cap = if self.nodes.len() > 1 { GROUP_PAUSE_MAX } else { Duration::from_secs(1) };
            pause = (pause * 2).min(cap);
            tried = 0;
            // The next round starts where the last hint pointed, or where
            // this one ended.
            (node, client) = match hinted {
                Some(leader) => (leader, self.nodes.client(leader)),
                None => (node, self.nodes.client(node)),
            };
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
