//! The paging component: its fold and decision, run by the reactor shell,
//! and the acknowledgements and queries of its handle.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use klaxon_bus::{Bus, SharedRecord};
use klaxon_channels::Channels;
use klaxon_domain::audit::{self, ConfigApplied};
use klaxon_domain::catalog::ServiceCatalog;
use klaxon_domain::ids::{ActorId, IncidentId, KLAXON_NAMESPACE, RequestKey, ServiceName, Severity};
use klaxon_domain::incident::Status;
use klaxon_domain::oncall::roster::{self, Acting, RosterCommand, RosterError, RosterEvent, Rosters};
use klaxon_domain::oncall::{Schedules, Span};
use klaxon_domain::outbox::Receipt;
use klaxon_domain::paging::{
    self, AckError, Delivery, IncidentPaging, Page, PageChange, PageDelivery, PageId, PagingConfig,
};
use klaxon_log::{ExpectedVersion, Position, Record, StreamVersion};
use klaxon_reactor::{Append, Cause, Clock, Deliver, Effect, Ids, Live, Reactor, Trace, decode, streams};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Attempts of an acknowledgement that races with the service's own appends.
const ACK_ATTEMPTS_MAX: usize = 5;

/// What can go wrong.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The acknowledgement is not allowed (unknown page, someone else's, …).
    #[error(transparent)]
    Ack(#[from] AckError),
    /// No such schedule: its name, and what the configuration has instead
    /// (see [`unknown_schedule`]).
    #[error("unknown schedule {0:?}; {1}")]
    UnknownSchedule(String, String),
    /// No such incident: paging has never seen it (an incident it has seen
    /// lists its pages, none or more, and refuses a page it lacks as
    /// [`AckError::UnknownPage`]). Said as the other services say it.
    #[error("unknown incident {0}")]
    NoPages(IncidentId),
    /// The log failed, a stored event does not decode, or the service is
    /// stopping or not keeping up.
    #[error(transparent)]
    Reactor(#[from] klaxon_reactor::Error),
    /// A request field is malformed (the request id). Nothing was written.
    #[error(transparent)]
    Request(#[from] klaxon_domain::Error),
    /// A schedule change was refused. Nothing was written.
    #[error(transparent)]
    Roster(#[from] RosterError),
}

/// The error for a schedule name the configuration lacks, naming the ones
/// it has: a typo is seen at once.
fn unknown_schedule(name: &str, schedules: &klaxon_domain::oncall::Schedules) -> Error {
    Error::UnknownSchedule(name.to_owned(), klaxon_domain::text::known("schedules", schedules.iter().map(|s| s.name())))
}

impl klaxon_domain::class::Classify for Error {
    fn class(&self) -> klaxon_domain::class::Class {
        use klaxon_domain::class::Class;
        match self {
            Error::Ack(e) => e.class(),
            Error::UnknownSchedule(..) | Error::NoPages(_) => Class::NotFound,
            Error::Reactor(e) => e.class(),
            Error::Request(e) => e.class(),
            Error::Roster(e) => e.class(),
        }
    }
}

/// Everything paging decides with, validated by the binary.
///
/// The pager reads it through a [`Live`] view ([`Pager::new`] takes either),
/// once per fold or decision, so a configuration reload applies to the
/// next decision: the policies of new episodes (an episode in flight keeps
/// the policy its first event recorded), the SLOs, the duty manager, the
/// managers, the schedules, the catalog and the channels pages go through.
/// The paging severities in `paging` apply only until the log records a
/// configuration (`config.applied.v1`, which a reload writes): from then
/// on paging folds them from the log, so an open incident starts or stops
/// paging at the record, the same in every replica and in a rebuild.
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
    reactor: Reactor<Paging>,
}

/// A cheap-to-clone handle: acknowledgements and queries.
#[derive(Clone)]
pub struct Handle {
    reactor: klaxon_reactor::Handle<Paging>,
}

/// Paging as the shell runs it.
pub struct Paging {
    config: Live<PagerConfig>,
    /// A deliberately broken fold (the simulation's, see `crate::broken`).
    #[cfg(feature = "sim-variants")]
    broken: Option<crate::broken::Broken>,
}

impl From<PagerConfig> for Live<PagerConfig> {
    fn from(config: PagerConfig) -> Live<PagerConfig> {
        Live::new(Arc::new(config))
    }
}

/// The channels of the configuration in force at each delivery, as the
/// pager's outbox: a reload that changes `[[channels]]` applies to the next
/// delivery.
struct LiveChannels(Live<PagerConfig>);

impl klaxon_domain::outbox::Outbox for LiveChannels {
    fn deliver<'a>(
        &'a self,
        channel: &'a str,
        message: &'a klaxon_domain::outbox::Message,
    ) -> std::pin::Pin<Box<dyn Future<Output = klaxon_domain::outbox::Outcome> + Send + 'a>> {
        let channels = self.0.get().channels.clone();
        Box::pin(async move { klaxon_domain::outbox::Outbox::deliver(&*channels, channel, message).await })
    }
}

/// What paging folds from the log.
#[derive(Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct State {
    incidents: HashMap<IncidentId, IncidentPaging>,
    /// The trace context of each incident: the W3C traceparent of its
    /// latest incident event that carried one (for a new Sev-1, the severity
    /// assessment). A decision's `paging.page` span is its child.
    traces: HashMap<IncidentId, String>,
    /// The trace context each page was decided in (its `page.responder_paged`
    /// record's): the parent of its delivery's `paging.deliver` span.
    page_traces: HashMap<PageId, String>,
    /// The time of each incident's latest event (when a finished one may
    /// leave memory).
    latest: HashMap<IncidentId, DateTime<Utc>>,
    /// Paging events folded so far, by what they record (for metrics).
    /// Kept when an incident is evicted, and not taken back when it is
    /// read back from the log: each record is counted once.
    counts: Counts,
    /// The overrides and swaps of every schedule's stream.
    rosters: Rosters,
    /// The configured schedules with `rosters` applied, computed when
    /// first asked for after a schedule event (until there is one the
    /// configured ones apply), beside the configured schedules it was
    /// computed from. Not in snapshots: it is derived from `rosters` and
    /// the configuration.
    #[serde(skip)]
    effective: std::sync::OnceLock<(Arc<Schedules>, Arc<Schedules>)>,
    /// The paging severities of the configuration the log recorded last
    /// (`config.applied.v1` with a `[paging]` table), or `None` before
    /// the log recorded one: the configured severities apply then. Each
    /// incident is folded with the severities in force at each position.
    #[serde(default)]
    severities: Option<BTreeSet<Severity>>,
    /// The hash of that configuration (what a stopped episode names).
    #[serde(default)]
    config_hash: Option<String>,
}

impl State {
    /// The schedules in force: `configured` with the overrides and swaps
    /// of the schedules' streams applied.
    fn schedules(&self, configured: &Arc<Schedules>) -> Arc<Schedules> {
        if self.rosters.is_empty() {
            return configured.clone();
        }
        let (from, effective) =
            self.effective.get_or_init(|| (configured.clone(), Arc::new(self.rosters.effective(configured))));
        if Arc::ptr_eq(from, configured) {
            return effective.clone();
        }
        // The schedules were reloaded since: computed afresh (cached again
        // from the next schedule event on).
        Arc::new(self.rosters.effective(configured))
    }
}

/// How many pages were delivered, acknowledged and escalated, and how many
/// SLO breaches were recorded, counted from the log (so they are the same
/// after a restart).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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

impl State {
    /// The paging state of an incident paging has not folded anything of
    /// yet: paging at the severities the log recorded last, else at the
    /// configured ones.
    fn fresh(&self, incident: IncidentId, config: &PagingConfig) -> IncidentPaging {
        match &self.severities {
            Some(severities) => IncidentPaging::with_severities(incident, severities),
            None => IncidentPaging::new(incident, config),
        }
    }

    /// Folds a recorded configuration: when its paging severities differ
    /// from those in force, every incident takes them as of the record
    /// (an open one starts or stops paging there). Returns whether they
    /// changed.
    fn configure(&mut self, record: &Record) -> Result<bool, klaxon_reactor::Error> {
        let undecodable = |reason: String| klaxon_reactor::Error::Undecodable { position: record.position, reason };
        let applied: ConfigApplied =
            serde_json::from_str(record.data.as_str()).map_err(|e| undecodable(e.to_string()))?;
        let Some(severities) = paging::recorded_severities(&applied.config).map_err(|e| undecodable(e.to_string()))?
        else {
            return Ok(false);
        };
        if self.severities.as_ref() == Some(&severities) {
            return Ok(false);
        }
        for incident in self.incidents.values_mut() {
            incident.set_paging_severities(&severities, &applied.hash, record.recorded_at);
        }
        self.severities = Some(severities);
        self.config_hash = Some(applied.hash);
        Ok(true)
    }

    /// Each incident's paging state as folded so far (the simulation
    /// compares it with a rebuild from the log).
    pub fn incidents(&self) -> &HashMap<IncidentId, IncidentPaging> {
        &self.incidents
    }

    /// Paging events folded so far, by kind.
    pub fn counts(&self) -> Counts {
        self.counts
    }
}

impl Paging {
    /// Paging with `config` (fixed, or a [`Live`] view), as [`Pager`] runs
    /// it: for a shell built by hand (the simulation, `klaxon-sim`) and for
    /// rebuilding the projection from the log with
    /// [`klaxon_reactor::Service::fold`].
    pub fn new(config: impl Into<Live<PagerConfig>>) -> Paging {
        Paging {
            config: config.into(),
            #[cfg(feature = "sim-variants")]
            broken: None,
        }
    }

    /// The fold: a schedule event into the rosters, an incident or page
    /// event into its incident's paging state.
    fn fold_once(&self, state: &mut State, record: &SharedRecord) -> Result<Option<IncidentId>, klaxon_reactor::Error> {
        let config = &self.config.get().paging;
        if record.kind.as_str() == audit::CONFIG_APPLIED && record.stream.as_str() == audit::CONFIG_STREAM {
            state.configure(record)?;
            return Ok(None);
        }
        if let Some(event) = decode::roster(record)? {
            state.rosters.evolve(&event);
            state.effective = std::sync::OnceLock::new();
            return Ok(None);
        }
        if let Some(event) = decode::shared_incident(record)? {
            if let Some(traceparent) = &record.metadata.traceparent {
                state.traces.insert(event.incident, traceparent.clone());
            }
            if !state.incidents.contains_key(&event.incident) {
                let fresh = state.fresh(event.incident, config);
                state.incidents.insert(event.incident, fresh);
            }
            state.incidents.get_mut(&event.incident).expect("inserted above").apply_incident(event);
            klaxon_reactor::note_latest(&mut state.latest, event.incident, event.at);
            return Ok(Some(event.incident));
        }
        let Some(event) = decode::shared_event::<PageChange>(record)? else { return Ok(None) };
        let counts = &mut state.counts;
        match &event.change {
            PageChange::PageDelivered(_) => counts.delivered += 1,
            PageChange::PageDeliveryFailed(_) => counts.delivery_failed += 1,
            PageChange::PageAcknowledged(_) => counts.acknowledged += 1,
            PageChange::PageEscalated(_) => counts.escalated += 1,
            PageChange::SloBreached(_) => counts.slo_breaches += 1,
            PageChange::ResponderPaged(p) => {
                if let Some(traceparent) = &record.metadata.traceparent {
                    state.page_traces.insert(p.page, traceparent.clone());
                }
            }
            PageChange::AckTimedOut(_) | PageChange::PagingStopped(_) => {}
        }
        if !state.incidents.contains_key(&event.incident) {
            let fresh = state.fresh(event.incident, config);
            state.incidents.insert(event.incident, fresh);
        }
        state.incidents.get_mut(&event.incident).expect("inserted above").apply_page(event);
        klaxon_reactor::note_latest(&mut state.latest, event.incident, event.at);
        Ok(Some(event.incident))
    }

    /// Paging with a deliberately broken fold, for the simulation only
    /// (see `crate::broken`).
    #[cfg(feature = "sim-variants")]
    #[doc(hidden)]
    pub fn new_broken(config: impl Into<Live<PagerConfig>>, broken: crate::broken::Broken) -> Paging {
        Paging { config: config.into(), broken: Some(broken) }
    }

    #[cfg(feature = "sim-variants")]
    fn fold_broken(
        &self,
        broken: &crate::broken::Broken,
        state: &mut State,
        record: &SharedRecord,
    ) -> Result<Option<IncidentId>, klaxon_reactor::Error> {
        use crate::broken::Broken;
        match broken {
            Broken::AckIgnoredWhileDelivering => {
                if let Some(event) = decode::shared_event::<PageChange>(record)? {
                    let delivering = state
                        .incidents
                        .get(&event.incident)
                        .is_some_and(|paging| paging.pages().any(|page| matches!(page.delivery(), Delivery::Pending)));
                    if delivering && matches!(event.change, PageChange::PageAcknowledged(_)) {
                        // Broken: the acknowledgement is lost on this pager.
                        return Ok(Some(event.incident));
                    }
                }
                self.fold_once(state, record)
            }
            Broken::DuplicateApplied(repeated) => {
                let touched = self.fold_once(state, record)?;
                // Broken: the bus's second copy of a page event is folded
                // too (but for a page decision, which the domain refuses
                // loudly in debug builds, as it does an incident's request
                // for a responder: the quiet corruption is the one to catch).
                let kind = record.kind.as_str();
                if repeated(record) && kind.starts_with("page.") && kind != "page.responder_paged.v1" {
                    return self.fold_once(state, record);
                }
                Ok(touched)
            }
        }
    }
}

/// `Exact(n)` for an existing stream, `NoStream` for a new one.
fn exact_or_new(version: u64) -> ExpectedVersion {
    if version == 0 { ExpectedVersion::NoStream } else { ExpectedVersion::Exact(StreamVersion(version)) }
}

impl klaxon_reactor::Service for Paging {
    type State = State;
    type Then = PageDelivery;
    const NAME: &'static str = "paging";
    const TIMERS: bool = true;
    /// 3: an episode holds the policy its chain's first event recorded (2
    /// on the episode branch), and each incident's latest event time (for
    /// eviction; 2 on the eviction branch). 4: the paging severities are
    /// folded from the recorded configurations (a snapshot of 3 folded
    /// them from the configuration at hand: rebuilt).
    const SCHEMA: u32 = 4;

    fn fold(&self, state: &mut State, record: &SharedRecord) -> Result<Option<IncidentId>, klaxon_reactor::Error> {
        #[cfg(feature = "sim-variants")]
        if let Some(broken) = &self.broken {
            return self.fold_broken(broken, state, record);
        }
        self.fold_once(state, record)
    }

    /// A recorded configuration that changed the paging severities
    /// concerns every open incident (it may start or stop paging). A
    /// finished one is not decided: it pages again only after a record of
    /// its own (a reopening).
    fn concerns(&self, state: &State, record: &Record) -> Vec<IncidentId> {
        if record.kind.as_str() != audit::CONFIG_APPLIED {
            return Vec::new();
        }
        let open = |p: &IncidentPaging| matches!(p.status(), Some(Status::Reported | Status::Declared));
        state.incidents.iter().filter(|(_, p)| open(p)).map(|(id, _)| *id).collect()
    }

    /// A resolved or closed incident is finished since its latest event.
    fn retired_since(&self, state: &State, id: IncidentId) -> Option<DateTime<Utc>> {
        let status = state.incidents.get(&id)?.status()?;
        matches!(status, Status::Resolved | Status::Closed).then(|| state.latest.get(&id).copied())?
    }

    /// Its paging, trace contexts and latest time go; the counts stay.
    fn evict(&self, state: &mut State, id: IncidentId) {
        if let Some(paging) = state.incidents.remove(&id) {
            for page in paging.pages() {
                state.page_traces.remove(&page.id());
            }
        }
        state.traces.remove(&id);
        state.latest.remove(&id);
    }

    /// Everything `from` holds is the incident's, but for the counts and
    /// rosters (counted and folded once already) and the paging
    /// severities: `from` folded the incident's streams alone, and the
    /// severities in force are those `state` folded from the recorded
    /// configurations (a finished incident's episode does not depend on
    /// them, its next reopening does).
    fn adopt(&self, state: &mut State, from: State, id: IncidentId) {
        let latest = from.latest.get(&id).copied().unwrap_or_default();
        let mut incidents: Vec<(IncidentId, IncidentPaging)> =
            from.incidents.into_iter().filter(|(i, _)| *i == id).collect();
        if let Some(severities) = &state.severities {
            let hash = state.config_hash.as_deref().unwrap_or_default();
            for (_, paging) in &mut incidents {
                debug_assert!(!paging.is_paging(), "an evicted incident was finished");
                paging.set_paging_severities(severities, hash, latest);
            }
        }
        state.incidents.extend(incidents);
        state.traces.extend(from.traces.into_iter().filter(|(i, _)| *i == id));
        state.page_traces.extend(from.page_traces.into_iter().filter(|(page, _)| page.incident() == id));
        state.latest.extend(from.latest.into_iter().filter(|(i, _)| *i == id));
    }

    /// What the domain decides at `now` (appended to `pages-INC-n` at the
    /// version decided on, ids derived from it, in a `paging.page` span),
    /// and the pages to deliver (each in a `paging.deliver` span below the
    /// page's decision).
    fn decide(&self, state: &State, id: IncidentId, _cause: &Cause, now: DateTime<Utc>) -> Vec<Effect<PageDelivery>> {
        let Some(paging) = state.incidents.get(&id) else { return Vec::new() };
        // One configuration for the whole decision, even if a reload lands.
        let c = self.config.get();
        let mut effects = Vec::new();
        let schedules = state.schedules(&c.schedules);
        let events = paging::decide(paging, &c.paging, &c.catalog, &schedules, now);
        if !events.is_empty() {
            let version = paging.page_stream_version();
            let stream = streams::pages(id);
            let ids = Ids::at_version(&stream, version, "paging.decide");
            let span = tracing::info_span!(parent: None, "paging.page", incident = %id, events = events.len());
            let trace = Trace::new(span, state.traces.get(&id).cloned());
            effects.push(Effect::Append(Append::new(stream, exact_or_new(version), &events, ids).traced(trace)));
        }
        for delivery in paging::deliveries(paging, &c.paging, &c.catalog) {
            let page = delivery.page();
            let span = tracing::info_span!(parent: None, "paging.deliver", page = %page);
            let parent = state.page_traces.get(&page).or(state.traces.get(&id)).cloned();
            let sends = delivery.sends().to_vec();
            effects.push(Effect::Deliver(Deliver { sends, then: delivery, trace: Some(Trace::new(span, parent)) }));
        }
        effects
    }

    fn next_due(&self, state: &State, id: IncidentId) -> Option<DateTime<Utc>> {
        paging::next_due(state.incidents.get(&id)?, &self.config.get().paging)
    }

    /// The outcome of a page's delivery, with ids derived from the page, so
    /// that recording it twice writes it once.
    fn recorded(&self, delivery: PageDelivery, receipts: Vec<Receipt>) -> Option<Append> {
        let page = delivery.page();
        let events = delivery.recorded(&receipts);
        let stream = streams::pages(page.incident());
        let basis = Uuid::new_v5(&KLAXON_NAMESPACE, page.to_string().as_bytes()).as_u128() as u64;
        let ids = Ids::at_version(&stream, basis, "paging.delivery");
        Some(Append::new(stream, ExpectedVersion::Any, &events, ids))
    }
}

impl Pager {
    /// A pager over `log` with its configuration (fixed, or a [`Live`]
    /// view a reload replaces) and clock; pages go out through the
    /// `channels` of the configuration in force at each delivery.
    pub fn new(log: impl Into<Bus>, config: impl Into<Live<PagerConfig>>, clock: Arc<dyn Clock>) -> Pager {
        let config = config.into();
        let outbox = Arc::new(LiveChannels(config.clone()));
        Pager { reactor: Reactor::new(log, Paging::new(config), clock).with_outbox(outbox) }
    }

    /// A pager whose fold is deliberately broken, for the simulation only
    /// (see `crate::broken`).
    #[cfg(feature = "sim-variants")]
    #[doc(hidden)]
    pub fn new_broken(
        log: impl Into<Bus>,
        config: impl Into<Live<PagerConfig>>,
        clock: Arc<dyn Clock>,
        broken: crate::broken::Broken,
    ) -> Pager {
        let config = config.into();
        let outbox = Arc::new(LiveChannels(config.clone()));
        Pager { reactor: Reactor::new(log, Paging::new_broken(config, broken), clock).with_outbox(outbox) }
    }

    /// Delivers pages through `outbox` instead of `config.channels` (the
    /// simulation's recording receiver). Call before taking a handle.
    pub fn with_outbox(self, outbox: Arc<dyn klaxon_domain::outbox::Outbox>) -> Pager {
        Pager { reactor: self.reactor.with_outbox(outbox) }
    }

    /// Claims each delivery through the log before making it, so that
    /// replicas side by side deliver it once (see `klaxon_reactor::claim`).
    /// Call before taking a handle.
    pub fn with_claims(self, claims: klaxon_reactor::Claims) -> Pager {
        Pager { reactor: self.reactor.with_claims(claims) }
    }

    /// Saves its state to `file` every `every` records and at a clean
    /// stop, and resumes from it at start (see `klaxon_reactor::snapshot`).
    /// Call before taking a handle.
    pub fn with_snapshots(self, file: klaxon_reactor::SnapshotFile, every: std::num::NonZeroU64) -> Pager {
        Pager { reactor: self.reactor.with_snapshots(file, every) }
    }

    /// Evicts a resolved or closed incident from memory `after` its latest
    /// event, and reads it back from the log when it is needed again (see
    /// `klaxon_reactor::Reactor::with_eviction`). Call before taking a
    /// handle.
    pub fn with_eviction(self, after: std::time::Duration) -> Pager {
        Pager { reactor: self.reactor.with_eviction(after) }
    }

    /// A handle to it.
    pub fn handle(&self) -> Handle {
        Handle { reactor: self.reactor.handle() }
    }

    /// Folds the whole log, then decides for every incident, and from then
    /// on follows the log and the clock until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), Error> {
        Ok(self.reactor.run(shutdown).await?)
    }
}

impl Handle {
    /// Paging events folded so far, by kind (for metrics).
    pub fn counts(&self) -> Counts {
        self.reactor.read(|s| s.counts)
    }

    /// Where paging is in the log (for metrics and the barrier).
    pub fn reactor(&self) -> &klaxon_reactor::Handle<Paging> {
        &self.reactor
    }

    /// The configuration in force now.
    fn config(&self) -> Arc<PagerConfig> {
        self.reactor.service().config.get()
    }

    /// Whether `actor` is a configured manager (who may change anyone's
    /// shifts when the server runs without authentication).
    pub fn is_manager(&self, actor: &ActorId) -> bool {
        self.config().paging.is_manager(actor)
    }

    /// The service of the page's incident, for team-scope checks.
    pub async fn page_service(&self, page: PageId) -> Result<Option<ServiceName>, Error> {
        self.reactor.caught_up().await?;
        let incident = page.incident();
        let service =
            self.reactor.read_incident(incident, |s| s.incidents.get(&incident).map(|p| p.service().cloned())).await?;
        Ok(service.ok_or(AckError::UnknownPage { page, incident: page.incident() })?)
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
        let incident = page.incident();
        for _ in 0..ACK_ATTEMPTS_MAX {
            self.reactor.caught_up().await?;
            let now = self.reactor.now();
            let (event, version, trace) = self
                .reactor
                .read_incident(incident, |state| {
                    let Some(paging) = state.incidents.get(&incident) else {
                        return Err(Error::NoPages(incident));
                    };
                    let event = paging::acknowledge(paging, &page, actor, &self.config().paging, now)?;
                    Ok((event, paging.page_stream_version(), state.page_traces.get(&page).cloned()))
                })
                .await??;
            let stream = streams::pages(incident);
            let ids = match key {
                Some(key) => Ids::requested(key.clone()),
                None => Ids::at_version(&stream, version, "paging.ack"),
            };
            let append = Append::new(stream, exact_or_new(version), &[event], ids).traced(Trace::continuing(trace));
            match self.reactor.append(append).await {
                Ok(appended) => return self.page_at(page, appended.last).await,
                Err(klaxon_reactor::Error::Log(klaxon_log::Error::WrongExpectedVersion { .. })) => {
                    // The same request, sent twice at once, may have won.
                    if let Some(first) = self.first_ack(page, key).await? {
                        return Ok(first);
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(klaxon_reactor::Error::Unavailable { service: "paging", reason: "the page kept changing; retry".into() }
            .into())
    }

    /// The acknowledgement written earlier under `key`, if any: the page as
    /// it is now and the acknowledgement's position. A key used for another
    /// page is refused.
    async fn first_ack(&self, page: PageId, key: Option<&RequestKey>) -> Result<Option<(Page, Position)>, Error> {
        let Some(key) = key else { return Ok(None) };
        let bus = self.reactor.bus();
        let Some((position, _, _)) = bus.locate(key.event_id(0)).await.map_err(klaxon_reactor::Error::from)? else {
            return Ok(None);
        };
        let record = bus.read_one(position).await.map_err(klaxon_reactor::Error::from)?;
        match klaxon_reactor::decode::event::<PageChange>(&record)?.map(|e| e.change) {
            Some(PageChange::PageAcknowledged(ack)) if ack.page == page => {
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
        // Best effort: the acknowledgement is written either way.
        let _ = self.reactor.wait_applied(position).await;
        let incident = page.incident();
        let found = self
            .reactor
            .read_incident(incident, |s| s.incidents.get(&incident).and_then(|p| p.page(&page)).cloned())
            .await?;
        let unfolded = || klaxon_reactor::Error::Unavailable {
            service: "paging",
            reason: "the acknowledgement was not folded".into(),
        };
        Ok((found.ok_or_else(unfolded)?, position))
    }

    /// The schedules as they are now: the configured ones with the
    /// overrides and swaps of their streams applied.
    fn effective(&self) -> Arc<Schedules> {
        let configured = self.config().schedules.clone();
        self.reactor.read(|s| s.schedules(&configured))
    }

    /// Who is on call on `schedule` (or every schedule) at `at` (or now),
    /// with the schedules' overrides and swaps applied.
    pub async fn who_is_on_call(
        &self,
        schedule: Option<&str>,
        at: Option<DateTime<Utc>>,
    ) -> Result<Vec<(String, Option<klaxon_domain::oncall::OnCall>)>, Error> {
        self.reactor.caught_up().await?;
        let at = at.unwrap_or_else(|| self.reactor.now());
        let schedules = self.effective();
        match schedule {
            Some(name) => {
                let s = schedules.get(name).ok_or_else(|| unknown_schedule(name, &schedules))?;
                Ok(vec![(name.to_string(), s.on_call_at(at))])
            }
            None => Ok(schedules.iter().map(|s| (s.name().to_string(), s.on_call_at(at))).collect()),
        }
    }

    /// The holes (nobody on call) of every schedule in `[from, to)`, with
    /// their overrides and swaps applied, schedule by schedule in the order
    /// of the configuration. The range is at most
    /// [`roster::SPAN_DAYS_MAX`] days.
    pub async fn coverage(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Vec<(String, Span)>, Error> {
        if to <= from {
            return Err(RosterError::Invalid { field: "to", reason: "must be after \"from\"".into() }.into());
        }
        if to - from > chrono::TimeDelta::days(roster::SPAN_DAYS_MAX) {
            let days = roster::SPAN_DAYS_MAX;
            return Err(
                RosterError::Invalid { field: "to", reason: format!("at most {days} days after \"from\"") }.into()
            );
        }
        self.reactor.caught_up().await?;
        let schedules = self.effective();
        Ok(schedules
            .iter()
            .flat_map(|s| s.holes(from, to).into_iter().map(|hole| (s.name().to_string(), hole)))
            .collect())
    }

    /// Changes `schedule` as `acting` asks: the one event of
    /// `roster::decide` at the clock's time, appended to the schedule's
    /// stream at the exact version it was decided at. Returns the event and
    /// its position. A refused change writes nothing.
    ///
    /// With a request `key`, the event's id comes from it: sent again (also
    /// after a restart), the first change is found in the log and answered
    /// again, and nothing is written.
    pub async fn change_schedule(
        &self,
        schedule: &str,
        acting: &Acting,
        command: &RosterCommand,
        key: Option<&RequestKey>,
    ) -> Result<(RosterEvent, Position), Error> {
        if let Some(first) = self.first_change(schedule, key).await? {
            return Ok(first);
        }
        let config = self.config();
        let configured =
            config.schedules.get(schedule).ok_or_else(|| unknown_schedule(schedule, &config.schedules))?.clone();
        let stream = streams::schedule(schedule);
        for _ in 0..ACK_ATTEMPTS_MAX {
            self.reactor.caught_up().await?;
            let now = self.reactor.now();
            let (event, version) = self.reactor.read(|state| {
                let empty = roster::Roster::default();
                let current = state.rosters.get(schedule).unwrap_or(&empty);
                roster::decide(&configured, current, acting, command, now).map(|event| (event, current.version()))
            })?;
            let ids = match key {
                Some(key) => Ids::requested(key.clone()),
                None => Ids::at_version(&stream, version, "oncall.change"),
            };
            let pending = klaxon_reactor::Pending {
                kind: event.kind(),
                data: event.to_json(),
                actor: event.by.to_string(),
                correlation_id: Uuid::new_v5(&KLAXON_NAMESPACE, stream.as_str().as_bytes()),
            };
            let append = Append {
                stream: stream.clone(),
                expected: exact_or_new(version),
                events: vec![pending],
                ids,
                causation: None,
                trace: None,
            };
            match self.reactor.append(append).await {
                Ok(appended) => {
                    // Best effort: the change is written either way.
                    let _ = self.reactor.wait_applied(appended.last).await;
                    return Ok((event, appended.last));
                }
                Err(klaxon_reactor::Error::Log(klaxon_log::Error::WrongExpectedVersion { .. })) => {
                    if let Some(first) = self.first_change(schedule, key).await? {
                        return Ok(first);
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(klaxon_reactor::Error::Unavailable {
            service: "paging",
            reason: "the schedule kept changing; retry".into(),
        }
        .into())
    }

    /// The schedule change written earlier under `key`, if any. A key used
    /// for something else is refused.
    async fn first_change(
        &self,
        schedule: &str,
        key: Option<&RequestKey>,
    ) -> Result<Option<(RosterEvent, Position)>, Error> {
        let Some(key) = key else { return Ok(None) };
        let bus = self.reactor.bus();
        let Some((position, _, _)) = bus.locate(key.event_id(0)).await.map_err(klaxon_reactor::Error::from)? else {
            return Ok(None);
        };
        let record = bus.read_one(position).await.map_err(klaxon_reactor::Error::from)?;
        match decode::roster(&record)? {
            Some(event) if event.schedule == schedule => Ok(Some((event, position))),
            _ => Err(klaxon_domain::Error::InvalidField {
                field: "request_id",
                reason: format!("was already used for something other than a change of schedule {schedule}"),
            }
            .into()),
        }
    }

    /// The incident's pages, oldest first.
    pub async fn pages(&self, incident: IncidentId) -> Result<Vec<Page>, Error> {
        Ok(self.pages_with_delivery(incident).await?.into_iter().map(|(page, _)| page).collect())
    }

    /// The incident's pages, oldest first, each with what became of its
    /// delivery: [`DeliveryStatus`]`::Pending` only for a page the pager is
    /// delivering, [`DeliveryStatus`]`::Unsent` with the reason for one it
    /// will not deliver (acknowledged, incident resolved or closed, no
    /// paging channel: `paging::unsent`, the rule the pager applies).
    pub async fn pages_with_delivery(&self, incident: IncidentId) -> Result<Vec<(Page, DeliveryStatus)>, Error> {
        self.reactor.caught_up().await?;
        let config = self.config();
        let pages = self
            .reactor
            .read_incident(incident, |s| {
                let paging = s.incidents.get(&incident)?;
                let status = |p: &Page| DeliveryStatus::of(paging, p, &config.paging);
                Some(paging.pages().map(|p| (p.clone(), status(p))).collect::<Vec<_>>())
            })
            .await?;
        let mut pages = pages.ok_or(Error::NoPages(incident))?;
        pages.sort_by_key(|(p, _)| p.id().number());
        Ok(pages)
    }

    /// What became of `page`'s delivery (a page as [`Handle::acknowledge`]
    /// returns it), with its incident as the pager knows it now.
    pub fn delivery_status(&self, page: &Page) -> DeliveryStatus {
        let config = &self.config().paging;
        self.reactor.read(|s| match s.incidents.get(&page.id().incident()) {
            Some(paging) => DeliveryStatus::of(paging, page, config),
            None => DeliveryStatus::Pending,
        })
    }
}

/// What became of a page's delivery, as `ListPages` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryStatus {
    /// The pager is delivering it.
    Pending,
    /// A channel took it.
    Delivered,
    /// Every channel failed.
    Failed,
    /// The pager does not deliver it, and why.
    Unsent(paging::Unsent),
}

impl DeliveryStatus {
    fn of(paging: &IncidentPaging, page: &Page, config: &PagingConfig) -> DeliveryStatus {
        match (page.delivery(), paging::unsent(paging, page, config)) {
            (_, Some(unsent)) => DeliveryStatus::Unsent(unsent),
            (Delivery::Pending, None) => DeliveryStatus::Pending,
            (Delivery::Delivered { .. }, None) => DeliveryStatus::Delivered,
            (Delivery::Failed { .. }, None) => DeliveryStatus::Failed,
        }
    }

    /// The wire word: `pending`, `delivered`, `failed`, `cancelled` (never
    /// to be sent as things stand) or `held` (until a paging channel is
    /// configured).
    pub fn as_str(&self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Failed => "failed",
            DeliveryStatus::Unsent(u) if u.is_cancelled() => "cancelled",
            DeliveryStatus::Unsent(_) => "held",
        }
    }
}
