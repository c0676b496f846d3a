//! The id filter saved beside the log (`ID_FILTER_FILE_NAME`): a clean
//! close writes it, and so does a long session behind its index batches;
//! an open that finds it scans only the id runs merged or written after
//! it (a stale file keeps its runs that are unchanged in sled), and a
//! file that is damaged or another folder's is refused for a full scan.
//! Whatever the file, no id in the log is ever answered "absent": a
//! retried append is recognised and writes nothing.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use klaxon_log::{ExpectedVersion, ID_FILTER_FILE_NAME, IdScanGate, IdScanStage, Log, Options, Position};
use uuid::Uuid;

use crate::support::{event_with_id, sid};

fn file(dir: &Path) -> PathBuf {
    dir.join(ID_FILTER_FILE_NAME)
}

/// Opens the log and waits for its id filter (load and scan, then merges).
fn open_settled(dir: &Path) -> Log {
    let log = Log::open(dir, Options::default()).unwrap();
    log.settle_id_index();
    log
}

/// Closes the log (which saves the filter) and lets go of its folder.
async fn close(log: Log) {
    log.close().await;
}

/// (loads of the saved filter, id runs the open's scan read).
fn open_work(log: &Log) -> (u64, u64) {
    let work = log.stats().work.snapshot();
    (work.id_filter_loads, work.id_runs_scanned_at_open)
}

/// Appends `count` events with fresh ids in appends of up to 100. Returns
/// where each went.
async fn append(log: &Log, count: usize) -> Vec<Placed> {
    append_ids(log, (0..count).map(|_| Uuid::new_v4()).collect()).await
}

/// Appends events with these ids in appends of up to 100.
async fn append_ids(log: &Log, ids: Vec<Uuid>) -> Vec<Placed> {
    let mut out = Vec::new();
    for part in ids.chunks(100) {
        let events = part.iter().map(|id| event_with_id(*id, 0)).collect();
        let a = log.append(&sid("ids"), ExpectedVersion::Any, events).await.unwrap();
        out.extend(part.iter().enumerate().map(|(i, id)| Placed {
            id: *id,
            position: Position(a.first.0 + i as u64),
            stream: "ids".into(),
        }));
    }
    out
}

/// An acknowledged event: its id, position and stream.
struct Placed {
    id: Uuid,
    position: Position,
    stream: String,
}

/// Every id is found at its place, and a retry of each (in appends of one,
/// to its stream) is answered as a duplicate: the head does not move.
async fn every_id_deduplicated(log: &Log, ids: &[Placed], context: &str) {
    let head = log.head();
    for Placed { id, position, stream } in ids {
        let found = log.locate(*id).unwrap().map(|(p, _, _)| p);
        assert_eq!(found, Some(*position), "{context}: id {id} not found at its place");
        let retry = log.append(&sid(stream), ExpectedVersion::Any, vec![event_with_id(*id, 0)]).await.unwrap();
        assert_eq!((retry.first, retry.deduplicated), (*position, true), "{context}: retry of {id}");
    }
    assert_eq!(log.head(), head, "{context}: a retry was appended");
}

/// After a clean close the next open loads the saved filter and reads no
/// id run in sled, and every id appended before (over three sessions, so
/// over several runs) is still recognised.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_close_saves_the_id_filter_and_the_reopen_scans_no_run() {
    let dir = tempfile::tempdir().unwrap();
    let mut ids = Vec::new();
    for session in 0..3 {
        let log = open_settled(dir.path());
        ids.extend(append(&log, 300 + 100 * session).await);
        close(log).await;
        assert!(file(dir.path()).exists(), "session {session}: the close saved no id filter");
    }
    let log = open_settled(dir.path());
    assert_eq!(open_work(&log), (1, 0), "the saved filter is loaded and no run is scanned");
    let (_, runs) = log.id_runs().unwrap();
    assert!(runs >= 1);
    every_id_deduplicated(&log, &ids, "after a clean close").await;
    close(log).await;

    // Without the file, the same folder is scanned whole: the stat counts it.
    std::fs::remove_file(file(dir.path())).unwrap();
    let log = open_settled(dir.path());
    let (loads, scanned) = open_work(&log);
    assert_eq!((loads, scanned), (0, runs as u64), "no file: every run is scanned");
    every_id_deduplicated(&log, &ids, "after a full scan").await;
    close(log).await;
}

/// A file saved before merges (put back after a later close saved a newer
/// one, as a crash between a merge and the next save would leave it)
/// lists a run that absorbed another since: that run is not taken from
/// the file but scanned, and every id is found. The ids are chosen so
/// that the run keeps both its first and its last piece keys through the
/// merge (its 300 ids are the smallest, the 200 merged in all sort after
/// its 257th): only the run that followed it, gone from sled, tells that
/// it now also holds the ids merged into it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_saved_before_a_merge_is_not_trusted_for_the_merged_run() {
    let dir = tempfile::tempdir().unwrap();
    let aside = tempfile::tempdir().unwrap();
    // One run of 300 small ids (pieces of 256 and 44), saved.
    let log = open_settled(dir.path());
    let mut ids = append_ids(&log, (1..=300u128).map(|n| Uuid::from_u128(n << 64 | n)).collect()).await;
    close(log).await;
    std::fs::copy(file(dir.path()), aside.path().join("old")).unwrap();
    // A second run of 200 random ids after it (the old file is still
    // valid here).
    let log = open_settled(dir.path());
    assert_eq!(open_work(&log), (1, 0));
    ids.extend(append(&log, 200).await);
    close(log).await;
    // This open merges the two runs (200 is at least half of 300) under
    // the first run's key: pieces of 256 and 244, the same first ids.
    let log = open_settled(dir.path());
    assert_eq!(open_work(&log), (1, 0));
    assert_eq!(log.id_runs().unwrap(), (1, 1), "the two runs merged at open");
    close(log).await;

    std::fs::copy(aside.path().join("old"), file(dir.path())).unwrap();
    let log = open_settled(dir.path());
    assert_eq!(load_work(&log), (1, 0, 1), "the stale file is loaded, its one run (merged since) scanned");
    every_id_deduplicated(&log, &ids, "after a stale file").await;
    log.verify().unwrap();
    close(log).await;
}

/// A damaged file (one byte of its first filter flipped, or cut short) and
/// another folder's file are refused for a full scan; every id is found.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_or_foreign_file_is_refused_and_every_id_is_found() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_settled(dir.path());
    let ids = append(&log, 500).await;
    close(log).await;
    let saved = std::fs::read(file(dir.path())).unwrap();
    // The log-wide filter's words start after the magic (7), the header
    // (32), the filter count (4) and the filter's shape (24): flip the
    // first byte with bits set, which clears them.
    let at = 67 + saved[67..].iter().position(|b| *b != 0).unwrap();
    let mut flipped = saved.clone();
    flipped[at] ^= 0xff;
    let damaged = [("a flipped byte", flipped), ("a truncated file", saved[..saved.len() / 2].to_vec())];
    for (what, bytes) in damaged {
        std::fs::write(file(dir.path()), &bytes).unwrap();
        let log = open_settled(dir.path());
        assert_eq!(open_work(&log), (0, 1), "{what}: refused, every run scanned");
        every_id_deduplicated(&log, &ids, what).await;
        close(log).await;
    }

    // Another folder with the same positions, its file copied in.
    let other = tempfile::tempdir().unwrap();
    let log = open_settled(other.path());
    append(&log, 500).await;
    close(log).await;
    std::fs::copy(file(other.path()), file(dir.path())).unwrap();
    let log = open_settled(dir.path());
    assert_eq!(open_work(&log), (0, 1), "another folder's file is refused");
    every_id_deduplicated(&log, &ids, "another folder's file").await;
    close(log).await;
}

/// Runs `klaxon-logtool append-then-wait DIR COUNT`, reads its acks until
/// it waits, and SIGKILLs it: a crash after `count` durable appends, with
/// no close (so no new file). Returns the acknowledged events.
fn append_then_kill(dir: &Path, count: usize) -> Vec<Placed> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_klaxon-logtool"))
        .args(["append-then-wait", dir.to_str().unwrap(), &count.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn klaxon-logtool");
    let mut acks = Vec::new();
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        if line == "waiting" {
            break;
        }
        let ack = crate::crash::parse_ack(&line);
        acks.push(Placed { id: ack.id, position: Position(ack.position), stream: ack.stream });
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(acks.len(), count, "the child acknowledged every append before waiting");
    acks
}

/// Appends after an open that loaded the file, then a SIGKILL (no close,
/// so the file is the old one): the next open loads it and scans only the
/// run written after it (here the one the open indexes from the records
/// after the mark), and every id, before and after the file, is found.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_written_after_the_file_are_scanned_after_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_settled(dir.path());
    let mut ids = append(&log, 1000).await;
    close(log).await;
    // A session that changes no run (one run: nothing to merge) and saves.
    let log = open_settled(dir.path());
    assert_eq!(open_work(&log), (1, 0));
    close(log).await;
    let saved = std::fs::read(file(dir.path())).unwrap();

    // 300 appends (fewer than an index batch), then killed.
    ids.extend(append_then_kill(dir.path(), 300));
    assert_eq!(std::fs::read(file(dir.path())).unwrap(), saved, "the killed child wrote no file");

    let log = open_settled(dir.path());
    assert_eq!(open_work(&log), (1, 1), "the file is loaded and only the run after it scanned");
    every_id_deduplicated(&log, &ids, "after a crash").await;
    log.verify().unwrap();
    close(log).await;
}

/// Opens the log with its id filter's scan thread held at each stage
/// until `gate` lets it go.
fn open_gated(dir: &Path) -> (Log, IdScanGate) {
    let gate = IdScanGate::new();
    let log = Log::open_with_id_scan_gate(dir, Options::default(), gate.clone()).unwrap();
    (log, gate)
}

/// Every 25th of `ids`, and the last.
fn sample(ids: &[Placed]) -> Vec<&Placed> {
    ids.iter().enumerate().filter(|(i, _)| i % 25 == 0 || *i == ids.len() - 1).map(|(_, p)| p).collect()
}

/// The saved filter is loaded on the scan thread, and until that thread
/// joins it into the directory (held here just before), a retry of an id
/// already in the log (listed in the file, or in the run written after
/// it) is still answered as a duplicate: the head does not move. Ids
/// appended meanwhile are not lost by the join: after it, their retries
/// are duplicates too. The open loaded the file once and scanned only the
/// run written after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn before_the_saved_filter_is_joined_a_retry_is_a_duplicate_and_the_join_loses_no_id() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_settled(dir.path());
    let saved = append(&log, 1000).await;
    close(log).await;
    // A run after the file: 300 appends, then killed (no close, no new file).
    let after = append_then_kill(dir.path(), 300);

    let (log, gate) = open_gated(dir.path());
    gate.release(IdScanStage::BeforeLoad);
    gate.wait_for(IdScanStage::BeforeJoin);
    assert_eq!(open_work(&log), (1, 1), "loaded, the run after the file scanned, not joined yet");
    let head = log.head();
    for Placed { id, position, stream } in sample(&saved).into_iter().chain(sample(&after)) {
        let retry = log.append(&sid(stream), ExpectedVersion::Any, vec![event_with_id(*id, 0)]).await.unwrap();
        assert_eq!((retry.first, retry.deduplicated), (*position, true), "retry of {id} before the join");
    }
    assert_eq!(log.head(), head, "a retry before the join was appended");
    // Appended before the join: the writer keeps these ids until it.
    let during = append(&log, 500).await;

    gate.release(IdScanStage::BeforeJoin);
    log.settle_id_index();
    assert_eq!(open_work(&log), (1, 1), "after the join: one load, only the run after the file scanned");
    every_id_deduplicated(&log, &during, "appended before the join").await;
    let every: Vec<Placed> = saved.into_iter().chain(after).collect();
    every_id_deduplicated(&log, &every, "after the join").await;
    close(log).await;
}

/// `Log::open` returns without having read the saved filter: its scan
/// thread reads it. Held before it reads anything, the file is removed
/// after the open returned; the thread then finds none and scans every
/// run (had the open loaded the file, the load would be counted and no
/// run scanned). Every id is still found, and the close saves a new file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_open_does_not_read_the_saved_filter_its_scan_thread_does() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_settled(dir.path());
    let ids = append(&log, 500).await;
    close(log).await;
    assert!(file(dir.path()).exists());

    let (log, gate) = open_gated(dir.path());
    gate.wait_for(IdScanStage::BeforeLoad);
    assert_eq!(open_work(&log), (0, 0), "nothing loaded or scanned yet");
    std::fs::remove_file(file(dir.path())).unwrap();
    gate.release(IdScanStage::BeforeJoin);
    log.settle_id_index();
    assert_eq!(open_work(&log), (0, 1), "the thread found no file and scanned every run");
    every_id_deduplicated(&log, &ids, "the file removed after the open").await;
    close(log).await;
    assert!(file(dir.path()).exists(), "the close saved the filter again");
}

/// Runs `klaxon-logtool append-phases DIR 0 PHASES...` (the id filter
/// saved behind every index batch), calls `saved(phase)` each time the
/// child says it indexed and saved after a phase (it waits meanwhile),
/// and SIGKILLs it once it waits after the last: a crash with every
/// append acknowledged and no close. Returns the acknowledged events in
/// the child's appends (up to 1,000 each).
fn phases_then_kill(dir: &Path, phases: &[usize], mut saved: impl FnMut(usize)) -> Vec<Vec<Placed>> {
    let mut args = vec!["append-phases".to_string(), dir.to_str().unwrap().into(), "0".into()];
    args.extend(phases.iter().map(|p| p.to_string()));
    let mut child = Command::new(env!("CARGO_BIN_EXE_klaxon-logtool"))
        .args(&args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn klaxon-logtool");
    let mut stdin = child.stdin.take().unwrap();
    let mut acks = Vec::new();
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        if line == "waiting" {
            break;
        }
        if let Some(phase) = line.strip_prefix("saved ") {
            saved(phase.parse().unwrap());
            std::io::Write::write_all(&mut stdin, b"go\n").unwrap();
            continue;
        }
        let ack = crate::crash::parse_ack(&line);
        acks.push(Placed { id: ack.id, position: Position(ack.position), stream: ack.stream });
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(acks.len(), phases.iter().sum::<usize>(), "the child acknowledged every append before waiting");
    // Phases are whole thousands but the last: the child's appends are
    // the acks by 1,000.
    let mut appends = Vec::new();
    let mut acks = acks.into_iter().peekable();
    while acks.peek().is_some() {
        appends.push(acks.by_ref().take(1000).collect());
    }
    appends
}

/// Every 20th event of each append and its last are found at their
/// places, and a retry of them (one append per original append, to its
/// stream) is answered as a duplicate at the first one's position: the
/// head does not move.
async fn every_append_deduplicated(log: &Log, appends: &[Vec<Placed>], context: &str) {
    let head = log.head();
    for append in appends {
        let sample: Vec<&Placed> =
            append.iter().enumerate().filter(|(i, _)| i % 20 == 0 || *i == append.len() - 1).map(|(_, p)| p).collect();
        for Placed { id, position, .. } in &sample {
            let found = log.locate(*id).unwrap().map(|(p, _, _)| p);
            assert_eq!(found, Some(*position), "{context}: id {id} not found at its place");
        }
        let events = sample.iter().map(|p| event_with_id(p.id, 0)).collect();
        let retry = log.append(&sid(&append[0].stream), ExpectedVersion::Any, events).await.unwrap();
        assert_eq!((retry.first, retry.deduplicated), (sample[0].position, true), "{context}: retry of an append");
    }
    assert_eq!(log.head(), head, "{context}: a retry was appended");
}

/// A copy of a (closed or killed) log's folder: a crash image to open.
fn copy_folder(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_folder(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// (loads of the saved filter, runs taken from it, runs scanned).
fn load_work(log: &Log) -> (u64, u64, u64) {
    let work = log.stats().work.snapshot();
    (work.id_filter_loads, work.id_runs_loaded_at_open, work.id_runs_scanned_at_open)
}

/// A long session saves the id filter behind its index batches, and a
/// SIGKILL then costs the reopen only the runs merged or written after
/// the last save. The child writes six index batches (merged into runs of
/// 45,000 and 9,000 ids) and saves (file 1), one more batch that the index
/// thread merges into the second run and saves again (file 2), then 300
/// events the index never took, and is killed. Two crash images of the
/// folder: with file 2 (nothing merged since), and with file 1 put back
/// (a kill right after that save, the merge not saved yet: file 1 lists a
/// run that absorbed another since). Each reopen loads its file and
/// scans only what changed: with file 2 the run the open indexed from the
/// unindexed tail; with file 1 that one and the merged run, whose filter
/// in the file lacks the ids merged in (it is not trusted). Every
/// acknowledged id (in kept runs, in the merged run, in the tail the open
/// indexed, and appended after the reopen) is a duplicate on retry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_killed_after_merges_since_its_last_save_reopens_with_its_unchanged_runs() {
    let dir = tempfile::tempdir().unwrap();
    let aside = tempfile::tempdir().unwrap();
    let appends = phases_then_kill(dir.path(), &[6 * 9000, 9000, 300], |phase| {
        std::fs::copy(file(dir.path()), aside.path().join(format!("file-{phase}"))).unwrap();
    });
    let images = tempfile::tempdir().unwrap();
    for (name, saved, expected) in [("file 2", "file-2", (1, 2, 1)), ("file 1", "file-1", (1, 1, 2))] {
        let image = images.path().join(saved);
        copy_folder(dir.path(), &image);
        std::fs::copy(aside.path().join(saved), file(&image)).unwrap();
        let (log, gate) = open_gated(&image);
        gate.release(IdScanStage::BeforeLoad);
        gate.wait_for(IdScanStage::BeforeJoin);
        assert_eq!(log.id_runs().unwrap().1, 3, "{name}: runs of 45,000, 18,000 and 300 ids in sled");
        assert_eq!(load_work(&log), expected, "{name}: (loads, runs kept from the file, runs scanned)");
        gate.release(IdScanStage::BeforeJoin);
        log.settle_id_index();
        every_append_deduplicated(&log, &appends, name).await;
        let later = append(&log, 500).await;
        every_id_deduplicated(&log, &later, name).await;
        close(log).await;
    }
}
