//! The relay's throughput beside the log's append rate, in one run.
//!
//! `cargo bench -p klaxon-bus --bench relay` appends 300-byte events to a
//! fresh log from 64 concurrent appenders, one event per append (the
//! baseline); then starts a real `nats-server -js` and a [`Relay`] on that
//! log and times its catch-up until NATS has acknowledged the head; then,
//! with the relay running, appends as many again and times from the first
//! append until NATS has acknowledged the last one, with the lag of each
//! append (its return until NATS acknowledged its position).
//! `KLAXON_BENCH_RELAY_EVENTS` (default 100,000) sets the count.
#![allow(missing_docs)]

use std::time::{Duration, Instant};

use klaxon_bus::jetstream::{self, Names};
use klaxon_bus::relay::Relay;
use klaxon_log::{EventData, EventKind, ExpectedVersion, Log, Metadata, NewEvent, Options, Position, StreamId};
use klaxon_tests::nats::NatsServer;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

const EVENT_BYTES: usize = 300;
const APPENDERS: u64 = 64;

fn payload(n: u64) -> String {
    let head = format!(r#"{{"incident":"INC-{n}","kind":"status_update_posted","by":"alice","text":""#);
    let pad = EVENT_BYTES - head.len() - 2;
    format!("{head}{}\"}}", "x".repeat(pad))
}

fn new_event(n: u64) -> NewEvent {
    NewEvent {
        id: uuid::Uuid::new_v4(),
        kind: EventKind::new("incident.status_update_posted.v1").unwrap(),
        data: EventData::from_json(payload(n)).unwrap(),
        metadata: Metadata { actor: Some("alice".into()), ..Metadata::default() },
    }
}

/// `events` appends of one event from [`APPENDERS`] tasks, each to its own
/// stream. Returns the time they took and when each append returned.
async fn append(log: &Log, events: u64) -> (Duration, Vec<(Position, Instant)>) {
    let start = Instant::now();
    let tasks: Vec<_> = (0..APPENDERS)
        .map(|a| {
            let log = log.clone();
            let count = events / APPENDERS + u64::from(a < events % APPENDERS);
            tokio::spawn(async move {
                let stream = StreamId::new(format!("incident-INC-{a}")).unwrap();
                let mut done = Vec::with_capacity(count as usize);
                for i in 0..count {
                    let appended = log.append(&stream, ExpectedVersion::Any, vec![new_event(i)]).await.unwrap();
                    done.push((appended.last, Instant::now()));
                }
                done
            })
        })
        .collect();
    let mut done = Vec::with_capacity(events as usize);
    for task in tasks {
        done.extend(task.await.unwrap());
    }
    (start.elapsed(), done)
}

/// Every value the acknowledged position takes, with when it was seen,
/// until `stop`.
async fn watch_acks(mut acked: watch::Receiver<Position>, stop: CancellationToken) -> Vec<(Instant, Position)> {
    let mut seen = Vec::new();
    loop {
        tokio::select! {
            biased;
            changed = acked.changed() => if changed.is_err() { return seen },
            _ = stop.cancelled() => return seen,
        }
        let position = *acked.borrow_and_update();
        seen.push((Instant::now(), position));
    }
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize].as_secs_f64() * 1e3
}

struct Row {
    case: String,
    rate: f64,
    lag: Option<(f64, f64)>,
    ratio: String,
}

async fn run(events: u64) -> Vec<Row> {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path().join("log"), Options::default()).unwrap();

    eprintln!("(a) {events} appends of one event, {APPENDERS} appenders...");
    let (took, _) = append(&log, events).await;
    let append_rate = events as f64 / took.as_secs_f64();
    let head = log.head();
    assert_eq!(head.0, events);

    eprintln!("(b) relay catch-up of {events} records...");
    let nats = NatsServer::start(&dir.path().join("nats"));
    let client = jetstream::connect(&nats.url, "klaxon-bench-relay").await.unwrap();
    let relay = Relay::new(log.clone(), client, Names::default());
    let mut acked = relay.acknowledged();
    let stop = CancellationToken::new();
    let start = Instant::now();
    let relay_task = tokio::spawn(relay.run(stop.clone()));
    acked.wait_for(|p| *p >= head).await.unwrap();
    let catch_up_rate = head.0 as f64 / start.elapsed().as_secs_f64();

    eprintln!("(c) {events} more appends with the relay following...");
    let watching = CancellationToken::new();
    let watcher = tokio::spawn(watch_acks(acked.clone(), watching.clone()));
    let start = Instant::now();
    let (took, done) = append(&log, events).await;
    let live_append_rate = events as f64 / took.as_secs_f64();
    let final_head = log.head();
    assert_eq!(final_head.0, 2 * events);
    acked.wait_for(|p| *p >= final_head).await.unwrap();
    let live_rate = events as f64 / start.elapsed().as_secs_f64();
    watching.cancel();
    let seen = watcher.await.unwrap();
    let mut lags: Vec<Duration> = done
        .iter()
        .map(|(position, appended_at)| {
            let i = seen.partition_point(|(_, p)| p < position);
            seen[i].0.saturating_duration_since(*appended_at)
        })
        .collect();
    lags.sort();

    stop.cancel();
    relay_task.await.unwrap().unwrap();
    log.close().await;
    drop(nats);

    vec![
        Row {
            case: format!("log append, {APPENDERS} concurrent appenders, one event each"),
            rate: append_rate,
            lag: None,
            ratio: String::new(),
        },
        Row {
            case: "relay catch-up: publish with acks until NATS acknowledged the head".into(),
            rate: catch_up_rate,
            lag: None,
            ratio: format!("{:.2}x the append rate", catch_up_rate / append_rate),
        },
        Row {
            case: format!("log append, {APPENDERS} concurrent appenders, relay following"),
            rate: live_append_rate,
            lag: None,
            ratio: format!("{:.2}x without the relay", live_append_rate / append_rate),
        },
        Row {
            case: "relay live: first append until NATS acknowledged the last".into(),
            rate: live_rate,
            lag: Some((percentile(&lags, 0.5), percentile(&lags, 0.99))),
            ratio: format!("{:.2}x the append rate", live_rate / append_rate),
        },
    ]
}

fn main() {
    let events: u64 = std::env::var("KLAXON_BENCH_RELAY_EVENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let rows = rt.block_on(run(events));
    println!();
    println!("| case ({events} records) | records/s | lag p50 ms | lag p99 ms | ratio |");
    println!("| --- | ---: | ---: | ---: | --- |");
    for row in rows {
        let (p50, p99) =
            row.lag.map_or((String::new(), String::new()), |(a, b)| (format!("{a:.2}"), format!("{b:.2}")));
        println!("| {} | {:.0} | {p50} | {p99} | {} |", row.case, row.rate, row.ratio);
    }
}
