//! Notifier tests: a real log, the real intake and notifier, real webhook
//! deliveries to an HTTP receiver on loopback, real gRPC feeds.
#![allow(missing_docs)]

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use klaxon_domain::ids::{ActorId, Audience, IncidentId, IncidentRole, ReportSource, Severity};
use klaxon_domain::incident::Command;
use klaxon_domain::notifier::NotifierSectionConfig;
use klaxon_intake::{CommandContext, Intake};
use klaxon_log::{Log, Position};
use klaxon_notifier::{Notifier, NotifierOptions};
use klaxon_proto::v1;
use klaxon_reactor::ManualClock;
use klaxon_tests::receiver::Receiver;
use tokio_util::sync::CancellationToken;

/// The real SMTP server process (aiosmtpd) of the channels' tests.
#[path = "../../../klaxon-channels/tests/it/smtp.rs"]
#[allow(dead_code)]
mod smtp;

const SECRET: &str = "notifier-test-secret-0123456789";

fn options(url: &str, interval_ms: u64) -> NotifierOptions {
    #[derive(serde::Deserialize)]
    struct File {
        notifier: NotifierSectionConfig,
        channels: Vec<klaxon_channels::ChannelConfig>,
    }
    let text = format!(
        r#"
[notifier]
severities = ["sev1"]
executive_channels = ["execs"]
company_wide_channels = ["everyone"]
feed_interval_ms = {interval_ms}
cadence_severities = ["sev1"]

[[channels]]
name = "execs"
kind = "webhook"
url = "{url}"
secret_env = "S"
backoff_initial_ms = 10
backoff_max_ms = 20

[[channels]]
name = "everyone"
kind = "webhook"
url = "{url}"
secret_env = "S"
backoff_initial_ms = 10
backoff_max_ms = 20

[[channels]]
name = "people"
kind = "webhook"
url = "{url}"
secret_env = "S"
backoff_initial_ms = 10
backoff_max_ms = 20
"#
    );
    let file: File = toml::from_str(&text).unwrap();
    NotifierOptions {
        notifier: Arc::new(file.notifier.validate("notifier").unwrap().with_people_channels(vec!["people".into()])),
        paging: None,
        channels: Arc::new(klaxon_channels::Channels::new(&file.channels, |_| Some(SECRET.into())).unwrap()),
        // Small, so that the stalled-subscriber test overflows it.
        feed_lag_max: 256,
    }
}

struct World {
    _dir: tempfile::TempDir,
    log: Log,
    clock: ManualClock,
    intake: klaxon_intake::Handle,
    notifier: klaxon_notifier::Handle,
    stop: CancellationToken,
}

fn start(options: NotifierOptions) -> World {
    start_evicting(options, None)
}

/// A world whose notifier evicts finished incidents `after` (or never).
fn start_evicting(options: NotifierOptions, after: Option<Duration>) -> World {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), Default::default()).unwrap();
    let clock = ManualClock::new("2026-11-25T10:00:00Z".parse::<DateTime<Utc>>().unwrap());
    let stop = CancellationToken::new();
    let intake = Intake::new(log.clone(), Default::default(), clock.shared());
    let intake_handle = intake.handle();
    tokio::spawn(intake.run(stop.clone()));
    let mut notifier = Notifier::new(log.clone(), options, Arc::new(clock.clone()));
    if let Some(after) = after {
        notifier = notifier.with_eviction(after);
    }
    let handle = notifier.handle();
    tokio::spawn(notifier.run(stop.clone()));
    World { _dir: dir, log, clock, intake: intake_handle, notifier: handle, stop }
}

fn maria() -> CommandContext {
    CommandContext::by(ActorId::new("maria").unwrap())
}

impl World {
    async fn incident(&self, service: &str, customers: &[&str], severity: Option<Severity>) -> IncidentId {
        let report = Command::ReportIssue {
            source: ReportSource::Api,
            reporter: ActorId::new("monitor").unwrap(),
            title: format!("{service} is failing"),
            description: String::new(),
            service: Some(service.parse().unwrap()),
            customers: customers.iter().map(|c| c.parse().unwrap()).collect(),
            labels: Default::default(),
            dedup_key: None,
            started_at: None,
        };
        let id = self.intake.report(report, &maria()).await.unwrap().incident;
        if let Some(severity) = severity {
            self.intake.execute(id, Command::DeclareIncident { severity }, &maria()).await.unwrap();
        }
        id
    }

    fn notify_events(&self) -> Vec<serde_json::Value> {
        self.log
            .read_all(Position(1), 100_000)
            .unwrap()
            .into_iter()
            .filter(|r| r.kind.as_str().starts_with("notify."))
            .map(|r| {
                let mut v: serde_json::Value = r.data.parse().unwrap();
                v["kind"] = r.kind.as_str().into();
                v
            })
            .collect()
    }

    /// The notify events, which must be `n` once the notifier has settled.
    async fn until_notify_events(&self, n: usize) -> Vec<serde_json::Value> {
        self.settled().await;
        let events = self.notify_events();
        assert_eq!(events.len(), n, "not {n} notify events: {events:?}");
        events
    }

    /// The barrier: waits until the notifier has processed everything in
    /// the log (folded it, delivered and recorded what it decided) and
    /// nothing is due at the clock's time.
    async fn settled(&self) {
        self.notifier.reactor().wait_processed(self.log.head()).await.unwrap();
    }

    async fn feed(&self, filter: v1::FeedFilter) -> tonic::Streaming<v1::FeedItem> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(
                    klaxon_notifier::grpc::FeedService::new(self.notifier.clone(), self.stop.clone()).into_server(),
                )
                .serve_with_incoming_shutdown(
                    tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
                    self.stop.clone().cancelled_owned(),
                ),
        );
        let mut client = v1::status_feed_client::StatusFeedClient::connect(format!("http://{address}")).await.unwrap();
        client.subscribe(filter).await.unwrap().into_inner()
    }
}

async fn next(feed: &mut tonic::Streaming<v1::FeedItem>) -> v1::FeedItem {
    tokio::time::timeout(Duration::from_secs(10), feed.message())
        .await
        .expect("an item within 10 s")
        .unwrap()
        .expect("open")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn executives_are_told_of_a_sev1_once_then_follow_it_and_the_company_gets_the_all_clear() {
    let receiver = Receiver::start(SECRET).await;
    let w = start(options(&receiver.url, 100));
    w.incident("search", &["acme"], Some(Severity::Sev2)).await;
    let id = w.incident("payments", &["acme", "globex"], Some(Severity::Sev1)).await;
    let events = w.until_notify_events(2).await;
    let audiences: Vec<(&str, &str, &str)> = events
        .iter()
        .map(|e| (e["incident"].as_str().unwrap(), e["channel"].as_str().unwrap(), e["audience"].as_str().unwrap()))
        .collect();
    assert_eq!(audiences, [("INC-2", "execs", "executive"), ("INC-2", "everyone", "company_wide")]);
    let delivered = receiver.wait_for_delivered(2, Duration::from_secs(10)).await;
    assert!(delivered.iter().all(|r| r.signature_ok && r.body["fields"]["incident"] == "INC-2"));
    // Later changes are followed up, coalesced: a burst within the
    // interval (a minute by default) becomes one post with the latest state.
    w.intake
        .execute(id, Command::AssignCommander { commander: ActorId::new("maria").unwrap() }, &maria())
        .await
        .unwrap();
    let update = Command::PostUpdate { audience: Audience::Executive, text: "Failing over to eu-west".into() };
    w.intake.execute(id, update, &maria()).await.unwrap();
    w.settled().await;
    assert_eq!(w.notify_events().len(), 2, "not before the interval");
    w.clock.advance(TimeDelta::seconds(60));
    let events = w.until_notify_events(3).await;
    assert_eq!((&events[2]["channel"], &events[2]["audience"]), (&"execs".into(), &"executive".into()));
    let delivered = receiver.wait_for_delivered(3, Duration::from_secs(10)).await;
    let follow_up = &delivered[2].body;
    assert_eq!(follow_up["kind"], "executive_update");
    let text = follow_up["text"].as_str().unwrap();
    assert!(text.contains("Commander: maria.") && text.contains("Latest update: Failing over to eu-west."), "{text}");
    assert!(text.contains("Next update due 2026-11-25 10:30 UTC."), "{text}");
    // The resolution: executives hear of it, and the company gets its all-clear.
    w.intake.execute(id, Command::Resolve { summary: "failed over".into() }, &maria()).await.unwrap();
    w.clock.advance(TimeDelta::seconds(60));
    let events = w.until_notify_events(5).await;
    let mut last: Vec<(&str, &str)> =
        events[3..].iter().map(|e| (e["audience"].as_str().unwrap(), e["summary"].as_str().unwrap())).collect();
    last.sort();
    assert_eq!(last[0].0, "company_wide");
    assert!(last[0].1.starts_with("All clear: INC-2 (SEV1) is resolved"), "{events:?}");
    assert_eq!(last[1].0, "executive");
    assert!(last[1].1.starts_with("INC-2 update: SEV1, resolved"), "{events:?}");
    assert_eq!(receiver.wait_for_delivered(5, Duration::from_secs(10)).await.len(), 5);
    w.stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sev1_without_an_executive_update_within_the_cadence_is_overdue_once() {
    let receiver = Receiver::start(SECRET).await;
    let w = start(options(&receiver.url, 100));
    let id = w.incident("payments", &["acme"], Some(Severity::Sev1)).await;
    w.intake
        .execute(id, Command::AssignCommander { commander: ActorId::new("maria").unwrap() }, &maria())
        .await
        .unwrap();
    let lead = Command::AssignRole { role: IncidentRole::CommunicationsLead, person: ActorId::new("li").unwrap() };
    w.intake.execute(id, lead, &maria()).await.unwrap();
    w.until_notify_events(1).await;
    let overdue = |w: &World| -> Vec<serde_json::Value> {
        w.notify_events().into_iter().filter(|e| e["kind"] == "notify.update_overdue.v1").collect()
    };
    // Default cadence 30 minutes: one second early nothing, then overdue once.
    w.clock.advance(TimeDelta::minutes(30) - TimeDelta::seconds(1));
    w.settled().await;
    assert_eq!(overdue(&w), Vec::<serde_json::Value>::new());
    w.clock.advance(TimeDelta::seconds(1));
    w.settled().await;
    let missed = overdue(&w);
    assert_eq!(missed.len(), 1);
    assert_eq!(missed[0]["commander"], "maria");
    w.settled().await;
    assert_eq!(overdue(&w).len(), 1, "once per missed cadence");
    // The commander and the communications lead are reminded, each once,
    // addressed to them; the executive channel is not.
    let reminders: Vec<(String, String)> = receiver
        .requests()
        .iter()
        .filter(|r| r.status < 300 && r.body["kind"] == "update_reminder")
        .map(|r| (r.body["recipient"].as_str().unwrap_or_default().to_string(), r.idempotency_key.clone()))
        .collect();
    let due = (missed[0]["due_at"].as_str().map(|d| d.parse::<DateTime<Utc>>().unwrap())).expect("due_at").timestamp();
    assert_eq!(
        reminders,
        [
            ("maria".to_string(), format!("{id}/update-due/{due}/maria")),
            ("li".to_string(), format!("{id}/update-due/{due}/li"))
        ]
    );
    // An executive update resets the cadence.
    let update = Command::PostUpdate { audience: Audience::Executive, text: "failover done".into() };
    w.intake.execute(id, update, &maria()).await.unwrap();
    w.clock.advance(TimeDelta::minutes(29));
    w.settled().await;
    assert_eq!(overdue(&w).len(), 1);
    w.stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_subscriber_gets_the_snapshot_then_live_items_and_filters_hold() {
    let receiver = Receiver::start(SECRET).await;
    let w = start(options(&receiver.url, 50));
    let a = w.incident("payments", &["acme"], Some(Severity::Sev1)).await;
    let _b = w.incident("search", &["globex"], Some(Severity::Sev3)).await;
    let _c = w.incident("payments", &["initech"], None).await;
    w.settled().await;
    let mut feed = w.feed(v1::FeedFilter { min_severity: v1::Severity::Sev2 as i32, ..Default::default() }).await;
    let first = next(&mut feed).await;
    assert!(first.snapshot);
    assert_eq!((first.incident_id.as_str(), first.severity()), ("INC-1", v1::Severity::Sev1));
    assert!(first.next_update_due.is_some(), "a Sev-1 shows when its next update is due");
    // Live: a Sev-3 change is filtered out, the Sev-1 change comes through.
    w.intake
        .execute(_b, Command::PostUpdate { audience: Audience::Executive, text: "search slow".into() }, &maria())
        .await
        .unwrap();
    w.intake
        .execute(a, Command::PostUpdate { audience: Audience::Executive, text: "rolling back".into() }, &maria())
        .await
        .unwrap();
    // Other changes of INC-1 (the notifier's own records) may come first;
    // no item of the Sev-3 ever does.
    let live = loop {
        let item = next(&mut feed).await;
        assert!(!item.snapshot);
        assert_eq!(item.incident_id, "INC-1");
        if item.latest_executive_update.as_ref().is_some_and(|u| u.text == "rolling back") {
            break item;
        }
    };
    assert_eq!(live.severity(), v1::Severity::Sev1);

    // A service filter.
    let mut search = w.feed(v1::FeedFilter { services: vec!["search".into()], ..Default::default() }).await;
    let only = next(&mut search).await;
    assert_eq!(only.incident_id, "INC-2");
    w.stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_a_thousand_updates_is_coalesced_and_ends_with_the_final_state() {
    let receiver = Receiver::start(SECRET).await;
    let w = start(options(&receiver.url, 200));
    let id = w.incident("payments", &["acme"], Some(Severity::Sev1)).await;
    w.settled().await;
    let mut feed = w.feed(v1::FeedFilter::default()).await;
    assert!(next(&mut feed).await.snapshot);
    let started = std::time::Instant::now();
    for n in 0..1000 {
        let text = format!("update {n}");
        w.intake.execute(id, Command::PostUpdate { audience: Audience::Executive, text }, &maria()).await.unwrap();
    }
    let burst = started.elapsed();
    let mut received = Vec::new();
    loop {
        let item = next(&mut feed).await;
        // Items may also come from other changes (the notifier's own records).
        let text = item.latest_executive_update.as_ref().map(|u| u.text.clone()).unwrap_or_default();
        received.push(item);
        if text == "update 999" {
            break;
        }
    }
    // At most one item per 200 ms interval (plus the first and the last).
    let allowed = (burst.as_millis() / 200) as usize + 2;
    assert!(received.len() <= allowed, "{} items for a {burst:?} burst", received.len());
    assert!(received.len() < 1000);
    w.stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_subscriber_gets_the_latest_state_not_every_change() {
    // The feed task itself, without gRPC in between: over HTTP/2 the
    // client's receive window would buffer items too, hiding what the
    // server holds. The gRPC streaming path is tested above.
    let receiver = Receiver::start(SECRET).await;
    let w = start(options(&receiver.url, 1));
    let ids = [
        w.incident("payments", &["acme"], Some(Severity::Sev1)).await,
        w.incident("search", &["acme"], Some(Severity::Sev1)).await,
    ];
    w.settled().await;
    let mut feed = w.notifier.subscribe(Default::default(), w.stop.clone()).unwrap();
    // Read nothing while 3,000 changes happen: more than the feed's buffer
    // (64 items) and its lag limit (256 changes) together.
    for n in 0..3000 {
        let text = format!("update {n}");
        w.intake
            .execute(ids[n % 2], Command::PostUpdate { audience: Audience::Executive, text }, &maria())
            .await
            .unwrap();
    }
    let mut received = 0;
    let mut last = std::collections::HashMap::new();
    while last.get(&ids[0]).map(String::as_str) != Some("update 2998")
        || last.get(&ids[1]).map(String::as_str) != Some("update 2999")
    {
        let sent = tokio::time::timeout(Duration::from_secs(10), feed.recv())
            .await
            .expect("an item within 10 s")
            .expect("open");
        received += 1;
        if let Some(u) = sent.item.latest_executive_update {
            last.insert(sent.item.incident, u.text);
        }
    }
    // 64 buffered + up to 256 changes behind + one resync of both incidents,
    // plus whatever came after reading resumed.
    assert!(received < 400, "the stalled subscriber got {received} items for 3,000 changes");
    w.stop.cancel();
}

/// A receiver answering like Slack's `chat.postMessage`: `{"ok": true,
/// "ts": …}` with a new `ts` for every message; it keeps what it got.
struct SlackApi {
    url: String,
    got: Arc<std::sync::Mutex<Vec<serde_json::Value>>>,
    stop: CancellationToken,
}

impl SlackApi {
    async fn start() -> SlackApi {
        use axum::routing::post;
        let got: Arc<std::sync::Mutex<Vec<serde_json::Value>>> = Arc::default();
        let kept = got.clone();
        let app = axum::Router::new().route(
            "/api/chat.postMessage",
            post(move |headers: axum::http::HeaderMap, body: String| {
                let kept = kept.clone();
                async move {
                    let mut message: serde_json::Value = serde_json::from_str(&body).unwrap();
                    message["authorization"] =
                        headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default().into();
                    let mut kept = kept.lock().unwrap();
                    kept.push(message);
                    let ts = format!("1764000{:03}.000100", kept.len());
                    let answer = serde_json::json!({"ok": true, "channel": "C0EXEC", "ts": ts});
                    ([(axum::http::header::CONTENT_TYPE, "application/json")], answer.to_string())
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/api/chat.postMessage", listener.local_addr().unwrap());
        let stop = CancellationToken::new();
        let server = axum::serve(listener, app).with_graceful_shutdown(stop.clone().cancelled_owned());
        tokio::spawn(std::future::IntoFuture::into_future(server));
        SlackApi { url, got, stop }
    }

    fn got(&self) -> Vec<serde_json::Value> {
        self.got.lock().unwrap().clone()
    }
}

impl Drop for SlackApi {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slack_follow_up_after_a_restart_replies_in_the_thread_the_first_post_started() {
    let slack = SlackApi::start().await;
    let token = format!("xoxb-{}", uuid::Uuid::new_v4().simple());
    let text = format!(
        r#"
[notifier]
severities = ["sev1", "sev2"]
executive_channels = ["exec-slack"]

[[channels]]
name = "exec-slack"
kind = "slack"
url = "{}"
token_env = "SLACK_TOKEN"
slack_channel = "C0EXEC"
"#,
        slack.url
    );
    #[derive(serde::Deserialize)]
    struct File {
        notifier: NotifierSectionConfig,
        channels: Vec<klaxon_channels::ChannelConfig>,
    }
    let file: File = toml::from_str(&text).unwrap();
    let env_token = token.clone();
    let options = NotifierOptions {
        notifier: Arc::new(file.notifier.validate("notifier").unwrap()),
        paging: None,
        channels: Arc::new(
            klaxon_channels::Channels::new(&file.channels, move |var| {
                (var == "SLACK_TOKEN").then(|| env_token.clone())
            })
            .unwrap(),
        ),
        feed_lag_max: 256,
    };
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), Default::default()).unwrap();
    let clock = ManualClock::new("2026-11-25T10:00:00Z".parse::<DateTime<Utc>>().unwrap());
    let stop = CancellationToken::new();
    let intake = Intake::new(log.clone(), Default::default(), clock.shared());
    let intake_handle = intake.handle();
    tokio::spawn(intake.run(stop.clone()));
    let run = |stop: CancellationToken| {
        let notifier = Notifier::new(log.clone(), options.clone(), Arc::new(clock.clone()));
        let handle = notifier.handle();
        (handle, tokio::spawn(notifier.run(stop)))
    };

    // The first post, as a Sev-2: Slack names its thread.
    let first_stop = CancellationToken::new();
    let (first, task) = run(first_stop.clone());
    let w = World { _dir: dir, log: log.clone(), clock: clock.clone(), intake: intake_handle, notifier: first, stop };
    let id = w.incident("payments", &["acme"], Some(Severity::Sev2)).await;
    let events = w.until_notify_events(2).await;
    assert_eq!(events[0]["kind"], "notify.executives_notified.v1");
    assert_eq!(events[1]["kind"], "notify.thread_started.v1");
    assert_eq!((&events[1]["channel"], &events[1]["thread"]), (&"exec-slack".into(), &"1764000001.000100".into()));
    let got = slack.got();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["channel"], "C0EXEC");
    assert_eq!(got[0]["authorization"], format!("Bearer {token}").as_str());
    assert!(got[0].get("thread_ts").is_none(), "a first post starts a thread: {:?}", got[0]);

    // The notifier restarts; the raise to Sev-1 replies in that thread.
    first_stop.cancel();
    task.await.unwrap().unwrap();
    let (second, task) = run(w.stop.clone());
    let w = World { notifier: second, ..w };
    w.settled().await;
    assert_eq!(slack.got().len(), 1, "the restart posts nothing again");
    let raise = Command::OverrideSeverity { severity: Severity::Sev1, reason: "checkout down everywhere".into() };
    w.intake.execute(id, raise, &maria()).await.unwrap();
    let events = w.until_notify_events(3).await;
    assert_eq!((&events[2]["kind"], &events[2]["severity"]), (&"notify.executives_notified.v1".into(), &"sev1".into()));
    let got = slack.got();
    assert_eq!(got.len(), 2);
    assert_eq!(got[1]["thread_ts"], "1764000001.000100", "the follow-up is in the first post's thread: {:?}", got[1]);
    assert!(got[1]["text"].as_str().unwrap().contains("raised from SEV2 to SEV1"), "{:?}", got[1]);

    // The overdue-update reminder (Sev-1 cadence: 30 minutes) is recorded
    // but not posted to the executives: it is for the commander and the
    // communications lead (issue 16).
    w.clock.advance(TimeDelta::minutes(30));
    w.until_notify_events(4).await;
    w.settled().await;
    assert_eq!(slack.got().len(), 2, "no reminder in the executives' channel");
    w.stop.cancel();
    task.await.unwrap().unwrap();
}

/// GETs `path` from `address` over HTTP/1.1; the status and the body.
async fn get(address: std::net::SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await.unwrap().unwrap();
    let answer = String::from_utf8(answer).unwrap();
    let status = answer.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = answer.split_once("\r\n\r\n").map(|(_, body)| body.to_owned()).unwrap_or_default();
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_public_page_shows_a_resolved_incident_as_resolved_for_the_configured_hours_then_drops_it() {
    use klaxon_notifier::status_page::{StatusPage, StatusPageOptions};
    let receiver = Receiver::start(SECRET).await;
    let w = start(options(&receiver.url, 50));
    let catalog: klaxon_domain::catalog::ServiceCatalogConfig = serde_json::from_value(serde_json::json!([
        { "name": "payments", "team": "payments", "tier": 1, "escalation_policy": "p", "public_name": "Card payments" },
    ]))
    .unwrap();
    let tokens = w._dir.path().join("tokens.toml");
    let page = StatusPage::new(
        w.notifier.clone(),
        Arc::new(klaxon_auth::TokenStore::open(&tokens).unwrap()),
        Arc::new(catalog.validate("services").unwrap()),
        StatusPageOptions { public_resolved_hours: 2, ..StatusPageOptions::default() },
        w.stop.clone(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let server = axum::serve(listener, page.router()).with_graceful_shutdown(w.stop.clone().cancelled_owned());
    tokio::spawn(std::future::IntoFuture::into_future(server));

    let id = w.incident("payments", &["acme", "globex"], Some(Severity::Sev1)).await;
    let impact = Command::RecordCustomerImpact {
        customers_affected: 2,
        customers: vec!["acme".parse().unwrap(), "globex".parse().unwrap()],
        multi_customer: true,
        summary: "EU card processing down".into(),
    };
    w.intake.execute(id, impact, &maria()).await.unwrap();
    let customer = |text: &str| Command::PostUpdate { audience: Audience::Customer, text: text.into() };
    w.intake.execute(id, customer("Some card payments fail."), &maria()).await.unwrap();
    w.settled().await;
    let (status, open) = get(address, "/status/public").await;
    assert_eq!(status, 200);
    assert!(open.contains("Card payments") && open.contains("Investigating"), "{open}");
    assert!(open.contains("Some card payments fail."), "{open}");

    // Resolved, with a last word for customers: after a reload it is still
    // there, as resolved, with that update.
    w.intake.execute(id, customer("Card payments work again."), &maria()).await.unwrap();
    w.intake.execute(id, Command::Resolve { summary: "failed over".into() }, &maria()).await.unwrap();
    w.settled().await;
    let (_, resolved) = get(address, "/status/public").await;
    assert!(resolved.contains("Card payments") && resolved.contains(">Resolved<"), "{resolved}");
    assert!(resolved.contains("Card payments work again.") && resolved.contains("resolved <time"), "{resolved}");
    assert!(!resolved.contains("Investigating") && !resolved.contains(&id.to_string()), "{resolved}");

    // Closing it changes nothing for customers; the window counts from the
    // resolution, by the notifier's clock.
    w.clock.advance(TimeDelta::hours(2) - TimeDelta::seconds(1));
    let close = Command::ValidateResolution { note: "quiet for two hours".into() };
    w.intake.execute(id, close, &maria()).await.unwrap();
    w.settled().await;
    let (_, still) = get(address, "/status/public").await;
    assert!(still.contains("Card payments work again.") && still.contains(">Resolved<"), "{still}");
    w.clock.advance(TimeDelta::seconds(1));
    let (_, later) = get(address, "/status/public").await;
    assert!(!later.contains("Card payments") && !later.contains("<article"), "{later}");

    // A reopened incident is open again, whatever its old resolution.
    w.intake.execute(id, Command::Reopen { reason: "errors are back".into() }, &maria()).await.unwrap();
    w.settled().await;
    let (_, reopened) = get(address, "/status/public").await;
    assert!(reopened.contains("Card payments") && reopened.contains("Investigating"), "{reopened}");
    w.stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e_mail_posts_thread_follow_ups_and_a_refused_recipient_is_a_failed_delivery_naming_it() {
    use smtp::{Options, SmtpServer, Tls};
    let dir = tempfile::tempdir().unwrap();
    let refused = "gone@example.com";
    let server = SmtpServer::start(
        dir.path(),
        Options { tls: Tls::Starttls, password: None, refuse: vec![refused.into()], defer_data: 0 },
    );
    let mail = |name: &str, to: &[&str]| klaxon_channels::ChannelConfig {
        name: name.into(),
        kind: "email".into(),
        smtp_host: Some("127.0.0.1".into()),
        smtp_port: Some(server.port),
        tls: Some("starttls".into()),
        ca_file: Some(server.ca_file.display().to_string()),
        from: Some("Klaxon <klaxon@example.com>".into()),
        to: Some(to.iter().map(|s| s.to_string()).collect()),
        attempts_max: Some(3),
        backoff_initial_ms: Some(1),
        backoff_max_ms: Some(10),
        ..Default::default()
    };
    let channels = [mail("exec-mail", &["execs@example.com"]), mail("board-mail", &["board@example.com", refused])];
    let section: NotifierSectionConfig = serde_json::from_value(serde_json::json!({
        "executive_channels": ["exec-mail", "board-mail"],
    }))
    .unwrap();
    let options = NotifierOptions {
        notifier: Arc::new(section.validate("notifier").unwrap()),
        paging: None,
        channels: Arc::new(klaxon_channels::Channels::new(&channels, |_| None).unwrap()),
        feed_lag_max: 256,
    };
    let w = start(options);
    let id = w.incident("payments", &["acme"], Some(Severity::Sev1)).await;
    let events = w.until_notify_events(3).await;
    let kinds: Vec<(&str, &str)> =
        events.iter().map(|e| (e["kind"].as_str().unwrap(), e["channel"].as_str().unwrap())).collect();
    assert_eq!(
        kinds,
        [
            ("notify.executives_notified.v1", "exec-mail"),
            ("notify.thread_started.v1", "exec-mail"),
            ("notify.delivery_failed.v1", "board-mail"),
        ]
    );
    // The refusal names the recipient; the others got the message, once.
    let error = events[2]["error"].as_str().unwrap();
    assert!(error.contains("recipient gone@example.com refused"), "{error}");
    let messages = server.messages();
    assert_eq!(messages.len(), 2, "one message per channel, the refused one not retried");
    let first_id = messages[0].header("Message-ID").unwrap();
    assert_eq!(events[1]["thread"], first_id.as_str());
    assert_eq!(messages[1].meta["rcpt_tos"], serde_json::json!(["board@example.com"]));

    // A follow-up replies in the thread of the first e-mail.
    w.intake
        .execute(id, Command::AssignCommander { commander: ActorId::new("maria").unwrap() }, &maria())
        .await
        .unwrap();
    w.clock.advance(TimeDelta::seconds(60));
    w.until_notify_events(5).await;
    let messages = server.messages();
    assert_eq!(messages.len(), 4);
    let follow_up = messages.iter().skip(2).find(|m| m.meta["rcpt_tos"] == serde_json::json!(["execs@example.com"]));
    let follow_up = follow_up.expect("the follow-up to exec-mail");
    assert_eq!(follow_up.header("In-Reply-To"), Some(first_id.clone()));
    assert_eq!(follow_up.header("References"), Some(first_id));
    w.stop.cancel();
}

/// A Sev-1 for two customers, resolved; two hours later (past the hour
/// after which the notifier evicts, when it does), reopened. Returns the
/// records appended from the reopen on (command ids left out: they are
/// random).
async fn reopened_after_two_hours(after: Option<Duration>) -> Vec<(String, String, String, String)> {
    let receiver = Receiver::start(SECRET).await;
    let w = start_evicting(options(&receiver.url, 100), after);
    let id = w.incident("payments", &["acme", "globex"], Some(Severity::Sev1)).await;
    w.until_notify_events(2).await;
    w.intake.execute(id, Command::Resolve { summary: "failed over".into() }, &maria()).await.unwrap();
    w.clock.advance(TimeDelta::seconds(60));
    w.until_notify_events(4).await;
    assert_eq!(w.notifier.reactor().progress().held, 1);
    w.clock.advance(TimeDelta::hours(2));
    w.settled().await;
    let progress = w.notifier.reactor().progress();
    if after.is_some() {
        assert_eq!((progress.held, progress.evicted), (0, 1), "{progress:?}");
        assert!(w.notifier.reactor().read(|s| s.incidents().is_empty()));
    } else {
        assert_eq!((progress.held, progress.evicted), (1, 0), "{progress:?}");
    }
    let reopen = Position(w.log.head().0 + 1);
    w.intake.execute(id, Command::Reopen { reason: "errors are back".into() }, &maria()).await.unwrap();
    // Decided at the reopen's time, then at the end of the interval.
    w.settled().await;
    w.clock.advance(TimeDelta::seconds(60));
    w.settled().await;
    assert_eq!(w.notifier.reactor().progress().held, 1);
    w.stop.cancel();
    w.log
        .read_all(reopen, 100_000)
        .unwrap()
        .into_iter()
        .map(|r| {
            let id = if r.stream.as_str().starts_with("incident-") { String::new() } else { r.id.to_string() };
            (r.stream.to_string(), r.kind.to_string(), id, r.data.as_str().to_owned())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resolved_incident_leaves_memory_and_its_reopen_notifies_as_if_it_never_had() {
    let kept = reopened_after_two_hours(None).await;
    let evicted = reopened_after_two_hours(Some(Duration::from_secs(3600))).await;
    assert!(kept.iter().any(|(stream, _, _, _)| stream.starts_with("notify-")), "the reopen is posted: {kept:#?}");
    assert_eq!(evicted, kept);
}
