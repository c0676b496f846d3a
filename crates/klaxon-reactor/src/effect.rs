//! Effects: what a service's decision asks the shell to do, as data.
//!
//! A decision returns [`Effect`]s; the shell carries them out in order:
//! every [`Append`] first, then every [`Deliver`] (each one: send its
//! messages, then append the record of their outcome that the service's
//! `recorded` builds from the receipts). The shell performs the IO, the
//! service only says what it wants.

use klaxon_domain::envelope::{Changes, Event};
use klaxon_domain::ids::{KLAXON_NAMESPACE, RequestKey, reaction_event_id};
use klaxon_domain::outbox::Outgoing;
use klaxon_log::{EventData, EventKind, ExpectedVersion, Metadata, NewEvent, Position, Record, StreamId};
use uuid::Uuid;

use crate::{Error, streams};

/// One thing a decision asks for. `T` is what the service records a
/// delivery's outcome with (see [`crate::Service::recorded`]).
#[derive(Debug)]
pub enum Effect<T> {
    /// Append events to a stream.
    Append(Append),
    /// Send messages, then record what came of them.
    Deliver(Deliver<T>),
}

/// The record that makes an incident's decision due: the latest record
/// folded that concerned the incident. Reactions derive their event ids
/// and trace context from it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Cause {
    /// Its event id.
    pub id: Uuid,
    /// Its position.
    pub position: Position,
    /// Its W3C trace context, if it had one.
    pub traceparent: Option<String>,
}

impl Cause {
    /// The cause that `record` is.
    pub fn of(record: &Record) -> Cause {
        Cause { id: record.id, position: record.position, traceparent: record.metadata.traceparent.clone() }
    }
}

/// How the events of an [`Append`] get their ids: from a cause (event `i`
/// is `reaction_event_id(cause, reaction, i)`), or from a client's request
/// key (event `i` is `key.event_id(i)`). The same decision on the same facts,
/// or the same request sent again, derives the same ids, so carrying it out
/// again (after a crash, a redelivery, a client's retry) writes nothing twice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ids(IdSource);

#[derive(Clone, Debug, PartialEq, Eq)]
enum IdSource {
    Reaction { cause: Uuid, reaction: &'static str },
    Request(RequestKey),
}

impl Ids {
    /// Ids derived from the event (or request) `cause`.
    pub fn caused_by(cause: Uuid, reaction: &'static str) -> Ids {
        Ids(IdSource::Reaction { cause, reaction })
    }

    /// Ids derived from the version `basis` of `stream` the decision was
    /// made at: the cause is UUIDv5 of `<stream>@<basis>`.
    pub fn at_version(stream: &StreamId, basis: u64, reaction: &'static str) -> Ids {
        let cause = Uuid::new_v5(&KLAXON_NAMESPACE, format!("{stream}@{basis}").as_bytes());
        Ids::caused_by(cause, reaction)
    }

    /// Ids derived from a client's request key (see [`RequestKey`]).
    pub fn requested(key: RequestKey) -> Ids {
        Ids(IdSource::Request(key))
    }

    /// The id of the `index`-th event.
    pub fn id(&self, index: usize) -> Uuid {
        let index = u32::try_from(index).unwrap_or(u32::MAX);
        match &self.0 {
            IdSource::Reaction { cause, reaction } => reaction_event_id(*cause, reaction, index),
            IdSource::Request(key) => key.event_id(index),
        }
    }
}

/// The span a piece of work runs in, and the trace context it continues.
/// The events the work appends carry the span's own context.
#[derive(Clone, Debug)]
pub struct Trace {
    /// A new span, made with `parent: None`.
    pub span: tracing::Span,
    /// The W3C trace context it continues, if any.
    pub parent: Option<String>,
}

impl Trace {
    /// `span` as a child of `parent`.
    pub fn new(span: tracing::Span, parent: Option<String>) -> Trace {
        Trace { span, parent }
    }

    /// No span of its own: the events carry `parent` as it is.
    pub fn continuing(parent: Option<String>) -> Trace {
        Trace { span: tracing::Span::none(), parent }
    }
}

/// One event of an [`Append`], as the log will store it (the id and the
/// trace context are added when it is carried out).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pending {
    /// The stable kind, such as `page.responder_paged.v1`.
    pub kind: &'static str,
    /// The event's JSON.
    pub data: serde_json::Value,
    /// Whose decision it records (`by`).
    pub actor: String,
    /// The incident's correlation id.
    pub correlation_id: Uuid,
}

/// Append these events to this stream, at this expected version, with ids
/// derived from a cause.
#[derive(Debug)]
pub struct Append {
    /// The stream.
    pub stream: StreamId,
    /// `Exact` claims the stream at the version decided on: someone else
    /// writing first makes the append a conflict, which the shell drops (the
    /// fold brings the other write and the incident is decided again).
    pub expected: ExpectedVersion,
    /// The events, in order.
    pub events: Vec<Pending>,
    /// How their ids are derived.
    pub ids: Ids,
    /// The record that caused them, stored as their causation id.
    pub causation: Option<Uuid>,
    /// The span to append in; without one, the enclosing work's (a
    /// delivery's record is appended in the delivery's span).
    pub trace: Option<Trace>,
}

impl Append {
    /// Appends domain `events` (of any family) to `stream`.
    pub fn new<C: Changes>(stream: StreamId, expected: ExpectedVersion, events: &[Event<C>], ids: Ids) -> Append {
        let events = events
            .iter()
            .map(|e| Pending {
                kind: e.kind(),
                data: e.to_json(),
                actor: e.by.to_string(),
                correlation_id: streams::correlation_id(e.incident),
            })
            .collect();
        Append { stream, expected, events, ids, causation: None, trace: None }
    }

    /// Records `cause` as the events' causation id.
    pub fn caused_by(mut self, cause: Uuid) -> Append {
        self.causation = Some(cause);
        self
    }

    /// Runs the append in `trace`'s span.
    pub fn traced(mut self, trace: Trace) -> Append {
        self.trace = Some(trace);
        self
    }

    /// The events as the log takes them, carrying `traceparent`.
    pub fn to_new_events(&self, traceparent: Option<&str>) -> Result<Vec<NewEvent>, Error> {
        self.events
            .iter()
            .enumerate()
            .map(|(i, e)| {
                Ok(NewEvent {
                    id: self.ids.id(i),
                    kind: EventKind::new(e.kind).expect("domain kinds are valid log kinds"),
                    data: EventData::from_value(&e.data)?,
                    metadata: Metadata {
                        actor: Some(e.actor.clone()),
                        correlation_id: Some(e.correlation_id),
                        causation_id: self.causation,
                        traceparent: traceparent.map(str::to_owned),
                    },
                })
            })
            .collect()
    }
}

/// Send these messages (in order, each through its channel), then append
/// the record of what came of them, which the service builds from the
/// receipts and `then`.
///
/// The steps stay separate in the shell (send, then record) so that a
/// claim can go first once replicas run side by side: an append only one
/// replica can win, after which only the winner sends.
#[derive(Debug)]
pub struct Deliver<T> {
    /// The messages.
    pub sends: Vec<Outgoing>,
    /// What the service records the outcome with.
    pub then: T,
    /// The span the delivery and its record run in.
    pub trace: Option<Trace>,
}
