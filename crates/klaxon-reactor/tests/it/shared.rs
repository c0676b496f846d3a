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

/// `decode::shared_event` finds a family's event by the record's kind, and
/// a family is known by its kinds' first segments: no segment may belong
/// to two families (or be `incident.`), nor any kind to two families.
#[test]
fn the_families_kinds_are_disjoint() {
    use klaxon_domain::envelope::Changes;
    use klaxon_domain::notifier::NotifyChange;
    use klaxon_domain::oncall::{notices, roster};
    use klaxon_domain::paging::PageChange;
    use klaxon_domain::review::ReviewChange;
    let families = [PageChange::KINDS, NotifyChange::KINDS, ReviewChange::KINDS, roster::KINDS, notices::KINDS];
    let mut seen = std::collections::HashSet::new();
    let mut segments = std::collections::HashMap::new();
    for (family, kinds) in families.iter().enumerate() {
        for kind in kinds.iter() {
            assert!(!kind.starts_with("incident."), "{kind}");
            assert!(seen.insert(*kind), "{kind} is in two families");
            let segment = kind.split_once('.').expect("a kind has segments").0;
            assert_eq!(*segments.entry(segment).or_insert(family), family, "{segment}. is in two families");
        }
    }
}

/// A record of a kind this version does not know, under a family's first
/// segment (a newer version's `page.acknowledged.v2`, `slo.recovered.v1`, …),
/// is history no fold may skip: every decoder refuses it naming its
/// position. Kinds of no family (`report.posted.v1`, a claim) stay nobody's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kind_unknown_to_this_version_under_a_family_is_refused_not_skipped() {
    use klaxon_domain::notifier::NotifyChange;
    use klaxon_domain::paging::PageChange;
    use klaxon_domain::review::ReviewChange;
    use klaxon_reactor::decode;
    let w = World::new();
    let append = |kind: &'static str| {
        let w = &w;
        async move {
            let at = append_to(w, kind).await;
            w.log.read_all(at, 1).unwrap().remove(0)
        }
    };
    let refused = |outcome: Result<bool, klaxon_reactor::Error>, at: Position, what: &str| match outcome {
        Err(klaxon_reactor::Error::Undecodable { position, reason }) => {
            assert_eq!(position, at, "{what}: {reason}");
            assert!(reason.contains("unknown event kind"), "{what}: {reason}");
        }
        other => panic!("{what}: expected the unknown kind refused, got {other:?}"),
    };
    for kind in ["page.acknowledged.v2", "slo.recovered.v1"] {
        let record = append(kind).await;
        refused(decode::event::<PageChange>(&record).map(|e| e.is_some()), record.position, kind);
        refused(decode::Decoded::of(&record).map(|_| true), record.position, kind);
        assert!(decode::event::<NotifyChange>(&record).unwrap().is_none(), "{kind} is not a notify kind");
    }
    let record = append("notify.update_overdue.v9").await;
    refused(decode::event::<NotifyChange>(&record).map(|e| e.is_some()), record.position, "notify");
    let record = append("review.retracted.v1").await;
    refused(decode::event::<ReviewChange>(&record).map(|e| e.is_some()), record.position, "review");
    let record = append("oncall.shift_traded.v1").await;
    refused(decode::roster(&record).map(|e| e.is_some()), record.position, "oncall");
    for kind in ["report.posted.v1", "reactor.effect_claimed.v1", "config.applied.v1"] {
        let record = append(kind).await;
        assert!(matches!(decode::Decoded::of(&record).unwrap(), decode::Decoded::Other), "{kind}");
        assert!(decode::roster(&record).unwrap().is_none(), "{kind}");
    }

    w.stop.cancel();

    // And services folding a shared log stop at it (`Marking` folds review
    // events), after the reports before it.
    let w = World::new();
    for n in 1..=3 {
        w.report(n).await;
    }
    let at = append_to(&w, "review.retracted.v1").await;
    w.report(4).await;
    let fanout = Fanout::new(w.log.clone());
    let runs: Vec<_> = w.shared_reactors(&fanout).into_iter().map(|r| tokio::spawn(r.run(w.stop.clone()))).collect();
    for run in runs {
        let outcome = tokio::time::timeout(std::time::Duration::from_secs(30), run).await.expect("it stops").unwrap();
        refused(outcome.map(|()| true), at, "a service");
    }
}

/// Appends one record of `kind` (an envelope's fields, nothing else) to a
/// stream no service owns; returns its position.
async fn append_to(w: &World, kind: &'static str) -> Position {
    let event = NewEvent {
        id: uuid::Uuid::new_v4(),
        kind: EventKind::new(kind).unwrap(),
        data: EventData::from_json(r#"{"incident":"INC-1","at":"2026-01-01T00:00:00Z","by":"x","schedule":"x"}"#)
            .unwrap(),
        metadata: Default::default(),
    };
    let stream = StreamId::new("elsewhere").unwrap();
    w.log.append(&stream, ExpectedVersion::Any, vec![event]).await.unwrap().last
}
