//! `klaxon-logtool`: inspect a Klaxon log folder, and drive it in tests.
//!
//! ```text
//! klaxon-logtool verify DIR              check every invariant; print a JSON report
//! klaxon-logtool dump DIR [FROM [MAX]]   print records as JSON lines
//! klaxon-logtool append-loop DIR WRITERS [SAVE_MS EVENTS]
//!                                        append forever from WRITERS tasks (EVENTS events
//!                                        per append, default 1), printing "ack <position>
//!                                        <stream> <version> <id>" per event once durable
//!                                        (crash tests kill it); SAVE_MS: the id filter's
//!                                        save interval during the session
//! klaxon-logtool apply-loop DIR          apply batches of appends forever, each with a mark
//!                                        "<batch> <head after it>", printing "applied <batch>"
//!                                        once durable (the crash tests check mark = head)
//! klaxon-logtool reopen-loop DIR         open, append 1 to 8 events, close, forever, printing
//!                                        "ack ..." lines like append-loop: each close adds an
//!                                        id run and each open merges runs (crash tests kill it)
//! klaxon-logtool append-then-wait DIR N  append N events (one append each), printing "ack ..."
//!                                        lines, then "waiting", and wait without closing
//!                                        (crash tests kill it at a known point)
//! klaxon-logtool append-phases DIR SAVE_MS N...
//!                                        open with the id filter saved at most every SAVE_MS
//!                                        during the session; per phase append N events (in
//!                                        appends of up to 1,000), printing "ack ..." per event,
//!                                        wait until the index thread has indexed and saved,
//!                                        print `saved <phase>` and wait for a line on stdin;
//!                                        after the last phase print "waiting" and wait
//!                                        without closing (crash tests kill it)
//! ```
//! Exit codes: 0 success, 1 the log is damaged or an operation failed, 2 usage.

use std::io::Write;
use std::process::ExitCode;

use klaxon_log::{EventData, EventKind, ExpectedVersion, Log, Metadata, NewEvent, Options, Position, StreamId};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build();
    let runtime = match runtime {
        Ok(r) => r,
        Err(e) => {
            eprintln!("klaxon-logtool: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    if let ["verify" | "dump", dir, ..] = args.as_slice()
        && let Some(why) = no_log_in(dir)
    {
        eprintln!("klaxon-logtool: {dir}: {why}; nothing was created");
        return ExitCode::from(1);
    }
    let result = match args.as_slice() {
        ["-h" | "--help" | "help"] => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        ["verify", dir] => runtime.block_on(verify(dir)),
        ["dump", dir, rest @ ..] if rest.len() <= 2 => {
            let from = rest.first().and_then(|s| s.parse().ok()).unwrap_or(1);
            let max = rest.get(1).and_then(|s| s.parse().ok()).unwrap_or(usize::MAX);
            runtime.block_on(dump(dir, Position(from), max))
        }
        ["append-loop", dir, writers] => match writers.parse::<usize>() {
            Ok(n) if n > 0 => runtime.block_on(append_loop(dir, n, Options::default(), 1)),
            _ => usage(),
        },
        ["append-loop", dir, writers, save_ms, events] => {
            match (writers.parse::<usize>(), save_ms.parse::<u64>(), events.parse::<u64>()) {
                (Ok(n), Ok(save_ms), Ok(events)) if n > 0 && events > 0 => {
                    let options = Options { id_filter_save_interval_ms: save_ms, ..Options::default() };
                    runtime.block_on(append_loop(dir, n, options, events))
                }
                _ => usage(),
            }
        }
        ["reopen-loop", dir] => runtime.block_on(reopen_loop(dir)),
        ["append-then-wait", dir, count] => match count.parse::<u64>() {
            Ok(n) => runtime.block_on(append_then_wait(dir, n)),
            _ => usage(),
        },
        ["apply-loop", dir] => runtime.block_on(apply_loop(dir)),
        ["append-phases", dir, save_ms, phases @ ..] if !phases.is_empty() => {
            match (save_ms.parse::<u64>(), phases.iter().map(|p| p.parse::<u64>()).collect::<Result<Vec<_>, _>>()) {
                (Ok(save_ms), Ok(phases)) => runtime.block_on(append_phases(dir, save_ms, &phases)),
                _ => usage(),
            }
        }
        _ => usage(),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("klaxon-logtool: {e}");
            ExitCode::from(1)
        }
    }
}

const USAGE: &str = "usage: klaxon-logtool verify DIR | dump DIR [FROM [MAX]] | append-loop DIR WRITERS [SAVE_MS EVENTS] | apply-loop DIR | reopen-loop DIR | append-then-wait DIR N | append-phases DIR SAVE_MS N...";

fn usage() -> Result<ExitCode, klaxon_log::Error> {
    eprintln!("{USAGE}");
    Ok(ExitCode::from(2))
}

/// Why `dir` holds no log to read, if it holds none: `Log::open` would
/// make a new, empty one there, so a mistyped path would "verify" as an
/// empty log.
fn no_log_in(dir: &str) -> Option<&'static str> {
    let path = std::path::Path::new(dir);
    if !path.exists() {
        Some("no such folder")
    } else if !path.is_dir() {
        Some("not a folder")
    } else if !Log::exists_in(path) {
        Some("no event log in it")
    } else {
        None
    }
}

async fn verify(dir: &str) -> Result<ExitCode, klaxon_log::Error> {
    let log = Log::open(dir, Options::default())?;
    let report = log.verify()?;
    println!("{}", serde_json::to_string(&report).expect("report serializes"));
    log.close().await;
    Ok(ExitCode::SUCCESS)
}

async fn dump(dir: &str, from: Position, max: usize) -> Result<ExitCode, klaxon_log::Error> {
    let log = Log::open(dir, Options::default())?;
    let mut next = from;
    let mut left = max;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    while left > 0 {
        let records = log.read_all(next, left.min(1024))?;
        let Some(last) = records.last() else { break };
        next = last.position.next();
        left -= records.len();
        for r in &records {
            let _ = writeln!(out, "{}", serde_json::to_string(r).expect("records serialize"));
        }
    }
    log.close().await;
    Ok(ExitCode::SUCCESS)
}

/// Appends 300-byte-ish events to a few streams from `writers` tasks until
/// killed, `events` per append. Each writer owns its streams and uses exact
/// expected versions, so a lost or doubled append would show up as a
/// conflict or a gap.
async fn append_loop(dir: &str, writers: usize, options: Options, events: u64) -> Result<ExitCode, klaxon_log::Error> {
    let log = Log::open(dir, options)?;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<String>(1024);
    for w in 0..writers {
        let log = log.clone();
        let tx = tx.clone();
        tokio::spawn(async move {
            let stream = StreamId::new(format!("crash-{w}-{}", std::process::id())).expect("valid stream id");
            let mut version = log.stream_version(&stream).expect("stream version");
            loop {
                let batch: Vec<NewEvent> = (1..=events)
                    .map(|e| NewEvent {
                        id: uuid::Uuid::new_v4(),
                        kind: EventKind::new("test.appended.v1").expect("valid kind"),
                        data: EventData::from_value(&serde_json::json!({
                            "writer": w, "version": version.0 + e, "padding": "x".repeat(220)
                        }))
                        .expect("valid json"),
                        metadata: Metadata { actor: Some(format!("writer-{w}")), ..Metadata::default() },
                    })
                    .collect();
                let ids: Vec<uuid::Uuid> = batch.iter().map(|e| e.id).collect();
                match log.append(&stream, ExpectedVersion::Exact(version), batch).await {
                    Ok(a) => {
                        for (i, id) in ids.iter().enumerate() {
                            let line =
                                format!("ack {} {} {} {}", a.first.0 + i as u64, stream, version.0 + i as u64 + 1, id);
                            if tx.send(line).await.is_err() {
                                return;
                            }
                        }
                        version = klaxon_log::StreamVersion(a.next_version.0 - 1);
                    }
                    Err(e) => {
                        eprintln!("append failed: {e}");
                        std::process::exit(1);
                    }
                }
            }
        });
    }
    drop(tx);
    let stdout = std::io::stdout();
    while let Some(line) = rx.recv().await {
        let mut out = stdout.lock();
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }
    Ok(ExitCode::SUCCESS)
}

/// Opens the log, appends 1 to 8 events (one append each, from a task, so
/// lone appends take the appender's own path) to one stream with exact
/// expected versions, closes it, and again, until killed. Every close
/// writes the ids appended since open as an id run, and every open merges
/// runs behind the writer: killed at random moments, the child is often
/// caught in the middle of a merge.
async fn reopen_loop(dir: &str) -> Result<ExitCode, klaxon_log::Error> {
    let stream = StreamId::new(format!("reopen-{}", std::process::id())).expect("valid stream id");
    let mut cycle = 0u64;
    loop {
        cycle += 1;
        let log = Log::open(dir, Options::default())?;
        let task = {
            let (log, stream) = (log.clone(), stream.clone());
            tokio::spawn(async move {
                let mut version = log.stream_version(&stream)?;
                for _ in 0..cycle % 8 + 1 {
                    let id = uuid::Uuid::new_v4();
                    let event = NewEvent {
                        id,
                        kind: EventKind::new("test.appended.v1").expect("valid kind"),
                        data: EventData::from_value(&serde_json::json!({ "version": version.0 + 1 }))
                            .expect("valid json"),
                        metadata: Metadata::default(),
                    };
                    let a = log.append(&stream, ExpectedVersion::Exact(version), vec![event]).await?;
                    version = klaxon_log::StreamVersion(a.next_version.0 - 1);
                    let mut out = std::io::stdout().lock();
                    let _ = writeln!(out, "ack {} {} {} {}", a.first, stream, version, id);
                    let _ = out.flush();
                }
                Ok::<_, klaxon_log::Error>(())
            })
        };
        task.await.expect("the append task")?;
        log.close().await;
    }
}

/// Opens the log, appends `count` events to one stream (one append each),
/// printing an "ack ..." line after each, then "waiting", and waits for
/// the kill without closing: a crash at a known point (every append
/// durable, nothing written at close).
async fn append_then_wait(dir: &str, count: u64) -> Result<ExitCode, klaxon_log::Error> {
    let log = Log::open(dir, Options::default())?;
    let stream = StreamId::new(format!("wait-{}", std::process::id())).expect("valid stream id");
    let mut out = std::io::stdout().lock();
    for n in 0..count {
        let id = uuid::Uuid::new_v4();
        let event = NewEvent {
            id,
            kind: EventKind::new("test.appended.v1").expect("valid kind"),
            data: EventData::from_value(&serde_json::json!({ "version": n + 1 })).expect("valid json"),
            metadata: Metadata::default(),
        };
        let a = log.append(&stream, ExpectedVersion::Exact(klaxon_log::StreamVersion(n)), vec![event]).await?;
        let _ = writeln!(out, "ack {} {} {} {}", a.first, stream, n + 1, id);
    }
    drop(out);
    wait_for_the_kill(log).await
}

/// Opens the log with the id filter saved during the session at most
/// every `save_ms`, then for each phase appends that many events to one
/// stream (appends of up to 1,000, exact expected versions), printing an
/// "ack ..." line per event. After each append it waits until the index
/// thread has written every batch due and saved the id filter behind each
/// (so an index batch holds exactly the appends since the last, 9,000
/// records in appends of 1,000); after a phase it prints `saved <phase>`
/// and reads a line from stdin before the next. After the last phase it prints "waiting" and
/// waits for the kill without closing.
async fn append_phases(dir: &str, save_ms: u64, phases: &[u64]) -> Result<ExitCode, klaxon_log::Error> {
    let log = Log::open(dir, Options { id_filter_save_interval_ms: save_ms, ..Options::default() })?;
    log.settle_id_index();
    let stream = StreamId::new(format!("phases-{}", std::process::id())).expect("valid stream id");
    let mut version = 0u64;
    let stdout = std::io::stdout();
    for (phase, count) in phases.iter().enumerate() {
        let mut left = *count;
        while left > 0 {
            let n = left.min(1000);
            let events: Vec<NewEvent> = (0..n)
                .map(|i| NewEvent {
                    id: uuid::Uuid::new_v4(),
                    kind: EventKind::new("test.appended.v1").expect("valid kind"),
                    data: EventData::from_value(&serde_json::json!({ "version": version + i + 1 }))
                        .expect("valid json"),
                    metadata: Metadata::default(),
                })
                .collect();
            let ids: Vec<uuid::Uuid> = events.iter().map(|e| e.id).collect();
            let a = log.append(&stream, ExpectedVersion::Exact(klaxon_log::StreamVersion(version)), events).await?;
            let mut out = stdout.lock();
            for (i, id) in ids.iter().enumerate() {
                let _ = writeln!(out, "ack {} {} {} {}", a.first.0 + i as u64, stream, version + i as u64 + 1, id);
            }
            drop(out);
            version += n;
            left -= n;
            // Every batch due written (fewer than a batch's records left
            // in the tail) and a save behind each, before the next append:
            // each index batch takes the records of the appends before
            // it, whatever the threads' timing.
            let waiting = std::time::Instant::now();
            loop {
                let work = log.stats().work.snapshot();
                if work.records - work.records_indexed < 8192 && work.id_filter_saves == work.index_batches {
                    break;
                }
                if waiting.elapsed() > std::time::Duration::from_secs(30) {
                    eprintln!("append-phases: no index batch and save within 30 s: {work:?}");
                    return Ok(ExitCode::from(1));
                }
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
        }
        if phase + 1 == phases.len() {
            break;
        }
        let mut out = stdout.lock();
        let _ = writeln!(out, "saved {}", phase + 1);
        let _ = out.flush();
        drop(out);
        let mut line = String::new();
        let _ = std::io::stdin().read_line(&mut line);
    }
    wait_for_the_kill(log).await
}

/// The mark `apply-loop` writes with every batch.
const LOOP_MARK: &str = "apply-loop";

/// Applies batches of 1 to 8 appends (1 to 3 events each, to a few streams)
/// until killed, each batch with the mark "<batch> <head after it>", while
/// another task saves checkpoints so that groups mix requests. After a
/// crash the mark must name exactly the head that the records reach.
async fn apply_loop(dir: &str) -> Result<ExitCode, klaxon_log::Error> {
    let log = Log::open(dir, Options::default())?;
    let (mut batch, mut head) = match log.load_mark(LOOP_MARK)? {
        Some(mark) => {
            let text = String::from_utf8_lossy(&mark).into_owned();
            let mut parts = text.split(' ').map(|p| p.parse::<u64>().unwrap_or(0));
            (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
        }
        None => (0, 0),
    };
    {
        let log = log.clone();
        tokio::spawn(async move {
            let mut n = 0;
            while log.save_checkpoint("noise", Position(n)).await.is_ok() {
                n += 1;
            }
        });
    }
    let stdout = std::io::stdout();
    loop {
        batch += 1;
        let mut writes = Vec::new();
        for w in 0..(batch % 8 + 1) {
            let events: Vec<NewEvent> = (0..(batch + w) % 3 + 1)
                .map(|e| NewEvent {
                    id: uuid::Uuid::new_v4(),
                    kind: EventKind::new("test.applied.v1").expect("valid kind"),
                    data: EventData::from_value(&serde_json::json!({ "batch": batch, "write": w, "event": e }))
                        .expect("valid json"),
                    metadata: Metadata::default(),
                })
                .collect();
            head += events.len() as u64;
            writes.push(klaxon_log::Write::Append {
                stream: StreamId::new(format!("s{}", (batch + w) % 5)).expect("valid stream id"),
                expected: ExpectedVersion::Any,
                events,
                recorded_at: chrono::Utc::now(),
            });
        }
        let mark = klaxon_log::Mark { name: LOOP_MARK.into(), value: format!("{batch} {head}").into_bytes() };
        log.apply(writes, Some(mark)).await?;
        let mut out = stdout.lock();
        let _ = writeln!(out, "applied {batch}");
        let _ = out.flush();
    }
}

/// Says `waiting` and holds `log` open until the test kills the process:
/// the log is never closed.
async fn wait_for_the_kill(log: Log) -> ! {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "waiting");
    let _ = out.flush();
    drop(out);
    std::future::pending::<()>().await;
    drop(log);
    unreachable!("the test kills the process")
}
