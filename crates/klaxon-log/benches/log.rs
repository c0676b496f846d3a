//! The event log against raw sled, in one run, on the same 300-byte events.
//!
//! `cargo bench -p klaxon-log` prints a table: events/s and latency for the
//! log with 1, 8 and 64 concurrent appenders beside raw sled insert + flush +
//! fdatasync (per insert and per batch of 64) and NATS JetStream (a real
//! `nats-server -js` started here, file storage with its default sync,
//! 64 publishes in flight), and replay (`read_all` + JSON decode) beside a
//! raw sled scan + JSON decode, with the ratios. The JetStream row is
//! skipped with a note when `nats-server` is not installed (found like
//! `tests/src/nats.rs` finds it: `NATS_SERVER_BIN`, `PATH`, `/usr/sbin`,
//! `/usr/bin`). Sizes:
//! `KLAXON_BENCH_REPLAY_EVENTS` (default 1,000,000), `KLAXON_BENCH_SECONDS`
//! (time per append case, default 3).
#![allow(missing_docs)]

use std::fs::File;
use std::time::{Duration, Instant};

use klaxon_log::{EventData, EventKind, ExpectedVersion, Log, Metadata, NewEvent, Options, Position, StreamId};

const EVENT_BYTES: usize = 300;

fn payload(n: u64) -> String {
    let head = format!(r#"{{"incident":"INC-{n}","kind":"status_update_posted","by":"alice","text":""#);
    let pad = EVENT_BYTES - head.len() - 2;
    let s = format!("{head}{}\"}}", "x".repeat(pad));
    debug_assert_eq!(s.len(), EVENT_BYTES);
    s
}

fn new_event(n: u64) -> NewEvent {
    NewEvent {
        id: uuid::Uuid::new_v4(),
        kind: EventKind::new("incident.status_update_posted.v1").unwrap(),
        data: EventData::from_json(payload(n)).unwrap(),
        metadata: Metadata { actor: Some("alice".into()), ..Metadata::default() },
    }
}

struct Row {
    name: String,
    events_per_s: f64,
    p50_us: Option<f64>,
    p99_us: Option<f64>,
    ratio: Option<(f64, &'static str)>,
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e6
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Raw sled: `batch` inserts, flush, fdatasync of the db file; repeated for
/// `seconds`. Returns (events/s, per-commit latencies).
fn sled_baseline(batch: usize, seconds: u64) -> (f64, Vec<Duration>) {
    let dir = tempfile::tempdir().unwrap();
    let db = sled::Config::new().path(dir.path()).mode(sled::Mode::HighThroughput).open().unwrap();
    let file = File::open(dir.path().join("db")).unwrap();
    let cpu_before = thread_cpu_ticks();
    let mut latencies = Vec::new();
    let mut n = 0u64;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(seconds) {
        let t = Instant::now();
        let mut b = sled::Batch::default();
        for _ in 0..batch {
            n += 1;
            b.insert(&n.to_be_bytes(), payload(n).as_bytes());
        }
        db.apply_batch(b).unwrap();
        db.flush().unwrap();
        file.sync_data().unwrap();
        latencies.push(t.elapsed());
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    let commits = latencies.len() as u64;
    print_cpu(&format!("sled, batches of {batch}"), "commit", commits, &cpu_delta(&cpu_before, &thread_cpu_ticks()));
    (rate, latencies)
}

/// CPU ticks by thread name between two readings of [`thread_cpu_ticks`].
fn cpu_delta(
    before: &std::collections::BTreeMap<String, u64>,
    after: &std::collections::BTreeMap<String, u64>,
) -> std::collections::BTreeMap<String, i64> {
    after.iter().map(|(name, t)| (name.clone(), *t as i64 - before.get(name).copied().unwrap_or(0) as i64)).collect()
}

/// Prints CPU µs per `unit` (over `n` of them) in all and by thread.
fn print_cpu(name: &str, unit: &str, n: u64, cpu_ticks: &std::collections::BTreeMap<String, i64>) {
    // /proc reports CPU time in USER_HZ ticks: 100 per second on Linux.
    let tick_us = 10_000.0;
    let n = n.max(1) as f64;
    let total: i64 = cpu_ticks.values().sum();
    let parts: Vec<String> = cpu_ticks
        .iter()
        .filter(|(_, t)| **t > 0)
        .map(|(thread, t)| format!("{thread} {:.1}", *t as f64 * tick_us / n))
        .collect();
    eprintln!("{name}: CPU µs per {unit} {:.1} ({})", total as f64 * tick_us / n, parts.join(", "));
}

/// CPU time (user + system, in clock ticks) of this process's threads,
/// summed by thread name, from `/proc/self/task/*/stat` (Linux only; empty
/// elsewhere). CPU time per append depends far less on the machine's load
/// than wall-clock rates do.
fn thread_cpu_ticks() -> std::collections::BTreeMap<String, u64> {
    let mut out = std::collections::BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return out };
    for task in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else { continue };
        // pid (comm) state ... field 14 utime, 15 stime; comm may hold spaces.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else { continue };
        let name = stat[open + 1..close].to_string();
        let fields: Vec<&str> = stat[close + 2..].split(' ').collect();
        let ticks = fields.get(11).and_then(|u| u.parse::<u64>().ok()).unwrap_or(0)
            + fields.get(12).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
        *out.entry(name).or_default() += ticks;
    }
    out
}

/// Work per append, as the log counts it, and CPU time per append by thread
/// (from the process's threads' CPU time before and after the case).
struct Work {
    appends: u64,
    counts: klaxon_log::WorkSnapshot,
    cpu_ticks: std::collections::BTreeMap<String, i64>,
}

impl Work {
    fn print(&self, name: &str) {
        let n = self.appends.max(1) as f64;
        let c = &self.counts;
        let per = |x: u64| x as f64 / n;
        eprintln!(
            "{name}: {} appends; per append: {:.3} sled keys in groups, {:.3} sled keys written behind, \
             {:.4} groups, {:.4} syncs ({:.1} appends per sync), {:.3} id-index reads, {:.3} stream-index reads; \
             {} index batches, {} of the syncs by the writer, {} by the appender",
            self.appends,
            per(c.group_keys),
            per(c.index_keys),
            per(c.groups),
            per(c.syncs),
            n / c.syncs.max(1) as f64,
            per(c.id_index_reads),
            per(c.stream_index_reads),
            c.index_batches,
            c.writer_rounds,
            c.appender_rounds,
        );
        print_cpu(name, "append", self.appends, &self.cpu_ticks);
    }
}

/// The log with `appenders` concurrent tasks, each appending one event at a
/// time to its own stream for `seconds`.
async fn log_appenders(appenders: usize, seconds: u64) -> (f64, Vec<Duration>) {
    let (rate, latencies, work) = log_appenders_counted(appenders, seconds).await;
    work.print(&format!("log, {appenders} appenders"));
    (rate, latencies)
}

async fn log_appenders_counted(appenders: usize, seconds: u64) -> (f64, Vec<Duration>, Work) {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), Options::default()).unwrap();
    let cpu_before = thread_cpu_ticks();
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let start = Instant::now();
    let tasks: Vec<_> = (0..appenders)
        .map(|a| {
            let log = log.clone();
            tokio::spawn(async move {
                let stream = StreamId::new(format!("incident-INC-{a}")).unwrap();
                let mut latencies = Vec::new();
                let mut n = 0;
                while Instant::now() < deadline {
                    n += 1;
                    let t = Instant::now();
                    log.append(&stream, ExpectedVersion::Any, vec![new_event(n)]).await.unwrap();
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
    let rate = latencies.len() as f64 / start.elapsed().as_secs_f64();
    let counts = log.stats().work.snapshot();
    let cpu_ticks = cpu_delta(&cpu_before, &thread_cpu_ticks());
    log.close().await;
    let appends = latencies.len() as u64;
    (rate, latencies, Work { appends, counts, cpu_ticks })
}

/// Fills a log with `events` (large appends from a few tasks), then times a
/// full `read_all` + decode of every event's data. Returns events/s.
async fn log_replay(events: u64) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), Options::default()).unwrap();
    let per_append = 1000;
    let writers = 4;
    let fill: Vec<_> = (0..writers)
        .map(|w| {
            let log = log.clone();
            tokio::spawn(async move {
                let stream = StreamId::new(format!("fill-{w}")).unwrap();
                let mut n = w;
                while n < events / per_append {
                    let batch = (0..per_append).map(|i| new_event(n * per_append + i)).collect();
                    log.append(&stream, ExpectedVersion::Any, batch).await.unwrap();
                    n += writers;
                }
            })
        })
        .collect();
    for f in fill {
        f.await.unwrap();
    }
    assert_eq!(log.head().0, events / per_append * per_append);
    // The index is written behind, on its own thread: let it catch up
    // (bounded), so that the timed read does not share the machine with it.
    for _ in 0..3000 {
        let work = log.stats().work.snapshot();
        if work.records - work.records_indexed < 8192 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let start = Instant::now();
    let mut next = Position(1);
    let mut count = 0u64;
    loop {
        let records = log.read_all(next, 4096).unwrap();
        let Some(last) = records.last() else { break };
        next = last.position.next();
        for r in &records {
            let v: serde_json::Value = r.data.parse().unwrap();
            std::hint::black_box(v);
            count += 1;
        }
    }
    let rate = count as f64 / start.elapsed().as_secs_f64();
    log.close().await;
    rate
}

/// Raw sled: `events` JSON values, then a full scan + decode. Returns events/s.
fn sled_replay(events: u64) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let db = sled::Config::new().path(dir.path()).mode(sled::Mode::HighThroughput).open().unwrap();
    let mut n = 0;
    while n < events {
        let mut b = sled::Batch::default();
        for _ in 0..1000 {
            n += 1;
            b.insert(&n.to_be_bytes(), payload(n).as_bytes());
        }
        db.apply_batch(b).unwrap();
    }
    db.flush().unwrap();
    let start = Instant::now();
    let mut count = 0u64;
    for entry in db.iter() {
        let (_, v) = entry.unwrap();
        let v: serde_json::Value = serde_json::from_slice(&v).unwrap();
        std::hint::black_box(v);
        count += 1;
    }
    count as f64 / start.elapsed().as_secs_f64()
}

/// The `nats-server` binary, if installed.
fn nats_server_bin() -> Option<std::path::PathBuf> {
    if let Some(path) = std::env::var_os("NATS_SERVER_BIN") {
        return Some(path.into());
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([std::path::PathBuf::from("/usr/sbin"), std::path::PathBuf::from("/usr/bin")])
        .map(|dir| dir.join("nats-server"))
        .find(|p| p.exists())
}

/// Kills the server when dropped.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A real `nats-server -js` on a loopback port, storing in a temp folder:
/// `in_flight` tasks each publish a 300-byte message to a file-storage
/// stream and wait for its ack, for `seconds`. Returns (messages/s, ack
/// latencies).
async fn jetstream_publishers(bin: &std::path::Path, in_flight: usize, seconds: u64) -> (f64, Vec<Duration>) {
    use async_nats::jetstream::{self, stream::StorageType};
    let store = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = std::process::Command::new(bin)
        .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
        .arg(store.path())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let _server = KillOnDrop(child);
    let ready_by = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < ready_by, "nats-server did not listen within 10 s");
        std::thread::sleep(Duration::from_millis(20));
    }
    let client = async_nats::connect(format!("nats://127.0.0.1:{port}")).await.unwrap();
    let js = jetstream::new(client);
    js.get_or_create_stream(jetstream::stream::Config {
        name: "BENCH".into(),
        subjects: vec!["bench.events".into()],
        storage: StorageType::File,
        ..Default::default()
    })
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let start = Instant::now();
    let tasks: Vec<_> = (0..in_flight)
        .map(|_| {
            let js = js.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut n = 0;
                while Instant::now() < deadline {
                    n += 1;
                    let t = Instant::now();
                    let ack = js.publish("bench.events", payload(n).into_bytes().into()).await.unwrap();
                    ack.await.unwrap();
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
    let rate = latencies.len() as f64 / start.elapsed().as_secs_f64();
    (rate, latencies)
}

fn row(name: &str, rate: f64, mut latencies: Vec<Duration>, ratio: Option<(f64, &'static str)>) -> Row {
    latencies.sort();
    let has = !latencies.is_empty();
    Row {
        name: name.to_string(),
        events_per_s: rate,
        p50_us: has.then(|| percentile(&latencies, 0.5)),
        p99_us: has.then(|| percentile(&latencies, 0.99)),
        ratio,
    }
}

fn main() {
    let seconds = env_or("KLAXON_BENCH_SECONDS", 3);
    let replay_events = env_or("KLAXON_BENCH_REPLAY_EVENTS", 1_000_000);
    // `KLAXON_BENCH_ONLY=appenders:1` (or `sled:1`, the sled baseline with
    // batches of 1, or `replay`) runs a single case, for profiling.
    if let Ok(only) = std::env::var("KLAXON_BENCH_ONLY") {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let rate = match only.split_once(':') {
            Some(("appenders", n)) => rt.block_on(log_appenders(n.parse().unwrap(), seconds)).0,
            Some(("sled", n)) => sled_baseline(n.parse().unwrap(), seconds).0,
            _ => rt.block_on(log_replay(replay_events)),
        };
        println!("{only}: {rate:.0} events/s");
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let mut rows = Vec::new();

    eprintln!("sled baselines ({seconds} s each)...");
    let (sled1, lat) = sled_baseline(1, seconds);
    rows.push(row("sled insert + flush + fdatasync, per insert", sled1, lat, None));
    let (sled64, lat) = sled_baseline(64, seconds);
    rows.push(row("sled batch of 64 + flush + fdatasync", sled64, lat, None));

    for appenders in [1, 8, 64] {
        eprintln!("log, {appenders} appenders...");
        let (rate, lat) = rt.block_on(log_appenders(appenders, seconds));
        let ratio = match appenders {
            1 => Some((rate / sled1, "vs sled per insert (target >= 0.9)")),
            64 => Some((rate / sled64, "vs sled batch 64 (target >= 0.7)")),
            _ => Some((rate / sled1, "vs sled per insert")),
        };
        rows.push(row(&format!("log append, {appenders} concurrent appenders"), rate, lat, ratio));
        if appenders == 64 {
            let name = "NATS JetStream publish (file storage, default sync), 64 in flight";
            match nats_server_bin() {
                Some(bin) => {
                    eprintln!("NATS JetStream, 64 in flight...");
                    let (js_rate, lat) = rt.block_on(jetstream_publishers(&bin, 64, seconds));
                    rows.push(row(name, js_rate, lat, Some((rate / js_rate, "log 64 appenders vs JetStream"))));
                }
                None => eprintln!("nats-server is not installed: skipping the row {name:?}"),
            }
        }
    }

    eprintln!("replay of {replay_events} events...");
    let raw = sled_replay(replay_events);
    rows.push(row(&format!("sled scan + JSON decode, {replay_events} events"), raw, vec![], None));
    let replay = rt.block_on(log_replay(replay_events));
    rows.push(row(
        &format!("log read_all + JSON decode, {replay_events} events"),
        replay,
        vec![],
        Some((replay / raw, "vs sled scan (target >= 0.5)")),
    ));

    println!();
    println!("| case | events/s | p50 µs | p99 µs | ratio |");
    println!("| --- | ---: | ---: | ---: | --- |");
    for r in rows {
        let f = |x: Option<f64>| x.map_or("".to_string(), |v| format!("{v:.0}"));
        let ratio = r.ratio.map_or(String::new(), |(x, what)| format!("{x:.2}x {what}"));
        println!("| {} | {:.0} | {} | {} | {} |", r.name, r.events_per_s, f(r.p50_us), f(r.p99_us), ratio);
    }
}
