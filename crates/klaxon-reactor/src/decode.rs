//! Records back into domain events. A record of a family's kind that does
//! not decode is an error naming its position, never skipped: a projection
//! must not silently lose history. A family is known by its kinds' first
//! segments (`incident.`, `page.` and `slo.`, `notify.`, `review.`,
//! `oncall.`): a kind there that this version does not know (a new kind or
//! a new `.vN` written by a newer version) is such an error too, not a
//! record of nobody's.
//!
//! The services' folds take records as the bus shares them
//! ([`SharedRecord`]) and decode them with [`shared`], [`shared_incident`]
//! and [`shared_event`]: the decoded event is kept in the record's slot, so
//! on a [`klaxon_bus::Fanout`] (every service of a process following one
//! reader) each record is decoded once for all of them, and an
//! undecodable one is the same error for each. A record decodes only when
//! a fold asks for its family, as with [`incident`] and [`event`].

use klaxon_bus::SharedRecord;
use klaxon_domain::envelope::{Changes, Event};
use klaxon_domain::incident::{Incident, IncidentEvent, evolve};
use klaxon_domain::notifier::{NotifyChange, NotifyEvent};
use klaxon_domain::paging::{PageChange, PageEvent};
use klaxon_domain::review::{ReviewChange, ReviewEvent};
use klaxon_log::Record;

use crate::Error;

/// The prefix of every incident event kind: a record with it must decode.
const INCIDENT_KIND_PREFIX: &str = "incident.";

/// A record as the services see it: one of the four event families, or
/// something none of them reads.
#[derive(Debug)]
pub enum Decoded {
    /// `incident.*`, in the incident's own stream.
    Incident(IncidentEvent),
    /// A page event (`page.*`, `slo.breached.v1`) of a `pages-INC-n` stream.
    Page(PageEvent),
    /// A notify event of a `notify-INC-n` stream.
    Notify(NotifyEvent),
    /// A review event of a `review-INC-n` stream.
    Review(ReviewEvent),
    /// Anything else (checkpoints' neighbours, future families).
    Other,
}

impl Decoded {
    /// Decodes `record`. Each family is recognised by its kinds' first
    /// segments: an unknown kind there (`incident.*`, `page.*`, …) is an
    /// error, history this version cannot fold.
    pub fn of(record: &Record) -> Result<Decoded, Error> {
        if let Some(event) = incident(record)? {
            return Ok(Decoded::Incident(event));
        }
        if let Some(event) = event(record)? {
            return Ok(Decoded::Page(event));
        }
        if let Some(event) = event(record)? {
            return Ok(Decoded::Notify(event));
        }
        if let Some(event) = event(record)? {
            return Ok(Decoded::Review(event));
        }
        Ok(Decoded::Other)
    }
}

/// What a [`SharedRecord`]'s slot keeps: the record decoded, or why it
/// does not decode.
struct Decoding(Result<Decoded, String>);

/// `record` decoded ([`Decoded::of`]), at most once however many folds
/// ask (see the module).
pub fn shared(record: &SharedRecord) -> Result<&Decoded, Error> {
    let Decoding(decoded) = record.derived(|record| {
        Decoding(Decoded::of(record).map_err(|e| match e {
            Error::Undecodable { reason, .. } => reason,
            other => other.to_string(),
        }))
    });
    decoded.as_ref().map_err(|reason| Error::Undecodable { position: record.position, reason: reason.clone() })
}

/// The incident event in a shared record, or `None` for records of other
/// kinds (which are not decoded); see [`incident`].
pub fn shared_incident(record: &SharedRecord) -> Result<Option<&IncidentEvent>, Error> {
    if !record.kind.as_str().starts_with(INCIDENT_KIND_PREFIX) {
        return Ok(None);
    }
    match shared(record)? {
        Decoded::Incident(event) => Ok(Some(event)),
        other => unreachable!("an incident kind decodes as an incident event, not {other:?}"),
    }
}

/// An event family that [`Decoded`] holds (pages, notifications, reviews).
pub trait Family: Changes + 'static {
    /// The family's event in `decoded`, if it holds one.
    fn pick(decoded: &Decoded) -> Option<&Event<Self>>;
}

impl Family for PageChange {
    fn pick(decoded: &Decoded) -> Option<&PageEvent> {
        if let Decoded::Page(event) = decoded { Some(event) } else { None }
    }
}

impl Family for NotifyChange {
    fn pick(decoded: &Decoded) -> Option<&NotifyEvent> {
        if let Decoded::Notify(event) = decoded { Some(event) } else { None }
    }
}

impl Family for ReviewChange {
    fn pick(decoded: &Decoded) -> Option<&ReviewEvent> {
        if let Decoded::Review(event) = decoded { Some(event) } else { None }
    }
}

/// The event of family `C` in a shared record, or `None` when its kind is
/// not one of the family's (then it is not decoded); see [`event`].
pub fn shared_event<C: Family>(record: &SharedRecord) -> Result<Option<&Event<C>>, Error> {
    if !in_family(C::KINDS, record.kind.as_str()) {
        return Ok(None);
    }
    let decoded = shared(record)?;
    match C::pick(decoded) {
        Some(event) => Ok(Some(event)),
        None => unreachable!("a kind of {} decodes as one, not {decoded:?}", C::EVENT_NAME),
    }
}

/// The schedule event (`oncall.*`, in a `schedule-<name>` stream) in a
/// record, or `None` for records of other kinds.
pub fn roster(record: &Record) -> Result<Option<klaxon_domain::oncall::roster::RosterEvent>, Error> {
    use klaxon_domain::oncall::roster::{KINDS, RosterEvent};
    if !in_family(KINDS, record.kind.as_str()) {
        return Ok(None);
    }
    RosterEvent::from_json(record.kind.as_str(), record.data.as_str())
        .map(Some)
        .map_err(|e| Error::Undecodable { position: record.position, reason: e.to_string() })
}

/// The incident event in a record, or `None` for records of other kinds.
pub fn incident(record: &Record) -> Result<Option<IncidentEvent>, Error> {
    if !record.kind.as_str().starts_with(INCIDENT_KIND_PREFIX) {
        return Ok(None);
    }
    parse(record).map(Some)
}

/// The event of family `C` in a record, or `None` when its kind is not one
/// of the family's.
pub fn event<C: Changes>(record: &Record) -> Result<Option<Event<C>>, Error> {
    if !in_family(C::KINDS, record.kind.as_str()) {
        return Ok(None);
    }
    parse(record).map(Some)
}

/// Whether `kind` belongs to the family of `kinds`: one of them, or a kind
/// this version does not know under one of their first segments
/// (`page.acknowledged.v2` beside `page.acknowledged.v1`), which the
/// family's decoder then refuses.
pub fn in_family(kinds: &[&str], kind: &str) -> bool {
    let family = |k: &str| k.split_once('.').map(|(first, _)| first.len() + 1);
    kinds.contains(&kind) || kinds.iter().any(|k| family(k).is_some_and(|n| kind.starts_with(&k[..n])))
}

fn parse<C: Changes>(record: &Record) -> Result<Event<C>, Error> {
    Event::from_json(record.kind.as_str(), record.data.as_str())
        .map_err(|e| Error::Undecodable { position: record.position, reason: e.to_string() })
}

/// Folds an incident's own records (from `read_stream`) into its state.
pub fn fold_incident(records: &[Record]) -> Result<Option<Incident>, Error> {
    let mut state = None;
    for record in records {
        if let Some(event) = incident(record)? {
            state = evolve(state, &event);
        }
    }
    Ok(state)
}
