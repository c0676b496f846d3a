//! The id filter's directory saved beside the log, so that an open reads
//! only the id runs that changed or were written after it instead of
//! every run.
//!
//! The file is a *derived cache*, never the truth: it is checked by the
//! scan thread after open (`Log::open` does not read it). When it is
//! missing, damaged, of another format or from another folder, that thread
//! scans every run as it would without it. When it is only *stale* (runs
//! merged or written since), the thread keeps the runs of the file that
//! are provably unchanged in sled and scans every other run. What must
//! never happen is a false "absent" (a retried append written twice).
//!
//! Whole-file checks (any failure refuses the file):
//!
//! - its CRC-32 over every byte before it, its magic and its version;
//! - the folder token it names equals sled's (`codec::ID_RUNS_GENERATION_KEY`:
//!   a token drawn for the folder, redrawn by the format-3 upgrade, which
//!   rewrites every run);
//! - the head and `indexed` mark it was written at are not past sled's;
//! - its runs are in position order, none past the position it covers.
//!
//! Per-run check (a run that fails it is scanned, not taken from the
//! file). A run is named by its first position; its ids are those of the
//! positions from its first up to the next run's first (runs tile the
//! indexed positions: an index batch writes the run of the consecutive
//! records after the `indexed` mark and moves the mark in the same atomic
//! batch, and every later change is a merge). The only change to existing
//! runs in a format-3 folder is a merge (`index::merge_id_runs`, one
//! atomic batch): it absorbs a run into the run *right before it*, which
//! keeps its first position, and removes the absorbed run's keys; a run's
//! first position is never written again once removed (positions are
//! never reused, and new runs start after the `indexed` mark, which only
//! grows). So a listed run at `f` whose successor the file names as `n`
//! (the next listed run, or for the last one `indexed + 1` of the file:
//! the first run written after it starts there) holds exactly the ids it
//! held when the file was written if and only if sled still has a run at
//! `f` and the next run in sled starts at `n` (for the last listed run: or
//! there is none and sled's `indexed` mark is still the file's). Had it
//! absorbed anything, the run that followed it would be gone (and with
//! the first positions never coming back, nothing else can start at `n`).
//! Two seeks per listed run; each run's first and last piece keys, which
//! the file also records, are compared as well (a cheap extra guard).
//! The id runs' generation, which every merge bumps, is no longer needed
//! for safety: when it equals the file's every run should pass, and it is
//! logged when it differs.
//!
//! The log-wide filters of the file stay valid for the positions it
//! covers however stale it is: they hold every id at a position up to its
//! `indexed` mark (the writer adds an id to them before its record is
//! indexed), and ids never leave the log (those records were durable when
//! the file was written, and merges only regroup ids). The scan adds the
//! ids of every run it reads (changed runs hold ids past the file's mark
//! that were merged in, new runs the ids after it), so together they hold
//! every id in sled's runs, and the writer adds the rest: an "absent" is
//! never wrong. A run the file keeps has the same ids as its filter in
//! the file; every other run is read from sled. Its extra ids (a merged
//! run's ids counted again, ids of runs the file listed that were merged)
//! only cost a false "maybe".
//!
//! Written at a clean close (`Rounds::close`: the index thread stopped, the
//! rest indexed, sled flushed and synced) and during a long session by the
//! index thread behind its batches (`writer`: at most every
//! `Options::id_filter_save_interval_ms`, when runs were added or merged
//! since the last save). Either way the directory is copied first (with no
//! index batch or merge in between, so its runs are exactly sled's up to
//! the `indexed` mark read with them), then sled is flushed and synced
//! (the close's sync, or the index thread's own), and only then is the
//! file written: every run it lists is durable before it can be read. It
//! goes to a temporary file that is synced, renamed over the old one, and
//! the folder synced: a kill at any point leaves the old file, the new one
//! or none, each of which is valid for what sled holds or refused, run by
//! run. A log whose directory is not complete (its scan did not finish)
//! or whose writes failed writes none and leaves the old one.
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
    /// The log-wide filters: every id at a position up to the file's
    /// `indexed` mark (and maybe more).
    pub blooms: Vec<Bloom>,
    /// The runs of the file that are unchanged in sled (see the module
    /// docs), in position order: every other run in sled is to be scanned.
    pub runs: Vec<Run>,
    /// How many runs the file listed.
    pub listed: usize,
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
/// `header.indexed` and nothing after it, each with the first ids of its
/// first and last pieces in `ends`) atomically as the folder's file. The
/// caller has made every run it lists durable.
pub(super) fn save(
    dir: &Path,
    header: &Header,
    blooms: &[Bloom],
    runs: &[Run],
    ends: &[(Uuid, Uuid)],
) -> io::Result<()> {
    assert_eq!(runs.len(), ends.len(), "each run has its piece ends");
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
        for (run, (first_id, last_id)) in runs.iter().zip(ends) {
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
pub(super) fn piece_ends(db: &sled::Db, first: Position) -> Result<Option<(Uuid, Uuid)>, sled::Error> {
    let range = codec::id_piece_key(first, Uuid::nil())..=codec::id_piece_key(first, Uuid::max());
    let id = |key: sled::IVec| codec::read_id_piece_key(&key).map(|(_, id)| id);
    let head = db.range(range.clone()).keys().next().transpose()?.and_then(id);
    let tail = db.range(range).keys().next_back().transpose()?.and_then(id);
    Ok(head.zip(tail))
}

/// The first position of the first run in sled after the run at `first`,
/// if there is one.
fn next_run(db: &sled::Db, first: Position) -> Result<Option<Position>, sled::Error> {
    let after = std::ops::Bound::Excluded(codec::id_piece_key(first, Uuid::max()));
    let end = std::ops::Bound::Included(codec::id_piece_key(Position(u64::MAX), Uuid::max()));
    let key = db.range::<[u8; 25], _>((after, end)).keys().next().transpose()?;
    Ok(key.and_then(|k| codec::read_id_piece_key(&k)).map(|(run, _)| run))
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
    let generation = match crate::index::id_runs_generation(db) {
        Ok(Some((token, _))) if token != header.token => {
            return Err(invalid("it was written for another folder (token differs)".into()));
        }
        Ok(Some((_, generation))) => generation,
        Ok(None) => return Err(invalid("the folder has no id runs' generation".into())),
        Err(e) => return Err(invalid(e.to_string())),
    };
    if header.head > head || header.indexed > indexed || header.indexed > header.head {
        return Err(invalid(format!(
            "it was written at head {} indexed {}, the log is at head {head} indexed {indexed}",
            header.head, header.indexed
        )));
    }
    if !runs.windows(2).all(|w| w[0].0.first < w[1].0.first) || runs.iter().any(|(r, _)| r.first > header.indexed) {
        return Err(invalid("its runs are out of order or past the position it covers".into()));
    }
    let listed = runs.len();
    let successors: Vec<Position> =
        runs.iter().skip(1).map(|(r, _)| r.first).chain(std::iter::once(header.indexed.next())).collect();
    let mut kept = Vec::with_capacity(listed);
    for ((run, ends), successor) in runs.into_iter().zip(successors) {
        if unchanged(db, &run, ends, successor, header.indexed, indexed).map_err(sled_error)? {
            kept.push(run);
        }
    }
    if generation != header.generation || kept.len() != listed {
        tracing::debug!(
            generation,
            file = header.generation,
            listed,
            kept = kept.len(),
            "the id runs changed since the saved id filter was written; its unchanged runs are kept"
        );
    }
    Ok(Loaded { blooms, runs: kept, listed })
}

/// Whether the run the file lists (with the first ids of its first and
/// last pieces, `ends`, and the first position of the run that followed
/// it, `successor`) holds in sled exactly the ids it held when the file
/// (covering positions up to `covered`) was written; sled is indexed up to
/// `indexed`. See the module docs for why this is exact.
fn unchanged(
    db: &sled::Db,
    run: &Run,
    ends: (Uuid, Uuid),
    successor: Position,
    covered: Position,
    indexed: Position,
) -> Result<bool, sled::Error> {
    if piece_ends(db, run.first)? != Some(ends) {
        // Gone (merged into the run before it), or rewritten.
        return Ok(false);
    }
    Ok(match next_run(db, run.first)? {
        // The run that followed it is still there: it absorbed nothing.
        Some(next) => next == successor,
        // The last run in sled: unchanged only if nothing was indexed
        // since (had runs been written after it and merged into it, the
        // mark would have moved).
        None => successor == covered.next() && indexed == covered,
    })
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
        let bloom = std::sync::Arc::new(get_bloom(input)?);
        runs.push((Run { first, bloom }, (Uuid::from_bytes(head), Uuid::from_bytes(tail))));
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
