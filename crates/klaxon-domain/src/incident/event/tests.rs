//! The persisted event format: golden JSON for every kind, round trips and
//! decode errors.

use expect_test::{Expect, expect};
use proptest::prelude::*;

use super::*;
use crate::DecodeError;
use crate::envelope::testkit::{assert_every_kind, assert_goldens, assert_round_trips, round_trip};
use crate::ids::IncidentId;

fn actor(name: &str) -> ActorId {
    ActorId::new(name).unwrap()
}

fn event(change: Change) -> IncidentEvent {
    IncidentEvent {
        incident: IncidentId::from_number(42).unwrap(),
        at: "2026-03-01T12:34:56.789Z".parse().unwrap(),
        by: actor("alice"),
        change,
    }
}

/// One event of every kind, with its pinned JSON.
fn goldens() -> Vec<(IncidentEvent, Expect)> {
    vec![
        (
            event(Change::Reported(Reported {
                source: ReportSource::Alertmanager,
                reporter: actor("svc:alertmanager"),
                title: "Checkout is slow".into(),
                description: "p99 above 2s".into(),
                service: Some(ServiceName::new("payments-api").unwrap()),
                customers: BTreeSet::from([CustomerId::new("ACME Corp").unwrap()]),
                labels: BTreeMap::from([("alertname".into(), "HighLatency".into())]),
                dedup_key: Some(DedupKey::new("{}:{alertname=\"HighLatency\"}").unwrap()),
                started_at: Some("2026-03-01T12:30:00Z".parse().unwrap()),
                catalogued: Some(Catalogued { team: "payments".into(), tier: crate::catalog::Tier::MOST_CRITICAL }),
            })),
            expect![[r#"
                incident.reported.v1
                {
                  "at": "2026-03-01T12:34:56.789Z",
                  "by": "alice",
                  "catalogued": {
                    "team": "payments",
                    "tier": 1
                  },
                  "customers": [
                    "ACME Corp"
                  ],
                  "dedup_key": "{}:{alertname=\"HighLatency\"}",
                  "description": "p99 above 2s",
                  "incident": "INC-42",
                  "labels": {
                    "alertname": "HighLatency"
                  },
                  "reporter": "svc:alertmanager",
                  "service": "payments-api",
                  "source": "alertmanager",
                  "started_at": "2026-03-01T12:30:00Z",
                  "title": "Checkout is slow"
                }
            "#]],
        ),
        (
            event(Change::ReportMerged(ReportMerged {
                count: 2,
                source: ReportSource::HelpDesk,
                reporter: actor("desk"),
                title: "Customers cannot pay".into(),
                dedup_key: None,
            })),
            expect![[r#"
                incident.report_merged.v1
                {
                  "at": "2026-03-01T12:34:56.789Z",
                  "by": "alice",
                  "count": 2,
                  "dedup_key": null,
                  "incident": "INC-42",
                  "reporter": "desk",
                  "source": "help_desk",
                  "title": "Customers cannot pay"
                }
            "#]],
        ),
        (
            event(Change::Declared(Declared {
                severity: Severity::Sev1,
                catalogued: Some(Catalogued { team: "checkout".into(), tier: crate::catalog::Tier::new(2).unwrap() }),
            })),
            expect![[r#"
                incident.declared.v1
                {
                  "at": "2026-03-01T12:34:56.789Z",
                  "by": "alice",
                  "catalogued": {
                    "team": "checkout",
                    "tier": 2
                  },
                  "incident": "INC-42",
                  "severity": "sev1"
                }
            "#]],
        ),
        (
            event(Change::SeverityOverridden(SeverityOverridden {
                from: Some(Severity::Sev2),
                to: Severity::Sev1,
                reason: "CEO escalation".into(),
            })),
            expect![[r#"
                incident.severity_overridden.v1
                {
                  "at": "2026-03-01T12:34:56.789Z",
                  "by": "alice",
                  "from": "sev2",
                  "incident": "INC-42",
                  "reason": "CEO escalation",
                  "to": "sev1"
                }
            "#]],
        ),
        (
            event(Change::SeverityAssessed(SeverityAssessed {
                severity: Severity::Sev1,
                rule: Some("tier1-multi-customer".into()),
                reason: "Several customers hit on a tier-1 service".into(),
                reasons: vec!["service payments is tier 1".into()],
            })),
            expect![[r#"
                incident.severity_assessed.v1
                {
                  "at": "2026-03-01T12:34:56.789Z",
                  "by": "alice",
                  "incident": "INC-42",
                  "reason": "Several customers hit on a tier-1 service",
                  "reasons": [
                    "service payments is tier 1"
                  ],
                  "rule": "tier1-multi-customer",
                  "severity": "sev1"
                }
            "#]],
        ),
        (
            event(Change::CommanderAssigned(CommanderAssigned { commander: actor("bob"), previous: None })),
            expect![[r#"
                incident.commander_assigned.v1
                {
                  "at": "2026-03-01T12:34:56.789Z",
                  "by": "alice",
                  "commander": "bob",
                  "incident": "INC-42",
                  "previous": null
                }
            "#]],
        ),
        (
            event(Change::HandoffRequested(HandoffRequested { from: actor("bob"), to: actor("carol") })),
            expect![[r#"
                incident.handoff_requested.v1
                {
                  "at": "2026-03-01T12:34:56.789Z",
                  "by": "alice",
                  "from": "bob",
                  "incident": "INC-42",
                  "to": "carol"
                }
            "#]],
        ),
        (
            event(Change::HandoffAccepted(HandoffAccepted { from: actor("bob"), to: actor("carol") })),
            expect![[r#"
                incident.handoff_accepted.v1
                {
                  "at": "2026-03-01T12:34:56.789Z",
                  "by": "alice",
                  "from": "bob",
                  "incident": "INC-42",
                  "to": "carol"
                }
            "#]],
        ),
        (
            event(Change::HandoffDeclined(HandoffDeclined {
                from: actor("bob"),
                to: actor("carol"),
                reason: "off shift".into(),
            })),
            expect![[r#"
                incident.handoff_declined.v1
                {
                  "at": "2026-03-01T12:34:56.789Z",
                  "by": "alice",
                  "from": "bob",
                  "incident": "INC-42",
                  "reason": "off shift",
                  "to": "carol"
                }
            "#]],
        ),
        (
            event(Change::HandoffCancelled(HandoffCancelled {
                from: actor("bob"),
                to: actor("carol"),
                reason: "no answer".into(),
            })),
            expect![[r#"
                incident.handoff_cancelled.v1
                {
                  "at": "2026-03-01T12:34:56.789Z",
                  "by": "alice",
                  "from": "bob",
                  "incident": "INC-42",
                  "reason": "no answer",
                  "to": "carol"
                }
            "#]],
        ),
        (
            event(Change::RoleAssigned(RoleAssigned { role: IncidentRole::CommunicationsLead, person: actor("dave") })),
            expect![[r#"
                incident.role_assigned.v1
                {
                  "at": "2026-03-01T12:34:56.789Z",
                  "by": "alice",
                  "incident": "INC-42",
                  "person": "dave",
                  "role": "communications_lead"
                }
            "#]],
        ),
        (
            event(Change::StatusUpdatePosted(StatusUpdatePosted {
                audience: Audience::CompanyWide,
                text: "Payments degraded; next update 13:00 UTC.".into(),
            })),
            expect![[r#"
                incident.status_update_posted.v1
                {
                  "at": "2026-03-01T12:34:56.789Z",
                  "audience": "company_wide",
                  "by": "alice",
                  "incident": "INC-42",
                  "text": "Payments degraded; next update 13:00 UTC."
                }
            "#]],
        ),
        (
            event(Change::CustomerImpactRecorded(CustomerImpactRecorded {
                customers_affected: 40,
                customers: BTreeSet::from([CustomerId::new("ACME Corp").unwrap(), CustomerId::new("Globex").unwrap()]),
                multi_customer: true,
                summary: "Card payments fail".into(),
            })),
            expect![[r#"
                incident.customer_impact_recorded.v1
                {
                  "at": "2026-03-01T12:34:56.789Z",
                  "by": "alice",
                  "customers": [
                    "ACME Corp",
                    "Globex"
                  ],
                  "customers_affected": 40,
                  "incident": "INC-42",
                  "multi_customer": true,
                  "summary": "Card payments fail"
                }
            "#]],
        ),
        (
            event(Change::Mitigated(Mitigated { summary: "Rolled back".into() })),
            expect![[r#"
            incident.mitigated.v1
            {
              "at": "2026-03-01T12:34:56.789Z",
              "by": "alice",
              "incident": "INC-42",
              "summary": "Rolled back"
            }
        "#]],
        ),
        (
            event(Change::Resolved(Resolved { summary: "Fixed the query".into() })),
            expect![[r#"
            incident.resolved.v1
            {
              "at": "2026-03-01T12:34:56.789Z",
              "by": "alice",
              "incident": "INC-42",
              "summary": "Fixed the query"
            }
        "#]],
        ),
        (
            event(Change::Reopened(Reopened { reason: "Errors are back".into() })),
            expect![[r#"
            incident.reopened.v1
            {
              "at": "2026-03-01T12:34:56.789Z",
              "by": "alice",
              "incident": "INC-42",
              "reason": "Errors are back"
            }
        "#]],
        ),
        (
            event(Change::ResolutionValidated(ResolutionValidated { note: "No errors for 24 h".into() })),
            expect![[r#"
                incident.resolution_validated.v1
                {
                  "at": "2026-03-01T12:34:56.789Z",
                  "by": "alice",
                  "incident": "INC-42",
                  "note": "No errors for 24 h"
                }
            "#]],
        ),
        (
            event(Change::ParticipantJoined(ParticipantJoined {
                participant: actor("erin"),
                role: Some(IncidentRole::SubjectMatterExpert),
            })),
            expect![[r#"
                incident.participant_joined.v1
                {
                  "at": "2026-03-01T12:34:56.789Z",
                  "by": "alice",
                  "incident": "INC-42",
                  "participant": "erin",
                  "role": "subject_matter_expert"
                }
            "#]],
        ),
        (
            event(Change::ParticipantLeft(ParticipantLeft { participant: actor("erin") })),
            expect![[r#"
            incident.participant_left.v1
            {
              "at": "2026-03-01T12:34:56.789Z",
              "by": "alice",
              "incident": "INC-42",
              "participant": "erin"
            }
        "#]],
        ),
        (
            event(Change::MarkedNoise(MarkedNoise { reason: "Synthetic probe misfired".into() })),
            expect![[r#"
                incident.marked_noise.v1
                {
                  "at": "2026-03-01T12:34:56.789Z",
                  "by": "alice",
                  "incident": "INC-42",
                  "reason": "Synthetic probe misfired"
                }
            "#]],
        ),
        (
            event(Change::ResponderRequested(ResponderRequested {
                target: PageTarget::Schedule("db-primary".into()),
                reason: "Replication is lagging".into(),
            })),
            expect![[r#"
                incident.responder_requested.v1
                {
                  "at": "2026-03-01T12:34:56.789Z",
                  "by": "alice",
                  "incident": "INC-42",
                  "reason": "Replication is lagging",
                  "target": {
                    "schedule": "db-primary"
                  }
                }
            "#]],
        ),
        (
            event(Change::RoleRemoved(RoleRemoved { role: IncidentRole::Scribe, person: actor("erin") })),
            expect![[r#"
                incident.role_removed.v1
                {
                  "at": "2026-03-01T12:34:56.789Z",
                  "by": "alice",
                  "incident": "INC-42",
                  "person": "erin",
                  "role": "scribe"
                }
            "#]],
        ),
    ]
}

#[test]
fn every_kind_has_a_golden_in_order() {
    assert_every_kind(&goldens());
}

#[test]
fn golden_json() {
    assert_goldens(&goldens(), None);
}

#[test]
fn every_kind_round_trips() {
    assert_round_trips(&goldens());
}

#[test]
fn absent_optional_fields_read_as_none() {
    let data = r#"{"incident":"INC-1","at":"2026-03-01T12:00:00Z","by":"bob","commander":"bob"}"#;
    let event = IncidentEvent::from_json("incident.commander_assigned.v1", data).unwrap();
    assert_eq!(event.change, Change::CommanderAssigned(CommanderAssigned { commander: actor("bob"), previous: None }));
}

/// Reports and declarations written before intake recorded the catalog's
/// team and tier still decode (as `None`: the catalog in effect applies),
/// and a recorded tier outside 1..=3 is refused by name.
#[test]
fn reports_and_declarations_without_the_catalog_decode() {
    let data = r#"{"incident":"INC-1","at":"2026-03-01T12:00:00Z","by":"bob","source":"api","reporter":"bob","title":"t","description":"","service":"payments","customers":[],"labels":{},"dedup_key":null,"started_at":null}"#;
    let Change::Reported(reported) = IncidentEvent::from_json("incident.reported.v1", data).unwrap().change else {
        panic!("a report")
    };
    assert_eq!(reported.catalogued, None);
    let data = r#"{"incident":"INC-1","at":"2026-03-01T12:00:00Z","by":"bob","severity":"sev2"}"#;
    let declared = IncidentEvent::from_json("incident.declared.v1", data).unwrap().change;
    assert_eq!(declared, Change::Declared(Declared { severity: Severity::Sev2, catalogued: None }));
    let data = r#"{"incident":"INC-1","at":"2026-03-01T12:00:00Z","by":"bob","severity":"sev2","catalogued":{"team":"a","tier":4}}"#;
    let error = IncidentEvent::from_json("incident.declared.v1", data).unwrap_err().to_string();
    assert!(error.contains("incident.declared.v1") && error.contains("4 is not a tier"), "{error}");
}

#[test]
fn decode_errors_name_the_kind() {
    let ok = r#""incident":"INC-1","at":"2026-03-01T12:00:00Z","by":"bob""#;
    let cases = [
        ("incident.exploded.v1", format!("{{{ok}}}")),
        ("incident.declared.v2", format!("{{{ok},\"severity\":\"sev1\"}}")),
        ("incident.declared.v1", "not json".to_owned()),
        ("incident.declared.v1", "[1]".to_owned()),
        ("incident.declared.v1", format!("{{{ok}}}")),
        ("incident.declared.v1", format!("{{{ok},\"severity\":\"sev9\"}}")),
        ("incident.declared.v1", format!("{{{ok},\"severity\":\"sev1\",\"extra\":1}}")),
        ("incident.declared.v1", r#"{"at":"2026-03-01T12:00:00Z","by":"bob","severity":"sev1"}"#.to_owned()),
        (
            "incident.declared.v1",
            r#"{"incident":"INC-0","at":"2026-03-01T12:00:00Z","by":"bob","severity":"sev1"}"#.to_owned(),
        ),
        ("incident.declared.v1", r#"{"incident":"INC-1","at":"yesterday","by":"bob","severity":"sev1"}"#.to_owned()),
        (
            "incident.declared.v1",
            r#"{"incident":"INC-1","at":"2026-03-01T12:00:00Z","by":"b b","severity":"sev1"}"#.to_owned(),
        ),
        // The envelope's fields may come anywhere among the change's.
        (
            "incident.declared.v1",
            r#"{"severity":"sev2","by":"bob","incident":"INC-3","at":"2026-03-01T12:00:00Z"}"#.to_owned(),
        ),
        ("incident.declared.v1", format!("{{{ok},\"severity\":\"sev1\",\"at\":\"2026-03-02T12:00:00Z\"}}")),
        ("incident.declared.v1", format!("{{{ok},\"severity\":\"sev1\",\"severity\":\"sev2\"}}")),
        ("incident.declared.v1", format!("{{{ok},\"severity\":\"sev1\"}} trailing")),
    ];
    let got: Vec<String> = cases
        .iter()
        .map(|(kind, data)| match IncidentEvent::from_json(kind, data) {
            Ok(event) => format!("ok {event:?}"),
            Err(error @ DecodeError::UnknownKind { .. }) => format!("unknown: {error}"),
            Err(error @ DecodeError::Malformed { .. }) => format!("malformed: {error}"),
        })
        .collect();
    expect![[r#"
        [
            "unknown: unknown event kind \"incident.exploded.v1\"",
            "unknown: unknown event kind \"incident.declared.v2\"",
            "malformed: malformed incident.declared.v1 event: expected ident at line 1 column 2",
            "malformed: malformed incident.declared.v1 event: invalid type: sequence, expected a JSON object at line 1 column 0",
            "malformed: malformed incident.declared.v1 event: missing field `severity` at line 1 column 59",
            "malformed: malformed incident.declared.v1 event: unknown variant `sev9`, expected one of `sev1`, `sev2`, `sev3`, `sev4` at line 1 column 76",
            "malformed: malformed incident.declared.v1 event: unknown field `extra`, expected `severity` or `catalogued` at line 1 column 84",
            "malformed: malformed incident.declared.v1 event: missing field `incident` at line 1 column 58",
            "malformed: malformed incident.declared.v1 event: invalid incident_id: \"INC-0\": the number must be at least 1, without leading zeros at line 1 column 19",
            "malformed: malformed incident.declared.v1 event: input contains invalid characters at line 1 column 36",
            "malformed: malformed incident.declared.v1 event: invalid actor_id: \"b b\": character ' ' is not allowed (use A-Z a-z 0-9 _ . @ : -) at line 1 column 58",
            "ok IncidentEvent { incident: IncidentId(3), at: 2026-03-01T12:00:00Z, by: ActorId(\"bob\"), change: Declared(Declared { severity: Sev2, catalogued: None }) }",
            "malformed: malformed incident.declared.v1 event: duplicate field `at` at line 1 column 81",
            "malformed: malformed incident.declared.v1 event: duplicate field `severity` at line 1 column 87",
            "malformed: malformed incident.declared.v1 event: trailing characters at line 1 column 79",
        ]
    "#]].assert_debug_eq(&got);
}

fn text() -> impl Strategy<Value = String> {
    any::<String>()
}

fn actor_id() -> impl Strategy<Value = ActorId> {
    "[A-Za-z0-9_.@:-]{1,128}".prop_map(|s| ActorId::new(s).unwrap())
}

fn customer() -> impl Strategy<Value = CustomerId> {
    "[^\\p{Cc}\\s]([^\\p{Cc}]{0,20}[^\\p{Cc}\\s])?".prop_map(|s| CustomerId::new(s).unwrap())
}

fn timestamp() -> impl Strategy<Value = DateTime<Utc>> {
    // Years 1970 to 2200, any nanosecond, no leap seconds.
    (0i64..7_258_118_400, 0u32..1_000_000_000).prop_map(|(secs, nanos)| DateTime::from_timestamp(secs, nanos).unwrap())
}

fn change() -> impl Strategy<Value = Change> {
    prop_oneof![
        (
            actor_id(),
            text(),
            text(),
            proptest::collection::btree_set(customer(), 0..4),
            proptest::collection::btree_map(text(), text(), 0..4),
            proptest::option::of("[^\\p{Cc}]{1,40}".prop_map(|s| DedupKey::new(s).unwrap())),
            proptest::option::of(timestamp()),
        )
            .prop_map(|(reporter, title, description, customers, labels, dedup_key, started_at)| {
                Change::Reported(Reported {
                    source: ReportSource::PagerDuty,
                    reporter,
                    title,
                    description,
                    service: None,
                    customers,
                    labels,
                    dedup_key,
                    started_at,
                    catalogued: None,
                })
            }),
        (any::<u32>(), actor_id(), text()).prop_map(|(count, reporter, title)| {
            Change::ReportMerged(ReportMerged { count, source: ReportSource::Api, reporter, title, dedup_key: None })
        }),
        text().prop_map(|reason| Change::SeverityOverridden(SeverityOverridden {
            from: None,
            to: Severity::Sev3,
            reason
        })),
        (actor_id(), actor_id(), text()).prop_map(|(from, to, reason)| Change::HandoffDeclined(HandoffDeclined {
            from,
            to,
            reason
        })),
        text().prop_map(|text| Change::StatusUpdatePosted(StatusUpdatePosted { audience: Audience::Internal, text })),
        (any::<u32>(), proptest::collection::btree_set(customer(), 0..4), any::<bool>(), text()).prop_map(
            |(customers_affected, customers, multi_customer, summary)| {
                Change::CustomerImpactRecorded(CustomerImpactRecorded {
                    customers_affected,
                    customers,
                    multi_customer,
                    summary,
                })
            }
        ),
        text().prop_map(|summary| Change::Mitigated(Mitigated { summary })),
        text().prop_map(|summary| Change::Resolved(Resolved { summary })),
        text().prop_map(|reason| Change::Reopened(Reopened { reason })),
        text().prop_map(|note| Change::ResolutionValidated(ResolutionValidated { note })),
        text().prop_map(|reason| Change::MarkedNoise(MarkedNoise { reason })),
        (actor_id(), text()).prop_map(|(person, reason)| Change::ResponderRequested(ResponderRequested {
            target: PageTarget::Person(person),
            reason
        })),
        actor_id().prop_map(|person| Change::RoleRemoved(RoleRemoved { role: IncidentRole::Scribe, person })),
    ]
}

proptest! {
    #[test]
    fn arbitrary_events_round_trip(
        number in 1u64..,
        at in timestamp(),
        by in actor_id(),
        change in change(),
    ) {
        let event = IncidentEvent { incident: IncidentId::from_number(number).unwrap(), at, by, change };
        prop_assert_eq!(round_trip(&event), event);
    }
}

#[test]
fn every_kind_has_a_summary() {
    let summaries: Vec<String> = goldens().iter().map(|(event, _)| event.summary()).collect();
    expect![[r#"
        [
            "svc:alertmanager reported INC-42 on payments-api via alertmanager: Checkout is slow",
            "desk reported it again via help_desk (report 2): Customers cannot pay",
            "alice declared INC-42 SEV1",
            "alice changed the severity from SEV2 to SEV1: CEO escalation",
            "alice assessed SEV1 (rule tier1-multi-customer): Several customers hit on a tier-1 service",
            "alice made bob incident commander",
            "bob asked carol to take over as commander",
            "carol accepted the handoff from bob and is now commander",
            "carol declined the handoff from bob: off shift",
            "alice cancelled the handoff from bob to carol: no answer",
            "alice made dave communications lead",
            "alice posted a company-wide update: Payments degraded; next update 13:00 UTC.",
            "alice recorded impact on 40 customers, multi-customer: Card payments fail",
            "alice mitigated INC-42: Rolled back",
            "alice resolved INC-42: Fixed the query",
            "alice reopened INC-42: Errors are back",
            "alice validated the resolution and closed INC-42: No errors for 24 h",
            "erin joined the bridge as subject matter expert",
            "erin left the bridge",
            "alice marked INC-42 as noise: Synthetic probe misfired",
            "alice paged the on-call of db-primary: Replication is lagging",
            "alice removed erin as scribe",
        ]
    "#]]
    .assert_debug_eq(&summaries);
}

#[test]
fn debug_names_the_family() {
    let declared = event(Change::Declared(Declared { severity: Severity::Sev1, catalogued: None }));
    assert!(format!("{declared:?}").starts_with("IncidentEvent { incident: "), "{declared:?}");
    let page = crate::paging::PageEvent::delivered(
        crate::paging::PageId::new(declared.incident, 1).unwrap(),
        "slack",
        1,
        declared.at,
    );
    assert!(format!("{page:?}").starts_with("PageEvent { incident: "), "{page:?}");
}
