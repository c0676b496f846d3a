//! Report -> first page, embedded beside distributed, in one run.
//!
//! `cargo bench -p klaxon-tests --bench topology` starts each topology as
//! real processes in turn: `klaxond up` (embedded), then `nats-server -js`,
//! `klaxond serve log`, one `klaxond serve <service>` per service and
//! `klaxond serve gateway` (distributed). Against the one client address of
//! each it sends Sev-1 reports one after the other through real gRPC, and
//! measures from just before the Report call until the real webhook
//! receiver on loopback holds that incident's first page (polled every
//! 200 µs; a poll copies every request so far, 0.2 ms by the end of 200
//! reports, so a figure is late by up to about 0.4 ms). Each report has its
//! own title and dedup key, so each opens a new incident. Prints p50/p99 of
//! both and the ratio of the p99s; the Report call alone is shown beside.
//! Afterwards, with the processes stopped, it opens each log and splits
//! every report's time into stages by the `recorded_at` of its records
//! (stamped by the log's writer when it takes the group, just before the
//! batch is applied and synced; one clock, one machine).
//! `KLAXON_BENCH_REPORTS` (default 200) sets the count, after 10 warm-up
//! reports per topology.
#![allow(missing_docs)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use klaxon_log::{Log, StreamId, StreamVersion};
use klaxon_proto::v1::{self, incidents_client::IncidentsClient};
use klaxon_tests::Klaxond;
use klaxon_tests::config::{PagingConfig, secret};
use klaxon_tests::nats::NatsServer;
use klaxon_tests::receiver::Receiver;
use tokio::runtime::Runtime;
use tonic::transport::Channel;

const WARMUP: usize = 10;
const SECRET_ENV: &str = "KLAXON_BENCH_PAGER_SECRET";
const POLL: Duration = Duration::from_micros(200);
const PAGE_LIMIT: Duration = Duration::from_secs(10);

/// The configuration both topologies run (see [`PagingConfig`]); nothing
/// escalates within a run.
fn config(receiver: &str) -> String {
    PagingConfig { receiver, secret_env: SECRET_ENV, escalate_after_seconds: 1800, notify_executives: false }.toml()
}

/// The processes of one topology; dropping it kills what is still running.
struct Topology {
    /// The one address clients use.
    url: String,
    /// The event log's folder.
    data_dir: PathBuf,
    /// Stopped in this order (gateway first, log server last).
    processes: Vec<(&'static str, Klaxond)>,
    _nats: Option<NatsServer>,
}

impl Topology {
    fn embedded(dir: &Path, config: &str, env: &[(&str, &str)]) -> Topology {
        let up = Klaxond::start_with_env(&dir.join("data"), &["--config", config], env);
        Topology { url: up.url.clone(), data_dir: dir.join("data"), processes: vec![("up", up)], _nats: None }
    }

    fn distributed(dir: &Path, config: &str, env: &[(&str, &str)]) -> Topology {
        let nats = NatsServer::start(&dir.join("nats"));
        let mut env: Vec<(String, String)> = env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        env.extend(klaxon_tests::auth::cluster_env(dir));
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let env = env.as_slice();
        let data = dir.join("log").display().to_string();
        let log = Klaxond::serve("log", &["--config", config, "--data-dir", &data, "--nats", &nats.url], env);
        let mut processes = Vec::new();
        let mut routes = Vec::new();
        for role in ["intake", "severity", "paging", "notifier", "review"] {
            let args = ["--config", config, "--log-server", &log.address, "--nats", &nats.url];
            let process = Klaxond::serve(role, &args, env);
            routes.push(format!("{role}={}", process.address));
            processes.push((role, process));
        }
        let mut args = vec!["--config", config];
        for route in &routes {
            args.extend(["--route", route.as_str()]);
        }
        let gateway = Klaxond::serve("gateway", &args, env);
        let url = gateway.url.clone();
        processes.push(("log", log));
        processes.reverse();
        processes.insert(0, ("gateway", gateway));
        Topology { url, data_dir: dir.join("log"), processes, _nats: Some(nats) }
    }

    /// SIGTERM to each, in order; says so when one does not exit cleanly.
    fn stop(mut self) {
        for (role, process) in self.processes.drain(..) {
            let status = process.stop();
            if !status.success() {
                eprintln!("warning: {role} exited with {status}");
            }
        }
    }
}

/// One measured report.
struct Sample {
    /// The incident it opened.
    incident: String,
    /// Until the Report call answered.
    rpc: Duration,
    /// Until the receiver held the first page.
    page: Duration,
    /// Wall clock (µs since the epoch) just before the call.
    sent_us: i64,
}

/// Where one report's time went, from the log's `recorded_at` stamps.
struct Stages {
    /// Call -> the report's record: client, gateway, intake's decision.
    report: Duration,
    /// -> the assessment's record: the report synced, delivered to the
    /// evaluator, decided.
    assess: Duration,
    /// -> the page decision's record: the assessment synced, delivered to
    /// the pager, decided.
    decide: Duration,
    /// -> the receiver holds the page: the decision synced, delivered
    /// back to the pager, the webhook sent, the poll.
    deliver: Duration,
}

fn micros_now() -> i64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_micros() as i64
}

fn between(from_us: i64, to_us: i64) -> Duration {
    Duration::from_micros(to_us.saturating_sub(from_us).max(0) as u64)
}

/// Splits each sample by the records of its incident in the stopped
/// topology's log.
fn stages(data_dir: &Path, samples: &[Sample]) -> Vec<Stages> {
    let log = Log::open(data_dir, Default::default()).expect("open the stopped topology's log");
    let stamp = |stream: String, kind: &str| -> i64 {
        let records = log.read_stream(&StreamId::new(stream.clone()).unwrap(), StreamVersion(1), 64).unwrap();
        let record = records
            .iter()
            .find(|r| kind.is_empty() || r.kind.as_str() == kind)
            .unwrap_or_else(|| panic!("no {kind:?} record in {stream}"));
        record.recorded_at.timestamp_micros()
    };
    samples
        .iter()
        .map(|s| {
            let reported = stamp(format!("incident-{}", s.incident), "incident.reported.v1");
            let assessed = stamp(format!("incident-{}", s.incident), "incident.severity_assessed.v1");
            let paged = stamp(format!("pages-{}", s.incident), "");
            let seen = s.sent_us + s.page.as_micros() as i64;
            Stages {
                report: between(s.sent_us, reported),
                assess: between(reported, assessed),
                decide: between(assessed, paged),
                deliver: between(paged, seen),
            }
        })
        .collect()
}

async fn report(client: &mut IncidentsClient<Channel>, topology: &str, i: usize) -> Result<String, tonic::Status> {
    let mut request = tonic::Request::new(v1::ReportRequest {
        title: format!("checkout fails ({topology} #{i})"),
        service: "payments".into(),
        customers: vec!["acme".into(), "globex".into()],
        dedup_key: format!("bench-{topology}-{i}"),
        ..Default::default()
    });
    request.metadata_mut().insert("authorization", klaxon_tests::auth::bearer("monitor"));
    request.set_timeout(PAGE_LIMIT);
    Ok(client.report(request).await?.into_inner().incident_id)
}

/// Waits, polling the receiver every [`POLL`], until it answered `key`
/// with a 2xx; returns when it saw it.
fn wait_for_page(receiver: &Receiver, key: &str, since: Instant) -> Instant {
    loop {
        if receiver.requests().iter().rev().any(|r| r.status < 300 && r.idempotency_key == key) {
            return Instant::now();
        }
        assert!(since.elapsed() < PAGE_LIMIT, "no page {key} within {PAGE_LIMIT:?}");
        std::thread::sleep(POLL);
    }
}

/// Starts `name`, warms it up, measures `n` reports, stops it.
fn measure(rt: &Runtime, name: &'static str, n: usize) -> (Vec<Sample>, Vec<Stages>) {
    let secret = secret();
    let receiver = rt.block_on(Receiver::start(&secret));
    let dir = tempfile::tempdir().unwrap();
    let config_path: PathBuf = dir.path().join("klaxon.toml");
    std::fs::write(&config_path, config(&receiver.url)).unwrap();
    let config_arg = config_path.display().to_string();
    let env = [(SECRET_ENV, secret.as_str())];
    eprintln!("{name}: starting...");
    let topology = match name {
        "embedded" => Topology::embedded(dir.path(), &config_arg, &env),
        _ => Topology::distributed(dir.path(), &config_arg, &env),
    };
    let mut client = rt.block_on(IncidentsClient::connect(topology.url.clone())).unwrap();

    // Warm-up: the first call may find a route or a subscription not ready
    // yet; retry it for a while.
    let deadline = Instant::now() + Duration::from_secs(30);
    for i in 0..WARMUP {
        let t = Instant::now();
        let id = loop {
            match rt.block_on(report(&mut client, name, i)) {
                Ok(id) => break id,
                Err(e) if Instant::now() < deadline => {
                    eprintln!("{name}: warm-up report failed ({}), retrying", e.message());
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(e) => panic!("{name}: warm-up report failed: {e}"),
            }
        };
        wait_for_page(&receiver, &format!("{id}-P1"), t);
    }

    eprintln!("{name}: {n} Sev-1 reports...");
    let mut samples = Vec::with_capacity(n);
    for i in WARMUP..WARMUP + n {
        let sent_us = micros_now();
        let t = Instant::now();
        let id = rt.block_on(report(&mut client, name, i)).unwrap_or_else(|e| panic!("{name}: report failed: {e}"));
        let rpc = t.elapsed();
        let paged = wait_for_page(&receiver, &format!("{id}-P1"), t);
        samples.push(Sample { incident: id, rpc, page: paged.duration_since(t), sent_us });
    }
    let pages = receiver.requests().iter().filter(|r| r.status < 300 && r.idempotency_key.ends_with("-P1")).count();
    assert_eq!(pages, WARMUP + n, "{name}: one first page per report");
    assert!(receiver.requests().iter().all(|r| r.signature_ok), "{name}: every webhook is signed");
    // What one poll costs by the end (it copies every request so far).
    let t = Instant::now();
    for _ in 0..100 {
        std::hint::black_box(receiver.requests());
    }
    eprintln!("{name}: one poll of {} requests takes {:?}", WARMUP + n, t.elapsed() / 100);
    drop(client);
    let data_dir = topology.data_dir.clone();
    topology.stop();
    let stages = stages(&data_dir, &samples);
    (samples, stages)
}

fn percentiles(mut v: Vec<Duration>) -> (f64, f64) {
    v.sort();
    let at = |p: f64| v[((v.len() as f64 - 1.0) * p).round() as usize].as_secs_f64() * 1e3;
    (at(0.5), at(0.99))
}

fn main() {
    let n: usize = std::env::var("KLAXON_BENCH_REPORTS").ok().and_then(|v| v.parse().ok()).unwrap_or(200);
    klaxon_tests::build_klaxond_for_bench();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let mut rows = Vec::new();
    let mut split = Vec::new();
    for name in ["embedded", "distributed"] {
        let (samples, stages) = measure(&rt, name, n);
        let rpc = percentiles(samples.iter().map(|s| s.rpc).collect());
        let page = percentiles(samples.iter().map(|s| s.page).collect());
        rows.push((name, page, rpc));
        let stage = |f: fn(&Stages) -> Duration| percentiles(stages.iter().map(f).collect());
        split.push((name, [stage(|s| s.report), stage(|s| s.assess), stage(|s| s.decide), stage(|s| s.deliver)]));
    }
    let embedded_p99 = rows[0].1.1;
    println!();
    println!("| topology | reports | p50 ms | p99 ms | Report call p50 ms | Report call p99 ms | ratio (p99) |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: | --- |");
    for (name, (p50, p99), (r50, r99)) in rows {
        let ratio = if name == "embedded" {
            String::new()
        } else {
            let ratio = p99 / embedded_p99;
            let verdict = if ratio <= 2.0 { "met" } else { "not met" };
            format!("{ratio:.2}x embedded (target <= 2x: {verdict})")
        };
        println!("| {name} | {n} | {p50:.2} | {p99:.2} | {r50:.2} | {r99:.2} | {ratio} |");
    }
    println!();
    println!(
        "| topology | call -> report recorded | -> assessment recorded | -> page decision recorded | -> receiver has the page |"
    );
    println!("| --- | ---: | ---: | ---: | ---: |");
    for (name, stages) in split {
        let cells: Vec<String> = stages.iter().map(|(p50, p99)| format!("{p50:.2} / {p99:.2}")).collect();
        println!("| {name} (p50 / p99 ms) | {} |", cells.join(" | "));
    }
}
