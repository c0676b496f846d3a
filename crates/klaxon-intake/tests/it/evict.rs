//! Bounded memory: Resolved and Closed incidents leave the projection once
//! their last event is `evict_closed_after` old, and every answer stays
//! exactly what an intake that keeps everything gives (the same random
//! scenario, the same clock, run once with eviction and once without).

use std::num::NonZeroU64;
use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use klaxon_domain::ids::{ActorId, Audience, IncidentId, ReportSource, ServiceName, Severity};
use klaxon_domain::incident::{Command, Status};
use klaxon_intake::{CommandContext, Handle, Intake, ListFilter};
use klaxon_log::Log;
use klaxon_reactor::{ManualClock, SnapshotFile};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio_util::sync::CancellationToken;

const TTL: Duration = Duration::from_secs(60);
const STEP: TimeDelta = TimeDelta::seconds(20);

fn start_time() -> DateTime<Utc> {
    "2026-03-01T08:00:00Z".parse().unwrap()
}

/// An intake over the log in `dir`, running, with eviction after `TTL` when
/// `evict`, and snapshots in `dir` when `snapshots`.
struct Running {
    handle: Handle,
    log: Log,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), klaxon_intake::Error>>,
}

impl Running {
    fn start(dir: &Path, clock: &ManualClock, evict: bool, snapshots: bool) -> Running {
        let log = Log::open(dir.join("log"), klaxon_log::Options::default()).unwrap();
        Running::on(log, dir, clock, evict, snapshots)
    }

    /// An intake as [`Running::start`]'s, over `log`, already open.
    fn on(log: Log, dir: &Path, clock: &ManualClock, evict: bool, snapshots: bool) -> Running {
        let mut intake = Intake::new(log.clone(), Default::default(), clock.shared());
        if evict {
            intake = intake.with_evict_closed_after(TTL);
        }
        if snapshots {
            let file = SnapshotFile::new(dir.join("intake.snap"));
            intake = intake.with_snapshots(file, NonZeroU64::new(40).unwrap());
        }
        let (handle, stop) = (intake.handle(), CancellationToken::new());
        let task = tokio::spawn(intake.run(stop.clone()));
        Running { handle, log, stop, task }
    }

    async fn stop(self) {
        self.stop.cancel();
        self.task.await.unwrap().unwrap();
        self.log.close().await;
    }
}

fn lifecycle_command(rng: &mut StdRng, people: &[ActorId]) -> Command {
    let who = people[rng.random_range(0..people.len())].clone();
    let severity = [Severity::Sev1, Severity::Sev2, Severity::Sev3][rng.random_range(0..3)];
    match rng.random_range(0..11) {
        0 | 1 => Command::DeclareIncident { severity },
        2 => Command::AssignCommander { commander: who },
        3 => Command::PostUpdate { audience: Audience::Internal, text: format!("update {}", rng.random::<u16>()) },
        4 => Command::Mitigate { summary: "mitigated".into() },
        5..=7 => Command::Resolve { summary: "resolved".into() },
        8 => Command::Reopen { reason: "came back".into() },
        _ => Command::ValidateResolution { note: "checked".into() },
    }
}

fn report(rng: &mut StdRng, reporter: ActorId, step: usize) -> Command {
    let service = ["payments", "search"][rng.random_range(0..2)];
    Command::ReportIssue {
        source: ReportSource::Api,
        reporter,
        title: format!("issue {step}"),
        description: String::new(),
        service: Some(ServiceName::new(service).unwrap()),
        customers: vec![],
        labels: Default::default(),
        dedup_key: rng.random::<bool>().then(|| format!("key-{}", rng.random_range(0..4)).parse().unwrap()),
        started_at: None,
    }
}

/// Runs `steps` random reports and commands (the clock moving `STEP` each),
/// and returns what each answered, and the highest incident number.
async fn scenario(handle: &Handle, clock: &ManualClock, seed: u64, steps: usize) -> (Vec<String>, u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let people: Vec<ActorId> = ["maria", "omar", "li"].iter().map(|p| ActorId::new(*p).unwrap()).collect();
    let (mut transcript, mut highest) = (Vec::new(), 0u64);
    for step in 0..steps {
        clock.advance(STEP);
        let actor = people[rng.random_range(0..people.len())].clone();
        let ctx = CommandContext::by(actor.clone());
        if highest == 0 || rng.random_range(0..12) == 0 {
            let answer = handle.report(report(&mut rng, actor, step), &ctx).await;
            if let Ok(outcome) = &answer {
                highest = highest.max(outcome.incident.number());
            }
            transcript.push(format!("{step} report: {answer:?}"));
        } else {
            let id = IncidentId::from_number(rng.random_range(1..=highest)).unwrap();
            let answer = handle.execute(id, lifecycle_command(&mut rng, &people), &ctx).await;
            transcript.push(format!("{step} {id}: {answer:?}"));
        }
    }
    (transcript, highest)
}

/// Every query whose answer must not depend on eviction: each incident,
/// lists with status, severity and service filters (paged), the last
/// closed incident of each dedup key.
async fn queries(handle: &Handle, highest: u64) -> Vec<String> {
    let mut answers = Vec::new();
    for n in 1..=highest + 1 {
        let id = IncidentId::from_number(n).unwrap();
        answers.push(format!("{id}: {:?}", handle.get(id).await));
    }
    let statuses = [
        vec![],
        vec![Status::Resolved],
        vec![Status::Closed],
        vec![Status::Resolved, Status::Closed],
        vec![Status::Reported, Status::Declared, Status::Mitigated],
    ];
    for statuses in statuses {
        for severities in [vec![], vec![Severity::Sev2]] {
            for service in [None, Some("payments"), Some("nowhere")] {
                let filter = ListFilter {
                    statuses: statuses.clone(),
                    severities: severities.clone(),
                    service: service.map(|s| ServiceName::new(s).unwrap()),
                };
                let mut below = None;
                for _ in 0..1000 {
                    let (page, next) = handle.list(&filter, 7, below).await.unwrap();
                    answers.push(format!("{filter:?} below {below:?}: {page:?} next {next:?}"));
                    below = next;
                    if below.is_none() {
                        break;
                    }
                }
            }
        }
    }
    for key in 0..4 {
        let key = format!("key-{key}").parse().unwrap();
        answers.push(format!("{key:?}: {:?}", handle.last_closed_with_dedup_key(&key).await.unwrap()));
        answers.push(format!("{key:?} open: {:?}", handle.open_with_dedup_key(&key).await.unwrap()));
    }
    answers
}

/// How many incidents are Resolved or Closed.
async fn closed(handle: &Handle) -> usize {
    let filter = ListFilter { statuses: vec![Status::Resolved, Status::Closed], ..Default::default() };
    handle.list(&filter, 100_000, None).await.unwrap().0.len()
}

/// After the scenario: what a report with each dedup key, a reopen and a
/// validation of every incident answer, then a new report's number.
async fn after(handle: &Handle, clock: &ManualClock, seed: u64, highest: u64) -> Vec<String> {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed);
    let maria = ActorId::new("maria").unwrap();
    let mut answers = Vec::new();
    for n in 1..=highest {
        clock.advance(STEP);
        let id = IncidentId::from_number(n).unwrap();
        let command = if rng.random() {
            Command::Reopen { reason: "seen again".into() }
        } else {
            Command::ValidateResolution { note: "checked".into() }
        };
        answers.push(format!("{id}: {:?}", handle.execute(id, command, &CommandContext::by(maria.clone())).await));
    }
    for step in 0..8 {
        let answer =
            handle.report(report(&mut rng, maria.clone(), 10_000 + step), &CommandContext::by(maria.clone())).await;
        answers.push(format!("report: {answer:?}"));
    }
    answers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evicted_incidents_answer_every_query_and_command_as_if_they_were_held() {
    let seed = crate::seed::seed("evicted_incidents_answer_every_query_and_command_as_if_they_were_held");
    let (kept_dir, evicted_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (kept_clock, evicted_clock) = (ManualClock::new(start_time()), ManualClock::new(start_time()));
    let kept = Running::start(kept_dir.path(), &kept_clock, false, false);
    let evicting = Running::start(evicted_dir.path(), &evicted_clock, true, false);

    let (kept_transcript, highest) = scenario(&kept.handle, &kept_clock, seed, 400).await;
    let (evicted_transcript, evicted_highest) = scenario(&evicting.handle, &evicted_clock, seed, 400).await;
    assert_eq!(evicted_transcript, kept_transcript, "seed {seed}");
    assert_eq!(evicted_highest, highest);

    // Everything Resolved or Closed for longer than the TTL leaves memory.
    let closed_count = closed(&kept.handle).await;
    // 7 to 19 over seeds 1-25 (400 steps); a handful is enough to test eviction.
    assert!(closed_count >= 3, "the scenario closes incidents (seed {seed}): {closed_count}");
    evicted_clock.advance(TimeDelta::from_std(TTL).unwrap());
    evicting.handle.wait_evicted(closed_count).await.unwrap();
    assert_eq!(evicting.handle.held() + closed_count, highest as usize, "only open incidents are held (seed {seed})");
    assert_eq!(kept.handle.held(), highest as usize);
    assert_eq!(kept.handle.evicted(), 0);
    kept_clock.advance(TimeDelta::from_std(TTL).unwrap());

    assert_eq!(queries(&evicting.handle, highest).await, queries(&kept.handle, highest).await, "seed {seed}");
    // Reopens and validations of evicted incidents, reports with their
    // dedup keys, and the next numbers.
    let kept_after = after(&kept.handle, &kept_clock, seed, highest).await;
    let evicted_after = after(&evicting.handle, &evicted_clock, seed, highest).await;
    assert_eq!(evicted_after, kept_after, "seed {seed}");
    assert_eq!(queries(&evicting.handle, highest + 8).await, queries(&kept.handle, highest + 8).await, "seed {seed}");
    kept.stop().await;
    evicting.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_holds_no_evicted_incident_and_a_restart_and_a_rebuild_answer_the_same() {
    let seed = crate::seed::seed("a_snapshot_holds_no_evicted_incident_and_a_restart_and_a_rebuild_answer_the_same");
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(start_time());
    let running = Running::start(dir.path(), &clock, true, true);
    let (_, highest) = scenario(&running.handle, &clock, seed, 300).await;
    let closed_count = closed(&running.handle).await;
    clock.advance(TimeDelta::from_std(TTL).unwrap());
    running.handle.wait_evicted(closed_count).await.unwrap();
    let live = queries(&running.handle, highest).await;
    let held = running.handle.projection().await.unwrap();
    assert_eq!(held.len() + closed_count, highest as usize, "seed {seed}");
    running.stop().await;

    // The restart resumes from the snapshot saved at the stop: the same
    // incidents held, the same ones evicted, the same answers.
    let restarted = Running::start(dir.path(), &clock, true, true);
    assert_eq!(restarted.handle.projection().await.unwrap(), held, "seed {seed}");
    assert!(restarted.handle.resumed() > klaxon_log::Position::ZERO);
    assert_eq!(restarted.handle.evicted(), closed_count);
    assert_eq!(queries(&restarted.handle, highest).await, live, "seed {seed}");
    let maria = CommandContext::by(ActorId::new("maria").unwrap());
    let fresh = Command::ReportIssue {
        source: ReportSource::Api,
        reporter: maria.actor.clone(),
        title: "after the restart".into(),
        description: String::new(),
        service: None,
        customers: vec![],
        labels: Default::default(),
        dedup_key: None,
        started_at: None,
    };
    let next = restarted.handle.report(fresh, &maria).await.unwrap();
    assert_eq!(next.incident.number(), highest + 1, "the next number follows the evicted ones (seed {seed})");
    let live = queries(&restarted.handle, highest + 1).await;
    let held = restarted.handle.projection().await.unwrap();
    restarted.stop().await;

    // A rebuild from scratch (no snapshot) evicts the same incidents and
    // holds the same ones.
    std::fs::remove_file(dir.path().join("intake.snap")).unwrap();
    let rebuilt = Running::start(dir.path(), &clock, true, true);
    rebuilt.handle.projection().await.unwrap();
    rebuilt.handle.wait_evicted(closed_count).await.unwrap();
    assert_eq!(rebuilt.handle.resumed(), klaxon_log::Position::ZERO);
    assert_eq!(rebuilt.handle.projection().await.unwrap(), held, "seed {seed}");
    assert_eq!(queries(&rebuilt.handle, highest + 1).await, live, "seed {seed}");
    rebuilt.stop().await;
}

/// The evicted incidents' rows are on disk (`intake.snap.rows`, beside
/// the snapshot), kept consistent with the snapshot: a crash after
/// evictions the last snapshot does not know of (rows written after it,
/// then a tail torn mid-slot) restarts from that snapshot, cuts the torn
/// tail, passes over the rows of incidents it holds and evicts them again;
/// a table that is gone makes the snapshot useless, and the restart
/// rebuilds. Each answers what the intake answered before the crash.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_written_after_the_snapshot_and_a_torn_or_lost_table_are_survived_by_a_restart_that_answers_the_same() {
    let seed = crate::seed::seed(
        "rows_written_after_the_snapshot_and_a_torn_or_lost_table_are_survived_by_a_restart_that_answers_the_same",
    );
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("intake.snap.rows");
    let clock = ManualClock::new(start_time());
    let running = Running::start(dir.path(), &clock, true, true);
    let (_, highest) = scenario(&running.handle, &clock, seed, 300).await;
    // Whatever can be resolved now is (closed less than the eviction time
    // ago: held).
    let maria = CommandContext::by(ActorId::new("maria").unwrap());
    for n in 1..=highest {
        let resolve = Command::Resolve { summary: "resolved at last".into() };
        let _ = running.handle.execute(IncidentId::from_number(n).unwrap(), resolve, &maria).await;
    }
    let closed_count = closed(&running.handle).await;
    // A clean stop saves a snapshot at the head: the incidents closed
    // less than the eviction time ago are held in it.
    running.stop().await;
    let running = Running::start(dir.path(), &clock, true, true);
    running.handle.projection().await.unwrap();
    let snapshot_before = running.handle.resumed();
    assert!(snapshot_before > klaxon_log::Position::ZERO, "seed {seed}");
    let evicted_before = running.handle.evicted();
    assert!(evicted_before < closed_count, "some closed incidents are held (seed {seed})");
    // They leave by the clock, after the last record: no snapshot knows
    // of their rows.
    clock.advance(TimeDelta::from_std(TTL).unwrap());
    running.handle.wait_evicted(closed_count).await.unwrap();
    assert!(running.handle.snapshot() <= snapshot_before, "seed {seed}");
    let live = queries(&running.handle, highest).await;
    let slot = 1 + 6 + 4;
    assert!(std::fs::metadata(&table).unwrap().len() > 64 + slot * (closed_count as u64 - 1), "the rows are on disk");

    // The intake crashes (the log stays open): no stop, no snapshot; the
    // table's tail torn mid-slot.
    let crash = |running: Running| async move {
        let Running { handle, log, task, .. } = running;
        drop(handle);
        task.abort();
        assert!(task.await.unwrap_err().is_cancelled());
        log
    };
    let log = crash(running).await;
    let mut bytes = std::fs::read(&table).unwrap();
    bytes.extend_from_slice(&[1, 3, 0]);
    std::fs::write(&table, &bytes).unwrap();
    // Restarted without eviction first: the incidents the snapshot holds
    // stay held, and their rows written after it are passed over.
    let restarted = Running::on(log, dir.path(), &clock, false, true);
    restarted.handle.projection().await.unwrap();
    assert_eq!(restarted.handle.resumed(), snapshot_before, "resumed from the last snapshot (seed {seed})");
    assert_eq!(restarted.handle.evicted(), evicted_before, "seed {seed}");
    assert_eq!(queries(&restarted.handle, highest).await, live, "seed {seed}");
    assert_eq!(std::fs::metadata(&table).unwrap().len() % slot, 64 % slot, "the torn tail was cut");
    let log = crash(restarted).await;
    // With eviction again: they leave, their rows written again whole.
    let restarted = Running::on(log, dir.path(), &clock, true, true);
    restarted.handle.projection().await.unwrap();
    restarted.handle.wait_evicted(closed_count).await.unwrap();
    assert_eq!(queries(&restarted.handle, highest).await, live, "seed {seed}");
    restarted.stop().await;

    // The table lost, the snapshot kept: the snapshot is refused (its rows
    // are gone) and the projection rebuilt.
    std::fs::remove_file(&table).unwrap();
    let rebuilt = Running::start(dir.path(), &clock, true, true);
    rebuilt.handle.projection().await.unwrap();
    assert_eq!(rebuilt.handle.resumed(), klaxon_log::Position::ZERO, "seed {seed}");
    rebuilt.handle.wait_evicted(closed_count).await.unwrap();
    assert_eq!(queries(&rebuilt.handle, highest).await, live, "seed {seed}");
    rebuilt.stop().await;
}
