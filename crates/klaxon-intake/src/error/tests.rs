//! Intake's error table: every variant of [`Error`] once (an exhaustive
//! `match`, so a new variant does not compile without a row), with the gRPC
//! code and the HTTP status of the webhooks it gets through the one
//! mapping. The log's and the domain's own variants are tabled in
//! `klaxon_proto::status`; here they only show that intake passes them on.

use std::collections::BTreeSet;

use axum::http::StatusCode as H;
use klaxon_domain::ids::{IncidentId, ReportSource};
use klaxon_log::Position;
use klaxon_proto::status::{CURRENT_VERSION_TRAILER, to_http, to_status};
use tonic::Code;

use super::Error;

fn row(e: &Error) -> (usize, Code, H) {
    match e {
        Error::Domain(_) => (0, Code::NotFound, H::NOT_FOUND),
        Error::InvalidRequest { .. } => (1, Code::InvalidArgument, H::BAD_REQUEST),
        Error::Conflict { .. } => (2, Code::Aborted, H::CONFLICT),
        Error::OutOfScope(_) => (3, Code::PermissionDenied, H::FORBIDDEN),
        Error::SourceNotEarned(_) => (4, Code::PermissionDenied, H::FORBIDDEN),
        Error::BridgeFull { .. } => (5, Code::ResourceExhausted, H::TOO_MANY_REQUESTS),
        // Retried by webhook clients: the same delivery may pass later.
        Error::Contended { .. } => (6, Code::Unavailable, H::SERVICE_UNAVAILABLE),
        Error::UndecodableEvent { .. } => (7, Code::Internal, H::INTERNAL_SERVER_ERROR),
        Error::Log(_) => (8, Code::Unavailable, H::SERVICE_UNAVAILABLE),
        Error::Unavailable(_) => (9, Code::Unavailable, H::SERVICE_UNAVAILABLE),
        Error::Rows(_) => (10, Code::Internal, H::INTERNAL_SERVER_ERROR),
    }
}
const ROWS: usize = 11;

#[test]
fn every_intake_error_has_one_row() {
    let inc = IncidentId::from_number(7).unwrap();
    let examples = [
        Error::Domain(klaxon_domain::Error::UnknownIncident(inc)),
        Error::InvalidRequest { field: "request_id", reason: "is too long".into() },
        Error::Conflict { incident: inc, expected: 3, current: 5 },
        Error::OutOfScope(klaxon_auth::OutOfScope {
            principal: "ana (engineer)".into(),
            what: "service web".into(),
            why: "it belongs to team web".into(),
        }),
        Error::SourceNotEarned(klaxon_auth::SourceNotEarned {
            principal: "ana (engineer)".into(),
            claimed: ReportSource::Executive,
            why: "only executives may",
        }),
        Error::BridgeFull { incident: inc, max: 50 },
        Error::Contended { incident: inc, attempts: 5 },
        Error::UndecodableEvent { position: Position(9), reason: "unknown kind".into() },
        Error::Log(klaxon_log::Error::Closed),
        Error::Unavailable("stopping".into()),
        Error::Rows("slot 7 fails its checksum".into()),
    ];
    let mut seen = BTreeSet::new();
    for e in &examples {
        let (n, grpc, http) = row(e);
        assert!(seen.insert(n), "row {n} has two examples");
        let status = to_status(e);
        assert_eq!(status.code(), grpc, "gRPC code of {e}");
        assert_eq!(status.message(), e.to_string());
        assert_eq!(to_http(e), http, "HTTP status of {e}");
    }
    assert_eq!(seen, (0..ROWS).collect::<BTreeSet<_>>(), "every row has exactly one example");

    // A conflict carries the current version, intake's or the log's.
    let conflict = to_status(&Error::Conflict { incident: inc, expected: 3, current: 5 });
    assert_eq!(conflict.metadata().get(CURRENT_VERSION_TRAILER).unwrap(), "5");
    let log_conflict = Error::Log(klaxon_log::Error::WrongExpectedVersion {
        stream: klaxon_log::StreamId::new("incident-INC-7").unwrap(),
        expected: klaxon_log::ExpectedVersion::Exact(klaxon_log::StreamVersion(3)),
        actual: klaxon_log::StreamVersion(4),
    });
    assert_eq!(to_status(&log_conflict).metadata().get(CURRENT_VERSION_TRAILER).unwrap(), "4");
}

/// The auth layer's refusals go through the same mapping.
#[test]
fn auth_refusals_are_classified() {
    use klaxon_auth::tokens::Rejected;
    assert_eq!(to_status(&Rejected::Missing).code(), Code::Unauthenticated);
    assert_eq!(to_http(&Rejected::Unknown), H::UNAUTHORIZED);
}
