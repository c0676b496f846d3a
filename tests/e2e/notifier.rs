//! The executive notifier through `klaxond up`: a real `https://` channel.

use std::time::Duration;

use klaxon_tests::receiver::Receiver;
use klaxon_tests::{Klaxond, klaxon_ok, tls};

const SECRET_ENV: &str = "KLAXON_E2E_EXEC_SECRET";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn executives_are_told_through_an_https_webhook_whose_private_ca_is_the_channels_ca_file() {
    let dir = tempfile::tempdir().unwrap();
    let certs = tls::generate(dir.path());
    let secret = format!("{:032x}", rand::random::<u128>());
    let receiver = Receiver::start_tls(&secret, &certs.cert, &certs.key).await;
    let config = format!(
        r#"
[[services]]
name = "checkout-api"
team = "payments"
tier = 1
escalation_policy = "payments"

[[channels]]
name = "execs"
kind = "webhook"
url = "{url}"
ca_file = "{ca}"
secret_env = "{SECRET_ENV}"
attempts_max = 3
backoff_initial_ms = 10
backoff_max_ms = 50

[notifier]
severities = ["sev1"]
executive_channels = ["execs"]
"#,
        url = receiver.url,
        ca = certs.ca.display(),
    );
    let path = dir.path().join("klaxon.toml");
    std::fs::write(&path, config).unwrap();
    let server = Klaxond::start_with_env(
        &dir.path().join("data"),
        &["--config", path.to_str().unwrap()],
        &[(SECRET_ENV, secret.as_str())],
    );
    assert!(receiver.url.starts_with("https://"), "{}", receiver.url);
    let out = klaxon_ok(&server.url, "monitor", &["report", "--title", "Checkout fails", "--service", "checkout-api"]);
    let id = out.split_whitespace().next().unwrap().to_owned();
    klaxon_ok(&server.url, "maria", &["declare", &id, "--severity", "1"]);

    let delivered = receiver.wait_for_delivered(1, Duration::from_secs(20)).await;
    assert_eq!(delivered.len(), 1, "{:?}", receiver.requests().len());
    let post = &delivered[0];
    assert!(post.signature_ok, "signed over TLS as over TCP");
    assert_eq!(post.body["kind"], "executive_post");
    assert_eq!(post.body["fields"]["incident"], id.as_str());
    assert_eq!(post.idempotency_key, format!("{id}/executive/sev1/execs"));
    assert!(server.stop().success());
}
