//! Cadenced reports: validation naming the key, periods and posting times
//! in a zone (across daylight saving changes), once per period.

use std::collections::BTreeSet;

use super::*;
use crate::catalog::{ServiceCatalogConfig, ServiceConfig};

fn catalog() -> ServiceCatalog {
    let payments = ServiceConfig {
        name: "payments".into(),
        team: "money".into(),
        tier: 1,
        runbook: None,
        public_name: None,
        escalation_policy: "p".into(),
    };
    ServiceCatalogConfig(vec![payments]).validate("services").unwrap()
}

/// Parses and checks `[[reports]]` (in a file whose channels are `ops`
/// and `execs`); a parse error or the check's error as text.
fn validate(toml_text: &str) -> Result<Vec<Report>, String> {
    #[derive(Deserialize)]
    struct File {
        reports: Vec<ReportConfig>,
    }
    let file: File = toml::from_str(toml_text).map_err(|e| e.to_string())?;
    let channels = |c: &str| c == "ops" || c == "execs";
    validate_reports(&file.reports, "reports", &catalog(), &channels).map_err(|e| e.to_string())
}

#[test]
fn validation_names_the_key() {
    let ok = r#"name = "weekly-ops", period = "weekly", channels = ["ops"]"#;
    let cases = [
        (r#"name = "x", period = "weekly", channels = ["ops", "x"]"#, r#"reports[0].channels[1]: unknown channel "x""#),
        (r#"name = "x", period = "weekly", channels = []"#, "reports[0].channels: must name at least one channel"),
        (
            r#"name = "x", period = "daily", channels = ["ops"]"#,
            r#"reports[0].period: "daily" must be "weekly" or "monthly""#,
        ),
        (
            r#"name = "a b", period = "weekly", channels = ["ops"]"#,
            r#"reports[0].name: "a b" must be 1 to 64 letters, digits, '-' or '_'"#,
        ),
        (
            r#"name = "x", period = "weekly", weekday = "mon", channels = ["ops"]"#,
            r#"reports[0].weekday: "mon" must be a weekday such as "monday""#,
        ),
        (
            r#"name = "x", period = "weekly", day = 3, channels = ["ops"]"#,
            "reports[0].day: applies to monthly reports only (weekly ones take weekday)",
        ),
        (r#"name = "x", period = "monthly", day = 29, channels = ["ops"]"#, "reports[0].day: 29 must be from 1 to 28"),
        (
            r#"name = "x", period = "monthly", weekday = "friday", channels = ["ops"]"#,
            "reports[0].weekday: applies to weekly reports only (monthly ones take day)",
        ),
        (
            r#"name = "x", period = "weekly", time = "9am", channels = ["ops"]"#,
            r#"reports[0].time: "9am" must be a time of day as HH:MM"#,
        ),
        (
            r#"name = "x", period = "weekly", time_zone = "Mars/Olympus", channels = ["ops"]"#,
            r#"reports[0].time_zone: unknown IANA time zone "Mars/Olympus""#,
        ),
        (
            r#"name = "x", period = "weekly", team = "nobody", channels = ["ops"]"#,
            r#"reports[0].team: "nobody" is no team of any service in [[services]]"#,
        ),
        (
            r#"name = "x", period = "weekly", severity = "sev9", channels = ["ops"]"#,
            r#"reports[0].severity: invalid severity: "sev9": expected SEV1 to SEV4 (or 1 to 4)"#,
        ),
        (r#"name = "x", period = "weekly", service = "Bad Name", channels = ["ops"]"#, "reports[0].service:"),
        (r#"name = "x", period = "weekly", channels = ["ops"], colour = "red""#, "unknown field `colour`"),
    ];
    for (table, expected) in cases {
        let text = format!("reports = [{{ {ok} }}, {{ {table} }}]").replace("reports[0]", "reports[1]");
        let error = validate(&text).expect_err(table);
        let expected = expected.replace("reports[0]", "reports[1]");
        assert!(error.contains(&expected), "{table}: {error}");
    }
    let twice = format!("reports = [{{ {ok} }}, {{ {ok} }}]");
    assert_eq!(validate(&twice).unwrap_err(), r#"reports[1].name: report "weekly-ops" is already defined at [0]"#);
    let report = &validate(&format!("reports = [{{ {ok}, team = \"money\", severity = \"2\" }}]")).unwrap()[0];
    assert_eq!(report.filter().describe(), "team money, severity SEV2");
}

fn at(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

/// `(now, periods posted) -> (the period due: id, from, to; next due)`.
type Case<'a> = (&'a str, &'a [&'a str], Option<(&'a str, &'a str, &'a str)>, &'a str);

fn check(report: &str, cases: &[Case<'_>]) {
    let report = &validate(&format!("reports = [{{ {report} }}]")).unwrap()[0];
    for (now, posted, due, next) in cases {
        let posted: BTreeSet<&str> = posted.iter().copied().collect();
        let is_posted = |p: &str| posted.contains(p);
        let expected = due.map(|(id, from, to)| Period { id: id.to_owned(), from: at(from), to: at(to) });
        assert_eq!(report.due(at(now), &is_posted), expected, "due at {now} with {posted:?}");
        assert_eq!(report.next_due(at(now), &is_posted), at(next), "next due at {now} with {posted:?}");
    }
}

#[test]
fn weekly_reports_in_a_zone() {
    // Mondays 09:00 in Paris (UTC+1 in winter): 08:00 UTC. W48 is Nov 23 to Nov 30 2026.
    let w48 = Some(("2026-W48", "2026-11-22T23:00:00Z", "2026-11-29T23:00:00Z"));
    let w47 = Some(("2026-W47", "2026-11-15T23:00:00Z", "2026-11-22T23:00:00Z"));
    check(
        r#"name = "ops", period = "weekly", time_zone = "Europe/Paris", channels = ["ops"]"#,
        &[
            // A minute before W48's posting time: W47 was posted, so nothing; next at 08:00.
            ("2026-11-30T07:59:00Z", &["2026-W47"], None, "2026-11-30T08:00:00Z"),
            // Nothing posted yet (a first start): the latest period whose time passed, W47.
            ("2026-11-30T07:59:00Z", &[], w47, "2026-11-30T07:59:00Z"),
            ("2026-11-30T08:00:00Z", &["2026-W47"], w48, "2026-11-30T08:00:00Z"),
            // Posted: next Monday.
            ("2026-11-30T08:00:00Z", &["2026-W47", "2026-W48"], None, "2026-12-07T08:00:00Z"),
            ("2026-12-06T23:59:59Z", &["2026-W48"], None, "2026-12-07T08:00:00Z"),
            // Down for two weeks: only the latest period is posted.
            (
                "2026-12-14T09:00:00Z",
                &["2026-W47"],
                Some(("2026-W50", "2026-12-06T23:00:00Z", "2026-12-13T23:00:00Z")),
                "2026-12-14T09:00:00Z",
            ),
        ],
    );
    // Fridays 17:30; the week of the change to winter time (Sunday Oct 25) lasts 7 days and 1 hour.
    check(
        r#"name = "ops", period = "weekly", weekday = "friday", time = "17:30", time_zone = "Europe/Paris", channels = ["ops"]"#,
        &[
            ("2026-10-30T16:29:00Z", &["2026-W42"], None, "2026-10-30T16:30:00Z"),
            (
                "2026-10-30T16:30:00Z",
                &["2026-W42"],
                Some(("2026-W43", "2026-10-18T22:00:00Z", "2026-10-25T23:00:00Z")),
                "2026-10-30T16:30:00Z",
            ),
        ],
    );
}

#[test]
fn monthly_reports_in_a_zone() {
    // The 2nd at 07:30 in New York; November 2026 starts on the day summer time ends.
    let november = Some(("2026-11", "2026-11-01T04:00:00Z", "2026-12-01T05:00:00Z"));
    check(
        r#"name = "monthly", period = "monthly", day = 2, time = "07:30", time_zone = "America/New_York", channels = ["execs"]"#,
        &[
            ("2026-12-02T12:29:00Z", &["2026-10"], None, "2026-12-02T12:30:00Z"),
            ("2026-12-02T12:30:00Z", &["2026-10"], november, "2026-12-02T12:30:00Z"),
            ("2026-12-02T12:30:00Z", &["2026-11"], None, "2027-01-02T12:30:00Z"),
            // The 1st of December, local evening, is still before the posting day.
            ("2026-12-02T04:00:00Z", &["2026-10"], None, "2026-12-02T12:30:00Z"),
        ],
    );
    // UTC, the default day (1) and time (09:00): January's report on February 1st.
    check(
        r#"name = "m", period = "monthly", channels = ["ops"]"#,
        &[(
            "2027-02-01T09:00:00Z",
            &[],
            Some(("2027-01", "2027-01-01T00:00:00Z", "2027-02-01T00:00:00Z")),
            "2027-02-01T09:00:00Z",
        )],
    );
}

#[test]
fn one_record_and_one_message_per_period() {
    let reports = validate(
        r#"reports = [{ name = "a", period = "weekly", channels = ["ops"] }, { name = "b", period = "weekly", channels = ["ops"] }]"#,
    )
    .unwrap();
    let period =
        |id: &str| Period { id: id.to_owned(), from: at("2026-11-23T00:00:00Z"), to: at("2026-11-30T00:00:00Z") };
    let (a, b) = (&reports[0], &reports[1]);
    assert_eq!(a.posted_id(&period("2026-W48")), a.posted_id(&period("2026-W48")));
    assert_ne!(a.posted_id(&period("2026-W48")), a.posted_id(&period("2026-W49")));
    assert_ne!(a.posted_id(&period("2026-W48")), b.posted_id(&period("2026-W48")));
    let trends = TrendReport::compute(&[], period("x").from, period("x").to, a.filter());
    let message = a.message(&period("2026-W48"), &trends);
    assert_eq!(message.idempotency_key, "report/a/2026-W48");
    assert_eq!(message.title, "Weekly incident trends (a): 2026-W48");
    assert_eq!(message.text, render_table(&trends), "the same numbers as klaxon trends");
    let posted = ReportPosted {
        report: "a".into(),
        period: period("2026-W48"),
        at: at("2026-11-30T09:00:00Z"),
        channels: vec![],
    };
    assert_eq!(ReportPosted::from_json(&posted.to_json().to_string()).unwrap(), posted);
}
