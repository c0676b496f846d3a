//! gRPC over TLS (rustls) with certificates made at run time: the CLI
//! reaches `klaxond up` over https when it trusts the CA, and not
//! otherwise; in the distributed topology every process serves TLS and the
//! services and gateway reach each other over it. With `client_ca_file`,
//! servers require client certificates (mutual TLS): a log server refuses
//! clients without one from its CA, the CLI needs `--client-cert`, and the
//! whole distributed topology runs on one CA and one certificate per
//! process.

use std::path::Path;
use std::time::{Duration, Instant};

use klaxon_proto::v1::event_log_client::EventLogClient;
use klaxon_proto::v1::{LogAppendRequest, LogHeadRequest, LogNewEvent};
use klaxon_tests::cluster::Cluster;
use klaxon_tests::config::Paged;
use klaxon_tests::nats::NatsServer;
use klaxon_tests::tls::Certificates;
use klaxon_tests::{Klaxond, klaxon, klaxon_command, klaxon_ok};

fn tls_config(certs: &Certificates) -> String {
    format!(
        "[tls]\ncert_file = {:?}\nkey_file = {:?}\nca_file = {:?}\n",
        certs.cert.display().to_string(),
        certs.key.display().to_string(),
        certs.ca.display().to_string()
    )
}

/// [`tls_config`], and every gRPC server requires a client certificate
/// signed by the cluster CA.
fn mtls_config(certs: &Certificates) -> String {
    format!("{}client_ca_file = {:?}\n", tls_config(certs), certs.ca.display().to_string())
}

fn path(p: &Path) -> &str {
    p.to_str().expect("UTF-8 paths")
}

#[test]
fn the_cli_reaches_a_tls_server_only_when_it_trusts_the_ca() {
    let dir = tempfile::tempdir().unwrap();
    let certs = klaxon_tests::tls::generate(dir.path());
    let config = dir.path().join("klaxon.toml");
    std::fs::write(&config, tls_config(&certs)).unwrap();
    let server = Klaxond::start_with(&dir.path().join("data"), &["--config", config.to_str().unwrap()]);
    let https = server.url.replace("http://", "https://");
    let ca = certs.ca.to_str().unwrap();

    let id = klaxon_ok(&https, "monitor", &["--ca-cert", ca, "report", "--title", "over TLS"]);
    assert_eq!(id.trim(), "INC-1");
    let shown = klaxon_ok(&https, "ana", &["--ca-cert", ca, "show", "INC-1"]);
    assert!(shown.contains("over TLS"), "{shown}");

    // An untrusted CA or none: unreachable (exit 4). Plaintext to a TLS
    // port: a transport error (exit 4 or 5). Nothing is written.
    for (url, extra, codes) in [
        (https.as_str(), vec!["--ca-cert", certs.other_ca.to_str().unwrap()], &[4][..]),
        (https.as_str(), vec![], &[4][..]),
        (server.url.as_str(), vec![], &[4, 5][..]),
    ] {
        let mut args = extra.clone();
        args.extend(["report", "--title", "refused"]);
        let out = klaxon(url, "mallory", &args);
        let code = out.status.code().unwrap_or_default();
        assert!(codes.contains(&code), "{url} {extra:?} exited {code}: {}", String::from_utf8_lossy(&out.stderr));
    }
    let list = klaxon_ok(&https, "ana", &["--ca-cert", ca, "--json", "list"]);
    assert_eq!(list.matches("\"id\":\"INC-").count(), 1, "{list}");
    assert!(server.stop().success());
}

#[test]
fn the_distributed_topology_runs_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let certs = klaxon_tests::tls::generate(dir.path());
    let config = dir.path().join("klaxon.toml");
    // Paging needs its table; nothing here is paged.
    let paging = klaxon_tests::config::PagingConfig {
        receiver: "http://127.0.0.1:9/hook",
        secret_env: "KLAXON_E2E_PAGER_SECRET",
        escalate_after_seconds: 600,
        notify_executives: false,
    };
    std::fs::write(&config, format!("{}\n{}", paging.toml(), tls_config(&certs))).unwrap();
    let secret = klaxon_tests::config::secret();
    let cluster = Cluster::start(dir.path(), &config, &[("KLAXON_E2E_PAGER_SECRET", secret.as_str())]);
    let https = cluster.url.replace("http://", "https://");
    let ca = certs.ca.to_str().unwrap();
    let id = klaxon_ok(&https, "monitor", &["--ca-cert", ca, "report", "--title", "distributed over TLS"]);
    // Intake (through the gateway, over TLS) wrote it to the log server over
    // TLS and folded it back through NATS; severity assessed it the same way.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let shown = klaxon_ok(&https, "ana", &["--ca-cert", ca, "show", id.trim()]);
        if shown.contains("SEV") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the evaluator assessed it: {shown}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    cluster.stop();
}

#[test]
fn the_distributed_topology_runs_over_mutual_tls() {
    let certs_dir = tempfile::tempdir().unwrap();
    let certs = klaxon_tests::tls::generate(certs_dir.path());
    // Every process: its certificate (both usages), the CA it trusts, and
    // the CA its clients' certificates must come from.
    let paged = Paged::start(600, false, &mtls_config(&certs));
    let receiver = &paged.receiver;
    let mut cluster = Cluster::start(paged.dir.path(), &paged.config, &paged.env());
    let https = cluster.url.replace("http://", "https://");
    let ca = path(&certs.ca);
    let mtls = ["--ca-cert", ca, "--client-cert", path(&certs.client_cert), "--client-key", path(&certs.client_key)];
    let cli = |actor: &str, args: &[&str]| klaxon(&https, actor, &[&mtls[..], args].concat());
    let cli_ok = |actor: &str, args: &[&str]| klaxon_ok(&https, actor, &[&mtls[..], args].concat());
    // A service may still be folding what it is asked about.
    let eventually_ok = |actor: &str, args: &[&str]| {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let out = cli(actor, args);
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            if out.status.success() {
                return text;
            }
            assert!(Instant::now() < deadline, "{args:?}: {}{text}", String::from_utf8_lossy(&out.stderr));
            std::thread::sleep(Duration::from_millis(100));
        }
    };

    // The gateway, too, requires a client certificate.
    let refused = klaxon(&https, "mallory", &["--ca-cert", ca, "list"]);
    assert_eq!(refused.status.code(), Some(4), "{}", String::from_utf8_lossy(&refused.stderr));

    // A Sev-1: intake (behind the gateway) appends to the log server,
    // severity assesses it, paging pages ana through the webhook, every
    // internal call over mutual TLS.
    let id = cli_ok(
        "monitor",
        &["report", "--title", "Checkout fails", "--service", "payments", "--customer", "acme", "--customer", "globex"],
    );
    let id = id.trim();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !receiver.requests().iter().any(|r| r.status < 300 && r.body["kind"] == "page") {
        assert!(Instant::now() < deadline, "no page delivered: {:?}", receiver.requests().len());
        std::thread::sleep(Duration::from_millis(50));
    }
    let page = format!("{id}-P1");
    eventually_ok("ana", &["ack", &page]);
    cli_ok("maria", &["declare", id, "--severity", "1"]);
    cli_ok("maria", &["assign", id, "maria"]);
    cli_ok("maria", &["mitigate", id, "--summary", "rolled back"]);
    cli_ok("maria", &["resolve", id, "--summary", "bad config reverted"]);
    // The review opens when review has folded the resolution.
    eventually_ok("rita", &["review", "summary", id, "A config push broke checkout."]);
    let shown: serde_json::Value = serde_json::from_str(&cli_ok("rita", &["--json", "show", id])).unwrap();
    assert_eq!((&shown["severity"], &shown["status"]), (&"sev1".into(), &"resolved".into()), "{shown}");
    let pages: serde_json::Value = serde_json::from_str(&cli_ok("rita", &["--json", "pages", id])).unwrap();
    assert_eq!(pages["pages"][0]["acknowledged_by"], "ana", "{pages}");
    assert_eq!(cluster.all_running(), Vec::<String>::new(), "no process exited");
    cluster.stop();
}

/// An `EventLog` client of `url` trusting `ca`, presenting `identity`
/// (certificate, key) if any, and the services' token.
fn log_client(
    url: &str,
    ca: &Path,
    identity: Option<(&Path, &Path)>,
) -> EventLogClient<
    tonic::service::interceptor::InterceptedService<
        tonic::transport::Channel,
        impl tonic::service::Interceptor + use<>,
    >,
> {
    let mut tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(std::fs::read(ca).unwrap()));
    if let Some((cert, key)) = identity {
        tls = tls
            .identity(tonic::transport::Identity::from_pem(std::fs::read(cert).unwrap(), std::fs::read(key).unwrap()));
    }
    let channel = tonic::transport::Endpoint::from_shared(url.to_owned())
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(10))
        .connect_lazy();
    EventLogClient::with_interceptor(channel, klaxon_tests::auth::as_person(klaxon_tests::auth::SERVICE))
}

fn append_request(id: &str) -> LogAppendRequest {
    LogAppendRequest {
        stream: "mtls-test".into(),
        expected: "any".into(),
        expected_version: 0,
        events: vec![LogNewEvent { id: id.into(), kind: "test.mtls.v1".into(), data: "{}".into(), metadata: None }],
    }
}

#[test]
fn a_log_server_requiring_client_certificates_accepts_only_those_of_its_ca() {
    let dir = tempfile::tempdir().unwrap();
    let certs = klaxon_tests::tls::generate(dir.path());
    let config = dir.path().join("klaxon.toml");
    std::fs::write(&config, mtls_config(&certs)).unwrap();
    let nats = NatsServer::start(&dir.path().join("nats"));
    let data = dir.path().join("log");
    let log = Klaxond::serve(
        "log",
        &["--config", path(&config), "--data-dir", path(&data), "--nats", nats.url.as_str()],
        &[],
    );
    let https = log.url.replace("http://", "https://");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let context = runtime.enter();

    // With the services' token but no acceptable certificate: refused at
    // the handshake, nothing written.
    let refused = [
        ("no client certificate", None),
        ("another CA's certificate", Some((certs.other_client_cert.as_path(), certs.other_client_key.as_path()))),
        ("a certificate without clientAuth", Some((certs.server_only_cert.as_path(), certs.server_only_key.as_path()))),
    ];
    for (n, (what, identity)) in refused.into_iter().enumerate() {
        let mut client = log_client(&https, &certs.ca, identity);
        let id = format!("00000000-0000-4000-8000-00000000000{n}");
        let result = runtime.block_on(client.append(append_request(&id)));
        let status = result.expect_err(&format!("{what}: the append was accepted"));
        assert!(
            !matches!(status.code(), tonic::Code::Unauthenticated | tonic::Code::PermissionDenied),
            "{what}: refused by the TLS handshake, not by the token check: {status:?}"
        );
    }

    // The process certificate (clientAuth among its usages) and a plain
    // client certificate of the cluster CA are accepted.
    let mut process = log_client(&https, &certs.ca, Some((&certs.cert, &certs.key)));
    let head = runtime.block_on(process.head(LogHeadRequest {})).expect("head").into_inner().head;
    // The log server recorded the tokens of its token file as it started.
    let tokens = klaxon_tests::auth::PEOPLE.len() as u64;
    assert_eq!(head, tokens, "the refused appends wrote nothing");
    let mut client = log_client(&https, &certs.ca, Some((&certs.client_cert, &certs.client_key)));
    let appended = runtime.block_on(client.append(append_request("00000000-0000-4000-8000-000000000009"))).unwrap();
    assert_eq!(appended.into_inner().first, tokens + 1);
    let head = runtime.block_on(process.head(LogHeadRequest {})).expect("head").into_inner().head;
    assert_eq!(head, tokens + 1);
    // Close the connections (the runtime drives them) before SIGTERM: the
    // server drains open connections before it exits.
    drop((client, process, context));
    drop(runtime);
    assert!(log.stop().success());
}

#[test]
fn the_cli_needs_a_client_certificate_when_klaxond_requires_one() {
    let dir = tempfile::tempdir().unwrap();
    let certs = klaxon_tests::tls::generate(dir.path());
    let config = dir.path().join("klaxon.toml");
    std::fs::write(&config, mtls_config(&certs)).unwrap();
    let server = Klaxond::start_with(&dir.path().join("data"), &["--config", path(&config)]);
    let https = server.url.replace("http://", "https://");
    let ca = path(&certs.ca);
    let (cert, key) = (path(&certs.client_cert), path(&certs.client_key));

    // Refused by the handshake: unreachable (exit 4), nothing written.
    let (other_cert, other_key) = (path(&certs.other_client_cert), path(&certs.other_client_key));
    for extra in [vec![], vec!["--client-cert", other_cert, "--client-key", other_key]] {
        let args = [&["--ca-cert", ca][..], &extra, &["report", "--title", "refused"]].concat();
        let out = klaxon(&https, "monitor", &args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(4), "{extra:?}: {stderr}");
        assert!(stderr.contains(&https), "names the server: {stderr}");
    }

    let id = klaxon_ok(
        &https,
        "monitor",
        &["--ca-cert", ca, "--client-cert", cert, "--client-key", key, "report", "--title", "over mTLS"],
    );
    assert_eq!(id.trim(), "INC-1");
    // The same from the environment.
    let out = klaxon_command(&https, "ana")
        .env("KLAXON_CA_CERT", ca)
        .env("KLAXON_CLIENT_CERT", cert)
        .env("KLAXON_CLIENT_KEY", key)
        .args(["--json", "list"])
        .output()
        .unwrap();
    let list = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(list.matches("\"id\":\"INC-").count(), 1, "only the accepted report was written: {list}");

    // An unreadable certificate file is a usage error naming the flag.
    let out = klaxon(
        &https,
        "ana",
        &["--ca-cert", ca, "--client-cert", "/nonexistent/client.pem", "--client-key", key, "list"],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--client-cert") && stderr.contains("/nonexistent/client.pem"), "{stderr}");
    assert!(server.stop().success());
}
