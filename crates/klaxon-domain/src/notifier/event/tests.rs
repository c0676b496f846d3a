//! The persisted notify event format: golden JSON for every kind, round
//! trips and decode errors.

use expect_test::{Expect, expect};

use super::*;
use crate::envelope::testkit::{assert_every_kind, assert_goldens, assert_round_trips};

fn event(change: NotifyChange) -> NotifyEvent {
    NotifyEvent {
        incident: IncidentId::from_number(7).unwrap(),
        at: "2026-03-02T09:15:00Z".parse().unwrap(),
        by: notifier_actor(),
        change,
    }
}

/// One event of every kind (two where a field may be null or an enum has
/// two values), with its pinned JSON.
fn goldens() -> Vec<(NotifyEvent, Expect)> {
    vec![
        (
            event(NotifyChange::ExecutivesNotified(ExecutivesNotified {
                channel: "exec-slack".into(),
                audience: PostAudience::Executive,
                severity: Severity::Sev1,
                summary: "INC-7 is SEV1 (declared): Checkout is down.".into(),
                through: None,
            })),
            expect![[r#"
                notify.executives_notified.v1
                {
                  "at": "2026-03-02T09:15:00Z",
                  "audience": "executive",
                  "by": "klaxon-notifier",
                  "channel": "exec-slack",
                  "incident": "INC-7",
                  "severity": "sev1",
                  "summary": "INC-7 is SEV1 (declared): Checkout is down."
                }
                notified executives via exec-slack (SEV1): INC-7 is SEV1 (declared): Checkout is down.
            "#]],
        ),
        (
            event(NotifyChange::ExecutivesNotified(ExecutivesNotified {
                channel: "all-hands".into(),
                audience: PostAudience::CompanyWide,
                severity: Severity::Sev2,
                summary: "INC-7 (SEV2) affects several customers: Checkout is down.".into(),
                through: Some(4),
            })),
            expect![[r#"
                notify.executives_notified.v1
                {
                  "at": "2026-03-02T09:15:00Z",
                  "audience": "company_wide",
                  "by": "klaxon-notifier",
                  "channel": "all-hands",
                  "incident": "INC-7",
                  "severity": "sev2",
                  "summary": "INC-7 (SEV2) affects several customers: Checkout is down.",
                  "through": 4
                }
                notified the company-wide group via all-hands (SEV2): INC-7 (SEV2) affects several customers: Checkout is down.
            "#]],
        ),
        (
            event(NotifyChange::UpdateOverdue(UpdateOverdue {
                due_at: "2026-03-02T09:00:00Z".parse().unwrap(),
                commander: Some(ActorId::new("ana").unwrap()),
            })),
            expect![[r#"
                notify.update_overdue.v1
                {
                  "at": "2026-03-02T09:15:00Z",
                  "by": "klaxon-notifier",
                  "commander": "ana",
                  "due_at": "2026-03-02T09:00:00Z",
                  "incident": "INC-7"
                }
                the executive update due at 2026-03-02T09:00:00+00:00 is overdue; reminded ana
            "#]],
        ),
        (
            event(NotifyChange::UpdateOverdue(UpdateOverdue {
                due_at: "2026-03-02T09:00:00Z".parse().unwrap(),
                commander: None,
            })),
            expect![[r#"
                notify.update_overdue.v1
                {
                  "at": "2026-03-02T09:15:00Z",
                  "by": "klaxon-notifier",
                  "commander": null,
                  "due_at": "2026-03-02T09:00:00Z",
                  "incident": "INC-7"
                }
                the executive update due at 2026-03-02T09:00:00+00:00 is overdue; there is no commander to remind
            "#]],
        ),
        (
            event(NotifyChange::DeliveryFailed(DeliveryFailed {
                channel: "exec-email".into(),
                audience: PostAudience::Executive,
                severity: Severity::Sev1,
                error: "SMTP 421: try again later".into(),
                through: Some(3),
            })),
            expect![[r#"
                notify.delivery_failed.v1
                {
                  "at": "2026-03-02T09:15:00Z",
                  "audience": "executive",
                  "by": "klaxon-notifier",
                  "channel": "exec-email",
                  "error": "SMTP 421: try again later",
                  "incident": "INC-7",
                  "severity": "sev1",
                  "through": 3
                }
                could not notify executives via exec-email (SEV1): SMTP 421: try again later
            "#]],
        ),
        (
            event(NotifyChange::ThreadStarted(ThreadStarted {
                channel: "exec-slack".into(),
                audience: PostAudience::Executive,
                thread: "1764000000.000100".into(),
            })),
            expect![[r#"
                notify.thread_started.v1
                {
                  "at": "2026-03-02T09:15:00Z",
                  "audience": "executive",
                  "by": "klaxon-notifier",
                  "channel": "exec-slack",
                  "incident": "INC-7",
                  "thread": "1764000000.000100"
                }
                started the thread of executives via exec-slack: 1764000000.000100
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
    assert_goldens(&goldens(), Some(NotifyEvent::summary));
}

#[test]
fn every_kind_round_trips() {
    assert_round_trips(&goldens());
}

#[test]
fn decode_errors_name_the_kind() {
    let ok = r#""incident":"INC-7","at":"2026-03-02T09:15:00Z","by":"klaxon-notifier""#;
    let fields = r#""channel":"exec-slack","severity":"sev1","summary":"s""#;
    let cases = [
        ("notify.exploded.v1", format!("{{{ok},\"due_at\":\"2026-03-02T09:00:00Z\",\"commander\":null}}")),
        ("notify.update_overdue.v2", format!("{{{ok},\"due_at\":\"2026-03-02T09:00:00Z\",\"commander\":null}}")),
        ("notify.update_overdue.v1", "[]".to_owned()),
        ("notify.update_overdue.v1", format!("{{{ok},\"commander\":null}}")),
        ("notify.update_overdue.v1", format!("{{{ok},\"due_at\":\"2026-03-02T09:00:00Z\",\"commander\":\"a b\"}}")),
        ("notify.executives_notified.v1", format!("{{{ok},{fields},\"audience\":\"internal\"}}")),
        ("notify.executives_notified.v1", format!("{{{ok},{fields},\"audience\":\"executive\",\"extra\":1}}")),
        ("notify.delivery_failed.v1", format!("{{{ok},\"channel\":\"x\",\"audience\":\"executive\",\"error\":\"e\"}}")),
        (
            "notify.update_overdue.v1",
            r#"{"at":"2026-03-02T09:15:00Z","by":"x","due_at":"2026-03-02T09:00:00Z","commander":null}"#.to_owned(),
        ),
    ];
    let got: Vec<String> = cases
        .iter()
        .map(|(kind, data)| match NotifyEvent::from_json(kind, data) {
            Ok(event) => format!("ok {event:?}"),
            Err(error) => error.to_string(),
        })
        .collect();
    expect![[r#"
        [
            "unknown event kind \"notify.exploded.v1\"",
            "unknown event kind \"notify.update_overdue.v2\"",
            "malformed notify.update_overdue.v1 event: invalid type: sequence, expected a JSON object at line 1 column 0",
            "malformed notify.update_overdue.v1 event: missing field `due_at` at line 1 column 88",
            "malformed notify.update_overdue.v1 event: invalid actor_id: \"a b\": character ' ' is not allowed (use A-Z a-z 0-9 _ . @ : -) at line 1 column 121",
            "malformed notify.executives_notified.v1 event: unknown variant `internal`, expected `executive` or `company_wide` at line 1 column 147",
            "malformed notify.executives_notified.v1 event: unknown field `extra`, expected one of `channel`, `audience`, `severity`, `summary`, `through` at line 1 column 156",
            "malformed notify.delivery_failed.v1 event: missing field `severity` at line 1 column 120",
            "malformed notify.update_overdue.v1 event: missing field `incident` at line 1 column 87",
        ]
    "#]].assert_debug_eq(&got);
}

#[test]
fn streams_actor_and_audiences() {
    assert_eq!(stream(IncidentId::from_number(42).unwrap()), "notify-INC-42");
    assert_eq!(notifier_actor().as_str(), NOTIFIER_ACTOR);
    assert_eq!(Audience::from(PostAudience::Executive), Audience::Executive);
    assert_eq!(Audience::from(PostAudience::CompanyWide), Audience::CompanyWide);
    assert_eq!(PostAudience::CompanyWide.to_string(), "company_wide");
    assert_eq!(serde_json::to_string(&PostAudience::CompanyWide).unwrap(), "\"company_wide\"");
}
