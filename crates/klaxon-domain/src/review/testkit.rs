//! Scripted incidents shared by the review tests: commands are decided by
//! the real deciders, page events are written as the paging service would,
//! and every event gets the next log position.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};

use crate::ids::{ActorId, IncidentId, ReportSource, ServiceName, Severity};
use crate::incident::{Change, Command, Incident, IncidentEvent, SeverityAssessed, decide, evolve};
use crate::paging::{
    PageAcknowledged, PageChange, PageDelivered, PageEscalated, PageEvent, PageId, PageReason, ResponderPaged,
    SloBreached, SloKind, paging_actor,
};
use crate::review::{Review, ReviewCommand, ReviewEvent, decide_review, evolve_review, open_review};

pub(crate) fn actor(name: &str) -> ActorId {
    ActorId::new(name).unwrap()
}

/// INC-`n`.
pub(crate) fn inc(n: u64) -> IncidentId {
    IncidentId::from_number(n).unwrap()
}

/// `minute` minutes after Monday 2026-03-02 09:00 UTC (ISO week 2026-W10).
pub(crate) fn at(minute: i64) -> DateTime<Utc> {
    let start: DateTime<Utc> = "2026-03-02T09:00:00Z".parse().unwrap();
    start + Duration::minutes(minute)
}

/// A report with an alert start time `started` minutes after [`at`]'s origin
/// (or none).
pub(crate) fn report(title: &str, service: Option<&str>, started: Option<i64>) -> Command {
    Command::ReportIssue {
        source: ReportSource::Alertmanager,
        reporter: actor("svc:alertmanager"),
        title: title.into(),
        description: String::new(),
        service: service.map(|s| ServiceName::new(s).unwrap()),
        customers: vec![],
        labels: BTreeMap::new(),
        dedup_key: None,
        started_at: started.map(at),
    }
}

/// One incident's history being written: incident, page and review events
/// in log order, each with its global position.
pub(crate) struct Script {
    pub(crate) incident: IncidentId,
    pub(crate) state: Option<Incident>,
    pub(crate) review: Option<Review>,
    pub(crate) incident_events: Vec<IncidentEvent>,
    pub(crate) page_events: Vec<PageEvent>,
    pub(crate) review_events: Vec<ReviewEvent>,
    /// `(position, kind, data)` of every event, in log order.
    pub(crate) records: Vec<(u64, &'static str, String)>,
    position: u64,
    pages: u32,
}

impl Script {
    /// An empty history of INC-`n` whose first record will be at position
    /// `first_position`.
    pub(crate) fn new(n: u64, first_position: u64) -> Script {
        Script {
            incident: inc(n),
            state: None,
            review: None,
            incident_events: Vec::new(),
            page_events: Vec::new(),
            review_events: Vec::new(),
            records: Vec::new(),
            position: first_position - 1,
            pages: 0,
        }
    }

    /// Leaves `n` positions to other incidents.
    pub(crate) fn skip(&mut self, n: u64) -> &mut Script {
        self.position += n;
        self
    }

    fn record(&mut self, kind: &'static str, data: String) {
        self.position += 1;
        self.records.push((self.position, kind, data));
    }

    /// `who` sends `command` at `minute`; it must be accepted. A resolution
    /// opens the review when [`open_review`] says so.
    pub(crate) fn cmd(&mut self, minute: i64, who: &str, command: Command) -> &mut Script {
        let events = decide(self.state.as_ref(), &command, &self.incident, &actor(who), at(minute))
            .unwrap_or_else(|e| panic!("{command:?} rejected: {e}"));
        for event in events {
            self.state = evolve(self.state.take(), &event);
            self.record(event.kind(), event.to_json().to_string());
            let opened = open_review(self.state.as_ref().unwrap(), &event, self.review.as_ref());
            self.incident_events.push(event);
            if let Some(opened) = opened {
                self.push_review(opened);
            }
        }
        self
    }

    /// The severity evaluator assessed `severity` at `minute` (it appends
    /// directly, without a command).
    pub(crate) fn assessed(&mut self, minute: i64, severity: Severity) -> &mut Script {
        let change = Change::SeverityAssessed(SeverityAssessed {
            severity,
            rule: Some("tier1".into()),
            reason: "tier-1 service".into(),
            reasons: vec![],
        });
        let event = IncidentEvent { incident: self.incident, at: at(minute), by: actor("klaxon-severity"), change };
        self.state = evolve(self.state.take(), &event);
        self.record(event.kind(), event.to_json().to_string());
        self.incident_events.push(event);
        self
    }

    fn push_review(&mut self, event: ReviewEvent) {
        self.review = evolve_review(self.review.take(), &event);
        self.record(event.kind(), event.to_json().to_string());
        self.review_events.push(event);
    }

    /// `who` sends the review `command` at `minute`; it must be accepted.
    pub(crate) fn review(&mut self, minute: i64, who: &str, command: ReviewCommand) -> &mut Script {
        let incident = self.state.as_ref().expect("the incident exists");
        let events = decide_review(self.review.as_ref(), &command, incident, &actor(who), at(minute))
            .unwrap_or_else(|e| panic!("{command:?} rejected: {e}"));
        for event in events {
            self.push_review(event);
        }
        self
    }

    fn page_event(&mut self, minute: i64, by: ActorId, change: PageChange) -> &mut Script {
        let event = PageEvent { incident: self.incident, at: at(minute), by, change };
        self.record(event.kind(), event.to_json().to_string());
        self.page_events.push(event);
        self
    }

    /// The page numbered `n` of this incident.
    pub(crate) fn page_id(&self, n: u32) -> PageId {
        PageId::new(self.incident, n).unwrap()
    }

    /// Pages `responder` at `level` (`None`: the duty manager) at `minute`.
    pub(crate) fn paged(&mut self, minute: i64, responder: &str, level: Option<u32>) -> &mut Script {
        self.pages += 1;
        let reason = match level {
            None => PageReason::SloBreach,
            Some(0) => PageReason::Severity,
            Some(_) => PageReason::Escalation,
        };
        let change = PageChange::ResponderPaged(ResponderPaged {
            page: self.page_id(self.pages),
            responder: actor(responder),
            level,
            round: 0,
            reason,
            deadline: level.map(|_| at(minute + 5)),
            request: None,
            policy: None,
        });
        self.page_event(minute, paging_actor(), change)
    }

    /// Pages `responder` a notice of a role given to them (manager's
    /// request `request`) at `minute`: no level, no deadline.
    pub(crate) fn noticed(&mut self, minute: i64, responder: &str, request: u32) -> &mut Script {
        self.pages += 1;
        let change = PageChange::ResponderPaged(ResponderPaged {
            page: self.page_id(self.pages),
            responder: actor(responder),
            level: None,
            round: 0,
            reason: PageReason::RoleAssigned,
            deadline: None,
            request: Some(request),
            policy: None,
        });
        self.page_event(minute, paging_actor(), change)
    }

    /// Page `n` was delivered through `channel` at `minute`.
    pub(crate) fn delivered(&mut self, minute: i64, n: u32, channel: &str) -> &mut Script {
        let change =
            PageChange::PageDelivered(PageDelivered { page: self.page_id(n), channel: channel.into(), attempts: 1 });
        self.page_event(minute, paging_actor(), change)
    }

    /// `who` acknowledged page `n` at `minute`.
    pub(crate) fn ack(&mut self, minute: i64, who: &str, n: u32) -> &mut Script {
        let change = PageChange::PageAcknowledged(PageAcknowledged { page: self.page_id(n) });
        self.page_event(minute, actor(who), change)
    }

    /// The chain left `from` for `to` (`None`: exhausted) at `minute`.
    pub(crate) fn escalated(&mut self, minute: i64, from: u32, to: Option<u32>) -> &mut Script {
        let page = Some(self.page_id(self.pages.max(1)));
        let change = PageChange::PageEscalated(PageEscalated {
            page,
            from_level: from,
            to_level: to,
            round: 0,
            request: None,
            policy: None,
        });
        self.page_event(minute, paging_actor(), change)
    }

    /// The `slo` breach was recorded at `minute`, due a minute earlier.
    pub(crate) fn breached(&mut self, minute: i64, slo: SloKind) -> &mut Script {
        let change = PageChange::SloBreached(SloBreached { slo, due_at: at(minute - 1) });
        self.page_event(minute, paging_actor(), change)
    }

    /// The records as the borrowed triples the readers take.
    pub(crate) fn triples(&self) -> Vec<(u64, &str, &str)> {
        self.records.iter().map(|(p, k, d)| (*p, *k, d.as_str())).collect()
    }

    /// The incident's current state.
    pub(crate) fn incident(&self) -> &Incident {
        self.state.as_ref().expect("the incident exists")
    }
}

/// The usual commands, by name.
pub(crate) fn declare(severity: Severity) -> Command {
    Command::DeclareIncident { severity }
}
pub(crate) fn assign(who: &str) -> Command {
    Command::AssignCommander { commander: actor(who) }
}
pub(crate) fn mitigate() -> Command {
    Command::Mitigate { summary: "rolled back the deploy".into() }
}
pub(crate) fn resolve() -> Command {
    Command::Resolve { summary: "fixed the query plan".into() }
}
pub(crate) fn reopen() -> Command {
    Command::Reopen { reason: "latency is back".into() }
}
pub(crate) fn noise() -> Command {
    Command::MarkNoise { reason: "synthetic probe".into() }
}
