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
//! - **escalations on time**: once the pager has run [`crate::GRACE_STEPS`]
//!   steps without a restart, no incident's next timer
//!   ([`klaxon_domain::paging::next_due`], rebuilt from the log) is more than
//!   `GRACE_STEPS` steps past;
//! - **projection equals rebuild**: the pager's state equals a fold of the
//!   log up to the position it has folded, by a fresh paging service.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::TimeDelta;
use klaxon_domain::ids::IncidentId;
use klaxon_domain::incident::Status;
use klaxon_domain::paging::{IncidentPaging, PageChange, PageId};
use klaxon_log::{Position, Record};
use klaxon_paging::{PagerConfig, Paging, State};
use klaxon_reactor::{Clock, Service, decode};

use crate::world::{World, records};
use crate::{Command2, Operation, Variant, Violation, actor, declare, report, scribe};

/// The checker: what it has seen so far.
pub struct Checker {
    config: PagerConfig,
    sent_checked: usize,
    reports: usize,
    /// The pager's fold of the log, kept up to date.
    rebuilt: State,
    folded: Position,
    service: Paging,
}

impl Checker {
    /// A checker for a pager with `config`.
    pub fn new(config: PagerConfig, _variant: Variant) -> Checker {
        Checker {
            service: Paging::new(config.clone()),
            config,
            sent_checked: 0,
            reports: 0,
            rebuilt: State::default(),
            folded: Position::ZERO,
        }
    }

    fn incidents(&self) -> Vec<&IncidentPaging> {
        let mut incidents: Vec<&IncidentPaging> = self.rebuilt.incidents().values().collect();
        incidents.sort_by_key(|i| i.incident());
        incidents
    }

    /// The commands of `operation`, its target picked from the log as of now.
    pub fn commands(&mut self, _world: &World, operation: Operation) -> Vec<Command2> {
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
                    Command2::Intake(None, report(self.reports), actor("monitor")),
                    Command2::Intake(None, declare(sev2), actor("maria")),
                ]
            }
            Operation::Acknowledge(n) => {
                let pages: Vec<(PageId, String)> = self
                    .incidents()
                    .into_iter()
                    .flat_map(|i| i.pages())
                    .filter(|p| p.acknowledged().is_none())
                    .map(|p| (p.id(), p.responder().to_string()))
                    .collect();
                match pages.get(pick(n, pages.len())) {
                    Some((page, responder)) => vec![Command2::Ack(*page, actor(responder))],
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
                let command = |c| Command2::Intake(Some(id), c, actor(manager));
                use klaxon_domain::incident::Command as C;
                match operation {
                    Operation::Assign(_) => vec![command(C::AssignCommander { commander: actor(manager) })],
                    Operation::Handoff(_) => {
                        let commander = self.rebuilt.incidents().get(&id).and_then(|i| i.commander().cloned());
                        let Some(from) = commander else { return vec![] };
                        let to = if from.as_str() == "maria" { "olga" } else { "maria" };
                        vec![
                            Command2::Intake(Some(id), C::RequestHandoff { to: actor(to) }, from.clone()),
                            Command2::Intake(Some(id), C::AcceptHandoff, actor(to)),
                        ]
                    }
                    Operation::AssignRole(_) => vec![command(scribe())],
                    Operation::Mitigate(_) => vec![command(C::Mitigate { summary: "rolled back".into() })],
                    _ => vec![command(C::Resolve { summary: "fixed".into() })],
                }
            }
        }
    }

    /// Checks every invariant after `step`. `pager` is the running pager,
    /// if any; `timers` says whether it has run long enough for its timers
    /// to be checked.
    pub fn check(
        &mut self,
        world: &World,
        step: u64,
        pager: Option<&klaxon_paging::Handle>,
        timers: bool,
    ) -> Result<(), Violation> {
        let fail = |invariant, detail| Err(Violation { step, invariant, detail });
        let log = world.log();
        let all = records(&log);

        // No acknowledged event missing.
        for (id, position) in world.acknowledged.lock().expect("lock").iter() {
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

        // The rebuild, and where acknowledgements and resolutions are.
        let from = self.folded;
        for record in all.iter().filter(|r| r.position > from) {
            if let Err(e) = self.service.fold(&mut self.rebuilt, record) {
                return fail("log decodes", e.to_string());
            }
            self.folded = record.position;
        }
        let mut acked: HashMap<PageId, Position> = HashMap::new();
        let mut resolved: HashMap<IncidentId, Position> = HashMap::new();
        let mut paged: BTreeMap<(IncidentId, Option<u32>, u32, u32, String), Position> = BTreeMap::new();
        for record in &all {
            if record.kind.as_str() == "incident.resolved.v1" {
                if let Ok(Some(event)) = decode::incident(record) {
                    resolved.entry(event.incident).or_insert(record.position);
                }
            }
            let Ok(Some(event)) = decode::event::<PageChange>(record) else { continue };
            match &event.change {
                PageChange::PageAcknowledged(ack) => {
                    acked.entry(ack.page).or_insert(record.position);
                }
                PageChange::ResponderPaged(p) => {
                    if let Some(level) = p.level {
                        let key = (event.incident, p.request, level, p.round, p.responder.to_string());
                        if let Some(first) = paged.insert(key.clone(), record.position) {
                            return fail(
                                "one page per level and round",
                                format!(
                                    "{} paged at level {level} round {} at {first} and again at {}",
                                    key.4, p.round, record.position
                                ),
                            );
                        }
                    }
                }
                _ => {}
            }
        }

        // No page after acknowledgement or resolution.
        let sent = world.sent.lock().expect("lock").clone();
        for s in &sent[self.sent_checked..] {
            if let Some(at) = acked.get(&s.page).filter(|at| **at <= s.pager_folded) {
                return fail(
                    "no page after acknowledgement",
                    format!("{} sent at step {} though its acknowledgement at {at} was folded", s.page, s.step),
                );
            }
            if let Some(at) = resolved.get(&s.page.incident()).filter(|at| **at <= s.pager_folded) {
                return fail(
                    "no page after resolution",
                    format!("{} sent at step {} though the resolution at {at} was folded", s.page, s.step),
                );
            }
        }
        self.sent_checked = sent.len();

        // Escalations on time.
        let now = world.clock.now();
        if std::env::var_os("KLAXON_SIM_DEBUG").is_some() {
            for incident in self.incidents() {
                if let Some(due) = klaxon_domain::paging::next_due(incident, &self.config.paging)
                    .filter(|d| *d <= now + TimeDelta::seconds(1))
                {
                    eprintln!("  due {} at {due} (now {now}): {:?}", incident.incident(), incident);
                }
            }
        }
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

        // The pager's projection equals a rebuild up to what it folded.
        if let Some(pager) = pager {
            let folded = pager.reactor().applied();
            let (incidents, counts) = pager.reactor().read(|s| (s.incidents().clone(), s.counts()));
            let mut rebuilt = State::default();
            for record in all.iter().take_while(|r| r.position <= folded) {
                let _ = self.service.fold(&mut rebuilt, record);
            }
            if rebuilt.counts() != counts {
                return fail(
                    "projection equals rebuild",
                    format!("pager counts {counts:?}, rebuild {:?} (at {folded})", rebuilt.counts()),
                );
            }
            let ids: BTreeSet<&IncidentId> = incidents.keys().chain(rebuilt.incidents().keys()).collect();
            for id in ids {
                if incidents.get(id) != rebuilt.incidents().get(id) {
                    return fail(
                        "projection equals rebuild",
                        format!("pager's {id} differs from the rebuild at {folded}"),
                    );
                }
            }
        }
        let _: &[Record] = &all;
        Ok(())
    }
}
