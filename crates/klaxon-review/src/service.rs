//! The review component.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use klaxon_bus::Bus;
use klaxon_domain::ids::{ActorId, IncidentId, ServiceName, reaction_event_id};
use klaxon_domain::incident::{Incident, IncidentEvent, evolve};
use klaxon_domain::paging::{self, PageEvent};
use klaxon_domain::review::{
    self, ActionItem, IncidentAsOf, IncidentFacts, IncidentMetrics, OPEN_REACTION, Review, ReviewCommand, ReviewEvent,
    TimelineEntry, TrendReport, decide_review, evolve_review, open_review,
};
use klaxon_log::{
    EventData, EventKind, ExpectedVersion, Metadata, NewEvent, Position, Record, StreamId, StreamVersion,
};
use klaxon_reactor::Clock;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// How long a request waits for the service to catch up with the log.
const CATCH_UP_WAIT: Duration = Duration::from_secs(5);

/// What can go wrong.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The domain refused (bad field, broken rule, unknown incident).
    #[error(transparent)]
    Domain(#[from] klaxon_domain::Error),
    /// The review changed since the command was decided; retry.
    #[error("the review of {0} changed meanwhile; retry")]
    Conflict(IncidentId),
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
    #[error("reviews are unavailable: {0}")]
    Unavailable(String),
}

/// Everything known about one incident.
#[derive(Default)]
struct Folded {
    incident: Option<Incident>,
    incident_events: Vec<IncidentEvent>,
    page_events: Vec<PageEvent>,
    review: Option<Review>,
}

/// The review service. Build it, take [`Handle`]s, then [`Reviews::run`].
pub struct Reviews {
    handle: Handle,
}

/// A cheap-to-clone handle: commands and queries.
#[derive(Clone)]
pub struct Handle {
    log: Bus,
    clock: Arc<dyn Clock>,
    state: Arc<RwLock<HashMap<IncidentId, Folded>>>,
    applied: watch::Sender<Position>,
}

impl Reviews {
    /// A review service over `log`.
    pub fn new(log: impl Into<Bus>, clock: Arc<dyn Clock>) -> Reviews {
        Reviews {
            handle: Handle {
                log: log.into(),
                clock,
                state: Default::default(),
                applied: watch::channel(Position::ZERO).0,
            },
        }
    }

    /// A handle to it.
    pub fn handle(&self) -> Handle {
        self.handle.clone()
    }

    /// Folds the log from position 1 and follows it until `shutdown`,
    /// opening reviews as incidents are resolved.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), Error> {
        let h = self.handle;
        let start_head = h.log.head().await?;
        // While replaying what was there at start, reviews to open are only
        // collected: most were opened long ago, which the replay shows a
        // little later. Only those still owed at the end are appended.
        let mut replaying = start_head > Position::ZERO;
        let mut owed: HashMap<IncidentId, (Uuid, ReviewEvent)> = HashMap::new();
        let mut subscription = h.log.subscribe(Position(1));
        loop {
            let record = tokio::select! {
                _ = shutdown.cancelled() => break,
                next = subscription.next() => match next {
                    None => break,
                    Some(record) => record?,
                },
            };
            let open = h.fold(&record)?;
            if replaying {
                if let Some(open) = open {
                    owed.insert(open.incident, (record.id, open));
                }
                if record.kind.as_str() == "review.opened.v1" {
                    if let Some(id) = record.stream.as_str().strip_prefix("review-").and_then(|n| n.parse().ok()) {
                        owed.remove(&id);
                    }
                }
            } else if let Some(open) = open {
                h.open(record.id, open).await?;
            }
            h.applied.send_replace(record.position);
            if replaying && record.position >= start_head {
                replaying = false;
                for (_, (cause, open)) in owed.drain() {
                    h.open(cause, open).await?;
                }
            }
        }
        Ok(())
    }
}

fn undecodable(position: Position, e: impl std::fmt::Display) -> Error {
    Error::Undecodable { position, reason: e.to_string() }
}

impl Handle {
    /// The last log position folded into this service's projection (for
    /// the consumer-lag metric).
    pub fn applied(&self) -> Position {
        *self.applied.borrow()
    }

    /// Folds one record; returns a review to open, if this record calls for one.
    fn fold(&self, record: &Record) -> Result<Option<ReviewEvent>, Error> {
        let kind = record.kind.as_str();
        let mut state = self.state.write().expect("state lock");
        if kind.starts_with("incident.") {
            let event =
                IncidentEvent::from_json(kind, record.data.as_str()).map_err(|e| undecodable(record.position, e))?;
            let folded = state.entry(event.incident).or_default();
            folded.incident = evolve(folded.incident.take(), &event);
            let open = folded.incident.as_ref().and_then(|i| open_review(i, &event, folded.review.as_ref()));
            folded.incident_events.push(event);
            Ok(open)
        } else if paging::KINDS.contains(&kind) && record.stream.as_str().starts_with("pages-") {
            let event =
                PageEvent::from_json(kind, record.data.as_str()).map_err(|e| undecodable(record.position, e))?;
            state.entry(event.incident).or_default().page_events.push(event);
            Ok(None)
        } else if kind == "notify.update_overdue.v1" {
            // The notifier's update-cadence breach counts as an SLO breach in
            // the metrics, like paging's ack and assign breaches.
            let event = klaxon_domain::notifier::NotifyEvent::from_json(kind, record.data.as_str())
                .map_err(|e| undecodable(record.position, e))?;
            if let klaxon_domain::notifier::NotifyChange::UpdateOverdue(o) = &event.change {
                let breach = PageEvent {
                    incident: event.incident,
                    at: event.at,
                    by: event.by.clone(),
                    change: paging::PageChange::SloBreached(paging::SloBreached {
                        slo: paging::SloKind::UpdateCadence,
                        due_at: o.due_at,
                    }),
                };
                state.entry(event.incident).or_default().page_events.push(breach);
            }
            Ok(None)
        } else if review::KINDS.contains(&kind) {
            let event =
                ReviewEvent::from_json(kind, record.data.as_str()).map_err(|e| undecodable(record.position, e))?;
            let folded = state.entry(event.incident).or_default();
            folded.review = evolve_review(folded.review.take(), &event);
            Ok(None)
        } else {
            Ok(None)
        }
    }

    /// Appends `review.opened.v1` for the resolution `cause`; its id comes
    /// from the cause, so a replay writes nothing twice.
    async fn open(&self, cause: Uuid, event: ReviewEvent) -> Result<(), Error> {
        let new = self.new_event(&event, reaction_event_id(cause, OPEN_REACTION, 0))?;
        let stream = StreamId::new(review::stream(event.incident)).expect("review streams are valid stream ids");
        match self.log.append(&stream, ExpectedVersion::Any, vec![new]).await {
            Ok(_) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    fn new_event(&self, event: &ReviewEvent, id: Uuid) -> Result<NewEvent, Error> {
        Ok(NewEvent {
            id,
            kind: EventKind::new(event.kind()).expect("domain kinds are valid"),
            data: EventData::from_value(&event.to_json())?,
            metadata: Metadata { actor: Some(event.by.to_string()), ..Metadata::default() },
        })
    }

    async fn caught_up(&self) -> Result<(), Error> {
        self.wait_for(self.log.head().await?).await
    }

    async fn wait_for(&self, position: Position) -> Result<(), Error> {
        let mut applied = self.applied.subscribe();
        match tokio::time::timeout(CATCH_UP_WAIT, applied.wait_for(|p| *p >= position)).await {
            Ok(Ok(_)) => Ok(()),
            _ => Err(Error::Unavailable(format!("not caught up with position {position}"))),
        }
    }

    fn unknown(id: IncidentId) -> Error {
        Error::Domain(klaxon_domain::Error::UnknownIncident(id))
    }

    /// Applies a review command as `actor`; returns the review afterwards.
    pub async fn edit(&self, id: IncidentId, command: ReviewCommand, actor: &ActorId) -> Result<Review, Error> {
        self.caught_up().await?;
        let (events, version) = {
            let state = self.state.read().expect("state lock");
            let folded = state.get(&id).ok_or_else(|| Self::unknown(id))?;
            let incident = folded.incident.as_ref().ok_or_else(|| Self::unknown(id))?;
            let events = decide_review(folded.review.as_ref(), &command, incident, actor, self.clock.now())?;
            (events, folded.review.as_ref().map_or(0, Review::version))
        };
        let new = events.iter().map(|e| self.new_event(e, Uuid::new_v4())).collect::<Result<Vec<_>, _>>()?;
        let stream = StreamId::new(review::stream(id)).expect("review streams are valid stream ids");
        let expected =
            if version == 0 { ExpectedVersion::NoStream } else { ExpectedVersion::Exact(StreamVersion(version)) };
        let appended = match self.log.append(&stream, expected, new).await {
            Ok(a) => a,
            Err(klaxon_log::Error::WrongExpectedVersion { .. }) => return Err(Error::Conflict(id)),
            Err(e) => return Err(e.into()),
        };
        self.wait_for(appended.last).await?;
        self.review(id).await?.ok_or_else(|| Error::Unavailable("the review was not folded".into()))
    }

    /// The incident's review, if one was opened.
    pub async fn review(&self, id: IncidentId) -> Result<Option<Review>, Error> {
        self.caught_up().await?;
        let state = self.state.read().expect("state lock");
        let folded = state.get(&id).filter(|f| f.incident.is_some()).ok_or_else(|| Self::unknown(id))?;
        Ok(folded.review.clone())
    }

    /// The records of the incident's three streams, in log order.
    async fn records(&self, id: IncidentId) -> Result<Vec<Record>, Error> {
        let mut records = Vec::new();
        for stream in [id.stream(), paging::stream(id), review::stream(id)] {
            let stream = StreamId::new(stream).expect("valid stream ids");
            records.extend(self.log.read_stream(&stream, StreamVersion(1), usize::MAX).await?);
        }
        records.sort_by_key(|r| r.position);
        Ok(records)
    }

    /// The incident's timeline, entirely or as of a moment, and with a
    /// moment, the incident's state exactly as it was then.
    pub async fn timeline(
        &self,
        id: IncidentId,
        as_of: Option<IncidentAsOf>,
    ) -> Result<(Vec<TimelineEntry>, Option<Incident>), Error> {
        self.caught_up().await?;
        let records = self.records(id).await?;
        if records.is_empty() {
            return Err(Self::unknown(id));
        }
        let triples = || records.iter().map(|r| (r.position.0, r.kind.as_str(), r.data.as_str()));
        let decode = |e: klaxon_domain::DecodeError| Error::Unavailable(format!("a record does not decode: {e}"));
        match as_of {
            None => Ok((review::timeline(triples()).map_err(decode)?, None)),
            Some(moment) => {
                let entries = review::timeline_as_of(triples(), moment).map_err(decode)?;
                let state = review::as_of(triples(), moment).map_err(decode)?;
                Ok((entries, state))
            }
        }
    }

    /// The incident's metrics.
    pub async fn metrics(&self, id: IncidentId) -> Result<IncidentMetrics, Error> {
        self.caught_up().await?;
        let state = self.state.read().expect("state lock");
        let folded = state.get(&id).filter(|f| f.incident.is_some()).ok_or_else(|| Self::unknown(id))?;
        Ok(IncidentMetrics::compute(&folded.incident_events, &folded.page_events))
    }

    /// The service of the incident, for team-scope checks.
    pub async fn incident_service(&self, id: IncidentId) -> Result<Option<ServiceName>, Error> {
        self.caught_up().await?;
        let state = self.state.read().expect("state lock");
        let incident = state.get(&id).and_then(|f| f.incident.as_ref()).ok_or_else(|| Self::unknown(id))?;
        Ok(incident.service().cloned())
    }

    /// Every action item (only open ones with `open_only`), by incident.
    pub async fn action_items(&self, open_only: bool) -> Result<Vec<ActionItem>, Error> {
        self.caught_up().await?;
        let state = self.state.read().expect("state lock");
        let mut items: Vec<ActionItem> = state
            .values()
            .filter_map(|f| f.review.as_ref())
            .flat_map(|r| r.action_items().cloned().collect::<Vec<_>>())
            .filter(|i| !open_only || !i.is_completed())
            .collect();
        items.sort_by_key(|i| i.id());
        Ok(items)
    }

    /// The postmortem in Markdown.
    pub async fn markdown(&self, id: IncidentId) -> Result<String, Error> {
        let (timeline, _) = self.timeline(id, None).await?;
        let state = self.state.read().expect("state lock");
        let folded = state.get(&id).ok_or_else(|| Self::unknown(id))?;
        let incident = folded.incident.as_ref().ok_or_else(|| Self::unknown(id))?;
        let metrics = IncidentMetrics::compute(&folded.incident_events, &folded.page_events);
        Ok(review::render_markdown(incident, folded.review.as_ref(), &timeline, &metrics, &folded.page_events))
    }

    /// The trend report of incidents first reported in `[from, to)`.
    pub async fn trends(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<TrendReport, Error> {
        self.caught_up().await?;
        let state = self.state.read().expect("state lock");
        let facts: Vec<IncidentFacts> = state
            .values()
            .filter_map(|f| {
                let incident = f.incident.as_ref()?;
                Some(IncidentFacts::new(incident, IncidentMetrics::compute(&f.incident_events, &f.page_events)))
            })
            .collect();
        Ok(TrendReport::compute(&facts, from, to))
    }
}
