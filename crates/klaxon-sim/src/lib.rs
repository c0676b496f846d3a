//! Klaxon's seeded whole-system simulation.
//!
//! Runs the real intake, severity evaluator, paging and notifier — the
//! services' own code on the reactor shell — as hosts of a
//! [turmoil](https://docs.rs/turmoil) simulation: simulated time (turmoil
//! pauses every host's tokio clock and moves it a tick per step; the
//! services read a [`klaxon_reactor::ManualClock`] moved with it), hosts
//! crashed and restarted, and a faulty feed between the log and each
//! service (messages dropped, repeated, delayed and so reordered; the feed
//! repairs gaps from the log as the JetStream source does). One `u64` seed
//! drives everything: the plan of operations and faults, and the faults'
//! random numbers. After every step it checks the invariants
//! ([`check`]); a failing run is shrunk and printed with its seed.
//!
//! What it must never do: change how the services behave, or read the
//! wall clock. The broken [`Variant`]s are the pager's own broken folds
//! (`klaxon_paging::broken`, compiled only with its `sim-variants`
//! feature and selected only here) or live here, in the feed and the clock
//! the simulation hands a service.
//!
//! Modules:
//! - [`world`]: the log as the services reach it, the faulty feeds, the
//!   recording receiver, the configuration.
//! - [`check`]: the invariants.
//!
//! `docs/simulation.md` explains the choices and how to replay and soak.

pub mod check;
pub mod world;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use klaxon_domain::ids::{ActorId, IncidentRole, ReportSource, Severity};
use klaxon_domain::incident::Command;
use klaxon_intake::CommandContext;
use klaxon_paging::Pager;
use klaxon_paging::broken::Broken;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio_util::sync::CancellationToken;

use crate::world::{Config, HostClock, LateClock, Recorder, SimLog, World};

/// A deliberately broken variant, to show that the invariants catch it.
/// Selected by the simulation only.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Variant {
    /// Everything as it is.
    #[default]
    Correct,
    /// In the pager's code (`klaxon_paging::broken`): a record the bus sent
    /// the pager twice is folded twice.
    DuplicateApplied,
    /// The notifier's feed passes a repeated message on: a record is folded twice.
    NotifierDuplicateApplied,
    /// In the pager's code (`klaxon_paging::broken`): an acknowledgement
    /// folded while a page of its incident is being delivered is dropped.
    AckIgnoredWhileDelivering,
    /// The pager's clock runs two minutes late: escalations fire late.
    LateTimer,
}

/// How often each fault happens.
#[derive(Clone, Copy, Debug)]
pub struct Faults {
    /// Probability that a feed message is lost.
    pub drop: f64,
    /// Probability that a feed message comes twice.
    pub duplicate: f64,
    /// Most steps a feed message is delayed (so messages overtake each other).
    pub delay_steps_max: u64,
    /// Probability per step that a service host crashes.
    pub crash: f64,
    /// Most steps a crashed host stays down.
    pub down_steps_max: u64,
    /// Probability per step that the log's next sync fails.
    pub sync_failure: f64,
    /// Probability that a delivery fails.
    pub delivery_failure: f64,
    /// Most steps a delivery takes.
    pub delivery_delay_steps_max: u64,
}

impl Default for Faults {
    fn default() -> Faults {
        Faults {
            drop: 0.1,
            duplicate: 0.1,
            delay_steps_max: 3,
            crash: 0.01,
            down_steps_max: 8,
            sync_failure: 0.004,
            delivery_failure: 0.1,
            delivery_delay_steps_max: 3,
        }
    }
}

/// One run's settings.
#[derive(Clone, Debug)]
pub struct Options {
    /// Steps (one simulated second each).
    pub steps: u64,
    /// Probability per step of a user operation.
    pub operation: f64,
    /// The faults.
    pub faults: Faults,
    /// Which code runs.
    pub variant: Variant,
    /// Planned actions left out (indices into the plan), when shrinking.
    pub skip: Vec<usize>,
}

impl Default for Options {
    fn default() -> Options {
        Options { steps: 300, operation: 0.2, faults: Faults::default(), variant: Variant::Correct, skip: Vec::new() }
    }
}

/// The simulated length of a step.
pub const TICK: Duration = Duration::from_secs(1);

/// Steps a restarted pager gets before its timers are checked.
pub const GRACE_STEPS: u64 = 15;

/// The service hosts.
pub const HOSTS: [&str; 4] = ["intake", "severity", "paging", "notifier"];

/// What a user does; the target is picked when it runs, from what exists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    /// Report an issue and declare it (a Sev-1 unless `sev2`).
    Report {
        /// Declared as a Sev-2 (which pages nobody).
        sev2: bool,
    },
    /// The paged responder acknowledges a page.
    Acknowledge(u64),
    /// A manager takes command.
    Assign(u64),
    /// The commander hands off to the other manager, who accepts.
    Handoff(u64),
    /// A scribe is assigned.
    AssignRole(u64),
    /// The incident is mitigated.
    Mitigate(u64),
    /// The incident is resolved.
    Resolve(u64),
}

/// One planned action.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// A user operation.
    Operate(Operation),
    /// A host crashes, and comes back after `down` steps.
    Crash {
        /// Which (an index into [`HOSTS`]).
        host: usize,
        /// For how long.
        down: u64,
    },
    /// The log's next sync fails (the log is reopened the step after).
    FailSync,
}

/// The plan a seed makes: what happens at which step.
pub fn plan(seed: u64, options: &Options) -> Vec<(u64, Action)> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut plan = Vec::new();
    for step in 1..=options.steps {
        if rng.random_bool(options.operation) {
            let pick: u64 = rng.random();
            let operation = match rng.random_range(0..10) {
                0..=2 => Operation::Report { sev2: rng.random_bool(0.2) },
                3..=4 => Operation::Acknowledge(pick),
                5 => Operation::Assign(pick),
                6 => Operation::Handoff(pick),
                7 => Operation::AssignRole(pick),
                8 => Operation::Mitigate(pick),
                _ => Operation::Resolve(pick),
            };
            plan.push((step, Action::Operate(operation)));
        }
        if rng.random_bool(options.faults.crash) {
            let host = rng.random_range(0..HOSTS.len());
            let down = rng.random_range(1..=options.faults.down_steps_max);
            plan.push((step, Action::Crash { host, down }));
        }
        if rng.random_bool(options.faults.sync_failure) {
            plan.push((step, Action::FailSync));
        }
    }
    plan
}

/// A broken invariant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The step it was found after.
    pub step: u64,
    /// Which invariant (a short name).
    pub invariant: &'static str,
    /// What exactly.
    pub detail: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "after step {}: {}: {}", self.step, self.invariant, self.detail)
    }
}

/// What a run came to.
#[derive(Debug)]
pub struct Run {
    /// The seed.
    pub seed: u64,
    /// What happened (operations, faults, sends, then the log's records).
    pub trace: Vec<String>,
    /// The first broken invariant, if any.
    pub violation: Option<Violation>,
}

/// The time the simulation starts at.
pub fn start_time() -> DateTime<Utc> {
    "2026-11-25T10:00:00Z".parse().expect("a valid time")
}

/// The handles the driver uses, set by the hosts as they (re)start.
#[derive(Default)]
struct Handles {
    /// Each of these with the number of the host's start it belongs to
    /// but the pager's.
    intake: Mutex<Option<(klaxon_intake::Handle, u64)>>,
    pager: Mutex<Option<klaxon_paging::Handle>>,
    severity: Mutex<Option<(klaxon_reactor::Handle<klaxon_severity::Assessing>, u64)>>,
    notifier: Mutex<Option<(klaxon_reactor::Handle<klaxon_notifier::Notifying>, u64)>>,
    starts: AtomicU64,
}

/// Runs the simulation of `seed`.
pub fn run(seed: u64, options: &Options) -> Run {
    let dir = scratch_dir();
    let world = World::new(dir.path().to_path_buf(), seed, options.faults, options.variant, start_time());
    let config = Arc::new(Config::load());
    let handles = Arc::new(Handles::default());
    let mut sim = turmoil::Builder::new()
        .tick_duration(TICK)
        .simulation_duration(TICK * (options.steps as u32 + 10))
        .rng_seed(seed)
        .build();
    {
        let (world1, handles1) = (world.clone(), handles.clone());
        sim.host("intake", move || {
            let (world, handles) = (world1.clone(), handles1.clone());
            async move {
                let intake = klaxon_intake::Intake::new(
                    SimLog::new(world.clone(), "intake").bus(),
                    Default::default(),
                    HostClock::new("intake", world.clock.shared()),
                );
                *handles.intake.lock().expect("lock") =
                    Some((intake.handle(), handles.starts.fetch_add(1, Ordering::SeqCst)));
                if let Err(e) = intake.run(CancellationToken::new()).await {
                    world.note(format!("intake stopped: {e}"));
                }
                Ok(())
            }
        });
        let (world2, config2, handles2) = (world.clone(), config.clone(), handles.clone());
        sim.host("severity", move || {
            let (world, config, handles) = (world2.clone(), config2.clone(), handles2.clone());
            async move {
                let evaluator = klaxon_severity::Evaluator::new(
                    SimLog::new(world.clone(), "severity").bus(),
                    config.rules.clone(),
                    config.pager.catalog.clone(),
                    HostClock::new("severity", world.clock.shared()),
                );
                *handles.severity.lock().expect("lock") =
                    Some((evaluator.handle().reactor().clone(), handles.starts.fetch_add(1, Ordering::SeqCst)));
                if let Err(e) = evaluator.run(CancellationToken::new()).await {
                    world.note(format!("severity stopped: {e}"));
                }
                Ok(())
            }
        });
        let (world3, config3, handles3, variant) = (world.clone(), config.clone(), handles.clone(), options.variant);
        sim.host("paging", move || {
            let (world, config, handles) = (world3.clone(), config3.clone(), handles3.clone());
            async move {
                let clock: Arc<dyn klaxon_reactor::Clock> = match variant {
                    Variant::LateTimer => {
                        Arc::new(LateClock { clock: world.clock.clone(), lag: TimeDelta::minutes(2) })
                    }
                    _ => world.clock.shared(),
                };
                let clock = HostClock::new("paging", clock);
                let bus = SimLog::new(world.clone(), "paging").bus();
                let pager = match variant {
                    Variant::AckIgnoredWhileDelivering => {
                        Pager::new_broken(bus, config.pager.clone(), clock, Broken::AckIgnoredWhileDelivering)
                    }
                    Variant::DuplicateApplied => {
                        let repeated = world.clone();
                        let broken = Broken::DuplicateApplied(Arc::new(move |record: &klaxon_log::Record| {
                            repeated.repeated_to_pager.lock().expect("lock").contains(&record.position.0)
                        }));
                        Pager::new_broken(bus, config.pager.clone(), clock, broken)
                    }
                    _ => Pager::new(bus, config.pager.clone(), clock),
                }
                .with_outbox(Recorder::new(world.clone(), TICK));
                *handles.pager.lock().expect("lock") = Some(pager.handle());
                if let Err(e) = pager.run(CancellationToken::new()).await {
                    world.note(format!("paging stopped: {e}"));
                }
                Ok(())
            }
        });
        let (world4, config4, handles4) = (world.clone(), config.clone(), handles.clone());
        sim.host("notifier", move || {
            let (world, config, handles) = (world4.clone(), config4.clone(), handles4.clone());
            async move {
                let notifier = klaxon_notifier::Notifier::new(
                    SimLog::new(world.clone(), "notifier").bus(),
                    config.notifier_options(),
                    HostClock::new("notifier", world.clock.shared()),
                );
                *handles.notifier.lock().expect("lock") =
                    Some((notifier.handle().reactor().clone(), handles.starts.fetch_add(1, Ordering::SeqCst)));
                if let Err(e) = notifier.run(CancellationToken::new()).await {
                    world.note(format!("notifier stopped: {e}"));
                }
                Ok(())
            }
        });
    }
    let shared_queue = Arc::new(Mutex::new(VecDeque::<(usize, Operation, Vec<Request>)>::new()));
    {
        let (world, handles, queue) = (world.clone(), handles.clone(), shared_queue.clone());
        sim.client("driver", async move {
            loop {
                let next = queue.lock().expect("lock").pop_front();
                match next {
                    Some((index, operation, commands)) => drive(&world, &handles, index, operation, commands).await,
                    None => tokio::time::sleep(TICK).await,
                }
            }
        });
    }

    let planned = plan(seed, options);
    let mut down: Vec<Option<u64>> = vec![None; HOSTS.len()];
    let mut up_since = 0;
    let mut violation = None;
    let mut checker = check::Checker::new(&config);
    let debug = std::env::var_os("KLAXON_SIM_DEBUG").is_some();
    for step in 1..=options.steps {
        if debug {
            eprintln!("step {step}: {:?}", world.trace.lock().expect("lock").last());
        }
        world.advance(TICK);
        if *world.log_failed.lock().expect("lock") {
            world.note("log reopened after a failed sync".into());
            world.reopen_log();
        }
        for (index, (_, action)) in
            planned.iter().enumerate().filter(|(i, (s, _))| *s == step && !options.skip.contains(i))
        {
            match *action {
                Action::Operate(operation) => {
                    let commands = checker.requests(operation);
                    shared_queue.lock().expect("lock").push_back((index, operation, commands));
                }
                Action::Crash { host, down: steps } => {
                    if down[host].is_none() {
                        world.note(format!("crash {} for {steps} steps", HOSTS[host]));
                        sim.crash(HOSTS[host]);
                        clear(&handles, HOSTS[host]);
                        down[host] = Some(step + steps);
                    }
                }
                Action::FailSync => {
                    world.note("the log's next sync fails".into());
                    world.sync_fault.lock().expect("lock").fail_after(0);
                }
            }
        }
        for (host, until) in down.iter_mut().enumerate() {
            if until.is_some_and(|u| u <= step) {
                world.note(format!("restart {}", HOSTS[host]));
                sim.bounce(HOSTS[host]);
                *until = None;
            }
        }
        for (host, name) in HOSTS.iter().enumerate() {
            if down[host].is_none() && !sim.is_host_running(*name) {
                world.note(format!("restart {name} (it stopped)"));
                clear(&handles, name);
                sim.bounce(*name);
            }
        }
        if down[2].is_some() || !sim.is_host_running("paging") {
            up_since = step + 1;
        }
        if let Err(e) = sim.step() {
            violation = Some(Violation { step, invariant: "simulation", detail: e.to_string() });
            break;
        }
        if !sim.is_host_running("paging") {
            up_since = step + 1;
        }
        let pager = handles.pager.lock().expect("lock").clone().filter(|_| down[2].is_none());
        let severity = handles.severity.lock().expect("lock").clone().filter(|_| down[1].is_none());
        let notifier = handles.notifier.lock().expect("lock").clone().filter(|_| down[3].is_none());
        let intake = handles.intake.lock().expect("lock").clone().filter(|_| down[0].is_none());
        let running = check::Running {
            intake: intake.as_ref().map(|(h, n)| (h, *n)),
            pager: pager.as_ref(),
            severity: severity.as_ref().map(|(h, n)| (h, *n)),
            notifier: notifier.as_ref().map(|(h, n)| (h, *n)),
        };
        if let Err(v) = checker.check(&world, step, &running, step >= up_since + GRACE_STEPS) {
            violation = Some(v);
            break;
        }
        let folded = pager.map_or(0, |p| p.reactor().applied().0);
        world.pager_folded.store(folded, Ordering::SeqCst);
    }
    let mut trace = std::mem::take(&mut *world.trace.lock().expect("lock"));
    for record in world::records(&world.log()) {
        trace.push(format!("log {} {} {} {}", record.position, record.stream, record.kind, record.data.as_str()));
    }
    // The hosts go before the folder does.
    drop(sim);
    Run { seed, trace, violation }
}

/// A command the driver sends, and as whom.
#[derive(Clone, Debug)]
pub enum Request {
    /// Through intake.
    Intake(Option<klaxon_domain::ids::IncidentId>, Command, ActorId),
    /// An acknowledgement through paging.
    Ack(klaxon_domain::paging::PageId, ActorId),
}

fn clear(handles: &Handles, host: &str) {
    match host {
        "intake" => *handles.intake.lock().expect("lock") = None,
        "paging" => *handles.pager.lock().expect("lock") = None,
        "severity" => *handles.severity.lock().expect("lock") = None,
        "notifier" => *handles.notifier.lock().expect("lock") = None,
        _ => {}
    }
}

/// Carries out one operation's commands, in order, noting each outcome.
async fn drive(world: &World, handles: &Handles, index: usize, operation: Operation, commands: Vec<Request>) {
    if commands.is_empty() {
        world.note(format!("op#{index} {operation:?}: nothing to do"));
    }
    let mut reported = None;
    for (n, command) in commands.into_iter().enumerate() {
        let request_id = Some(format!("sim-{index}-{n}"));
        let outcome = match &command {
            Request::Intake(incident, c, actor) => {
                let intake = handles.intake.lock().expect("lock").clone().map(|(intake, _)| intake);
                let Some(intake) = intake else {
                    world.note(format!("op#{index} {command:?}: intake is down"));
                    return;
                };
                let ctx = CommandContext { request_id, ..CommandContext::by(actor.clone()) };
                match incident.or(reported) {
                    None => intake.report(c.clone(), &ctx).await.map(|r| {
                        reported = Some(r.incident);
                        format!("{}", r.incident)
                    }),
                    Some(id) => intake.execute(id, c.clone(), &ctx).await.map(|_| format!("ok ({id})")),
                }
                .map_err(|e| e.to_string())
            }
            Request::Ack(page, actor) => {
                let pager = handles.pager.lock().expect("lock").clone();
                let Some(pager) = pager else {
                    world.note(format!("op#{index} {command:?}: paging is down"));
                    return;
                };
                let key = klaxon_domain::ids::RequestKey::new(
                    klaxon_domain::ids::RequestScope::Acknowledgement,
                    actor,
                    "request_id",
                    request_id.as_deref().unwrap_or_default(),
                );
                match key {
                    Ok(key) => pager.acknowledge(*page, actor, key.as_ref()).await.map(|(_, p)| format!("at {p}")),
                    Err(e) => Err(klaxon_paging::Error::from(e)),
                }
                .map_err(|e| e.to_string())
            }
        };
        let failed = outcome.is_err();
        world.note(format!(
            "op#{index} {}: {}",
            describe(&command),
            outcome.unwrap_or_else(|e| format!("refused: {e}"))
        ));
        if failed {
            return;
        }
    }
}

fn describe(command: &Request) -> String {
    match command {
        Request::Intake(None, c, by) => format!("{} by {by}", command_name(c)),
        Request::Intake(Some(id), c, by) => format!("{} {id} by {by}", command_name(c)),
        Request::Ack(page, by) => format!("acknowledge {page} by {by}"),
    }
}

fn command_name(command: &Command) -> String {
    let debug = format!("{command:?}");
    debug.split([' ', '{']).next().unwrap_or_default().to_string()
}

/// A report, as monitoring sends it.
pub fn report(n: usize) -> Command {
    Command::ReportIssue {
        source: ReportSource::Alertmanager,
        reporter: actor("monitor"),
        title: format!("Checkout fails ({n})"),
        description: String::new(),
        service: Some("payments".parse().expect("a valid service")),
        customers: vec![],
        labels: Default::default(),
        dedup_key: None,
        started_at: None,
    }
}

/// An actor id.
pub fn actor(name: &str) -> ActorId {
    ActorId::new(name).expect("a valid actor")
}

/// The declaration of a report.
pub fn declare(sev2: bool) -> Command {
    Command::DeclareIncident { severity: if sev2 { Severity::Sev2 } else { Severity::Sev1 } }
}

/// A scribe.
pub fn scribe() -> Command {
    Command::AssignRole { role: IncidentRole::Scribe, person: actor("dave") }
}

/// A folder for the log: in memory (`/dev/shm`) where there is one, so
/// that thousands of seeds do not wear a disk; the syncs are real either way.
fn scratch_dir() -> tempfile::TempDir {
    let shm = std::path::Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(dir) = tempfile::Builder::new().prefix("klaxon-sim-").tempdir_in(shm) {
            return dir;
        }
    }
    tempfile::Builder::new().prefix("klaxon-sim-").tempdir().expect("a temporary folder")
}

/// The outcome of exploring many seeds.
#[derive(Debug)]
pub struct Exploration {
    /// Seeds run.
    pub seeds: u64,
    /// The first failing run, shrunk.
    pub failure: Option<Shrunk>,
}

/// A failing run made as short as it would go.
#[derive(Debug)]
pub struct Shrunk {
    /// The seed.
    pub seed: u64,
    /// The steps it needs.
    pub steps: u64,
    /// Planned actions left out (indices into the plan).
    pub skip: Vec<usize>,
    /// The violation of the shortest run.
    pub violation: Violation,
    /// Its trace.
    pub trace: Vec<String>,
}

impl std::fmt::Display for Shrunk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "simulation failed: seed {} ({})", self.seed, self.violation)?;
        let skip: Vec<String> = self.skip.iter().map(ToString::to_string).collect();
        writeln!(
            f,
            "replay: KLAXON_SIM_SEED={} KLAXON_SIM_STEPS={} KLAXON_SIM_SKIP={} cargo test -p klaxon-sim -- --exact replay --nocapture",
            self.seed,
            self.steps,
            skip.join(",")
        )?;
        writeln!(f, "shortest trace ({} lines):", self.trace.len())?;
        for line in &self.trace {
            writeln!(f, "  {line}")?;
        }
        Ok(())
    }
}

/// Runs seeds `first..first + count` on every core (each run is a world
/// of its own) and shrinks the lowest failing seed. A worker skips the
/// seeds above a failure found already; `seeds` counts the seeds up to and
/// including the failing one (all of them when none fails).
pub fn explore(first: u64, count: u64, options: &Options) -> Exploration {
    let workers = std::thread::available_parallelism().map_or(1, usize::from).clamp(1, 8) as u64;
    let lowest_failing = AtomicU64::new(u64::MAX);
    let failures = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for worker in 0..workers {
            let (lowest_failing, failures) = (&lowest_failing, &failures);
            scope.spawn(move || {
                let mut seed = first + worker;
                while seed < first + count && seed < lowest_failing.load(Ordering::SeqCst) {
                    if let Some(violation) = run(seed, options).violation {
                        lowest_failing.fetch_min(seed, Ordering::SeqCst);
                        failures.lock().expect("lock").push((seed, violation));
                    }
                    seed += workers;
                }
            });
        }
    });
    let lowest = failures.into_inner().expect("lock").into_iter().min_by_key(|(seed, _)| *seed);
    match lowest {
        Some((seed, violation)) => {
            Exploration { seeds: seed - first + 1, failure: Some(shrink(seed, options, violation)) }
        }
        None => Exploration { seeds: count, failure: None },
    }
}

/// Shrinks a failing run: first to the steps it needs, then leaving out
/// planned actions one at a time while the same invariant still breaks
/// (at most [`SHRINK_RUNS_MAX`] runs).
pub fn shrink(seed: u64, options: &Options, violation: Violation) -> Shrunk {
    let mut options = Options { steps: violation.step, ..options.clone() };
    let mut best = violation;
    let mut trace = run(seed, &options).trace;
    let planned = plan(seed, &options);
    for index in (0..planned.len()).rev().take(SHRINK_RUNS_MAX) {
        let mut skip = options.skip.clone();
        skip.push(index);
        let candidate = Options { skip, ..options.clone() };
        let attempt = run(seed, &candidate);
        if let Some(v) = attempt.violation.filter(|v| v.invariant == best.invariant) {
            options = Options { steps: v.step, ..candidate };
            best = v;
            trace = attempt.trace;
        }
    }
    options.skip.sort_unstable();
    Shrunk { seed, steps: options.steps, skip: options.skip, violation: best, trace }
}

/// Most runs one shrink makes.
pub const SHRINK_RUNS_MAX: usize = 40;
