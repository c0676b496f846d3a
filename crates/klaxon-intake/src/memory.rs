//! What intake keeps of the incidents it no longer holds in memory, and
//! when it lets a held one go.
//!
//! An incident that is Resolved or Closed and whose last event is older than
//! the eviction time (`[memory] evict_closed_after`) leaves the projection;
//! what stays is one [`Evicted`] row (status, severity, service: what
//! `ListIncidents` filters on), on disk in the rows table
//! (`klaxon_reactor::table`: 11 bytes a slot, by incident number, beside
//! the snapshot), so that memory grows with open work, not with history:
//! the memory keeps a count of the rows, the table's epoch and the
//! interned service names. Everything else about an evicted incident is
//! read from the log on demand (its stream, folded), and a new event of
//! it puts it back first.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use klaxon_domain::ids::{ServiceName, Severity};
use klaxon_domain::incident::{Incident, Status};
use klaxon_reactor::{Row, Table};
use serde::{Deserialize, Serialize};

/// An incident no longer held: what list filters need, nothing else.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Evicted {
    pub(crate) status: Status,
    pub(crate) severity: Option<Severity>,
    /// Index into [`Memory::services`].
    pub(crate) service: Option<u32>,
}

const STATUSES: [Status; 5] = [Status::Reported, Status::Declared, Status::Mitigated, Status::Resolved, Status::Closed];

/// In the table: the status (its index in [`STATUSES`]), the severity (0:
/// none, then 1 to 4), the service plus one (0: none), little-endian.
impl Row for Evicted {
    const LEN: usize = 6;
    const KIND: [u8; 8] = *b"intake-1";

    fn encode(&self, out: &mut [u8]) {
        out[0] = STATUSES.iter().position(|s| *s == self.status).expect("every status is listed") as u8;
        out[1] = self.severity.map_or(0, |s| 1 + Severity::ALL.iter().position(|a| *a == s).unwrap_or(0) as u8);
        out[2..6].copy_from_slice(&self.service.map_or(0, |n| n + 1).to_le_bytes());
    }

    fn decode(bytes: &[u8]) -> Option<Evicted> {
        let status = *STATUSES.get(usize::from(*bytes.first()?))?;
        let severity = match *bytes.get(1)? {
            0 => None,
            n => Some(*Severity::ALL.get(usize::from(n) - 1)?),
        };
        let service = u32::from_le_bytes(bytes.get(2..6)?.try_into().ok()?).checked_sub(1);
        Some(Evicted { status, severity, service })
    }
}

/// Intake's bookkeeping of eviction, saved in its snapshot.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct Memory {
    /// How many incidents are evicted (rows in the table).
    count: u64,
    /// The epoch of the table the rows are in, once one was written (a
    /// snapshot goes only with that table).
    epoch: Option<u64>,
    /// The rows table (set when the intake runs).
    #[serde(skip)]
    table: Option<Arc<Table<Evicted>>>,
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

    /// Takes the rows table (at start): a resumed memory goes with it when
    /// it was saved with the table's epoch, or has no row; returns `false`
    /// otherwise (the projection must be rebuilt). A fresh memory (a
    /// rebuild) empties the table.
    pub(crate) fn open(&mut self, table: Arc<Table<Evicted>>, resumed: bool) -> std::io::Result<bool> {
        if resumed && self.count > 0 {
            if self.epoch != Some(table.epoch()) {
                return Ok(false);
            }
        } else {
            table.reset()?;
            (self.count, self.epoch) = (0, None);
        }
        self.table = Some(table);
        Ok(true)
    }

    /// The rows table, once the intake runs.
    pub(crate) fn table(&self) -> Option<&Arc<Table<Evicted>>> {
        self.table.as_ref()
    }

    /// Records that `incident` left the projection: its row is written to
    /// the table. On an error nothing changed (it stays held).
    pub(crate) fn evict(&mut self, incident: &Incident) -> std::io::Result<()> {
        let number = incident.id().number();
        let Some(table) = self.table.clone() else {
            return Err(std::io::Error::other("no rows table: the intake does not run"));
        };
        let service = incident.service().map(|s| self.intern(s));
        // Not a candidate any more either way: on an error it stays held
        // until its next event (no retry loop on a failing disk).
        self.retiring.remove(&number);
        table.put(number, &Evicted { status: incident.status(), severity: incident.severity(), service })?;
        self.count += 1;
        self.epoch = Some(table.epoch());
        Ok(())
    }

    /// Records that incident `number` is held again: its slot is emptied
    /// (were that to fail, the row would still never be read: a held
    /// incident's slot is passed over, and written whole when it leaves
    /// again).
    pub(crate) fn restored(&mut self, number: u64) {
        self.count = self.count.saturating_sub(1);
        if let Some(Err(e)) = self.table.as_ref().map(|t| t.clear(number)) {
            tracing::warn!(service = "intake", number, error = %e, "evicted row not cleared");
        }
    }

    /// Whether incident `number`, which the projection does not hold, was
    /// evicted: its slot in the table holds a row.
    pub(crate) fn is_evicted(&self, number: u64) -> Result<bool, klaxon_reactor::Error> {
        match &self.table {
            Some(table) if self.count > 0 => Ok(table.get(number)?.is_some()),
            _ => Ok(false),
        }
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
        usize::try_from(self.count).unwrap_or(usize::MAX)
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
