//! The persisted page event format: golden JSON for every kind, round trips,
//! decode errors, and page ids.

use expect_test::{Expect, expect};

use super::*;
use crate::envelope::testkit::{assert_every_kind, assert_goldens, assert_round_trips};

fn actor(name: &str) -> ActorId {
    ActorId::new(name).unwrap()
}

fn page(n: u32) -> PageId {
    PageId::new(IncidentId::from_number(7).unwrap(), n).unwrap()
}

fn event(by: &str, change: PageChange) -> PageEvent {
    PageEvent {
        incident: IncidentId::from_number(7).unwrap(),
        at: "2026-03-02T09:15:00Z".parse().unwrap(),
        by: actor(by),
        change,
    }
}

/// One event of every kind (two where a field may be null), with its
/// pinned JSON.
fn goldens() -> Vec<(PageEvent, Expect)> {
    let policy = serde_json::json!({ "name": "payments", "repeat": 1, "levels": [
        { "timeout_minutes": 5, "targets": [ { "schedule": "payments-primary" }, { "person": "ana" } ] },
        { "timeout_seconds": 90, "targets": [ { "person": "erin" } ] } ] });
    vec![
        (
            event(
                PAGING_ACTOR,
                PageChange::ResponderPaged(ResponderPaged {
                    page: page(1),
                    responder: actor("ana"),
                    level: Some(0),
                    round: 0,
                    reason: PageReason::Severity,
                    deadline: Some("2026-03-02T09:20:00Z".parse().unwrap()),
                    request: None,
                    policy: Some(serde_json::from_value(policy).unwrap()),
                }),
            ),
            expect![[r#"
                page.responder_paged.v1
                {
                  "at": "2026-03-02T09:15:00Z",
                  "by": "klaxon-paging",
                  "deadline": "2026-03-02T09:20:00Z",
                  "incident": "INC-7",
                  "level": 0,
                  "page": "INC-7-P1",
                  "policy": {
                    "levels": [
                      {
                        "targets": [
                          {
                            "schedule": "payments-primary"
                          },
                          {
                            "person": "ana"
                          }
                        ],
                        "timeout_minutes": 5
                      },
                      {
                        "targets": [
                          {
                            "person": "erin"
                          }
                        ],
                        "timeout_seconds": 90
                      }
                    ],
                    "name": "payments",
                    "repeat": 1
                  },
                  "reason": "severity",
                  "responder": "ana",
                  "round": 0
                }
                paged ana (INC-7-P1, level 0, round 0): severity
            "#]],
        ),
        (
            event(
                PAGING_ACTOR,
                PageChange::ResponderPaged(ResponderPaged {
                    page: page(3),
                    responder: actor("ana"),
                    level: Some(1),
                    round: 0,
                    reason: PageReason::Escalation,
                    deadline: Some("2026-03-02T09:25:00Z".parse().unwrap()),
                    request: None,
                    policy: None,
                }),
            ),
            expect![[r#"
                page.responder_paged.v1
                {
                  "at": "2026-03-02T09:15:00Z",
                  "by": "klaxon-paging",
                  "deadline": "2026-03-02T09:25:00Z",
                  "incident": "INC-7",
                  "level": 1,
                  "page": "INC-7-P3",
                  "reason": "escalation",
                  "responder": "ana",
                  "round": 0
                }
                paged ana (INC-7-P3, level 1, round 0): escalation
            "#]],
        ),
        (
            event(
                PAGING_ACTOR,
                PageChange::ResponderPaged(ResponderPaged {
                    page: page(4),
                    responder: actor("dora"),
                    level: None,
                    round: 1,
                    reason: PageReason::SloBreach,
                    deadline: None,
                    request: None,
                    policy: None,
                }),
            ),
            expect![[r#"
                page.responder_paged.v1
                {
                  "at": "2026-03-02T09:15:00Z",
                  "by": "klaxon-paging",
                  "deadline": null,
                  "incident": "INC-7",
                  "level": null,
                  "page": "INC-7-P4",
                  "reason": "slo_breach",
                  "responder": "dora",
                  "round": 1
                }
                paged dora (INC-7-P4, duty manager, round 1): slo_breach
            "#]],
        ),
        (
            event(
                PAGING_ACTOR,
                PageChange::ResponderPaged(ResponderPaged {
                    page: page(5),
                    responder: actor("ben"),
                    level: None,
                    round: 0,
                    reason: PageReason::RoleAssigned,
                    deadline: None,
                    request: Some(2),
                    policy: None,
                }),
            ),
            expect![[r#"
                page.responder_paged.v1
                {
                  "at": "2026-03-02T09:15:00Z",
                  "by": "klaxon-paging",
                  "deadline": null,
                  "incident": "INC-7",
                  "level": null,
                  "page": "INC-7-P5",
                  "reason": "role_assigned",
                  "request": 2,
                  "responder": "ben",
                  "round": 0
                }
                paged ben (INC-7-P5, request 2, notice): role_assigned
            "#]],
        ),
        (
            event(
                PAGING_ACTOR,
                PageChange::PageDelivered(PageDelivered { page: page(5), channel: "slack".into(), attempts: 1 }),
            ),
            expect![[r#"
                page.delivered.v1
                {
                  "at": "2026-03-02T09:15:00Z",
                  "attempts": 1,
                  "by": "klaxon-paging",
                  "channel": "slack",
                  "incident": "INC-7",
                  "page": "INC-7-P5"
                }
                delivered INC-7-P5 via slack in 1 attempt
            "#]],
        ),
        (
            event(
                PAGING_ACTOR,
                PageChange::PageDelivered(PageDelivered { page: page(3), channel: "slack".into(), attempts: 2 }),
            ),
            expect![[r#"
                page.delivered.v1
                {
                  "at": "2026-03-02T09:15:00Z",
                  "attempts": 2,
                  "by": "klaxon-paging",
                  "channel": "slack",
                  "incident": "INC-7",
                  "page": "INC-7-P3"
                }
                delivered INC-7-P3 via slack in 2 attempts
            "#]],
        ),
        (
            event(
                PAGING_ACTOR,
                PageChange::PageDeliveryFailed(PageDeliveryFailed {
                    page: page(3),
                    channel: "email".into(),
                    attempts: 5,
                    error: "SMTP 421: try again later".into(),
                }),
            ),
            expect![[r#"
                page.delivery_failed.v1
                {
                  "at": "2026-03-02T09:15:00Z",
                  "attempts": 5,
                  "by": "klaxon-paging",
                  "channel": "email",
                  "error": "SMTP 421: try again later",
                  "incident": "INC-7",
                  "page": "INC-7-P3"
                }
                could not deliver INC-7-P3 via email in 5 attempts: SMTP 421: try again later
            "#]],
        ),
        (
            event("ana", PageChange::PageAcknowledged(PageAcknowledged { page: page(3) })),
            expect![[r#"
            page.acknowledged.v1
            {
              "at": "2026-03-02T09:15:00Z",
              "by": "ana",
              "incident": "INC-7",
              "page": "INC-7-P3"
            }
            ana acknowledged INC-7-P3
        "#]],
        ),
        (
            event(
                PAGING_ACTOR,
                PageChange::PageEscalated(PageEscalated {
                    page: Some(page(1)),
                    from_level: 0,
                    to_level: Some(1),
                    round: 0,
                    request: None,
                    policy: None,
                }),
            ),
            expect![[r#"
                page.escalated.v1
                {
                  "at": "2026-03-02T09:15:00Z",
                  "by": "klaxon-paging",
                  "from_level": 0,
                  "incident": "INC-7",
                  "page": "INC-7-P1",
                  "round": 0,
                  "to_level": 1
                }
                escalated from level 0 to level 1, round 0 (INC-7-P1 unanswered)
            "#]],
        ),
        (
            event(
                PAGING_ACTOR,
                PageChange::PageEscalated(PageEscalated {
                    page: None,
                    from_level: 1,
                    to_level: None,
                    round: 1,
                    request: None,
                    policy: None,
                }),
            ),
            expect![[r#"
                page.escalated.v1
                {
                  "at": "2026-03-02T09:15:00Z",
                  "by": "klaxon-paging",
                  "from_level": 1,
                  "incident": "INC-7",
                  "page": null,
                  "round": 1,
                  "to_level": null
                }
                escalation exhausted after level 1, round 1 (nobody on call)
            "#]],
        ),
        (
            event(PAGING_ACTOR, PageChange::AckTimedOut(AckTimedOut { page: page(3) })),
            expect![[r#"
            page.ack_timed_out.v1
            {
              "at": "2026-03-02T09:15:00Z",
              "by": "klaxon-paging",
              "incident": "INC-7",
              "page": "INC-7-P3"
            }
            the acknowledgement of INC-7-P3 timed out without mitigation
        "#]],
        ),
        (
            event(
                PAGING_ACTOR,
                PageChange::SloBreached(SloBreached {
                    slo: SloKind::Assign,
                    due_at: "2026-03-02T09:10:00Z".parse().unwrap(),
                }),
            ),
            expect![[r#"
                slo.breached.v1
                {
                  "at": "2026-03-02T09:15:00Z",
                  "by": "klaxon-paging",
                  "due_at": "2026-03-02T09:10:00Z",
                  "incident": "INC-7",
                  "slo": "assign"
                }
                breached the assign SLO due at 2026-03-02T09:10:00+00:00
            "#]],
        ),
        (
            event(
                PAGING_ACTOR,
                PageChange::PagingStopped(PagingStopped {
                    severity: crate::ids::Severity::Sev3,
                    config: "3f2a9c01b7d4e5f60718293a4b5c6d7e".into(),
                }),
            ),
            expect![[r#"
                page.paging_stopped.v1
                {
                  "at": "2026-03-02T09:15:00Z",
                  "by": "klaxon-paging",
                  "config": "3f2a9c01b7d4e5f60718293a4b5c6d7e",
                  "incident": "INC-7",
                  "severity": "sev3"
                }
                paging stopped: SEV3 no longer pages under configuration 3f2a9c01b7d4
            "#]],
        ),
    ]
}

#[test]
fn every_kind_has_a_golden() {
    assert_every_kind(&goldens());
}

#[test]
fn golden_json() {
    assert_goldens(&goldens(), Some(PageEvent::summary));
}

#[test]
fn every_kind_round_trips() {
    assert_round_trips(&goldens());
}

#[test]
fn decode_errors_name_the_kind() {
    let ok = r#""incident":"INC-7","at":"2026-03-02T09:15:00Z","by":"ana""#;
    let cases = [
        ("page.exploded.v1", format!("{{{ok},\"page\":\"INC-7-P1\"}}")),
        ("page.acknowledged.v2", format!("{{{ok},\"page\":\"INC-7-P1\"}}")),
        ("page.acknowledged.v1", "not json".to_owned()),
        ("page.acknowledged.v1", format!("{{{ok}}}")),
        ("page.acknowledged.v1", format!("{{{ok},\"page\":\"INC-7-P0\"}}")),
        ("page.acknowledged.v1", format!("{{{ok},\"page\":\"INC-7-P1\",\"extra\":1}}")),
        ("slo.breached.v1", format!("{{{ok},\"slo\":\"lunch\",\"due_at\":\"2026-03-02T09:10:00Z\"}}")),
        ("page.acknowledged.v1", r#"{"at":"2026-03-02T09:15:00Z","by":"ana","page":"INC-7-P1"}"#.to_owned()),
        (
            "page.responder_paged.v1",
            format!(
                r#"{{{ok},"page":"INC-7-P1","responder":"ana","level":0,"round":0,"reason":"severity","deadline":null,"policy":{{"name":"p","levels":[]}}}}"#
            ),
        ),
    ];
    let got: Vec<String> = cases
        .iter()
        .map(|(kind, data)| match PageEvent::from_json(kind, data) {
            Ok(event) => format!("ok {event:?}"),
            Err(error) => error.to_string(),
        })
        .collect();
    expect![[r#"
        [
            "unknown event kind \"page.exploded.v1\"",
            "unknown event kind \"page.acknowledged.v2\"",
            "malformed page.acknowledged.v1 event: expected ident at line 1 column 2",
            "malformed page.acknowledged.v1 event: missing field `page` at line 1 column 59",
            "malformed page.acknowledged.v1 event: invalid page_id: \"INC-7-P0\": the page number must be at least 1, without leading zeros at line 1 column 77",
            "malformed page.acknowledged.v1 event: unknown field `extra`, expected `page` at line 1 column 84",
            "malformed slo.breached.v1 event: unknown variant `lunch`, expected one of `ack`, `assign`, `update_cadence`, `resolve` at line 1 column 72",
            "malformed page.acknowledged.v1 event: missing field `incident` at line 1 column 58",
            "malformed page.responder_paged.v1 event: policy.levels: must have at least one level at line 1 column 185",
        ]
    "#]].assert_debug_eq(&got);
}

#[test]
fn page_ids_parse_and_display_one_spelling() {
    let cases =
        ["INC-7-P3", "inc-7-p3", "INC-42-P10", "INC-7-P0", "INC-7-P03", "INC-7", "INC-7-3", "INC-7-P", "P3", ""];
    let got: Vec<String> = cases
        .iter()
        .map(|s| match s.parse::<PageId>() {
            Ok(id) => format!("{s:?} -> {id} (incident {}, page {})", id.incident(), id.number()),
            Err(error) => format!("{s:?} -> {error}"),
        })
        .collect();
    expect![[r#"
        [
            "\"INC-7-P3\" -> INC-7-P3 (incident INC-7, page 3)",
            "\"inc-7-p3\" -> INC-7-P3 (incident INC-7, page 3)",
            "\"INC-42-P10\" -> INC-42-P10 (incident INC-42, page 10)",
            "\"INC-7-P0\" -> invalid page_id: \"INC-7-P0\": the page number must be at least 1, without leading zeros",
            "\"INC-7-P03\" -> invalid page_id: \"INC-7-P03\": the page number must be at least 1, without leading zeros",
            "\"INC-7\" -> invalid page_id: \"INC-7\": expected INC-<number>-P<number>",
            "\"INC-7-3\" -> invalid page_id: \"INC-7-3\": expected INC-<number>-P<number>",
            "\"INC-7-P\" -> invalid page_id: \"INC-7-P\": expected INC-<number>-P<number>",
            "\"P3\" -> invalid page_id: \"P3\": expected INC-<number>-P<number>",
            "\"\" -> invalid page_id: \"\": expected INC-<number>-P<number>",
        ]
    "#]].assert_debug_eq(&got);
    let id: PageId = serde_json::from_str("\"INC-7-P3\"").unwrap();
    assert_eq!(serde_json::to_string(&id).unwrap(), "\"INC-7-P3\"");
    assert_eq!(stream(id.incident()), "pages-INC-7");
}

#[test]
fn delivery_constructors_truncate() {
    let long = "x".repeat(DELIVERY_ERROR_CHARS_MAX + 10);
    let event = PageEvent::delivery_failed(page(1), "email", 3, &long, "2026-03-02T09:15:00Z".parse().unwrap());
    let PageChange::PageDeliveryFailed(failed) = &event.change else { panic!("wrong kind") };
    assert_eq!(failed.error.chars().count(), DELIVERY_ERROR_CHARS_MAX);
    assert_eq!(event.by.as_str(), PAGING_ACTOR);
    let event = PageEvent::delivered(page(1), "slack", 1, "2026-03-02T09:15:00Z".parse().unwrap());
    assert_eq!(event.kind(), "page.delivered.v1");
}
