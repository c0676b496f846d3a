//! The notifier component: its fold and decision, run by the reactor
//! shell, and the feeds of its handle.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use klaxon_bus::{Bus, SharedRecord};
use klaxon_domain::ids::{IncidentId, Severity};
use klaxon_domain::incident::Status;
use klaxon_domain::notifier::{
    self, FeedFilter, FeedItem, IncidentNotifications, Notification, NotifierConfig, NotifyChange,
};
use klaxon_domain::outbox::Receipt;
use klaxon_domain::paging::{PagingConfig, Slo};
use klaxon_log::ExpectedVersion;
use klaxon_reactor::{Append, Cause, Clock, Deliver, Effect, Ids, Live, Reactor, Trace, decode, streams};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::budget::{FEEDS_PER_PRINCIPAL_DEFAULT, FeedBudget};
use crate::feed::{Hub, ITEMS_BUFFER, Sent};

/// What can go wrong.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The log failed, a stored event does not decode, or the notifier is
    /// not keeping up.
    #[error(transparent)]
    Reactor(#[from] klaxon_reactor::Error),
    /// A feed filter over its limits.
    #[error(transparent)]
    Filter(#[from] klaxon_domain::Error),
}

impl klaxon_domain::class::Classify for Error {
    fn class(&self) -> klaxon_domain::class::Class {
        match self {
            Error::Reactor(e) => e.class(),
            Error::Filter(e) => e.class(),
        }
    }
}

/// Everything the notifier decides with, validated by the binary.
#[derive(Clone)]
pub struct NotifierOptions {
    /// Severities, channels, feed interval, cadence severities.
    pub notifier: Arc<NotifierConfig>,
    /// For the update cadence per severity; defaults apply without paging.
    pub paging: Option<Arc<PagingConfig>>,
    /// Outbound channels: the configured [`klaxon_channels::Channels`],
    /// or (in `klaxond`) a view of the channels a reload replaces, read
    /// at each delivery.
    pub channels: Arc<dyn klaxon_domain::outbox::Outbox>,
    /// Changes a feed subscriber may fall behind before it is resynchronised
    /// with the latest state of every incident (the broadcast's capacity).
    pub feed_lag_max: usize,
}

/// The executive notifier. Build it, take [`Handle`]s, then [`Notifier::run`].
pub struct Notifier {
    reactor: Reactor<Notifying>,
    budget: FeedBudget,
}

/// A cheap-to-clone handle: feed subscriptions.
#[derive(Clone)]
pub struct Handle {
    hub: Hub,
    budget: FeedBudget,
}

/// The notifier as the shell runs it.
pub struct Notifying {
    options: NotifierOptions,
    /// The paging configuration in force, for the update cadences (a
    /// reload replaces it); `options.paging` at first.
    paging: Live<Option<Arc<PagingConfig>>>,
}

/// What the notifier folds from the log.
#[derive(Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct State {
    pub(crate) incidents: HashMap<IncidentId, IncidentNotifications>,
    /// The trace context of each incident: the W3C traceparent of its
    /// latest incident event that carried one (for a new Sev-1, the severity
    /// assessment). A decision's `notifier.notify` span is its child.
    traces: HashMap<IncidentId, String>,
    /// The time of each incident's latest event (when a finished one may
    /// leave memory).
    #[serde(default)]
    latest: HashMap<IncidentId, DateTime<Utc>>,
}

impl State {
    /// Each incident's notifications as held in memory (finished incidents
    /// leave it with eviction).
    pub fn incidents(&self) -> &HashMap<IncidentId, IncidentNotifications> {
        &self.incidents
    }
}

/// What a decision records once its messages are sent.
pub struct Recording {
    incident: IncidentId,
    /// The notifications decided, each with the number of messages it sent.
    decided: Vec<(Notification, usize)>,
    /// When it was decided.
    at: DateTime<Utc>,
    /// The notify stream's version it was decided at: its records' ids
    /// derive from it.
    version: u64,
}

impl Notifying {
    /// The notifier as [`Notifier`] runs it: for rebuilding its state from
    /// the log with [`klaxon_reactor::Service::fold`] (the simulation,
    /// `klaxon-sim`, compares it with the running one's).
    pub fn new(options: NotifierOptions) -> Notifying {
        let paging = Live::new(Arc::new(options.paging.clone()));
        Notifying { options, paging }
    }

    /// The update cadence of a severity: the paging SLO's, or the default.
    pub(crate) fn cadence(&self, severity: Severity) -> TimeDelta {
        match self.paging.get().as_ref() {
            Some(p) => p.slo(severity).update_cadence,
            None => Slo::DEFAULT.update_cadence,
        }
    }
}

impl klaxon_reactor::Service for Notifying {
    type State = State;
    type Then = Recording;
    const NAME: &'static str = "the executive notifier";
    const TIMERS: bool = true;
    /// 2: each incident's latest event time (for eviction).
    const SCHEMA: u32 = 2;

    fn fold(&self, state: &mut State, record: &SharedRecord) -> Result<Option<IncidentId>, klaxon_reactor::Error> {
        let config = &self.options.notifier;
        let id = if let Some(event) = decode::shared_incident(record)? {
            if let Some(traceparent) = &record.metadata.traceparent {
                state.traces.insert(event.incident, traceparent.clone());
            }
            let incident = state.incidents.entry(event.incident);
            incident.or_insert_with(|| IncidentNotifications::new(event.incident, config)).apply_incident(event);
            klaxon_reactor::note_latest(&mut state.latest, event.incident, event.at);
            event.incident
        } else if let Some(event) = decode::shared_event::<NotifyChange>(record)? {
            let incident = state.incidents.entry(event.incident);
            incident.or_insert_with(|| IncidentNotifications::new(event.incident, config)).apply_notify(event);
            klaxon_reactor::note_latest(&mut state.latest, event.incident, event.at);
            event.incident
        } else {
            return Ok(None);
        };
        Ok(Some(id))
    }

    /// What the domain says is due: every message of it in one delivery,
    /// in a `notifier.notify` span below the incident's trace, recorded in
    /// `notify-INC-n` once sent.
    fn decide(&self, state: &State, id: IncidentId, _cause: &Cause, now: DateTime<Utc>) -> Vec<Effect<Recording>> {
        let Some(incident) = state.incidents.get(&id) else { return Vec::new() };
        let config = &self.options.notifier;
        let decided = notifier::decide(incident, config, |s| self.cadence(s), now);
        if decided.is_empty() {
            return Vec::new();
        }
        let span = tracing::info_span!(parent: None, "notifier.notify", incident = %id, notifications = decided.len());
        let trace = Trace::new(span, state.traces.get(&id).cloned());
        let mut sends = Vec::new();
        let decided = decided
            .into_iter()
            .map(|n| {
                let outgoing = n.outgoing(incident, config);
                let count = outgoing.len();
                sends.extend(outgoing);
                (n, count)
            })
            .collect();
        let then = Recording { incident: id, decided, at: now, version: incident.notify_stream_version() };
        vec![Effect::Deliver(Deliver { sends, then, trace: Some(trace) })]
    }

    /// A resolved or closed incident is finished since its latest event.
    fn retired_since(&self, state: &State, id: IncidentId) -> Option<DateTime<Utc>> {
        let incident = state.incidents.get(&id)?.incident()?;
        matches!(incident.status(), Status::Resolved | Status::Closed).then(|| state.latest.get(&id).copied())?
    }

    fn evict(&self, state: &mut State, id: IncidentId) {
        state.incidents.remove(&id);
        state.traces.remove(&id);
        state.latest.remove(&id);
    }

    /// `from` holds only the incident: all of it moves in.
    fn adopt(&self, state: &mut State, from: State, id: IncidentId) {
        state.incidents.extend(from.incidents.into_iter().filter(|(i, _)| *i == id));
        state.traces.extend(from.traces.into_iter().filter(|(i, _)| *i == id));
        state.latest.extend(from.latest.into_iter().filter(|(i, _)| *i == id));
    }

    fn next_due(&self, state: &State, id: IncidentId) -> Option<DateTime<Utc>> {
        notifier::next_due(state.incidents.get(&id)?, &self.options.notifier, |s| self.cadence(s))
    }

    fn recorded(&self, recording: Recording, receipts: Vec<Receipt>) -> Option<Append> {
        let mut rest = receipts.as_slice();
        let mut events = Vec::new();
        for (notification, count) in &recording.decided {
            let (mine, others) = rest.split_at((*count).min(rest.len()));
            events.extend(notification.recorded(mine, recording.at));
            rest = others;
        }
        if events.is_empty() {
            return None;
        }
        let stream = streams::notify(recording.incident);
        let ids = Ids::at_version(&stream, recording.version, "notify.decide");
        // Any: only this service writes the stream, one decision at a time per incident.
        Some(Append::new(stream, ExpectedVersion::Any, &events, ids))
    }
}

impl Notifier {
    /// A notifier over `log`; posts go out through `options.channels`.
    pub fn new(log: impl Into<Bus>, options: NotifierOptions, clock: Arc<dyn Clock>) -> Notifier {
        let paging = Live::new(Arc::new(options.paging.clone()));
        Notifier::with_live_paging(log, options, paging, clock)
    }

    /// [`Notifier::new`], with the paging configuration (the update
    /// cadences) read through `paging`, which a configuration reload
    /// replaces, instead of `options.paging`.
    pub fn with_live_paging(
        log: impl Into<Bus>,
        options: NotifierOptions,
        paging: Live<Option<Arc<PagingConfig>>>,
        clock: Arc<dyn Clock>,
    ) -> Notifier {
        let (channels, lag_max) = (options.channels.clone(), options.feed_lag_max);
        let notifying = Notifying { options, paging };
        let reactor = Reactor::new(log, notifying, clock).with_outbox(channels).with_changes(lag_max);
        Notifier { reactor, budget: FeedBudget::new(FEEDS_PER_PRINCIPAL_DEFAULT) }
    }

    /// Claims each delivery through the log before making it, so that
    /// replicas side by side deliver it once (see `klaxon_reactor::claim`).
    /// Call before taking a handle.
    pub fn with_claims(self, claims: klaxon_reactor::Claims) -> Notifier {
        Notifier { reactor: self.reactor.with_claims(claims), budget: self.budget }
    }

    /// Saves its state to `file` every `every` records and at a clean
    /// stop, and resumes from it at start (see `klaxon_reactor::snapshot`).
    /// Call before taking a handle.
    pub fn with_snapshots(self, file: klaxon_reactor::SnapshotFile, every: std::num::NonZeroU64) -> Notifier {
        Notifier { reactor: self.reactor.with_snapshots(file, every), budget: self.budget }
    }

    /// Evicts a resolved or closed incident from memory `after` its latest
    /// event, and reads it back from the log when it is needed again (see
    /// `klaxon_reactor::Reactor::with_eviction`). The public status page
    /// shows resolved incidents from memory: keep `after` at least its
    /// `public_resolved_hours`. Call before taking a handle.
    pub fn with_eviction(self, after: std::time::Duration) -> Notifier {
        Notifier { reactor: self.reactor.with_eviction(after), budget: self.budget }
    }

    /// A handle to it.
    pub fn handle(&self) -> Handle {
        let reactor = self.reactor.handle();
        let interval = reactor.service().options.notifier.feed_interval();
        Handle { hub: Hub { reactor, interval }, budget: self.budget.clone() }
    }

    /// Folds the whole log, then decides for every incident, and from then
    /// on follows the log and the clock until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), Error> {
        Ok(self.reactor.run(shutdown).await?)
    }
}

impl Handle {
    /// Where the notifier is in the log (for metrics and the barrier).
    pub fn reactor(&self) -> &klaxon_reactor::Handle<Notifying> {
        &self.hub.reactor
    }

    /// The one budget of live feeds per principal that every feed of this
    /// notifier counts against: gRPC status feeds and status page streams
    /// alike (`[limits] feeds_per_principal`).
    pub fn feed_budget(&self) -> &FeedBudget {
        &self.budget
    }

    /// Status feeds open right now.
    pub fn feed_subscribers(&self) -> usize {
        self.hub.reactor.change_receivers()
    }

    /// Opens a feed for `filter`: the receiver yields the snapshot, then
    /// live items, until the client goes or `shutdown`.
    pub fn subscribe(&self, filter: FeedFilter, shutdown: CancellationToken) -> Result<mpsc::Receiver<Sent>, Error> {
        filter.check()?;
        let (tx, rx) = mpsc::channel(ITEMS_BUFFER);
        tokio::spawn(self.hub.clone().serve(filter, tx, shutdown));
        Ok(rx)
    }

    /// Opens a feed for `filter` whose snapshot is returned at once (the
    /// open incidents it matches) and whose receiver yields only the live
    /// items after it: what a page that renders the snapshot itself needs.
    pub fn feed(
        &self,
        filter: FeedFilter,
        shutdown: CancellationToken,
    ) -> Result<(Vec<FeedItem>, mpsc::Receiver<Sent>), Error> {
        filter.check()?;
        let (tx, rx) = mpsc::channel(ITEMS_BUFFER);
        let Some((snapshot, changes)) = self.hub.open(&filter) else { return Ok((Vec::new(), rx)) };
        tokio::spawn(self.hub.clone().serve_live(filter, changes, tx, shutdown));
        Ok((snapshot, rx))
    }

    /// The incidents resolved after `since` that stayed resolved
    /// (or were closed since): the public status page shows them as
    /// resolved for `[status_page] public_resolved_hours`.
    pub fn resolved_since(&self, since: DateTime<Utc>) -> Vec<FeedItem> {
        self.hub.resolved_since(since)
    }

    /// The time of the notifier's clock (injected; tests move it).
    pub fn now(&self) -> DateTime<Utc> {
        self.hub.reactor.now()
    }

    /// The update cadence of a severity.
    pub fn cadence(&self, severity: Severity) -> TimeDelta {
        self.hub.reactor.service().cadence(severity)
    }
}
