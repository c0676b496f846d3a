//! Klaxon's event log: one append-only, durable, idempotent log on sled.
//!
//! Everything in Klaxon is an event in this log, and nothing else is
//! authoritative: every projection is a fold over it. The log guarantees:
//!
//! - **Gapless order.** Records get global positions 1, 2, 3, … and per-stream
//!   versions 1, 2, 3, …, with no gap, ever, including after a crash.
//! - **Optimistic concurrency.** An append names the version it expects
//!   (`Any`, `NoStream`, `StreamExists`, `Exact(n)`); a mismatch is a typed
//!   conflict naming expected and actual, and nothing is written.
//! - **Idempotency.** An event id is stored once, forever (an index, not a
//!   cache). Re-appending the same ids returns the original positions and
//!   writes nothing; a batch only partly present is refused whole.
//! - **Durable before acknowledged.** sled 0.34.7's `flush()` ends in
//!   `sync_file_range` on Linux (sled's `pagecache/iobuf.rs`, sled issues
//!   #1351 and #1452), which syncs neither the device cache nor the file's
//!   metadata, and its own background `fsync` runs only every 500 ms. So after
//!   sled's flush the log calls `fsync` on new blob files and their folder
//!   and `fdatasync` on sled's `db` file, and only then answers the append.
//! - **Group commit.** One writer thread applies every queued append as one
//!   atomic `sled::Batch`, flushes and syncs once for the group, then answers
//!   all of them. Concurrent appenders share fsyncs; none skips one (only
//!   a round that wrote nothing, its duplicates' originals durable already,
//!   has nothing to sync). The queue is bounded: a full queue makes
//!   `append` wait (back-pressure). A lone append (nothing queued, the
//!   writer idle) is committed the same way by its own task, under the
//!   writer's locks, without a thread hand-off.
//! - **Only durable data is read.** Reads and subscriptions stop at the
//!   durable head. sled's `watch_prefix` fires before data is durable, so the
//!   log never fans out from it; subscribers tail the log by position.
//! - **Corruption is reported.** Every record carries a CRC-32 checksum,
//!   verified on every read; a bad record is an error naming its position.
//!
//! What it must never do: answer an append before its fsync, skip a record,
//! or interpret event data (it stores JSON text; meaning belongs to callers).
//!
//! Modules:
//! - `types`: positions, versions, stream ids, event kinds, records: the
//!   vocabulary of the API, with syntax checks at construction.
//! - `log`: the [`Log`] handle (open, append, reads, checkpoints, close) and
//!   its [`Options`].
//! - `writer`: the writer doing group commit: its thread, its sync stage,
//!   and the lone append committed by its own task under the same locks.
//! - `durability`: the fdatasync/fsync that makes a sled flush durable.
//! - `codec`: the key layout and the versioned, checksummed record encoding,
//!   records packed in chunks (a few sled keys per group commit).
//! - `store`: finding records in chunks (and format-1 `r` keys).
//! - `index`: the stream and id indexes, written behind the records from an
//!   in-memory tail (ids as one sorted run per batch), completed at open.
//! - `idfilter`: the id index's in-memory directory: Bloom filters over every
//!   id and per run, so a fresh id costs no read and a known one one run's;
//!   the merges that keep the runs few, behind the writer; and its copy
//!   saved beside the log at a clean close and during a long session
//!   (`idfilter::file`), checked and loaded by the scan thread after open
//!   so that only the runs merged or written after it are scanned.
//! - `replicated`: the log as a replicated state machine: [`Log::apply`]
//!   (ordered batches with their proposer's time and a mark, atomically),
//!   [`Log::import`] (another replica's records, verbatim), [`Log::check`].
//! - `subscription`: catch-up-then-live [`Subscription`]s.
//! - `verify`: a full consistency check ([`Log::verify`]).
//! - `stats`: append latency, group-commit sizes and work counters
//!   ([`Log::stats`]).

pub mod checksummed;
mod codec;
mod durability;
mod error;
mod idfilter;
mod index;
mod log;
mod replicated;
mod stats;
mod store;
mod subscription;
mod types;
mod verify;
mod writer;

pub use durability::SyncFault;
pub use error::Error;
/// The name of the file beside the log (in its folder) where a clean close
/// saves the id index's directory, so that the next open reads only the id
/// runs written after it. A derived cache: it may be deleted at any time
/// (the next open then scans every run).
pub use idfilter::FILE_NAME as ID_FILTER_FILE_NAME;
#[doc(hidden)]
pub use idfilter::{IdScanGate, IdScanStage};
pub use log::{Log, Options};
pub use replicated::{Mark, Outcome, Write};
pub use stats::{Histogram, HistogramSnapshot, LogStats, WorkCounters, WorkSnapshot};
pub use subscription::Subscription;
pub use types::{
    ACTOR_BYTES_MAX, Appended, CONSUMER_NAME_BYTES_MAX, EventData, EventKind, ExpectedVersion, KIND_BYTES_MAX,
    Metadata, NewEvent, Position, Record, STREAM_ID_BYTES_MAX, StreamId, StreamVersion, is_traceparent,
};
pub use verify::VerifyReport;
