//! A configuration's policy, as one unit: the sections of the configuration
//! file that decide what happens to an incident (the service catalog,
//! severity rules, schedules, escalation policies, paging, SLOs, customers,
//! and the names of the channels and who uses them), parsed and validated
//! the same way wherever they are read, so that a candidate file can be
//! checked, linted and replayed against history before it is applied.
//!
//! - here: [`Sections`] (the sections as written; every other key of the
//!   file is ignored, it is `klaxond`'s), [`Sections::validate`] into a
//!   [`Policy`], and [`parse`] for a candidate file's text.
//! - `replay`: [`Replay`], the recorded reports and responses of a window
//!   run again through a candidate policy with the pure deciders on a
//!   simulated clock, and the differences from what happened ([`Outcome`]).
//! - `lint`: [`lint`], what a valid configuration still gets wrong
//!   (shadowed rules, unused policies, schedule holes, severities that page
//!   nobody, unused channels, settings that never apply), each [`Finding`]
//!   named by its key path.

use serde::Deserialize;

use crate::ConfigError;
use crate::catalog::{ServiceCatalog, ServiceCatalogConfig};
use crate::notifier::NotifierSectionConfig;
use crate::oncall::{Schedules, SchedulesConfig};
use crate::paging::{
    CustomerConfig, EscalationPolicyConfig, PagingConfig, PagingFileConfig, PagingSectionConfig, SloTables,
};
use crate::severity::{Rules, SeverityConfig};

mod lint;
mod replay;
#[cfg(test)]
mod tests;

pub use lint::{DAYS_MAX, Finding, FindingKind, cannot_acknowledge, lint, people};
pub use replay::{
    Breach, Escalated, INCIDENTS_MAX, IncidentDiff, Outcome, PAGE_TOLERANCE, PageSeen, Replay, Summary, Window,
};

/// The largest candidate configuration accepted, in bytes.
pub const CONFIG_BYTES_MAX: usize = 1024 * 1024;

/// One `[[channels]]` table as the policy sees it: its name (the channel's
/// kind, address and secrets are the binary's).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ChannelName {
    /// The name pages and posts are delivered through.
    pub name: String,
}

/// The policy sections of the configuration file, as written. Keys of the
/// file that are not policy (listen addresses, TLS, limits, …) are ignored
/// here; `klaxond` refuses unknown keys when it reads the whole file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Sections {
    /// `[[services]]`.
    pub services: ServiceCatalogConfig,
    /// `[severity]`; without it every report is Sev4 by default.
    pub severity: Option<SeverityConfig>,
    /// `[[schedules]]`.
    pub schedules: SchedulesConfig,
    /// `[paging]`; without it nobody is paged.
    pub paging: Option<PagingSectionConfig>,
    /// `[slo.<severity>]` and `[slo.tier.<name>]`.
    pub slo: SloTables,
    /// `[[customers]]`.
    pub customers: Vec<CustomerConfig>,
    /// `[[escalation_policies]]`.
    pub escalation_policies: Vec<EscalationPolicyConfig>,
    /// `[[channels]]`, by name.
    pub channels: Vec<ChannelName>,
    /// `[notifier]`, for the channels it posts to.
    pub notifier: Option<NotifierSectionConfig>,
    /// `[[reports]]`, for the channels the cadenced trend reports post to
    /// (validated by `klaxond` with its channels, see
    /// [`validate_reports`](crate::review::reports::validate_reports)).
    pub reports: Vec<crate::review::reports::ReportConfig>,
    /// `[shift_notices]`, for the channels shift notices go through
    /// (validated by `klaxond` with its channels and `[paging] channels`).
    pub shift_notices: crate::oncall::notices::NoticesSectionConfig,
}

/// A validated policy: what the severity evaluator and the pager decide
/// with.
#[derive(Debug, Clone)]
pub struct Policy {
    /// The service catalog.
    pub catalog: ServiceCatalog,
    /// The severity rules.
    pub rules: Rules,
    /// The on-call schedules.
    pub schedules: Schedules,
    /// Paging, when configured.
    pub paging: Option<PagingConfig>,
}

/// Parses the text of a configuration file and validates its policy
/// sections. A syntax or type error is reported at `config` with the
/// parser's words (which name the key and the line); a validation error
/// names its key path.
pub fn parse(text: &str) -> Result<(Sections, Policy), ConfigError> {
    if text.len() > CONFIG_BYTES_MAX {
        return Err(ConfigError::new(
            "config",
            format!("{} bytes is more than the limit of {CONFIG_BYTES_MAX}", text.len()),
        ));
    }
    let sections: Sections =
        toml::from_str(text).map_err(|e| ConfigError::new("config", e.to_string().trim_end().replace('\n', " ")))?;
    let policy = sections.validate()?;
    Ok((sections, policy))
}

impl Sections {
    /// Validates every policy section, in the order `klaxond` does: the
    /// catalog, the rules (and the services they name), the schedules, then
    /// paging (against the schedules and the catalog, and its channels
    /// against `[[channels]]`). The first problem is returned, named by its
    /// key path.
    pub fn validate(&self) -> Result<Policy, ConfigError> {
        let catalog = self.services.validate("services")?;
        let rules = match &self.severity {
            Some(severity) => severity.validate("severity")?,
            None => SeverityConfig { default: "sev4".into(), default_reason: "No rule matched".into(), rules: vec![] }
                .validate("severity")?,
        };
        rules.check_services(&catalog, "severity")?;
        let schedules = self.schedules.validate("schedules")?;
        let paging = match &self.paging {
            None if !self.escalation_policies.is_empty() || !self.slo.is_empty() || !self.customers.is_empty() => {
                return Err(ConfigError::new("paging", "escalation_policies, slo and customers need a [paging] table"));
            }
            None => None,
            Some(section) => {
                let file = PagingFileConfig {
                    paging: section.clone(),
                    slo: self.slo.clone(),
                    escalation_policies: self.escalation_policies.clone(),
                    customers: self.customers.clone(),
                };
                let paging = file.validate("", &schedules)?;
                paging.check_catalog("services", &catalog)?;
                Some(paging)
            }
        };
        Ok(Policy { catalog, rules, schedules, paging })
    }

    /// Checks that every channel `[paging]` and `[notifier]` name is one of
    /// `[[channels]]`, naming the first that is not.
    pub fn check_channels(&self) -> Result<(), ConfigError> {
        for (key, name) in self.channel_uses() {
            if !self.channels.iter().any(|c| c.name == name) {
                return Err(ConfigError::new(key, format!("no channel named {name:?} in [[channels]]")));
            }
        }
        Ok(())
    }

    /// Every use of a channel by name, with its key path: `[paging]
    /// channels` (pages and reminders), `[notifier] executive_channels` and
    /// `company_wide_channels`.
    pub fn channel_uses(&self) -> Vec<(String, String)> {
        let mut uses = Vec::new();
        if let Some(paging) = &self.paging {
            uses.extend(paging.channels.iter().enumerate().map(|(i, c)| (format!("paging.channels[{i}]"), c.clone())));
        }
        if let Some(notifier) = &self.notifier {
            for (key, names) in [
                ("notifier.executive_channels", &notifier.executive_channels),
                ("notifier.company_wide_channels", &notifier.company_wide_channels),
            ] {
                uses.extend(names.iter().enumerate().map(|(i, c)| (format!("{key}[{i}]"), c.clone())));
            }
        }
        uses
    }

    /// Every channel a `[[reports]]` table posts to, with its key path
    /// (`reports[i].channels[j]`). Kept apart from [`Self::channel_uses`]:
    /// `klaxond` checks these names when it validates the reports.
    pub fn report_channel_uses(&self) -> Vec<(String, String)> {
        self.reports
            .iter()
            .enumerate()
            .flat_map(|(i, report)| {
                report.channels.iter().enumerate().map(move |(j, c)| (format!("reports[{i}].channels[{j}]"), c.clone()))
            })
            .collect()
    }

    /// Every `(key, channel)` that `[shift_notices]` names itself (its
    /// default, `[paging] channels`, is already a use).
    pub fn shift_notice_channel_uses(&self) -> Vec<(String, String)> {
        let n = &self.shift_notices;
        let listed = n.channels.iter().flatten().enumerate();
        let mut uses: Vec<(String, String)> =
            listed.map(|(i, c)| (format!("shift_notices.channels[{i}]"), c.clone())).collect();
        if let Some(channel) = n.weekly.as_ref().and_then(|w| w.channel.clone()) {
            uses.push(("shift_notices.weekly.channel".to_owned(), channel));
        }
        uses
    }
}
