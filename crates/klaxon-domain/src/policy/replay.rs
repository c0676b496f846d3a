//! Replaying the past under a candidate policy.
//!
//! A [`Replay`] is fed the recorded incident and page events in log order
//! ([`Replay::incident`], [`Replay::page`]) and keeps, for each incident
//! first reported inside the [`Window`], two things side by side:
//!
//! - **what happened**: the recorded assessments (severity and rule id),
//!   pages, escalations and SLO breaches;
//! - **what would have happened** under the candidate: the incident's own
//!   facts (reports, declarations, overrides, commanders, handoffs, roles,
//!   impact, mitigations, resolutions) folded again, every recorded
//!   assessment replaced by the candidate rules' ([`severity::assess`]),
//!   and the candidate's paging decided by [`paging::decide`] on a simulated
//!   clock: before each event the clock moves to every [`paging::next_due`]
//!   up to the event's `at`, then to the event.
//!
//! Responses are replayed by person: a recorded acknowledgement by `A` of a
//! page sent to `R` acknowledges the candidate's latest unacknowledged page
//! to `R` paged by then; when the candidate paged `R` nothing, a manager's
//! acknowledgement (`[paging] managers` of the candidate) takes the
//! candidate's latest unacknowledged page instead, and otherwise the
//! acknowledgement is *not replayed* (the person was never asked) and is
//! listed. [`Replay::finish`] moves every clock to the end of the window and
//! compares ([`Outcome`]). Nothing here reads a clock or writes anything.
//!
//! Recorded times are those of the paging service's clock when it decided,
//! a little after the event that caused the decision; the candidate decides
//! at the event's own `at`. Two pages are the same page when responder,
//! level, round, reason and request are equal and their times are within
//! [`PAGE_TOLERANCE`].

use std::collections::BTreeMap;

use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;

use super::Policy;
use crate::ConfigError;
use crate::ids::{ActorId, IncidentId, Severity};
use crate::incident::{self, Change, Incident, IncidentEvent};
use crate::paging::{self, IncidentPaging, PageChange, PageEvent, PageId};
use crate::severity;

/// The most incidents one replay keeps; a wider window is refused (narrow
/// it with `--from` / `--until`).
pub const INCIDENTS_MAX: usize = 10_000;
/// How far apart a recorded and a replayed page may be and still be the
/// same page.
pub const PAGE_TOLERANCE: TimeDelta = TimeDelta::seconds(60);
/// The most decisions one move of an incident's clock takes; each decision
/// moves a chain or records a breach, so reaching it is a bug.
const DECISIONS_MAX: usize = 10_000;

/// Which incidents to replay: those first reported at or after `from` and
/// before `until`; events at or after `until` are not replayed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Window {
    /// The first instant, or from the beginning.
    pub from: Option<DateTime<Utc>>,
    /// The first instant after the window, or up to now.
    pub until: Option<DateTime<Utc>>,
}

impl Window {
    fn contains(&self, at: DateTime<Utc>) -> bool {
        self.from.is_none_or(|from| at >= from) && self.until.is_none_or(|until| at < until)
    }
}

/// A page, recorded or replayed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PageSeen {
    /// When it was decided.
    pub at: DateTime<Utc>,
    /// Who was paged.
    pub responder: ActorId,
    /// The policy level; `None` for the duty manager and role notices.
    pub level: Option<u32>,
    /// The policy round.
    pub round: u32,
    /// Why (`severity`, `escalation`, `slo_breach`, …).
    pub reason: String,
    /// The manager's request it carried out, if any.
    pub request: Option<u32>,
}

impl PageSeen {
    fn same(&self, other: &PageSeen) -> bool {
        self.responder == other.responder
            && self.level == other.level
            && self.round == other.round
            && self.reason == other.reason
            && self.request == other.request
            && (self.at - other.at).abs() <= PAGE_TOLERANCE
    }
}

/// An escalation, recorded or replayed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Escalated {
    /// When.
    pub at: DateTime<Utc>,
    /// The level left.
    pub from_level: u32,
    /// The level paged next; `None` when the chain was exhausted.
    pub to_level: Option<u32>,
    /// The manager's request whose chain it was, if any.
    pub request: Option<u32>,
}

impl Escalated {
    fn same(&self, other: &Escalated) -> bool {
        self.from_level == other.from_level
            && self.to_level == other.to_level
            && self.request == other.request
            && (self.at - other.at).abs() <= PAGE_TOLERANCE
    }
}

/// An SLO breach, recorded or replayed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Breach {
    /// Which SLO: `ack`, `assign` or `resolve`.
    pub slo: String,
    /// When it fell due.
    pub due_at: DateTime<Utc>,
}

/// A severity assessment, recorded or replayed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Assessed {
    /// When.
    pub at: DateTime<Utc>,
    /// The severity given.
    pub severity: Severity,
    /// The rule that gave it; `None` for the default.
    pub rule: Option<String>,
}

/// One incident, before (as recorded) and after (as replayed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IncidentDiff {
    /// The incident.
    pub incident: IncidentId,
    /// Its title.
    pub title: String,
    /// Its severity at the end of the window, as recorded.
    pub severity_before: Option<Severity>,
    /// The rule of its last recorded assessment.
    pub rule_before: Option<String>,
    /// Its severity at the end of the window under the candidate.
    pub severity_after: Option<Severity>,
    /// The rule of its last assessment under the candidate.
    pub rule_after: Option<String>,
    /// Every recorded assessment.
    pub assessments_before: Vec<Assessed>,
    /// Every assessment under the candidate.
    pub assessments_after: Vec<Assessed>,
    /// The recorded pages.
    pub pages_before: Vec<PageSeen>,
    /// The pages under the candidate.
    pub pages_after: Vec<PageSeen>,
    /// The recorded escalations.
    pub escalations_before: Vec<Escalated>,
    /// The escalations under the candidate.
    pub escalations_after: Vec<Escalated>,
    /// The recorded SLO breaches.
    pub breaches_before: Vec<Breach>,
    /// The SLO breaches under the candidate.
    pub breaches_after: Vec<Breach>,
    /// Recorded acknowledgements the candidate had no page for (`who at
    /// time`).
    pub acks_not_replayed: Vec<String>,
    /// The final severity differs.
    pub severity_changed: bool,
    /// The rule that gave the last assessment differs.
    pub rule_changed: bool,
    /// Someone else, or at another time, or nobody would have been paged.
    pub paging_differs: bool,
    /// The escalations differ.
    pub escalations_differ: bool,
    /// Breaches the candidate adds, by SLO kind.
    pub breaches_new: u32,
    /// Breaches the candidate removes, by SLO kind.
    pub breaches_removed: u32,
}

impl IncidentDiff {
    /// Whether anything differs.
    pub fn differs(&self) -> bool {
        self.severity_changed
            || self.rule_changed
            || self.paging_differs
            || self.escalations_differ
            || self.breaches_new > 0
            || self.breaches_removed > 0
    }
}

/// The counts first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Incidents replayed.
    pub incidents: u32,
    /// Incidents whose final severity changes.
    pub severity_changed: u32,
    /// Incidents whose last assessment's rule changes.
    pub rule_changed: u32,
    /// Incidents whose pages differ.
    pub paging_differs: u32,
    /// Incidents whose escalations differ.
    pub escalations_differ: u32,
    /// SLO breaches the candidate adds.
    pub breaches_new: u32,
    /// SLO breaches the candidate removes.
    pub breaches_removed: u32,
    /// Recorded acknowledgements the candidate had no page for.
    pub acks_not_replayed: u32,
}

/// A replay's result: the summary, then every incident.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Outcome {
    /// The window replayed, its end filled in.
    pub window: Window,
    /// The counts.
    pub summary: Summary,
    /// Every incident replayed, in id order.
    pub incidents: Vec<IncidentDiff>,
}

/// One incident's two histories.
struct Track {
    recorded: Option<Incident>,
    assessments_before: Vec<Assessed>,
    pages_before: Vec<PageSeen>,
    escalations_before: Vec<Escalated>,
    breaches_before: Vec<Breach>,
    responders: BTreeMap<PageId, ActorId>,
    candidate: Option<Incident>,
    paging: Option<IncidentPaging>,
    clock: DateTime<Utc>,
    assessments_after: Vec<Assessed>,
    pages_after: Vec<PageSeen>,
    escalations_after: Vec<Escalated>,
    breaches_after: Vec<Breach>,
    acks_not_replayed: Vec<String>,
}

/// The replay of a window under a candidate [`Policy`]; see the
/// [module documentation](self).
pub struct Replay<'p> {
    policy: &'p Policy,
    window: Window,
    tracks: BTreeMap<IncidentId, Track>,
}

impl<'p> Replay<'p> {
    /// A replay of `window` under `policy`, before any event.
    pub fn new(policy: &'p Policy, window: Window) -> Replay<'p> {
        Replay { policy, window, tracks: BTreeMap::new() }
    }

    /// Folds one recorded event of an incident's own stream. A report
    /// inside the window starts the incident's replay; events of incidents
    /// outside it, and events at or after the window's end, are skipped.
    ///
    /// Refuses a window holding more than [`INCIDENTS_MAX`] incidents,
    /// naming `from`.
    pub fn incident(&mut self, event: &IncidentEvent) -> Result<(), ConfigError> {
        if self.window.until.is_some_and(|until| event.at >= until) {
            return Ok(());
        }
        if matches!(event.change, Change::Reported(_))
            && !self.tracks.contains_key(&event.incident)
            && self.window.contains(event.at)
        {
            if self.tracks.len() >= INCIDENTS_MAX {
                return Err(ConfigError::new(
                    "from",
                    format!("the window holds more than {INCIDENTS_MAX} incidents; narrow it with from and until"),
                ));
            }
            let paging = self.policy.paging.as_ref().map(|config| IncidentPaging::new(event.incident, config));
            self.tracks.insert(event.incident, Track::new(paging, event.at));
        }
        let policy = self.policy;
        let Some(track) = self.tracks.get_mut(&event.incident) else { return Ok(()) };
        track.recorded = incident::evolve(track.recorded.take(), event);
        if let Change::SeverityAssessed(a) = &event.change {
            track.assessments_before.push(Assessed { at: event.at, severity: a.severity, rule: a.rule.clone() });
            // The candidate assesses for itself.
            return Ok(());
        }
        track.advance(policy, event.at);
        track.candidate = incident::evolve(track.candidate.take(), event);
        if let Some(paging) = &mut track.paging {
            paging.apply_incident(event);
        }
        if let Some(candidate) = &track.candidate {
            if let Some(assessed) = severity::assess(candidate, &policy.rules, &policy.catalog, event.at) {
                if let Change::SeverityAssessed(a) = &assessed.change {
                    track.assessments_after.push(Assessed { at: event.at, severity: a.severity, rule: a.rule.clone() });
                }
                track.candidate = incident::evolve(track.candidate.take(), &assessed);
                if let Some(paging) = &mut track.paging {
                    paging.apply_incident(&assessed);
                }
            }
        }
        track.decide(policy, event.at);
        Ok(())
    }

    /// Folds one recorded event of an incident's page stream: pages,
    /// escalations and breaches are what happened; an acknowledgement is
    /// replayed as the module documentation says.
    pub fn page(&mut self, event: &PageEvent) {
        if self.window.until.is_some_and(|until| event.at >= until) {
            return;
        }
        let policy = self.policy;
        let Some(track) = self.tracks.get_mut(&event.incident) else { return };
        match &event.change {
            PageChange::ResponderPaged(p) => {
                track.responders.insert(p.page, p.responder.clone());
                track.pages_before.push(PageSeen {
                    at: event.at,
                    responder: p.responder.clone(),
                    level: p.level,
                    round: p.round,
                    reason: p.reason.to_string(),
                    request: p.request,
                });
            }
            PageChange::PageEscalated(e) => track.escalations_before.push(Escalated {
                at: event.at,
                from_level: e.from_level,
                to_level: e.to_level,
                request: e.request,
            }),
            PageChange::SloBreached(b) => {
                track.breaches_before.push(Breach { slo: b.slo.to_string(), due_at: b.due_at });
            }
            PageChange::PageAcknowledged(a) => {
                track.advance(policy, event.at);
                let responder = track.responders.get(&a.page).cloned().unwrap_or_else(|| event.by.clone());
                track.acknowledge(policy, &responder, &event.by, event.at);
                track.decide(policy, event.at);
            }
            PageChange::PageDelivered(_)
            | PageChange::PageDeliveryFailed(_)
            | PageChange::AckTimedOut(_)
            | PageChange::PagingStopped(_) => {}
        }
    }

    /// Moves every incident's clock to `end` (the window's end, or now) and
    /// compares what happened with what would have.
    pub fn finish(mut self, end: DateTime<Utc>) -> Outcome {
        let policy = self.policy;
        let mut summary = Summary::default();
        let mut incidents = Vec::with_capacity(self.tracks.len());
        for (id, track) in &mut self.tracks {
            track.advance(policy, end);
            let diff = track.diff(*id);
            summary.incidents += 1;
            summary.severity_changed += u32::from(diff.severity_changed);
            summary.rule_changed += u32::from(diff.rule_changed);
            summary.paging_differs += u32::from(diff.paging_differs);
            summary.escalations_differ += u32::from(diff.escalations_differ);
            summary.breaches_new += diff.breaches_new;
            summary.breaches_removed += diff.breaches_removed;
            summary.acks_not_replayed += u32::try_from(diff.acks_not_replayed.len()).unwrap_or(u32::MAX);
            incidents.push(diff);
        }
        let window = Window { from: self.window.from, until: Some(self.window.until.unwrap_or(end)) };
        Outcome { window, summary, incidents }
    }
}

/// How many breaches of each SLO kind.
fn count(breaches: &[Breach]) -> BTreeMap<&str, u32> {
    let mut kinds: BTreeMap<&str, u32> = BTreeMap::new();
    for b in breaches {
        *kinds.entry(b.slo.as_str()).or_default() += 1;
    }
    kinds
}

impl Track {
    fn new(paging: Option<IncidentPaging>, at: DateTime<Utc>) -> Track {
        Track {
            recorded: None,
            assessments_before: Vec::new(),
            pages_before: Vec::new(),
            escalations_before: Vec::new(),
            breaches_before: Vec::new(),
            responders: BTreeMap::new(),
            candidate: None,
            paging,
            clock: at,
            assessments_after: Vec::new(),
            pages_after: Vec::new(),
            escalations_after: Vec::new(),
            breaches_after: Vec::new(),
            acks_not_replayed: Vec::new(),
        }
    }

    /// Decides at every due instant up to `to`, then sets the clock there.
    fn advance(&mut self, policy: &Policy, to: DateTime<Utc>) {
        if let (Some(state), Some(config)) = (&self.paging, &policy.paging) {
            let mut state = state.clone();
            for _ in 0..DECISIONS_MAX {
                let Some(due) = paging::next_due(&state, config).filter(|due| *due <= to) else { break };
                let at = due.max(self.clock);
                let events = paging::decide(&state, config, &policy.catalog, &policy.schedules, at);
                if events.is_empty() {
                    break;
                }
                self.clock = at;
                for event in &events {
                    state.apply_page(event);
                    self.saw(event);
                }
            }
            self.paging = Some(state);
        }
        self.clock = self.clock.max(to);
    }

    /// Decides at `at` (the clock is there) and folds what it decides.
    fn decide(&mut self, policy: &Policy, at: DateTime<Utc>) {
        let (Some(state), Some(config)) = (&mut self.paging, &policy.paging) else { return };
        let events = paging::decide(state, config, &policy.catalog, &policy.schedules, at);
        for event in &events {
            state.apply_page(event);
        }
        for event in &events {
            self.saw(event);
        }
    }

    /// Replays an acknowledgement by `by` of a page that went to
    /// `responder`.
    fn acknowledge(&mut self, policy: &Policy, responder: &ActorId, by: &ActorId, at: DateTime<Utc>) {
        let (Some(state), Some(config)) = (&mut self.paging, &policy.paging) else {
            self.acks_not_replayed.push(format!("{by} at {}", at.to_rfc3339()));
            return;
        };
        let open = |p: &&paging::Page| p.acknowledged().is_none() && p.paged_at() <= at;
        let to_responder = state.pages().filter(open).filter(|p| p.responder() == responder).last().map(|p| p.id());
        let page = to_responder
            .or_else(|| config.is_manager(by).then(|| state.pages().filter(open).last().map(|p| p.id())).flatten());
        let acknowledged = page.and_then(|page| paging::acknowledge(state, &page, by, config, at).ok());
        match acknowledged {
            Some(event) => state.apply_page(&event),
            None => self.acks_not_replayed.push(format!("{by} at {}", at.to_rfc3339())),
        }
    }

    /// Records what a replayed decision did.
    fn saw(&mut self, event: &PageEvent) {
        match &event.change {
            PageChange::ResponderPaged(p) => self.pages_after.push(PageSeen {
                at: event.at,
                responder: p.responder.clone(),
                level: p.level,
                round: p.round,
                reason: p.reason.to_string(),
                request: p.request,
            }),
            PageChange::PageEscalated(e) => self.escalations_after.push(Escalated {
                at: event.at,
                from_level: e.from_level,
                to_level: e.to_level,
                request: e.request,
            }),
            PageChange::SloBreached(b) => self.breaches_after.push(Breach { slo: b.slo.to_string(), due_at: b.due_at }),
            _ => {}
        }
    }

    fn diff(&self, id: IncidentId) -> IncidentDiff {
        let severity_before = self.recorded.as_ref().and_then(Incident::severity);
        let severity_after = self.candidate.as_ref().and_then(Incident::severity);
        let rule_before = self.assessments_before.last().and_then(|a| a.rule.clone());
        let rule_after = self.assessments_after.last().and_then(|a| a.rule.clone());
        let paging_differs = self.pages_before.len() != self.pages_after.len()
            || self.pages_before.iter().zip(&self.pages_after).any(|(a, b)| !a.same(b));
        let escalations_differ = self.escalations_before.len() != self.escalations_after.len()
            || self.escalations_before.iter().zip(&self.escalations_after).any(|(a, b)| !a.same(b));
        let (before, after) = (count(&self.breaches_before), count(&self.breaches_after));
        let more = |a: &BTreeMap<&str, u32>, b: &BTreeMap<&str, u32>| -> u32 {
            a.iter().map(|(kind, n)| n.saturating_sub(b.get(kind).copied().unwrap_or(0))).sum()
        };
        IncidentDiff {
            incident: id,
            title: self.recorded.as_ref().map(|i| i.title().to_owned()).unwrap_or_default(),
            severity_changed: severity_before != severity_after,
            rule_changed: rule_before != rule_after,
            severity_before,
            rule_before,
            severity_after,
            rule_after,
            assessments_before: self.assessments_before.clone(),
            assessments_after: self.assessments_after.clone(),
            pages_before: self.pages_before.clone(),
            pages_after: self.pages_after.clone(),
            escalations_before: self.escalations_before.clone(),
            escalations_after: self.escalations_after.clone(),
            breaches_before: self.breaches_before.clone(),
            breaches_after: self.breaches_after.clone(),
            acks_not_replayed: self.acks_not_replayed.clone(),
            paging_differs,
            escalations_differ,
            breaches_new: more(&after, &before),
            breaches_removed: more(&before, &after),
        }
    }
}
