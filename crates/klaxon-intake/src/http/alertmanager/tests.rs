use serde_json::json;

use super::*;

/// A notification as Alertmanager 0.25 sends it, plus fields it does not
/// send (which must be accepted).
fn sample() -> Value {
    json!({
        "receiver": "klaxon",
        "status": "firing",
        "alerts": [{
            "status": "firing",
            "labels": {"alertname": "CheckoutErrors", "service": "payments", "instance": "eu-1", "severity": "page"},
            "annotations": {"summary": "Checkout errors in eu-1", "description": "5xx above 5%"},
            "startsAt": "2026-11-25T10:00:00.123456789Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus/graph?g0.expr=x",
            "fingerprint": "1a2b3c4d5e6f7a8b",
            "someFutureField": {"nested": true}
        }],
        "groupLabels": {"alertname": "CheckoutErrors"},
        "commonLabels": {"alertname": "CheckoutErrors", "service": "payments", "instance": "eu-1", "severity": "page"},
        "commonAnnotations": {"summary": "Checkout errors in eu-1", "description": "5xx above 5%"},
        "externalURL": "http://alertmanager:9093",
        "version": "4",
        "groupKey": "{}:{alertname=\"CheckoutErrors\"}",
        "truncatedAlerts": 0,
        "anotherUnknownField": [1, 2, 3]
    })
}

fn parse(value: &Value) -> Result<Notification, Vec<String>> {
    parse_alertmanager(&serde_json::to_vec(value).unwrap())
}

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

#[test]
fn a_firing_notification_parses_with_unknown_fields() {
    let n = parse(&sample()).unwrap();
    assert_eq!(n.group_key, "{}:{alertname=\"CheckoutErrors\"}");
    assert_eq!(n.status, AlertStatus::Firing);
    assert_eq!(n.receiver, "klaxon");
    assert_eq!(n.external_url, "http://alertmanager:9093");
    assert_eq!(n.alerts.len(), 1);
    let a = &n.alerts[0];
    assert_eq!(a.status, AlertStatus::Firing);
    assert_eq!(a.fingerprint, "1a2b3c4d5e6f7a8b");
    assert_eq!(a.starts_at, at("2026-11-25T10:00:00.123456789Z"));
    assert_eq!(a.ends_at, None, "Go's zero time means not set");
    assert_eq!(a.labels["instance"], "eu-1");
    assert_eq!(n.dedup_key().as_str(), "alertmanager/{}:{alertname=\"CheckoutErrors\"}");
}

#[test]
fn a_firing_alert_becomes_a_report_under_the_group_key() {
    let n = parse(&sample()).unwrap();
    let steps = n.plan();
    assert_eq!(steps.len(), 1);
    let Step::Report { request_id, command } = &steps[0] else { panic!("{steps:?}") };
    assert!(request_id.starts_with("am-"));
    let Command::ReportIssue { source, reporter, title, description, service, labels, dedup_key, started_at, .. } =
        command
    else {
        panic!("{command:?}")
    };
    assert_eq!(*source, ReportSource::Alertmanager);
    assert_eq!(reporter.as_str(), "svc:alertmanager");
    assert_eq!(title, "Checkout errors in eu-1");
    assert_eq!(service.as_ref().map(ServiceName::as_str), Some("payments"));
    assert_eq!(labels.get("alertname").map(String::as_str), Some("CheckoutErrors"));
    assert_eq!(labels.len(), 4);
    assert_eq!(dedup_key.as_ref().map(DedupKey::as_str), Some("alertmanager/{}:{alertname=\"CheckoutErrors\"}"));
    assert_eq!(*started_at, Some(at("2026-11-25T10:00:00.123456789Z")));
    assert!(description.starts_with("5xx above 5%\n"), "{description}");
    assert!(description.contains("1a2b3c4d5e6f7a8b") && description.contains("http://prometheus/graph"));
    // The same notification plans the same steps (the retry's ids).
    assert_eq!(parse(&sample()).unwrap().plan(), steps);
}

#[test]
fn the_title_falls_back_to_the_alertname_and_a_bad_service_label_is_ignored() {
    let mut v = sample();
    v["commonAnnotations"] = json!({});
    v["alerts"][0]["annotations"] = json!({});
    v["alerts"][0]["labels"]["service"] = json!("Not A Service!");
    v["commonLabels"] = json!({});
    let n = parse(&v).unwrap();
    let Step::Report { command: Command::ReportIssue { title, service, labels, .. }, .. } = &n.plan()[0] else {
        panic!()
    };
    assert_eq!(title, "CheckoutErrors");
    assert_eq!(*service, None);
    assert_eq!(labels["service"], "Not A Service!", "kept as a label");
}

#[test]
fn each_alert_has_its_own_request_id_and_a_new_firing_another() {
    let mut v = sample();
    let mut second = v["alerts"][0].clone();
    second["fingerprint"] = json!("ffff000011112222");
    second["labels"]["instance"] = json!("eu-2");
    v["alerts"].as_array_mut().unwrap().push(second);
    let steps = parse(&v).unwrap().plan();
    let ids: Vec<&String> = steps
        .iter()
        .map(|s| match s {
            Step::Report { request_id, .. } => request_id,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(ids.len(), 2);
    assert_ne!(ids[0], ids[1]);
    // The same alert firing again later (a new startsAt) is a new report.
    let mut again = sample();
    again["alerts"][0]["startsAt"] = json!("2026-11-25T12:00:00Z");
    let Step::Report { request_id, .. } = &parse(&again).unwrap().plan()[0] else { panic!() };
    assert_ne!(request_id, ids[0]);
}

fn resolved(v: &mut Value, index: usize, ends_at: &str) {
    v["alerts"][index]["status"] = json!("resolved");
    v["alerts"][index]["endsAt"] = json!(ends_at);
}

#[test]
fn resolved_alerts_are_noted_and_all_resolved_leaves_a_mitigation_note() {
    let mut v = sample();
    let mut second = v["alerts"][0].clone();
    second["fingerprint"] = json!("ffff000011112222");
    v["alerts"].as_array_mut().unwrap().push(second);
    resolved(&mut v, 0, "2026-11-25T10:30:00Z");
    let partly = parse(&v).unwrap().plan();
    assert_eq!(partly.len(), 2, "{partly:?}");
    assert!(matches!(&partly[0], Step::Report { .. }));
    let Step::AlertResolved { text, .. } = &partly[1] else { panic!("{partly:?}") };
    assert_eq!(
        text,
        "Alert CheckoutErrors (1a2b3c4d5e6f7a8b) resolved: firing from 2026-11-25T10:00:00.123456789Z to 2026-11-25T10:30:00Z"
    );

    resolved(&mut v, 1, "2026-11-25T10:31:00Z");
    v["status"] = json!("resolved");
    let n = parse(&v).unwrap();
    assert!(n.all_resolved());
    let all = n.plan();
    assert_eq!(all.len(), 3, "{all:?}");
    assert_eq!(all[0], partly[1], "the first alert's update has the same id as before");
    let Step::AllResolved { summary, request_id } = &all[2] else { panic!("{all:?}") };
    assert_eq!(summary, "all 2 alerts of the Alertmanager group resolved");
    // The order of the alerts does not change the note's id.
    v["alerts"].as_array_mut().unwrap().reverse();
    let Step::AllResolved { request_id: reversed, .. } = &parse(&v).unwrap().plan()[2] else { panic!() };
    assert_eq!(reversed, request_id);
}

#[test]
fn a_truncated_group_is_never_taken_as_all_resolved() {
    let mut v = sample();
    resolved(&mut v, 0, "2026-11-25T10:30:00Z");
    v["status"] = json!("resolved");
    assert!(parse(&v).unwrap().all_resolved());
    let Step::AllResolved { summary, .. } = &parse(&v).unwrap().plan()[1] else { panic!() };
    assert_eq!(summary, "the 1 alert of the Alertmanager group resolved");
    v["truncatedAlerts"] = json!(3);
    let n = parse(&v).unwrap();
    assert!(!n.all_resolved());
    assert_eq!(n.plan().len(), 1);
}

#[test]
fn a_long_group_key_gets_a_hashed_dedup_key() {
    let mut v = sample();
    v["groupKey"] = json!(format!("{{}}:{{{}}}", "a=\"b\", ".repeat(100)));
    let key = parse(&v).unwrap().dedup_key();
    assert!(key.as_str().starts_with("alertmanager/sha256:"), "{key}");
}

#[test]
fn invalid_notifications_name_each_problem() {
    type Edit = fn(&mut Value);
    let cases: &[(&str, Edit, &[&str])] = &[
        ("not an object", |v| *v = json!([1]), &["the body must be a JSON object"]),
        (
            "no version",
            |v| drop(v.as_object_mut().unwrap().remove("version")),
            &["'version' is missing (Alertmanager sends \"4\")"],
        ),
        ("version 3", |v| v["version"] = json!("3"), &["'version' is \"3\"; only version \"4\" is supported"]),
        ("version as a number", |v| v["version"] = json!(4), &["'version' is 4; only version \"4\" is supported"]),
        ("no groupKey", |v| drop(v.as_object_mut().unwrap().remove("groupKey")), &["'groupKey' is missing or blank"]),
        ("blank groupKey", |v| v["groupKey"] = json!("  "), &["'groupKey' is missing or blank"]),
        ("groupKey not a string", |v| v["groupKey"] = json!(7), &["'groupKey' must be a string"]),
        (
            "bad status",
            |v| v["status"] = json!("pending"),
            &["'status' is \"pending\"; expected \"firing\" or \"resolved\""],
        ),
        ("no alerts", |v| drop(v.as_object_mut().unwrap().remove("alerts")), &["'alerts' is missing"]),
        ("empty alerts", |v| v["alerts"] = json!([]), &["'alerts' is empty"]),
        ("alerts not an array", |v| v["alerts"] = json!({}), &["'alerts' must be an array"]),
        ("alert not an object", |v| v["alerts"] = json!(["x"]), &["'alerts[0]' must be an object"]),
        (
            "label not a string",
            |v| v["alerts"][0]["labels"]["n"] = json!(1),
            &["'alerts[0].labels.n' must be a string"],
        ),
        (
            "labels missing",
            |v| drop(v["alerts"][0].as_object_mut().unwrap().remove("labels")),
            &["'alerts[0].labels' is missing"],
        ),
        (
            "commonLabels not an object",
            |v| v["commonLabels"] = json!("x"),
            &["'commonLabels' must be an object of strings"],
        ),
        (
            "bad startsAt",
            |v| v["alerts"][0]["startsAt"] = json!("yesterday"),
            &["'alerts[0].startsAt' is not an RFC 3339 time: \"yesterday\" (premature end of input)"],
        ),
        (
            "no startsAt",
            |v| drop(v["alerts"][0].as_object_mut().unwrap().remove("startsAt")),
            &["'alerts[0].startsAt' is missing"],
        ),
        (
            "resolved without endsAt",
            |v| v["alerts"][0]["status"] = json!("resolved"),
            &["'alerts[0].endsAt' is missing on a resolved alert"],
        ),
        (
            "no fingerprint",
            |v| drop(v["alerts"][0].as_object_mut().unwrap().remove("fingerprint")),
            &["'alerts[0].fingerprint' is missing or blank"],
        ),
        (
            "long fingerprint",
            |v| v["alerts"][0]["fingerprint"] = json!("f".repeat(129)),
            &["'alerts[0].fingerprint' must be at most 128 characters without control characters"],
        ),
        (
            "negative truncatedAlerts",
            |v| v["truncatedAlerts"] = json!(-1),
            &["'truncatedAlerts' must be a number of alerts (0 or more)"],
        ),
        (
            "several problems",
            |v| {
                v["version"] = json!("5");
                v["alerts"][0]["status"] = json!("bad");
            },
            &[
                "'version' is \"5\"; only version \"4\" is supported",
                "'alerts[0].status' is \"bad\"; expected \"firing\" or \"resolved\"",
            ],
        ),
    ];
    for (case, edit, expected) in cases {
        let mut v = sample();
        edit(&mut v);
        let errors = parse(&v).expect_err(case);
        assert_eq!(errors, *expected, "{case}");
    }
    let errors = parse_alertmanager(b"{not json").unwrap_err();
    assert_eq!(errors.len(), 1);
    assert!(errors[0].starts_with("the body is not valid JSON: "), "{errors:?}");
}

#[test]
fn arbitrary_bytes_never_panic() {
    for bytes in [&b""[..], b"null", b"\"x\"", b"{\"alerts\":[null]}", &[0xff, 0xfe], b"[[[[[[[[[[[[[[[[[[[["] {
        assert!(parse_alertmanager(bytes).is_err());
    }
}
