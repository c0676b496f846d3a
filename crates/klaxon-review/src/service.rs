//! The review component: its fold and decision (opening reviews), run by
//! the reactor shell, and the commands and queries of its handle.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use klaxon_bus::Bus;
use klaxon_domain::audit;
use klaxon_domain::catalog::ServiceCatalog;
use klaxon_domain::ids::{ActorId, IncidentId, RequestKey, ServiceName};
use klaxon_domain::incident::{Incident, Status};
use klaxon_domain::review::{
    self, ActionItem, Dossier, IncidentAsOf, IncidentFacts, IncidentMetrics, OPEN_REACTION, Review, ReviewCommand,
    ReviewEvent, TimelineEntry, TrendFilter, TrendReport, TrendSummary, decide_review,
};
use klaxon_log::{EventData, EventKind, ExpectedVersion, Metadata, NewEvent, Record, StreamVersion};
use klaxon_reactor::{Append, Cause, Clock, Decoded, Effect, Ids, Reactor, streams};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// What can go wrong.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The domain refused (bad field, broken rule, unknown incident).
    #[error(transparent)]
    Domain(#[from] klaxon_domain::Error),
    /// The review is not at the version the edit was based on (the
    /// client's expected version, or the one decided on when another edit
    /// came first). Nothing was written.
    #[error("the review of {incident} is at version {current}, not {expected}; reload it and retry")]
    Conflict {
        /// The incident.
        incident: IncidentId,
        /// The version the edit was based on.
        expected: u64,
        /// The review's current version.
        current: u64,
    },
    /// The log failed, a stored event does not decode, or the service is
    /// stopping or not keeping up.
    #[error(transparent)]
    Reactor(#[from] klaxon_reactor::Error),
}

impl klaxon_domain::class::Classify for Error {
    fn class(&self) -> klaxon_domain::class::Class {
        use klaxon_domain::class::Class;
        match self {
            Error::Domain(e) => e.class(),
            Error::Conflict { .. } => Class::Conflict,
            Error::Reactor(e) => e.class(),
        }
    }

    /// The review's current version, for a conflict.
    fn current_version(&self) -> Option<u64> {
        match self {
            Error::Conflict { current, .. } => Some(*current),
            Error::Reactor(e) => klaxon_domain::class::Classify::current_version(e),
            Error::Domain(_) => None,
        }
    }
}

impl From<klaxon_log::Error> for Error {
    fn from(e: klaxon_log::Error) -> Error {
        Error::Reactor(e.into())
    }
}

/// The review service. Build it, take [`Handle`]s, then [`Reviews::run`].
pub struct Reviews {
    reactor: Reactor<Reviewing>,
}

/// A cheap-to-clone handle: commands and queries.
#[derive(Clone)]
pub struct Handle {
    reactor: klaxon_reactor::Handle<Reviewing>,
}

/// The review service as the shell runs it, with the service catalog that
/// gives trend reports each service's team.
pub struct Reviewing {
    catalog: Arc<ServiceCatalog>,
}

/// What the review service folds: every incident's [`Dossier`], and the
/// small [`TrendSummary`] trends are computed from (so a dossier may be
/// dropped from memory without losing the incident's trends).
#[derive(Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct State {
    dossiers: HashMap<IncidentId, Dossier>,
    summaries: HashMap<IncidentId, TrendSummary>,
    /// The time of each incident's latest event (when a finished one's
    /// dossier may leave memory).
    #[serde(default)]
    latest: HashMap<IncidentId, DateTime<Utc>>,
}

impl klaxon_reactor::Service for Reviewing {
    type State = State;
    type Then = ();
    const NAME: &'static str = "reviews";
    /// 2: each incident's latest event time (for eviction).
    const SCHEMA: u32 = 2;

    fn fold(&self, state: &mut State, record: &Record) -> Result<Option<IncidentId>, klaxon_reactor::Error> {
        let (id, at) = match Decoded::of(record)? {
            Decoded::Incident(event) => {
                let dossier = state.dossiers.entry(event.incident).or_default();
                dossier.apply_incident(record.id, &event);
                if let Some(incident) = dossier.incident() {
                    state.summaries.entry(event.incident).or_default().incident(&event, incident);
                }
                (event.incident, event.at)
            }
            Decoded::Page(event) => {
                state.dossiers.entry(event.incident).or_default().apply_page(&event);
                state.summaries.entry(event.incident).or_default().page(&event);
                (event.incident, event.at)
            }
            Decoded::Notify(event) => {
                state.dossiers.entry(event.incident).or_default().apply_notify(&event);
                if let Some(breach) = review::cadence_breach(&event) {
                    state.summaries.entry(event.incident).or_default().page(&breach);
                }
                (event.incident, event.at)
            }
            Decoded::Review(event) => {
                state.dossiers.entry(event.incident).or_default().apply_review(&event);
                (event.incident, event.at)
            }
            Decoded::Other => return Ok(None),
        };
        klaxon_reactor::note_latest(&mut state.latest, id, at);
        Ok(Some(id))
    }

    /// A resolved or closed incident whose review has no open action item
    /// (those are still work, listed by [`Handle::action_items`]) is
    /// finished since its latest event.
    fn retired_since(&self, state: &State, id: IncidentId) -> Option<DateTime<Utc>> {
        let dossier = state.dossiers.get(&id)?;
        let finished = matches!(dossier.incident()?.status(), Status::Resolved | Status::Closed)
            && dossier.review().is_none_or(|r| r.action_items().all(ActionItem::is_completed));
        finished.then(|| state.latest.get(&id).copied())?
    }

    /// Its dossier goes; its trend summary stays (trends count it).
    fn evict(&self, state: &mut State, id: IncidentId) {
        state.dossiers.remove(&id);
        state.latest.remove(&id);
    }

    /// The dossier comes back; `from`'s summary is not taken (the state
    /// kept its own, which counted every record once).
    fn adopt(&self, state: &mut State, from: State, id: IncidentId) {
        state.dossiers.extend(from.dossiers.into_iter().filter(|(i, _)| *i == id));
        state.latest.extend(from.latest.into_iter().filter(|(i, _)| *i == id));
    }

    /// The review a resolution owes, appended with an id derived from the
    /// resolution's record, so a replay opens nothing twice.
    fn decide(&self, state: &State, id: IncidentId, _cause: &Cause, _now: DateTime<Utc>) -> Vec<Effect<()>> {
        let Some((resolution, open)) = state.dossiers.get(&id).and_then(Dossier::to_open) else { return Vec::new() };
        let ids = Ids::caused_by(resolution, OPEN_REACTION);
        let append = Append::new(streams::review(id), ExpectedVersion::Any, std::slice::from_ref(open), ids);
        vec![Effect::Append(append.caused_by(resolution))]
    }
}

impl Reviews {
    /// A review service over `log`; trend reports take each service's team
    /// from `catalog`.
    pub fn new(log: impl Into<Bus>, catalog: Arc<ServiceCatalog>, clock: Arc<dyn Clock>) -> Reviews {
        Reviews { reactor: Reactor::new(log, Reviewing { catalog }, clock) }
    }

    /// Saves its state to `file` every `every` records and at a clean
    /// stop, and resumes from it at start (see `klaxon_reactor::snapshot`).
    /// Call before taking a handle.
    pub fn with_snapshots(self, file: klaxon_reactor::SnapshotFile, every: std::num::NonZeroU64) -> Reviews {
        Reviews { reactor: self.reactor.with_snapshots(file, every) }
    }

    /// Evicts a finished incident's dossier from memory `after` its latest
    /// event, and reads it back from the log when a record about it
    /// arrives (see `klaxon_reactor::Reactor::with_eviction`). Call before
    /// taking a handle.
    pub fn with_eviction(self, after: std::time::Duration) -> Reviews {
        Reviews { reactor: self.reactor.with_eviction(after) }
    }

    /// A handle to it.
    pub fn handle(&self) -> Handle {
        Handle { reactor: self.reactor.handle() }
    }

    /// Folds the log from position 1 and follows it until `shutdown`,
    /// opening reviews as incidents are resolved.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), Error> {
        Ok(self.reactor.run(shutdown).await?)
    }
}

impl Handle {
    /// Where the service is in the log (for metrics and the barrier).
    pub fn reactor(&self) -> &klaxon_reactor::Handle<Reviewing> {
        &self.reactor
    }

    fn new_event(&self, event: &ReviewEvent, id: Uuid) -> Result<NewEvent, Error> {
        Ok(NewEvent {
            id,
            kind: EventKind::new(event.kind()).expect("domain kinds are valid"),
            data: EventData::from_value(&event.to_json())?,
            metadata: Metadata { actor: Some(event.by.to_string()), ..Metadata::default() },
        })
    }

    fn unknown(id: IncidentId) -> Error {
        Error::Domain(klaxon_domain::Error::UnknownIncident(id))
    }

    /// Reads the incident's dossier (caught up with the log's head): the
    /// one the state holds, else (an incident evicted from memory, or one
    /// never seen) the one its streams in the log fold to; or says the
    /// incident is unknown.
    async fn with_dossier<T>(&self, id: IncidentId, f: impl FnOnce(&Dossier, &Incident) -> T) -> Result<T, Error> {
        self.reactor.caught_up().await?;
        // An evicted incident's dossier is read back from the log.
        self.reactor
            .read_incident(id, |state| {
                let dossier = state.dossiers.get(&id).ok_or_else(|| Self::unknown(id))?;
                let incident = dossier.incident().ok_or_else(|| Self::unknown(id))?;
                Ok(f(dossier, incident))
            })
            .await?
    }

    /// The incident's dossier as the service holds it, or as its streams
    /// in the log fold to when the state does not hold it (caught up with
    /// the log's head); an unknown incident's is empty.
    pub async fn dossier(&self, id: IncidentId) -> Result<Dossier, Error> {
        self.reactor.caught_up().await?;
        match self.reactor.read(|state| state.dossiers.get(&id).cloned()) {
            Some(dossier) => Ok(dossier),
            None => self.dossier_from_log(id).await,
        }
    }

    /// The incident's dossier folded from the log alone: its incident,
    /// pages, notify and review streams (one index lookup each), in log
    /// order, through the service's own fold into a temporary state. What
    /// queries read for an incident the state no longer holds; equal to
    /// the held dossier of an incident it holds.
    pub async fn dossier_from_log(&self, id: IncidentId) -> Result<Dossier, Error> {
        Ok(self.reactor.read_back(id).await?.dossiers.remove(&id).unwrap_or_default())
    }

    /// Applies a review command as `actor`; returns the review afterwards.
    ///
    /// With a request `key`, the edit's event ids come from it: sent again
    /// (also after a restart), the first edit is found in the log, nothing
    /// is written, and the review is returned as it is. With an
    /// `expected_version` (the review's version the edit was based on), a
    /// review at another version is [`Error::Conflict`].
    pub async fn edit(
        &self,
        id: IncidentId,
        command: ReviewCommand,
        actor: &ActorId,
        key: Option<&RequestKey>,
        expected_version: Option<u64>,
    ) -> Result<Review, Error> {
        self.reactor.caught_up().await?;
        if let Some(first) = self.first_edit(id, key).await? {
            return Ok(first);
        }
        let now = self.reactor.now();
        let (events, version) = self
            .with_dossier(id, |dossier, incident| {
                let review = dossier.review();
                let version = review.map_or(0, Review::version);
                if let Some(expected) = expected_version.filter(|e| *e != version) {
                    return Err(Error::Conflict { incident: id, expected, current: version });
                }
                Ok((decide_review(review, &command, incident, actor, now)?, version))
            })
            .await??;
        let new = events
            .iter()
            .enumerate()
            .map(|(i, e)| self.new_event(e, key.map_or_else(Uuid::new_v4, |k| k.event_id(i as u32))))
            .collect::<Result<Vec<_>, _>>()?;
        let stream = streams::review(id);
        let expected =
            if version == 0 { ExpectedVersion::NoStream } else { ExpectedVersion::Exact(StreamVersion(version)) };
        let appended = match self.reactor.bus().append(&stream, expected, new).await {
            Ok(a) => a,
            Err(klaxon_log::Error::WrongExpectedVersion { actual, .. }) => {
                // The same request, sent twice at once, may have won.
                if let Some(first) = self.first_edit(id, key).await? {
                    return Ok(first);
                }
                return Err(Error::Conflict { incident: id, expected: version, current: actual.0 });
            }
            Err(e) => return Err(e.into()),
        };
        self.reactor.wait_applied(appended.last).await?;
        self.review(id).await?.ok_or_else(|| {
            klaxon_reactor::Error::Unavailable { service: "reviews", reason: "the review was not folded".into() }.into()
        })
    }

    /// The review as it is, when an edit was written earlier under `key`;
    /// a key used for another incident's review is refused.
    async fn first_edit(&self, id: IncidentId, key: Option<&RequestKey>) -> Result<Option<Review>, Error> {
        let Some(key) = key else { return Ok(None) };
        let Some((position, stream, _)) = self.reactor.bus().locate(key.event_id(0)).await? else {
            return Ok(None);
        };
        if stream != streams::review(id) {
            return Err(klaxon_domain::Error::InvalidField {
                field: "context.request_id",
                reason: format!("was already used for an edit of another review than {id}'s"),
            }
            .into());
        }
        self.reactor.wait_applied(position).await?;
        self.review(id).await
    }

    /// The incident's review, if one was opened.
    pub async fn review(&self, id: IncidentId) -> Result<Option<Review>, Error> {
        self.with_dossier(id, |dossier, _| dossier.review().cloned()).await
    }

    /// The records of the incident's three streams, in log order.
    async fn records(&self, id: IncidentId) -> Result<Vec<Record>, Error> {
        let mut records = Vec::new();
        for stream in [streams::incident(id), streams::pages(id), streams::review(id)] {
            records.extend(self.reactor.bus().read_stream(&stream, StreamVersion(1), usize::MAX).await?);
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
        self.reactor.caught_up().await?;
        let records = self.records(id).await?;
        if records.is_empty() {
            return Err(Self::unknown(id));
        }
        let triples = || records.iter().map(|r| (r.position.0, r.kind.as_str(), r.data.as_str()));
        let decode = |e: klaxon_domain::DecodeError| {
            let reason = format!("a record does not decode: {e}");
            Error::Reactor(klaxon_reactor::Error::Unavailable { service: "reviews", reason })
        };
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
        self.with_dossier(id, |d, _| IncidentMetrics::compute(d.incident_events(), d.page_events())).await
    }

    /// The service of the incident, for team-scope checks.
    pub async fn incident_service(&self, id: IncidentId) -> Result<Option<ServiceName>, Error> {
        self.with_dossier(id, |_, incident| incident.service().cloned()).await
    }

    /// Every action item (only open ones with `open_only`), by incident.
    /// Reviews of incidents the state no longer holds (every incident has
    /// a trend summary, held or not) are read from their review streams:
    /// one index lookup per such incident, and a read of those that have a
    /// review.
    pub async fn action_items(&self, open_only: bool) -> Result<Vec<ActionItem>, Error> {
        self.reactor.caught_up().await?;
        let (mut items, not_held): (Vec<ActionItem>, Vec<IncidentId>) = self.reactor.read(|state| {
            let items = state
                .dossiers
                .values()
                .filter_map(Dossier::review)
                .flat_map(|r| r.action_items().cloned().collect::<Vec<_>>())
                .filter(|i| !open_only || !i.is_completed())
                .collect();
            let not_held = state.summaries.keys().filter(|id| !state.dossiers.contains_key(id)).copied().collect();
            (items, not_held)
        });
        let bus = self.reactor.bus();
        for id in not_held {
            let stream = streams::review(id);
            if bus.stream_version(&stream).await? == StreamVersion(0) {
                continue;
            }
            let mut dossier = Dossier::default();
            for record in bus.read_stream(&stream, StreamVersion(1), usize::MAX).await? {
                if let Decoded::Review(event) = Decoded::of(&record)? {
                    dossier.apply_review(&event);
                }
            }
            let review = dossier.review().into_iter();
            items.extend(review.flat_map(Review::action_items).filter(|i| !open_only || !i.is_completed()).cloned());
        }
        items.sort_by_key(|i| i.id());
        Ok(items)
    }

    /// The postmortem in Markdown.
    pub async fn markdown(&self, id: IncidentId) -> Result<String, Error> {
        let (timeline, _) = self.timeline(id, None).await?;
        self.with_dossier(id, |d, incident| {
            let metrics = IncidentMetrics::compute(d.incident_events(), d.page_events());
            review::render_markdown(incident, d.review(), &timeline, &metrics, d.page_events())
        })
        .await
    }

    /// The trend report of incidents first reported in `[from, to)` that
    /// pass `filter`. A team the catalog does not know is refused (field
    /// `team`): it would only ever report zero.
    pub async fn trends(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        filter: &TrendFilter,
    ) -> Result<TrendReport, Error> {
        let catalog = &self.reactor.service().catalog;
        if let Some(team) = filter.team.as_ref().filter(|t| !catalog.services().any(|s| s.team() == t.as_str())) {
            return Err(klaxon_domain::Error::InvalidField {
                field: "team",
                reason: format!("{team:?} is no team of any service in the catalog"),
            }
            .into());
        }
        self.reactor.caught_up().await?;
        let facts: Vec<IncidentFacts> = self
            .reactor
            .read(|state| state.summaries.iter().filter_map(|(id, summary)| summary.facts(*id, catalog)).collect());
        Ok(TrendReport::compute(&facts, from, to, filter))
    }

    /// One page of the audit trail: the records after position `after`
    /// that pass `filter`, at most `limit`, and the position to go on
    /// after (none once the head is reached). It reads the log in pages of
    /// [`AUDIT_READ`] records and looks at no more than [`AUDIT_SCAN_MAX`]
    /// records per call, so a narrow filter over a long log answers in
    /// bounded time and memory with an empty page and a `next`.
    pub async fn audit(
        &self,
        filter: &audit::Filter,
        after: u64,
        limit: usize,
    ) -> Result<(Vec<AuditEntry>, Option<u64>), Error> {
        let bus = self.reactor.bus();
        let head = bus.head().await?.0;
        let (mut entries, mut last, mut scanned) = (Vec::new(), after, 0);
        while last < head && entries.len() < limit && scanned < AUDIT_SCAN_MAX {
            let records = bus.read_all(klaxon_log::Position(last + 1), AUDIT_READ).await?;
            if records.is_empty() {
                break;
            }
            for record in records {
                if entries.len() == limit {
                    break;
                }
                last = record.position.0;
                scanned += 1;
                let actor = audit::actor_of(record.metadata.actor.as_deref(), record.data.as_str());
                if filter.admits(&actor, record.recorded_at, record.kind.as_str()) {
                    entries.push(AuditEntry {
                        position: record.position.0,
                        at: record.recorded_at,
                        summary: audit::summary(record.kind.as_str(), record.stream.as_str(), record.data.as_str()),
                        actor,
                        kind: record.kind.as_str().to_owned(),
                        stream: record.stream.as_str().to_owned(),
                    });
                }
            }
        }
        Ok((entries, (last < head).then_some(last)))
    }
}

/// Records read from the log at once by [`Handle::audit`].
pub const AUDIT_READ: usize = 256;
/// Records [`Handle::audit`] looks at per call, at most.
pub const AUDIT_SCAN_MAX: usize = 10_000;

/// One line of the audit trail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditEntry {
    /// The record's log position.
    pub position: u64,
    /// When the log wrote it.
    pub at: DateTime<Utc>,
    /// Who.
    pub actor: String,
    /// Its kind.
    pub kind: String,
    /// Its stream.
    pub stream: String,
    /// One readable line.
    pub summary: String,
}
