//! Scraping a process's Prometheus metrics in tests.

use std::collections::BTreeMap;

use crate::alertmanager::http_as;

/// `GET /metrics` at `address` with the services' token, as
/// `name{labels} -> value` (comments left out).
pub fn scrape(address: &str) -> BTreeMap<String, f64> {
    let token = crate::auth::token(crate::auth::SERVICE);
    let (status, body) = http_as(address, Some(token), "GET", "/metrics", b"").expect("GET /metrics");
    assert_eq!(status, 200, "{body}");
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (name, value) = l.rsplit_once(' ').unwrap_or_else(|| panic!("a sample line: {l:?}"));
            (name.to_owned(), value.parse().unwrap_or_else(|_| panic!("a number in {l:?}")))
        })
        .collect()
}

/// The end-to-end barrier: waits (at most 30 s) until the system is quiet.
/// The log head is read from the metrics at `log`; every service whose
/// metrics are at one of `services` reports (`klaxon_processed_position`)
/// that it has processed the log up to that head (folded it, carried out
/// what it decided, folded that back); and the head has not moved
/// meanwhile, so no service's reaction is left for another to process.
/// Returns the head. After it, a test may assert that nothing else happened.
pub fn settle(log: &str, services: &[&str]) -> u64 {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let head = || scrape(log)["klaxon_log_head"] as u64;
    loop {
        let before = head();
        let mut behind = Vec::new();
        for address in services {
            for (name, value) in scrape(address) {
                if name.starts_with("klaxon_processed_position{") && (value as u64) < before {
                    behind.push(format!("{name} {value}"));
                }
            }
        }
        if behind.is_empty() && head() == before {
            return before;
        }
        assert!(std::time::Instant::now() < deadline, "not processed up to {before} within 30 s: {behind:?}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
