//! Trend reports over many incidents: counts, duration percentiles and SLO
//! compliance, with a human table, CSV and JSON renderings.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use chrono::{DateTime, Datelike, TimeDelta, Utc};
use serde::Serialize;

use crate::ids::{IncidentId, ServiceName, Severity};
use crate::incident::Incident;
use crate::paging::SloKind;
use crate::review::metrics::{IncidentMetrics, SloBreaches, seconds};

#[cfg(test)]
mod tests;

/// What a trend report needs to know about one incident; the review service
/// builds one per incident from its projection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncidentFacts {
    /// The incident.
    pub id: IncidentId,
    /// Its current severity; `None` if it was never declared or assessed.
    pub severity: Option<Severity>,
    /// The affected service, if the report named one.
    pub service: Option<ServiceName>,
    /// When it was first reported, which places it in a report's window and
    /// week.
    pub first_reported_at: DateTime<Utc>,
    /// Its metrics.
    pub metrics: IncidentMetrics,
    /// Whether it was marked as noise.
    pub noise: bool,
}

impl IncidentFacts {
    /// The facts of `incident`, with its `metrics`.
    pub fn new(incident: &Incident, metrics: IncidentMetrics) -> IncidentFacts {
        IncidentFacts {
            id: incident.id(),
            severity: incident.severity(),
            service: incident.service().cloned(),
            first_reported_at: incident.first_reported_at(),
            metrics,
            noise: incident.is_noise(),
        }
    }
}

/// The key of a row for an incident without a severity or a service. The
/// parentheses keep it apart from any service name.
pub const NONE_KEY: &str = "(none)";

/// One row of a count table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Count {
    /// What is counted: a severity (`SEV1`), a service, or an ISO week
    /// (`2026-W09`); [`NONE_KEY`] for incidents without one.
    pub key: String,
    /// How many incidents.
    pub incidents: u32,
}

/// The distribution of one duration metric over the incidents it applies
/// to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DurationStats {
    /// The metric, as [`IncidentMetrics`] names it, such as
    /// `time_to_acknowledge`.
    pub metric: &'static str,
    /// How many incidents had a value.
    pub samples: u32,
    /// The median, by nearest rank.
    #[serde(rename = "p50_seconds", serialize_with = "seconds")]
    pub p50: Option<TimeDelta>,
    /// The 90th percentile, by nearest rank.
    #[serde(rename = "p90_seconds", serialize_with = "seconds")]
    pub p90: Option<TimeDelta>,
}

/// How well incidents kept their SLOs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SloCompliance {
    /// Incidents to which an SLO applied ([`IncidentMetrics::slo_applicable`]:
    /// paged, or breached some SLO anyway).
    pub applicable: u32,
    /// Of those, the incidents that breached no SLO at all.
    pub compliant: u32,
    /// `compliant / applicable` in percent, rounded to one decimal; `None`
    /// when no SLO applied to any incident. `compliance_percent` in JSON.
    #[serde(rename = "compliance_percent")]
    pub percent: Option<f64>,
    /// All breaches of the counted incidents, by SLO.
    pub breaches: SloBreaches,
}

/// Trends over the incidents first reported in `[from, to)`.
///
/// Incidents marked as noise (in [`IncidentFacts::noise`] or their metrics)
/// are left out of everything but [`TrendReport::noise_excluded`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrendReport {
    /// The start of the window, included.
    pub from: DateTime<Utc>,
    /// The end of the window, excluded.
    pub to: DateTime<Utc>,
    /// How many incidents are counted: in the window and not noise.
    pub incidents: u32,
    /// How many incidents in the window were left out as noise.
    pub noise_excluded: u32,
    /// Incidents by current severity: always SEV1 to SEV4 (zeros included),
    /// then [`NONE_KEY`] when some incident has no severity.
    pub by_severity: Vec<Count>,
    /// Incidents by service, in name order, then [`NONE_KEY`]; only services
    /// with incidents.
    pub by_service: Vec<Count>,
    /// Incidents by ISO 8601 week of their first report (UTC), such as
    /// `2026-W09`, in time order; only weeks with incidents.
    pub by_week: Vec<Count>,
    /// Percentiles of time to detect, acknowledge, assign, mitigate and
    /// resolve, in that order.
    pub durations: Vec<DurationStats>,
    /// SLO compliance.
    pub slo: SloCompliance,
}

/// Reads one duration metric of an incident.
type Metric = fn(&IncidentMetrics) -> Option<TimeDelta>;

/// The duration metrics of a report, by name.
const DURATIONS: [(&str, Metric); 5] = [
    ("time_to_detect", |m| m.time_to_detect),
    ("time_to_acknowledge", |m| m.time_to_acknowledge),
    ("time_to_assign", |m| m.time_to_assign),
    ("time_to_mitigate", |m| m.time_to_mitigate),
    ("time_to_resolve", |m| m.time_to_resolve),
];

impl TrendReport {
    /// The trends of `incidents` first reported in `[from, to)`.
    ///
    /// Percentiles use the nearest-rank method: the p-th percentile of `n`
    /// sorted values is the value of rank `ceil(p * n / 100)` (counting from
    /// 1), always an observed value; with no value it is `None`. The metric
    /// of an incident it does not apply to (`None`) is not a sample.
    pub fn compute(incidents: &[IncidentFacts], from: DateTime<Utc>, to: DateTime<Utc>) -> TrendReport {
        let in_window: Vec<&IncidentFacts> =
            incidents.iter().filter(|i| from <= i.first_reported_at && i.first_reported_at < to).collect();
        let (noise, counted): (Vec<&IncidentFacts>, Vec<&IncidentFacts>) =
            in_window.into_iter().partition(|i| i.noise || i.metrics.noise);

        let mut severities = [0u32; 4];
        let mut no_severity = 0u32;
        let mut services: BTreeMap<&str, u32> = BTreeMap::new();
        let mut no_service = 0u32;
        let mut weeks: BTreeMap<(i32, u32), u32> = BTreeMap::new();
        let mut slo = SloCompliance { applicable: 0, compliant: 0, percent: None, breaches: SloBreaches::default() };
        for incident in &counted {
            match incident.severity {
                Some(s) => severities[usize::from(s.number() - 1)] += 1,
                None => no_severity += 1,
            }
            match &incident.service {
                Some(s) => *services.entry(s.as_str()).or_default() += 1,
                None => no_service += 1,
            }
            let week = incident.first_reported_at.date_naive().iso_week();
            *weeks.entry((week.year(), week.week())).or_default() += 1;
            let breaches = incident.metrics.slo_breaches;
            for kind in [SloKind::Ack, SloKind::Assign, SloKind::UpdateCadence, SloKind::Resolve] {
                slo.breaches.add(kind, breaches.get(kind));
            }
            if incident.metrics.slo_applicable() {
                slo.applicable += 1;
                if breaches.total() == 0 {
                    slo.compliant += 1;
                }
            }
        }
        if slo.applicable > 0 {
            slo.percent = Some((f64::from(slo.compliant) * 1000.0 / f64::from(slo.applicable)).round() / 10.0);
        }

        let count = |key: String, incidents: u32| Count { key, incidents };
        let mut by_severity: Vec<Count> =
            Severity::ALL.iter().zip(severities).map(|(s, n)| count(s.to_string(), n)).collect();
        let mut by_service: Vec<Count> = services.into_iter().map(|(s, n)| count(s.to_owned(), n)).collect();
        for (rows, n) in [(&mut by_severity, no_severity), (&mut by_service, no_service)] {
            if n > 0 {
                rows.push(count(NONE_KEY.to_owned(), n));
            }
        }
        let by_week = weeks.into_iter().map(|((year, week), n)| count(format!("{year}-W{week:02}"), n)).collect();
        let durations = DURATIONS
            .iter()
            .map(|(metric, get)| {
                let mut values: Vec<TimeDelta> = counted.iter().filter_map(|i| get(&i.metrics)).collect();
                values.sort();
                DurationStats {
                    metric,
                    samples: u32::try_from(values.len()).unwrap_or(u32::MAX),
                    p50: nearest_rank(&values, 50),
                    p90: nearest_rank(&values, 90),
                }
            })
            .collect();
        TrendReport {
            from,
            to,
            incidents: u32::try_from(counted.len()).unwrap_or(u32::MAX),
            noise_excluded: u32::try_from(noise.len()).unwrap_or(u32::MAX),
            by_severity,
            by_service,
            by_week,
            durations,
            slo,
        }
    }
}

/// The `percentile`-th percentile (1 to 100) of `sorted` by nearest rank:
/// the value of rank `ceil(percentile * n / 100)`, counting from 1.
pub(crate) fn nearest_rank(sorted: &[TimeDelta], percentile: usize) -> Option<TimeDelta> {
    debug_assert!((1..=100).contains(&percentile), "percentile {percentile} out of range");
    debug_assert!(sorted.is_sorted(), "values must be sorted");
    let rank = (percentile * sorted.len()).div_ceil(100).max(1);
    sorted.get(rank - 1).copied()
}

/// A duration for people: `45s`, `4m 05s`, `1h 02m 03s`, `2d 03h 04m`
/// (whole seconds, truncated; negative durations as zero).
pub(crate) fn human_duration(duration: TimeDelta) -> String {
    let total = duration.num_seconds().max(0);
    let (days, hours, minutes, secs) = (total / 86_400, total / 3_600 % 24, total / 60 % 60, total % 60);
    if days > 0 {
        format!("{days}d {hours:02}h {minutes:02}m")
    } else if hours > 0 {
        format!("{hours}h {minutes:02}m {secs:02}s")
    } else if minutes > 0 {
        format!("{minutes}m {secs:02}s")
    } else {
        format!("{secs}s")
    }
}

/// An optional duration for people; `-` when not applicable.
pub(crate) fn human_optional(duration: Option<TimeDelta>) -> String {
    duration.map_or_else(|| "-".to_owned(), human_duration)
}

/// Lays out `rows` under `headers` in aligned columns, two spaces apart; the
/// first column is left-aligned, the others right-aligned.
fn text_table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = headers.iter().map(|h| (*h).to_owned()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, (cell, width)) in row.iter().zip(&widths).enumerate() {
            let pad = width - cell.chars().count();
            if i == 0 {
                line.push_str(cell);
                line.push_str(&" ".repeat(pad));
            } else {
                line.push_str("  ");
                line.push_str(&" ".repeat(pad));
                line.push_str(cell);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Rows of a count table.
fn count_rows(counts: &[Count]) -> Vec<Vec<String>> {
    counts.iter().map(|c| vec![c.key.clone(), c.incidents.to_string()]).collect()
}

/// The report as text tables for a terminal: the window, the totals, the
/// three count tables, the duration percentiles (human durations, `-` when
/// there is no sample) and the SLO compliance.
pub fn render_table(report: &TrendReport) -> String {
    let time = |t: DateTime<Utc>| t.format("%Y-%m-%d %H:%M UTC").to_string();
    let mut out = String::new();
    let _ = writeln!(out, "Incident trends from {} to {} (end excluded)", time(report.from), time(report.to));
    let _ = writeln!(out, "{} incidents counted, {} marked as noise excluded", report.incidents, report.noise_excluded);
    out.push('\n');
    out.push_str(&text_table(&["Severity", "Incidents"], &count_rows(&report.by_severity)));
    out.push('\n');
    out.push_str(&text_table(&["Service", "Incidents"], &count_rows(&report.by_service)));
    out.push('\n');
    out.push_str(&text_table(&["Week", "Incidents"], &count_rows(&report.by_week)));
    out.push('\n');
    let durations: Vec<Vec<String>> = report
        .durations
        .iter()
        .map(|d| vec![d.metric.replace('_', " "), d.samples.to_string(), human_optional(d.p50), human_optional(d.p90)])
        .collect();
    out.push_str(&text_table(&["Metric", "Samples", "p50", "p90"], &durations));
    out.push('\n');
    let slo = &report.slo;
    match slo.percent {
        Some(percent) => {
            let _ = writeln!(
                out,
                "SLO compliance: {percent:.1}% ({} of {} incidents with an SLO breached none)",
                slo.compliant, slo.applicable
            );
        }
        None => out.push_str("SLO compliance: - (no incident had an SLO)\n"),
    }
    let b = slo.breaches;
    let _ = writeln!(
        out,
        "SLO breaches: ack {}, assign {}, update cadence {}, resolve {}",
        b.ack, b.assign, b.update_cadence, b.resolve
    );
    out
}

/// The report as CSV, one section per table, for spreadsheets.
///
/// Sections come in this order, each as a line `# <name>`, a header row and
/// its data rows, separated by one empty line:
///
/// - `# summary`: `from,to,incidents,noise_excluded` (times in RFC 3339).
/// - `# by_severity`: `severity,incidents`.
/// - `# by_service`: `service,incidents`.
/// - `# by_week`: `week,incidents`.
/// - `# durations`: `metric,samples,p50_seconds,p90_seconds` (whole seconds,
///   empty when there is no sample).
/// - `# slo`: `applicable,compliant,compliance_percent,ack_breaches,assign_breaches,update_cadence_breaches,resolve_breaches`
///   (the percent with one decimal, empty when no SLO applied).
///
/// No field needs quoting: keys are severities, service names
/// (`[a-z0-9_-]`), ISO weeks, [`NONE_KEY`] and metric names.
pub fn to_csv(report: &TrendReport) -> String {
    let secs = |d: Option<TimeDelta>| d.map(|d| d.num_seconds().to_string()).unwrap_or_default();
    let mut out = String::new();
    let _ = writeln!(out, "# summary\nfrom,to,incidents,noise_excluded");
    let _ = writeln!(
        out,
        "{},{},{},{}",
        report.from.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
        report.to.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
        report.incidents,
        report.noise_excluded
    );
    for (name, column, counts) in [
        ("by_severity", "severity", &report.by_severity),
        ("by_service", "service", &report.by_service),
        ("by_week", "week", &report.by_week),
    ] {
        let _ = writeln!(out, "\n# {name}\n{column},incidents");
        for c in counts {
            let _ = writeln!(out, "{},{}", c.key, c.incidents);
        }
    }
    let _ = writeln!(out, "\n# durations\nmetric,samples,p50_seconds,p90_seconds");
    for d in &report.durations {
        let _ = writeln!(out, "{},{},{},{}", d.metric, d.samples, secs(d.p50), secs(d.p90));
    }
    let slo = &report.slo;
    let _ = writeln!(
        out,
        "\n# slo\napplicable,compliant,compliance_percent,ack_breaches,assign_breaches,update_cadence_breaches,resolve_breaches"
    );
    let percent = slo.percent.map(|p| format!("{p:.1}")).unwrap_or_default();
    let b = slo.breaches;
    let _ = writeln!(
        out,
        "{},{},{percent},{},{},{},{}",
        slo.applicable, slo.compliant, b.ack, b.assign, b.update_cadence, b.resolve
    );
    out
}
