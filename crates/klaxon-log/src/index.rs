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
/// the current mark) and moves the mark to `up_to`, in one atomic batch.
/// Returns how many sled keys it wrote.
pub(crate) fn write(db: &sled::Db, entries: &[IndexEntry], up_to: Position) -> Result<u64, Error> {
    let mut batch = sled::Batch::default();
    let mut keys = 1 + entries.len() as u64;
    // Each stream's versions here are consecutive (every version above the
    // mark is in `entries`): one run per stream, split at the run bound.
    let mut runs: HashMap<&StreamId, Vec<(StreamVersion, Vec<Position>)>> = HashMap::new();
    for e in entries {
        let stream_runs = runs.entry(&e.stream).or_default();
        match stream_runs.last_mut() {
            Some((_, positions)) if positions.len() < codec::STREAM_RUN_VERSIONS_MAX => positions.push(e.position),
            _ => stream_runs.push((e.version, vec![e.position])),
        }
        batch.insert(&codec::id_key(e.id), codec::id_value(e.position, e.version, &e.stream));
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

/// Where sled's id index puts event `id`.
pub(crate) fn stored_id(db: &sled::Db, id: Uuid) -> Result<Option<(Position, StreamVersion, StreamId)>, Error> {
    let Some(value) = db.get(codec::id_key(id))? else {
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
