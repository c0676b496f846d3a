//! A filter in front of the idempotency index, so that a new event id (the
//! common case) costs no sled read.
//!
//! Every append looks its ids up in the id index; for a fresh id that used
//! to be a sled `get` that misses. The writer's [`IdFilter`] is a Bloom
//! filter over every id in the log: "absent" is exact (no false negatives),
//! "maybe present" falls through to the tail and sled as before, so
//! idempotency stays exact and permanent; the filter only saves reads.
//!
//! Completeness: at open, a scan thread reads the ids already in sled (the
//! `i` keys, which are never deleted, and which the open has completed for
//! every record before the writer starts) into a filter of the same shape;
//! meanwhile the writer adds every id it plans. When the scan's filter
//! arrives the writer ORs it in, and only from then on does it trust an
//! "absent". Until then (and for good if the scan fails) every lookup reads
//! sled as before. The filter is in memory only: about 10 bits per id.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;

use uuid::Uuid;

use crate::{Position, codec};

/// Bits per id: with [`HASHES`] probes, about 1% of fresh ids still read sled.
const BITS_PER_ID: u64 = 10;
/// Probes per id.
const HASHES: u64 = 7;
/// Ids the first filter has room for beyond the log's records at open.
const ROOM_IDS_MIN: u64 = 1 << 20;

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

/// The writer's filter over every id in the log (see the module docs).
pub(crate) struct IdFilter {
    /// The first is sized at open for the ids then in the log plus room;
    /// each later one, added when the last filled up, is twice as large.
    blooms: Vec<Bloom>,
    /// Whether the ids that were in sled at open are in `blooms[0]`.
    complete: bool,
    scan: Option<Scan>,
}

struct Scan {
    result: mpsc::Receiver<Result<Bloom, String>>,
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl IdFilter {
    /// Starts the scan of the ids in `db` (a log whose records up to `head`
    /// are all indexed). Returns a filter that is not complete yet.
    pub(crate) fn open(db: &sled::Db, head: Position) -> IdFilter {
        let capacity = head.0 + ROOM_IDS_MIN;
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, result) = mpsc::sync_channel(1);
        let spawned = {
            let db = db.clone();
            let stop = stop.clone();
            std::thread::Builder::new().name("klaxon-log-ids".into()).spawn(move || {
                let _ = tx.send(scan(&db, capacity, &stop));
            })
        };
        let scan = match spawned {
            Ok(thread) => Some(Scan { result, stop, thread }),
            Err(e) => {
                tracing::warn!(error = %e, "cannot start the id filter's scan; every id lookup reads sled");
                None
            }
        };
        IdFilter { blooms: vec![Bloom::new(capacity)], complete: false, scan }
    }

    /// Takes the scan's result if it is ready. The writer calls this once
    /// per group.
    pub(crate) fn poll_scan(&mut self) {
        self.take_scan(false);
    }

    fn take_scan(&mut self, wait: bool) {
        let Some(scan) = &self.scan else { return };
        let outcome = if wait {
            scan.result.recv().unwrap_or_else(|_| Err("the scan thread ended without a result".into()))
        } else {
            match scan.result.try_recv() {
                Ok(outcome) => outcome,
                Err(mpsc::TryRecvError::Empty) => return,
                Err(mpsc::TryRecvError::Disconnected) => Err("the scan thread ended without a result".into()),
            }
        };
        match outcome {
            Ok(bloom) => {
                self.blooms[0].union(&bloom);
                self.complete = true;
                tracing::debug!(ids = bloom.count, "id filter complete");
            }
            Err(reason) => {
                tracing::warn!(%reason, "the id filter's scan failed; every id lookup reads sled");
            }
        }
        if let Some(scan) = self.scan.take() {
            let _ = scan.thread.join();
        }
    }

    /// `false` only when `id` is certainly neither in the log nor planned
    /// by the writer; `true` when it may be (then look it up).
    pub(crate) fn may_contain(&self, id: Uuid) -> bool {
        !self.complete || self.blooms.iter().any(|b| b.may_contain(id))
    }

    /// Records that `id` is (about to be) in the log. Called for every id
    /// the writer plans, before the group is applied.
    pub(crate) fn insert(&mut self, id: Uuid) {
        let last = self.blooms.last_mut().expect("at least one filter");
        if last.count >= last.capacity {
            let capacity = last.capacity * 2;
            self.blooms.push(Bloom::new(capacity));
        }
        self.blooms.last_mut().expect("just checked").insert(id);
    }
}

impl Drop for IdFilter {
    /// Stops the scan (it holds the sled handle) and waits for it.
    fn drop(&mut self) {
        if let Some(scan) = self.scan.take() {
            scan.stop.store(true, Ordering::Relaxed);
            drop(scan.result);
            let _ = scan.thread.join();
        }
    }
}

/// Reads every id of sled's id index into a filter of `capacity`.
fn scan(db: &sled::Db, capacity: u64, stop: &AtomicBool) -> Result<Bloom, String> {
    let mut bloom = Bloom::new(capacity);
    for (n, entry) in db.scan_prefix([codec::TAG_ID]).keys().enumerate() {
        if n % 4096 == 0 && stop.load(Ordering::Relaxed) {
            return Err("stopped".into());
        }
        let key = entry.map_err(|e| e.to_string())?;
        let id = key
            .get(1..)
            .and_then(|b| Uuid::from_slice(b).ok())
            .ok_or_else(|| format!("id index key {:?} does not decode", &key[..]))?;
        bloom.insert(id);
    }
    Ok(bloom)
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
        let mut filter = IdFilter { blooms: vec![Bloom::new(100)], complete: true, scan: None };
        let ids: Vec<Uuid> = (0..1_000u128).map(|n| Uuid::from_u128(n << 64 | n)).collect();
        for id in &ids {
            filter.insert(*id);
        }
        // 100, 200, 400, 800.
        assert_eq!(filter.blooms.len(), 4);
        assert!(ids.iter().all(|id| filter.may_contain(*id)));
    }

    #[test]
    fn the_scan_brings_in_the_ids_already_in_sled_and_until_then_everything_may_be_present() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().path(dir.path()).open().unwrap();
        let stored: Vec<Uuid> = (1..=500u128).map(|n| Uuid::from_u128(n * 0x1234_5678_9abc)).collect();
        for id in &stored {
            db.insert(codec::id_key(*id), b"entry".as_slice()).unwrap();
        }
        let mut filter = IdFilter::open(&db, Position(500));
        let fresh = Uuid::from_u128(u128::MAX / 3);
        // Before the scan is taken in, "absent" is never answered.
        assert!(filter.may_contain(fresh));
        filter.take_scan(true);
        assert!(filter.complete);
        assert!(stored.iter().all(|id| filter.may_contain(*id)));
        assert_eq!(filter.blooms[0].count, 500);
        // 500 ids in a filter sized for a million: a fixed id that is not
        // among them is (deterministically) reported absent.
        assert!(!filter.may_contain(fresh));
    }
}
