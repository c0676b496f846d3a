//! Given a `[notifier]` table, then a validated config or the key path of
//! its first problem.

use expect_test::expect;
use serde_json::{Value, json};

use super::*;

fn example() -> Value {
    json!({ "severities": ["sev1", "sev2"], "executive_channels": ["exec-slack", "exec-email"],
            "company_wide_channels": ["all-hands"], "feed_interval_ms": 250, "cadence_severities": ["sev1"] })
}

fn validate(config: Value) -> Result<NotifierConfig, ConfigError> {
    serde_json::from_value::<NotifierSectionConfig>(config).unwrap().validate("notifier")
}

/// The example table with the key `key` replaced by `value`.
fn with(key: &str, value: Value) -> Value {
    let mut config = example();
    config[key] = value;
    config
}

#[test]
fn the_example_validates() {
    let config = validate(example()).unwrap();
    assert!(config.notifies(Severity::Sev1) && config.notifies(Severity::Sev2) && !config.notifies(Severity::Sev3));
    assert!(config.has_cadence(Severity::Sev1) && !config.has_cadence(Severity::Sev2));
    assert_eq!(config.executive_channels(), ["exec-slack", "exec-email"], "in the order configured");
    assert_eq!(config.company_wide_channels(), ["all-hands"]);
    assert_eq!(config.feed_interval(), Duration::from_millis(250));
}

#[test]
fn every_key_has_a_default() {
    let empty = validate(json!({})).unwrap();
    assert_eq!(empty, NotifierSectionConfig::default().validate("notifier").unwrap());
    assert_eq!(empty.severities().iter().copied().collect::<Vec<_>>(), [Severity::Sev1]);
    assert_eq!(empty.cadence_severities().iter().copied().collect::<Vec<_>>(), [Severity::Sev1]);
    assert!(empty.executive_channels().is_empty() && empty.company_wide_channels().is_empty());
    assert_eq!(empty.feed_interval(), Duration::from_secs(1));
    // Company-wide posts for multi-customer Sev-1s and Sev-2s; follow-ups a minute apart.
    assert_eq!(empty.company_wide_severities(), &[Severity::Sev1, Severity::Sev2].into());
    assert!(empty.company_wide(Severity::Sev2) && !empty.company_wide(Severity::Sev3));
    assert_eq!(empty.follow_up_interval(), chrono::TimeDelta::minutes(1));
    let problem = validate(with("follow_up_interval_ms", json!(3_600_001))).unwrap_err().to_string();
    assert_eq!(problem, "notifier.follow_up_interval_ms: 3600001 is more than the limit of 3600000 milliseconds");
    let problem = validate(with("company_wide_severities", json!(["sev5"]))).unwrap_err().to_string();
    assert!(problem.starts_with("notifier.company_wide_severities[0]: \"sev5\" is not a severity"), "{problem}");
    let no_cadence = validate(with("cadence_severities", json!([]))).unwrap();
    assert!(no_cadence.cadence_severities().is_empty());
}

#[test]
fn the_table_reads_from_toml_shaped_json_and_rejects_unknown_keys() {
    let error = serde_json::from_value::<NotifierSectionConfig>(with("severity", json!(["sev1"]))).unwrap_err();
    assert!(error.to_string().starts_with("unknown field `severity`"), "{error}");
}

#[test]
fn problems_name_their_key() {
    let too_many: Vec<String> = (0..=CHANNELS_MAX).map(|i| format!("c{i}")).collect();
    let cases = [
        with("severities", json!([])),
        with("severities", json!(["sev1", "sev5"])),
        with("severities", json!(["sev1", "SEV-1"])),
        with("cadence_severities", json!(["urgent"])),
        with("cadence_severities", json!(["2", "sev2"])),
        with("executive_channels", json!(["exec-slack", ""])),
        with("executive_channels", json!(["exec slack"])),
        with("executive_channels", json!(["x".repeat(CHANNEL_CHARS_MAX + 1)])),
        with("executive_channels", json!(["exec-slack", "exec-slack"])),
        with("company_wide_channels", json!(too_many)),
        with("company_wide_channels", json!(["all-hands", "tab\there"])),
        with("feed_interval_ms", json!(0)),
        with("feed_interval_ms", json!(FEED_INTERVAL_MS_MAX + 1)),
        with("feed_interval_ms", json!(FEED_INTERVAL_MS_MAX)),
        with("executive_channels", json!(["all-hands"])),
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
            "notifier.severities: must list at least one severity",
            "notifier.severities[1]: \"sev5\" is not a severity; expected sev1 to sev4",
            "notifier.severities[1]: \"SEV-1\" is listed twice",
            "notifier.cadence_severities[0]: \"urgent\" is not a severity; expected sev1 to sev4",
            "notifier.cadence_severities[1]: \"sev2\" is listed twice",
            "notifier.executive_channels[1]: must not be empty",
            "notifier.executive_channels[0]: \"exec slack\" must not contain whitespace or control characters",
            "notifier.executive_channels[0]: \"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\" is longer than 64 characters",
            "notifier.executive_channels[1]: \"exec-slack\" is listed twice",
            "notifier.company_wide_channels: 17 channels is more than the limit of 16",
            "notifier.company_wide_channels[1]: \"tab\\there\" must not contain whitespace or control characters",
            "notifier.feed_interval_ms: must be at least 1 millisecond",
            "notifier.feed_interval_ms: 60001 is more than the limit of 60000 milliseconds",
            "ok",
            "ok",
        ]
    "#]].assert_debug_eq(&got);
}

#[test]
fn an_empty_prefix_names_keys_at_the_top_level() {
    let config: NotifierSectionConfig = serde_json::from_value(with("severities", json!([]))).unwrap();
    assert_eq!(config.validate("").unwrap_err().key, "severities");
}
