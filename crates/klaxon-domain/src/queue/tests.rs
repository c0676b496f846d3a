//! Given open incidents as one-line facts, the queue order and each row's
//! deadline and time left.

use chrono::{DateTime, TimeDelta, Utc};
use expect_test::{Expect, expect};

use super::*;

/// Monday 2026-03-02 00:00 UTC plus `HH:MM`.
fn time(text: &str) -> DateTime<Utc> {
    let (h, m) = text.split_once(':').unwrap();
    "2026-03-02T00:00:00Z".parse::<DateTime<Utc>>().unwrap()
        + TimeDelta::hours(h.parse().unwrap())
        + TimeDelta::minutes(m.parse().unwrap())
}

/// ack 5, assign 10, cadence 30, resolve 240 minutes (Sev-1 and Sev-2);
/// the defaults without a resolution SLA for the rest.
fn slo(severity: Option<Severity>) -> Slo {
    match severity {
        Some(Severity::Sev1 | Severity::Sev2) => Slo { resolve: Some(TimeDelta::minutes(240)), ..Slo::DEFAULT },
        _ => Slo::DEFAULT,
    }
}

/// One incident a line: `INC-n sevN|- [owned] [declared HH:MM] [paged HH:MM]
/// [acked] [update HH:MM] [cadence]`; the queue at `now`.
fn check(now: &str, lines: &str, expected: Expect) {
    let mut rows: Vec<Row> = lines
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            let after = |key: &str| words.iter().position(|w| *w == key).map(|i| time(words[i + 1]));
            let severity = words[1].parse::<Severity>().ok();
            let facts = Facts {
                incident: words[0].parse().unwrap(),
                severity,
                owned: words.contains(&"owned"),
                declared_at: after("declared"),
                first_paged_at: after("paged"),
                acknowledged: words.contains(&"acked"),
                last_executive_update_at: after("update"),
                on_cadence: words.contains(&"cadence"),
            };
            Row::of(&facts, &slo(severity))
        })
        .collect();
    order(&mut rows);
    let now = time(now);
    let out: Vec<String> = rows
        .iter()
        .map(|r| {
            let severity = r.severity.map_or("-".to_string(), |s| s.to_string());
            let unowned = if r.unowned_sev1 { " unowned" } else { "" };
            let next = match (r.next, r.left(now)) {
                (Some((d, at)), Some(left)) => {
                    format!(" {d} at {} ({}m left)", at.format("%H:%M"), left.num_minutes())
                }
                _ => " no deadline".to_string(),
            };
            format!("{} {severity}{unowned}{next}", r.incident)
        })
        .collect();
    expected.assert_eq(&out.join("\n"));
}

#[test]
fn unowned_sev1s_come_first_then_the_soonest_deadline_then_severity() {
    check(
        "00:20",
        "
        INC-1 sev3
        INC-2 sev2 declared 00:00
        INC-3 sev1 owned declared 00:10 paged 00:10
        INC-4 sev1 declared 00:15
        INC-5 sev4 declared 00:05 owned
        INC-6 -
        INC-7 sev2 owned declared 00:00 paged 00:00 acked cadence
        ",
        expect![[r#"
            INC-4 SEV1 unowned assign at 00:25 (5m left)
            INC-2 SEV2 assign at 00:10 (-10m left)
            INC-3 SEV1 acknowledge at 00:15 (-5m left)
            INC-7 SEV2 executive_update at 00:30 (10m left)
            INC-1 SEV3 no deadline
            INC-5 SEV4 no deadline
            INC-6 - no deadline"#]],
    );
}

#[test]
fn each_deadline_kind_is_named_and_overdue_ones_lead() {
    check(
        "01:00",
        "
        INC-1 sev2 owned declared 00:00 cadence update 00:45
        INC-2 sev2 owned declared 00:00 cadence
        INC-3 sev3 declared 00:55
        INC-4 sev2 owned declared 00:50 paged 00:50
        INC-5 sev1 owned declared 00:00 paged 00:00 acked update 00:59 cadence
        ",
        expect![[r#"
            INC-2 SEV2 executive_update at 00:30 (-30m left)
            INC-4 SEV2 acknowledge at 00:55 (-5m left)
            INC-3 SEV3 assign at 01:05 (5m left)
            INC-1 SEV2 executive_update at 01:15 (15m left)
            INC-5 SEV1 executive_update at 01:29 (29m left)"#]],
    );
}

#[test]
fn ties_fall_back_to_severity_then_the_older_incident() {
    check(
        "00:00",
        "
        INC-9 sev3 declared 00:00
        INC-8 sev2 declared 00:00
        INC-2 -
        INC-1 -
        INC-4 sev1
        INC-3 sev1
        ",
        expect![[r#"
            INC-3 SEV1 unowned no deadline
            INC-4 SEV1 unowned no deadline
            INC-8 SEV2 assign at 00:10 (10m left)
            INC-9 SEV3 assign at 00:10 (10m left)
            INC-1 - no deadline
            INC-2 - no deadline"#]],
    );
}
