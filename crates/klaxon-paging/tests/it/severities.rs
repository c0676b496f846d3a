//! `[paging].severities` changed by a recorded configuration
//! (`config.applied.v1` in stream `config`, as a SIGHUP reload writes it):
//! an open incident of a severity that pages now starts paging, once and
//! also after a rebuild from the log; one of a severity that no longer
//! pages stops escalating.

use klaxon_domain::audit;

use super::*;

/// Records a configuration paging at `severities` after `previous`, as
/// `klaxond` does at a reload; returns its hash.
async fn record_config(log: &Log, previous: Option<&str>, severities: &[&str]) -> String {
    let hash = format!("hash-{}", severities.join("-"));
    let config = serde_json::json!({
        "paging": { "severities": severities, "duty_manager_schedule": "duty-managers", "default_policy": "payments" },
    });
    record_applied(log, previous, &hash, config).await;
    hash
}

/// The pager's paging state of `id`.
fn state_of(w: &World, id: IncidentId) -> klaxon_domain::paging::IncidentPaging {
    w.pager.reactor().read(|s| s.incidents().get(&id).cloned()).expect("the incident is held")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorded_configuration_that_adds_a_severity_pages_its_open_incidents_once_and_one_that_removes_it_stops_them()
 {
    let receiver = Receiver::start(SECRET).await;
    // The configuration at hand pages Sev1 and Sev2 (the default), and
    // stays so: what pages is what the log recorded.
    let config = config(&receiver.url);
    let (_dir, mut w) = new_world(&config);
    let started = record_config(&w.log, None, &["sev1", "sev2"]).await;
    let sev3 = w.declared(Severity::Sev3, Some("maria")).await;
    let resolved = w.declared(Severity::Sev3, Some("maria")).await;
    let by = CommandContext::by(ActorId::new("maria").unwrap());
    w.intake.execute(resolved, Command::Resolve { summary: "fixed".into() }, &by).await.unwrap();
    assert_eq!(w.pages(sev3).await, Vec::<String>::new(), "a Sev3 does not page");

    // Sev3 pages from now on: the open Sev3 is paged, once.
    w.clock.advance(TimeDelta::minutes(1));
    let added = record_config(&w.log, Some(&started), &["sev1", "sev2", "sev3"]).await;
    assert_eq!(w.until_pages(sev3, 1).await, ["INC-1-P1 ana severity"]);
    assert_eq!(w.pages(resolved).await, Vec::<String>::new(), "a resolved incident does not page");
    let delivered = receiver.wait_for_delivered(1, Duration::from_secs(10)).await;
    assert_eq!(delivered[0].idempotency_key, "INC-1-P1");
    assert_eq!(delivered[0].body["fields"]["severity"], "SEV3");
    let live = state_of(&w, sev3);
    let recorded =
        w.log.read_all(Position(1), 1000).unwrap().into_iter().rfind(|r| r.kind.as_str() == audit::CONFIG_APPLIED);
    assert_eq!(live.reached_at(), recorded.map(|r| r.recorded_at), "the episode began at the recorded configuration");

    // A rebuild from the log (a new pager, no snapshot) holds the same
    // and pages nobody again.
    let head = w.log.head();
    w.restart_pager().await;
    w.settled().await;
    assert_eq!(state_of(&w, sev3), live, "the rebuild folds the same episode");
    assert_eq!(w.log.head(), head, "the rebuild wrote nothing");

    // Sev3 no longer pages: the chain stops where it is, however long,
    // and the incident's page stream says why, once.
    w.clock.advance(TimeDelta::minutes(1));
    let removed = record_config(&w.log, Some(&added), &["sev1", "sev2"]).await;
    w.settled().await;
    assert!(!state_of(&w, sev3).is_paging());
    w.clock.advance(TimeDelta::minutes(30));
    assert_eq!(w.pages(sev3).await, ["INC-1-P1 ana severity"], "no escalation after the removal");
    let kinds = w.kinds();
    assert!(!kinds.iter().any(|k| k == "page.escalated.v1" || k == "slo.breached.v1"), "{kinds:?}");
    let stops: Vec<serde_json::Value> = w
        .log
        .read_all(Position(1), 1000)
        .unwrap()
        .into_iter()
        .filter(|r| r.kind.as_str() == "page.paging_stopped.v1")
        .map(|r| r.data.parse().unwrap())
        .collect();
    assert_eq!(stops.len(), 1, "{stops:?}");
    assert_eq!((stops[0]["incident"].as_str(), stops[0]["severity"].as_str()), (Some("INC-1"), Some("sev3")));
    assert_eq!(stops[0]["config"].as_str(), Some(removed.as_str()));
    // A rebuild records it no second time.
    let head = w.log.head();
    w.restart_pager().await;
    w.settled().await;
    assert_eq!(w.log.head(), head, "the rebuild wrote nothing");
    // A new Sev3 does not page either.
    let later = w.declared(Severity::Sev3, Some("maria")).await;
    assert_eq!(w.pages(later).await, Vec::<String>::new());
    let delivered: Vec<String> =
        receiver.requests().iter().filter(|r| r.status < 300).map(|r| r.idempotency_key.clone()).collect();
    assert_eq!(delivered, ["INC-1-P1"], "one page delivered in all");
    w.stop.cancel();
}

/// Two paging replicas side by side (claiming their deliveries, as
/// `klaxond serve paging` runs them) fold the same recorded configuration:
/// the open Sev3 is paged once, delivered once, and both hold the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_page_an_open_incident_once_when_a_recorded_configuration_adds_its_severity() {
    let receiver = Receiver::start(SECRET).await;
    let config = config(&receiver.url);
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), Default::default()).unwrap();
    let clock = ManualClock::new(start_time());
    let claims = |name: &str| klaxon_reactor::Claims::new(klaxon_reactor::ReplicaId::new(name).unwrap(), 60_000);
    let live = Live::new(Arc::new(config.clone()));
    let first = Pager::new(log.clone(), live.clone(), Arc::new(clock.clone())).with_claims(claims("paging-a"));
    let w = world(&log, &clock, live.clone(), first);
    let second = Pager::new(log.clone(), live, Arc::new(clock.clone())).with_claims(claims("paging-b"));
    let other = second.handle();
    tokio::spawn(second.run(w.stop.child_token()));

    let started = record_config(&log, None, &["sev1", "sev2"]).await;
    let sev3 = w.declared(Severity::Sev3, Some("maria")).await;
    w.settled().await;
    other.reactor().wait_processed(log.head()).await.unwrap();
    record_config(&log, Some(&started), &["sev1", "sev2", "sev3"]).await;
    assert_eq!(w.until_pages(sev3, 1).await, ["INC-1-P1 ana severity"]);
    receiver.wait_for_delivered(1, Duration::from_secs(10)).await;
    // Both settled at the same head: either replica may have delivered
    // (and recorded it) after the other settled.
    for _ in 0..100 {
        let head = log.head();
        w.pager.reactor().wait_processed(head).await.unwrap();
        other.reactor().wait_processed(head).await.unwrap();
        if log.head() == head {
            break;
        }
    }
    assert_eq!(state_of(&w, sev3), other.reactor().read(|s| s.incidents().get(&sev3).cloned()).unwrap());
    let paged = log.read_all(Position(1), 1000).unwrap();
    let paged = paged.iter().filter(|r| r.kind.as_str() == "page.responder_paged.v1").count();
    assert_eq!(paged, 1, "one page decided by the two replicas");
    let delivered: Vec<String> =
        receiver.requests().iter().filter(|r| r.status < 300).map(|r| r.idempotency_key.clone()).collect();
    assert_eq!(delivered, ["INC-1-P1"], "delivered once");
    w.stop.cancel();
}
