//! Prometheus metrics of a real `klaxond up`, scraped over HTTP after a
//! Sev-1 was paged and acknowledged.

use std::time::{Duration, Instant};

use klaxon_tests::config::Paged;
use klaxon_tests::metrics::scrape;
use klaxon_tests::{Klaxond, Lines, klaxon_ok};

#[test]
fn metrics_count_appends_pages_acknowledgements_feeds_and_consumer_lag() {
    let paged = Paged::start(600, false, "");
    let server = Klaxond::start_with_env(&paged.dir.path().join("data"), &paged.config_args(), &paged.env());
    let address = server.http_address.clone().expect("the HTTP address");
    let before = scrape(&address);
    assert_eq!(before["klaxon_pages_delivered_total"], 0.0);
    // Only what the start recorded: the configuration and every token.
    let started = (1 + klaxon_tests::auth::PEOPLE.len()) as f64;
    assert_eq!(before["klaxon_log_head"], started);

    let id = klaxon_ok(
        &server.url,
        "monitor",
        &["report", "--title", "Checkout down", "--service", "payments", "--customer", "a", "--customer", "b"],
    );
    let id = id.trim();
    paged.runtime.block_on(paged.receiver.wait_for_delivered(1, Duration::from_secs(20)));
    let deadline = Instant::now() + Duration::from_secs(20);
    while klaxon_ok(&server.url, "ana", &["--json", "pages", id]).contains("\"delivery\":null") {
        assert!(Instant::now() < deadline, "the delivery is recorded");
        std::thread::sleep(Duration::from_millis(50));
    }
    klaxon_ok(&server.url, "ana", &["ack", &format!("{id}-P1")]);
    let feed = Lines::start(&server.url, "ceo", &["watch"]);
    feed.next(Duration::from_secs(20)).expect("the feed's snapshot");

    let deadline = Instant::now() + Duration::from_secs(20);
    let after = loop {
        let m = scrape(&address);
        let settled = m.iter().filter(|(k, _)| k.starts_with("klaxon_consumer_lag_records")).all(|(_, v)| *v == 0.0);
        if settled && m["klaxon_pages_acknowledged_total"] == 1.0 {
            break m;
        }
        assert!(Instant::now() < deadline, "the metrics settle: {m:?}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(after["klaxon_pages_delivered_total"], 1.0);
    assert_eq!(after["klaxon_pages_escalated_total"], 0.0);
    assert_eq!(after["klaxon_slo_breaches_total"], 0.0);
    assert_eq!(after["klaxon_feed_subscribers"], 1.0);
    let head = after["klaxon_log_head"];
    assert!(head >= started + 5.0, "report, assessment, page, delivery, acknowledgement: head {head}");
    // Every record was one append here, and each append one observation.
    let appends = after["klaxon_log_append_duration_seconds_count"];
    assert!(appends >= head, "{appends} appends observed for head {head}");
    assert_eq!(after["klaxon_log_append_duration_seconds_bucket{le=\"+Inf\"}"], appends);
    assert!(after["klaxon_log_group_commit_appends_count"] >= 1.0);
    for service in ["intake", "severity", "paging", "notifier", "review"] {
        assert!(after.contains_key(&format!("klaxon_consumer_lag_records{{service=\"{service}\"}}")), "{service}");
        let processed = after[&format!("klaxon_processed_position{{service=\"{service}\"}}")];
        assert!(processed <= head, "{service} processed {processed} of {head}");
    }
    // A path nothing serves is named in the answer, not an empty 404.
    let (status, body) =
        klaxon_tests::alertmanager::http_as(&address, None, "GET", "/metrcs", b"").expect("GET /metrcs");
    assert_eq!((status, body.as_str()), (404, "klaxond has no HTTP endpoint at GET /metrcs\n"));
    drop(feed);
    assert!(server.stop().success());
}
