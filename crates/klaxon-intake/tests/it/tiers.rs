//! The queue's resolve deadline is tightened by the tier of the incident's
//! customers, as paging's resolve SLO is.

use std::collections::BTreeSet;
use std::sync::Arc;

use chrono::TimeDelta;
use klaxon_domain::ids::{ActorId, ReportSource, Severity};
use klaxon_domain::incident::Command;
use klaxon_domain::oncall::SchedulesConfig;
use klaxon_domain::paging::PagingFileConfig;
use klaxon_domain::queue::Deadline;
use klaxon_intake::{CommandContext, Intake, ListFilter};
use klaxon_log::Log;
use serde_json::json;
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn a_gold_customer_brings_the_resolve_deadline_forward() {
    let schedules: SchedulesConfig = serde_json::from_value(json!([ { "name": "duty", "time_zone": "UTC",
        "layers": [ { "name": "w", "participants": ["maria"], "shift": "7d", "handoff": "00:00", "start": "2026-03-02" } ] } ]))
    .unwrap();
    let schedules = schedules.validate("schedules").unwrap();
    let paging: PagingFileConfig = serde_json::from_value(json!({
        "paging": { "duty_manager_schedule": "duty", "default_policy": "p" },
        "slo": { "sev1": { "resolve_minutes": 240 }, "tier": { "gold": { "resolve_minutes": 60 } } },
        "customers": [ { "name": "acme", "tier": "gold" } ],
        "escalation_policies": [ { "name": "p", "levels": [ { "timeout_minutes": 5, "targets": [ { "person": "ana" } ] } ] } ]
    }))
    .unwrap();
    let paging = Arc::new(paging.validate("", &schedules).unwrap());

    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), klaxon_log::Options::default()).unwrap();
    let intake =
        Intake::new(log, Default::default(), klaxon_reactor::system_clock()).with_queue(Some(paging), BTreeSet::new());
    let handle = intake.handle();
    let stop = CancellationToken::new();
    tokio::spawn(intake.run(stop.clone()));
    let by = CommandContext::by(ActorId::new("maria").unwrap());
    let mut ids = Vec::new();
    for customers in [vec![], vec!["acme".parse().unwrap()]] {
        let report = Command::ReportIssue {
            source: ReportSource::Alertmanager,
            reporter: ActorId::new("monitor").unwrap(),
            title: "Checkout fails".into(),
            description: String::new(),
            service: None,
            customers,
            labels: Default::default(),
            dedup_key: None,
            started_at: None,
        };
        let id = handle.report(report, &by).await.unwrap().incident;
        handle.execute(id, Command::DeclareIncident { severity: Severity::Sev1 }, &by).await.unwrap();
        handle.execute(id, Command::AssignCommander { commander: ActorId::new("maria").unwrap() }, &by).await.unwrap();
        ids.push(id);
    }
    let rows = handle.queue(&ListFilter::default(), 10).await.unwrap();
    let window = |id| {
        let (incident, row) = rows.iter().find(|(i, _)| i.id() == id).unwrap();
        let (deadline, at) = row.next.unwrap();
        assert_eq!(deadline, Deadline::Resolve);
        at - incident.declared_at().unwrap()
    };
    assert_eq!(window(ids[0]), TimeDelta::minutes(240));
    assert_eq!(window(ids[1]), TimeDelta::minutes(60));
    assert_eq!(rows[0].0.id(), ids[1], "the tighter deadline first");
    stop.cancel();
}
