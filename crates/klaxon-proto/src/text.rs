//! Which string fields of the API's requests are free text, and the one
//! check of them that every server and the CLI run before anything else.
//!
//! [`TEXT_FIELDS`] lists every free-text field of a request, with its kind of
//! text ([`klaxon_domain::text`]); [`PARSED_FIELDS`] lists every other string
//! field (ids, names, dates, request ids: each has its own parse rules). A
//! test walks the descriptor set and fails when a string field of a request
//! is in neither list, so a new field cannot skip the rule. [`check_text`]
//! applies the rule to a request, refusing with the domain's error naming
//! the field as the API spells it (`title`, `write_summary`, `labels`, …).
//! The gRPC handlers call it first; the CLI calls it before sending, so it
//! refuses with the server's words.

use klaxon_domain::Error;
use klaxon_domain::text::{
    ACTION_ITEM_TITLE, DESCRIPTION, FACTOR, Kind, LABEL_NAME, LABEL_VALUE, NOTE, REVIEW_TEXT, TITLE,
};

use crate::v1;

#[cfg(test)]
mod tests;

/// Services whose requests come only from Klaxon's own processes (events
/// already decided and checked by a service): their fields are not free
/// text from a client.
pub const INTERNAL_SERVICES: &[&str] = &["klaxon.v1.EventLog", "klaxon.v1.LogGroup"];

/// Every free-text field of a request: the message's full name, the field's
/// path in it (its name; `labels.key` and `labels.value` for a map's keys
/// and values; a oneof's members are fields of their message), and its
/// kind.
pub const TEXT_FIELDS: &[(&str, &str, Kind)] = &[
    ("klaxon.v1.ReportRequest", "title", TITLE),
    ("klaxon.v1.ReportRequest", "description", DESCRIPTION),
    ("klaxon.v1.ReportRequest", "labels.key", LABEL_NAME),
    ("klaxon.v1.ReportRequest", "labels.value", LABEL_VALUE),
    ("klaxon.v1.HypotheticalReport", "title", TITLE),
    ("klaxon.v1.HypotheticalReport", "description", DESCRIPTION),
    ("klaxon.v1.HypotheticalReport", "labels.key", LABEL_NAME),
    ("klaxon.v1.HypotheticalReport", "labels.value", LABEL_VALUE),
    ("klaxon.v1.OverrideSeverityRequest", "reason", NOTE),
    ("klaxon.v1.DeclineHandoffRequest", "reason", NOTE),
    ("klaxon.v1.CancelHandoffRequest", "reason", NOTE),
    ("klaxon.v1.PostUpdateRequest", "text", NOTE),
    ("klaxon.v1.RecordCustomerImpactRequest", "summary", NOTE),
    ("klaxon.v1.MitigateRequest", "summary", NOTE),
    ("klaxon.v1.ResolveRequest", "summary", NOTE),
    ("klaxon.v1.ReopenRequest", "reason", NOTE),
    ("klaxon.v1.ValidateResolutionRequest", "note", NOTE),
    ("klaxon.v1.MarkNoiseRequest", "reason", NOTE),
    ("klaxon.v1.PageResponderRequest", "reason", NOTE),
    ("klaxon.v1.BridgeRequest", "note", NOTE),
    ("klaxon.v1.EditReviewRequest", "write_summary", REVIEW_TEXT),
    ("klaxon.v1.EditReviewRequest", "write_impact", REVIEW_TEXT),
    ("klaxon.v1.EditReviewRequest", "add_contributing_factor", FACTOR),
    ("klaxon.v1.EditReviewRequest", "add_action_item", ACTION_ITEM_TITLE),
    ("klaxon.v1.NewActionItem", "title", ACTION_ITEM_TITLE),
];

/// Every other string field of a request: identifiers and values with
/// their own parse rules, checked where they are parsed (`convert`).
pub const PARSED_FIELDS: &[(&str, &str)] = &[
    ("klaxon.v1.CommandContext", "request_id"),
    ("klaxon.v1.ReportRequest", "service"),
    ("klaxon.v1.ReportRequest", "customers"),
    ("klaxon.v1.ReportRequest", "dedup_key"),
    ("klaxon.v1.DeclareRequest", "incident_id"),
    ("klaxon.v1.OverrideSeverityRequest", "incident_id"),
    ("klaxon.v1.AssignCommanderRequest", "incident_id"),
    ("klaxon.v1.AssignCommanderRequest", "commander"),
    ("klaxon.v1.RequestHandoffRequest", "incident_id"),
    ("klaxon.v1.RequestHandoffRequest", "to"),
    ("klaxon.v1.AcceptHandoffRequest", "incident_id"),
    ("klaxon.v1.DeclineHandoffRequest", "incident_id"),
    ("klaxon.v1.CancelHandoffRequest", "incident_id"),
    ("klaxon.v1.AssignRoleRequest", "incident_id"),
    ("klaxon.v1.AssignRoleRequest", "person"),
    ("klaxon.v1.AssignRoleRequest", "replaces"),
    ("klaxon.v1.RemoveRoleRequest", "incident_id"),
    ("klaxon.v1.RemoveRoleRequest", "person"),
    ("klaxon.v1.PostUpdateRequest", "incident_id"),
    ("klaxon.v1.RecordCustomerImpactRequest", "incident_id"),
    ("klaxon.v1.RecordCustomerImpactRequest", "customers"),
    ("klaxon.v1.MitigateRequest", "incident_id"),
    ("klaxon.v1.ResolveRequest", "incident_id"),
    ("klaxon.v1.ReopenRequest", "incident_id"),
    ("klaxon.v1.ValidateResolutionRequest", "incident_id"),
    ("klaxon.v1.MarkNoiseRequest", "incident_id"),
    ("klaxon.v1.PageResponderRequest", "incident_id"),
    ("klaxon.v1.PageResponderRequest", "person"),
    ("klaxon.v1.PageResponderRequest", "schedule"),
    ("klaxon.v1.PageResponderRequest", "team"),
    ("klaxon.v1.GetIncidentRequest", "incident_id"),
    ("klaxon.v1.ListIncidentsRequest", "service"),
    ("klaxon.v1.ListIncidentsRequest", "page_token"),
    ("klaxon.v1.GetHistoryRequest", "incident_id"),
    ("klaxon.v1.BridgeRequest", "request_id"),
    ("klaxon.v1.JoinBridge", "incident_id"),
    ("klaxon.v1.JoinBridge", "participant"),
    ("klaxon.v1.ExplainSeverityRequest", "incident_id"),
    ("klaxon.v1.HypotheticalReport", "service"),
    ("klaxon.v1.HypotheticalReport", "customers"),
    // A whole configuration file, parsed and validated by the domain
    // (`klaxon_domain::policy::parse`), which names the bad key.
    ("klaxon.v1.TestPolicyRequest", "config_toml"),
    ("klaxon.v1.AcknowledgeRequest", "page_id"),
    ("klaxon.v1.AcknowledgeRequest", "request_id"),
    ("klaxon.v1.WhoIsOnCallRequest", "schedule"),
    ("klaxon.v1.ChangeScheduleRequest", "request_id"),
    ("klaxon.v1.ChangeScheduleRequest", "schedule"),
    ("klaxon.v1.AddOverride", "who"),
    ("klaxon.v1.RequestSwap", "requester"),
    ("klaxon.v1.TakeSwap", "taker"),
    ("klaxon.v1.ListPagesRequest", "incident_id"),
    ("klaxon.v1.FeedFilter", "services"),
    ("klaxon.v1.FeedFilter", "customers"),
    ("klaxon.v1.ReplayTimelineRequest", "incident_id"),
    ("klaxon.v1.GetMetricsRequest", "incident_id"),
    ("klaxon.v1.GetReviewRequest", "incident_id"),
    ("klaxon.v1.EditReviewRequest", "incident_id"),
    ("klaxon.v1.EditReviewRequest", "complete_action_item"),
    ("klaxon.v1.AssignActionItem", "item_id"),
    ("klaxon.v1.AssignActionItem", "owner"),
    ("klaxon.v1.SetActionItemDue", "item_id"),
    ("klaxon.v1.SetActionItemDue", "due"),
    ("klaxon.v1.NewActionItem", "owner"),
    ("klaxon.v1.NewActionItem", "due"),
    ("klaxon.v1.ExportMarkdownRequest", "incident_id"),
    ("klaxon.v1.TrendsRequest", "service"),
    ("klaxon.v1.TrendsRequest", "team"),
    ("klaxon.v1.AuditRequest", "actor"),
    ("klaxon.v1.AuditRequest", "kind_prefix"),
];

/// A request with free-text fields.
pub trait FreeText {
    /// The message's full name, as in [`TEXT_FIELDS`].
    const MESSAGE: &'static str;
    /// Its free-text values, each with its path in [`TEXT_FIELDS`].
    fn free_text(&self) -> Vec<(&'static str, &str)>;
    /// Checks the requests nested in it that have rows of their own (under
    /// their own message name), after its own fields.
    fn check_nested(&self) -> Result<(), Error> {
        Ok(())
    }
}

/// The kind of the free-text field `path` of `message`.
///
/// # Panics
///
/// When the field is not in [`TEXT_FIELDS`]: a [`FreeText`] implementation
/// out of step with the table, which the tests catch.
pub fn kind_of(message: &str, path: &str) -> Kind {
    TEXT_FIELDS
        .iter()
        .find(|(m, p, _)| *m == message && *p == path)
        .map(|(_, _, kind)| *kind)
        .unwrap_or_else(|| panic!("{message}.{path} is not in TEXT_FIELDS"))
}

/// The name a refusal gives the field at `path`: the field itself, or the
/// map it is a key or value of.
pub fn field_name(path: &'static str) -> &'static str {
    path.strip_suffix(".key").or_else(|| path.strip_suffix(".value")).unwrap_or(path)
}

/// Checks every free-text field of `request` by the one rule; the first
/// refusal names its field.
pub fn check_text<R: FreeText>(request: &R) -> Result<(), Error> {
    for (path, value) in request.free_text() {
        kind_of(R::MESSAGE, path).check(field_name(path), value)?;
    }
    request.check_nested()
}

macro_rules! free_text {
    ($($message:ident: $($field:ident),+;)*) => {$(
        impl FreeText for v1::$message {
            const MESSAGE: &'static str = concat!("klaxon.v1.", stringify!($message));
            fn free_text(&self) -> Vec<(&'static str, &str)> {
                vec![$((stringify!($field), self.$field.as_str())),+]
            }
        }
    )*};
}

free_text! {
    OverrideSeverityRequest: reason;
    DeclineHandoffRequest: reason;
    CancelHandoffRequest: reason;
    PostUpdateRequest: text;
    RecordCustomerImpactRequest: summary;
    MitigateRequest: summary;
    ResolveRequest: summary;
    ReopenRequest: reason;
    ValidateResolutionRequest: note;
    MarkNoiseRequest: reason;
    PageResponderRequest: reason;
    NewActionItem: title;
}

macro_rules! no_free_text {
    ($($message:ident),* $(,)?) => {$(
        impl FreeText for v1::$message {
            const MESSAGE: &'static str = concat!("klaxon.v1.", stringify!($message));
            fn free_text(&self) -> Vec<(&'static str, &str)> {
                Vec::new()
            }
        }
    )*};
}

// Commands without free text, so that every incident command can go
// through the same check.
no_free_text!(
    DeclareRequest,
    AssignCommanderRequest,
    RequestHandoffRequest,
    AcceptHandoffRequest,
    AssignRoleRequest,
    RemoveRoleRequest,
);

impl FreeText for v1::ReportRequest {
    const MESSAGE: &'static str = "klaxon.v1.ReportRequest";
    fn free_text(&self) -> Vec<(&'static str, &str)> {
        report_text(&self.title, &self.description, &self.labels)
    }
}

impl FreeText for v1::HypotheticalReport {
    const MESSAGE: &'static str = "klaxon.v1.HypotheticalReport";
    fn free_text(&self) -> Vec<(&'static str, &str)> {
        report_text(&self.title, &self.description, &self.labels)
    }
}

/// The free text of a report: title, description, then the labels.
fn report_text<'a>(
    title: &'a str,
    description: &'a str,
    labels: &'a std::collections::HashMap<String, String>,
) -> Vec<(&'static str, &'a str)> {
    let mut fields = vec![("title", title), ("description", description)];
    // In name order, so that the first refusal does not depend on the
    // map's iteration order.
    let mut labels: Vec<(&String, &String)> = labels.iter().collect();
    labels.sort();
    for (name, value) in labels {
        fields.push(("labels.key", name.as_str()));
        fields.push(("labels.value", value.as_str()));
    }
    fields
}

impl FreeText for v1::BridgeRequest {
    const MESSAGE: &'static str = "klaxon.v1.BridgeRequest";
    fn free_text(&self) -> Vec<(&'static str, &str)> {
        match &self.message {
            Some(v1::bridge_request::Message::Note(note)) => vec![("note", note.as_str())],
            _ => Vec::new(),
        }
    }
}

impl FreeText for v1::EditReviewRequest {
    const MESSAGE: &'static str = "klaxon.v1.EditReviewRequest";
    fn free_text(&self) -> Vec<(&'static str, &str)> {
        use v1::edit_review_request::Edit;
        match &self.edit {
            Some(Edit::WriteSummary(s)) => vec![("write_summary", s.as_str())],
            Some(Edit::WriteImpact(s)) => vec![("write_impact", s.as_str())],
            Some(Edit::AddContributingFactor(s)) => vec![("add_contributing_factor", s.as_str())],
            Some(Edit::AddActionItem(s)) => vec![("add_action_item", s.as_str())],
            _ => Vec::new(),
        }
    }
    fn check_nested(&self) -> Result<(), Error> {
        match &self.edit {
            Some(v1::edit_review_request::Edit::NewActionItem(item)) => check_text(item),
            _ => Ok(()),
        }
    }
}
