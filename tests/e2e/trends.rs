//! Trends through the real CLI against a real `klaxond` (filters, table,
//! JSON, CSV), and a cadenced `[[reports]]` report posted to a real webhook
//! receiver once, and not again after a restart in the same period.
//!
//! `klaxond` runs on the system clock, so these tests pick a posting time
//! that has passed: weekday = today (UTC), time = 00:00. The durations of
//! incidents with known timings are checked in `review_service.rs`, where
//! a manual clock drives the event times.

use std::time::Duration;

use chrono::Datelike;
use klaxon_log::{Log, Position};
use klaxon_tests::config::{Paged, SECRET_ENV};
use klaxon_tests::{Klaxond, klaxon, klaxon_json, klaxon_ok};

fn today() -> &'static str {
    ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
        [chrono::Utc::now().weekday().num_days_from_monday() as usize]
}

/// The ISO week before the current one (UTC): the period a weekly report
/// posted today covers.
fn last_week() -> String {
    let week = (chrono::Utc::now() - chrono::TimeDelta::days(7)).date_naive().iso_week();
    format!("{}-W{:02}", week.year(), week.week())
}

fn last_month() -> String {
    let today = chrono::Utc::now().date_naive();
    let start = today.with_day(1).unwrap() - chrono::Months::new(1);
    format!("{}-{:02}", start.year(), start.month())
}

fn weekly_report() -> String {
    format!(
        r#"
[[reports]]
name = "weekly-payments"
period = "weekly"
weekday = "{}"
time = "00:00"
channels = ["pager"]
team = "payments"
"#,
        today()
    )
}

const MONTHLY_REPORT: &str = r#"
[[reports]]
name = "monthly-all"
period = "monthly"
day = 1
time = "00:00"
channels = ["pager"]
"#;

fn posted_records(data: &std::path::Path) -> Vec<serde_json::Value> {
    let log = Log::open(data, Default::default()).unwrap();
    let records = log.read_all(Position(1), 100_000).unwrap();
    records
        .iter()
        .filter(|r| r.kind.as_str() == "report.posted.v1")
        .map(|r| serde_json::from_str(r.data.as_str()).unwrap())
        .collect()
}

#[test]
fn a_weekly_report_is_posted_once_across_a_restart() {
    let paged = Paged::start(600, false, &weekly_report());
    let data = paged.dir.path().join("data");
    let env = [(SECRET_ENV, paged.secret.as_str())];
    let server = Klaxond::start_with_env(&data, &paged.config_args(), &env);
    let key = format!("report/weekly-payments/{}", last_week());
    let posts = paged.runtime.block_on(paged.receiver.wait_for_delivered(1, Duration::from_secs(30)));
    assert_eq!(posts.len(), 1, "the report was posted");
    let post = &posts[0];
    assert_eq!(post.idempotency_key, key);
    assert!(post.signature_ok);
    let body = post.body.to_string();
    for part in ["Weekly incident trends (weekly-payments)", "Filters: team payments", "Counting rules:"] {
        assert!(body.contains(part), "{part:?} missing from {body}");
    }
    assert!(server.stop().success());

    // Restarted in the same week, with a monthly report added after it:
    // once the monthly one arrives, the weekly one was checked in the same
    // round (reports are checked in order) and found posted.
    let config = std::fs::read_to_string(&paged.config).unwrap();
    std::fs::write(&paged.config, format!("{config}\n{MONTHLY_REPORT}")).unwrap();
    let server = Klaxond::start_with_env(&data, &paged.config_args(), &env);
    let posts = paged.runtime.block_on(paged.receiver.wait_for_delivered(2, Duration::from_secs(30)));
    assert_eq!(posts.len(), 2, "the monthly report was posted");
    assert_eq!(posts[1].idempotency_key, format!("report/monthly-all/{}", last_month()));
    assert!(server.stop().success());
    let keys: Vec<String> = paged.receiver.requests().into_iter().map(|r| r.idempotency_key).collect();
    assert_eq!(keys.iter().filter(|k| **k == key).count(), 1, "the weekly report was posted once: {keys:?}");

    let posted = posted_records(&data);
    let periods: Vec<&str> = posted.iter().map(|p| p["period"]["id"].as_str().unwrap()).collect();
    assert_eq!(periods, [last_week(), last_month()], "one record per period");
    assert_eq!(posted[0]["channels"][0]["delivered"], true, "{posted:?}");
}

#[test]
fn a_report_naming_an_unknown_channel_is_refused_at_start() {
    let extra = "[[reports]]\nname = \"r\"\nperiod = \"weekly\"\nchannels = [\"pager\", \"x\"]\n";
    let paged = Paged::start(600, false, extra);
    let data = paged.dir.path().join("data");
    let output = std::process::Command::new(klaxon_tests::binary("klaxond"))
        .args(["up", "--listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .args(paged.config_args())
        .env(SECRET_ENV, &paged.secret)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(r#"reports[0].channels[1]: unknown channel "x""#), "{stderr}");
}

#[test]
fn the_cli_filters_trends_and_prints_table_json_and_csv() {
    let paged = Paged::start(600, false, "");
    let data = paged.dir.path().join("data");
    let env = [(SECRET_ENV, paged.secret.as_str())];
    let server = Klaxond::start_with_env(&data, &paged.config_args(), &env);
    let url = server.url.clone();
    let run = |actor: &str, args: &[&str]| klaxon_ok(&url, actor, args);
    run("monitor", &["report", "--title", "Checkout fails", "--service", "payments"]);
    run("monitor", &["report", "--title", "Search slow", "--service", "search"]);
    run("maria", &["declare", "INC-2", "--severity", "3"]);
    run("maria", &["resolve", "INC-2", "--summary", "cache warmed"]);
    let window = ["trends", "--from", "2020-01-01", "--until", "2100-01-01"];
    let with = |extra: &[&'static str]| -> Vec<&'static str> { [&window[..], extra].concat() };

    let all = klaxon_json(&url, "rita", &window);
    assert_eq!((all["incidents"].as_u64(), all["open"].as_u64()), (Some(2), Some(1)), "{all}");
    let keys = |groups: &serde_json::Value| {
        groups.as_array().unwrap().iter().map(|g| format!("{}={}", g["key"], g["incidents"])).collect::<Vec<_>>()
    };
    // search is not in the catalog: no team.
    assert_eq!(keys(&all["by_team"]), ["\"payments\"=1", "\"(none)\"=1"], "{all}");
    let payments = klaxon_json(&url, "rita", &with(&["--team", "payments"]));
    assert_eq!(payments["incidents"], 1, "{payments}");
    assert_eq!(payments["filter"]["team"], "payments");
    let sev3 = klaxon_json(&url, "rita", &with(&["--severity", "3", "--service", "search"]));
    assert_eq!((sev3["incidents"].as_u64(), sev3["open"].as_u64()), (Some(1), Some(0)), "{sev3}");
    assert_eq!(sev3["durations"][4]["samples"], 1, "the resolved one has a time to resolve");

    let table = run("rita", &with(&["--team", "payments"]));
    for part in ["Filters: team payments", "Counting rules:", "1 incident counted (1 still open)", "By team"] {
        assert!(table.contains(part), "{part:?} missing from:\n{table}");
    }
    let csv = run("rita", &with(&["--csv", "--severity", "3"]));
    assert!(csv.starts_with("# rules\nrule\n"), "{csv}");
    assert!(csv.contains("\nall,all,1,0\n") && csv.contains("\nseverity,SEV3,1,0\n"), "{csv}");

    let head = klaxon_json(&url, "rita", &["metrics", "INC-1"]);
    let refused = klaxon(&url, "rita", &with(&["--team", "nobody"]));
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("team") && stderr.contains("nobody"), "{stderr}");
    assert_eq!(klaxon_json(&url, "rita", &["metrics", "INC-1"]), head);
    assert!(server.stop().success());
}
