//! Cadenced trend reports (`[[reports]]`): which period a report covers,
//! when it is posted, the message it posts and the `report.posted.v1` that
//! records it, so that each period is posted once, across restarts.
//!
//! A weekly report covers a week from Monday 00:00 to the next Monday 00:00
//! in its time zone, a monthly one a calendar month there; it is posted on
//! `weekday` (weekly) or on day `day` (monthly) of the following period, at
//! `time`, in the zone. When several posting times passed unposted (the
//! service was down), only the latest period whose posting time passed is
//! posted. The timer is [`Report::next_due`]: derived from the clock and the
//! periods the log says were posted, like paging's.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, Months, NaiveDate, NaiveTime, TimeDelta, Utc, Weekday};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::ConfigError;
use crate::catalog::ServiceCatalog;
use crate::ids::{KLAXON_NAMESPACE, ServiceName, Severity};
use crate::oncall::resolve;
use crate::outbox::Message;
use crate::review::trends::{TrendFilter, TrendReport, render_table};

#[cfg(test)]
mod tests;

/// The kind of the event that records a posted report.
pub const POSTED_KIND: &str = "report.posted.v1";

/// Who posts reports (`by` of the message, `actor` of the record).
pub const REPORTER_ACTOR: &str = "klaxon-reports";

/// The most reports a configuration may hold.
pub const REPORTS_MAX: usize = 64;

/// One `[[reports]]` table as written in the configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportConfig {
    /// The report's name: letters, digits, `-` and `_`; unique. It names the
    /// log stream `reports-<name>`.
    pub name: String,
    /// `weekly` or `monthly`.
    pub period: String,
    /// Weekly reports: the weekday they are posted on, such as `monday`
    /// (the default).
    #[serde(default)]
    pub weekday: Option<String>,
    /// Monthly reports: the day of the month they are posted on, 1 to 28
    /// (default 1).
    #[serde(default)]
    pub day: Option<u32>,
    /// The local time of day they are posted at, `HH:MM` (default
    /// `09:00`).
    #[serde(default)]
    pub time: Option<String>,
    /// The IANA time zone of the periods and the posting time (default
    /// `UTC`).
    #[serde(default)]
    pub time_zone: Option<String>,
    /// The channels (names of `[[channels]]`) to post to; at least one.
    pub channels: Vec<String>,
    /// Only incidents of this service.
    #[serde(default)]
    pub service: Option<String>,
    /// Only incidents of the services of this catalog team.
    #[serde(default)]
    pub team: Option<String>,
    /// Only incidents of this severity (`sev1` to `sev4`).
    #[serde(default)]
    pub severity: Option<String>,
}

/// How often a report is posted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Cadence {
    /// Every week (Monday to Monday).
    Weekly,
    /// Every calendar month.
    Monthly,
}

/// A checked report.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    name: String,
    cadence: Cadence,
    /// The weekday (weekly) or day of the month (monthly) it is posted on.
    weekday: Weekday,
    day: u32,
    time: NaiveTime,
    zone: Tz,
    channels: Vec<String>,
    filter: TrendFilter,
}

/// One period of a report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Period {
    /// Its id: the ISO week of its start (`2026-W48`) or its month
    /// (`2026-11`).
    pub id: String,
    /// Its start, included.
    pub from: DateTime<Utc>,
    /// Its end, excluded.
    pub to: DateTime<Utc>,
}

/// What came of posting to one channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelOutcome {
    /// The channel.
    pub channel: String,
    /// Whether it took the report (after the channel's own bounded retries).
    pub delivered: bool,
    /// The last error, when it did not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `report.posted.v1`: a report's period was posted (stream
/// `reports-<name>`). Its id is [`Report::posted_id`], so posting a period
/// again writes nothing twice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportPosted {
    /// The report's name.
    pub report: String,
    /// The period posted.
    pub period: Period,
    /// When it was posted (the clock's time).
    pub at: DateTime<Utc>,
    /// The outcome on each channel.
    pub channels: Vec<ChannelOutcome>,
}

impl ReportPosted {
    /// The event as stored.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("a posted report serializes")
    }

    /// The event back from its stored JSON.
    pub fn from_json(data: &str) -> Result<ReportPosted, serde_json::Error> {
        serde_json::from_str(data)
    }
}

/// The log stream of a report's posts: `reports-<name>`.
pub fn stream(report: &str) -> String {
    format!("reports-{report}")
}

fn weekday(value: &str) -> Option<Weekday> {
    let all = [
        ("monday", Weekday::Mon),
        ("tuesday", Weekday::Tue),
        ("wednesday", Weekday::Wed),
        ("thursday", Weekday::Thu),
        ("friday", Weekday::Fri),
        ("saturday", Weekday::Sat),
        ("sunday", Weekday::Sun),
    ];
    all.iter().find(|(name, _)| name.eq_ignore_ascii_case(value)).map(|(_, day)| *day)
}

/// Checks every `[[reports]]` table (`key` is the array's key, such as
/// `reports`): names, cadences, posting times, zones, the filters (a team
/// must be a team of the `catalog`) and the channels (`channel_exists`).
pub fn validate_reports(
    reports: &[ReportConfig],
    key: &str,
    catalog: &ServiceCatalog,
    channel_exists: &dyn Fn(&str) -> bool,
) -> Result<Vec<Report>, ConfigError> {
    if reports.len() > REPORTS_MAX {
        return Err(ConfigError::new(
            key,
            format!("{} reports is more than the limit of {REPORTS_MAX}", reports.len()),
        ));
    }
    let mut names: BTreeMap<&str, usize> = BTreeMap::new();
    let mut checked = Vec::with_capacity(reports.len());
    for (i, report) in reports.iter().enumerate() {
        let key = format!("{key}[{i}]");
        if let Some(first) = names.insert(report.name.as_str(), i) {
            return Err(ConfigError::new(
                format!("{key}.name"),
                format!("report {:?} is already defined at [{first}]", report.name),
            ));
        }
        checked.push(report.validate(&key, catalog, channel_exists)?);
    }
    Ok(checked)
}

impl ReportConfig {
    fn validate(
        &self,
        key: &str,
        catalog: &ServiceCatalog,
        channel_exists: &dyn Fn(&str) -> bool,
    ) -> Result<Report, ConfigError> {
        let problem = |field: &str, p: String| ConfigError::new(format!("{key}.{field}"), p);
        let name_ok = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
        if self.name.is_empty() || self.name.len() > 64 || !self.name.chars().all(name_ok) {
            return Err(problem("name", format!("{:?} must be 1 to 64 letters, digits, '-' or '_'", self.name)));
        }
        let cadence = match self.period.as_str() {
            "weekly" => Cadence::Weekly,
            "monthly" => Cadence::Monthly,
            other => return Err(problem("period", format!("{other:?} must be \"weekly\" or \"monthly\""))),
        };
        let day_of_week = match (&self.weekday, cadence) {
            (None, _) => Weekday::Mon,
            (Some(_), Cadence::Monthly) => {
                return Err(problem("weekday", "applies to weekly reports only (monthly ones take day)".into()));
            }
            (Some(w), Cadence::Weekly) => {
                weekday(w).ok_or_else(|| problem("weekday", format!("{w:?} must be a weekday such as \"monday\"")))?
            }
        };
        let day = match (self.day, cadence) {
            (None, _) => 1,
            (Some(_), Cadence::Weekly) => {
                return Err(problem("day", "applies to monthly reports only (weekly ones take weekday)".into()));
            }
            (Some(d), Cadence::Monthly) if (1..=28).contains(&d) => d,
            (Some(d), Cadence::Monthly) => return Err(problem("day", format!("{d} must be from 1 to 28"))),
        };
        let time = match &self.time {
            None => NaiveTime::from_hms_opt(9, 0, 0).expect("09:00 is a time"),
            Some(t) => NaiveTime::parse_from_str(t, "%H:%M")
                .map_err(|_| problem("time", format!("{t:?} must be a time of day as HH:MM")))?,
        };
        let zone: Tz = match &self.time_zone {
            None => Tz::UTC,
            Some(z) => z.parse().map_err(|_| problem("time_zone", format!("unknown IANA time zone {z:?}")))?,
        };
        if self.channels.is_empty() {
            return Err(problem("channels", "must name at least one channel".into()));
        }
        for (c, channel) in self.channels.iter().enumerate() {
            if !channel_exists(channel) {
                return Err(problem(&format!("channels[{c}]"), format!("unknown channel {channel:?}")));
            }
        }
        let service = match &self.service {
            None => None,
            Some(s) => Some(ServiceName::new(s.as_str()).map_err(|e| problem("service", e.to_string()))?),
        };
        if let Some(team) = self.team.as_ref().filter(|t| !catalog.services().any(|s| s.team() == t.as_str())) {
            return Err(problem("team", format!("{team:?} is no team of any service in [[services]]")));
        }
        let severity = match &self.severity {
            None => None,
            Some(s) => Some(s.parse::<Severity>().map_err(|e| problem("severity", e.to_string()))?),
        };
        Ok(Report {
            name: self.name.clone(),
            cadence,
            weekday: day_of_week,
            day,
            time,
            zone,
            channels: self.channels.clone(),
            filter: TrendFilter { service, team: self.team.clone(), severity },
        })
    }
}

impl Report {
    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// Its cadence.
    pub fn cadence(&self) -> Cadence {
        self.cadence
    }
    /// The channels it is posted to.
    pub fn channels(&self) -> &[String] {
        &self.channels
    }
    /// Its filters.
    pub fn filter(&self) -> &TrendFilter {
        &self.filter
    }

    /// The first day of the period that holds local day `date`.
    fn start_of(&self, date: NaiveDate) -> NaiveDate {
        match self.cadence {
            Cadence::Weekly => date - TimeDelta::days(i64::from(date.weekday().num_days_from_monday())),
            Cadence::Monthly => date.with_day(1).expect("every month has a first day"),
        }
    }

    fn next_start(&self, start: NaiveDate) -> NaiveDate {
        match self.cadence {
            Cadence::Weekly => start + TimeDelta::days(7),
            Cadence::Monthly => start + Months::new(1),
        }
    }

    fn previous_start(&self, start: NaiveDate) -> NaiveDate {
        match self.cadence {
            Cadence::Weekly => start - TimeDelta::days(7),
            Cadence::Monthly => start - Months::new(1),
        }
    }

    fn instant(&self, date: NaiveDate, time: NaiveTime) -> DateTime<Utc> {
        resolve(self.zone, date.and_time(time))
    }

    /// When the report of the period starting on `start` is posted.
    fn post_time(&self, start: NaiveDate) -> DateTime<Utc> {
        let next = self.next_start(start);
        let date = match self.cadence {
            Cadence::Weekly => next + TimeDelta::days(i64::from(self.weekday.num_days_from_monday())),
            Cadence::Monthly => next.with_day(self.day).expect("days 1 to 28 exist in every month"),
        };
        self.instant(date, self.time)
    }

    fn period(&self, start: NaiveDate) -> Period {
        let id = match self.cadence {
            Cadence::Weekly => {
                let week = start.iso_week();
                format!("{}-W{:02}", week.year(), week.week())
            }
            Cadence::Monthly => format!("{}-{:02}", start.year(), start.month()),
        };
        Period {
            id,
            from: self.instant(start, NaiveTime::MIN),
            to: self.instant(self.next_start(start), NaiveTime::MIN),
        }
    }

    /// The latest period whose posting time is at or before `now`, and
    /// the start of the period after it.
    fn latest_due(&self, now: DateTime<Utc>) -> (NaiveDate, NaiveDate) {
        let current = self.start_of(now.with_timezone(&self.zone).date_naive());
        let last = self.previous_start(current);
        if self.post_time(last) <= now { (last, current) } else { (self.previous_start(last), last) }
    }

    /// The period to post at `now`, if any: the latest period whose posting
    /// time has passed, unless `posted` says its id was posted already.
    pub fn due(&self, now: DateTime<Utc>, posted: &dyn Fn(&str) -> bool) -> Option<Period> {
        let period = self.period(self.latest_due(now).0);
        (!posted(&period.id)).then_some(period)
    }

    /// When the report is due next: `now` when a period is due, else the
    /// next posting time.
    pub fn next_due(&self, now: DateTime<Utc>, posted: &dyn Fn(&str) -> bool) -> DateTime<Utc> {
        if self.due(now, posted).is_some() {
            return now;
        }
        self.post_time(self.latest_due(now).1)
    }

    /// The id of the `report.posted.v1` of `period`: UUIDv5 of the report's
    /// name and the period's id, the same on every replica and restart.
    pub fn posted_id(&self, period: &Period) -> Uuid {
        Uuid::new_v5(&KLAXON_NAMESPACE, format!("{POSTED_KIND}/{}/{}", self.name, period.id).as_bytes())
    }

    /// The message that posts `report` (the trends of `period`): the table
    /// of `klaxon trends`, with the idempotency key `report/<name>/<period>`.
    pub fn message(&self, period: &Period, report: &TrendReport) -> Message {
        let cadence = match self.cadence {
            Cadence::Weekly => "Weekly",
            Cadence::Monthly => "Monthly",
        };
        let mut fields = BTreeMap::new();
        fields.insert("report".to_owned(), serde_json::Value::from(self.name.clone()));
        fields.insert("period".to_owned(), serde_json::Value::from(period.id.clone()));
        fields.insert("incidents".to_owned(), serde_json::Value::from(report.incidents));
        fields.insert("open".to_owned(), serde_json::Value::from(report.open));
        fields.insert("slo_compliance_percent".to_owned(), serde_json::json!(report.slo.percent));
        Message {
            idempotency_key: format!("report/{}/{}", self.name, period.id),
            kind: "trend_report".to_owned(),
            title: format!("{cadence} incident trends ({}): {}", self.name, period.id),
            text: render_table(report),
            fields,
            recipient: None,
            thread: None,
        }
    }
}
