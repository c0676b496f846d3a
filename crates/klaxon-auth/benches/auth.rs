//! What authentication costs per call: the token lookup (a stat of the
//! token file, a SHA-256 and a map lookup), the policy table and the rate
//! limiter, with a token file of 1,000 principals. Prints a table.

use std::hint::black_box;
use std::num::NonZeroU32;
use std::time::Instant;

use klaxon_auth::policy::decide;
use klaxon_auth::tokens::{self, TokenFile};
use klaxon_auth::{RateLimit, Role, TokenStore};

const CALLS: u32 = 200_000;

fn time(what: &str, mut f: impl FnMut(u32)) {
    for i in 0..CALLS / 10 {
        f(i);
    }
    let started = Instant::now();
    for i in 0..CALLS {
        f(i);
    }
    let per_call = started.elapsed().as_nanos() as f64 / f64::from(CALLS);
    println!("| {what:<44} | {per_call:>9.0} | {:>12.0} |", 1e9 / per_call);
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokens.toml");
    let mut file = TokenFile::default();
    let tokens: Vec<String> =
        (0..1000).map(|i| file.create(&format!("person-{i}"), Role::Engineer, &[]).unwrap()).collect();
    file.write(&path).unwrap();
    let store = TokenStore::open(&path).unwrap();
    let rate = RateLimit::new(NonZeroU32::new(1_000_000).unwrap(), NonZeroU32::new(1_000_000).unwrap());
    let unknown = tokens::generate();

    println!("| per call ({CALLS} calls, 1,000 principals)       |        ns |    calls / s |");
    println!("| -------------------------------------------- | --------: | -----------: |");
    time("authenticate a valid token (stat + SHA-256)", |i| {
        black_box(store.authenticate(&tokens[i as usize % tokens.len()]).unwrap());
    });
    time("authenticate an unknown token", |_| {
        black_box(store.authenticate(&unknown).unwrap_err());
    });
    time("policy table: decide(method, role)", |i| {
        black_box(decide("/klaxon.v1.Review/Trends", Role::ALL[i as usize % 5]));
    });
    let principals: Vec<_> = tokens.iter().map(|t| store.authenticate(t).unwrap()).collect();
    time("rate limit: check(principal)", |i| {
        rate.check(black_box(&principals[i as usize % principals.len()])).unwrap();
    });
    time("SHA-256 of a token alone", |i| {
        black_box(tokens::hash(&tokens[i as usize % tokens.len()]));
    });
}
