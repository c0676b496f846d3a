//! The service catalog reloaded at SIGHUP, against a real `klaxond up`: a
//! service moved to another team and tier rates and files new reports by
//! the new catalog, leaves incidents reported before where they were, and a
//! rebuild from the log (snapshots deleted) answers the same; tokens scoped
//! to teams follow the move; a catalog that does not validate is refused
//! and writes nothing.

use std::path::Path;
use std::process::Command;

use klaxon_tests::metrics::scrape;
use klaxon_tests::{Klaxond, binary, klaxon, klaxon_json, klaxon_ok, signal};

use crate::{eventually, reloads};

/// A tier-1 rule, a rule naming `docs`, and the catalog: `checkout` of
/// `team` at `tier`, `docs` when `with_docs`.
fn config(team: &str, tier: i64, with_docs: bool) -> String {
    let docs = if with_docs {
        "[[services]]\nname = \"docs\"\nteam = \"web\"\ntier = 2\nescalation_policy = \"web\"\n"
    } else {
        ""
    };
    format!(
        r#"
[severity]
default = "sev4"
default_reason = "No rule matched"

[[severity.rules]]
id = "tier-1"
severity = "sev1"
reason = "A tier-1 service"
when = {{ service_tier = [1] }}

[[severity.rules]]
id = "docs"
severity = "sev3"
reason = "The docs are degraded"
when = {{ service = ["docs"] }}

[[services]]
name = "checkout"
team = "{team}"
tier = {tier}
escalation_policy = "{team}"

{docs}"#
    )
}

/// The severity the evaluator gave `incident`, and the rule.
fn assessed(url: &str, incident: &str) -> (String, String) {
    eventually(&format!("{incident} assessed"), || {
        let explained = klaxon_ok(url, "maria", &["severity", "explain", incident]);
        let shown = klaxon_json(url, "maria", &["show", incident]);
        let severity = shown["severity"].as_str()?.to_owned();
        Some((severity, explained.lines().next().unwrap_or_default().to_owned()))
    })
}

const WINDOW: [&str; 5] = ["trends", "--from", "2020-01-01", "--until", "2100-01-01"];

/// Trends over every incident, as JSON, once the review service holds
/// `incidents` of them.
fn trends(url: &str, incidents: u64, extra: &[&str]) -> serde_json::Value {
    let args: Vec<&str> = WINDOW.iter().copied().chain(extra.iter().copied()).collect();
    eventually("the review service caught up", || {
        let all = klaxon_json(url, "rita", &WINDOW);
        (all["incidents"].as_u64() == Some(incidents)).then(|| klaxon_json(url, "rita", &args))
    })
}

fn by_team(report: &serde_json::Value) -> Vec<String> {
    report["by_team"].as_array().unwrap().iter().map(|g| format!("{}={}", g["key"], g["incidents"])).collect()
}

/// Runs `klaxon report` about checkout as `actor`: its stderr when refused.
fn report_checkout(url: &str, actor: &str, title: &str) -> Result<(), String> {
    let out = klaxon(url, actor, &["report", "--title", title, "--service", "checkout"]);
    if out.status.success() { Ok(()) } else { Err(String::from_utf8_lossy(&out.stderr).into_owned()) }
}

fn check(file: &Path) -> String {
    let out = Command::new(binary("klaxond")).args(["config", "check"]).arg(file).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stdout));
    String::from_utf8_lossy(&out.stderr).trim_end().to_owned()
}

#[test]
fn a_reloaded_catalog_rates_and_files_new_reports_and_leaves_past_incidents_where_they_were() {
    let dir = tempfile::tempdir().unwrap();
    let (file, data) = (dir.path().join("klaxon.toml"), dir.path().join("data"));
    std::fs::write(&file, config("payments", 3, true)).unwrap();
    let args = ["--config", file.to_str().unwrap()];
    let server = Klaxond::start_with(&data, &args);
    let (url, http) = (server.url.clone(), server.http_address.clone().expect("the HTTP address"));

    klaxon_ok(&url, "monitor", &["report", "--title", "Checkout fails", "--service", "checkout"]);
    assert_eq!(assessed(&url, "INC-1").0, "sev4", "checkout is tier 3");
    assert_eq!(by_team(&trends(&url, 1, &[])), ["\"payments\"=1"]);
    // An engineer scoped to team search may not act on checkout yet.
    let refused = report_checkout(&url, "engineer-search", "Checkout is down").unwrap_err();
    assert!(refused.contains("may not act on service checkout"), "{refused}");

    // Refused: a tier that is none, then a catalog without a service a
    // rule names. Each names the key, changes nothing and writes nothing.
    // (The file's service `docs` is what the rule names.)
    for (broken, refused, problem) in [
        (config("payments", 4, true), 1.0, "services[0].tier: 4 is not a tier; expected 1, 2 or 3"),
        (
            config("payments", 3, false),
            2.0,
            "severity.rules[1].when.service[0]: service docs is not in the service catalog",
        ),
    ] {
        std::fs::write(&file, broken).unwrap();
        assert_eq!(check(&file), format!("klaxond: {}: {problem}", file.display()));
        let head = scrape(&http)["klaxon_log_head"];
        signal(server.pid(), "HUP");
        eventually("the broken catalog refused", || (reloads(&http, "refused") == refused).then_some(()));
        assert_eq!(scrape(&http)["klaxon_log_head"], head, "a refused reload writes nothing");
    }
    assert_eq!(reloads(&http, "applied"), 0.0);

    // Checkout moves to team search, tier 1: without a restart. The
    // engineer of search may report it now, the one of payments no longer.
    std::fs::write(&file, config("search", 1, true)).unwrap();
    signal(server.pid(), "HUP");
    eventually("the new catalog applied", || (reloads(&http, "applied") == 1.0).then_some(()));
    report_checkout(&url, "engineer-search", "Checkout fails again").expect("search's engineer reports checkout");
    let refused = report_checkout(&url, "engineer-payments", "Checkout still fails").unwrap_err();
    assert!(refused.contains("may not act on service checkout"), "{refused}");
    let (severity, why) = assessed(&url, "INC-2");
    assert_eq!(severity, "sev1", "the new report is rated by the new tier: {why}");
    assert!(why.contains("tier-1"), "{why}");
    // The first incident keeps the team and tier its report recorded.
    assert_eq!(assessed(&url, "INC-1").0, "sev4");
    let all = trends(&url, 2, &[]);
    assert_eq!(by_team(&all), ["\"payments\"=1", "\"search\"=1"], "{all}");
    // A team the catalog no longer has still has its past incidents.
    let payments = trends(&url, 2, &["--team", "payments"]);
    assert_eq!(payments["incidents"], 1, "{payments}");
    assert_eq!(trends(&url, 2, &["--team", "search"])["incidents"], 1);
    assert!(server.stop().success());

    // A rebuild from the log alone, with the catalog as it is now, files
    // them the same way.
    let snapshots = data.join("snapshots");
    if snapshots.exists() {
        std::fs::remove_dir_all(&snapshots).unwrap();
    }
    let server = Klaxond::start_with(&data, &args);
    let rebuilt = trends(&server.url, 2, &[]);
    assert_eq!(rebuilt, all, "a rebuild answers as the running service did");
    assert_eq!(trends(&server.url, 2, &["--team", "payments"]), payments);
    assert_eq!(assessed(&server.url, "INC-1").0, "sev4");
    assert!(server.stop().success());
}

/// A report naming a service the catalog lacks is accepted (an alert must
/// never be lost) and the reporter is told, on stderr and in `--json`,
/// naming the services there are; a catalogued service, or a Klaxon
/// without a catalog, says nothing.
#[test]
fn a_report_for_a_service_the_catalog_lacks_is_taken_with_a_note() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("klaxon.toml");
    std::fs::write(&file, config("payments", 1, true)).unwrap();
    let server = Klaxond::start_with(&dir.path().join("data"), &["--config", file.to_str().unwrap()]);
    let report = |service: &str| klaxon(&server.url, "monitor", &["report", "--title", "Slow", "--service", service]);

    let typo = report("chekout");
    let stderr = String::from_utf8_lossy(&typo.stderr);
    assert!(typo.status.success(), "{stderr}");
    assert_eq!(String::from_utf8_lossy(&typo.stdout).trim(), "INC-1", "stdout stays the id alone");
    assert_eq!(
        stderr.trim_end(),
        "klaxon: note: service \"chekout\" is not in the catalog (the services are checkout, docs): no team or \
         tier is recorded, and the default escalation policy pages for it"
    );
    let json = klaxon_json(&server.url, "monitor", &["report", "--title", "Slow", "--service", "chekout"]);
    assert!(json["notices"][0].as_str().unwrap().starts_with("service \"chekout\" is not in the catalog"), "{json}");

    let known = report("checkout");
    assert!(known.status.success() && known.stderr.is_empty(), "{}", String::from_utf8_lossy(&known.stderr));
    drop(server);

    // No catalog at all (a plain `klaxond up`): nothing to compare with.
    let plain = Klaxond::start(&dir.path().join("plain"));
    let out = klaxon(&plain.url, "monitor", &["report", "--title", "Slow", "--service", "chekout"]);
    assert!(out.status.success() && out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
}
