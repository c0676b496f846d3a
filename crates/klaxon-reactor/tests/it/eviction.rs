//! Eviction's sweeps cost what can leave: they look at the incidents due to
//! leave (and at those held back while due), not at every incident held.

use std::num::NonZeroU64;
use std::time::Duration;

use chrono::TimeDelta;
use klaxon_domain::ids::IncidentId;
use klaxon_domain::incident::Command;
use klaxon_log::{EventData, EventKind, ExpectedVersion, Metadata, NewEvent};
use klaxon_reactor::snapshot::Loaded;
use klaxon_reactor::{Reactor, SnapshotFile, streams};
use tokio_util::sync::CancellationToken;

use super::{Marking, World};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sweep_looks_at_the_incidents_due_to_leave_not_at_every_one_held() {
    const INCIDENTS: u64 = 60;
    let w = World::new();
    // Every tenth incident stays open; the others are resolved now.
    for n in 1..=INCIDENTS {
        w.report(n).await;
        if n % 10 != 0 {
            w.resolve(n).await;
        }
    }
    let resolved = INCIDENTS - INCIDENTS / 10;
    let reactor = Reactor::new(w.log.clone(), Marking { chain: 0, late: None, channel: "log" }, w.clock.shared())
        .with_eviction(Duration::from_secs(3600));
    let marking = reactor.handle();
    tokio::spawn(reactor.run(w.stop.clone()));

    // Caught up, it looks once: nothing is due for an hour, so it looks at
    // nothing (a sweep over everything held would have looked at all).
    let p = marking.wait_processed(w.log.head()).await.unwrap();
    assert_eq!((p.held, p.evicted, p.examined), (INCIDENTS, 0, 0), "{p:?}");

    // Two hours on, the resolved ones are due: each is looked at once and
    // leaves; the open ones are never looked at.
    w.clock.advance(TimeDelta::hours(2));
    let p = marking.wait_processed(w.log.head()).await.unwrap();
    assert_eq!((p.held, p.evicted, p.examined), (INCIDENTS / 10, resolved, resolved), "{p:?}");

    // Later sweeps find nothing due and look at nothing.
    for _ in 0..3 {
        w.clock.advance(TimeDelta::hours(2));
        let p = marking.wait_processed(w.log.head()).await.unwrap();
        assert_eq!((p.held, p.evicted, p.examined), (INCIDENTS / 10, resolved, resolved), "{p:?}");
    }

    // A record about an evicted incident reads it back (held again, a
    // candidate again, due at once: it was resolved hours ago) and the
    // next sweep looks at it alone.
    w.command(1, Command::Reopen { reason: "back".into() }).await;
    w.command(1, Command::Resolve { summary: "fixed again".into() }).await;
    w.clock.advance(TimeDelta::hours(2));
    let p = marking.wait_processed(w.log.head()).await.unwrap();
    assert_eq!((p.read_back, p.held, p.evicted, p.examined), (1, INCIDENTS / 10, resolved, resolved + 1), "{p:?}");
    w.stop.cancel();
}

/// A record in an evicted incident's streams that the service's fold passes
/// over (here: a kind `Marking` does not fold, in the incident's notify
/// stream) still reads the incident back; it is then held again, with its
/// latest cause, and a later sweep evicts it again. (It used to stay in the
/// state, neither held nor evicted, for good.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incident_read_back_for_a_record_its_service_passes_over_is_held_and_evicted_again() {
    let w = World::new();
    w.report(1).await;
    w.resolve(1).await;
    w.report(2).await;
    w.resolve(2).await;
    let reactor = Reactor::new(w.log.clone(), Marking { chain: 0, late: None, channel: "log" }, w.clock.shared())
        .with_eviction(Duration::from_secs(3600));
    let marking = reactor.handle();
    tokio::spawn(reactor.run(w.stop.clone()));
    w.clock.advance(TimeDelta::hours(2));
    let p = marking.wait_processed(w.log.head()).await.unwrap();
    assert_eq!((p.held, p.evicted), (0, 2), "{p:?}");

    let id = IncidentId::from_number(1).unwrap();
    let note = NewEvent {
        id: uuid::Uuid::new_v4(),
        kind: EventKind::new("test.note.v1").unwrap(),
        data: EventData::from_value(&serde_json::json!({})).unwrap(),
        metadata: Metadata::default(),
    };
    w.log.append(&streams::notify(id), ExpectedVersion::Any, vec![note]).await.unwrap();
    let p = marking.wait_processed(w.log.head()).await.unwrap();
    assert_eq!((p.read_back, p.held, p.evicted), (1, 1, 1), "held again, not lost between the two: {p:?}");
    assert!(!marking.is_evicted(id).await.unwrap());

    // Still finished long ago: the next sweep on the clock evicts it again.
    w.clock.advance(TimeDelta::hours(1));
    let p = marking.wait_processed(w.log.head()).await.unwrap();
    assert_eq!((p.held, p.evicted), (0, 2), "{p:?}");
    assert!(marking.is_evicted(id).await.unwrap());
    w.stop.cancel();
}

/// The shell keeps no evicted ids: its snapshot counts the evicted
/// incidents, and a snapshot of an earlier build, which listed their ids,
/// is resumed (not rebuilt), the list counted. Either way a record about
/// an evicted incident reads it back from the log, which alone says it was
/// evicted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_count_evicted_incidents_and_one_listing_their_ids_still_resumes() {
    let w = World::new();
    for n in 1..=3 {
        w.report(n).await;
        w.resolve(n).await;
    }
    let file = SnapshotFile::new(w._dir.path().join("snapshots").join("marking.snap"));
    let run = |stop: CancellationToken| {
        let reactor = Reactor::new(w.log.clone(), Marking { chain: 0, late: None, channel: "log" }, w.clock.shared())
            .with_eviction(Duration::from_secs(3600))
            .with_snapshots(file.clone(), NonZeroU64::new(1 << 40).unwrap());
        let handle = reactor.handle();
        (handle, tokio::spawn(reactor.run(stop)))
    };
    let stop = CancellationToken::new();
    let (marking, task) = run(stop.clone());
    w.clock.advance(TimeDelta::hours(2));
    let p = marking.wait_processed(w.log.head()).await.unwrap();
    assert_eq!((p.held, p.evicted), (0, 3), "{p:?}");
    stop.cancel();
    task.await.unwrap().unwrap();
    let saved: Loaded<serde_json::Value> = file.load(1).unwrap();
    assert_eq!(saved.state["evicted"], serde_json::json!(3), "a count, no ids: {}", saved.state);

    // As an earlier build saved it: the evicted ids listed.
    let mut state = saved.state.clone();
    state["evicted"] = serde_json::json!(["INC-1", "INC-2", "INC-3"]);
    file.save(1, saved.position, saved.id, &state).unwrap();
    let stop = CancellationToken::new();
    let (marking, task) = run(stop.clone());
    let p = marking.wait_processed(w.log.head()).await.unwrap();
    assert_eq!((p.resumed, p.held, p.evicted), (saved.position, 0, 3), "resumed, not rebuilt: {p:?}");
    let id = IncidentId::from_number(2).unwrap();
    assert!(marking.is_evicted(id).await.unwrap());

    // A record about one reads it back: held again, one fewer evicted.
    w.command(2, Command::Reopen { reason: "back".into() }).await;
    let p = marking.wait_processed(w.log.head()).await.unwrap();
    assert_eq!((p.read_back, p.held, p.evicted), (1, 1, 2), "{p:?}");
    assert!(marking.is_held(id));
    assert!(!marking.is_evicted(id).await.unwrap());
    stop.cancel();
    task.await.unwrap().unwrap();
}
