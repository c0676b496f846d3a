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
pub(crate) fn write(db: &sled::Db, entries: &[IndexEntry], up_to: Position) -> Result<(), Error> {
    let mut batch = sled::Batch::default();
    for e in entries {
        batch.insert(codec::stream_key(&e.stream, e.version), &codec::u64_value(e.position.0));
        batch.insert(&codec::id_key(e.id), codec::id_value(e.position, e.version, &e.stream));
    }
    batch.insert(codec::INDEXED_KEY, &codec::u64_value(up_to.0));
    db.apply_batch(batch)?;
    Ok(())
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
