use klaxon_domain::class::{Class, Classify};
use klaxon_domain::ids::IncidentId;
use klaxon_log::Position;

/// Everything intake can refuse or fail with. Its [`Classify`] class is
/// what `klaxon_proto::status` maps to a gRPC or HTTP status; nothing else
/// does.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The domain refused the command (bad field, broken rule, unknown
    /// incident). Nothing was written.
    #[error(transparent)]
    Domain(#[from] klaxon_domain::Error),
    /// A request field outside the domain's (request id, page token, headers).
    #[error("invalid {field}: {reason}")]
    InvalidRequest {
        /// The field or header.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The command was based on another version of the incident than the
    /// current one. Nothing was written.
    #[error("{incident} is at version {current}, not {expected}; reload it and retry")]
    Conflict {
        /// The incident.
        incident: IncidentId,
        /// The version the command was based on.
        expected: u64,
        /// The incident's current version.
        current: u64,
    },
    /// The principal's team scope does not cover the incident's service.
    /// Nothing was written.
    #[error(transparent)]
    OutOfScope(#[from] klaxon_auth::OutOfScope),
    /// The principal claimed a report source it has not earned. Nothing
    /// was written.
    #[error(transparent)]
    SourceNotEarned(#[from] klaxon_auth::SourceNotEarned),
    /// The incident's bridge has no room.
    #[error("the bridge of {incident} is full ({max} participants)")]
    BridgeFull {
        /// The incident.
        incident: IncidentId,
        /// The configured limit.
        max: usize,
    },
    /// Concurrent writers kept changing the incident; the command gave up.
    #[error("{incident} changed {attempts} times while the command was applied; retry")]
    Contended {
        /// The incident.
        incident: IncidentId,
        /// Attempts made.
        attempts: usize,
    },
    /// A stored incident event that does not decode: the log holds data this
    /// version does not understand.
    #[error("the event at position {position} does not decode: {reason}")]
    UndecodableEvent {
        /// Where.
        position: Position,
        /// Why.
        reason: String,
    },
    /// The log refused or failed.
    #[error(transparent)]
    Log(#[from] klaxon_log::Error),
    /// The service is stopping or its projection is not keeping up.
    #[error("intake is unavailable: {0}")]
    Unavailable(String),
    /// The table of the evicted incidents' rows failed, or a slot of it
    /// does not check out.
    #[error("intake's rows table: {0}")]
    Rows(String),
}

impl From<klaxon_reactor::Error> for Error {
    fn from(error: klaxon_reactor::Error) -> Error {
        match error {
            klaxon_reactor::Error::Log(e) => Error::Log(e),
            klaxon_reactor::Error::Undecodable { position, reason } => Error::UndecodableEvent { position, reason },
            e @ klaxon_reactor::Error::Unavailable { .. } => Error::Unavailable(e.to_string()),
            e @ klaxon_reactor::Error::Table { .. } => Error::Rows(e.to_string()),
        }
    }
}

impl Classify for Error {
    fn class(&self) -> Class {
        match self {
            Error::Domain(e) => e.class(),
            Error::InvalidRequest { .. } => Class::InvalidArgument,
            Error::Conflict { .. } => Class::Conflict,
            Error::OutOfScope(e) => e.class(),
            Error::SourceNotEarned(e) => e.class(),
            Error::BridgeFull { .. } => Class::ResourceExhausted,
            // Nothing is wrong with the request: the same call may succeed
            // when the other writers are done.
            Error::Contended { .. } => Class::Unavailable,
            Error::UndecodableEvent { .. } | Error::Rows(_) => Class::Internal,
            Error::Log(e) => e.class(),
            Error::Unavailable(_) => Class::Unavailable,
        }
    }

    /// The incident's current version, for a conflict.
    fn current_version(&self) -> Option<u64> {
        match self {
            Error::Conflict { current, .. } => Some(*current),
            Error::Log(e) => e.current_version(),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests;
