//! The `[notifier]` table of the configuration file as written, and its
//! validation into [`NotifierConfig`].

use std::collections::BTreeSet;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::ConfigError;
use crate::ids::Severity;

use super::event::CHANNEL_CHARS_MAX;

#[cfg(test)]
mod tests;

/// The most channels `executive_channels` or `company_wide_channels` may
/// list.
pub const CHANNELS_MAX: usize = 16;
/// The longest coalescing interval of status feeds, in milliseconds (one
/// minute): a feed slower than that is no longer live.
pub const FEED_INTERVAL_MS_MAX: u64 = 60_000;
/// The longest pause between two follow-ups of one incident through one
/// channel, in milliseconds (one hour).
pub const FOLLOW_UP_INTERVAL_MS_MAX: u64 = 3_600_000;

/// The `[notifier]` table, before validation. Every key is optional.
///
/// ```toml
/// [notifier]
/// severities = ["sev1"]
/// executive_channels = ["exec-slack"]
/// company_wide_channels = ["all-hands"]
/// company_wide_severities = ["sev1", "sev2"]
/// follow_up_interval_ms = 60000
/// feed_interval_ms = 1000
/// cadence_severities = ["sev1"]
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifierSectionConfig {
    /// The severities whose incidents are announced to executives, such as
    /// `["sev1"]` (the default). Exactly these notify: the list is not a
    /// threshold.
    #[serde(default = "default_severities")]
    pub severities: Vec<String>,
    /// The outbound channels (names of `[[channels]]`, checked by the binary
    /// that knows them) of the executive-facing group. Empty (the default):
    /// executives are told nothing and only read the status feed.
    #[serde(default)]
    pub executive_channels: Vec<String>,
    /// The outbound channels of the company-wide group, where multi-customer
    /// incidents of a notifying severity are also posted. Empty (the
    /// default): no company-wide posts.
    #[serde(default)]
    pub company_wide_channels: Vec<String>,
    /// The severities at which a multi-customer incident is posted
    /// company-wide (then followed there until its all-clear), such as
    /// `["sev1", "sev2"]` (the default). Exactly these: not a threshold.
    #[serde(default = "default_company_wide_severities")]
    pub company_wide_severities: Vec<String>,
    /// The least time between two posts about one incident through one
    /// channel: changes in between are coalesced into one follow-up
    /// carrying the latest state. 0 to [`FOLLOW_UP_INTERVAL_MS_MAX`];
    /// default 60000 (a minute).
    #[serde(default = "default_follow_up_interval_ms")]
    pub follow_up_interval_ms: u64,
    /// The coalescing interval of status feeds: a subscriber gets at most one
    /// item per incident per interval. 1 to [`FEED_INTERVAL_MS_MAX`];
    /// default 1000.
    #[serde(default = "default_feed_interval_ms")]
    pub feed_interval_ms: u64,
    /// The severities whose open incidents must get an executive update at
    /// least every `[slo.<sev>].update_cadence_minutes`. Default `["sev1"]`;
    /// empty: no update cadence is enforced.
    #[serde(default = "default_severities")]
    pub cadence_severities: Vec<String>,
}

fn default_severities() -> Vec<String> {
    vec!["sev1".into()]
}

fn default_feed_interval_ms() -> u64 {
    1_000
}

fn default_company_wide_severities() -> Vec<String> {
    vec!["sev1".into(), "sev2".into()]
}

fn default_follow_up_interval_ms() -> u64 {
    60_000
}

impl Default for NotifierSectionConfig {
    /// The configuration of a file without a `[notifier]` table.
    fn default() -> NotifierSectionConfig {
        NotifierSectionConfig {
            severities: default_severities(),
            executive_channels: Vec::new(),
            company_wide_channels: Vec::new(),
            company_wide_severities: default_company_wide_severities(),
            follow_up_interval_ms: default_follow_up_interval_ms(),
            feed_interval_ms: default_feed_interval_ms(),
            cadence_severities: default_severities(),
        }
    }
}

/// The validated notifier configuration.
///
/// Guarantees: at least one notifying severity; severities and channels
/// listed once each; channel names of 1 to [`CHANNEL_CHARS_MAX`] characters
/// without whitespace or control characters, at most [`CHANNELS_MAX`] per
/// list; a feed interval between 1 ms and [`FEED_INTERVAL_MS_MAX`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifierConfig {
    severities: BTreeSet<Severity>,
    executive_channels: Vec<String>,
    company_wide_channels: Vec<String>,
    company_wide_severities: BTreeSet<Severity>,
    follow_up_interval: chrono::TimeDelta,
    feed_interval: Duration,
    cadence_severities: BTreeSet<Severity>,
    people_channels: Vec<String>,
}

impl NotifierConfig {
    /// The same configuration reaching people (the commander, the
    /// communications lead) through `channels`: the channels pages go
    /// through (`[paging].channels`), set by the binary.
    pub fn with_people_channels(mut self, channels: Vec<String>) -> NotifierConfig {
        self.people_channels = channels;
        self
    }
    /// The channels that reach one person (the recipient of the message):
    /// update-cadence reminders go through them.
    pub fn people_channels(&self) -> &[String] {
        &self.people_channels
    }
    /// Whether reaching `severity` announces an incident to executives.
    pub fn notifies(&self, severity: Severity) -> bool {
        self.severities.contains(&severity)
    }
    /// The severities that notify executives.
    pub fn severities(&self) -> &BTreeSet<Severity> {
        &self.severities
    }
    /// The executive-facing channels, in the order configured.
    pub fn executive_channels(&self) -> &[String] {
        &self.executive_channels
    }
    /// The company-wide channels, in the order configured.
    pub fn company_wide_channels(&self) -> &[String] {
        &self.company_wide_channels
    }
    /// Whether a multi-customer incident of `severity` is posted
    /// company-wide.
    pub fn company_wide(&self, severity: Severity) -> bool {
        self.company_wide_severities.contains(&severity)
    }
    /// The severities posted company-wide when multi-customer.
    pub fn company_wide_severities(&self) -> &BTreeSet<Severity> {
        &self.company_wide_severities
    }
    /// The least time between two posts about one incident through one
    /// channel.
    pub fn follow_up_interval(&self) -> chrono::TimeDelta {
        self.follow_up_interval
    }
    /// The coalescing interval of status feeds, per incident per subscriber.
    pub fn feed_interval(&self) -> Duration {
        self.feed_interval
    }
    /// Whether open incidents of `severity` must get executive updates on
    /// the update cadence.
    pub fn has_cadence(&self, severity: Severity) -> bool {
        self.cadence_severities.contains(&severity)
    }
    /// The severities with an update cadence.
    pub fn cadence_severities(&self) -> &BTreeSet<Severity> {
        &self.cadence_severities
    }
}

impl NotifierSectionConfig {
    /// Validates the table. `key_prefix` is the key of the table itself,
    /// normally `notifier`, so errors name `notifier.severities[1]`.
    ///
    /// Rejects: no notifying severity; an unknown or duplicated severity (in
    /// either list); an empty, malformed, too long or duplicated channel
    /// name; more than [`CHANNELS_MAX`] channels in a list; a feed interval of
    /// 0 or above [`FEED_INTERVAL_MS_MAX`].
    pub fn validate(&self, key_prefix: &str) -> Result<NotifierConfig, ConfigError> {
        let key = |rest: &str| if key_prefix.is_empty() { rest.to_owned() } else { format!("{key_prefix}.{rest}") };

        let severities = severities_of(&key("severities"), &self.severities)?;
        if severities.is_empty() {
            return Err(ConfigError::new(key("severities"), "must list at least one severity"));
        }
        let cadence_severities = severities_of(&key("cadence_severities"), &self.cadence_severities)?;
        let company_wide_severities = severities_of(&key("company_wide_severities"), &self.company_wide_severities)?;
        if self.follow_up_interval_ms > FOLLOW_UP_INTERVAL_MS_MAX {
            return Err(ConfigError::new(
                key("follow_up_interval_ms"),
                format!(
                    "{} is more than the limit of {FOLLOW_UP_INTERVAL_MS_MAX} milliseconds",
                    self.follow_up_interval_ms
                ),
            ));
        }
        let follow_up_interval = chrono::TimeDelta::milliseconds(
            i64::try_from(self.follow_up_interval_ms).expect("bounded by FOLLOW_UP_INTERVAL_MS_MAX"),
        );
        let executive_channels = channels(&key("executive_channels"), &self.executive_channels)?;
        let company_wide_channels = channels(&key("company_wide_channels"), &self.company_wide_channels)?;

        let interval_key = key("feed_interval_ms");
        if self.feed_interval_ms == 0 {
            return Err(ConfigError::new(interval_key, "must be at least 1 millisecond"));
        }
        if self.feed_interval_ms > FEED_INTERVAL_MS_MAX {
            return Err(ConfigError::new(
                interval_key,
                format!("{} is more than the limit of {FEED_INTERVAL_MS_MAX} milliseconds", self.feed_interval_ms),
            ));
        }

        Ok(NotifierConfig {
            severities,
            executive_channels,
            company_wide_channels,
            company_wide_severities,
            follow_up_interval,
            feed_interval: Duration::from_millis(self.feed_interval_ms),
            cadence_severities,
            people_channels: Vec::new(),
        })
    }
}

/// The set of severities listed at `key`, each once.
fn severities_of(key: &str, raw: &[String]) -> Result<BTreeSet<Severity>, ConfigError> {
    let mut set = BTreeSet::new();
    for (i, value) in raw.iter().enumerate() {
        let key = format!("{key}[{i}]");
        let level = Severity::from_str(value)
            .map_err(|_| ConfigError::new(&key, format!("{value:?} is not a severity; expected sev1 to sev4")))?;
        if !set.insert(level) {
            return Err(ConfigError::new(key, format!("{value:?} is listed twice")));
        }
    }
    Ok(set)
}

/// The channel names listed at `key`, each once, in order.
fn channels(key: &str, raw: &[String]) -> Result<Vec<String>, ConfigError> {
    if raw.len() > CHANNELS_MAX {
        return Err(ConfigError::new(key, format!("{} channels is more than the limit of {CHANNELS_MAX}", raw.len())));
    }
    let mut names: Vec<String> = Vec::with_capacity(raw.len());
    for (i, name) in raw.iter().enumerate() {
        let key = format!("{key}[{i}]");
        if name.is_empty() {
            return Err(ConfigError::new(key, "must not be empty"));
        }
        if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(ConfigError::new(key, format!("{name:?} must not contain whitespace or control characters")));
        }
        if name.chars().count() > CHANNEL_CHARS_MAX {
            return Err(ConfigError::new(key, format!("{name:?} is longer than {CHANNEL_CHARS_MAX} characters")));
        }
        if names.contains(name) {
            return Err(ConfigError::new(key, format!("{name:?} is listed twice")));
        }
        names.push(name.clone());
    }
    Ok(names)
}
