//! The [`Log`] handle: open, append, read, subscribe, checkpoints, close.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, watch};

use crate::codec;
use crate::durability::{SyncFault, Syncer};
use crate::index::{self, Tail};
use crate::subscription::Subscription;
use crate::writer::{Committer, Prepared, Request, Writer};
use crate::{
    Appended, CONSUMER_NAME_BYTES_MAX, Error, ExpectedVersion, NewEvent, Position, Record, StreamId, StreamVersion,
};

/// Limits and tuning of a log. Every field has a sensible default.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Options {
    /// Largest encoded event (data, metadata, names), in bytes. Default 1 MiB.
    pub event_bytes_max: usize,
    /// Most events in one append. Default 1,000.
    pub append_events_max: usize,
    /// Appends that may wait for the writer; beyond this, `append` waits for
    /// room (back-pressure) instead of taking more memory. Default 4,096.
    pub queue_appends_max: usize,
    /// Most appends committed by one flush + sync. Default 1,024.
    pub group_appends_max: usize,
    /// Bytes after which a group stops taking appends. Default 32 MiB.
    pub group_bytes_max: usize,
    /// sled page cache, in bytes. Default 64 MiB: reads are of recent
    /// records and of one incident's streams at a time; a larger cache
    /// mostly keeps what a full fold at a first start read once (1 GiB
    /// held 340 MB more at 1M events, with no measurable CPU saved;
    /// `docs/benchmarks.md`, "One million events").
    pub cache_bytes: u64,
    /// Least time between two saves of the id filter's directory during a
    /// session (`idfilter::file`), in milliseconds; a save is made behind
    /// an index batch once this long has passed since the last one (or
    /// the open) and runs were added or merged since. A restart after a
    /// crash then reads only the id runs written or merged after the last
    /// save. Default 60,000 (a save at ten million ids writes about 26 MB
    /// and syncs sled once, off the append path). A clean close always saves.
    pub id_filter_save_interval_ms: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            event_bytes_max: 1024 * 1024,
            append_events_max: 1000,
            queue_appends_max: 4096,
            group_appends_max: 1024,
            group_bytes_max: 32 * 1024 * 1024,
            cache_bytes: 64 * 1024 * 1024,
            id_filter_save_interval_ms: 60_000,
        }
    }
}

/// A handle to an open log. Cheap to clone; all clones share one writer.
///
/// Every append is durable (flushed and fsynced) before it returns; reads and
/// subscriptions only ever see durable records.
#[derive(Clone)]
pub struct Log {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) db: sled::Db,
    tx: mpsc::Sender<Request>,
    pub(crate) durable: watch::Receiver<Position>,
    options: Options,
    path: PathBuf,
    writer: Mutex<Option<JoinHandle<()>>>,
    stats: Arc<crate::LogStats>,
    /// Index entries of records not yet indexed in sled.
    pub(crate) tail: Arc<Tail>,
    /// Positions up to this one are format-1 `r` records.
    pub(crate) legacy_head: Position,
    /// The id index's directory, shared with the writer and index thread.
    pub(crate) ids: Arc<crate::idfilter::IdFilter>,
    /// The writer's state, shared with the writer thread: a lone append is
    /// committed by its own task when the writer is idle.
    committer: Arc<Committer>,
}

impl Log {
    /// Whether `dir` holds a log's files (sled's `db` or `conf`): [`Log::open`]
    /// would then read it rather than make a new, empty log there. For tools
    /// that must not create a log where none is (`klaxon-logtool verify`, a
    /// token change recorded only where a log already is).
    pub fn exists_in(dir: impl AsRef<Path>) -> bool {
        let dir = dir.as_ref();
        dir.join("db").is_file() || dir.join("conf").is_file()
    }

    /// Opens (or creates) the log in `dir` and starts its writer thread.
    ///
    /// Opening after a crash recovers to what was durable: every
    /// acknowledged append is there, and the stream and id indexes are
    /// completed for the records written after their last index batch
    /// before any append is taken. A format-1 or format-2 folder is
    /// upgraded in place: its records and stream index stay as they are,
    /// its id index (one key per id) is rewritten as runs and its marker
    /// set to format 3, in one atomic, synced batch (a crash before it
    /// leaves the old format, upgraded again at the next open). A folder holding something other than a Klaxon log is refused with
    /// [`Error::IncompatibleFormat`].
    pub fn open(dir: impl AsRef<Path>, options: Options) -> Result<Log, Error> {
        Log::open_inner(dir.as_ref(), options, None, None)
    }

    /// For tests only: [`Log::open`] with syncs that fail once `fault` is
    /// armed ([`SyncFault::fail_after`]), to show what the log does when
    /// the disk fails. Production code opens with [`Log::open`].
    pub fn open_with_sync_fault(dir: impl AsRef<Path>, options: Options, fault: SyncFault) -> Result<Log, Error> {
        Log::open_inner(dir.as_ref(), options, Some(fault), None)
    }

    /// For tests only: [`Log::open`] whose id filter's scan thread waits at
    /// each stage until `gate` lets it go (the directory is not complete
    /// meanwhile: every id lookup reads every run). Production code opens
    /// with [`Log::open`].
    #[doc(hidden)]
    pub fn open_with_id_scan_gate(
        dir: impl AsRef<Path>,
        options: Options,
        gate: crate::IdScanGate,
    ) -> Result<Log, Error> {
        Log::open_inner(dir.as_ref(), options, None, Some(gate))
    }

    fn open_inner(
        dir: &Path,
        options: Options,
        fault: Option<SyncFault>,
        gate: Option<crate::IdScanGate>,
    ) -> Result<Log, Error> {
        std::fs::create_dir_all(dir)?;
        let db = open_sled(dir, &options)?;
        let incompatible = |reason: String| Error::IncompatibleFormat { path: dir.display().to_string(), reason };
        let mut syncer = Syncer::open(dir, fault)?;
        let marker = db.get(codec::FORMAT_KEY)?;
        match marker.as_deref() {
            Some(codec::FORMAT_MARKER) => {}
            Some(codec::FORMAT_MARKER_V2) => upgrade_from_v2(&db, &mut syncer, dir)?,
            Some(codec::FORMAT_MARKER_V1) => {
                upgrade_from_v1(&db, &mut syncer, dir)?;
                upgrade_from_v2(&db, &mut syncer, dir)?;
            }
            Some(marker) => {
                return Err(incompatible(format!("format marker is {:?}", String::from_utf8_lossy(marker))));
            }
            None if db.is_empty() => {
                db.insert(codec::FORMAT_KEY, codec::FORMAT_MARKER)?;
                db.flush()?;
                syncer.sync()?;
            }
            None => return Err(incompatible("the sled database has no Klaxon format marker".into())),
        }
        index::ensure_id_runs_generation(&db)?;

        let (legacy_head, last) = crate::store::ends(&db)?;
        let (head, last_micros) = last.map_or((Position::ZERO, 0), |r| (r.position, r.recorded_at.timestamp_micros()));
        let reindexed = index::rebuild(&db, legacy_head, head)?;
        if reindexed > 0 {
            tracing::info!(path = %dir.display(), records = reindexed, "indexed the records written after the last index batch");
        }
        let tail = Arc::new(Tail::default());
        let stats = Arc::new(crate::LogStats::default());
        // Starts the thread that loads the saved id filter or scans the id
        // runs: the open itself reads neither.
        let indexed = index::indexed(&db)?;
        let ids = Arc::new(crate::idfilter::IdFilter::open(&db, dir, head, indexed, stats.clone(), gate));

        let (durable_tx, durable_rx) = watch::channel(head);
        let (tx, rx) = mpsc::channel(options.queue_appends_max.max(1));
        let writer = Writer {
            stats: stats.clone(),
            db: db.clone(),
            syncer,
            next_position: head.0 + 1,
            last_micros,
            durable: Some(durable_tx),
            group_appends_max: options.group_appends_max.max(1),
            group_bytes_max: options.group_bytes_max.max(1),
            failed: Default::default(),
            heads: Default::default(),
            tail: tail.clone(),
            legacy_head,
            ids: ids.clone(),
            closing: false,
            dir: dir.to_path_buf(),
            id_filter_save_interval: std::time::Duration::from_millis(options.id_filter_save_interval_ms),
        };
        let committer = writer.share();
        let handle = {
            let committer = committer.clone();
            std::thread::Builder::new().name("klaxon-log-writer".into()).spawn(move || committer.run(rx))?
        };
        tracing::info!(path = %dir.display(), head = head.0, "event log open");
        Ok(Log {
            inner: Arc::new(Inner {
                db,
                tx,
                durable: durable_rx,
                options,
                path: dir.to_path_buf(),
                writer: Mutex::new(Some(handle)),
                stats,
                tail,
                legacy_head,
                ids,
                committer,
            }),
        })
    }

    /// The folder the log lives in.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The options the log was opened with.
    pub fn options(&self) -> &Options {
        &self.inner.options
    }

    /// Appends `events` to `stream` if the stream is at the `expected`
    /// version, atomically: all events or none. Returns once the records are
    /// durable.
    ///
    /// If every event id is already in the log (a retry), nothing is written
    /// and the original positions are returned with `deduplicated: true`. Any
    /// error means nothing was written, except [`Error::Failed`] (see there).
    pub async fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<Appended, Error> {
        let started = std::time::Instant::now();
        let (events, bytes) = self.prepare(stream, &events, Limits::Configured)?;
        let (reply, answer) = oneshot::channel();
        let request = Request::Append { stream: stream.clone(), expected, events, bytes, reply };
        if let Err(request) = self.commit_lone(request) {
            self.inner.tx.send(request).await.map_err(|_| Error::Closed)?;
        }
        let answered = answer.await.map_err(|_| Error::Closed)?;
        self.inner.stats.append_took(started.elapsed());
        answered
    }

    /// Commits `request` on this task's thread when it would be a lone
    /// append (nothing queued, the writer idle), saving the two thread
    /// wake-ups of a round trip through the writer thread; the same code
    /// and locks as the writer's own rounds, so positions, idempotency and
    /// "durable before answered" are unchanged. Only from a task of a
    /// multi-threaded tokio runtime, inside `block_in_place` (the flush and
    /// sync block; the runtime moves this worker's other tasks to another
    /// thread). Hands the request back otherwise, to be queued.
    fn commit_lone(&self, request: Request) -> Result<(), Request> {
        let queue_empty = self.inner.tx.capacity() == self.inner.tx.max_capacity();
        if !queue_empty || !self.inner.committer.looks_idle() || !may_block_in_place() {
            return Err(request);
        }
        tokio::task::block_in_place(|| self.inner.committer.commit_lone(request))
    }

    /// Append latency and group-commit sizes so far (for metrics).
    pub fn stats(&self) -> &crate::LogStats {
        &self.inner.stats
    }

    /// Checks everything about an append that does not need the log's state,
    /// and encodes the events (the writer only seals them). Returns the
    /// encodings and their total size. With [`Limits::Structural`] the
    /// configured size and count limits are not applied (see
    /// [`Log::apply`]).
    pub(crate) fn prepare(
        &self,
        stream: &StreamId,
        events: &[NewEvent],
        limits: Limits,
    ) -> Result<(Vec<Prepared>, usize), Error> {
        let options = &self.inner.options;
        let (events_max, bytes_max) = match limits {
            Limits::Configured => (options.append_events_max, options.event_bytes_max),
            Limits::Structural => (usize::MAX, usize::MAX),
        };
        if events.is_empty() {
            return Err(Error::EmptyAppend { stream: stream.clone() });
        }
        if events.len() > events_max {
            return Err(Error::TooManyEvents { count: events.len(), max: events_max });
        }
        let mut ids = HashSet::with_capacity(events.len());
        let mut total = 0;
        for (index, event) in events.iter().enumerate() {
            event.metadata.validate()?;
            let size = codec::encoded_len(stream.as_str(), event.kind.as_str(), &event.metadata, event.data.as_str());
            // u32::MAX bounds the encoding itself, whatever the option says.
            let max = bytes_max.min(u32::MAX as usize);
            if size > max {
                return Err(Error::EventTooLarge { index, size, max });
            }
            if !ids.insert(event.id) {
                return Err(Error::DuplicateIdInAppend { id: event.id });
            }
            total += size;
        }
        let prepared = events
            .iter()
            .map(|e| Prepared {
                id: e.id,
                bytes: codec::encode_unsealed(e.id, stream.as_str(), e.kind.as_str(), &e.metadata, e.data.as_str()),
            })
            .collect();
        Ok((prepared, total))
    }

    /// The position of the last durable record (0 for an empty log).
    pub fn head(&self) -> Position {
        *self.inner.durable.borrow()
    }

    /// Up to `max` records from position `from` (inclusive; 0 reads from the
    /// start), in position order, each verified against its checksum.
    pub fn read_all(&self, from: Position, max: usize) -> Result<Vec<Record>, Error> {
        crate::store::read_range(&self.inner.db, self.inner.legacy_head, from, self.head(), max)
    }

    /// Up to `max` records of `stream` from version `from` (inclusive; 0
    /// reads from the start), in version order.
    pub fn read_stream(&self, stream: &StreamId, from: StreamVersion, max: usize) -> Result<Vec<Record>, Error> {
        let head = self.head();
        let from = from.max(StreamVersion(1));
        let mut out = Vec::new();
        if max == 0 {
            return Ok(out);
        }
        // The tail first, sled second: an entry moves from the tail to sled
        // only after sled has it, so one of the two holds it.
        let tail = self.inner.tail.stream(stream);
        let mut places = index::stored_places(&self.inner.db, stream, from, max)?;
        let indexed = places.last().map_or(StreamVersion(0), |(v, _)| *v);
        places.extend(tail.into_iter().filter(|(v, _)| *v >= from && *v > indexed));
        let mut expected = from;
        for (version, position) in places {
            if position > head {
                break; // not durable yet
            }
            let record = self.read_one(position)?;
            if version != expected || record.stream != *stream || record.version != expected {
                return Err(Error::Corrupt {
                    position,
                    reason: format!(
                        "stream index says {stream} version {version} (expected {expected}), record says {} version {}",
                        record.stream, record.version
                    ),
                });
            }
            out.push(record);
            expected = StreamVersion(expected.0 + 1);
            if out.len() == max {
                break;
            }
        }
        Ok(out)
    }

    /// The stream's current (durable) version; 0 when it does not exist.
    pub fn stream_version(&self, stream: &StreamId) -> Result<StreamVersion, Error> {
        let head = self.head();
        if let Some((version, _)) = self.inner.tail.stream(stream).into_iter().rev().find(|(_, p)| *p <= head) {
            return Ok(version);
        }
        // sled's index holds durable records only.
        Ok(index::stored_last(&self.inner.db, stream)?.map_or(StreamVersion(0), |(version, _)| version))
    }

    /// Where the event with this id is, if it is in the log (and durable):
    /// its position, stream and version. This is how a caller recognises a
    /// retry before deciding anything again.
    pub fn locate(&self, id: uuid::Uuid) -> Result<Option<(Position, StreamId, StreamVersion)>, Error> {
        let found = self.indexed_id(id)?;
        Ok(found.filter(|(position, _, _)| *position <= self.head()).map(|(p, v, s)| (p, s, v)))
    }

    /// Where the indexes (tail first, then sled) put event `id`, durable or not.
    pub(crate) fn indexed_id(&self, id: uuid::Uuid) -> Result<Option<(Position, StreamVersion, StreamId)>, Error> {
        if let Some(found) = self.inner.tail.id(id) {
            return Ok(Some(found));
        }
        index::stored_id(&self.inner.db, self.inner.legacy_head, &self.inner.ids, &self.inner.stats.work, id)
    }

    /// Where the stream index (tail first, then sled) puts `version` of `stream`.
    pub(crate) fn indexed_place(&self, stream: &StreamId, version: StreamVersion) -> Result<Option<Position>, Error> {
        if let Some((_, p)) = self.inner.tail.stream(stream).into_iter().find(|(v, _)| *v == version) {
            return Ok(Some(p));
        }
        let stored = index::stored_places(&self.inner.db, stream, version, 1)?;
        Ok(stored.first().filter(|(v, _)| *v == version).map(|(_, p)| *p))
    }

    /// How many sled keys the log holds, by their tag byte (`k` chunks, `r`
    /// format-1 records, `s` and `i` index entries, `c` checkpoints, `m`
    /// marks). For tests and `klaxon-logtool`: it reads every key.
    #[doc(hidden)]
    pub fn keys_by_tag(&self) -> Result<std::collections::BTreeMap<char, u64>, Error> {
        let mut counts = std::collections::BTreeMap::new();
        for key in self.inner.db.iter().keys() {
            let key = key?;
            *counts.entry(key.first().map_or('?', |b| char::from(*b))).or_insert(0) += 1;
        }
        Ok(counts)
    }

    /// The id runs: how many the in-memory directory lists and how many
    /// are in sled (it reads every id-index key). For tests.
    #[doc(hidden)]
    pub fn id_runs(&self) -> Result<(usize, usize), Error> {
        let mut runs = std::collections::BTreeSet::new();
        for key in self.inner.db.scan_prefix([codec::TAG_ID_RUN]).keys() {
            let key = key?;
            let (run, _) = codec::read_id_piece_key(&key)
                .ok_or_else(|| Error::Corrupt { position: Position::ZERO, reason: "bad id-index key".into() })?;
            runs.insert(run);
        }
        Ok((self.inner.ids.runs(), runs.len()))
    }

    /// Waits until the id index's directory is complete and the run merges
    /// that follow at open are done. For tests.
    #[doc(hidden)]
    pub fn settle_id_index(&self) {
        self.inner.ids.wait_for_scan();
    }

    /// The record at `position`, verified.
    pub fn read_one(&self, position: Position) -> Result<Record, Error> {
        if position == Position::ZERO || position > self.head() {
            return Err(Error::Corrupt { position, reason: "no such record".into() });
        }
        crate::store::read_one(&self.inner.db, self.inner.legacy_head, position)?
            .ok_or_else(|| Error::Corrupt { position, reason: "record missing below the head".into() })
    }

    /// Every record from `from` (inclusive; 0 = from the start): first those
    /// already in the log, then new ones as they become durable, in position
    /// order, without gaps or duplicates. A slow subscriber holds no buffer
    /// that grows: it simply reads further behind in the log.
    pub fn subscribe(&self, from: Position) -> Subscription {
        Subscription::new(self.clone(), from.max(Position(1)))
    }

    /// The durable head as it moves: what a reader that tails the log by
    /// position (a [`Subscription`], the bus's shared reader) waits on. Its
    /// sender is dropped when the writer stops, which ends such tails.
    pub fn durable_watch(&self) -> watch::Receiver<Position> {
        self.inner.durable.clone()
    }

    /// Durably records that consumer `name` has applied everything up to
    /// `position`. Shares the flush with concurrent appends.
    pub async fn save_checkpoint(&self, name: &str, position: Position) -> Result<(), Error> {
        check_consumer_name(name)?;
        let (reply, answer) = oneshot::channel();
        let request = Request::SaveCheckpoint { key: codec::checkpoint_key(name), position, reply };
        self.inner.tx.send(request).await.map_err(|_| Error::Closed)?;
        answer.await.map_err(|_| Error::Closed)?
    }

    /// The last position saved for consumer `name`; 0 when none was saved.
    pub fn load_checkpoint(&self, name: &str) -> Result<Position, Error> {
        check_consumer_name(name)?;
        Ok(Position(
            self.inner.db.get(codec::checkpoint_key(name))?.and_then(|v| codec::read_u64_value(&v)).unwrap_or(0),
        ))
    }

    /// Stops taking appends, commits and syncs everything already queued,
    /// and stops the writer. Reads keep working on this handle; appends
    /// return [`Error::Closed`]. Closing twice is harmless.
    pub async fn close(&self) {
        let (reply, answer) = oneshot::channel();
        if self.inner.tx.send(Request::Close { reply }).await.is_ok() {
            let _ = answer.await;
        }
        let handle = self.inner.writer.lock().expect("writer handle lock").take();
        if let Some(handle) = handle {
            let _ = tokio::task::spawn_blocking(move || handle.join()).await;
        }
    }

    /// The writer's shared state (for tests that order its stages).
    #[cfg(test)]
    pub(crate) fn committer(&self) -> &Arc<Committer> {
        &self.inner.committer
    }

    pub(crate) fn db(&self) -> &sled::Db {
        &self.inner.db
    }

    pub(crate) fn sender(&self) -> &mpsc::Sender<Request> {
        &self.inner.tx
    }
}

/// Whether `tokio::task::block_in_place` may be called here: in a task
/// (not a `block_on` future, where it may panic) of a multi-threaded
/// runtime.
fn may_block_in_place() -> bool {
    tokio::task::try_id().is_some()
        && tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread)
}

/// Which limits [`Log::prepare`] applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Limits {
    /// The configured [`Options`] and the encoding's own bounds.
    Configured,
    /// Only what is the same for every log: the encoding's bounds.
    Structural,
}

/// Upgrades a format-1 folder in place: its records stay under their `r`
/// keys and its indexes were written with them (complete up to the head),
/// so the marker and the index mark change, in one batch, durably.
fn upgrade_from_v1(db: &sled::Db, syncer: &mut Syncer, dir: &Path) -> Result<(), Error> {
    let (_, last) = crate::store::ends(db)?;
    let head = last.map_or(Position::ZERO, |r| r.position);
    let mut batch = sled::Batch::default();
    batch.insert(codec::FORMAT_KEY, codec::FORMAT_MARKER);
    batch.insert(codec::INDEXED_KEY, &codec::u64_value(head.0));
    db.apply_batch(batch)?;
    db.flush()?;
    syncer.sync()?;
    tracing::info!(path = %dir.display(), head = head.0, "upgraded the event log from format 1 to format 2");
    Ok(())
}

/// Upgrades a format-2 folder in place: its id index (one `i` key per id)
/// is rewritten as runs (`j` keys, see `index`) and the marker set to
/// format 3, in one batch, durably. Records, stream index and mark stay.
fn upgrade_from_v2(db: &sled::Db, syncer: &mut Syncer, dir: &Path) -> Result<(), Error> {
    let ids = index::upgrade_ids_to_runs(db)?;
    db.flush()?;
    syncer.sync()?;
    tracing::info!(path = %dir.display(), ids, "upgraded the event log from format 2 to format 3 (id runs)");
    Ok(())
}

/// How long `open` waits for a folder whose sled lock is still held.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// Opens sled, waiting briefly while its lock is held: after a `Log` in this
/// process is closed and dropped, sled's I/O threads may hold the file lock
/// for a few more milliseconds.
fn open_sled(dir: &Path, options: &Options) -> Result<sled::Db, Error> {
    let started = std::time::Instant::now();
    loop {
        let opened =
            sled::Config::new().path(dir).cache_capacity(options.cache_bytes).mode(sled::Mode::HighThroughput).open();
        match opened {
            Ok(db) => return Ok(db),
            // sled reports a held lock only as text (sled 0.34.7 config.rs).
            Err(sled::Error::Io(e)) if e.to_string().contains("could not acquire lock") => {
                if started.elapsed() > LOCK_WAIT {
                    return Err(Error::Locked { path: dir.display().to_string() });
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

pub(crate) fn check_consumer_name(name: &str) -> Result<(), Error> {
    if StreamId::new(name).is_err() || name.len() > CONSUMER_NAME_BYTES_MAX {
        return Err(Error::InvalidConsumerName { name: name.to_string() });
    }
    Ok(())
}
