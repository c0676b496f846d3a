//! Severity rules: every incoming report is triaged by an ordered list of
//! rules over the incident's [`Facts`]; the first rule whose conditions all
//! hold gives the severity, and a default applies when none does.
//!
//! # Configuration
//!
//! The binary parses the `[severity]` table into a [`SeverityConfig`] and
//! validates it into [`Rules`] (the `[[services]]` tables are the
//! [catalog](crate::catalog), whose tiers and names the rules read). Validation
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
//!
//! # Modules
//!
//! - `config`: the `[severity]` table as written and its validation into
//!   [`Rules`].
//! - `evaluate`: [`Facts`], [`Rules::evaluate`] and [`Rules::explain`].
//! - `shadow`: [`Rules::shadowed`], the rules an earlier rule always beats.
//! - here: the validated [`Rules`], and [`reassess`] / [`assess`], the
//!   evaluator's decision.

use chrono::{DateTime, Utc};

use crate::catalog::{ServiceCatalog, Tier};
use crate::ids::{ActorId, ReportSource, ServiceName, Severity};
use crate::incident::{Change, Incident, IncidentEvent, SeverityAssessed, Status};

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

mod config;
mod evaluate;
mod shadow;

pub use config::{ConditionsConfig, RuleConfig, SeverityConfig};
pub use evaluate::{Assessment, ConditionCheck, Explanation, Facts, RuleExplanation};
pub use shadow::Shadowed;

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

/// Decides whether the evaluator should record a new assessment of
/// `incident`, and which.
///
/// The rule: **a severity set by a person is never changed by the
/// evaluator.** Declaring an incident sets its first severity (a manager's
/// choice), and an override changes it; from then on only people change it.
/// So the evaluator assesses only Reported incidents, and returns `None`
/// when:
///
/// - the incident was declared (Declared, Mitigated, Resolved, Closed, or
///   reopened, which is Declared again): the severity is a manager's, and a
///   manager overrides it when new facts call for it (`klaxon severity
///   explain` says what the rules would give);
/// - the assessment gives the incident's current severity: the evaluator
///   appends only when the result changes.
///
/// An incident's first assessment (Reported, no severity yet) is always
/// `Some`. Assessments are recorded as `incident.severity_assessed.v1`,
/// which sets the severity of a Reported incident only: one decided on the
/// report that lands after the declaration (the evaluator decides on what
/// it has folded, and a manager may declare in between) stays in the log
/// and changes nothing (see [`crate::incident::evolve`]).
pub fn reassess(incident: &Incident, rules: &Rules, catalog: &ServiceCatalog) -> Option<Assessment> {
    if incident.status() != Status::Reported {
        return None;
    }
    let assessment = rules.evaluate(&Facts::of(incident, catalog));
    if incident.severity() == Some(assessment.severity) {
        return None;
    }
    Some(assessment)
}

/// The actor id of the severity evaluator, the `by` of every assessment.
pub const SEVERITY_ACTOR: &str = "klaxon-severity";

/// The severity evaluator as an actor: `klaxon-severity`.
pub fn severity_actor() -> ActorId {
    ActorId::new(SEVERITY_ACTOR).expect("a valid actor id")
}

/// The evaluator's reaction to what it knows of `incident`: the
/// `incident.severity_assessed.v1` to record, when [`reassess`] says the
/// severity should change. It is stamped `at` (the time of the event that
/// made the evaluator look) and by [`SEVERITY_ACTOR`], so looking again at
/// the same facts yields the same event.
pub fn assess(
    incident: &Incident,
    rules: &Rules,
    catalog: &ServiceCatalog,
    at: DateTime<Utc>,
) -> Option<IncidentEvent> {
    let assessment = reassess(incident, rules, catalog)?;
    Some(IncidentEvent {
        incident: incident.id(),
        at,
        by: severity_actor(),
        change: Change::SeverityAssessed(SeverityAssessed {
            severity: assessment.severity,
            rule: assessment.rule_id,
            reason: assessment.reason,
            reasons: assessment.reasons,
        }),
    })
}
