//! Catalog validation and lookups.

use serde_json::{Value, json};

use super::*;

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

/// Validating the catalog `services` fails with exactly `expected`.
#[track_caller]
fn bad_catalog(services: Value, expected: &str) {
    let config: ServiceCatalogConfig = serde_json::from_value(services).unwrap();
    assert_eq!(config.validate("services").unwrap_err().to_string(), expected);
}

#[test]
fn bad_catalogs_name_the_key() {
    let svc = |name: &str, tier: i64| json!({ "name": name, "team": "t", "tier": tier, "escalation_policy": "p" });
    bad_catalog(json!([svc("payments", 1), svc("search", 4)]), "services[1].tier: 4 is not a tier; expected 1, 2 or 3");
    bad_catalog(json!([svc("payments", 0)]), "services[0].tier: 0 is not a tier; expected 1, 2 or 3");
    bad_catalog(
        json!([svc("payments", 1), svc("payments", 2)]),
        "services[1].name: service payments is already defined at services[0]",
    );
    bad_catalog(json!([svc("", 1)]), r#"services[0].name: "" must not be empty"#);
    bad_catalog(
        json!([svc("pay ments", 1)]),
        r#"services[0].name: "pay ments": character ' ' is not allowed (use a-z 0-9 _ -)"#,
    );
    bad_catalog(
        json!([{ "name": "a", "team": "", "tier": 1, "escalation_policy": "p" }]),
        "services[0].team: must not be empty",
    );
    bad_catalog(
        json!([{ "name": "a", "team": "t", "tier": 1, "escalation_policy": "on call" }]),
        r#"services[0].escalation_policy: "on call" must not contain whitespace or control characters"#,
    );
    bad_catalog(
        json!([{ "name": "a", "team": "t", "tier": 1, "escalation_policy": "p", "runbook": "wiki/payments" }]),
        r#"services[0].runbook: "wiki/payments" is not an http:// or https:// URL"#,
    );
    bad_catalog(
        json!([{ "name": "a", "team": "t", "tier": 1, "escalation_policy": "p", "public_name": "  " }]),
        "services[0].public_name: must not be empty",
    );
    bad_catalog(
        json!([{ "name": "a", "team": "t", "tier": 1, "escalation_policy": "p", "public_name": "x".repeat(81) }]),
        &format!("services[0].public_name: {:?} is longer than 80 characters", "x".repeat(81)),
    );
    bad_catalog(
        json!([{ "name": "a", "team": "t", "tier": 1, "escalation_policy": "p", "public_name": "Check\nout" }]),
        r#"services[0].public_name: "Check\nout" must not contain control characters"#,
    );
    let e = serde_json::from_value::<ServiceCatalogConfig>(json!([{ "name": "a", "team": "t", "tier": 1,
        "escalation_policy": "p", "owner": "x" }]))
    .unwrap_err();
    assert!(e.to_string().contains("unknown field `owner`"), "{e}");
}

#[test]
fn a_public_name_is_kept_trimmed_and_is_optional() {
    let config: ServiceCatalogConfig = serde_json::from_value(json!([
        { "name": "checkout-api", "team": "t", "tier": 1, "escalation_policy": "p", "public_name": " Checkout " },
        { "name": "ledger", "team": "t", "tier": 2, "escalation_policy": "p" },
    ]))
    .unwrap();
    let catalog = config.validate("services").unwrap();
    assert_eq!(catalog.public_name(&ServiceName::new("checkout-api").unwrap()), Some("Checkout"));
    assert_eq!(catalog.public_name(&ServiceName::new("ledger").unwrap()), None);
    assert_eq!(catalog.public_name(&ServiceName::new("unknown").unwrap()), None);
}

#[test]
fn catalog_lookups() {
    let catalog = catalog();
    let payments = ServiceName::new("payments").unwrap();
    let ghost = ServiceName::new("ghost").unwrap();
    assert_eq!(catalog.tier(&payments), Tier::new(1));
    assert_eq!(catalog.team(&payments), Some("payments"));
    assert_eq!(catalog.runbook(&payments), Some("https://runbooks.example/payments"));
    assert_eq!(catalog.escalation_policy(&payments), Some("payments"));
    assert_eq!(catalog.runbook(&ServiceName::new("search").unwrap()), None);
    assert_eq!((catalog.tier(&ghost), catalog.team(&ghost)), (None, None));
    assert_eq!(catalog.len(), 3);
    assert_eq!(
        serde_json::from_value::<Tier>(json!(4)).unwrap_err().to_string(),
        "4 is not a tier; expected 1, 2 or 3"
    );
}
