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

/// `klaxon watch` with nothing open prints no item until something changes:
/// once the server took the subscription it says on stderr what it follows,
/// so an executive is not left before a blank terminal; the items follow on
/// stdout.
#[test]
fn watch_says_at_once_what_it_follows_also_when_nothing_is_open() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;

    let dir = tempfile::tempdir().unwrap();
    let server = Klaxond::start(dir.path());
    let mut watch = klaxon_tests::klaxon_command(&server.url, "ceo")
        .args(["watch", "--min-severity", "2", "--service", "payments"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn klaxon watch");
    let (stdout, stderr) = (watch.stdout.take().unwrap(), watch.stderr.take().unwrap());
    let (tx, lines) = std::sync::mpsc::channel();
    for (name, stream) in [("stdout", Box::new(stdout) as Box<dyn std::io::Read + Send>), ("stderr", Box::new(stderr))]
    {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                let _ = tx.send((name, line));
            }
        });
    }
    let first = lines.recv_timeout(Duration::from_secs(20)).expect("watch says something with nothing open");
    assert_eq!(
        first,
        (
            "stderr",
            "(watching the status feed: SEV1 to SEV2; services payments; the open incidents first, marked *, then \
             every change; Ctrl-C ends)"
                .to_owned()
        )
    );
    // And then the changes come on stdout.
    klaxon_ok(&server.url, "monitor", &["report", "--title", "checkout down", "--service", "payments"]);
    klaxon_ok(&server.url, "maria", &["declare", "INC-1", "--severity", "2"]);
    let (stream, item) = lines.recv_timeout(Duration::from_secs(20)).expect("the declared incident on the feed");
    assert_eq!(stream, "stdout");
    assert!(item.contains("INC-1 SEV2 declared"), "{item}");
    assert!(!item.starts_with('*'), "a change, not the snapshot: {item}");
    let _ = watch.kill();
    let _ = watch.wait();
    assert!(server.stop().success());
}
