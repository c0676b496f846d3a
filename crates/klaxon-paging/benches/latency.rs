//! Report-to-page latency, beside the log's own append latency, in one run.
//!
//! `cargo bench -p klaxon-paging --bench latency` sends 1,000 Sev-1 reports
//! one after the other through real gRPC on loopback; for each, it measures
//! the time until the first page arrives at a real HTTP webhook receiver on
//! loopback (report append -> severity assessment -> page decision ->
//! signed webhook delivery: three durable appends and an HTTP request).
//! Beside it: 1,000 single-event appends to a fresh log. Prints p50/p99.
//! `KLAXON_BENCH_REPORTS` sets the count.
#![allow(missing_docs)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use klaxon_domain::catalog::ServiceCatalogConfig;
use klaxon_domain::oncall::SchedulesConfig;
use klaxon_domain::paging::PagingFileConfig;
use klaxon_domain::severity::SeverityConfig;
use klaxon_intake::grpc::{ACTOR_HEADER, IncidentsService};
use klaxon_log::{EventData, EventKind, ExpectedVersion, Log, Metadata, NewEvent, StreamId};
use klaxon_paging::{Pager, PagerConfig};
use klaxon_proto::v1::{self, incidents_client::IncidentsClient};
use klaxon_reactor::SystemClock;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

const SECRET: &str = "bench-secret-0123456789abcdef";

fn config(url: &str) -> (PagerConfig, Arc<klaxon_domain::severity::Rules>) {
    #[derive(serde::Deserialize)]
    struct File {
        services: ServiceCatalogConfig,
        severity: SeverityConfig,
        schedules: SchedulesConfig,
        #[serde(flatten)]
        paging: PagingFileConfig,
        channels: Vec<klaxon_channels::ChannelConfig>,
    }
    let text = format!(
        r#"
[[services]]
name = "payments"
team = "payments"
tier = 1
escalation_policy = "payments"

[severity]
default = "sev4"
[[severity.rules]]
id = "tier1-multi-customer"
severity = "sev1"
reason = "Several customers hit on a tier-1 service"
when = {{ service_tier = [1], multi_customer = true }}

[[schedules]]
name = "primary"
time_zone = "Europe/Berlin"
[[schedules.layers]]
name = "weekly"
participants = ["ana", "ben"]
shift = "7d"
handoff = "09:00"
start = "2026-01-05"

[paging]
duty_manager_schedule = "primary"
default_policy = "payments"
channels = ["pager"]

[[escalation_policies]]
name = "payments"
[[escalation_policies.levels]]
timeout_minutes = 5
targets = [{{ schedule = "primary" }}]

[[channels]]
name = "pager"
kind = "webhook"
url = "{url}"
secret_env = "BENCH_SECRET"
"#
    );
    let file: File = toml::from_str(&text).unwrap();
    let schedules = file.schedules.validate("schedules").unwrap();
    let paging = file.paging.validate("", &schedules).unwrap();
    let channels = klaxon_channels::Channels::new(&file.channels, |_| Some(SECRET.to_string())).unwrap();
    let rules = Arc::new(file.severity.validate("severity").unwrap());
    let config = PagerConfig {
        paging: Arc::new(paging),
        catalog: Arc::new(file.services.validate("services").unwrap()),
        schedules: Arc::new(schedules),
        channels: Arc::new(channels),
    };
    (config, rules)
}

type Arrivals = Arc<(Mutex<HashMap<String, Instant>>, Notify)>;

async fn receiver(arrivals: Arrivals) -> String {
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: axum::http::HeaderMap| {
            let arrivals = arrivals.clone();
            async move {
                let key = headers.get("Idempotency-Key").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
                arrivals.0.lock().unwrap().insert(key, Instant::now());
                arrivals.1.notify_waiters();
                axum::http::StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

fn percentiles(mut v: Vec<Duration>) -> (f64, f64) {
    v.sort();
    let at = |p: f64| v[((v.len() as f64 - 1.0) * p).round() as usize].as_secs_f64() * 1e3;
    (at(0.5), at(0.99))
}

async fn log_appends(n: usize) -> Vec<Duration> {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), klaxon_log::Options::default()).unwrap();
    let stream = StreamId::new("bench").unwrap();
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let event = NewEvent {
            id: uuid::Uuid::new_v4(),
            kind: EventKind::new("bench.appended.v1").unwrap(),
            data: EventData::from_value(&serde_json::json!({ "n": i, "pad": "x".repeat(250) })).unwrap(),
            metadata: Metadata::default(),
        };
        let t = Instant::now();
        log.append(&stream, ExpectedVersion::Any, vec![event]).await.unwrap();
        out.push(t.elapsed());
    }
    log.close().await;
    out
}

async fn report_to_page(n: usize) -> Vec<Duration> {
    let arrivals: Arrivals = Arc::new((Mutex::new(HashMap::new()), Notify::new()));
    let url = receiver(arrivals.clone()).await;
    let (config, rules) = config(&url);
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), klaxon_log::Options::default()).unwrap();
    let stop = CancellationToken::new();
    let intake = klaxon_intake::Intake::new(log.clone(), Default::default(), klaxon_reactor::system_clock());
    let handle = intake.handle();
    tokio::spawn(intake.run(stop.clone()));
    let evaluator =
        klaxon_severity::Evaluator::new(log.clone(), rules, config.catalog.clone(), klaxon_reactor::system_clock());
    tokio::spawn(evaluator.run(stop.clone()));
    let pager = Pager::new(log.clone(), config, Arc::new(SystemClock));
    tokio::spawn(pager.run(stop.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(IncidentsService::new(handle).into_server())
            .serve_with_incoming_shutdown(
                tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
                stop.clone().cancelled_owned(),
            ),
    );
    let mut client = IncidentsClient::connect(format!("http://{address}")).await.unwrap();
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let mut request = tonic::Request::new(v1::ReportRequest {
            title: "checkout fails".into(),
            service: "payments".into(),
            customers: vec!["acme".into(), "globex".into()],
            ..Default::default()
        });
        request.metadata_mut().insert(ACTOR_HEADER, "monitor".parse().unwrap());
        let t = Instant::now();
        let id = client.report(request).await.unwrap().into_inner().incident_id;
        let key = format!("{id}-P1");
        loop {
            let notified = arrivals.1.notified();
            if let Some(at) = arrivals.0.lock().unwrap().get(&key) {
                out.push(at.duration_since(t));
                break;
            }
            tokio::time::timeout(Duration::from_secs(10), notified).await.expect("a page within 10 s");
        }
    }
    stop.cancel();
    out
}

fn main() {
    let n = std::env::var("KLAXON_BENCH_REPORTS").ok().and_then(|v| v.parse().ok()).unwrap_or(1000);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    eprintln!("{n} single appends...");
    let (a50, a99) = percentiles(rt.block_on(log_appends(n)));
    eprintln!("{n} Sev-1 reports...");
    let (p50, p99) = percentiles(rt.block_on(report_to_page(n)));
    println!();
    println!("| case | p50 ms | p99 ms | ratio (p99) |");
    println!("| --- | ---: | ---: | --- |");
    println!("| log append, one event, one appender | {a50:.2} | {a99:.2} | |");
    println!(
        "| gRPC report -> first page at the webhook ({n} Sev-1 reports) | {p50:.2} | {p99:.2} | {:.1}x one append (target p99 <= 5 ms) |",
        p99 / a99
    );
}
