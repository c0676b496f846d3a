//! Incident events: past-tense facts, their stable persisted names and their
//! log format.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::catalog::Catalogued;
use crate::envelope::{Event, changes};
use crate::ids::{ActorId, Audience, CustomerId, DedupKey, IncidentRole, ReportSource, ServiceName, Severity};

#[cfg(test)]
mod tests;

/// One fact about one incident: what changed, when and by whom (the `at`
/// is the `now` given to `decide`, the `by` the principal whose command
/// produced the fact).
///
/// The log stores it as a record of kind [`IncidentEvent::kind`] whose data is
/// [`IncidentEvent::to_json`]: one flat JSON object holding `incident`, `at`
/// (RFC 3339, UTC) and `by`, followed by the fields of the change.
pub type IncidentEvent = Event<Change>;

changes! {
    /// What an [`IncidentEvent`] records: one variant per kind of fact, each
    /// holding a struct of the same name.
    pub enum Change for IncidentEvent;
    /// Every incident event kind, in lifecycle order. A kind's name and
    /// meaning never change; a new schema gets a new `.vN` name.
    pub const KINDS;
    /// An issue was reported and the incident created.
    Reported => "incident.reported.v1",
    /// A duplicate report was merged into the incident.
    ReportMerged => "incident.report_merged.v1",
    /// The issue was confirmed as an incident of some severity.
    Declared => "incident.declared.v1",
    /// A manager overrode the severity.
    SeverityOverridden => "incident.severity_overridden.v1",
    /// The severity evaluator assessed the severity from the incident's facts.
    SeverityAssessed => "incident.severity_assessed.v1",
    /// A commander was assigned by a manager.
    CommanderAssigned => "incident.commander_assigned.v1",
    /// The commander asked someone to take the incident over.
    HandoffRequested => "incident.handoff_requested.v1",
    /// The recipient took the incident over.
    HandoffAccepted => "incident.handoff_accepted.v1",
    /// The recipient declined the handoff.
    HandoffDeclined => "incident.handoff_declined.v1",
    /// A pending handoff was withdrawn before the recipient answered.
    HandoffCancelled => "incident.handoff_cancelled.v1",
    /// Someone was given a role on the incident team.
    RoleAssigned => "incident.role_assigned.v1",
    /// A status update was posted for an audience.
    StatusUpdatePosted => "incident.status_update_posted.v1",
    /// The customer impact was assessed.
    CustomerImpactRecorded => "incident.customer_impact_recorded.v1",
    /// The impact was stopped, though the cause may remain.
    Mitigated => "incident.mitigated.v1",
    /// The incident was resolved.
    Resolved => "incident.resolved.v1",
    /// A resolved or closed incident was reopened.
    Reopened => "incident.reopened.v1",
    /// The resolution was validated and the incident closed.
    ResolutionValidated => "incident.resolution_validated.v1",
    /// Someone joined the incident bridge.
    ParticipantJoined => "incident.participant_joined.v1",
    /// Someone left the incident bridge.
    ParticipantLeft => "incident.participant_left.v1",
    /// The incident was marked as noise; trend reports exclude it.
    MarkedNoise => "incident.marked_noise.v1",
    /// A manager asked for someone to be paged into the incident; the
    /// paging service carries it out.
    ResponderRequested => "incident.responder_requested.v1",
    /// Someone no longer holds a role on the incident team.
    RoleRemoved => "incident.role_removed.v1",
}

/// The fields of [`Change::RoleRemoved`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleRemoved {
    /// The role, never [`IncidentRole::Commander`].
    pub role: IncidentRole,
    /// Who held it and no longer does.
    pub person: ActorId,
}

/// Whom a manager pulls into an incident: a person directly, whoever is on
/// call in a schedule, or a team through its escalation policy. Stored as
/// `{"person": "ana"}`, `{"schedule": "db-primary"}` or `{"team": "search"}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum PageTarget {
    /// This person, paged directly.
    Person(ActorId),
    /// Whoever is on call in the named schedule when the page is decided.
    Schedule(String),
    /// The team's escalation policy (see
    /// [`crate::paging::PagingConfig::policy_for_team`]).
    Team(String),
}

impl PageTarget {
    /// The longest schedule or team name a target may carry, in characters.
    pub const NAME_CHARS_MAX: usize = 64;

    /// A schedule or team target whose name is well formed: not empty, no
    /// whitespace or control characters, at most [`Self::NAME_CHARS_MAX`]
    /// characters. `field` names the request field in the error.
    pub fn named(field: &'static str, team: bool, name: &str) -> Result<PageTarget, crate::Error> {
        if name.is_empty() {
            return Err(crate::Error::invalid(field, "must not be empty"));
        }
        if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(crate::Error::invalid(field, format!("{name:?} must not contain whitespace")));
        }
        if name.chars().count() > Self::NAME_CHARS_MAX {
            return Err(crate::Error::invalid(
                field,
                format!("{name:?} is longer than {} characters", Self::NAME_CHARS_MAX),
            ));
        }
        Ok(if team { PageTarget::Team(name.to_owned()) } else { PageTarget::Schedule(name.to_owned()) })
    }
}

impl std::fmt::Display for PageTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PageTarget::Person(p) => write!(f, "{p}"),
            PageTarget::Schedule(s) => write!(f, "the on-call of {s}"),
            PageTarget::Team(t) => write!(f, "team {t}"),
        }
    }
}

/// The fields of [`Change::ResponderRequested`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResponderRequested {
    /// Whom to page.
    pub target: PageTarget,
    /// Why they are needed, trimmed; travels with the page.
    pub reason: String,
}

/// The fields of [`Change::Reported`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reported {
    /// The channel the report came in through.
    pub source: ReportSource,
    /// Who reported the issue (the event's `by` is who submitted it).
    pub reporter: ActorId,
    /// A one-line title, trimmed.
    pub title: String,
    /// A longer description, trimmed; may be empty.
    pub description: String,
    /// The affected service, when known.
    pub service: Option<ServiceName>,
    /// The customers known to be affected, sorted and without duplicates.
    pub customers: BTreeSet<CustomerId>,
    /// Free-form labels, such as an alert's labels.
    pub labels: BTreeMap<String, String>,
    /// The key duplicate reports will be merged under.
    pub dedup_key: Option<DedupKey>,
    /// When the problem itself started, if the report says (an alert's
    /// `startsAt`); used to measure time to detect.
    pub started_at: Option<DateTime<Utc>>,
    /// The team and tier the service catalog gave `service` when intake
    /// recorded the report (see [`crate::incident::record_catalog`]): the
    /// incident's team in trends and its tier for the severity rules, even
    /// after a reload changes the catalog. Absent without a service, for a
    /// service the catalog does not hold, and in records written before
    /// intake recorded it (the catalog in effect applies then).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catalogued: Option<Catalogued>,
}

/// The fields of [`Change::ReportMerged`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportMerged {
    /// The incident's report count after the merge (the first report is 1).
    pub count: u32,
    /// The channel the duplicate came in through.
    pub source: ReportSource,
    /// Who reported the duplicate.
    pub reporter: ActorId,
    /// The duplicate's title, trimmed.
    pub title: String,
    /// The duplicate's dedup key, if it had one.
    pub dedup_key: Option<DedupKey>,
}

/// The fields of [`Change::Declared`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Declared {
    /// The severity declared.
    pub severity: Severity,
    /// The team and tier the service catalog gave the incident's service
    /// when intake recorded the declaration; it replaces the report's (see
    /// [`Reported::catalogued`]). Absent as there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catalogued: Option<Catalogued>,
}

/// The fields of [`Change::SeverityOverridden`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeverityOverridden {
    /// The severity before, if there was one.
    pub from: Option<Severity>,
    /// The severity after.
    pub to: Severity,
    /// Why, for the audit trail.
    pub reason: String,
}

/// The fields of [`Change::SeverityAssessed`]: the evaluator's result. It
/// sets the incident's severity only while the incident is Reported: once a
/// manager declared it (and so chose a severity), a late assessment is kept
/// in the log but changes nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeverityAssessed {
    /// The assessed severity.
    pub severity: Severity,
    /// The id of the rule that matched; `None` when the default applied.
    pub rule: Option<String>,
    /// The rule's (or the default's) human reason.
    pub reason: String,
    /// Each condition that held, in words.
    pub reasons: Vec<String>,
}

/// The fields of [`Change::CommanderAssigned`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommanderAssigned {
    /// The new commander.
    pub commander: ActorId,
    /// The commander replaced, if any.
    pub previous: Option<ActorId>,
}

/// The fields of [`Change::HandoffRequested`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HandoffRequested {
    /// The current commander, who keeps the incident until acceptance.
    pub from: ActorId,
    /// The intended next commander.
    pub to: ActorId,
}

/// The fields of [`Change::HandoffAccepted`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HandoffAccepted {
    /// The previous commander.
    pub from: ActorId,
    /// The new commander.
    pub to: ActorId,
}

/// The fields of [`Change::HandoffDeclined`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HandoffDeclined {
    /// The commander, who keeps the incident.
    pub from: ActorId,
    /// The recipient who declined.
    pub to: ActorId,
    /// Why.
    pub reason: String,
}

/// The fields of [`Change::HandoffCancelled`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HandoffCancelled {
    /// The commander, who keeps the incident.
    pub from: ActorId,
    /// The recipient who had not answered.
    pub to: ActorId,
    /// Why.
    pub reason: String,
}

/// The fields of [`Change::RoleAssigned`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleAssigned {
    /// The role, never [`IncidentRole::Commander`].
    pub role: IncidentRole,
    /// Who holds it now, alongside anyone who already did.
    pub person: ActorId,
}

/// The fields of [`Change::StatusUpdatePosted`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusUpdatePosted {
    /// Who the update is for.
    pub audience: Audience,
    /// The update, trimmed.
    pub text: String,
}

/// The fields of [`Change::CustomerImpactRecorded`]. The assessment replaces
/// any earlier one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomerImpactRecorded {
    /// How many customers are affected, at least `customers.len()`.
    pub customers_affected: u32,
    /// The affected customers known by name, sorted and without duplicates.
    pub customers: BTreeSet<CustomerId>,
    /// Whether more than one customer is affected, which makes the incident
    /// worth a company-wide post.
    pub multi_customer: bool,
    /// The impact in words, trimmed.
    pub summary: String,
}

/// The fields of [`Change::Mitigated`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mitigated {
    /// What stopped the impact, trimmed.
    pub summary: String,
}

/// The fields of [`Change::Resolved`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resolved {
    /// How it was resolved, trimmed.
    pub summary: String,
}

/// The fields of [`Change::Reopened`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reopened {
    /// Why the resolution did not hold, trimmed.
    pub reason: String,
}

/// The fields of [`Change::ResolutionValidated`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResolutionValidated {
    /// How the resolution was checked, trimmed.
    pub note: String,
}

/// The fields of [`Change::ParticipantJoined`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParticipantJoined {
    /// Who joined the bridge.
    pub participant: ActorId,
    /// The role they joined in, if any.
    pub role: Option<IncidentRole>,
}

/// The fields of [`Change::ParticipantLeft`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParticipantLeft {
    /// Who left the bridge.
    pub participant: ActorId,
}

/// The fields of [`Change::MarkedNoise`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MarkedNoise {
    /// Why the incident is noise, trimmed.
    pub reason: String,
}

impl IncidentEvent {
    /// One readable sentence saying what happened, for timelines and the
    /// bridge, such as `alice declared INC-7 SEV1`.
    pub fn summary(&self) -> String {
        let by = &self.by;
        let id = self.incident;
        match &self.change {
            Change::Reported(r) => {
                let service = r.service.as_ref().map(|s| format!(" on {s}")).unwrap_or_default();
                format!("{} reported {id}{service} via {}: {}", r.reporter, r.source, r.title)
            }
            Change::ReportMerged(m) => {
                format!("{} reported it again via {} (report {}): {}", m.reporter, m.source, m.count, m.title)
            }
            Change::Declared(d) => format!("{by} declared {id} {}", d.severity),
            Change::SeverityOverridden(o) => match o.from {
                Some(from) => format!("{by} changed the severity from {from} to {}: {}", o.to, o.reason),
                None => format!("{by} set the severity to {}: {}", o.to, o.reason),
            },
            Change::SeverityAssessed(a) => match &a.rule {
                Some(rule) => format!("{by} assessed {} (rule {rule}): {}", a.severity, a.reason),
                None => format!("{by} assessed {} (default): {}", a.severity, a.reason),
            },
            Change::CommanderAssigned(c) => match &c.previous {
                Some(previous) => format!("{by} made {} incident commander (was {previous})", c.commander),
                None => format!("{by} made {} incident commander", c.commander),
            },
            Change::HandoffRequested(h) => format!("{} asked {} to take over as commander", h.from, h.to),
            Change::HandoffAccepted(h) => format!("{} accepted the handoff from {} and is now commander", h.to, h.from),
            Change::HandoffDeclined(h) => format!("{} declined the handoff from {}: {}", h.to, h.from, h.reason),
            Change::HandoffCancelled(h) => {
                format!("{by} cancelled the handoff from {} to {}: {}", h.from, h.to, h.reason)
            }
            Change::RoleAssigned(r) => format!("{by} made {} {}", r.person, r.role.as_str().replace('_', " ")),
            Change::StatusUpdatePosted(u) => {
                let audience = match u.audience {
                    Audience::Internal => "an internal",
                    Audience::Executive => "an executive",
                    Audience::CompanyWide => "a company-wide",
                    Audience::Customer => "a customer",
                };
                format!("{by} posted {audience} update: {}", u.text)
            }
            Change::CustomerImpactRecorded(c) => {
                let multi = if c.multi_customer { ", multi-customer" } else { "" };
                format!("{by} recorded impact on {} customers{multi}: {}", c.customers_affected, c.summary)
            }
            Change::Mitigated(m) => format!("{by} mitigated {id}: {}", m.summary),
            Change::Resolved(r) => format!("{by} resolved {id}: {}", r.summary),
            Change::Reopened(r) => format!("{by} reopened {id}: {}", r.reason),
            Change::ResolutionValidated(v) => format!("{by} validated the resolution and closed {id}: {}", v.note),
            Change::ParticipantJoined(p) => match p.role {
                Some(role) => format!("{} joined the bridge as {}", p.participant, role.as_str().replace('_', " ")),
                None => format!("{} joined the bridge", p.participant),
            },
            Change::ParticipantLeft(p) => format!("{} left the bridge", p.participant),
            Change::MarkedNoise(n) => format!("{by} marked {id} as noise: {}", n.reason),
            Change::ResponderRequested(r) => format!("{by} paged {}: {}", r.target, r.reason),
            Change::RoleRemoved(r) => {
                format!("{by} removed {} as {}", r.person, r.role.as_str().replace('_', " "))
            }
        }
    }
}
