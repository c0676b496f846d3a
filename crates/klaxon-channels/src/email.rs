//! The e-mail channel: a notification rendered once as a MIME message
//! (plain text and an escaped HTML alternative), sent in one SMTP session
//! per attempt through lettre's client.
//!
//! The session is driven command by command (not with lettre's `send`) so
//! that each recipient's answer is known: a recipient the server refuses
//! for good (`5xx` to `RCPT TO`) is named in [`Error::RecipientsRefused`]
//! while the others still get the message; a recipient refused for now
//! (`4xx`) makes the whole attempt retryable.

use std::fmt::Write as _;
use std::time::Duration;

use lettre::Address;
use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, Certificate, TlsParameters};
use lettre::transport::smtp::commands::{Data, Mail, Rcpt, Rset};
use lettre::transport::smtp::extension::{ClientId, MailParameter};
use sha2::{Digest, Sha256};
use tokio::time::timeout;

use crate::backoff::seed_from;
use crate::config::{SmtpSpec, SmtpTls};
use crate::error::{RefusedRecipient, error_chain};
use crate::{AttemptFailure, Delivery, Error, Notification};

/// The header carrying the notification's idempotency key.
const KEY_HEADER: &str = "X-Klaxon-Idempotency-Key";

/// Delivers `notification` by e-mail within the channel's limits: every
/// attempt sends the same bytes (same `Message-ID`, same MIME boundary).
pub(crate) async fn deliver(channel: &str, spec: &SmtpSpec, notification: &Notification) -> Result<Delivery, Error> {
    let key = notification.idempotency_key.as_str();
    let recipients = recipients(spec, notification).map_err(|message| Error::InvalidNotification { message })?;
    let id = message_id(key, spec.from.email.domain());
    let bytes = render(spec, notification, &recipients, &id)?;
    let addresses: Vec<Address> = recipients.iter().map(|m| m.email.clone()).collect();
    let thread = Some(notification.thread.clone().unwrap_or_else(|| id.clone()));

    let seed = seed_from(key.as_bytes());
    let limits = &spec.limits;
    let mut attempts = 0;
    loop {
        attempts += 1;
        let outcome = match timeout(limits.timeout, session(spec, &addresses, &bytes)).await {
            Ok(outcome) => outcome,
            Err(_elapsed) => {
                Err(Failure::Retryable(AttemptFailure::Timeout { timeout_ms: limits.timeout.as_millis() as u64 }))
            }
        };
        match outcome {
            Ok(Sent { code, refused }) if refused.is_empty() => {
                tracing::debug!(channel, idempotency_key = key, attempts, code, "e-mail delivered");
                return Ok(Delivery { attempts, status: code, thread });
            }
            Ok(Sent { refused, .. }) => {
                let delivered_to = addresses.len() - refused.len();
                tracing::warn!(
                    channel,
                    idempotency_key = key,
                    refused = refused.len(),
                    delivered_to,
                    "recipients refused"
                );
                return Err(Error::RecipientsRefused { channel: channel.to_owned(), refused, delivered_to });
            }
            Err(Failure::Permanent(reply)) => {
                tracing::warn!(channel, idempotency_key = key, attempts, %reply, "e-mail refused, not retrying");
                return Err(Error::Refused { channel: channel.to_owned(), reply });
            }
            Err(Failure::Retryable(failure)) => {
                if attempts >= limits.attempts_max {
                    tracing::warn!(channel, idempotency_key = key, attempts, %failure, "e-mail undelivered, giving up");
                    return Err(Error::Exhausted { channel: channel.to_owned(), attempts, last: failure });
                }
                let delay = limits.backoff.delay(attempts - 1, seed);
                tracing::info!(
                    channel,
                    idempotency_key = key,
                    attempts,
                    %failure,
                    delay_ms = delay.as_millis() as u64,
                    "e-mail attempt failed, retrying"
                );
                tokio::time::sleep(delay).await;
            }
        }
    }
}

/// Who gets the notification: the address `people` maps its recipient
/// to, else the channel's `to`.
fn recipients(spec: &SmtpSpec, notification: &Notification) -> Result<Vec<Mailbox>, String> {
    if let Some(person) = notification.recipient.as_deref().and_then(|name| spec.people.get(name)) {
        return Ok(vec![person.clone()]);
    }
    if spec.to.is_empty() {
        let name = notification.recipient.as_deref().unwrap_or("<none>");
        return Err(format!("no address for recipient {name:?}: not in people, and the channel has no `to`"));
    }
    Ok(spec.to.clone())
}

/// The `Message-ID` of the notification with idempotency key `key`:
/// `<klaxon.` + 32 hex digits of SHA-256 of the key + `@domain>`. The same
/// key always gives the same id, so a retry or a redelivery after a crash
/// is recognisable (and deduplicated by the mailbox providers that do).
pub fn message_id(key: &str, domain: &str) -> String {
    let digest = Sha256::digest(format!("klaxon-message-id\0{key}").as_bytes());
    let mut id = String::with_capacity(60 + domain.len());
    id.push_str("<klaxon.");
    for byte in &digest[..16] {
        let _ = write!(id, "{byte:02x}");
    }
    let _ = write!(id, "@{domain}>");
    id
}

/// The message as sent: headers (threading, idempotency key,
/// `Auto-Submitted`) and a `multipart/alternative` body.
fn render(spec: &SmtpSpec, n: &Notification, to: &[Mailbox], id: &str) -> Result<Vec<u8>, Error> {
    let subject = match &n.thread {
        Some(_) => format!("Re: {}", one_line(&n.title)),
        None => one_line(&n.title),
    };
    let mut builder = lettre::Message::builder()
        .from(spec.from.clone())
        .subject(subject)
        .message_id(Some(id.to_owned()))
        .raw_header(HeaderValue::new(HeaderName::new_from_ascii_str(KEY_HEADER), n.idempotency_key.clone()))
        .raw_header(HeaderValue::new(HeaderName::new_from_ascii_str("Auto-Submitted"), "auto-generated".into()));
    for mailbox in to {
        builder = builder.to(mailbox.clone());
    }
    if let Some(thread) = &n.thread {
        builder = builder.in_reply_to(thread.clone()).references(thread.clone());
    }
    let body = MultiPart::alternative()
        .singlepart(SinglePart::builder().header(ContentType::TEXT_PLAIN).body(plain_text(n)))
        .singlepart(SinglePart::builder().header(ContentType::TEXT_HTML).body(html(n)));
    let message = builder
        .multipart(body)
        .map_err(|e| Error::InvalidNotification { message: format!("cannot build the e-mail: {e}") })?;
    let bytes = message.formatted();
    if bytes.len() > crate::NOTIFICATION_BODY_BYTES_MAX {
        return Err(Error::InvalidNotification {
            message: format!(
                "rendered e-mail is {} bytes, more than the {} allowed",
                bytes.len(),
                crate::NOTIFICATION_BODY_BYTES_MAX
            ),
        });
    }
    Ok(bytes)
}

/// A header-safe single line.
fn one_line(text: &str) -> String {
    text.split(['\r', '\n']).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" ")
}

/// The plain-text part: title, text, fields, and the key.
pub(crate) fn plain_text(n: &Notification) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{}\n", n.title);
    if !n.text.is_empty() {
        let _ = writeln!(out, "{}\n", n.text);
    }
    for (name, value) in n.field_texts() {
        let _ = writeln!(out, "{name}: {value}");
    }
    let _ = write!(out, "\n-- \nSent by Klaxon ({})\n", n.idempotency_key);
    out
}

/// The HTML part: the same content, every text escaped.
pub(crate) fn html(n: &Notification) -> String {
    let mut out = String::from(
        "<!DOCTYPE html>\n<html><body style=\"font-family:system-ui,sans-serif;line-height:1.4;color:#1b1f24\">\n",
    );
    let _ = writeln!(out, "<h2 style=\"margin:0 0 .5em\">{}</h2>", escape_html(&n.title));
    if !n.text.is_empty() {
        let text = escape_html(&n.text).replace('\n', "<br>\n");
        let _ = writeln!(out, "<p>{text}</p>");
    }
    let mut fields = n.field_texts().peekable();
    if fields.peek().is_some() {
        out.push_str("<table style=\"border-collapse:collapse\">\n");
        for (name, value) in fields {
            let _ = writeln!(
                out,
                "<tr><th style=\"text-align:left;padding:2px 12px 2px 0\">{}</th><td>{}</td></tr>",
                escape_html(name),
                escape_html(&value)
            );
        }
        out.push_str("</table>\n");
    }
    let _ = writeln!(
        out,
        "<p style=\"color:#59636e;font-size:smaller\">Sent by Klaxon ({})</p>\n</body></html>",
        escape_html(&n.idempotency_key)
    );
    out
}

/// Escapes the five characters HTML treats specially, for text and
/// attribute values alike (the e-mail's HTML part, the status page).
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// What a completed session did: the reply code to the message, and the
/// recipients refused for good (the others got it).
struct Sent {
    code: u16,
    refused: Vec<RefusedRecipient>,
}

/// Why an attempt failed.
enum Failure {
    /// The server refused for good (`5xx`), or cannot do what the channel
    /// requires (no STARTTLS, no usable login mechanism): no retry.
    Permanent(String),
    /// Worth another attempt: network, TLS, timeout, `4xx`.
    Retryable(AttemptFailure),
}

fn classify(error: &lettre::transport::smtp::Error) -> Failure {
    if error.is_permanent() || error.is_client() {
        Failure::Permanent(error.to_string())
    } else {
        Failure::Retryable(AttemptFailure::Smtp { message: error_chain(error) })
    }
}

fn tls_parameters(spec: &SmtpSpec) -> Result<TlsParameters, Failure> {
    let mut builder = TlsParameters::builder(spec.host.clone());
    if let Some(pem) = &spec.ca_pem {
        let certificate = Certificate::from_pem(pem).map_err(|e| Failure::Permanent(format!("ca_file: {e}")))?;
        builder = builder.add_root_certificate(certificate);
    }
    builder.build_rustls().map_err(|e| Failure::Permanent(format!("TLS setup: {e}")))
}

/// One SMTP session: connect (TLS from the start, or STARTTLS), log in,
/// `MAIL FROM`, one `RCPT TO` per address, `DATA`.
async fn session(spec: &SmtpSpec, to: &[Address], message: &[u8]) -> Result<Sent, Failure> {
    let hello = ClientId::default();
    let implicit = match spec.tls {
        SmtpTls::Implicit => Some(tls_parameters(spec)?),
        SmtpTls::StartTls | SmtpTls::None => None,
    };
    let socket_timeout = Some(spec.limits.timeout.min(Duration::from_secs(60)));
    let mut connection =
        AsyncSmtpConnection::connect_tokio1((spec.host.as_str(), spec.port), socket_timeout, &hello, implicit, None)
            .await
            .map_err(|e| classify(&e))?;
    if spec.tls == SmtpTls::StartTls {
        if !connection.can_starttls() {
            connection.abort().await;
            return Err(Failure::Permanent(format!(
                "{} does not offer STARTTLS, which the channel requires",
                spec.host
            )));
        }
        let parameters = match tls_parameters(spec) {
            Ok(parameters) => parameters,
            Err(failure) => {
                connection.abort().await;
                return Err(failure);
            }
        };
        // A failed upgrade leaves no usable stream (not even for QUIT):
        // dropping the connection closes the socket.
        connection.starttls(parameters, &hello).await.map_err(|e| classify(&e))?;
    }
    let result = transaction(&mut connection, spec, to, message).await;
    match &result {
        Ok(_) => {
            let _ = connection.quit().await;
        }
        Err(_) => connection.abort().await,
    }
    result
}

async fn transaction(
    connection: &mut AsyncSmtpConnection,
    spec: &SmtpSpec,
    to: &[Address],
    message: &[u8],
) -> Result<Sent, Failure> {
    if let Some((user, password)) = &spec.credentials {
        let credentials = Credentials::new(user.clone(), password.text().to_owned());
        connection.auth(&[Mechanism::Plain, Mechanism::Login], &credentials).await.map_err(|e| classify(&e))?;
    }
    let mut parameters = Vec::new();
    if !spec.from.email.to_string().is_ascii() || to.iter().any(|a| !a.to_string().is_ascii()) {
        parameters.push(MailParameter::SmtpUtfEight);
    }
    connection.command(Mail::new(Some(spec.from.email.clone()), parameters)).await.map_err(|e| classify(&e))?;
    let mut refused = Vec::new();
    for address in to {
        match connection.command(Rcpt::new(address.clone(), vec![])).await {
            Ok(_) => {}
            Err(e) if e.is_permanent() => {
                refused.push(RefusedRecipient { address: address.to_string(), reply: e.to_string() });
            }
            Err(e) => return Err(classify(&e)),
        }
    }
    if refused.len() == to.len() {
        let _ = connection.command(Rset).await;
        return Ok(Sent { code: 0, refused });
    }
    connection.command(Data).await.map_err(|e| classify(&e))?;
    let reply = connection.message(message).await.map_err(|e| classify(&e))?;
    Ok(Sent { code: reply.code().into(), refused })
}
