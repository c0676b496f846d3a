//! One reader of the log for every service of a process: [`Fanout`].
//!
//! In the embedded topology five services follow the same log. Each with
//! its own [`Log::subscribe`] reads and decodes every record from sled
//! itself, five times over; on a first start (every service folding the
//! whole log) that is most of the CPU. A [`Fanout`] reads each record once
//! into a bounded window shared by its followers, in lockstep: a follower
//! takes the next record of the window (an `Arc`, no copy); the follower
//! that needs a record beyond the window reads the next chunk from the log
//! for all of them, once the slowest follower has taken the oldest records
//! (so memory stays bounded by [`WINDOW_RECORDS`] however far apart the
//! followers are).
//!
//! The [`crate::EventSource`] guarantees hold for each follower on its own:
//! it remembers the next position it owes, takes it from the window when
//! the window holds it and reads it privately from the log otherwise (a
//! follower that starts behind the window, or one detached for stalling the
//! others); it joins the window when its position is in it. So nothing
//! decides what a follower sees but its own position: no gap, no
//! duplicate, whatever the others do. A follower dropped mid-way leaves the
//! window; closing the log ends every follower once it has yielded every
//! durable record.
//!
//! A follower that does not take its next records (its consumer stalls, say
//! on an outbound delivery) would hold up every other one when the window
//! is full: when it has not made room for a chunk within [`STALL_MS_MAX`]
//! it is detached and reads privately from the log, as a
//! [`Log::subscribe`] does, until it catches up with the window again. The
//! stall limit is a pace, never a correctness rule.
//!
//! Records that every follower has taken stay in the window until room is
//! needed, so a follower created a little later than the others (the
//! services of a process start one after another) still joins.
//!
//! Every follower gets the same [`SharedRecord`] for a record of the
//! window, so what the layers above derive from it (the services' decoded
//! event, [`SharedRecord::derived`]) is derived once for all of them;
//! [`FanoutStats::derived`] counts it.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use klaxon_log::{Error, Log, Position, Record};
use tokio::sync::{Notify, watch};

use crate::source::{EventSource, SharedRecord, Subscription};

/// Records read from the log per chunk, shared or private (as
/// [`Log::subscribe`] reads).
pub const CHUNK_RECORDS: usize = 512;

/// The most records the shared window holds (a few MB of records).
pub const WINDOW_RECORDS: usize = 8 * CHUNK_RECORDS;

/// How long a full window waits for its slowest follower before that
/// follower is detached to read privately.
pub const STALL_MS_MAX: u64 = 500;

/// A process's shared reader of the log; an [`EventSource`] whose
/// [`EventSource::follow`] shares one read of each record between every
/// follower (see the module). [`EventSource::subscribe`] stays a private
/// [`Log::subscribe`]: for consumers paced by someone outside (a bridge's
/// participant) that must never set the services' pace. Cheap to clone.
#[derive(Clone)]
pub struct Fanout {
    shared: Arc<Shared>,
}

/// What a [`Fanout`] did, for tests and benchmarks: load-independent work
/// counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FanoutStats {
    /// Records read from the log into the shared window.
    pub shared_read: u64,
    /// Records handed out from the window (one per follower and record).
    pub shared_taken: u64,
    /// Records read by followers on their own (behind the window, detached).
    pub private_read: u64,
    /// Times a stalled follower was detached from a full window.
    pub detached: u64,
    /// Values derived from records ([`SharedRecord::derived`]: the
    /// services' decoded events), shared or private: once per record
    /// however many followers take it from the window.
    pub derived: u64,
}

struct Shared {
    log: Log,
    window_max: usize,
    stall: Duration,
    state: Mutex<State>,
    /// Woken when the window grows, shrinks or loses a follower.
    moved: Notify,
    shared_read: AtomicU64,
    shared_taken: AtomicU64,
    private_read: AtomicU64,
    detached: AtomicU64,
    derived: Arc<AtomicU64>,
}

struct State {
    /// The position of `window[0]`.
    base: Position,
    window: VecDeque<Arc<SharedRecord>>,
    /// Each joined follower's next position (within `base..=end`).
    members: HashMap<u64, Position>,
    next_id: u64,
    /// Whether a follower is reading the next chunk (outside the lock).
    reading: bool,
}

impl State {
    /// The position after the window's last record.
    fn end(&self) -> Position {
        Position(self.base.0 + self.window.len() as u64)
    }

    /// Makes follower `id` at `next` a member if `next` is in the window
    /// (or there is no member: the window then starts at `next`).
    fn join(&mut self, id: u64, next: Position) -> bool {
        let in_window = self.base <= next && next <= self.end();
        if !in_window && self.members.is_empty() && !self.reading {
            self.window.clear();
            self.base = next;
        }
        if self.base <= next && next <= self.end() {
            self.members.insert(id, next);
            return true;
        }
        false
    }

    fn slowest(&self) -> Option<Position> {
        self.members.values().copied().min()
    }

    /// Drops the oldest records every member has taken until `room` more
    /// fit in `window_max`. The others stay, for a follower that starts
    /// a little later (the services of a process start one after another)
    /// to join.
    fn make_room(&mut self, room: usize, window_max: usize) {
        let keep_from = self.slowest().unwrap_or_else(|| self.end());
        while self.window.len() + room > window_max && self.base < keep_from && self.window.pop_front().is_some() {
            self.base = self.base.next();
        }
    }
}

impl Fanout {
    /// A shared reader of `log` with the default window and stall limit.
    pub fn new(log: Log) -> Fanout {
        Fanout::with_limits(log, WINDOW_RECORDS, Duration::from_millis(STALL_MS_MAX))
    }

    /// A shared reader holding at most `window_records` records (at least
    /// one), detaching a follower that stalls a full window for `stall`.
    pub fn with_limits(log: Log, window_records: usize, stall: Duration) -> Fanout {
        Fanout {
            shared: Arc::new(Shared {
                log,
                window_max: window_records.max(1),
                stall,
                state: Mutex::new(State {
                    base: Position(1),
                    window: VecDeque::new(),
                    members: HashMap::new(),
                    next_id: 0,
                    reading: false,
                }),
                moved: Notify::new(),
                shared_read: AtomicU64::new(0),
                shared_taken: AtomicU64::new(0),
                private_read: AtomicU64::new(0),
                detached: AtomicU64::new(0),
                derived: Arc::new(AtomicU64::new(0)),
            }),
        }
    }

    /// The work counters so far.
    pub fn stats(&self) -> FanoutStats {
        let s = &self.shared;
        FanoutStats {
            shared_read: s.shared_read.load(Ordering::Relaxed),
            shared_taken: s.shared_taken.load(Ordering::Relaxed),
            private_read: s.private_read.load(Ordering::Relaxed),
            detached: s.detached.load(Ordering::Relaxed),
            derived: s.derived.load(Ordering::Relaxed),
        }
    }

    /// The records the window holds now (at most its limit).
    pub fn window_len(&self) -> usize {
        self.shared.lock().window.len()
    }

    /// A follower from position `from` (0 or 1 = from the start). It
    /// joins the window at once when its position is in it (or the window
    /// has no member), so followers created together share from their first
    /// record whichever runs first.
    pub fn follower(&self, from: Position) -> Follower {
        let from = from.max(Position(1));
        let (id, joined) = {
            let mut state = self.shared.lock();
            state.next_id += 1;
            let id = state.next_id;
            (id, state.join(id, from))
        };
        Follower {
            shared: self.shared.clone(),
            id,
            next: from,
            joined,
            private: VecDeque::new(),
            head: self.shared.log.durable_watch(),
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("fan-out state lock")
    }

    /// The room a chunk read waits for: half the window, at most a chunk
    /// (one record at a time when the slowest moves would read in tiny
    /// chunks).
    fn room_min(&self) -> usize {
        (self.window_max / 2).clamp(1, CHUNK_RECORDS)
    }

    /// Reads up to `max` records from `from`; on a damaged record, one at a
    /// time, so every intact record before it is still delivered.
    fn read(&self, from: Position, max: usize) -> Result<Vec<Record>, Error> {
        self.log.read_all(from, max).or_else(|_| self.log.read_all(from, 1))
    }

    /// A record read from the log, with a slot whose filling is counted.
    fn wrap(&self, record: Record) -> Arc<SharedRecord> {
        Arc::new(SharedRecord::counted(record, self.derived.clone()))
    }
}

/// One follower of a [`Fanout`]; see the module for what it guarantees.
pub struct Follower {
    shared: Arc<Shared>,
    id: u64,
    /// The position of the next record this follower yields.
    next: Position,
    /// Whether it is (or was last seen) a member of the window.
    joined: bool,
    /// Records read privately, not yet yielded.
    private: VecDeque<Arc<SharedRecord>>,
    head: watch::Receiver<Position>,
}

/// What a follower does after one look at the shared state.
enum Step {
    Yield(Arc<SharedRecord>),
    /// Read a chunk from this position for the window (`reading` is set).
    ReadShared(Position, usize),
    ReadPrivate,
    WaitHead,
    /// Wait for the window to move (a chunk read by another, a record taken).
    WaitMoved(bool),
}

impl Follower {
    /// The position of the next record this follower will yield.
    pub fn next_position(&self) -> Position {
        self.next
    }

    /// The next record; `None` once the log is closed and every durable
    /// record has been yielded. An error (corruption) is returned, never
    /// skipped: the follower stays at the failing position. Cancel-safe: a
    /// dropped call yields nothing and loses nothing.
    pub async fn next(&mut self) -> Option<Result<Arc<SharedRecord>, Error>> {
        tokio::task::consume_budget().await;
        loop {
            if let Some(record) = self.private.pop_front() {
                self.next = record.position.next();
                return Some(Ok(record));
            }
            let head = *self.head.borrow_and_update();
            let shared = self.shared.clone();
            // Registered before the lock is released, so a move made right
            // after is not missed.
            let moved = shared.moved.notified();
            tokio::pin!(moved);
            let step = {
                let mut state = shared.lock();
                self.step(&mut state, head, moved.as_mut())
            };
            match step {
                Step::Yield(record) => return Some(Ok(record)),
                Step::ReadShared(from, max) => {
                    let read = shared.read(from, max);
                    let mut state = shared.lock();
                    state.reading = false;
                    let result = match read {
                        Ok(records) => {
                            assert_eq!(from, state.end(), "only the reading follower extends the window");
                            shared.shared_read.fetch_add(records.len() as u64, Ordering::Relaxed);
                            for record in records {
                                assert_eq!(record.position, state.end(), "the log reads positions in order");
                                state.window.push_back(shared.wrap(record));
                            }
                            Ok(())
                        }
                        Err(e) => Err(e),
                    };
                    drop(state);
                    shared.moved.notify_waiters();
                    if let Err(e) = result {
                        return Some(Err(e));
                    }
                }
                Step::ReadPrivate => match shared.read(self.next, CHUNK_RECORDS) {
                    Ok(records) => {
                        shared.private_read.fetch_add(records.len() as u64, Ordering::Relaxed);
                        self.private.extend(records.into_iter().map(|r| shared.wrap(r)));
                    }
                    Err(e) => return Some(Err(e)),
                },
                Step::WaitMoved(full) => {
                    if !full {
                        moved.await;
                    } else if tokio::time::timeout(shared.stall, moved).await.is_err() {
                        self.detach_stalled();
                    }
                }
                Step::WaitHead => {
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
    }

    /// One look at the shared state: join the window if this follower's
    /// position is in it, take a record, or say what to wait for or read.
    fn step(
        &mut self,
        state: &mut State,
        head: Position,
        moved: std::pin::Pin<&mut tokio::sync::futures::Notified<'_>>,
    ) -> Step {
        if self.joined && !state.members.contains_key(&self.id) {
            self.joined = false; // detached
        }
        if !self.joined {
            self.joined = state.join(self.id, self.next);
        }
        if !self.joined {
            return if self.next <= head { Step::ReadPrivate } else { Step::WaitHead };
        }
        if self.next < state.end() {
            let record = state.window[(self.next.0 - state.base.0) as usize].clone();
            let slowest = state.slowest();
            self.next = record.position.next();
            state.members.insert(self.id, self.next);
            self.shared.shared_taken.fetch_add(1, Ordering::Relaxed);
            if state.slowest() != slowest && self.room(state) >= self.shared.room_min() {
                // The slowest follower made room for the next chunk.
                self.shared.moved.notify_waiters();
            }
            return Step::Yield(record);
        }
        if self.next > head {
            return Step::WaitHead;
        }
        // Everyone's next chunk is this follower's to read, room permitting.
        moved.enable();
        if state.reading {
            return Step::WaitMoved(false);
        }
        let window_max = self.shared.window_max;
        state.make_room(self.shared.room_min(), window_max);
        let room = window_max - state.window.len();
        if room < self.shared.room_min() {
            return Step::WaitMoved(true);
        }
        state.reading = true;
        Step::ReadShared(self.next, room.min(CHUNK_RECORDS))
    }

    /// The records the window could take once the records every member
    /// has taken are dropped.
    fn room(&self, state: &State) -> usize {
        let held = state.end().0 - state.slowest().unwrap_or(state.end()).0;
        self.shared.window_max.saturating_sub(held as usize)
    }

    /// After a full window waited [`STALL_MS_MAX`] for its slowest
    /// followers: detaches those still at the slowest position (they read
    /// privately from their own positions) and drops the records before
    /// the next slowest.
    fn detach_stalled(&mut self) {
        let mut state = self.shared.lock();
        if self.room(&state) >= self.shared.room_min() {
            return; // it moved meanwhile
        }
        let slowest = state.slowest().expect("this follower is a member");
        let before = state.members.len();
        state.members.retain(|id, next| *id == self.id || *next != slowest);
        let detached = (before - state.members.len()) as u64;
        self.shared.detached.fetch_add(detached, Ordering::Relaxed);
        // Past them, so that they do not join again at once.
        let keep_from = state.slowest().expect("this follower is a member");
        while state.base < keep_from && state.window.pop_front().is_some() {
            state.base = state.base.next();
        }
        drop(state);
        tracing::debug!(detached, position = slowest.0, "a stalled follower leaves the shared window");
        self.shared.moved.notify_waiters();
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        if state.members.remove(&self.id).is_some() {
            drop(state);
            self.shared.moved.notify_waiters();
        }
    }
}

impl EventSource for Fanout {
    fn subscribe(&self, from: Position) -> Subscription {
        EventSource::subscribe(&self.shared.log, from)
    }

    fn follow(&self, from: Position) -> Subscription {
        let follower = self.follower(from);
        Subscription::from_shared_stream(Box::pin(futures_util::stream::unfold(follower, |mut f| async move {
            f.next().await.map(|item| (item, f))
        })))
    }
}
