//! Klaxon's outbound notification channels: how a page reaches a responder
//! and a status update reaches an executive.
//!
//! Paging and the executive notifier decide *what* to send and *when*; this
//! crate only delivers one [`Notification`] through one named [`Channel`] and
//! says how it went ([`Delivery`] or [`Error`]). It knows nothing about
//! incidents, severities or schedules. Five kinds of channel exist:
//!
//! - **webhook**: a generic HTTP `POST` of the notification as JSON, signed
//!   with HMAC-SHA256 (scheme in [`signature`]), carrying the notification's
//!   idempotency key in an `Idempotency-Key` header that is the same on every
//!   retry, so receivers can deduplicate.
//! - **slack**: a Slack-compatible incoming webhook, `POST {"text": "..."}`,
//!   or, with `token_env` and `slack_channel`, Slack's `chat.postMessage`
//!   (Bearer token, `{"channel", "text"}`), whose answer carries the
//!   message's `ts`: the [`Delivery::thread`] follow-ups reply under
//!   (`thread_ts`). An incoming webhook answers `ok` with no id, so it
//!   gives no thread (it still passes one it is given as `thread_ts`).
//!   Slack does not deduplicate, so a retry after a lost response may post
//!   twice (delivery is at-least-once).
//! - **teams**: a Microsoft Teams Workflows webhook, one Adaptive Card
//!   (1.4) per notification in the `message`/`attachments` envelope
//!   Workflows expects. Workflows answers `202` with no message id, so
//!   there is no threading: a follow-up is a new card marked "Follow-up".
//! - **email**: SMTP through lettre, with STARTTLS (required when chosen,
//!   never skipped), implicit TLS or none, and login; plain text plus an
//!   escaped HTML alternative. The `Message-ID` derives from the
//!   idempotency key ([`message_id`]), every retry sends the same bytes,
//!   and a follow-up carries `In-Reply-To`/`References` to its thread. A
//!   recipient the server refuses for good is named in
//!   [`Error::RecipientsRefused`], the others still get the message, and
//!   nothing is retried.
//! - **log**: writes the notification to `tracing` at info level; for
//!   development, always succeeds.
//!
//! Deliveries are bounded: `attempts_max` attempts, a timeout on each, an
//! exponential backoff with ±20% jitter capped at `backoff_max_ms` (a
//! server's `Retry-After` is honoured within the same cap), and at most
//! [`RESPONSE_BODY_BYTES_MAX`] of a response body read. Connect errors,
//! timeouts, `5xx` and `429` are retried; any other non-`2xx` status is a
//! permanent failure and is not retried. For e-mail, network and TLS
//! failures and `4xx` replies are retried, `5xx` replies are not.
//!
//! Transport: `https://` (rustls on ring, TLS 1.2 and 1.3, the server's
//! certificate checked against the system's roots plus the channel's
//! `ca_file`, ALPN `http/1.1`) or plain `http://`, through hyper-util's
//! pooled HTTP/1 client; channels with a `ca_file` get a pool of their own.
//! SMTP uses rustls with the system's roots (plus `ca_file`).
//!
//! What it must never do: read secrets from configuration files (HMAC keys,
//! tokens and passwords come from environment variables named in the
//! config), send a password over SMTP without TLS, log a secret, retry
//! without bound, change the idempotency key between retries, or interpret a
//! notification beyond rendering it.
//!
//! Modules:
//! - `config`: the serde [`Config`] / [`ChannelConfig`] and their validation,
//!   with errors naming the key path (`channels[1].url: ...`).
//! - `notification`: the [`Notification`] value and its limits.
//! - `channel`: [`Channels`] (the validated set, by name) and [`Channel::deliver`].
//! - `http`: one HTTP attempt and the retry loop shared by webhook, slack and teams.
//! - `connect`: the connector under them: TCP, and TLS for `https`.
//! - `email`: the MIME message and one SMTP session per attempt.
//! - `backoff`: the retry delay schedule (pure, deterministic jitter).
//! - `signature`: the webhook signing scheme and [`verify_signature`] for receivers.
//! - `error`: the crate's [`Error`] and [`AttemptFailure`].
//! - `outbox`: [`Channels`] as the domain's `Outbox`, the port through which
//!   the service kit delivers the messages paging and the notifier decide.

mod backoff;
mod channel;
mod config;
mod connect;
mod email;
mod error;
mod http;
mod notification;
mod outbox;
pub mod signature;

#[cfg(test)]
mod tests;

pub use channel::{Channel, ChannelKind, Channels, Delivery};
pub use config::{
    ATTEMPTS_MAX_LIMIT, BACKOFF_MS_LIMIT, CHANNEL_NAME_BYTES_MAX, CHANNELS_MAX, ChannelConfig, Config,
    EMAIL_PEOPLE_MAX, EMAIL_RECIPIENTS_MAX, SECRET_BYTES_MAX, SECRET_BYTES_MIN, TIMEOUT_MS_LIMIT,
};
pub use email::{escape_html, message_id};
pub use error::{AttemptFailure, Error, RefusedRecipient};
pub use http::{BODY_EXCERPT_BYTES_MAX, RESPONSE_BODY_BYTES_MAX};
pub use notification::{
    IDEMPOTENCY_KEY_BYTES_MAX, NOTIFICATION_BODY_BYTES_MAX, NOTIFICATION_KIND_BYTES_MAX, Notification,
    TEAMS_BODY_BYTES_MAX, TEAMS_CARD_CONTENT_TYPE, THREAD_BYTES_MAX,
};
pub use signature::{IDEMPOTENCY_KEY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, signature_header, verify_signature};
