//! The stream and id indexes, written behind the records.
//!
//! A group commit writes only its records (packed in chunks, see `codec`).
//! Their index entries wait in the [`Tail`], in memory, where the writer
//! (idempotency, stream heads) and the readers (`read_stream`,
//! `stream_version`, `locate`) look first. Once the tail holds
//! [`INDEX_BEHIND_RECORDS`] durable records, the sync stage writes their
//! `s` and `i` keys to sled in one batch together with the `m indexed` mark
//! (the position they reach), and only then forgets them: an entry is always
//! in the tail or in sled, so a reader that looks in the tail first and in
//! sled second never misses one. That batch needs no sync of its own: the
//! next group's flush carries it, and a crash before that leaves the mark
//! behind, and [`rebuild`] indexes the records after it again at open,
//! before the writer takes any append. Only durable records are indexed, so
//! the mark never passes the records on disk.

use std::collections::{HashMap, VecDeque};
use std::sync::RwLock;

use uuid::Uuid;

use crate::idfilter::{IdFilter, Where};
use crate::stats::WorkCounters;
use crate::{Error, Position, Record, StreamId, StreamVersion, codec};

/// Records whose index entries may wait in memory before the sync stage
/// writes them.
pub(crate) const INDEX_BEHIND_RECORDS: usize = 8192;

/// Records indexed per sled batch by [`rebuild`].
const REBUILD_BATCH_RECORDS: usize = 16_384;

/// One record's place, as both indexes hold it.
#[derive(Clone, Debug)]
pub(crate) struct IndexEntry {
    pub position: Position,
    pub id: Uuid,
    pub stream: StreamId,
    pub version: StreamVersion,
}

impl IndexEntry {
    pub(crate) fn of(record: &Record) -> IndexEntry {
        IndexEntry { position: record.position, id: record.id, stream: record.stream.clone(), version: record.version }
    }
}

/// Index entries of records written but not yet indexed in sled, in
/// position order.
#[derive(Default)]
pub(crate) struct Tail {
    inner: RwLock<TailInner>,
}

#[derive(Default)]
struct TailInner {
    ids: HashMap<Uuid, (Position, StreamVersion, StreamId)>,
    streams: HashMap<StreamId, VecDeque<(StreamVersion, Position)>>,
    order: VecDeque<IndexEntry>,
}

impl Tail {
    /// Adds the entries of records just applied (positions above every
    /// entry already here).
    pub(crate) fn add(&self, entries: Vec<IndexEntry>) {
        let mut inner = self.inner.write().expect("index tail lock");
        for e in entries {
            inner.ids.insert(e.id, (e.position, e.version, e.stream.clone()));
            inner.streams.entry(e.stream.clone()).or_default().push_back((e.version, e.position));
            inner.order.push_back(e);
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.inner.read().expect("index tail lock").order.len()
    }

    /// Where the tail says event `id` is.
    pub(crate) fn id(&self, id: Uuid) -> Option<(Position, StreamVersion, StreamId)> {
        self.inner.read().expect("index tail lock").ids.get(&id).cloned()
    }

    /// The tail's (version, position) entries of `stream`, in version order.
    pub(crate) fn stream(&self, stream: &StreamId) -> Vec<(StreamVersion, Position)> {
        let inner = self.inner.read().expect("index tail lock");
        inner.streams.get(stream).map(|v| v.iter().copied().collect()).unwrap_or_default()
    }

    /// The last version of `stream` in the tail.
    pub(crate) fn last_version(&self, stream: &StreamId) -> Option<StreamVersion> {
        let inner = self.inner.read().expect("index tail lock");
        inner.streams.get(stream).and_then(|v| v.back()).map(|(version, _)| *version)
    }

    /// Copies of the entries at or below `head`.
    pub(crate) fn up_to(&self, head: Position) -> Vec<IndexEntry> {
        let inner = self.inner.read().expect("index tail lock");
        inner.order.iter().take_while(|e| e.position <= head).cloned().collect()
    }

    /// Drops the entries at or below `position` (they are in sled now).
    pub(crate) fn forget_up_to(&self, position: Position) {
        let mut inner = self.inner.write().expect("index tail lock");
        while inner.order.front().is_some_and(|e| e.position <= position) {
            let e = inner.order.pop_front().expect("checked");
            inner.ids.remove(&e.id);
            if let Some(versions) = inner.streams.get_mut(&e.stream) {
                versions.pop_front();
                if versions.is_empty() {
                    inner.streams.remove(&e.stream);
                }
            }
        }
    }
}

/// Writes the index entries of `entries` (consecutive records following
/// the current mark) and moves the mark to `up_to`, in one atomic batch:
/// the ids as one run (see [`put_id_run`]), each stream's versions as runs.
/// Returns how many sled keys it wrote.
pub(crate) fn write(db: &sled::Db, entries: &[IndexEntry], up_to: Position) -> Result<u64, Error> {
    let Some(first) = entries.first().map(|e| e.position) else {
        return Ok(0);
    };
    let mut batch = sled::Batch::default();
    let ids: Vec<(Uuid, Position)> = entries.iter().map(|e| (e.id, e.position)).collect();
    let mut keys = 1 + put_id_run(&mut batch, first, ids);
    // Each stream's versions here are consecutive (every version above the
    // mark is in `entries`): one run per stream, split at the run bound.
    let mut runs: HashMap<&StreamId, Vec<(StreamVersion, Vec<Position>)>> = HashMap::new();
    for e in entries {
        let stream_runs = runs.entry(&e.stream).or_default();
        match stream_runs.last_mut() {
            Some((_, positions)) if positions.len() < codec::STREAM_RUN_VERSIONS_MAX => positions.push(e.position),
            _ => stream_runs.push((e.version, vec![e.position])),
        }
    }
    for (stream, stream_runs) in runs {
        for (first, positions) in stream_runs {
            batch.insert(codec::stream_key(stream, first), codec::stream_run_value(&positions));
            keys += 1;
        }
    }
    batch.insert(codec::INDEXED_KEY, &codec::u64_value(up_to.0));
    db.apply_batch(batch)?;
    Ok(keys)
}

/// Puts the id run of the records from `first` on into `batch`: their
/// (id, position) pairs sorted by id, in pieces of at most
/// [`codec::ID_PIECE_IDS_MAX`] under `j first first-id-of-the-piece`.
/// Every position must be within `u32::MAX` of `first`. Returns the keys.
pub(crate) fn put_id_run(batch: &mut sled::Batch, first: Position, mut ids: Vec<(Uuid, Position)>) -> u64 {
    ids.sort_unstable_by_key(|(id, _)| *id);
    let mut keys = 0;
    for piece in ids.chunks(codec::ID_PIECE_IDS_MAX) {
        let entries: Vec<(Uuid, u32)> = piece
            .iter()
            .map(|(id, p)| {
                let offset = p.0.checked_sub(first.0).and_then(|o| u32::try_from(o).ok());
                (*id, offset.expect("an id run spans fewer than 2^32 positions from its first"))
            })
            .collect();
        batch.insert(&codec::id_piece_key(first, piece[0].0), codec::id_piece_value(&entries));
        keys += 1;
    }
    keys
}

/// The position up to which the indexes in sled are complete.
pub(crate) fn indexed(db: &sled::Db) -> Result<Position, Error> {
    match db.get(codec::INDEXED_KEY)? {
        None => Ok(Position::ZERO),
        Some(v) => codec::read_u64_value(&v).map(Position).ok_or_else(|| Error::Corrupt {
            position: Position::ZERO,
            reason: "the indexed-up-to mark does not decode".into(),
        }),
    }
}

/// The id runs' (token, generation) (see [`codec::ID_RUNS_GENERATION_KEY`]),
/// if the folder has one yet. One that does not decode counts as none (it
/// is replaced by a new token, which no saved directory names).
pub(crate) fn id_runs_generation(db: &sled::Db) -> Result<Option<(u64, u64)>, Error> {
    let value = db.get(codec::ID_RUNS_GENERATION_KEY)?;
    let decoded = value.as_deref().and_then(codec::read_id_runs_generation);
    if value.is_some() && decoded.is_none() {
        tracing::warn!("the id runs' generation does not decode; a new one replaces it");
    }
    Ok(decoded)
}

/// Puts the next generation of the id runs into `batch`, which changes
/// existing `j` keys: applied together, the change and the new generation
/// are durable together or not at all, so a saved directory that names the
/// old generation is never taken for the new runs. The caller holds the
/// only right to change `j` keys (the merge lock, or the open).
pub(crate) fn bump_id_runs_generation(db: &sled::Db, batch: &mut sled::Batch) -> Result<(), Error> {
    let (token, generation) = match id_runs_generation(db)? {
        Some(current) => current,
        None => (new_token(), 0),
    };
    batch.insert(codec::ID_RUNS_GENERATION_KEY, &codec::id_runs_generation_value(token, generation + 1));
    Ok(())
}

/// Gives the folder its id runs' generation (a new token, generation 0)
/// if it has none yet; not flushed (the next flush carries it, and nothing
/// relies on it before a flush).
pub(crate) fn ensure_id_runs_generation(db: &sled::Db) -> Result<(), Error> {
    if id_runs_generation(db)?.is_none() {
        db.insert(codec::ID_RUNS_GENERATION_KEY, &codec::id_runs_generation_value(new_token(), 0))?;
    }
    Ok(())
}

/// A random token naming a folder.
fn new_token() -> u64 {
    Uuid::new_v4().as_u64_pair().0
}

/// Indexes the records after the mark up to `head` (the ones a crash
/// caught before their index batch), and flushes. Returns how many.
pub(crate) fn rebuild(db: &sled::Db, legacy_head: Position, head: Position) -> Result<u64, Error> {
    let mut next = indexed(db)?.next();
    let mut count = 0;
    while next <= head {
        let records = crate::store::read_range(db, legacy_head, next, head, REBUILD_BATCH_RECORDS)?;
        let Some(last) = records.last() else { break };
        let entries: Vec<IndexEntry> = records.iter().map(IndexEntry::of).collect();
        write(db, &entries, last.position)?;
        next = last.position.next();
        count += entries.len() as u64;
    }
    if count > 0 {
        db.flush()?;
    }
    Ok(count)
}

/// Where sled's id index puts event `id`: the runs the directory names
/// (every run while it is incomplete), each hit confirmed by the record at
/// the position found (same id), which gives its stream and version.
/// Counts the pieces read in `work`.
pub(crate) fn stored_id(
    db: &sled::Db,
    legacy_head: Position,
    ids: &IdFilter,
    work: &WorkCounters,
    id: Uuid,
) -> Result<Option<(Position, StreamVersion, StreamId)>, Error> {
    // No merge changes the runs while they are searched.
    let searching = ids.search();
    let found = match ids.lookup(id) {
        Where::Absent => None,
        Where::Runs(runs) => {
            let mut found = None;
            for run in runs {
                WorkCounters::add(&work.id_index_reads, 1);
                if let Some(position) = find_in_run(db, run, id)? {
                    found = Some(position);
                    break;
                }
            }
            found
        }
        Where::Everywhere => {
            let mut found = None;
            let mut from = codec::id_piece_key(Position::ZERO, Uuid::nil());
            let end = codec::id_piece_key(Position(u64::MAX), Uuid::max());
            while let Some(entry) = db.range(from..=end).next() {
                let (key, _) = entry?;
                let (run, _) = codec::read_id_piece_key(&key).ok_or_else(|| bad_piece(&key))?;
                WorkCounters::add(&work.id_index_reads, 1);
                if let Some(position) = find_in_run(db, run, id)? {
                    found = Some(position);
                    break;
                }
                if run.0 == u64::MAX {
                    break;
                }
                from = codec::id_piece_key(run.next(), Uuid::nil());
            }
            found
        }
    };
    drop(searching);
    let Some(position) = found else { return Ok(None) };
    let record = crate::store::read_one(db, legacy_head, position)?.ok_or_else(|| Error::Corrupt {
        position,
        reason: format!("the id index puts {id} at a position with no record"),
    })?;
    if record.id != id {
        return Err(Error::Corrupt {
            position,
            reason: format!("the id index puts {id} here, the record is {}", record.id),
        });
    }
    Ok(Some((position, record.version, record.stream)))
}

/// Every (id, position) of the runs starting at `runs`, each piece
/// checked (a damaged piece fails the read: nothing is merged).
pub(crate) fn read_id_runs(db: &sled::Db, runs: &[Position]) -> Result<Vec<(Uuid, Position)>, Error> {
    let mut out = Vec::new();
    for run in runs {
        let range = codec::id_piece_key(*run, Uuid::nil())..=codec::id_piece_key(*run, Uuid::max());
        for entry in db.range(range) {
            let (key, value) = entry?;
            let piece = codec::read_id_piece(&value).ok_or_else(|| bad_piece(&key))?;
            out.extend(piece.into_iter().map(|(id, offset)| (id, Position(run.0 + u64::from(offset)))));
        }
    }
    Ok(out)
}

/// Replaces the id runs starting at `older` and `newer` (adjacent) by one
/// run starting at `older` holding `ids` (both runs' ids, from
/// [`read_id_runs`]), in one atomic sled batch: the old pieces removed,
/// the merged ones written, the id runs' generation bumped. No flush: the
/// next group's carries it, and a crash before leaves the two runs (and
/// the old generation), as complete as the merged one.
pub(crate) fn merge_id_runs(
    db: &sled::Db,
    older: Position,
    newer: Position,
    ids: Vec<(Uuid, Position)>,
) -> Result<u64, Error> {
    let mut batch = sled::Batch::default();
    for run in [older, newer] {
        let range = codec::id_piece_key(run, Uuid::nil())..=codec::id_piece_key(run, Uuid::max());
        for key in db.range(range).keys() {
            batch.remove(key?);
        }
    }
    // Inserted after the removals: a merged piece may reuse a key of the
    // older run, and the batch keeps the last write of a key.
    let keys = put_id_run(&mut batch, older, ids);
    bump_id_runs_generation(db, &mut batch)?;
    db.apply_batch(batch)?;
    Ok(keys)
}

/// The position run `run` holds for `id`: the piece whose first id is the
/// last at or before `id`, searched.
pub(crate) fn find_in_run(db: &sled::Db, run: Position, id: Uuid) -> Result<Option<Position>, Error> {
    let range = codec::id_piece_key(run, Uuid::nil())..=codec::id_piece_key(run, id);
    let Some(entry) = db.range(range).next_back() else { return Ok(None) };
    let (key, value) = entry?;
    let piece = codec::read_id_piece(&value).ok_or_else(|| bad_piece(&key))?;
    Ok(piece.binary_search_by_key(&id, |(i, _)| *i).ok().map(|i| Position(run.0 + u64::from(piece[i].1))))
}

fn bad_piece(key: &[u8]) -> Error {
    Error::Corrupt {
        position: Position::ZERO,
        reason: format!("id index piece {key:?} does not decode or fails its checksum"),
    }
}

/// Rewrites a format-1 or format-2 id index (one `i` key per id, complete
/// up to the `indexed` mark) as runs of [`UPGRADE_RUN_RECORDS`] positions
/// each, removes the `i` keys, sets the format-3 marker and draws a new
/// token for the id runs (generation 0), in one atomic batch. Holds every id in memory meanwhile (24 bytes each). Returns how
/// many ids it moved.
pub(crate) fn upgrade_ids_to_runs(db: &sled::Db) -> Result<u64, Error> {
    let mut runs: std::collections::BTreeMap<u64, Vec<(Uuid, Position)>> = Default::default();
    let mut batch = sled::Batch::default();
    let mut count = 0;
    for entry in db.scan_prefix([codec::TAG_ID]) {
        let (key, value) = entry?;
        let bad =
            || Error::Corrupt { position: Position::ZERO, reason: format!("id index entry {key:?} does not decode") };
        let id = key.get(1..).and_then(|b| Uuid::from_slice(b).ok()).ok_or_else(bad)?;
        let position = codec::read_id_value_position(&value).filter(|p| p.0 > 0).ok_or_else(bad)?;
        runs.entry((position.0 - 1) / UPGRADE_RUN_RECORDS).or_default().push((id, position));
        batch.remove(&*key);
        count += 1;
    }
    for ids in runs.into_values() {
        let first = ids.iter().map(|(_, p)| *p).min().expect("a run is not empty");
        put_id_run(&mut batch, first, ids);
    }
    batch.insert(codec::FORMAT_KEY, codec::FORMAT_MARKER);
    // Every run is new: a new token, so that no saved directory (which
    // names the old one, if any) is taken for any of them.
    batch.insert(codec::ID_RUNS_GENERATION_KEY, &codec::id_runs_generation_value(new_token(), 0));
    db.apply_batch(batch)?;
    Ok(count)
}

/// Positions per id run written by [`upgrade_ids_to_runs`].
const UPGRADE_RUN_RECORDS: u64 = INDEX_BEHIND_RECORDS as u64;

/// Up to `max` (version, position) places of `stream` from version `from`
/// on, as sled's stream index holds them, in version order.
pub(crate) fn stored_places(
    db: &sled::Db,
    stream: &StreamId,
    from: StreamVersion,
    max: usize,
) -> Result<Vec<(StreamVersion, Position)>, Error> {
    let mut out = Vec::new();
    if max == 0 {
        return Ok(out);
    }
    let prefix = codec::stream_prefix(stream);
    // The run holding `from` starts at or before it.
    let start =
        match db.range(codec::stream_key(stream, StreamVersion(0))..=codec::stream_key(stream, from)).next_back() {
            Some(entry) => entry?.0.to_vec(),
            None => codec::stream_key(stream, from),
        };
    for entry in db.range(start..=codec::stream_key(stream, StreamVersion(u64::MAX))) {
        let (key, value) = entry?;
        let (first, positions) = decode_run(stream, &prefix, &key, &value)?;
        for (i, position) in positions.into_iter().enumerate() {
            let version = StreamVersion(first.0 + i as u64);
            if version >= from {
                out.push((version, position));
                if out.len() == max {
                    return Ok(out);
                }
            }
        }
    }
    Ok(out)
}

/// The last (version, position) of `stream` in sled's stream index.
pub(crate) fn stored_last(db: &sled::Db, stream: &StreamId) -> Result<Option<(StreamVersion, Position)>, Error> {
    let prefix = codec::stream_prefix(stream);
    match db.scan_prefix(&prefix).next_back() {
        None => Ok(None),
        Some(entry) => {
            let (key, value) = entry?;
            let (first, positions) = decode_run(stream, &prefix, &key, &value)?;
            let last = *positions.last().expect("a run is not empty");
            Ok(Some((StreamVersion(first.0 + positions.len() as u64 - 1), last)))
        }
    }
}

fn decode_run(
    stream: &StreamId,
    prefix: &[u8],
    key: &[u8],
    value: &[u8],
) -> Result<(StreamVersion, Vec<Position>), Error> {
    let first = key.get(prefix.len()..).and_then(codec::read_u64_value);
    match (first, codec::read_stream_run(value)) {
        (Some(first), Some(positions)) if first > 0 => Ok((StreamVersion(first), positions)),
        _ => Err(Error::Corrupt {
            position: Position::ZERO,
            reason: format!("stream index entry {key:?} of {stream} does not decode"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{EventData, EventKind, ExpectedVersion, NewEvent};

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n.wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835) | 1)
    }

    /// The format-3 upgrade writes every run anew: it draws a new token for
    /// the id runs, so that a saved directory naming the old one (which the
    /// per-run check of `idfilter::file` would not see through: it knows
    /// only merges) is refused whole. A merge keeps the token and bumps the
    /// generation.
    #[test]
    fn the_upgrade_draws_a_new_token_and_a_merge_bumps_the_generation() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().path(dir.path()).open().unwrap();
        let mut batch = sled::Batch::default();
        for n in 1..=600u64 {
            let mut key = vec![codec::TAG_ID];
            key.extend_from_slice(id(u128::from(n)).as_bytes());
            let mut value = n.to_be_bytes().to_vec();
            value.extend_from_slice(&n.to_be_bytes());
            value.extend_from_slice(b"s-1");
            batch.insert(key, value);
        }
        // A folder that somehow already had a token (say, an old version's).
        batch.insert(codec::ID_RUNS_GENERATION_KEY, &codec::id_runs_generation_value(7, 3));
        db.apply_batch(batch).unwrap();
        assert_eq!(upgrade_ids_to_runs(&db).unwrap(), 600);
        let (token, generation) = id_runs_generation(&db).unwrap().unwrap();
        assert_ne!(token, 7, "the upgrade kept the old token");
        assert_eq!(generation, 0);
        // 600 ids in one run at position 1; split off its last 200 as a run
        // of their own, then merge them back.
        let ids = read_id_runs(&db, &[Position(1)]).unwrap();
        let (older, newer): (Vec<_>, Vec<_>) = ids.into_iter().partition(|(_, p)| p.0 <= 400);
        let mut batch = sled::Batch::default();
        for key in db.scan_prefix([codec::TAG_ID_RUN]).keys() {
            batch.remove(key.unwrap());
        }
        put_id_run(&mut batch, Position(1), older.clone());
        put_id_run(&mut batch, Position(401), newer.clone());
        db.apply_batch(batch).unwrap();
        merge_id_runs(&db, Position(1), Position(401), older.into_iter().chain(newer).collect()).unwrap();
        assert_eq!(id_runs_generation(&db).unwrap(), Some((token, 1)));
    }

    /// Whatever the filters say (here: "maybe" for every id and every run,
    /// or not complete yet), a lookup is exact: a present id is found at its
    /// place, confirmed by its record, and an absent one falls through the
    /// run searches to "absent".
    #[tokio::test]
    async fn a_lookup_the_filters_answer_maybe_for_is_still_exact() {
        let dir = tempfile::tempdir().unwrap();
        let log = crate::Log::open(dir.path(), crate::Options::default()).unwrap();
        let stream = StreamId::new("s-1").unwrap();
        for batch in 0..3u128 {
            let events: Vec<NewEvent> = (0..300u128)
                .map(|n| NewEvent {
                    id: id(batch * 300 + n),
                    kind: EventKind::new("test.happened.v1").unwrap(),
                    data: EventData::from_value(&serde_json::json!({ "n": 1 })).unwrap(),
                    metadata: Default::default(),
                })
                .collect();
            log.append(&stream, ExpectedVersion::Any, events).await.unwrap();
        }
        // Closing writes the 900 ids as one run starting at position 1.
        log.close().await;
        let db = log.db().clone();
        let runs: Vec<Position> = db
            .scan_prefix([codec::TAG_ID_RUN])
            .keys()
            .map(|k| codec::read_id_piece_key(&k.unwrap()).unwrap().0)
            .collect();
        assert_eq!(runs.len(), 4, "900 ids in pieces of 256");
        for directory in [IdFilter::saturated(&[Position(1)]), IdFilter::incomplete()] {
            let work = WorkCounters::default();
            for n in 0..900u128 {
                let found = stored_id(&db, Position::ZERO, &directory, &work, id(n)).unwrap();
                assert_eq!(found, Some((Position(n as u64 + 1), StreamVersion(n as u64 + 1), stream.clone())));
                let absent = stored_id(&db, Position::ZERO, &directory, &work, id(n + 10_000)).unwrap();
                assert_eq!(absent, None, "id {} is not in the log", id(n + 10_000));
            }
            assert!(work.id_index_reads.load(std::sync::atomic::Ordering::Relaxed) >= 1800);
        }
    }
}
