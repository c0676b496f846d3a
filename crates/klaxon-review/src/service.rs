//! The review component: its fold and decision (opening reviews), run by
//! the reactor shell, and the commands and queries of its handle.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use klaxon_bus::{Bus, SharedRecord};
use klaxon_domain::audit;
use klaxon_domain::catalog::ServiceCatalog;
use klaxon_domain::ids::{ActorId, IncidentId, RequestKey, ServiceName, Severity};
use klaxon_domain::incident::{Incident, Status};
use klaxon_domain::review::{
    self, ActionItem, Dossier, IncidentAsOf, IncidentFacts, IncidentMetrics, OPEN_REACTION, Review, ReviewCommand,
    ReviewEvent, SloBreaches, TimelineEntry, TrendFilter, TrendReport, TrendSummary, decide_review,
};
use klaxon_log::{EventData, EventKind, ExpectedVersion, Metadata, NewEvent, Record, StreamVersion};
use klaxon_reactor::{Append, Cause, Clock, Decoded, Effect, Ids, Live, Reactor, Row, Table, decode, streams};
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
/// gives trend reports the team of incidents whose events recorded none
/// (replaceable while it runs: a configuration reload; each query takes
/// it once), and the table of the evicted incidents' [`TrendRow`]s
/// (opened by the shell at start, beside the snapshot, or anonymous
/// without snapshots).
pub struct Reviewing {
    catalog: Live<ServiceCatalog>,
    rows: std::sync::OnceLock<Table<TrendRow>>,
}

/// What the review service folds: each held incident's [`Dossier`] and
/// [`TrendSummary`]; of an evicted incident only a fixed-size [`TrendRow`]
/// (what trends count it by), on disk in the rows table
/// (`klaxon_reactor::table`, one slot per incident number), and, while its
/// review has an open action item, its action items (what
/// [`Handle::action_items`] lists). Memory follows open work: a finished
/// incident leaves nothing in memory but its action items while one is
/// open.
#[derive(Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct State {
    dossiers: HashMap<IncidentId, Dossier>,
    /// The held incidents' trend summaries (still folding).
    summaries: HashMap<IncidentId, TrendSummary>,
    /// The evicted incidents' trend rows: the table's epoch, how many
    /// rows it holds, the service names they intern.
    trends: TrendRows,
    /// The action items of each evicted incident whose review has an open
    /// one (a held incident's are in its dossier). A boxed slice, not a
    /// `Vec`: decoded from a snapshot, a `Vec` of one item grew to room
    /// for four (JSON gives serde no length), three quarters of this
    /// map's memory at 1M events (`docs/benchmarks.md`, "What a restarted
    /// klaxond holds"); the JSON is the same.
    open_items: HashMap<IncidentId, Box<[ActionItem]>>,
    /// The time of each incident's latest event (when a finished one's
    /// dossier may leave memory).
    latest: HashMap<IncidentId, DateTime<Utc>>,
}

/// What trends need of one evicted incident, fixed-size: its
/// [`IncidentFacts`], times as seconds and nanoseconds, durations as
/// nanoseconds (`-1`: none), the service as an id into
/// [`TrendRows::services`] (`0`: none), the team its events recorded as an
/// id into [`TrendRows::teams`] (`0`: none recorded, the team is taken
/// from the catalog at query time, as for a held incident). Kept in the
/// rows table ([`Row`]: 94 bytes, little-endian, in field order, the severity as 0
/// for none or 1 to 4); its JSON form (one array) is for tests and tools.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(from = "RowTuple", into = "RowTuple")]
pub struct TrendRow {
    severity: Option<Severity>,
    service: u32,
    first_reported_secs: i64,
    first_reported_nanos: u32,
    /// Detect, acknowledge, assign, mitigate, resolve.
    durations: [i64; 5],
    /// Escalations, handoffs, pages, pulled-in pages, then SLO breaches:
    /// ack, assign, update cadence, resolve.
    counts: [u32; 8],
    /// Bit 0: the incident is marked noise; bit 1: its metrics say so.
    noise: u8,
    team: u32,
}

type RowTuple = (Option<Severity>, u32, i64, u32, [i64; 5], [u32; 8], u8, u32);

impl From<RowTuple> for TrendRow {
    fn from((severity, service, secs, nanos, durations, counts, noise, team): RowTuple) -> TrendRow {
        TrendRow {
            severity,
            service,
            first_reported_secs: secs,
            first_reported_nanos: nanos,
            durations,
            counts,
            noise,
            team,
        }
    }
}

impl From<TrendRow> for RowTuple {
    fn from(r: TrendRow) -> RowTuple {
        (r.severity, r.service, r.first_reported_secs, r.first_reported_nanos, r.durations, r.counts, r.noise, r.team)
    }
}

impl Row for TrendRow {
    const LEN: usize = 1 + 4 + 8 + 4 + 5 * 8 + 8 * 4 + 1 + 4;
    const KIND: [u8; 8] = *b"trend-v2";

    fn encode(&self, out: &mut [u8]) {
        let mut at = 0;
        let mut put = |bytes: &[u8]| {
            out[at..at + bytes.len()].copy_from_slice(bytes);
            at += bytes.len();
        };
        let severity = self.severity.map_or(0, |s| 1 + Severity::ALL.iter().position(|a| *a == s).unwrap_or(0) as u8);
        put(&[severity]);
        put(&self.service.to_le_bytes());
        put(&self.first_reported_secs.to_le_bytes());
        put(&self.first_reported_nanos.to_le_bytes());
        for d in self.durations {
            put(&d.to_le_bytes());
        }
        for c in self.counts {
            put(&c.to_le_bytes());
        }
        put(&[self.noise]);
        put(&self.team.to_le_bytes());
    }

    fn decode(bytes: &[u8]) -> Option<TrendRow> {
        let mut at = 0;
        let mut take = |n: usize| {
            let slice = bytes.get(at..at + n);
            at += n;
            slice
        };
        let severity = match take(1)?[0] {
            0 => None,
            n => Some(*Severity::ALL.get(usize::from(n) - 1)?),
        };
        let service = u32::from_le_bytes(take(4)?.try_into().ok()?);
        let first_reported_secs = i64::from_le_bytes(take(8)?.try_into().ok()?);
        let first_reported_nanos = u32::from_le_bytes(take(4)?.try_into().ok()?);
        let mut durations = [0i64; 5];
        for d in &mut durations {
            *d = i64::from_le_bytes(take(8)?.try_into().ok()?);
        }
        let mut counts = [0u32; 8];
        for c in &mut counts {
            *c = u32::from_le_bytes(take(4)?.try_into().ok()?);
        }
        let noise = take(1)?[0];
        let team = u32::from_le_bytes(take(4)?.try_into().ok()?);
        DateTime::from_timestamp(first_reported_secs, first_reported_nanos)?;
        Some(TrendRow { severity, service, first_reported_secs, first_reported_nanos, durations, counts, noise, team })
    }
}

/// What the state keeps of the evicted incidents' [`TrendRow`]s (the rows
/// themselves are in the rows table): the table's epoch (a snapshot goes
/// only with the table it was saved with), how many rows it holds, and
/// the service and team names they intern (as many as the catalogs had).
#[derive(Clone, Default)]
pub struct TrendRows {
    epoch: u64,
    count: u64,
    /// Service `n` of a row is `services[n - 1]`.
    services: Vec<ServiceName>,
    ids: HashMap<ServiceName, u32>,
    /// Team `n` of a row is `teams[n - 1]`.
    teams: Vec<String>,
    team_ids: HashMap<String, u32>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct SavedRows {
    epoch: u64,
    count: u64,
    services: Vec<ServiceName>,
    teams: Vec<String>,
}

impl serde::Serialize for TrendRows {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        SavedRows { epoch: self.epoch, count: self.count, services: self.services.clone(), teams: self.teams.clone() }
            .serialize(serializer)
    }
}

impl<'de> serde::Deserialize<'de> for TrendRows {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<TrendRows, D::Error> {
        let saved = SavedRows::deserialize(deserializer)?;
        let ids = saved.services.iter().zip(1..).map(|(s, n)| (s.clone(), n)).collect();
        let team_ids = saved.teams.iter().zip(1..).map(|(t, n)| (t.clone(), n)).collect();
        Ok(TrendRows {
            epoch: saved.epoch,
            count: saved.count,
            services: saved.services,
            ids,
            teams: saved.teams,
            team_ids,
        })
    }
}

impl TrendRows {
    /// The row of `facts`, its service and `recorded_team` (the team its
    /// events recorded, see [`TrendSummary::recorded_team`]) interned;
    /// `None` when a time or duration does not fit (such an incident keeps
    /// its summary).
    fn row(&mut self, facts: &IncidentFacts, recorded_team: Option<&str>) -> Option<TrendRow> {
        let m = &facts.metrics;
        let nanos = |d: Option<TimeDelta>| d.map_or(Some(-1), |d| d.num_nanoseconds());
        let service = match &facts.service {
            None => 0,
            Some(name) => match self.ids.get(name) {
                Some(n) => *n,
                None => {
                    self.services.push(name.clone());
                    let n = u32::try_from(self.services.len()).ok()?;
                    self.ids.insert(name.clone(), n);
                    n
                }
            },
        };
        let team = match recorded_team {
            None => 0,
            Some(name) => match self.team_ids.get(name) {
                Some(n) => *n,
                None => {
                    self.teams.push(name.to_owned());
                    let n = u32::try_from(self.teams.len()).ok()?;
                    self.team_ids.insert(name.to_owned(), n);
                    n
                }
            },
        };
        Some(TrendRow {
            severity: facts.severity,
            service,
            first_reported_secs: facts.first_reported_at.timestamp(),
            first_reported_nanos: facts.first_reported_at.timestamp_subsec_nanos(),
            durations: [
                nanos(m.time_to_detect)?,
                nanos(m.time_to_acknowledge)?,
                nanos(m.time_to_assign)?,
                nanos(m.time_to_mitigate)?,
                nanos(m.time_to_resolve)?,
            ],
            counts: [
                m.escalations,
                m.handoffs,
                m.pages,
                m.pulled_in_pages,
                m.slo_breaches.ack,
                m.slo_breaches.assign,
                m.slo_breaches.update_cadence,
                m.slo_breaches.resolve,
            ],
            noise: u8::from(facts.noise) | (u8::from(m.noise) << 1),
            team,
        })
    }

    /// The facts of the evicted incident `id`, its team the recorded one,
    /// else from `catalog`: what its summary gave when it was evicted.
    fn facts(&self, id: IncidentId, row: &TrendRow, catalog: &ServiceCatalog) -> IncidentFacts {
        let service = row.service.checked_sub(1).and_then(|n| self.services.get(n as usize)).cloned();
        let duration = |n: i64| (n >= 0).then(|| TimeDelta::nanoseconds(n));
        let [detect, acknowledge, assign, mitigate, resolve] = row.durations;
        let [escalations, handoffs, pages, pulled_in_pages, ack, assign_slo, update_cadence, resolve_slo] = row.counts;
        IncidentFacts {
            id,
            severity: row.severity,
            team: match row.team.checked_sub(1).and_then(|n| self.teams.get(n as usize)) {
                Some(team) => Some(team.clone()),
                None => service.as_ref().and_then(|s| catalog.team(s)).map(str::to_owned),
            },
            service,
            first_reported_at: DateTime::from_timestamp(row.first_reported_secs, row.first_reported_nanos)
                .expect("saved from a DateTime"),
            metrics: IncidentMetrics {
                time_to_detect: duration(detect),
                time_to_acknowledge: duration(acknowledge),
                time_to_assign: duration(assign),
                time_to_mitigate: duration(mitigate),
                time_to_resolve: duration(resolve),
                escalations,
                handoffs,
                slo_breaches: SloBreaches { ack, assign: assign_slo, update_cadence, resolve: resolve_slo },
                pages,
                noise: row.noise & 2 != 0,
                pulled_in_pages,
            },
            noise: row.noise & 1 != 0,
        }
    }
}

impl Reviewing {
    /// The rows table (opened by the shell before the first fold).
    fn rows(&self) -> &Table<TrendRow> {
        self.rows.get().expect("the shell opens the rows table before folding")
    }

    /// Calls `f` with each evicted incident's row in the table, by
    /// number; the slots of incidents `state` holds are passed over (one
    /// read back since, or one a crash tore after the snapshot).
    fn scan_rows(&self, state: &State, mut f: impl FnMut(IncidentId, TrendRow)) -> Result<(), Error> {
        let Some(table) = self.rows.get() else { return Ok(()) };
        let held = |n: u64| IncidentId::from_number(n).is_ok_and(|id| state.summaries.contains_key(&id));
        table.scan(held, |n, row| {
            if let Ok(id) = IncidentId::from_number(n) {
                f(id, row);
            }
        })?;
        Ok(())
    }

    /// The rows table's counts: rows the state says it holds, slots
    /// written and read since open (for tests and benches).
    pub fn table_counts(&self, state: &State) -> (u64, u64, u64) {
        let (writes, reads) = self.rows.get().map_or((0, 0), Table::counts);
        (state.trends.count, writes, reads)
    }
}

impl klaxon_reactor::Service for Reviewing {
    type State = State;
    type Then = ();
    const NAME: &'static str = "reviews";
    /// 2: each incident's latest event time (for eviction). 3: evicted
    /// incidents as compact trend rows and open action items. 4: the
    /// rows in the rows table, the state keeping its epoch and count. 5:
    /// the team an incident's events recorded, in summaries and rows. 6:
    /// a role assignment's notice is no page in the metrics.
    const SCHEMA: u32 = 6;

    fn fold(&self, state: &mut State, record: &SharedRecord) -> Result<Option<IncidentId>, klaxon_reactor::Error> {
        let (id, at) = match decode::shared(record)? {
            Decoded::Incident(event) => {
                let dossier = state.dossiers.entry(event.incident).or_default();
                dossier.apply_incident(record.id, event);
                if let Some(incident) = dossier.incident() {
                    state.summaries.entry(event.incident).or_default().incident(event, incident);
                }
                (event.incident, event.at)
            }
            Decoded::Page(event) => {
                state.dossiers.entry(event.incident).or_default().apply_page(event);
                state.summaries.entry(event.incident).or_default().page(event);
                (event.incident, event.at)
            }
            Decoded::Notify(event) => {
                state.dossiers.entry(event.incident).or_default().apply_notify(event);
                if let Some(breach) = review::cadence_breach(event) {
                    state.summaries.entry(event.incident).or_default().page(&breach);
                }
                (event.incident, event.at)
            }
            Decoded::Review(event) => {
                state.dossiers.entry(event.incident).or_default().apply_review(event);
                (event.incident, event.at)
            }
            Decoded::Other => return Ok(None),
        };
        klaxon_reactor::note_latest(&mut state.latest, id, at);
        Ok(Some(id))
    }

    /// A resolved or closed incident is finished since its latest event
    /// (open action items of its review leave with it as rows in
    /// `open_items`).
    fn retired_since(&self, state: &State, id: IncidentId) -> Option<DateTime<Utc>> {
        let dossier = state.dossiers.get(&id)?;
        let finished = matches!(dossier.incident()?.status(), Status::Resolved | Status::Closed);
        finished.then(|| state.latest.get(&id).copied())?
    }

    /// Its dossier goes; its trend summary becomes a [`TrendRow`] (trends
    /// count it), and, when its review has an open action item, its
    /// action items stay in `open_items` (still work).
    fn evict(&self, state: &mut State, id: IncidentId) {
        if let Some(review) = state.dossiers.remove(&id).as_ref().and_then(Dossier::review)
            && review.action_items().any(|i| !i.is_completed())
        {
            state.open_items.insert(id, review.action_items().cloned().collect());
        }
        state.latest.remove(&id);
        if let Some(summary) = state.summaries.remove(&id) {
            let catalog = self.catalog.get();
            let row = summary.facts(id, &catalog).and_then(|facts| state.trends.row(&facts, summary.recorded_team()));
            match row.map(|row| self.rows().put(id.number(), &row)) {
                Some(Ok(())) => state.trends.count += 1,
                failed => {
                    if let Some(Err(e)) = failed {
                        tracing::warn!(service = "reviews", incident = %id, error = %e, "trend row not written; the summary stays in memory");
                    }
                    state.summaries.insert(id, summary);
                }
            }
        }
    }

    /// The dossier and trend summary come back from `from` (which folded
    /// every record about the incident so far, as the row it replaces
    /// did), and its action items are in the dossier again.
    fn adopt(&self, state: &mut State, mut from: State, id: IncidentId) {
        state.dossiers.extend(from.dossiers.remove(&id).map(|d| (id, d)));
        state.latest.extend(from.latest.remove(&id).map(|l| (id, l)));
        if let Some(summary) = from.summaries.remove(&id) {
            // Left as a row (not with its summary): the slot is emptied.
            // Were that to fail, the row would still never count: a held
            // incident's slot is passed over, and written again whole when
            // it leaves again.
            if state.summaries.insert(id, summary).is_none() {
                state.trends.count = state.trends.count.saturating_sub(1);
                if let Err(e) = self.rows().clear(id.number()) {
                    tracing::warn!(service = "reviews", incident = %id, error = %e, "trend row not cleared");
                }
            }
        }
        state.open_items.remove(&id);
    }

    /// Opens the rows table beside the snapshot (anonymous without one):
    /// a resumed state goes with it only when it was saved with the
    /// table's epoch (or had no row); a rebuild from scratch empties it.
    fn open(
        &self,
        state: &mut State,
        snapshot: Option<&std::path::Path>,
        resumed: bool,
    ) -> Result<bool, klaxon_reactor::Error> {
        let table = match self.rows.get() {
            Some(table) => table,
            None => {
                let table = Table::beside(snapshot).map_err(|e| klaxon_reactor::Error::Table {
                    path: format!("{snapshot:?}.rows"),
                    reason: e.to_string(),
                })?;
                self.rows.get_or_init(|| table)
            }
        };
        if resumed && state.trends.count > 0 {
            return Ok(table.epoch() != 0 && table.epoch() == state.trends.epoch);
        }
        let path = format!("{:?}", table.path());
        state.trends.epoch = table.reset().map_err(|e| klaxon_reactor::Error::Table { path, reason: e.to_string() })?;
        state.trends.count = 0;
        Ok(true)
    }

    /// The rows written since the last snapshot are synced before it.
    fn persist(&self) -> std::io::Result<()> {
        self.rows.get().map_or(Ok(()), Table::persist)
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
    /// A review service over `log`; trend reports file an incident under
    /// the team its events recorded, and take the team of incidents whose
    /// events recorded none from `catalog` (a [`Live`] the caller keeps a
    /// clone of and sets on a configuration reload).
    pub fn new(log: impl Into<Bus>, catalog: impl Into<Live<ServiceCatalog>>, clock: Arc<dyn Clock>) -> Reviews {
        let reviewing = Reviewing { catalog: catalog.into(), rows: std::sync::OnceLock::new() };
        Reviews { reactor: Reactor::new(log, reviewing, clock) }
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

    /// Every action item (only open ones with `open_only`), by incident:
    /// held incidents' from their dossiers, evicted ones' with an open
    /// item from `open_items` (no dossier, no read). With every item,
    /// the reviews of the other evicted incidents (all their items
    /// completed, or no review) are read from their review streams: one
    /// index lookup per such incident, and a read of those that have a
    /// review.
    pub async fn action_items(&self, open_only: bool) -> Result<Vec<ActionItem>, Error> {
        self.reactor.caught_up().await?;
        let keep = |i: &ActionItem| !open_only || !i.is_completed();
        let reviewing = self.reactor.service();
        let (mut items, not_held) =
            self.reactor.read(|state| -> Result<(Vec<ActionItem>, Vec<IncidentId>), Error> {
                let held = state.dossiers.values().filter_map(Dossier::review).flat_map(Review::action_items);
                let items = held
                    .chain(state.open_items.values().flat_map(|items| items.iter()))
                    .filter(|i| keep(i))
                    .cloned()
                    .collect();
                let mut not_held = Vec::new();
                if !open_only {
                    let evicted =
                        |id: &IncidentId| !state.dossiers.contains_key(id) && !state.open_items.contains_key(id);
                    not_held.extend(state.summaries.keys().filter(|id| evicted(id)).copied());
                    reviewing.scan_rows(state, |id, _| {
                        if evicted(&id) {
                            not_held.push(id);
                        }
                    })?;
                }
                Ok((items, not_held))
            })?;
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
            items.extend(review.flat_map(Review::action_items).filter(|i| keep(i)).cloned());
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
    /// pass `filter`. A team that is neither a team of the catalog in
    /// effect nor one any incident is filed under is refused (field
    /// `team`): it would only ever report zero. (A team a reload left out
    /// of the catalog still has its past incidents.)
    pub async fn trends(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        filter: &TrendFilter,
    ) -> Result<TrendReport, Error> {
        let catalog = self.reactor.service().catalog.get();
        let catalog = &*catalog;
        self.reactor.caught_up().await?;
        // The held incidents' summaries, then the rows table read through
        // (a buffer of slots at a time), under the state's read lock (so
        // no incident moves between the two); only the facts the report
        // counts are kept.
        let reviewing = self.reactor.service();
        let facts = self.reactor.read(|state| -> Result<Vec<IncidentFacts>, Error> {
            let counts =
                |f: &IncidentFacts| from <= f.first_reported_at && f.first_reported_at < to && filter.admits(f);
            if let Some(team) = filter.team.as_deref() {
                let known = catalog.services().any(|s| s.team() == team)
                    || state.trends.teams.iter().any(|t| t == team)
                    || state.summaries.values().any(|s| s.recorded_team() == Some(team));
                if !known {
                    return Err(Self::unknown_team(team));
                }
            }
            let held = state.summaries.iter().filter_map(|(id, summary)| summary.facts(*id, catalog));
            let mut facts: Vec<IncidentFacts> = held.filter(|f| counts(f)).collect();
            reviewing.scan_rows(state, |id, row| {
                let f = state.trends.facts(id, &row, catalog);
                if counts(&f) {
                    facts.push(f);
                }
            })?;
            Ok(facts)
        })?;
        Ok(TrendReport::compute(&facts, from, to, filter))
    }

    fn unknown_team(team: &str) -> Error {
        klaxon_domain::Error::InvalidField {
            field: "team",
            reason: format!("{team:?} is no team of any service in the catalog nor of any incident"),
        }
        .into()
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

#[cfg(test)]
mod tests;
