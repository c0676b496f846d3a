//! The reactor shell: the one run loop every reacting service runs on.
//!
//! A service supplies a [`Service`]: a pure fold of records into one state
//! value, and a pure decision per incident that returns [`Effect`]s. The
//! shell owns everything around them:
//!
//! - **Snapshots.** With [`Reactor::with_snapshots`] it saves the state
//!   (with the latest record of each incident and the incidents whose
//!   consequences were still unfolding) every `every` records and at the
//!   stop, cloned under the read lock and written by a blocking task, and
//!   at start resumes from a snapshot that checks out, folding only the
//!   log after it (see [`crate::snapshot`]); anything doubtful rebuilds.
//! - **Replay, then live.** It folds the log from position 1 and decides
//!   nothing until it has folded the head it saw at start (a decision on a
//!   partial fold would page for an incident resolved later in the log).
//!   Records up to the service's checkpoint (if it keeps one) are folded
//!   without making anything due; every later record makes its incident
//!   *dirty*.
//! - **Dirty incidents, timers.** Once caught up, each dirty incident is
//!   decided after every record; the next wake-up is the earliest
//!   [`Service::next_due`] (pure), read from the injected [`Clock`], and
//!   incidents due then are decided. A record that concerns many
//!   incidents at once (a recorded configuration) makes those the service
//!   names dirty too ([`Service::concerns`]).
//! - **Work in flight.** An incident whose decision is being carried out is
//!   not decided again until every record its effects appended has been
//!   folded back; what happens meanwhile keeps it dirty.
//! - **Bounded deliveries.** At most [`DELIVERIES_MAX`] deliveries run at
//!   once, each bounded by its channel's own retries and timeouts.
//! - **Drain.** On stop it folds no more, lets the work under way finish
//!   (at most [`DRAIN_WAIT`]) so that a delivery's outcome is recorded, and
//!   saves its checkpoint.
//! - **Eviction.** With [`Reactor::with_eviction`] an incident the service
//!   calls finished ([`Service::retired_since`]) for the configured time,
//!   with nothing under way, timed or to decide, leaves the state
//!   ([`Service::evict`]). Nothing is kept of it, not even its id: a
//!   record about an incident the shell does not hold, other than the
//!   first record of the incident's own stream, first reads it back from
//!   the log into a fresh state that the service adopts
//!   ([`Service::adopt`]). Memory is bounded by open work, while a rebuild
//!   folds too. A look for incidents to evict checks only
//!   the candidates due by now (kept in a queue by when they may leave),
//!   so its cost follows what can leave, not what is held.
//! - **Progress and the barrier.** [`Progress`] says which position is
//!   folded and which is *processed*: folded, decided, carried out and
//!   folded back. [`Handle::wait_processed`] is the barrier tests wait on
//!   before asserting that nothing else happened.
//!
//! Every task it starts is owned by a `JoinSet` that the loop drains or
//! drops; time comes only from the [`Clock`].

use std::collections::{BTreeSet, HashMap, HashSet};
use std::num::NonZeroU64;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use klaxon_bus::{Bus, SharedRecord};
use klaxon_domain::ids::IncidentId;
use klaxon_domain::outbox::{Outbox, Receipt};
use klaxon_log::{Appended, Position, Record};
use klaxon_telemetry::Traced;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::sync::{Semaphore, broadcast, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::claim::{self, Claim, Claims};
use crate::effect::{Append, Cause, Deliver, Effect};
use crate::snapshot::{Loaded, SnapshotFile};
use crate::{Clock, Error};

/// Deliveries running at once, across all incidents of one service.
pub const DELIVERIES_MAX: usize = 16;
/// How long a clean stop waits for the work under way.
pub const DRAIN_WAIT: Duration = Duration::from_secs(30);
/// How a piece of work ended that a stop may have come during (see
/// [`finish_at_stop`]).
#[derive(Debug)]
pub enum Finished<T> {
    /// It ended, no stop came first.
    Done(T),
    /// A stop came first; then the work ended within [`DRAIN_WAIT`]
    /// (`Some`), or was abandoned or, the stop being there already, never
    /// begun (`None`).
    Stopped(Option<T>),
}

/// Runs `work` (named `what` in the log) until it ends or `shutdown`
/// comes; after a stop, gives it at most [`DRAIN_WAIT`] more, as the shell
/// drains its own work: a delivery made and not yet recorded would
/// otherwise be made again after the restart. Work whose turn comes after
/// the stop is not begun. For the loops beside the shell (trend reports,
/// shift notices) whose work is one delivery and its record.
pub async fn finish_at_stop<T>(
    shutdown: &CancellationToken,
    what: &str,
    work: impl std::future::Future<Output = T>,
) -> Finished<T> {
    if shutdown.is_cancelled() {
        return Finished::Stopped(None);
    }
    tokio::pin!(work);
    tokio::select! {
        done = &mut work => Finished::Done(done),
        () = shutdown.cancelled() => match tokio::time::timeout(DRAIN_WAIT, work).await {
            Ok(done) => Finished::Stopped(Some(done)),
            Err(_) => {
                tracing::warn!(what, "still under way at the stop; it is redone after the restart");
                Finished::Stopped(None)
            }
        },
    }
}

/// How long a query waits for the service to fold the log's head.
pub const CATCH_UP_WAIT: Duration = Duration::from_secs(5);
/// How long [`Handle::wait_processed`] waits.
pub const PROCESSED_WAIT: Duration = Duration::from_secs(10);
/// Records folded between two checkpoint saves (services with a checkpoint).
pub const CHECKPOINT_EVERY: u64 = 256;
/// Records folded between two looks for incidents to evict.
pub const EVICT_EVERY: u64 = 1024;
/// Records of one stream read at a time when an incident is read back.
const REHYDRATE_PAGE: usize = 1024;

/// How often, on the clock, the shell looks for incidents to evict when
/// they are evicted `after` being finished: as often as `after`, but at
/// least once an hour and at most once a minute.
pub fn sweep_interval(after: chrono::TimeDelta) -> chrono::TimeDelta {
    after.clamp(chrono::TimeDelta::minutes(1), chrono::TimeDelta::hours(1))
}

/// Keeps the latest of an incident's event times in `latest` (what a
/// service's [`Service::retired_since`] answers from).
pub fn note_latest(latest: &mut HashMap<IncidentId, DateTime<Utc>>, id: IncidentId, at: DateTime<Utc>) {
    let entry = latest.entry(id).or_insert(at);
    *entry = (*entry).max(at);
}

/// What a reacting service supplies: a pure fold and a pure decision.
pub trait Service: Send + Sync + 'static {
    /// The projection: one value, owned by the shell, rebuilt from the log
    /// (or resumed from a snapshot of it: hence `Clone` and serde).
    type State: Default + Clone + Serialize + DeserializeOwned + Send + Sync + 'static;
    /// What a [`Deliver`] effect records its outcome with.
    type Then: Send + 'static;

    /// The service's name, in logs and errors.
    const NAME: &'static str;
    /// The checkpoint it keeps, if any: records up to it were reacted to
    /// before, so they are folded without making their incident dirty.
    const CHECKPOINT: Option<&'static str> = None;
    /// Whether it has timers ([`Service::next_due`] can return something).
    const TIMERS: bool = false;
    /// The version of `State`'s shape in snapshots. Bump it whenever what
    /// `State` serializes to, or what a fold makes of it, changes: a
    /// snapshot of another version is ignored and the state rebuilt.
    const SCHEMA: u32 = 1;

    /// Folds one record; returns the incident it concerns, which is then
    /// decided again. Records come in position order, each once. The
    /// record may be shared with the process's other services: its events
    /// are decoded with [`crate::decode::shared`] and its neighbours, once
    /// for all of them.
    fn fold(&self, state: &mut Self::State, record: &SharedRecord) -> Result<Option<IncidentId>, Error>;

    /// The incidents, besides the one [`Service::fold`] returned, that
    /// `record` (just folded into `state`) concerns and that must be
    /// decided again: for a record that concerns many incidents at once,
    /// such as a recorded configuration. Called after every fold, so it
    /// must be cheap for the records that concern no more (the default
    /// concerns none). Only incidents held in the state count: an evicted
    /// one is finished, and a record it should react to must be about it
    /// (its own streams) to read it back. Such an incident becomes dirty
    /// as after a record of its own (not while replaying up to the
    /// checkpoint), but its latest record ([`Cause`]) stays its own.
    fn concerns(&self, _state: &Self::State, _record: &Record) -> Vec<IncidentId> {
        Vec::new()
    }

    /// What to do now about `incident`, whose latest record is `cause`.
    fn decide(
        &self,
        state: &Self::State,
        incident: IncidentId,
        cause: &Cause,
        now: DateTime<Utc>,
    ) -> Vec<Effect<Self::Then>>;

    /// When `incident` must be decided next, if ever (a past instant means
    /// now).
    fn next_due(&self, _state: &Self::State, _incident: IncidentId) -> Option<DateTime<Utc>> {
        None
    }

    /// The append that records what came of a delivery.
    fn recorded(&self, _then: Self::Then, _receipts: Vec<Receipt>) -> Option<Append> {
        None
    }

    /// Since when `incident` has been finished work for this service (it
    /// is resolved or closed: the time of its latest event), or `None`
    /// while it is not (or when the service keeps every incident, the
    /// default). With [`Reactor::with_eviction`], an incident finished for
    /// longer than the configured time, with nothing to decide and no
    /// timer, leaves the state ([`Service::evict`]) and comes back from the
    /// log ([`Service::adopt`]) when a record about it arrives. The answer
    /// may change only when [`Service::fold`] folds a record it says
    /// concerns the incident: the shell notes it then, and its sweeps look
    /// at the incidents due by that note (re-checking the answer).
    fn retired_since(&self, _state: &Self::State, _incident: IncidentId) -> Option<DateTime<Utc>> {
        None
    }

    /// Takes `incident` out of `state`: everything the service keeps for it
    /// alone. Aggregates over history (counters, trend summaries) stay: a
    /// record folded once is counted once.
    fn evict(&self, _state: &mut Self::State, _incident: IncidentId) {}

    /// Moves `incident` back into `state` from `from`: a fresh state into
    /// which the shell folded only the records of the incident's streams
    /// that `state` had folded before (so `from`'s aggregates count them a
    /// second time and must not be merged). Afterwards `state` must hold
    /// for the incident exactly what it would had it never been evicted.
    fn adopt(&self, _state: &mut Self::State, _from: Self::State, _incident: IncidentId) {}

    /// Called once at start, before the first record is folded, with the
    /// state resumed from a snapshot (`resumed`) or the fresh one a
    /// rebuild from scratch folds into; `snapshot` is where snapshots are
    /// saved, if they are. A service that keeps part of its state outside
    /// the snapshot (review's rows table, `crate::table`) opens it here,
    /// and returns `false` to refuse a resumed state whose outside part is
    /// not the one it was saved with: the shell then rebuilds from scratch
    /// and calls it again with a fresh state.
    fn open(
        &self,
        _state: &mut Self::State,
        _snapshot: Option<&std::path::Path>,
        _resumed: bool,
    ) -> Result<bool, Error> {
        Ok(true)
    }

    /// Makes durable what a snapshot of the state counts on outside it (a
    /// rows table): called off the loop, after the state is copied and
    /// before the snapshot is written; an error leaves the previous
    /// snapshot in place. Blocking.
    fn persist(&self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Where a service is in the log.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// The last position folded into the state.
    pub applied: Position,
    /// The last position whose record is folded *and* whose consequences
    /// are: every decision it led to was carried out and its records folded
    /// back. Before the service has caught up with the log it found at
    /// start, this is its checkpoint (or zero).
    pub processed: Position,
    /// When the next timer fires, as of `processed` (none while not caught up).
    pub due: Option<DateTime<Utc>>,
    /// The position of the snapshot this run resumed from (zero: it
    /// rebuilt from scratch); `applied - resumed` records were folded since
    /// the start.
    pub resumed: Position,
    /// The position of the last snapshot saved (or resumed from): moved
    /// once a save is durable, never by a save that failed.
    pub snapshot: Position,
    /// Incidents the shell holds in the state (its latest record known).
    pub held: u64,
    /// The most incidents held at once since the start, counted after each
    /// record folded (a from-scratch rebuild's peak: with eviction, open
    /// work plus what the records since the last look touched).
    pub held_max: u64,
    /// Held incidents the sweeps looked at since the start (a work counter:
    /// what looking for incidents to evict cost).
    pub examined: u64,
    /// Evicted incidents read back from the log since the start, because a
    /// record about one arrived (a work counter).
    pub read_back: u64,
    /// Incidents evicted from the state (see [`Reactor::with_eviction`]),
    /// to be read back from the log when a record about one arrives: a
    /// count (evictions less read backs, carried in snapshots), not a set.
    pub evicted: u64,
    /// When the shell next looks for incidents to evict (none without
    /// eviction, or while not caught up). [`Handle::wait_processed`]
    /// waits for a sweep that is due.
    pub sweep: Option<DateTime<Utc>>,
}

/// The shell of one service. Build it, take [`Handle`]s, then
/// [`Reactor::run`] it.
pub struct Reactor<S: Service> {
    handle: Handle<S>,
}

/// A cheap-to-clone handle: the state for queries, progress, appends.
pub struct Handle<S: Service> {
    inner: Arc<Inner<S>>,
}

impl<S: Service> Clone for Handle<S> {
    fn clone(&self) -> Self {
        Handle { inner: self.inner.clone() }
    }
}

struct Inner<S: Service> {
    service: S,
    bus: Bus,
    clock: Arc<dyn Clock>,
    outbox: Option<Arc<dyn Outbox>>,
    state: RwLock<S::State>,
    progress: watch::Sender<Progress>,
    changes: Option<broadcast::Sender<IncidentId>>,
    claims: Option<Claims>,
    claim_counts: ClaimCounters,
    snapshots: Option<(SnapshotFile, NonZeroU64)>,
    /// How long an incident stays in the state once finished (eviction is
    /// off without it).
    evict_after: Option<chrono::TimeDelta>,
    /// The incidents held in the state (the loop's `Run::causes`, for
    /// queries): an incident not held is evicted or unknown, and the log
    /// answers either way. Changed only under the state's write lock (taken
    /// first), so that a reader holding the state's lock sees the two agree.
    /// Bounded by open work, like the state.
    held: RwLock<HashSet<IncidentId>>,
}

/// An incident read back from the log (see `Inner::read_back`).
struct ReadBack<St> {
    /// A fresh state into which the incident's records were folded.
    state: St,
    /// How many records were read.
    read: usize,
    /// The latest record read whose fold concerned the incident.
    cause: Option<Cause>,
}

/// What a snapshot holds besides the service's state: what the loop needs
/// to carry on as if it had folded the log up to the snapshot itself.
#[derive(Serialize, Deserialize)]
struct Saved<St> {
    state: St,
    /// The latest record of each incident (decisions and timers need it).
    causes: Vec<(IncidentId, Cause)>,
    /// Incidents whose consequences were still unfolding (dirty, decided
    /// and under way, or not folded back): decided again after a resume,
    /// so a snapshot ahead of the processed position loses no reaction.
    pending: Vec<IncidentId>,
    /// How many incidents are evicted (absent in snapshots of builds
    /// without eviction: none). Builds before it kept the evicted ids and
    /// saved them here as a list: such a snapshot is resumed, its list
    /// counted and dropped (the log says which incidents are evicted).
    #[serde(default, deserialize_with = "evicted_count")]
    evicted: u64,
}

/// [`Saved::evicted`]: a count, or the list of evicted ids earlier builds
/// saved, counted without being kept.
fn evicted_count<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    struct Count;
    impl<'de> serde::de::Visitor<'de> for Count {
        type Value = u64;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a count of evicted incidents or a list of their ids")
        }
        fn visit_u64<E: serde::de::Error>(self, count: u64) -> Result<u64, E> {
            Ok(count)
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut ids: A) -> Result<u64, A::Error> {
            let mut count = 0;
            while ids.next_element::<serde::de::IgnoredAny>()?.is_some() {
                count += 1;
            }
            Ok(count)
        }
    }
    deserializer.deserialize_any(Count)
}

#[derive(Default)]
struct ClaimCounters {
    won: AtomicU64,
    lost: AtomicU64,
}

/// How many deliveries this replica claimed and won, and how many it found
/// claimed by another replica (each decision counts once).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClaimCounts {
    /// Claims won: this replica delivered.
    pub won: u64,
    /// Claims lost: another replica held the delivery.
    pub lost: u64,
}

/// What carrying out one decision came to.
#[derive(Clone, Copy, Debug, Default)]
struct Done {
    /// The last position its effects appended.
    last: Option<Position>,
    /// When a delivery another replica holds may be claimed again.
    retry_at: Option<DateTime<Utc>>,
    /// An append lost to another writer (a version conflict).
    conflicted: bool,
}

/// An incident with a delivery another replica holds.
#[derive(Clone, Copy, Debug)]
struct ClaimWait {
    /// When the decision that found it claimed was made: timers due by then
    /// were that decision's, and wait with it.
    decided: DateTime<Utc>,
    /// When the claim expires: the incident is decided again then.
    until: DateTime<Utc>,
}

type Job = (IncidentId, Result<Done, Error>);

impl<S: Service> Reactor<S> {
    /// The shell of `service` over `bus`, reading time from `clock`.
    pub fn new(bus: impl Into<Bus>, service: S, clock: Arc<dyn Clock>) -> Reactor<S> {
        let inner = Inner {
            service,
            bus: bus.into(),
            clock,
            outbox: None,
            state: RwLock::new(S::State::default()),
            progress: watch::channel(Progress::default()).0,
            changes: None,
            claims: None,
            claim_counts: ClaimCounters::default(),
            snapshots: None,
            evict_after: None,
            held: RwLock::new(HashSet::new()),
        };
        Reactor { handle: Handle { inner: Arc::new(inner) } }
    }

    fn configure(&mut self) -> &mut Inner<S> {
        Arc::get_mut(&mut self.handle.inner).expect("configured before any handle is taken")
    }

    /// Delivers [`Deliver`] effects through `outbox`. A service whose
    /// decisions deliver needs one.
    pub fn with_outbox(mut self, outbox: Arc<dyn Outbox>) -> Reactor<S> {
        self.configure().outbox = Some(outbox);
        self
    }

    /// Announces each incident a record changes on a broadcast of
    /// `capacity` ([`Handle::changes`]); a receiver that falls further
    /// behind is told it lagged.
    pub fn with_changes(mut self, capacity: usize) -> Reactor<S> {
        self.configure().changes = Some(broadcast::channel(capacity.max(1)).0);
        self
    }

    /// Claims every delivery through the log before sending it (see
    /// [`crate::claim`]), so that replicas of the service running side by
    /// side deliver each one once. Without claims, the shell delivers what
    /// it decides: right for a single replica (`klaxond up`).
    pub fn with_claims(mut self, claims: Claims) -> Reactor<S> {
        self.configure().claims = Some(claims);
        self
    }

    /// Saves the state to `file` every `every` records folded and at a
    /// clean stop, and resumes from it at start (folding only the log after
    /// it). Without it the shell rebuilds from position 1 at every start.
    pub fn with_snapshots(mut self, file: SnapshotFile, every: NonZeroU64) -> Reactor<S> {
        self.configure().snapshots = Some((file, every));
        self
    }

    /// Evicts an incident from the state once it has been finished (see
    /// [`Service::retired_since`]) for `after`, when nothing about it is
    /// dirty, under way or timed: memory then holds open work and recent
    /// history, not all of it. The shell looks for such incidents every
    /// [`EVICT_EVERY`] records folded, before each snapshot, and on the
    /// clock every [`sweep_interval`]`(after)`. A record about an evicted
    /// incident first reads it back from the log.
    ///
    /// What the shell needs of the service for that: its fold concerns an
    /// incident ([`Service::fold`] returns it) for every record of the
    /// incident's own stream (`incident-INC-n`), so that an incident is held
    /// from that stream's first record until it is evicted. An incident not
    /// held is then evicted exactly when its own stream has records before
    /// the one arriving (every service here folds every incident event). Zero evicts at the first
    /// look after the incident is finished.
    pub fn with_eviction(mut self, after: Duration) -> Reactor<S> {
        let after = chrono::TimeDelta::from_std(after).unwrap_or(chrono::TimeDelta::MAX);
        self.configure().evict_after = Some(after);
        self
    }

    /// A handle to it.
    pub fn handle(&self) -> Handle<S> {
        self.handle.clone()
    }

    /// Folds the log from position 1, decides once caught up with the head
    /// found at start, then follows the log and the clock until `shutdown`
    /// or the log's end. A record that does not decode, a failed append or
    /// a broken log stops it with the error.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), Error> {
        let inner = self.handle.inner;
        let checkpoint = match S::CHECKPOINT {
            Some(name) => inner.bus.load_checkpoint(name).await?,
            None => Position::ZERO,
        };
        let start_head = inner.bus.head().await?;
        let mut run = Run::new(checkpoint, start_head);
        let snapshot_path = inner.snapshots.as_ref().map(|(file, _)| file.path().to_owned());
        let mut loaded = inner.resume(start_head).await;
        if let Some(resumed) = loaded.as_mut() {
            if !inner.service.open(&mut resumed.state.state, snapshot_path.as_deref(), true)? {
                tracing::warn!(
                    service = S::NAME,
                    "snapshot ignored (its rows table is not there); rebuilding from the log"
                );
                loaded = None;
            }
        }
        match loaded {
            Some(loaded) => run.resume(&inner, loaded),
            None => {
                let mut state = inner.state.write().expect("state lock");
                inner.service.open(&mut state, snapshot_path.as_deref(), false)?;
            }
        }
        let mut subscription = inner.bus.follow(run.applied.next());
        let deliveries = Arc::new(Semaphore::new(DELIVERIES_MAX));
        let mut jobs: JoinSet<Job> = JoinSet::new();
        // The snapshot being written, if any (one at a time).
        let mut saving: Option<JoinHandle<()>> = None;
        if run.caught_up {
            run.decide(&inner, &mut jobs, &deliveries);
        }
        let outcome = loop {
            run.publish(&inner);
            let sleep = match run.wake.into_iter().chain(run.next_sweep).min() {
                Some(at) => inner.clock.sleep_until(at),
                None => Box::pin(std::future::pending()),
            };
            // In this order, not tokio's random one: of what is ready at
            // once, a stop first, then records (decisions see the freshest
            // state), then finished work, then timers. The same inputs then
            // give the same decisions in the same order, which is what lets
            // the simulation (`klaxon-sim`) replay a seed exactly.
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break Ok(()),
                next = subscription.next_shared() => match next {
                    None => break Ok(()),
                    Some(Err(e)) => break Err(e.into()),
                    Some(Ok(record)) => {
                        if let Err(e) = run.rehydrate(&inner, &record).await {
                            break Err(e);
                        }
                        if let Err(e) = run.fold(&inner, &record) {
                            break Err(e);
                        }
                        if let Err(e) = run.save_checkpoint(&inner, false).await {
                            break Err(e);
                        }
                        if saving.as_ref().is_none_or(JoinHandle::is_finished) && run.snapshot_due(&inner) {
                            saving = run.snapshot(&inner);
                        }
                    }
                },
                Some(finished) = jobs.join_next() => {
                    let (incident, result) = finished.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
                    match result {
                        Ok(done) => run.finished(incident, done),
                        Err(e) => break Err(e),
                    }
                }
                _ = sleep => run.due(&inner),
            }
            if run.caught_up {
                run.decide(&inner, &mut jobs, &deliveries);
            }
        };
        // An error stops the service; what is under way is abandoned
        // (dropping the set aborts it) and redone after the restart.
        outcome?;
        if !jobs.is_empty() {
            let drained = tokio::time::timeout(DRAIN_WAIT, async {
                while let Some(finished) = jobs.join_next().await {
                    let (incident, result) = finished.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
                    if let Err(e) = result {
                        tracing::error!(service = S::NAME, %incident, error = %e, "work under way at the stop failed");
                    }
                }
            });
            if drained.await.is_err() {
                tracing::warn!(service = S::NAME, "work still under way at the stop; it is redone after the restart");
            }
        }
        // Best effort: a closed log means the process is stopping anyway.
        let _ = run.save_checkpoint(&inner, true).await;
        if let Some(saving) = saving.take() {
            let _ = saving.await;
        }
        if run.applied > run.snapshot_at {
            if let Some(saving) = run.snapshot(&inner) {
                let _ = saving.await;
            }
        }
        Ok(())
    }
}

/// What the loop keeps besides the service's state: all of it follows from
/// the log and the work under way, none of it is persisted.
struct Run {
    /// The snapshot the run resumed from (zero: none).
    resumed: Position,
    /// The position of the last snapshot started or resumed from (when
    /// the next is due). The last one saved is only in the published
    /// [`Progress::snapshot`]: the task that saves one sets it there once
    /// the file is durable.
    snapshot_at: Position,
    /// The event id of the record at `applied`.
    last_id: uuid::Uuid,
    checkpoint: Position,
    start_head: Position,
    caught_up: bool,
    applied: Position,
    saved: Position,
    /// Incidents to decide.
    dirty: BTreeSet<IncidentId>,
    /// The latest record of each incident.
    causes: HashMap<IncidentId, Cause>,
    /// Incidents whose decision is being carried out: the last position its
    /// effects appended, once they are all done.
    in_flight: HashMap<IncidentId, Option<Position>>,
    /// For each incident whose consequences are still unfolding (a decision
    /// under way, its records to fold back, the decision they lead to...),
    /// the position folded when the first decision of the chain was made.
    origins: HashMap<IncidentId, Position>,
    /// Incidents with a delivery another replica claimed (decided again
    /// when the claim expires, or when a record or a later timer says so).
    claim_waits: HashMap<IncidentId, ClaimWait>,
    /// When each incident in flight was decided.
    decided: HashMap<IncidentId, DateTime<Utc>>,
    /// Incidents whose last decision lost a race with another writer: the
    /// other write is in the log but not folded yet, so deciding again
    /// (for a timer, say) would only conflict again, at once and forever
    /// while the fold lags. They wait for their next record.
    stale: BTreeSet<IncidentId>,
    /// The earliest `next_due` of the incidents not in flight, or claim
    /// expiry.
    wake: Option<DateTime<Utc>>,
    /// When to look for incidents to evict next (with eviction, once
    /// caught up).
    next_sweep: Option<DateTime<Utc>>,
    /// Records folded since the last look.
    since_sweep: u64,
    /// How many incidents are evicted: evictions less read backs (a count,
    /// not a set: the log says which).
    evicted: u64,
    /// The most incidents held at once (`causes`) since the start.
    held_max: usize,
    /// Held incidents the sweeps looked at since the start.
    examined: u64,
    /// The candidates for eviction (with eviction on): every held incident
    /// the service calls finished, keyed by when it may leave (finished
    /// since + the eviction time). Noted when a record about the incident
    /// is folded (or it is read back, or resumed), which is when what
    /// [`Service::retired_since`] answers can change; a sweep looks at the
    /// candidates due, not at every held incident.
    retiring: BTreeSet<(DateTime<Utc>, IncidentId)>,
    /// Each candidate's key in `retiring`.
    retire_at: HashMap<IncidentId, DateTime<Utc>>,
    /// Evicted incidents read back since the start.
    read_back: u64,
}

impl Run {
    fn new(checkpoint: Position, start_head: Position) -> Run {
        Run {
            resumed: Position::ZERO,
            snapshot_at: Position::ZERO,
            last_id: uuid::Uuid::nil(),
            checkpoint,
            start_head,
            caught_up: start_head == Position::ZERO,
            applied: Position::ZERO,
            saved: checkpoint,
            dirty: BTreeSet::new(),
            causes: HashMap::new(),
            in_flight: HashMap::new(),
            origins: HashMap::new(),
            claim_waits: HashMap::new(),
            decided: HashMap::new(),
            stale: BTreeSet::new(),
            wake: None,
            next_sweep: None,
            since_sweep: 0,
            evicted: 0,
            held_max: 0,
            examined: 0,
            read_back: 0,
            retiring: BTreeSet::new(),
            retire_at: HashMap::new(),
        }
    }

    fn fold<S: Service>(&mut self, inner: &Inner<S>, record: &SharedRecord) -> Result<(), Error> {
        let (touched, concerned) = {
            let mut state = inner.state.write().expect("state lock");
            let touched = inner.service.fold(&mut state, record)?;
            if let Some(incident) = touched {
                self.note_retiring(inner, &state, incident);
                if self.causes.insert(incident, Cause::of(record)).is_none() {
                    inner.held.write().expect("held lock").insert(incident);
                }
            }
            (touched, inner.service.concerns(&state, record))
        };
        self.concerned(inner, record, concerned);
        self.applied = record.position;
        self.last_id = record.id;
        if let Some(incident) = touched {
            self.stale.remove(&incident);
            self.held_max = self.held_max.max(self.causes.len());
            if record.position > self.checkpoint {
                self.dirty.insert(incident);
            }
            if let Some(changes) = &inner.changes {
                let _ = changes.send(incident);
            }
        }
        let position = record.position;
        let folded_back: Vec<IncidentId> =
            self.in_flight.iter().filter(|(_, until)| until.is_some_and(|u| u <= position)).map(|(i, _)| *i).collect();
        for incident in folded_back {
            self.landed(incident);
        }
        if !self.caught_up && record.position >= self.start_head {
            self.caught_up = true;
        }
        self.since_sweep += 1;
        if self.since_sweep >= EVICT_EVERY {
            self.sweep(inner);
        }
        Ok(())
    }

    /// Makes dirty the held incidents that `record` concerns besides its
    /// own ([`Service::concerns`]), as a record of theirs would.
    fn concerned<S: Service>(&mut self, inner: &Inner<S>, record: &Record, incidents: Vec<IncidentId>) {
        for incident in incidents {
            if !self.causes.contains_key(&incident) {
                continue;
            }
            self.stale.remove(&incident);
            if record.position > self.checkpoint {
                self.dirty.insert(incident);
            }
            if let Some(changes) = &inner.changes {
                let _ = changes.send(incident);
            }
        }
    }

    /// Before `record` is folded: when it concerns an evicted incident,
    /// reads that incident back from the log (every record of its streams
    /// before `record`), folds it into a fresh state and has the service
    /// adopt it, so that `record` folds onto what a shell that never
    /// evicted would hold. Nothing becomes dirty: the records read back
    /// were reacted to before.
    ///
    /// No set of evicted ids says which incidents those are: an incident
    /// the shell does not hold is evicted when the log has records of it
    /// before `record` (an incident is held from its own stream's first
    /// record until it is evicted; see [`Reactor::with_eviction`]). The
    /// first record of its own stream is a new incident's, so it reads
    /// nothing; any other record about an incident not held reads its
    /// streams back, and finding no record that concerned it there (an
    /// incident whose own stream is still empty) holds nothing and counts
    /// nothing.
    async fn rehydrate<S: Service>(&mut self, inner: &Inner<S>, record: &Record) -> Result<(), Error> {
        if self.evicted == 0 {
            return Ok(());
        }
        let Some(incident) = crate::streams::incident_of(&record.stream) else { return Ok(()) };
        if self.causes.contains_key(&incident) {
            return Ok(());
        }
        if record.version.0 <= 1 && record.stream == crate::streams::incident(incident) {
            return Ok(());
        }
        let ReadBack { state: back, read, cause } = inner.read_back(incident, Some(record.position)).await?;
        let Some(cause) = cause else {
            tracing::debug!(service = S::NAME, %incident, records = read, position = %record.position, "not evicted: nothing of it was held");
            return Ok(());
        };
        let mut state = inner.state.write().expect("state lock");
        inner.service.adopt(&mut state, back, incident);
        // Held again, with the latest record about it: when `record` is
        // one the service's fold passes over (review's records, for
        // paging), the incident must still be known to the sweeps, or it
        // would stay in memory, neither held nor evicted, for good.
        self.causes.insert(incident, cause);
        inner.held.write().expect("held lock").insert(incident);
        self.evicted = self.evicted.saturating_sub(1);
        self.read_back += 1;
        self.held_max = self.held_max.max(self.causes.len());
        self.note_retiring(inner, &state, incident);
        tracing::debug!(service = S::NAME, %incident, records = read, position = %record.position, "read back from the log");
        Ok(())
    }

    /// Notes when `incident` may leave, as the service says now (called
    /// after a record about it was folded, or it was read back or resumed):
    /// its candidate entry is replaced, or removed when it is not finished.
    fn note_retiring<S: Service>(&mut self, inner: &Inner<S>, state: &S::State, incident: IncidentId) {
        let Some(after) = inner.evict_after else { return };
        let at = inner.service.retired_since(state, incident).and_then(|since| since.checked_add_signed(after));
        let old = match at {
            Some(at) => self.retire_at.insert(incident, at),
            None => self.retire_at.remove(&incident),
        };
        if old != at {
            if let Some(old) = old {
                self.retiring.remove(&(old, incident));
            }
            if let Some(at) = at {
                self.retiring.insert((at, incident));
            }
        }
    }

    /// Evicts every incident the service says is finished for longer than
    /// the configured time, with nothing under way, waiting or stale, no
    /// timer, and nothing to decide now (an incident dirty only because a
    /// record arrived, whose decision would be empty, is as good as
    /// decided). Its latest record is forgotten with it. It looks only at
    /// the candidates due by now (`retiring`): its cost follows what can
    /// leave (and what is due but held back by work under way, looked at
    /// again each time), not what is held.
    fn sweep<S: Service>(&mut self, inner: &Inner<S>) {
        self.since_sweep = 0;
        let Some(after) = inner.evict_after else { return };
        let now = inner.clock.now();
        if self.caught_up {
            self.next_sweep = Some(now + sweep_interval(after));
        }
        let due: Vec<(DateTime<Utc>, IncidentId)> =
            self.retiring.iter().take_while(|(at, _)| *at <= now).copied().collect();
        if due.is_empty() {
            return;
        }
        self.examined += due.len() as u64;
        let service = &inner.service;
        let mut state = inner.state.write().expect("state lock");
        let mut leaving = Vec::new();
        for (at, incident) in due {
            // What the service says now: the same as when the candidate
            // was noted, unless its `retired_since` changed without a
            // record about the incident (then the entry follows it).
            let now_at = service.retired_since(&state, incident).and_then(|since| since.checked_add_signed(after));
            if now_at != Some(at) {
                self.note_retiring(inner, &state, incident);
                if now_at.is_none_or(|at| at > now) {
                    continue;
                }
            }
            let Some(cause) = self.causes.get(&incident) else { continue };
            let finished = !self.in_flight.contains_key(&incident)
                && !self.origins.contains_key(&incident)
                && !self.claim_waits.contains_key(&incident)
                && !self.stale.contains(&incident)
                && service.next_due(&state, incident).is_none()
                && service.decide(&state, incident, cause, now).is_empty();
            if finished {
                leaving.push(incident);
            }
        }
        if leaving.is_empty() {
            return;
        }
        let mut held = inner.held.write().expect("held lock");
        for incident in &leaving {
            service.evict(&mut state, *incident);
            self.causes.remove(incident);
            held.remove(incident);
            self.dirty.remove(incident);
            if let Some(at) = self.retire_at.remove(incident) {
                self.retiring.remove(&(at, *incident));
            }
        }
        self.evicted += leaving.len() as u64;
        tracing::debug!(service = S::NAME, count = leaving.len(), evicted = self.evicted, "evicted finished incidents");
    }

    /// A decision's effects are all carried out; `last` is the last
    /// position they appended; a delivery another replica holds is decided
    /// again at `retry_at`.
    fn finished(&mut self, incident: IncidentId, Done { last, retry_at, conflicted }: Done) {
        let decided = self.decided.remove(&incident);
        // Unless a record about it was folded since the decision (the
        // other write, maybe): then it is dirty and decided again anyway.
        if conflicted && !self.dirty.contains(&incident) {
            self.stale.insert(incident);
        }
        if let (Some(until), Some(decided)) = (retry_at, decided) {
            self.claim_waits.insert(incident, ClaimWait { decided, until });
        }
        match last {
            Some(last) if last > self.applied => {
                self.in_flight.insert(incident, Some(last));
            }
            // Folded back already, or nothing written (a conflict: the
            // other write is folded, or will be, and makes it dirty again).
            _ => self.landed(incident),
        }
    }

    /// The incident's effects are done and folded back: it may be decided
    /// again. When nothing made it dirty meanwhile, its chain ends here.
    fn landed(&mut self, incident: IncidentId) {
        self.in_flight.remove(&incident);
        if !self.dirty.contains(&incident) {
            self.origins.remove(&incident);
        }
    }

    /// The clock reached the wake-up: the incidents due are dirty.
    fn due<S: Service>(&mut self, inner: &Inner<S>) {
        let now = inner.clock.now();
        let expired: Vec<IncidentId> =
            self.claim_waits.iter().filter(|(_, w)| w.until <= now).map(|(incident, _)| *incident).collect();
        for incident in expired {
            self.claim_waits.remove(&incident);
            self.dirty.insert(incident);
        }
        if self.next_sweep.is_some_and(|at| at <= now) {
            self.sweep(inner);
        }
        let state = inner.state.read().expect("state lock");
        for incident in self.causes.keys() {
            if !self.in_flight.contains_key(incident)
                && !self.stale.contains(incident)
                && self.timer(&inner.service, &state, *incident).is_some_and(|due| due <= now)
            {
                self.dirty.insert(*incident);
            }
        }
    }

    /// Decides every dirty incident not in flight and starts its effects.
    fn decide<S: Service>(&mut self, inner: &Arc<Inner<S>>, jobs: &mut JoinSet<Job>, deliveries: &Arc<Semaphore>) {
        let ready: Vec<IncidentId> = self.dirty.iter().filter(|i| !self.in_flight.contains_key(i)).copied().collect();
        if !ready.is_empty() {
            let now = inner.clock.now();
            let state = inner.state.read().expect("state lock");
            for incident in ready {
                self.dirty.remove(&incident);
                // Deciding again now covers what a claim wait was for.
                self.claim_waits.remove(&incident);
                let Some(cause) = self.causes.get(&incident) else { continue };
                let effects = inner.service.decide(&state, incident, cause, now);
                if effects.is_empty() {
                    self.origins.remove(&incident);
                    continue;
                }
                self.origins.entry(incident).or_insert(self.applied);
                self.in_flight.insert(incident, None);
                self.decided.insert(incident, now);
                let (inner, deliveries) = (inner.clone(), deliveries.clone());
                jobs.spawn(async move { (incident, carry_out(inner, incident, effects, deliveries).await) });
            }
        }
        let timers = if S::TIMERS {
            let state = inner.state.read().expect("state lock");
            let pending = self.causes.keys().filter(|i| !self.in_flight.contains_key(*i) && !self.stale.contains(*i));
            pending.filter_map(|i| self.timer(&inner.service, &state, *i)).min()
        } else {
            None
        };
        let claims = self.claim_waits.values().map(|w| w.until).min();
        self.wake = timers.into_iter().chain(claims).min();
        // Caught up: the first look for incidents to evict is now.
        if inner.evict_after.is_some() && self.next_sweep.is_none() {
            self.next_sweep = Some(inner.clock.now());
        }
    }

    /// The incident's next timer, but for one due when its delivery was
    /// found claimed by another replica: that one waits for the claim.
    fn timer<S: Service>(&self, service: &S, state: &S::State, incident: IncidentId) -> Option<DateTime<Utc>> {
        let due = service.next_due(state, incident)?;
        match self.claim_waits.get(&incident) {
            Some(wait) if due <= wait.decided => None,
            _ => Some(due),
        }
    }

    fn progress(&self) -> Progress {
        // The snapshot resumed from; `publish` keeps a later one saved since.
        let (resumed, snapshot) = (self.resumed, self.resumed);
        let (held, evicted, held_max) = (self.causes.len() as u64, self.evicted, self.held_max as u64);
        let (examined, read_back) = (self.examined, self.read_back);
        if !self.caught_up {
            let processed = self.applied.min(self.checkpoint);
            return Progress {
                applied: self.applied,
                processed,
                due: None,
                resumed,
                snapshot,
                held,
                held_max,
                examined,
                read_back,
                evicted,
                sweep: None,
            };
        }
        let processed = match self.origins.values().min() {
            Some(origin) => self.applied.min(Position(origin.0.saturating_sub(1))),
            None => self.applied,
        };
        let sweep = self.next_sweep;
        Progress {
            applied: self.applied,
            processed,
            due: self.wake,
            resumed,
            snapshot,
            held,
            held_max,
            examined,
            read_back,
            evicted,
            sweep,
        }
    }

    /// Takes over a snapshot: its state, each incident's latest record, and
    /// as dirty what was still unfolding (for a service without a
    /// checkpoint, every incident, as a rebuild from scratch would).
    fn resume<S: Service>(&mut self, inner: &Inner<S>, loaded: Loaded<Saved<S::State>>) {
        let Loaded { position, id, state: saved } = loaded;
        *inner.state.write().expect("state lock") = saved.state;
        self.causes = saved.causes.into_iter().collect();
        self.held_max = self.causes.len();
        self.dirty = saved.pending.into_iter().collect();
        self.evicted = saved.evicted;
        *inner.held.write().expect("held lock") = self.causes.keys().copied().collect();
        if S::CHECKPOINT.is_none() {
            self.dirty.extend(self.causes.keys().copied());
        }
        let state = inner.state.read().expect("state lock");
        let held: Vec<IncidentId> = self.causes.keys().copied().collect();
        for incident in held {
            self.note_retiring(inner, &state, incident);
        }
        self.applied = position;
        self.last_id = id;
        self.resumed = position;
        self.snapshot_at = position;
        self.caught_up = self.start_head <= position;
    }

    /// Whether `every` records were folded since the last snapshot, once
    /// caught up with the head found at start. Not while catching up: a
    /// start that folds a long log would otherwise clone and serialize the
    /// whole (growing) state every `every` records, competing with the
    /// fold for the CPU and doubling its memory, to save states that the
    /// one saved on reaching the head replaces at once.
    fn snapshot_due<S: Service>(&self, inner: &Inner<S>) -> bool {
        self.caught_up
            && inner.snapshots.as_ref().is_some_and(|(_, every)| self.applied.0 >= self.snapshot_at.0 + every.get())
    }

    /// Starts saving a snapshot of the state as folded now: the state is
    /// cloned under the read lock, serialized and written by a blocking
    /// task (never on the loop). A failed save is logged; the previous
    /// snapshot stays.
    fn snapshot<S: Service>(&mut self, inner: &Arc<Inner<S>>) -> Option<JoinHandle<()>> {
        let (file, _) = inner.snapshots.clone()?;
        if self.applied == Position::ZERO {
            return None;
        }
        // What is finished leaves first, so that snapshots shrink too.
        self.sweep(inner);
        let mut pending: BTreeSet<IncidentId> = self.dirty.clone();
        pending.extend(self.in_flight.keys().chain(self.origins.keys()).chain(self.claim_waits.keys()));
        let saved = Saved {
            state: inner.state.read().expect("state lock").clone(),
            causes: self.causes.iter().map(|(i, c)| (*i, c.clone())).collect(),
            pending: pending.into_iter().collect(),
            evicted: self.evicted,
        };
        let (position, id) = (self.applied, self.last_id);
        self.snapshot_at = position;
        let inner = inner.clone();
        // What the state counts on outside the snapshot is durable first.
        let save = move |file: &SnapshotFile| {
            inner.service.persist()?;
            file.save(S::SCHEMA, position, id, &saved)?;
            // Saved: now the progress says so (the loop's `publish` keeps it).
            inner.progress.send_if_modified(|p| {
                let later = position > p.snapshot;
                p.snapshot = p.snapshot.max(position);
                later
            });
            Ok::<(), std::io::Error>(())
        };
        Some(tokio::task::spawn_blocking(move || match save(&file) {
            Ok(()) => tracing::info!(service = S::NAME, %position, "snapshot saved"),
            Err(e) => {
                tracing::warn!(service = S::NAME, %position, error = %e, path = %file.path().display(), "snapshot not saved")
            }
        }))
    }

    fn publish<S: Service>(&self, inner: &Inner<S>) {
        let progress = self.progress();
        inner.progress.send_if_modified(|p| {
            // The last snapshot saved is set here by the task that saved
            // it (`snapshot`): it stays (a snapshot only moves forward).
            let progress = Progress { snapshot: progress.snapshot.max(p.snapshot), ..progress };
            std::mem::replace(p, progress) != progress
        });
    }

    /// Saves the checkpoint (the processed position) every
    /// [`CHECKPOINT_EVERY`] records, or now with `force`.
    async fn save_checkpoint<S: Service>(&mut self, inner: &Inner<S>, force: bool) -> Result<(), Error> {
        let Some(name) = S::CHECKPOINT else { return Ok(()) };
        let processed = self.progress().processed;
        if processed > self.saved && (force || processed.0 >= self.saved.0 + CHECKPOINT_EVERY) {
            inner.bus.save_checkpoint(name, processed).await?;
            self.saved = processed;
        }
        Ok(())
    }
}

/// Carries out one decision about `incident`: its appends in order, then
/// its deliveries (at most [`DELIVERIES_MAX`] at once across the service).
/// Returns the last position written, and when to decide again for the
/// deliveries another replica holds.
async fn carry_out<S: Service>(
    inner: Arc<Inner<S>>,
    incident: IncidentId,
    effects: Vec<Effect<S::Then>>,
    deliveries: Arc<Semaphore>,
) -> Result<Done, Error> {
    let mut done = Done::default();
    let mut sending = JoinSet::new();
    for effect in effects {
        match effect {
            Effect::Append(append) => match inner.append_reaction(append, None).await? {
                Some(last) => done.last = done.last.max(Some(last)),
                None => done.conflicted = true,
            },
            Effect::Deliver(deliver) => {
                let (inner, deliveries) = (inner.clone(), deliveries.clone());
                sending.spawn(async move {
                    let _permit = deliveries.acquire_owned().await.expect("the semaphore is never closed");
                    inner.deliver(incident, deliver).await
                });
            }
        }
    }
    while let Some(delivered) = sending.join_next().await {
        let delivered = delivered.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))?;
        done.last = done.last.max(delivered.last);
        done.retry_at = match (done.retry_at, delivered.retry_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
    Ok(done)
}

impl<S: Service> Inner<S> {
    /// Reads `incident` back from the log: every record of its streams
    /// (before position `before`, when given), folded in position order
    /// into a fresh state. Returns it, how many records it folded, and the
    /// latest of them that the fold said concerns the incident (its
    /// [`Cause`], as a shell that never evicted would know it).
    async fn read_back(&self, incident: IncidentId, before: Option<Position>) -> Result<ReadBack<S::State>, Error> {
        let mut records = Vec::new();
        for stream in crate::streams::of_incident(incident) {
            let mut from = klaxon_log::StreamVersion(1);
            'stream: loop {
                let page = self.bus.read_stream(&stream, from, REHYDRATE_PAGE).await?;
                let full = page.len() >= REHYDRATE_PAGE;
                for record in page {
                    if before.is_some_and(|before| record.position >= before) {
                        break 'stream;
                    }
                    from = klaxon_log::StreamVersion(record.version.0 + 1);
                    records.push(SharedRecord::new(record));
                }
                if !full {
                    break;
                }
            }
        }
        records.sort_by_key(|r| r.position);
        let mut state = S::State::default();
        let mut cause = None;
        for record in &records {
            if self.service.fold(&mut state, record)? == Some(incident) {
                cause = Some(record);
            }
        }
        Ok(ReadBack { state, read: records.len(), cause: cause.map(|r: &SharedRecord| Cause::of(r)) })
    }

    /// The snapshot to resume from, if one checks out (see
    /// [`crate::snapshot::resume`]).
    async fn resume(&self, head: Position) -> Option<Loaded<Saved<S::State>>> {
        let (file, _) = self.snapshots.as_ref()?;
        crate::snapshot::resume(file, S::SCHEMA, &self.bus, head, S::NAME).await
    }

    /// Appends a reaction in its span (or `enclosing`'s); a conflict with
    /// another writer writes nothing and is not an error.
    async fn append_reaction(&self, append: Append, enclosing: Option<&Traced>) -> Result<Option<Position>, Error> {
        let traced = match (&append.trace, enclosing) {
            (Some(trace), _) => Some(Traced::new(trace.span.clone(), trace.parent.as_deref())),
            (None, Some(traced)) => Some(traced.clone()),
            (None, None) => None,
        };
        let span = traced.as_ref().map_or_else(tracing::Span::none, |t| t.span().clone());
        let events = append.to_new_events(traced.as_ref().and_then(Traced::traceparent))?;
        let kinds: Vec<&str> = append.events.iter().map(|e| e.kind).collect();
        match self.bus.append(&append.stream, append.expected, events).instrument(span.clone()).await {
            Ok(appended) => {
                span.in_scope(|| {
                    tracing::info!(service = S::NAME, stream = %append.stream, last = %appended.last, ?kinds, "appended");
                });
                Ok(Some(appended.last))
            }
            Err(klaxon_log::Error::WrongExpectedVersion { .. }) => {
                tracing::debug!(service = S::NAME, stream = %append.stream, "another writer was first; deciding again");
                Ok(None)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Claims a delivery (with claims), sends its messages in order, then
    /// appends its record. A delivery another replica holds is skipped, to
    /// be decided again when that claim expires.
    async fn deliver(&self, incident: IncidentId, deliver: Deliver<S::Then>) -> Result<Done, Error> {
        let outbox = self.outbox.as_ref().expect("a service that delivers is built with an outbox");
        let traced = deliver.trace.as_ref().map(|t| Traced::new(t.span.clone(), t.parent.as_deref()));
        let span = traced.as_ref().map_or_else(tracing::Span::none, |t| t.span().clone());
        if let Some(claims) = self.claims.as_ref().filter(|_| !deliver.sends.is_empty()) {
            let correlation = Some(crate::streams::correlation_id(incident));
            let now = self.clock.now();
            match claim::claim(&self.bus, claims, S::NAME, &deliver.sends, correlation, now)
                .instrument(span.clone())
                .await?
            {
                Claim::Won { version } => {
                    self.claim_counts.won.fetch_add(1, Ordering::Relaxed);
                    span.in_scope(|| tracing::debug!(service = S::NAME, %incident, version, "delivery claimed"));
                }
                Claim::Lost { holder, until } => {
                    self.claim_counts.lost.fetch_add(1, Ordering::Relaxed);
                    span.in_scope(|| {
                        tracing::debug!(service = S::NAME, %incident, %holder, %until, "another replica holds the delivery");
                    });
                    return Ok(Done { retry_at: Some(until), ..Done::default() });
                }
            }
        }
        let mut receipts = Vec::with_capacity(deliver.sends.len());
        for send in &deliver.sends {
            let at = self.clock.now();
            let outcome = outbox.deliver(&send.channel, &send.message).instrument(span.clone()).await;
            if let klaxon_domain::outbox::Outcome::Failed { error, .. } = &outcome {
                span.in_scope(|| {
                    let key = &send.message.idempotency_key;
                    tracing::warn!(service = S::NAME, channel = %send.channel, %key, %error, "delivery failed");
                });
            }
            receipts.push(Receipt { channel: send.channel.clone(), at, outcome });
        }
        let last = match self.service.recorded(deliver.then, receipts) {
            Some(append) => self.append_reaction(append, traced.as_ref()).await?,
            None => None,
        };
        Ok(Done { last, ..Done::default() })
    }
}

impl<S: Service> Handle<S> {
    /// The service.
    pub fn service(&self) -> &S {
        &self.inner.service
    }

    /// The log it reads and writes.
    pub fn bus(&self) -> &Bus {
        &self.inner.bus
    }

    /// The current time of its clock.
    pub fn now(&self) -> DateTime<Utc> {
        self.inner.clock.now()
    }

    /// Reads the state as folded so far.
    pub fn read<T>(&self, f: impl FnOnce(&S::State) -> T) -> T {
        f(&self.inner.state.read().expect("state lock"))
    }

    /// Reads what the state holds for `incident`: the state itself while
    /// the incident is held, or, when it is not (evicted, or unknown), a
    /// temporary state read back from the log (every record of its
    /// streams, through the log's head). Either way `f` sees what a shell
    /// that never evicted would hold for the incident.
    pub async fn read_incident<T>(&self, incident: IncidentId, f: impl FnOnce(&S::State) -> T) -> Result<T, Error> {
        let mut f = Some(f);
        let held = {
            let state = self.inner.state.read().expect("state lock");
            let held = self.inner.held.read().expect("held lock").contains(&incident);
            held.then(|| f.take().expect("f is taken once")(&state))
        };
        if let Some(held) = held {
            return Ok(held);
        }
        let back = self.inner.read_back(incident, None).await?;
        Ok(f.take().expect("f is taken once")(&back.state))
    }

    /// The state `incident`'s streams in the log fold to on their own
    /// (every record of them, through the log's head), whether or not the
    /// shell holds the incident: what an evicted incident is read back as.
    pub async fn read_back(&self, incident: IncidentId) -> Result<S::State, Error> {
        Ok(self.inner.read_back(incident, None).await?.state)
    }

    /// Whether the state holds `incident` (it has folded a record about it
    /// and not evicted it since).
    pub fn is_held(&self, incident: IncidentId) -> bool {
        self.inner.held.read().expect("held lock").contains(&incident)
    }

    /// Whether `incident` is evicted from the state (see
    /// [`Reactor::with_eviction`]): not held, though the log has records of
    /// its own stream. (Of a service still folding, whether it is evicted
    /// or not folded yet.)
    pub async fn is_evicted(&self, incident: IncidentId) -> Result<bool, Error> {
        if self.is_held(incident) {
            return Ok(false);
        }
        let own = crate::streams::incident(incident);
        Ok(!self.inner.bus.read_stream(&own, klaxon_log::StreamVersion(1), 1).await?.is_empty())
    }

    /// The claims this replica won and lost (both zero without claims).
    pub fn claim_counts(&self) -> ClaimCounts {
        let counts = &self.inner.claim_counts;
        ClaimCounts { won: counts.won.load(Ordering::Relaxed), lost: counts.lost.load(Ordering::Relaxed) }
    }

    /// The replica this shell claims deliveries as, when it claims.
    pub fn replica(&self) -> Option<&claim::ReplicaId> {
        self.inner.claims.as_ref().map(|c| &c.replica)
    }

    /// Where it is in the log.
    pub fn progress(&self) -> Progress {
        *self.inner.progress.borrow()
    }

    /// The last position folded (for the consumer-lag metric).
    pub fn applied(&self) -> Position {
        self.progress().applied
    }

    /// The last position fully processed (see [`Progress::processed`]).
    pub fn processed(&self) -> Position {
        self.progress().processed
    }

    /// A receiver of the incidents records change, when built
    /// [`Reactor::with_changes`].
    pub fn changes(&self) -> Option<broadcast::Receiver<IncidentId>> {
        self.inner.changes.as_ref().map(broadcast::Sender::subscribe)
    }

    /// Receivers of [`Handle::changes`] open now.
    pub fn change_receivers(&self) -> usize {
        self.inner.changes.as_ref().map_or(0, broadcast::Sender::receiver_count)
    }

    /// Waits (at most [`CATCH_UP_WAIT`]) until `position` is folded.
    pub async fn wait_applied(&self, position: Position) -> Result<(), Error> {
        let mut progress = self.inner.progress.subscribe();
        match tokio::time::timeout(CATCH_UP_WAIT, progress.wait_for(|p| p.applied >= position)).await {
            Ok(Ok(_)) => Ok(()),
            _ => {
                Err(Error::Unavailable { service: S::NAME, reason: format!("not caught up with position {position}") })
            }
        }
    }

    /// Waits until the log's current head is folded: what a query answers
    /// from is then at least as new as the caller's last write.
    pub async fn caught_up(&self) -> Result<(), Error> {
        self.wait_applied(self.inner.bus.head().await?).await
    }

    /// The barrier: waits (at most [`PROCESSED_WAIT`]) until `position` is
    /// processed (folded, its decisions carried out and folded back) and no
    /// timer is due at the clock's current time. After it, whatever the
    /// records up to `position` and the time lead to has happened: a test
    /// may assert that nothing else did.
    pub async fn wait_processed(&self, position: Position) -> Result<Progress, Error> {
        let mut progress = self.inner.progress.subscribe();
        let clock = self.inner.clock.clone();
        let settled = |p: &Progress| {
            let now = clock.now();
            p.processed >= position && p.due.is_none_or(|due| due > now) && p.sweep.is_none_or(|sweep| sweep > now)
        };
        match tokio::time::timeout(PROCESSED_WAIT, progress.wait_for(settled)).await {
            Ok(Ok(p)) => Ok(*p),
            _ => Err(Error::Unavailable {
                service: S::NAME,
                reason: format!("did not process position {position} in {PROCESSED_WAIT:?}: {:?}", self.progress()),
            }),
        }
    }

    /// Appends on behalf of a command (an acknowledgement, a review edit):
    /// the caller decides, the shell builds the events. Conflicts are the
    /// caller's to handle.
    pub async fn append(&self, append: Append) -> Result<Appended, Error> {
        let traced = append.trace.as_ref().map(|t| Traced::new(t.span.clone(), t.parent.as_deref()));
        let events = append.to_new_events(traced.as_ref().and_then(Traced::traceparent))?;
        let span = traced.as_ref().map_or_else(tracing::Span::none, |t| t.span().clone());
        Ok(self.inner.bus.append(&append.stream, append.expected, events).instrument(span).await?)
    }
}
