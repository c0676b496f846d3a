//! The reactor shell against a real log in a temp dir, with a small service
//! written for the tests (the subject is the shell, not a service): it marks
//! every open incident with a chain of marks, one after the other, each
//! decided only once the previous one is folded back, and optionally one
//! more when a timer falls due, delivered through the real channels (a
//! `log` channel) and recorded.
#![allow(missing_docs)]

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use klaxon_bus::SharedRecord;
use klaxon_channels::{ChannelConfig, Channels};
use klaxon_domain::ids::{ActorId, IncidentId, ReportSource};
use klaxon_domain::incident::{Change, Command, decide};
use klaxon_domain::outbox::{Message, Outcome, Outgoing, Receipt};
use klaxon_domain::review::{ReviewChange, ReviewEvent, ReviewOpened, review_actor};
use klaxon_log::{ExpectedVersion, Log, Position, StreamVersion};
use klaxon_reactor::{Append, Cause, Deliver, Effect, Ids, ManualClock, Reactor, decode, streams};
use tokio_util::sync::CancellationToken;

mod claims;
mod eviction;
mod shared;
mod snapshots;

/// Marks each open incident `chain` times, then once more `late` after it
/// was reported (delivering a message through `channel` first), when given.
struct Marking {
    chain: u64,
    late: Option<TimeDelta>,
    channel: &'static str,
}

#[derive(Clone, Default, serde::Serialize, serde::Deserialize)]
struct State {
    open: HashMap<IncidentId, DateTime<Utc>>,
    marks: HashMap<IncidentId, u64>,
    /// When each resolved incident was resolved (what eviction goes by).
    #[serde(default)]
    resolved: HashMap<IncidentId, DateTime<Utc>>,
}

impl klaxon_reactor::Service for Marking {
    type State = State;
    type Then = IncidentId;
    const NAME: &'static str = "marking";
    const CHECKPOINT: Option<&'static str> = Some("marking");
    const TIMERS: bool = true;

    fn fold(&self, state: &mut State, record: &SharedRecord) -> Result<Option<IncidentId>, klaxon_reactor::Error> {
        if let Some(event) = decode::shared_incident(record)? {
            match &event.change {
                Change::Reported(_) => drop(state.open.insert(event.incident, event.at)),
                Change::Resolved(_) => {
                    state.open.remove(&event.incident);
                    state.resolved.insert(event.incident, event.at);
                }
                _ => {}
            }
            return Ok(Some(event.incident));
        }
        let Some(mark) = decode::shared_event::<ReviewChange>(record)? else { return Ok(None) };
        *state.marks.entry(mark.incident).or_default() += 1;
        Ok(Some(mark.incident))
    }

    fn decide(&self, state: &State, id: IncidentId, _: &Cause, now: DateTime<Utc>) -> Vec<Effect<IncidentId>> {
        let (Some(reported), marks) = (state.open.get(&id), state.marks.get(&id).copied().unwrap_or(0)) else {
            return Vec::new();
        };
        if marks < self.chain {
            return vec![Effect::Append(mark(id, marks, now))];
        }
        let due = self.late.map(|late| *reported + late).filter(|due| marks == self.chain && now >= *due);
        if due.is_none() {
            return Vec::new();
        }
        vec![Effect::Deliver(Deliver { sends: late(id, self.channel), then: id, trace: None })]
    }

    fn next_due(&self, state: &State, id: IncidentId) -> Option<DateTime<Utc>> {
        let marks = state.marks.get(&id).copied().unwrap_or(0);
        (marks == self.chain).then(|| Some(*state.open.get(&id)? + self.late?)).flatten()
    }

    fn retired_since(&self, state: &State, id: IncidentId) -> Option<DateTime<Utc>> {
        state.resolved.get(&id).copied()
    }

    fn evict(&self, state: &mut State, id: IncidentId) {
        state.marks.remove(&id);
        state.resolved.remove(&id);
    }

    fn adopt(&self, state: &mut State, from: State, id: IncidentId) {
        state.marks.extend(from.marks.into_iter().filter(|(i, _)| *i == id));
        state.resolved.extend(from.resolved.into_iter().filter(|(i, _)| *i == id));
    }

    fn recorded(&self, id: IncidentId, receipts: Vec<Receipt>) -> Option<Append> {
        assert!(receipts.iter().all(|r| matches!(r.outcome, Outcome::Delivered { .. })), "{receipts:?}");
        Some(mark(id, self.chain, receipts[0].at))
    }
}

/// The message an incident that is late sends through `channel`.
fn late(id: IncidentId, channel: &str) -> Vec<Outgoing> {
    let message = Message {
        idempotency_key: format!("{id}/late"),
        kind: "test".into(),
        title: format!("{id} is late"),
        text: "late".into(),
        fields: Default::default(),
        recipient: None,
        thread: None,
    };
    vec![Outgoing { channel: channel.into(), message }]
}

/// Mark number `n + 1` of `id`, claimed at the stream's version `n`.
fn mark(id: IncidentId, n: u64, at: DateTime<Utc>) -> Append {
    let event =
        ReviewEvent { incident: id, at, by: review_actor(), change: ReviewChange::ReviewOpened(ReviewOpened {}) };
    let stream = streams::review(id);
    let expected = if n == 0 { ExpectedVersion::NoStream } else { ExpectedVersion::Exact(StreamVersion(n)) };
    Append::new(stream.clone(), expected, &[event], Ids::at_version(&stream, n, "test.mark"))
}

fn t0() -> DateTime<Utc> {
    "2026-03-01T10:00:00Z".parse().unwrap()
}

struct World {
    _dir: tempfile::TempDir,
    log: Log,
    clock: ManualClock,
    stop: CancellationToken,
}

impl World {
    fn new() -> World {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::open(dir.path(), Default::default()).unwrap();
        World { _dir: dir, log, clock: ManualClock::new(t0()), stop: CancellationToken::new() }
    }

    /// Writes the events of `command` on incident `n`, as intake would.
    async fn command(&self, n: u64, command: Command) {
        let id = IncidentId::from_number(n).unwrap();
        let records = self.log.read_stream(&streams::incident(id), StreamVersion(1), usize::MAX).unwrap();
        let state = klaxon_reactor::decode::fold_incident(&records).unwrap();
        let by = ActorId::new("maria").unwrap();
        let events = decide(state.as_ref(), &command, &id, &by, self.clock.now_utc()).unwrap();
        let ids = Ids::caused_by(uuid::Uuid::new_v4(), "test.command");
        let append = Append::new(streams::incident(id), ExpectedVersion::Any, &events, ids);
        self.log.append(&append.stream, append.expected, append.to_new_events(None).unwrap()).await.unwrap();
    }

    async fn report(&self, n: u64) {
        let report = Command::ReportIssue {
            source: ReportSource::Api,
            reporter: ActorId::new("monitor").unwrap(),
            title: format!("issue {n}"),
            description: String::new(),
            service: None,
            customers: vec![],
            labels: Default::default(),
            dedup_key: None,
            started_at: None,
        };
        self.command(n, report).await;
    }

    async fn resolve(&self, n: u64) {
        self.command(n, Command::DeclareIncident { severity: klaxon_domain::ids::Severity::Sev3 }).await;
        self.command(n, Command::Resolve { summary: "fixed".into() }).await;
    }

    fn start(&self, marking: Marking) -> klaxon_reactor::Handle<Marking> {
        let channel = ChannelConfig { name: "log".into(), kind: "log".into(), ..ChannelConfig::default() };
        let channels = Arc::new(Channels::new(&[channel], |_| None).unwrap());
        let reactor = Reactor::new(self.log.clone(), marking, self.clock.shared()).with_outbox(channels);
        let handle = reactor.handle();
        tokio::spawn(reactor.run(self.stop.clone()));
        handle
    }

    /// The marks in the log, by incident number.
    fn marks(&self) -> Vec<(u64, u64)> {
        let mut marks: HashMap<u64, u64> = HashMap::new();
        for r in self.log.read_all(Position(1), 10_000).unwrap() {
            if r.kind.as_str() == "review.opened.v1" {
                *marks.entry(r.stream.as_str().trim_start_matches("review-INC-").parse().unwrap()).or_default() += 1;
            }
        }
        let mut marks: Vec<(u64, u64)> = marks.into_iter().collect();
        marks.sort();
        marks
    }
}

trait NowUtc {
    fn now_utc(&self) -> DateTime<Utc>;
}

impl NowUtc for ManualClock {
    fn now_utc(&self) -> DateTime<Utc> {
        klaxon_reactor::Clock::now(self)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_decided_before_the_head_found_at_start_is_folded() {
    let w = World::new();
    // INC-1 was open for a while, and resolved later in the log.
    w.report(1).await;
    w.report(2).await;
    w.resolve(1).await;
    let marking = w.start(Marking { chain: 1, late: None, channel: "log" });
    marking.wait_processed(w.log.head()).await.unwrap();
    assert_eq!(w.marks(), [(2, 1)], "a decision on a partial fold would have marked INC-1");
    w.stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_barrier_waits_for_the_whole_chain_of_consequences() {
    let w = World::new();
    let marking = w.start(Marking { chain: 3, late: None, channel: "log" });
    for n in 1..=5 {
        w.report(n).await;
        // Each mark is decided only after the previous one is folded back:
        // after the barrier, all three are there, and no decision ran twice.
        let progress = marking.wait_processed(w.log.head()).await.unwrap();
        assert_eq!(w.marks().last(), Some(&(n, 3)));
        assert_eq!(progress.processed, w.log.head(), "the chain ended with nothing left to fold");
    }
    w.stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timer_fires_at_its_instant_delivers_and_records_once() {
    let w = World::new();
    let marking = w.start(Marking { chain: 1, late: Some(TimeDelta::minutes(10)), channel: "log" });
    w.report(1).await;
    marking.wait_processed(w.log.head()).await.unwrap();
    assert_eq!(w.marks(), [(1, 1)]);
    // A second early: nothing is due, so the barrier holds at once.
    w.clock.advance(TimeDelta::minutes(10) - TimeDelta::seconds(1));
    let progress = marking.wait_processed(w.log.head()).await.unwrap();
    assert_eq!(progress.due, Some(t0() + TimeDelta::minutes(10)));
    assert_eq!(w.marks(), [(1, 1)]);
    // At the instant: the barrier waits for the delivery and its record.
    w.clock.advance(TimeDelta::seconds(1));
    let progress = marking.wait_processed(w.log.head()).await.unwrap();
    assert_eq!(w.marks(), [(1, 2)]);
    assert_eq!(progress.due, None, "nothing is due any more");
    w.clock.advance(TimeDelta::hours(1));
    marking.wait_processed(w.log.head()).await.unwrap();
    assert_eq!(w.marks(), [(1, 2)], "once");
    w.stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_from_the_checkpoint_decides_only_what_changed_after_it() {
    let w = World::new();
    w.report(1).await;
    let stop = CancellationToken::new();
    let first = Reactor::new(w.log.clone(), Marking { chain: 1, late: None, channel: "log" }, w.clock.shared());
    let handle = first.handle();
    let running = tokio::spawn(first.run(stop.clone()));
    handle.wait_processed(w.log.head()).await.unwrap();
    stop.cancel();
    running.await.unwrap().unwrap();
    assert_eq!(w.log.load_checkpoint("marking").unwrap(), w.log.head(), "saved at the stop");

    // With a longer chain, a restart would mark INC-1 again if it decided
    // on records before its checkpoint; INC-2 comes after it.
    w.report(2).await;
    let marking = w.start(Marking { chain: 2, late: None, channel: "log" });
    marking.wait_processed(w.log.head()).await.unwrap();
    assert_eq!(w.marks(), [(1, 1), (2, 2)]);
    w.stop.cancel();
}
