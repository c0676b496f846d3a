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
#![allow(missing_docs)]

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use klaxon_log::{
    EventData, EventKind, ExpectedVersion, ID_FILTER_FILE_NAME, Log, Metadata, NewEvent, Options, StreamId,
};

const CHILD: &str = "KLAXON_REOPEN_CHILD";

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    if let Ok(dir) = std::env::var(CHILD) {
        runtime.block_on(child(Path::new(&dir)));
        return;
    }
    let events = env_u64("KLAXON_REOPEN_EVENTS", 1_000_000);
    let rounds = env_u64("KLAXON_REOPEN_ROUNDS", 3);
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("reopen-events-{events}"));
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
}

impl Open {
    fn parse(line: &str) -> Open {
        let f: Vec<&str> = line.split(' ').collect();
        assert_eq!(f.len(), 6, "bad child line {line:?}");
        Open {
            open_ms: f[0].parse().unwrap(),
            complete_ms: f[1].parse().unwrap(),
            rss_kb: f[2].parse().unwrap(),
            hwm_kb: f[3].parse().unwrap(),
            loads: f[4].parse().unwrap(),
            scanned: f[5].parse().unwrap(),
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
        "{open_ms:.1} {complete_ms:.1} {} {} {} {}",
        field("VmRSS:"),
        field("VmHWM:"),
        work.id_filter_loads,
        work.id_runs_scanned_at_open
    );
    log.close().await;
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
