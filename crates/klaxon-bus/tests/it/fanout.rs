//! The embedded process's shared reader: every follower gets exactly every
//! record from its own position, in order, once, whatever the others do,
//! while the log is read about once for all of them.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use klaxon_bus::{EventSource, Fanout, SharedRecord};
use klaxon_log::{ExpectedVersion, Log, Position, StreamId};

use crate::support::{event, open};

/// A limit for a whole test's wait, never a timing assertion.
const LIMIT: Duration = Duration::from_secs(60);

/// Appends events `from..=to` in appends of 100 (group commits), to
/// streams `s-<n % 7>`.
async fn fill_batched(log: &Log, from: u64, to: u64) {
    let mut n = from;
    while n <= to {
        let last = (n + 99).min(to);
        let stream = StreamId::new(format!("s-{}", n % 7)).unwrap();
        log.append(&stream, ExpectedVersion::Any, (n..=last).map(event).collect()).await.expect("append");
        n = last + 1;
    }
}

/// Takes records from `follower` until position `to`, checking each is the
/// next position; returns them.
async fn follow_to(mut follower: klaxon_bus::fanout::Follower, to: u64) -> Vec<Arc<SharedRecord>> {
    let mut out: Vec<Arc<SharedRecord>> = Vec::new();
    let mut expected = follower.next_position();
    while expected.0 <= to {
        let record = follower.next().await.expect("not ended").expect("no error");
        assert_eq!(record.position, expected, "the next position, none skipped or repeated");
        expected = expected.next();
        out.push(record);
    }
    out
}

fn assert_same(got: &[Arc<SharedRecord>], log: &Log, from: u64) {
    let want = log.read_all(Position(from), got.len() + 1).unwrap();
    assert_eq!(got.len(), want.len(), "every record up to the head from {from}");
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(*g.record(), *w, "the record as the log holds it");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn followers_from_different_positions_get_every_record_once_in_order_with_appends_during_catch_up() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    fill_batched(&log, 1, 3000).await;
    // A small window: many rounds of reading, waiting and taking.
    let fanout = Fanout::with_limits(log.clone(), 64, LIMIT);
    let starts = [0, 1, 1, 700, 2999, 3001];
    // All created before any runs (as a process's services start together):
    // those from the start share the window, the others read privately
    // until their position is in it.
    let followers: Vec<_> = starts.iter().map(|&from| fanout.follower(Position(from))).collect();
    let tasks: Vec<_> = followers.into_iter().map(|f| tokio::spawn(follow_to(f, 4000))).collect();
    // Appended while they catch up: the live tail after it.
    fill_batched(&log, 3001, 4000).await;
    for (task, from) in tasks.into_iter().zip(starts) {
        let got = tokio::time::timeout(LIMIT, task).await.expect("within the limit").unwrap();
        assert_same(&got, &log, from.max(1));
    }
    let stats = fanout.stats();
    let yielded: u64 = starts.iter().map(|&f| 4000 - f.max(1) + 1).sum();
    assert_eq!(stats.shared_taken + stats.private_read, yielded, "each yielded record came from one place: {stats:?}");
    assert!(
        stats.shared_read + stats.private_read < yielded,
        "records shared rather than read once per follower: {stats:?}, {yielded} yielded"
    );
    assert!(fanout.window_len() <= 64, "the window stays bounded");
    log.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn followers_in_lockstep_read_the_log_once() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    fill_batched(&log, 1, 5000).await;
    let fanout = Fanout::with_limits(log.clone(), 256, LIMIT);
    // Created before any reads: all members of the window from the start.
    let followers: Vec<_> = (0..5).map(|_| fanout.follower(Position(1))).collect();
    let tasks: Vec<_> = followers.into_iter().map(|f| tokio::spawn(follow_to(f, 5000))).collect();
    for task in tasks {
        let got = tokio::time::timeout(LIMIT, task).await.expect("within the limit").unwrap();
        assert_same(&got, &log, 1);
    }
    let stats = fanout.stats();
    assert_eq!(stats.shared_read, 5000, "each record read from the log once for five followers: {stats:?}");
    assert_eq!(stats.private_read, 0);
    assert_eq!(stats.shared_taken, 5 * 5000);
    log.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_dropped_mid_way_leaves_the_others_whole() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    fill_batched(&log, 1, 2000).await;
    let fanout = Fanout::with_limits(log.clone(), 32, LIMIT);
    let mut dropped = fanout.follower(Position(1));
    let stays = fanout.follower(Position(1));
    let stays = tokio::spawn(follow_to(stays, 2500));
    for expected in 1..=40 {
        let record = dropped.next().await.unwrap().unwrap();
        assert_eq!(record.position, Position(expected));
    }
    // While it holds the window's oldest records: the other waits for it,
    // then goes on without it.
    drop(dropped);
    fill_batched(&log, 2001, 2500).await;
    let got = tokio::time::timeout(LIMIT, stays).await.expect("within the limit").unwrap();
    assert_same(&got, &log, 1);
    // One that joins after: its own position, from the log.
    let late = tokio::time::timeout(LIMIT, follow_to(fanout.follower(Position(10)), 2500)).await.unwrap();
    assert_same(&late, &log, 10);
    log.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_derived_from_a_shared_record_is_derived_once_for_every_follower() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    fill_batched(&log, 1, 3000).await;
    let fanout = Fanout::with_limits(log.clone(), 256, LIMIT);
    // What each follower's consumer derives (the services decode), counted.
    let derivations = Arc::new(AtomicU64::new(0));
    let followers: Vec<_> = (0..5).map(|_| fanout.follower(Position(1))).collect();
    let tasks: Vec<_> = followers
        .into_iter()
        .map(|mut follower| {
            let derivations = derivations.clone();
            tokio::spawn(async move {
                let mut derived = Vec::new();
                while follower.next_position().0 <= 3000 {
                    let record = follower.next().await.expect("not ended").expect("no error");
                    let value = *record.derived(|r| (r.position, derivations.fetch_add(1, Ordering::Relaxed)));
                    assert_eq!(value.0, record.position, "derived from this record");
                    derived.push(value);
                }
                derived
            })
        })
        .collect();
    let mut seen = Vec::new();
    for task in tasks {
        seen.push(tokio::time::timeout(LIMIT, task).await.expect("within the limit").unwrap());
    }
    assert_eq!(derivations.load(Ordering::Relaxed), 3000, "one derivation per record for five followers");
    assert!(seen.iter().all(|s| *s == seen[0]), "every follower got the very value derived once");
    let stats = fanout.stats();
    assert_eq!(stats.derived, 3000, "{stats:?}");
    assert_eq!(stats.shared_taken, 5 * 3000, "{stats:?}");
    log.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_follower_is_detached_and_still_gets_every_record() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    fill_batched(&log, 1, 1000).await;
    // A stall limit of zero: the first full window detaches the follower
    // that does not take its records.
    let fanout = Fanout::with_limits(log.clone(), 16, Duration::ZERO);
    let mut stalled = fanout.follower(Position(1));
    let first = stalled.next().await.unwrap().unwrap();
    assert_eq!(first.position, Position(1));
    let moving = tokio::time::timeout(LIMIT, follow_to(fanout.follower(Position(1)), 1000)).await.unwrap();
    assert_same(&moving, &log, 1);
    assert!(fanout.stats().detached >= 1, "the stalled follower was detached: {:?}", fanout.stats());
    let rest = tokio::time::timeout(LIMIT, follow_to(stalled, 1000)).await.unwrap();
    assert_same(&rest, &log, 2);
    log.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_the_log_ends_every_follower_after_the_durable_records() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    fill_batched(&log, 1, 300).await;
    let fanout = Fanout::with_limits(log.clone(), 64, LIMIT);
    let mut followers = [fanout.follow(Position(1)), fanout.follow(Position(250)), fanout.follow(Position(301))];
    log.close().await;
    for (follower, from) in followers.iter_mut().zip([1u64, 250, 301]) {
        let mut next = from;
        let ended = tokio::time::timeout(LIMIT, async {
            while let Some(record) = follower.next_shared().await {
                assert_eq!(record.unwrap().position, Position(next));
                next += 1;
            }
        })
        .await;
        assert!(ended.is_ok(), "the follower from {from} ended");
        assert_eq!(next, 301, "every durable record, then the end");
    }
    // `subscribe` stays a private tail of the log, with the same records.
    let mut private = fanout.subscribe(Position(299));
    assert_eq!(private.next().await.unwrap().unwrap().position, Position(299));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_record_is_an_error_for_every_follower_never_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    crate::support::fill(&log, 1, 20).await;
    log.close().await;
    drop(log);
    {
        // Flip one byte of record 12 through sled itself, as the log's own
        // test does: each append was a group of its own, so record 12 is
        // alone in the chunk keyed 12.
        let db = sled::open(dir.path()).unwrap();
        let key = [&b"k"[..], &12u64.to_be_bytes()].concat();
        let mut value = db.get(&key).unwrap().expect("record 12's chunk").to_vec();
        let last = value.len() - 2;
        value[last] ^= 1;
        db.insert(key, value).unwrap();
        db.flush().unwrap();
    }
    let log = open(dir.path());
    let fanout = Fanout::with_limits(log.clone(), 8, LIMIT);
    let mut a = fanout.follower(Position(1));
    let mut b = fanout.follower(Position(5));
    for (follower, from) in [(&mut a, 1u64), (&mut b, 5)] {
        for p in from..12 {
            assert_eq!(follower.next().await.unwrap().unwrap().position, Position(p));
        }
        for _ in 0..2 {
            let err = follower.next().await.unwrap().unwrap_err();
            assert!(matches!(err, klaxon_log::Error::Corrupt { position: Position(12), .. }), "{err}");
        }
        assert_eq!(follower.next_position(), Position(12), "it stays at the damaged position");
    }
    log.close().await;
}
