//! Snapshots: a restart resumes from the saved state and folds only the
//! log after it, decides what is owed exactly as a rebuild would, and any
//! doubtful snapshot (another schema version, damaged, of another log) is
//! ignored for a rebuild from position 1.

use std::num::NonZeroU64;

use klaxon_reactor::{Progress, SnapshotFile};

use super::*;

impl World {
    /// Runs `marking` with snapshots in `file` until the log's head is
    /// processed; returns what it folded (as JSON) and its progress, after
    /// a clean stop (which saves a snapshot).
    async fn run_once(&self, marking: Marking, file: Option<&SnapshotFile>) -> (serde_json::Value, Progress) {
        let channel = ChannelConfig { name: "log".into(), kind: "log".into(), ..ChannelConfig::default() };
        let channels = Arc::new(Channels::new(&[channel], |_| None).unwrap());
        let mut reactor = Reactor::new(self.log.clone(), marking, self.clock.shared()).with_outbox(channels);
        if let Some(file) = file {
            reactor = reactor.with_snapshots(file.clone(), NonZeroU64::new(1000).unwrap());
        }
        let handle = reactor.handle();
        let stop = CancellationToken::new();
        let running = tokio::spawn(reactor.run(stop.clone()));
        let progress = handle.wait_processed(self.log.head()).await.unwrap();
        let state = handle.read(|state| serde_json::to_value(state).unwrap());
        stop.cancel();
        running.await.unwrap().unwrap();
        (state, progress)
    }

    fn snapshot_file(&self) -> SnapshotFile {
        SnapshotFile::new(self._dir.path().join("snapshots").join("marking.snap"))
    }
}

fn marking() -> Marking {
    Marking { chain: 2, late: Some(TimeDelta::minutes(10)), channel: "log" }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_from_a_snapshot_folds_only_the_tail_and_equals_a_rebuild() {
    let w = World::new();
    let file = w.snapshot_file();
    for n in 1..=6 {
        w.report(n).await;
    }
    w.resolve(2).await;
    let (_, first) = w.run_once(marking(), Some(&file)).await;
    assert_eq!(first.resumed, Position::ZERO, "nothing to resume from yet");
    let saved_at = w.log.head();
    assert_eq!(w.marks(), [(1, 2), (3, 2), (4, 2), (5, 2), (6, 2)]);

    // More history, and the timers of the open incidents fall due.
    w.report(7).await;
    w.resolve(3).await;
    w.clock.advance(TimeDelta::minutes(10));
    let (resumed, progress) = w.run_once(marking(), Some(&file)).await;
    assert_eq!(progress.resumed, saved_at, "resumed from the snapshot saved at the stop");
    // The tail: the new records, plus the marks and deliveries they led to.
    let marks = w.marks();
    assert_eq!(marks, [(1, 3), (3, 2), (4, 3), (5, 3), (6, 3), (7, 3)], "each owed once, nothing twice");
    assert_eq!(progress.applied, w.log.head());
    assert!(progress.applied.0 - progress.resumed.0 < progress.applied.0 / 2, "only the tail was folded: {progress:?}");

    // A rebuild from scratch over the same log folds the same state and
    // decides nothing more.
    let (rebuilt, progress) = w.run_once(marking(), None).await;
    assert_eq!(progress.resumed, Position::ZERO);
    assert_eq!(resumed, rebuilt);
    assert_eq!(w.marks(), marks);
    w.stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_of_another_schema_damaged_or_of_another_log_is_ignored_and_the_state_rebuilt() {
    let w = World::new();
    let file = w.snapshot_file();
    for n in 1..=3 {
        w.report(n).await;
    }
    let (rebuilt, _) = w.run_once(marking(), None).await;
    let head = w.log.head();
    let last = w.log.read_one(head).unwrap().id;
    // A snapshot that would be taken as it is: an empty state at the head.
    let empty = serde_json::json!({ "state": { "open": {}, "marks": {} }, "causes": [], "pending": [] });

    file.save(2, head, last, &empty).unwrap();
    let (state, progress) = w.run_once(marking(), Some(&file)).await;
    assert_eq!((progress.resumed, &state), (Position::ZERO, &rebuilt), "schema version 2 is not this service's");

    file.save(1, head, uuid::Uuid::new_v4(), &empty).unwrap();
    let (state, progress) = w.run_once(marking(), Some(&file)).await;
    assert_eq!((progress.resumed, &state), (Position::ZERO, &rebuilt), "the log has another event there");

    file.save(1, Position(head.0 + 1), last, &empty).unwrap();
    let (state, progress) = w.run_once(marking(), Some(&file)).await;
    assert_eq!((progress.resumed, &state), (Position::ZERO, &rebuilt), "beyond the log's head");

    file.save(1, head, last, &empty).unwrap();
    let mut bytes = std::fs::read(file.path()).unwrap();
    let end = bytes.len() - 2;
    bytes[end] ^= 0x20;
    std::fs::write(file.path(), &bytes).unwrap();
    let (state, progress) = w.run_once(marking(), Some(&file)).await;
    assert_eq!((progress.resumed, &state), (Position::ZERO, &rebuilt), "damaged");

    // The control: the same snapshot, whole, is taken as it is.
    file.save(1, head, last, &empty).unwrap();
    let (state, progress) = w.run_once(marking(), Some(&file)).await;
    assert_eq!(progress.resumed, head);
    assert_eq!(state, serde_json::json!({ "open": {}, "marks": {}, "resolved": {} }));
    assert_eq!(w.marks(), [(1, 2), (2, 2), (3, 2)], "nothing owed was decided again");
    w.stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_decides_again_what_was_unfolding_when_the_snapshot_was_taken() {
    let w = World::new();
    let file = w.snapshot_file();
    w.report(1).await;
    w.report(2).await;
    let once = Marking { chain: 1, late: None, channel: "log" };
    let (state, _) = w.run_once(once, None).await;
    assert_eq!(w.marks(), [(1, 1), (2, 1)]);
    let head = w.log.read_one(w.log.head()).unwrap();
    let cause = |n: u64| {
        let id = IncidentId::from_number(n).unwrap();
        let last = w.log.read_stream(&streams::review(id), StreamVersion(1), 10).unwrap().pop().unwrap();
        serde_json::json!([id, Cause::of(&last)])
    };
    // A snapshot taken while INC-2 was still unfolding (say, a record of it
    // folded but not yet decided on, just before a crash): its checkpoint
    // is behind, but the snapshot names it, so the resume decides it again.
    let saved = serde_json::json!({ "state": state, "causes": [cause(1), cause(2)], "pending": ["INC-2"] });
    file.save(1, head.position, head.id, &saved).unwrap();
    let (_, progress) = w.run_once(Marking { chain: 2, late: None, channel: "log" }, Some(&file)).await;
    assert_eq!(progress.resumed, head.position);
    assert_eq!(w.marks(), [(1, 1), (2, 2)], "INC-2 decided again, INC-1 (done, before the checkpoint) not");
    w.stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_that_could_not_be_saved_is_not_reported_saved() {
    let w = World::new();
    let file = w.snapshot_file();
    // A folder where the file goes: every save fails at its rename.
    std::fs::create_dir_all(file.path().join("in-the-way")).unwrap();
    for n in 1..=3 {
        w.report(n).await;
    }
    let run = |every: u64| {
        let channel = ChannelConfig { name: "log".into(), kind: "log".into(), ..ChannelConfig::default() };
        let channels = Arc::new(Channels::new(&[channel], |_| None).unwrap());
        let reactor = Reactor::new(w.log.clone(), marking(), w.clock.shared())
            .with_outbox(channels)
            .with_snapshots(file.clone(), NonZeroU64::new(every).unwrap());
        let (handle, stop) = (reactor.handle(), CancellationToken::new());
        (handle, stop.clone(), tokio::spawn(reactor.run(stop)))
    };

    // Saves are attempted on reaching the head, after every record since
    // (the marks), and at the stop: all fail, and none is reported.
    let (handle, stop, running) = run(1);
    let processed = handle.wait_processed(w.log.head()).await.unwrap();
    assert!(w.log.head() > Position(3), "the marks were appended after the reports");
    assert_eq!(processed.snapshot, Position::ZERO, "no snapshot saved while running: {processed:?}");
    stop.cancel();
    running.await.unwrap().unwrap();
    assert_eq!(handle.progress().snapshot, Position::ZERO, "nor at the stop");
    assert!(file.path().is_dir(), "nothing was written in place of the folder");

    // With the way clear, the stop's save is durable and reported, and the
    // next start resumes from it.
    std::fs::remove_dir_all(file.path()).unwrap();
    let (handle, stop, running) = run(1000);
    handle.wait_processed(w.log.head()).await.unwrap();
    stop.cancel();
    running.await.unwrap().unwrap();
    let head = w.log.head();
    assert_eq!(handle.progress().snapshot, head, "saved at the stop");
    let (handle, stop, running) = run(1000);
    assert_eq!(handle.wait_processed(head).await.unwrap().resumed, head, "resumed from it");
    stop.cancel();
    running.await.unwrap().unwrap();
}
