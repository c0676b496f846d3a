use serde_json::json;

use super::*;

/// PagerDuty's own example trigger, with fields PagerDuty does not define.
fn trigger() -> Value {
    json!({
        "payload": {
            "summary": "DISK at 99% on machine prod-datapipe03.example.com",
            "timestamp": "2015-07-17T08:42:58.315+0000",
            "severity": "critical",
            "source": "prod-datapipe03.example.com",
            "component": "mysql",
            "group": "prod-datapipe",
            "class": "disk",
            "custom_details": {"free space": "1%", "ping time": "1500ms", "load avg": 0.75, "nested": {"a": 1}},
            "unknown_payload_field": true
        },
        "routing_key": "e93facc04764012d7bfb002500d5d1a6",
        "dedup_key": "srv01/mysql",
        "event_action": "trigger",
        "client": "Sample Monitoring Service",
        "client_url": "https://monitoring.service.com",
        "links": [{"href": "http://pagerduty.example.com", "text": "An example link."}],
        "images": [{"src": "https://chart.example.com/x.png", "href": "https://example.com", "alt": "A chart"}],
        "unknown_top_level_field": [1, 2]
    })
}

fn parse(value: &Value) -> Result<Event, Vec<String>> {
    parse_pagerduty(&serde_json::to_vec(value).unwrap())
}

#[test]
fn pagerdutys_example_trigger_parses_with_unknown_fields() {
    let e = parse(&trigger()).unwrap();
    assert_eq!(e.action, Action::Trigger);
    assert_eq!(e.routing_key, "e93facc04764012d7bfb002500d5d1a6");
    assert_eq!((e.dedup_key.as_str(), e.dedup_key_generated), ("srv01/mysql", false));
    let p = e.payload.as_ref().unwrap();
    assert_eq!(p.severity, PagerDutySeverity::Critical);
    assert_eq!(p.source, "prod-datapipe03.example.com");
    assert_eq!(p.timestamp.unwrap().to_rfc3339(), "2015-07-17T08:42:58.315+00:00");
    assert_eq!(p.group.as_deref(), Some("prod-datapipe"));
    assert_eq!(
        e.links,
        vec![Link { href: "http://pagerduty.example.com".into(), text: Some("An example link.".into()) }]
    );
    assert_eq!(e.images[0].alt.as_deref(), Some("A chart"));
    assert_eq!(e.digest.len(), 64);
}

#[test]
fn a_trigger_becomes_a_report() {
    let e = parse(&trigger()).unwrap();
    let Some(Command::ReportIssue {
        source, reporter, title, description, service, labels, dedup_key, started_at, ..
    }) = e.report_command()
    else {
        panic!()
    };
    assert_eq!(source, ReportSource::PagerDuty);
    assert_eq!(reporter.as_str(), "svc:pagerduty");
    assert_eq!(title, "DISK at 99% on machine prod-datapipe03.example.com");
    assert_eq!(service.map(|s| s.to_string()).as_deref(), Some("prod-datapipe"), "the group names the service");
    assert_eq!(dedup_key.map(|k| k.to_string()).as_deref(), Some("pagerduty/srv01/mysql"));
    assert_eq!(started_at, p_timestamp(&e));
    let expected: BTreeMapOf = [
        ("severity", "critical"),
        ("source", "prod-datapipe03.example.com"),
        ("component", "mysql"),
        ("group", "prod-datapipe"),
        ("class", "disk"),
        ("client", "Sample Monitoring Service"),
        ("details.free space", "1%"),
        ("details.ping time", "1500ms"),
        ("details.load avg", "0.75"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    assert_eq!(labels, expected);
    for part in [
        "Source: prod-datapipe03.example.com",
        "Client: Sample Monitoring Service (https://monitoring.service.com)",
        "\"nested\": {",
        "- An example link.: http://pagerduty.example.com",
        "- A chart: https://chart.example.com/x.png (links to https://example.com)",
    ] {
        assert!(description.contains(part), "{part:?} in {description}");
    }
}

type BTreeMapOf = std::collections::BTreeMap<String, String>;

fn p_timestamp(e: &Event) -> Option<DateTime<Utc>> {
    e.payload.as_ref().and_then(|p| p.timestamp)
}

#[test]
fn a_long_summary_is_the_description_and_a_cut_title() {
    let mut v = trigger();
    v["payload"]["summary"] = json!("x".repeat(SUMMARY_CHARS_MAX));
    let Some(Command::ReportIssue { title, description, .. }) = parse(&v).unwrap().report_command() else { panic!() };
    assert_eq!(title.chars().count(), klaxon_domain::incident::TITLE_CHARS_MAX);
    assert!(title.ends_with('…'));
    assert!(description.starts_with(&"x".repeat(SUMMARY_CHARS_MAX)));
}

#[test]
fn a_trigger_without_dedup_key_gets_one_from_its_content() {
    let mut v = trigger();
    v.as_object_mut().unwrap().remove("dedup_key");
    let first = parse(&v).unwrap();
    assert!(first.dedup_key_generated);
    assert_eq!(first.dedup_key.len(), 32);
    assert_eq!(parse(&v).unwrap().dedup_key, first.dedup_key, "a retry gets the same key");
    v["payload"]["summary"] = json!("another problem");
    assert_ne!(parse(&v).unwrap().dedup_key, first.dedup_key);
    // A blank one counts as absent on a trigger.
    v["dedup_key"] = json!("");
    assert!(parse(&v).unwrap().dedup_key_generated);
}

#[test]
fn acknowledge_and_resolve_need_only_a_dedup_key() {
    for (action, expected) in [("acknowledge", Action::Acknowledge), ("resolve", Action::Resolve)] {
        let v = json!({"routing_key": "r", "event_action": action, "dedup_key": "srv01/mysql"});
        let e = parse(&v).unwrap();
        assert_eq!((e.action, e.payload.is_none(), e.report_command()), (expected, true, None));
        let with_note =
            json!({"routing_key": "r", "event_action": action, "dedup_key": "k", "payload": {"summary": "on it"}});
        assert_eq!(parse(&with_note).unwrap().note.as_deref(), Some("on it"));
    }
    let ack = parse(&json!({"routing_key": "r", "event_action": "acknowledge", "dedup_key": "k"})).unwrap();
    assert_eq!(ack.acknowledge_text(), "Acknowledged through the PagerDuty Events API (dedup_key \"k\")");
    let resolve = parse(&json!({"routing_key": "r", "event_action": "resolve", "dedup_key": "k"})).unwrap();
    assert_eq!(resolve.resolve_summary(), "resolved by its PagerDuty Events API sender (dedup_key \"k\")");
    assert_ne!(resolve.request_id("INC-1"), resolve.request_id("INC-2"), "scoped by incident");
    assert_eq!(resolve.request_id("INC-1"), resolve.request_id("INC-1"));
}

#[test]
fn invalid_events_name_each_problem() {
    type Edit = fn(&mut Value);
    let cases: &[(&str, Edit, &[&str])] = &[
        ("not an object", |v| *v = json!("x"), &["the event must be a JSON object"]),
        (
            "no routing_key",
            |v| drop(v.as_object_mut().unwrap().remove("routing_key")),
            &["'routing_key' is missing or blank"],
        ),
        ("blank routing_key", |v| v["routing_key"] = json!(" "), &["'routing_key' is missing or blank"]),
        ("routing_key not a string", |v| v["routing_key"] = json!(12), &["'routing_key' must be a string"]),
        (
            "long routing_key",
            |v| v["routing_key"] = json!("r".repeat(256)),
            &["'routing_key' is longer than 255 characters"],
        ),
        (
            "no event_action",
            |v| drop(v.as_object_mut().unwrap().remove("event_action")),
            &["'event_action' is missing or blank"],
        ),
        (
            "bad event_action",
            |v| v["event_action"] = json!("escalate"),
            &["'event_action' is invalid (\"escalate\"; must be one of: 'trigger', 'acknowledge', 'resolve')"],
        ),
        ("long dedup_key", |v| v["dedup_key"] = json!("d".repeat(256)), &["'dedup_key' is longer than 255 characters"]),
        (
            "control character in dedup_key",
            |v| v["dedup_key"] = json!("a\u{1}b"),
            &["'dedup_key' must not contain control characters"],
        ),
        (
            "acknowledge without dedup_key",
            |v| {
                v["event_action"] = json!("acknowledge");
                v.as_object_mut().unwrap().remove("dedup_key");
            },
            &["'dedup_key' is missing or blank (required to acknowledge)"],
        ),
        (
            "resolve with blank dedup_key",
            |v| {
                v["event_action"] = json!("resolve");
                v["dedup_key"] = json!("");
            },
            &["'dedup_key' is missing or blank (required to resolve)"],
        ),
        ("trigger without payload", |v| drop(v.as_object_mut().unwrap().remove("payload")), &["'payload' is missing"]),
        ("payload not an object", |v| v["payload"] = json!([1]), &["'payload' must be an object"]),
        (
            "no summary",
            |v| drop(v["payload"].as_object_mut().unwrap().remove("summary")),
            &["'payload.summary' is missing or blank"],
        ),
        (
            "long summary",
            |v| v["payload"]["summary"] = json!("s".repeat(1025)),
            &["'payload.summary' is longer than 1024 characters"],
        ),
        ("no source", |v| v["payload"]["source"] = json!(""), &["'payload.source' is missing or blank"]),
        (
            "no severity",
            |v| drop(v["payload"].as_object_mut().unwrap().remove("severity")),
            &["'payload.severity' is missing or blank"],
        ),
        (
            "bad severity",
            |v| v["payload"]["severity"] = json!("sev1"),
            &["'payload.severity' is invalid (\"sev1\"; must be one of: 'critical', 'error', 'warning', 'info')"],
        ),
        (
            "bad timestamp",
            |v| v["payload"]["timestamp"] = json!("noon"),
            &["'payload.timestamp' is not an ISO 8601 date and time: \"noon\""],
        ),
        ("component not a string", |v| v["payload"]["component"] = json!(1), &["'payload.component' must be a string"]),
        ("links not an array", |v| v["links"] = json!("x"), &["'links' must be an array"]),
        ("link without href", |v| v["links"] = json!([{"text": "t"}]), &["'links[0].href' is missing or blank"]),
        ("image not an object", |v| v["images"] = json!([1]), &["'images[0]' must be an object"]),
        ("image without src", |v| v["images"] = json!([{"alt": "a"}]), &["'images[0].src' is missing or blank"]),
        ("client not a string", |v| v["client"] = json!({}), &["'client' must be a string"]),
        (
            "everything wrong",
            |v| *v = json!({"event_action": "trigger", "payload": {"severity": "bad"}}),
            &[
                "'routing_key' is missing or blank",
                "'payload.summary' is missing or blank",
                "'payload.source' is missing or blank",
                "'payload.severity' is invalid (\"bad\"; must be one of: 'critical', 'error', 'warning', 'info')",
            ],
        ),
    ];
    for (case, edit, expected) in cases {
        let mut v = trigger();
        edit(&mut v);
        assert_eq!(parse(&v).expect_err(case), *expected, "{case}");
    }
    let errors = parse_pagerduty(b"{\"routing_key\":").unwrap_err();
    assert_eq!(errors.len(), 1);
    assert!(errors[0].starts_with("JSON parse error: "), "{errors:?}");
}

#[test]
fn arbitrary_bytes_never_panic() {
    for bytes in [&b""[..], b"null", b"[]", b"{\"payload\":null}", &[0xc3, 0x28], b"{\"links\":[null,{}]}"] {
        assert!(parse_pagerduty(bytes).is_err());
    }
}
