//! The one place where intake errors become gRPC statuses, HTTP status
//! codes and SMTP replies, by kind.

use tonic::{Code, Status};

use crate::Error;

/// The trailer that carries an incident's current version on `ABORTED`.
pub const CURRENT_VERSION_TRAILER: &str = "klaxon-current-version";

/// Maps an error to its gRPC status: `INVALID_ARGUMENT` names the field,
/// `FAILED_PRECONDITION` names the rule, `ABORTED` carries the current
/// version, `RESOURCE_EXHAUSTED` names the limit.
pub fn to_status(error: Error) -> Status {
    use klaxon_domain::Error as D;
    use klaxon_log::Error as L;
    let message = error.to_string();
    match error {
        Error::Domain(D::InvalidField { .. }) | Error::Domain(D::TooLarge { .. }) | Error::InvalidRequest { .. } => {
            Status::invalid_argument(message)
        }
        Error::Domain(D::Rule { .. }) => Status::failed_precondition(message),
        Error::Domain(D::UnknownIncident(_)) => Status::not_found(message),
        Error::Domain(D::AlreadyExists(_)) => Status::already_exists(message),
        Error::Conflict { current, .. } => {
            let mut status = Status::aborted(message);
            status.metadata_mut().insert(CURRENT_VERSION_TRAILER, current.into());
            status
        }
        Error::Contended { .. } => Status::aborted(message),
        Error::BridgeFull { .. } => Status::resource_exhausted(message),
        Error::OutOfScope(_) | Error::SourceNotEarned(_) => Status::permission_denied(message),
        Error::Log(e) => match e {
            L::EventTooLarge { .. } | L::TooManyEvents { .. } => Status::resource_exhausted(message),
            L::WrongExpectedVersion { .. } => Status::aborted(message),
            L::Closed | L::Unavailable { .. } => Status::unavailable(message),
            e if e.is_request_error() => Status::invalid_argument(message),
            _ => Status::internal(message),
        },
        Error::UndecodableEvent { .. } => Status::internal(message),
        Error::Unavailable(_) => Status::new(Code::Unavailable, message),
    }
}

/// Maps an error to the HTTP status of the webhook endpoints, by the same
/// kinds as [`to_status`]: the caller's mistakes are 4xx (not retried by
/// Alertmanager or PagerDuty clients), everything that may pass is 5xx
/// (retried).
pub fn to_http_status(error: &Error) -> axum::http::StatusCode {
    use axum::http::StatusCode as S;
    use klaxon_domain::Error as D;
    use klaxon_log::Error as L;
    match error {
        Error::Domain(D::InvalidField { .. }) | Error::Domain(D::TooLarge { .. }) | Error::InvalidRequest { .. } => {
            S::BAD_REQUEST
        }
        Error::Domain(D::Rule { .. }) | Error::Domain(D::AlreadyExists(_)) | Error::Conflict { .. } => S::CONFLICT,
        Error::Domain(D::UnknownIncident(_)) => S::NOT_FOUND,
        Error::OutOfScope(_) | Error::SourceNotEarned(_) => S::FORBIDDEN,
        Error::Contended { .. } | Error::BridgeFull { .. } | Error::Unavailable(_) => S::SERVICE_UNAVAILABLE,
        Error::Log(e) => match e {
            L::EventTooLarge { .. } | L::TooManyEvents { .. } => S::PAYLOAD_TOO_LARGE,
            L::WrongExpectedVersion { .. } => S::CONFLICT,
            L::Closed | L::Unavailable { .. } => S::SERVICE_UNAVAILABLE,
            e if e.is_request_error() => S::BAD_REQUEST,
            _ => S::INTERNAL_SERVER_ERROR,
        },
        Error::UndecodableEvent { .. } => S::INTERNAL_SERVER_ERROR,
    }
}

/// Maps an error to the SMTP reply after `DATA`, by the same kinds: the
/// sender's mistakes are permanent (`5xx`, not retried by the MTA), what
/// may pass is `451 4.3.0` (retried).
pub fn to_smtp_reply(error: &Error) -> crate::smtp::protocol::Reply {
    use crate::smtp::protocol::Reply;
    use klaxon_domain::Error as D;
    use klaxon_log::Error as L;
    let message = error.to_string();
    match error {
        Error::Domain(D::InvalidField { .. }) | Error::Domain(D::TooLarge { .. }) | Error::InvalidRequest { .. } => {
            Reply::new(550, "5.6.0", message)
        }
        Error::Domain(D::UnknownIncident(_)) => Reply::new(550, "5.1.1", message),
        Error::Domain(D::Rule { .. }) | Error::Domain(D::AlreadyExists(_)) | Error::Conflict { .. } => {
            Reply::new(550, "5.7.0", message)
        }
        Error::OutOfScope(_) | Error::SourceNotEarned(_) => Reply::new(550, "5.7.1", message),
        Error::Contended { .. } | Error::BridgeFull { .. } | Error::Unavailable(_) => Reply::new(451, "4.3.0", message),
        Error::Log(e) => match e {
            L::EventTooLarge { .. } | L::TooManyEvents { .. } => Reply::new(552, "5.3.4", message),
            L::WrongExpectedVersion { .. } | L::Closed | L::Unavailable { .. } => Reply::new(451, "4.3.0", message),
            e if e.is_request_error() => Reply::new(550, "5.6.0", message),
            _ => Reply::new(451, "4.3.0", message),
        },
        Error::UndecodableEvent { .. } => Reply::new(451, "4.3.0", message),
    }
}
