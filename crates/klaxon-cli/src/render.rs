//! Output: human text by default, or JSON built from the wire types through
//! serializable view structs (prost types do not implement `Serialize`).
//!
//! Every function here is pure: it returns the text to print. Documents the
//! server renders itself (the Markdown postmortem, trend reports) are passed
//! through untouched; see [`verbatim`]. In JSON,
//! timestamps are RFC 3339 strings in UTC, enums are lowercase names
//! (`"sev1"`, `"declared"`, `"company_wide"`), and absent values are `null`.
//!
//! Here: which rendering each reply gets, and the helpers both use (names
//! of enums, times). `json`: the serializable views. `text`: the human
//! output.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use chrono::{DateTime, SecondsFormat, Utc};
use klaxon_proto::convert;
use klaxon_proto::v1;

use crate::cli::AuditFormat;
use crate::commands::{Reply, Rpc};

mod json;
mod policy;
#[cfg(test)]
mod tests;
mod text;

pub use policy::{findings, policy_report};

use json::*;
use text::*;

/// The text printed for the reply to `rpc`.
pub fn reply(rpc: &Rpc, reply: &Reply, json: bool) -> String {
    match reply {
        Reply::Report(r) if json => to_json(&ReportView::new(r)),
        Reply::Report(r) => report_line(r),
        Reply::Command(r) if json => to_json(&CommandView::new(r)),
        Reply::Command(r) => confirmation(rpc, r),
        Reply::Incident(i) if json => to_json(&IncidentView::new(i)),
        Reply::Incident(i) => show(i),
        Reply::List(l) if json => to_json(&ListView::new(l)),
        Reply::List(l) => list(l),
        Reply::History(h) if json => to_json(&HistoryView { entries: h.entries.iter().map(EntryView::new).collect() }),
        Reply::History(h) => history(h),
        Reply::Explanation(e) if json => to_json(&ExplanationView::new(e)),
        Reply::Explanation(e) => explanation(e),
        Reply::Acknowledged(a) if json => to_json(&AcknowledgedView::new(a)),
        Reply::Acknowledged(a) => acknowledged(rpc, a),
        Reply::OnCall(o) if json => to_json(&OnCallListView::new(o)),
        Reply::OnCall(o) => on_call(o),
        Reply::Pages(p) if json => to_json(&PagesView { pages: p.pages.iter().map(PageView::new).collect() }),
        Reply::Pages(p) => pages(p),
        Reply::ScheduleChanged(c) if json => to_json(&ScheduleChangedView::new(c)),
        Reply::ScheduleChanged(c) => schedule_changed(c),
        Reply::Coverage(c) if json => to_json(&CoverageView::new(c)),
        Reply::Coverage(c) => coverage(c),
        Reply::Timeline { entries, state } if json => to_json(&TimelineView {
            entries: entries.iter().map(TimelineEntryView::new).collect(),
            state: state.as_ref().map(IncidentView::new),
        }),
        Reply::Timeline { entries, state } => timeline(rpc, entries, state.as_ref()),
        Reply::Metrics(m) if json => to_json(&MetricsView::new(m)),
        Reply::Metrics(m) => metrics(m),
        Reply::Review(r) if json => to_json(&ReviewView::new(r)),
        Reply::Review(r) => match rpc {
            Rpc::EditReview(edit) => review_edited(edit, r),
            _ => review(r),
        },
        Reply::ActionItems(l) if json => {
            to_json(&ActionItemsView { items: l.items.iter().map(ActionItemView::new).collect() })
        }
        Reply::ActionItems(l) => action_items(rpc, l),
        Reply::Markdown(m) if json => to_json(&MarkdownView {
            incident_id: match rpc {
                Rpc::ExportMarkdown(q) => q.incident_id.clone(),
                _ => String::new(),
            },
            markdown: m.markdown.clone(),
        }),
        Reply::Markdown(m) => m.markdown.clone(),
        Reply::Trends(t) => match rpc {
            Rpc::Trends { csv: true, .. } => t.csv.clone(),
            _ if json => t.json.clone(),
            _ => t.table.clone(),
        },
        Reply::PolicyTest(r) => match rpc {
            Rpc::TestPolicy { format, .. } if !json => policy_report(r, *format),
            _ => policy_report(r, crate::cli::Format::Json),
        },
        Reply::Audit(entries) => match audit_format(rpc, json) {
            AuditFormat::Json => to_json(&entries.iter().map(AuditEntryView::new).collect::<Vec<_>>()),
            AuditFormat::Csv => audit_csv(entries),
            AuditFormat::Table => audit_table(entries),
        },
    }
}

/// The format `klaxon audit` prints in: `--format`, else JSON with
/// `--json`, else the table.
fn audit_format(rpc: &Rpc, json: bool) -> AuditFormat {
    match rpc {
        Rpc::Audit { format: Some(format), .. } => *format,
        _ if json => AuditFormat::Json,
        _ => AuditFormat::Table,
    }
}

/// The audit trail as aligned columns: time, actor, kind, stream, summary.
fn audit_table(entries: &[v1::AuditEntry]) -> String {
    let rows: Vec<[String; 5]> = entries
        .iter()
        .map(|e| {
            let at = human_time(e.at.as_ref()).unwrap_or_else(|| "-".to_owned());
            [at, or_dash(&e.actor).to_owned(), e.kind.clone(), e.stream.clone(), e.summary.replace(['\n', '\r'], " ")]
        })
        .collect();
    let header = ["TIME", "ACTOR", "KIND", "STREAM", "SUMMARY"].map(str::to_owned);
    let mut widths = header.clone().map(|h| h.chars().count());
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        let (last, rest) = row.split_last().expect("five columns");
        for (cell, width) in rest.iter().zip(widths) {
            let _ = write!(out, "{cell:<width$}  ");
        }
        let _ = writeln!(out, "{last}");
    }
    if rows.is_empty() {
        out.push_str("(no entries)\n");
    }
    out
}

/// The audit trail as CSV (RFC 4180 quoting), with a header row.
fn audit_csv(entries: &[v1::AuditEntry]) -> String {
    fn field(s: &str) -> String {
        if s.contains([',', '"', '\n', '\r']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s.to_owned() }
    }
    let mut out = String::from("position,at,actor,kind,stream,summary\n");
    for e in entries {
        let at = rfc3339(e.at.as_ref()).unwrap_or_default();
        let cells = [e.position.to_string(), at, e.actor.clone(), e.kind.clone(), e.stream.clone(), e.summary.clone()];
        let _ = writeln!(out, "{}", cells.iter().map(|c| field(c)).collect::<Vec<_>>().join(","));
    }
    out
}

/// Whether the text of [`reply`] is a document the server rendered (the
/// Markdown postmortem, a trend report), to be printed byte for byte rather
/// than as a line.
pub fn verbatim(rpc: &Rpc, json: bool) -> bool {
    match rpc {
        Rpc::Trends { .. } => true,
        Rpc::TestPolicy { format: crate::cli::Format::Csv, .. } => !json,
        Rpc::Audit { .. } => audit_format(rpc, json) != AuditFormat::Json,
        Rpc::ExportMarkdown(_) => !json,
        _ => false,
    }
}

/// What `watch` follows, said once on stderr when the subscription is
/// taken (nothing may be open, and then no item comes until something
/// changes): `(watching the status feed: SEV1 to SEV2; services payments;
/// the open incidents first, marked *, then every change; Ctrl-C ends)`.
pub fn watching(filter: &v1::FeedFilter) -> String {
    let mut what = match filter.min_severity {
        1 => vec!["SEV1 only".to_owned()],
        n @ 2..=4 => vec![format!("SEV1 to SEV{n}")],
        _ => vec!["every incident".to_owned()],
    };
    if !filter.services.is_empty() {
        what.push(format!("services {}", filter.services.join(", ")));
    }
    if !filter.customers.is_empty() {
        what.push(format!("customers {}", filter.customers.join(", ")));
    }
    if filter.include_company_wide {
        what.push("company-wide posts".to_owned());
    }
    format!(
        "(watching the status feed: {}; the open incidents first, marked *, then every change; Ctrl-C ends)",
        what.join("; ")
    )
}

/// The line printed for one item of the status feed: `HH:MM:SS  INC-7 SEV1
/// declared  commander=maria  customers=40 (multi)  "<latest executive
/// update>"  next update due HH:MM`, led by `* ` for the items of the
/// initial snapshot; times in UTC.
pub fn feed_item(item: &v1::FeedItem, json: bool) -> String {
    if json {
        return to_json(&FeedItemView::new(item));
    }
    let mut line = String::from(if item.snapshot { "* " } else { "" });
    let at = time(item.at.as_ref()).map_or_else(|| "--:--:--".to_string(), |t| t.format("%H:%M:%S").to_string());
    let _ = write!(
        line,
        "{at}  {} {} {}  commander={}  customers={}",
        item.incident_id,
        severity_label(item.severity),
        status_name(item.status).unwrap_or("?"),
        or_dash(&item.commander),
        item.customers_affected
    );
    if item.multi_customer {
        line.push_str(" (multi)");
    }
    if let Some(u) = &item.latest_executive_update {
        // Debug quoting keeps the line one line whatever the text holds.
        let _ = write!(line, "  {:?}", u.text);
    }
    if let Some(due) = time(item.next_update_due.as_ref()) {
        let _ = write!(line, "  next update due {}", due.format("%H:%M"));
    }
    for holders in &item.roles {
        let _ = write!(line, "  {}={}", role_name(holders.role).unwrap_or("role"), holders.people.join(","));
    }
    if !item.company_wide_post.is_empty() {
        let _ = write!(line, "  company-wide: {:?}", item.company_wide_post);
    }
    line
}

/// The line printed for one message of the bridge stream.
pub fn bridge_message(message: &v1::bridge_response::Message, json: bool) -> Option<String> {
    use v1::bridge_response::Message;
    Some(match message {
        Message::Snapshot(i) if json => to_json(&BridgeView::Snapshot(Box::new(IncidentView::new(i)))),
        Message::Snapshot(i) => snapshot(i),
        Message::Event(e) if json => to_json(&BridgeView::Event(EntryView::new(e))),
        Message::Event(e) => {
            let at = time(e.at.as_ref()).map_or_else(|| "--:--:--".to_string(), |t| t.format("%H:%M:%S").to_string());
            hanging(&format!("{at}  "), &e.summary)
        }
        Message::NoteRecorded(r) if json => to_json(&BridgeView::NoteRecorded(NoteRecordedView {
            request_id: r.request_id.clone(),
            position: r.position,
            deduplicated: r.deduplicated,
        })),
        Message::NoteRecorded(_) => return None,
    })
}

/// `sev1` for [`v1::Severity::Sev1`]; `None` when unspecified or unknown.
pub fn severity_name(value: i32) -> Option<&'static str> {
    match v1::Severity::try_from(value).ok()? {
        v1::Severity::Unspecified => None,
        v1::Severity::Sev1 => Some("sev1"),
        v1::Severity::Sev2 => Some("sev2"),
        v1::Severity::Sev3 => Some("sev3"),
        v1::Severity::Sev4 => Some("sev4"),
    }
}

/// `declared` for [`v1::IncidentStatus::Declared`]; `None` when unspecified or unknown.
pub fn status_name(value: i32) -> Option<&'static str> {
    convert::status("status", value).ok().map(|s| s.as_str())
}

/// `scribe` for [`v1::IncidentRole::Scribe`]; `None` when unspecified or unknown.
pub fn role_name(value: i32) -> Option<&'static str> {
    convert::role("role", value).ok().map(|r| r.as_str())
}

/// `company_wide` for [`v1::Audience::CompanyWide`]; `None` when unspecified or unknown.
pub fn audience_name(value: i32) -> Option<&'static str> {
    convert::audience("audience", value).ok().map(|a| a.as_str())
}

/// `pager_duty` for [`v1::ReportSource::Pagerduty`]; unspecified is `api`.
pub fn source_name(value: i32) -> Option<&'static str> {
    convert::source("source", value).ok().map(|s| s.as_str())
}

/// `SEV1`, or `-` when there is none.
fn severity_label(value: i32) -> String {
    severity_name(value).map_or_else(|| "-".to_string(), str::to_ascii_uppercase)
}

fn time(t: Option<&prost_types::Timestamp>) -> Option<DateTime<Utc>> {
    convert::from_timestamp("time", t).ok().flatten()
}

/// RFC 3339 in UTC with all the precision the server gave, for JSON.
fn rfc3339(t: Option<&prost_types::Timestamp>) -> Option<String> {
    time(t).map(|t| t.to_rfc3339_opts(SecondsFormat::AutoSi, true))
}

/// RFC 3339 in UTC to the second, for people.
fn human_time(t: Option<&prost_types::Timestamp>) -> Option<String> {
    time(t).map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
}

/// A duration in seconds as `1h 2m 3s` (`2m 0s`, `5s`), or `-` when absent.
fn duration(seconds: Option<i64>) -> String {
    let Some(seconds) = seconds else { return "-".to_string() };
    let sign = if seconds < 0 { "-" } else { "" };
    let total = seconds.unsigned_abs();
    let (h, m, s) = (total / 3600, total / 60 % 60, total % 60);
    match (h, m) {
        (0, 0) => format!("{sign}{s}s"),
        (0, _) => format!("{sign}{m}m {s}s"),
        _ => format!("{sign}{h}h {m}m {s}s"),
    }
}

fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_string())
}

/// `head` followed by `text`, whose lines after the first (an update's or a
/// note's text) go on indented to where `text` starts, so that a reader
/// still finds every entry by its head in the first column.
fn hanging(head: &str, text: &str) -> String {
    let indent = " ".repeat(head.chars().count());
    let mut lines = text.lines();
    let first = format!("{head}{}", lines.next().unwrap_or_default());
    std::iter::once(first.trim_end().to_string())
        .chain(lines.map(|l| if l.trim().is_empty() { String::new() } else { format!("{indent}{l}") }))
        .collect::<Vec<_>>()
        .join("\n")
}

fn or_dash(s: &str) -> &str {
    if s.is_empty() { "-" } else { s }
}
