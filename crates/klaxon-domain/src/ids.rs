//! Identifiers and levels: validated newtypes that cannot hold an illegal
//! value, plus the deterministic event-id helpers.
//!
//! Every type here is constructed through a validating constructor or
//! [`FromStr`], serializes as a plain string (or number), and has no setters.
//! Deserializing runs the same validation, so an invalid id can never enter
//! the model from a request or from the log.

use std::fmt;
use std::num::NonZeroU64;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::Error;

#[cfg(test)]
mod tests;

/// The identifier of an incident, written `INC-<n>` with `n >= 1`.
///
/// Numbers are allocated by the intake service (it appends to
/// [`IncidentId::stream`] expecting "no stream" and retries with `n + 1`);
/// this type only parses and formats them. Parsing accepts the prefix in any
/// case (`inc-42`) but rejects leading zeros, so every id has exactly one
/// spelling and round-trips exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct IncidentId(NonZeroU64);

impl IncidentId {
    /// The prefix of every incident id, in its canonical case.
    pub const PREFIX: &'static str = "INC-";

    /// Makes the id with number `n`; `n` must be at least 1.
    pub fn from_number(n: u64) -> Result<IncidentId, Error> {
        NonZeroU64::new(n).map(IncidentId).ok_or_else(|| Error::invalid("incident_id", "the number must be at least 1"))
    }

    /// The number `n` of `INC-<n>`, always at least 1.
    pub fn number(self) -> u64 {
        self.0.get()
    }

    /// The name of this incident's stream in the event log, such as
    /// `incident-INC-42`.
    pub fn stream(self) -> String {
        format!("incident-{self}")
    }
}

impl fmt::Display for IncidentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", Self::PREFIX, self.0)
    }
}

impl FromStr for IncidentId {
    type Err = Error;

    fn from_str(s: &str) -> Result<IncidentId, Error> {
        let bad = |reason: &str| Error::invalid("incident_id", format!("{s:?}: {reason}"));
        let digits = s
            .get(..Self::PREFIX.len())
            .filter(|prefix| prefix.eq_ignore_ascii_case(Self::PREFIX))
            .map(|_| &s[Self::PREFIX.len()..])
            .ok_or_else(|| bad("expected INC-<number>"))?;
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad("expected INC-<number>"));
        }
        if digits.starts_with('0') {
            return Err(bad("the number must be at least 1, without leading zeros"));
        }
        let n = digits.parse::<u64>().map_err(|_| bad("the number is too large"))?;
        IncidentId::from_number(n)
    }
}

impl TryFrom<String> for IncidentId {
    type Error = Error;

    fn try_from(s: String) -> Result<IncidentId, Error> {
        s.parse()
    }
}

impl From<IncidentId> for String {
    fn from(id: IncidentId) -> String {
        id.to_string()
    }
}

/// How bad an incident is, from [`Severity::Sev1`] (the worst: broad customer
/// impact or an executive escalation) to [`Severity::Sev4`].
///
/// The order is by gravity: a more severe level compares *greater*, so
/// `Sev1 > Sev2` and `levels.iter().max()` is the most severe one. Displayed
/// as `SEV1`, serialized as `sev1`; parsing accepts `1`, `sev1`, `SEV1`,
/// `sev-1` and `Sev-1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The highest severity: broad customer impact or executive escalation.
    Sev1,
    /// Significant impact on a part of the product or a few customers.
    Sev2,
    /// Limited impact with a workaround.
    Sev3,
    /// Minor impact; handled in working hours.
    Sev4,
}

impl Severity {
    /// All levels, from the most severe to the least.
    pub const ALL: [Severity; 4] = [Severity::Sev1, Severity::Sev2, Severity::Sev3, Severity::Sev4];

    /// The level's number: 1 for [`Severity::Sev1`], 4 for [`Severity::Sev4`].
    pub fn number(self) -> u8 {
        match self {
            Severity::Sev1 => 1,
            Severity::Sev2 => 2,
            Severity::Sev3 => 3,
            Severity::Sev4 => 4,
        }
    }

    /// Whether `self` is at least as severe as `other`; `Sev1.is_at_least(Sev2)`
    /// holds and `Sev3.is_at_least(Sev2)` does not.
    pub fn is_at_least(self, other: Severity) -> bool {
        self >= other
    }
}

impl Ord for Severity {
    fn cmp(&self, other: &Severity) -> std::cmp::Ordering {
        other.number().cmp(&self.number())
    }
}

impl PartialOrd for Severity {
    fn partial_cmp(&self, other: &Severity) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SEV{}", self.number())
    }
}

impl FromStr for Severity {
    type Err = Error;

    fn from_str(s: &str) -> Result<Severity, Error> {
        let lower = s.to_ascii_lowercase();
        let digit = lower.strip_prefix("sev").map_or(lower.as_str(), |rest| rest.strip_prefix('-').unwrap_or(rest));
        Severity::ALL
            .into_iter()
            .find(|level| digit == level.number().to_string())
            .ok_or_else(|| Error::invalid("severity", format!("{s:?}: expected SEV1 to SEV4 (or 1 to 4)")))
    }
}

/// Declares a validated string newtype with the usual conversions.
macro_rules! string_id {
    (
        $(#[$meta:meta])*
        $name:ident, field = $field:literal, max = $max:expr, check = $check:expr
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// The longest accepted value, in characters.
            pub const CHARS_MAX: usize = $max;

            /// Validates `value` and wraps it.
            pub fn new(value: impl Into<String>) -> Result<$name, Error> {
                let value = value.into();
                let len = value.chars().count();
                if len == 0 {
                    return Err(Error::invalid($field, "must not be empty"));
                }
                if len > Self::CHARS_MAX {
                    return Err(Error::TooLarge { field: $field, len, max: Self::CHARS_MAX });
                }
                let check: fn(&str) -> Result<(), String> = $check;
                check(&value).map_err(|reason| Error::invalid($field, format!("{value:?}: {reason}")))?;
                Ok($name(value))
            }

            /// The value as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl FromStr for $name {
            type Err = Error;

            fn from_str(s: &str) -> Result<$name, Error> {
                $name::new(s)
            }
        }

        impl TryFrom<String> for $name {
            type Error = Error;

            fn try_from(s: String) -> Result<$name, Error> {
                $name::new(s)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

string_id! {
    /// A principal that acts: a person (`alice`, `alice@example.com`) or a
    /// system (`svc:alertmanager`). 1 to 128 characters of `[A-Za-z0-9_.@:-]`.
    ActorId, field = "actor_id", max = 128, check = |s| {
        match s.chars().find(|c| !(c.is_ascii_alphanumeric() || "_.@:-".contains(*c))) {
            Some(c) => Err(format!("character {c:?} is not allowed (use A-Z a-z 0-9 _ . @ : -)")),
            None => Ok(()),
        }
    }
}

string_id! {
    /// A service of the service catalog, such as `payments-api`: 1 to 64
    /// characters, `[a-z0-9][a-z0-9_-]*`.
    ServiceName, field = "service", max = 64, check = |s| {
        if !s.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit()) {
            return Err("must start with a lowercase letter or a digit".into());
        }
        match s.chars().find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_' || *c == '-')) {
            Some(c) => Err(format!("character {c:?} is not allowed (use a-z 0-9 _ -)")),
            None => Ok(()),
        }
    }
}

string_id! {
    /// A customer as the help desk knows them: 1 to 128 printable characters,
    /// no control characters and no surrounding whitespace.
    CustomerId, field = "customer_id", max = 128, check = |s| {
        if s.chars().any(char::is_control) {
            return Err("control characters are not allowed".into());
        }
        if s.trim() != s {
            return Err("surrounding whitespace is not allowed".into());
        }
        Ok(())
    }
}

string_id! {
    /// The key under which duplicate reports are merged into one incident,
    /// such as an Alertmanager `groupKey` or a PagerDuty `dedup_key`: 1 to 255
    /// characters without control characters.
    DedupKey, field = "dedup_key", max = 255, check = |s| {
        if s.chars().any(char::is_control) {
            return Err("control characters are not allowed".into());
        }
        Ok(())
    }
}

/// A role on the incident team. The commander is held apart from the other
/// roles because it changes hands only through assignment or an accepted
/// handoff.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IncidentRole {
    /// The incident commander: the single owner and point of contact.
    Commander,
    /// Writes the status updates for each audience.
    CommunicationsLead,
    /// Keeps the timeline and notes.
    Scribe,
    /// An engineer who knows an affected system.
    SubjectMatterExpert,
}

/// Who a status update is written for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Audience {
    /// The responders and the incident team.
    Internal,
    /// The executive-facing group.
    Executive,
    /// Every customer-facing team, for multi-customer incidents.
    CompanyWide,
    /// The affected customers themselves: shown on the public status page,
    /// so written without internal names.
    Customer,
}

/// The channel through which a report came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReportSource {
    /// A person, through the CLI or the API by hand.
    Manual,
    /// A program, through the gRPC or HTTP API.
    Api,
    /// A Prometheus Alertmanager webhook.
    Alertmanager,
    /// A PagerDuty Events API v2 compatible call.
    PagerDuty,
    /// A help-desk ticket.
    HelpDesk,
    /// An escalation from an executive or their assistant.
    Executive,
}

/// The namespace of every UUIDv5 Klaxon derives. Changing it would change
/// every derived event id, breaking idempotency of replays; it never changes.
pub const KLAXON_NAMESPACE: Uuid = Uuid::from_u128(0x6b6c_6178_6f6e_4e53_8000_0000_0000_0001);

/// The id of the `index`-th event a reaction named `reaction` appends in
/// response to the event `cause`.
///
/// The id is a UUIDv5 in [`KLAXON_NAMESPACE`] over the bytes of `cause`, the
/// reaction name, a NUL separator and `index` (big-endian), so processing the
/// same cause again, after a crash or a redelivery, yields the same ids and
/// the log writes nothing twice.
pub fn reaction_event_id(cause: Uuid, reaction: &str, index: u32) -> Uuid {
    let mut name = Vec::with_capacity(16 + reaction.len() + 1 + 4);
    name.extend_from_slice(b"reaction:");
    name.extend_from_slice(cause.as_bytes());
    name.extend_from_slice(reaction.as_bytes());
    name.push(0);
    name.extend_from_slice(&index.to_be_bytes());
    Uuid::new_v5(&KLAXON_NAMESPACE, &name)
}

/// The id of the `index`-th event appended for a client's command carrying
/// `request_id`, so a retried command writes nothing twice.
///
/// Uses a different name prefix than [`reaction_event_id`], so the two can
/// never collide.
pub fn command_event_id(request_id: &str, index: u32) -> Uuid {
    let mut name = Vec::with_capacity(8 + request_id.len() + 1 + 4);
    name.extend_from_slice(b"command:");
    name.extend_from_slice(request_id.as_bytes());
    name.push(0);
    name.extend_from_slice(&index.to_be_bytes());
    Uuid::new_v5(&KLAXON_NAMESPACE, &name)
}

/// The longest client request id, in bytes.
pub const REQUEST_ID_BYTES_MAX: usize = 128;

/// The family of writes a client's request id belongs to. Each family has
/// its own key space, so that one id sent to two of them (the CLI sends a
/// fresh one per invocation, but a client may reuse one) never makes their
/// events share ids.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestScope {
    /// Incident commands, reports and bridge notes.
    Incident,
    /// Page acknowledgements.
    Acknowledgement,
    /// Review edits.
    Review,
    /// Schedule changes (overrides and swaps).
    Schedule,
}

/// The idempotency key of a client's write: its request id, scoped to the
/// actor who sent it (two people's ids never collide) and to the family of
/// the write. The write's events get the ids [`RequestKey::event_id`], so a
/// retry finds the first write in the log (also after a restart) and the
/// log itself refuses to store it twice.
///
/// Incident keys are `actor/request_id`, as they have always been, so that
/// retries of commands written by earlier versions still match. Other
/// families put `family#` first: `#` is never part of an actor id, and the
/// part of an incident key before its first `/` is always one, so the key
/// spaces cannot meet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestKey(String);

impl RequestKey {
    /// The key of `request_id` sent by `actor` for a write of `scope`;
    /// `None` when the id is empty (every such write is new). An id over
    /// [`REQUEST_ID_BYTES_MAX`] bytes or with control characters is refused
    /// naming `field`.
    pub fn new(
        scope: RequestScope,
        actor: &ActorId,
        field: &'static str,
        request_id: &str,
    ) -> Result<Option<RequestKey>, Error> {
        if request_id.is_empty() {
            return Ok(None);
        }
        if request_id.len() > REQUEST_ID_BYTES_MAX || request_id.chars().any(char::is_control) {
            return Err(Error::invalid(
                field,
                format!("must be at most {REQUEST_ID_BYTES_MAX} bytes without control characters"),
            ));
        }
        Ok(Some(RequestKey(match scope {
            RequestScope::Incident => format!("{actor}/{request_id}"),
            RequestScope::Acknowledgement => format!("ack#{actor}/{request_id}"),
            RequestScope::Review => format!("review#{actor}/{request_id}"),
            RequestScope::Schedule => format!("oncall#{actor}/{request_id}"),
        })))
    }

    /// The id of the `index`-th event the write appends
    /// ([`command_event_id`] of the key).
    pub fn event_id(&self, index: u32) -> Uuid {
        command_event_id(&self.0, index)
    }

    /// The key as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

macro_rules! snake_names {
    ($ty:ident { $($variant:ident => $name:literal),* $(,)? }) => {
        impl $ty {
            /// Every value, in declaration order.
            pub const ALL: &'static [$ty] = &[$($ty::$variant),*];

            /// The snake_case name used in JSON and on the command line.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($ty::$variant => $name),*
                }
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $ty {
            type Err = Error;

            fn from_str(s: &str) -> Result<$ty, Error> {
                let wanted = s.trim().to_ascii_lowercase().replace('-', "_");
                $ty::ALL.iter().copied().find(|v| v.as_str() == wanted).ok_or_else(|| {
                    let names: Vec<&str> = $ty::ALL.iter().map(|v| v.as_str()).collect();
                    Error::invalid(stringify!($ty), format!("{s:?} is not one of {}", names.join(", ")))
                })
            }
        }
    };
}

snake_names!(IncidentRole {
    Commander => "commander",
    CommunicationsLead => "communications_lead",
    Scribe => "scribe",
    SubjectMatterExpert => "subject_matter_expert",
});
snake_names!(Audience {
    Internal => "internal",
    Executive => "executive",
    CompanyWide => "company_wide",
    Customer => "customer",
});
snake_names!(ReportSource {
    Manual => "manual",
    Api => "api",
    Alertmanager => "alertmanager",
    PagerDuty => "pager_duty",
    HelpDesk => "help_desk",
    Executive => "executive",
});
