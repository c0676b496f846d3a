//! The crate's error types: [`Error`] for rejected input and commands, and
//! [`DecodeError`] for log records that cannot be read back as events.

use crate::ids::IncidentId;
use crate::incident::Status;

/// Why a value or a command was rejected.
///
/// Every variant is the caller's problem, never ours: `decide` and the id
/// constructors never panic on bad input. The variants map one-to-one onto
/// wire status codes at the edge (`InvalidField` and `TooLarge` are invalid
/// arguments, `Rule` is a failed precondition, `UnknownIncident` is not found,
/// `AlreadyExists` is already exists), so no caller needs to match on text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A field is malformed: empty, badly formatted, or with forbidden
    /// characters.
    #[error("invalid {field}: {reason}")]
    InvalidField {
        /// The name of the offending field, as the API spells it.
        field: &'static str,
        /// What is wrong with it, for humans.
        reason: String,
    },
    /// A field exceeds one of the documented limits.
    #[error("{field} is too large: {len} > {max}")]
    TooLarge {
        /// The name of the offending field.
        field: &'static str,
        /// Its size, in the unit of the limit (characters or items).
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The command is well formed but the incident's lifecycle forbids it
    /// now, for example resolving an incident twice.
    #[error("rule {rule} forbids this while the incident is {state}: {message}")]
    Rule {
        /// A stable identifier of the rule, such as `resolve.already_resolved`.
        rule: &'static str,
        /// The status the incident was in when the command was rejected.
        state: Status,
        /// An explanation for humans.
        message: String,
    },
    /// The review command is well formed but the review's rules forbid it
    /// now, for example publishing without a summary. Unlike [`Error::Rule`]
    /// it names no incident status: a review has none of its own.
    #[error("rule {rule} forbids this: {message}")]
    ReviewRule {
        /// A stable identifier of the rule, such as `publish.needs_summary`.
        rule: &'static str,
        /// An explanation for humans.
        message: String,
    },
    /// The command targets an incident that has never been reported.
    #[error("unknown incident {0}")]
    UnknownIncident(IncidentId),
    /// An issue was reported under an incident id that is already taken.
    #[error("incident {0} already exists")]
    AlreadyExists(IncidentId),
}

impl Error {
    /// Builds [`Error::InvalidField`].
    pub(crate) fn invalid(field: &'static str, reason: impl Into<String>) -> Error {
        Error::InvalidField { field, reason: reason.into() }
    }
}

/// Why a stored record could not be decoded into an event.
///
/// Both variants name the record's kind. An unknown kind usually means the
/// reader is older than the writer; malformed data means the record does not
/// match its kind's schema, which is a bug or corruption, never bad input.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The kind is not one of [`crate::incident::KINDS`].
    #[error("unknown event kind {kind:?}")]
    UnknownKind {
        /// The kind as stored.
        kind: String,
    },
    /// The data is not valid JSON for the kind's schema.
    #[error("malformed {kind} event: {source}")]
    Malformed {
        /// The kind as stored.
        kind: String,
        /// What the JSON decoder reported.
        #[source]
        source: serde_json::Error,
    },
}

/// A configuration value that cannot be used, named by its key path (for
/// example `schedules[0].layers[1].handoff`). The binary that read the file
/// adds the file name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {problem}")]
pub struct ConfigError {
    /// Dotted path of the offending key.
    pub key: String,
    /// What is wrong with it, in one sentence.
    pub problem: String,
}

impl ConfigError {
    /// A problem with the value at `key`.
    pub fn new(key: impl Into<String>, problem: impl Into<String>) -> ConfigError {
        ConfigError { key: key.into(), problem: problem.into() }
    }
}
