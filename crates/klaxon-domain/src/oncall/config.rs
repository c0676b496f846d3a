//! The configuration of schedules as written in the TOML file (raw strings),
//! and its validation into [`Schedules`] and [`Schedule`].

use chrono::{DateTime, NaiveDate, NaiveTime, Weekday};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use super::{Layer, Origin, Override, Schedule, Schedules, Shift, Window};
use crate::ConfigError;
use crate::Error;
use crate::ids::ActorId;

/// The `[[schedules]]` of the configuration file, before validation.
///
/// Deserializes from the array itself (`schedules = [...]` or
/// `[[schedules]]` tables).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SchedulesConfig(pub Vec<ScheduleConfig>);

impl SchedulesConfig {
    /// The most schedules a configuration may have.
    pub const SCHEDULES_MAX: usize = 1024;

    /// Validates every schedule and checks that their names are unique.
    /// `key` is the key path of the array, normally `schedules`; errors name
    /// the offending key below it, such as `schedules[1].name`.
    pub fn validate(&self, key: &str) -> Result<Schedules, ConfigError> {
        if self.0.len() > Self::SCHEDULES_MAX {
            return Err(ConfigError::new(
                key,
                format!("at most {} schedules are allowed, found {}", Self::SCHEDULES_MAX, self.0.len()),
            ));
        }
        let mut schedules: Vec<Schedule> = Vec::with_capacity(self.0.len());
        for (index, config) in self.0.iter().enumerate() {
            let key = format!("{key}[{index}]");
            let schedule = config.validate(&key)?;
            if let Some(first) = schedules.iter().position(|other| other.name == schedule.name) {
                return Err(ConfigError::new(
                    format!("{key}.name"),
                    format!("{:?} is already the name of schedules[{first}]", schedule.name),
                ));
            }
            schedules.push(schedule);
        }
        Ok(Schedules { schedules })
    }
}

/// One `[[schedules]]` table, before validation.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleConfig {
    /// 1 to 64 characters of `[a-z0-9_-]`, unique among schedules.
    pub name: String,
    /// An IANA time zone name such as `Europe/Berlin` (case-sensitive).
    pub time_zone: String,
    /// The rotations, lowest precedence first; at least one.
    #[serde(default)]
    pub layers: Vec<LayerConfig>,
    /// The overrides, lowest precedence first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub overrides: Vec<OverrideConfig>,
}

impl ScheduleConfig {
    /// Validates the schedule; `key_prefix` is its key path (such as
    /// `schedules[0]`), which errors extend to name the offending key.
    pub fn validate(&self, key_prefix: &str) -> Result<Schedule, ConfigError> {
        let name = validate_name(&format!("{key_prefix}.name"), &self.name)?;
        let time_zone: Tz = self.time_zone.parse().map_err(|_| {
            ConfigError::new(format!("{key_prefix}.time_zone"), format!("unknown IANA time zone {:?}", self.time_zone))
        })?;
        let layers_key = format!("{key_prefix}.layers");
        if self.layers.is_empty() {
            return Err(ConfigError::new(layers_key, "must have at least one layer"));
        }
        if self.layers.len() > Schedule::LAYERS_MAX {
            return Err(ConfigError::new(
                layers_key,
                format!("at most {} layers are allowed, found {}", Schedule::LAYERS_MAX, self.layers.len()),
            ));
        }
        let mut layers: Vec<Layer> = Vec::with_capacity(self.layers.len());
        for (index, config) in self.layers.iter().enumerate() {
            let key = format!("{layers_key}[{index}]");
            let layer = config.validate(&key)?;
            if let Some(first) = layers.iter().position(|other| other.name == layer.name) {
                return Err(ConfigError::new(
                    format!("{key}.name"),
                    format!("{:?} is already the name of layers[{first}]", layer.name),
                ));
            }
            layers.push(layer);
        }
        let overrides_key = format!("{key_prefix}.overrides");
        if self.overrides.len() > Schedule::OVERRIDES_MAX {
            return Err(ConfigError::new(
                overrides_key,
                format!("at most {} overrides are allowed, found {}", Schedule::OVERRIDES_MAX, self.overrides.len()),
            ));
        }
        let overrides = self
            .overrides
            .iter()
            .enumerate()
            .map(|(index, config)| config.validate(&format!("{overrides_key}[{index}]")))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Schedule { name, time_zone, layers, overrides })
    }
}

/// One `[[schedules.layers]]` table: a rotation, before validation.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LayerConfig {
    /// 1 to 64 characters of `[a-z0-9_-]`, unique within the schedule.
    pub name: String,
    /// Actor ids taking turns, in order: at least one, no duplicates.
    pub participants: Vec<String>,
    /// `"<n>d"` (calendar days, 1 to 28) or `"<n>h"` (wall-clock hours, 1
    /// to 672).
    pub shift: String,
    /// The local wall-clock time of the handoff, `HH:MM`.
    pub handoff: String,
    /// The local date of the first handoff, `YYYY-MM-DD`, from 1900-01-01
    /// to 2199-12-31: `participants[0]`'s shift starts then.
    pub start: String,
    /// Restricts the layer to daily local windows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active: Option<WindowConfig>,
}

impl LayerConfig {
    fn validate(&self, key: &str) -> Result<Layer, ConfigError> {
        let name = validate_name(&format!("{key}.name"), &self.name)?;
        let participants_key = format!("{key}.participants");
        if self.participants.is_empty() {
            return Err(ConfigError::new(participants_key, "must name at least one participant"));
        }
        if self.participants.len() > Layer::PARTICIPANTS_MAX {
            return Err(ConfigError::new(
                participants_key,
                format!(
                    "at most {} participants are allowed, found {}",
                    Layer::PARTICIPANTS_MAX,
                    self.participants.len()
                ),
            ));
        }
        let mut participants: Vec<ActorId> = Vec::with_capacity(self.participants.len());
        for (index, raw) in self.participants.iter().enumerate() {
            let actor = ActorId::new(raw.as_str())
                .map_err(|error| ConfigError::new(format!("{participants_key}[{index}]"), actor_problem(error)))?;
            if participants.contains(&actor) {
                return Err(ConfigError::new(participants_key, format!("{raw:?} appears twice")));
            }
            participants.push(actor);
        }
        Ok(Layer {
            name,
            participants,
            shift: parse_shift(&format!("{key}.shift"), &self.shift)?,
            handoff: parse_time(&format!("{key}.handoff"), &self.handoff)?,
            start: parse_start(&format!("{key}.start"), &self.start)?,
            active: self.active.as_ref().map(|active| active.validate(&format!("{key}.active"))).transpose()?,
        })
    }
}

/// The `active` table of a layer: daily local windows, before validation.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowConfig {
    /// The local time each window opens, `HH:MM`.
    pub from: String,
    /// The local time each window closes, `HH:MM`: the same day when after
    /// `from`, otherwise the next day (`"00:00"` to `"00:00"` is a whole day).
    pub to: String,
    /// The weekdays on which a window opens (`mon` .. `sun`); all when
    /// omitted, at least one when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub days: Option<Vec<String>>,
}

impl WindowConfig {
    fn validate(&self, key: &str) -> Result<Window, ConfigError> {
        let from = parse_time(&format!("{key}.from"), &self.from)?;
        let to = parse_time(&format!("{key}.to"), &self.to)?;
        let Some(raw_days) = &self.days else {
            return Ok(Window { from, to, days: [true; 7] });
        };
        let days_key = format!("{key}.days");
        if raw_days.is_empty() {
            return Err(ConfigError::new(days_key, "must name at least one day"));
        }
        let mut days = [false; 7];
        for (index, raw) in raw_days.iter().enumerate() {
            let day = parse_weekday(raw).ok_or_else(|| {
                ConfigError::new(
                    format!("{days_key}[{index}]"),
                    format!("{raw:?}: expected one of mon, tue, wed, thu, fri, sat, sun"),
                )
            })?;
            let seen = &mut days[day.num_days_from_monday() as usize];
            if *seen {
                return Err(ConfigError::new(days_key, format!("{raw:?} appears twice")));
            }
            *seen = true;
        }
        Ok(Window { from, to, days })
    }
}

/// One `[[schedules.overrides]]` table, before validation.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OverrideConfig {
    /// The actor id of the person on call instead.
    pub who: String,
    /// The first instant of the override, RFC 3339 with an offset.
    pub from: String,
    /// The first instant after the override, RFC 3339; after `from`.
    pub to: String,
}

impl OverrideConfig {
    fn validate(&self, key: &str) -> Result<Override, ConfigError> {
        let who = ActorId::new(self.who.as_str())
            .map_err(|error| ConfigError::new(format!("{key}.who"), actor_problem(error)))?;
        let from = parse_instant(&format!("{key}.from"), &self.from)?;
        let to = parse_instant(&format!("{key}.to"), &self.to)?;
        if to <= from {
            return Err(ConfigError::new(key, r#""to" must be after "from""#));
        }
        Ok(Override { who, from, to, origin: Origin::Config })
    }
}

/// The longest schedule or layer name, in characters.
const NAME_CHARS_MAX: usize = 64;

fn validate_name(key: &str, raw: &str) -> Result<String, ConfigError> {
    if raw.is_empty() {
        return Err(ConfigError::new(key, "must not be empty"));
    }
    let len = raw.chars().count();
    if len > NAME_CHARS_MAX {
        return Err(ConfigError::new(
            key,
            format!("{raw:?} is {len} characters long, at most {NAME_CHARS_MAX} are allowed"),
        ));
    }
    if let Some(c) = raw.chars().find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_' || *c == '-')) {
        return Err(ConfigError::new(key, format!("{raw:?}: character {c:?} is not allowed (use a-z 0-9 _ -)")));
    }
    Ok(raw.to_owned())
}

/// The problem with an actor id, without the field name that the key path
/// already gives.
fn actor_problem(error: Error) -> String {
    match error {
        Error::InvalidField { reason, .. } => reason,
        Error::TooLarge { len, max, .. } => format!("{len} characters long, at most {max} are allowed"),
        other => other.to_string(),
    }
}

fn parse_shift(key: &str, raw: &str) -> Result<Shift, ConfigError> {
    let bad_format = || ConfigError::new(key, format!(r#"{raw:?}: expected "<n>d" (calendar days) or "<n>h" (hours)"#));
    let (digits, days) = match (raw.strip_suffix('d'), raw.strip_suffix('h')) {
        (Some(digits), _) => (digits, true),
        (None, Some(digits)) => (digits, false),
        (None, None) => return Err(bad_format()),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad_format());
    }
    // Anything longer than the limits is rejected below; saturate instead
    // of failing on absurdly long digit strings.
    let n = digits.parse::<u32>().unwrap_or(u32::MAX);
    if n == 0 {
        return Err(ConfigError::new(key, format!("{raw:?} must be at least 1 day or 1 hour")));
    }
    let (shift, max, unit) =
        if days { (Shift::Days(n), Shift::DAYS_MAX, "days") } else { (Shift::Hours(n), Shift::HOURS_MAX, "hours") };
    if n > max {
        return Err(ConfigError::new(key, format!("{raw:?} must be at most {max} {unit}")));
    }
    Ok(shift)
}

fn two_digits(bytes: &[u8]) -> Option<u32> {
    match bytes {
        [tens @ b'0'..=b'9', ones @ b'0'..=b'9'] => Some(u32::from(tens - b'0') * 10 + u32::from(ones - b'0')),
        _ => None,
    }
}

pub(super) fn parse_time(key: &str, raw: &str) -> Result<NaiveTime, ConfigError> {
    let time = match raw.as_bytes() {
        [h @ .., b':', m0, m1] if h.len() == 2 => {
            two_digits(h).zip(two_digits(&[*m0, *m1])).and_then(|(h, m)| NaiveTime::from_hms_opt(h, m, 0))
        }
        _ => None,
    };
    time.ok_or_else(|| {
        ConfigError::new(key, format!(r#"{raw:?}: expected a local time "HH:MM" from "00:00" to "23:59""#))
    })
}

fn parse_start(key: &str, raw: &str) -> Result<NaiveDate, ConfigError> {
    let date = match raw.as_bytes() {
        [y0, y1, y2, y3, b'-', m0, m1, b'-', d0, d1] => {
            let year = two_digits(&[*y0, *y1]).zip(two_digits(&[*y2, *y3])).map(|(high, low)| high * 100 + low);
            match (year, two_digits(&[*m0, *m1]), two_digits(&[*d0, *d1])) {
                (Some(year), Some(month), Some(day)) => {
                    NaiveDate::from_ymd_opt(i32::try_from(year).expect("four digits"), month, day)
                }
                _ => None,
            }
        }
        _ => None,
    };
    let date = date.ok_or_else(|| ConfigError::new(key, format!(r#"{raw:?}: expected a local date "YYYY-MM-DD""#)))?;
    let earliest = NaiveDate::from_ymd_opt(1900, 1, 1).expect("a valid date");
    let latest = NaiveDate::from_ymd_opt(2199, 12, 31).expect("a valid date");
    if date < earliest || date > latest {
        return Err(ConfigError::new(key, format!("{raw:?} must be between {earliest} and {latest}")));
    }
    Ok(date)
}

pub(super) fn parse_weekday(raw: &str) -> Option<Weekday> {
    Some(match raw {
        "mon" => Weekday::Mon,
        "tue" => Weekday::Tue,
        "wed" => Weekday::Wed,
        "thu" => Weekday::Thu,
        "fri" => Weekday::Fri,
        "sat" => Weekday::Sat,
        "sun" => Weekday::Sun,
        _ => return None,
    })
}

fn parse_instant(key: &str, raw: &str) -> Result<DateTime<chrono::Utc>, ConfigError> {
    DateTime::parse_from_rfc3339(raw).map(|at| at.to_utc()).map_err(|_| {
        ConfigError::new(key, format!(r#"{raw:?}: expected an RFC 3339 instant such as "2026-11-26T09:00:00+01:00""#))
    })
}
