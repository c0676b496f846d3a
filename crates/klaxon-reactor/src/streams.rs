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

/// The incident whose stream `stream` is (its own, pages, notify or review
/// stream), or `None` for any other stream. Only the canonical names the
/// domain makes are recognised, so that `incident_of(&incident(id)) ==
/// Some(id)` and nothing else maps to `id`.
pub fn incident_of(stream: &StreamId) -> Option<IncidentId> {
    let name = stream.as_str();
    let (prefix, rest) = name.split_once('-')?;
    let id: IncidentId = rest.parse().ok()?;
    let canonical = match prefix {
        "incident" => incident(id),
        "pages" => pages(id),
        "notify" => notify(id),
        "review" => review(id),
        _ => return None,
    };
    (&canonical == stream).then_some(id)
}

/// Every stream of the incident, in the order above: what it takes to read
/// everything the log holds about it.
pub fn of_incident(id: IncidentId) -> [StreamId; 4] {
    [incident(id), pages(id), notify(id), review(id)]
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
