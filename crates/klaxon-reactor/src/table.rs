//! Rows on disk: what a service keeps of the incidents it no longer holds
//! in memory (intake's list filters, review's trend facts), one
//! fixed-size, checksummed slot per incident number in one file beside the
//! service's snapshot, so that memory is bounded by open work and not by
//! history.
//!
//! The slot of incident `n` is at `HEADER + (n - 1) * slot`, so a row is
//! written, replaced or cleared in place (an incident evicted, read back,
//! evicted again), found in one read, and the rows come out newest first
//! by reading the file backwards (list pages) or all of them by reading it
//! forwards (trends). A slot is a used flag, the row's bytes
//! ([`Row::encode`]) and a CRC32 of the incident number and those bytes; an
//! all-zero slot is empty (a held incident, or none). The file is sparse:
//! the held incidents' slots cost no disk.
//!
//! ```text
//! header: magic "KLXROWS\0" | format u32 | row length u32 | kind [8] | epoch u64 | crc32 u32 | zeros to 64
//! slot:   used u8 (1) | row [Row::LEN] | crc32 u32 (of the number, u64 LE, then the row)
//! ```
//!
//! Consistency with the snapshot. A table is a cache of the state, as the
//! snapshot is: the state saves the table's `epoch` (a random number
//! written in the header when the table is emptied), and
//! [`Table::persist`] (`fdatasync`) runs before the snapshot is written,
//! so every row the snapshot counts on is durable before it. At start,
//! a snapshot is used only with the table of its epoch
//! ([`Table::epoch`]); otherwise, and on every rebuild from scratch, the
//! table is emptied ([`Table::reset`]). Rows written after the snapshot (a
//! crash before the next one) belong to incidents the snapshot holds, or
//! to incidents whose later records the restart folds again (read back,
//! then held): a held incident's slot is never read, and it is written
//! again whole when the incident leaves again. A tail torn by a crash (the
//! file's length not a whole number of slots) is cut at open; a slot that
//! fails its checksum is reported ([`Error::Table`]), never taken as a row.
//!
//! Writes are plain `pwrite`s into the page cache (no sync): they cost the
//! loop that evicts about what its map insert cost, never block the log's
//! appends, and are synced off the loop with the snapshot.

use std::fs::{File, OpenOptions};
use std::io;
use std::marker::PhantomData;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::Error;

const MAGIC: &[u8; 8] = b"KLXROWS\0";
/// The layout of the file (header and slots).
pub const FORMAT: u32 = 1;
/// Bytes before the first slot.
pub const HEADER_LEN: u64 = 64;
/// Slots read at once by the scans.
const SCAN_SLOTS: u64 = 1024;

/// A row a [`Table`] keeps: a fixed-size encoding. Change `LEN` or `KIND`
/// with the encoding (and the service's snapshot schema): a table of
/// another row is emptied at open.
pub trait Row: Sized {
    /// Bytes of [`Row::encode`].
    const LEN: usize;
    /// Names the row's type and version in the header.
    const KIND: [u8; 8];
    /// Writes the row into `out` (`LEN` bytes).
    fn encode(&self, out: &mut [u8]);
    /// Reads a row written by `encode`; `None` when the bytes are not one
    /// (a bug or damage the checksum did not catch: reported).
    fn decode(bytes: &[u8]) -> Option<Self>;
}

/// One service's rows on disk. Safe to share between the loop that writes
/// and the queries that read (`pread`/`pwrite`); the caller orders a
/// write and the reads that must see it (the service's state lock).
pub struct Table<R> {
    file: File,
    /// `None` for an anonymous table (no snapshot: nothing outlives the
    /// process).
    path: Option<PathBuf>,
    epoch: AtomicU64,
    /// Slots written, cleared and read since open (for the benches).
    writes: AtomicU64,
    reads: AtomicU64,
    _row: PhantomData<fn() -> R>,
}

impl<R: Row> std::fmt::Debug for Table<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Table").field("path", &self.path).field("epoch", &self.epoch()).finish()
    }
}

impl<R: Row> Table<R> {
    /// Bytes of one slot.
    pub const SLOT: u64 = 1 + R::LEN as u64 + 4;

    /// Opens (or creates) the table at `path`. A file that is not a table
    /// of `R` reads as having epoch 0 (no snapshot matches it); a torn
    /// tail is cut.
    pub fn open(path: impl Into<PathBuf>) -> io::Result<Table<R>> {
        let path = path.into();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path)?;
        let table = Table::with(file, Some(path));
        let epoch = table.read_header()?;
        table.epoch.store(epoch, Ordering::SeqCst);
        if epoch != 0 {
            let len = table.file.metadata()?.len();
            let whole = HEADER_LEN + (len - HEADER_LEN) / Self::SLOT * Self::SLOT;
            if whole != len {
                tracing::warn!(path = %table.describe(), len, whole, "rows table: torn tail cut");
                table.file.set_len(whole)?;
            }
        }
        Ok(table)
    }

    /// A table in a file no one else sees (created in the temporary
    /// folder and unlinked at once), emptied: for a service without
    /// snapshots, whose rows need not outlive it.
    pub fn anonymous() -> io::Result<Table<R>> {
        let path =
            std::env::temp_dir().join(format!("klaxon-rows-{}-{}", std::process::id(), uuid::Uuid::new_v4().simple()));
        let file = OpenOptions::new().read(true).write(true).create_new(true).open(&path)?;
        std::fs::remove_file(&path)?;
        let table = Table::with(file, None);
        table.reset()?;
        Ok(table)
    }

    /// The table of `snapshot`'s service: beside it, its name with
    /// `.rows` added; anonymous without one.
    pub fn beside(snapshot: Option<&Path>) -> io::Result<Table<R>> {
        match snapshot {
            Some(path) => {
                let mut name = path.as_os_str().to_owned();
                name.push(".rows");
                Table::open(PathBuf::from(name))
            }
            None => Table::anonymous(),
        }
    }

    fn with(file: File, path: Option<PathBuf>) -> Table<R> {
        Table {
            file,
            path,
            epoch: AtomicU64::new(0),
            writes: AtomicU64::new(0),
            reads: AtomicU64::new(0),
            _row: PhantomData,
        }
    }

    /// Where it is (`None`: anonymous).
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    fn describe(&self) -> String {
        self.path.as_ref().map_or_else(|| "(anonymous)".to_owned(), |p| p.display().to_string())
    }

    /// The epoch of its content: a snapshot saved with another one does
    /// not go with it (zero: none is valid).
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    /// Slots written or cleared, and slots read, since open.
    pub fn counts(&self) -> (u64, u64) {
        (self.writes.load(Ordering::Relaxed), self.reads.load(Ordering::Relaxed))
    }

    /// The file's length in bytes (a sparse file: held incidents' slots
    /// take no disk).
    pub fn len_bytes(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    fn read_header(&self) -> io::Result<u64> {
        let mut header = [0u8; HEADER_LEN as usize];
        match self.file.read_exact_at(&mut header, 0) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
            Err(e) => return Err(e),
        }
        let u32_at = |at: usize| u32::from_le_bytes(header[at..at + 4].try_into().expect("4 bytes"));
        let crc = crc32fast::hash(&header[..32]);
        let ours = &header[..8] == MAGIC
            && u32_at(8) == FORMAT
            && u32_at(12) as usize == R::LEN
            && header[16..24] == R::KIND
            && u32_at(32) == crc;
        Ok(if ours { u64::from_le_bytes(header[24..32].try_into().expect("8 bytes")) } else { 0 })
    }

    /// Empties the table and gives it a new epoch, which it returns (the
    /// state that fills it saves it). Durable with the next
    /// [`Table::persist`].
    pub fn reset(&self) -> io::Result<u64> {
        let epoch = loop {
            let e = uuid::Uuid::new_v4().as_u64_pair().0;
            if e != 0 {
                break e;
            }
        };
        self.file.set_len(0)?;
        let mut header = [0u8; HEADER_LEN as usize];
        header[..8].copy_from_slice(MAGIC);
        header[8..12].copy_from_slice(&FORMAT.to_le_bytes());
        header[12..16].copy_from_slice(&u32::try_from(R::LEN).expect("a small row").to_le_bytes());
        header[16..24].copy_from_slice(&R::KIND);
        header[24..32].copy_from_slice(&epoch.to_le_bytes());
        let crc = crc32fast::hash(&header[..32]);
        header[32..36].copy_from_slice(&crc.to_le_bytes());
        self.file.write_all_at(&header, 0)?;
        self.epoch.store(epoch, Ordering::SeqCst);
        Ok(epoch)
    }

    fn offset(number: u64) -> u64 {
        assert!(number >= 1, "incident numbers start at 1");
        HEADER_LEN + (number - 1) * Self::SLOT
    }

    fn crc(number: u64, row: &[u8]) -> u32 {
        let mut crc = crc32fast::Hasher::new();
        crc.update(&number.to_le_bytes());
        crc.update(row);
        crc.finalize()
    }

    /// Writes `row` as incident `number`'s (replacing any).
    pub fn put(&self, number: u64, row: &R) -> io::Result<()> {
        let mut slot = vec![0u8; Self::SLOT as usize];
        slot[0] = 1;
        row.encode(&mut slot[1..=R::LEN]);
        let crc = Self::crc(number, &slot[1..=R::LEN]);
        slot[1 + R::LEN..].copy_from_slice(&crc.to_le_bytes());
        self.writes.fetch_add(1, Ordering::Relaxed);
        self.file.write_all_at(&slot, Self::offset(number))
    }

    /// Empties incident `number`'s slot (it is held again).
    pub fn clear(&self, number: u64) -> io::Result<()> {
        let offset = Self::offset(number);
        if offset >= self.file.metadata()?.len() {
            return Ok(());
        }
        self.writes.fetch_add(1, Ordering::Relaxed);
        self.file.write_all_at(&vec![0u8; Self::SLOT as usize], offset)
    }

    /// Incident `number`'s row, if its slot holds one.
    pub fn get(&self, number: u64) -> Result<Option<R>, Error> {
        let mut slot = vec![0u8; Self::SLOT as usize];
        self.reads.fetch_add(1, Ordering::Relaxed);
        match self.file.read_exact_at(&mut slot, Self::offset(number)) {
            Ok(()) => self.slot(number, &slot),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(None),
            Err(e) => Err(self.io(e)),
        }
    }

    /// The row in `slot`, incident `number`'s: none when it is empty, an
    /// error when it does not check out.
    fn slot(&self, number: u64, slot: &[u8]) -> Result<Option<R>, Error> {
        let (used, rest) = slot.split_first().expect("a slot");
        if *used == 0 && rest.iter().all(|b| *b == 0) {
            return Ok(None);
        }
        let (row, crc) = rest.split_at(R::LEN);
        let stored = u32::from_le_bytes(crc.try_into().expect("4 bytes"));
        if *used != 1 || stored != Self::crc(number, row) {
            return Err(Error::Table {
                path: self.describe(),
                reason: format!("the slot of incident number {number} fails its checksum"),
            });
        }
        R::decode(row).map(Some).ok_or_else(|| Error::Table {
            path: self.describe(),
            reason: format!("the row of incident number {number} does not decode"),
        })
    }

    fn io(&self, e: io::Error) -> Error {
        Error::Table { path: self.describe(), reason: e.to_string() }
    }

    /// The number one past the last slot in the file.
    fn end(&self) -> Result<u64, Error> {
        let len = self.file.metadata().map_err(|e| self.io(e))?.len();
        Ok(len.saturating_sub(HEADER_LEN) / Self::SLOT + 1)
    }

    /// Reads the slots of numbers `[first, first + count)` into `buffer`.
    fn read_chunk(&self, first: u64, count: u64, buffer: &mut Vec<u8>) -> Result<(), Error> {
        buffer.resize((count * Self::SLOT) as usize, 0);
        self.reads.fetch_add(count, Ordering::Relaxed);
        self.file.read_exact_at(buffer, Self::offset(first)).map_err(|e| self.io(e))
    }

    /// Calls `f` with every row, newest (highest number) first, of the
    /// numbers below `below` (all, without), until `f` says stop; reads
    /// [`SCAN_SLOTS`] slots at a time, so memory stays a small buffer.
    /// `skip(number)` passes over a slot without checking it (a held
    /// incident's, which may be one a crash tore).
    pub fn scan_back(
        &self,
        below: Option<u64>,
        skip: impl Fn(u64) -> bool,
        mut f: impl FnMut(u64, R) -> std::ops::ControlFlow<()>,
    ) -> Result<(), Error> {
        let mut end = self.end()?.min(below.unwrap_or(u64::MAX)).max(1);
        let mut buffer = Vec::new();
        while end > 1 {
            let first = end.saturating_sub(SCAN_SLOTS).max(1);
            self.read_chunk(first, end - first, &mut buffer)?;
            for (i, slot) in buffer.chunks_exact(Self::SLOT as usize).enumerate().rev() {
                let number = first + i as u64;
                if skip(number) {
                    continue;
                }
                if let Some(row) = self.slot(number, slot)? {
                    if f(number, row).is_break() {
                        return Ok(());
                    }
                }
            }
            end = first;
        }
        Ok(())
    }

    /// Calls `f` with every row, by number, [`SCAN_SLOTS`] slots read at a
    /// time; `skip(number)` passes over a slot without checking it (a held
    /// incident's, which may be one a crash tore).
    pub fn scan(&self, skip: impl Fn(u64) -> bool, mut f: impl FnMut(u64, R)) -> Result<(), Error> {
        let end = self.end()?;
        let mut first = 1;
        let mut buffer = Vec::new();
        while first < end {
            let count = (end - first).min(SCAN_SLOTS);
            self.read_chunk(first, count, &mut buffer)?;
            for (i, slot) in buffer.chunks_exact(Self::SLOT as usize).enumerate() {
                let number = first + i as u64;
                if skip(number) {
                    continue;
                }
                if let Some(row) = self.slot(number, slot)? {
                    f(number, row);
                }
            }
            first += count;
        }
        Ok(())
    }

    /// Makes every write so far durable (`fdatasync`): before a snapshot
    /// that counts on them is saved. Blocking.
    pub fn persist(&self) -> io::Result<()> {
        self.file.sync_data()
    }
}

#[cfg(test)]
mod tests;
