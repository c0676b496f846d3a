//! Projection snapshots with real `klaxond up` processes: after SIGKILL
//! crash cycles under traffic, the services resume from their snapshots,
//! and what they then serve equals what a clean restart from the snapshots
//! saved at the stop serves, and what a rebuild from scratch (snapshots
//! deleted) serves. Finished incidents are evicted at once
//! (`[memory] evict_closed_after = "0s"`), so snapshots, resumes and the
//! rebuild all go through eviction and reading back.

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

/// The position of each service's snapshot file in `data` (0: none yet),
/// read from the file's header as a restart would (a save replaces the file
/// atomically, after its content is durable, so what is read here is what
/// a SIGKILL now would leave).
fn saved(data: &std::path::Path) -> BTreeMap<&'static str, u64> {
    use std::io::Read;
    SERVICES
        .into_iter()
        .map(|service| {
            let path = data.join("snapshots").join(format!("{service}.snap"));
            let mut header = [0u8; 24];
            let position = match std::fs::File::open(&path).and_then(|mut f| f.read_exact(&mut header)) {
                Ok(()) => {
                    assert_eq!(&header[..8], b"KLXSNAP\0", "{} is a snapshot", path.display());
                    u64::from_le_bytes(header[16..24].try_into().unwrap())
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
                Err(e) => panic!("reading {}: {e}", path.display()),
            };
            (service, position)
        })
        .collect()
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
    // What paging and review answer about the first resolved incidents:
    // evicted by now, so read back from the log.
    let listed_resolved = klaxon_json(&server.url, "maria", &["list", "--all-pages", "--status", "resolved"]);
    let resolved: Vec<String> = listed_resolved["incidents"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|i| i["status"] == "resolved")
        .filter_map(|i| i["id"].as_str().map(str::to_owned))
        .take(3)
        .collect();
    let finished: Vec<Value> = resolved
        .iter()
        .map(|id| {
            let pages = klaxon_json(&server.url, "maria", &["pages", id]);
            let metrics = klaxon_json(&server.url, "maria", &["metrics", id]);
            serde_json::json!({ "id": id, "pages": pages, "metrics": metrics })
        })
        .collect();
    let served = serde_json::json!({
        "incidents": listed,
        "resolved": listed_resolved,
        "paging": counts,
        "finished": finished,
    });
    View { head, served, resumed }
}

#[test]
fn crash_cycles_and_a_rebuild_from_scratch_agree_with_the_snapshot_based_restart() {
    let seed =
        klaxon_tests::seed::seed("crash_cycles_and_a_rebuild_from_scratch_agree_with_the_snapshot_based_restart");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    // Small snapshot intervals, so that every service saves many while the
    // traffic runs and the SIGKILLs land between and during saves.
    // Eviction at the first look after an incident is resolved: every
    // snapshot (each looks first) holds evicted incidents.
    let paged = Paged::start(
        600,
        true,
        "[snapshots]\nevery_records = 16\n[memory]\nevict_closed_after = \"0s\"\n[status_page]\npublic_resolved_hours = 0\n",
    );
    let data = paged.dir.path().join("data");
    let (args, env) = (paged.config_args(), paged.env());

    for cycle in 0..3 {
        let server = Klaxond::start_with_env(&data, &args, &env);
        let at_start = saved(&data);
        // After every service has saved a snapshot in this cycle, traffic
        // goes on for a random while more, so that the kill lands between
        // or during later saves.
        let more_ms = rng.random_range(100..600);
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
                        let Ok(reported) = c.report(by("monitor", report)).await else { return acked };
                        acked += 1;
                        // Every third is declared a Sev-3 and resolved:
                        // finished, so evicted at the next look.
                        if n % 3 == 1 {
                            let id = reported.into_inner().incident_id;
                            let severity = v1::Severity::Sev3 as i32;
                            let declare = v1::DeclareRequest { incident_id: id.clone(), severity, context: None };
                            if c.declare(by("maria", declare)).await.is_err() {
                                return acked;
                            }
                            let resolve =
                                v1::ResolveRequest { incident_id: id, summary: "fixed".into(), context: None };
                            if c.resolve(by("maria", resolve)).await.is_err() {
                                return acked;
                            }
                        }
                    }
                    acked
                });
            }
            // Bounded: the writers fail the test sooner if they stop.
            let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
            loop {
                let now = saved(&data);
                if now.iter().all(|(service, at)| *at > at_start[service]) {
                    break;
                }
                assert!(
                    writers.try_join_next().is_none(),
                    "cycle {cycle}: a writer stopped before every service saved a snapshot: {now:?} (seed {seed})"
                );
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "cycle {cycle}: not every service saved a snapshot within 60 s of traffic: \
                     {at_start:?} at the start, {now:?} now (seed {seed})"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            tokio::time::sleep(Duration::from_millis(more_ms)).await;
            // The kill lands during traffic: every writer is still at it.
            assert!(writers.try_join_next().is_none(), "cycle {cycle}: a writer stopped before the kill (seed {seed})");
            klaxon_tests::signal(server.pid(), "KILL");
            println!("cycle {cycle}: snapshots at {at_start:?} at the start, {:?} at the kill", saved(&data));
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
    // while running (each from the one the last kill left), carry out what
    // is owed, and settle.
    let left = saved(&data);
    let server = Klaxond::start_with_env(&data, &args, &env);
    let crashed = view(&server);
    assert_eq!(crashed.resumed, left, "each service resumed from the snapshot the last kill left (seed {seed})");
    let finished = crashed.served["finished"].as_array().map_or(0, Vec::len);
    assert!(finished > 0, "some incidents were resolved, and are read back (seed {seed})");
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
    // The snapshots saved at that stop count evicted incidents (a number,
    // their last field; no list of ids: the log says which they are): what
    // the rebuild below must reach again on its own.
    for service in ["paging", "notifier", "review"] {
        let saved = std::fs::read(data.join("snapshots").join(format!("{service}.snap"))).unwrap();
        let saved = String::from_utf8_lossy(&saved);
        let evicted = saved.rsplit(r#""evicted":"#).next().unwrap_or_default().trim_end_matches('}');
        assert!(
            evicted.parse::<u64>().is_ok_and(|n| n > 0),
            "{service}'s snapshot counts evicted incidents, got {evicted:?} (seed {seed})"
        );
    }

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
