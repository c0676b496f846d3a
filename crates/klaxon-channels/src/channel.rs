//! The validated set of channels and delivery through one of them.

use std::collections::BTreeMap;
use std::fmt;

use bytes::Bytes;

use crate::config::{self, ChannelConfig, SpecKind};
use crate::connect;
use crate::http::{self, Credentials, Expect, HttpClient};
use crate::{Error, Notification};

/// How one delivery went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// Attempts made, including the one that succeeded (at least 1).
    pub attempts: u32,
    /// The receiver's `2xx` status, or the SMTP server's reply code to the
    /// message (`250`); `0` for the log channel, which sends nothing.
    pub status: u16,
    /// The thread the notification is in, for the caller to keep and pass
    /// as [`Notification::thread`] with follow-ups through the same
    /// channel: the `Message-ID` of the first e-mail, the `ts` of the first
    /// message of a Slack Web API channel. For a follow-up it is the thread
    /// it was given. `None` where the channel cannot thread (webhook, Teams,
    /// log, and a plain Slack incoming webhook, whose answer is `ok` and
    /// no message id).
    pub thread: Option<String>,
}

/// Which kind of channel this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChannelKind {
    /// Signed generic HTTP webhook.
    Webhook,
    /// Slack-compatible incoming webhook, or Slack's `chat.postMessage`.
    Slack,
    /// Microsoft Teams Workflows webhook posting Adaptive Cards.
    Teams,
    /// E-mail over SMTP.
    Email,
    /// Development channel writing to `tracing`.
    Log,
}

/// One configured channel; cheap to clone (clones share its connection pool).
#[derive(Clone)]
pub struct Channel {
    name: String,
    kind: SpecKind,
    client: HttpClient,
}

impl fmt::Debug for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Channel").field("name", &self.name).field("kind", &self.kind).finish_non_exhaustive()
    }
}

impl Channel {
    /// The channel's configured name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The channel's kind.
    pub fn kind(&self) -> ChannelKind {
        match self.kind {
            SpecKind::Webhook { .. } => ChannelKind::Webhook,
            SpecKind::Slack { .. } => ChannelKind::Slack,
            SpecKind::Teams { .. } => ChannelKind::Teams,
            SpecKind::Email { .. } => ChannelKind::Email,
            SpecKind::Log => ChannelKind::Log,
        }
    }

    /// Delivers `notification`, retrying within the channel's limits.
    ///
    /// Returns after at most `attempts_max` attempts of at most `timeout_ms`
    /// each plus the backoff delays between them (each at most
    /// `backoff_max_ms`). Every attempt carries the same `Idempotency-Key`,
    /// so a receiver that deduplicates on it sees the notification once even
    /// when a response was lost and the request repeated. Dropping the
    /// returned future abandons the delivery (the receiver may or may not
    /// have it). Needs a Tokio runtime with timers enabled.
    pub async fn deliver(&self, notification: &Notification) -> Result<Delivery, Error> {
        notification.validate()?;
        let key = notification.idempotency_key.as_str();
        match &self.kind {
            SpecKind::Webhook { http, secret } => {
                let body = Bytes::from(notification.webhook_body()?);
                http::post(&self.client, &self.name, http, Credentials::Sign(secret), Expect::Any, key, body).await
            }
            SpecKind::Slack { http, api: None } => {
                let body = Bytes::from(notification.slack_body(None)?);
                let delivery =
                    http::post(&self.client, &self.name, http, Credentials::None, Expect::Any, key, body).await?;
                Ok(Delivery { thread: notification.thread.clone(), ..delivery })
            }
            SpecKind::Slack { http, api: Some(api) } => {
                let body = Bytes::from(notification.slack_body(Some(&api.channel))?);
                let credentials = Credentials::Bearer(&api.token);
                let delivery =
                    http::post(&self.client, &self.name, http, credentials, Expect::SlackApi, key, body).await?;
                // A reply's `ts` is its own; the thread stays the first post's.
                Ok(Delivery { thread: notification.thread.clone().or(delivery.thread.clone()), ..delivery })
            }
            SpecKind::Teams { http } => {
                let body = Bytes::from(notification.teams_body()?);
                http::post(&self.client, &self.name, http, Credentials::None, Expect::Any, key, body).await
            }
            SpecKind::Email { smtp } => crate::email::deliver(&self.name, smtp, notification).await,
            SpecKind::Log => {
                let fields = serde_json::Value::Object(
                    notification.fields.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
                );
                tracing::info!(
                    channel = %self.name,
                    idempotency_key = %key,
                    kind = %notification.kind,
                    recipient = notification.recipient.as_deref().unwrap_or(""),
                    thread = notification.thread.as_deref().unwrap_or(""),
                    title = %notification.title,
                    text = %notification.text,
                    %fields,
                    "notification"
                );
                Ok(Delivery { attempts: 1, status: 0, thread: None })
            }
        }
    }
}

/// The validated set of channels, by name.
///
/// Built once at start from configuration; all channels share one pooled
/// HTTP client. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Channels {
    by_name: BTreeMap<String, Channel>,
}

impl Channels {
    /// Validates `configs` and builds the channels, reading each webhook's
    /// secret through `env` (a lookup by variable name; tests pass a map).
    ///
    /// Fails with [`Error::Config`] naming the first offending key, e.g.
    /// `channels[1].url: required for kind "slack"`. Does not connect anywhere.
    pub fn new(configs: &[ChannelConfig], env: impl Fn(&str) -> Option<String>) -> Result<Self, Error> {
        let specs = config::validate(configs, &env)?;
        // The system's roots are read once, and only when a channel needs them.
        let https = specs.iter().any(|spec| spec.kind.http().is_some_and(|h| h.is_https() && h.ca_pem.is_none()));
        let tls = if https {
            Some(connect::tls_config(None).map_err(|message| Error::config("channels", message))?)
        } else {
            None
        };
        let shared = http::client(tls);
        let mut by_name = BTreeMap::new();
        for (index, spec) in specs.into_iter().enumerate() {
            let client = match spec.kind.http().and_then(|h| h.ca_pem.as_deref()) {
                // A private CA: a client (and pool) of the channel's own.
                Some(pem) => {
                    let tls = connect::tls_config(Some(pem))
                        .map_err(|message| Error::config(format!("channels[{index}].ca_file"), message))?;
                    http::client(Some(tls))
                }
                None => shared.clone(),
            };
            let channel = Channel { name: spec.name.clone(), kind: spec.kind, client };
            by_name.insert(spec.name, channel);
        }
        Ok(Channels { by_name })
    }

    /// [`Channels::new`] reading secrets from the process environment
    /// (a variable that is not valid Unicode counts as unset).
    pub fn from_env(configs: &[ChannelConfig]) -> Result<Self, Error> {
        Channels::new(configs, |var| std::env::var(var).ok())
    }

    /// The channel called `name`, if configured.
    pub fn get(&self, name: &str) -> Option<&Channel> {
        self.by_name.get(name)
    }

    /// Delivers `notification` through the channel called `name`; see
    /// [`Channel::deliver`].
    pub async fn deliver(&self, name: &str, notification: &Notification) -> Result<Delivery, Error> {
        let channel = self.get(name).ok_or_else(|| Error::UnknownChannel { name: name.to_string() })?;
        channel.deliver(notification).await
    }

    /// All channels, ordered by name.
    pub fn iter(&self) -> impl Iterator<Item = &Channel> {
        self.by_name.values()
    }

    /// How many channels are configured.
    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    /// Whether no channel is configured.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}
