//! The service catalog: every service Klaxon knows, its team, tier,
//! runbook and escalation policy (the `[[services]]` tables). Severity rules
//! read its tiers, paging its escalation policies, authorization its teams.
//!
//! The binary parses the `[[services]]` array into a [`ServiceCatalogConfig`]
//! and validates it into a [`ServiceCatalog`]; errors name the key path,
//! such as `services[3].tier`.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::ConfigError;
use crate::Error;
use crate::ids::ServiceName;

#[cfg(test)]
mod tests;

/// The most services the catalog may hold.
pub const SERVICES_MAX: usize = 10_000;
/// The longest team or escalation policy name, in characters.
pub const NAME_CHARS_MAX: usize = 64;
/// The longest runbook URL, in characters.
pub const RUNBOOK_CHARS_MAX: usize = 2_048;
/// The longest public name of a service, in characters.
pub const PUBLIC_NAME_CHARS_MAX: usize = 80;

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
    pub(crate) fn from_config(n: i64) -> Result<Tier, String> {
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

/// What the catalog said of an incident's service at the moment intake
/// recorded the incident's report or declaration: the team that owned the
/// service and its tier then. Recorded in those events (see
/// [`crate::incident::Reported::catalogued`]) so that the incident keeps
/// them when a configuration reload moves the service to another team or
/// tier, and a rebuild from the log files it where the running service did.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Catalogued {
    /// The team that owned the service.
    pub team: String,
    /// The service's tier.
    pub tier: Tier,
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
    /// The team and tier of `service` as the catalog gives them now, to
    /// record in an incident's events; `None` for a service the catalog
    /// does not hold.
    pub fn catalogued(&self, service: &ServiceName) -> Option<Catalogued> {
        self.get(service).map(|e| Catalogued { team: e.team.clone(), tier: e.tier })
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
pub(crate) fn id_problem(value: &str, error: Error) -> String {
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
