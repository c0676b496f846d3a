//! Notify events: the facts of the executive notifier, their stable
//! persisted names and their log format (the same envelope as incident
//! events).

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use serde_json::{Map, Value};

use crate::DecodeError;
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifyEvent {
    /// The incident the fact is about.
    pub incident: IncidentId,
    /// When it happened: when the delivery ended, or the `now` of the
    /// decision that found the update overdue.
    pub at: DateTime<Utc>,
    /// [`NOTIFIER_ACTOR`], always.
    pub by: ActorId,
    /// What happened.
    pub change: NotifyChange,
}

/// The names of the envelope fields, which no change may use.
const ENVELOPE_FIELDS: [&str; 3] = ["incident", "at", "by"];

impl NotifyEvent {
    /// The stable persisted name of this event, with its schema version, such
    /// as `notify.executives_notified.v1`. One of [`KINDS`].
    pub fn kind(&self) -> &'static str {
        self.change.kind()
    }

    /// The event as the log stores it: one flat JSON object with `incident`,
    /// `at` and `by` followed by the change's own fields.
    ///
    /// [`NotifyEvent::from_json`] reads it back to an equal event.
    pub fn to_json(&self) -> Value {
        let mut object = Map::new();
        object.insert("incident".into(), Value::String(self.incident.to_string()));
        object.insert("at".into(), serde_json::to_value(self.at).expect("timestamps serialize"));
        object.insert("by".into(), Value::String(self.by.to_string()));
        let Value::Object(fields) = self.change.fields() else {
            unreachable!("every change is a struct and serializes to an object")
        };
        for (name, value) in fields {
            debug_assert!(!ENVELOPE_FIELDS.contains(&name.as_str()), "field {name} shadows the envelope");
            object.insert(name, value);
        }
        Value::Object(object)
    }

    /// Decodes a stored record of kind `kind` whose data is `data`, the text
    /// of [`NotifyEvent::to_json`].
    ///
    /// Unknown kinds and data that does not fit the kind's schema (including
    /// unknown fields: a schema change is a new kind version) are reported as
    /// distinct [`DecodeError`]s naming the kind.
    pub fn from_json(kind: &str, data: &str) -> Result<NotifyEvent, DecodeError> {
        if !KINDS.contains(&kind) {
            return Err(DecodeError::UnknownKind { kind: kind.to_owned() });
        }
        let malformed = |source| DecodeError::Malformed { kind: kind.to_owned(), source };
        let mut object = match serde_json::from_str::<Value>(data).map_err(malformed)? {
            Value::Object(object) => object,
            _ => return Err(malformed(serde::de::Error::custom("expected a JSON object"))),
        };
        let incident = take(&mut object, "incident").map_err(malformed)?;
        let at = take(&mut object, "at").map_err(malformed)?;
        let by = take(&mut object, "by").map_err(malformed)?;
        let change = NotifyChange::from_fields(kind, Value::Object(object)).map_err(malformed)?;
        Ok(NotifyEvent { incident, at, by, change })
    }

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

/// Removes and decodes the envelope field `name`.
fn take<T: DeserializeOwned>(object: &mut Map<String, Value>, name: &'static str) -> Result<T, serde_json::Error> {
    let value = object.remove(name).ok_or_else(|| <serde_json::Error as serde::de::Error>::missing_field(name))?;
    serde_json::from_value(value)
}

/// Declares [`NotifyChange`] with one tuple variant per fact, its kind
/// names, [`KINDS`], and the conversions to and from JSON fields, so that
/// the four can never disagree.
macro_rules! changes {
    ($( $(#[$meta:meta])* $variant:ident => $kind:literal, )*) => {
        /// What a [`NotifyEvent`] records: one variant per kind of fact, each
        /// holding a struct of the same name.
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub enum NotifyChange {
            $( $(#[$meta])* $variant($variant), )*
        }

        /// Every notify event kind. A kind's name and meaning never change;
        /// a new schema gets a new `.vN` name.
        pub const KINDS: &[&str] = &[ $( $kind, )* ];

        impl NotifyChange {
            /// The stable persisted name of this change, one of [`KINDS`].
            pub fn kind(&self) -> &'static str {
                match self {
                    $( NotifyChange::$variant(_) => $kind, )*
                }
            }

            /// The change's own fields as a JSON object.
            fn fields(&self) -> Value {
                match self {
                    $( NotifyChange::$variant(fields) => serde_json::to_value(fields), )*
                }
                .expect("event structs always serialize")
            }

            /// Decodes the fields of a change of kind `kind`, which must be
            /// one of [`KINDS`].
            fn from_fields(kind: &str, fields: Value) -> Result<NotifyChange, serde_json::Error> {
                match kind {
                    $( $kind => serde_json::from_value(fields).map(NotifyChange::$variant), )*
                    _ => unreachable!("the kind was checked against KINDS"),
                }
            }
        }
    };
}

changes! {
    /// A post reached one channel of the executive-facing or company-wide
    /// group: one event per channel, so the audit shows who was told what,
    /// and when.
    ExecutivesNotified => "notify.executives_notified.v1",
    /// No executive update was posted within the update cadence; the
    /// commander is reminded.
    UpdateOverdue => "notify.update_overdue.v1",
    /// A post could not be delivered to one channel; the shell gave up.
    DeliveryFailed => "notify.delivery_failed.v1",
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
}
