//! The incident as a decider: [`decide`] turns a [`Command`] into
//! [`IncidentEvent`]s or an [`Error`], and [`evolve`] folds events into the
//! [`Incident`] state.
//!
//! # Lifecycle
//!
//! ```text
//! Reported --declare--> Declared --mitigate--> Mitigated
//!                          |                      |
//!                          +------resolve---------+--> Resolved --validate--> Closed
//!                          ^                              |                    |
//!                          +-----------reopen-------------+--------------------+
//! ```
//!
//! An incident is *open* while Reported, Declared or Mitigated. The rules,
//! each with the stable id carried by [`Error::Rule`]:
//!
//! - `ReportIssue` creates the incident; on an existing one it is
//!   [`Error::AlreadyExists`]. Every other command on a missing incident is
//!   [`Error::UnknownIncident`].
//! - `MergeReport` needs an open incident (`merge.not_open`).
//! - `DeclareIncident` only from Reported (`declare.only_reported`).
//! - `OverrideSeverity` only while Declared or Mitigated
//!   (`override.requires_declared_or_mitigated`: declaring sets the first
//!   severity), and to a different level (`override.same_severity`).
//! - `AssignCommander` only while Declared or Mitigated
//!   (`assign.requires_declared_or_mitigated`), not to the current commander
//!   (`assign.same_commander`), not while a handoff is pending
//!   (`assign.handoff_pending`: cancel it first).
//! - `RequestHandoff` needs an open incident (`handoff.not_open`), a commander
//!   (`handoff.no_commander`), the commander as actor
//!   (`handoff.only_by_commander`), no pending handoff
//!   (`handoff.already_pending`) and someone else as recipient
//!   (`handoff.to_current_commander`).
//! - `AcceptHandoff`, `DeclineHandoff` and `CancelHandoff` need a pending
//!   handoff (`handoff.none_pending`); only the recipient may accept or
//!   decline (`handoff.accept_only_by_recipient`,
//!   `handoff.decline_only_by_recipient`). The commander changes only on
//!   acceptance: until then the first commander owns the incident.
//! - `AssignRole` needs an open incident (`role.not_open`), a role other than
//!   commander (`role.commander_reserved`), someone who does not hold the role
//!   yet (`role.already_assigned`) and room in the role
//!   (`role.full`, [`ROLE_HOLDERS_MAX`]).
//! - `PostUpdate` on anything but a Closed incident (`update.closed`).
//! - `RecordCustomerImpact` needs an open incident (`impact.not_open`).
//! - `Mitigate` only from Declared (`mitigate.only_declared`).
//! - `Resolve` from Declared or Mitigated; again on a Resolved or Closed
//!   incident is `resolve.already_resolved`, on a Reported one
//!   `resolve.requires_declared`.
//! - `Reopen` only from Resolved or Closed (`reopen.only_resolved_or_closed`),
//!   back to Declared.
//! - `ValidateResolution` only from Resolved (`validate.only_resolved`), to
//!   Closed.
//! - `JoinBridge` on anything but a Closed incident (`bridge.closed`), once
//!   (`bridge.already_joined`), while there is room (`bridge.full`,
//!   [`BRIDGE_PARTICIPANTS_MAX`]); `LeaveBridge` only when joined
//!   (`bridge.not_joined`).
//! - `RemoveRole` needs an open incident (`role.not_open`), a role other
//!   than commander (`role.commander_reserved`) and someone who holds it
//!   (`role.not_held`). `ReplaceRole` is a removal and an assignment in
//!   one write, each checked by its own rules (the new holder must not hold
//!   the role yet: `role.already_assigned`).
//! - `PageResponder` needs an open incident (`page.not_open`) and a
//!   reason; the paging service pages the target.
//! - `MarkNoise` in any status, including Closed (noise is often noticed
//!   late), but only once (`noise.already_marked`). It changes nothing but
//!   [`Incident::is_noise`]: the lifecycle goes on, and trend reports
//!   exclude the incident. Reopening keeps the mark.
//!
//! Fields are checked before rules: free text follows the one rule of
//! [`crate::text`] (trimmed, no control characters but newline and tab in
//! long text, not blank, bounded), refusing with [`Error::InvalidField`] or
//! [`Error::TooLarge`] named after the field.
//!
//! # History on reopening
//!
//! Reopening returns the incident to Declared and clears `mitigated_at`,
//! `resolved_at`, `closed_at` and their summaries, because they describe the
//! current attempt; `declared_at`, `commander_assigned_at` and the report
//! times keep their first values, and `reopen_count` grows. The full history
//! is always in the log.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::catalog::{Catalogued, ServiceCatalog, Tier};
use crate::ids::{
    ActorId, Audience, CustomerId, DedupKey, IncidentId, IncidentRole, ReportSource, ServiceName, Severity,
};
use crate::{Error, text};

mod command;
mod event;
mod projection;
#[cfg(test)]
mod tests;

pub use command::Command;
pub use event::{
    Change, CommanderAssigned, CustomerImpactRecorded, Declared, HandoffAccepted, HandoffCancelled, HandoffDeclined,
    HandoffRequested, IncidentEvent, KINDS, MarkedNoise, Mitigated, PageTarget, ParticipantJoined, ParticipantLeft,
    Reopened, ReportMerged, Reported, ResolutionValidated, Resolved, ResponderRequested, RoleAssigned, RoleRemoved,
    SeverityAssessed, SeverityOverridden, StatusUpdatePosted,
};
pub use projection::Incidents;

/// The longest title, in characters.
pub const TITLE_CHARS_MAX: usize = 200;
/// The longest report description, in characters.
pub const DESCRIPTION_CHARS_MAX: usize = 10_000;
/// The longest update text, summary, reason or note, in characters.
pub const NOTE_CHARS_MAX: usize = 4_000;
/// The most customers one command may list.
pub const CUSTOMERS_MAX: usize = 1_000;
/// The most labels one report may carry.
pub const LABELS_MAX: usize = 64;
/// The longest label name or value, in characters.
pub const LABEL_CHARS_MAX: usize = 256;
/// The most people on one incident bridge at once.
pub const BRIDGE_PARTICIPANTS_MAX: usize = 500;
/// The most people holding one role on one incident.
pub const ROLE_HOLDERS_MAX: usize = 50;

/// Where an incident is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Reported, not yet confirmed as an incident.
    Reported,
    /// Confirmed, with a severity; the impact is ongoing.
    Declared,
    /// The impact has stopped; the cause may remain.
    Mitigated,
    /// Resolved, awaiting validation.
    Resolved,
    /// The resolution was validated; the incident is closed.
    Closed,
}

impl Status {
    /// The status as the API spells it, such as `mitigated`.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Reported => "reported",
            Status::Declared => "declared",
            Status::Mitigated => "mitigated",
            Status::Resolved => "resolved",
            Status::Closed => "closed",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A handoff the commander requested and the recipient has not answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Handoff {
    /// The commander, who owns the incident until acceptance.
    pub from: ActorId,
    /// The intended next commander.
    pub to: ActorId,
    /// When the handoff was requested.
    pub requested_at: DateTime<Utc>,
}

/// The latest status update for one audience.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Update {
    /// The update's text.
    pub text: String,
    /// Who posted it.
    pub by: ActorId,
    /// When.
    pub at: DateTime<Utc>,
}

/// The state of one incident: the fold of its events by [`evolve`].
///
/// Read-only: it changes only by folding events, so two folds of the same
/// events are equal, which projections rely on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Incident {
    id: IncidentId,
    version: u64,
    status: Status,
    title: String,
    description: String,
    service: Option<ServiceName>,
    severity: Option<Severity>,
    severity_overridden: bool,
    commander: Option<ActorId>,
    handoff: Option<Handoff>,
    roles: BTreeMap<IncidentRole, BTreeSet<ActorId>>,
    participants: BTreeSet<ActorId>,
    customers_affected: u32,
    customers: BTreeSet<CustomerId>,
    multi_customer: bool,
    impact_summary: Option<String>,
    dedup_key: Option<DedupKey>,
    report_count: u32,
    source: ReportSource,
    reporter: ActorId,
    labels: BTreeMap<String, String>,
    first_reported_at: DateTime<Utc>,
    last_seen_at: DateTime<Utc>,
    started_at: Option<DateTime<Utc>>,
    declared_at: Option<DateTime<Utc>>,
    commander_assigned_at: Option<DateTime<Utc>>,
    mitigated_at: Option<DateTime<Utc>>,
    mitigation_summary: Option<String>,
    resolved_at: Option<DateTime<Utc>>,
    resolved_by: Option<ActorId>,
    resolution_summary: Option<String>,
    closed_at: Option<DateTime<Utc>>,
    reopen_count: u32,
    updates: BTreeMap<Audience, Update>,
    noise_reason: Option<String>,
    /// Absent in states saved before incidents recorded it.
    #[serde(default)]
    catalogued: Option<Catalogued>,
}

impl Incident {
    /// The incident's id.
    pub fn id(&self) -> IncidentId {
        self.id
    }
    /// The number of events folded, equal to the version of the incident's
    /// stream in the log.
    pub fn version(&self) -> u64 {
        self.version
    }
    /// Where the incident is in its lifecycle.
    pub fn status(&self) -> Status {
        self.status
    }
    /// Whether the incident is Reported, Declared or Mitigated.
    pub fn is_open(&self) -> bool {
        matches!(self.status, Status::Reported | Status::Declared | Status::Mitigated)
    }
    /// The title of the first report.
    pub fn title(&self) -> &str {
        &self.title
    }
    /// The description of the first report; may be empty.
    pub fn description(&self) -> &str {
        &self.description
    }
    /// The affected service, when the report named one.
    pub fn service(&self) -> Option<&ServiceName> {
        self.service.as_ref()
    }
    /// What the service catalog said of the incident's service when
    /// intake recorded its declaration, else its report (see
    /// [`Reported::catalogued`]); `None` when neither recorded it.
    pub fn catalogued(&self) -> Option<&Catalogued> {
        self.catalogued.as_ref()
    }
    /// The team the incident is filed under: the one its events recorded
    /// ([`Incident::catalogued`]), else, for an incident whose events
    /// recorded none (written before intake recorded it, or a service the
    /// catalog did not hold then), the one `catalog` gives its service.
    pub fn team<'a>(&'a self, catalog: &'a ServiceCatalog) -> Option<&'a str> {
        match &self.catalogued {
            Some(c) => Some(&c.team),
            None => self.service.as_ref().and_then(|s| catalog.team(s)),
        }
    }
    /// The tier of the incident's service: the one its events recorded,
    /// else the one `catalog` gives (as for [`Incident::team`]).
    pub fn tier(&self, catalog: &ServiceCatalog) -> Option<Tier> {
        match &self.catalogued {
            Some(c) => Some(c.tier),
            None => self.service.as_ref().and_then(|s| catalog.tier(s)),
        }
    }
    /// The current severity; `None` until declared.
    pub fn severity(&self) -> Option<Severity> {
        self.severity
    }
    /// Whether a manager overrode the declared severity. (The evaluator's
    /// assessments set the severity only before a declaration; see
    /// [`crate::severity::reassess`].)
    pub fn severity_overridden(&self) -> bool {
        self.severity_overridden
    }
    /// The incident commander (owner), if assigned.
    pub fn commander(&self) -> Option<&ActorId> {
        self.commander.as_ref()
    }
    /// The handoff awaiting the recipient's answer, if any.
    pub fn pending_handoff(&self) -> Option<&Handoff> {
        self.handoff.as_ref()
    }
    /// Who holds each role other than commander.
    pub fn roles(&self) -> &BTreeMap<IncidentRole, BTreeSet<ActorId>> {
        &self.roles
    }
    /// Who is on the bridge now.
    pub fn participants(&self) -> &BTreeSet<ActorId> {
        &self.participants
    }
    /// How many customers are affected, per the latest assessment.
    pub fn customers_affected(&self) -> u32 {
        self.customers_affected
    }
    /// The affected customers known by name, per the latest assessment.
    pub fn customers(&self) -> &BTreeSet<CustomerId> {
        &self.customers
    }
    /// Whether more than one customer is affected.
    pub fn multi_customer(&self) -> bool {
        self.multi_customer
    }
    /// The latest impact assessment in words.
    pub fn impact_summary(&self) -> Option<&str> {
        self.impact_summary.as_deref()
    }
    /// The key duplicate reports are merged under.
    pub fn dedup_key(&self) -> Option<&DedupKey> {
        self.dedup_key.as_ref()
    }
    /// How many reports the incident gathered: 1 plus the merged duplicates.
    pub fn report_count(&self) -> u32 {
        self.report_count
    }
    /// The channel of the first report.
    pub fn source(&self) -> ReportSource {
        self.source
    }
    /// Who made the first report.
    pub fn reporter(&self) -> &ActorId {
        &self.reporter
    }
    /// The first report's labels.
    pub fn labels(&self) -> &BTreeMap<String, String> {
        &self.labels
    }
    /// When the first report was recorded.
    pub fn first_reported_at(&self) -> DateTime<Utc> {
        self.first_reported_at
    }
    /// When the latest report (first or merged) was recorded.
    pub fn last_seen_at(&self) -> DateTime<Utc> {
        self.last_seen_at
    }
    /// When the problem started per the first report, if it said.
    pub fn started_at(&self) -> Option<DateTime<Utc>> {
        self.started_at
    }
    /// When the incident was declared.
    pub fn declared_at(&self) -> Option<DateTime<Utc>> {
        self.declared_at
    }
    /// When the incident first got a commander (for the ownership SLO).
    pub fn commander_assigned_at(&self) -> Option<DateTime<Utc>> {
        self.commander_assigned_at
    }
    /// When the current attempt mitigated the impact.
    pub fn mitigated_at(&self) -> Option<DateTime<Utc>> {
        self.mitigated_at
    }
    /// What mitigated the impact in the current attempt.
    pub fn mitigation_summary(&self) -> Option<&str> {
        self.mitigation_summary.as_deref()
    }
    /// When the current attempt resolved the incident.
    pub fn resolved_at(&self) -> Option<DateTime<Utc>> {
        self.resolved_at
    }
    /// How the current attempt resolved the incident.
    pub fn resolution_summary(&self) -> Option<&str> {
        self.resolution_summary.as_deref()
    }
    /// When the resolution was validated and the incident closed.
    pub fn closed_at(&self) -> Option<DateTime<Utc>> {
        self.closed_at
    }
    /// How many times the incident was reopened.
    pub fn reopen_count(&self) -> u32 {
        self.reopen_count
    }
    /// The latest status update for each audience that got one.
    pub fn updates(&self) -> &BTreeMap<Audience, Update> {
        &self.updates
    }
    /// The latest status update for `audience`, if any.
    pub fn latest_update(&self, audience: Audience) -> Option<&Update> {
        self.updates.get(&audience)
    }
    /// Whether the incident was marked as noise, which excludes it from
    /// trend reports.
    pub fn is_noise(&self) -> bool {
        self.noise_reason.is_some()
    }
    /// Why the incident was marked as noise, if it was.
    pub fn noise_reason(&self) -> Option<&str> {
        self.noise_reason.as_deref()
    }

    /// The state right after the first report.
    fn reported(event: &IncidentEvent, r: &Reported) -> Incident {
        Incident {
            id: event.incident,
            version: 1,
            status: Status::Reported,
            title: r.title.clone(),
            description: r.description.clone(),
            service: r.service.clone(),
            severity: None,
            severity_overridden: false,
            commander: None,
            handoff: None,
            roles: BTreeMap::new(),
            participants: BTreeSet::new(),
            customers_affected: u32::try_from(r.customers.len()).unwrap_or(u32::MAX),
            customers: r.customers.clone(),
            multi_customer: r.customers.len() > 1,
            impact_summary: None,
            dedup_key: r.dedup_key.clone(),
            report_count: 1,
            source: r.source,
            reporter: r.reporter.clone(),
            labels: r.labels.clone(),
            first_reported_at: event.at,
            last_seen_at: event.at,
            started_at: r.started_at,
            declared_at: None,
            commander_assigned_at: None,
            mitigated_at: None,
            mitigation_summary: None,
            resolved_at: None,
            resolved_by: None,
            resolution_summary: None,
            closed_at: None,
            reopen_count: 0,
            updates: BTreeMap::new(),
            noise_reason: None,
            catalogued: r.catalogued.clone(),
        }
    }

    /// Folds one event of this incident, other than its first report.
    fn apply(&mut self, event: &IncidentEvent) {
        let at = event.at;
        match &event.change {
            Change::Reported(_) => debug_assert!(false, "{} reported twice", self.id),
            Change::ReportMerged(m) => {
                self.report_count = m.count;
                self.last_seen_at = at;
            }
            Change::Declared(d) => {
                self.status = Status::Declared;
                self.severity = Some(d.severity);
                self.declared_at.get_or_insert(at);
                if let Some(catalogued) = &d.catalogued {
                    self.catalogued = Some(catalogued.clone());
                }
            }
            Change::SeverityOverridden(o) => {
                self.severity = Some(o.to);
                self.severity_overridden = true;
            }
            Change::SeverityAssessed(a) => {
                // Only until a person sets the severity: declaring is the
                // first time (an incident is never Reported again; an
                // override needs a declaration), and an assessment decided
                // on the report may land after it.
                if self.status == Status::Reported && !self.severity_overridden {
                    self.severity = Some(a.severity);
                }
            }
            Change::CommanderAssigned(c) => {
                self.commander = Some(c.commander.clone());
                self.commander_assigned_at.get_or_insert(at);
            }
            Change::HandoffRequested(h) => {
                self.handoff = Some(Handoff { from: h.from.clone(), to: h.to.clone(), requested_at: at });
            }
            Change::HandoffAccepted(h) => {
                self.handoff = None;
                self.commander = Some(h.to.clone());
                self.commander_assigned_at.get_or_insert(at);
            }
            Change::HandoffDeclined(_) | Change::HandoffCancelled(_) => self.handoff = None,
            Change::RoleAssigned(r) => {
                self.roles.entry(r.role).or_default().insert(r.person.clone());
            }
            Change::StatusUpdatePosted(u) => {
                self.updates.insert(u.audience, Update { text: u.text.clone(), by: event.by.clone(), at });
            }
            Change::CustomerImpactRecorded(c) => {
                self.customers_affected = c.customers_affected;
                self.customers = c.customers.clone();
                self.multi_customer = c.multi_customer;
                self.impact_summary = Some(c.summary.clone());
            }
            Change::Mitigated(m) => {
                self.status = Status::Mitigated;
                self.mitigated_at = Some(at);
                self.mitigation_summary = Some(m.summary.clone());
            }
            Change::Resolved(r) => {
                self.status = Status::Resolved;
                self.resolved_at = Some(at);
                self.resolved_by = Some(event.by.clone());
                self.resolution_summary = Some(r.summary.clone());
            }
            Change::Reopened(_) => {
                self.status = Status::Declared;
                self.mitigated_at = None;
                self.mitigation_summary = None;
                self.resolved_at = None;
                self.resolved_by = None;
                self.resolution_summary = None;
                self.closed_at = None;
                self.reopen_count = self.reopen_count.saturating_add(1);
            }
            Change::ResolutionValidated(_) => {
                self.status = Status::Closed;
                self.closed_at = Some(at);
            }
            Change::ParticipantJoined(p) => {
                self.participants.insert(p.participant.clone());
            }
            Change::ParticipantLeft(p) => {
                self.participants.remove(&p.participant);
            }
            Change::MarkedNoise(n) => self.noise_reason = Some(n.reason.clone()),
            Change::ResponderRequested(_) => {}
            Change::RoleRemoved(r) => {
                if let Some(holders) = self.roles.get_mut(&r.role) {
                    holders.remove(&r.person);
                    if holders.is_empty() {
                        self.roles.remove(&r.role);
                    }
                }
            }
        }
    }
}

/// The rule of `[intake] validation = "other_manager"`: whoever validates
/// a resolution must not be who resolved it (`validate.other_manager`).
/// Checked by intake before [`decide`] when the option is on; passes when
/// the incident is not resolved (then `decide` says why not).
pub fn check_other_validator(state: &Incident, validator: &ActorId) -> Result<(), Error> {
    match &state.resolved_by {
        Some(resolver) if state.status == Status::Resolved && resolver == validator => Err(Error::Rule {
            rule: "validate.other_manager",
            state: state.status,
            message: format!(
                "{validator} resolved {}; another manager must validate the resolution ([intake] validation = \"other_manager\")",
                state.id
            ),
        }),
        _ => Ok(()),
    }
}

/// Folds one event into the state of its incident.
///
/// Total: a first report on `None` creates the incident; any other event on
/// `None` is a bug in the caller (events are folded in stream order) and
/// leaves `None`, asserting in debug builds. The version grows by exactly one
/// per event folded, so it equals the stream version.
pub fn evolve(state: Option<Incident>, event: &IncidentEvent) -> Option<Incident> {
    match (state, &event.change) {
        (None, Change::Reported(reported)) => Some(Incident::reported(event, reported)),
        (None, _) => {
            debug_assert!(false, "{} for {} before its report", event.kind(), event.incident);
            None
        }
        (Some(mut incident), _) => {
            debug_assert_eq!(incident.id, event.incident, "event folded into another incident");
            incident.apply(event);
            incident.version += 1;
            Some(incident)
        }
    }
}

/// Decides what `actor` asking for `command` on `incident` means, given the
/// incident's current `state` (`None` if it was never reported).
///
/// Returns the events to append (all stamped `at = now`, `by = actor`) or why
/// nothing may be written. Pure: it reads no clock and no randomness, so the
/// same inputs always give the same answer. Authorization by role happens at
/// the edge; the rules here are the ones of the incident itself, listed in
/// the [module documentation](self).
pub fn decide(
    state: Option<&Incident>,
    command: &Command,
    incident: &IncidentId,
    actor: &ActorId,
    now: DateTime<Utc>,
) -> Result<Vec<IncidentEvent>, Error> {
    let change = match state {
        None => match command {
            Command::ReportIssue { .. } => report(command)?,
            _ => return Err(Error::UnknownIncident(*incident)),
        },
        Some(state) => {
            debug_assert_eq!(state.id, *incident, "decide given another incident's state");
            if let Command::ReplaceRole { role, from, to } = command {
                let event = |change| IncidentEvent { incident: *incident, at: now, by: actor.clone(), change };
                let removed =
                    decide_existing(state, &Command::RemoveRole { role: *role, person: from.clone() }, actor)?;
                let mut after = state.clone();
                after.apply(&event(removed.clone()));
                let assigned =
                    decide_existing(&after, &Command::AssignRole { role: *role, person: to.clone() }, actor)?;
                return Ok(vec![event(removed), event(assigned)]);
            }
            decide_existing(state, command, actor)?
        }
    };
    Ok(vec![IncidentEvent { incident: *incident, at: now, by: actor.clone(), change }])
}

/// Validates a first report.
fn report(command: &Command) -> Result<Change, Error> {
    let Command::ReportIssue {
        source,
        reporter,
        title,
        description,
        service,
        customers,
        labels,
        dedup_key,
        started_at,
    } = command
    else {
        unreachable!("only called for ReportIssue")
    };
    let title = text::TITLE.check("title", title)?;
    let description = text::DESCRIPTION.check("description", description)?;
    check_len("customers", customers.len(), CUSTOMERS_MAX)?;
    let labels = check_labels(labels)?;
    Ok(Change::Reported(Reported {
        source: *source,
        reporter: reporter.clone(),
        title,
        description,
        service: service.clone(),
        customers: customers.iter().cloned().collect(),
        labels,
        dedup_key: dedup_key.clone(),
        started_at: *started_at,
        catalogued: None,
    }))
}

/// Records in `events`, decided on `state` (`None` for a first report),
/// what `catalog` says now of the incident's service: its team and tier go
/// into a report ([`Reported::catalogued`]) and a declaration
/// ([`Declared::catalogued`]). `decide` leaves them out, so that it needs
/// no catalog; intake calls this with the catalog in force when it
/// records the events, and the incident keeps them whatever the catalog
/// says later. A service the catalog does not hold records nothing.
pub fn record_catalog(events: &mut [IncidentEvent], state: Option<&Incident>, catalog: &ServiceCatalog) {
    for event in events {
        match &mut event.change {
            Change::Reported(r) => r.catalogued = r.service.as_ref().and_then(|s| catalog.catalogued(s)),
            Change::Declared(d) => {
                d.catalogued = state.and_then(Incident::service).and_then(|s| catalog.catalogued(s));
            }
            _ => {}
        }
    }
}

/// Decides a command on an incident that exists.
fn decide_existing(s: &Incident, command: &Command, actor: &ActorId) -> Result<Change, Error> {
    let status = s.status;
    let ensure = |ok: bool, rule: &'static str, message: &dyn Fn() -> String| {
        if ok { Ok(()) } else { Err(Error::Rule { rule, state: status, message: message() }) }
    };
    let declared_or_mitigated = matches!(status, Status::Declared | Status::Mitigated);
    Ok(match command {
        Command::ReportIssue { .. } => return Err(Error::AlreadyExists(s.id)),
        Command::MergeReport { source, reporter, title, dedup_key } => {
            let title = text::TITLE.check("title", title)?;
            ensure(s.is_open(), "merge.not_open", &|| format!("{} is {status}; report a new issue instead", s.id))?;
            let count = s.report_count.checked_add(1).ok_or(Error::TooLarge {
                field: "report_count",
                len: s.report_count as usize + 1,
                max: u32::MAX as usize,
            })?;
            Change::ReportMerged(ReportMerged {
                count,
                source: *source,
                reporter: reporter.clone(),
                title,
                dedup_key: dedup_key.clone(),
            })
        }
        Command::DeclareIncident { severity } => {
            ensure(status == Status::Reported, "declare.only_reported", &|| {
                format!("only a reported issue can be declared; {} is already {status}", s.id)
            })?;
            Change::Declared(Declared { severity: *severity, catalogued: None })
        }
        Command::OverrideSeverity { severity, reason } => {
            let reason = text::NOTE.check("reason", reason)?;
            ensure(declared_or_mitigated, "override.requires_declared_or_mitigated", &|| {
                "the severity can be overridden only on a declared or mitigated incident; declare it first".into()
            })?;
            ensure(s.severity != Some(*severity), "override.same_severity", &|| {
                format!("the severity is already {severity}")
            })?;
            Change::SeverityOverridden(SeverityOverridden { from: s.severity, to: *severity, reason })
        }
        Command::AssignCommander { commander } => {
            ensure(declared_or_mitigated, "assign.requires_declared_or_mitigated", &|| {
                "a commander is assigned only on a declared or mitigated incident".into()
            })?;
            ensure(s.handoff.is_none(), "assign.handoff_pending", &|| {
                "a handoff is pending; it must be accepted, declined or cancelled first".into()
            })?;
            ensure(s.commander.as_ref() != Some(commander), "assign.same_commander", &|| {
                format!("{commander} is already the commander")
            })?;
            Change::CommanderAssigned(CommanderAssigned { commander: commander.clone(), previous: s.commander.clone() })
        }
        Command::RequestHandoff { to } => {
            ensure(s.is_open(), "handoff.not_open", &|| "only an open incident can be handed off".into())?;
            let Some(commander) = &s.commander else {
                return Err(Error::Rule {
                    rule: "handoff.no_commander",
                    state: status,
                    message: "there is no commander to hand off from; assign one".into(),
                });
            };
            ensure(actor == commander, "handoff.only_by_commander", &|| {
                format!("only the commander ({commander}) can hand the incident off, not {actor}")
            })?;
            ensure(s.handoff.is_none(), "handoff.already_pending", &|| "a handoff is already pending".into())?;
            ensure(to != commander, "handoff.to_current_commander", &|| format!("{to} is already the commander"))?;
            Change::HandoffRequested(HandoffRequested { from: commander.clone(), to: to.clone() })
        }
        Command::AcceptHandoff => {
            let handoff = pending(s)?;
            ensure(*actor == handoff.to, "handoff.accept_only_by_recipient", &|| {
                format!("the handoff is addressed to {}, not {actor}", handoff.to)
            })?;
            Change::HandoffAccepted(HandoffAccepted { from: handoff.from.clone(), to: handoff.to.clone() })
        }
        Command::DeclineHandoff { reason } => {
            let reason = text::NOTE.check("reason", reason)?;
            let handoff = pending(s)?;
            ensure(*actor == handoff.to, "handoff.decline_only_by_recipient", &|| {
                format!("the handoff is addressed to {}, not {actor}", handoff.to)
            })?;
            Change::HandoffDeclined(HandoffDeclined { from: handoff.from.clone(), to: handoff.to.clone(), reason })
        }
        Command::CancelHandoff { reason } => {
            let reason = text::NOTE.check("reason", reason)?;
            let handoff = pending(s)?;
            Change::HandoffCancelled(HandoffCancelled { from: handoff.from.clone(), to: handoff.to.clone(), reason })
        }
        Command::AssignRole { role, person } => {
            ensure(s.is_open(), "role.not_open", &|| "roles are assigned only on an open incident".into())?;
            ensure(*role != IncidentRole::Commander, "role.commander_reserved", &|| {
                "the commander is assigned with AssignCommander or a handoff".into()
            })?;
            let holders = s.roles.get(role).map_or(0, BTreeSet::len);
            ensure(!s.roles.get(role).is_some_and(|h| h.contains(person)), "role.already_assigned", &|| {
                format!("{person} already holds the role {role:?}")
            })?;
            ensure(holders < ROLE_HOLDERS_MAX, "role.full", &|| {
                format!("the role {role:?} already has {ROLE_HOLDERS_MAX} holders")
            })?;
            Change::RoleAssigned(RoleAssigned { role: *role, person: person.clone() })
        }
        Command::PostUpdate { audience, text: body } => {
            let body = text::NOTE.check("text", body)?;
            ensure(status != Status::Closed, "update.closed", &|| {
                "a closed incident takes no updates; reopen it".into()
            })?;
            Change::StatusUpdatePosted(StatusUpdatePosted { audience: *audience, text: body })
        }
        Command::RecordCustomerImpact { customers_affected, customers, multi_customer, summary } => {
            let summary = text::NOTE.check("summary", summary)?;
            check_len("customers", customers.len(), CUSTOMERS_MAX)?;
            let customers: BTreeSet<CustomerId> = customers.iter().cloned().collect();
            if (*customers_affected as usize) < customers.len() {
                return Err(Error::invalid(
                    "customers_affected",
                    format!("{customers_affected} is fewer than the {} customers listed", customers.len()),
                ));
            }
            ensure(s.is_open(), "impact.not_open", &|| "impact is recorded only on an open incident".into())?;
            Change::CustomerImpactRecorded(CustomerImpactRecorded {
                customers_affected: *customers_affected,
                multi_customer: *multi_customer || *customers_affected > 1,
                customers,
                summary,
            })
        }
        Command::Mitigate { summary } => {
            let summary = text::NOTE.check("summary", summary)?;
            ensure(status == Status::Declared, "mitigate.only_declared", &|| {
                format!("only a declared incident can be mitigated; {} is {status}", s.id)
            })?;
            Change::Mitigated(Mitigated { summary })
        }
        Command::Resolve { summary } => {
            let summary = text::NOTE.check("summary", summary)?;
            ensure(!matches!(status, Status::Resolved | Status::Closed), "resolve.already_resolved", &|| {
                format!("{} is already {status}", s.id)
            })?;
            ensure(declared_or_mitigated, "resolve.requires_declared", &|| {
                "a reported issue must be declared before it is resolved".into()
            })?;
            Change::Resolved(Resolved { summary })
        }
        Command::Reopen { reason } => {
            let reason = text::NOTE.check("reason", reason)?;
            ensure(matches!(status, Status::Resolved | Status::Closed), "reopen.only_resolved_or_closed", &|| {
                format!("only a resolved or closed incident can be reopened; {} is {status}", s.id)
            })?;
            Change::Reopened(Reopened { reason })
        }
        Command::ValidateResolution { note } => {
            let note = text::NOTE.check("note", note)?;
            ensure(status == Status::Resolved, "validate.only_resolved", &|| {
                format!("only a resolved incident can be validated; {} is {status}", s.id)
            })?;
            Change::ResolutionValidated(ResolutionValidated { note })
        }
        Command::JoinBridge { participant, role } => {
            ensure(status != Status::Closed, "bridge.closed", &|| "the bridge of a closed incident is closed".into())?;
            ensure(!s.participants.contains(participant), "bridge.already_joined", &|| {
                format!("{participant} is already on the bridge")
            })?;
            ensure(s.participants.len() < BRIDGE_PARTICIPANTS_MAX, "bridge.full", &|| {
                format!("the bridge already has {BRIDGE_PARTICIPANTS_MAX} participants")
            })?;
            Change::ParticipantJoined(ParticipantJoined { participant: participant.clone(), role: *role })
        }
        Command::LeaveBridge { participant } => {
            ensure(s.participants.contains(participant), "bridge.not_joined", &|| {
                format!("{participant} is not on the bridge")
            })?;
            Change::ParticipantLeft(ParticipantLeft { participant: participant.clone() })
        }
        Command::MarkNoise { reason } => {
            let reason = text::NOTE.check("reason", reason)?;
            ensure(s.noise_reason.is_none(), "noise.already_marked", &|| {
                format!("{} is already marked as noise", s.id)
            })?;
            Change::MarkedNoise(MarkedNoise { reason })
        }
        Command::RemoveRole { role, person } => {
            ensure(s.is_open(), "role.not_open", &|| "roles are changed only on an open incident".into())?;
            ensure(*role != IncidentRole::Commander, "role.commander_reserved", &|| {
                "the commander changes with AssignCommander or a handoff".into()
            })?;
            ensure(s.roles.get(role).is_some_and(|h| h.contains(person)), "role.not_held", &|| {
                format!("{person} does not hold the role {}", role.as_str())
            })?;
            Change::RoleRemoved(RoleRemoved { role: *role, person: person.clone() })
        }
        Command::ReplaceRole { .. } => unreachable!("decided by `decide` as a removal and an assignment"),
        Command::PageResponder { target, reason } => {
            let reason = text::NOTE.check("reason", reason)?;
            if let PageTarget::Schedule(name) | PageTarget::Team(name) = target {
                PageTarget::named("target", matches!(target, PageTarget::Team(_)), name)?;
            }
            ensure(s.is_open(), "page.not_open", &|| {
                format!("{} is {status}; only an open incident pages anyone", s.id)
            })?;
            Change::ResponderRequested(ResponderRequested { target: target.clone(), reason })
        }
    })
}

/// The pending handoff, or the `handoff.none_pending` rule error.
fn pending(s: &Incident) -> Result<&Handoff, Error> {
    s.handoff.as_ref().ok_or_else(|| Error::Rule {
        rule: "handoff.none_pending",
        state: s.status,
        message: format!("{} has no pending handoff", s.id),
    })
}

/// Checks a size against its limit.
pub(crate) fn check_len(field: &'static str, len: usize, max: usize) -> Result<(), Error> {
    if len > max { Err(Error::TooLarge { field, len, max }) } else { Ok(()) }
}

/// Checks a report's labels: at most [`LABELS_MAX`], names and values by
/// the text rule ([`text::LABEL_NAME`], [`text::LABEL_VALUE`]). Values are
/// kept trimmed; a name with spaces at its ends is refused rather than
/// trimmed, since the trimmed name could be another label's.
fn check_labels(labels: &BTreeMap<String, String>) -> Result<BTreeMap<String, String>, Error> {
    check_len("labels", labels.len(), LABELS_MAX)?;
    let mut checked = BTreeMap::new();
    for (name, value) in labels {
        if text::LABEL_NAME.check("labels", name)? != *name {
            return Err(Error::invalid("labels", format!("label name {name:?} has spaces at its ends")));
        }
        checked.insert(name.clone(), text::LABEL_VALUE.check("labels", value)?);
    }
    Ok(checked)
}
