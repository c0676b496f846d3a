//! What intake keeps of the incidents it no longer holds in memory, and
//! when it lets a held one go.
//!
//! An incident that is Resolved or Closed and whose last event is older than
//! the eviction time (`[memory] evict_closed_after`) leaves the projection;
//! what stays is one [`Evicted`] row (status, severity, service: what
//! `ListIncidents` filters on), about 40 bytes with its map entry, so that
//! memory grows with open work plus a few bytes per closed incident, not
//! with history. Everything else about it is read from the log on demand
//! (its stream, folded), and a new event of it puts it back first.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, TimeDelta, Utc};
use klaxon_domain::ids::{ServiceName, Severity};
use klaxon_domain::incident::{Incident, Status};
use serde::{Deserialize, Serialize};

/// An incident no longer held: what list filters need, nothing else.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Evicted {
    pub(crate) status: Status,
    pub(crate) severity: Option<Severity>,
    /// Index into [`Memory::services`].
    pub(crate) service: Option<u32>,
}

/// Intake's bookkeeping of eviction, saved in its snapshot.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct Memory {
    /// The evicted incidents, by number.
    evicted: BTreeMap<u64, Evicted>,
    /// Each service name of an evicted incident, once.
    services: Vec<ServiceName>,
    /// `services` by name (rebuilt after a resume).
    #[serde(skip)]
    service_index: HashMap<ServiceName, u32>,
    /// Held incidents that are Resolved or Closed, with the time of their
    /// last event: the candidates for eviction.
    retiring: HashMap<u64, DateTime<Utc>>,
    /// The highest incident number folded, held or evicted.
    highest: u64,
}

impl Memory {
    /// Notes that `incident`'s event at `at` was folded; with eviction on
    /// (`after`), returns when it may be evicted, if it is now a candidate.
    pub(crate) fn folded(
        &mut self,
        incident: &Incident,
        at: DateTime<Utc>,
        after: Option<TimeDelta>,
    ) -> Option<DateTime<Utc>> {
        let number = incident.id().number();
        self.highest = self.highest.max(number);
        let after = after?;
        if incident.is_open() {
            self.retiring.remove(&number);
            None
        } else {
            self.retiring.insert(number, at);
            Some(at.checked_add_signed(after).unwrap_or(DateTime::<Utc>::MAX_UTC))
        }
    }

    /// The candidates whose last event is at least `after` before `now`.
    pub(crate) fn due(&self, now: DateTime<Utc>, after: TimeDelta) -> Vec<u64> {
        let mut due: Vec<u64> = self
            .retiring
            .iter()
            .filter(|(_, at)| at.checked_add_signed(after).is_some_and(|due| due <= now))
            .map(|(n, _)| *n)
            .collect();
        due.sort_unstable();
        due
    }

    /// The earliest time a candidate may be evicted.
    pub(crate) fn next_due(&self, after: TimeDelta) -> Option<DateTime<Utc>> {
        self.retiring.values().min().map(|at| at.checked_add_signed(after).unwrap_or(DateTime::<Utc>::MAX_UTC))
    }

    /// Records that `incident` left the projection.
    pub(crate) fn evict(&mut self, incident: &Incident) {
        let number = incident.id().number();
        self.retiring.remove(&number);
        let service = incident.service().map(|s| self.intern(s));
        self.evicted.insert(number, Evicted { status: incident.status(), severity: incident.severity(), service });
    }

    /// Records that incident `number` is held again.
    pub(crate) fn restored(&mut self, number: u64) {
        self.evicted.remove(&number);
    }

    /// Whether incident `number` was evicted (and not put back).
    pub(crate) fn is_evicted(&self, number: u64) -> bool {
        self.evicted.contains_key(&number)
    }

    /// The evicted incidents from the highest number down, below `below`.
    pub(crate) fn newest_first(&self, below: Option<u64>) -> impl Iterator<Item = (u64, &Evicted)> {
        self.evicted.range(..below.unwrap_or(u64::MAX)).rev().map(|(n, e)| (*n, e))
    }

    /// The index of a service name among the evicted incidents' services,
    /// if one has it.
    pub(crate) fn service(&self, name: &ServiceName) -> Option<u32> {
        if self.service_index.len() == self.services.len() {
            self.service_index.get(name).copied()
        } else {
            self.services.iter().position(|s| s == name).map(|i| i as u32)
        }
    }

    /// The highest incident number folded.
    pub(crate) fn highest(&self) -> u64 {
        self.highest
    }

    /// How many incidents are evicted.
    pub(crate) fn evicted_count(&self) -> usize {
        self.evicted.len()
    }

    fn intern(&mut self, name: &ServiceName) -> u32 {
        if self.service_index.len() != self.services.len() {
            self.service_index = self.services.iter().enumerate().map(|(i, s)| (s.clone(), i as u32)).collect();
        }
        if let Some(index) = self.service_index.get(name) {
            return *index;
        }
        let index = u32::try_from(self.services.len()).expect("fewer than 2^32 services");
        self.services.push(name.clone());
        self.service_index.insert(name.clone(), index);
        index
    }
}
