//! Every incident at once: the pure fold of the log's incident events into
//! each incident's current state, plus the indexes intake needs (open
//! incidents by dedup key, the last closed one of each dedup key, the
//! highest incident number). Intake, severity and the tests fold it.

use std::collections::{BTreeMap, HashMap};

use crate::ids::{DedupKey, IncidentId};
use crate::incident::{Incident, IncidentEvent, evolve};

/// Every incident as its events say it is. Deleting it and folding the same
/// events again, in log order, gives an equal value.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Incidents {
    by_number: BTreeMap<u64, Incident>,
    open_by_dedup_key: HashMap<DedupKey, IncidentId>,
    /// The last incident of each dedup key that stopped being open.
    closed_by_dedup_key: HashMap<DedupKey, IncidentId>,
}

impl Incidents {
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

    /// Takes an incident out of the projection, to hold only open work in
    /// memory: its state leaves, and so does its entry in the open-by-dedup-key
    /// index if it was open. The last closed incident of each dedup key is
    /// kept (an id), so [`Incidents::last_closed_with_dedup_key`] answers as
    /// before; [`Incidents::highest_number`] no longer counts it. Folding a
    /// later event of a removed incident needs [`Incidents::restore`] first.
    pub fn remove(&mut self, id: IncidentId) -> Option<Incident> {
        let incident = self.by_number.remove(&id.number())?;
        if let Some(key) = incident.dedup_key().filter(|_| incident.is_open()) {
            if self.open_by_dedup_key.get(key) == Some(&id) {
                self.open_by_dedup_key.remove(key);
            }
        }
        Some(incident)
    }

    /// Puts back an incident taken out by [`Incidents::remove`], as its
    /// events fold it (read from the log), so that its next event folds
    /// onto it. The dedup indexes are left as they are, except that an open
    /// incident holds its key again: a removed incident kept its place in
    /// the closed index.
    pub fn restore(&mut self, incident: Incident) {
        if let (true, Some(key)) = (incident.is_open(), incident.dedup_key()) {
            self.open_by_dedup_key.insert(key.clone(), incident.id());
        }
        self.by_number.insert(incident.id().number(), incident);
    }

    /// Folds one incident event in. Events must come in log order.
    pub fn apply(&mut self, event: &IncidentEvent) {
        let number = event.incident.number();
        let before = self.by_number.remove(&number);
        let old_key = before.as_ref().filter(|i| i.is_open()).and_then(|i| i.dedup_key().cloned());
        let Some(after) = evolve(before, event) else {
            return;
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
    }
}
