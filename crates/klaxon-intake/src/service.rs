//! The intake service: runs incident commands against the log and keeps the
//! incident projection current.

use std::collections::BTreeSet;
use std::num::NonZeroU64;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use klaxon_bus::{Bus, SharedRecord};
use klaxon_domain::catalog::ServiceCatalog;
use klaxon_domain::ids::Audience;
use klaxon_domain::ids::{ActorId, DedupKey, IncidentId, RequestKey, RequestScope, ServiceName, Severity};
use klaxon_domain::incident::{Command, Incident, IncidentEvent, Incidents, Status, decide, evolve, record_catalog};
use klaxon_domain::paging::{Directory, PageChange, PageEvent, PagingConfig, Slo};
use klaxon_domain::queue::{Facts, Row};

/// When an incident was first paged, and whether any page of it was
/// acknowledged.
type PageFacts = (Option<DateTime<Utc>>, bool);

/// What orders the queue: SLOs and the cadence severities.
struct QueuePolicy {
    /// The paging configuration in force (a reload replaces it).
    paging: Live<Option<Arc<PagingConfig>>>,
    cadence: BTreeSet<Severity>,
}

impl Default for QueuePolicy {
    fn default() -> QueuePolicy {
        QueuePolicy { paging: Live::new(Arc::new(None)), cadence: BTreeSet::new() }
    }
}
use klaxon_log::{
    Appended, EventData, EventKind, ExpectedVersion, Metadata, NewEvent, Position, Record, StreamVersion,
};
use klaxon_reactor::snapshot::{self, SnapshotFile};
use klaxon_reactor::table::Table;
use klaxon_reactor::{Clock, Live, decode, streams};
use serde::{Deserialize, Serialize};
use std::ops::ControlFlow;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use uuid::Uuid;

use crate::memory::Memory;
use crate::{Error, stage};

/// Longest accepted client request id, in bytes.
pub use klaxon_domain::ids::REQUEST_ID_BYTES_MAX;

/// Intake's settings (the `[intake]` table of the configuration file).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Options {
    /// Most participants on one incident's bridge. Default 50.
    pub bridge_participants_max: usize,
    /// Most incidents in one page of `ListIncidents`. Default 500.
    pub list_page_size_max: usize,
    /// How often a command without an expected version is re-decided when
    /// concurrent writers changed the incident first. Default 10.
    pub command_attempts_max: usize,
    /// How long a request waits for the projection to reach the log head.
    /// Default 5,000 ms.
    pub projection_wait_ms: u64,
    /// Where the e-mail intake (SMTP) listens; off when unset. Plain SMTP:
    /// keep it on loopback behind the site's MTA.
    pub smtp_listen: Option<std::net::SocketAddr>,
    /// The e-mail intake's senders and limits (`[intake.email]`).
    pub email: crate::smtp::EmailOptions,
    /// Who may validate a resolution: `any` manager (the default), or
    /// `other_manager`, anyone but who resolved it.
    pub validation: Validation,
}

/// Who may validate a resolution (`[intake] validation`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Validation {
    /// Any manager, the resolver included.
    #[default]
    Any,
    /// A manager other than the one who resolved it
    /// (`validate.other_manager`).
    OtherManager,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            bridge_participants_max: 50,
            list_page_size_max: 500,
            command_attempts_max: 10,
            projection_wait_ms: 5000,
            smtp_listen: None,
            email: crate::smtp::EmailOptions::default(),
            validation: Validation::Any,
        }
    }
}

/// Who runs a command, and how it should be applied.
#[derive(Clone, Debug)]
pub struct CommandContext {
    /// The principal; recorded as `by` in events and `actor` in metadata.
    pub actor: ActorId,
    /// Client-chosen id; a retry with the same id writes nothing twice.
    pub request_id: Option<String>,
    /// The incident version the command was based on.
    pub expected_version: Option<u64>,
    /// W3C trace context stored in the events' metadata: the caller's, or
    /// (after [`CommandContext::traced`]) that of the span running the
    /// command.
    pub traceparent: Option<String>,
}

impl CommandContext {
    /// A context with only an actor.
    pub fn by(actor: ActorId) -> CommandContext {
        CommandContext { actor, request_id: None, expected_version: None, traceparent: None }
    }

    /// Joins `span` (made with `parent: None`) to the caller's trace (this
    /// context's `traceparent`, or a new trace) and returns the context the
    /// command runs with: its `traceparent` is the span's, so the events
    /// the command appends, and what services do about them, descend from
    /// it. Run the command in the returned span.
    pub fn traced(self, span: tracing::Span) -> (CommandContext, tracing::Span) {
        let traced = klaxon_telemetry::Traced::new(span, self.traceparent.as_deref());
        let traceparent = traced.traceparent().map(str::to_owned);
        (CommandContext { traceparent, ..self }, traced.span().clone())
    }

    /// The idempotency key: request ids are scoped to their actor (see
    /// [`RequestKey`]).
    fn request_key(&self) -> Result<Option<RequestKey>, Error> {
        let id = self.request_id.as_deref().unwrap_or_default();
        Ok(RequestKey::new(RequestScope::Incident, &self.actor, "context.request_id", id)?)
    }
}

/// What a command did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// The incident right after the command's events (or later).
    pub incident: Incident,
    /// Position of the first event written (for a retry: written first time).
    pub first: Position,
    /// Position of the last event written.
    pub last: Position,
    /// True when the command was a retry and wrote nothing.
    pub deduplicated: bool,
}

/// What a report did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReportOutcome {
    /// The incident the report opened or was merged into.
    pub incident: IncidentId,
    /// True when it was merged into an open incident with the same dedup key.
    pub merged: bool,
    /// The command's outcome.
    pub outcome: Outcome,
}

/// Filters of [`Handle::list`]; empty means "any".
#[derive(Clone, Debug, Default)]
pub struct ListFilter {
    /// Only these statuses.
    pub statuses: Vec<Status>,
    /// Only these severities.
    pub severities: Vec<Severity>,
    /// Only this service.
    pub service: Option<ServiceName>,
}

/// The intake service. Build it with [`Intake::new`], take [`Handle`]s, then
/// [`Intake::run`] it: it rebuilds the projection from position 1 and
/// follows the log until shut down.
pub struct Intake {
    handle: Handle,
    snapshots: Option<(SnapshotFile, NonZeroU64)>,
    /// How long a Resolved or Closed incident stays in memory after its
    /// last event (see [`Intake::with_evict_closed_after`]); `None` keeps
    /// every incident.
    evict_after: Option<chrono::TimeDelta>,
}

/// The version of the shape of [`Projection`] in snapshots: bump it whenever
/// what it serializes to, or what a fold makes of it, changes (an old
/// snapshot is then ignored and the projection rebuilt).
/// 4: a role assignment's notice is no page in the queue's facts.
pub const SNAPSHOT_SCHEMA: u32 = 4;

/// Everything intake folds, as one value: what snapshots hold, what
/// [`Handle::folded`] copies out, and what a rebuild from the log folds
/// with [`Projection::fold`] (the simulation, `klaxon-sim`, compares the
/// two as JSON values).
#[derive(Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Projection {
    incidents: Incidents,
    pages: std::collections::HashMap<IncidentId, PageFacts>,
    threads: crate::smtp::threads::Threads,
    /// The evicted incidents' count, rows table epoch and interned services, and the candidates for eviction (schema 2; the rows in the table: schema 3).
    memory: Memory,
}

impl Projection {
    /// Folds one record, the next position after the last one folded, as
    /// the running intake does.
    pub fn fold(&mut self, record: &Record) -> Result<(), Error> {
        let parts = Parts {
            incidents: &mut self.incidents,
            pages: &mut self.pages,
            threads: &mut self.threads,
            memory: &mut self.memory,
        };
        fold_into(parts, None, &SharedRecord::new(record.clone())).map(drop)
    }

    /// Every incident folded so far.
    pub fn incidents(&self) -> &Incidents {
        &self.incidents
    }
}

/// The parts of intake's projection, each under its own lock in the
/// running intake.
struct Parts<'a> {
    incidents: &'a mut Incidents,
    pages: &'a mut std::collections::HashMap<IncidentId, PageFacts>,
    threads: &'a mut crate::smtp::threads::Threads,
    memory: &'a mut Memory,
}

/// What one fold changed: the incident an incident event changed, with its
/// version afterwards, and when that incident may be evicted.
type FoldOutcome = (Option<(IncidentId, u64)>, Option<DateTime<Utc>>);

/// The one fold of intake's projection, part by part (the running intake
/// holds each part under its own lock): an incident event into the
/// incidents (an evicted incident is put back first, by the caller), a page
/// event into the incident's page facts (but for an evicted incident's,
/// which come back from its pages stream with it), a mail record into the
/// threads. Returns the incident an incident event changed, with its
/// version afterwards, and when it may be evicted (with `evict_after`), if
/// it is now a candidate. The record's events are decoded once for the
/// process's services (`decode::shared_incident` and its neighbours).
fn fold_into(
    parts: Parts<'_>,
    evict_after: Option<chrono::TimeDelta>,
    record: &SharedRecord,
) -> Result<FoldOutcome, Error> {
    let (mut changed, mut due) = (None, None);
    if let Some(event) = decode::shared_incident(record)? {
        parts.incidents.apply(event);
        if let Some(incident) = parts.incidents.get(event.incident) {
            due = parts.memory.folded(incident, event.at, evict_after);
        }
        changed = Some((event.incident, parts.incidents.get(event.incident).map_or(0, Incident::version)));
    } else if let Some(event) = decode::shared_event::<PageChange>(record)? {
        let held = parts.incidents.get(event.incident).is_some();
        if held || !parts.memory.is_evicted(event.incident.number())? {
            fold_page(parts.pages, event);
        }
    }
    parts.threads.fold(record)?;
    Ok((changed, due))
}

/// A cheap-to-clone handle for running commands and queries.
#[derive(Clone)]
pub struct Handle {
    log: Bus,
    options: Arc<Options>,
    directory: Live<Directory>,
    catalog: Live<ServiceCatalog>,
    queue: Arc<QueuePolicy>,
    clock: Arc<dyn Clock>,
    shared: Arc<Shared>,
}

struct Shared {
    /// The incidents held in memory: every open one, and the Resolved or
    /// Closed ones not evicted yet.
    incidents: RwLock<Incidents>,
    /// What is kept of evicted incidents. Lock order: `incidents`, then
    /// this, then `pages`.
    memory: RwLock<Memory>,
    /// How many incidents are evicted (for tests and metrics to wait on).
    evicted: watch::Sender<usize>,
    /// Per incident, from its page events: when it was first paged and
    /// whether any page was acknowledged (for the queue).
    pages: RwLock<std::collections::HashMap<IncidentId, PageFacts>>,
    applied: watch::Sender<Position>,
    /// The snapshot position the projection resumed from (zero: rebuilt).
    resumed: watch::Sender<Position>,
    /// The position of the last snapshot saved (durable) or resumed from.
    snapshot: watch::Sender<Position>,
    /// Reports with the same dedup key (striped by its hash) are serialized,
    /// so that the second sees the incident the first opened.
    dedup_locks: Vec<tokio::sync::Mutex<()>>,
    /// The next incident number to try; never below the projection's
    /// highest + 1. A number taken by another process is detected by the
    /// "no stream" append and skipped.
    next_number: std::sync::atomic::AtomicU64,
    /// Commands on one incident are serialized within this process (striped
    /// by incident number), so that concurrent writers here never starve each
    /// other with version conflicts; the expected-version check still guards
    /// against writers in other processes.
    incident_locks: Vec<tokio::sync::Mutex<()>>,
    /// The incident of each message Klaxon sent by e-mail, by its
    /// `Message-ID` (for replies to the e-mail intake).
    threads: RwLock<crate::smtp::threads::Threads>,
    /// Incidents this process wrote that the projection has not folded yet,
    /// each as its command's own events left it (see [`Shared::remember`]).
    /// A command answers with that state and the next command on the
    /// incident decides on it, neither waiting for the fold; the fold drops
    /// an entry once it reaches its version, so this holds only what is in
    /// flight. Lock order: this, then `incidents`.
    written: std::sync::Mutex<std::collections::HashMap<IncidentId, Incident>>,
}

impl Shared {
    /// Keeps `incident`, the state an append of this process just made
    /// durable, until the projection folds its version. It is exact: the
    /// state a command was decided on, at version `v`, with the command's
    /// events folded in, appended with "exactly version `v`" expected (or
    /// "no stream" for a report), is the incident at the new version.
    fn remember(&self, incident: Incident) {
        let mut written = self.written.lock().expect("written lock");
        let folded = self.incidents.read().expect("projection lock").get(incident.id()).map_or(0, Incident::version);
        if incident.version() > folded {
            written.insert(incident.id(), incident);
        }
    }

    /// The projection folded `id` up to `version`: what this process wrote
    /// up to there is in the projection now.
    fn folded(&self, id: IncidentId, version: u64) {
        let mut written = self.written.lock().expect("written lock");
        if written.get(&id).is_some_and(|i| i.version() <= version) {
            written.remove(&id);
        }
    }
}

/// Stripes of [`Shared::incident_locks`].
const INCIDENT_LOCK_STRIPES: usize = 64;

impl Intake {
    /// A new intake over `log` (a [`klaxon_log::Log`] in the embedded
    /// topology).
    pub fn new(log: impl Into<Bus>, options: Options, clock: Arc<dyn Clock>) -> Intake {
        let log = log.into();
        let shared = Arc::new(Shared {
            incidents: RwLock::new(Incidents::default()),
            memory: RwLock::default(),
            evicted: watch::channel(0).0,
            pages: RwLock::new(Default::default()),
            applied: watch::channel(Position::ZERO).0,
            resumed: watch::channel(Position::ZERO).0,
            snapshot: watch::channel(Position::ZERO).0,
            dedup_locks: (0..INCIDENT_LOCK_STRIPES).map(|_| tokio::sync::Mutex::new(())).collect(),
            next_number: std::sync::atomic::AtomicU64::new(1),
            incident_locks: (0..INCIDENT_LOCK_STRIPES).map(|_| tokio::sync::Mutex::new(())).collect(),
            threads: RwLock::default(),
            written: Default::default(),
        });
        let (directory, catalog) = (Live::new(Arc::new(Directory::default())), Live::new(Arc::default()));
        let queue = Arc::new(QueuePolicy::default());
        let handle = Handle { log, options: Arc::new(options), directory, catalog, queue, clock, shared };
        Intake { handle, snapshots: None, evict_after: None }
    }

    /// Lets an incident that is Resolved or Closed leave memory once its
    /// last event is `after` old by the clock (`[memory]
    /// evict_closed_after`): only a small row of it stays (see
    /// `crate::memory`), every query and command on it reads it from the
    /// log, and its next event puts it back. Without it every incident
    /// stays in memory.
    pub fn with_evict_closed_after(mut self, after: Duration) -> Intake {
        self.evict_after = Some(chrono::TimeDelta::from_std(after).unwrap_or(chrono::TimeDelta::MAX));
        self
    }

    /// Saves the projection to `file` every `every` records folded and at a
    /// clean stop, and resumes from it at start, folding only the log after
    /// it (see `klaxon_reactor::snapshot`); a snapshot that does not check
    /// out is ignored and the projection rebuilt from position 1.
    pub fn with_snapshots(mut self, file: SnapshotFile, every: NonZeroU64) -> Intake {
        self.snapshots = Some((file, every));
        self
    }

    /// The schedules and teams managers may pull in (`PageResponder`); an
    /// intake without one refuses every schedule and team target.
    pub fn with_directory(self, directory: Directory) -> Intake {
        self.with_live_directory(Live::new(Arc::new(directory)))
    }

    /// [`Intake::with_directory`] through a [`Live`] view a configuration
    /// reload replaces (read at each request).
    pub fn with_live_directory(mut self, directory: Live<Directory>) -> Intake {
        self.handle.directory = directory;
        self
    }

    /// The SLOs (the paging configuration's) and the severities on the
    /// executive update cadence that order the queue
    /// ([`Handle::queue`]); without them, the default SLOs and no cadence.
    pub fn with_queue(self, paging: Option<Arc<PagingConfig>>, cadence: BTreeSet<Severity>) -> Intake {
        self.with_live_queue(Live::new(Arc::new(paging)), cadence)
    }

    /// [`Intake::with_queue`] with the paging configuration through a
    /// [`Live`] view a configuration reload replaces (read at each query).
    pub fn with_live_queue(mut self, paging: Live<Option<Arc<PagingConfig>>>, cadence: BTreeSet<Severity>) -> Intake {
        self.handle.queue = Arc::new(QueuePolicy { paging, cadence });
        self
    }

    /// The service catalog: a report and a declaration record the team
    /// and tier it gives the incident's service
    /// ([`klaxon_domain::incident::record_catalog`]), and `GetIncident`
    /// and the bridge show its runbooks. Without one, nothing is recorded
    /// and no runbook is shown.
    pub fn with_catalog(self, catalog: Arc<ServiceCatalog>) -> Intake {
        self.with_live_catalog(Live::new(catalog))
    }

    /// [`Intake::with_catalog`] through a [`Live`] view a configuration
    /// reload replaces: each command records what the catalog says when
    /// it is decided, each query shows the runbook of the moment.
    pub fn with_live_catalog(mut self, catalog: Live<ServiceCatalog>) -> Intake {
        self.handle.catalog = catalog;
        self
    }

    /// A handle to this service.
    pub fn handle(&self) -> Handle {
        self.handle.clone()
    }

    /// Rebuilds the projection from the log's first record (or resumes it
    /// from a snapshot that checks out, folding only the log after it),
    /// then follows the log until `shutdown` is cancelled or the log
    /// closes. A record that does not decode stops the service with an
    /// error: the projection must not silently skip history.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), Error> {
        let shared = &self.handle.shared;
        let mut last_id = uuid::Uuid::nil();
        let mut snapshot_at = Position::ZERO;
        // The head found at start matters only to snapshots (none is saved
        // while catching up with it); without them the first read of the
        // log is the subscription's, whose refusal the process reports.
        let head = match &self.snapshots {
            Some(_) => self.handle.log.head().await?,
            None => Position::ZERO,
        };
        let mut loaded = match &self.snapshots {
            Some((file, _)) => {
                snapshot::resume::<Projection>(file, SNAPSHOT_SCHEMA, &self.handle.log, head, "intake").await
            }
            None => None,
        };
        // The evicted incidents' rows: beside the snapshot, or in an
        // anonymous file when only eviction is on. A snapshot goes only
        // with the table it was saved with; a rebuild empties it.
        let table = match (&self.snapshots, self.evict_after) {
            (Some((file, _)), _) => Some(Table::beside(Some(file.path()))),
            (None, Some(_)) => Some(Table::anonymous()),
            (None, None) => None,
        };
        let table = table.transpose().map_err(|e| Error::Rows(e.to_string()))?.map(Arc::new);
        if let (Some(resumed), Some(table)) = (loaded.as_mut(), &table) {
            if !resumed.state.memory.open(table.clone(), true).map_err(|e| Error::Rows(e.to_string()))? {
                tracing::warn!(
                    service = "intake",
                    "snapshot ignored (its rows table is not there); rebuilding from the log"
                );
                loaded = None;
            }
        }
        if loaded.is_none() {
            if let Some(table) = &table {
                let mut memory = shared.memory.write().expect("memory lock");
                memory.open(table.clone(), false).map_err(|e| Error::Rows(e.to_string()))?;
            }
        }
        {
            if let Some(loaded) = loaded {
                *shared.incidents.write().expect("projection lock") = loaded.state.incidents;
                *shared.pages.write().expect("pages lock") = loaded.state.pages;
                *shared.threads.write().expect("threads lock") = loaded.state.threads;
                let memory = loaded.state.memory;
                shared.evicted.send_replace(memory.evicted_count());
                *shared.memory.write().expect("memory lock") = memory;
                (last_id, snapshot_at) = (loaded.id, loaded.position);
                shared.resumed.send_replace(loaded.position);
                shared.snapshot.send_replace(loaded.position);
                shared.applied.send_replace(loaded.position);
            }
        }
        let mut subscription = self.handle.log.follow(snapshot_at.next());
        // The snapshot being written, if any (one at a time, off the loop).
        let mut saving: Option<tokio::task::JoinHandle<()>> = None;
        // The next eviction due, and the clock's timer for it.
        let mut wake = self.next_eviction();
        let mut timer = self.timer(wake);
        let outcome = loop {
            tokio::select! {
                _ = shutdown.cancelled() => break Ok(()),
                () = &mut timer, if wake.is_some() => {
                    self.evict_due();
                    wake = self.next_eviction();
                    timer = self.timer(wake);
                }
                next = subscription.next_shared().instrument(tracing::trace_span!(stage::READ)) => match next {
                    None => break Ok(()),
                    Some(Err(e)) => break Err(e.into()),
                    Some(Ok(record)) => {
                        match self.fold(&record).instrument(tracing::trace_span!(stage::FOLD)).await {
                            Err(e) => break Err(e),
                            Ok(Some(due)) if wake.is_none_or(|w| due < w) => {
                                wake = Some(due);
                                timer = self.timer(wake);
                            }
                            Ok(_) => {}
                        }
                        last_id = record.id;
                        // Not while catching up with the head found at
                        // start (as in the reactor shell): one snapshot on
                        // reaching it, not one per `every` records folded.
                        let due = record.position >= head
                            && self.snapshots.as_ref().is_some_and(|(_, every)| record.position.0 >= snapshot_at.0 + every.get());
                        if due && saving.as_ref().is_none_or(tokio::task::JoinHandle::is_finished) {
                            saving = self.snapshot(record.position, last_id);
                            snapshot_at = record.position;
                        }
                    }
                },
            }
        };
        if let Some(saving) = saving.take() {
            let _ = saving.await;
        }
        let applied = *shared.applied.borrow();
        if outcome.is_ok() && applied > snapshot_at {
            if let Some(saving) = self.snapshot(applied, last_id) {
                let _ = saving.await;
            }
        }
        outcome
    }

    /// Folds one record; returns when the incident it concerns may be
    /// evicted, if it is now a candidate.
    async fn fold(&self, record: &SharedRecord) -> Result<Option<DateTime<Utc>>, Error> {
        let shared = &self.handle.shared;
        assert_eq!(
            record.position,
            shared.applied.borrow().next(),
            "the projection must see every position once, in order"
        );
        // An evicted incident is put back (read from the log) before its
        // next event folds onto it: an event after the first of an
        // incident the projection does not hold is one (this needs no
        // read of the table, and holds also when a crash left the table
        // ahead of the snapshot resumed from).
        if let Some(event) = decode::shared_incident(record)? {
            let held = shared.incidents.read().expect("projection lock").get(event.incident).is_some();
            if !held && record.version.0 > 1 {
                self.restore(event.incident, record).await?;
            }
        }
        // The parts' locks in the order the snapshot takes them; released
        // before `folded` takes the lock of what this process wrote.
        let (changed, due) = {
            let mut incidents = shared.incidents.write().expect("projection lock");
            let mut pages = shared.pages.write().expect("pages lock");
            let mut threads = shared.threads.write().expect("threads lock");
            let mut memory = shared.memory.write().expect("memory lock");
            let parts =
                Parts { incidents: &mut incidents, pages: &mut pages, threads: &mut threads, memory: &mut memory };
            fold_into(parts, self.evict_after, record)?
        };
        if let Some((incident, version)) = changed {
            shared.folded(incident, version);
        }
        shared.applied.send_replace(record.position);
        Ok(due)
    }

    /// Puts evicted incident `id` back before its event `record` is
    /// folded: its stream before the record and its page facts before the
    /// record's position, read from the log and folded.
    async fn restore(&self, id: IncidentId, record: &Record) -> Result<(), Error> {
        let shared = &self.handle.shared;
        let before = usize::try_from(record.version.0 - 1).unwrap_or(usize::MAX);
        let records = self.handle.log.read_stream(&streams::incident(id), StreamVersion(1), before).await?;
        let incident = decode::fold_incident(&records)?
            .unwrap_or_else(|| panic!("{id}: an evicted incident has events before version {}", record.version));
        assert_eq!(incident.version() + 1, record.version.0, "{id}: the stream must be gapless");
        let mut facts: Option<PageFacts> = None;
        for page in self.handle.log.read_stream(&streams::pages(id), StreamVersion(1), usize::MAX).await? {
            if page.position >= record.position {
                break;
            }
            if let Some(event) = decode::event::<PageChange>(&page)? {
                fold_page_facts(facts.get_or_insert_default(), &event);
            }
        }
        let mut incidents = shared.incidents.write().expect("projection lock");
        let mut memory = shared.memory.write().expect("memory lock");
        incidents.restore(incident);
        memory.restored(id.number());
        if let Some(facts) = facts {
            shared.pages.write().expect("pages lock").insert(id, facts);
        }
        shared.evicted.send_replace(memory.evicted_count());
        tracing::debug!(service = "intake", incident = %id, "evicted incident put back");
        Ok(())
    }

    /// The earliest time an incident may be evicted, if one may.
    fn next_eviction(&self) -> Option<DateTime<Utc>> {
        let after = self.evict_after?;
        self.handle.shared.memory.read().expect("memory lock").next_due(after)
    }

    /// The clock's timer for `wake` (never, without one).
    fn timer(&self, wake: Option<DateTime<Utc>>) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
        match wake {
            Some(at) => self.handle.clock.sleep_until(at),
            None => Box::pin(std::future::pending()),
        }
    }

    /// Evicts every Resolved or Closed incident whose last event is
    /// `evict_after` old by the clock, with its page facts.
    fn evict_due(&self) {
        let Some(after) = self.evict_after else { return };
        let shared = &self.handle.shared;
        let mut incidents = shared.incidents.write().expect("projection lock");
        let mut memory = shared.memory.write().expect("memory lock");
        let due = memory.due(self.handle.clock.now(), after);
        if due.is_empty() {
            return;
        }
        let mut pages = shared.pages.write().expect("pages lock");
        for number in &due {
            let id = IncidentId::from_number(*number).expect("a folded incident's number is valid");
            let incident = incidents.get(id).expect("a candidate for eviction is held");
            debug_assert!(!incident.is_open(), "only Resolved or Closed incidents are evicted");
            if let Err(e) = memory.evict(incident) {
                tracing::warn!(service = "intake", incident = %id, error = %e, "row not written; the incident stays in memory");
                continue;
            }
            incidents.remove(id);
            pages.remove(&id);
        }
        shared.evicted.send_replace(memory.evicted_count());
        tracing::debug!(service = "intake", evicted = due.len(), held = incidents.len(), "closed incidents evicted");
    }

    /// Starts saving the projection as folded through `position` (whose
    /// record is event `id`): cloned under the read locks, written by a
    /// blocking task. A failed save is logged; the previous snapshot stays.
    fn snapshot(&self, position: Position, id: uuid::Uuid) -> Option<tokio::task::JoinHandle<()>> {
        let (file, _) = self.snapshots.clone()?;
        let shared = self.handle.shared.clone();
        let folded = self.handle.folded().1;
        // The rows the snapshot counts on are durable before it; the
        // position is published once the snapshot is too (a failed save
        // leaves it where it was).
        let save = move |file: &SnapshotFile| {
            folded.memory.table().map_or(Ok(()), |table| table.persist())?;
            file.save(SNAPSHOT_SCHEMA, position, id, &folded)?;
            shared.snapshot.send_if_modified(|saved| {
                let later = position > *saved;
                *saved = (*saved).max(position);
                later
            });
            Ok::<(), std::io::Error>(())
        };
        Some(tokio::task::spawn_blocking(move || match save(&file) {
            Ok(()) => tracing::info!(service = "intake", %position, "snapshot saved"),
            Err(e) => {
                tracing::warn!(service = "intake", %position, error = %e, path = %file.path().display(), "snapshot not saved")
            }
        }))
    }
}

impl Handle {
    /// A copy of the whole projection as folded so far, and the position it
    /// is folded through (read under its locks, so the two agree). Unlike
    /// [`Handle::projection`] it does not wait to catch up: the
    /// simulation compares it with a rebuild up to that position.
    pub fn folded(&self) -> (Position, Projection) {
        let shared = &self.shared;
        let incidents = shared.incidents.read().expect("projection lock");
        let pages = shared.pages.read().expect("pages lock");
        let threads = shared.threads.read().expect("threads lock");
        let memory = shared.memory.read().expect("memory lock");
        let position = *shared.applied.borrow();
        let projection = Projection {
            incidents: incidents.clone(),
            pages: pages.clone(),
            threads: threads.clone(),
            memory: memory.clone(),
        };
        (position, projection)
    }

    /// The last log position folded into this service's projection (for
    /// the consumer-lag metric).
    pub fn applied(&self) -> Position {
        *self.shared.applied.borrow()
    }

    /// The snapshot position the projection resumed from at start (zero:
    /// it was rebuilt from position 1); `applied - resumed` records were
    /// folded since.
    pub fn resumed(&self) -> Position {
        *self.shared.resumed.borrow()
    }

    /// The position of the last snapshot saved (or resumed from).
    pub fn snapshot(&self) -> Position {
        *self.shared.snapshot.borrow()
    }

    /// The log this service writes to.
    pub fn log(&self) -> &Bus {
        &self.log
    }

    /// The schedules and teams managers may pull in, as they are now.
    pub fn directory(&self) -> Arc<Directory> {
        self.directory.get()
    }

    /// What a reporter is told about `service` beside an accepted report:
    /// that the catalog, when there is one, lacks it (a typo pages through
    /// the default escalation policy, with no team or tier recorded).
    pub fn service_notice(&self, service: Option<&ServiceName>) -> Option<String> {
        let catalog = self.catalog.get();
        let service = service?;
        if catalog.is_empty() || catalog.get(service).is_some() {
            return None;
        }
        let known = klaxon_domain::text::known("services", catalog.services().map(|s| s.name().as_str()));
        Some(format!(
            "service \"{service}\" is not in the catalog ({known}): no team or tier is recorded, and the default \
             escalation policy pages for it"
        ))
    }

    /// `incident` with the catalog's runbook of its service filled in.
    pub fn with_runbook(&self, mut incident: klaxon_proto::v1::Incident) -> klaxon_proto::v1::Incident {
        let service = ServiceName::new(&incident.service).ok();
        let runbook = service.and_then(|s| self.catalog.get().runbook(&s).map(str::to_owned));
        incident.runbook = runbook.unwrap_or_default();
        incident
    }

    /// The options it runs with.
    pub fn options(&self) -> &Options {
        &self.options
    }

    /// The current time of the injected clock.
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// A copy of the whole projection, caught up with the log head.
    pub async fn projection(&self) -> Result<Incidents, Error> {
        self.caught_up().await?;
        Ok(self.shared.incidents.read().expect("projection lock").clone())
    }

    /// Waits until the projection has folded in `position`.
    pub async fn wait_for(&self, position: Position) -> Result<(), Error> {
        let mut applied = self.shared.applied.subscribe();
        let wait = Duration::from_millis(self.options.projection_wait_ms);
        match tokio::time::timeout(wait, applied.wait_for(|p| *p >= position)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err(Error::Unavailable("the projection stopped".into())),
            Err(_) => Err(Error::Unavailable(format!("the projection did not reach position {position} in {wait:?}"))),
        }
    }

    async fn caught_up(&self) -> Result<(), Error> {
        self.wait_for(self.log.head().await?).await
    }

    /// The incident as this process knows it: the projection's, or what
    /// this process wrote beyond it (not folded yet), or, when it was
    /// evicted, its fold of the log.
    async fn current(&self, id: IncidentId) -> Result<Option<Incident>, Error> {
        let evicted = {
            let written = self.shared.written.lock().expect("written lock");
            let incidents = self.shared.incidents.read().expect("projection lock");
            match (written.get(&id), incidents.get(id)) {
                (Some(mine), folded) if folded.is_none_or(|f| f.version() < mine.version()) => {
                    return Ok(Some(mine.clone()));
                }
                (_, Some(folded)) => return Ok(Some(folded.clone())),
                (_, None) => self.shared.memory.read().expect("memory lock").is_evicted(id.number())?,
            }
        };
        if !evicted {
            return Ok(None);
        }
        // Boxed: a rare path, kept out of every command's future (see
        // `find_retry`).
        Box::pin(self.read_evicted(id)).await
    }

    /// Evicted incident `id` as its stream in the log folds it (a
    /// temporary: the projection puts it back only at its next event).
    async fn read_evicted(&self, id: IncidentId) -> Result<Option<Incident>, Error> {
        Ok(decode::fold_incident(&self.read_incident(id, StreamVersion(u64::MAX)).await?)?)
    }

    /// One incident as currently known.
    pub async fn get(&self, id: IncidentId) -> Result<Incident, Error> {
        self.caught_up().await?;
        self.current(id).await?.ok_or(Error::Domain(klaxon_domain::Error::UnknownIncident(id)))
    }

    /// How many incidents the projection holds in memory (every open one,
    /// and the Resolved or Closed ones not evicted yet).
    pub fn held(&self) -> usize {
        self.shared.incidents.read().expect("projection lock").len()
    }

    /// How many incidents are evicted from memory (read from the log on
    /// demand).
    pub fn evicted(&self) -> usize {
        *self.shared.evicted.borrow()
    }

    /// Waits until the projection has folded the log head, then until
    /// exactly `count` incidents are evicted, each at most
    /// `projection_wait_ms` (a barrier for tests and tools).
    ///
    /// The catching up comes first because a command answers before its
    /// events are folded (`Shared::written`): without it the count could
    /// be met while a report is still unfolded (not held yet) or a reopen
    /// of an evicted incident is still unfolded (counted as evicted until
    /// its fold puts it back), and [`Handle::held`] read after this
    /// barrier would miss or double-count one.
    pub async fn wait_evicted(&self, count: usize) -> Result<(), Error> {
        self.caught_up().await?;
        let mut evicted = self.shared.evicted.subscribe();
        let wait = Duration::from_millis(self.options.projection_wait_ms);
        match tokio::time::timeout(wait, evicted.wait_for(|n| *n == count)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err(Error::Unavailable("the projection stopped".into())),
            Err(_) => {
                Err(Error::Unavailable(format!("{} incidents evicted, not {count}, after {wait:?}", self.evicted())))
            }
        }
    }

    /// The open incident holding the dedup key `key`, if any, as currently
    /// known (caught up with the log head).
    pub async fn open_with_dedup_key(&self, key: &DedupKey) -> Result<Option<Incident>, Error> {
        self.caught_up().await?;
        let incidents = self.shared.incidents.read().expect("projection lock");
        Ok(incidents.open_with_dedup_key(key).and_then(|id| incidents.get(id).cloned()))
    }

    /// The last incident holding the dedup key `key` that was resolved or
    /// closed (caught up with the log head), if any.
    pub async fn last_closed_with_dedup_key(&self, key: &DedupKey) -> Result<Option<IncidentId>, Error> {
        self.caught_up().await?;
        Ok(self.shared.incidents.read().expect("projection lock").last_closed_with_dedup_key(key))
    }

    /// Incidents newest first, filtered; `below` continues a previous page
    /// (the last number it returned). Returns the page and, when more
    /// incidents match, the number to continue below.
    pub async fn list(
        &self,
        filter: &ListFilter,
        page_size: usize,
        below: Option<u64>,
    ) -> Result<(Vec<Incident>, Option<u64>), Error> {
        self.caught_up().await?;
        let page_size = page_size.clamp(1, self.options.list_page_size_max);
        let admits = |status: Status, severity: Option<Severity>| {
            (filter.statuses.is_empty() || filter.statuses.contains(&status))
                && (filter.severities.is_empty() || severity.is_some_and(|s| filter.severities.contains(&s)))
        };
        // The held incidents and the evicted ones' rows (the table read
        // backwards from `below`, a buffer of slots at a time, until a page
        // and one more match), merged newest first; evicted ones are read
        // from the log once the page is known.
        let (rows, more) = {
            let incidents = self.shared.incidents.read().expect("projection lock");
            let memory = self.shared.memory.read().expect("memory lock");
            let service = filter.service.as_ref().map(|s| memory.service(s));
            let mut held = incidents
                .newest_first(below)
                .filter(|i| {
                    admits(i.status(), i.severity())
                        && (filter.service.is_none() || i.service() == filter.service.as_ref())
                })
                .peekable();
            // Evicted incidents are Resolved or Closed.
            let closed = filter.statuses.is_empty()
                || filter.statuses.iter().any(|s| matches!(s, Status::Resolved | Status::Closed));
            let mut matching = Vec::new();
            if let Some(table) = memory.table().filter(|_| memory.evicted_count() > 0 && closed) {
                let is_held = |n: u64| IncidentId::from_number(n).is_ok_and(|id| incidents.get(id).is_some());
                table.scan_back(below, is_held, |n, e| {
                    if admits(e.status, e.severity) && service.is_none_or(|s| s.is_some() && e.service == s) {
                        matching.push(n);
                    }
                    if matching.len() > page_size { ControlFlow::Break(()) } else { ControlFlow::Continue(()) }
                })?;
            }
            let mut evicted = matching.into_iter().peekable();
            let mut next = || match (held.peek(), evicted.peek()) {
                (Some(h), Some(e)) if h.id().number() > *e => held.next().cloned().map(Ok),
                (Some(_), None) => held.next().cloned().map(Ok),
                (_, Some(_)) => evicted.next().map(Err),
                (None, None) => None,
            };
            let rows: Vec<Result<Incident, u64>> = std::iter::from_fn(&mut next).take(page_size).collect();
            (rows, next().is_some())
        };
        let mut page = Vec::with_capacity(rows.len());
        for row in rows {
            match row {
                Ok(incident) => page.push(incident),
                Err(number) => {
                    let id = IncidentId::from_number(number)?;
                    page.push(
                        self.read_evicted(id).await?.ok_or(Error::Domain(klaxon_domain::Error::UnknownIncident(id)))?,
                    );
                }
            }
        }
        let next = if more { page.last().map(|i| i.id().number()) } else { None };
        Ok((page, next))
    }

    /// The incident of the first of `message_ids` that Klaxon sent by
    /// e-mail for an incident (caught up with the log head), if any.
    pub(crate) async fn thread_incident(&self, message_ids: &[&String]) -> Result<Option<IncidentId>, Error> {
        self.caught_up().await?;
        let threads = self.shared.threads.read().expect("threads lock");
        Ok(message_ids.iter().find_map(|id| threads.incident(id)))
    }

    /// The open incidents that pass `filter`, in the queue order of
    /// [`klaxon_domain::queue`] at the clock's time (at most `page_size`),
    /// each with its row. The SLOs are the paging configuration's (the
    /// defaults without one); the executive update cadence applies to the
    /// severities of [`Intake::with_queue`].
    pub async fn queue(&self, filter: &ListFilter, page_size: usize) -> Result<Vec<(Incident, Row)>, Error> {
        self.caught_up().await?;
        let page_size = page_size.clamp(1, self.options.list_page_size_max);
        let incidents = self.shared.incidents.read().expect("projection lock");
        let pages = self.shared.pages.read().expect("pages lock");
        let paging = self.queue.paging.get();
        let mut rows: Vec<(Incident, Row)> = incidents
            .newest_first(None)
            .filter(|i| {
                i.is_open()
                    && (filter.statuses.is_empty() || filter.statuses.contains(&i.status()))
                    && (filter.severities.is_empty() || i.severity().is_some_and(|s| filter.severities.contains(&s)))
                    && (filter.service.is_none() || i.service() == filter.service.as_ref())
            })
            .map(|i| {
                let (first_paged_at, acknowledged) = pages.get(&i.id()).copied().unwrap_or((None, false));
                let facts = Facts {
                    incident: i.id(),
                    severity: i.severity(),
                    owned: i.commander().is_some(),
                    declared_at: i.declared_at(),
                    first_paged_at,
                    acknowledged,
                    last_executive_update_at: i.latest_update(Audience::Executive).map(|u| u.at),
                    on_cadence: i.severity().is_some_and(|s| self.queue.cadence.contains(&s)),
                };
                let slo = match (paging.as_ref(), i.severity()) {
                    // Customer tiers tighten the resolution window.
                    (Some(paging), Some(severity)) => {
                        Slo { resolve: paging.resolve_window(severity, i.customers()), ..paging.slo(severity) }
                    }
                    _ => Slo::DEFAULT,
                };
                (i.clone(), Row::of(&facts, &slo))
            })
            .collect();
        rows.sort_by(|a, b| klaxon_domain::queue::compare(&a.1, &b.1));
        rows.truncate(page_size);
        Ok(rows)
    }

    /// Every event of an incident in log order, with its record.
    pub async fn history(&self, id: IncidentId) -> Result<Vec<(Record, IncidentEvent)>, Error> {
        let records = self.read_incident(id, StreamVersion(u64::MAX)).await?;
        if records.is_empty() {
            return Err(Error::Domain(klaxon_domain::Error::UnknownIncident(id)));
        }
        let mut out = Vec::with_capacity(records.len());
        for record in records {
            if let Some(event) = decode::incident(&record)? {
                out.push((record, event));
            }
        }
        Ok(out)
    }

    /// The incident exactly as it was at `version` (folded from the log).
    pub async fn incident_at(&self, id: IncidentId, version: StreamVersion) -> Result<Option<Incident>, Error> {
        Ok(decode::fold_incident(&self.read_incident(id, version).await?)?)
    }

    async fn read_incident(&self, id: IncidentId, through: StreamVersion) -> Result<Vec<Record>, Error> {
        let max = usize::try_from(through.0).unwrap_or(usize::MAX);
        Ok(self.log.read_stream(&streams::incident(id), StreamVersion(1), max).await?)
    }

    /// Runs a command on an existing incident: decides it against the current
    /// state and appends the events with an exact expected version. Without
    /// an expected version from the client, a concurrent change makes it
    /// decide again on the new state (up to `command_attempts_max` times);
    /// with one, the stale command fails with [`Error::Conflict`].
    pub async fn execute(&self, id: IncidentId, command: Command, ctx: &CommandContext) -> Result<Outcome, Error> {
        let key = ctx.request_key()?;
        if let Some(retried) = self.find_retry(key.as_ref()).await? {
            return Ok(retried.1);
        }
        let stripe = (id.number() % INCIDENT_LOCK_STRIPES as u64) as usize;
        let _serialized = self.shared.incident_locks[stripe].lock().await;
        // Decide on the projection as it is: a success is safe whatever its
        // lag, because the append expects exactly the version decided on. A
        // refusal, though, might come from a projection behind the log, so
        // every refusal is confirmed on a caught-up projection first.
        let mut caught_up = false;
        for _ in 0..self.options.command_attempts_max.max(1) {
            let deciding = tracing::trace_span!(stage::DECIDE);
            let state = self.current(id).instrument(deciding.clone()).await?;
            let version = state.as_ref().map_or(0, Incident::version);
            let refusal = if let Some(expected) = ctx.expected_version.filter(|e| *e != version) {
                Some(match state {
                    None => Error::Domain(klaxon_domain::Error::UnknownIncident(id)),
                    Some(_) => Error::Conflict { incident: id, expected, current: version },
                })
            } else {
                let checked = match (&command, self.options.validation, state.as_ref()) {
                    (Command::ValidateResolution { .. }, Validation::OtherManager, Some(state)) => {
                        klaxon_domain::incident::check_other_validator(state, &ctx.actor)
                    }
                    _ => Ok(()),
                };
                let decided = deciding.in_scope(|| {
                    let mut events =
                        checked.and_then(|()| decide(state.as_ref(), &command, &id, &ctx.actor, self.now()))?;
                    record_catalog(&mut events, state.as_ref(), &self.catalog.get());
                    Ok::<_, klaxon_domain::Error>(events)
                });
                match decided {
                    Ok(events) => {
                        let expected = if version == 0 {
                            ExpectedVersion::NoStream
                        } else {
                            ExpectedVersion::Exact(StreamVersion(version))
                        };
                        match self.append(id, expected, &events, key.as_ref(), ctx).await {
                            Ok(appended) => return self.written(id, state, &events, appended).await,
                            Err(Error::Log(klaxon_log::Error::WrongExpectedVersion { actual, .. })) => {
                                match ctx.expected_version {
                                    Some(expected) if caught_up => {
                                        Some(Error::Conflict { incident: id, expected, current: actual.0 })
                                    }
                                    _ => None,
                                }
                            }
                            Err(e) => return Err(e),
                        }
                    }
                    // Bad fields do not depend on the state.
                    Err(e @ (klaxon_domain::Error::InvalidField { .. } | klaxon_domain::Error::TooLarge { .. })) => {
                        return Err(e.into());
                    }
                    Err(e) => Some(e.into()),
                }
            };
            match refusal {
                Some(refusal) if caught_up => return Err(refusal),
                _ => {
                    // Behind the log, or another writer was first: catch up
                    // and decide again (boxed: see `find_retry`).
                    Box::pin(self.caught_up()).await?;
                    caught_up = true;
                }
            }
        }
        Err(Error::Contended { incident: id, attempts: self.options.command_attempts_max })
    }

    /// Reports an issue: merged into the open incident with the same dedup
    /// key when there is one, otherwise a new incident with the next free
    /// number (allocated by appending with "no stream" expected, so two
    /// writers can never take the same number).
    pub async fn report(&self, command: Command, ctx: &CommandContext) -> Result<ReportOutcome, Error> {
        let Command::ReportIssue { source, reporter, title, dedup_key, .. } = &command else {
            return Err(Error::InvalidRequest {
                field: "command",
                reason: "report takes a ReportIssue command".into(),
            });
        };
        let key = ctx.request_key()?;
        if let Some((event, outcome)) = self.find_retry(key.as_ref()).await? {
            let merged = event.kind() == "incident.report_merged.v1";
            return Ok(ReportOutcome { incident: event.incident, merged, outcome });
        }
        let _serialized = match dedup_key {
            Some(key) => Some(self.shared.dedup_locks[stripe_of(key.as_str())].lock().await),
            None => None,
        };
        // Only a dedup key needs the projection to be current: numbers are
        // checked by the "no stream" append whatever the projection knows.
        if dedup_key.is_some() {
            Box::pin(self.caught_up()).await?;
        }
        let open = dedup_key.as_ref().and_then(|k| self.shared.incidents.read().expect("lock").open_with_dedup_key(k));
        if let Some(open) = open {
            let merge = Command::MergeReport {
                source: *source,
                reporter: reporter.clone(),
                title: title.clone(),
                dedup_key: dedup_key.clone(),
            };
            let ctx = CommandContext { expected_version: None, ..ctx.clone() };
            // Boxed: only reports with a dedup key merge (see `find_retry`).
            let outcome = Box::pin(self.execute(open, merge, &ctx)).await?;
            return Ok(ReportOutcome { incident: open, merged: true, outcome });
        }
        let deciding = tracing::trace_span!(stage::DECIDE);
        // Refuse bad input before taking a number, so that numbers have no gaps.
        deciding.in_scope(|| decide(None, &command, &IncidentId::from_number(1)?, &ctx.actor, self.now()))?;
        for _ in 0..100 {
            let (id, events) = deciding.in_scope(|| {
                let id = IncidentId::from_number(self.take_number())?;
                let mut events = decide(None, &command, &id, &ctx.actor, self.now())?;
                record_catalog(&mut events, None, &self.catalog.get());
                Ok::<_, Error>((id, events))
            })?;
            match self.append(id, ExpectedVersion::NoStream, &events, key.as_ref(), ctx).await {
                Ok(appended) => {
                    let outcome = self.written(id, None, &events, appended).await?;
                    return Ok(ReportOutcome { incident: id, merged: false, outcome });
                }
                // Another process took this number: take the next.
                Err(Error::Log(klaxon_log::Error::WrongExpectedVersion { .. })) => {}
                Err(e) => return Err(e),
            }
        }
        Err(Error::Unavailable("no free incident number after 100 attempts".into()))
    }

    /// The next incident number: above every incident the projection knows
    /// and every number this process handed out.
    fn take_number(&self) -> u64 {
        use std::sync::atomic::Ordering;
        // Evicted incidents keep their numbers: the highest ever folded counts.
        let held = self.shared.incidents.read().expect("projection lock").highest_number();
        let floor = held.max(self.shared.memory.read().expect("memory lock").highest()) + 1;
        let previous = self
            .shared
            .next_number
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| Some(n.max(floor) + 1))
            .expect("the update always succeeds");
        previous.max(floor)
    }

    /// The outcome of a command whose `events`, decided on `before`, the log
    /// has just acknowledged (durable): the incident is `before` with them
    /// folded in, answered without waiting for the projection (queries wait
    /// for the log head, so the client still reads its own write). A retry
    /// that wrote nothing waits for the projection instead.
    async fn written(
        &self,
        id: IncidentId,
        before: Option<Incident>,
        events: &[IncidentEvent],
        appended: Appended,
    ) -> Result<Outcome, Error> {
        if appended.deduplicated {
            // Boxed: a rare path (see `find_retry`).
            return Box::pin(self.outcome(id, appended)).await;
        }
        let _answer = tracing::trace_span!(stage::ANSWER).entered();
        let incident = events
            .iter()
            .fold(before, evolve)
            .unwrap_or_else(|| panic!("{id}: a command that wrote events left no incident"));
        assert_eq!(
            incident.version() + 1,
            appended.next_version.0,
            "{id}: the state folded from the command's own events must be the stream's"
        );
        self.shared.remember(incident.clone());
        Ok(Outcome { incident, first: appended.first, last: appended.last, deduplicated: false })
    }

    async fn outcome(&self, id: IncidentId, appended: Appended) -> Result<Outcome, Error> {
        self.wait_for(appended.last).await?;
        let incident = self.current(id).await?.ok_or(Error::Domain(klaxon_domain::Error::UnknownIncident(id)))?;
        Ok(Outcome { incident, first: appended.first, last: appended.last, deduplicated: appended.deduplicated })
    }

    /// When `key` was used before, the first event it wrote and the outcome.
    ///
    /// Its lookups are boxed, like the other paths a command rarely takes
    /// (catching up, reading an evicted incident, a retry's outcome): an
    /// `async fn` is as large as its largest await, and tonic boxes every
    /// handler's future, so each command used to allocate and copy a
    /// future sized for paths it did not take.
    async fn find_retry(&self, key: Option<&RequestKey>) -> Result<Option<(IncidentEvent, Outcome)>, Error> {
        let Some(key) = key else { return Ok(None) };
        Box::pin(self.find_used(key)).await
    }

    async fn find_used(&self, key: &RequestKey) -> Result<Option<(IncidentEvent, Outcome)>, Error> {
        let Some((first, _, _)) = self.log.locate(key.event_id(0)).await? else { return Ok(None) };
        let mut last = first;
        for index in 1.. {
            match self.log.locate(key.event_id(index)).await? {
                Some((position, _, _)) => last = position,
                None => break,
            }
        }
        let record = self.log.read_one(first).await?;
        let event = decode::incident(&record)?.ok_or_else(|| Error::InvalidRequest {
            field: "context.request_id",
            reason: "was already used for something other than an incident command".into(),
        })?;
        let mut outcome = self
            .outcome(event.incident, Appended { first, last, next_version: record.version, deduplicated: true })
            .await?;
        outcome.deduplicated = true;
        Ok(Some((event, outcome)))
    }

    async fn append(
        &self,
        id: IncidentId,
        expected: ExpectedVersion,
        events: &[IncidentEvent],
        key: Option<&RequestKey>,
        ctx: &CommandContext,
    ) -> Result<Appended, Error> {
        let encoding = tracing::trace_span!(stage::ENCODE).entered();
        let stream = streams::incident(id);
        let correlation_id = streams::correlation_id(id);
        let mut new_events = Vec::with_capacity(events.len());
        for (index, event) in events.iter().enumerate() {
            new_events.push(NewEvent {
                id: match key {
                    Some(key) => key.event_id(index as u32),
                    None => Uuid::new_v4(),
                },
                kind: EventKind::new(event.kind()).expect("domain kinds are valid log kinds"),
                data: EventData::from_value(&event.stored())?,
                metadata: Metadata {
                    actor: Some(ctx.actor.to_string()),
                    correlation_id: Some(correlation_id),
                    causation_id: None,
                    traceparent: ctx.traceparent.clone(),
                },
            });
        }
        drop(encoding);
        Ok(self.log.append(&stream, expected, new_events).instrument(tracing::trace_span!(stage::APPEND)).await?)
    }
}

/// Folds a page event into the page facts of its incident.
fn fold_page(pages: &mut std::collections::HashMap<IncidentId, PageFacts>, event: &PageEvent) {
    fold_page_facts(pages.entry(event.incident).or_default(), event);
}

/// Folds a page event into one incident's page facts.
fn fold_page_facts(facts: &mut PageFacts, event: &PageEvent) {
    match &event.change {
        // A notice asks nobody to respond: no deadline to acknowledge it.
        PageChange::ResponderPaged(p) if p.reason.is_notice() => {}
        PageChange::ResponderPaged(_) => {
            facts.0.get_or_insert(event.at);
        }
        PageChange::PageAcknowledged(_) => facts.1 = true,
        _ => {}
    }
}

fn stripe_of(key: &str) -> usize {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut hasher);
    (hasher.finish() % INCIDENT_LOCK_STRIPES as u64) as usize
}
