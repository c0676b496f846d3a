//! Making a sled flush durable.
//!
//! sled 0.34.7's `flush()` writes its buffers with `pwrite` and, on Linux,
//! ends in `sync_file_range` (sled's `pagecache/iobuf.rs`; sled issues #1351
//! and #1452). That neither flushes the device's write cache nor syncs the
//! file's metadata (its size), so a power loss can lose "flushed" data. sled
//! also writes oversized pages to files under `blobs/` with plain writes.
//! [`Syncer::sync`] therefore runs after every flush: `fsync` of every blob
//! file created since the last sync plus the `blobs` folder, then
//! `fdatasync` of the `db` file (blobs first, so that a durable log never
//! points at a blob that is not). Only then is an append acknowledged.
//!
//! Blob files cannot be ruled out: sled 0.34.7 decides per *page*, not per
//! value (`pagecache/logger.rs`, `reserve_inner`: a page whose encoding plus
//! a 32-byte header exceeds `segment_size / 4 - 20`, 131,052 bytes with the
//! default 512 KiB segments, goes to a blob file), and it splits leaves by
//! their number of entries (`node.rs`, `should_split`: more than 16), not by
//! bytes. The log's chunks of at most 6 KiB keep a leaf of small records
//! under the threshold, but one event may be up to `event_bytes_max` (1 MiB
//! by default) and gets a chunk, and so a blob, of its own.
//!
//! How new blob files are found: on Linux, an inotify watch on `blobs/`
//! (created before the first scan, so nothing falls between) names every
//! file created there; a sync reads the pending events without blocking (one
//! `read`, nothing pending in the common case) and syncs the files named.
//! The kernel queues the event inside the `open` that creates the file, and
//! sled writes a blob inside the reservation of the page that points to it,
//! before that page can be flushed: every blob that a flushed page needs is
//! named by the time the sync reads. An overflowed queue or a lost watch
//! falls back to listing the folder. Where inotify is unavailable (another
//! OS, or the per-user limit of inotify instances reached), the folder's
//! mtime is compared at each sync and the folder listed when it moved (or
//! is too recent to be trusted).

use std::collections::HashSet;
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
    /// Names the files created in `blobs_dir` (Linux); `None`: the mtime
    /// and listing fallback.
    watch: Option<watch::BlobWatch>,
    /// Blob files synced since open.
    pub(crate) blob_files_synced: u64,
    /// Listings of `blobs_dir` since open.
    pub(crate) blob_listings: u64,
    /// The blob files (sled names them by log sequence number) that the last
    /// listing found and had synced: the next listing syncs the others. A
    /// set, not a highest number, because sled threads may create blobs out
    /// of their numbers' order.
    listed: HashSet<u64>,
    /// The blobs folder's mtime at the last listing, and whether that mtime
    /// was old enough at the time that an unchanged mtime proves no change.
    scanned: Option<(SystemTime, bool)>,
}

impl Syncer {
    /// Opens sled's files in `dir` and syncs the folder itself once, so that
    /// the files created by `sled::open` have durable directory entries.
    pub(crate) fn open(dir: &Path, fault: Option<SyncFault>) -> io::Result<Syncer> {
        Syncer::open_watching(dir, fault, true)
    }

    /// [`Syncer::open`], with the inotify watch or (`watch` false) with the
    /// fallback that other systems use.
    fn open_watching(dir: &Path, fault: Option<SyncFault>, watch: bool) -> io::Result<Syncer> {
        let db_file = File::open(dir.join("db"))?;
        let blobs_dir = dir.join("blobs");
        db_file.sync_all()?;
        File::open(dir)?.sync_all()?;
        // The watch first: the listing below then covers every file created before it.
        let watch = if watch { watch::BlobWatch::open(&blobs_dir) } else { None };
        let mut syncer = Syncer {
            fault,
            db_file: Some(db_file),
            blobs_dir,
            watch,
            blob_files_synced: 0,
            blob_listings: 0,
            listed: HashSet::new(),
            scanned: None,
        };
        syncer.scan_blobs(true)?;
        Ok(syncer)
    }

    /// A placeholder left behind when the real syncer moves to the sync
    /// thread; syncing it is a bug.
    pub(crate) fn detached() -> Syncer {
        Syncer {
            fault: None,
            db_file: None,
            blobs_dir: PathBuf::new(),
            watch: None,
            blob_files_synced: 0,
            blob_listings: 0,
            listed: HashSet::new(),
            scanned: None,
        }
    }

    /// Makes everything sled has flushed so far durable.
    pub(crate) fn sync(&mut self) -> io::Result<()> {
        if let Some(fault) = &self.fault {
            fault.check()?;
        }
        self.sync_blobs()?;
        self.db_file.as_ref().expect("a detached syncer is never used").sync_data()
    }

    /// Syncs the blob files created since the last sync, and their folder.
    fn sync_blobs(&mut self) -> io::Result<()> {
        let Some(watch) = &self.watch else { return self.scan_blobs(false) };
        match watch.created() {
            Created::Nothing => Ok(()),
            Created::Files(names) => {
                let mut synced_any = false;
                for name in names {
                    let path = self.blobs_dir.join(name.to_string());
                    synced_any |= self.sync_blob(&path)?;
                }
                if synced_any {
                    File::open(&self.blobs_dir)?.sync_all()?;
                }
                Ok(())
            }
            // Events were dropped: list the folder (syncing every file in
            // it), and keep watching.
            Created::Overflow => {
                self.listed.clear();
                self.scan_blobs(true)
            }
            Created::Lost(reason) => {
                tracing::warn!(
                    dir = %self.blobs_dir.display(),
                    %reason,
                    "lost the watch on sled's blob folder; listing it whenever its mtime moves instead"
                );
                self.watch = None;
                self.listed.clear();
                self.scan_blobs(true)
            }
        }
    }

    /// Syncs the blob file at `path`; false if it is gone.
    fn sync_blob(&mut self, path: &Path) -> io::Result<bool> {
        match File::open(path) {
            Ok(f) => f.sync_all()?,
            // sled removes blobs it no longer needs; a vanished one needs no sync.
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        }
        self.blob_files_synced += 1;
        Ok(true)
    }

    /// Lists the blob folder (unless `force_dir` is false and its mtime
    /// proves it unchanged) and syncs every file the last listing did not.
    fn scan_blobs(&mut self, force_dir: bool) -> io::Result<()> {
        // One stat instead of a listing per commit: sled creates blobs only
        // for oversized pages, so the folder rarely changes.
        let mtime = match std::fs::metadata(&self.blobs_dir) {
            Ok(m) => m.modified()?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        if !force_dir && self.scanned == Some((mtime, true)) {
            return Ok(());
        }
        let scan_started = SystemTime::now();
        self.blob_listings += 1;
        let entries = match std::fs::read_dir(&self.blobs_dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        let mut listed = HashSet::with_capacity(self.listed.len());
        let mut synced_any = false;
        for entry in entries {
            let entry = entry?;
            let Some(name) = entry.file_name().to_str().and_then(|n| n.parse::<u64>().ok()) else {
                continue;
            };
            if self.listed.contains(&name) {
                listed.insert(name);
            } else if self.sync_blob(&entry.path())? {
                synced_any = true;
                listed.insert(name);
            }
        }
        if synced_any || force_dir {
            File::open(&self.blobs_dir)?.sync_all()?;
        }
        // Only what is still there: the set does not grow with sled's removed blobs.
        self.listed = listed;
        let settled = scan_started.duration_since(mtime).is_ok_and(|age| age > MTIME_SETTLED);
        self.scanned = Some((mtime, settled));
        Ok(())
    }
}

/// What a sync finds in the blob watch's queue.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))] // elsewhere only `Nothing`
enum Created {
    /// No file was created since the last look: the common case.
    Nothing,
    /// The blob files created (by name: sled's log sequence numbers).
    Files(Vec<u64>),
    /// The kernel's queue overflowed: events were dropped.
    Overflow,
    /// The watch is gone (the folder removed, or a read failed).
    Lost(String),
}

/// The inotify watch on sled's blob folder (Linux).
#[cfg(target_os = "linux")]
mod watch {
    use std::mem::MaybeUninit;
    use std::path::Path;

    use rustix::fd::OwnedFd;
    use rustix::fs::inotify::{self, CreateFlags, ReadFlags, WatchFlags};
    use rustix::io::Errno;

    use super::Created;

    pub(super) struct BlobWatch {
        fd: OwnedFd,
    }

    impl BlobWatch {
        /// A non-blocking inotify instance watching `dir` for new files;
        /// `None` when that is impossible (the folder missing, or the
        /// per-user limit of inotify instances reached).
        pub(super) fn open(dir: &Path) -> Option<BlobWatch> {
            let watch = || -> rustix::io::Result<BlobWatch> {
                let fd = inotify::init(CreateFlags::NONBLOCK | CreateFlags::CLOEXEC)?;
                inotify::add_watch(&fd, dir, WatchFlags::CREATE | WatchFlags::MOVED_TO | WatchFlags::ONLYDIR)?;
                Ok(BlobWatch { fd })
            };
            match watch() {
                Ok(w) => Some(w),
                Err(e) => {
                    tracing::debug!(dir = %dir.display(), error = %e, "no inotify watch on sled's blob folder; using its mtime");
                    None
                }
            }
        }

        /// Drains the queue: the files created since the last call.
        pub(super) fn created(&self) -> Created {
            // An event is 16 bytes and a name of at most 255 (NAME_MAX).
            let mut buf = [MaybeUninit::<u8>::uninit(); 4096];
            let mut reader = inotify::Reader::new(&self.fd, &mut buf);
            let mut files = Vec::new();
            let mut overflow = false;
            loop {
                let event = match reader.next() {
                    Ok(event) => event,
                    Err(Errno::AGAIN) => break,
                    Err(Errno::INTR) => continue,
                    Err(e) => return Created::Lost(format!("reading the inotify queue failed: {e}")),
                };
                let flags = event.events();
                if flags.contains(ReadFlags::QUEUE_OVERFLOW) {
                    overflow = true;
                } else if flags.intersects(ReadFlags::IGNORED | ReadFlags::UNMOUNT) {
                    return Created::Lost("the blob folder is no longer watched".into());
                } else if let Some(lsn) = event.file_name().and_then(|n| n.to_str().ok()).and_then(|n| n.parse().ok()) {
                    files.push(lsn);
                }
            }
            match (overflow, files.is_empty()) {
                (true, _) => Created::Overflow,
                (false, true) => Created::Nothing,
                (false, false) => Created::Files(files),
            }
        }
    }
}

/// Elsewhere: no watch; the syncer compares the folder's mtime.
#[cfg(not(target_os = "linux"))]
#[allow(dead_code)] // `BlobWatch::open` gives no watch here: nothing is constructed.
mod watch {
    use std::path::Path;

    use super::Created;

    pub(super) struct BlobWatch;

    impl BlobWatch {
        pub(super) fn open(_dir: &Path) -> Option<BlobWatch> {
            None
        }

        pub(super) fn created(&self) -> Created {
            Created::Nothing
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A folder shaped like sled's: a `db` file and a `blobs` folder.
    fn sled_like() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("db"), b"log").unwrap();
        std::fs::create_dir(dir.path().join("blobs")).unwrap();
        dir
    }

    fn blob(dir: &Path, name: &str) {
        std::fs::write(dir.join("blobs").join(name), vec![7u8; 4096]).unwrap();
    }

    /// Both ways of finding new blob files: the watch (Linux) and the
    /// mtime and listing fallback.
    fn both(check: impl Fn(bool)) {
        check(true);
        check(false);
    }

    #[test]
    fn every_blob_file_created_after_open_is_synced_once_at_the_next_sync() {
        both(|watched| {
            let dir = sled_like();
            blob(dir.path(), "10");
            let mut syncer = Syncer::open_watching(dir.path(), None, watched).unwrap();
            assert_eq!(syncer.blob_files_synced, 1, "the blob there at open (watched: {watched})");
            blob(dir.path(), "50");
            syncer.sync().unwrap();
            assert_eq!(syncer.blob_files_synced, 2, "watched: {watched}");
            // Created after a higher number (sled's threads race): synced too.
            blob(dir.path(), "40");
            blob(dir.path(), "not-a-blob");
            syncer.sync().unwrap();
            assert_eq!(syncer.blob_files_synced, 3, "watched: {watched}");
            syncer.sync().unwrap();
            assert_eq!(syncer.blob_files_synced, 3, "nothing new, nothing synced (watched: {watched})");
        });
    }

    #[test]
    fn a_blob_removed_before_the_sync_is_skipped() {
        both(|watched| {
            let dir = sled_like();
            let mut syncer = Syncer::open_watching(dir.path(), None, watched).unwrap();
            blob(dir.path(), "7");
            std::fs::remove_file(dir.path().join("blobs/7")).unwrap();
            syncer.sync().unwrap();
            assert_eq!(syncer.blob_files_synced, 0, "watched: {watched}");
        });
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn with_the_watch_a_sync_lists_the_blob_folder_only_at_open() {
        let dir = sled_like();
        let mut syncer = Syncer::open(dir.path(), None).unwrap();
        assert!(syncer.watch.is_some(), "inotify is available on Linux");
        for n in 0..100 {
            if n % 10 == 0 {
                blob(dir.path(), &n.to_string());
            }
            syncer.sync().unwrap();
        }
        assert_eq!((syncer.blob_listings, syncer.blob_files_synced), (1, 10));
    }
}
