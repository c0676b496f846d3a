//! The one place where intake errors become gRPC statuses, by kind.

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
