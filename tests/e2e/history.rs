//! Generated histories of incidents, written straight into a log: what
//! the scale bench (`benches/scale.rs`) starts `klaxond up` on, and what the
//! from-scratch rebuild tests (`e2e/rebuild.rs`) fold.
//!
//! Events are the domain's own: incident events come from
//! `klaxon_domain::incident::decide` on the folded state (reports, merges,
//! severity assessments from the default rules, declarations, commanders,
//! roles, impact, updates, mitigations, resolutions, validations, noise),
//! page events (paged, delivered, acknowledged), executive notifications,
//! and reviews (opened exactly when `review::open_review` says, summaries,
//! action items, publication) are built from the domain types. Incidents
//! are spread over the two years before `now`; all but the newest
//! `open_per_mille` are resolved or closed. Each incident's history is
//! seeded by its number, so a size and `now` give the same records (but
//! for their random event ids and their interleaving in the log).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use chrono::{DateTime, TimeDelta, Utc};
use klaxon_domain::catalog::ServiceCatalog;
use klaxon_domain::ids::{ActorId, Audience, CustomerId, DedupKey, IncidentId, IncidentRole, ReportSource, Severity};
use klaxon_domain::incident::{Command, Incident, IncidentEvent, decide, evolve};
use klaxon_domain::notifier::{ExecutivesNotified, NotifyChange, NotifyEvent, PostAudience, notifier_actor};
use klaxon_domain::paging::{
    PageAcknowledged, PageChange, PageDelivered, PageEvent, PageId, PageReason, ResponderPaged, paging_actor,
};
use klaxon_domain::review::{Review, ReviewCommand, ReviewEvent, decide_review, open_review};
use klaxon_domain::severity::{Rules, SeverityConfig, assess};
use klaxon_log::{EventData, EventKind, ExpectedVersion, Log, Metadata, NewEvent, StreamId};
use klaxon_reactor::streams;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Incidents written at once (each appends its streams in order), so
/// appends share group commits and incidents interleave in the log.
const WRITERS: u64 = 64;

/// The managers of the generated incidents (and of the bench's traffic).
pub const MANAGERS: &[&str] = &["maria", "omar", "li", "victor"];

/// The kind of incident a number gets, in the proportions of a company
/// whose alerts report most incidents.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Profile {
    /// An alert, assessed, declared Sev-4 and resolved when it ends (62%).
    Alert,
    /// An alert a manager marks as noise (8%).
    Noise,
    /// A Sev-3 a manager declares, owns, updates, resolves, validates (22%).
    Minor,
    /// A paged Sev-2 with customer impact and a review (6%).
    Major,
    /// A paged Sev-1 with executives told, roles, and a published review (2%).
    Critical,
}

impl Profile {
    fn of(rng: &mut StdRng) -> Profile {
        match rng.random_range(0..100) {
            0..62 => Profile::Alert,
            62..70 => Profile::Noise,
            70..92 => Profile::Minor,
            92..98 => Profile::Major,
            _ => Profile::Critical,
        }
    }
}

/// One incident's records, in the order they are appended: each entry is
/// one append to one stream.
struct History {
    appends: Vec<(StreamId, Vec<NewEvent>)>,
}

/// Builds one incident's history with the domain's decisions.
struct Builder {
    id: IncidentId,
    at: DateTime<Utc>,
    state: Option<Incident>,
    review: Option<Review>,
    rules: Arc<Rules>,
    catalog: Arc<ServiceCatalog>,
    history: History,
    /// Incident events decided but not yet appended (one append).
    pending: Vec<IncidentEvent>,
    /// Review events owed or decided, appended at the end.
    review_events: Vec<ReviewEvent>,
}

fn actor(name: &str) -> ActorId {
    ActorId::new(name).expect("a valid actor")
}

fn new_event(kind: &'static str, json: serde_json::Value, by: &ActorId, id: IncidentId) -> NewEvent {
    NewEvent {
        id: uuid::Uuid::new_v4(),
        kind: EventKind::new(kind).expect("domain kinds are log kinds"),
        data: EventData::from_value(&json).expect("events encode"),
        metadata: Metadata {
            actor: Some(by.to_string()),
            correlation_id: Some(streams::correlation_id(id)),
            causation_id: None,
            traceparent: None,
        },
    }
}

impl Builder {
    fn new(id: IncidentId, at: DateTime<Utc>, rules: Arc<Rules>, catalog: Arc<ServiceCatalog>) -> Builder {
        Builder {
            id,
            at,
            state: None,
            review: None,
            rules,
            catalog,
            history: History { appends: Vec::new() },
            pending: Vec::new(),
            review_events: Vec::new(),
        }
    }

    /// Moves the clock on by `minutes`.
    fn later(&mut self, minutes: i64) -> &mut Builder {
        self.at += TimeDelta::minutes(minutes);
        self
    }

    fn fold(&mut self, event: IncidentEvent) {
        self.state = evolve(self.state.take(), &event);
        let state = self.state.as_ref().expect("a reported incident");
        if let Some(open) = open_review(state, &event, self.review.as_ref()) {
            self.review = klaxon_domain::review::evolve_review(self.review.take(), &open);
            self.review_events.push(open);
        }
        self.pending.push(event);
        // What the severity evaluator appends after this event.
        let state = self.state.as_ref().expect("a reported incident");
        if let Some(assessed) = assess(state, &self.rules, &self.catalog, self.at) {
            self.state = evolve(self.state.take(), &assessed);
            self.pending.push(assessed);
        }
    }

    /// Decides `command` by `by` now and folds the events in.
    fn run(&mut self, by: &str, command: Command) -> &mut Builder {
        let events = decide(self.state.as_ref(), &command, &self.id, &actor(by), self.at)
            .unwrap_or_else(|e| panic!("{command:?} on {}: {e}", self.id));
        for event in events {
            self.fold(event);
        }
        self
    }

    /// Appends the incident events decided so far (one append).
    fn flush(&mut self) -> &mut Builder {
        if !self.pending.is_empty() {
            let events = self.pending.drain(..).map(|e| new_event(e.kind(), e.to_json(), &e.by, e.incident)).collect();
            self.history.appends.push((streams::incident(self.id), events));
        }
        self
    }

    fn pages(&mut self, responder: &str, channel: &str) -> &mut Builder {
        self.flush();
        let page = PageId::new(self.id, 1).expect("page 1");
        let paged = PageEvent {
            incident: self.id,
            at: self.at,
            by: paging_actor(),
            change: PageChange::ResponderPaged(ResponderPaged {
                page,
                responder: actor(responder),
                level: Some(1),
                round: 1,
                reason: PageReason::Severity,
                deadline: Some(self.at + TimeDelta::minutes(5)),
                request: None,
                policy: None,
            }),
        };
        let delivered = PageEvent {
            incident: self.id,
            at: self.at,
            by: paging_actor(),
            change: PageChange::PageDelivered(PageDelivered { page, channel: channel.into(), attempts: 1 }),
        };
        let events = [paged, delivered].map(|e| new_event(e.kind(), e.to_json(), &e.by, e.incident)).into();
        self.history.appends.push((streams::pages(self.id), events));
        self.later(3);
        let acked = PageEvent {
            incident: self.id,
            at: self.at,
            by: actor(responder),
            change: PageChange::PageAcknowledged(PageAcknowledged { page }),
        };
        self.history
            .appends
            .push((streams::pages(self.id), vec![new_event(acked.kind(), acked.to_json(), &acked.by, self.id)]));
        self
    }

    fn notify(&mut self, summary: &str) -> &mut Builder {
        self.flush();
        let severity = self.state.as_ref().and_then(Incident::severity).unwrap_or(Severity::Sev1);
        let event = NotifyEvent {
            incident: self.id,
            at: self.at,
            by: notifier_actor(),
            change: NotifyChange::ExecutivesNotified(ExecutivesNotified {
                channel: "exec-email".into(),
                audience: PostAudience::Executive,
                severity,
                summary: summary.into(),
                through: None,
            }),
        };
        self.history
            .appends
            .push((streams::notify(self.id), vec![new_event(event.kind(), event.to_json(), &event.by, self.id)]));
        self
    }

    fn review(&mut self, by: &str, command: ReviewCommand) -> &mut Builder {
        let incident = self.state.as_ref().expect("a reported incident");
        let events = decide_review(self.review.as_ref(), &command, incident, &actor(by), self.at)
            .unwrap_or_else(|e| panic!("{command:?} on the review of {}: {e}", self.id));
        for event in events {
            self.review = klaxon_domain::review::evolve_review(self.review.take(), &event);
            self.review_events.push(event);
        }
        self
    }

    fn finish(mut self) -> History {
        self.flush();
        if !self.review_events.is_empty() {
            let events =
                self.review_events.drain(..).map(|e| new_event(e.kind(), e.to_json(), &e.by, e.incident)).collect();
            self.history.appends.push((streams::review(self.id), events));
        }
        self.history
    }
}

const SERVICES: &[&str] = &["payments", "checkout", "search", "accounts", "notifications", "ledger", "web", "api"];
const ENGINEERS: &[&str] = &["ana", "carl"];

fn report(rng: &mut StdRng, source: ReportSource, alert: bool) -> Command {
    let service = SERVICES[rng.random_range(0..SERVICES.len())];
    let alertname = format!(
        "{}{}",
        ["HighErrorRate", "LatencyP99", "DiskFull", "PodCrashLoop"][rng.random_range(0..4)],
        rng.random_range(0..250)
    );
    let (reporter, title, dedup_key, labels) = if alert {
        let key = format!("{service}/{alertname}");
        let labels = [("alertname".to_owned(), alertname.clone()), ("service".to_owned(), service.to_owned())].into();
        (
            "alertmanager",
            format!("{alertname} firing on {service}"),
            Some(DedupKey::new(key).expect("a dedup key")),
            labels,
        )
    } else {
        ("desk", format!("Customers report errors in {service}"), None, Default::default())
    };
    Command::ReportIssue {
        source,
        reporter: actor(reporter),
        title,
        description: format!("{}: {}", alertname, "error rate above the threshold for 5 minutes; ".repeat(3)),
        service: Some(klaxon_domain::ids::ServiceName::new(service).expect("a service")),
        customers: Vec::new(),
        labels,
        dedup_key,
        started_at: None,
    }
}

/// The history of incident `number` (of `count`), starting at `at`; open
/// ones stop before their resolution.
fn incident_history(
    number: u64,
    open: bool,
    at: DateTime<Utc>,
    rules: Arc<Rules>,
    catalog: Arc<ServiceCatalog>,
) -> History {
    let mut rng = StdRng::seed_from_u64(number);
    let id = IncidentId::from_number(number).expect("an incident number");
    let profile = Profile::of(&mut rng);
    let manager = MANAGERS[rng.random_range(0..MANAGERS.len())];
    let engineer = ENGINEERS[rng.random_range(0..ENGINEERS.len())];
    let mut b = Builder::new(id, at, rules, catalog);
    match profile {
        Profile::Alert | Profile::Noise => {
            b.run("alertmanager", report(&mut rng, ReportSource::Alertmanager, true));
            if rng.random_bool(0.3) {
                let dedup_key = b.state.as_ref().and_then(|i| i.dedup_key().cloned());
                b.later(5).run(
                    "alertmanager",
                    Command::MergeReport {
                        source: ReportSource::Alertmanager,
                        reporter: actor("alertmanager"),
                        title: "still firing".into(),
                        dedup_key,
                    },
                );
            }
            if !open {
                if profile == Profile::Noise {
                    b.later(20).run(manager, Command::MarkNoise { reason: "flapping alert".into() });
                }
                // Only a declared incident resolves: the on-call manager
                // declares the alert at the lowest severity and resolves it.
                b.later(10).run(manager, Command::DeclareIncident { severity: Severity::Sev4 });
                b.later(30).run(manager, Command::Resolve { summary: "the alert resolved".into() });
            }
        }
        Profile::Minor => {
            b.run("desk", report(&mut rng, ReportSource::HelpDesk, false));
            b.later(10).run(manager, Command::DeclareIncident { severity: Severity::Sev3 });
            b.run(manager, Command::AssignCommander { commander: actor(manager) });
            b.later(30).run(
                manager,
                Command::PostUpdate {
                    audience: Audience::Internal,
                    text: "Investigating; a workaround is in place.".into(),
                },
            );
            if !open {
                b.later(90).run(manager, Command::Resolve { summary: "a configuration fix was deployed".into() });
                b.later(60).run(
                    MANAGERS[rng.random_range(0..MANAGERS.len())],
                    Command::ValidateResolution { note: "checked the dashboards".into() },
                );
            }
        }
        Profile::Major | Profile::Critical => {
            let critical = profile == Profile::Critical;
            let severity = if critical { Severity::Sev1 } else { Severity::Sev2 };
            b.run("monitor", report(&mut rng, ReportSource::Api, false));
            b.later(5).run(manager, Command::DeclareIncident { severity });
            b.run(manager, Command::AssignCommander { commander: actor(manager) });
            b.pages(engineer, "pager");
            b.run(engineer, Command::JoinBridge { participant: actor(engineer), role: None });
            if critical {
                b.notify("Sev-1 declared: customers see errors");
                b.run(manager, Command::AssignRole { role: IncidentRole::CommunicationsLead, person: actor("omar") });
            }
            let customers: Vec<CustomerId> = (0..3)
                .map(|c| CustomerId::new(format!("customer-{}", (number + c) % 5000)).expect("a customer"))
                .collect();
            b.later(10).run(
                manager,
                Command::RecordCustomerImpact {
                    customers_affected: 40,
                    customers,
                    multi_customer: critical,
                    summary: "checkout fails for some customers".into(),
                },
            );
            for (minutes, text) in [(15, "Identified a bad deploy."), (30, "Rolling back.")] {
                let audience = if critical { Audience::Executive } else { Audience::Internal };
                b.later(minutes).run(manager, Command::PostUpdate { audience, text: text.into() });
            }
            if !open {
                b.later(20).run(manager, Command::Mitigate { summary: "rolled back".into() });
                b.later(60).run(manager, Command::Resolve { summary: "fixed forward and verified".into() });
                if critical {
                    b.notify("Sev-1 resolved");
                }
                b.later(60).run(
                    MANAGERS[rng.random_range(0..MANAGERS.len())],
                    Command::ValidateResolution { note: "error rates normal for an hour".into() },
                );
                b.later(60 * 24).review(
                    "rita",
                    ReviewCommand::WriteSummary { summary: "A deploy without a canary broke checkout.".into() },
                );
                b.review(
                    "rita",
                    ReviewCommand::AddActionItem {
                        title: "Canary every deploy of checkout".into(),
                        owner: None,
                        due: None,
                    },
                );
                if critical {
                    b.review("rita", ReviewCommand::AddContributingFactor { factor: "No canary stage".into() });
                    b.review("rita", ReviewCommand::Publish);
                }
            }
        }
    }
    b.finish()
}

/// The rules of a configuration without `[severity]` (every report Sev-4)
/// and an empty catalog: what the generated assessments follow.
fn rules_and_catalog() -> (Arc<Rules>, Arc<ServiceCatalog>) {
    let config: SeverityConfig =
        serde_json::from_value(serde_json::json!({ "default": "sev4" })).expect("the default [severity]");
    (Arc::new(config.validate("severity").expect("the default rules")), Arc::new(ServiceCatalog::default()))
}

/// How many incidents make about `events` events (from the mean of a
/// sample of 2,000 histories): the scale bench's sizes are in events.
#[allow(dead_code, reason = "the scale bench's; the e2e tests count incidents")]
pub fn incidents_for(events: u64) -> u64 {
    let (rules, catalog) = rules_and_catalog();
    let sample = 2_000;
    let sampled: usize = (1..=sample)
        .map(|n| {
            incident_history(n, false, Utc::now(), rules.clone(), catalog.clone())
                .appends
                .iter()
                .map(|a| a.1.len())
                .sum::<usize>()
        })
        .sum();
    (events * sample / sampled as u64).max(1)
}

/// What [`write`] wrote.
#[derive(Clone, Copy, Debug)]
pub struct Written {
    /// Records appended.
    pub events: u64,
    /// Incidents left open (the newest `open_per_mille` of them).
    pub open: u64,
}

/// Appends the histories of incidents 1 to `incidents` to `log`, spread
/// evenly over the two years before `now` (none later than three hours
/// before it), the newest `open_per_mille` of them left open. With
/// `progress`, prints the rate every 20,000 incidents.
pub async fn write(log: &Log, incidents: u64, open_per_mille: u64, now: DateTime<Utc>, progress: bool) -> Written {
    let (rules, catalog) = rules_and_catalog();
    let start = now - TimeDelta::days(730);
    let spacing = TimeDelta::days(730) / i32::try_from(incidents).unwrap_or(i32::MAX);
    let next = Arc::new(AtomicU64::new(1));
    let written = Arc::new(AtomicU64::new(0));
    let open = Arc::new(AtomicU64::new(0));
    let open_from = incidents - incidents * open_per_mille / 1000 + 1;
    let begun = Instant::now();
    let tasks: Vec<_> = (0..WRITERS)
        .map(|_| {
            let (log, rules, catalog) = (log.clone(), rules.clone(), catalog.clone());
            let (next, written, open) = (next.clone(), written.clone(), open.clone());
            tokio::spawn(async move {
                loop {
                    let number = next.fetch_add(1, Ordering::Relaxed);
                    if number > incidents {
                        break;
                    }
                    let is_open = number >= open_from;
                    let at =
                        (start + spacing * i32::try_from(number).unwrap_or(i32::MAX)).min(now - TimeDelta::hours(3));
                    let history = incident_history(number, is_open, at, rules.clone(), catalog.clone());
                    let mut events = 0;
                    for (stream, batch) in history.appends {
                        events += batch.len() as u64;
                        log.append(&stream, ExpectedVersion::Any, batch).await.expect("append");
                    }
                    written.fetch_add(events, Ordering::Relaxed);
                    if is_open {
                        open.fetch_add(1, Ordering::Relaxed);
                    }
                    if progress && number % 20_000 == 0 {
                        eprintln!(
                            "  {} events, {:.0}/s",
                            written.load(Ordering::Relaxed),
                            written.load(Ordering::Relaxed) as f64 / begun.elapsed().as_secs_f64()
                        );
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("a writer");
    }
    Written { events: written.load(Ordering::Relaxed), open: open.load(Ordering::Relaxed) }
}
