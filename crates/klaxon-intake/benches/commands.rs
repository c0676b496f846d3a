//! Commands per second through gRPC beside the log's own append rate, in one
//! run on the same machine, and where a command's CPU goes.
//!
//! `cargo bench -p klaxon-intake --bench commands` prints a table: report +
//! declare + update cycles through a real tonic client and server on
//! loopback with 1 and 64 concurrent clients, and raw `Log::append` of one
//! event with 1 and 64 concurrent appenders; and, as the floor of any gRPC
//! call here, a health check (a unary call that does no work) through the
//! same client and server setup with 64 in flight; and the 64-client case
//! once more with a fresh client request id on every command, as the CLI
//! sends (an idempotency lookup each); and the same commands from 64
//! clients that each keep one `Incidents/Execute` stream open and send
//! their next command as a message on it when the previous outcome came
//! back (one in flight per client, as with unary calls), with its ratio
//! against the log and its CPU per command against the unary case's.
//! `KLAXON_BENCH_SECONDS` sets the time per case (default 3).
//! `KLAXON_BENCH_ONLY=commands` (or `stream`, `floor`, `log`) runs only
//! that 64-way case, for a profiler.
//!
//! The clients (and the raw appenders) run on their own runtime, one worker
//! named `bench-client`; the server side (tonic, intake, its fold loop) on
//! another, two workers named `bench-server`; the log has its own threads.
//! So a second table gives, for the 64-way cases, the CPU time per command
//! (or append, or call) of each thread name, from `/proc/self/task/*/stat`
//! before and after the case, with the log's work counters per command:
//! CPU time per operation depends far less on the machine's load than
//! rates do. A last, separate run of the 64-client case (not in the rate
//! table: measuring costs CPU too) installs a tracing layer that sums, per
//! `klaxon_intake::stage` span, the thread CPU time spent inside it
//! (`CLOCK_THREAD_CPUTIME_ID` on enter and exit), and prints that per
//! command.
#![allow(missing_docs)]

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use klaxon_intake::Intake;
use klaxon_intake::grpc::{ACTOR_HEADER, IncidentsService};
use klaxon_log::{EventData, EventKind, ExpectedVersion, Log, Metadata, NewEvent, StreamId};
use klaxon_proto::v1::{self, incidents_client::IncidentsClient};
use klaxon_reactor::system_clock;
use tokio::runtime::Runtime;
use tokio_util::sync::CancellationToken;

fn by<T>(message: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(message);
    r.metadata_mut().insert(ACTOR_HEADER, "bench".parse().unwrap());
    r
}

/// Every latency the concurrent `tasks` measured, once all have ended.
async fn gathered(tasks: Vec<tokio::task::JoinHandle<Vec<Duration>>>) -> Vec<Duration> {
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await.unwrap());
    }
    latencies
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize].as_secs_f64() * 1e6
}

struct Row {
    name: String,
    rate: f64,
    p50: f64,
    p99: f64,
    work: Work,
}

fn row(name: String, elapsed: Duration, mut latencies: Vec<Duration>, work: Work) -> Row {
    latencies.sort();
    Row {
        name,
        rate: latencies.len() as f64 / elapsed.as_secs_f64(),
        p50: percentile(&latencies, 0.5),
        p99: percentile(&latencies, 0.99),
        work,
    }
}

/// Clock ticks per second of `/proc/*/stat` times (`USER_HZ`, 100 on Linux).
const TICKS_PER_SECOND: f64 = 100.0;

/// CPU time (user + system, in clock ticks) of each of this process's
/// threads by thread id, with its name, from `/proc/self/task/*/stat`, and
/// of the whole process (threads that exited included) from
/// `/proc/self/stat` under id 0, `"(process)"`. Kept by thread, not by
/// name, so that a thread that exits during a case (tokio's blocking pool
/// lets idle threads go) takes only its own time with it instead of
/// making its name's total go backwards. Empty off Linux.
fn thread_cpu_ticks() -> BTreeMap<u64, (String, u64)> {
    fn ticks(stat: &str) -> Option<(String, u64)> {
        // pid (comm) state ... field 14 utime, 15 stime; comm may hold spaces.
        let (open, close) = (stat.find('(')?, stat.rfind(')')?);
        let fields: Vec<&str> = stat[close + 2..].split(' ').collect();
        let time = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
        Some((stat[open + 1..close].to_string(), time))
    }
    let mut out = BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return out };
    for task in tasks.flatten() {
        let Some(tid) = task.file_name().to_str().and_then(|t| t.parse::<u64>().ok()) else { continue };
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else { continue };
        if let Some(named) = ticks(&stat) {
            out.insert(tid, named);
        }
    }
    if let Some((_, time)) = std::fs::read_to_string("/proc/self/stat").ok().as_deref().and_then(ticks) {
        out.insert(0, ("(process)".into(), time));
    }
    out
}

/// What a case cost: operations done, CPU time per thread name, and the
/// log's work counters, between its start and its end.
struct Work {
    operations: u64,
    cpu_ticks: BTreeMap<String, i64>,
    log: Option<klaxon_log::WorkSnapshot>,
}

/// Starts measuring a case's work; [`Meter::stop`] ends it.
struct Meter {
    cpu: BTreeMap<u64, (String, u64)>,
    log: Option<(Log, klaxon_log::WorkSnapshot)>,
}

impl Meter {
    fn start(log: Option<&Log>) -> Meter {
        Meter { cpu: thread_cpu_ticks(), log: log.map(|l| (l.clone(), l.stats().work.snapshot())) }
    }

    fn stop(self, operations: usize) -> Work {
        let after = thread_cpu_ticks();
        let mut cpu_ticks = BTreeMap::new();
        for (tid, (name, t)) in &after {
            let before = self.cpu.get(tid).filter(|(n, _)| n == name).map_or(0, |(_, t)| *t);
            *cpu_ticks.entry(name.clone()).or_default() += *t as i64 - before as i64;
        }
        cpu_ticks.retain(|_, t| *t > 0);
        let log = self.log.map(|(log, before)| log.stats().work.snapshot().since(&before));
        Work { operations: operations as u64, cpu_ticks, log }
    }
}

/// The two runtimes: clients on one, the server side on the other.
struct Runtimes {
    client: Runtime,
    server: Runtime,
}

impl Runtimes {
    fn new() -> Runtimes {
        let build = |name: &str, workers: usize| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(workers)
                .thread_name(name)
                .enable_all()
                .build()
                .unwrap()
        };
        Runtimes { client: build("bench-client", 1), server: build("bench-server", 2) }
    }
}

fn raw_log(rts: &Runtimes, appenders: usize, seconds: u64) -> Row {
    let dir = tempfile::tempdir().unwrap();
    let log = rts.server.block_on(async { Log::open(dir.path(), klaxon_log::Options::default()).unwrap() });
    let meter = Meter::start(Some(&log));
    let start = Instant::now();
    let deadline = start + Duration::from_secs(seconds);
    let latencies = rts.client.block_on(async {
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
                            data: EventData::from_value(
                                &serde_json::json!({"incident": "INC-1", "text": "x".repeat(200)}),
                            )
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
        gathered(tasks).await
    });
    let elapsed = start.elapsed();
    let work = meter.stop(latencies.len());
    rts.server.block_on(log.close());
    row(format!("log append, {appenders} concurrent appenders"), elapsed, latencies, work)
}

/// How the clients send their commands.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Transport {
    /// One unary call per command (`Incidents/Report`, `Declare`, ...).
    Unary,
    /// One `Incidents/Execute` stream per client, kept open for the whole
    /// case; each command a message on it, the next sent when the previous
    /// outcome came back (one in flight per client, as with unary calls).
    Stream,
}

/// With `request_ids`, every command carries a fresh client request id, as
/// the CLI's do (an idempotency lookup before each command, and event ids
/// derived from it).
fn grpc(rts: &Runtimes, clients: usize, seconds: u64, request_ids: bool) -> Row {
    commands(rts, clients, seconds, request_ids, Transport::Unary)
}

fn commands(rts: &Runtimes, clients: usize, seconds: u64, request_ids: bool, transport: Transport) -> Row {
    let dir = tempfile::tempdir().unwrap();
    let stop = CancellationToken::new();
    let (log, handle, address) = rts.server.block_on(async {
        let log = Log::open(dir.path(), klaxon_log::Options::default()).unwrap();
        let intake = Intake::new(log.clone(), Default::default(), system_clock());
        let handle = intake.handle();
        tokio::spawn(intake.run(stop.clone()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(IncidentsService::new(handle.clone()).into_server())
                .serve_with_incoming_shutdown(
                    tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
                    stop.clone().cancelled_owned(),
                ),
        );
        (log, handle, address)
    });
    let client = rts.client.block_on(IncidentsClient::connect(format!("http://{address}"))).unwrap();
    let meter = Meter::start(Some(&log));
    let start = Instant::now();
    let deadline = start + Duration::from_secs(seconds);
    let latencies = rts.client.block_on(async {
        let tasks: Vec<_> = (0..clients)
            .map(|_| {
                let mut c = client.clone();
                tokio::spawn(async move {
                    let context = move || {
                        request_ids.then(|| v1::CommandContext {
                            request_id: uuid::Uuid::new_v4().to_string(),
                            ..Default::default()
                        })
                    };
                    match transport {
                        Transport::Unary => unary_client(&mut c, deadline, context).await,
                        Transport::Stream => stream_client(&mut c, deadline, context).await,
                    }
                })
            })
            .collect();
        gathered(tasks).await
    });
    let elapsed = start.elapsed();
    // The fold loop is part of the work: wait until it has folded every
    // record appended.
    rts.server.block_on(handle.wait_for(log.head())).unwrap();
    let work = meter.stop(latencies.len());
    stop.cancel();
    rts.server.block_on(log.close());
    let ids = if request_ids { ", request ids" } else { "" };
    let over = match transport {
        Transport::Unary => "",
        Transport::Stream => " over one stream per client",
    };
    row(
        format!("gRPC commands (report, declare, update){over}, {clients} concurrent clients{ids}"),
        elapsed,
        latencies,
        work,
    )
}

/// Report, declare and update, each a unary call, until `deadline`.
async fn unary_client(
    c: &mut IncidentsClient<tonic::transport::Channel>,
    deadline: Instant,
    context: impl Fn() -> Option<v1::CommandContext>,
) -> Vec<Duration> {
    let mut latencies = Vec::new();
    while Instant::now() < deadline {
        let t = Instant::now();
        let id = c
            .report(by(v1::ReportRequest { title: "bench".into(), context: context(), ..Default::default() }))
            .await
            .unwrap()
            .into_inner()
            .incident_id;
        latencies.push(t.elapsed());
        let t = Instant::now();
        c.declare(by(v1::DeclareRequest {
            incident_id: id.clone(),
            severity: v1::Severity::Sev2 as i32,
            context: context(),
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
            context: context(),
        }))
        .await
        .unwrap();
        latencies.push(t.elapsed());
    }
    latencies
}

/// The same commands as [`unary_client`], as messages of one `Execute`
/// stream, one in flight.
async fn stream_client(
    c: &mut IncidentsClient<tonic::transport::Channel>,
    deadline: Instant,
    context: impl Fn() -> Option<v1::CommandContext>,
) -> Vec<Duration> {
    use v1::command_envelope::Command as C;
    use v1::command_outcome::Outcome;
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let mut outcomes = c.execute(by(tokio_stream::wrappers::ReceiverStream::new(rx))).await.unwrap().into_inner();
    let mut latencies = Vec::new();
    let mut tag = 0;
    let mut send = async |command: C| {
        tag += 1;
        tx.send(v1::CommandEnvelope { tag, command: Some(command) }).await.unwrap();
        let outcome = outcomes.message().await.unwrap().expect("an outcome");
        assert_eq!(outcome.tag, tag);
        outcome.outcome.expect("an outcome")
    };
    while Instant::now() < deadline {
        let t = Instant::now();
        let Outcome::Report(report) =
            send(C::Report(v1::ReportRequest { title: "bench".into(), context: context(), ..Default::default() }))
                .await
        else {
            panic!("the report was refused")
        };
        latencies.push(t.elapsed());
        let id = report.incident_id;
        let t = Instant::now();
        let declared = send(C::Declare(v1::DeclareRequest {
            incident_id: id.clone(),
            severity: v1::Severity::Sev2 as i32,
            context: context(),
        }))
        .await;
        assert!(matches!(declared, Outcome::Command(_)), "the declaration was refused");
        latencies.push(t.elapsed());
        let t = Instant::now();
        let text = "x".repeat(200);
        let updated = send(C::PostUpdate(v1::PostUpdateRequest {
            incident_id: id,
            audience: v1::Audience::Internal as i32,
            text,
            context: context(),
        }))
        .await;
        assert!(matches!(updated, Outcome::Command(_)), "the update was refused");
        latencies.push(t.elapsed());
    }
    latencies
}

/// Unary gRPC calls that do no work (`grpc.health.v1.Health/Check`), with
/// `clients` in flight: what tonic, HTTP/2 and loopback cost per call.
fn grpc_floor(rts: &Runtimes, clients: usize, seconds: u64) -> Row {
    let stop = CancellationToken::new();
    let address = rts.server.block_on(async {
        let (_reporter, health) = tonic_health::server::health_reporter();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(tonic::transport::Server::builder().add_service(health).serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
            stop.clone().cancelled_owned(),
        ));
        address
    });
    let channel = rts
        .client
        .block_on(tonic::transport::Endpoint::from_shared(format!("http://{address}")).unwrap().connect())
        .unwrap();
    let client = tonic_health::pb::health_client::HealthClient::new(channel);
    let meter = Meter::start(None);
    let start = Instant::now();
    let deadline = start + Duration::from_secs(seconds);
    let latencies = rts.client.block_on(async {
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
        gathered(tasks).await
    });
    let elapsed = start.elapsed();
    let work = meter.stop(latencies.len());
    stop.cancel();
    row(format!("gRPC health check (no work), {clients} concurrent clients"), elapsed, latencies, work)
}

/// Thread CPU time spent inside each `intake.*` span, summed by span name:
/// the stage table.
#[derive(Default)]
struct StageCpu {
    totals: Mutex<BTreeMap<&'static str, (Duration, u64)>>,
}

/// When the current thread entered a span (its CPU clock then).
struct Entered(Vec<Duration>);

fn thread_cpu() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

impl<S> tracing_subscriber::Layer<S> for &'static StageCpu
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    fn on_enter(&self, id: &tracing::span::Id, ctx: tracing_subscriber::layer::Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut extensions = span.extensions_mut();
        let now = thread_cpu();
        match extensions.get_mut::<Entered>() {
            Some(entered) => entered.0.push(now),
            None => extensions.insert(Entered(vec![now])),
        }
    }

    fn on_exit(&self, id: &tracing::span::Id, ctx: tracing_subscriber::layer::Context<'_, S>) {
        let now = thread_cpu();
        let Some(span) = ctx.span(id) else { return };
        let Some(entered) = span.extensions_mut().get_mut::<Entered>().and_then(|e| e.0.pop()) else { return };
        let mut totals = self.totals.lock().unwrap();
        totals.entry(span.name()).or_default().0 += now.saturating_sub(entered);
    }

    fn on_close(&self, id: tracing::span::Id, ctx: tracing_subscriber::layer::Context<'_, S>) {
        let Some(span) = ctx.span(&id) else { return };
        self.totals.lock().unwrap().entry(span.name()).or_default().1 += 1;
    }
}

fn print_work(rows: &[&Row]) {
    let names: std::collections::BTreeSet<&String> =
        rows.iter().flat_map(|r| r.work.cpu_ticks.keys()).filter(|n| n.as_str() != "(process)").collect();
    println!();
    print!("| CPU µs per operation, by thread |");
    for r in rows {
        print!(" {} |", r.name);
    }
    println!();
    print!("| --- |");
    for _ in rows {
        print!(" ---: |");
    }
    println!();
    let per = |r: &Row, ticks: i64| ticks as f64 / TICKS_PER_SECOND * 1e6 / r.work.operations.max(1) as f64;
    for name in names.iter().chain([&&"(process)".to_string()]) {
        print!("| {name} |");
        for r in rows {
            match r.work.cpu_ticks.get(*name) {
                Some(t) => print!(" {:.1} |", per(r, *t)),
                None => print!(" |"),
            }
        }
        println!();
    }
    print!("| operations |");
    for r in rows {
        print!(" {} |", r.work.operations);
    }
    println!();
    type Counter = fn(&klaxon_log::WorkSnapshot) -> u64;
    let counters: [(&str, Counter); 4] = [
        ("log records per operation", |w| w.records),
        ("log groups per operation", |w| w.groups),
        ("log syncs per operation", |w| w.syncs),
        ("sled keys per operation (groups + behind)", |w| w.group_keys + w.index_keys),
    ];
    for (label, counter) in counters {
        print!("| {label} |");
        for r in rows {
            match &r.work.log {
                Some(w) => print!(" {:.3} |", counter(w) as f64 / r.work.operations.max(1) as f64),
                None => print!(" |"),
            }
        }
        println!();
    }
}

/// The size of the futures a command allocates and moves: the handler's
/// (boxed by tonic's `async_trait`), `Handle::execute`'s and `Log::append`'s
/// (`KLAXON_BENCH_ONLY=sizes`). Never polled.
fn future_sizes(rts: &Runtimes) {
    use klaxon_domain::ids::{ActorId, IncidentId, Severity};
    use klaxon_domain::incident::Command;
    use v1::incidents_server::Incidents;
    let dir = tempfile::tempdir().unwrap();
    rts.server.block_on(async {
        let log = Log::open(dir.path(), klaxon_log::Options::default()).unwrap();
        let handle = Intake::new(log.clone(), Default::default(), system_clock()).handle();
        let service = IncidentsService::new(handle.clone());
        let ctx = klaxon_intake::CommandContext::by(ActorId::new("bench").unwrap());
        let id = IncidentId::from_number(1).unwrap();
        let stream = StreamId::new("incident-INC-1").unwrap();
        let sizes = [
            ("Incidents::report (boxed)", std::mem::size_of_val(&*service.report(by(v1::ReportRequest::default())))),
            ("Incidents::declare (boxed)", std::mem::size_of_val(&*service.declare(by(v1::DeclareRequest::default())))),
            (
                "Incidents::post_update (boxed)",
                std::mem::size_of_val(&*service.post_update(by(v1::PostUpdateRequest::default()))),
            ),
            (
                "Handle::execute",
                std::mem::size_of_val(&handle.execute(id, Command::DeclareIncident { severity: Severity::Sev2 }, &ctx)),
            ),
            ("Log::append", std::mem::size_of_val(&log.append(&stream, ExpectedVersion::Any, Vec::new()))),
        ];
        for (name, bytes) in sizes {
            println!("| {name} | {bytes} bytes |");
        }
        log.close().await;
    });
}

fn main() {
    let seconds = std::env::var("KLAXON_BENCH_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(3);
    let rts = Runtimes::new();
    // `KLAXON_BENCH_ONLY=commands` (or `floor`, `log`) runs that 64-way
    // case alone and prints its row and CPU table: for `perf record`.
    if let Ok(only) = std::env::var("KLAXON_BENCH_ONLY") {
        let row = match only.as_str() {
            "commands" => grpc(&rts, 64, seconds, false),
            "stream" => commands(&rts, 64, seconds, false, Transport::Stream),
            "floor" => grpc_floor(&rts, 64, seconds),
            "log" => raw_log(&rts, 64, seconds),
            "sizes" => return future_sizes(&rts),
            other => panic!("KLAXON_BENCH_ONLY={other}: expected commands, stream, floor, log or sizes"),
        };
        println!("| {} | {:.0} /s | p50 {:.0} µs | p99 {:.0} µs |", row.name, row.rate, row.p50, row.p99);
        print_work(&[&row]);
        return;
    }
    let mut rows = Vec::new();
    for n in [1, 64] {
        eprintln!("log, {n} appenders...");
        rows.push(raw_log(&rts, n, seconds));
        eprintln!("gRPC, {n} clients...");
        rows.push(grpc(&rts, n, seconds, false));
    }
    eprintln!("gRPC floor, 64 clients...");
    let floor = grpc_floor(&rts, 64, seconds);
    eprintln!("gRPC, 64 clients with request ids...");
    let with_ids = grpc(&rts, 64, seconds, true);
    eprintln!("gRPC, 64 clients, one stream each...");
    let streamed = commands(&rts, 64, seconds, false, Transport::Stream);
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
    println!(
        "| {} | {:.0} | {:.0} | {:.0} | {:.2}x the log |",
        with_ids.name,
        with_ids.rate,
        with_ids.p50,
        with_ids.p99,
        with_ids.rate / rows[2].rate
    );
    let process = |r: &Row| {
        r.work.cpu_ticks.get("(process)").copied().unwrap_or(0) as f64 / TICKS_PER_SECOND * 1e6
            / r.work.operations.max(1) as f64
    };
    println!(
        "| {} | {:.0} | {:.0} | {:.0} | {:.2}x the log (target >= 0.6); CPU per command {:.1} µs, {:.2}x the unary case's {:.1} |",
        streamed.name,
        streamed.rate,
        streamed.p50,
        streamed.p99,
        streamed.rate / rows[2].rate,
        process(&streamed),
        process(&streamed) / process(&rows[3]),
        process(&rows[3]),
    );
    print_work(&[&rows[2], &rows[3], &streamed, &with_ids, &floor]);

    // The stage table: a separate run with the span layer installed.
    use tracing_subscriber::layer::SubscriberExt;
    let stages: &'static StageCpu = Box::leak(Box::default());
    let subscriber = tracing_subscriber::registry().with(tracing_subscriber::Layer::with_filter(
        stages,
        tracing_subscriber::filter::filter_fn(|meta| meta.target().starts_with("klaxon_intake")),
    ));
    tracing::subscriber::set_global_default(subscriber).unwrap();
    eprintln!("gRPC, 64 clients, stage spans timed...");
    let profiled = grpc(&rts, 64, seconds, false);
    let n = profiled.work.operations.max(1) as f64;
    println!();
    println!(
        "Stages ({} commands at {:.0}/s with the span layer on): thread CPU inside each span, per command",
        profiled.work.operations, profiled.rate
    );
    println!();
    println!("| span | CPU µs per command | spans per command |");
    println!("| --- | ---: | ---: |");
    for (name, (cpu, count)) in stages.totals.lock().unwrap().iter() {
        println!("| {name} | {:.1} | {:.2} |", cpu.as_secs_f64() * 1e6 / n, *count as f64 / n);
    }
    let server = profiled.work.cpu_ticks.get("bench-server").copied().unwrap_or(0);
    println!("| (bench-server threads, all) | {:.1} | |", server as f64 / TICKS_PER_SECOND * 1e6 / n);
}
