//! Making a sled flush durable.
//!
//! sled 0.34.7's `flush()` writes its buffers with `pwrite` and, on Linux,
//! ends in `sync_file_range` (sled's `pagecache/iobuf.rs`; sled issues #1351
//! and #1452). That neither flushes the device's write cache nor syncs the
//! file's metadata (its size), so a power loss can lose "flushed" data. sled
//! also writes oversized pages to files under `blobs/` with plain writes.
//! [`Syncer::sync`] therefore runs after every flush: `fdatasync` of the `db`
//! file, and `fsync` of every blob file created since the last sync plus the
//! `blobs` folder. Only then is an append acknowledged.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

/// How long after its last change a folder's mtime is trusted to reveal the
/// next change: file system timestamps are coarse (one clock tick), so a
/// change within the same tick as the last scan can leave the mtime equal.
const MTIME_SETTLED: Duration = Duration::from_secs(1);

/// A fault to inject into the log's syncs, for tests of what the log does
/// when the disk fails: [`crate::Log::open_with_sync_fault`] opens a log
/// whose syncs fail once this is armed. A log opened with
/// [`crate::Log::open`] has none. Cheap to clone; all clones share one state.
#[derive(Clone, Debug)]
pub struct SyncFault {
    /// Syncs still allowed to succeed; `u64::MAX`: never fail.
    syncs_left: Arc<AtomicU64>,
    /// Syncs that failed because of this fault.
    failed: Arc<AtomicU64>,
}

impl SyncFault {
    /// A fault that is not armed yet: every sync succeeds.
    pub fn new() -> SyncFault {
        SyncFault { syncs_left: Arc::new(AtomicU64::new(u64::MAX)), failed: Arc::default() }
    }

    /// Lets `n` more syncs succeed, then makes every later one fail with an
    /// I/O error (as a failing `fdatasync` would).
    pub fn fail_after(&self, n: u64) {
        self.syncs_left.store(n, Ordering::SeqCst);
    }

    /// How many syncs have failed because of this fault.
    pub fn failures(&self) -> u64 {
        self.failed.load(Ordering::SeqCst)
    }

    /// Counts one sync: `Err` when it must fail.
    fn check(&self) -> io::Result<()> {
        let allowed = self
            .syncs_left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| match left {
                u64::MAX => Some(u64::MAX),
                0 => None,
                n => Some(n - 1),
            })
            .is_ok();
        if allowed {
            return Ok(());
        }
        self.failed.fetch_add(1, Ordering::SeqCst);
        Err(io::Error::other("injected sync fault (SyncFault)"))
    }
}

impl Default for SyncFault {
    fn default() -> SyncFault {
        SyncFault::new()
    }
}

pub(crate) struct Syncer {
    /// Injected by tests; `None` in production.
    fault: Option<SyncFault>,
    db_file: Option<File>,
    blobs_dir: PathBuf,
    /// Blob files are named by a growing log sequence number: everything at
    /// or below this one has been synced.
    blobs_synced_through: u64,
    /// The blobs folder's mtime at the last scan, and whether that mtime was
    /// old enough at the time that an unchanged mtime proves no change.
    scanned: Option<(SystemTime, bool)>,
}

impl Syncer {
    /// Opens sled's files in `dir` and syncs the folder itself once, so that
    /// the files created by `sled::open` have durable directory entries.
    pub(crate) fn open(dir: &Path, fault: Option<SyncFault>) -> io::Result<Syncer> {
        let db_file = File::open(dir.join("db"))?;
        let blobs_dir = dir.join("blobs");
        db_file.sync_all()?;
        File::open(dir)?.sync_all()?;
        let mut syncer = Syncer { fault, db_file: Some(db_file), blobs_dir, blobs_synced_through: 0, scanned: None };
        syncer.sync_blobs(true)?;
        Ok(syncer)
    }

    /// A placeholder left behind when the real syncer moves to the sync
    /// thread; syncing it is a bug.
    pub(crate) fn detached() -> Syncer {
        Syncer { fault: None, db_file: None, blobs_dir: PathBuf::new(), blobs_synced_through: 0, scanned: None }
    }

    /// Makes everything sled has flushed so far durable.
    pub(crate) fn sync(&mut self) -> io::Result<()> {
        if let Some(fault) = &self.fault {
            fault.check()?;
        }
        self.db_file.as_ref().expect("a detached syncer is never used").sync_data()?;
        self.sync_blobs(false)
    }

    fn sync_blobs(&mut self, force_dir: bool) -> io::Result<()> {
        // One stat instead of a folder scan per commit: sled creates blobs
        // only for oversized pages, so the folder rarely changes.
        let mtime = match std::fs::metadata(&self.blobs_dir) {
            Ok(m) => m.modified()?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        if !force_dir && self.scanned == Some((mtime, true)) {
            return Ok(());
        }
        let scan_started = SystemTime::now();
        let entries = match std::fs::read_dir(&self.blobs_dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        let mut highest = self.blobs_synced_through;
        let mut synced_any = false;
        for entry in entries {
            let entry = entry?;
            let Some(lsn) = entry.file_name().to_str().and_then(|n| n.parse::<u64>().ok()) else {
                continue;
            };
            if lsn <= self.blobs_synced_through {
                continue;
            }
            match File::open(entry.path()) {
                Ok(f) => f.sync_all()?,
                // sled removes blobs it no longer needs; a vanished one needs no sync.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            }
            highest = highest.max(lsn);
            synced_any = true;
        }
        if synced_any || force_dir {
            File::open(&self.blobs_dir)?.sync_all()?;
        }
        self.blobs_synced_through = highest;
        let settled = scan_started.duration_since(mtime).is_ok_and(|age| age > MTIME_SETTLED);
        self.scanned = Some((mtime, settled));
        Ok(())
    }
}
