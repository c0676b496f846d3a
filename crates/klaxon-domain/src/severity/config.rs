//! The `[severity]` table: as written in the file, and its validation into
//! [`Rules`], with errors naming the key path.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{
    CONDITION_VALUES_MAX, Condition, LABEL_CHARS_MAX, REASON_CHARS_MAX, RULE_ID_CHARS_MAX, RULES_MAX, Rule, Rules,
    WORD_CHARS_MAX, Word,
};
use crate::ConfigError;
use crate::catalog::{Tier, id_problem};
use crate::ids::{ReportSource, ServiceName, Severity};

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
pub(super) fn tokens(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric()).filter(|t| !t.is_empty()).map(str::to_lowercase).collect()
}
