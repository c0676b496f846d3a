//! `[limits]` against a real `klaxond up`: message size, request rate per
//! principal and status feeds per principal. Each limit hit is a precise
//! status (`OUT_OF_RANGE` from tonic for the message size,
//! `RESOURCE_EXHAUSTED` for the others) and writes nothing.

use std::time::{Duration, Instant};

use klaxon_proto::v1;
use klaxon_tests::{Klaxond, Lines, klaxon, klaxon_json, klaxon_ok};
use tonic::Code;

const LIMITS: &str =
    "[limits]\nmessage_bytes_max = 65536\nrequests_per_second = 1\nrequest_burst = 3\nfeeds_per_principal = 1\n";

fn start(dir: &std::path::Path) -> Klaxond {
    let config = dir.join("klaxon.toml");
    std::fs::write(&config, LIMITS).unwrap();
    Klaxond::start_with(&dir.join("data"), &["--config", config.to_str().unwrap()])
}

fn head(server: &Klaxond) -> f64 {
    klaxon_tests::metrics::scrape(server.http_address.as_deref().expect("an HTTP address"))["klaxon_log_head"]
}

fn report(title: &str, description: String) -> v1::ReportRequest {
    v1::ReportRequest { title: title.into(), description, ..Default::default() }
}

#[test]
fn an_oversized_message_and_a_fast_caller_are_refused_precisely_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let channel = runtime.block_on(async {
        tonic::transport::Endpoint::from_shared(server.url.clone()).unwrap().connect().await.unwrap()
    });
    let mut client = v1::incidents_client::IncidentsClient::new(channel);
    let as_person = |who: &str, message: v1::ReportRequest| {
        let mut request = tonic::Request::new(message);
        request.metadata_mut().insert("authorization", klaxon_tests::auth::bearer(who));
        request
    };

    // 100 KiB against a 64 KiB limit: tonic refuses it while decoding, with
    // OUT_OF_RANGE naming both sizes.
    let before = head(&server);
    let refused =
        runtime.block_on(client.report(as_person("maria", report("huge", "x".repeat(100 * 1024))))).unwrap_err();
    assert_eq!(refused.code(), Code::OutOfRange, "{refused:?}");
    assert!(refused.message().contains("the limit is: 65536 bytes"), "the message names the limit: {refused:?}");
    assert_eq!(head(&server), before, "nothing written");

    // ana reports as fast as she can: after her burst of 3 (plus what the
    // rate of 1 a second refills meanwhile) she is refused, naming the
    // rate, and the refused reports are not written.
    let started = Instant::now();
    let (mut written, mut refusal) = (0u32, None);
    for n in 0..10 {
        match runtime.block_on(client.report(as_person("ana", report(&format!("burst {n}"), String::new())))) {
            Ok(_) => written += 1,
            Err(status) => {
                refusal = Some(status);
                break;
            }
        }
    }
    let refusal = refusal.expect("ten reports in a row exceed a burst of 3 at 1 a second");
    assert_eq!(refusal.code(), Code::ResourceExhausted, "{refusal:?}");
    assert!(refusal.message().starts_with("ana (engineer) is over its request rate (1 per second, bursts of 3)"));
    let refill = started.elapsed().as_secs() as u32 + 1;
    assert!((3..=3 + refill).contains(&written), "{written} reports before the refusal");
    // Another principal is not held back by ana.
    runtime.block_on(client.report(as_person("monitor", report("someone else", String::new())))).unwrap();
    let listed = klaxon_json(&server.url, "maria", &["list"]);
    assert_eq!(listed["incidents"].as_array().unwrap().len() as u32, written + 1, "{listed:#}");
    drop((client, runtime));
    assert!(server.stop().success());
}

#[test]
fn one_principal_holds_at_most_its_feeds_and_a_closed_feed_frees_its_place() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    klaxon_ok(&server.url, "monitor", &["report", "--title", "checkout down"]);
    let first = Lines::start(&server.url, "ceo", &["watch"]);
    first.next(Duration::from_secs(20)).expect("the first feed's snapshot");

    let second = klaxon(&server.url, "ceo", &["watch"]);
    assert_eq!(second.status.code(), Some(1), "{second:?}");
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(stderr.contains("ceo has 1 live feed open (status feeds and status pages together)"), "{stderr}");
    // Refused, it does not claim to be watching: the one line is the refusal.
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    // Someone else's feed is not counted against ceo.
    let other = Lines::start(&server.url, "executive-payments", &["watch"]);
    other.next(Duration::from_secs(20)).expect("another executive's feed");

    // Once ceo's feed is closed, a new one is accepted (the server notices
    // the closed stream within moments).
    drop(first);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let again = Lines::start(&server.url, "ceo", &["watch"]);
        if again.next(Duration::from_secs(2)).is_some() {
            break;
        }
        assert!(Instant::now() < deadline, "ceo's closed feed was never released");
    }
    drop(other);
    assert!(server.stop().success());
}
