//! The log server over real gRPC: the same answers and the same typed
//! errors as the log in process.

use std::time::Duration;

use klaxon_bus::{EventLog, RemoteLog};
use klaxon_log::{Error, ExpectedVersion, Position, StreamId, StreamVersion};

use crate::support::{Served, event, fill, open};

#[tokio::test]
async fn remote_reads_and_writes_equal_the_local_log() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let served = Served::start(&log).await;
    let remote = RemoteLog::connect_lazy(&served.address.to_string()).unwrap();

    let stream = StreamId::new("incident-INC-1").unwrap();
    let appended =
        EventLog::append(&remote, &stream, ExpectedVersion::NoStream, vec![event(1), event(2)]).await.unwrap();
    assert_eq!((appended.first, appended.last, appended.next_version), (Position(1), Position(2), StreamVersion(3)));
    assert!(!appended.deduplicated);
    // A retry of the same append (what the client does after a lost answer)
    // returns the original place and writes nothing.
    let again = EventLog::append(&remote, &stream, ExpectedVersion::NoStream, vec![event(1), event(2)]).await.unwrap();
    assert!(again.deduplicated);
    assert_eq!(again.first, Position(1));
    assert_eq!(log.head(), Position(2));

    fill(&log, 3, 40).await;
    assert_eq!(EventLog::head(&remote).await.unwrap(), log.head());
    assert_eq!(EventLog::read_all(&remote, Position(1), 1000).await.unwrap(), log.read_all(Position(1), 1000).unwrap());
    assert_eq!(EventLog::read_all(&remote, Position(5), 3).await.unwrap(), log.read_all(Position(5), 3).unwrap());
    assert_eq!(
        EventLog::read_stream(&remote, &stream, StreamVersion(2), 10).await.unwrap(),
        log.read_stream(&stream, StreamVersion(2), 10).unwrap()
    );
    assert_eq!(EventLog::read_one(&remote, Position(7)).await.unwrap(), log.read_one(Position(7)).unwrap());
    assert_eq!(EventLog::locate(&remote, event(9).id).await.unwrap(), log.locate(event(9).id).unwrap());
    assert_eq!(EventLog::locate(&remote, uuid::Uuid::from_u128(1)).await.unwrap(), None);
    let s3 = StreamId::new("s-3").unwrap();
    assert_eq!(EventLog::stream_version(&remote, &s3).await.unwrap(), log.stream_version(&s3).unwrap());

    assert_eq!(EventLog::load_checkpoint(&remote, "relay-test").await.unwrap(), Position(0));
    EventLog::save_checkpoint(&remote, "relay-test", Position(17)).await.unwrap();
    assert_eq!(log.load_checkpoint("relay-test").unwrap(), Position(17));
}

#[tokio::test]
async fn typed_errors_cross_the_wire_and_bad_input_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let served = Served::start(&log).await;
    let remote = RemoteLog::connect_lazy(&served.address.to_string()).unwrap();
    let stream = StreamId::new("incident-INC-1").unwrap();
    EventLog::append(&remote, &stream, ExpectedVersion::Any, vec![event(1)]).await.unwrap();

    let conflict =
        EventLog::append(&remote, &stream, ExpectedVersion::Exact(StreamVersion(5)), vec![event(2)]).await.unwrap_err();
    match conflict {
        Error::WrongExpectedVersion { stream: s, expected, actual } => {
            assert_eq!(
                (s, expected, actual),
                (stream.clone(), ExpectedVersion::Exact(StreamVersion(5)), StreamVersion(1))
            );
        }
        other => panic!("expected a version conflict, got {other:?}"),
    }
    let partial = EventLog::append(&remote, &stream, ExpectedVersion::Any, vec![event(1), event(3)]).await.unwrap_err();
    assert!(matches!(partial, Error::PartialDuplicate { present: 1, count: 2, .. }), "{partial:?}");
    let empty = EventLog::append(&remote, &stream, ExpectedVersion::Any, vec![]).await.unwrap_err();
    assert!(matches!(empty, Error::Rejected { ref message } if message.contains("at least one event")), "{empty:?}");
    let bad_name = EventLog::save_checkpoint(&remote, "no spaces", Position(1)).await.unwrap_err();
    assert!(bad_name.is_request_error(), "{bad_name:?}");
    // What the log in process says of a position past the head, the remote says too.
    let missing = EventLog::read_one(&remote, Position(99)).await.unwrap_err();
    assert_eq!(missing.to_string(), log.read_one(Position(99)).unwrap_err().to_string());
    assert_eq!(log.head(), Position(1), "nothing refused was written");
}

#[tokio::test]
async fn long_reads_come_back_whole_across_responses() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    // 2,600 records in one stream: more than one response's worth.
    let stream = StreamId::new("big").unwrap();
    for chunk in (1..=2600u64).collect::<Vec<_>>().chunks(100) {
        log.append(&stream, ExpectedVersion::Any, chunk.iter().map(|n| event(*n)).collect()).await.unwrap();
    }
    let served = Served::start(&log).await;
    let remote = RemoteLog::connect_lazy(&served.address.to_string()).unwrap();
    let all = EventLog::read_stream(&remote, &stream, StreamVersion(1), usize::MAX).await.unwrap();
    assert_eq!(all.len(), 2600);
    assert_eq!(all, log.read_stream(&stream, StreamVersion(1), usize::MAX).unwrap());
    let some = EventLog::read_all(&remote, Position(100), 1500).await.unwrap();
    assert_eq!(some.len(), 1500);
    assert_eq!(some.first().unwrap().position, Position(100));
    assert_eq!(some.last().unwrap().position, Position(1599));
}

#[tokio::test]
async fn the_subscribe_rpc_catches_up_then_follows() {
    use futures_util::StreamExt;
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    fill(&log, 1, 30).await;
    let served = Served::start(&log).await;
    let remote = RemoteLog::connect_lazy(&served.address.to_string()).unwrap();
    let mut batches = Box::pin(remote.subscribe_rpc(Position(11)).await.unwrap());
    let writer = {
        let log = log.clone();
        tokio::spawn(async move { fill(&log, 31, 60).await })
    };
    let mut seen = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), async {
        while seen.len() < 50 {
            seen.extend(batches.next().await.expect("the stream goes on").expect("a batch"));
        }
    })
    .await
    .expect("50 records within 20 s");
    writer.await.unwrap();
    crate::support::assert_gapless(&seen, 11);
}

#[tokio::test]
async fn the_client_waits_for_a_restarting_server_and_gives_up_after_its_window() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let served = Served::start(&log).await;
    let address = served.address;
    let remote = RemoteLog::connect_lazy(&address.to_string()).unwrap();
    EventLog::append(&remote, &StreamId::new("s").unwrap(), ExpectedVersion::Any, vec![event(1)]).await.unwrap();
    served.stop().await;

    // The server comes back 700 ms later on the same port: the append,
    // started while it was away, succeeds.
    let restart = {
        let log = log.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(700)).await;
            Served::start_on(&log, address).await
        })
    };
    let appended = EventLog::append(&remote, &StreamId::new("s").unwrap(), ExpectedVersion::Any, vec![event(2)])
        .await
        .expect("the append waits for the server");
    assert_eq!(appended.last, Position(2));
    restart.await.unwrap().stop().await;

    // With nobody listening, a short window ends in Unavailable.
    let impatient = remote.clone().with_retry_for(Duration::from_millis(300));
    let error = EventLog::head(&impatient).await.unwrap_err();
    assert!(matches!(error, Error::Unavailable { .. }), "{error:?}");
    assert!(!error.is_request_error());
    assert_eq!(log.head(), Position(2));
}
