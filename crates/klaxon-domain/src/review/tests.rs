//! The review decider: given review commands, when a command, then events
//! or an error; and when a review opens.

use chrono::NaiveDate;

use super::testkit::{Script, actor, assign, declare, inc, mitigate, noise, reopen, report, resolve};
use super::*;
use crate::incident::{Command, decide, evolve};

/// INC-7, a resolved Sev-1 whose review was opened on resolution.
fn resolved(severity: Severity) -> Script {
    let mut s = Script::new(7, 1);
    s.cmd(0, "svc:alertmanager", report("Checkout is slow", Some("payments-api"), None))
        .cmd(1, "alice", declare(severity))
        .cmd(2, "alice", resolve());
    s
}

fn item(n: u32) -> ActionItemId {
    ActionItemId::new(inc(7), n).unwrap()
}
fn day(d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 3, d).unwrap()
}
fn summary(text: &str) -> ReviewCommand {
    ReviewCommand::WriteSummary { summary: text.into() }
}
fn impact(text: &str) -> ReviewCommand {
    ReviewCommand::WriteImpact { impact: text.into() }
}
fn factor(text: &str) -> ReviewCommand {
    ReviewCommand::AddContributingFactor { factor: text.into() }
}
fn add(title: &str) -> ReviewCommand {
    ReviewCommand::AddActionItem { title: title.into(), owner: None, due: None }
}
fn owner(n: u32, who: &str) -> ReviewCommand {
    ReviewCommand::AssignActionItem { item: item(n), owner: actor(who) }
}
fn due(n: u32, d: u32) -> ReviewCommand {
    ReviewCommand::SetActionItemDue { item: item(n), due: day(d) }
}
fn complete(n: u32) -> ReviewCommand {
    ReviewCommand::CompleteActionItem { item: item(n) }
}

/// Describes an outcome in one line, as in the incident tests.
fn outcome(result: &Result<Vec<ReviewEvent>, Error>) -> String {
    match result {
        Ok(events) => events.iter().map(ReviewEvent::kind).collect::<Vec<_>>().join(","),
        Err(Error::ReviewRule { rule, .. }) => format!("!{rule}"),
        // Never from the review decider: shown apart if it ever were.
        Err(Error::Rule { rule, .. }) => format!("!incident:{rule}"),
        Err(Error::InvalidField { field, .. }) => format!("!invalid:{field}"),
        Err(Error::TooLarge { field, .. }) => format!("!too_large:{field}"),
        Err(Error::UnknownIncident(_)) => "!unknown_incident".into(),
        Err(Error::AlreadyExists(_)) => "!already_exists".into(),
    }
}

/// Given an opened review of a resolved Sev-1 and `steps`, when `who` sends
/// `command`, expect `expected`. Accepted events carry the decision's time
/// and actor and fold into the next version.
#[track_caller]
fn check(steps: &[(&str, ReviewCommand)], (who, command): (&str, ReviewCommand), expected: &str) {
    let mut script = resolved(Severity::Sev1);
    for (i, (by, step)) in steps.iter().enumerate() {
        script.review(10 + i as i64, by, step.clone());
    }
    let state = script.review.clone();
    let now = testkit::at(100);
    let result = decide_review(state.as_ref(), &command, script.incident(), &actor(who), now);
    assert_eq!(outcome(&result), expected, "when {who} sends {command:?}");
    if let Ok(events) = result {
        let version = state.as_ref().map_or(0, Review::version);
        for event in &events {
            assert_eq!((event.incident, event.at, &event.by), (inc(7), now, &actor(who)));
        }
        let after = events.iter().fold(state, evolve_review).expect("the review exists");
        assert_eq!(after.version(), version + events.len() as u64);
    }
}

fn written() -> Vec<(&'static str, ReviewCommand)> {
    vec![("carol", summary("A bad query plan")), ("carol", add("Add an index")), ("carol", add("Alert on p99"))]
}
fn published() -> Vec<(&'static str, ReviewCommand)> {
    [written(), vec![("carol", ReviewCommand::Publish)]].concat()
}
fn with(
    base: Vec<(&'static str, ReviewCommand)>,
    more: &[(&'static str, ReviewCommand)],
) -> Vec<(&'static str, ReviewCommand)> {
    [base, more.to_vec()].concat()
}

#[test]
fn every_command_needs_an_opened_review() {
    let mut script = Script::new(7, 1);
    script.cmd(0, "svc:alertmanager", report("Slow", None, None)).cmd(1, "alice", declare(Severity::Sev3));
    script.cmd(2, "alice", resolve());
    assert_eq!(script.review, None, "a Sev-3 resolution opens no review");
    let commands = [
        summary("s"),
        impact("i"),
        factor("f"),
        add("a"),
        owner(1, "dave"),
        due(1, 20),
        complete(1),
        ReviewCommand::Publish,
    ];
    for command in commands {
        let result = decide_review(None, &command, script.incident(), &actor("carol"), testkit::at(5));
        assert_eq!(outcome(&result), "!review.not_opened", "{command:?}");
    }
    let result = decide_review(None, &summary(" "), script.incident(), &actor("carol"), testkit::at(5));
    assert_eq!(outcome(&result), "!invalid:summary", "fields are checked before rules");
}

#[test]
fn writing_the_summary_and_impact() {
    check(&[], ("carol", summary("A bad query plan")), "review.summary_written.v1");
    check(&written(), ("carol", summary("Rewritten")), "review.summary_written.v1");
    check(&[], ("carol", summary(" \n ")), "!invalid:summary");
    check(&[], ("carol", summary(&"s".repeat(REVIEW_TEXT_CHARS_MAX))), "review.summary_written.v1");
    check(&[], ("carol", summary(&"s".repeat(REVIEW_TEXT_CHARS_MAX + 1))), "!too_large:summary");
    check(&[], ("carol", impact("40 customers could not pay")), "review.impact_written.v1");
    check(&[], ("carol", impact("")), "!invalid:impact");
    check(&[], ("carol", impact(&"i".repeat(REVIEW_TEXT_CHARS_MAX + 1))), "!too_large:impact");
}

#[test]
fn contributing_factors() {
    check(&[], ("carol", factor("No index on orders.created_at")), "review.contributing_factor_added.v1");
    let one = vec![("carol", factor("No index"))];
    check(&one, ("dave", factor("  No index ")), "!factor.already_added");
    check(&one, ("dave", factor("No alert on p99")), "review.contributing_factor_added.v1");
    check(&[], ("carol", factor(" ")), "!invalid:factor");
    check(&[], ("carol", factor(&"f".repeat(FACTOR_CHARS_MAX + 1))), "!too_large:factor");
    let full: Vec<_> = (0..FACTORS_MAX).map(|i| ("carol", factor(&format!("factor {i}")))).collect();
    check(&full, ("carol", factor("one more")), "!too_large:contributing_factors");
}

#[test]
fn action_items() {
    check(&[], ("carol", add("Add an index")), "review.action_item_added.v1");
    check(&[], ("carol", add("")), "!invalid:title");
    check(&[], ("carol", add(&"t".repeat(ACTION_ITEM_TITLE_CHARS_MAX + 1))), "!too_large:title");
    check(&written(), ("carol", owner(2, "dave")), "review.action_item_assigned.v1");
    check(&written(), ("carol", due(1, 20)), "review.action_item_due_set.v1");
    check(&written(), ("dave", complete(1)), "review.action_item_completed.v1");
    check(&written(), ("carol", owner(3, "dave")), "!action_item.unknown");
    check(&written(), ("carol", due(3, 20)), "!action_item.unknown");
    check(&written(), ("carol", complete(3)), "!action_item.unknown");
    let elsewhere = ReviewCommand::CompleteActionItem { item: ActionItemId::new(inc(8), 1).unwrap() };
    check(&written(), ("carol", elsewhere), "!action_item.unknown");
    let owned = with(written(), &[("carol", owner(1, "dave")), ("carol", due(1, 20))]);
    check(&owned, ("carol", owner(1, "dave")), "!action_item.same_owner");
    check(&owned, ("carol", owner(1, "erin")), "review.action_item_assigned.v1");
    check(&owned, ("carol", due(1, 20)), "!action_item.same_due");
    check(&owned, ("carol", due(1, 27)), "review.action_item_due_set.v1");
    check(&owned, ("carol", due(1, 1)), "review.action_item_due_set.v1");
    let done = with(written(), &[("dave", complete(1))]);
    check(&done, ("dave", complete(1)), "!action_item.already_completed");
    check(&done, ("carol", owner(1, "erin")), "!action_item.already_completed");
    check(&done, ("carol", due(1, 27)), "!action_item.already_completed");
    check(&done, ("dave", complete(2)), "review.action_item_completed.v1");
    let full: Vec<_> = (0..ACTION_ITEMS_MAX).map(|i| ("carol", add(&format!("item {i}")))).collect();
    check(&full, ("carol", add("one more")), "!too_large:action_items");
}

/// An item added with its owner and due date is three events of one
/// decision (one append): all of them or, refused, none.
#[test]
fn an_action_item_added_with_its_owner_and_due_date() {
    let add_with = |title: &str, owner: Option<&str>, due: Option<u32>| ReviewCommand::AddActionItem {
        title: title.into(),
        owner: owner.map(actor),
        due: due.map(day),
    };
    let all = "review.action_item_added.v1,review.action_item_assigned.v1,review.action_item_due_set.v1";
    check(&written(), ("carol", add_with("Add a canary", Some("dave"), Some(20))), all);
    check(
        &[],
        ("carol", add_with("Add a canary", Some("dave"), None)),
        "review.action_item_added.v1,review.action_item_assigned.v1",
    );
    check(
        &[],
        ("carol", add_with("Add a canary", None, Some(20))),
        "review.action_item_added.v1,review.action_item_due_set.v1",
    );
    check(&published(), ("carol", add_with("Late item", Some("dave"), Some(20))), "!review.published");
    check(&[], ("carol", add_with("", Some("dave"), Some(20))), "!invalid:title");
    let full: Vec<_> = (0..ACTION_ITEMS_MAX).map(|i| ("carol", add(&format!("item {i}")))).collect();
    check(&full, ("carol", add_with("one more", Some("dave"), None)), "!too_large:action_items");

    let mut script = resolved(Severity::Sev1);
    for (i, (who, command)) in written().into_iter().enumerate() {
        script.review(10 + i as i64, who, command);
    }
    script.review(20, "carol", add_with("Add a canary", Some("dave"), Some(20)));
    let review = script.review.clone().unwrap();
    let a3 = review.action_item(&item(3)).unwrap();
    assert_eq!((a3.title(), a3.owner(), a3.due()), ("Add a canary", Some(&actor("dave")), Some(day(20))));
    assert_eq!((a3.added_by(), a3.added_at()), (&actor("carol"), testkit::at(20)));
}

#[test]
fn publishing_freezes_the_text_but_not_the_action_items() {
    check(&[], ("carol", ReviewCommand::Publish), "!publish.needs_summary");
    check(&[("carol", impact("bad"))], ("carol", ReviewCommand::Publish), "!publish.needs_summary");
    check(&written(), ("carol", ReviewCommand::Publish), "review.published.v1");
    check(&published(), ("carol", ReviewCommand::Publish), "!publish.already_published");
    check(&published(), ("carol", summary("Rewritten")), "!review.published");
    check(&published(), ("carol", impact("More")), "!review.published");
    check(&published(), ("carol", factor("Late find")), "!review.published");
    check(&published(), ("carol", add("Late item")), "!review.published");
    check(&published(), ("carol", summary("")), "!invalid:summary");
    check(&published(), ("carol", owner(1, "dave")), "review.action_item_assigned.v1");
    check(&published(), ("carol", due(1, 20)), "review.action_item_due_set.v1");
    check(&published(), ("dave", complete(2)), "review.action_item_completed.v1");
}

#[test]
fn the_review_state() {
    let mut script = resolved(Severity::Sev1);
    let steps = with(
        written(),
        &[
            ("carol", factor("No index")),
            ("carol", ReviewCommand::Publish),
            ("carol", owner(1, "dave")),
            ("carol", due(1, 20)),
            ("dave", complete(1)),
        ],
    );
    for (i, (who, command)) in steps.into_iter().enumerate() {
        script.review(10 + i as i64, who, command);
    }
    let review = script.review.clone().unwrap();
    assert_eq!((review.incident(), review.version(), review.opened_at()), (inc(7), 9, testkit::at(2)));
    assert_eq!((review.summary(), review.impact()), (Some("A bad query plan"), None));
    assert_eq!(review.contributing_factors(), ["No index"]);
    assert_eq!(review.published().map(|(by, at)| (by.clone(), at)), Some((actor("carol"), testkit::at(14))));
    let items: Vec<_> = review
        .action_items()
        .map(|i| (i.id().to_string(), i.title(), i.owner().cloned(), i.due(), i.completed().map(|(by, _)| by.clone())))
        .collect();
    assert_eq!(
        items,
        [
            ("INC-7-A1".to_owned(), "Add an index", Some(actor("dave")), Some(day(20)), Some(actor("dave"))),
            ("INC-7-A2".to_owned(), "Alert on p99", None, None, None),
        ]
    );
    let a2 = review.action_item(&item(2)).unwrap();
    assert_eq!((a2.added_by(), a2.added_at(), a2.is_completed()), (&actor("carol"), testkit::at(12), false));
}

#[test]
fn a_review_opens_when_a_sev1_or_sev2_is_resolved() {
    let opened = |script: &Script| script.review_events.iter().map(|e| (e.at, e.by.to_string())).collect::<Vec<_>>();
    assert_eq!(opened(&resolved(Severity::Sev1)), [(testkit::at(2), REVIEW_ACTOR.to_owned())]);
    assert_eq!(opened(&resolved(Severity::Sev2)).len(), 1);
    assert_eq!(opened(&resolved(Severity::Sev3)).len(), 0);
    assert_eq!(opened(&resolved(Severity::Sev4)).len(), 0);

    let mut mitigated_only = Script::new(7, 1);
    mitigated_only.cmd(0, "a", report("x", None, None)).cmd(1, "a", declare(Severity::Sev1)).cmd(2, "a", mitigate());
    assert_eq!(opened(&mitigated_only).len(), 0, "mitigation opens nothing");

    let mut noisy = Script::new(7, 1);
    noisy.cmd(0, "a", report("x", None, None)).cmd(1, "a", declare(Severity::Sev1)).cmd(2, "a", noise());
    noisy.cmd(3, "a", resolve());
    assert_eq!(opened(&noisy).len(), 0, "noise gets no review");

    let mut again = resolved(Severity::Sev1);
    again.cmd(3, "a", reopen()).cmd(4, "a", assign("bob")).cmd(5, "a", resolve());
    assert_eq!(opened(&again).len(), 1, "a second resolution opens no second review");

    let mut raised = resolved(Severity::Sev3);
    raised.cmd(3, "a", reopen());
    raised.cmd(4, "a", Command::OverrideSeverity { severity: Severity::Sev1, reason: "worse".into() });
    raised.cmd(5, "a", resolve());
    assert_eq!(opened(&raised), [(testkit::at(5), REVIEW_ACTOR.to_owned())], "opened by the resolution as Sev-1");
}

#[test]
fn opening_is_deterministic() {
    let script = resolved(Severity::Sev1);
    let resolution = script.incident_events.last().unwrap();
    let a = open_review(script.incident(), resolution, None);
    let b = open_review(script.incident(), resolution, None);
    assert_eq!(a, b);
    assert_eq!(a.map(|e| e.kind()), Some("review.opened.v1"));
    assert_eq!(open_review(script.incident(), resolution, script.review.as_ref()), None);
}

#[test]
fn rule_errors_name_the_rule_and_the_incident_state() {
    let script = resolved(Severity::Sev1);
    let error =
        decide_review(script.review.as_ref(), &ReviewCommand::Publish, script.incident(), &actor("c"), testkit::at(9))
            .unwrap_err();
    expect_test::expect![[
        r#"rule publish.needs_summary forbids this: a review is published with a summary; write one first"#
    ]]
    .assert_eq(&error.to_string());
}

/// A review command from a small alphabet, so that random sequences reach
/// every rule.
fn any_command() -> impl proptest::strategy::Strategy<Value = ReviewCommand> {
    use proptest::prelude::*;
    prop_oneof![
        Just(summary("s")),
        Just(impact("i")),
        prop_oneof![Just("f1"), Just("f2")].prop_map(factor),
        Just(add("a")),
        Just(ReviewCommand::AddActionItem { title: "b".into(), owner: Some(actor("dave")), due: Some(day(21)) }),
        (1u32..4, prop_oneof![Just("dave"), Just("erin")]).prop_map(|(n, who)| owner(n, who)),
        (1u32..4, 20u32..22).prop_map(|(n, d)| due(n, d)),
        (1u32..4).prop_map(complete),
        Just(ReviewCommand::Publish),
    ]
}

proptest::proptest! {
    /// Whatever is sent, accepted events survive the log format, rebuilding
    /// from the log equals the live state, and nothing but action items
    /// changes after publication.
    #[test]
    fn rebuilding_a_review_from_the_log_equals_the_live_state(
        commands in proptest::collection::vec(any_command(), 0..40),
    ) {
        let mut incident = None;
        for (i, command) in [report("x", None, None), declare(Severity::Sev1), resolve()].iter().enumerate() {
            let events = decide(incident.as_ref(), command, &inc(7), &actor("alice"), testkit::at(i as i64)).unwrap();
            incident = events.iter().fold(incident, evolve);
        }
        let incident = incident.unwrap();
        let cause = IncidentEvent { incident: inc(7), at: testkit::at(2), by: actor("alice"), change: Change::Resolved(crate::incident::Resolved { summary: "x".into() }) };
        let opened = open_review(&incident, &cause, None).unwrap();
        let mut live = evolve_review(None, &opened);
        let mut log = vec![(opened.kind(), opened.to_json().to_string())];
        for (i, command) in commands.iter().enumerate() {
            let Ok(events) = decide_review(live.as_ref(), command, &incident, &actor("carol"), testkit::at(10 + i as i64)) else { continue };
            for event in events {
                let before = live.clone().unwrap();
                live = evolve_review(live, &event);
                let after = live.as_ref().unwrap();
                if before.is_published() {
                    proptest::prop_assert_eq!((before.summary(), before.impact(), before.contributing_factors()), (after.summary(), after.impact(), after.contributing_factors()));
                    proptest::prop_assert_eq!(before.action_items().count(), after.action_items().count());
                }
                log.push((event.kind(), event.to_json().to_string()));
            }
        }
        let rebuilt = log
            .iter()
            .map(|(kind, data)| ReviewEvent::from_json(kind, data).unwrap())
            .fold(None, |state, event| evolve_review(state, &event));
        proptest::prop_assert_eq!(live.as_ref().map(Review::version), Some(log.len() as u64));
        proptest::prop_assert_eq!(rebuilt, live);
    }
}

/// A review command with text in one field, the field's name and its kind.
type ReviewTextField = (fn(String) -> ReviewCommand, &'static str, crate::text::Kind);

/// Every free-text field of a review command.
fn review_text_fields() -> Vec<ReviewTextField> {
    use crate::text::{ACTION_ITEM_TITLE, FACTOR, REVIEW_TEXT};
    vec![
        (|summary| ReviewCommand::WriteSummary { summary }, "summary", REVIEW_TEXT),
        (|impact| ReviewCommand::WriteImpact { impact }, "impact", REVIEW_TEXT),
        (|factor| ReviewCommand::AddContributingFactor { factor }, "factor", FACTOR),
        (|title| ReviewCommand::AddActionItem { title, owner: None, due: None }, "title", ACTION_ITEM_TITLE),
    ]
}

proptest::proptest! {
    /// The review decider applies the one text rule: it refuses exactly
    /// what the rule refuses, with the rule's error.
    #[test]
    fn every_review_text_follows_the_text_rule(
        field in proptest::sample::select(vec![0usize, 1, 2, 3]),
        value in crate::text::tests::text(),
    ) {
        let (command, name, kind) = review_text_fields().swap_remove(field);
        let script = resolved(Severity::Sev1);
        let decided =
            decide_review(script.review.as_ref(), &command(value.clone()), script.incident(), &actor("rita"), testkit::at(100));
        match kind.check(name, &value) {
            Ok(_) => proptest::prop_assert!(decided.is_ok(), "{name} {value:?}: {decided:?}"),
            Err(e) => proptest::prop_assert_eq!(decided, Err(e)),
        }
    }
}

#[test]
fn a_dossier_owes_the_opening_of_the_resolution_until_the_review_is_folded() {
    let by = actor("alice");
    let fold = |commands: &[Command]| {
        let mut dossier = Dossier::default();
        let mut state = None;
        let mut ids = Vec::new();
        for (n, command) in commands.iter().enumerate() {
            for event in decide(state.as_ref(), command, &inc(7), &by, super::testkit::at(n as i64)).unwrap() {
                state = evolve(state, &event);
                let record = uuid::Uuid::from_u128(ids.len() as u128 + 1);
                ids.push(record);
                dossier.apply_incident(record, &event);
            }
        }
        (dossier, ids)
    };
    let sev1 = [report("Checkout is slow", None, None), declare(Severity::Sev1), resolve()];
    let (mut dossier, ids) = fold(&sev1);
    let (cause, opening) = dossier.to_open().expect("a resolved Sev-1 owes its review");
    assert_eq!(cause, ids[2], "the resolution's record is the cause");
    assert_eq!((opening.kind(), opening.at), ("review.opened.v1", super::testkit::at(2)));
    let opening = opening.clone();
    dossier.apply_review(&opening);
    assert!(dossier.to_open().is_none(), "opened: nothing owed");
    // Reopened and resolved again: the review stays, nothing new is owed.
    dossier.apply_incident(
        uuid::Uuid::from_u128(9),
        &decide(dossier.incident(), &reopen(), &inc(7), &by, super::testkit::at(3)).unwrap()[0],
    );
    dossier.apply_incident(
        uuid::Uuid::from_u128(10),
        &decide(dossier.incident(), &resolve(), &inc(7), &by, super::testkit::at(4)).unwrap()[0],
    );
    assert!(dossier.to_open().is_none());
    // A Sev-3 owes nothing.
    let (sev3, _) = fold(&[report("Checkout is slow", None, None), declare(Severity::Sev3), resolve()]);
    assert!(sev3.to_open().is_none());
}
