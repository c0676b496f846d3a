//! Appends, reads, idempotency, checkpoints, reopen, close and corruption.

use klaxon_log::{Error, ExpectedVersion, Log, Options, Position, StreamVersion};

use crate::support::{event, sid, temp_log};

#[tokio::test]
async fn appends_get_gapless_positions_and_versions() {
    let (_dir, log) = temp_log(Options::default());
    assert_eq!(log.head(), Position(0));
    let a = log.append(&sid("a"), ExpectedVersion::NoStream, vec![event(1), event(2)]).await.unwrap();
    assert_eq!((a.first, a.last, a.next_version, a.deduplicated), (Position(1), Position(2), StreamVersion(3), false));
    let b = log.append(&sid("b"), ExpectedVersion::Any, vec![event(3)]).await.unwrap();
    assert_eq!((b.first, b.last, b.next_version), (Position(3), Position(3), StreamVersion(2)));
    let c = log.append(&sid("a"), ExpectedVersion::Exact(StreamVersion(2)), vec![event(4)]).await.unwrap();
    assert_eq!((c.first, c.next_version), (Position(4), StreamVersion(4)));
    assert_eq!(log.head(), Position(4));

    let all = log.read_all(Position(0), 100).unwrap();
    let summary: Vec<(u64, &str, u64, u64)> = all
        .iter()
        .map(|r| {
            (
                r.position.0,
                r.stream.as_str(),
                r.version.0,
                r.data.parse::<serde_json::Value>().unwrap()["n"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(summary, vec![(1, "a", 1, 1), (2, "a", 2, 2), (3, "b", 1, 3), (4, "a", 3, 4)]);
    assert!(all.windows(2).all(|w| w[0].recorded_at <= w[1].recorded_at));
    assert_eq!(all[0].metadata.actor.as_deref(), Some("tester"));

    let stream_a = log.read_stream(&sid("a"), StreamVersion(2), 10).unwrap();
    assert_eq!(stream_a.iter().map(|r| r.position.0).collect::<Vec<_>>(), vec![2, 4]);
    assert_eq!(log.read_stream(&sid("a"), StreamVersion(0), 1).unwrap().len(), 1);
    assert_eq!(log.read_all(Position(3), 1).unwrap()[0].position, Position(3));
    assert_eq!(log.stream_version(&sid("a")).unwrap(), StreamVersion(3));
    assert_eq!(log.stream_version(&sid("zzz")).unwrap(), StreamVersion(0));
    assert!(log.read_stream(&sid("zzz"), StreamVersion(1), 10).unwrap().is_empty());
    log.close().await;
}

#[tokio::test]
async fn a_retry_returns_the_original_positions_and_writes_nothing_even_after_reopen() {
    let (dir, log) = temp_log(Options::default());
    let events = vec![event(1), event(2)];
    log.append(&sid("x"), ExpectedVersion::Any, vec![event(0)]).await.unwrap();
    let first = log.append(&sid("s"), ExpectedVersion::NoStream, events.clone()).await.unwrap();
    log.append(&sid("x"), ExpectedVersion::Any, vec![event(3)]).await.unwrap();
    // The retry carries the original expectation, which no longer holds: the
    // id check comes first, so it still succeeds as a no-op.
    let retry = log.append(&sid("s"), ExpectedVersion::NoStream, events.clone()).await.unwrap();
    assert_eq!((retry.first, retry.last, retry.next_version), (first.first, first.last, first.next_version));
    assert!(retry.deduplicated);
    assert_eq!(log.head(), Position(4));
    assert_eq!(log.locate(events[1].id).unwrap(), Some((Position(3), sid("s"), StreamVersion(2))));
    assert_eq!(log.locate(uuid::Uuid::new_v4()).unwrap(), None);
    log.close().await;
    drop(log);

    let log = Log::open(dir.path(), Options::default()).unwrap();
    let again = log.append(&sid("s"), ExpectedVersion::Any, events).await.unwrap();
    assert_eq!((again.first, again.deduplicated), (Position(2), true));
    assert_eq!(log.head(), Position(4));
    assert_eq!(log.verify().unwrap().records, 4);
    log.close().await;
}

#[tokio::test]
async fn concurrent_retries_of_one_append_write_it_once() {
    let (_dir, log) = temp_log(Options::default());
    let events = vec![event(1), event(2), event(3)];
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let (log, events) = (log.clone(), events.clone());
            tokio::spawn(async move { log.append(&sid("once"), ExpectedVersion::Any, events).await.unwrap() })
        })
        .collect();
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.unwrap());
    }
    assert_eq!(results.iter().filter(|a| !a.deduplicated).count(), 1);
    assert!(results.iter().all(|a| (a.first, a.last) == (Position(1), Position(3))));
    assert_eq!(log.head(), Position(3));
    log.close().await;
}

#[tokio::test]
async fn checkpoints_are_durable_and_per_consumer() {
    let (dir, log) = temp_log(Options::default());
    assert_eq!(log.load_checkpoint("paging").unwrap(), Position(0));
    log.save_checkpoint("paging", Position(41)).await.unwrap();
    log.save_checkpoint("paging", Position(42)).await.unwrap();
    log.save_checkpoint("review", Position(7)).await.unwrap();
    log.close().await;
    drop(log);
    let log = Log::open(dir.path(), Options::default()).unwrap();
    assert_eq!(log.load_checkpoint("paging").unwrap(), Position(42));
    assert_eq!(log.load_checkpoint("review").unwrap(), Position(7));
    assert_eq!(log.head(), Position(0), "checkpoints are not records");
    log.close().await;
}

#[tokio::test]
async fn close_finishes_queued_appends_and_refuses_new_ones() {
    let (dir, log) = temp_log(Options::default());
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let log = log.clone();
            tokio::spawn(
                async move { log.append(&sid(&format!("s{}", i % 7)), ExpectedVersion::Any, vec![event(i)]).await },
            )
        })
        .collect();
    tokio::task::yield_now().await;
    log.close().await;
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => ok += 1,
            Err(Error::Closed) => {}
            Err(e) => panic!("unexpected error {e}"),
        }
    }
    assert!(matches!(log.append(&sid("late"), ExpectedVersion::Any, vec![event(0)]).await, Err(Error::Closed)));
    assert_eq!(log.head(), Position(ok));
    drop(log);
    let reopened = Log::open(dir.path(), Options::default()).unwrap();
    assert_eq!(reopened.head(), Position(ok), "every acknowledged append survives close");
    assert_eq!(reopened.verify().unwrap().records, ok);
    let next = reopened.append(&sid("after"), ExpectedVersion::Any, vec![event(0)]).await.unwrap();
    assert_eq!(next.first, Position(ok + 1));
    reopened.close().await;
}

#[tokio::test]
async fn a_damaged_record_is_reported_with_its_position() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), Options::default()).unwrap();
    for i in 0..5 {
        log.append(&sid("s"), ExpectedVersion::Any, vec![event(i)]).await.unwrap();
    }
    log.close().await;
    drop(log);
    {
        // Flip one byte of record 3 through sled itself: each append was a
        // group of its own, so record 3 is alone in the chunk keyed 3.
        let db = sled::open(dir.path()).unwrap();
        let key = [&b"k"[..], &3u64.to_be_bytes()].concat();
        let mut value = db.get(&key).unwrap().unwrap().to_vec();
        let last = value.len() - 2;
        value[last] ^= 1;
        db.insert(key, value).unwrap();
        db.flush().unwrap();
    }
    let log = Log::open(dir.path(), Options::default()).unwrap();
    assert_eq!(log.read_all(Position(1), 2).unwrap().len(), 2, "records before it read fine");
    let err = log.read_all(Position(1), 10).unwrap_err();
    assert!(matches!(err, Error::Corrupt { position: Position(3), .. }), "{err}");
    assert!(err.to_string().contains("checksum mismatch"), "{err}");
    assert!(matches!(log.verify(), Err(Error::Corrupt { position: Position(3), .. })));
    let mut sub = log.subscribe(Position(0));
    assert_eq!(sub.next().await.unwrap().unwrap().position, Position(1));
    assert_eq!(sub.next().await.unwrap().unwrap().position, Position(2));
    assert!(matches!(sub.next().await, Some(Err(Error::Corrupt { position: Position(3), .. }))));
    assert!(matches!(
        log.read_stream(&sid("s"), StreamVersion(1), 10),
        Err(Error::Corrupt { position: Position(3), .. })
    ));
    log.close().await;
}

#[tokio::test]
async fn a_folder_that_is_not_a_log_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = sled::open(dir.path()).unwrap();
        db.insert("something", "else").unwrap();
        db.flush().unwrap();
    }
    match Log::open(dir.path(), Options::default()) {
        Err(Error::IncompatibleFormat { reason, .. }) => assert!(reason.contains("marker"), "{reason}"),
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("opened a foreign sled database"),
    }
}

#[tokio::test]
async fn large_events_up_to_the_limit_round_trip() {
    let (dir, log) = temp_log(Options::default());
    // Large enough for sled to store the page as a separate blob file.
    let mut big = event(1);
    big.data = klaxon_log::EventData::from_value(&"y".repeat(1024 * 1024 - 200)).unwrap();
    log.append(&sid("big"), ExpectedVersion::Any, vec![big.clone()]).await.unwrap();
    // Acknowledged, so every blob file sled wrote for it has been fsynced.
    let blobs = std::fs::read_dir(dir.path().join("blobs")).unwrap().count() as u64;
    assert!(blobs >= 1, "a 1 MiB event is stored in a sled blob file");
    let work = log.stats().work.snapshot();
    assert!(work.blob_files_synced >= blobs, "{} blob files, {} synced", blobs, work.blob_files_synced);
    if cfg!(target_os = "linux") {
        assert_eq!(work.blob_listings, 1, "the watch names new blob files: one listing, at open");
    }
    log.close().await;
    drop(log);
    let log = Log::open(dir.path(), Options::default()).unwrap();
    assert_eq!(log.read_all(Position(1), 1).unwrap()[0].data, big.data);
    log.close().await;
}

#[tokio::test]
async fn a_folder_in_use_is_refused_with_a_clear_error() {
    let (dir, log) = temp_log(Options::default());
    match Log::open(dir.path(), Options::default()) {
        Err(Error::Locked { path }) => assert_eq!(path, dir.path().display().to_string()),
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("opened a log twice"),
    }
    log.close().await;
}

#[tokio::test]
async fn stats_count_every_append_and_group_commits_add_up() {
    let (_dir, log) = temp_log(Options::default());
    let mut tasks = Vec::new();
    for n in 0..40u64 {
        let log = log.clone();
        tasks.push(tokio::spawn(async move {
            log.append(&sid(&format!("s-{}", n % 4)), ExpectedVersion::Any, vec![event(n)]).await.unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    // A refused append is answered too, and observed as such.
    let refused = log.append(&sid("s-0"), ExpectedVersion::NoStream, vec![event(99)]).await;
    assert!(refused.is_err());
    let appends = log.stats().append_micros.snapshot();
    assert_eq!(appends.count, 41);
    assert_eq!(*appends.cumulative.last().unwrap(), 41);
    let groups = log.stats().group_appends.snapshot();
    assert_eq!(groups.sum, 41, "every append went through exactly one group commit");
    assert!(groups.count >= 1 && groups.count <= 41);
}

/// A lone append (nothing else queued, the sync thread idle) is flushed,
/// synced and answered without a handoff to the sync thread: by the
/// appending task itself when it runs on a multi-threaded runtime (no
/// thread handoff at all), by the writer thread otherwise (here: the
/// test's own `block_on` future, where blocking in place is not allowed).
/// Either way it is durable (the head shows it) when answered, positions
/// stay gapless, a retry is still recognised, and appends that queue up
/// still share the sync thread's rounds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_append_is_synced_by_its_appender_or_the_writer_and_answered_only_once_durable() {
    let (_dir, log) = temp_log(Options::default());
    let work = || log.stats().work.snapshot();
    for n in 0..20u64 {
        let appended = log.append(&sid("lone"), ExpectedVersion::Any, vec![event(n)]).await.unwrap();
        assert_eq!(log.head(), appended.last, "answered before the head showed it durable");
        assert_eq!(appended.first, Position(n + 1));
    }
    let by_writer = work();
    assert_eq!((by_writer.writer_rounds, by_writer.appender_rounds, by_writer.syncs), (20, 0, 20), "{by_writer:?}");
    let in_task = {
        let log = log.clone();
        tokio::spawn(async move {
            let last_id = uuid::Uuid::new_v4();
            for n in 20..40u64 {
                let event = if n == 39 { crate::support::event_with_id(last_id, n) } else { event(n) };
                let appended = log.append(&sid("lone"), ExpectedVersion::Exact(StreamVersion(n)), vec![event]).await;
                let appended = appended.unwrap();
                assert_eq!(log.head(), appended.last, "answered before the head showed it durable");
                assert_eq!((appended.first, appended.deduplicated), (Position(n + 1), false));
            }
            // A retry of a lone append is recognised on the same path.
            let stream = sid("lone");
            let retry = log.append(&stream, ExpectedVersion::Any, vec![crate::support::event_with_id(last_id, 39)]);
            let retry = retry.await.unwrap();
            assert_eq!((retry.first, retry.deduplicated), (Position(40), true));
        })
    };
    in_task.await.unwrap();
    let sequential = work().since(&by_writer);
    assert_eq!((sequential.appender_rounds, sequential.writer_rounds), (21, 0), "{sequential:?}");
    // The retry's round wrote nothing and its original was durable: no sync.
    assert_eq!(sequential.syncs, 20, "{sequential:?}");
    assert_eq!(log.head(), Position(40));
    let sequential = work();
    let tasks: Vec<_> = (0..64u64)
        .map(|n| {
            let log = log.clone();
            tokio::spawn(async move {
                for i in 0..10 {
                    log.append(&sid(&format!("s-{n}")), ExpectedVersion::Any, vec![event(n * 100 + i)]).await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let concurrent = work();
    assert_eq!(log.head(), Position(40 + 640));
    // 640 appends from 64 tasks share syncs.
    assert!(concurrent.syncs - sequential.syncs < 640, "{concurrent:?}");
    log.verify().unwrap();
    log.close().await;
}

/// The id filter saves the id-index read of a fresh id without weakening
/// idempotency: after a reopen (ids indexed in sled, in the filter only
/// through its scan) and past the threshold of the index written behind,
/// every earlier id is still recognised as a retry, and once the filter is
/// complete fresh ids rarely read the id index.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_id_filter_keeps_retries_exact_and_spares_fresh_ids_the_index_read() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), Options::default()).unwrap();
    let mut written = Vec::new();
    // More than the index threshold (8,192), so that most ids are in sled's
    // id index and none of them in the tail after the close.
    for batch in 0..9u64 {
        let events: Vec<_> = (0..1000).map(|n| event(batch * 1000 + n)).collect();
        let ids: Vec<_> = events.iter().map(|e| e.id).collect();
        let appended = log.append(&sid(&format!("s{}", batch % 3)), ExpectedVersion::Any, events).await.unwrap();
        written.push((batch, ids, appended));
    }
    log.close().await;
    drop(log);

    let log = Log::open(dir.path(), Options::default()).unwrap();
    let reads = || log.stats().work.snapshot().id_index_reads;
    // Until the filter's scan is taken in, every fresh id reads the index;
    // an append that did not read it proves the filter complete. Bounded:
    // the scan runs on its own thread, slow on a loaded machine.
    let mut complete = false;
    for n in 0..2000 {
        let before = reads();
        log.append(&sid("fresh"), ExpectedVersion::Any, vec![event(n)]).await.unwrap();
        if reads() == before {
            complete = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(complete, "the id filter never completed");
    let before = reads();
    for n in 0..200 {
        log.append(&sid("fresh"), ExpectedVersion::Any, vec![event(n)]).await.unwrap();
    }
    // About 1% false positives expected; 10% would mean a broken filter.
    assert!(reads() - before < 20, "{} id-index reads for 200 fresh ids", reads() - before);
    let head = log.head();
    for (batch, ids, original) in &written {
        let retry = ids.iter().map(|id| crate::support::event_with_id(*id, 0)).collect();
        let again = log.append(&sid(&format!("s{}", batch % 3)), ExpectedVersion::Any, retry).await.unwrap();
        assert!(again.deduplicated);
        assert_eq!((again.first, again.last), (original.first, original.last));
    }
    assert_eq!(log.head(), head, "retries write nothing");
    log.close().await;
}

/// Appends that write nothing (retries, and appends refused by the writer:
/// a wrong expected version, a partial duplicate, an id of another
/// stream) are answered without a flush and sync: their originals are
/// durable already. Each is answered correctly and the head does not move;
/// the next append that writes syncs as always. `lone`: whether the
/// caller's appends are committed alone on its thread (in a task of a
/// multi-threaded runtime) rather than by the writer thread.
async fn rounds_that_write_nothing_do_not_sync(lone: bool) {
    let (_dir, log) = temp_log(Options::default());
    let events = vec![event(1), event(2)];
    let first = log.append(&sid("s"), ExpectedVersion::NoStream, events.clone()).await.unwrap();
    let head = log.head();
    let before = log.stats().work.snapshot();

    let retry = log.append(&sid("s"), ExpectedVersion::NoStream, events.clone()).await.unwrap();
    assert_eq!((retry.first, retry.last, retry.deduplicated), (first.first, first.last, true));
    let conflict = log.append(&sid("s"), ExpectedVersion::Exact(StreamVersion(7)), vec![event(3)]).await;
    assert!(matches!(conflict, Err(Error::WrongExpectedVersion { .. })), "{conflict:?}");
    let partial = log.append(&sid("s"), ExpectedVersion::Any, vec![events[0].clone(), event(4)]).await;
    assert!(matches!(partial, Err(Error::PartialDuplicate { present: 1, count: 2, .. })), "{partial:?}");
    let elsewhere = log.append(&sid("t"), ExpectedVersion::Any, vec![events[1].clone()]).await;
    assert!(matches!(elsewhere, Err(Error::IdInOtherStream { .. })), "{elsewhere:?}");
    let nothing = log.stats().work.snapshot().since(&before);
    assert_eq!(nothing.syncs, 0, "rounds that wrote nothing synced: {nothing:?}");
    let rounds = if lone { (0, 4) } else { (4, 0) };
    assert_eq!((nothing.writer_rounds, nothing.appender_rounds), rounds, "{nothing:?}");
    assert_eq!(log.head(), head);

    let appended = log.append(&sid("s"), ExpectedVersion::Any, vec![event(5)]).await.unwrap();
    assert_eq!(log.head(), appended.last);
    assert_eq!(log.stats().work.snapshot().since(&before).syncs, 1, "an append that writes syncs");
    log.close().await;
}

/// Through the writer thread (a current-thread runtime never commits alone).
#[tokio::test]
async fn rounds_of_the_writer_thread_that_write_nothing_do_not_sync() {
    rounds_that_write_nothing_do_not_sync(false).await;
}

/// Lone appends committed on the appender's thread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lone_appends_that_write_nothing_do_not_sync() {
    tokio::spawn(rounds_that_write_nothing_do_not_sync(true)).await.unwrap();
}
