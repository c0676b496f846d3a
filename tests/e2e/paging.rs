//! Paging against a real `klaxond`: a page pending when the process is
//! killed with SIGKILL still escalates after the restart, exactly once.

use std::time::{Duration, Instant};

use klaxon_tests::config::Paged;
use klaxon_tests::{Klaxond, klaxon_ok};

#[test]
fn a_pending_escalation_survives_sigkill_and_fires_once() {
    let paged = Paged::start(2, false, "");
    let (runtime, receiver) = (&paged.runtime, &paged.receiver);
    let data = paged.dir.path().join("data");
    let (args, env) = (paged.config_args(), paged.env());

    let server = Klaxond::start_with_env(&data, &args, &env);
    let id = klaxon_ok(
        &server.url,
        "monitor",
        &[
            "report",
            "--title",
            "EU checkout down",
            "--service",
            "payments",
            "--customer",
            "acme",
            "--customer",
            "globex",
        ],
    );
    assert!(id.starts_with("INC-1"), "{id}");
    let first = runtime.block_on(receiver.wait_for_delivered(1, Duration::from_secs(20)));
    assert_eq!(first.len(), 1, "the on-call person is paged");
    assert_eq!(first[0].idempotency_key, "INC-1-P1");
    assert_eq!(first[0].body["recipient"], "ana");
    assert!(first[0].signature_ok);

    // Killed while the page is pending; the 2 s deadline passes while down.
    server.kill();
    std::thread::sleep(Duration::from_secs(3));
    let restarted = Instant::now();
    let server = Klaxond::start_with_env(&data, &args, &env);
    // The kill may have come between P1's delivery and its record: then P1 is
    // delivered again after the restart, with the same idempotency key (at
    // least once, never as a new page). P2 is the escalation.
    let deadline = Instant::now() + Duration::from_secs(20);
    let escalation = loop {
        let delivered = receiver.requests();
        if let Some(p2) = delivered.iter().find(|r| r.status < 300 && r.idempotency_key == "INC-1-P2") {
            break p2.clone();
        }
        assert!(Instant::now() < deadline, "the escalation never arrived: {delivered:?}");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(escalation.body["recipient"], "carl");
    assert!(restarted.elapsed() < Duration::from_secs(15), "promptly: {:?}", restarted.elapsed());

    // Another restart fires nothing again.
    assert!(server.stop().success());
    let server = Klaxond::start_with_env(&data, &args, &env);
    // The barrier: paging (and every other service) has replayed the log and
    // done whatever that called for.
    let metrics = server.http_address.clone().expect("up serves metrics");
    klaxon_tests::metrics::settle(&metrics, &[&metrics]);
    let pages = klaxon_ok(&server.url, "maria", &["pages", "INC-1"]);
    assert_eq!(pages.lines().filter(|l| l.starts_with("INC-1-P")).count(), 2, "{pages}");
    let mut keys: Vec<String> =
        receiver.requests().iter().filter(|r| r.status < 300).map(|r| r.idempotency_key.clone()).collect();
    // P2 was delivered before the clean stop, which waits for deliveries to
    // be recorded: never again after it.
    assert_eq!(keys.iter().filter(|k| *k == "INC-1-P2").count(), 1, "{keys:?}");
    keys.dedup();
    assert_eq!(keys, ["INC-1-P1", "INC-1-P2"], "no page delivered as a new page");
    assert!(server.stop().success());
}
