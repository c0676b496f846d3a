//! `klaxond`'s own log as an operator reads it: written to a file (as under
//! systemd, a container runtime or `> klaxond.log`), it is plain text, with
//! no terminal colour codes in it.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use klaxon_tests::binary;

use crate::file_says;

/// Kills the child when the test ends, also when it fails.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_log_written_to_a_file_holds_no_colour_codes() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("klaxond.log");
    let mut child = Command::new(binary("klaxond"))
        .args(["up", "--listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data"))
        .env("RUST_LOG", "info")
        .env_remove("NO_COLOR")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("spawn klaxond");
    let stdout = child.stdout.take().unwrap();
    let _running = Running(child);
    // Serving means the start's log lines (a first start rebuilds every
    // projection, at INFO) are written.
    let serving = BufReader::new(stdout).lines().map_while(Result::ok).any(|l| l.starts_with("klaxond http on "));
    assert!(serving, "klaxond serves");
    let deadline = Instant::now() + Duration::from_secs(30);
    let text = loop {
        let text = std::fs::read_to_string(&log).unwrap();
        if text.contains("rebuilding from the log") || Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        text.contains(" INFO ") && text.contains("rebuilding from the log"),
        "the start is logged at INFO:\n{text}"
    );
    assert!(!text.contains('\u{1b}'), "no escape codes in a log file:\n{text:?}");
}

/// Spawns `klaxond` with `args` and the default log filter, its log in
/// the file `log`, and returns it (killed on drop) with the gRPC address
/// it says it listens on.
fn spawn_logged(args: &[&str], env: &[(&str, &str)], log: &std::path::Path) -> (Running, String) {
    let mut child = Command::new(binary("klaxond"))
        .args(args)
        .envs(env.iter().copied())
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("spawn klaxond");
    let stdout = child.stdout.take().unwrap();
    let running = Running(child);
    // Read on to the end: a closed stdout would fail klaxond's next line.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(rest) = line.strip_prefix("klaxond listening on ") {
                let _ = tx.send(rest.split(' ').next().unwrap_or_default().to_owned());
            }
        }
    });
    let address = rx.recv_timeout(Duration::from_secs(60)).expect("klaxond listens without NATS and the log server");
    (running, address)
}

/// Processes started before what they need say, once each and in words,
/// what they cannot reach, and again when it answers; they do not repeat
/// async-nats's line per reconnect attempt, nor the relay's interruption
/// while it lasts. Then the service works.
#[test]
fn a_process_says_once_what_it_cannot_reach_and_when_it_answers_again() {
    use klaxon_tests::{auth, nats::NatsServer, ports};
    let dir = tempfile::tempdir().unwrap();
    let env = auth::cluster_env(&dir.path().join("auth"));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    // A port for each that nothing listens on until the test starts them.
    let mut nats = NatsServer::start(&dir.path().join("nats"));
    nats.kill();
    let log_address = ports::address();
    let cannot_reach_nats = "cannot reach NATS";
    let log_unavailable = "log server unavailable";
    let relay_interrupted = "relay interrupted";

    // Intake first: neither NATS nor the log server is there.
    let intake_log = dir.path().join("intake.log");
    let (_intake, address) = spawn_logged(
        &["serve", "intake", "--listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0"]
            .into_iter()
            .chain(["--log-server", &log_address, "--nats", &nats.url])
            .collect::<Vec<_>>(),
        &env,
        &intake_log,
    );
    let text = file_says(&intake_log, &[cannot_reach_nats, log_unavailable]);
    assert!(text.contains(&nats.url) && text.contains(&log_address), "each names its address:\n{text}");

    // The log server, NATS still down: its relay cannot publish.
    let data = dir.path().join("log").display().to_string();
    let server_log = dir.path().join("log-server.log");
    let (_log_server, _) = spawn_logged(
        &["serve", "log", "--listen", &log_address, "--data-dir", &data, "--nats", &nats.url],
        &env,
        &server_log,
    );
    file_says(&intake_log, &["the log server answers again"]);
    file_says(&server_log, &[cannot_reach_nats, relay_interrupted]);
    // The relay retries every 2 to 4 s: over 10 s it would have said so
    // three times more.
    std::thread::sleep(Duration::from_secs(10));

    nats.start_again();
    let intake_text = file_says(&intake_log, &["NATS answers again"]);
    let server_text = file_says(&server_log, &["NATS answers again"]);
    for (text, said_once) in [
        (&intake_text, cannot_reach_nats),
        (&intake_text, log_unavailable),
        (&server_text, cannot_reach_nats),
        (&server_text, relay_interrupted),
    ] {
        assert_eq!(text.matches(said_once).count(), 1, "{said_once:?} once:\n{text}");
    }
    for text in [&intake_text, &server_text] {
        assert!(!text.contains("client error"), "no line per reconnect attempt:\n{text}");
    }

    // And it serves: a report goes through to the log.
    let reported = klaxon_tests::klaxon(
        &format!("http://{address}"),
        "maria",
        &["report", "--title", "Checkout fails", "--service", "payments"],
    );
    assert!(reported.status.success(), "{}", String::from_utf8_lossy(&reported.stderr));
    assert_eq!(String::from_utf8_lossy(&reported.stdout).trim(), "INC-1");
}

/// The gateway says once when a service's replica stops serving and when
/// it serves again, not at every health check.
#[test]
fn the_gateway_says_once_when_a_service_stops_serving_and_when_it_is_back() {
    use klaxon_tests::cluster::{Cluster, SERVICES};
    use klaxon_tests::config::Paged;
    let paged = Paged::start(600, false, "");
    let mut cluster = Cluster::start(paged.dir.path(), &paged.config, &paged.env());
    let env = paged.env();
    let mut args = vec!["serve".to_owned(), "gateway".into(), "--listen".into(), "127.0.0.1:0".into()];
    for role in SERVICES {
        args.extend(["--route".to_owned(), format!("{role}={}", cluster.address(role))]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let log = paged.dir.path().join("gateway.log");
    let (_gateway, _) = spawn_logged(&args, &env, &log);

    cluster.kill("paging");
    let not_serving = "not serving (unreachable or not ready)";
    file_says(&log, &[not_serving, "role=\"paging\""]);
    // Three more health checks fail before it is back.
    std::thread::sleep(Duration::from_secs(3));
    cluster.restart("paging");
    let text = file_says(&log, &["serving again"]);
    assert_eq!(text.matches(not_serving).count(), 1, "said once:\n{text}");
    let said: Vec<&str> = text.lines().filter(|l| l.contains("klaxond::gateway") && l.contains("serving")).collect();
    assert!(said.iter().all(|l| l.contains("role=\"paging\"")), "only paging stopped serving: {said:#?}");
    assert!(said.iter().all(|l| l.contains(&cluster.address("paging"))), "the address is named: {said:#?}");
    cluster.stop();
}
