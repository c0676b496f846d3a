//! The executive feed and the post-incident review through the real CLI
//! against a real `klaxond`.

use std::time::Duration;

use klaxon_tests::{Klaxond, Lines, klaxon, klaxon_json, klaxon_ok};

#[test]
fn an_executive_watches_a_sev1_and_a_reviewer_publishes_its_postmortem() {
    let dir = tempfile::tempdir().unwrap();
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/klaxon.toml");
    let server = Klaxond::start_with(&dir.path().join("data"), &["--config", config]);
    let url = server.url.clone();
    let run = |actor: &str, args: &[&str]| klaxon_ok(&url, actor, args);

    run(
        "monitor",
        &["report", "--title", "Checkout fails", "--service", "payments", "--customer", "acme", "--customer", "globex"],
    );
    run("maria", &["declare", "INC-1", "--severity", "1"]);

    // An executive's live feed: the snapshot first, then the update.
    let watch = Lines::start(&url, "ceo", &["watch", "--min-severity", "1"]);
    let first = watch.next(Duration::from_secs(20)).expect("the feed's snapshot");
    assert_eq!(first["incident_id"], "INC-1", "{first}");
    run("maria", &["update", "INC-1", "Rolled back; watching error rates", "--audience", "executive"]);
    let live = watch
        .find(Duration::from_secs(20), |line| line.to_string().contains("Rolled back"))
        .expect("the update reaches the feed");
    assert_eq!(live["incident_id"], "INC-1");
    drop(watch);

    run("maria", &["assign", "INC-1", "maria"]);
    run("maria", &["mitigate", "INC-1", "--summary", "rolled back"]);
    run("maria", &["resolve", "INC-1", "--summary", "bad config reverted"]);
    // The review opens by itself once a Sev-1 is resolved.
    let mut opened = false;
    for _ in 0..100 {
        if klaxon(&url, "rita", &["review", "summary", "INC-1", "A config push broke checkout."]).status.success() {
            opened = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(opened, "the review was opened");
    run("rita", &["review", "factor", "INC-1", "No canary for config pushes"]);
    run("rita", &["review", "action", "add", "INC-1", "Canary config pushes"]);
    run("rita", &["review", "action", "assign", "INC-1-A1", "ana"]);
    // An item with its owner and due date at once: all of it, or, with an
    // owner nobody knows, nothing.
    let http = server.http_address.clone().expect("up serves metrics");
    // The head once every service has folded it (the reactions to the
    // commands above included).
    let head = || klaxon_tests::metrics::settle(&http, &[&http]);
    let before = head();
    let refused = klaxon(
        &url,
        "rita",
        &["review", "action", "add", "INC-1", "Alert on 5xx", "--owner", "anna", "--due", "2026-12-20"],
    );
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success() && stderr.contains("invalid owner: no principal is named anna"), "{stderr}");
    assert_eq!(head(), before, "a refused item writes nothing");
    let added =
        run("rita", &["review", "action", "add", "INC-1", "Alert on 5xx", "--owner", "ana", "--due", "2026-12-20"]);
    assert!(added.starts_with("INC-1-A2 added: Alert on 5xx, owned by ana, due 2026-12-20"), "{added}");
    assert_eq!(head(), before + 3, "added, assigned and scheduled: three events");
    run("rita", &["review", "publish", "INC-1"]);
    let markdown = run("rita", &["review", "export", "INC-1"]);
    for part in ["INC-1", "A config push broke checkout.", "No canary for config pushes", "Canary config pushes"] {
        assert!(markdown.contains(part), "{part:?} missing from:\n{markdown}");
    }
    let actions = run("rita", &["actions", "--open"]);
    assert!(actions.contains("INC-1-A1") && actions.contains("ana"), "{actions}");
    let a2 = actions.lines().find(|l| l.contains("INC-1-A2")).unwrap_or_else(|| panic!("no INC-1-A2 in {actions}"));
    assert!(a2.contains("ana") && a2.contains("2026-12-20") && a2.contains("Alert on 5xx"), "{a2}");

    // The timeline has the pages, the notifications' effects and the review.
    let timeline = run("rita", &["timeline", "INC-1"]);
    assert!(timeline.contains("declared INC-1 SEV1"), "{timeline}");
    assert!(timeline.contains("review"), "{timeline}");
    let metrics = klaxon_json(&url, "rita", &["metrics", "INC-1"]);
    assert!(metrics.to_string().contains("time_to_resolve"), "{metrics}");
    let trends = klaxon_json(&url, "rita", &["trends", "--from", "2020-01-01", "--to", "2100-01-01"]);
    assert_eq!(trends["incidents"], 1, "{trends}");
    assert!(server.stop().success());
}
