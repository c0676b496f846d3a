//! The JSON views: serializable mirrors of the wire types (prost types do
//! not implement `Serialize`), with RFC 3339 times, lowercase enum names
//! and `null` for absent values.

use std::collections::BTreeMap;

use klaxon_proto::v1;
use serde::Serialize;

use super::*;

/// One view as a line of JSON.
pub(super) fn to_json(view: &impl Serialize) -> String {
    // Views hold only strings, numbers, booleans, lists and string-keyed maps.
    serde_json::to_string(view).expect("a view always serializes")
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
    #[serde(skip_serializing_if = "Option::is_none")]
    runbook: Option<String>,
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
            runbook: non_empty(&i.runbook),
        }
    }
}

/// A pending handoff in JSON.
#[derive(Debug, Serialize)]
pub(super) struct HandoffView {
    from: String,
    to: String,
    requested_at: Option<String>,
}

/// A status update in JSON.
#[derive(Debug, Serialize)]
pub(super) struct UpdateView {
    audience: Option<&'static str>,
    text: String,
    by: String,
    at: Option<String>,
}

impl UpdateView {
    pub(super) fn new(u: &v1::StatusUpdate) -> UpdateView {
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
pub(super) struct CommandView {
    incident_id: String,
    version: u64,
    first_position: u64,
    last_position: u64,
    deduplicated: bool,
    incident: Option<IncidentView>,
}

impl CommandView {
    pub(super) fn new(r: &v1::CommandResponse) -> CommandView {
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
pub(super) struct ReportView {
    merged: bool,
    #[serde(flatten)]
    result: CommandView,
    /// What the server noted about the accepted report (also on stderr).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    notices: Vec<String>,
}

impl ReportView {
    pub(super) fn new(r: &v1::ReportResponse) -> ReportView {
        let mut result = CommandView::new(&r.result.clone().unwrap_or_default());
        result.incident_id = r.incident_id.clone();
        ReportView { merged: r.merged, result, notices: r.notices.clone() }
    }
}

/// A page (or all pages) of incidents, in JSON.
#[derive(Debug, Serialize)]
pub(super) struct ListView {
    incidents: Vec<IncidentView>,
    next_page_token: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    queue: Vec<QueueRowView>,
}

/// One row of `klaxon queue`, in JSON.
#[derive(Debug, Serialize)]
pub(super) struct QueueRowView {
    incident_id: String,
    unowned_sev1: bool,
    deadline: Option<String>,
    due_at: Option<String>,
    seconds_left: Option<i64>,
}

impl ListView {
    pub(super) fn new(l: &v1::ListIncidentsResponse) -> ListView {
        ListView {
            incidents: l.incidents.iter().map(IncidentView::new).collect(),
            next_page_token: non_empty(&l.next_page_token),
            queue: l
                .queue
                .iter()
                .map(|q| QueueRowView {
                    incident_id: q.incident_id.clone(),
                    unowned_sev1: q.unowned_sev1,
                    deadline: non_empty(&q.deadline),
                    due_at: rfc3339(q.due_at.as_ref()),
                    seconds_left: (!q.deadline.is_empty()).then_some(q.seconds_left),
                })
                .collect(),
        }
    }
}

/// An incident's history, in JSON.
#[derive(Debug, Serialize)]
pub(super) struct HistoryView {
    pub(super) entries: Vec<EntryView>,
}

/// One history entry in JSON; `data` is the event's JSON itself (or the
/// stored text, should it not parse; `null` when absent).
#[derive(Debug, Serialize)]
pub(super) struct EntryView {
    position: u64,
    version: u64,
    kind: String,
    at: Option<String>,
    by: String,
    summary: String,
    data: serde_json::Value,
}

impl EntryView {
    pub(super) fn new(e: &v1::HistoryEntry) -> EntryView {
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
pub(super) struct ExplanationView {
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
    pub(super) fn new(e: &v1::SeverityExplanation) -> ExplanationView {
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
pub(super) struct RuleView {
    id: String,
    severity: Option<&'static str>,
    matched: bool,
    chosen: bool,
    conditions: Vec<ConditionView>,
}

/// One condition of a severity rule, in JSON.
#[derive(Debug, Serialize)]
pub(super) struct ConditionView {
    condition: String,
    held: bool,
    detail: String,
}

/// A page in JSON.
#[derive(Debug, Serialize)]
pub(super) struct PageView {
    page_id: String,
    incident_id: String,
    responder: String,
    level: Option<u32>,
    round: u32,
    reason: String,
    paged_at: Option<String>,
    deadline: Option<String>,
    acknowledged_at: Option<String>,
    acknowledged_by: Option<String>,
    delivery: Option<String>,
    delivery_note: Option<String>,
}

impl PageView {
    pub(super) fn new(p: &v1::Page) -> PageView {
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
            delivery_note: non_empty(&p.delivery_note),
        }
    }
}

/// The pages of an incident, in JSON.
#[derive(Debug, Serialize)]
pub(super) struct PagesView {
    pub(super) pages: Vec<PageView>,
}

/// What `ack` answers, in JSON.
#[derive(Debug, Serialize)]
pub(super) struct AcknowledgedView {
    position: u64,
    page: Option<PageView>,
}

impl AcknowledgedView {
    pub(super) fn new(a: &v1::AcknowledgeResponse) -> AcknowledgedView {
        AcknowledgedView { position: a.position, page: a.page.as_ref().map(PageView::new) }
    }
}

/// What a schedule change did, in JSON.
#[derive(Debug, Serialize)]
pub(super) struct ScheduleChangedView {
    kind: String,
    summary: String,
    number: u32,
    position: u64,
}

impl ScheduleChangedView {
    pub(super) fn new(c: &v1::ChangeScheduleResponse) -> ScheduleChangedView {
        ScheduleChangedView { kind: c.kind.clone(), summary: c.summary.clone(), number: c.number, position: c.position }
    }
}

/// The holes of `oncall coverage`, in JSON.
#[derive(Debug, Serialize)]
pub(super) struct CoverageView {
    holes: Vec<HoleView>,
}

/// One hole: nobody is on call on `schedule` during `[from, until)`.
#[derive(Debug, Serialize)]
pub(super) struct HoleView {
    schedule: String,
    from: Option<String>,
    until: Option<String>,
}

impl CoverageView {
    pub(super) fn new(c: &v1::CoverageResponse) -> CoverageView {
        CoverageView {
            holes: c
                .holes
                .iter()
                .map(|h| HoleView {
                    schedule: h.schedule.clone(),
                    from: rfc3339(h.from.as_ref()),
                    until: rfc3339(h.until.as_ref()),
                })
                .collect(),
        }
    }
}

/// Who is on call, in JSON; `who` is `null` when nobody is.
#[derive(Debug, Serialize)]
pub(super) struct OnCallListView {
    on_call: Vec<OnCallView>,
}

/// One schedule's on-call person, in JSON.
#[derive(Debug, Serialize)]
pub(super) struct OnCallView {
    schedule: String,
    who: Option<String>,
    source: Option<String>,
    from: Option<String>,
    until: Option<String>,
}

impl OnCallListView {
    pub(super) fn new(o: &v1::WhoIsOnCallResponse) -> OnCallListView {
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
pub(super) struct FeedItemView {
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
    #[serde(skip_serializing_if = "Vec::is_empty")]
    roles: Vec<RoleView>,
}

/// The holders of one role, in JSON.
#[derive(Debug, Serialize)]
pub(super) struct RoleView {
    role: Option<&'static str>,
    people: Vec<String>,
}

impl FeedItemView {
    pub(super) fn new(i: &v1::FeedItem) -> FeedItemView {
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
            roles: i
                .roles
                .iter()
                .map(|r| RoleView { role: super::role_name(r.role), people: r.people.clone() })
                .collect(),
        }
    }
}

/// A replayed timeline in JSON; `state` is the incident at the `as_of`
/// moment (`null` without one).
#[derive(Debug, Serialize)]
pub(super) struct TimelineView {
    pub(super) entries: Vec<TimelineEntryView>,
    pub(super) state: Option<IncidentView>,
}

/// One timeline entry in JSON.
#[derive(Debug, Serialize)]
pub(super) struct TimelineEntryView {
    position: u64,
    at: Option<String>,
    by: String,
    source: String,
    kind: String,
    summary: String,
}

impl TimelineEntryView {
    pub(super) fn new(e: &v1::TimelineEntry) -> TimelineEntryView {
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
pub(super) struct MetricsView {
    incident_id: String,
    time_to_detect_seconds: Option<i64>,
    time_to_acknowledge_seconds: Option<i64>,
    time_to_assign_seconds: Option<i64>,
    time_to_mitigate_seconds: Option<i64>,
    time_to_resolve_seconds: Option<i64>,
    pages: u32,
    pulled_in_pages: u32,
    escalations: u32,
    handoffs: u32,
    slo_breaches: u32,
    noise: bool,
}

impl MetricsView {
    pub(super) fn new(m: &v1::IncidentMetrics) -> MetricsView {
        MetricsView {
            incident_id: m.incident_id.clone(),
            time_to_detect_seconds: m.time_to_detect_seconds,
            time_to_acknowledge_seconds: m.time_to_acknowledge_seconds,
            time_to_assign_seconds: m.time_to_assign_seconds,
            time_to_mitigate_seconds: m.time_to_mitigate_seconds,
            time_to_resolve_seconds: m.time_to_resolve_seconds,
            pages: m.pages,
            pulled_in_pages: m.pulled_in_pages,
            escalations: m.escalations,
            handoffs: m.handoffs,
            slo_breaches: m.slo_breaches,
            noise: m.noise,
        }
    }
}

/// A post-incident review in JSON.
#[derive(Debug, Serialize)]
pub(super) struct ReviewView {
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
    pub(super) fn new(r: &v1::ReviewView) -> ReviewView {
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
pub(super) struct ActionItemView {
    item_id: String,
    incident_id: String,
    title: String,
    owner: Option<String>,
    due: Option<String>,
    completed: bool,
}

impl ActionItemView {
    pub(super) fn new(a: &v1::ActionItem) -> ActionItemView {
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
pub(super) struct ActionItemsView {
    pub(super) items: Vec<ActionItemView>,
}

/// What `review export --json` answers.
#[derive(Debug, Serialize)]
pub(super) struct MarkdownView {
    pub(super) incident_id: String,
    pub(super) markdown: String,
}

/// One line of `join --json`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum BridgeView {
    Snapshot(Box<IncidentView>),
    Event(EntryView),
    NoteRecorded(NoteRecordedView),
}

/// Where a note of `join` was recorded (`--json` only).
#[derive(Debug, Serialize)]
pub(super) struct NoteRecordedView {
    pub(super) request_id: String,
    pub(super) position: u64,
    pub(super) deduplicated: bool,
}

/// One entry of the audit trail in JSON.
#[derive(Debug, Serialize)]
pub struct AuditEntryView {
    position: u64,
    at: Option<String>,
    actor: String,
    kind: String,
    stream: String,
    summary: String,
}

impl AuditEntryView {
    pub(super) fn new(e: &v1::AuditEntry) -> AuditEntryView {
        AuditEntryView {
            position: e.position,
            at: rfc3339(e.at.as_ref()),
            actor: e.actor.clone(),
            kind: e.kind.clone(),
            stream: e.stream.clone(),
            summary: e.summary.clone(),
        }
    }
}
