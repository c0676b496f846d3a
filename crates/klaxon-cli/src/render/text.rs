//! The human text: one line for a confirmation, tables for lists, a
//! block per incident, in UTC.

use std::fmt::Write as _;

use klaxon_domain::text::counted;
use klaxon_proto::v1;

use super::*;
use crate::commands::Rpc;

/// `INC-3` for a new incident; the id stays the first word when merged, so
/// scripts can cut it.
pub(super) fn report_line(r: &v1::ReportResponse) -> String {
    let id = &r.incident_id;
    if !r.merged {
        return id.clone();
    }
    let reports = r.result.as_ref().and_then(|c| c.incident.as_ref()).map_or(0, |i| i.report_count);
    format!("{id} (merged into {id}, {reports} reports)")
}

/// The confirmation of a command, such as `INC-3 declared SEV1 (version 2)`.
pub(super) fn confirmation(rpc: &Rpc, r: &v1::CommandResponse) -> String {
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
        Rpc::AssignRole(q) if !q.replaces.is_empty() => {
            format!("{} is {} in place of {}", q.person, role_name(q.role).unwrap_or("in a role"), q.replaces)
        }
        Rpc::AssignRole(q) => format!("{} is {}", q.person, role_name(q.role).unwrap_or("in a role")),
        Rpc::RemoveRole(q) => format!("{} is no longer {}", q.person, role_name(q.role).unwrap_or("in the role")),
        Rpc::PostUpdate(q) => format!("update posted to {}", audience_name(q.audience).unwrap_or("?")),
        Rpc::RecordCustomerImpact(_) => format!(
            "impact recorded: {} affected{}",
            counted(i.customers_affected, "customer"),
            if i.multi_customer { ", multi-customer" } else { "" }
        ),
        Rpc::Mitigate(_) => "mitigated".to_string(),
        Rpc::Resolve(_) => "resolved".to_string(),
        Rpc::Reopen(_) => "reopened".to_string(),
        Rpc::ValidateResolution(_) => "resolution validated; closed".to_string(),
        Rpc::MarkNoise(_) => "marked as noise; trend reports leave it out".to_string(),
        Rpc::PageResponder(q) => {
            use v1::page_responder_request::Target;
            let whom = match &q.target {
                Some(Target::Person(p)) => p.clone(),
                Some(Target::Schedule(s)) => format!("the on-call of {s}"),
                Some(Target::Team(t)) => format!("team {t}"),
                None => "?".to_string(),
            };
            format!("paging {whom}; see `klaxon pages {}`", q.incident_id)
        }
        Rpc::Report(_)
        | Rpc::GetIncident(_)
        | Rpc::ListIncidents { .. }
        | Rpc::GetHistory(_)
        | Rpc::ExplainSeverity(_)
        | Rpc::Acknowledge(_)
        | Rpc::WhoIsOnCall(_)
        | Rpc::ChangeSchedule(_)
        | Rpc::Coverage(_)
        | Rpc::ListPages(_)
        | Rpc::ReplayTimeline(_)
        | Rpc::GetMetrics(_)
        | Rpc::GetReview(_)
        | Rpc::EditReview(_)
        | Rpc::ListActionItems(_)
        | Rpc::ExportMarkdown(_)
        | Rpc::Trends { .. }
        | Rpc::TestPolicy { .. }
        | Rpc::Audit { .. } => "done".to_string(),
    };
    let retry = if r.deduplicated { "; a retry, nothing new written" } else { "" };
    format!("{} {what} (version {}{retry})", i.id, i.version)
}

/// The short form of an incident, first line of `join`.
pub(super) fn snapshot(i: &v1::Incident) -> String {
    format!(
        "{} [{} {}] {}; commander {}; {} (version {})",
        i.id,
        severity_label(i.severity),
        status_name(i.status).unwrap_or("?"),
        i.title,
        or_dash(&i.commander),
        counted(i.participants.len() as u64, "participant"),
        i.version
    )
}

/// The multi-line view of `show`.
pub(super) fn show(i: &v1::Incident) -> String {
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
    field("runbook", (!i.runbook.is_empty()).then(|| i.runbook.clone()));
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
    let mut impact = format!("{} affected", counted(i.customers_affected, "customer"));
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
    let _ = write!(reported, ", {}", counted(i.report_count, "report"));
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
    field("reopened", (i.reopen_count > 0).then(|| counted(i.reopen_count, "time")));
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
pub(super) fn list(l: &v1::ListIncidentsResponse) -> String {
    if l.incidents.is_empty() {
        return "no incidents".to_string();
    }
    if !l.queue.is_empty() {
        return queue(l);
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

/// `queue`: the incidents in the server's order, each with its soonest
/// deadline and the time left (negative when overdue).
fn queue(l: &v1::ListIncidentsResponse) -> String {
    table(
        ["ID", "SEV", "COMMANDER", "NEXT", "DUE", "LEFT", "TITLE"],
        l.incidents.iter().zip(&l.queue).map(|(i, q)| {
            let next = match (q.unowned_sev1, q.deadline.as_str()) {
                (true, "") => "unowned".to_string(),
                (true, d) => format!("unowned, {d}"),
                (false, "") => "-".to_string(),
                (false, d) => d.to_string(),
            };
            let due = time(q.due_at.as_ref()).map_or("-".to_string(), |t| t.format("%H:%M").to_string());
            let left = if q.deadline.is_empty() { "-".to_string() } else { left(q.seconds_left) };
            [
                i.id.clone(),
                severity_label(i.severity),
                or_dash(&i.commander).to_string(),
                next,
                due,
                left,
                i.title.clone(),
            ]
        }),
    )
}

/// Seconds left as `1h 5m`, `12m`, `45s`, or `overdue 3m`.
fn left(seconds: i64) -> String {
    let (prefix, s) = if seconds < 0 { ("overdue ", -seconds) } else { ("", seconds) };
    let text = match s {
        s if s >= 3600 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        s if s >= 60 => format!("{}m", s / 60),
        s => format!("{s}s"),
    };
    format!("{prefix}{text}")
}

/// A table with a header row: columns separated by two spaces and padded to
/// their widest cell, except the last; no trailing whitespace or newline.
pub(super) fn table<const N: usize>(header: [&str; N], rows: impl Iterator<Item = [String; N]>) -> String {
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

/// `history`: one line per entry, time, version, summary; a summary of
/// several lines (an update's text) goes on indented under its first, so
/// that every entry still starts with its time.
pub(super) fn history(h: &v1::GetHistoryResponse) -> String {
    if h.entries.is_empty() {
        return "no history".to_string();
    }
    let width = h.entries.iter().map(|e| e.version.to_string().len()).max().unwrap_or(1);
    h.entries
        .iter()
        .map(|e| {
            let at = human_time(e.at.as_ref()).unwrap_or_else(|| "-".to_string());
            hanging(&format!("{at}  v{:<width$}  ", e.version), &e.summary)
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `severity explain`: a header with the assessment and the current
/// severity, a warning when a manager's override is in force, then the
/// server's readable lines.
pub(super) fn explanation(e: &v1::SeverityExplanation) -> String {
    let by = if e.rule_id.is_empty() { "by default".to_string() } else { format!("by rule {}", e.rule_id) };
    let current = severity_label(e.current);
    let mut out = vec![if e.incident_id.is_empty() {
        // A hypothetical report: nothing current, nothing written.
        format!("The report would be assessed {} {by} (hypothetical: nothing was written)", severity_label(e.assessed))
    } else {
        format!("{}: assessed {} {by} (current {current})", e.incident_id, severity_label(e.assessed))
    }];
    if e.overridden {
        out.push(format!("A manager's override is in force: the severity stays {current} whatever the rules assess."));
    }
    out.extend(e.lines.iter().cloned());
    out.join("\n")
}

/// `ack`: `INC-7-P1 acknowledged by ana`.
pub(super) fn acknowledged(rpc: &Rpc, a: &v1::AcknowledgeResponse) -> String {
    let page = a.page.clone().unwrap_or_default();
    let id = match (page.page_id.as_str(), rpc) {
        ("", Rpc::Acknowledge(q)) => q.page_id.clone(),
        (id, _) => id.to_string(),
    };
    format!("{} acknowledged by {}", or_dash(&id), or_dash(&page.acknowledged_by))
}

/// The table of `oncall`; UNTIL is `-` when nobody is on call or the shift
/// has no end.
pub(super) fn on_call(o: &v1::WhoIsOnCallResponse) -> String {
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

/// What a schedule change did, in one line.
pub(super) fn schedule_changed(c: &v1::ChangeScheduleResponse) -> String {
    format!("{} (position {})", c.summary, c.position)
}

/// The holes of `oncall coverage`, schedule by schedule.
pub(super) fn coverage(c: &v1::CoverageResponse) -> String {
    if c.holes.is_empty() {
        return "no holes: somebody is on call on every schedule throughout".to_string();
    }
    let dash = || "-".to_string();
    table(
        ["SCHEDULE", "NOBODY FROM", "UNTIL"],
        c.holes.iter().map(|h| {
            [
                h.schedule.clone(),
                human_time(h.from.as_ref()).unwrap_or_else(dash),
                human_time(h.until.as_ref()).unwrap_or_else(dash),
            ]
        }),
    )
}

/// The table of `pages`, oldest first as the server sends them.
pub(super) fn pages(p: &v1::ListPagesResponse) -> String {
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
                page.level.map_or_else(dash, |level| level.to_string()),
                page.round.to_string(),
                or_dash(&page.reason).to_string(),
                human_time(page.paged_at.as_ref()).unwrap_or_else(dash),
                human_time(page.deadline.as_ref()).unwrap_or_else(dash),
                ack,
                match page.delivery_note.as_str() {
                    "" => or_dash(&page.delivery).to_string(),
                    note => format!("{}: {note}", or_dash(&page.delivery)),
                },
            ]
        }),
    )
}

/// `timeline`: one line per entry (time, `#position`, source, summary; a
/// summary of several lines goes on indented, as in `history`) and,
/// for an `as_of` replay, the incident's state then.
pub(super) fn timeline(rpc: &Rpc, entries: &[v1::TimelineEntry], state: Option<&v1::Incident>) -> String {
    let mut out = if entries.is_empty() {
        "no timeline entries".to_string()
    } else {
        let position = entries.iter().map(|e| e.position.to_string().len()).max().unwrap_or(1);
        let source = entries.iter().map(|e| or_dash(&e.source).chars().count()).max().unwrap_or(1);
        entries
            .iter()
            .map(|e| {
                let at = human_time(e.at.as_ref()).unwrap_or_else(|| "-".to_string());
                hanging(&format!("{at}  #{:<position$}  {:<source$}  ", e.position, or_dash(&e.source)), &e.summary)
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
pub(super) fn metrics(m: &v1::IncidentMetrics) -> String {
    let lines = [
        ("time to detect", duration(m.time_to_detect_seconds)),
        ("time to acknowledge", duration(m.time_to_acknowledge_seconds)),
        ("time to assign", duration(m.time_to_assign_seconds)),
        ("time to mitigate", duration(m.time_to_mitigate_seconds)),
        ("time to resolve", duration(m.time_to_resolve_seconds)),
        ("pages", m.pages.to_string()),
        ("pulled in", m.pulled_in_pages.to_string()),
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
pub(super) fn review_state(r: &v1::ReviewView) -> &'static str {
    match (r.opened, r.published) {
        (_, true) => "published",
        (true, false) => "draft",
        (false, false) => "not started",
    }
}

/// `review show`: the whole review, action items as a table.
pub(super) fn review(r: &v1::ReviewView) -> String {
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

pub(super) fn item_status(a: &v1::ActionItem) -> String {
    if a.completed { "done" } else { "open" }.to_string()
}

/// What an edit of the review did, then the review in one line, such as
/// `INC-7-A2 added: Alert on 5xx rate (version 6)`.
pub(super) fn review_edited(q: &v1::EditReviewRequest, r: &v1::ReviewView) -> String {
    use v1::edit_review_request::Edit;
    let id = &r.incident_id;
    // The new item is the last one with the title (items are numbered in
    // the order they are added).
    let added = |title: &str| match r.action_items.iter().rev().find(|a| a.title == title) {
        Some(a) => format!("{} added: {title}", a.item_id),
        None => format!("{id} action item added: {title}"),
    };
    let what = match &q.edit {
        Some(Edit::WriteSummary(_)) => format!("{id} review summary written"),
        Some(Edit::WriteImpact(_)) => format!("{id} review impact written"),
        Some(Edit::AddContributingFactor(_)) => format!("{id} contributing factor added"),
        Some(Edit::AddActionItem(title)) => added(title),
        Some(Edit::NewActionItem(n)) => {
            let mut line = added(&n.title);
            if !n.owner.is_empty() {
                line.push_str(&format!(", owned by {}", n.owner));
            }
            if !n.due.is_empty() {
                line.push_str(&format!(", due {}", n.due));
            }
            line
        }
        Some(Edit::AssignActionItem(a)) => format!("{} assigned to {}", a.item_id, a.owner),
        Some(Edit::SetActionItemDue(d)) => format!("{} due {}", d.item_id, d.due),
        Some(Edit::CompleteActionItem(item)) => format!("{item} done"),
        Some(Edit::Publish(_)) => format!("{id} review published"),
        None => format!("{id} review"),
    };
    let written = |s: &str| if s.is_empty() { "missing" } else { "written" };
    let open = r.action_items.iter().filter(|a| !a.completed).count();
    format!(
        "{what} (version {})\n  {}: summary {}, impact {}, {}, {} ({open} open)",
        r.version,
        review_state(r),
        written(&r.summary),
        written(&r.impact),
        counted(r.contributing_factors.len() as u64, "contributing factor"),
        counted(r.action_items.len() as u64, "action item"),
    )
}

/// The table of `actions`.
pub(super) fn action_items(rpc: &Rpc, l: &v1::ListActionItemsResponse) -> String {
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
