//! What the group agrees on: the commands in Raft's log, what applying one
//! answers, and openraft's type configuration.

use chrono::{DateTime, Utc};
use klaxon_bus::wire::{self, WireError};
use klaxon_log::{Appended, EventData, EventKind, ExpectedVersion, Metadata, NewEvent, Position, StreamId, Write};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use uuid::Uuid;

/// A node's id in the group: any number but 0, fixed for the node's life.
pub type NodeId = u64;
/// What the group knows of a node: its address (`host:port`), where
/// clients and the other nodes reach its gRPC server.
pub type Node = openraft::BasicNode;

openraft::declare_raft_types!(
    /// openraft's types for Klaxon's log group.
    pub TypeConfig:
        D = Command,
        R = Reply,
        NodeId = NodeId,
        Node = Node,
        SnapshotData = crate::snapshot::SnapshotFile,
);

/// openraft's log entry of the group.
pub type Entry = openraft::Entry<TypeConfig>;
/// A Raft log id (term, leader, index).
pub type LogId = openraft::LogId<NodeId>;
/// The group's Raft node.
pub type Raft = openraft::Raft<TypeConfig>;
/// A storage failure as openraft takes it.
pub type StorageError = openraft::StorageError<NodeId>;
/// A membership as the state machine stores it.
pub type StoredMembership = openraft::StoredMembership<NodeId, Node>;

/// One command of the group's Raft log: a write to the event log.
///
/// Everything apply needs is in the command, so that every node applying it
/// to the same log writes the same records: the leader chooses
/// `recorded_at` when it proposes; the expected-version and idempotency
/// checks run in apply.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Command {
    /// [`klaxon_log::Log::append`].
    Append {
        /// The stream.
        stream: String,
        /// The version it must be at.
        expected: ExpectedVersion,
        /// The events.
        events: Vec<Event>,
        /// Chosen by the proposing leader, in microseconds since the epoch.
        recorded_at_micros: i64,
    },
    /// [`klaxon_log::Log::save_checkpoint`].
    SaveCheckpoint {
        /// The consumer.
        name: String,
        /// Its position.
        position: u64,
    },
    /// Writes proposed together (the leader's group commit): applied in
    /// order, exactly as if each were an entry of its own. Never nested.
    Batch(Vec<Command>),
}

/// An event inside a [`Command`]; its data is kept as the JSON text it is.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Event {
    /// The event id.
    pub id: Uuid,
    /// Its kind.
    pub kind: String,
    /// Its data, JSON.
    pub data: Box<RawValue>,
    /// Actor, correlation, causation, trace.
    pub metadata: Metadata,
}

impl Command {
    /// The command for an append the leader proposes at `now`.
    pub fn append(stream: &StreamId, expected: ExpectedVersion, events: &[NewEvent], now: DateTime<Utc>) -> Command {
        Command::Append {
            stream: stream.to_string(),
            expected,
            events: events
                .iter()
                .map(|e| Event {
                    id: e.id,
                    kind: e.kind.to_string(),
                    data: RawValue::from_string(e.data.as_str().to_owned()).expect("event data is JSON"),
                    metadata: e.metadata.clone(),
                })
                .collect(),
            recorded_at_micros: now.timestamp_micros(),
        }
    }

    /// The log writes this command stands for, in order; a command that does
    /// not make a valid write (which a leader never proposes) is refused the
    /// same way on every node.
    pub fn into_writes(self) -> Vec<Result<Write, klaxon_log::Error>> {
        match self {
            Command::Batch(commands) => commands
                .into_iter()
                .map(|c| match c {
                    Command::Batch(_) => Err(klaxon_log::Error::Rejected { message: "a batch inside a batch".into() }),
                    c => c.into_write(),
                })
                .collect(),
            c => vec![c.into_write()],
        }
    }

    /// Roughly how many bytes the command carries (to bound a batch).
    pub fn size(&self) -> usize {
        match self {
            Command::Append { stream, events, .. } => {
                stream.len()
                    + events
                        .iter()
                        .map(|e| {
                            64 + e.kind.len()
                                + e.data.get().len()
                                + e.metadata.traceparent.as_ref().map_or(0, String::len)
                        })
                        .sum::<usize>()
            }
            Command::SaveCheckpoint { name, .. } => 16 + name.len(),
            Command::Batch(commands) => commands.iter().map(Command::size).sum(),
        }
    }

    fn into_write(self) -> Result<Write, klaxon_log::Error> {
        match self {
            Command::Append { stream, expected, events, recorded_at_micros } => {
                let events = events
                    .into_iter()
                    .map(|e| {
                        Ok(NewEvent {
                            id: e.id,
                            kind: EventKind::new(e.kind)?,
                            data: EventData::from_json(e.data.get())?,
                            metadata: e.metadata,
                        })
                    })
                    .collect::<Result<Vec<_>, klaxon_log::Error>>()?;
                let recorded_at = DateTime::from_timestamp_micros(recorded_at_micros).ok_or_else(|| {
                    klaxon_log::Error::Rejected { message: format!("recorded_at {recorded_at_micros} is out of range") }
                })?;
                Ok(Write::Append { stream: StreamId::new(stream)?, expected, events, recorded_at })
            }
            Command::SaveCheckpoint { name, position } => Ok(Write::Checkpoint { name, position: Position(position) }),
            Command::Batch(_) => Err(klaxon_log::Error::Rejected { message: "a batch inside a batch".into() }),
        }
    }
}

/// What applying one entry answered: what the leader returns to the client.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reply {
    /// An append's places (or, for a retry, the original ones).
    Appended {
        /// First position.
        first: u64,
        /// Last position.
        last: u64,
        /// The stream's next version.
        next_version: u64,
        /// Every event was already there; nothing was written.
        deduplicated: bool,
    },
    /// A checkpoint was saved.
    CheckpointSaved,
    /// Refused, identically on every node; nothing was written.
    Refused(WireError),
    /// An entry of openraft's own (blank, membership).
    Nothing,
    /// The replies of a [`Command::Batch`], in order.
    Batch(Vec<Reply>),
}

impl Reply {
    /// The reply for an append's outcome.
    pub fn from_outcome(outcome: klaxon_log::Outcome) -> Reply {
        match outcome {
            klaxon_log::Outcome::Appended(a) => Reply::Appended {
                first: a.first.0,
                last: a.last.0,
                next_version: a.next_version.0,
                deduplicated: a.deduplicated,
            },
            klaxon_log::Outcome::CheckpointSaved => Reply::CheckpointSaved,
            klaxon_log::Outcome::Refused(e) => Reply::Refused(wire::to_wire(&e)),
        }
    }

    /// The append's result, as [`klaxon_log::Log::append`] would return it.
    pub fn into_appended(self) -> Result<Appended, klaxon_log::Error> {
        match self {
            Reply::Appended { first, last, next_version, deduplicated } => Ok(Appended {
                first: Position(first),
                last: Position(last),
                next_version: klaxon_log::StreamVersion(next_version),
                deduplicated,
            }),
            Reply::Refused(e) => Err(wire::from_wire(e)),
            other => Err(klaxon_log::Error::Unavailable { reason: format!("an append was answered with {other:?}") }),
        }
    }
}

/// Any error as openraft's storage error.
pub(crate) fn storage_error(
    subject: openraft::ErrorSubject<NodeId>,
    verb: openraft::ErrorVerb,
    e: &(impl std::error::Error + 'static),
) -> StorageError {
    openraft::StorageIOError::new(subject, verb, openraft::AnyError::new(e)).into()
}
