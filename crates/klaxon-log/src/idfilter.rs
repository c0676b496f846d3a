//! The in-memory directory of the id index: a filter in front of it, so
//! that a new event id (the common case) costs no sled read, and one small
//! filter per id run, so that a known id costs one run's lookup.
//!
//! The id index (format 3) is written behind the records as *runs*: one per
//! index batch, the batch's ids sorted under a few `j` keys (see `codec` and
//! `index`). An id's run cannot be found from the id alone, so this
//! directory says where to look: a Bloom filter over every id in the log
//! ("absent" is exact: no false negatives), and per run its first position
//! and a Bloom filter over its ids. "Maybe" (a real retry, or about 1% of
//! fresh ids) reads the pieces of the runs whose filter says maybe, and a
//! hit is confirmed against the record itself: idempotency stays exact and
//! permanent, the filters only save reads.
//!
//! Completeness: at open a scan thread ("klaxon-log-ids") reads the runs
//! already in sled (all of them, up to the `indexed` mark the open
//! completed before the writer started) into filters of the same shape,
//! while the writer records every id it applies and the index thread adds
//! every run it writes. When the scan is done it joins its filters in, and
//! only from then on is an "absent" or a run list trusted. Until then (and
//! for good if the scan fails) a lookup reads every run in sled. About 20
//! bits per id in memory (10 in the log-wide filter, 10 in its run's).
//!
//! Until the join the directory has no log-wide filter of its own: the
//! writer's ids are kept as a plain list (nothing reads them before the
//! join), and the join puts them into the scan's filters, which were sized
//! with room for them. So an open allocates the filter for the ids already
//! in the log once, whether it loads it from the file or builds it by a
//! scan. Only when the writer applies more than [`EARLY_IDS_MAX`] ids before
//! the join does the list move into a filter of its own ([`ROOM_IDS_MIN`]
//! ids, doubling), which the join keeps behind the scan's.
//!
//! Saved beside the log: the directory is also written to a file (`file`,
//! a derived cache, checked at load: checksum, the folder's token, the
//! positions it covers, and per run whether sled still holds exactly that
//! run), at a clean close and during a long session behind the index
//! batches (see `writer`, `Options::id_filter_save_interval_ms`). The scan
//! thread, not `Log::open`, loads it: it keeps the file's log-wide filters
//! and the runs that are provably unchanged in sled, and scans every
//! other run (those merged since, and those written after the file); a
//! file that is missing, damaged or another folder's is a full scan as
//! above. The check against sled still holds when the thread makes it
//! after the writer started: no run up to the open's `indexed` mark
//! changes before the directory is complete (merges wait for it), and the
//! index thread only adds runs after that mark. Either way the directory
//! is complete only once the scan is in, so an id is never answered
//! "absent" from a part of the runs.
//!
//! Why no id is lost with a stale file: the file's log-wide filters hold
//! every id up to its mark (ids never leave the log: merges only regroup
//! them), the scan adds every id of the runs it reads, and every run not
//! kept is read; a kept run holds exactly the ids of its filter in the
//! file (`file` argues it), so every id in sled is in a log-wide filter
//! and in the filter of the run that holds it.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::thread::JoinHandle;

use uuid::Uuid;

use crate::stats::WorkCounters;
use crate::{Position, codec};

mod file;

pub use file::FILE_NAME;

/// Bits per id: with [`HASHES`] probes, about 1% of fresh ids still read sled.
const BITS_PER_ID: u64 = 10;
/// Probes per id.
const HASHES: u64 = 7;
/// Ids the first filter has room for beyond the log's records at open.
const ROOM_IDS_MIN: u64 = 1 << 20;
/// Most ids in a run made by merging two: bounds a merge's memory (24
/// bytes per id, about 6 MiB) and its sled batch (1,024 pieces).
pub(crate) const RUN_IDS_MERGED_MAX: u64 = 1 << 18;
/// Most merges the scan thread does right after open.
const MERGES_AT_OPEN_MAX: usize = 256;
/// Most ids the writer's list holds before the join (16 bytes each: 1
/// MiB, less than the smallest filter); beyond, they move into a filter.
const EARLY_IDS_MAX: usize = 1 << 16;
/// Ids of the writer's list the join moves into the filters per hold of
/// the lock (the writer inserts meanwhile, straight into the filters).
const JOIN_IDS_PER_LOCK: usize = 4096;
/// Words of a log-wide filter a save copies per hold of the lock (512
/// KiB: tens of microseconds; the writer inserts in between).
const COPY_WORDS_PER_LOCK: usize = 1 << 16;

/// One Bloom filter of fixed size.
pub(crate) struct Bloom {
    bits: Vec<u64>,
    /// Ids it was sized for; once this many went in, the next filter takes over.
    capacity: u64,
    count: u64,
}

impl Bloom {
    fn new(capacity: u64) -> Bloom {
        let words = (capacity.max(1) * BITS_PER_ID).div_ceil(64);
        Bloom { bits: vec![0; words as usize], capacity, count: 0 }
    }

    /// The (word, bit mask) of each probe of `id`.
    fn probes(&self, id: Uuid) -> [(usize, u64); HASHES as usize] {
        let bits = self.bits.len() as u64 * 64;
        let v = id.as_u128();
        // Ids are often random (v4, v5), but not always (v7 starts with a
        // time): mix both halves before using them.
        let h1 = mix(v as u64);
        let h2 = mix((v >> 64) as u64 ^ 0x9e37_79b9_7f4a_7c15) | 1;
        std::array::from_fn(|i| {
            let h = h1.wrapping_add((i as u64).wrapping_mul(h2));
            // Lemire's multiply-shift maps h onto 0..bits without a division.
            let bit = ((u128::from(h) * u128::from(bits)) >> 64) as u64;
            ((bit / 64) as usize, 1u64 << (bit % 64))
        })
    }

    fn insert(&mut self, id: Uuid) {
        for (word, mask) in self.probes(id) {
            self.bits[word] |= mask;
        }
        self.count += 1;
    }

    fn may_contain(&self, id: Uuid) -> bool {
        self.probes(id).iter().all(|(word, mask)| self.bits[*word] & mask != 0)
    }
}

/// The splitmix64 finalizer: spreads every input bit over the output.
fn mix(mut x: u64) -> u64 {
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Where the directory says to look for an id in sled's id runs.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Where {
    /// Certainly not in the log, nor applied by the writer.
    Absent,
    /// Only in these runs (their first positions, newest first), if anywhere.
    Runs(Vec<Position>),
    /// The directory is not complete yet: every run in sled.
    Everywhere,
}

/// The directory of the id index (see the module docs). Shared by the
/// writer (which adds the ids it applies), the index thread (which adds the
/// runs it writes) and the readers.
pub(crate) struct IdFilter {
    inner: Arc<RwLock<Inner>>,
    scan: Mutex<Option<Scan>>,
    /// Held (shared) by every search of sled's runs, and exclusively by a
    /// merge while it replaces runs in sled and here: a search never sees
    /// the runs in sled and the directory disagree.
    searching: Arc<RwLock<()>>,
    /// One merge at a time (the scan thread after open, the index thread
    /// after an index batch).
    merging: Arc<Mutex<()>>,
    /// Runs added and merges made since open, and that count when the
    /// last save copied the directory: a save is due only when they differ.
    changes: Arc<Changes>,
}

#[derive(Default)]
struct Changes {
    made: AtomicU64,
    saved: AtomicU64,
}

struct Inner {
    /// Until the join, none (or, past [`EARLY_IDS_MAX`] early ids, the
    /// writer's own); from the join, first the scan's (sized at the scan
    /// for the ids then in the log plus room, or loaded from the file),
    /// then those. Each one added when the last filled up is twice as
    /// large.
    blooms: Vec<Bloom>,
    /// While `collecting` (and until the join has moved them): the ids the
    /// writer applied since open, which the join moves into the filters.
    early: Vec<Uuid>,
    /// Whether the writer's ids go to `early` (from open until the join
    /// takes the list, or until it grows past [`EARLY_IDS_MAX`]).
    collecting: bool,
    /// Every run written since open, and once `complete` every run, in
    /// position order.
    runs: Vec<Run>,
    /// Whether the ids and runs that were in sled at open are in.
    complete: bool,
}

impl Inner {
    /// A directory at open: no filter, the writer's ids collected.
    fn at_open() -> Inner {
        Inner { blooms: Vec::new(), early: Vec::new(), collecting: true, runs: Vec::new(), complete: false }
    }

    /// A complete directory of these filters and runs (for tests).
    #[cfg(test)]
    fn complete(blooms: Vec<Bloom>, runs: Vec<Run>) -> Inner {
        Inner { blooms, early: Vec::new(), collecting: false, runs, complete: true }
    }

    /// Records ids the writer applied: in the list until the join, or in
    /// the log-wide filters.
    fn insert(&mut self, ids: impl IntoIterator<Item = Uuid>) {
        if !self.collecting {
            return insert_into(&mut self.blooms, ids);
        }
        self.early.extend(ids);
        if self.early.len() > EARLY_IDS_MAX {
            // The scan is slow or failed: a filter is smaller than more ids.
            self.collecting = false;
            let early = std::mem::take(&mut self.early);
            insert_into(&mut self.blooms, early);
        }
    }
}

/// Adds ids to the last filter of `blooms`, or to a new one twice as large
/// once it is full ([`ROOM_IDS_MIN`] ids for a first one).
fn insert_into(blooms: &mut Vec<Bloom>, ids: impl IntoIterator<Item = Uuid>) {
    for id in ids {
        let capacity = match blooms.last() {
            None => Some(ROOM_IDS_MIN),
            Some(last) if last.count >= last.capacity => Some(last.capacity * 2),
            Some(_) => None,
        };
        if let Some(capacity) = capacity {
            blooms.push(Bloom::new(capacity));
        }
        blooms.last_mut().expect("just made sure").insert(id);
    }
}

/// A copy of the directory to be saved (see [`IdFilter::snapshot`]).
pub(crate) struct Snapshot {
    header: file::Header,
    blooms: Vec<Bloom>,
    runs: Vec<Run>,
    /// The first ids of each run's first and last pieces.
    ends: Vec<(Uuid, Uuid)>,
    /// The directory's changes when it was copied.
    changes: u64,
}

/// One id run: its first position and a filter over its ids (never
/// changed once made: a merge makes a new one, and a save shares it).
struct Run {
    first: Position,
    bloom: Arc<Bloom>,
}

struct Scan {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl IdFilter {
    /// Starts the scan thread for the id runs in `db` (a log in `dir`
    /// whose records up to `indexed` are all indexed, and whose head is
    /// `head`), which loads a valid saved directory and scans the runs
    /// after it, or else scans every run. Reads nothing itself: returns a
    /// directory that is not complete yet. Counts the load and the runs the
    /// scan reads in `stats`. A test's `gate` holds the thread at its
    /// stages.
    pub(crate) fn open(
        db: &sled::Db,
        dir: &Path,
        head: Position,
        indexed: Position,
        stats: Arc<crate::LogStats>,
        gate: Option<IdScanGate>,
    ) -> IdFilter {
        let inner = Arc::new(RwLock::new(Inner::at_open()));
        let stop = Arc::new(AtomicBool::new(false));
        let searching = Arc::new(RwLock::new(()));
        let merging = Arc::new(Mutex::new(()));
        let changes = Arc::new(Changes::default());
        let spawned = {
            let db = db.clone();
            let dir = dir.to_path_buf();
            let stop = stop.clone();
            let inner = inner.clone();
            let (searching, merging, changes) = (searching.clone(), merging.clone(), changes.clone());
            std::thread::Builder::new().name("klaxon-log-ids".into()).spawn(move || {
                let held = |stage| gate.as_ref().is_none_or(|g| g.pass(stage, &stop));
                if !held(IdScanStage::BeforeLoad) {
                    return;
                }
                let Some((blooms, runs, ids)) = load_and_scan(&db, &dir, head, indexed, &stop, &stats) else {
                    return;
                };
                if !held(IdScanStage::BeforeJoin) {
                    return;
                }
                join(&inner, blooms, runs);
                tracing::debug!(ids, "id filter complete");
                // The runs that closes and crashes left: merge them now,
                // behind the writer (appends do not wait for this).
                let filter = IdFilter { inner, scan: Mutex::new(None), searching, merging, changes };
                filter.merge_runs(&db, MERGES_AT_OPEN_MAX, &stop);
            })
        };
        let scan = match spawned {
            Ok(thread) => Some(Scan { stop, thread }),
            Err(e) => {
                tracing::warn!(error = %e, "cannot start the id filter's scan; every id lookup reads every run");
                None
            }
        };
        IdFilter { inner, scan: Mutex::new(scan), searching, merging, changes }
    }

    /// Holds off merges while the caller searches sled's runs (see
    /// `index::stored_id`): take it before [`IdFilter::lookup`].
    pub(crate) fn search(&self) -> std::sync::RwLockReadGuard<'_, ()> {
        self.searching.read().expect("id search lock")
    }

    /// How many runs the directory holds (all of them once complete).
    pub(crate) fn runs(&self) -> usize {
        self.inner.read().expect("id filter lock").runs.len()
    }

    /// The adjacent pair of runs to merge next, if any (only once the
    /// directory is complete): the cheapest pair (fewest ids) where the
    /// newer run holds at least half as many ids as the older and both
    /// together at most [`RUN_IDS_MERGED_MAX`]. Merging until no pair
    /// qualifies leaves runs that shrink by half from one to the next, so
    /// their number grows with the logarithm of the ids (plus one per
    /// [`RUN_IDS_MERGED_MAX`] ids), whatever closes and crashes added.
    fn merge_candidate(&self) -> Option<(Position, Position)> {
        let inner = self.inner.read().expect("id filter lock");
        if !inner.complete {
            return None;
        }
        inner
            .runs
            .windows(2)
            .filter(|w| {
                let (a, b) = (w[0].bloom.count, w[1].bloom.count);
                2 * b >= a && a + b <= RUN_IDS_MERGED_MAX
            })
            .min_by_key(|w| w[0].bloom.count + w[1].bloom.count)
            .map(|w| (w[0].first, w[1].first))
    }

    /// Merges pairs of runs (see [`IdFilter::merge_candidate`]) until none
    /// qualifies, at most `max` of them, or `stop` is set. Returns how many.
    /// Each merge is one atomic sled batch (see `index::merge_id_runs`):
    /// a crash leaves either both runs or the merged one, and either is a
    /// complete index. A failed merge is logged and changes nothing.
    pub(crate) fn merge_runs(&self, db: &sled::Db, max: usize, stop: &AtomicBool) -> usize {
        let _one = self.merging.lock().expect("id merge lock");
        let mut merged = 0;
        while merged < max && !stop.load(Ordering::Relaxed) {
            let Some((older, newer)) = self.merge_candidate() else { break };
            match crate::index::read_id_runs(db, &[older, newer]) {
                Ok(ids)
                    if ids.iter().any(|(_, p)| p.0.checked_sub(older.0).is_none_or(|o| o > u64::from(u32::MAX))) =>
                {
                    tracing::warn!(%older, %newer, "two id runs span too many positions to merge; both stay");
                    break;
                }
                Ok(ids) => {
                    let run = run_of(older, &ids.iter().map(|(id, _)| *id).collect::<Vec<_>>());
                    // Exclusively: no search runs between the batch and
                    // the directory's change.
                    let _searches = self.searching.write().expect("id search lock");
                    if let Err(e) = crate::index::merge_id_runs(db, older, newer, ids) {
                        tracing::warn!(error = %e, "merging two id runs failed; both stay");
                        break;
                    }
                    let mut inner = self.inner.write().expect("id filter lock");
                    let at = inner.runs.iter().position(|r| r.first == older).expect("a run to merge is listed");
                    assert_eq!(inner.runs[at + 1].first, newer, "merged runs are adjacent");
                    inner.runs.splice(at..at + 2, [run]);
                    self.changes.made.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "reading two id runs to merge failed; both stay");
                    break;
                }
            }
            merged += 1;
        }
        merged
    }

    /// Where `id` may be in sled's id runs (the caller looked in the
    /// writer's pending group and the index tail first, or will).
    pub(crate) fn lookup(&self, id: Uuid) -> Where {
        let inner = self.inner.read().expect("id filter lock");
        if !inner.complete {
            return Where::Everywhere;
        }
        if !inner.blooms.iter().any(|b| b.may_contain(id)) {
            return Where::Absent;
        }
        // Newest first: a retry usually repeats a recent append.
        Where::Runs(inner.runs.iter().rev().filter(|r| r.bloom.may_contain(id)).map(|r| r.first).collect())
    }

    /// `false` only when `id` is certainly neither in the log nor applied
    /// by the writer; `true` when it may be (then look it up).
    pub(crate) fn may_contain(&self, id: Uuid) -> bool {
        let inner = self.inner.read().expect("id filter lock");
        !inner.complete || inner.blooms.iter().any(|b| b.may_contain(id))
    }

    /// Records that these ids are (about to be) in the log. The writer
    /// calls this for every id it applies, before anyone can read them.
    pub(crate) fn insert(&self, ids: impl IntoIterator<Item = Uuid>) {
        self.inner.write().expect("id filter lock").insert(ids);
    }

    /// Records a run just written to sled (before its ids leave the index
    /// tail, so a reader finds each id in one or the other).
    pub(crate) fn add_run(&self, first: Position, ids: &[Uuid]) {
        let run = run_of(first, ids);
        let mut inner = self.inner.write().expect("id filter lock");
        debug_assert!(inner.runs.last().is_none_or(|r| r.first < first), "runs are added in position order");
        inner.runs.push(run);
        self.changes.made.fetch_add(1, Ordering::Relaxed);
    }

    /// A complete directory whose filters answer "maybe" for every id, over
    /// runs starting at `runs` (for tests of the exact fall-through).
    #[cfg(test)]
    pub(crate) fn saturated(runs: &[Position]) -> IdFilter {
        let full = || {
            let mut bloom = Bloom::new(1);
            bloom.bits.iter_mut().for_each(|w| *w = u64::MAX);
            bloom
        };
        let runs = runs.iter().map(|first| Run { first: *first, bloom: Arc::new(full()) }).collect();
        IdFilter::of(Inner::complete(vec![full()], runs))
    }

    /// A directory whose scan has not come in (for tests).
    #[cfg(test)]
    pub(crate) fn incomplete() -> IdFilter {
        IdFilter::of(Inner::at_open())
    }

    #[cfg(test)]
    fn of(inner: Inner) -> IdFilter {
        IdFilter {
            inner: Arc::new(RwLock::new(inner)),
            scan: Mutex::new(None),
            searching: Default::default(),
            merging: Default::default(),
            changes: Default::default(),
        }
    }

    /// Stops the scan and the merges that follow it at open, and waits for
    /// them: at close, before [`IdFilter::save`]. A scan not finished
    /// leaves the directory incomplete (lookups read every run).
    pub(crate) fn stop_scan(&self) {
        if let Some(scan) = self.scan.lock().expect("scan lock").take() {
            scan.stop.store(true, Ordering::Relaxed);
            let _ = scan.thread.join();
        }
    }

    /// Whether runs were added or merged since the last save copied the
    /// directory (or since open).
    pub(crate) fn save_due(&self) -> bool {
        self.changes.made.load(Ordering::Relaxed) != self.changes.saved.load(Ordering::Relaxed)
    }

    /// Copies the directory to be saved (see `file`), if it is complete:
    /// its runs, each with its piece ends read from sled, and sled's
    /// `indexed` mark under the merge lock, then the log-wide filters a
    /// part at a time. `head` is a durable head at or past the mark. The
    /// caller holds off index batches until this returns (so the runs are
    /// exactly sled's up to the mark), and makes sled durable before
    /// [`IdFilter::write`]: every run copied is in sled already.
    ///
    /// The lock that appends need (the writer adds every id to the
    /// filters) is held for one part at a time, never for the whole copy
    /// (tens of MB at ten million ids). The filters only ever gain bits,
    /// so a copy made part by part holds every id added before it began:
    /// every id up to the mark.
    pub(crate) fn snapshot(&self, db: &sled::Db, head: Position) -> Result<Option<Snapshot>, String> {
        let (runs, changes) = {
            let _no_merge = self.merging.lock().expect("id merge lock");
            let inner = self.inner.read().expect("id filter lock");
            if !inner.complete {
                return Ok(None);
            }
            let runs: Vec<Run> = inner.runs.iter().map(|r| Run { first: r.first, bloom: r.bloom.clone() }).collect();
            let changes = self.changes.made.load(Ordering::Relaxed);
            drop(inner);
            let (token, generation) = crate::index::id_runs_generation(db)
                .map_err(|e| e.to_string())?
                .ok_or("the folder has no id runs' generation")?;
            let indexed = crate::index::indexed(db).map_err(|e| e.to_string())?;
            if runs.last().is_some_and(|r| r.first > indexed) {
                return Err(format!("the id filter lists a run past the indexed mark {indexed}"));
            }
            let mut ends = Vec::with_capacity(runs.len());
            for run in &runs {
                match file::piece_ends(db, run.first).map_err(|e| e.to_string())? {
                    Some(both) => ends.push(both),
                    None => return Err(format!("the listed id run at {} is not in sled", run.first)),
                }
            }
            let header = file::Header { token, generation, head: head.max(indexed), indexed };
            ((header, runs, ends), changes)
        };
        let blooms = self.copy_blooms();
        let (header, runs, ends) = runs;
        Ok(Some(Snapshot { header, blooms, runs, ends, changes }))
    }

    /// The log-wide filters, copied [`COPY_WORDS_PER_LOCK`] words per hold
    /// of the lock. Filters are only added (at the end) once the
    /// directory is complete: the ones there at the start are copied.
    fn copy_blooms(&self) -> Vec<Bloom> {
        let shapes: Vec<(u64, u64, usize)> = {
            let inner = self.inner.read().expect("id filter lock");
            inner.blooms.iter().map(|b| (b.capacity, b.count, b.bits.len())).collect()
        };
        let mut blooms = Vec::with_capacity(shapes.len());
        for (at, (capacity, count, words)) in shapes.into_iter().enumerate() {
            let mut bits = Vec::with_capacity(words);
            while bits.len() < words {
                let inner = self.inner.read().expect("id filter lock");
                let to = (bits.len() + COPY_WORDS_PER_LOCK).min(words);
                bits.extend_from_slice(&inner.blooms[at].bits[bits.len()..to]);
            }
            blooms.push(Bloom { bits, capacity, count });
        }
        blooms
    }

    /// Writes a copy made by [`IdFilter::snapshot`] as the folder's file
    /// (in `dir`). The caller made sled durable after the copy.
    pub(crate) fn write(&self, dir: &Path, snapshot: &Snapshot) -> Result<(), String> {
        let Snapshot { header, blooms, runs, ends, changes } = snapshot;
        file::save(dir, header, blooms, runs, ends).map_err(|e| e.to_string())?;
        self.changes.saved.store(*changes, Ordering::Relaxed);
        Ok(())
    }

    /// Waits for the scan and the merges that follow it at open (for tests).
    pub(crate) fn wait_for_scan(&self) {
        if let Some(scan) = self.scan.lock().expect("scan lock").take() {
            let _ = scan.thread.join();
        }
    }
}

impl Drop for IdFilter {
    /// Stops the scan (it holds the sled handle) and waits for it.
    fn drop(&mut self) {
        if let Some(scan) = self.scan.get_mut().expect("scan lock").take() {
            scan.stop.store(true, Ordering::Relaxed);
            let _ = scan.thread.join();
        }
    }
}

/// For tests only: holds the id filter's scan thread at each
/// [`IdScanStage`] until the test releases it, so that a test can act
/// while the directory is not complete (see `Log::open_with_id_scan_gate`).
/// A log that closes meanwhile lets its scan thread go.
#[doc(hidden)]
#[derive(Clone, Default)]
pub struct IdScanGate(Arc<(Mutex<GateState>, Condvar)>);

/// Where the scan thread stops for an [`IdScanGate`], in the order it
/// reaches them.
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum IdScanStage {
    /// The thread has started and read nothing: neither the saved file nor
    /// a run.
    BeforeLoad,
    /// The file is loaded (or refused) and the runs scanned; the directory
    /// is not complete yet.
    BeforeJoin,
}

#[derive(Default)]
struct GateState {
    reached: Option<IdScanStage>,
    released: Option<IdScanStage>,
}

impl IdScanGate {
    /// A gate that holds the scan thread at every stage.
    pub fn new() -> IdScanGate {
        IdScanGate::default()
    }

    /// Waits until the scan thread has reached `stage` (or a later one).
    pub fn wait_for(&self, stage: IdScanStage) {
        let (state, changed) = &*self.0;
        let state = state.lock().expect("gate lock");
        let _reached = changed.wait_while(state, |s| s.reached < Some(stage)).expect("gate lock");
    }

    /// Lets the scan thread go on past `stage` (and every earlier one).
    pub fn release(&self, stage: IdScanStage) {
        let (state, changed) = &*self.0;
        let mut state = state.lock().expect("gate lock");
        state.released = state.released.max(Some(stage));
        changed.notify_all();
    }

    /// The scan thread at `stage`: says so and waits until released.
    /// Returns `false` when `stop` was set meanwhile (the log is closing).
    fn pass(&self, stage: IdScanStage, stop: &AtomicBool) -> bool {
        let (state, changed) = &*self.0;
        let mut state = state.lock().expect("gate lock");
        state.reached = state.reached.max(Some(stage));
        changed.notify_all();
        while state.released < Some(stage) {
            if stop.load(Ordering::Relaxed) {
                return false;
            }
            let tick = std::time::Duration::from_millis(10);
            state = changed.wait_timeout(state, tick).expect("gate lock").0;
        }
        true
    }
}

/// Reads the ids of sled's id runs starting from `from` to `to` and hands
/// each run's (first position, ids) to `each`. Returns how many ids; counts
/// the runs in `stats` (`id_runs_scanned_at_open`).
fn scan(
    db: &sled::Db,
    from: Position,
    to: Position,
    stop: &AtomicBool,
    stats: &crate::LogStats,
    mut each: impl FnMut(Position, &[Uuid]),
) -> Result<u64, String> {
    let mut count = 0;
    // The run being read: its first position and ids.
    let mut current: Option<(Position, Vec<Uuid>)> = None;
    let mut done = |run: Option<(Position, Vec<Uuid>)>| {
        if let Some((first, ids)) = run {
            WorkCounters::add(&stats.work.id_runs_scanned_at_open, 1);
            each(first, &ids);
        }
    };
    if from > to {
        return Ok(0);
    }
    let range = codec::id_piece_key(from, Uuid::nil())..=codec::id_piece_key(to, Uuid::max());
    for (n, entry) in db.range(range).enumerate() {
        if n % 64 == 0 && stop.load(Ordering::Relaxed) {
            return Err("stopped".into());
        }
        let (key, value) = entry.map_err(|e| e.to_string())?;
        let (first, _) =
            codec::read_id_piece_key(&key).ok_or_else(|| format!("id run key {:?} does not decode", &key[..]))?;
        let piece = codec::read_id_piece(&value)
            .ok_or_else(|| format!("the id run piece under {:?} does not decode or fails its checksum", &key[..]))?;
        if current.as_ref().is_some_and(|(f, _)| *f != first) {
            done(current.take());
        }
        count += piece.len() as u64;
        let ids = &mut current.get_or_insert_with(|| (first, Vec::new())).1;
        ids.extend(piece.into_iter().map(|(id, _)| id));
    }
    done(current.take());
    Ok(count)
}

/// The scan thread's work before the join: the saved directory loaded,
/// its unchanged runs kept and every other run scanned, or every run
/// scanned (see the module docs). Returns the log-wide filters and the
/// runs that were in sled at open, and how many ids the scan read; `None`
/// when it stopped or failed (the directory stays incomplete).
fn load_and_scan(
    db: &sled::Db,
    dir: &Path,
    head: Position,
    indexed: Position,
    stop: &AtomicBool,
    stats: &crate::LogStats,
) -> Option<(Vec<Bloom>, Vec<Run>, u64)> {
    let (mut blooms, mut runs) = match file::load(dir, db, head, indexed) {
        Ok(loaded) => {
            WorkCounters::add(&stats.work.id_filter_loads, 1);
            WorkCounters::add(&stats.work.id_runs_loaded_at_open, loaded.runs.len() as u64);
            tracing::debug!(listed = loaded.listed, kept = loaded.runs.len(), "loaded the saved id filter");
            (loaded.blooms, loaded.runs)
        }
        Err(refused) => {
            if let file::Refused::Invalid(reason) = refused {
                tracing::warn!(%reason, path = %dir.join(FILE_NAME).display(), "the saved id filter is not used; scanning every id run");
            }
            // Room for the ids the writer applies meanwhile and after.
            (vec![Bloom::new(head.0 + ROOM_IDS_MIN)], Vec::new())
        }
    };
    // Every run in sled but those kept: the stretches of keys before,
    // between and after them.
    let kept: Vec<Position> = runs.iter().map(|r| r.first).collect();
    let mut scanned_runs = Vec::new();
    let mut each = |first: Position, ids: &[Uuid]| {
        insert_into(&mut blooms, ids.iter().copied());
        scanned_runs.push(run_of(first, ids));
    };
    let mut scanned = Ok(0);
    let mut from = Position::ZERO;
    for to in kept.iter().map(|k| Position(k.0 - 1)).chain(std::iter::once(indexed)) {
        scanned = scan(db, from, to, stop, stats, &mut each).map(|n| n + scanned.unwrap_or(0));
        if scanned.is_err() {
            break;
        }
        from = Position(to.0 + 2);
    }
    runs.extend(scanned_runs);
    runs.sort_by_key(|r| r.first);
    match scanned {
        Ok(ids) => Some((blooms, runs, ids)),
        // Asked to stop: the log is closing, nothing failed.
        Err(_) if stop.load(Ordering::Relaxed) => {
            tracing::debug!("the id filter's scan stopped: the log is closing");
            None
        }
        Err(reason) => {
            tracing::warn!(%reason, "the id filter's scan failed; every id lookup reads every run");
            None
        }
    }
}

/// Joins the scan's `blooms` and `runs` (those in sled at open) into the
/// directory and marks it complete: its filters go in front of any the
/// writer made, then the writer's early ids go into them, a few thousand
/// per hold of the lock (the writer inserts into the filters meanwhile),
/// and with the last of them the directory is complete. No id the writer
/// applied before is left out.
fn join(inner: &RwLock<Inner>, blooms: Vec<Bloom>, runs: Vec<Run>) {
    {
        let mut inner = inner.write().expect("id filter lock");
        let writers = std::mem::replace(&mut inner.blooms, blooms);
        inner.blooms.extend(writers);
        inner.collecting = false;
    }
    let mut runs = Some(runs);
    loop {
        let mut guard = inner.write().expect("id filter lock");
        let inner = &mut *guard;
        let part = inner.early.split_off(inner.early.len().saturating_sub(JOIN_IDS_PER_LOCK));
        insert_into(&mut inner.blooms, part);
        if inner.early.is_empty() {
            inner.early = Vec::new();
            // The scanned runs all start at or before `indexed`, the ones
            // written since open after it.
            let later = std::mem::take(&mut inner.runs);
            inner.runs.extend(runs.take().expect("joined once"));
            inner.runs.extend(later);
            inner.runs.sort_by_key(|r| r.first);
            inner.complete = true;
            return;
        }
    }
}

fn run_of(first: Position, ids: &[Uuid]) -> Run {
    let mut bloom = Bloom::new(ids.len() as u64);
    for id in ids {
        bloom.insert(*id);
    }
    Run { first, bloom: Arc::new(bloom) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bloom_has_no_false_negatives_and_few_false_positives() {
        let mut bloom = Bloom::new(10_000);
        let ids: Vec<Uuid> = (0..10_000u128).map(|n| Uuid::from_u128(n * 7919)).collect();
        for id in &ids {
            bloom.insert(*id);
        }
        assert!(ids.iter().all(|id| bloom.may_contain(*id)));
        let false_positives = (0..10_000u128)
            .map(|n| Uuid::from_u128(u128::MAX - n * 104_729))
            .filter(|id| bloom.may_contain(*id))
            .count();
        // About 1% expected at 10 bits per id and 7 probes.
        assert!(false_positives < 300, "{false_positives} false positives in 10,000");
    }

    #[test]
    fn the_filter_grows_past_its_capacity_without_losing_an_id() {
        let filter = IdFilter::of(Inner::complete(vec![Bloom::new(100)], Vec::new()));
        let ids: Vec<Uuid> = (0..1_000u128).map(|n| Uuid::from_u128(n << 64 | n)).collect();
        filter.insert(ids.iter().copied());
        // 100, 200, 400, 800.
        assert_eq!(filter.inner.read().unwrap().blooms.len(), 4);
        assert!(ids.iter().all(|id| filter.may_contain(*id)));
    }

    /// Ids of run `r` (three runs of 600 ids, at positions 1, 601, 1201).
    fn run_ids(r: u128) -> Vec<Uuid> {
        (0..600u128).map(|n| Uuid::from_u128((r * 600 + n + 1) * 0x1234_5678_9abc_def1)).collect()
    }

    #[test]
    fn the_scan_brings_in_the_runs_already_in_sled_and_until_then_every_run_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().path(dir.path()).open().unwrap();
        let mut batch = sled::Batch::default();
        for r in 0..3u128 {
            let first = Position(r as u64 * 600 + 1);
            let ids = run_ids(r).into_iter().enumerate().map(|(i, id)| (id, Position(first.0 + i as u64))).collect();
            // 600 ids: three pieces.
            assert_eq!(crate::index::put_id_run(&mut batch, first, ids), 3);
        }
        db.apply_batch(batch).unwrap();
        let fresh = Uuid::from_u128(u128::MAX / 3);
        // Before the scan is taken in, neither "absent" nor a run list is answered.
        let incomplete = IdFilter::of(Inner::at_open());
        incomplete.add_run(Position(1801), &[Uuid::from_u128(7)]);
        assert!(incomplete.may_contain(fresh));
        assert_eq!(incomplete.lookup(fresh), Where::Everywhere);
        assert_eq!(incomplete.lookup(Uuid::from_u128(7)), Where::Everywhere);

        let filter = IdFilter::open(&db, dir.path(), Position(1800), Position(1800), Default::default(), None);
        filter.wait_for_scan();
        assert!(filter.inner.read().unwrap().complete);
        assert_eq!(filter.inner.read().unwrap().blooms[0].count, 1800);
        // After the scan, the open merged the three runs of 600 ids (600
        // and 600, then 1,200 and 600): one run, starting at position 1.
        for r in 0..3u128 {
            for id in run_ids(r) {
                assert!(filter.may_contain(id));
                let Where::Runs(runs) = filter.lookup(id) else { panic!("{id} not in any run") };
                assert_eq!(runs, vec![Position(1)], "{id}");
                let offset = run_ids(r).iter().position(|i| *i == id).unwrap() as u64;
                let found = crate::index::find_in_run(&db, Position(1), id).unwrap();
                assert_eq!(found, Some(Position(r as u64 * 600 + 1 + offset)));
            }
        }
        // 1,800 ids in a filter sized for a million: a fixed id that is not
        // among them is (deterministically) reported absent.
        assert!(!filter.may_contain(fresh));
        assert_eq!(filter.lookup(fresh), Where::Absent);
        // A run written after open joins after the scanned ones.
        let later = Uuid::from_u128(7);
        filter.insert([later]);
        filter.add_run(Position(1801), &[later]);
        assert_eq!(filter.lookup(later), Where::Runs(vec![Position(1801)]));
    }

    /// The writer's ids before the join: held as a list (no filter is
    /// allocated for them), or past [`EARLY_IDS_MAX`] in a filter of their
    /// own; the join puts the scan's filter in front and every one of them
    /// is in a filter afterwards, so none is answered "absent".
    #[test]
    fn ids_the_writer_applied_before_the_join_are_in_the_filters_after_it() {
        let fresh = |n: u128, salt: u128| Uuid::from_u128(((n + 1) * 0x9e37_79b9_7f4a_7c15) ^ (salt << 100));
        for (case, early) in [("a few", 1_000usize), ("past the list's limit", EARLY_IDS_MAX + 1_000)] {
            let dir = tempfile::tempdir().unwrap();
            let db = sled::Config::new().path(dir.path()).open().unwrap();
            let mut batch = sled::Batch::default();
            let ids = run_ids(0).into_iter().enumerate().map(|(i, id)| (id, Position(1 + i as u64))).collect();
            crate::index::put_id_run(&mut batch, Position(1), ids);
            db.apply_batch(batch).unwrap();
            let gate = IdScanGate::new();
            let filter =
                IdFilter::open(&db, dir.path(), Position(600), Position(600), Default::default(), Some(gate.clone()));
            gate.release(IdScanStage::BeforeLoad);
            gate.wait_for(IdScanStage::BeforeJoin);
            let applied: Vec<Uuid> = (0..early as u128).map(|n| fresh(n, 1)).collect();
            for part in applied.chunks(1_000) {
                filter.insert(part.iter().copied());
                // Nothing is answered from the filters before the join.
                assert_eq!(filter.lookup(part[0]), Where::Everywhere, "{case}");
            }
            let writers = filter.inner.read().unwrap().blooms.iter().map(|b| b.capacity).collect::<Vec<_>>();
            let spilled = early > EARLY_IDS_MAX;
            assert_eq!(writers, if spilled { vec![ROOM_IDS_MIN] } else { vec![] }, "{case}: filters before the join");
            gate.release(IdScanStage::BeforeJoin);
            filter.wait_for_scan();
            let inner = filter.inner.read().unwrap();
            assert!(inner.complete && inner.early.is_empty(), "{case}");
            // The scan's filter first (the ids at open plus room), the
            // writer's own after it if it made one.
            let capacities: Vec<u64> = inner.blooms.iter().map(|b| b.capacity).collect();
            let expected = if spilled { vec![600 + ROOM_IDS_MIN, ROOM_IDS_MIN] } else { vec![600 + ROOM_IDS_MIN] };
            assert_eq!(capacities, expected, "{case}");
            drop(inner);
            for id in run_ids(0).into_iter().chain(applied.iter().copied()) {
                assert!(filter.may_contain(id), "{case}: {id} lost by the join");
                assert_ne!(filter.lookup(id), Where::Absent, "{case}: {id}");
            }
            // A fixed fresh id none of the filters holds.
            assert_eq!(filter.lookup(fresh(0, 3)), Where::Absent, "{case}");
            // And the writer's later ids go into the last filter.
            filter.insert([fresh(0, 2)]);
            assert!(filter.may_contain(fresh(0, 2)), "{case}");
        }
    }

    /// Where the directory's runs put `id` in sled (the first hit).
    fn place(filter: &IdFilter, db: &sled::Db, id: Uuid) -> Option<Position> {
        let Where::Runs(runs) = filter.lookup(id) else { return None };
        runs.into_iter().find_map(|run| crate::index::find_in_run(db, run, id).unwrap())
    }

    /// Runs of 1 to 40 ids, as 40 sessions' closes would leave them. A
    /// merge is one atomic sled batch, so a crash leaves the runs either
    /// before or after it; reopened (a fresh scan), both find every id at
    /// its place. Merged until no pair qualifies, the runs halve in size
    /// from one to the next, so there are at most log2(ids) + 1.
    #[test]
    fn either_side_of_a_merge_finds_every_id_and_merged_runs_halve_in_size() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().path(dir.path()).open().unwrap();
        let mut batch = sled::Batch::default();
        let mut all = Vec::new();
        let mut next = 1u64;
        for size in 1..=40u64 {
            let first = Position(next);
            let ids: Vec<(Uuid, Position)> = (0..size)
                .map(|i| (Uuid::from_u128(u128::from(next + i) * 0x9e37_79b9_7f4a_7c15_f39c), Position(next + i)))
                .collect();
            all.extend(ids.iter().copied());
            crate::index::put_id_run(&mut batch, first, ids);
            next += size;
        }
        db.apply_batch(batch).unwrap();
        let head = Position(next - 1);
        let reopened = |db: &sled::Db| {
            let (mut bloom, mut runs) = (Bloom::new(head.0 + ROOM_IDS_MIN), Vec::new());
            let stats = crate::LogStats::default();
            scan(db, Position::ZERO, head, &AtomicBool::new(false), &stats, |first, ids| {
                ids.iter().for_each(|id| bloom.insert(*id));
                runs.push(run_of(first, ids));
            })
            .unwrap();
            IdFilter::of(Inner::complete(vec![bloom], runs))
        };
        let every_id_found = |filter: &IdFilter, db: &sled::Db| {
            for (id, position) in &all {
                assert_eq!(place(filter, db, *id), Some(*position), "{id}");
            }
        };
        let never = AtomicBool::new(false);
        // Before any merge: 40 runs.
        let filter = reopened(&db);
        assert_eq!(filter.runs(), 40);
        every_id_found(&filter, &db);
        // One merge applied (a crash right after its batch), then reopened.
        assert_eq!(filter.merge_runs(&db, 1, &never), 1);
        every_id_found(&filter, &db);
        let after_one = reopened(&db);
        assert_eq!(after_one.runs(), 39);
        every_id_found(&after_one, &db);
        // Merged until no pair qualifies.
        let merges = after_one.merge_runs(&db, usize::MAX, &never);
        assert!(merges > 0);
        let sizes: Vec<u64> = after_one.inner.read().unwrap().runs.iter().map(|r| r.bloom.count).collect();
        assert!(sizes.windows(2).all(|w| 2 * w[1] < w[0]), "{sizes:?}");
        assert!(sizes.len() <= 1 + (all.len() as f64).log2() as usize, "{sizes:?}");
        assert_eq!(sizes.iter().sum::<u64>(), all.len() as u64);
        every_id_found(&after_one, &db);
        let settled = reopened(&db);
        assert_eq!(settled.runs(), sizes.len());
        every_id_found(&settled, &db);
    }
}
