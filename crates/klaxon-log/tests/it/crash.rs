//! Crash test: a child process appends in a loop and prints every
//! acknowledged append; the test kills it with SIGKILL at random moments and
//! checks that every acknowledged event survived, intact and gapless, and that
//! appends continue. 20 cycles by default, 200 with `KLAXON_SLOW_TESTS=1`.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use klaxon_log::{ExpectedVersion, Log, Options, Position, StreamVersion};
use rand::{Rng, SeedableRng};

use crate::support::{event, sid};

/// Kills the child when dropped, also when the test fails.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub(crate) struct Ack {
    pub(crate) position: u64,
    pub(crate) stream: String,
    pub(crate) version: u64,
    pub(crate) id: uuid::Uuid,
}

pub(crate) fn parse_ack(line: &str) -> Ack {
    let parts: Vec<&str> = line.split(' ').collect();
    assert_eq!(parts.len(), 5, "bad ack line {line:?}");
    assert_eq!(parts[0], "ack");
    Ack {
        position: parts[1].parse().unwrap(),
        stream: parts[2].to_string(),
        version: parts[3].parse().unwrap(),
        id: parts[4].parse().unwrap(),
    }
}

/// Runs `klaxon-logtool ARGS`, waits for its first output line (`first`
/// says what that line means, for the failure message), lets it run
/// `millis` more and SIGKILLs it; returns every line it printed.
pub(crate) fn kill_after(args: &[&str], first: &str, millis: u64) -> Vec<String> {
    let child = Command::new(env!("CARGO_BIN_EXE_klaxon-logtool"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn klaxon-logtool");
    let mut child = KillOnDrop(child);
    let stdout = child.0.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let first = rx.recv_timeout(Duration::from_secs(30)).unwrap_or_else(|e| panic!("{first}: {e}"));
    std::thread::sleep(Duration::from_millis(millis));
    child.0.kill().unwrap();
    child.0.wait().unwrap();
    drop(child);
    reader.join().unwrap();
    std::iter::once(first).chain(rx.try_iter()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_append_survives_sigkill() {
    let cycles = if std::env::var("KLAXON_SLOW_TESTS").as_deref() == Ok("1") { 200 } else { 20 };
    let seed = crate::seed::seed("every_acknowledged_append_survives_sigkill");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let mut acked_total = 0usize;
    for cycle in 0..cycles {
        // Wait for the first ack, then let it run a random while and kill it.
        let dir_arg = dir.path().to_str().unwrap();
        let lines =
            kill_after(&["append-loop", dir_arg, "4"], "the child acknowledges an append", rng.random_range(1..150));
        let acks: Vec<Ack> = lines.iter().map(|l| parse_ack(l)).collect();
        acked_total += acks.len();

        let log = Log::open(dir.path(), Options::default()).expect("reopen after SIGKILL");
        let report = log.verify().unwrap_or_else(|e| panic!("cycle {cycle} (seed {seed}): {e}"));
        let max_acked = acks.iter().map(|a| a.position).max().unwrap();
        assert!(log.head().0 >= max_acked, "cycle {cycle}: head {} below acked {max_acked}", log.head());
        for ack in &acks {
            let record = log.read_one(Position(ack.position)).unwrap();
            assert_eq!(
                (record.id, record.stream.as_str(), record.version),
                (ack.id, ack.stream.as_str(), StreamVersion(ack.version)),
                "cycle {cycle} (seed {seed}): acknowledged event changed"
            );
            let data: serde_json::Value = record.data.parse().unwrap();
            assert_eq!(data["version"], ack.version);
        }
        // Appends continue right after the recovered head.
        let next = log.append(&sid("after-crash"), ExpectedVersion::Any, vec![event(cycle)]).await.unwrap();
        assert_eq!(next.first, Position(report.records + 1));
        log.close().await;
        // The close saved the id filter: the next child opens with it.
        assert!(dir.path().join(klaxon_log::ID_FILTER_FILE_NAME).exists(), "cycle {cycle}: no id filter saved");
    }
    println!("{cycles} cycles, {acked_total} acknowledged appends checked");
}

/// A child applies batches with a mark naming the head they reach, mixed
/// with checkpoint saves; killed at random moments, the log must reopen
/// with the mark and the records in agreement: `Log::apply` writes both in
/// one atomic batch, which the Raft state machine relies on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_applied_mark_always_matches_the_records_after_sigkill() {
    let cycles = if std::env::var("KLAXON_SLOW_TESTS").as_deref() == Ok("1") { 100 } else { 10 };
    let seed = crate::seed::seed("an_applied_mark_always_matches_the_records_after_sigkill");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let mut last_acked = 0u64;
    for cycle in 0..cycles {
        let dir_arg = dir.path().to_str().unwrap();
        let lines = kill_after(&["apply-loop", dir_arg], "the child applies a batch", rng.random_range(1..150));
        for line in lines {
            last_acked = line.strip_prefix("applied ").and_then(|n| n.parse().ok()).expect("an applied line");
        }
        let log = Log::open(dir.path(), Options::default()).expect("reopen after SIGKILL");
        log.verify().unwrap_or_else(|e| panic!("cycle {cycle} (seed {seed}): {e}"));
        let mark = String::from_utf8(log.load_mark("apply-loop").unwrap().expect("a mark")).unwrap();
        let (batch, head) = mark.split_once(' ').expect("batch and head");
        let (batch, head): (u64, u64) = (batch.parse().unwrap(), head.parse().unwrap());
        assert!(
            batch >= last_acked,
            "cycle {cycle} (seed {seed}): batch {last_acked} was acknowledged, mark says {batch}"
        );
        assert_eq!(log.head(), Position(head), "cycle {cycle} (seed {seed}): the mark and the records disagree");
        log.close().await;
    }
}

/// A child opens the log, appends a few events, closes it, and again:
/// each close writes an id run and saves the id filter beside the log,
/// each open loads that file (or, when merges since made it stale, scans
/// every run) and merges runs behind the writer (one atomic sled batch per
/// merge, which bumps the runs' generation). Killed at random moments,
/// often in the middle of a merge, it must leave either the two runs or
/// the merged one: every acknowledged id is found at its place, a retry
/// of it is recognised, and the runs stay few although every cycle added
/// one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_id_is_found_after_sigkill_while_id_runs_merge() {
    let cycles = if std::env::var("KLAXON_SLOW_TESTS").as_deref() == Ok("1") { 60 } else { 8 };
    let seed = crate::seed::seed("every_acknowledged_id_is_found_after_sigkill_while_id_runs_merge");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let mut acks: Vec<Ack> = Vec::new();
    for cycle in 0..cycles {
        let dir_arg = dir.path().to_str().unwrap();
        let lines =
            kill_after(&["reopen-loop", dir_arg], "the child acknowledges an append", rng.random_range(20..400));
        acks.extend(lines.iter().map(|l| parse_ack(l)));

        let log = Log::open(dir.path(), Options::default()).expect("reopen after SIGKILL");
        log.settle_id_index();
        let report = log.verify().unwrap_or_else(|e| panic!("cycle {cycle} (seed {seed}): {e}"));
        for ack in &acks {
            let stream = crate::support::sid(&ack.stream);
            let place = (Position(ack.position), stream.clone(), StreamVersion(ack.version));
            assert_eq!(log.locate(ack.id).unwrap(), Some(place), "cycle {cycle} (seed {seed}): id {}", ack.id);
        }
        let sample = &acks[rng.random_range(0..acks.len())];
        let retry = log
            .append(
                &crate::support::sid(&sample.stream),
                ExpectedVersion::Any,
                vec![crate::support::event_with_id(sample.id, 0)],
            )
            .await
            .unwrap();
        assert_eq!((retry.first, retry.deduplicated), (Position(sample.position), true), "cycle {cycle} (seed {seed})");
        let (listed, stored) = log.id_runs().unwrap();
        assert_eq!(listed, stored, "cycle {cycle} (seed {seed}): the directory and sled disagree on the runs");
        // Runs halve in size from one to the next once merged: about
        // log2(ids) of them, where every child open had added one.
        let bound = 2 + (report.records as f64).log2().ceil() as usize;
        assert!(stored <= bound, "cycle {cycle} (seed {seed}): {stored} id runs for {} records", report.records);
        log.close().await;
        // The close saved the id filter: the next child opens with it, and
        // each of its closes saves it again (a kill may catch one).
        assert!(dir.path().join(klaxon_log::ID_FILTER_FILE_NAME).exists(), "cycle {cycle}: no id filter saved");
    }
    println!("{cycles} kills, {} acknowledged appends found", acks.len());
}

/// A child appends from four writers (50 events per append) with the id
/// filter saved behind every index batch (`id_filter_save_interval_ms`
/// 0), and is killed at random moments: often after merges that followed
/// its last save, sometimes in the middle of a save. Each reopen loads the
/// file it finds (never refused: a kill leaves the old file or the new
/// one, and a stale one keeps its unchanged runs), and every acknowledged
/// id (a sample of every cycle's, each retried as an append to its
/// stream) is found at its place and is a duplicate on retry. At least one
/// kill finds a file that the session itself saved (not the one the last
/// close wrote).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_id_is_a_duplicate_after_sigkill_while_the_id_filter_is_saved() {
    let cycles = if std::env::var("KLAXON_SLOW_TESTS").as_deref() == Ok("1") { 40 } else { 6 };
    let seed = crate::seed::seed("every_acknowledged_id_is_a_duplicate_after_sigkill_while_the_id_filter_is_saved");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join(klaxon_log::ID_FILTER_FILE_NAME);
    let mut sample: Vec<Ack> = Vec::new();
    let (mut saved_in_session, mut runs_kept) = (0, 0);
    for cycle in 0..cycles {
        let closed = std::fs::read(&file).ok();
        let dir_arg = dir.path().to_str().unwrap();
        let lines = kill_after(
            &["append-loop", dir_arg, "4", "0", "50"],
            "the child acknowledges an append",
            rng.random_range(300..1500),
        );
        let acks: Vec<Ack> = lines.iter().map(|l| parse_ack(l)).collect();
        let found = std::fs::read(&file).ok();
        saved_in_session += u32::from(found.is_some() && found != closed);
        for _ in 0..100 {
            let ack = &acks[rng.random_range(0..acks.len())];
            sample.push(Ack { position: ack.position, stream: ack.stream.clone(), version: ack.version, id: ack.id });
        }

        let log = Log::open(dir.path(), Options::default()).expect("reopen after SIGKILL");
        log.settle_id_index();
        let work = log.stats().work.snapshot();
        if found.is_some() {
            assert_eq!(work.id_filter_loads, 1, "cycle {cycle} (seed {seed}): the file was refused");
        }
        runs_kept += work.id_runs_loaded_at_open;
        let head = log.head();
        for ack in &sample {
            let stream = sid(&ack.stream);
            let place = (Position(ack.position), stream.clone(), StreamVersion(ack.version));
            assert_eq!(log.locate(ack.id).unwrap(), Some(place), "cycle {cycle} (seed {seed}): id {}", ack.id);
            let retry = log
                .append(&stream, ExpectedVersion::Any, vec![crate::support::event_with_id(ack.id, 0)])
                .await
                .unwrap();
            assert_eq!(
                (retry.first, retry.deduplicated),
                (Position(ack.position), true),
                "cycle {cycle} (seed {seed}): retry of {}",
                ack.id
            );
        }
        assert_eq!(log.head(), head, "cycle {cycle} (seed {seed}): a retry was appended");
        log.close().await;
    }
    println!("{cycles} kills, {saved_in_session} found a file saved during the session, {runs_kept} runs kept");
    assert!(saved_in_session > 0, "seed {seed}: no kill found a file the session saved");
    assert!(runs_kept > 0, "seed {seed}: no reopen kept a run from the file");
}
