//! The replicated log beside the single log server, in one run.
//!
//! `cargo bench -p klaxon-tests --bench log_group` starts real processes:
//! `nats-server -js`, then one `klaxond serve log` (the baseline), then a
//! group of three `klaxond serve log` nodes with `[log_group]` (default
//! timings: heartbeat 100 ms, election timeout 300–600 ms after a
//! 600 ms leader lease). Clients are the
//! real `RemoteLog` over loopback gRPC.
//!
//! - **Append throughput**: 1 and 64 appenders, each appending one ~120-byte
//!   event at a time to its own stream for `KLAXON_BENCH_SECONDS` (default
//!   5) after a 1 s warm-up; acknowledged appends per second, and the
//!   group's ratio to the single server.
//! - **Failover**: `KLAXON_BENCH_KILLS` (default 20) times, SIGKILL the
//!   leader while a probe client appends, and measure from the kill to the
//!   acknowledgement of the probe's first append sent after the kill (the
//!   probe retries through `RemoteLog`: refused by followers, following
//!   hints, backing off while no node leads). The killed node is restarted
//!   and has caught up before the next kill. p50 and max.
#![allow(missing_docs)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use klaxon_bus::{EventLog, RemoteLog};
use klaxon_log::{EventData, EventKind, ExpectedVersion, Metadata, NewEvent, StreamId};
use klaxon_tests::Klaxond;
use klaxon_tests::group::{GroupOptions, LogGroup};
use klaxon_tests::nats::NatsServer;
use tokio::runtime::Runtime;

fn event(n: u64) -> NewEvent {
    NewEvent {
        id: uuid::Uuid::new_v4(),
        kind: EventKind::new("bench.appended.v1").unwrap(),
        data: EventData::from_value(&serde_json::json!({ "n": n, "padding": "x".repeat(64) })).unwrap(),
        metadata: Metadata { actor: Some("bench".into()), ..Metadata::default() },
    }
}

fn client(runtime: &Runtime, addresses: &str) -> RemoteLog {
    let _entered = runtime.enter();
    let token = klaxon_tests::auth::token(klaxon_tests::auth::SERVICE);
    RemoteLog::connect_lazy_tls(addresses, None, Some(token)).unwrap()
}

/// Acknowledged appends per second with `appenders` concurrent appenders.
fn throughput(runtime: &Runtime, addresses: &str, appenders: usize, seconds: u64) -> f64 {
    let counting = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..appenders)
        .map(|a| {
            let remote = client(runtime, addresses);
            let (counting, stop, count) = (counting.clone(), stop.clone(), count.clone());
            runtime.spawn(async move {
                let stream = StreamId::new(format!("bench-{a}-{}", uuid::Uuid::new_v4().simple())).unwrap();
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    remote.append(&stream, ExpectedVersion::Any, vec![event(n)]).await.expect("an append");
                    if counting.load(Ordering::Relaxed) {
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(1));
    counting.store(true, Ordering::SeqCst);
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(seconds));
    counting.store(false, Ordering::SeqCst);
    let elapsed = started.elapsed();
    stop.store(true, Ordering::SeqCst);
    for task in tasks {
        runtime.block_on(task).unwrap();
    }
    count.load(Ordering::SeqCst) as f64 / elapsed.as_secs_f64()
}

/// Waits until node `i` follows a leader and has caught up with it: the
/// group is healthy again before the next kill.
fn rejoined(group: &LogGroup, i: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let leader = group.leader(Duration::from_secs(30));
        let target = group.status(leader).map(|s| s.last_log_index).unwrap_or(u64::MAX);
        if group.status(i).is_ok_and(|s| s.state == "follower" && s.last_log_index >= target) {
            return;
        }
        assert!(Instant::now() < deadline, "node {} did not rejoin", i + 1);
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Kill -> next acknowledged append, `kills` times.
fn failovers(runtime: &Runtime, group: &mut LogGroup, kills: usize) -> Vec<Duration> {
    let probe = client(runtime, &group.addresses());
    let stream = StreamId::new("probe").unwrap();
    let mut times = Vec::new();
    for k in 0..kills {
        let leader = group.leader(Duration::from_secs(30));
        runtime.block_on(probe.append(&stream, ExpectedVersion::Any, vec![event(0)])).expect("the probe appends");
        let killed = Instant::now();
        group.kill(leader);
        let acknowledged = loop {
            if runtime.block_on(probe.append(&stream, ExpectedVersion::Any, vec![event(k as u64)])).is_ok() {
                break Instant::now();
            }
        };
        times.push(acknowledged - killed);
        group.restart(leader);
        rejoined(group, leader);
    }
    times
}

fn main() {
    let seconds = std::env::var("KLAXON_BENCH_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(5);
    let kills = std::env::var("KLAXON_BENCH_KILLS").ok().and_then(|s| s.parse().ok()).unwrap_or(20);
    klaxon_tests::build_klaxond_for_bench();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let nats = NatsServer::start(&dir.path().join("nats"));
    let env = klaxon_tests::auth::cluster_env(dir.path());
    let env_refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();

    let single_dir = dir.path().join("single").display().to_string();
    let single = Klaxond::serve("log", &["--data-dir", single_dir.as_str(), "--nats", nats.url.as_str()], &env_refs);
    let cells: Vec<usize> = if seconds == 0 { Vec::new() } else { vec![1, 64] };
    let single_rates: Vec<f64> = cells.iter().map(|a| throughput(&runtime, &single.address, *a, seconds)).collect();
    assert!(single.stop().success());

    drop(nats);
    // A stream of its own: the group's log is another log.
    let nats = NatsServer::start(&dir.path().join("nats-group"));
    let tuning = std::env::var("KLAXON_BENCH_LOG_GROUP").unwrap_or_default().replace(';', "\n") + "\n";
    let options = GroupOptions { tuning, ..GroupOptions::default() };
    let mut group = LogGroup::start(&dir.path().join("group"), "", &nats.url, &env, &options);
    group.leader(Duration::from_secs(30));
    let group_rates: Vec<f64> = cells.iter().map(|a| throughput(&runtime, &group.addresses(), *a, seconds)).collect();
    let mut times = failovers(&runtime, &mut group, kills);
    group.stop();

    println!();
    println!("append throughput ({seconds} s per cell, one event per append, real gRPC on loopback)");
    println!();
    println!("| appenders | single log server (appends/s) | 3-node log group (appends/s) | ratio |");
    println!("| ---: | ---: | ---: | ---: |");
    for (i, appenders) in cells.iter().enumerate() {
        let (s, g) = (single_rates[i], group_rates[i]);
        println!("| {appenders} | {s:.0} | {g:.0} | {:.2}x |", g / s);
    }
    times.sort();
    let ms = |d: &Duration| d.as_secs_f64() * 1000.0;
    println!();
    println!("failover: SIGKILL of the leader -> next acknowledged append ({} kills)", times.len());
    println!();
    println!("| p50 ms | max ms | min ms |");
    println!("| ---: | ---: | ---: |");
    println!("| {:.0} | {:.0} | {:.0} |", ms(&times[times.len() / 2]), ms(times.last().unwrap()), ms(&times[0]));
}
