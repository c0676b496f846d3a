//! The distributed topology as real processes: `nats-server`, `klaxond
//! serve log|intake|severity|paging|notifier|review|gateway`, the real CLI
//! through the gateway, a real webhook receiver for pages.
//!
//! What holds: the same scenario gives the same state as the embedded
//! topology; every projection equals a from-scratch rebuild of the log
//! (`klaxond up` on a copy of the log server's folder) after NATS, a
//! service or the log server was killed; no page is lost or sent twice as
//! a new page; no acknowledged append is lost.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use klaxon_tests::cluster::Cluster;
use klaxon_tests::config::{Paged, SECRET_ENV};
use klaxon_tests::receiver::Receiver;
use klaxon_tests::{Klaxond, Lines, klaxon, klaxon_json, klaxon_ok};
use serde_json::Value;

pub(crate) struct Setup {
    /// Runs the receiver.
    _runtime: tokio::runtime::Runtime,
    pub(crate) receiver: Receiver,
    pub(crate) secret: String,
    pub(crate) dir: tempfile::TempDir,
    pub(crate) config: std::path::PathBuf,
}

/// Level 1 pages the on-call schedule (ana) and escalates to carl after
/// `escalate_after` seconds; executives are told through the same webhook.
fn setup(escalate_after: u64) -> Setup {
    setup_with(escalate_after, "")
}

/// [`setup`] with `extra` TOML in the configuration.
pub(crate) fn setup_with(escalate_after: u64, extra: &str) -> Setup {
    let Paged { runtime, receiver, secret, dir, config } = Paged::start(escalate_after, true, extra);
    Setup { _runtime: runtime, receiver, secret, dir, config }
}

impl Setup {
    fn runtime(&self) -> &tokio::runtime::Runtime {
        &self._runtime
    }

    fn cluster(&self) -> Cluster {
        Cluster::start(self.dir.path(), &self.config, &[(SECRET_ENV, &self.secret)])
    }

    fn config_arg(&self) -> String {
        self.config.display().to_string()
    }

    /// Pages the receiver got, by idempotency key: one key per page.
    pub(crate) fn pages_received(&self) -> BTreeMap<String, usize> {
        let mut keys = BTreeMap::new();
        let pages = self.receiver.requests().into_iter().filter(|r| r.status < 300 && r.body["kind"] == "page");
        for r in pages {
            assert!(r.signature_ok, "every delivery is signed");
            *keys.entry(r.idempotency_key).or_insert(0) += 1;
        }
        keys
    }

    /// Waits (at most `limit`) until the receiver has accepted `count`
    /// distinct pages.
    fn wait_pages(&self, count: usize, limit: Duration) {
        wait(limit, &format!("{count} pages delivered"), || self.pages_received().len() >= count);
    }
}

pub(crate) fn wait(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "not within {limit:?}: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Reports a Sev-1 on payments; returns its id.
pub(crate) fn report(url: &str, title: &str) -> String {
    let out = klaxon_ok(
        url,
        "monitor",
        &["report", "--title", title, "--service", "payments", "--customer", "acme", "--customer", "globex"],
    );
    out.trim().to_owned()
}

/// Runs the CLI until it succeeds (at most `limit`): a service that was just
/// restarted may still be catching up.
pub(crate) fn eventually_ok(url: &str, actor: &str, args: &[&str], limit: Duration) -> String {
    eventually(url, actor, args, limit, |_| true)
}

/// Runs the CLI until it succeeds with an output that `accept`s (at most
/// `limit`).
pub(crate) fn eventually(
    url: &str,
    actor: &str,
    args: &[&str],
    limit: Duration,
    accept: impl Fn(&str) -> bool,
) -> String {
    let deadline = Instant::now() + limit;
    loop {
        let out = klaxon(url, actor, args);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.success() && accept(&text) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "klaxon {args:?} still fails after {limit:?}: {}{text}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The full Sev-1: report -> severity -> page -> ack -> executive feed ->
/// resolve -> review. Returns the incident id.
fn full_sev1(setup: &Setup, url: &str) -> String {
    full_sev1_with(setup, url, &mut |_| {})
}

/// Where [`full_sev1_with`] lets a test break something.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    /// The page was delivered.
    Paged,
    /// The page was acknowledged.
    Acknowledged,
    /// The executive update went out.
    Updated,
    /// The incident was resolved.
    Resolved,
}

/// [`full_sev1`], calling `faults` after each [`Step`].
fn full_sev1_with(setup: &Setup, url: &str, faults: &mut dyn FnMut(Step)) -> String {
    let id = report(url, "Checkout fails");
    setup.wait_pages(1, Duration::from_secs(30));
    faults(Step::Paged);
    let page = format!("{id}-P1");
    eventually_ok(url, "ana", &["ack", &page], Duration::from_secs(20));
    faults(Step::Acknowledged);

    // An executive's feed: the open incident first, then a live update.
    let watch = Lines::start(url, "ceo", &["watch", "--min-severity", "1"]);
    let first = watch.next(Duration::from_secs(20)).expect("the feed's snapshot");
    assert_eq!(first["incident_id"], id.as_str(), "{first}");
    klaxon_ok(url, "maria", &["declare", &id, "--severity", "1"]);
    klaxon_ok(url, "maria", &["update", &id, "Rolled back; watching error rates", "--audience", "executive"]);
    let live = watch.find(Duration::from_secs(20), |line| line.to_string().contains("Rolled back"));
    assert!(live.is_some(), "the update reaches the executive feed");
    drop(watch);
    faults(Step::Updated);

    klaxon_ok(url, "maria", &["assign", &id, "maria"]);
    klaxon_ok(url, "maria", &["mitigate", &id, "--summary", "rolled back"]);
    klaxon_ok(url, "maria", &["resolve", &id, "--summary", "bad config reverted"]);
    faults(Step::Resolved);
    eventually_ok(url, "rita", &["review", "summary", &id, "A config push broke checkout."], Duration::from_secs(20));
    klaxon_ok(url, "rita", &["review", "action", "add", &id, "Canary config pushes"]);
    klaxon_ok(url, "rita", &["review", "publish", &id]);
    id
}

/// What every service's projection says, through the public API: intake
/// (list, show), severity (explain), paging (pages), notifier (the feed's
/// snapshot), review (timeline, metrics, review, trends).
pub(crate) fn snapshot(url: &str, ids: &[String]) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    out.insert("list".into(), klaxon_json(url, "rita", &["list"]));
    for id in ids {
        out.insert(format!("show {id}"), klaxon_json(url, "rita", &["show", id]));
        out.insert(format!("explain {id}"), klaxon_json(url, "rita", &["severity", "explain", id]));
        out.insert(format!("pages {id}"), klaxon_json(url, "rita", &["pages", id]));
        out.insert(format!("timeline {id}"), klaxon_json(url, "rita", &["timeline", id]));
        out.insert(format!("metrics {id}"), klaxon_json(url, "rita", &["metrics", id]));
        let review = klaxon(url, "rita", &["--json", "review", "show", id]);
        if review.status.success() {
            out.insert(format!("review {id}"), serde_json::from_slice(&review.stdout).unwrap());
        }
    }
    out.insert("trends".into(), klaxon_json(url, "rita", &["trends", "--from", "2020-01-01", "--to", "2100-01-01"]));
    let open =
        out["list"]["incidents"].as_array().map_or(0, |l| l.iter().filter(|i| i["status"] != "resolved").count());
    out.insert("feed".into(), feed_snapshot(url, open));
    out
}

/// The executive feed's opening snapshot (the open incidents): a line for
/// each of the `open` incidents the list shows, however long the CLI takes
/// to start and connect (at most 20 s each), then whatever else comes
/// before a quiet 500 ms.
fn feed_snapshot(url: &str, open: usize) -> Value {
    let watch = Lines::start(url, "ceo", &["watch"]);
    let mut lines = Vec::new();
    loop {
        let limit = if lines.len() < open { Duration::from_secs(20) } else { Duration::from_millis(500) };
        let Some(line) = watch.next(limit) else { break };
        lines.push(line);
        assert!(lines.len() < 1000, "a bounded snapshot");
    }
    Value::Array(lines)
}

/// Replaces what differs between two runs of the same scenario (times,
/// durations, random request ids, and global positions: services write
/// concurrently, so their events interleave differently from run to run)
/// so the rest can be compared. Lists of events are compared as sets; the
/// exact order is checked against the rebuild of the same log.
fn normalize(value: &Value) -> Value {
    match value {
        Value::String(s) if chrono_like(s) => Value::String("<time>".into()),
        Value::String(s) if uuid_like(s) => Value::String("<uuid>".into()),
        Value::Array(items) if items.iter().all(|i| i.get("kind").is_some()) && !items.is_empty() => {
            let mut items: Vec<Value> = items.iter().map(normalize).collect();
            items.sort_by_key(|i| i.to_string());
            Value::Array(items)
        }
        Value::Array(items) => Value::Array(items.iter().map(normalize).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let timing = k.contains("time_to")
                        || k.ends_with("_seconds")
                        || k.ends_with("_ms")
                        || k == "at"
                        || k == "position";
                    let v = if timing && (v.is_number() || v.is_string()) {
                        Value::String("<t>".into())
                    } else {
                        normalize(v)
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        other => other.clone(),
    }
}

fn chrono_like(s: &str) -> bool {
    s.len() >= 20 && s.as_bytes().get(4) == Some(&b'-') && s.as_bytes().get(10) == Some(&b'T')
}

fn uuid_like(s: &str) -> bool {
    s.len() == 36 && s.chars().filter(|c| *c == '-').count() == 4
}

/// A `klaxond up` on a copy of the log server's folder: every projection
/// rebuilt from scratch from the same log.
pub(crate) fn rebuilt_snapshot(setup: &Setup, data_dir: &Path, ids: &[String]) -> BTreeMap<String, Value> {
    let copy = setup.dir.path().join(format!("rebuild-{}", ids.len()));
    copy_dir(data_dir, &copy);
    let config = setup.config_arg();
    let embedded =
        Klaxond::start_with_env(&copy, &["--config", config.as_str()], &[(SECRET_ENV, setup.secret.as_str())]);
    let snapshot = snapshot(&embedded.url, ids);
    assert!(embedded.stop().success());
    snapshot
}

pub(crate) fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

pub(crate) fn assert_same(left: &BTreeMap<String, Value>, right: &BTreeMap<String, Value>, what: &str) {
    assert_eq!(left.keys().collect::<Vec<_>>(), right.keys().collect::<Vec<_>>(), "{what}: the same queries answered");
    for (key, value) in left {
        assert_eq!(value, &right[key], "{what}: `{key}` differs");
    }
}

/// Every page in the log was delivered, and nothing else: a delivery's
/// idempotency key is its page id, so a page decided twice would show up
/// as an extra page here or in the log.
fn assert_pages_delivered_once(setup: &Setup, snapshot: &BTreeMap<String, Value>) {
    let mut in_log = BTreeSet::new();
    for (key, pages) in snapshot.iter().filter(|(k, _)| k.starts_with("pages ")) {
        for page in pages["pages"].as_array().unwrap_or_else(|| panic!("{key}: {pages}")) {
            in_log.insert(page["page_id"].as_str().unwrap().to_owned());
        }
    }
    let received: BTreeSet<String> = setup.pages_received().into_keys().collect();
    assert_eq!(received, in_log, "the pages delivered are the pages in the log");
}

#[test]
fn the_full_sev1_gives_the_same_state_in_both_topologies_and_a_rebuild() {
    let embedded_setup = setup(600);
    let embedded = Klaxond::start_with_env(
        &embedded_setup.dir.path().join("data"),
        &["--config", embedded_setup.config_arg().as_str()],
        &[(SECRET_ENV, embedded_setup.secret.as_str())],
    );
    let id = full_sev1(&embedded_setup, &embedded.url);
    let embedded_state = snapshot(&embedded.url, std::slice::from_ref(&id));
    assert!(embedded.stop().success());

    let setup = setup(600);
    let mut cluster = setup.cluster();
    let distributed_id = full_sev1(&setup, &cluster.url);
    assert_eq!(distributed_id, id);
    let distributed_state = snapshot(&cluster.url, std::slice::from_ref(&id));
    assert!(cluster.all_running().is_empty(), "no process died: {:?}", cluster.all_running());

    let norm = |s: &BTreeMap<String, Value>| s.iter().map(|(k, v)| (k.clone(), normalize(v))).collect();
    assert_same(&norm(&embedded_state), &norm(&distributed_state), "embedded vs distributed");
    assert!(
        distributed_state[&format!("timeline {id}")].to_string().contains("review"),
        "the review is on the timeline"
    );
    assert_pages_delivered_once(&setup, &distributed_state);
    // Each process exposes what it runs: paging its counts, the log server
    // its appends, every service its lag (0 once settled).
    let paging = klaxon_tests::metrics::scrape(&cluster.metrics_address("paging"));
    assert_eq!(paging["klaxon_pages_delivered_total"], 1.0, "{paging:?}");
    assert_eq!(paging["klaxon_pages_acknowledged_total"], 1.0, "{paging:?}");
    let log = klaxon_tests::metrics::scrape(&cluster.metrics_address("log"));
    assert!(log["klaxon_log_append_duration_seconds_count"] >= log["klaxon_log_head"], "{log:?}");
    for service in ["intake", "severity", "paging", "notifier", "review"] {
        let key = format!("klaxon_consumer_lag_records{{service=\"{service}\"}}");
        wait(Duration::from_secs(10), &format!("{service} has folded the whole log"), || {
            klaxon_tests::metrics::scrape(&cluster.metrics_address(service)).get(&key) == Some(&0.0)
        });
    }

    let data_dir = cluster.data_dir.clone();
    cluster.stop();
    assert_same(&distributed_state, &rebuilt_snapshot(&setup, &data_dir, &[id]), "distributed vs rebuild");
}

#[test]
fn killing_nats_three_times_mid_scenario_loses_and_repeats_no_page() {
    // Round 1 and 3: NATS killed and restarted with its store; round 2: with
    // its store deleted. Between kill and restart the scenario goes on.
    let setup = setup(600);
    let mut cluster = setup.cluster();
    let mut ids = Vec::new();
    for round in 1..=3 {
        let id = report(&cluster.url, &format!("Outage {round}"));
        // NATS dies right after the report, before or while the page goes out.
        cluster.nats.kill();
        klaxon_ok(&cluster.url, "maria", &["update", &id, &format!("Round {round}: investigating")]);
        if let Some(previous) = ids.last() {
            eventually_ok(&cluster.url, "ana", &["ack", &format!("{previous}-P1")], Duration::from_secs(20));
        }
        let more = report(&cluster.url, &format!("Outage {round} b"));
        std::thread::sleep(Duration::from_millis(300));
        if round == 2 {
            // This time NATS comes back without its data, as after a machine
            // crash within its 60 s sync interval.
            std::fs::remove_dir_all(setup.dir.path().join("nats")).unwrap();
        }
        cluster.nats.start_again();
        ids.push(id);
        ids.push(more);
    }
    // Every incident pages exactly once, through the outages.
    setup.wait_pages(ids.len(), Duration::from_secs(60));
    for id in &ids {
        let page = format!("{id}-P1");
        eventually(&cluster.url, "rita", &["--json", "pages", id], Duration::from_secs(20), |out| out.contains(&page));
    }
    let state = converged(&cluster, &ids);
    assert!(cluster.all_running().is_empty(), "no process died: {:?}", cluster.all_running());
    assert_pages_delivered_once(&setup, &state);
    let data_dir = cluster.data_dir.clone();
    cluster.stop();
    assert_same(&state, &rebuilt_snapshot(&setup, &data_dir, &ids), "after NATS outages vs rebuild");
}

/// The snapshot once every service has processed the whole log (the
/// barrier: services catch up asynchronously).
fn converged(cluster: &Cluster, ids: &[String]) -> BTreeMap<String, Value> {
    let services: Vec<String> =
        ["intake", "severity", "paging", "notifier", "review"].iter().map(|r| cluster.metrics_address(r)).collect();
    let services: Vec<&str> = services.iter().map(String::as_str).collect();
    klaxon_tests::metrics::settle(&cluster.metrics_address("log"), &services);
    snapshot(&cluster.url, ids)
}

#[test]
fn services_killed_with_sigkill_resume_from_their_checkpoints_applying_nothing_twice() {
    // Level 1 escalates after 3 s: the escalation falls due while paging is dead.
    let setup = setup(3);
    let mut cluster = setup.cluster();
    let first = report(&cluster.url, "Before the kills");
    setup.wait_pages(1, Duration::from_secs(30));

    // The evaluator dies; reports made meanwhile are assessed once it is back.
    cluster.kill("severity");
    cluster.kill("paging");
    let during = report(&cluster.url, "While severity is down");
    std::thread::sleep(Duration::from_secs(4)); // INC-1's escalation is now due
    cluster.restart("severity");
    cluster.restart("paging");

    // INC-1 escalated to carl once; INC-2 was assessed and paged once, and
    // escalated to carl once 3 s later (nobody acknowledges it). Both wait
    // at carl's level (600 s) then: no timer falls due while the state is
    // read, nor in the rebuild below, so both read the same log.
    setup.wait_pages(4, Duration::from_secs(30));
    let ids = vec![first.clone(), during.clone()];
    let state = converged(&cluster, &ids);
    for id in &ids {
        let timeline = &state[&format!("timeline {id}")];
        let assessments = timeline.to_string().matches("assessed SEV1").count();
        assert_eq!(assessments, 1, "{id} assessed exactly once: {timeline}");
    }
    let pages = |id: &str| state[&format!("pages {id}")]["pages"].as_array().unwrap().len();
    assert_eq!(pages(&first), 2, "INC-1: the page and one escalation: {}", state[&format!("pages {first}")]);
    assert_eq!(pages(&during), 2, "INC-2: the page and one escalation: {}", state[&format!("pages {during}")]);
    assert_pages_delivered_once(&setup, &state);
    // The evaluator's checkpoint moved past everything it applied.
    let data_dir = cluster.data_dir.clone();
    cluster.stop();
    assert_same(&state, &rebuilt_snapshot(&setup, &data_dir, &ids), "after SIGKILLs vs rebuild");
}

#[test]
fn the_log_server_killed_under_load_keeps_every_acknowledged_report() {
    let setup = setup(600);
    let mut cluster = setup.cluster();
    let url = cluster.url.clone();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let stop = stop.clone();
        let url = url.clone();
        std::thread::spawn(move || {
            // (incident id, when it was acknowledged)
            let mut acknowledged = Vec::new();
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && n < 1000 {
                n += 1;
                let title = format!("load {n}");
                let out = klaxon(&url, "monitor", &["report", "--title", &title, "--dedup-key", &format!("load-{n}")]);
                if out.status.success() {
                    acknowledged.push((String::from_utf8(out.stdout).unwrap().trim().to_owned(), Instant::now()));
                }
            }
            acknowledged
        })
    };
    std::thread::sleep(Duration::from_millis(1500));
    cluster.kill("log");
    let killed = Instant::now();
    std::thread::sleep(Duration::from_millis(500));
    cluster.restart("log");
    let restarted = Instant::now();
    std::thread::sleep(Duration::from_millis(2000));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let acknowledged = load.join().unwrap();
    assert!(acknowledged.iter().any(|(_, at)| *at < killed), "reports were acknowledged before the kill");
    assert!(acknowledged.iter().any(|(_, at)| *at > restarted), "and after the restart");
    let acknowledged: Vec<String> = acknowledged.into_iter().map(|(id, _)| id).collect();

    // Every acknowledged report is an incident, through the restarted log server.
    let listed = eventually_ok(&url, "rita", &["--json", "list", "--all-pages"], Duration::from_secs(30));
    let listed: Value = serde_json::from_str(&listed).unwrap();
    let known: BTreeSet<&str> =
        listed["incidents"].as_array().unwrap().iter().map(|i| i["id"].as_str().unwrap()).collect();
    for id in &acknowledged {
        assert!(known.contains(id.as_str()), "acknowledged {id} is missing");
    }
    // The services resumed: a new Sev-1 is assessed and paged.
    let after = report(&url, "After the restart");
    let page = format!("{after}-P1");
    eventually(&url, "rita", &["--json", "pages", &after], Duration::from_secs(30), |out| out.contains(&page));
    assert!(cluster.all_running().is_empty(), "no process died: {:?}", cluster.all_running());
    cluster.stop();
}

#[test]
fn a_trace_context_travels_from_the_report_through_every_service_and_nats() {
    const TRACE: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let setup = setup(600);
    let cluster = setup.cluster();
    // A report with W3C trace context in its gRPC metadata, through the gateway.
    setup.runtime().block_on(async {
        let mut client =
            klaxon_proto::v1::incidents_client::IncidentsClient::connect(cluster.url.clone()).await.unwrap();
        let mut request = tonic::Request::new(klaxon_proto::v1::ReportRequest {
            title: "Traced outage".into(),
            service: "payments".into(),
            customers: vec!["acme".into(), "globex".into()],
            ..Default::default()
        });
        request.metadata_mut().insert("traceparent", TRACE.parse().unwrap());
        request.metadata_mut().insert("authorization", klaxon_tests::auth::bearer("monitor"));
        client.report(request).await.unwrap();
    });
    setup.wait_pages(1, Duration::from_secs(30));
    // Executives are told of the Sev-1 (a notifier event), by webhook.
    wait(Duration::from_secs(20), "executives notified", || {
        setup.receiver.requests().iter().any(|r| r.status < 300 && r.body["kind"] != "page")
    });
    let nats_url = cluster.nats.url.clone();
    let data_dir = cluster.data_dir.clone();
    // NATS headers carry the trace of every record of the incident.
    // (Records appended after this scan, such as a delivery's outcome, are
    // compared only up to the stream's last sequence read here.)
    let (traced_in_nats, last_in_nats) = setup.runtime().block_on(async {
        let js = async_nats::jetstream::new(async_nats::connect(&nats_url).await.unwrap());
        let mut stream = js.get_stream("KLAXON").await.unwrap();
        let last = stream.info().await.unwrap().state.last_sequence;
        let mut traced = 0;
        for seq in 1..=last {
            let message = stream.get_raw_message(seq).await.unwrap();
            if message.headers.get("traceparent").map(|v| v.as_str()) == Some(TRACE) {
                traced += 1;
            }
        }
        (traced, last)
    });
    cluster.stop();

    // Event metadata: the report, the assessment, the page's events and the
    // notifier's all carry the report's trace. No process exports spans
    // here, so each passes the client's traceparent on unchanged (with an
    // OTLP endpoint each hop carries its own span instead: see otlp.rs).
    let log = klaxon_log::Log::open(&data_dir, Default::default()).unwrap();
    let records = log.read_all(klaxon_log::Position(1), 10_000).unwrap();
    let mut kinds = BTreeSet::new();
    for record in &records {
        if record.metadata.traceparent.as_deref() == Some(TRACE) {
            kinds.insert(record.kind.as_str().split('.').next().unwrap().to_owned());
        }
    }
    for family in ["incident", "page", "notify"] {
        assert!(kinds.contains(family), "{family} events carry the trace; traced: {kinds:?}");
    }
    let assessed = records.iter().find(|r| r.kind.as_str() == "incident.severity_assessed.v1").expect("an assessment");
    assert_eq!(assessed.metadata.traceparent.as_deref(), Some(TRACE), "the evaluator's reaction joins the trace");
    let traced_in_log = records
        .iter()
        .filter(|r| r.position.0 <= last_in_nats && r.metadata.traceparent.as_deref() == Some(TRACE))
        .count();
    assert!(traced_in_log > 0, "records up to NATS's last sequence carry the trace");
    assert_eq!(traced_in_nats, traced_in_log, "NATS headers carry the trace of every traced record");
}

#[test]
fn every_process_reports_its_health_and_the_gateway_mirrors_its_services() {
    use tonic_health::pb::health_check_response::ServingStatus;
    let setup = setup(600);
    let mut cluster = setup.cluster();
    let check = |url: String, service: &'static str| -> Option<i32> {
        setup.runtime().block_on(async move {
            let channel = tonic::transport::Endpoint::from_shared(url).ok()?.connect().await.ok()?;
            let mut client = tonic_health::pb::health_client::HealthClient::new(channel);
            let request = tonic_health::pb::HealthCheckRequest { service: service.into() };
            client.check(request).await.ok().map(|r| r.into_inner().status)
        })
    };
    let serving = Some(ServingStatus::Serving as i32);
    let owned = [
        ("log", "klaxon.v1.EventLog"),
        ("intake", "klaxon.v1.Incidents"),
        ("intake", "klaxon.v1.Bridge"),
        ("severity", "klaxon.v1.SeverityEvaluator"),
        ("paging", "klaxon.v1.Paging"),
        ("notifier", "klaxon.v1.StatusFeed"),
        ("review", "klaxon.v1.Review"),
    ];
    for (role, service) in owned {
        assert_eq!(check(format!("http://{}", cluster.address(role)), service), serving, "{role} serves {service}");
    }
    for (_, service) in &owned[1..] {
        let mut status = None;
        wait(Duration::from_secs(10), &format!("the gateway reports {service} serving"), || {
            status = check(cluster.url.clone(), service);
            status == serving
        });
    }
    // Paging dies: the gateway says so within seconds; the others stay up.
    cluster.kill("paging");
    wait(Duration::from_secs(10), "the gateway reports paging not serving", || {
        check(cluster.url.clone(), "klaxon.v1.Paging") == Some(ServingStatus::NotServing as i32)
    });
    assert_eq!(check(cluster.url.clone(), "klaxon.v1.Incidents"), serving);
    let refused = klaxon(&cluster.url, "ana", &["ack", "INC-1-P1"]);
    assert_eq!(refused.status.code(), Some(4), "unavailable through the gateway: {refused:?}");
    assert!(String::from_utf8_lossy(&refused.stderr).contains("paging"), "{refused:?}");
    cluster.restart("paging");
    wait(Duration::from_secs(10), "the gateway reports paging serving again", || {
        check(cluster.url.clone(), "klaxon.v1.Paging") == serving
    });
    cluster.stop();
}

/// The full Sev-1 through the gateway on a three-node log group, with the
/// log leader killed (SIGKILL) once the page is out and NATS killed once
/// the page is acknowledged: the same state as the embedded topology
/// without faults, every page delivered once, every projection equal to a
/// rebuild of the log.
#[test]
fn the_full_sev1_on_a_log_group_with_its_leader_and_nats_killed_ends_as_without_faults() {
    let embedded_setup = setup(600);
    let embedded = Klaxond::start_with_env(
        &embedded_setup.dir.path().join("data"),
        &["--config", embedded_setup.config_arg().as_str()],
        &[(SECRET_ENV, embedded_setup.secret.as_str())],
    );
    let id = full_sev1(&embedded_setup, &embedded.url);
    let embedded_state = snapshot(&embedded.url, std::slice::from_ref(&id));
    assert!(embedded.stop().success());

    let setup = setup(600);
    let options = klaxon_tests::group::GroupOptions::default();
    let mut cluster =
        Cluster::start_with_group(setup.dir.path(), &setup.config, &[(SECRET_ENV, &setup.secret)], &options);
    let url = cluster.url.clone();
    let mut killed = None;
    let distributed_id = full_sev1_with(&setup, &url, &mut |step| match step {
        Step::Paged => {
            let group = cluster.group();
            let leader = group.leader(Duration::from_secs(30));
            group.kill(leader);
            killed = Some(leader);
        }
        Step::Acknowledged => cluster.nats.kill(),
        Step::Updated => cluster.nats.start_again(),
        Step::Resolved => cluster.group().restart(killed.expect("the leader was killed")),
    });
    assert_eq!(distributed_id, id);
    let state = converged(&cluster, std::slice::from_ref(&id));
    assert!(cluster.all_running().is_empty(), "no process died: {:?}", cluster.all_running());
    let norm = |s: &BTreeMap<String, Value>| s.iter().map(|(k, v)| (k.clone(), normalize(v))).collect();
    assert_same(&norm(&embedded_state), &norm(&state), "embedded without faults vs a log group with faults");
    assert_pages_delivered_once(&setup, &state);

    // Every node holds the whole log; a rebuild from node 1's copy agrees.
    let group = cluster.group();
    let leader = group.leader(Duration::from_secs(30));
    let head = group.status(leader).expect("the leader answers").head;
    group.converged(head, Duration::from_secs(30));
    let data_dir = cluster.data_dir.clone();
    cluster.stop();
    assert_same(&state, &rebuilt_snapshot(&setup, &data_dir, &[id]), "a log group with faults vs rebuild");
}
