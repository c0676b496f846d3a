//! Trend reports over many incidents: durations (p50, p90, mean) and SLO
//! compliance, overall and broken down by service, team, severity and week,
//! with filters, and a human table, CSV and JSON renderings.
//!
//! The counting rules are [`COUNTING_RULES`]; every rendering states them.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use chrono::{DateTime, Datelike, TimeDelta, Utc};
use serde::Serialize;

use crate::catalog::ServiceCatalog;
use crate::ids::{IncidentId, ServiceName, Severity};
use crate::incident::{Incident, IncidentEvent};
use crate::paging::{PageEvent, SloKind};
use crate::review::metrics::{IncidentMetrics, MetricsFold, SloBreaches, seconds};
use crate::text::counted;

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
    /// The team the incident is filed under: the one its events recorded
    /// (the catalog's when intake recorded its report or declaration),
    /// else, for incidents whose events recorded none, the one the catalog
    /// in effect gives its service; `None` without a service or for a
    /// service neither holds.
    pub team: Option<String>,
    /// When it was first reported, which places it in a report's window and
    /// week.
    pub first_reported_at: DateTime<Utc>,
    /// Its metrics.
    pub metrics: IncidentMetrics,
    /// Whether it was marked as noise.
    pub noise: bool,
}

impl IncidentFacts {
    /// The facts of `incident`, with its `metrics` and its team (see
    /// [`Incident::team`]; `catalog` for incidents that recorded none).
    pub fn new(incident: &Incident, metrics: IncidentMetrics, catalog: &ServiceCatalog) -> IncidentFacts {
        IncidentFacts {
            id: incident.id(),
            severity: incident.severity(),
            service: incident.service().cloned(),
            team: incident.team(catalog).map(str::to_owned),
            first_reported_at: incident.first_reported_at(),
            metrics,
            noise: incident.is_noise(),
        }
    }

    /// Whether the incident is still open as far as the report knows: it
    /// has no standing resolution (never resolved, or reopened since).
    pub fn is_open(&self) -> bool {
        self.metrics.time_to_resolve.is_none()
    }
}

/// What trends need of one incident, folded event by event: a few instants
/// and counts ([`MetricsFold`]) and the incident's current severity,
/// service, first report and noise mark. The review service keeps one per
/// incident, so trends never need an incident's events or dossier.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TrendSummary {
    metrics: MetricsFold,
    severity: Option<Severity>,
    service: Option<ServiceName>,
    first_reported_at: Option<DateTime<Utc>>,
    noise: bool,
    /// The team the incident's events recorded (absent in summaries saved
    /// before they did).
    #[serde(default)]
    team: Option<String>,
}

impl TrendSummary {
    /// Folds one incident event; `incident` is the incident's state after
    /// it.
    pub fn incident(&mut self, event: &IncidentEvent, incident: &Incident) {
        self.metrics.incident(event);
        self.severity = incident.severity();
        self.service = incident.service().cloned();
        self.first_reported_at = Some(incident.first_reported_at());
        self.noise = incident.is_noise();
        self.team = incident.catalogued().map(|c| c.team.clone());
    }

    /// The team the incident's events recorded, if they did (without one,
    /// [`TrendSummary::facts`] asks the catalog).
    pub fn recorded_team(&self) -> Option<&str> {
        self.team.as_deref()
    }

    /// Folds one page event (or an update-cadence breach as one).
    pub fn page(&mut self, event: &PageEvent) {
        self.metrics.page(event);
    }

    /// The facts of incident `id`: its team the one its events recorded,
    /// else the one `catalog` gives its service; `None` before its first
    /// report.
    pub fn facts(&self, id: IncidentId, catalog: &ServiceCatalog) -> Option<IncidentFacts> {
        Some(IncidentFacts {
            id,
            severity: self.severity,
            service: self.service.clone(),
            team: self.team.clone().or_else(|| self.service.as_ref().and_then(|s| catalog.team(s)).map(str::to_owned)),
            first_reported_at: self.first_reported_at?,
            metrics: self.metrics.metrics(),
            noise: self.noise,
        })
    }
}

/// Which incidents a report covers, besides its window: every given
/// dimension must match (all of them when none is given).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TrendFilter {
    /// Only incidents of this service.
    pub service: Option<ServiceName>,
    /// Only incidents filed under this team (see [`IncidentFacts::team`]).
    pub team: Option<String>,
    /// Only incidents of this (current) severity.
    pub severity: Option<Severity>,
}

impl TrendFilter {
    /// Whether `incident` passes the filter.
    pub fn admits(&self, incident: &IncidentFacts) -> bool {
        self.service.as_ref().is_none_or(|s| incident.service.as_ref() == Some(s))
            && self.team.as_ref().is_none_or(|t| incident.team.as_ref() == Some(t))
            && self.severity.is_none_or(|s| incident.severity == Some(s))
    }

    /// The filter for people: `service payments, severity SEV1`, or `none`.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(s) = &self.service {
            parts.push(format!("service {s}"));
        }
        if let Some(t) = &self.team {
            parts.push(format!("team {t}"));
        }
        if let Some(s) = self.severity {
            parts.push(format!("severity {s}"));
        }
        if parts.is_empty() { "none".to_owned() } else { parts.join(", ") }
    }
}

/// The counting rules, stated in every rendering of a report (the table's
/// header, `counting_rules` in JSON, `# rules` in CSV) and in
/// `docs/operations.md`.
pub const COUNTING_RULES: [&str; 7] = [
    "An incident counts when it was first reported in the window (start included, end excluded) and passes the filters; incidents marked as noise are left out and only counted as noise_excluded.",
    "Severity is the incident's current one; team is the team its events recorded for its service (the catalog's when it was reported or declared), or, for incidents recorded before teams were, its service's team in the catalog in effect; week is the ISO week (UTC) of the first report; (none) collects incidents without one.",
    "Durations are measured from the incident's events as the log holds them when the report is made, also events after the window's end.",
    "time_to_detect: problem start given by the first report (an alert's startsAt) -> first report. time_to_acknowledge: first page -> first acknowledgement. time_to_assign: declaration or first page, whichever came first -> first commander. time_to_mitigate: declaration -> first mitigation (or resolution). time_to_resolve: declaration (or first report) -> the standing resolution.",
    "An incident contributes a duration only once both its ends happened: open incidents (no standing resolution) are counted in open and left out of time_to_resolve, never counted up to now.",
    "Percentiles are nearest-rank: the p-th of n sorted values is the value of rank ceil(p*n/100); mean is the arithmetic mean; - when there is no sample.",
    "SLO compliance counts incidents an SLO applied to (paged, or breached some SLO): within an SLO = no slo.breached.v1 of that SLO (executive update cadence: no overdue update); all = none breached.",
];

/// The key of a row for an incident without a severity, service or team.
/// The parentheses keep it apart from any name.
pub const NONE_KEY: &str = "(none)";

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
    /// The arithmetic mean (to the millisecond; whole seconds in JSON).
    #[serde(rename = "mean_seconds", serialize_with = "seconds")]
    pub mean: Option<TimeDelta>,
}

/// How well incidents kept one SLO.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SloWithin {
    /// The SLO: `ack`, `assign`, `update_cadence` or `resolve`.
    pub slo: &'static str,
    /// Incidents an SLO applied to.
    pub applicable: u32,
    /// Of those, the incidents that never breached this one.
    pub within: u32,
    /// `within / applicable` in percent, one decimal; `None` when no SLO
    /// applied. `compliance_percent` in JSON.
    #[serde(rename = "compliance_percent")]
    pub percent: Option<f64>,
    /// All breaches of this SLO by the counted incidents.
    pub breaches: u32,
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
    /// Compliance with each SLO: ack, assign, update cadence, resolve.
    pub by_slo: Vec<SloWithin>,
}

/// The numbers of one group of incidents: all counted incidents, or one
/// row of a breakdown.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Group {
    /// The group: a service, a team, a severity (`SEV1`), an ISO week
    /// (`2026-W09`), [`NONE_KEY`], or `all`.
    pub key: String,
    /// How many counted incidents.
    pub incidents: u32,
    /// Of those, how many are still open (no standing resolution).
    pub open: u32,
    /// Time to detect, acknowledge, assign, mitigate and resolve, in that
    /// order.
    pub durations: Vec<DurationStats>,
    /// SLO compliance.
    pub slo: SloCompliance,
}

/// Trends over the incidents first reported in `[from, to)` that pass a
/// filter.
///
/// Incidents marked as noise (in [`IncidentFacts::noise`] or their metrics)
/// are left out of everything but [`TrendReport::noise_excluded`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrendReport {
    /// The start of the window, included.
    pub from: DateTime<Utc>,
    /// The end of the window, excluded.
    pub to: DateTime<Utc>,
    /// The filters applied.
    pub filter: TrendFilter,
    /// How the numbers are counted ([`COUNTING_RULES`]).
    pub counting_rules: &'static [&'static str],
    /// How many incidents are counted: in the window, through the filter,
    /// not noise.
    pub incidents: u32,
    /// Of those, how many are still open.
    pub open: u32,
    /// How many incidents in the window, through the filter, were left out
    /// as noise.
    pub noise_excluded: u32,
    /// Durations of all counted incidents.
    pub durations: Vec<DurationStats>,
    /// SLO compliance of all counted incidents.
    pub slo: SloCompliance,
    /// By current severity: always SEV1 to SEV4 (empty ones included),
    /// then [`NONE_KEY`] when some incident has no severity.
    pub by_severity: Vec<Group>,
    /// By service, in name order, then [`NONE_KEY`]; only services with
    /// incidents.
    pub by_service: Vec<Group>,
    /// By the team the incident is filed under ([`IncidentFacts::team`]),
    /// in name order, then [`NONE_KEY`]; only teams with incidents.
    pub by_team: Vec<Group>,
    /// By ISO 8601 week of the first report (UTC), such as `2026-W09`, in
    /// time order; only weeks with incidents.
    pub by_week: Vec<Group>,
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

/// The SLOs, in report order, with their names.
const SLOS: [(&str, SloKind); 4] = [
    ("ack", SloKind::Ack),
    ("assign", SloKind::Assign),
    ("update_cadence", SloKind::UpdateCadence),
    ("resolve", SloKind::Resolve),
];

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn percent(part: u32, whole: u32) -> Option<f64> {
    (whole > 0).then(|| (f64::from(part) * 1000.0 / f64::from(whole)).round() / 10.0)
}

/// The duration statistics of one metric over `incidents`.
fn stats(metric: &'static str, get: Metric, incidents: &[&IncidentFacts]) -> DurationStats {
    let mut values: Vec<TimeDelta> = incidents.iter().filter_map(|i| get(&i.metrics)).collect();
    values.sort();
    let mean = (!values.is_empty()).then(|| {
        let total: i128 = values.iter().map(|v| i128::from(v.num_milliseconds())).sum();
        let n = i128::try_from(values.len()).unwrap_or(i128::MAX);
        TimeDelta::milliseconds(i64::try_from(total / n).unwrap_or(i64::MAX))
    });
    DurationStats {
        metric,
        samples: count(values.len()),
        p50: nearest_rank(&values, 50),
        p90: nearest_rank(&values, 90),
        mean,
    }
}

/// The SLO compliance of `incidents`.
fn compliance(incidents: &[&IncidentFacts]) -> SloCompliance {
    let mut breaches = SloBreaches::default();
    let applicable: Vec<&&IncidentFacts> = incidents.iter().filter(|i| i.metrics.slo_applicable()).collect();
    for incident in incidents {
        for (_, kind) in SLOS {
            breaches.add(kind, incident.metrics.slo_breaches.get(kind));
        }
    }
    let total = count(applicable.len());
    let compliant = count(applicable.iter().filter(|i| i.metrics.slo_breaches.total() == 0).count());
    let by_slo = SLOS
        .iter()
        .map(|(slo, kind)| {
            let within = count(applicable.iter().filter(|i| i.metrics.slo_breaches.get(*kind) == 0).count());
            SloWithin { slo, applicable: total, within, percent: percent(within, total), breaches: breaches.get(*kind) }
        })
        .collect();
    SloCompliance { applicable: total, compliant, percent: percent(compliant, total), breaches, by_slo }
}

/// The numbers of `incidents` under `key`.
fn group(key: String, incidents: &[&IncidentFacts]) -> Group {
    Group {
        key,
        incidents: count(incidents.len()),
        open: count(incidents.iter().filter(|i| i.is_open()).count()),
        durations: DURATIONS.iter().map(|(metric, get)| stats(metric, *get, incidents)).collect(),
        slo: compliance(incidents),
    }
}

/// Groups `incidents` by `key` (in key order; `None` last as [`NONE_KEY`]).
fn breakdown<K: Ord>(
    incidents: &[&IncidentFacts],
    key: impl Fn(&IncidentFacts) -> Option<K>,
    name: impl Fn(&K) -> String,
) -> Vec<Group> {
    let mut groups: BTreeMap<K, Vec<&IncidentFacts>> = BTreeMap::new();
    let mut none = Vec::new();
    for incident in incidents {
        match key(incident) {
            Some(k) => groups.entry(k).or_default().push(incident),
            None => none.push(*incident),
        }
    }
    let mut rows: Vec<Group> = groups.iter().map(|(k, members)| group(name(k), members)).collect();
    if !none.is_empty() {
        rows.push(group(NONE_KEY.to_owned(), &none));
    }
    rows
}

impl TrendReport {
    /// The trends of `incidents` first reported in `[from, to)` that pass
    /// `filter`, counted by [`COUNTING_RULES`].
    ///
    /// Percentiles use the nearest-rank method: the p-th percentile of `n`
    /// sorted values is the value of rank `ceil(p * n / 100)` (counting from
    /// 1), always an observed value; with no value it is `None`. The metric
    /// of an incident it does not apply to (`None`) is not a sample.
    pub fn compute(
        incidents: &[IncidentFacts],
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        filter: &TrendFilter,
    ) -> TrendReport {
        let selected =
            incidents.iter().filter(|i| from <= i.first_reported_at && i.first_reported_at < to && filter.admits(i));
        let (noise, counted): (Vec<&IncidentFacts>, Vec<&IncidentFacts>) =
            selected.partition(|i| i.noise || i.metrics.noise);
        let all = group("all".to_owned(), &counted);

        let mut by_severity: Vec<Group> = Severity::ALL
            .iter()
            .map(|s| {
                let members: Vec<&IncidentFacts> = counted.iter().filter(|i| i.severity == Some(*s)).copied().collect();
                group(s.to_string(), &members)
            })
            .collect();
        let unassessed: Vec<&IncidentFacts> = counted.iter().filter(|i| i.severity.is_none()).copied().collect();
        if !unassessed.is_empty() {
            by_severity.push(group(NONE_KEY.to_owned(), &unassessed));
        }
        let by_service = breakdown(&counted, |i| i.service.clone(), |s| s.to_string());
        let by_team = breakdown(&counted, |i| i.team.clone(), Clone::clone);
        let by_week = breakdown(
            &counted,
            |i| {
                let week = i.first_reported_at.date_naive().iso_week();
                Some((week.year(), week.week()))
            },
            |(year, week)| format!("{year}-W{week:02}"),
        );
        TrendReport {
            from,
            to,
            filter: filter.clone(),
            counting_rules: &COUNTING_RULES,
            incidents: all.incidents,
            open: all.open,
            noise_excluded: count(noise.len()),
            durations: all.durations,
            slo: all.slo,
            by_severity,
            by_service,
            by_team,
            by_week,
        }
    }

    /// The breakdowns, each with its dimension's name.
    pub fn breakdowns(&self) -> [(&'static str, &[Group]); 4] {
        [
            ("severity", &self.by_severity),
            ("service", &self.by_service),
            ("team", &self.by_team),
            ("week", &self.by_week),
        ]
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

/// A duration in a narrow cell: `45s`, `4m05s`, `1h02m`, `2d03h` (two
/// units at most, truncated; zero seconds and minutes left out: `5m`,
/// `1h`).
fn compact_duration(duration: TimeDelta) -> String {
    let total = duration.num_seconds().max(0);
    let (days, hours, minutes, secs) = (total / 86_400, total / 3_600 % 24, total / 60 % 60, total % 60);
    let (big, small) = if days > 0 {
        ((days, 'd'), (hours, 'h'))
    } else if hours > 0 {
        ((hours, 'h'), (minutes, 'm'))
    } else if minutes > 0 {
        ((minutes, 'm'), (secs, 's'))
    } else {
        return format!("{secs}s");
    };
    if small.0 == 0 { format!("{}{}", big.0, big.1) } else { format!("{}{}{:02}{}", big.0, big.1, small.0, small.1) }
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

fn percent_cell(percent: Option<f64>) -> String {
    percent.map_or_else(|| "-".to_owned(), |p| format!("{p:.1}%"))
}

/// `p50 / p90 / mean` in compact durations, `-` without a sample.
fn duration_cell(d: &DurationStats) -> String {
    match (d.p50, d.p90, d.mean) {
        (Some(p50), Some(p90), Some(mean)) => {
            format!("{} / {} / {}", compact_duration(p50), compact_duration(p90), compact_duration(mean))
        }
        _ => "-".to_owned(),
    }
}

/// The breakdown table of one dimension.
fn breakdown_table(dimension: &str, groups: &[Group]) -> String {
    let mut heading = dimension.to_owned();
    if let Some(first) = heading.get_mut(..1) {
        first.make_ascii_uppercase();
    }
    let headers = [
        heading.as_str(),
        "Incidents",
        "Open",
        "Detect",
        "Acknowledge",
        "Assign",
        "Mitigate",
        "Resolve",
        "SLO ack",
        "SLO assign",
        "SLO update",
        "SLO resolve",
        "SLO all",
    ];
    let rows: Vec<Vec<String>> = groups
        .iter()
        .map(|g| {
            let mut row = vec![g.key.clone(), g.incidents.to_string(), g.open.to_string()];
            row.extend(g.durations.iter().map(duration_cell));
            row.extend(g.slo.by_slo.iter().map(|s| percent_cell(s.percent)));
            row.push(percent_cell(g.slo.percent));
            row
        })
        .collect();
    text_table(&headers, &rows)
}

/// The report as text for a terminal (and for a cadenced report's post):
/// the window, the filters, the totals and the counting rules; the
/// durations and the SLO compliance of all counted incidents; then one
/// table per breakdown (severity, service, team, week), durations as
/// `p50 / p90 / mean`, SLOs as the percent kept.
pub fn render_table(report: &TrendReport) -> String {
    let time = |t: DateTime<Utc>| t.format("%Y-%m-%d %H:%M UTC").to_string();
    let mut out = String::new();
    let _ = writeln!(out, "Incident trends from {} to {} (end excluded)", time(report.from), time(report.to));
    let _ = writeln!(out, "Filters: {}", report.filter.describe());
    let _ = writeln!(
        out,
        "{} counted ({} still open), {} marked as noise excluded",
        counted(report.incidents, "incident"),
        report.open,
        report.noise_excluded
    );
    out.push_str("Counting rules:\n");
    for rule in report.counting_rules {
        let _ = writeln!(out, "- {rule}");
    }
    out.push('\n');
    let durations: Vec<Vec<String>> = report
        .durations
        .iter()
        .map(|d| {
            let cells = [d.p50, d.p90, d.mean].map(human_optional);
            let mut row = vec![d.metric.replace('_', " "), d.samples.to_string()];
            row.extend(cells);
            row
        })
        .collect();
    out.push_str(&text_table(&["Metric", "Samples", "p50", "p90", "mean"], &durations));
    out.push('\n');
    let slo = &report.slo;
    let mut rows: Vec<Vec<String>> = slo
        .by_slo
        .iter()
        .map(|s| {
            let name = s.slo.replace('_', " ");
            vec![name, s.applicable.to_string(), s.within.to_string(), percent_cell(s.percent), s.breaches.to_string()]
        })
        .collect();
    rows.push(vec![
        "all SLOs".to_owned(),
        slo.applicable.to_string(),
        slo.compliant.to_string(),
        percent_cell(slo.percent),
        slo.breaches.total().to_string(),
    ]);
    out.push_str(&text_table(&["SLO", "Applicable", "Within", "Compliance", "Breaches"], &rows));
    for (dimension, groups) in report.breakdowns() {
        let _ = writeln!(out, "\nBy {dimension} (durations: p50 / p90 / mean; SLO: percent of incidents within)");
        out.push_str(&breakdown_table(dimension, groups));
    }
    out
}

/// One CSV field, quoted when it holds a comma, a quote or a line break.
fn csv_field(value: &str) -> String {
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_owned()
    }
}

/// The report as CSV for spreadsheets: one section per table, in long form
/// (one row per dimension, key and measure), each as a line `# <name>`, a
/// header row and its data rows, separated by one empty line:
///
/// - `# rules`: `rule` (the counting rules, quoted).
/// - `# summary`: `from,to,service,team,severity,incidents,open,noise_excluded`
///   (times in RFC 3339; filters empty when not given).
/// - `# incidents`: `dimension,key,incidents,open`.
/// - `# durations`: `dimension,key,metric,samples,p50_seconds,p90_seconds,mean_seconds`
///   (whole seconds, empty when there is no sample).
/// - `# slo`: `dimension,key,slo,applicable,within,compliance_percent,breaches`
///   (SLO `all` is the incidents that breached none; the percent with one
///   decimal, empty when no SLO applied).
///
/// `dimension` is `all` (key `all`), `severity`, `service`, `team` or `week`.
pub fn to_csv(report: &TrendReport) -> String {
    let secs = |d: Option<TimeDelta>| d.map(|d| d.num_seconds().to_string()).unwrap_or_default();
    let pct = |p: Option<f64>| p.map(|p| format!("{p:.1}")).unwrap_or_default();
    let all = Group {
        key: "all".to_owned(),
        incidents: report.incidents,
        open: report.open,
        durations: report.durations.clone(),
        slo: report.slo.clone(),
    };
    let mut groups: Vec<(&str, &Group)> = vec![("all", &all)];
    for (dimension, rows) in report.breakdowns() {
        groups.extend(rows.iter().map(|g| (dimension, g)));
    }
    let mut out = String::from("# rules\nrule\n");
    for rule in report.counting_rules {
        let _ = writeln!(out, "{}", csv_field(rule));
    }
    let _ = writeln!(out, "\n# summary\nfrom,to,service,team,severity,incidents,open,noise_excluded");
    let f = &report.filter;
    let _ = writeln!(
        out,
        "{},{},{},{},{},{},{},{}",
        report.from.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
        report.to.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
        f.service.as_ref().map(ToString::to_string).unwrap_or_default(),
        csv_field(f.team.as_deref().unwrap_or_default()),
        f.severity.map(|s| s.to_string()).unwrap_or_default(),
        report.incidents,
        report.open,
        report.noise_excluded
    );
    let _ = writeln!(out, "\n# incidents\ndimension,key,incidents,open");
    for (dimension, g) in &groups {
        let _ = writeln!(out, "{dimension},{},{},{}", csv_field(&g.key), g.incidents, g.open);
    }
    let _ = writeln!(out, "\n# durations\ndimension,key,metric,samples,p50_seconds,p90_seconds,mean_seconds");
    for (dimension, g) in &groups {
        for d in &g.durations {
            let _ = writeln!(
                out,
                "{dimension},{},{},{},{},{},{}",
                csv_field(&g.key),
                d.metric,
                d.samples,
                secs(d.p50),
                secs(d.p90),
                secs(d.mean)
            );
        }
    }
    let _ = writeln!(out, "\n# slo\ndimension,key,slo,applicable,within,compliance_percent,breaches");
    for (dimension, g) in &groups {
        let key = csv_field(&g.key);
        for s in &g.slo.by_slo {
            let _ = writeln!(
                out,
                "{dimension},{key},{},{},{},{},{}",
                s.slo,
                s.applicable,
                s.within,
                pct(s.percent),
                s.breaches
            );
        }
        let slo = &g.slo;
        let _ = writeln!(
            out,
            "{dimension},{key},all,{},{},{},{}",
            slo.applicable,
            slo.compliant,
            pct(slo.percent),
            slo.breaches.total()
        );
    }
    out
}
