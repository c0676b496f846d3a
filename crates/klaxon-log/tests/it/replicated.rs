//! The log as a replicated state machine: `apply` (ordered batches with the
//! proposer's time and a mark), `import` (another replica's records) and
//! `check`.

use chrono::{DateTime, TimeZone, Utc};
use klaxon_log::{Error, ExpectedVersion, Log, Mark, Options, Outcome, Position, StreamVersion, Write};

use crate::support::{event, event_with_id, sid, temp_log};

fn at(seconds: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_800_000_000 + seconds, 0).unwrap()
}

fn append(stream: &str, expected: ExpectedVersion, n: u64, seconds: i64) -> Write {
    Write::Append { stream: sid(stream), expected, events: vec![event(n)], recorded_at: at(seconds) }
}

fn mark(value: &str) -> Option<Mark> {
    Some(Mark { name: "raft-applied".into(), value: value.as_bytes().to_vec() })
}

/// What each outcome says, in one line each.
fn summary(outcomes: &[Outcome]) -> Vec<String> {
    outcomes
        .iter()
        .map(|o| match o {
            Outcome::Appended(a) => {
                format!("{}..{} next v{} dedup {}", a.first, a.last, a.next_version, a.deduplicated)
            }
            Outcome::CheckpointSaved => "checkpoint".into(),
            Outcome::Refused(e) => format!("refused: {e}"),
        })
        .collect()
}

fn stored(log: &Log) -> Vec<Vec<u8>> {
    log.read_all(Position(0), 10_000).unwrap().iter().map(|r| r.to_bytes()).collect()
}

#[tokio::test]
async fn replicas_applying_the_same_batches_write_identical_records_whatever_their_options() {
    // Different limits must not make replicas decide differently: apply
    // checks only what is the same everywhere.
    let (_a_dir, a) = temp_log(Options::default());
    let (_b_dir, b) = temp_log(Options { event_bytes_max: 64, append_events_max: 1, ..Options::default() });
    let retried = event(7);
    let batches = [
        vec![
            append("s", ExpectedVersion::NoStream, 1, 10),
            Write::Append {
                stream: sid("t"),
                expected: ExpectedVersion::Any,
                events: vec![event(2), retried.clone()],
                recorded_at: at(11),
            },
        ],
        vec![
            // Refused: s is at version 1. Nothing written, on every replica.
            append("s", ExpectedVersion::Exact(StreamVersion(5)), 3, 12),
            // Earlier than the previous record: clamped to its time.
            append("s", ExpectedVersion::Exact(StreamVersion(1)), 4, 5),
            // Structurally invalid: refused the same way everywhere.
            Write::Append {
                stream: sid("t"),
                expected: ExpectedVersion::NoStream,
                events: vec![],
                recorded_at: at(13),
            },
            Write::Checkpoint { name: "severity".into(), position: Position(3) },
        ],
        // A retry of ids already applied: the original places, even though
        // the expectation no longer holds.
        vec![Write::Append {
            stream: sid("t"),
            expected: ExpectedVersion::NoStream,
            events: vec![event_with_id(retried.id, 7)],
            recorded_at: at(14),
        }],
    ];
    let mut answers = Vec::new();
    for (i, batch) in batches.iter().enumerate() {
        let one = a.apply(batch.clone(), mark(&format!("batch {i}"))).await.unwrap();
        let other = b.apply(batch.clone(), mark(&format!("batch {i}"))).await.unwrap();
        assert_eq!(summary(&one), summary(&other), "batch {i}");
        answers.extend(summary(&one));
    }
    assert_eq!(
        answers,
        vec![
            "1..1 next v2 dedup false".to_owned(),
            "2..3 next v3 dedup false".to_owned(),
            "refused: stream s: expected version 5, but the stream is at version 1".to_owned(),
            "4..4 next v3 dedup false".to_owned(),
            "refused: stream t: an append needs at least one event".to_owned(),
            "checkpoint".to_owned(),
            "3..3 next v3 dedup true".to_owned(),
        ]
    );
    assert_eq!(stored(&a), stored(&b), "identical bytes, checksums included");
    let records = a.read_all(Position(0), 100).unwrap();
    assert_eq!(records.iter().map(|r| r.recorded_at).collect::<Vec<_>>(), vec![at(10), at(11), at(11), at(11)]);
    for log in [&a, &b] {
        assert_eq!(log.head(), Position(4));
        assert_eq!(log.load_mark("raft-applied").unwrap(), Some(b"batch 2".to_vec()));
        assert_eq!(log.load_checkpoint("severity").unwrap(), Position(3));
    }
}

#[tokio::test]
async fn the_mark_moves_with_the_records_and_survives_a_reopen() {
    let (dir, log) = temp_log(Options::default());
    assert_eq!(log.load_mark("raft-applied").unwrap(), None);
    let outcomes = log.apply(vec![append("s", ExpectedVersion::Any, 1, 0)], mark("one")).await.unwrap();
    assert_eq!(summary(&outcomes), vec!["1..1 next v2 dedup false"]);
    // A batch of refusals only still moves the mark: the entries were applied.
    let outcomes = log.apply(vec![append("s", ExpectedVersion::NoStream, 2, 1)], mark("two")).await.unwrap();
    assert!(matches!(&outcomes[..], [Outcome::Refused(Error::WrongExpectedVersion { .. })]), "{outcomes:?}");
    assert_eq!(log.head(), Position(1));
    log.close().await;
    drop(log);
    let log = Log::open(dir.path(), Options::default()).unwrap();
    assert_eq!(log.load_mark("raft-applied").unwrap(), Some(b"two".to_vec()));
    assert_eq!(log.head(), Position(1));
    // Appending after a reopen goes on from the stored time, never before it.
    log.apply(vec![append("s", ExpectedVersion::Exact(StreamVersion(1)), 3, -100)], mark("three")).await.unwrap();
    let records = log.read_all(Position(0), 10).unwrap();
    assert_eq!(records[1].recorded_at, records[0].recorded_at);
    log.close().await;
}

#[tokio::test]
async fn a_proposer_checks_with_its_own_limits_and_apply_only_with_shared_ones() {
    let (_dir, log) = temp_log(Options { event_bytes_max: 64, ..Options::default() });
    let big = event(1);
    let error = log.check(&sid("s"), std::slice::from_ref(&big)).unwrap_err();
    assert!(matches!(error, Error::EventTooLarge { .. }), "{error:?}");
    assert!(matches!(log.check(&sid("s"), &[]), Err(Error::EmptyAppend { .. })));
    let twice = vec![big.clone(), big.clone()];
    let outcomes = log
        .apply(
            vec![Write::Append { stream: sid("s"), expected: ExpectedVersion::Any, events: twice, recorded_at: at(0) }],
            None,
        )
        .await
        .unwrap();
    assert!(matches!(&outcomes[..], [Outcome::Refused(Error::DuplicateIdInAppend { .. })]), "{outcomes:?}");
    assert_eq!(log.head(), Position(0));
    let outcomes =
        log.apply(vec![Write::Checkpoint { name: "not a name".into(), position: Position(1) }], None).await.unwrap();
    assert!(matches!(&outcomes[..], [Outcome::Refused(Error::InvalidConsumerName { .. })]), "{outcomes:?}");
    log.close().await;
}

#[tokio::test]
async fn import_writes_another_replicas_records_verbatim_and_refuses_a_divergence() {
    let (_a_dir, a) = temp_log(Options::default());
    let batch =
        |n: u64| vec![append("s", ExpectedVersion::Any, n, n as i64), append("t", ExpectedVersion::Any, n, n as i64)];
    for n in 1..=3 {
        a.apply(batch(n), mark(&format!("{n}"))).await.unwrap();
    }
    let records = a.read_all(Position(0), 100).unwrap();
    assert_eq!(records.len(), 6);

    // A replica with the first two records imports everything: the prefix
    // is compared, the rest written.
    let (_b_dir, b) = temp_log(Options::default());
    b.import(records[..2].to_vec(), vec![], None).await.unwrap();
    b.import(records.clone(), vec![("severity".into(), Position(4))], mark("3")).await.unwrap();
    assert_eq!(stored(&a), stored(&b));
    assert_eq!(b.load_mark("raft-applied").unwrap(), Some(b"3".to_vec()));
    assert_eq!(b.load_checkpoint("severity").unwrap(), Position(4));
    assert_eq!(b.stream_version(&sid("t")).unwrap(), StreamVersion(3));
    assert_eq!(b.locate(records[5].id).unwrap(), Some((Position(6), sid("t"), StreamVersion(3))));
    // It goes on exactly as the original would.
    let next = vec![append("s", ExpectedVersion::Exact(StreamVersion(3)), 9, 9)];
    assert_eq!(summary(&a.apply(next.clone(), None).await.unwrap()), summary(&b.apply(next, None).await.unwrap()));
    assert_eq!(stored(&a), stored(&b));

    // A replica whose record 1 differs refuses the import and writes nothing.
    let (_c_dir, c) = temp_log(Options::default());
    c.apply(vec![append("s", ExpectedVersion::Any, 100, 1)], None).await.unwrap();
    let error = c.import(records.clone(), vec![], mark("x")).await.unwrap_err();
    assert!(matches!(error, Error::Corrupt { position: Position(1), .. }), "{error:?}");
    assert_eq!(c.head(), Position(1));
    assert_eq!(c.load_mark("raft-applied").unwrap(), None);

    // A gap is refused too.
    let (_d_dir, d) = temp_log(Options::default());
    let error = d.import(records[2..].to_vec(), vec![], None).await.unwrap_err();
    assert!(matches!(error, Error::Rejected { .. }), "{error:?}");
    assert_eq!(d.head(), Position(0));
    for log in [a, b, c, d] {
        log.close().await;
    }
}
