//! The e-mail intake of a real `klaxond up`, driven by real SMTP clients:
//! Debian's `swaks` (a process) and `lettre`. Messages become reports and
//! replies become notes (a reply to the very page e-mail Klaxon sent to a
//! real SMTP server, aiosmtpd), read back over gRPC with the `klaxon` CLI; every
//! refusal carries the SMTP code that says why and writes nothing; the
//! same message twice writes once, also after a `kill -9`.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use klaxon_tests::config::{Paged, PagingConfig};
use klaxon_tests::{Klaxond, klaxon_json, klaxon_ok};
use serde_json::Value;

/// Who may send: the help desk (listed in `help_desk_reporters`), a
/// manager, and a reviewer (who may not report at all).
const EMAIL: &str = r#"
[auth]
help_desk_reporters = ["desk"]

[intake.email]
message_bytes_max = 8192
[intake.email.senders]
"desk@example.com" = "desk"
"maria@example.com" = "maria"
"rita@example.com" = "rita"
"#;

/// `klaxond up` with the e-mail intake on a free port, configured by
/// `config` (written into `dir`).
fn start(dir: &Path, config: &str) -> Klaxond {
    let path = dir.join("klaxon.toml");
    std::fs::write(&path, config).unwrap();
    let server =
        Klaxond::start_with(&dir.join("data"), &["--config", path.to_str().unwrap(), "--smtp-listen", "127.0.0.1:0"]);
    assert!(server.smtp_address.is_some(), "klaxond says where its e-mail intake listens");
    server
}

/// Runs `swaks` against `smtp` and returns whether it exited 0 and what it
/// printed (the whole conversation).
fn swaks(smtp: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new("swaks")
        .args(["--server", smtp, "--to", "klaxon@example.com", "--timeout", "30"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run swaks (Debian package swaks)");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// Sends with swaks and expects `reply` (a code and text prefix) as the
/// server's last word on the message.
fn swaks_expect(smtp: &str, args: &[&str], reply: &str) -> String {
    let (ok, out) = swaks(smtp, args);
    assert!(out.contains(reply), "expected {reply:?} from the server; swaks said:\n{out}");
    assert_eq!(ok, reply.starts_with('2'), "swaks' exit status follows the reply:\n{out}");
    out
}

/// The log head once every service has processed it (the end-to-end
/// barrier), so that a later equal head means nothing was written since.
fn head(server: &Klaxond) -> u64 {
    let http = server.http_address.as_deref().expect("an HTTP address");
    klaxon_tests::metrics::settle(http, &[http])
}

fn show(server: &Klaxond, id: &str) -> Value {
    let shown = klaxon_json(&server.url, "maria", &["show", id]);
    if shown.get("incident").is_some() { shown["incident"].clone() } else { shown }
}

fn email_count(server: &Klaxond, outcome: &str) -> f64 {
    let metrics = klaxon_tests::metrics::scrape(server.http_address.as_deref().unwrap());
    metrics.get(&format!("klaxon_email_messages_total{{outcome=\"{outcome}\"}}")).copied().unwrap_or(-1.0)
}

/// A real SMTP server (Debian's aiosmtpd, with the e-mail channel tests'
/// script) that saves what Klaxon's e-mail channel sends; killed when
/// dropped.
struct MailSink {
    child: std::process::Child,
    port: u16,
    folder: std::path::PathBuf,
}

impl Drop for MailSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl MailSink {
    fn start(dir: &Path) -> MailSink {
        use std::io::BufRead;
        let folder = dir.join("sent");
        std::fs::create_dir_all(&folder).unwrap();
        let config = dir.join("sink.json");
        std::fs::write(&config, serde_json::json!({ "folder": folder, "tls": "none" }).to_string()).unwrap();
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../crates/klaxon-channels/tests/it/smtp_server.py");
        let python = std::env::var("KLAXON_PYTHON").unwrap_or_else(|_| "/usr/bin/python3".into());
        let mut child = Command::new(python)
            .arg(script)
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start aiosmtpd (Debian package python3-aiosmtpd)");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let port = line.trim().parse().unwrap_or_else(|_| panic!("the SMTP sink did not start: {line:?}"));
        MailSink { child, port, folder }
    }

    /// The first message saved, waiting for it (at most 20 s).
    fn first_message(&self) -> String {
        let path = self.folder.join("message-1.eml");
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(raw) = std::fs::read_to_string(&path) {
                return raw;
            }
            assert!(std::time::Instant::now() < deadline, "Klaxon sent no e-mail to the sink");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The value of header `name` in a raw message (unfolded).
fn header(raw: &str, name: &str) -> Option<String> {
    let head = raw.split("\r\n\r\n").next()?;
    let mut value: Option<String> = None;
    for line in head.split("\r\n") {
        match (&mut value, line.starts_with([' ', '\t'])) {
            (Some(v), true) => v.push_str(line),
            (Some(_), false) => break,
            (None, _) => {
                if let Some((n, v)) = line.split_once(':')
                    && n.eq_ignore_ascii_case(name)
                {
                    value = Some(v.trim().to_owned());
                }
            }
        }
    }
    value
}

#[test]
fn help_desk_mail_becomes_reports_and_replies_become_internal_notes() {
    let dir = tempfile::tempdir().unwrap();
    let sink = MailSink::start(dir.path());
    // The paging tests' configuration, paging ana by e-mail to the sink.
    let paging = PagingConfig {
        receiver: "unused",
        secret_env: "UNUSED",
        escalate_after_seconds: 600,
        notify_executives: false,
    };
    let webhook = "kind = \"webhook\"\nurl = \"unused\"\nsecret_env = \"UNUSED\"\n";
    let email = format!(
        "kind = \"email\"\nsmtp_host = \"127.0.0.1\"\nsmtp_port = {}\ntls = \"none\"\n\
         from = \"Klaxon <klaxon@klaxon.example.com>\"\npeople = {{ ana = \"ana@example.com\" }}\n",
        sink.port
    );
    let toml = paging.toml();
    assert!(toml.contains(webhook), "the paging configuration still has its webhook channel");
    let server = start(dir.path(), &format!("{}\n{EMAIL}", toml.replace(webhook, &email)));
    let smtp = server.smtp_address.clone().expect("the e-mail intake listens");

    // The help desk reports: subject → title, text → description, source
    // help_desk (desk is in help_desk_reporters), reporter desk.
    swaks_expect(
        &smtp,
        &[
            "--from",
            "desk@example.com",
            "--header",
            "Subject: Checkout fails for ACME",
            "--header",
            "Message-Id: <desk-1@desk.example.com>",
            "--body",
            "ACME cannot pay since 10:00.\nOrder 4711 failed.",
        ],
        "250 2.0.0 reported as INC-1",
    );
    let first = show(&server, "INC-1");
    assert_eq!(first["title"], "Checkout fails for ACME");
    assert!(first["description"].as_str().unwrap().contains("ACME cannot pay since 10:00."), "{first:#}");
    assert_eq!(first["source"], "help_desk");
    assert_eq!(first["reporter"], "desk");
    assert_eq!(first["status"], "reported");

    // A manager's mail reports as the manager would: source manual.
    swaks_expect(
        &smtp,
        &["--from", "maria@example.com", "--header", "Subject: Search is slow", "--body", "Seen by three customers."],
        "250 2.0.0 reported as INC-2",
    );
    let second = show(&server, "INC-2");
    assert_eq!((second["source"].as_str(), second["reporter"].as_str()), (Some("manual"), Some("maria")));

    // A reply naming [INC-1] in its subject is an internal note by desk,
    // without the quoted message.
    swaks_expect(
        &smtp,
        &[
            "--from",
            "desk@example.com",
            "--header",
            "Subject: Re: [INC-1] Checkout fails for ACME",
            "--body",
            "ACME confirms payments work again.\n\nOn Sunday desk wrote:\n> ACME cannot pay since 10:00.",
        ],
        "250 2.0.0 noted on INC-1",
    );
    let noted = show(&server, "INC-1");
    let update = noted["latest_updates"].as_array().unwrap().last().cloned().expect("the note");
    assert_eq!(update["text"], "ACME confirms payments work again.");
    assert_eq!(update["by"], "desk");
    assert_eq!(update["audience"], "internal");

    // A paged incident: Klaxon e-mails the page to ana; the reply to that
    // very message (In-Reply-To its Message-ID) is a note on the incident,
    // whatever its subject says.
    let out = klaxon_ok(
        &server.url,
        "monitor",
        &["report", "--title", "checkout down", "--service", "payments", "--customer", "acme", "--customer", "globex"],
    );
    assert!(out.starts_with("INC-3"), "{out}");
    let page = sink.first_message();
    let page_message_id = header(&page, "Message-ID").expect("the page has a Message-ID");
    assert_eq!(page_message_id, klaxon_channels::message_id("INC-3-P1", "klaxon.example.com"));
    let page_subject = header(&page, "Subject").expect("the page has a subject");
    assert!(page_subject.contains("INC-3"), "{page_subject}");
    swaks_expect(
        &smtp,
        &[
            "--from",
            "desk@example.com",
            "--header",
            &format!("Subject: Re: {page_subject}"),
            "--header",
            &format!("In-Reply-To: {page_message_id}"),
            "--header",
            &format!("References: <unrelated@desk.example.com> {page_message_id}"),
            "--body",
            "Desk: 40 tickets about this so far.",
        ],
        "250 2.0.0 noted on INC-3",
    );
    let paged_incident = show(&server, "INC-3");
    let update = paged_incident["latest_updates"].as_array().unwrap().last().cloned().expect("the note");
    assert_eq!(update["text"], "Desk: 40 tickets about this so far.");
    assert_eq!(update["by"], "desk");

    assert_eq!(email_count(&server, "reported"), 2.0);
    assert_eq!(email_count(&server, "noted"), 2.0);
}

#[test]
fn refusals_carry_the_code_that_says_why_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), EMAIL);
    let smtp = server.smtp_address.clone().unwrap();
    swaks_expect(
        &smtp,
        &["--from", "desk@example.com", "--header", "Subject: Printer on fire", "--body", "Really."],
        "250 2.0.0 reported as INC-1",
    );
    let big_body = vec!["x".repeat(70); 150].join("\n");
    let klaxon_id_unknown = klaxon_channels::message_id("INC-1-P9", "klaxon.example.com");
    let in_reply_to = format!("In-Reply-To: {klaxon_id_unknown}");
    let cases: &[(&str, Vec<&str>, &str)] = &[
        ("an unknown sender", vec!["--from", "eve@example.com"], "550 5.7.1"),
        ("a sender whose principal may not report", vec!["--from", "rita@example.com"], "550 5.7.1"),
        (
            "a From: header that is not the envelope sender",
            vec!["--from", "desk@example.com", "--header", "From: maria@example.com"],
            "550 5.7.1",
        ),
        ("no subject", vec!["--from", "desk@example.com", "--header", "Subject:  "], "550 5.6.0"),
        (
            "a control character in the text",
            vec!["--from", "desk@example.com", "--header", "Subject: Bell", "--body", "ring \u{7} ring"],
            "550 5.6.0",
        ),
        (
            "a message over message_bytes_max",
            vec!["--from", "desk@example.com", "--header", "Subject: Huge", "--body", &big_body],
            "552 5.3.4",
        ),
        (
            "a reply to an incident that does not exist",
            vec!["--from", "desk@example.com", "--header", "Subject: Re: [INC-99] hello"],
            "550 5.1.1",
        ),
        (
            "a reply to a Klaxon message Klaxon never sent",
            vec!["--from", "desk@example.com", "--header", "Subject: Re: something", "--header", &in_reply_to],
            "550 5.1.1",
        ),
    ];
    let before = head(&server);
    for (what, args, code) in cases {
        let out = swaks_expect(&smtp, args, code);
        assert_eq!(head(&server), before, "{what} wrote something:\n{out}");
    }
    // A size declared in MAIL FROM is refused before the message is sent.
    let mut stream = std::net::TcpStream::connect(&smtp).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    let mut say = |command: &str| -> String {
        use std::io::{BufRead, Write};
        if !command.is_empty() {
            stream.write_all(format!("{command}\r\n").as_bytes()).unwrap();
        }
        loop {
            line.clear();
            reader.read_line(&mut line).unwrap();
            if line.as_bytes().get(3) != Some(&b'-') {
                return line.trim_end().to_owned();
            }
        }
    };
    assert!(say("").starts_with("220 "));
    assert!(say("EHLO tester").starts_with("250 "));
    assert!(say("MAIL FROM:<desk@example.com> SIZE=100000").starts_with("552 5.3.4"));
    assert!(say("QUIT").starts_with("221 "));

    assert_eq!(head(&server), before, "no refusal wrote anything");
    assert_eq!(klaxon_json(&server.url, "maria", &["list"])["incidents"].as_array().unwrap().len(), 1);
    assert_eq!(email_count(&server, "unknown_sender"), 3.0, "eve, rita and the forged From:");
    assert_eq!(email_count(&server, "too_large"), 2.0);
    assert_eq!(email_count(&server, "malformed"), 2.0);
    assert_eq!(email_count(&server, "unknown_incident"), 2.0);
}

#[test]
fn the_same_message_twice_writes_once_also_after_a_kill_and_a_restart() {
    use lettre::{Message, SmtpTransport, Transport};
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), EMAIL);
    let smtp = server.smtp_address.clone().unwrap();
    let message = |body: &str| {
        Message::builder()
            .from("Help Desk <desk@example.com>".parse().unwrap())
            .to("klaxon@example.com".parse().unwrap())
            .subject("Payments API answers 500")
            .message_id(Some("<lettre-1@desk.example.com>".into()))
            .body(body.to_owned())
            .unwrap()
    };
    let send = |smtp: &str, message: &Message| {
        let (host, port) = smtp.rsplit_once(':').unwrap();
        let transport = SmtpTransport::builder_dangerous(host).port(port.parse().unwrap()).build();
        transport.send(message)
    };
    let reply =
        |response: lettre::transport::smtp::response::Response| response.message().collect::<Vec<_>>().join(" ");

    let first = send(&smtp, &message("Since 09:12 every call fails.")).expect("accepted");
    assert_eq!(reply(first), "2.0.0 reported as INC-1");
    let written = head(&server);
    // The same Message-ID from the same sender, even with another body:
    // answered 250 again, nothing written.
    let again = send(&smtp, &message("Since 09:12 every call fails (resent).")).expect("accepted again");
    assert_eq!(reply(again), "2.0.0 already reported as INC-1");
    assert_eq!(head(&server), written);

    // Refused by lettre's client too: a permanent error with the code.
    let refused = Message::builder()
        .from("eve@example.com".parse().unwrap())
        .to("klaxon@example.com".parse().unwrap())
        .subject("let me in")
        .body(String::from("x"))
        .unwrap();
    let error = send(&smtp, &refused).expect_err("an unknown sender");
    assert!(error.is_permanent() && error.to_string().contains("5.7.1"), "{error}");

    // kill -9 right after the 250, and a restart: the report is there and
    // the same message still writes nothing.
    server.kill();
    let server = start(dir.path(), EMAIL);
    let smtp = server.smtp_address.clone().unwrap();
    assert_eq!(head(&server), written, "what was acknowledged survived the kill");
    let after = send(&smtp, &message("Since 09:12 every call fails.")).expect("accepted after the restart");
    assert_eq!(reply(after), "2.0.0 already reported as INC-1");
    assert_eq!(head(&server), written);
    let incident = show(&server, "INC-1");
    assert_eq!(incident["title"], "Payments API answers 500");
    assert_eq!(incident["report_count"], 1);
}

#[test]
fn serve_intake_runs_the_email_intake_in_the_distributed_topology() {
    // `serve paging` needs a [paging] table: the paging tests' one.
    let paged = Paged::start(600, false, &format!("[intake]\nsmtp_listen = \"127.0.0.1:0\"\n{EMAIL}"));
    let cluster = klaxon_tests::cluster::Cluster::start(paged.dir.path(), &paged.config, &paged.env());
    let smtp = cluster.smtp_address();
    swaks_expect(
        &smtp,
        &["--from", "desk@example.com", "--header", "Subject: VPN down in Lisbon", "--body", "Since 08:00."],
        "250 2.0.0 reported as INC-1",
    );
    // Acknowledged by intake means durable on the log server: the gateway
    // (another process) reads it back.
    let incident = klaxon_json(&cluster.url, "maria", &["show", "INC-1"]);
    let incident = if incident.get("incident").is_some() { incident["incident"].clone() } else { incident };
    assert_eq!(incident["title"], "VPN down in Lisbon");
    assert_eq!(incident["source"], "help_desk");
}
