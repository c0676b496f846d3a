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
