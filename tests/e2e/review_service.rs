//! The review service in process: a real log, the real intake and review
//! service, a manual clock, real gRPC for the review API. (Here rather than
//! in klaxon-review so that the review crate does not depend on intake, not
//! even for its tests.)

use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use klaxon_domain::catalog::{ServiceCatalog, ServiceCatalogConfig, ServiceConfig};
use klaxon_domain::ids::{ActorId, Audience, IncidentId, IncidentRole, ReportSource, Severity};
use klaxon_domain::incident::{Command, Incident};
use klaxon_domain::paging::{PageChange, PageEvent, SloBreached, SloKind};
use klaxon_domain::review::IncidentAsOf;
use klaxon_intake::{CommandContext, Intake};
use klaxon_log::{Log, Position};
use klaxon_proto::v1::{self, edit_review_request::Edit};
use klaxon_reactor::{Clock, ManualClock};
use klaxon_review::Reviews;
use tokio_util::sync::CancellationToken;

struct World {
    _dir: tempfile::TempDir,
    log: Log,
    clock: ManualClock,
    intake: klaxon_intake::Handle,
    reviews: klaxon_review::Handle,
    stop: CancellationToken,
}

fn start_at(start: DateTime<Utc>) -> World {
    start_with(start, Default::default())
}

/// Two catalogued services: payments of team money, search of team discovery.
fn catalog() -> Arc<ServiceCatalog> {
    let service = |name: &str, team: &str| ServiceConfig {
        name: name.into(),
        team: team.into(),
        tier: 1,
        runbook: None,
        public_name: None,
        escalation_policy: "p".into(),
    };
    let config = ServiceCatalogConfig(vec![service("payments", "money"), service("search", "discovery")]);
    Arc::new(config.validate("services").unwrap())
}

fn start_with(start: DateTime<Utc>, catalog: Arc<ServiceCatalog>) -> World {
    start_evicting(start, catalog, None)
}

/// A world whose review service evicts finished incidents `after` (or never).
fn start_evicting(start: DateTime<Utc>, catalog: Arc<ServiceCatalog>, after: Option<std::time::Duration>) -> World {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), Default::default()).unwrap();
    let clock = ManualClock::new(start);
    let stop = CancellationToken::new();
    let intake = Intake::new(log.clone(), Default::default(), clock.shared());
    let intake_handle = intake.handle();
    tokio::spawn(intake.run(stop.clone()));
    let mut reviews = Reviews::new(log.clone(), catalog, Arc::new(clock.clone()));
    if let Some(after) = after {
        reviews = reviews.with_eviction(after);
    }
    let handle = reviews.handle();
    tokio::spawn(reviews.run(stop.clone()));
    World { _dir: dir, log, clock, intake: intake_handle, reviews: handle, stop }
}

fn t0() -> DateTime<Utc> {
    "2026-11-02T10:00:00Z".parse().unwrap()
}

fn by(name: &str) -> CommandContext {
    CommandContext::by(ActorId::new(name).unwrap())
}

impl World {
    async fn report(&self, service: &str) -> IncidentId {
        let report = Command::ReportIssue {
            source: ReportSource::Alertmanager,
            reporter: ActorId::new("monitor").unwrap(),
            title: "Checkout fails".into(),
            description: String::new(),
            service: Some(service.parse().unwrap()),
            customers: vec!["acme".parse().unwrap()],
            labels: Default::default(),
            dedup_key: None,
            started_at: Some(self.clock.now() - TimeDelta::minutes(4)),
        };
        self.intake.report(report, &by("monitor")).await.unwrap().incident
    }

    async fn run(&self, id: IncidentId, command: Command) -> Incident {
        self.intake.execute(id, command, &by("maria")).await.unwrap().incident
    }

    async fn scripted_sev(&self, service: &str, severity: Severity) -> IncidentId {
        let id = self.report(service).await;
        self.clock.advance(TimeDelta::minutes(1));
        self.run(id, Command::DeclareIncident { severity }).await;
        self.clock.advance(TimeDelta::minutes(2));
        self.run(id, Command::AssignCommander { commander: ActorId::new("maria").unwrap() }).await;
        self.clock.advance(TimeDelta::minutes(7));
        self.run(id, Command::Mitigate { summary: "rolled back".into() }).await;
        self.clock.advance(TimeDelta::minutes(10));
        self.run(id, Command::Resolve { summary: "config fixed".into() }).await;
        id
    }

    /// A report 4 minutes after its problem started, then each command
    /// of `steps` (declare, assign, mitigate, resolve) after its gap in
    /// minutes; the steps stop at the first `None`.
    async fn timed(&self, service: &str, severity: Severity, gaps: [Option<i64>; 4]) -> IncidentId {
        let id = self.report(service).await;
        let maria = ActorId::new("maria").unwrap();
        let steps = [
            Command::DeclareIncident { severity },
            Command::AssignCommander { commander: maria },
            Command::Mitigate { summary: "rolled back".into() },
            Command::Resolve { summary: "fixed".into() },
        ];
        for (gap, step) in gaps.into_iter().zip(steps) {
            let Some(gap) = gap else { break };
            self.clock.advance(TimeDelta::minutes(gap));
            self.run(id, step).await;
        }
        id
    }

    /// Appends one event of the page, notify or other families directly.
    async fn append_raw(&self, stream: String, kind: &str, data: serde_json::Value) {
        let new = klaxon_log::NewEvent {
            id: uuid::Uuid::new_v4(),
            kind: klaxon_log::EventKind::new(kind).unwrap(),
            data: klaxon_log::EventData::from_value(&data).unwrap(),
            metadata: Default::default(),
        };
        let stream = klaxon_log::StreamId::new(stream).unwrap();
        self.log.append(&stream, klaxon_log::ExpectedVersion::Any, vec![new]).await.unwrap();
    }

    async fn grpc(&self) -> v1::review_client::ReviewClient<tonic::transport::Channel> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(klaxon_review::grpc::ReviewService::new(self.reviews.clone()).into_server())
                .serve_with_incoming_shutdown(
                    tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
                    self.stop.clone().cancelled_owned(),
                ),
        );
        v1::review_client::ReviewClient::connect(format!("http://{address}")).await.unwrap()
    }

    fn kinds(&self, kind: &str) -> usize {
        self.log.read_all(Position(1), 100_000).unwrap().iter().filter(|r| r.kind.as_str() == kind).count()
    }

    async fn until_reviewed(&self, id: IncidentId) {
        self.settled().await;
        assert!(self.reviews.review(id).await.unwrap().is_some(), "{id} was never reviewed");
    }

    /// The barrier: waits until the review service has processed everything
    /// in the log, including the reviews it opens.
    async fn settled(&self) {
        self.reviews.reactor().wait_processed(self.log.head()).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resolving_a_sev1_opens_one_review_and_a_sev3_none() {
    let w = start_at(t0());
    let sev1 = w.scripted_sev("payments", Severity::Sev1).await;
    let sev3 = w.scripted_sev("search", Severity::Sev3).await;
    w.until_reviewed(sev1).await;
    assert!(w.reviews.review(sev3).await.unwrap().is_none());
    // Reopen and resolve again: still one review.
    w.run(sev1, Command::Reopen { reason: "back".into() }).await;
    w.run(sev1, Command::Resolve { summary: "really fixed".into() }).await;
    w.settled().await;
    assert_eq!(w.kinds("review.opened.v1"), 1);
    // A second service over the same log (a restart) opens nothing again.
    let again = Reviews::new(w.log.clone(), Arc::<ServiceCatalog>::default(), Arc::new(w.clock.clone()));
    let handle = again.handle();
    tokio::spawn(again.run(w.stop.clone()));
    handle.reactor().wait_processed(w.log.head()).await.unwrap();
    assert_eq!(w.kinds("review.opened.v1"), 1);
    w.stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sev1_resolved_while_reviews_were_down_gets_its_review_at_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), Default::default()).unwrap();
    let clock = ManualClock::new(t0());
    let stop = CancellationToken::new();
    let intake = Intake::new(log.clone(), Default::default(), clock.shared());
    let handle = intake.handle();
    tokio::spawn(intake.run(stop.clone()));
    // No review service is running while the incident is resolved.
    let maria = by("maria");
    let report = Command::ReportIssue {
        source: ReportSource::Api,
        reporter: ActorId::new("monitor").unwrap(),
        title: "db down".into(),
        description: String::new(),
        service: None,
        customers: vec![],
        labels: Default::default(),
        dedup_key: None,
        started_at: None,
    };
    let id = handle.report(report, &maria).await.unwrap().incident;
    handle.execute(id, Command::DeclareIncident { severity: Severity::Sev1 }, &maria).await.unwrap();
    handle.execute(id, Command::Resolve { summary: "failed over".into() }, &maria).await.unwrap();
    let reviews = Reviews::new(log.clone(), Arc::<ServiceCatalog>::default(), Arc::new(clock.clone()));
    let reviews_handle = reviews.handle();
    tokio::spawn(reviews.run(stop.clone()));
    reviews_handle.reactor().wait_processed(log.head()).await.unwrap();
    assert!(reviews_handle.review(id).await.unwrap().is_some(), "the owed review was opened after the replay");
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_state_as_of_each_position_is_what_was_live_then() {
    let w = start_at(t0());
    let id = w.report("payments").await;
    let mut live: Vec<(u64, Incident)> = vec![(w.log.head().0, w.intake.get(id).await.unwrap())];
    let commands = vec![
        Command::DeclareIncident { severity: Severity::Sev1 },
        Command::AssignCommander { commander: ActorId::new("maria").unwrap() },
        Command::AssignRole { role: IncidentRole::Scribe, person: ActorId::new("li").unwrap() },
        Command::PostUpdate { audience: Audience::Executive, text: "investigating".into() },
        Command::RequestHandoff { to: ActorId::new("omar").unwrap() },
        Command::RecordCustomerImpact {
            customers_affected: 12,
            customers: vec![],
            multi_customer: true,
            summary: "EU".into(),
        },
        Command::Mitigate { summary: "failover".into() },
        Command::Resolve { summary: "fixed".into() },
        Command::Reopen { reason: "regressed".into() },
        Command::Resolve { summary: "fixed again".into() },
        Command::ValidateResolution { note: "quiet for a day".into() },
    ];
    for (n, command) in commands.into_iter().enumerate() {
        w.clock.advance(TimeDelta::minutes(n as i64 + 1));
        let outcome = w.intake.execute(id, command, &by("maria")).await.unwrap();
        live.push((outcome.last.0, outcome.incident));
    }
    for (position, state) in &live {
        let (entries, then) = w.reviews.timeline(id, Some(IncidentAsOf::Position(*position))).await.unwrap();
        assert_eq!(then.as_ref(), Some(state), "as of position {position}");
        assert!(entries.iter().all(|e| e.position <= *position));
    }
    // As of a time: before the declaration, the incident was only reported.
    let (_, then) = w.reviews.timeline(id, Some(IncidentAsOf::Time(t0() + TimeDelta::seconds(30)))).await.unwrap();
    assert_eq!(then.unwrap().status(), klaxon_domain::incident::Status::Reported);
    let (all, none) = w.reviews.timeline(id, None).await.unwrap();
    assert!(none.is_none());
    assert_eq!(all.len() as u64, live.len() as u64 + w.kinds("review.opened.v1") as u64);
    w.stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_trends_of_scripted_incidents_match_hand_computed_values() {
    let w = start_at(t0());
    let a = w.scripted_sev("payments", Severity::Sev1).await;
    w.clock.advance(TimeDelta::days(8));
    w.scripted_sev("search", Severity::Sev2).await;
    let noise = w.report("search").await;
    w.run(noise, Command::MarkNoise { reason: "flapping alert".into() }).await;

    let m = w.reviews.metrics(a).await.unwrap();
    assert_eq!(m.time_to_detect, Some(TimeDelta::minutes(4)));
    assert_eq!(m.time_to_assign, Some(TimeDelta::minutes(2)));
    assert_eq!(m.time_to_mitigate, Some(TimeDelta::minutes(9)));
    assert_eq!(m.time_to_resolve, Some(TimeDelta::minutes(19)));
    assert_eq!(m.time_to_acknowledge, None, "nobody was paged");
    assert_eq!(m.slo_breaches.total(), 0);

    // The notifier records a missed update cadence: it counts as a breach.
    let overdue =
        klaxon_domain::notifier::Reminder { incident: a, commander: None, due_at: t0() + TimeDelta::minutes(31) }
            .overdue(t0() + TimeDelta::minutes(31));
    let new = klaxon_log::NewEvent {
        id: uuid::Uuid::new_v4(),
        kind: klaxon_log::EventKind::new(overdue.kind()).unwrap(),
        data: klaxon_log::EventData::from_value(&overdue.to_json()).unwrap(),
        metadata: Default::default(),
    };
    let stream = klaxon_log::StreamId::new(klaxon_domain::notifier::stream(a)).unwrap();
    w.log.append(&stream, klaxon_log::ExpectedVersion::Any, vec![new]).await.unwrap();
    let m = w.reviews.metrics(a).await.unwrap();
    assert_eq!(m.slo_breaches.update_cadence, 1);

    let mut client = w.grpc().await;
    let trends = client.trends(trends_request(t0(), t0() + TimeDelta::days(30))).await.unwrap().into_inner();
    let report: serde_json::Value = serde_json::from_str(&trends.json).unwrap();
    assert_eq!(report["noise_excluded"], 1, "{report}");
    assert!(trends.csv.contains("\nweek,2026-W45,1,0\n"), "{}", trends.csv);
    assert!(trends.table.contains("2026-W45") && trends.table.contains("2026-W46"), "{}", trends.table);
    assert_eq!(report["incidents"], 2, "{report}");
    w.stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reviewers_write_the_review_track_action_items_and_export_markdown() {
    let w = start_at(t0());
    let id = w.scripted_sev("payments", Severity::Sev1).await;
    w.until_reviewed(id).await;
    let mut c = w.grpc().await;
    let edit = |edit: Edit| {
        let mut r =
            tonic::Request::new(v1::EditReviewRequest { context: None, incident_id: id.to_string(), edit: Some(edit) });
        r.metadata_mut().insert("klaxon-actor", "rita".parse().unwrap());
        r
    };
    let early = c.edit_review(edit(Edit::Publish(true))).await.unwrap_err();
    assert_eq!(early.code(), tonic::Code::FailedPrecondition);
    assert!(early.message().contains("publish.needs_summary"), "{}", early.message());
    c.edit_review(edit(Edit::WriteSummary("A bad config push broke EU checkout.".into()))).await.unwrap();
    c.edit_review(edit(Edit::WriteImpact("40 customers for 19 minutes.".into()))).await.unwrap();
    c.edit_review(edit(Edit::AddContributingFactor("No canary for config pushes.".into()))).await.unwrap();
    c.edit_review(edit(Edit::AddActionItem("Canary config pushes".into()))).await.unwrap();
    let view = c.edit_review(edit(Edit::AddActionItem("Alert on checkout 5xx".into()))).await.unwrap().into_inner();
    assert_eq!(view.action_items.iter().map(|i| i.item_id.as_str()).collect::<Vec<_>>(), ["INC-1-A1", "INC-1-A2"]);
    c.edit_review(edit(Edit::AssignActionItem(v1::AssignActionItem {
        item_id: "INC-1-A1".into(),
        owner: "ana".into(),
    })))
    .await
    .unwrap();
    c.edit_review(edit(Edit::SetActionItemDue(v1::SetActionItemDue {
        item_id: "INC-1-A1".into(),
        due: "2026-12-01".into(),
    })))
    .await
    .unwrap();
    c.edit_review(edit(Edit::CompleteActionItem("INC-1-A2".into()))).await.unwrap();
    let bad = c.edit_review(edit(Edit::CompleteActionItem("INC-1-A9".into()))).await.unwrap_err();
    assert_eq!(bad.code(), tonic::Code::FailedPrecondition);
    let malformed = c.edit_review(edit(Edit::CompleteActionItem("A9".into()))).await.unwrap_err();
    assert_eq!(malformed.code(), tonic::Code::InvalidArgument);
    let published = c.edit_review(edit(Edit::Publish(true))).await.unwrap().into_inner();
    assert!(published.published);
    assert_eq!(w.kinds("review.published.v1"), 1);

    let open = c.list_action_items(v1::ListActionItemsRequest { open_only: true }).await.unwrap().into_inner().items;
    assert_eq!(open.len(), 1);
    assert_eq!(
        (open[0].item_id.as_str(), open[0].owner.as_str(), open[0].due.as_str()),
        ("INC-1-A1", "ana", "2026-12-01")
    );
    let markdown = c
        .export_markdown(v1::ExportMarkdownRequest { incident_id: id.to_string() })
        .await
        .unwrap()
        .into_inner()
        .markdown;
    for part in [
        "INC-1",
        "A bad config push broke EU checkout.",
        "No canary for config pushes.",
        "Canary config pushes",
        "ana",
        "2026-12-01",
    ] {
        assert!(markdown.contains(part), "the postmortem lacks {part:?}:\n{markdown}");
    }
    let missing = c.get_review(v1::GetReviewRequest { incident_id: "INC-77".into() }).await.unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound);
    w.stop.cancel();
}

/// The issue's defect: `EditReview` ignored its command context, so a retry
/// wrote a second action item.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_edit_writes_once_and_a_stale_expected_version_is_aborted() {
    let w = start_at(t0());
    let id = w.scripted_sev("payments", Severity::Sev1).await;
    w.until_reviewed(id).await;
    let mut c = w.grpc().await;
    let edit = |edit: Edit, request_id: &str, expected_version: Option<u64>| {
        let context = Some(v1::CommandContext { request_id: request_id.into(), expected_version });
        let mut r =
            tonic::Request::new(v1::EditReviewRequest { context, incident_id: id.to_string(), edit: Some(edit) });
        r.metadata_mut().insert("klaxon-actor", "rita".parse().unwrap());
        r
    };
    let first = c.edit_review(edit(Edit::AddActionItem("Canary config pushes".into()), "r-1", None)).await.unwrap();
    let first = first.into_inner();
    let head = w.log.head();
    let again = c.edit_review(edit(Edit::AddActionItem("Canary config pushes".into()), "r-1", None)).await.unwrap();
    assert_eq!(again.into_inner(), first, "the first answer");
    assert_eq!(w.log.head(), head, "the retry wrote nothing");
    assert_eq!(w.kinds("review.action_item_added.v1"), 1);

    // The expected version is honoured: stale is ABORTED with the current
    // one in the trailer, and nothing is written; current goes through.
    let stale = c
        .edit_review(edit(Edit::WriteSummary("A config push.".into()), "r-2", Some(first.version - 1)))
        .await
        .unwrap_err();
    assert_eq!(stale.code(), tonic::Code::Aborted, "{stale:?}");
    assert!(stale.message().contains(&format!("is at version {}, not {}", first.version, first.version - 1)));
    assert_eq!(stale.metadata().get("klaxon-current-version").unwrap(), first.version.to_string().as_str());
    assert_eq!(w.log.head(), head);
    let written = c
        .edit_review(edit(Edit::WriteSummary("A config push.".into()), "r-2", Some(first.version)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(written.version, first.version + 1);

    // A retry whose decision would now be refused (publishing twice) still
    // gets the first answer: the first write is found by its request id.
    let published = c.edit_review(edit(Edit::Publish(true), "r-4", None)).await.unwrap().into_inner();
    assert!(published.published);
    let head = w.log.head();
    let again = c.edit_review(edit(Edit::Publish(true), "r-4", None)).await.unwrap().into_inner();
    assert_eq!(again, published);
    assert_eq!(w.log.head(), head);
    let other = c.edit_review(edit(Edit::Publish(true), "r-5", None)).await.unwrap_err();
    assert_eq!(other.code(), tonic::Code::FailedPrecondition, "a new request is decided anew: {other:?}");

    // The text rule, naming the API's field.
    let head = w.log.head();
    let bad = c.edit_review(edit(Edit::AddActionItem("\u{0}\u{1}".into()), "r-3", None)).await.unwrap_err();
    // (Text is checked before the rules: the review is published by now.)
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
    assert!(bad.message().starts_with("invalid add_action_item: must be one line"), "{bad:?}");
    assert_eq!(w.log.head(), head);
    w.stop.cancel();
}

fn trends_request(from: DateTime<Utc>, to: DateTime<Utc>) -> v1::TrendsRequest {
    v1::TrendsRequest {
        from: Some(klaxon_proto::convert::timestamp(from)),
        to: Some(klaxon_proto::convert::timestamp(to)),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trends_of_known_timings_by_team_severity_and_filters() {
    let w = start_with(t0(), catalog());
    let some = Some;
    // Gaps in minutes: declare, assign, mitigate, resolve.
    let a = w.timed("payments", Severity::Sev1, [some(1), some(2), some(7), some(10)]).await; // assign 2, resolve 19
    w.timed("payments", Severity::Sev2, [some(1), some(4), some(5), some(20)]).await; // assign 4, resolve 29
    w.timed("search", Severity::Sev1, [some(1), some(6), some(10), None]).await; // assign 6, open
    // An ack SLO breach recorded by paging for the first one.
    let breach = PageEvent {
        incident: a,
        at: t0() + TimeDelta::minutes(30),
        by: klaxon_domain::paging::paging_actor(),
        change: PageChange::SloBreached(SloBreached { slo: SloKind::Ack, due_at: t0() + TimeDelta::minutes(30) }),
    };
    w.append_raw(klaxon_domain::paging::stream(a), breach.kind(), breach.to_json()).await;
    w.settled().await;

    let mut client = w.grpc().await;
    let window = trends_request(t0(), t0() + TimeDelta::days(7));
    let json = |r: v1::TrendsResponse| serde_json::from_str::<serde_json::Value>(&r.json).unwrap();
    let all = json(client.trends(window.clone()).await.unwrap().into_inner());
    assert_eq!((all["incidents"].as_u64(), all["open"].as_u64()), (Some(3), Some(1)), "{all}");
    let stats = |group: &serde_json::Value, metric: usize| {
        let d = &group["durations"][metric];
        [&d["samples"], &d["p50_seconds"], &d["p90_seconds"], &d["mean_seconds"]].map(|v| v.as_i64().unwrap_or(-1))
    };
    assert_eq!(stats(&all, 0), [3, 240, 240, 240], "every report started 4 minutes before it");
    assert_eq!(stats(&all, 2), [3, 240, 360, 240], "assign [2, 4, 6] min");
    assert_eq!(stats(&all, 3), [3, 540, 960, 680], "mitigate [9, 9, 16] min");
    assert_eq!(stats(&all, 4), [2, 1140, 1740, 1440], "resolve [19, 29] min; the open one is no sample");
    let money = &all["by_team"][1];
    assert_eq!(money["key"], "money", "{all}");
    assert_eq!(stats(money, 2), [2, 120, 240, 180]);
    assert_eq!(money["slo"]["by_slo"][0]["within"], 0, "the ack breach of {a} counts: {money}");
    assert_eq!(money["slo"]["by_slo"][0]["applicable"], 1, "{money}");
    assert_eq!(all["by_team"][0]["key"], "discovery", "{all}");
    assert_eq!(all["by_team"][0]["open"], 1, "{all}");

    let mut sev1 = window.clone();
    sev1.severity = v1::Severity::Sev1.into();
    let sev1 = json(client.trends(sev1).await.unwrap().into_inner());
    assert_eq!(stats(&sev1, 2), [2, 120, 360, 240], "assign [2, 6] min: {sev1}");
    let mut team = window.clone();
    team.team = "money".into();
    team.service = "payments".into();
    let answer = client.trends(team).await.unwrap().into_inner();
    assert!(answer.table.contains("Filters: service payments, team money"), "{}", answer.table);
    assert!(answer.csv.contains("\nteam,money,time_to_resolve,2,1140,1740,1440\n"), "{}", answer.csv);
    assert_eq!(json(answer)["incidents"], 2);

    let head = w.log.head();
    let mut unknown = window.clone();
    unknown.team = "nobody".into();
    let refused = client.trends(unknown).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    assert!(refused.message().contains("team") && refused.message().contains("nobody"), "{refused:?}");
    let mut bad = window;
    bad.service = "Not A Service".into();
    let refused = client.trends(bad).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    assert!(refused.message().contains("service"), "{refused:?}");
    assert_eq!(w.log.head(), head, "a refused request writes nothing");
    w.stop.cancel();
}

/// Starts a reporter of one weekly report (Mondays 09:00 UTC, team money)
/// posting to `receiver`; returns what it has checked.
async fn reporter(
    reviews: &klaxon_review::Handle,
    clock: &ManualClock,
    receiver: &klaxon_tests::receiver::Receiver,
    secret: &str,
    stop: CancellationToken,
) -> tokio::sync::watch::Receiver<Option<DateTime<Utc>>> {
    reporter_as(None, reviews, clock, receiver, secret, stop).await
}

/// [`reporter`], claiming its deliveries as `replica` when given one.
async fn reporter_as(
    replica: Option<&str>,
    reviews: &klaxon_review::Handle,
    clock: &ManualClock,
    receiver: &klaxon_tests::receiver::Receiver,
    secret: &str,
    stop: CancellationToken,
) -> tokio::sync::watch::Receiver<Option<DateTime<Utc>>> {
    let channel: klaxon_channels::ChannelConfig = serde_json::from_value(serde_json::json!({
        "name": "ops", "kind": "webhook", "url": receiver.url, "secret_env": "REPORT_SECRET",
        "attempts_max": 3, "backoff_initial_ms": 10, "backoff_max_ms": 50,
    }))
    .unwrap();
    let secret = secret.to_owned();
    let channels = klaxon_channels::Channels::new(&[channel], move |_| Some(secret.clone())).unwrap();
    let config: klaxon_domain::review::reports::ReportConfig = serde_json::from_value(serde_json::json!({
        "name": "weekly-money", "period": "weekly", "weekday": "monday", "time": "09:00",
        "time_zone": "UTC", "channels": ["ops"], "team": "money",
    }))
    .unwrap();
    let reports =
        klaxon_domain::review::reports::validate_reports(&[config], "reports", &catalog(), &|c| c == "ops").unwrap();
    let mut reporter = klaxon_review::Reporter::new(reviews.clone(), reports, Arc::new(channels), clock.shared());
    if let Some(replica) = replica {
        let replica = klaxon_reactor::ReplicaId::new(replica).unwrap();
        reporter = reporter.with_claims(klaxon_reactor::Claims::new(replica, LEASE_MS));
    }
    let checked = reporter.checked();
    tokio::spawn(reporter.run(stop));
    checked
}

/// Waits until the reporter has checked every report at the clock's time.
async fn checked_now(checked: &mut tokio::sync::watch::Receiver<Option<DateTime<Utc>>>, now: DateTime<Utc>) {
    checked.wait_for(|c| c.is_some_and(|c| c >= now)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_weekly_report_is_posted_once_per_week_across_restarts() {
    let secret = klaxon_tests::config::secret();
    let receiver = klaxon_tests::receiver::Receiver::start(&secret).await;
    // Monday 2026-11-02 10:00 UTC: week 45 starts; week 44's report was due at 09:00.
    let w = start_with(t0(), catalog());
    let first = CancellationToken::new();
    let mut checked = reporter(&w.reviews, &w.clock, &receiver, &secret, first.clone()).await;
    checked_now(&mut checked, w.clock.now()).await;
    let keys = || receiver.requests().into_iter().map(|r| r.idempotency_key).collect::<Vec<_>>();
    assert_eq!(keys(), ["report/weekly-money/2026-W44"], "the latest period due is posted at start");

    let some = Some;
    w.timed("payments", Severity::Sev1, [some(1), some(2), some(7), some(10)]).await;
    w.timed("search", Severity::Sev1, [some(1), some(2), some(7), some(10)]).await; // team discovery
    w.settled().await;
    // Monday 2026-11-09 09:00: week 45's report.
    w.clock.advance(t0() + TimeDelta::days(7) - TimeDelta::hours(1) - w.clock.now());
    checked_now(&mut checked, w.clock.now()).await;
    assert_eq!(keys(), ["report/weekly-money/2026-W44", "report/weekly-money/2026-W45"]);
    let post = &receiver.requests()[1];
    assert!(post.signature_ok);
    let filter = klaxon_domain::review::TrendFilter { team: Some("money".into()), ..Default::default() };
    let week45 =
        w.reviews.trends(t0() - TimeDelta::hours(10), t0() + TimeDelta::days(7) - TimeDelta::hours(10), &filter);
    let table = klaxon_domain::review::render_table(&week45.await.unwrap());
    assert_eq!(post.body["text"], table, "the numbers of klaxon trends for the week");
    assert!(table.contains("Filters: team money") && table.contains("1 incident counted (0 still open)"), "{table}");

    // A restart (the reporter stopped, a new review service and reporter
    // over the same log) in the same week posts nothing again.
    first.cancel();
    let second = CancellationToken::new();
    let again = Reviews::new(w.log.clone(), catalog(), Arc::new(w.clock.clone()));
    let reviews = again.handle();
    tokio::spawn(again.run(second.clone()));
    let mut checked = reporter(&reviews, &w.clock, &receiver, &secret, second.clone()).await;
    // Its first round, at the clock's time (advancing the clock first would
    // race it: a round that read the time before the advance sleeps until
    // the next posting time and never checks the later instant).
    checked_now(&mut checked, w.clock.now()).await;
    assert_eq!(receiver.requests().len(), 2, "{:?}", keys());
    assert_eq!(w.kinds("report.posted.v1"), 2);

    // The next Monday, week 46.
    w.clock.advance(TimeDelta::days(7));
    checked_now(&mut checked, w.clock.now()).await;
    assert_eq!(keys().last().unwrap(), "report/weekly-money/2026-W46");
    assert_eq!(w.kinds("report.posted.v1"), 3);
    second.cancel();
    w.stop.cancel();
}

/// A stop while a report is being delivered (the receiver slow to answer)
/// lets that post finish: delivered and recorded, so that the restart does
/// not send the period again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_during_a_delivery_lets_the_report_be_recorded() {
    let secret = klaxon_tests::config::secret();
    let receiver = klaxon_tests::receiver::Receiver::start(&secret).await;
    receiver.answer_after(std::time::Duration::from_millis(800));
    let w = start_with(t0(), catalog());
    let stop = CancellationToken::new();
    let _checked = reporter(&w.reviews, &w.clock, &receiver, &secret, stop.clone()).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while receiver.requests().is_empty() {
        assert!(std::time::Instant::now() < deadline, "week 44's report is sent at start");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(w.kinds("report.posted.v1"), 0, "the receiver has not answered yet");
    stop.cancel();
    while w.kinds("report.posted.v1") == 0 {
        assert!(std::time::Instant::now() < deadline, "the post under way at the stop is recorded");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(receiver.requests().len(), 1);

    // Restarted in the same week: nothing is sent again.
    let again = CancellationToken::new();
    let mut checked = reporter(&w.reviews, &w.clock, &receiver, &secret, again.clone()).await;
    checked_now(&mut checked, w.clock.now()).await;
    assert_eq!(receiver.requests().len(), 1, "the period is not sent twice");
    assert_eq!(w.kinds("report.posted.v1"), 1);
    again.cancel();
    w.stop.cancel();
}

/// A Sev-1 resolved and reviewed; two hours later (past the hour after
/// which the review service evicts, when it does) its postmortem is edited,
/// then it is reopened and resolved again. Returns the records from the
/// edit on (event ids left out: commands' are random, and the review's
/// derive from them), the review and the trends.
async fn edited_and_reopened_after_two_hours(
    after: Option<std::time::Duration>,
) -> (Vec<(String, String, String)>, String) {
    use klaxon_domain::review::{ReviewCommand, TrendFilter};
    let w = start_evicting(t0(), catalog(), after);
    let id = w.scripted_sev("payments", Severity::Sev1).await;
    w.until_reviewed(id).await;
    assert_eq!(w.reviews.reactor().progress().held, 1);
    w.clock.advance(TimeDelta::hours(2));
    w.settled().await;
    let progress = w.reviews.reactor().progress();
    if after.is_some() {
        assert_eq!((progress.held, progress.evicted), (0, 1), "{progress:?}");
        // Queries read it back from the log.
        assert!(w.reviews.review(id).await.unwrap().is_some());
    } else {
        assert_eq!((progress.held, progress.evicted), (1, 0), "{progress:?}");
    }
    let edit = Position(w.log.head().0 + 1);
    let summary = ReviewCommand::WriteSummary { summary: "A bad config push.".into() };
    let review = w.reviews.edit(id, summary, &ActorId::new("rita").unwrap(), None, None).await.unwrap();
    w.settled().await;
    assert_eq!(w.reviews.reactor().progress().held, 1);
    w.run(id, Command::Reopen { reason: "back".into() }).await;
    w.clock.advance(TimeDelta::minutes(5));
    w.run(id, Command::Resolve { summary: "really fixed".into() }).await;
    w.settled().await;
    let trends = w.reviews.trends(t0(), t0() + TimeDelta::days(1), &TrendFilter::default()).await.unwrap();
    let records = w
        .log
        .read_all(edit, 100_000)
        .unwrap()
        .into_iter()
        .map(|r| (r.stream.to_string(), r.kind.to_string(), r.data.as_str().to_owned()))
        .collect();
    w.stop.cancel();
    (records, format!("{review:?} {:?} {trends:?}", w.reviews.review(id).await.ok()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_evicted_reviewed_incident_comes_back_for_an_edit_and_a_reopen_as_if_it_never_left() {
    let (kept, kept_views) = edited_and_reopened_after_two_hours(None).await;
    let (evicted, evicted_views) =
        edited_and_reopened_after_two_hours(Some(std::time::Duration::from_secs(3600))).await;
    assert!(kept.iter().any(|(_, kind, _)| kind.starts_with("review.")), "the edit is recorded: {kept:#?}");
    assert_eq!(evicted, kept);
    assert_eq!(evicted_views, kept_views);
}

/// What the review queries read for an incident the service no longer holds
/// in memory: its dossier folded from its streams in the log alone (the
/// incident's, its pages', notify's and review's) equals the one the fold
/// of the whole log holds, edits, action items and a notify record
/// included; an incident never seen has an empty one (so: unknown).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dossier_read_from_the_log_equals_the_held_one() {
    let w = start_at(t0());
    let a = w.scripted_sev("payments", Severity::Sev1).await;
    w.until_reviewed(a).await;
    let mut c = w.grpc().await;
    let edit = |edit: Edit| {
        let mut r =
            tonic::Request::new(v1::EditReviewRequest { context: None, incident_id: a.to_string(), edit: Some(edit) });
        r.metadata_mut().insert("klaxon-actor", "rita".parse().unwrap());
        r
    };
    c.edit_review(edit(Edit::WriteSummary("A bad config push broke EU checkout.".into()))).await.unwrap();
    c.edit_review(edit(Edit::AddActionItem("Canary config pushes".into()))).await.unwrap();
    c.edit_review(edit(Edit::AddActionItem("Alert on checkout 5xx".into()))).await.unwrap();
    c.edit_review(edit(Edit::CompleteActionItem(format!("{a}-A2")))).await.unwrap();
    let overdue =
        klaxon_domain::notifier::Reminder { incident: a, commander: None, due_at: t0() + TimeDelta::minutes(31) }
            .overdue(t0() + TimeDelta::minutes(31));
    w.append_raw(klaxon_domain::notifier::stream(a), overdue.kind(), overdue.to_json()).await;
    w.clock.advance(TimeDelta::hours(2));
    let b = w.scripted_sev("search", Severity::Sev3).await;
    w.run(b, Command::Reopen { reason: "came back".into() }).await;
    let open = w.report("search").await;
    w.settled().await;

    for id in [a, b, open] {
        let held = w.reviews.dossier(id).await.unwrap();
        assert!(held.incident().is_some(), "{id} is held");
        assert_eq!(w.reviews.dossier_from_log(id).await.unwrap(), held, "{id}");
    }
    assert_eq!(w.reviews.dossier(a).await.unwrap().review().unwrap().action_items().count(), 2);
    let unknown = IncidentId::from_number(99).unwrap();
    assert_eq!(w.reviews.dossier_from_log(unknown).await.unwrap(), Default::default());
    w.stop.cancel();
}

/// The reporters' claim lease in the replica test.
const LEASE_MS: u64 = 60_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_review_replicas_post_each_period_once_even_after_a_claimer_died() {
    let secret = klaxon_tests::config::secret();
    let receiver = klaxon_tests::receiver::Receiver::start(&secret).await;
    let w = start_with(t0(), catalog());
    let keys = || receiver.requests().into_iter().map(|r| r.idempotency_key).collect::<Vec<_>>();
    // A replica claimed week 44's report (due at 09:00) at 10:00 and died
    // before delivering it (a crash between decide and deliver): its claim
    // holds for a lease, until 10:01.
    let message = klaxon_domain::outbox::Message {
        idempotency_key: "report/weekly-money/2026-W44".into(),
        kind: "trend_report".into(),
        title: String::new(),
        text: String::new(),
        fields: Default::default(),
        recipient: None,
        thread: None,
    };
    let sends = [klaxon_domain::outbox::Outgoing { channel: "ops".into(), message }];
    let dead = klaxon_reactor::Claims::new(klaxon_reactor::ReplicaId::new("review-dead").unwrap(), LEASE_MS);
    let bus = klaxon_bus::Bus::from(w.log.clone());
    let claimed_at = t0();
    let won = klaxon_reactor::claim::claim(&bus, &dead, klaxon_review::CLAIM_SERVICE, &sends, None, claimed_at);
    assert_eq!(won.await.unwrap(), klaxon_reactor::Claim::Won { version: 1 });

    // Two review replicas, each with its own review service and reporter,
    // over the same log: both find week 44 due and claimed by the dead one.
    let other = Reviews::new(w.log.clone(), catalog(), Arc::new(w.clock.clone()));
    let other_handle = other.handle();
    tokio::spawn(other.run(w.stop.clone()));
    let mut a = reporter_as(Some("review-a"), &w.reviews, &w.clock, &receiver, &secret, w.stop.clone()).await;
    let mut b = reporter_as(Some("review-b"), &other_handle, &w.clock, &receiver, &secret, w.stop.clone()).await;
    checked_now(&mut a, w.clock.now()).await;
    checked_now(&mut b, w.clock.now()).await;
    assert_eq!(keys(), Vec::<String>::new(), "nobody posts while the dead replica's claim holds");
    assert_eq!(w.kinds("report.posted.v1"), 0);

    // Its lease runs out (10:01): both come back, one claims and posts.
    w.clock.advance(claimed_at + TimeDelta::milliseconds(LEASE_MS as i64) - w.clock.now());
    checked_now(&mut a, w.clock.now()).await;
    checked_now(&mut b, w.clock.now()).await;
    assert_eq!(keys(), ["report/weekly-money/2026-W44"], "posted once by one of the two");
    assert_eq!(w.kinds("report.posted.v1"), 1);
    // Next Monday 09:00 both find week 45 due at the same instant: once.
    w.clock.advance(t0() + TimeDelta::days(7) - TimeDelta::hours(1) - w.clock.now());
    // (The loser of week 44 looked again at the winner's lease end, found
    // the record and sleeps until this posting time too; a reporter
    // reports `checked` only for the rounds it runs.)
    checked_now(&mut a, w.clock.now()).await;
    checked_now(&mut b, w.clock.now()).await;
    assert_eq!(keys(), ["report/weekly-money/2026-W44", "report/weekly-money/2026-W45"]);
    assert_eq!(w.kinds("report.posted.v1"), 2);
    w.stop.cancel();
}

/// Issue 19: an incident whose review has open action items leaves memory
/// like any finished one. Its items still list, open ones and all, from
/// the compact rows the service keeps (it stays evicted); completing one
/// brings the incident back (the edit reads its dossier from the log); once
/// all are completed it leaves again, and its items list among all items
/// (read from its review stream) and no longer among the open ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_evicted_incident_with_open_action_items_still_lists_them_completes_them_and_leaves() {
    use klaxon_domain::review::{ActionItemId, ReviewCommand};
    let w = start_evicting(t0(), catalog(), Some(std::time::Duration::from_secs(3600)));
    let id = w.scripted_sev("payments", Severity::Sev1).await;
    w.until_reviewed(id).await;
    let rita = ActorId::new("rita").unwrap();
    let edit = |command: ReviewCommand| {
        let (reviews, rita) = (w.reviews.clone(), rita.clone());
        async move { reviews.edit(id, command, &rita, None, None).await.unwrap() }
    };
    edit(ReviewCommand::AddActionItem { title: "Canary config pushes".into(), owner: None, due: None }).await;
    edit(ReviewCommand::AddActionItem { title: "Alert on checkout 5xx".into(), owner: None, due: None }).await;
    edit(ReviewCommand::AssignActionItem { item: ActionItemId::new(id, 1).unwrap(), owner: rita.clone() }).await;
    edit(ReviewCommand::CompleteActionItem { item: ActionItemId::new(id, 2).unwrap() }).await;
    w.settled().await;
    let all = w.reviews.action_items(false).await.unwrap();
    let open = w.reviews.action_items(true).await.unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(open.iter().map(|i| i.id().to_string()).collect::<Vec<_>>(), [format!("{id}-A1")]);
    assert_eq!(open[0].owner(), Some(&rita));

    // Two hours later it is evicted, open item and all.
    w.clock.advance(TimeDelta::hours(2));
    w.settled().await;
    let progress = w.reviews.reactor().progress();
    assert_eq!((progress.held, progress.evicted), (0, 1), "{progress:?}");
    assert_eq!(w.reviews.action_items(true).await.unwrap(), open);
    assert_eq!(w.reviews.action_items(false).await.unwrap(), all);
    assert!(w.reviews.reactor().is_evicted(id).await.unwrap(), "listing items brought nothing back");

    // Completing the open item brings it back; then nothing is open.
    edit(ReviewCommand::CompleteActionItem { item: ActionItemId::new(id, 1).unwrap() }).await;
    w.settled().await;
    let progress = w.reviews.reactor().progress();
    assert_eq!((progress.held, progress.evicted), (1, 0), "{progress:?}");
    assert_eq!(w.reviews.action_items(true).await.unwrap(), []);
    let completed = w.reviews.action_items(false).await.unwrap();
    assert_eq!(completed.len(), 2);
    assert!(completed.iter().all(|i| i.is_completed()), "{completed:?}");

    // And it leaves again, its completed items still listed among all.
    w.clock.advance(TimeDelta::hours(2));
    w.settled().await;
    let progress = w.reviews.reactor().progress();
    assert_eq!((progress.held, progress.evicted), (0, 1), "{progress:?}");
    assert_eq!(w.reviews.action_items(true).await.unwrap(), []);
    assert_eq!(w.reviews.action_items(false).await.unwrap(), completed);
    w.stop.cancel();
}
