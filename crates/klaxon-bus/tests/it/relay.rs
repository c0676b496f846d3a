//! The relay against a real nats-server: order, headers, and resuming after
//! NATS dies, with or without its data.

use std::time::Duration;

use futures_util::StreamExt;
use klaxon_bus::jetstream::{Names, POSITION_HEADER};
use klaxon_bus::relay::{CHECKPOINT, Relay};
use klaxon_log::{Log, Position};
use klaxon_tests::nats::NatsServer;
use tokio_util::sync::CancellationToken;

use crate::support::{TRACEPARENT, event, fill, open};

struct Running {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), klaxon_bus::relay::Error>>,
    acked: tokio::sync::watch::Receiver<Position>,
}

async fn relay(log: &Log, url: &str) -> Running {
    let client = klaxon_bus::jetstream::connect(url, "relay-test").await.unwrap();
    let relay = Relay::new(log.clone(), client, Names::default());
    let acked = relay.acknowledged();
    let stop = CancellationToken::new();
    let task = tokio::spawn(relay.run(stop.clone()));
    Running { stop, task, acked }
}

impl Running {
    async fn reaches(&mut self, position: Position, limit: Duration) {
        let reached = tokio::time::timeout(limit, self.acked.wait_for(|p| *p >= position)).await.is_ok();
        assert!(reached, "the relay did not reach {position} within {limit:?} (at {})", *self.acked.borrow());
    }

    async fn stop(self) {
        self.stop.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.task).await.unwrap().unwrap().unwrap();
    }
}

/// Every message of the stream, in stream order: (sequence, headers, payload).
async fn stream_contents(url: &str) -> Vec<(u64, async_nats::HeaderMap, bytes::Bytes)> {
    let client = async_nats::connect(url).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let mut stream = js.get_stream("KLAXON").await.unwrap();
    let last = stream.info().await.unwrap().state.last_sequence;
    let mut out = Vec::new();
    for seq in 1..=last {
        let m = stream.get_raw_message(seq).await.unwrap();
        out.push((m.sequence, m.headers, m.payload));
    }
    out
}

#[tokio::test]
async fn every_record_is_published_in_order_as_its_own_sequence() {
    let dir = tempfile::tempdir().unwrap();
    let nats = NatsServer::start(&dir.path().join("nats"));
    let log = open(&dir.path().join("log"));
    fill(&log, 1, 40).await;
    let mut relay = relay(&log, &nats.url).await;
    fill(&log, 41, 80).await; // and live
    relay.reaches(Position(80), Duration::from_secs(20)).await;
    relay.stop().await;
    assert_eq!(log.load_checkpoint(CHECKPOINT).unwrap(), Position(80), "a clean stop saves the checkpoint");

    let contents = stream_contents(&nats.url).await;
    assert_eq!(contents.len(), 80);
    for (i, (seq, headers, payload)) in contents.iter().enumerate() {
        let position = i as u64 + 1;
        assert_eq!(*seq, position, "stream sequence = log position");
        let record = klaxon_log::Record::from_bytes(Position(position), payload).expect("the payload verifies");
        assert_eq!(record, log.read_one(Position(position)).unwrap());
        assert_eq!(headers.get("Nats-Msg-Id").unwrap().as_str(), event(position).id.to_string());
        assert_eq!(headers.get(POSITION_HEADER).unwrap().as_str(), position.to_string());
        assert_eq!(headers.get("traceparent").unwrap().as_str(), TRACEPARENT);
    }
}

#[tokio::test]
async fn it_resumes_after_nats_dies_and_republishes_what_nats_lost() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("nats");
    let mut nats = NatsServer::start(&store);
    let log = open(&dir.path().join("log"));
    let mut relay = relay(&log, &nats.url).await;
    fill(&log, 1, 30).await;
    relay.reaches(Position(30), Duration::from_secs(20)).await;

    // NATS dies while the log goes on; it comes back with its data.
    nats.kill();
    fill(&log, 31, 50).await;
    nats.start_again();
    relay.reaches(Position(50), Duration::from_secs(30)).await;

    // NATS dies and comes back with nothing (its store lost): the relay
    // publishes the whole log again, from sequence 1.
    nats.kill();
    std::fs::remove_dir_all(&store).unwrap();
    fill(&log, 51, 60).await;
    nats.start_again();
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            if let Ok(client) = async_nats::connect(&nats.url).await {
                let js = async_nats::jetstream::new(client);
                if let Ok(mut stream) = js.get_stream("KLAXON").await {
                    if stream.info().await.is_ok_and(|i| i.state.last_sequence == 60) {
                        return;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the relay republishes the lost stream within 30 s");
    relay.stop().await;

    let contents = stream_contents(&nats.url).await;
    assert_eq!(contents.len(), 60);
    for (i, (seq, _, payload)) in contents.iter().enumerate() {
        assert_eq!(*seq, i as u64 + 1);
        assert_eq!(klaxon_log::Record::from_bytes(Position(*seq), payload).unwrap().position, Position(*seq));
    }
}

#[tokio::test]
async fn a_stream_from_another_log_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let nats = NatsServer::start(&dir.path().join("nats"));
    let first = open(&dir.path().join("first"));
    fill(&first, 1, 10).await;
    let mut relay1 = relay(&first, &nats.url).await;
    relay1.reaches(Position(10), Duration::from_secs(20)).await;
    relay1.stop().await;

    let other = open(&dir.path().join("other"));
    fill(&other, 1, 3).await;
    let relay2 = relay(&other, &nats.url).await;
    let ended = tokio::time::timeout(Duration::from_secs(20), relay2.task).await.expect("it stops").unwrap();
    let error = ended.unwrap_err().to_string();
    assert!(error.contains("KLAXON") && error.contains("another log"), "{error}");
    relay2.stop.cancel();
}

#[tokio::test]
async fn head_notices_announce_the_acknowledged_position() {
    let dir = tempfile::tempdir().unwrap();
    let nats = NatsServer::start(&dir.path().join("nats"));
    let log = open(&dir.path().join("log"));
    let client = async_nats::connect(&nats.url).await.unwrap();
    let mut notices = client.subscribe("klaxon.head").await.unwrap();
    let mut relay = relay(&log, &nats.url).await;
    fill(&log, 1, 5).await;
    relay.reaches(Position(5), Duration::from_secs(20)).await;
    let seen = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let n = notices.next().await.expect("notices");
            if std::str::from_utf8(&n.payload).unwrap() == "5" {
                return;
            }
        }
    })
    .await;
    assert!(seen.is_ok(), "a notice of position 5 within 10 s");
    relay.stop().await;
}
