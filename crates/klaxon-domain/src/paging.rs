//! Paging: escalation policies, SLOs, page events, and the pure decision of
//! whom to page, when to escalate and which SLO is breached.
//!
//! The paging service keeps one [`IncidentPaging`] per incident, folded from
//! the incident's events ([`IncidentPaging::apply_incident`]) and from its
//! own page events ([`IncidentPaging::apply_page`], stream [`stream`] =
//! `pages-INC-<n>`). Whenever something happens, and again at
//! [`next_due`], it calls [`decide`] with the current time, appends what
//! comes back (all of it in one append, ids derived deterministically) and
//! folds it back in. Acknowledgements come from [`acknowledge`]; the pages to
//! deliver from [`deliveries`], and why an undelivered page is not
//! delivered (acknowledged, incident resolved, no channel) from [`unsent`].
//! Nothing here reads a clock.
//!
//! # Timers are derived from events
//!
//! Every deadline (escalation, acknowledgement timeout, SLOs) is a pure
//! function of the folded events and the configuration. A service that
//! crashed folds the log again and calls [`decide`] with the current time:
//! everything overdue fires then, **once** (a chain overdue by several
//! levels moves one level, and the new level gets its full timeout from
//! now; every SLO breach is recorded once per episode). [`decide`] is
//! idempotent: after its output is folded in, the same call returns nothing.
//! Events must be folded in log order, incident and page events
//! interleaved as the log recorded them.
//!
//! # Semantics
//!
//! - **Episode.** An incident *pages* while it is Reported or Declared (open
//!   and not mitigated) and its severity is one of `[paging].severities`
//!   (exactly those: the list is not a threshold). The instant it starts to
//!   page begins an *episode* (the incident "reached" a paging severity);
//!   mitigation, resolution, closure or a severity that stops paging ends
//!   it, and a reopening (or a later paging severity) begins a new one. A
//!   change between two paging severities (Sev2 to Sev1) keeps the episode;
//!   the SLOs of the *current* severity apply. A change of the paging
//!   severities themselves (a configuration recorded in the log, folded
//!   with [`IncidentPaging::set_paging_severities`]) begins or ends an
//!   open incident's episode the same way, as of the record; an episode
//!   whose severity still pages goes on. An episode that had paged and
//!   that such a change ends gets `page.paging_stopped.v1` (the severity
//!   and the configuration's hash) at the next [`decide`], once, before
//!   anything else. Outside an episode [`decide`] returns nothing else.
//! - **Chain.** Each episode has one escalation chain through the policy of
//!   the incident's service (`services[].escalation_policy`; the
//!   `[paging].default_policy` when the service is missing, not catalogued,
//!   or names no configured policy). It starts at level 0, round 0 (reason
//!   `severity`): every responder resolved from the level's targets is paged
//!   (a schedule resolves to whoever is on call at `now`, nobody in a gap;
//!   duplicates are paged once), all with deadline `now + timeout`.
//! - **Nobody on call.** A level that resolves to nobody is unanswered at
//!   once: `page.escalated.v1` with `page: null` and the next level is paged
//!   in the same decision.
//! - **Escalation.** When no page of the chain is acknowledged by the
//!   deadline (at the deadline exactly, not before), `page.escalated.v1`
//!   names the first page of the level and the next level is paged (reason
//!   `escalation`). After the last level, level 0 of the next round (reason
//!   `repeat`) while `round < repeat`. When all rounds are exhausted:
//!   `page.escalated.v1` with `to_level: null`, `slo.breached.v1{ack}` (if
//!   the ack SLO was not breached yet in this episode) and a page to the
//!   duty manager; the chain then stops.
//! - **Duty manager.** Whoever is on call in `[paging].duty_manager_schedule`
//!   at `now` (nobody in a gap: the breach is still recorded). Paged on every
//!   SLO breach and when a chain is exhausted. Duty-manager pages have
//!   `level: null` and `deadline: null`, reason `slo_breach`; they never
//!   escalate and acknowledging them does not stop the chain (it counts for
//!   the ack SLO).
//! - **Acknowledgement.** Acknowledging any page of the current chain (any
//!   level, any round, even after exhaustion) stops it. When the episode is
//!   still going at `acknowledged_at + ack_timeout` (not mitigated,
//!   resolved, ...), `page.ack_timed_out.v1` and the chain's current level
//!   is paged again (reason `ack_timeout`) with a new deadline; from there
//!   it escalates normally. Timeouts count from the chain's first
//!   acknowledgement.
//! - **Ack SLO.** When no page of the episode is acknowledged within
//!   `ack_minutes` of its first chain page, `slo.breached.v1{ack}` (due at
//!   first page + `ack_minutes`) and the duty manager is paged, once per
//!   episode. An exhausted chain breaches it early (due at its last
//!   deadline).
//! - **Assign SLO.** When the incident has no commander `assign_minutes`
//!   after the episode began, `slo.breached.v1{assign}` and the duty manager
//!   is paged, once per episode. A commander assigned earlier, even before
//!   the episode, satisfies it.
//! - **Resolve SLO.** The resolution window is the tightest of the
//!   severity's `resolve_minutes` and the `[slo.tier.<name>]` of the tier
//!   of every affected customer (`[[customers]]`; from the report and the
//!   impact records); none without either. The clock starts with the
//!   first episode and runs until the incident is resolved or closed — a
//!   mitigation ends the episode, not the clock. When it is still running a
//!   window after it started, `slo.breached.v1{resolve}` (due at the
//!   start plus the window) and the duty manager is paged, once per clock.
//!   Resolving before the deadline owes nothing; a reopening starts a new
//!   clock with a full window of its own.
//! - **Pulled in by a manager.** Each `incident.responder_requested.v1`
//!   (request `n`, counted from 1 in log order) gets a chain of its own,
//!   outside any episode, while the incident is open (reported, declared or
//!   mitigated; whatever its severity): a person or a schedule alone on one
//!   level whose timeout is the ack SLO of the incident's severity (the
//!   defaults without one), a team through
//!   [`PagingConfig::policy_for_team`]. Its pages carry `request: n` and
//!   reason `requested`; unanswered, it escalates through the team's levels
//!   (`page.escalated.v1` with the `request`) and, when they run out, just
//!   ends: no SLO breach, no duty manager. Acknowledging one of its pages
//!   stops that chain only, and counts neither for the episode's chain nor
//!   for its ack SLO. Requests are decided before the episode's chain.
//! - **An episode keeps its policy.** The first event of an episode's
//!   chain (its first page, or the `page.escalated.v1` of a level 0 with
//!   nobody on call) records the policy the chain starts under, name and
//!   levels; every later decision of that chain (which level is next, each
//!   level's targets and timeout, the rounds) follows the recorded policy,
//!   so an edit of the configuration never changes pages in flight, also
//!   after a restart (the policy is folded from the log, not taken from
//!   memory). What is read at each decision instead: who is on call in a
//!   target schedule (the schedules as they are at the page, with their
//!   overrides; a schedule removed since has nobody on call), the SLOs of
//!   the severity, the duty manager, and the policies of managers'
//!   requests. A new episode (after a mitigation, resolution or reopening,
//!   or a severity that stopped and started paging again) takes the policy
//!   configured then. An episode whose first event recorded no policy
//!   (logs written before episodes did) follows the configured policy at
//!   each decision; a chain on a level past the end of a shortened policy
//!   then continues as if on its last level.
//!
//! Within one decision, chain events come before SLO events, and page
//! numbers follow the order of the events.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};

use crate::catalog::ServiceCatalog;
use crate::ids::{ActorId, CustomerId, IncidentId, IncidentRole, ServiceName, Severity};
use crate::incident::{Change, IncidentEvent, PageTarget, Status};
use crate::oncall::Schedules;
use crate::outbox::{Message, Outcome, Outgoing, Receipt};

mod config;
mod event;
#[cfg(test)]
mod tests;

pub use config::{
    CustomerConfig, EscalationLevel, EscalationLevelConfig, EscalationPolicy, EscalationPolicyConfig, LEVELS_MAX,
    MANAGERS_MAX, MINUTES_MAX, POLICIES_MAX, POLICY_NAME_CHARS_MAX, PagingConfig, PagingFileConfig,
    PagingSectionConfig, REPEAT_MAX, Slo, SloConfig, SloTables, TARGETS_MAX, Target, TargetConfig, TierSloConfig,
    recorded_severities,
};
pub use event::{
    AckTimedOut, CHANNEL_CHARS_MAX, DELIVERY_ERROR_CHARS_MAX, KINDS, PAGING_ACTOR, PageAcknowledged, PageChange,
    PageDelivered, PageDeliveryFailed, PageEscalated, PageEvent, PageId, PageReason, PagingStopped, ResponderPaged,
    SloBreached, SloKind, paging_actor, stream,
};

/// The most steps one [`decide`] call takes; each step moves a chain or
/// records a breach, so a few suffice. Reaching it is a bug.
const STEPS_MAX: usize = 64;

/// Whether and how a page reached its responder, as recorded by the shell.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Delivery {
    /// Neither delivered nor failed yet: the shell must deliver it.
    Pending,
    /// Delivered through `channel`.
    Delivered {
        /// The channel that took the page.
        channel: String,
        /// How many attempts it took.
        attempts: u32,
        /// When the delivery was recorded.
        at: DateTime<Utc>,
    },
    /// The shell gave up.
    Failed {
        /// The channel that failed.
        channel: String,
        /// How many attempts were made.
        attempts: u32,
        /// The last error.
        error: String,
        /// When the failure was recorded.
        at: DateTime<Utc>,
    },
}

/// One page: a notification to one responder, and what became of it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Page {
    id: PageId,
    responder: ActorId,
    level: Option<u32>,
    round: u32,
    reason: PageReason,
    paged_at: DateTime<Utc>,
    deadline: Option<DateTime<Utc>>,
    episode: u32,
    delivery: Delivery,
    acknowledged: Option<(ActorId, DateTime<Utc>)>,
    request: Option<u32>,
}

impl Page {
    /// The manager's request the page carries out (its number, from 1), or
    /// `None` for the incident's own chain and duty-manager pages.
    pub fn request(&self) -> Option<u32> {
        self.request
    }
    /// The page's id, also the idempotency key of its delivery.
    pub fn id(&self) -> PageId {
        self.id
    }
    /// Who was paged.
    pub fn responder(&self) -> &ActorId {
        &self.responder
    }
    /// The policy level, or `None` for a duty-manager page.
    pub fn level(&self) -> Option<u32> {
        self.level
    }
    /// The policy round.
    pub fn round(&self) -> u32 {
        self.round
    }
    /// Why the page was sent.
    pub fn reason(&self) -> PageReason {
        self.reason
    }
    /// When the page was decided.
    pub fn paged_at(&self) -> DateTime<Utc> {
        self.paged_at
    }
    /// When its level escalates if unacknowledged; `None` for a
    /// duty-manager page.
    pub fn deadline(&self) -> Option<DateTime<Utc>> {
        self.deadline
    }
    /// What the shell recorded about its delivery.
    pub fn delivery(&self) -> &Delivery {
        &self.delivery
    }
    /// Who acknowledged the page and when, if anyone did.
    pub fn acknowledged(&self) -> Option<(&ActorId, DateTime<Utc>)> {
        self.acknowledged.as_ref().map(|(by, at)| (by, *at))
    }
}

/// The escalation chain of the current episode.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Escalation {
    level: u32,
    round: u32,
    deadline: Option<DateTime<Utc>>,
    level_pages: Vec<PageId>,
    acknowledged: Option<(PageId, DateTime<Utc>)>,
    exhausted: bool,
}

impl Escalation {
    fn new(level: u32, round: u32) -> Escalation {
        Escalation { level, round, deadline: None, level_pages: Vec::new(), acknowledged: None, exhausted: false }
    }
    /// The level paged last.
    pub fn level(&self) -> u32 {
        self.level
    }
    /// The round of that level.
    pub fn round(&self) -> u32 {
        self.round
    }
    /// When the level escalates if nobody acknowledges.
    pub fn deadline(&self) -> Option<DateTime<Utc>> {
        self.deadline
    }
    /// The pages of the current level.
    pub fn level_pages(&self) -> &[PageId] {
        &self.level_pages
    }
    /// The page whose acknowledgement stopped the chain, and when.
    pub fn acknowledged(&self) -> Option<(PageId, DateTime<Utc>)> {
        self.acknowledged
    }
    /// Whether every level of every round went unanswered.
    pub fn is_exhausted(&self) -> bool {
        self.exhausted
    }
}

/// A manager's request to page someone into the incident
/// (`incident.responder_requested.v1`) and the chain that carries it out.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PullRequest {
    target: PageTarget,
    reason: String,
    by: ActorId,
    at: DateTime<Utc>,
    chain: Option<Escalation>,
    notice: bool,
}

impl PullRequest {
    /// Whom the manager asked for.
    pub fn target(&self) -> &PageTarget {
        &self.target
    }
    /// Why.
    pub fn reason(&self) -> &str {
        &self.reason
    }
    /// The manager who asked.
    pub fn by(&self) -> &ActorId {
        &self.by
    }
    /// When.
    pub fn at(&self) -> DateTime<Utc> {
        self.at
    }
    /// Its chain, once its first page was decided.
    pub fn chain(&self) -> Option<&Escalation> {
        self.chain.as_ref()
    }
    /// Whether it is the notice of a role assignment (one page, no
    /// escalation) rather than a manager's request.
    pub fn is_notice(&self) -> bool {
        self.notice
    }
}

/// Folds a page of a chain into it (creating the chain at its first page).
fn chain_paged(chain: &mut Option<Escalation>, p: &ResponderPaged, level: u32) {
    let chain = chain.get_or_insert_with(|| Escalation::new(level, p.round));
    if (chain.level, chain.round) != (level, p.round) {
        chain.level_pages.clear();
    }
    chain.level = level;
    chain.round = p.round;
    chain.deadline = p.deadline;
    chain.level_pages.push(p.page);
}

/// Folds a `page.escalated.v1` into its chain.
fn chain_escalated(chain: &mut Option<Escalation>, e: &PageEscalated) {
    let chain = chain.get_or_insert_with(|| Escalation::new(e.from_level, e.round));
    chain.level_pages.clear();
    chain.deadline = None;
    match e.to_level {
        Some(level) => {
            chain.level = level;
            chain.round = e.round;
        }
        None => chain.exhausted = true,
    }
}

/// An interval during which the incident pages; see the module docs.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Episode {
    number: u32,
    reached_at: DateTime<Utc>,
    first_paged_at: Option<DateTime<Utc>>,
    first_ack_at: Option<DateTime<Utc>>,
    breached: BTreeSet<SloKind>,
    chain: Option<Escalation>,
    /// The policy recorded by the first event of the chain (`None` before
    /// it, and for chains of logs that did not record it).
    #[serde(default)]
    policy: Option<EscalationPolicy>,
}

/// An episode a recorded configuration stopped, until its
/// `page.paging_stopped.v1` is folded.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Stopped {
    severity: Severity,
    config: String,
    at: DateTime<Utc>,
}

/// The resolution clock: it starts with the first episode of an open
/// incident and runs until the incident is resolved (or closed), through a
/// mitigation, which ends the episode but not the customers' wait. A
/// reopening starts a new one.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct ResolveClock {
    started_at: DateTime<Utc>,
    breached: bool,
}

/// Everything the paging service knows about one incident: the fold of the
/// incident's events and of its page events, in log order.
///
/// Built with the paging severities in force (whether an event begins an
/// episode depends on them); a change of them is folded in log order too
/// ([`IncidentPaging::set_paging_severities`], at each recorded
/// configuration), so an open incident starts or stops paging at the
/// change, and a rebuild from the log gives the same episodes. The
/// escalation policy of an episode is not taken from the configuration
/// once its chain has started: it is folded from the chain's first event.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct IncidentPaging {
    incident: IncidentId,
    paging_severities: BTreeSet<Severity>,
    title: String,
    status: Option<Status>,
    severity: Option<Severity>,
    severity_overridden: bool,
    service: Option<ServiceName>,
    commander: Option<ActorId>,
    customers: BTreeSet<CustomerId>,
    episodes: u32,
    episode: Option<Episode>,
    resolve_clock: Option<ResolveClock>,
    pages: BTreeMap<PageId, Page>,
    page_events: u64,
    pulls: Vec<PullRequest>,
    /// An episode with pages that a recorded configuration stopped, to be
    /// recorded by [`decide`] (`page.paging_stopped.v1`).
    #[serde(default)]
    stopped: Option<Stopped>,
}

impl IncidentPaging {
    /// The state of `incident` before any event, with the paging
    /// severities of `config`.
    pub fn new(incident: IncidentId, config: &PagingConfig) -> IncidentPaging {
        IncidentPaging::with_severities(incident, config.severities())
    }

    /// The state of `incident` before any event, paging at `severities`
    /// (those of the configuration the log recorded last).
    pub fn with_severities(incident: IncidentId, severities: &BTreeSet<Severity>) -> IncidentPaging {
        IncidentPaging {
            incident,
            paging_severities: severities.clone(),
            title: String::new(),
            status: None,
            severity: None,
            severity_overridden: false,
            service: None,
            commander: None,
            customers: BTreeSet::new(),
            episodes: 0,
            episode: None,
            resolve_clock: None,
            pages: BTreeMap::new(),
            page_events: 0,
            pulls: Vec::new(),
            stopped: None,
        }
    }

    /// The incident.
    pub fn incident(&self) -> IncidentId {
        self.incident
    }
    /// The incident's title as reported (empty before its report).
    pub fn title(&self) -> &str {
        &self.title
    }
    /// The incident's status, `None` before its report.
    pub fn status(&self) -> Option<Status> {
        self.status
    }
    /// The current severity.
    pub fn severity(&self) -> Option<Severity> {
        self.severity
    }
    /// The affected service, if reported.
    pub fn service(&self) -> Option<&ServiceName> {
        self.service.as_ref()
    }
    /// The commander, if assigned.
    pub fn commander(&self) -> Option<&ActorId> {
        self.commander.as_ref()
    }
    /// The customers known to be affected: those of the report and of every
    /// impact record.
    pub fn customers(&self) -> &BTreeSet<CustomerId> {
        &self.customers
    }
    /// Whether the incident pages now (an episode is going on).
    pub fn is_paging(&self) -> bool {
        self.episode.is_some()
    }
    /// When the current episode began: when the incident reached a paging
    /// severity (again).
    pub fn reached_at(&self) -> Option<DateTime<Utc>> {
        self.episode.as_ref().map(|e| e.reached_at)
    }
    /// The escalation chain of the current episode, once started.
    pub fn escalation(&self) -> Option<&Escalation> {
        self.episode.as_ref().and_then(|e| e.chain.as_ref())
    }
    /// The escalation policy the current episode's chain runs under, as
    /// its first event recorded it (`None` before the chain starts, and
    /// when that event recorded none: the configured policy applies).
    pub fn episode_policy(&self) -> Option<&EscalationPolicy> {
        self.episode.as_ref().and_then(|e| e.policy.as_ref())
    }
    /// The SLOs breached in the current episode.
    pub fn breached(&self) -> BTreeSet<SloKind> {
        self.episode.as_ref().map(|e| e.breached.clone()).unwrap_or_default()
    }
    /// Every page of the incident, by id (the order they were decided).
    pub fn pages(&self) -> impl Iterator<Item = &Page> {
        self.pages.values()
    }
    /// The managers' requests to page someone in, in order (request `n` is
    /// at index `n - 1`).
    pub fn pull_requests(&self) -> &[PullRequest] {
        &self.pulls
    }
    /// The page `id`, if it exists.
    pub fn page(&self, id: &PageId) -> Option<&Page> {
        self.pages.get(id)
    }
    /// The number of page events folded, which is the version of the
    /// incident's page stream: the expected version of the next append.
    pub fn page_stream_version(&self) -> u64 {
        self.page_events
    }

    /// Folds one event of the incident's own stream. Events that do not
    /// matter to paging are ignored.
    pub fn apply_incident(&mut self, event: &IncidentEvent) {
        debug_assert_eq!(event.incident, self.incident, "event folded into another incident");
        match &event.change {
            Change::Reported(r) => {
                self.status = Some(Status::Reported);
                self.service = r.service.clone();
                self.title = r.title.clone();
                self.customers.extend(r.customers.iter().cloned());
            }
            Change::Declared(d) => {
                self.status = Some(Status::Declared);
                self.severity = Some(d.severity);
            }
            Change::SeverityOverridden(o) => {
                self.severity = Some(o.to);
                self.severity_overridden = true;
            }
            Change::SeverityAssessed(a) => {
                // As in the incident itself: an assessment sets the severity
                // only until a person does (declaring it, then overriding
                // it); one that lands after the declaration changes nothing.
                if self.status == Some(Status::Reported) && !self.severity_overridden {
                    self.severity = Some(a.severity);
                }
            }
            Change::CommanderAssigned(c) => self.commander = Some(c.commander.clone()),
            Change::RoleAssigned(r) => self.notice(event, r.person.clone(), r.role),
            Change::HandoffAccepted(h) => self.commander = Some(h.to.clone()),
            Change::Mitigated(_) => self.status = Some(Status::Mitigated),
            Change::Resolved(_) => self.status = Some(Status::Resolved),
            Change::Reopened(_) => self.status = Some(Status::Declared),
            Change::ResolutionValidated(_) => self.status = Some(Status::Closed),
            Change::ResponderRequested(r) => self.pulls.push(PullRequest {
                target: r.target.clone(),
                reason: r.reason.clone(),
                by: event.by.clone(),
                at: event.at,
                chain: None,
                notice: false,
            }),
            Change::CustomerImpactRecorded(c) => self.customers.extend(c.customers.iter().cloned()),
            Change::ReportMerged(_)
            | Change::HandoffRequested(_)
            | Change::HandoffDeclined(_)
            | Change::HandoffCancelled(_)
            | Change::RoleRemoved(_)
            | Change::StatusUpdatePosted(_)
            | Change::ParticipantJoined(_)
            | Change::ParticipantLeft(_)
            | Change::MarkedNoise(_) => {}
        }
        self.update_episode(event.at);
    }

    /// Queues the notice telling `person` they hold `role` now, by the
    /// event's author.
    fn notice(&mut self, event: &IncidentEvent, person: ActorId, role: IncidentRole) {
        let role = role.as_str().replace('_', " ");
        self.pulls.push(PullRequest {
            target: PageTarget::Person(person),
            reason: format!("{} made you {role} of {}", event.by, event.incident),
            by: event.by.clone(),
            at: event.at,
            chain: None,
            notice: true,
        });
    }

    /// Sets the severity to `severity` as of `at`, for a severity source that
    /// is not an incident event. (`incident.severity_assessed.v1` is folded
    /// by [`IncidentPaging::apply_incident`], where it counts only before a
    /// declaration; this setter applies unconditionally.)
    pub fn set_severity(&mut self, severity: Severity, at: DateTime<Utc>) {
        self.severity = Some(severity);
        self.update_episode(at);
    }

    /// The severities that page this incident now.
    pub fn paging_severities(&self) -> &BTreeSet<Severity> {
        &self.paging_severities
    }

    /// Changes the severities that page, as of `at`, by the configuration
    /// whose hash is `config` (recorded in the log at `at`): an open
    /// incident whose severity pages now and did not begins an episode at
    /// `at` (its chain starts at the next [`decide`], under the policy
    /// configured then); one whose severity no longer pages ends its
    /// episode, so its chain stops escalating (its pages stay
    /// acknowledgeable), and when that episode had paged, the next
    /// [`decide`] records why (`page.paging_stopped.v1` naming `config`).
    /// An episode that goes on keeps its chain and policy. Unchanged
    /// severities change nothing.
    pub fn set_paging_severities(&mut self, severities: &BTreeSet<Severity>, config: &str, at: DateTime<Utc>) {
        if self.paging_severities == *severities {
            return;
        }
        self.paging_severities.clone_from(severities);
        let paged = self.episode.as_ref().is_some_and(|e| e.chain.is_some());
        self.update_episode(at);
        if let (true, None, Some(severity)) = (paged, &self.episode, self.severity) {
            self.stopped = Some(Stopped { severity, config: config.to_owned(), at });
        }
    }

    /// Begins or ends the episode after a change at `at`.
    fn update_episode(&mut self, at: DateTime<Utc>) {
        let open = matches!(self.status, Some(Status::Reported | Status::Declared));
        let pages = open && self.severity.is_some_and(|s| self.paging_severities.contains(&s));
        match (pages, self.episode.is_some()) {
            (true, false) => {
                // Paging again before a stop was recorded: nothing to say.
                self.stopped = None;
                self.episodes += 1;
                self.episode = Some(Episode {
                    number: self.episodes,
                    reached_at: at,
                    first_paged_at: None,
                    first_ack_at: None,
                    breached: BTreeSet::new(),
                    chain: None,
                    policy: None,
                });
            }
            (false, true) => self.episode = None,
            _ => {}
        }
        match (&self.status, pages) {
            (_, true) if self.resolve_clock.is_none() => {
                self.resolve_clock = Some(ResolveClock { started_at: at, breached: false });
            }
            // Mitigated: the clock runs on until the resolution.
            (Some(Status::Mitigated), _) | (_, true) => {}
            // Resolved, closed, or no longer of a paging severity.
            _ => self.resolve_clock = None,
        }
    }

    /// Folds one event of the incident's page stream.
    pub fn apply_page(&mut self, event: &PageEvent) {
        debug_assert_eq!(event.incident, self.incident, "page event folded into another incident");
        self.page_events += 1;
        let at = event.at;
        let episode_number = self.episodes;
        let episode = self.episode.as_mut();
        match &event.change {
            PageChange::ResponderPaged(p) => {
                debug_assert!(!self.pages.contains_key(&p.page), "{} paged twice", p.page);
                self.pages.insert(
                    p.page,
                    Page {
                        id: p.page,
                        responder: p.responder.clone(),
                        level: p.level,
                        round: p.round,
                        reason: p.reason,
                        paged_at: at,
                        deadline: p.deadline,
                        // A pulled-in responder's page belongs to no
                        // episode: it neither starts nor stops the chain.
                        episode: if p.request.is_some() { 0 } else { episode_number },
                        delivery: Delivery::Pending,
                        acknowledged: None,
                        request: p.request,
                    },
                );
                if let Some(n) = p.request {
                    match (pull_mut(&mut self.pulls, n), p.level) {
                        (Some(pull), Some(level)) => chain_paged(&mut pull.chain, p, level),
                        // A notice: sent once, nothing to escalate.
                        (Some(pull), None) => {
                            let mut done = Escalation::new(0, 0);
                            done.exhausted = true;
                            pull.chain = Some(done);
                        }
                        (None, _) => {}
                    }
                } else if let (Some(episode), Some(level)) = (episode, p.level) {
                    episode.first_paged_at.get_or_insert(at);
                    if episode.chain.is_none() && episode.policy.is_none() {
                        episode.policy.clone_from(&p.policy);
                    }
                    chain_paged(&mut episode.chain, p, level);
                }
            }
            PageChange::PageDelivered(d) => {
                if let Some(page) = self.pages.get_mut(&d.page) {
                    page.delivery = Delivery::Delivered { channel: d.channel.clone(), attempts: d.attempts, at };
                }
            }
            PageChange::PageDeliveryFailed(d) => {
                if let Some(page) = self.pages.get_mut(&d.page) {
                    page.delivery = Delivery::Failed {
                        channel: d.channel.clone(),
                        attempts: d.attempts,
                        error: d.error.clone(),
                        at,
                    };
                }
            }
            PageChange::PageAcknowledged(a) => {
                let Some(page) = self.pages.get_mut(&a.page) else {
                    debug_assert!(false, "acknowledged unknown page {}", a.page);
                    return;
                };
                page.acknowledged.get_or_insert((event.by.clone(), at));
                if let Some(n) = page.request {
                    if let Some(chain) = pull_mut(&mut self.pulls, n).and_then(|p| p.chain.as_mut()) {
                        chain.acknowledged.get_or_insert((a.page, at));
                    }
                    return;
                }
                let Some(episode) = episode.filter(|e| e.number == page.episode) else { return };
                episode.first_ack_at.get_or_insert(at);
                if let (Some(chain), Some(_)) = (episode.chain.as_mut(), page.level) {
                    chain.acknowledged.get_or_insert((a.page, at));
                }
            }
            PageChange::PageEscalated(e) => match e.request {
                Some(n) => {
                    if let Some(pull) = pull_mut(&mut self.pulls, n) {
                        chain_escalated(&mut pull.chain, e);
                    }
                }
                None => {
                    if let Some(episode) = episode {
                        if episode.chain.is_none() && episode.policy.is_none() {
                            episode.policy.clone_from(&e.policy);
                        }
                        chain_escalated(&mut episode.chain, e);
                    }
                }
            },
            PageChange::AckTimedOut(_) => {
                if let Some(chain) = episode.and_then(|e| e.chain.as_mut()) {
                    chain.acknowledged = None;
                    chain.exhausted = false;
                    chain.level_pages.clear();
                    chain.deadline = None;
                }
            }
            PageChange::PagingStopped(_) => self.stopped = None,
            PageChange::SloBreached(b) => {
                if let Some(episode) = episode {
                    episode.breached.insert(b.slo);
                }
                if let (SloKind::Resolve, Some(clock)) = (b.slo, self.resolve_clock.as_mut()) {
                    clock.breached = true;
                }
            }
        }
    }
}

/// The schedules and teams a manager may pull in by name, so that intake
/// refuses an unknown one before anything is written. Built from the
/// configuration the paging service runs with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Directory {
    schedules: BTreeSet<String>,
    teams: BTreeSet<String>,
}

impl Directory {
    /// Every schedule of `schedules`, and every team that
    /// [`PagingConfig::policy_for_team`] finds a policy for: a policy's own
    /// name, and the teams of `catalog` whose services name a policy.
    pub fn new(config: &PagingConfig, catalog: &ServiceCatalog, schedules: &Schedules) -> Directory {
        let teams = config
            .policies()
            .map(|p| p.name().to_owned())
            .chain(
                catalog
                    .services()
                    .filter(|s| config.policy(s.escalation_policy()).is_some())
                    .map(|s| s.team().to_owned()),
            )
            .collect();
        Directory { schedules: schedules.iter().map(|s| s.name().to_owned()).collect(), teams }
    }

    /// `Ok` for a person, or a schedule or team the directory knows;
    /// otherwise an [`crate::Error::InvalidField`] on `field` naming it.
    pub fn check(&self, field: &'static str, target: &PageTarget) -> Result<(), crate::Error> {
        match target {
            PageTarget::Person(_) => Ok(()),
            PageTarget::Schedule(name) if !self.schedules.contains(name) => {
                let known = crate::text::known("schedules", self.schedules.iter().map(String::as_str));
                Err(crate::Error::invalid(field, format!("no schedule is named {name:?}; {known}")))
            }
            PageTarget::Team(name) if !self.teams.contains(name) => {
                let known = crate::text::known("teams", self.teams.iter().map(String::as_str));
                Err(crate::Error::invalid(
                    field,
                    format!(
                        "no team is named {name:?}; {known} (a team is a catalogued service's team or a policy's \
                         name)"
                    ),
                ))
            }
            _ => Ok(()),
        }
    }
}

/// Request `n` (from 1) of `pulls`.
fn pull_mut(pulls: &mut [PullRequest], n: u32) -> Option<&mut PullRequest> {
    let index = usize::try_from(n).ok()?.checked_sub(1)?;
    debug_assert!(index < pulls.len(), "a page for request {n} that was never made");
    pulls.get_mut(index)
}

/// The events due at `now` for the incident of `state`: pages to send,
/// escalations, acknowledgement timeouts and SLO breaches, in order. See
/// the [module documentation](self) for the rules.
///
/// The caller appends them all in one append to the incident's page stream
/// and folds them back with [`IncidentPaging::apply_page`]; called again at
/// the same `now`, `decide` then returns nothing. Page ids continue the
/// incident's numbering, so the same state and time always give the same
/// events.
pub fn decide(
    state: &IncidentPaging,
    config: &PagingConfig,
    catalog: &ServiceCatalog,
    schedules: &Schedules,
    now: DateTime<Utc>,
) -> Vec<PageEvent> {
    let mut scratch = state.clone();
    let mut decided = Vec::new();
    for _ in 0..STEPS_MAX {
        let step = Step::new(&scratch, config, catalog, schedules, now).run();
        if step.is_empty() {
            return decided;
        }
        for event in &step {
            scratch.apply_page(event);
        }
        decided.extend(step);
    }
    debug_assert!(false, "decide did not settle in {STEPS_MAX} steps");
    decided
}

/// The earliest instant at which [`decide`] would return something, or
/// `None` when nothing is pending (no episode, or every timer has fired and
/// the chain is exhausted). The instant may be in the past (a chain to
/// start): the caller then decides at once.
pub fn next_due(state: &IncidentPaging, config: &PagingConfig) -> Option<DateTime<Utc>> {
    let mut due = Vec::new();
    due.extend(state.stopped.as_ref().map(|s| s.at));
    if is_open(state) {
        for pull in &state.pulls {
            match &pull.chain {
                None => due.push(pull.at),
                Some(chain) if chain.acknowledged.is_some() || chain.exhausted => {}
                Some(chain) => due.push(chain.deadline.unwrap_or(pull.at)),
            }
        }
    }
    episode_due(state, config, &mut due);
    due.extend(resolve_due(state, config));
    due.into_iter().min()
}

/// Whether the incident is open (reported, declared or mitigated): pulled-in
/// responders are paged and escalated only then.
fn is_open(state: &IncidentPaging) -> bool {
    matches!(state.status, Some(Status::Reported | Status::Declared | Status::Mitigated))
}

/// The timers of the current episode, pushed onto `due`.
fn episode_due(state: &IncidentPaging, config: &PagingConfig, due: &mut Vec<DateTime<Utc>>) -> Option<()> {
    let episode = state.episode.as_ref()?;
    let slo = config.slo(state.severity?);
    match &episode.chain {
        None => due.push(episode.reached_at),
        Some(chain) => match chain.acknowledged {
            Some((_, at)) => due.push(at + slo.ack_timeout),
            None if !chain.exhausted => due.push(chain.deadline.unwrap_or(episode.reached_at)),
            None => {}
        },
    }
    if episode.first_ack_at.is_none() && !episode.breached.contains(&SloKind::Ack) {
        if let Some(first) = episode.first_paged_at {
            due.push(first + slo.ack);
        }
    }
    if state.commander.is_none() && !episode.breached.contains(&SloKind::Assign) {
        due.push(episode.reached_at + slo.assign);
    }
    Some(())
}

/// When the resolution SLO falls due, unless it was breached already.
fn resolve_due(state: &IncidentPaging, config: &PagingConfig) -> Option<DateTime<Utc>> {
    let clock = state.resolve_clock.as_ref().filter(|clock| !clock.breached)?;
    Some(clock.started_at + config.resolve_window(state.severity?, &state.customers)?)
}

/// The pages with neither a delivery nor a delivery failure recorded, in
/// the order they were decided.
pub fn undelivered(state: &IncidentPaging) -> Vec<&Page> {
    state.pages.values().filter(|page| page.delivery == Delivery::Pending).collect()
}

/// Why an undelivered page is not being delivered (see [`unsent`]): what
/// `ListPages` shows instead of "pending".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unsent {
    /// Acknowledged before it went out: it is never sent.
    Acknowledged {
        /// Who acknowledged it.
        by: ActorId,
        /// When.
        at: DateTime<Utc>,
    },
    /// Its incident was resolved (or closed) before it went out: it is not
    /// sent while the incident stays resolved or closed.
    IncidentEnded(Status),
    /// No paging channel (`[paging].channels`) is configured: it goes out
    /// once one is.
    NoChannel,
}

impl Unsent {
    /// Whether the page is never to be sent as things stand (`cancelled`
    /// on the wire), rather than held until a channel is configured
    /// (`held`).
    pub fn is_cancelled(&self) -> bool {
        !matches!(self, Unsent::NoChannel)
    }

    /// Why, in words, for the page `page`: `acknowledged by ana before it
    /// was sent`, `INC-7 was resolved before it was sent`, `no paging
    /// channel is configured`.
    pub fn describe(&self, page: PageId) -> String {
        match self {
            Unsent::Acknowledged { by, .. } => format!("acknowledged by {by} before it was sent"),
            Unsent::IncidentEnded(status) => format!("{} was {status} before it was sent", page.incident()),
            Unsent::NoChannel => "no paging channel is configured".into(),
        }
    }
}

/// Why the shell does not deliver `page`, which has no delivery recorded,
/// or `None` when it does (or the page's delivery was recorded). The one
/// rule [`deliveries`] applies, so that what is listed as pending is what
/// goes out. The first reason that holds, in this order: the page was
/// acknowledged, its incident is resolved or closed, no paging channel is
/// configured.
pub fn unsent(state: &IncidentPaging, page: &Page, config: &PagingConfig) -> Option<Unsent> {
    if page.delivery != Delivery::Pending {
        return None;
    }
    if let Some((by, at)) = &page.acknowledged {
        return Some(Unsent::Acknowledged { by: by.clone(), at: *at });
    }
    if let Some(status @ (Status::Resolved | Status::Closed)) = state.status {
        return Some(Unsent::IncidentEnded(status));
    }
    config.channels().is_empty().then_some(Unsent::NoChannel)
}

/// The pages to deliver now, with their message, through every paging
/// channel (`[paging].channels`): the [`undelivered`] pages that are not
/// [`unsent`] (nobody acknowledged them yet, the incident is neither
/// resolved nor closed, a paging channel is configured), once the incident
/// is known.
///
/// The page id is the message's idempotency key, so a page delivered again
/// after a crash (before its outcome was recorded) is recognisable as the
/// same page; [`PageDelivery::recorded`] gives the events that record the
/// outcome, after which the page is no longer undelivered.
pub fn deliveries(state: &IncidentPaging, config: &PagingConfig, catalog: &ServiceCatalog) -> Vec<PageDelivery> {
    if state.status.is_none() {
        return Vec::new();
    }
    undelivered(state)
        .into_iter()
        .filter(|page| unsent(state, page, config).is_none())
        .map(|page| {
            let runbook = state.service.as_ref().and_then(|s| catalog.runbook(s));
            let message = page_message(state, page, runbook);
            let sends = config.channels().iter().map(|c| Outgoing { channel: c.clone(), message: message.clone() });
            PageDelivery { page: page.id, sends: sends.collect() }
        })
        .collect()
}

/// The message of a page: `SEV1 INC-7: <title>`, what to do about it, and
/// the page's facts as fields.
fn page_message(state: &IncidentPaging, page: &Page, runbook: Option<&str>) -> Message {
    let id = page.id;
    let incident = id.incident();
    let severity = state.severity.map_or("-".to_string(), |s| s.to_string());
    let mut fields = BTreeMap::new();
    fields.insert("incident".into(), incident.to_string().into());
    fields.insert("page".into(), id.to_string().into());
    fields.insert("severity".into(), severity.clone().into());
    fields.insert("reason".into(), page.reason.as_str().into());
    if let Some(deadline) = page.deadline {
        fields.insert("acknowledge_by".into(), deadline.to_rfc3339().into());
    }
    let pull = page.request.and_then(|n| state.pulls.get(usize::try_from(n).ok()?.checked_sub(1)?));
    let text = match pull {
        Some(pull) if pull.notice => format!("{}. Join the bridge with: klaxon join {incident}", pull.reason),
        Some(pull) => {
            fields.insert("requested_by".into(), pull.by.to_string().into());
            fields.insert("request_reason".into(), pull.reason.clone().into());
            format!("{} pulls you into {incident}: {}. Acknowledge with: klaxon ack {id}", pull.by, pull.reason)
        }
        None => format!("You are paged for {incident} ({}). Acknowledge with: klaxon ack {id}", page.reason.as_str()),
    };
    let text = match runbook {
        Some(runbook) => {
            fields.insert("runbook".into(), runbook.into());
            format!("{text}\nRunbook: {runbook}")
        }
        None => text,
    };
    Message {
        idempotency_key: id.to_string(),
        kind: "page".into(),
        title: format!("{severity} {incident}: {}", state.title),
        text,
        fields,
        recipient: Some(page.responder.to_string()),
        thread: None,
    }
}

/// One page to deliver: the same message through each paging channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageDelivery {
    page: PageId,
    sends: Vec<Outgoing>,
}

impl PageDelivery {
    /// The page.
    pub fn page(&self) -> PageId {
        self.page
    }
    /// What to send, channel by channel, in the configured order.
    pub fn sends(&self) -> &[Outgoing] {
        &self.sends
    }
    /// The events recording what became of each send: `page.delivered.v1`
    /// or `page.delivery_failed.v1`, one per receipt, in order.
    pub fn recorded(&self, receipts: &[Receipt]) -> Vec<PageEvent> {
        receipts
            .iter()
            .map(|r| match &r.outcome {
                Outcome::Delivered { attempts, .. } => PageEvent::delivered(self.page, &r.channel, *attempts, r.at),
                Outcome::Failed { attempts, error } => {
                    PageEvent::delivery_failed(self.page, &r.channel, *attempts, error, r.at)
                }
            })
            .collect()
    }
}

/// Why an acknowledgement was refused. Each variant has a stable
/// [`AckError::rule`] id for the edge to map onto a status code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AckError {
    /// No page of the incident has this id (not found).
    #[error("{page} is not a page of {incident}")]
    UnknownPage {
        /// The page asked for.
        page: PageId,
        /// The incident whose pages were searched.
        incident: IncidentId,
    },
    /// Only the paged responder or a manager may acknowledge (permission
    /// denied).
    #[error("{page} was sent to {responder}; only they or a paging manager may acknowledge it, not {actor}")]
    NotYours {
        /// The page.
        page: PageId,
        /// Who it was sent to.
        responder: ActorId,
        /// Who tried.
        actor: ActorId,
    },
    /// The page was acknowledged before (failed precondition).
    #[error("{page} was already acknowledged by {by} at {}", at.to_rfc3339())]
    AlreadyAcknowledged {
        /// The page.
        page: PageId,
        /// Who acknowledged it.
        by: ActorId,
        /// When.
        at: DateTime<Utc>,
    },
    /// The incident is resolved or closed: there is nothing to acknowledge
    /// (failed precondition).
    #[error("{incident} is {status}; its pages can no longer be acknowledged")]
    IncidentClosed {
        /// The incident.
        incident: IncidentId,
        /// Its status.
        status: Status,
    },
    /// The page is a role assignment's notice: it asks nobody to respond,
    /// so there is nothing to acknowledge (failed precondition).
    #[error(
        "{page} is a notice that {responder} holds a role of {incident}; there is nothing to acknowledge (join the bridge with: klaxon join {incident})"
    )]
    Notice {
        /// The page.
        page: PageId,
        /// Whom it told.
        responder: ActorId,
        /// The incident.
        incident: IncidentId,
    },
}

impl AckError {
    /// A stable identifier of the rule, such as `ack.unknown_page`.
    pub fn rule(&self) -> &'static str {
        match self {
            AckError::UnknownPage { .. } => "ack.unknown_page",
            AckError::NotYours { .. } => "ack.not_yours",
            AckError::AlreadyAcknowledged { .. } => "ack.already_acknowledged",
            AckError::IncidentClosed { .. } => "ack.incident_closed",
            AckError::Notice { .. } => "ack.notice",
        }
    }
}

/// Decides `actor` acknowledging `page` at `now`: a `page.acknowledged.v1`
/// event by `actor`, or why not.
///
/// Checked in order: the page exists, `actor` is its responder or one of the
/// configured managers, it was not acknowledged yet (logs written before
/// notices were refused may hold an acknowledged one), it is no role
/// notice, and the incident is not resolved or closed (a mitigated
/// incident's pages may still be acknowledged).
pub fn acknowledge(
    state: &IncidentPaging,
    page: &PageId,
    actor: &ActorId,
    config: &PagingConfig,
    now: DateTime<Utc>,
) -> Result<PageEvent, AckError> {
    let found = state.pages.get(page).ok_or(AckError::UnknownPage { page: *page, incident: state.incident })?;
    if found.responder != *actor && !config.is_manager(actor) {
        return Err(AckError::NotYours { page: *page, responder: found.responder.clone(), actor: actor.clone() });
    }
    if let Some((by, at)) = &found.acknowledged {
        return Err(AckError::AlreadyAcknowledged { page: *page, by: by.clone(), at: *at });
    }
    if found.reason.is_notice() {
        let (responder, incident) = (found.responder.clone(), state.incident);
        return Err(AckError::Notice { page: *page, responder, incident });
    }
    if let Some(status @ (Status::Resolved | Status::Closed)) = state.status {
        return Err(AckError::IncidentClosed { incident: state.incident, status });
    }
    Ok(PageEvent {
        incident: state.incident,
        at: now,
        by: actor.clone(),
        change: PageChange::PageAcknowledged(PageAcknowledged { page: *page }),
    })
}

/// One step of [`decide`]: the first thing due, with everything it implies
/// at once (a level that resolves to nobody escalates in the same step).
struct Step<'a> {
    state: &'a IncidentPaging,
    config: &'a PagingConfig,
    catalog: &'a ServiceCatalog,
    schedules: &'a Schedules,
    policy: &'a EscalationPolicy,
    now: DateTime<Utc>,
    next_page: u32,
    events: Vec<PageEvent>,
    /// The policy to record on the next event of the episode's chain: set
    /// when this step starts the chain.
    pin: Option<EscalationPolicy>,
}

impl<'a> Step<'a> {
    fn new(
        state: &'a IncidentPaging,
        config: &'a PagingConfig,
        catalog: &'a ServiceCatalog,
        schedules: &'a Schedules,
        now: DateTime<Utc>,
    ) -> Step<'a> {
        let next_page = u32::try_from(state.pages.len()).map_or(u32::MAX, |n| n.saturating_add(1));
        let policy = state.episode_policy().unwrap_or_else(|| config.policy_for(state.service.as_ref(), catalog));
        Step { state, config, catalog, schedules, policy, now, next_page, events: Vec::new(), pin: None }
    }

    /// The policy that carries out a manager's request: a person or a
    /// schedule alone on one level with the ack SLO of the incident's
    /// severity as its timeout (the defaults without a severity), a team
    /// its policy; `None` for a team that has none (any more).
    fn pull_policy(&self, pull: &PullRequest) -> Option<EscalationPolicy> {
        let timeout = self.state.severity.map_or(Slo::DEFAULT, |s| self.config.slo(s)).ack;
        match &pull.target {
            PageTarget::Person(p) => Some(EscalationPolicy::single("person", Target::Person(p.clone()), timeout)),
            PageTarget::Schedule(s) => Some(EscalationPolicy::single("schedule", Target::Schedule(s.clone()), timeout)),
            PageTarget::Team(team) => self.config.policy_for_team(team, self.catalog).cloned(),
        }
    }

    /// The first manager's request with something due: its first page, or
    /// an escalation of its chain. Nothing once the incident is resolved.
    fn pull(&mut self) {
        if !is_open(self.state) {
            return;
        }
        let state = self.state;
        let now = self.now;
        for (index, pull) in state.pulls.iter().enumerate() {
            let n = u32::try_from(index + 1).unwrap_or(u32::MAX);
            if pull.notice {
                if pull.chain.is_none() {
                    let PageTarget::Person(person) = &pull.target else { unreachable!("notices go to a person") };
                    let page = self.next_id();
                    self.emit(PageChange::ResponderPaged(ResponderPaged {
                        page,
                        responder: person.clone(),
                        level: None,
                        round: 0,
                        reason: PageReason::RoleAssigned,
                        deadline: None,
                        request: Some(n),
                        policy: None,
                    }));
                    return;
                }
                continue;
            }
            let policy = self.pull_policy(pull);
            match (&pull.chain, policy) {
                (None, None) => self.emit(PageChange::PageEscalated(PageEscalated {
                    page: None,
                    from_level: 0,
                    to_level: None,
                    round: 0,
                    request: Some(n),
                    policy: None,
                })),
                (None, Some(policy)) => self.page_level(&policy, 0, 0, PageReason::Requested, Some(n)),
                (Some(chain), _) if chain.acknowledged.is_some() || chain.exhausted => {}
                (Some(_), None) => {}
                (Some(chain), Some(policy)) => match chain.deadline {
                    None => self.page_level(&policy, chain.level, chain.round, PageReason::Escalation, Some(n)),
                    Some(deadline) if now >= deadline => {
                        let first = chain.level_pages.first().copied();
                        self.escalate(&policy, chain.level, chain.round, first, deadline, Some(n));
                    }
                    Some(_) => {}
                },
            }
            if !self.events.is_empty() {
                return;
            }
        }
    }

    fn run(mut self) -> Vec<PageEvent> {
        if let Some(stopped) = &self.state.stopped {
            let (severity, config) = (stopped.severity, stopped.config.clone());
            self.emit(PageChange::PagingStopped(PagingStopped { severity, config }));
            return self.events;
        }
        self.pull();
        if !self.events.is_empty() {
            return self.events;
        }
        let (Some(episode), Some(severity)) = (&self.state.episode, self.state.severity) else {
            // A mitigated incident: only the resolution clock still runs.
            self.resolve_breach();
            return self.events;
        };
        let slo = self.config.slo(severity);
        let now = self.now;
        let policy = self.policy;
        match &episode.chain {
            None => {
                self.pin = Some(policy.clone());
                self.page_level(policy, 0, 0, PageReason::Severity, None);
            }
            Some(chain) => match chain.acknowledged {
                Some((page, at)) if now >= at + slo.ack_timeout => {
                    self.emit(PageChange::AckTimedOut(AckTimedOut { page }));
                    self.page_level(policy, chain.level, chain.round, PageReason::AckTimeout, None);
                }
                Some(_) => {}
                None if chain.exhausted => {}
                None => match chain.deadline {
                    None => self.page_level(policy, chain.level, chain.round, PageReason::Escalation, None),
                    Some(deadline) if now >= deadline => {
                        let first = chain.level_pages.first().copied();
                        self.escalate(policy, chain.level, chain.round, first, deadline, None);
                    }
                    Some(_) => {}
                },
            },
        }
        if !self.events.is_empty() {
            return self.events;
        }
        if episode.first_ack_at.is_none() && !episode.breached.contains(&SloKind::Ack) {
            if let Some(first) = episode.first_paged_at {
                let due_at = first + slo.ack;
                if now >= due_at {
                    self.breach(SloKind::Ack, due_at);
                    return self.events;
                }
            }
        }
        if self.state.commander.is_none() && !episode.breached.contains(&SloKind::Assign) {
            let due_at = episode.reached_at + slo.assign;
            if now >= due_at {
                self.breach(SloKind::Assign, due_at);
                return self.events;
            }
        }
        self.resolve_breach();
        self.events
    }

    fn emit(&mut self, mut change: PageChange) {
        // The chain's first event records its policy.
        match &mut change {
            PageChange::ResponderPaged(p) if p.request.is_none() && p.level.is_some() => p.policy = self.pin.take(),
            PageChange::PageEscalated(e) if e.request.is_none() => e.policy = self.pin.take(),
            _ => {}
        }
        self.events.push(PageEvent { incident: self.state.incident, at: self.now, by: paging_actor(), change });
    }

    fn next_id(&mut self) -> PageId {
        let id = PageId::new(self.state.incident, self.next_page).expect("page numbers start at 1");
        self.next_page = self.next_page.saturating_add(1);
        id
    }

    /// Pages every responder of `level` of `policy` (for the manager's
    /// `request`, or the incident's own chain), or escalates at once when
    /// the level resolves to nobody.
    fn page_level(
        &mut self,
        policy: &EscalationPolicy,
        level: u32,
        round: u32,
        reason: PageReason,
        request: Option<u32>,
    ) {
        let config = policy.level(level);
        let deadline = self.now + config.timeout();
        let mut responders: Vec<ActorId> = Vec::new();
        for target in config.targets() {
            let who = match target {
                Target::Person(person) => Some(person.clone()),
                Target::Schedule(name) => {
                    self.schedules.get(name).and_then(|s| s.on_call_at(self.now)).map(|on_call| on_call.who)
                }
            };
            if let Some(who) = who.filter(|who| !responders.contains(who)) {
                responders.push(who);
            }
        }
        if responders.is_empty() {
            self.escalate(policy, level, round, None, self.now, request);
            return;
        }
        for responder in responders {
            let page = self.next_id();
            self.emit(PageChange::ResponderPaged(ResponderPaged {
                page,
                responder,
                level: Some(level),
                round,
                reason,
                deadline: Some(deadline),
                request,
                policy: None,
            }));
        }
    }

    /// Moves the chain on from `level` of `round`, left unanswered at
    /// `missed_at` (its first page was `page`). A manager's request whose
    /// chain runs out just ends: it owes no SLO and pages no duty manager.
    fn escalate(
        &mut self,
        policy: &EscalationPolicy,
        level: u32,
        round: u32,
        page: Option<PageId>,
        missed_at: DateTime<Utc>,
        request: Option<u32>,
    ) {
        match policy.next(level, round) {
            Some((to, next_round)) => {
                self.emit(PageChange::PageEscalated(PageEscalated {
                    page,
                    from_level: level,
                    to_level: Some(to),
                    round: next_round,
                    request,
                    policy: None,
                }));
                let reason = if next_round == round { PageReason::Escalation } else { PageReason::Repeat };
                self.page_level(policy, to, next_round, reason, request);
            }
            None => {
                self.emit(PageChange::PageEscalated(PageEscalated {
                    page,
                    from_level: level,
                    to_level: None,
                    round,
                    request,
                    policy: None,
                }));
                if request.is_some() {
                    return;
                }
                let episode = self.state.episode.as_ref().expect("only escalating during an episode");
                let already = episode.breached.contains(&SloKind::Ack) || episode.first_ack_at.is_some();
                if !already {
                    let slo = self.config.slo(self.state.severity.expect("an episode has a severity"));
                    let due_at = episode.first_paged_at.map_or(missed_at, |first| (first + slo.ack).min(missed_at));
                    self.emit(PageChange::SloBreached(SloBreached { slo: SloKind::Ack, due_at }));
                }
                self.page_duty_manager(round);
            }
        }
    }

    /// Records the resolution SLO's breach once it is due.
    fn resolve_breach(&mut self) {
        if let Some(due_at) = resolve_due(self.state, self.config).filter(|due| self.now >= *due) {
            self.breach(SloKind::Resolve, due_at);
        }
    }

    fn breach(&mut self, slo: SloKind, due_at: DateTime<Utc>) {
        self.emit(PageChange::SloBreached(SloBreached { slo, due_at }));
        let round = self.state.escalation().map_or(0, Escalation::round);
        self.page_duty_manager(round);
    }

    fn page_duty_manager(&mut self, round: u32) {
        let schedule = self.schedules.get(self.config.duty_manager_schedule());
        let Some(on_call) = schedule.and_then(|s| s.on_call_at(self.now)) else { return };
        let page = self.next_id();
        self.emit(PageChange::ResponderPaged(ResponderPaged {
            page,
            responder: on_call.who,
            level: None,
            round,
            reason: PageReason::SloBreach,
            deadline: None,
            request: None,
            policy: None,
        }));
    }
}
