//! Services of one process on one [`Fanout`]: each record's event is
//! decoded once for all of them, and one that does not decode stops each
//! of them with the same error, naming its position.

use klaxon_bus::{Bus, Fanout};
use klaxon_log::{EventData, EventKind, ExpectedVersion, NewEvent, Position, StreamId};
use klaxon_reactor::Reactor;

use super::{Marking, World};

/// How many services follow the fanout (as the four reacting services of
/// `klaxond up` do).
const SERVICES: usize = 4;

impl World {
    /// `SERVICES` reactors following one fanout, as `klaxond up` builds its
    /// services; not started.
    fn shared_reactors(&self, fanout: &Fanout) -> Vec<Reactor<Marking>> {
        (0..SERVICES)
            .map(|_| {
                let bus = Bus::embedded_shared(self.log.clone(), fanout.clone());
                // A chain of 0: the reactors only fold (they would race for
                // the same marks otherwise).
                Reactor::new(bus, Marking { chain: 0, late: None, channel: "log" }, self.clock.shared())
            })
            .collect()
    }
}

/// The records of the kinds `Marking` decodes (incident and review events).
fn decoded_kinds(w: &World) -> u64 {
    let records = w.log.read_all(Position(1), 100_000).unwrap();
    records
        .iter()
        .filter(|r| r.kind.as_str().starts_with("incident.") || r.kind.as_str().starts_with("review."))
        .count() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_on_one_fanout_decode_each_record_once() {
    let w = World::new();
    for n in 1..=30 {
        w.report(n).await;
    }
    for n in 1..=10 {
        w.resolve(n).await;
    }
    let fanout = Fanout::new(w.log.clone());
    let reactors = w.shared_reactors(&fanout);
    let handles: Vec<_> = reactors.iter().map(Reactor::handle).collect();
    for reactor in reactors {
        tokio::spawn(reactor.run(w.stop.clone()));
    }
    for handle in &handles {
        let progress = handle.wait_processed(w.log.head()).await.unwrap();
        assert_eq!(progress.processed, w.log.head());
    }
    let stats = fanout.stats();
    let decoded = decoded_kinds(&w);
    assert_eq!(decoded, 30 + 2 * 10, "every report, declaration and resolution");
    assert_eq!(stats.shared_taken, SERVICES as u64 * w.log.head().0, "every service took every record: {stats:?}");
    assert_eq!(stats.derived, decoded, "each event decoded once for {SERVICES} services, not once each: {stats:?}");
    w.stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undecodable_record_stops_every_service_on_the_fanout_naming_its_position() {
    let w = World::new();
    for n in 1..=5 {
        w.report(n).await;
    }
    // An incident kind whose data is not the event: history this version
    // cannot fold.
    let bad = NewEvent {
        id: uuid::Uuid::from_u128(0xbad),
        kind: EventKind::new("incident.reported.v1").unwrap(),
        data: EventData::from_json(r#"{"not":"a report"}"#.to_string()).unwrap(),
        metadata: Default::default(),
    };
    let stream = StreamId::new("incident-INC-6").unwrap();
    let appended = w.log.append(&stream, ExpectedVersion::Any, vec![bad]).await.unwrap();
    let position = appended.last;
    w.report(7).await;
    let fanout = Fanout::new(w.log.clone());
    let runs: Vec<_> = w.shared_reactors(&fanout).into_iter().map(|r| tokio::spawn(r.run(w.stop.clone()))).collect();
    for run in runs {
        let outcome = tokio::time::timeout(std::time::Duration::from_secs(60), run).await.expect("it stops").unwrap();
        match outcome {
            Err(klaxon_reactor::Error::Undecodable { position: at, reason }) => {
                assert_eq!(at, position, "the record that does not decode: {reason}");
            }
            other => panic!("expected the undecodable record's error, got {other:?}"),
        }
    }
    assert_eq!(fanout.stats().derived, 6, "the five reports, then the bad record, each decoded once");
}

/// `decode::shared_event` finds a family's event by the record's kind: no
/// kind may belong to two families (or start like an incident kind).
#[test]
fn the_families_kinds_are_disjoint() {
    use klaxon_domain::envelope::Changes;
    use klaxon_domain::notifier::NotifyChange;
    use klaxon_domain::paging::PageChange;
    use klaxon_domain::review::ReviewChange;
    let families = [PageChange::KINDS, NotifyChange::KINDS, ReviewChange::KINDS];
    let mut seen = std::collections::HashSet::new();
    for kind in families.iter().flat_map(|kinds| kinds.iter()) {
        assert!(!kind.starts_with("incident."), "{kind}");
        assert!(seen.insert(*kind), "{kind} is in two families");
    }
}
