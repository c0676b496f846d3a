//! The review service in process: a real log, the real intake and review
//! service, a manual clock, real gRPC for the review API. (Here rather than
//! in klaxon-review so that the review crate does not depend on intake, not
//! even for its tests.)

use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use klaxon_domain::ids::{ActorId, Audience, IncidentId, IncidentRole, ReportSource, Severity};
use klaxon_domain::incident::{Command, Incident};
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
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), Default::default()).unwrap();
    let clock = ManualClock::new(start);
    let stop = CancellationToken::new();
    let intake = Intake::new(log.clone(), Default::default(), clock.shared());
    let intake_handle = intake.handle();
    tokio::spawn(intake.run(stop.clone()));
    let reviews = Reviews::new(log.clone(), Arc::new(clock.clone()));
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
    let again = Reviews::new(w.log.clone(), Arc::new(w.clock.clone()));
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
    let reviews = Reviews::new(log.clone(), Arc::new(clock.clone()));
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
    let trends = client
        .trends(v1::TrendsRequest {
            from: Some(klaxon_proto::convert::timestamp(t0())),
            to: Some(klaxon_proto::convert::timestamp(t0() + TimeDelta::days(30))),
        })
        .await
        .unwrap()
        .into_inner();
    let report: serde_json::Value = serde_json::from_str(&trends.json).unwrap();
    assert_eq!(report["noise_excluded"], 1, "{report}");
    assert!(trends.csv.contains("# by_week"), "{}", trends.csv);
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
