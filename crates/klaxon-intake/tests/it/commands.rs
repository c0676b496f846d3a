//! Commands and queries over real gRPC.

use klaxon_proto::v1::{self, IncidentStatus, Severity};
use tonic::Code;

use crate::support::{Server, by, ctx, report, sev1};

#[tokio::test]
async fn a_sev1_goes_through_its_whole_lifecycle() {
    let server = Server::start(Default::default()).await;
    let mut c = server.client().await;
    let reported = c
        .report(by(
            "monitor",
            v1::ReportRequest {
                title: "Checkout fails for EU customers".into(),
                description: "5xx from payments-api".into(),
                service: "payments".into(),
                customers: vec!["acme".into(), "globex".into()],
                source: v1::ReportSource::Alertmanager as i32,
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reported.incident_id, "INC-1");
    assert!(!reported.merged);
    let id = reported.incident_id;
    let inc = |r: tonic::Response<v1::CommandResponse>| r.into_inner().incident.unwrap();

    let i = inc(c
        .declare(by(
            "maria",
            v1::DeclareRequest { incident_id: id.clone(), severity: Severity::Sev1 as i32, context: None },
        ))
        .await
        .unwrap());
    assert_eq!((i.status(), i.severity(), i.version), (IncidentStatus::Declared, Severity::Sev1, 2));
    let i = inc(c
        .assign_commander(by(
            "maria",
            v1::AssignCommanderRequest { incident_id: id.clone(), commander: "maria".into(), context: None },
        ))
        .await
        .unwrap());
    assert_eq!(i.commander, "maria");
    let i = inc(c
        .post_update(by(
            "maria",
            v1::PostUpdateRequest {
                incident_id: id.clone(),
                audience: v1::Audience::Executive as i32,
                text: "Payments degraded; rollback under way".into(),
                context: None,
            },
        ))
        .await
        .unwrap());
    assert_eq!(i.latest_updates[0].text, "Payments degraded; rollback under way");
    let i = inc(c
        .record_customer_impact(by(
            "maria",
            v1::RecordCustomerImpactRequest {
                incident_id: id.clone(),
                customers_affected: 40,
                customers: vec!["acme".into(), "globex".into()],
                multi_customer: true,
                summary: "EU checkout down".into(),
                context: None,
            },
        ))
        .await
        .unwrap());
    assert!(i.multi_customer);
    assert_eq!(i.customers_affected, 40);
    let i = inc(c
        .mitigate(by(
            "maria",
            v1::MitigateRequest { incident_id: id.clone(), summary: "rolled back".into(), context: None },
        ))
        .await
        .unwrap());
    assert_eq!(i.status(), IncidentStatus::Mitigated);
    let i = inc(c
        .resolve(by(
            "maria",
            v1::ResolveRequest { incident_id: id.clone(), summary: "fixed config".into(), context: None },
        ))
        .await
        .unwrap());
    assert_eq!(i.status(), IncidentStatus::Resolved);
    let i = inc(c
        .validate_resolution(by(
            "victor",
            v1::ValidateResolutionRequest {
                incident_id: id.clone(),
                note: "error rate flat for 1h".into(),
                context: None,
            },
        ))
        .await
        .unwrap());
    assert_eq!(i.status(), IncidentStatus::Closed);
    assert_eq!(i.version, 8);

    let fetched = c.get_incident(v1::GetIncidentRequest { incident_id: id.clone() }).await.unwrap().into_inner();
    assert_eq!(fetched, i);
    let history = c.get_history(v1::GetHistoryRequest { incident_id: id.clone() }).await.unwrap().into_inner().entries;
    let kinds: Vec<&str> = history.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "incident.reported.v1",
            "incident.declared.v1",
            "incident.commander_assigned.v1",
            "incident.status_update_posted.v1",
            "incident.customer_impact_recorded.v1",
            "incident.mitigated.v1",
            "incident.resolved.v1",
            "incident.resolution_validated.v1",
        ]
    );
    assert_eq!(history[1].summary, "maria declared INC-1 SEV1");
    assert_eq!(history[7].by, "victor");
    // The actor is recorded in the log's metadata too.
    let record = server.log.read_one(klaxon_log::Position(history[7].position)).unwrap();
    assert_eq!(record.metadata.actor.as_deref(), Some("victor"));
}

#[tokio::test]
async fn a_retried_command_writes_nothing_twice_and_returns_the_first_result() {
    let server = Server::start(Default::default()).await;
    let mut c = server.client().await;
    let id = sev1(&mut c, "db failover").await;
    let resolve =
        || v1::ResolveRequest { incident_id: id.clone(), summary: "done".into(), context: ctx("req-77", None) };
    let first = c.resolve(by("maria", resolve())).await.unwrap().into_inner();
    let head = server.log.head();
    // Resolving again would break a rule; the retry is recognised instead.
    let retry = c.resolve(by("maria", resolve())).await.unwrap().into_inner();
    assert!(retry.deduplicated);
    assert_eq!((retry.first_position, retry.last_position), (first.first_position, first.last_position));
    assert_eq!(server.log.head(), head);
    // The same request id from someone else is another request.
    let other = c.resolve(by("omar", resolve())).await.unwrap_err();
    assert_eq!(other.code(), Code::FailedPrecondition);
    assert!(other.message().contains("resolve.already_resolved"), "{}", other.message());

    // Reports too: the retry returns the same incident and opens no new one.
    let report = || v1::ReportRequest { title: "disk full".into(), context: ctx("r-1", None), ..Default::default() };
    let a = c.report(by("monitor", report())).await.unwrap().into_inner();
    let b = c.report(by("monitor", report())).await.unwrap().into_inner();
    assert_eq!(a.incident_id, b.incident_id);
    assert!(b.result.unwrap().deduplicated);
    let list = c.list_incidents(v1::ListIncidentsRequest::default()).await.unwrap().into_inner();
    assert_eq!(list.incidents.len(), 2);
}

#[tokio::test]
async fn two_managers_at_once_lose_no_update_and_a_stale_one_gets_aborted() {
    let server = Server::start(Default::default()).await;
    let mut c = server.client().await;
    let id = sev1(&mut c, "api latency").await;
    // Without expected versions both updates land, one after the other.
    let (mut c1, mut c2) = (c.clone(), c.clone());
    let post = |text: &str| v1::PostUpdateRequest {
        incident_id: id.clone(),
        audience: v1::Audience::Internal as i32,
        text: text.into(),
        context: None,
    };
    let (a, b) =
        tokio::join!(c1.post_update(by("maria", post("from maria"))), c2.post_update(by("omar", post("from omar"))));
    a.unwrap();
    b.unwrap();
    let history = c.get_history(v1::GetHistoryRequest { incident_id: id.clone() }).await.unwrap().into_inner().entries;
    assert_eq!(history.iter().filter(|e| e.kind == "incident.status_update_posted.v1").count(), 2);

    // Both based on version 4: exactly one wins, the other is told the current version.
    let assign = |who: &str| v1::AssignCommanderRequest {
        incident_id: id.clone(),
        commander: who.into(),
        context: ctx("", Some(4)),
    };
    let (a, b) = tokio::join!(
        c1.assign_commander(by("maria", assign("maria"))),
        c2.assign_commander(by("omar", assign("omar")))
    );
    let (won, lost) = match (a, b) {
        (Ok(w), Err(l)) | (Err(l), Ok(w)) => (w.into_inner(), l),
        (a, b) => panic!("exactly one must win: {a:?} {b:?}"),
    };
    assert_eq!(lost.code(), Code::Aborted);
    assert!(lost.message().contains("is at version 5, not 4"), "{}", lost.message());
    assert_eq!(lost.metadata().get("klaxon-current-version").unwrap(), "5");
    let now = c.get_incident(v1::GetIncidentRequest { incident_id: id.clone() }).await.unwrap().into_inner();
    assert_eq!(now.commander, won.incident.unwrap().commander);
    assert_eq!(now.version, 5);
}

#[tokio::test]
async fn a_report_with_the_dedup_key_of_an_open_incident_is_merged() {
    let server = Server::start(Default::default()).await;
    let mut c = server.client().await;
    let first = report(&mut c, "HighErrorRate", "am:payments/high-error").await;
    let again = c
        .report(by(
            "monitor",
            v1::ReportRequest {
                title: "HighErrorRate".into(),
                dedup_key: "am:payments/high-error".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(again.merged);
    assert_eq!(again.incident_id, first);
    let incident = again.result.unwrap().incident.unwrap();
    assert_eq!(incident.report_count, 2);
    // Once resolved, the same key opens a new incident.
    c.declare(by(
        "maria",
        v1::DeclareRequest { incident_id: first.clone(), severity: Severity::Sev3 as i32, context: None },
    ))
    .await
    .unwrap();
    c.resolve(by("maria", v1::ResolveRequest { incident_id: first.clone(), summary: "ok".into(), context: None }))
        .await
        .unwrap();
    let third = report(&mut c, "HighErrorRate", "am:payments/high-error").await;
    assert_ne!(third, first);
}

#[tokio::test]
async fn list_filters_and_pages() {
    let server = Server::start(Default::default()).await;
    let mut c = server.client().await;
    for n in 0..7 {
        let id = report(&mut c, &format!("issue {n}"), "").await;
        if n % 2 == 0 {
            c.declare(by(
                "maria",
                v1::DeclareRequest { incident_id: id, severity: Severity::Sev2 as i32, context: None },
            ))
            .await
            .unwrap();
        }
    }
    let mut ids = Vec::new();
    let mut token = String::new();
    loop {
        let page = c
            .list_incidents(v1::ListIncidentsRequest { page_size: 3, page_token: token.clone(), ..Default::default() })
            .await
            .unwrap()
            .into_inner();
        assert!(page.incidents.len() <= 3);
        ids.extend(page.incidents.into_iter().map(|i| i.id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(ids, ["INC-7", "INC-6", "INC-5", "INC-4", "INC-3", "INC-2", "INC-1"]);
    let declared = c
        .list_incidents(v1::ListIncidentsRequest {
            statuses: vec![IncidentStatus::Declared as i32],
            severities: vec![Severity::Sev2 as i32],
            service: "payments".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        declared.incidents.iter().map(|i| i.id.as_str()).collect::<Vec<_>>(),
        ["INC-7", "INC-5", "INC-3", "INC-1"]
    );
    let none = c
        .list_incidents(v1::ListIncidentsRequest { service: "search".into(), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert!(none.incidents.is_empty());
}

/// A command answers once its events are durable, with the incident as
/// they leave it, without waiting for the projection to fold them; the
/// next command on the incident decides on that state; and once the
/// projection runs, a query answers exactly what the commands answered.
/// Here the projection does not run at all until the end: a command that
/// waited for it would fail with `Unavailable` after `projection_wait_ms`.
#[tokio::test]
async fn a_command_answers_once_durable_without_waiting_for_the_projection() {
    use klaxon_domain::ids::{ActorId, Audience, ReportSource, Severity};
    use klaxon_domain::incident::{Command, Status};
    use klaxon_intake::{CommandContext, Intake, Options};
    use klaxon_log::{Log, StreamVersion};
    use tokio_util::sync::CancellationToken;

    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), klaxon_log::Options::default()).unwrap();
    let options = Options { projection_wait_ms: 100, ..Options::default() };
    let intake = Intake::new(log.clone(), options, klaxon_reactor::system_clock());
    let handle = intake.handle();
    let maria = CommandContext::by(ActorId::new("maria").unwrap());
    let reported = handle
        .report(
            Command::ReportIssue {
                source: ReportSource::Api,
                reporter: ActorId::new("monitor").unwrap(),
                title: "Checkout fails".into(),
                description: String::new(),
                service: None,
                customers: Vec::new(),
                labels: Default::default(),
                dedup_key: None,
                started_at: None,
            },
            &maria,
        )
        .await
        .unwrap();
    let id = reported.incident;
    let commands = [
        Command::DeclareIncident { severity: Severity::Sev1 },
        Command::AssignCommander { commander: ActorId::new("maria").unwrap() },
        Command::PostUpdate { audience: Audience::Executive, text: "Rolling back.".into() },
        Command::Mitigate { summary: "rolled back".into() },
        Command::Resolve { summary: "fixed".into() },
        Command::ValidateResolution { note: "checked".into() },
    ];
    let mut outcomes = vec![reported.outcome];
    for command in commands {
        outcomes.push(handle.execute(id, command, &maria).await.unwrap());
    }
    for outcome in &outcomes {
        // Durable before answered: the log holds the last event written,
        // and the incident's version is the stream's at that event.
        let record = log.read_one(outcome.last).unwrap();
        assert_eq!(record.version, StreamVersion(outcome.incident.version()));
        assert!(!outcome.deduplicated);
    }
    let last = outcomes.last().unwrap().incident.clone();
    assert_eq!(last.status(), Status::Closed);
    assert_eq!(last.version(), 7);

    // The projection starts now; a query waits for the log head, so it sees
    // every write, folded from the log: the same incident the commands
    // answered with.
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(intake.run(shutdown.clone()));
    assert_eq!(handle.get(id).await.unwrap(), last);
    assert_eq!(handle.projection().await.unwrap().get(id), Some(&last));
    for outcome in &outcomes {
        let at = handle.incident_at(id, StreamVersion(outcome.incident.version())).await.unwrap();
        assert_eq!(at.as_ref(), Some(&outcome.incident), "the answer at version {}", outcome.incident.version());
    }
    shutdown.cancel();
    running.await.unwrap().unwrap();
}
