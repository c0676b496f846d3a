//! Projection snapshots with real `klaxond up` processes: after SIGKILL
//! crash cycles under traffic, the services resume from their snapshots,
//! and what they then serve equals what a clean restart from the snapshots
//! saved at the stop serves, and what a rebuild from scratch (snapshots
//! deleted) serves.

use std::collections::BTreeMap;
use std::time::Duration;

use klaxon_proto::v1::{self, incidents_client::IncidentsClient};
use klaxon_tests::config::Paged;
use klaxon_tests::metrics::{scrape, settle};
use klaxon_tests::{Klaxond, klaxon_json};
use rand::{Rng, SeedableRng};
use serde_json::Value;

const SERVICES: [&str; 5] = ["intake", "severity", "paging", "notifier", "review"];

fn by<T>(actor: &str, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert("authorization", klaxon_tests::auth::bearer(actor));
    request
}

/// What the services serve, once settled: every incident as listed, the
/// counts paging folds, and the log head; with each service's snapshot
/// position resumed from.
struct View {
    head: u64,
    served: Value,
    resumed: BTreeMap<&'static str, u64>,
}

fn view(server: &Klaxond) -> View {
    let metrics = server.http_address.clone().expect("the HTTP address");
    let head = settle(&metrics, &[&metrics]);
    let m = scrape(&metrics);
    let counts: BTreeMap<&str, f64> = [
        "klaxon_pages_delivered_total",
        "klaxon_pages_delivery_failed_total",
        "klaxon_pages_acknowledged_total",
        "klaxon_pages_escalated_total",
        "klaxon_slo_breaches_total",
    ]
    .into_iter()
    .map(|name| (name, m[name]))
    .collect();
    let resumed = SERVICES
        .into_iter()
        .map(|s| (s, m[&format!("klaxon_snapshot_resumed_position{{service=\"{s}\"}}")] as u64))
        .collect();
    let listed = klaxon_json(&server.url, "maria", &["list", "--all-pages"]);
    View { head, served: serde_json::json!({ "incidents": listed, "paging": counts }), resumed }
}

#[test]
fn crash_cycles_and_a_rebuild_from_scratch_agree_with_the_snapshot_based_restart() {
    let seed =
        klaxon_tests::seed::seed("crash_cycles_and_a_rebuild_from_scratch_agree_with_the_snapshot_based_restart");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    // Small snapshot intervals, so that every service saves many while the
    // traffic runs and the SIGKILLs land between and during saves.
    let paged = Paged::start(600, true, "[snapshots]\nevery_records = 16\n");
    let data = paged.dir.path().join("data");
    let (args, env) = (paged.config_args(), paged.env());

    for cycle in 0..3 {
        let server = Klaxond::start_with_env(&data, &args, &env);
        let run_ms = rng.random_range(300..900);
        let acked = paged.runtime.block_on(async {
            let c = IncidentsClient::connect(server.url.clone()).await.unwrap();
            let mut writers = tokio::task::JoinSet::new();
            for w in 0..4 {
                let mut c = c.clone();
                writers.spawn(async move {
                    let mut acked = 0;
                    for n in 0.. {
                        // Every third report is a Sev-1 (tier-1 service, two
                        // customers): paged, and told to the executives.
                        let sev1 = n % 3 == 0;
                        let report = v1::ReportRequest {
                            title: format!("alert {cycle}-{w}-{n}"),
                            service: if sev1 { "payments".into() } else { String::new() },
                            customers: if sev1 { vec!["acme".into(), "globex".into()] } else { vec![] },
                            ..Default::default()
                        };
                        if c.report(by("monitor", report)).await.is_err() {
                            return acked;
                        }
                        acked += 1;
                    }
                    acked
                });
            }
            tokio::time::sleep(Duration::from_millis(run_ms)).await;
            klaxon_tests::signal(server.pid(), "KILL");
            let mut acked = 0;
            while let Some(n) = writers.join_next().await {
                acked += n.unwrap();
            }
            acked
        });
        drop(server);
        assert!(acked > 0, "cycle {cycle}: the writers got going (seed {seed})");
    }

    // After the crashes: the services resume from the snapshots they saved
    // while running, carry out what is owed, and settle.
    let server = Klaxond::start_with_env(&data, &args, &env);
    let crashed = view(&server);
    for (service, resumed) in &crashed.resumed {
        assert!(
            *resumed > 0,
            "{service} resumed from a snapshot after the crashes (seed {seed}): {:?}",
            crashed.resumed
        );
    }
    assert!(server.stop().success());

    // A clean restart resumes from the snapshots saved at the stop: nothing
    // left to fold, the same answers, nothing written.
    let server = Klaxond::start_with_env(&data, &args, &env);
    let restarted = view(&server);
    assert!(restarted.resumed.values().all(|r| *r == crashed.head), "{:?} (seed {seed})", restarted.resumed);
    assert_eq!(restarted.head, crashed.head, "seed {seed}");
    assert_eq!(restarted.served, crashed.served, "seed {seed}");
    assert!(server.stop().success());

    // A rebuild from scratch: the snapshots deleted, every service folds the
    // log from position 1 and serves the same.
    std::fs::remove_dir_all(data.join("snapshots")).unwrap();
    let server = Klaxond::start_with_env(&data, &args, &env);
    let rebuilt = view(&server);
    assert!(rebuilt.resumed.values().all(|r| *r == 0), "{:?}", rebuilt.resumed);
    assert_eq!(rebuilt.head, crashed.head, "seed {seed}");
    assert_eq!(rebuilt.served, crashed.served, "seed {seed}");
    assert!(server.stop().success());
}
