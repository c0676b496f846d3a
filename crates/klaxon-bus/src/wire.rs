//! Records, events and log errors on the wire.
//!
//! Records travel in the log's stored encoding with their checksum
//! ([`Record::to_bytes`]); a receiver verifies them with
//! [`Record::from_bytes`]. Log errors travel as a gRPC status whose details
//! hold a JSON [`WireError`], so the client rebuilds the same typed
//! [`Error`] the embedded log would have returned.

use klaxon_log::{
    Error, EventData, EventKind, ExpectedVersion, Metadata, NewEvent, Position, Record, StreamId, StreamVersion,
};
use klaxon_proto::v1::{LogMetadata, LogNewEvent, LogRecord};
use serde::{Deserialize, Serialize};
use tonic::Status;
use uuid::Uuid;

/// A log error as the status details carry it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "error", rename_all = "snake_case")]
pub enum WireError {
    /// [`Error::WrongExpectedVersion`].
    WrongExpectedVersion {
        /// The stream.
        stream: String,
        /// What the append expected.
        expected: ExpectedVersion,
        /// The stream's version.
        actual: u64,
    },
    /// [`Error::TooManyEvents`].
    TooManyEvents {
        /// Events in the append.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// [`Error::EventTooLarge`].
    EventTooLarge {
        /// Which event.
        index: usize,
        /// Its size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// [`Error::PartialDuplicate`].
    PartialDuplicate {
        /// Ids present.
        present: usize,
        /// Events in the append.
        count: usize,
        /// The first present id.
        first: Uuid,
    },
    /// [`Error::IdInOtherStream`].
    IdInOtherStream {
        /// The id.
        id: Uuid,
        /// Where it is.
        original: String,
        /// Where the append wanted it.
        requested: String,
    },
    /// [`Error::Corrupt`].
    Corrupt {
        /// Where.
        position: u64,
        /// What.
        reason: String,
    },
    /// Any other request error: [`Error::Rejected`] on the client.
    Rejected {
        /// The server's message.
        message: String,
    },
    /// Any failure of the server: [`Error::Unavailable`] on the client.
    Unavailable {
        /// The server's message.
        reason: String,
    },
    /// A write sent to a log server of a group that is not its leader:
    /// [`Error::Unavailable`] on the client, which follows `leader`.
    NotLeader {
        /// The leader's address, when the node knows one.
        leader: Option<String>,
    },
}

/// The gRPC metadata key of a follower's leader hint (the leader's address).
pub use klaxon_proto::status::LEADER_HINT_HEADER;

/// The status a log error is sent as: its class's code through the one
/// mapping (`klaxon_proto::status`), with the typed wire error as details.
pub fn to_status(error: &Error) -> Status {
    let details = serde_json::to_vec(&to_wire(error)).expect("wire errors serialize");
    klaxon_proto::status::to_status_with_details(error, details)
}

/// The status a refused write is sent as: a log error as [`to_status`], or a
/// follower's refusal (`UNAVAILABLE`, with the leader's address in the
/// [`LEADER_HINT_HEADER`] metadata and the details).
pub fn write_error_to_status(error: &crate::server::WriteError) -> Status {
    match error {
        crate::server::WriteError::Log(e) => to_status(e),
        crate::server::WriteError::NotLeader { leader } => {
            let wire = WireError::NotLeader { leader: leader.clone() };
            let details = serde_json::to_vec(&wire).expect("wire errors serialize");
            klaxon_proto::status::to_status_with_details(error, details)
        }
    }
}

/// The leader hint of a follower's refusal, if `status` is one: `Some(None)`
/// when the follower knows no leader, `None` when it is not such a refusal.
pub fn leader_hint(status: &Status) -> Option<Option<String>> {
    match serde_json::from_slice::<WireError>(status.details()) {
        Ok(WireError::NotLeader { leader }) => Some(leader),
        _ => None,
    }
}

/// A log error in its wire form.
pub fn to_wire(error: &Error) -> WireError {
    let message = error.to_string();
    match error {
        Error::WrongExpectedVersion { stream, expected, actual } => {
            WireError::WrongExpectedVersion { stream: stream.to_string(), expected: *expected, actual: actual.0 }
        }
        Error::TooManyEvents { count, max } => WireError::TooManyEvents { count: *count, max: *max },
        Error::EventTooLarge { index, size, max } => WireError::EventTooLarge { index: *index, size: *size, max: *max },
        Error::PartialDuplicate { present, count, first } => {
            WireError::PartialDuplicate { present: *present, count: *count, first: *first }
        }
        Error::IdInOtherStream { id, original, requested } => {
            WireError::IdInOtherStream { id: *id, original: original.to_string(), requested: requested.to_string() }
        }
        Error::Corrupt { position, reason } => WireError::Corrupt { position: position.0, reason: reason.clone() },
        e if e.is_request_error() => WireError::Rejected { message },
        _ => WireError::Unavailable { reason: message },
    }
}

/// The log error a status stands for. A status without our details (a
/// transport failure, a proxy, a timeout) is [`Error::Unavailable`].
pub fn from_status(status: &Status) -> Error {
    if matches!(status.code(), tonic::Code::Unauthenticated | tonic::Code::PermissionDenied) {
        return Error::Rejected { message: refused_process(status.message()) };
    }
    let Ok(wire) = serde_json::from_slice::<WireError>(status.details()) else {
        return Error::Unavailable { reason: format!("{:?}: {}", status.code(), status.message()) };
    };
    from_wire(wire)
}

/// What a process the log server refused is told: the server's reason
/// without its advice to people (`KLAXON_TOKEN` is what the CLI reads), and
/// what a process reads instead: its service token file.
fn refused_process(reason: &str) -> String {
    let reason = reason.split_once("; create one").map_or(reason, |(reason, _)| reason);
    format!(
        "the log server refused this process: {reason}; a Klaxon process presents the token (role service) \
         in the file named by --service-token-file, KLAXON_SERVICE_TOKEN_FILE or [auth] service_token_file \
         (`klaxond token create --name klaxon-services --role service > FILE` makes one)"
    )
}

/// The log error a wire error stands for.
pub fn from_wire(wire: WireError) -> Error {
    let stream = |s: String| StreamId::new(s).map_err(|e| Error::Rejected { message: e.to_string() });
    match wire {
        WireError::WrongExpectedVersion { stream: s, expected, actual } => match stream(s) {
            Ok(stream) => Error::WrongExpectedVersion { stream, expected, actual: StreamVersion(actual) },
            Err(e) => e,
        },
        WireError::TooManyEvents { count, max } => Error::TooManyEvents { count, max },
        WireError::EventTooLarge { index, size, max } => Error::EventTooLarge { index, size, max },
        WireError::PartialDuplicate { present, count, first } => Error::PartialDuplicate { present, count, first },
        WireError::IdInOtherStream { id, original, requested } => match (stream(original), stream(requested)) {
            (Ok(original), Ok(requested)) => Error::IdInOtherStream { id, original, requested },
            (Err(e), _) | (_, Err(e)) => e,
        },
        WireError::Corrupt { position, reason } => Error::Corrupt { position: Position(position), reason },
        WireError::Rejected { message } => Error::Rejected { message },
        WireError::Unavailable { reason } => Error::Unavailable { reason },
        WireError::NotLeader { leader } => Error::Unavailable {
            reason: match leader {
                Some(leader) => format!("the log server is not the leader; the leader is {leader}"),
                None => "the log server is not the leader, and no leader is known yet".to_owned(),
            },
        },
    }
}

/// A record for the wire.
pub fn record_to_wire(record: &Record) -> LogRecord {
    LogRecord { position: record.position.0, bytes: record.to_bytes() }
}

/// A record from the wire, checksum verified.
pub fn record_from_wire(record: &LogRecord) -> Result<Record, Error> {
    Record::from_bytes(Position(record.position), &record.bytes)
}

/// `expected` as the request's two fields.
pub fn expected_to_wire(expected: ExpectedVersion) -> (String, u64) {
    match expected {
        ExpectedVersion::Any => ("any".into(), 0),
        ExpectedVersion::NoStream => ("no_stream".into(), 0),
        ExpectedVersion::StreamExists => ("stream_exists".into(), 0),
        ExpectedVersion::Exact(v) => ("exact".into(), v.0),
    }
}

/// The expected version a request names.
pub fn expected_from_wire(kind: &str, version: u64) -> Result<ExpectedVersion, Error> {
    Ok(match kind {
        "any" | "" => ExpectedVersion::Any,
        "no_stream" => ExpectedVersion::NoStream,
        "stream_exists" => ExpectedVersion::StreamExists,
        "exact" => ExpectedVersion::Exact(StreamVersion(version)),
        other => {
            return Err(Error::Rejected {
                message: format!("expected {other:?} is none of any, no_stream, stream_exists, exact"),
            });
        }
    })
}

/// An event for the wire.
pub fn event_to_wire(event: &NewEvent) -> LogNewEvent {
    let m = &event.metadata;
    LogNewEvent {
        id: event.id.to_string(),
        kind: event.kind.to_string(),
        data: event.data.as_str().to_owned(),
        metadata: Some(LogMetadata {
            actor: m.actor.clone(),
            correlation_id: m.correlation_id.map(|u| u.to_string()),
            causation_id: m.causation_id.map(|u| u.to_string()),
            traceparent: m.traceparent.clone(),
        }),
    }
}

/// An event from the wire, every field checked as the log would.
pub fn event_from_wire(event: LogNewEvent) -> Result<NewEvent, Error> {
    let uuid = |field: &str, s: &str| {
        Uuid::parse_str(s).map_err(|e| Error::Rejected { message: format!("{field} {s:?} is not a UUID: {e}") })
    };
    let m = event.metadata.unwrap_or_default();
    Ok(NewEvent {
        id: uuid("event id", &event.id)?,
        kind: EventKind::new(event.kind)?,
        data: EventData::from_json(event.data)?,
        metadata: Metadata {
            actor: m.actor,
            correlation_id: m.correlation_id.as_deref().map(|s| uuid("correlation_id", s)).transpose()?,
            causation_id: m.causation_id.as_deref().map(|s| uuid("causation_id", s)).transpose()?,
            traceparent: m.traceparent,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_errors_survive_the_wire() {
        let stream = StreamId::new("incident-INC-1").unwrap();
        let cases = [
            Error::WrongExpectedVersion {
                stream: stream.clone(),
                expected: ExpectedVersion::Exact(StreamVersion(3)),
                actual: StreamVersion(4),
            },
            Error::TooManyEvents { count: 9, max: 8 },
            Error::EventTooLarge { index: 1, size: 70_000, max: 65_536 },
            Error::PartialDuplicate { present: 1, count: 2, first: Uuid::from_u128(7) },
            Error::IdInOtherStream { id: Uuid::from_u128(7), original: stream.clone(), requested: stream.clone() },
            Error::Corrupt { position: Position(12), reason: "checksum mismatch".into() },
        ];
        for error in cases {
            let back = from_status(&to_status(&error));
            assert_eq!(back.to_string(), error.to_string(), "{error:?}");
            assert_eq!(std::mem::discriminant(&back), std::mem::discriminant(&error), "{error:?}");
        }
    }

    #[test]
    fn other_errors_keep_their_message_and_class() {
        let request = Error::EmptyAppend { stream: StreamId::new("s").unwrap() };
        let back = from_status(&to_status(&request));
        assert!(matches!(back, Error::Rejected { ref message } if message == &request.to_string()), "{back:?}");
        assert!(back.is_request_error());
        let failure = Error::Closed;
        let back = from_status(&to_status(&failure));
        assert!(matches!(back, Error::Unavailable { .. }), "{back:?}");
        assert!(!back.is_request_error());
        let transport = from_status(&Status::unavailable("connection refused"));
        assert!(matches!(transport, Error::Unavailable { ref reason } if reason.contains("connection refused")));
    }

    #[test]
    fn events_round_trip_and_bad_fields_are_named() {
        let event = NewEvent {
            id: Uuid::from_u128(1),
            kind: EventKind::new("incident.reported.v1").unwrap(),
            data: EventData::from_json(r#"{"a":1}"#).unwrap(),
            metadata: Metadata {
                actor: Some("alice".into()),
                correlation_id: Some(Uuid::from_u128(2)),
                causation_id: None,
                traceparent: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
            },
        };
        assert_eq!(event_from_wire(event_to_wire(&event)).unwrap(), event);
        let mut bad = event_to_wire(&event);
        bad.metadata.as_mut().unwrap().causation_id = Some("nope".into());
        let error = event_from_wire(bad).unwrap_err().to_string();
        assert!(error.contains("causation_id"), "{error}");
        let mut bad = event_to_wire(&event);
        bad.data = "{not json".into();
        assert!(matches!(event_from_wire(bad), Err(Error::InvalidData { .. })));
        assert!(expected_from_wire("sometimes", 0).is_err());
        for e in [
            ExpectedVersion::Any,
            ExpectedVersion::NoStream,
            ExpectedVersion::StreamExists,
            ExpectedVersion::Exact(StreamVersion(5)),
        ] {
            let (k, v) = expected_to_wire(e);
            assert_eq!(expected_from_wire(&k, v).unwrap(), e);
        }
    }
}
