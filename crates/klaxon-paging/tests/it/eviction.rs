//! Bounded memory: a resolved incident leaves paging's state once finished
//! for the configured time, comes back from the log when something about
//! it happens, and what paging then decides is what a pager that never
//! evicted decides.

use std::time::Duration;

use chrono::TimeDelta;
use klaxon_domain::ids::{ActorId, IncidentId, ReportSource, Severity};
use klaxon_domain::incident::Command;
use klaxon_domain::paging::PageId;
use klaxon_intake::CommandContext;
use klaxon_log::{EventData, EventKind, ExpectedVersion, Log, Metadata, NewEvent, Position};
use klaxon_paging::Pager;
use klaxon_reactor::{ManualClock, SnapshotFile, streams};
use klaxon_tests::receiver::Receiver;
use tokio_util::sync::CancellationToken;

use super::{PagerConfig, SECRET, World, config, start_time};

const AFTER: Duration = Duration::from_secs(3600);

/// Paging over `log`, evicting `after` (or never) and with `snapshot`.
fn pager(
    log: &Log,
    clock: &ManualClock,
    config: &PagerConfig,
    after: Option<Duration>,
    snapshot: Option<&SnapshotFile>,
) -> Pager {
    let mut pager = Pager::new(log.clone(), config.clone(), clock.shared());
    if let Some(after) = after {
        pager = pager.with_eviction(after);
    }
    if let Some(file) = snapshot {
        pager = pager.with_snapshots(file.clone(), std::num::NonZeroU64::new(1_000_000).unwrap());
    }
    pager
}

fn world(log: &Log, clock: &ManualClock, config: &PagerConfig, pager: Pager) -> World {
    crate::world(log, clock, config.clone().into(), pager)
}

fn maria() -> CommandContext {
    CommandContext::by(ActorId::new("maria").unwrap())
}

/// The records from `from` on, as (stream, kind, event id, data): what a
/// run appended, comparable across two logs driven alike. The event ids of
/// commands (intake's, random without a request key) are left out; paging's
/// are derived, so they must agree.
fn records_from(log: &Log, from: Position) -> Vec<(String, String, String, String)> {
    log.read_all(from, 100_000)
        .unwrap()
        .into_iter()
        .map(|r| {
            let id = if r.stream.as_str().starts_with("incident-") { String::new() } else { r.id.to_string() };
            (r.stream.to_string(), r.kind.to_string(), id, r.data.as_str().to_owned())
        })
        .collect()
}

/// A Sev-1 paged, acknowledged, mitigated and resolved; two hours later
/// (past `AFTER`), reopened. Returns what was appended from the reopen on,
/// the paging counts, and the shell's progress before the reopen.
async fn reopened_after_two_hours(after: Option<Duration>) -> (Vec<(String, String, String, String)>, String) {
    let receiver = Receiver::start(SECRET).await;
    let config = config(&receiver.url);
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), Default::default()).unwrap();
    let clock = ManualClock::new(start_time());
    let w = world(&log, &clock, &config, pager(&log, &clock, &config, after, None));
    let id = w.sev1(Some("maria")).await;
    assert_eq!(w.until_pages(id, 1).await, ["INC-1-P1 ana severity"]);
    w.pager.acknowledge(PageId::new(id, 1).unwrap(), &ActorId::new("ana").unwrap(), None).await.unwrap();
    w.settled().await;
    clock.advance(TimeDelta::minutes(10));
    w.intake.execute(id, Command::Mitigate { summary: "rolled back".into() }, &maria()).await.unwrap();
    w.intake.execute(id, Command::Resolve { summary: "fixed".into() }, &maria()).await.unwrap();
    w.settled().await;
    assert_eq!(w.pager.reactor().progress().held, 1);
    clock.advance(TimeDelta::hours(2));
    w.settled().await;
    let progress = w.pager.reactor().progress();
    if after.is_some() {
        assert_eq!((progress.held, progress.evicted), (0, 1), "{progress:?}");
        assert!(w.pager.reactor().read(|s| s.incidents().is_empty()));
        assert!(w.pager.reactor().is_evicted(id).await.unwrap());
        // A query still answers, from the log.
        let pages = w.pager.pages(id).await.unwrap();
        assert_eq!(pages.len(), 1);
        assert!(pages[0].acknowledged().is_some(), "{:?}", pages[0]);
    } else {
        assert_eq!((progress.held, progress.evicted), (1, 0), "{progress:?}");
    }
    let counts_before = w.pager.counts();
    let reopen = Position(log.head().0 + 1);
    w.intake.execute(id, Command::Reopen { reason: "errors are back".into() }, &maria()).await.unwrap();
    w.settled().await;
    assert!(!w.pager.reactor().is_evicted(id).await.unwrap());
    assert_eq!(w.pager.reactor().progress().held, 1);
    // Nothing folded twice: the counts moved only by what was appended.
    let counts = w.pager.counts();
    assert!(counts.delivered >= counts_before.delivered);
    w.stop.cancel();
    (records_from(&log, reopen), format!("{counts:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resolved_incident_leaves_memory_and_its_reopen_pages_as_if_it_never_had() {
    let (kept, kept_counts) = reopened_after_two_hours(None).await;
    let (evicted, evicted_counts) = reopened_after_two_hours(Some(AFTER)).await;
    assert!(kept.iter().any(|(_, kind, _, _)| kind == "page.responder_paged.v1"), "the reopen pages again: {kept:#?}");
    assert_eq!(evicted, kept);
    assert_eq!(evicted_counts, kept_counts);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_evicted_incident_is_still_evicted_after_a_snapshot_restart_and_a_rebuild_agrees() {
    let receiver = Receiver::start(SECRET).await;
    let config = config(&receiver.url);
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), Default::default()).unwrap();
    let snapshot = SnapshotFile::new(dir.path().join("snapshots").join("paging.snap"));
    let clock = ManualClock::new(start_time());
    let mut w = world(&log, &clock, &config, pager(&log, &clock, &config, Some(AFTER), Some(&snapshot)));
    let closed = w.sev1(Some("maria")).await;
    w.until_pages(closed, 1).await;
    w.intake.execute(closed, Command::Resolve { summary: "fixed".into() }, &maria()).await.unwrap();
    w.settled().await;
    clock.advance(TimeDelta::hours(2));
    let open = w.sev1(None).await;
    w.until_pages(open, 1).await;
    assert_eq!(w.pager.reactor().progress().evicted, 1);

    // A clean stop saves a snapshot that knows `closed` is evicted.
    w.stop_pager().await;
    let resumed = pager(&log, &clock, &config, Some(AFTER), Some(&snapshot));
    let resumed_handle = resumed.handle();
    w.pager_stop = w.stop.child_token();
    w.pager = resumed_handle.clone();
    w.pager_task = Some(tokio::spawn(resumed.run(w.pager_stop.clone())));
    w.settled().await;
    let progress = resumed_handle.reactor().progress();
    assert!(progress.resumed > Position::ZERO, "{progress:?}");
    assert_eq!((progress.held, progress.evicted), (1, 1), "{progress:?}");

    // A rebuild from scratch (no snapshot) evicts again as it passes the
    // time, and holds the same open state.
    let stop = CancellationToken::new();
    let rebuilt = pager(&log, &clock, &config, Some(AFTER), None);
    let rebuilt_handle = rebuilt.handle();
    let task = tokio::spawn(rebuilt.run(stop.clone()));
    rebuilt_handle.reactor().wait_processed(log.head()).await.unwrap();
    let rebuilt_progress = rebuilt_handle.reactor().progress();
    assert_eq!((rebuilt_progress.held, rebuilt_progress.evicted), (1, 1), "{rebuilt_progress:?}");
    let open_state = |h: &klaxon_paging::Handle| {
        h.reactor().read(|s| serde_json::to_string(&s.incidents().get(&open).unwrap()).unwrap())
    };
    assert_eq!(open_state(&rebuilt_handle), open_state(&resumed_handle));
    assert_eq!(rebuilt_handle.counts(), resumed_handle.counts());
    assert_eq!(rebuilt_handle.pages(closed).await.unwrap(), resumed_handle.pages(closed).await.unwrap());
    stop.cancel();
    task.await.unwrap().unwrap();
    w.stop.cancel();
}

/// The events of a report, a Sev-4 declaration and (but for every
/// thousandth incident) a resolution, as the domain decides them.
fn history(id: IncidentId, resolve: bool) -> Vec<NewEvent> {
    use klaxon_domain::incident::{decide, evolve};
    let by = ActorId::new("maria").unwrap();
    let at = start_time();
    let report = Command::ReportIssue {
        source: ReportSource::Alertmanager,
        reporter: ActorId::new("monitor").unwrap(),
        title: "Disk full".into(),
        description: String::new(),
        service: Some("payments".parse().unwrap()),
        customers: vec![],
        labels: Default::default(),
        dedup_key: None,
        started_at: None,
    };
    let mut commands = vec![report, Command::DeclareIncident { severity: Severity::Sev4 }];
    if resolve {
        commands.push(Command::Resolve { summary: "cleaned up".into() });
    }
    let (mut state, mut events) = (None, Vec::new());
    for command in commands {
        for event in decide(state.as_ref(), &command, &id, &by, at).unwrap() {
            state = evolve(state.take(), &event);
            events.push(NewEvent {
                id: uuid::Uuid::new_v4(),
                kind: EventKind::new(event.kind()).unwrap(),
                data: EventData::from_value(&event.to_json()).unwrap(),
                metadata: Metadata { actor: Some(by.to_string()), ..Metadata::default() },
            });
        }
    }
    events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_thousand_closed_incidents_leave_only_the_open_ones_in_memory() {
    const INCIDENTS: u64 = 20_000;
    const OPEN_EVERY: u64 = 1_000;
    let receiver = Receiver::start(SECRET).await;
    let config = config(&receiver.url);
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), Default::default()).unwrap();
    let mut appends = tokio::task::JoinSet::new();
    for n in 1..=INCIDENTS {
        let log = log.clone();
        appends.spawn(async move {
            let id = IncidentId::from_number(n).unwrap();
            let events = history(id, n % OPEN_EVERY != 0);
            log.append(&streams::incident(id), ExpectedVersion::NoStream, events).await.unwrap();
        });
        while appends.len() >= 64 {
            appends.join_next().await.unwrap().unwrap();
        }
    }
    while let Some(done) = appends.join_next().await {
        done.unwrap();
    }
    let clock = ManualClock::new(start_time() + TimeDelta::hours(2));
    let stop = CancellationToken::new();
    let pager = pager(&log, &clock, &config, Some(AFTER), None);
    let handle = pager.handle();
    let task = tokio::spawn(pager.run(stop.clone()));
    // 60,000 records: on a loaded machine folding them can take longer
    // than one barrier's wait (it failed once at load 12), so wait again,
    // a bounded number of times.
    for waits in 1.. {
        match handle.reactor().wait_processed(log.head()).await {
            Ok(_) => break,
            Err(e) if waits < 12 => eprintln!("not caught up yet: {e}"),
            Err(e) => panic!("not caught up after {waits} waits: {e}"),
        }
    }
    let progress = handle.reactor().progress();
    let open = INCIDENTS / OPEN_EVERY;
    assert_eq!((progress.held, progress.evicted), (open, INCIDENTS - open), "{progress:?}");
    let held: Vec<u64> = handle.reactor().read(|s| {
        let mut held: Vec<u64> = s.incidents().keys().map(|i| i.number()).collect();
        held.sort_unstable();
        held
    });
    assert_eq!(held, (1..=open).map(|i| i * OPEN_EVERY).collect::<Vec<_>>());
    stop.cancel();
    task.await.unwrap().unwrap();
}
