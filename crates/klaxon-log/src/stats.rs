//! What the log measures about itself, for the metrics endpoint: append
//! latency (from the call to the durable answer) and group-commit sizes.
//! Lock-free counters; reading them never blocks an append.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A fixed-bucket histogram of non-negative integers.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [u64],
    /// `buckets[i]` counts values `<= bounds[i]`; the last one the rest.
    buckets: Vec<AtomicU64>,
    sum: AtomicU64,
    count: AtomicU64,
}

/// A histogram as read at one moment, in Prometheus' cumulative form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistogramSnapshot {
    /// Upper bounds of the buckets (`+Inf` is implicit).
    pub bounds: Vec<u64>,
    /// Values at or below each bound, cumulative; one more entry for `+Inf`.
    pub cumulative: Vec<u64>,
    /// Sum of all values.
    pub sum: u64,
    /// Number of values.
    pub count: u64,
}

impl Histogram {
    fn new(bounds: &'static [u64]) -> Histogram {
        Histogram {
            bounds,
            buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    fn observe(&self, value: u64) {
        let index = self.bounds.iter().position(|b| value <= *b).unwrap_or(self.bounds.len());
        self.buckets[index].fetch_add(1, Ordering::Relaxed);
        self.sum.fetch_add(value, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// The current values.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut running = 0;
        let cumulative = self
            .buckets
            .iter()
            .map(|b| {
                running += b.load(Ordering::Relaxed);
                running
            })
            .collect();
        HistogramSnapshot {
            bounds: self.bounds.to_vec(),
            cumulative,
            sum: self.sum.load(Ordering::Relaxed),
            count: self.count.load(Ordering::Relaxed),
        }
    }
}

/// The log's own measurements.
#[derive(Debug)]
pub struct LogStats {
    /// Append latency in microseconds, from the call until it is answered
    /// (durable, or refused).
    pub append_micros: Histogram,
    /// Appends committed together by one group commit (one fsync).
    pub group_appends: Histogram,
    /// Counts of the work done, for finding where an append's time goes
    /// independently of the machine's load (the benchmark prints them per
    /// append).
    pub work: WorkCounters,
}

/// Monotonic counts of the log's work since it was opened.
#[derive(Debug, Default)]
pub struct WorkCounters {
    /// Records written by appends and imports.
    pub records: AtomicU64,
    /// Groups the writer applied to sled (one `apply_batch` each).
    pub groups: AtomicU64,
    /// Flush + fdatasync rounds of the sync stage.
    pub syncs: AtomicU64,
    /// Sled keys written by the groups (record chunks, checkpoints, marks).
    pub group_keys: AtomicU64,
    /// Sled keys written behind by the index batches.
    pub index_keys: AtomicU64,
    /// Index batches written behind.
    pub index_batches: AtomicU64,
    /// Records whose index entries were written behind (since open).
    pub records_indexed: AtomicU64,
    /// Id-index pieces read from sled (idempotency checks of the writer,
    /// `locate` and `verify`): one per run a lookup had to search.
    pub id_index_reads: AtomicU64,
    /// Stream-head lookups that had to read sled's stream index.
    pub stream_index_reads: AtomicU64,
    /// Rounds (flush + sync + answers) the writer thread ended itself,
    /// because the sync thread had nothing outstanding (of `syncs`).
    pub writer_rounds: AtomicU64,
    /// Rounds an appending task ended itself: a lone append, committed on
    /// the caller's thread because the writer was idle (of `syncs`).
    pub appender_rounds: AtomicU64,
    /// sled blob files the syncs have fsynced (since open).
    pub blob_files_synced: AtomicU64,
    /// Listings of sled's blob folder by the syncs (since open; on Linux
    /// one at open, and more only if the folder's watch dropped events).
    pub blob_listings: AtomicU64,
    /// Id runs the open's scan read into the id filter: every run in sled,
    /// or only those written after the saved directory when one was loaded.
    pub id_runs_scanned_at_open: AtomicU64,
    /// 1 when the open loaded the id filter's saved directory (the file
    /// beside the log), 0 when it scanned every run.
    pub id_filter_loads: AtomicU64,
    /// Id runs the open took from the saved directory without reading
    /// them: those the file lists that are provably unchanged in sled.
    pub id_runs_loaded_at_open: AtomicU64,
    /// Times the id filter's directory was saved beside the log: during
    /// the session (behind the index batches) and at a clean close.
    pub id_filter_saves: AtomicU64,
}

/// [`WorkCounters`] as read at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WorkSnapshot {
    /// See [`WorkCounters::records`].
    pub records: u64,
    /// See [`WorkCounters::groups`].
    pub groups: u64,
    /// See [`WorkCounters::syncs`].
    pub syncs: u64,
    /// See [`WorkCounters::group_keys`].
    pub group_keys: u64,
    /// See [`WorkCounters::index_keys`].
    pub index_keys: u64,
    /// See [`WorkCounters::index_batches`].
    pub index_batches: u64,
    /// See [`WorkCounters::records_indexed`].
    pub records_indexed: u64,
    /// See [`WorkCounters::id_index_reads`].
    pub id_index_reads: u64,
    /// See [`WorkCounters::stream_index_reads`].
    pub stream_index_reads: u64,
    /// See [`WorkCounters::writer_rounds`].
    pub writer_rounds: u64,
    /// See [`WorkCounters::appender_rounds`].
    pub appender_rounds: u64,
    /// See [`WorkCounters::blob_files_synced`].
    pub blob_files_synced: u64,
    /// See [`WorkCounters::blob_listings`].
    pub blob_listings: u64,
    /// See [`WorkCounters::id_runs_scanned_at_open`].
    pub id_runs_scanned_at_open: u64,
    /// See [`WorkCounters::id_filter_loads`].
    pub id_filter_loads: u64,
    /// See [`WorkCounters::id_runs_loaded_at_open`].
    pub id_runs_loaded_at_open: u64,
    /// See [`WorkCounters::id_filter_saves`].
    pub id_filter_saves: u64,
}

impl WorkSnapshot {
    /// The work done between `earlier` and this snapshot.
    pub fn since(&self, earlier: &WorkSnapshot) -> WorkSnapshot {
        self.each(earlier, |now, then| now - then)
    }

    /// The work of this snapshot and `other` together (work done in
    /// separate stretches, added up).
    pub fn plus(&self, other: &WorkSnapshot) -> WorkSnapshot {
        self.each(other, |a, b| a + b)
    }

    fn each(&self, other: &WorkSnapshot, op: impl Fn(u64, u64) -> u64) -> WorkSnapshot {
        WorkSnapshot {
            records: op(self.records, other.records),
            groups: op(self.groups, other.groups),
            syncs: op(self.syncs, other.syncs),
            group_keys: op(self.group_keys, other.group_keys),
            index_keys: op(self.index_keys, other.index_keys),
            index_batches: op(self.index_batches, other.index_batches),
            records_indexed: op(self.records_indexed, other.records_indexed),
            id_index_reads: op(self.id_index_reads, other.id_index_reads),
            stream_index_reads: op(self.stream_index_reads, other.stream_index_reads),
            writer_rounds: op(self.writer_rounds, other.writer_rounds),
            appender_rounds: op(self.appender_rounds, other.appender_rounds),
            blob_files_synced: op(self.blob_files_synced, other.blob_files_synced),
            blob_listings: op(self.blob_listings, other.blob_listings),
            id_runs_scanned_at_open: op(self.id_runs_scanned_at_open, other.id_runs_scanned_at_open),
            id_filter_loads: op(self.id_filter_loads, other.id_filter_loads),
            id_runs_loaded_at_open: op(self.id_runs_loaded_at_open, other.id_runs_loaded_at_open),
            id_filter_saves: op(self.id_filter_saves, other.id_filter_saves),
        }
    }
}

impl WorkCounters {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Sets a count kept elsewhere (it only grows).
    pub(crate) fn set(counter: &AtomicU64, n: u64) {
        counter.store(n, Ordering::Relaxed);
    }

    /// The current counts.
    pub fn snapshot(&self) -> WorkSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        WorkSnapshot {
            records: get(&self.records),
            groups: get(&self.groups),
            syncs: get(&self.syncs),
            group_keys: get(&self.group_keys),
            index_keys: get(&self.index_keys),
            index_batches: get(&self.index_batches),
            records_indexed: get(&self.records_indexed),
            id_index_reads: get(&self.id_index_reads),
            stream_index_reads: get(&self.stream_index_reads),
            writer_rounds: get(&self.writer_rounds),
            appender_rounds: get(&self.appender_rounds),
            blob_files_synced: get(&self.blob_files_synced),
            blob_listings: get(&self.blob_listings),
            id_runs_scanned_at_open: get(&self.id_runs_scanned_at_open),
            id_filter_loads: get(&self.id_filter_loads),
            id_runs_loaded_at_open: get(&self.id_runs_loaded_at_open),
            id_filter_saves: get(&self.id_filter_saves),
        }
    }
}

impl Default for LogStats {
    fn default() -> LogStats {
        LogStats {
            append_micros: Histogram::new(&[250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 1_000_000]),
            group_appends: Histogram::new(&[1, 2, 4, 8, 16, 32, 64, 128, 256, 512]),
            work: WorkCounters::default(),
        }
    }
}

impl LogStats {
    pub(crate) fn append_took(&self, took: Duration) {
        self.append_micros.observe(u64::try_from(took.as_micros()).unwrap_or(u64::MAX));
    }

    pub(crate) fn group_committed(&self, appends: usize) {
        if appends > 0 {
            self.group_appends.observe(appends as u64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative_and_the_rest_goes_to_inf() {
        let h = Histogram::new(&[1, 10]);
        for v in [0, 1, 5, 10, 11, 1000] {
            h.observe(v);
        }
        let s = h.snapshot();
        assert_eq!(s.cumulative, vec![2, 4, 6]);
        assert_eq!((s.sum, s.count), (1027, 6));
    }
}
