use uuid::Uuid;

use crate::{ExpectedVersion, Position, StreamId, StreamVersion};

/// Everything that can go wrong with the log. Every variant that answers an
/// append says the append wrote nothing, except [`Error::Storage`] and
/// [`Error::Failed`] (the disk failed; see there).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The stream was not at the version the append expected.
    #[error("stream {stream}: expected {expected}, but the stream is at version {actual}")]
    WrongExpectedVersion {
        /// The stream appended to.
        stream: StreamId,
        /// What the append expected.
        expected: ExpectedVersion,
        /// The stream's version when the append was applied (0 = no stream).
        actual: StreamVersion,
    },
    /// An append without events.
    #[error("stream {stream}: an append needs at least one event")]
    EmptyAppend {
        /// The stream appended to.
        stream: StreamId,
    },
    /// More events in one append than the log takes.
    #[error("an append holds {count} events; at most {max} are allowed")]
    TooManyEvents {
        /// Events in the append.
        count: usize,
        /// The configured maximum.
        max: usize,
    },
    /// One event is larger than the log takes.
    #[error("event {index} of the append is {size} bytes encoded; at most {max} are allowed")]
    EventTooLarge {
        /// Index of the event within the append (from 0).
        index: usize,
        /// Its encoded size.
        size: usize,
        /// The configured maximum.
        max: usize,
    },
    /// A stream id that does not follow the syntax.
    #[error("stream id {id:?} {reason}")]
    InvalidStreamId {
        /// The offending id.
        id: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// An event kind that does not follow the syntax.
    #[error("event kind {kind:?} {reason}")]
    InvalidKind {
        /// The offending kind.
        kind: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Event data that is not valid JSON.
    #[error("event data is not valid JSON: {reason}")]
    InvalidData {
        /// The JSON parser's message.
        reason: String,
    },
    /// A metadata field that is not acceptable.
    #[error("metadata field {field} {reason}")]
    InvalidMetadata {
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A consumer (checkpoint) name that does not follow the stream id syntax.
    #[error("consumer name {name:?} must be 1 to 128 bytes of ASCII letters, digits and -_.:@")]
    InvalidConsumerName {
        /// The offending name.
        name: String,
    },
    /// The same event id twice in one append.
    #[error("event id {id} appears more than once in the append")]
    DuplicateIdInAppend {
        /// The repeated id.
        id: Uuid,
    },
    /// Some, but not all, of the append's event ids are already in the log:
    /// this is not a retry of an earlier append, so it is refused whole.
    #[error(
        "{present} of the append's {count} event ids are already in the log (first: {first}); a retry must repeat the original append exactly"
    )]
    PartialDuplicate {
        /// How many of the ids are present.
        present: usize,
        /// Events in the append.
        count: usize,
        /// The first present id.
        first: Uuid,
    },
    /// A retried event id that the log holds in another stream.
    #[error("event id {id} is already in stream {original}, not in {requested}")]
    IdInOtherStream {
        /// The id.
        id: Uuid,
        /// Where the log holds it.
        original: StreamId,
        /// Where the append wanted it.
        requested: StreamId,
    },
    /// A stored record failed its checksum or does not decode: the log is
    /// damaged at this position. It is reported, never skipped.
    #[error("the log is corrupt at position {position}: {reason}")]
    Corrupt {
        /// Where.
        position: Position,
        /// What was found.
        reason: String,
    },
    /// The folder holds a log of another format, or something else entirely.
    #[error("{path} does not hold a log this version can open: {reason}")]
    IncompatibleFormat {
        /// The folder.
        path: String,
        /// What was found.
        reason: String,
    },
    /// Another process (or another open `Log` in this one) holds the folder.
    #[error("{path} is in use by another process (its lock is held)")]
    Locked {
        /// The folder.
        path: String,
    },
    /// sled reported an error.
    #[error("storage error: {0}")]
    Storage(#[from] sled::Error),
    /// The operating system reported an error (for example from fdatasync).
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// A write or sync failed earlier; whether that group of appends reached
    /// the disk is unknown, so the log refuses writes until it is reopened,
    /// which recovers to what is on disk.
    #[error("the log refuses writes after an earlier storage failure ({reason}); reopen it")]
    Failed {
        /// The first failure.
        reason: String,
    },
    /// The log was closed.
    #[error("the log is closed")]
    Closed,
    /// A remote log (the log server) refused the request for a reason that
    /// has no variant of its own here; nothing was written.
    #[error("the log server refused the request: {message}")]
    Rejected {
        /// The server's message.
        message: String,
    },
    /// A remote log could not be reached or failed. An append that got this
    /// may or may not have been written: retry it with the same event ids,
    /// which the log deduplicates.
    #[error("the log server is unavailable: {reason}")]
    Unavailable {
        /// What the transport or the server said.
        reason: String,
    },
}

impl Error {
    /// True for errors caused by the request (bad input, version conflict,
    /// limits), after which the log is healthy and wrote nothing.
    pub fn is_request_error(&self) -> bool {
        !matches!(
            self,
            Error::Corrupt { .. }
                | Error::IncompatibleFormat { .. }
                | Error::Locked { .. }
                | Error::Storage(_)
                | Error::Io(_)
                | Error::Failed { .. }
                | Error::Closed
                | Error::Unavailable { .. }
        )
    }
}

impl klaxon_domain::class::Classify for Error {
    /// Request errors are the caller's (invalid argument, too large, already
    /// exists, conflict); a closed or unreachable log is unavailable (retry);
    /// a damaged or failed disk is internal.
    fn class(&self) -> klaxon_domain::class::Class {
        use klaxon_domain::class::Class;
        match self {
            Error::WrongExpectedVersion { .. } => Class::Conflict,
            Error::EmptyAppend { .. }
            | Error::InvalidStreamId { .. }
            | Error::InvalidKind { .. }
            | Error::InvalidData { .. }
            | Error::InvalidMetadata { .. }
            | Error::InvalidConsumerName { .. }
            | Error::DuplicateIdInAppend { .. }
            | Error::Rejected { .. } => Class::InvalidArgument,
            Error::TooManyEvents { .. } | Error::EventTooLarge { .. } => Class::TooLarge,
            Error::PartialDuplicate { .. } | Error::IdInOtherStream { .. } => Class::AlreadyExists,
            Error::Closed | Error::Unavailable { .. } => Class::Unavailable,
            Error::Corrupt { .. }
            | Error::IncompatibleFormat { .. }
            | Error::Locked { .. }
            | Error::Storage(_)
            | Error::Io(_)
            | Error::Failed { .. } => Class::Internal,
        }
    }

    /// The stream's version, for a conflict.
    fn current_version(&self) -> Option<u64> {
        match self {
            Error::WrongExpectedVersion { actual, .. } => Some(actual.0),
            _ => None,
        }
    }
}
