//! Shift notices: people are told on their channel when their shift starts
//! and ends and when an override or swap moves one of their shifts, and a
//! weekly summary lists each schedule's handoffs of the coming seven days.
//!
//! Everything here is pure: [`due`] says which notices are due at an
//! instant, from a schedule (with its overrides and swaps applied), the
//! [`Notices`] folded from the log and the [`NoticesConfig`]; [`moves`]
//! says whom a schedule event moved; [`next_due`] when something becomes
//! due next. The component that runs it (`klaxon_paging::shifts`) appends a
//! due notice first, as [`DECIDED_KIND`] in the schedule's `shifts-<name>`
//! stream ([`stream`]) with an id derived from its [`Notice::key`], then
//! delivers it and records the outcome as [`SENT_KIND`].
//!
//! # Rules
//!
//! A *shift* is a span of the schedule's flattened timeline
//! ([`Schedule::coverage`]) in which one person is on call: consecutive
//! shifts of the same person are one. Times are the schedule's, computed in
//! its time zone, so a shift across a daylight saving change lasts what the
//! wall clock says.
//!
//! - **Starts**: due `notice_before` ahead of the shift's start, and sent
//!   while the shift has not ended, if it started at most
//!   [`START_LATE_MAX`] ago. Key: schedule, person, `starts`, start.
//! - **Ends**: due at the shift's end, sent until [`END_LATE_MAX`] after
//!   it. Key: schedule, person, `ends`, end.
//! - **Moved**: an override or a swap event that changes someone's shifts
//!   in the [`MOVED_HORIZON_DAYS`] days after it tells every person whose
//!   shifts were removed or added (old and new times), at once, until
//!   [`MOVED_LATE_MAX`] after the event. Key: schedule, person, `moved`,
//!   the event's id. So does a recorded configuration
//!   (`config.applied.v1`) whose `[[schedules]]` change a schedule of the
//!   configuration recorded before it ([`reload_moves`]; the event is the
//!   record, its time the record's).
//! - **Summary**: at the configured weekday and local time, the handoffs of
//!   the next seven days, to the configured channel and/or the schedule's
//!   people, until [`SUMMARY_LATE_MAX`] after that time. Key: schedule,
//!   `summary`, local date.
//!
//! Notices are never sent for the past: what is older than these limits
//! when first looked at (a first start over an old log, a long outage) is
//! skipped, never caught up.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use chrono::{DateTime, Datelike, NaiveTime, SecondsFormat, TimeDelta, Utc, Weekday};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use super::{Schedule, Span};
use crate::ConfigError;
use crate::ids::{ActorId, KLAXON_NAMESPACE};

/// The prefix of every shift notice stream.
pub const STREAM_PREFIX: &str = "shifts-";
/// A notice decided (appended before it is delivered).
pub const DECIDED_KIND: &str = "shift.notice_decided.v1";
/// What came of delivering a decided notice.
pub const SENT_KIND: &str = "shift.notice_sent.v1";
/// Every kind of this family.
pub const KINDS: &[&str] = &[DECIDED_KIND, SENT_KIND];
/// The actor of notice events.
pub const ACTOR: &str = "klaxon-shifts";
/// How long after its start a shift still gets its start notice.
pub const START_LATE_MAX: TimeDelta = TimeDelta::days(1);
/// How long after its end a shift still gets its end notice.
pub const END_LATE_MAX: TimeDelta = TimeDelta::hours(1);
/// How long after the schedule event its moved notices are still sent.
pub const MOVED_LATE_MAX: TimeDelta = TimeDelta::days(1);
/// How far after a schedule event changed shifts are looked for.
pub const MOVED_HORIZON_DAYS: i64 = 14;
/// How long after its time a weekly summary is still sent.
pub const SUMMARY_LATE_MAX: TimeDelta = TimeDelta::days(1);
/// The days a weekly summary covers.
pub const SUMMARY_DAYS: i64 = 7;
/// The longest `notice_before`.
pub const NOTICE_BEFORE_MAX: TimeDelta = TimeDelta::days(7);
/// How far ahead shifts are computed (a shift is at most 28 days; the end
/// of a longer one is shown as it is seen from here).
const AHEAD: TimeDelta = TimeDelta::days(29);
/// The longest wait between two looks, so that a window that slid past
/// the computed one is seen.
const LOOK_EVERY: TimeDelta = TimeDelta::days(1);

/// The name of the stream of schedule `name`'s notices, `shifts-<name>`.
pub fn stream(name: &str) -> String {
    format!("{STREAM_PREFIX}{name}")
}

/// `[shift_notices]` as written in the file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NoticesSectionConfig {
    /// Whether notices are sent at all (off by default: a new version
    /// never starts messaging people on its own).
    pub enabled: bool,
    /// How long before a shift starts its start notice goes out, `"<n>m"`
    /// or `"<n>h"` (default `"15m"`, at most 7 days).
    pub notice_before: Option<String>,
    /// The channels people are told through (default: `[paging].channels`,
    /// the channels pages reach people by).
    pub channels: Option<Vec<String>>,
    /// The weekly summary (`[shift_notices.weekly]`); none without it.
    pub weekly: Option<WeeklyConfig>,
}

/// `[shift_notices.weekly]` as written in the file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WeeklyConfig {
    /// The weekday, `"mon"` to `"sun"` (default `"mon"`).
    pub day: Option<String>,
    /// The local time, `"HH:MM"` (default `"09:00"`).
    pub time: Option<String>,
    /// The IANA time zone of `day` and `time` (default `"UTC"`).
    pub time_zone: Option<String>,
    /// A channel that receives every schedule's summary.
    pub channel: Option<String>,
    /// Whether each person on call in the coming week receives it too.
    pub to_people: bool,
}

/// Validated `[shift_notices]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoticesConfig {
    enabled: bool,
    notice_before: TimeDelta,
    channels: Vec<String>,
    weekly: Option<Weekly>,
}

/// Validated `[shift_notices.weekly]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Weekly {
    day: Weekday,
    time: NaiveTime,
    time_zone: Tz,
    channel: Option<String>,
    to_people: bool,
}

impl NoticesSectionConfig {
    /// Checks every key (named `key.<field>` in the error). `people` are
    /// the channels people are reached by when `channels` is not given;
    /// `channel_exists` tells a configured channel.
    pub fn validate(
        &self,
        key: &str,
        people: &[String],
        channel_exists: &dyn Fn(&str) -> bool,
    ) -> Result<NoticesConfig, ConfigError> {
        let before_key = format!("{key}.notice_before");
        let notice_before = match &self.notice_before {
            None => TimeDelta::minutes(15),
            Some(raw) => parse_duration(&before_key, raw)?,
        };
        if notice_before > NOTICE_BEFORE_MAX {
            return Err(ConfigError::new(before_key, "must be at most 7 days (\"168h\")"));
        }
        let channels = self.channels.clone().unwrap_or_else(|| people.to_vec());
        for (i, channel) in channels.iter().enumerate() {
            if !channel_exists(channel) {
                return Err(ConfigError::new(format!("{key}.channels[{i}]"), format!("unknown channel {channel:?}")));
            }
        }
        let weekly = match &self.weekly {
            None => None,
            Some(w) => Some(w.validate(&format!("{key}.weekly"), channel_exists)?),
        };
        if self.enabled && channels.is_empty() && weekly.as_ref().is_none_or(|w| w.channel.is_none()) {
            return Err(ConfigError::new(
                format!("{key}.channels"),
                "notices are enabled but reach nobody: give channels (or [paging].channels) or a weekly channel",
            ));
        }
        Ok(NoticesConfig { enabled: self.enabled, notice_before, channels, weekly })
    }
}

impl WeeklyConfig {
    fn validate(&self, key: &str, channel_exists: &dyn Fn(&str) -> bool) -> Result<Weekly, ConfigError> {
        let day = match &self.day {
            None => Weekday::Mon,
            Some(raw) => super::config::parse_weekday(raw).ok_or_else(|| {
                ConfigError::new(format!("{key}.day"), format!("{raw:?}: expected \"mon\" to \"sun\""))
            })?,
        };
        let time = super::config::parse_time(&format!("{key}.time"), self.time.as_deref().unwrap_or("09:00"))?;
        let zone = self.time_zone.as_deref().unwrap_or("UTC");
        let time_zone: Tz = zone
            .parse()
            .map_err(|_| ConfigError::new(format!("{key}.time_zone"), format!("unknown IANA time zone {zone:?}")))?;
        if let Some(channel) = &self.channel
            && !channel_exists(channel)
        {
            return Err(ConfigError::new(format!("{key}.channel"), format!("unknown channel {channel:?}")));
        }
        if self.channel.is_none() && !self.to_people {
            return Err(ConfigError::new(key, "the weekly summary goes nowhere: give a channel or to_people = true"));
        }
        Ok(Weekly { day, time, time_zone, channel: self.channel.clone(), to_people: self.to_people })
    }
}

/// `"<n>m"` or `"<n>h"`, `n` at most 4 digits.
fn parse_duration(key: &str, raw: &str) -> Result<TimeDelta, ConfigError> {
    let problem = || ConfigError::new(key, format!(r#"{raw:?}: expected minutes or hours such as "15m" or "2h""#));
    let (digits, unit) = raw.split_at(raw.len().saturating_sub(1));
    if digits.is_empty() || digits.len() > 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(problem());
    }
    let n: i64 = digits.parse().map_err(|_| problem())?;
    match unit {
        "m" => Ok(TimeDelta::minutes(n)),
        "h" => Ok(TimeDelta::hours(n)),
        _ => Err(problem()),
    }
}

impl NoticesConfig {
    /// Notices off: what a file without `[shift_notices]` means.
    pub fn disabled() -> NoticesConfig {
        NoticesConfig { enabled: false, notice_before: TimeDelta::minutes(15), channels: Vec::new(), weekly: None }
    }

    /// Whether notices are sent.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// How long before a shift starts its start notice goes out.
    pub fn notice_before(&self) -> TimeDelta {
        self.notice_before
    }

    /// The channels people are told through.
    pub fn channels(&self) -> &[String] {
        &self.channels
    }
}

/// What a notice is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoticeKind {
    /// A shift starts.
    Starts,
    /// A shift ended.
    Ends,
    /// An override or swap changed someone's shifts.
    Moved,
    /// The weekly summary of a schedule.
    Summary,
}

impl NoticeKind {
    /// Its name in keys and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            NoticeKind::Starts => "starts",
            NoticeKind::Ends => "ends",
            NoticeKind::Moved => "moved",
            NoticeKind::Summary => "summary",
        }
    }
}

/// An interval `[from, until)` in which one person is on call.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Shift {
    /// The person.
    pub who: ActorId,
    /// The first instant.
    pub from: DateTime<Utc>,
    /// The first instant after.
    pub until: DateTime<Utc>,
}

/// One message of a notice: through a channel, to a person (`None`: the
/// channel itself, such as a team room).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Send {
    /// The configured channel.
    pub channel: String,
    /// Who it is for.
    pub recipient: Option<String>,
}

impl Send {
    /// The idempotency key of this message: the notice's key, and the
    /// recipient when there is one.
    pub fn idempotency_key(&self, notice: &str) -> String {
        match &self.recipient {
            Some(r) => format!("shift/{notice}/{r}"),
            None => format!("shift/{notice}"),
        }
    }
}

/// A notice as decided: the data of [`DECIDED_KIND`]. Everything needed to
/// deliver it is in it, so a restart delivers what was decided, under the
/// configuration it was decided with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Notice {
    /// Unique across the log: schedule, person, kind and the instant or
    /// event it is about.
    pub key: String,
    /// The schedule.
    pub schedule: String,
    /// What it is about.
    pub kind: NoticeKind,
    /// The person it is about (none for a summary).
    pub person: Option<ActorId>,
    /// When it was decided.
    pub at: DateTime<Utc>,
    /// The shift that starts or ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shift: Option<Shift>,
    /// Moved: the person's shifts that are no longer theirs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removed: Vec<Shift>,
    /// Moved: the person's new shifts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub added: Vec<Shift>,
    /// Summary: the handoffs of the coming week (`who: None` is a hole).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub handoffs: Vec<Span>,
    /// The one-line title.
    pub title: String,
    /// The text.
    pub text: String,
    /// Where it goes.
    pub sends: Vec<Send>,
}

impl Notice {
    /// The id of its [`DECIDED_KIND`] event: the same for the same notice
    /// in every process and after every restart.
    pub fn decided_id(key: &str) -> uuid::Uuid {
        uuid::Uuid::new_v5(&KLAXON_NAMESPACE, format!("{DECIDED_KIND}/{key}").as_bytes())
    }

    /// The id of its [`SENT_KIND`] event.
    pub fn sent_id(key: &str) -> uuid::Uuid {
        uuid::Uuid::new_v5(&KLAXON_NAMESPACE, format!("{SENT_KIND}/{key}").as_bytes())
    }

    /// The event's data.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("a notice serializes")
    }
}

/// What came of one message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendOutcome {
    /// The channel.
    pub channel: String,
    /// The recipient.
    pub recipient: Option<String>,
    /// Whether the channel took it.
    pub delivered: bool,
    /// The last error, when it did not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The data of [`SENT_KIND`]: a decided notice was delivered (or failed
/// after the channel's own retries) and is never sent again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoticeSent {
    /// The notice's key.
    pub key: String,
    /// The schedule.
    pub schedule: String,
    /// When the delivery began.
    pub at: DateTime<Utc>,
    /// One outcome per message.
    pub outcomes: Vec<SendOutcome>,
}

/// A notice event of the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoticeEvent {
    /// [`DECIDED_KIND`].
    Decided(Notice),
    /// [`SENT_KIND`].
    Sent(NoticeSent),
}

impl NoticeEvent {
    /// Decodes a record of `kind` (one of [`KINDS`]).
    pub fn from_json(kind: &str, data: &str) -> Result<NoticeEvent, crate::DecodeError> {
        let malformed = |source| crate::DecodeError::Malformed { kind: kind.to_owned(), source };
        match kind {
            DECIDED_KIND => serde_json::from_str(data).map(NoticeEvent::Decided).map_err(malformed),
            SENT_KIND => serde_json::from_str(data).map(NoticeEvent::Sent).map_err(malformed),
            _ => Err(crate::DecodeError::UnknownKind { kind: kind.to_owned() }),
        }
    }

    /// One readable line (for `klaxon audit`).
    pub fn summary(&self) -> String {
        match self {
            NoticeEvent::Decided(n) => format!("shift notice {}: {}", n.key, n.title),
            NoticeEvent::Sent(s) => {
                let delivered = s.outcomes.iter().filter(|o| o.delivered).count();
                format!("shift notice {} sent: {delivered} of {} delivered", s.key, s.outcomes.len())
            }
        }
    }
}

/// What the shift notices fold from the log: the notices decided, those
/// not yet sent, and the moved notices that schedule events call for.
#[derive(Debug, Clone, Default)]
pub struct Notices {
    decided: HashSet<String>,
    undelivered: BTreeMap<String, Notice>,
    moves: Vec<Notice>,
}

impl Notices {
    /// Folds one notice event.
    pub fn evolve(&mut self, event: &NoticeEvent) {
        match event {
            NoticeEvent::Decided(n) => {
                if self.decided.insert(n.key.clone()) {
                    self.undelivered.insert(n.key.clone(), n.clone());
                }
                self.moves.retain(|m| m.key != n.key);
            }
            NoticeEvent::Sent(s) => {
                self.decided.insert(s.key.clone());
                self.undelivered.remove(&s.key);
            }
        }
    }

    /// Remembers the moved notices a schedule event calls for (see
    /// [`moves`]); [`due`] decides them.
    pub fn moved(&mut self, notices: Vec<Notice>) {
        self.moves.extend(notices.into_iter().filter(|n| !self.decided.contains(&n.key)));
    }

    /// Whether a notice with `key` was decided.
    pub fn is_decided(&self, key: &str) -> bool {
        self.decided.contains(key)
    }

    /// The decided notices not sent yet, by key.
    pub fn undelivered(&self) -> impl Iterator<Item = &Notice> {
        self.undelivered.values()
    }
}

/// Formats an instant in `tz` for people: `Mon 2026-11-30 09:00 CET`.
fn local(tz: Tz, at: DateTime<Utc>) -> String {
    at.with_timezone(&tz).format("%a %Y-%m-%d %H:%M %Z").to_string()
}

fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// The sends of a notice to `person`.
fn to_person(config: &NoticesConfig, person: &ActorId) -> Vec<Send> {
    config.channels.iter().map(|c| Send { channel: c.clone(), recipient: Some(person.to_string()) }).collect()
}

/// The shifts of the flattened timeline of `[from, to)`, with whether
/// their start and end are known (not cut by the window).
fn shifts(schedule: &Schedule, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<(Shift, bool, bool)> {
    schedule
        .coverage(from, to)
        .into_iter()
        .filter_map(|span| {
            let who = span.who?;
            Some((Shift { who, from: span.from, until: span.until }, span.from > from, span.until < to))
        })
        .collect()
}

/// The notices of `schedule` (overrides and swaps applied) due at `now`
/// and not decided yet, in a stable order. Empty when notices are off.
pub fn due(config: &NoticesConfig, schedule: &Schedule, state: &Notices, now: DateTime<Utc>) -> Vec<Notice> {
    if !config.enabled {
        return Vec::new();
    }
    let name = schedule.name();
    let tz = schedule.time_zone();
    let mut out = Vec::new();
    let mut push = |notice: Notice| {
        if !state.is_decided(&notice.key) {
            out.push(notice);
        }
    };
    let from = now - START_LATE_MAX;
    let to = now + config.notice_before + AHEAD;
    for (shift, start_known, end_known) in shifts(schedule, from, to) {
        let who = shift.who.clone();
        if start_known && shift.from - config.notice_before <= now && now < shift.until && !config.channels.is_empty() {
            let key = format!("{name}/{who}/starts/{}", rfc3339(shift.from));
            let title = format!("Your on-call shift on {name} starts {}", local(tz, shift.from));
            let text = format!(
                "{who}, you are on call on {name} from {} until {}.",
                local(tz, shift.from),
                local(tz, shift.until)
            );
            let sends = to_person(config, &who);
            push(Notice::about(
                key,
                name,
                NoticeKind::Starts,
                Some(who.clone()),
                now,
                Some(shift.clone()),
                title,
                text,
                sends,
            ));
        }
        if end_known && shift.until <= now && now < shift.until + END_LATE_MAX && !config.channels.is_empty() {
            let key = format!("{name}/{who}/ends/{}", rfc3339(shift.until));
            let title = format!("Your on-call shift on {name} ended {}", local(tz, shift.until));
            let next = schedule.on_call_at(shift.until).map_or("nobody".to_string(), |o| o.who.to_string());
            let text = format!("{who}, your shift on {name} ended {}; {next} is on call now.", local(tz, shift.until));
            let sends = to_person(config, &who);
            push(Notice::about(key, name, NoticeKind::Ends, Some(who.clone()), now, Some(shift), title, text, sends));
        }
    }
    for moved in state.moves.iter().filter(|m| m.schedule == name && now < m.at + MOVED_LATE_MAX) {
        let mut notice = moved.clone();
        notice.at = now;
        push(notice);
    }
    if let Some(weekly) = &config.weekly
        && let Some(at) = weekly.last(now)
        && now < at + SUMMARY_LATE_MAX
    {
        push(summary(config, weekly, schedule, at, now));
    }
    out
}

/// The weekly summary of `schedule` for the week from `at`.
fn summary(
    config: &NoticesConfig,
    weekly: &Weekly,
    schedule: &Schedule,
    at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Notice {
    let name = schedule.name();
    let tz = schedule.time_zone();
    let date = at.with_timezone(&weekly.time_zone).date_naive();
    let handoffs = schedule.coverage(at, at + TimeDelta::days(SUMMARY_DAYS));
    let mut text = format!("On call on {name} in the week from {}:\n", local(tz, at));
    for span in &handoffs {
        let who = span.who.as_ref().map_or("NOBODY (a hole)".to_string(), ToString::to_string);
        text.push_str(&format!("- {} – {}: {who}\n", local(tz, span.from), local(tz, span.until)));
    }
    let mut sends: Vec<Send> = weekly.channel.iter().map(|c| Send { channel: c.clone(), recipient: None }).collect();
    if weekly.to_people {
        let people: BTreeSet<&ActorId> = handoffs.iter().filter_map(|s| s.who.as_ref()).collect();
        for person in people {
            sends.extend(to_person(config, person));
        }
    }
    let title = format!("On-call handoffs on {name}, week of {date}");
    let key = format!("{name}/summary/{date}");
    let mut notice = Notice::about(key, name, NoticeKind::Summary, None, now, None, title, text, sends);
    notice.handoffs = handoffs;
    notice
}

impl Notice {
    #[allow(clippy::too_many_arguments)]
    fn about(
        key: String,
        schedule: &str,
        kind: NoticeKind,
        person: Option<ActorId>,
        at: DateTime<Utc>,
        shift: Option<Shift>,
        title: String,
        text: String,
        sends: Vec<Send>,
    ) -> Notice {
        Notice {
            key,
            schedule: schedule.to_owned(),
            kind,
            person,
            at,
            shift,
            removed: Vec::new(),
            added: Vec::new(),
            handoffs: Vec::new(),
            title,
            text,
            sends,
        }
    }
}

impl Weekly {
    /// The latest summary time at or before `now`.
    fn last(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let today = now.with_timezone(&self.time_zone).date_naive();
        let back = (7 + today.weekday().num_days_from_monday() - self.day.num_days_from_monday()) % 7;
        let day = today - TimeDelta::days(i64::from(back));
        let at = super::resolve(self.time_zone, day.and_time(self.time));
        if at <= now {
            Some(at)
        } else {
            Some(super::resolve(self.time_zone, (day - TimeDelta::days(7)).and_time(self.time)))
        }
    }

    /// The first summary time after `now`.
    fn next(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        let last = self.last(now).unwrap_or(now);
        let day = last.with_timezone(&self.time_zone).date_naive() + TimeDelta::days(7);
        super::resolve(self.time_zone, day.and_time(self.time))
    }
}

/// When something of `schedule` becomes due after `now` (a start notice's
/// lead time, a shift's end, the next summary), or at the latest a day
/// from now, when the window is looked at again. `None` when notices are
/// off.
pub fn next_due(config: &NoticesConfig, schedule: &Schedule, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    if !config.enabled {
        return None;
    }
    let mut next = now + LOOK_EVERY;
    let from = now - START_LATE_MAX;
    let to = now + config.notice_before + AHEAD;
    for (shift, start_known, end_known) in shifts(schedule, from, to) {
        let lead = shift.from - config.notice_before;
        if start_known && lead > now {
            next = next.min(lead);
        }
        if end_known && shift.until > now {
            next = next.min(shift.until);
        }
    }
    if let Some(weekly) = &config.weekly {
        next = next.min(weekly.next(now));
    }
    Some(next)
}

/// The moved notices of a schedule event (`event_id`, decided at `at`)
/// that turned `before` into `after`: each person whose shifts in the
/// [`MOVED_HORIZON_DAYS`] days from `at` changed is told which were removed
/// and which added. Empty when notices are off.
pub fn moves(
    config: &NoticesConfig,
    before: &Schedule,
    after: &Schedule,
    event_id: uuid::Uuid,
    at: DateTime<Utc>,
) -> Vec<Notice> {
    if !config.enabled || config.channels.is_empty() {
        return Vec::new();
    }
    let name = after.name();
    let tz = after.time_zone();
    let to = at + TimeDelta::days(MOVED_HORIZON_DAYS);
    let old: BTreeSet<Shift> = shifts(before, at, to).into_iter().map(|(s, _, _)| s).collect();
    let new: BTreeSet<Shift> = shifts(after, at, to).into_iter().map(|(s, _, _)| s).collect();
    let people: BTreeSet<&ActorId> = old.symmetric_difference(&new).map(|s| &s.who).collect();
    people
        .into_iter()
        .map(|who| {
            let removed: Vec<Shift> = old.difference(&new).filter(|s| &s.who == who).cloned().collect();
            let added: Vec<Shift> = new.difference(&old).filter(|s| &s.who == who).cloned().collect();
            let mut text = format!("{who}, your on-call shifts on {name} changed.");
            for s in &removed {
                text.push_str(&format!("\nNo longer on call: {} – {}", local(tz, s.from), local(tz, s.until)));
            }
            for s in &added {
                text.push_str(&format!("\nNow on call: {} – {}", local(tz, s.from), local(tz, s.until)));
            }
            let key = format!("{name}/{who}/moved/{event_id}");
            let title = format!("Your on-call shifts on {name} changed");
            let sends = to_person(config, who);
            let mut notice =
                Notice::about(key, name, NoticeKind::Moved, Some(who.clone()), at, None, title, text, sends);
            notice.removed = removed;
            notice.added = added;
            notice
        })
        .collect()
}

/// The configured schedules of a configuration as the log records it (the
/// `config` of `config.applied.v1`: the file's TOML as JSON), validated as
/// at start; none without `[[schedules]]`.
pub fn recorded_schedules(config: &serde_json::Value) -> Result<super::Schedules, ConfigError> {
    let raw = config.get("schedules").cloned().unwrap_or_else(|| serde_json::Value::Array(Vec::new()));
    let parsed: super::SchedulesConfig =
        serde_json::from_value(raw).map_err(|e| ConfigError::new("schedules", e.to_string()))?;
    parsed.validate("schedules")
}

/// The moved notices of a recorded configuration (`event_id`, recorded at
/// `at`) that turned the configured schedules `before` into `after`: for
/// every schedule in both, with the overrides and swaps of `rosters`
/// applied to each side, [`moves`]. A schedule added or removed tells
/// nobody here (an added one's shifts get their start notices).
pub fn reload_moves(
    config: &NoticesConfig,
    rosters: &super::roster::Rosters,
    before: &super::Schedules,
    after: &super::Schedules,
    event_id: uuid::Uuid,
    at: DateTime<Utc>,
) -> Vec<Notice> {
    let effective = |s: &Schedule| rosters.get(s.name()).map_or_else(|| s.clone(), |r| r.effective(s));
    after
        .iter()
        .filter_map(|new| Some((before.get(new.name())?, new)))
        .filter(|(old, new)| old != new)
        .flat_map(|(old, new)| moves(config, &effective(old), &effective(new), event_id, at))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(toml: &str) -> Result<NoticesConfig, String> {
        let section: NoticesSectionConfig = toml::from_str(toml).map_err(|e| e.to_string())?;
        section
            .validate("shift_notices", &["pager".to_owned()], &|c| c == "pager" || c == "oncall-room")
            .map_err(|e| e.to_string())
    }

    #[test]
    fn the_section_is_checked_key_by_key() {
        let off = check("").unwrap();
        assert!(!off.enabled());
        assert_eq!(off.notice_before(), TimeDelta::minutes(15));
        assert_eq!(off.channels(), ["pager"]);
        let on = check("enabled = true\nnotice_before = \"2h\"").unwrap();
        assert_eq!(on.notice_before(), TimeDelta::hours(2));
        for (toml, error) in [
            ("notice_before = \"15\"", "shift_notices.notice_before: \"15\": expected minutes or hours"),
            ("notice_before = \"-5m\"", "shift_notices.notice_before: \"-5m\": expected minutes or hours"),
            ("notice_before = \"169h\"", "shift_notices.notice_before: must be at most 7 days"),
            ("channels = [\"sms\"]", "shift_notices.channels[0]: unknown channel \"sms\""),
            ("enabled = true\nchannels = []", "shift_notices.channels: notices are enabled but reach nobody"),
            ("[weekly]\nday = \"monday\"\nchannel = \"pager\"", "shift_notices.weekly.day: \"monday\": expected"),
            ("[weekly]\ntime = \"9:00\"\nchannel = \"pager\"", "shift_notices.weekly.time: \"9:00\": expected"),
            ("[weekly]\ntime_zone = \"Mars/Base\"\nchannel = \"pager\"", "shift_notices.weekly.time_zone: unknown"),
            ("[weekly]\nchannel = \"room\"", "shift_notices.weekly.channel: unknown channel \"room\""),
            ("[weekly]\nday = \"fri\"", "shift_notices.weekly: the weekly summary goes nowhere"),
        ] {
            let got = check(toml).unwrap_err();
            assert!(got.starts_with(error), "{toml:?}: {got}");
        }
        assert!(check("enabled = true\nchannels = []\n[weekly]\nchannel = \"oncall-room\"").is_ok());
    }

    #[test]
    fn the_weekly_summary_time_is_local_across_dst() {
        let weekly = WeeklyConfig {
            day: Some("sun".into()),
            time: Some("02:30".into()),
            time_zone: Some("Europe/Berlin".into()),
            channel: Some("pager".into()),
            to_people: false,
        }
        .validate("weekly", &|_| true)
        .unwrap();
        let at = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        // 2027-03-28 02:30 does not exist in Berlin: the first instant after
        // the gap, 03:00 CEST (01:00Z).
        assert_eq!(weekly.last(at("2027-03-28T01:00:00Z")), Some(at("2027-03-28T01:00:00Z")));
        assert_eq!(weekly.last(at("2027-03-28T00:59:59Z")), Some(at("2027-03-21T01:30:00Z")));
        assert_eq!(weekly.next(at("2027-03-21T01:30:00Z")), at("2027-03-28T01:00:00Z"));
        // 2027-10-31 02:30 exists twice: the earlier, 02:30 CEST (00:30Z).
        assert_eq!(weekly.next(at("2027-10-30T12:00:00Z")), at("2027-10-31T00:30:00Z"));
    }

    /// A recorded configuration with `payments` rotating ana and `second`
    /// weekly, and `extra` schedules.
    fn recorded(second: &str, extra: serde_json::Value) -> super::super::Schedules {
        let mut schedules = vec![serde_json::json!({ "name": "payments", "time_zone": "UTC",
            "layers": [ { "name": "weekly", "participants": ["ana", second], "shift": "7d", "handoff": "00:00",
                          "start": "2026-11-23" } ] })];
        schedules.extend(extra.as_array().cloned().unwrap_or_default());
        recorded_schedules(&serde_json::json!({ "schedules": schedules, "listen": "127.0.0.1:7600" })).unwrap()
    }

    #[test]
    fn a_recorded_configuration_that_changes_a_rotation_tells_whose_shifts_moved() {
        let config = check("enabled = true").unwrap();
        let rosters = super::super::roster::Rosters::default();
        let id = uuid::Uuid::from_u128(7);
        let at = "2026-11-25T10:00:00Z".parse::<DateTime<Utc>>().unwrap();
        let other = serde_json::json!([{ "name": "db", "time_zone": "UTC",
            "layers": [ { "name": "weekly", "participants": ["dave"], "shift": "7d", "handoff": "00:00",
                          "start": "2026-11-23" } ] }]);
        let moved = reload_moves(&config, &rosters, &recorded("ben", other.clone()), &recorded("carl", other), id, at);
        let keys: Vec<&str> = moved.iter().map(|n| n.key.as_str()).collect();
        let key = |who: &str| format!("payments/{who}/moved/{id}");
        assert_eq!(keys, [key("ben"), key("carl")], "db is the same: nobody on it is told");
        assert!(moved[0].text.contains("No longer on call: Mon 2026-11-30 00:00 UTC"), "{}", moved[0].text);
        assert!(moved[1].text.contains("Now on call: Mon 2026-11-30 00:00 UTC"), "{}", moved[1].text);
        // Nothing for a schedule that only one side has, nor for the same one.
        let empty = recorded_schedules(&serde_json::json!({})).unwrap();
        assert!(reload_moves(&config, &rosters, &empty, &recorded("carl", serde_json::json!([])), id, at).is_empty());
        let same = recorded("ben", serde_json::json!([]));
        assert!(reload_moves(&config, &rosters, &same, &same, id, at).is_empty());
        assert!(recorded_schedules(&serde_json::json!({ "schedules": [{ "name": "x" }] })).is_err());
    }
}
