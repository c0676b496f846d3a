//! A Sev-1 driven through the CLI and a tonic client against real `klaxond`
//! processes; restarts, SIGTERM and SIGKILL.

use std::time::Duration;

use klaxon_proto::v1::{self, incidents_client::IncidentsClient};
use klaxon_tests::{Klaxond, klaxon, klaxon_json, klaxon_ok};
use serde_json::Value;

#[test]
fn a_sev1_lifecycle_through_the_cli_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = Klaxond::start(&dir.path().join("data"));
    let url = server.url.clone();
    let run = |actor: &str, args: &[&str]| klaxon_ok(&url, actor, args);

    let id = run(
        "monitor",
        &[
            "report",
            "--title",
            "Checkout fails in EU",
            "--service",
            "payments",
            "--customer",
            "acme",
            "--customer",
            "globex",
        ],
    );
    let id = id.split_whitespace().next().unwrap().to_string();
    assert_eq!(id, "INC-1");
    run("maria", &["declare", &id, "--severity", "1"]);
    run("maria", &["assign", &id, "maria"]);
    run("maria", &["update", &id, "Rollback under way", "--audience", "executive"]);
    run(
        "maria",
        &[
            "impact",
            &id,
            "--customers-affected",
            "40",
            "--customer",
            "acme",
            "--customer",
            "globex",
            "--multi-customer",
            "--summary",
            "EU checkout down",
        ],
    );
    run("maria", &["handoff", "request", &id, "--to", "omar"]);
    // Only the receiving manager may accept.
    let refused = klaxon(&url, "li", &["handoff", "accept", &id]);
    assert_eq!(refused.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.starts_with("klaxon: ") && stderr.contains("handoff.accept_only_by_recipient"), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "one clear line: {stderr}");
    run("omar", &["handoff", "accept", &id]);
    run("omar", &["mitigate", &id, "--summary", "rolled back"]);
    run("omar", &["resolve", &id, "--summary", "bad config reverted"]);
    run("victor", &["validate", &id, "--note", "error rate flat for an hour"]);

    let shown = klaxon_json(&url, "maria", &["show", &id]);
    let incident = if shown.get("incident").is_some() { shown["incident"].clone() } else { shown.clone() };
    assert_eq!(incident["status"], "closed");
    assert_eq!(incident["severity"], "sev1");
    assert_eq!(incident["commander"], "omar");
    assert_eq!(incident["customers_affected"], 40);
    let history = run("maria", &["history", &id]);
    assert!(history.contains("omar accepted the handoff from maria and is now commander"), "{history}");
    // Ten commands, plus the severity evaluator's assessment of the report.
    assert_eq!(history.lines().filter(|l| !l.contains("klaxon-severity assessed")).count(), 10, "{history}");
    assert!(history.contains("klaxon-severity assessed SEV4 (default)"), "{history}");
    // A stale expected version is a conflict: exit code 3.
    let stale = klaxon(&url, "maria", &["--expect-version", "3", "reopen", &id, "--reason", "again"]);
    assert_eq!(stale.status.code(), Some(3), "{}", String::from_utf8_lossy(&stale.stderr));

    let status = server.stop();
    assert!(status.success(), "SIGTERM is a clean stop: {status:?}");
    let server = Klaxond::start(&dir.path().join("data"));
    let again = klaxon_json(&server.url, "maria", &["show", &id]);
    assert_eq!(again, shown, "the incident is back after a restart");
    assert_eq!(klaxon_ok(&server.url, "maria", &["history", &id]), history);
    let next = klaxon_ok(&server.url, "monitor", &["report", "--title", "Another one"]);
    assert!(next.starts_with("INC-2"), "numbers continue after a restart: {next}");
    assert!(server.stop().success());
}

#[test]
fn an_unreachable_server_is_exit_code_4() {
    let dir = tempfile::tempdir().unwrap();
    let server = Klaxond::start(&dir.path().join("data"));
    let url = server.url.clone();
    server.kill();
    let out = klaxon(&url, "maria", &["list"]);
    assert_eq!(out.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&out.stderr).contains(url.trim_start_matches("http://")));
}

/// `--server` set to klaxond's HTTP address (a port that answers, but not
/// gRPC) says so and names the right one, with the exit code of a wrong
/// address, instead of tonic's "invalid compression flag".
#[test]
fn the_http_address_given_as_the_grpc_one_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let server = Klaxond::start(&dir.path().join("data"));
    let http = format!("http://{}", server.http_address.as_deref().expect("up serves HTTP"));
    let out = klaxon(&http, "maria", &["list"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(stderr.contains(&format!("{http} is not Klaxon's gRPC API (it answered HTTP 404")), "{stderr}");
    assert!(stderr.contains("--listen, 127.0.0.1:7600 by default"), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
    assert!(server.stop().success());
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

fn by<T>(actor: &str, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert("authorization", klaxon_tests::auth::bearer(actor));
    request
}

#[test]
fn a_tonic_client_drives_the_process_and_health_says_serving() {
    let dir = tempfile::tempdir().unwrap();
    let server = Klaxond::start(&dir.path().join("data"));
    runtime().block_on(async {
        let channel = tonic::transport::Endpoint::from_shared(server.url.clone()).unwrap().connect().await.unwrap();
        let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
        let status = health
            .check(tonic_health::pb::HealthCheckRequest { service: "klaxon.v1.Incidents".into() })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(status.status(), tonic_health::pb::health_check_response::ServingStatus::Serving);

        let mut c = IncidentsClient::new(channel);
        let id = c
            .report(by("monitor", v1::ReportRequest { title: "db down".into(), ..Default::default() }))
            .await
            .unwrap()
            .into_inner()
            .incident_id;
        c.declare(by(
            "maria",
            v1::DeclareRequest { incident_id: id.clone(), severity: v1::Severity::Sev1 as i32, context: None },
        ))
        .await
        .unwrap();
        c.assign_commander(by(
            "maria",
            v1::AssignCommanderRequest { incident_id: id.clone(), commander: "maria".into(), context: None },
        ))
        .await
        .unwrap();
        c.post_update(by(
            "maria",
            v1::PostUpdateRequest {
                incident_id: id.clone(),
                audience: v1::Audience::Executive as i32,
                text: "failing over".into(),
                context: None,
            },
        ))
        .await
        .unwrap();
        let done = c
            .resolve(by(
                "maria",
                v1::ResolveRequest { incident_id: id.clone(), summary: "failed over".into(), context: None },
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(done.incident.unwrap().status(), v1::IncidentStatus::Resolved);
        let bad = c
            .declare(by("maria", v1::DeclareRequest { incident_id: "INC-9".into(), severity: 1, context: None }))
            .await
            .unwrap_err();
        assert_eq!(bad.code(), tonic::Code::NotFound);
    });
    assert!(server.stop().success());
}

#[test]
fn every_acknowledged_report_survives_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let server = Klaxond::start(&dir.path().join("data"));
    let acked = runtime().block_on(async {
        let c = IncidentsClient::connect(server.url.clone()).await.unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        for w in 0..8 {
            let (mut c, tx) = (c.clone(), tx.clone());
            tokio::spawn(async move {
                for n in 0.. {
                    let request =
                        by("monitor", v1::ReportRequest { title: format!("alert {w}-{n}"), ..Default::default() });
                    match c.report(request).await {
                        Ok(r) => {
                            if tx.send((r.into_inner().incident_id, format!("alert {w}-{n}"))).is_err() {
                                return;
                            }
                        }
                        Err(_) => return,
                    }
                }
            });
        }
        drop(tx);
        tokio::time::sleep(Duration::from_millis(400)).await;
        let pid = server.pid();
        klaxon_tests::signal(pid, "KILL");
        let mut acked = Vec::new();
        while let Some(a) = rx.recv().await {
            acked.push(a);
        }
        acked
    });
    drop(server);
    assert!(acked.len() > 10, "the writers got going ({} acks)", acked.len());
    let server = Klaxond::start(&dir.path().join("data"));
    // One listing, rather than a call per report (which a person's request
    // rate would rightly refuse).
    let listed: Value = klaxon_json(&server.url, "maria", &["list", "--all-pages"]);
    let titles: std::collections::HashMap<&str, &str> = listed["incidents"]
        .as_array()
        .expect("incidents")
        .iter()
        .map(|i| (i["id"].as_str().unwrap(), i["title"].as_str().unwrap()))
        .collect();
    for (id, title) in &acked {
        assert_eq!(titles.get(id.as_str()), Some(&title.as_str()), "{id}");
    }
    assert!(server.stop().success());
}

#[test]
fn the_example_configuration_starts_and_a_bad_one_is_refused_naming_file_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/klaxon.toml");
    let server = Klaxond::start_with(&dir.path().join("data"), &["--config", example]);
    assert!(server.stop().success());

    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[intake]\nbridge_participants_max = \"many\"\n").unwrap();
    let out = std::process::Command::new(klaxon_tests::binary("klaxond"))
        .args(["up", "--listen", "127.0.0.1:0", "--config"])
        .arg(&bad)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("bad.toml") && stderr.contains("bridge_participants_max"), "{stderr}");
}

#[test]
fn a_client_that_never_lets_go_of_its_connection_does_not_hold_up_the_stop() {
    let dir = tempfile::tempdir().unwrap();
    let server = Klaxond::start(&dir.path().join("data"));
    // A client that makes a call and then stops running: its connection stays
    // open and never answers the server's goodbye.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let channel = runtime.block_on(async {
        tonic::transport::Endpoint::from_shared(server.url.clone()).unwrap().connect().await.unwrap()
    });
    let mut client = IncidentsClient::new(channel);
    runtime.block_on(client.list_incidents(by("maria", v1::ListIncidentsRequest::default()))).unwrap();
    // `stop` fails the test unless klaxond exits within 30 s; it gives such
    // connections 10 s.
    assert!(server.stop().success());
    drop((client, runtime));
}

/// Under `up`, a service task that dies stops the process at once, non-zero,
/// with a line naming the service: here the review service, which cannot
/// fold a review record that does not decode (written into the log before
/// the start, as a newer or broken writer would leave it; only the review
/// service reads review records).
#[test]
fn a_service_that_dies_under_up_stops_the_process_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let runtime = runtime();
    let log = klaxon_log::Log::open(&data, Default::default()).unwrap();
    let broken = klaxon_log::NewEvent {
        id: uuid::Uuid::new_v4(),
        kind: klaxon_log::EventKind::new("review.opened.v1").unwrap(),
        data: klaxon_log::EventData::from_value(&serde_json::json!({"incident": "INC-1"})).unwrap(),
        metadata: Default::default(),
    };
    let stream = klaxon_log::StreamId::new("review-INC-1").unwrap();
    runtime.block_on(log.append(&stream, klaxon_log::ExpectedVersion::Any, vec![broken])).unwrap();
    runtime.block_on(log.close());
    drop(log);

    let mut child = std::process::Command::new(klaxon_tests::binary("klaxond"))
        .args(["up", "--listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("klaxond kept running with a dead review service");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("klaxond: the review service failed: the event at position 1 does not decode"), "{stderr}");
}

/// Stdout lines of a running `klaxon` (as JSON when they parse), its stderr
/// in a file; killed on drop.
struct Following {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
    stderr: std::path::PathBuf,
}

impl Following {
    fn start(url: &str, actor: &str, args: &[&str], stderr: std::path::PathBuf, stdin: std::process::Stdio) -> Self {
        use std::io::BufRead;
        let mut child = klaxon_tests::klaxon_command(url, actor)
            .args(args)
            .stdin(stdin)
            .stdout(std::process::Stdio::piped())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .expect("spawn klaxon");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Following { child, lines, stderr }
    }

    /// The first line holding `words` within 30 s.
    fn line_with(&self, words: &str) -> String {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(words) => return line,
                Ok(_) => {}
                Err(_) => panic!("no line with {words:?} within 30 s; stderr: {}", self.said()),
            }
        }
    }

    fn said(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Waits (at most 30 s) until stderr holds `words`.
    fn says(&self, words: &str) {
        crate::file_says(&self.stderr, &[words]);
    }
}

impl Drop for Following {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `klaxon watch` outlives a restart of the server: it says the feed was
/// cut, reconnects, gets the open incidents again and then live changes;
/// `klaxon join` cut by the stop says so and exits 4 (it used to exit 0
/// silently, as if the user had left).
#[test]
fn watch_follows_the_feed_across_a_restart_and_a_cut_bridge_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let address = klaxon_tests::ports::address();
    let server = Klaxond::start_on(&address, &data);
    let url = server.url.clone();
    let reported = klaxon_ok(&url, "monitor", &["report", "--title", "Checkout fails", "--service", "payments"]);
    let id = reported.trim();
    let watch =
        Following::start(&url, "ceo", &["--json", "watch"], dir.path().join("watch.err"), std::process::Stdio::null());
    watch.line_with(&format!("\"incident_id\":\"{id}\""));
    // A bridge session with stdin held open: the user has not left.
    let (bridge_stdin, _stdin_kept_open) = std::io::pipe().unwrap();
    let join = Following::start(&url, "maria", &["join", id], dir.path().join("join.err"), bridge_stdin.into());
    join.line_with(id);

    assert!(server.stop().success());
    watch.says("klaxon: the status feed was cut: the server ended it");
    let mut join = join;
    let status = join.child.wait().unwrap();
    assert_eq!(status.code(), Some(4), "{}", join.said());
    assert!(
        join.said().contains(&format!(
            "ended the bridge of {id} (is it stopping or restarting?); you have left it: join again"
        )),
        "{}",
        join.said()
    );

    let server = Klaxond::start_on(&address, &data);
    watch.says("klaxon: back on the status feed");
    watch.line_with(&format!("\"incident_id\":\"{id}\""));
    klaxon_ok(&url, "maria", &["declare", id, "--severity", "1"]);
    let live = watch.line_with("\"severity\":\"sev1\"");
    assert!(live.contains(id) && live.contains("\"snapshot\":false"), "a live change after the restart: {live}");
    let mut watch = watch;
    assert!(watch.child.try_wait().unwrap().is_none(), "watch still runs: {}", watch.said());
    assert!(server.stop().success());
}

/// A second `klaxond up` on a data folder a running one holds is refused
/// at start, saying what to do, and the first keeps serving.
#[test]
fn a_second_klaxond_on_the_same_folder_is_refused_naming_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Klaxond::start(&data);
    let out = std::process::Command::new(klaxon_tests::binary("klaxond"))
        .args(["up", "--listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("is another klaxond running on it? Stop it, or give this one another --data-dir"),
        "{stderr}"
    );
    assert!(stderr.contains("in use by another process"), "the cause too: {stderr}");
    klaxon_ok(&server.url, "monitor", &["report", "--title", "Still here"]);
    assert!(server.stop().success());
}
