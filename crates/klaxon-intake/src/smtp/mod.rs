//! The e-mail intake: an SMTP listener for help desks. A message from an
//! allowed sender becomes a report; a reply to an incident's mail becomes
//! an internal note on that incident.
//!
//! - **Who.** The envelope sender (`MAIL FROM`) must be in the allow list
//!   (`[intake.email] senders`, address → principal), and the `From:`
//!   header must name the same address: both are checked, so neither a
//!   forged header nor a forged envelope alone gets in. The principal must
//!   hold a token now (a revoked principal's mail is refused) and a role
//!   the authorization table lets report (and post updates, for notes),
//!   unscoped for a report (a mailed report names no service). Its report
//!   has source `help_desk` when `[auth] help_desk_reporters` lists it,
//!   else the source it would have over gRPC (`manual`, `api`,
//!   `executive`: [`klaxon_auth::sources`]).
//! - **What.** Subject → title, the text body (the text/plain part, else
//!   the HTML part as text) → description, through the domain's text rule
//!   (trimmed; control characters other than newline and tab refused).
//! - **Replies.** A message whose `In-Reply-To` or `References` names the
//!   `Message-ID` of a message Klaxon sent for an incident (see
//!   [`threads`]), or whose subject holds `[INC-12]`, is a reply: its new
//!   text (quoted lines and signature dropped) becomes an internal update
//!   of that incident. A Klaxon id Klaxon does not know, or an incident
//!   that does not exist, is refused (`550 5.1.1`).
//! - **Once.** The request id is derived from the sender and the
//!   `Message-ID` (without one, from the message's bytes): the same message
//!   twice writes once and is answered `250` both times, across restarts.
//! - **Durable.** `250` after `DATA` comes only once the events are durable
//!   (appended through the same [`Handle`] as gRPC reports and notes).
//!
//! Refusals write nothing and say why with the code that says so:
//! unknown sender `550 5.7.1`; too large `552 5.3.4` (announced by `SIZE`,
//! refused at `MAIL FROM` by a declared size and while reading `DATA`);
//! malformed or without subject `550 5.6.0` (`554 5.6.0` when it is not a
//! message at all); unknown incident `550 5.1.1`; the log unavailable
//! `451 4.3.0`, which the MTA retries. Counts by outcome are kept for
//! `/metrics` ([`EmailCounts`]).
//!
//! The protocol is a small state machine ([`protocol`]) driven by a tokio
//! task per connection, with limits on line length, message size,
//! recipients, connections and idle time. No TLS, no `AUTH`: it listens on
//! loopback behind the site's MTA, which terminates TLS.

pub mod mail;
pub mod protocol;
pub(crate) mod threads;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use klaxon_auth::{Auth, Principal, Role};
use klaxon_domain::ids::{ActorId, Audience, IncidentId, ReportSource};
use klaxon_domain::incident::Command;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::{CommandContext, Handle};
use protocol::{COMMAND_LINE_BYTES_MAX, Conversation, Envelope, Limits, Reply, Step, TEXT_LINE_BYTES_MAX};

/// How long a stop waits for sessions still delivering a message.
const DRAIN: Duration = Duration::from_secs(10);

/// A message this many times over its limit is not read to the end: the
/// connection is closed after the refusal.
const DRAIN_FACTOR: usize = 4;

/// Settings of the e-mail intake (`[intake.email]`); the listener's
/// address is `[intake] smtp_listen`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EmailOptions {
    /// Allowed senders: e-mail address → principal name (as in the token
    /// file). Addresses are compared without regard to case.
    pub senders: BTreeMap<String, String>,
    /// Largest message, in bytes. Default 1 MiB.
    pub message_bytes_max: usize,
    /// Most recipients of one message. Default 50.
    pub recipients_max: usize,
    /// Most connections at once; more are answered `421`. Default 32.
    pub connections_max: usize,
    /// How long a connection may wait between commands, and how long a
    /// message may take to arrive after `DATA`, in ms. Default 60,000.
    pub idle_timeout_ms: u64,
    /// The name the server greets with. Default `klaxon`.
    pub hostname: String,
}

impl Default for EmailOptions {
    fn default() -> Self {
        EmailOptions {
            senders: BTreeMap::new(),
            message_bytes_max: 1024 * 1024,
            recipients_max: 50,
            connections_max: 32,
            idle_timeout_ms: 60_000,
            hostname: "klaxon".into(),
        }
    }
}

impl EmailOptions {
    /// Checks the values; the error names the key (under `intake.email.`).
    pub fn validate(&self) -> Result<(), String> {
        if !(1024..=64 * 1024 * 1024).contains(&self.message_bytes_max) {
            return Err(format!(
                "intake.email.message_bytes_max: {} must be from 1024 to 67108864",
                self.message_bytes_max
            ));
        }
        for (key, value) in [("recipients_max", self.recipients_max), ("connections_max", self.connections_max)] {
            if value == 0 {
                return Err(format!("intake.email.{key}: must be at least 1"));
            }
        }
        if self.idle_timeout_ms == 0 {
            return Err("intake.email.idle_timeout_ms: must be at least 1".into());
        }
        if self.hostname.is_empty() || self.hostname.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!("intake.email.hostname: {:?} is not a host name", self.hostname));
        }
        for (address, principal) in &self.senders {
            let valid = address.split_once('@').is_some_and(|(l, d)| !l.is_empty() && !d.is_empty())
                && !address.chars().any(|c| c.is_whitespace() || c.is_control() || c == '<' || c == '>');
            if !valid {
                return Err(format!("intake.email.senders: {address:?} is not an e-mail address"));
            }
            ActorId::new(principal.as_str())
                .map_err(|e| format!("intake.email.senders.{address:?}: {principal:?} is not a principal name: {e}"))?;
        }
        Ok(())
    }

    /// The principal `address` maps to.
    fn principal_of(&self, address: &str) -> Option<&str> {
        self.senders.iter().find(|(a, _)| a.eq_ignore_ascii_case(address)).map(|(_, p)| p.as_str())
    }
}

/// What became of a message (or of a sender refused before its message).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageOutcome {
    /// A new incident, or a report merged into one.
    Reported,
    /// An internal note on an incident.
    Noted,
    /// The same message again: nothing written.
    Duplicate,
    /// The sender is not allowed (`550 5.7.1`).
    UnknownSender,
    /// Over the size limit (`552 5.3.4`).
    TooLarge,
    /// Not a usable message (`5.6.0`).
    Malformed,
    /// A reply to an incident that does not exist (`550 5.1.1`).
    UnknownIncident,
    /// Refused by a rule of the incident or of authorization (`550 5.7.x`).
    Refused,
    /// The log could not take it (`451 4.3.0`): the sender retries.
    Unavailable,
}

impl MessageOutcome {
    /// Every outcome, in the order of the metrics.
    pub const ALL: [MessageOutcome; 9] = [
        MessageOutcome::Reported,
        MessageOutcome::Noted,
        MessageOutcome::Duplicate,
        MessageOutcome::UnknownSender,
        MessageOutcome::TooLarge,
        MessageOutcome::Malformed,
        MessageOutcome::UnknownIncident,
        MessageOutcome::Refused,
        MessageOutcome::Unavailable,
    ];

    /// The `outcome` label of the metric.
    pub fn as_str(self) -> &'static str {
        match self {
            MessageOutcome::Reported => "reported",
            MessageOutcome::Noted => "noted",
            MessageOutcome::Duplicate => "duplicate",
            MessageOutcome::UnknownSender => "unknown_sender",
            MessageOutcome::TooLarge => "too_large",
            MessageOutcome::Malformed => "malformed",
            MessageOutcome::UnknownIncident => "unknown_incident",
            MessageOutcome::Refused => "refused",
            MessageOutcome::Unavailable => "unavailable",
        }
    }

    /// The outcome of a refusal, by its reply.
    fn of_refusal(reply: &Reply) -> MessageOutcome {
        match (reply.code, reply.enhanced) {
            (_, "5.7.1") => MessageOutcome::UnknownSender,
            (552, _) => MessageOutcome::TooLarge,
            (_, "5.6.0") => MessageOutcome::Malformed,
            (_, "5.1.1") => MessageOutcome::UnknownIncident,
            (code, _) if code < 500 => MessageOutcome::Unavailable,
            _ => MessageOutcome::Refused,
        }
    }
}

/// Messages by outcome since the process started (`klaxon_email_messages_total`).
#[derive(Debug, Default)]
pub struct EmailCounts([AtomicU64; MessageOutcome::ALL.len()]);

impl EmailCounts {
    fn add(&self, outcome: MessageOutcome) {
        self.0[outcome as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Every outcome with its count.
    pub fn snapshot(&self) -> Vec<(MessageOutcome, u64)> {
        MessageOutcome::ALL.iter().map(|o| (*o, self.0[*o as usize].load(Ordering::Relaxed))).collect()
    }
}

/// Who an accepted sender acts as.
#[derive(Clone, Debug)]
struct Sender {
    actor: ActorId,
    principal: Option<Principal>,
    source: ReportSource,
}

/// The e-mail intake: [`SmtpIntake::new`], take [`SmtpIntake::counts`],
/// then [`SmtpIntake::run`] on a bound listener.
pub struct SmtpIntake {
    shared: Arc<Shared>,
}

struct Shared {
    handle: Handle,
    options: EmailOptions,
    auth: Option<Auth>,
    counts: Arc<EmailCounts>,
}

impl SmtpIntake {
    /// An intake writing through `handle`. With `auth`, senders map to
    /// principals of its token store and its help desk list; without it
    /// (in-process tests), the mapped name reports as the help desk.
    pub fn new(handle: Handle, options: EmailOptions, auth: Option<Auth>) -> SmtpIntake {
        SmtpIntake { shared: Arc::new(Shared { handle, options, auth, counts: Arc::default() }) }
    }

    /// The counts by outcome, for `/metrics`.
    pub fn counts(&self) -> Arc<EmailCounts> {
        self.shared.counts.clone()
    }

    /// Accepts connections on `listener` until `shutdown`, then gives the
    /// sessions still delivering a message [`DRAIN`] to finish (an idle
    /// session is told `421` and closed at once).
    pub async fn run(self, listener: TcpListener, shutdown: CancellationToken) -> std::io::Result<()> {
        let mut sessions = JoinSet::new();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        if sessions.len() >= self.shared.options.connections_max {
                            sessions.spawn(refuse_busy(stream, self.shared.options.connections_max));
                            continue;
                        }
                        let _ = stream.set_nodelay(true);
                        let span = tracing::info_span!("smtp.session", %peer);
                        let session = session(self.shared.clone(), stream, shutdown.clone());
                        sessions.spawn(tracing::Instrument::instrument(session, span));
                    }
                    Err(e) => {
                        // Out of descriptors and the like: wait, do not spin.
                        tracing::warn!(error = %e, "accepting an SMTP connection failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
            }
        }
        let drained = tokio::time::timeout(DRAIN, async { while sessions.join_next().await.is_some() {} }).await;
        if drained.is_err() {
            tracing::warn!("SMTP sessions still open {DRAIN:?} after the stop began; closing them");
        }
        Ok(())
    }
}

/// Tells a connection over the limit to come back later.
async fn refuse_busy(mut stream: TcpStream, max: usize) {
    let reply = Reply::new(421, "4.3.2", format!("too many connections (at most {max}); try again later"));
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(&reply.to_wire())).await;
}

/// Why reading from the client stopped.
enum ReadEnd {
    /// The client closed the connection.
    Closed,
    /// Nothing came within the idle timeout.
    Idle,
    /// The stop began while waiting for a command.
    Stopping,
    /// A network error.
    Failed,
}

/// One SMTP session.
async fn session(shared: Arc<Shared>, stream: TcpStream, shutdown: CancellationToken) {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    let options = &shared.options;
    let limits = Limits { message_bytes_max: options.message_bytes_max, recipients_max: options.recipients_max };
    let mut conversation: Conversation<Sender> = Conversation::new(&options.hostname, limits);
    let idle = Duration::from_millis(options.idle_timeout_ms);
    if write.write_all(&conversation.greeting().to_wire()).await.is_err() {
        return;
    }
    let mut line = Vec::with_capacity(COMMAND_LINE_BYTES_MAX);
    loop {
        line.clear();
        let read = tokio::select! {
            _ = shutdown.cancelled() => Err(ReadEnd::Stopping),
            read = tokio::time::timeout(idle, read_line(&mut reader, &mut line, COMMAND_LINE_BYTES_MAX)) => match read {
                Err(_) => Err(ReadEnd::Idle),
                Ok(Err(_)) => Err(ReadEnd::Failed),
                Ok(Ok(0)) => Err(ReadEnd::Closed),
                Ok(Ok(_)) => Ok(()),
            },
        };
        let step = match read {
            Err(ReadEnd::Stopping) => Step::Close(Reply::new(421, "4.3.2", "the intake is stopping; try again later")),
            Err(ReadEnd::Idle) => Step::Close(Reply::new(421, "4.4.2", format!("no command for {idle:?}; closing"))),
            Err(ReadEnd::Closed | ReadEnd::Failed) => return,
            Ok(()) if !line.ends_with(b"\n") => {
                // Over the limit: drop the rest of the line, then refuse it.
                if skip_line(&mut reader).await.is_err() {
                    return;
                }
                Step::Reply(Reply::new(
                    500,
                    "5.5.2",
                    format!("a command line is at most {COMMAND_LINE_BYTES_MAX} bytes"),
                ))
            }
            Ok(()) => match std::str::from_utf8(&line) {
                Ok(text) => {
                    let text = text.trim_end_matches(['\r', '\n']);
                    conversation.command(text, |address| shared.sender(address))
                }
                Err(_) => Step::Reply(Reply::new(500, "5.5.2", "a command must be UTF-8 text")),
            },
        };
        let reply = match step {
            Step::Reply(reply) => {
                if reply.enhanced == "5.7.1" || (reply.code == 552 && reply.enhanced == "5.3.4") {
                    shared.counts.add(MessageOutcome::of_refusal(&reply));
                    tracing::info!(%reply, "sender refused at MAIL FROM");
                }
                reply
            }
            Step::Close(reply) => {
                let _ = write.write_all(&reply.to_wire()).await;
                return;
            }
            Step::Data => {
                let envelope = conversation.take_envelope().expect("DATA is only stepped into with an envelope");
                let start = Reply::new(354, "", "end the message with <CRLF>.<CRLF>");
                if write.write_all(&start.to_wire()).await.is_err() {
                    return;
                }
                match tokio::time::timeout(idle, read_data(&mut reader, options.message_bytes_max)).await {
                    Err(_) => {
                        let reply =
                            Reply::new(421, "4.4.2", format!("the message did not arrive within {idle:?}; closing"));
                        let _ = write.write_all(&reply.to_wire()).await;
                        return;
                    }
                    Ok(Err(_)) => return,
                    Ok(Ok(Data::Closed)) => return,
                    Ok(Ok(Data::Message { bytes, long_line })) => {
                        let reply = shared.deliver(&envelope, &bytes, long_line).await;
                        tracing::info!(sender = %envelope.sender, %reply, "message answered");
                        reply
                    }
                    Ok(Ok(Data::TooLarge { drained })) => {
                        shared.counts.add(MessageOutcome::TooLarge);
                        let reply = Reply::new(
                            552,
                            "5.3.4",
                            format!("the message is over this intake's limit of {} bytes", options.message_bytes_max),
                        );
                        if !drained {
                            let _ = write.write_all(&reply.to_wire()).await;
                            return;
                        }
                        reply
                    }
                }
            }
        };
        if write.write_all(&reply.to_wire()).await.is_err() {
            return;
        }
    }
}

/// Reads one line of at most `max` bytes (its `\n` included) into `line`;
/// a longer line is returned cut (without its `\n`).
async fn read_line<R: AsyncRead + Unpin>(
    reader: &mut BufReader<R>,
    line: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<usize> {
    (&mut *reader).take(max as u64).read_until(b'\n', line).await
}

/// Drops input up to and including the next `\n`.
async fn skip_line<R: AsyncRead + Unpin>(reader: &mut BufReader<R>) -> std::io::Result<()> {
    let mut rest = Vec::new();
    loop {
        rest.clear();
        if read_line(reader, &mut rest, 4096).await? == 0 || rest.ends_with(b"\n") {
            return Ok(());
        }
    }
}

/// What came after `354`.
enum Data {
    /// The message, dot-unstuffed, and whether a line was over
    /// [`TEXT_LINE_BYTES_MAX`].
    Message { bytes: Vec<u8>, long_line: bool },
    /// Over the limit; `drained` when it was read to its end (else the
    /// connection must close).
    TooLarge { drained: bool },
    /// The client went away.
    Closed,
}

/// Reads a message up to the line holding a lone dot, keeping at most
/// `max` bytes; past [`DRAIN_FACTOR`] times that it stops reading.
async fn read_data<R: AsyncRead + Unpin>(reader: &mut BufReader<R>, max: usize) -> std::io::Result<Data> {
    let mut bytes = Vec::new();
    let mut total = 0usize;
    let mut long_line = false;
    let mut at_line_start = true;
    let mut line_bytes = 0usize;
    let mut piece = Vec::with_capacity(TEXT_LINE_BYTES_MAX);
    loop {
        piece.clear();
        if read_line(reader, &mut piece, 8192).await? == 0 {
            return Ok(Data::Closed);
        }
        let ends_line = piece.ends_with(b"\n");
        if at_line_start && (piece == b".\r\n" || piece == b".\n") {
            return Ok(if total > max { Data::TooLarge { drained: true } } else { Data::Message { bytes, long_line } });
        }
        let content: &[u8] = if at_line_start && piece.starts_with(b".") { &piece[1..] } else { &piece };
        line_bytes += piece.len();
        long_line |= line_bytes > TEXT_LINE_BYTES_MAX;
        total += content.len();
        if total <= max {
            bytes.extend_from_slice(content);
        } else if total > max.saturating_mul(DRAIN_FACTOR) {
            return Ok(Data::TooLarge { drained: false });
        }
        at_line_start = ends_line;
        if ends_line {
            line_bytes = 0;
        }
    }
}

/// What a message asks for.
enum Target {
    Report,
    Note(IncidentId),
}

impl Shared {
    /// Decides about a `MAIL FROM` address: who it acts as, or `550 5.7.1`.
    fn sender(&self, address: &str) -> Result<Sender, Reply> {
        let unknown = |why: String| Reply::new(550, "5.7.1", why);
        if address.is_empty() {
            return Err(unknown("the null sender (a bounce) cannot report to Klaxon".into()));
        }
        let name = self
            .options
            .principal_of(address)
            .ok_or_else(|| unknown(format!("{address} is not an allowed sender of this intake")))?;
        let actor = ActorId::new(name).map_err(|e| unknown(format!("{address} maps to a bad principal: {e}")))?;
        let Some(auth) = &self.auth else {
            return Ok(Sender { actor, principal: None, source: ReportSource::HelpDesk });
        };
        let principal = auth
            .tokens
            .principal_named(name)
            .ok_or_else(|| unknown(format!("{address} maps to {name}, who holds no token (revoked?)")))?;
        if !allowed(REPORT, principal.role) {
            return Err(unknown(format!("{principal} may not report")));
        }
        // A mailed report names no service: only an unscoped principal may.
        auth.grant(principal.clone())
            .check_service(None)
            .map_err(|e| unknown(format!("{address} maps to {principal}: {e}")))?;
        let source = klaxon_auth::sources::report_source(&principal, &auth.help_desk, Some(ReportSource::HelpDesk))
            .or_else(|_| klaxon_auth::sources::report_source(&principal, &auth.help_desk, None))
            .map_err(|e| unknown(e.to_string()))?;
        Ok(Sender { actor, principal: Some(principal), source })
    }

    /// Turns a received message into a report or a note, and answers.
    async fn deliver(&self, envelope: &Envelope<Sender>, bytes: &[u8], long_line: bool) -> Reply {
        match self.write(envelope, bytes, long_line).await {
            Ok((outcome, reply)) => {
                self.counts.add(outcome);
                reply
            }
            Err(reply) => {
                self.counts.add(MessageOutcome::of_refusal(&reply));
                reply
            }
        }
    }

    async fn write(
        &self,
        envelope: &Envelope<Sender>,
        bytes: &[u8],
        long_line: bool,
    ) -> Result<(MessageOutcome, Reply), Reply> {
        if long_line {
            return Err(Reply::new(550, "5.6.0", format!("a line of the message is over {TEXT_LINE_BYTES_MAX} bytes")));
        }
        let parsed = mail::parse(bytes)?;
        match &parsed.from {
            None => return Err(Reply::new(550, "5.6.0", "the message has no From: address")),
            Some(from) if !from.eq_ignore_ascii_case(&envelope.sender) => {
                return Err(Reply::new(
                    550,
                    "5.7.1",
                    format!("From: {from} is not the envelope sender {}", envelope.sender),
                ));
            }
            Some(_) => {}
        }
        let sender = &envelope.principal;
        let request_id = mail::request_id(&envelope.sender, parsed.message_id.as_deref(), bytes);
        let span = tracing::info_span!(parent: None, "intake.email", incident = tracing::field::Empty);
        let ctx = CommandContext {
            actor: sender.actor.clone(),
            request_id: Some(request_id),
            expected_version: None,
            traceparent: None,
        };
        let (ctx, span) = ctx.traced(span);
        let handle = &self.handle;
        match self.target(&parsed).await? {
            Target::Note(id) => {
                if let Some(principal) = &sender.principal {
                    if !allowed(POST_UPDATE, principal.role) {
                        return Err(Reply::new(550, "5.7.1", format!("{principal} may not post notes")));
                    }
                    let incident = handle.get(id).await.map_err(|e| smtp_reply(&e))?;
                    if let Some(auth) = &self.auth {
                        auth.grant(principal.clone())
                            .check_service(incident.service().map(|s| s.as_str()))
                            .map_err(|e| Reply::new(550, "5.7.1", e.to_string()))?;
                    }
                }
                let text = mail::reply_text(&parsed.body);
                if text.is_empty() {
                    return Err(Reply::new(550, "5.6.0", format!("the reply to {id} has no text of its own")));
                }
                let note = Command::PostUpdate { audience: Audience::Internal, text };
                span.record("incident", tracing::field::display(id));
                let outcome = tracing::Instrument::instrument(handle.execute(id, note, &ctx), span)
                    .await
                    .map_err(|e| smtp_reply(&e))?;
                let (kind, text) = if outcome.deduplicated {
                    (MessageOutcome::Duplicate, format!("already noted on {id} (position {})", outcome.last))
                } else {
                    (MessageOutcome::Noted, format!("noted on {id} (position {})", outcome.last))
                };
                Ok((kind, Reply::new(250, "2.0.0", text)))
            }
            Target::Report => {
                let subject = parsed.subject.as_deref().filter(|s| !klaxon_domain::text::Kind::is_blank(s));
                let Some(subject) = subject else {
                    return Err(Reply::new(550, "5.6.0", "the message has no subject; the subject is the title"));
                };
                let command = Command::ReportIssue {
                    source: sender.source,
                    reporter: sender.actor.clone(),
                    title: subject.to_owned(),
                    description: parsed.body.clone(),
                    service: None,
                    customers: Vec::new(),
                    labels: BTreeMap::new(),
                    dedup_key: None,
                    started_at: None,
                };
                let report = tracing::Instrument::instrument(handle.report(command, &ctx), span.clone())
                    .await
                    .map_err(|e| smtp_reply(&e))?;
                span.record("incident", tracing::field::display(report.incident));
                let id = report.incident;
                let (kind, text) = if report.outcome.deduplicated {
                    (MessageOutcome::Duplicate, format!("already reported as {id}"))
                } else {
                    (MessageOutcome::Reported, format!("reported as {id}"))
                };
                Ok((kind, Reply::new(250, "2.0.0", text)))
            }
        }
    }

    /// A reply by its thread headers (any Klaxon id there decides), else by
    /// `[INC-n]` in its subject; otherwise a report.
    async fn target(&self, parsed: &mail::Parsed) -> Result<Target, Reply> {
        let klaxon_ids: Vec<&String> =
            parsed.thread.iter().filter(|id| threads::klaxon_local_part(id).is_some()).collect();
        if !klaxon_ids.is_empty() {
            let found = self.handle.thread_incident(&klaxon_ids).await.map_err(|e| smtp_reply(&e))?;
            return match found {
                Some(id) => Ok(Target::Note(id)),
                None => Err(Reply::new(
                    550,
                    "5.1.1",
                    format!("<{}> is not a message Klaxon sent for an incident", klaxon_ids[0]),
                )),
            };
        }
        match parsed.subject.as_deref().and_then(mail::subject_incident) {
            Some(Ok(id)) => Ok(Target::Note(id)),
            Some(Err(tag)) => Err(Reply::new(550, "5.1.1", format!("[{tag}] in the subject is not an incident id"))),
            None => Ok(Target::Report),
        }
    }
}

/// The authorization table's rows the e-mail intake acts under.
const REPORT: &str = "/klaxon.v1.Incidents/Report";
const POST_UPDATE: &str = "/klaxon.v1.Incidents/PostUpdate";

fn allowed(method: &str, role: Role) -> bool {
    matches!(klaxon_auth::policy::decide(method, role), klaxon_auth::policy::Verdict::Allowed(_))
}

/// An intake error as the SMTP reply after `DATA`, through the one mapping
/// (`klaxon_proto::status::smtp_reply`).
fn smtp_reply(error: &crate::Error) -> protocol::Reply {
    use klaxon_domain::class::Classify;
    let (code, enhanced) = klaxon_proto::status::smtp_reply(error.class());
    protocol::Reply::new(code, enhanced, error.to_string())
}
