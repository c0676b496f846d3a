//! The crate's one error type.

/// Everything that can go wrong configuring a channel or delivering through it.
///
/// Callers decide by variant: [`Error::Permanent`], [`Error::Refused`],
/// [`Error::RecipientsRefused`] and [`Error::InvalidNotification`] will
/// fail again if repeated unchanged; [`Error::Exhausted`] may succeed later
/// (the receiver was down or slow).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The channel configuration is invalid. `path` names the key, e.g.
    /// `channels[1].url`; nothing was built.
    #[error("{path}: {message}")]
    Config {
        /// Key path of the offending setting, e.g. `channels[1].url`.
        path: String,
        /// What is wrong with it.
        message: String,
    },
    /// No channel with this name is configured.
    #[error("no channel named {name:?}")]
    UnknownChannel {
        /// The name asked for.
        name: String,
    },
    /// The notification breaks a limit (key syntax, size); nothing was sent.
    #[error("notification rejected before delivery: {message}")]
    InvalidNotification {
        /// Which limit was broken.
        message: String,
    },
    /// The receiver answered with a status that will not change on retry
    /// (a `4xx` other than `429`, or a `3xx`): one attempt, no retry.
    #[error("channel {channel:?}: permanent failure: HTTP {status}: {body_excerpt:?}")]
    Permanent {
        /// Channel name.
        channel: String,
        /// The HTTP status received.
        status: u16,
        /// The start of the response body (at most [`crate::BODY_EXCERPT_BYTES_MAX`] bytes, lossy UTF-8).
        body_excerpt: String,
    },
    /// The SMTP server refused the message for good (a `5xx` reply to the
    /// login, the sender or the content), or cannot do what the channel
    /// requires (STARTTLS, a login mechanism): one attempt, no retry.
    #[error("channel {channel:?}: refused: {reply}")]
    Refused {
        /// Channel name.
        channel: String,
        /// The server's reply, or what it lacks.
        reply: String,
    },
    /// The SMTP server refused some recipients for good (`5xx` to `RCPT
    /// TO`); the others, if any, got the message. Not retried.
    #[error("channel {channel:?}: {}; delivered to {delivered_to} other recipient(s)", describe(refused))]
    RecipientsRefused {
        /// Channel name.
        channel: String,
        /// Each refused recipient and the server's reply.
        refused: Vec<RefusedRecipient>,
        /// How many recipients were accepted and got the message.
        delivered_to: usize,
    },
    /// Every allowed attempt failed with a retryable failure.
    #[error("channel {channel:?}: gave up after {}; last: {last}", klaxon_domain::text::counted(*attempts as u64, "attempt"))]
    Exhausted {
        /// Channel name.
        channel: String,
        /// How many attempts were made (the channel's `attempts_max`).
        attempts: u32,
        /// Why the last attempt failed.
        last: AttemptFailure,
    },
}

/// Why one retryable attempt failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AttemptFailure {
    /// The receiver answered `5xx` or `429`.
    #[error("HTTP {status}: {body_excerpt:?}")]
    Status {
        /// The HTTP status received.
        status: u16,
        /// The start of the response body.
        body_excerpt: String,
    },
    /// No response headers within the per-attempt timeout.
    #[error("timed out after {timeout_ms} ms")]
    Timeout {
        /// The channel's `timeout_ms`.
        timeout_ms: u64,
    },
    /// The TCP connection could not be established.
    #[error("connect failed: {message}")]
    Connect {
        /// The transport's error chain.
        message: String,
    },
    /// The connection broke while sending or before a response arrived.
    #[error("transport error: {message}")]
    Transport {
        /// The transport's error chain.
        message: String,
    },
    /// An SMTP session failed for now: network, TLS, or a `4xx` reply.
    #[error("SMTP: {message}")]
    Smtp {
        /// The SMTP client's error chain, with the server's reply if any.
        message: String,
    },
}

/// A recipient an SMTP server refused for good.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusedRecipient {
    /// The address as sent in `RCPT TO`.
    pub address: String,
    /// The server's reply, e.g. `permanent error (550): 5.1.1 mailbox unavailable`.
    pub reply: String,
}

/// `recipient a@x refused: <reply>, recipient b@y refused: <reply>`.
fn describe(refused: &[RefusedRecipient]) -> String {
    let each: Vec<String> = refused.iter().map(|r| format!("recipient {} refused: {}", r.address, r.reply)).collect();
    each.join(", ")
}

impl Error {
    pub(crate) fn config(path: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Config { path: path.into(), message: message.into() }
    }
}

/// An error and its sources, `outer: inner: innermost`, as the failure
/// message of an attempt.
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}
