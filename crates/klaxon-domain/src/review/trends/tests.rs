//! Trend reports over a table of hand-made incident facts, with every
//! expected number computed by hand in the comments.

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
        (0, "0s", "0s"),
        (59, "59s", "59s"),
        (60, "1m 00s", "1m"),
        (65, "1m 05s", "1m05s"),
        (3_599, "59m 59s", "59m59s"),
        (3_600, "1h 00m 00s", "1h"),
        (5_150, "1h 25m 50s", "1h25m"),
        (90_061, "1d 01h 01m", "1d01h"),
        (-5, "0s", "0s"),
    ];
    for (secs, human, compact) in cases {
        assert_eq!(human_duration(TimeDelta::seconds(secs)), human);
        assert_eq!(compact_duration(TimeDelta::seconds(secs)), compact);
    }
}

/// The catalog's team of the test services (`ledger` is not catalogued).
fn team_of(service: &str) -> Option<String> {
    match service {
        "payments" | "billing" => Some("money".into()),
        "search" => Some("discovery".into()),
        _ => None,
    }
}

/// One incident's facts: durations in minutes (detect, ack, assign,
/// mitigate, resolve; a resolve of `None` is an open incident), breaches
/// (ack, assign, update cadence, resolve).
#[allow(clippy::too_many_arguments)]
fn facts(
    n: u64,
    severity: Option<Severity>,
    service: Option<&str>,
    reported: &str,
    durations: [Option<i64>; 5],
    pages: u32,
    breaches: [u32; 4],
    noise: bool,
) -> IncidentFacts {
    let [detect, ack, assign, mitigate, resolve] = durations.map(|d| d.map(minutes));
    IncidentFacts {
        id: inc(n),
        severity,
        service: service.map(|s| ServiceName::new(s).unwrap()),
        team: service.and_then(team_of),
        first_reported_at: reported.parse().unwrap(),
        metrics: IncidentMetrics {
            time_to_detect: detect,
            time_to_acknowledge: ack,
            time_to_assign: assign,
            time_to_mitigate: mitigate,
            time_to_resolve: resolve,
            escalations: 0,
            handoffs: 0,
            slo_breaches: SloBreaches {
                ack: breaches[0],
                assign: breaches[1],
                update_cadence: breaches[2],
                resolve: breaches[3],
            },
            pages,
            noise,
            pulled_in_pages: 0,
        },
        noise,
    }
}

/// The incidents every test reports on, and the window Mar 2 to Mar 16.
fn incidents() -> Vec<IncidentFacts> {
    use Severity::*;
    #[rustfmt::skip]
    let incidents = vec![
        //    id severity     service          first report            detect ack   assign mitig resolve  pages breaches      noise
        facts(1, Some(Sev1), Some("payments"), "2026-03-02T10:00:00Z", [Some(5), Some(2), Some(5), Some(8), Some(60)],  2, [1, 0, 0, 0], false),
        facts(2, Some(Sev1), Some("payments"), "2026-03-03T10:00:00Z", [None, Some(4), Some(12), Some(20), Some(120)],  3, [0, 2, 0, 0], false),
        facts(3, Some(Sev2), Some("search"),   "2026-03-09T00:00:00Z", [Some(1), Some(1), Some(3), Some(10), Some(30)], 1, [0, 0, 0, 0], false),
        facts(4, Some(Sev2), None,             "2026-03-10T10:00:00Z", [None, Some(10), None, None, None],              4, [1, 0, 0, 1], false),
        facts(5, Some(Sev3), Some("search"),   "2026-03-11T10:00:00Z", [Some(10), None, Some(20), None, Some(240)],     0, [0, 0, 0, 0], false),
        facts(6, None,       Some("billing"),  "2026-03-15T23:59:59Z", [None, None, None, None, None],                  0, [0, 0, 0, 0], false),
        facts(7, Some(Sev1), Some("payments"), "2026-03-04T10:00:00Z", [Some(1), Some(1), Some(1), Some(1), Some(1)],   9, [1, 1, 1, 0], true),
        facts(8, Some(Sev1), Some("payments"), "2026-03-16T00:00:00Z", [Some(1), Some(1), Some(1), Some(1), Some(1)],   1, [0, 0, 0, 0], false),
        facts(9, Some(Sev2), Some("payments"), "2026-03-01T23:59:59Z", [Some(1), Some(1), Some(1), Some(1), Some(1)],   1, [0, 0, 0, 0], false),
        facts(10, Some(Sev4), Some("billing"), "2026-03-12T10:00:00Z", [None, None, None, None, Some(15)],              0, [0, 0, 1, 0], false),
        facts(11, Some(Sev2), Some("ledger"),  "2026-03-13T10:00:00Z", [Some(2), Some(3), Some(4), Some(6), Some(50)],  1, [0, 0, 0, 0], false),
    ];
    incidents
}

fn window() -> (DateTime<Utc>, DateTime<Utc>) {
    ("2026-03-02T00:00:00Z".parse().unwrap(), "2026-03-16T00:00:00Z".parse().unwrap())
}

fn report_with(filter: &TrendFilter) -> TrendReport {
    let (from, to) = window();
    TrendReport::compute(&incidents(), from, to, filter)
}

fn report() -> TrendReport {
    report_with(&TrendFilter::default())
}

/// `metric: samples p50 p90 mean` in minutes (mean in seconds, to see its
/// fraction), for one group's durations.
fn durations(stats: &[DurationStats]) -> Vec<String> {
    let m = |d: Option<TimeDelta>| d.map_or("-".to_owned(), |d| d.num_minutes().to_string());
    let s = |d: Option<TimeDelta>| d.map_or("-".to_owned(), |d| format!("{}s", d.num_seconds()));
    stats.iter().map(|d| format!("{}: {} {} {} {}", d.metric, d.samples, m(d.p50), m(d.p90), s(d.mean))).collect()
}

/// `slo applicable/within percent breaches` for each SLO, then `all`.
fn slos(slo: &SloCompliance) -> Vec<String> {
    let p = |p: Option<f64>| p.map_or("-".to_owned(), |p| format!("{p:.1}"));
    let mut rows: Vec<String> = slo
        .by_slo
        .iter()
        .map(|s| format!("{} {}/{} {} {}", s.slo, s.within, s.applicable, p(s.percent), s.breaches))
        .collect();
    rows.push(format!("all {}/{} {} {}", slo.compliant, slo.applicable, p(slo.percent), slo.breaches.total()));
    rows
}

fn group<'a>(groups: &'a [Group], key: &str) -> &'a Group {
    groups.iter().find(|g| g.key == key).unwrap_or_else(|| panic!("no group {key}"))
}

#[test]
fn which_incidents_count() {
    let r = report();
    // In [Mar 2, Mar 16): 1-7, 10, 11; 7 is noise; 8 is at the excluded end,
    // 9 before the start. Open (no standing resolution): 4 and 6.
    assert_eq!((r.incidents, r.open, r.noise_excluded), (8, 2, 1));
}

#[test]
fn durations_of_all_counted_incidents() {
    assert_eq!(
        durations(&report().durations),
        [
            // [1, 2, 5, 10]: p50 rank 2 -> 2; p90 rank ceil(3.6) = 4 -> 10; mean 18/4 = 4.5 min.
            "time_to_detect: 4 2 10 270s",
            // [1, 2, 3, 4, 10]: p50 rank ceil(2.5) = 3 -> 3; p90 rank ceil(4.5) = 5 -> 10; mean 20/5.
            "time_to_acknowledge: 5 3 10 240s",
            // [3, 4, 5, 12, 20]: p50 -> 5; p90 -> 20; mean 44/5 = 8.8 min.
            "time_to_assign: 5 5 20 528s",
            // [6, 8, 10, 20]: p50 rank 2 -> 8; p90 rank 4 -> 20; mean 44/4.
            "time_to_mitigate: 4 8 20 660s",
            // [15, 30, 50, 60, 120, 240] (4 and 6 are open: no sample): p50 rank 3 -> 50;
            // p90 rank ceil(5.4) = 6 -> 240; mean 515/6 = 85.83 min = 5150 s.
            "time_to_resolve: 6 50 240 5150s",
        ]
    );
}

#[test]
fn slo_compliance_of_all_counted_incidents() {
    // An SLO applied to 1, 2, 3, 4, 11 (paged) and 10 (a cadence breach),
    // not to 5 and 6. Breached: ack 1 and 4; assign 2 (twice); update
    // cadence 10; resolve 4. None breached: 3 and 11.
    assert_eq!(
        slos(&report().slo),
        ["ack 4/6 66.7 2", "assign 5/6 83.3 2", "update_cadence 5/6 83.3 1", "resolve 5/6 83.3 1", "all 2/6 33.3 6"]
    );
}

#[test]
fn breakdowns_by_every_dimension() {
    let r = report();
    let rows = |groups: &[Group]| {
        groups.iter().map(|g| format!("{}={}/{}", g.key, g.incidents, g.open)).collect::<Vec<_>>().join(" ")
    };
    // key=incidents/open
    let cases: [(&[Group], &str); 4] = [
        (&r.by_severity, "SEV1=2/0 SEV2=3/1 SEV3=1/0 SEV4=1/0 (none)=1/1"),
        (&r.by_service, "billing=2/1 ledger=1/0 payments=2/0 search=2/0 (none)=1/1"),
        // ledger is not in the catalog: no team.
        (&r.by_team, "discovery=2/0 money=4/1 (none)=2/1"),
        // Mar 2 to Mar 8 is 2026-W10; Mar 9 to Mar 15 (Sunday, 23:59:59) is W11.
        (&r.by_week, "2026-W10=2/0 2026-W11=6/2"),
    ];
    for (groups, expected) in cases {
        assert_eq!(rows(groups), expected);
    }
}

#[test]
fn measures_of_one_group() {
    let r = report();
    let money = group(&r.by_team, "money"); // 1, 2, 6, 10
    assert_eq!(
        durations(&money.durations),
        [
            "time_to_detect: 1 5 5 300s",
            "time_to_acknowledge: 2 2 4 180s", // [2, 4]
            "time_to_assign: 2 5 12 510s",     // [5, 12]: mean 8.5 min
            "time_to_mitigate: 2 8 20 840s",   // [8, 20]
            "time_to_resolve: 3 60 120 3900s", // [15, 60, 120]: mean 65 min
        ]
    );
    // Applicable: 1, 2 (paged), 10 (a cadence breach); 6 neither.
    assert_eq!(
        slos(&money.slo),
        ["ack 2/3 66.7 1", "assign 2/3 66.7 2", "update_cadence 2/3 66.7 1", "resolve 3/3 100.0 0", "all 0/3 0.0 4"]
    );
    let sev2 = group(&r.by_severity, "SEV2"); // 3, 4, 11
    assert_eq!(durations(&sev2.durations)[4], "time_to_resolve: 2 30 50 2400s", "4 is open: [30, 50], mean 40 min");
    assert_eq!(slos(&sev2.slo)[4], "all 2/3 66.7 2");
    let w10 = group(&r.by_week, "2026-W10"); // 1, 2
    assert_eq!(durations(&w10.durations)[0], "time_to_detect: 1 5 5 300s");
    let empty = group(&r.by_severity, "SEV4");
    assert_eq!(durations(&empty.durations)[1], "time_to_acknowledge: 0 - - -");
    assert_eq!(slos(&empty.slo)[4], "all 0/1 0.0 1");
}

#[test]
fn filters_select_before_counting() {
    let filter = |service: Option<&str>, team: Option<&str>, severity: Option<Severity>| TrendFilter {
        service: service.map(|s| ServiceName::new(s).unwrap()),
        team: team.map(str::to_owned),
        severity,
    };
    // filter -> (counted, open, noise), the counted incidents' resolve p50 in minutes.
    let cases = [
        (filter(None, None, None), (8, 2, 1), Some(50)),
        (filter(Some("payments"), None, None), (2, 0, 1), Some(60)), // 1, 2 (7 is noise)
        (filter(None, Some("money"), None), (4, 1, 1), Some(60)),    // 1, 2, 6, 10
        (filter(None, None, Some(Severity::Sev2)), (3, 1, 0), Some(30)), // 3, 4, 11
        (filter(None, Some("money"), Some(Severity::Sev1)), (2, 0, 1), Some(60)),
        (filter(Some("payments"), Some("discovery"), None), (0, 0, 0), None),
        (filter(None, Some("nobody"), None), (0, 0, 0), None),
    ];
    for (f, expected, resolve_p50) in cases {
        let r = report_with(&f);
        assert_eq!((r.incidents, r.open, r.noise_excluded), expected, "{}", f.describe());
        assert_eq!(r.durations[4].p50.map(|d| d.num_minutes()), resolve_p50, "{}", f.describe());
        assert_eq!(r.by_severity.iter().map(|g| g.incidents).sum::<u32>(), r.incidents, "{}", f.describe());
    }
}

#[test]
fn an_empty_window() {
    let (from, _) = window();
    let r = TrendReport::compute(&[], from, from, &TrendFilter::default());
    assert_eq!((r.incidents, r.open, r.noise_excluded, r.slo.percent), (0, 0, 0, None));
    assert_eq!(r.by_severity.len(), 4);
    assert!(r.by_service.is_empty() && r.by_team.is_empty() && r.by_week.is_empty());
    assert!(r.durations.iter().all(|d| d.samples == 0 && d.p50.is_none() && d.mean.is_none()));
    assert!(r.slo.by_slo.iter().all(|s| s.percent.is_none()));
}

#[test]
fn the_table() {
    let filter = TrendFilter { team: Some("money".into()), ..TrendFilter::default() };
    expect![[r#"
        Incident trends from 2026-03-02 00:00 UTC to 2026-03-16 00:00 UTC (end excluded)
        Filters: team money
        4 incidents counted (1 still open), 1 marked as noise excluded
        Counting rules:
        - An incident counts when it was first reported in the window (start included, end excluded) and passes the filters; incidents marked as noise are left out and only counted as noise_excluded.
        - Severity is the incident's current one; team is the team its events recorded for its service (the catalog's when it was reported or declared), or, for incidents recorded before teams were, its service's team in the catalog in effect; week is the ISO week (UTC) of the first report; (none) collects incidents without one.
        - Durations are measured from the incident's events as the log holds them when the report is made, also events after the window's end.
        - time_to_detect: problem start given by the first report (an alert's startsAt) -> first report. time_to_acknowledge: first page -> first acknowledgement. time_to_assign: declaration or first page, whichever came first -> first commander. time_to_mitigate: declaration -> first mitigation (or resolution). time_to_resolve: declaration (or first report) -> the standing resolution.
        - An incident contributes a duration only once both its ends happened: open incidents (no standing resolution) are counted in open and left out of time_to_resolve, never counted up to now.
        - Percentiles are nearest-rank: the p-th of n sorted values is the value of rank ceil(p*n/100); mean is the arithmetic mean; - when there is no sample.
        - SLO compliance counts incidents an SLO applied to (paged, or breached some SLO): within an SLO = no slo.breached.v1 of that SLO (executive update cadence: no overdue update); all = none breached.

        Metric               Samples         p50         p90        mean
        time to detect             1      5m 00s      5m 00s      5m 00s
        time to acknowledge        2      2m 00s      4m 00s      3m 00s
        time to assign             2      5m 00s     12m 00s      8m 30s
        time to mitigate           2      8m 00s     20m 00s     14m 00s
        time to resolve            3  1h 00m 00s  2h 00m 00s  1h 05m 00s

        SLO             Applicable  Within  Compliance  Breaches
        ack                      3       2       66.7%         1
        assign                   3       2       66.7%         2
        update cadence           3       2       66.7%         1
        resolve                  3       3      100.0%         0
        all SLOs                 3       0        0.0%         4

        By severity (durations: p50 / p90 / mean; SLO: percent of incidents within)
        Severity  Incidents  Open        Detect   Acknowledge            Assign        Mitigate          Resolve  SLO ack  SLO assign  SLO update  SLO resolve  SLO all
        SEV1              2     0  5m / 5m / 5m  2m / 4m / 3m  5m / 12m / 8m30s  8m / 20m / 14m  1h / 2h / 1h30m    50.0%       50.0%      100.0%       100.0%     0.0%
        SEV2              0     0             -             -                 -               -                -        -           -           -            -        -
        SEV3              0     0             -             -                 -               -                -        -           -           -            -        -
        SEV4              1     0             -             -                 -               -  15m / 15m / 15m   100.0%      100.0%        0.0%       100.0%     0.0%
        (none)            1     1             -             -                 -               -                -        -           -           -            -        -

        By service (durations: p50 / p90 / mean; SLO: percent of incidents within)
        Service   Incidents  Open        Detect   Acknowledge            Assign        Mitigate          Resolve  SLO ack  SLO assign  SLO update  SLO resolve  SLO all
        billing           2     1             -             -                 -               -  15m / 15m / 15m   100.0%      100.0%        0.0%       100.0%     0.0%
        payments          2     0  5m / 5m / 5m  2m / 4m / 3m  5m / 12m / 8m30s  8m / 20m / 14m  1h / 2h / 1h30m    50.0%       50.0%      100.0%       100.0%     0.0%

        By team (durations: p50 / p90 / mean; SLO: percent of incidents within)
        Team   Incidents  Open        Detect   Acknowledge            Assign        Mitigate          Resolve  SLO ack  SLO assign  SLO update  SLO resolve  SLO all
        money          4     1  5m / 5m / 5m  2m / 4m / 3m  5m / 12m / 8m30s  8m / 20m / 14m  1h / 2h / 1h05m    66.7%       66.7%       66.7%       100.0%     0.0%

        By week (durations: p50 / p90 / mean; SLO: percent of incidents within)
        Week      Incidents  Open        Detect   Acknowledge            Assign        Mitigate          Resolve  SLO ack  SLO assign  SLO update  SLO resolve  SLO all
        2026-W10          2     0  5m / 5m / 5m  2m / 4m / 3m  5m / 12m / 8m30s  8m / 20m / 14m  1h / 2h / 1h30m    50.0%       50.0%      100.0%       100.0%     0.0%
        2026-W11          2     1             -             -                 -               -  15m / 15m / 15m   100.0%      100.0%        0.0%       100.0%     0.0%
    "#]].assert_eq(&render_table(&report_with(&filter)));
}

#[test]
fn the_csv() {
    let filter = TrendFilter { severity: Some(Severity::Sev1), ..TrendFilter::default() };
    expect![[r##"
        # rules
        rule
        "An incident counts when it was first reported in the window (start included, end excluded) and passes the filters; incidents marked as noise are left out and only counted as noise_excluded."
        "Severity is the incident's current one; team is the team its events recorded for its service (the catalog's when it was reported or declared), or, for incidents recorded before teams were, its service's team in the catalog in effect; week is the ISO week (UTC) of the first report; (none) collects incidents without one."
        "Durations are measured from the incident's events as the log holds them when the report is made, also events after the window's end."
        "time_to_detect: problem start given by the first report (an alert's startsAt) -> first report. time_to_acknowledge: first page -> first acknowledgement. time_to_assign: declaration or first page, whichever came first -> first commander. time_to_mitigate: declaration -> first mitigation (or resolution). time_to_resolve: declaration (or first report) -> the standing resolution."
        "An incident contributes a duration only once both its ends happened: open incidents (no standing resolution) are counted in open and left out of time_to_resolve, never counted up to now."
        Percentiles are nearest-rank: the p-th of n sorted values is the value of rank ceil(p*n/100); mean is the arithmetic mean; - when there is no sample.
        "SLO compliance counts incidents an SLO applied to (paged, or breached some SLO): within an SLO = no slo.breached.v1 of that SLO (executive update cadence: no overdue update); all = none breached."

        # summary
        from,to,service,team,severity,incidents,open,noise_excluded
        2026-03-02T00:00:00Z,2026-03-16T00:00:00Z,,,SEV1,2,0,1

        # incidents
        dimension,key,incidents,open
        all,all,2,0
        severity,SEV1,2,0
        severity,SEV2,0,0
        severity,SEV3,0,0
        severity,SEV4,0,0
        service,payments,2,0
        team,money,2,0
        week,2026-W10,2,0

        # durations
        dimension,key,metric,samples,p50_seconds,p90_seconds,mean_seconds
        all,all,time_to_detect,1,300,300,300
        all,all,time_to_acknowledge,2,120,240,180
        all,all,time_to_assign,2,300,720,510
        all,all,time_to_mitigate,2,480,1200,840
        all,all,time_to_resolve,2,3600,7200,5400
        severity,SEV1,time_to_detect,1,300,300,300
        severity,SEV1,time_to_acknowledge,2,120,240,180
        severity,SEV1,time_to_assign,2,300,720,510
        severity,SEV1,time_to_mitigate,2,480,1200,840
        severity,SEV1,time_to_resolve,2,3600,7200,5400
        severity,SEV2,time_to_detect,0,,,
        severity,SEV2,time_to_acknowledge,0,,,
        severity,SEV2,time_to_assign,0,,,
        severity,SEV2,time_to_mitigate,0,,,
        severity,SEV2,time_to_resolve,0,,,
        severity,SEV3,time_to_detect,0,,,
        severity,SEV3,time_to_acknowledge,0,,,
        severity,SEV3,time_to_assign,0,,,
        severity,SEV3,time_to_mitigate,0,,,
        severity,SEV3,time_to_resolve,0,,,
        severity,SEV4,time_to_detect,0,,,
        severity,SEV4,time_to_acknowledge,0,,,
        severity,SEV4,time_to_assign,0,,,
        severity,SEV4,time_to_mitigate,0,,,
        severity,SEV4,time_to_resolve,0,,,
        service,payments,time_to_detect,1,300,300,300
        service,payments,time_to_acknowledge,2,120,240,180
        service,payments,time_to_assign,2,300,720,510
        service,payments,time_to_mitigate,2,480,1200,840
        service,payments,time_to_resolve,2,3600,7200,5400
        team,money,time_to_detect,1,300,300,300
        team,money,time_to_acknowledge,2,120,240,180
        team,money,time_to_assign,2,300,720,510
        team,money,time_to_mitigate,2,480,1200,840
        team,money,time_to_resolve,2,3600,7200,5400
        week,2026-W10,time_to_detect,1,300,300,300
        week,2026-W10,time_to_acknowledge,2,120,240,180
        week,2026-W10,time_to_assign,2,300,720,510
        week,2026-W10,time_to_mitigate,2,480,1200,840
        week,2026-W10,time_to_resolve,2,3600,7200,5400

        # slo
        dimension,key,slo,applicable,within,compliance_percent,breaches
        all,all,ack,2,1,50.0,1
        all,all,assign,2,1,50.0,2
        all,all,update_cadence,2,2,100.0,0
        all,all,resolve,2,2,100.0,0
        all,all,all,2,0,0.0,3
        severity,SEV1,ack,2,1,50.0,1
        severity,SEV1,assign,2,1,50.0,2
        severity,SEV1,update_cadence,2,2,100.0,0
        severity,SEV1,resolve,2,2,100.0,0
        severity,SEV1,all,2,0,0.0,3
        severity,SEV2,ack,0,0,,0
        severity,SEV2,assign,0,0,,0
        severity,SEV2,update_cadence,0,0,,0
        severity,SEV2,resolve,0,0,,0
        severity,SEV2,all,0,0,,0
        severity,SEV3,ack,0,0,,0
        severity,SEV3,assign,0,0,,0
        severity,SEV3,update_cadence,0,0,,0
        severity,SEV3,resolve,0,0,,0
        severity,SEV3,all,0,0,,0
        severity,SEV4,ack,0,0,,0
        severity,SEV4,assign,0,0,,0
        severity,SEV4,update_cadence,0,0,,0
        severity,SEV4,resolve,0,0,,0
        severity,SEV4,all,0,0,,0
        service,payments,ack,2,1,50.0,1
        service,payments,assign,2,1,50.0,2
        service,payments,update_cadence,2,2,100.0,0
        service,payments,resolve,2,2,100.0,0
        service,payments,all,2,0,0.0,3
        team,money,ack,2,1,50.0,1
        team,money,assign,2,1,50.0,2
        team,money,update_cadence,2,2,100.0,0
        team,money,resolve,2,2,100.0,0
        team,money,all,2,0,0.0,3
        week,2026-W10,ack,2,1,50.0,1
        week,2026-W10,assign,2,1,50.0,2
        week,2026-W10,update_cadence,2,2,100.0,0
        week,2026-W10,resolve,2,2,100.0,0
        week,2026-W10,all,2,0,0.0,3
    "##]].assert_eq(&to_csv(&report_with(&filter)));
}

#[test]
fn the_json() {
    let filter = TrendFilter { service: Some(ServiceName::new("search").unwrap()), ..TrendFilter::default() };
    let json = serde_json::to_value(report_with(&filter)).unwrap();
    // One group in full; the rest is the same shape.
    expect![[r#"
        [
          {
            "durations": [
              {
                "mean_seconds": 330,
                "metric": "time_to_detect",
                "p50_seconds": 60,
                "p90_seconds": 600,
                "samples": 2
              },
              {
                "mean_seconds": 60,
                "metric": "time_to_acknowledge",
                "p50_seconds": 60,
                "p90_seconds": 60,
                "samples": 1
              },
              {
                "mean_seconds": 690,
                "metric": "time_to_assign",
                "p50_seconds": 180,
                "p90_seconds": 1200,
                "samples": 2
              },
              {
                "mean_seconds": 600,
                "metric": "time_to_mitigate",
                "p50_seconds": 600,
                "p90_seconds": 600,
                "samples": 1
              },
              {
                "mean_seconds": 8100,
                "metric": "time_to_resolve",
                "p50_seconds": 1800,
                "p90_seconds": 14400,
                "samples": 2
              }
            ],
            "incidents": 2,
            "key": "search",
            "open": 0,
            "slo": {
              "applicable": 1,
              "breaches": {
                "ack": 0,
                "assign": 0,
                "resolve": 0,
                "update_cadence": 0
              },
              "by_slo": [
                {
                  "applicable": 1,
                  "breaches": 0,
                  "compliance_percent": 100.0,
                  "slo": "ack",
                  "within": 1
                },
                {
                  "applicable": 1,
                  "breaches": 0,
                  "compliance_percent": 100.0,
                  "slo": "assign",
                  "within": 1
                },
                {
                  "applicable": 1,
                  "breaches": 0,
                  "compliance_percent": 100.0,
                  "slo": "update_cadence",
                  "within": 1
                },
                {
                  "applicable": 1,
                  "breaches": 0,
                  "compliance_percent": 100.0,
                  "slo": "resolve",
                  "within": 1
                }
              ],
              "compliance_percent": 100.0,
              "compliant": 1
            }
          }
        ]"#]]
    .assert_eq(&serde_json::to_string_pretty(&json["by_service"]).unwrap());
    assert_eq!(json["filter"], serde_json::json!({"service": "search", "team": null, "severity": null}));
    assert_eq!(json["counting_rules"].as_array().unwrap().len(), COUNTING_RULES.len());
    assert_eq!((json["incidents"].as_u64(), json["open"].as_u64()), (Some(2), Some(0)));
    assert_eq!(json["durations"][4]["mean_seconds"], 8100, "search resolve [30, 240] min: mean 135 min");
}
