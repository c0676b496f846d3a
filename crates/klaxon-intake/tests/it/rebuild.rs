//! The projection rebuilt from position 1 equals the live one, after a long
//! random scenario (random commands by random people, legal or not).

use klaxon_domain::ids::{ActorId, Audience, IncidentId, IncidentRole, ReportSource, Severity};
use klaxon_domain::incident::{Command, Incidents};
use klaxon_intake::{CommandContext, Intake};
use std::num::NonZeroU64;

use klaxon_log::{Log, Position};
use klaxon_reactor::SnapshotFile;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio_util::sync::CancellationToken;

fn fold_from_scratch(log: &Log) -> Incidents {
    let mut incidents = Incidents::default();
    let mut next = Position(1);
    loop {
        let records = log.read_all(next, 1000).unwrap();
        let Some(last) = records.last() else { break };
        next = last.position.next();
        for r in &records {
            if let Some(event) = klaxon_reactor::decode::incident(r).unwrap() {
                incidents.apply(&event);
            }
        }
    }
    incidents
}

fn random_command(rng: &mut StdRng, people: &[ActorId]) -> Command {
    let person = people[rng.random_range(0..people.len())].clone();
    let who = || person.clone();
    let severity = [Severity::Sev1, Severity::Sev2, Severity::Sev3, Severity::Sev4][rng.random_range(0..4)];
    match rng.random_range(0..16) {
        0 => Command::DeclareIncident { severity },
        1 => Command::OverrideSeverity { severity, reason: "new facts".into() },
        2 => Command::AssignCommander { commander: who() },
        3 => Command::RequestHandoff { to: who() },
        4 => Command::AcceptHandoff,
        5 => Command::DeclineHandoff { reason: "busy".into() },
        6 => Command::AssignRole { role: IncidentRole::Scribe, person: who() },
        7 => Command::PostUpdate {
            audience: Audience::ALL[rng.random_range(0..3)],
            text: format!("update {}", rng.random::<u16>()),
        },
        8 => Command::RecordCustomerImpact {
            customers_affected: rng.random_range(0..100),
            customers: vec![],
            multi_customer: rng.random(),
            summary: "impact".into(),
        },
        9 => Command::Mitigate { summary: "mitigated".into() },
        10 => Command::Resolve { summary: "resolved".into() },
        11 => Command::Reopen { reason: "came back".into() },
        12 => Command::ValidateResolution { note: "checked".into() },
        13 => Command::JoinBridge { participant: who(), role: None },
        14 => Command::LeaveBridge { participant: who() },
        _ => Command::CancelHandoff { reason: "changed plans".into() },
    }
}

/// `steps` random commands and reports (reports open incidents up to
/// `incidents`); returns how many commands were accepted.
async fn scenario(
    handle: &klaxon_intake::Handle,
    rng: &mut StdRng,
    people: &[ActorId],
    steps: usize,
    incidents: &mut u64,
) -> usize {
    let mut accepted = 0;
    for step in 0..steps {
        let actor = people[rng.random_range(0..people.len())].clone();
        let ctx = CommandContext::by(actor.clone());
        if *incidents == 0 || rng.random_range(0..10) == 0 {
            let report = Command::ReportIssue {
                source: ReportSource::Api,
                reporter: actor,
                title: format!("issue {step}"),
                description: String::new(),
                service: None,
                customers: vec![],
                labels: Default::default(),
                dedup_key: if rng.random() {
                    Some(format!("key-{}", rng.random_range(0..3)).parse().unwrap())
                } else {
                    None
                },
                started_at: None,
            };
            let outcome = handle.report(report, &ctx).await.unwrap();
            *incidents = (*incidents).max(outcome.incident.number());
            continue;
        }
        let id = IncidentId::from_number(rng.random_range(1..=*incidents)).unwrap();
        if handle.execute(id, random_command(rng, people), &ctx).await.is_ok() {
            accepted += 1;
        }
    }
    accepted
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebuilding_from_scratch_equals_the_live_projection() {
    let seed = crate::seed::seed("rebuilding_from_scratch_equals_the_live_projection");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), klaxon_log::Options::default()).unwrap();
    let intake = Intake::new(log.clone(), Default::default(), klaxon_reactor::system_clock());
    let handle = intake.handle();
    let stop = CancellationToken::new();
    let running = tokio::spawn(intake.run(stop.clone()));
    let people: Vec<ActorId> = ["maria", "omar", "li", "sam"].iter().map(|p| ActorId::new(*p).unwrap()).collect();

    let mut incidents = 0u64;
    let accepted = scenario(&handle, &mut rng, &people, 600, &mut incidents).await;
    assert!(accepted > 100, "the scenario should exercise many legal commands (seed {seed})");
    let live = handle.projection().await.unwrap();
    assert_eq!(handle.applied(), log.head());
    assert_eq!(fold_from_scratch(&log), live, "seed {seed}");

    // A new intake over the reopened log rebuilds the same projection.
    stop.cancel();
    running.await.unwrap().unwrap();
    log.close().await;
    drop((handle, log));
    let log = Log::open(dir.path(), klaxon_log::Options::default()).unwrap();
    let intake = Intake::new(log.clone(), Default::default(), klaxon_reactor::system_clock());
    let handle = intake.handle();
    let stop = CancellationToken::new();
    tokio::spawn(intake.run(stop.clone()));
    assert_eq!(handle.projection().await.unwrap(), live, "seed {seed}");
    stop.cancel();
}

/// An intake over `log` saving snapshots in `file` every `every` records,
/// running until its stop token is cancelled.
fn start_saving(
    log: &Log,
    file: &SnapshotFile,
    every: u64,
) -> (klaxon_intake::Handle, CancellationToken, tokio::task::JoinHandle<Result<(), klaxon_intake::Error>>) {
    let intake = Intake::new(log.clone(), Default::default(), klaxon_reactor::system_clock())
        .with_snapshots(file.clone(), NonZeroU64::new(every).unwrap());
    let (handle, stop) = (intake.handle(), CancellationToken::new());
    (handle, stop.clone(), tokio::spawn(intake.run(stop)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_from_a_snapshot_folds_only_the_tail_and_equals_a_rebuild() {
    let seed = crate::seed::seed("a_restart_from_a_snapshot_folds_only_the_tail_and_equals_a_rebuild");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path().join("log"), klaxon_log::Options::default()).unwrap();
    let file = SnapshotFile::new(dir.path().join("snapshots").join("intake.snap"));
    let every = 50;
    let start = |log: &Log| start_saving(log, &file, every);
    let people: Vec<ActorId> = ["maria", "omar", "li", "sam"].iter().map(|p| ActorId::new(*p).unwrap()).collect();
    let mut incidents = 0u64;

    let (handle, stop, running) = start(&log);
    scenario(&handle, &mut rng, &people, 300, &mut incidents).await;
    handle.projection().await.unwrap();
    // A snapshot counts once its file is durable, off the fold's loop.
    for _ in 0..1000 {
        if handle.snapshot() > Position::ZERO {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(handle.snapshot() > Position::ZERO, "saved every {every} records while running");
    stop.cancel();
    running.await.unwrap().unwrap();
    let stopped_at = log.head();
    assert_eq!(handle.snapshot(), stopped_at, "saved at the stop");

    // The restart resumes from the snapshot and folds only what came after.
    let (handle, stop, running) = start(&log);
    scenario(&handle, &mut rng, &people, 300, &mut incidents).await;
    let live = handle.projection().await.unwrap();
    assert_eq!(handle.resumed(), stopped_at, "seed {seed}");
    assert_eq!(live, fold_from_scratch(&log), "a resumed projection equals a rebuild (seed {seed})");
    stop.cancel();
    running.await.unwrap().unwrap();

    // A damaged snapshot is ignored: the projection is rebuilt, the same.
    let mut bytes = std::fs::read(file.path()).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(file.path(), &bytes).unwrap();
    let (handle, stop, running) = start(&log);
    assert_eq!(handle.projection().await.unwrap(), live, "seed {seed}");
    assert_eq!(handle.resumed(), Position::ZERO, "the damaged snapshot was not used");
    stop.cancel();
    running.await.unwrap().unwrap();

    // So is a snapshot of another log (the event at its position differs).
    let other = Log::open(dir.path().join("other"), klaxon_log::Options::default()).unwrap();
    let (handle, stop, running) = start(&other);
    assert_eq!(handle.projection().await.unwrap(), Incidents::default());
    assert_eq!(handle.resumed(), Position::ZERO, "a snapshot beyond the other log's head was not used");
    stop.cancel();
    running.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_that_could_not_be_saved_is_not_reported_saved() {
    let seed = crate::seed::seed("a_snapshot_that_could_not_be_saved_is_not_reported_saved");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path().join("log"), klaxon_log::Options::default()).unwrap();
    let file = SnapshotFile::new(dir.path().join("snapshots").join("intake.snap"));
    // A folder where the file goes: every save fails at its rename.
    std::fs::create_dir_all(file.path().join("in-the-way")).unwrap();
    let start = |every: u64| start_saving(&log, &file, every);
    let people: Vec<ActorId> = ["maria", "omar", "li", "sam"].iter().map(|p| ActorId::new(*p).unwrap()).collect();
    let mut incidents = 0u64;

    // Saves every 5 records while running and at the stop: all fail, and
    // none is reported.
    let (handle, stop, running) = start(5);
    // Until more than 20 records were appended (several saves attempted):
    // how many commands one round of the scenario gets accepted depends
    // on the seed. One step in ten reports an issue, which always appends,
    // so this ends (the bound is for a bug, not for bad luck).
    for round in 0.. {
        if log.head().0 > 20 {
            break;
        }
        assert!(round < 100, "seed {seed}");
        scenario(&handle, &mut rng, &people, 60, &mut incidents).await;
    }
    handle.projection().await.unwrap();
    stop.cancel();
    running.await.unwrap().unwrap();
    assert_eq!(handle.snapshot(), Position::ZERO, "no snapshot was saved (seed {seed})");
    assert!(file.path().is_dir(), "nothing was written in place of the folder");

    // With the way clear, the stop's save is reported, and the next start
    // resumes from it.
    std::fs::remove_dir_all(file.path()).unwrap();
    let (handle, stop, running) = start(1000);
    handle.projection().await.unwrap();
    stop.cancel();
    running.await.unwrap().unwrap();
    assert_eq!(handle.snapshot(), log.head(), "saved at the stop (seed {seed})");
    let (handle, stop, running) = start(1000);
    handle.projection().await.unwrap();
    assert_eq!(handle.resumed(), log.head(), "resumed from it (seed {seed})");
    stop.cancel();
    running.await.unwrap().unwrap();
}
