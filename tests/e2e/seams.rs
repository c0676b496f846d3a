//! The three promises issue 12 found broken at the seams between services,
//! each through the public API of a real `klaxond`: a retried review edit
//! writes once, a report's source is earned from the caller's token (an
//! engineer cannot make a Sev-1 by claiming to be an executive), and a title
//! of control characters is refused naming the field.

use klaxon_proto::v1;
use klaxon_tests::auth::as_person;
use klaxon_tests::metrics::scrape;
use klaxon_tests::{Klaxond, klaxon, klaxon_json};
use tonic::Code;
use tonic::transport::Channel;

use crate::eventually;

/// The example configuration, with `desk` allowed to report as the help
/// desk.
fn example_config(dir: &std::path::Path) -> String {
    let example = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/klaxon.toml")).unwrap();
    let config = example.replacen("[auth]\n", "[auth]\nhelp_desk_reporters = [\"desk\"]\n", 1);
    assert_ne!(config, example, "the example has an [auth] table");
    let path = dir.join("klaxon.toml");
    std::fs::write(&path, config).unwrap();
    path.display().to_string()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

fn connect(runtime: &tokio::runtime::Runtime, url: &str) -> Channel {
    let url = url.to_owned();
    runtime.block_on(async move { tonic::transport::Endpoint::from_shared(url).unwrap().connect().await.unwrap() })
}

fn head(server: &Klaxond) -> f64 {
    scrape(server.http_address.as_deref().expect("up serves metrics"))["klaxon_log_head"]
}

fn report(
    runtime: &tokio::runtime::Runtime,
    channel: &Channel,
    who: &str,
    request: v1::ReportRequest,
) -> Result<v1::ReportResponse, tonic::Status> {
    let mut incidents = v1::incidents_client::IncidentsClient::with_interceptor(channel.clone(), as_person(who));
    runtime.block_on(incidents.report(request)).map(tonic::Response::into_inner)
}

#[test]
fn a_retried_edit_review_writes_one_action_item() {
    let dir = tempfile::tempdir().unwrap();
    let config = example_config(dir.path());
    let server = Klaxond::start_with(&dir.path().join("data"), &["--config", &config]);
    let runtime = runtime();
    let channel = connect(&runtime, &server.url);
    let id = report(
        &runtime,
        &channel,
        "monitor",
        v1::ReportRequest { title: "Search is slow".into(), service: "search".into(), ..Default::default() },
    )
    .unwrap()
    .incident_id;
    let mut incidents = v1::incidents_client::IncidentsClient::with_interceptor(channel.clone(), as_person("maria"));
    // The evaluator's assessment first: one landing after the declaration
    // would set the severity to its own (a manager's override wins, a
    // declaration does not), and a Sev-3 opens no review.
    eventually("the severity assessment", || {
        let get = v1::GetIncidentRequest { incident_id: id.clone() };
        let incident = runtime.block_on(incidents.get_incident(get)).ok()?.into_inner();
        (incident.severity != v1::Severity::Unspecified as i32).then_some(())
    });
    let declare = v1::DeclareRequest { context: None, incident_id: id.clone(), severity: v1::Severity::Sev2 as i32 };
    runtime.block_on(incidents.declare(declare)).unwrap();
    let resolve = v1::ResolveRequest { context: None, incident_id: id.clone(), summary: "index rebuilt".into() };
    runtime.block_on(incidents.resolve(resolve)).unwrap();

    let mut review = v1::review_client::ReviewClient::with_interceptor(channel.clone(), as_person("rita"));
    eventually("the review opens", || {
        let opened = runtime.block_on(review.get_review(v1::GetReviewRequest { incident_id: id.clone() }));
        opened.ok().filter(|r| r.get_ref().opened).map(drop)
    });
    let edit = || v1::EditReviewRequest {
        context: Some(v1::CommandContext { request_id: "add-canary".into(), expected_version: None }),
        incident_id: id.clone(),
        edit: Some(v1::edit_review_request::Edit::AddActionItem("Canary index rebuilds".into())),
    };
    let first = runtime.block_on(review.edit_review(edit())).unwrap().into_inner();
    let before = head(&server);
    let again = runtime.block_on(review.edit_review(edit())).unwrap().into_inner();
    assert_eq!(again, first, "the retry answers as the first edit did");
    assert_eq!(head(&server), before, "the retry wrote nothing");
    // The CLI's retry (same --request-id) is the same request.
    let out = klaxon(
        &server.url,
        "rita",
        &["--request-id", "cli-add", "review", "action", "add", &id, "Alert on slow queries"],
    );
    assert!(out.status.success(), "{out:?}");
    let out = klaxon(
        &server.url,
        "rita",
        &["--request-id", "cli-add", "review", "action", "add", &id, "Alert on slow queries"],
    );
    assert!(out.status.success(), "{out:?}");
    let items = klaxon_json(&server.url, "rita", &["actions"]);
    let titles: Vec<&str> = items["items"].as_array().unwrap().iter().map(|i| i["title"].as_str().unwrap()).collect();
    assert_eq!(titles, ["Canary index rebuilds", "Alert on slow queries"], "{items:#}");
    // Open connections would make the stop wait out its drain.
    drop((review, incidents, channel, runtime));
    assert!(server.stop().success());
}

#[test]
fn the_report_source_is_earned_from_the_token_not_claimed() {
    let dir = tempfile::tempdir().unwrap();
    let config = example_config(dir.path());
    let server = Klaxond::start_with(&dir.path().join("data"), &["--config", &config]);
    let runtime = runtime();
    let channel = connect(&runtime, &server.url);
    let claim = |source: v1::ReportSource| v1::ReportRequest {
        title: "The CEO cannot log in".into(),
        service: "search".into(),
        source: source as i32,
        ..Default::default()
    };

    // An engineer claiming to be an executive (or the help desk, or
    // Alertmanager) is refused and nothing is written.
    let before = head(&server);
    for (who, source, says) in [
        ("ana", v1::ReportSource::Executive, "ana (engineer) may not report as executive"),
        ("maria", v1::ReportSource::Executive, "maria (manager) may not report as executive"),
        ("ana", v1::ReportSource::HelpDesk, "ana (engineer) may not report as help_desk"),
        ("monitor", v1::ReportSource::Alertmanager, "monitor (integration) may not report as alertmanager"),
        ("ceo", v1::ReportSource::Manual, "ceo (executive) may not report as manual"),
    ] {
        let refused = report(&runtime, &channel, who, claim(source)).expect_err("refused");
        assert_eq!(refused.code(), Code::PermissionDenied, "{who} as {source:?}: {refused:?}");
        assert!(refused.message().starts_with(says), "{refused:?}");
    }
    assert_eq!(head(&server), before, "refused claims wrote nothing");
    let out = klaxon(&server.url, "ana", &["report", "--title", "The CEO cannot log in", "--source", "executive"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("may not report as executive"), "{out:?}");
    assert_eq!(head(&server), before, "refused claims wrote nothing");

    // An executive's report is an escalation, rated Sev-1 by the example's
    // exec-escalation rule; claimed or not, its source is executive.
    let escalated = report(&runtime, &channel, "ceo", claim(v1::ReportSource::Unspecified)).unwrap().incident_id;
    let explained = eventually("the escalation is assessed", || {
        let explained = klaxon_json(&server.url, "maria", &["severity", "explain", &escalated]);
        (explained["rule_id"] == "exec-escalation").then_some(explained)
    });
    assert_eq!(explained["assessed"], "sev1", "{explained:#}");
    let claimed = report(&runtime, &channel, "ceo", claim(v1::ReportSource::Executive)).unwrap().incident_id;
    // The help desk's principal, and people and services without a claim.
    let desk = report(&runtime, &channel, "desk", claim(v1::ReportSource::HelpDesk)).unwrap().incident_id;
    let person = report(&runtime, &channel, "ana", claim(v1::ReportSource::Unspecified)).unwrap().incident_id;
    let service = report(&runtime, &channel, "monitor", claim(v1::ReportSource::Unspecified)).unwrap().incident_id;
    let incidents = v1::incidents_client::IncidentsClient::with_interceptor(channel.clone(), as_person("maria"));
    let source_of = |id: &str| {
        let incident =
            runtime.block_on(incidents.clone().get_incident(v1::GetIncidentRequest { incident_id: id.into() }));
        incident.unwrap().into_inner().source()
    };
    assert_eq!(
        [&escalated, &claimed, &desk, &person, &service].map(|id| source_of(id)),
        [
            v1::ReportSource::Executive,
            v1::ReportSource::Executive,
            v1::ReportSource::HelpDesk,
            v1::ReportSource::Manual,
            v1::ReportSource::Api,
        ]
    );
    let explained = klaxon_json(&server.url, "maria", &["severity", "explain", &person]);
    assert_ne!(explained["rule_id"], "exec-escalation", "{explained:#}");
    // Executives still write nothing else.
    let declare = v1::DeclareRequest { context: None, incident_id: person, severity: v1::Severity::Sev1 as i32 };
    let mut as_ceo = v1::incidents_client::IncidentsClient::with_interceptor(channel.clone(), as_person("ceo"));
    assert_eq!(runtime.block_on(as_ceo.declare(declare)).unwrap_err().code(), Code::PermissionDenied);
    drop((incidents, as_ceo, channel, runtime));
    assert!(server.stop().success());
}

#[test]
fn a_title_of_control_characters_is_refused_naming_the_field_on_every_path() {
    let dir = tempfile::tempdir().unwrap();
    let server = Klaxond::start(&dir.path().join("data"));
    let runtime = runtime();
    let channel = connect(&runtime, &server.url);
    let before = head(&server);
    const SAYS: &str = "invalid title: must be one line of text without control characters; character 1 is U+0000";

    // gRPC: INVALID_ARGUMENT naming the field; nothing written.
    let request = v1::ReportRequest { title: "\u{0}\u{1}\u{2}".into(), ..Default::default() };
    let refused = report(&runtime, &channel, "ana", request).expect_err("refused");
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    assert_eq!(refused.message(), SAYS);
    assert_eq!(head(&server), before, "nothing was written");

    // The CLI refuses with the server's words before sending: pointed at
    // a port nobody listens on, it still answers the refusal, not exit 4.
    // (A command line cannot hold NUL, so the title starts at U+0001.)
    let title = "\u{1}\u{2}\u{3}";
    let request = v1::ReportRequest { title: title.into(), ..Default::default() };
    let server_says = report(&runtime, &channel, "ana", request).expect_err("refused").message().to_owned();
    let out = klaxon("http://127.0.0.1:1", "ana", &["report", "--title", title]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stderr).trim(), format!("klaxon: {server_says}"));
    assert!(server_says.starts_with("invalid title: "), "{server_says}");

    // The HTTP intake cleans a monitor's text instead (a stray control
    // character must not keep an alert from paging), and refuses one with
    // nothing left, naming the field.
    let http = server.http_address.clone().unwrap();
    let event = |summary: &str| {
        serde_json::to_vec(&serde_json::json!({
            "routing_key": klaxon_tests::auth::token("pagerduty"), "event_action": "trigger", "dedup_key": "db-1/disk",
            "payload": {"summary": summary, "source": "db-1", "severity": "critical"},
        }))
        .unwrap()
    };
    let (status, body) =
        klaxon_tests::alertmanager::http_as(&http, None, "POST", "/v2/enqueue", &event("\u{0}\u{1}")).unwrap();
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("'payload.summary' is missing or blank"), "{body}");
    assert_eq!(head(&server), before, "nothing was written");
    let (status, body) =
        klaxon_tests::alertmanager::http_as(&http, None, "POST", "/v2/enqueue", &event("Disk\u{7} full\non db-1"))
            .unwrap();
    assert_eq!(status, 202, "{body}");
    let shown = klaxon_json(&server.url, "maria", &["show", "INC-1"]);
    let incident = shown.get("incident").unwrap_or(&shown);
    assert_eq!(incident["title"], "Disk  full on db-1", "{shown:#}");
    drop((channel, runtime));
    assert!(server.stop().success());
}
