use klaxon_log::{EventData, EventKind, Log, Metadata, NewEvent, Options, StreamId};
use tempfile::TempDir;
use uuid::Uuid;

/// A fresh log in its own temp folder; the folder goes when the guard drops.
pub fn temp_log(options: Options) -> (TempDir, Log) {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = Log::open(dir.path(), options).expect("open log");
    (dir, log)
}

pub fn sid(s: &str) -> StreamId {
    StreamId::new(s).expect("valid stream id")
}

/// A small event with a fresh id.
pub fn event(n: u64) -> NewEvent {
    event_with_id(Uuid::new_v4(), n)
}

pub fn event_with_id(id: Uuid, n: u64) -> NewEvent {
    NewEvent {
        id,
        kind: EventKind::new("test.happened.v1").expect("valid kind"),
        data: EventData::from_value(&serde_json::json!({ "n": n })).expect("json"),
        metadata: Metadata { actor: Some("tester".into()), ..Metadata::default() },
    }
}
