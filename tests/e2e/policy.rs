//! Issue 18's policy dry run through a real `klaxond up` and the real CLI:
//! `klaxon policy test` replays real incidents under a candidate
//! configuration (table, JSON, CSV) and writes nothing; a broken candidate
//! is refused naming its key; an engineer may not run it; `klaxon severity
//! explain --report` rates a report that was never sent; `klaxon policy
//! lint` needs no server.

use std::path::Path;
use std::process::Output;

use klaxon_tests::metrics::{scrape, settle};
use klaxon_tests::{Klaxond, klaxon, klaxon_json, klaxon_ok};

const EXAMPLE: &str = include_str!("../../deploy/klaxon.toml");

/// The example configuration with a rule rating every search incident
/// Sev-2 (named `search-sev2`) before the rest.
fn candidate() -> String {
    let anchor = "[[severity.rules]]\nid = \"exec-escalation\"";
    assert!(EXAMPLE.contains(anchor), "the example starts its rules with exec-escalation");
    EXAMPLE.replacen(
        anchor,
        &format!(
            "[[severity.rules]]\nid = \"search-sev2\"\nseverity = \"sev2\"\nreason = \"Search matters now\"\n\
             when = {{ service = [\"search\"] }}\n\n{anchor}"
        ),
        1,
    )
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

fn head(server: &Klaxond) -> u64 {
    scrape(server.http_address.as_deref().expect("up serves metrics"))["klaxon_log_head"] as u64
}

fn quiet(server: &Klaxond) -> u64 {
    let metrics = server.http_address.as_deref().expect("up serves metrics");
    settle(metrics, &[metrics])
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Two real incidents: payments down for two customers (Sev-1 by
/// `tier1-multi-customer`, paged) and slow search (Sev-4 by default).
fn two_incidents(server: &Klaxond) -> (String, String) {
    let payments = klaxon_json(
        &server.url,
        "monitor",
        &["report", "--title", "Checkout is down", "--service", "payments", "--customer", "acme", "--customer", "beta"],
    )["incident_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let search = klaxon_json(&server.url, "monitor", &["report", "--title", "Search is slow", "--service", "search"])
        ["incident_id"]
        .as_str()
        .unwrap()
        .to_owned();
    quiet(server);
    (payments, search)
}

#[test]
fn policy_test_replays_live_incidents_under_a_candidate_in_every_format_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let config = write(dir.path(), "klaxon.toml", EXAMPLE);
    let server = Klaxond::start_with(&dir.path().join("data"), &["--config", &config]);
    let (payments, search) = two_incidents(&server);
    let candidate = write(dir.path(), "candidate.toml", &candidate());
    let before = quiet(&server);

    let report = klaxon_json(&server.url, "maria", &["policy", "test", "--config", &candidate]);
    assert_eq!(report["summary"]["incidents"], 2, "{report:#}");
    assert_eq!(report["summary"]["severity_changed"], 1, "{report:#}");
    let incident = |id: &str| report["incidents"].as_array().unwrap().iter().find(|i| i["incident_id"] == id).unwrap();
    let s = incident(&search);
    assert_eq!((&s["severity_before"], &s["rule_before"]), (&"sev4".into(), &serde_json::Value::Null), "{s:#}");
    assert_eq!((&s["severity_after"], &s["rule_after"]), (&"sev2".into(), &"search-sev2".into()), "{s:#}");
    // Sev-2 pages through the default policy: the duty manager's schedule.
    assert_eq!(s["paging_differs"], true, "{s:#}");
    assert_eq!(s["pages_before"].as_array().unwrap().len(), 0, "{s:#}");
    assert_eq!(s["pages_after"][0]["reason"], "severity", "{s:#}");
    let p = incident(&payments);
    assert_eq!((&p["rule_before"], &p["rule_after"]), (&"tier1-multi-customer".into(), &"tier1-multi-customer".into()));
    assert_eq!(p["paging_differs"], false, "the same policy pages the same people: {p:#}");
    assert!(!p["pages_before"].as_array().unwrap().is_empty(), "{p:#}");

    let table = klaxon_ok(&server.url, "maria", &["policy", "test", "--config", &candidate]);
    assert!(table.starts_with("Replayed 2 incident(s)"), "{table}");
    assert!(
        table.contains(&format!("{search} \"Search is slow\"\n  severity     sev4 -> sev2 (search-sev2)")),
        "{table}"
    );
    assert!(
        table.contains(&format!("{payments} \"Checkout is down\": unchanged, sev1 (tier1-multi-customer)")),
        "{table}"
    );

    let csv = klaxon_ok(&server.url, "maria", &["policy", "test", "--config", &candidate, "--format", "csv"]);
    let rows: Vec<&str> = csv.lines().collect();
    assert_eq!(rows.len(), 3, "{csv}");
    assert!(rows[0].starts_with("incident_id,title,severity_before,rule_before,severity_after,rule_after,"), "{csv}");
    assert!(
        rows.iter().any(|r| r.starts_with(&format!("{search},Search is slow,sev4,,sev2,search-sev2,true,true"))),
        "{csv}"
    );

    // A window that ends before the incidents were reported holds none.
    let empty = klaxon_json(&server.url, "maria", &["policy", "test", "--config", &candidate, "--until", "2020-01-01"]);
    assert_eq!(empty["summary"]["incidents"], 0, "{empty:#}");

    assert_eq!(quiet(&server), before, "a dry run wrote nothing");
    assert_eq!(head(&server), before);
}

#[test]
fn a_broken_candidate_is_refused_naming_the_key_and_an_engineer_may_not_test() {
    let dir = tempfile::tempdir().unwrap();
    let config = write(dir.path(), "klaxon.toml", EXAMPLE);
    let server = Klaxond::start_with(&dir.path().join("data"), &["--config", &config]);
    two_incidents(&server);
    let before = quiet(&server);

    let broken =
        write(dir.path(), "broken.toml", &candidate().replacen("severity = \"sev2\"", "severity = \"sev9\"", 1));
    let out = klaxon(&server.url, "maria", &["policy", "test", "--config", &broken]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("severity.rules[0].severity: \"sev9\" is not a severity"), "{}", stderr(&out));

    let unknown = write(
        dir.path(),
        "unknown.toml",
        &EXAMPLE.replacen("default_policy = \"default\"", "default_policy = \"nope\"", 1),
    );
    let out = klaxon(&server.url, "maria", &["policy", "test", "--config", &unknown]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("paging.default_policy"), "{}", stderr(&out));

    let candidate = write(dir.path(), "candidate.toml", &candidate());
    let out = klaxon(&server.url, "ana", &["policy", "test", "--config", &candidate]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).to_lowercase().contains("permission") || stderr(&out).contains("may not"), "{}", stderr(&out));

    assert_eq!(quiet(&server), before, "refusals wrote nothing");
}

#[test]
fn explain_rates_a_hypothetical_report_rule_by_rule_without_writing_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = write(dir.path(), "klaxon.toml", EXAMPLE);
    let server = Klaxond::start_with(&dir.path().join("data"), &["--config", &config]);
    let before = quiet(&server);
    let report = write(
        dir.path(),
        "report.json",
        r#"{"title": "Checkout is down", "service": "payments", "customers": ["acme", "beta"]}"#,
    );
    let explained = klaxon_json(&server.url, "rita", &["severity", "explain", "--report", &report]);
    assert_eq!(explained["rule_id"], "tier1-multi-customer", "{explained:#}");
    assert_eq!(explained["assessed"], "sev1", "{explained:#}");
    let text = klaxon_ok(&server.url, "rita", &["severity", "explain", "--report", &report]);
    assert!(text.starts_with("The report would be assessed SEV1 by rule tier1-multi-customer"), "{text}");
    assert!(text.contains("5. outage-words (SEV3): matches too, but an earlier rule won"), "{text}");

    let bad = write(dir.path(), "bad.json", "{\"title\": \"\\u0007\"}");
    let out = klaxon(&server.url, "rita", &["severity", "explain", "--report", &bad]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("title"), "{}", stderr(&out));
    assert_eq!(quiet(&server), before, "nothing was reported");
}

#[test]
fn lint_needs_no_server_and_fails_on_a_shadowed_rule() {
    let dir = tempfile::tempdir().unwrap();
    let clean = write(dir.path(), "clean.toml", EXAMPLE);
    // No server at this address: lint never calls one.
    let nowhere = "http://127.0.0.1:1";
    let out = klaxon_ok(nowhere, "maria", &["policy", "lint", "--config", &clean]);
    assert_eq!(out.trim(), "No problems found.");

    let shadowed = EXAMPLE.replacen(
        "[[severity.rules]]\nid = \"outage-words\"",
        "[[severity.rules]]\nid = \"exec-outage\"\nseverity = \"sev1\"\nreason = \"r\"\n\
         when = { reported_via = [\"executive\"], words = [\"outage\"] }\n\n[[severity.rules]]\nid = \"outage-words\"",
        1,
    );
    let path = write(dir.path(), "shadowed.toml", &shadowed);
    let out = klaxon(nowhere, "maria", &["policy", "lint", "--config", &path]);
    assert_eq!(out.status.code(), Some(6), "{}", stderr(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("severity.rules[4]  shadowed_rule  rule exec-outage can never match"), "{stdout}");
}

/// The example configuration with a schedule staffed only from 09:00 to
/// 17:00 UTC: a coverage hole every night.
fn with_a_day_shift() -> String {
    format!(
        "{EXAMPLE}\n[[schedules]]\nname = \"search-days\"\ntime_zone = \"UTC\"\n\n[[schedules.layers]]\n\
         name = \"days\"\nparticipants = [\"ana\", \"ben\"]\nshift = \"7d\"\nhandoff = \"09:00\"\n\
         start = \"2026-01-05\"\nactive = {{ from = \"09:00\", to = \"17:00\" }}\n"
    )
}

/// The coverage finding of `schedules[2]` in a lint's JSON output, and the
/// number of holes it counts (the first, and "N more").
fn night_holes(lint: &serde_json::Value) -> (String, u64) {
    let findings = lint["findings"].as_array().expect("findings");
    let hole = findings.iter().find(|f| f["key"] == "schedules[2]").unwrap_or_else(|| panic!("a hole: {lint:#}"));
    assert_eq!(hole["kind"], "coverage_hole", "{lint:#}");
    let message = hole["message"].as_str().unwrap().to_owned();
    let more = message
        .split(" and ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or_else(|| panic!("a count of more holes: {message}"));
    (message, more + 1)
}

/// `lint` with the start of a hole in progress written as `<now>`: the
/// coverage window starts at the moment each lint runs, so two lints a few
/// milliseconds apart (outside the day shift) differ only there.
fn as_of_now(lint: &serde_json::Value) -> serde_json::Value {
    let mut lint = lint.clone();
    for finding in lint["findings"].as_array_mut().into_iter().flatten() {
        let Some(message) = finding["message"].as_str() else { continue };
        let Some((before, rest)) = message.split_once(" from ") else { continue };
        let Some((from, after)) = rest.split_once(" to ") else { continue };
        let Ok(from_at) = chrono::DateTime::parse_from_rfc3339(from) else { continue };
        let ago = chrono::Utc::now().signed_duration_since(from_at);
        if ago >= chrono::TimeDelta::zero() && ago < chrono::TimeDelta::minutes(5) {
            finding["message"] = serde_json::Value::String(format!("{before} from <now> to {after}"));
        }
    }
    lint
}

#[test]
fn lint_without_config_lints_the_running_configuration_with_its_overrides_and_only_for_managers() {
    let dir = tempfile::tempdir().unwrap();
    let config = write(dir.path(), "klaxon.toml", &with_a_day_shift());
    let server = Klaxond::start_with(&dir.path().join("data"), &["--config", &config]);
    let before = quiet(&server);

    // The running configuration's own finding, as the local lint finds it in
    // the same file: a hole is printed, and fails only with --strict.
    let out = klaxon(&server.url, "maria", &["policy", "lint"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(text.starts_with("schedules[2]  coverage_hole  nobody is on call in search-days from "), "{text}");
    let out = klaxon(&server.url, "maria", &["policy", "lint", "--strict"]);
    assert_eq!(out.status.code(), Some(6), "{}", stderr(&out));
    assert!(stderr(&out).contains("schedules[2]: nobody is on call in search-days"), "{}", stderr(&out));
    let served = klaxon_json(&server.url, "maria", &["policy", "lint"]);
    let local = klaxon_json(&server.url, "maria", &["policy", "lint", "--config", &config]);
    assert_eq!(as_of_now(&served), as_of_now(&local), "no override yet: the server's lint is the file's");

    // An override in the middle of tomorrow night's hole splits it in two:
    // one hole more in force, which the server's lint shows and the file's
    // cannot.
    let night = (chrono::Utc::now() + chrono::TimeDelta::days(1)).date_naive();
    let at = |h: u32| night.and_hms_opt(h, 0, 0).unwrap().and_utc().to_rfc3339();
    let added = klaxon_ok(
        &server.url,
        "maria",
        &["oncall", "override", "--schedule", "search-days", "--who", "carl", "--from", &at(20), "--until", &at(22)],
    );
    assert!(added.starts_with("override O1: carl is on call ["), "{added}");
    let written = quiet(&server);
    let (_, holes_in_force) = night_holes(&klaxon_json(&server.url, "maria", &["policy", "lint"]));
    let (_, holes_in_file) = night_holes(&klaxon_json(&server.url, "maria", &["policy", "lint", "--config", &config]));
    assert_eq!(holes_in_force, holes_in_file + 1, "the override opened a hole only the server's lint sees");
    let out = klaxon_ok(&server.url, "maria", &["policy", "lint", "--days", "3"]);
    assert!(out.contains("(next 3 days)"), "{out}");

    // An engineer may not lint the server's configuration; nothing is written
    // by any lint.
    let out = klaxon(&server.url, "ana", &["policy", "lint"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).to_lowercase().contains("permission") || stderr(&out).contains("may not"), "{}", stderr(&out));
    assert_eq!(quiet(&server), written, "lints wrote nothing");
    assert!(written > before, "the override was written");
}
