//! The Prometheus Alertmanager webhook receiver (payload version 4).
//!
//! Alertmanager sends one notification per alert group, holding every alert
//! of the group (firing and, with `send_resolved`, resolved), and resends it
//! when the group changes, after `repeat_interval`, and whenever it got no
//! 2xx. The mapping:
//!
//! - The group (`groupKey`) is one incident: its dedup key is
//!   `alertmanager/<groupKey>` (or a SHA-256 of a key too long for one).
//! - Each firing alert (`fingerprint`, `startsAt`) is one report into it: the
//!   first opens the incident, the others merge into it.
//! - Each resolved alert is an internal status update on the group's open
//!   incident, naming the alert.
//! - When every alert of the notification is resolved (and Alertmanager
//!   truncated none), the incident gets a mitigation note
//!   ([`super::mitigation_note`]): never a silent resolve.
//!
//! Every step's request id is derived from what it is about (the group, the
//! fingerprint, the status, `startsAt`/`endsAt`), so the repeated and
//! retried notifications write nothing twice. A step that finds no open
//! incident (a resolved alert Klaxon never saw firing, or an incident a
//! person already resolved) writes nothing.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use chrono::{DateTime, SecondsFormat, Utc};
use klaxon_domain::class::Class;
use klaxon_domain::ids::{ActorId, Audience, DedupKey, IncidentId, ReportSource, ServiceName};
use klaxon_domain::incident::Command;
use klaxon_domain::text;
use serde::Serialize;
use serde_json::Value;
use tracing::Instrument;

use super::{Answer, Caller, Shared};
use crate::{Error, Handle};

#[cfg(test)]
mod tests;

/// The actor (and reporter) of everything Alertmanager writes.
pub const ACTOR: &str = "svc:alertmanager";

/// The actor of Alertmanager deliveries.
pub fn actor() -> ActorId {
    ActorId::new(ACTOR).expect("a valid actor id")
}

/// Whether an alert (or a whole group) is firing or resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AlertStatus {
    /// Still firing.
    Firing,
    /// Resolved.
    Resolved,
}

impl AlertStatus {
    fn as_str(self) -> &'static str {
        match self {
            AlertStatus::Firing => "firing",
            AlertStatus::Resolved => "resolved",
        }
    }
}

/// One webhook notification, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notification {
    /// The group's key: one group, one incident.
    pub group_key: String,
    /// `resolved` when every alert is.
    pub status: AlertStatus,
    /// The receiver's name in Alertmanager's configuration.
    pub receiver: String,
    /// The labels the group is grouped by.
    pub group_labels: BTreeMap<String, String>,
    /// Labels every alert has.
    pub common_labels: BTreeMap<String, String>,
    /// Annotations every alert has.
    pub common_annotations: BTreeMap<String, String>,
    /// Alertmanager's own URL.
    pub external_url: String,
    /// How many alerts Alertmanager left out (`max_alerts`).
    pub truncated_alerts: u64,
    /// The alerts of the group.
    pub alerts: Vec<Alert>,
}

/// One alert of a notification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Alert {
    /// Firing or resolved.
    pub status: AlertStatus,
    /// Its labels (they identify it).
    pub labels: BTreeMap<String, String>,
    /// Its annotations (`summary`, `description`, `runbook_url`, …).
    pub annotations: BTreeMap<String, String>,
    /// When it started firing.
    pub starts_at: DateTime<Utc>,
    /// When it ended; `None` while firing (Alertmanager sends the zero time).
    pub ends_at: Option<DateTime<Utc>>,
    /// The rule's URL in Prometheus.
    pub generator_url: String,
    /// Alertmanager's identity of the alert (a hash of its labels).
    pub fingerprint: String,
}

/// Longest accepted fingerprint (Alertmanager's are 16 hex digits).
pub const FINGERPRINT_CHARS_MAX: usize = 128;

/// Parses and checks a webhook body. Unknown fields are accepted; every
/// problem is named, as `'alerts[1].startsAt' is not an RFC 3339 time: …`.
pub fn parse_alertmanager(bytes: &[u8]) -> Result<Notification, Vec<String>> {
    use super::{optional_str, required_str, string_map};
    let value: Value = serde_json::from_slice(bytes).map_err(|e| vec![format!("the body is not valid JSON: {e}")])?;
    let Some(root) = value.as_object() else {
        return Err(vec!["the body must be a JSON object".into()]);
    };
    let mut errors = Vec::new();
    match root.get("version") {
        Some(Value::String(v)) if v == "4" => {}
        None | Some(Value::Null) => errors.push("'version' is missing (Alertmanager sends \"4\")".into()),
        Some(other) => errors.push(format!("'version' is {other}; only version \"4\" is supported")),
    }
    let group_key = required_str(root, "", "groupKey", &mut errors).map(str::to_owned);
    let status = status(root.get("status"), "status", &mut errors);
    let receiver = optional_str(root, "", "receiver", &mut errors).unwrap_or_default().to_owned();
    let group_labels = string_map(root, "", "groupLabels", &mut errors);
    let common_labels = string_map(root, "", "commonLabels", &mut errors);
    let common_annotations = string_map(root, "", "commonAnnotations", &mut errors);
    let external_url = optional_str(root, "", "externalURL", &mut errors).unwrap_or_default().to_owned();
    let truncated_alerts = match root.get("truncatedAlerts") {
        None | Some(Value::Null) => 0,
        Some(v) => v.as_u64().unwrap_or_else(|| {
            errors.push("'truncatedAlerts' must be a number of alerts (0 or more)".into());
            0
        }),
    };
    let mut alerts = Vec::new();
    match root.get("alerts") {
        Some(Value::Array(items)) if items.is_empty() => errors.push("'alerts' is empty".into()),
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                if let Some(alert) = parse_alert(item, &format!("alerts[{i}]"), &mut errors) {
                    alerts.push(alert);
                }
            }
        }
        None | Some(Value::Null) => errors.push("'alerts' is missing".into()),
        Some(_) => errors.push("'alerts' must be an array".into()),
    }
    match (group_key, status, errors.is_empty()) {
        (Some(group_key), Some(status), true) => Ok(Notification {
            group_key,
            status,
            receiver,
            group_labels,
            common_labels,
            common_annotations,
            external_url,
            truncated_alerts,
            alerts,
        }),
        _ => Err(errors),
    }
}

fn status(value: Option<&Value>, name: &str, errors: &mut Vec<String>) -> Option<AlertStatus> {
    match value {
        Some(Value::String(s)) if s == "firing" => Some(AlertStatus::Firing),
        Some(Value::String(s)) if s == "resolved" => Some(AlertStatus::Resolved),
        None | Some(Value::Null) => {
            errors.push(format!("'{name}' is missing (firing or resolved)"));
            None
        }
        Some(other) => {
            errors.push(format!("'{name}' is {other}; expected \"firing\" or \"resolved\""));
            None
        }
    }
}

fn parse_alert(value: &Value, path: &str, errors: &mut Vec<String>) -> Option<Alert> {
    use super::{optional_str, required_str, string_map};
    let Some(object) = value.as_object() else {
        errors.push(format!("'{path}' must be an object"));
        return None;
    };
    let before = errors.len();
    let status = status(object.get("status"), &format!("{path}.status"), errors);
    let labels = string_map(object, path, "labels", errors);
    if !object.contains_key("labels") {
        errors.push(format!("'{path}.labels' is missing"));
    }
    let annotations = string_map(object, path, "annotations", errors);
    let starts_at = match time(object.get("startsAt"), &format!("{path}.startsAt"), errors) {
        Ok(Some(t)) => Some(t),
        Ok(None) => {
            errors.push(format!("'{path}.startsAt' is missing"));
            None
        }
        Err(()) => None,
    };
    let ends_at = match time(object.get("endsAt"), &format!("{path}.endsAt"), errors) {
        Ok(None) if status == Some(AlertStatus::Resolved) => {
            errors.push(format!("'{path}.endsAt' is missing on a resolved alert"));
            None
        }
        Ok(t) => t,
        Err(()) => None,
    };
    let generator_url = optional_str(object, path, "generatorURL", errors).unwrap_or_default().to_owned();
    let fingerprint = required_str(object, path, "fingerprint", errors).map(str::to_owned);
    if let Some(f) = &fingerprint {
        if f.chars().count() > FINGERPRINT_CHARS_MAX || f.chars().any(char::is_control) {
            errors.push(format!(
                "'{path}.fingerprint' must be at most {FINGERPRINT_CHARS_MAX} characters without control characters"
            ));
        }
    }
    if errors.len() > before {
        return None;
    }
    Some(Alert {
        status: status?,
        labels,
        annotations,
        starts_at: starts_at?,
        ends_at: ends_at.filter(|_| status == Some(AlertStatus::Resolved)),
        generator_url,
        fingerprint: fingerprint?,
    })
}

/// An RFC 3339 time; `Ok(None)` when absent or Go's zero time
/// (`0001-01-01T00:00:00Z`, "not set"); `Err` once the problem is pushed.
fn time(value: Option<&Value>, name: &str, errors: &mut Vec<String>) -> Result<Option<DateTime<Utc>>, ()> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => match DateTime::parse_from_rfc3339(s) {
            Ok(t) if t.timestamp() <= ZERO_TIME_SECONDS => Ok(None),
            Ok(t) => Ok(Some(t.with_timezone(&Utc))),
            Err(e) => {
                errors.push(format!("'{name}' is not an RFC 3339 time: {s:?} ({e})"));
                Err(())
            }
        },
        Some(_) => {
            errors.push(format!("'{name}' must be an RFC 3339 time string"));
            Err(())
        }
    }
}

/// `0001-01-01T00:00:00Z` in Unix seconds: Go's zero `time.Time`.
const ZERO_TIME_SECONDS: i64 = -62_135_596_800;

/// What one notification asks intake to do, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// A firing alert: opens the group's incident or merges into it.
    Report {
        /// Derived from the group, the fingerprint and `startsAt`.
        request_id: String,
        /// A `ReportIssue`.
        command: Command,
    },
    /// An alert resolved: an internal status update on the open incident.
    AlertResolved {
        /// Derived from the group, the fingerprint, `startsAt` and `endsAt`.
        request_id: String,
        /// The update.
        text: String,
    },
    /// Every alert of the group resolved: the mitigation note.
    AllResolved {
        /// Derived from the group and every alert's fingerprint and times.
        request_id: String,
        /// The mitigation summary.
        summary: String,
    },
}

impl Notification {
    /// The dedup key of the group's incident.
    pub fn dedup_key(&self) -> DedupKey {
        super::dedup_key("alertmanager", &self.group_key)
    }

    /// Whether every alert of the group is known to be resolved (none was
    /// truncated away).
    pub fn all_resolved(&self) -> bool {
        self.truncated_alerts == 0
            && !self.alerts.is_empty()
            && self.alerts.iter().all(|a| a.status == AlertStatus::Resolved)
    }

    /// The steps, in order: the firing alerts' reports, the resolved
    /// alerts' updates, then the mitigation note when all are resolved.
    /// Pure: the same notification always gives the same steps.
    pub fn plan(&self) -> Vec<Step> {
        let mut steps = Vec::new();
        for alert in self.alerts.iter().filter(|a| a.status == AlertStatus::Firing) {
            steps.push(Step::Report { request_id: self.alert_request_id(alert), command: self.report_command(alert) });
        }
        for alert in self.alerts.iter().filter(|a| a.status == AlertStatus::Resolved) {
            steps.push(Step::AlertResolved { request_id: self.alert_request_id(alert), text: resolved_text(alert) });
        }
        if self.all_resolved() {
            let mut parts: Vec<Vec<u8>> = vec![self.group_key.as_bytes().to_vec(), b"all-resolved".to_vec()];
            let mut alerts: Vec<&Alert> = self.alerts.iter().collect();
            alerts.sort_by(|a, b| a.fingerprint.cmp(&b.fingerprint));
            for alert in alerts {
                parts.push(alert.fingerprint.as_bytes().to_vec());
                parts.push(rfc3339(Some(alert.starts_at)).into_bytes());
                parts.push(rfc3339(alert.ends_at).into_bytes());
            }
            let parts: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
            let n = self.alerts.len();
            let summary = if n == 1 {
                "the 1 alert of the Alertmanager group resolved".to_owned()
            } else {
                format!("all {n} alerts of the Alertmanager group resolved")
            };
            steps.push(Step::AllResolved { request_id: super::request_id("am", &parts), summary });
        }
        steps
    }

    /// The request id of one alert's step: the group, the fingerprint, the
    /// status and its times (`endsAt` is only set once resolved).
    fn alert_request_id(&self, alert: &Alert) -> String {
        super::request_id(
            "am",
            &[
                self.group_key.as_bytes(),
                alert.fingerprint.as_bytes(),
                alert.status.as_str().as_bytes(),
                rfc3339(Some(alert.starts_at)).as_bytes(),
                rfc3339(alert.ends_at).as_bytes(),
            ],
        )
    }

    /// The report of a firing alert. Its title is the group's common
    /// `summary` annotation, else the alert's own, else its `alertname`; its
    /// labels are the alert's (within the domain's limits); its service the
    /// `service` label when it names a valid service.
    pub fn report_command(&self, alert: &Alert) -> Command {
        let title = [
            self.common_annotations.get("summary"),
            alert.annotations.get("summary"),
            alert.labels.get("alertname"),
            self.common_labels.get("alertname"),
            self.group_labels.get("alertname"),
        ]
        .into_iter()
        .flatten()
        .map(|t| text::TITLE.clean(t))
        .find(|t| !t.is_empty())
        .unwrap_or_else(|| "Alertmanager alert".to_owned());
        let service = [alert.labels.get("service"), self.common_labels.get("service")]
            .into_iter()
            .flatten()
            .find_map(|s| ServiceName::new(s.as_str()).or_else(|_| ServiceName::new(s.to_lowercase())).ok());
        Command::ReportIssue {
            source: ReportSource::Alertmanager,
            reporter: actor(),
            title,
            description: text::DESCRIPTION.clean(&self.description(alert)),
            service,
            customers: Vec::new(),
            labels: super::fit_labels(alert.labels.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
            dedup_key: Some(self.dedup_key()),
            started_at: Some(alert.starts_at),
        }
    }

    fn description(&self, alert: &Alert) -> String {
        let mut lines = Vec::new();
        if let Some(d) = alert.annotations.get("description").or_else(|| self.common_annotations.get("description")) {
            lines.push(d.trim().to_owned());
            lines.push(String::new());
        }
        lines.push(format!(
            "Alert {} ({}) firing since {}",
            alert.labels.get("alertname").map_or("(no alertname)", String::as_str),
            alert.fingerprint,
            rfc3339(Some(alert.starts_at))
        ));
        lines.push(format!("Labels: {}", pairs(&alert.labels)));
        if !alert.annotations.is_empty() {
            lines.push(format!("Annotations: {}", pairs(&alert.annotations)));
        }
        if !alert.generator_url.is_empty() {
            lines.push(format!("Source: {}", alert.generator_url));
        }
        let receiver = if self.receiver.is_empty() { String::new() } else { format!(", receiver {}", self.receiver) };
        let at = if self.external_url.is_empty() { String::new() } else { format!(", at {}", self.external_url) };
        lines.push(format!("Alertmanager group {}{receiver}{at}", self.group_key));
        lines.join("\n")
    }
}

/// The internal update for a resolved alert.
fn resolved_text(alert: &Alert) -> String {
    let name = alert.labels.get("alertname").map(|n| format!("{n} ")).unwrap_or_default();
    text::NOTE.clean(&format!(
        "Alert {name}({}) resolved: firing from {} to {}",
        alert.fingerprint,
        rfc3339(Some(alert.starts_at)),
        rfc3339(alert.ends_at)
    ))
}

fn pairs(map: &BTreeMap<String, String>) -> String {
    map.iter().map(|(k, v)| format!("{k}={v:?}")).collect::<Vec<_>>().join(", ")
}

fn rfc3339(time: Option<DateTime<Utc>>) -> String {
    time.map_or_else(|| "-".to_owned(), |t| t.to_rfc3339_opts(SecondsFormat::AutoSi, true))
}

/// What applying one notification did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Applied {
    /// The group's incident, when there is one.
    pub incident: Option<IncidentId>,
    /// Steps that wrote events.
    pub written: usize,
    /// Steps that were retries and wrote nothing.
    pub deduplicated: usize,
    /// Steps that found no open incident and wrote nothing.
    pub skipped: usize,
}

/// Runs a notification's steps through `handle`, in order, as `caller`,
/// with the trace context `traceparent` on every event. Returns after every
/// event written is durable.
pub async fn apply(
    handle: &Handle,
    notification: &Notification,
    traceparent: Option<&str>,
    caller: &Caller,
) -> Result<Applied, Error> {
    let actor = &caller.actor;
    let key = notification.dedup_key();
    let mut applied = Applied::default();
    let count = |applied: &mut Applied, incident: IncidentId, deduplicated: bool| {
        applied.incident = Some(incident);
        if deduplicated {
            applied.deduplicated += 1;
        } else {
            applied.written += 1;
        }
    };
    for step in notification.plan() {
        match step {
            Step::Report { request_id, command } => {
                let ctx = super::context(actor, traceparent, request_id);
                let report = handle.report(caller.report(command)?, &ctx).await?;
                count(&mut applied, report.incident, report.outcome.deduplicated);
            }
            Step::AlertResolved { request_id, text } => {
                let Some(incident) = handle.open_with_dedup_key(&key).await? else {
                    applied.skipped += 1;
                    continue;
                };
                caller.check(incident.service())?;
                let ctx = super::context(actor, traceparent, request_id);
                let update = Command::PostUpdate { audience: Audience::Internal, text };
                let outcome = handle.execute(incident.id(), update, &ctx).await?;
                count(&mut applied, incident.id(), outcome.deduplicated);
            }
            Step::AllResolved { request_id, summary } => {
                let Some(incident) = handle.open_with_dedup_key(&key).await? else {
                    applied.skipped += 1;
                    continue;
                };
                caller.check(incident.service())?;
                let ctx = super::context(actor, traceparent, request_id);
                let outcome = super::mitigation_note(handle, &incident, &summary, &ctx).await?;
                count(&mut applied, incident.id(), outcome.deduplicated);
            }
        }
    }
    Ok(applied)
}

/// `POST /v1/alertmanager`: `200` once every event is durable; `400` for a
/// body that is not a version 4 notification (Alertmanager does not retry
/// it), `413` over the limit, `5xx` when intake cannot answer now
/// (Alertmanager retries, and the retry writes nothing twice).
pub(super) async fn receive(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Body) -> Response {
    let caller = match shared.caller(&headers, None, actor()) {
        Ok(caller) => caller,
        Err(refused) => return refused.into_response("error", "not authorized"),
    };
    let bytes = match super::read_body(&headers, body, shared.options.alertmanager_body_bytes_max).await {
        Ok(bytes) => bytes,
        Err(e) => return refusal(klaxon_proto::status::to_http(&e), vec![e.message()]),
    };
    let notification = match parse_alertmanager(&bytes) {
        Ok(n) => n,
        Err(errors) => return refusal(klaxon_proto::status::http_status(Class::InvalidArgument), errors),
    };
    let span = tracing::info_span!(parent: None, "intake.alertmanager", group_key = %notification.group_key);
    let traced = super::traced(&headers, span);
    match apply(&shared.handle, &notification, traced.traceparent(), &caller).instrument(traced.span().clone()).await {
        Ok(applied) => super::json_response(StatusCode::OK, &Stored { status: "success", applied }),
        Err(e) => {
            let status = klaxon_proto::status::to_http(&e);
            tracing::warn!(group_key = %notification.group_key, %status, error = %e, "alertmanager notification failed");
            refusal(status, vec![e.to_string()])
        }
    }
}

/// The `200` answer: what the notification did.
#[derive(Serialize)]
struct Stored {
    status: &'static str,
    #[serde(flatten)]
    applied: Applied,
}

fn refusal(status: StatusCode, errors: Vec<String>) -> Response {
    let message = if status.is_server_error() { "not stored; retry" } else { "invalid notification" };
    super::json_response(status, &Answer::errors("error", message, &errors))
}
