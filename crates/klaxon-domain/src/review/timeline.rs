//! An incident's history read back from the log: the timeline of its
//! incident, page and review events, and its state as of a past position or
//! time.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::DecodeError;
use crate::ids::{ActorId, IncidentId};
use crate::incident::{self, Incident, IncidentEvent, evolve};
use crate::paging::{self, PageEvent};
use crate::review::{self as review_mod, ReviewEvent};

#[cfg(test)]
mod tests;

/// Which stream, and so which service, an event comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// The incident's own stream (`incident-INC-<n>`).
    Incident,
    /// The paging service's stream (`pages-INC-<n>`).
    Page,
    /// The review stream (`review-INC-<n>`).
    Review,
}

impl Source {
    /// The name used in JSON and tables: `incident`, `page` or `review`.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Incident => "incident",
            Source::Page => "page",
            Source::Review => "review",
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Any event about one incident, whichever stream holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnyEvent {
    /// An event of the incident's own stream.
    Incident(IncidentEvent),
    /// An event of the incident's page stream.
    Page(PageEvent),
    /// An event of the incident's review stream.
    Review(ReviewEvent),
}

impl AnyEvent {
    /// Decodes a stored record by its kind: one of [`incident::KINDS`],
    /// [`paging::KINDS`] or [`review_mod::KINDS`]. Any other kind is
    /// [`DecodeError::UnknownKind`].
    pub fn decode(kind: &str, data: &str) -> Result<AnyEvent, DecodeError> {
        if incident::KINDS.contains(&kind) {
            IncidentEvent::from_json(kind, data).map(AnyEvent::Incident)
        } else if paging::KINDS.contains(&kind) {
            PageEvent::from_json(kind, data).map(AnyEvent::Page)
        } else if review_mod::KINDS.contains(&kind) {
            ReviewEvent::from_json(kind, data).map(AnyEvent::Review)
        } else {
            Err(DecodeError::UnknownKind { kind: kind.to_owned() })
        }
    }

    /// The stream the event belongs to.
    pub fn source(&self) -> Source {
        match self {
            AnyEvent::Incident(_) => Source::Incident,
            AnyEvent::Page(_) => Source::Page,
            AnyEvent::Review(_) => Source::Review,
        }
    }

    /// The incident the event is about.
    pub fn incident(&self) -> IncidentId {
        match self {
            AnyEvent::Incident(e) => e.incident,
            AnyEvent::Page(e) => e.incident,
            AnyEvent::Review(e) => e.incident,
        }
    }

    /// When it happened.
    pub fn at(&self) -> DateTime<Utc> {
        match self {
            AnyEvent::Incident(e) => e.at,
            AnyEvent::Page(e) => e.at,
            AnyEvent::Review(e) => e.at,
        }
    }

    /// Who did it.
    pub fn by(&self) -> &ActorId {
        match self {
            AnyEvent::Incident(e) => &e.by,
            AnyEvent::Page(e) => &e.by,
            AnyEvent::Review(e) => &e.by,
        }
    }

    /// Its stable persisted kind.
    pub fn kind(&self) -> &'static str {
        match self {
            AnyEvent::Incident(e) => e.kind(),
            AnyEvent::Page(e) => e.kind(),
            AnyEvent::Review(e) => e.kind(),
        }
    }

    /// Its one-sentence summary.
    pub fn summary(&self) -> String {
        match self {
            AnyEvent::Incident(e) => e.summary(),
            AnyEvent::Page(e) => e.summary(),
            AnyEvent::Review(e) => e.summary(),
        }
    }
}

/// One line of an incident's timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TimelineEntry {
    /// The record's global log position, which orders the timeline.
    pub position: u64,
    /// When it happened (the event's `at`, UTC).
    pub at: DateTime<Utc>,
    /// Who did it.
    pub by: ActorId,
    /// The event's persisted kind, such as `incident.declared.v1`.
    pub kind: &'static str,
    /// One readable sentence.
    pub summary: String,
    /// Which stream it comes from.
    pub source: Source,
}

/// Sorts `(position, kind, data)` records by position.
fn sorted<'a>(records: impl IntoIterator<Item = (u64, &'a str, &'a str)>) -> Vec<(u64, &'a str, &'a str)> {
    let mut records: Vec<_> = records.into_iter().collect();
    records.sort_by_key(|(position, _, _)| *position);
    records
}

/// The timeline of one incident from its stored records: `(position, kind,
/// data)` triples of its incident, page and review streams, as read from the
/// log.
///
/// Entries come in log order (by position; the records may be passed in any
/// order, for example stream by stream). A record that cannot be decoded
/// fails the whole timeline: a gap in an audit trail must be noticed, never
/// skipped. The caller passes one incident's records only.
pub fn timeline<'a>(
    records: impl IntoIterator<Item = (u64, &'a str, &'a str)>,
) -> Result<Vec<TimelineEntry>, DecodeError> {
    sorted(records)
        .into_iter()
        .map(|(position, kind, data)| {
            let event = AnyEvent::decode(kind, data)?;
            Ok(TimelineEntry {
                position,
                at: event.at(),
                by: event.by().clone(),
                kind: event.kind(),
                summary: event.summary(),
                source: event.source(),
            })
        })
        .collect()
}

/// The entries of [`timeline`] that were known at `moment`: those with
/// `position <= P`, or those with `at <= T`.
///
/// Unlike [`as_of`], a time cut-off is a plain filter here: entries are
/// independent lines, so one stamped late by a skewed clock does not hide
/// the ones after it.
pub fn timeline_as_of<'a>(
    records: impl IntoIterator<Item = (u64, &'a str, &'a str)>,
    moment: IncidentAsOf,
) -> Result<Vec<TimelineEntry>, DecodeError> {
    let mut entries = timeline(records)?;
    entries.retain(|e| match moment {
        IncidentAsOf::Position(last) => e.position <= last,
        IncidentAsOf::Time(until) => e.at <= until,
    });
    Ok(entries)
}

/// A moment in an incident's past: what the log held then.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncidentAsOf {
    /// Just after the record at this global log position was appended:
    /// every record with `position <= P`.
    Position(u64),
    /// At this instant, by event time: the incident's records in log order
    /// up to the first one stamped after it (`at > T`). Events are stamped
    /// when decided, so this is every record with `at <= T`; should clocks
    /// ever disagree and a later record carry an earlier time, the fold still
    /// stops at the first later one, so the state is always one the incident
    /// really passed through.
    Time(DateTime<Utc>),
}

/// The incident's state as it was known at `moment`: the fold by
/// [`evolve`] of its incident records up to then (see [`IncidentAsOf`]).
///
/// `records` are the incident's `(position, kind, data)` triples, as for
/// [`timeline`]; page and review records may be included and are skipped
/// without being decoded. Returns `None` when the incident had not been
/// reported yet at `moment`.
pub fn as_of<'a>(
    records: impl IntoIterator<Item = (u64, &'a str, &'a str)>,
    moment: IncidentAsOf,
) -> Result<Option<Incident>, DecodeError> {
    let mut state = None;
    for (position, kind, data) in sorted(records) {
        if paging::KINDS.contains(&kind) || review_mod::KINDS.contains(&kind) {
            continue;
        }
        if matches!(moment, IncidentAsOf::Position(last) if position > last) {
            break;
        }
        let event = IncidentEvent::from_json(kind, data)?;
        if matches!(moment, IncidentAsOf::Time(until) if event.at > until) {
            break;
        }
        state = evolve(state, &event);
    }
    Ok(state)
}

/// The incident's state just after the record at `position` was appended;
/// [`as_of`] with [`IncidentAsOf::Position`].
pub fn as_of_position<'a>(
    records: impl IntoIterator<Item = (u64, &'a str, &'a str)>,
    position: u64,
) -> Result<Option<Incident>, DecodeError> {
    as_of(records, IncidentAsOf::Position(position))
}

/// The incident's state at the instant `at`, by event time; [`as_of`] with
/// [`IncidentAsOf::Time`].
pub fn as_of_time<'a>(
    records: impl IntoIterator<Item = (u64, &'a str, &'a str)>,
    at: DateTime<Utc>,
) -> Result<Option<Incident>, DecodeError> {
    as_of(records, IncidentAsOf::Time(at))
}
