//! The paging component: fold, decide, append, deliver.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use klaxon_bus::Bus;
use klaxon_channels::{Channels, Notification};
use klaxon_domain::ids::{ActorId, IncidentId, KLAXON_NAMESPACE, RequestKey, ServiceName, reaction_event_id};
use klaxon_domain::incident::{Change, Status};
use klaxon_domain::oncall::Schedules;
use klaxon_domain::paging::{
    self, AckError, Delivery, IncidentPaging, Page, PageEvent, PageId, PagingConfig, decide, next_due,
};
use klaxon_domain::severity::ServiceCatalog;
use klaxon_log::{EventData, EventKind, ExpectedVersion, Metadata, NewEvent, Position, Record, StreamId};
use klaxon_telemetry::Traced;
use tokio::sync::{Semaphore, watch};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use uuid::Uuid;

/// Deliveries running at once.
const DELIVERIES_MAX: usize = 16;
/// How long a request waits for the service to catch up with the log.
const CATCH_UP_WAIT: Duration = Duration::from_secs(5);
/// How long a clean stop waits for deliveries under way.
const DRAIN_WAIT: Duration = Duration::from_secs(30);
/// Attempts of an acknowledgement that races with the service's own appends.
const ACK_ATTEMPTS_MAX: usize = 5;

/// What can go wrong.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The acknowledgement is not allowed (unknown page, someone else's, …).
    #[error(transparent)]
    Ack(#[from] AckError),
    /// No such schedule.
    #[error("unknown schedule {0:?}")]
    UnknownSchedule(String),
    /// No such incident (it has no pages).
    #[error("{0} has no pages")]
    NoPages(IncidentId),
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
    /// The service is stopping or not keeping up.
    #[error("paging is unavailable: {0}")]
    Unavailable(String),
    /// A request field is malformed (the request id). Nothing was written.
    #[error(transparent)]
    Request(#[from] klaxon_domain::Error),
}

/// Everything paging decides with, validated by the binary.
#[derive(Clone)]
pub struct PagerConfig {
    /// Policies, SLOs, paging severities, duty manager, managers, channels.
    pub paging: Arc<PagingConfig>,
    /// The service catalog (service -> escalation policy).
    pub catalog: Arc<ServiceCatalog>,
    /// On-call schedules.
    pub schedules: Arc<Schedules>,
    /// Outbound channels (pages go through `paging.channels()`).
    pub channels: Arc<Channels>,
}

/// The paging service. Build it, take [`Handle`]s, then [`Pager::run`] it.
pub struct Pager {
    handle: Handle,
}

/// A cheap-to-clone handle: acknowledgements and queries.
#[derive(Clone)]
pub struct Handle {
    log: Bus,
    config: PagerConfig,
    clock: Arc<dyn crate::Clock>,
    state: Arc<Mutex<State>>,
    applied: watch::Sender<Position>,
}

#[derive(Default)]
struct State {
    incidents: HashMap<IncidentId, IncidentPaging>,
    titles: HashMap<IncidentId, String>,
    /// The trace context of each incident: the W3C traceparent of its
    /// latest incident event that carried one (for a new Sev-1, the severity
    /// assessment). A decision's `paging.page` span is its child.
    traces: HashMap<IncidentId, String>,
    /// The trace context each page was decided in (its `page.responder_paged`
    /// record's): the parent of its delivery's `paging.deliver` span.
    page_traces: HashMap<PageId, String>,
    /// Incidents whose latest decision is appended but not yet folded back:
    /// no new decision until the fold has passed this position.
    in_flight: HashMap<IncidentId, Position>,
    /// Pages being delivered right now.
    delivering: HashSet<PageId>,
    /// Paging events folded so far, by what they record (for metrics).
    counts: Counts,
}

/// How many pages were delivered, acknowledged and escalated, and how many
/// SLO breaches were recorded, counted from the log (so they are the same
/// after a restart).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// `page.delivered.v1`.
    pub delivered: u64,
    /// `page.delivery_failed.v1`.
    pub delivery_failed: u64,
    /// `page.acknowledged.v1`.
    pub acknowledged: u64,
    /// `page.escalated.v1`.
    pub escalated: u64,
    /// `slo.breached.v1`.
    pub slo_breaches: u64,
}

impl Pager {
    /// A pager over `log` with its configuration and clock.
    pub fn new(log: impl Into<Bus>, config: PagerConfig, clock: Arc<dyn crate::Clock>) -> Pager {
        let handle = Handle {
            log: log.into(),
            config,
            clock,
            state: Arc::new(Mutex::new(State::default())),
            applied: watch::channel(Position::ZERO).0,
        };
        Pager { handle }
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
        let deliveries = Arc::new(Semaphore::new(DELIVERIES_MAX));
        let mut delivering = tokio::task::JoinSet::new();
        let mut dirty: HashSet<IncidentId> = HashSet::new();
        loop {
            let wake = if caught_up { h.next_wake() } else { None };
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
                    }
                    h.applied.send_replace(record.position);
                    if !caught_up && record.position >= start_head {
                        caught_up = true;
                        dirty.extend(h.state.lock().expect("state").incidents.keys().copied());
                    }
                }
                _ = sleep => {
                    let now = h.clock.now();
                    let state = h.state.lock().expect("state");
                    dirty.extend(
                        state.incidents.iter()
                            .filter(|(_, s)| next_due(s, &h.config.paging).is_some_and(|due| due <= now))
                            .map(|(id, _)| *id),
                    );
                }
            }
            if !caught_up {
                continue;
            }
            for id in std::mem::take(&mut dirty) {
                h.decide_and_append(id).await?;
                h.start_deliveries(id, &deliveries, &mut delivering);
            }
            // Reap finished deliveries so the set stays small.
            while delivering.try_join_next().is_some() {}
        }
        // A clean stop lets deliveries under way finish and record their
        // outcome (they are bounded by the channels' attempts and timeouts),
        // so that a restart does not deliver them again.
        if tokio::time::timeout(DRAIN_WAIT, async { while delivering.join_next().await.is_some() {} }).await.is_err() {
            tracing::warn!("page deliveries still running at shutdown; they will be retried after the restart");
        }
        Ok(())
    }
}

impl Handle {
    /// Paging events folded so far, by kind (for metrics).
    pub fn counts(&self) -> Counts {
        self.state.lock().expect("state").counts
    }

    /// The last log position folded into this service's projection (for
    /// the consumer-lag metric).
    pub fn applied(&self) -> Position {
        *self.applied.borrow()
    }

    /// Folds one record; returns the incident it concerns, if any.
    fn fold(&self, record: &Record) -> Result<Option<IncidentId>, Error> {
        let kind = record.kind.as_str();
        let undecodable =
            |e: &dyn std::fmt::Display| Error::Undecodable { position: record.position, reason: e.to_string() };
        let mut state = self.state.lock().expect("state");
        let id = if kind.starts_with("incident.") {
            let event = klaxon_domain::incident::IncidentEvent::from_json(kind, record.data.as_str())
                .map_err(|e| undecodable(&e))?;
            if let Change::Reported(r) = &event.change {
                state.titles.insert(event.incident, r.title.clone());
            }
            if let Some(traceparent) = &record.metadata.traceparent {
                state.traces.insert(event.incident, traceparent.clone());
            }
            let config = &self.config.paging;
            state
                .incidents
                .entry(event.incident)
                .or_insert_with(|| IncidentPaging::new(event.incident, config))
                .apply_incident(&event);
            event.incident
        } else if paging::KINDS.contains(&kind) {
            let event = PageEvent::from_json(kind, record.data.as_str()).map_err(|e| undecodable(&e))?;
            let counts = &mut state.counts;
            match &event.change {
                paging::PageChange::PageDelivered(_) => counts.delivered += 1,
                paging::PageChange::PageDeliveryFailed(_) => counts.delivery_failed += 1,
                paging::PageChange::PageAcknowledged(_) => counts.acknowledged += 1,
                paging::PageChange::PageEscalated(_) => counts.escalated += 1,
                paging::PageChange::SloBreached(_) => counts.slo_breaches += 1,
                _ => {}
            }
            if let (paging::PageChange::ResponderPaged(p), Some(traceparent)) =
                (&event.change, &record.metadata.traceparent)
            {
                state.page_traces.insert(p.page, traceparent.clone());
            }
            if let paging::PageChange::PageDelivered(d) = &event.change {
                state.delivering.remove(&d.page);
            }
            if let paging::PageChange::PageDeliveryFailed(d) = &event.change {
                state.delivering.remove(&d.page);
            }
            let config = &self.config.paging;
            state
                .incidents
                .entry(event.incident)
                .or_insert_with(|| IncidentPaging::new(event.incident, config))
                .apply_page(&event);
            event.incident
        } else {
            return Ok(None);
        };
        if state.in_flight.get(&id).is_some_and(|p| record.position >= *p) {
            state.in_flight.remove(&id);
        }
        Ok(Some(id))
    }

    /// The earliest instant some incident's decision is due.
    fn next_wake(&self) -> Option<DateTime<Utc>> {
        let state = self.state.lock().expect("state");
        state
            .incidents
            .iter()
            .filter(|(id, _)| !state.in_flight.contains_key(*id))
            .filter_map(|(_, s)| next_due(s, &self.config.paging))
            .min()
    }

    /// Decides for one incident at the clock's time and appends the result,
    /// in a `paging.page` span below the incident's latest trace context.
    async fn decide_and_append(&self, id: IncidentId) -> Result<(), Error> {
        let (events, version, trace) = {
            let state = self.state.lock().expect("state");
            if state.in_flight.contains_key(&id) {
                return Ok(());
            }
            let Some(paging) = state.incidents.get(&id) else { return Ok(()) };
            let c = &self.config;
            let events = decide(paging, &c.paging, &c.catalog, &c.schedules, self.clock.now());
            (events, paging.page_stream_version(), state.traces.get(&id).cloned())
        };
        if events.is_empty() {
            return Ok(());
        }
        let span = tracing::info_span!(parent: None, "paging.page", incident = %id, events = events.len());
        let traced = Traced::new(span, trace.as_deref());
        let expected = ExpectedVersion::exact_or_new(version);
        let appended = self
            .append(id, expected, &events, "paging.decide", version, traced.traceparent())
            .instrument(traced.span().clone())
            .await;
        match appended {
            Ok(last) => {
                traced.span().in_scope(|| {
                    for e in &events {
                        tracing::info!(incident = %id, "{}", e.summary());
                    }
                });
                self.state.lock().expect("state").in_flight.insert(id, last);
                Ok(())
            }
            // Someone else (an acknowledgement, a delivery) wrote first: the
            // fold will catch up and decide again.
            Err(Error::Log(klaxon_log::Error::WrongExpectedVersion { .. })) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Appends page events with ids derived from the stream version they
    /// were decided at, so the same decision is never written twice, and
    /// with the trace context they were decided in.
    async fn append(
        &self,
        id: IncidentId,
        expected: ExpectedVersion,
        events: &[PageEvent],
        reaction: &str,
        basis: u64,
        traceparent: Option<&str>,
    ) -> Result<Position, Error> {
        self.append_with(id, expected, events, None, reaction, basis, traceparent).await
    }

    /// Appends `events` to the incident's page stream with the given ids, or
    /// (`None`) ids derived from `reaction` and `basis`.
    #[allow(clippy::too_many_arguments)]
    async fn append_with(
        &self,
        id: IncidentId,
        expected: ExpectedVersion,
        events: &[PageEvent],
        ids: Option<Vec<Uuid>>,
        reaction: &str,
        basis: u64,
        traceparent: Option<&str>,
    ) -> Result<Position, Error> {
        let stream = StreamId::new(paging::stream(id)).expect("page streams are valid stream ids");
        let cause = Uuid::new_v5(&KLAXON_NAMESPACE, format!("{stream}@{basis}").as_bytes());
        let new = events
            .iter()
            .enumerate()
            .map(|(i, e)| {
                Ok(NewEvent {
                    id: match &ids {
                        Some(ids) => ids[i],
                        None => reaction_event_id(cause, reaction, i as u32),
                    },
                    kind: EventKind::new(e.kind()).expect("domain kinds are valid"),
                    data: EventData::from_value(&e.to_json())?,
                    metadata: Metadata {
                        actor: Some(e.by.to_string()),
                        correlation_id: Some(Uuid::new_v5(
                            &KLAXON_NAMESPACE,
                            klaxon_intake::stream_of(id).as_str().as_bytes(),
                        )),
                        traceparent: traceparent.map(str::to_owned),
                        ..Metadata::default()
                    },
                })
            })
            .collect::<Result<Vec<_>, klaxon_log::Error>>()?;
        Ok(self.log.append(&stream, expected, new).await?.last)
    }

    /// Starts delivering the incident's new pages, at most once at a time per page.
    fn start_deliveries(&self, id: IncidentId, limit: &Arc<Semaphore>, tasks: &mut tokio::task::JoinSet<()>) {
        if self.config.paging.channels().is_empty() {
            return;
        }
        let pages: Vec<(Page, String, Option<String>)> = {
            let mut state = self.state.lock().expect("state");
            let title = state.titles.get(&id).cloned().unwrap_or_default();
            let state = &mut *state;
            let Some(paging) = state.incidents.get(&id) else { return };
            if paging.status().is_none_or(|s| matches!(s, Status::Resolved | Status::Closed)) {
                return;
            }
            let due: Vec<Page> = paging::undelivered(paging)
                .into_iter()
                .filter(|p| p.acknowledged().is_none() && !state.delivering.contains(&p.id()))
                .cloned()
                .collect();
            for p in &due {
                state.delivering.insert(p.id());
            }
            let trace = |p: &Page| state.page_traces.get(&p.id()).or(state.traces.get(&id)).cloned();
            due.into_iter()
                .map(|p| {
                    let trace = trace(&p);
                    (p, title.clone(), trace)
                })
                .collect()
        };
        for (page, title, trace) in pages {
            let handle = self.clone();
            let limit = limit.clone();
            let span = tracing::info_span!(parent: None, "paging.deliver", page = %page.id());
            let traced = Traced::new(span, trace.as_deref());
            let span = traced.span().clone();
            tasks.spawn(
                async move {
                    let _permit = limit.acquire_owned().await;
                    // On success the page stays in `delivering` until its record is
                    // folded; otherwise a decision in between would see it still
                    // undelivered and deliver it again.
                    if let Err(e) = handle.deliver(&page, &title, traced.traceparent()).await {
                        tracing::error!(page = %page.id(), error = %e, "recording a page delivery failed");
                        handle.state.lock().expect("state").delivering.remove(&page.id());
                    }
                }
                .instrument(span),
            );
        }
    }

    /// Delivers one page through every paging channel and records each
    /// outcome, with the trace context `traceparent`.
    async fn deliver(&self, page: &Page, title: &str, traceparent: Option<&str>) -> Result<(), Error> {
        let id = page.id();
        let incident = id.incident();
        let severity = self.state.lock().expect("state").incidents.get(&incident).and_then(|s| s.severity());
        let severity_text = severity.map_or("-".to_string(), |s| s.to_string());
        let mut fields = BTreeMap::new();
        fields.insert("incident".into(), incident.to_string().into());
        fields.insert("page".into(), id.to_string().into());
        fields.insert("severity".into(), severity_text.clone().into());
        fields.insert("reason".into(), page.reason().as_str().into());
        if let Some(deadline) = page.deadline() {
            fields.insert("acknowledge_by".into(), deadline.to_rfc3339().into());
        }
        let notification = Notification {
            idempotency_key: id.to_string(),
            kind: "page".into(),
            title: format!("{severity_text} {incident}: {title}"),
            text: format!(
                "You are paged for {incident} ({}). Acknowledge with: klaxon ack {id}",
                page.reason().as_str()
            ),
            fields,
            recipient: Some(page.responder().to_string()),
            thread: None,
        };
        let mut events = Vec::new();
        for channel in self.config.paging.channels() {
            let now = self.clock.now();
            events.push(match self.config.channels.deliver(channel, &notification).await {
                Ok(d) => PageEvent::delivered(id, channel, d.attempts, now),
                Err(e) => {
                    tracing::warn!(page = %id, %channel, error = %e, "page delivery failed");
                    PageEvent::delivery_failed(id, channel, attempts_of(&e), &e.to_string(), now)
                }
            });
        }
        let basis = Uuid::new_v5(&KLAXON_NAMESPACE, id.to_string().as_bytes()).as_u128() as u64;
        self.append(incident, ExpectedVersion::Any, &events, "paging.delivery", basis, traceparent).await?;
        Ok(())
    }

    async fn caught_up(&self) -> Result<(), Error> {
        let head = self.log.head().await?;
        let mut applied = self.applied.subscribe();
        match tokio::time::timeout(CATCH_UP_WAIT, applied.wait_for(|p| *p >= head)).await {
            Ok(Ok(_)) => Ok(()),
            _ => Err(Error::Unavailable(format!("not caught up with position {head}"))),
        }
    }

    /// The service of the page's incident, for team-scope checks.
    pub async fn page_service(&self, page: PageId) -> Result<Option<ServiceName>, Error> {
        self.caught_up().await?;
        let state = self.state.lock().expect("state");
        let paging =
            state.incidents.get(&page.incident()).ok_or(AckError::UnknownPage { page, incident: page.incident() })?;
        Ok(paging.service().cloned())
    }

    /// Acknowledges a page as `actor`: only the paged responder or a
    /// configured manager. Returns the page afterwards and the position of
    /// the acknowledgement. A refused acknowledgement writes nothing.
    ///
    /// With a request `key`, the acknowledgement's event id comes from it:
    /// sent again (also after a restart), the first acknowledgement is found
    /// in the log and answered again (the page as it is now, the first
    /// position), and nothing is written.
    pub async fn acknowledge(
        &self,
        page: PageId,
        actor: &ActorId,
        key: Option<&RequestKey>,
    ) -> Result<(Page, Position), Error> {
        if let Some(first) = self.first_ack(page, key).await? {
            return Ok(first);
        }
        for _ in 0..ACK_ATTEMPTS_MAX {
            self.caught_up().await?;
            let (event, version, trace) = {
                let state = self.state.lock().expect("state");
                let Some(paging) = state.incidents.get(&page.incident()) else {
                    return Err(AckError::UnknownPage { page, incident: page.incident() }.into());
                };
                (
                    paging::acknowledge(paging, &page, actor, &self.config.paging, self.clock.now())?,
                    paging.page_stream_version(),
                    state.page_traces.get(&page).cloned(),
                )
            };
            let expected = ExpectedVersion::exact_or_new(version);
            let acks = std::slice::from_ref(&event);
            let ids = key.map(|k| vec![k.event_id(0)]);
            match self.append_with(page.incident(), expected, acks, ids, "paging.ack", version, trace.as_deref()).await
            {
                Ok(position) => return self.page_at(page, position).await,
                Err(Error::Log(klaxon_log::Error::WrongExpectedVersion { .. })) => {
                    // The same request, sent twice at once, may have won.
                    if let Some(first) = self.first_ack(page, key).await? {
                        return Ok(first);
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Err(Error::Unavailable("the page kept changing; retry".into()))
    }

    /// The acknowledgement written earlier under `key`, if any: the page as
    /// it is now and the acknowledgement's position. A key used for another
    /// page is refused.
    async fn first_ack(&self, page: PageId, key: Option<&RequestKey>) -> Result<Option<(Page, Position)>, Error> {
        let Some(key) = key else { return Ok(None) };
        let Some((position, _, _)) = self.log.locate(key.event_id(0)).await? else { return Ok(None) };
        let record = self.log.read_one(position).await?;
        let event = PageEvent::from_json(record.kind.as_str(), record.data.as_str())
            .map_err(|e| Error::Undecodable { position, reason: e.to_string() })?;
        match event.change {
            paging::PageChange::PageAcknowledged(ack) if ack.page == page => {
                Ok(Some(self.page_at(page, position).await?))
            }
            _ => Err(klaxon_domain::Error::InvalidField {
                field: "request_id",
                reason: format!("was already used for something other than acknowledging {page}"),
            }
            .into()),
        }
    }

    /// The page once the service has folded `position`, and `position`.
    async fn page_at(&self, page: PageId, position: Position) -> Result<(Page, Position), Error> {
        let mut applied = self.applied.subscribe();
        let _ = tokio::time::timeout(CATCH_UP_WAIT, applied.wait_for(|p| *p >= position)).await;
        let state = self.state.lock().expect("state");
        let found = state.incidents.get(&page.incident()).and_then(|s| s.page(&page)).cloned();
        found.map(|p| (p, position)).ok_or(Error::Unavailable("the acknowledgement was not folded".into()))
    }

    /// Who is on call on `schedule` (or every schedule) at `at` (or now).
    pub fn who_is_on_call(
        &self,
        schedule: Option<&str>,
        at: Option<DateTime<Utc>>,
    ) -> Result<Vec<(String, Option<klaxon_domain::oncall::OnCall>)>, Error> {
        let at = at.unwrap_or_else(|| self.clock.now());
        let schedules = &self.config.schedules;
        match schedule {
            Some(name) => {
                let s = schedules.get(name).ok_or_else(|| Error::UnknownSchedule(name.to_string()))?;
                Ok(vec![(name.to_string(), s.on_call_at(at))])
            }
            None => Ok(schedules.iter().map(|s| (s.name().to_string(), s.on_call_at(at))).collect()),
        }
    }

    /// The incident's pages, oldest first.
    pub async fn pages(&self, incident: IncidentId) -> Result<Vec<Page>, Error> {
        self.caught_up().await?;
        let state = self.state.lock().expect("state");
        let paging = state.incidents.get(&incident).ok_or(Error::NoPages(incident))?;
        let mut pages: Vec<Page> = paging.pages().cloned().collect();
        pages.sort_by_key(|p| p.id().number());
        Ok(pages)
    }

    /// How a page reached its responder, in words.
    pub fn delivery_of(page: &Page) -> &'static str {
        match page.delivery() {
            Delivery::Pending => "pending",
            Delivery::Delivered { .. } => "delivered",
            Delivery::Failed { .. } => "failed",
        }
    }
}

fn attempts_of(e: &klaxon_channels::Error) -> u32 {
    match e {
        klaxon_channels::Error::Exhausted { attempts, .. } => *attempts,
        _ => 1,
    }
}

/// `Exact(n)` for an existing stream, `NoStream` for a new one.
trait ExactOrNew {
    fn exact_or_new(version: u64) -> ExpectedVersion;
}

impl ExactOrNew for ExpectedVersion {
    fn exact_or_new(version: u64) -> ExpectedVersion {
        if version == 0 {
            ExpectedVersion::NoStream
        } else {
            ExpectedVersion::Exact(klaxon_log::StreamVersion(version))
        }
    }
}
