//! The simulation's tests: seeds explored against the correct services,
//! the same seed replaying the same trace, and each broken variant caught
//! within a bounded number of seeds.
#![allow(missing_docs)]

use klaxon_sim::{Options, Variant, explore, run};

/// Seeds the exploration runs: `KLAXON_SIM_SEEDS`, or `default`.
fn seeds(default: u64) -> u64 {
    std::env::var("KLAXON_SIM_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(default)
}

/// The first seed: `KLAXON_SIM_FIRST_SEED`, or 1 (the soak script moves it).
fn first_seed() -> u64 {
    std::env::var("KLAXON_SIM_FIRST_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(1)
}

#[test]
fn the_services_keep_every_invariant_over_many_seeds() {
    let (first, count) = (first_seed(), seeds(300));
    let explored = explore(first, count, &Options::default());
    if let Some(failure) = &explored.failure {
        panic!("{failure}");
    }
    println!("seeds {first}..{} kept every invariant", first + count);
}

#[test]
fn the_same_seed_replays_the_same_trace() {
    for seed in [7, 11, 23] {
        same_trace(seed);
    }
}

fn same_trace(seed: u64) {
    let first = run(seed, &Options::default());
    let again = run(seed, &Options::default());
    assert!(first.trace.len() > 100, "the run did something: {} lines", first.trace.len());
    assert!(first.trace.iter().any(|l| l.contains("page.responder_paged.v1")), "something was paged");
    if let Some(i) = (0..first.trace.len().max(again.trace.len())).find(|i| first.trace.get(*i) != again.trace.get(*i))
    {
        panic!(
            "seed {seed} did not replay exactly; from line {i}:\n{:?}\n{:?}",
            &first.trace[i.min(first.trace.len())..(i + 5).min(first.trace.len())],
            &again.trace[i.min(again.trace.len())..(i + 5).min(again.trace.len())]
        );
    }
    let other = run(seed + 1, &Options::default());
    assert_ne!(first.trace, other.trace, "another seed is another run");
}

/// `KLAXON_SIM_SEED=… [KLAXON_SIM_STEPS=… KLAXON_SIM_SKIP=…] cargo test -p
/// klaxon-sim -- --exact replay --nocapture` replays one run and prints its trace; without
/// `KLAXON_SIM_SEED` it replays seed 1.
#[test]
fn replay() {
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let seed = env("KLAXON_SIM_SEED").and_then(|s| s.parse().ok()).unwrap_or(1);
    let mut options = Options::default();
    if let Some(steps) = env("KLAXON_SIM_STEPS").and_then(|s| s.parse().ok()) {
        options.steps = steps;
    }
    if let Some(skip) = env("KLAXON_SIM_SKIP") {
        options.skip = skip.split(',').filter_map(|i| i.parse().ok()).collect();
    }
    let replayed = run(seed, &options);
    for line in &replayed.trace {
        println!("{line}");
    }
    if let Some(violation) = replayed.violation {
        panic!("seed {seed}: {violation}");
    }
}

/// Each broken variant must be caught within this many seeds.
const CAUGHT_WITHIN: u64 = 20;

fn caught(variant: Variant, invariants: &[&str]) {
    let options = Options { variant, ..Options::default() };
    let explored = explore(1, CAUGHT_WITHIN, &options);
    let failure = explored.failure.unwrap_or_else(|| panic!("{variant:?} was not caught in {CAUGHT_WITHIN} seeds"));
    println!("{variant:?} caught after {} seed(s):\n{failure}", explored.seeds);
    assert!(invariants.contains(&failure.violation.invariant), "{variant:?}: {failure}");
    // The shrunk run replays: the same violation at the same step.
    let replayed = run(failure.seed, &Options { steps: failure.steps, skip: failure.skip.clone(), ..options });
    assert_eq!(replayed.violation.as_ref(), Some(&failure.violation), "the shrunk run replays");
}

#[test]
fn a_duplicate_message_folded_twice_is_caught() {
    // A bug in the pager's own fold (klaxon_paging::broken, feature sim-variants).
    caught(Variant::DuplicateApplied, &["projection equals rebuild"]);
}

#[test]
fn an_acknowledgement_ignored_during_a_delivery_is_caught() {
    // A bug in the pager's own fold (klaxon_paging::broken, feature
    // sim-variants): its projection lacks the acknowledgement (or it pages again).
    caught(Variant::AckIgnoredWhileDelivering, &["projection equals rebuild", "no page after acknowledgement"]);
}

#[test]
fn a_late_escalation_timer_is_caught() {
    caught(Variant::LateTimer, &["escalation on time"]);
}

#[test]
fn a_duplicate_message_folded_twice_by_the_notifier_is_caught() {
    // Only the notifier's projection differs: the pager's check never sees it.
    caught(Variant::NotifierDuplicateApplied, &["projection equals rebuild"]);
}
