//! The single writer: group commit, in two pipelined stages.
//!
//! The **writer** thread owns every write. It takes one request from the
//! bounded queue, then whatever else is already waiting (up to a group
//! limit), checks each append against the stream heads and the idempotency
//! index (including appends earlier in the same group, and groups applied but
//! not yet synced: sled and the index tail already see them), packs all
//! accepted records into chunks (a few sled keys for the whole group, see
//! `codec`), puts them into one `sled::Batch` and applies it. The records'
//! index entries go to the in-memory index tail (see `index`). Then it hands
//! the group's answers to the **syncer** thread and goes on with the next
//! group.
//!
//! When the writer finds its queue empty after a group and the syncer has
//! answered every group handed to it before, the writer ends that round
//! itself (the same flush, sync, publish and answers, under the same lock):
//! a lone append then waits for one thread handoff fewer.
//!
//! The lone append needs no writer thread at all: the writer's state and
//! the round lock are shared ([`Committer`]), and an appender that finds
//! the queue empty and the sync thread with nothing outstanding commits its
//! append on its own thread ([`Committer::commit_lone`]: the same group
//! code under the writer lock, the same round under the round lock; see
//! `Log::append`). Whoever holds the writer lock applies; whoever holds the
//! round lock flushes, syncs, publishes and then (after releasing it)
//! answers. Positions are given out under the writer lock only, so they
//! stay gapless whoever applies.
//!
//! The syncer takes every group handed over so far, flushes sled, syncs the
//! files (see `durability`), publishes the new durable head, and only then
//! answers every request of those groups. A flush covers everything applied
//! before it started, so no append is ever answered before its fsync, and
//! while one group is being synced the next is being applied: concurrency
//! raises throughput through larger groups and overlapped work, never by
//! skipping a sync. If a flush or sync fails, the log refuses all further
//! writes (and answers every pending group with the failure) until reopened.
//!
//! After answering, once enough index entries of durable records have
//! gathered in the tail, the syncer wakes the **indexer** thread, which
//! writes them behind the records in one batch while the next groups are
//! applied and synced (so a batch of 8,192 records' entries never holds up
//! a flush and its answers), then merges id runs if due (see `idfilter`)
//! and, at most every `Options::id_filter_save_interval_ms` when runs
//! changed, saves the id filter beside the log ([`save_id_filter`]: copy,
//! its own flush and sync, then the file); at close the syncer writes the
//! rest and saves the id filter once more.
//!
//! A round whose groups wrote nothing (every request in it refused by the
//! writer, or a duplicate) skips the flush and sync when the durable head
//! already covers the round's head: a duplicate's original was given its
//! position before that head, so it is durable, and there is nothing else
//! to make durable. If the head is not covered (an original applied by a
//! group whose round has not synced yet), the round syncs as any other.
//!
//! Before a group is applied, the writer checks its ids against the
//! [`IdFilter`] first: a fresh id, the common case, is answered "absent"
//! there without reading the id index.
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, oneshot, watch};
use uuid::Uuid;

use crate::codec::{self, ChunkBuilder};
use crate::durability::Syncer;
use crate::idfilter::IdFilter;
use crate::index::{self, IndexEntry, Tail};
use crate::replicated::Outcome;
use crate::stats::WorkCounters;
use crate::{Appended, Error, ExpectedVersion, Position, Record, StreamId, StreamVersion};

/// An event encoded by its appender, waiting for the writer to give it a
/// place ([`codec::seal`]).
pub(crate) struct Prepared {
    pub id: Uuid,
    pub bytes: Vec<u8>,
}

/// One write of a replicated batch, checked and encoded by its caller
/// ([`crate::Log::apply`]).
pub(crate) enum PreparedWrite {
    Append {
        stream: StreamId,
        expected: ExpectedVersion,
        events: Vec<Prepared>,
        recorded_at_micros: i64,
    },
    Checkpoint {
        key: Vec<u8>,
        position: Position,
    },
    /// Refused before reaching the writer; answered as is, in its place.
    Refused(Error),
}

/// A mark: its key and bytes.
pub(crate) type MarkEntry = (Vec<u8>, Vec<u8>);

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
    /// A replicated batch: every write and the mark go into the same sled
    /// batch (one request is never split across groups).
    Apply {
        writes: Vec<PreparedWrite>,
        mark: Option<MarkEntry>,
        /// Encoded size of all events, to bound a group's memory.
        bytes: usize,
        reply: oneshot::Sender<Result<Vec<Outcome>, Error>>,
    },
    /// Records of another replica, written verbatim.
    Import {
        records: Vec<Record>,
        checkpoints: Vec<(Vec<u8>, Position)>,
        mark: Option<MarkEntry>,
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
    /// The durable head's sender, until the round stage takes it ([`Writer::share`]).
    pub durable: Option<watch::Sender<Position>>,
    pub group_appends_max: usize,
    pub group_bytes_max: usize,
    /// Set by either stage on the first storage failure.
    pub failed: Arc<Mutex<Option<String>>>,
    /// Current version of recently written streams (applied; a failed sync
    /// stops all writes, so applied is as good as durable here).
    pub heads: HashMap<StreamId, u64>,
    /// Where group sizes are counted.
    pub stats: Arc<crate::LogStats>,
    /// Index entries of records not yet indexed in sled.
    pub tail: Arc<Tail>,
    /// Positions up to this one are format-1 `r` records.
    pub legacy_head: Position,
    /// The id index's directory: a fresh id skips the id index, a known
    /// one reads only the runs that may hold it.
    pub ids: Arc<IdFilter>,
    /// Set once a close request was applied: no appender commits by itself.
    pub closing: bool,
    /// The log's folder, where the id filter is saved.
    pub dir: std::path::PathBuf,
    /// Least time between two saves of the id filter during the session.
    pub id_filter_save_interval: std::time::Duration,
}

/// Groups applied to sled and waiting for the syncer. Small: the writer is
/// at most this many groups ahead of the disk.
const GROUPS_IN_FLIGHT_MAX: usize = 4;

/// What the writer hands to the syncer.
enum Handoff {
    /// A group applied to sled (or answered without writing); `idle` when
    /// the writer's queue was empty after it (the round ends with it),
    /// `wrote` when it put anything into sled.
    Applied { answers: Vec<Answer>, head: Position, idle: bool, wrote: bool },
    /// Everything before this was handed over; reply once it is synced.
    Close(Vec<oneshot::Sender<()>>),
    /// The writer found its queue empty and waits for requests: what it
    /// applied so far is all there is to sync for now.
    Idle,
}

/// Index entries the tail may hold before the sync stage stops answering
/// until the index thread has caught up (four index batches).
const INDEX_TAIL_RECORDS_MAX: usize = 4 * index::INDEX_BEHIND_RECORDS;

/// Id-run merges the index thread does after each index batch (one batch
/// adds one run; a merge removes one).
const MERGES_PER_INDEX_BATCH_MAX: usize = 4;

/// Answers after which the sync stage stops waiting for the writer to run
/// out of queued requests and syncs what it has.
const ROUND_ANSWERS_MAX: usize = 1024;

/// What the group has written so far but not yet committed: later appends in
/// the same group must see it.
#[derive(Default)]
struct Pending {
    heads: HashMap<StreamId, u64>,
    ids: HashMap<Uuid, (Position, StreamVersion, StreamId)>,
    /// The group's records, packed in chunks.
    chunks: Chunks,
    /// Their index entries, in position order.
    index: Vec<IndexEntry>,
}

/// The chunks of one group: its records at consecutive positions.
#[derive(Default)]
struct Chunks {
    done: Vec<([u8; 9], Vec<u8>)>,
    open: Option<ChunkBuilder>,
}

impl Chunks {
    fn push(&mut self, position: Position, record: &[u8]) {
        if let Some(open) = &self.open {
            assert_eq!(open.next(), position, "a group's records are at consecutive positions");
            if !open.fits(record.len()) {
                self.done.push(self.open.take().expect("checked").finish());
            }
        }
        self.open.get_or_insert_with(|| ChunkBuilder::new(position, record.len())).push(record);
    }

    /// Puts the chunks into `batch`; returns how many.
    fn into_batch(mut self, batch: &mut sled::Batch) -> u64 {
        if let Some(open) = self.open.take() {
            self.done.push(open.finish());
        }
        let count = self.done.len() as u64;
        for (key, value) in self.done {
            batch.insert(&key, value);
        }
        count
    }
}

enum Answer {
    Append(oneshot::Sender<Result<Appended, Error>>, Result<Appended, Error>),
    Checkpoint(oneshot::Sender<Result<(), Error>>),
    Apply(oneshot::Sender<Result<Vec<Outcome>, Error>>, Vec<Outcome>),
    Import(oneshot::Sender<Result<(), Error>>, Result<(), Error>),
}

/// The writer's state and the round lock, shared by the writer thread and
/// the appending tasks that commit a lone append themselves
/// ([`Committer::commit_lone`]). Whoever applies a group holds `core`;
/// whoever flushes, syncs and answers holds `rounds`.
pub(crate) struct Committer {
    core: Mutex<Writer>,
    rounds: Mutex<Rounds>,
    /// `Applied` handoffs the writer thread sent to the sync thread.
    handed: AtomicU64,
    /// `Applied` handoffs whose round the sync thread has answered.
    answered: AtomicU64,
    stats: Arc<crate::LogStats>,
    /// See [`LoneMode`]; set by whoever ends a round.
    lone: Arc<LoneMode>,
}

/// Whether the last round answered at most one request: the log is being
/// used one append at a time. After a round that answered several, their
/// appenders are likely to append again at once, and the first of them to
/// commit alone would make the others wait for its sync instead of sharing
/// one: they queue for the writer thread, which groups them.
#[derive(Default)]
struct LoneMode(AtomicBool);

impl Writer {
    /// Starts the index thread and returns the state to share between the
    /// writer thread ([`Committer::run`]) and the appenders.
    pub(crate) fn share(mut self) -> Arc<Committer> {
        let rounds = Rounds::start(&mut self);
        let stats = self.stats.clone();
        let lone = rounds.lone.clone();
        Arc::new(Committer {
            core: Mutex::new(self),
            rounds: Mutex::new(rounds),
            handed: AtomicU64::new(0),
            answered: AtomicU64::new(0),
            stats,
            lone,
        })
    }
}

impl Committer {
    /// Whether nothing is outstanding: the sync thread has answered every
    /// group handed to it (so everything applied before is durable or
    /// about to be made durable by whoever holds `rounds`).
    fn sync_thread_idle(&self) -> bool {
        self.answered.load(Ordering::Acquire) == self.handed.load(Ordering::Acquire)
    }

    /// Whether an appender finding the request queue empty may try
    /// [`Committer::commit_lone`] (a cheap check before it prepares to
    /// block; `commit_lone` checks again under the locks).
    pub(crate) fn looks_idle(&self) -> bool {
        self.sync_thread_idle() && self.lone.0.load(Ordering::Acquire)
    }

    /// Commits a lone append on the caller's thread, exactly as the writer
    /// thread would have ended a round by itself: apply the group (under
    /// the writer's lock, so positions stay gapless), flush, sync, publish
    /// the durable head and answer (under the round lock). Only when the
    /// writer is idle: nobody holds either lock, the sync thread has
    /// nothing outstanding and the log is not closing; otherwise the
    /// request is handed back (to be queued for the writer thread). Blocks
    /// for the flush and sync: call it where blocking is allowed.
    pub(crate) fn commit_lone(&self, request: Request) -> Result<(), Request> {
        let Ok(mut rounds) = self.rounds.try_lock() else { return Err(request) };
        if !self.looks_idle() {
            return Err(request);
        }
        let Ok(mut core) = self.core.try_lock() else { return Err(request) };
        if core.closing {
            return Err(request);
        }
        let (answers, closers, wrote) = core.apply_group(vec![request]);
        debug_assert!(closers.is_empty(), "an append is not a close");
        let head = Position(core.next_position - 1);
        // Later groups may be applied while this one syncs: the flush covers
        // at least this one, and the sync thread syncs theirs.
        drop(core);
        WorkCounters::add(&self.stats.work.appender_rounds, 1);
        let replies = rounds.finish(answers, Some(head), wrote);
        drop(rounds);
        replies.send();
        Ok(())
    }

    /// The writer thread: takes the queued requests in groups, applies
    /// them and hands them to the sync thread (or ends a lone round itself).
    pub(crate) fn run(self: Arc<Committer>, mut rx: mpsc::Receiver<Request>) {
        let (to_syncer, syncer_rx) = std::sync::mpsc::sync_channel(GROUPS_IN_FLIGHT_MAX);
        let syncing = {
            let committer = self.clone();
            std::thread::Builder::new()
                .name("klaxon-log-sync".into())
                .spawn(move || SyncStage { committer }.run(syncer_rx))
        };
        let (group_appends_max, group_bytes_max, failed) = {
            let core = self.core.lock().expect("writer lock");
            (core.group_appends_max, core.group_bytes_max, core.failed.clone())
        };
        let syncing = match syncing {
            Ok(handle) => handle,
            Err(e) => {
                tracing::error!(error = %e, "cannot start the log's sync thread; refusing writes");
                *failed.lock().expect("failed flag") = Some(format!("cannot start the sync thread: {e}"));
                // Without a syncer nothing can become durable: answer everything with the failure.
                while let Some(request) = rx.blocking_recv() {
                    fail_request(request, &failed);
                }
                return;
            }
        };
        // Whether the last thing handed over ended a round (no `Idle` due).
        let mut round_ended = true;
        loop {
            let first = match rx.try_recv() {
                Ok(request) => request,
                Err(mpsc::error::TryRecvError::Disconnected) => break,
                Err(mpsc::error::TryRecvError::Empty) => {
                    // Nothing queued: tell the syncer not to wait for more.
                    if !round_ended && to_syncer.send(Handoff::Idle).is_err() {
                        break;
                    }
                    match rx.blocking_recv() {
                        Some(request) => request,
                        None => break,
                    }
                }
            };
            let mut group = vec![first];
            let mut bytes = 0;
            while group.len() < group_appends_max && bytes < group_bytes_max {
                match rx.try_recv() {
                    Ok(request) => {
                        if let Request::Append { bytes: b, .. } | Request::Apply { bytes: b, .. } = &request {
                            bytes += b;
                        }
                        group.push(request);
                    }
                    Err(_) => break,
                }
            }
            let (answers, closers, wrote, head) = {
                let mut core = self.core.lock().expect("writer lock");
                let (answers, closers, wrote) = core.apply_group(group);
                (answers, closers, wrote, Position(core.next_position - 1))
            };
            // Nothing else queued: this group ends its round.
            let idle = closers.is_empty() && rx.is_empty();
            // When, besides, the sync thread has answered everything handed
            // to it (so every earlier group is durable), the writer ends the
            // round itself: the flush covers this group, and a lone append
            // (one appender) waits for one thread handoff fewer.
            let inline = if idle && self.sync_thread_idle() {
                self.rounds.try_lock().ok().filter(|_| self.sync_thread_idle())
            } else {
                None
            };
            if let Some(mut rounds) = inline {
                WorkCounters::add(&self.stats.work.writer_rounds, 1);
                let replies = rounds.finish(answers, Some(head), wrote);
                drop(rounds);
                replies.send();
                round_ended = true;
                continue;
            }
            self.handed.fetch_add(1, Ordering::AcqRel);
            if to_syncer.send(Handoff::Applied { answers, head, idle, wrote }).is_err() {
                break;
            }
            round_ended = idle;
            if !closers.is_empty() {
                // Refuse new requests; the loop drains what is already queued.
                rx.close();
                let _ = to_syncer.send(Handoff::Close(closers));
                round_ended = true;
            }
        }
        drop(to_syncer);
        let _ = syncing.join();
        tracing::debug!(head = self.core.lock().expect("writer lock").next_position - 1, "log writer stopped");
    }
}

impl Writer {
    /// Plans and applies one group; returns its answers (to be sent once
    /// synced), any close requests it held, and whether it put anything
    /// into sled (`false` when every request in it was refused or a
    /// duplicate).
    fn apply_group(&mut self, group: Vec<Request>) -> (Vec<Answer>, Vec<oneshot::Sender<()>>, bool) {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or(0);
        // The time of the last record planned so far: times never go back.
        let mut last_micros = self.last_micros;
        let mut batch = sled::Batch::default();
        let mut pending = Pending::default();
        let mut next = self.next_position;
        let mut answers = Vec::with_capacity(group.len());
        let mut closers = Vec::new();
        let mut writes = false;
        // Sled keys put into the batch besides the record chunks.
        let mut other_keys = 0u64;
        let failed = self.failed.lock().expect("failed flag").clone();
        let failure = || Error::Failed { reason: failed.clone().unwrap_or_default() };
        self.stats.group_committed(
            group.iter().filter(|r| matches!(r, Request::Append { .. } | Request::Apply { .. })).count(),
        );
        for request in group {
            match request {
                Request::Append { stream, expected, mut events, reply, .. } => {
                    let result = match &failed {
                        Some(_) => Err(failure()),
                        None => {
                            let at = now.max(last_micros);
                            let planned = self.plan_append(&stream, expected, &mut events, at, &mut next, &mut pending);
                            if matches!(&planned, Ok(a) if !a.deduplicated) {
                                last_micros = at;
                            }
                            planned
                        }
                    };
                    writes |= matches!(&result, Ok(a) if !a.deduplicated);
                    answers.push(Answer::Append(reply, result));
                }
                Request::SaveCheckpoint { key, position, reply } => {
                    batch.insert(key, &codec::u64_value(position.0));
                    other_keys += 1;
                    writes = true;
                    answers.push(Answer::Checkpoint(reply));
                }
                Request::Apply { writes: items, mark, reply, .. } => {
                    if failed.is_some() {
                        let _ = reply.send(Err(failure()));
                        continue;
                    }
                    let mut outcomes = Vec::with_capacity(items.len());
                    for item in items {
                        outcomes.push(match item {
                            PreparedWrite::Append { stream, expected, mut events, recorded_at_micros } => {
                                let at = recorded_at_micros.max(last_micros);
                                match self.plan_append(&stream, expected, &mut events, at, &mut next, &mut pending) {
                                    Ok(appended) => {
                                        if !appended.deduplicated {
                                            last_micros = at;
                                            writes = true;
                                        }
                                        Outcome::Appended(appended)
                                    }
                                    Err(e) => Outcome::Refused(e),
                                }
                            }
                            PreparedWrite::Checkpoint { key, position } => {
                                batch.insert(key, &codec::u64_value(position.0));
                                other_keys += 1;
                                writes = true;
                                Outcome::CheckpointSaved
                            }
                            PreparedWrite::Refused(e) => Outcome::Refused(e),
                        });
                    }
                    if let Some((key, value)) = mark {
                        batch.insert(key, value);
                        other_keys += 1;
                        writes = true;
                    }
                    answers.push(Answer::Apply(reply, outcomes));
                }
                Request::Import { records, checkpoints, mark, reply } => {
                    let result = match &failed {
                        Some(_) => Err(failure()),
                        None => self.plan_import(&records, &mut next, &mut pending, &mut last_micros),
                    };
                    if result.is_ok() {
                        for (key, position) in checkpoints {
                            batch.insert(key, &codec::u64_value(position.0));
                            other_keys += 1;
                        }
                        if let Some((key, value)) = mark {
                            batch.insert(key, value);
                            other_keys += 1;
                        }
                        writes = true;
                    }
                    answers.push(Answer::Import(reply, result));
                }
                Request::Close { reply } => {
                    // From here on no appender commits by itself: whatever
                    // comes after the close goes to the queue, which refuses it.
                    self.closing = true;
                    closers.push(reply)
                }
            }
        }
        let Pending { heads, chunks, index, .. } = pending;
        let chunk_keys = chunks.into_batch(&mut batch);
        if writes && failed.is_none() {
            let work = &self.stats.work;
            WorkCounters::add(&work.groups, 1);
            WorkCounters::add(&work.group_keys, chunk_keys + other_keys);
            WorkCounters::add(&work.records, next - self.next_position);
            if let Err(e) = self.db.apply_batch(batch) {
                let reason = e.to_string();
                tracing::error!(error = %reason, "applying a group to sled failed; refusing writes until reopened");
                *self.failed.lock().expect("failed flag") = Some(reason);
                // The syncer answers these with the failure.
                return (answers, closers, true);
            }
        }
        self.ids.insert(index.iter().map(|e| e.id));
        self.tail.add(index);
        if self.heads.len() + heads.len() > HEAD_CACHE_STREAMS_MAX {
            self.heads.clear();
        }
        self.heads.extend(heads);
        self.next_position = next;
        self.last_micros = last_micros;
        (answers, closers, writes)
    }

    /// Checks records of another replica and, when every one passes, puts
    /// the new ones into `batch` at their positions.
    fn plan_import(
        &self,
        records: &[Record],
        next: &mut u64,
        pending: &mut Pending,
        last_micros: &mut i64,
    ) -> Result<(), Error> {
        let mut planned = *next;
        let mut heads: HashMap<StreamId, u64> = HashMap::new();
        let mut fresh = Vec::new();
        for (index, record) in records.iter().enumerate() {
            let position = record.position;
            let bytes = record.to_bytes();
            if codec::decode(position, &bytes)?.checksum != record.checksum {
                return Err(Error::Corrupt { position, reason: "imported record does not match its checksum".into() });
            }
            if position.0 < planned {
                // Already here: it must be the very same record.
                let stored =
                    crate::store::read_raw(&self.db, self.legacy_head, position)?.ok_or_else(|| Error::Rejected {
                        message: format!("import of position {position} overlaps writes not yet committed"),
                    })?;
                if stored != bytes {
                    return Err(Error::Corrupt {
                        position,
                        reason: "the stored record differs from the imported one: the replicas diverged".into(),
                    });
                }
                continue;
            }
            if position.0 != planned {
                return Err(Error::Rejected {
                    message: format!("imported records jump from position {} to {position}", planned - 1),
                });
            }
            let current = match heads.get(&record.stream).or_else(|| pending.heads.get(&record.stream)) {
                Some(v) => *v,
                None => match self.heads.get(&record.stream) {
                    Some(v) => *v,
                    None => self.stored_version(&record.stream)?,
                },
            };
            if record.version.0 != current + 1 {
                return Err(Error::Corrupt {
                    position,
                    reason: format!(
                        "imported record is version {} of {}, which is at version {current}",
                        record.version, record.stream
                    ),
                });
            }
            if let Some((found, _, _)) = self.lookup_id(record.id, pending)? {
                return Err(Error::Corrupt {
                    position,
                    reason: format!("imported event id {} is already at position {found}", record.id),
                });
            }
            heads.insert(record.stream.clone(), record.version.0);
            fresh.push((index, bytes));
            planned += 1;
        }
        for (index, bytes) in fresh {
            let record = &records[index];
            let position = record.position;
            pending.chunks.push(position, &bytes);
            pending.index.push(IndexEntry::of(record));
            pending.ids.insert(record.id, (position, record.version, record.stream.clone()));
            pending.heads.insert(record.stream.clone(), record.version.0);
            *last_micros = (*last_micros).max(record.recorded_at.timestamp_micros());
        }
        *next = planned;
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
            pending.chunks.push(position, &bytes);
            pending.index.push(IndexEntry {
                position,
                id: event.id,
                stream: stream.clone(),
                version: StreamVersion(version),
            });
            pending.ids.insert(event.id, (position, StreamVersion(version), stream.clone()));
            *next += 1;
        }
        pending.heads.insert(stream.clone(), version);
        Ok(Appended { first, last: Position(*next - 1), next_version: StreamVersion(version + 1), deduplicated: false })
    }

    /// The stream's version as written: the last entry of its stream index
    /// (the tail first, then sled).
    fn stored_version(&self, stream: &StreamId) -> Result<u64, Error> {
        if let Some(version) = self.tail.last_version(stream) {
            return Ok(version.0);
        }
        WorkCounters::add(&self.stats.work.stream_index_reads, 1);
        Ok(index::stored_last(&self.db, stream)?.map_or(0, |(version, _)| version.0))
    }

    fn lookup_id(&self, id: Uuid, pending: &Pending) -> Result<Option<(Position, StreamVersion, StreamId)>, Error> {
        if let Some(found) = pending.ids.get(&id) {
            return Ok(Some(found.clone()));
        }
        // The filter holds every id applied so far (the tail's and sled's).
        if !self.ids.may_contain(id) {
            return Ok(None);
        }
        if let Some(found) = self.tail.id(id) {
            return Ok(Some(found));
        }
        index::stored_id(&self.db, self.legacy_head, &self.ids, &self.stats.work, id)
    }
}

/// The second stage: flush, sync, publish, answer.
struct SyncStage {
    committer: Arc<Committer>,
}

impl SyncStage {
    fn run(self, rx: std::sync::mpsc::Receiver<Handoff>) {
        let mut closers = Vec::new();
        while let Ok(first) = rx.recv() {
            // One round: everything handed over until the writer runs out
            // of queued requests (it says `Idle`), so that appends already
            // waiting share this sync instead of paying for the next one.
            // Nothing waits for requests that have not been made yet.
            let mut answers = Vec::new();
            let mut head = None;
            let mut applied = 0;
            let mut round_ends = false;
            let mut closing = false;
            let mut wrote = false;
            let mut next = Some(first);
            while let Some(handoff) = next.take() {
                match handoff {
                    Handoff::Applied { answers: a, head: h, idle, wrote: w } => {
                        answers.extend(a);
                        head = Some(h);
                        wrote |= w;
                        applied += 1;
                        round_ends |= idle;
                    }
                    Handoff::Close(c) => {
                        closers.extend(c);
                        closing = true;
                    }
                    Handoff::Idle => round_ends = true,
                }
                next = match rx.try_recv() {
                    Ok(h) => Some(h),
                    Err(_) if round_ends || closing || answers.len() >= ROUND_ANSWERS_MAX => None,
                    Err(std::sync::mpsc::TryRecvError::Disconnected) => None,
                    Err(std::sync::mpsc::TryRecvError::Empty) => rx.recv().ok(),
                };
            }
            if head.is_none() && !closing {
                // Only `Idle`: nothing was handed over since the last sync.
                continue;
            }
            let mut rounds = self.committer.rounds.lock().expect("rounds lock");
            let replies = rounds.finish(answers, head, wrote);
            // Under the lock: the writer (or an appender) ends a round itself
            // only when this count shows every group handed over synced.
            self.committer.answered.fetch_add(applied, Ordering::AcqRel);
            drop(rounds);
            replies.send();
        }
        let mut rounds = self.committer.rounds.lock().expect("rounds lock");
        rounds.close();
        for reply in closers {
            let _ = reply.send(());
        }
    }
}

/// Ending a round: flush, sync, publish the durable head, answer, and
/// start an index batch when due. Done by the sync thread, or by the
/// writer when the sync thread has nothing outstanding; one at a time
/// (the lock around it).
struct Rounds {
    db: sled::Db,
    /// Shared with the index thread, which syncs before it saves the id
    /// filter (see [`save_id_filter`]).
    syncer: Arc<Mutex<Syncer>>,
    /// The durable head, published; dropped at close, which ends the
    /// subscriptions once they have read everything.
    durable: Option<watch::Sender<Position>>,
    failed: Arc<Mutex<Option<String>>>,
    tail: Arc<Tail>,
    /// The index thread's queue, and the index thread.
    to_indexer: Option<std::sync::mpsc::SyncSender<Position>>,
    indexer_thread: Option<std::thread::JoinHandle<()>>,
    indexer: Arc<Mutex<Indexer>>,
    stats: Arc<crate::LogStats>,
    /// Whether the last round answered at most one request.
    lone: Arc<LoneMode>,
    /// The id index's directory, saved beside the log at close (and by
    /// the index thread during the session).
    ids: Arc<IdFilter>,
    /// The log's folder.
    dir: std::path::PathBuf,
}

impl Rounds {
    /// Starts the index thread: the index batches run on their own thread,
    /// so that writing 8,192 records' index entries never holds up a flush
    /// and its answers. One batch at a time (the lock), so the mark only
    /// moves forward. Takes the writer's syncer and durable head's sender.
    fn start(writer: &mut Writer) -> Rounds {
        let (db, failed, tail, stats, ids, dir) = (
            writer.db.clone(),
            writer.failed.clone(),
            writer.tail.clone(),
            writer.stats.clone(),
            writer.ids.clone(),
            writer.dir.clone(),
        );
        let syncer = Arc::new(Mutex::new(std::mem::replace(&mut writer.syncer, Syncer::detached())));
        let save_interval = writer.id_filter_save_interval;
        let durable = writer.durable.take().expect("shared once");
        let indexer = Arc::new(Mutex::new(Indexer {
            db: db.clone(),
            failed: failed.clone(),
            tail: tail.clone(),
            stats: stats.clone(),
            ids: ids.clone(),
        }));
        let (to_indexer, indexer_rx) = std::sync::mpsc::sync_channel::<Position>(1);
        let thread = {
            let indexer = indexer.clone();
            let (db, ids, syncer, dir) = (db.clone(), ids.clone(), syncer.clone(), dir.clone());
            std::thread::Builder::new().name("klaxon-log-index".into()).spawn(move || {
                let never = std::sync::atomic::AtomicBool::new(false);
                let mut last_save = std::time::Instant::now();
                while let Ok(durable) = indexer_rx.recv() {
                    indexer.lock().expect("indexer lock").index_behind(durable);
                    // Keep the number of id runs bounded: merge behind the
                    // batch just written (never on the append path).
                    ids.merge_runs(&db, MERGES_PER_INDEX_BATCH_MAX, &never);
                    if last_save.elapsed() >= save_interval && ids.save_due() {
                        last_save = std::time::Instant::now();
                        save_id_filter(&indexer, &syncer, durable, &dir);
                    }
                }
            })
        };
        let (to_indexer, indexer_thread) = match thread {
            Ok(handle) => (Some(to_indexer), Some(handle)),
            Err(e) => {
                tracing::warn!(error = %e, "cannot start the log's index thread; the sync stage indexes");
                (None, None)
            }
        };
        let lone = Arc::new(LoneMode(AtomicBool::new(true)));
        Rounds {
            db,
            syncer,
            durable: Some(durable),
            failed,
            tail,
            to_indexer,
            indexer_thread,
            indexer,
            stats,
            lone,
            ids,
            dir,
        }
    }

    /// Syncs everything applied so far and publishes `head`; returns the
    /// replies to `answers` (the groups up to `head`), to be sent once the
    /// round lock is released (so that an appender woken by its answer
    /// finds the writer idle).
    ///
    /// A round whose groups put nothing into sled (`wrote` false: every
    /// request refused or a duplicate) skips the flush and sync when
    /// everything up to `head` is durable already. `head` is the last
    /// position given out when its last group was applied, and a
    /// duplicate's original was applied before it (in the same group it
    /// would have written), so its answer still never comes before its
    /// original is durable. Otherwise (an original applied by a group
    /// whose round has not synced yet, such as the writer thread's between
    /// its apply and its round, when a lone appender may commit) this
    /// round syncs as any.
    #[must_use = "the replies must be sent"]
    fn finish(&mut self, answers: Vec<Answer>, head: Option<Position>, wrote: bool) -> Replies {
        let failed = self.failed.lock().expect("failed flag").clone();
        let durable_already = !wrote && head.is_some_and(|head| head <= self.durable_head());
        let outcome = match failed {
            Some(reason) => Err(reason),
            None if durable_already => Ok(()),
            // A failed sync has marked the log failed (`flush_and_sync`).
            None => self.sync().map_err(|e| {
                let reason = match e {
                    Error::Failed { reason } => reason,
                    other => other.to_string(),
                };
                tracing::error!(error = %reason, "log flush or sync failed; refusing writes until reopened");
                reason
            }),
        };
        if let (Ok(()), Some(head), Some(sender)) = (&outcome, head, &self.durable) {
            sender.send_if_modified(|durable| {
                let moved = head > *durable;
                *durable = (*durable).max(head);
                moved
            });
        }
        self.lone.0.store(answers.len() <= 1, Ordering::Release);
        let replies = Replies { answers, outcome: outcome.clone() };
        let behind = self.tail.len();
        if outcome.is_ok() && behind >= index::INDEX_BEHIND_RECORDS {
            let durable = self.durable_head();
            match &self.to_indexer {
                // Back-pressure: when the index thread falls this far
                // behind, the round waits for it and indexes too, so the
                // tail's memory stays bounded.
                Some(_) if behind >= INDEX_TAIL_RECORDS_MAX => {
                    self.indexer.lock().expect("indexer lock").index_behind(durable)
                }
                // Full: a batch is already due; a later round asks again if still needed.
                Some(tx) => {
                    let _ = tx.try_send(durable);
                }
                None => self.indexer.lock().expect("indexer lock").index_behind(durable),
            }
        }
        replies
    }

    /// At close: stops the index thread, indexes the rest, stops the id
    /// filter's scan and merges, syncs, and saves the id filter beside the
    /// log (only after that sync, and only if nothing failed: the file
    /// never lists a run that is not durable).
    fn close(&mut self) {
        self.to_indexer = None;
        if let Some(handle) = self.indexer_thread.take() {
            let _ = handle.join();
        }
        if self.failed.lock().expect("failed flag").is_none() {
            let durable = self.durable_head();
            self.indexer.lock().expect("indexer lock").index_behind(durable);
        }
        // Nothing changes the id runs from here on: the index thread has
        // stopped, this lock holds off any other index batch, and the
        // open's scan (and the merges after it) stop now.
        self.ids.stop_scan();
        match self.sync() {
            Err(e) => tracing::error!(error = %e, "final flush of the log failed"),
            Ok(()) if self.failed.lock().expect("failed flag").is_none() => {
                match self.ids.snapshot(&self.db, self.durable_head()).and_then(|snapshot| match snapshot {
                    Some(snapshot) => self.ids.write(&self.dir, &snapshot).map(|()| true),
                    None => Ok(false),
                }) {
                    Ok(true) => {
                        WorkCounters::add(&self.stats.work.id_filter_saves, 1);
                        tracing::debug!(path = %self.dir.display(), "saved the id filter")
                    }
                    Ok(false) => tracing::debug!("the id filter is not complete; not saved"),
                    Err(reason) => tracing::warn!(%reason, "saving the id filter failed; the next open scans"),
                }
            }
            Ok(()) => {}
        }
        // Subscribers see the log closed once they have read up to here.
        self.durable = None;
    }

    fn durable_head(&self) -> Position {
        self.durable.as_ref().map_or(Position::ZERO, |sender| *sender.borrow())
    }

    fn sync(&mut self) -> Result<(), Error> {
        WorkCounters::add(&self.stats.work.syncs, 1);
        flush_and_sync(&self.db, &self.syncer, &self.stats, &self.failed)
    }
}

/// Flushes sled and syncs its files (see `durability`): everything applied
/// before this began is durable once it returns `Ok`.
///
/// Two threads sync (the rounds, and the index thread before it saves the
/// id filter), and a failed fsync may report its error once only: a sync
/// that follows a failed one can succeed although what the failed one
/// should have written is lost. So the whole flush and sync runs under the
/// syncer's lock, a failure marks the log failed before that lock is
/// released, and a sync that finds the log failed when it is done answers
/// the failure, never `Ok`: nothing is acknowledged as durable after a
/// failed sync, whichever thread's it was.
fn flush_and_sync(
    db: &sled::Db,
    syncer: &Mutex<Syncer>,
    stats: &crate::LogStats,
    failed: &Mutex<Option<String>>,
) -> Result<(), Error> {
    let mut syncer = syncer.lock().expect("syncer lock");
    let synced = db.flush().map_err(Error::from).and_then(|_| {
        let synced = syncer.sync();
        WorkCounters::set(&stats.work.blob_files_synced, syncer.blob_files_synced);
        WorkCounters::set(&stats.work.blob_listings, syncer.blob_listings);
        synced.map_err(Error::from)
    });
    let mut failed = failed.lock().expect("failed flag");
    match (synced, &*failed) {
        (Err(e), None) => {
            *failed = Some(e.to_string());
            Err(e)
        }
        (Err(e), Some(_)) => Err(e),
        (Ok(()), Some(reason)) => Err(Error::Failed { reason: reason.clone() }),
        (Ok(()), None) => Ok(()),
    }
}

/// Saves the id filter's directory during the session, on the index
/// thread after its batch and merges (see `idfilter::file`): copies it
/// while no index batch runs (the indexer's lock; merges wait for the
/// copy's own lock), then makes sled durable (so every run the copy lists
/// is, whichever batch or round flushed it before) and only then writes
/// the file. Appends never wait for the whole copy (it takes their lock a
/// part at a time), but a round's sync may wait for this one's fsync of
/// sled, and the file's write shares the disk: with a save after every
/// index batch the 64-appender p99 about doubled at 3M ids
/// (`docs/benchmarks.md`), hence the interval. The file's head is
/// `durable`, a durable head. A failed sync fails the log
/// as a round's would (what it should have made durable may be lost); a
/// failed copy or write leaves the old file, which stays valid run by run.
fn save_id_filter(indexer: &Mutex<Indexer>, syncer: &Mutex<Syncer>, durable: Position, dir: &std::path::Path) {
    let indexer = indexer.lock().expect("indexer lock");
    if indexer.failed.lock().expect("failed flag").is_some() {
        return;
    }
    let (db, ids, stats, failed) =
        (indexer.db.clone(), indexer.ids.clone(), indexer.stats.clone(), indexer.failed.clone());
    let snapshot = ids.snapshot(&db, durable);
    drop(indexer);
    let snapshot = match snapshot {
        Ok(Some(snapshot)) => snapshot,
        Ok(None) => return,
        Err(reason) => {
            tracing::warn!(%reason, "copying the id filter to save it failed; the last saved file stays");
            return;
        }
    };
    if let Err(e) = flush_and_sync(&db, syncer, &stats, &failed) {
        tracing::error!(error = %e, "log flush or sync failed; refusing writes until reopened");
        return;
    }
    match ids.write(dir, &snapshot) {
        Ok(()) => {
            WorkCounters::add(&stats.work.id_filter_saves, 1);
            tracing::debug!(path = %dir.display(), "saved the id filter");
        }
        Err(reason) => tracing::warn!(%reason, "saving the id filter failed; the last saved file stays"),
    }
}

/// Writes the indexes behind the durable records: on its own thread while
/// the log runs, on the sync stage's at close (after that thread ended).
struct Indexer {
    db: sled::Db,
    failed: Arc<Mutex<Option<String>>>,
    tail: Arc<Tail>,
    stats: Arc<crate::LogStats>,
    ids: Arc<IdFilter>,
}

impl Indexer {
    /// Writes the index entries of the records in the tail up to `durable`
    /// (a durable head) to sled with the mark, then drops them from the
    /// tail. No sync: the next group's flush carries them; a crash before
    /// that only leaves the mark behind (the records after it are indexed
    /// again at open).
    fn index_behind(&mut self, durable: Position) {
        if self.failed.lock().expect("failed flag").is_some() {
            return;
        }
        let entries = self.tail.up_to(durable);
        let Some(last) = entries.last().map(|e| e.position) else { return };
        match index::write(&self.db, &entries, last) {
            Ok(keys) => {
                WorkCounters::add(&self.stats.work.index_keys, keys);
                WorkCounters::add(&self.stats.work.index_batches, 1);
                WorkCounters::add(&self.stats.work.records_indexed, entries.len() as u64);
                // The run joins the directory before its ids leave the
                // tail, so a reader finds each id in one or the other.
                let ids: Vec<Uuid> = entries.iter().map(|e| e.id).collect();
                self.ids.add_run(entries[0].position, &ids);
                self.tail.forget_up_to(last)
            }
            Err(e) => {
                let reason = e.to_string();
                tracing::error!(error = %reason, "writing the log's index failed; refusing writes until reopened");
                *self.failed.lock().expect("failed flag") = Some(reason);
            }
        }
    }
}

/// The answers of a round and its outcome, sent after the round lock.
struct Replies {
    answers: Vec<Answer>,
    outcome: Result<(), String>,
}

impl Replies {
    fn send(self) {
        for answer in self.answers {
            answer.send(self.outcome.clone().map_err(|reason| Error::Failed { reason }));
        }
    }
}

impl Answer {
    /// Answers the request: with its own result once its group is durable, or
    /// with the storage failure that kept it from becoming durable.
    fn send(self, synced: Result<(), Error>) {
        match (self, synced) {
            (Answer::Append(reply, Ok(appended)), Ok(())) => {
                let _ = reply.send(Ok(appended));
            }
            (Answer::Append(reply, Err(e)), _) => {
                let _ = reply.send(Err(e));
            }
            (Answer::Append(reply, Ok(_)), Err(e)) => {
                let _ = reply.send(Err(e));
            }
            (Answer::Checkpoint(reply), synced) => {
                let _ = reply.send(synced);
            }
            (Answer::Apply(reply, outcomes), Ok(())) => {
                let _ = reply.send(Ok(outcomes));
            }
            (Answer::Apply(reply, _), Err(e)) => {
                let _ = reply.send(Err(e));
            }
            (Answer::Import(reply, result), synced) => {
                let _ = reply.send(result.and(synced));
            }
        }
    }
}

/// Answers a request that cannot be served because the log failed.
fn fail_request(request: Request, failed: &Mutex<Option<String>>) {
    let reason = failed.lock().expect("failed flag").clone().unwrap_or_default();
    match request {
        Request::Append { reply, .. } => {
            let _ = reply.send(Err(Error::Failed { reason }));
        }
        Request::SaveCheckpoint { reply, .. } => {
            let _ = reply.send(Err(Error::Failed { reason }));
        }
        Request::Apply { reply, .. } => {
            let _ = reply.send(Err(Error::Failed { reason }));
        }
        Request::Import { reply, .. } => {
            let _ = reply.send(Err(Error::Failed { reason }));
        }
        Request::Close { reply } => {
            let _ = reply.send(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::Limits;
    use crate::{EventData, EventKind, Log, Metadata, NewEvent, Options};

    /// An append request of one event with this id, as `Log::append` makes it.
    fn append(log: &Log, id: Uuid) -> (Request, oneshot::Receiver<Result<Appended, Error>>) {
        let stream = StreamId::new("s").unwrap();
        let event = NewEvent {
            id,
            kind: EventKind::new("test.happened.v1").unwrap(),
            data: EventData::from_value(&serde_json::json!({})).unwrap(),
            metadata: Metadata::default(),
        };
        let (events, bytes) = log.prepare(&stream, &[event], Limits::Configured).unwrap();
        let (reply, answer) = oneshot::channel();
        (Request::Append { stream, expected: ExpectedVersion::Any, events, bytes, reply }, answer)
    }

    /// A retry whose round writes nothing skips the sync only when its
    /// original is durable. Here the original was applied as the writer
    /// thread applies a group, and its round has not ended (the moment
    /// between the writer's apply and its round, when a lone appender may
    /// take both locks). The retry, committed alone meanwhile, must sync
    /// before it answers; the disk fails that sync, so the retry is
    /// answered with the failure, never as a duplicate of an original that
    /// is not durable. Without a failure, the retry's round syncs and then
    /// answers; once the original is durable, a retry needs no sync.
    #[test]
    fn a_retry_is_answered_only_once_its_original_is_durable_and_syncs_only_when_it_is_not() {
        for disk_fails in [true, false] {
            let dir = tempfile::tempdir().unwrap();
            let fault = crate::SyncFault::new();
            let log = Log::open_with_sync_fault(dir.path(), Options::default(), fault.clone()).unwrap();
            let committer = log.committer().clone();
            let syncs = || log.stats().work.snapshot().syncs;
            // The writer thread takes its lock once as it starts, which a
            // loaded machine may delay until now: a lone commit waits that
            // moment out (a refused one hands its request back).
            let commit_alone = |mut request: Request| {
                for _ in 0..2_000 {
                    match committer.commit_lone(request) {
                        Ok(()) => return,
                        Err(back) => request = back,
                    }
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
                panic!("the writer never looked idle: the retry could not commit alone");
            };
            let id = Uuid::new_v4();

            let (original, mut original_answer) = append(&log, id);
            let (answers, _, wrote) = committer.core.lock().unwrap().apply_group(vec![original]);
            assert!(wrote);
            assert_eq!(log.head(), Position::ZERO, "applied, not durable");
            if disk_fails {
                fault.fail_after(0);
            }
            let before = syncs();
            let (retry, mut retry_answer) = append(&log, id);
            commit_alone(retry);
            let retried = retry_answer.try_recv().expect("answered");
            if disk_fails {
                assert!(matches!(retried, Err(Error::Failed { .. })), "retry of an undurable original: {retried:?}");
            }
            assert_eq!(syncs(), before + 1, "the retry's round synced (disk fails: {disk_fails})");
            let replies = committer.rounds.lock().unwrap().finish(answers, Some(Position(1)), wrote);
            replies.send();
            let appended = original_answer.try_recv().expect("answered");
            if disk_fails {
                assert!(matches!(appended, Err(Error::Failed { .. })), "{appended:?}");
                assert_eq!(log.head(), Position::ZERO);
                continue;
            }
            let retried = retried.expect("a duplicate");
            assert_eq!((retried.first, retried.deduplicated), (Position(1), true));
            let appended = appended.expect("appended");
            assert_eq!((appended.first, appended.deduplicated), (Position(1), false));
            let before = syncs();
            let (retry, mut retry_answer) = append(&log, id);
            commit_alone(retry);
            let retried = retry_answer.try_recv().expect("answered").expect("a duplicate");
            assert_eq!((retried.first, retried.deduplicated), (Position(1), true));
            assert_eq!(syncs(), before, "the original is durable: no sync");
            assert_eq!(log.head(), Position(1));
            tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(log.close());
        }
    }
}
