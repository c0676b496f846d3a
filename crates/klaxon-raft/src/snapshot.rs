//! Snapshot files: a copy of the event log up to an applied Raft entry.
//!
//! A snapshot is `data_dir/raft/snapshots/<last index>-<term>-<seq>.snap`:
//!
//! ```text
//! "KLXSNAP1"
//! [header length: u32 LE][header: JSON {meta, head, checkpoints}]
//! for each record 1..=head: [position: u64 LE][length: u32 LE][stored encoding]
//! [crc32 of everything before: u32 LE]
//! ```
//!
//! Records are in the log's stored encoding, checksums included, so the
//! receiving node checks each one again when it imports it. A snapshot is
//! written to a temporary file, synced and renamed; only complete, checked
//! files are ever a node's current snapshot.

use std::fs::File;
use std::io::{self, BufReader, Read, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};

use klaxon_log::{Log, Position, Record};
use openraft::SnapshotMeta;
use serde::{Deserialize, Serialize};

use crate::log_store::sync_dir;
use crate::types::{Node, NodeId};

const MAGIC: &[u8; 8] = b"KLXSNAP1";
/// Records read from the log per step while writing a snapshot.
const READ_BATCH: usize = 1024;
/// Largest header accepted (a larger length is corruption).
const HEADER_BYTES_MAX: usize = 64 * 1024 * 1024;
/// Largest record accepted when reading a snapshot.
const RECORD_BYTES_MAX: usize = 256 * 1024 * 1024;

/// What a snapshot holds besides its records.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Header {
    /// openraft's metadata: last applied log id, membership, snapshot id.
    pub meta: SnapshotMeta<NodeId, Node>,
    /// The event log's head: the snapshot holds records 1..=head.
    pub head: u64,
    /// The consumer checkpoints at that point.
    pub checkpoints: Vec<(String, u64)>,
}

/// A snapshot file being written or read by openraft (its `SnapshotData`):
/// a tokio file that knows its path.
pub struct SnapshotFile {
    file: tokio::fs::File,
    path: PathBuf,
}

impl SnapshotFile {
    /// Opens `path` for reading.
    pub async fn open(path: PathBuf) -> io::Result<SnapshotFile> {
        Ok(SnapshotFile { file: tokio::fs::File::open(&path).await?, path })
    }

    /// Creates `path` for receiving a snapshot.
    pub async fn create(path: PathBuf) -> io::Result<SnapshotFile> {
        let file = tokio::fs::OpenOptions::new().read(true).write(true).create_new(true).open(&path).await?;
        Ok(SnapshotFile { file, path })
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Syncs what was written, and gives back the path.
    pub async fn finish(mut self) -> io::Result<PathBuf> {
        use tokio::io::AsyncWriteExt;
        self.file.flush().await?;
        self.file.sync_all().await?;
        Ok(self.path)
    }
}

impl tokio::io::AsyncRead for SnapshotFile {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.file).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for SnapshotFile {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.file).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.file).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.file).poll_shutdown(cx)
    }
}

impl tokio::io::AsyncSeek for SnapshotFile {
    fn start_seek(mut self: Pin<&mut Self>, position: SeekFrom) -> io::Result<()> {
        Pin::new(&mut self.file).start_seek(position)
    }

    fn poll_complete(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<u64>> {
        Pin::new(&mut self.file).poll_complete(cx)
    }
}

/// The snapshot folder: where snapshots are written, received and found.
#[derive(Clone, Debug)]
pub struct SnapshotDir {
    dir: PathBuf,
}

impl SnapshotDir {
    /// Opens (or creates) the folder, removing unfinished files.
    pub fn open(dir: PathBuf) -> io::Result<SnapshotDir> {
        std::fs::create_dir_all(&dir)?;
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".tmp") || name.ends_with(".part") {
                std::fs::remove_file(entry.path())?;
            }
        }
        sync_dir(&dir)?;
        Ok(SnapshotDir { dir })
    }

    /// The current snapshot: the complete one with the highest last index.
    pub fn current(&self) -> io::Result<Option<PathBuf>> {
        let mut best: Option<(u64, PathBuf)> = None;
        for entry in std::fs::read_dir(&self.dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(index) = name.strip_suffix(".snap").and_then(|n| n.split('-').next()?.parse::<u64>().ok()) else {
                continue;
            };
            if best.as_ref().is_none_or(|(b, _)| index > *b) {
                best = Some((index, entry.path()));
            }
        }
        Ok(best.map(|(_, p)| p))
    }

    /// A new file to receive a snapshot into.
    pub fn incoming(&self) -> PathBuf {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        self.dir.join(format!("incoming-{nanos}.part"))
    }

    /// Where the snapshot with `meta` lives once complete.
    pub fn final_path(&self, meta: &SnapshotMeta<NodeId, Node>) -> PathBuf {
        let (index, term) = meta.last_log_id.map_or((0, 0), |l| (l.index, l.leader_id.term));
        let id: String = meta.snapshot_id.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
        self.dir.join(format!("{index:020}-{term}-{id}.snap"))
    }

    /// Makes the checked file at `from` the snapshot `to` (synced rename),
    /// and removes every other snapshot.
    pub fn install(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)?;
        sync_dir(&self.dir)?;
        for entry in std::fs::read_dir(&self.dir)? {
            let entry = entry?;
            let path = entry.path();
            if path != to && path.extension().is_some_and(|e| e == "snap") {
                std::fs::remove_file(path)?;
            }
        }
        sync_dir(&self.dir)
    }

    /// Writes a snapshot of `log` (records 1..=`header.head`) to a
    /// temporary file, synced; returns its path.
    pub fn write(&self, log: &Log, header: &Header) -> io::Result<PathBuf> {
        let tmp = self.dir.join(format!("{}.tmp", header.meta.snapshot_id));
        klaxon_log::checksummed::write_synced(&tmp, |out| {
            out.write_all(MAGIC)?;
            let header_bytes = serde_json::to_vec(header).map_err(io::Error::other)?;
            out.write_all(&(header_bytes.len() as u32).to_le_bytes())?;
            out.write_all(&header_bytes)?;
            let mut next = Position(1);
            while next.0 <= header.head {
                let want = READ_BATCH.min((header.head - next.0 + 1) as usize);
                let records = log.read_all(next, want).map_err(io::Error::other)?;
                if records.is_empty() {
                    return Err(io::Error::other(format!("the log ends before position {next}")));
                }
                for record in &records {
                    let bytes = record.to_bytes();
                    out.write_all(&record.position.0.to_le_bytes())?;
                    out.write_all(&(bytes.len() as u32).to_le_bytes())?;
                    out.write_all(&bytes)?;
                }
                next = Position(records.last().expect("non-empty").position.0 + 1);
            }
            Ok(())
        })?;
        Ok(tmp)
    }
}

fn invalid(path: &Path, what: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("snapshot {}: {what}", path.display()))
}

/// Checks a snapshot file's checksum (the whole file) and reads its header.
pub fn check(path: &Path) -> io::Result<Header> {
    let mut file = File::open(path)?;
    let len = file.metadata()?.len();
    if len < (MAGIC.len() + 4 + 4) as u64 {
        return Err(invalid(path, format!("{len} bytes is too short")));
    }
    let mut crc = crc32fast::Hasher::new();
    let mut left = len - 4;
    let mut buffer = vec![0u8; 1 << 20];
    while left > 0 {
        let n = (left as usize).min(buffer.len());
        file.read_exact(&mut buffer[..n])?;
        crc.update(&buffer[..n]);
        left -= n as u64;
    }
    let mut stored = [0u8; 4];
    file.read_exact(&mut stored)?;
    if crc.finalize() != u32::from_le_bytes(stored) {
        return Err(invalid(path, "checksum mismatch"));
    }
    let reader = SnapshotReader::open(path)?;
    Ok(reader.header)
}

/// Reads a checked snapshot's records in order.
pub struct SnapshotReader {
    path: PathBuf,
    input: BufReader<File>,
    /// The header.
    pub header: Header,
    next: u64,
}

impl SnapshotReader {
    /// Opens a snapshot and reads its header.
    pub fn open(path: &Path) -> io::Result<SnapshotReader> {
        let mut input = BufReader::new(File::open(path)?);
        let mut magic = [0u8; 8];
        input.read_exact(&mut magic)?;
        if &magic != MAGIC {
            return Err(invalid(path, "not a Klaxon snapshot"));
        }
        let mut len = [0u8; 4];
        input.read_exact(&mut len)?;
        let len = u32::from_le_bytes(len) as usize;
        if len > HEADER_BYTES_MAX {
            return Err(invalid(path, format!("header of {len} bytes")));
        }
        let mut header = vec![0u8; len];
        input.read_exact(&mut header)?;
        let header: Header = serde_json::from_slice(&header).map_err(|e| invalid(path, e))?;
        Ok(SnapshotReader { path: path.to_path_buf(), input, header, next: 1 })
    }

    /// Up to `max` next records (fewer at the end), each checked.
    pub fn next_records(&mut self, max: usize) -> io::Result<Vec<Record>> {
        let mut out = Vec::new();
        while out.len() < max && self.next <= self.header.head {
            let mut head = [0u8; 12];
            self.input.read_exact(&mut head)?;
            let position = u64::from_le_bytes(head[..8].try_into().expect("8 bytes"));
            let len = u32::from_le_bytes(head[8..].try_into().expect("4 bytes")) as usize;
            if position != self.next || len > RECORD_BYTES_MAX {
                return Err(invalid(
                    &self.path,
                    format!("expected record {}, found {position} ({len} bytes)", self.next),
                ));
            }
            let mut bytes = vec![0u8; len];
            self.input.read_exact(&mut bytes)?;
            out.push(Record::from_bytes(Position(position), &bytes).map_err(|e| invalid(&self.path, e))?);
            self.next += 1;
        }
        Ok(out)
    }
}
