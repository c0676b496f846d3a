//! Severity rules: every incoming report is triaged by an ordered list of
//! rules over the incident's [`Facts`]; the first rule whose conditions all
//! hold gives the severity, and a default applies when none does.
//!
//! # Configuration
//!
//! The binary parses its TOML file into [`ServiceCatalogConfig`] (the
//! `[[services]]` tables) and [`SeverityConfig`] (the `[severity]` table),
//! then validates them into a [`ServiceCatalog`] and [`Rules`]. Validation
//! names the offending key path, such as
//! `severity.rules[2].severity: "sev9" is not a severity; expected sev1 to sev4`.
//!
//! ```toml
//! [severity]
//! default = "sev4"
//! default_reason = "No rule matched"
//!
//! [[severity.rules]]
//! id = "tier1-multi-customer"
//! severity = "sev1"
//! reason = "Several customers hit on a tier-1 service"
//! when = { service_tier = [1], multi_customer = true }
//! ```
//!
//! # Semantics
//!
//! - Rules are tried in order; the **first** whose conditions all hold wins.
//!   When none holds, the default severity applies with the default reason.
//! - The conditions of one `when` are ANDed; the values of one list are
//!   ORed. `labels` is a condition per label: every listed label must be
//!   present with exactly the listed value (case-sensitive, like
//!   Alertmanager's labels).
//! - `words` matches whole words (runs of letters and digits), without case,
//!   in the title or the description: `down` matches "Checkout DOWN!" but not
//!   "download" or "downtime". A configured word of several words, such as
//!   `"not loading"` or `"time-out"`, matches that sequence of words, with
//!   any punctuation or spacing between them. There is no stemming: `outage`
//!   does not match "outages".
//! - `service_tier` holds only for a service that is in the catalog; an
//!   incident without a service, or with one the catalog does not know, has
//!   no tier.
//! - An empty `when` matches everything. It is allowed anywhere, but a rule
//!   after it could never match, so that is a configuration error; in
//!   practice a catch-all rule is the last one (and then the default is never
//!   used, which is allowed).
//! - Conditions that would never hold or always hold are errors rather than
//!   silent surprises: empty lists, `labels = {}`, empty words and
//!   `customers_affected_at_least = 0`.
//!
//! Unknown keys in any table are rejected by the parser, which names them
//! (`deny_unknown_fields`).
//!
//! # Explanations
//!
//! [`Rules::explain`] evaluates **every** rule, including those after the
//! chosen one, so an operator tuning the rules sees which later rules would
//! also have matched; such rules have `matched = true` and `chosen = false`.
//! Every condition of every rule is evaluated (no short-circuit), so each
//! one's outcome is shown.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::ConfigError;
use crate::Error;
use crate::ids::{ReportSource, ServiceName, Severity};
use crate::incident::{Incident, Status};

#[cfg(test)]
mod tests;

/// The most rules one configuration may hold.
pub const RULES_MAX: usize = 256;
/// The most values one condition list (`reported_via`, `service`,
/// `service_tier`, `words`) or `labels` table may hold.
pub const CONDITION_VALUES_MAX: usize = 64;
/// The longest rule id, in characters.
pub const RULE_ID_CHARS_MAX: usize = 64;
/// The longest rule reason or default reason, in characters.
pub const REASON_CHARS_MAX: usize = 200;
/// The longest configured word or phrase, in characters.
pub const WORD_CHARS_MAX: usize = 64;
/// The longest label name or value in a condition, in characters.
pub const LABEL_CHARS_MAX: usize = crate::incident::LABEL_CHARS_MAX;
/// The most services the catalog may hold.
pub const SERVICES_MAX: usize = 10_000;
/// The longest team or escalation policy name, in characters.
pub const NAME_CHARS_MAX: usize = 64;
/// The longest runbook URL, in characters.
pub const RUNBOOK_CHARS_MAX: usize = 2_048;
/// The longest public name of a service, in characters.
pub const PUBLIC_NAME_CHARS_MAX: usize = 80;

// ---------------------------------------------------------------------------
// Service catalog
// ---------------------------------------------------------------------------

/// How critical a service is, from tier 1 (the most critical) to tier 3.
///
/// Serialized as its number; deserializing rejects anything outside 1..=3.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "u8", into = "u8")]
pub struct Tier(u8);

impl Tier {
    /// The most critical tier.
    pub const MOST_CRITICAL: Tier = Tier(1);
    /// The least critical tier.
    pub const LEAST_CRITICAL: Tier = Tier(3);

    /// The tier numbered `n`, when `n` is 1, 2 or 3.
    pub fn new(n: u8) -> Option<Tier> {
        (1..=3).contains(&n).then_some(Tier(n))
    }

    /// The tier's number: 1 is the most critical.
    pub fn number(self) -> u8 {
        self.0
    }

    /// Parses a configured number, with the problem in words when it is not a
    /// tier.
    fn from_config(n: i64) -> Result<Tier, String> {
        u8::try_from(n).ok().and_then(Tier::new).ok_or_else(|| format!("{n} is not a tier; expected 1, 2 or 3"))
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "tier {}", self.0)
    }
}

impl TryFrom<u8> for Tier {
    type Error = String;

    fn try_from(n: u8) -> Result<Tier, String> {
        Tier::from_config(n.into())
    }
}

impl From<Tier> for u8 {
    fn from(tier: Tier) -> u8 {
        tier.0
    }
}

/// One `[[services]]` table as written in the configuration file.
///
/// Plain data: [`ServiceCatalogConfig::validate`] checks it, so errors can
/// name the key path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    /// The service's name, a valid [`ServiceName`], unique in the catalog.
    pub name: String,
    /// The team that owns the service.
    pub team: String,
    /// The service's tier, 1 (the most critical) to 3.
    pub tier: i64,
    /// Where responders find the runbook: an `http://` or `https://` URL.
    #[serde(default)]
    pub runbook: Option<String>,
    /// What customers call the service, e.g. "Checkout": the only name of
    /// it the public status page shows. Without one, the public page names
    /// no service for its incidents.
    #[serde(default)]
    pub public_name: Option<String>,
    /// The name of the escalation policy that pages for this service. Only
    /// its form is checked here; the paging configuration checks it exists.
    pub escalation_policy: String,
}

/// The `[[services]]` array of the configuration file: the service catalog
/// before validation. Serialized as the bare array.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ServiceCatalogConfig(pub Vec<ServiceConfig>);

/// One service of the validated catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CatalogEntry {
    name: ServiceName,
    team: String,
    tier: Tier,
    runbook: Option<String>,
    public_name: Option<String>,
    escalation_policy: String,
}

impl CatalogEntry {
    /// The service's name.
    pub fn name(&self) -> &ServiceName {
        &self.name
    }
    /// The team that owns the service.
    pub fn team(&self) -> &str {
        &self.team
    }
    /// How critical the service is.
    pub fn tier(&self) -> Tier {
        self.tier
    }
    /// The runbook URL, when configured.
    pub fn runbook(&self) -> Option<&str> {
        self.runbook.as_deref()
    }
    /// What customers call the service, when configured.
    pub fn public_name(&self) -> Option<&str> {
        self.public_name.as_deref()
    }
    /// The name of the escalation policy that pages for the service.
    pub fn escalation_policy(&self) -> &str {
        &self.escalation_policy
    }
}

/// The validated service catalog: what Klaxon knows about each service.
///
/// Lookups of a service the catalog does not hold return `None`; reports may
/// name services nobody catalogued, and that is not an error.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ServiceCatalog {
    services: BTreeMap<ServiceName, CatalogEntry>,
}

impl ServiceCatalogConfig {
    /// Checks every service and builds the catalog. `key_prefix` is the key
    /// of the array in the file (usually `services`), used in error paths
    /// such as `services[1].tier`.
    ///
    /// Rejects invalid or duplicate names, tiers outside 1..=3, empty team
    /// or escalation policy names, and runbooks that are not HTTP(S) URLs.
    pub fn validate(&self, key_prefix: &str) -> Result<ServiceCatalog, ConfigError> {
        if self.0.len() > SERVICES_MAX {
            return Err(ConfigError::new(
                key_prefix,
                format!("{} services is more than the limit of {SERVICES_MAX}", self.0.len()),
            ));
        }
        let mut services = BTreeMap::new();
        let mut first_index = BTreeMap::new();
        for (i, service) in self.0.iter().enumerate() {
            let key = format!("{key_prefix}[{i}]");
            let name = ServiceName::new(service.name.as_str())
                .map_err(|e| ConfigError::new(format!("{key}.name"), id_problem(&service.name, e)))?;
            if let Some(first) = first_index.insert(name.clone(), i) {
                return Err(ConfigError::new(
                    format!("{key}.name"),
                    format!("service {name} is already defined at {key_prefix}[{first}]"),
                ));
            }
            let team = plain_name(&service.team).map_err(|p| ConfigError::new(format!("{key}.team"), p))?;
            let tier = Tier::from_config(service.tier).map_err(|p| ConfigError::new(format!("{key}.tier"), p))?;
            let runbook = match &service.runbook {
                None => None,
                Some(url) => Some(runbook(url).map_err(|p| ConfigError::new(format!("{key}.runbook"), p))?),
            };
            let public_name = match &service.public_name {
                None => None,
                Some(text) => Some(public_name(text).map_err(|p| ConfigError::new(format!("{key}.public_name"), p))?),
            };
            let escalation_policy = plain_name(&service.escalation_policy)
                .map_err(|p| ConfigError::new(format!("{key}.escalation_policy"), p))?;
            services.insert(name.clone(), CatalogEntry { name, team, tier, runbook, public_name, escalation_policy });
        }
        Ok(ServiceCatalog { services })
    }
}

impl ServiceCatalog {
    /// The catalog entry of `service`, if catalogued.
    pub fn get(&self, service: &ServiceName) -> Option<&CatalogEntry> {
        self.services.get(service)
    }
    /// The tier of `service`, if catalogued.
    pub fn tier(&self, service: &ServiceName) -> Option<Tier> {
        self.get(service).map(CatalogEntry::tier)
    }
    /// The team owning `service`, if catalogued.
    pub fn team(&self, service: &ServiceName) -> Option<&str> {
        self.get(service).map(CatalogEntry::team)
    }
    /// The runbook of `service`, if catalogued with one.
    pub fn runbook(&self, service: &ServiceName) -> Option<&str> {
        self.get(service).and_then(CatalogEntry::runbook)
    }
    /// What customers call `service`, if catalogued with a public name.
    pub fn public_name(&self, service: &ServiceName) -> Option<&str> {
        self.get(service).and_then(CatalogEntry::public_name)
    }
    /// The escalation policy name of `service`, if catalogued.
    pub fn escalation_policy(&self, service: &ServiceName) -> Option<&str> {
        self.get(service).map(CatalogEntry::escalation_policy)
    }
    /// Every service, by name.
    pub fn services(&self) -> impl Iterator<Item = &CatalogEntry> {
        self.services.values()
    }
    /// How many services the catalog holds.
    pub fn len(&self) -> usize {
        self.services.len()
    }
    /// Whether the catalog is empty.
    pub fn is_empty(&self) -> bool {
        self.services.is_empty()
    }
}

/// The problem of an id that failed validation, without the field name the
/// id type adds (the key path names it instead).
fn id_problem(value: &str, error: Error) -> String {
    match error {
        Error::InvalidField { reason, .. } if reason.starts_with('"') => reason,
        Error::InvalidField { reason, .. } => format!("{value:?} {reason}"),
        other => format!("{value:?}: {other}"),
    }
}

/// A team or policy name: trimmed, non-empty, without whitespace or control
/// characters, at most [`NAME_CHARS_MAX`] characters.
fn plain_name(value: &str) -> Result<String, String> {
    if value.is_empty() {
        return Err("must not be empty".into());
    }
    if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("{value:?} must not contain whitespace or control characters"));
    }
    if value.chars().count() > NAME_CHARS_MAX {
        return Err(format!("{value:?} is longer than {NAME_CHARS_MAX} characters"));
    }
    Ok(value.to_owned())
}

/// A public name: trimmed, not empty, no control characters, at most
/// [`PUBLIC_NAME_CHARS_MAX`] characters.
fn public_name(value: &str) -> Result<String, String> {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Err("must not be empty".into());
    }
    if trimmed.chars().any(char::is_control) {
        return Err(format!("{value:?} must not contain control characters"));
    }
    if trimmed.chars().count() > PUBLIC_NAME_CHARS_MAX {
        return Err(format!("{value:?} is longer than {PUBLIC_NAME_CHARS_MAX} characters"));
    }
    Ok(trimmed.to_owned())
}

/// A runbook URL: `http://` or `https://` followed by something, without
/// whitespace, at most [`RUNBOOK_CHARS_MAX`] characters.
fn runbook(url: &str) -> Result<String, String> {
    let rest = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://"));
    if rest.is_none_or(str::is_empty) || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("{url:?} is not an http:// or https:// URL"));
    }
    if url.chars().count() > RUNBOOK_CHARS_MAX {
        return Err(format!("the URL is longer than {RUNBOOK_CHARS_MAX} characters"));
    }
    Ok(url.to_owned())
}

// ---------------------------------------------------------------------------
// Severity configuration
// ---------------------------------------------------------------------------

/// The `[severity]` table as written in the configuration file.
///
/// Severities and sources are strings here so that a bad value is reported
/// by [`SeverityConfig::validate`] with its key path rather than by the
/// parser.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeverityConfig {
    /// The severity when no rule matches, such as `sev4`.
    pub default: String,
    /// Why, when no rule matches; `No rule matched` when omitted.
    #[serde(default = "default_reason")]
    pub default_reason: String,
    /// The rules, tried in order.
    #[serde(default)]
    pub rules: Vec<RuleConfig>,
}

fn default_reason() -> String {
    "No rule matched".into()
}

/// One `[[severity.rules]]` table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// A stable id, unique among the rules: 1 to 64 characters of
    /// `[a-z0-9_-]`. Assessments record it.
    pub id: String,
    /// The severity the rule gives, such as `sev1` (anything
    /// [`Severity`]'s parser accepts).
    pub severity: String,
    /// Why, in words, for the people reading the assessment.
    pub reason: String,
    /// The conditions; all must hold. Omitted or empty matches everything.
    #[serde(default)]
    pub when: ConditionsConfig,
}

/// The `when` table of a rule: each key present is one condition (for
/// `labels`, one per label), and all must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConditionsConfig {
    /// The first report came in through one of these channels, such as
    /// `executive` or `alertmanager`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reported_via: Option<Vec<String>>,
    /// The incident's service is one of these.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<Vec<String>>,
    /// The incident's service is catalogued with one of these tiers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_tier: Option<Vec<i64>>,
    /// The incident is (`true`) or is not (`false`) multi-customer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multi_customer: Option<bool>,
    /// At least this many customers are affected; must be at least 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customers_affected_at_least: Option<i64>,
    /// One of these words or phrases appears, as whole words and without
    /// case, in the title or the description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub words: Option<Vec<String>>,
    /// Each of these labels is present with exactly this value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
}

/// A configured word or phrase, with its lowercase word sequence.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Word {
    text: String,
    tokens: Vec<String>,
}

/// One validated condition.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Condition {
    ReportedVia(Vec<ReportSource>),
    Service(Vec<ServiceName>),
    ServiceTier(Vec<Tier>),
    MultiCustomer(bool),
    CustomersAtLeast(u32),
    Words(Vec<Word>),
    Label { name: String, value: String },
}

/// One validated rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    id: String,
    severity: Severity,
    reason: String,
    conditions: Vec<Condition>,
}

impl Rule {
    /// The rule's stable id.
    pub fn id(&self) -> &str {
        &self.id
    }
    /// The severity the rule gives.
    pub fn severity(&self) -> Severity {
        self.severity
    }
    /// Why, in words.
    pub fn reason(&self) -> &str {
        &self.reason
    }
    /// Each condition in words, in evaluation order; empty when the rule
    /// matches everything.
    pub fn conditions(&self) -> Vec<String> {
        self.conditions.iter().map(Condition::describe).collect()
    }
    /// Whether the rule has no condition and so matches every incident.
    pub fn matches_everything(&self) -> bool {
        self.conditions.is_empty()
    }
}

/// The validated severity rules, ready to evaluate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rules {
    rules: Vec<Rule>,
    default: Severity,
    default_reason: String,
}

impl SeverityConfig {
    /// Checks the configuration and builds the [`Rules`]. `key_prefix` is the
    /// key of the table in the file (usually `severity`), used in error paths
    /// such as `severity.rules[2].when.service_tier[0]`.
    ///
    /// Returns the first problem found, in file order: bad severities,
    /// sources or service names; ids that are malformed or repeated; empty
    /// reasons; tiers outside 1..=3; empty lists, words or label tables;
    /// `customers_affected_at_least` below 1; lists over
    /// [`CONDITION_VALUES_MAX`]; and a rule after one that matches
    /// everything, which could never match.
    pub fn validate(&self, key_prefix: &str) -> Result<Rules, ConfigError> {
        let default = severity(&self.default).map_err(|p| ConfigError::new(format!("{key_prefix}.default"), p))?;
        let default_reason =
            reason(&self.default_reason).map_err(|p| ConfigError::new(format!("{key_prefix}.default_reason"), p))?;
        if self.rules.len() > RULES_MAX {
            return Err(ConfigError::new(
                format!("{key_prefix}.rules"),
                format!("{} rules is more than the limit of {RULES_MAX}", self.rules.len()),
            ));
        }
        let mut rules: Vec<Rule> = Vec::with_capacity(self.rules.len());
        for (i, config) in self.rules.iter().enumerate() {
            let key = format!("{key_prefix}.rules[{i}]");
            let rule = config.validate(&key)?;
            if let Some(first) = rules.iter().position(|r| r.id == rule.id) {
                return Err(ConfigError::new(
                    format!("{key}.id"),
                    format!("duplicate rule id {:?}: {key_prefix}.rules[{first}] has it too", rule.id),
                ));
            }
            if let Some(catch_all) = rules.iter().find(|r| r.matches_everything()) {
                return Err(ConfigError::new(
                    key,
                    format!("rule {} can never match: rule {} before it matches everything", rule.id, catch_all.id),
                ));
            }
            rules.push(rule);
        }
        Ok(Rules { rules, default, default_reason })
    }
}

impl RuleConfig {
    /// Checks one rule; `key` is its path, such as `severity.rules[2]`.
    fn validate(&self, key: &str) -> Result<Rule, ConfigError> {
        let at = |field: &'static str| move |problem: String| ConfigError::new(format!("{key}.{field}"), problem);
        let id = rule_id(&self.id).map_err(at("id"))?;
        let severity = severity(&self.severity).map_err(at("severity"))?;
        let reason = reason(&self.reason).map_err(at("reason"))?;
        let conditions = self.when.validate(&format!("{key}.when"))?;
        Ok(Rule { id, severity, reason, conditions })
    }
}

impl ConditionsConfig {
    /// Checks the conditions; `key` is the path of the `when` table.
    fn validate(&self, key: &str) -> Result<Vec<Condition>, ConfigError> {
        let mut conditions = Vec::new();
        if let Some(sources) = &self.reported_via {
            let key = format!("{key}.reported_via");
            let sources = list(&key, sources, |s| {
                s.parse::<ReportSource>().map_err(|_| {
                    let names: Vec<&str> = ReportSource::ALL.iter().map(|s| s.as_str()).collect();
                    format!("{s:?} is not a report source; expected one of {}", names.join(", "))
                })
            })?;
            conditions.push(Condition::ReportedVia(sources));
        }
        if let Some(services) = &self.service {
            let key = format!("{key}.service");
            let services = list(&key, services, |s| ServiceName::new(s.as_str()).map_err(|e| id_problem(s, e)))?;
            conditions.push(Condition::Service(services));
        }
        if let Some(tiers) = &self.service_tier {
            let key = format!("{key}.service_tier");
            conditions.push(Condition::ServiceTier(list(&key, tiers, |n| Tier::from_config(*n))?));
        }
        if let Some(multi) = self.multi_customer {
            conditions.push(Condition::MultiCustomer(multi));
        }
        if let Some(n) = self.customers_affected_at_least {
            let key = format!("{key}.customers_affected_at_least");
            let n = match u32::try_from(n) {
                Ok(0) => Err(ConfigError::new(key, "0 is pointless: every incident has at least 0 customers affected")),
                Ok(n) => Ok(n),
                Err(_) if n < 0 => Err(ConfigError::new(key, format!("{n} is not a count; expected at least 1"))),
                Err(_) => Err(ConfigError::new(key, format!("{n} is more than {}", u32::MAX))),
            }?;
            conditions.push(Condition::CustomersAtLeast(n));
        }
        if let Some(words) = &self.words {
            conditions.push(Condition::Words(list(&format!("{key}.words"), words, |w| word(w))?));
        }
        if let Some(labels) = &self.labels {
            let key = format!("{key}.labels");
            if labels.is_empty() {
                return Err(ConfigError::new(key, "must list at least one label; omit it to match any labels"));
            }
            if labels.len() > CONDITION_VALUES_MAX {
                return Err(ConfigError::new(
                    key,
                    format!("{} labels is more than the limit of {CONDITION_VALUES_MAX}", labels.len()),
                ));
            }
            for (name, value) in labels {
                if name.is_empty() || name.chars().any(char::is_control) {
                    return Err(ConfigError::new(
                        key,
                        format!("label name {name:?} is empty or has control characters"),
                    ));
                }
                if name.chars().count().max(value.chars().count()) > LABEL_CHARS_MAX {
                    return Err(ConfigError::new(
                        format!("{key}.{name}"),
                        format!("label names and values are at most {LABEL_CHARS_MAX} characters"),
                    ));
                }
                conditions.push(Condition::Label { name: name.clone(), value: value.clone() });
            }
        }
        Ok(conditions)
    }
}

/// Checks a condition list: not empty, within the limit, and every item
/// valid per `item` (errors name the item's index).
fn list<T, U>(key: &str, values: &[T], item: impl Fn(&T) -> Result<U, String>) -> Result<Vec<U>, ConfigError> {
    if values.is_empty() {
        return Err(ConfigError::new(key, "must not be empty: an empty list never matches; omit the key instead"));
    }
    if values.len() > CONDITION_VALUES_MAX {
        return Err(ConfigError::new(
            key,
            format!("{} values is more than the limit of {CONDITION_VALUES_MAX}", values.len()),
        ));
    }
    values.iter().enumerate().map(|(i, v)| item(v).map_err(|p| ConfigError::new(format!("{key}[{i}]"), p))).collect()
}

/// Parses a configured severity.
fn severity(value: &str) -> Result<Severity, String> {
    value.parse().map_err(|_| format!("{value:?} is not a severity; expected sev1 to sev4"))
}

/// Checks a rule id: 1 to [`RULE_ID_CHARS_MAX`] characters of `[a-z0-9_-]`.
fn rule_id(id: &str) -> Result<String, String> {
    if id.is_empty() {
        return Err("must not be empty".into());
    }
    if let Some(c) = id.chars().find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_' || *c == '-')) {
        return Err(format!("{id:?} has the character {c:?}; use a-z 0-9 _ -"));
    }
    if id.len() > RULE_ID_CHARS_MAX {
        return Err(format!("{id:?} is longer than {RULE_ID_CHARS_MAX} characters"));
    }
    Ok(id.to_owned())
}

/// Checks a reason: trimmed non-empty, at most [`REASON_CHARS_MAX`]
/// characters.
fn reason(text: &str) -> Result<String, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("must not be empty".into());
    }
    if text.chars().count() > REASON_CHARS_MAX {
        return Err(format!("is longer than {REASON_CHARS_MAX} characters"));
    }
    Ok(text.to_owned())
}

/// Checks a configured word or phrase: it must hold at least one word and
/// at most [`WORD_CHARS_MAX`] characters.
fn word(text: &str) -> Result<Word, String> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err("the word is empty".into());
    }
    if trimmed.chars().count() > WORD_CHARS_MAX {
        return Err(format!("{trimmed:?} is longer than {WORD_CHARS_MAX} characters"));
    }
    let tokens = tokens(trimmed);
    if tokens.is_empty() {
        return Err(format!("{trimmed:?} has no letters or digits, so it can never match"));
    }
    Ok(Word { text: trimmed.to_lowercase(), tokens })
}

/// The words of `text`: maximal runs of letters and digits, lowercased.
fn tokens(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric()).filter(|t| !t.is_empty()).map(str::to_lowercase).collect()
}

// ---------------------------------------------------------------------------
// Facts and evaluation
// ---------------------------------------------------------------------------

/// What the rules look at: an incident's facts joined with the catalog.
///
/// A plain struct so that callers (and tests) can assess a report before any
/// incident exists, and so that [`Rules::explain`] can be run on what-if
/// facts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Facts {
    /// The affected service, when the report named one.
    pub service: Option<ServiceName>,
    /// The service's tier, when the service is catalogued.
    pub tier: Option<Tier>,
    /// How many customers are affected.
    pub customers_affected: u32,
    /// Whether more than one customer is affected.
    pub multi_customer: bool,
    /// The channel of the first report.
    pub source: ReportSource,
    /// The incident's title.
    pub title: String,
    /// The incident's description; may be empty.
    pub description: String,
    /// The first report's labels.
    pub labels: BTreeMap<String, String>,
}

impl Facts {
    /// The facts of `incident`, with its service's tier from `catalog`.
    pub fn of(incident: &Incident, catalog: &ServiceCatalog) -> Facts {
        let service = incident.service().cloned();
        Facts {
            tier: service.as_ref().and_then(|s| catalog.tier(s)),
            service,
            customers_affected: incident.customers_affected(),
            multi_customer: incident.multi_customer(),
            source: incident.source(),
            title: incident.title().to_owned(),
            description: incident.description().to_owned(),
            labels: incident.labels().clone(),
        }
    }
}

/// The result of evaluating the rules on some facts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assessment {
    /// The severity the rules give.
    pub severity: Severity,
    /// The id of the rule that matched; `None` when the default applied.
    pub rule_id: Option<String>,
    /// The matching rule's reason, or the default reason.
    pub reason: String,
    /// Each condition of the matching rule, in words, as it held (for
    /// example `service payments is tier 1`); empty for the default and for
    /// a rule that matches everything.
    pub reasons: Vec<String>,
}

/// The outcome of one condition of one rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConditionCheck {
    /// The condition, in words, such as `service tier is 1`.
    pub condition: String,
    /// Whether it held.
    pub held: bool,
    /// The fact that decided it, such as `service search is tier 2`.
    pub detail: String,
}

/// How one rule fared.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleExplanation {
    /// The rule's id.
    pub id: String,
    /// The severity the rule gives.
    pub severity: Severity,
    /// Whether every condition held (vacuously for a rule without
    /// conditions). A rule after the chosen one may match too.
    pub matched: bool,
    /// Whether this is the rule that gave the assessment: the first that
    /// matched.
    pub chosen: bool,
    /// Every condition, in order, each evaluated.
    pub conditions: Vec<ConditionCheck>,
}

/// Why the rules gave the severity they gave: the assessment and every rule
/// in order, each with every condition evaluated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Explanation {
    /// What [`Rules::evaluate`] returns for the same facts.
    pub assessment: Assessment,
    /// Every rule, in configuration order.
    pub rules: Vec<RuleExplanation>,
}

/// The facts, with the title and description split into words once.
struct Subject<'a> {
    facts: &'a Facts,
    title: Vec<String>,
    description: Vec<String>,
}

impl<'a> Subject<'a> {
    fn new(facts: &'a Facts) -> Subject<'a> {
        Subject { facts, title: tokens(&facts.title), description: tokens(&facts.description) }
    }
}

/// Whether `phrase` occurs as a contiguous run of `words`.
fn contains_phrase(words: &[String], phrase: &[String]) -> bool {
    !phrase.is_empty() && words.windows(phrase.len()).any(|w| w == phrase)
}

/// Joins values with commas and a final "or".
fn either<T: fmt::Display>(values: &[T]) -> String {
    let texts: Vec<String> = values.iter().map(ToString::to_string).collect();
    match texts.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
        _ => texts.concat(),
    }
}

impl Condition {
    /// The condition in words.
    fn describe(&self) -> String {
        match self {
            Condition::ReportedVia(sources) => format!("reported via {}", either(sources)),
            Condition::Service(services) => format!("service is {}", either(services)),
            Condition::ServiceTier(tiers) => format!("service is {}", either(tiers)),
            Condition::MultiCustomer(true) => "multi-customer".into(),
            Condition::MultiCustomer(false) => "not multi-customer".into(),
            Condition::CustomersAtLeast(n) => format!("at least {n} customers affected"),
            Condition::Words(words) => {
                let quoted: Vec<String> = words.iter().map(|w| format!("{:?}", w.text)).collect();
                format!("title or description has the word {}", either(&quoted))
            }
            Condition::Label { name, value } => format!("label {name} is {value:?}"),
        }
    }

    /// Whether the condition holds for `subject`, and the deciding fact in
    /// words.
    fn check(&self, subject: &Subject<'_>) -> (bool, String) {
        let facts = subject.facts;
        match self {
            Condition::ReportedVia(sources) => {
                (sources.contains(&facts.source), format!("reported via {}", facts.source))
            }
            Condition::Service(services) => match &facts.service {
                Some(service) => (services.contains(service), format!("service is {service}")),
                None => (false, "no service named".into()),
            },
            Condition::ServiceTier(tiers) => match (&facts.service, facts.tier) {
                (Some(service), Some(tier)) => (tiers.contains(&tier), format!("service {service} is {tier}")),
                (Some(service), None) => (false, format!("service {service} is not in the service catalog")),
                (None, _) => (false, "no service named".into()),
            },
            Condition::MultiCustomer(wanted) => {
                let detail = if facts.multi_customer { "multi-customer" } else { "not multi-customer" };
                (facts.multi_customer == *wanted, detail.into())
            }
            Condition::CustomersAtLeast(n) => {
                let count = facts.customers_affected;
                let held = count >= *n;
                (held, format!("{count} customers affected {} {n}", if held { ">=" } else { "<" }))
            }
            Condition::Words(words) => {
                let found = words.iter().find_map(|w| {
                    if contains_phrase(&subject.title, &w.tokens) {
                        Some(format!("the title has {:?}", w.text))
                    } else if contains_phrase(&subject.description, &w.tokens) {
                        Some(format!("the description has {:?}", w.text))
                    } else {
                        None
                    }
                });
                match found {
                    Some(detail) => (true, detail),
                    None => (false, "neither the title nor the description has any of the words".into()),
                }
            }
            Condition::Label { name, value } => match facts.labels.get(name) {
                Some(actual) => (actual == value, format!("label {name} is {actual:?}")),
                None => (false, format!("no label {name}")),
            },
        }
    }
}

impl Rule {
    /// Evaluates every condition.
    fn checks(&self, subject: &Subject<'_>) -> Vec<ConditionCheck> {
        self.conditions
            .iter()
            .map(|c| {
                let (held, detail) = c.check(subject);
                ConditionCheck { condition: c.describe(), held, detail }
            })
            .collect()
    }

    /// The assessment this rule gives when `checks` (its own) all held.
    fn assessment(&self, checks: Vec<ConditionCheck>) -> Assessment {
        Assessment {
            severity: self.severity,
            rule_id: Some(self.id.clone()),
            reason: self.reason.clone(),
            reasons: checks.into_iter().map(|c| c.detail).collect(),
        }
    }
}

impl Rules {
    /// The rules, in order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }
    /// The severity when no rule matches.
    pub fn default_severity(&self) -> Severity {
        self.default
    }
    /// The reason given when no rule matches.
    pub fn default_reason(&self) -> &str {
        &self.default_reason
    }

    /// The assessment when no rule matches.
    fn default_assessment(&self) -> Assessment {
        Assessment { severity: self.default, rule_id: None, reason: self.default_reason.clone(), reasons: vec![] }
    }

    /// Assesses `facts`: the first rule whose conditions all hold gives the
    /// severity, or the default applies. Total and pure: the same facts
    /// always give the same assessment, equal to
    /// `self.explain(facts).assessment`.
    pub fn evaluate(&self, facts: &Facts) -> Assessment {
        let subject = Subject::new(facts);
        for rule in &self.rules {
            let checks = rule.checks(&subject);
            if checks.iter().all(|c| c.held) {
                return rule.assessment(checks);
            }
        }
        self.default_assessment()
    }

    /// Explains the assessment of `facts`: every rule in order, every
    /// condition evaluated, even after the chosen rule (see the
    /// [module documentation](self)).
    pub fn explain(&self, facts: &Facts) -> Explanation {
        let subject = Subject::new(facts);
        let mut assessment = None;
        let rules = self
            .rules
            .iter()
            .map(|rule| {
                let conditions = rule.checks(&subject);
                let matched = conditions.iter().all(|c| c.held);
                let chosen = matched && assessment.is_none();
                if chosen {
                    assessment = Some(rule.assessment(conditions.clone()));
                }
                RuleExplanation { id: rule.id.clone(), severity: rule.severity, matched, chosen, conditions }
            })
            .collect();
        Explanation { assessment: assessment.unwrap_or_else(|| self.default_assessment()), rules }
    }

    /// Checks that every service a `service` condition names is in
    /// `catalog`, since a misspelt name silently never matches. `key_prefix`
    /// is the one given to [`SeverityConfig::validate`].
    pub fn check_services(&self, catalog: &ServiceCatalog, key_prefix: &str) -> Result<(), ConfigError> {
        for (i, rule) in self.rules.iter().enumerate() {
            for condition in &rule.conditions {
                let Condition::Service(services) = condition else { continue };
                if let Some((j, unknown)) = services.iter().enumerate().find(|(_, s)| catalog.get(s).is_none()) {
                    return Err(ConfigError::new(
                        format!("{key_prefix}.rules[{i}].when.service[{j}]"),
                        format!("service {unknown} is not in the service catalog"),
                    ));
                }
            }
        }
        Ok(())
    }
}

impl Explanation {
    /// The explanation as human text, one line per item, for
    /// `klaxon severity explain`: the assessment first, then each rule with
    /// its outcome and each condition marked `yes` or `no`.
    pub fn render(&self) -> Vec<String> {
        let a = &self.assessment;
        let mut lines = vec![match &a.rule_id {
            Some(id) => format!("{} by rule {id}: {}", a.severity, a.reason),
            None => format!("{} by default: {}", a.severity, a.reason),
        }];
        if !a.reasons.is_empty() {
            lines.push(format!("  because {}", a.reasons.join("; ")));
        }
        if self.rules.is_empty() {
            lines.push("No rules are configured.".into());
            return lines;
        }
        lines.push("Rules, in order (the first that matches wins):".into());
        for (i, rule) in self.rules.iter().enumerate() {
            let outcome = match (rule.chosen, rule.matched) {
                (true, _) => "matches, chosen",
                (false, true) => "matches too, but an earlier rule won",
                (false, false) => "does not match",
            };
            lines.push(format!("  {}. {} ({}): {outcome}", i + 1, rule.id, rule.severity));
            if rule.conditions.is_empty() {
                lines.push("       (no conditions: matches everything)".into());
            }
            for check in &rule.conditions {
                let mark = if check.held { "yes" } else { "no " };
                lines.push(format!("       {mark} {}: {}", check.condition, check.detail));
            }
        }
        lines
    }
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for line in self.render() {
            writeln!(f, "{line}")?;
        }
        Ok(())
    }
}

/// Decides whether the evaluator should record a new assessment of
/// `incident`, and which.
///
/// Returns `None` when:
///
/// - a manager overrode the severity: the evaluator never changes an
///   overridden severity, whatever the facts say later;
/// - the incident is Resolved or Closed: nothing is assessed after the fact
///   (a reopened incident is Declared again and is assessed);
/// - the assessment gives the incident's current severity: the evaluator
///   appends only when the result changes;
/// - a manager declared the incident and the assessment is *less* severe
///   than its severity: after a declaration the evaluator may raise the
///   severity on new facts, never lower a manager's choice.
///
/// An incident's first assessment (Reported, no severity yet) is always
/// `Some`. Assessments are recorded as `incident.severity_assessed.v1`,
/// which sets the incident's severity, so comparing with the incident is
/// comparing with the last assessment.
pub fn reassess(incident: &Incident, rules: &Rules, catalog: &ServiceCatalog) -> Option<Assessment> {
    if incident.severity_overridden() || matches!(incident.status(), Status::Resolved | Status::Closed) {
        return None;
    }
    let assessment = rules.evaluate(&Facts::of(incident, catalog));
    let current = incident.severity();
    if current == Some(assessment.severity) {
        return None;
    }
    if let (Some(current), Some(_)) = (current, incident.declared_at()) {
        if !assessment.severity.is_at_least(current) {
            return None;
        }
    }
    Some(assessment)
}
