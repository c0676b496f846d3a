//! Raft's own log and vote on disk (`data_dir/raft/`), durable before
//! openraft is told so.
//!
//! - `vote` and `purged`: small JSON files replaced atomically (temporary
//!   file, `fdatasync`, rename, `fsync` of the folder).
//! - `log/<first index>.seg`: segments of entries, each framed as
//!   `[len: u32 LE][crc32: u32 LE][JSON]`. An append writes its entries
//!   with one `write` and one `fdatasync`, then calls openraft's callback.
//!   A segment rolls over past [`SEGMENT_BYTES_MAX`]; a purge deletes the
//!   segments wholly behind the purge point (after saving it); a truncation
//!   cuts the segment holding the first removed entry and deletes later
//!   ones.
//!
//! Every entry since the last purge is also kept in memory (openraft purges
//! behind snapshots, so this is bounded by the snapshot interval), which is
//! what readers read. At start the segments are read back; a torn record at
//! the very end of the last segment (a crash during its write, never
//! acknowledged) is cut off. A bad record anywhere else is an error.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{ErrorSubject, ErrorVerb, OptionalSend, RaftLogId, RaftLogReader, Vote};

use crate::types::{Entry, LogId, NodeId, StorageError, TypeConfig, storage_error};

/// A segment takes no more entries once it is this large.
pub const SEGMENT_BYTES_MAX: u64 = 64 * 1024 * 1024;
/// Largest entry accepted when reading a segment back (a bigger length is
/// corruption): far above any append the log accepts.
const ENTRY_BYTES_MAX: usize = 256 * 1024 * 1024;
const FRAME_HEADER: usize = 8;

/// Raft's log and vote. Cheap to clone; clones share everything.
#[derive(Clone)]
pub struct LogStore {
    inner: Arc<Mutex<Inner>>,
}

struct Inner {
    dir: PathBuf,
    /// Entries after the purge point, by index.
    entries: BTreeMap<u64, Entry>,
    /// Where each entry is on disk: (segment's first index, byte offset).
    places: BTreeMap<u64, (u64, u64)>,
    /// Segment files by first index.
    segments: BTreeMap<u64, PathBuf>,
    /// The segment appended to, and its length.
    current: Option<(u64, File, u64)>,
    last_purged: Option<LogId>,
    vote: Option<Vote<NodeId>>,
}

impl LogStore {
    /// Opens (or creates) the Raft log in `dir`, reading back what is there.
    pub fn open(dir: &Path) -> io::Result<LogStore> {
        let log_dir = dir.join("log");
        std::fs::create_dir_all(&log_dir)?;
        sync_dir(dir)?;
        let vote = read_json(&dir.join("vote"))?;
        let last_purged: Option<LogId> = read_json(&dir.join("purged"))?;
        let mut segments = BTreeMap::new();
        for entry in std::fs::read_dir(&log_dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(first) = name.strip_suffix(".seg").and_then(|n| n.parse::<u64>().ok()) {
                segments.insert(first, entry.path());
            } else if name.ends_with(".tmp") {
                std::fs::remove_file(entry.path())?;
            }
        }
        let mut inner = Inner {
            dir: dir.to_path_buf(),
            entries: BTreeMap::new(),
            places: BTreeMap::new(),
            segments,
            current: None,
            last_purged,
            vote,
        };
        inner.load()?;
        Ok(LogStore { inner: Arc::new(Mutex::new(inner)) })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().expect("raft log lock")
    }

    /// Runs `f` on the store on a blocking thread (it does file I/O).
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Inner) -> io::Result<T> + Send + 'static,
    ) -> io::Result<T> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || f(&mut inner.lock().expect("raft log lock")))
            .await
            .map_err(io::Error::other)?
    }
}

impl Inner {
    /// Reads every segment back into memory.
    fn load(&mut self) -> io::Result<()> {
        let purged = self.last_purged.map(|l| l.index);
        let firsts: Vec<u64> = self.segments.keys().copied().collect();
        let mut expected_next: Option<u64> = None;
        for (i, first) in firsts.iter().enumerate() {
            let path = self.segments[first].clone();
            let last_segment = i + 1 == firsts.len();
            let mut bytes = Vec::new();
            File::open(&path)?.read_to_end(&mut bytes)?;
            let mut at = 0usize;
            while at < bytes.len() {
                let frame = read_frame(&bytes[at..]);
                let entry = match frame {
                    Some((payload, len)) => match serde_json::from_slice::<Entry>(payload) {
                        Ok(entry) => Some((entry, len)),
                        Err(_) => None,
                    },
                    None => None,
                };
                let Some((entry, len)) = entry else {
                    if last_segment {
                        tracing::warn!(
                            segment = %path.display(),
                            offset = at,
                            dropped_bytes = bytes.len() - at,
                            "cutting off a torn entry at the end of the Raft log (written during a crash, never acknowledged)"
                        );
                        let file = OpenOptions::new().write(true).open(&path)?;
                        file.set_len(at as u64)?;
                        file.sync_all()?;
                        break;
                    }
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("Raft log segment {} is corrupt at byte {at}", path.display()),
                    ));
                };
                let index = entry.get_log_id().index;
                if let Some(next) = expected_next {
                    if index != next {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            format!("Raft log segment {} jumps from index {} to {index}", path.display(), next - 1),
                        ));
                    }
                }
                expected_next = Some(index + 1);
                if purged.is_none_or(|p| index > p) {
                    self.entries.insert(index, entry);
                    self.places.insert(index, (*first, at as u64));
                }
                at += len;
            }
        }
        if let Some((&first, path)) = self.segments.iter().next_back() {
            let file = OpenOptions::new().append(true).open(path)?;
            let len = file.metadata()?.len();
            self.current = Some((first, file, len));
        }
        Ok(())
    }

    fn last_log_id(&self) -> Option<LogId> {
        self.entries.values().next_back().map(|e| *e.get_log_id()).or(self.last_purged)
    }

    /// Writes `entries` to the current segment (rolling over when it is
    /// full) and syncs it.
    fn append(&mut self, entries: Vec<Entry>) -> io::Result<()> {
        let Some(first_index) = entries.first().map(|e| e.get_log_id().index) else { return Ok(()) };
        let roll = match &self.current {
            None => true,
            Some((_, _, len)) => *len >= SEGMENT_BYTES_MAX,
        };
        if roll {
            self.roll(first_index)?;
        }
        let (segment, file, len) = self.current.as_mut().expect("a current segment");
        let mut buffer = Vec::new();
        let mut offsets = Vec::with_capacity(entries.len());
        for entry in &entries {
            offsets.push(*len + buffer.len() as u64);
            let payload = serde_json::to_vec(entry).map_err(io::Error::other)?;
            buffer.extend_from_slice(&(payload.len() as u32).to_le_bytes());
            buffer.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
            buffer.extend_from_slice(&payload);
        }
        file.write_all(&buffer)?;
        file.sync_data()?;
        *len += buffer.len() as u64;
        let segment = *segment;
        for (entry, offset) in entries.into_iter().zip(offsets) {
            let index = entry.get_log_id().index;
            self.places.insert(index, (segment, offset));
            self.entries.insert(index, entry);
        }
        Ok(())
    }

    /// Starts a new segment whose first entry will be `first_index`.
    fn roll(&mut self, first_index: u64) -> io::Result<()> {
        let path = self.dir.join("log").join(format!("{first_index:020}.seg"));
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        // An earlier segment of that name could only be a leftover of a
        // truncation; start it empty.
        file.set_len(0)?;
        file.sync_all()?;
        sync_dir(&self.dir.join("log"))?;
        self.segments.insert(first_index, path);
        self.current = Some((first_index, file, 0));
        Ok(())
    }

    /// Removes every entry from `index` on, on disk and in memory.
    fn truncate(&mut self, index: u64) -> io::Result<()> {
        let Some(&(segment, offset)) = self.places.get(&index) else {
            // Nothing at or after `index` is stored (or it was purged).
            self.entries.retain(|i, _| *i < index);
            return Ok(());
        };
        let later: Vec<u64> = self.segments.range(segment + 1..).map(|(first, _)| *first).collect();
        for first in later {
            let path = self.segments.remove(&first).expect("listed");
            std::fs::remove_file(path)?;
        }
        let path = self.segments[&segment].clone();
        let file = OpenOptions::new().append(true).open(&path)?;
        file.set_len(offset)?;
        file.sync_all()?;
        sync_dir(&self.dir.join("log"))?;
        self.current = Some((segment, file, offset));
        self.entries.retain(|i, _| *i < index);
        self.places.retain(|i, _| *i < index);
        Ok(())
    }

    /// Forgets every entry up to `log_id`: saves the purge point, then
    /// deletes the segments wholly behind it.
    fn purge(&mut self, log_id: LogId) -> io::Result<()> {
        write_json(&self.dir, "purged", &log_id)?;
        self.last_purged = Some(log_id);
        self.entries.retain(|i, _| *i > log_id.index);
        self.places.retain(|i, _| *i > log_id.index);
        let firsts: Vec<u64> = self.segments.keys().copied().collect();
        let current = self.current.as_ref().map(|(first, _, _)| *first);
        for pair in firsts.windows(2) {
            let (first, next_first) = (pair[0], pair[1]);
            if next_first <= log_id.index + 1 && Some(first) != current {
                let path = self.segments.remove(&first).expect("listed");
                std::fs::remove_file(path)?;
            }
        }
        sync_dir(&self.dir.join("log"))?;
        Ok(())
    }
}

/// One frame at the start of `bytes`: its payload and total length, or
/// `None` when it is incomplete or fails its checksum.
fn read_frame(bytes: &[u8]) -> Option<(&[u8], usize)> {
    let len = u32::from_le_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(bytes.get(4..8)?.try_into().ok()?);
    if len > ENTRY_BYTES_MAX {
        return None;
    }
    let payload = bytes.get(FRAME_HEADER..FRAME_HEADER + len)?;
    (crc32fast::hash(payload) == crc).then_some((payload, FRAME_HEADER + len))
}

/// `fsync` of a folder, so that a created, renamed or removed file in it
/// survives a crash.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Replaces `dir/name` with `value` as JSON, atomically and durably.
pub(crate) fn write_json(dir: &Path, name: &str, value: &impl serde::Serialize) -> io::Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    let mut file = File::create(&tmp)?;
    file.write_all(&serde_json::to_vec(value).map_err(io::Error::other)?)?;
    file.sync_all()?;
    std::fs::rename(&tmp, dir.join(name))?;
    sync_dir(dir)
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> io::Result<Option<T>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{}: {e}", path.display()))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        Ok(self.lock().entries.range(range).map(|(_, e)| e.clone()).collect())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let inner = self.lock();
        Ok(LogState { last_purged_log_id: inner.last_purged, last_log_id: inner.last_log_id() })
    }

    async fn get_log_reader(&mut self) -> LogStore {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError> {
        let vote = *vote;
        self.blocking(move |inner| {
            write_json(&inner.dir, "vote", &vote)?;
            inner.vote = Some(vote);
            Ok(())
        })
        .await
        .map_err(|e| storage_error(ErrorSubject::Vote, ErrorVerb::Write, &e))
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError> {
        Ok(self.lock().vote)
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let result = self.blocking(move |inner| inner.append(entries)).await;
        match result {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                let error = storage_error(ErrorSubject::Logs, ErrorVerb::Write, &e);
                callback.log_io_completed(Err(e));
                Err(error)
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.blocking(move |inner| inner.truncate(log_id.index))
            .await
            .map_err(|e| storage_error(ErrorSubject::Logs, ErrorVerb::Delete, &e))
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.blocking(move |inner| inner.purge(log_id))
            .await
            .map_err(|e| storage_error(ErrorSubject::Logs, ErrorVerb::Delete, &e))
    }
}
