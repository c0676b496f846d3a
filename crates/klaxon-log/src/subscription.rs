//! Catch-up-then-live subscriptions that tail the log by position.
//!
//! Subscriptions catching up share their reads: the log is read in aligned
//! blocks of [`CHUNK_RECORDS`] records, and the last [`SHARED_BLOCKS`]
//! blocks read (each whole and durable) are kept ([`SharedBlocks`]), so
//! that several subscriptions folding the same history (the five services
//! of `klaxond up` at a first start) read and check each record from sled
//! once, and the others take a copy. A read at the live tail (a block not
//! yet whole) is the subscription's own and empties the kept blocks:
//! nothing is held once every subscription has caught up.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use crate::{Error, Log, Position, Record};

/// Records read from the log per refill: the size of a shared block.
const CHUNK_RECORDS: usize = 512;
/// Whole blocks kept for the subscriptions that follow the first reader
/// (about 0.3 MB each at ~600 bytes per record).
const SHARED_BLOCKS: usize = 16;

/// The blocks catching-up subscriptions share (see the module docs), and
/// what sharing them saved.
#[derive(Debug, Default)]
pub(crate) struct SharedBlocks {
    /// The blocks kept, oldest first, by their first position.
    blocks: Mutex<VecDeque<(Position, Arc<[Record]>)>>,
    /// Blocks read from sled by a catching-up subscription.
    read: AtomicU64,
    /// Blocks a catching-up subscription took from those kept instead.
    shared: AtomicU64,
}

impl SharedBlocks {
    /// The block read, the block shared counts.
    pub(crate) fn counts(&self) -> (u64, u64) {
        (self.read.load(Ordering::Relaxed), self.shared.load(Ordering::Relaxed))
    }
}

impl Log {
    /// The records from `next` to the end of its block when that block is
    /// whole and durable (below `head`), from the kept blocks or read and
    /// kept; otherwise (the live tail) up to a block's worth read directly,
    /// and the kept blocks dropped.
    fn read_shared(&self, next: Position, head: Position) -> Result<Vec<Record>, Error> {
        let shared = &self.inner.shared;
        let block = CHUNK_RECORDS as u64;
        let start = Position((next.0 - 1) / block * block + 1);
        if start.0 + block - 1 > head.0 {
            let mut blocks = shared.blocks.lock().expect("shared blocks lock");
            if !blocks.is_empty() {
                blocks.clear();
            }
            drop(blocks);
            return self.read_all(next, CHUNK_RECORDS);
        }
        let kept = {
            let blocks = shared.blocks.lock().expect("shared blocks lock");
            blocks.iter().find(|(first, _)| *first == start).map(|(_, records)| records.clone())
        };
        let records = match kept {
            Some(records) => {
                shared.shared.fetch_add(1, Ordering::Relaxed);
                records
            }
            None => {
                let records: Arc<[Record]> = self.read_all(start, CHUNK_RECORDS)?.into();
                assert_eq!(records.len(), CHUNK_RECORDS, "a whole block below the head reads whole");
                shared.read.fetch_add(1, Ordering::Relaxed);
                let mut blocks = shared.blocks.lock().expect("shared blocks lock");
                if !blocks.iter().any(|(first, _)| *first == start) {
                    if blocks.len() >= SHARED_BLOCKS {
                        blocks.pop_front();
                    }
                    blocks.push_back((start, records.clone()));
                }
                records
            }
        };
        Ok(records[(next.0 - start.0) as usize..].to_vec())
    }
}

/// An ordered feed of records from a starting position: the records already
/// in the log, then new ones as they become durable.
///
/// It never relies on a buffer filled by the writer: it remembers the next
/// position it owes and reads it from the log, woken by the durable head. So
/// a slow subscriber cannot block writers, cannot miss records and cannot
/// grow memory beyond one chunk; it just falls further behind.
pub struct Subscription {
    log: Log,
    next: Position,
    buffer: VecDeque<Record>,
    head: watch::Receiver<Position>,
}

impl Subscription {
    pub(crate) fn new(log: Log, from: Position) -> Subscription {
        let head = log.durable_watch();
        Subscription { log, next: from, buffer: VecDeque::new(), head }
    }

    /// The position of the next record this subscription will yield.
    pub fn next_position(&self) -> Position {
        self.next
    }

    /// The next record; `None` once the log is closed and every durable
    /// record has been yielded. An error (corruption) is returned, never
    /// skipped: the subscription stays at the failing position.
    ///
    /// Each record spends a unit of tokio's cooperative budget, so a
    /// consumer catching up on a long log (where every refill is a
    /// synchronous read, never a wait) yields its worker thread now and then
    /// instead of holding it until it reaches the head: other tasks (the
    /// `/metrics` endpoint, gRPC calls, the other services catching up)
    /// keep running meanwhile.
    pub async fn next(&mut self) -> Option<Result<Record, Error>> {
        tokio::task::consume_budget().await;
        loop {
            if let Some(record) = self.buffer.pop_front() {
                self.next = record.position.next();
                return Some(Ok(record));
            }
            let head = *self.head.borrow_and_update();
            if self.next <= head {
                // On a damaged record, read one at a time so that every
                // intact record before it is still delivered.
                match self.log.read_shared(self.next, head).or_else(|_| self.log.read_all(self.next, 1)) {
                    Ok(records) => self.buffer.extend(records),
                    Err(e) => return Some(Err(e)),
                }
                continue;
            }
            if self.head.changed().await.is_err() {
                // The writer stopped: yield whatever became durable before that.
                if self.next <= *self.head.borrow() {
                    continue;
                }
                return None;
            }
        }
    }
}
