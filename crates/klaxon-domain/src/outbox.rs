//! Messages to people outside Klaxon: what a decision sends, as data, and
//! what came of sending it.
//!
//! Paging and the notifier decide *what* to send (the [`Message`], its text
//! and its idempotency key) here in the domain; the service kit carries it
//! out through an [`Outbox`] (the outbound channels in production) and
//! hands back a [`Receipt`] per channel, from which the domain builds the
//! events that record the outcome. [`Outbox`] is the one interface to the
//! outside world this crate names; nothing here calls it.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;

use chrono::{DateTime, Utc};

/// One message to deliver through a channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Identifies the message across retries and redeliveries (after a
    /// crash, the same decision sends the same key).
    pub idempotency_key: String,
    /// What it is, such as `page` or `executive_post`.
    pub kind: String,
    /// One-line summary.
    pub title: String,
    /// Body text.
    pub text: String,
    /// Structured extras (incident id, severity, ...), passed through as is.
    pub fields: BTreeMap<String, serde_json::Value>,
    /// Who it is for, when the channel serves many.
    pub recipient: Option<String>,
    /// The thread this message follows up on its channel: what the channel
    /// answered for the first message about the same subject (a Slack
    /// `ts`, an e-mail `Message-ID`), as the decision found it recorded.
    /// `None` for a first message, and on channels that do not thread.
    pub thread: Option<String>,
}

/// A message and the channel to send it through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// The configured channel's name.
    pub channel: String,
    /// What to send.
    pub message: Message,
}

/// What came of one delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The channel took the message.
    Delivered {
        /// Attempts it took.
        attempts: u32,
        /// The thread the message is in, on a channel that threads (for a
        /// first message, the id follow-ups must reply under).
        thread: Option<String>,
    },
    /// The outbox gave up (after its own bounded retries).
    Failed {
        /// Attempts made.
        attempts: u32,
        /// The last error.
        error: String,
    },
}

/// The outcome of sending one [`Outgoing`], and when the sending began.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// The channel.
    pub channel: String,
    /// When the delivery began (the clock's time).
    pub at: DateTime<Utc>,
    /// What came of it.
    pub outcome: Outcome,
}

/// Where messages go: the outbound channels. Implementations retry within
/// their own bounds and always answer with an [`Outcome`].
pub trait Outbox: Send + Sync + 'static {
    /// Delivers `message` through `channel`.
    fn deliver<'a>(
        &'a self,
        channel: &'a str,
        message: &'a Message,
    ) -> Pin<Box<dyn Future<Output = Outcome> + Send + 'a>>;
}
