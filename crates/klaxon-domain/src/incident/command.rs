//! Incident commands: what a user or a service asks for.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::ids::{ActorId, Audience, CustomerId, DedupKey, IncidentRole, ReportSource, ServiceName, Severity};

/// A request to change an incident, decided by [`crate::incident::decide`].
///
/// Commands are imperatives; the facts they produce are
/// [`crate::incident::Change`]s. Free text is validated and trimmed by
/// `decide`, so a command may carry anything a client sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Report a new issue, creating the incident.
    ReportIssue {
        /// The channel the report came in through.
        source: ReportSource,
        /// Who reports it (the acting principal may be an integration).
        reporter: ActorId,
        /// A one-line title; required.
        title: String,
        /// A longer description; may be empty.
        description: String,
        /// The affected service, when known.
        service: Option<ServiceName>,
        /// Customers known to be affected; duplicates are dropped.
        customers: Vec<CustomerId>,
        /// Free-form labels, such as an alert's labels.
        labels: BTreeMap<String, String>,
        /// The key later duplicates will be merged under.
        dedup_key: Option<DedupKey>,
        /// When the problem started, if the reporter knows (an alert's
        /// `startsAt`).
        started_at: Option<DateTime<Utc>>,
    },
    /// Merge a duplicate report into this open incident.
    MergeReport {
        /// The channel the duplicate came in through.
        source: ReportSource,
        /// Who reported the duplicate.
        reporter: ActorId,
        /// The duplicate's title; required.
        title: String,
        /// The duplicate's dedup key, if any.
        dedup_key: Option<DedupKey>,
    },
    /// Confirm a reported issue as an incident of the given severity.
    DeclareIncident {
        /// The initial severity.
        severity: Severity,
    },
    /// Change the severity of a declared incident, overriding any assessment.
    OverrideSeverity {
        /// The new severity; must differ from the current one.
        severity: Severity,
        /// Why; required.
        reason: String,
    },
    /// Make someone the commander directly (a manager's decision).
    AssignCommander {
        /// The new commander; must differ from the current one.
        commander: ActorId,
    },
    /// Ask someone to take the incident over; only the commander may ask.
    RequestHandoff {
        /// The intended next commander.
        to: ActorId,
    },
    /// Take over the incident; only the handoff's recipient may accept.
    AcceptHandoff,
    /// Refuse the incident; only the handoff's recipient may decline.
    DeclineHandoff {
        /// Why; required.
        reason: String,
    },
    /// Withdraw a pending handoff, for example when the recipient does not
    /// answer. Anyone allowed to manage the incident may cancel.
    CancelHandoff {
        /// Why; required.
        reason: String,
    },
    /// Add someone to the incident team in a role other than commander.
    AssignRole {
        /// The role; [`IncidentRole::Commander`] is rejected.
        role: IncidentRole,
        /// Who takes it.
        person: ActorId,
    },
    /// Post a status update for an audience.
    PostUpdate {
        /// Who the update is for.
        audience: Audience,
        /// The update; required.
        text: String,
    },
    /// Record the current assessment of customer impact, replacing the last.
    RecordCustomerImpact {
        /// How many customers are affected; at least `customers.len()`.
        customers_affected: u32,
        /// Affected customers known by name; duplicates are dropped.
        customers: Vec<CustomerId>,
        /// Whether several customers are affected; implied when more than one
        /// customer is counted or listed.
        multi_customer: bool,
        /// The impact in words; required.
        summary: String,
    },
    /// Record that the impact has stopped.
    Mitigate {
        /// What stopped it; required.
        summary: String,
    },
    /// Resolve the incident.
    Resolve {
        /// How; required.
        summary: String,
    },
    /// Reopen a resolved or closed incident because the fix did not hold.
    Reopen {
        /// Why; required.
        reason: String,
    },
    /// Confirm the resolution holds, closing the incident.
    ValidateResolution {
        /// How it was checked; required.
        note: String,
    },
    /// Join the incident bridge.
    JoinBridge {
        /// Who joins.
        participant: ActorId,
        /// The role they join in, if any (informational; roles are assigned
        /// with `AssignRole`).
        role: Option<IncidentRole>,
    },
    /// Leave the incident bridge.
    LeaveBridge {
        /// Who leaves.
        participant: ActorId,
    },
    /// Mark the incident as noise (a false alarm, a test, a duplicate that
    /// escaped deduplication), so trend reports can exclude it. Allowed in
    /// any status, once.
    MarkNoise {
        /// Why it is noise; required.
        reason: String,
    },
    /// Take a role other than commander from someone who holds it.
    RemoveRole {
        /// The role; [`IncidentRole::Commander`] is rejected.
        role: IncidentRole,
        /// Who gives it up.
        person: ActorId,
    },
    /// Give a role other than commander to `to` in place of `from`: the
    /// removal and the assignment are written together.
    ReplaceRole {
        /// The role; [`IncidentRole::Commander`] is rejected.
        role: IncidentRole,
        /// Who holds it now.
        from: ActorId,
        /// Who takes it over; must not hold it yet.
        to: ActorId,
    },
    /// Page someone into the incident, outside its escalation policy.
    PageResponder {
        /// Whom to page.
        target: crate::incident::PageTarget,
        /// Why they are needed; required.
        reason: String,
    },
}
