//! The HTTP intake over real HTTP on loopback: the Alertmanager webhook and
//! the PagerDuty Events API v2 endpoint against a real intake on a real log.

use std::net::SocketAddr;
use std::sync::Arc;

use klaxon_domain::ids::{ActorId, Audience, IncidentId, Severity};
use klaxon_domain::incident::{Command, Incident, Status};
use klaxon_intake::http::{ALERTMANAGER_PATH, HttpOptions, PAGERDUTY_PATH, router};
use klaxon_intake::{CommandContext, Handle, Intake};
use klaxon_log::{Log, Position};
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

/// Intake and its HTTP router on a free loopback port, with its own log in
/// a temp dir. Everything stops when it is dropped.
struct HttpServer {
    address: SocketAddr,
    log: Log,
    handle: Handle,
    shutdown: CancellationToken,
    _dir: Arc<TempDir>,
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl HttpServer {
    async fn start(options: HttpOptions) -> HttpServer {
        let dir = Arc::new(tempfile::tempdir().unwrap());
        let log = Log::open(dir.path(), klaxon_log::Options::default()).unwrap();
        let intake = Intake::new(log.clone(), Default::default(), klaxon_reactor::system_clock());
        let handle = intake.handle();
        let shutdown = CancellationToken::new();
        tokio::spawn(intake.run(shutdown.clone()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let app = router(handle.clone(), options, None);
        let stop = shutdown.clone();
        tokio::spawn(async move {
            axum::serve(listener, app).with_graceful_shutdown(stop.cancelled_owned()).await.unwrap();
        });
        HttpServer { address, log, handle, shutdown, _dir: dir }
    }

    fn head(&self) -> Position {
        self.log.head()
    }

    /// POSTs `body` and returns the status, the headers (lowercase names)
    /// and the JSON body.
    async fn post(&self, path: &str, body: &[u8]) -> (u16, Vec<(String, String)>, Value) {
        let (status, headers, raw) = self.post_raw(path, body).await;
        let json = serde_json::from_str(&raw).unwrap_or_else(|e| panic!("a JSON body ({e}): {raw}"));
        (status, headers, json)
    }

    /// POSTs `body` and returns the status, the headers (lowercase names)
    /// and the body as sent.
    async fn post_raw(&self, path: &str, body: &[u8]) -> (u16, Vec<(String, String)>, String) {
        let mut stream = tokio::net::TcpStream::connect(self.address).await.unwrap();
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.address,
            body.len()
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        stream.write_all(body).await.unwrap();
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.unwrap();
        let split = response.windows(4).position(|w| w == b"\r\n\r\n").expect("a complete response head");
        let head = String::from_utf8(response[..split].to_vec()).unwrap();
        let mut lines = head.split("\r\n");
        let status = lines.next().unwrap().split_whitespace().nth(1).unwrap().parse().unwrap();
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        (status, headers, String::from_utf8(response[split + 4..].to_vec()).unwrap())
    }

    async fn post_json(&self, path: &str, body: &Value) -> (u16, Value) {
        let (status, _, json) = self.post(path, &serde_json::to_vec(body).unwrap()).await;
        (status, json)
    }

    async fn incident(&self, id: &str) -> Incident {
        self.handle.get(id.parse().unwrap()).await.unwrap()
    }

    async fn incidents(&self) -> Vec<Incident> {
        self.handle.list(&Default::default(), 100, None).await.unwrap().0
    }

    /// The summaries of an incident's events.
    async fn history(&self, id: &str) -> Vec<String> {
        self.handle.history(id.parse().unwrap()).await.unwrap().into_iter().map(|(_, e)| e.summary()).collect()
    }

    async fn declare(&self, id: &str) {
        let ctx = CommandContext::by(ActorId::new("maria").unwrap());
        let id: IncidentId = id.parse().unwrap();
        self.handle.execute(id, Command::DeclareIncident { severity: Severity::Sev2 }, &ctx).await.unwrap();
    }
}

fn alert(fingerprint: &str, instance: &str, status: &str, ends_at: &str) -> Value {
    json!({
        "status": status,
        "labels": {"alertname": "CheckoutErrors", "instance": instance, "service": "payments"},
        "annotations": {"summary": format!("Checkout errors on {instance}")},
        "startsAt": "2026-11-25T10:00:00Z",
        "endsAt": ends_at,
        "generatorURL": "http://prometheus:9090/graph",
        "fingerprint": fingerprint,
        "futureField": 1
    })
}

const NOT_ENDED: &str = "0001-01-01T00:00:00Z";

fn notification(group_key: &str, alerts: Vec<Value>) -> Value {
    let status = if alerts.iter().all(|a| a["status"] == "resolved") { "resolved" } else { "firing" };
    json!({
        "version": "4",
        "groupKey": group_key,
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "klaxon",
        "groupLabels": {"alertname": "CheckoutErrors"},
        "commonLabels": {"alertname": "CheckoutErrors", "service": "payments"},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "alerts": alerts,
        "somethingNew": {"x": 1}
    })
}

#[tokio::test]
async fn an_alertmanager_group_is_one_incident_and_retries_write_nothing() {
    let server = HttpServer::start(HttpOptions::default()).await;
    let group = "{}:{alertname=\"CheckoutErrors\"}";
    let a_firing = alert("aaaa000000000001", "eu-1", "firing", NOT_ENDED);
    let b_firing = alert("bbbb000000000002", "eu-2", "firing", NOT_ENDED);

    // The first alert opens the incident.
    let (status, body) = server.post_json(ALERTMANAGER_PATH, &notification(group, vec![a_firing.clone()])).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["incident"], "INC-1");
    assert_eq!((body["written"].as_u64(), body["deduplicated"].as_u64()), (Some(1), Some(0)), "{body}");
    let incident = server.incident("INC-1").await;
    assert_eq!(incident.title(), "Checkout errors on eu-1");
    assert_eq!(incident.dedup_key().unwrap().as_str(), format!("alertmanager/{group}"));
    assert_eq!(incident.service().unwrap().as_str(), "payments");
    assert_eq!(incident.labels()["instance"], "eu-1");
    assert_eq!(incident.started_at().unwrap().to_rfc3339(), "2026-11-25T10:00:00+00:00");
    assert_eq!(incident.reporter().as_str(), "svc:alertmanager");

    // Alertmanager retries (or repeats) it: nothing is written.
    let head = server.head();
    let (status, body) = server.post_json(ALERTMANAGER_PATH, &notification(group, vec![a_firing.clone()])).await;
    assert_eq!((status, body["deduplicated"].as_u64()), (200, Some(1)), "{body}");
    assert_eq!(server.head(), head, "a retry writes nothing");

    // A second alert of the group merges into the same incident.
    let both = notification(group, vec![a_firing.clone(), b_firing.clone()]);
    let (status, body) = server.post_json(ALERTMANAGER_PATH, &both).await;
    assert_eq!((status, body["written"].as_u64(), body["deduplicated"].as_u64()), (200, Some(1), Some(1)), "{body}");
    assert_eq!(server.head(), Position(head.0 + 1));
    assert_eq!(server.incidents().await.len(), 1, "one group, one incident");
    assert_eq!(server.incident("INC-1").await.report_count(), 2);
    let head = server.head();
    assert_eq!(server.post_json(ALERTMANAGER_PATH, &both).await.0, 200);
    assert_eq!(server.head(), head, "the retry of the merge writes nothing");

    // A manager declares it; then the first alert resolves.
    server.declare("INC-1").await;
    let a_resolved = alert("aaaa000000000001", "eu-1", "resolved", "2026-11-25T10:20:00Z");
    let (status, _) =
        server.post_json(ALERTMANAGER_PATH, &notification(group, vec![a_resolved.clone(), b_firing.clone()])).await;
    assert_eq!(status, 200);
    let incident = server.incident("INC-1").await;
    assert_eq!(incident.status(), Status::Declared, "one alert of two resolved changes no status");
    let update = incident.latest_update(Audience::Internal).unwrap();
    assert!(update.text.starts_with("Alert CheckoutErrors (aaaa000000000001) resolved"), "{}", update.text);

    // All resolved: the incident is mitigated, not resolved.
    let b_resolved = alert("bbbb000000000002", "eu-2", "resolved", "2026-11-25T10:25:00Z");
    let all_resolved = notification(group, vec![a_resolved.clone(), b_resolved.clone()]);
    let head = server.head();
    let (status, body) = server.post_json(ALERTMANAGER_PATH, &all_resolved).await;
    assert_eq!(status, 200, "{body}");
    // The first alert's update was already written; the second's and the note are new.
    assert_eq!((body["written"].as_u64(), body["deduplicated"].as_u64()), (Some(2), Some(1)), "{body}");
    assert_eq!(server.head(), Position(head.0 + 2));
    let incident = server.incident("INC-1").await;
    assert_eq!(incident.status(), Status::Mitigated);
    assert_eq!(incident.mitigation_summary(), Some("all 2 alerts of the Alertmanager group resolved"));
    assert_eq!(incident.resolved_at(), None, "never a silent resolve");
    let head = server.head();
    assert_eq!(server.post_json(ALERTMANAGER_PATH, &all_resolved).await.0, 200);
    assert_eq!(server.head(), head, "the retry of the resolution writes nothing");

    let history = server.history("INC-1").await;
    assert_eq!(history.len(), 6, "{history:#?}");
    assert!(history[5].starts_with("svc:alertmanager mitigated INC-1: all 2 alerts"), "{history:#?}");
}

#[tokio::test]
async fn a_resolved_group_of_an_undeclared_incident_gets_a_note_not_a_mitigation() {
    let server = HttpServer::start(HttpOptions::default()).await;
    let group = "{}:{alertname=\"DiskFull\"}";
    let firing = alert("cccc000000000003", "db-1", "firing", NOT_ENDED);
    assert_eq!(server.post_json(ALERTMANAGER_PATH, &notification(group, vec![firing])).await.0, 200);
    let resolved = alert("cccc000000000003", "db-1", "resolved", "2026-11-25T10:05:00Z");
    let (status, body) = server.post_json(ALERTMANAGER_PATH, &notification(group, vec![resolved])).await;
    assert_eq!((status, body["written"].as_u64()), (200, Some(2)), "{body}");
    let incident = server.incident("INC-1").await;
    assert_eq!(incident.status(), Status::Reported);
    assert_eq!(
        incident.latest_update(Audience::Internal).unwrap().text,
        "the 1 alert of the Alertmanager group resolved; not mitigated automatically because INC-1 is reported"
    );

    // A resolved group Klaxon never saw firing opens nothing.
    let head = server.head();
    let other = alert("dddd000000000004", "db-2", "resolved", "2026-11-25T10:05:00Z");
    let (status, body) = server.post_json(ALERTMANAGER_PATH, &notification("{}:{other}", vec![other])).await;
    assert_eq!((status, body["skipped"].as_u64()), (200, Some(2)), "{body}");
    assert_eq!(server.head(), head);
}

#[tokio::test]
async fn invalid_alertmanager_notifications_are_refused_and_write_nothing() {
    let options = HttpOptions { alertmanager_body_bytes_max: 4096, ..HttpOptions::default() };
    let server = HttpServer::start(options).await;
    let good = notification("g", vec![alert("eeee000000000005", "x", "firing", NOT_ENDED)]);
    let mut bad_version = good.clone();
    bad_version["version"] = json!("3");
    let mut bad_time = good.clone();
    bad_time["alerts"][0]["startsAt"] = json!("soon");
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        ("not JSON", b"{oops".to_vec(), 400, "the body is not valid JSON"),
        ("version 3", serde_json::to_vec(&bad_version).unwrap(), 400, "only version \"4\" is supported"),
        ("bad startsAt", serde_json::to_vec(&bad_time).unwrap(), 400, "'alerts[0].startsAt' is not an RFC 3339 time"),
        ("too large", vec![b' '; 5000], 413, "larger than 4096 bytes"),
    ];
    for (case, body, expected, says) in cases {
        let head = server.head();
        let (status, _, json) = server.post(ALERTMANAGER_PATH, &body).await;
        assert_eq!(status, expected, "{case}: {json}");
        assert_eq!(json["status"], "error", "{case}");
        assert!(json["errors"][0].as_str().unwrap().contains(says), "{case}: {json}");
        assert_eq!(server.head(), head, "{case} wrote nothing");
    }
}

fn trigger(routing_key: &str, dedup_key: Option<&str>, summary: &str) -> Value {
    let mut event = json!({
        "routing_key": routing_key,
        "event_action": "trigger",
        "payload": {"summary": summary, "source": "db-1.example.com", "severity": "critical", "group": "payments"},
        "links": [{"href": "https://grafana.example.com/d/1", "text": "Dashboard"}],
        "client": "Grafana"
    });
    if let Some(key) = dedup_key {
        event["dedup_key"] = json!(key);
    }
    event
}

#[tokio::test]
async fn pagerduty_trigger_acknowledge_and_resolve() {
    let server = HttpServer::start(HttpOptions::default()).await;

    // A trigger without dedup_key: 202 with a generated key.
    let first = trigger("key1", None, "Replication lag on db-1");
    let (status, body) = server.post_json(PAGERDUTY_PATH, &first).await;
    assert_eq!(status, 202, "{body}");
    let generated = body["dedup_key"].as_str().unwrap().to_owned();
    assert_eq!(body, json!({"status": "success", "message": "Event processed", "dedup_key": generated}));
    assert_eq!(generated.len(), 32);
    let incident = server.incident("INC-1").await;
    assert_eq!(incident.dedup_key().unwrap().as_str(), format!("pagerduty/{generated}"));
    assert_eq!(incident.title(), "Replication lag on db-1");
    assert_eq!(incident.service().unwrap().as_str(), "payments");
    assert_eq!(incident.labels()["severity"], "critical");
    assert!(incident.description().contains("- Dashboard: https://grafana.example.com/d/1"));

    // Sent again (a retry): the same answer, to PagerDuty's field order, and
    // nothing written.
    let head = server.head();
    let (_, _, raw) = server.post_raw(PAGERDUTY_PATH, &serde_json::to_vec(&first).unwrap()).await;
    assert_eq!(raw, format!(r#"{{"status":"success","message":"Event processed","dedup_key":"{generated}"}}"#));
    assert_eq!(server.head(), head, "a retried trigger writes nothing");

    // Another trigger with that key merges into the incident.
    let again = trigger("key1", Some(&generated), "Replication lag on db-1, still");
    let (status, body) = server.post_json(PAGERDUTY_PATH, &again).await;
    assert_eq!((status, body["dedup_key"].as_str()), (202, Some(generated.as_str())));
    assert_eq!(server.incidents().await.len(), 1);
    assert_eq!(server.incident("INC-1").await.report_count(), 2);
    let head = server.head();
    assert_eq!(server.post_json(PAGERDUTY_PATH, &again).await.0, 202);
    assert_eq!(server.head(), head, "the same event again writes nothing");

    // Acknowledge: an internal update; again: nothing.
    let ack = json!({"routing_key": "key1", "event_action": "acknowledge", "dedup_key": generated});
    assert_eq!(server.post_json(PAGERDUTY_PATH, &ack).await.0, 202);
    let incident = server.incident("INC-1").await;
    assert_eq!(
        incident.latest_update(Audience::Internal).unwrap().text,
        format!("Acknowledged through the PagerDuty Events API (dedup_key {generated:?})")
    );
    let head = server.head();
    assert_eq!(server.post_json(PAGERDUTY_PATH, &ack).await.0, 202);
    assert_eq!(server.head(), head);

    // Resolve on a declared incident: mitigated, never resolved.
    server.declare("INC-1").await;
    let resolve = json!({"routing_key": "key1", "event_action": "resolve", "dedup_key": generated});
    let (status, body) = server.post_json(PAGERDUTY_PATH, &resolve).await;
    assert_eq!(status, 202, "{body}");
    let incident = server.incident("INC-1").await;
    assert_eq!(incident.status(), Status::Mitigated);
    assert_eq!(
        incident.mitigation_summary().unwrap(),
        format!("resolved by its PagerDuty Events API sender (dedup_key {generated:?})")
    );
    let head = server.head();
    assert_eq!(server.post_json(PAGERDUTY_PATH, &resolve).await.0, 202);
    assert_eq!(server.head(), head, "a retried resolve writes nothing");

    // Acknowledge or resolve of a key with no open incident: 202, nothing written.
    let unknown = json!({"routing_key": "key1", "event_action": "resolve", "dedup_key": "nope"});
    assert_eq!(server.post_json(PAGERDUTY_PATH, &unknown).await.0, 202);
    assert_eq!(server.head(), head);

    // A resolve on a reported incident leaves a note.
    let other = trigger("key1", Some("srv02/disk"), "Disk full on srv02");
    assert_eq!(server.post_json(PAGERDUTY_PATH, &other).await.0, 202);
    let resolve = json!({"routing_key": "key1", "event_action": "resolve", "dedup_key": "srv02/disk",
                         "payload": {"summary": "disk cleaned"}});
    assert_eq!(server.post_json(PAGERDUTY_PATH, &resolve).await.0, 202);
    let incident = server.incident("INC-2").await;
    assert_eq!(incident.status(), Status::Reported);
    assert_eq!(
        incident.latest_update(Audience::Internal).unwrap().text,
        "resolved by its PagerDuty Events API sender (dedup_key \"srv02/disk\"): disk cleaned; \
         not mitigated automatically because INC-2 is reported"
    );
}

#[tokio::test]
async fn the_same_pagerduty_trigger_after_its_incident_closed_opens_a_new_one() {
    let server = HttpServer::start(HttpOptions::default()).await;
    let event = trigger("key1", Some("srv01/cpu"), "CPU high");
    assert_eq!(server.post_json(PAGERDUTY_PATH, &event).await.0, 202);
    let manager = CommandContext::by(ActorId::new("maria").unwrap());
    let id: IncidentId = "INC-1".parse().unwrap();
    server.declare("INC-1").await;
    server.handle.execute(id, Command::Resolve { summary: "fixed".into() }, &manager).await.unwrap();
    assert_eq!(server.post_json(PAGERDUTY_PATH, &event).await.0, 202);
    let incidents = server.incidents().await;
    assert_eq!(incidents.len(), 2, "the first is resolved, so the trigger opened INC-2");
    assert_eq!(server.incident("INC-2").await.report_count(), 1);
}

#[tokio::test]
async fn invalid_pagerduty_events_get_pagerdutys_400_and_write_nothing() {
    let server = HttpServer::start(HttpOptions::default()).await;
    let mut bad_severity = trigger("k", Some("d"), "s");
    bad_severity["payload"]["severity"] = json!("sev1");
    let mut no_payload = trigger("k", Some("d"), "s");
    no_payload.as_object_mut().unwrap().remove("payload");
    let cases: Vec<(&str, Vec<u8>, Vec<&str>)> = vec![
        ("not JSON", b"nope".to_vec(), vec![]),
        (
            "no routing key, bad action",
            serde_json::to_vec(&json!({"event_action": "escalate"})).unwrap(),
            vec![
                "'routing_key' is missing or blank",
                "'event_action' is invalid (\"escalate\"; must be one of: 'trigger', 'acknowledge', 'resolve')",
            ],
        ),
        ("trigger without payload", serde_json::to_vec(&no_payload).unwrap(), vec!["'payload' is missing"]),
        (
            "bad severity",
            serde_json::to_vec(&bad_severity).unwrap(),
            vec!["'payload.severity' is invalid (\"sev1\"; must be one of: 'critical', 'error', 'warning', 'info')"],
        ),
        (
            "acknowledge without dedup_key",
            serde_json::to_vec(&json!({"routing_key": "k", "event_action": "acknowledge"})).unwrap(),
            vec!["'dedup_key' is missing or blank (required to acknowledge)"],
        ),
    ];
    for (case, body, errors) in cases {
        let head = server.head();
        let (status, headers, json) = server.post(PAGERDUTY_PATH, &body).await;
        assert_eq!(status, 400, "{case}: {json}");
        assert!(headers.contains(&("content-type".into(), "application/json".into())), "{case}");
        assert_eq!(json["status"], "invalid event", "{case}");
        assert_eq!(json["message"], "Event object is invalid", "{case}");
        if errors.is_empty() {
            assert!(json["errors"][0].as_str().unwrap().starts_with("JSON parse error"), "{case}: {json}");
        } else {
            assert_eq!(json["errors"], json!(errors), "{case}");
        }
        assert_eq!(server.head(), head, "{case} wrote nothing");
    }

    // Over 512 KB: 413 in the same shape.
    let mut huge = trigger("k", Some("d"), "s");
    huge["payload"]["custom_details"] = json!({"blob": "x".repeat(600 * 1024)});
    let head = server.head();
    let (status, _, json) = server.post(PAGERDUTY_PATH, &serde_json::to_vec(&huge).unwrap()).await;
    assert_eq!(status, 413, "{json}");
    assert_eq!(json["status"], "invalid event");
    assert_eq!(json["errors"], json!(["the request body is larger than 524288 bytes"]));
    assert_eq!(server.head(), head);
}

#[tokio::test]
async fn pagerduty_events_over_the_burst_are_throttled_per_routing_key() {
    let options = HttpOptions { pagerduty_events_per_minute: 1, pagerduty_burst: 3, ..HttpOptions::default() };
    let server = HttpServer::start(options).await;
    for i in 0..3 {
        let (status, body) = server.post_json(PAGERDUTY_PATH, &trigger("busy", Some("k"), &format!("event {i}"))).await;
        assert_eq!(status, 202, "{body}");
    }
    let head = server.head();
    let (status, headers, body) =
        server.post(PAGERDUTY_PATH, &serde_json::to_vec(&trigger("busy", Some("k"), "event 4")).unwrap()).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["status"], "throttle event");
    assert!(body["message"].as_str().unwrap().contains("Please retry later"));
    let retry_after: u64 = headers.iter().find(|(k, _)| k == "retry-after").unwrap().1.parse().unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    assert_eq!(server.head(), head, "a throttled event writes nothing");
    // Another routing key has its own bucket.
    assert_eq!(server.post_json(PAGERDUTY_PATH, &trigger("calm", Some("k2"), "other")).await.0, 202);
}
