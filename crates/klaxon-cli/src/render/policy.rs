//! `klaxon policy test` (a table, JSON or CSV of the replay) and `klaxon
//! policy lint` (one line per finding, or JSON).

use std::fmt::Write as _;

use klaxon_domain::policy::Finding;
use klaxon_proto::v1;
use serde_json::{Value, json};

use super::{rfc3339, severity_name};
use crate::cli::Format;

/// The replay report in `format`: the summary first, then each incident.
pub fn policy_report(r: &v1::PolicyTestReport, format: Format) -> String {
    match format {
        Format::Table => table(r),
        Format::Json => serde_json::to_string(&report_json(r)).expect("a JSON value serializes"),
        Format::Csv => csv(r),
    }
}

/// The findings of a lint: `KEY  KIND  message` lines (or `No problems
/// found.`), or `{"findings": [...]}`.
pub fn findings(findings: &[Finding], json: bool) -> String {
    if json {
        let list: Vec<Value> =
            findings.iter().map(|f| json!({"kind": f.kind.as_str(), "key": f.key, "message": f.message})).collect();
        return json!({ "findings": list }).to_string();
    }
    if findings.is_empty() {
        return "No problems found.".into();
    }
    findings.iter().map(|f| format!("{}  {}  {}", f.key, f.kind.as_str(), f.message)).collect::<Vec<_>>().join("\n")
}

fn summary(r: &v1::PolicyTestReport) -> v1::PolicyTestSummary {
    r.summary.unwrap_or_default()
}

fn severity_and_rule(severity: i32, rule: &str) -> String {
    let severity = severity_name(severity).unwrap_or("none");
    if rule.is_empty() { severity.to_owned() } else { format!("{severity} ({rule})") }
}

/// `HH:MM:SS responder Ln reason` of one page, the day left out when the
/// window holds one day.
fn page(p: &v1::ReplayedPage) -> String {
    let level = p.level.map_or_else(|| "-".to_owned(), |l| format!("L{l}"));
    let round = if p.round > 0 { format!("/R{}", p.round) } else { String::new() };
    format!("{} {} {level}{round} {}", rfc3339(p.at.as_ref()).unwrap_or_default(), p.responder, p.reason)
}

fn escalation(e: &v1::ReplayedEscalation) -> String {
    let to = e.to_level.map_or_else(|| "exhausted".to_owned(), |l| format!("L{l}"));
    format!("{} L{} -> {to}", rfc3339(e.at.as_ref()).unwrap_or_default(), e.from_level)
}

fn breach(b: &v1::ReplayedBreach) -> String {
    format!("{} due {}", b.slo, rfc3339(b.due_at.as_ref()).unwrap_or_default())
}

fn list<T>(items: &[T], one: fn(&T) -> String) -> Vec<String> {
    items.iter().map(one).collect()
}

fn differs(i: &v1::IncidentReplay) -> bool {
    i.severity_changed
        || i.rule_changed
        || i.paging_differs
        || i.escalations_differ
        || i.breaches_new > 0
        || i.breaches_removed > 0
}

fn table(r: &v1::PolicyTestReport) -> String {
    let s = summary(r);
    let mut out = String::new();
    let from = rfc3339(r.from.as_ref()).unwrap_or_else(|| "the beginning".into());
    let until = rfc3339(r.until.as_ref()).unwrap_or_default();
    let _ = writeln!(out, "Replayed {} incident(s) reported from {from} until {until}", s.incidents);
    let rows = [
        ("severity changed", s.severity_changed),
        ("rule changed", s.rule_changed),
        ("paging differs", s.paging_differs),
        ("escalations differ", s.escalations_differ),
        ("new SLO breaches", s.breaches_new),
        ("removed SLO breaches", s.breaches_removed),
        ("acks not replayed", s.acks_not_replayed),
    ];
    for (name, n) in rows {
        let _ = writeln!(out, "  {name:<22}{n}");
    }
    for i in &r.incidents {
        let before = severity_and_rule(i.severity_before, &i.rule_before);
        let after = severity_and_rule(i.severity_after, &i.rule_after);
        if !differs(i) {
            let _ = write!(out, "\n{} {:?}: unchanged, {after}", i.incident_id, i.title);
            continue;
        }
        let _ = write!(out, "\n{} {:?}\n  severity     {before} -> {after}", i.incident_id, i.title);
        let mut section = |name: &str, before: Vec<String>, after: Vec<String>| {
            if before == after {
                return;
            }
            let _ = write!(out, "\n  {name:<12} was:");
            if before.is_empty() {
                out.push_str(" none");
            }
            for line in before {
                let _ = write!(out, "\n    {line}");
            }
            out.push_str("\n               would be:");
            if after.is_empty() {
                out.push_str(" none");
            }
            for line in after {
                let _ = write!(out, "\n    {line}");
            }
        };
        if i.paging_differs {
            section("pages", list(&i.pages_before, page), list(&i.pages_after, page));
        }
        if i.escalations_differ {
            section("escalations", list(&i.escalations_before, escalation), list(&i.escalations_after, escalation));
        }
        section("SLO breaches", list(&i.breaches_before, breach), list(&i.breaches_after, breach));
        for ack in &i.acks_not_replayed {
            let _ = write!(out, "\n  not replayed: the acknowledgement by {ack} (the candidate never paged them)");
        }
        out.push('\n');
    }
    out.trim_end().to_owned()
}

fn report_json(r: &v1::PolicyTestReport) -> Value {
    let s = summary(r);
    let pages = |list: &[v1::ReplayedPage]| -> Vec<Value> {
        list.iter()
            .map(|p| {
                json!({"at": rfc3339(p.at.as_ref()), "responder": p.responder, "level": p.level,
                            "round": p.round, "reason": p.reason})
            })
            .collect()
    };
    let escalations = |list: &[v1::ReplayedEscalation]| -> Vec<Value> {
        list.iter()
            .map(|e| json!({"at": rfc3339(e.at.as_ref()), "from_level": e.from_level, "to_level": e.to_level}))
            .collect()
    };
    let breaches = |list: &[v1::ReplayedBreach]| -> Vec<Value> {
        list.iter().map(|b| json!({"slo": b.slo, "due_at": rfc3339(b.due_at.as_ref())})).collect()
    };
    let rule = |r: &str| if r.is_empty() { Value::Null } else { Value::from(r) };
    let incidents: Vec<Value> = r
        .incidents
        .iter()
        .map(|i| {
            json!({
                "incident_id": i.incident_id,
                "title": i.title,
                "severity_before": severity_name(i.severity_before),
                "rule_before": rule(&i.rule_before),
                "severity_after": severity_name(i.severity_after),
                "rule_after": rule(&i.rule_after),
                "severity_changed": i.severity_changed,
                "rule_changed": i.rule_changed,
                "paging_differs": i.paging_differs,
                "escalations_differ": i.escalations_differ,
                "breaches_new": i.breaches_new,
                "breaches_removed": i.breaches_removed,
                "pages_before": pages(&i.pages_before),
                "pages_after": pages(&i.pages_after),
                "escalations_before": escalations(&i.escalations_before),
                "escalations_after": escalations(&i.escalations_after),
                "breaches_before": breaches(&i.breaches_before),
                "breaches_after": breaches(&i.breaches_after),
                "acks_not_replayed": i.acks_not_replayed,
            })
        })
        .collect();
    json!({
        "from": rfc3339(r.from.as_ref()),
        "until": rfc3339(r.until.as_ref()),
        "summary": {
            "incidents": s.incidents,
            "severity_changed": s.severity_changed,
            "rule_changed": s.rule_changed,
            "paging_differs": s.paging_differs,
            "escalations_differ": s.escalations_differ,
            "breaches_new": s.breaches_new,
            "breaches_removed": s.breaches_removed,
            "acks_not_replayed": s.acks_not_replayed,
        },
        "incidents": incidents,
    })
}

/// One CSV field, quoted when it holds a comma, a quote or a line break.
fn field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) { format!("\"{}\"", text.replace('"', "\"\"")) } else { text.to_owned() }
}

fn csv(r: &v1::PolicyTestReport) -> String {
    let mut out = String::from(
        "incident_id,title,severity_before,rule_before,severity_after,rule_after,severity_changed,paging_differs,\
         escalations_differ,breaches_new,breaches_removed,pages_before,pages_after,acks_not_replayed\n",
    );
    for i in &r.incidents {
        let row = [
            i.incident_id.clone(),
            i.title.clone(),
            severity_name(i.severity_before).unwrap_or_default().to_owned(),
            i.rule_before.clone(),
            severity_name(i.severity_after).unwrap_or_default().to_owned(),
            i.rule_after.clone(),
            i.severity_changed.to_string(),
            i.paging_differs.to_string(),
            i.escalations_differ.to_string(),
            i.breaches_new.to_string(),
            i.breaches_removed.to_string(),
            list(&i.pages_before, page).join("; "),
            list(&i.pages_after, page).join("; "),
            i.acks_not_replayed.join("; "),
        ];
        out.push_str(&row.iter().map(|f| field(f)).collect::<Vec<_>>().join(","));
        out.push('\n');
    }
    out
}
