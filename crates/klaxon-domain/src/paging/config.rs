//! The paging parts of the configuration file (`[paging]`, `[slo.<sev>]`,
//! `[[escalation_policies]]`) as written, and their validation into
//! [`PagingConfig`].

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;

use chrono::TimeDelta;
use serde::{Deserialize, Serialize};

use crate::ConfigError;
use crate::Error;
use crate::catalog::ServiceCatalog;
use crate::ids::{ActorId, CustomerId, ServiceName, Severity};
use crate::oncall::Schedules;

#[cfg(test)]
mod tests;

/// The most escalation policies a configuration may hold.
pub const POLICIES_MAX: usize = 1_024;
/// The most levels one escalation policy may have.
pub const LEVELS_MAX: usize = 16;
/// The most targets one level may list.
pub const TARGETS_MAX: usize = 32;
/// The most times a policy may start again from level 0 after its last
/// level.
pub const REPEAT_MAX: u32 = 10;
/// The most managers `[paging].managers` may list.
pub const MANAGERS_MAX: usize = 256;
/// The longest duration any paging setting may name, in minutes (one week).
pub const MINUTES_MAX: u32 = 7 * 24 * 60;
/// The longest escalation policy name, in characters.
pub const POLICY_NAME_CHARS_MAX: usize = 64;

/// The paging keys of the configuration file, before validation: the
/// `[paging]` table, the `[slo.<severity>]` tables and the
/// `[[escalation_policies]]` array, all at the top level of the file.
///
/// The binary deserializes the whole file and moves these three keys here;
/// [`PagingFileConfig::validate`] then checks them against the schedules.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PagingFileConfig {
    /// The `[paging]` table.
    pub paging: PagingSectionConfig,
    /// The `[slo.<severity>]` and `[slo.tier.<name>]` tables.
    #[serde(default)]
    pub slo: SloTables,
    /// The `[[escalation_policies]]` tables.
    #[serde(default)]
    pub escalation_policies: Vec<EscalationPolicyConfig>,
    /// The `[[customers]]` tables: customers with a tier whose
    /// `[slo.tier.<name>]` tightens the resolution SLA of their incidents.
    #[serde(default)]
    pub customers: Vec<CustomerConfig>,
}

/// The `[slo]` table: `[slo.<severity>]` tables keyed by severity (`sev1`
/// .. `sev4`; severities without a table, and keys a table omits, get the
/// defaults of [`SloConfig`]) and `[slo.tier.<name>]` tables.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SloTables {
    /// The `[slo.tier.<name>]` tables, keyed by tier name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tier: BTreeMap<String, TierSloConfig>,
    /// The `[slo.<severity>]` tables, keyed by severity as written.
    #[serde(flatten)]
    pub severities: BTreeMap<String, SloConfig>,
}

impl SloTables {
    /// Whether no table is given at all.
    pub fn is_empty(&self) -> bool {
        self.tier.is_empty() && self.severities.is_empty()
    }
}

/// One `[slo.tier.<name>]` table: the service levels a customer tier
/// tightens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierSloConfig {
    /// Time to resolve an incident affecting a customer of the tier; the
    /// tightest of this and the severity's `resolve_minutes` applies.
    pub resolve_minutes: u32,
}

/// One `[[customers]]` table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomerConfig {
    /// The customer id, as reports and impact records name it.
    pub name: String,
    /// The customer's tier: the name of a `[slo.tier.<name>]` table.
    pub tier: String,
}

/// The `[paging]` table, before validation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PagingSectionConfig {
    /// The severities that page, such as `["sev1", "sev2"]` (the default).
    /// Exactly these page: the list is not a threshold.
    #[serde(default = "default_severities")]
    pub severities: Vec<String>,
    /// The schedule whose on-call person is paged on SLO breaches and
    /// exhausted escalations; must be one of the configured schedules.
    pub duty_manager_schedule: String,
    /// Actor ids who may acknowledge any page, not only their own.
    #[serde(default)]
    pub managers: Vec<String>,
    /// The escalation policy for incidents whose service is unknown, not
    /// catalogued, or names a policy that does not exist; must be one of
    /// `escalation_policies`.
    pub default_policy: String,
    /// The outbound channels every page is delivered through (names of
    /// `[[channels]]`; checked by the binary that knows them). Empty: pages
    /// are recorded but not delivered anywhere.
    #[serde(default)]
    pub channels: Vec<String>,
}

fn default_severities() -> Vec<String> {
    vec!["sev1".into(), "sev2".into()]
}

/// One `[slo.<severity>]` table, before validation. Every key is optional;
/// the defaults are the same for every severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SloConfig {
    /// Time to acknowledge, measured from the first page of an escalation:
    /// when no page is acknowledged within it, the ack SLO is breached.
    /// Default 5.
    pub ack_minutes: Option<u32>,
    /// Time to assign a commander, measured from when the incident reached
    /// a paging severity. Default 10.
    pub assign_minutes: Option<u32>,
    /// How long an acknowledgement holds: when the incident is not mitigated
    /// this long after it, paging resumes. Default 30.
    pub ack_timeout_minutes: Option<u32>,
    /// The cadence of executive status updates (used by the executive
    /// notifier; carried here). Default 30.
    pub update_cadence_minutes: Option<u32>,
    /// Time to resolve, measured from the declaration. No default: without
    /// it the severity has no resolution SLA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolve_minutes: Option<u32>,
}

/// One `[[escalation_policies]]` table, before validation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EscalationPolicyConfig {
    /// The unique name services refer to, such as `payments`.
    pub name: String,
    /// How many times to start again from level 0 after the last level
    /// (0, the default, means the levels are walked once).
    #[serde(default)]
    pub repeat: u32,
    /// The levels, paged one after the other; at least one.
    #[serde(default)]
    pub levels: Vec<EscalationLevelConfig>,
}

/// One `[[escalation_policies.levels]]` table, before validation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EscalationLevelConfig {
    /// How long the level's pages may stay unacknowledged before the next
    /// level is paged; at least 1. Exactly one of `timeout_minutes` and
    /// `timeout_seconds` is given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_minutes: Option<u32>,
    /// The same in seconds, for sub-minute timeouts (drills and tests); at
    /// least 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<u32>,
    /// Who is paged at this level; at least one target.
    #[serde(default)]
    pub targets: Vec<TargetConfig>,
}

/// One target of a level: `{ schedule = "payments-primary" }` or
/// `{ person = "ana" }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum TargetConfig {
    /// Whoever is on call in this schedule when the level is paged.
    Schedule(String),
    /// This person, always.
    Person(String),
}

/// The validated paging configuration: which severities page, the SLOs of
/// every severity, the escalation policies by name, the duty manager's
/// schedule and the managers.
///
/// Guarantees: the default policy exists, every policy has at least one
/// level, every level at least one target and a positive timeout, every
/// schedule a target or the duty manager names existed in the [`Schedules`]
/// it was validated against, and [`PagingConfig::slo`] answers for every
/// severity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PagingConfig {
    severities: BTreeSet<Severity>,
    duty_manager_schedule: String,
    managers: BTreeSet<ActorId>,
    default_policy: String,
    slos: BTreeMap<Severity, Slo>,
    policies: BTreeMap<String, EscalationPolicy>,
    channels: Vec<String>,
    /// The resolution window of each customer, from its tier.
    customer_resolve: BTreeMap<CustomerId, TimeDelta>,
}

/// The service levels of one severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Slo {
    /// Time to acknowledge, from the first page.
    pub ack: TimeDelta,
    /// Time to assign a commander, from reaching a paging severity.
    pub assign: TimeDelta,
    /// How long an acknowledgement holds without mitigation.
    pub ack_timeout: TimeDelta,
    /// The cadence of executive status updates.
    pub update_cadence: TimeDelta,
    /// Time to resolve, from the declaration; `None`: no resolution SLA.
    pub resolve: Option<TimeDelta>,
}

impl Slo {
    /// The SLOs of a severity without a `[slo.<severity>]` table: ack 5
    /// minutes, assign 10, ack timeout 30, update cadence 30.
    pub const DEFAULT: Slo = Slo {
        ack: TimeDelta::minutes(5),
        assign: TimeDelta::minutes(10),
        ack_timeout: TimeDelta::minutes(30),
        update_cadence: TimeDelta::minutes(30),
        resolve: None,
    };
}

/// A validated escalation policy: levels paged one after the other, the
/// whole walked `1 + repeat` times.
///
/// It is also recorded in the log: the first event of an episode's chain
/// carries the policy the episode runs under (`policy` of
/// `page.responder_paged.v1` or `page.escalated.v1`), written in the shape
/// of a `[[escalation_policies]]` table ([`EscalationPolicyConfig`]). Read
/// back, it is checked for shape (levels, targets, timeouts and people as
/// at validation) but not against the schedules: a schedule removed since
/// simply has nobody on call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "EscalationPolicyConfig", try_from = "EscalationPolicyConfig")]
pub struct EscalationPolicy {
    name: String,
    repeat: u32,
    levels: Vec<EscalationLevel>,
}

/// One level of an escalation policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EscalationLevel {
    timeout: TimeDelta,
    targets: Vec<Target>,
}

/// Who a level pages.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    /// Whoever is on call in the named schedule at the time of the page
    /// (nobody when the schedule has a gap).
    Schedule(String),
    /// This person.
    Person(ActorId),
}

impl PagingConfig {
    /// Whether an incident of severity `severity` pages.
    pub fn pages(&self, severity: Severity) -> bool {
        self.severities.contains(&severity)
    }
    /// The severities that page.
    pub fn severities(&self) -> &BTreeSet<Severity> {
        &self.severities
    }
    /// The SLOs of `severity` (the defaults when it has no table).
    pub fn slo(&self, severity: Severity) -> Slo {
        self.slos.get(&severity).copied().unwrap_or(Slo::DEFAULT)
    }
    /// The resolution window of an incident of `severity` affecting
    /// `customers`: the tightest of the severity's `resolve_minutes` and
    /// the `[slo.tier.<name>]` of each customer's tier; `None` when neither
    /// gives one.
    pub fn resolve_window<'a>(
        &self,
        severity: Severity,
        customers: impl IntoIterator<Item = &'a CustomerId>,
    ) -> Option<TimeDelta> {
        let tiers = customers.into_iter().filter_map(|c| self.customer_resolve.get(c).copied());
        self.slo(severity).resolve.into_iter().chain(tiers).min()
    }
    /// The name of the duty manager's schedule.
    pub fn duty_manager_schedule(&self) -> &str {
        &self.duty_manager_schedule
    }
    /// Whether `actor` may acknowledge any page.
    pub fn is_manager(&self, actor: &ActorId) -> bool {
        self.managers.contains(actor)
    }
    /// The managers, who may acknowledge any page.
    pub fn managers(&self) -> &BTreeSet<ActorId> {
        &self.managers
    }
    /// The outbound channels pages are delivered through, by name.
    pub fn channels(&self) -> &[String] {
        &self.channels
    }
    /// The policy named `name`, if configured.
    pub fn policy(&self, name: &str) -> Option<&EscalationPolicy> {
        self.policies.get(name)
    }
    /// Every policy, by name.
    pub fn policies(&self) -> impl Iterator<Item = &EscalationPolicy> {
        self.policies.values()
    }
    /// The policy used when a service has none.
    pub fn default_policy(&self) -> &EscalationPolicy {
        self.policies.get(&self.default_policy).expect("validation checked that the default policy exists")
    }

    /// The policy that pages for an incident on `service`: the catalog's
    /// policy of the service when the catalog knows the service and the
    /// policy exists, otherwise the default policy.
    pub fn policy_for(&self, service: Option<&ServiceName>, catalog: &ServiceCatalog) -> &EscalationPolicy {
        service
            .and_then(|service| catalog.escalation_policy(service))
            .and_then(|name| self.policy(name))
            .unwrap_or_else(|| self.default_policy())
    }

    /// The policy that pages for `team` when a manager pulls the team in:
    /// the policy named like the team, else the policy of the team's first
    /// catalogued service (in name order) when it exists; `None` when the
    /// team has neither.
    pub fn policy_for_team(&self, team: &str, catalog: &ServiceCatalog) -> Option<&EscalationPolicy> {
        self.policy(team).or_else(|| {
            catalog.services().filter(|s| s.team() == team).find_map(|s| self.policy(s.escalation_policy()))
        })
    }

    /// Checks that every service of `catalog` names a configured policy.
    /// At run time a missing policy falls back to the default one; this lets
    /// the binary refuse such a configuration at start instead. `key_prefix`
    /// is the key of the catalog, normally `services`.
    pub fn check_catalog(&self, key_prefix: &str, catalog: &ServiceCatalog) -> Result<(), ConfigError> {
        for service in catalog.services() {
            if self.policy(service.escalation_policy()).is_none() {
                return Err(ConfigError::new(
                    format!("{key_prefix}.{}.escalation_policy", service.name()),
                    format!("{:?} is not the name of any escalation_policies entry", service.escalation_policy()),
                ));
            }
        }
        Ok(())
    }
}

impl EscalationPolicy {
    /// A policy of one level paging `target` with `timeout`, walked once:
    /// how a person or a schedule pulled in by a manager is paged.
    pub fn single(name: &str, target: Target, timeout: TimeDelta) -> EscalationPolicy {
        EscalationPolicy {
            name: name.to_owned(),
            repeat: 0,
            levels: vec![EscalationLevel { timeout, targets: vec![target] }],
        }
    }

    /// The policy's unique name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// How many extra rounds follow the first one.
    pub fn repeat(&self) -> u32 {
        self.repeat
    }
    /// The levels, at least one.
    pub fn levels(&self) -> &[EscalationLevel] {
        &self.levels
    }
    /// Level `index`, or the last level when `index` is past the end (a
    /// chain started under a longer policy before a configuration change).
    pub fn level(&self, index: u32) -> &EscalationLevel {
        let last = self.levels.len() - 1;
        &self.levels[usize::try_from(index).map_or(last, |index| index.min(last))]
    }
    /// The step after level `level` of round `round`: the next level, or
    /// level 0 of the next round, or `None` when every round is exhausted.
    pub fn next(&self, level: u32, round: u32) -> Option<(u32, u32)> {
        let next = level.saturating_add(1);
        if usize::try_from(next).is_ok_and(|next| next < self.levels.len()) {
            Some((next, round))
        } else if round < self.repeat {
            Some((0, round + 1))
        } else {
            None
        }
    }
}

impl From<EscalationPolicy> for EscalationPolicyConfig {
    /// The policy as a `[[escalation_policies]]` table: timeouts in whole
    /// minutes when they are, else in seconds.
    fn from(policy: EscalationPolicy) -> EscalationPolicyConfig {
        let levels = policy
            .levels
            .into_iter()
            .map(|level| {
                let seconds = u32::try_from(level.timeout.num_seconds()).unwrap_or(u32::MAX);
                let (timeout_minutes, timeout_seconds) =
                    if seconds % 60 == 0 { (Some(seconds / 60), None) } else { (None, Some(seconds)) };
                let targets = level
                    .targets
                    .into_iter()
                    .map(|target| match target {
                        Target::Schedule(name) => TargetConfig::Schedule(name),
                        Target::Person(person) => TargetConfig::Person(person.to_string()),
                    })
                    .collect();
                EscalationLevelConfig { timeout_minutes, timeout_seconds, targets }
            })
            .collect();
        EscalationPolicyConfig { name: policy.name, repeat: policy.repeat, levels }
    }
}

impl TryFrom<EscalationPolicyConfig> for EscalationPolicy {
    type Error = ConfigError;

    /// A recorded policy read back: validated as in a configuration file,
    /// except that the schedules it names need not exist (any more).
    fn try_from(config: EscalationPolicyConfig) -> Result<EscalationPolicy, ConfigError> {
        config.validate("policy", None)
    }
}

impl EscalationLevel {
    /// How long the level's pages may stay unacknowledged.
    pub fn timeout(&self) -> TimeDelta {
        self.timeout
    }
    /// Who the level pages, at least one target.
    pub fn targets(&self) -> &[Target] {
        &self.targets
    }
}

/// `prefix.rest`, or `rest` alone at the top level of the file.
fn join(prefix: &str, rest: &str) -> String {
    if prefix.is_empty() { rest.to_owned() } else { format!("{prefix}.{rest}") }
}

/// The problem of an id that failed validation, without the field name.
fn id_problem(value: &str, error: Error) -> String {
    match error {
        Error::InvalidField { reason, .. } if reason.starts_with('"') => reason,
        Error::InvalidField { reason, .. } => format!("{value:?} {reason}"),
        other => format!("{value:?}: {other}"),
    }
}

fn minutes(key: &str, value: u32) -> Result<TimeDelta, ConfigError> {
    if value == 0 {
        return Err(ConfigError::new(key, "must be at least 1 minute"));
    }
    if value > MINUTES_MAX {
        return Err(ConfigError::new(key, format!("{value} is more than the limit of {MINUTES_MAX} minutes")));
    }
    Ok(TimeDelta::minutes(i64::from(value)))
}

fn severity(key: &str, value: &str) -> Result<Severity, ConfigError> {
    Severity::from_str(value)
        .map_err(|_| ConfigError::new(key, format!("{value:?} is not a severity; expected sev1 to sev4")))
}

/// `[paging].severities` as written at `key`: at least one, each a
/// severity, none twice.
fn severity_set(key: &str, raw: &[String]) -> Result<BTreeSet<Severity>, ConfigError> {
    if raw.is_empty() {
        return Err(ConfigError::new(key, "must list at least one severity"));
    }
    let mut severities = BTreeSet::new();
    for (i, value) in raw.iter().enumerate() {
        let key = format!("{key}[{i}]");
        if !severities.insert(severity(&key, value)?) {
            return Err(ConfigError::new(key, format!("{value:?} is listed twice")));
        }
    }
    Ok(severities)
}

/// The paging severities of a configuration as the log records it (the
/// `config` of `config.applied.v1`: the file's TOML as JSON): those of
/// `paging.severities`, the default (`sev1`, `sev2`) when the `[paging]`
/// table omits the key, and `Ok(None)` without a `[paging]` table (a
/// configuration that does not page says nothing about what pages). The
/// same rules as [`PagingFileConfig::validate`], so that paging folds from
/// the log exactly the severities the process validated.
pub fn recorded_severities(config: &serde_json::Value) -> Result<Option<BTreeSet<Severity>>, ConfigError> {
    let Some(paging) = config.get("paging") else { return Ok(None) };
    let raw: Vec<String> = match paging.get("severities") {
        None => default_severities(),
        Some(value) => serde_json::from_value(value.clone())
            .map_err(|_| ConfigError::new("paging.severities", "must be a list of severities"))?,
    };
    severity_set("paging.severities", &raw).map(Some)
}

fn policy_name(key: &str, value: &str) -> Result<String, ConfigError> {
    if value.is_empty() {
        return Err(ConfigError::new(key, "must not be empty"));
    }
    if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ConfigError::new(key, format!("{value:?} must not contain whitespace or control characters")));
    }
    if value.chars().count() > POLICY_NAME_CHARS_MAX {
        return Err(ConfigError::new(key, format!("{value:?} is longer than {POLICY_NAME_CHARS_MAX} characters")));
    }
    Ok(value.to_owned())
}

impl PagingFileConfig {
    /// Validates the paging configuration against the configured
    /// `schedules`. `key_prefix` is where the three keys live in the file:
    /// empty at the top level (errors then name `paging.severities[2]`,
    /// `slo.sev9`, `escalation_policies[0].levels[1].targets[0].schedule`).
    ///
    /// Rejects: an empty, duplicated or unknown severity; an unknown duty
    /// manager schedule; invalid or duplicated managers; SLO tables for
    /// unknown severities (or the same severity twice); durations of 0 or
    /// above [`MINUTES_MAX`]; duplicate, empty or malformed policy names;
    /// policies without levels, levels without targets; targets naming an
    /// unknown schedule or an invalid person; a `repeat` above
    /// [`REPEAT_MAX`]; a default policy that does not exist; and lists
    /// above their limits.
    pub fn validate(&self, key_prefix: &str, schedules: &Schedules) -> Result<PagingConfig, ConfigError> {
        let paging = join(key_prefix, "paging");
        let section = &self.paging;

        let severities = severity_set(&format!("{paging}.severities"), &section.severities)?;

        let duty_key = format!("{paging}.duty_manager_schedule");
        if schedules.get(&section.duty_manager_schedule).is_none() {
            return Err(ConfigError::new(
                duty_key,
                format!("{:?} is not the name of any configured schedule", section.duty_manager_schedule),
            ));
        }

        let managers_key = format!("{paging}.managers");
        if section.managers.len() > MANAGERS_MAX {
            return Err(ConfigError::new(
                managers_key,
                format!("{} managers is more than the limit of {MANAGERS_MAX}", section.managers.len()),
            ));
        }
        let mut managers = BTreeSet::new();
        for (i, raw) in section.managers.iter().enumerate() {
            let key = format!("{managers_key}[{i}]");
            let actor = ActorId::new(raw.as_str()).map_err(|e| ConfigError::new(&key, id_problem(raw, e)))?;
            if !managers.insert(actor) {
                return Err(ConfigError::new(key, format!("{raw:?} is listed twice")));
            }
        }

        let mut slos = BTreeMap::new();
        let mut slo_keys: BTreeMap<Severity, &str> = BTreeMap::new();
        for (raw, config) in &self.slo.severities {
            let key = join(key_prefix, &format!("slo.{raw}"));
            let level = severity(&key, raw)?;
            if let Some(first) = slo_keys.insert(level, raw) {
                return Err(ConfigError::new(key, format!("{level} is already configured by slo.{first}")));
            }
            slos.insert(level, config.validate(&key)?);
        }

        let policies_key = join(key_prefix, "escalation_policies");
        if self.escalation_policies.len() > POLICIES_MAX {
            return Err(ConfigError::new(
                policies_key,
                format!("{} policies is more than the limit of {POLICIES_MAX}", self.escalation_policies.len()),
            ));
        }
        let mut policies = BTreeMap::new();
        let mut first_index = BTreeMap::new();
        for (i, config) in self.escalation_policies.iter().enumerate() {
            let key = format!("{policies_key}[{i}]");
            let policy = config.validate(&key, Some(schedules))?;
            if let Some(first) = first_index.insert(policy.name.clone(), i) {
                return Err(ConfigError::new(
                    format!("{key}.name"),
                    format!("{:?} is already the name of {policies_key}[{first}]", policy.name),
                ));
            }
            policies.insert(policy.name.clone(), policy);
        }

        let default_key = format!("{paging}.default_policy");
        if !policies.contains_key(&section.default_policy) {
            return Err(ConfigError::new(
                default_key,
                format!("{:?} is not the name of any {policies_key} entry", section.default_policy),
            ));
        }

        let mut tiers = BTreeMap::new();
        for (name, tier) in &self.slo.tier {
            let key = join(key_prefix, &format!("slo.tier.{name}.resolve_minutes"));
            tiers.insert(name.as_str(), minutes(&key, tier.resolve_minutes)?);
        }
        let mut customer_resolve = BTreeMap::new();
        for (i, customer) in self.customers.iter().enumerate() {
            let key = join(key_prefix, &format!("customers[{i}]"));
            let id = CustomerId::new(customer.name.as_str())
                .map_err(|e| ConfigError::new(format!("{key}.name"), id_problem(&customer.name, e)))?;
            let Some(window) = tiers.get(customer.tier.as_str()) else {
                return Err(ConfigError::new(
                    format!("{key}.tier"),
                    format!("{:?} is not a tier: no [slo.tier.{}] table", customer.tier, customer.tier),
                ));
            };
            if customer_resolve.insert(id, *window).is_some() {
                return Err(ConfigError::new(format!("{key}.name"), format!("{:?} is listed twice", customer.name)));
            }
        }

        Ok(PagingConfig {
            customer_resolve,
            severities,
            duty_manager_schedule: section.duty_manager_schedule.clone(),
            managers,
            default_policy: section.default_policy.clone(),
            slos,
            policies,
            channels: section.channels.clone(),
        })
    }
}

impl SloConfig {
    fn validate(&self, key: &str) -> Result<Slo, ConfigError> {
        let get = |name: &str, value: Option<u32>, default: TimeDelta| match value {
            None => Ok(default),
            Some(value) => minutes(&format!("{key}.{name}"), value),
        };
        Ok(Slo {
            ack: get("ack_minutes", self.ack_minutes, Slo::DEFAULT.ack)?,
            assign: get("assign_minutes", self.assign_minutes, Slo::DEFAULT.assign)?,
            ack_timeout: get("ack_timeout_minutes", self.ack_timeout_minutes, Slo::DEFAULT.ack_timeout)?,
            update_cadence: get("update_cadence_minutes", self.update_cadence_minutes, Slo::DEFAULT.update_cadence)?,
            resolve: match self.resolve_minutes {
                None => None,
                Some(value) => Some(minutes(&format!("{key}.resolve_minutes"), value)?),
            },
        })
    }
}

impl EscalationPolicyConfig {
    /// Validates the policy; `schedules`, when given, must hold every
    /// schedule a target names.
    fn validate(&self, key: &str, schedules: Option<&Schedules>) -> Result<EscalationPolicy, ConfigError> {
        let name = policy_name(&format!("{key}.name"), &self.name)?;
        if self.repeat > REPEAT_MAX {
            return Err(ConfigError::new(
                format!("{key}.repeat"),
                format!("{} is more than the limit of {REPEAT_MAX}", self.repeat),
            ));
        }
        let levels_key = format!("{key}.levels");
        if self.levels.is_empty() {
            return Err(ConfigError::new(levels_key, "must have at least one level"));
        }
        if self.levels.len() > LEVELS_MAX {
            return Err(ConfigError::new(
                levels_key,
                format!("{} levels is more than the limit of {LEVELS_MAX}", self.levels.len()),
            ));
        }
        let levels = self
            .levels
            .iter()
            .enumerate()
            .map(|(i, level)| level.validate(&format!("{levels_key}[{i}]"), schedules))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(EscalationPolicy { name, repeat: self.repeat, levels })
    }
}

impl EscalationLevelConfig {
    fn validate(&self, key: &str, schedules: Option<&Schedules>) -> Result<EscalationLevel, ConfigError> {
        let timeout = match (self.timeout_minutes, self.timeout_seconds) {
            (Some(m), None) => minutes(&format!("{key}.timeout_minutes"), m)?,
            (None, Some(s)) => {
                let key = format!("{key}.timeout_seconds");
                if s == 0 {
                    return Err(ConfigError::new(key, "must be at least 1 second"));
                }
                if s > MINUTES_MAX * 60 {
                    return Err(ConfigError::new(
                        key,
                        format!("{s} is more than the limit of {} seconds", MINUTES_MAX * 60),
                    ));
                }
                TimeDelta::seconds(i64::from(s))
            }
            (Some(_), Some(_)) => {
                return Err(ConfigError::new(key, "give timeout_minutes or timeout_seconds, not both"));
            }
            (None, None) => return Err(ConfigError::new(format!("{key}.timeout_minutes"), "is required")),
        };
        let targets_key = format!("{key}.targets");
        if self.targets.is_empty() {
            return Err(ConfigError::new(targets_key, "must have at least one target"));
        }
        if self.targets.len() > TARGETS_MAX {
            return Err(ConfigError::new(
                targets_key,
                format!("{} targets is more than the limit of {TARGETS_MAX}", self.targets.len()),
            ));
        }
        let mut targets = Vec::with_capacity(self.targets.len());
        for (i, target) in self.targets.iter().enumerate() {
            let key = format!("{targets_key}[{i}]");
            let target = match target {
                TargetConfig::Schedule(name) => {
                    if schedules.is_some_and(|s| s.get(name).is_none()) {
                        return Err(ConfigError::new(
                            format!("{key}.schedule"),
                            format!("{name:?} is not the name of any configured schedule"),
                        ));
                    }
                    Target::Schedule(name.clone())
                }
                TargetConfig::Person(raw) => Target::Person(
                    ActorId::new(raw.as_str())
                        .map_err(|e| ConfigError::new(format!("{key}.person"), id_problem(raw, e)))?,
                ),
            };
            if targets.contains(&target) {
                return Err(ConfigError::new(key, "the same target is listed twice in this level"));
            }
            targets.push(target);
        }
        Ok(EscalationLevel { timeout, targets })
    }
}
