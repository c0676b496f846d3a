//! The value a channel delivers.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::Error;

/// Longest idempotency key accepted, in bytes.
pub const IDEMPOTENCY_KEY_BYTES_MAX: usize = 200;
/// Longest notification kind accepted, in bytes.
pub const NOTIFICATION_KIND_BYTES_MAX: usize = 64;
/// Longest thread reference accepted, in bytes (an e-mail `Message-ID` is
/// at most 998 bytes by RFC 5322's line limit; Slack's `ts` is 17).
pub const THREAD_BYTES_MAX: usize = 998;
/// Largest Adaptive Card payload Teams takes, in bytes (Teams refuses
/// messages over about 28 KB).
pub const TEAMS_BODY_BYTES_MAX: usize = 28 * 1024;
/// Largest request body a notification may render to, in bytes.
pub const NOTIFICATION_BODY_BYTES_MAX: usize = 256 * 1024;

/// One message to deliver: a page to a responder or an update to executives.
///
/// The webhook body is this value as JSON, in the order
/// `{"idempotency_key", "kind", "title", "text", "recipient", "fields"}`
/// (`recipient` is `null` when absent), then `"thread"` when there is one;
/// receivers may deserialize it back into this type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    /// Identifies this notification across retries and redeliveries; sent as
    /// the `Idempotency-Key` header. 1 to [`IDEMPOTENCY_KEY_BYTES_MAX`]
    /// visible ASCII characters (so it is a valid header value).
    pub idempotency_key: String,
    /// What this is, e.g. `"page"` or `"executive_update"`; 1 to
    /// [`NOTIFICATION_KIND_BYTES_MAX`] bytes.
    pub kind: String,
    /// One-line summary.
    pub title: String,
    /// Body text.
    pub text: String,
    /// Structured extras (incident id, severity, links), passed through as is.
    pub fields: BTreeMap<String, serde_json::Value>,
    /// Who it is for (a responder or a distribution list), if the channel
    /// serves many.
    pub recipient: Option<String>,
    /// The thread this notification follows up, on channels that thread:
    /// the [`crate::Delivery::thread`] of the first post through the same
    /// channel (a Slack `ts`, an e-mail `Message-ID`), which the caller
    /// keeps. `None` for a first post. Absent from the webhook body when
    /// `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread: Option<String>,
}

#[derive(Serialize)]
struct WireBody<'a> {
    idempotency_key: &'a str,
    kind: &'a str,
    title: &'a str,
    text: &'a str,
    recipient: Option<&'a str>,
    fields: &'a BTreeMap<String, serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    thread: Option<&'a str>,
}

impl Notification {
    /// Checks the limits above; every delivery checks them before sending.
    pub(crate) fn validate(&self) -> Result<(), Error> {
        let key = &self.idempotency_key;
        if key.is_empty() || key.len() > IDEMPOTENCY_KEY_BYTES_MAX {
            return Err(invalid(format!(
                "idempotency_key must be 1 to {IDEMPOTENCY_KEY_BYTES_MAX} bytes, got {}",
                key.len()
            )));
        }
        if !key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(invalid("idempotency_key must be visible ASCII without spaces".to_string()));
        }
        if let Some(thread) = &self.thread {
            if thread.is_empty() || thread.len() > THREAD_BYTES_MAX || !thread.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(invalid(format!(
                    "thread must be 1 to {THREAD_BYTES_MAX} visible ASCII characters without spaces"
                )));
            }
        }
        if self.kind.is_empty() || self.kind.len() > NOTIFICATION_KIND_BYTES_MAX {
            return Err(invalid(format!(
                "kind must be 1 to {NOTIFICATION_KIND_BYTES_MAX} bytes, got {}",
                self.kind.len()
            )));
        }
        Ok(())
    }

    /// The webhook request body (JSON).
    pub(crate) fn webhook_body(&self) -> Result<Vec<u8>, Error> {
        let body = WireBody {
            idempotency_key: &self.idempotency_key,
            kind: &self.kind,
            title: &self.title,
            text: &self.text,
            recipient: self.recipient.as_deref(),
            fields: &self.fields,
            thread: self.thread.as_deref(),
        };
        let bytes = serde_json::to_vec(&body).expect("a map of JSON values always serializes");
        check_size(bytes)
    }

    /// The Slack body: `{"text": "*<title>*\n<text>\n*<field>*: <value>..."}`
    /// with Slack's `&`, `<`, `>` escaping applied to our text, plus
    /// `"thread_ts"` when following up a thread and `"channel"` for a
    /// `chat.postMessage`-style API.
    pub(crate) fn slack_body(&self, channel: Option<&str>) -> Result<Vec<u8>, Error> {
        let mut body = serde_json::Map::new();
        if let Some(channel) = channel {
            body.insert("channel".into(), channel.into());
        }
        body.insert("text".into(), self.slack_text().into());
        if let Some(thread) = &self.thread {
            body.insert("thread_ts".into(), thread.as_str().into());
        }
        let bytes = serde_json::to_vec(&body).expect("strings always serialize");
        check_size(bytes)
    }

    fn slack_text(&self) -> String {
        let mut text = String::new();
        if !self.title.is_empty() {
            text.push('*');
            text.push_str(&slack_escape(&self.title));
            text.push('*');
        }
        if !self.text.is_empty() {
            if !text.is_empty() {
                text.push('\n');
            }
            text.push_str(&slack_escape(&self.text));
        }
        for (name, value) in self.field_texts() {
            if !text.is_empty() {
                text.push('\n');
            }
            text.push('*');
            text.push_str(&slack_escape(name));
            text.push_str("*: ");
            text.push_str(&slack_escape(&value));
        }
        text
    }

    /// The fields as text: strings as they are, other values as JSON.
    pub(crate) fn field_texts(&self) -> impl Iterator<Item = (&str, String)> {
        self.fields.iter().map(|(name, value)| {
            let value = match value {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (name.as_str(), value)
        })
    }

    /// The Teams Workflows body: a `message` with one Adaptive Card (1.4)
    /// attachment: the title as a heading, "Follow-up" when the
    /// notification follows up a thread, the text, and the fields as a
    /// fact set. Adaptive Cards render text, never HTML.
    pub(crate) fn teams_body(&self) -> Result<Vec<u8>, Error> {
        use serde_json::json;
        let mut body = vec![json!({
            "type": "TextBlock",
            "text": self.title,
            "weight": "Bolder",
            "size": "Medium",
            "style": "heading",
            "wrap": true,
        })];
        if self.thread.is_some() {
            body.push(json!({"type": "TextBlock", "text": "Follow-up", "isSubtle": true, "spacing": "None"}));
        }
        if !self.text.is_empty() {
            body.push(json!({"type": "TextBlock", "text": self.text, "wrap": true}));
        }
        let facts: Vec<_> = self.field_texts().map(|(title, value)| json!({"title": title, "value": value})).collect();
        if !facts.is_empty() {
            body.push(json!({"type": "FactSet", "facts": facts}));
        }
        let message = json!({
            "type": "message",
            "attachments": [{
                "contentType": TEAMS_CARD_CONTENT_TYPE,
                "contentUrl": null,
                "content": {
                    "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                    "type": "AdaptiveCard",
                    "version": "1.4",
                    "msteams": {"width": "Full"},
                    "body": body,
                },
            }],
        });
        let bytes = serde_json::to_vec(&message).expect("JSON values always serialize");
        if bytes.len() > TEAMS_BODY_BYTES_MAX {
            return Err(invalid(format!(
                "rendered Teams card is {} bytes, more than the {TEAMS_BODY_BYTES_MAX} Teams takes",
                bytes.len()
            )));
        }
        Ok(bytes)
    }
}

/// The content type of an Adaptive Card attachment.
pub const TEAMS_CARD_CONTENT_TYPE: &str = "application/vnd.microsoft.card.adaptive";

fn check_size(bytes: Vec<u8>) -> Result<Vec<u8>, Error> {
    if bytes.len() > NOTIFICATION_BODY_BYTES_MAX {
        return Err(invalid(format!(
            "rendered body is {} bytes, more than the {NOTIFICATION_BODY_BYTES_MAX} allowed",
            bytes.len()
        )));
    }
    Ok(bytes)
}

fn invalid(message: String) -> Error {
    Error::InvalidNotification { message }
}

/// Slack's message formatting treats `&`, `<` and `>` as control characters.
fn slack_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}
