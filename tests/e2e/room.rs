//! Incident managers run the room (issue 16) against a real `klaxond up`,
//! the real `klaxon` CLI and a real signed-webhook receiver: pulling people
//! in with `klaxon page`.

use std::time::Duration;

use klaxon_tests::config::Paged;
use klaxon_tests::metrics::settle;
use klaxon_tests::{Klaxond, klaxon, klaxon_json, klaxon_ok};

/// A schedule and a team besides the fixture's payments: omar is on call
/// for the database, team search pages mallory through its policy.
const ROOM: &str = r#"
[[schedules]]
name = "db-primary"
time_zone = "UTC"
[[schedules.layers]]
name = "weekly"
participants = ["omar"]
shift = "7d"
handoff = "00:00"
start = "2026-01-05"

[[services]]
name = "search"
team = "search"
tier = 2
escalation_policy = "search"
runbook = "https://runbooks.example/search"

[[escalation_policies]]
name = "search"
[[escalation_policies.levels]]
timeout_minutes = 10
targets = [{ person = "mallory" }]
"#;

/// The deliveries the receiver answered 2xx, by idempotency key.
fn delivered(paged: &Paged) -> Vec<(String, serde_json::Value)> {
    let requests = paged.receiver.requests();
    requests.into_iter().filter(|r| r.status < 300).map(|r| (r.idempotency_key, r.body)).collect()
}

#[test]
fn a_manager_pulls_a_person_a_schedule_and_a_team_in_and_each_is_paged_once() {
    let paged = Paged::start(600, false, ROOM);
    let data = paged.dir.path().join("data");
    let server = Klaxond::start_with_env(&data, &paged.config_args(), &paged.env());
    let metrics = server.http_address.clone().expect("up serves metrics");
    let url = &server.url;
    // A Sev-4 (one customer): nothing pages on its own.
    let id = klaxon_ok(url, "monitor", &["report", "--title", "Search is slow", "--service", "search"]);
    let id = id.trim();
    settle(&metrics, &[&metrics]);
    assert_eq!(delivered(&paged), [], "a Sev-4 pages nobody");

    // A person, directly; the same request id twice pages once.
    let page = ["page", id, "--person", "carl", "--reason", "knows the index", "--request-id", "pull-carl"];
    let first = klaxon_json(url, "maria", &page);
    let again = klaxon_json(url, "maria", &page);
    assert_eq!(again["first_position"], first["first_position"], "{again}");
    assert_eq!(again["deduplicated"], true, "{again}");
    // A schedule's on-call and a team through its policy.
    klaxon_ok(url, "maria", &["page", id, "--schedule", "db-primary", "--reason", "slow queries"]);
    klaxon_ok(url, "maria", &["page", id, "--team", "search", "--reason", "owners"]);
    let head = settle(&metrics, &[&metrics]);

    let mut got = delivered(&paged);
    got.sort_by(|a, b| a.0.cmp(&b.0));
    let keys: Vec<&str> = got.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, [format!("{id}-P1"), format!("{id}-P2"), format!("{id}-P3")], "each paged once");
    let recipients: Vec<&str> = got.iter().map(|(_, b)| b["recipient"].as_str().unwrap_or_default()).collect();
    assert_eq!(recipients, ["carl", "omar", "mallory"]);
    let carl = &got[0].1;
    assert_eq!(carl["fields"]["reason"], "requested", "{carl}");
    assert_eq!(carl["fields"]["requested_by"], "maria", "{carl}");
    assert_eq!(carl["fields"]["request_reason"], "knows the index", "{carl}");
    assert!(carl["text"].as_str().unwrap_or_default().contains("knows the index"), "{carl}");
    // The catalog's runbook travels with the page, and shows on the incident.
    assert_eq!(carl["fields"]["runbook"], "https://runbooks.example/search", "{carl}");
    assert!(carl["text"].as_str().unwrap_or_default().contains("Runbook: https://runbooks.example/search"));
    let show = klaxon_ok(url, "ana", &["show", id]);
    assert!(show.contains("runbook:      https://runbooks.example/search"), "{show}");

    // Listed with the incident's pages, acknowledged like any page.
    let pages = klaxon_ok(url, "maria", &["pages", id]);
    assert_eq!(pages.lines().filter(|l| l.contains("requested")).count(), 3, "{pages}");
    klaxon_ok(url, "carl", &["ack", &format!("{id}-P1")]);
    let head = settle(&metrics, &[&metrics]).max(head);

    // Refusals write nothing.
    let refused = |who: &str, args: &[&str], expect: &str| {
        let out = klaxon(url, who, args);
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(!out.status.success(), "{args:?} was accepted");
        assert!(stderr.contains(expect), "{args:?}: {stderr}");
    };
    refused(
        "maria",
        &["page", id, "--schedule", "nope", "--reason", "x"],
        "no schedule is named \"nope\"; the schedules are db-primary, payments-primary",
    );
    refused(
        "maria",
        &["page", id, "--team", "nope", "--reason", "x"],
        "no team is named \"nope\"; the teams are payments",
    );
    refused("maria", &["page", id, "--person", "carl", "--reason", " "], "reason");
    refused("ana", &["page", id, "--person", "carl", "--reason", "x"], "may not call");
    refused("maria", &["page", id, "--reason", "x"], "--person");
    assert_eq!(settle(&metrics, &[&metrics]), head, "a refused page wrote something");

    // Counted in the review metrics.
    let m = klaxon_json(url, "maria", &["metrics", id]);
    assert_eq!(m["pulled_in_pages"], 3, "{m}");
    assert_eq!(m["pages"], 3, "{m}");

    // Roles: the new holder is told once; replaced and removed holders
    // leave the incident's roles.
    klaxon_ok(url, "maria", &["role", id, "scribe", "li"]);
    klaxon_ok(url, "maria", &["role", id, "scribe", "omar", "--replaces", "li"]);
    let show = klaxon_ok(url, "ana", &["show", id]);
    assert!(show.contains("roles:        scribe omar\n"), "{show}");
    klaxon_ok(url, "maria", &["role", id, "scribe", "omar", "--remove"]);
    let head = settle(&metrics, &[&metrics]);
    refused("maria", &["role", id, "scribe", "omar", "--remove"], "role.not_held");
    assert_eq!(settle(&metrics, &[&metrics]), head, "a refused removal wrote something");
    let show = klaxon_ok(url, "ana", &["show", id]);
    assert!(!show.contains("roles:"), "{show}");
    let notices: Vec<(String, String)> = delivered(&paged)
        .into_iter()
        .filter(|(_, b)| b["fields"]["reason"] == "role_assigned")
        .map(|(k, b)| (k, b["recipient"].as_str().unwrap_or_default().to_string()))
        .collect();
    assert_eq!(notices, [(format!("{id}-P4"), "li".to_string()), (format!("{id}-P5"), "omar".to_string())]);
    // A notice asks nobody to respond: acknowledging it is refused.
    let head = settle(&metrics, &[&metrics]);
    refused("omar", &["ack", &format!("{id}-P5")], "is a notice that omar holds a role of");
    assert_eq!(settle(&metrics, &[&metrics]), head, "a refused acknowledgement wrote something");
    assert_eq!(klaxon_json(url, "maria", &["metrics", id])["pages"], 3, "notices are no pages");

    // A resolved incident pages nobody.
    klaxon_ok(url, "maria", &["declare", id, "--severity", "sev4"]);
    klaxon_ok(url, "maria", &["resolve", id, "--summary", "reindexed"]);
    refused("maria", &["page", id, "--person", "carl", "--reason", "late"], "page.not_open");
    let deliveries = delivered(&paged).len();
    std::thread::sleep(Duration::from_millis(200));
    settle(&metrics, &[&metrics]);
    assert_eq!(delivered(&paged).len(), deliveries, "nothing more was delivered");
    assert!(server.stop().success());
}

#[test]
fn the_queue_lists_open_incidents_by_what_needs_attention_first() {
    let paged = Paged::start(600, false, ROOM);
    let data = paged.dir.path().join("data");
    let server = Klaxond::start_with_env(&data, &paged.config_args(), &paged.env());
    let metrics = server.http_address.clone().expect("up serves metrics");
    let url = &server.url;
    let report = |title: &str, extra: &[&str]| {
        let args = [&["report", "--title", title, "--service", "payments"][..], extra].concat();
        klaxon_ok(url, "monitor", &args).trim().to_string()
    };
    // A Sev-3 without a commander: assign due 10 minutes after declaring.
    let sev3 = report("Slow exports", &[]);
    klaxon_ok(url, "maria", &["declare", &sev3, "--severity", "3"]);
    // An owned Sev-2: paged, acknowledge due 5 minutes after its page.
    let sev2 = report("Refunds lag", &[]);
    klaxon_ok(url, "maria", &["declare", &sev2, "--severity", "2"]);
    klaxon_ok(url, "maria", &["assign", &sev2, "maria"]);
    // An owned Sev-3 with a scribe: the scribe's notice is no page, so
    // nothing is due to acknowledge.
    let scribed = report("Stale dashboards", &[]);
    klaxon_ok(url, "maria", &["declare", &scribed, "--severity", "3"]);
    klaxon_ok(url, "maria", &["assign", &scribed, "maria"]);
    klaxon_ok(url, "maria", &["role", &scribed, "scribe", "omar"]);
    // An unowned Sev-1 (two customers on tier-1 payments), reported last.
    let sev1 = report("Checkout down", &["--customer", "acme", "--customer", "globex"]);
    // A resolved one is not in the queue.
    let done = report("Blip", &[]);
    klaxon_ok(url, "maria", &["declare", &done, "--severity", "4"]);
    klaxon_ok(url, "maria", &["resolve", &done, "--summary", "gone"]);
    settle(&metrics, &[&metrics]);

    let queue = klaxon_json(url, "ceo", &["queue"]);
    let rows = queue["queue"].as_array().expect("rows");
    let order: Vec<(&str, bool, &str)> = rows
        .iter()
        .map(|r| {
            let deadline = r["deadline"].as_str().unwrap_or("-");
            (r["incident_id"].as_str().unwrap_or_default(), r["unowned_sev1"] == true, deadline)
        })
        .collect();
    assert_eq!(
        order,
        [
            (sev1.as_str(), true, order[0].2),
            (sev2.as_str(), false, "acknowledge"),
            (sev3.as_str(), false, "assign"),
            (scribed.as_str(), false, "-")
        ],
        "{queue}"
    );
    let left = rows[1]["seconds_left"].as_i64().expect("time left");
    assert!((200..=300).contains(&left), "about 5 minutes left: {left}");
    let text = klaxon_ok(url, "maria", &["queue"]);
    let first = text.lines().nth(1).unwrap_or_default();
    assert!(first.starts_with(&sev1) && first.contains("unowned"), "{text}");
    assert!(server.stop().success());
}

#[test]
fn with_other_manager_validation_the_resolver_cannot_close_the_incident() {
    let paged = Paged::start(600, false, &format!("{ROOM}\n[intake]\nvalidation = \"other_manager\"\n"));
    let data = paged.dir.path().join("data");
    let server = Klaxond::start_with_env(&data, &paged.config_args(), &paged.env());
    let metrics = server.http_address.clone().expect("up serves metrics");
    let url = &server.url;
    let id = klaxon_ok(url, "monitor", &["report", "--title", "Search is slow", "--service", "search"]);
    let id = id.trim();
    klaxon_ok(url, "maria", &["declare", id, "--severity", "3"]);
    klaxon_ok(url, "maria", &["resolve", id, "--summary", "reindexed"]);
    let head = settle(&metrics, &[&metrics]);

    let out = klaxon(url, "maria", &["validate", id, "--note", "looks fine to me"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the resolver validated");
    assert!(stderr.contains("validate.other_manager") && stderr.contains("maria resolved"), "{stderr}");
    assert_eq!(settle(&metrics, &[&metrics]), head, "the refusal wrote something");

    let closed = klaxon_ok(url, "omar", &["validate", id, "--note", "error rate flat for an hour"]);
    assert!(closed.contains("closed"), "{closed}");
    assert!(server.stop().success());
}
