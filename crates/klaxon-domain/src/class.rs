//! One classification of every error in Klaxon.
//!
//! Every crate's error implements [`Classify`]: it says which [`Class`] of
//! failure it is, and the few facts a caller can act on (the current version
//! of a conflict, the leader of a log group). The edge has exactly one
//! mapping from a class to a gRPC status and to an HTTP status
//! (`klaxon_proto::status`), so the same condition gets the same answer from
//! every service, the gateway and the webhooks; no crate decides status codes
//! by itself, by downcasting or by matching text.
//!
//! This module is pure data: it knows no wire format.

use std::fmt;

/// What kind of failure an error is, from the caller's point of view: what
/// it must change before a retry can succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Class {
    /// The request is malformed (a field, an id, a header); the message names
    /// the field. Retrying the same request fails the same way.
    InvalidArgument,
    /// A size or count limit of one request is exceeded (an event, a batch);
    /// the message names the limit.
    TooLarge,
    /// What the request names does not exist (an incident, a page, a
    /// schedule).
    NotFound,
    /// What the request creates exists already (an incident id, an event id
    /// in another append).
    AlreadyExists,
    /// The request is well formed but the current state forbids it (the
    /// message names the rule), for example resolving twice.
    FailedPrecondition,
    /// The request was based on another version than the current one; the
    /// error carries the current version ([`Classify::current_version`]).
    /// Reload and retry.
    Conflict,
    /// The caller is known but may not do this.
    PermissionDenied,
    /// The caller is not known (no or an invalid token).
    Unauthenticated,
    /// A shared capacity is used up (a rate, a bridge, a number of feeds);
    /// the message names the limit. A later retry may succeed.
    ResourceExhausted,
    /// A transient condition: the log is closed or away, a log group has
    /// another leader ([`Classify::leader_hint`]), a service is stopping or
    /// catching up, concurrent writers kept winning. The same request may
    /// succeed when retried.
    Unavailable,
    /// The method or service is not served here (an unknown route behind
    /// the gateway).
    Unimplemented,
    /// Our fault or the disk's: corruption, a storage failure, an event this
    /// version cannot decode. Retrying does not help; an operator must look.
    Internal,
}

impl Class {
    /// Every class, in declaration order.
    pub const ALL: [Class; 12] = [
        Class::InvalidArgument,
        Class::TooLarge,
        Class::NotFound,
        Class::AlreadyExists,
        Class::FailedPrecondition,
        Class::Conflict,
        Class::PermissionDenied,
        Class::Unauthenticated,
        Class::ResourceExhausted,
        Class::Unavailable,
        Class::Unimplemented,
        Class::Internal,
    ];

    /// True when the caller must change the request (or its credentials)
    /// before a retry can succeed; false when the same request may succeed
    /// later (capacity, availability) or the fault is ours.
    pub fn is_callers(self) -> bool {
        !matches!(self, Class::ResourceExhausted | Class::Unavailable | Class::Internal)
    }
}

impl fmt::Display for Class {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Class::InvalidArgument => "invalid argument",
            Class::TooLarge => "too large",
            Class::NotFound => "not found",
            Class::AlreadyExists => "already exists",
            Class::FailedPrecondition => "failed precondition",
            Class::Conflict => "conflict",
            Class::PermissionDenied => "permission denied",
            Class::Unauthenticated => "unauthenticated",
            Class::ResourceExhausted => "resource exhausted",
            Class::Unavailable => "unavailable",
            Class::Unimplemented => "unimplemented",
            Class::Internal => "internal",
        };
        f.write_str(name)
    }
}

/// An error that knows its [`Class`]. Its `Display` is the message the
/// caller reads (naming the field, the rule or the limit).
pub trait Classify: fmt::Display {
    /// Which kind of failure this is.
    fn class(&self) -> Class;

    /// For a [`Class::Conflict`]: the current version of what the request
    /// was based on, so the caller can reload and retry.
    fn current_version(&self) -> Option<u64> {
        None
    }

    /// For a [`Class::Unavailable`] from a follower of a log group: the
    /// leader's address, so the caller can go there.
    fn leader_hint(&self) -> Option<&str> {
        None
    }
}

impl<T: Classify + ?Sized> Classify for &T {
    fn class(&self) -> Class {
        (**self).class()
    }
    fn current_version(&self) -> Option<u64> {
        (**self).current_version()
    }
    fn leader_hint(&self) -> Option<&str> {
        (**self).leader_hint()
    }
}

/// A refusal checked at the edge that belongs to no crate's `Error` (a
/// missing request field, a page token, an unknown route): a class and a
/// message naming the field. It goes through the same mapping as every
/// other error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The kind.
    pub class: Class,
    /// The message, naming the field or the limit.
    pub message: String,
}

impl Refusal {
    /// A refusal of `class`.
    pub fn new(class: Class, message: impl Into<String>) -> Refusal {
        Refusal { class, message: message.into() }
    }

    /// A malformed request field: `invalid {field}: {reason}`.
    pub fn invalid(field: &str, reason: impl fmt::Display) -> Refusal {
        Refusal::new(Class::InvalidArgument, format!("invalid {field}: {reason}"))
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Refusal {}

impl Classify for Refusal {
    fn class(&self) -> Class {
        self.class
    }
}

impl Classify for crate::Error {
    fn class(&self) -> Class {
        match self {
            crate::Error::InvalidField { .. } | crate::Error::TooLarge { .. } => Class::InvalidArgument,
            crate::Error::Rule { .. } | crate::Error::ReviewRule { .. } => Class::FailedPrecondition,
            crate::Error::UnknownIncident(_) => Class::NotFound,
            crate::Error::AlreadyExists(_) => Class::AlreadyExists,
        }
    }
}

impl Classify for crate::DecodeError {
    fn class(&self) -> Class {
        match self {
            crate::DecodeError::UnknownKind { .. } | crate::DecodeError::Malformed { .. } => Class::Internal,
        }
    }
}

impl Classify for crate::ConfigError {
    fn class(&self) -> Class {
        Class::InvalidArgument
    }
}

impl Classify for crate::paging::AckError {
    fn class(&self) -> Class {
        use crate::paging::AckError;
        match self {
            AckError::UnknownPage { .. } => Class::NotFound,
            AckError::NotYours { .. } => Class::PermissionDenied,
            AckError::AlreadyAcknowledged { .. } | AckError::IncidentClosed { .. } | AckError::Notice { .. } => {
                Class::FailedPrecondition
            }
        }
    }
}
