//! The post-incident review: its events and decider, the incident timeline
//! (also "as of" a past position or time), per-incident metrics, trend
//! reports and the Markdown postmortem.
//!
//! Everything here is pure. The review service reads the log and passes
//! decoded events (or raw `(position, kind, data)` triples) in; what comes
//! back is data: events to append, states, reports and text.
//!
//! # The review decider
//!
//! A review lives in the stream [`stream`] (`review-INC-<n>`). It is opened
//! by the review service, never by a command: [`open_review`] is the
//! reaction to `incident.resolved.v1` on a Sev-1 or Sev-2 incident that is
//! not marked as noise and has no review yet; the service appends its event
//! with the id [`reaction_event_id`](crate::ids::reaction_event_id)`(cause,
//! `[`OPEN_REACTION`]`, 0)`, so a redelivery writes nothing twice. A review
//! stays open if the incident is reopened, and a later resolution does not
//! open a second one.
//!
//! [`decide_review`] turns a [`ReviewCommand`] into [`ReviewEvent`]s or an
//! [`Error`]; [`evolve_review`] folds events into the [`Review`]. Fields are
//! checked before rules: free text follows the rule of [`crate::text`]
//! ([`Error::InvalidField`], [`Error::TooLarge`]); lists are bounded ([`FACTORS_MAX`], [`ACTION_ITEMS_MAX`]). The rules,
//! each with the stable id carried by [`Error::ReviewRule`] (which names
//! no incident status: a review has no lifecycle of its own beyond
//! published or not):
//!
//! - Every command needs an opened review (`review.not_opened`).
//! - **Publishing freezes the text.** After `review.published.v1`, writing
//!   the summary or the impact, adding a contributing factor and adding an
//!   action item are refused (`review.published`). Action items are *tracked*
//!   after publication, which is the point of having them: assigning,
//!   setting a due date and completing stay allowed. A new action item found
//!   later belongs to the tracker of the team, or to a new review.
//! - `AddContributingFactor` refuses a factor already listed, compared after
//!   trimming (`factor.already_added`).
//! - Action item commands need an item of this review
//!   (`action_item.unknown`, also for another incident's item) that is not
//!   completed (`action_item.already_completed`: a completed item is history
//!   and changes no more). Assigning the current owner
//!   (`action_item.same_owner`) or setting the current due date
//!   (`action_item.same_due`) is refused, as it would record nothing. Any
//!   due date is accepted, even a past one (reviews are often written after
//!   the fact).
//! - `Publish` needs a summary (`publish.needs_summary`) and happens once
//!   (`publish.already_published`).
//!
//! # Reading an incident back
//!
//! - [`timeline`] decodes an incident's incident, page and review records
//!   into [`TimelineEntry`]s in log order; [`timeline_as_of`] keeps what
//!   was known at a past position or time.
//! - [`as_of_position`] and [`as_of_time`] fold only what was known at a
//!   past log position or time ([`IncidentAsOf`]).
//! - [`IncidentMetrics::compute`] measures one incident from its events;
//!   [`TrendReport::compute`] aggregates many ([`IncidentFacts`]).
//! - [`render_markdown`] writes the postmortem.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;

use crate::Error;
use crate::ids::{ActorId, IncidentId, Severity};
use crate::incident::{Change, Incident, IncidentEvent, check_len};
use crate::text;

mod command;
mod dossier;
mod event;
mod markdown;
mod metrics;
pub mod reports;
#[cfg(test)]
mod testkit;
#[cfg(test)]
mod tests;
mod timeline;
mod trends;

pub use command::ReviewCommand;
pub use dossier::{Dossier, cadence_breach};
pub use event::{
    ActionItemAdded, ActionItemAssigned, ActionItemCompleted, ActionItemDueSet, ActionItemId, ContributingFactorAdded,
    EXCERPT_CHARS_MAX, ImpactWritten, KINDS, REVIEW_ACTOR, ReviewChange, ReviewEvent, ReviewOpened, ReviewPublished,
    SummaryWritten, review_actor, stream,
};
pub use markdown::render_markdown;
pub use metrics::{IncidentMetrics, MetricsFold, SloBreaches};
pub use timeline::{
    AnyEvent, IncidentAsOf, Source, TimelineEntry, as_of, as_of_position, as_of_time, timeline, timeline_as_of,
};
pub use trends::{
    COUNTING_RULES, DurationStats, Group, IncidentFacts, NONE_KEY, SloCompliance, SloWithin, TrendFilter, TrendReport,
    TrendSummary, render_table, to_csv,
};

/// The longest summary or impact statement, in characters.
pub const REVIEW_TEXT_CHARS_MAX: usize = 20_000;
/// The longest contributing factor, in characters.
pub const FACTOR_CHARS_MAX: usize = 2_000;
/// The longest action item title, in characters.
pub const ACTION_ITEM_TITLE_CHARS_MAX: usize = 200;
/// The most contributing factors one review may list.
pub const FACTORS_MAX: usize = 50;
/// The most action items one review may hold.
pub const ACTION_ITEMS_MAX: usize = 100;
/// The reaction name under which the review service derives the id of a
/// `review.opened.v1` event from the `incident.resolved.v1` that caused it.
pub const OPEN_REACTION: &str = "review.open";
/// The least severe level whose resolution opens a review.
pub const REVIEW_SEVERITY_MIN: Severity = Severity::Sev2;

/// One action item of a review, and what became of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ActionItem {
    id: ActionItemId,
    title: String,
    owner: Option<ActorId>,
    due: Option<NaiveDate>,
    added_by: ActorId,
    added_at: DateTime<Utc>,
    completed: Option<(ActorId, DateTime<Utc>)>,
}

impl ActionItem {
    /// The item's id.
    pub fn id(&self) -> ActionItemId {
        self.id
    }
    /// What is to be done.
    pub fn title(&self) -> &str {
        &self.title
    }
    /// Who owns it, once assigned.
    pub fn owner(&self) -> Option<&ActorId> {
        self.owner.as_ref()
    }
    /// The day it is due, once set.
    pub fn due(&self) -> Option<NaiveDate> {
        self.due
    }
    /// Who added it.
    pub fn added_by(&self) -> &ActorId {
        &self.added_by
    }
    /// When it was added.
    pub fn added_at(&self) -> DateTime<Utc> {
        self.added_at
    }
    /// Whether it is done.
    pub fn is_completed(&self) -> bool {
        self.completed.is_some()
    }
    /// Who completed it and when, if it is done.
    pub fn completed(&self) -> Option<(&ActorId, DateTime<Utc>)> {
        self.completed.as_ref().map(|(by, at)| (by, *at))
    }
}

/// The state of one post-incident review: the fold of its events by
/// [`evolve_review`]. Read-only, like [`Incident`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Review {
    incident: IncidentId,
    version: u64,
    opened_at: DateTime<Utc>,
    summary: Option<String>,
    impact: Option<String>,
    contributing_factors: Vec<String>,
    action_items: BTreeMap<ActionItemId, ActionItem>,
    published: Option<(ActorId, DateTime<Utc>)>,
}

impl Review {
    /// The incident under review.
    pub fn incident(&self) -> IncidentId {
        self.incident
    }
    /// The number of events folded, equal to the version of the review's
    /// stream in the log.
    pub fn version(&self) -> u64 {
        self.version
    }
    /// When the review was opened.
    pub fn opened_at(&self) -> DateTime<Utc> {
        self.opened_at
    }
    /// The summary, once written.
    pub fn summary(&self) -> Option<&str> {
        self.summary.as_deref()
    }
    /// The impact statement, once written.
    pub fn impact(&self) -> Option<&str> {
        self.impact.as_deref()
    }
    /// The contributing factors, in the order they were added.
    pub fn contributing_factors(&self) -> &[String] {
        &self.contributing_factors
    }
    /// The action items, in id order (the order they were added).
    pub fn action_items(&self) -> impl Iterator<Item = &ActionItem> {
        self.action_items.values()
    }
    /// The action item `id`, if this review has it.
    pub fn action_item(&self, id: &ActionItemId) -> Option<&ActionItem> {
        self.action_items.get(id)
    }
    /// Whether the review was published.
    pub fn is_published(&self) -> bool {
        self.published.is_some()
    }
    /// Who published the review and when, once published.
    pub fn published(&self) -> Option<(&ActorId, DateTime<Utc>)> {
        self.published.as_ref().map(|(by, at)| (by, *at))
    }

    /// The id the next action item gets.
    fn next_item(&self) -> Result<ActionItemId, Error> {
        let number = u32::try_from(self.action_items.len() + 1).unwrap_or(u32::MAX);
        ActionItemId::new(self.incident, number)
    }

    /// Folds one event other than the opening.
    fn apply(&mut self, event: &ReviewEvent) {
        match &event.change {
            ReviewChange::ReviewOpened(_) => debug_assert!(false, "the review of {} opened twice", self.incident),
            ReviewChange::SummaryWritten(s) => self.summary = Some(s.summary.clone()),
            ReviewChange::ImpactWritten(i) => self.impact = Some(i.impact.clone()),
            ReviewChange::ContributingFactorAdded(c) => self.contributing_factors.push(c.factor.clone()),
            ReviewChange::ActionItemAdded(a) => {
                self.action_items.insert(
                    a.item,
                    ActionItem {
                        id: a.item,
                        title: a.title.clone(),
                        owner: None,
                        due: None,
                        added_by: event.by.clone(),
                        added_at: event.at,
                        completed: None,
                    },
                );
            }
            ReviewChange::ActionItemAssigned(a) => self.with_item(a.item, |item| item.owner = Some(a.owner.clone())),
            ReviewChange::ActionItemDueSet(d) => self.with_item(d.item, |item| item.due = Some(d.due)),
            ReviewChange::ActionItemCompleted(c) => {
                self.with_item(c.item, |item| item.completed = Some((event.by.clone(), event.at)));
            }
            ReviewChange::ReviewPublished(_) => self.published = Some((event.by.clone(), event.at)),
        }
    }

    /// Applies `f` to the item `id`, which the log guarantees exists.
    fn with_item(&mut self, id: ActionItemId, f: impl FnOnce(&mut ActionItem)) {
        match self.action_items.get_mut(&id) {
            Some(item) => f(item),
            None => debug_assert!(false, "{id} changed before it was added"),
        }
    }
}

/// Folds one event into the state of its review.
///
/// Total: `review.opened.v1` on `None` creates the review; any other event
/// on `None` is a bug in the caller (events are folded in stream order) and
/// leaves `None`, asserting in debug builds. The version grows by exactly one
/// per event folded.
pub fn evolve_review(state: Option<Review>, event: &ReviewEvent) -> Option<Review> {
    match (state, &event.change) {
        (None, ReviewChange::ReviewOpened(_)) => Some(Review {
            incident: event.incident,
            version: 1,
            opened_at: event.at,
            summary: None,
            impact: None,
            contributing_factors: Vec::new(),
            action_items: BTreeMap::new(),
            published: None,
        }),
        (None, _) => {
            debug_assert!(false, "{} for {} before the review was opened", event.kind(), event.incident);
            None
        }
        (Some(mut review), _) => {
            debug_assert_eq!(review.incident, event.incident, "event folded into another review");
            review.apply(event);
            review.version += 1;
            Some(review)
        }
    }
}

/// The review service's reaction to one incident event: the
/// `review.opened.v1` to append, if any.
///
/// `incident` is the incident's state *after* folding `cause`, and `review`
/// the incident's review so far. A review opens when `cause` is an
/// `incident.resolved.v1`, the incident's severity is at least
/// [`REVIEW_SEVERITY_MIN`] (Sev-1 or Sev-2), it is not marked as noise, and
/// it has no review yet. The event is stamped with the resolution's time and
/// [`REVIEW_ACTOR`], so replaying the same cause yields the same event.
pub fn open_review(incident: &Incident, cause: &IncidentEvent, review: Option<&Review>) -> Option<ReviewEvent> {
    debug_assert_eq!(incident.id(), cause.incident, "cause of another incident");
    let opens = matches!(cause.change, Change::Resolved(_))
        && incident.severity().is_some_and(|s| s.is_at_least(REVIEW_SEVERITY_MIN))
        && !incident.is_noise()
        && review.is_none();
    opens.then(|| ReviewEvent {
        incident: cause.incident,
        at: cause.at,
        by: review_actor(),
        change: ReviewChange::ReviewOpened(ReviewOpened {}),
    })
}

/// Decides what `actor` asking for `command` on the review of `incident`
/// means, given the review's current `state` (`None` if it was never
/// opened).
///
/// `incident` is the incident's current state: the review rules do not
/// depend on it, but a rule error reports the incident's status. Returns the
/// events to append (all stamped `at = now`, `by = actor`) or why nothing may
/// be written. Pure, like [`crate::incident::decide`]; the rules are listed
/// in the [module documentation](self).
pub fn decide_review(
    state: Option<&Review>,
    command: &ReviewCommand,
    incident: &Incident,
    actor: &ActorId,
    now: DateTime<Utc>,
) -> Result<Vec<ReviewEvent>, Error> {
    let rule = |rule: &'static str, message: String| Error::ReviewRule { rule, message };
    let ensure = |ok: bool, id: &'static str, message: &dyn Fn() -> String| {
        if ok { Ok(()) } else { Err(rule(id, message())) }
    };
    let id = incident.id();
    // Fields first, as in the incident decider.
    let field = match command {
        ReviewCommand::WriteSummary { summary } => Some(text::REVIEW_TEXT.check("summary", summary)?),
        ReviewCommand::WriteImpact { impact } => Some(text::REVIEW_TEXT.check("impact", impact)?),
        ReviewCommand::AddContributingFactor { factor } => Some(text::FACTOR.check("factor", factor)?),
        ReviewCommand::AddActionItem { title, .. } => Some(text::ACTION_ITEM_TITLE.check("title", title)?),
        _ => None,
    }
    .unwrap_or_default();
    let Some(s) = state else {
        return Err(rule("review.not_opened", format!("{id} has no post-incident review; it opens on resolution")));
    };
    debug_assert_eq!(s.incident, id, "decide_review given another incident's review");
    let unpublished = || {
        ensure(!s.is_published(), "review.published", &|| {
            format!("the review of {id} is published; only action items can still be assigned, scheduled or completed")
        })
    };
    let open_item = |item: &ActionItemId| -> Result<&ActionItem, Error> {
        let found = s
            .action_items
            .get(item)
            .ok_or_else(|| rule("action_item.unknown", format!("the review of {id} has no action item {item}")))?;
        ensure(!found.is_completed(), "action_item.already_completed", &|| format!("{item} is already completed"))?;
        Ok(found)
    };
    let change = match command {
        ReviewCommand::WriteSummary { .. } => {
            unpublished()?;
            ReviewChange::SummaryWritten(SummaryWritten { summary: field })
        }
        ReviewCommand::WriteImpact { .. } => {
            unpublished()?;
            ReviewChange::ImpactWritten(ImpactWritten { impact: field })
        }
        ReviewCommand::AddContributingFactor { .. } => {
            check_len("contributing_factors", s.contributing_factors.len() + 1, FACTORS_MAX)?;
            unpublished()?;
            ensure(!s.contributing_factors.contains(&field), "factor.already_added", &|| {
                "this contributing factor is already listed".into()
            })?;
            ReviewChange::ContributingFactorAdded(ContributingFactorAdded { factor: field })
        }
        ReviewCommand::AddActionItem { owner, due, .. } => {
            check_len("action_items", s.action_items.len() + 1, ACTION_ITEMS_MAX)?;
            unpublished()?;
            let item = s.next_item()?;
            let event = |change| ReviewEvent { incident: id, at: now, by: actor.clone(), change };
            let mut events = vec![event(ReviewChange::ActionItemAdded(ActionItemAdded { item, title: field }))];
            if let Some(owner) = owner {
                events.push(event(ReviewChange::ActionItemAssigned(ActionItemAssigned { item, owner: owner.clone() })));
            }
            if let Some(due) = due {
                events.push(event(ReviewChange::ActionItemDueSet(ActionItemDueSet { item, due: *due })));
            }
            return Ok(events);
        }
        ReviewCommand::AssignActionItem { item, owner } => {
            let found = open_item(item)?;
            ensure(found.owner.as_ref() != Some(owner), "action_item.same_owner", &|| {
                format!("{owner} already owns {item}")
            })?;
            ReviewChange::ActionItemAssigned(ActionItemAssigned { item: *item, owner: owner.clone() })
        }
        ReviewCommand::SetActionItemDue { item, due } => {
            let found = open_item(item)?;
            ensure(found.due != Some(*due), "action_item.same_due", &|| format!("{item} is already due on {due}"))?;
            ReviewChange::ActionItemDueSet(ActionItemDueSet { item: *item, due: *due })
        }
        ReviewCommand::CompleteActionItem { item } => {
            open_item(item)?;
            ReviewChange::ActionItemCompleted(ActionItemCompleted { item: *item })
        }
        ReviewCommand::Publish => {
            ensure(!s.is_published(), "publish.already_published", &|| {
                format!("the review of {id} is already published")
            })?;
            ensure(s.summary.is_some(), "publish.needs_summary", &|| {
                "a review is published with a summary; write one first".into()
            })?;
            ReviewChange::ReviewPublished(ReviewPublished {})
        }
    };
    Ok(vec![ReviewEvent { incident: id, at: now, by: actor.clone(), change }])
}
