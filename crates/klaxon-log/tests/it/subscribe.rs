//! Subscriptions: catch-up then live, in order, no gap, no duplicate, also
//! for a slow subscriber.

use std::time::Duration;

use klaxon_log::{ExpectedVersion, Log, Options, Position, Subscription};

use crate::support::{event, sid, temp_log};

const WRITERS: u64 = 4;
const PER_WRITER: u64 = 250;

fn spawn_writers(log: &Log) -> Vec<tokio::task::JoinHandle<()>> {
    (0..WRITERS)
        .map(|w| {
            let log = log.clone();
            tokio::spawn(async move {
                for i in 0..PER_WRITER {
                    // Mix single and batched appends.
                    let events = if i % 5 == 0 { vec![event(i), event(i)] } else { vec![event(i)] };
                    log.append(&sid(&format!("w{w}")), ExpectedVersion::Any, events).await.unwrap();
                }
            })
        })
        .collect()
}

fn total() -> u64 {
    WRITERS * (PER_WRITER + PER_WRITER / 5)
}

async fn collect(mut sub: Subscription, count: u64, slow: bool) -> Vec<u64> {
    let mut got = Vec::new();
    while (got.len() as u64) < count {
        let record = tokio::time::timeout(Duration::from_secs(30), sub.next())
            .await
            .expect("a record within 30 s")
            .expect("subscription open")
            .expect("record intact");
        got.push(record.position.0);
        if slow && got.len() % 10 == 0 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_from_zero_gets_every_record_once_in_order_while_writers_run() {
    let (_dir, log) = temp_log(Options::default());
    log.append(&sid("before"), ExpectedVersion::Any, vec![event(0), event(1)]).await.unwrap();
    let sub = log.subscribe(Position(0));
    let reader = tokio::spawn(collect(sub, total() + 2, false));
    for w in spawn_writers(&log) {
        w.await.unwrap();
    }
    let got = reader.await.unwrap();
    assert_eq!(got, (1..=total() + 2).collect::<Vec<_>>());
    log.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_subscriber_misses_nothing_and_does_not_hold_writers_back() {
    let (_dir, log) = temp_log(Options::default());
    let slow = tokio::spawn(collect(log.subscribe(Position(0)), total(), true));
    // A late subscriber starting in the middle catches up, then goes live.
    let writers = spawn_writers(&log);
    tokio::time::sleep(Duration::from_millis(20)).await;
    let late = tokio::spawn(collect(log.subscribe(Position(0)), total(), false));
    for w in writers {
        w.await.unwrap();
    }
    // The writers finished while the slow subscriber is still behind.
    assert_eq!(log.head(), Position(total()));
    assert_eq!(late.await.unwrap(), (1..=total()).collect::<Vec<_>>());
    assert_eq!(slow.await.unwrap(), (1..=total()).collect::<Vec<_>>());
    log.close().await;
}

#[tokio::test]
async fn a_subscription_starts_at_its_position_and_ends_when_the_log_closes() {
    let (_dir, log) = temp_log(Options::default());
    for i in 0..10 {
        log.append(&sid("s"), ExpectedVersion::Any, vec![event(i)]).await.unwrap();
    }
    let mut sub = log.subscribe(Position(8));
    assert_eq!(sub.next().await.unwrap().unwrap().position, Position(8));
    log.close().await;
    assert_eq!(sub.next().await.unwrap().unwrap().position, Position(9));
    assert_eq!(sub.next().await.unwrap().unwrap().position, Position(10));
    assert!(sub.next().await.is_none());
}

/// A subscription catching up reads from sled without ever waiting, so
/// without a cooperative yield it would hold its worker thread until the
/// head: on `klaxond up`'s two worker threads, two services folding a long
/// log left `/metrics` and gRPC unanswered for minutes. On a
/// single-threaded runtime another task runs only when this one yields.
#[tokio::test(flavor = "current_thread")]
async fn a_subscription_catching_up_lets_other_tasks_run() {
    let (_dir, log) = temp_log(Options::default());
    let records: u64 = 2_000;
    for batch in 0..records / 100 {
        log.append(&sid("s"), ExpectedVersion::Any, (0..100).map(|i| event(batch * 100 + i)).collect()).await.unwrap();
    }
    let (ran, mut other) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let _ = ran.send(());
    });
    let mut sub = log.subscribe(Position(1));
    let mut other_ran_at = None;
    for expected in 1..=records {
        let record = sub.next().await.expect("subscription open").expect("record intact");
        assert_eq!(record.position, Position(expected));
        if other_ran_at.is_none() && other.try_recv().is_ok() {
            other_ran_at = Some(expected);
        }
    }
    let at = other_ran_at.expect("the other task ran while the subscription caught up");
    assert!(at < records, "the other task ran only at the end ({at})");
    log.close().await;
}
