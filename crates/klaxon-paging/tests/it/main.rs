//! Paging tests: a real log in a temp dir, the real intake and pager, real
//! webhook deliveries to an HTTP receiver on loopback, real gRPC for
//! acknowledgements. Time is a manual clock the test moves.
#![allow(missing_docs)]

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use klaxon_domain::catalog::ServiceCatalogConfig;
use klaxon_domain::ids::{ActorId, IncidentId, ReportSource, Severity};
use klaxon_domain::incident::Command;
use klaxon_domain::oncall::{Schedules, SchedulesConfig};
use klaxon_domain::paging::{PageId, PagingFileConfig};
use klaxon_intake::{CommandContext, Intake};
use klaxon_log::{Log, Position};
use klaxon_paging::{Pager, PagerConfig};
use klaxon_proto::v1;
use klaxon_reactor::{Live, ManualClock};
use klaxon_tests::receiver::Receiver;
use tokio_util::sync::CancellationToken;

const SECRET: &str = "test-secret-0123456789abcdef";

fn config(receiver_url: &str) -> PagerConfig {
    config_with(receiver_url, "")
}

/// The payments policy of the test configuration: ana's schedule for 5
/// minutes, then carl for 5.
const PAYMENTS_POLICY: &str = r#"
[[escalation_policies]]
name = "payments"
[[escalation_policies.levels]]
timeout_minutes = 5
targets = [{ schedule = "payments-primary" }]
[[escalation_policies.levels]]
timeout_minutes = 5
targets = [{ person = "carl" }]
"#;

/// The test configuration with `extra` TOML appended.
fn config_with(receiver_url: &str, extra: &str) -> PagerConfig {
    config_of(receiver_url, PAYMENTS_POLICY, extra)
}

/// The test configuration with `policy` as its escalation policies and
/// `extra` TOML appended.
fn config_of(receiver_url: &str, policy: &str, extra: &str) -> PagerConfig {
    config_from(&config_text(receiver_url, policy, extra))
}

/// The test configuration without a paging channel (the `pager` channel is
/// configured, but pages do not go through it).
fn config_without_paging_channel(receiver_url: &str) -> PagerConfig {
    let text = config_text(receiver_url, PAYMENTS_POLICY, "");
    let without = text.replace("channels = [\"pager\"]", "channels = []");
    assert_ne!(without, text);
    config_from(&without)
}

fn config_from(text: &str) -> PagerConfig {
    #[derive(serde::Deserialize)]
    struct File {
        services: ServiceCatalogConfig,
        schedules: SchedulesConfig,
        #[serde(flatten)]
        paging: PagingFileConfig,
        channels: Vec<klaxon_channels::ChannelConfig>,
    }
    let file: File = toml::from_str(text).unwrap();
    let schedules = file.schedules.validate("schedules").unwrap();
    let paging = file.paging.validate("", &schedules).unwrap();
    let channels =
        klaxon_channels::Channels::new(&file.channels, |v| (v == "PAGER_SECRET").then(|| SECRET.to_string())).unwrap();
    PagerConfig {
        paging: Arc::new(paging),
        catalog: Arc::new(file.services.validate("services").unwrap()),
        schedules: Arc::new(schedules),
        channels: Arc::new(channels),
    }
}

/// The duty managers' schedule (maria, always), in every schedule set of
/// these tests.
const DUTY_MANAGERS: &str = r#"
[[schedules]]
name = "duty-managers"
time_zone = "UTC"
[[schedules.layers]]
name = "always"
participants = ["maria"]
shift = "7d"
handoff = "00:00"
start = "2026-01-05"
"#;

/// Appends `config` to the log as `klaxond` records an applied
/// configuration (`config.applied.v1` in stream `config`): at a start
/// without `previous`, at a reload after it.
async fn record_applied(log: &Log, previous: Option<&str>, hash: &str, config: serde_json::Value) {
    use klaxon_domain::audit::{self, ConfigApplied};
    use klaxon_log::{EventData, EventKind, ExpectedVersion, Metadata, NewEvent, StreamId};
    let applied = ConfigApplied {
        hash: hash.to_owned(),
        previous: previous.map(str::to_owned),
        file: "klaxon.toml".into(),
        via: if previous.is_some() { "reload" } else { "start" }.into(),
        changes: Vec::new(),
        config,
    };
    let event = NewEvent {
        id: audit::config_event_id(previous, hash),
        kind: EventKind::new(audit::CONFIG_APPLIED).unwrap(),
        data: EventData::from_value(&applied).unwrap(),
        metadata: Metadata { actor: Some("operator".into()), ..Metadata::default() },
    };
    log.append(&StreamId::new(audit::CONFIG_STREAM).unwrap(), ExpectedVersion::Any, vec![event]).await.unwrap();
}

/// The schedules of `toml` (`[[schedules]]` tables), validated.
fn schedules(toml: &str) -> Arc<Schedules> {
    let config: SchedulesConfig = toml::from_str::<toml::Table>(toml).unwrap()["schedules"].clone().try_into().unwrap();
    Arc::new(config.validate("schedules").unwrap())
}

fn config_text(receiver_url: &str, policy: &str, extra: &str) -> String {
    format!(
        r#"
[[services]]
name = "payments"
team = "payments"
tier = 1
escalation_policy = "payments"

[[schedules]]
name = "payments-primary"
time_zone = "UTC"
[[schedules.layers]]
name = "weekly"
participants = ["ana", "ben"]
shift = "7d"
handoff = "00:00"
start = "2026-11-23"
{DUTY_MANAGERS}
[paging]
duty_manager_schedule = "duty-managers"
managers = ["maria"]
default_policy = "payments"
channels = ["pager"]
{policy}
[[channels]]
name = "pager"
kind = "webhook"
url = "{receiver_url}"
secret_env = "PAGER_SECRET"
attempts_max = 5
backoff_initial_ms = 10
backoff_max_ms = 50
timeout_ms = 2000
{extra}
"#
    )
}

mod eviction;

fn start_time() -> DateTime<Utc> {
    "2026-11-25T10:00:00Z".parse().unwrap()
}

struct World {
    log: Log,
    clock: ManualClock,
    intake: klaxon_intake::Handle,
    pager: klaxon_paging::Handle,
    stop: CancellationToken,
    pager_stop: CancellationToken,
    pager_task: Option<tokio::task::JoinHandle<Result<(), klaxon_paging::Error>>>,
    /// What the pager reads, as a reload would replace it; a restarted
    /// pager reads it too.
    config: Live<PagerConfig>,
}

fn start(log: &Log, clock: &ManualClock, config: &PagerConfig) -> World {
    let config = Live::new(Arc::new(config.clone()));
    let pager = Pager::new(log.clone(), config.clone(), Arc::new(clock.clone()));
    world(log, clock, config, pager)
}

/// An intake and `pager` (built over `log` with `config`) running, until
/// the world's stop.
fn world(log: &Log, clock: &ManualClock, config: Live<PagerConfig>, pager: Pager) -> World {
    let stop = CancellationToken::new();
    let intake = Intake::new(log.clone(), Default::default(), clock.shared());
    let intake_handle = intake.handle();
    tokio::spawn(intake.run(stop.clone()));
    let pager_stop = stop.child_token();
    let pager_handle = pager.handle();
    let pager_task = tokio::spawn(pager.run(pager_stop.clone()));
    World {
        log: log.clone(),
        clock: clock.clone(),
        intake: intake_handle,
        pager: pager_handle,
        stop,
        pager_stop,
        pager_task: Some(pager_task),
        config,
    }
}

impl World {
    /// Stops the pager as a crash would (nothing is flushed on its behalf:
    /// it keeps no state) and starts a new one over the same log.
    async fn stop_pager(&mut self) {
        self.pager_stop.cancel();
        if let Some(task) = self.pager_task.take() {
            task.await.unwrap().unwrap();
        }
    }

    async fn restart_pager(&mut self) {
        self.stop_pager().await;
        self.pager_stop = self.stop.child_token();
        let pager = Pager::new(self.log.clone(), self.config.clone(), Arc::new(self.clock.clone()));
        self.pager = pager.handle();
        self.pager_task = Some(tokio::spawn(pager.run(self.pager_stop.clone())));
    }

    async fn sev1(&self, commander: Option<&str>) -> IncidentId {
        self.declared(Severity::Sev1, commander).await
    }

    /// Reports an incident on payments and declares it `severity`, with
    /// `commander` assigned if any.
    async fn declared(&self, severity: Severity, commander: Option<&str>) -> IncidentId {
        let by = CommandContext::by(ActorId::new("maria").unwrap());
        let report = Command::ReportIssue {
            source: ReportSource::Alertmanager,
            reporter: ActorId::new("monitor").unwrap(),
            title: "Checkout fails".into(),
            description: String::new(),
            service: Some("payments".parse().unwrap()),
            customers: vec![],
            labels: Default::default(),
            dedup_key: None,
            started_at: None,
        };
        let id = self.intake.report(report, &by).await.unwrap().incident;
        self.intake.execute(id, Command::DeclareIncident { severity }, &by).await.unwrap();
        if let Some(c) = commander {
            self.intake
                .execute(id, Command::AssignCommander { commander: ActorId::new(c).unwrap() }, &by)
                .await
                .unwrap();
        }
        id
    }

    /// The page kinds, reasons and responders recorded once the pager has
    /// processed the whole log at the current time (the barrier).
    async fn pages(&self, id: IncidentId) -> Vec<String> {
        self.settled().await;
        match self.pager.pages(id).await {
            Ok(pages) => {
                pages.iter().map(|p| format!("{} {} {}", p.id(), p.responder(), p.reason().as_str())).collect()
            }
            Err(_) => vec![],
        }
    }

    /// The incident's pages, which must be `n` once the pager has settled.
    async fn until_pages(&self, id: IncidentId, n: usize) -> Vec<String> {
        let pages = self.pages(id).await;
        assert_eq!(pages.len(), n, "{id} has not {n} pages: {pages:?}");
        pages
    }

    /// The barrier: waits until the pager has processed everything in the
    /// log (folded it, carried out what it decided, folded that back) and
    /// nothing is due at the clock's time. Moving the clock before that
    /// would let it decide on a state without the last events (a
    /// mitigation, say); asserting before it could miss what is under way.
    async fn settled(&self) {
        self.pager.reactor().wait_processed(self.log.head()).await.unwrap();
    }

    fn kinds(&self) -> Vec<String> {
        self.log
            .read_all(Position(1), 100_000)
            .unwrap()
            .into_iter()
            .filter(|r| r.kind.as_str().starts_with("page.") || r.kind.as_str().starts_with("slo."))
            .map(|r| r.kind.to_string())
            .collect()
    }
}

fn new_world(config: &PagerConfig) -> (tempfile::TempDir, World) {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), Default::default()).unwrap();
    let clock = ManualClock::new(start_time());
    let world = start(&log, &clock, config);
    (dir, world)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sev1_pages_the_on_call_escalates_on_time_and_an_ack_stops_it() {
    let receiver = Receiver::start(SECRET).await;
    let config = config(&receiver.url);
    let (_dir, w) = new_world(&config);
    let id = w.sev1(Some("maria")).await;

    assert_eq!(w.until_pages(id, 1).await, ["INC-1-P1 ana severity"]);
    let delivered = receiver.wait_for_delivered(1, Duration::from_secs(10)).await;
    assert_eq!(delivered.len(), 1);
    assert_eq!(delivered[0].idempotency_key, "INC-1-P1");
    assert!(delivered[0].signature_ok, "the HMAC signature verifies");
    assert_eq!(delivered[0].body["recipient"], "ana");
    assert_eq!(delivered[0].body["fields"]["severity"], "SEV1");

    // One second before the deadline nothing happens; at the deadline it escalates.
    w.clock.advance(TimeDelta::seconds(299));
    assert_eq!(w.pages(id).await.len(), 1);
    w.clock.advance(TimeDelta::seconds(1));
    // Nobody acknowledged within the 5-minute ack SLO either: the duty
    // manager is paged too.
    assert_eq!(w.until_pages(id, 3).await[1..], ["INC-1-P2 carl escalation", "INC-1-P3 maria slo_breach"]);
    receiver.wait_for_delivered(3, Duration::from_secs(10)).await;

    // Someone else may not acknowledge; nothing is written.
    let head = w.log.head();
    let zed = w.pager.acknowledge(PageId::new(id, 2).unwrap(), &ActorId::new("zed").unwrap(), None).await.unwrap_err();
    assert!(zed.to_string().contains("zed"), "{zed}");
    assert_eq!(w.log.head(), head);
    let (page, _) =
        w.pager.acknowledge(PageId::new(id, 2).unwrap(), &ActorId::new("carl").unwrap(), None).await.unwrap();
    assert_eq!(page.acknowledged().unwrap().0.as_str(), "carl");

    // The chain stops: no escalation, however long we wait...
    w.clock.advance(TimeDelta::minutes(20));
    assert_eq!(w.pages(id).await.len(), 3);
    // ...until the acknowledgement times out without mitigation: paging resumes.
    w.clock.advance(TimeDelta::minutes(11));
    assert_eq!(w.until_pages(id, 4).await[3], "INC-1-P4 carl ack_timeout");
    // Mitigation ends it.
    let by = CommandContext::by(ActorId::new("maria").unwrap());
    w.intake.execute(id, Command::Mitigate { summary: "rolled back".into() }, &by).await.unwrap();
    w.settled().await;
    w.clock.advance(TimeDelta::hours(2));
    assert_eq!(w.pages(id).await.len(), 4);
    assert_eq!(w.kinds().iter().filter(|k| *k == "slo.breached.v1").count(), 1, "{:?}", w.kinds());
    w.stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_deliveries_are_retried_with_the_same_key_and_a_restart_delivers_nothing_again() {
    let receiver = Receiver::start(SECRET).await;
    receiver.fail_next(2);
    let config = config(&receiver.url);
    let (_dir, mut w) = new_world(&config);
    let id = w.sev1(Some("maria")).await;
    let delivered = receiver.wait_for_delivered(1, Duration::from_secs(10)).await;
    assert_eq!(delivered.len(), 1);
    let all = receiver.requests();
    assert_eq!(all.len(), 3, "two 500s, then success");
    assert!(all.iter().all(|r| r.idempotency_key == "INC-1-P1" && r.signature_ok));
    w.settled().await;
    let delivered_record = w
        .log
        .read_all(Position(1), 1000)
        .unwrap()
        .into_iter()
        .find(|r| r.kind.as_str() == "page.delivered.v1")
        .unwrap();
    assert_eq!(delivered_record.data.parse::<serde_json::Value>().unwrap()["attempts"], 3);

    // A restart rebuilds everything from the log: no new page, no redelivery.
    let head = w.log.head();
    w.restart_pager().await;
    assert_eq!(w.pages(id).await, ["INC-1-P1 ana severity"]);
    assert_eq!(receiver.requests().len(), 3);
    assert_eq!(w.log.head(), head);
    w.stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_escalation_due_while_the_pager_was_down_fires_exactly_once() {
    let receiver = Receiver::start(SECRET).await;
    let config = config(&receiver.url);
    let (_dir, mut w) = new_world(&config);
    let id = w.sev1(Some("maria")).await;
    w.until_pages(id, 1).await;
    // The pager is down when the deadline passes.
    w.stop_pager().await;
    w.clock.advance(TimeDelta::minutes(7));
    w.restart_pager().await;
    let expected = ["INC-1-P1 ana severity", "INC-1-P2 carl escalation", "INC-1-P3 maria slo_breach"];
    assert_eq!(w.until_pages(id, 3).await, expected);
    // And again: still exactly one escalation and one breach.
    w.restart_pager().await;
    w.settled().await;
    assert_eq!(w.kinds().iter().filter(|k| *k == "page.escalated.v1").count(), 1);
    assert_eq!(w.kinds().iter().filter(|k| *k == "slo.breached.v1").count(), 1);
    assert_eq!(w.pages(id).await, expected);
    w.stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sev1_without_a_commander_breaches_the_assign_slo_and_pages_the_duty_manager() {
    let receiver = Receiver::start(SECRET).await;
    let config = config(&receiver.url);
    let (_dir, w) = new_world(&config);
    let id = w.sev1(None).await;
    w.until_pages(id, 1).await;
    let (_, _) = w.pager.acknowledge(PageId::new(id, 1).unwrap(), &ActorId::new("ana").unwrap(), None).await.unwrap();
    w.clock.advance(TimeDelta::minutes(10));
    let pages = w.until_pages(id, 2).await;
    assert_eq!(pages[1], "INC-1-P2 maria slo_breach");
    let breaches = w.kinds().iter().filter(|k| *k == "slo.breached.v1").count();
    assert_eq!(breaches, 1);
    // Over gRPC the duty manager's page has no level (it is outside the
    // policy's levels), not a number that reads as one.
    let mut c = paging_client(&w).await;
    let pages = c.list_pages(v1::ListPagesRequest { incident_id: id.to_string() }).await.unwrap().into_inner().pages;
    let levels: Vec<_> = pages.iter().map(|p| (p.reason.as_str(), p.level)).collect();
    assert_eq!(levels, [("severity", Some(0)), ("slo_breach", None)]);
    w.stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gold_customers_sev1_breaches_the_resolve_slo_at_the_tiers_window_and_pages_the_duty_manager_once() {
    let receiver = Receiver::start(SECRET).await;
    // Sev1 has 4 hours to resolve; acme is gold, which has 1 hour. The
    // acknowledgement holds long enough not to page again meanwhile.
    let extra = r#"
[slo.sev1]
resolve_minutes = 240
ack_timeout_minutes = 180

[slo.tier.gold]
resolve_minutes = 60

[[customers]]
name = "acme"
tier = "gold"
"#;
    let config = config_with(&receiver.url, extra);
    let (_dir, mut w) = new_world(&config);
    let by = CommandContext::by(ActorId::new("maria").unwrap());
    let report = Command::ReportIssue {
        source: ReportSource::Alertmanager,
        reporter: ActorId::new("monitor").unwrap(),
        title: "Checkout fails for acme".into(),
        description: String::new(),
        service: Some("payments".parse().unwrap()),
        customers: vec!["acme".parse().unwrap()],
        labels: Default::default(),
        dedup_key: None,
        started_at: None,
    };
    let id = w.intake.report(report, &by).await.unwrap().incident;
    w.intake.execute(id, Command::DeclareIncident { severity: Severity::Sev1 }, &by).await.unwrap();
    w.intake.execute(id, Command::AssignCommander { commander: ActorId::new("maria").unwrap() }, &by).await.unwrap();
    w.until_pages(id, 1).await;
    w.pager.acknowledge(PageId::new(id, 1).unwrap(), &ActorId::new("ana").unwrap(), None).await.unwrap();
    receiver.wait_for_delivered(1, Duration::from_secs(10)).await;

    // One second before the tier's window nothing; at it, the breach.
    w.clock.advance(TimeDelta::minutes(60) - TimeDelta::seconds(1));
    assert_eq!(w.pages(id).await.len(), 1);
    assert!(w.kinds().iter().all(|k| k != "slo.breached.v1"), "{:?}", w.kinds());
    w.clock.advance(TimeDelta::seconds(1));
    assert_eq!(w.until_pages(id, 2).await[1], "INC-1-P2 maria slo_breach");
    let delivered = receiver.wait_for_delivered(2, Duration::from_secs(10)).await;
    assert_eq!(delivered.len(), 2);
    assert_eq!(delivered[1].idempotency_key, "INC-1-P2");
    assert_eq!(delivered[1].body["recipient"], "maria");
    assert_eq!(delivered[1].body["fields"]["reason"], "slo_breach");
    let breaches: Vec<serde_json::Value> = w
        .log
        .read_all(Position(1), 1000)
        .unwrap()
        .into_iter()
        .filter(|r| r.kind.as_str() == "slo.breached.v1")
        .map(|r| r.data.parse().unwrap())
        .collect();
    assert_eq!(breaches.len(), 1, "{breaches:?}");
    assert_eq!(breaches[0]["slo"], "resolve");
    assert_eq!(breaches[0]["due_at"], "2026-11-25T11:00:00Z");

    // A restart, later still: no second breach, no second page, nothing
    // sent again.
    let head = w.log.head();
    let sent = receiver.requests().len();
    w.restart_pager().await;
    w.clock.advance(TimeDelta::minutes(30));
    assert_eq!(w.pages(id).await.len(), 2);
    assert_eq!(w.log.head(), head, "nothing written after the restart");
    assert_eq!(receiver.requests().len(), sent);
    w.stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_acknowledge_on_call_and_pages_answer_precisely() {
    let receiver = Receiver::start(SECRET).await;
    let config = config(&receiver.url);
    let (_dir, w) = new_world(&config);
    let id = w.sev1(Some("maria")).await;
    w.until_pages(id, 1).await;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(klaxon_paging::grpc::PagingService::new(w.pager.clone()).into_server())
            .serve_with_incoming_shutdown(
                tokio_stream::wrappers::TcpListenerStream::new(listener),
                w.stop.clone().cancelled_owned(),
            ),
    );
    let mut c = v1::paging_client::PagingClient::connect(format!("http://{address}")).await.unwrap();
    let as_with = |who: &str, page: &str, request_id: &str| {
        let mut r = tonic::Request::new(v1::AcknowledgeRequest { page_id: page.into(), request_id: request_id.into() });
        r.metadata_mut().insert("klaxon-actor", who.parse().unwrap());
        r
    };
    let as_ = |who: &str, page: &str| as_with(who, page, "");
    let head = w.log.head();
    for (who, page, code) in [
        ("ana", "INC-1-P9", tonic::Code::NotFound),
        ("ana", "INC-9-P1", tonic::Code::NotFound),
        ("ana", "bogus", tonic::Code::InvalidArgument),
        ("ben", "INC-1-P1", tonic::Code::PermissionDenied),
        ("ana", "INC-1-P1\u{0}", tonic::Code::InvalidArgument),
    ] {
        let (page, request_id) = page.split_once('\u{0}').map_or((page, ""), |(p, _)| (p, "bad\u{7}id"));
        let status = c.acknowledge(as_with(who, page, request_id)).await.unwrap_err();
        assert_eq!(status.code(), code, "{who} acks {page}: {}", status.message());
        assert_eq!(w.log.head(), head, "{who} acks {page} wrote something");
    }
    // A manager may acknowledge anyone's page; sent again with its request
    // id it is the same answer and writes nothing; anyone else's second
    // acknowledgement is refused.
    let ok = c.acknowledge(as_with("maria", "INC-1-P1", "ack-1")).await.unwrap().into_inner();
    assert_eq!(ok.page.as_ref().unwrap().acknowledged_by, "maria");
    let head = w.log.head();
    let again = c.acknowledge(as_with("maria", "INC-1-P1", "ack-1")).await.unwrap().into_inner();
    assert_eq!(again, ok, "the first answer");
    assert_eq!(w.log.head(), head, "the retry wrote nothing");
    let twice = c.acknowledge(as_("ana", "INC-1-P1")).await.unwrap_err();
    assert_eq!(twice.code(), tonic::Code::FailedPrecondition);
    let reused = c.acknowledge(as_with("ana", "INC-1-P1", "ack-1")).await.unwrap_err();
    assert_eq!(reused.code(), tonic::Code::FailedPrecondition, "request ids are the actor's own");

    let on_call = c
        .who_is_on_call(v1::WhoIsOnCallRequest { schedule: "payments-primary".into(), at: None })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(on_call.on_call[0].who, "ana");
    let next_week = klaxon_proto::convert::timestamp(start_time() + TimeDelta::days(7));
    let later = c
        .who_is_on_call(v1::WhoIsOnCallRequest { schedule: "payments-primary".into(), at: Some(next_week) })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(later.on_call[0].who, "ben");
    let unknown = c.who_is_on_call(v1::WhoIsOnCallRequest { schedule: "nope".into(), at: None }).await.unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound);
    let pages = c.list_pages(v1::ListPagesRequest { incident_id: id.to_string() }).await.unwrap().into_inner().pages;
    assert_eq!(pages.len(), 1);
    assert_eq!(pages[0].delivery, "delivered");
    w.stop.cancel();
}

/// A gRPC paging server for `w`'s pager on loopback, and a client of it.
async fn paging_client(w: &World) -> v1::paging_client::PagingClient<tonic::transport::Channel> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(klaxon_paging::grpc::PagingService::new(w.pager.clone()).into_server())
            .serve_with_incoming_shutdown(
                tokio_stream::wrappers::TcpListenerStream::new(listener),
                w.pager_stop.clone().cancelled_owned(),
            ),
    );
    v1::paging_client::PagingClient::connect(format!("http://{address}")).await.unwrap()
}

/// `ListPages` of `id` as `page delivery [note]` lines.
async fn listed(c: &mut v1::paging_client::PagingClient<tonic::transport::Channel>, id: IncidentId) -> Vec<String> {
    let pages = c.list_pages(v1::ListPagesRequest { incident_id: id.to_string() }).await.unwrap().into_inner().pages;
    pages.iter().map(|p| format!("{} {} {}", p.page_id, p.delivery, p.delivery_note).trim_end().to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_pages_says_which_pages_will_never_be_sent_and_why() {
    // Pages are decided while no paging channel is configured, so none
    // goes out; then one incident is resolved and one page acknowledged
    // before a channel is added and the pager restarted with it.
    let receiver = Receiver::start(SECRET).await;
    let (_dir, mut w) = new_world(&config_without_paging_channel(&receiver.url));
    let maria = CommandContext::by(ActorId::new("maria").unwrap());
    let resolved = w.sev1(Some("maria")).await;
    let acked = w.sev1(Some("maria")).await;
    let open = w.sev1(Some("maria")).await;
    for id in [resolved, acked, open] {
        w.until_pages(id, 1).await;
    }
    let mut c = paging_client(&w).await;
    assert_eq!(listed(&mut c, open).await, ["INC-3-P1 held no paging channel is configured"]);
    w.intake.execute(resolved, Command::Resolve { summary: "rolled back".into() }, &maria).await.unwrap();
    w.pager.acknowledge(PageId::new(acked, 1).unwrap(), &ActorId::new("ana").unwrap(), None).await.unwrap();
    w.settled().await;
    assert_eq!(listed(&mut c, resolved).await, ["INC-1-P1 cancelled INC-1 was resolved before it was sent"]);
    assert_eq!(listed(&mut c, acked).await, ["INC-2-P1 cancelled acknowledged by ana before it was sent"]);

    w.config = config(&receiver.url).into();
    w.restart_pager().await;
    let delivered = receiver.wait_for_delivered(1, Duration::from_secs(10)).await;
    w.settled().await;
    assert_eq!(delivered.iter().map(|r| r.idempotency_key.as_str()).collect::<Vec<_>>(), ["INC-3-P1"]);
    assert_eq!(receiver.requests().len(), 1, "only the open incident's page went out");
    let mut c = paging_client(&w).await;
    assert_eq!(listed(&mut c, resolved).await, ["INC-1-P1 cancelled INC-1 was resolved before it was sent"]);
    assert_eq!(listed(&mut c, acked).await, ["INC-2-P1 cancelled acknowledged by ana before it was sent"]);
    assert_eq!(listed(&mut c, open).await, ["INC-3-P1 delivered"]);
    w.stop.cancel();
}

/// `payments-primary` in New York, daily shifts at 09:00 (ana, ben from
/// 2027-03-01), for the tests of overrides and swaps around the spring
/// change of 2027-03-14 (02:00 EST -> 03:00 EDT).
fn new_york_config(receiver_url: &str) -> PagerConfig {
    let config = config(receiver_url);
    let new_york = r#"
[[schedules]]
name = "payments-primary"
time_zone = "America/New_York"
[[schedules.layers]]
name = "daily"
participants = ["ana", "ben"]
shift = "1d"
handoff = "09:00"
start = "2027-03-01"
"#;
    PagerConfig { schedules: schedules(&format!("{new_york}{DUTY_MANAGERS}")), ..config }
}

fn at(rfc3339: &str) -> DateTime<Utc> {
    rfc3339.parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_follow_overrides_and_swaps_across_a_dst_change() {
    use klaxon_domain::oncall::roster::{Acting, RosterCommand};
    let receiver = Receiver::start(SECRET).await;
    let config = new_york_config(&receiver.url);
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), Default::default()).unwrap();
    // Saturday 2027-03-13, 07:00 EST: ben's shift (03-12 09:00 EST to
    // 03-13 09:00 EST) is running; ana's next one runs 03-13 09:00 EST to
    // 03-14 09:00 EDT, 23 hours across the change.
    let clock = ManualClock::new(at("2027-03-13T12:00:00Z"));
    let mut w = start(&log, &clock, &config);
    let maria = Acting { actor: ActorId::new("maria").unwrap(), manager: true };
    let person = |name: &str| ActorId::new(name).unwrap();

    // An override for the next hour: the page goes to olga, not ben.
    let add = RosterCommand::AddOverride {
        who: person("olga"),
        from: at("2027-03-13T12:00:00Z"),
        until: at("2027-03-13T13:00:00Z"),
    };
    w.pager.change_schedule("payments-primary", &maria, &add, None).await.unwrap();
    let first = w.sev1(Some("maria")).await;
    assert_eq!(w.until_pages(first, 1).await, ["INC-1-P1 olga severity"]);

    // ana swaps her 23-hour shift to dan, who takes it.
    let ana = Acting { actor: person("ana"), manager: false };
    let dan = Acting { actor: person("dan"), manager: false };
    let request = RosterCommand::RequestSwap {
        requester: person("ana"),
        from: at("2027-03-13T14:00:00Z"),
        until: at("2027-03-14T13:00:00Z"),
    };
    let (requested, _) = w.pager.change_schedule("payments-primary", &ana, &request, None).await.unwrap();
    assert_eq!(requested.kind(), "oncall.swap_requested.v1");
    let take = RosterCommand::TakeSwap { id: 1, taker: person("dan") };
    w.pager.change_schedule("payments-primary", &dan, &take, None).await.unwrap();
    let who = w.pager.who_is_on_call(Some("payments-primary"), Some(at("2027-03-14T07:30:00Z"))).await.unwrap();
    assert_eq!(who[0].1.as_ref().unwrap().who, person("dan"));

    // After the change (03:30 EDT; 02:30 local never happened) a new Sev-1
    // pages dan; a restarted pager folds the swap from the log alike.
    w.restart_pager().await;
    clock.advance(at("2027-03-14T07:30:00Z") - at("2027-03-13T12:00:00Z"));
    let second = w.sev1(Some("maria")).await;
    assert_eq!(w.until_pages(second, 1).await, [format!("{second}-P1 dan severity")]);
    // At 09:00 EDT (13:00Z, 23 hours after the shift began) ben is back.
    clock.advance(at("2027-03-14T13:00:00Z") - at("2027-03-14T07:30:00Z"));
    let third = w.sev1(Some("maria")).await;
    assert_eq!(w.until_pages(third, 1).await, [format!("{third}-P1 ben severity")]);
    w.stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edited_policy_pages_new_incidents_while_an_episode_in_flight_keeps_its_own_across_a_restart() {
    let receiver = Receiver::start(SECRET).await;
    let config = config(&receiver.url);
    let (_dir, mut w) = new_world(&config);
    let first = w.sev1(Some("maria")).await;
    assert_eq!(w.until_pages(first, 1).await, ["INC-1-P1 ana severity"]);

    // The policy is edited, as a reload does: zed for 2 minutes, then yan.
    let edited = r#"
[[escalation_policies]]
name = "payments"
[[escalation_policies.levels]]
timeout_minutes = 2
targets = [{ person = "zed" }]
[[escalation_policies.levels]]
timeout_minutes = 2
targets = [{ person = "yan" }]
"#;
    w.config.set(Arc::new(config_of(&receiver.url, edited, "")));
    w.clock.advance(TimeDelta::minutes(2));
    let second = w.sev1(Some("maria")).await;
    assert_eq!(w.until_pages(second, 1).await, ["INC-2-P1 zed severity"]);
    assert_eq!(w.pages(first).await.len(), 1, "the first episode's level still has 3 minutes");

    // A new pager over the same log (reading the edited configuration)
    // knows the first episode's policy from its first page.
    w.restart_pager().await;
    w.clock.advance(TimeDelta::minutes(3));
    assert_eq!(
        w.until_pages(first, 3).await,
        ["INC-1-P1 ana severity", "INC-1-P2 carl escalation", "INC-1-P3 maria slo_breach"]
    );
    assert_eq!(w.until_pages(second, 2).await, ["INC-2-P1 zed severity", "INC-2-P2 yan escalation"]);

    // What the log recorded: each episode's policy on its first page only.
    let policies: Vec<(String, serde_json::Value)> = w
        .log
        .read_all(Position(1), 1000)
        .unwrap()
        .into_iter()
        .filter(|r| r.kind.as_str() == "page.responder_paged.v1")
        .map(|r| {
            let data: serde_json::Value = r.data.parse().unwrap();
            (data["page"].as_str().unwrap().to_owned(), data["policy"].clone())
        })
        .collect();
    let levels = |p: &serde_json::Value| -> Vec<String> {
        p["levels"].as_array().unwrap().iter().map(|l| l["targets"].to_string()).collect()
    };
    let with_policy: Vec<&str> = policies.iter().filter(|(_, p)| !p.is_null()).map(|(id, _)| id.as_str()).collect();
    assert_eq!(with_policy, ["INC-1-P1", "INC-2-P1"]);
    assert_eq!(levels(&policies[0].1), [r#"[{"schedule":"payments-primary"}]"#, r#"[{"person":"carl"}]"#]);
    let second_policy = &policies.iter().find(|(id, _)| id == "INC-2-P1").unwrap().1;
    assert_eq!(levels(second_policy), [r#"[{"person":"zed"}]"#, r#"[{"person":"yan"}]"#]);
    w.stop.cancel();
}
mod severities;
mod shifts;
