//! The status pages' HTML: pure functions of feed items, the catalog and
//! the time. Every text that comes from an incident goes through
//! [`escape`]; nothing else builds markup.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use klaxon_domain::catalog::ServiceCatalog;
use klaxon_domain::incident::Status;
use klaxon_domain::notifier::FeedItem;
use uuid::Uuid;

/// Escapes the five characters HTML treats specially, for text and
/// attribute values alike: the e-mail channel's escaping, the same rule.
pub use klaxon_channels::escape_html as escape;

/// `12 min ago`, `in 3 h`, `just now`: the time from `now` to `at`, as the
/// page's script also writes it.
pub fn relative(at: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let seconds = (at - now).num_seconds();
    let span = seconds.unsigned_abs();
    let amount = if span < 60 {
        return "just now".to_owned();
    } else if span < 3_600 {
        format!("{} min", span / 60)
    } else if span < 86_400 {
        format!("{} h {} min", span / 3_600, span % 3_600 / 60)
    } else {
        format!("{} d {} h", span / 86_400, span % 86_400 / 3_600)
    };
    if seconds < 0 { format!("{amount} ago") } else { format!("in {amount}") }
}

fn time(at: DateTime<Utc>, now: DateTime<Utc>) -> String {
    format!(
        "<time datetime=\"{}\" title=\"{}\">{}</time>",
        at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        at.format("%Y-%m-%d %H:%M UTC"),
        relative(at, now)
    )
}

/// The key that orders incidents on a page: most severe first, then the
/// oldest first.
fn order(item: &FeedItem) -> String {
    let severity = item.severity.map_or(9, |s| s.number());
    let since = item.declared_at.unwrap_or(item.reported_at).timestamp();
    format!("{severity}-{since:012}")
}

fn status_word(status: Status) -> &'static str {
    match status {
        Status::Reported => "Reported",
        Status::Declared => "Declared",
        Status::Mitigated => "Mitigated",
        Status::Resolved => "Resolved",
        Status::Closed => "Closed",
    }
}

/// Whether the item leaves the executives' page: closed incidents do.
pub fn leaves_executive_page(item: &FeedItem) -> bool {
    item.status == Status::Closed
}

/// One incident as executives see it: an `<article>` whose id is the
/// incident's, with `data-order` for the script to place it.
pub fn executive_incident(item: &FeedItem, now: DateTime<Utc>) -> String {
    let severity = item.severity.map_or("unassessed".to_owned(), |s| format!("sev{}", s.number()));
    let badge = item.severity.map_or("Unassessed".to_owned(), |s| s.to_string());
    let status = item.status.as_str();
    let mut out = String::new();
    let _ = write!(
        out,
        "<article class=\"incident {severity} {status}\" id=\"{id}\" data-order=\"{order}\">\
         <div class=\"head\"><span class=\"badge {severity}\">{badge}</span>\
         <span class=\"status {status}\">{word}</span><span class=\"id\">{id}</span></div>\
         <h2>{title}</h2><dl class=\"facts\">",
        id = escape(&item.incident.to_string()),
        order = order(item),
        word = status_word(item.status),
        title = escape(&item.title),
    );
    let commander = match &item.commander {
        Some(c) => escape(c.as_ref()),
        None => "<span class=\"warn\">none yet</span>".to_owned(),
    };
    fact(&mut out, "Commander", &commander);
    let mut customers = match item.customers_affected {
        0 => "none known".to_owned(),
        1 => "1".to_owned(),
        n => n.to_string(),
    };
    if item.multi_customer {
        customers.push_str(" <span class=\"tag\">multi-customer</span>");
    }
    fact(&mut out, "Customers affected", &customers);
    if let Some(service) = &item.service {
        fact(&mut out, "Service", &escape(service.as_ref()));
    }
    match item.declared_at {
        Some(at) => fact(&mut out, "Declared", &time(at, now)),
        None => fact(&mut out, "Reported", &time(item.reported_at, now)),
    }
    if let Some(due) = item.next_update_due {
        let overdue = if due < now { " <span class=\"warn\">overdue</span>" } else { "" };
        fact(&mut out, "Next update due", &format!("{}{overdue}", time(due, now)));
    }
    out.push_str("</dl>");
    match &item.latest_executive_update {
        Some(update) => {
            let _ = write!(
                out,
                "<blockquote class=\"update\"><p>{}</p><footer>{} · {}</footer></blockquote>",
                escape(&update.text),
                escape(update.by.as_ref()),
                time(update.at, now)
            );
        }
        None => out.push_str("<p class=\"muted\">No executive update yet.</p>"),
    }
    out.push_str("</article>");
    out
}

fn fact(out: &mut String, name: &str, value_html: &str) {
    let _ = write!(out, "<div><dt>{name}</dt><dd>{value_html}</dd></div>");
}

/// The executives' list of open incidents, most severe first.
pub fn executive_list(items: &[FeedItem], now: DateTime<Utc>) -> String {
    let mut items: Vec<&FeedItem> = items.iter().filter(|i| !leaves_executive_page(i)).collect();
    items.sort_by_key(|i| order(i));
    items.iter().map(|i| executive_incident(i, now)).collect()
}

/// Whether customers see the incident: it affects customers and someone
/// wrote an update for them.
pub fn is_public(item: &FeedItem) -> bool {
    let affects_customers = item.customers_affected > 0 || item.multi_customer || !item.customers.is_empty();
    affects_customers && item.latest_customer_update.is_some()
}

/// An id for the public page that does not reveal the incident's number.
pub fn public_id(item: &FeedItem) -> String {
    let uuid = Uuid::new_v5(&klaxon_domain::ids::KLAXON_NAMESPACE, format!("public/{}", item.incident).as_bytes());
    format!("p-{}", &uuid.simple().to_string()[..16])
}

/// One incident as customers see it: the public name of its service (if
/// the catalog gives one), its impact and phase in public words, and the
/// latest customer update. No title, id, person, customer or internal
/// service name.
pub fn public_incident(item: &FeedItem, catalog: &ServiceCatalog, now: DateTime<Utc>) -> String {
    let service = item.service.as_ref().and_then(|s| catalog.public_name(s));
    let heading = match service {
        Some(name) => escape(name),
        None => "Service disruption".to_owned(),
    };
    let (impact_class, impact) = match item.severity.map(|s| s.number()) {
        Some(1) => ("major", "Major outage"),
        Some(2) => ("partial", "Partial outage"),
        _ => ("minor", "Degraded performance"),
    };
    let (phase_class, phase) = match item.status {
        Status::Reported | Status::Declared => ("investigating", "Investigating"),
        Status::Mitigated => ("monitoring", "Mitigated, monitoring"),
        Status::Resolved | Status::Closed => ("resolved", "Resolved"),
    };
    let began = item.declared_at.unwrap_or(item.reported_at);
    let mut out = String::new();
    let _ = write!(
        out,
        "<article class=\"incident {impact_class} {phase_class}\" id=\"{id}\" data-order=\"{order}\">\
         <div class=\"head\"><span class=\"badge {impact_class}\">{impact}</span>\
         <span class=\"status {phase_class}\">{phase}</span></div><h2>{heading}</h2>",
        id = public_id(item),
        order = order(item),
    );
    if let Some(update) = &item.latest_customer_update {
        let _ = write!(
            out,
            "<blockquote class=\"update\"><p>{}</p><footer>Updated {}</footer></blockquote>",
            escape(&update.text),
            time(update.at, now)
        );
    }
    match item.resolved_at.filter(|_| matches!(item.status, Status::Resolved | Status::Closed)) {
        Some(resolved) => {
            let _ = write!(
                out,
                "<p class=\"muted\">Began {}, resolved {}</p></article>",
                time(began, now),
                time(resolved, now)
            );
        }
        None => {
            let _ = write!(out, "<p class=\"muted\">Began {}</p></article>", time(began, now));
        }
    }
    out
}

/// The incidents customers see, most severe first.
pub fn public_list(items: &[FeedItem], catalog: &ServiceCatalog, now: DateTime<Utc>) -> String {
    let mut items: Vec<&FeedItem> = items.iter().filter(|i| is_public(i)).collect();
    items.sort_by_key(|i| order(i));
    items.iter().map(|i| public_incident(i, catalog, now)).collect()
}

/// What every page shares: the document head, the header bar and the
/// assets. `body` is markup built here.
pub fn page(title: &str, kind: &str, header_right: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"referrer\" content=\"same-origin\">\
         <title>{title}</title><link rel=\"stylesheet\" href=\"/status/assets/status.css\">\
         <script src=\"/status/assets/status.js\" defer></script></head>\
         <body class=\"{kind}\"><header class=\"bar\"><div class=\"brand\"><span class=\"dot\"></span>{title}</div>\
         {header_right}</header><main>{body}</main></body></html>\n",
        title = escape(title),
    )
}

/// The executives' page with the incidents of `items`.
pub fn executive_page(title: &str, principal: &str, items: &[FeedItem], now: DateTime<Utc>) -> String {
    let list = executive_list(items, now);
    let header = format!(
        "<form class=\"signout\" method=\"post\" action=\"/status/sign-out\">\
         <span class=\"who\">{}</span><button type=\"submit\">Sign out</button></form>",
        escape(principal)
    );
    let body = format!(
        "<div class=\"toolbar\"><h1>Open incidents</h1><span id=\"live\" class=\"live connecting\">Connecting…</span></div>\
         <p id=\"summary\" class=\"summary\"></p>\
         <section id=\"incidents\" class=\"incidents\" data-events=\"/status/events\">{list}</section>\
         <p class=\"empty\" id=\"empty\">No open incidents.</p>"
    );
    page(title, "executive", &header, &body)
}

/// The customers' page.
pub fn public_page(title: &str, items: &[FeedItem], catalog: &ServiceCatalog, now: DateTime<Utc>) -> String {
    let list = public_list(items, catalog, now);
    let body = format!(
        "<div class=\"toolbar\"><h1>Current status</h1><span id=\"live\" class=\"live connecting\">Connecting…</span></div>\
         <section id=\"incidents\" class=\"incidents\" data-events=\"/status/public/events\">{list}</section>\
         <p class=\"empty ok\" id=\"empty\">All systems operational.</p>"
    );
    page(title, "public", "", &body)
}

/// The sign-in form, with `problem` (plain text) above it when the last
/// attempt failed.
pub fn sign_in_page(title: &str, problem: Option<&str>) -> String {
    let problem = problem.map_or(String::new(), |p| format!("<p class=\"problem\" role=\"alert\">{}</p>", escape(p)));
    let body = format!(
        "<section class=\"signin\"><h1>Sign in</h1>\
         <p>Paste your Klaxon token to follow open incidents live. You stay signed in on this browser until you sign out, \
         the session ends or the token is revoked.</p>{problem}\
         <form method=\"post\" action=\"/status/sign-in\" id=\"signin\">\
         <label for=\"token\">Token</label>\
         <input id=\"token\" name=\"token\" type=\"password\" autocomplete=\"current-password\" required \
         spellcheck=\"false\" placeholder=\"klx_…\">\
         <button type=\"submit\">Sign in</button></form></section>"
    );
    page(title, "signin-page", "", &body)
}

#[cfg(test)]
mod tests;
