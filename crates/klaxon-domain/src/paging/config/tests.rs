//! Given a paging configuration, then a validated config or the key path of
//! its first problem.

use expect_test::expect;
use serde_json::{Value, json};

use super::*;
use crate::paging::tests::{example_config, schedules};

fn validate(config: Value) -> Result<PagingConfig, ConfigError> {
    serde_json::from_value::<PagingFileConfig>(config).unwrap().validate("", &schedules())
}

/// The example configuration with the JSON at `pointer` replaced by `value`.
fn with(pointer: &str, value: Value) -> Value {
    let mut config = example_config();
    *config.pointer_mut(pointer).unwrap_or_else(|| panic!("no {pointer}")) = value;
    config
}

#[test]
fn the_example_validates_with_defaults() {
    let config = validate(example_config()).unwrap();
    assert!(config.pages(Severity::Sev1) && config.pages(Severity::Sev2) && !config.pages(Severity::Sev3));
    assert_eq!(config.slo(Severity::Sev1).ack, TimeDelta::minutes(8));
    assert_eq!(config.slo(Severity::Sev1).update_cadence, TimeDelta::minutes(30), "a default within a table");
    assert_eq!(config.slo(Severity::Sev2), Slo::DEFAULT, "a severity without a table");
    assert_eq!(config.default_policy().name(), "default");
    assert_eq!(config.policy("payments").unwrap().repeat(), 1);
    assert!(config.is_manager(&ActorId::new("maria").unwrap()));
    let minimal = json!({ "paging": { "duty_manager_schedule": "duty-managers", "default_policy": "p" },
        "escalation_policies": [ { "name": "p", "levels": [ { "timeout_minutes": 1, "targets": [ { "person": "x" } ] } ] } ] });
    let minimal = validate(minimal).unwrap();
    assert_eq!(
        minimal.severities().iter().copied().collect::<Vec<_>>(),
        [Severity::Sev2, Severity::Sev1],
        "ordered by gravity"
    );
}

#[test]
fn problems_name_their_key() {
    let cases = [
        with("/paging/severities", json!([])),
        with("/paging/severities", json!(["sev1", "sev9"])),
        with("/paging/severities", json!(["sev1", "SEV1"])),
        with("/paging/duty_manager_schedule", json!("nobody-knows")),
        with("/paging/managers", json!(["maria", "o mar"])),
        with("/paging/managers", json!(["maria", "maria"])),
        with("/paging/default_policy", json!("gone")),
        with("/slo", json!({ "sev5": {} })),
        with("/slo", json!({ "sev1": {}, "SEV1": {} })),
        with("/slo/sev1/ack_minutes", json!(0)),
        with("/slo/sev1/assign_minutes", json!(MINUTES_MAX + 1)),
        with("/escalation_policies/1/name", json!("payments")),
        with("/escalation_policies/1/name", json!("two words")),
        with("/escalation_policies/0/repeat", json!(REPEAT_MAX + 1)),
        with("/escalation_policies/0/levels", json!([])),
        with("/escalation_policies/0/levels/1/targets", json!([])),
        with("/escalation_policies/0/levels/1/timeout_minutes", json!(0)),
        with("/escalation_policies/0/levels/1/targets/0", json!({ "schedule": "payments-tertiary" })),
        with("/escalation_policies/0/levels/1/targets/1", json!({ "person": "" })),
        with("/escalation_policies/0/levels/1/targets/1", json!({ "schedule": "payments-secondary" })),
    ];
    let got: Vec<String> = cases
        .into_iter()
        .map(|config| match validate(config) {
            Ok(_) => "ok".to_owned(),
            Err(error) => error.to_string(),
        })
        .collect();
    expect![[r#"
        [
            "paging.severities: must list at least one severity",
            "paging.severities[1]: \"sev9\" is not a severity; expected sev1 to sev4",
            "paging.severities[1]: \"SEV1\" is listed twice",
            "paging.duty_manager_schedule: \"nobody-knows\" is not the name of any configured schedule",
            "paging.managers[1]: \"o mar\": character ' ' is not allowed (use A-Z a-z 0-9 _ . @ : -)",
            "paging.managers[1]: \"maria\" is listed twice",
            "paging.default_policy: \"gone\" is not the name of any escalation_policies entry",
            "slo.sev5: \"sev5\" is not a severity; expected sev1 to sev4",
            "slo.sev1: SEV1 is already configured by slo.SEV1",
            "slo.sev1.ack_minutes: must be at least 1 minute",
            "slo.sev1.assign_minutes: 10081 is more than the limit of 10080 minutes",
            "escalation_policies[1].name: \"payments\" is already the name of escalation_policies[0]",
            "escalation_policies[1].name: \"two words\" must not contain whitespace or control characters",
            "escalation_policies[0].repeat: 11 is more than the limit of 10",
            "escalation_policies[0].levels: must have at least one level",
            "escalation_policies[0].levels[1].targets: must have at least one target",
            "escalation_policies[0].levels[1].timeout_minutes: must be at least 1 minute",
            "escalation_policies[0].levels[1].targets[0].schedule: \"payments-tertiary\" is not the name of any configured schedule",
            "escalation_policies[0].levels[1].targets[1].person: \"\" must not be empty",
            "escalation_policies[0].levels[1].targets[1]: the same target is listed twice in this level",
        ]
    "#]].assert_debug_eq(&got);
}

#[test]
fn keys_are_prefixed_and_unknown_keys_rejected() {
    let config = serde_json::from_value::<PagingFileConfig>(with("/paging/default_policy", json!("gone"))).unwrap();
    let error = config.validate("klaxon", &schedules()).unwrap_err();
    assert_eq!(error.key, "klaxon.paging.default_policy");
    let mut unknown = example_config();
    unknown["paging"]["pagers"] = json!(1);
    assert!(serde_json::from_value::<PagingFileConfig>(unknown).unwrap_err().to_string().contains("pagers"));
    let target = with("/escalation_policies/0/levels/0/targets/0", json!({ "team": "x" }));
    assert!(serde_json::from_value::<PagingFileConfig>(target).is_err());
}

#[test]
fn the_catalog_check_names_services_without_a_policy() {
    let config = validate(example_config()).unwrap();
    let error = config.check_catalog("services", &crate::paging::tests::catalog()).unwrap_err();
    expect![[r#"services.docs.escalation_policy: "missing" is not the name of any escalation_policies entry"#]]
        .assert_eq(&error.to_string());
}

#[test]
fn customer_tiers_tighten_the_resolution_window() {
    let mut raw = example_config();
    raw["slo"]["sev1"]["resolve_minutes"] = json!(240);
    raw["slo"]["tier"] = json!({ "gold": { "resolve_minutes": 60 }, "silver": { "resolve_minutes": 480 } });
    raw["customers"] = json!([ { "name": "acme", "tier": "gold" }, { "name": "initech", "tier": "silver" } ]);
    let config = validate(raw.clone()).unwrap();
    let c = |name: &str| CustomerId::new(name).unwrap();
    assert_eq!(config.resolve_window(Severity::Sev1, &[]), Some(TimeDelta::minutes(240)));
    assert_eq!(config.resolve_window(Severity::Sev1, &[c("acme")]), Some(TimeDelta::minutes(60)));
    assert_eq!(
        config.resolve_window(Severity::Sev1, &[c("initech")]),
        Some(TimeDelta::minutes(240)),
        "a looser tier does not loosen the severity's window"
    );
    assert_eq!(config.resolve_window(Severity::Sev1, &[c("initech"), c("acme")]), Some(TimeDelta::minutes(60)));
    assert_eq!(config.resolve_window(Severity::Sev1, &[c("unknown")]), Some(TimeDelta::minutes(240)));
    assert_eq!(config.resolve_window(Severity::Sev2, &[]), None, "no window without either");
    assert_eq!(config.resolve_window(Severity::Sev2, &[c("initech")]), Some(TimeDelta::minutes(480)));

    let problems: Vec<String> = [
        ("/customers/1/tier", json!("platinum")),
        ("/customers/1/name", json!("acme")),
        ("/customers/0/name", json!("")),
        ("/slo/tier/gold/resolve_minutes", json!(0)),
    ]
    .into_iter()
    .map(|(pointer, value)| {
        let mut bad = raw.clone();
        *bad.pointer_mut(pointer).unwrap() = value;
        validate(bad).unwrap_err().to_string()
    })
    .collect();
    expect![[r#"
        [
            "customers[1].tier: \"platinum\" is not a tier: no [slo.tier.platinum] table",
            "customers[1].name: \"acme\" is listed twice",
            "customers[0].name: \"\" must not be empty",
            "slo.tier.gold.resolve_minutes: must be at least 1 minute",
        ]
    "#]]
    .assert_debug_eq(&problems);
    let unknown_key =
        serde_json::from_value::<PagingFileConfig>(with("/slo", json!({ "tier": { "gold": { "ack_minutes": 1 } } })));
    assert!(unknown_key.unwrap_err().to_string().contains("ack_minutes"));
}
