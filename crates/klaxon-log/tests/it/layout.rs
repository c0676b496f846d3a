//! The storage layout: records packed in chunks (a few sled keys per group
//! commit), the stream and id indexes written behind them and completed at
//! open, and format-1 folders (one key per record) upgraded in place.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use klaxon_log::{EventData, EventKind, ExpectedVersion, Log, Metadata, Options, Position, Record, StreamVersion};
use rand::{Rng, SeedableRng};
use uuid::Uuid;

use crate::crash::{Ack, kill_after, parse_ack};
use crate::support::{event, event_with_id, sid, temp_log};

/// Index entries wait in memory until this many records are durable (the
/// log's `index::INDEX_BEHIND_RECORDS`).
const INDEX_BEHIND_RECORDS: u64 = 8192;

fn keys(log: &Log) -> BTreeMap<char, u64> {
    log.keys_by_tag().unwrap()
}

fn count(keys: &BTreeMap<char, u64>, tag: char) -> u64 {
    keys.get(&tag).copied().unwrap_or(0)
}

#[tokio::test]
async fn a_group_commit_writes_a_few_chunk_keys_and_the_indexes_follow_behind() {
    let (dir, log) = temp_log(Options::default());
    // One event per append: one chunk key each (format 1 wrote three keys).
    for i in 0..64 {
        log.append(&sid(&format!("s-{i}")), ExpectedVersion::NoStream, vec![event(i)]).await.unwrap();
    }
    assert_eq!(count(&keys(&log), 'k'), 64);
    // One append of 200 events (about 100 bytes each) is one group commit:
    // a few chunks of at most 6 KiB.
    log.append(&sid("big"), ExpectedVersion::NoStream, (0..200).map(event).collect()).await.unwrap();
    assert_eq!(log.head(), Position(264));
    let open = keys(&log);
    let records = count(&open, 'k');
    assert!((64 + 2..=64 + 10).contains(&records), "200 events took {} chunk keys: {open:?}", records - 64);
    assert_eq!(count(&open, 'r'), 0, "no one-record keys: {open:?}");
    // The indexes wait in memory: the group commits wrote no index key.
    assert_eq!((count(&open, 's'), count(&open, 'i')), (0, 0), "{open:?}");
    // ... and answer from there.
    assert_eq!(log.stream_version(&sid("big")).unwrap(), StreamVersion(200));
    assert_eq!(log.read_stream(&sid("s-7"), StreamVersion(1), 10).unwrap().len(), 1);
    log.verify().unwrap();
    log.close().await;
    drop(log);

    // Closing writes them, with the mark.
    let log = Log::open(dir.path(), Options::default()).unwrap();
    let closed = keys(&log);
    // One stream index key per stream and index batch (a run of versions);
    // the batch's 264 ids as one run in pieces of at most 256: two keys.
    assert_eq!(
        (count(&closed, 's'), count(&closed, 'i'), count(&closed, 'j'), count(&closed, 'k')),
        (65, 0, 2, records),
        "{closed:?}"
    );
    assert_eq!(log.verify().unwrap().records, 264);
    log.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_threshold_the_index_is_written_while_open_and_reads_span_sled_and_memory() {
    let (_dir, log) = temp_log(Options::default());
    let stream = sid("long");
    let batches = INDEX_BEHIND_RECORDS / 1000 + 1;
    for b in 0..batches {
        log.append(&stream, ExpectedVersion::Any, (0..1000).map(|n| event(b * 1000 + n)).collect()).await.unwrap();
    }
    // The index thread writes the batch behind the answers: wait (bounded)
    // until it reports it.
    for _ in 0..2000 {
        if log.stats().work.snapshot().index_batches > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert_eq!(log.stats().work.snapshot().index_batches, 1);
    let last = event(0);
    // Appended after the index batch of the records before it.
    log.append(&stream, ExpectedVersion::Exact(StreamVersion(batches * 1000)), vec![last.clone()]).await.unwrap();
    let total = batches * 1000 + 1;
    let open = keys(&log);
    // The index of every record before the last append: their versions as
    // runs of at most 512 under one key each, and their ids as one run in
    // pieces of at most 256.
    assert_eq!(count(&open, 's'), (batches * 1000).div_ceil(512), "{open:?}");
    assert_eq!(
        count(&open, 'j'),
        (batches * 1000).div_ceil(256),
        "the ids of every record before the last append: {open:?}"
    );
    assert_eq!(count(&open, 'i'), 0, "{open:?}");
    // Every version can be found from the runs, from any start.
    for from in [1, 511, 512, 513, 8998, 8999] {
        let read = log.read_stream(&stream, StreamVersion(from), 3).unwrap();
        assert_eq!(read.iter().map(|r| r.version.0).collect::<Vec<_>>(), (from..from + 3).collect::<Vec<_>>());
    }
    // Reads find records indexed in sled and the one still in memory.
    let all = log.read_stream(&stream, StreamVersion(1), usize::MAX).unwrap();
    assert_eq!(all.len() as u64, total);
    assert!(all.iter().enumerate().all(|(i, r)| r.version == StreamVersion(i as u64 + 1)));
    assert_eq!(log.stream_version(&stream).unwrap(), StreamVersion(total));
    assert_eq!(log.locate(last.id).unwrap(), Some((Position(total), stream.clone(), StreamVersion(total))));
    assert_eq!(log.locate(all[0].id).unwrap(), Some((Position(1), stream.clone(), StreamVersion(1))));
    let retry = log.append(&stream, ExpectedVersion::Any, vec![last]).await.unwrap();
    assert!(retry.deduplicated);
    assert_eq!(log.verify().unwrap().records, total);
    log.close().await;
}

/// The child acknowledges appends whose index entries are still in memory
/// (fewer than the threshold); SIGKILL loses them. After reopening, every
/// acknowledged id is found at its place, a retry of it is recognised, and
/// its stream reads in full: the open indexed the records after the mark
/// before taking any append.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_and_streams_are_found_after_sigkill_before_the_index_batch() {
    let cycles = if std::env::var("KLAXON_SLOW_TESTS").as_deref() == Ok("1") { 40 } else { 6 };
    let seed = crate::seed::seed("ids_and_streams_are_found_after_sigkill_before_the_index_batch");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let mut behind_cycles = 0;
    for cycle in 0..cycles {
        let dir_arg = dir.path().to_str().unwrap();
        let lines =
            kill_after(&["append-loop", dir_arg, "4"], "the child acknowledges an append", rng.random_range(20..200));
        let acks: Vec<Ack> = lines.iter().map(|l| parse_ack(l)).collect();

        // What the crash left on disk: the position the indexes reach,
        // before the log completes them.
        let max_acked = acks.iter().map(|a| a.position).max().unwrap();
        let indexed = {
            let db = sled::open(dir.path()).unwrap();
            db.get(b"mindexed").unwrap().map_or(0, |v| u64::from_be_bytes(v[..8].try_into().unwrap()))
        };
        if indexed < max_acked {
            behind_cycles += 1;
        }

        let log = Log::open(dir.path(), Options::default()).expect("reopen after SIGKILL");
        for ack in &acks {
            let stream = sid(&ack.stream);
            let place = (Position(ack.position), stream.clone(), StreamVersion(ack.version));
            assert_eq!(log.locate(ack.id).unwrap(), Some(place), "cycle {cycle} (seed {seed}): id {}", ack.id);
            let retry = log.append(&stream, ExpectedVersion::Any, vec![event_with_id(ack.id, 0)]).await.unwrap();
            assert!(retry.deduplicated, "cycle {cycle} (seed {seed}): the retry of {} was appended again", ack.id);
            assert_eq!(retry.first, Position(ack.position));
            let versions = log.read_stream(&stream, StreamVersion(1), usize::MAX).unwrap();
            assert!(versions.len() as u64 >= ack.version, "cycle {cycle} (seed {seed}): {stream} lost versions");
            assert_eq!(versions[ack.version as usize - 1].id, ack.id);
            assert!(log.stream_version(&stream).unwrap() >= StreamVersion(ack.version));
        }
        let report = log.verify().unwrap_or_else(|e| panic!("cycle {cycle} (seed {seed}): {e}"));
        assert!(report.records >= max_acked);
        log.close().await;
    }
    assert!(behind_cycles > 0, "seed {seed}: no crash caught the index behind the records; the test showed nothing");
    println!("{behind_cycles} of {cycles} crashes left the index behind the acknowledged records");
}

/// Every close writes the ids appended since open as one id run; without
/// merging, a log closed and opened often would hold one run per session
/// and a lookup before the open scan completes would read them all. The
/// runs are merged behind the writer (at open and after index batches),
/// so after 100 sessions of 1 to 12 appends they are a handful, every id
/// is still found at its place and a retry of any of them is recognised.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_close_and_reopen_cycles_keep_the_id_runs_few_and_every_id_found() {
    let dir = tempfile::tempdir().unwrap();
    let mut appended: Vec<(Uuid, Position)> = Vec::new();
    let mut most_runs = 0;
    for session in 0..100u64 {
        let log = Log::open(dir.path(), Options::default()).unwrap();
        log.settle_id_index();
        let (listed, stored) = log.id_runs().unwrap();
        assert_eq!(listed, stored, "session {session}: the directory and sled disagree on the runs");
        most_runs = most_runs.max(stored);
        for n in 0..session % 12 + 1 {
            let id = Uuid::new_v4();
            let a = log.append(&sid("sessions"), ExpectedVersion::Any, vec![event_with_id(id, n)]).await.unwrap();
            appended.push((id, a.first));
        }
        log.close().await;
    }
    // 100 runs written (one per close), 650 ids: runs halving in size
    // from one to the next leave at most log2(650) + 1 of them.
    assert!(most_runs <= 11, "{most_runs} id runs after at most 100 sessions");
    let log = Log::open(dir.path(), Options::default()).unwrap();
    log.settle_id_index();
    let (_, stored) = log.id_runs().unwrap();
    assert!(stored <= 11, "{stored} id runs after 100 sessions");
    for (id, position) in &appended {
        let (found, _, _) = log.locate(*id).unwrap().unwrap_or_else(|| panic!("{id} lost"));
        assert_eq!(found, *position);
    }
    for (id, position) in appended.iter().step_by(37) {
        let retry = log.append(&sid("sessions"), ExpectedVersion::Any, vec![event_with_id(*id, 0)]).await.unwrap();
        assert_eq!((retry.first, retry.deduplicated), (*position, true));
    }
    log.verify().unwrap();
    log.close().await;
}

/// A record built by hand, as the format-1 writer stored it.
fn old_record(position: u64, stream: &str, version: u64, id: Uuid, at: DateTime<Utc>) -> Record {
    Record {
        position: Position(position),
        stream: sid(stream),
        version: StreamVersion(version),
        id,
        kind: EventKind::new("test.happened.v1").unwrap(),
        recorded_at: at,
        data: EventData::from_value(&serde_json::json!({ "n": position })).unwrap(),
        metadata: Metadata { actor: Some("tester".into()), ..Metadata::default() },
        checksum: 0,
    }
}

/// Writes a format-1 folder with raw sled, the way the format-1 writer did:
/// one `r` key per record, and the `s` and `i` index entries in the same
/// batch. Returns its records.
fn write_format_1(dir: &std::path::Path, count: u64) -> Vec<Record> {
    let db = sled::Config::new().path(dir).mode(sled::Mode::HighThroughput).open().unwrap();
    db.insert(b"mformat", b"klaxon-log/1".as_slice()).unwrap();
    let mut versions: BTreeMap<&str, u64> = BTreeMap::new();
    let mut records = Vec::new();
    let start = DateTime::from_timestamp_micros(1_764_000_000_000_000).unwrap();
    let mut batch = sled::Batch::default();
    for position in 1..=count {
        let stream = ["incident-INC-1", "incident-INC-2", "alert-A"][(position % 3) as usize];
        let version = versions.entry(stream).or_insert(0);
        *version += 1;
        let at = start + chrono::Duration::milliseconds(position as i64);
        let record = old_record(position, stream, *version, Uuid::new_v4(), at);
        let mut r_key = vec![b'r'];
        r_key.extend_from_slice(&position.to_be_bytes());
        batch.insert(r_key, record.to_bytes());
        let mut s_key = vec![b's'];
        s_key.extend_from_slice(stream.as_bytes());
        s_key.push(0);
        s_key.extend_from_slice(&version.to_be_bytes());
        batch.insert(s_key, &position.to_be_bytes());
        let mut i_key = vec![b'i'];
        i_key.extend_from_slice(record.id.as_bytes());
        let mut i_value = position.to_be_bytes().to_vec();
        i_value.extend_from_slice(&version.to_be_bytes());
        i_value.extend_from_slice(stream.as_bytes());
        batch.insert(i_key, i_value);
        records.push(record);
    }
    batch.insert(b"cprojector".as_slice(), &(count / 2).to_be_bytes());
    db.apply_batch(batch).unwrap();
    db.flush().unwrap();
    records
}

#[tokio::test]
async fn a_format_1_folder_is_upgraded_in_place_and_every_record_stream_and_id_is_found() {
    let dir = tempfile::tempdir().unwrap();
    let old = write_format_1(dir.path(), 50);

    let log = Log::open(dir.path(), Options::default()).unwrap();
    assert_eq!(log.head(), Position(50));
    assert_eq!(log.verify().unwrap().records, 50);
    assert_eq!(log.load_checkpoint("projector").unwrap(), Position(25));
    let stored = log.read_all(Position(1), 100).unwrap();
    let stored_ids: Vec<Uuid> = stored.iter().map(|r| r.id).collect();
    assert_eq!(stored_ids, old.iter().map(|r| r.id).collect::<Vec<_>>());
    for r in &old {
        assert_eq!(log.read_one(r.position).unwrap().data, r.data);
        assert_eq!(log.locate(r.id).unwrap(), Some((r.position, r.stream.clone(), r.version)));
        // A retry of an old id is recognised, not appended again.
        let retry = log.append(&r.stream, ExpectedVersion::Any, vec![event_with_id(r.id, 0)]).await.unwrap();
        assert_eq!((retry.first, retry.deduplicated), (r.position, true));
    }
    for stream in ["incident-INC-1", "incident-INC-2", "alert-A"] {
        let stream = sid(stream);
        let read = log.read_stream(&stream, StreamVersion(1), 100).unwrap();
        let expected: Vec<Position> = old.iter().filter(|r| r.stream == stream).map(|r| r.position).collect();
        assert_eq!(read.iter().map(|r| r.position).collect::<Vec<_>>(), expected);
        assert_eq!(log.stream_version(&stream).unwrap(), StreamVersion(expected.len() as u64));
    }

    // New appends go into chunks after the old records, streams continue.
    let stream = sid("incident-INC-1");
    let next =
        log.append(&stream, ExpectedVersion::Exact(StreamVersion(16)), vec![event(51), event(52)]).await.unwrap();
    assert_eq!((next.first, next.next_version), (Position(51), StreamVersion(19)));
    let across = log.read_all(Position(48), 10).unwrap();
    assert_eq!(across.iter().map(|r| r.position.0).collect::<Vec<_>>(), vec![48, 49, 50, 51, 52]);
    assert_eq!(log.read_stream(&stream, StreamVersion(15), 10).unwrap().len(), 4);
    log.close().await;
    drop(log);

    let log = Log::open(dir.path(), Options::default()).unwrap();
    assert_eq!(log.verify().unwrap().records, 52);
    let k = keys(&log);
    assert_eq!((count(&k, 'r'), count(&k, 'k')), (50, 1), "{k:?}");
    log.close().await;
    drop(log);
    let db = sled::open(dir.path()).unwrap();
    assert_eq!(db.get(b"mformat").unwrap().as_deref(), Some(b"klaxon-log/3".as_slice()));
    assert_eq!(db.scan_prefix(b"i").count(), 0, "the id index was rewritten as runs");
}

/// Writes a format-2 folder with raw sled, the way the format-2 writer did:
/// records packed in `k` chunks (`[2][count u32 LE]` then `[len u32 LE]
/// [record]` each), and, up to `indexed`, the stream index as runs of
/// versions and one `i` key per id, with the `m indexed` mark (the records
/// after it were acknowledged but a crash came before their index batch).
fn write_format_2(dir: &std::path::Path, count: u64, indexed: u64) -> Vec<Record> {
    let db = sled::Config::new().path(dir).mode(sled::Mode::HighThroughput).open().unwrap();
    let mut versions: BTreeMap<&str, u64> = BTreeMap::new();
    let mut runs: BTreeMap<&str, (u64, Vec<u64>)> = BTreeMap::new();
    let start = DateTime::from_timestamp_micros(1_764_000_000_000_000).unwrap();
    let mut batch = sled::Batch::default();
    batch.insert(b"mformat".as_slice(), b"klaxon-log/2".as_slice());
    let mut records = Vec::new();
    let mut chunk: Vec<Vec<u8>> = Vec::new();
    let flush_chunk = |batch: &mut sled::Batch, chunk: &mut Vec<Vec<u8>>, last: u64| {
        let first = last + 1 - chunk.len() as u64;
        let mut value = vec![2u8];
        value.extend_from_slice(&(chunk.len() as u32).to_le_bytes());
        for r in chunk.drain(..) {
            value.extend_from_slice(&(r.len() as u32).to_le_bytes());
            value.extend_from_slice(&r);
        }
        let mut key = vec![b'k'];
        key.extend_from_slice(&first.to_be_bytes());
        batch.insert(key, value);
    };
    for position in 1..=count {
        let stream = ["incident-INC-1", "incident-INC-2", "alert-A"][(position % 3) as usize];
        let version = versions.entry(stream).or_insert(0);
        *version += 1;
        let at = start + chrono::Duration::milliseconds(position as i64);
        let record = old_record(position, stream, *version, Uuid::new_v4(), at);
        chunk.push(record.to_bytes());
        // Seven records per chunk (chunks never span two group commits; here
        // every seventh record ends one).
        if chunk.len() == 7 || position == count || position == indexed {
            flush_chunk(&mut batch, &mut chunk, position);
        }
        if position <= indexed {
            let run = runs.entry(stream).or_insert((*version, Vec::new()));
            run.1.push(position);
            let mut i_key = vec![b'i'];
            i_key.extend_from_slice(record.id.as_bytes());
            let mut i_value = position.to_be_bytes().to_vec();
            i_value.extend_from_slice(&version.to_be_bytes());
            i_value.extend_from_slice(stream.as_bytes());
            batch.insert(i_key, i_value);
        }
        records.push(record);
    }
    for (stream, (first, positions)) in runs {
        let mut s_key = vec![b's'];
        s_key.extend_from_slice(stream.as_bytes());
        s_key.push(0);
        s_key.extend_from_slice(&first.to_be_bytes());
        batch.insert(s_key, positions.iter().flat_map(|p| p.to_be_bytes()).collect::<Vec<u8>>());
    }
    batch.insert(b"mindexed".as_slice(), &indexed.to_be_bytes());
    db.apply_batch(batch).unwrap();
    db.flush().unwrap();
    records
}

/// A format-2 folder (one `i` key per id) is upgraded in place at open:
/// its ids become runs, and every old id is still recognised (also those
/// a crash left unindexed, and after another restart), every stream reads
/// in full.
#[tokio::test]
async fn a_format_2_folder_is_upgraded_in_place_and_its_ids_are_still_deduplicated() {
    let dir = tempfile::tempdir().unwrap();
    let old = write_format_2(dir.path(), 600, 520);

    for open in 0..2 {
        let log = Log::open(dir.path(), Options::default()).unwrap();
        assert_eq!(log.head(), Position(600 + open));
        assert_eq!(log.verify().unwrap().records, 600 + open);
        let k = keys(&log);
        assert_eq!(count(&k, 'i'), 0, "open {open}: {k:?}");
        // 520 upgraded ids in one run of 8,192 positions (three pieces), and
        // the 80 the open indexed again in one run (one piece); then the
        // append below, indexed at close.
        assert_eq!(count(&k, 'j'), 4 + open, "open {open}: {k:?}");
        for r in &old {
            assert_eq!(log.locate(r.id).unwrap(), Some((r.position, r.stream.clone(), r.version)), "open {open}");
            let retry = log.append(&r.stream, ExpectedVersion::Any, vec![event_with_id(r.id, 0)]).await.unwrap();
            assert_eq!((retry.first, retry.deduplicated), (r.position, true), "open {open}: {}", r.id);
        }
        for stream in ["incident-INC-1", "incident-INC-2", "alert-A"] {
            let stream = sid(stream);
            let read = log.read_stream(&stream, StreamVersion(1), 1000).unwrap();
            let expected: Vec<Position> = old.iter().filter(|r| r.stream == stream).map(|r| r.position).collect();
            assert_eq!(read.iter().map(|r| r.position).take(expected.len()).collect::<Vec<_>>(), expected);
        }
        assert_eq!(log.read_all(Position(1), 1000).unwrap().len() as u64, 600 + open);
        if open == 0 {
            // New appends continue the streams.
            let alert = sid("alert-A");
            let next = log.append(&alert, ExpectedVersion::Exact(StreamVersion(200)), vec![event(601)]).await.unwrap();
            assert_eq!(next.first, Position(601));
        }
        log.close().await;
        drop(log);
    }
    let db = sled::open(dir.path()).unwrap();
    assert_eq!(db.get(b"mformat").unwrap().as_deref(), Some(b"klaxon-log/3".as_slice()));
}

#[tokio::test]
async fn a_folder_of_an_unknown_format_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = sled::open(dir.path()).unwrap();
        db.insert(b"mformat", b"klaxon-log/4".as_slice()).unwrap();
        db.flush().unwrap();
    }
    let err = Log::open(dir.path(), Options::default()).err().expect("refused");
    assert!(err.to_string().contains("klaxon-log/4"), "{err}");
    let db = sled::open(dir.path()).unwrap();
    assert_eq!(db.get(b"mformat").unwrap().as_deref(), Some(b"klaxon-log/4".as_slice()));
}

#[tokio::test]
async fn an_import_is_packed_like_appends_and_matches_the_stored_records() {
    let (_src_dir, src) = temp_log(Options::default());
    for n in 0..30 {
        src.append(&sid(&format!("s-{}", n % 4)), ExpectedVersion::Any, vec![event(n)]).await.unwrap();
    }
    let records = src.read_all(Position(1), 100).unwrap();
    let (_dir, log) = temp_log(Options::default());
    log.import(records[..20].to_vec(), vec![], None).await.unwrap();
    // An overlapping import compares with the chunked records, then adds the rest.
    log.import(records[10..].to_vec(), vec![], None).await.unwrap();
    assert_eq!(log.read_all(Position(1), 100).unwrap(), records);
    let k = keys(&log);
    assert_eq!(count(&k, 'k'), 2, "{k:?}");
    for r in &records {
        assert_eq!(log.locate(r.id).unwrap(), Some((r.position, r.stream.clone(), r.version)));
    }
    log.verify().unwrap();
    src.close().await;
    log.close().await;
}
