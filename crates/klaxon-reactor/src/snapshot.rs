//! Projection snapshots: a service's folded state saved at a log position,
//! so that a restart folds only the log's tail after it.
//!
//! A snapshot is a cache, never the truth: the log is. So every doubt
//! about a snapshot means *rebuild from scratch*, never an error: a file
//! that is missing, torn, fails its checksum, has another format or schema
//! version, does not decode, or names a position the log does not have (or
//! has with another event) is ignored, with a log line saying why.
//!
//! One snapshot is one file ([`SnapshotFile`]), replaced atomically: the
//! new content is written to a temporary file beside it, `fsync`ed, renamed
//! over the old one, and the directory is `fsync`ed. The layout is a fixed
//! header then the body, the state as JSON:
//!
//! ```text
//! magic "KLXSNAP\0" | format u32 | schema u32 | position u64 | event id [16]
//! | body length u64 | crc32 u32 (of everything before it and the body) | body
//! ```
//!
//! (all integers little-endian). `format` is this module's layout;
//! `schema` is the service's ([`SnapshotFile::load`]'s caller bumps it when
//! its state's shape changes); `event id` is the id of the record at
//! `position`, so that a snapshot of another log is noticed.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use klaxon_bus::Bus;
use klaxon_log::Position;
use serde::Serialize;
use serde::de::DeserializeOwned;
use uuid::Uuid;

const MAGIC: &[u8; 8] = b"KLXSNAP\0";
/// The layout of the file (header and JSON body).
pub const FORMAT: u32 = 1;
const HEADER_LEN: usize = 8 + 4 + 4 + 8 + 16 + 8 + 4;
/// The largest body a snapshot may have (a bound, not a target: a
/// service's memory is bounded by open work).
pub const BODY_BYTES_MAX: u64 = 4 << 30;

/// Where one service keeps its snapshot.
#[derive(Clone, Debug)]
pub struct SnapshotFile {
    path: PathBuf,
}

/// A snapshot read back: the state folded through `position`, whose record
/// has event id `id`.
#[derive(Debug)]
pub struct Loaded<T> {
    /// The last position folded into `state`.
    pub position: Position,
    /// The event id of the record at `position`.
    pub id: Uuid,
    /// The state.
    pub state: T,
}

/// Why a snapshot was not used (logged, then the service rebuilds).
#[derive(Debug, thiserror::Error)]
pub enum Rejected {
    /// There is none.
    #[error("no snapshot")]
    Missing,
    /// The file could not be read.
    #[error("cannot read it: {0}")]
    Io(#[from] io::Error),
    /// It is shorter than its header says, or not a snapshot at all.
    #[error("torn or not a snapshot")]
    Torn,
    /// Its checksum does not match.
    #[error("checksum mismatch")]
    Checksum,
    /// Another layout.
    #[error("format {found}, this build reads {expected}")]
    Format {
        /// In the file.
        found: u32,
        /// What this build reads.
        expected: u32,
    },
    /// Another schema of the service's state.
    #[error("schema version {found}, this build folds version {expected}")]
    Schema {
        /// In the file.
        found: u32,
        /// What this build folds.
        expected: u32,
    },
    /// The body does not decode as the state.
    #[error("the state does not decode: {0}")]
    Decode(#[from] serde_json::Error),
}

impl SnapshotFile {
    /// The snapshot at `path` (its folder is created on the first save).
    pub fn new(path: impl Into<PathBuf>) -> SnapshotFile {
        SnapshotFile { path: path.into() }
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the snapshot of schema version `schema`. Anything else than a
    /// whole, checked snapshot of that schema is [`Rejected`].
    pub fn load<T: DeserializeOwned>(&self, schema: u32) -> Result<Loaded<T>, Rejected> {
        let bytes = match fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(Rejected::Missing),
            Err(e) => return Err(e.into()),
        };
        if bytes.len() < HEADER_LEN || &bytes[..8] != MAGIC {
            return Err(Rejected::Torn);
        }
        let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
        let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
        let body_len = u64_at(40);
        if body_len > BODY_BYTES_MAX || bytes.len() as u64 != HEADER_LEN as u64 + body_len {
            return Err(Rejected::Torn);
        }
        let mut crc = crc32fast::Hasher::new();
        crc.update(&bytes[..HEADER_LEN - 4]);
        crc.update(&bytes[HEADER_LEN..]);
        if crc.finalize() != u32_at(HEADER_LEN - 4) {
            return Err(Rejected::Checksum);
        }
        let format = u32_at(8);
        if format != FORMAT {
            return Err(Rejected::Format { found: format, expected: FORMAT });
        }
        let found = u32_at(12);
        if found != schema {
            return Err(Rejected::Schema { found, expected: schema });
        }
        let position = Position(u64_at(16));
        let id = Uuid::from_bytes(bytes[24..40].try_into().expect("16 bytes"));
        let state = serde_json::from_slice(&bytes[HEADER_LEN..])?;
        Ok(Loaded { position, id, state })
    }

    /// Saves `state`, folded through `position` (whose record has event id
    /// `id`), as schema version `schema`, replacing the previous snapshot
    /// atomically and durably. Blocking: run it off the async threads.
    pub fn save<T: Serialize>(&self, schema: u32, position: Position, id: Uuid, state: &T) -> io::Result<()> {
        let body = serde_json::to_vec(state).map_err(io::Error::other)?;
        let mut header = Vec::with_capacity(HEADER_LEN);
        header.extend_from_slice(MAGIC);
        header.extend_from_slice(&FORMAT.to_le_bytes());
        header.extend_from_slice(&schema.to_le_bytes());
        header.extend_from_slice(&position.0.to_le_bytes());
        header.extend_from_slice(id.as_bytes());
        header.extend_from_slice(&(body.len() as u64).to_le_bytes());
        let mut crc = crc32fast::Hasher::new();
        crc.update(&header);
        crc.update(&body);
        header.extend_from_slice(&crc.finalize().to_le_bytes());
        let dir = self.path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        fs::create_dir_all(dir)?;
        let mut name = self.path.file_name().unwrap_or_default().to_owned();
        // The process id keeps two processes sharing a folder from writing
        // one temporary file.
        name.push(format!(".{}.tmp", std::process::id()));
        let tmp = dir.join(name);
        {
            let mut file = File::create(&tmp)?;
            file.write_all(&header)?;
            file.write_all(&body)?;
            file.sync_all()?;
        }
        fs::rename(&tmp, &self.path)?;
        File::open(dir)?.sync_all()
    }

    /// Deletes the snapshot (the next start rebuilds from scratch).
    pub fn remove(&self) -> io::Result<()> {
        match fs::remove_file(&self.path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

/// The snapshot in `file` to resume from, if there is one that checks out:
/// whole, of format [`FORMAT`] and schema `schema`, at a position no
/// further than the log's `head`, where the log holds the same event.
/// Anything else is logged (naming `service`) and `None`: rebuild from the
/// log.
pub async fn resume<T: DeserializeOwned + Send + 'static>(
    file: &SnapshotFile,
    schema: u32,
    bus: &Bus,
    head: Position,
    service: &str,
) -> Option<Loaded<T>> {
    let path = file.path().to_owned();
    let reading = file.clone();
    let loaded = tokio::task::spawn_blocking(move || reading.load::<T>(schema))
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
    let loaded = match loaded {
        Ok(loaded) => loaded,
        Err(Rejected::Missing) => {
            tracing::info!(service, path = %path.display(), "no snapshot; rebuilding from the log");
            return None;
        }
        Err(e) => {
            tracing::warn!(service, path = %path.display(), reason = %e, "snapshot ignored; rebuilding from the log");
            return None;
        }
    };
    let position = loaded.position;
    let reason = if position > head {
        format!("it is at position {position}, beyond the log's head {head}")
    } else {
        match bus.read_one(position).await {
            Ok(record) if record.id == loaded.id => {
                tracing::info!(service, %position, %head, "resuming from a snapshot");
                return Some(loaded);
            }
            Ok(record) => format!("the log holds event {} at position {position}, not {}", record.id, loaded.id),
            Err(e) => format!("position {position} cannot be read: {e}"),
        }
    };
    tracing::warn!(service, path = %path.display(), %reason, "snapshot ignored; rebuilding from the log");
    None
}

#[cfg(test)]
mod tests;
