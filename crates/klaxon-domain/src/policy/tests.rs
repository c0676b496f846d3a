//! The policy as one unit: parsing a candidate, replaying a recorded
//! history under it, and linting it.
//!
//! Histories are recorded the way the services record them: the severity
//! evaluator's `assess` and the pager's `decide` under the *current*
//! policy, at each event's time and at each `next_due`.

use chrono::{DateTime, TimeDelta, Utc};

use super::*;
use crate::ids::{ActorId, IncidentId, ReportSource, ServiceName, Severity};
use crate::incident::{Change, CommanderAssigned, Incident, IncidentEvent, Reported, Resolved};
use crate::paging::{IncidentPaging, PageEvent};

/// Monday 2026-03-02 00:00 UTC.
fn base() -> DateTime<Utc> {
    "2026-03-02T00:00:00Z".parse().unwrap()
}

/// `minutes` after [`base`].
fn at(minutes: i64) -> DateTime<Utc> {
    base() + TimeDelta::minutes(minutes)
}

fn actor(name: &str) -> ActorId {
    ActorId::new(name).unwrap()
}

/// The current configuration: payments (tier 1) pages ana then carl;
/// search (tier 2) is Sev3 by rule `search-slow` and pages nobody.
const CURRENT: &str = r#"
listen = "127.0.0.1:7600"   # not policy: ignored here

[[services]]
name = "payments"
team = "payments"
tier = 1
escalation_policy = "payments"

[[services]]
name = "search"
team = "discovery"
tier = 2
escalation_policy = "search"

[severity]
default = "sev4"

[[severity.rules]]
id = "tier1-down"
severity = "sev1"
reason = "A tier-1 service is down"
when = { service_tier = [1], words = ["down"] }

[[severity.rules]]
id = "search-slow"
severity = "sev3"
reason = "Search is slow"
when = { service = ["search"] }

[[schedules]]
name = "payments-primary"
time_zone = "UTC"
layers = [ { name = "weekly", participants = ["ana"], shift = "7d", handoff = "00:00", start = "2026-03-02" } ]

[[schedules]]
name = "payments-secondary"
time_zone = "UTC"
layers = [ { name = "weekly", participants = ["carl"], shift = "7d", handoff = "00:00", start = "2026-03-02" } ]

[[schedules]]
name = "search-primary"
time_zone = "UTC"
layers = [ { name = "weekly", participants = ["sam"], shift = "7d", handoff = "00:00", start = "2026-03-02" } ]

[[schedules]]
name = "duty"
time_zone = "UTC"
layers = [ { name = "weekly", participants = ["dora"], shift = "7d", handoff = "00:00", start = "2026-03-02" } ]

[paging]
severities = ["sev1", "sev2"]
duty_manager_schedule = "duty"
default_policy = "payments"
managers = ["maria"]
channels = ["pager"]

[slo.sev1]
ack_minutes = 8
assign_minutes = 10

[[escalation_policies]]
name = "payments"
levels = [
  { timeout_minutes = 5, targets = [ { schedule = "payments-primary" } ] },
  { timeout_minutes = 10, targets = [ { schedule = "payments-secondary" } ] },
]

[[escalation_policies]]
name = "search"
levels = [ { timeout_minutes = 5, targets = [ { schedule = "search-primary" } ] } ]

[[channels]]
name = "pager"
kind = "log"
"#;

fn policy(text: &str) -> (Sections, Policy) {
    parse(text).unwrap_or_else(|e| panic!("{e}"))
}

/// `CURRENT` with `from` replaced by `to` (which must occur).
fn candidate(from: &str, to: &str) -> String {
    assert!(CURRENT.contains(from), "{from:?} is not in the configuration");
    CURRENT.replacen(from, to, 1)
}

/// One recorded event.
enum Recorded {
    Incident(IncidentEvent),
    Page(PageEvent),
}

/// A history recorded by the services under one policy.
struct History {
    policy: Policy,
    log: Vec<Recorded>,
    incidents: std::collections::BTreeMap<IncidentId, (Incident, IncidentPaging)>,
}

impl History {
    fn new(text: &str) -> History {
        History { policy: policy(text).1, log: Vec::new(), incidents: Default::default() }
    }

    /// What the pager does up to `to`: every timer that falls due.
    fn tick(&mut self, id: IncidentId, to: DateTime<Utc>) {
        let config = self.policy.paging.as_ref().unwrap();
        let (_, paging) = self.incidents.get_mut(&id).unwrap();
        while let Some(due) = crate::paging::next_due(paging, config).filter(|due| *due <= to) {
            let events = crate::paging::decide(paging, config, &self.policy.catalog, &self.policy.schedules, due);
            assert!(!events.is_empty(), "next_due promised something at {due}");
            for event in events {
                paging.apply_page(&event);
                self.log.push(Recorded::Page(event));
            }
        }
    }

    /// Records an incident event, then what the evaluator and the pager do
    /// about it.
    fn record(&mut self, id: IncidentId, at: DateTime<Utc>, by: &str, change: Change) {
        if !self.incidents.contains_key(&id) {
            let paging = IncidentPaging::new(id, self.policy.paging.as_ref().unwrap());
            let event = IncidentEvent { incident: id, at, by: actor(by), change: change.clone() };
            let incident = crate::incident::evolve(None, &event).unwrap();
            self.incidents.insert(id, (incident, paging));
            self.incidents.get_mut(&id).unwrap().1.apply_incident(&event);
            self.log.push(Recorded::Incident(event));
        } else {
            self.tick(id, at);
            let event = IncidentEvent { incident: id, at, by: actor(by), change };
            let (incident, paging) = self.incidents.get_mut(&id).unwrap();
            *incident = crate::incident::evolve(Some(incident.clone()), &event).unwrap();
            paging.apply_incident(&event);
            self.log.push(Recorded::Incident(event));
        }
        let (incident, paging) = self.incidents.get_mut(&id).unwrap();
        if let Some(assessed) = crate::severity::assess(incident, &self.policy.rules, &self.policy.catalog, at) {
            *incident = crate::incident::evolve(Some(incident.clone()), &assessed).unwrap();
            paging.apply_incident(&assessed);
            self.log.push(Recorded::Incident(assessed));
        }
        self.tick(id, at);
    }

    fn report(&mut self, n: u64, minute: i64, service: &str, title: &str) -> IncidentId {
        let id = IncidentId::from_number(n).unwrap();
        let change = Change::Reported(Reported {
            source: ReportSource::Alertmanager,
            reporter: actor("alertmanager"),
            title: title.into(),
            description: String::new(),
            service: Some(ServiceName::new(service).unwrap()),
            customers: Default::default(),
            labels: Default::default(),
            dedup_key: None,
            started_at: None,
            catalogued: None,
        });
        self.record(id, at(minute), "alertmanager", change);
        id
    }

    /// `who` acknowledges their latest page of `id`.
    fn ack(&mut self, id: IncidentId, minute: i64, who: &str) {
        self.tick(id, at(minute));
        let config = self.policy.paging.as_ref().unwrap();
        let (_, paging) = self.incidents.get_mut(&id).unwrap();
        let page = paging.pages().filter(|p| p.responder() == &actor(who)).last().unwrap().id();
        let event = crate::paging::acknowledge(paging, &page, &actor(who), config, at(minute)).unwrap();
        paging.apply_page(&event);
        self.log.push(Recorded::Page(event));
    }

    fn assign(&mut self, id: IncidentId, minute: i64, commander: &str) {
        let change = Change::CommanderAssigned(CommanderAssigned { commander: actor(commander), previous: None });
        self.record(id, at(minute), "maria", change);
    }

    fn resolve(&mut self, id: IncidentId, minute: i64) {
        self.record(id, at(minute), "maria", Change::Resolved(Resolved { summary: "fixed".into() }));
    }

    /// Replays the history under `text` up to `end` minutes.
    fn replay(&self, text: &str, window: Window, end: i64) -> Outcome {
        let (_, candidate) = policy(text);
        let mut replay = Replay::new(&candidate, window);
        for record in &self.log {
            match record {
                Recorded::Incident(event) => replay.incident(event).unwrap(),
                Recorded::Page(event) => replay.page(event),
            }
        }
        replay.finish(at(end))
    }
}

/// Two incidents: payments is down (Sev1, ana paged, acknowledges at 00:02,
/// maria commands at 00:03, resolved at 00:30), search is slow (Sev3, no
/// page).
fn two_incidents() -> History {
    let mut h = History::new(CURRENT);
    let payments = h.report(1, 0, "payments", "Checkout is down");
    let search = h.report(2, 1, "search", "Search results are slow");
    h.ack(payments, 2, "ana");
    h.assign(payments, 3, "maria");
    h.resolve(payments, 30);
    h.resolve(search, 40);
    h
}

fn pages(list: &[PageSeen]) -> Vec<String> {
    list.iter()
        .map(|p| {
            let level = p.level.map_or("-".to_owned(), |l| l.to_string());
            format!("{} {} L{level} {}", (p.at - base()).num_minutes(), p.responder, p.reason)
        })
        .collect()
}

fn diff_of(outcome: &Outcome, n: u64) -> &IncidentDiff {
    outcome.incidents.iter().find(|i| i.incident == IncidentId::from_number(n).unwrap()).unwrap()
}

#[test]
fn the_current_policy_replayed_changes_nothing() {
    let outcome = two_incidents().replay(CURRENT, Window::default(), 60);
    assert_eq!(outcome.summary, Summary { incidents: 2, ..Summary::default() });
    let payments = diff_of(&outcome, 1);
    assert_eq!(pages(&payments.pages_after), ["0 ana L0 severity"]);
    assert_eq!(payments.pages_after, payments.pages_before);
    assert_eq!(payments.rule_after.as_deref(), Some("tier1-down"));
}

#[test]
fn a_changed_rule_changes_the_severity_of_the_affected_incidents_with_the_right_rule_ids() {
    let text = candidate("id = \"search-slow\"\nseverity = \"sev3\"", "id = \"search-degraded\"\nseverity = \"sev2\"");
    let outcome = two_incidents().replay(&text, Window::default(), 60);
    assert_eq!(outcome.summary.incidents, 2);
    assert_eq!(outcome.summary.severity_changed, 1);
    assert_eq!(outcome.summary.rule_changed, 1);
    let search = diff_of(&outcome, 2);
    assert_eq!((search.severity_before, search.rule_before.as_deref()), (Some(Severity::Sev3), Some("search-slow")));
    assert_eq!((search.severity_after, search.rule_after.as_deref()), (Some(Severity::Sev2), Some("search-degraded")));
    // Sev2 pages: sam would have been paged at once, and nobody answered.
    assert!(search.paging_differs);
    assert_eq!(pages(&search.pages_before), Vec::<String>::new());
    assert_eq!(pages(&search.pages_after)[0], "1 sam L0 severity");
    let payments = diff_of(&outcome, 1);
    assert!(!payments.differs(), "{payments:#?}");
}

#[test]
fn a_changed_policy_changes_who_is_paged_when() {
    // payments pages its secondary first, with a 2-minute level.
    let text = candidate(
        "{ timeout_minutes = 5, targets = [ { schedule = \"payments-primary\" } ] },",
        "{ timeout_minutes = 2, targets = [ { schedule = \"payments-secondary\" } ] },",
    );
    let outcome = two_incidents().replay(&text, Window::default(), 60);
    let payments = diff_of(&outcome, 1);
    assert!(!payments.severity_changed);
    assert!(payments.paging_differs);
    assert_eq!(pages(&payments.pages_before), ["0 ana L0 severity"]);
    // ana acknowledged at 00:02, but the candidate never paged her: carl's
    // page goes unanswered and escalates at 00:02 to carl again on level 1,
    // whose 10 minutes run past the 8-minute ack SLO: dora at 00:08.
    assert_eq!(
        pages(&payments.pages_after),
        ["0 carl L0 severity", "2 carl L1 escalation", "8 dora L- slo_breach", "12 dora L- slo_breach"]
    );
    assert_eq!(payments.acks_not_replayed.len(), 1, "{:?}", payments.acks_not_replayed);
    assert!(payments.escalations_differ);
    assert_eq!(payments.breaches_new, 1, "{:?}", payments.breaches_after);
    assert_eq!(outcome.summary.paging_differs, 1);
    assert_eq!(outcome.summary.acks_not_replayed, 1);
}

#[test]
fn an_acknowledgement_is_replayed_on_the_responder_s_own_page() {
    // The same people, a shorter first level: ana still acknowledges at
    // 00:02, before the candidate's 3-minute deadline, so nothing escalates.
    let text = candidate(
        "{ timeout_minutes = 5, targets = [ { schedule = \"payments-primary\" } ] },",
        "{ timeout_minutes = 3, targets = [ { schedule = \"payments-primary\" } ] },",
    );
    let outcome = two_incidents().replay(&text, Window::default(), 60);
    let payments = diff_of(&outcome, 1);
    assert_eq!(pages(&payments.pages_after), ["0 ana L0 severity"]);
    assert!(payments.acks_not_replayed.is_empty());
    assert!(!payments.differs());
}

#[test]
fn the_window_selects_incidents_by_their_report() {
    let window = Window { from: Some(at(1)), until: Some(at(60)) };
    let outcome = two_incidents().replay(CURRENT, window, 60);
    assert_eq!(outcome.incidents.iter().map(|i| i.incident.to_string()).collect::<Vec<_>>(), ["INC-2"]);
}

#[test]
fn a_broken_candidate_is_refused_naming_the_key() {
    let bad = candidate("severity = \"sev3\"", "severity = \"sev9\"");
    let error = parse(&bad).unwrap_err();
    assert_eq!(error.key, "severity.rules[1].severity");
    let error = parse(&candidate("default_policy = \"payments\"", "default_policy = \"nope\"")).unwrap_err();
    assert_eq!(error.key, "paging.default_policy");
    let error = parse("[severity]\ndefault = 4\n").unwrap_err();
    assert_eq!(error.key, "config");
    assert!(error.problem.contains("default"), "{error}");
}

// ----- lint -----------------------------------------------------------------

fn kinds_and_keys(text: &str) -> Vec<(FindingKind, String)> {
    let (sections, policy) = policy(text);
    lint(&sections, &policy, base(), 14).into_iter().map(|f| (f.kind, f.key)).collect()
}

#[test]
fn a_clean_configuration_has_no_findings() {
    assert_eq!(kinds_and_keys(CURRENT), []);
}

#[test]
fn each_kind_of_finding_is_named_by_its_key() {
    let rule = |id: &str, severity: &str, when: &str| {
        format!("\n[[severity.rules]]\nid = \"{id}\"\nseverity = \"{severity}\"\nreason = \"r\"\nwhen = {when}\n")
    };
    let with_rule = |r: String| candidate("\n[[schedules]]", &format!("{r}\n[[schedules]]"));
    let cases: Vec<(String, Vec<(FindingKind, &str)>)> = vec![
        // Narrower words on the same tier: tier1-down wins every time.
        (
            with_rule(rule("tier1-down-hard", "sev2", "{ service_tier = [1], words = [\"down hard\"] }")),
            vec![(FindingKind::ShadowedRule, "severity.rules[2]")],
        ),
        // A service of tier 2 implies tier 2: search-slow wins.
        (
            with_rule(rule("search-tier", "sev2", "{ service = [\"search\"], multi_customer = true }")),
            vec![(FindingKind::ShadowedRule, "severity.rules[2]")],
        ),
        // Two customers affected imply multi-customer.
        (
            candidate(
                "id = \"tier1-down\"",
                "id = \"multi\"\nseverity = \"sev2\"\nreason = \"m\"\nwhen = { multi_customer = true }\n\n[[severity.rules]]\nid = \"tier1-down\"",
            )
            .replacen(
                "when = { service = [\"search\"] }",
                "when = { service = [\"search\"], customers_affected_at_least = 2 }",
                1,
            ),
            vec![(FindingKind::ShadowedRule, "severity.rules[2]")],
        ),
        // Not shadowed: a different label value.
        (
            candidate("when = { service = [\"search\"] }", "when = { labels = { team = \"a\" } }").replacen(
                "\n[[schedules]]",
                &format!("{}\n[[schedules]]", rule("b", "sev2", "{ labels = { team = \"b\" } }")),
                1,
            ),
            vec![],
        ),
        (
            candidate("name = \"search\"\nlevels", "name = \"orphan\"\nlevels = [ { timeout_minutes = 5, targets = [ { person = \"olga\" } ] } ]\n\n[[escalation_policies]]\nname = \"search\"\nlevels"),
            vec![(FindingKind::UnreachableLevel, "escalation_policies[1].levels[0]")],
        ),
        (
            candidate("participants = [\"sam\"]", "participants = [\"sam\"], active = { from = \"09:00\", to = \"17:00\" }"),
            vec![(FindingKind::CoverageHole, "schedules[2]")],
        ),
        (
            candidate("severities = [\"sev1\", \"sev2\"]", "severities = [\"sev1\", \"sev4\"]"),
            vec![(FindingKind::SeverityPagesNobody, "severity.rules[1].severity")],
        ),
        (
            candidate("severities = [\"sev1\", \"sev2\"]", "severities = [\"sev2\"]"),
            // [slo.sev1] ack_minutes is left without a Sev-1 page to acknowledge.
            vec![
                (FindingKind::SeverityPagesNobody, "severity.rules[0].severity"),
                (FindingKind::SettingNeverApplies, "slo.sev1.ack_minutes"),
            ],
        ),
        (
            format!("{CURRENT}\n[[channels]]\nname = \"spare\"\nkind = \"log\"\n"),
            vec![(FindingKind::UnusedChannel, "channels[1]")],
        ),
        // A channel only a cadenced trend report posts to is used.
        (
            format!(
                "{CURRENT}\n[[channels]]\nname = \"spare\"\nkind = \"log\"\n\n[[reports]]\nname = \"weekly\"\nperiod = \"weekly\"\nchannels = [\"spare\"]\n"
            ),
            vec![],
        ),
        // Acknowledgement settings of a severity that does not page.
        (
            candidate("[slo.sev1]", "[slo.sev3]\nack_minutes = 4\nassign_minutes = 9\nack_timeout_minutes = 20\n\n[slo.sev1]"),
            vec![
                (FindingKind::SettingNeverApplies, "slo.sev3.ack_minutes"),
                (FindingKind::SettingNeverApplies, "slo.sev3.ack_timeout_minutes"),
            ],
        ),
        // A tier no customer has; a tier a customer has is used.
        (
            candidate("[slo.sev1]", "[slo.tier.gold]\nresolve_minutes = 60\n\n[slo.tier.silver]\nresolve_minutes = 90\n\n[[customers]]\nname = \"acme\"\ntier = \"gold\"\n\n[slo.sev1]"),
            vec![(FindingKind::SettingNeverApplies, "slo.tier.silver")],
        ),
        // A report posting elsewhere does not make it used.
        (
            format!(
                "{CURRENT}\n[[channels]]\nname = \"spare\"\nkind = \"log\"\n\n[[reports]]\nname = \"weekly\"\nperiod = \"weekly\"\nchannels = [\"pager\"]\n"
            ),
            vec![(FindingKind::UnusedChannel, "channels[1]")],
        ),
    ];
    for (text, expected) in cases {
        let expected: Vec<(FindingKind, String)> = expected.into_iter().map(|(k, key)| (k, key.to_owned())).collect();
        assert_eq!(kinds_and_keys(&text), expected, "for\n{text}");
    }
}
