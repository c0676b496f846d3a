//! On-call schedules: layered rotations in an IANA time zone, plus
//! overrides, answering "who is on call at this instant?" across daylight
//! saving changes.
//!
//! A schedule is configured as [`ScheduleConfig`] (raw strings, as written in
//! the TOML file) and validated into an immutable [`Schedule`]; a whole file's
//! `[[schedules]]` become [`Schedules`]. Nothing here reads a clock: every
//! question takes the instant it is about.
//!
//! # Semantics
//!
//! **Rotations.** Every layer rotates its `participants` through shifts of
//! `shift` length. Shift boundaries are computed on the *local wall clock* of
//! the schedule's `time_zone`. Let the epoch be the local date-time
//! `start` at `handoff`; the k-th boundary (k any integer) is the local
//! date-time `epoch + k * shift`, computed without any time zone (so `"7d"`
//! is "same local time, 7 calendar days later" and `"12h"` is "12 hours later
//! on the wall clock": a 12-hour rotation with handoff 09:00 hands off at
//! 09:00 and 21:00 local every day, DST or not). Shift k runs from boundary k
//! to boundary k + 1 and belongs to `participants[k mod len]`, with the
//! Euclidean modulo, so before `start` the rotation extends backwards
//! (shift -1 belongs to the last participant).
//!
//! **Local times that do not exist or exist twice.** A local date-time is
//! turned into an instant in the zone as follows:
//!
//! - it exists once: that instant;
//! - it falls into a spring-forward gap (02:30 on the last Sunday of March in
//!   Berlin): the first instant after the gap (03:00 CEST), so the handoff
//!   happens as soon as the clock has jumped;
//! - it exists twice (fall-back): the *earlier* of the two instants.
//!
//! This mapping never decreases, so shift boundaries are non-decreasing
//! instants and the shifts tile time with no gap and no overlap. A 1-day
//! shift that contains a DST change lasts 23 or 25 hours (a 12-hour shift
//! 11 or 13 hours). When the handoff time itself is inside a gap, the handoff
//! that day happens at the end of the gap, so the shifts before and after it
//! are both shortened by half of what the gap would suggest (with handoff
//! 02:30 in Berlin: 23.5 hours each). Boundaries are even strictly increasing
//! unless a gap is longer than a shift (`Antarctica/Troll` skips two hours,
//! a `"1h"` rotation there has two boundaries inside that gap): the shift
//! between two boundaries that map to the same instant is empty and its
//! participant is skipped, everyone else keeps their turn.
//!
//! **Active windows.** A layer with `active = { from, to, days }` has
//! somebody on call only inside its windows: for every local date whose
//! weekday is in `days` (all seven when omitted), the window runs from that
//! date at `from` to the same date at `to`, or to the *next* date at `to`
//! when `to <= from` (so `22:00`-`06:00` is overnight and `00:00`-`00:00` a
//! whole day). Both ends are mapped to instants exactly like shift boundaries
//! (gap: first instant after it; doubled hour: the earlier instant); a
//! window that starts and ends inside the same gap is empty. Inside a window
//! the layer's current shift decides; outside, the layer has nobody and the
//! layers below it show through.
//!
//! **Precedence.** Overrides win over every layer; among overlapping
//! overrides (allowed) the one listed *later* wins while it lasts, and the
//! earlier one applies again afterwards if it is still running. Among layers,
//! the one listed later wins wherever it has somebody on call. An override
//! covers `[from, to)`.
//!
//! **Configuration.** [`SchedulesConfig::validate`] checks every field and
//! names the offending key path in its [`ConfigError`](crate::ConfigError)
//! (`schedules[0].layers[1].shift: "0d" must be at least 1 day or 1 hour`).
//! Schedule and layer names are 1 to 64 characters of `[a-z0-9_-]`, unique
//! among schedules and within a schedule; participants are at least one and
//! at most [`Layer::PARTICIPANTS_MAX`] distinct actor ids; shifts are `"<n>d"`
//! (1 to 28) or `"<n>h"` (1 to 672); times are `HH:MM`; `start` is a
//! `YYYY-MM-DD` date from 1900 to 2199; overrides are RFC 3339 instants with
//! `to` after `from`, and may overlap. A schedule has 1 to
//! [`Schedule::LAYERS_MAX`] layers and at most [`Schedule::OVERRIDES_MAX`]
//! overrides.
//!
//! **Supported range.** Instants from [`Schedule::EARLIEST`] (inclusive) to
//! [`Schedule::LATEST`] (exclusive) are answered; outside that range nobody
//! is on call. This keeps all calendar arithmetic far from the limits of the
//! date types, so no question can make the computation overflow.

use std::cmp::{max, min};
use std::fmt;

use chrono::{
    DateTime, Datelike, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, Offset, TimeDelta, TimeZone, Utc, Weekday,
};
use chrono_tz::{GapInfo, Tz};

use crate::ids::ActorId;

mod config;
pub mod notices;
pub mod roster;
#[cfg(test)]
mod tests;

pub use config::{LayerConfig, OverrideConfig, ScheduleConfig, SchedulesConfig, WindowConfig};

/// A validated set of schedules, each reachable by its unique name.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Schedules {
    schedules: Vec<Schedule>,
}

impl Schedules {
    /// The schedule named `name`, if there is one.
    pub fn get(&self, name: &str) -> Option<&Schedule> {
        self.schedules.iter().find(|schedule| schedule.name == name)
    }

    /// All schedules, in the order of the configuration.
    pub fn iter(&self) -> impl Iterator<Item = &Schedule> {
        self.schedules.iter()
    }

    /// How many schedules there are.
    pub fn len(&self) -> usize {
        self.schedules.len()
    }

    /// Whether there is no schedule at all.
    pub fn is_empty(&self) -> bool {
        self.schedules.is_empty()
    }
}

/// A validated, immutable on-call schedule: layers of rotations in one IANA
/// time zone, and overrides. See the [module docs](self) for the exact
/// semantics.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    name: String,
    time_zone: Tz,
    layers: Vec<Layer>,
    overrides: Vec<Override>,
}

/// One rotation of a schedule.
#[derive(Debug, Clone, PartialEq)]
pub struct Layer {
    name: String,
    participants: Vec<ActorId>,
    shift: Shift,
    handoff: NaiveTime,
    start: NaiveDate,
    active: Option<Window>,
}

/// The length of one shift of a rotation, on the local wall clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Shift {
    /// This many calendar days: the handoff stays at the same local time.
    Days(u32),
    /// This many hours of local wall-clock time.
    Hours(u32),
}

impl Shift {
    /// The longest shift in days.
    pub const DAYS_MAX: u32 = 28;
    /// The longest shift in hours (as long as [`Shift::DAYS_MAX`]).
    pub const HOURS_MAX: u32 = 24 * Shift::DAYS_MAX;

    /// The wall-clock length of the shift.
    fn wall_clock(self) -> TimeDelta {
        match self {
            Shift::Days(n) => TimeDelta::days(i64::from(n)),
            Shift::Hours(n) => TimeDelta::hours(i64::from(n)),
        }
    }
}

impl fmt::Display for Shift {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Shift::Days(n) => write!(f, "{n}d"),
            Shift::Hours(n) => write!(f, "{n}h"),
        }
    }
}

/// The daily local windows in which a layer has somebody on call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Window {
    from: NaiveTime,
    to: NaiveTime,
    /// Indexed by `Weekday::num_days_from_monday`.
    days: [bool; 7],
}

impl Window {
    /// The local time at which each window opens.
    pub fn from(&self) -> NaiveTime {
        self.from
    }

    /// The local time at which each window closes: on the same date when it
    /// is after [`Window::from`], otherwise on the next date.
    pub fn to(&self) -> NaiveTime {
        self.to
    }

    /// Whether a window opens on local dates of weekday `day`.
    pub fn opens_on(&self, day: Weekday) -> bool {
        self.days[day.num_days_from_monday() as usize]
    }

    /// The local date-times at which the window of local date `date` opens
    /// and closes, if a window opens on that date.
    fn local_bounds(&self, date: NaiveDate) -> Option<(NaiveDateTime, NaiveDateTime)> {
        if !self.opens_on(date.weekday()) {
            return None;
        }
        let close_date = if self.to > self.from { date } else { date.succ_opt()? };
        Some((date.and_time(self.from), close_date.and_time(self.to)))
    }

    /// Whether the layer is inside a window at `at`, and a span around `at`
    /// during which that does not change.
    fn piece(&self, tz: Tz, at: DateTime<Utc>) -> (bool, DateTime<Utc>, DateTime<Utc>) {
        let date = local(tz, at).date();
        let day = |offset: i64| date.checked_add_signed(TimeDelta::days(offset)).expect("inside the supported range");
        // Every window of a date d lies within [d 00:00, d+2 00:00) on the
        // local clock; windows of dates outside [date-9, date+9] therefore
        // cannot intersect the initial [from, until), which contains `at`.
        let mut from = resolve(tz, day(-7).and_time(NaiveTime::MIN));
        let mut until = resolve(tz, day(8).and_time(NaiveTime::MIN));
        for offset in -9..=9 {
            let Some((open, close)) = self.local_bounds(day(offset)) else { continue };
            let (open, close) = (resolve(tz, open), resolve(tz, close));
            if open == close {
                continue;
            }
            if open <= at && at < close {
                return (true, open, close);
            }
            if close <= at {
                from = max(from, close);
            } else {
                until = min(until, open);
            }
        }
        (false, from, until)
    }
}

/// An override: `who` is on call during `[from, to)`, whatever the layers say.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Override {
    who: ActorId,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    origin: Origin,
}

/// Where an override comes from: the configuration file, or an event of the
/// schedule's stream (see [`roster`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Origin {
    /// `[[schedules.overrides]]` in the configuration file.
    Config,
    /// `oncall.override_added.v1` with this number (`O<n>`).
    Added(u32),
    /// The taken swap with this number (`S<n>`): its taker covers the
    /// requester's shift.
    Swap(u32),
}

impl Override {
    /// Who is on call during the override.
    pub fn who(&self) -> &ActorId {
        &self.who
    }

    /// The first instant of the override.
    pub fn from(&self) -> DateTime<Utc> {
        self.from
    }

    /// The first instant after the override.
    pub fn to(&self) -> DateTime<Utc> {
        self.to
    }

    /// Where the override comes from.
    pub fn origin(&self) -> Origin {
        self.origin
    }
}

/// What decided who is on call.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Source {
    /// The override at this index of the schedule's overrides, counted from
    /// 0 in the order of the configuration.
    Override(usize),
    /// The override `O<n>` added by an event of the schedule's stream.
    Added(u32),
    /// The taken swap `S<n>`: its taker covers the requester's shift.
    Swap(u32),
    /// The layer with this name.
    Layer(String),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Override(index) => write!(f, "overrides[{index}]"),
            Source::Added(n) => write!(f, "override O{n}"),
            Source::Swap(n) => write!(f, "swap S{n}"),
            Source::Layer(name) => write!(f, "layer {name}"),
        }
    }
}

/// Who is on call at an instant, why, and for how long the same answer holds.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OnCall {
    /// The person on call.
    pub who: ActorId,
    /// The override or layer that decided it.
    pub source: Source,
    /// Since when this answer (same `who`, same `source`) has held, at least:
    /// never later than the start of the deciding shift, window or override.
    pub from: DateTime<Utc>,
    /// Until when this answer holds (exclusive): the answer is the same at
    /// every instant of `[from, until)` and `until` is the next instant at
    /// which it may change (a handoff, a window or an override that begins
    /// or ends). Always after the instant asked about.
    pub until: DateTime<Utc>,
}

/// One piece of a flattened on-call timeline: `who` (nobody when `None`) is
/// on call during `[from, until)`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Span {
    /// The person on call, or `None` when nobody is.
    pub who: Option<ActorId>,
    /// The first instant of the span.
    pub from: DateTime<Utc>,
    /// The first instant after the span.
    pub until: DateTime<Utc>,
}

/// The state of one source (override or layer) around an instant: who it
/// puts on call (nobody: transparent) and a span, containing the instant,
/// during which that does not change.
struct Piece<'a> {
    who: Option<&'a ActorId>,
    from: DateTime<Utc>,
    until: DateTime<Utc>,
}

/// The answer of the whole schedule around an instant.
struct Decision<'a> {
    who: Option<(&'a ActorId, Source)>,
    from: DateTime<Utc>,
    until: DateTime<Utc>,
}

impl Schedule {
    /// The first instant a schedule answers for: 1900-01-01T00:00:00Z.
    pub const EARLIEST: DateTime<Utc> = instant(-2_208_988_800);
    /// The first instant after those a schedule answers for:
    /// 2200-01-01T00:00:00Z.
    pub const LATEST: DateTime<Utc> = instant(7_258_118_400);
    /// The most layers a schedule may have.
    pub const LAYERS_MAX: usize = 16;
    /// The most overrides a schedule may have.
    pub const OVERRIDES_MAX: usize = 1024;

    /// The schedule's unique name, such as `payments-primary`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The IANA time zone in which all layers rotate.
    pub fn time_zone(&self) -> Tz {
        self.time_zone
    }

    /// The layers, lowest precedence first.
    pub fn layers(&self) -> &[Layer] {
        &self.layers
    }

    /// The overrides, lowest precedence first.
    pub fn overrides(&self) -> &[Override] {
        &self.overrides
    }

    /// Who is on call at `at`, or `None` when nobody is (no override and no
    /// layer has somebody then, or `at` is outside
    /// [`Schedule::EARLIEST`]..[`Schedule::LATEST`]).
    pub fn on_call_at(&self, at: DateTime<Utc>) -> Option<OnCall> {
        let decision = self.decide(at);
        decision.who.map(|(who, source)| OnCall {
            who: who.clone(),
            source,
            from: decision.from,
            until: decision.until,
        })
    }

    /// The schedule with `extra` overrides after the configured ones (so
    /// they win over them and over every layer; among themselves the later
    /// one wins). This is how the events of a schedule's stream apply: see
    /// [`roster::Roster::effective`].
    pub fn with_overrides(&self, extra: impl IntoIterator<Item = Override>) -> Schedule {
        let mut schedule = self.clone();
        schedule.overrides.extend(extra);
        schedule
    }

    /// The holes of `[from, to)`: the spans of [`Schedule::coverage`] in
    /// which nobody is on call, in order. Empty when somebody is on call
    /// throughout. Like `coverage`, callers bound the range.
    pub fn holes(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<Span> {
        self.coverage(from, to).into_iter().filter(|span| span.who.is_none()).collect()
    }

    /// The flattened timeline of `[from, to)`: consecutive spans, the first
    /// starting at `from` and the last ending at `to`, each `until` equal to
    /// the next `from`, and two adjacent spans never with the same `who`.
    /// Empty when `to <= from`.
    ///
    /// The work and the result grow with the number of handoffs in the
    /// range; callers bound the range.
    pub fn coverage(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<Span> {
        let mut spans: Vec<Span> = Vec::new();
        let mut at = from;
        while at < to {
            let decision = self.decide(at);
            let until = min(decision.until, to);
            let who = decision.who.map(|(who, _)| who.clone());
            match spans.last_mut() {
                Some(last) if last.who == who => last.until = until,
                _ => spans.push(Span { who, from: at, until }),
            }
            at = until;
        }
        spans
    }

    fn decide(&self, at: DateTime<Utc>) -> Decision<'_> {
        if at < Self::EARLIEST {
            return Decision { who: None, from: DateTime::<Utc>::MIN_UTC, until: Self::EARLIEST };
        }
        if at >= Self::LATEST {
            return Decision { who: None, from: Self::LATEST, until: DateTime::<Utc>::MAX_UTC };
        }
        let (mut from, mut until) = (Self::EARLIEST, Self::LATEST);
        for (index, item) in self.overrides.iter().enumerate().rev() {
            if at < item.from {
                until = min(until, item.from);
            } else if at >= item.to {
                from = max(from, item.to);
            } else {
                from = max(from, item.from);
                until = min(until, item.to);
                let source = match item.origin {
                    Origin::Config => Source::Override(index),
                    Origin::Added(n) => Source::Added(n),
                    Origin::Swap(n) => Source::Swap(n),
                };
                return Decision { who: Some((&item.who, source)), from, until };
            }
        }
        for layer in self.layers.iter().rev() {
            let piece = layer.piece(self.time_zone, at);
            from = max(from, piece.from);
            until = min(until, piece.until);
            if let Some(who) = piece.who {
                return Decision { who: Some((who, Source::Layer(layer.name.clone()))), from, until };
            }
        }
        Decision { who: None, from, until }
    }
}

impl Layer {
    /// The most participants a layer may have.
    pub const PARTICIPANTS_MAX: usize = 256;

    /// The layer's name, unique within its schedule.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The people who take turns, in order; never empty, no duplicates.
    pub fn participants(&self) -> &[ActorId] {
        &self.participants
    }

    /// The length of each shift.
    pub fn shift(&self) -> Shift {
        self.shift
    }

    /// The local time of the handoff on the first shift's date.
    pub fn handoff(&self) -> NaiveTime {
        self.handoff
    }

    /// The local date on which `participants[0]`'s shift 0 starts.
    pub fn start(&self) -> NaiveDate {
        self.start
    }

    /// The daily windows outside which this layer has nobody, if any.
    pub fn active(&self) -> Option<&Window> {
        self.active.as_ref()
    }

    /// The instant at which shift `k` starts, saturated at the limits of
    /// the date types (never reached for instants in the supported range).
    fn boundary(&self, tz: Tz, k: i64) -> DateTime<Utc> {
        let epoch = self.start.and_time(self.handoff);
        let local = self
            .shift
            .wall_clock()
            .checked_mul(i32::try_from(k).unwrap_or(if k < 0 { i32::MIN } else { i32::MAX }))
            .and_then(|offset| epoch.checked_add_signed(offset));
        match local {
            Some(local) => resolve(tz, local),
            None if k < 0 => DateTime::<Utc>::MIN_UTC,
            None => DateTime::<Utc>::MAX_UTC,
        }
    }

    /// The shift containing `at`: its number and its span.
    fn shift_at(&self, tz: Tz, at: DateTime<Utc>) -> (i64, DateTime<Utc>, DateTime<Utc>) {
        let epoch = self.start.and_time(self.handoff);
        let elapsed = (local(tz, at) - epoch).num_seconds();
        let mut k = elapsed.div_euclid(self.shift.wall_clock().num_seconds());
        // The estimate is at most a few shifts off (only around DST changes);
        // boundaries never decrease, so walking settles on the last shift
        // that starts at or before `at`.
        let mut from = self.boundary(tz, k);
        while from > at {
            k -= 1;
            from = self.boundary(tz, k);
        }
        let mut until = self.boundary(tz, k + 1);
        while until <= at {
            k += 1;
            from = until;
            until = self.boundary(tz, k + 1);
        }
        (k, from, until)
    }

    fn piece(&self, tz: Tz, at: DateTime<Utc>) -> Piece<'_> {
        let (mut from, mut until) = (DateTime::<Utc>::MIN_UTC, DateTime::<Utc>::MAX_UTC);
        if let Some(window) = &self.active {
            let (inside, window_from, window_until) = window.piece(tz, at);
            if !inside {
                return Piece { who: None, from: window_from, until: window_until };
            }
            (from, until) = (window_from, window_until);
        }
        let (k, shift_from, shift_until) = self.shift_at(tz, at);
        let len = i64::try_from(self.participants.len()).expect("at most PARTICIPANTS_MAX participants");
        let index = usize::try_from(k.rem_euclid(len)).expect("a remainder is never negative");
        Piece { who: Some(&self.participants[index]), from: max(from, shift_from), until: min(until, shift_until) }
    }
}

/// The instant `secs` seconds after the Unix epoch, for constants.
const fn instant(secs: i64) -> DateTime<Utc> {
    match DateTime::from_timestamp(secs, 0) {
        Some(instant) => instant,
        None => panic!("instant out of range"),
    }
}

/// The local wall-clock date-time of `at` in `tz`.
fn local(tz: Tz, at: DateTime<Utc>) -> NaiveDateTime {
    at.with_timezone(&tz).naive_local()
}

/// The instant at which the local clock of `tz` shows `local`: the instant
/// itself when it exists once, the earlier one when it exists twice, and
/// the first instant after the gap when it does not exist.
pub(crate) fn resolve(tz: Tz, local: NaiveDateTime) -> DateTime<Utc> {
    match tz.from_local_datetime(&local) {
        LocalResult::Single(at) => at.to_utc(),
        LocalResult::Ambiguous(first, second) => min(first, second).to_utc(),
        LocalResult::None => match GapInfo::new(&local, &tz).and_then(|gap| gap.end) {
            Some(end) => end.to_utc(),
            // Not reachable with chrono-tz's data (a gap always has an end),
            // kept total: read `local` with the offset in effect a day earlier,
            // an instant after the gap.
            None => {
                let before = tz.offset_from_utc_datetime(&(local - TimeDelta::days(1)));
                (local - before.fix()).and_utc()
            }
        },
    }
}
