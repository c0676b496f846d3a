//! Evaluating the rules on an incident's [`Facts`]: the first matching
//! rule's [`Assessment`], and the [`Explanation`] of every rule and
//! condition.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::config::tokens;
use super::{Condition, Rule, Rules};
use crate::ConfigError;
use crate::catalog::{ServiceCatalog, Tier};
use crate::ids::{ReportSource, ServiceName, Severity};
use crate::incident::Incident;
use crate::text::counted;

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
    /// The facts of `incident`, with its service's tier as its events
    /// recorded it (the catalog's when intake recorded the report), else,
    /// when they recorded none, from `catalog` (see [`Incident::tier`]).
    pub fn of(incident: &Incident, catalog: &ServiceCatalog) -> Facts {
        let service = incident.service().cloned();
        Facts {
            tier: incident.tier(catalog),
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
    pub(super) fn describe(&self) -> String {
        match self {
            Condition::ReportedVia(sources) => format!("reported via {}", either(sources)),
            Condition::Service(services) => format!("service is {}", either(services)),
            Condition::ServiceTier(tiers) => format!("service is {}", either(tiers)),
            Condition::MultiCustomer(true) => "multi-customer".into(),
            Condition::MultiCustomer(false) => "not multi-customer".into(),
            Condition::CustomersAtLeast(n) => format!("at least {} affected", counted(*n, "customer")),
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
                (held, format!("{} affected {} {n}", counted(count, "customer"), if held { ">=" } else { "<" }))
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
