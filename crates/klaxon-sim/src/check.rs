//! The invariants, checked after every step from the log (the truth) and
//! what the pager holds:
//!
//! - **no acknowledged event missing**: every append answered `Ok` is in
//!   the log at its position, also after the log was reopened;
//! - **one page per level and round**: no responder is paged twice for the
//!   same chain, level and round of an incident;
//! - **no page after acknowledgement or resolution**: no page is sent
//!   whose acknowledgement, or its incident's resolution, the pager had
//!   folded by the end of the step before;
//! - **escalations on time**: no escalation before its page's deadline
//!   (by the simulated clock); once the pager has run [`crate::GRACE_STEPS`]
//!   steps without a restart, no incident's next timer
//!   ([`klaxon_domain::paging::next_due`], rebuilt from the log) is more than
//!   `GRACE_STEPS` steps past;
//! - **projection equals rebuild**: intake's projection, the pager's, the
//!   severity evaluator's and the notifier's state each equal a fold of the
//!   log from position 1 up to the position that service has folded, by a
//!   fresh instance of the same service ([`Mirror`], [`IntakeMirror`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::TimeDelta;
use klaxon_bus::SharedRecord;
use klaxon_domain::ids::IncidentId;
use klaxon_domain::incident::Status;
use klaxon_domain::paging::{IncidentPaging, PageChange, PageId};
use klaxon_log::{Position, Record};
use klaxon_paging::{PagerConfig, Paging, State};
use klaxon_reactor::{Clock, Service, decode};

use crate::world::World;
use crate::{Operation, Request, Violation, actor, declare, report, scribe};

/// A rebuild of one reactor service's projection from the log, kept up
/// to the position the running instance has folded: the records are
/// folded once each, from position 1 again when the service restarted
/// (its `applied` went back). The states are compared as JSON values,
/// whose maps compare regardless of order (the states hold `HashMap`s).
pub struct Mirror<S: Service> {
    service: S,
    state: S::State,
    at: Position,
    /// The start of the running instance and its position last compared:
    /// its state changes only by folding, so the same instance at the
    /// same position needs no second comparison.
    compared: Option<(u64, Position)>,
}

impl<S: Service> Mirror<S> {
    /// A rebuild by `service`, a fresh instance configured as the running one.
    pub fn new(service: S) -> Mirror<S> {
        Mirror { service, state: S::State::default(), at: Position::ZERO, compared: None }
    }

    /// Folds `records` (every record so far, from position 1) up to what
    /// `live` (started as the `start`-th instance) has folded and
    /// compares: `None` when equal, else what differs.
    fn differs(&mut self, records: &[Record], (live, start): (&klaxon_reactor::Handle<S>, u64)) -> Option<String> {
        let folded = live.applied();
        if self.compared == Some((start, folded)) {
            return None;
        }
        self.compared = Some((start, folded));
        if folded < self.at {
            self.state = S::State::default();
            self.at = Position::ZERO;
        }
        for record in records.iter().skip(self.at.0 as usize).take_while(|r| r.position <= folded) {
            if let Err(e) = self.service.fold(&mut self.state, &SharedRecord::new(record.clone())) {
                return Some(format!("{} cannot fold {}: {e}", S::NAME, record.position));
            }
            self.at = record.position;
        }
        let json = |state: &S::State| serde_json::to_value(state).map_err(|e| e.to_string());
        let (live_json, rebuilt) = (live.read(json), json(&self.state));
        match (live_json, rebuilt) {
            (Ok(a), Ok(b)) if a == b => None,
            (Ok(a), Ok(b)) => {
                Some(format!("{}'s state differs from the rebuild: {}", S::NAME, first_difference(&a, &b)))
            }
            (Err(e), _) | (_, Err(e)) => Some(format!("{}'s state does not serialize: {e}", S::NAME)),
        }
    }
}

/// A rebuild of intake's projection (`klaxon_intake::Projection`: the
/// incidents, their page facts, the e-mail threads), kept up to the
/// position the running intake has folded, as [`Mirror`] does for the
/// reactor services. Intake is not on the reactor shell; its
/// `Handle::folded` gives its projection and the position it is folded
/// through, together.
#[derive(Default)]
pub struct IntakeMirror {
    state: klaxon_intake::Projection,
    at: Position,
    compared: Option<(u64, Position)>,
}

impl IntakeMirror {
    fn differs(&mut self, records: &[Record], (live, start): (&klaxon_intake::Handle, u64)) -> Option<String> {
        let (folded, running) = live.folded();
        if self.compared == Some((start, folded)) {
            return None;
        }
        self.compared = Some((start, folded));
        if folded < self.at {
            self.state = klaxon_intake::Projection::default();
            self.at = Position::ZERO;
        }
        for record in records.iter().skip(self.at.0 as usize).take_while(|r| r.position <= folded) {
            if let Err(e) = self.state.fold(record) {
                return Some(format!("intake cannot fold {}: {e}", record.position));
            }
            self.at = record.position;
        }
        let json = |state: &klaxon_intake::Projection| serde_json::to_value(state).map_err(|e| e.to_string());
        match (json(&running), json(&self.state)) {
            (Ok(a), Ok(b)) if a == b => None,
            (Ok(a), Ok(b)) => Some(format!(
                "intake's projection differs from the rebuild: {} (both at {folded})",
                first_difference(&a, &b)
            )),
            (Err(e), _) | (_, Err(e)) => Some(format!("intake's projection does not serialize: {e}")),
        }
    }
}

/// Where two JSON values first differ, as a path and both sides.
fn first_difference(a: &serde_json::Value, b: &serde_json::Value) -> String {
    use serde_json::Value;
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for key in keys {
                match (x.get(key), y.get(key)) {
                    (Some(p), Some(q)) if p == q => {}
                    (Some(p), Some(q)) => return format!("{key}.{}", first_difference(p, q)),
                    (p, q) => return format!("{key}: running {p:?}, rebuilt {q:?}"),
                }
            }
            String::new()
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            match x.iter().zip(y).enumerate().find(|(_, (p, q))| p != q) {
                Some((i, (p, q))) => format!("{i}.{}", first_difference(p, q)),
                None => String::new(),
            }
        }
        _ => format!(": running {a}, rebuilt {b}"),
    }
}

/// The running reactor services whose projections are compared with a
/// rebuild (each `None` while its host is down).
#[derive(Default)]
pub struct Running<'a> {
    /// Intake, and which start of it this is.
    pub intake: Option<(&'a klaxon_intake::Handle, u64)>,
    /// The pager.
    pub pager: Option<&'a klaxon_paging::Handle>,
    /// The severity evaluator, and which start of it this is.
    pub severity: Option<(&'a klaxon_reactor::Handle<klaxon_severity::Assessing>, u64)>,
    /// The notifier, and which start of it this is.
    pub notifier: Option<(&'a klaxon_reactor::Handle<klaxon_notifier::Notifying>, u64)>,
}

/// The checker: what it has seen so far (it reads each record once).
pub struct Checker {
    config: PagerConfig,
    service: Paging,
    reports: usize,
    /// Every record read so far.
    records: Vec<Record>,
    /// A fold of all of them by a fresh paging service.
    rebuilt: State,
    /// A fold up to the position the running pager has folded.
    mirror: State,
    mirrored: Position,
    severity: Mirror<klaxon_severity::Assessing>,
    notifier: Mirror<klaxon_notifier::Notifying>,
    intake: IntakeMirror,
    /// Acknowledged appends checked so far, and the reopenings seen.
    acknowledged_checked: usize,
    reopenings: u64,
    sent_checked: usize,
    acked: HashMap<PageId, Position>,
    resolved: HashMap<IncidentId, Position>,
    paged: BTreeMap<(IncidentId, Option<u32>, u32, u32, String), Position>,
}

impl Checker {
    /// A checker for services configured with `config`.
    pub fn new(config: &crate::world::Config) -> Checker {
        let severity = klaxon_severity::Assessing::new(config.rules.clone(), config.pager.catalog.clone());
        let notifier = klaxon_notifier::Notifying::new(config.notifier_options());
        let config = config.pager.clone();
        Checker {
            severity: Mirror::new(severity),
            notifier: Mirror::new(notifier),
            intake: IntakeMirror::default(),
            service: Paging::new(config.clone()),
            config,
            reports: 0,
            records: Vec::new(),
            rebuilt: State::default(),
            mirror: State::default(),
            mirrored: Position::ZERO,
            acknowledged_checked: 0,
            reopenings: 0,
            sent_checked: 0,
            acked: HashMap::new(),
            resolved: HashMap::new(),
            paged: BTreeMap::new(),
        }
    }

    fn incidents(&self) -> Vec<&IncidentPaging> {
        let mut incidents: Vec<&IncidentPaging> = self.rebuilt.incidents().values().collect();
        incidents.sort_by_key(|i| i.incident());
        incidents
    }

    /// The commands of `operation`, its target picked from the log as of now.
    pub fn requests(&mut self, operation: Operation) -> Vec<Request> {
        let open: Vec<IncidentId> = self
            .incidents()
            .into_iter()
            .filter(|i| matches!(i.status(), Some(Status::Declared | Status::Reported | Status::Mitigated)))
            .map(IncidentPaging::incident)
            .collect();
        let pick = |n: u64, of: usize| (n % of.max(1) as u64) as usize;
        let managers = ["maria", "olga"];
        match operation {
            Operation::Report { sev2 } => {
                self.reports += 1;
                // The driver learns the incident's id from the report's answer.
                vec![
                    Request::Intake(None, report(self.reports), actor("monitor")),
                    Request::Intake(None, declare(sev2), actor("maria")),
                ]
            }
            Operation::Acknowledge(n) => {
                let pages: Vec<(PageId, String)> = self
                    .incidents()
                    .into_iter()
                    .flat_map(|i| i.pages())
                    // A role's notice is no page: its acknowledgement is refused.
                    .filter(|p| p.acknowledged().is_none() && !p.reason().is_notice())
                    .map(|p| (p.id(), p.responder().to_string()))
                    .collect();
                match pages.get(pick(n, pages.len())) {
                    Some((page, responder)) => vec![Request::Ack(*page, actor(responder))],
                    None => vec![],
                }
            }
            Operation::Assign(n)
            | Operation::Handoff(n)
            | Operation::AssignRole(n)
            | Operation::Mitigate(n)
            | Operation::Resolve(n) => {
                let Some(id) = open.get(pick(n, open.len())).copied() else { return vec![] };
                let manager = managers[(n / 7 % 2) as usize];
                let command = |c| Request::Intake(Some(id), c, actor(manager));
                use klaxon_domain::incident::Command as C;
                match operation {
                    Operation::Assign(_) => vec![command(C::AssignCommander { commander: actor(manager) })],
                    Operation::Handoff(_) => {
                        let commander = self.rebuilt.incidents().get(&id).and_then(|i| i.commander().cloned());
                        let Some(from) = commander else { return vec![] };
                        let to = if from.as_str() == "maria" { "olga" } else { "maria" };
                        vec![
                            Request::Intake(Some(id), C::RequestHandoff { to: actor(to) }, from.clone()),
                            Request::Intake(Some(id), C::AcceptHandoff, actor(to)),
                        ]
                    }
                    Operation::AssignRole(_) => vec![command(scribe())],
                    Operation::Mitigate(_) => vec![command(C::Mitigate { summary: "rolled back".into() })],
                    _ => vec![command(C::Resolve { summary: "fixed".into() })],
                }
            }
        }
    }

    /// Checks every invariant after `step`. `live` are the running
    /// services; `timers` says whether the pager has run long enough for
    /// its timers to be checked.
    pub fn check(&mut self, world: &World, step: u64, live: &Running<'_>, timers: bool) -> Result<(), Violation> {
        let fail = |invariant, detail| Err(Violation { step, invariant, detail });
        let log = world.log();

        // No acknowledged event missing: the new ones, and all of them again
        // after the log was reopened.
        let reopenings = world.reopenings.load(std::sync::atomic::Ordering::SeqCst);
        if reopenings != self.reopenings {
            self.reopenings = reopenings;
            self.acknowledged_checked = 0;
        }
        let acknowledged = world.acknowledged.lock().expect("lock").clone();
        for (id, position) in &acknowledged[self.acknowledged_checked..] {
            match log.locate(*id) {
                Ok(Some((found, _, _))) if found == *position => {}
                found => {
                    return fail(
                        "acknowledged event missing",
                        format!("{id} acknowledged at {position}, found {found:?}"),
                    );
                }
            }
        }
        self.acknowledged_checked = acknowledged.len();

        // The new records: the rebuild, acknowledgements, resolutions, pages.
        let from = Position(self.records.len() as u64 + 1);
        let new = match log.read_all(from, usize::MAX) {
            Ok(new) => new,
            Err(e) => return fail("log reads", e.to_string()),
        };
        for record in new {
            // Folded and inspected below from one shared record: its event
            // is decoded once for both.
            let record = SharedRecord::new(record);
            if let Err(e) = self.service.fold(&mut self.rebuilt, &record) {
                return fail("log decodes", e.to_string());
            }
            if record.kind.as_str() == "incident.resolved.v1" {
                if let Ok(Some(event)) = decode::shared_incident(&record) {
                    self.resolved.entry(event.incident).or_insert(record.position);
                }
            }
            if let Ok(Some(event)) = decode::shared_event::<PageChange>(&record) {
                match &event.change {
                    PageChange::PageAcknowledged(ack) => {
                        self.acked.entry(ack.page).or_insert(record.position);
                    }
                    PageChange::PageEscalated(escalated) => {
                        let incident = self.rebuilt.incidents().get(&event.incident);
                        let page = escalated.page.and_then(|page| incident.and_then(|i| i.page(&page)));
                        if let Some(deadline) = page.and_then(klaxon_domain::paging::Page::deadline) {
                            if event.at < deadline {
                                return fail(
                                    "escalation on time",
                                    format!(
                                        "{} escalated at {} before its deadline {deadline} (at {})",
                                        event.incident, event.at, record.position
                                    ),
                                );
                            }
                        }
                    }
                    PageChange::ResponderPaged(p) => {
                        if let Some(level) = p.level {
                            let key = (event.incident, p.request, level, p.round, p.responder.to_string());
                            if let Some(first) = self.paged.insert(key, record.position) {
                                return fail(
                                    "one page per level and round",
                                    format!(
                                        "{} paged at level {level} round {} of {} at {first} and again at {}",
                                        p.responder, p.round, event.incident, record.position
                                    ),
                                );
                            }
                        }
                    }
                    _ => {}
                }
            }
            self.records.push(record.into_record());
        }

        // No page after acknowledgement or resolution.
        let sent = world.sent.lock().expect("lock").clone();
        for s in &sent[self.sent_checked..] {
            if let Some(at) = self.acked.get(&s.page).filter(|at| **at <= s.pager_folded) {
                return fail(
                    "no page after acknowledgement",
                    format!("{} sent at step {} though its acknowledgement at {at} was folded", s.page, s.step),
                );
            }
            if let Some(at) = self.resolved.get(&s.page.incident()).filter(|at| **at <= s.pager_folded) {
                return fail(
                    "no page after resolution",
                    format!("{} sent at step {} though the resolution at {at} was folded", s.page, s.step),
                );
            }
        }
        self.sent_checked = sent.len();

        // Escalations on time.
        let now = world.clock.now();
        if timers {
            let grace = TimeDelta::seconds(crate::GRACE_STEPS as i64);
            for incident in self.incidents() {
                if let Some(due) = klaxon_domain::paging::next_due(incident, &self.config.paging) {
                    if due + grace < now {
                        return fail(
                            "escalation on time",
                            format!("{} was due at {due}, still pending at {now}", incident.incident()),
                        );
                    }
                }
            }
        }

        // Intake's, the severity evaluator's and the notifier's projections
        // equal a rebuild up to what each folded.
        let differs = live
            .intake
            .and_then(|i| self.intake.differs(&self.records, i))
            .or_else(|| live.severity.and_then(|s| self.severity.differs(&self.records, s)))
            .or_else(|| live.notifier.and_then(|n| self.notifier.differs(&self.records, n)));
        if let Some(detail) = differs {
            return fail("projection equals rebuild", detail);
        }

        // The pager's projection equals a rebuild up to what it folded.
        let Some(pager) = live.pager else { return Ok(()) };
        let folded = pager.reactor().applied();
        if folded < self.mirrored {
            // A restarted pager folds from the start again.
            self.mirror = State::default();
            self.mirrored = Position::ZERO;
        }
        for record in self.records.iter().skip(self.mirrored.0 as usize).take_while(|r| r.position <= folded) {
            let _ = self.service.fold(&mut self.mirror, &SharedRecord::new(record.clone()));
            self.mirrored = record.position;
        }
        let mirror = &self.mirror;
        let differs = pager.reactor().read(|state| {
            if state.counts() != mirror.counts() {
                return Some(format!("pager counts {:?}, rebuild {:?}", state.counts(), mirror.counts()));
            }
            let ids: BTreeSet<&IncidentId> = state.incidents().keys().chain(mirror.incidents().keys()).collect();
            ids.into_iter()
                .find(|id| state.incidents().get(id) != mirror.incidents().get(id))
                .map(|id| format!("pager's {id} differs from the rebuild"))
        });
        match differs {
            Some(detail) => fail("projection equals rebuild", format!("{detail} (both at {folded})")),
            None => Ok(()),
        }
    }
}
