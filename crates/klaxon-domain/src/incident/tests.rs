//! Given commands, when a command, then events or an error.

use super::*;

fn actor(name: &str) -> ActorId {
    ActorId::new(name).unwrap()
}

fn inc() -> IncidentId {
    IncidentId::from_number(7).unwrap()
}

/// The time of the `i`-th step of a scenario.
fn t(i: usize) -> DateTime<Utc> {
    let start: DateTime<Utc> = "2026-03-01T12:00:00Z".parse().unwrap();
    start + chrono::Duration::minutes(i as i64)
}

/// Folds `steps` (actor, command), each decided at its own time; every step
/// must be accepted.
fn given(steps: &[(&str, Command)]) -> Option<Incident> {
    let mut state = None;
    for (i, (who, command)) in steps.iter().enumerate() {
        let events = decide(state.as_ref(), command, &inc(), &actor(who), t(i))
            .unwrap_or_else(|e| panic!("given step {i} ({command:?}) rejected: {e}"));
        state = events.iter().fold(state, evolve);
    }
    state
}

/// Describes an outcome in one line: the event kinds, or `!` and the rule id
/// (or error kind and field).
fn outcome(result: &Result<Vec<IncidentEvent>, Error>) -> String {
    match result {
        Ok(events) => events.iter().map(IncidentEvent::kind).collect::<Vec<_>>().join(","),
        Err(Error::Rule { rule, .. }) => format!("!{rule}"),
        // Never from the incident decider: shown apart if it ever were.
        Err(Error::ReviewRule { rule, .. }) => format!("!review:{rule}"),
        Err(Error::InvalidField { field, .. }) => format!("!invalid:{field}"),
        Err(Error::TooLarge { field, .. }) => format!("!too_large:{field}"),
        Err(Error::UnknownIncident(_)) => "!unknown_incident".into(),
        Err(Error::AlreadyExists(_)) => "!already_exists".into(),
    }
}

/// Given `steps`, when `who` sends `command`, expect `expected` (see
/// [`outcome`]). Accepted events must carry the decision's time and actor
/// and fold into the next version.
#[track_caller]
fn check(steps: &[(&str, Command)], (who, command): (&str, Command), expected: &str) {
    let state = given(steps);
    let now = t(steps.len());
    let result = decide(state.as_ref(), &command, &inc(), &actor(who), now);
    assert_eq!(outcome(&result), expected, "when {who} sends {command:?}");
    if let Ok(events) = result {
        let version = state.as_ref().map_or(0, Incident::version);
        for event in &events {
            assert_eq!((event.incident, event.at, &event.by), (inc(), now, &actor(who)));
        }
        let after = events.iter().fold(state, evolve).expect("the incident exists after its events");
        assert_eq!(after.version(), version + events.len() as u64);
    }
}

fn report_titled(title: &str) -> Command {
    Command::ReportIssue {
        source: ReportSource::Alertmanager,
        reporter: actor("alertmanager"),
        title: title.into(),
        description: "p99 above 2s".into(),
        service: Some(ServiceName::new("payments-api").unwrap()),
        customers: vec![],
        labels: BTreeMap::from([("alertname".into(), "HighLatency".into())]),
        dedup_key: Some(DedupKey::new("{}:{alertname=\"HighLatency\"}").unwrap()),
        started_at: Some("2026-03-01T11:55:00Z".parse().unwrap()),
    }
}
fn report() -> Command {
    report_titled("Checkout is slow")
}
fn merge() -> Command {
    Command::MergeReport {
        source: ReportSource::HelpDesk,
        reporter: actor("desk"),
        title: "Slow".into(),
        dedup_key: None,
    }
}
fn declare(severity: Severity) -> Command {
    Command::DeclareIncident { severity }
}
fn override_to(severity: Severity) -> Command {
    Command::OverrideSeverity { severity, reason: "executive escalation".into() }
}
fn assign(who: &str) -> Command {
    Command::AssignCommander { commander: actor(who) }
}
fn handoff(to: &str) -> Command {
    Command::RequestHandoff { to: actor(to) }
}
fn decline() -> Command {
    Command::DeclineHandoff { reason: "on leave".into() }
}
fn cancel() -> Command {
    Command::CancelHandoff { reason: "no answer".into() }
}
fn role(role: IncidentRole, who: &str) -> Command {
    Command::AssignRole { role, person: actor(who) }
}
fn update(text: &str) -> Command {
    Command::PostUpdate { audience: Audience::Executive, text: text.into() }
}
fn impact(customers_affected: u32, customers: &[&str], multi_customer: bool) -> Command {
    Command::RecordCustomerImpact {
        customers_affected,
        customers: customers.iter().map(|c| CustomerId::new(*c).unwrap()).collect(),
        multi_customer,
        summary: "checkout fails".into(),
    }
}
fn mitigate() -> Command {
    Command::Mitigate { summary: "rolled back".into() }
}
fn resolve() -> Command {
    Command::Resolve { summary: "fixed the query".into() }
}
fn reopen() -> Command {
    Command::Reopen { reason: "latency is back".into() }
}
fn validate(note: &str) -> Command {
    Command::ValidateResolution { note: note.into() }
}
fn join(who: &str) -> Command {
    Command::JoinBridge { participant: actor(who), role: None }
}
fn leave(who: &str) -> Command {
    Command::LeaveBridge { participant: actor(who) }
}
fn noise() -> Command {
    Command::MarkNoise { reason: "synthetic probe misfired".into() }
}

/// Builds a scenario from its steps.
fn steps(list: &[(&'static str, Command)]) -> Vec<(&'static str, Command)> {
    list.to_vec()
}
fn reported() -> Vec<(&'static str, Command)> {
    steps(&[("alertmanager", report())])
}
fn declared() -> Vec<(&'static str, Command)> {
    [reported(), steps(&[("alice", declare(Severity::Sev2))])].concat()
}
fn commanded() -> Vec<(&'static str, Command)> {
    [declared(), steps(&[("alice", assign("alice"))])].concat()
}
fn handing_off() -> Vec<(&'static str, Command)> {
    [commanded(), steps(&[("alice", handoff("bob"))])].concat()
}
fn mitigated() -> Vec<(&'static str, Command)> {
    [declared(), steps(&[("alice", mitigate())])].concat()
}
fn resolved() -> Vec<(&'static str, Command)> {
    [declared(), steps(&[("alice", resolve())])].concat()
}
fn closed() -> Vec<(&'static str, Command)> {
    [resolved(), steps(&[("alice", validate("checked dashboards"))])].concat()
}
fn with(base: Vec<(&'static str, Command)>, more: &[(&'static str, Command)]) -> Vec<(&'static str, Command)> {
    [base, more.to_vec()].concat()
}

#[test]
fn reporting() {
    check(&[], ("alertmanager", report()), "incident.reported.v1");
    check(&reported(), ("alertmanager", report()), "!already_exists");
    check(&[], ("alice", report_titled("  ")), "!invalid:title");
    check(&[], ("alice", report_titled(&"x".repeat(TITLE_CHARS_MAX))), "incident.reported.v1");
    check(&[], ("alice", report_titled(&"x".repeat(TITLE_CHARS_MAX + 1))), "!too_large:title");
    check(&[], ("alice", declare(Severity::Sev1)), "!unknown_incident");
    check(&[], ("alice", merge()), "!unknown_incident");
    check(&[], ("alice", join("bob")), "!unknown_incident");
}

#[test]
fn report_limits() {
    let with_report = |f: &dyn Fn(&mut Command)| {
        let mut command = report();
        f(&mut command);
        command
    };
    let long_description = with_report(&|c| {
        if let Command::ReportIssue { description, .. } = c {
            *description = "d".repeat(DESCRIPTION_CHARS_MAX + 1);
        }
    });
    let many_customers = with_report(&|c| {
        if let Command::ReportIssue { customers, .. } = c {
            *customers = vec![CustomerId::new("acme").unwrap(); CUSTOMERS_MAX + 1];
        }
    });
    let many_labels = with_report(&|c| {
        if let Command::ReportIssue { labels, .. } = c {
            *labels = (0..=LABELS_MAX).map(|i| (format!("l{i}"), String::new())).collect();
        }
    });
    let long_label = with_report(&|c| {
        if let Command::ReportIssue { labels, .. } = c {
            *labels = BTreeMap::from([("k".into(), "v".repeat(LABEL_CHARS_MAX + 1))]);
        }
    });
    let empty_label = with_report(&|c| {
        if let Command::ReportIssue { labels, .. } = c {
            *labels = BTreeMap::from([(String::new(), "v".into())]);
        }
    });
    check(&[], ("alice", long_description), "!too_large:description");
    check(&[], ("alice", many_customers), "!too_large:customers");
    check(&[], ("alice", many_labels), "!too_large:labels");
    check(&[], ("alice", long_label), "!too_large:labels");
    check(&[], ("alice", empty_label), "!invalid:labels");
    let labelled = |name: &str, value: &str| {
        let (name, value) = (name.to_owned(), value.to_owned());
        with_report(&move |c| {
            if let Command::ReportIssue { labels, .. } = c {
                *labels = BTreeMap::from([(name.clone(), value.clone())]);
            }
        })
    };
    check(&[], ("alice", labelled("k", "a\nb")), "!invalid:labels");
    check(&[], ("alice", labelled(" k", "v")), "!invalid:labels");
    check(&[], ("alice", labelled("k", "")), "incident.reported.v1");
    let events = decide(None, &labelled("k", " v "), &inc(), &actor("alice"), t(0)).unwrap();
    let Change::Reported(reported) = &events[0].change else { panic!("{events:?}") };
    assert_eq!(reported.labels["k"], "v", "label values are kept trimmed");
}

/// The issue's defect: a title of control characters was accepted.
#[test]
fn control_characters_are_refused_in_every_text() {
    check(&[], ("alice", report_titled("\u{0}\u{1}\u{2}")), "!invalid:title");
    check(&[], ("alice", report_titled("Checkout\nis slow")), "!invalid:title");
    check(&declared(), ("alice", update("line one\n\tline two")), "incident.status_update_posted.v1");
    check(&declared(), ("alice", update("bell\u{7}")), "!invalid:text");
}

#[test]
fn merging_reports() {
    check(&reported(), ("desk", merge()), "incident.report_merged.v1");
    check(&declared(), ("desk", merge()), "incident.report_merged.v1");
    check(&mitigated(), ("desk", merge()), "incident.report_merged.v1");
    check(&resolved(), ("desk", merge()), "!merge.not_open");
    check(&closed(), ("desk", merge()), "!merge.not_open");
    let twice = given(&with(reported(), &[("desk", merge()), ("desk", merge())])).unwrap();
    assert_eq!((twice.report_count(), twice.last_seen_at(), twice.first_reported_at()), (3, t(2), t(0)));
}

#[test]
fn declaring_and_severity() {
    check(&reported(), ("alice", declare(Severity::Sev1)), "incident.declared.v1");
    check(&declared(), ("alice", declare(Severity::Sev1)), "!declare.only_reported");
    check(&resolved(), ("alice", declare(Severity::Sev1)), "!declare.only_reported");
    check(&declared(), ("alice", override_to(Severity::Sev1)), "incident.severity_overridden.v1");
    check(&mitigated(), ("alice", override_to(Severity::Sev3)), "incident.severity_overridden.v1");
    check(&declared(), ("alice", override_to(Severity::Sev2)), "!override.same_severity");
    check(&reported(), ("alice", override_to(Severity::Sev1)), "!override.requires_declared_or_mitigated");
    check(&resolved(), ("alice", override_to(Severity::Sev1)), "!override.requires_declared_or_mitigated");
    let empty_reason = Command::OverrideSeverity { severity: Severity::Sev1, reason: " \n".into() };
    check(&declared(), ("alice", empty_reason), "!invalid:reason");
    let after = given(&with(declared(), &[("alice", override_to(Severity::Sev1))])).unwrap();
    assert_eq!((after.severity(), after.severity_overridden()), (Some(Severity::Sev1), true));
}

/// The evaluator's `incident.severity_assessed.v1` giving `severity`.
fn assessed(severity: Severity, at: DateTime<Utc>) -> IncidentEvent {
    IncidentEvent {
        incident: inc(),
        at,
        by: actor("klaxon-severity"),
        change: Change::SeverityAssessed(SeverityAssessed {
            severity,
            rule: None,
            reason: "No rule matched".into(),
            reasons: Vec::new(),
        }),
    }
}

#[test]
fn an_assessment_sets_the_severity_only_until_a_person_sets_it() {
    let severity_after = |steps: Vec<(&'static str, Command)>, assessment: Severity| {
        let state = given(&steps);
        let at = t(steps.len());
        evolve(state, &assessed(assessment, at)).unwrap().severity()
    };
    // Before a declaration the evaluator's assessment is the severity.
    assert_eq!(severity_after(reported(), Severity::Sev4), Some(Severity::Sev4));
    // A declared severity is a person's: an assessment that lands after it
    // (decided on the report, before the declaration) changes nothing,
    // neither lower nor higher.
    let sev1 = || with(reported(), &[("alice", declare(Severity::Sev1))]);
    assert_eq!(severity_after(sev1(), Severity::Sev4), Some(Severity::Sev1));
    assert_eq!(severity_after(declared(), Severity::Sev1), Some(Severity::Sev2));
    // Nor after an override, a mitigation or a reopening.
    let overridden = with(declared(), &[("alice", override_to(Severity::Sev1))]);
    assert_eq!(severity_after(overridden, Severity::Sev3), Some(Severity::Sev1));
    assert_eq!(severity_after(mitigated(), Severity::Sev1), Some(Severity::Sev2));
    let reopen = Command::Reopen { reason: "back".into() };
    assert_eq!(severity_after(with(resolved(), &[("alice", reopen)]), Severity::Sev4), Some(Severity::Sev2));
}

#[test]
fn assigning_the_commander() {
    check(&declared(), ("alice", assign("bob")), "incident.commander_assigned.v1");
    check(&mitigated(), ("alice", assign("bob")), "incident.commander_assigned.v1");
    check(&commanded(), ("carol", assign("bob")), "incident.commander_assigned.v1");
    check(&commanded(), ("carol", assign("alice")), "!assign.same_commander");
    check(&reported(), ("alice", assign("bob")), "!assign.requires_declared_or_mitigated");
    check(&resolved(), ("alice", assign("bob")), "!assign.requires_declared_or_mitigated");
    check(&handing_off(), ("carol", assign("carol")), "!assign.handoff_pending");
}

#[test]
fn requesting_a_handoff() {
    check(&commanded(), ("alice", handoff("bob")), "incident.handoff_requested.v1");
    check(&commanded(), ("bob", handoff("bob")), "!handoff.only_by_commander");
    check(&commanded(), ("alice", handoff("alice")), "!handoff.to_current_commander");
    check(&declared(), ("alice", handoff("bob")), "!handoff.no_commander");
    check(&handing_off(), ("alice", handoff("carol")), "!handoff.already_pending");
    let resolved_with_commander = with(commanded(), &[("alice", resolve())]);
    check(&resolved_with_commander, ("alice", handoff("bob")), "!handoff.not_open");
}

#[test]
fn answering_a_handoff() {
    check(&handing_off(), ("bob", Command::AcceptHandoff), "incident.handoff_accepted.v1");
    check(&handing_off(), ("carol", Command::AcceptHandoff), "!handoff.accept_only_by_recipient");
    check(&handing_off(), ("alice", Command::AcceptHandoff), "!handoff.accept_only_by_recipient");
    check(&handing_off(), ("bob", decline()), "incident.handoff_declined.v1");
    check(&handing_off(), ("carol", decline()), "!handoff.decline_only_by_recipient");
    check(&handing_off(), ("carol", cancel()), "incident.handoff_cancelled.v1");
    check(&commanded(), ("bob", Command::AcceptHandoff), "!handoff.none_pending");
    check(&commanded(), ("bob", decline()), "!handoff.none_pending");
    check(&commanded(), ("alice", cancel()), "!handoff.none_pending");
    check(&handing_off(), ("bob", Command::DeclineHandoff { reason: String::new() }), "!invalid:reason");
    let accepted = with(handing_off(), &[("bob", Command::AcceptHandoff)]);
    check(&accepted, ("bob", Command::AcceptHandoff), "!handoff.none_pending");
    check(&accepted, ("bob", handoff("alice")), "incident.handoff_requested.v1");
    check(&accepted, ("alice", handoff("carol")), "!handoff.only_by_commander");
}

#[test]
fn the_commander_changes_only_on_acceptance() {
    let commander = |steps: &[(&str, Command)]| given(steps).unwrap().commander().cloned();
    let pending = given(&handing_off()).unwrap();
    assert_eq!(pending.commander(), Some(&actor("alice")));
    assert_eq!(
        pending.pending_handoff().map(|h| (&h.from, &h.to, h.requested_at)),
        Some((&actor("alice"), &actor("bob"), t(3)))
    );
    assert_eq!(commander(&with(handing_off(), &[("bob", Command::AcceptHandoff)])), Some(actor("bob")));
    assert_eq!(commander(&with(handing_off(), &[("bob", decline())])), Some(actor("alice")));
    assert_eq!(commander(&with(handing_off(), &[("carol", cancel())])), Some(actor("alice")));
    let declined = given(&with(handing_off(), &[("bob", decline())])).unwrap();
    assert_eq!(declined.pending_handoff(), None);
    let accepted = given(&with(handing_off(), &[("bob", Command::AcceptHandoff)])).unwrap();
    assert_eq!((accepted.pending_handoff(), accepted.commander_assigned_at()), (None, Some(t(2))));
}

#[test]
fn assigning_roles() {
    check(&reported(), ("alice", role(IncidentRole::Scribe, "carol")), "incident.role_assigned.v1");
    check(&mitigated(), ("alice", role(IncidentRole::CommunicationsLead, "carol")), "incident.role_assigned.v1");
    check(&declared(), ("alice", role(IncidentRole::Commander, "carol")), "!role.commander_reserved");
    check(&resolved(), ("alice", role(IncidentRole::Scribe, "carol")), "!role.not_open");
    let scribe = with(declared(), &[("alice", role(IncidentRole::Scribe, "carol"))]);
    check(&scribe, ("alice", role(IncidentRole::Scribe, "carol")), "!role.already_assigned");
    check(&scribe, ("alice", role(IncidentRole::Scribe, "dave")), "incident.role_assigned.v1");
    check(&scribe, ("alice", role(IncidentRole::SubjectMatterExpert, "carol")), "incident.role_assigned.v1");
    let full: Vec<_> =
        (0..ROLE_HOLDERS_MAX).map(|i| ("alice", role(IncidentRole::SubjectMatterExpert, &format!("sme{i}")))).collect();
    check(&with(declared(), &full), ("alice", role(IncidentRole::SubjectMatterExpert, "late")), "!role.full");
    let state = given(&scribe).unwrap();
    assert_eq!(state.roles(), &BTreeMap::from([(IncidentRole::Scribe, BTreeSet::from([actor("carol")]))]));
}

#[test]
fn posting_updates() {
    check(&reported(), ("alice", update("investigating")), "incident.status_update_posted.v1");
    check(&declared(), ("alice", update("investigating")), "incident.status_update_posted.v1");
    check(&mitigated(), ("alice", update("rolled back")), "incident.status_update_posted.v1");
    check(&resolved(), ("alice", update("resolved")), "incident.status_update_posted.v1");
    check(&closed(), ("alice", update("too late")), "!update.closed");
    check(&declared(), ("alice", update("   ")), "!invalid:text");
    check(&declared(), ("alice", update(&"x".repeat(NOTE_CHARS_MAX))), "incident.status_update_posted.v1");
    check(&declared(), ("alice", update(&"é".repeat(NOTE_CHARS_MAX + 1))), "!too_large:text");
    let state = given(&with(declared(), &[("carol", update("  first ")), ("dave", update("second"))])).unwrap();
    let latest = state.latest_update(Audience::Executive).unwrap();
    assert_eq!((latest.text.as_str(), &latest.by, latest.at), ("second", &actor("dave"), t(3)));
    assert_eq!(state.latest_update(Audience::Internal), None);
}

#[test]
fn recording_customer_impact() {
    check(&declared(), ("alice", impact(1, &["acme"], false)), "incident.customer_impact_recorded.v1");
    check(&reported(), ("alice", impact(0, &[], false)), "incident.customer_impact_recorded.v1");
    check(&resolved(), ("alice", impact(1, &["acme"], false)), "!impact.not_open");
    check(&declared(), ("alice", impact(1, &["acme", "globex"], false)), "!invalid:customers_affected");
    let many: Vec<String> = (0..=CUSTOMERS_MAX).map(|i| format!("c{i}")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    check(&declared(), ("alice", impact(5_000, &many, true)), "!too_large:customers");
    let multi = |command: Command| given(&with(declared(), &[("alice", command)])).unwrap().multi_customer();
    assert!(!multi(impact(1, &["acme"], false)));
    assert!(multi(impact(2, &["acme", "globex"], false)));
    assert!(multi(impact(40, &[], false)));
    assert!(multi(impact(1, &["acme"], true)));
    let state = given(&with(declared(), &[("alice", impact(3, &["globex", "acme", "acme"], false))])).unwrap();
    assert_eq!(state.customers().iter().map(CustomerId::as_str).collect::<Vec<_>>(), ["acme", "globex"]);
    assert_eq!((state.customers_affected(), state.impact_summary()), (3, Some("checkout fails")));
}

#[test]
fn mitigating_and_resolving() {
    check(&declared(), ("alice", mitigate()), "incident.mitigated.v1");
    check(&reported(), ("alice", mitigate()), "!mitigate.only_declared");
    check(&mitigated(), ("alice", mitigate()), "!mitigate.only_declared");
    check(&resolved(), ("alice", mitigate()), "!mitigate.only_declared");
    check(&declared(), ("alice", Command::Mitigate { summary: "".into() }), "!invalid:summary");
    check(&declared(), ("alice", resolve()), "incident.resolved.v1");
    check(&mitigated(), ("alice", resolve()), "incident.resolved.v1");
    check(&resolved(), ("alice", resolve()), "!resolve.already_resolved");
    check(&closed(), ("alice", resolve()), "!resolve.already_resolved");
    check(&reported(), ("alice", resolve()), "!resolve.requires_declared");
}

#[test]
fn validating_and_reopening() {
    check(&resolved(), ("alice", validate("no errors for 24h")), "incident.resolution_validated.v1");
    check(&declared(), ("alice", validate("no errors for 24h")), "!validate.only_resolved");
    check(&closed(), ("alice", validate("again")), "!validate.only_resolved");
    check(&resolved(), ("alice", validate(" ")), "!invalid:note");
    check(&resolved(), ("alice", validate(&"n".repeat(NOTE_CHARS_MAX + 1))), "!too_large:note");
    check(&resolved(), ("alice", reopen()), "incident.reopened.v1");
    check(&closed(), ("alice", reopen()), "incident.reopened.v1");
    check(&declared(), ("alice", reopen()), "!reopen.only_resolved_or_closed");
    check(&mitigated(), ("alice", reopen()), "!reopen.only_resolved_or_closed");
    let reopened = with(mitigated(), &[("alice", resolve()), ("alice", reopen())]);
    check(&reopened, ("alice", resolve()), "incident.resolved.v1");
    check(&reopened, ("alice", mitigate()), "incident.mitigated.v1");
    check(&reopened, ("alice", validate("early")), "!validate.only_resolved");
}

#[test]
fn reopening_keeps_first_times_and_clears_the_attempt() {
    let state =
        given(&with(mitigated(), &[("alice", resolve()), ("alice", validate("ok")), ("alice", reopen())])).unwrap();
    assert_eq!(state.status(), Status::Declared);
    assert!(state.is_open());
    assert_eq!((state.declared_at(), state.reopen_count()), (Some(t(1)), 1));
    assert_eq!((state.mitigated_at(), state.resolved_at(), state.closed_at()), (None, None, None));
    assert_eq!((state.mitigation_summary(), state.resolution_summary()), (None, None));
}

#[test]
fn the_bridge() {
    check(&reported(), ("bob", join("bob")), "incident.participant_joined.v1");
    check(&resolved(), ("bob", join("bob")), "incident.participant_joined.v1");
    check(&closed(), ("bob", join("bob")), "!bridge.closed");
    let joined = with(declared(), &[("bob", join("bob"))]);
    check(&joined, ("bob", join("bob")), "!bridge.already_joined");
    check(&joined, ("bob", leave("bob")), "incident.participant_left.v1");
    check(&joined, ("carol", leave("carol")), "!bridge.not_joined");
    check(
        &with(joined.clone(), &[("alice", resolve()), ("alice", validate("ok"))]),
        ("bob", leave("bob")),
        "incident.participant_left.v1",
    );
    let full: Vec<_> = (0..BRIDGE_PARTICIPANTS_MAX).map(|i| ("bot", join(&format!("p{i}")))).collect();
    check(&with(declared(), &full), ("late", join("late")), "!bridge.full");
    let state = given(&with(joined, &[("carol", join("carol")), ("bob", leave("bob"))])).unwrap();
    assert_eq!(state.participants(), &BTreeSet::from([actor("carol")]));
}

#[test]
fn marking_noise() {
    check(&reported(), ("alice", noise()), "incident.marked_noise.v1");
    check(&declared(), ("alice", noise()), "incident.marked_noise.v1");
    check(&mitigated(), ("alice", noise()), "incident.marked_noise.v1");
    check(&resolved(), ("alice", noise()), "incident.marked_noise.v1");
    check(&closed(), ("alice", noise()), "incident.marked_noise.v1");
    check(&[], ("alice", noise()), "!unknown_incident");
    check(&with(declared(), &[("alice", noise())]), ("bob", noise()), "!noise.already_marked");
    check(&with(closed(), &[("alice", noise()), ("alice", reopen())]), ("alice", noise()), "!noise.already_marked");
    check(&declared(), ("alice", Command::MarkNoise { reason: "  ".into() }), "!invalid:reason");
    check(&declared(), ("alice", Command::MarkNoise { reason: "r".repeat(NOTE_CHARS_MAX + 1) }), "!too_large:reason");
    let before = given(&declared()).unwrap();
    assert_eq!((before.is_noise(), before.noise_reason()), (false, None));
    let marked =
        given(&with(declared(), &[("alice", Command::MarkNoise { reason: " test alert \n".into() })])).unwrap();
    assert_eq!(
        (marked.is_noise(), marked.noise_reason(), marked.status()),
        (true, Some("test alert"), Status::Declared)
    );
    let reopened = given(&with(resolved(), &[("alice", noise()), ("alice", reopen())])).unwrap();
    assert!(reopened.is_noise(), "reopening keeps the noise mark");
}

#[test]
fn the_first_report_shapes_the_incident() {
    let state = given(&reported()).unwrap();
    assert_eq!((state.id(), state.version(), state.status()), (inc(), 1, Status::Reported));
    assert_eq!((state.title(), state.description()), ("Checkout is slow", "p99 above 2s"));
    assert_eq!((state.severity(), state.commander(), state.report_count()), (None, None, 1));
    assert_eq!((state.source(), state.reporter()), (ReportSource::Alertmanager, &actor("alertmanager")));
    assert_eq!(state.started_at(), Some("2026-03-01T11:55:00Z".parse().unwrap()));
    assert_eq!(state.service().map(ServiceName::as_str), Some("payments-api"));
    assert!(state.is_open());
    let closed = given(&closed()).unwrap();
    assert_eq!((closed.status(), closed.version(), closed.closed_at()), (Status::Closed, 4, Some(t(3))));
    assert!(!closed.is_open());
}

#[test]
fn decided_text_is_trimmed() {
    let events = decide(None, &report_titled("  Checkout is slow \n"), &inc(), &actor("alice"), t(0)).unwrap();
    let Change::Reported(reported) = &events[0].change else { panic!("expected a report") };
    assert_eq!(reported.title, "Checkout is slow");
}

#[test]
fn rule_errors_name_the_rule_and_the_state() {
    let state = given(&resolved());
    let error = decide(state.as_ref(), &resolve(), &inc(), &actor("alice"), t(9)).unwrap_err();
    expect_test::expect![
        "rule resolve.already_resolved forbids this while the incident is resolved: INC-7 is already resolved"
    ]
    .assert_eq(&error.to_string());
}

/// A command from a small alphabet, sent by one of three people, so that
/// random sequences reach every status and every handoff state.
fn any_step() -> impl proptest::strategy::Strategy<Value = (&'static str, Command)> {
    use proptest::prelude::*;
    let who = prop_oneof![Just("alice"), Just("bob"), Just("carol")];
    let command = prop_oneof![
        Just(report()),
        Just(merge()),
        proptest::sample::select(Severity::ALL.to_vec()).prop_map(declare),
        proptest::sample::select(Severity::ALL.to_vec()).prop_map(override_to),
        Just(assign("alice")),
        Just(assign("bob")),
        Just(handoff("bob")),
        Just(handoff("carol")),
        Just(Command::AcceptHandoff),
        Just(decline()),
        Just(cancel()),
        Just(role(IncidentRole::Scribe, "carol")),
        Just(update("status")),
        Just(impact(2, &["acme"], false)),
        Just(mitigate()),
        Just(resolve()),
        Just(reopen()),
        Just(validate("ok")),
        Just(join("bob")),
        Just(leave("bob")),
        Just(noise()),
    ];
    (who, command)
}

/// Every free-text field of every command: the state it is decided on, the
/// command with the text in the field, the field's name and its kind.
type TextField = (Vec<(&'static str, Command)>, fn(String) -> Command, &'static str, crate::text::Kind);

fn text_fields() -> Vec<TextField> {
    use crate::text::{DESCRIPTION, NOTE, TITLE};
    let report_with_description = |description: String| match report() {
        Command::ReportIssue { source, reporter, title, service, customers, labels, dedup_key, started_at, .. } => {
            Command::ReportIssue {
                source,
                reporter,
                title,
                description,
                service,
                customers,
                labels,
                dedup_key,
                started_at,
            }
        }
        _ => unreachable!(),
    };
    let merge_titled = |title: String| Command::MergeReport {
        source: ReportSource::HelpDesk,
        reporter: actor("desk"),
        title,
        dedup_key: None,
    };
    vec![
        (vec![], |t| report_titled(&t), "title", TITLE),
        (vec![], report_with_description, "description", DESCRIPTION),
        (reported(), merge_titled, "title", TITLE),
        (declared(), |reason| Command::OverrideSeverity { severity: Severity::Sev1, reason }, "reason", NOTE),
        (handing_off(), |reason| Command::DeclineHandoff { reason }, "reason", NOTE),
        (handing_off(), |reason| Command::CancelHandoff { reason }, "reason", NOTE),
        (declared(), |text| Command::PostUpdate { audience: Audience::Internal, text }, "text", NOTE),
        (
            declared(),
            |summary| Command::RecordCustomerImpact {
                customers_affected: 1,
                customers: vec![],
                multi_customer: false,
                summary,
            },
            "summary",
            NOTE,
        ),
        (declared(), |summary| Command::Mitigate { summary }, "summary", NOTE),
        (declared(), |summary| Command::Resolve { summary }, "summary", NOTE),
        (resolved(), |reason| Command::Reopen { reason }, "reason", NOTE),
        (resolved(), |note| Command::ValidateResolution { note }, "note", NOTE),
        (declared(), |reason| Command::MarkNoise { reason }, "reason", NOTE),
    ]
}

proptest::proptest! {
    /// The decider applies the one text rule to every free-text field:
    /// whatever string is sent, it refuses exactly what the rule refuses,
    /// with the rule's error, and accepts the rest.
    #[test]
    fn every_text_field_follows_the_text_rule(
        field in proptest::sample::select((0..text_fields().len()).collect::<Vec<_>>()),
        value in crate::text::tests::text(),
    ) {
        let (steps, command, name, kind) = text_fields().swap_remove(field);
        let state = given(&steps);
        let decided = decide(state.as_ref(), &command(value.clone()), &inc(), &actor("bob"), t(steps.len()));
        match kind.check(name, &value) {
            Ok(_) => proptest::prop_assert!(decided.is_ok(), "{name} {value:?}: {decided:?}"),
            Err(e) => proptest::prop_assert_eq!(decided, Err(e)),
        }
    }

    /// Whatever is sent, accepted events survive the log format, and
    /// rebuilding from the decoded log equals the live state.
    #[test]
    fn rebuilding_from_the_log_equals_the_live_state(
        sequence in proptest::collection::vec(any_step(), 1..40),
    ) {
        let mut live: Option<Incident> = None;
        let mut log = Vec::new();
        for (i, (who, command)) in sequence.iter().enumerate() {
            let Ok(events) = decide(live.as_ref(), command, &inc(), &actor(who), t(i)) else { continue };
            for event in events {
                live = evolve(live, &event);
                log.push((event.kind(), event.to_json().to_string()));
            }
        }
        let rebuilt = log
            .iter()
            .map(|(kind, data)| IncidentEvent::from_json(kind, data).unwrap())
            .fold(None, |state, event| evolve(state, &event));
        proptest::prop_assert_eq!(live.as_ref().map(Incident::version), Some(log.len() as u64).filter(|n| *n > 0));
        proptest::prop_assert_eq!(rebuilt, live);
    }
}

fn catalog_of(team: &str, tier: i64) -> ServiceCatalog {
    let config: crate::catalog::ServiceCatalogConfig = serde_json::from_value(serde_json::json!([
        {"name": "payments-api", "team": team, "tier": tier, "escalation_policy": "p"},
    ]))
    .unwrap();
    config.validate("services").unwrap()
}

/// Decides `command` on `state` as intake does: with `catalog`'s team and
/// tier recorded in the events.
fn decided(state: Option<Incident>, command: &Command, catalog: &ServiceCatalog, i: usize) -> Option<Incident> {
    let mut events = decide(state.as_ref(), command, &inc(), &actor("maria"), t(i)).unwrap();
    record_catalog(&mut events, state.as_ref(), catalog);
    events.iter().fold(state, evolve)
}

/// The team and tier an incident is filed under are the catalog's when its
/// report was recorded, then its declaration's; a catalog changed later does
/// not move it. An incident whose events recorded none (written before
/// intake recorded it) takes the catalog in effect.
#[test]
fn an_incident_keeps_the_team_and_tier_recorded_in_its_events() {
    let (payments, checkout) = (catalog_of("payments", 1), catalog_of("checkout", 3));
    let reported = decided(None, &report(), &payments, 0).unwrap();
    let recorded = Catalogued { team: "payments".into(), tier: Tier::MOST_CRITICAL };
    assert_eq!(reported.catalogued(), Some(&recorded));
    assert_eq!((reported.team(&checkout), reported.tier(&checkout)), (Some("payments"), Some(Tier::MOST_CRITICAL)));

    let declared = decided(Some(reported), &Command::DeclareIncident { severity: Severity::Sev2 }, &checkout, 1);
    let declared = declared.unwrap();
    assert_eq!((declared.team(&payments), declared.tier(&payments)), (Some("checkout"), Some(Tier::LEAST_CRITICAL)));

    // A later command records nothing and changes nothing of it.
    let update = Command::PostUpdate { audience: Audience::Internal, text: "looking".into() };
    let updated = decided(Some(declared), &update, &payments, 2).unwrap();
    assert_eq!(updated.team(&payments), Some("checkout"));

    // Without a recording: the catalog in effect, and nothing for an
    // uncatalogued service.
    let old = given(&[("alertmanager", report())]).unwrap();
    assert_eq!(old.catalogued(), None);
    assert_eq!((old.team(&payments), old.team(&checkout)), (Some("payments"), Some("checkout")));
    let uncatalogued = decided(None, &report(), &ServiceCatalog::default(), 0).unwrap();
    assert_eq!((uncatalogued.catalogued(), uncatalogued.team(&checkout)), (None, Some("checkout")));
}
