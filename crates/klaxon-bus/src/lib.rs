//! How Klaxon's services reach the event log, in either topology.
//!
//! A service needs two things from the log: to read and write it (appends,
//! reads, checkpoints: [`EventLog`]) and to follow it ([`EventSource`]:
//! records in position order, at least once, from any position). [`Bus`]
//! bundles one of each, and it is all the service code sees, so the same
//! code runs in both topologies:
//!
//! - **Embedded** ([`Bus::embedded`]): the [`klaxon_log::Log`] in this
//!   process is both; a subscription tails it by position. With
//!   [`Bus::embedded_shared`] the services' folds ([`Bus::follow`]) share
//!   one reader of the log, a [`Fanout`].
//! - **Distributed** ([`Bus::distributed`]): a [`RemoteLog`] talks gRPC to
//!   the log server (`klaxond serve log`, [`server::LogServer`]), and a
//!   [`JetStreamSource`] follows the NATS JetStream stream that the
//!   [`relay`] fills from the log, in position order.
//!
//! NATS is never trusted alone. It may lose, repeat or reorder a message, so
//! a JetStream subscription yields only position `next`, skips what it has
//! yielded, and reads any gap from the log server; the relay publishes the
//! position it has reached every second, so a lost tail is noticed too.
//!
//! What it must never do: yield a record out of order, skip one, or make a
//! service behave differently depending on the transport.
//!
//! Modules:
//! - [`source`]: the [`EventLog`] and [`EventSource`] traits, the
//!   [`Subscription`] they yield ([`SharedRecord`]s), and their embedded
//!   implementation.
//! - [`fanout`]: the embedded process's shared reader: one read (and one
//!   decode) of each record for every service's fold, in lockstep, in a
//!   bounded window.
//! - [`wire`]: records and log errors on the wire (gRPC status details).
//! - [`server`]: the log server's gRPC service.
//! - [`remote`]: the gRPC client of the log server, retrying while it is away.
//! - [`relay`]: publishes every committed record to JetStream, in order.
//! - [`jetstream`]: the JetStream subscription with gap repair.

pub mod fanout;
pub mod jetstream;
pub mod relay;
pub mod remote;
pub mod server;
pub mod source;
pub mod wire;

use std::sync::Arc;

use klaxon_log::{Appended, Error, ExpectedVersion, Log, NewEvent, Position, Record, StreamId, StreamVersion};

pub use fanout::{Fanout, FanoutStats};
pub use jetstream::JetStreamSource;
pub use remote::RemoteLog;
pub use source::{EventLog, EventSource, SharedRecord, Subscription};

/// The log as a service sees it: one [`EventLog`] to read and write, one
/// [`EventSource`] to follow. Cheap to clone.
#[derive(Clone)]
pub struct Bus {
    log: Arc<dyn EventLog>,
    source: Arc<dyn EventSource>,
}

impl Bus {
    /// The embedded topology: `log` in this process serves both roles.
    pub fn embedded(log: Log) -> Bus {
        let log = Arc::new(log);
        Bus { log: log.clone(), source: log }
    }

    /// The embedded topology with the process's shared reader: `log`
    /// reads and writes, and [`Bus::follow`] shares `fanout`'s reads with
    /// the other services built on it.
    pub fn embedded_shared(log: Log, fanout: Fanout) -> Bus {
        Bus { log: Arc::new(log), source: Arc::new(fanout) }
    }

    /// The distributed topology: the log server through `log`, followed
    /// through the JetStream `source`.
    pub fn distributed(log: RemoteLog, source: JetStreamSource) -> Bus {
        Bus { log: Arc::new(log), source: Arc::new(source) }
    }

    /// Any pair of implementations.
    pub fn new(log: Arc<dyn EventLog>, source: Arc<dyn EventSource>) -> Bus {
        Bus { log, source }
    }

    /// Appends `events` to `stream` atomically, answered once durable. See
    /// [`Log::append`].
    pub async fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<Appended, Error> {
        self.log.append(stream, expected, events).await
    }

    /// The durable head.
    pub async fn head(&self) -> Result<Position, Error> {
        self.log.head().await
    }

    /// Up to `max` records from position `from`.
    pub async fn read_all(&self, from: Position, max: usize) -> Result<Vec<Record>, Error> {
        self.log.read_all(from, max).await
    }

    /// Up to `max` records of `stream` from version `from`.
    pub async fn read_stream(&self, stream: &StreamId, from: StreamVersion, max: usize) -> Result<Vec<Record>, Error> {
        self.log.read_stream(stream, from, max).await
    }

    /// The record at `position`.
    pub async fn read_one(&self, position: Position) -> Result<Record, Error> {
        self.log.read_one(position).await
    }

    /// Where event `id` is, if it is in the log.
    pub async fn locate(&self, id: uuid::Uuid) -> Result<Option<(Position, StreamId, StreamVersion)>, Error> {
        self.log.locate(id).await
    }

    /// The current version of `stream` (0 = no stream).
    pub async fn stream_version(&self, stream: &StreamId) -> Result<StreamVersion, Error> {
        self.log.stream_version(stream).await
    }

    /// Consumer `name`'s saved checkpoint (0 = none).
    pub async fn load_checkpoint(&self, name: &str) -> Result<Position, Error> {
        self.log.load_checkpoint(name).await
    }

    /// Durably saves consumer `name`'s checkpoint.
    pub async fn save_checkpoint(&self, name: &str, position: Position) -> Result<(), Error> {
        self.log.save_checkpoint(name, position).await
    }

    /// Every record from `from`, in position order, at least once; the
    /// subscription never yields a position twice or out of order.
    pub fn subscribe(&self, from: Position) -> Subscription {
        self.source.subscribe(from)
    }

    /// As [`Bus::subscribe`], for the service's own fold: the records may
    /// be read once for every service of the process and shared, the
    /// services then taking them in lockstep ([`EventSource::follow`]).
    /// Not for consumers paced by someone outside the process.
    pub fn follow(&self, from: Position) -> Subscription {
        self.source.follow(from)
    }
}

impl From<Log> for Bus {
    fn from(log: Log) -> Bus {
        Bus::embedded(log)
    }
}
