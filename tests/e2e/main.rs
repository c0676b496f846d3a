//! End-to-end tests: real `klaxond` processes, the real `klaxon` CLI, real
//! gRPC over loopback.
#![allow(missing_docs)]

mod alertmanager;
mod audit;
mod auth;
mod backup;
mod catalog;
mod distributed;
mod email;
mod history;
mod layers;
mod lifecycle;
mod limits;
mod log_group;
mod logs;
mod metrics;
mod notifier;
mod oncall;
mod one_mapping;
mod otlp;
mod paging;
mod policy;
mod readme;
mod rebuild;
mod replicas;
mod retries;
mod review;
mod review_service;
mod room;
mod seams;
mod snapshots;
mod status_page;
mod tls;
mod trends;

/// Polls `probe` (every 50 ms, at most 30 s) until it gives a value.
fn eventually<T>(what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        if let Some(value) = probe() {
            return value;
        }
        assert!(std::time::Instant::now() < deadline, "{what} did not happen within 30 s");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Waits (at most 30 s) until the file at `path` (a process's log or
/// stderr) holds every one of `words`, and returns its text; the failure
/// shows what it held.
fn file_says(path: &std::path::Path, words: &[&str]) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if words.iter().all(|w| text.contains(w)) {
            return text;
        }
        assert!(std::time::Instant::now() < deadline, "{} lacks one of {words:?}:\n{text}", path.display());
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// `klaxon_config_reloads_total{result}` of the process serving `http`.
fn reloads(http: &str, result: &str) -> f64 {
    klaxon_tests::metrics::scrape(http)
        .get(&format!("klaxon_config_reloads_total{{result=\"{result}\"}}"))
        .copied()
        .unwrap_or(0.0)
}
