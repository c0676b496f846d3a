//! Status feeds: one task per subscriber, fed by a broadcast of changed
//! incidents, reading the latest state from the shared projection.
//!
//! Memory per subscriber is bounded: the broadcast has a fixed capacity and
//! a subscriber that falls behind it is resynchronised with the latest state
//! of every matching incident (it never sees every intermediate change, but
//! always the latest state); the coalescer holds at most one pending item
//! per incident; the gRPC response channel is bounded.

use std::collections::BTreeSet;
use std::time::Duration;

use klaxon_domain::ids::IncidentId;
use klaxon_domain::notifier::{Coalescer, FeedFilter, FeedItem};
use tokio::sync::{broadcast, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The default of `NotifierOptions::feed_lag_max`.
pub const CHANGES_BUFFER: usize = 4096;
/// Items buffered per subscriber connection.
pub const ITEMS_BUFFER: usize = 64;

/// What every feed reads: the notifier's state, owned by the reactor
/// shell, and the shell's broadcast of changed incidents.
#[derive(Clone)]
pub struct Hub {
    pub(crate) reactor: klaxon_reactor::Handle<crate::service::Notifying>,
    pub(crate) interval: Duration,
}

/// One item for a subscriber, and whether it belongs to the initial snapshot.
pub struct Sent {
    /// The item.
    pub item: FeedItem,
    /// True for the items sent before any live change.
    pub snapshot: bool,
}

impl Hub {
    fn item(&self, id: IncidentId) -> Option<FeedItem> {
        let notifying = self.reactor.service();
        self.reactor.read(|state| state.incidents.get(&id)?.feed_item(|s| notifying.cadence(s)))
    }

    fn matching_open(&self, filter: &FeedFilter) -> Vec<FeedItem> {
        let notifying = self.reactor.service();
        let mut items: Vec<FeedItem> = self.reactor.read(|state| {
            state
                .incidents
                .values()
                .filter(|s| s.incident().is_some_and(|i| i.is_open()))
                .filter_map(|s| s.feed_item(|sev| notifying.cadence(sev)))
                .filter(|item| filter.matches(item))
                .collect()
        });
        items.sort_by_key(|i| i.incident);
        items
    }

    /// The incidents resolved after `since` and not reopened (closed
    /// ones included), oldest first: what the public page keeps showing as
    /// resolved for a while.
    pub(crate) fn resolved_since(&self, since: chrono::DateTime<chrono::Utc>) -> Vec<FeedItem> {
        let notifying = self.reactor.service();
        let mut items: Vec<FeedItem> = self.reactor.read(|state| {
            state
                .incidents
                .values()
                .filter(|s| s.incident().is_some_and(|i| !i.is_open()))
                .filter_map(|s| s.feed_item(|sev| notifying.cadence(sev)))
                .filter(|item| item.resolved_at.is_some_and(|at| at > since))
                .collect()
        });
        items.sort_by_key(|i| i.incident);
        items
    }

    /// Subscribes to changes, then takes the snapshot of the open incidents
    /// `filter` matches: a change after the snapshot is in the receiver, so
    /// following it from there misses nothing. `None` when the shell keeps
    /// no change broadcast.
    pub(crate) fn open(&self, filter: &FeedFilter) -> Option<(Vec<FeedItem>, broadcast::Receiver<IncidentId>)> {
        let changes = self.reactor.changes()?;
        Some((self.matching_open(filter), changes))
    }

    /// Runs one subscription until the client goes, the hub closes or
    /// `shutdown`: the snapshot first, then coalesced live items.
    pub async fn serve(self, filter: FeedFilter, tx: mpsc::Sender<Sent>, shutdown: CancellationToken) {
        let Some((snapshot, changes)) = self.open(&filter) else { return };
        for item in snapshot {
            if tx.send(Sent { item, snapshot: true }).await.is_err() {
                return;
            }
        }
        self.serve_live(filter, changes, tx, shutdown).await;
    }

    /// The live part of [`Hub::serve`]: coalesced items of the changes
    /// received on `changes`, until the client goes, the hub closes or
    /// `shutdown`.
    pub(crate) async fn serve_live(
        self,
        filter: FeedFilter,
        mut changes: broadcast::Receiver<IncidentId>,
        tx: mpsc::Sender<Sent>,
        shutdown: CancellationToken,
    ) {
        let mut coalescer: Coalescer<Instant> = Coalescer::new(self.interval);
        // Incidents this subscriber has been shown: a change that makes one
        // stop matching is still sent once, so the feed shows it leaving.
        let mut shown: BTreeSet<IncidentId> = BTreeSet::new();
        loop {
            let wake = coalescer.next_due();
            let sleep = async move {
                match wake {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            let ready: Vec<FeedItem> = tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tx.closed() => return,
                _ = sleep => coalescer.due(Instant::now()),
                change = changes.recv() => {
                    let ids = match change {
                        Ok(id) => vec![id],
                        // Fell behind the broadcast: take the latest state of everything.
                        Err(broadcast::error::RecvError::Lagged(_)) => {
                            self.reactor.read(|state| state.incidents.keys().copied().collect())
                        }
                        Err(broadcast::error::RecvError::Closed) => return,
                    };
                    let items: Vec<FeedItem> = ids.into_iter().filter_map(|id| self.item(id)).collect();
                    let now = Instant::now();
                    items
                        .into_iter()
                        .filter(|item| filter.matches(item) || shown.contains(&item.incident))
                        .filter_map(|item| coalescer.offer(item, now))
                        .collect()
                }
            };
            for item in ready {
                shown.insert(item.incident);
                if tx.send(Sent { item, snapshot: false }).await.is_err() {
                    return;
                }
            }
        }
    }
}
