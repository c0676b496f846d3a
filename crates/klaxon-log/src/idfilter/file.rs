//! The id filter's directory saved beside the log, so that an open reads
//! only the id runs written after it instead of every run.
//!
//! The file is a *derived cache*, never the truth: it is checked whole by
//! the scan thread after open (`Log::open` does not read it) and, when it
//! is missing, damaged, of another format, from another folder or stale,
//! that thread scans every run as it would without it. What
//! must never happen is a false "absent" (a retried append written twice),
//! so a file is trusted only when everything below holds:
//!
//! - its CRC-32 over every byte before it, its magic and its version;
//! - the folder token and the id runs' generation it names equal sled's
//!   (`codec::ID_RUNS_GENERATION_KEY`): every change to existing `j` keys
//!   (a merge, the format-3 upgrade) bumps the generation in its own
//!   atomic batch, so the runs it lists are exactly sled's runs up to the
//!   position it covers;
//! - the head and `indexed` mark it was written at are not past sled's;
//! - its runs are in position order, none past the position it covers,
//!   and each one's first and last piece keys (read from sled when it was
//!   written) are sled's now: a merge into a listed run changes its last
//!   piece (and a merge removes the newer run), so this catches a change
//!   the generation would miss (a folder written by a version that did not
//!   bump it), at two reads per run.
//!
//! It is written at a clean close only (`Rounds::close`: the index thread
//! stopped, the rest indexed, the open's scan and merges stopped, sled
//! flushed and synced, so every run it lists is durable), to a temporary
//! file that is synced, renamed over the old one, and the folder synced:
//! a kill at any point leaves the old file, the new one or none, each of
//! which is either valid for what sled holds or refused. A log whose
//! directory is not complete (its scan did not finish) or whose writes
//! failed writes none and leaves the old one, which stays valid: no run
//! changes while the directory is incomplete.
//!
//! Layout (little-endian): magic `KLXIDF` and the version byte 1, then
//! token, generation, head, indexed (u64 each); the log-wide filters: a
//! count (u32), then per filter capacity, count, words (u64 each) and the
//! words; the runs: a count (u32), then per run its first position, the
//! first ids of its first and last pieces (16 bytes each) and its filter
//! as above; last the CRC-32 (u32) of everything before it.

use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::path::Path;

use uuid::Uuid;

use super::{BITS_PER_ID, Bloom, Run};
use crate::{Position, codec};

/// The file's name in the log's folder.
pub const FILE_NAME: &str = "klaxon-idfilter";
/// Where a new file is written before it is renamed over the old one.
const TEMP_NAME: &str = "klaxon-idfilter.tmp";
const MAGIC: &[u8; 7] = b"KLXIDF\x01";

/// Most log-wide filters a file may hold (each doubles the last).
const BLOOMS_MAX: u32 = 48;

/// A directory loaded from the file and checked against sled.
pub(super) struct Loaded {
    pub blooms: Vec<Bloom>,
    pub runs: Vec<Run>,
    /// The position up to which its runs are every run in sled: the runs
    /// after it are to be scanned.
    pub indexed: Position,
}

/// Why a file was not loaded.
pub(super) enum Refused {
    /// There is none (a first open, or the last session never closed).
    Missing,
    /// It is there but cannot be trusted; the reason, for the warning.
    Invalid(String),
}

/// What the file says about the folder it was written for.
pub(super) struct Header {
    pub token: u64,
    pub generation: u64,
    pub head: Position,
    pub indexed: Position,
}

/// Writes the directory (`blooms` and `runs`, every run of sled up to
/// `header.indexed` and nothing after it) atomically as the folder's file.
/// The caller has made every run it lists durable, and holds off every
/// change to them until this returns. Reads each run's first and last
/// piece keys from `db` (a listed run missing there is an error: nothing
/// is saved).
pub(super) fn save(db: &sled::Db, dir: &Path, header: &Header, blooms: &[Bloom], runs: &[Run]) -> io::Result<()> {
    let mut ends = Vec::with_capacity(runs.len());
    for run in runs {
        match piece_ends(db, run.first).map_err(io::Error::other)? {
            Some(both) => ends.push(both),
            None => return Err(io::Error::other(format!("the listed id run at {} is not in sled", run.first))),
        }
    }
    let temp = dir.join(TEMP_NAME);
    crate::checksummed::write_synced(&temp, |out| {
        out.write_all(MAGIC)?;
        for v in [header.token, header.generation, header.head.0, header.indexed.0] {
            out.write_all(&v.to_le_bytes())?;
        }
        out.write_all(&u32::try_from(blooms.len()).map_err(io::Error::other)?.to_le_bytes())?;
        for bloom in blooms {
            put_bloom(out, bloom)?;
        }
        out.write_all(&u32::try_from(runs.len()).map_err(io::Error::other)?.to_le_bytes())?;
        for (run, (first_id, last_id)) in runs.iter().zip(&ends) {
            out.write_all(&run.first.0.to_le_bytes())?;
            out.write_all(first_id.as_bytes())?;
            out.write_all(last_id.as_bytes())?;
            put_bloom(out, &run.bloom)?;
        }
        Ok(())
    })?;
    std::fs::rename(&temp, dir.join(FILE_NAME))?;
    File::open(dir)?.sync_all()
}

/// The first ids of the first and last pieces of the run at `first` in
/// sled, if it is there.
fn piece_ends(db: &sled::Db, first: Position) -> Result<Option<(Uuid, Uuid)>, sled::Error> {
    let range = codec::id_piece_key(first, Uuid::nil())..=codec::id_piece_key(first, Uuid::max());
    let id = |key: sled::IVec| codec::read_id_piece_key(&key).map(|(_, id)| id);
    let head = db.range(range.clone()).keys().next().transpose()?.and_then(id);
    let tail = db.range(range).keys().next_back().transpose()?.and_then(id);
    Ok(head.zip(tail))
}

fn put_bloom(out: &mut impl Write, bloom: &Bloom) -> io::Result<()> {
    for v in [bloom.capacity, bloom.count, bloom.bits.len() as u64] {
        out.write_all(&v.to_le_bytes())?;
    }
    for word in &bloom.bits {
        out.write_all(&word.to_le_bytes())?;
    }
    Ok(())
}

/// Loads the folder's file and checks it against sled, whose head is
/// `head` and whose indexes are complete up to `indexed` (see the module
/// docs for every check). Reads one sled key per run it lists.
pub(super) fn load(dir: &Path, db: &sled::Db, head: Position, indexed: Position) -> Result<Loaded, Refused> {
    let invalid = |reason: String| Refused::Invalid(reason);
    let file = match File::open(dir.join(FILE_NAME)) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(Refused::Missing),
        Err(e) => return Err(invalid(format!("cannot open it: {e}"))),
    };
    let len = file.metadata().map_err(|e| invalid(format!("cannot read its size: {e}")))?.len();
    let mut input =
        Reading { inner: BufReader::with_capacity(1 << 16, file), crc: crc32fast::Hasher::new(), left: len };
    let (header, blooms, runs) = read(&mut input).map_err(|e| invalid(format!("it does not decode: {e}")))?;
    let expected = input.crc.clone().finalize();
    let mut stored = [0u8; 4];
    input.inner.read_exact(&mut stored).map_err(|e| invalid(format!("its checksum is missing: {e}")))?;
    if u32::from_le_bytes(stored) != expected {
        return Err(invalid("its checksum does not match".into()));
    }
    if input.inner.read(&mut [0u8; 1]).map_err(|e| invalid(e.to_string()))? != 0 {
        return Err(invalid("it has bytes after its checksum".into()));
    }
    let sled_error = |e: sled::Error| invalid(format!("reading sled to check it failed: {e}"));
    match crate::index::id_runs_generation(db) {
        Ok(Some((token, _))) if token != header.token => {
            return Err(invalid("it was written for another folder (token differs)".into()));
        }
        Ok(Some((_, generation))) if generation != header.generation => {
            return Err(invalid(format!(
                "the id runs changed since it was written (generation {} in sled, {} in the file)",
                generation, header.generation
            )));
        }
        Ok(Some(_)) => {}
        Ok(None) => return Err(invalid("the folder has no id runs' generation".into())),
        Err(e) => return Err(invalid(e.to_string())),
    }
    if header.head > head || header.indexed > indexed || header.indexed > header.head {
        return Err(invalid(format!(
            "it was written at head {} indexed {}, the log is at head {head} indexed {indexed}",
            header.head, header.indexed
        )));
    }
    if !runs.windows(2).all(|w| w[0].0.first < w[1].0.first) || runs.iter().any(|(r, _)| r.first > header.indexed) {
        return Err(invalid("its runs are out of order or past the position it covers".into()));
    }
    for (run, ends) in &runs {
        if piece_ends(db, run.first).map_err(sled_error)? != Some(*ends) {
            return Err(invalid(format!("its run at {} is not in sled as it says", run.first)));
        }
    }
    Ok(Loaded { blooms, runs: runs.into_iter().map(|(run, _)| run).collect(), indexed: header.indexed })
}

/// A run as the file lists it: with the first ids of its first and last pieces.
type ListedRun = (Run, (Uuid, Uuid));

fn read(input: &mut Reading) -> io::Result<(Header, Vec<Bloom>, Vec<ListedRun>)> {
    let mut magic = [0u8; MAGIC.len()];
    input.read_exact(&mut magic)?;
    if &magic != MAGIC {
        return Err(io::Error::other("not an id filter file of version 1"));
    }
    let header = Header {
        token: input.u64()?,
        generation: input.u64()?,
        head: Position(input.u64()?),
        indexed: Position(input.u64()?),
    };
    let count = input.u32()?;
    if count == 0 || count > BLOOMS_MAX {
        return Err(io::Error::other(format!("{count} log-wide filters")));
    }
    let blooms = (0..count).map(|_| get_bloom(input)).collect::<io::Result<Vec<_>>>()?;
    let count = input.u32()?;
    let mut runs = Vec::new();
    for _ in 0..count {
        let first = Position(input.u64()?);
        let (mut head, mut tail) = ([0u8; 16], [0u8; 16]);
        input.read_exact(&mut head)?;
        input.read_exact(&mut tail)?;
        runs.push((Run { first, bloom: get_bloom(input)? }, (Uuid::from_bytes(head), Uuid::from_bytes(tail))));
    }
    Ok((header, blooms, runs))
}

fn get_bloom(input: &mut Reading) -> io::Result<Bloom> {
    let (capacity, count, words) = (input.u64()?, input.u64()?, input.u64()?);
    // The shape a filter of this capacity has (probes depend on it), and
    // no more words than the file has bytes left: a damaged count never
    // makes a huge allocation.
    if words != (capacity.max(1).saturating_mul(BITS_PER_ID)).div_ceil(64) || words.saturating_mul(8) > input.left {
        return Err(io::Error::other(format!("a filter of {words} words for {capacity} ids holding {count}")));
    }
    let mut bits = Vec::with_capacity(words as usize);
    let mut buffer = vec![0u8; 1 << 16];
    let mut left = words as usize;
    while left > 0 {
        let n = left.min(buffer.len() / 8);
        input.read_exact(&mut buffer[..n * 8])?;
        bits.extend(buffer[..n * 8].chunks_exact(8).map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes"))));
        left -= n;
    }
    Ok(Bloom { bits, capacity, count })
}

/// A reader that hashes what it reads and counts what is left.
struct Reading {
    inner: BufReader<File>,
    crc: crc32fast::Hasher,
    left: u64,
}

impl Reading {
    fn u64(&mut self) -> io::Result<u64> {
        let mut b = [0u8; 8];
        self.read_exact(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    fn u32(&mut self) -> io::Result<u32> {
        let mut b = [0u8; 4];
        self.read_exact(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }
}

impl Read for Reading {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.crc.update(&buf[..n]);
        self.left = self.left.saturating_sub(n as u64);
        Ok(n)
    }
}
