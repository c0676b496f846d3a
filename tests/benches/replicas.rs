//! Paging on two replicas: how long a page waits when one replica dies.
//!
//! `cargo bench -p klaxon-tests --bench replicas` starts real processes: a
//! `nats-server -js`, one `klaxond serve log`, two replicas of every
//! service role (`--replica-id paging`, `paging-2`, …), the gateway, and a
//! signed-webhook receiver, with `[replica] claim_lease_ms` =
//! `KLAXON_BENCH_LEASE_MS` (default 1000).
//!
//! - **Baseline**: a Sev-1 reported through the gateway (the `klaxon` CLI)
//!   to its page received, both paging replicas alive.
//! - **Kill**: `KLAXON_BENCH_KILLS` (default 10) times, a Sev-1 is reported
//!   and one paging replica (alternately) is SIGKILLed at once, while it
//!   may hold the page's claim; measured from the kill to the page
//!   received. A claim held by the killed replica is taken over when its
//!   lease expires, so the times range from the survivor delivering at once
//!   to the lease plus the pipeline. The killed replica is restarted (on
//!   its address, same id) before the next round.
#![allow(missing_docs)]

use std::time::{Duration, Instant};

use klaxon_tests::cluster::Cluster;
use klaxon_tests::config::{Paged, SECRET_ENV};

fn report(url: &str, n: usize) -> String {
    let title = format!("Checkout fails {n}");
    let args =
        ["report", "--title", title.as_str(), "--service", "payments", "--customer", "acme", "--customer", "globex"];
    klaxon_tests::klaxon_ok(url, "monitor", &args).trim().to_owned()
}

/// Waits until the page of incident `id` (key `<id>-P1`) was accepted.
fn page_received(paged: &Paged, id: &str) -> Instant {
    let key = format!("{id}-P1");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if paged.receiver.requests().iter().any(|r| r.status < 300 && r.idempotency_key == key) {
            return Instant::now();
        }
        assert!(Instant::now() < deadline, "{key} not delivered within 60 s");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn main() {
    let kills = std::env::var("KLAXON_BENCH_KILLS").ok().and_then(|s| s.parse().ok()).unwrap_or(10);
    let lease_ms: u64 = std::env::var("KLAXON_BENCH_LEASE_MS").ok().and_then(|s| s.parse().ok()).unwrap_or(1000);
    klaxon_tests::build_klaxond_for_bench();
    let paged = Paged::start(600, false, &format!("[replica]\nclaim_lease_ms = {lease_ms}\n"));
    let mut cluster = Cluster::start_replicated(paged.dir.path(), &paged.config, &[(SECRET_ENV, &paged.secret)], 2);
    let mut n = 0;
    let mut baseline = Vec::new();
    for _ in 0..kills.max(1) {
        n += 1;
        let started = Instant::now();
        let id = report(&cluster.url, n);
        baseline.push(page_received(&paged, &id) - started);
    }
    let mut times = Vec::new();
    for round in 0..kills {
        let label = if round % 2 == 0 { "paging" } else { "paging-2" };
        n += 1;
        let id = report(&cluster.url, n);
        let killed = Instant::now();
        cluster.kill(label);
        times.push(page_received(&paged, &id) - killed);
        cluster.restart(label);
    }
    cluster.stop();

    let ms = |d: &Duration| d.as_secs_f64() * 1000.0;
    let row = |what: &str, times: &mut Vec<Duration>| {
        times.sort();
        if let (Some(min), Some(max)) = (times.first(), times.last()) {
            let p50 = times[times.len() / 2];
            println!("| {what} | {} | {:.0} | {:.0} | {:.0} |", times.len(), ms(&p50), ms(max), ms(min));
        }
    };
    println!();
    println!("paging on two replicas (claim lease {lease_ms} ms, real processes on loopback)");
    println!();
    println!("| measure | runs | p50 ms | max ms | min ms |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    row("report -> page, both replicas alive (baseline)", &mut baseline);
    row("SIGKILL of a paging replica -> page delivered", &mut times);
}
