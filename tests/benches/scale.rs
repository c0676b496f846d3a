//! Years of history on one machine: how long `klaxond up` takes to serve a
//! big log, and how much memory it holds, as the log grows.
//!
//! `cargo bench -p klaxon-tests --bench scale` (a release `klaxond`, built
//! in the bench profile by the bench itself) prints one table row per size:
//!
//! 1. **Generate** (cached): a history of about `N` events written straight
//!    into a data folder through `klaxon_log::Log` (64 incidents appended
//!    at once, so appends share group commits). Events are the domain's own:
//!    incident events come from `klaxon_domain::incident::decide` on the
//!    folded state (reports, merges, severity assessments from the default
//!    rules, declarations, commanders, roles, impact, updates, mitigations,
//!    resolutions, validations, noise), page events (paged, delivered,
//!    acknowledged), executive notifications, and reviews (opened exactly
//!    when `review::open_review` says, summaries, action items,
//!    publication) are built from the domain types. Incidents are spread
//!    over the two years before now; all but the newest 0.5% are resolved
//!    or closed. The severity evaluator's checkpoint is saved at the head,
//!    as a system that ran all along would have it. The folder is kept in
//!    `target/scale/events-N` (delete it to regenerate).
//! 2. **First start**: a copy of the folder, `klaxond up --config` with
//!    the paging configuration of the e2e tests (a real webhook receiver);
//!    the time from spawn until every service's `klaxon_processed_position`
//!    equals `klaxon_log_head` (polled on `/metrics` every 50 ms, the head
//!    unchanged across the check), then `VmRSS` from `/proc/<pid>/status`.
//! 3. **An hour of traffic**, compressed: what a busy company sends in an
//!    hour, through gRPC with 16 concurrent clients as fast as it goes
//!    (alert reports, one a second, on 400 alert keys, so most merge into
//!    their open incident; every 60th opens a Sev-2 that is declared,
//!    given a commander, updated three times, mitigated, resolved and
//!    validated; 600 reads of incidents and lists). Then the system settles
//!    and `VmRSS` is read again.
//! 4. **Restart**: SIGTERM, then `klaxond up` on the same folder, timed to
//!    ready as in 2.
//!
//! For both starts a second table says where the time went: `serving`
//! (spawn until klaxond says where it listens: log open and index rebuild
//! from the log's tail, configuration, wiring) and, for each service, when
//! `/metrics` first showed it at the head (snapshot load and decode, then
//! the fold of the rest).
//!
//! `[memory] evict_closed_after` (closed incidents leave memory) is passed
//! as `24h` when klaxond's configuration has the setting (read from its
//! source), or as `KLAXON_SCALE_EVICT_CLOSED_AFTER` says (`off`: not at all).
//!
//! `KLAXON_SCALE_CONFIG` is appended to klaxond's configuration (TOML,
//! `\n` for line breaks), for experiments such as
//! `KLAXON_SCALE_CONFIG='[log]\ncache_bytes = 67108864'`.
//!
//! `KLAXON_SCALE_EVENTS` chooses the sizes (default `100000,1000000`; add
//! `10000000` for the 10M row, which takes long: about 2 GB of data and
//! minutes of generation). `KLAXON_SCALE_TRAFFIC` sets the traffic's
//! reports (default 3600). `KLAXON_SCALE_KEEP=1` keeps the generated
//! folders (they are kept by default; `KLAXON_SCALE_KEEP=0` deletes each
//! after its row).
#![allow(missing_docs)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

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
use klaxon_proto::v1::{self, incidents_client::IncidentsClient};
use klaxon_reactor::streams;
use klaxon_tests::Klaxond;
use klaxon_tests::auth::as_person;
use klaxon_tests::config::Paged;
use klaxon_tests::metrics::scrape;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Incidents generated at once (each appends its streams in order).
const WRITERS: u64 = 64;
/// Per mille of incidents (the newest) left open.
const OPEN_PER_MILLE: u64 = 5;
/// How long a start may take before the bench gives up.
const READY_LIMIT: Duration = Duration::from_secs(3600);

/// What one generated folder holds.
#[derive(Clone, Copy, Debug)]
struct Generated {
    events: u64,
    incidents: u64,
    open: u64,
}

impl Generated {
    fn to_line(self) -> String {
        format!("{} {} {}", self.events, self.incidents, self.open)
    }

    fn from_line(line: &str) -> Option<Generated> {
        let mut parts = line.split_whitespace().map(|p| p.parse::<u64>().ok());
        Some(Generated { events: parts.next()??, incidents: parts.next()??, open: parts.next()?? })
    }
}

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
const MANAGERS: &[&str] = &["maria", "omar", "li", "victor"];
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
                b.review("rita", ReviewCommand::AddActionItem { title: "Canary every deploy of checkout".into() });
                if critical {
                    b.review("rita", ReviewCommand::AddContributingFactor { factor: "No canary stage".into() });
                    b.review("rita", ReviewCommand::Publish);
                }
            }
        }
    }
    b.finish()
}

/// klaxond's configuration source: whether it knows `[memory]
/// evict_closed_after` (bounded memory, issue 19) is read from it, so that
/// the bench passes the setting exactly when the klaxond it builds takes it.
const KLAXOND_CONFIG_SOURCE: &str = include_str!("../../crates/klaxond/src/config.rs");

/// `[memory] evict_closed_after` for the starts: `KLAXON_SCALE_EVICT_CLOSED_AFTER`
/// (a duration such as `24h`, or `off`), else `24h` when klaxond has the
/// setting, else none.
fn evict_closed_after() -> Option<String> {
    match std::env::var("KLAXON_SCALE_EVICT_CLOSED_AFTER") {
        Ok(v) if v == "off" || v.is_empty() => None,
        Ok(v) => Some(v),
        Err(_) => KLAXOND_CONFIG_SOURCE.contains("evict_closed_after").then(|| "24h".to_owned()),
    }
}

/// Writes about `target` events into a new log at `dir`.
fn generate(dir: &Path, target: u64, runtime: &tokio::runtime::Runtime) -> Generated {
    let log = Log::open(dir, klaxon_log::Options::default()).expect("open the log");
    // The rules of a configuration without `[severity]`: every report SEV4.
    let config: SeverityConfig =
        serde_json::from_value(serde_json::json!({ "default": "sev4" })).expect("the default [severity]");
    let rules = Arc::new(config.validate("severity").expect("the default rules"));
    let catalog = Arc::new(ServiceCatalog::default());
    // How many incidents make `target` events, from the mean of a sample.
    let now = Utc::now();
    let sample = 2_000;
    let sampled: usize = (1..=sample)
        .map(|n| {
            incident_history(n, false, now, rules.clone(), catalog.clone())
                .appends
                .iter()
                .map(|a| a.1.len())
                .sum::<usize>()
        })
        .sum();
    let incidents = (target * sample / sampled as u64).max(1);
    let start = now - TimeDelta::days(730);
    let spacing = TimeDelta::days(730) / i32::try_from(incidents).unwrap_or(i32::MAX);
    let next = Arc::new(AtomicU64::new(1));
    let written = Arc::new(AtomicU64::new(0));
    let open = Arc::new(AtomicU64::new(0));
    let open_from = incidents - incidents * OPEN_PER_MILLE / 1000 + 1;
    let begun = Instant::now();
    runtime.block_on(async {
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
                        let at = (start + spacing * i32::try_from(number).unwrap_or(i32::MAX))
                            .min(now - TimeDelta::hours(3));
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
                        if number % 20_000 == 0 {
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
        let head = log.head();
        // What a severity evaluator that ran all along would have saved.
        log.save_checkpoint(klaxon_severity_consumer(), head).await.expect("save the checkpoint");
        log.close().await;
    });
    Generated { events: written.load(Ordering::Relaxed), incidents, open: open.load(Ordering::Relaxed) }
}

/// The severity evaluator's checkpoint name (`klaxon_severity::CONSUMER`;
/// the tests crate does not depend on the service).
fn klaxon_severity_consumer() -> &'static str {
    "severity"
}

fn folder_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| match e.file_type() {
                    Ok(t) if t.is_dir() => folder_bytes(&e.path()),
                    _ => e.metadata().map_or(0, |m| m.len()),
                })
                .sum()
        })
        .unwrap_or(0)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create the copy");
    for entry in std::fs::read_dir(from).expect("read the folder") {
        let entry = entry.expect("an entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("a file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).expect("copy a file");
        }
    }
}

fn rss_mb(pid: u32) -> f64 {
    status_mb(pid, "VmRSS:")
}

/// A memory line (`VmRSS:`, `VmHWM:`) of `/proc/<pid>/status`, in MB.
fn status_mb(pid: u32, line: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc/<pid>/status");
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix(line))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("a {line} line"));
    kb / 1024.0
}

/// When a start was ready: the log's head then, and when (seconds after
/// the spawn) each service first reported it had processed the head; and
/// what the wait saw of the process (load-independent work beside the
/// wall-clock time).
struct Ready {
    head: u64,
    services: Vec<(String, f64)>,
    /// The slowest `/metrics` answer while waiting, in seconds.
    slowest_scrape_s: f64,
    /// Scrapes made while waiting.
    scrapes: u64,
}

/// Clock ticks per second in `/proc/<pid>/stat` (`getconf CLK_TCK`, 100 on
/// Linux).
const TICKS_PER_S: f64 = 100.0;

/// CPU seconds (user + system) from a `/proc/.../stat` line: the name in
/// parentheses, then utime and stime (fields 14 and 15).
fn stat_cpu(stat: &str) -> Option<(String, f64)> {
    let (open, close) = (stat.find('(')?, stat.rfind(')')?);
    let name = stat[open + 1..close].to_owned();
    let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
    // Fields after the name start at field 3 (state).
    let ticks = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some((name, ticks / TICKS_PER_S))
}

/// The process's CPU seconds so far (every thread, live or gone), and the
/// live threads' CPU seconds summed by thread name, the most first.
fn cpu_by_thread(pid: u32) -> (f64, Vec<(String, f64)>) {
    let total =
        std::fs::read_to_string(format!("/proc/{pid}/stat")).ok().and_then(|s| stat_cpu(&s)).map_or(0.0, |c| c.1);
    let mut by_name: Vec<(String, f64)> = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).into_iter().flatten().flatten() {
        let Some((name, cpu)) = std::fs::read_to_string(task.path().join("stat")).ok().and_then(|s| stat_cpu(&s))
        else {
            continue;
        };
        match by_name.iter_mut().find(|(n, _)| *n == name) {
            Some((_, sum)) => *sum += cpu,
            None => by_name.push((name, cpu)),
        }
    }
    by_name.sort_by(|a, b| b.1.total_cmp(&a.1));
    (total, by_name)
}

/// `VmHWM` (the peak resident memory so far) of `pid`, in MB.
fn peak_rss_mb(pid: u32) -> f64 {
    status_mb(pid, "VmHWM:")
}

/// What a start cost, read when it was ready: CPU seconds in all and by
/// thread, the peak RSS, and the slowest `/metrics` answer.
fn work(pid: u32, ready: &Ready) -> String {
    let (total, threads) = cpu_by_thread(pid);
    let each: Vec<String> = threads.iter().take(4).map(|(n, c)| format!("{n} {c:.1}")).collect();
    format!(
        "CPU {total:.1} s ({}); peak RSS {:.0} MB; slowest of {} scrapes {:.3} s",
        each.join(", "),
        peak_rss_mb(pid),
        ready.scrapes,
        ready.slowest_scrape_s
    )
}

/// Polls `/metrics` until every service has processed the log's head and
/// the head held still meanwhile; notes when each service first got there
/// (seconds since `begun`).
fn wait_ready(up: &Klaxond, begun: Instant) -> Ready {
    let address = up.http_address.as_deref().expect("up serves HTTP");
    let deadline = Instant::now() + READY_LIMIT;
    let mut services: Vec<(String, f64)> = Vec::new();
    let (mut slowest_scrape_s, mut scrapes) = (0.0_f64, 0);
    loop {
        let asked = Instant::now();
        let metrics = scrape(address);
        slowest_scrape_s = slowest_scrape_s.max(asked.elapsed().as_secs_f64());
        scrapes += 1;
        let head = metrics.get("klaxon_log_head").copied().unwrap_or(0.0) as u64;
        let positions: Vec<(&str, u64)> = metrics
            .iter()
            .filter_map(|(name, v)| {
                let service = name.strip_prefix("klaxon_processed_position{service=\"")?.strip_suffix("\"}")?;
                Some((service, *v as u64))
            })
            .collect();
        for (service, position) in &positions {
            if *position >= head && !services.iter().any(|(s, _)| s == service) {
                services.push(((*service).to_owned(), begun.elapsed().as_secs_f64()));
            }
        }
        if !positions.is_empty() && positions.iter().all(|(_, p)| *p >= head) {
            let again = scrape(address).get("klaxon_log_head").copied().unwrap_or(0.0) as u64;
            if again == head {
                return Ready { head, services, slowest_scrape_s, scrapes };
            }
        }
        assert!(Instant::now() < deadline, "not ready within {READY_LIMIT:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One start's phases: `serving` (spawn until it listens: log open and
/// index rebuild from its tail, configuration, wiring), then each service's
/// time to the head (snapshot load and decode, folding the rest).
fn phases(serving_s: f64, ready: &Ready) -> String {
    let mut services = ready.services.clone();
    services.sort_by(|a, b| a.0.cmp(&b.0));
    let each: Vec<String> = services.iter().map(|(s, t)| format!("{s} {t:.2}")).collect();
    format!("serving {serving_s:.2}; {}", each.join(", "))
}

/// An hour of a busy company, compressed; returns the calls made.
async fn traffic(url: &str, reports: u64) -> u64 {
    let channel =
        tonic::transport::Channel::from_shared(url.to_owned()).expect("a URL").connect().await.expect("connect");
    let calls = Arc::new(AtomicU64::new(0));
    let next = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..16)
        .map(|client| {
            let channel = channel.clone();
            let (calls, next) = (calls.clone(), next.clone());
            tokio::spawn(async move {
                let monitor = IncidentsClient::with_interceptor(channel.clone(), as_person("alertmanager"));
                let manager = IncidentsClient::with_interceptor(channel, as_person(MANAGERS[client % MANAGERS.len()]));
                let (mut monitor, mut manager) = (monitor, manager);
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= reports {
                        break;
                    }
                    let key = format!("traffic/alert-{}", n % 400);
                    let reported = monitor
                        .report(v1::ReportRequest {
                            source: v1::ReportSource::Api as i32,
                            title: format!("alert {}", n % 400),
                            service: "payments".into(),
                            dedup_key: key,
                            ..Default::default()
                        })
                        .await
                        .expect("report")
                        .into_inner();
                    calls.fetch_add(1, Ordering::Relaxed);
                    if n % 6 == 0 {
                        let id = reported.incident_id.clone();
                        manager.get_incident(v1::GetIncidentRequest { incident_id: id }).await.expect("get");
                        manager
                            .list_incidents(v1::ListIncidentsRequest { page_size: 50, ..Default::default() })
                            .await
                            .expect("list");
                        calls.fetch_add(2, Ordering::Relaxed);
                    }
                    if n % 60 == 0 {
                        // A real incident: a new report, driven to closed.
                        let id = monitor
                            .report(v1::ReportRequest {
                                source: v1::ReportSource::Api as i32,
                                title: format!("checkout errors {n}"),
                                service: "payments".into(),
                                ..Default::default()
                            })
                            .await
                            .expect("report")
                            .into_inner()
                            .incident_id;
                        let ctx = || None;
                        let i = || id.clone();
                        manager
                            .declare(v1::DeclareRequest {
                                incident_id: i(),
                                severity: v1::Severity::Sev2 as i32,
                                context: ctx(),
                            })
                            .await
                            .expect("declare");
                        manager
                            .assign_commander(v1::AssignCommanderRequest {
                                incident_id: i(),
                                commander: MANAGERS[client % MANAGERS.len()].into(),
                                context: ctx(),
                            })
                            .await
                            .expect("assign");
                        for text in ["Investigating.", "Identified a bad deploy.", "Rolled back; watching."] {
                            manager
                                .post_update(v1::PostUpdateRequest {
                                    incident_id: i(),
                                    audience: v1::Audience::Internal as i32,
                                    text: text.into(),
                                    context: ctx(),
                                })
                                .await
                                .expect("update");
                        }
                        manager
                            .mitigate(v1::MitigateRequest {
                                incident_id: i(),
                                summary: "rolled back".into(),
                                context: ctx(),
                            })
                            .await
                            .expect("mitigate");
                        manager
                            .resolve(v1::ResolveRequest { incident_id: i(), summary: "fixed".into(), context: ctx() })
                            .await
                            .expect("resolve");
                        manager
                            .validate_resolution(v1::ValidateResolutionRequest {
                                incident_id: i(),
                                note: "ok".into(),
                                context: ctx(),
                            })
                            .await
                            .expect("validate");
                        calls.fetch_add(9, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("a client");
    }
    calls.load(Ordering::Relaxed)
}

struct Row {
    generated: Generated,
    folder_mb: f64,
    ready_s: f64,
    appended_at_start: u64,
    rss_mb: f64,
    traffic_calls: u64,
    traffic_s: f64,
    rss_after_mb: f64,
    restart_s: f64,
    rss_restart_mb: f64,
    first_phases: String,
    restart_phases: String,
    first_work: String,
    restart_work: String,
}

fn main() {
    let sizes: Vec<u64> = std::env::var("KLAXON_SCALE_EVENTS")
        .unwrap_or_else(|_| "100000,1000000".into())
        .split(',')
        .map(|s| s.trim().parse().expect("KLAXON_SCALE_EVENTS: comma-separated event counts"))
        .collect();
    let reports: u64 = std::env::var("KLAXON_SCALE_TRAFFIC").ok().and_then(|s| s.parse().ok()).unwrap_or(3600);
    let keep = std::env::var("KLAXON_SCALE_KEEP").map_or(true, |v| v != "0");
    klaxon_tests::build_klaxond_for_bench();
    // target/<profile>/deps/scale-… -> target/scale
    let exe = std::env::current_exe().expect("the bench's path");
    let cache: PathBuf = exe.ancestors().nth(3).expect("target/").join("scale");
    std::fs::create_dir_all(&cache).expect("create target/scale");
    let evict = evict_closed_after();
    let mut extra = String::from("[limits]\nrequests_per_second = 0\n");
    if let Some(after) = &evict {
        extra.push_str(&format!("[memory]\nevict_closed_after = {after:?}\n"));
    }
    // More configuration for an experiment, such as `[log] cache_bytes`.
    if let Ok(more) = std::env::var("KLAXON_SCALE_CONFIG") {
        extra.push_str(&more.replace("\\n", "\n"));
        extra.push('\n');
    }
    let paged = Paged::start(1800, false, &extra);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let mut rows = Vec::new();
    for size in sizes {
        let folder = cache.join(format!("events-{size}"));
        let marker = folder.join("generated");
        let generated = match std::fs::read_to_string(&marker).ok().and_then(|l| Generated::from_line(&l)) {
            Some(generated) => generated,
            None => {
                let _ = std::fs::remove_dir_all(&folder);
                eprintln!("generating {size} events into {} ...", folder.display());
                let begun = Instant::now();
                let generated = generate(&folder.join("data"), size, &runtime);
                eprintln!("  {generated:?} in {:.1} s", begun.elapsed().as_secs_f64());
                std::fs::write(&marker, generated.to_line()).expect("write the marker");
                generated
            }
        };
        let folder_mb = folder_bytes(&folder.join("data")) as f64 / 1e6;
        let run = cache.join(format!("run-{size}"));
        let _ = std::fs::remove_dir_all(&run);
        copy_dir(&folder.join("data"), &run);

        eprintln!("{size}: first start ...");
        let begun = Instant::now();
        let up = Klaxond::start_with_env(&run, &paged.config_args(), &paged.env());
        let serving_s = begun.elapsed().as_secs_f64();
        let ready = wait_ready(&up, begun);
        let ready_s = begun.elapsed().as_secs_f64();
        let rss = rss_mb(up.pid());
        let first_phases = phases(serving_s, &ready);
        let first_work = work(up.pid(), &ready);
        eprintln!("  ready in {ready_s:.2} s ({first_phases}), {rss:.0} MB; {first_work}; traffic ...");
        let begun = Instant::now();
        let traffic_calls = runtime.block_on(traffic(&up.url, reports));
        let traffic_s = begun.elapsed().as_secs_f64();
        wait_ready(&up, begun);
        let rss_after = rss_mb(up.pid());
        assert!(up.stop().success(), "klaxond stopped cleanly");

        eprintln!("{size}: restart ...");
        let begun = Instant::now();
        let up = Klaxond::start_with_env(&run, &paged.config_args(), &paged.env());
        let serving_s = begun.elapsed().as_secs_f64();
        let restarted = wait_ready(&up, begun);
        let restart_s = begun.elapsed().as_secs_f64();
        let rss_restart = rss_mb(up.pid());
        let restart_phases = phases(serving_s, &restarted);
        let restart_work = work(up.pid(), &restarted);
        eprintln!("  ready in {restart_s:.2} s ({restart_phases}), {rss_restart:.0} MB; {restart_work}");
        assert!(up.stop().success(), "klaxond stopped cleanly");
        std::fs::remove_dir_all(&run).expect("remove the copy");
        if !keep {
            std::fs::remove_dir_all(&folder).expect("remove the generated folder");
        }
        rows.push(Row {
            generated,
            folder_mb,
            ready_s,
            appended_at_start: ready.head - generated.events,
            first_phases,
            restart_phases,
            first_work,
            restart_work,
            rss_mb: rss,
            traffic_calls,
            traffic_s,
            rss_after_mb: rss_after,
            restart_s,
            rss_restart_mb: rss_restart,
        });
    }
    println!();
    println!(
        "| events | incidents | open | data folder MB | first start ready s | appended at start | RSS MB | traffic calls (s) | RSS after traffic MB | restart ready s | RSS after restart MB |"
    );
    println!("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for r in &rows {
        println!(
            "| {} | {} | {} | {:.0} | {:.2} | {} | {:.0} | {} ({:.1}) | {:.0} | {:.2} | {:.0} |",
            r.generated.events,
            r.generated.incidents,
            r.generated.open,
            r.folder_mb,
            r.ready_s,
            r.appended_at_start,
            r.rss_mb,
            r.traffic_calls,
            r.traffic_s,
            r.rss_after_mb,
            r.restart_s,
            r.rss_restart_mb
        );
    }
    println!();
    println!("Where the time goes (seconds after the spawn: serving = listening, then each service at the head):");
    println!();
    println!("| events | first start | restart |");
    println!("| ---: | --- | --- |");
    for r in &rows {
        println!("| {} | {} | {} |", r.generated.events, r.first_phases, r.restart_phases);
    }
    println!();
    println!(
        "What each start cost until ready (klaxond's CPU seconds in all and by thread name, from /proc; VmHWM; the slowest /metrics answer):"
    );
    println!();
    println!("| events | first start | restart |");
    println!("| ---: | --- | --- |");
    for r in &rows {
        println!("| {} | {} | {} |", r.generated.events, r.first_work, r.restart_work);
    }
    println!();
    match &evict {
        Some(after) => println!("[memory] evict_closed_after = {after:?}"),
        None => println!("No [memory] evict_closed_after (this klaxond has no such setting, or it was turned off)."),
    }
    println!("Targets at 1M events: first start ready <= 2 s, RSS <= 300 MB.");
}
