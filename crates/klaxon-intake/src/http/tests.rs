use super::*;

#[test]
fn request_ids_are_deterministic_fit_the_limit_and_do_not_mix_parts() {
    let a = request_id("am", &[b"group", b"fp"]);
    assert_eq!(a, request_id("am", &[b"group", b"fp"]));
    assert_ne!(a, request_id("am", &[b"grou", b"pfp"]), "parts are length-prefixed");
    assert_ne!(a, request_id("pd", &[b"group", b"fp"]));
    assert!(a.starts_with("am-") && a.len() == 3 + 32, "{a}");
    assert!(a.len() <= crate::REQUEST_ID_BYTES_MAX);
}

#[test]
fn dedup_keys_are_namespaced_and_long_keys_are_hashed() {
    assert_eq!(dedup_key("alertmanager", "{}:{alertname=\"X\"}").as_str(), "alertmanager/{}:{alertname=\"X\"}");
    let long = "k".repeat(300);
    let hashed = dedup_key("pagerduty", &long);
    assert!(hashed.as_str().starts_with("pagerduty/sha256:"), "{hashed}");
    assert_eq!(hashed, dedup_key("pagerduty", &long));
    assert!(dedup_key("pagerduty", "a\nb").as_str().starts_with("pagerduty/sha256:"));
}

#[test]
fn labels_are_fitted_to_the_domain_limits() {
    use klaxon_domain::incident::LABEL_CHARS_MAX;
    let long_value = "v".repeat(LABEL_CHARS_MAX + 10);
    let many: Vec<(String, String)> = (0..LABELS_MAX + 5).map(|i| (format!("l{i:03}"), "x".to_owned())).collect();
    let fitted = fit_labels(many.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    assert_eq!(fitted.len(), LABELS_MAX);
    let fitted = fit_labels([
        ("", "dropped"),
        ("\u{7}", "dropped"),
        ("bell\u{7}", "a\nb"),
        (" padded ", "v"),
        ("long", long_value.as_str()),
    ]);
    assert_eq!(fitted.len(), 3, "{fitted:?}");
    assert_eq!(fitted["bell"], "a b");
    assert_eq!(fitted["padded"], "v");
    assert_eq!(fitted["long"].chars().count(), LABEL_CHARS_MAX);
}

#[test]
fn options_are_checked_naming_the_key() {
    assert_eq!(HttpOptions::default().validate(), Ok(()));
    let small = HttpOptions { pagerduty_body_bytes_max: 10, ..HttpOptions::default() };
    assert!(small.validate().unwrap_err().starts_with("http.pagerduty_body_bytes_max:"));
    let no_burst = HttpOptions { pagerduty_burst: 0, ..HttpOptions::default() };
    assert!(no_burst.validate().unwrap_err().starts_with("http.pagerduty_burst:"));
    let off = HttpOptions { pagerduty_burst: 0, pagerduty_events_per_minute: 0, ..HttpOptions::default() };
    assert_eq!(off.validate(), Ok(()));
    let parsed: HttpOptions = serde_json::from_str(r#"{"pagerduty_burst": 5}"#).unwrap();
    assert_eq!(parsed, HttpOptions { pagerduty_burst: 5, ..HttpOptions::default() });
    assert!(serde_json::from_str::<HttpOptions>(r#"{"burst": 5}"#).is_err(), "unknown keys are refused");
}

mod properties {
    use chrono::{TimeZone, Utc};
    use klaxon_domain::ids::IncidentId;
    use klaxon_domain::incident::decide;
    use proptest::prelude::*;
    use serde_json::json;

    use super::super::{alertmanager, pagerduty, parse_alertmanager, parse_pagerduty};

    fn any_text() -> impl Strategy<Value = String> {
        prop_oneof![".{0,40}", "[\\x00-\\x1f a-z]{0,20}", ".{200,400}"]
    }

    /// [`any_text`] around one visible character: never blank, so a field
    /// the delivery requires is always there and the parser accepts it.
    fn non_blank_text() -> impl Strategy<Value = String> {
        (any_text(), "[A-Za-z0-9]", any_text()).prop_map(|(a, b, c)| format!("{a}{b}{c}"))
    }

    /// A PagerDuty dedup key as the API allows it: at most 255 characters,
    /// none of them a control character.
    fn dedup_key_text() -> impl Strategy<Value = String> {
        "[^\\p{Cc}]{0,255}"
    }

    /// Whatever the strings in a valid delivery, the commands it maps to are
    /// accepted by the domain: a monitoring tool is never refused for a long
    /// label or an odd character.
    fn accepted(command: &klaxon_domain::incident::Command, actor: &klaxon_domain::ids::ActorId) {
        let now = Utc.with_ymd_and_hms(2026, 11, 25, 10, 0, 0).unwrap();
        let id = IncidentId::from_number(1).unwrap();
        if let Err(e) = decide(None, command, &id, actor, now) {
            panic!("{e}: {command:?}");
        }
    }

    /// Any string, rich in control characters and whitespace, sometimes
    /// longer than a title may be.
    fn monitor_text() -> impl Strategy<Value = String> {
        prop_oneof![".{0,40}", "[\\x00-\\x1f\\x7f \\t\\na-z]{0,20}", "[a-z\\x00]{190,210}"]
    }

    proptest! {
        /// The HTTP path of the one text rule: a monitor's summary becomes
        /// the title by the rule's lenient form (so a stray control
        /// character still pages, and the rule accepts what is written),
        /// and a summary with nothing left is refused naming the field.
        #[test]
        fn a_pagerduty_summary_becomes_the_title_the_rule_accepts(summary in monitor_text()) {
            let body = json!({
                "routing_key": "r", "event_action": "trigger", "dedup_key": "k",
                "payload": {"summary": summary, "source": "db-1", "severity": "info"},
            });
            match parse_pagerduty(&serde_json::to_vec(&body).unwrap()) {
                Ok(event) => {
                    prop_assert!(!klaxon_domain::text::Kind::is_blank(&summary), "accepted a blank summary");
                    let Some(klaxon_domain::incident::Command::ReportIssue { title, .. }) = event.report_command()
                    else {
                        panic!("a trigger reports");
                    };
                    prop_assert_eq!(&title, &klaxon_domain::text::TITLE.clean(&summary));
                    prop_assert_eq!(klaxon_domain::text::TITLE.check("title", &title), Ok(title.clone()));
                    accepted(&event.report_command().unwrap(), &pagerduty::actor());
                }
                Err(refused) => {
                    prop_assert!(klaxon_domain::text::Kind::is_blank(&summary), "refused {summary:?}: {refused:?}");
                    prop_assert!(format!("{refused:?}").contains("payload.summary"), "{refused:?}");
                }
            }
        }

        /// The same for Alertmanager: a summary annotation with something
        /// left is the title, cleaned; a blank one falls back to the
        /// alertname.
        #[test]
        fn an_alertmanager_summary_becomes_the_title_the_rule_accepts(summary in monitor_text()) {
            let body = json!({
                "version": "4", "groupKey": "g", "status": "firing",
                "alerts": [{"status": "firing", "labels": {"alertname": "DiskFull"}, "annotations": {"summary": summary},
                            "startsAt": "2026-11-25T10:00:00Z", "fingerprint": "f"}],
            });
            let notification = parse_alertmanager(&serde_json::to_vec(&body).unwrap()).expect("a valid notification");
            let reports: Vec<_> = notification
                .plan()
                .into_iter()
                .filter_map(|step| match step {
                    alertmanager::Step::Report { command, .. } => Some(command),
                    _ => None,
                })
                .collect();
            prop_assert_eq!(reports.len(), 1);
            let klaxon_domain::incident::Command::ReportIssue { title, .. } = &reports[0] else { panic!("a report") };
            let expected = if klaxon_domain::text::Kind::is_blank(&summary) {
                "DiskFull".to_owned()
            } else {
                klaxon_domain::text::TITLE.clean(&summary)
            };
            prop_assert_eq!(title, &expected);
            accepted(&reports[0], &alertmanager::actor());
        }

        #[test]
        fn parsers_never_panic_on_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = parse_alertmanager(&bytes);
            let _ = parse_pagerduty(&bytes);
        }

        #[test]
        fn alertmanager_reports_always_fit_the_domain(
            labels in proptest::collection::btree_map(any_text(), any_text(), 0..80),
            summary in any_text(),
            group_key in (".{0,150}", "[a-z0-9]", ".{0,149}").prop_map(|(a, b, c)| format!("{a}{b}{c}")),
        ) {
            let body = json!({
                "version": "4", "groupKey": group_key, "status": "firing",
                "commonAnnotations": {"summary": summary},
                "alerts": [{"status": "firing", "labels": labels, "annotations": {"summary": summary},
                            "startsAt": "2026-11-25T10:00:00Z", "fingerprint": "f"}],
            });
            // Valid by construction: every delivery is parsed and reports.
            let n = match parse_alertmanager(&serde_json::to_vec(&body).unwrap()) {
                Ok(n) => n,
                Err(refused) => panic!("a valid delivery was refused: {refused:?}"),
            };
            let mut reports = 0;
            for step in n.plan() {
                if let alertmanager::Step::Report { command, .. } = step {
                    accepted(&command, &alertmanager::actor());
                    reports += 1;
                }
            }
            prop_assert_eq!(reports, 1, "one firing alert reports once");
        }

        #[test]
        fn pagerduty_reports_always_fit_the_domain(
            summary in non_blank_text(),
            source in non_blank_text(),
            details in proptest::collection::btree_map(any_text(), any_text(), 0..80),
            dedup_key in dedup_key_text(),
        ) {
            let body = json!({
                "routing_key": "r", "event_action": "trigger", "dedup_key": dedup_key,
                "payload": {"summary": summary, "source": source, "severity": "info", "component": source,
                            "custom_details": details},
            });
            // Valid by construction: every event is parsed and reports.
            let event = match parse_pagerduty(&serde_json::to_vec(&body).unwrap()) {
                Ok(event) => event,
                Err(refused) => panic!("a valid event was refused: {refused:?}"),
            };
            accepted(&event.report_command().expect("a trigger reports"), &pagerduty::actor());
        }
    }
}
