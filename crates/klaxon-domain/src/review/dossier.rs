//! Everything the review service folds about one incident, and the review
//! it owes.

use uuid::Uuid;

use crate::incident::{Incident, IncidentEvent, evolve};
use crate::notifier::{NotifyChange, NotifyEvent};
use crate::paging::{PageChange, PageEvent, SloBreached, SloKind};
use crate::review::{Review, ReviewEvent, evolve_review, open_review};

/// One incident as the review service knows it: its state, its incident
/// and page events (for metrics and the postmortem), its review, and the
/// opening it owes, folded in log order.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Dossier {
    incident: Option<Incident>,
    incident_events: Vec<IncidentEvent>,
    page_events: Vec<PageEvent>,
    review: Option<Review>,
    /// The `review.opened.v1` a resolution called for, with the id of the
    /// resolution's record, until the review is seen opened.
    owed: Option<(Uuid, ReviewEvent)>,
}

impl Dossier {
    /// The incident as folded so far; `None` before its report.
    pub fn incident(&self) -> Option<&Incident> {
        self.incident.as_ref()
    }
    /// The incident's events, in log order.
    pub fn incident_events(&self) -> &[IncidentEvent] {
        &self.incident_events
    }
    /// The page events that measure the response, in log order, with the
    /// notifier's overdue executive updates as update-cadence SLO breaches.
    pub fn page_events(&self) -> &[PageEvent] {
        &self.page_events
    }
    /// The review, once opened.
    pub fn review(&self) -> Option<&Review> {
        self.review.as_ref()
    }

    /// The review to open now, if one is owed: the event, and the id of the
    /// record whose resolution called for it (the append derives the
    /// event's id from it with [`crate::review::OPEN_REACTION`], so opening
    /// again after a crash writes nothing twice). See [`open_review`] for
    /// when a resolution opens a review.
    pub fn to_open(&self) -> Option<(Uuid, &ReviewEvent)> {
        self.owed.as_ref().filter(|_| self.review.is_none()).map(|(cause, event)| (*cause, event))
    }

    /// Folds one incident event, stored in the record with id `record`.
    pub fn apply_incident(&mut self, record: Uuid, event: &IncidentEvent) {
        self.incident = evolve(self.incident.take(), event);
        if let Some(open) = self.incident.as_ref().and_then(|i| open_review(i, event, self.review.as_ref())) {
            self.owed = Some((record, open));
        }
        self.incident_events.push(event.clone());
    }

    /// Folds one page event.
    pub fn apply_page(&mut self, event: &PageEvent) {
        self.page_events.push(event.clone());
    }

    /// Folds one notify event: an overdue executive update counts as an
    /// update-cadence SLO breach in the metrics, like paging's ack and
    /// assign breaches; the other notify events do not matter here.
    pub fn apply_notify(&mut self, event: &NotifyEvent) {
        if let Some(breach) = cadence_breach(event) {
            self.page_events.push(breach);
        }
    }

    /// Folds one review event.
    pub fn apply_review(&mut self, event: &ReviewEvent) {
        self.review = evolve_review(self.review.take(), event);
        if self.review.is_some() {
            self.owed = None;
        }
    }
}

/// An overdue executive update as the update-cadence SLO breach the
/// metrics count; `None` for the other notify events.
pub fn cadence_breach(event: &NotifyEvent) -> Option<PageEvent> {
    let NotifyChange::UpdateOverdue(o) = &event.change else { return None };
    Some(PageEvent {
        incident: event.incident,
        at: event.at,
        by: event.by.clone(),
        change: PageChange::SloBreached(SloBreached { slo: SloKind::UpdateCadence, due_at: o.due_at }),
    })
}
