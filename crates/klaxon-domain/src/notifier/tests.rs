//! Given incident and notify events, when time passes, then notifications.
//!
//! Every case is a script run by [`check`], one step a line, and the
//! transcript of what each step decided. At every `decide` step `check` also
//! verifies, for every case: idempotence (deciding again at the same time,
//! after recording, returns nothing), that [`next_due`] is exact (something
//! at it, nothing one second before it, nothing ever when it says nothing is
//! pending), and that folding the whole log from scratch gives the live
//! state.

use std::fmt::Write as _;

use chrono::{DateTime, TimeDelta, Utc};
use expect_test::{Expect, expect};
use proptest::prelude::*;
use serde_json::json;

use super::*;
use crate::ids::{Audience, ReportSource, ServiceName};
use crate::incident::{Change, Command, SeverityAssessed};
use crate::outbox::{Outcome, Receipt};

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

fn incident_id() -> IncidentId {
    IncidentId::from_number(1).unwrap()
}

/// Sev1 and Sev2 notify and have a cadence; two executive channels, one
/// company-wide channel.
fn config_with(executive_channels: &[&str]) -> NotifierConfig {
    let table = json!({ "severities": ["sev1", "sev2"], "executive_channels": executive_channels,
                        "company_wide_channels": ["all-hands"], "cadence_severities": ["sev1", "sev2"] });
    serde_json::from_value::<NotifierSectionConfig>(table).unwrap().validate("notifier").unwrap()
}

fn config() -> NotifierConfig {
    config_with(&["exec-slack", "exec-email"])
}

/// The update cadence: 30 minutes for Sev1, 60 for Sev2, 120 otherwise.
fn cadence(severity: Severity) -> TimeDelta {
    match severity {
        Severity::Sev1 => TimeDelta::minutes(30),
        Severity::Sev2 => TimeDelta::minutes(60),
        Severity::Sev3 | Severity::Sev4 => TimeDelta::minutes(120),
    }
}

// ----- the script runner ----------------------------------------------------

#[derive(Debug, Clone)]
enum Logged {
    Incident(IncidentEvent),
    Notify(NotifyEvent),
}

/// A live service in miniature: the log, and the state folded from it.
struct World {
    config: NotifierConfig,
    log: Vec<Logged>,
    state: IncidentNotifications,
}

impl World {
    fn new() -> World {
        let config = config();
        let state = IncidentNotifications::new(incident_id(), &config);
        World { config, log: Vec::new(), state }
    }

    fn record(&mut self, logged: Logged) {
        fold(&mut self.state, &logged);
        self.log.push(logged);
    }

    fn rebuild(&self) -> IncidentNotifications {
        let mut state = IncidentNotifications::new(incident_id(), &self.config);
        for logged in &self.log {
            fold(&mut state, logged);
        }
        state
    }

    fn decide(&self, now: DateTime<Utc>) -> Vec<Notification> {
        decide(&self.state, &self.config, cadence, now)
    }

    /// Runs `command` as `by` at `at` through the incident decider and
    /// records its events; returns the error, if any.
    fn command(&mut self, command: Command, by: &str, at: DateTime<Utc>) -> Result<(), crate::Error> {
        let events = crate::incident::decide(self.state.incident(), &command, &incident_id(), &actor(by), at)?;
        for event in events {
            self.record(Logged::Incident(event));
        }
        Ok(())
    }

    /// Decides at `now` with every built-in check, records the outcome of
    /// delivering everything (except the channels that `fail` or are
    /// `skip`ped, as if the service crashed before delivering them) and
    /// returns what was decided and recorded.
    fn tick(&mut self, now: DateTime<Utc>, fail: &[&str], skip: &[&str]) -> (Vec<Notification>, Vec<NotifyEvent>) {
        let due = next_due(&self.state, &self.config, cadence);
        let decided = self.decide(now);
        assert_eq!(decided.is_empty(), due.is_none_or(|due| due > now), "next_due {due:?} disagrees at {now}");
        match due {
            Some(due) => {
                assert!(!self.decide(due).is_empty(), "nothing decided at next_due {due}");
                let before = due - TimeDelta::seconds(1);
                if self.state.updated_at().is_none_or(|last| before >= last) {
                    assert_eq!(self.decide(before), [], "decided one second before next_due {due}");
                }
            }
            None => assert_eq!(self.decide(now + TimeDelta::days(30)), [], "next_due says nothing is pending"),
        }
        // Carried out as the service does: each notification's messages
        // (`outgoing`), then the record of their receipts (`recorded`).
        let mut recorded = Vec::new();
        for notification in &decided {
            let receipts: Vec<Receipt> = notification
                .outgoing(&self.state, &self.config)
                .into_iter()
                .filter(|send| !skip.contains(&send.channel.as_str()))
                .map(|send| {
                    let outcome = if fail.contains(&send.channel.as_str()) {
                        Outcome::Failed { attempts: 3, error: "HTTP 503".into() }
                    } else {
                        // The Slack-like channels thread: a first post
                        // starts a thread, a follow-up stays in its own.
                        let threads = ["exec-slack", "all-hands"].contains(&send.channel.as_str());
                        let started = || format!("ts-{}-{}", send.channel, clock(now));
                        let thread = threads.then(|| send.message.thread.clone().unwrap_or_else(started));
                        Outcome::Delivered { attempts: 1, thread }
                    };
                    Receipt { channel: send.channel, at: now, outcome }
                })
                .collect();
            recorded.extend(notification.recorded(&receipts, now));
        }
        for event in &recorded {
            self.record(Logged::Notify(event.clone()));
        }
        if skip.is_empty() {
            assert_eq!(self.decide(now), [], "decide is not idempotent at {now}");
        }
        assert_eq!(self.rebuild(), self.state, "rebuilding from the log differs from the live state");
        (decided, recorded)
    }
}

fn fold(state: &mut IncidentNotifications, logged: &Logged) {
    match logged {
        Logged::Incident(event) => state.apply_incident(event),
        Logged::Notify(event) => state.apply_notify(event),
    }
}

/// One line of transcript for a notification.
fn show(notification: &Notification) -> String {
    match notification {
        Notification::Executive(post) | Notification::CompanyWide(post) => {
            format!("{} {} -> {}: {}", post.audience(), post.severity(), post.channels().join(", "), post.summary())
        }
        Notification::CadenceReminder(r) => {
            let who = r.commander.as_ref().map_or("nobody", ActorId::as_str);
            format!("remind {who}: update due {}", clock(r.due_at))
        }
    }
}

fn report(service: Option<&str>) -> Command {
    Command::ReportIssue {
        source: ReportSource::Alertmanager,
        reporter: actor("svc:alertmanager"),
        title: "Checkout is down".into(),
        description: String::new(),
        service: service.map(|s| ServiceName::new(s).unwrap()),
        customers: Vec::new(),
        labels: Default::default(),
        dedup_key: None,
        started_at: None,
    }
}

fn impact(count: u32) -> Command {
    Command::RecordCustomerImpact {
        customers_affected: count,
        customers: Vec::new(),
        multi_customer: count > 1,
        summary: "Card payments fail in the EU.".into(),
    }
}

fn update(audience: &str) -> Command {
    let audience = match audience {
        "exec" => Audience::Executive,
        "company" => Audience::CompanyWide,
        "internal" => Audience::Internal,
        other => panic!("unknown audience {other}"),
    };
    Command::PostUpdate { audience, text: "rolling back".into() }
}

/// Runs `script` (one `HH:MM command args` a line) and compares the
/// transcript with `expected`.
///
/// Incident commands: `report [service]`, `declare sevN`, `override sevN`,
/// `assess sevN` (an evaluator's assessment), `commander who`, `update
/// exec|company|internal`, `impact N` (multi-customer when N > 1),
/// `mitigate`, `resolve`, `close`, `reopen`. Notifier steps: `decide
/// [fail:<channel>] [skip:<channel>]`, `crash` (fold the log from scratch),
/// `channels a,b` (restart with these executive channels), `due` (print
/// [`next_due`] and [`update_due`]).
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
        writeln!(out, "{line}").unwrap();
        let incident_command = match command {
            "report" => Some(report(args.first().copied())),
            "declare" => Some(Command::DeclareIncident { severity: sev(0) }),
            "override" => Some(Command::OverrideSeverity { severity: sev(0), reason: "manager".into() }),
            "commander" => Some(Command::AssignCommander { commander: actor(arg(0)) }),
            "update" => Some(update(arg(0))),
            "impact" => Some(impact(arg(0).parse().unwrap())),
            "mitigate" => Some(Command::Mitigate { summary: "rolled back".into() }),
            "resolve" => Some(Command::Resolve { summary: "fixed".into() }),
            "close" => Some(Command::ValidateResolution { note: "quiet".into() }),
            "reopen" => Some(Command::Reopen { reason: "back".into() }),
            _ => None,
        };
        if let Some(incident_command) = incident_command {
            if let Err(error) = world.command(incident_command, "maria", at) {
                writeln!(out, "  error {error}").unwrap();
            }
            continue;
        }
        match command {
            "assess" => world.record(Logged::Incident(IncidentEvent {
                incident: incident_id(),
                at,
                by: actor("klaxon-severity"),
                change: Change::SeverityAssessed(SeverityAssessed {
                    severity: sev(0),
                    rule: Some("r1".into()),
                    reason: "many errors".into(),
                    reasons: Vec::new(),
                }),
            })),
            "decide" => {
                let with = |prefix: &str| -> Vec<&str> { args.iter().filter_map(|a| a.strip_prefix(prefix)).collect() };
                let (decided, recorded) = world.tick(at, &with("fail:"), &with("skip:"));
                if decided.is_empty() {
                    writeln!(out, "  nothing").unwrap();
                }
                for notification in &decided {
                    writeln!(out, "  {}", show(notification)).unwrap();
                }
                for event in recorded.iter().filter(|e| matches!(e.change, NotifyChange::DeliveryFailed(_))) {
                    writeln!(out, "  recorded: {}", event.summary()).unwrap();
                }
            }
            "crash" => world.state = world.rebuild(),
            "channels" => {
                world.config = config_with(&arg(0).split(',').collect::<Vec<_>>());
                world.state = world.rebuild();
            }
            "due" => {
                let next = next_due(&world.state, &world.config, cadence).map_or("nothing pending".to_owned(), clock);
                let update = update_due(&world.state, cadence).map_or("no cadence".to_owned(), clock);
                writeln!(out, "  next {next}; update due {update}").unwrap();
            }
            other => panic!("unknown command {other:?} in {line:?}"),
        }
    }
    expected.assert_eq(&out);
}

// ----- cases ------------------------------------------------------------------

#[test]
fn executives_follow_every_change_coalesced_per_interval_until_closed() {
    check(
        "
        00:00 report payments
        00:00 declare sev1
        00:00 decide
        00:00 commander ana
        00:00 decide
        00:00 update exec
        00:00 override sev2
        00:00 due
        00:01 decide
        00:01 decide
        00:10 update internal
        00:10 decide
        00:20 mitigate
        00:20 resolve
        00:20 decide
        00:30 close
        00:30 due
        00:31 decide
        00:40 reopen
        00:41 decide
        ",
        expect![[r#"
            00:00 report payments
            00:00 declare sev1
            00:00 decide
              executive SEV1 -> exec-slack, exec-email: INC-1 is SEV1 (declared): Checkout is down. Service: payments. No commander yet. Next update due 2026-03-02 00:30 UTC.
            00:00 commander ana
            00:00 decide
              nothing
            00:00 update exec
            00:00 override sev2
            00:00 due
              next 00:01; update due 01:00
            00:01 decide
              executive SEV2 -> exec-slack, exec-email: INC-1 update: SEV2, declared: Checkout is down. Service: payments. Commander: ana. Latest update: rolling back. Next update due 2026-03-02 01:00 UTC.
            00:01 decide
              nothing
            00:10 update internal
            00:10 decide
              nothing
            00:20 mitigate
            00:20 resolve
            00:20 decide
              executive SEV2 -> exec-slack, exec-email: INC-1 update: SEV2, resolved: Checkout is down. Service: payments. Commander: ana. Latest update: rolling back.
            00:30 close
            00:30 due
              next 00:30; update due no cadence
            00:31 decide
              executive SEV2 -> exec-slack, exec-email: INC-1 update: SEV2, closed: Checkout is down. Service: payments. Commander: ana. Latest update: rolling back.
            00:40 reopen
            00:41 decide
              executive SEV2 -> exec-slack, exec-email: INC-1 update: SEV2, declared: Checkout is down. Service: payments. Commander: ana. Latest update: rolling back. Next update due 2026-03-02 01:40 UTC.
        "#]],
    );
}

#[test]
fn the_company_wide_group_gets_updates_the_mitigation_and_the_all_clear() {
    check(
        "
        00:00 report payments
        00:00 declare sev2
        00:00 impact 12
        00:00 decide
        00:05 update company
        00:05 update exec
        00:05 decide
        00:10 mitigate
        00:10 decide
        00:11 close
        00:20 resolve
        00:20 decide
        00:30 close
        00:30 decide
        ",
        expect![[r#"
            00:00 report payments
            00:00 declare sev2
            00:00 impact 12
            00:00 decide
              executive SEV2 -> exec-slack, exec-email: INC-1 is SEV2 (declared): Checkout is down. Service: payments. No commander yet. Impact: 12 customers: Card payments fail in the EU. Next update due 2026-03-02 01:00 UTC.
              company_wide SEV2 -> all-hands: INC-1 (SEV2) affects several customers: Checkout is down. Service: payments. No commander yet. Impact: 12 customers: Card payments fail in the EU.
            00:05 update company
            00:05 update exec
            00:05 decide
              executive SEV2 -> exec-slack, exec-email: INC-1 update: SEV2, declared: Checkout is down. Service: payments. No commander yet. Impact: 12 customers: Card payments fail in the EU. Latest update: rolling back. Next update due 2026-03-02 01:05 UTC.
              company_wide SEV2 -> all-hands: INC-1 (SEV2) update: Checkout is down. rolling back.
            00:10 mitigate
            00:10 decide
              executive SEV2 -> exec-slack, exec-email: INC-1 update: SEV2, mitigated: Checkout is down. Service: payments. No commander yet. Impact: 12 customers: Card payments fail in the EU. Latest update: rolling back. Next update due 2026-03-02 01:05 UTC.
              company_wide SEV2 -> all-hands: INC-1 (SEV2) is mitigated: Checkout is down. rolling back.
            00:11 close
              error rule validate.only_resolved forbids this while the incident is mitigated: only a resolved incident can be validated; INC-1 is mitigated
            00:20 resolve
            00:20 decide
              executive SEV2 -> exec-slack, exec-email: INC-1 update: SEV2, resolved: Checkout is down. Service: payments. No commander yet. Impact: 12 customers: Card payments fail in the EU. Latest update: rolling back.
              company_wide SEV2 -> all-hands: All clear: INC-1 (SEV2) is resolved: Checkout is down. rolling back.
            00:30 close
            00:30 decide
              executive SEV2 -> exec-slack, exec-email: INC-1 update: SEV2, closed: Checkout is down. Service: payments. No commander yet. Impact: 12 customers: Card payments fail in the EU. Latest update: rolling back.
        "#]],
    );
}

#[test]
fn a_change_while_a_post_is_on_its_way_gets_a_follow_up() {
    let mut world = World::new();
    world.command(report(Some("payments")), "maria", time("00:00")).unwrap();
    world.command(Command::DeclareIncident { severity: Severity::Sev1 }, "maria", time("00:00")).unwrap();
    // Decided at 00:00; the commander is assigned before its receipts are recorded.
    let decided = world.decide(time("00:00"));
    assert_eq!(decided.len(), 1);
    world.command(Command::AssignCommander { commander: actor("ana") }, "maria", time("00:00")).unwrap();
    for notification in &decided {
        let receipts: Vec<Receipt> = notification
            .outgoing(&world.state, &world.config)
            .into_iter()
            .map(|send| Receipt {
                channel: send.channel,
                at: time("00:00"),
                outcome: Outcome::Delivered { attempts: 1, thread: None },
            })
            .collect();
        for event in notification.recorded(&receipts, time("00:00")) {
            world.record(Logged::Notify(event));
        }
    }
    assert_eq!(world.decide(time("00:00")), [], "coalesced: not before the interval");
    let follow_up = world.decide(time("00:01"));
    let [Notification::Executive(post)] = follow_up.as_slice() else { panic!("{follow_up:?}") };
    assert!(post.is_follow_up() && post.summary().contains("Commander: ana."), "{post:?}");
    assert_eq!(post.idempotency_key("exec-slack"), format!("INC-1/executive/update-{}/exec-slack", post.through()));
}

#[test]
fn follow_ups_go_into_the_thread_the_first_post_started_also_after_a_crash() {
    let mut world = World::new();
    let threads_started = |recorded: &[NotifyEvent]| -> Vec<String> {
        recorded.iter().filter(|e| matches!(e.change, NotifyChange::ThreadStarted(_))).map(|e| e.summary()).collect()
    };
    let threads_sent = |world: &World, decided: &[Notification]| -> Vec<(String, Option<String>)> {
        let sends = decided.iter().flat_map(|n| n.outgoing(&world.state, &world.config));
        sends.map(|s| (s.channel, s.message.thread)).collect()
    };
    world.command(report(Some("payments")), "maria", time("00:00")).unwrap();
    world.command(impact(3), "maria", time("00:00")).unwrap();
    world.command(Command::DeclareIncident { severity: Severity::Sev2 }, "maria", time("00:01")).unwrap();
    let decided = world.decide(time("00:01"));
    assert_eq!(
        threads_sent(&world, &decided),
        [("exec-slack".into(), None), ("exec-email".into(), None), ("all-hands".into(), None)]
    );
    let (_, recorded) = world.tick(time("00:01"), &[], &[]);
    assert_eq!(
        threads_started(&recorded),
        [
            "started the thread of executives via exec-slack: ts-exec-slack-00:01",
            "started the thread of the company-wide group via all-hands: ts-all-hands-00:01",
        ]
    );
    // A crash: the threads come back from the log.
    world.state = world.rebuild();
    assert_eq!(world.state.thread(PostAudience::Executive, "exec-slack"), Some("ts-exec-slack-00:01"));
    assert_eq!(world.state.thread(PostAudience::CompanyWide, "exec-slack"), None, "threads are per audience");
    let raise = Command::OverrideSeverity { severity: Severity::Sev1, reason: "worse".into() };
    world.command(raise, "maria", time("00:05")).unwrap();
    let decided = world.decide(time("00:05"));
    assert_eq!(
        threads_sent(&world, &decided),
        [("exec-slack".into(), Some("ts-exec-slack-00:01".into())), ("exec-email".into(), None)]
    );
    let (_, recorded) = world.tick(time("00:05"), &[], &[]);
    assert_eq!(threads_started(&recorded), Vec::<String>::new(), "a follow-up starts no thread");
    // The overdue-update reminder is for the commander and the
    // communications lead, never the executives' channels (issue 16).
    let decided = world.decide(time("00:35"));
    assert!(matches!(decided.as_slice(), [Notification::CadenceReminder(_)]), "{decided:?}");
    assert_eq!(threads_sent(&world, &decided), Vec::<(String, Option<String>)>::new());
}

#[test]
fn a_declared_sev1_tells_every_executive_channel_once() {
    check(
        "
        00:00 report payments
        00:00 decide
        00:01 commander ana
        00:01 declare sev1
        00:01 due
        00:01 decide
        00:02 decide
        00:02 due
        ",
        expect![[r#"
            00:00 report payments
            00:00 decide
              nothing
            00:01 commander ana
              error rule assign.requires_declared_or_mitigated forbids this while the incident is reported: a commander is assigned only on a declared or mitigated incident
            00:01 declare sev1
            00:01 due
              next 00:01; update due 00:31
            00:01 decide
              executive SEV1 -> exec-slack, exec-email: INC-1 is SEV1 (declared): Checkout is down. Service: payments. No commander yet. Next update due 2026-03-02 00:31 UTC.
            00:02 decide
              nothing
            00:02 due
              next 00:31; update due 00:31
        "#]],
    );
}

#[test]
fn an_assessment_notifies_and_a_raise_notifies_again() {
    check(
        "
        00:00 report
        00:00 assess sev2
        00:00 decide
        00:05 declare sev1
        00:05 decide
        00:10 override sev2
        00:10 decide
        00:15 override sev1
        00:15 decide
        ",
        expect![[r#"
            00:00 report
            00:00 assess sev2
            00:00 decide
              executive SEV2 -> exec-slack, exec-email: INC-1 is SEV2 (reported): Checkout is down. No commander yet.
            00:05 declare sev1
            00:05 decide
              executive SEV1 -> exec-slack, exec-email: INC-1 was raised from SEV2 to SEV1 (declared): Checkout is down. No commander yet. Next update due 2026-03-02 00:35 UTC.
            00:10 override sev2
            00:10 decide
              executive SEV2 -> exec-slack, exec-email: INC-1 update: SEV2, declared: Checkout is down. No commander yet. Next update due 2026-03-02 01:05 UTC.
            00:15 override sev1
            00:15 decide
              executive SEV1 -> exec-slack, exec-email: INC-1 update: SEV1, declared: Checkout is down. No commander yet. Next update due 2026-03-02 00:35 UTC.
        "#]],
    );
}

#[test]
fn other_severities_tell_nobody_until_raised() {
    check(
        "
        00:00 report
        00:00 declare sev3
        00:00 decide
        00:00 due
        01:00 override sev1
        01:00 due
        01:00 decide
        ",
        expect![[r#"
            00:00 report
            00:00 declare sev3
            00:00 decide
              nothing
            00:00 due
              next nothing pending; update due no cadence
            01:00 override sev1
            01:00 due
              next 01:00; update due 01:30
            01:00 decide
              executive SEV1 -> exec-slack, exec-email: INC-1 is SEV1 (declared): Checkout is down. No commander yet. Next update due 2026-03-02 01:30 UTC.
        "#]],
    );
}

#[test]
fn multi_customer_incidents_are_posted_company_wide_once() {
    check(
        "
        00:00 report payments
        00:00 declare sev2
        00:00 impact 1
        00:00 decide
        00:10 impact 12
        00:10 decide
        00:20 impact 1
        00:20 impact 40
        00:20 override sev1
        00:20 decide
        ",
        expect![[r#"
            00:00 report payments
            00:00 declare sev2
            00:00 impact 1
            00:00 decide
              executive SEV2 -> exec-slack, exec-email: INC-1 is SEV2 (declared): Checkout is down. Service: payments. No commander yet. Impact: 1 customer: Card payments fail in the EU. Next update due 2026-03-02 01:00 UTC.
            00:10 impact 12
            00:10 decide
              company_wide SEV2 -> all-hands: INC-1 (SEV2) affects several customers: Checkout is down. Service: payments. No commander yet. Impact: 12 customers: Card payments fail in the EU.
            00:20 impact 1
            00:20 impact 40
            00:20 override sev1
            00:20 decide
              executive SEV1 -> exec-slack, exec-email: INC-1 was raised from SEV2 to SEV1 (declared): Checkout is down. Service: payments. No commander yet. Impact: 40 customers: Card payments fail in the EU. Next update due 2026-03-02 00:30 UTC.
        "#]],
    );
}

#[test]
fn a_multi_customer_incident_that_does_not_notify_is_not_posted() {
    check(
        "
        00:00 report
        00:00 declare sev3
        00:00 impact 12
        00:00 decide
        ",
        expect![[r#"
            00:00 report
            00:00 declare sev3
            00:00 impact 12
            00:00 decide
              nothing
        "#]],
    );
}

#[test]
fn failures_settle_a_post_and_a_crash_resumes_with_the_missing_channels() {
    check(
        "
        00:00 report
        00:00 declare sev2
        00:00 decide fail:exec-email
        00:01 decide
        00:02 override sev1
        00:02 decide skip:exec-email
        00:02 crash
        00:03 decide
        00:04 decide
        ",
        expect![[r#"
            00:00 report
            00:00 declare sev2
            00:00 decide fail:exec-email
              executive SEV2 -> exec-slack, exec-email: INC-1 is SEV2 (declared): Checkout is down. No commander yet. Next update due 2026-03-02 01:00 UTC.
              recorded: could not notify executives via exec-email (SEV2): HTTP 503
            00:01 decide
              nothing
            00:02 override sev1
            00:02 decide skip:exec-email
              executive SEV1 -> exec-slack, exec-email: INC-1 was raised from SEV2 to SEV1 (declared): Checkout is down. No commander yet. Next update due 2026-03-02 00:30 UTC.
            00:02 crash
            00:03 decide
              executive SEV1 -> exec-email: INC-1 was raised from SEV2 to SEV1 (declared): Checkout is down. No commander yet. Next update due 2026-03-02 00:30 UTC.
            00:04 decide
              nothing
        "#]],
    );
}

#[test]
fn an_incident_resolved_before_the_decision_is_not_announced() {
    check(
        "
        00:00 report
        00:00 declare sev1
        00:00 resolve
        00:00 decide
        00:00 due
        ",
        expect![[r#"
            00:00 report
            00:00 declare sev1
            00:00 resolve
            00:00 decide
              nothing
            00:00 due
              next nothing pending; update due no cadence
        "#]],
    );
}

#[test]
fn reminders_repeat_every_cadence_from_the_last_executive_update() {
    check(
        "
        00:00 report
        00:00 declare sev1
        00:00 commander ana
        00:00 decide
        00:29 decide
        00:30 decide
        00:30 due
        00:45 update internal
        00:45 update company
        00:45 decide
        01:00 decide
        01:10 update exec
        01:10 due
        01:39 decide
        01:40 decide
        ",
        expect![[r#"
            00:00 report
            00:00 declare sev1
            00:00 commander ana
            00:00 decide
              executive SEV1 -> exec-slack, exec-email: INC-1 is SEV1 (declared): Checkout is down. Commander: ana. Next update due 2026-03-02 00:30 UTC.
            00:29 decide
              nothing
            00:30 decide
              remind ana: update due 00:30
            00:30 due
              next 01:00; update due 00:30
            00:45 update internal
            00:45 update company
            00:45 decide
              nothing
            01:00 decide
              remind ana: update due 01:00
            01:10 update exec
            01:10 due
              next 01:10; update due 01:40
            01:39 decide
              executive SEV1 -> exec-slack, exec-email: INC-1 update: SEV1, declared: Checkout is down. Commander: ana. Latest update: rolling back. Next update due 2026-03-02 01:40 UTC.
            01:40 decide
              remind ana: update due 01:40
        "#]],
    );
}

#[test]
fn after_a_restart_missed_reminders_collapse_into_one() {
    check(
        "
        00:00 report
        00:00 declare sev1
        00:00 decide
        00:00 crash
        02:10 decide
        02:10 due
        02:30 decide
        ",
        expect![[r#"
            00:00 report
            00:00 declare sev1
            00:00 decide
              executive SEV1 -> exec-slack, exec-email: INC-1 is SEV1 (declared): Checkout is down. No commander yet. Next update due 2026-03-02 00:30 UTC.
            00:00 crash
            02:10 decide
              remind nobody: update due 02:00
            02:10 due
              next 02:30; update due 00:30
            02:30 decide
              remind nobody: update due 02:30
        "#]],
    );
}

#[test]
fn the_cadence_starts_when_the_incident_enters_it_and_stops_on_resolution() {
    check(
        "
        00:00 report
        00:00 declare sev3
        00:00 due
        01:00 override sev1
        01:00 decide
        01:00 due
        01:20 mitigate
        01:30 decide
        01:40 resolve
        01:40 due
        03:00 reopen
        03:00 due
        03:00 decide
        03:30 decide
        04:00 resolve
        04:00 close
        04:00 due
        ",
        expect![[r#"
            00:00 report
            00:00 declare sev3
            00:00 due
              next nothing pending; update due no cadence
            01:00 override sev1
            01:00 decide
              executive SEV1 -> exec-slack, exec-email: INC-1 is SEV1 (declared): Checkout is down. No commander yet. Next update due 2026-03-02 01:30 UTC.
            01:00 due
              next 01:30; update due 01:30
            01:20 mitigate
            01:30 decide
              executive SEV1 -> exec-slack, exec-email: INC-1 update: SEV1, mitigated: Checkout is down. No commander yet. Next update due 2026-03-02 01:30 UTC.
              remind nobody: update due 01:30
            01:40 resolve
            01:40 due
              next 01:40; update due no cadence
            03:00 reopen
            03:00 due
              next 03:00; update due 03:30
            03:00 decide
              executive SEV1 -> exec-slack, exec-email: INC-1 update: SEV1, declared: Checkout is down. No commander yet. Next update due 2026-03-02 03:30 UTC.
            03:30 decide
              remind nobody: update due 03:30
            04:00 resolve
            04:00 close
            04:00 due
              next 04:00; update due no cadence
        "#]],
    );
}

#[test]
fn the_cadence_of_the_current_severity_applies() {
    check(
        "
        00:00 report
        00:00 declare sev2
        00:00 decide
        00:00 due
        00:20 override sev1
        00:20 due
        00:20 decide
        00:30 decide
        00:40 override sev3
        00:40 due
        ",
        expect![[r#"
            00:00 report
            00:00 declare sev2
            00:00 decide
              executive SEV2 -> exec-slack, exec-email: INC-1 is SEV2 (declared): Checkout is down. No commander yet. Next update due 2026-03-02 01:00 UTC.
            00:00 due
              next 01:00; update due 01:00
            00:20 override sev1
            00:20 due
              next 00:20; update due 00:30
            00:20 decide
              executive SEV1 -> exec-slack, exec-email: INC-1 was raised from SEV2 to SEV1 (declared): Checkout is down. No commander yet. Next update due 2026-03-02 00:30 UTC.
            00:30 decide
              remind nobody: update due 00:30
            00:40 override sev3
            00:40 due
              next 00:40; update due no cadence
        "#]],
    );
}

#[test]
fn an_undeclared_incident_has_no_cadence_yet() {
    check(
        "
        00:00 report
        00:00 assess sev1
        00:00 decide
        00:00 due
        02:00 declare sev1
        02:00 due
        02:00 decide
        ",
        expect![[r#"
            00:00 report
            00:00 assess sev1
            00:00 decide
              executive SEV1 -> exec-slack, exec-email: INC-1 is SEV1 (reported): Checkout is down. No commander yet.
            00:00 due
              next nothing pending; update due no cadence
            02:00 declare sev1
            02:00 due
              next 02:00; update due 02:30
            02:00 decide
              executive SEV1 -> exec-slack, exec-email: INC-1 update: SEV1, declared: Checkout is down. No commander yet. Next update due 2026-03-02 02:30 UTC.
        "#]],
    );
}

#[test]
fn a_channel_added_later_is_told_about_open_incidents() {
    check(
        "
        00:00 report
        00:00 declare sev1
        00:00 decide
        00:10 channels exec-slack,exec-email,exec-pager
        00:10 decide
        00:11 channels exec-slack
        00:11 override sev2
        00:11 decide
        ",
        expect![[r#"
            00:00 report
            00:00 declare sev1
            00:00 decide
              executive SEV1 -> exec-slack, exec-email: INC-1 is SEV1 (declared): Checkout is down. No commander yet. Next update due 2026-03-02 00:30 UTC.
            00:10 channels exec-slack,exec-email,exec-pager
            00:10 decide
              executive SEV1 -> exec-pager: INC-1 is SEV1 (declared): Checkout is down. No commander yet. Next update due 2026-03-02 00:30 UTC.
            00:11 channels exec-slack
            00:11 override sev2
            00:11 decide
              executive SEV2 -> exec-slack: INC-1 update: SEV2, declared: Checkout is down. No commander yet. Next update due 2026-03-02 01:00 UTC.
        "#]],
    );
}

#[test]
fn posts_carry_idempotency_keys_and_cut_long_errors() {
    let mut world = World::new();
    world.command(report(Some("payments")), "maria", time("00:00")).unwrap();
    world.command(Command::DeclareIncident { severity: Severity::Sev1 }, "maria", time("00:00")).unwrap();
    let decided = world.decide(time("00:00"));
    let [Notification::Executive(post)] = decided.as_slice() else { panic!("expected one post, got {decided:?}") };
    assert_eq!(post.idempotency_key("exec-slack"), "INC-1/executive/sev1/exec-slack");
    let failed = post.failed("exec-slack", &"e".repeat(DELIVERY_ERROR_CHARS_MAX * 2), time("00:00"));
    let NotifyChange::DeliveryFailed(failed) = failed.change else { panic!("wrong kind") };
    assert_eq!(failed.error.chars().count(), DELIVERY_ERROR_CHARS_MAX);
    let reminder = Reminder { incident: incident_id(), commander: None, due_at: time("00:30") };
    assert_eq!(
        reminder.text(),
        "INC-1: an executive update was due at 2026-03-02T00:30:00+00:00; please post one for the executive audience"
    );
    // The messages: the post per channel, the reminder to every executive
    // channel, addressed to the commander.
    let messages: Vec<String> = decided[0]
        .outgoing(&world.state, &world.config)
        .iter()
        .map(|s| {
            format!(
                "{} {} {} | {} | {}",
                s.channel, s.message.kind, s.message.idempotency_key, s.message.title, s.message.text
            )
        })
        .collect();
    expect![[r#"
        [
            "exec-slack executive_post INC-1/executive/sev1/exec-slack | SEV1 INC-1: Checkout is down | INC-1 is SEV1 (declared): Checkout is down. Service: payments. No commander yet. Next update due 2026-03-02 00:30 UTC.",
            "exec-email executive_post INC-1/executive/sev1/exec-email | SEV1 INC-1: Checkout is down | INC-1 is SEV1 (declared): Checkout is down. Service: payments. No commander yet. Next update due 2026-03-02 00:30 UTC.",
        ]
    "#]].assert_debug_eq(&messages);
    let reminder = Notification::CadenceReminder(Reminder { commander: Some(actor("omar")), ..reminder });
    // The reminder goes to the commander and the communications leads on
    // the channels that reach a person, never to the executives.
    assert_eq!(reminder.outgoing(&world.state, &world.config), [], "no channel reaches a person");
    let lead = Command::AssignRole { role: crate::ids::IncidentRole::CommunicationsLead, person: actor("li") };
    world.command(lead, "maria", time("00:00")).unwrap();
    let people = world.config.clone().with_people_channels(vec!["pager".into(), "sms".into()]);
    let sends = reminder.outgoing(&world.state, &people);
    let to: Vec<(&str, Option<&str>, &str)> = sends
        .iter()
        .map(|s| (s.channel.as_str(), s.message.recipient.as_deref(), s.message.idempotency_key.as_str()))
        .collect();
    assert_eq!(
        to,
        [
            ("pager", Some("omar"), "INC-1/update-due/1772411400/omar"),
            ("sms", Some("omar"), "INC-1/update-due/1772411400/omar"),
            ("pager", Some("li"), "INC-1/update-due/1772411400/li"),
            ("sms", Some("li"), "INC-1/update-due/1772411400/li"),
        ]
    );
    let item = world.state.feed_item(cadence).unwrap();
    assert_eq!(
        (item.severity, item.next_update_due, item.at),
        (Some(Severity::Sev1), Some(time("00:30")), time("00:00"))
    );
}

// ----- properties -------------------------------------------------------------

#[derive(Debug, Clone)]
enum Op {
    Wait(i64),
    Command(Command),
    Assess(Severity),
    Decide { fail: bool, skip: bool },
    Crash,
}

fn severity() -> impl Strategy<Value = Severity> {
    prop::sample::select(Severity::ALL.to_vec())
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (1_i64..5_400).prop_map(Op::Wait),
        1 => severity().prop_map(|severity| Op::Command(Command::DeclareIncident { severity })),
        1 => severity().prop_map(|severity| Op::Command(Command::OverrideSeverity { severity, reason: "r".into() })),
        1 => severity().prop_map(Op::Assess),
        1 => prop::sample::select(vec!["exec", "company", "internal"]).prop_map(|a| Op::Command(update(a))),
        1 => (0_u32..5).prop_map(|n| Op::Command(impact(n))),
        1 => prop::sample::select(vec!["ana", "ben"]).prop_map(|c| Op::Command(Command::AssignCommander { commander: actor(c) })),
        1 => Just(Op::Command(Command::Mitigate { summary: "m".into() })),
        1 => Just(Op::Command(Command::Resolve { summary: "r".into() })),
        1 => Just(Op::Command(Command::Reopen { reason: "r".into() })),
        1 => Just(Op::Command(Command::ValidateResolution { note: "n".into() })),
        4 => (any::<bool>(), any::<bool>()).prop_map(|(fail, skip)| Op::Decide { fail, skip }),
        1 => Just(Op::Crash),
    ]
}

proptest! {
    /// Whatever happens and whenever the service decides, the built-in
    /// checks of `tick` hold (idempotence, exact `next_due`, rebuild equals
    /// live); every channel gets first posts and raises at most once per
    /// severity, in rising severity, and follow-ups never closer together
    /// than the coalescing interval; reminders are never closer together
    /// than the cadence; and in the end every channel told covers every
    /// change.
    #[test]
    fn deciding_at_any_time_after_any_history_is_consistent(ops in prop::collection::vec(op(), 1..60)) {
        let mut world = World::new();
        let mut now = base();
        world.command(report(Some("payments")), "maria", now).unwrap();
        let mut told: Vec<(PostAudience, String, Severity)> = Vec::new();
        let mut last_post: std::collections::HashMap<(PostAudience, String), DateTime<Utc>> = Default::default();
        let mut reminders: Vec<DateTime<Utc>> = Vec::new();
        for op in ops {
            match op {
                Op::Wait(seconds) => now += TimeDelta::seconds(seconds),
                Op::Command(command) => {
                    let _ = world.command(command, "maria", now);
                }
                Op::Assess(severity) => world.record(Logged::Incident(IncidentEvent {
                    incident: incident_id(),
                    at: now,
                    by: actor("klaxon-severity"),
                    change: Change::SeverityAssessed(SeverityAssessed {
                        severity, rule: None, reason: "default".into(), reasons: Vec::new(),
                    }),
                })),
                Op::Decide { fail, skip } => {
                    let fail: &[&str] = if fail { &["exec-email"] } else { &[] };
                    let skip: &[&str] = if skip { &["exec-slack"] } else { &[] };
                    let (decided, recorded) = world.tick(now, fail, skip);
                    for notification in &decided {
                        let (Notification::Executive(post) | Notification::CompanyWide(post)) = notification else { continue };
                        for channel in post.channels().iter().filter(|c| !skip.contains(&c.as_str())) {
                            let key = (post.audience(), channel.clone());
                            if post.is_follow_up() {
                                // Coalesced: never closer than the interval to the channel's last post.
                                let last = last_post.get(&key).copied();
                                prop_assert!(last.is_some_and(|last| now - last >= world.config.follow_up_interval()), "{channel} followed up at {now} after {last:?}");
                            } else {
                                let before = told.iter().filter(|(a, c, _)| *a == key.0 && *c == key.1).map(|t| t.2).max();
                                prop_assert!(before.is_none_or(|b| post.severity() > b), "{channel} told {} after {before:?}", post.severity());
                                prop_assert!(key.0 == PostAudience::Executive || before.is_none(), "{channel} posted twice");
                                told.push((key.0, key.1.clone(), post.severity()));
                            }
                            last_post.insert(key, now);
                        }
                    }
                    for event in recorded {
                        if let NotifyChange::UpdateOverdue(o) = event.change {
                            if let Some(last) = reminders.last() {
                                prop_assert!(o.due_at >= *last + TimeDelta::minutes(30), "reminders due {last} and {}", o.due_at);
                            }
                            prop_assert!(o.due_at <= now);
                            reminders.push(o.due_at);
                        }
                    }
                }
                Op::Crash => world.state = world.rebuild(),
            }
        }
        // The last state is never dropped: once the service decides after
        // the coalescing interval, every channel told covers every change.
        world.tick(now + TimeDelta::days(1), &[], &[]);
        for (audience, channel, record) in world.state.posts() {
            prop_assert_eq!(record.through(), world.state.changes(audience), "{} of {} missed a change", channel, audience);
        }
    }
}
