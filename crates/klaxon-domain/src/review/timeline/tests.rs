//! Timelines and "as of" states of scripted incidents.

use expect_test::expect;
use proptest::prelude::*;

use super::*;
use crate::ids::Severity;
use crate::incident::{Command, decide};
use crate::review::ReviewCommand;
use crate::review::testkit::{Script, actor, assign, at, declare, inc, mitigate, report, resolve};

/// INC-7 with other incidents' records in between (gaps in positions).
fn script() -> Script {
    let mut s = Script::new(7, 100);
    s.cmd(0, "svc:alertmanager", report("Checkout is slow", Some("payments-api"), Some(-4)))
        .skip(3)
        .cmd(2, "alice", declare(Severity::Sev1))
        .paged(2, "ana", Some(0))
        .delivered(2, 1, "slack")
        .ack(5, "ana", 1)
        .skip(1)
        .cmd(7, "alice", assign("bob"))
        .cmd(30, "bob", mitigate())
        .cmd(55, "bob", resolve())
        .review(60, "carol", ReviewCommand::AddActionItem { title: "Add an index".into(), owner: None, due: None });
    s
}

fn lines(entries: &[TimelineEntry]) -> String {
    entries
        .iter()
        .map(|e| {
            format!(
                "{} {} {:<8} {:<16} {} | {}\n",
                e.position,
                e.at.format("%H:%M"),
                e.source.as_str(),
                e.by.as_str(),
                e.kind,
                e.summary
            )
        })
        .collect()
}

#[test]
fn the_timeline_interleaves_the_three_streams_in_log_order() {
    let s = script();
    let entries = timeline(s.triples()).unwrap();
    expect![[r#"
        100 09:00 incident svc:alertmanager incident.reported.v1 | svc:alertmanager reported INC-7 on payments-api via alertmanager: Checkout is slow
        104 09:02 incident alice            incident.declared.v1 | alice declared INC-7 SEV1
        105 09:02 page     klaxon-paging    page.responder_paged.v1 | paged ana (INC-7-P1, level 0, round 0): severity
        106 09:02 page     klaxon-paging    page.delivered.v1 | delivered INC-7-P1 via slack in 1 attempt
        107 09:05 page     ana              page.acknowledged.v1 | ana acknowledged INC-7-P1
        109 09:07 incident alice            incident.commander_assigned.v1 | alice made bob incident commander
        110 09:30 incident bob              incident.mitigated.v1 | bob mitigated INC-7: rolled back the deploy
        111 09:55 incident bob              incident.resolved.v1 | bob resolved INC-7: fixed the query plan
        112 09:55 review   klaxon-review    review.opened.v1 | klaxon-review opened the post-incident review of INC-7
        113 10:00 review   carol            review.action_item_added.v1 | carol added action item INC-7-A1: Add an index
    "#]].assert_eq(&lines(&entries));
    let mut shuffled = s.triples();
    shuffled.reverse();
    assert_eq!(timeline(shuffled).unwrap(), entries, "records may come stream by stream");
    assert_eq!(timeline([]).unwrap(), []);
}

#[test]
fn a_record_that_cannot_be_read_fails_the_timeline() {
    let s = script();
    let mut records = s.triples();
    records.push((500, "page.teleported.v1", "{}"));
    expect![[r#"unknown event kind "page.teleported.v1""#]].assert_eq(&timeline(records).unwrap_err().to_string());
    let mut records = s.triples();
    records.push((500, "review.published.v1", "{}"));
    expect!["malformed review.published.v1 event: missing field `incident` at line 1 column 2"]
        .assert_eq(&timeline(records).unwrap_err().to_string());
}

#[test]
fn as_of_a_position_or_a_time() {
    let s = script();
    let records = s.triples();
    let status =
        |state: Option<Incident>| state.map_or("none".to_owned(), |i| format!("{} v{}", i.status(), i.version()));
    let by_position: Vec<String> = [0, 99, 100, 103, 104, 106, 107, 109, 110, 111, 112, 1_000]
        .iter()
        .map(|p| format!("{p}: {}", status(as_of_position(records.clone(), *p).unwrap())))
        .collect();
    expect![[r#"
        [
            "0: none",
            "99: none",
            "100: reported v1",
            "103: reported v1",
            "104: declared v2",
            "106: declared v2",
            "107: declared v2",
            "109: declared v3",
            "110: mitigated v4",
            "111: resolved v5",
            "112: resolved v5",
            "1000: resolved v5",
        ]
    "#]]
    .assert_debug_eq(&by_position);
    let by_time: Vec<String> = [-1, 0, 1, 2, 6, 7, 29, 30, 54, 55, 1_000]
        .iter()
        .map(|m| format!("{m}: {}", status(as_of_time(records.clone(), at(*m)).unwrap())))
        .collect();
    expect![[r#"
        [
            "-1: none",
            "0: reported v1",
            "1: reported v1",
            "2: declared v2",
            "6: declared v2",
            "7: declared v3",
            "29: declared v3",
            "30: mitigated v4",
            "54: mitigated v4",
            "55: resolved v5",
            "1000: resolved v5",
        ]
    "#]]
    .assert_debug_eq(&by_time);
    let known = as_of(records.clone(), IncidentAsOf::Time(at(10))).unwrap().unwrap();
    let positions =
        |moment| timeline_as_of(records.clone(), moment).unwrap().iter().map(|e| e.position).collect::<Vec<_>>();
    assert_eq!(positions(IncidentAsOf::Position(106)), [100, 104, 105, 106]);
    assert_eq!(positions(IncidentAsOf::Time(at(5))), [100, 104, 105, 106, 107]);
    assert_eq!(positions(IncidentAsOf::Position(99)), Vec::<u64>::new());
    assert_eq!((known.commander(), known.mitigated_at()), (Some(&actor("bob")), None));
}

#[test]
fn as_of_a_time_stops_at_the_first_later_record() {
    // The third event was stamped earlier than the second (clock skew): as
    // of minute 7, only the report is known, never report + mitigation
    // without the declaration.
    let mut state = None;
    let mut records = Vec::new();
    let steps = [(0, report("x", None, None)), (10, declare(Severity::Sev2)), (5, mitigate())];
    for (i, (minute, command)) in steps.into_iter().enumerate() {
        let events = decide(state.as_ref(), &command, &inc(7), &actor("alice"), at(minute)).unwrap();
        for event in events {
            state = evolve(state, &event);
            records.push((i as u64 + 1, event.kind(), event.to_json().to_string()));
        }
    }
    let triples: Vec<(u64, &str, &str)> = records.iter().map(|(p, k, d)| (*p, *k, d.as_str())).collect();
    let version = |minute| as_of_time(triples.clone(), at(minute)).unwrap().map(|i| i.version());
    assert_eq!((version(7), version(10), version(11)), (Some(1), Some(3), Some(3)));
}

/// A command from a small alphabet (as in the incident tests), sent by one
/// of three people.
fn any_step() -> impl Strategy<Value = (&'static str, Command)> {
    let who = prop_oneof![Just("alice"), Just("bob"), Just("carol")];
    let command = prop_oneof![
        Just(report("Checkout is slow", Some("payments-api"), Some(-3))),
        prop::sample::select(Severity::ALL.to_vec()).prop_map(declare),
        prop::sample::select(Severity::ALL.to_vec())
            .prop_map(|severity| Command::OverrideSeverity { severity, reason: "new facts".into() }),
        Just(assign("alice")),
        Just(assign("bob")),
        Just(Command::RequestHandoff { to: actor("bob") }),
        Just(Command::AcceptHandoff),
        Just(Command::PostUpdate { audience: crate::ids::Audience::Executive, text: "update".into() }),
        Just(mitigate()),
        Just(resolve()),
        Just(Command::Reopen { reason: "back".into() }),
        Just(Command::ValidateResolution { note: "ok".into() }),
        Just(Command::MarkNoise { reason: "test".into() }),
    ];
    (who, command)
}

proptest! {
    /// For random incidents, with page records and other incidents' gaps in
    /// between, the state as of each event's position (and time) equals the
    /// live fold captured right after that event.
    #[test]
    fn as_of_equals_the_live_state_after_each_event(
        steps in prop::collection::vec((any_step(), 1u64..4, any::<bool>()), 1..40),
    ) {
        let mut live: Option<Incident> = None;
        let mut records: Vec<(u64, &'static str, String)> = Vec::new();
        let mut snapshots = Vec::new();
        let mut position = 0;
        for (i, ((who, command), gap, page)) in steps.iter().enumerate() {
            position += gap;
            if *page && live.is_some() {
                let event = PageEvent::delivered(crate::paging::PageId::new(inc(7), 1).unwrap(), "slack", 1, at(i as i64));
                records.push((position, event.kind(), event.to_json().to_string()));
                position += 1;
            }
            let Ok(events) = decide(live.as_ref(), command, &inc(7), &actor(who), at(i as i64)) else { continue };
            for event in events {
                live = evolve(live, &event);
                records.push((position, event.kind(), event.to_json().to_string()));
                snapshots.push((position, event.at, live.clone()));
            }
        }
        let triples: Vec<(u64, &str, &str)> = records.iter().map(|(p, k, d)| (*p, *k, d.as_str())).collect();
        let mut before = None;
        for (position, time, snapshot) in snapshots {
            prop_assert_eq!(&as_of_position(triples.clone(), position - 1).unwrap(), &before);
            prop_assert_eq!(&as_of_position(triples.clone(), position).unwrap(), &snapshot);
            prop_assert_eq!(&as_of_time(triples.clone(), time).unwrap(), &snapshot);
            before = snapshot;
        }
        prop_assert_eq!(as_of_position(triples.clone(), u64::MAX).unwrap(), live);
    }
}
