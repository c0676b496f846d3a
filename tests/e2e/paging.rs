//! Paging against a real `klaxond`: a page pending when the process is
//! killed with SIGKILL still escalates after the restart, exactly once.

use std::time::{Duration, Instant};

use klaxon_tests::config::Paged;
use klaxon_tests::{Klaxond, klaxon_ok};

use crate::{eventually, reloads};

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

#[test]
fn an_edited_policy_applies_at_sighup_to_new_sev1s_while_a_sev1_in_flight_keeps_its_own() {
    // Level 0 (ana's schedule) escalates to carl after 12 s.
    let paged = Paged::start(12, false, "");
    let receiver = &paged.receiver;
    let (args, env) = (paged.config_args(), paged.env());
    let server = Klaxond::start_with_env(&paged.dir.path().join("data"), &args, &env);
    let (url, http) = (server.url.clone(), server.http_address.clone().expect("up serves metrics"));
    let sev1 = |title: &str| {
        let args = ["report", "--title", title, "--service", "payments", "--customer", "acme", "--customer", "globex"];
        klaxon_ok(&url, "monitor", &args)
    };
    // The delivered pages, in the order they arrived: (key, recipient).
    let delivered = || -> Vec<(String, String)> {
        receiver
            .requests()
            .into_iter()
            .filter(|r| r.status < 300)
            .map(|r| (r.idempotency_key.clone(), r.body["recipient"].as_str().unwrap_or_default().to_owned()))
            .collect()
    };
    let recipient = |key: &str| {
        eventually(&format!("{key} delivered"), || delivered().into_iter().find(|(k, _)| k == key).map(|(_, to)| to))
    };
    let original = std::fs::read_to_string(&paged.config).unwrap();
    let level0 = r#"targets = [{ schedule = "payments-primary" }]"#;
    assert!(original.contains(level0) && original.contains(r#"{ person = "carl" }"#), "{original}");

    assert!(sev1("EU checkout down").starts_with("INC-1"));
    assert_eq!(recipient("INC-1-P1"), "ana");

    // A broken edit (a schedule that does not exist) is refused, and
    // nothing changes: a new Sev-1 still pages ana.
    std::fs::write(&paged.config, original.replace(level0, r#"targets = [{ schedule = "nobody-here" }]"#)).unwrap();
    klaxon_tests::signal(server.pid(), "HUP");
    eventually("the broken edit refused", || (reloads(&http, "refused") == 1.0).then_some(()));
    assert!(sev1("US checkout down").starts_with("INC-2"));
    assert_eq!(recipient("INC-2-P1"), "ana");

    // The good edit: zed first, then yan.
    let edited = original
        .replace(level0, r#"targets = [{ person = "zed" }]"#)
        .replace(r#"{ person = "carl" }"#, r#"{ person = "yan" }"#);
    std::fs::write(&paged.config, edited).unwrap();
    klaxon_tests::signal(server.pid(), "HUP");
    eventually("the edit applied", || (reloads(&http, "applied") == 1.0).then_some(()));
    assert_eq!(reloads(&http, "refused"), 1.0);
    assert!(sev1("APAC checkout down").starts_with("INC-3"));
    assert_eq!(recipient("INC-3-P1"), "zed", "a Sev-1 after the edit pages per the edited policy");

    // INC-1, started before the edit, escalates per its own policy: carl,
    // not yan, and after the edit was in force (INC-3's page came first).
    assert_eq!(recipient("INC-1-P2"), "carl");
    let order = delivered();
    let at = |key: &str| order.iter().position(|(k, _)| k == key).unwrap();
    assert!(
        at("INC-3-P1") < at("INC-1-P2"),
        "INC-1 escalated before the edit applied; the test proves nothing: {order:?}"
    );
    assert!(server.stop().success());
}

/// `[[channels]]` reload at SIGHUP: the pager channel moved to another
/// receiver takes the next page and the next executive post (paging and
/// the notifier read the channels at each delivery), and the change is
/// recorded with its key. A file that removes a channel something still
/// names is refused with the key and the problem (what `klaxond config
/// check` says of it), nothing is written, and the running channels stay.
#[test]
fn a_channel_changed_at_sighup_takes_the_next_delivery_and_one_still_named_cannot_be_removed() {
    let paged = Paged::start(600, true, "");
    let (runtime, first) = (&paged.runtime, &paged.receiver);
    let second = runtime.block_on(klaxon_tests::receiver::Receiver::start(&paged.secret));
    let (args, env) = (paged.config_args(), paged.env());
    let server = Klaxond::start_with_env(&paged.dir.path().join("data"), &args, &env);
    let (url, http) = (server.url.clone(), server.http_address.clone().expect("up serves metrics"));
    let sev1 = |title: &str| {
        let args = ["report", "--title", title, "--service", "payments", "--customer", "acme", "--customer", "globex"];
        klaxon_ok(&url, "monitor", &args)
    };
    let got = |receiver: &klaxon_tests::receiver::Receiver, key: &str| {
        receiver.requests().iter().any(|r| r.status < 300 && r.idempotency_key.starts_with(key))
    };
    assert!(sev1("EU checkout down").starts_with("INC-1"));
    eventually("INC-1's page at the first receiver", || got(first, "INC-1-P1").then_some(()));

    // The pager channel now posts to the second receiver.
    let original = std::fs::read_to_string(&paged.config).unwrap();
    let moved = original.replace(&first.url, &second.url);
    assert_ne!(moved, original);
    std::fs::write(&paged.config, &moved).unwrap();
    klaxon_tests::signal(server.pid(), "HUP");
    eventually("the edit applied", || (reloads(&http, "applied") == 1.0).then_some(()));
    assert!(sev1("US checkout down").starts_with("INC-2"));
    eventually("INC-2's page at the second receiver", || got(&second, "INC-2-P1").then_some(()));
    let post = |r: &klaxon_tests::receiver::Receiver| {
        r.requests().into_iter().any(|r| {
            r.status < 300
                && r.body["kind"].as_str().is_some_and(|k| k.ends_with("_post"))
                && r.idempotency_key.contains("INC-2")
        })
    };
    eventually("INC-2's executive post at the second receiver", || post(&second).then_some(()));
    assert!(!got(first, "INC-2") && !post(first), "nothing of INC-2 went to the old channel");
    let audit = klaxon_ok(&url, "maria", &["audit", "--kind", "config.", "--format", "json"]);
    assert!(audit.contains("channels[pager].url"), "the change is recorded with its key: {audit}");

    // Without the pager channel, which [paging] still names: refused.
    let cut = moved.find("[[channels]]").expect("the channels table");
    let removed = moved[..cut].to_owned();
    std::fs::write(&paged.config, &removed).unwrap();
    let check = std::process::Command::new(klaxon_tests::binary("klaxond"))
        .args(["config", "check"])
        .arg(&paged.config)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&check.stderr);
    assert!(stderr.contains("paging.channels[0]: no channel named \"pager\" in [[channels]]"), "{stderr}");
    let head = klaxon_tests::metrics::scrape(&http)["klaxon_log_head"];
    klaxon_tests::signal(server.pid(), "HUP");
    eventually("the removal refused", || (reloads(&http, "refused") == 1.0).then_some(()));
    assert_eq!(klaxon_tests::metrics::scrape(&http)["klaxon_log_head"], head, "a refused reload writes nothing");
    assert!(sev1("APAC checkout down").starts_with("INC-3"));
    eventually("INC-3's page at the second receiver", || got(&second, "INC-3-P1").then_some(()));
    assert!(server.stop().success());
}

/// `[paging].severities` reloaded at SIGHUP reaches an open incident paging
/// already knows: a Sev3 reported before the reload that adds Sev3 is
/// paged, once (the receiver gets it once, across a restart from the
/// snapshot and a rebuild from scratch, which both hold the same pages).
#[test]
fn a_severity_added_at_sighup_pages_an_open_incident_once_and_a_rebuild_agrees() {
    let paged = Paged::start(600, false, "");
    let receiver = &paged.receiver;
    let original = std::fs::read_to_string(&paged.config).unwrap();
    // Reports without customers are Sev3 (no rule matches them).
    let sev3_default = original.replace("default = \"sev4\"", "default = \"sev3\"");
    assert_ne!(sev3_default, original);
    std::fs::write(&paged.config, &sev3_default).unwrap();
    let (args, env) = (paged.config_args(), paged.env());
    let data = paged.dir.path().join("data");
    let server = Klaxond::start_with_env(&data, &args, &env);
    let (url, http) = (server.url.clone(), server.http_address.clone().expect("up serves metrics"));
    let id = klaxon_ok(&url, "monitor", &["report", "--title", "Checkout slow for one shop", "--service", "payments"]);
    assert!(id.starts_with("INC-1"), "{id}");
    eventually("INC-1 assessed sev3", || {
        let shown = klaxon_tests::klaxon_json(&url, "maria", &["show", "INC-1"]);
        (shown["severity"].as_str() == Some("sev3")).then_some(())
    });
    klaxon_tests::metrics::settle(&http, &[&http]);
    let delivered = || -> Vec<String> {
        receiver.requests().iter().filter(|r| r.status < 300).map(|r| r.idempotency_key.clone()).collect()
    };
    assert!(delivered().is_empty(), "a Sev3 does not page: {:?}", delivered());

    // Sev3 pages from the reload on: the open INC-1 is paged.
    let with_sev3 = sev3_default.replace("[paging]\n", "[paging]\nseverities = [\"sev1\", \"sev2\", \"sev3\"]\n");
    assert_ne!(with_sev3, sev3_default);
    std::fs::write(&paged.config, &with_sev3).unwrap();
    klaxon_tests::signal(server.pid(), "HUP");
    eventually("the reload applied", || (reloads(&http, "applied") == 1.0).then_some(()));
    eventually("INC-1-P1 delivered", || delivered().contains(&"INC-1-P1".to_owned()).then_some(()));
    klaxon_tests::metrics::settle(&http, &[&http]);
    let pages = klaxon_ok(&url, "maria", &["pages", "INC-1"]);
    assert_eq!(pages.lines().filter(|l| l.starts_with("INC-1-P")).count(), 1, "{pages}");
    assert!(pages.contains("ana"), "{pages}");
    let audit = klaxon_ok(&url, "maria", &["audit", "--kind", "config.", "--format", "json"]);
    assert!(audit.contains("paging.severities"), "the reload is recorded with its key: {audit}");
    assert!(server.stop().success());

    // A restart (from the snapshot), then a rebuild from scratch: the same
    // pages, nothing paged again.
    for rebuild in [false, true] {
        if rebuild {
            std::fs::remove_dir_all(data.join("snapshots")).unwrap();
        }
        let server = Klaxond::start_with_env(&data, &args, &env);
        let http = server.http_address.clone().expect("up serves metrics");
        klaxon_tests::metrics::settle(&http, &[&http]);
        assert_eq!(klaxon_ok(&server.url, "maria", &["pages", "INC-1"]), pages, "rebuild: {rebuild}");
        assert!(server.stop().success());
    }
    assert_eq!(delivered(), ["INC-1-P1"], "paged once");

    // Sev3 stops paging at the next reload: INC-1's episode ends, and its
    // page stream says why.
    let server = Klaxond::start_with_env(&data, &args, &env);
    let (url, http) = (server.url.clone(), server.http_address.clone().expect("up serves metrics"));
    std::fs::write(&paged.config, &sev3_default).unwrap();
    klaxon_tests::signal(server.pid(), "HUP");
    eventually("the second reload applied", || (reloads(&http, "applied") == 1.0).then_some(()));
    let stopped = eventually("the stop recorded", || {
        let out = klaxon_ok(&url, "maria", &["audit", "--kind", "page.paging_stopped", "--format", "json"]);
        let entries = serde_json::from_str::<Vec<serde_json::Value>>(&out).expect("a JSON array");
        entries.first().and_then(|e| e["summary"].as_str().map(str::to_owned))
    });
    assert!(stopped.starts_with("paging stopped: SEV3 no longer pages under configuration "), "{stopped}");
    klaxon_tests::metrics::settle(&http, &[&http]);
    assert_eq!(klaxon_ok(&url, "maria", &["pages", "INC-1"]), pages);
    assert!(server.stop().success());
    assert_eq!(delivered(), ["INC-1-P1"], "paged once");
}
