//! The evaluator: its fold and decision, run by the reactor shell.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use klaxon_bus::{Bus, SharedRecord};
use klaxon_domain::ConfigError;
use klaxon_domain::catalog::ServiceCatalog;
use klaxon_domain::ids::IncidentId;
use klaxon_domain::incident::{Incident, Incidents, Status};
use klaxon_domain::oncall::roster::Rosters;
use klaxon_domain::paging::PageChange;
use klaxon_domain::policy::{self, Finding, Outcome, Policy, Replay, Sections, Window};
use klaxon_domain::severity::{Explanation, Facts, Rules, assess};
use klaxon_log::{ExpectedVersion, Position};
use klaxon_reactor::{Append, Cause, Clock, Effect, Ids, Live, Reactor, Trace, decode, streams};
use tokio_util::sync::CancellationToken;

/// The evaluator's checkpoint name in the log.
pub const CONSUMER: &str = "severity";
/// The actor recorded on assessments.
pub const ACTOR: &str = klaxon_domain::severity::SEVERITY_ACTOR;
/// The reaction name that, with the cause's id, derives an assessment's id.
const REACTION: &str = "severity.assessed";
/// How many records a policy test reads from the log at a time.
pub const REPLAY_PAGE: usize = 512;
/// How many days ahead the lint of the running configuration looks for
/// coverage holes when the request does not say.
pub const LINT_DAYS_DEFAULT: u32 = 14;

/// What can go wrong.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The log failed, a stored event does not decode, or the evaluator is
    /// not keeping up.
    #[error(transparent)]
    Reactor(#[from] klaxon_reactor::Error),
    /// No such incident.
    #[error("unknown incident {0}")]
    UnknownIncident(IncidentId),
    /// A candidate configuration that does not parse or validate, named by
    /// its key path.
    #[error("candidate configuration: {0}")]
    Candidate(#[from] ConfigError),
    /// A request field is out of range, named.
    #[error("{field}: {reason}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The evaluator was built without the running configuration
    /// ([`Evaluator::with_running`]), so it cannot lint it.
    #[error("this severity evaluator was started without its configuration's policy; it cannot lint it")]
    NoRunningPolicy,
}

impl klaxon_domain::class::Classify for Error {
    fn class(&self) -> klaxon_domain::class::Class {
        use klaxon_domain::class::Class;
        match self {
            Error::Reactor(e) => e.class(),
            Error::UnknownIncident(_) => Class::NotFound,
            Error::Candidate(_) | Error::Invalid { .. } => Class::InvalidArgument,
            Error::NoRunningPolicy => Class::FailedPrecondition,
        }
    }
}

/// The severity evaluator. Build it, take [`Handle`]s, then [`Evaluator::run`].
pub struct Evaluator {
    reactor: Reactor<Assessing>,
    running: Option<Arc<RunningPolicy>>,
}

/// A cheap-to-clone handle for queries.
#[derive(Clone)]
pub struct Handle {
    reactor: klaxon_reactor::Handle<Assessing>,
    running: Option<Arc<RunningPolicy>>,
}

/// The policy of the configuration the server started with, for
/// [`Handle::lint_running`]: its sections as written and as validated.
/// What can change while the server runs is not taken from here: the
/// severity rules and the service catalog are the evaluator's live ones (a
/// reload replaces them) and the schedules get the overrides and swaps
/// recorded in the log.
#[derive(Clone, Debug)]
pub struct RunningPolicy {
    /// The policy sections of the file.
    pub sections: Sections,
    /// The same, validated.
    pub policy: Policy,
}

/// The evaluator as the shell runs it: the rules and the catalog, both
/// replaceable while it runs (a configuration reload); each decision takes
/// them once.
pub struct Assessing {
    rules: Live<Rules>,
    catalog: Live<ServiceCatalog>,
}

/// What the evaluator folds: every incident, and when its latest event
/// happened (the time its assessment is stamped with).
#[derive(Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct State {
    incidents: Incidents,
    latest: HashMap<IncidentId, DateTime<Utc>>,
}

impl State {
    /// The incidents held in memory (finished ones leave it with eviction).
    pub fn incidents(&self) -> &Incidents {
        &self.incidents
    }
}

impl klaxon_reactor::Service for Assessing {
    type State = State;
    type Then = ();
    const NAME: &'static str = "the severity evaluator";
    const CHECKPOINT: Option<&'static str> = Some(CONSUMER);

    fn fold(&self, state: &mut State, record: &SharedRecord) -> Result<Option<IncidentId>, klaxon_reactor::Error> {
        let Some(event) = decode::shared_incident(record)? else { return Ok(None) };
        state.incidents.apply(event);
        state.latest.insert(event.incident, event.at);
        Ok(Some(event.incident))
    }

    /// A resolved or closed incident is finished since its latest event.
    fn retired_since(&self, state: &State, id: IncidentId) -> Option<DateTime<Utc>> {
        let incident = state.incidents.get(id)?;
        matches!(incident.status(), Status::Resolved | Status::Closed).then(|| state.latest.get(&id).copied())?
    }

    fn evict(&self, state: &mut State, id: IncidentId) {
        state.incidents.remove(id);
        state.latest.remove(&id);
    }

    fn adopt(&self, state: &mut State, mut from: State, id: IncidentId) {
        if let Some(incident) = from.incidents.remove(id) {
            state.incidents.restore(incident);
        }
        if let Some(at) = from.latest.remove(&id) {
            state.latest.insert(id, at);
        }
    }

    /// The assessment the incident's facts call for, appended to its own
    /// stream with an id derived from its latest record, in a
    /// `severity.assess` span below that record's trace, so that paging and
    /// the notifier descend from it.
    fn decide(&self, state: &State, id: IncidentId, cause: &Cause, _now: DateTime<Utc>) -> Vec<Effect<()>> {
        let (Some(incident), Some(at)) = (state.incidents.get(id), state.latest.get(&id)) else { return Vec::new() };
        let Some(assessed) = assess(incident, &self.rules.get(), &self.catalog.get(), *at) else { return Vec::new() };
        let span = tracing::info_span!(parent: None, "severity.assess", incident = %id, severity = %assessed_severity(&assessed));
        let append =
            Append::new(streams::incident(id), ExpectedVersion::Any, &[assessed], Ids::caused_by(cause.id, REACTION))
                .caused_by(cause.id)
                .traced(Trace::new(span, cause.traceparent.clone()));
        vec![Effect::Append(append)]
    }
}

impl Assessing {
    /// The evaluator as [`Evaluator`] runs it: for rebuilding its state
    /// from the log with [`klaxon_reactor::Service::fold`] (the
    /// simulation, `klaxon-sim`, compares it with the running one's).
    pub fn new(rules: impl Into<Live<Rules>>, catalog: impl Into<Live<ServiceCatalog>>) -> Assessing {
        Assessing { rules: rules.into(), catalog: catalog.into() }
    }
}

fn assessed_severity(event: &klaxon_domain::incident::IncidentEvent) -> String {
    match &event.change {
        klaxon_domain::incident::Change::SeverityAssessed(a) => a.severity.to_string(),
        _ => String::new(),
    }
}

impl Evaluator {
    /// An evaluator applying `rules` with the service `catalog`; a
    /// [`Live`] the caller keeps a clone of and sets changes what the next
    /// decision applies (what was assessed stays).
    pub fn new(
        log: impl Into<Bus>,
        rules: impl Into<Live<Rules>>,
        catalog: impl Into<Live<ServiceCatalog>>,
        clock: Arc<dyn Clock>,
    ) -> Evaluator {
        Evaluator { reactor: Reactor::new(log, Assessing::new(rules, catalog), clock), running: None }
    }

    /// Gives the evaluator the policy of the configuration it runs, so
    /// that [`Handle::lint_running`] can lint it. Call before taking a
    /// handle.
    pub fn with_running(self, running: RunningPolicy) -> Evaluator {
        Evaluator { running: Some(Arc::new(running)), ..self }
    }

    /// Saves its state to `file` every `every` records and at a clean
    /// stop, and resumes from it at start (see `klaxon_reactor::snapshot`).
    /// Call before taking a handle.
    pub fn with_snapshots(self, file: klaxon_reactor::SnapshotFile, every: std::num::NonZeroU64) -> Evaluator {
        Evaluator { reactor: self.reactor.with_snapshots(file, every), ..self }
    }

    /// Evicts a resolved or closed incident from memory `after` its latest
    /// event, and reads it back from the log when it is needed again (see
    /// `klaxon_reactor::Reactor::with_eviction`). Call before taking a
    /// handle.
    pub fn with_eviction(self, after: std::time::Duration) -> Evaluator {
        Evaluator { reactor: self.reactor.with_eviction(after), ..self }
    }

    /// A handle to it.
    pub fn handle(&self) -> Handle {
        Handle { reactor: self.reactor.handle(), running: self.running.clone() }
    }

    /// Folds the log from position 1 and assesses every incident that
    /// changed after its checkpoint, then every change, until `shutdown` or
    /// the log closes.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), Error> {
        Ok(self.reactor.run(shutdown).await?)
    }
}

impl Handle {
    /// Where the evaluator is in the log (for metrics and the barrier).
    pub fn reactor(&self) -> &klaxon_reactor::Handle<Assessing> {
        &self.reactor
    }

    /// Why the incident has (or would get) its severity, from the rules as
    /// configured, on the incident as currently known.
    pub async fn explain(&self, id: IncidentId) -> Result<(Incident, Explanation), Error> {
        self.reactor.caught_up().await?;
        let service = self.reactor.service();
        let incident = self
            .reactor
            .read_incident(id, |s| s.incidents.get(id).cloned())
            .await?
            .ok_or(Error::UnknownIncident(id))?;
        let explanation = service.rules.get().explain(&Facts::of(&incident, &service.catalog.get()));
        Ok((incident, explanation))
    }

    /// How hypothetical `facts` would be rated by the rules as configured
    /// (their service's tier is looked up in the catalog here). Nothing is
    /// written.
    pub fn explain_facts(&self, mut facts: Facts) -> Explanation {
        let service = self.reactor.service();
        facts.tier = facts.service.as_ref().and_then(|s| service.catalog.get().tier(s));
        service.rules.get().explain(&facts)
    }

    /// A dry run of the candidate configuration `config_toml` over
    /// `window`: parses and validates it (a problem is
    /// [`Error::Candidate`], naming the key), then reads the log from
    /// position 1 up to the head found at the start, [`REPLAY_PAGE`]
    /// records at a time, feeding incident and page events to a
    /// [`Replay`], and finishes at the window's end or the clock's now,
    /// whichever is earlier. Writes nothing.
    pub async fn test_policy(&self, config_toml: &str, window: Window) -> Result<Outcome, Error> {
        let (_, candidate) = policy::parse(config_toml)?;
        if let (Some(from), Some(until)) = (window.from, window.until) {
            if until <= from {
                return Err(ConfigError::new("until", "must be after from").into());
            }
        }
        let bus = self.reactor.bus();
        let head = bus.head().await.map_err(klaxon_reactor::Error::from)?;
        let mut replay = Replay::new(&candidate, window);
        let mut next = Position(1);
        while next <= head {
            let records = bus.read_all(next, REPLAY_PAGE).await.map_err(klaxon_reactor::Error::from)?;
            let Some(last) = records.last() else { break };
            next = Position(last.position.0 + 1);
            for record in records.iter().filter(|r| r.position <= head) {
                if let Some(event) = decode::incident(record)? {
                    replay.incident(&event)?;
                } else if let Some(event) = decode::event::<PageChange>(record)? {
                    replay.page(&event);
                }
            }
        }
        let now = self.reactor.now();
        let end = window.until.map_or(now, |until| until.min(now));
        Ok(replay.finish(end))
    }

    /// Lints the configuration the server runs, looking `days` ahead of
    /// the clock's now (0: [`LINT_DAYS_DEFAULT`]; at most
    /// [`policy::DAYS_MAX`]) with [`policy::lint`], the lint of `klaxon
    /// policy lint --config`. The severity rules are the live ones; the
    /// schedules are the configured ones with the overrides and swaps of
    /// their `schedule-<name>` streams applied (read from the log now,
    /// folded by [`Rosters`] as paging folds them), so a hole an override
    /// opened shows. Writes nothing.
    pub async fn lint_running(&self, days: u32) -> Result<(DateTime<Utc>, u32, Vec<Finding>), Error> {
        let days = match days {
            0 => LINT_DAYS_DEFAULT,
            d if d > policy::DAYS_MAX => {
                return Err(Error::Invalid { field: "days", reason: format!("at most {}", policy::DAYS_MAX) });
            }
            d => d,
        };
        let running = self.running.as_ref().ok_or(Error::NoRunningPolicy)?;
        let bus = self.reactor.bus();
        let mut rosters = Rosters::default();
        for schedule in running.policy.schedules.iter() {
            let stream = klaxon_reactor::streams::schedule(schedule.name());
            let mut next = klaxon_log::StreamVersion(1);
            loop {
                let records = bus.read_stream(&stream, next, REPLAY_PAGE).await.map_err(klaxon_reactor::Error::from)?;
                let Some(last) = records.last() else { break };
                next = klaxon_log::StreamVersion(last.version.0 + 1);
                for record in &records {
                    if let Some(event) = decode::roster(record)? {
                        rosters.evolve(&event);
                    }
                }
                if records.len() < REPLAY_PAGE {
                    break;
                }
            }
        }
        let service = self.reactor.service();
        let policy = Policy {
            rules: (*service.rules.get()).clone(),
            catalog: (*service.catalog.get()).clone(),
            schedules: rosters.effective(&running.policy.schedules),
            ..running.policy.clone()
        };
        let now = self.reactor.now();
        Ok((now, days, policy::lint(&running.sections, &policy, now, days)))
    }

    /// Everyone the running configuration pages, with the key naming them
    /// first (see [`policy::people`]); none without a running configuration.
    pub fn running_people(&self) -> Vec<(String, String)> {
        self.running.as_ref().map(|running| policy::people(&running.sections)).unwrap_or_default()
    }
}
