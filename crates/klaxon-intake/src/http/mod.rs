//! HTTP intake, so that existing monitoring plugs in unchanged:
//!
//! - `POST /v1/alertmanager`: the Prometheus Alertmanager webhook receiver
//!   (payload version 4). One `groupKey` is one incident; each
//!   `fingerprint` is one alert reported into it. See [`alertmanager`].
//! - `POST /v2/enqueue`: a PagerDuty Events API v2 compatible endpoint
//!   (`trigger`, `acknowledge`, `resolve`), with PagerDuty's responses,
//!   payload limit and a per-routing-key throttle. See [`pagerduty`].
//!
//! Parsing and mapping are pure functions ([`parse_alertmanager`],
//! [`parse_pagerduty`], [`alertmanager::Notification::plan`],
//! [`pagerduty::Event::report_command`]), unit-tested and fuzzable; the
//! axum handlers only read the body, call them, run the resulting commands
//! through the intake [`Handle`] and render the answer.
//!
//! Text from monitoring is made to fit rather than refused: a title,
//! description, note or label with a stray control character or over its
//! bound still pages. Each goes through [`Kind::clean`] of its kind, the
//! lenient form of the one text rule ([`klaxon_domain::text`]), so what is
//! written is what the rule accepts; only a required field with nothing
//! left (blank) refuses the delivery, naming the field. People and clients
//! of the gRPC API, who chose their text, are refused instead.
//!
//! What it must never do: answer 2xx before the events are durable (every
//! [`Handle`] method returns after the append is), write anything for
//! invalid input, write twice for a retried delivery (request ids are
//! derived from the content, so the events' ids are too), or resolve an
//! incident by itself: a cleared alert leaves a mitigation note (see
//! [`mitigation_note`]) and a person decides about resolution.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use axum::routing::post;
use klaxon_auth::{Auth, Grant};
use klaxon_domain::class::{Class, Classify};
use klaxon_domain::ids::{ActorId, Audience, DedupKey, ServiceName};
use klaxon_domain::incident::{Command, Incident, LABELS_MAX, Status};
use klaxon_domain::text::{self, Kind};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use klaxon_telemetry::Traced;

use crate::{CommandContext, Error, Handle, Outcome};

pub mod alertmanager;
pub mod pagerduty;
mod throttle;

pub use alertmanager::parse_alertmanager;
pub use pagerduty::parse_pagerduty;

/// The path of the Alertmanager webhook receiver.
pub const ALERTMANAGER_PATH: &str = "/v1/alertmanager";
/// The path of the PagerDuty Events API v2 compatible endpoint.
pub const PAGERDUTY_PATH: &str = "/v2/enqueue";

/// A body this many times over its limit is not even read to the end; up
/// to it, the rest is read and dropped, so that the client gets to read the
/// `413` instead of a connection reset.
const DRAIN_FACTOR: usize = 4;

/// Settings of the HTTP intake (the `[http]` table of the configuration).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpOptions {
    /// Largest Alertmanager notification body, in bytes. Default 4 MiB.
    pub alertmanager_body_bytes_max: usize,
    /// Largest PagerDuty event body, in bytes. Default 512 KiB, PagerDuty's
    /// own limit.
    pub pagerduty_body_bytes_max: usize,
    /// Sustained PagerDuty events per minute and routing key; 0 turns the
    /// throttle off. Default 120.
    pub pagerduty_events_per_minute: u32,
    /// PagerDuty events a routing key may send at once before the throttle
    /// answers `429`. Default 60.
    pub pagerduty_burst: u32,
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            alertmanager_body_bytes_max: 4 * 1024 * 1024,
            pagerduty_body_bytes_max: 512 * 1024,
            pagerduty_events_per_minute: 120,
            pagerduty_burst: 60,
        }
    }
}

impl HttpOptions {
    /// Checks the values; the error names the key (under `http.`).
    pub fn validate(&self) -> Result<(), String> {
        for (key, value) in [
            ("alertmanager_body_bytes_max", self.alertmanager_body_bytes_max),
            ("pagerduty_body_bytes_max", self.pagerduty_body_bytes_max),
        ] {
            if value < 1024 {
                return Err(format!("http.{key}: {value} is below the smallest useful limit, 1024 bytes"));
            }
        }
        if self.pagerduty_events_per_minute > 0 && self.pagerduty_burst == 0 {
            return Err("http.pagerduty_burst: must be at least 1 while the throttle is on".into());
        }
        Ok(())
    }
}

/// What the handlers share.
struct Shared {
    handle: Handle,
    options: HttpOptions,
    throttle: Mutex<throttle::Throttle>,
    auth: Option<Auth>,
}

/// The HTTP intake routes, served by `klaxond` on its own address
/// (`http_listen`). With `auth`, every delivery needs a bearer token of a
/// role that may report (see [`klaxon_auth::policy::HTTP_REPORTERS`]);
/// the PagerDuty endpoint also takes the token as the event's
/// `routing_key`, so that PagerDuty senders work unchanged. Without it
/// (in-process tests), deliveries act as the integration's own actor.
pub fn router(handle: Handle, options: HttpOptions, auth: Option<Auth>) -> Router {
    let throttle = throttle::Throttle::new(options.pagerduty_events_per_minute, options.pagerduty_burst);
    let shared = Arc::new(Shared { handle, options, throttle: Mutex::new(throttle), auth });
    Router::new()
        .route(ALERTMANAGER_PATH, post(alertmanager::receive))
        .route(PAGERDUTY_PATH, post(pagerduty::enqueue))
        .with_state(shared)
}

/// Who a delivery acts as: the principal of its token, or the
/// integration's own actor on a server without authentication.
pub struct Caller {
    /// Recorded as the reporter and the events' actor.
    pub actor: ActorId,
    grant: Option<Grant>,
}

impl Caller {
    /// The integration itself, unauthenticated.
    pub fn integration(actor: ActorId) -> Caller {
        Caller { actor, grant: None }
    }

    /// Refuses a principal scoped to teams that do not own `service`.
    fn check(&self, service: Option<&ServiceName>) -> Result<(), Error> {
        match &self.grant {
            Some(grant) => Ok(grant.check_service(service.map(ServiceName::as_str))?),
            None => Ok(()),
        }
    }

    /// A report command made by this caller, once its scope is checked.
    fn report(&self, mut command: Command) -> Result<Command, Error> {
        if let Command::ReportIssue { reporter, service, .. } = &mut command {
            self.check(service.as_ref())?;
            *reporter = self.actor.clone();
        }
        Ok(command)
    }
}

/// A refused credential: `401` (with `WWW-Authenticate: Bearer`) or `403`.
struct Refused {
    status: StatusCode,
    reason: String,
}

impl Shared {
    /// Authenticates a delivery by its `authorization: Bearer` header, else
    /// by `fallback` (PagerDuty's routing key), for a role that may report.
    fn caller(&self, headers: &HeaderMap, fallback: Option<&str>, integration: ActorId) -> Result<Caller, Refused> {
        let Some(auth) = &self.auth else { return Ok(Caller::integration(integration)) };
        let header = headers.get(axum::http::header::AUTHORIZATION);
        let principal = match (header, fallback) {
            (None, Some(token)) => auth.tokens.authenticate(token),
            (header, _) => auth.tokens.authenticate_header(header),
        }
        .map_err(|e| Refused { status: klaxon_proto::status::to_http(&e), reason: e.to_string() })?;
        if !klaxon_auth::policy::HTTP_REPORTERS.contains(&principal.role) {
            return Err(Refused {
                status: klaxon_proto::status::http_status(Class::PermissionDenied),
                reason: format!("{principal} may not report; the HTTP intake is for managers, engineers and services"),
            });
        }
        let actor = ActorId::new(&principal.name).map_err(|e| Refused {
            status: klaxon_proto::status::http_status(Class::PermissionDenied),
            reason: format!("principal name: {e}"),
        })?;
        Ok(Caller { actor, grant: Some(auth.grant(principal)) })
    }
}

impl Refused {
    /// The answer, in the endpoint's error shape.
    fn into_response(self, status_text: &str, message: &str) -> Response {
        let errors = [self.reason];
        let mut response = json_response(self.status, &Answer::errors(status_text, message, &errors));
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(axum::http::header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// Why a request body could not be read.
#[derive(Debug)]
enum BodyError {
    /// Over the limit.
    TooLarge { limit: usize },
    /// The connection broke while reading it.
    Broken(String),
}

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message())
    }
}

impl Classify for BodyError {
    fn class(&self) -> Class {
        match self {
            BodyError::TooLarge { .. } => Class::TooLarge,
            BodyError::Broken(_) => Class::InvalidArgument,
        }
    }
}

impl BodyError {
    fn message(&self) -> String {
        match self {
            BodyError::TooLarge { limit } => format!("the request body is larger than {limit} bytes"),
            BodyError::Broken(reason) => format!("the request body could not be read: {reason}"),
        }
    }
}

/// Reads a whole body of at most `limit` bytes. A larger one is read (and
/// dropped) up to [`DRAIN_FACTOR`] times the limit before it is refused, so
/// the client reads the refusal rather than a reset connection.
async fn read_body(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes, BodyError> {
    use tokio_stream::StreamExt;
    let drain_max = limit.saturating_mul(DRAIN_FACTOR);
    let declared = headers.get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > drain_max as u64) {
        return Err(BodyError::TooLarge { limit });
    }
    let mut stream = body.into_data_stream();
    let mut buffer = Vec::new();
    let mut total = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| BodyError::Broken(e.to_string()))?;
        total = total.saturating_add(chunk.len());
        if total <= limit {
            buffer.extend_from_slice(&chunk);
        } else if total > drain_max {
            return Err(BodyError::TooLarge { limit });
        }
    }
    if total > limit { Err(BodyError::TooLarge { limit }) } else { Ok(Bytes::from(buffer)) }
}

/// A JSON response.
fn json_response(status: StatusCode, body: &impl Serialize) -> Response {
    let mut response = Response::new(Body::from(serde_json::to_vec(body).expect("our answers serialize")));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// An answer in PagerDuty's shape and field order: `status`, `message`,
/// then `dedup_key` (on success) or `errors`.
#[derive(Debug, Serialize)]
struct Answer<'a> {
    status: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    dedup_key: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    errors: Option<&'a [String]>,
}

impl<'a> Answer<'a> {
    fn errors(status: &'a str, message: &'a str, errors: &'a [String]) -> Answer<'a> {
        Answer { status, message, dedup_key: None, errors: Some(errors) }
    }
}

/// The command context of a webhook delivery: the integration's actor, a
/// request id derived from the content, and the trace context of the span
/// handling the delivery.
fn context(actor: &ActorId, traceparent: Option<&str>, request_id: String) -> CommandContext {
    CommandContext {
        actor: actor.clone(),
        request_id: Some(request_id),
        expected_version: None,
        traceparent: traceparent.map(str::to_owned),
    }
}

/// Joins `span` (made with `parent: None`) to the caller's trace: the
/// request's `traceparent` header, or a new trace. An invalid header is
/// ignored rather than refused: tracing must never make a delivery fail.
fn traced(headers: &HeaderMap, span: tracing::Span) -> Traced {
    let incoming = headers.get("traceparent").and_then(|v| v.to_str().ok()).filter(|t| klaxon_log::is_traceparent(t));
    Traced::new(span, incoming)
}

/// Records that the monitoring side says the problem is over, without ever
/// resolving the incident: a Declared incident is mitigated with `summary`;
/// in any other state (Reported, already Mitigated, or Resolved by a person
/// in between) the summary is posted as an internal status update that says
/// why it did not mitigate. A person validates and resolves.
pub async fn mitigation_note(
    handle: &Handle,
    incident: &Incident,
    summary: &str,
    ctx: &CommandContext,
) -> Result<Outcome, Error> {
    let id = incident.id();
    let mut status = incident.status();
    if status == Status::Declared {
        match handle.execute(id, Command::Mitigate { summary: summary.to_owned() }, ctx).await {
            Ok(outcome) => return Ok(outcome),
            // The incident moved on since it was read: note it instead. The
            // refusal wrote nothing, so the request id is still unused.
            Err(Error::Domain(klaxon_domain::Error::Rule { state, .. })) => status = state,
            Err(e) => return Err(e),
        }
    }
    let text = text::NOTE.clean(&format!("{summary}; not mitigated automatically because {id} is {status}"));
    handle.execute(id, Command::PostUpdate { audience: Audience::Internal, text }, ctx).await
}

/// A request id derived from `parts` (length-prefixed, so no two lists of
/// parts give the same bytes): `prefix-` and 32 hex digits of SHA-256.
fn request_id(prefix: &str, parts: &[&[u8]]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part);
    }
    format!("{prefix}-{}", hex(&hasher.finalize()[..16]))
}

/// Lowercase hex.
fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// The incident dedup key `namespace/key`, or `namespace/sha256:<hex>` when
/// that would be too long or hold control characters.
fn dedup_key(namespace: &str, key: &str) -> DedupKey {
    DedupKey::new(format!("{namespace}/{key}")).unwrap_or_else(|_| {
        DedupKey::new(format!("{namespace}/sha256:{}", hex(&Sha256::digest(key.as_bytes()))))
            .expect("a namespace and a hex digest make a valid dedup key")
    })
}

/// Labels that fit the domain's limits: at most [`LABELS_MAX`], names and
/// values made to fit the text rule ([`text::LABEL_NAME`],
/// [`text::LABEL_VALUE`], [`Kind::clean`]); a name with nothing left is
/// dropped. Later entries win over earlier ones with the same name; what
/// does not fit is dropped (it stays in the description).
fn fit_labels<'a>(entries: impl IntoIterator<Item = (&'a str, &'a str)>) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    for (name, value) in entries {
        let name = text::LABEL_NAME.clean(name);
        if name.is_empty() || (labels.len() >= LABELS_MAX && !labels.contains_key(&name)) {
            continue;
        }
        labels.insert(name, text::LABEL_VALUE.clean(value));
    }
    labels
}

// --- validation of JSON bodies ----------------------------------------------
//
// Bodies are read as `serde_json::Value` and checked field by field, so that
// every problem is named (PagerDuty answers with the list) and unknown fields
// are accepted.

/// The name of `key` under `path`, as the errors spell it.
fn name(path: &str, key: &str) -> String {
    if path.is_empty() { key.to_owned() } else { format!("{path}.{key}") }
}

/// A required, non-blank string.
fn required_str<'a>(
    object: &'a Map<String, Value>,
    path: &str,
    key: &str,
    errors: &mut Vec<String>,
) -> Option<&'a str> {
    match object.get(key) {
        Some(Value::String(s)) if !Kind::is_blank(s) => Some(s),
        None | Some(Value::Null) | Some(Value::String(_)) => {
            errors.push(format!("'{}' is missing or blank", name(path, key)));
            None
        }
        Some(_) => {
            errors.push(format!("'{}' must be a string", name(path, key)));
            None
        }
    }
}

/// An optional string; blank counts as absent.
fn optional_str<'a>(
    object: &'a Map<String, Value>,
    path: &str,
    key: &str,
    errors: &mut Vec<String>,
) -> Option<&'a str> {
    match object.get(key) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if Kind::is_blank(s) => None,
        Some(Value::String(s)) => Some(s),
        Some(_) => {
            errors.push(format!("'{}' must be a string", name(path, key)));
            None
        }
    }
}

/// An optional object whose values are all strings (labels, annotations).
fn string_map(
    object: &Map<String, Value>,
    path: &str,
    key: &str,
    errors: &mut Vec<String>,
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    match object.get(key) {
        None | Some(Value::Null) => {}
        Some(Value::Object(map)) => {
            for (k, v) in map {
                match v {
                    Value::String(s) => {
                        out.insert(k.clone(), s.clone());
                    }
                    _ => errors.push(format!("'{}.{k}' must be a string", name(path, key))),
                }
            }
        }
        Some(_) => errors.push(format!("'{}' must be an object of strings", name(path, key))),
    }
    out
}

#[cfg(test)]
mod tests;
