//! The event log against raw sled, in one run, on the same 300-byte events.
//!
//! `cargo bench -p klaxon-log` prints a table: events/s and latency for the
//! log with 1, 8 and 64 concurrent appenders beside raw sled insert + flush +
//! fdatasync (per insert and per batch of 64) and NATS JetStream (a real
//! `nats-server -js` started here, file storage with its default sync,
//! 64 publishes in flight), and replay (`read_all` + JSON decode) beside a
//! raw sled scan + JSON decode, with the ratios. Then the two append
//! targets again, *interleaved*: the log (1 appender; 64 appenders) and raw
//! sled (per insert; batches of 64), each open on its own warm folder, run
//! in alternating short slices, and the table gives the median and range of
//! the per-pair ratios (disk latency drifts over minutes, so cases run
//! seconds apart compare the drift as much as the code). The JetStream row is
//! skipped with a note when `nats-server` is not installed (found like
//! `tests/src/nats.rs` finds it: `NATS_SERVER_BIN`, `PATH`, `/usr/sbin`,
//! `/usr/bin`). Sizes:
//! `KLAXON_BENCH_REPLAY_EVENTS` (default 1,000,000), `KLAXON_BENCH_SECONDS`
//! (time per append case, default 3), `KLAXON_BENCH_PAIRS` (interleaved
//! pairs, default 2 per second of `KLAXON_BENCH_SECONDS`) and
//! `KLAXON_BENCH_SLICE_MS` (each side's slice in a pair, default 500).
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
    ratio: Option<String>,
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
    let mut side = SledSide::open(batch);
    let slice = side.run(Duration::from_secs(seconds));
    print_cpu(&format!("sled, batches of {batch}"), "commit", slice.ops, &slice.cpu);
    (slice.rate(), slice.latencies)
}

/// CPU time by thread: on-CPU ns, ns waiting for a CPU on the run queue,
/// and times scheduled onto a CPU (each wake-up of a sleeping thread is
/// one, and so is each return after a preemption).
#[derive(Clone, Copy, Default)]
struct ThreadTime {
    run_ns: i64,
    wait_ns: i64,
    slices: i64,
}

type Cpu = std::collections::BTreeMap<String, ThreadTime>;

/// CPU time by thread name between two readings of [`thread_cpu`]
/// (threads are told apart by id, then summed by name; a thread that ended
/// in between loses its share).
fn cpu_delta(before: &ThreadCpu, after: &ThreadCpu) -> Cpu {
    let mut out = Cpu::new();
    for (tid, (name, now)) in after {
        let then = before.get(tid).map_or(ThreadTime::default(), |(_, t)| *t);
        let entry = out.entry(name.clone()).or_default();
        entry.run_ns += now.run_ns - then.run_ns;
        entry.wait_ns += now.wait_ns - then.wait_ns;
        entry.slices += now.slices - then.slices;
    }
    out
}

/// Adds `more` into `total`.
fn cpu_add(total: &mut Cpu, more: &Cpu) {
    for (name, t) in more {
        let entry = total.entry(name.clone()).or_default();
        entry.run_ns += t.run_ns;
        entry.wait_ns += t.wait_ns;
        entry.slices += t.slices;
    }
}

/// Prints CPU µs per `unit` (over `n` of them) in all and by thread, the
/// times threads were scheduled onto a CPU per `unit` (thread wake-ups:
/// hand-offs between threads; preemptions add to it on a loaded machine),
/// and the time they waited for a CPU (a sign of the machine's load, not
/// of the work).
fn print_cpu(name: &str, unit: &str, n: u64, cpu: &Cpu) {
    let n = n.max(1) as f64;
    let us = |ns: i64| ns as f64 / 1000.0 / n;
    let per = |x: i64| x as f64 / n;
    let total: i64 = cpu.values().map(|t| t.run_ns).sum();
    let waited: i64 = cpu.values().map(|t| t.wait_ns).sum();
    let slices: i64 = cpu.values().map(|t| t.slices).sum();
    let by_thread = |f: &dyn Fn(&ThreadTime) -> f64| -> String {
        let parts: Vec<String> =
            cpu.iter().filter(|(_, t)| f(t) >= 0.05).map(|(thread, t)| format!("{thread} {:.1}", f(t))).collect();
        parts.join(", ")
    };
    eprintln!("{name}: CPU µs per {unit} {:.1} ({})", us(total), by_thread(&|t| us(t.run_ns)));
    eprintln!(
        "{name}: scheduled onto a CPU {:.2} times per {unit} ({}); waiting for a CPU {:.1} µs per {unit}",
        per(slices),
        by_thread(&|t| per(t.slices)),
        us(waited)
    );
}

/// This process's threads by id: name, on-CPU ns, run-queue wait ns and
/// times scheduled, from `/proc/self/task/*/schedstat` (Linux only, empty
/// elsewhere). CPU time per append depends far less on the machine's load
/// than wall-clock rates do.
type ThreadCpu = std::collections::BTreeMap<u64, (String, ThreadTime)>;

fn thread_cpu() -> ThreadCpu {
    let mut out = ThreadCpu::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return out };
    for task in tasks.flatten() {
        let Some(tid) = task.file_name().to_str().and_then(|t| t.parse::<u64>().ok()) else { continue };
        let Ok(comm) = std::fs::read_to_string(task.path().join("comm")) else { continue };
        let Ok(sched) = std::fs::read_to_string(task.path().join("schedstat")) else { continue };
        let mut fields = sched.split_whitespace().map(|f| f.parse::<i64>().unwrap_or(0));
        let mut next = || fields.next().unwrap_or(0);
        let time = ThreadTime { run_ns: next(), wait_ns: next(), slices: next() };
        out.insert(tid, (comm.trim_end().to_string(), time));
    }
    out
}

/// Work per append, as the log counts it, and CPU time per append by thread
/// (from the process's threads' CPU time before and after the case).
#[derive(Default)]
struct Work {
    appends: u64,
    counts: klaxon_log::WorkSnapshot,
    cpu: Cpu,
}

impl Work {
    fn add(&mut self, slice: &Slice) {
        self.appends += slice.ops;
        self.counts = self.counts.plus(&slice.work);
        cpu_add(&mut self.cpu, &slice.cpu);
    }

    fn print(&self, name: &str) {
        let n = self.appends.max(1) as f64;
        let c = &self.counts;
        let per = |x: u64| x as f64 / n;
        eprintln!(
            "{name}: {} appends; per append: {:.3} sled keys in groups, {:.3} sled keys written behind, \
             {:.4} groups, {:.4} syncs ({:.1} appends per sync), {:.3} id-index reads, {:.3} stream-index reads; \
             {} index batches, {} of the syncs by the writer, {} by the appender; \
             {} blob files synced, {} listings of the blob folder",
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
            c.blob_files_synced,
            c.blob_listings,
        );
        print_cpu(name, "append", self.appends, &self.cpu);
    }
}

/// What one timed stretch of a case did.
struct Slice {
    /// Events written (sled) or appended (the log), each durable.
    ops: u64,
    elapsed: Duration,
    /// Per commit (sled) or per append (the log).
    latencies: Vec<Duration>,
    cpu: Cpu,
    /// The log's work counters over the slice (zero for sled).
    work: klaxon_log::WorkSnapshot,
}

impl Slice {
    fn rate(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64()
    }
}

/// Raw sled in its own temp folder, kept open between slices: batches of
/// `batch` inserts, each followed by `flush()` and `fdatasync` of the db
/// file (the durability the log pays for every round).
struct SledSide {
    _dir: tempfile::TempDir,
    db: sled::Db,
    file: File,
    batch: usize,
    n: u64,
}

impl SledSide {
    fn open(batch: usize) -> SledSide {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().path(dir.path()).mode(sled::Mode::HighThroughput).open().unwrap();
        let file = File::open(dir.path().join("db")).unwrap();
        SledSide { _dir: dir, db, file, batch, n: 0 }
    }

    fn run(&mut self, time: Duration) -> Slice {
        let cpu_before = thread_cpu();
        let mut latencies = Vec::new();
        let first = self.n;
        let start = Instant::now();
        while start.elapsed() < time {
            let t = Instant::now();
            let mut b = sled::Batch::default();
            for _ in 0..self.batch {
                self.n += 1;
                b.insert(&self.n.to_be_bytes(), payload(self.n).as_bytes());
            }
            self.db.apply_batch(b).unwrap();
            self.db.flush().unwrap();
            self.file.sync_data().unwrap();
            latencies.push(t.elapsed());
        }
        let elapsed = start.elapsed();
        let cpu = cpu_delta(&cpu_before, &thread_cpu());
        Slice { ops: self.n - first, elapsed, latencies, cpu, work: Default::default() }
    }
}

/// The log in its own temp folder, kept open between slices: `appenders`
/// concurrent tasks, each appending one event at a time to its own stream.
struct LogSide {
    _dir: tempfile::TempDir,
    log: Log,
    appenders: usize,
}

impl LogSide {
    fn open(appenders: usize) -> LogSide {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::open(dir.path(), Options::default()).unwrap();
        LogSide { _dir: dir, log, appenders }
    }

    /// Appends for `time`; the slice's time is from the first task's first
    /// append to the last one's answer (not the spawning of the tasks and
    /// the wake-up of tokio's workers, which the sled side does not pay).
    async fn run(&self, time: Duration) -> Slice {
        let work_before = self.log.stats().work.snapshot();
        let cpu_before = thread_cpu();
        let deadline = Instant::now() + time;
        let tasks: Vec<_> = (0..self.appenders)
            .map(|a| {
                let log = self.log.clone();
                tokio::spawn(async move {
                    let stream = StreamId::new(format!("incident-INC-{a}")).unwrap();
                    let mut latencies = Vec::new();
                    let mut n = 0;
                    let began = Instant::now();
                    while Instant::now() < deadline {
                        n += 1;
                        let t = Instant::now();
                        log.append(&stream, ExpectedVersion::Any, vec![new_event(n)]).await.unwrap();
                        latencies.push(t.elapsed());
                    }
                    (latencies, began, Instant::now())
                })
            })
            .collect();
        let mut latencies = Vec::new();
        let mut span: Option<(Instant, Instant)> = None;
        for t in tasks {
            let (l, began, ended) = t.await.unwrap();
            latencies.extend(l);
            span = Some(span.map_or((began, ended), |(b, e)| (b.min(began), e.max(ended))));
        }
        let elapsed = span.map_or(Duration::ZERO, |(began, ended)| ended - began).max(Duration::from_nanos(1));
        let cpu = cpu_delta(&cpu_before, &thread_cpu());
        let work = self.log.stats().work.snapshot().since(&work_before);
        Slice { ops: latencies.len() as u64, elapsed, latencies, cpu, work }
    }

    async fn close(self) {
        self.log.close().await;
    }
}

/// The log with `appenders` concurrent tasks, each appending one event at a
/// time to its own stream for `seconds`.
async fn log_appenders(appenders: usize, seconds: u64) -> (f64, Vec<Duration>) {
    let side = LogSide::open(appenders);
    let slice = side.run(Duration::from_secs(seconds)).await;
    side.close().await;
    let mut work = Work::default();
    work.add(&slice);
    work.print(&format!("log, {appenders} appenders"));
    (slice.rate(), slice.latencies)
}

/// An interleaved comparison: the log with `appenders` against raw sled
/// with batches of `batch`, each kept open on its own warm folder, run in
/// alternating slices of `slice` (`pairs` of them each, after one untimed
/// warm-up slice each; the side that goes first alternates from pair to
/// pair). Disk and VM latency drift over minutes, so two cases run seconds
/// apart measure the drift as much as the code: the ratio of each pair,
/// taken over a second, moves far less.
struct Interleaved {
    sled: Vec<Slice>,
    log: Vec<Slice>,
}

impl Interleaved {
    fn run(rt: &tokio::runtime::Runtime, appenders: usize, batch: usize, pairs: u64, slice: Duration) -> Interleaved {
        let mut sled = SledSide::open(batch);
        let log = LogSide::open(appenders);
        sled.run(slice);
        rt.block_on(log.run(slice));
        let (mut sled_slices, mut log_slices) = (Vec::new(), Vec::new());
        for pair in 0..pairs {
            if pair % 2 == 0 {
                sled_slices.push(sled.run(slice));
                log_slices.push(rt.block_on(log.run(slice)));
            } else {
                log_slices.push(rt.block_on(log.run(slice)));
                sled_slices.push(sled.run(slice));
            }
        }
        rt.block_on(log.close());
        Interleaved { sled: sled_slices, log: log_slices }
    }

    /// The per-pair ratios (log / sled), sorted.
    fn ratios(&self) -> Vec<f64> {
        let mut r: Vec<f64> = self.sled.iter().zip(&self.log).map(|(s, l)| l.rate() / s.rate()).collect();
        r.sort_by(f64::total_cmp);
        r
    }

    /// Events/s over all slices of one side, and all its latencies.
    fn pooled(slices: &[Slice]) -> (f64, Vec<Duration>) {
        let ops: u64 = slices.iter().map(|s| s.ops).sum();
        let time: f64 = slices.iter().map(|s| s.elapsed.as_secs_f64()).sum();
        (ops as f64 / time.max(f64::MIN_POSITIVE), slices.iter().flat_map(|s| s.latencies.iter().copied()).collect())
    }

    /// Prints the pairs and the work per operation of each side.
    fn print(&self, name: &str) {
        let pairs: Vec<String> = self
            .sled
            .iter()
            .zip(&self.log)
            .map(|(s, l)| format!("{:.0}/{:.0}={:.2}", l.rate(), s.rate(), l.rate() / s.rate()))
            .collect();
        eprintln!("{name}: pairs (log/sled events/s = ratio): {}", pairs.join(", "));
        let mut sled_cpu = Cpu::new();
        for s in &self.sled {
            cpu_add(&mut sled_cpu, &s.cpu);
        }
        let sled_commits: u64 = self.sled.iter().map(|s| s.latencies.len() as u64).sum();
        print_cpu(&format!("{name}, sled side"), "commit", sled_commits, &sled_cpu);
        let mut work = Work::default();
        for l in &self.log {
            work.add(l);
        }
        work.print(&format!("{name}, log side"));
    }
}

/// Median and range of sorted ratios, for the table.
fn ratio_summary(sorted: &[f64], what: &str) -> String {
    if sorted.is_empty() {
        return String::new();
    }
    let median = if sorted.len() % 2 == 1 {
        sorted[sorted.len() / 2]
    } else {
        (sorted[sorted.len() / 2 - 1] + sorted[sorted.len() / 2]) / 2.0
    };
    format!(
        "median {median:.2}x (min {:.2}x, max {:.2}x) of {} interleaved pairs {what}",
        sorted[0],
        sorted[sorted.len() - 1],
        sorted.len()
    )
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

/// A ratio for the table: `x` times, and against what.
fn times(x: f64, what: &str) -> Option<String> {
    Some(format!("{x:.2}x {what}"))
}

fn row(name: &str, rate: f64, mut latencies: Vec<Duration>, ratio: Option<String>) -> Row {
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
    // Interleaved comparisons: `KLAXON_BENCH_PAIRS` pairs (default two per
    // second of `KLAXON_BENCH_SECONDS`, so each side runs about as long as
    // a case) of `KLAXON_BENCH_SLICE_MS` slices (default 500).
    let pairs = env_or("KLAXON_BENCH_PAIRS", 2 * seconds).max(1);
    let slice = Duration::from_millis(env_or("KLAXON_BENCH_SLICE_MS", 500).max(1));
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    // `KLAXON_BENCH_ONLY=appenders:1` (or `sled:1`, the sled baseline with
    // batches of 1; `interleaved:1` or `interleaved:64`, the interleaved
    // comparison of 1 appender with sled per insert or of 64 with sled
    // batch-64; or `replay`) runs a single case, for profiling.
    if let Ok(only) = std::env::var("KLAXON_BENCH_ONLY") {
        let rate = match only.split_once(':') {
            Some(("appenders", n)) => rt.block_on(log_appenders(n.parse().unwrap(), seconds)).0,
            Some(("sled", n)) => sled_baseline(n.parse().unwrap(), seconds).0,
            Some(("interleaved", n)) => {
                let appenders: usize = n.parse().unwrap();
                let run = Interleaved::run(&rt, appenders, appenders, pairs, slice);
                run.print(&format!("interleaved, {appenders} appenders"));
                println!("{}", ratio_summary(&run.ratios(), &format!("vs sled batches of {appenders}")));
                Interleaved::pooled(&run.log).0
            }
            _ => rt.block_on(log_replay(replay_events)),
        };
        println!("{only}: {rate:.0} events/s");
        return;
    }
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
            1 => times(rate / sled1, "vs sled per insert (target >= 0.9)"),
            64 => times(rate / sled64, "vs sled batch 64 (target >= 0.7)"),
            _ => times(rate / sled1, "vs sled per insert"),
        };
        rows.push(row(&format!("log append, {appenders} concurrent appenders"), rate, lat, ratio));
        if appenders == 64 {
            let name = "NATS JetStream publish (file storage, default sync), 64 in flight";
            match nats_server_bin() {
                Some(bin) => {
                    eprintln!("NATS JetStream, 64 in flight...");
                    let (js_rate, lat) = rt.block_on(jetstream_publishers(&bin, 64, seconds));
                    rows.push(row(name, js_rate, lat, times(rate / js_rate, "log 64 appenders vs JetStream")));
                }
                None => eprintln!("nats-server is not installed: skipping the row {name:?}"),
            }
        }
    }

    for (appenders, batch, baseline, target) in [
        (1, 1, "sled insert + flush + fdatasync, per insert", "vs sled per insert (target >= 0.9)"),
        (64, 64, "sled batch of 64 + flush + fdatasync", "vs sled batch 64 (target >= 0.7)"),
    ] {
        let ms = slice.as_millis();
        eprintln!("interleaved: log, {appenders} appenders, and sled, batches of {batch} ({pairs} x {ms} ms each)...");
        let run = Interleaved::run(&rt, appenders, batch, pairs, slice);
        run.print(&format!("interleaved, {appenders} appenders"));
        let (sled_rate, lat) = Interleaved::pooled(&run.sled);
        rows.push(row(&format!("interleaved: {baseline} ({pairs} x {ms} ms)"), sled_rate, lat, None));
        let (log_rate, lat) = Interleaved::pooled(&run.log);
        let name = format!("interleaved: log append, {appenders} concurrent appenders ({pairs} x {ms} ms)");
        rows.push(row(&name, log_rate, lat, Some(ratio_summary(&run.ratios(), target))));
    }

    eprintln!("replay of {replay_events} events...");
    let raw = sled_replay(replay_events);
    rows.push(row(&format!("sled scan + JSON decode, {replay_events} events"), raw, vec![], None));
    let replay = rt.block_on(log_replay(replay_events));
    rows.push(row(
        &format!("log read_all + JSON decode, {replay_events} events"),
        replay,
        vec![],
        times(replay / raw, "vs sled scan (target >= 0.5)"),
    ));

    println!();
    println!("| case | events/s | p50 µs | p99 µs | ratio |");
    println!("| --- | ---: | ---: | ---: | --- |");
    for r in rows {
        let f = |x: Option<f64>| x.map_or("".to_string(), |v| format!("{v:.0}"));
        let ratio = r.ratio.unwrap_or_default();
        println!("| {} | {:.0} | {} | {} | {} |", r.name, r.events_per_s, f(r.p50_us), f(r.p99_us), ratio);
    }
}
