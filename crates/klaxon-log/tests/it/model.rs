//! Property tests against an in-memory model of the log.
//!
//! `sequential`: random appends (random expected versions, reused ids) run
//! one by one; every result must equal the model's prediction exactly.
//! `concurrent`: the same kind of appends from several tasks at once; the
//! interleaving is unknown, so the test checks what must hold for every
//! interleaving: gapless positions and versions, each successful append
//! stored exactly where it was told, idempotency, and reads equal to a model
//! replayed in log order.

use std::collections::HashMap;

use klaxon_log::{Appended, Error, ExpectedVersion, Log, NewEvent, Options, Position, StreamVersion};
use proptest::prelude::*;
use uuid::Uuid;

use crate::support::{event_with_id, sid};

#[derive(Clone, Debug)]
enum Expect {
    Any,
    NoStream,
    StreamExists,
    Exact(u64),
}

#[derive(Clone, Debug)]
struct Op {
    stream: u8,
    expect: Expect,
    /// Each event's id: `None` = fresh, `Some(k)` = the k-th id used so far
    /// (mod the count), which makes retries and partial duplicates.
    ids: Vec<Option<u16>>,
}

fn op() -> impl Strategy<Value = Op> {
    let expect = prop_oneof![
        Just(Expect::Any),
        Just(Expect::NoStream),
        Just(Expect::StreamExists),
        (0u64..5).prop_map(Expect::Exact),
    ];
    let id = prop_oneof![4 => Just(None), 1 => any::<u16>().prop_map(Some)];
    (0u8..3, expect, proptest::collection::vec(id, 1..4)).prop_map(|(stream, expect, ids)| Op { stream, expect, ids })
}

fn expected_version(e: &Expect) -> ExpectedVersion {
    match e {
        Expect::Any => ExpectedVersion::Any,
        Expect::NoStream => ExpectedVersion::NoStream,
        Expect::StreamExists => ExpectedVersion::StreamExists,
        Expect::Exact(v) => ExpectedVersion::Exact(StreamVersion(*v)),
    }
}

/// Turns an op into events, drawing reused ids from `used`.
fn events_for(op: &Op, used: &mut Vec<Uuid>, salt: u64) -> Vec<NewEvent> {
    op.ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let id = match id {
                Some(k) if !used.is_empty() => used[*k as usize % used.len()],
                _ => {
                    let id = Uuid::new_v4();
                    used.push(id);
                    id
                }
            };
            event_with_id(id, salt * 10 + i as u64)
        })
        .collect()
}

/// The model: a vector of (stream, id, data) in position order.
#[derive(Default)]
struct Model {
    records: Vec<(String, Uuid, String, u64)>,
    heads: HashMap<String, u64>,
    ids: HashMap<Uuid, (u64, u64, String)>,
}

impl Model {
    fn append(
        &mut self,
        stream: &str,
        expected: ExpectedVersion,
        events: &[NewEvent],
    ) -> Result<Appended, &'static str> {
        let mut seen = std::collections::HashSet::new();
        if events.iter().any(|e| !seen.insert(e.id)) {
            return Err("duplicate in append");
        }
        let present: Vec<_> = events.iter().filter_map(|e| self.ids.get(&e.id).cloned()).collect();
        if !present.is_empty() {
            if present.len() != events.len() {
                return Err("partial duplicate");
            }
            if present.iter().any(|(_, _, s)| s != stream) {
                return Err("other stream");
            }
            return Ok(Appended {
                first: Position(present.iter().map(|p| p.0).min().unwrap()),
                last: Position(present.iter().map(|p| p.0).max().unwrap()),
                next_version: StreamVersion(present.iter().map(|p| p.1).max().unwrap() + 1),
                deduplicated: true,
            });
        }
        let current = self.heads.get(stream).copied().unwrap_or(0);
        if !expected.admits(StreamVersion(current)) {
            return Err("wrong expected version");
        }
        let first = self.records.len() as u64 + 1;
        for (i, e) in events.iter().enumerate() {
            let version = current + 1 + i as u64;
            self.records.push((stream.to_string(), e.id, e.data.as_str().to_string(), version));
            self.ids.insert(e.id, (self.records.len() as u64, version, stream.to_string()));
        }
        self.heads.insert(stream.to_string(), current + events.len() as u64);
        Ok(Appended {
            first: Position(first),
            last: Position(self.records.len() as u64),
            next_version: StreamVersion(current + events.len() as u64 + 1),
            deduplicated: false,
        })
    }
}

fn error_name(e: &Error) -> &'static str {
    match e {
        Error::DuplicateIdInAppend { .. } => "duplicate in append",
        Error::PartialDuplicate { .. } => "partial duplicate",
        Error::IdInOtherStream { .. } => "other stream",
        Error::WrongExpectedVersion { .. } => "wrong expected version",
        other => panic!("unexpected error {other}"),
    }
}

fn assert_log_equals_model(log: &Log, model: &Model) {
    let all = log.read_all(Position(0), usize::MAX).unwrap();
    let got: Vec<_> =
        all.iter().map(|r| (r.stream.to_string(), r.id, r.data.as_str().to_string(), r.version.0)).collect();
    assert_eq!(got, model.records);
    for (i, r) in all.iter().enumerate() {
        assert_eq!(r.position, Position(i as u64 + 1));
    }
    for (stream, head) in &model.heads {
        assert_eq!(log.stream_version(&sid(stream)).unwrap(), StreamVersion(*head));
        let versions: Vec<u64> =
            log.read_stream(&sid(stream), StreamVersion(1), usize::MAX).unwrap().iter().map(|r| r.version.0).collect();
        assert_eq!(versions, (1..=*head).collect::<Vec<_>>());
    }
    log.verify().unwrap();
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn sequential(ops in proptest::collection::vec(op(), 1..40)) {
        runtime().block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let log = Log::open(dir.path(), Options::default()).unwrap();
            let mut model = Model::default();
            let mut used = Vec::new();
            for (n, op) in ops.iter().enumerate() {
                let stream = format!("s{}", op.stream);
                let events = events_for(op, &mut used, n as u64);
                let expected = expected_version(&op.expect);
                let want = model.append(&stream, expected, &events);
                let got = log.append(&sid(&stream), expected, events).await;
                match (&got, &want) {
                    (Ok(g), Ok(w)) => assert_eq!(g, w, "op {n}: {op:?}"),
                    (Err(g), Err(w)) => assert_eq!(error_name(g), *w, "op {n}: {op:?}"),
                    _ => panic!("op {n} {op:?}: log {got:?}, model {want:?}"),
                }
            }
            assert_log_equals_model(&log, &model);
            log.close().await;
            drop(log);
            // The same after a reopen.
            let log = Log::open(dir.path(), Options::default()).unwrap();
            assert_log_equals_model(&log, &model);
            log.close().await;
        });
    }

    #[test]
    fn concurrent(tasks in proptest::collection::vec(proptest::collection::vec(op(), 1..25), 2..5)) {
        runtime().block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let log = Log::open(dir.path(), Options::default()).unwrap();
            // Ids are shared across tasks so that tasks retry each other's events.
            let shared: Vec<Uuid> = (0..8).map(|_| Uuid::new_v4()).collect();
            let handles: Vec<_> = tasks.into_iter().enumerate().map(|(t, ops)| {
                let log = log.clone();
                let mut used = shared.clone();
                tokio::spawn(async move {
                    let mut results = Vec::new();
                    for (n, op) in ops.iter().enumerate() {
                        let events = events_for(op, &mut used, (t * 1000 + n) as u64);
                        let expected = expected_version(&op.expect);
                        let result = log.append(&sid(&format!("s{}", op.stream)), expected, events.clone()).await;
                        results.push((format!("s{}", op.stream), expected, events, result));
                    }
                    results
                })
            }).collect();
            let mut results = Vec::new();
            for h in handles {
                results.extend(h.await.unwrap());
            }

            let all = log.read_all(Position(0), usize::MAX).unwrap();
            // Positions gapless; every record written by exactly one successful append.
            assert!(all.iter().enumerate().all(|(i, r)| r.position == Position(i as u64 + 1)));
            let written: u64 = results.iter()
                .filter_map(|(_, _, events, r)| match r { Ok(a) if !a.deduplicated => Some(events.len() as u64), _ => None })
                .sum();
            assert_eq!(written, all.len() as u64);
            for (stream, expected, events, result) in &results {
                match result {
                    Ok(a) => {
                        let stored = &all[(a.first.0 - 1) as usize..a.last.0 as usize];
                        if !a.deduplicated {
                            assert_eq!(stored.len(), events.len());
                            for (r, e) in stored.iter().zip(events) {
                                assert_eq!((&r.id, &r.data, r.stream.as_str()), (&e.id, &e.data, stream.as_str()));
                            }
                            let before = StreamVersion(stored[0].version.0 - 1);
                            assert!(expected.admits(before), "{expected:?} admitted a stream at {before}");
                            assert_eq!(a.next_version, StreamVersion(stored.last().unwrap().version.0 + 1));
                        } else {
                            for e in events {
                                assert!(stored.iter().any(|r| r.id == e.id), "deduplicated id {} not where the log said", e.id);
                            }
                        }
                    }
                    Err(e) => { error_name(e); }
                }
            }
            // Replaying the log in order through the model reproduces it.
            let mut model = Model::default();
            for r in &all {
                let replayed = model.append(r.stream.as_str(), ExpectedVersion::Any, &[NewEvent {
                    id: r.id, kind: r.kind.clone(), data: r.data.clone(), metadata: r.metadata.clone(),
                }]);
                assert!(matches!(replayed, Ok(a) if !a.deduplicated), "id {} stored twice", r.id);
            }
            assert_log_equals_model(&log, &model);
            log.close().await;
        });
    }
}
