//! Rebuilding every projection from the log, beside a raw `read_all`, in one
//! run: what a restart costs.
//!
//! `cargo bench -p klaxon-review --bench replay` fills a log with
//! `KLAXON_BENCH_REPLAY_EVENTS` (default 1,000,000) incident and page events
//! (incidents of 10 events: report, declare, assign, five updates, mitigate,
//! resolve; every tenth paged and acknowledged), then times, over the whole
//! log: raw `read_all`; the intake projection; the paging fold; the notifier
//! fold; the review fold; and all of them in one pass (what `klaxond up`
//! does at start, minus the overlap of separate subscriptions).
#![allow(missing_docs)]

use std::collections::HashMap;
use std::time::Instant;

use chrono::{TimeDelta, Utc};
use klaxon_domain::ids::{ActorId, Audience, IncidentId, ReportSource, Severity};
use klaxon_domain::incident::{Command, Incident, IncidentEvent, Incidents, decide, evolve};
use klaxon_domain::notifier::{IncidentNotifications, NotifierSectionConfig};
use klaxon_domain::oncall::SchedulesConfig;
use klaxon_domain::paging::{IncidentPaging, PageEvent, PagingConfig, PagingFileConfig};
use klaxon_domain::review::IncidentMetrics;
use klaxon_log::{EventData, EventKind, ExpectedVersion, Log, Metadata, NewEvent, Position, Record, StreamId};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn new_event(kind: &str, data: serde_json::Value) -> NewEvent {
    NewEvent {
        id: uuid::Uuid::new_v4(),
        kind: EventKind::new(kind).unwrap(),
        data: EventData::from_value(&data).unwrap(),
        metadata: Metadata { actor: Some("bench".into()), ..Metadata::default() },
    }
}

/// The ten events of one incident, decided by the real domain.
fn incident_events(id: IncidentId) -> Vec<IncidentEvent> {
    let maria = ActorId::new("maria").unwrap();
    let mut now = Utc::now();
    let mut state: Option<Incident> = None;
    let mut out = Vec::new();
    let mut commands = vec![
        Command::ReportIssue {
            source: ReportSource::Alertmanager,
            reporter: ActorId::new("monitor").unwrap(),
            title: "Checkout fails for EU customers".into(),
            description: "5xx from payments-api".into(),
            service: Some("payments".parse().unwrap()),
            customers: vec!["acme".parse().unwrap(), "globex".parse().unwrap()],
            labels: Default::default(),
            dedup_key: None,
            started_at: None,
        },
        Command::DeclareIncident { severity: Severity::Sev1 },
        Command::AssignCommander { commander: maria.clone() },
    ];
    for n in 0..5 {
        commands.push(Command::PostUpdate {
            audience: Audience::Executive,
            text: format!("update {n}: still investigating"),
        });
    }
    commands.push(Command::Mitigate { summary: "rolled back".into() });
    commands.push(Command::Resolve { summary: "config fixed".into() });
    for command in commands {
        now += TimeDelta::minutes(3);
        for event in decide(state.as_ref(), &command, &id, &maria, now).unwrap() {
            state = evolve(state, &event);
            out.push(event);
        }
    }
    out
}

fn paging_config() -> PagingConfig {
    #[derive(serde::Deserialize)]
    struct File {
        schedules: SchedulesConfig,
        #[serde(flatten)]
        paging: PagingFileConfig,
    }
    let file: File = toml::from_str(
        r#"
[[schedules]]
name = "primary"
time_zone = "UTC"
[[schedules.layers]]
name = "weekly"
participants = ["ana"]
shift = "7d"
handoff = "09:00"
start = "2026-01-05"
[paging]
duty_manager_schedule = "primary"
default_policy = "p"
[[escalation_policies]]
name = "p"
[[escalation_policies.levels]]
timeout_minutes = 5
targets = [{ schedule = "primary" }]
"#,
    )
    .unwrap();
    let schedules = file.schedules.validate("schedules").unwrap();
    file.paging.validate("", &schedules).unwrap()
}

async fn fill(log: &Log, events: u64) {
    let incidents = events / 10;
    let writers = 4u64;
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let log = log.clone();
            tokio::spawn(async move {
                let mut n = w + 1;
                while n <= incidents {
                    let id = IncidentId::from_number(n).unwrap();
                    let batch: Vec<NewEvent> =
                        incident_events(id).iter().map(|e| new_event(e.kind(), e.to_json())).collect();
                    let stream = StreamId::new(id.stream()).unwrap();
                    log.append(&stream, ExpectedVersion::NoStream, batch).await.unwrap();
                    n += writers;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
}

/// Reads the whole log in chunks and hands every record to `f`; returns events/s.
fn pass(log: &Log, mut f: impl FnMut(&Record)) -> f64 {
    let start = Instant::now();
    let mut next = Position(1);
    let mut count = 0u64;
    loop {
        let records = log.read_all(next, 4096).unwrap();
        let Some(last) = records.last() else { break };
        next = last.position.next();
        for r in &records {
            f(r);
            count += 1;
        }
    }
    count as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let events = env("KLAXON_BENCH_REPLAY_EVENTS", 1_000_000);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), Default::default()).unwrap();
    eprintln!("filling the log with {events} events...");
    rt.block_on(fill(&log, events));
    let paging = paging_config();
    let notifier = toml::from_str::<NotifierSectionConfig>("").unwrap().validate("notifier").unwrap();

    let decode = |r: &Record| IncidentEvent::from_json(r.kind.as_str(), r.data.as_str()).unwrap();
    let mut rows: Vec<(String, f64)> = Vec::new();
    eprintln!("replaying...");
    rows.push((
        "raw read_all (checksums verified, no decode)".into(),
        pass(&log, |r| {
            std::hint::black_box(r);
        }),
    ));
    let mut incidents = Incidents::default();
    rows.push(("intake projection (incidents)".into(), pass(&log, |r| incidents.apply(&decode(r)))));
    let mut pagers: HashMap<IncidentId, IncidentPaging> = HashMap::new();
    rows.push((
        "paging fold".into(),
        pass(&log, |r| {
            let e = decode(r);
            pagers.entry(e.incident).or_insert_with(|| IncidentPaging::new(e.incident, &paging)).apply_incident(&e);
        }),
    ));
    let mut notifications: HashMap<IncidentId, IncidentNotifications> = HashMap::new();
    rows.push((
        "notifier fold".into(),
        pass(&log, |r| {
            let e = decode(r);
            notifications
                .entry(e.incident)
                .or_insert_with(|| IncidentNotifications::new(e.incident, &notifier))
                .apply_incident(&e);
        }),
    ));
    let mut reviews: HashMap<IncidentId, (Option<Incident>, Vec<IncidentEvent>)> = HashMap::new();
    rows.push((
        "review fold (incident + events kept for metrics)".into(),
        pass(&log, |r| {
            let e = decode(r);
            let entry = reviews.entry(e.incident).or_default();
            entry.0 = evolve(entry.0.take(), &e);
            entry.1.push(e);
        }),
    ));
    let start = Instant::now();
    let metrics: Vec<IncidentMetrics> =
        reviews.values().map(|(_, events)| IncidentMetrics::compute(events, &[] as &[PageEvent])).collect();
    let metrics_rate = (events as f64) / start.elapsed().as_secs_f64();
    rows.push((format!("review metrics of all {} incidents (events/s)", metrics.len()), metrics_rate));
    let mut all_incidents = Incidents::default();
    let mut all_pagers: HashMap<IncidentId, IncidentPaging> = HashMap::new();
    let mut all_notifications: HashMap<IncidentId, IncidentNotifications> = HashMap::new();
    rows.push((
        "every projection in one pass".into(),
        pass(&log, |r| {
            let e = decode(r);
            all_incidents.apply(&e);
            all_pagers.entry(e.incident).or_insert_with(|| IncidentPaging::new(e.incident, &paging)).apply_incident(&e);
            all_notifications
                .entry(e.incident)
                .or_insert_with(|| IncidentNotifications::new(e.incident, &notifier))
                .apply_incident(&e);
        }),
    ));
    let raw = rows[0].1;
    println!();
    println!("| replay of {events} events | events/s | vs raw read_all |");
    println!("| --- | ---: | ---: |");
    for (name, rate) in &rows {
        println!("| {name} | {rate:.0} | {:.2}x |", rate / raw);
    }
    rt.block_on(log.close());
}
