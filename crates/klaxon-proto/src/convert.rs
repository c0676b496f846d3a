//! Domain <-> wire conversions. Every parse names the request field it read,
//! so an `InvalidArgument` says exactly what to fix.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use klaxon_domain::Error;
use klaxon_domain::ids::{ActorId, Audience, IncidentId, IncidentRole, ReportSource, Severity};
use klaxon_domain::incident::{Incident, IncidentEvent, Status};

use crate::v1;

/// The request header naming the acting person until authentication is
/// configured.
pub const ACTOR_HEADER: &str = "klaxon-actor";

/// The acting person named by the [`ACTOR_HEADER`] of a request. A missing
/// or malformed header is an `InvalidField` naming the header.
pub fn actor(metadata: &tonic::metadata::MetadataMap) -> Result<ActorId, Error> {
    let invalid = |reason: String| Error::InvalidField { field: "klaxon-actor header", reason };
    let value = metadata
        .get(ACTOR_HEADER)
        .ok_or_else(|| invalid("is required: it names who acts (authentication is not configured)".into()))?;
    let value = value.to_str().map_err(|_| invalid("must be ASCII text".into()))?;
    ActorId::new(value).map_err(|e| invalid(e.to_string()))
}

/// Re-labels a domain parse error with the request field it came from.
pub fn field<T>(name: &'static str, result: Result<T, Error>) -> Result<T, Error> {
    result.map_err(|e| match e {
        Error::InvalidField { reason, .. } => Error::InvalidField { field: name, reason },
        Error::TooLarge { len, max, .. } => Error::TooLarge { field: name, len, max },
        other => other,
    })
}

/// Parses a domain value from a request string field.
pub fn parse<T: FromStr<Err = Error>>(name: &'static str, value: &str) -> Result<T, Error> {
    field(name, value.parse())
}

/// Parses an optional domain value: the empty string means absent.
pub fn parse_optional<T: FromStr<Err = Error>>(name: &'static str, value: &str) -> Result<Option<T>, Error> {
    if value.is_empty() { Ok(None) } else { parse(name, value).map(Some) }
}

fn unknown(field: &'static str, value: i32) -> Error {
    Error::InvalidField { field, reason: format!("{value} is not a known value") }
}

fn unspecified(field: &'static str) -> Error {
    Error::InvalidField { field, reason: "is required".into() }
}

/// An incident id such as `INC-42`.
pub fn incident_id(name: &'static str, value: &str) -> Result<IncidentId, Error> {
    if value.is_empty() {
        return Err(unspecified(name));
    }
    parse(name, value)
}

/// A required severity.
pub fn severity(name: &'static str, value: i32) -> Result<Severity, Error> {
    match v1::Severity::try_from(value) {
        Ok(v1::Severity::Unspecified) => Err(unspecified(name)),
        Ok(v1::Severity::Sev1) => Ok(Severity::Sev1),
        Ok(v1::Severity::Sev2) => Ok(Severity::Sev2),
        Ok(v1::Severity::Sev3) => Ok(Severity::Sev3),
        Ok(v1::Severity::Sev4) => Ok(Severity::Sev4),
        Err(_) => Err(unknown(name, value)),
    }
}

/// The wire value of a severity.
pub fn severity_to_wire(s: Severity) -> v1::Severity {
    match s {
        Severity::Sev1 => v1::Severity::Sev1,
        Severity::Sev2 => v1::Severity::Sev2,
        Severity::Sev3 => v1::Severity::Sev3,
        Severity::Sev4 => v1::Severity::Sev4,
    }
}

/// A required incident role.
pub fn role(name: &'static str, value: i32) -> Result<IncidentRole, Error> {
    match v1::IncidentRole::try_from(value) {
        Ok(v1::IncidentRole::Unspecified) => Err(unspecified(name)),
        Ok(v1::IncidentRole::Commander) => Ok(IncidentRole::Commander),
        Ok(v1::IncidentRole::CommunicationsLead) => Ok(IncidentRole::CommunicationsLead),
        Ok(v1::IncidentRole::Scribe) => Ok(IncidentRole::Scribe),
        Ok(v1::IncidentRole::SubjectMatterExpert) => Ok(IncidentRole::SubjectMatterExpert),
        Err(_) => Err(unknown(name, value)),
    }
}

/// An optional incident role: unspecified means none.
pub fn optional_role(name: &'static str, value: i32) -> Result<Option<IncidentRole>, Error> {
    if value == v1::IncidentRole::Unspecified as i32 { Ok(None) } else { role(name, value).map(Some) }
}

/// The wire value of a role.
pub fn role_to_wire(r: IncidentRole) -> v1::IncidentRole {
    match r {
        IncidentRole::Commander => v1::IncidentRole::Commander,
        IncidentRole::CommunicationsLead => v1::IncidentRole::CommunicationsLead,
        IncidentRole::Scribe => v1::IncidentRole::Scribe,
        IncidentRole::SubjectMatterExpert => v1::IncidentRole::SubjectMatterExpert,
    }
}

/// A required audience.
pub fn audience(name: &'static str, value: i32) -> Result<Audience, Error> {
    match v1::Audience::try_from(value) {
        Ok(v1::Audience::Unspecified) => Err(unspecified(name)),
        Ok(v1::Audience::Internal) => Ok(Audience::Internal),
        Ok(v1::Audience::Executive) => Ok(Audience::Executive),
        Ok(v1::Audience::CompanyWide) => Ok(Audience::CompanyWide),
        Ok(v1::Audience::Customer) => Ok(Audience::Customer),
        Err(_) => Err(unknown(name, value)),
    }
}

/// The wire value of an audience.
pub fn audience_to_wire(a: Audience) -> v1::Audience {
    match a {
        Audience::Internal => v1::Audience::Internal,
        Audience::Executive => v1::Audience::Executive,
        Audience::CompanyWide => v1::Audience::CompanyWide,
        Audience::Customer => v1::Audience::Customer,
    }
}

/// A report source; unspecified means [`ReportSource::Api`].
pub fn source(name: &'static str, value: i32) -> Result<ReportSource, Error> {
    match v1::ReportSource::try_from(value) {
        Ok(v1::ReportSource::Unspecified) | Ok(v1::ReportSource::Api) => Ok(ReportSource::Api),
        Ok(v1::ReportSource::Manual) => Ok(ReportSource::Manual),
        Ok(v1::ReportSource::Alertmanager) => Ok(ReportSource::Alertmanager),
        Ok(v1::ReportSource::Pagerduty) => Ok(ReportSource::PagerDuty),
        Ok(v1::ReportSource::HelpDesk) => Ok(ReportSource::HelpDesk),
        Ok(v1::ReportSource::Executive) => Ok(ReportSource::Executive),
        Err(_) => Err(unknown(name, value)),
    }
}

/// The wire value of a report source.
pub fn source_to_wire(s: ReportSource) -> v1::ReportSource {
    match s {
        ReportSource::Manual => v1::ReportSource::Manual,
        ReportSource::Api => v1::ReportSource::Api,
        ReportSource::Alertmanager => v1::ReportSource::Alertmanager,
        ReportSource::PagerDuty => v1::ReportSource::Pagerduty,
        ReportSource::HelpDesk => v1::ReportSource::HelpDesk,
        ReportSource::Executive => v1::ReportSource::Executive,
    }
}

/// A status filter value.
pub fn status(name: &'static str, value: i32) -> Result<Status, Error> {
    match v1::IncidentStatus::try_from(value) {
        Ok(v1::IncidentStatus::Unspecified) => Err(unspecified(name)),
        Ok(v1::IncidentStatus::Reported) => Ok(Status::Reported),
        Ok(v1::IncidentStatus::Declared) => Ok(Status::Declared),
        Ok(v1::IncidentStatus::Mitigated) => Ok(Status::Mitigated),
        Ok(v1::IncidentStatus::Resolved) => Ok(Status::Resolved),
        Ok(v1::IncidentStatus::Closed) => Ok(Status::Closed),
        Err(_) => Err(unknown(name, value)),
    }
}

/// The wire value of a status.
pub fn status_to_wire(s: Status) -> v1::IncidentStatus {
    match s {
        Status::Reported => v1::IncidentStatus::Reported,
        Status::Declared => v1::IncidentStatus::Declared,
        Status::Mitigated => v1::IncidentStatus::Mitigated,
        Status::Resolved => v1::IncidentStatus::Resolved,
        Status::Closed => v1::IncidentStatus::Closed,
    }
}

/// A wire timestamp.
pub fn timestamp(t: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp { seconds: t.timestamp(), nanos: t.timestamp_subsec_nanos() as i32 }
}

/// A domain time from an optional wire timestamp.
pub fn from_timestamp(name: &'static str, t: Option<&prost_types::Timestamp>) -> Result<Option<DateTime<Utc>>, Error> {
    match t {
        None => Ok(None),
        Some(t) => u32::try_from(t.nanos)
            .ok()
            .and_then(|nanos| DateTime::from_timestamp(t.seconds, nanos))
            .map(Some)
            .ok_or_else(|| Error::InvalidField { field: name, reason: "is not a valid timestamp".into() }),
    }
}

/// The incident as the API shows it.
pub fn incident_to_wire(i: &Incident) -> v1::Incident {
    let ts = |t: Option<DateTime<Utc>>| t.map(timestamp);
    v1::Incident {
        id: i.id().to_string(),
        version: i.version(),
        status: status_to_wire(i.status()) as i32,
        title: i.title().to_string(),
        description: i.description().to_string(),
        service: i.service().map(|s| s.to_string()).unwrap_or_default(),
        severity: i.severity().map_or(v1::Severity::Unspecified, severity_to_wire) as i32,
        severity_overridden: i.severity_overridden(),
        commander: i.commander().map(|c| c.to_string()).unwrap_or_default(),
        pending_handoff: i.pending_handoff().map(|h| v1::Handoff {
            from: h.from.to_string(),
            to: h.to.to_string(),
            requested_at: Some(timestamp(h.requested_at)),
        }),
        roles: i
            .roles()
            .iter()
            .map(|(role, people)| v1::RoleHolders {
                role: role_to_wire(*role) as i32,
                people: people.iter().map(|p| p.to_string()).collect(),
            })
            .collect(),
        participants: i.participants().iter().map(|p| p.to_string()).collect(),
        customers_affected: i.customers_affected(),
        customers: i.customers().iter().map(|c| c.to_string()).collect(),
        multi_customer: i.multi_customer(),
        impact_summary: i.impact_summary().unwrap_or_default().to_string(),
        dedup_key: i.dedup_key().map(|d| d.to_string()).unwrap_or_default(),
        report_count: i.report_count(),
        source: source_to_wire(i.source()) as i32,
        reporter: i.reporter().to_string(),
        labels: i.labels().iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        latest_updates: i
            .updates()
            .iter()
            .map(|(audience, u)| v1::StatusUpdate {
                audience: audience_to_wire(*audience) as i32,
                text: u.text.clone(),
                by: u.by.to_string(),
                at: Some(timestamp(u.at)),
            })
            .collect(),
        first_reported_at: Some(timestamp(i.first_reported_at())),
        last_seen_at: Some(timestamp(i.last_seen_at())),
        started_at: ts(i.started_at()),
        declared_at: ts(i.declared_at()),
        commander_assigned_at: ts(i.commander_assigned_at()),
        mitigated_at: ts(i.mitigated_at()),
        resolved_at: ts(i.resolved_at()),
        closed_at: ts(i.closed_at()),
        mitigation_summary: i.mitigation_summary().unwrap_or_default().to_string(),
        resolution_summary: i.resolution_summary().unwrap_or_default().to_string(),
        reopen_count: i.reopen_count(),
        runbook: String::new(),
    }
}

/// One event of an incident as a readable history entry.
pub fn history_entry(position: u64, version: u64, event: &IncidentEvent, data_json: &str) -> v1::HistoryEntry {
    v1::HistoryEntry {
        position,
        version,
        kind: event.kind().to_string(),
        at: Some(timestamp(event.at)),
        by: event.by.to_string(),
        summary: event.summary(),
        data_json: data_json.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enums_round_trip_and_reject_unknown_values() {
        for s in [Severity::Sev1, Severity::Sev2, Severity::Sev3, Severity::Sev4] {
            assert_eq!(severity("severity", severity_to_wire(s) as i32).unwrap(), s);
        }
        for r in IncidentRole::ALL {
            assert_eq!(role("role", role_to_wire(*r) as i32).unwrap(), *r);
        }
        for a in Audience::ALL {
            assert_eq!(audience("audience", audience_to_wire(*a) as i32).unwrap(), *a);
        }
        for s in ReportSource::ALL {
            assert_eq!(source("source", source_to_wire(*s) as i32).unwrap(), *s);
        }
        let err = severity("severity", 0).unwrap_err();
        assert_eq!(err, Error::InvalidField { field: "severity", reason: "is required".into() });
        let err = audience("audience", 42).unwrap_err();
        assert_eq!(err, Error::InvalidField { field: "audience", reason: "42 is not a known value".into() });
        assert!(matches!(incident_id("incident_id", "nope"), Err(Error::InvalidField { field: "incident_id", .. })));
        assert!(matches!(incident_id("incident_id", ""), Err(Error::InvalidField { field: "incident_id", .. })));
    }

    #[test]
    fn timestamps_round_trip_and_bad_ones_are_named() {
        let t = DateTime::from_timestamp(1_764_000_000, 123_000_000).unwrap();
        assert_eq!(from_timestamp("started_at", Some(&timestamp(t))).unwrap(), Some(t));
        let bad = prost_types::Timestamp { seconds: 1, nanos: -5 };
        assert!(matches!(
            from_timestamp("started_at", Some(&bad)),
            Err(Error::InvalidField { field: "started_at", .. })
        ));
    }
}
