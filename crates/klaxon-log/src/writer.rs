//! The single writer: group commit.
//!
//! One thread owns every write. It takes one request from the bounded queue,
//! then whatever else is already waiting (up to a group limit), checks each
//! append against the stream heads and the idempotency index (including the
//! appends earlier in the same group), puts all accepted records into one
//! `sled::Batch`, applies it, flushes sled, syncs the files (see
//! `durability`), publishes the new durable head, and only then answers every
//! request of the group. Concurrency raises throughput by making groups
//! larger; no append is ever answered before its fsync.

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, oneshot, watch};
use uuid::Uuid;

use crate::codec;
use crate::durability::Syncer;
use crate::{Appended, Error, ExpectedVersion, Position, StreamId, StreamVersion};

/// An event encoded by its appender, waiting for the writer to give it a
/// place ([`codec::seal`]).
pub(crate) struct Prepared {
    pub id: Uuid,
    pub bytes: Vec<u8>,
}

/// Streams whose version the writer remembers; beyond this the cache is
/// emptied and refilled from the stream index on demand.
const HEAD_CACHE_STREAMS_MAX: usize = 100_000;

pub(crate) enum Request {
    Append {
        stream: StreamId,
        expected: ExpectedVersion,
        events: Vec<Prepared>,
        /// Encoded size of all events, to bound a group's memory.
        bytes: usize,
        reply: oneshot::Sender<Result<Appended, Error>>,
    },
    SaveCheckpoint {
        key: Vec<u8>,
        position: Position,
        reply: oneshot::Sender<Result<(), Error>>,
    },
    Close {
        reply: oneshot::Sender<()>,
    },
}

pub(crate) struct Writer {
    pub db: sled::Db,
    pub syncer: Syncer,
    pub next_position: u64,
    pub last_micros: i64,
    pub durable: watch::Sender<Position>,
    pub group_appends_max: usize,
    pub group_bytes_max: usize,
    pub failed: Option<String>,
    /// Current version of recently written streams (durable or in the group
    /// being committed: a failed commit stops all writes).
    pub heads: HashMap<StreamId, u64>,
}

/// What the group has written so far but not yet committed: later appends in
/// the same group must see it.
#[derive(Default)]
struct Pending {
    heads: HashMap<StreamId, u64>,
    ids: HashMap<Uuid, (Position, StreamVersion, StreamId)>,
}

enum Answer {
    Append(oneshot::Sender<Result<Appended, Error>>, Result<Appended, Error>),
    Checkpoint(oneshot::Sender<Result<(), Error>>),
}

impl Writer {
    pub(crate) fn run(mut self, mut rx: mpsc::Receiver<Request>) {
        let mut closers = Vec::new();
        while let Some(first) = rx.blocking_recv() {
            let mut group = vec![first];
            let mut bytes = 0;
            while group.len() < self.group_appends_max && bytes < self.group_bytes_max {
                match rx.try_recv() {
                    Ok(request) => {
                        if let Request::Append { bytes: b, .. } = &request {
                            bytes += b;
                        }
                        group.push(request);
                    }
                    Err(_) => break,
                }
            }
            let closing_before = closers.len();
            self.commit_group(group, &mut closers);
            if closers.len() > closing_before {
                // Refuse new requests; the loop drains what is already queued.
                rx.close();
            }
        }
        // Everything queued has been committed group by group; a last flush
        // and sync covers checkpoints of sled's own (it syncs nothing of ours
        // that is not synced already).
        if let Err(e) = self.db.flush().map_err(Error::from).and_then(|_| self.syncer.sync().map_err(Error::from)) {
            tracing::error!(error = %e, "final flush of the log failed");
        }
        tracing::debug!(head = self.next_position - 1, "log writer stopped");
        for reply in closers {
            let _ = reply.send(());
        }
    }

    fn commit_group(&mut self, group: Vec<Request>, closers: &mut Vec<oneshot::Sender<()>>) {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or(0);
        let recorded_at_micros = now.max(self.last_micros);
        let mut batch = sled::Batch::default();
        let mut pending = Pending::default();
        let mut next = self.next_position;
        let mut answers = Vec::with_capacity(group.len());
        let mut writes = false;
        for request in group {
            match request {
                Request::Append { stream, expected, mut events, reply, .. } => {
                    let result = match &self.failed {
                        Some(reason) => Err(Error::Failed { reason: reason.clone() }),
                        None => self.plan_append(
                            &stream,
                            expected,
                            &mut events,
                            recorded_at_micros,
                            &mut next,
                            &mut pending,
                            &mut batch,
                        ),
                    };
                    writes |= matches!(&result, Ok(a) if !a.deduplicated);
                    answers.push(Answer::Append(reply, result));
                }
                Request::SaveCheckpoint { key, position, reply } => {
                    batch.insert(key, &codec::u64_value(position.0));
                    writes = true;
                    answers.push(Answer::Checkpoint(reply));
                }
                Request::Close { reply } => closers.push(reply),
            }
        }
        let committed = if writes && self.failed.is_none() { self.commit(batch) } else { Ok(()) };
        match committed {
            Ok(()) => {
                let head = next - 1;
                if self.heads.len() + pending.heads.len() > HEAD_CACHE_STREAMS_MAX {
                    self.heads.clear();
                }
                self.heads.extend(pending.heads);
                if next != self.next_position {
                    self.next_position = next;
                    self.last_micros = recorded_at_micros;
                    self.durable.send_replace(Position(head));
                }
                for answer in answers {
                    match answer {
                        Answer::Append(reply, result) => {
                            let _ = reply.send(result);
                        }
                        Answer::Checkpoint(reply) => {
                            let _ = reply.send(match &self.failed {
                                Some(reason) => Err(Error::Failed { reason: reason.clone() }),
                                None => Ok(()),
                            });
                        }
                    }
                }
            }
            Err(e) => {
                let reason = e.to_string();
                tracing::error!(error = %reason, "log commit failed; refusing writes until reopened");
                self.failed = Some(reason.clone());
                for answer in answers {
                    let failed = || Error::Failed { reason: reason.clone() };
                    match answer {
                        Answer::Append(reply, Ok(_)) => {
                            let _ = reply.send(Err(failed()));
                        }
                        Answer::Append(reply, Err(e)) => {
                            let _ = reply.send(Err(e));
                        }
                        Answer::Checkpoint(reply) => {
                            let _ = reply.send(Err(failed()));
                        }
                    }
                }
            }
        }
    }

    fn commit(&mut self, batch: sled::Batch) -> Result<(), Error> {
        self.db.apply_batch(batch)?;
        self.db.flush()?;
        self.syncer.sync()?;
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn plan_append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: &mut [Prepared],
        recorded_at_micros: i64,
        next: &mut u64,
        pending: &mut Pending,
        batch: &mut sled::Batch,
    ) -> Result<Appended, Error> {
        // Idempotency: a retry of an earlier append returns its places.
        let mut present = Vec::new();
        for event in events.iter() {
            if let Some(found) = self.lookup_id(event.id, pending)? {
                present.push((event.id, found));
            }
        }
        if !present.is_empty() {
            if present.len() != events.len() {
                return Err(Error::PartialDuplicate {
                    present: present.len(),
                    count: events.len(),
                    first: present[0].0,
                });
            }
            for (id, (_, _, original)) in &present {
                if original != stream {
                    return Err(Error::IdInOtherStream {
                        id: *id,
                        original: original.clone(),
                        requested: stream.clone(),
                    });
                }
            }
            let first = present.iter().map(|(_, (p, _, _))| *p).min().expect("non-empty");
            let last = present.iter().map(|(_, (p, _, _))| *p).max().expect("non-empty");
            let version = present.iter().map(|(_, (_, v, _))| v.0).max().expect("non-empty");
            return Ok(Appended { first, last, next_version: StreamVersion(version + 1), deduplicated: true });
        }

        let current = match pending.heads.get(stream).or_else(|| self.heads.get(stream)) {
            Some(v) => *v,
            None => self.stored_version(stream)?,
        };
        if !expected.admits(StreamVersion(current)) {
            return Err(Error::WrongExpectedVersion {
                stream: stream.clone(),
                expected,
                actual: StreamVersion(current),
            });
        }

        let first = Position(*next);
        let mut version = current;
        for event in events.iter_mut() {
            let position = Position(*next);
            version += 1;
            let mut bytes = std::mem::take(&mut event.bytes);
            codec::seal(&mut bytes, position, StreamVersion(version), recorded_at_micros);
            batch.insert(&codec::record_key(position), bytes);
            batch.insert(codec::stream_key(stream, StreamVersion(version)), &codec::u64_value(position.0));
            batch.insert(&codec::id_key(event.id), codec::id_value(position, StreamVersion(version), stream));
            pending.ids.insert(event.id, (position, StreamVersion(version), stream.clone()));
            *next += 1;
        }
        pending.heads.insert(stream.clone(), version);
        Ok(Appended { first, last: Position(*next - 1), next_version: StreamVersion(version + 1), deduplicated: false })
    }

    /// The stream's version as stored: the last entry of its stream index.
    fn stored_version(&self, stream: &StreamId) -> Result<u64, Error> {
        let prefix = codec::stream_prefix(stream);
        match self.db.scan_prefix(&prefix).next_back() {
            None => Ok(0),
            Some(entry) => {
                let (key, _) = entry?;
                codec::read_u64_value(&key[prefix.len()..]).ok_or_else(|| Error::Corrupt {
                    position: Position::ZERO,
                    reason: format!("stream index key of {stream} does not decode"),
                })
            }
        }
    }

    fn lookup_id(&self, id: Uuid, pending: &Pending) -> Result<Option<(Position, StreamVersion, StreamId)>, Error> {
        if let Some(found) = pending.ids.get(&id) {
            return Ok(Some(found.clone()));
        }
        let Some(value) = self.db.get(codec::id_key(id))? else {
            return Ok(None);
        };
        let entry = codec::read_id_value(&value).ok_or_else(|| Error::Corrupt {
            position: Position::ZERO,
            reason: format!("idempotency index entry for {id} does not decode"),
        })?;
        let stream = StreamId::new(entry.stream).map_err(|e| Error::Corrupt {
            position: entry.position,
            reason: format!("idempotency index entry for {id}: {e}"),
        })?;
        Ok(Some((entry.position, entry.version, stream)))
    }
}
