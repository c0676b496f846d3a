//! One queue: the open incidents ordered by what needs attention first.
//!
//! A manager handling several escalations at once asks "what do I look at
//! now?". The answer is a pure function of each incident's facts
//! ([`Facts`]), its service levels ([`Slo`]) and the time:
//!
//! 1. **Unowned Sev-1s** first: a Sev-1 without a commander has nobody
//!    driving it.
//! 2. Then the **soonest deadline** among the incident's open service
//!    levels ([`Deadline`]): acknowledge (paged, nobody acknowledged yet:
//!    `ack` after the first page), assign (declared without a commander:
//!    `assign` after the declaration), executive update (declared, on the
//!    update cadence: `update_cadence` after the latest executive update or
//!    the declaration) and resolve (declared, with a resolution SLA:
//!    `resolve` after the declaration). Overdue deadlines are the soonest.
//! 3. Then **severity** (Sev-1 first; no severity last), then the incident
//!    number (oldest first), so the order is total and stable.
//!
//! Each [`Row`] names its soonest deadline and [`Row::left`] how long is
//! left (negative when overdue). Nothing here reads a clock.

use std::cmp::Ordering;
use std::fmt;

use chrono::{DateTime, TimeDelta, Utc};

use crate::ids::{IncidentId, Severity};
use crate::paging::Slo;

#[cfg(test)]
mod tests;

/// Which service level a deadline belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Deadline {
    /// A page must be acknowledged.
    Acknowledge,
    /// A commander must be assigned.
    Assign,
    /// An executive update must be posted.
    ExecutiveUpdate,
    /// The incident must be resolved.
    Resolve,
}

impl Deadline {
    /// The name used on the wire and in the CLI, such as `executive_update`.
    pub fn as_str(self) -> &'static str {
        match self {
            Deadline::Acknowledge => "acknowledge",
            Deadline::Assign => "assign",
            Deadline::ExecutiveUpdate => "executive_update",
            Deadline::Resolve => "resolve",
        }
    }
}

impl fmt::Display for Deadline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the queue needs to know about one open incident.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    /// The incident.
    pub incident: IncidentId,
    /// Its current severity, if any.
    pub severity: Option<Severity>,
    /// Whether it has a commander.
    pub owned: bool,
    /// When it was first declared, if it was.
    pub declared_at: Option<DateTime<Utc>>,
    /// When its first page was sent, if any (duty-manager pages included,
    /// role assignments' notices not: they ask nobody to respond).
    pub first_paged_at: Option<DateTime<Utc>>,
    /// Whether any of its pages was acknowledged.
    pub acknowledged: bool,
    /// When the latest executive-audience update was posted, if any.
    pub last_executive_update_at: Option<DateTime<Utc>>,
    /// Whether its severity is on the executive update cadence.
    pub on_cadence: bool,
}

/// One line of the queue: the incident, why it is where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// The incident.
    pub incident: IncidentId,
    /// Its severity.
    pub severity: Option<Severity>,
    /// A Sev-1 without a commander: at the top.
    pub unowned_sev1: bool,
    /// Its soonest open deadline and when it is due, if any.
    pub next: Option<(Deadline, DateTime<Utc>)>,
}

impl Row {
    /// The row of `facts` under `slo`: its soonest deadline (the earliest
    /// due; on a tie, the first in [`Deadline`] order).
    pub fn of(facts: &Facts, slo: &Slo) -> Row {
        let mut due = Vec::new();
        if let (Some(first), false) = (facts.first_paged_at, facts.acknowledged) {
            due.push((first + slo.ack, Deadline::Acknowledge));
        }
        if let Some(declared) = facts.declared_at {
            if !facts.owned {
                due.push((declared + slo.assign, Deadline::Assign));
            }
            if facts.on_cadence {
                let base = facts.last_executive_update_at.map_or(declared, |u| u.max(declared));
                due.push((base + slo.update_cadence, Deadline::ExecutiveUpdate));
            }
            if let Some(resolve) = slo.resolve {
                due.push((declared + resolve, Deadline::Resolve));
            }
        }
        let next = due.into_iter().min().map(|(at, deadline)| (deadline, at));
        Row {
            incident: facts.incident,
            severity: facts.severity,
            unowned_sev1: facts.severity == Some(Severity::Sev1) && !facts.owned,
            next,
        }
    }

    /// How long is left until the row's deadline at `now`; negative when
    /// it is overdue, `None` without a deadline.
    pub fn left(&self, now: DateTime<Utc>) -> Option<TimeDelta> {
        self.next.map(|(_, at)| at - now)
    }
}

/// The queue order: `a` before `b` when it needs attention first (see the
/// [module documentation](self)).
pub fn compare(a: &Row, b: &Row) -> Ordering {
    let deadline = |r: &Row| r.next.map(|(_, at)| at);
    // `None` (no deadline) after every deadline; no severity after Sev-4.
    let by_deadline = match (deadline(a), deadline(b)) {
        (Some(x), Some(y)) => x.cmp(&y),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    };
    let severity = |r: &Row| r.severity.map_or(u8::MAX, |s| s.number());
    b.unowned_sev1
        .cmp(&a.unowned_sev1)
        .then(by_deadline)
        .then(severity(a).cmp(&severity(b)))
        .then(a.incident.number().cmp(&b.incident.number()))
}

/// Sorts `rows` into the queue order.
pub fn order(rows: &mut [Row]) {
    rows.sort_by(compare);
}
