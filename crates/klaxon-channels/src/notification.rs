//! The value a channel delivers.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::Error;

/// Longest idempotency key accepted, in bytes.
pub const IDEMPOTENCY_KEY_BYTES_MAX: usize = 200;
/// Longest notification kind accepted, in bytes.
pub const NOTIFICATION_KIND_BYTES_MAX: usize = 64;
/// Largest request body a notification may render to, in bytes.
pub const NOTIFICATION_BODY_BYTES_MAX: usize = 256 * 1024;

/// One message to deliver: a page to a responder or an update to executives.
///
/// The webhook body is this value as JSON, in the order
/// `{"idempotency_key", "kind", "title", "text", "recipient", "fields"}`
/// (`recipient` is `null` when absent); receivers may deserialize it back
/// into this type.
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
}

#[derive(Serialize)]
struct WireBody<'a> {
    idempotency_key: &'a str,
    kind: &'a str,
    title: &'a str,
    text: &'a str,
    recipient: Option<&'a str>,
    fields: &'a BTreeMap<String, serde_json::Value>,
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
        };
        let bytes = serde_json::to_vec(&body).expect("a map of JSON values always serializes");
        check_size(bytes)
    }

    /// The Slack incoming-webhook body: `{"text": "*<title>*\n<text>\n*<field>*: <value>..."}`
    /// with Slack's `&`, `<`, `>` escaping applied to our text.
    pub(crate) fn slack_body(&self) -> Result<Vec<u8>, Error> {
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
        for (name, value) in &self.fields {
            let value = match value {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            if !text.is_empty() {
                text.push('\n');
            }
            text.push('*');
            text.push_str(&slack_escape(name));
            text.push_str("*: ");
            text.push_str(&slack_escape(&value));
        }
        let bytes = serde_json::to_vec(&serde_json::json!({ "text": text })).expect("a string always serializes");
        check_size(bytes)
    }
}

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
