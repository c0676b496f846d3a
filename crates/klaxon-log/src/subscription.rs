//! Catch-up-then-live subscriptions that tail the log by position.

use std::collections::VecDeque;

use tokio::sync::watch;

use crate::{Error, Log, Position, Record};

/// Records read from the log per refill.
const CHUNK_RECORDS: usize = 512;

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
                match self.log.read_all(self.next, CHUNK_RECORDS).or_else(|_| self.log.read_all(self.next, 1)) {
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
