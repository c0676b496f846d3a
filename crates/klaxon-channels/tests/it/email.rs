//! The e-mail channel against a real SMTP server process (aiosmtpd):
//! STARTTLS and implicit TLS with a certificate made for the run, login,
//! the derived `Message-ID`, threading, escaping, retries and refusals.

use std::collections::BTreeMap;

use klaxon_channels::{AttemptFailure, ChannelConfig, Channels, Delivery, Error, Notification, message_id};
use serde_json::json;

use crate::smtp::{self, Options, SmtpServer, Tls};

const PASSWORD_ENV: &str = "KLAXON_TEST_SMTP_PASSWORD";

/// A password made for the run: no secret in the repository.
fn password() -> String {
    format!("pw-{}-{:?}", std::process::id(), std::time::Instant::now())
}

fn notification() -> Notification {
    Notification {
        idempotency_key: "INC-7/executive/sev1/exec-mail".to_string(),
        kind: "executive_post".to_string(),
        title: "SEV1 INC-7: checkout <down> & out".to_string(),
        text: "Error rate 87% on checkout.\n<script>alert(1)</script>".to_string(),
        fields: BTreeMap::from([("incident".to_string(), json!("INC-7")), ("severity".to_string(), json!("sev1"))]),
        recipient: None,
        thread: None,
    }
}

/// An e-mail channel "mail" to `server`, as `tls`, logging in with
/// `password` when given, to `to`.
fn channel(server: &SmtpServer, tls: Tls, password: Option<&str>, to: &[&str], extra: ChannelConfig) -> Channels {
    let config = ChannelConfig {
        name: "mail".to_string(),
        kind: "email".to_string(),
        smtp_host: Some("127.0.0.1".to_string()),
        smtp_port: Some(server.port),
        tls: Some(
            match tls {
                Tls::Starttls => "starttls",
                Tls::Implicit => "implicit",
                Tls::None => "none",
            }
            .to_string(),
        ),
        ca_file: (tls != Tls::None).then(|| server.ca_file.display().to_string()),
        username: password.map(|_| smtp::USER.to_string()),
        password_env: password.map(|_| PASSWORD_ENV.to_string()),
        from: Some("Klaxon <klaxon@example.com>".to_string()),
        to: Some(to.iter().map(|s| s.to_string()).collect()),
        timeout_ms: Some(10_000),
        attempts_max: Some(3),
        backoff_initial_ms: Some(1),
        backoff_max_ms: Some(10),
        ..extra
    };
    let password = password.map(str::to_owned);
    Channels::new(&[config], move |var| if var == PASSWORD_ENV { password.clone() } else { None }).unwrap()
}

fn options(tls: Tls, password: Option<&str>) -> Options {
    Options { tls, password: password.map(str::to_owned), refuse: vec![], defer_data: 0 }
}

/// The decoded body of the MIME part of `content_type` (quoted-printable
/// or base64, as lettre chose), found with Python's own e-mail parser.
fn part(raw: &str, content_type: &str) -> String {
    let script = "import email,sys\nm=email.message_from_string(sys.stdin.read())\nfor p in m.walk():\n    if p.get_content_type()==sys.argv[1]: sys.stdout.write(p.get_payload(decode=True).decode())\n";
    let mut child = std::process::Command::new("/usr/bin/python3")
        .args(["-c", script, content_type])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(raw.as_bytes()).unwrap();
    String::from_utf8(child.wait_with_output().unwrap().stdout).unwrap().replace("\r\n", "\n")
}

#[tokio::test]
async fn starttls_with_login_sends_text_and_escaped_html_under_a_derived_message_id() {
    let dir = tempfile::tempdir().unwrap();
    let password = password();
    let server = SmtpServer::start(dir.path(), options(Tls::Starttls, Some(&password)));
    let channels = channel(&server, Tls::Starttls, Some(&password), &["execs@example.com"], ChannelConfig::default());

    let delivery = channels.deliver("mail", &notification()).await.unwrap();

    let id = message_id("INC-7/executive/sev1/exec-mail", "example.com");
    assert!(id.starts_with("<klaxon.") && id.ends_with("@example.com>"), "{id}");
    assert_eq!(delivery, Delivery { attempts: 1, status: 250, thread: Some(id.clone()) });
    let messages = server.messages();
    assert_eq!(messages.len(), 1);
    let mail = &messages[0];
    assert_eq!(mail.meta["tls"], json!(true), "sent after STARTTLS");
    assert_eq!(mail.meta["authenticated"], json!(true));
    assert_eq!(mail.meta["mail_from"], json!("klaxon@example.com"));
    assert_eq!(mail.meta["rcpt_tos"], json!(["execs@example.com"]));
    assert_eq!(mail.header("Message-ID"), Some(id));
    assert_eq!(mail.header("Subject").as_deref(), Some("SEV1 INC-7: checkout <down> & out"));
    assert_eq!(mail.header("X-Klaxon-Idempotency-Key").as_deref(), Some("INC-7/executive/sev1/exec-mail"));
    assert_eq!(mail.header("Auto-Submitted").as_deref(), Some("auto-generated"));
    assert_eq!(mail.header("In-Reply-To"), None, "a first post starts a thread");
    assert!(mail.header("Content-Type").unwrap().starts_with("multipart/alternative"));

    let text = part(&mail.raw, "text/plain");
    assert!(text.contains("Error rate 87% on checkout.\n<script>alert(1)</script>"), "{text}");
    assert!(text.contains("severity: sev1"), "{text}");
    let html = part(&mail.raw, "text/html");
    assert!(html.contains("checkout &lt;down&gt; &amp; out"), "{html}");
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "{html}");
    assert!(!html.contains("<script>"), "no markup from the notification: {html}");
}

#[tokio::test]
async fn a_follow_up_replies_in_the_thread_it_is_given() {
    let dir = tempfile::tempdir().unwrap();
    let server = SmtpServer::start(dir.path(), options(Tls::Starttls, None));
    let channels = channel(&server, Tls::Starttls, None, &["execs@example.com"], ChannelConfig::default());

    let first = channels.deliver("mail", &notification()).await.unwrap();
    let follow_up = Notification {
        idempotency_key: "INC-7/executive/update/3/exec-mail".to_string(),
        title: "SEV1 INC-7: checkout <down> & out".to_string(),
        text: "Mitigated: traffic moved to eu-west.".to_string(),
        thread: first.thread.clone(),
        ..notification()
    };
    let second = channels.deliver("mail", &follow_up).await.unwrap();

    assert_eq!(second.thread, first.thread, "the thread stays the first post's");
    let messages = server.messages();
    assert_eq!(messages.len(), 2);
    let root = first.thread.unwrap();
    let reply = &messages[1];
    assert_eq!(reply.header("In-Reply-To"), Some(root.clone()));
    assert_eq!(reply.header("References"), Some(root.clone()));
    assert_eq!(reply.header("Subject").as_deref(), Some("Re: SEV1 INC-7: checkout <down> & out"));
    let own = reply.header("Message-ID").unwrap();
    assert_ne!(own, root);
    assert_eq!(own, message_id("INC-7/executive/update/3/exec-mail", "example.com"));
}

#[tokio::test]
async fn a_retry_sends_the_same_message_with_the_same_message_id() {
    let dir = tempfile::tempdir().unwrap();
    let server = SmtpServer::start(dir.path(), Options { defer_data: 1, ..options(Tls::Starttls, None) });
    let channels = channel(&server, Tls::Starttls, None, &["execs@example.com"], ChannelConfig::default());

    let delivery = channels.deliver("mail", &notification()).await.unwrap();

    assert_eq!(delivery.attempts, 2, "451 to the first DATA, then accepted");
    let deferred = server.deferred();
    let messages = server.messages();
    assert_eq!((deferred.len(), messages.len()), (1, 1));
    assert_eq!(smtp::header(&deferred[0], "Message-ID"), messages[0].header("Message-ID"));
    assert_eq!(deferred[0], messages[0].raw, "the same bytes on every attempt");
}

#[tokio::test]
async fn a_refused_recipient_is_named_and_the_others_still_get_the_message() {
    let dir = tempfile::tempdir().unwrap();
    let refused = "gone@example.com";
    let server =
        SmtpServer::start(dir.path(), Options { refuse: vec![refused.to_string()], ..options(Tls::Starttls, None) });
    let channels =
        channel(&server, Tls::Starttls, None, &["execs@example.com", refused, "cto@example.com"], Default::default());

    let error = channels.deliver("mail", &notification()).await.unwrap_err();

    match &error {
        Error::RecipientsRefused { channel, refused: list, delivered_to } => {
            assert_eq!(channel, "mail");
            assert_eq!(*delivered_to, 2);
            assert_eq!(list.len(), 1);
            assert_eq!(list[0].address, refused);
            assert!(list[0].reply.contains("550"), "{}", list[0].reply);
        }
        other => panic!("expected RecipientsRefused, got {other:?}"),
    }
    let text = error.to_string();
    assert!(text.contains("recipient gone@example.com refused"), "{text}");
    let messages = server.messages();
    assert_eq!(messages.len(), 1, "one session, not retried");
    assert_eq!(messages[0].meta["rcpt_tos"], json!(["execs@example.com", "cto@example.com"]));
    assert!(server.deferred().is_empty());
}

#[tokio::test]
async fn every_recipient_refused_sends_nothing_and_is_not_retried() {
    let dir = tempfile::tempdir().unwrap();
    let server = SmtpServer::start(
        dir.path(),
        Options { refuse: vec!["gone@example.com".to_string()], ..options(Tls::Starttls, None) },
    );
    let channels = channel(&server, Tls::Starttls, None, &["gone@example.com"], ChannelConfig::default());

    let error = channels.deliver("mail", &notification()).await.unwrap_err();

    assert!(matches!(&error, Error::RecipientsRefused { delivered_to: 0, .. }), "{error:?}");
    assert!(server.messages().is_empty());
}

#[tokio::test]
async fn a_wrong_password_is_a_permanent_refusal() {
    let dir = tempfile::tempdir().unwrap();
    let server = SmtpServer::start(dir.path(), options(Tls::Starttls, Some("the-right-one")));
    let channels = channel(&server, Tls::Starttls, Some("a-wrong-one"), &["execs@example.com"], Default::default());

    let error = channels.deliver("mail", &notification()).await.unwrap_err();

    match &error {
        Error::Refused { channel, reply } => {
            assert_eq!(channel, "mail");
            assert!(reply.contains("535"), "{reply}");
        }
        other => panic!("expected Refused, got {other:?}"),
    }
    assert!(server.messages().is_empty());
}

#[tokio::test]
async fn a_server_without_starttls_is_refused_rather_than_used_in_clear() {
    let dir = tempfile::tempdir().unwrap();
    let server = SmtpServer::start(dir.path(), options(Tls::None, None));
    let channels = channel(&server, Tls::Starttls, None, &["execs@example.com"], ChannelConfig::default());

    let error = channels.deliver("mail", &notification()).await.unwrap_err();

    assert!(
        matches!(&error, Error::Refused { reply, .. } if reply == "127.0.0.1 does not offer STARTTLS, which the channel requires"),
        "{error:?}"
    );
    assert!(server.messages().is_empty());
}

#[tokio::test]
async fn implicit_tls_with_login_delivers() {
    let dir = tempfile::tempdir().unwrap();
    let password = password();
    let server = SmtpServer::start(dir.path(), options(Tls::Implicit, Some(&password)));
    let channels = channel(&server, Tls::Implicit, Some(&password), &["execs@example.com"], ChannelConfig::default());

    let delivery = channels.deliver("mail", &notification()).await.unwrap();

    assert_eq!(delivery.status, 250);
    let messages = server.messages();
    assert_eq!(messages.len(), 1);
    assert_eq!((&messages[0].meta["tls"], &messages[0].meta["authenticated"]), (&json!(true), &json!(true)));
}

#[tokio::test]
async fn a_certificate_from_an_untrusted_ca_is_not_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let server = SmtpServer::start(dir.path(), options(Tls::Starttls, None));
    // Without ca_file only the system's roots are trusted, and they did not
    // sign the test certificate.
    let config = ChannelConfig {
        name: "mail".into(),
        kind: "email".into(),
        smtp_host: Some("127.0.0.1".into()),
        smtp_port: Some(server.port),
        from: Some("klaxon@example.com".into()),
        to: Some(vec!["execs@example.com".into()]),
        attempts_max: Some(2),
        backoff_initial_ms: Some(1),
        backoff_max_ms: Some(1),
        ..ChannelConfig::default()
    };
    let channels = Channels::new(&[config], |_| None).unwrap();

    let error = channels.deliver("mail", &notification()).await.unwrap_err();

    match &error {
        Error::Exhausted { attempts: 2, last: AttemptFailure::Smtp { message }, .. } => {
            assert!(message.to_lowercase().contains("certificate"), "{message}");
        }
        other => panic!("expected a TLS failure, retried, got {other:?}"),
    }
    assert!(server.messages().is_empty());
}

#[tokio::test]
async fn people_map_a_notification_recipient_to_their_own_address() {
    let dir = tempfile::tempdir().unwrap();
    let server = SmtpServer::start(dir.path(), options(Tls::Starttls, None));
    let people = BTreeMap::from([("ana".to_string(), "Ana <ana@example.com>".to_string())]);
    let channels = channel(
        &server,
        Tls::Starttls,
        None,
        &["oncall@example.com"],
        ChannelConfig { people: Some(people), ..ChannelConfig::default() },
    );

    let page = Notification { recipient: Some("ana".to_string()), ..notification() };
    channels.deliver("mail", &page).await.unwrap();
    let unmapped = Notification { recipient: Some("carl".to_string()), ..notification() };
    channels.deliver("mail", &unmapped).await.unwrap();

    let messages = server.messages();
    assert_eq!(messages[0].meta["rcpt_tos"], json!(["ana@example.com"]));
    assert_eq!(messages[0].header("To").as_deref(), Some("Ana <ana@example.com>"));
    assert_eq!(messages[1].meta["rcpt_tos"], json!(["oncall@example.com"]), "unmapped: the channel's list");
}

#[tokio::test]
async fn an_unreachable_server_is_retried_within_the_limits() {
    // A port nothing listens on: bind one, then free it.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let config = ChannelConfig {
        name: "mail".into(),
        kind: "email".into(),
        smtp_host: Some("127.0.0.1".into()),
        smtp_port: Some(port),
        tls: Some("none".into()),
        from: Some("klaxon@example.com".into()),
        to: Some(vec!["execs@example.com".into()]),
        attempts_max: Some(3),
        backoff_initial_ms: Some(1),
        backoff_max_ms: Some(5),
        ..ChannelConfig::default()
    };
    let channels = Channels::new(&[config], |_| None).unwrap();

    let error = channels.deliver("mail", &notification()).await.unwrap_err();

    assert!(matches!(&error, Error::Exhausted { attempts: 3, last: AttemptFailure::Smtp { .. }, .. }), "{error:?}");
}
