//! The error table: every variant of `klaxon_log::Error` and of the domain's
//! errors, each exactly once, with the gRPC code and the HTTP status it
//! gets. The rows are exhaustive `match`es, so a new variant does not
//! compile until it has a row, and each row needs an example below (the
//! test checks that every row is exercised).

use std::collections::BTreeSet;

use http::StatusCode as H;
use klaxon_domain::class::{Class, Classify, Refusal};
use klaxon_domain::ids::{ActorId, IncidentId};
use klaxon_domain::incident::Status as IncidentStatus;
use klaxon_domain::paging::{AckError, PageId};
use klaxon_domain::{ConfigError, DecodeError};
use klaxon_log::{ExpectedVersion, Position, StreamId, StreamVersion};
use tonic::Code;

use super::{CURRENT_VERSION_TRAILER, LEADER_HINT_HEADER, code, http_status, smtp_reply, to_http, to_status};

/// One row per variant of the log's error: (row number, gRPC, HTTP).
fn log_row(e: &klaxon_log::Error) -> (usize, Code, H) {
    use klaxon_log::Error as L;
    match e {
        L::WrongExpectedVersion { .. } => (0, Code::Aborted, H::CONFLICT),
        L::EmptyAppend { .. } => (1, Code::InvalidArgument, H::BAD_REQUEST),
        L::TooManyEvents { .. } => (2, Code::ResourceExhausted, H::PAYLOAD_TOO_LARGE),
        L::EventTooLarge { .. } => (3, Code::ResourceExhausted, H::PAYLOAD_TOO_LARGE),
        L::InvalidStreamId { .. } => (4, Code::InvalidArgument, H::BAD_REQUEST),
        L::InvalidKind { .. } => (5, Code::InvalidArgument, H::BAD_REQUEST),
        L::InvalidData { .. } => (6, Code::InvalidArgument, H::BAD_REQUEST),
        L::InvalidMetadata { .. } => (7, Code::InvalidArgument, H::BAD_REQUEST),
        L::InvalidConsumerName { .. } => (8, Code::InvalidArgument, H::BAD_REQUEST),
        L::DuplicateIdInAppend { .. } => (9, Code::InvalidArgument, H::BAD_REQUEST),
        L::PartialDuplicate { .. } => (10, Code::AlreadyExists, H::CONFLICT),
        L::IdInOtherStream { .. } => (11, Code::AlreadyExists, H::CONFLICT),
        L::Corrupt { .. } => (12, Code::Internal, H::INTERNAL_SERVER_ERROR),
        L::IncompatibleFormat { .. } => (13, Code::Internal, H::INTERNAL_SERVER_ERROR),
        L::Locked { .. } => (14, Code::Internal, H::INTERNAL_SERVER_ERROR),
        L::Storage(_) => (15, Code::Internal, H::INTERNAL_SERVER_ERROR),
        L::Io(_) => (16, Code::Internal, H::INTERNAL_SERVER_ERROR),
        L::Failed { .. } => (17, Code::Internal, H::INTERNAL_SERVER_ERROR),
        L::Closed => (18, Code::Unavailable, H::SERVICE_UNAVAILABLE),
        L::Rejected { .. } => (19, Code::InvalidArgument, H::BAD_REQUEST),
        L::Unavailable { .. } => (20, Code::Unavailable, H::SERVICE_UNAVAILABLE),
    }
}
const LOG_ROWS: usize = 21;

/// One row per variant of the domain's errors.
fn domain_row(e: &klaxon_domain::Error) -> (usize, Code, H) {
    use klaxon_domain::Error as D;
    match e {
        D::InvalidField { .. } => (0, Code::InvalidArgument, H::BAD_REQUEST),
        D::TooLarge { .. } => (1, Code::InvalidArgument, H::BAD_REQUEST),
        D::Rule { .. } => (2, Code::FailedPrecondition, H::CONFLICT),
        D::UnknownIncident(_) => (3, Code::NotFound, H::NOT_FOUND),
        D::AlreadyExists(_) => (4, Code::AlreadyExists, H::CONFLICT),
        D::ReviewRule { .. } => (5, Code::FailedPrecondition, H::CONFLICT),
    }
}
const DOMAIN_ROWS: usize = 6;

fn ack_row(e: &AckError) -> (usize, Code, H) {
    match e {
        AckError::UnknownPage { .. } => (0, Code::NotFound, H::NOT_FOUND),
        AckError::NotYours { .. } => (1, Code::PermissionDenied, H::FORBIDDEN),
        AckError::AlreadyAcknowledged { .. } => (2, Code::FailedPrecondition, H::CONFLICT),
        AckError::IncidentClosed { .. } => (3, Code::FailedPrecondition, H::CONFLICT),
        AckError::Notice { .. } => (4, Code::FailedPrecondition, H::CONFLICT),
    }
}
const ACK_ROWS: usize = 5;

fn decode_row(e: &DecodeError) -> (usize, Code, H) {
    match e {
        DecodeError::UnknownKind { .. } => (0, Code::Internal, H::INTERNAL_SERVER_ERROR),
        DecodeError::Malformed { .. } => (1, Code::Internal, H::INTERNAL_SERVER_ERROR),
    }
}
const DECODE_ROWS: usize = 2;

/// Checks every example against its row and that the rows are all used
/// exactly as often as there are rows: one example per variant.
fn check<E: Classify>(examples: &[E], row: impl Fn(&E) -> (usize, Code, H), rows: usize) {
    let mut seen = BTreeSet::new();
    for e in examples {
        let (n, grpc, http) = row(e);
        assert!(seen.insert(n), "row {n} has two examples ({e})");
        let status = to_status(e);
        assert_eq!(status.code(), grpc, "gRPC code of {e}");
        assert_eq!(status.message(), e.to_string(), "the message is the error's");
        assert_eq!(to_http(e), http, "HTTP status of {e}");
    }
    assert_eq!(seen, (0..rows).collect::<BTreeSet<_>>(), "every row has exactly one example");
}

fn stream() -> StreamId {
    StreamId::new("incident-INC-1").unwrap()
}

#[test]
fn every_log_error_has_one_row() {
    use klaxon_log::Error as L;
    let id = uuid::Uuid::nil();
    let examples = vec![
        L::WrongExpectedVersion {
            stream: stream(),
            expected: ExpectedVersion::Exact(StreamVersion(3)),
            actual: StreamVersion(5),
        },
        L::EmptyAppend { stream: stream() },
        L::TooManyEvents { count: 2000, max: 1000 },
        L::EventTooLarge { index: 0, size: 2_000_000, max: 1_000_000 },
        L::InvalidStreamId { id: "".into(), reason: "is empty" },
        L::InvalidKind { kind: "".into(), reason: "is empty" },
        L::InvalidData { reason: "eof".into() },
        L::InvalidMetadata { field: "actor", reason: "is empty" },
        L::InvalidConsumerName { name: "".into() },
        L::DuplicateIdInAppend { id },
        L::PartialDuplicate { present: 1, count: 2, first: id },
        L::IdInOtherStream { id, original: stream(), requested: StreamId::new("review-INC-1").unwrap() },
        L::Corrupt { position: Position(7), reason: "checksum".into() },
        L::IncompatibleFormat { path: "/x".into(), reason: "format 9".into() },
        L::Locked { path: "/x".into() },
        L::Storage(sled::Error::Unsupported("test".into())),
        L::Io(std::io::Error::other("disk gone")),
        L::Failed { reason: "fsync failed".into() },
        L::Closed,
        L::Rejected { message: "no".into() },
        L::Unavailable { reason: "connection refused".into() },
    ];
    check(&examples, log_row, LOG_ROWS);
}

#[test]
fn every_domain_error_has_one_row() {
    use klaxon_domain::Error as D;
    let inc = IncidentId::from_number(1).unwrap();
    let examples = vec![
        D::InvalidField { field: "title", reason: "is blank".into() },
        D::TooLarge { field: "title", len: 300, max: 200 },
        D::Rule { rule: "resolve.already_resolved", state: IncidentStatus::Resolved, message: "twice".into() },
        D::UnknownIncident(inc),
        D::AlreadyExists(inc),
        D::ReviewRule { rule: "publish.needs_summary", message: "write a summary first".into() },
    ];
    check(&examples, domain_row, DOMAIN_ROWS);

    let page: PageId = "INC-1-P1".parse().unwrap();
    let ana = ActorId::new("ana").unwrap();
    let acks = vec![
        AckError::UnknownPage { page, incident: inc },
        AckError::NotYours { page, responder: ana.clone(), actor: ActorId::new("bob").unwrap() },
        AckError::AlreadyAcknowledged { page, by: ana, at: chrono::DateTime::from_timestamp(0, 0).unwrap() },
        AckError::IncidentClosed { incident: inc, status: IncidentStatus::Closed },
        AckError::Notice { page, responder: ActorId::new("dave").unwrap(), incident: inc },
    ];
    check(&acks, ack_row, ACK_ROWS);

    let malformed = serde_json::from_str::<u8>("x").unwrap_err();
    let decodes = vec![
        DecodeError::UnknownKind { kind: "x.v9".into() },
        DecodeError::Malformed { kind: "incident.declared.v1".into(), source: malformed },
    ];
    check(&decodes, decode_row, DECODE_ROWS);

    let config = ConfigError::new("rules[0]", "is wrong");
    assert_eq!(to_status(&config).code(), Code::InvalidArgument);
}

/// Each class's gRPC code, HTTP status and SMTP reply, once; the 4xx/5xx
/// split is what webhook clients retry by.
#[test]
fn every_class_has_one_code_and_http_status() {
    let rows: Vec<(Class, Code, H, (u16, &str))> = Class::ALL
        .iter()
        .map(|&class| {
            let (grpc, http, smtp) = match class {
                Class::InvalidArgument => (Code::InvalidArgument, H::BAD_REQUEST, (550, "5.6.0")),
                Class::TooLarge => (Code::ResourceExhausted, H::PAYLOAD_TOO_LARGE, (552, "5.3.4")),
                Class::NotFound => (Code::NotFound, H::NOT_FOUND, (550, "5.1.1")),
                Class::AlreadyExists => (Code::AlreadyExists, H::CONFLICT, (550, "5.7.0")),
                Class::FailedPrecondition => (Code::FailedPrecondition, H::CONFLICT, (550, "5.7.0")),
                Class::Conflict => (Code::Aborted, H::CONFLICT, (451, "4.3.0")),
                Class::PermissionDenied => (Code::PermissionDenied, H::FORBIDDEN, (550, "5.7.1")),
                Class::Unauthenticated => (Code::Unauthenticated, H::UNAUTHORIZED, (530, "5.7.0")),
                Class::ResourceExhausted => (Code::ResourceExhausted, H::TOO_MANY_REQUESTS, (451, "4.3.0")),
                Class::Unavailable => (Code::Unavailable, H::SERVICE_UNAVAILABLE, (451, "4.3.0")),
                Class::Unimplemented => (Code::Unimplemented, H::NOT_IMPLEMENTED, (502, "5.5.1")),
                Class::Internal => (Code::Internal, H::INTERNAL_SERVER_ERROR, (451, "4.3.0")),
            };
            (class, grpc, http, smtp)
        })
        .collect();
    for (class, grpc, http, smtp) in rows {
        assert_eq!(code(class), grpc, "{class}");
        assert_eq!(http_status(class), http, "{class}");
        assert_eq!(smtp_reply(class), smtp, "{class}");
        // An unknown route is the caller's, though gRPC's 501 is a 5xx; the
        // gateway serves it, never a webhook.
        if class != Class::Unimplemented {
            let retried = http.is_server_error() || http == H::TOO_MANY_REQUESTS;
            assert_eq!(retried, !class.is_callers(), "{class}: a webhook client retries exactly what may pass later");
        }
        let refusal = Refusal::new(class, "x");
        assert_eq!(to_status(&refusal).code(), grpc);
    }
}

/// A conflict carries the current version; a follower's refusal the leader.
#[test]
fn facts_travel_as_metadata() {
    let conflict = klaxon_log::Error::WrongExpectedVersion {
        stream: stream(),
        expected: ExpectedVersion::Exact(StreamVersion(3)),
        actual: StreamVersion(5),
    };
    let status = to_status(&conflict);
    assert_eq!(status.metadata().get(CURRENT_VERSION_TRAILER).unwrap(), "5");
    assert!(status.metadata().get(LEADER_HINT_HEADER).is_none());

    struct NotLeader;
    impl std::fmt::Display for NotLeader {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("not the leader")
        }
    }
    impl Classify for NotLeader {
        fn class(&self) -> Class {
            Class::Unavailable
        }
        fn leader_hint(&self) -> Option<&str> {
            Some("127.0.0.1:7401")
        }
    }
    let status = to_status(&NotLeader);
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(status.metadata().get(LEADER_HINT_HEADER).unwrap(), "127.0.0.1:7401");
    assert!(status.metadata().get(CURRENT_VERSION_TRAILER).is_none());
}
