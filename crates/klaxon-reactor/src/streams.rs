//! The log streams of an incident, as the log names them. The names are the
//! domain's (`incident-INC-n`, `pages-INC-n`, `notify-INC-n`,
//! `review-INC-n`); this module makes them [`StreamId`]s, and derives the
//! correlation id every record about an incident carries.

use klaxon_domain::ids::{IncidentId, KLAXON_NAMESPACE};
use klaxon_log::StreamId;
use uuid::Uuid;

/// A stream name the domain made, as a log stream id. The domain's names
/// are always valid ids.
pub fn stream_id(name: String) -> StreamId {
    StreamId::new(name).expect("the domain's stream names are valid stream ids")
}

/// The incident's own stream, such as `incident-INC-42`.
pub fn incident(id: IncidentId) -> StreamId {
    stream_id(id.stream())
}

/// The incident's page stream, such as `pages-INC-42`.
pub fn pages(id: IncidentId) -> StreamId {
    stream_id(klaxon_domain::paging::stream(id))
}

/// The incident's notify stream, such as `notify-INC-42`.
pub fn notify(id: IncidentId) -> StreamId {
    stream_id(klaxon_domain::notifier::stream(id))
}

/// The incident's review stream, such as `review-INC-42`.
pub fn review(id: IncidentId) -> StreamId {
    stream_id(klaxon_domain::review::stream(id))
}

/// A schedule's stream of overrides and swaps, such as
/// `schedule-payments-primary`.
pub fn schedule(name: &str) -> StreamId {
    stream_id(klaxon_domain::oncall::roster::stream(name))
}

/// The correlation id of every record about the incident: UUIDv5 of its
/// own stream's name, so that an audit can gather them.
pub fn correlation_id(id: IncidentId) -> Uuid {
    Uuid::new_v5(&KLAXON_NAMESPACE, id.stream().as_bytes())
}
