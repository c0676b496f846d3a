//! A received message, parsed (with `mail-parser`) into what intake needs,
//! and the rules that say what it becomes. Pure: bytes in, values out.

use klaxon_domain::ids::IncidentId;
use mail_parser::MessageParser;
use sha2::{Digest, Sha256};

use super::protocol::Reply;

/// What a message says, as far as intake is concerned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Parsed {
    /// The address of the `From:` header, lowercased.
    pub from: Option<String>,
    /// The `Subject:` header, decoded.
    pub subject: Option<String>,
    /// The text: the first text/plain part, else the first HTML part as
    /// text; line ends as `\n`.
    pub body: String,
    /// The `Message-ID`, without angle brackets.
    pub message_id: Option<String>,
    /// The ids of `In-Reply-To`, then of `References`, without brackets.
    pub thread: Vec<String>,
}

/// Parses a message as received after `DATA`.
pub fn parse(bytes: &[u8]) -> Result<Parsed, Reply> {
    let message = MessageParser::default()
        .parse(bytes)
        .filter(|m| m.headers().iter().any(|h| !h.name().is_empty()))
        .ok_or_else(|| Reply::new(554, "5.6.0", "the message has no header section (RFC 5322)"))?;
    let from = message.from().and_then(|a| a.first()).and_then(|a| a.address()).map(str::to_ascii_lowercase);
    let subject = message.subject().map(str::to_owned);
    let body = message.body_text(0).map(|b| b.replace("\r\n", "\n")).unwrap_or_default();
    let message_id = message.message_id().map(|id| bare(id).to_owned()).filter(|id| !id.is_empty());
    let mut thread = Vec::new();
    for header in [message.in_reply_to(), message.references()] {
        for id in header.as_text_list().unwrap_or_default() {
            thread.push(bare(id).to_owned());
        }
    }
    Ok(Parsed { from, subject, body, message_id, thread })
}

/// An id without its angle brackets.
fn bare(id: &str) -> &str {
    id.trim().trim_start_matches('<').trim_end_matches('>')
}

/// The incident a subject names in brackets, such as `Re: [INC-12] …`;
/// `Err` with the text found for `[INC-…]` that is no incident id.
pub fn subject_incident(subject: &str) -> Option<Result<IncidentId, String>> {
    // Upper-casing ASCII keeps every byte offset.
    let start = subject.to_ascii_uppercase().find("[INC-")?;
    let rest = &subject[start + 1..];
    let end = rest.find(']')?;
    let tag = &rest[..end];
    Some(tag.parse::<IncidentId>().map_err(|_| tag.to_owned()))
}

/// The new text of a reply: the body without the quoted message below it
/// (lines starting with `>` and the `On … wrote:` line above them) and
/// without a signature (from a `-- ` line on).
pub fn reply_text(body: &str) -> String {
    let mut lines: Vec<&str> = Vec::new();
    for line in body.lines() {
        if line == "-- " || line == "--" {
            break;
        }
        if line.starts_with('>') {
            if lines.last().is_some_and(|l| l.trim_end().ends_with("wrote:")) {
                lines.pop();
            }
            continue;
        }
        lines.push(line);
    }
    lines.join("\n").trim().to_owned()
}

/// The request id of a message: derived from its sender and its
/// `Message-ID` (or, without one, its bytes), so that the same message
/// sent twice writes once.
pub fn request_id(sender: &str, message_id: Option<&str>, bytes: &[u8]) -> String {
    let mut hasher = Sha256::new();
    let content;
    let parts: [&[u8]; 3] = match message_id {
        Some(id) => [b"message-id", sender.as_bytes(), id.as_bytes()],
        None => {
            content = Sha256::digest(bytes);
            [b"content", sender.as_bytes(), &content]
        }
    };
    for part in parts {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part);
    }
    let digest = hasher.finalize();
    let mut id = String::from("email-");
    for byte in &digest[..16] {
        id.push_str(&format!("{byte:02x}"));
    }
    id
}
