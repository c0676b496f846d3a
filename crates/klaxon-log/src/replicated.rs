//! Writing the log as a replicated state machine: what a consensus layer
//! (`klaxon-raft`) needs beyond [`Log::append`].
//!
//! - [`Log::apply`] writes an ordered batch of [`Write`]s, each append with
//!   the `recorded_at` its proposer chose, and an opaque mark (the consensus
//!   layer's "last applied" entry) in **one** atomic sled batch: after a
//!   crash the mark says exactly what the records hold. Its decisions
//!   (expected version, idempotency) depend only on the batch and the log,
//!   never on the clock or on this log's [`crate::Options`], so every
//!   replica applying the same batches to the same prefix writes the same
//!   records at the same positions.
//! - [`Log::import`] writes records made elsewhere (a snapshot of another
//!   replica) verbatim at their positions, after checking them.
//! - [`Log::check`] is the request check a proposer runs before proposing,
//!   with this log's configured limits.

use chrono::{DateTime, Utc};
use tokio::sync::oneshot;

use crate::log::{Limits, check_consumer_name};
use crate::writer::{PreparedWrite, Request};
use crate::{Appended, Error, ExpectedVersion, Log, NewEvent, Position, Record, StreamId, codec};

/// One write of a replicated batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Write {
    /// An append, decided as [`Log::append`] decides it.
    Append {
        /// The stream.
        stream: StreamId,
        /// The version the stream must be at.
        expected: ExpectedVersion,
        /// The events, all or none.
        events: Vec<NewEvent>,
        /// The time its proposer chose; the record gets this time, or the
        /// previous record's when that is later (times never go back).
        recorded_at: DateTime<Utc>,
    },
    /// A consumer checkpoint, as [`Log::save_checkpoint`].
    Checkpoint {
        /// The consumer.
        name: String,
        /// Its position.
        position: Position,
    },
}

/// What one [`Write`] of a batch did.
#[derive(Debug)]
pub enum Outcome {
    /// The append's places (or, for a retry, the original places).
    Appended(Appended),
    /// The checkpoint was saved.
    CheckpointSaved,
    /// The write was refused and wrote nothing: a deterministic decision
    /// (a version conflict, a partial duplicate, an invalid request), the
    /// same on every replica.
    Refused(Error),
}

/// Opaque bytes stored under a name, atomically with a batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mark {
    /// The name (letters, digits and `-_.:@`, as a consumer name).
    pub name: String,
    /// The bytes.
    pub value: Vec<u8>,
}

impl Log {
    /// Checks an append as [`Log::append`] would before writing anything:
    /// the events' syntax, this log's configured size and count limits, and
    /// duplicate ids within the request. A proposer runs this before it
    /// proposes, so that bad input is refused without entering consensus.
    pub fn check(&self, stream: &StreamId, events: &[NewEvent]) -> Result<(), Error> {
        self.prepare(stream, events, Limits::Configured).map(|_| ())
    }

    /// Applies `writes` in order and stores `mark` with them, all in one
    /// atomic sled batch, and returns once it is durable: one outcome per
    /// write, in order.
    ///
    /// Appends are decided as [`Log::append`] decides (idempotency first,
    /// then the expected version) but checked only against what is the same
    /// for every log (the encoding's bounds), not this log's configured
    /// limits: replicas with different [`crate::Options`] must not decide
    /// differently. An `Err` means the storage failed (see
    /// [`Error::Failed`]) and nothing of the batch is known to be written.
    pub async fn apply(&self, writes: Vec<Write>, mark: Option<Mark>) -> Result<Vec<Outcome>, Error> {
        if let Some(mark) = &mark {
            check_consumer_name(&mark.name)?;
        }
        let mut prepared = Vec::with_capacity(writes.len());
        let mut bytes = 0;
        for write in writes {
            prepared.push(match write {
                Write::Append { stream, expected, events, recorded_at } => {
                    match self.prepare(&stream, &events, Limits::Structural) {
                        Ok((events, size)) => {
                            bytes += size;
                            PreparedWrite::Append {
                                stream,
                                expected,
                                events,
                                recorded_at_micros: recorded_at.timestamp_micros(),
                            }
                        }
                        Err(e) => PreparedWrite::Refused(e),
                    }
                }
                Write::Checkpoint { name, position } => match check_consumer_name(&name) {
                    Ok(()) => PreparedWrite::Checkpoint { key: codec::checkpoint_key(&name), position },
                    Err(e) => PreparedWrite::Refused(e),
                },
            });
        }
        let mark = mark.map(|m| (codec::mark_key(&m.name), m.value));
        let (reply, answer) = oneshot::channel();
        let request = Request::Apply { writes: prepared, mark, bytes, reply };
        self.sender().send(request).await.map_err(|_| Error::Closed)?;
        answer.await.map_err(|_| Error::Closed)?
    }

    /// Writes `records` (made by another replica of this log) verbatim at
    /// their positions, with `checkpoints` and `mark`, in one atomic batch,
    /// and returns once durable.
    ///
    /// The records must be consecutive. Those at or below the head must be
    /// exactly the stored ones (a difference is [`Error::Corrupt`]: the
    /// replicas diverged); the first one above the head must be the next
    /// position, and each one must be its stream's next version. Nothing is
    /// written unless all of them pass.
    pub async fn import(
        &self,
        records: Vec<Record>,
        checkpoints: Vec<(String, Position)>,
        mark: Option<Mark>,
    ) -> Result<(), Error> {
        for (name, _) in &checkpoints {
            check_consumer_name(name)?;
        }
        if let Some(mark) = &mark {
            check_consumer_name(&mark.name)?;
        }
        let checkpoints = checkpoints.into_iter().map(|(name, p)| (codec::checkpoint_key(&name), p)).collect();
        let mark = mark.map(|m| (codec::mark_key(&m.name), m.value));
        let (reply, answer) = oneshot::channel();
        self.sender().send(Request::Import { records, checkpoints, mark, reply }).await.map_err(|_| Error::Closed)?;
        answer.await.map_err(|_| Error::Closed)?
    }

    /// The bytes last stored under mark `name` by [`Log::apply`] or
    /// [`Log::import`], if any.
    pub fn load_mark(&self, name: &str) -> Result<Option<Vec<u8>>, Error> {
        check_consumer_name(name)?;
        Ok(self.db().get(codec::mark_key(name))?.map(|v| v.to_vec()))
    }

    /// Every consumer checkpoint, by name.
    pub fn checkpoints(&self) -> Result<Vec<(String, Position)>, Error> {
        let mut out = Vec::new();
        for entry in self.db().scan_prefix([codec::TAG_CHECKPOINT]) {
            let (key, value) = entry?;
            let name = String::from_utf8_lossy(&key[1..]).into_owned();
            let position = codec::read_u64_value(&value).ok_or_else(|| Error::Corrupt {
                position: Position::ZERO,
                reason: format!("checkpoint {name:?} does not decode"),
            })?;
            out.push((name, Position(position)));
        }
        Ok(out)
    }
}
