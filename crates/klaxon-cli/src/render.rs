//! Output: human text by default, or JSON built from the wire types through
//! serializable view structs (prost types do not implement `Serialize`).
//!
//! Every function here is pure: it returns the text to print. Documents the
//! server renders itself (the Markdown postmortem, trend reports) are passed
//! through untouched; see [`verbatim`]. In JSON,
//! timestamps are RFC 3339 strings in UTC, enums are lowercase names
//! (`"sev1"`, `"declared"`, `"company_wide"`), and absent values are `null`.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use chrono::{DateTime, SecondsFormat, Utc};
use klaxon_proto::convert;
use klaxon_proto::v1;
use serde::Serialize;

use crate::commands::{Reply, Rpc};

#[cfg(test)]
mod tests;

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
    }
}

/// Whether the text of [`reply`] is a document the server rendered (the
/// Markdown postmortem, a trend report), to be printed byte for byte rather
/// than as a line.
pub fn verbatim(rpc: &Rpc, json: bool) -> bool {
    match rpc {
        Rpc::Trends { .. } => true,
        Rpc::ExportMarkdown(_) => !json,
        _ => false,
    }
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
    if !item.company_wide_post.is_empty() {
        let _ = write!(line, "  company-wide: {:?}", item.company_wide_post);
    }
    line
}

/// The line printed for one message of the bridge stream; none for the
/// answer to a note in human output (the note's own event shows it).
pub fn bridge_message(message: &v1::bridge_response::Message, json: bool) -> Option<String> {
    use v1::bridge_response::Message;
    Some(match message {
        Message::Snapshot(i) if json => to_json(&BridgeView::Snapshot(Box::new(IncidentView::new(i)))),
        Message::Snapshot(i) => snapshot(i),
        Message::Event(e) if json => to_json(&BridgeView::Event(EntryView::new(e))),
        Message::Event(e) => {
            let at = time(e.at.as_ref()).map_or_else(|| "--:--:--".to_string(), |t| t.format("%H:%M:%S").to_string());
            format!("{at}  {}", e.summary)
        }
        Message::NoteRecorded(r) if json => to_json(&BridgeView::NoteRecorded(NoteRecordedView {
            request_id: r.request_id.clone(),
            position: r.position,
            deduplicated: r.deduplicated,
        })),
        Message::NoteRecorded(_) => return None,
    })
}

fn to_json(view: &impl Serialize) -> String {
    // Views hold only strings, numbers, booleans, lists and string-keyed maps.
    serde_json::to_string(view).expect("a view always serializes")
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

fn or_dash(s: &str) -> &str {
    if s.is_empty() { "-" } else { s }
}

/// An incident in JSON.
#[derive(Debug, Serialize)]
pub struct IncidentView {
    id: String,
    version: u64,
    status: Option<&'static str>,
    title: String,
    description: String,
    service: Option<String>,
    severity: Option<&'static str>,
    severity_overridden: bool,
    commander: Option<String>,
    pending_handoff: Option<HandoffView>,
    roles: BTreeMap<String, Vec<String>>,
    participants: Vec<String>,
    customers_affected: u32,
    customers: Vec<String>,
    multi_customer: bool,
    impact_summary: Option<String>,
    dedup_key: Option<String>,
    report_count: u32,
    source: Option<&'static str>,
    reporter: String,
    labels: BTreeMap<String, String>,
    latest_updates: Vec<UpdateView>,
    first_reported_at: Option<String>,
    last_seen_at: Option<String>,
    started_at: Option<String>,
    declared_at: Option<String>,
    commander_assigned_at: Option<String>,
    mitigated_at: Option<String>,
    resolved_at: Option<String>,
    closed_at: Option<String>,
    mitigation_summary: Option<String>,
    resolution_summary: Option<String>,
    reopen_count: u32,
}

impl IncidentView {
    /// The view of a wire incident.
    pub fn new(i: &v1::Incident) -> IncidentView {
        IncidentView {
            id: i.id.clone(),
            version: i.version,
            status: status_name(i.status),
            title: i.title.clone(),
            description: i.description.clone(),
            service: non_empty(&i.service),
            severity: severity_name(i.severity),
            severity_overridden: i.severity_overridden,
            commander: non_empty(&i.commander),
            pending_handoff: i.pending_handoff.as_ref().map(|h| HandoffView {
                from: h.from.clone(),
                to: h.to.clone(),
                requested_at: rfc3339(h.requested_at.as_ref()),
            }),
            roles: i
                .roles
                .iter()
                .map(|r| (role_name(r.role).unwrap_or("unknown").to_string(), r.people.clone()))
                .collect(),
            participants: i.participants.clone(),
            customers_affected: i.customers_affected,
            customers: i.customers.clone(),
            multi_customer: i.multi_customer,
            impact_summary: non_empty(&i.impact_summary),
            dedup_key: non_empty(&i.dedup_key),
            report_count: i.report_count,
            source: source_name(i.source),
            reporter: i.reporter.clone(),
            labels: i.labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            latest_updates: i.latest_updates.iter().map(UpdateView::new).collect(),
            first_reported_at: rfc3339(i.first_reported_at.as_ref()),
            last_seen_at: rfc3339(i.last_seen_at.as_ref()),
            started_at: rfc3339(i.started_at.as_ref()),
            declared_at: rfc3339(i.declared_at.as_ref()),
            commander_assigned_at: rfc3339(i.commander_assigned_at.as_ref()),
            mitigated_at: rfc3339(i.mitigated_at.as_ref()),
            resolved_at: rfc3339(i.resolved_at.as_ref()),
            closed_at: rfc3339(i.closed_at.as_ref()),
            mitigation_summary: non_empty(&i.mitigation_summary),
            resolution_summary: non_empty(&i.resolution_summary),
            reopen_count: i.reopen_count,
        }
    }
}

/// A pending handoff in JSON.
#[derive(Debug, Serialize)]
struct HandoffView {
    from: String,
    to: String,
    requested_at: Option<String>,
}

/// A status update in JSON.
#[derive(Debug, Serialize)]
struct UpdateView {
    audience: Option<&'static str>,
    text: String,
    by: String,
    at: Option<String>,
}

impl UpdateView {
    fn new(u: &v1::StatusUpdate) -> UpdateView {
        UpdateView {
            audience: audience_name(u.audience),
            text: u.text.clone(),
            by: u.by.clone(),
            at: rfc3339(u.at.as_ref()),
        }
    }
}

/// What a command answers, in JSON.
#[derive(Debug, Serialize)]
struct CommandView {
    incident_id: String,
    version: u64,
    first_position: u64,
    last_position: u64,
    deduplicated: bool,
    incident: Option<IncidentView>,
}

impl CommandView {
    fn new(r: &v1::CommandResponse) -> CommandView {
        CommandView {
            incident_id: r.incident.as_ref().map(|i| i.id.clone()).unwrap_or_default(),
            version: r.incident.as_ref().map_or(0, |i| i.version),
            first_position: r.first_position,
            last_position: r.last_position,
            deduplicated: r.deduplicated,
            incident: r.incident.as_ref().map(IncidentView::new),
        }
    }
}

/// What `report` answers, in JSON: the command view plus `merged`.
#[derive(Debug, Serialize)]
struct ReportView {
    merged: bool,
    #[serde(flatten)]
    result: CommandView,
}

impl ReportView {
    fn new(r: &v1::ReportResponse) -> ReportView {
        let mut result = CommandView::new(&r.result.clone().unwrap_or_default());
        result.incident_id = r.incident_id.clone();
        ReportView { merged: r.merged, result }
    }
}

/// A page (or all pages) of incidents, in JSON.
#[derive(Debug, Serialize)]
struct ListView {
    incidents: Vec<IncidentView>,
    next_page_token: Option<String>,
}

impl ListView {
    fn new(l: &v1::ListIncidentsResponse) -> ListView {
        ListView {
            incidents: l.incidents.iter().map(IncidentView::new).collect(),
            next_page_token: non_empty(&l.next_page_token),
        }
    }
}

/// An incident's history, in JSON.
#[derive(Debug, Serialize)]
struct HistoryView {
    entries: Vec<EntryView>,
}

/// One history entry in JSON; `data` is the event's JSON itself (or the
/// stored text, should it not parse; `null` when absent).
#[derive(Debug, Serialize)]
struct EntryView {
    position: u64,
    version: u64,
    kind: String,
    at: Option<String>,
    by: String,
    summary: String,
    data: serde_json::Value,
}

impl EntryView {
    fn new(e: &v1::HistoryEntry) -> EntryView {
        EntryView {
            position: e.position,
            version: e.version,
            kind: e.kind.clone(),
            at: rfc3339(e.at.as_ref()),
            by: e.by.clone(),
            summary: e.summary.clone(),
            data: match e.data_json.as_str() {
                "" => serde_json::Value::Null,
                text => serde_json::from_str(text).unwrap_or_else(|_| serde_json::Value::String(text.to_string())),
            },
        }
    }
}

/// A severity explanation in JSON: the assessment, every rule with its
/// conditions, and the readable lines.
#[derive(Debug, Serialize)]
struct ExplanationView {
    incident_id: String,
    assessed: Option<&'static str>,
    rule_id: Option<String>,
    reason: String,
    reasons: Vec<String>,
    current: Option<&'static str>,
    overridden: bool,
    rules: Vec<RuleView>,
    lines: Vec<String>,
}

impl ExplanationView {
    fn new(e: &v1::SeverityExplanation) -> ExplanationView {
        ExplanationView {
            incident_id: e.incident_id.clone(),
            assessed: severity_name(e.assessed),
            rule_id: non_empty(&e.rule_id),
            reason: e.reason.clone(),
            reasons: e.reasons.clone(),
            current: severity_name(e.current),
            overridden: e.overridden,
            rules: e
                .rules
                .iter()
                .map(|r| RuleView {
                    id: r.id.clone(),
                    severity: severity_name(r.severity),
                    matched: r.matched,
                    chosen: r.chosen,
                    conditions: r
                        .conditions
                        .iter()
                        .map(|c| ConditionView {
                            condition: c.condition.clone(),
                            held: c.held,
                            detail: c.detail.clone(),
                        })
                        .collect(),
                })
                .collect(),
            lines: e.lines.clone(),
        }
    }
}

/// One severity rule as checked against the incident, in JSON.
#[derive(Debug, Serialize)]
struct RuleView {
    id: String,
    severity: Option<&'static str>,
    matched: bool,
    chosen: bool,
    conditions: Vec<ConditionView>,
}

/// One condition of a severity rule, in JSON.
#[derive(Debug, Serialize)]
struct ConditionView {
    condition: String,
    held: bool,
    detail: String,
}

/// A page in JSON.
#[derive(Debug, Serialize)]
struct PageView {
    page_id: String,
    incident_id: String,
    responder: String,
    level: u32,
    round: u32,
    reason: String,
    paged_at: Option<String>,
    deadline: Option<String>,
    acknowledged_at: Option<String>,
    acknowledged_by: Option<String>,
    delivery: Option<String>,
}

impl PageView {
    fn new(p: &v1::Page) -> PageView {
        PageView {
            page_id: p.page_id.clone(),
            incident_id: p.incident_id.clone(),
            responder: p.responder.clone(),
            level: p.level,
            round: p.round,
            reason: p.reason.clone(),
            paged_at: rfc3339(p.paged_at.as_ref()),
            deadline: rfc3339(p.deadline.as_ref()),
            acknowledged_at: rfc3339(p.acknowledged_at.as_ref()),
            acknowledged_by: non_empty(&p.acknowledged_by),
            delivery: non_empty(&p.delivery),
        }
    }
}

/// The pages of an incident, in JSON.
#[derive(Debug, Serialize)]
struct PagesView {
    pages: Vec<PageView>,
}

/// What `ack` answers, in JSON.
#[derive(Debug, Serialize)]
struct AcknowledgedView {
    position: u64,
    page: Option<PageView>,
}

impl AcknowledgedView {
    fn new(a: &v1::AcknowledgeResponse) -> AcknowledgedView {
        AcknowledgedView { position: a.position, page: a.page.as_ref().map(PageView::new) }
    }
}

/// Who is on call, in JSON; `who` is `null` when nobody is.
#[derive(Debug, Serialize)]
struct OnCallListView {
    on_call: Vec<OnCallView>,
}

/// One schedule's on-call person, in JSON.
#[derive(Debug, Serialize)]
struct OnCallView {
    schedule: String,
    who: Option<String>,
    source: Option<String>,
    from: Option<String>,
    until: Option<String>,
}

impl OnCallListView {
    fn new(o: &v1::WhoIsOnCallResponse) -> OnCallListView {
        OnCallListView {
            on_call: o
                .on_call
                .iter()
                .map(|c| OnCallView {
                    schedule: c.schedule.clone(),
                    who: non_empty(&c.who),
                    source: non_empty(&c.source),
                    from: rfc3339(c.from.as_ref()),
                    until: rfc3339(c.until.as_ref()),
                })
                .collect(),
        }
    }
}

/// One line of `watch --json`.
#[derive(Debug, Serialize)]
struct FeedItemView {
    incident_id: String,
    snapshot: bool,
    at: Option<String>,
    title: String,
    service: Option<String>,
    severity: Option<&'static str>,
    status: Option<&'static str>,
    commander: Option<String>,
    customers_affected: u32,
    multi_customer: bool,
    customers: Vec<String>,
    impact_summary: Option<String>,
    latest_executive_update: Option<UpdateView>,
    next_update_due: Option<String>,
    company_wide_post: Option<String>,
}

impl FeedItemView {
    fn new(i: &v1::FeedItem) -> FeedItemView {
        FeedItemView {
            incident_id: i.incident_id.clone(),
            snapshot: i.snapshot,
            at: rfc3339(i.at.as_ref()),
            title: i.title.clone(),
            service: non_empty(&i.service),
            severity: severity_name(i.severity),
            status: status_name(i.status),
            commander: non_empty(&i.commander),
            customers_affected: i.customers_affected,
            multi_customer: i.multi_customer,
            customers: i.customers.clone(),
            impact_summary: non_empty(&i.impact_summary),
            latest_executive_update: i.latest_executive_update.as_ref().map(UpdateView::new),
            next_update_due: rfc3339(i.next_update_due.as_ref()),
            company_wide_post: non_empty(&i.company_wide_post),
        }
    }
}

/// A replayed timeline in JSON; `state` is the incident at the `as_of`
/// moment (`null` without one).
#[derive(Debug, Serialize)]
struct TimelineView {
    entries: Vec<TimelineEntryView>,
    state: Option<IncidentView>,
}

/// One timeline entry in JSON.
#[derive(Debug, Serialize)]
struct TimelineEntryView {
    position: u64,
    at: Option<String>,
    by: String,
    source: String,
    kind: String,
    summary: String,
}

impl TimelineEntryView {
    fn new(e: &v1::TimelineEntry) -> TimelineEntryView {
        TimelineEntryView {
            position: e.position,
            at: rfc3339(e.at.as_ref()),
            by: e.by.clone(),
            source: e.source.clone(),
            kind: e.kind.clone(),
            summary: e.summary.clone(),
        }
    }
}

/// An incident's metrics in JSON; durations in seconds, `null` when not
/// applicable.
#[derive(Debug, Serialize)]
struct MetricsView {
    incident_id: String,
    time_to_detect_seconds: Option<i64>,
    time_to_acknowledge_seconds: Option<i64>,
    time_to_assign_seconds: Option<i64>,
    time_to_mitigate_seconds: Option<i64>,
    time_to_resolve_seconds: Option<i64>,
    pages: u32,
    escalations: u32,
    handoffs: u32,
    slo_breaches: u32,
    noise: bool,
}

impl MetricsView {
    fn new(m: &v1::IncidentMetrics) -> MetricsView {
        MetricsView {
            incident_id: m.incident_id.clone(),
            time_to_detect_seconds: m.time_to_detect_seconds,
            time_to_acknowledge_seconds: m.time_to_acknowledge_seconds,
            time_to_assign_seconds: m.time_to_assign_seconds,
            time_to_mitigate_seconds: m.time_to_mitigate_seconds,
            time_to_resolve_seconds: m.time_to_resolve_seconds,
            pages: m.pages,
            escalations: m.escalations,
            handoffs: m.handoffs,
            slo_breaches: m.slo_breaches,
            noise: m.noise,
        }
    }
}

/// A post-incident review in JSON.
#[derive(Debug, Serialize)]
struct ReviewView {
    incident_id: String,
    version: u64,
    opened: bool,
    published: bool,
    summary: Option<String>,
    impact: Option<String>,
    contributing_factors: Vec<String>,
    action_items: Vec<ActionItemView>,
}

impl ReviewView {
    fn new(r: &v1::ReviewView) -> ReviewView {
        ReviewView {
            incident_id: r.incident_id.clone(),
            version: r.version,
            opened: r.opened,
            published: r.published,
            summary: non_empty(&r.summary),
            impact: non_empty(&r.impact),
            contributing_factors: r.contributing_factors.clone(),
            action_items: r.action_items.iter().map(ActionItemView::new).collect(),
        }
    }
}

/// An action item in JSON; `due` is YYYY-MM-DD or `null`.
#[derive(Debug, Serialize)]
struct ActionItemView {
    item_id: String,
    incident_id: String,
    title: String,
    owner: Option<String>,
    due: Option<String>,
    completed: bool,
}

impl ActionItemView {
    fn new(a: &v1::ActionItem) -> ActionItemView {
        ActionItemView {
            item_id: a.item_id.clone(),
            incident_id: a.incident_id.clone(),
            title: a.title.clone(),
            owner: non_empty(&a.owner),
            due: non_empty(&a.due),
            completed: a.completed,
        }
    }
}

/// What `actions` answers, in JSON.
#[derive(Debug, Serialize)]
struct ActionItemsView {
    items: Vec<ActionItemView>,
}

/// What `review export --json` answers.
#[derive(Debug, Serialize)]
struct MarkdownView {
    incident_id: String,
    markdown: String,
}

/// One line of `join --json`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "snake_case")]
enum BridgeView {
    Snapshot(Box<IncidentView>),
    Event(EntryView),
    NoteRecorded(NoteRecordedView),
}

/// Where a note of `join` was recorded (`--json` only).
#[derive(Debug, Serialize)]
struct NoteRecordedView {
    request_id: String,
    position: u64,
    deduplicated: bool,
}

/// `INC-3` for a new incident; the id stays the first word when merged, so
/// scripts can cut it.
fn report_line(r: &v1::ReportResponse) -> String {
    let id = &r.incident_id;
    if !r.merged {
        return id.clone();
    }
    let reports = r.result.as_ref().and_then(|c| c.incident.as_ref()).map_or(0, |i| i.report_count);
    format!("{id} (merged into {id}, {reports} reports)")
}

/// The confirmation of a command, such as `INC-3 declared SEV1 (version 2)`.
fn confirmation(rpc: &Rpc, r: &v1::CommandResponse) -> String {
    let i = r.incident.clone().unwrap_or_default();
    let commander = or_dash(&i.commander);
    let what = match rpc {
        Rpc::Declare(_) => format!("declared {}", severity_label(i.severity)),
        Rpc::OverrideSeverity(_) => format!("severity set to {}", severity_label(i.severity)),
        Rpc::AssignCommander(_) => format!("commander is {commander}"),
        Rpc::RequestHandoff(q) => format!("handoff to {} requested; {commander} stays commander until accepted", q.to),
        Rpc::AcceptHandoff(_) => format!("handoff accepted; commander is {commander}"),
        Rpc::DeclineHandoff(_) => format!("handoff declined; commander is still {commander}"),
        Rpc::CancelHandoff(_) => "handoff cancelled".to_string(),
        Rpc::AssignRole(q) => format!("{} is {}", q.person, role_name(q.role).unwrap_or("in a role")),
        Rpc::PostUpdate(q) => format!("update posted to {}", audience_name(q.audience).unwrap_or("?")),
        Rpc::RecordCustomerImpact(_) => format!(
            "impact recorded: {} customers affected{}",
            i.customers_affected,
            if i.multi_customer { ", multi-customer" } else { "" }
        ),
        Rpc::Mitigate(_) => "mitigated".to_string(),
        Rpc::Resolve(_) => "resolved".to_string(),
        Rpc::Reopen(_) => "reopened".to_string(),
        Rpc::ValidateResolution(_) => "resolution validated; closed".to_string(),
        Rpc::MarkNoise(_) => "marked as noise; trend reports leave it out".to_string(),
        Rpc::Report(_)
        | Rpc::GetIncident(_)
        | Rpc::ListIncidents { .. }
        | Rpc::GetHistory(_)
        | Rpc::ExplainSeverity(_)
        | Rpc::Acknowledge(_)
        | Rpc::WhoIsOnCall(_)
        | Rpc::ListPages(_)
        | Rpc::ReplayTimeline(_)
        | Rpc::GetMetrics(_)
        | Rpc::GetReview(_)
        | Rpc::EditReview(_)
        | Rpc::ListActionItems(_)
        | Rpc::ExportMarkdown(_)
        | Rpc::Trends { .. } => "done".to_string(),
    };
    let retry = if r.deduplicated { "; a retry, nothing new written" } else { "" };
    format!("{} {what} (version {}{retry})", i.id, i.version)
}

/// The short form of an incident, first line of `join`.
fn snapshot(i: &v1::Incident) -> String {
    format!(
        "{} [{} {}] {}; commander {}; {} participant{} (version {})",
        i.id,
        severity_label(i.severity),
        status_name(i.status).unwrap_or("?"),
        i.title,
        or_dash(&i.commander),
        i.participants.len(),
        if i.participants.len() == 1 { "" } else { "s" },
        i.version
    )
}

/// The multi-line view of `show`.
fn show(i: &v1::Incident) -> String {
    const LABEL_WIDTH: usize = 14;
    let mut out = format!("{}  {}\n", i.id, i.title);
    let mut field = |label: &str, value: Option<String>| {
        if let Some(value) = value {
            let _ = writeln!(out, "  {:<LABEL_WIDTH$}{value}", format!("{label}:"));
        }
    };
    field("status", Some(format!("{} (version {})", status_name(i.status).unwrap_or("?"), i.version)));
    let overridden = if i.severity_overridden { " (overridden)" } else { "" };
    field("severity", Some(format!("{}{overridden}", severity_label(i.severity))));
    field("service", Some(or_dash(&i.service).to_string()));
    field("commander", Some(or_dash(&i.commander).to_string()));
    field(
        "handoff",
        i.pending_handoff.as_ref().map(|h| {
            let at = human_time(h.requested_at.as_ref()).map(|t| format!(", requested {t}")).unwrap_or_default();
            format!("{} -> {} (pending{at})", h.from, h.to)
        }),
    );
    let roles: Vec<String> =
        i.roles.iter().map(|r| format!("{} {}", role_name(r.role).unwrap_or("unknown"), r.people.join(", "))).collect();
    field("roles", (!roles.is_empty()).then(|| roles.join("; ")));
    field("participants", Some(if i.participants.is_empty() { "-".to_string() } else { i.participants.join(", ") }));
    let mut impact = format!("{} customers affected", i.customers_affected);
    if i.multi_customer {
        impact.push_str(", multi-customer");
    }
    if !i.customers.is_empty() {
        let _ = write!(impact, " ({})", i.customers.join(", "));
    }
    if !i.impact_summary.is_empty() {
        let _ = write!(impact, ": {}", i.impact_summary);
    }
    field("impact", Some(impact));
    let mut reported = format!("by {} via {}", or_dash(&i.reporter), source_name(i.source).unwrap_or("?"));
    let _ = write!(reported, ", {} report{}", i.report_count, if i.report_count == 1 { "" } else { "s" });
    if !i.dedup_key.is_empty() {
        let _ = write!(reported, ", dedup key {}", i.dedup_key);
    }
    field("reported", Some(reported));
    let labels: BTreeMap<_, _> = i.labels.iter().collect();
    let labels: Vec<String> = labels.into_iter().map(|(k, v)| format!("{k}={v}")).collect();
    field("labels", (!labels.is_empty()).then(|| labels.join(", ")));
    field("description", non_empty(&i.description));
    field("mitigation", non_empty(&i.mitigation_summary));
    field("resolution", non_empty(&i.resolution_summary));
    field("reopened", (i.reopen_count > 0).then(|| format!("{} times", i.reopen_count)));
    if !i.latest_updates.is_empty() {
        out.push_str("  latest updates:\n");
        for u in &i.latest_updates {
            let at = human_time(u.at.as_ref()).unwrap_or_default();
            let _ = writeln!(out, "    [{}] {at} {}: {}", audience_name(u.audience).unwrap_or("?"), u.by, u.text);
        }
    }
    let times = [
        ("started", &i.started_at),
        ("first reported", &i.first_reported_at),
        ("last seen", &i.last_seen_at),
        ("declared", &i.declared_at),
        ("commander set", &i.commander_assigned_at),
        ("mitigated", &i.mitigated_at),
        ("resolved", &i.resolved_at),
        ("closed", &i.closed_at),
    ];
    out.push_str("  timestamps:\n");
    for (label, t) in times {
        if let Some(t) = human_time(t.as_ref()) {
            let _ = writeln!(out, "    {label:<LABEL_WIDTH$} {t}");
        }
    }
    out.pop(); // The caller prints the final newline.
    out
}

/// The table of `list`.
fn list(l: &v1::ListIncidentsResponse) -> String {
    if l.incidents.is_empty() {
        return "no incidents".to_string();
    }
    let mut out = table(
        ["ID", "SEV", "STATUS", "COMMANDER", "SERVICE", "TITLE"],
        l.incidents.iter().map(|i| {
            [
                i.id.clone(),
                severity_label(i.severity),
                status_name(i.status).unwrap_or("?").to_string(),
                or_dash(&i.commander).to_string(),
                or_dash(&i.service).to_string(),
                i.title.clone(),
            ]
        }),
    );
    if !l.next_page_token.is_empty() {
        out.push_str("\n(more incidents: use --all-pages)");
    }
    out
}

/// A table with a header row: columns separated by two spaces and padded to
/// their widest cell, except the last; no trailing whitespace or newline.
fn table<const N: usize>(header: [&str; N], rows: impl Iterator<Item = [String; N]>) -> String {
    let rows: Vec<[String; N]> = std::iter::once(header.map(String::from)).chain(rows).collect();
    let mut widths = [0; N];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in &rows {
        let mut line = String::new();
        for (n, cell) in row.iter().enumerate() {
            if n + 1 == row.len() {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<width$}  ", width = widths[n]);
            }
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }
    out.pop();
    out
}

/// `history`: one line per entry, time, version, summary.
fn history(h: &v1::GetHistoryResponse) -> String {
    if h.entries.is_empty() {
        return "no history".to_string();
    }
    let width = h.entries.iter().map(|e| e.version.to_string().len()).max().unwrap_or(1);
    h.entries
        .iter()
        .map(|e| {
            let at = human_time(e.at.as_ref()).unwrap_or_else(|| "-".to_string());
            format!("{at}  v{:<width$}  {}", e.version, e.summary)
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `severity explain`: a header with the assessment and the current
/// severity, a warning when a manager's override is in force, then the
/// server's readable lines.
fn explanation(e: &v1::SeverityExplanation) -> String {
    let by = if e.rule_id.is_empty() { "by default".to_string() } else { format!("by rule {}", e.rule_id) };
    let current = severity_label(e.current);
    let mut out = vec![format!("{}: assessed {} {by} (current {current})", e.incident_id, severity_label(e.assessed))];
    if e.overridden {
        out.push(format!("A manager's override is in force: the severity stays {current} whatever the rules assess."));
    }
    out.extend(e.lines.iter().cloned());
    out.join("\n")
}

/// `ack`: `INC-7-P1 acknowledged by ana`.
fn acknowledged(rpc: &Rpc, a: &v1::AcknowledgeResponse) -> String {
    let page = a.page.clone().unwrap_or_default();
    let id = match (page.page_id.as_str(), rpc) {
        ("", Rpc::Acknowledge(q)) => q.page_id.clone(),
        (id, _) => id.to_string(),
    };
    format!("{} acknowledged by {}", or_dash(&id), or_dash(&page.acknowledged_by))
}

/// The table of `oncall`; UNTIL is `-` when nobody is on call or the shift
/// has no end.
fn on_call(o: &v1::WhoIsOnCallResponse) -> String {
    if o.on_call.is_empty() {
        return "no schedules".to_string();
    }
    table(
        ["SCHEDULE", "ON CALL", "SOURCE", "UNTIL"],
        o.on_call.iter().map(|c| {
            let until = if c.who.is_empty() { None } else { human_time(c.until.as_ref()) };
            [
                c.schedule.clone(),
                or_dash(&c.who).to_string(),
                or_dash(&c.source).to_string(),
                until.unwrap_or_else(|| "-".to_string()),
            ]
        }),
    )
}

/// The table of `pages`, oldest first as the server sends them.
fn pages(p: &v1::ListPagesResponse) -> String {
    if p.pages.is_empty() {
        return "no pages".to_string();
    }
    let dash = || "-".to_string();
    table(
        ["PAGE", "RESPONDER", "LEVEL", "ROUND", "REASON", "PAGED", "DEADLINE", "ACK", "DELIVERY"],
        p.pages.iter().map(|page| {
            let ack = match (page.acknowledged_by.as_str(), human_time(page.acknowledged_at.as_ref())) {
                ("", None) => dash(),
                (by, Some(at)) => format!("{} at {at}", or_dash(by)),
                (by, None) => by.to_string(),
            };
            [
                page.page_id.clone(),
                or_dash(&page.responder).to_string(),
                page.level.to_string(),
                page.round.to_string(),
                or_dash(&page.reason).to_string(),
                human_time(page.paged_at.as_ref()).unwrap_or_else(dash),
                human_time(page.deadline.as_ref()).unwrap_or_else(dash),
                ack,
                or_dash(&page.delivery).to_string(),
            ]
        }),
    )
}

/// `timeline`: one line per entry (time, `#position`, source, summary) and,
/// for an `as_of` replay, the incident's state then.
fn timeline(rpc: &Rpc, entries: &[v1::TimelineEntry], state: Option<&v1::Incident>) -> String {
    let mut out = if entries.is_empty() {
        "no timeline entries".to_string()
    } else {
        let position = entries.iter().map(|e| e.position.to_string().len()).max().unwrap_or(1);
        let source = entries.iter().map(|e| or_dash(&e.source).chars().count()).max().unwrap_or(1);
        entries
            .iter()
            .map(|e| {
                let at = human_time(e.at.as_ref()).unwrap_or_else(|| "-".to_string());
                format!("{at}  #{:<position$}  {:<source$}  {}", e.position, or_dash(&e.source), e.summary)
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    if let Some(i) = state {
        let when = match rpc {
            Rpc::ReplayTimeline(v1::ReplayTimelineRequest { as_of: Some(as_of), .. }) => match as_of {
                v1::replay_timeline_request::AsOf::AsOfPosition(p) => format!("as of position #{p}"),
                v1::replay_timeline_request::AsOf::AsOfTime(t) => {
                    format!("as of {}", human_time(Some(t)).unwrap_or_else(|| "-".to_string()))
                }
            },
            _ => "then".to_string(),
        };
        let _ = write!(
            out,
            "\n\n{} {when}:\n  status:     {} (version {})\n  severity:   {}\n  commander:  {}",
            i.id,
            status_name(i.status).unwrap_or("?"),
            i.version,
            severity_label(i.severity),
            or_dash(&i.commander)
        );
    }
    out
}

/// `metrics`: one `key: value` line per metric, durations as `1h 2m 3s`.
fn metrics(m: &v1::IncidentMetrics) -> String {
    let lines = [
        ("time to detect", duration(m.time_to_detect_seconds)),
        ("time to acknowledge", duration(m.time_to_acknowledge_seconds)),
        ("time to assign", duration(m.time_to_assign_seconds)),
        ("time to mitigate", duration(m.time_to_mitigate_seconds)),
        ("time to resolve", duration(m.time_to_resolve_seconds)),
        ("pages", m.pages.to_string()),
        ("escalations", m.escalations.to_string()),
        ("handoffs", m.handoffs.to_string()),
        ("SLO breaches", m.slo_breaches.to_string()),
        ("noise", if m.noise { "yes" } else { "no" }.to_string()),
    ];
    let mut out = m.incident_id.clone();
    for (label, value) in lines {
        let _ = write!(out, "\n  {:<21}{value}", format!("{label}:"));
    }
    out
}

/// `draft`, `published`, or `not started` for a review nobody has opened.
fn review_state(r: &v1::ReviewView) -> &'static str {
    match (r.opened, r.published) {
        (_, true) => "published",
        (true, false) => "draft",
        (false, false) => "not started",
    }
}

/// `review show`: the whole review, action items as a table.
fn review(r: &v1::ReviewView) -> String {
    let mut out = format!("{} review: {} (version {})", r.incident_id, review_state(r), r.version);
    // Continuation lines of a multi-line text line up under its first.
    let text = |s: &str| if s.is_empty() { "-".to_string() } else { s.replace('\n', "\n            ") };
    let _ = write!(out, "\n  summary:  {}\n  impact:   {}", text(&r.summary), text(&r.impact));
    if r.contributing_factors.is_empty() {
        out.push_str("\n  contributing factors: -");
    } else {
        out.push_str("\n  contributing factors:");
        for factor in &r.contributing_factors {
            let _ = write!(out, "\n    - {}", factor.replace('\n', "\n      "));
        }
    }
    if r.action_items.is_empty() {
        out.push_str("\n  action items: -");
    } else {
        out.push_str("\n  action items:");
        let rows = table(
            ["ITEM", "TITLE", "OWNER", "DUE", "STATUS"],
            r.action_items.iter().map(|a| {
                [
                    a.item_id.clone(),
                    a.title.clone(),
                    or_dash(&a.owner).to_string(),
                    or_dash(&a.due).to_string(),
                    item_status(a),
                ]
            }),
        );
        for row in rows.lines() {
            let _ = write!(out, "\n    {row}");
        }
    }
    out
}

fn item_status(a: &v1::ActionItem) -> String {
    if a.completed { "done" } else { "open" }.to_string()
}

/// What an edit of the review did, then the review in one line, such as
/// `INC-7-A2 added: Alert on 5xx rate (version 6)`.
fn review_edited(q: &v1::EditReviewRequest, r: &v1::ReviewView) -> String {
    use v1::edit_review_request::Edit;
    let id = &r.incident_id;
    let what = match &q.edit {
        Some(Edit::WriteSummary(_)) => format!("{id} review summary written"),
        Some(Edit::WriteImpact(_)) => format!("{id} review impact written"),
        Some(Edit::AddContributingFactor(_)) => format!("{id} contributing factor added"),
        // The new item is the last one with the title (items are numbered in
        // the order they are added).
        Some(Edit::AddActionItem(title)) => match r.action_items.iter().rev().find(|a| &a.title == title) {
            Some(a) => format!("{} added: {title}", a.item_id),
            None => format!("{id} action item added: {title}"),
        },
        Some(Edit::AssignActionItem(a)) => format!("{} assigned to {}", a.item_id, a.owner),
        Some(Edit::SetActionItemDue(d)) => format!("{} due {}", d.item_id, d.due),
        Some(Edit::CompleteActionItem(item)) => format!("{item} done"),
        Some(Edit::Publish(_)) => format!("{id} review published"),
        None => format!("{id} review"),
    };
    let plural = |n: usize, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
    let written = |s: &str| if s.is_empty() { "missing" } else { "written" };
    let open = r.action_items.iter().filter(|a| !a.completed).count();
    format!(
        "{what} (version {})\n  {}: summary {}, impact {}, {}, {} ({open} open)",
        r.version,
        review_state(r),
        written(&r.summary),
        written(&r.impact),
        plural(r.contributing_factors.len(), "contributing factor"),
        plural(r.action_items.len(), "action item"),
    )
}

/// The table of `actions`.
fn action_items(rpc: &Rpc, l: &v1::ListActionItemsResponse) -> String {
    if l.items.is_empty() {
        let open = matches!(rpc, Rpc::ListActionItems(v1::ListActionItemsRequest { open_only: true }));
        return if open { "no open action items" } else { "no action items" }.to_string();
    }
    table(
        ["ITEM", "INCIDENT", "TITLE", "OWNER", "DUE", "STATUS"],
        l.items.iter().map(|a| {
            [
                a.item_id.clone(),
                a.incident_id.clone(),
                a.title.clone(),
                or_dash(&a.owner).to_string(),
                or_dash(&a.due).to_string(),
                item_status(a),
            ]
        }),
    )
}
