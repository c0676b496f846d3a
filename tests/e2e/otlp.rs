//! OpenTelemetry over OTLP, against a real OTLP trace collector in the test
//! process (`klaxon_tests::otlp`): one Sev-1 is one trace, from intake
//! through severity to paging and the notifier, in `klaxond up` and across
//! the processes of the distributed topology; the events carry the span
//! contexts; an unreachable collector costs nothing but the spans.
//!
//! The tree asserted (see docs/operations.md, "Traces"):
//!
//! ```text
//! intake.report ─┬─ severity.assess ─┬─ paging.page ── paging.deliver
//!                │                   └─ notifier.notify
//!                └─ log.append (distributed only; also below each service span)
//! ```

use std::time::{Duration, Instant};

use klaxon_tests::cluster::Cluster;
use klaxon_tests::config::{Paged, SECRET_ENV};
use klaxon_tests::otlp::{Collector, Span};
use klaxon_tests::receiver::Receiver;
use klaxon_tests::{Klaxond, klaxon_ok};

/// The spans of one Sev-1, one of each at least.
const SEV1_SPANS: [&str; 5] = ["intake.report", "severity.assess", "paging.page", "paging.deliver", "notifier.notify"];
/// How long the exporter may take to deliver spans.
const EXPORT_WAIT: Duration = Duration::from_secs(20);

struct Setup {
    runtime: tokio::runtime::Runtime,
    collector: Collector,
    receiver: Receiver,
    secret: String,
    dir: tempfile::TempDir,
    config: std::path::PathBuf,
}

/// A collector, a webhook receiver for pages and executive posts, and the
/// paging configuration (ana on call; executives told of Sev-1s).
fn setup() -> Setup {
    let Paged { runtime, receiver, secret, dir, config } = Paged::start(600, true, "");
    let collector = runtime.block_on(Collector::start());
    Setup { runtime, collector, receiver, secret, dir, config }
}

impl Setup {
    /// Waits until the page and the executive post were delivered.
    fn wait_for_deliveries(&self) {
        let delivered = self.runtime.block_on(self.receiver.wait_for_delivered(2, EXPORT_WAIT));
        assert!(delivered.iter().any(|r| r.body["kind"] == "page"), "ana is paged: {delivered:?}");
        assert!(delivered.iter().any(|r| r.body["kind"] != "page"), "executives are told: {delivered:?}");
    }
}

/// The report that the configuration assesses as a Sev-1.
const SEV1_REPORT: [&str; 9] =
    ["report", "--title", "EU checkout down", "--service", "payments", "--customer", "acme", "--customer", "globex"];

/// The one span named `name`.
fn only<'a>(spans: &'a [Span], name: &str) -> &'a Span {
    let named: Vec<&Span> = spans.iter().filter(|s| s.name == name).collect();
    assert_eq!(named.len(), 1, "one {name} span: {spans:#?}");
    named[0]
}

/// Checks the tree of one Sev-1 and returns its spans by name.
fn check_sev1_tree(spans: &[Span]) -> [Span; 5] {
    let [report, assess, page, deliver, notify] = SEV1_SPANS.map(|name| only(spans, name).clone());
    for span in [&assess, &page, &deliver, &notify] {
        assert_eq!(span.trace_id, report.trace_id, "{} is in the report's trace", span.name);
    }
    let parent = |span: &Span| span.parent_span_id.clone();
    assert_eq!(parent(&assess), Some(report.span_id.clone()), "severity assesses what intake reported");
    assert_eq!(parent(&page), Some(assess.span_id.clone()), "paging pages because of the assessment");
    assert_eq!(parent(&deliver), Some(page.span_id.clone()), "the delivery carries out the page decision");
    assert_eq!(parent(&notify), Some(assess.span_id.clone()), "executives are told because of the assessment");
    assert_eq!(only(spans, "intake.report").attributes.get("incident").map(String::as_str), Some("INC-1"));
    [report, assess, page, deliver, notify]
}

/// The events in the log carry the context of the span that wrote them.
fn check_event_traces(data_dir: &std::path::Path, spans: &[Span; 5]) {
    let [report, assess, page, deliver, notify] = spans;
    let log = klaxon_log::Log::open(data_dir, Default::default()).unwrap();
    let records = log.read_all(klaxon_log::Position(1), 10_000).unwrap();
    let traceparent_of = |kind: &str| {
        let record = records.iter().find(|r| r.kind.as_str() == kind).unwrap_or_else(|| panic!("a {kind} event"));
        record.metadata.traceparent.clone().unwrap_or_else(|| panic!("{kind} carries a traceparent"))
    };
    assert_eq!(traceparent_of("incident.reported.v1"), report.traceparent());
    assert_eq!(traceparent_of("incident.severity_assessed.v1"), assess.traceparent());
    assert_eq!(traceparent_of("page.responder_paged.v1"), page.traceparent());
    assert_eq!(traceparent_of("page.delivered.v1"), deliver.traceparent());
    let notified = records.iter().find(|r| r.kind.as_str().starts_with("notify.")).expect("a notifier event");
    assert_eq!(notified.metadata.traceparent.as_deref(), Some(notify.traceparent().as_str()));
}

/// `klaxond up` exports one trace per Sev-1. The batch delay is a minute,
/// so the spans arrive through the flush of a clean stop.
#[test]
fn a_sev1_is_one_trace_from_intake_to_paging_and_the_notifier() {
    let setup = setup();
    let data = setup.dir.path().join("data");
    let env = [
        (SECRET_ENV, setup.secret.as_str()),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", setup.collector.endpoint.as_str()),
        ("OTEL_BSP_SCHEDULE_DELAY", "60000"),
    ];
    let server = Klaxond::start_with_env(&data, &["--config", setup.config.to_str().unwrap()], &env);
    // The CLI sends no trace context: intake starts the trace.
    let id = klaxon_ok(&server.url, "monitor", &SEV1_REPORT);
    assert!(id.starts_with("INC-1"), "{id}");
    setup.wait_for_deliveries();
    assert!(server.stop().success(), "a clean stop");

    let spans = setup.runtime.block_on(setup.collector.wait_for(&SEV1_SPANS, EXPORT_WAIT));
    let tree = check_sev1_tree(&spans);
    assert_eq!(tree[0].parent_span_id, None, "intake starts the trace when the client has none");
    for span in &spans {
        assert_eq!(span.service, "klaxond", "{span:?}");
    }
    check_event_traces(&data, &tree);
}

/// Across the processes of the distributed topology, with the client's own
/// trace context: still one trace, each span from the process that made it.
#[test]
fn a_sev1_is_one_trace_across_the_processes_of_the_distributed_topology() {
    const CLIENT_TRACE: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let setup = setup();
    let env = [
        (SECRET_ENV, setup.secret.as_str()),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", setup.collector.endpoint.as_str()),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
    ];
    let cluster = Cluster::start(setup.dir.path(), &setup.config, &env);
    setup.runtime.block_on(async {
        let mut client =
            klaxon_proto::v1::incidents_client::IncidentsClient::connect(cluster.url.clone()).await.unwrap();
        let mut request = tonic::Request::new(klaxon_proto::v1::ReportRequest {
            title: "EU checkout down".into(),
            service: "payments".into(),
            customers: vec!["acme".into(), "globex".into()],
            ..Default::default()
        });
        request.metadata_mut().insert("traceparent", CLIENT_TRACE.parse().unwrap());
        request.metadata_mut().insert("authorization", klaxon_tests::auth::bearer("monitor"));
        client.report(request).await.unwrap();
    });
    setup.wait_for_deliveries();
    // Exported while the processes run (a 100 ms batch delay)…
    let mut names = SEV1_SPANS.to_vec();
    names.push("log.append");
    setup.runtime.block_on(setup.collector.wait_for(&names, EXPORT_WAIT));
    // … and the rest when they stop: each flushes before it exits.
    let data_dir = cluster.data_dir.clone();
    cluster.stop();
    let spans: Vec<Span> =
        setup.collector.spans().into_iter().filter(|s| s.trace_id == "0af7651916cd43dd8448eb211c80319c").collect();

    let tree = check_sev1_tree(&spans);
    assert_eq!(tree[0].parent_span_id.as_deref(), Some("b7ad6b7169203331"), "intake continues the client's trace");
    let services: Vec<(&str, &str)> = tree.iter().map(|s| (s.name.as_str(), s.service.as_str())).collect();
    assert_eq!(
        services,
        [
            ("intake.report", "klaxon-intake"),
            ("severity.assess", "klaxon-severity"),
            ("paging.page", "klaxon-paging"),
            ("paging.deliver", "klaxon-paging"),
            ("notifier.notify", "klaxon-notifier"),
        ]
    );
    // The log server's appends hang below the span that asked for them.
    let appends: Vec<&Span> = spans.iter().filter(|s| s.name == "log.append").collect();
    assert!(appends.iter().all(|s| s.service == "klaxon-log"), "{appends:?}");
    for parent in &tree {
        assert!(
            appends.iter().any(|a| a.parent_span_id.as_deref() == Some(parent.span_id.as_str())),
            "{} appended through the log server in its span: {appends:?}",
            parent.name
        );
    }
    check_event_traces(&data_dir, &tree);
}

/// A collector that is not there loses the spans and nothing else: the
/// server starts, serves and stops as promptly as without one.
#[test]
fn an_unreachable_collector_neither_blocks_commands_nor_the_stop() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let endpoint = format!("http://{closed}");
    let dir = tempfile::tempdir().unwrap();
    let env = [("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()), ("OTEL_BSP_SCHEDULE_DELAY", "100")];
    let started = Instant::now();
    let server = Klaxond::start_with_env(&dir.path().join("data"), &[], &env);
    let id = klaxon_ok(&server.url, "monitor", &["report", "--title", "Traced into the void"]);
    assert!(id.starts_with("INC-1"), "{id}");
    // Exports were attempted (and failed) meanwhile.
    std::thread::sleep(Duration::from_millis(500));
    let stopping = Instant::now();
    assert!(server.stop().success(), "a clean stop");
    assert!(stopping.elapsed() < Duration::from_secs(10), "stopped promptly: {:?}", stopping.elapsed());
    assert!(started.elapsed() < Duration::from_secs(40), "{:?}", started.elapsed());
}
