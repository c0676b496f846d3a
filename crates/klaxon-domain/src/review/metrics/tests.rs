//! Metrics of scripted incidents, against values computed by hand (minutes
//! from the script's origin are in the comments).

use super::*;
use crate::ids::Severity;
use crate::incident::Command;
use crate::review::testkit::{Script, actor, assign, declare, mitigate, noise, reopen, report, resolve};
use crate::review::trends::human_optional;

/// The metrics in one line.
fn line(m: &IncidentMetrics) -> String {
    let b = m.slo_breaches;
    format!(
        "detect={} ack={} assign={} mitigate={} resolve={} pages={} escalations={} handoffs={} slo={}/{}/{} applicable={} noise={}",
        human_optional(m.time_to_detect),
        human_optional(m.time_to_acknowledge),
        human_optional(m.time_to_assign),
        human_optional(m.time_to_mitigate),
        human_optional(m.time_to_resolve),
        m.pages,
        m.escalations,
        m.handoffs,
        b.ack,
        b.assign,
        b.update_cadence,
        m.slo_applicable(),
        m.noise,
    )
}

fn sev1_with_escalation_and_handoff() -> Script {
    let mut s = Script::new(1, 1);
    s.cmd(0, "svc:alertmanager", report("Checkout is slow", Some("payments-api"), Some(-5))) // started at -5: detect 5m
        .cmd(1, "alice", declare(Severity::Sev1)) // declared at 1
        .paged(1, "ana", Some(0)) // first page at 1
        .escalated(6, 0, Some(1)) // one escalation
        .paged(6, "ben", Some(1))
        .ack(8, "ben", 2) // ack at 8: 7m
        .cmd(10, "alice", assign("bob")) // from min(1, 1): 9m
        .cmd(12, "bob", Command::RequestHandoff { to: actor("carol") })
        .cmd(13, "carol", Command::AcceptHandoff) // one handoff
        .cmd(30, "carol", mitigate()) // 29m after declaration
        .cmd(60, "carol", resolve()); // 59m after declaration
    s
}

fn paged_before_declared() -> Script {
    let mut s = Script::new(2, 1);
    s.cmd(0, "svc:alertmanager", report("Errors", Some("search"), None)) // no start: detect -
        .assessed(2, Severity::Sev1)
        .paged(2, "ana", Some(0)) // reached a paging severity at 2
        .escalated(11, 0, None) // an exhaustion is no escalation
        .breached(12, crate::paging::SloKind::Ack)
        .paged(12, "mgr", None) // duty-manager pages count
        .cmd(15, "alice", declare(Severity::Sev1)) // declared at 15
        .ack(17, "mgr", 2) // 17 - 2 = 15m
        .cmd(20, "alice", assign("bob")) // from min(15, 2): 18m
        .cmd(45, "bob", resolve()); // no mitigation: resolution counts, 30m; resolve 30m
    s
}

fn reopened() -> Script {
    let mut s = Script::new(3, 1);
    s.cmd(0, "svc:alertmanager", report("Queue backlog", None, Some(-2))) // detect 2m
        .cmd(1, "alice", declare(Severity::Sev2)) // declared at 1, never paged
        .cmd(3, "alice", assign("alice")) // 2m
        .cmd(10, "alice", mitigate()) // first mitigation: 9m
        .cmd(20, "alice", resolve())
        .cmd(30, "alice", reopen()) // the resolution no longer stands
        .cmd(40, "alice", mitigate()); // a later mitigation changes nothing
    s
}

fn reopened_and_resolved_again() -> Script {
    let mut s = reopened();
    s.cmd(50, "alice", resolve()); // the standing resolution: 49m
    s
}

fn noise_with_skewed_start() -> Script {
    let mut s = Script::new(4, 1);
    s.cmd(0, "svc:alertmanager", report("Probe failed", None, Some(3))) // starts after its report: 0s
        .cmd(5, "alice", noise());
    s
}

fn closed_with_declined_handoff_and_cadence_breach() -> Script {
    let mut s = Script::new(5, 1);
    s.cmd(0, "desk", report("Invoices wrong", Some("billing"), None))
        .cmd(4, "alice", declare(Severity::Sev2)) // declared at 4
        .cmd(5, "alice", assign("alice")) // 1m
        .cmd(6, "alice", Command::RequestHandoff { to: actor("bob") })
        .cmd(7, "bob", Command::DeclineHandoff { reason: "off shift".into() }) // no handoff
        .breached(40, crate::paging::SloKind::UpdateCadence) // an SLO applied without a page
        .cmd(64, "alice", resolve()) // 60m, and the mitigation too
        .cmd(90, "alice", Command::ValidateResolution { note: "ok".into() }); // closed: still resolved at 64
    s
}

fn role_notice_on_an_unpaged_incident() -> Script {
    let mut s = Script::new(7, 1);
    s.cmd(0, "desk", report("Reports lag", Some("billing"), None))
        .cmd(2, "alice", declare(Severity::Sev3)) // declared at 2, never paged
        .cmd(3, "alice", assign("alice")) // 1m
        .cmd(4, "alice", Command::AssignRole { role: crate::ids::IncidentRole::Scribe, person: actor("dave") })
        .noticed(4, "dave", 1) // a notice: no page, no start of the time to acknowledge
        .ack(5, "dave", 1) // an older log's acknowledgement of it: of no page
        .cmd(20, "alice", resolve());
    s
}

fn declared_never_assigned() -> Script {
    let mut s = Script::new(6, 1);
    s.cmd(0, "svc:alertmanager", report("Disk full", Some("db"), Some(0))) // detect 0s
        .cmd(2, "alice", declare(Severity::Sev1))
        .paged(2, "ana", Some(0))
        .breached(17, crate::paging::SloKind::Assign)
        .breached(17, crate::paging::SloKind::Ack)
        .paged(17, "mgr", None);
    s
}

#[test]
fn scripted_incidents() {
    type Case = (&'static str, fn() -> Script, &'static str);
    let cases: [Case; 8] = [
        (
            "sev1 with escalation and handoff",
            sev1_with_escalation_and_handoff,
            "detect=5m 00s ack=7m 00s assign=9m 00s mitigate=29m 00s resolve=59m 00s pages=2 escalations=1 handoffs=1 slo=0/0/0 applicable=true noise=false",
        ),
        (
            "paged before declared",
            paged_before_declared,
            "detect=- ack=15m 00s assign=18m 00s mitigate=30m 00s resolve=30m 00s pages=2 escalations=0 handoffs=0 slo=1/0/0 applicable=true noise=false",
        ),
        (
            "reopened",
            reopened,
            "detect=2m 00s ack=- assign=2m 00s mitigate=9m 00s resolve=- pages=0 escalations=0 handoffs=0 slo=0/0/0 applicable=false noise=false",
        ),
        (
            "reopened and resolved again",
            reopened_and_resolved_again,
            "detect=2m 00s ack=- assign=2m 00s mitigate=9m 00s resolve=49m 00s pages=0 escalations=0 handoffs=0 slo=0/0/0 applicable=false noise=false",
        ),
        (
            "noise with a start after the report",
            noise_with_skewed_start,
            "detect=0s ack=- assign=- mitigate=- resolve=- pages=0 escalations=0 handoffs=0 slo=0/0/0 applicable=false noise=true",
        ),
        (
            "closed, declined handoff, cadence breach",
            closed_with_declined_handoff_and_cadence_breach,
            "detect=- ack=- assign=1m 00s mitigate=1h 00m 00s resolve=1h 00m 00s pages=0 escalations=0 handoffs=0 slo=0/0/1 applicable=true noise=false",
        ),
        (
            "a role notice on an unpaged incident",
            role_notice_on_an_unpaged_incident,
            "detect=- ack=- assign=1m 00s mitigate=18m 00s resolve=18m 00s pages=0 escalations=0 handoffs=0 slo=0/0/0 applicable=false noise=false",
        ),
        (
            "declared, never assigned",
            declared_never_assigned,
            "detect=0s ack=- assign=- mitigate=- resolve=- pages=2 escalations=0 handoffs=0 slo=1/1/0 applicable=true noise=false",
        ),
    ];
    for (name, script, expected) in cases {
        let s = script();
        let metrics = IncidentMetrics::compute(&s.incident_events, &s.page_events);
        assert_eq!(line(&metrics), expected, "{name}");
        // The trend summary, folded one event at a time (the families in
        // another order), keeps the same facts without the events.
        let mut summary = crate::review::TrendSummary::default();
        for event in &s.page_events {
            summary.page(event);
        }
        let mut state = None;
        for event in &s.incident_events {
            state = crate::incident::evolve(state, event);
            summary.incident(event, state.as_ref().expect("the incident exists after its report"));
        }
        let catalog = crate::catalog::ServiceCatalog::default();
        let facts = crate::review::IncidentFacts::new(s.incident(), metrics, &catalog);
        assert_eq!(summary.facts(s.incident, &catalog), Some(facts), "{name}");
    }
}

#[test]
fn no_events_measure_nothing() {
    assert_eq!(IncidentMetrics::compute(&[], &[]), IncidentMetrics::default());
    assert!(!IncidentMetrics::default().slo_applicable());
}

#[test]
fn json_uses_whole_seconds() {
    let s = sev1_with_escalation_and_handoff();
    let metrics = IncidentMetrics::compute(&s.incident_events, &s.page_events);
    expect_test::expect![[r#"
        {
          "time_to_detect_seconds": 300,
          "time_to_acknowledge_seconds": 420,
          "time_to_assign_seconds": 540,
          "time_to_mitigate_seconds": 1740,
          "time_to_resolve_seconds": 3540,
          "escalations": 1,
          "handoffs": 1,
          "slo_breaches": {
            "ack": 0,
            "assign": 0,
            "update_cadence": 0,
            "resolve": 0
          },
          "pages": 2,
          "noise": false,
          "pulled_in_pages": 0
        }"#]]
    .assert_eq(&serde_json::to_string_pretty(&metrics).unwrap());
}
