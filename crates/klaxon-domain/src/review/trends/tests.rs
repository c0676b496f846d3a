//! Trend reports over hand-made incident facts, with percentiles computed by
//! hand in the comments.

use expect_test::expect;

use super::*;
use crate::review::testkit::inc;

fn minutes(m: i64) -> TimeDelta {
    TimeDelta::minutes(m)
}

#[test]
fn nearest_rank_percentiles() {
    let cases: [(&[i64], usize, Option<i64>); 9] = [
        (&[], 50, None),
        (&[5], 50, Some(5)),
        (&[5], 90, Some(5)),
        (&[1, 2], 50, Some(1)),                               // rank ceil(1.0) = 1
        (&[1, 2], 51, Some(2)),                               // rank ceil(1.02) = 2
        (&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 50, Some(5)),      // rank 5
        (&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 90, Some(9)),      // rank 9
        (&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 91, Some(10)),     // rank ceil(9.1) = 10
        (&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11], 90, Some(10)), // rank ceil(9.9) = 10
    ];
    for (values, p, expected) in cases {
        let values: Vec<TimeDelta> = values.iter().map(|m| minutes(*m)).collect();
        assert_eq!(nearest_rank(&values, p), expected.map(minutes), "p{p} of {values:?}");
    }
}

#[test]
fn human_durations() {
    let cases = [
        (0, "0s"),
        (59, "59s"),
        (60, "1m 00s"),
        (3_599, "59m 59s"),
        (3_600, "1h 00m 00s"),
        (90_061, "1d 01h 01m"),
        (-5, "0s"),
    ];
    for (secs, expected) in cases {
        assert_eq!(human_duration(TimeDelta::seconds(secs)), expected);
    }
}

/// One incident's facts; durations in minutes.
#[allow(clippy::too_many_arguments)]
fn facts(
    n: u64,
    severity: Option<Severity>,
    service: Option<&str>,
    reported: &str,
    detect: Option<i64>,
    ack: Option<i64>,
    assign: Option<i64>,
    resolve: Option<i64>,
    pages: u32,
    breaches: (u32, u32, u32),
    noise: bool,
) -> IncidentFacts {
    IncidentFacts {
        id: inc(n),
        severity,
        service: service.map(|s| ServiceName::new(s).unwrap()),
        first_reported_at: reported.parse().unwrap(),
        metrics: IncidentMetrics {
            time_to_detect: detect.map(minutes),
            time_to_acknowledge: ack.map(minutes),
            time_to_assign: assign.map(minutes),
            time_to_mitigate: None,
            time_to_resolve: resolve.map(minutes),
            escalations: 0,
            handoffs: 0,
            slo_breaches: SloBreaches { ack: breaches.0, assign: breaches.1, update_cadence: breaches.2, resolve: 0 },
            pages,
            noise,
            pulled_in_pages: 0,
        },
        noise,
    }
}

fn report() -> TrendReport {
    use Severity::*;
    let incidents = [
        facts(
            1,
            Some(Sev1),
            Some("payments"),
            "2026-03-02T10:00:00Z",
            Some(5),
            Some(2),
            Some(5),
            Some(60),
            2,
            (0, 0, 0),
            false,
        ),
        facts(
            2,
            Some(Sev1),
            Some("payments"),
            "2026-03-03T10:00:00Z",
            None,
            Some(4),
            Some(12),
            Some(120),
            3,
            (0, 1, 0),
            false,
        ),
        facts(
            3,
            Some(Sev2),
            Some("search"),
            "2026-03-09T00:00:00Z",
            Some(1),
            Some(1),
            Some(3),
            Some(30),
            1,
            (0, 0, 0),
            false,
        ),
        facts(4, Some(Sev2), None, "2026-03-10T10:00:00Z", None, Some(10), None, None, 4, (1, 0, 0), false),
        facts(
            5,
            Some(Sev3),
            Some("search"),
            "2026-03-11T10:00:00Z",
            Some(10),
            None,
            Some(20),
            Some(240),
            0,
            (0, 0, 0),
            false,
        ),
        facts(6, None, Some("billing"), "2026-03-15T23:59:59Z", None, None, None, None, 0, (0, 0, 0), false),
        facts(
            7,
            Some(Sev1),
            Some("payments"),
            "2026-03-04T10:00:00Z",
            Some(1),
            Some(1),
            Some(1),
            Some(1),
            9,
            (1, 1, 1),
            true,
        ),
        facts(
            8,
            Some(Sev1),
            Some("payments"),
            "2026-03-16T00:00:00Z",
            Some(1),
            Some(1),
            Some(1),
            Some(1),
            1,
            (0, 0, 0),
            false,
        ),
        facts(
            9,
            Some(Sev2),
            Some("payments"),
            "2026-03-01T23:59:59Z",
            Some(1),
            Some(1),
            Some(1),
            Some(1),
            1,
            (0, 0, 0),
            false,
        ),
        facts(10, Some(Sev4), Some("billing"), "2026-03-12T10:00:00Z", None, None, None, Some(15), 0, (0, 0, 1), false),
    ];
    TrendReport::compute(&incidents, "2026-03-02T00:00:00Z".parse().unwrap(), "2026-03-16T00:00:00Z".parse().unwrap())
}

#[test]
fn counts_percentiles_and_compliance_by_hand() {
    let r = report();
    // In [Mar 2, Mar 16): 1-7 and 10; 7 is noise; 8 is at the excluded end, 9 before the start.
    assert_eq!((r.incidents, r.noise_excluded), (7, 1));
    let counts =
        |rows: &[Count]| rows.iter().map(|c| format!("{}={}", c.key, c.incidents)).collect::<Vec<_>>().join(" ");
    assert_eq!(counts(&r.by_severity), "SEV1=2 SEV2=2 SEV3=1 SEV4=1 (none)=1");
    assert_eq!(counts(&r.by_service), "billing=2 payments=2 search=2 (none)=1");
    // Mar 2 to Mar 8 is 2026-W10; Mar 9 to Mar 15 (Sunday, 23:59:59) is W11.
    assert_eq!(counts(&r.by_week), "2026-W10=2 2026-W11=5");
    let stats = |metric: &str| {
        let d = r.durations.iter().find(|d| d.metric == metric).unwrap();
        (d.samples, d.p50.map(|p| p.num_minutes()), d.p90.map(|p| p.num_minutes()))
    };
    // detect [1, 5, 10]: p50 rank ceil(1.5) = 2 -> 5; p90 rank ceil(2.7) = 3 -> 10.
    assert_eq!(stats("time_to_detect"), (3, Some(5), Some(10)));
    // ack [1, 2, 4, 10]: p50 rank 2 -> 2; p90 rank ceil(3.6) = 4 -> 10.
    assert_eq!(stats("time_to_acknowledge"), (4, Some(2), Some(10)));
    // assign [3, 5, 12, 20]: p50 rank 2 -> 5; p90 rank 4 -> 20.
    assert_eq!(stats("time_to_assign"), (4, Some(5), Some(20)));
    assert_eq!(stats("time_to_mitigate"), (0, None, None));
    // resolve [15, 30, 60, 120, 240]: p50 rank ceil(2.5) = 3 -> 60; p90 rank ceil(4.5) = 5 -> 240.
    assert_eq!(stats("time_to_resolve"), (5, Some(60), Some(240)));
    // SLOs applied to 1, 2, 3, 4 (paged) and 10 (a cadence breach); 1 and 3 breached none.
    assert_eq!((r.slo.applicable, r.slo.compliant, r.slo.percent), (5, 2, Some(40.0)));
    assert_eq!(r.slo.breaches, SloBreaches { ack: 1, assign: 1, update_cadence: 1, resolve: 0 });
}

#[test]
fn an_empty_window() {
    let r = TrendReport::compute(&[], "2026-03-02T00:00:00Z".parse().unwrap(), "2026-03-02T00:00:00Z".parse().unwrap());
    assert_eq!((r.incidents, r.noise_excluded, r.slo.percent), (0, 0, None));
    assert_eq!(r.by_severity.iter().map(|c| c.incidents).sum::<u32>(), 0);
    assert!(r.by_service.is_empty() && r.by_week.is_empty());
    assert!(r.durations.iter().all(|d| d.samples == 0 && d.p50.is_none() && d.p90.is_none()));
    expect![[r#"
        Incident trends from 2026-03-02 00:00 UTC to 2026-03-02 00:00 UTC (end excluded)
        0 incidents counted, 0 marked as noise excluded

        Severity  Incidents
        SEV1              0
        SEV2              0
        SEV3              0
        SEV4              0

        Service  Incidents

        Week  Incidents

        Metric               Samples  p50  p90
        time to detect             0    -    -
        time to acknowledge        0    -    -
        time to assign             0    -    -
        time to mitigate           0    -    -
        time to resolve            0    -    -

        SLO compliance: - (no incident had an SLO)
        SLO breaches: ack 0, assign 0, update cadence 0, resolve 0
    "#]]
    .assert_eq(&render_table(&r));
}

#[test]
fn the_table() {
    expect![[r#"
        Incident trends from 2026-03-02 00:00 UTC to 2026-03-16 00:00 UTC (end excluded)
        7 incidents counted, 1 marked as noise excluded

        Severity  Incidents
        SEV1              2
        SEV2              2
        SEV3              1
        SEV4              1
        (none)            1

        Service   Incidents
        billing           2
        payments          2
        search            2
        (none)            1

        Week      Incidents
        2026-W10          2
        2026-W11          5

        Metric               Samples         p50         p90
        time to detect             3      5m 00s     10m 00s
        time to acknowledge        4      2m 00s     10m 00s
        time to assign             4      5m 00s     20m 00s
        time to mitigate           0           -           -
        time to resolve            5  1h 00m 00s  4h 00m 00s

        SLO compliance: 40.0% (2 of 5 incidents with an SLO breached none)
        SLO breaches: ack 1, assign 1, update cadence 1, resolve 0
    "#]]
    .assert_eq(&render_table(&report()));
}

#[test]
fn the_csv() {
    expect![[r#"
        # summary
        from,to,incidents,noise_excluded
        2026-03-02T00:00:00Z,2026-03-16T00:00:00Z,7,1

        # by_severity
        severity,incidents
        SEV1,2
        SEV2,2
        SEV3,1
        SEV4,1
        (none),1

        # by_service
        service,incidents
        billing,2
        payments,2
        search,2
        (none),1

        # by_week
        week,incidents
        2026-W10,2
        2026-W11,5

        # durations
        metric,samples,p50_seconds,p90_seconds
        time_to_detect,3,300,600
        time_to_acknowledge,4,120,600
        time_to_assign,4,300,1200
        time_to_mitigate,0,,
        time_to_resolve,5,3600,14400

        # slo
        applicable,compliant,compliance_percent,ack_breaches,assign_breaches,update_cadence_breaches,resolve_breaches
        5,2,40.0,1,1,1,0
    "#]]
    .assert_eq(&to_csv(&report()));
}

#[test]
fn the_json() {
    expect![[r#"
        {
          "from": "2026-03-02T00:00:00Z",
          "to": "2026-03-16T00:00:00Z",
          "incidents": 7,
          "noise_excluded": 1,
          "by_severity": [
            {
              "key": "SEV1",
              "incidents": 2
            },
            {
              "key": "SEV2",
              "incidents": 2
            },
            {
              "key": "SEV3",
              "incidents": 1
            },
            {
              "key": "SEV4",
              "incidents": 1
            },
            {
              "key": "(none)",
              "incidents": 1
            }
          ],
          "by_service": [
            {
              "key": "billing",
              "incidents": 2
            },
            {
              "key": "payments",
              "incidents": 2
            },
            {
              "key": "search",
              "incidents": 2
            },
            {
              "key": "(none)",
              "incidents": 1
            }
          ],
          "by_week": [
            {
              "key": "2026-W10",
              "incidents": 2
            },
            {
              "key": "2026-W11",
              "incidents": 5
            }
          ],
          "durations": [
            {
              "metric": "time_to_detect",
              "samples": 3,
              "p50_seconds": 300,
              "p90_seconds": 600
            },
            {
              "metric": "time_to_acknowledge",
              "samples": 4,
              "p50_seconds": 120,
              "p90_seconds": 600
            },
            {
              "metric": "time_to_assign",
              "samples": 4,
              "p50_seconds": 300,
              "p90_seconds": 1200
            },
            {
              "metric": "time_to_mitigate",
              "samples": 0,
              "p50_seconds": null,
              "p90_seconds": null
            },
            {
              "metric": "time_to_resolve",
              "samples": 5,
              "p50_seconds": 3600,
              "p90_seconds": 14400
            }
          ],
          "slo": {
            "applicable": 5,
            "compliant": 2,
            "compliance_percent": 40.0,
            "breaches": {
              "ack": 1,
              "assign": 1,
              "update_cadence": 1,
              "resolve": 0
            }
          }
        }"#]]
    .assert_eq(&serde_json::to_string_pretty(&report()).unwrap());
}

#[test]
fn facts_of_an_incident() {
    use crate::review::testkit::{Script, declare, noise, report as report_issue};
    let mut s = Script::new(3, 1);
    s.cmd(0, "a", report_issue("x", Some("search"), None)).cmd(1, "a", declare(Severity::Sev2)).cmd(2, "a", noise());
    let metrics = IncidentMetrics::compute(&s.incident_events, &s.page_events);
    let f = IncidentFacts::new(s.incident(), metrics);
    assert_eq!(
        (f.id, f.severity, f.service.as_ref().map(ServiceName::as_str)),
        (inc(3), Some(Severity::Sev2), Some("search"))
    );
    assert_eq!((f.first_reported_at, f.noise, f.metrics.noise), (crate::review::testkit::at(0), true, true));
}

#[test]
fn resolve_breaches_are_counted_and_cost_compliance() {
    let mut late = facts(
        1,
        Some(Severity::Sev1),
        Some("payments"),
        "2026-03-03T10:00:00Z",
        None,
        Some(1),
        Some(2),
        Some(300),
        1,
        (0, 0, 0),
        false,
    );
    late.metrics.slo_breaches.add(crate::paging::SloKind::Resolve, 1);
    let on_time = facts(
        2,
        Some(Severity::Sev1),
        Some("payments"),
        "2026-03-04T10:00:00Z",
        None,
        Some(1),
        Some(2),
        Some(30),
        1,
        (0, 0, 0),
        false,
    );
    let r = TrendReport::compute(
        &[late, on_time],
        "2026-03-02T00:00:00Z".parse().unwrap(),
        "2026-03-16T00:00:00Z".parse().unwrap(),
    );
    assert_eq!(r.slo.breaches, SloBreaches { ack: 0, assign: 0, update_cadence: 0, resolve: 1 });
    assert_eq!((r.slo.applicable, r.slo.compliant, r.slo.percent), (2, 1, Some(50.0)));
    let csv = super::to_csv(&r);
    assert!(csv.contains("update_cadence_breaches,resolve_breaches\n2,1,50.0,0,0,0,1\n"), "{csv}");
}
