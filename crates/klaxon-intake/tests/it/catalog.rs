//! Reports and declarations record the team and tier the service catalog
//! in force gives the incident's service; a catalog replaced through the
//! live view applies to the next command and leaves recorded events as
//! they were.

use std::sync::Arc;

use klaxon_domain::catalog::{Catalogued, ServiceCatalog, ServiceCatalogConfig, ServiceConfig, Tier};
use klaxon_domain::ids::{ActorId, ReportSource, ServiceName, Severity};
use klaxon_domain::incident::{Change, Command, IncidentEvent};
use klaxon_intake::{CommandContext, Intake};
use klaxon_log::{Log, Position};
use klaxon_reactor::Live;
use tokio_util::sync::CancellationToken;

fn catalog(team: &str, tier: i64) -> Arc<ServiceCatalog> {
    let checkout = ServiceConfig {
        name: "checkout".into(),
        team: team.into(),
        tier,
        runbook: Some(format!("https://runbooks.example/{team}")),
        public_name: None,
        escalation_policy: team.into(),
    };
    Arc::new(ServiceCatalogConfig(vec![checkout]).validate("services").unwrap())
}

fn report(service: &str) -> Command {
    Command::ReportIssue {
        source: ReportSource::Api,
        reporter: ActorId::new("monitor").unwrap(),
        title: "Checkout fails".into(),
        description: String::new(),
        service: Some(ServiceName::new(service).unwrap()),
        customers: vec![],
        labels: Default::default(),
        dedup_key: None,
        started_at: None,
    }
}

/// What each report and declaration in the log recorded, in log order.
fn recorded(log: &Log) -> Vec<(String, Option<Catalogued>)> {
    let records = log.read_all(Position(1), 1_000).unwrap();
    let events = records.iter().map(|r| IncidentEvent::from_json(r.kind.as_str(), r.data.as_str()).unwrap());
    events
        .filter_map(|e| match e.change {
            Change::Reported(r) => Some((format!("{} reported", e.incident), r.catalogued)),
            Change::Declared(d) => Some((format!("{} declared", e.incident), d.catalogued)),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn reports_and_declarations_record_the_catalog_in_force_when_they_are_decided() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), klaxon_log::Options::default()).unwrap();
    let live = Live::new(catalog("payments", 3));
    let intake =
        Intake::new(log.clone(), Default::default(), klaxon_reactor::system_clock()).with_live_catalog(live.clone());
    let handle = intake.handle();
    let stop = CancellationToken::new();
    let running = tokio::spawn(intake.run(stop.clone()));
    let by = CommandContext::by(ActorId::new("maria").unwrap());

    let first = handle.report(report("checkout"), &by).await.unwrap().incident;
    let uncatalogued = handle.report(report("ledger"), &by).await.unwrap().incident;
    live.set(catalog("storefront", 1));
    let second = handle.report(report("checkout"), &by).await.unwrap();
    assert_eq!(second.outcome.incident.team(&ServiceCatalog::default()), Some("storefront"));
    handle.execute(first, Command::DeclareIncident { severity: Severity::Sev2 }, &by).await.unwrap();
    // The runbook shown is the catalog's of the moment.
    let shown = handle.with_runbook(klaxon_proto::v1::Incident { service: "checkout".into(), ..Default::default() });
    assert_eq!(shown.runbook, "https://runbooks.example/storefront");

    let payments = Some(Catalogued { team: "payments".into(), tier: Tier::LEAST_CRITICAL });
    let storefront = Some(Catalogued { team: "storefront".into(), tier: Tier::MOST_CRITICAL });
    assert_eq!(
        recorded(&log),
        [
            (format!("{first} reported"), payments),
            (format!("{uncatalogued} reported"), None),
            (format!("{} reported", second.incident), storefront.clone()),
            (format!("{first} declared"), storefront),
        ]
    );
    stop.cancel();
    running.await.unwrap().unwrap();
}
