//! Given a rule set and facts, then an assessment; given a configuration,
//! then rules or an error.

use chrono::{DateTime, Utc};
use expect_test::{Expect, expect};
use proptest::prelude::*;
use serde_json::{Value, json};

use std::collections::BTreeMap;

use super::*;
use crate::ConfigError;
use crate::catalog::{ServiceCatalog, ServiceCatalogConfig};
use crate::ids::{ActorId, CustomerId, IncidentId};
use crate::incident::{Command, decide, evolve};

// ----- fixtures ------------------------------------------------------------

fn catalog() -> ServiceCatalog {
    let config: ServiceCatalogConfig = serde_json::from_value(json!([
        { "name": "payments", "team": "payments", "tier": 1,
          "runbook": "https://runbooks.example/payments", "escalation_policy": "payments" },
        { "name": "search", "team": "discovery", "tier": 2, "escalation_policy": "discovery" },
        { "name": "docs", "team": "web", "tier": 3, "escalation_policy": "web" },
    ]))
    .unwrap();
    config.validate("services").unwrap()
}

/// The example rule set of the configuration documentation.
fn example_config() -> Value {
    json!({
        "default": "sev4",
        "default_reason": "No rule matched",
        "rules": [
            { "id": "exec-escalation", "severity": "sev1", "reason": "An executive escalated it",
              "when": { "reported_via": ["executive"] } },
            { "id": "tier1-multi-customer", "severity": "sev1", "reason": "Several customers hit on a tier-1 service",
              "when": { "service_tier": [1], "multi_customer": true } },
            { "id": "many-customers", "severity": "sev2", "reason": "At least 10 customers affected",
              "when": { "customers_affected_at_least": 10 } },
            { "id": "outage-words", "severity": "sev2", "reason": "Reported as an outage",
              "when": { "words": ["outage", "down", "unavailable"] } },
            { "id": "critical-alert", "severity": "sev2", "reason": "Alertmanager says critical",
              "when": { "labels": { "severity": "critical" } } },
            { "id": "help-desk-login", "severity": "sev3", "reason": "Customers cannot log in",
              "when": { "reported_via": ["help_desk", "manual"], "words": ["login fails", "cannot log in"] } },
        ]
    })
}

fn rules_of(config: Value) -> Result<Rules, ConfigError> {
    serde_json::from_value::<SeverityConfig>(config).unwrap().validate("severity")
}

fn example() -> Rules {
    rules_of(example_config()).unwrap()
}

/// Facts built step by step; the tier comes from [`catalog`].
#[derive(Clone)]
struct F(Facts);

fn f() -> F {
    F(Facts {
        service: None,
        tier: None,
        customers_affected: 0,
        multi_customer: false,
        source: ReportSource::Api,
        title: "Something is off".into(),
        description: String::new(),
        labels: BTreeMap::new(),
    })
}

impl F {
    fn service(mut self, name: &str) -> F {
        let name = ServiceName::new(name).unwrap();
        self.0.tier = catalog().tier(&name);
        self.0.service = Some(name);
        self
    }
    fn customers(mut self, n: u32) -> F {
        self.0.customers_affected = n;
        self.0.multi_customer = n > 1;
        self
    }
    fn multi(mut self, multi: bool) -> F {
        self.0.multi_customer = multi;
        self
    }
    fn via(mut self, source: ReportSource) -> F {
        self.0.source = source;
        self
    }
    fn title(mut self, title: &str) -> F {
        self.0.title = title.into();
        self
    }
    fn description(mut self, description: &str) -> F {
        self.0.description = description.into();
        self
    }
    fn label(mut self, name: &str, value: &str) -> F {
        self.0.labels.insert(name.into(), value.into());
        self
    }
}

// ----- evaluation ----------------------------------------------------------

/// Evaluates `facts` with the example rules and expects `"<rule id> <SEV>"`
/// (or `"default SEV4"`); the explanation must agree.
#[track_caller]
fn check(facts: F, expected: &str) {
    let rules = example();
    let assessment = rules.evaluate(&facts.0);
    let got = format!("{} {}", assessment.rule_id.as_deref().unwrap_or("default"), assessment.severity);
    assert_eq!(got, expected, "for {:?}", facts.0);
    assert_eq!(rules.explain(&facts.0).assessment, assessment);
}

#[test]
fn first_matching_rule_gives_the_severity() {
    use ReportSource::*;
    // The default.
    check(f(), "default SEV4");
    check(f().service("docs").customers(1), "default SEV4");
    // Single conditions.
    check(f().via(Executive), "exec-escalation SEV1");
    check(f().customers(10), "many-customers SEV2");
    check(f().customers(9), "default SEV4");
    check(f().label("severity", "critical"), "critical-alert SEV2");
    // Order: the first match wins even when later rules match too.
    check(f().via(Executive).service("payments").customers(50).title("Checkout down"), "exec-escalation SEV1");
    check(f().service("payments").customers(50).title("Checkout down"), "tier1-multi-customer SEV1");
    check(f().customers(50).title("Checkout down").label("severity", "critical"), "many-customers SEV2");
    check(f().title("Checkout down").label("severity", "critical"), "outage-words SEV2");
    // AND: a tier-1 service without several customers, several customers on tier 2.
    check(f().service("payments").customers(1), "default SEV4");
    check(f().service("search").customers(3), "default SEV4");
    check(f().service("payments").customers(3), "tier1-multi-customer SEV1");
    check(f().service("payments").customers(1).multi(true), "tier1-multi-customer SEV1");
    // A service the catalog does not know has no tier.
    check(f().service("ghost").customers(3), "default SEV4");
    // OR within a list.
    check(f().title("Checkout unavailable"), "outage-words SEV2");
    check(f().title("Full outage in eu-west"), "outage-words SEV2");
    check(f().via(HelpDesk).title("Login fails for ACME"), "help-desk-login SEV3");
    check(f().via(Manual).description("They cannot log in since 9:00"), "help-desk-login SEV3");
    check(f().via(Alertmanager).title("Login fails for ACME"), "default SEV4");
    // Whole words only, in the title or the description, without case.
    check(f().title("Download is slow"), "default SEV4");
    check(f().title("Downtime planned"), "default SEV4");
    check(f().title("Outages page is stale"), "default SEV4");
    check(f().title("DOWN!"), "outage-words SEV2");
    check(f().title("api-down"), "outage-words SEV2");
    check(f().title("ok").description("The site is Down (since 9:00)."), "outage-words SEV2");
    // A phrase matches its words in sequence, with any separator.
    check(f().via(HelpDesk).title("login-fails"), "help-desk-login SEV3");
    check(f().via(HelpDesk).title("fails login"), "default SEV4");
    check(f().via(HelpDesk).title("login; then it fails"), "default SEV4");
    // Labels: exact value, case-sensitive; a missing label does not hold.
    check(f().label("severity", "warning"), "default SEV4");
    check(f().label("severity", "Critical"), "default SEV4");
    check(f().label("sev", "critical"), "default SEV4");
}

#[test]
fn assessment_carries_the_reasons_in_words() {
    let facts = f().service("payments").customers(3).0;
    assert_eq!(
        example().evaluate(&facts),
        Assessment {
            severity: Severity::Sev1,
            rule_id: Some("tier1-multi-customer".into()),
            reason: "Several customers hit on a tier-1 service".into(),
            reasons: vec!["service payments is tier 1".into(), "multi-customer".into()],
        }
    );
    let facts = f().customers(12).0;
    assert_eq!(example().evaluate(&facts).reasons, ["12 customers affected >= 10"]);
    assert_eq!(
        example().evaluate(&f().0),
        Assessment { severity: Severity::Sev4, rule_id: None, reason: "No rule matched".into(), reasons: vec![] }
    );
}

#[test]
fn a_catch_all_rule_last_replaces_the_default() {
    let mut config = example_config();
    let rules = config["rules"].as_array_mut().unwrap();
    rules.push(json!({ "id": "catch-all", "severity": "3", "reason": "Everything else" }));
    let rules = rules_of(config).unwrap();
    let assessment = rules.evaluate(&f().0);
    assert_eq!((assessment.rule_id.as_deref(), assessment.severity), (Some("catch-all"), Severity::Sev3));
    assert!(assessment.reasons.is_empty());
}

// ----- explanations --------------------------------------------------------

#[track_caller]
fn check_explain(facts: F, expected: Expect) {
    expected.assert_eq(&example().explain(&facts.0).to_string());
}

#[test]
fn explain_a_tier1_multi_customer_outage() {
    check_explain(
        f().via(ReportSource::Alertmanager)
            .service("payments")
            .customers(12)
            .title("Checkout down")
            .label("severity", "critical"),
        expect![[r#"
            SEV1 by rule tier1-multi-customer: Several customers hit on a tier-1 service
              because service payments is tier 1; multi-customer
            Rules, in order (the first that matches wins):
              1. exec-escalation (SEV1): does not match
                   no  reported via executive: reported via alertmanager
              2. tier1-multi-customer (SEV1): matches, chosen
                   yes service is tier 1: service payments is tier 1
                   yes multi-customer: multi-customer
              3. many-customers (SEV2): matches too, but an earlier rule won
                   yes at least 10 customers affected: 12 customers affected >= 10
              4. outage-words (SEV2): matches too, but an earlier rule won
                   yes title or description has the word "outage", "down" or "unavailable": the title has "down"
              5. critical-alert (SEV2): matches too, but an earlier rule won
                   yes label severity is "critical": label severity is "critical"
              6. help-desk-login (SEV3): does not match
                   no  reported via help_desk or manual: reported via alertmanager
                   no  title or description has the word "login fails" or "cannot log in": neither the title nor the description has any of the words
        "#]],
    );
}

#[test]
fn explain_the_default() {
    check_explain(
        f().via(ReportSource::HelpDesk).service("ghost").customers(1).title("Download is slow"),
        expect![[r#"
            SEV4 by default: No rule matched
            Rules, in order (the first that matches wins):
              1. exec-escalation (SEV1): does not match
                   no  reported via executive: reported via help_desk
              2. tier1-multi-customer (SEV1): does not match
                   no  service is tier 1: service ghost is not in the service catalog
                   no  multi-customer: not multi-customer
              3. many-customers (SEV2): does not match
                   no  at least 10 customers affected: 1 customer affected < 10
              4. outage-words (SEV2): does not match
                   no  title or description has the word "outage", "down" or "unavailable": neither the title nor the description has any of the words
              5. critical-alert (SEV2): does not match
                   no  label severity is "critical": no label severity
              6. help-desk-login (SEV3): does not match
                   yes reported via help_desk or manual: reported via help_desk
                   no  title or description has the word "login fails" or "cannot log in": neither the title nor the description has any of the words
        "#]],
    );
}

#[test]
fn explain_a_help_desk_ticket_without_a_service() {
    check_explain(
        f().via(ReportSource::HelpDesk)
            .customers(2)
            .title("ACME")
            .description("Users cannot log in")
            .label("severity", "warning"),
        expect![[r#"
            SEV3 by rule help-desk-login: Customers cannot log in
              because reported via help_desk; the description has "cannot log in"
            Rules, in order (the first that matches wins):
              1. exec-escalation (SEV1): does not match
                   no  reported via executive: reported via help_desk
              2. tier1-multi-customer (SEV1): does not match
                   no  service is tier 1: no service named
                   yes multi-customer: multi-customer
              3. many-customers (SEV2): does not match
                   no  at least 10 customers affected: 2 customers affected < 10
              4. outage-words (SEV2): does not match
                   no  title or description has the word "outage", "down" or "unavailable": neither the title nor the description has any of the words
              5. critical-alert (SEV2): does not match
                   no  label severity is "critical": label severity is "warning"
              6. help-desk-login (SEV3): matches, chosen
                   yes reported via help_desk or manual: reported via help_desk
                   yes title or description has the word "login fails" or "cannot log in": the description has "cannot log in"
        "#]],
    );
}

#[test]
fn explain_without_rules() {
    let rules = rules_of(json!({ "default": "SEV-2" })).unwrap();
    expect![[r#"
        SEV2 by default: No rule matched
        No rules are configured.
    "#]]
    .assert_eq(&rules.explain(&f().0).to_string());
}

// ----- configuration -------------------------------------------------------

/// A configuration with the default `sev4` and `rules`.
fn with_rules(rules: Value) -> Value {
    json!({ "default": "sev4", "rules": rules })
}

/// A configuration with one rule `r1` giving `sev2` when `when`.
fn when(when: Value) -> Value {
    with_rules(json!([{ "id": "r1", "severity": "sev2", "reason": "Because", "when": when }]))
}

/// Validating `config` fails with exactly `expected`.
#[track_caller]
fn bad(config: Value, expected: &str) {
    match rules_of(config) {
        Ok(rules) => panic!("accepted: {rules:?}"),
        Err(e) => assert_eq!(e.to_string(), expected),
    }
}

#[test]
fn bad_severity_configs_name_the_key() {
    let rule = |id: &str, severity: &str, reason: &str| json!({ "id": id, "severity": severity, "reason": reason, "when": { "multi_customer": true } });
    let catch_all = |id: &str| json!({ "id": id, "severity": "sev3", "reason": "Everything else" });
    bad(json!({ "default": "sev5" }), r#"severity.default: "sev5" is not a severity; expected sev1 to sev4"#);
    bad(json!({ "default": "sev4", "default_reason": " " }), "severity.default_reason: must not be empty");
    bad(
        with_rules(json!([rule("a", "sev1", "A"), rule("b", "sev2", "B"), rule("c", "sev9", "C")])),
        r#"severity.rules[2].severity: "sev9" is not a severity; expected sev1 to sev4"#,
    );
    bad(with_rules(json!([rule("", "sev1", "A")])), "severity.rules[0].id: must not be empty");
    bad(
        with_rules(json!([rule("Exec", "sev1", "A")])),
        r#"severity.rules[0].id: "Exec" has the character 'E'; use a-z 0-9 _ -"#,
    );
    bad(
        with_rules(json!([rule(&"x".repeat(65), "sev1", "A")])),
        &format!("severity.rules[0].id: {:?} is longer than 64 characters", "x".repeat(65)),
    );
    bad(with_rules(json!([rule("a", "sev1", "")])), "severity.rules[0].reason: must not be empty");
    bad(
        with_rules(json!([rule("a", "sev1", "A"), rule("b", "sev2", "B"), rule("a", "sev3", "C")])),
        r#"severity.rules[2].id: duplicate rule id "a": severity.rules[0] has it too"#,
    );
    bad(
        with_rules(json!([rule("a", "sev1", "A"), catch_all("everything"), rule("late", "sev2", "C")])),
        "severity.rules[2]: rule late can never match: rule everything before it matches everything",
    );
    bad(
        when(json!({ "service_tier": [1, 4] })),
        "severity.rules[0].when.service_tier[1]: 4 is not a tier; expected 1, 2 or 3",
    );
    bad(
        when(json!({ "service_tier": [0] })),
        "severity.rules[0].when.service_tier[0]: 0 is not a tier; expected 1, 2 or 3",
    );
    bad(
        when(json!({ "service_tier": [-1] })),
        "severity.rules[0].when.service_tier[0]: -1 is not a tier; expected 1, 2 or 3",
    );
    bad(
        when(json!({ "service_tier": [] })),
        "severity.rules[0].when.service_tier: must not be empty: an empty list never matches; omit the key instead",
    );
    bad(
        when(json!({ "customers_affected_at_least": 0 })),
        "severity.rules[0].when.customers_affected_at_least: 0 is pointless: every incident has at least 0 customers affected",
    );
    bad(
        when(json!({ "customers_affected_at_least": -3 })),
        "severity.rules[0].when.customers_affected_at_least: -3 is not a count; expected at least 1",
    );
    bad(
        when(json!({ "customers_affected_at_least": 5_000_000_000_i64 })),
        "severity.rules[0].when.customers_affected_at_least: 5000000000 is more than 4294967295",
    );
    bad(when(json!({ "words": ["down", ""] })), "severity.rules[0].when.words[1]: the word is empty");
    bad(when(json!({ "words": ["  "] })), "severity.rules[0].when.words[0]: the word is empty");
    bad(
        when(json!({ "words": ["--"] })),
        r#"severity.rules[0].when.words[0]: "--" has no letters or digits, so it can never match"#,
    );
    bad(
        when(json!({ "words": [] })),
        "severity.rules[0].when.words: must not be empty: an empty list never matches; omit the key instead",
    );
    bad(
        when(json!({ "reported_via": ["executive", "pagerduty"] })),
        r#"severity.rules[0].when.reported_via[1]: "pagerduty" is not a report source; expected one of manual, api, alertmanager, pager_duty, help_desk, executive"#,
    );
    bad(
        when(json!({ "service": ["Payments"] })),
        r#"severity.rules[0].when.service[0]: "Payments": must start with a lowercase letter or a digit"#,
    );
    bad(
        when(json!({ "labels": {} })),
        "severity.rules[0].when.labels: must list at least one label; omit it to match any labels",
    );
    bad(
        when(json!({ "labels": { "": "x" } })),
        r#"severity.rules[0].when.labels: label name "" is empty or has control characters"#,
    );
    let many: Vec<String> = (0..65).map(|i| format!("w{i}")).collect();
    bad(when(json!({ "words": many })), "severity.rules[0].when.words: 65 values is more than the limit of 64");
}

#[test]
fn unknown_keys_are_rejected_by_the_parser_with_their_name() {
    #[track_caller]
    fn unparsable(config: Value, key: &str) {
        let e = serde_json::from_value::<SeverityConfig>(config).unwrap_err().to_string();
        assert!(e.contains(&format!("unknown field `{key}`")), "{e}");
    }
    unparsable(when(json!({ "customers_at_least": 3 })), "customers_at_least");
    unparsable(
        json!({ "default": "sev4", "rules": [{ "id": "a", "severity": "sev1", "reason": "r", "if": {} }] }),
        "if",
    );
    unparsable(json!({ "default": "sev4", "fallback": "sev3" }), "fallback");
}

#[test]
fn good_configs_are_accepted() {
    let rules = example();
    let ids: Vec<&str> = rules.rules().iter().map(Rule::id).collect();
    assert_eq!(
        ids,
        [
            "exec-escalation",
            "tier1-multi-customer",
            "many-customers",
            "outage-words",
            "critical-alert",
            "help-desk-login"
        ]
    );
    assert_eq!(rules.rules()[1].conditions(), ["service is tier 1", "multi-customer"]);
    assert_eq!((rules.default_severity(), rules.default_reason()), (Severity::Sev4, "No rule matched"));
    // Every spelling the severity parser accepts; multi_customer = false is a condition.
    let rules = rules_of(when(json!({ "multi_customer": false }))).unwrap();
    assert_eq!(rules.evaluate(&f().customers(1).0).rule_id.as_deref(), Some("r1"));
    assert_eq!(rules.evaluate(&f().customers(2).0).rule_id, None);
    assert!(rules_of(json!({ "default": "SEV-1", "rules": [] })).is_ok());
}

#[test]
fn service_conditions_are_checked_against_the_catalog() {
    let rules = rules_of(with_rules(json!([
        { "id": "a", "severity": "sev2", "reason": "A", "when": { "service": ["payments"] } },
        { "id": "b", "severity": "sev2", "reason": "B", "when": { "service": ["search", "payment"] } },
    ])))
    .unwrap();
    let e = rules.check_services(&catalog(), "severity").unwrap_err();
    assert_eq!(e.to_string(), "severity.rules[1].when.service[1]: service payment is not in the service catalog");
    assert_eq!(rules.evaluate(&f().service("payments").0).rule_id.as_deref(), Some("a"));
    assert_eq!(rules.evaluate(&f().service("docs").0).rule_id, None);
}

// ----- reassess ------------------------------------------------------------

fn actor(name: &str) -> ActorId {
    ActorId::new(name).unwrap()
}

/// The incident after `commands`, each decided a minute after the last.
fn incident(commands: &[Command]) -> Incident {
    let start: DateTime<Utc> = "2026-03-01T12:00:00Z".parse().unwrap();
    let id = IncidentId::from_number(7).unwrap();
    let mut state = None;
    for (i, command) in commands.iter().enumerate() {
        let at = start + chrono::Duration::minutes(i as i64);
        let events = decide(state.as_ref(), command, &id, &actor("alice"), at).unwrap();
        state = events.iter().fold(state, evolve);
    }
    state.unwrap()
}

fn report(service: &str, customers: &[&str]) -> Command {
    Command::ReportIssue {
        source: ReportSource::Alertmanager,
        reporter: actor("alertmanager"),
        title: "Checkout is slow".into(),
        description: String::new(),
        service: Some(ServiceName::new(service).unwrap()),
        customers: customers.iter().map(|c| CustomerId::new(*c).unwrap()).collect(),
        labels: BTreeMap::new(),
        dedup_key: None,
        started_at: None,
    }
}
fn declare(severity: Severity) -> Command {
    Command::DeclareIncident { severity }
}
fn impact(customers_affected: u32) -> Command {
    Command::RecordCustomerImpact {
        customers_affected,
        customers: vec![],
        multi_customer: false,
        summary: "checkout fails".into(),
    }
}

/// `reassess` of the incident after `commands` gives `expected`: `"-"` for
/// `None`, else `"<rule id> <SEV>"`.
#[track_caller]
fn check_reassess(commands: &[Command], expected: &str) {
    let got = reassess(&incident(commands), &example(), &catalog());
    let got = got.map_or("-".into(), |a| format!("{} {}", a.rule_id.as_deref().unwrap_or("default"), a.severity));
    assert_eq!(got, expected);
}

#[test]
fn reassess_appends_only_changes_and_never_changes_a_severity_a_person_set() {
    use crate::incident::Command as C;
    let resolve = || C::Resolve { summary: "fixed".into() };
    // Not declared yet: the first assessment, then changes only.
    check_reassess(&[report("payments", &[])], "default SEV4");
    check_reassess(&[report("payments", &["acme", "globex"])], "tier1-multi-customer SEV1");
    check_reassess(&[report("search", &[]), impact(10)], "many-customers SEV2");
    // Declared: the severity is the manager's, whatever the facts say later,
    // higher or lower.
    check_reassess(&[report("payments", &[]), declare(Severity::Sev4)], "-");
    check_reassess(&[report("payments", &[]), declare(Severity::Sev4), impact(3)], "-");
    check_reassess(&[report("search", &[]), declare(Severity::Sev1), impact(10)], "-");
    check_reassess(&[report("search", &[]), declare(Severity::Sev3), impact(10)], "-");
    let overridden = C::OverrideSeverity { severity: Severity::Sev3, reason: "known flaky".into() };
    check_reassess(&[report("payments", &[]), declare(Severity::Sev4), overridden, impact(30)], "-");
    // Mitigated, resolved, closed or reopened: still a person's severity.
    let mitigate = C::Mitigate { summary: "rolled back".into() };
    check_reassess(&[report("payments", &[]), declare(Severity::Sev4), impact(30), mitigate], "-");
    check_reassess(&[report("payments", &[]), declare(Severity::Sev4), impact(30), resolve()], "-");
    let close = C::ValidateResolution { note: "verified".into() };
    check_reassess(&[report("payments", &[]), declare(Severity::Sev4), impact(30), resolve(), close], "-");
    let reopen = C::Reopen { reason: "back".into() };
    check_reassess(&[report("payments", &[]), declare(Severity::Sev4), impact(30), resolve(), reopen], "-");
}

#[test]
fn facts_of_an_incident() {
    let facts = Facts::of(&incident(&[report("payments", &["acme", "globex"])]), &catalog());
    assert_eq!(
        facts,
        Facts {
            service: Some(ServiceName::new("payments").unwrap()),
            tier: Tier::new(1),
            customers_affected: 2,
            multi_customer: true,
            source: ReportSource::Alertmanager,
            title: "Checkout is slow".into(),
            description: String::new(),
            labels: BTreeMap::new(),
        }
    );
}

// ----- properties ----------------------------------------------------------

const WORDS: &[&str] =
    &["down", "Download", "OUTAGE", "outages", "login", "fails", "slow", "the", "cannot", "log", "in"];

fn arb_when() -> impl Strategy<Value = Value> {
    let sources =
        prop::sample::subsequence(vec!["manual", "api", "alertmanager", "pager_duty", "help_desk", "executive"], 1..3);
    let services = prop::sample::subsequence(vec!["payments", "search", "docs", "ghost"], 1..3);
    let tiers = prop::sample::subsequence(vec![1, 2, 3], 1..3);
    let words = prop::sample::subsequence(vec!["down", "outage", "login fails", "slow", "cannot log in"], 1..3);
    let labels =
        prop::sample::subsequence(vec![("severity", "critical"), ("severity", "warning"), ("team", "payments")], 1..2);
    (
        prop::option::weighted(0.3, sources),
        prop::option::weighted(0.2, services),
        prop::option::weighted(0.3, tiers),
        prop::option::weighted(0.3, any::<bool>()),
        prop::option::weighted(0.3, 1..15_i64),
        prop::option::weighted(0.3, words),
        prop::option::weighted(0.3, labels),
    )
        .prop_map(|(via, service, tier, multi, at_least, words, labels)| {
            let mut when = serde_json::Map::new();
            let mut put = |key: &str, value: Option<Value>| {
                if let Some(value) = value {
                    when.insert(key.into(), value);
                }
            };
            put("reported_via", via.map(|v| json!(v)));
            put("service", service.map(|v| json!(v)));
            put("service_tier", tier.map(|v| json!(v)));
            put("multi_customer", multi.map(|v| json!(v)));
            put("customers_affected_at_least", at_least.map(|v| json!(v)));
            put("words", words.map(|v| json!(v)));
            put("labels", labels.map(|l| json!(l.into_iter().collect::<BTreeMap<_, _>>())));
            Value::Object(when)
        })
}

fn arb_rules() -> impl Strategy<Value = Value> {
    let rule = (arb_when(), 1..=4_u8);
    prop::collection::vec(rule, 0..6).prop_map(|mut rules| {
        // Valid by construction: a rule after a catch-all (an empty `when`)
        // could never match, which validation refuses; stop at the first.
        if let Some(catch_all) = rules.iter().position(|(when, _)| when.as_object().is_some_and(|w| w.is_empty())) {
            rules.truncate(catch_all + 1);
        }
        let rules: Vec<Value> = rules
            .into_iter()
            .enumerate()
            .map(|(i, (when, sev))| json!({ "id": format!("r{i}"), "severity": format!("sev{sev}"), "reason": "R", "when": when }))
            .collect();
        json!({ "default": "sev4", "rules": rules })
    })
}

fn arb_facts() -> impl Strategy<Value = Facts> {
    let text = || {
        (prop::collection::vec(prop::sample::select(WORDS), 0..5), prop::sample::select(vec![" ", "-", ", ", "!"]))
            .prop_map(|(words, sep)| words.join(sep))
    };
    (
        prop::sample::select(vec![None, Some("payments"), Some("search"), Some("docs"), Some("ghost")]),
        0..20_u32,
        any::<bool>(),
        prop::sample::select(ReportSource::ALL.to_vec()),
        text(),
        text(),
        prop::sample::subsequence(vec![("severity", "critical"), ("team", "payments"), ("x", "y")], 0..3),
        prop::sample::select(vec!["critical", "warning", "CRITICAL"]),
    )
        .prop_map(|(service, customers, multi, source, title, description, labels, sev_value)| {
            let mut facts = f().customers(customers).multi(multi).via(source).title(&title).description(&description);
            if let Some(service) = service {
                facts = facts.service(service);
            }
            for (name, value) in labels {
                facts = facts.label(name, if name == "severity" { sev_value } else { value });
            }
            facts.0
        })
}

proptest! {
    #[test]
    fn the_first_rule_whose_conditions_all_hold_wins(config in arb_rules(), facts in arb_facts()) {
        let rules = match rules_of(config) {
            Ok(rules) => rules,
            Err(e) => panic!("a generated rule set is valid by construction: {e}"),
        };
        let assessment = rules.evaluate(&facts);
        let explanation = rules.explain(&facts);
        prop_assert_eq!(&explanation.assessment, &assessment);
        prop_assert_eq!(explanation.rules.len(), rules.rules().len());
        for (rule, explained) in rules.rules().iter().zip(&explanation.rules) {
            prop_assert_eq!((rule.id(), rule.severity()), (explained.id.as_str(), explained.severity));
            prop_assert_eq!(explained.matched, explained.conditions.iter().all(|c| c.held));
        }
        let chosen = explanation.rules.iter().position(|r| r.id.as_str() == assessment.rule_id.as_deref().unwrap_or(""));
        let earlier = &explanation.rules[..chosen.unwrap_or(explanation.rules.len())];
        for rule in earlier {
            prop_assert!(!rule.chosen && rule.conditions.iter().any(|c| !c.held), "{} should not match", rule.id);
        }
        match chosen {
            Some(i) => {
                let rule = &explanation.rules[i];
                prop_assert!(rule.chosen && rule.conditions.iter().all(|c| c.held));
                prop_assert_eq!(assessment.severity, rule.severity);
                let details: Vec<&str> = rule.conditions.iter().map(|c| c.detail.as_str()).collect();
                prop_assert_eq!(assessment.reasons.iter().map(String::as_str).collect::<Vec<_>>(), details);
                prop_assert!(explanation.rules[i + 1..].iter().all(|r| !r.chosen));
            }
            None => {
                prop_assert_eq!(assessment.rule_id, None);
                prop_assert_eq!(assessment.severity, rules.default_severity());
            }
        }
        let lines = explanation.render();
        prop_assert!(lines[0].starts_with(&assessment.severity.to_string()));
        let per_rule: usize = explanation.rules.iter().map(|r| 1 + r.conditions.len().max(1)).sum();
        prop_assert_eq!(lines.len(), 2 + usize::from(!assessment.reasons.is_empty()) + per_rule);
    }
}

#[test]
fn assess_builds_the_assessment_event_of_the_evaluator() {
    let at: DateTime<Utc> = "2026-03-01T12:30:00Z".parse().unwrap();
    let incident = incident(&[report("payments", &["acme", "globex"])]);
    let event = assess(&incident, &example(), &catalog(), at).expect("a first assessment");
    assert_eq!((event.incident, event.at, event.by.as_str()), (incident.id(), at, SEVERITY_ACTOR));
    let Change::SeverityAssessed(assessed) = &event.change else { panic!("{event:?}") };
    assert_eq!((assessed.severity, assessed.rule.as_deref()), (Severity::Sev1, Some("tier1-multi-customer")));
    // Once folded, the same facts call for nothing.
    let assessed = evolve(Some(incident), &event).unwrap();
    assert_eq!(assess(&assessed, &example(), &catalog(), at), None);
}

/// An incident is assessed with the tier its report recorded (the catalog's
/// when intake recorded it), whatever the catalog in effect says since; one
/// whose report recorded none (written before intake recorded it) with the
/// catalog in effect.
#[test]
fn the_tier_recorded_in_the_report_decides_over_the_catalog_in_effect() {
    let multi = report("search", &["a", "b"]);
    let recorded_then = ServiceCatalogConfig(vec![crate::catalog::ServiceConfig {
        name: "search".into(),
        team: "discovery".into(),
        tier: 1,
        runbook: None,
        public_name: None,
        escalation_policy: "discovery".into(),
    }])
    .validate("services")
    .unwrap();
    let id = IncidentId::from_number(7).unwrap();
    let at: DateTime<Utc> = "2026-03-01T12:00:00Z".parse().unwrap();
    let mut events = decide(None, &multi, &id, &actor("alice"), at).unwrap();
    crate::incident::record_catalog(&mut events, None, &recorded_then);
    let recorded = events.iter().fold(None, evolve).unwrap();
    // `catalog()` says search is tier 2 now; the report recorded tier 1.
    let assessed = reassess(&recorded, &example(), &catalog()).unwrap();
    assert_eq!((assessed.rule_id.as_deref(), assessed.severity), (Some("tier1-multi-customer"), Severity::Sev1));
    let unrecorded = incident(&[multi]);
    let assessed = reassess(&unrecorded, &example(), &catalog()).unwrap();
    assert_eq!((assessed.rule_id, assessed.severity), (None, Severity::Sev4));
    assert_eq!(reassess(&unrecorded, &example(), &recorded_then).unwrap().severity, Severity::Sev1);
}
