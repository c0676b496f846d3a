//! Review events: action-item ids, the facts of the post-incident review,
//! their stable persisted names and their log format (the same envelope as
//! incident and page events).

use std::fmt;
use std::num::NonZeroU32;
use std::str::FromStr;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::Error;
use crate::envelope::{Event, changes};
use crate::ids::{ActorId, IncidentId};

#[cfg(test)]
mod tests;

/// The actor id of the review service, the `by` of the events it appends on
/// its own (`review.opened.v1`).
pub const REVIEW_ACTOR: &str = "klaxon-review";

/// The review service as an actor: `klaxon-review`.
pub fn review_actor() -> ActorId {
    ActorId::new(REVIEW_ACTOR).expect("a valid actor id")
}

/// The name of an incident's review stream in the log, such as
/// `review-INC-42`.
pub fn stream(incident: IncidentId) -> String {
    format!("review-{incident}")
}

/// The id of an action item: `<incident>-A<n>`, such as `INC-7-A2` for the
/// second action item of the review of INC-7.
///
/// `n` counts from 1 in the order the items were added to the review, so ids
/// are deterministic and short enough to type. Items are never removed, so a
/// number is never reused. Parsing accepts the prefixes in any case
/// (`inc-7-a2`) but no leading zeros, so every id has exactly one spelling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ActionItemId {
    incident: IncidentId,
    number: NonZeroU32,
}

impl ActionItemId {
    /// The `number`-th action item of `incident`'s review; `number` must be
    /// at least 1.
    pub fn new(incident: IncidentId, number: u32) -> Result<ActionItemId, Error> {
        NonZeroU32::new(number)
            .map(|number| ActionItemId { incident, number })
            .ok_or_else(|| Error::invalid("action_item", "the action item number must be at least 1"))
    }

    /// The incident whose review holds the item.
    pub fn incident(self) -> IncidentId {
        self.incident
    }

    /// The `n` of `-A<n>`, at least 1.
    pub fn number(self) -> u32 {
        self.number.get()
    }
}

impl fmt::Display for ActionItemId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-A{}", self.incident, self.number)
    }
}

impl FromStr for ActionItemId {
    type Err = Error;

    fn from_str(s: &str) -> Result<ActionItemId, Error> {
        let bad = |reason: &str| Error::invalid("action_item", format!("{s:?}: {reason}"));
        let expected = "expected INC-<number>-A<number>";
        let (incident, item) = s.rsplit_once('-').ok_or_else(|| bad(expected))?;
        let incident: IncidentId = incident.parse().map_err(|_| bad(expected))?;
        let digits = item
            .strip_prefix('A')
            .or_else(|| item.strip_prefix('a'))
            .filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| bad(expected))?;
        if digits.starts_with('0') {
            return Err(bad("the action item number must be at least 1, without leading zeros"));
        }
        let number = digits.parse::<u32>().map_err(|_| bad("the action item number is too large"))?;
        ActionItemId::new(incident, number)
    }
}

impl TryFrom<String> for ActionItemId {
    type Error = Error;

    fn try_from(s: String) -> Result<ActionItemId, Error> {
        s.parse()
    }
}

impl From<ActionItemId> for String {
    fn from(id: ActionItemId) -> String {
        id.to_string()
    }
}

/// One fact about the post-incident review of one incident, stored in the
/// stream [`stream`] of the incident.
///
/// The log stores it as a record of kind [`ReviewEvent::kind`] whose data is
/// [`ReviewEvent::to_json`]: one flat JSON object holding `incident`, `at`
/// (RFC 3339, UTC) and `by`, followed by the fields of the change.
///
/// The `at` is when it was decided (the `now` given to the decision, or the
/// time of the resolution that opened the review); the `by` is the reviewer
/// whose command produced the fact, or [`REVIEW_ACTOR`] for
/// `review.opened.v1`.
pub type ReviewEvent = Event<ReviewChange>;

impl ReviewEvent {
    /// One readable sentence saying what happened, on one line, for
    /// timelines, such as `carol added action item INC-7-A1: Add an index`.
    /// Long free text (summary, impact) is cut to its first line and
    /// [`EXCERPT_CHARS_MAX`] characters.
    pub fn summary(&self) -> String {
        let by = &self.by;
        let id = self.incident;
        match &self.change {
            ReviewChange::ReviewOpened(_) => format!("{by} opened the post-incident review of {id}"),
            ReviewChange::SummaryWritten(s) => format!("{by} wrote the review summary: {}", excerpt(&s.summary)),
            ReviewChange::ImpactWritten(i) => format!("{by} wrote the impact statement: {}", excerpt(&i.impact)),
            ReviewChange::ContributingFactorAdded(c) => {
                format!("{by} added a contributing factor: {}", excerpt(&c.factor))
            }
            ReviewChange::ActionItemAdded(a) => format!("{by} added action item {}: {}", a.item, excerpt(&a.title)),
            ReviewChange::ActionItemAssigned(a) => format!("{by} assigned {} to {}", a.item, a.owner),
            ReviewChange::ActionItemDueSet(d) => format!("{by} set {} due on {}", d.item, d.due.format("%Y-%m-%d")),
            ReviewChange::ActionItemCompleted(c) => format!("{by} completed {}", c.item),
            ReviewChange::ReviewPublished(_) => format!("{by} published the post-incident review of {id}"),
        }
    }
}

/// The most characters of free text a [`ReviewEvent::summary`] quotes.
pub const EXCERPT_CHARS_MAX: usize = 120;

/// The first line of `text`, cut to [`EXCERPT_CHARS_MAX`] characters with an
/// ellipsis when anything was left out.
fn excerpt(text: &str) -> String {
    let mut lines = text.lines();
    let first = lines.next().unwrap_or_default().trim_end();
    let mut cut: String = first.chars().take(EXCERPT_CHARS_MAX).collect();
    if cut.len() < first.len() || lines.next().is_some() {
        cut.push('…');
    }
    cut
}

changes! {
    /// What a [`ReviewEvent`] records: one variant per kind of fact, each
    /// holding a struct of the same name.
    pub enum ReviewChange for ReviewEvent;
    /// Every review event kind, in the order a review usually goes. A
    /// kind's name and meaning never change; a new schema gets a new
    /// `.vN` name.
    pub const KINDS;
    /// The review was opened, when a Sev-1 or Sev-2 incident was resolved.
    ReviewOpened => "review.opened.v1",
    /// The summary was written, replacing any earlier one.
    SummaryWritten => "review.summary_written.v1",
    /// The impact statement was written, replacing any earlier one.
    ImpactWritten => "review.impact_written.v1",
    /// A contributing factor was added.
    ContributingFactorAdded => "review.contributing_factor_added.v1",
    /// An action item was added.
    ActionItemAdded => "review.action_item_added.v1",
    /// An action item got an owner (or a new one).
    ActionItemAssigned => "review.action_item_assigned.v1",
    /// An action item got a due date (or a new one).
    ActionItemDueSet => "review.action_item_due_set.v1",
    /// An action item was done.
    ActionItemCompleted => "review.action_item_completed.v1",
    /// The review was published; its text is final.
    ReviewPublished => "review.published.v1",
}

/// The fields of [`ReviewChange::ReviewOpened`]: none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReviewOpened {}

/// The fields of [`ReviewChange::SummaryWritten`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SummaryWritten {
    /// What happened and why, in Markdown, trimmed.
    pub summary: String,
}

/// The fields of [`ReviewChange::ImpactWritten`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImpactWritten {
    /// Who was affected and how, in Markdown, trimmed.
    pub impact: String,
}

/// The fields of [`ReviewChange::ContributingFactorAdded`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContributingFactorAdded {
    /// The factor, trimmed.
    pub factor: String,
}

/// The fields of [`ReviewChange::ActionItemAdded`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionItemAdded {
    /// The new item's id, the next number of the review.
    pub item: ActionItemId,
    /// What is to be done, trimmed.
    pub title: String,
}

/// The fields of [`ReviewChange::ActionItemAssigned`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionItemAssigned {
    /// The item.
    pub item: ActionItemId,
    /// Who owns it from now on.
    pub owner: ActorId,
}

/// The fields of [`ReviewChange::ActionItemDueSet`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionItemDueSet {
    /// The item.
    pub item: ActionItemId,
    /// The day it is due (a calendar date, `YYYY-MM-DD`, no time zone).
    pub due: NaiveDate,
}

/// The fields of [`ReviewChange::ActionItemCompleted`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionItemCompleted {
    /// The item done; the event's `by` is who completed it.
    pub item: ActionItemId,
}

/// The fields of [`ReviewChange::ReviewPublished`]: none; the event's `by`
/// and `at` say who published and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReviewPublished {}
