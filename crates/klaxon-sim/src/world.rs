//! The simulated world around the real services: the log as they reach it
//! (a real sled [`Log`] behind [`SimLog`], appended to synchronously so the
//! simulation's order is the log's order), the faulty feed every service
//! follows it through, the recording receiver of pages and posts, and the
//! configuration.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use futures::future::BoxFuture;
use klaxon_bus::source::Located;
use klaxon_bus::{EventLog, EventSource, Subscription};
use klaxon_domain::ids::IncidentId;
use klaxon_domain::outbox::{Message, Outbox, Outcome};
use klaxon_domain::paging::PageId;
use klaxon_log::{
    Appended, Error, ExpectedVersion, Log, NewEvent, Position, Record, StreamId, StreamVersion, SyncFault,
};
use klaxon_log::{Outcome as ApplyOutcome, Write};
use klaxon_reactor::{Clock, ManualClock};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::Notify;

use crate::{Faults, Variant};

/// Steps a feed waits, with nothing arriving, before it notices from the
/// log's head that messages were lost (the relay's head notice).
pub const HEAD_NOTICE_STEPS: u64 = 3;

/// One message of a feed in transit: the position, and the step it arrives at.
#[derive(Clone, Copy, Debug)]
struct InTransit {
    arrives: u64,
    sequence: u64,
    position: Position,
}

/// What one subscription has: messages in transit, records read from the
/// log to fill a gap, and the next position it may yield.
struct Feed {
    host: &'static str,
    next: Position,
    transit: Vec<InTransit>,
    repaired: VecDeque<Record>,
    last_progress: u64,
}

/// Everything the simulated hosts share. Only ever touched from the
/// simulation's one thread (turmoil runs the hosts one after the other),
/// so the locks never contend; they make it `Send + Sync` for the traits.
pub struct World {
    /// The log, swapped for a reopened one after a failed sync.
    log: Mutex<Option<Log>>,
    dir: PathBuf,
    /// The sync fault of the log open now.
    pub sync_fault: Mutex<SyncFault>,
    /// The simulated time every service reads.
    pub clock: ManualClock,
    /// The current step.
    pub step: AtomicU64,
    /// The faults' random numbers (one seeded stream).
    rng: Mutex<StdRng>,
    faults: Faults,
    variant: Variant,
    feeds: Mutex<Vec<Weak<Mutex<Feed>>>>,
    notify: Arc<Notify>,
    sequence: AtomicU64,
    /// Every append answered `Ok`: the event id and its position.
    pub acknowledged: Mutex<Vec<(uuid::Uuid, Position)>>,
    /// How often the log was reopened.
    pub reopenings: AtomicU64,
    /// An append failed with a storage failure: the log must be reopened.
    pub log_failed: Mutex<bool>,
    /// Every page sent through the recording receiver.
    pub sent: Mutex<Vec<Sent>>,
    /// Deliveries under way, by incident.
    pub delivering: Mutex<HashMap<IncidentId, u32>>,
    /// The position the pager had folded at the end of the previous step.
    pub pager_folded: AtomicU64,
    /// The positions the bus sent the pager twice (for the broken pager
    /// of [`Variant::DuplicateApplied`], which folds those twice).
    pub repeated_to_pager: Mutex<std::collections::BTreeSet<u64>>,
    /// What happened, in order (faults on the feeds are not listed: they
    /// follow from the seed and show in what the services do).
    pub trace: Mutex<Vec<String>>,
}

/// A page handed to the recording receiver.
#[derive(Clone, Debug)]
pub struct Sent {
    /// The step it was sent at.
    pub step: u64,
    /// The page.
    pub page: PageId,
    /// What the pager had folded at the end of the step before.
    pub pager_folded: Position,
}

impl World {
    /// A world with a fresh log in `dir`.
    pub fn new(dir: PathBuf, seed: u64, faults: Faults, variant: Variant, start: DateTime<Utc>) -> Arc<World> {
        let fault = SyncFault::new();
        let log =
            Log::open_with_sync_fault(&dir, Default::default(), fault.clone()).expect("open the simulation's log");
        Arc::new(World {
            log: Mutex::new(Some(log)),
            dir,
            sync_fault: Mutex::new(fault),
            clock: ManualClock::new(start),
            step: AtomicU64::new(0),
            rng: Mutex::new(StdRng::seed_from_u64(seed ^ 0x5eed_fa17)),
            faults,
            variant,
            feeds: Mutex::new(Vec::new()),
            notify: Arc::new(Notify::new()),
            sequence: AtomicU64::new(0),
            acknowledged: Mutex::new(Vec::new()),
            reopenings: AtomicU64::new(0),
            log_failed: Mutex::new(false),
            sent: Mutex::new(Vec::new()),
            delivering: Mutex::new(HashMap::new()),
            repeated_to_pager: Mutex::new(std::collections::BTreeSet::new()),
            pager_folded: AtomicU64::new(0),
            trace: Mutex::new(Vec::new()),
        })
    }

    /// The log open now.
    pub fn log(&self) -> Log {
        self.log.lock().expect("log lock").clone().expect("the log is open")
    }

    /// The current step.
    pub fn step(&self) -> u64 {
        self.step.load(Ordering::SeqCst)
    }

    /// Adds a line to the trace.
    pub fn note(&self, line: String) {
        self.trace.lock().expect("trace lock").push(format!("{:>4} {line}", self.step()));
    }

    /// Moves to the next step: time moves by `tick`, waiting feeds look again.
    pub fn advance(&self, tick: Duration) {
        self.step.fetch_add(1, Ordering::SeqCst);
        self.clock.advance(TimeDelta::from_std(tick).expect("a small tick"));
        self.notify.notify_waiters();
    }

    /// Reopens the log after a failed sync, as a restarted log server
    /// would: whatever was acknowledged must be there.
    pub fn reopen_log(&self) {
        let mut log = self.log.lock().expect("log lock");
        if let Some(old) = log.take() {
            let runtime = tokio::runtime::Builder::new_current_thread().build().expect("a runtime to close the log");
            runtime.block_on(old.close());
            // Dropping the last handle releases sled's lock on the folder.
            drop(old);
        }
        let fault = SyncFault::new();
        *log = Some(Log::open_with_sync_fault(&self.dir, Default::default(), fault.clone()).expect("reopen the log"));
        *self.sync_fault.lock().expect("fault lock") = fault;
        *self.log_failed.lock().expect("flag lock") = false;
        self.reopenings.fetch_add(1, Ordering::SeqCst);
    }

    fn random<T>(&self, f: impl FnOnce(&mut StdRng) -> T) -> T {
        f(&mut self.rng.lock().expect("rng lock"))
    }

    /// Hands the new records to every live feed, with the configured faults.
    fn publish(&self, first: Position, last: Position) {
        let mut feeds = self.feeds.lock().expect("feeds lock");
        feeds.retain(|f| f.strong_count() > 0);
        let step = self.step();
        for feed in feeds.iter().filter_map(Weak::upgrade) {
            let mut feed = feed.lock().expect("feed lock");
            for p in first.0..=last.0 {
                let (dropped, copies, delays) = self.random(|rng| {
                    let dropped = rng.random_bool(self.faults.drop);
                    let copies = if rng.random_bool(self.faults.duplicate) { 2 } else { 1 };
                    let delays: Vec<u64> =
                        (0..copies).map(|_| rng.random_range(0..=self.faults.delay_steps_max)).collect();
                    (dropped, copies, delays)
                });
                if dropped {
                    continue;
                }
                if copies > 1 && feed.host == "paging" {
                    self.repeated_to_pager.lock().expect("lock").insert(p);
                }
                for delay in delays.into_iter().take(copies) {
                    let sequence = self.sequence.fetch_add(1, Ordering::SeqCst);
                    feed.transit.push(InTransit { arrives: step + delay, sequence, position: Position(p) });
                }
            }
        }
        drop(feeds);
        self.notify.notify_waiters();
    }

    /// The next record `feed` yields now, if any.
    fn next_for(&self, feed: &mut Feed) -> Result<Option<Record>, Error> {
        let log = self.log();
        let step = self.step();
        loop {
            if let Some(record) = feed.repaired.pop_front() {
                feed.last_progress = step;
                return Ok(Some(record));
            }
            let arrived = feed
                .transit
                .iter()
                .enumerate()
                .filter(|(_, m)| m.arrives <= step)
                .min_by_key(|(_, m)| (m.arrives, m.sequence))
                .map(|(i, _)| i);
            let Some(index) = arrived else {
                // Nothing arrives: after a while, the head says what was lost.
                if step >= feed.last_progress + HEAD_NOTICE_STEPS && log.head() >= feed.next {
                    let records = log.read_all(feed.next, 64)?;
                    self.repair(feed, records);
                    continue;
                }
                return Ok(None);
            };
            let message = feed.transit.swap_remove(index);
            let p = message.position;
            if p < feed.next {
                match self.variant {
                    Variant::NotifierDuplicateApplied if feed.host == "notifier" => {
                        // Broken: a repeated message is folded again (but
                        // for a report, which the domain refuses loudly:
                        // the quiet corruption is the one to catch).
                        let record = log.read_one(p)?;
                        if record.kind.as_str() != "incident.reported.v1" {
                            feed.last_progress = step;
                            return Ok(Some(record));
                        }
                    }
                    _ => {}
                }
                continue;
            }
            // In order, or a gap to read from the log first.
            let records = log.read_all(feed.next, (p.0 - feed.next.0 + 1) as usize)?;
            self.repair(feed, records);
        }
    }

    fn repair(&self, feed: &mut Feed, records: Vec<Record>) {
        for record in records {
            feed.next = Position(record.position.0 + 1);
            feed.repaired.push_back(record);
        }
    }

    /// A feed from `from` for the service on `host`.
    fn subscribe(self: &Arc<World>, host: &'static str, from: Position) -> Subscription {
        if host == "paging" {
            // A new pager's bus: nothing was sent to it twice yet.
            self.repeated_to_pager.lock().expect("lock").clear();
        }
        let feed = Arc::new(Mutex::new(Feed {
            host,
            next: from.max(Position(1)),
            transit: Vec::new(),
            repaired: VecDeque::new(),
            last_progress: self.step(),
        }));
        self.feeds.lock().expect("feeds lock").push(Arc::downgrade(&feed));
        let world = self.clone();
        let stream = futures::stream::unfold((world, feed), |(world, feed)| async move {
            loop {
                let notify = world.notify.clone();
                let notified = notify.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                let next = world.next_for(&mut feed.lock().expect("feed lock"));
                match next {
                    Ok(Some(record)) => return Some((Ok(record), (world, feed))),
                    Ok(None) => notified.await,
                    Err(e) => return Some((Err(e), (world, feed))),
                }
            }
        });
        Subscription::from_stream(Box::pin(stream))
    }
}

/// The log as the service on one host sees it: reads and writes go to the
/// real log; following it goes through that host's faulty feed.
#[derive(Clone)]
pub struct SimLog {
    world: Arc<World>,
    host: &'static str,
}

impl SimLog {
    /// The log as `host` sees it.
    pub fn new(world: Arc<World>, host: &'static str) -> SimLog {
        SimLog { world, host }
    }

    /// A bus for the service on this host.
    pub fn bus(&self) -> klaxon_bus::Bus {
        let log = Arc::new(self.clone());
        klaxon_bus::Bus::new(log.clone(), log)
    }

    /// Appends at the simulated time, answered before the call returns
    /// (the writer thread is waited for): the simulation's order of
    /// appends is the log's.
    fn append_now(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<Appended, Error> {
        let log = self.world.log();
        log.check(stream, &events)?;
        let ids: Vec<uuid::Uuid> = events.iter().map(|e| e.id).collect();
        let write = Write::Append { stream: stream.clone(), expected, events, recorded_at: self.world.clock.now() };
        let outcome = futures::executor::block_on(log.apply(vec![write], None));
        let appended = match outcome {
            Ok(mut outcomes) => match outcomes.pop() {
                Some(ApplyOutcome::Appended(appended)) => appended,
                Some(ApplyOutcome::Refused(e)) => return Err(e),
                other => panic!("one append, one outcome: {other:?}"),
            },
            Err(e) => {
                *self.world.log_failed.lock().expect("flag lock") = true;
                self.world.note(format!("{}: append to {stream} failed: {e}", self.host));
                return Err(e);
            }
        };
        let mut acknowledged = self.world.acknowledged.lock().expect("lock");
        for (i, id) in ids.into_iter().enumerate() {
            acknowledged.push((id, Position(appended.first.0 + i as u64)));
        }
        drop(acknowledged);
        if !appended.deduplicated {
            self.world.publish(appended.first, appended.last);
        }
        Ok(appended)
    }
}

impl EventLog for SimLog {
    fn append<'a>(
        &'a self,
        stream: &'a StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> BoxFuture<'a, Result<Appended, Error>> {
        Box::pin(std::future::ready(self.append_now(stream, expected, events)))
    }

    fn head(&self) -> BoxFuture<'_, Result<Position, Error>> {
        Box::pin(std::future::ready(Ok(self.world.log().head())))
    }

    fn read_all(&self, from: Position, max: usize) -> BoxFuture<'_, Result<Vec<Record>, Error>> {
        Box::pin(std::future::ready(self.world.log().read_all(from, max)))
    }

    fn read_stream<'a>(
        &'a self,
        stream: &'a StreamId,
        from: StreamVersion,
        max: usize,
    ) -> BoxFuture<'a, Result<Vec<Record>, Error>> {
        Box::pin(std::future::ready(self.world.log().read_stream(stream, from, max)))
    }

    fn read_one(&self, position: Position) -> BoxFuture<'_, Result<Record, Error>> {
        Box::pin(std::future::ready(self.world.log().read_one(position)))
    }

    fn locate(&self, id: uuid::Uuid) -> BoxFuture<'_, Result<Located, Error>> {
        Box::pin(std::future::ready(self.world.log().locate(id)))
    }

    fn stream_version<'a>(&'a self, stream: &'a StreamId) -> BoxFuture<'a, Result<StreamVersion, Error>> {
        Box::pin(std::future::ready(self.world.log().stream_version(stream)))
    }

    fn load_checkpoint<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Position, Error>> {
        Box::pin(std::future::ready(self.world.log().load_checkpoint(name)))
    }

    fn save_checkpoint<'a>(&'a self, name: &'a str, position: Position) -> BoxFuture<'a, Result<(), Error>> {
        let log = self.world.log();
        let write = Write::Checkpoint { name: name.to_string(), position };
        let saved = match futures::executor::block_on(log.apply(vec![write], None)) {
            Ok(mut outcomes) => match outcomes.pop() {
                Some(ApplyOutcome::Refused(e)) => Err(e),
                _ => Ok(()),
            },
            Err(e) => {
                *self.world.log_failed.lock().expect("flag lock") = true;
                Err(e)
            }
        };
        Box::pin(std::future::ready(saved))
    }
}

impl EventSource for SimLog {
    fn subscribe(&self, from: Position) -> Subscription {
        self.world.subscribe(self.host, from)
    }
}

/// The world's receiver of pages and posts: records what it is handed,
/// takes a random number of steps, and sometimes fails.
pub struct Recorder {
    world: Arc<World>,
    tick: Duration,
}

impl Recorder {
    /// A receiver in `world`, whose delays are whole steps of `tick`.
    pub fn new(world: Arc<World>, tick: Duration) -> Arc<Recorder> {
        Arc::new(Recorder { world, tick })
    }
}

/// Counts a delivery under way until dropped (also when its host crashes).
struct Delivering {
    world: Arc<World>,
    incident: Option<IncidentId>,
}

impl Drop for Delivering {
    fn drop(&mut self) {
        if let Some(incident) = self.incident {
            let mut delivering = self.world.delivering.lock().expect("lock");
            if let Some(n) = delivering.get_mut(&incident) {
                *n = n.saturating_sub(1);
            }
        }
    }
}

impl Outbox for Recorder {
    fn deliver<'a>(
        &'a self,
        channel: &'a str,
        message: &'a Message,
    ) -> Pin<Box<dyn Future<Output = Outcome> + Send + 'a>> {
        let world = &self.world;
        let page = message.idempotency_key.parse::<PageId>().ok().filter(|_| message.kind == "page");
        let incident = page.map(PageId::incident);
        if let Some(page) = page {
            let pager_folded = Position(world.pager_folded.load(Ordering::SeqCst));
            world.sent.lock().expect("lock").push(Sent { step: world.step(), page, pager_folded });
            *world.delivering.lock().expect("lock").entry(page.incident()).or_default() += 1;
        }
        world.note(format!("send {} {} via {channel}", message.kind, message.idempotency_key));
        let guard = Delivering { world: world.clone(), incident };
        let (delay, failed) = world.random(|rng| {
            (
                rng.random_range(0..=world.faults.delivery_delay_steps_max),
                rng.random_bool(world.faults.delivery_failure),
            )
        });
        let tick = self.tick;
        Box::pin(async move {
            tokio::time::sleep(tick * delay as u32).await;
            drop(guard);
            if failed {
                Outcome::Failed { attempts: 1, error: "injected delivery failure".into() }
            } else {
                Outcome::Delivered { attempts: 1, thread: None }
            }
        })
    }
}

/// Waits for an instant already past, at one simulated instant, that make
/// a busy loop: a service that keeps waking for a timer it does nothing
/// about never lets simulated time move (and burns a core in production).
pub const PAST_WAITS_MAX: u64 = 10_000;

/// The simulated clock as one host reads it. It stops a busy loop: the
/// [`PAST_WAITS_MAX`]-th wait for an instant already past at the same
/// simulated time panics, which fails the run with the host's name (turmoil
/// reports the host's panic) instead of hanging the simulation.
pub struct HostClock {
    /// The host.
    pub host: &'static str,
    /// The simulated clock.
    pub clock: Arc<dyn Clock>,
    /// Waits for a past instant at the simulated time `.0`.
    past_waits: Mutex<(DateTime<Utc>, u64)>,
}

impl HostClock {
    /// The clock of `host`.
    pub fn new(host: &'static str, clock: Arc<dyn Clock>) -> Arc<HostClock> {
        Arc::new(HostClock { host, clock, past_waits: Mutex::new((DateTime::<Utc>::MIN_UTC, 0)) })
    }
}

impl Clock for HostClock {
    fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    fn sleep_until(&self, at: DateTime<Utc>) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        let now = self.clock.now();
        if at <= now {
            let mut past = self.past_waits.lock().expect("lock");
            if past.0 != now {
                *past = (now, 0);
            }
            past.1 += 1;
            assert!(past.1 < PAST_WAITS_MAX, "busy loop: {} woke {PAST_WAITS_MAX} times at {now} for {at}", self.host);
        }
        self.clock.sleep_until(at)
    }
}

/// A clock `lag` behind the simulated one: the broken variant whose
/// timers fire late.
pub struct LateClock {
    /// The simulated clock.
    pub clock: ManualClock,
    /// How far behind.
    pub lag: TimeDelta,
}

impl Clock for LateClock {
    fn now(&self) -> DateTime<Utc> {
        self.clock.now() - self.lag
    }

    fn sleep_until(&self, at: DateTime<Utc>) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        self.clock.sleep_until(at + self.lag)
    }
}

/// The configuration every simulated service runs with.
pub struct Config {
    /// Paging's.
    pub pager: klaxon_paging::PagerConfig,
    /// The severity rules.
    pub rules: Arc<klaxon_domain::severity::Rules>,
    /// The notifier's.
    pub notifier: Arc<klaxon_domain::notifier::NotifierConfig>,
    /// The channels (a log channel for the notifier's posts).
    pub channels: Arc<klaxon_channels::Channels>,
}

/// The TOML the simulation runs: one tier-1 service, a rotation, a
/// two-level escalation policy with one-minute levels, tight SLOs.
pub const CONFIG: &str = r#"
[[services]]
name = "payments"
team = "payments"
tier = 1
escalation_policy = "payments"

[severity]
default = "sev3"

[[schedules]]
name = "payments-primary"
time_zone = "UTC"
[[schedules.layers]]
name = "hourly"
participants = ["ana", "ben"]
shift = "1h"
handoff = "00:00"
start = "2026-11-23"

[[schedules]]
name = "duty-managers"
time_zone = "UTC"
[[schedules.layers]]
name = "always"
participants = ["maria"]
shift = "7d"
handoff = "00:00"
start = "2026-01-05"

[paging]
duty_manager_schedule = "duty-managers"
managers = ["maria", "olga"]
default_policy = "payments"
channels = ["pager"]

[slo.sev1]
ack_minutes = 3
assign_minutes = 2

[[escalation_policies]]
name = "payments"
[[escalation_policies.levels]]
timeout_seconds = 60
targets = [{ schedule = "payments-primary" }]
[[escalation_policies.levels]]
timeout_seconds = 60
targets = [{ person = "carl" }]

[notifier]
severities = ["sev1"]
executive_channels = ["executives"]
follow_up_interval_ms = 60000

[[channels]]
name = "executives"
kind = "log"
"#;

impl Config {
    /// Parses and validates [`CONFIG`].
    pub fn load() -> Config {
        #[derive(serde::Deserialize)]
        struct File {
            services: klaxon_domain::catalog::ServiceCatalogConfig,
            schedules: klaxon_domain::oncall::SchedulesConfig,
            severity: klaxon_domain::severity::SeverityConfig,
            notifier: klaxon_domain::notifier::NotifierSectionConfig,
            channels: Vec<klaxon_channels::ChannelConfig>,
            #[serde(flatten)]
            paging: klaxon_domain::paging::PagingFileConfig,
        }
        let file: File = toml::from_str(CONFIG).expect("the simulation's configuration parses");
        let schedules = file.schedules.validate("schedules").expect("valid schedules");
        let paging = file.paging.validate("", &schedules).expect("valid paging");
        let channels = Arc::new(klaxon_channels::Channels::new(&file.channels, |_| None).expect("valid channels"));
        let pager = klaxon_paging::PagerConfig {
            paging: Arc::new(paging),
            catalog: Arc::new(file.services.validate("services").expect("valid catalog")),
            schedules: Arc::new(schedules),
            channels: channels.clone(),
        };
        Config {
            pager,
            rules: Arc::new(file.severity.validate("severity").expect("valid rules")),
            notifier: Arc::new(file.notifier.validate("notifier").expect("valid notifier")),
            channels,
        }
    }
}

impl Config {
    /// The notifier's options, as the simulation runs it.
    pub fn notifier_options(&self) -> klaxon_notifier::NotifierOptions {
        klaxon_notifier::NotifierOptions {
            notifier: self.notifier.clone(),
            paging: Some(self.pager.paging.clone()),
            channels: self.channels.clone(),
            feed_lag_max: 64,
        }
    }
}

/// The records of `log`, all of them.
pub fn records(log: &Log) -> Vec<Record> {
    log.read_all(Position(1), usize::MAX).expect("the simulation's log reads")
}
