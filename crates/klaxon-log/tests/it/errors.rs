//! Every append error, data-driven: each case asserts the exact error and
//! that nothing was written.

use klaxon_log::{Error, ExpectedVersion, Metadata, NewEvent, Options, StreamVersion};
use uuid::Uuid;

use crate::support::{event, event_with_id, sid, temp_log};

struct Case {
    name: &'static str,
    stream: &'static str,
    expected: ExpectedVersion,
    events: fn(&[Uuid]) -> Vec<NewEvent>,
    check: fn(&Error) -> bool,
}

const ANY: ExpectedVersion = ExpectedVersion::Any;
const fn exact(v: u64) -> ExpectedVersion {
    ExpectedVersion::Exact(StreamVersion(v))
}

#[tokio::test]
async fn every_rejected_append_writes_nothing() {
    let options = Options { append_events_max: 3, event_bytes_max: 400, ..Options::default() };
    let cases = [
        Case {
            name: "empty append",
            stream: "a",
            expected: ANY,
            events: |_| vec![],
            check: |e| matches!(e, Error::EmptyAppend { .. }),
        },
        Case {
            name: "too many events",
            stream: "a",
            expected: ANY,
            events: |_| (0..4).map(event).collect(),
            check: |e| matches!(e, Error::TooManyEvents { count: 4, max: 3 }),
        },
        Case {
            name: "event too large",
            stream: "a",
            expected: ANY,
            events: |_| {
                let mut big = event(1);
                big.data = klaxon_log::EventData::from_value(&"x".repeat(400)).unwrap();
                vec![event(0), big]
            },
            check: |e| matches!(e, Error::EventTooLarge { index: 1, max: 400, .. }),
        },
        Case {
            name: "empty actor",
            stream: "a",
            expected: ANY,
            events: |_| {
                let mut e = event(1);
                e.metadata = Metadata { actor: Some(String::new()), ..Metadata::default() };
                vec![e]
            },
            check: |e| matches!(e, Error::InvalidMetadata { field: "actor", .. }),
        },
        Case {
            name: "bad traceparent",
            stream: "a",
            expected: ANY,
            events: |_| {
                let mut e = event(1);
                e.metadata.traceparent = Some("not-a-trace".into());
                vec![e]
            },
            check: |e| matches!(e, Error::InvalidMetadata { field: "traceparent", .. }),
        },
        Case {
            name: "same id twice in one append",
            stream: "a",
            expected: ANY,
            events: |_| {
                let id = Uuid::from_u128(99);
                vec![event_with_id(id, 1), event_with_id(id, 2)]
            },
            check: |e| matches!(e, Error::DuplicateIdInAppend { .. }),
        },
        Case {
            name: "no stream, but it exists",
            stream: "existing",
            expected: ExpectedVersion::NoStream,
            events: |_| vec![event(1)],
            check: |e| matches!(e, Error::WrongExpectedVersion { actual: StreamVersion(2), .. }),
        },
        Case {
            name: "stream exists, but it does not",
            stream: "absent",
            expected: ExpectedVersion::StreamExists,
            events: |_| vec![event(1)],
            check: |e| matches!(e, Error::WrongExpectedVersion { actual: StreamVersion(0), .. }),
        },
        Case {
            name: "stale exact version",
            stream: "existing",
            expected: exact(1),
            events: |_| vec![event(1)],
            check: |e| matches!(e, Error::WrongExpectedVersion { expected, actual: StreamVersion(2), .. } if *expected == exact(1)),
        },
        Case {
            name: "future exact version",
            stream: "existing",
            expected: exact(3),
            events: |_| vec![event(1)],
            check: |e| matches!(e, Error::WrongExpectedVersion { actual: StreamVersion(2), .. }),
        },
        Case {
            name: "exact version of an absent stream",
            stream: "absent",
            expected: exact(1),
            events: |_| vec![event(1)],
            check: |e| matches!(e, Error::WrongExpectedVersion { actual: StreamVersion(0), .. }),
        },
        Case {
            name: "partly present ids",
            stream: "existing",
            expected: ANY,
            events: |ids| vec![event_with_id(ids[0], 1), event(2)],
            check: |e| matches!(e, Error::PartialDuplicate { present: 1, count: 2, .. }),
        },
        Case {
            name: "present id, other stream",
            stream: "other",
            expected: ANY,
            events: |ids| vec![event_with_id(ids[0], 1)],
            check: |e| matches!(e, Error::IdInOtherStream { .. }),
        },
    ];
    for case in cases {
        let (_dir, log) = temp_log(options.clone());
        let setup = vec![event(10), event(11)];
        let ids: Vec<Uuid> = setup.iter().map(|e| e.id).collect();
        log.append(&sid("existing"), ExpectedVersion::NoStream, setup).await.unwrap();
        let head = log.head();
        let err = log.append(&sid(case.stream), case.expected, (case.events)(&ids)).await.expect_err(case.name);
        assert!((case.check)(&err), "{}: unexpected error {err:?}", case.name);
        assert!(err.is_request_error(), "{}: {err} should be a request error", case.name);
        assert!(!err.to_string().is_empty());
        assert_eq!(log.head(), head, "{}: the head moved", case.name);
        assert_eq!(log.read_all(head.next(), 10).unwrap(), vec![], "{}: records written", case.name);
        assert_eq!(log.verify().unwrap().records, 2, "{}", case.name);
        log.close().await;
        drop(log);
        // Nothing reached the disk either.
        let reopened = klaxon_log::Log::open(_dir.path(), options.clone()).unwrap();
        assert_eq!(reopened.head(), head, "{}: head after reopen", case.name);
        reopened.close().await;
    }
}

#[tokio::test]
async fn conflict_error_names_expected_and_actual() {
    let (_dir, log) = temp_log(Options::default());
    log.append(&sid("s"), ANY, vec![event(1)]).await.unwrap();
    let err = log.append(&sid("s"), exact(5), vec![event(2)]).await.unwrap_err();
    assert_eq!(err.to_string(), "stream s: expected version 5, but the stream is at version 1");
}

#[tokio::test]
async fn bad_names_and_data_are_refused_at_construction() {
    assert!(matches!(klaxon_log::StreamId::new("has space"), Err(Error::InvalidStreamId { .. })));
    assert!(matches!(klaxon_log::EventKind::new("no.version"), Err(Error::InvalidKind { .. })));
    assert!(matches!(klaxon_log::EventData::from_json("{not json"), Err(Error::InvalidData { .. })));
    let (_dir, log) = temp_log(Options::default());
    assert!(matches!(
        log.save_checkpoint("bad name", klaxon_log::Position(1)).await,
        Err(Error::InvalidConsumerName { .. })
    ));
    assert!(matches!(log.load_checkpoint(""), Err(Error::InvalidConsumerName { .. })));
}
