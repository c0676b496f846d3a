//! The log's vocabulary: positions, versions, stream ids, event kinds, and the
//! records that come back from reads.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::Error;

/// Longest accepted stream id, in bytes.
pub const STREAM_ID_BYTES_MAX: usize = 128;
/// Longest accepted event kind, in bytes.
pub const KIND_BYTES_MAX: usize = 128;
/// Longest accepted actor, in bytes.
pub const ACTOR_BYTES_MAX: usize = 256;
/// Longest accepted checkpoint (consumer) name, in bytes.
pub const CONSUMER_NAME_BYTES_MAX: usize = 128;

/// A record's place in the whole log. Positions start at 1 and have no gaps;
/// `Position(0)` means "before the first record" (an empty log's head, or a
/// consumer that has applied nothing yet).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Position(pub u64);

impl Position {
    /// The position before the first record.
    pub const ZERO: Position = Position(0);

    /// The position right after this one.
    pub fn next(self) -> Position {
        Position(self.0 + 1)
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A record's place within its stream. Versions start at 1 and have no gaps
/// per stream; a stream at version `n` holds exactly `n` records.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct StreamVersion(pub u64);

impl fmt::Display for StreamVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// What an append expects of its stream before writing. A mismatch is
/// [`Error::WrongExpectedVersion`] and nothing is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExpectedVersion {
    /// Append whatever the stream holds.
    Any,
    /// The stream must not exist yet (used to create an incident exactly once).
    NoStream,
    /// The stream must hold at least one record.
    StreamExists,
    /// The stream must be exactly at this version (optimistic concurrency).
    Exact(StreamVersion),
}

impl ExpectedVersion {
    /// Whether a stream currently at `actual` (0 = absent) satisfies this expectation.
    pub fn admits(self, actual: StreamVersion) -> bool {
        match self {
            ExpectedVersion::Any => true,
            ExpectedVersion::NoStream => actual.0 == 0,
            ExpectedVersion::StreamExists => actual.0 > 0,
            ExpectedVersion::Exact(v) => v == actual,
        }
    }
}

impl fmt::Display for ExpectedVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExpectedVersion::Any => f.write_str("any version"),
            ExpectedVersion::NoStream => f.write_str("no stream"),
            ExpectedVersion::StreamExists => f.write_str("an existing stream"),
            ExpectedVersion::Exact(v) => write!(f, "version {v}"),
        }
    }
}

/// The name of a stream, such as `incident-INC-42`: 1 to
/// [`STREAM_ID_BYTES_MAX`] bytes of ASCII letters, digits and `-_.:@`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct StreamId(String);

impl StreamId {
    /// Checks the syntax; the error says what is wrong.
    pub fn new(id: impl Into<String>) -> Result<StreamId, Error> {
        let id = id.into();
        let reason = if id.is_empty() {
            Some("is empty")
        } else if id.len() > STREAM_ID_BYTES_MAX {
            Some("is longer than 128 bytes")
        } else if !id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:@".contains(&b)) {
            Some("may only hold ASCII letters, digits and -_.:@")
        } else {
            None
        };
        match reason {
            Some(reason) => Err(Error::InvalidStreamId { id, reason }),
            None => Ok(StreamId(id)),
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for StreamId {
    type Error = Error;
    fn try_from(s: String) -> Result<Self, Error> {
        StreamId::new(s)
    }
}

impl From<StreamId> for String {
    fn from(s: StreamId) -> String {
        s.0
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The stable, versioned name of an event's type, such as
/// `incident.declared.v1`: lowercase ASCII words separated by dots, ending in
/// a schema version `.v<N>`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct EventKind(String);

impl EventKind {
    /// Checks the syntax; the error says what is wrong.
    pub fn new(kind: impl Into<String>) -> Result<EventKind, Error> {
        let kind = kind.into();
        let reason = if kind.is_empty() {
            Some("is empty")
        } else if kind.len() > KIND_BYTES_MAX {
            Some("is longer than 128 bytes")
        } else if !kind.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'.') {
            Some("may only hold lowercase ASCII letters, digits, '_' and '.'")
        } else if !has_schema_version(&kind) {
            Some("must end in a schema version such as '.v1'")
        } else {
            None
        };
        match reason {
            Some(reason) => Err(Error::InvalidKind { kind, reason }),
            None => Ok(EventKind(kind)),
        }
    }

    /// The kind as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn has_schema_version(kind: &str) -> bool {
    match kind.rsplit_once(".v") {
        Some((name, version)) => {
            !name.is_empty()
                && !version.is_empty()
                && version.bytes().all(|b| b.is_ascii_digit())
                && !version.starts_with('0')
        }
        None => false,
    }
}

impl TryFrom<String> for EventKind {
    type Error = Error;
    fn try_from(s: String) -> Result<Self, Error> {
        EventKind::new(s)
    }
}

impl From<EventKind> for String {
    fn from(k: EventKind) -> String {
        k.0
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An event's data: JSON text, checked to be valid JSON when it enters the
/// log. Consumers decode it into their own types with [`EventData::parse`].
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct EventData(Box<str>);

impl EventData {
    /// Serializes a value as the event's data.
    pub fn from_value<T: Serialize + ?Sized>(value: &T) -> Result<EventData, Error> {
        serde_json::to_string(value)
            .map(|s| EventData(s.into_boxed_str()))
            .map_err(|e| Error::InvalidData { reason: e.to_string() })
    }

    /// Takes JSON text, checking that it is one valid JSON value.
    pub fn from_json(text: impl Into<String>) -> Result<EventData, Error> {
        let text = text.into();
        serde_json::from_str::<serde::de::IgnoredAny>(&text)
            .map_err(|e| Error::InvalidData { reason: e.to_string() })?;
        Ok(EventData(text.into_boxed_str()))
    }

    /// Text read back from the log: its checksum matched, and it was checked
    /// when it was written.
    pub(crate) fn from_trusted(text: String) -> EventData {
        EventData(text.into_boxed_str())
    }

    /// The JSON text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Decodes the data into `T`.
    pub fn parse<'a, T: Deserialize<'a>>(&'a self) -> serde_json::Result<T> {
        serde_json::from_str(&self.0)
    }
}

impl fmt::Debug for EventData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for EventData {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let raw: &serde_json::value::RawValue = serde_json::from_str(&self.0).map_err(serde::ser::Error::custom)?;
        raw.serialize(serializer)
    }
}

/// Who caused an event and what trace it belongs to. The log stores it
/// verbatim; it never decides by it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Metadata {
    /// The authenticated principal (or service) on whose behalf it was written.
    pub actor: Option<String>,
    /// Ties together everything done for one incoming request or incident.
    pub correlation_id: Option<Uuid>,
    /// The event (or request) that directly caused this one.
    pub causation_id: Option<Uuid>,
    /// The W3C trace context, `00-<trace id>-<span id>-<flags>`.
    pub traceparent: Option<String>,
}

impl Metadata {
    pub(crate) fn validate(&self) -> Result<(), Error> {
        if let Some(actor) = &self.actor {
            if actor.is_empty() || actor.len() > ACTOR_BYTES_MAX || actor.chars().any(char::is_control) {
                return Err(Error::InvalidMetadata {
                    field: "actor",
                    reason: "must be 1 to 256 bytes without control characters",
                });
            }
        }
        if let Some(tp) = &self.traceparent {
            if !is_traceparent(tp) {
                return Err(Error::InvalidMetadata {
                    field: "traceparent",
                    reason: "must be a W3C traceparent: 00-<32 hex>-<16 hex>-<2 hex>",
                });
            }
        }
        Ok(())
    }
}

/// Whether `s` is a W3C `traceparent` the log accepts in metadata:
/// `00-<32 hex>-<16 hex>-<2 hex>`, lowercase, ids not all zero.
pub fn is_traceparent(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    let hex = |p: &str, n: usize| p.len() == n && p.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    parts.len() == 4
        && hex(parts[0], 2)
        && parts[0] != "ff"
        && hex(parts[1], 32)
        && parts[1].bytes().any(|b| b != b'0')
        && hex(parts[2], 16)
        && parts[2].bytes().any(|b| b != b'0')
        && hex(parts[3], 2)
}

/// An event to append. Its `id` makes appends idempotent: appending an id
/// that is already in the log writes nothing and returns the original place.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewEvent {
    /// Unique id; reactions derive it deterministically from their cause.
    pub id: Uuid,
    /// Stable, versioned type name.
    pub kind: EventKind,
    /// The payload.
    pub data: EventData,
    /// Actor, correlation, causation, trace.
    pub metadata: Metadata,
}

/// One record of the log, exactly as it was appended, with the place the log
/// gave it. Every read verifies its checksum first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Record {
    /// Global position, gapless from 1.
    pub position: Position,
    /// The stream it belongs to.
    pub stream: StreamId,
    /// Its version within the stream, gapless from 1.
    pub version: StreamVersion,
    /// The event id given at append.
    pub id: Uuid,
    /// Stable, versioned type name.
    pub kind: EventKind,
    /// When the log wrote it (never earlier than the record before it).
    pub recorded_at: DateTime<Utc>,
    /// The payload.
    pub data: EventData,
    /// Actor, correlation, causation, trace.
    pub metadata: Metadata,
    /// CRC-32C-style checksum (crc32fast, IEEE polynomial) of the stored bytes.
    pub checksum: u32,
}

impl Record {
    /// The record in the log's stored encoding, checksum included: what the
    /// log server sends and the relay publishes, so a record is verified by
    /// the same checksum from the disk to every consumer.
    pub fn to_bytes(&self) -> Vec<u8> {
        crate::codec::encode(&crate::codec::RecordRef {
            position: self.position,
            version: self.version,
            id: self.id,
            recorded_at_micros: self.recorded_at.timestamp_micros(),
            stream: self.stream.as_str(),
            kind: self.kind.as_str(),
            metadata: &self.metadata,
            data: self.data.as_str(),
        })
    }

    /// Decodes and verifies bytes from [`Record::to_bytes`] that claim to be
    /// the record at `position`. A bad checksum, a truncation or another
    /// position is [`crate::Error::Corrupt`].
    pub fn from_bytes(position: Position, bytes: &[u8]) -> Result<Record, crate::Error> {
        crate::codec::decode(position, bytes)
    }
}

/// What an append did: where its events are, and the stream's next version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Appended {
    /// Position of the first event of the append.
    pub first: Position,
    /// Position of the last event of the append.
    pub last: Position,
    /// The version the stream's next event will get (last version + 1).
    pub next_version: StreamVersion,
    /// True when every event was already in the log and nothing was written.
    pub deduplicated: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_id_syntax() {
        let cases: &[(&str, bool)] = &[
            ("incident-INC-42", true),
            ("a", true),
            ("svc:paging@x_1.2", true),
            ("", false),
            ("has space", false),
            ("nul\0", false),
            ("ü", false),
            (&"x".repeat(128), true),
            (&"x".repeat(129), false),
        ];
        for (id, ok) in cases {
            assert_eq!(StreamId::new(*id).is_ok(), *ok, "{id:?}");
        }
    }

    #[test]
    fn kind_syntax() {
        let cases: &[(&str, bool)] = &[
            ("incident.declared.v1", true),
            ("page.acknowledged.v12", true),
            ("incident.declared", false),
            ("incident.declared.v", false),
            ("incident.declared.v0", false),
            ("Incident.declared.v1", false),
            (".v1", false),
            ("", false),
        ];
        for (kind, ok) in cases {
            assert_eq!(EventKind::new(*kind).is_ok(), *ok, "{kind:?}");
        }
    }

    #[test]
    fn traceparent_syntax() {
        let good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert!(is_traceparent(good));
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
        ] {
            assert!(!is_traceparent(bad), "{bad:?}");
        }
    }

    #[test]
    fn expected_version_admits() {
        use ExpectedVersion::*;
        let v = StreamVersion;
        let cases = [
            (Any, 0, true),
            (Any, 3, true),
            (NoStream, 0, true),
            (NoStream, 1, false),
            (StreamExists, 0, false),
            (StreamExists, 2, true),
            (Exact(v(2)), 2, true),
            (Exact(v(2)), 3, false),
            (Exact(v(0)), 0, true),
        ];
        for (e, actual, ok) in cases {
            assert_eq!(e.admits(v(actual)), ok, "{e:?} at {actual}");
        }
    }
}
