//! Status feed fan-out: how long from an update's append until the last of
//! 10,000 concurrent feed subscribers (real gRPC streams on loopback) has
//! it, beside a single subscriber's latency, in one run.
//!
//! `cargo bench -p klaxon-notifier --bench fanout`; `KLAXON_BENCH_SUBSCRIBERS`
//! (default 10,000) and `KLAXON_BENCH_UPDATES` (default 20) scale it.
#![allow(missing_docs)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use klaxon_domain::ids::{ActorId, Audience, ReportSource, Severity};
use klaxon_domain::incident::Command;
use klaxon_domain::notifier::NotifierSectionConfig;
use klaxon_intake::{CommandContext, Intake};
use klaxon_log::Log;
use klaxon_notifier::{Notifier, NotifierOptions};
use klaxon_proto::v1;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const CONNECTIONS: usize = 50;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn percentile(v: &mut [Duration], p: f64) -> f64 {
    v.sort();
    v[((v.len() as f64 - 1.0) * p).round() as usize].as_secs_f64() * 1e3
}

/// Runs `updates` executive updates with `subscribers` feeds open; returns
/// (every subscriber's latency, the latency of the last subscriber per update).
async fn run(subscribers: usize, updates: usize) -> (Vec<Duration>, Vec<Duration>) {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), Default::default()).unwrap();
    let stop = CancellationToken::new();
    let intake = Intake::new(log.clone(), Default::default(), klaxon_reactor::system_clock());
    let handle = intake.handle();
    tokio::spawn(intake.run(stop.clone()));
    let section: NotifierSectionConfig = toml::from_str("feed_interval_ms = 1").unwrap();
    let options = NotifierOptions {
        notifier: Arc::new(section.validate("notifier").unwrap()),
        paging: None,
        channels: Arc::new(klaxon_channels::Channels::new(&[], |_| None).unwrap()),
        feed_lag_max: klaxon_notifier::feed::CHANGES_BUFFER,
    };
    let notifier = Notifier::new(log.clone(), options, Arc::new(klaxon_reactor::SystemClock));
    let notifier_handle = notifier.handle();
    tokio::spawn(notifier.run(stop.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .max_concurrent_streams(Some(1_000_000))
            .add_service(klaxon_notifier::grpc::FeedService::new(notifier_handle.clone(), stop.clone()).into_server())
            .serve_with_incoming_shutdown(
                tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
                stop.clone().cancelled_owned(),
            ),
    );
    let maria = CommandContext::by(ActorId::new("maria").unwrap());
    let report = Command::ReportIssue {
        source: ReportSource::Api,
        reporter: ActorId::new("monitor").unwrap(),
        title: "checkout fails".into(),
        description: String::new(),
        service: Some("payments".parse().unwrap()),
        customers: vec![],
        labels: Default::default(),
        dedup_key: None,
        started_at: None,
    };
    let id = handle.report(report, &maria).await.unwrap().incident;
    handle.execute(id, Command::DeclareIncident { severity: Severity::Sev1 }, &maria).await.unwrap();

    // Subscribers share a few connections; each reports (update number, arrival).
    let mut channels = Vec::new();
    for _ in 0..CONNECTIONS.min(subscribers) {
        channels.push(
            tonic::transport::Endpoint::from_shared(format!("http://{address}")).unwrap().connect().await.unwrap(),
        );
    }
    let (tx, mut rx) = mpsc::unbounded_channel::<(usize, Instant)>();
    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel::<()>();
    for s in 0..subscribers {
        let mut client = v1::status_feed_client::StatusFeedClient::new(channels[s % channels.len()].clone());
        let (tx, ready) = (tx.clone(), ready_tx.clone());
        tokio::spawn(async move {
            let mut feed = client.subscribe(v1::FeedFilter::default()).await.unwrap().into_inner();
            let _ = feed.message().await; // the snapshot
            let _ = ready.send(());
            while let Ok(Some(item)) = feed.message().await {
                if let Some(n) = item
                    .latest_executive_update
                    .and_then(|u| u.text.strip_prefix("update ").and_then(|n| n.parse().ok()))
                {
                    let _ = tx.send((n, Instant::now()));
                }
            }
        });
    }
    drop(tx);
    for _ in 0..subscribers {
        ready_rx.recv().await.unwrap();
    }
    let mut all = Vec::new();
    let mut last = Vec::new();
    for n in 0..updates {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let t0 = Instant::now();
        let update = Command::PostUpdate { audience: Audience::Executive, text: format!("update {n}") };
        handle.execute(id, update, &maria).await.unwrap();
        let mut received = 0;
        let mut slowest = Duration::ZERO;
        while received < subscribers {
            let (m, at) =
                tokio::time::timeout(Duration::from_secs(60), rx.recv()).await.expect("items keep coming").unwrap();
            if m == n {
                received += 1;
                let latency = at.duration_since(t0);
                slowest = slowest.max(latency);
                all.push(latency);
            }
        }
        last.push(slowest);
    }
    stop.cancel();
    (all, last)
}

fn main() {
    let subscribers = env("KLAXON_BENCH_SUBSCRIBERS", 10_000);
    let updates = env("KLAXON_BENCH_UPDATES", 20);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    eprintln!("1 subscriber, {updates} updates...");
    let (mut one, _) = rt.block_on(run(1, updates));
    eprintln!("{subscribers} subscribers, {updates} updates...");
    let (mut many, mut slowest) = rt.block_on(run(subscribers, updates));
    println!();
    println!("| case | p50 ms | p99 ms |");
    println!("| --- | ---: | ---: |");
    println!(
        "| 1 subscriber: append -> item received | {:.2} | {:.2} |",
        percentile(&mut one, 0.5),
        percentile(&mut one, 0.99)
    );
    println!(
        "| {subscribers} subscribers: append -> item received, every subscriber | {:.2} | {:.2} |",
        percentile(&mut many, 0.5),
        percentile(&mut many, 0.99)
    );
    println!(
        "| {subscribers} subscribers: append -> the last subscriber has it (target p99 <= 250 ms) | {:.2} | {:.2} |",
        percentile(&mut slowest, 0.5),
        percentile(&mut slowest, 0.99)
    );
}
