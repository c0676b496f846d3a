//! A real Prometheus Alertmanager pointed at a real `klaxond up`: one alert
//! group becomes one incident, a second alert merges into it, and the
//! group's resolution leaves a mitigation note (never a resolve).

use std::time::{Duration, Instant, SystemTime};

use klaxon_tests::alertmanager::{Alertmanager, rfc3339};
use klaxon_tests::{Klaxond, klaxon_json, klaxon_ok};
use serde_json::{Value, json};

/// Polls `check` every 100 ms for up to 30 s; panics with `what` (and the
/// last value seen) when it never holds.
fn eventually<T: std::fmt::Debug>(
    what: &str,
    am: &Alertmanager,
    mut probe: impl FnMut() -> T,
    check: impl Fn(&T) -> bool,
) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let value = probe();
        if check(&value) {
            return value;
        }
        if Instant::now() > deadline {
            panic!("{what} did not happen within 30 s; last seen: {value:#?}\nAlertmanager's log:\n{}", am.log());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn alert(instance: &str, starts_at: &str, ends_at: Option<&str>) -> Value {
    let mut alert = json!({
        "labels": {"alertname": "CheckoutErrors", "instance": instance, "service": "payments"},
        "annotations": {"summary": format!("Checkout errors on {instance}")},
        "startsAt": starts_at,
        "generatorURL": "http://prometheus.example.com/graph",
    });
    if let Some(ends_at) = ends_at {
        alert["endsAt"] = json!(ends_at);
    }
    alert
}

/// The incident of `show --json`.
fn incident(shown: Value) -> Value {
    if shown.get("incident").is_some() { shown["incident"].clone() } else { shown }
}

#[test]
fn an_alertmanager_group_becomes_one_incident_and_its_resolution_a_mitigation_note() {
    let dir = tempfile::tempdir().unwrap();
    let server = Klaxond::start_with(&dir.path().join("data"), &["--http-listen", "127.0.0.1:0"]);
    let http = server.http_address.clone().expect("klaxond says where its HTTP intake listens");
    let am = Alertmanager::start(&dir.path().join("alertmanager"), &format!("http://{http}/v1/alertmanager"));
    let url = server.url.clone();
    let list = || klaxon_json(&url, "maria", &["list"])["incidents"].as_array().cloned().unwrap_or_default();
    let show = || incident(klaxon_json(&url, "maria", &["show", "INC-1"]));

    let started = rfc3339(SystemTime::now() - Duration::from_secs(300));
    am.post_alerts(&json!([alert("eu-1", &started, None)]));
    let incidents = eventually("the first alert's incident", &am, list, |l| !l.is_empty());
    assert_eq!(incidents.len(), 1, "{incidents:#?}");
    let first = &incidents[0];
    assert_eq!(first["id"], "INC-1");
    assert_eq!(first["source"], "alertmanager");
    assert_eq!(first["title"], "Checkout errors on eu-1");
    assert_eq!(first["service"], "payments");
    assert_eq!(first["labels"]["instance"], "eu-1");
    assert_eq!(first["started_at"], started.as_str());
    assert!(first["dedup_key"].as_str().unwrap().starts_with("alertmanager/"), "{first:#?}");

    // A second alert of the group merges into the same incident.
    am.post_alerts(&json!([alert("eu-1", &started, None), alert("eu-2", &started, None)]));
    let merged = eventually("the second alert's merge", &am, show, |i| i["report_count"] == 2);
    assert_eq!(merged["status"], "reported");
    assert_eq!(list().len(), 1, "one group, one incident");

    // A manager declares it; then every alert of the group resolves.
    klaxon_ok(&url, "maria", &["declare", "INC-1", "--severity", "2"]);
    let ended = rfc3339(SystemTime::now() - Duration::from_secs(5));
    am.post_alerts(&json!([alert("eu-1", &started, Some(&ended)), alert("eu-2", &started, Some(&ended))]));
    let mitigated = eventually("the mitigation note", &am, show, |i| i["status"] == "mitigated");
    assert_eq!(mitigated["mitigation_summary"], "all 2 alerts of the Alertmanager group resolved");
    assert!(mitigated["resolved_at"].is_null(), "never a silent resolve: {mitigated:#?}");

    let history = klaxon_json(&url, "maria", &["history", "INC-1"]);
    let summaries: Vec<&str> =
        history["entries"].as_array().unwrap().iter().map(|e| e["summary"].as_str().unwrap()).collect();
    // Everything Alertmanager wrote is by the principal of its token.
    for expected in [
        "alertmanager reported INC-1 on payments via alertmanager: Checkout errors on eu-1",
        "alertmanager reported it again via alertmanager (report 2): Checkout errors on eu-2",
        "maria declared INC-1 SEV2",
        "alertmanager mitigated INC-1: all 2 alerts of the Alertmanager group resolved",
    ] {
        assert!(summaries.contains(&expected), "{expected:?} in {summaries:#?}");
    }
    let resolved_notes =
        summaries.iter().filter(|s| s.contains("posted an internal update: Alert CheckoutErrors")).count();
    assert_eq!(resolved_notes, 2, "each resolved alert is recorded once: {summaries:#?}");
    assert_eq!(list().len(), 1);
    drop(am);
    assert!(server.stop().success(), "SIGTERM is a clean stop, HTTP intake included");
}
