//! Commands per second through gRPC beside the log's own append rate, in one
//! run on the same machine.
//!
//! `cargo bench -p klaxon-intake --bench commands` prints a table: report +
//! declare + update cycles through a real tonic client and server on
//! loopback with 1 and 64 concurrent clients, and raw `Log::append` of one
//! event with 1 and 64 concurrent appenders; and, as the floor of any gRPC
//! call here, a health check (a unary call that does no work) through the
//! same client and server setup with 64 in flight. `KLAXON_BENCH_SECONDS`
//! sets the time per case (default 3).
#![allow(missing_docs)]

use std::time::{Duration, Instant};

use klaxon_intake::Intake;
use klaxon_intake::grpc::{ACTOR_HEADER, IncidentsService};
use klaxon_log::{EventData, EventKind, ExpectedVersion, Log, Metadata, NewEvent, StreamId};
use klaxon_proto::v1::{self, incidents_client::IncidentsClient};
use klaxon_reactor::system_clock;
use tokio_util::sync::CancellationToken;

fn by<T>(message: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(message);
    r.metadata_mut().insert(ACTOR_HEADER, "bench".parse().unwrap());
    r
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize].as_secs_f64() * 1e6
}

struct Row {
    name: String,
    rate: f64,
    p50: f64,
    p99: f64,
}

fn row(name: String, count: usize, elapsed: Duration, mut latencies: Vec<Duration>) -> Row {
    latencies.sort();
    Row {
        name,
        rate: count as f64 / elapsed.as_secs_f64(),
        p50: percentile(&latencies, 0.5),
        p99: percentile(&latencies, 0.99),
    }
}

async fn raw_log(appenders: usize, seconds: u64) -> Row {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), klaxon_log::Options::default()).unwrap();
    let start = Instant::now();
    let deadline = start + Duration::from_secs(seconds);
    let tasks: Vec<_> = (0..appenders)
        .map(|a| {
            let log = log.clone();
            tokio::spawn(async move {
                let stream = StreamId::new(format!("incident-INC-{a}")).unwrap();
                let mut latencies = Vec::new();
                while Instant::now() < deadline {
                    let event = NewEvent {
                        id: uuid::Uuid::new_v4(),
                        kind: EventKind::new("incident.status_update_posted.v1").unwrap(),
                        data: EventData::from_value(&serde_json::json!({"incident": "INC-1", "text": "x".repeat(200)}))
                            .unwrap(),
                        metadata: Metadata { actor: Some("bench".into()), ..Metadata::default() },
                    };
                    let t = Instant::now();
                    log.append(&stream, ExpectedVersion::Any, vec![event]).await.unwrap();
                    latencies.push(t.elapsed());
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await.unwrap());
    }
    let elapsed = start.elapsed();
    log.close().await;
    row(format!("log append, {appenders} concurrent appenders"), latencies.len(), elapsed, latencies)
}

async fn grpc(clients: usize, seconds: u64) -> Row {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), klaxon_log::Options::default()).unwrap();
    let intake = Intake::new(log.clone(), Default::default(), system_clock());
    let handle = intake.handle();
    let stop = CancellationToken::new();
    tokio::spawn(intake.run(stop.clone()));
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
    let client = IncidentsClient::connect(format!("http://{address}")).await.unwrap();
    let start = Instant::now();
    let deadline = start + Duration::from_secs(seconds);
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let mut c = client.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                while Instant::now() < deadline {
                    let t = Instant::now();
                    let id = c
                        .report(by(v1::ReportRequest { title: "bench".into(), ..Default::default() }))
                        .await
                        .unwrap()
                        .into_inner()
                        .incident_id;
                    latencies.push(t.elapsed());
                    let t = Instant::now();
                    c.declare(by(v1::DeclareRequest {
                        incident_id: id.clone(),
                        severity: v1::Severity::Sev2 as i32,
                        context: None,
                    }))
                    .await
                    .unwrap();
                    latencies.push(t.elapsed());
                    let t = Instant::now();
                    let text = "x".repeat(200);
                    c.post_update(by(v1::PostUpdateRequest {
                        incident_id: id,
                        audience: v1::Audience::Internal as i32,
                        text,
                        context: None,
                    }))
                    .await
                    .unwrap();
                    latencies.push(t.elapsed());
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await.unwrap());
    }
    let elapsed = start.elapsed();
    stop.cancel();
    log.close().await;
    row(
        format!("gRPC commands (report, declare, update), {clients} concurrent clients"),
        latencies.len(),
        elapsed,
        latencies,
    )
}

/// Unary gRPC calls that do no work (`grpc.health.v1.Health/Check`), with
/// `clients` in flight: what tonic, HTTP/2 and loopback cost per call.
async fn grpc_floor(clients: usize, seconds: u64) -> Row {
    let stop = CancellationToken::new();
    let (_reporter, health) = tonic_health::server::health_reporter();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(tonic::transport::Server::builder().add_service(health).serve_with_incoming_shutdown(
        tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
        stop.clone().cancelled_owned(),
    ));
    let channel =
        tonic::transport::Endpoint::from_shared(format!("http://{address}")).unwrap().connect().await.unwrap();
    let client = tonic_health::pb::health_client::HealthClient::new(channel);
    let start = Instant::now();
    let deadline = start + Duration::from_secs(seconds);
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let mut c = client.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                while Instant::now() < deadline {
                    let t = Instant::now();
                    c.check(tonic_health::pb::HealthCheckRequest { service: String::new() }).await.unwrap();
                    latencies.push(t.elapsed());
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await.unwrap());
    }
    let elapsed = start.elapsed();
    stop.cancel();
    row(format!("gRPC health check (no work), {clients} concurrent clients"), latencies.len(), elapsed, latencies)
}

fn main() {
    let seconds = std::env::var("KLAXON_BENCH_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(3);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let mut rows = Vec::new();
    for n in [1, 64] {
        eprintln!("log, {n} appenders...");
        rows.push(rt.block_on(raw_log(n, seconds)));
        eprintln!("gRPC, {n} clients...");
        rows.push(rt.block_on(grpc(n, seconds)));
    }
    eprintln!("gRPC floor, 64 clients...");
    let floor = rt.block_on(grpc_floor(64, seconds));
    let commands_64 = rows[3].rate;
    println!();
    println!("| case | per second | p50 µs | p99 µs | ratio |");
    println!("| --- | ---: | ---: | ---: | --- |");
    for pair in rows.chunks(2) {
        let (log, grpc) = (&pair[0], &pair[1]);
        println!("| {} | {:.0} | {:.0} | {:.0} | |", log.name, log.rate, log.p50, log.p99);
        let target = if grpc.name.contains(" 64 ") { " (target >= 0.6)" } else { "" };
        println!(
            "| {} | {:.0} | {:.0} | {:.0} | {:.2}x the log{target} |",
            grpc.name,
            grpc.rate,
            grpc.p50,
            grpc.p99,
            grpc.rate / log.rate
        );
    }
    println!(
        "| {} | {:.0} | {:.0} | {:.0} | commands at {:.2}x this floor |",
        floor.name,
        floor.rate,
        floor.p50,
        floor.p99,
        commands_64 / floor.rate
    );
}
