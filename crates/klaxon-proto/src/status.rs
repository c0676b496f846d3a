//! The one mapping from an error's [`Class`] to a gRPC status, an HTTP
//! status and an SMTP reply. Every gRPC handler, the gateway, the auth layer, the log server
//! and the HTTP intake answer through it; nothing else builds a
//! `tonic::Status` (a test over the sources keeps it so).
//!
//! | class | gRPC | HTTP | SMTP |
//! | --- | --- | --- | --- |
//! | invalid argument | `INVALID_ARGUMENT` | 400 | 550 5.6.0 |
//! | too large | `RESOURCE_EXHAUSTED` | 413 | 552 5.3.4 |
//! | not found | `NOT_FOUND` | 404 | 550 5.1.1 |
//! | already exists | `ALREADY_EXISTS` | 409 | 550 5.7.0 |
//! | failed precondition | `FAILED_PRECONDITION` | 409 | 550 5.7.0 |
//! | conflict | `ABORTED` (+ `klaxon-current-version`) | 409 | 451 4.3.0 |
//! | permission denied | `PERMISSION_DENIED` | 403 | 550 5.7.1 |
//! | unauthenticated | `UNAUTHENTICATED` | 401 | 530 5.7.0 |
//! | resource exhausted | `RESOURCE_EXHAUSTED` | 429 | 451 4.3.0 |
//! | unavailable | `UNAVAILABLE` (+ `klaxon-leader`) | 503 | 451 4.3.0 |
//! | unimplemented | `UNIMPLEMENTED` | 501 | 502 5.5.1 |
//! | internal | `INTERNAL` | 500 | 451 4.3.0 |
//!
//! The HTTP split keeps webhook retries right: the caller's mistakes are 4xx
//! (Alertmanager and PagerDuty clients do not retry them), a rate or
//! capacity is 429 and everything that may pass later is 5xx (retried).
//! The SMTP replies of the e-mail intake ([`smtp_reply`]) split the same
//! way: the sender's mistakes are permanent (`5xx`, not retried by the
//! MTA), what may pass later is `451 4.3.0` (retried); a conflict is
//! transient there, as mail never carries an expected version.

use klaxon_domain::class::{Class, Classify, Refusal};
use tonic::{Code, Status};

/// The trailer that carries the current version on `ABORTED`.
pub const CURRENT_VERSION_TRAILER: &str = "klaxon-current-version";

/// The metadata key of a log group follower's leader hint (the leader's
/// address) on `UNAVAILABLE`.
pub const LEADER_HINT_HEADER: &str = "klaxon-leader";

/// The gRPC code of a class.
pub fn code(class: Class) -> Code {
    match class {
        Class::InvalidArgument => Code::InvalidArgument,
        Class::TooLarge | Class::ResourceExhausted => Code::ResourceExhausted,
        Class::NotFound => Code::NotFound,
        Class::AlreadyExists => Code::AlreadyExists,
        Class::FailedPrecondition => Code::FailedPrecondition,
        Class::Conflict => Code::Aborted,
        Class::PermissionDenied => Code::PermissionDenied,
        Class::Unauthenticated => Code::Unauthenticated,
        Class::Unavailable => Code::Unavailable,
        Class::Unimplemented => Code::Unimplemented,
        Class::Internal => Code::Internal,
    }
}

/// The HTTP status of a class.
pub fn http_status(class: Class) -> http::StatusCode {
    use http::StatusCode as S;
    match class {
        Class::InvalidArgument => S::BAD_REQUEST,
        Class::TooLarge => S::PAYLOAD_TOO_LARGE,
        Class::NotFound => S::NOT_FOUND,
        Class::AlreadyExists | Class::FailedPrecondition | Class::Conflict => S::CONFLICT,
        Class::PermissionDenied => S::FORBIDDEN,
        Class::Unauthenticated => S::UNAUTHORIZED,
        Class::ResourceExhausted => S::TOO_MANY_REQUESTS,
        Class::Unavailable => S::SERVICE_UNAVAILABLE,
        Class::Unimplemented => S::NOT_IMPLEMENTED,
        Class::Internal => S::INTERNAL_SERVER_ERROR,
    }
}

/// The SMTP reply code and enhanced status code of a class, for the e-mail
/// intake's answer after `DATA`.
pub fn smtp_reply(class: Class) -> (u16, &'static str) {
    match class {
        Class::InvalidArgument => (550, "5.6.0"),
        Class::TooLarge => (552, "5.3.4"),
        Class::NotFound => (550, "5.1.1"),
        Class::AlreadyExists | Class::FailedPrecondition => (550, "5.7.0"),
        Class::PermissionDenied => (550, "5.7.1"),
        Class::Unauthenticated => (530, "5.7.0"),
        Class::Unimplemented => (502, "5.5.1"),
        Class::Conflict | Class::ResourceExhausted | Class::Unavailable | Class::Internal => (451, "4.3.0"),
    }
}

/// The gRPC status of an error: its class's code, its message, and on
/// `ABORTED` the current version, on `UNAVAILABLE` the leader hint.
pub fn to_status(error: &(impl Classify + ?Sized)) -> Status {
    with_facts(Status::new(code(error.class()), error.to_string()), error)
}

/// [`to_status`] by value, for `map_err(status::from)`.
pub fn from<E: Classify>(error: E) -> Status {
    to_status(&error)
}

/// [`to_status`] with binary details (the log server's typed wire error).
pub fn to_status_with_details(error: &(impl Classify + ?Sized), details: Vec<u8>) -> Status {
    with_facts(Status::with_details(code(error.class()), error.to_string(), details.into()), error)
}

/// The HTTP status of an error.
pub fn to_http(error: &(impl Classify + ?Sized)) -> http::StatusCode {
    http_status(error.class())
}

/// A refusal checked at the edge (see [`Refusal`]) as a gRPC status.
pub fn refuse(class: Class, message: impl Into<String>) -> Status {
    to_status(&Refusal::new(class, message))
}

/// A malformed request field as `INVALID_ARGUMENT`: `invalid {field}: {reason}`.
pub fn invalid(field: &str, reason: impl std::fmt::Display) -> Status {
    to_status(&Refusal::invalid(field, reason))
}

/// A status as the error outcome of one command of `Incidents/Execute`:
/// the code, message, binary details and ASCII metadata (such as
/// [`CURRENT_VERSION_TRAILER`]) that its unary call would have ended with.
/// The status itself comes from this module's mapping; this only moves it
/// into a message.
pub fn to_command_error(status: &Status) -> crate::v1::CommandError {
    let metadata = status
        .metadata()
        .iter()
        .filter_map(|entry| match entry {
            tonic::metadata::KeyAndValueRef::Ascii(key, value) => {
                Some((key.as_str().to_owned(), value.to_str().ok()?.to_owned()))
            }
            tonic::metadata::KeyAndValueRef::Binary(..) => None,
        })
        .collect();
    crate::v1::CommandError {
        code: status.code() as i32,
        message: status.message().to_owned(),
        details: status.details().to_vec(),
        metadata,
    }
}

/// The status a command's error outcome stands for: what its unary call
/// would have answered (for clients that handle both alike).
pub fn from_command_error(error: &crate::v1::CommandError) -> Status {
    let mut metadata = tonic::metadata::MetadataMap::new();
    for (key, value) in &error.metadata {
        if let (Ok(key), Ok(value)) =
            (key.parse::<tonic::metadata::AsciiMetadataKey>(), value.parse::<tonic::metadata::AsciiMetadataValue>())
        {
            metadata.insert(key, value);
        }
    }
    Status::with_details_and_metadata(
        Code::from(error.code),
        error.message.clone(),
        error.details.clone().into(),
        metadata,
    )
}

fn with_facts(mut status: Status, error: &(impl Classify + ?Sized)) -> Status {
    if let Some(current) = error.current_version() {
        status.metadata_mut().insert(CURRENT_VERSION_TRAILER, current.into());
    }
    if let Some(value) = error.leader_hint().and_then(|l| l.parse().ok()) {
        status.metadata_mut().insert(LEADER_HINT_HEADER, value);
    }
    status
}

#[cfg(test)]
mod tests;
