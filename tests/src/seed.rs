//! Seeds of randomized tests (crash, kill and rebuild tests): taken from
//! `KLAXON_SEED` when it is set, fresh otherwise, and always printed, so a
//! failing run is replayed with `KLAXON_SEED=<seed> cargo nextest run …`.
//!
//! One file for every test binary: `klaxon-tests` exports it as
//! `klaxon_tests::seed`, and crates whose tests do not depend on
//! `klaxon-tests` include it with `#[path]`.

/// The environment variable a run's seed is read from.
pub const SEED_VAR: &str = "KLAXON_SEED";

/// The seed of `test`: `KLAXON_SEED` when set (a `u64`), else a fresh one.
/// Printed either way; seed the test's generator with it
/// (`StdRng::seed_from_u64`).
pub fn seed(test: &str) -> u64 {
    let seed = match std::env::var(SEED_VAR) {
        Ok(value) => value.trim().parse().unwrap_or_else(|_| panic!("{SEED_VAR}={value:?} is not a u64")),
        Err(_) => rand::random(),
    };
    println!("{test}: seed {seed} (replay with {SEED_VAR}={seed})");
    seed
}
