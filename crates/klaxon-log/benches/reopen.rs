//! Reopening a large log: the id filter from its saved file against a full
//! scan of the id runs, each open in a fresh process.
//!
//! `cargo bench -p klaxon-log --bench reopen` writes a folder of
//! `KLAXON_REOPEN_EVENTS` events (default 1,000,000; 300-byte events in
//! appends of 1,000, cached in the target's tmp folder as
//! `reopen-events-N`; `KLAXON_REOPEN_KEEP=0` deletes it at the end), closes
//! it, then runs `KLAXON_REOPEN_ROUNDS` rounds (default 3) of two opens,
//! alternating: the baseline without the saved id filter (the file removed
//! first: every id run is scanned, as before the file existed) and the
//! open that loads it. Each open is a child process (this binary again)
//! that opens the log, waits until the id filter is complete and the
//! merges at open are done, prints the times, its `VmRSS` and `VmHWM`
//! then, and what the filter read, and closes the log (which saves the
//! file again). The table gives medians and the ratio to the baseline.
//!
//! `KLAXON_REOPEN_CRASH=1` measures the reopen after a crash instead: each
//! of `KLAXON_REOPEN_ROUNDS` rounds runs a session child
//! (`KLAXON_REOPEN_SESSION=<dir>`: opens the log with the `Options` given
//! as JSON in `KLAXON_REOPEN_OPTIONS`, default `{}`, appends
//! `KLAXON_REOPEN_SESSION_EVENTS` events, default 50,000, from 64 tasks
//! one event each, waits until the index thread has written every batch
//! due and its merges and saves are done, prints its append p50 and p99
//! and how many id filter saves it made, and waits), SIGKILLs it, then
//! runs the reopen child above and prints both. `KLAXON_REOPEN_DIR` names
//! an existing folder to use instead of the generated one (it is changed:
//! use a copy).
#![allow(missing_docs)]

use std::path::Path;
use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::Instant;

use klaxon_log::{
    EventData, EventKind, ExpectedVersion, ID_FILTER_FILE_NAME, Log, Metadata, NewEvent, Options, StreamId,
};

const CHILD: &str = "KLAXON_REOPEN_CHILD";
const SESSION: &str = "KLAXON_REOPEN_SESSION";

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    if let Ok(dir) = std::env::var(CHILD) {
        runtime.block_on(child(Path::new(&dir)));
        return;
    }
    if let Ok(dir) = std::env::var(SESSION) {
        runtime.block_on(session(Path::new(&dir)));
        return;
    }
    let events = env_u64("KLAXON_REOPEN_EVENTS", 1_000_000);
    let rounds = env_u64("KLAXON_REOPEN_ROUNDS", 3);
    let dir = match std::env::var("KLAXON_REOPEN_DIR") {
        Ok(dir) => std::path::PathBuf::from(dir),
        Err(_) => Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("reopen-events-{events}")),
    };
    if env_u64("KLAXON_REOPEN_CRASH", 0) == 1 {
        crashes(&dir, rounds);
        return;
    }
    if !dir.join(ID_FILTER_FILE_NAME).exists() {
        let _ = std::fs::remove_dir_all(&dir);
        let started = Instant::now();
        runtime.block_on(generate(&dir, events));
        println!("wrote {events} events in {:.1} s to {}", started.elapsed().as_secs_f64(), dir.display());
    }
    let mut rows: [Vec<Open>; 2] = [Vec::new(), Vec::new()];
    for _ in 0..rounds {
        for (case, without_file) in [(0, true), (1, false)] {
            if without_file {
                std::fs::remove_file(dir.join(ID_FILTER_FILE_NAME)).unwrap();
            }
            let out = Command::new(std::env::current_exe().unwrap()).env(CHILD, &dir).output().unwrap();
            assert!(out.status.success(), "child failed: {}", String::from_utf8_lossy(&out.stderr));
            let line = String::from_utf8(out.stdout).unwrap();
            let open = Open::parse(line.trim());
            assert_eq!(open.loads, u64::from(!without_file), "{line}");
            rows[case].push(open);
        }
    }
    let file_bytes = std::fs::metadata(dir.join(ID_FILTER_FILE_NAME)).map_or(0, |m| m.len());
    println!();
    println!("reopen of {events} events, {rounds} rounds each, medians; id filter file {:.1} MB", mb(file_bytes));
    println!();
    println!("| open | id runs scanned | open() ms | filter complete ms | VmRSS MB | VmHWM MB | RSS ratio |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    let base = median(rows[0].iter().map(|o| o.rss_kb as f64));
    for (name, opens) in [("full scan (no file): baseline", &rows[0]), ("saved id filter loaded", &rows[1])] {
        let rss = median(opens.iter().map(|o| o.rss_kb as f64));
        println!(
            "| {name} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.2} |",
            opens[0].scanned,
            median(opens.iter().map(|o| o.open_ms)),
            median(opens.iter().map(|o| o.complete_ms)),
            rss / 1024.0,
            median(opens.iter().map(|o| o.hwm_kb as f64)) / 1024.0,
            rss / base,
        );
    }
    println!();
    for (name, opens) in [("full scan", &rows[0]), ("file", &rows[1])] {
        let each: Vec<String> =
            opens.iter().map(|o| format!("{:.0} ms / {:.0} MB", o.complete_ms, o.rss_kb as f64 / 1024.0)).collect();
        println!("{name}: {}", each.join(", "));
    }
    if env_u64("KLAXON_REOPEN_KEEP", 1) == 0 {
        let _ = std::fs::remove_dir_all(&dir);
    }
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = values.collect();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// What one child open printed.
struct Open {
    open_ms: f64,
    complete_ms: f64,
    rss_kb: u64,
    hwm_kb: u64,
    loads: u64,
    scanned: u64,
    kept: u64,
}

impl Open {
    fn parse(line: &str) -> Open {
        let f: Vec<&str> = line.split(' ').collect();
        assert_eq!(f.len(), 7, "bad child line {line:?}");
        Open {
            open_ms: f[0].parse().unwrap(),
            complete_ms: f[1].parse().unwrap(),
            rss_kb: f[2].parse().unwrap(),
            hwm_kb: f[3].parse().unwrap(),
            loads: f[4].parse().unwrap(),
            scanned: f[5].parse().unwrap(),
            kept: f[6].parse().unwrap(),
        }
    }
}

async fn child(dir: &Path) {
    let started = Instant::now();
    let log = Log::open(dir, Options::default()).unwrap();
    let open_ms = started.elapsed().as_secs_f64() * 1e3;
    log.settle_id_index();
    let complete_ms = started.elapsed().as_secs_f64() * 1e3;
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    let work = log.stats().work.snapshot();
    println!(
        "{open_ms:.1} {complete_ms:.1} {} {} {} {} {}",
        field("VmRSS:"),
        field("VmHWM:"),
        work.id_filter_loads,
        work.id_runs_scanned_at_open,
        work.id_runs_loaded_at_open
    );
    log.close().await;
}

/// Rounds of a session killed after its appends, then a reopen (see the
/// module docs).
fn crashes(dir: &Path, rounds: u64) {
    println!(
        "| round | session p50 us | session p99 us | saves | reopen: runs kept | runs scanned | filter complete ms | VmRSS MB |"
    );
    println!("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for round in 1..=rounds {
        let mut session = Command::new(std::env::current_exe().unwrap())
            .env(SESSION, dir)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(session.stdout.take().unwrap()), &mut line).unwrap();
        session.kill().unwrap();
        session.wait().unwrap();
        let f: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(f.len(), 3, "bad session line {line:?}");
        let out = Command::new(std::env::current_exe().unwrap()).env(CHILD, dir).output().unwrap();
        assert!(out.status.success(), "child failed: {}", String::from_utf8_lossy(&out.stderr));
        let open = Open::parse(String::from_utf8(out.stdout).unwrap().trim());
        println!(
            "| {round} | {} | {} | {} | {} | {} | {:.1} | {:.1} |",
            f[0],
            f[1],
            f[2],
            open.kept,
            open.scanned,
            open.complete_ms,
            open.rss_kb as f64 / 1024.0
        );
    }
}

/// The session child: appends from 64 tasks, waits until the index
/// thread is done with them, prints "p50_us p99_us saves" and waits for
/// the kill.
async fn session(dir: &Path) {
    let options: Options =
        serde_json::from_str(&std::env::var("KLAXON_REOPEN_OPTIONS").unwrap_or_else(|_| "{}".into())).unwrap();
    let events = env_u64("KLAXON_REOPEN_SESSION_EVENTS", 50_000);
    let log = Log::open(dir, options).unwrap();
    log.settle_id_index();
    let left = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(events));
    let tasks: Vec<_> = (0..64)
        .map(|t| {
            let (log, left) = (log.clone(), left.clone());
            tokio::spawn(async move {
                let stream = StreamId::new(format!("session-{t}")).unwrap();
                let mut took = Vec::new();
                while left.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1)).is_ok() {
                    let event = NewEvent {
                        id: uuid::Uuid::new_v4(),
                        kind: EventKind::new("incident.status_update_posted.v1").unwrap(),
                        data: EventData::from_value(&serde_json::json!({ "text": "x".repeat(240) })).unwrap(),
                        metadata: Metadata { actor: Some("alice".into()), ..Metadata::default() },
                    };
                    let started = Instant::now();
                    log.append(&stream, ExpectedVersion::Any, vec![event]).await.unwrap();
                    took.push(started.elapsed());
                }
                took
            })
        })
        .collect();
    let mut took = Vec::new();
    for task in tasks {
        took.extend(task.await.unwrap());
    }
    took.sort();
    // Every batch due written, then the merges and a save behind it.
    let mut last = log.stats().work.snapshot();
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        let work = log.stats().work.snapshot();
        if work.records - work.records_indexed < 8192 && work == last {
            break;
        }
        last = work;
    }
    let at = |p: f64| took[((took.len() - 1) as f64 * p) as usize].as_micros();
    println!("{} {} {}", at(0.5), at(0.99), last.id_filter_saves);
    std::future::pending::<()>().await;
}

async fn generate(dir: &Path, events: u64) {
    let log = Log::open(dir, Options::default()).unwrap();
    let stream = StreamId::new("reopen").unwrap();
    let mut n = 0;
    while n < events {
        let batch: Vec<NewEvent> = (n..events.min(n + 1000))
            .map(|i| NewEvent {
                id: uuid::Uuid::new_v4(),
                kind: EventKind::new("incident.status_update_posted.v1").unwrap(),
                data: EventData::from_value(&serde_json::json!({ "n": i, "text": "x".repeat(240) })).unwrap(),
                metadata: Metadata { actor: Some("alice".into()), ..Metadata::default() },
            })
            .collect();
        n += batch.len() as u64;
        log.append(&stream, ExpectedVersion::Any, batch).await.unwrap();
    }
    log.close().await;
    drop(log);
    // A second session settles the merges the first left (as a restarted
    // server's would) and saves the file again.
    let log = Log::open(dir, Options::default()).unwrap();
    log.settle_id_index();
    log.close().await;
}
