//! Configuration that is checked, reloaded at SIGHUP and audited, and the
//! audit trail through the real CLI, against real `klaxond` processes.

use std::path::Path;
use std::process::Command;

use klaxon_tests::metrics::scrape;
use klaxon_tests::{Klaxond, binary, klaxon, klaxon_json, klaxon_ok, signal};

use crate::{eventually, reloads};

/// A configuration whose one severity rule rates reports about checkout.
fn rules(severity: &str) -> String {
    format!(
        r#"
[severity]
default = "sev4"
default_reason = "No rule matched"

[[severity.rules]]
id = "checkout"
severity = "{severity}"
reason = "Checkout is what customers pay through"
when = {{ words = ["checkout"] }}
"#
    )
}

fn check(file: &Path) -> std::process::Output {
    Command::new(binary("klaxond")).args(["config", "check"]).arg(file).output().expect("run klaxond config check")
}

#[test]
fn config_check_summarises_a_good_file_and_names_file_key_and_problem_of_a_broken_one() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("klaxon.toml");
    std::fs::write(&file, rules("sev3")).unwrap();
    let out = check(&file);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout} {}", String::from_utf8_lossy(&out.stderr));
    let prefix = format!("{}: ok, sha256 ", file.display());
    assert!(stdout.starts_with(&prefix), "{stdout}");
    assert!(
        stdout.trim_end().ends_with(": 0 services, 1 severity rule, 0 schedules, 0 escalation policies, 0 channels")
    );
    // The hash ignores comments and layout.
    std::fs::write(&file, format!("# a comment\n{}\n\n", rules("sev3"))).unwrap();
    assert_eq!(String::from_utf8_lossy(&check(&file).stdout), stdout);

    std::fs::write(&file, rules("sev9")).unwrap();
    let out = check(&file);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim_end(),
        format!(
            "klaxond: {}: severity.rules[0].severity: \"sev9\" is not a severity; expected sev1 to sev4",
            file.display()
        )
    );
    assert!(out.stdout.is_empty());

    std::fs::write(&file, rules("sev3").replace("default_reason", "default_raeson")).unwrap();
    let out = check(&file);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.starts_with(&format!("klaxond: {}: ", file.display())), "{stderr}");
    assert!(stderr.contains("unknown field `default_raeson`"), "{stderr}");
}

/// The severity the evaluator gave the incident.
fn severity_of(url: &str, incident: &str) -> String {
    eventually(&format!("{incident} assessed"), || {
        let shown = klaxon_json(url, "maria", &["show", incident]);
        shown["severity"].as_str().map(str::to_owned)
    })
}

/// The `config.` entries of the audit trail, as JSON.
fn config_entries(url: &str) -> Vec<serde_json::Value> {
    let out = klaxon_ok(url, "maria", &["audit", "--kind", "config.", "--format", "json"]);
    serde_json::from_str::<Vec<serde_json::Value>>(&out).expect("a JSON array")
}

#[test]
fn a_sighup_applies_a_good_file_once_and_keeps_the_running_configuration_for_a_broken_one() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("klaxon.toml");
    std::fs::write(&file, rules("sev3")).unwrap();
    let config = file.to_str().unwrap();
    let server = Klaxond::start_with(&dir.path().join("data"), &["--config", config]);
    let (url, http) = (server.url.clone(), server.http_address.clone().expect("the HTTP address"));

    // The start records the configuration, once.
    let first = eventually("the start's record", || config_entries(&url).into_iter().next());
    assert!(first["summary"].as_str().unwrap().ends_with("applied at start (first recorded)"), "{first}");
    klaxon_ok(&url, "monitor", &["report", "--title", "Checkout returns 500"]);
    assert_eq!(severity_of(&url, "INC-1"), "sev3");

    // A broken file: refused, nothing written, the old rule still used.
    std::fs::write(&file, rules("sev9")).unwrap();
    let head = scrape(&http)["klaxon_log_head"];
    signal(server.pid(), "HUP");
    eventually("the broken reload refused", || (reloads(&http, "refused") == 1.0).then_some(()));
    assert_eq!(scrape(&http)["klaxon_log_head"], head, "a refused reload writes nothing");
    klaxon_ok(&url, "monitor", &["report", "--title", "Checkout times out"]);
    assert_eq!(severity_of(&url, "INC-2"), "sev3", "the running rule stays");

    // A key that cannot change while running: refused too.
    std::fs::write(&file, format!("data_dir = \"elsewhere\"\n{}", rules("sev2"))).unwrap();
    signal(server.pid(), "HUP");
    eventually("the fixed key refused", || (reloads(&http, "refused") == 2.0).then_some(()));
    klaxon_ok(&url, "monitor", &["report", "--title", "Checkout button missing"]);
    assert_eq!(severity_of(&url, "INC-3"), "sev3", "nothing of a refused file is applied");

    // A good file: applied without a restart, recorded once with its diff.
    std::fs::write(&file, rules("sev2")).unwrap();
    signal(server.pid(), "HUP");
    eventually("the good reload applied", || (reloads(&http, "applied") == 1.0).then_some(()));
    klaxon_ok(&url, "monitor", &["report", "--title", "Checkout slow"]);
    assert_eq!(severity_of(&url, "INC-4"), "sev2", "the new rule rates the new report");
    let entries = config_entries(&url);
    assert_eq!(entries.len(), 2, "{entries:?}");
    let summary = entries[1]["summary"].as_str().unwrap();
    assert!(summary.ends_with("applied at reload: 1 key (changed severity.rules[checkout].severity)"), "{summary}");
    assert_eq!(entries[1]["actor"], entries[0]["actor"], "the process's user applied both");
    assert!(!entries[1]["actor"].as_str().unwrap().is_empty());

    // The same file again: applied, nothing new recorded.
    signal(server.pid(), "HUP");
    eventually("the same file reloaded", || (reloads(&http, "applied") == 2.0).then_some(()));
    assert_eq!(config_entries(&url).len(), 2);
    assert!(server.stop().success());

    // A restart with the same file records nothing either.
    let server = Klaxond::start_with(&dir.path().join("data"), &["--config", config]);
    klaxon_ok(&server.url, "monitor", &["report", "--title", "Checkout again"]);
    assert_eq!(severity_of(&server.url, "INC-5"), "sev2");
    assert_eq!(config_entries(&server.url).len(), 2);
    assert!(server.stop().success());
}

#[test]
fn the_audit_trail_filters_by_actor_time_and_kind_in_table_json_and_csv() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("klaxon.toml");
    std::fs::write(&file, rules("sev3")).unwrap();
    let server = Klaxond::start_with(&dir.path().join("data"), &["--config", file.to_str().unwrap()]);
    let url = server.url.clone();
    klaxon_ok(&url, "monitor", &["report", "--title", "Checkout returns 500"]);
    klaxon_ok(&url, "maria", &["declare", "INC-1", "--severity", "1"]);
    klaxon_ok(&url, "omar", &["update", "INC-1", "Rolled back", "--audience", "internal"]);
    let audit = |args: &[&str]| {
        let mut all = vec!["audit"];
        all.extend_from_slice(args);
        klaxon_ok(&url, "maria", &all)
    };
    let json = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--format", "json"]);
        serde_json::from_str::<Vec<serde_json::Value>>(&audit(&all)).expect("a JSON array")
    };

    // Every stream: the configuration and the incident's.
    let everything = eventually("the configuration recorded", || {
        let all = json(&[]);
        all.iter().any(|e| e["kind"] == "config.applied.v1").then_some(all)
    });
    assert!(everything.iter().any(|e| e["kind"] == "incident.declared.v1" && e["stream"] == "incident-INC-1"));

    let by_maria = json(&["--actor", "maria"]);
    assert!(!by_maria.is_empty() && by_maria.iter().all(|e| e["actor"] == "maria"), "{by_maria:?}");
    assert!(by_maria.iter().any(|e| e["kind"] == "incident.declared.v1"), "{by_maria:?}");
    assert!(by_maria.iter().all(|e| e["kind"] != "incident.status_update_posted.v1"), "omar's update is not maria's");

    let updates = json(&["--kind", "incident.status_update"]);
    assert_eq!(updates.len(), 1, "{updates:?}");
    assert_eq!(updates[0]["actor"], "omar");
    let summary = updates[0]["summary"].as_str().unwrap();
    assert!(summary.contains("Rolled back"), "{summary}");

    // Time: everything was written after 2020 and before 2100.
    assert_eq!(json(&["--from", "2020-01-01", "--until", "2100-01-01"]).len(), everything.len());
    assert!(json(&["--from", "2100-01-01"]).is_empty());
    assert!(json(&["--until", "2020-01-01"]).is_empty());
    let at = updates[0]["at"].as_str().unwrap();
    let from_the_update = json(&["--from", at]);
    assert_eq!(from_the_update[0], updates[0], "--from includes its instant");
    assert!(json(&["--until", at]).iter().all(|e| e["position"].as_u64() < updates[0]["position"].as_u64()));

    // The same entries as a table and as CSV.
    let table = audit(&["--actor", "omar"]);
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("TIME") && lines[0].contains("ACTOR") && lines[0].ends_with("SUMMARY"), "{table}");
    assert_eq!(lines.len(), 2, "{table}");
    assert!(lines[1].contains("omar") && lines[1].contains("incident.status_update_posted.v1"), "{table}");
    let csv = audit(&["--actor", "omar", "--format", "csv"]);
    let rows: Vec<&str> = csv.lines().collect();
    assert_eq!(rows[0], "position,at,actor,kind,stream,summary");
    assert_eq!(rows.len(), 2, "{csv}");
    assert!(rows[1].starts_with(&format!(
        "{},{at},omar,incident.status_update_posted.v1,incident-INC-1,",
        updates[0]["position"]
    )));

    // Managers only.
    let refused = klaxon(&url, "rita", &["audit"]);
    assert!(!refused.status.success());
    assert_eq!(
        String::from_utf8_lossy(&refused.stderr),
        "klaxon: rita (reviewer) may not call /klaxon.v1.Review/Audit: it is for manager\n"
    );
    assert!(server.stop().success());
}

#[test]
fn tokens_created_and_revoked_are_in_the_audit_trail_without_their_secret() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let token = |args: &[&str]| {
        let out = Command::new(binary("klaxond"))
            .arg("token")
            .args(args)
            .args(["--data-dir", data.to_str().unwrap()])
            .output()
            .expect("run klaxond token");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        (String::from_utf8_lossy(&out.stdout).trim().to_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let tokens = |url: &str| {
        let out = klaxon_ok(url, "maria", &["audit", "--kind", "token.", "--format", "json"]);
        serde_json::from_str::<Vec<serde_json::Value>>(&out).expect("a JSON array")
    };
    let server = Klaxond::start(&data);
    // The start recorded every token of the file.
    let at_start = tokens(&server.url);
    assert_eq!(at_start.len(), klaxon_tests::auth::PEOPLE.len(), "{at_start:?}");
    assert!(at_start.iter().any(|e| e["summary"] == "created the manager token of maria"));

    // While the server holds the log, it notices the file change itself.
    let (secret, said) = token(&["create", "--name", "zoe", "--role", "engineer"]);
    assert!(said.contains("the running klaxond holds the event log: it records the change itself"), "{said}");
    let created = eventually("zoe's token recorded", || {
        tokens(&server.url).into_iter().find(|e| e["summary"] == "created the engineer token of zoe")
    });
    assert_eq!(created["stream"], "tokens");
    assert!(server.stop().success());

    // Without a server, `klaxond token` records it in the log itself.
    let (_, said) = token(&["revoke", "zoe"]);
    assert!(said.contains("recorded in the event log (1 events)"), "{said}");
    let server = Klaxond::start(&data);
    let all = tokens(&server.url);
    assert_eq!(all.len(), klaxon_tests::auth::PEOPLE.len() + 2, "{all:?}");
    assert_eq!(all.last().unwrap()["summary"], "revoked the engineer token of zoe");
    let trail = klaxon_ok(&server.url, "maria", &["audit", "--format", "csv"]);
    assert!(!trail.contains(&secret) && !trail.contains(&klaxon_auth::tokens::hash(&secret)));
    assert!(server.stop().success());
}

#[test]
fn a_process_with_nothing_to_reload_outlives_a_sighup() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Klaxond::start(&dir.path().join("data"));
    signal(server.pid(), "HUP");
    // Answered after the signal: the process is still there.
    klaxon_ok(&server.url, "monitor", &["report", "--title", "Still here"]);
    assert!(server.is_running());
    assert!(server.stop().success());
}
