//! Page events: page ids, the facts of the paging service, their stable
//! persisted names and their log format (the same envelope as incident
//! events).

use std::fmt;
use std::num::NonZeroU32;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::Error;
use crate::envelope::{Event, changes};
use crate::ids::{ActorId, IncidentId, Severity};
use crate::text::counted;

#[cfg(test)]
mod tests;

/// The longest delivery channel name, in characters.
pub const CHANNEL_CHARS_MAX: usize = 64;
/// The longest delivery error kept in a `page.delivery_failed.v1` event, in
/// characters; [`PageEvent::delivery_failed`] truncates longer ones.
pub const DELIVERY_ERROR_CHARS_MAX: usize = 1_000;

/// The actor id of the paging service, the `by` of every event it decides.
pub const PAGING_ACTOR: &str = "klaxon-paging";

/// The paging service as an actor: `klaxon-paging`.
pub fn paging_actor() -> ActorId {
    ActorId::new(PAGING_ACTOR).expect("a valid actor id")
}

/// The name of an incident's page stream in the log, such as
/// `pages-INC-42`.
pub fn stream(incident: IncidentId) -> String {
    format!("pages-{incident}")
}

/// The id of a page: `<incident>-P<n>`, such as `INC-7-P3` for the third
/// page of INC-7.
///
/// `n` counts from 1 in the order the pages were decided, so ids are
/// deterministic (a replay decides the same ids) and short enough to type
/// when acknowledging. The id is also the idempotency key of the page's
/// delivery. Parsing accepts the prefixes in any case (`inc-7-p3`) but no
/// leading zeros, so every id has exactly one spelling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PageId {
    incident: IncidentId,
    number: NonZeroU32,
}

impl PageId {
    /// The `number`-th page of `incident`; `number` must be at least 1.
    pub fn new(incident: IncidentId, number: u32) -> Result<PageId, Error> {
        NonZeroU32::new(number)
            .map(|number| PageId { incident, number })
            .ok_or_else(|| Error::invalid("page_id", "the page number must be at least 1"))
    }

    /// The incident paged for.
    pub fn incident(self) -> IncidentId {
        self.incident
    }

    /// The `n` of `-P<n>`, at least 1.
    pub fn number(self) -> u32 {
        self.number.get()
    }
}

impl fmt::Display for PageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-P{}", self.incident, self.number)
    }
}

impl FromStr for PageId {
    type Err = Error;

    fn from_str(s: &str) -> Result<PageId, Error> {
        let bad = |reason: &str| Error::invalid("page_id", format!("{s:?}: {reason}"));
        let (incident, page) = s.rsplit_once('-').ok_or_else(|| bad("expected INC-<number>-P<number>"))?;
        let incident: IncidentId = incident.parse().map_err(|_| bad("expected INC-<number>-P<number>"))?;
        let digits = page
            .strip_prefix('P')
            .or_else(|| page.strip_prefix('p'))
            .filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| bad("expected INC-<number>-P<number>"))?;
        if digits.starts_with('0') {
            return Err(bad("the page number must be at least 1, without leading zeros"));
        }
        let number = digits.parse::<u32>().map_err(|_| bad("the page number is too large"))?;
        PageId::new(incident, number)
    }
}

impl TryFrom<String> for PageId {
    type Error = Error;

    fn try_from(s: String) -> Result<PageId, Error> {
        s.parse()
    }
}

impl From<PageId> for String {
    fn from(id: PageId) -> String {
        id.to_string()
    }
}

/// Why a responder was paged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PageReason {
    /// The incident reached a paging severity: the first level of a chain.
    Severity,
    /// The previous level did not acknowledge in time.
    Escalation,
    /// The last level did not acknowledge in time; the policy starts again
    /// from level 0 (a new round).
    Repeat,
    /// An acknowledgement ran out without mitigation; the same level is
    /// paged again.
    AckTimeout,
    /// The duty manager is paged because an SLO was breached or an
    /// escalation ran out of levels and rounds.
    SloBreach,
    /// A manager pulled the responder in (`incident.responder_requested.v1`,
    /// the first level of the request's own chain).
    Requested,
    /// The responder was given a role on the incident team other than
    /// commander: a notice with no level and no deadline, never escalated.
    RoleAssigned,
}

/// Which service level an incident missed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SloKind {
    /// No page was acknowledged in time.
    Ack,
    /// No commander was assigned in time.
    Assign,
    /// No executive update was posted in time (decided by the executive
    /// notifier, not by [`super::decide`]).
    UpdateCadence,
    /// The incident was not resolved within `resolve_minutes` of reaching a
    /// paging severity.
    Resolve,
}

impl PageReason {
    /// The name used in JSON, such as `ack_timeout`.
    pub fn as_str(self) -> &'static str {
        match self {
            PageReason::Severity => "severity",
            PageReason::Escalation => "escalation",
            PageReason::Repeat => "repeat",
            PageReason::AckTimeout => "ack_timeout",
            PageReason::SloBreach => "slo_breach",
            PageReason::Requested => "requested",
            PageReason::RoleAssigned => "role_assigned",
        }
    }

    /// Whether the page is a role assignment's notice: it tells someone
    /// they hold a role and asks nobody to respond, so it is not
    /// acknowledged, and the review metrics and the queue count it as no
    /// page.
    pub fn is_notice(self) -> bool {
        self == PageReason::RoleAssigned
    }
}

impl SloKind {
    /// The name used in JSON, such as `update_cadence`.
    pub fn as_str(self) -> &'static str {
        match self {
            SloKind::Ack => "ack",
            SloKind::Assign => "assign",
            SloKind::UpdateCadence => "update_cadence",
            SloKind::Resolve => "resolve",
        }
    }
}

impl fmt::Display for PageReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for SloKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One fact of the paging service about one incident, stored in the stream
/// [`stream`] of the incident.
///
/// The log stores it as a record of kind [`PageEvent::kind`] whose data is
/// [`PageEvent::to_json`]: one flat JSON object holding `incident`, `at`
/// (RFC 3339, UTC) and `by`, followed by the fields of the change.
///
/// The `at` is when it was decided (the `now` given to the decision); the
/// `by` is [`PAGING_ACTOR`] for the service's own decisions and deliveries,
/// and the acknowledging person for `page.acknowledged.v1`.
pub type PageEvent = Event<PageChange>;

impl PageEvent {
    /// A `page.delivered.v1` event by the paging service, for the shell that
    /// delivered `page` through `channel` in `attempts` attempts.
    pub fn delivered(page: PageId, channel: &str, attempts: u32, at: DateTime<Utc>) -> PageEvent {
        PageEvent {
            incident: page.incident(),
            at,
            by: paging_actor(),
            change: PageChange::PageDelivered(PageDelivered {
                page,
                channel: truncate(channel, CHANNEL_CHARS_MAX),
                attempts,
            }),
        }
    }

    /// A `page.delivery_failed.v1` event by the paging service, for the shell
    /// that gave up delivering `page` through `channel` after `attempts`
    /// attempts. `error` is truncated to [`DELIVERY_ERROR_CHARS_MAX`].
    pub fn delivery_failed(page: PageId, channel: &str, attempts: u32, error: &str, at: DateTime<Utc>) -> PageEvent {
        PageEvent {
            incident: page.incident(),
            at,
            by: paging_actor(),
            change: PageChange::PageDeliveryFailed(PageDeliveryFailed {
                page,
                channel: truncate(channel, CHANNEL_CHARS_MAX),
                attempts,
                error: truncate(error, DELIVERY_ERROR_CHARS_MAX),
            }),
        }
    }

    /// One readable sentence saying what happened, for timelines, such as
    /// `paged ana (INC-7-P1, level 0, round 0): severity`.
    pub fn summary(&self) -> String {
        match &self.change {
            PageChange::ResponderPaged(p) => {
                let request = p.request.map(|n| format!("request {n}, ")).unwrap_or_default();
                let place = match p.reason {
                    // A notice has no level and no round to be in.
                    PageReason::RoleAssigned => p.level_label(),
                    _ => format!("{}, round {}", p.level_label(), p.round),
                };
                format!("paged {} ({}, {request}{place}): {}", p.responder, p.page, p.reason)
            }
            PageChange::PageDelivered(d) => {
                format!("delivered {} via {} in {}", d.page, d.channel, counted(d.attempts, "attempt"))
            }
            PageChange::PageDeliveryFailed(d) => {
                format!(
                    "could not deliver {} via {} in {}: {}",
                    d.page,
                    d.channel,
                    counted(d.attempts, "attempt"),
                    d.error
                )
            }
            PageChange::PageAcknowledged(a) => format!("{} acknowledged {}", self.by, a.page),
            PageChange::PageEscalated(e) => {
                let page = e.page.map_or_else(|| "nobody on call".to_owned(), |page| format!("{page} unanswered"));
                match e.to_level {
                    Some(to) => {
                        format!("escalated from level {} to level {to}, round {} ({page})", e.from_level, e.round)
                    }
                    None => format!("escalation exhausted after level {}, round {} ({page})", e.from_level, e.round),
                }
            }
            PageChange::AckTimedOut(t) => format!("the acknowledgement of {} timed out without mitigation", t.page),
            PageChange::SloBreached(b) => format!("breached the {} SLO due at {}", b.slo, b.due_at.to_rfc3339()),
            PageChange::PagingStopped(s) => {
                let hash: String = s.config.chars().take(12).collect();
                format!("paging stopped: {} no longer pages under configuration {hash}", s.severity)
            }
        }
    }
}

impl ResponderPaged {
    /// Where the page stands, for people: `level 2` on a policy's level,
    /// `duty manager` for the duty manager's page, `notice` for a role
    /// assignment's (both have no level).
    pub fn level_label(&self) -> String {
        match (self.level, self.reason) {
            (Some(level), _) => format!("level {level}"),
            (None, PageReason::RoleAssigned) => "notice".to_owned(),
            (None, _) => "duty manager".to_owned(),
        }
    }
}

/// `text` cut to at most `max` characters.
fn truncate(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
}

changes! {
    /// What a [`PageEvent`] records: one variant per kind of fact, each
    /// holding a struct of the same name.
    pub enum PageChange for PageEvent;
    /// Every page event kind. A kind's name and meaning never change; a
    /// new schema gets a new `.vN` name.
    pub const KINDS;
    /// A responder was paged.
    ResponderPaged => "page.responder_paged.v1",
    /// A page reached its channel.
    PageDelivered => "page.delivered.v1",
    /// A page could not be delivered; the shell gave up.
    PageDeliveryFailed => "page.delivery_failed.v1",
    /// A page was acknowledged (`by` is who).
    PageAcknowledged => "page.acknowledged.v1",
    /// A level went unanswered and the chain moved on (or ran out).
    PageEscalated => "page.escalated.v1",
    /// An acknowledgement ran out without mitigation; paging resumes.
    AckTimedOut => "page.ack_timed_out.v1",
    /// A service level objective was missed.
    SloBreached => "slo.breached.v1",
    /// A recorded configuration stopped the incident's episode: its
    /// severity no longer pages, and its chain escalates no further.
    PagingStopped => "page.paging_stopped.v1",
}

/// The fields of [`PageChange::ResponderPaged`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResponderPaged {
    /// The new page's id, the next number of the incident.
    pub page: PageId,
    /// Who is paged.
    pub responder: ActorId,
    /// The escalation policy level (from 0), or `null` for a page outside
    /// any policy that never escalates: the duty manager's, or a role
    /// assignment's notice ([`PageReason::RoleAssigned`]).
    pub level: Option<u32>,
    /// The round of the policy (0 for the first walk through the levels);
    /// for a duty-manager page, the round the escalation had reached (0
    /// when there was none).
    pub round: u32,
    /// Why the page was sent.
    pub reason: PageReason,
    /// When the level escalates if nobody acknowledges; `null` for a
    /// duty-manager page.
    pub deadline: Option<DateTime<Utc>>,
    /// The manager's request this page carries out: the number (from 1) of
    /// the incident's `incident.responder_requested.v1` events, in log
    /// order. Absent for pages of the incident's own chain and duty-manager
    /// pages (and in records written before requests existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<u32>,
    /// The escalation policy the episode runs under, on the first event of
    /// an episode's chain only (that event is this page or, when level 0
    /// had nobody on call, a `page.escalated.v1`): its name and its levels
    /// as a `[[escalation_policies]]` table. Every later decision of the
    /// episode's chain follows it, whatever the configuration says since.
    /// Absent on every other event and in records written before episodes
    /// recorded their policy (the configured policy applies then).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<super::EscalationPolicy>,
}

/// The fields of [`PageChange::PageDelivered`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PageDelivered {
    /// The page delivered.
    pub page: PageId,
    /// The channel that took it, such as `slack` or `email`.
    pub channel: String,
    /// How many attempts it took, at least 1.
    pub attempts: u32,
}

/// The fields of [`PageChange::PageDeliveryFailed`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PageDeliveryFailed {
    /// The page that could not be delivered.
    pub page: PageId,
    /// The channel that failed.
    pub channel: String,
    /// How many attempts were made.
    pub attempts: u32,
    /// The last error, at most [`DELIVERY_ERROR_CHARS_MAX`] characters.
    pub error: String,
}

/// The fields of [`PageChange::PageAcknowledged`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PageAcknowledged {
    /// The page acknowledged; the event's `by` is who acknowledged it.
    pub page: PageId,
}

/// The fields of [`PageChange::PageEscalated`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PageEscalated {
    /// The first page of the level left unanswered, or `null` when that
    /// level had nobody on call (it is skipped at once).
    pub page: Option<PageId>,
    /// The level left.
    pub from_level: u32,
    /// The level paged next, or `null` when every level of every round was
    /// tried: the escalation is exhausted and the duty manager is paged.
    pub to_level: Option<u32>,
    /// The round of `to_level` (the round left when exhausted).
    pub round: u32,
    /// The manager's request whose chain moved (see
    /// [`ResponderPaged::request`]); absent for the incident's own chain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<u32>,
    /// The escalation policy the episode runs under, on the first event of
    /// an episode's chain only (this event when level 0 had nobody on call,
    /// otherwise the first `page.responder_paged.v1`): its name and its levels
    /// as a `[[escalation_policies]]` table. Every later decision of the
    /// episode's chain follows it, whatever the configuration says since.
    /// Absent on every other event and in records written before episodes
    /// recorded their policy (the configured policy applies then).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<super::EscalationPolicy>,
}

/// The fields of [`PageChange::AckTimedOut`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AckTimedOut {
    /// The acknowledged page whose acknowledgement ran out.
    pub page: PageId,
}

/// The fields of [`PageChange::SloBreached`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SloBreached {
    /// Which SLO.
    pub slo: SloKind,
    /// When it was due: the event's `at` is when the breach was noticed,
    /// which is later after a restart.
    pub due_at: DateTime<Utc>,
}

/// The fields of [`PageChange::PagingStopped`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PagingStopped {
    /// The incident's severity, which no longer pages.
    pub severity: Severity,
    /// The hash of the configuration that stopped it: the `hash` of its
    /// `config.applied.v1` record (stream `config`), whose `changes` say
    /// what changed.
    pub config: String,
}
