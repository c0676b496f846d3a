//! The conversation and the message rules, without sockets (the server is
//! tested over loopback in `tests/it/email.rs` and end to end in
//! `tests/e2e/email.rs`).

use super::mail::{self, reply_text, subject_incident};
use super::protocol::{Conversation, Limits, Reply, Step};
use super::{EmailOptions, MessageOutcome};

const LIMITS: Limits = Limits { message_bytes_max: 2048, recipients_max: 2 };

/// Runs `lines` through a conversation whose only allowed sender is
/// `desk@example.com`, and returns each answer as `code enhanced` (or
/// `DATA`).
fn converse(lines: &[&str]) -> Vec<String> {
    let mut conversation: Conversation<String> = Conversation::new("klaxon", LIMITS);
    lines
        .iter()
        .map(|line| {
            let step = conversation.command(line, |address| {
                if address == "desk@example.com" {
                    Ok("helpdesk".to_owned())
                } else {
                    Err(Reply::new(550, "5.7.1", format!("{address} is not allowed")))
                }
            });
            match step {
                Step::Reply(r) => format!("{} {}", r.code, r.enhanced).trim().to_owned(),
                Step::Close(r) => format!("close {} {}", r.code, r.enhanced),
                Step::Data => {
                    let envelope = conversation.take_envelope().expect("an envelope");
                    format!("DATA {} {} {}", envelope.sender, envelope.principal, envelope.recipients.join(","))
                }
            }
        })
        .collect()
}

#[test]
fn a_conversation_accepts_an_allowed_sender_and_refuses_the_rest_in_order() {
    let cases: &[(&[&str], &[&str])] = &[
        (
            &["EHLO client", "MAIL FROM:<Desk@Example.com>", "RCPT TO:<klaxon@x>", "DATA"],
            &["250", "250 2.1.0", "250 2.1.5", "DATA desk@example.com helpdesk klaxon@x"],
        ),
        (&["HELO client", "mail from: <desk@example.com> SIZE=100 BODY=8BITMIME"], &["250", "250 2.1.0"]),
        (&["EHLO client", "MAIL FROM:<eve@example.com>"], &["250", "550 5.7.1"]),
        (&["EHLO client", "MAIL FROM:<>"], &["250", "550 5.7.1"]),
        (&["EHLO client", "MAIL FROM:<desk@example.com> SIZE=2049"], &["250", "552 5.3.4"]),
        (&["EHLO client", "MAIL FROM:<desk@example.com> SIZE=x"], &["250", "501 5.5.4"]),
        (&["EHLO client", "MAIL FROM:<desk@example.com> SMTPUTF8"], &["250", "555 5.5.4"]),
        (&["MAIL FROM:<desk@example.com>"], &["503 5.5.1"]),
        (&["EHLO"], &["501 5.5.4"]),
        (&["EHLO c", "RCPT TO:<a@b>"], &["250", "503 5.5.1"]),
        (&["EHLO c", "MAIL FROM:<desk@example.com>", "DATA"], &["250", "250 2.1.0", "503 5.5.1"]),
        (
            &["EHLO c", "MAIL FROM:<desk@example.com>", "MAIL FROM:<desk@example.com>"],
            &["250", "250 2.1.0", "503 5.5.1"],
        ),
        (
            &["EHLO c", "MAIL FROM:<desk@example.com>", "RCPT TO:<a@b>", "RCPT TO:<c@d>", "RCPT TO:<e@f>"],
            &["250", "250 2.1.0", "250 2.1.5", "250 2.1.5", "452 4.5.3"],
        ),
        (
            &["EHLO c", "MAIL FROM:<desk@example.com>", "RSET", "RCPT TO:<a@b>", "NOOP", "QUIT"],
            &["250", "250 2.1.0", "250 2.0.0", "503 5.5.1", "250 2.0.0", "close 221 2.0.0"],
        ),
        (&["EHLO c", "MAIL FROM:desk@example.com"], &["250", "501 5.5.4"]),
        (
            &["STARTTLS", "AUTH PLAIN x", "VRFY x", "TURN", ""],
            &["502 5.5.1", "502 5.5.1", "252 2.5.2", "502 5.5.1", "500 5.5.2"],
        ),
    ];
    for (lines, expected) in cases {
        assert_eq!(converse(lines), *expected, "{lines:?}");
    }
}

#[test]
fn ehlo_announces_the_size_limit_and_replies_are_well_formed_on_the_wire() {
    let mut conversation: Conversation<()> = Conversation::new("klaxon", LIMITS);
    let Step::Reply(reply) = conversation.command("EHLO c", |_| Ok(())) else { panic!("a reply") };
    assert_eq!(
        String::from_utf8(reply.to_wire()).unwrap(),
        "250-klaxon greets c\r\n250-SIZE 2048\r\n250-8BITMIME\r\n250 ENHANCEDSTATUSCODES\r\n"
    );
    let refusal = Reply::new(550, "5.7.1", "a\rb");
    assert_eq!(String::from_utf8(refusal.to_wire()).unwrap(), "550 5.7.1 a b\r\n", "no CR smuggled into a reply");
    assert_eq!(
        String::from_utf8(conversation.greeting().to_wire()).unwrap(),
        "220 klaxon Klaxon incident intake ESMTP ready\r\n"
    );
}

#[test]
fn a_message_is_parsed_into_sender_subject_text_and_thread() {
    let raw = b"From: Help Desk <Desk@Example.com>\r\nTo: klaxon@example.com\r\nSubject: =?utf-8?q?Checkout_=C3=A9chec?=\r\n\
Message-ID: <abc@desk.example.com>\r\nIn-Reply-To: <klaxon.00112233445566778899aabbccddeeff@x>\r\n\
References: <first@x> <second@y>\r\nContent-Type: multipart/alternative; boundary=b\r\n\r\n\
--b\r\nContent-Type: text/html\r\n\r\n<p>HTML <b>only</b></p>\r\n--b\r\nContent-Type: text/plain\r\n\r\nPlain line 1\r\nline 2\r\n--b--\r\n";
    let parsed = mail::parse(raw).unwrap();
    assert_eq!(parsed.from.as_deref(), Some("desk@example.com"));
    assert_eq!(parsed.subject.as_deref(), Some("Checkout échec"));
    assert_eq!(parsed.body.trim_end(), "Plain line 1\nline 2");
    assert_eq!(parsed.message_id.as_deref(), Some("abc@desk.example.com"));
    assert_eq!(parsed.thread, ["klaxon.00112233445566778899aabbccddeeff@x", "first@x", "second@y"]);

    let html = b"From: d@e.f\r\nSubject: s\r\nContent-Type: text/html\r\n\r\n<p>Only <b>HTML</b> here</p>\r\n";
    assert!(mail::parse(html).unwrap().body.contains("Only HTML here"), "HTML becomes text");
    let refused = mail::parse(b"").unwrap_err();
    assert_eq!((refused.code, refused.enhanced), (554, "5.6.0"));
}

#[test]
fn replies_are_found_by_subject_tag_and_keep_only_their_own_text() {
    assert_eq!(subject_incident("Re: [INC-12] Checkout down").unwrap().unwrap().to_string(), "INC-12");
    assert_eq!(subject_incident("[inc-3]").unwrap().unwrap().to_string(), "INC-3");
    assert_eq!(subject_incident("[INC-x] what").unwrap().unwrap_err(), "INC-x");
    assert!(subject_incident("INC-12 without brackets").is_none());
    let body =
        "Customer says it is back.\n\nOn Mon, Klaxon wrote:\n> SEV1 INC-12: Checkout down\n> more\n\n-- \nDesk\n";
    assert_eq!(reply_text(body), "Customer says it is back.");
    assert_eq!(reply_text("> only quoted\n"), "");
}

#[test]
fn request_ids_depend_on_sender_and_message_id_only() {
    let a = mail::request_id("desk@example.com", Some("m1@x"), b"one");
    assert_eq!(a, mail::request_id("desk@example.com", Some("m1@x"), b"two"), "the bytes do not matter");
    assert_ne!(a, mail::request_id("other@example.com", Some("m1@x"), b"one"));
    assert_ne!(a, mail::request_id("desk@example.com", Some("m2@x"), b"one"));
    let b = mail::request_id("desk@example.com", None, b"one");
    assert_eq!(b, mail::request_id("desk@example.com", None, b"one"));
    assert_ne!(b, mail::request_id("desk@example.com", None, b"two"));
    assert!(a.starts_with("email-") && a.len() == 38, "{a}");
}

#[test]
fn options_are_validated_naming_the_key() {
    let mut options = EmailOptions::default();
    options.validate().unwrap();
    options.senders.insert("desk@example.com".into(), "helpdesk".into());
    options.validate().unwrap();
    options.senders.insert("not an address".into(), "x".into());
    assert!(options.validate().unwrap_err().starts_with("intake.email.senders: \"not an address\""));
    let options = EmailOptions { message_bytes_max: 10, ..EmailOptions::default() };
    assert!(options.validate().unwrap_err().starts_with("intake.email.message_bytes_max"));
    assert_eq!(MessageOutcome::of_refusal(&Reply::new(451, "4.3.0", "x")), MessageOutcome::Unavailable);
}
