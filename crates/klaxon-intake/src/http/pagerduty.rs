//! A PagerDuty Events API v2 compatible enqueue endpoint (`POST
//! /v2/enqueue`), so tools that page PagerDuty can report to Klaxon
//! unchanged.
//!
//! - `trigger` reports an issue under the incident dedup key
//!   `pagerduty/<dedup_key>`: the first opens an incident, the next ones
//!   merge into it while it is open. Without a `dedup_key`, one is derived
//!   from the event's content and returned.
//! - `acknowledge` posts an internal status update on the open incident of
//!   that dedup key.
//! - `resolve` leaves the same mitigation note as a resolved Alertmanager
//!   group ([`super::mitigation_note`]): never a silent resolve.
//!
//! Answers are PagerDuty's: `202` `{"status":"success","message":"Event
//! processed","dedup_key":…}` once the events are durable (also for an
//! acknowledge or resolve that matches no open incident, as PagerDuty does);
//! `400` `{"status":"invalid event","message":"Event object is
//! invalid","errors":[…]}` naming every problem; `413` in that shape over
//! the size limit (512 KiB by default); `429` `{"status":"throttle event",…}`
//! when a routing key sends faster than its token bucket allows.
//!
//! Retries write nothing twice: a request id is derived from the body's
//! SHA-256 and the incident it applies to (for a trigger: the last closed
//! incident of its dedup key), so the same event again writes nothing while
//! its incident is open, and after that incident was resolved or closed
//! opens a new one.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::header::RETRY_AFTER;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use chrono::{DateTime, Utc};
use klaxon_domain::class::Class;
use klaxon_domain::ids::{ActorId, Audience, DedupKey, IncidentId, ReportSource, ServiceName};
use klaxon_domain::incident::Command;
use klaxon_domain::text;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use tracing::Instrument;

use super::{Answer, Caller, Shared};
use crate::{Error, Handle};

#[cfg(test)]
mod tests;

/// The actor (and reporter) of everything the PagerDuty endpoint writes.
pub const ACTOR: &str = "svc:pagerduty";
/// Longest `dedup_key` (PagerDuty's limit).
pub const DEDUP_KEY_CHARS_MAX: usize = 255;
/// Longest `routing_key`.
pub const ROUTING_KEY_CHARS_MAX: usize = 255;
/// Longest `payload.summary` (PagerDuty's limit).
pub const SUMMARY_CHARS_MAX: usize = 1024;

/// The actor of PagerDuty events.
pub fn actor() -> ActorId {
    ActorId::new(ACTOR).expect("a valid actor id")
}

/// What an event asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Report a problem (or again).
    Trigger,
    /// Someone is on it.
    Acknowledge,
    /// The monitoring says it is over.
    Resolve,
}

impl Action {
    /// As PagerDuty spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Trigger => "trigger",
            Action::Acknowledge => "acknowledge",
            Action::Resolve => "resolve",
        }
    }
}

/// PagerDuty's severities.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PagerDutySeverity {
    /// `critical`
    Critical,
    /// `error`
    Error,
    /// `warning`
    Warning,
    /// `info`
    Info,
}

impl PagerDutySeverity {
    /// As PagerDuty spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            PagerDutySeverity::Critical => "critical",
            PagerDutySeverity::Error => "error",
            PagerDutySeverity::Warning => "warning",
            PagerDutySeverity::Info => "info",
        }
    }
}

/// One event, checked.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    /// The integration key it was sent with (never stored: it is a secret).
    pub routing_key: String,
    /// trigger, acknowledge or resolve.
    pub action: Action,
    /// The sender's `dedup_key`, or the one derived for a trigger without.
    pub dedup_key: String,
    /// Whether [`Event::dedup_key`] was derived here.
    pub dedup_key_generated: bool,
    /// The payload; always there on a trigger.
    pub payload: Option<Payload>,
    /// `payload.summary` of an acknowledge or resolve, if it had one.
    pub note: Option<String>,
    /// The sending tool's name.
    pub client: Option<String>,
    /// The sending tool's URL.
    pub client_url: Option<String>,
    /// Links to show with the incident.
    pub links: Vec<Link>,
    /// Images to show with the incident.
    pub images: Vec<Image>,
    /// Hex SHA-256 of the body: the event's identity for request ids.
    pub digest: String,
}

/// The `payload` of a trigger.
#[derive(Clone, Debug, PartialEq)]
pub struct Payload {
    /// What is wrong; required, at most [`SUMMARY_CHARS_MAX`] characters.
    pub summary: String,
    /// Where (a host name, typically); required.
    pub source: String,
    /// How bad, in PagerDuty's terms; required.
    pub severity: PagerDutySeverity,
    /// When the tool detected it.
    pub timestamp: Option<DateTime<Utc>>,
    /// The part of the source at fault.
    pub component: Option<String>,
    /// The logical group of components (a service).
    pub group: Option<String>,
    /// The kind of problem.
    pub class: Option<String>,
    /// Free-form details.
    pub custom_details: Option<Value>,
}

/// A link of an event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    /// The URL.
    pub href: String,
    /// Its text.
    pub text: Option<String>,
}

/// An image of an event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Image {
    /// The image's URL.
    pub src: String,
    /// Where it links to.
    pub href: Option<String>,
    /// Its alternative text.
    pub alt: Option<String>,
}

/// Parses and checks an event. Unknown fields are accepted; every problem
/// is named in PagerDuty's style (`'payload.summary' is missing or blank`).
pub fn parse_pagerduty(bytes: &[u8]) -> Result<Event, Vec<String>> {
    use super::{optional_str, required_str};
    let value: Value = serde_json::from_slice(bytes).map_err(|e| vec![format!("JSON parse error: {e}")])?;
    let Some(root) = value.as_object() else {
        return Err(vec!["the event must be a JSON object".into()]);
    };
    let mut errors = Vec::new();
    let routing_key = required_str(root, "", "routing_key", &mut errors).map(str::to_owned);
    if routing_key.as_ref().is_some_and(|k| k.chars().count() > ROUTING_KEY_CHARS_MAX) {
        errors.push(format!("'routing_key' is longer than {ROUTING_KEY_CHARS_MAX} characters"));
    }
    let action = match required_str(root, "", "event_action", &mut errors) {
        Some("trigger") => Some(Action::Trigger),
        Some("acknowledge") => Some(Action::Acknowledge),
        Some("resolve") => Some(Action::Resolve),
        Some(other) => {
            errors.push(format!(
                "'event_action' is invalid ({other:?}; must be one of: 'trigger', 'acknowledge', 'resolve')"
            ));
            None
        }
        None => None,
    };
    let dedup_key = optional_str(root, "", "dedup_key", &mut errors).map(str::to_owned);
    if let Some(key) = &dedup_key {
        if key.chars().count() > DEDUP_KEY_CHARS_MAX {
            errors.push(format!("'dedup_key' is longer than {DEDUP_KEY_CHARS_MAX} characters"));
        } else if key.chars().any(char::is_control) {
            errors.push("'dedup_key' must not contain control characters".into());
        }
    }
    if matches!(action, Some(Action::Acknowledge | Action::Resolve)) && dedup_key.is_none() {
        let action = action.map_or("", Action::as_str);
        errors.push(format!("'dedup_key' is missing or blank (required to {action})"));
    }
    let (payload, note) = match (action, root.get("payload")) {
        (Some(Action::Trigger), None | Some(Value::Null)) => {
            errors.push("'payload' is missing".into());
            (None, None)
        }
        (Some(Action::Trigger), Some(Value::Object(p))) => (parse_payload(p, &mut errors), None),
        (_, Some(Value::Object(p))) => {
            // PagerDuty ignores the payload of acknowledge and resolve; a
            // summary there still makes a better note.
            (None, p.get("summary").and_then(Value::as_str).map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned))
        }
        (_, None | Some(Value::Null)) => (None, None),
        (_, Some(_)) => {
            errors.push("'payload' must be an object".into());
            (None, None)
        }
    };
    let client = optional_str(root, "", "client", &mut errors).map(str::to_owned);
    let client_url = optional_str(root, "", "client_url", &mut errors).map(str::to_owned);
    let links = list(root, "links", &mut errors, |o, path, errors| {
        Some(Link {
            href: required_str(o, path, "href", errors)?.to_owned(),
            text: optional_str(o, path, "text", errors).map(str::to_owned),
        })
    });
    let images = list(root, "images", &mut errors, |o, path, errors| {
        Some(Image {
            src: required_str(o, path, "src", errors)?.to_owned(),
            href: optional_str(o, path, "href", errors).map(str::to_owned),
            alt: optional_str(o, path, "alt", errors).map(str::to_owned),
        })
    });
    let (Some(routing_key), Some(action), true) = (routing_key, action, errors.is_empty()) else {
        return Err(errors);
    };
    let digest = super::hex(&Sha256::digest(bytes));
    let (dedup_key, dedup_key_generated) = match dedup_key {
        Some(key) => (key, false),
        // The same event sent again gets the same key, so a retry merges
        // into the incident the first one opened.
        None => (digest[..32].to_owned(), true),
    };
    Ok(Event {
        routing_key,
        action,
        dedup_key,
        dedup_key_generated,
        payload,
        note,
        client,
        client_url,
        links,
        images,
        digest,
    })
}

fn parse_payload(p: &Map<String, Value>, errors: &mut Vec<String>) -> Option<Payload> {
    use super::{optional_str, required_str};
    let before = errors.len();
    let summary = required_str(p, "payload", "summary", errors);
    if summary.is_some_and(|s| s.chars().count() > SUMMARY_CHARS_MAX) {
        errors.push(format!("'payload.summary' is longer than {SUMMARY_CHARS_MAX} characters"));
    }
    let source = required_str(p, "payload", "source", errors);
    let severity = match required_str(p, "payload", "severity", errors) {
        Some("critical") => Some(PagerDutySeverity::Critical),
        Some("error") => Some(PagerDutySeverity::Error),
        Some("warning") => Some(PagerDutySeverity::Warning),
        Some("info") => Some(PagerDutySeverity::Info),
        Some(other) => {
            errors.push(format!(
                "'payload.severity' is invalid ({other:?}; must be one of: 'critical', 'error', 'warning', 'info')"
            ));
            None
        }
        None => None,
    };
    let timestamp = optional_str(p, "payload", "timestamp", errors).and_then(|t| {
        let parsed = DateTime::parse_from_rfc3339(t).or_else(|_| DateTime::parse_from_str(t, "%Y-%m-%dT%H:%M:%S%.f%z"));
        match parsed {
            Ok(t) => Some(t.with_timezone(&Utc)),
            Err(_) => {
                errors.push(format!("'payload.timestamp' is not an ISO 8601 date and time: {t:?}"));
                None
            }
        }
    });
    let component = optional_str(p, "payload", "component", errors).map(str::to_owned);
    let group = optional_str(p, "payload", "group", errors).map(str::to_owned);
    let class = optional_str(p, "payload", "class", errors).map(str::to_owned);
    let custom_details = p.get("custom_details").filter(|v| !v.is_null()).cloned();
    if errors.len() > before {
        return None;
    }
    Some(Payload {
        summary: summary?.trim().to_owned(),
        source: source?.trim().to_owned(),
        severity: severity?,
        timestamp,
        component,
        group,
        class,
        custom_details,
    })
}

/// An optional array of objects, each parsed by `item`.
fn list<T>(
    root: &Map<String, Value>,
    key: &str,
    errors: &mut Vec<String>,
    item: impl Fn(&Map<String, Value>, &str, &mut Vec<String>) -> Option<T>,
) -> Vec<T> {
    match root.get(key) {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .filter_map(|(i, v)| {
                let path = format!("{key}[{i}]");
                match v.as_object() {
                    Some(o) => item(o, &path, errors),
                    None => {
                        errors.push(format!("'{path}' must be an object"));
                        None
                    }
                }
            })
            .collect(),
        Some(_) => {
            errors.push(format!("'{key}' must be an array"));
            Vec::new()
        }
    }
}

impl Event {
    /// The dedup key of the event's incident.
    pub fn incident_dedup_key(&self) -> DedupKey {
        super::dedup_key("pagerduty", &self.dedup_key)
    }

    /// The request id of this event applied in `scope` (the open incident
    /// it applies to, or for a trigger the last closed incident of its key).
    pub fn request_id(&self, scope: &str) -> String {
        super::request_id("pd", &[self.action.as_str().as_bytes(), scope.as_bytes(), self.digest.as_bytes()])
    }

    /// The report of a trigger (`None` for the other actions). Title: the
    /// summary; service: `payload.group`, else `payload.component`, when it
    /// names a valid service; labels: severity, source, component, group,
    /// class, client and the scalar `custom_details` (as `details.<name>`);
    /// the description holds everything, links and images included.
    pub fn report_command(&self) -> Option<Command> {
        let p = self.payload.as_ref().filter(|_| self.action == Action::Trigger)?;
        let service = [p.group.as_deref(), p.component.as_deref()]
            .into_iter()
            .flatten()
            .find_map(|s| ServiceName::new(s).or_else(|_| ServiceName::new(s.to_lowercase())).ok());
        let mut labels: Vec<(String, String)> =
            vec![("severity".into(), p.severity.as_str().into()), ("source".into(), p.source.clone())];
        for (name, value) in
            [("component", &p.component), ("group", &p.group), ("class", &p.class), ("client", &self.client)]
        {
            if let Some(value) = value {
                labels.push((name.into(), value.clone()));
            }
        }
        if let Some(Value::Object(details)) = &p.custom_details {
            for (name, value) in details {
                let value = match value {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    Value::Bool(b) => b.to_string(),
                    _ => continue,
                };
                labels.push((format!("details.{name}"), value));
            }
        }
        Some(Command::ReportIssue {
            source: ReportSource::PagerDuty,
            reporter: actor(),
            title: text::TITLE.clean(&p.summary),
            description: text::DESCRIPTION.clean(&self.description(p)),
            service,
            customers: Vec::new(),
            labels: super::fit_labels(labels.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
            dedup_key: Some(self.incident_dedup_key()),
            started_at: p.timestamp,
        })
    }

    fn description(&self, p: &Payload) -> String {
        let mut lines = vec![p.summary.clone(), String::new()];
        lines.push(format!("Source: {}", p.source));
        lines.push(format!("Severity: {}", p.severity.as_str()));
        for (name, value) in [("Component", &p.component), ("Group", &p.group), ("Class", &p.class)] {
            if let Some(value) = value {
                lines.push(format!("{name}: {value}"));
            }
        }
        match (&self.client, &self.client_url) {
            (Some(client), Some(url)) => lines.push(format!("Client: {client} ({url})")),
            (Some(client), None) => lines.push(format!("Client: {client}")),
            (None, Some(url)) => lines.push(format!("Client: {url}")),
            (None, None) => {}
        }
        lines.push(format!("PagerDuty dedup_key: {}", self.dedup_key));
        if let Some(details) = &p.custom_details {
            lines.push("Details:".into());
            lines.push(serde_json::to_string_pretty(details).unwrap_or_default());
        }
        if !self.links.is_empty() {
            lines.push("Links:".into());
            for link in &self.links {
                lines.push(match &link.text {
                    Some(text) => format!("- {text}: {}", link.href),
                    None => format!("- {}", link.href),
                });
            }
        }
        if !self.images.is_empty() {
            lines.push("Images:".into());
            for image in &self.images {
                let alt = image.alt.as_deref().map(|a| format!("{a}: ")).unwrap_or_default();
                let href = image.href.as_deref().map(|h| format!(" (links to {h})")).unwrap_or_default();
                lines.push(format!("- {alt}{}{href}", image.src));
            }
        }
        lines.join("\n")
    }

    /// The internal update an acknowledge posts.
    pub fn acknowledge_text(&self) -> String {
        let note = self.note.as_deref().map(|n| format!(": {n}")).unwrap_or_default();
        text::NOTE
            .clean(&format!("Acknowledged through the PagerDuty Events API (dedup_key {:?}){note}", self.dedup_key))
    }

    /// The mitigation summary a resolve leaves.
    pub fn resolve_summary(&self) -> String {
        let note = self.note.as_deref().map(|n| format!(": {n}")).unwrap_or_default();
        text::NOTE.clean(&format!("resolved by its PagerDuty Events API sender (dedup_key {:?}){note}", self.dedup_key))
    }
}

/// Applies an event through `handle` as `caller`, with the trace context
/// `traceparent` on every event; returns the incident it touched, if any.
/// Returns after every event written is durable.
pub async fn apply(
    handle: &Handle,
    event: &Event,
    traceparent: Option<&str>,
    caller: &Caller,
) -> Result<Option<IncidentId>, Error> {
    let actor = &caller.actor;
    let key = event.incident_dedup_key();
    if event.action == Action::Trigger {
        // Scoped by the last incident of this key that was closed: the same
        // event again (a retry) writes nothing while the incident it went to
        // is open, and opens a new one once that one is closed.
        let closed = handle.last_closed_with_dedup_key(&key).await?;
        let scope = format!("after {}", closed.map_or("none".to_owned(), |i| i.to_string()));
        let command = caller.report(event.report_command().expect("a trigger has a payload"))?;
        let ctx = super::context(actor, traceparent, event.request_id(&scope));
        return Ok(Some(handle.report(command, &ctx).await?.incident));
    }
    // Acknowledge and resolve apply to the open incident of the key, once.
    let Some(incident) = handle.open_with_dedup_key(&key).await? else { return Ok(None) };
    caller.check(incident.service())?;
    let ctx = super::context(actor, traceparent, event.request_id(&incident.id().to_string()));
    if event.action == Action::Acknowledge {
        let update = Command::PostUpdate { audience: Audience::Internal, text: event.acknowledge_text() };
        handle.execute(incident.id(), update, &ctx).await?;
    } else {
        super::mitigation_note(handle, &incident, &event.resolve_summary(), &ctx).await?;
    }
    Ok(Some(incident.id()))
}

/// `POST /v2/enqueue`.
pub(super) async fn enqueue(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Body) -> Response {
    let bytes = match super::read_body(&headers, body, shared.options.pagerduty_body_bytes_max).await {
        Ok(bytes) => bytes,
        Err(e) => return invalid(klaxon_proto::status::to_http(&e), vec![e.message()]),
    };
    let event = match parse_pagerduty(&bytes) {
        Ok(event) => event,
        Err(errors) => return invalid(klaxon_proto::status::http_status(Class::InvalidArgument), errors),
    };
    let caller = match shared.caller(&headers, Some(&event.routing_key), actor()) {
        Ok(caller) => caller,
        Err(refused) => return refused.into_response("invalid event", "Not authorized"),
    };
    let throttled = shared.throttle.lock().expect("throttle lock").take(&event.routing_key);
    if let Err(wait) = throttled {
        let errors = [format!(
            "more than {} events a minute (burst {}) for this routing key",
            shared.options.pagerduty_events_per_minute, shared.options.pagerduty_burst
        )];
        let message = "Requests for this service are arriving too quickly. Please retry later.";
        let throttled = klaxon_proto::status::http_status(Class::ResourceExhausted);
        let mut response = super::json_response(throttled, &Answer::errors("throttle event", message, &errors));
        let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        response.headers_mut().insert(RETRY_AFTER, HeaderValue::from(seconds.max(1)));
        return response;
    }
    let span = tracing::info_span!(parent: None, "intake.pagerduty", action = event.action.as_str());
    let traced = super::traced(&headers, span);
    match apply(&shared.handle, &event, traced.traceparent(), &caller).instrument(traced.span().clone()).await {
        Ok(_) => super::json_response(
            StatusCode::ACCEPTED,
            &Answer { status: "success", message: "Event processed", dedup_key: Some(&event.dedup_key), errors: None },
        ),
        Err(e) => {
            let status = klaxon_proto::status::to_http(&e);
            tracing::warn!(action = event.action.as_str(), %status, error = %e, "PagerDuty event failed");
            if status.is_client_error() {
                invalid(status, vec![e.to_string()])
            } else {
                let errors = [e.to_string()];
                super::json_response(status, &Answer::errors("error", "Event not processed; retry", &errors))
            }
        }
    }
}

/// PagerDuty's refusal of an invalid event.
fn invalid(status: StatusCode, errors: Vec<String>) -> Response {
    super::json_response(status, &Answer::errors("invalid event", "Event object is invalid", &errors))
}
