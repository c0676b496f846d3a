//! The Markdown postmortem of one incident.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use chrono::{DateTime, Utc};

use crate::incident::Incident;
use crate::paging::{PageChange, PageEvent, PageId};
use crate::review::metrics::IncidentMetrics;
use crate::review::timeline::TimelineEntry;
use crate::review::trends::human_optional;
use crate::review::{ActionItem, Review};

#[cfg(test)]
mod tests;

/// A UTC time as the postmortem prints it: `2026-03-01 12:04:05`.
fn time(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%S").to_string()
}

/// Free text made safe for one table cell: pipes escaped, line breaks
/// turned into spaces.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace(['\r', '\n'], " ")
}

/// What became of one page, gathered from its events.
struct PageLine {
    id: PageId,
    responder: String,
    level: String,
    reason: String,
    paged_at: DateTime<Utc>,
    delivery: String,
    acknowledged: String,
}

/// The pages of `events`, in the order they were sent.
fn page_lines(events: &[PageEvent]) -> Vec<PageLine> {
    let mut pages: BTreeMap<PageId, PageLine> = BTreeMap::new();
    for event in events {
        match &event.change {
            PageChange::ResponderPaged(p) => {
                pages.insert(
                    p.page,
                    PageLine {
                        id: p.page,
                        responder: p.responder.to_string(),
                        level: p.level_label(),
                        reason: p.reason.as_str().replace('_', " "),
                        paged_at: event.at,
                        delivery: "pending".to_owned(),
                        acknowledged: "-".to_owned(),
                    },
                );
            }
            PageChange::PageDelivered(d) => {
                if let Some(line) = pages.get_mut(&d.page) {
                    line.delivery = format!("delivered via {}", d.channel);
                }
            }
            PageChange::PageDeliveryFailed(d) => {
                if let Some(line) = pages.get_mut(&d.page) {
                    line.delivery = format!("failed via {}", d.channel);
                }
            }
            PageChange::PageAcknowledged(a) => {
                if let Some(line) = pages.get_mut(&a.page) {
                    line.acknowledged = format!("{} by {}", time(event.at), event.by);
                }
            }
            _ => {}
        }
    }
    pages.into_values().collect()
}

/// The status of an action item for the postmortem.
fn item_status(item: &ActionItem) -> String {
    match item.completed() {
        Some((by, at)) => format!("done {} by {by}", at.format("%Y-%m-%d")),
        None => "open".to_owned(),
    }
}

/// The postmortem of `incident` in Markdown.
///
/// Sections, in order: a title (`# INC-7: <title>`) with a facts table
/// (severity, service, status, commander, key times with the mitigation
/// and resolution summaries, review state, noise mark), **Summary** (the review's, or a placeholder), **Impact** (the
/// incident's latest customer-impact assessment, then the review's impact
/// statement), **Timeline** (every entry of `timeline`, UTC), **Pages**
/// (from `pages`, the incident's page events: responder, level, reason,
/// delivery, acknowledgement), **Metrics** (every [`IncidentMetrics`] field;
/// `-` when not applicable), **Contributing factors** and **Action items**
/// (owner, due date, status). Times are UTC, printed `YYYY-MM-DD HH:MM:SS`.
/// The review's summary and impact are Markdown and are included as
/// written; other free text is escaped for table cells.
pub fn render_markdown(
    incident: &Incident,
    review: Option<&Review>,
    timeline: &[TimelineEntry],
    metrics: &IncidentMetrics,
    pages: &[PageEvent],
) -> String {
    let mut out = String::new();
    let optional_time = |at: Option<DateTime<Utc>>| at.map_or_else(|| "-".to_owned(), time);
    let with_text = |at: Option<DateTime<Utc>>, text: Option<&str>| match (at, text) {
        (Some(at), Some(text)) => format!("{}: {}", time(at), cell(text)),
        (at, _) => optional_time(at),
    };
    let _ = writeln!(out, "# {}: {}\n", incident.id(), incident.title().replace(['\r', '\n'], " "));

    let review_state = match review {
        None => "not opened".to_owned(),
        Some(r) => match r.published() {
            Some((by, at)) => format!("published {} by {by}", time(at)),
            None => format!("draft, opened {}", time(r.opened_at())),
        },
    };
    let mut facts = vec![
        ("Severity", incident.severity().map_or_else(|| "-".to_owned(), |s| s.to_string())),
        ("Service", incident.service().map_or_else(|| "-".to_owned(), |s| s.to_string())),
        ("Status", incident.status().to_string()),
        ("Commander", incident.commander().map_or_else(|| "-".to_owned(), |c| c.to_string())),
        (
            "Reported",
            format!("{} by {} via {}", time(incident.first_reported_at()), incident.reporter(), incident.source()),
        ),
        ("Started", optional_time(incident.started_at())),
        ("Declared", optional_time(incident.declared_at())),
        ("Mitigated", with_text(incident.mitigated_at(), incident.mitigation_summary())),
        ("Resolved", with_text(incident.resolved_at(), incident.resolution_summary())),
        ("Closed", optional_time(incident.closed_at())),
        ("Reopened", crate::text::counted(incident.reopen_count(), "time")),
        ("Review", review_state),
    ];
    if let Some(reason) = incident.noise_reason() {
        facts.push(("Noise", format!("marked as noise: {}", cell(reason))));
    }
    out.push_str("| Fact | Value |\n| --- | --- |\n");
    for (fact, value) in facts {
        let _ = writeln!(out, "| {fact} | {value} |");
    }

    out.push_str("\n## Summary\n\n");
    match review.and_then(Review::summary) {
        Some(summary) => out.push_str(summary),
        None => out.push_str("_No summary written yet._"),
    }
    out.push('\n');

    out.push_str("\n## Impact\n\n");
    let customers: Vec<&str> = incident.customers().iter().map(|c| c.as_str()).collect();
    let _ = writeln!(out, "- Customers affected: {}", incident.customers_affected());
    let _ = writeln!(out, "- Multi-customer: {}", if incident.multi_customer() { "yes" } else { "no" });
    if !customers.is_empty() {
        let _ = writeln!(out, "- Customers named: {}", cell(&customers.join(", ")));
    }
    let _ = writeln!(out, "- Latest assessment: {}", incident.impact_summary().map_or_else(|| "-".to_owned(), cell));
    if let Some(impact) = review.and_then(Review::impact) {
        let _ = write!(out, "\n{impact}\n");
    }

    out.push_str("\n## Timeline (UTC)\n\n| Time | Source | Who | What |\n| --- | --- | --- | --- |\n");
    for entry in timeline {
        let _ = writeln!(out, "| {} | {} | {} | {} |", time(entry.at), entry.source, entry.by, cell(&entry.summary));
    }

    out.push_str("\n## Pages\n\n");
    let lines = page_lines(pages);
    if lines.is_empty() {
        out.push_str("Nobody was paged.\n");
    } else {
        out.push_str("| Page | Responder | Level | Reason | Paged | Delivery | Acknowledged |\n");
        out.push_str("| --- | --- | --- | --- | --- | --- | --- |\n");
        for p in lines {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} |",
                p.id,
                p.responder,
                p.level,
                p.reason,
                time(p.paged_at),
                cell(&p.delivery),
                p.acknowledged
            );
        }
    }

    out.push_str("\n## Metrics\n\n| Metric | Value |\n| --- | --- |\n");
    let b = metrics.slo_breaches;
    let rows = [
        ("Time to detect", human_optional(metrics.time_to_detect)),
        ("Time to acknowledge", human_optional(metrics.time_to_acknowledge)),
        ("Time to assign", human_optional(metrics.time_to_assign)),
        ("Time to mitigate", human_optional(metrics.time_to_mitigate)),
        ("Time to resolve", human_optional(metrics.time_to_resolve)),
        ("Pages (notices aside)", metrics.pages.to_string()),
        ("Escalations", metrics.escalations.to_string()),
        ("Accepted handoffs", metrics.handoffs.to_string()),
        (
            "SLO breaches",
            format!("ack {}, assign {}, update cadence {}, resolve {}", b.ack, b.assign, b.update_cadence, b.resolve),
        ),
    ];
    for (metric, value) in rows {
        let _ = writeln!(out, "| {metric} | {value} |");
    }

    out.push_str("\n## Contributing factors\n\n");
    let factors = review.map(Review::contributing_factors).unwrap_or_default();
    if factors.is_empty() {
        out.push_str("_None recorded._\n");
    }
    for (i, factor) in factors.iter().enumerate() {
        let _ = writeln!(out, "{}. {}", i + 1, cell(factor));
    }

    out.push_str("\n## Action items\n\n");
    let items: Vec<&ActionItem> = review.map(|r| r.action_items().collect()).unwrap_or_default();
    if items.is_empty() {
        out.push_str("_None recorded._\n");
    } else {
        out.push_str("| Item | Title | Owner | Due | Status |\n| --- | --- | --- | --- | --- |\n");
        for item in items {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} |",
                item.id(),
                cell(item.title()),
                item.owner().map_or_else(|| "-".to_owned(), |o| o.to_string()),
                item.due().map_or_else(|| "-".to_owned(), |d| d.format("%Y-%m-%d").to_string()),
                item_status(item)
            );
        }
    }
    out
}
