//! The persisted review event format: golden JSON and summary for every
//! kind, round trips, decode errors and action item ids.

use expect_test::{Expect, expect};
use proptest::prelude::*;

use super::*;
use crate::envelope::testkit::{assert_every_kind, assert_goldens, assert_round_trips, round_trip};
use chrono::{DateTime, Utc};

fn actor(name: &str) -> ActorId {
    ActorId::new(name).unwrap()
}

fn item(n: u32) -> ActionItemId {
    ActionItemId::new(IncidentId::from_number(42).unwrap(), n).unwrap()
}

fn event(by: &str, change: ReviewChange) -> ReviewEvent {
    ReviewEvent {
        incident: IncidentId::from_number(42).unwrap(),
        at: "2026-03-01T12:34:56.789Z".parse().unwrap(),
        by: actor(by),
        change,
    }
}

/// One event of every kind, with its pinned JSON and summary.
fn goldens() -> Vec<(ReviewEvent, Expect)> {
    vec![
        (
            event(REVIEW_ACTOR, ReviewChange::ReviewOpened(ReviewOpened {})),
            expect![[r#"
                review.opened.v1
                {
                  "at": "2026-03-01T12:34:56.789Z",
                  "by": "klaxon-review",
                  "incident": "INC-42"
                }
                klaxon-review opened the post-incident review of INC-42
            "#]],
        ),
        (
            event(
                "carol",
                ReviewChange::SummaryWritten(SummaryWritten {
                    summary: "A missing index made checkout slow.\n\nDetails follow.".into(),
                }),
            ),
            expect![[r#"
                review.summary_written.v1
                {
                  "at": "2026-03-01T12:34:56.789Z",
                  "by": "carol",
                  "incident": "INC-42",
                  "summary": "A missing index made checkout slow.\n\nDetails follow."
                }
                carol wrote the review summary: A missing index made checkout slow.…
            "#]],
        ),
        (
            event(
                "carol",
                ReviewChange::ImpactWritten(ImpactWritten {
                    impact: "40 customers could not pay for 50 minutes".into(),
                }),
            ),
            expect![[r#"
                review.impact_written.v1
                {
                  "at": "2026-03-01T12:34:56.789Z",
                  "by": "carol",
                  "impact": "40 customers could not pay for 50 minutes",
                  "incident": "INC-42"
                }
                carol wrote the impact statement: 40 customers could not pay for 50 minutes
            "#]],
        ),
        (
            event(
                "carol",
                ReviewChange::ContributingFactorAdded(ContributingFactorAdded {
                    factor: "No index on orders.created_at".into(),
                }),
            ),
            expect![[r#"
                review.contributing_factor_added.v1
                {
                  "at": "2026-03-01T12:34:56.789Z",
                  "by": "carol",
                  "factor": "No index on orders.created_at",
                  "incident": "INC-42"
                }
                carol added a contributing factor: No index on orders.created_at
            "#]],
        ),
        (
            event(
                "carol",
                ReviewChange::ActionItemAdded(ActionItemAdded { item: item(1), title: "Add the index".into() }),
            ),
            expect![[r#"
                review.action_item_added.v1
                {
                  "at": "2026-03-01T12:34:56.789Z",
                  "by": "carol",
                  "incident": "INC-42",
                  "item": "INC-42-A1",
                  "title": "Add the index"
                }
                carol added action item INC-42-A1: Add the index
            "#]],
        ),
        (
            event(
                "carol",
                ReviewChange::ActionItemAssigned(ActionItemAssigned { item: item(1), owner: actor("dave") }),
            ),
            expect![[r#"
                review.action_item_assigned.v1
                {
                  "at": "2026-03-01T12:34:56.789Z",
                  "by": "carol",
                  "incident": "INC-42",
                  "item": "INC-42-A1",
                  "owner": "dave"
                }
                carol assigned INC-42-A1 to dave
            "#]],
        ),
        (
            event(
                "carol",
                ReviewChange::ActionItemDueSet(ActionItemDueSet {
                    item: item(1),
                    due: NaiveDate::from_ymd_opt(2026, 3, 20).unwrap(),
                }),
            ),
            expect![[r#"
                review.action_item_due_set.v1
                {
                  "at": "2026-03-01T12:34:56.789Z",
                  "by": "carol",
                  "due": "2026-03-20",
                  "incident": "INC-42",
                  "item": "INC-42-A1"
                }
                carol set INC-42-A1 due on 2026-03-20
            "#]],
        ),
        (
            event("dave", ReviewChange::ActionItemCompleted(ActionItemCompleted { item: item(1) })),
            expect![[r#"
                review.action_item_completed.v1
                {
                  "at": "2026-03-01T12:34:56.789Z",
                  "by": "dave",
                  "incident": "INC-42",
                  "item": "INC-42-A1"
                }
                dave completed INC-42-A1
            "#]],
        ),
        (
            event("carol", ReviewChange::ReviewPublished(ReviewPublished {})),
            expect![[r#"
                review.published.v1
                {
                  "at": "2026-03-01T12:34:56.789Z",
                  "by": "carol",
                  "incident": "INC-42"
                }
                carol published the post-incident review of INC-42
            "#]],
        ),
    ]
}

#[test]
fn every_kind_has_a_golden_in_order() {
    assert_every_kind(&goldens());
}

#[test]
fn golden_json_and_summary() {
    assert_goldens(&goldens(), Some(ReviewEvent::summary));
}

#[test]
fn every_kind_round_trips() {
    assert_round_trips(&goldens());
}

#[test]
fn the_stream_and_the_actor() {
    assert_eq!(stream(IncidentId::from_number(42).unwrap()), "review-INC-42");
    assert_eq!(review_actor().as_str(), REVIEW_ACTOR);
}

#[test]
fn summaries_quote_one_line_of_long_text() {
    let long =
        event("carol", ReviewChange::SummaryWritten(SummaryWritten { summary: "é".repeat(EXCERPT_CHARS_MAX + 1) }));
    let exact = event("carol", ReviewChange::ImpactWritten(ImpactWritten { impact: "i".repeat(EXCERPT_CHARS_MAX) }));
    assert_eq!(long.summary(), format!("carol wrote the review summary: {}…", "é".repeat(EXCERPT_CHARS_MAX)));
    assert_eq!(exact.summary(), format!("carol wrote the impact statement: {}", "i".repeat(EXCERPT_CHARS_MAX)));
}

#[test]
fn decode_errors_name_the_kind() {
    let ok = r#""incident":"INC-1","at":"2026-03-01T12:00:00Z","by":"bob""#;
    let cases = [
        ("review.exploded.v1", format!("{{{ok}}}")),
        ("incident.declared.v1", format!("{{{ok},\"severity\":\"sev1\"}}")),
        ("review.opened.v1", format!("{{{ok},\"extra\":1}}")),
        ("review.opened.v1", "null".to_owned()),
        ("review.action_item_added.v1", format!("{{{ok},\"item\":\"INC-1-A0\",\"title\":\"t\"}}")),
        ("review.action_item_due_set.v1", format!("{{{ok},\"item\":\"INC-1-A1\",\"due\":\"2026-02-30\"}}")),
        ("review.action_item_assigned.v1", format!("{{{ok},\"item\":\"INC-1-A1\"}}")),
    ];
    let got: Vec<String> = cases
        .iter()
        .map(|(kind, data)| match ReviewEvent::from_json(kind, data) {
            Ok(event) => format!("ok {event:?}"),
            Err(error) => error.to_string(),
        })
        .collect();
    expect![[r#"
        [
            "unknown event kind \"review.exploded.v1\"",
            "unknown event kind \"incident.declared.v1\"",
            "malformed review.opened.v1 event: unknown field `extra`, there are no fields at line 1 column 66",
            "malformed review.opened.v1 event: invalid type: null, expected a JSON object at line 1 column 4",
            "malformed review.action_item_added.v1 event: invalid action_item: \"INC-1-A0\": the action item number must be at least 1, without leading zeros at line 1 column 76",
            "malformed review.action_item_due_set.v1 event: input is out of range at line 1 column 95",
            "malformed review.action_item_assigned.v1 event: missing field `owner` at line 1 column 77",
        ]
    "#]].assert_debug_eq(&got);
}

#[test]
fn action_item_ids() {
    let cases = [
        "INC-7-A1",
        "inc-7-a12",
        "INC-7-A0",
        "INC-7-A01",
        "INC-7-P1",
        "INC-7-A",
        "INC-0-A1",
        "A1",
        "INC-7-A99999999999",
    ];
    let got: Vec<String> = cases
        .iter()
        .map(|s| match s.parse::<ActionItemId>() {
            Ok(id) => format!("{s} -> {id} (incident {}, number {})", id.incident(), id.number()),
            Err(error) => format!("{s} -> {error}"),
        })
        .collect();
    expect![[r#"
        [
            "INC-7-A1 -> INC-7-A1 (incident INC-7, number 1)",
            "inc-7-a12 -> INC-7-A12 (incident INC-7, number 12)",
            "INC-7-A0 -> invalid action_item: \"INC-7-A0\": the action item number must be at least 1, without leading zeros",
            "INC-7-A01 -> invalid action_item: \"INC-7-A01\": the action item number must be at least 1, without leading zeros",
            "INC-7-P1 -> invalid action_item: \"INC-7-P1\": expected INC-<number>-A<number>",
            "INC-7-A -> invalid action_item: \"INC-7-A\": expected INC-<number>-A<number>",
            "INC-0-A1 -> invalid action_item: \"INC-0-A1\": expected INC-<number>-A<number>",
            "A1 -> invalid action_item: \"A1\": expected INC-<number>-A<number>",
            "INC-7-A99999999999 -> invalid action_item: \"INC-7-A99999999999\": the action item number is too large",
        ]
    "#]].assert_debug_eq(&got);
    assert!(ActionItemId::new(IncidentId::from_number(7).unwrap(), 0).is_err());
    assert!(item(2) < item(10), "ids order by number, not by text");
}

fn timestamp() -> impl Strategy<Value = DateTime<Utc>> {
    (0i64..7_258_118_400, 0u32..1_000_000_000).prop_map(|(secs, nanos)| DateTime::from_timestamp(secs, nanos).unwrap())
}

fn change() -> impl Strategy<Value = ReviewChange> {
    let item =
        (1u64..1_000, 1u32..).prop_map(|(i, n)| ActionItemId::new(IncidentId::from_number(i).unwrap(), n).unwrap());
    prop_oneof![
        Just(ReviewChange::ReviewOpened(ReviewOpened {})),
        any::<String>().prop_map(|summary| ReviewChange::SummaryWritten(SummaryWritten { summary })),
        any::<String>().prop_map(|impact| ReviewChange::ImpactWritten(ImpactWritten { impact })),
        any::<String>().prop_map(|factor| ReviewChange::ContributingFactorAdded(ContributingFactorAdded { factor })),
        (item.clone(), any::<String>())
            .prop_map(|(item, title)| ReviewChange::ActionItemAdded(ActionItemAdded { item, title })),
        (item.clone(), "[a-z]{1,20}").prop_map(|(item, owner)| ReviewChange::ActionItemAssigned(ActionItemAssigned {
            item,
            owner: ActorId::new(owner).unwrap()
        })),
        (item.clone(), -100_000i32..100_000).prop_map(|(item, days)| ReviewChange::ActionItemDueSet(
            ActionItemDueSet { item, due: NaiveDate::from_num_days_from_ce_opt(739_000 + days).unwrap() }
        )),
        item.prop_map(|item| ReviewChange::ActionItemCompleted(ActionItemCompleted { item })),
        Just(ReviewChange::ReviewPublished(ReviewPublished {})),
    ]
}

proptest! {
    #[test]
    fn arbitrary_events_round_trip(number in 1u64.., at in timestamp(), change in change()) {
        let event = ReviewEvent { incident: IncidentId::from_number(number).unwrap(), at, by: actor("carol"), change };
        prop_assert_eq!(round_trip(&event), event);
    }
}
