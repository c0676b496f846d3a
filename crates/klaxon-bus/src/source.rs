//! The two roles a log plays for a service, and their embedded implementation.

use std::any::Any;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use klaxon_log::{Appended, Error, ExpectedVersion, Log, NewEvent, Position, Record, StreamId, StreamVersion};

/// Where an event id is stored: position, stream and version.
pub type Located = Option<(Position, StreamId, StreamVersion)>;

/// Reading and writing the log. Implemented by [`Log`] (in process) and by
/// [`crate::RemoteLog`] (the log server over gRPC), with the same errors.
pub trait EventLog: Send + Sync + 'static {
    /// See [`Log::append`].
    fn append<'a>(
        &'a self,
        stream: &'a StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> BoxFuture<'a, Result<Appended, Error>>;
    /// See [`Log::head`].
    fn head(&self) -> BoxFuture<'_, Result<Position, Error>>;
    /// See [`Log::read_all`].
    fn read_all(&self, from: Position, max: usize) -> BoxFuture<'_, Result<Vec<Record>, Error>>;
    /// See [`Log::read_stream`].
    fn read_stream<'a>(
        &'a self,
        stream: &'a StreamId,
        from: StreamVersion,
        max: usize,
    ) -> BoxFuture<'a, Result<Vec<Record>, Error>>;
    /// See [`Log::read_one`].
    fn read_one(&self, position: Position) -> BoxFuture<'_, Result<Record, Error>>;
    /// See [`Log::locate`].
    fn locate(&self, id: uuid::Uuid) -> BoxFuture<'_, Result<Located, Error>>;
    /// See [`Log::stream_version`].
    fn stream_version<'a>(&'a self, stream: &'a StreamId) -> BoxFuture<'a, Result<StreamVersion, Error>>;
    /// See [`Log::load_checkpoint`].
    fn load_checkpoint<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Position, Error>>;
    /// See [`Log::save_checkpoint`].
    fn save_checkpoint<'a>(&'a self, name: &'a str, position: Position) -> BoxFuture<'a, Result<(), Error>>;
}

/// Following the log: every record from a position, in position order.
///
/// The guarantees, the same for every implementation: records come in
/// strictly increasing position order without gaps from `from`; none is
/// yielded twice by one subscription; a new subscription from a checkpoint
/// resumes right after it (at least once across restarts). An error is
/// returned, never skipped.
pub trait EventSource: Send + Sync + 'static {
    /// A subscription from position `from` (0 or 1 = from the start).
    fn subscribe(&self, from: Position) -> Subscription;

    /// A subscription from `from` for a service's own fold, which takes
    /// every record as soon as it can: the source may pace it together with
    /// the process's other followers and share one read of each record
    /// between them ([`crate::Fanout`]). The same guarantees as
    /// [`EventSource::subscribe`], which it is unless the source shares.
    fn follow(&self, from: Position) -> Subscription {
        self.subscribe(from)
    }
}

/// A record as a subscription yields it, with one slot for what a layer
/// above derives from it (the services' kit keeps the decoded domain
/// event there). A [`crate::Fanout`] hands the same `Arc<SharedRecord>` to
/// every follower, so the value is derived once per process however many
/// services fold the record; any other source yields a fresh one per
/// subscription (each derives for itself, as before). The bus never looks
/// into the slot: it knows nothing of the domain.
pub struct SharedRecord {
    record: Record,
    derived: OnceLock<Box<dyn Any + Send + Sync>>,
    /// Counts the values derived, for the source's stats (a fanout's).
    derivations: Option<Arc<AtomicU64>>,
}

impl SharedRecord {
    /// A record with an empty slot, counted nowhere.
    pub fn new(record: Record) -> SharedRecord {
        SharedRecord { record, derived: OnceLock::new(), derivations: None }
    }

    /// A record with an empty slot whose filling adds one to `derivations`.
    pub(crate) fn counted(record: Record, derivations: Arc<AtomicU64>) -> SharedRecord {
        SharedRecord { record, derived: OnceLock::new(), derivations: Some(derivations) }
    }

    /// The record.
    pub fn record(&self) -> &Record {
        &self.record
    }

    /// The record, out of its envelope.
    pub fn into_record(self) -> Record {
        self.record
    }

    /// The value derived from the record: `derive` runs at most once per
    /// `SharedRecord` (concurrent callers wait for the first), and every
    /// later caller gets the same value.
    ///
    /// One type per process fills these slots (the services' kit's
    /// decoding); asking for another type is a bug and panics.
    pub fn derived<T: Any + Send + Sync>(&self, derive: impl FnOnce(&Record) -> T) -> &T {
        let value = self.derived.get_or_init(|| {
            if let Some(derivations) = &self.derivations {
                derivations.fetch_add(1, Ordering::Relaxed);
            }
            Box::new(derive(&self.record))
        });
        value.downcast_ref::<T>().expect("one type of value is derived from the records of a process")
    }
}

impl std::ops::Deref for SharedRecord {
    type Target = Record;

    fn deref(&self) -> &Record {
        &self.record
    }
}

impl std::fmt::Debug for SharedRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedRecord")
            .field("record", &self.record)
            .field("derived", &self.derived.get().is_some())
            .finish()
    }
}

/// An ordered feed of records; see [`EventSource`].
pub struct Subscription {
    records: BoxStream<'static, Result<Arc<SharedRecord>, Error>>,
}

impl Subscription {
    /// A subscription yielding what `records` yields. Implementations make
    /// sure it keeps the [`EventSource`] guarantees.
    pub fn from_stream(records: BoxStream<'static, Result<Record, Error>>) -> Subscription {
        Subscription { records: Box::pin(records.map(|r| r.map(|r| Arc::new(SharedRecord::new(r))))) }
    }

    /// A subscription yielding records shared with other subscriptions
    /// (see [`Subscription::from_stream`]).
    pub fn from_shared_stream(records: BoxStream<'static, Result<Arc<SharedRecord>, Error>>) -> Subscription {
        Subscription { records }
    }

    /// The next record; `None` when the source has ended (its log closed).
    /// A record shared with other subscriptions is copied out; a fold that
    /// only reads it takes [`Subscription::next_shared`] instead.
    pub async fn next(&mut self) -> Option<Result<Record, Error>> {
        self.next_shared().await.map(|r| {
            r.map(|shared| match Arc::try_unwrap(shared) {
                Ok(alone) => alone.into_record(),
                Err(shared) => shared.record().clone(),
            })
        })
    }

    /// The next record as it may be shared with the process's other
    /// subscriptions (no copy, and what was derived from it derived once);
    /// `None` when the source has ended.
    pub async fn next_shared(&mut self) -> Option<Result<Arc<SharedRecord>, Error>> {
        self.records.next().await
    }
}

impl EventLog for Log {
    fn append<'a>(
        &'a self,
        stream: &'a StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> BoxFuture<'a, Result<Appended, Error>> {
        Box::pin(Log::append(self, stream, expected, events))
    }

    fn head(&self) -> BoxFuture<'_, Result<Position, Error>> {
        Box::pin(std::future::ready(Ok(Log::head(self))))
    }

    fn read_all(&self, from: Position, max: usize) -> BoxFuture<'_, Result<Vec<Record>, Error>> {
        Box::pin(std::future::ready(Log::read_all(self, from, max)))
    }

    fn read_stream<'a>(
        &'a self,
        stream: &'a StreamId,
        from: StreamVersion,
        max: usize,
    ) -> BoxFuture<'a, Result<Vec<Record>, Error>> {
        Box::pin(std::future::ready(Log::read_stream(self, stream, from, max)))
    }

    fn read_one(&self, position: Position) -> BoxFuture<'_, Result<Record, Error>> {
        Box::pin(std::future::ready(Log::read_one(self, position)))
    }

    fn locate(&self, id: uuid::Uuid) -> BoxFuture<'_, Result<Located, Error>> {
        Box::pin(std::future::ready(Log::locate(self, id)))
    }

    fn stream_version<'a>(&'a self, stream: &'a StreamId) -> BoxFuture<'a, Result<StreamVersion, Error>> {
        Box::pin(std::future::ready(Log::stream_version(self, stream)))
    }

    fn load_checkpoint<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Position, Error>> {
        Box::pin(std::future::ready(Log::load_checkpoint(self, name)))
    }

    fn save_checkpoint<'a>(&'a self, name: &'a str, position: Position) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(Log::save_checkpoint(self, name, position))
    }
}

impl EventSource for Log {
    fn subscribe(&self, from: Position) -> Subscription {
        let subscription = Log::subscribe(self, from);
        Subscription::from_stream(Box::pin(futures_util::stream::unfold(subscription, |mut s| async move {
            s.next().await.map(|item| (item, s))
        })))
    }
}
