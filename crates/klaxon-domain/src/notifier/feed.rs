//! Status feeds for executives: what one incident looks like to a
//! subscriber ([`FeedItem`]), which incidents a subscriber wants
//! ([`FeedFilter`]), and how a burst of changes is thinned to at most one
//! item per incident per interval without losing the last state
//! ([`Coalescer`]).

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Add;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::Error;
use crate::ids::{ActorId, Audience, CustomerId, IncidentId, IncidentRole, ServiceName, Severity};
use crate::incident::{Incident, Status, Update};

#[cfg(test)]
mod tests;

/// The most services one [`FeedFilter`] may list.
pub const FILTER_SERVICES_MAX: usize = 100;
/// The most customers one [`FeedFilter`] may list.
pub const FILTER_CUSTOMERS_MAX: usize = 1_000;

/// One incident as an executive's status feed shows it: the state of the
/// incident at [`FeedItem::at`], with nothing an executive may not read
/// (no internal updates, no bridge, no labels).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedItem {
    /// The incident.
    pub incident: IncidentId,
    /// Its title.
    pub title: String,
    /// Its current severity; `None` until declared or assessed.
    pub severity: Option<Severity>,
    /// Where it is in its lifecycle.
    pub status: Status,
    /// The incident commander, if assigned.
    pub commander: Option<ActorId>,
    /// How many customers are affected, per the latest assessment.
    pub customers_affected: u32,
    /// Whether more than one customer is affected.
    pub multi_customer: bool,
    /// The affected customers known by name.
    pub customers: BTreeSet<CustomerId>,
    /// The impact in words, if assessed.
    pub impact_summary: Option<String>,
    /// The latest update written for executives: text, author and time.
    pub latest_executive_update: Option<Update>,
    /// When the next executive update is due under the update cadence;
    /// `None` when no cadence applies.
    pub next_update_due: Option<DateTime<Utc>>,
    /// The affected service, if known.
    pub service: Option<ServiceName>,
    /// The time of the state: when the latest event folded into it
    /// happened.
    pub at: DateTime<Utc>,
    /// The text of the latest company-wide update, if any.
    pub company_wide_post: Option<String>,
    /// The latest update written for customers (audience `customer`):
    /// the only text of the incident the public status page shows.
    #[serde(default)]
    pub latest_customer_update: Option<Update>,
    /// When the incident was first reported.
    pub reported_at: DateTime<Utc>,
    /// When it was declared, if it was.
    #[serde(default)]
    pub declared_at: Option<DateTime<Utc>>,
    /// When it was last resolved, if it was.
    #[serde(default)]
    pub resolved_at: Option<DateTime<Utc>>,
    /// Who holds each role other than commander (communications lead,
    /// scribe, subject-matter experts).
    #[serde(default)]
    pub roles: BTreeMap<IncidentRole, BTreeSet<ActorId>>,
}

impl FeedItem {
    /// The feed item of `incident` as folded up to an event that happened
    /// at `at`, with the next executive update due at `next_update_due`
    /// (see [`super::update_due`]).
    ///
    /// `at` is given because the incident does not remember when its latest
    /// event happened; [`super::IncidentNotifications::feed_item`] fills
    /// both in.
    pub fn of(incident: &Incident, at: DateTime<Utc>, next_update_due: Option<DateTime<Utc>>) -> FeedItem {
        FeedItem {
            incident: incident.id(),
            title: incident.title().to_owned(),
            severity: incident.severity(),
            status: incident.status(),
            commander: incident.commander().cloned(),
            customers_affected: incident.customers_affected(),
            multi_customer: incident.multi_customer(),
            customers: incident.customers().clone(),
            impact_summary: incident.impact_summary().map(str::to_owned),
            latest_executive_update: incident.latest_update(Audience::Executive).cloned(),
            next_update_due,
            service: incident.service().cloned(),
            at,
            company_wide_post: incident.latest_update(Audience::CompanyWide).map(|u| u.text.clone()),
            latest_customer_update: incident.latest_update(Audience::Customer).cloned(),
            reported_at: incident.first_reported_at(),
            declared_at: incident.declared_at(),
            resolved_at: incident.resolved_at(),
            roles: incident.roles().clone(),
        }
    }
}

/// Which incidents a subscriber's feed shows. Every condition must hold;
/// the default filter matches everything.
///
/// - `min_severity`: the incident's severity is at least this one. An
///   incident without a severity matches only when it is `None`.
/// - `services`: when not empty, the incident's service is one of them (an
///   incident without a service does not match).
/// - `customers`: when not empty, the incident lists at least one of them
///   among its affected customers.
/// - `include_company_wide`: when true, a multi-customer incident matches
///   whatever `services` and `customers` say, because multi-customer
///   incidents concern every customer-facing team; `min_severity` still
///   applies.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedFilter {
    /// The least severe severity shown, or `None` for every incident.
    pub min_severity: Option<Severity>,
    /// The services shown; empty for all.
    pub services: Vec<ServiceName>,
    /// The customers whose incidents are shown; empty for all.
    pub customers: Vec<CustomerId>,
    /// Whether multi-customer incidents are shown regardless of `services`
    /// and `customers`.
    pub include_company_wide: bool,
}

impl FeedFilter {
    /// Checks the filter's limits: at most [`FILTER_SERVICES_MAX`] services
    /// and [`FILTER_CUSTOMERS_MAX`] customers.
    pub fn check(&self) -> Result<(), Error> {
        if self.services.len() > FILTER_SERVICES_MAX {
            return Err(Error::TooLarge { field: "services", len: self.services.len(), max: FILTER_SERVICES_MAX });
        }
        if self.customers.len() > FILTER_CUSTOMERS_MAX {
            return Err(Error::TooLarge { field: "customers", len: self.customers.len(), max: FILTER_CUSTOMERS_MAX });
        }
        Ok(())
    }

    /// Whether the feed shows `item`; see the type's documentation.
    pub fn matches(&self, item: &FeedItem) -> bool {
        let severity = match self.min_severity {
            None => true,
            Some(min) => item.severity.is_some_and(|s| s.is_at_least(min)),
        };
        if !severity {
            return false;
        }
        if self.include_company_wide && item.multi_customer {
            return true;
        }
        let service = self.services.is_empty() || item.service.as_ref().is_some_and(|s| self.services.contains(s));
        let customers = self.customers.is_empty() || self.customers.iter().any(|c| item.customers.contains(c));
        service && customers
    }
}

/// What the coalescer remembers about one incident.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Slot<I> {
    /// When the incident's last item was emitted.
    emitted_at: I,
    /// The newest item not emitted yet.
    pending: Option<FeedItem>,
}

/// Thins one subscriber's feed to at most one item per incident per
/// `interval`, always ending a burst with its last state.
///
/// Give it every item with [`Coalescer::offer`], call [`Coalescer::due`]
/// at [`Coalescer::next_due`], and send what either returns. Guarantees:
///
/// - **Rate.** Two items of the same incident are emitted at least
///   `interval` apart (measured with the instants given).
/// - **Last state wins.** An item offered too early is kept as the
///   incident's pending item, replacing an older pending one; it is emitted
///   by `due` once the interval has elapsed (or by the next `offer` after
///   that, which supersedes it). The last item of a burst is therefore
///   always emitted, never dropped.
/// - **Bounded memory.** At most one pending item per incident, and an
///   incident is forgotten once its interval has elapsed with nothing
///   pending, so memory is bounded by the incidents changed within the last
///   interval.
///
/// `I` is the instant type: [`DateTime<Utc>`] in tests, a monotonic instant
/// (`std::time::Instant`, `tokio::time::Instant`) in a service, so that a
/// wall-clock jump cannot stall a feed.
#[derive(Debug, Clone)]
pub struct Coalescer<I = DateTime<Utc>> {
    interval: Duration,
    slots: BTreeMap<IncidentId, Slot<I>>,
}

impl<I> Coalescer<I>
where
    I: Copy + Ord + Add<Duration, Output = I>,
{
    /// A coalescer emitting at most one item per incident per `interval`.
    pub fn new(interval: Duration) -> Coalescer<I> {
        Coalescer { interval, slots: BTreeMap::new() }
    }

    /// The interval.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Offers the newest state of an incident at `now`: returns it to send
    /// now when the incident's last item was emitted at least `interval`
    /// ago (or never), otherwise keeps it as the incident's pending item
    /// (replacing any older one) and returns `None`.
    pub fn offer(&mut self, item: FeedItem, now: I) -> Option<FeedItem> {
        let interval = self.interval;
        match self.slots.get_mut(&item.incident) {
            Some(slot) if now < slot.emitted_at + interval => {
                slot.pending = Some(item);
                None
            }
            Some(slot) => {
                slot.emitted_at = now;
                slot.pending = None;
                Some(item)
            }
            None => {
                self.slots.insert(item.incident, Slot { emitted_at: now, pending: None });
                Some(item)
            }
        }
    }

    /// The pending items whose interval has elapsed at `now`, to send now,
    /// ordered by when they became due (then by incident). Also forgets the
    /// incidents with nothing pending whose interval has elapsed.
    pub fn due(&mut self, now: I) -> Vec<FeedItem> {
        let interval = self.interval;
        let mut due: Vec<(I, FeedItem)> = Vec::new();
        self.slots.retain(|_, slot| {
            let ready_at = slot.emitted_at + interval;
            if now < ready_at {
                return true;
            }
            match slot.pending.take() {
                Some(item) => {
                    due.push((ready_at, item));
                    slot.emitted_at = now;
                    true
                }
                None => false,
            }
        });
        due.sort_by(|(a, x), (b, y)| a.cmp(b).then(x.incident.cmp(&y.incident)));
        due.into_iter().map(|(_, item)| item).collect()
    }

    /// When [`Coalescer::due`] next has something to return, or `None` when
    /// nothing is pending.
    pub fn next_due(&self) -> Option<I> {
        self.slots.values().filter(|slot| slot.pending.is_some()).map(|slot| slot.emitted_at + self.interval).min()
    }

    /// How many incidents the coalescer remembers.
    pub fn tracked(&self) -> usize {
        self.slots.len()
    }

    /// How many items are pending, at most one per incident.
    pub fn pending(&self) -> usize {
        self.slots.values().filter(|slot| slot.pending.is_some()).count()
    }
}
