//! gRPC over TLS (rustls) with certificates made at run time: the CLI
//! reaches `klaxond up` over https when it trusts the CA, and not
//! otherwise; in the distributed topology every process serves TLS and the
//! services and gateway reach each other over it.

use klaxon_tests::cluster::Cluster;
use klaxon_tests::{Klaxond, klaxon, klaxon_ok};

fn tls_config(certs: &klaxon_tests::tls::Certificates) -> String {
    format!(
        "[tls]\ncert_file = {:?}\nkey_file = {:?}\nca_file = {:?}\n",
        certs.cert.display().to_string(),
        certs.key.display().to_string(),
        certs.ca.display().to_string()
    )
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
