//! What a valid configuration can still get wrong. Every [`Finding`] names
//! the key path to change.
//!
//! - **Shadowed rule** (`severity.rules[i]`): an earlier rule matches every
//!   incident it matches ([`Rules::shadowed`](crate::severity::Rules::shadowed)
//!   says exactly when), so it never gives its severity.
//! - **Unreachable escalation level** (`escalation_policies[i].levels[j]`):
//!   every level of a policy no service names and that is not
//!   `[paging] default_policy` (only a manager pulling the team in by the
//!   policy's name reaches it). Within a used policy every level is reached
//!   when nobody acknowledges, since every level has a timeout.
//! - **Coverage hole** (`schedules[i]`): nobody on call in the schedule at
//!   some time of the next `days` days (the first hole is named, with the
//!   count of the others), by [`Schedule::coverage`](crate::oncall::Schedule::coverage).
//! - **Severity that pages nobody** (`severity.rules[i].severity` or
//!   `severity.default`): a rule or the default gives a severity that is not
//!   in `[paging] severities` (or there is no `[paging]`) although it is
//!   Sev1, or a less severe one pages.
//! - **Unused channel** (`channels[i]`): neither `[paging] channels` nor
//!   `[notifier] executive_channels` / `company_wide_channels` nor a
//!   `[[reports]]` table's `channels` nor `[shift_notices]` names it.
//! - **Setting that never applies**: `slo.<sev>.ack_minutes` or
//!   `slo.<sev>.ack_timeout_minutes` (the acknowledgement's SLO and its
//!   retry: paging resumes when an acknowledged incident is not mitigated
//!   in time) written for a severity that does not page, which never has a
//!   page to acknowledge; and a `[slo.tier.<name>]` table (`slo.tier.<name>`)
//!   whose tier no `[[customers]]` has, which never tightens anything.
//! - **Person who cannot acknowledge** (the key naming them first, such as
//!   `schedules[0].layers[0].participants[1]`): someone the configuration
//!   pages (a schedule's participant or override, an escalation level's
//!   person, `[paging] managers`) who is not a principal of a role that may
//!   acknowledge pages. Only a server knows its tokens: `lint` never finds
//!   these; the server's lint adds them ([`people`], [`cannot_acknowledge`]).

use std::collections::BTreeSet;

use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;

use super::{Policy, Sections};
use crate::ids::Severity;

/// The most days a coverage check looks ahead.
pub const DAYS_MAX: u32 = 366;

/// What kind of problem a [`Finding`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingKind {
    /// A rule an earlier rule always beats.
    ShadowedRule,
    /// An escalation level nothing reaches.
    UnreachableLevel,
    /// A time nobody is on call in a schedule.
    CoverageHole,
    /// A severity the rules give that pages nobody.
    SeverityPagesNobody,
    /// A channel nothing delivers through.
    UnusedChannel,
    /// A setting no incident can ever be subject to.
    SettingNeverApplies,
    /// Someone paged who cannot acknowledge a page.
    PersonCannotAcknowledge,
}

impl FindingKind {
    /// The kind as written in output, such as `shadowed_rule`.
    pub fn as_str(self) -> &'static str {
        match self {
            FindingKind::ShadowedRule => "shadowed_rule",
            FindingKind::UnreachableLevel => "unreachable_level",
            FindingKind::CoverageHole => "coverage_hole",
            FindingKind::SeverityPagesNobody => "severity_pages_nobody",
            FindingKind::UnusedChannel => "unused_channel",
            FindingKind::SettingNeverApplies => "setting_never_applies",
            FindingKind::PersonCannotAcknowledge => "person_cannot_acknowledge",
        }
    }

    /// The kind [`Self::as_str`] writes as `name` (how a client reads the
    /// kinds of a server's lint back).
    pub fn parse(name: &str) -> Option<FindingKind> {
        [
            FindingKind::ShadowedRule,
            FindingKind::UnreachableLevel,
            FindingKind::CoverageHole,
            FindingKind::SeverityPagesNobody,
            FindingKind::UnusedChannel,
            FindingKind::SettingNeverApplies,
            FindingKind::PersonCannotAcknowledge,
        ]
        .into_iter()
        .find(|kind| kind.as_str() == name)
    }

    /// Whether a finding of this kind is always a mistake (shadowed rules,
    /// severities that page nobody), which `klaxon policy lint` fails on
    /// without `--strict`; the others are sometimes intended.
    pub fn always_wrong(self) -> bool {
        matches!(self, FindingKind::ShadowedRule | FindingKind::SeverityPagesNobody)
    }
}

/// One problem, at one key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// What kind of problem.
    pub kind: FindingKind,
    /// The key path to change, such as `severity.rules[3]`.
    pub key: String,
    /// The problem in one sentence.
    pub message: String,
}

/// Everyone the configuration pages, once each, with the key that names
/// them first, in file order: schedules' participants and overrides,
/// escalation levels' persons, `[paging] managers`.
pub fn people(sections: &Sections) -> Vec<(String, String)> {
    let mut named: Vec<(String, String)> = Vec::new();
    let mut add = |key: String, name: &str| {
        if !named.iter().any(|(_, n)| n == name) {
            named.push((key, name.to_owned()));
        }
    };
    for (i, schedule) in sections.schedules.0.iter().enumerate() {
        for (j, layer) in schedule.layers.iter().enumerate() {
            for (k, who) in layer.participants.iter().enumerate() {
                add(format!("schedules[{i}].layers[{j}].participants[{k}]"), who);
            }
        }
        for (k, o) in schedule.overrides.iter().enumerate() {
            add(format!("schedules[{i}].overrides[{k}].who"), &o.who);
        }
    }
    for (i, policy) in sections.escalation_policies.iter().enumerate() {
        for (j, level) in policy.levels.iter().enumerate() {
            for (k, target) in level.targets.iter().enumerate() {
                if let crate::paging::TargetConfig::Person(who) = target {
                    add(format!("escalation_policies[{i}].levels[{j}].targets[{k}]"), who);
                }
            }
        }
    }
    if let Some(paging) = &sections.paging {
        for (k, who) in paging.managers.iter().enumerate() {
            add(format!("paging.managers[{k}]"), who);
        }
    }
    named
}

/// The finding for `name`, named at `key`, whom the configuration pages
/// but who cannot acknowledge a page, `why` (as the server's check of a
/// named person says it).
pub fn cannot_acknowledge(key: String, name: &str, why: &str) -> Finding {
    Finding {
        kind: FindingKind::PersonCannotAcknowledge,
        key,
        message: format!("{name} is paged by this configuration but cannot acknowledge: {why}"),
    }
}

/// Lints a validated configuration (`sections` and the `policy` validated
/// from them), looking `days` ahead of `now` for coverage holes (at most
/// [`DAYS_MAX`]). Findings come in the order of the module documentation,
/// each kind in file order.
pub fn lint(sections: &Sections, policy: &Policy, now: DateTime<Utc>, days: u32) -> Vec<Finding> {
    let mut findings = Vec::new();
    let rules = policy.rules.rules();
    for s in policy.rules.shadowed(&policy.catalog) {
        findings.push(Finding {
            kind: FindingKind::ShadowedRule,
            key: format!("severity.rules[{}]", s.rule),
            message: format!(
                "rule {} can never match: rule {} (severity.rules[{}]) before it matches everything it matches",
                rules[s.rule].id(),
                rules[s.by].id(),
                s.by
            ),
        });
    }
    if let Some(paging) = &policy.paging {
        let used: BTreeSet<&str> =
            policy.catalog.services().map(|s| s.escalation_policy()).chain([paging.default_policy().name()]).collect();
        for (i, config) in sections.escalation_policies.iter().enumerate() {
            if used.contains(config.name.as_str()) {
                continue;
            }
            for j in 0..config.levels.len() {
                findings.push(Finding {
                    kind: FindingKind::UnreachableLevel,
                    key: format!("escalation_policies[{i}].levels[{j}]"),
                    message: format!(
                        "policy {:?} is named by no service and is not paging.default_policy: no incident reaches \
                         this level (only a manager pulling in team {:?})",
                        config.name, config.name
                    ),
                });
            }
        }
    }
    let to = now + TimeDelta::days(i64::from(days.min(DAYS_MAX)));
    for (i, schedule) in policy.schedules.iter().enumerate() {
        let holes: Vec<_> = schedule.coverage(now, to).into_iter().filter(|span| span.who.is_none()).collect();
        if let Some(first) = holes.first() {
            let more = match holes.len() - 1 {
                0 => String::new(),
                n => format!(" and {n} more hole(s)"),
            };
            findings.push(Finding {
                kind: FindingKind::CoverageHole,
                key: format!("schedules[{i}]"),
                message: format!(
                    "nobody is on call in {} from {} to {}{more} (next {days} days)",
                    schedule.name(),
                    first.from.to_rfc3339(),
                    first.until.to_rfc3339()
                ),
            });
        }
    }
    let pages = |s: Severity| policy.paging.as_ref().is_some_and(|p| p.pages(s));
    // `Ord` puts the most severe last, so the least severe paging one is the minimum.
    let least_paging = Severity::ALL.into_iter().filter(|s| pages(*s)).min();
    let given = rules
        .iter()
        .enumerate()
        .map(|(i, r)| (format!("severity.rules[{i}].severity"), format!("rule {}", r.id()), r.severity()))
        .chain([("severity.default".to_owned(), "the default".to_owned(), policy.rules.default_severity())]);
    let mut told = BTreeSet::new();
    for (key, who, severity) in given {
        let silent =
            !pages(severity) && (severity == Severity::Sev1 || least_paging.is_some_and(|least| least < severity));
        if silent && told.insert(severity) {
            let paging = match &policy.paging {
                None => "there is no [paging] table".to_owned(),
                Some(p) => format!(
                    "paging.severities is [{}]",
                    p.severities().iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
                ),
            };
            findings.push(Finding {
                kind: FindingKind::SeverityPagesNobody,
                key,
                message: format!("{who} gives {severity}, which pages nobody: {paging}"),
            });
        }
    }
    let uses: BTreeSet<String> = sections
        .channel_uses()
        .into_iter()
        .chain(sections.report_channel_uses())
        .chain(sections.shift_notice_channel_uses())
        .map(|(_, name)| name)
        .collect();
    for (i, channel) in sections.channels.iter().enumerate() {
        if !uses.contains(&channel.name) {
            findings.push(Finding {
                kind: FindingKind::UnusedChannel,
                key: format!("channels[{i}]"),
                message: format!(
                    "channel {:?} is used by nothing (paging.channels, notifier.executive_channels, \
                     notifier.company_wide_channels, reports.channels, shift_notices)",
                    channel.name
                ),
            });
        }
    }
    if let Some(paging) = &policy.paging {
        for (name, slo) in &sections.slo.severities {
            let Ok(severity) = name.parse::<Severity>() else { continue };
            if paging.pages(severity) {
                continue;
            }
            for (key, set) in [("ack_minutes", slo.ack_minutes), ("ack_timeout_minutes", slo.ack_timeout_minutes)] {
                if set.is_some() {
                    findings.push(Finding {
                        kind: FindingKind::SettingNeverApplies,
                        key: format!("slo.{name}.{key}"),
                        message: format!(
                            "{severity} does not page (paging.severities), so nothing at {severity} is ever \
                             acknowledged: {key} never applies"
                        ),
                    });
                }
            }
        }
    }
    for tier in sections.slo.tier.keys() {
        if !sections.customers.iter().any(|c| &c.tier == tier) {
            findings.push(Finding {
                kind: FindingKind::SettingNeverApplies,
                key: format!("slo.tier.{tier}"),
                message: format!("no [[customers]] entry has tier {tier:?}: this table never tightens an SLO"),
            });
        }
    }
    findings
}
