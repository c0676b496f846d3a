//! Notify events: the facts of the executive notifier, their stable
//! persisted names and their log format (the same envelope as incident
//! events).

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::envelope::{Event, changes};
use crate::ids::{ActorId, Audience, IncidentId, Severity};

#[cfg(test)]
mod tests;

/// The longest channel name, in characters.
pub const CHANNEL_CHARS_MAX: usize = 64;
/// The longest summary sent to a channel, in characters; longer summaries
/// are cut.
pub const SUMMARY_CHARS_MAX: usize = 2_000;
/// The longest delivery error kept in a `notify.delivery_failed.v1` event,
/// in characters; longer ones are cut.
pub const DELIVERY_ERROR_CHARS_MAX: usize = 1_000;

/// The longest thread id kept in a `notify.thread_started.v1` event, in
/// characters (an e-mail `Message-ID` line is at most 998).
pub const THREAD_CHARS_MAX: usize = 998;

/// The actor id of the executive notifier, the `by` of every event it
/// records.
pub const NOTIFIER_ACTOR: &str = "klaxon-notifier";

/// The executive notifier as an actor: `klaxon-notifier`.
pub fn notifier_actor() -> ActorId {
    ActorId::new(NOTIFIER_ACTOR).expect("a valid actor id")
}

/// The name of an incident's notify stream in the log, such as
/// `notify-INC-42`.
pub fn stream(incident: IncidentId) -> String {
    format!("notify-{incident}")
}

/// Who a post through a channel is for: the two audiences the notifier
/// posts to. (Internal updates are the bridge's business, so an internal
/// post cannot be represented.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PostAudience {
    /// The executive-facing group.
    Executive,
    /// Every customer-facing team, for multi-customer incidents.
    CompanyWide,
}

impl PostAudience {
    /// The name used in JSON, such as `company_wide`.
    pub fn as_str(self) -> &'static str {
        match self {
            PostAudience::Executive => "executive",
            PostAudience::CompanyWide => "company_wide",
        }
    }
}

impl fmt::Display for PostAudience {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<PostAudience> for Audience {
    fn from(audience: PostAudience) -> Audience {
        match audience {
            PostAudience::Executive => Audience::Executive,
            PostAudience::CompanyWide => Audience::CompanyWide,
        }
    }
}

/// One fact of the executive notifier about one incident, stored in the
/// stream [`stream`] of the incident.
///
/// The log stores it as a record of kind [`NotifyEvent::kind`] whose data is
/// [`NotifyEvent::to_json`]: one flat JSON object holding `incident`, `at`
/// (RFC 3339, UTC) and `by`, followed by the fields of the change.
///
/// The `at` is when it happened: when the delivery ended, or the `now` of
/// the decision that found the update overdue; the `by` is
/// [`NOTIFIER_ACTOR`], always.
pub type NotifyEvent = Event<NotifyChange>;

impl NotifyEvent {
    /// One readable sentence saying what happened, for timelines and
    /// audits, such as `notified executives via exec-slack (SEV1): ...`.
    pub fn summary(&self) -> String {
        match &self.change {
            NotifyChange::ExecutivesNotified(n) => {
                format!("notified {} via {} ({}): {}", group(n.audience), n.channel, n.severity, n.summary)
            }
            NotifyChange::UpdateOverdue(o) => {
                let due = o.due_at.to_rfc3339();
                match &o.commander {
                    Some(commander) => format!("the executive update due at {due} is overdue; reminded {commander}"),
                    None => format!("the executive update due at {due} is overdue; there is no commander to remind"),
                }
            }
            NotifyChange::DeliveryFailed(f) => {
                format!("could not notify {} via {} ({}): {}", group(f.audience), f.channel, f.severity, f.error)
            }
            NotifyChange::ThreadStarted(t) => {
                format!("started the thread of {} via {}: {}", group(t.audience), t.channel, t.thread)
            }
        }
    }
}

/// The group an audience names, for sentences.
fn group(audience: PostAudience) -> &'static str {
    match audience {
        PostAudience::Executive => "executives",
        PostAudience::CompanyWide => "the company-wide group",
    }
}

/// `text` cut to at most `max` characters.
pub(super) fn truncate(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
}

changes! {
    /// What a [`NotifyEvent`] records: one variant per kind of fact, each
    /// holding a struct of the same name.
    pub enum NotifyChange for NotifyEvent;
    /// Every notify event kind. A kind's name and meaning never change;
    /// a new schema gets a new `.vN` name.
    pub const KINDS;
    /// A post reached one channel of the executive-facing or company-wide
    /// group: one event per channel, so the audit shows who was told what,
    /// and when.
    ExecutivesNotified => "notify.executives_notified.v1",
    /// No executive update was posted within the update cadence; the
    /// commander is reminded.
    UpdateOverdue => "notify.update_overdue.v1",
    /// A post could not be delivered to one channel; the shell gave up.
    DeliveryFailed => "notify.delivery_failed.v1",
    /// The first post through a channel that threads (Slack's
    /// `chat.postMessage`, e-mail) started the incident's thread there:
    /// follow-ups through that channel reply under it, also after a
    /// restart.
    ThreadStarted => "notify.thread_started.v1",
}

/// The fields of [`NotifyChange::ExecutivesNotified`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecutivesNotified {
    /// The channel that took the post, such as `exec-slack`.
    pub channel: String,
    /// Which group the channel belongs to.
    pub audience: PostAudience,
    /// The incident's severity the post announced.
    pub severity: Severity,
    /// The text posted, at most [`SUMMARY_CHARS_MAX`] characters.
    pub summary: String,
    /// How many changes of the incident, as this audience sees it, the
    /// post covers (the notifier's count, from its fold); a later change
    /// is owed a follow-up. Absent in records written before follow-ups
    /// existed, which cover everything folded before them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub through: Option<u64>,
}

/// The fields of [`NotifyChange::UpdateOverdue`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateOverdue {
    /// When the executive update was due: the event's `at` is when the
    /// breach was noticed, which is later after a restart.
    pub due_at: DateTime<Utc>,
    /// The commander reminded, or `null` when the incident had none.
    pub commander: Option<ActorId>,
}

/// The fields of [`NotifyChange::DeliveryFailed`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveryFailed {
    /// The channel that failed.
    pub channel: String,
    /// Which group the channel belongs to.
    pub audience: PostAudience,
    /// The severity the failed post announced, so that the failure settles
    /// exactly that post (a later, higher severity is still announced).
    pub severity: Severity,
    /// The last error, at most [`DELIVERY_ERROR_CHARS_MAX`] characters.
    pub error: String,
    /// The changes the failed post covered (see
    /// [`ExecutivesNotified::through`]): the failure settles them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub through: Option<u64>,
}

/// The fields of [`NotifyChange::ThreadStarted`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThreadStarted {
    /// The channel whose answer named the thread, such as `exec-slack`.
    pub channel: String,
    /// Which group the channel belongs to.
    pub audience: PostAudience,
    /// The thread as the channel named it (a Slack `ts`, an e-mail
    /// `Message-ID`), at most [`THREAD_CHARS_MAX`] characters.
    pub thread: String,
}
