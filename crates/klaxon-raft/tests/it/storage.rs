//! openraft's own test suite for storage implementations, run against
//! Klaxon's Raft log (segment files) and state machine (the event log).

use klaxon_raft::{LogStore, StateMachine, TypeConfig};
use openraft::testing::{StoreBuilder, Suite};

struct Builder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for Builder {
    async fn build(&self) -> Result<(tempfile::TempDir, LogStore, StateMachine), openraft::StorageError<u64>> {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = klaxon_log::Log::open(dir.path().join("log"), klaxon_log::Options::default()).expect("open log");
        let store = LogStore::open(&dir.path().join("raft")).expect("open raft log");
        let machine = StateMachine::open(log, dir.path().join("raft/snapshots")).await.expect("open state machine");
        Ok((dir, store, machine))
    }
}

#[test]
fn openraft_storage_suite_passes() {
    Suite::test_all(Builder).expect("openraft's storage suite");
}
