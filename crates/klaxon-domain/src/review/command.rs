//! Review commands: what a reviewer asks for.

use chrono::NaiveDate;

use crate::ids::ActorId;
use crate::review::ActionItemId;

/// A request to change a post-incident review, decided by
/// [`crate::review::decide_review`].
///
/// Free text is validated and trimmed by the decision, so a command may
/// carry anything a client sent. There is no command to open a review: the
/// review service opens it when a Sev-1 or Sev-2 incident is resolved
/// ([`crate::review::open_review`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReviewCommand {
    /// Write (or rewrite) the summary: what happened and why, in Markdown.
    WriteSummary {
        /// The summary; required.
        summary: String,
    },
    /// Write (or rewrite) the impact statement, in Markdown.
    WriteImpact {
        /// The impact; required.
        impact: String,
    },
    /// Add a contributing factor.
    AddContributingFactor {
        /// The factor; required, and not already listed.
        factor: String,
    },
    /// Add an action item; it gets the next id of the review. With an
    /// owner or a due date, the item is added, assigned and scheduled in
    /// one decision: all of it or nothing.
    AddActionItem {
        /// What is to be done; required.
        title: String,
        /// Its owner, if already known.
        owner: Option<ActorId>,
        /// Its due date, if already known.
        due: Option<NaiveDate>,
    },
    /// Give an action item an owner, replacing any earlier one.
    AssignActionItem {
        /// The item.
        item: ActionItemId,
        /// Its new owner; must differ from the current one.
        owner: ActorId,
    },
    /// Give an action item a due date, replacing any earlier one.
    SetActionItemDue {
        /// The item.
        item: ActionItemId,
        /// The day it is due; must differ from the current one.
        due: NaiveDate,
    },
    /// Record that an action item is done.
    CompleteActionItem {
        /// The item.
        item: ActionItemId,
    },
    /// Publish the review, freezing its text.
    Publish,
}
