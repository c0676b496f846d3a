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
//! Completeness: at open a scan thread reads the runs already in sled (all
//! of them, up to the `indexed` mark the open completed before the writer
//! started) into filters of the same shape, while the writer adds every id
//! it applies and the index thread every run it writes. When the scan is
//! done it joins its filters in, and only from then on is an "absent" or a
//! run list trusted. Until then (and for good if the scan fails) a lookup
//! reads every run in sled. About 20 bits per id in memory (10 in the
//! log-wide filter, 10 in its run's).
//!
//! Saved at a clean close: the directory is also written to a file beside
//! the log (`file`, a derived cache, checked whole at open: checksum, the
//! folder's token and the id runs' generation that every merge bumps, the
//! positions it covers, each run's first and last piece keys). An open that finds a valid
//! file loads it and scans only the runs written after it; any doubt about
//! it (missing, damaged, stale, another folder's) is a full scan as above.
//! Either way the directory is complete only once the scan is in, so an
//! id is never answered "absent" from a part of the runs.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
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

    fn union(&mut self, other: &Bloom) {
        assert_eq!(self.bits.len(), other.bits.len(), "only filters of the same shape are joined");
        for (a, b) in self.bits.iter_mut().zip(&other.bits) {
            *a |= b;
        }
        self.count += other.count;
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
}

struct Inner {
    /// The first is sized at open for the ids then in the log plus room;
    /// each later one, added when the last filled up, is twice as large.
    blooms: Vec<Bloom>,
    /// Every run written since open, and once `complete` every run, in
    /// position order.
    runs: Vec<Run>,
    /// Whether the ids and runs that were in sled at open are in.
    complete: bool,
}

impl Inner {
    /// Adds ids to the log-wide filters: to the last one, or to a new one
    /// twice as large once it is full.
    fn insert(&mut self, ids: impl IntoIterator<Item = Uuid>) {
        for id in ids {
            let last = self.blooms.last_mut().expect("at least one filter");
            if last.count >= last.capacity {
                let capacity = last.capacity * 2;
                self.blooms.push(Bloom::new(capacity));
            }
            self.blooms.last_mut().expect("just checked").insert(id);
        }
    }
}

/// One id run: its first position and a filter over its ids.
struct Run {
    first: Position,
    bloom: Bloom,
}

struct Scan {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl IdFilter {
    /// Starts the scan of the id runs in `db` (a log in `dir` whose records
    /// up to `indexed` are all indexed, and whose head is `head`): of the
    /// runs after a valid saved directory, which is loaded first, or else of
    /// every run. Returns a directory that is not complete yet. Counts the
    /// load and the runs the scan reads in `stats`.
    pub(crate) fn open(
        db: &sled::Db,
        dir: &Path,
        head: Position,
        indexed: Position,
        stats: Arc<crate::LogStats>,
    ) -> IdFilter {
        let capacity = head.0 + ROOM_IDS_MIN;
        let (inner, from) = match file::load(dir, db, head, indexed) {
            Ok(loaded) => {
                WorkCounters::add(&stats.work.id_filter_loads, 1);
                tracing::debug!(runs = loaded.runs.len(), covers = %loaded.indexed, "loaded the saved id filter");
                (Inner { blooms: loaded.blooms, runs: loaded.runs, complete: false }, Some(loaded.indexed))
            }
            Err(refused) => {
                if let file::Refused::Invalid(reason) = refused {
                    tracing::warn!(%reason, path = %dir.join(FILE_NAME).display(), "the saved id filter is not used; scanning every id run");
                }
                (Inner { blooms: vec![Bloom::new(capacity)], runs: Vec::new(), complete: false }, None)
            }
        };
        let inner = Arc::new(RwLock::new(inner));
        let stop = Arc::new(AtomicBool::new(false));
        let searching = Arc::new(RwLock::new(()));
        let merging = Arc::new(Mutex::new(()));
        let spawned = {
            let db = db.clone();
            let stop = stop.clone();
            let inner = inner.clone();
            let (searching, merging) = (searching.clone(), merging.clone());
            std::thread::Builder::new().name("klaxon-log-ids".into()).spawn(move || {
                let mut runs = Vec::new();
                let scanned = match from {
                    // Only the runs after the saved ones; their ids join the
                    // loaded filters as the writer's do (a few thousand per
                    // hold of the lock).
                    Some(saved) => scan(&db, saved.next(), indexed, &stop, &stats, |first, ids| {
                        for part in ids.chunks(4096) {
                            inner.write().expect("id filter lock").insert(part.iter().copied());
                        }
                        runs.push(run_of(first, ids));
                    }),
                    None => {
                        let mut bloom = Bloom::new(capacity);
                        let scanned = scan(&db, Position::ZERO, indexed, &stop, &stats, |first, ids| {
                            ids.iter().for_each(|id| bloom.insert(*id));
                            runs.push(run_of(first, ids));
                        });
                        inner.write().expect("id filter lock").blooms[0].union(&bloom);
                        scanned
                    }
                };
                match scanned {
                    Ok(ids) => {
                        let mut inner = inner.write().expect("id filter lock");
                        // The saved and scanned runs all start at or before
                        // `indexed`, the ones written since open after it.
                        let later = std::mem::take(&mut inner.runs);
                        inner.runs.extend(runs);
                        inner.runs.extend(later);
                        inner.runs.sort_by_key(|r| r.first);
                        inner.complete = true;
                        tracing::debug!(ids, runs = inner.runs.len(), "id filter complete");
                    }
                    // Asked to stop: the log is closing, nothing failed.
                    Err(_) if stop.load(Ordering::Relaxed) => {
                        tracing::debug!("the id filter's scan stopped: the log is closing");
                        return;
                    }
                    Err(reason) => {
                        tracing::warn!(%reason, "the id filter's scan failed; every id lookup reads every run");
                        return;
                    }
                }
                // The runs that closes and crashes left: merge them now,
                // behind the writer (appends do not wait for this).
                let filter = IdFilter { inner, scan: Mutex::new(None), searching, merging };
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
        IdFilter { inner, scan: Mutex::new(scan), searching, merging }
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
        let runs = runs.iter().map(|first| Run { first: *first, bloom: full() }).collect();
        IdFilter::of(Inner { blooms: vec![full()], runs, complete: true })
    }

    /// A directory whose scan has not come in (for tests).
    #[cfg(test)]
    pub(crate) fn incomplete() -> IdFilter {
        IdFilter::of(Inner { blooms: vec![Bloom::new(1)], runs: Vec::new(), complete: false })
    }

    #[cfg(test)]
    fn of(inner: Inner) -> IdFilter {
        IdFilter {
            inner: Arc::new(RwLock::new(inner)),
            scan: Mutex::new(None),
            searching: Default::default(),
            merging: Default::default(),
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

    /// Saves the directory beside the log in `dir` (see `file`), if it is
    /// complete. The caller guarantees that nothing writes id runs now
    /// (the index thread stopped, [`IdFilter::stop_scan`] called) and that
    /// sled is flushed and synced: every run listed is durable. Merges are
    /// held off meanwhile all the same. Returns whether it saved.
    pub(crate) fn save(&self, db: &sled::Db, dir: &Path) -> Result<bool, String> {
        let _no_merge = self.merging.lock().expect("id merge lock");
        let inner = self.inner.read().expect("id filter lock");
        if !inner.complete {
            return Ok(false);
        }
        let (token, generation) = crate::index::id_runs_generation(db)
            .map_err(|e| e.to_string())?
            .ok_or("the folder has no id runs' generation")?;
        let indexed = crate::index::indexed(db).map_err(|e| e.to_string())?;
        let head = crate::store::ends(db).map_err(|e| e.to_string())?.1.map_or(Position::ZERO, |r| r.position);
        debug_assert!(inner.runs.last().is_none_or(|r| r.first <= indexed), "every listed run is indexed");
        let header = file::Header { token, generation, head, indexed };
        file::save(db, dir, &header, &inner.blooms, &inner.runs).map_err(|e| e.to_string())?;
        Ok(true)
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

fn run_of(first: Position, ids: &[Uuid]) -> Run {
    let mut bloom = Bloom::new(ids.len() as u64);
    for id in ids {
        bloom.insert(*id);
    }
    Run { first, bloom }
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
        let filter = IdFilter::of(Inner { blooms: vec![Bloom::new(100)], runs: Vec::new(), complete: true });
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
        let incomplete = IdFilter::of(Inner { blooms: vec![Bloom::new(100)], runs: Vec::new(), complete: false });
        incomplete.add_run(Position(1801), &[Uuid::from_u128(7)]);
        assert!(incomplete.may_contain(fresh));
        assert_eq!(incomplete.lookup(fresh), Where::Everywhere);
        assert_eq!(incomplete.lookup(Uuid::from_u128(7)), Where::Everywhere);

        let filter = IdFilter::open(&db, dir.path(), Position(1800), Position(1800), Default::default());
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
            IdFilter::of(Inner { blooms: vec![bloom], runs, complete: true })
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
