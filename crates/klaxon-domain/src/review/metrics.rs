//! Per-incident metrics, computed from the incident's events and its page
//! events.

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::incident::{Change, IncidentEvent};
use crate::paging::{PageChange, PageEvent, SloKind};

#[cfg(test)]
mod tests;

/// How many times each SLO was breached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SloBreaches {
    /// Breaches of the acknowledgement SLO.
    pub ack: u32,
    /// Breaches of the commander-assignment SLO.
    pub assign: u32,
    /// Breaches of the executive update cadence.
    pub update_cadence: u32,
    /// Breaches of the resolution SLA.
    pub resolve: u32,
}

impl SloBreaches {
    /// The breaches of `kind`.
    pub fn get(&self, kind: SloKind) -> u32 {
        match kind {
            SloKind::Ack => self.ack,
            SloKind::Assign => self.assign,
            SloKind::UpdateCadence => self.update_cadence,
            SloKind::Resolve => self.resolve,
        }
    }

    /// All breaches, of every kind.
    pub fn total(&self) -> u32 {
        self.ack.saturating_add(self.assign).saturating_add(self.update_cadence).saturating_add(self.resolve)
    }

    /// Counts one more breach of `kind`.
    pub(crate) fn add(&mut self, kind: SloKind, n: u32) {
        let count = match kind {
            SloKind::Ack => &mut self.ack,
            SloKind::Assign => &mut self.assign,
            SloKind::UpdateCadence => &mut self.update_cadence,
            SloKind::Resolve => &mut self.resolve,
        };
        *count = count.saturating_add(n);
    }
}

/// What one incident measured, from its events alone.
///
/// Every duration is `None` when it does not apply (its start or end never
/// happened) and is never negative: should clocks disagree and an end be
/// stamped before its start, the duration is zero. "First" means the first
/// such event in log order. In JSON, durations are whole seconds (truncated)
/// in fields suffixed `_seconds`, `null` when not applicable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct IncidentMetrics {
    /// From the moment the problem started according to the first report
    /// (its `started_at`, such as an alert's `startsAt`) to that first
    /// report. `None` when the first report did not say when it started.
    #[serde(rename = "time_to_detect_seconds", serialize_with = "seconds", deserialize_with = "from_seconds")]
    pub time_to_detect: Option<TimeDelta>,
    /// From the first page (`page.responder_paged.v1`, any page) to the
    /// first acknowledgement of any page. `None` when nobody was paged or
    /// nobody acknowledged.
    #[serde(rename = "time_to_acknowledge_seconds", serialize_with = "seconds", deserialize_with = "from_seconds")]
    pub time_to_acknowledge: Option<TimeDelta>,
    /// From the moment the incident needed an owner to the first time it had
    /// a commander (`incident.commander_assigned.v1` or an accepted
    /// handoff). The start is the earlier of the first declaration and the
    /// moment it first reached a paging severity, which the events show as
    /// the first page (the paging service pages at the instant an incident
    /// starts to page). `None` when neither happened or no commander was
    /// ever assigned.
    #[serde(rename = "time_to_assign_seconds", serialize_with = "seconds", deserialize_with = "from_seconds")]
    pub time_to_assign: Option<TimeDelta>,
    /// From the first declaration to the first mitigation. An incident
    /// resolved without a mitigation step counts its first resolution as its
    /// mitigation (resolving stops the impact too). `None` when never
    /// declared or neither mitigated nor resolved.
    #[serde(rename = "time_to_mitigate_seconds", serialize_with = "seconds", deserialize_with = "from_seconds")]
    pub time_to_mitigate: Option<TimeDelta>,
    /// From the first declaration (or the first report, if never declared)
    /// to the resolution that stands: the last `incident.resolved.v1` when
    /// the incident is resolved or closed after all its events. `None` while
    /// it is open, including after a reopening that was not resolved again.
    #[serde(rename = "time_to_resolve_seconds", serialize_with = "seconds", deserialize_with = "from_seconds")]
    pub time_to_resolve: Option<TimeDelta>,
    /// How many times an escalation chain moved to a next level
    /// (`page.escalated.v1` with a `to_level`); exhaustions do not count.
    pub escalations: u32,
    /// How many handoffs were accepted.
    pub handoffs: u32,
    /// How many times each SLO was breached (`slo.breached.v1`).
    pub slo_breaches: SloBreaches,
    /// How many pages were sent (`page.responder_paged.v1`), duty-manager
    /// pages included, role assignments' notices not (they ask nobody to
    /// respond, and do not start the time to acknowledge either).
    pub pages: u32,
    /// Whether the incident was marked as noise.
    pub noise: bool,
    /// How many of the pages carried out a manager's request to pull
    /// someone in (`page.responder_paged.v1` with a `request`).
    pub pulled_in_pages: u32,
}

impl IncidentMetrics {
    /// Measures one incident from its incident events and its page events,
    /// each in log order.
    pub fn compute(incident_events: &[IncidentEvent], page_events: &[PageEvent]) -> IncidentMetrics {
        let mut fold = MetricsFold::default();
        for event in incident_events {
            fold.incident(event);
        }
        for event in page_events {
            fold.page(event);
        }
        fold.metrics()
    }

    /// Whether any SLO applied to the incident: it was paged (the ack and
    /// assign SLOs are armed when an incident starts to page) or it breached
    /// some SLO anyway (such as the executive update cadence). Trend reports
    /// compute SLO compliance over these incidents only.
    pub fn slo_applicable(&self) -> bool {
        self.pages > 0 || self.slo_breaches.total() > 0
    }
}

/// [`IncidentMetrics`] folded one event at a time: the few instants the
/// metrics are measured between and the counts, never the events. A
/// projection keeps one per incident to answer trends without keeping
/// the incident's events. Each family's events must come in log order;
/// the two families may interleave.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct MetricsFold {
    counts: IncidentMetrics,
    reported: Option<(DateTime<Utc>, Option<DateTime<Utc>>)>,
    declared: Option<DateTime<Utc>>,
    commander: Option<DateTime<Utc>>,
    mitigated: Option<DateTime<Utc>>,
    first_resolved: Option<DateTime<Utc>>,
    standing_resolution: Option<DateTime<Utc>>,
    first_page: Option<DateTime<Utc>>,
    first_ack: Option<DateTime<Utc>>,
}

impl MetricsFold {
    /// Folds one incident event.
    pub fn incident(&mut self, event: &IncidentEvent) {
        let at = event.at;
        let m = &mut self.counts;
        match &event.change {
            Change::Reported(r) => {
                self.reported.get_or_insert((at, r.started_at));
            }
            Change::Declared(_) => {
                self.declared.get_or_insert(at);
            }
            Change::CommanderAssigned(_) => {
                self.commander.get_or_insert(at);
            }
            Change::HandoffAccepted(_) => {
                self.commander.get_or_insert(at);
                m.handoffs = m.handoffs.saturating_add(1);
            }
            Change::Mitigated(_) => {
                self.mitigated.get_or_insert(at);
            }
            Change::Resolved(_) => {
                self.first_resolved.get_or_insert(at);
                self.standing_resolution = Some(at);
            }
            Change::Reopened(_) => self.standing_resolution = None,
            Change::MarkedNoise(_) => m.noise = true,
            _ => {}
        }
    }

    /// Folds one page event (or an update-cadence breach as one).
    pub fn page(&mut self, event: &PageEvent) {
        let m = &mut self.counts;
        match &event.change {
            PageChange::ResponderPaged(p) if p.reason.is_notice() => {}
            PageChange::ResponderPaged(p) => {
                self.first_page.get_or_insert(event.at);
                m.pages = m.pages.saturating_add(1);
                if p.reason == crate::paging::PageReason::Requested {
                    m.pulled_in_pages = m.pulled_in_pages.saturating_add(1);
                }
            }
            PageChange::PageAcknowledged(_) => {
                self.first_ack.get_or_insert(event.at);
            }
            PageChange::PageEscalated(e) if e.to_level.is_some() => {
                m.escalations = m.escalations.saturating_add(1);
            }
            PageChange::SloBreached(b) => m.slo_breaches.add(b.slo, 1),
            _ => {}
        }
    }

    /// The metrics of what was folded.
    pub fn metrics(&self) -> IncidentMetrics {
        let mut metrics = self.counts;
        let needs_owner = match (self.declared, self.first_page) {
            (Some(d), Some(p)) => Some(d.min(p)),
            (d, p) => d.or(p),
        };
        metrics.time_to_detect = self.reported.and_then(|(at, started)| span(started, Some(at)));
        metrics.time_to_acknowledge = span(self.first_page, self.first_ack);
        metrics.time_to_assign = span(needs_owner, self.commander);
        metrics.time_to_mitigate = span(self.declared, self.mitigated.or(self.first_resolved));
        metrics.time_to_resolve = span(self.declared.or(self.reported.map(|(at, _)| at)), self.standing_resolution);
        metrics
    }
}

/// The time from `start` to `end`, at least zero; `None` unless both exist.
fn span(start: Option<DateTime<Utc>>, end: Option<DateTime<Utc>>) -> Option<TimeDelta> {
    Some((end? - start?).max(TimeDelta::zero()))
}

/// Serializes an optional duration as whole seconds (truncated), or `null`.
pub(crate) fn seconds<S: Serializer>(duration: &Option<TimeDelta>, serializer: S) -> Result<S::Ok, S::Error> {
    match duration {
        Some(duration) => serializer.serialize_some(&duration.num_seconds()),
        None => serializer.serialize_none(),
    }
}

/// Reads what [`seconds`] wrote (a fold's snapshot: its durations are
/// always recomputed from the instants by [`MetricsFold::metrics`]).
fn from_seconds<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<TimeDelta>, D::Error> {
    Ok(Option::<i64>::deserialize(deserializer)?.map(TimeDelta::seconds))
}
