//! The JetStream source: ordered, gapless and duplicate-free whatever NATS
//! does, because the log server fills in.

use std::time::Duration;

use klaxon_bus::jetstream::{Names, POSITION_HEADER};
use klaxon_bus::relay::Relay;
use klaxon_bus::{EventSource, JetStreamSource, RemoteLog};
use klaxon_log::{Log, Position};
use klaxon_tests::nats::NatsServer;
use tokio_util::sync::CancellationToken;

use crate::support::{Served, assert_gapless, fill, open, take};

async fn source(url: &str, served: &Served) -> JetStreamSource {
    let client = klaxon_bus::jetstream::connect(url, "source-test").await.unwrap();
    let remote = RemoteLog::connect_lazy(&served.address.to_string()).unwrap();
    JetStreamSource::new(client, remote, Names::default())
}

#[tokio::test]
async fn it_follows_the_relayed_log_from_any_position() {
    let dir = tempfile::tempdir().unwrap();
    let nats = NatsServer::start(&dir.path().join("nats"));
    let log = open(&dir.path().join("log"));
    let served = Served::start(&log).await;
    fill(&log, 1, 20).await;
    let stop = CancellationToken::new();
    let client = klaxon_bus::jetstream::connect(&nats.url, "relay").await.unwrap();
    let relay = tokio::spawn(Relay::new(log.clone(), client, Names::default()).run(stop.clone()));

    let source = source(&nats.url, &served).await;
    let mut from_start = source.subscribe(Position(0));
    let mut from_checkpoint = source.subscribe(Position(15));
    fill(&log, 21, 60).await;
    let all = take(&mut from_start, 60, Duration::from_secs(20)).await;
    assert_gapless(&all, 1);
    assert_eq!(all, log.read_all(Position(1), 100).unwrap());
    let later = take(&mut from_checkpoint, 46, Duration::from_secs(20)).await;
    assert_gapless(&later, 15);
    stop.cancel();
    relay.await.unwrap().unwrap();
}

/// Publishes the log's record at `position` to the stream as the relay
/// would, but without any ordering guarantee: a misbehaving NATS.
async fn publish(js: &async_nats::jetstream::Context, log: &Log, position: u64, payload: Option<&[u8]>) {
    let record = log.read_one(Position(position)).unwrap();
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(POSITION_HEADER, position.to_string().as_str());
    let payload = payload.map(<[u8]>::to_vec).unwrap_or_else(|| record.to_bytes());
    js.publish_with_headers("klaxon.log", headers, payload.into()).await.unwrap().await.unwrap();
}

#[tokio::test]
async fn gaps_repeats_reordering_corruption_and_a_lost_tail_are_repaired_from_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let nats = NatsServer::start(&dir.path().join("nats"));
    let log = open(&dir.path().join("log"));
    let served = Served::start(&log).await;
    let client = async_nats::connect(&nats.url).await.unwrap();
    let js = async_nats::jetstream::new(client.clone());
    js.create_stream(async_nats::jetstream::stream::Config {
        name: "KLAXON".into(),
        subjects: vec!["klaxon.log".into()],
        ..Default::default()
    })
    .await
    .unwrap();

    let source = source(&nats.url, &served).await;
    let mut subscription = source.subscribe(Position(1));
    // Give the subscription time to find the (empty) log and make its consumer.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    fill(&log, 1, 10).await;
    // NATS repeats 2, loses 3 then brings it late, corrupts 5, loses 6.
    publish(&js, &log, 1, None).await;
    publish(&js, &log, 2, None).await;
    publish(&js, &log, 2, None).await;
    publish(&js, &log, 4, None).await;
    publish(&js, &log, 3, None).await;
    publish(&js, &log, 5, Some(b"not a record")).await;
    publish(&js, &log, 7, None).await;
    let first = take(&mut subscription, 7, Duration::from_secs(20)).await;
    assert_gapless(&first, 1);
    assert_eq!(first, log.read_all(Position(1), 7).unwrap(), "exact records, the corrupt one from the log");

    // 8..10 never reach NATS; the relay's notice reveals them.
    client.publish("klaxon.head", "10".into()).await.unwrap();
    let tail = take(&mut subscription, 3, Duration::from_secs(20)).await;
    assert_gapless(&tail, 8);
    // Nothing more: no record is yielded twice.
    let extra = tokio::time::timeout(Duration::from_millis(600), subscription.next()).await;
    assert!(extra.is_err(), "no further record: {extra:?}");
}

#[tokio::test]
async fn without_nats_the_source_follows_the_log_server() {
    let dir = tempfile::tempdir().unwrap();
    // A NATS that is not there: started once for its port, then killed.
    let mut nats = NatsServer::start(&dir.path().join("nats"));
    nats.kill();
    let log = open(&dir.path().join("log"));
    let served = Served::start(&log).await;
    fill(&log, 1, 10).await;
    let source = source(&nats.url, &served).await;
    let mut subscription = source.subscribe(Position(1));
    let writer = {
        let log = log.clone();
        tokio::spawn(async move { fill(&log, 11, 30).await })
    };
    let all = take(&mut subscription, 30, Duration::from_secs(20)).await;
    writer.await.unwrap();
    assert_gapless(&all, 1);
}

#[tokio::test]
async fn with_nats_up_but_nothing_relayed_the_source_still_follows_the_log_server() {
    let dir = tempfile::tempdir().unwrap();
    let nats = NatsServer::start(&dir.path().join("nats"));
    let log = open(&dir.path().join("log"));
    let served = Served::start(&log).await;
    let source = source(&nats.url, &served).await;
    let mut subscription = source.subscribe(Position(1));
    tokio::time::sleep(Duration::from_millis(300)).await;
    // No relay: NATS is connected and silent, no notice ever comes.
    fill(&log, 1, 12).await;
    let all = take(&mut subscription, 12, Duration::from_secs(20)).await;
    assert_gapless(&all, 1);
}

#[tokio::test]
async fn a_record_too_large_for_nats_goes_as_a_placeholder_and_arrives_whole() {
    use klaxon_log::{EventData, EventKind, ExpectedVersion, Metadata, NewEvent, StreamId};
    let dir = tempfile::tempdir().unwrap();
    let nats = NatsServer::start(&dir.path().join("nats"));
    let log = open(&dir.path().join("log"));
    let served = Served::start(&log).await;
    fill(&log, 1, 2).await;
    // Just under the log's 1 MiB event limit, just over NATS's 1 MB payload.
    let big = NewEvent {
        id: uuid::Uuid::from_u128(0xb16),
        kind: EventKind::new("test.big.v1").unwrap(),
        data: EventData::from_json(format!("\"{}\"", "y".repeat(1_047_700))).unwrap(),
        metadata: Metadata::default(),
    };
    log.append(&StreamId::new("big").unwrap(), ExpectedVersion::Any, vec![big]).await.unwrap();
    fill(&log, 4, 5).await;

    let stop = CancellationToken::new();
    let client = klaxon_bus::jetstream::connect(&nats.url, "relay").await.unwrap();
    let relay = Relay::new(log.clone(), client, Names::default());
    let mut acked = relay.acknowledged();
    let task = tokio::spawn(relay.run(stop.clone()));
    let source = source(&nats.url, &served).await;
    // Subscribe before anything is relayed... the catch-up would read it all
    // from the log server anyway; what matters is the stream's sequence.
    let reached = tokio::time::timeout(Duration::from_secs(20), acked.wait_for(|p| *p >= Position(5))).await;
    assert!(reached.is_ok(), "the relay gets past the large record");
    let mut subscription = source.subscribe(Position(1));
    let all = take(&mut subscription, 5, Duration::from_secs(20)).await;
    assert_eq!(all, log.read_all(Position(1), 10).unwrap(), "the large record arrives whole");
    let js = async_nats::jetstream::new(async_nats::connect(&nats.url).await.unwrap());
    let mut stream = js.get_stream("KLAXON").await.unwrap();
    let placeholder = stream.get_raw_message(3).await.unwrap();
    assert!(placeholder.payload.is_empty());
    assert!(placeholder.headers.get(klaxon_bus::jetstream::TOO_LARGE_HEADER).is_some());
    assert_eq!(stream.info().await.unwrap().state.last_sequence, 5, "sequence = position past it");
    stop.cancel();
    task.await.unwrap().unwrap();
}
