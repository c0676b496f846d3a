//! The notifier component: fold, feed, decide, deliver, record.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use klaxon_bus::Bus;
use klaxon_channels::Channels;
use klaxon_domain::ids::{IncidentId, KLAXON_NAMESPACE, Severity, reaction_event_id};
use klaxon_domain::incident::IncidentEvent;
use klaxon_domain::notifier::{
    self, FeedFilter, IncidentNotifications, Notification, NotifierConfig, NotifyEvent, decide, next_due,
};
use klaxon_domain::paging::{PagingConfig, Slo};
use klaxon_log::{EventData, EventKind, ExpectedVersion, Metadata, NewEvent, Position, Record, StreamId};
use klaxon_paging::Clock;
use klaxon_telemetry::Traced;
use tokio::sync::{broadcast, mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use uuid::Uuid;

use crate::feed::{CadenceOf, Hub, ITEMS_BUFFER, Sent};

/// What can go wrong.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The log failed.
    #[error(transparent)]
    Log(#[from] klaxon_log::Error),
    /// A stored event does not decode.
    #[error("the event at position {position} does not decode: {reason}")]
    Undecodable {
        /// Where.
        position: Position,
        /// Why.
        reason: String,
    },
    /// A feed filter over its limits.
    #[error(transparent)]
    Filter(#[from] klaxon_domain::Error),
}

/// Everything the notifier decides with, validated by the binary.
#[derive(Clone)]
pub struct NotifierOptions {
    /// Severities, channels, feed interval, cadence severities.
    pub notifier: Arc<NotifierConfig>,
    /// For the update cadence per severity; defaults apply without paging.
    pub paging: Option<Arc<PagingConfig>>,
    /// Outbound channels.
    pub channels: Arc<Channels>,
    /// Changes a feed subscriber may fall behind before it is resynchronised
    /// with the latest state of every incident (the broadcast's capacity).
    pub feed_lag_max: usize,
}

/// The executive notifier. Build it, take [`Handle`]s, then [`Notifier::run`].
pub struct Notifier {
    handle: Handle,
}

/// A cheap-to-clone handle: feed subscriptions.
#[derive(Clone)]
pub struct Handle {
    log: Bus,
    options: NotifierOptions,
    clock: Arc<dyn Clock>,
    hub: Hub,
    applied: watch::Sender<Position>,
    /// The trace context of each incident: the W3C traceparent of its
    /// latest incident event that carried one (for a new Sev-1, the severity
    /// assessment). A decision's `notifier.notify` span is its child.
    traces: Arc<std::sync::Mutex<HashMap<IncidentId, String>>>,
}

impl Notifier {
    /// A notifier over `log`.
    pub fn new(log: impl Into<Bus>, options: NotifierOptions, clock: Arc<dyn Clock>) -> Notifier {
        let paging = options.paging.clone();
        let cadence_of: CadenceOf = Arc::new(move |s: Severity| match &paging {
            Some(p) => p.slo(s).update_cadence,
            None => Slo::DEFAULT.update_cadence,
        });
        let hub = Hub {
            states: Arc::new(RwLock::new(HashMap::new())),
            changes: broadcast::channel(options.feed_lag_max.max(1)).0,
            cadence_of,
            interval: options.notifier.feed_interval(),
        };
        Notifier {
            handle: Handle {
                log: log.into(),
                options,
                clock,
                hub,
                applied: watch::channel(Position::ZERO).0,
                traces: Arc::default(),
            },
        }
    }

    /// A handle to it.
    pub fn handle(&self) -> Handle {
        self.handle.clone()
    }

    /// Folds the whole log, then decides for every incident, and from then
    /// on follows the log and the clock until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), Error> {
        let h = self.handle;
        let start_head = h.log.head().await?;
        let mut caught_up = start_head == Position::ZERO;
        let mut subscription = h.log.subscribe(Position(1));
        let (done_tx, mut done_rx) = mpsc::channel::<(IncidentId, Option<Position>)>(256);
        // Incidents with notifications being delivered, and the position
        // their record will have (None while delivering).
        let mut in_flight: HashMap<IncidentId, Option<Position>> = HashMap::new();
        let mut dirty: HashSet<IncidentId> = HashSet::new();
        let mut tasks = tokio::task::JoinSet::new();
        loop {
            let wake = if caught_up { h.next_wake(&in_flight) } else { None };
            let sleep = match wake {
                Some(at) => h.clock.sleep_until(at),
                None => Box::pin(std::future::pending()),
            };
            tokio::select! {
                _ = shutdown.cancelled() => break,
                next = subscription.next() => {
                    let Some(record) = next else { break };
                    let record = record?;
                    if let Some(id) = h.fold(&record)? {
                        dirty.insert(id);
                        if in_flight.get(&id).is_some_and(|p| p.is_some_and(|p| record.position >= p)) {
                            in_flight.remove(&id);
                        }
                        let _ = h.hub.changes.send(id);
                    }
                    h.applied.send_replace(record.position);
                    if !caught_up && record.position >= start_head {
                        caught_up = true;
                        dirty.extend(h.hub.states.read().expect("state lock").keys().copied());
                    }
                }
                Some((id, position)) = done_rx.recv() => {
                    match position {
                        Some(p) if p > *h.applied.borrow() => { in_flight.insert(id, Some(p)); }
                        _ => { in_flight.remove(&id); dirty.insert(id); }
                    }
                }
                _ = sleep => {
                    let now = h.clock.now();
                    let states = h.hub.states.read().expect("state lock");
                    dirty.extend(states.iter().filter(|(_, s)| h.due(s).is_some_and(|d| d <= now)).map(|(id, _)| *id));
                }
            }
            if !caught_up {
                continue;
            }
            for id in std::mem::take(&mut dirty) {
                if in_flight.contains_key(&id) {
                    continue;
                }
                let decided = {
                    let states = h.hub.states.read().expect("state lock");
                    let Some(state) = states.get(&id) else { continue };
                    decide(state, &h.options.notifier, |s| (h.hub.cadence_of)(s), h.clock.now())
                };
                if decided.is_empty() {
                    continue;
                }
                in_flight.insert(id, None);
                let (h2, done) = (h.clone(), done_tx.clone());
                let trace = h.traces.lock().expect("traces lock").get(&id).cloned();
                let span =
                    tracing::info_span!(parent: None, "notifier.notify", incident = %id, notifications = decided.len());
                let traced = Traced::new(span, trace.as_deref());
                let span = traced.span().clone();
                tasks.spawn(async move {
                    let position = match h2.carry_out(id, decided, traced.traceparent()).await {
                        Ok(p) => p,
                        Err(e) => {
                            tracing::error!(incident = %id, error = %e, "recording an executive notification failed");
                            None
                        }
                    };
                    let _ = done.send((id, position)).await;
                }.instrument(span));
            }
            while tasks.try_join_next().is_some() {}
        }
        // A clean stop lets notifications under way finish and be recorded,
        // so that a restart does not send them again.
        drop(done_rx);
        if tokio::time::timeout(Duration::from_secs(30), async { while tasks.join_next().await.is_some() {} })
            .await
            .is_err()
        {
            tracing::warn!("notifications still being delivered at shutdown; they will be retried after the restart");
        }
        Ok(())
    }
}

impl Handle {
    /// The last log position folded into this service's projection (for
    /// the consumer-lag metric).
    pub fn applied(&self) -> Position {
        *self.applied.borrow()
    }

    fn due(&self, state: &IncidentNotifications) -> Option<DateTime<Utc>> {
        next_due(state, &self.options.notifier, |s| (self.hub.cadence_of)(s))
    }

    fn next_wake(&self, in_flight: &HashMap<IncidentId, Option<Position>>) -> Option<DateTime<Utc>> {
        let states = self.hub.states.read().expect("state lock");
        states.iter().filter(|(id, _)| !in_flight.contains_key(*id)).filter_map(|(_, s)| self.due(s)).min()
    }

    /// Folds one record; returns the incident it concerns, if any.
    fn fold(&self, record: &Record) -> Result<Option<IncidentId>, Error> {
        let kind = record.kind.as_str();
        let undecodable =
            |e: &dyn std::fmt::Display| Error::Undecodable { position: record.position, reason: e.to_string() };
        let config = &self.options.notifier;
        let mut states = self.hub.states.write().expect("state lock");
        if kind.starts_with("incident.") {
            let event = IncidentEvent::from_json(kind, record.data.as_str()).map_err(|e| undecodable(&e))?;
            if let Some(traceparent) = &record.metadata.traceparent {
                self.traces.lock().expect("traces lock").insert(event.incident, traceparent.clone());
            }
            states
                .entry(event.incident)
                .or_insert_with(|| IncidentNotifications::new(event.incident, config))
                .apply_incident(&event);
            Ok(Some(event.incident))
        } else if notifier::KINDS.contains(&kind) {
            let event = NotifyEvent::from_json(kind, record.data.as_str()).map_err(|e| undecodable(&e))?;
            states
                .entry(event.incident)
                .or_insert_with(|| IncidentNotifications::new(event.incident, config))
                .apply_notify(&event);
            Ok(Some(event.incident))
        } else {
            Ok(None)
        }
    }

    /// Delivers the decided notifications and records them with the trace
    /// context `traceparent`; returns the position of the last record
    /// written.
    async fn carry_out(
        &self,
        id: IncidentId,
        decided: Vec<Notification>,
        traceparent: Option<&str>,
    ) -> Result<Option<Position>, Error> {
        let mut events = Vec::new();
        let title = {
            let states = self.hub.states.read().expect("state lock");
            states.get(&id).and_then(|s| s.incident()).map(|i| i.title().to_string()).unwrap_or_default()
        };
        for notification in decided {
            match notification {
                Notification::Executive(post) | Notification::CompanyWide(post) => {
                    for channel in post.channels() {
                        let message = klaxon_channels::Notification {
                            idempotency_key: post.idempotency_key(channel),
                            kind: format!("{}_post", post.audience().as_str()),
                            title: format!("{} {id}: {title}", post.severity()),
                            text: post.summary().to_string(),
                            fields: BTreeMap::from([
                                ("incident".into(), id.to_string().into()),
                                ("severity".into(), post.severity().to_string().into()),
                            ]),
                            recipient: None,
                            thread: None,
                        };
                        let now = self.clock.now();
                        events.push(match self.options.channels.deliver(channel, &message).await {
                            Ok(_) => post.delivered(channel, now),
                            Err(e) => post.failed(channel, &e.to_string(), now),
                        });
                    }
                }
                Notification::CadenceReminder(reminder) => {
                    let now = self.clock.now();
                    let message = klaxon_channels::Notification {
                        idempotency_key: format!("{id}/update-due/{}", reminder.due_at.timestamp()),
                        kind: "update_reminder".into(),
                        title: format!("{id}: an executive update is overdue"),
                        text: format!("No executive update for {id} since the cadence ran out at {}.", reminder.due_at),
                        fields: BTreeMap::from([("incident".into(), id.to_string().into())]),
                        recipient: reminder.commander.as_ref().map(|c| c.to_string()),
                        thread: None,
                    };
                    for channel in self.options.notifier.executive_channels() {
                        if let Err(e) = self.options.channels.deliver(channel, &message).await {
                            tracing::warn!(incident = %id, %channel, error = %e, "update reminder not delivered");
                        }
                    }
                    events.push(reminder.overdue(now));
                }
            }
        }
        if events.is_empty() {
            return Ok(None);
        }
        let version = self.hub.states.read().expect("state lock").get(&id).map_or(0, |s| s.notify_stream_version());
        Ok(Some(self.append(id, version, &events, traceparent).await?))
    }

    async fn append(
        &self,
        id: IncidentId,
        basis: u64,
        events: &[NotifyEvent],
        traceparent: Option<&str>,
    ) -> Result<Position, Error> {
        let stream = StreamId::new(notifier::stream(id)).expect("notify streams are valid stream ids");
        let cause = Uuid::new_v5(&KLAXON_NAMESPACE, format!("{stream}@{basis}").as_bytes());
        let new = events
            .iter()
            .enumerate()
            .map(|(i, e)| {
                Ok(NewEvent {
                    id: reaction_event_id(cause, "notify.decide", i as u32),
                    kind: EventKind::new(e.kind()).expect("domain kinds are valid"),
                    data: EventData::from_value(&e.to_json())?,
                    metadata: Metadata {
                        actor: Some(e.by.to_string()),
                        traceparent: traceparent.map(str::to_owned),
                        ..Metadata::default()
                    },
                })
            })
            .collect::<Result<Vec<_>, klaxon_log::Error>>()?;
        // Any: only this service writes the stream, one decision at a time per incident.
        Ok(self.log.append(&stream, ExpectedVersion::Any, new).await?.last)
    }

    /// Status feeds open right now.
    pub fn feed_subscribers(&self) -> usize {
        self.hub.changes.receiver_count()
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
    ) -> Result<(Vec<notifier::FeedItem>, mpsc::Receiver<Sent>), Error> {
        filter.check()?;
        let (snapshot, changes) = self.hub.open(&filter);
        let (tx, rx) = mpsc::channel(ITEMS_BUFFER);
        tokio::spawn(self.hub.clone().serve_live(filter, changes, tx, shutdown));
        Ok((snapshot, rx))
    }

    /// Waits (at most `limit`) until the notifier has folded `position`.
    pub async fn wait_for(&self, position: Position, limit: Duration) -> bool {
        let mut applied = self.applied.subscribe();
        matches!(tokio::time::timeout(limit, applied.wait_for(|p| *p >= position)).await, Ok(Ok(_)))
    }

    /// The update cadence of a severity.
    pub fn cadence(&self, severity: Severity) -> TimeDelta {
        (self.hub.cadence_of)(severity)
    }
}
