//! The incident projection: a pure fold of the log's incident events into
//! every incident's current state, plus the indexes intake needs (open
//! incidents by dedup key, the last closed one of each dedup key, the
//! highest incident number).

use std::collections::{BTreeMap, HashMap};

use klaxon_domain::ids::{DedupKey, IncidentId};
use klaxon_domain::incident::{Incident, IncidentEvent, evolve};
use klaxon_log::{Position, Record};

use crate::Error;

/// The prefix of every incident event kind.
const INCIDENT_KIND_PREFIX: &str = "incident.";

/// Every incident as the log says it is, up to [`Incidents::position`].
/// Deleting it and folding the log again from position 1 gives an equal value.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Incidents {
    by_number: BTreeMap<u64, Incident>,
    open_by_dedup_key: HashMap<DedupKey, IncidentId>,
    /// The last incident of each dedup key that stopped being open.
    closed_by_dedup_key: HashMap<DedupKey, IncidentId>,
    position: Position,
}

impl Incidents {
    /// The last log position folded in.
    pub fn position(&self) -> Position {
        self.position
    }

    /// One incident.
    pub fn get(&self, id: IncidentId) -> Option<&Incident> {
        self.by_number.get(&id.number())
    }

    /// The open incident holding this dedup key, if any.
    pub fn open_with_dedup_key(&self, key: &DedupKey) -> Option<IncidentId> {
        self.open_by_dedup_key.get(key).copied()
    }

    /// The last incident holding this dedup key that was resolved or closed
    /// (it may have been reopened since), if any.
    pub fn last_closed_with_dedup_key(&self, key: &DedupKey) -> Option<IncidentId> {
        self.closed_by_dedup_key.get(key).copied()
    }

    /// The highest incident number in use (0 when there is none).
    pub fn highest_number(&self) -> u64 {
        self.by_number.keys().next_back().copied().unwrap_or(0)
    }

    /// Incidents from the newest (highest number) down, starting below
    /// `below` when given.
    pub fn newest_first(&self, below: Option<u64>) -> impl Iterator<Item = &Incident> {
        self.by_number.range(..below.unwrap_or(u64::MAX)).rev().map(|(_, i)| i)
    }

    /// How many incidents there are.
    pub fn len(&self) -> usize {
        self.by_number.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.by_number.is_empty()
    }

    /// Folds one record in. Records must come in position order without gaps;
    /// records of other kinds only advance the position.
    pub fn apply(&mut self, record: &Record) -> Result<(), Error> {
        assert_eq!(record.position, self.position.next(), "the projection must see every position once, in order");
        self.position = record.position;
        let Some(event) = decode(record)? else { return Ok(()) };
        let number = event.incident.number();
        let before = self.by_number.remove(&number);
        let old_key = before.as_ref().filter(|i| i.is_open()).and_then(|i| i.dedup_key().cloned());
        let Some(after) = evolve(before, &event) else {
            return Ok(());
        };
        if let Some(key) = old_key {
            self.open_by_dedup_key.remove(&key);
            if !after.is_open() {
                self.closed_by_dedup_key.insert(key, after.id());
            }
        }
        if let (true, Some(key)) = (after.is_open(), after.dedup_key()) {
            self.open_by_dedup_key.insert(key.clone(), after.id());
        }
        self.by_number.insert(number, after);
        Ok(())
    }
}

/// The incident event in a record, or `None` for records of other kinds.
pub fn decode(record: &Record) -> Result<Option<IncidentEvent>, Error> {
    if !record.kind.as_str().starts_with(INCIDENT_KIND_PREFIX) {
        return Ok(None);
    }
    IncidentEvent::from_json(record.kind.as_str(), record.data.as_str())
        .map(Some)
        .map_err(|e| Error::UndecodableEvent { position: record.position, reason: e.to_string() })
}

/// Folds an incident's own records (from `read_stream`) into its state.
pub fn fold_stream(records: &[Record]) -> Result<Option<Incident>, Error> {
    let mut state = None;
    for record in records {
        if let Some(event) = decode(record)? {
            state = evolve(state, &event);
        }
    }
    Ok(state)
}
