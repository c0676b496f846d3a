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
