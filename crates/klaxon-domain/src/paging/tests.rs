//! Given incident and page events, when time passes or someone
//! acknowledges, then page events (or an error).
//!
//! Every case is a script run by [`check`], one step a line, and the
//! transcript of what each step decided. At every `decide` step `check` also
//! verifies, for every case: idempotence (deciding again at the same time
//! returns nothing), that [`next_due`] is exact (nothing one second before
//! it, something at it, nothing when it says nothing is pending), and that
//! folding the whole log from scratch gives the live state.

use std::fmt::Write as _;

use chrono::{DateTime, TimeDelta, Utc};
use expect_test::{Expect, expect};
use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;
use crate::catalog::ServiceCatalogConfig;
use crate::incident::{
    CommanderAssigned, Declared, HandoffAccepted, Mitigated, Reopened, Reported, ResolutionValidated, Resolved,
    SeverityAssessed, SeverityOverridden,
};
use crate::oncall::SchedulesConfig;

// ----- fixtures ------------------------------------------------------------

/// Monday 2026-03-02 00:00 UTC, the `00:00` of every script.
fn base() -> DateTime<Utc> {
    "2026-03-02T00:00:00Z".parse().unwrap()
}

/// `HH:MM` after [`base`]; hours may exceed 23.
fn time(text: &str) -> DateTime<Utc> {
    let (h, m) = text.split_once(':').unwrap_or_else(|| panic!("bad time {text:?}"));
    base() + TimeDelta::hours(h.parse().unwrap()) + TimeDelta::minutes(m.parse().unwrap())
}

/// `t` as `HH:MM` (with `:SS` when not on a minute) after [`base`].
fn clock(t: DateTime<Utc>) -> String {
    let s = (t - base()).num_seconds();
    let hm = format!("{:02}:{:02}", s / 3600, s % 3600 / 60);
    if s % 60 == 0 { hm } else { format!("{hm}:{:02}", s % 60) }
}

fn actor(name: &str) -> ActorId {
    ActorId::new(name).unwrap()
}

fn incident() -> IncidentId {
    IncidentId::from_number(1).unwrap()
}

fn weekly(name: &str, people: &[&str]) -> Value {
    json!({ "name": name, "time_zone": "UTC",
            "layers": [ { "name": "weekly", "participants": people, "shift": "7d", "handoff": "00:00", "start": "2026-03-02" } ] })
}

/// ana is payments-primary this week, carl secondary, dora the duty
/// manager; `weekends` has nobody on call on weekdays.
pub(super) fn schedules() -> Schedules {
    let weekends = json!({ "name": "weekends", "time_zone": "UTC",
        "layers": [ { "name": "weekend", "participants": ["wes"], "shift": "7d", "handoff": "00:00", "start": "2026-03-02",
                      "active": { "from": "00:00", "to": "00:00", "days": ["sat", "sun"] } } ] });
    let config: SchedulesConfig = serde_json::from_value(json!([
        weekly("payments-primary", &["ana", "ben"]),
        weekly("payments-secondary", &["carl"]),
        weekly("duty-managers", &["dora"]),
        weekends,
    ]))
    .unwrap();
    config.validate("schedules").unwrap()
}

/// The configuration of most cases:
///
/// - payments: level 0 (5 min) payments-primary + ana again (paged once),
///   level 1 (10 min) payments-secondary + erin; one repeat.
/// - search: level 0 (5 min) weekends (nobody), level 1 (5 min) fay.
/// - nobody: one level, weekends only.
/// - default: gus, 15 min.
/// - sev1: ack 8 min, assign 10, ack timeout 30; sev2: defaults.
pub(super) fn example_config() -> Value {
    json!({
        "paging": { "severities": ["sev1", "sev2"], "duty_manager_schedule": "duty-managers",
                    "managers": ["maria", "omar"], "default_policy": "default" },
        "slo": { "sev1": { "ack_minutes": 8, "assign_minutes": 10, "ack_timeout_minutes": 30 } },
        "escalation_policies": [
            { "name": "payments", "repeat": 1, "levels": [
                { "timeout_minutes": 5, "targets": [ { "schedule": "payments-primary" }, { "person": "ana" } ] },
                { "timeout_minutes": 10, "targets": [ { "schedule": "payments-secondary" }, { "person": "erin" } ] } ] },
            { "name": "search", "levels": [
                { "timeout_minutes": 5, "targets": [ { "schedule": "weekends" } ] },
                { "timeout_minutes": 5, "targets": [ { "person": "fay" } ] } ] },
            { "name": "nobody", "levels": [ { "timeout_minutes": 5, "targets": [ { "schedule": "weekends" } ] } ] },
            { "name": "default", "levels": [ { "timeout_minutes": 15, "targets": [ { "person": "gus" } ] } ] },
        ]
    })
}

/// [`example_config`] after an edit: payments pages zed for 2 minutes,
/// then yan for 3, without repeating.
fn edited_config() -> PagingConfig {
    let mut edited = example_config();
    edited["escalation_policies"][0] = json!({ "name": "payments", "levels": [
        { "timeout_minutes": 2, "targets": [ { "person": "zed" } ] },
        { "timeout_minutes": 3, "targets": [ { "person": "yan" } ] } ] });
    serde_json::from_value::<PagingFileConfig>(edited).unwrap().validate("", &schedules()).unwrap()
}

fn config() -> PagingConfig {
    serde_json::from_value::<PagingFileConfig>(example_config()).unwrap().validate("", &schedules()).unwrap()
}

/// payments, search and ghost use the policies of the same name; docs names
/// a policy that does not exist (the default applies).
pub(super) fn catalog() -> ServiceCatalog {
    let config: ServiceCatalogConfig = serde_json::from_value(json!([
        { "name": "payments", "team": "payments", "tier": 1, "escalation_policy": "payments",
          "runbook": "https://runbooks.example/payments" },
        { "name": "search", "team": "discovery", "tier": 2, "escalation_policy": "search" },
        { "name": "ghost", "team": "web", "tier": 3, "escalation_policy": "nobody" },
        { "name": "docs", "team": "web", "tier": 3, "escalation_policy": "missing" },
    ]))
    .unwrap();
    config.validate("services").unwrap()
}

// ----- the script runner ----------------------------------------------------

#[derive(Debug, Clone)]
enum Logged {
    Incident(IncidentEvent),
    Assessed(Severity, DateTime<Utc>),
    Page(PageEvent),
    /// A configuration recorded with these paging severities.
    Severities(BTreeSet<Severity>, DateTime<Utc>),
}

/// A live service in miniature: the log, and the state folded from it.
struct World {
    config: PagingConfig,
    catalog: ServiceCatalog,
    schedules: Schedules,
    log: Vec<Logged>,
    state: IncidentPaging,
}

impl World {
    fn new() -> World {
        let config = config();
        let state = IncidentPaging::new(incident(), &config);
        World { config, catalog: catalog(), schedules: schedules(), log: Vec::new(), state }
    }

    fn record(&mut self, logged: Logged) {
        fold(&mut self.state, &logged);
        self.log.push(logged);
    }

    fn rebuild(&self) -> IncidentPaging {
        let mut state = IncidentPaging::new(incident(), &self.config);
        for logged in &self.log {
            fold(&mut state, logged);
        }
        state
    }

    fn decide(&self, now: DateTime<Utc>) -> Vec<PageEvent> {
        decide(&self.state, &self.config, &self.catalog, &self.schedules, now)
    }

    fn last_at(&self) -> Option<DateTime<Utc>> {
        self.log
            .iter()
            .map(|logged| match logged {
                Logged::Incident(e) => e.at,
                Logged::Assessed(_, at) => *at,
                Logged::Page(e) => e.at,
                Logged::Severities(_, at) => *at,
            })
            .max()
    }

    /// Decides at `now` with every built-in check, records the events and
    /// returns them.
    fn tick(&mut self, now: DateTime<Utc>) -> Vec<PageEvent> {
        let due = next_due(&self.state, &self.config);
        let events = self.decide(now);
        assert_eq!(events.is_empty(), due.is_none_or(|due| due > now), "next_due {due:?} disagrees at {now}");
        if let Some(due) = due {
            assert!(!self.decide(due).is_empty(), "nothing decided at next_due {due}");
            let before = due - TimeDelta::seconds(1);
            if self.last_at().is_none_or(|last| before >= last) {
                assert_eq!(self.decide(before), [], "decided one second before next_due {due}");
            }
        }
        for event in &events {
            self.record(Logged::Page(event.clone()));
        }
        assert_eq!(self.decide(now), [], "decide is not idempotent at {now}");
        assert_eq!(self.rebuild(), self.state, "rebuilding from the log differs from the live state");
        events
    }
}

fn fold(state: &mut IncidentPaging, logged: &Logged) {
    match logged {
        Logged::Incident(event) => state.apply_incident(event),
        Logged::Assessed(severity, at) => state.set_severity(*severity, *at),
        Logged::Page(event) => state.apply_page(event),
        Logged::Severities(severities, at) => {
            let hash: Vec<String> = severities.iter().map(ToString::to_string).collect();
            state.set_paging_severities(severities, &format!("cfg-{}", hash.join("-")), *at);
        }
    }
}

fn page_id(n: &str) -> PageId {
    PageId::new(incident(), n.trim_start_matches('P').parse().unwrap()).unwrap()
}

/// One line of transcript for a page event.
fn show(event: &PageEvent) -> String {
    let p = |id: &PageId| format!("P{}", id.number());
    match &event.change {
        PageChange::ResponderPaged(r) => {
            let level = r.level.map_or("duty".to_owned(), |l| format!("L{l}"));
            let deadline = r.deadline.map_or(String::new(), |d| format!(" until {}", clock(d)));
            let request = r.request.map_or(String::new(), |n| format!(" #{n}"));
            format!("page {} {} {level} R{} {}{request}{deadline}", p(&r.page), r.responder, r.round, r.reason)
        }
        PageChange::PageDelivered(d) => format!("delivered {} via {}", p(&d.page), d.channel),
        PageChange::PageDeliveryFailed(d) => format!("failed {} via {}: {}", p(&d.page), d.channel, d.error),
        PageChange::PageAcknowledged(a) => format!("acknowledged {} by {}", p(&a.page), event.by),
        PageChange::PageEscalated(e) => {
            let page = e.page.as_ref().map_or("-".to_owned(), p);
            let to = e.to_level.map_or("exhausted".to_owned(), |l| format!("L{l}"));
            let request = e.request.map_or(String::new(), |n| format!(" #{n}"));
            format!("escalate {page} L{} -> {to} R{}{request}", e.from_level, e.round)
        }
        PageChange::AckTimedOut(t) => format!("ack timed out {}", p(&t.page)),
        PageChange::SloBreached(b) => format!("breach {} due {}", b.slo, clock(b.due_at)),
        PageChange::PagingStopped(s) => format!("stopped {} by {}", s.severity, s.config),
    }
}

/// Runs `script` (one `HH:MM command args` a line) and compares the
/// transcript with `expected`.
///
/// Commands: `report [service]`, `declare sevN`, `override sevN`,
/// `assess sevN`, `commander who`, `handoff who`, `mitigate`, `resolve`,
/// `close`, `reopen`, `evaluate sevN`, `pull person|schedule|team name`
/// (incident events); `decide`; `ack Pn who`;
/// `deliver Pn`, `fail Pn`; `crash` (drop the state and fold the log from
/// scratch); `edit` (the configuration becomes [`edited_config`]);
/// `severities sevN,sevM` (a configuration recorded with these paging
/// severities); `due` (print [`next_due`]).
fn check(script: &str, expected: Expect) {
    let mut world = World::new();
    let mut out = String::new();
    for line in script.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let mut words = line.split_whitespace();
        let at = time(words.next().unwrap());
        let command = words.next().unwrap_or_else(|| panic!("no command in {line:?}"));
        let args: Vec<&str> = words.collect();
        let arg = |i: usize| *args.get(i).unwrap_or_else(|| panic!("{line:?} needs argument {i}"));
        let sev = |i: usize| arg(i).parse::<Severity>().unwrap();
        let by = actor(if command == "report" { "svc:alertmanager" } else { "maria" });
        let change = match command {
            "report" => Some(Change::Reported(Reported {
                source: crate::ids::ReportSource::Alertmanager,
                reporter: by.clone(),
                title: "Checkout is down".into(),
                description: String::new(),
                service: args.first().map(|s| ServiceName::new(*s).unwrap()),
                customers: Default::default(),
                labels: Default::default(),
                dedup_key: None,
                started_at: None,
                catalogued: None,
            })),
            "declare" => Some(Change::Declared(Declared { severity: sev(0), catalogued: None })),
            "override" => Some(Change::SeverityOverridden(SeverityOverridden {
                from: world.state.severity(),
                to: sev(0),
                reason: "manager".into(),
            })),
            "commander" => Some(Change::CommanderAssigned(CommanderAssigned {
                commander: actor(arg(0)),
                previous: world.state.commander().cloned(),
            })),
            "handoff" => Some(Change::HandoffAccepted(HandoffAccepted {
                from: world.state.commander().cloned().unwrap_or_else(|| actor("maria")),
                to: actor(arg(0)),
            })),
            "scribe" => Some(Change::RoleAssigned(crate::incident::RoleAssigned {
                role: crate::ids::IncidentRole::Scribe,
                person: actor(arg(0)),
            })),
            "mitigate" => Some(Change::Mitigated(Mitigated { summary: "rolled back".into() })),
            "resolve" => Some(Change::Resolved(Resolved { summary: "fixed".into() })),
            "close" => Some(Change::ResolutionValidated(ResolutionValidated { note: "quiet".into() })),
            "reopen" => Some(Change::Reopened(Reopened { reason: "back".into() })),
            "pull" => Some(Change::ResponderRequested(crate::incident::ResponderRequested {
                target: match arg(0) {
                    "person" => PageTarget::Person(actor(arg(1))),
                    "schedule" => PageTarget::Schedule(arg(1).into()),
                    "team" => PageTarget::Team(arg(1).into()),
                    other => panic!("unknown target {other:?}"),
                },
                reason: "need a second pair of eyes".into(),
            })),
            "evaluate" => Some(Change::SeverityAssessed(SeverityAssessed {
                severity: sev(0),
                rule: None,
                reason: "default".into(),
                reasons: Vec::new(),
            })),
            _ => None,
        };
        writeln!(out, "{line}").unwrap();
        if let Some(change) = change {
            world.record(Logged::Incident(IncidentEvent { incident: incident(), at, by, change }));
            continue;
        }
        match command {
            "assess" => world.record(Logged::Assessed(sev(0), at)),
            "severities" => {
                let severities = arg(0).split(',').map(|s| s.parse::<Severity>().unwrap()).collect();
                world.record(Logged::Severities(severities, at));
            }
            "decide" => {
                let events = world.tick(at);
                if events.is_empty() {
                    writeln!(out, "  nothing").unwrap();
                }
                for event in &events {
                    writeln!(out, "  {}", show(event)).unwrap();
                }
            }
            "ack" => match acknowledge(&world.state, &page_id(arg(0)), &actor(arg(1)), &world.config, at) {
                Ok(event) => {
                    writeln!(out, "  {}", show(&event)).unwrap();
                    world.record(Logged::Page(event));
                }
                Err(error) => writeln!(out, "  error {}: {error}", error.rule()).unwrap(),
            },
            "deliver" => world.record(Logged::Page(PageEvent::delivered(page_id(arg(0)), "slack", 1, at))),
            "fail" => world.record(Logged::Page(PageEvent::delivery_failed(page_id(arg(0)), "sms", 3, "HTTP 503", at))),
            "crash" => world.state = world.rebuild(),
            "edit" => world.config = edited_config(),
            "due" => {
                let due = next_due(&world.state, &world.config);
                writeln!(out, "  {}", due.map_or("nothing pending".to_owned(), clock)).unwrap();
            }
            "deliveries" => {
                let mut with_channels = example_config();
                with_channels["paging"]["channels"] = json!(["slack", "sms"]);
                let config: PagingConfig = serde_json::from_value::<PagingFileConfig>(with_channels)
                    .unwrap()
                    .validate("", &schedules())
                    .unwrap();
                for delivery in deliveries(&world.state, &config, &world.catalog) {
                    let message = &delivery.sends()[0].message;
                    let channels: Vec<&str> = delivery.sends().iter().map(|s| s.channel.as_str()).collect();
                    assert!(delivery.sends().iter().all(|s| s.message == *message), "one message on every channel");
                    writeln!(
                        out,
                        "  P{} via {channels:?} to {:?} key {}: {:?} / {:?} / {:?}",
                        delivery.page().number(),
                        message.recipient,
                        message.idempotency_key,
                        message.title,
                        message.text,
                        message.fields
                    )
                    .unwrap();
                }
                assert!(
                    deliveries(&world.state, &world.config, &world.catalog).is_empty(),
                    "no paging channel, no delivery"
                );
            }
            "undelivered" => {
                let pages: Vec<String> =
                    undelivered(&world.state).iter().map(|p| format!("P{}", p.id().number())).collect();
                writeln!(out, "  [{}]", pages.join(", ")).unwrap();
            }
            other => panic!("unknown command {other:?} in {line:?}"),
        }
    }
    expected.assert_eq(&out);
}

// ----- cases ------------------------------------------------------------------

#[test]
fn a_declared_sev1_pages_level_0_once_per_responder() {
    check(
        "
        00:00 report payments
        00:00 decide
        00:00 declare sev1
        00:00 decide
        00:00 due
        ",
        expect![[r#"
            00:00 report payments
            00:00 decide
              nothing
            00:00 declare sev1
            00:00 decide
              page P1 ana L0 R0 severity until 00:05
            00:00 due
              00:05
        "#]],
    );
}

#[test]
fn a_sev3_pages_nobody() {
    check(
        "
        00:00 report payments
        00:00 declare sev3
        00:00 decide
        00:00 due
        09:00 decide
        ",
        expect![[r#"
            00:00 report payments
            00:00 declare sev3
            00:00 decide
              nothing
            00:00 due
              nothing pending
            09:00 decide
              nothing
        "#]],
    );
}

#[test]
fn an_ack_in_time_stops_the_escalation() {
    check(
        "
        00:00 report payments
        00:00 declare sev1
        00:00 commander maria
        00:00 decide
        00:03 ack P1 ana
        00:03 due
        00:05 decide
        00:20 decide
        ",
        expect![[r#"
            00:00 report payments
            00:00 declare sev1
            00:00 commander maria
            00:00 decide
              page P1 ana L0 R0 severity until 00:05
            00:03 ack P1 ana
              acknowledged P1 by ana
            00:03 due
              00:33
            00:05 decide
              nothing
            00:20 decide
              nothing
        "#]],
    );
}

#[test]
fn no_ack_escalates_at_the_deadline_exactly() {
    check(
        "
        00:00 report payments
        00:00 declare sev1
        00:00 commander maria
        00:00 decide
        00:04 decide
        00:05 decide
        00:05 due
        ",
        expect![[r#"
            00:00 report payments
            00:00 declare sev1
            00:00 commander maria
            00:00 decide
              page P1 ana L0 R0 severity until 00:05
            00:04 decide
              nothing
            00:05 decide
              escalate P1 L0 -> L1 R0
              page P2 carl L1 R0 escalation until 00:15
              page P3 erin L1 R0 escalation until 00:15
            00:05 due
              00:08
        "#]],
    );
}

#[test]
fn rounds_repeat_then_exhaustion_pages_the_duty_manager_without_a_second_ack_breach() {
    check(
        "
        00:00 report payments
        00:00 declare sev1
        00:00 commander maria
        00:00 decide
        00:05 decide
        00:08 decide
        00:15 decide
        00:20 decide
        00:30 decide
        00:30 due
        05:00 decide
        ",
        expect![[r#"
            00:00 report payments
            00:00 declare sev1
            00:00 commander maria
            00:00 decide
              page P1 ana L0 R0 severity until 00:05
            00:05 decide
              escalate P1 L0 -> L1 R0
              page P2 carl L1 R0 escalation until 00:15
              page P3 erin L1 R0 escalation until 00:15
            00:08 decide
              breach ack due 00:08
              page P4 dora duty R0 slo_breach
            00:15 decide
              escalate P2 L1 -> L0 R1
              page P5 ana L0 R1 repeat until 00:20
            00:20 decide
              escalate P5 L0 -> L1 R1
              page P6 carl L1 R1 escalation until 00:30
              page P7 erin L1 R1 escalation until 00:30
            00:30 decide
              escalate P6 L1 -> exhausted R1
              page P8 dora duty R1 slo_breach
            00:30 due
              nothing pending
            05:00 decide
              nothing
        "#]],
    );
}

#[test]
fn an_exhausted_chain_without_an_earlier_breach_breaches_at_its_last_deadline() {
    // sev2 has the default 5-minute ack SLO, the search policy escalates at
    // once past its empty level 0 and runs out after fay's 5 minutes.
    check(
        "
        00:00 report search
        00:00 declare sev2
        00:00 commander maria
        00:00 decide
        00:05 decide
        ",
        expect![[r#"
            00:00 report search
            00:00 declare sev2
            00:00 commander maria
            00:00 decide
              escalate - L0 -> L1 R0
              page P1 fay L1 R0 escalation until 00:05
            00:05 decide
              escalate P1 L1 -> exhausted R0
              breach ack due 00:05
              page P2 dora duty R0 slo_breach
        "#]],
    );
}

#[test]
fn an_episode_keeps_the_policy_it_started_with_and_a_new_one_takes_the_edited_policy() {
    check(
        "
        00:00 report payments
        00:00 declare sev1
        00:00 commander maria
        00:00 decide
        00:01 edit
        00:02 decide
        00:05 decide
        00:06 crash
        00:15 decide
        00:16 resolve
        00:17 reopen
        00:17 decide
        00:19 decide
        ",
        expect![[r#"
            00:00 report payments
            00:00 declare sev1
            00:00 commander maria
            00:00 decide
              page P1 ana L0 R0 severity until 00:05
            00:01 edit
            00:02 decide
              nothing
            00:05 decide
              escalate P1 L0 -> L1 R0
              page P2 carl L1 R0 escalation until 00:15
              page P3 erin L1 R0 escalation until 00:15
            00:06 crash
            00:15 decide
              escalate P2 L1 -> L0 R1
              page P4 ana L0 R1 repeat until 00:20
              breach ack due 00:08
              page P5 dora duty R1 slo_breach
            00:16 resolve
            00:17 reopen
            00:17 decide
              page P6 zed L0 R0 severity until 00:19
            00:19 decide
              escalate P6 L0 -> L1 R0
              page P7 yan L1 R0 escalation until 00:22
        "#]],
    );
}

#[test]
fn the_first_event_of_a_chain_records_its_policy_even_when_nobody_is_paged() {
    let mut world = World::new();
    let by = actor("maria");
    for change in [
        Change::Reported(Reported {
            source: crate::ids::ReportSource::Alertmanager,
            reporter: by.clone(),
            title: "Search is slow".into(),
            description: String::new(),
            service: Some(ServiceName::new("search").unwrap()),
            customers: Default::default(),
            labels: Default::default(),
            dedup_key: None,
            started_at: None,
            catalogued: None,
        }),
        Change::Declared(Declared { severity: Severity::Sev1, catalogued: None }),
    ] {
        world.record(Logged::Incident(IncidentEvent {
            incident: incident(),
            at: time("00:00"),
            by: by.clone(),
            change,
        }));
    }
    let events = world.tick(time("00:00"));
    let search = world.config.policy("search").unwrap().clone();
    // Level 0 (weekends) has nobody on call: the escalation is the chain's
    // first event and records the policy; fay's page after it does not.
    let recorded: Vec<(String, Option<&EscalationPolicy>)> = events
        .iter()
        .map(|e| match &e.change {
            PageChange::ResponderPaged(p) => (show(e), p.policy.as_ref()),
            PageChange::PageEscalated(p) => (show(e), p.policy.as_ref()),
            _ => (show(e), None),
        })
        .collect();
    assert_eq!(
        recorded,
        [
            ("escalate - L0 -> L1 R0".to_owned(), Some(&search)),
            ("page P1 fay L1 R0 escalation until 00:05".to_owned(), None)
        ]
    );
    assert_eq!(world.state.episode_policy(), Some(&search));
}

#[test]
fn an_episode_recorded_without_a_policy_follows_the_configured_one() {
    // A log written before episodes recorded their policy: the first page
    // has no `policy`; the chain then follows the configuration of each
    // decision, here the edited one.
    let mut world = World::new();
    let by = actor("maria");
    for change in [
        Change::Reported(Reported {
            source: crate::ids::ReportSource::Alertmanager,
            reporter: by.clone(),
            title: "Checkout is down".into(),
            description: String::new(),
            service: Some(ServiceName::new("payments").unwrap()),
            customers: Default::default(),
            labels: Default::default(),
            dedup_key: None,
            started_at: None,
            catalogued: None,
        }),
        Change::Declared(Declared { severity: Severity::Sev1, catalogued: None }),
        Change::CommanderAssigned(CommanderAssigned { commander: by.clone(), previous: None }),
    ] {
        world.record(Logged::Incident(IncidentEvent {
            incident: incident(),
            at: time("00:00"),
            by: by.clone(),
            change,
        }));
    }
    let old = PageEvent::from_json(
        "page.responder_paged.v1",
        r#"{"incident":"INC-1","at":"2026-03-02T00:00:00Z","by":"klaxon-paging","page":"INC-1-P1","responder":"ana","level":0,"round":0,"reason":"severity","deadline":"2026-03-02T00:05:00Z"}"#,
    )
    .unwrap();
    world.record(Logged::Page(old));
    assert_eq!(world.state.episode_policy(), None);
    world.config = edited_config();
    let shown: Vec<String> = world.tick(time("00:05")).iter().map(show).collect();
    assert_eq!(shown, ["escalate P1 L0 -> L1 R0", "page P2 yan L1 R0 escalation until 00:08"]);
}

#[test]
fn a_policy_with_nobody_on_call_is_exhausted_at_once() {
    check(
        "
        00:00 report ghost
        00:00 declare sev1
        00:00 commander maria
        00:00 decide
        00:00 due
        ",
        expect![[r#"
            00:00 report ghost
            00:00 declare sev1
            00:00 commander maria
            00:00 decide
              escalate - L0 -> exhausted R0
              breach ack due 00:00
              page P1 dora duty R0 slo_breach
            00:00 due
              nothing pending
        "#]],
    );
}

#[test]
fn unknown_services_and_missing_policies_use_the_default_policy() {
    check(
        "
        00:00 report docs
        00:00 declare sev1
        00:00 decide
        00:01 report
        ",
        expect![[r#"
            00:00 report docs
            00:00 declare sev1
            00:00 decide
              page P1 gus L0 R0 severity until 00:15
            00:01 report
        "#]],
    );
    check(
        "
        00:00 report
        00:00 declare sev2
        00:00 decide
        ",
        expect![[r#"
            00:00 report
            00:00 declare sev2
            00:00 decide
              page P1 gus L0 R0 severity until 00:15
        "#]],
    );
}

#[test]
fn an_ack_timeout_without_mitigation_resumes_paging() {
    check(
        "
        00:00 report payments
        00:00 declare sev1
        00:00 commander maria
        00:00 decide
        00:07 decide
        00:07 ack P1 ana
        00:07 due
        00:36 decide
        00:37 decide
        00:42 decide
        00:47 decide
        ",
        expect![[r#"
            00:00 report payments
            00:00 declare sev1
            00:00 commander maria
            00:00 decide
              page P1 ana L0 R0 severity until 00:05
            00:07 decide
              escalate P1 L0 -> L1 R0
              page P2 carl L1 R0 escalation until 00:17
              page P3 erin L1 R0 escalation until 00:17
            00:07 ack P1 ana
              acknowledged P1 by ana
            00:07 due
              00:37
            00:36 decide
              nothing
            00:37 decide
              ack timed out P1
              page P4 carl L1 R0 ack_timeout until 00:47
              page P5 erin L1 R0 ack_timeout until 00:47
            00:42 decide
              nothing
            00:47 decide
              escalate P4 L1 -> L0 R1
              page P6 ana L0 R1 repeat until 00:52
        "#]],
    );
}

#[test]
fn mitigation_before_the_ack_timeout_ends_paging() {
    check(
        "
        00:00 report payments
        00:00 declare sev1
        00:00 commander maria
        00:00 decide
        00:02 ack P1 ana
        00:20 mitigate
        00:20 due
        00:32 decide
        03:00 decide
        ",
        expect![[r#"
            00:00 report payments
            00:00 declare sev1
            00:00 commander maria
            00:00 decide
              page P1 ana L0 R0 severity until 00:05
            00:02 ack P1 ana
              acknowledged P1 by ana
            00:20 mitigate
            00:20 due
              nothing pending
            00:32 decide
              nothing
            03:00 decide
              nothing
        "#]],
    );
}

#[test]
fn no_commander_breaches_the_assign_slo_and_pages_the_duty_manager_once() {
    check(
        "
        00:00 report payments
        00:00 declare sev1
        00:00 decide
        00:01 ack P1 ana
        00:09 decide
        00:10 decide
        00:11 commander maria
        00:11 decide
        00:31 decide
        ",
        expect![[r#"
            00:00 report payments
            00:00 declare sev1
            00:00 decide
              page P1 ana L0 R0 severity until 00:05
            00:01 ack P1 ana
              acknowledged P1 by ana
            00:09 decide
              nothing
            00:10 decide
              breach assign due 00:10
              page P2 dora duty R0 slo_breach
            00:11 commander maria
            00:11 decide
              nothing
            00:31 decide
              ack timed out P1
              page P3 ana L0 R0 ack_timeout until 00:36
        "#]],
    );
}

#[test]
fn a_commander_in_time_means_no_assign_breach() {
    check(
        "
        00:00 report payments
        00:00 declare sev1
        00:00 decide
        00:01 ack P1 ana
        00:09 handoff omar
        00:09 due
        00:10 decide
        ",
        expect![[r#"
            00:00 report payments
            00:00 declare sev1
            00:00 decide
              page P1 ana L0 R0 severity until 00:05
            00:01 ack P1 ana
              acknowledged P1 by ana
            00:09 handoff omar
            00:09 due
              00:31
            00:10 decide
              nothing
        "#]],
    );
}

#[test]
fn resolving_stops_everything_and_reopening_starts_a_new_chain() {
    check(
        "
        00:00 report payments
        00:00 declare sev1
        00:00 decide
        00:02 resolve
        00:02 due
        00:05 decide
        00:30 decide
        00:30 ack P1 ana
        01:00 reopen
        01:00 decide
        01:03 ack P2 ana
        01:04 close
        01:04 ack P1 ana
        ",
        expect![[r#"
            00:00 report payments
            00:00 declare sev1
            00:00 decide
              page P1 ana L0 R0 severity until 00:05
            00:02 resolve
            00:02 due
              nothing pending
            00:05 decide
              nothing
            00:30 decide
              nothing
            00:30 ack P1 ana
              error ack.incident_closed: INC-1 is resolved; its pages can no longer be acknowledged
            01:00 reopen
            01:00 decide
              page P2 ana L0 R0 severity until 01:05
            01:03 ack P2 ana
              acknowledged P2 by ana
            01:04 close
            01:04 ack P1 ana
              error ack.incident_closed: INC-1 is closed; its pages can no longer be acknowledged
        "#]],
    );
}

#[test]
fn severity_changes_begin_and_end_episodes() {
    check(
        "
        00:00 report payments
        00:00 declare sev3
        00:00 decide
        00:10 override sev2
        00:10 decide
        00:12 override sev1
        00:12 decide
        00:13 override sev4
        00:13 due
        00:30 decide
        ",
        expect![[r#"
            00:00 report payments
            00:00 declare sev3
            00:00 decide
              nothing
            00:10 override sev2
            00:10 decide
              page P1 ana L0 R0 severity until 00:15
            00:12 override sev1
            00:12 decide
              nothing
            00:13 override sev4
            00:13 due
              nothing pending
            00:30 decide
              nothing
        "#]],
    );
}

/// A recorded configuration's paging severities begin an open incident's
/// episode as of the record, or end it (recording why once, when it had
/// paged); a mitigated incident does not page.
#[test]
fn recorded_paging_severities_start_and_stop_the_episodes_of_open_incidents() {
    check(
        "
        00:00 report payments
        00:00 declare sev3
        00:00 decide
        00:10 severities sev1,sev2,sev3
        00:10 due
        00:10 decide
        00:11 severities sev1,sev2,sev3
        00:11 decide
        00:12 severities sev1,sev2
        00:12 due
        00:12 decide
        00:12 due
        00:30 decide
        00:31 ack P1 ana
        00:40 severities sev3
        00:40 decide
        00:41 crash
        00:41 decide
        00:41 severities sev1
        00:41 severities sev3
        00:41 decide
        00:42 mitigate
        00:43 severities sev1
        00:44 severities sev3
        00:44 decide
        ",
        expect![[r#"
            00:00 report payments
            00:00 declare sev3
            00:00 decide
              nothing
            00:10 severities sev1,sev2,sev3
            00:10 due
              00:10
            00:10 decide
              page P1 ana L0 R0 severity until 00:15
            00:11 severities sev1,sev2,sev3
            00:11 decide
              nothing
            00:12 severities sev1,sev2
            00:12 due
              00:12
            00:12 decide
              stopped SEV3 by cfg-SEV2-SEV1
            00:12 due
              nothing pending
            00:30 decide
              nothing
            00:31 ack P1 ana
              acknowledged P1 by ana
            00:40 severities sev3
            00:40 decide
              page P2 ana L0 R0 severity until 00:45
            00:41 crash
            00:41 decide
              nothing
            00:41 severities sev1
            00:41 severities sev3
            00:41 decide
              page P3 ana L0 R0 severity until 00:46
            00:42 mitigate
            00:43 severities sev1
            00:44 severities sev3
            00:44 decide
              nothing
        "#]],
    );
}

#[test]
fn an_episode_in_flight_goes_on_when_the_severities_change_but_keep_its_severity() {
    check(
        "
        00:00 report payments
        00:00 declare sev1
        00:00 decide
        00:02 severities sev1,sev3
        00:02 decide
        00:05 decide
        ",
        expect![[r#"
            00:00 report payments
            00:00 declare sev1
            00:00 decide
              page P1 ana L0 R0 severity until 00:05
            00:02 severities sev1,sev3
            00:02 decide
              nothing
            00:05 decide
              escalate P1 L0 -> L1 R0
              page P2 carl L1 R0 escalation until 00:15
              page P3 erin L1 R0 escalation until 00:15
        "#]],
    );
}

#[test]
fn recorded_severities_follow_the_validation_and_a_configuration_without_paging_says_nothing() {
    let severities = |v: Value| recorded_severities(&v).map_err(|e| e.to_string());
    assert_eq!(severities(json!({"severity": {"default": "sev4"}})), Ok(None));
    assert_eq!(
        severities(json!({"paging": {"default_policy": "x"}})),
        Ok(Some([Severity::Sev1, Severity::Sev2].into()))
    );
    assert_eq!(
        severities(json!({"paging": {"severities": ["sev3", "sev1"]}})),
        Ok(Some([Severity::Sev1, Severity::Sev3].into()))
    );
    assert!(severities(json!({"paging": {"severities": ["sev9"]}})).unwrap_err().contains("paging.severities[0]"));
    assert!(severities(json!({"paging": {"severities": []}})).is_err());
    assert!(severities(json!({"paging": {"severities": "sev1"}})).is_err());
}

#[test]
fn an_assessed_severity_pages_a_reported_incident() {
    check(
        "
        00:00 report payments
        00:01 assess sev1
        00:01 decide
        ",
        expect![[r#"
            00:00 report payments
            00:01 assess sev1
            00:01 decide
              page P1 ana L0 R0 severity until 00:06
        "#]],
    );
}

#[test]
fn an_evaluated_severity_pages_unless_a_manager_overrode_it() {
    check(
        "
        00:00 report payments
        00:00 evaluate sev2
        00:00 decide
        00:01 override sev3
        00:02 evaluate sev1
        00:02 due
        ",
        expect![[r#"
            00:00 report payments
            00:00 evaluate sev2
            00:00 decide
              page P1 ana L0 R0 severity until 00:05
            00:01 override sev3
            00:02 evaluate sev1
            00:02 due
              nothing pending
        "#]],
    );
}

#[test]
fn a_late_assessment_does_not_lower_a_declared_sev1() {
    // The evaluator decided on the report and its assessment landed after
    // the manager's declaration: the declared severity stands and pages.
    check(
        "
        00:00 report payments
        00:00 declare sev1
        00:00 evaluate sev4
        00:00 decide
        ",
        expect![[r#"
            00:00 report payments
            00:00 declare sev1
            00:00 evaluate sev4
            00:00 decide
              page P1 ana L0 R0 severity until 00:05
        "#]],
    );
}

#[test]
fn a_late_ack_of_an_exhausted_chain_still_times_out() {
    // Acknowledged, then forgotten: even after the chain ran out, an
    // acknowledgement that is not followed by mitigation resumes paging.
    check(
        "
        00:00 report search
        00:00 declare sev1
        00:00 commander maria
        00:00 decide
        00:05 decide
        00:06 ack P1 fay
        00:06 due
        00:36 decide
        00:41 decide
        00:41 due
        ",
        expect![[r#"
            00:00 report search
            00:00 declare sev1
            00:00 commander maria
            00:00 decide
              escalate - L0 -> L1 R0
              page P1 fay L1 R0 escalation until 00:05
            00:05 decide
              escalate P1 L1 -> exhausted R0
              breach ack due 00:05
              page P2 dora duty R0 slo_breach
            00:06 ack P1 fay
              acknowledged P1 by fay
            00:06 due
              00:36
            00:36 decide
              ack timed out P1
              page P3 fay L1 R0 ack_timeout until 00:41
            00:41 decide
              escalate P3 L1 -> exhausted R0
              page P4 dora duty R0 slo_breach
            00:41 due
              nothing pending
        "#]],
    );
}

#[test]
fn a_crashed_service_fires_the_overdue_escalation_once() {
    // The process dies with P1 pending; it comes back at 00:12, folds the
    // log from scratch and decides: one escalation (with a full timeout from
    // now), one ack breach, nothing twice.
    check(
        "
        00:00 report payments
        00:00 declare sev1
        00:00 commander maria
        00:00 decide
        00:12 crash
        00:12 due
        00:12 decide
        00:12 crash
        00:12 decide
        ",
        expect![[r#"
            00:00 report payments
            00:00 declare sev1
            00:00 commander maria
            00:00 decide
              page P1 ana L0 R0 severity until 00:05
            00:12 crash
            00:12 due
              00:05
            00:12 decide
              escalate P1 L0 -> L1 R0
              page P2 carl L1 R0 escalation until 00:22
              page P3 erin L1 R0 escalation until 00:22
              breach ack due 00:08
              page P4 dora duty R0 slo_breach
            00:12 crash
            00:12 decide
              nothing
        "#]],
    );
}

#[test]
fn acknowledgements_are_checked() {
    check(
        "
        00:00 report payments
        00:00 declare sev1
        00:00 commander maria
        00:00 decide
        00:05 decide
        00:06 ack P9 carl
        00:06 ack P2 ana
        00:06 ack P2 carl
        00:07 ack P2 carl
        00:07 ack P3 omar
        00:08 resolve
        00:08 ack P1 ana
        ",
        expect![[r#"
            00:00 report payments
            00:00 declare sev1
            00:00 commander maria
            00:00 decide
              page P1 ana L0 R0 severity until 00:05
            00:05 decide
              escalate P1 L0 -> L1 R0
              page P2 carl L1 R0 escalation until 00:15
              page P3 erin L1 R0 escalation until 00:15
            00:06 ack P9 carl
              error ack.unknown_page: INC-1-P9 is not a page of INC-1
            00:06 ack P2 ana
              error ack.not_yours: INC-1-P2 was sent to carl; only they or a paging manager may acknowledge it, not ana
            00:06 ack P2 carl
              acknowledged P2 by carl
            00:07 ack P2 carl
              error ack.already_acknowledged: INC-1-P2 was already acknowledged by carl at 2026-03-02T00:06:00+00:00
            00:07 ack P3 omar
              acknowledged P3 by omar
            00:08 resolve
            00:08 ack P1 ana
              error ack.incident_closed: INC-1 is resolved; its pages can no longer be acknowledged
        "#]],
    );
}

/// A role assignment's notice asks nobody to respond: acknowledging it is
/// refused (the bridge is where its holder goes), also by a manager, and
/// changes nothing of the incident's own chain.
#[test]
fn a_role_notice_is_not_acknowledged() {
    check(
        "
        00:00 report payments
        00:00 declare sev1
        00:00 commander maria
        00:00 decide
        00:01 scribe dave
        00:01 decide
        00:02 ack P2 dave
        00:02 ack P2 omar
        00:03 ack P1 ana
        ",
        expect![[r#"
            00:00 report payments
            00:00 declare sev1
            00:00 commander maria
            00:00 decide
              page P1 ana L0 R0 severity until 00:05
            00:01 scribe dave
            00:01 decide
              page P2 dave duty R0 role_assigned #1
            00:02 ack P2 dave
              error ack.notice: INC-1-P2 is a notice that dave holds a role of INC-1; there is nothing to acknowledge (join the bridge with: klaxon join INC-1)
            00:02 ack P2 omar
              error ack.notice: INC-1-P2 is a notice that dave holds a role of INC-1; there is nothing to acknowledge (join the bridge with: klaxon join INC-1)
            00:03 ack P1 ana
              acknowledged P1 by ana
        "#]],
    );
}

#[test]
fn undelivered_pages_are_those_without_an_outcome() {
    check(
        "
        00:00 report payments
        00:00 declare sev1
        00:00 commander maria
        00:00 decide
        00:05 decide
        00:05 undelivered
        00:06 deliver P1
        00:06 fail P2
        00:06 undelivered
        00:06 crash
        00:06 undelivered
        ",
        expect![[r#"
            00:00 report payments
            00:00 declare sev1
            00:00 commander maria
            00:00 decide
              page P1 ana L0 R0 severity until 00:05
            00:05 decide
              escalate P1 L0 -> L1 R0
              page P2 carl L1 R0 escalation until 00:15
              page P3 erin L1 R0 escalation until 00:15
            00:05 undelivered
              [P1, P2, P3]
            00:06 deliver P1
            00:06 fail P2
            00:06 undelivered
              [P3]
            00:06 crash
            00:06 undelivered
              [P3]
        "#]],
    );
}

#[test]
fn deliveries_are_the_unacknowledged_undelivered_pages_of_an_open_incident_with_their_text() {
    check(
        "
        00:00 report payments
        00:00 declare sev1
        00:00 commander maria
        00:00 decide
        00:05 decide
        00:05 deliveries
        00:06 deliver P1
        00:06 ack P3 erin
        00:06 deliveries
        00:07 resolve
        00:07 deliveries
        ",
        expect![[r#"
            00:00 report payments
            00:00 declare sev1
            00:00 commander maria
            00:00 decide
              page P1 ana L0 R0 severity until 00:05
            00:05 decide
              escalate P1 L0 -> L1 R0
              page P2 carl L1 R0 escalation until 00:15
              page P3 erin L1 R0 escalation until 00:15
            00:05 deliveries
              P1 via ["slack", "sms"] to Some("ana") key INC-1-P1: "SEV1 INC-1: Checkout is down" / "You are paged for INC-1 (severity). Acknowledge with: klaxon ack INC-1-P1\nRunbook: https://runbooks.example/payments" / {"acknowledge_by": String("2026-03-02T00:05:00+00:00"), "incident": String("INC-1"), "page": String("INC-1-P1"), "reason": String("severity"), "runbook": String("https://runbooks.example/payments"), "severity": String("SEV1")}
              P2 via ["slack", "sms"] to Some("carl") key INC-1-P2: "SEV1 INC-1: Checkout is down" / "You are paged for INC-1 (escalation). Acknowledge with: klaxon ack INC-1-P2\nRunbook: https://runbooks.example/payments" / {"acknowledge_by": String("2026-03-02T00:15:00+00:00"), "incident": String("INC-1"), "page": String("INC-1-P2"), "reason": String("escalation"), "runbook": String("https://runbooks.example/payments"), "severity": String("SEV1")}
              P3 via ["slack", "sms"] to Some("erin") key INC-1-P3: "SEV1 INC-1: Checkout is down" / "You are paged for INC-1 (escalation). Acknowledge with: klaxon ack INC-1-P3\nRunbook: https://runbooks.example/payments" / {"acknowledge_by": String("2026-03-02T00:15:00+00:00"), "incident": String("INC-1"), "page": String("INC-1-P3"), "reason": String("escalation"), "runbook": String("https://runbooks.example/payments"), "severity": String("SEV1")}
            00:06 deliver P1
            00:06 ack P3 erin
              acknowledged P3 by erin
            00:06 deliveries
              P2 via ["slack", "sms"] to Some("carl") key INC-1-P2: "SEV1 INC-1: Checkout is down" / "You are paged for INC-1 (escalation). Acknowledge with: klaxon ack INC-1-P2\nRunbook: https://runbooks.example/payments" / {"acknowledge_by": String("2026-03-02T00:15:00+00:00"), "incident": String("INC-1"), "page": String("INC-1-P2"), "reason": String("escalation"), "runbook": String("https://runbooks.example/payments"), "severity": String("SEV1")}
            00:07 resolve
            00:07 deliveries
        "#]],
    );
}

#[test]
fn a_delivery_is_recorded_channel_by_channel() {
    use crate::outbox::{Message, Outcome, Outgoing, Receipt};
    let message = Message {
        idempotency_key: "INC-1-P1".into(),
        kind: "page".into(),
        title: String::new(),
        text: String::new(),
        fields: Default::default(),
        recipient: None,
        thread: None,
    };
    let sends = ["slack", "sms"].map(|c| Outgoing { channel: c.into(), message: message.clone() }).to_vec();
    let delivery = PageDelivery { page: page_id("P1"), sends };
    let receipts = [
        Receipt {
            channel: "slack".into(),
            at: time("00:01"),
            outcome: Outcome::Delivered { attempts: 2, thread: None },
        },
        Receipt {
            channel: "sms".into(),
            at: time("00:02"),
            outcome: Outcome::Failed { attempts: 3, error: "HTTP 503".into() },
        },
    ];
    let recorded: Vec<String> = delivery.recorded(&receipts).iter().map(show).collect();
    assert_eq!(recorded, ["delivered P1 via slack", "failed P1 via sms: HTTP 503"]);
}

// ----- properties -------------------------------------------------------------

#[derive(Debug, Clone)]
enum Op {
    Wait(i64),
    Ack(u32, bool),
    Commander,
    Mitigate,
    Resolve,
    Reopen,
    Override(Severity),
    Crash,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (1i64..=1_200).prop_map(Op::Wait),
        3 => (1u32..=12, any::<bool>()).prop_map(|(n, manager)| Op::Ack(n, manager)),
        1 => Just(Op::Commander),
        1 => Just(Op::Mitigate),
        1 => Just(Op::Resolve),
        1 => Just(Op::Reopen),
        1 => prop::sample::select(Severity::ALL.to_vec()).prop_map(Op::Override),
        1 => Just(Op::Crash),
    ]
}

proptest! {
    /// Whatever happens and whenever the service decides, the built-in
    /// checks of `tick` hold (idempotence, exact `next_due`, rebuild equals
    /// live), and an unacknowledged chain always has a deadline ahead.
    #[test]
    fn deciding_at_any_time_after_any_history_is_consistent(
        service in prop::sample::select(vec!["payments", "search", "ghost", "docs"]),
        ops in prop::collection::vec(op(), 1..40),
    ) {
        let mut world = World::new();
        let mut now = base();
        let event = |change, at| Logged::Incident(IncidentEvent { incident: incident(), at, by: actor("maria"), change });
        world.record(event(Change::Reported(Reported {
            source: crate::ids::ReportSource::Manual, reporter: actor("maria"), title: "t".into(),
            description: String::new(), service: Some(ServiceName::new(service).unwrap()),
            customers: Default::default(), labels: Default::default(), dedup_key: None, started_at: None,
            catalogued: None,
        }), now));
        world.record(event(Change::Declared(Declared { severity: Severity::Sev1, catalogued: None }), now));
        world.tick(now);
        for op in ops {
            match op {
                Op::Wait(seconds) => now += TimeDelta::seconds(seconds),
                Op::Ack(n, manager) => {
                    let page = page_id(&n.to_string());
                    let who = match (manager, world.state.page(&page)) {
                        (true, _) | (false, None) => actor("omar"),
                        (false, Some(page)) => page.responder().clone(),
                    };
                    if let Ok(ack) = acknowledge(&world.state, &page, &who, &world.config, now) {
                        world.record(Logged::Page(ack));
                    }
                }
                Op::Commander if world.state.commander().is_none() => world.record(event(
                    Change::CommanderAssigned(CommanderAssigned { commander: actor("maria"), previous: None }), now)),
                Op::Mitigate if world.state.status() == Some(Status::Declared) =>
                    world.record(event(Change::Mitigated(Mitigated { summary: "m".into() }), now)),
                Op::Resolve if matches!(world.state.status(), Some(Status::Declared | Status::Mitigated)) =>
                    world.record(event(Change::Resolved(Resolved { summary: "r".into() }), now)),
                Op::Reopen if matches!(world.state.status(), Some(Status::Resolved | Status::Closed)) =>
                    world.record(event(Change::Reopened(Reopened { reason: "r".into() }), now)),
                Op::Override(to) if matches!(world.state.status(), Some(Status::Declared | Status::Mitigated))
                    && world.state.severity() != Some(to) =>
                    world.record(event(Change::SeverityOverridden(SeverityOverridden {
                        from: world.state.severity(), to, reason: "r".into() }), now)),
                Op::Crash => world.state = world.rebuild(),
                _ => {}
            }
            world.tick(now);
        }
        // No page is left unanswered past its deadline while the incident pages.
        if let Some(chain) = world.state.escalation() {
            if chain.acknowledged().is_none() && !chain.is_exhausted() {
                prop_assert!(chain.deadline().is_some_and(|d| d > now));
            }
        }
    }
}

// ----- managers pull people in -------------------------------------------------

#[test]
fn a_pulled_in_person_is_paged_once_with_the_ack_slo_as_timeout_and_the_chain_goes_on() {
    check(
        "
        00:00 report payments
        00:00 declare sev1
        00:00 commander maria
        00:00 decide
        00:01 pull person zoe
        00:01 decide
        00:01 deliveries
        00:02 ack P2 zoe
        00:05 decide
        00:09 decide
        ",
        expect![[r#"
            00:00 report payments
            00:00 declare sev1
            00:00 commander maria
            00:00 decide
              page P1 ana L0 R0 severity until 00:05
            00:01 pull person zoe
            00:01 decide
              page P2 zoe L0 R0 requested #1 until 00:09
            00:01 deliveries
              P1 via ["slack", "sms"] to Some("ana") key INC-1-P1: "SEV1 INC-1: Checkout is down" / "You are paged for INC-1 (severity). Acknowledge with: klaxon ack INC-1-P1\nRunbook: https://runbooks.example/payments" / {"acknowledge_by": String("2026-03-02T00:05:00+00:00"), "incident": String("INC-1"), "page": String("INC-1-P1"), "reason": String("severity"), "runbook": String("https://runbooks.example/payments"), "severity": String("SEV1")}
              P2 via ["slack", "sms"] to Some("zoe") key INC-1-P2: "SEV1 INC-1: Checkout is down" / "maria pulls you into INC-1: need a second pair of eyes. Acknowledge with: klaxon ack INC-1-P2\nRunbook: https://runbooks.example/payments" / {"acknowledge_by": String("2026-03-02T00:09:00+00:00"), "incident": String("INC-1"), "page": String("INC-1-P2"), "reason": String("requested"), "request_reason": String("need a second pair of eyes"), "requested_by": String("maria"), "runbook": String("https://runbooks.example/payments"), "severity": String("SEV1")}
            00:02 ack P2 zoe
              acknowledged P2 by zoe
            00:05 decide
              escalate P1 L0 -> L1 R0
              page P3 carl L1 R0 escalation until 00:15
              page P4 erin L1 R0 escalation until 00:15
            00:09 decide
              breach ack due 00:08
              page P5 dora duty R0 slo_breach
        "#]],
    );
}

#[test]
fn an_unanswered_pulled_person_ends_the_request_without_paging_the_duty_manager() {
    check(
        "
        00:00 report docs
        00:00 declare sev3
        00:00 pull person zoe
        00:00 decide
        00:05 decide
        00:05 due
        ",
        expect![[r#"
            00:00 report docs
            00:00 declare sev3
            00:00 pull person zoe
            00:00 decide
              page P1 zoe L0 R0 requested #1 until 00:05
            00:05 decide
              escalate P1 L0 -> exhausted R0 #1
            00:05 due
              nothing pending
        "#]],
    );
}

#[test]
fn a_schedule_pages_whoever_is_on_call_and_a_team_walks_its_policy() {
    check(
        "
        00:00 report docs
        00:00 declare sev3
        00:00 pull schedule payments-secondary
        00:00 pull team discovery
        00:00 decide
        00:05 decide
        00:10 decide
        00:10 due
        ",
        expect![[r#"
            00:00 report docs
            00:00 declare sev3
            00:00 pull schedule payments-secondary
            00:00 pull team discovery
            00:00 decide
              page P1 carl L0 R0 requested #1 until 00:05
              escalate - L0 -> L1 R0 #2
              page P2 fay L1 R0 escalation #2 until 00:05
            00:05 decide
              escalate P1 L0 -> exhausted R0 #1
              escalate P2 L1 -> exhausted R0 #2
            00:10 decide
              nothing
            00:10 due
              nothing pending
        "#]],
    );
}

#[test]
fn a_pulled_page_acknowledged_stops_its_own_chain_only_and_nothing_pages_once_resolved() {
    check(
        "
        00:00 report docs
        00:00 declare sev3
        00:00 pull team payments
        00:00 pull person zoe
        00:00 decide
        00:01 ack P1 ana
        00:02 resolve
        00:05 decide
        00:05 due
        ",
        expect![[r#"
            00:00 report docs
            00:00 declare sev3
            00:00 pull team payments
            00:00 pull person zoe
            00:00 decide
              page P1 ana L0 R0 requested #1 until 00:05
              page P2 zoe L0 R0 requested #2 until 00:05
            00:01 ack P1 ana
              acknowledged P1 by ana
            00:02 resolve
            00:05 decide
              nothing
            00:05 due
              nothing pending
        "#]],
    );
}

#[test]
fn a_team_without_any_policy_ends_at_once_and_a_crash_pages_nobody_twice() {
    check(
        "
        00:00 report docs
        00:00 pull team nobody-owns-this
        00:00 decide
        00:00 pull person zoe
        00:00 decide
        00:01 crash
        00:01 decide
        ",
        expect![[r#"
            00:00 report docs
            00:00 pull team nobody-owns-this
            00:00 decide
              escalate - L0 -> exhausted R0 #1
            00:00 pull person zoe
            00:00 decide
              page P1 zoe L0 R0 requested #2 until 00:05
            00:01 crash
            00:01 decide
              nothing
        "#]],
    );
}

/// The example configuration with a 30-minute resolution SLA for sev1.
/// An event of the incident at `t`, by maria.
fn incident_event(t: &str, change: Change) -> Logged {
    Logged::Incident(IncidentEvent { incident: incident(), at: time(t), by: actor("maria"), change })
}

/// A Sev-1 on payments, reported, declared and given a commander at 00:00.
fn declare_sev1_at_midnight(world: &mut World) {
    world.record(incident_event(
        "00:00",
        Change::Reported(Reported {
            source: crate::ids::ReportSource::Alertmanager,
            reporter: actor("svc:alertmanager"),
            title: "Checkout is down".into(),
            description: String::new(),
            service: Some(ServiceName::new("payments").unwrap()),
            customers: Default::default(),
            labels: Default::default(),
            dedup_key: None,
            started_at: None,
            catalogued: None,
        }),
    ));
    world.record(incident_event("00:00", Change::Declared(Declared { severity: Severity::Sev1, catalogued: None })));
    world.record(incident_event(
        "00:00",
        Change::CommanderAssigned(CommanderAssigned { commander: actor("maria"), previous: None }),
    ));
}

fn with_resolve_sla() -> PagingConfig {
    let mut raw = example_config();
    raw["slo"]["sev1"]["resolve_minutes"] = json!(30);
    serde_json::from_value::<PagingFileConfig>(raw).unwrap().validate("", &schedules()).unwrap()
}

#[test]
fn an_unresolved_incident_breaches_the_resolve_slo_once_and_a_reopening_gets_a_new_window() {
    let mut world = World::new();
    world.config = with_resolve_sla();
    let at = |t: &str| time(t);
    declare_sev1_at_midnight(&mut world);
    let shown = |events: Vec<PageEvent>| events.iter().map(show).collect::<Vec<_>>();
    assert_eq!(shown(world.tick(at("00:00"))), ["page P1 ana L0 R0 severity until 00:05"]);
    let ack = acknowledge(&world.state, &page_id("P1"), &actor("ana"), &world.config, at("00:01")).unwrap();
    world.record(Logged::Page(ack));
    // The acknowledgement times out at 00:31; the resolve SLO is due at 00:30.
    assert_eq!(next_due(&world.state, &world.config), Some(at("00:30")));
    assert!(world.tick(at("00:29")).is_empty(), "a minute before the deadline: nothing");
    assert_eq!(shown(world.tick(at("00:30"))), ["breach resolve due 00:30", "page P2 dora duty R0 slo_breach"]);
    assert!(world.tick(at("00:30")).is_empty(), "recorded once");
    world.state = world.rebuild();
    assert!(world.tick(at("00:30")).is_empty(), "a restart does not breach again");
    assert_eq!(next_due(&world.state, &world.config), Some(at("00:31")), "only the ack timeout is left");

    // Resolved and reopened: a new episode with a full window of its own.
    world.record(incident_event("00:40", Change::Resolved(Resolved { summary: "fixed".into() })));
    assert_eq!(next_due(&world.state, &world.config), None);
    world.record(incident_event("01:00", Change::Reopened(Reopened { reason: "back".into() })));
    assert_eq!(shown(world.tick(at("01:00"))), ["page P3 ana L0 R0 severity until 01:05"]);
    let ack = acknowledge(&world.state, &page_id("P3"), &actor("ana"), &world.config, at("01:01")).unwrap();
    world.record(Logged::Page(ack));
    assert!(world.tick(at("01:29")).is_empty());
    assert_eq!(shown(world.tick(at("01:30"))), ["breach resolve due 01:30", "page P4 dora duty R0 slo_breach"]);
}

#[test]
fn a_mitigation_stops_the_pages_but_not_the_resolution_clock() {
    let mut world = World::new();
    world.config = with_resolve_sla();
    declare_sev1_at_midnight(&mut world);
    let shown = |events: Vec<PageEvent>| events.iter().map(show).collect::<Vec<_>>();
    assert_eq!(shown(world.tick(time("00:00"))), ["page P1 ana L0 R0 severity until 00:05"]);
    let ack = acknowledge(&world.state, &page_id("P1"), &actor("ana"), &world.config, time("00:01")).unwrap();
    world.record(Logged::Page(ack));
    world.record(incident_event("00:10", Change::Mitigated(Mitigated { summary: "rolled back".into() })));
    assert_eq!(next_due(&world.state, &world.config), Some(time("00:30")), "mitigated, still unresolved");
    assert!(world.tick(time("00:29")).is_empty());
    assert_eq!(shown(world.tick(time("00:30"))), ["breach resolve due 00:30", "page P2 dora duty R0 slo_breach"]);
    assert!(world.tick(time("00:31")).is_empty(), "recorded once");
    world.state = world.rebuild();
    assert!(world.tick(time("01:00")).is_empty(), "a restart does not breach again");
    assert_eq!(next_due(&world.state, &world.config), None);
}

#[test]
fn a_resolution_before_the_deadline_breaches_nothing() {
    let mut world = World::new();
    world.config = with_resolve_sla();
    declare_sev1_at_midnight(&mut world);
    assert_eq!(world.tick(time("00:00")).len(), 1);
    let ack = acknowledge(&world.state, &page_id("P1"), &actor("ana"), &world.config, time("00:01")).unwrap();
    world.record(Logged::Page(ack));
    world.record(incident_event("00:29", Change::Resolved(Resolved { summary: "fixed".into() })));
    assert!(world.tick(time("00:30")).is_empty());
    assert!(world.tick(time("05:00")).is_empty());
    assert_eq!(next_due(&world.state, &world.config), None);
}

#[test]
fn a_gold_customer_recorded_later_tightens_the_resolve_window() {
    let mut world = World::new();
    let mut raw = example_config();
    raw["slo"]["sev1"]["resolve_minutes"] = json!(240);
    raw["slo"]["tier"] = json!({ "gold": { "resolve_minutes": 60 } });
    raw["customers"] = json!([ { "name": "acme", "tier": "gold" } ]);
    world.config = serde_json::from_value::<PagingFileConfig>(raw).unwrap().validate("", &schedules()).unwrap();
    declare_sev1_at_midnight(&mut world);
    assert_eq!(world.tick(time("00:00")).len(), 1);
    let ack = acknowledge(&world.state, &page_id("P1"), &actor("ana"), &world.config, time("00:01")).unwrap();
    world.record(Logged::Page(ack));
    world.record(incident_event("00:20", Change::Resolved(Resolved { summary: "fixed".into() })));
    world.record(incident_event("00:25", Change::Reopened(Reopened { reason: "back".into() })));
    assert_eq!(world.tick(time("00:25")).len(), 1);
    let ack = acknowledge(&world.state, &page_id("P2"), &actor("ana"), &world.config, time("00:26")).unwrap();
    world.record(Logged::Page(ack));
    assert_eq!(next_due(&world.state, &world.config), Some(time("00:56")), "the ack timeout; resolve due 04:25");
    world.record(incident_event(
        "00:30",
        Change::CustomerImpactRecorded(crate::incident::CustomerImpactRecorded {
            customers_affected: 1,
            customers: [crate::ids::CustomerId::new("acme").unwrap()].into(),
            multi_customer: false,
            summary: "acme cannot pay".into(),
        }),
    ));
    assert!(world.tick(time("00:30")).is_empty());
    assert_eq!(world.state.customers().len(), 1);
    let shown: Vec<String> = world.tick(time("00:56")).iter().map(show).collect();
    assert_eq!(shown, ["ack timed out P2", "page P3 ana L0 R0 ack_timeout until 01:01"]);
    let ack = acknowledge(&world.state, &page_id("P3"), &actor("ana"), &world.config, time("00:57")).unwrap();
    world.record(Logged::Page(ack));
    assert_eq!(next_due(&world.state, &world.config), Some(time("01:25")), "gold: 60 minutes from the reopening");
    let shown: Vec<String> = world.tick(time("01:25")).iter().map(show).collect();
    assert_eq!(shown, ["breach resolve due 01:25", "page P4 dora duty R0 slo_breach"]);
}
