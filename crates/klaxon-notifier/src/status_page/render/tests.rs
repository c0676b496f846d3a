//! The pages' markup: escaping, what each audience sees, order.

use chrono::{DateTime, TimeDelta, Utc};
use klaxon_domain::catalog::{ServiceCatalog, ServiceCatalogConfig};
use klaxon_domain::ids::{ActorId, IncidentId, ServiceName, Severity};
use klaxon_domain::incident::{Status, Update};
use klaxon_domain::notifier::FeedItem;

use super::*;

fn now() -> DateTime<Utc> {
    "2026-03-02T10:00:00Z".parse().unwrap()
}

fn update(text: &str, by: &str, minutes_ago: i64) -> Update {
    Update { text: text.into(), by: ActorId::new(by).unwrap(), at: now() - TimeDelta::minutes(minutes_ago) }
}

fn item(n: u64, severity: Option<Severity>) -> FeedItem {
    FeedItem {
        incident: IncidentId::from_number(n).unwrap(),
        title: "ledger-db-7 <b>failover</b> & replica lag".into(),
        severity,
        status: Status::Declared,
        commander: Some(ActorId::new("ana").unwrap()),
        customers_affected: 12,
        multi_customer: true,
        customers: ["acme".parse().unwrap()].into(),
        impact_summary: Some("internal impact notes".into()),
        latest_executive_update: Some(update("<script>alert('x')</script> rollback under way", "ana", 5)),
        next_update_due: Some(now() + TimeDelta::minutes(25)),
        service: Some(ServiceName::new("checkout-api").unwrap()),
        at: now(),
        company_wide_post: Some("company-wide text".into()),
        latest_customer_update: Some(update("Some card payments fail <img src=x onerror=alert(1)>.", "ana", 3)),
        reported_at: now() - TimeDelta::minutes(40),
        declared_at: Some(now() - TimeDelta::minutes(35)),
        resolved_at: None,
        roles: Default::default(),
    }
}

fn catalog() -> ServiceCatalog {
    let config: ServiceCatalogConfig = serde_json::from_value(serde_json::json!([
        { "name": "checkout-api", "team": "payments", "tier": 1, "escalation_policy": "p", "public_name": "Checkout" },
    ]))
    .unwrap();
    config.validate("services").unwrap()
}

#[test]
fn every_text_is_escaped() {
    assert_eq!(escape(r#"<a href="x">'&'</a>"#), "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;");
    let html = executive_incident(&item(7, Some(Severity::Sev1)), now());
    assert!(html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; rollback under way"), "{html}");
    assert!(html.contains("ledger-db-7 &lt;b&gt;failover&lt;/b&gt; &amp; replica lag"), "{html}");
    assert!(!html.contains("<script") && !html.contains("<b>"), "{html}");
    let public = public_incident(&item(7, Some(Severity::Sev1)), &catalog(), now());
    assert!(public.contains("Some card payments fail &lt;img src=x onerror=alert(1)&gt;."), "{public}");
    assert!(!public.contains("<img"), "{public}");
}

#[test]
fn executives_see_status_commander_customers_update_due_and_age() {
    let html = executive_incident(&item(7, Some(Severity::Sev1)), now());
    for expected in [
        "id=\"INC-7\"",
        "<span class=\"badge sev1\">SEV1</span>",
        "Declared",
        "<dd>ana</dd>",
        "12 <span class=\"tag\">multi-customer</span>",
        "<dd>checkout-api</dd>",
        ">35 min ago</time>",
        ">in 25 min</time>",
        ">5 min ago</time>",
    ] {
        assert!(html.contains(expected), "{expected} missing from {html}");
    }
    let overdue = FeedItem { next_update_due: Some(now() - TimeDelta::minutes(2)), ..item(8, Some(Severity::Sev1)) };
    assert!(executive_incident(&overdue, now()).contains("overdue"));
}

#[test]
fn customers_see_only_the_customer_update_the_public_name_and_public_words() {
    let public = public_list(&[item(7, Some(Severity::Sev1))], &catalog(), now());
    for expected in ["<h2>Checkout</h2>", "Major outage", "Investigating", "Updated <time", "Began <time"] {
        assert!(public.contains(expected), "{expected} missing from {public}");
    }
    for internal in [
        "INC-7",
        "ledger-db-7",
        "failover",
        "checkout-api",
        "ana",
        "acme",
        "rollback",
        "internal impact notes",
        "company-wide text",
        "SEV1",
    ] {
        assert!(!public.contains(internal), "{internal} leaked into {public}");
    }
}

#[test]
fn the_public_page_lists_only_customer_facing_incidents_with_a_customer_update() {
    let catalog = catalog();
    let no_update = FeedItem { latest_customer_update: None, ..item(1, Some(Severity::Sev1)) };
    let no_customers = FeedItem {
        customers_affected: 0,
        multi_customer: false,
        customers: Default::default(),
        ..item(2, Some(Severity::Sev1))
    };
    let unnamed = FeedItem { service: Some(ServiceName::new("ledger").unwrap()), ..item(3, Some(Severity::Sev2)) };
    let html = public_list(&[no_update, no_customers, unnamed.clone()], &catalog, now());
    assert_eq!(html.matches("<article").count(), 1, "{html}");
    assert!(html.contains("<h2>Service disruption</h2>"), "an uncatalogued name is not shown: {html}");
    assert!(html.contains(&public_id(&unnamed)) && !html.contains("INC-3"));
}

#[test]
fn the_most_severe_come_first_and_closed_incidents_leave() {
    let closed = FeedItem { status: Status::Closed, ..item(4, Some(Severity::Sev1)) };
    let items = [item(1, Some(Severity::Sev3)), item(2, None), item(3, Some(Severity::Sev1)), closed];
    let html = executive_list(&items, now());
    let at = |id: &str| html.find(&format!("id=\"{id}\"")).unwrap_or(usize::MAX);
    assert!(at("INC-3") < at("INC-1") && at("INC-1") < at("INC-2"), "{html}");
    assert!(!html.contains("INC-4"));
}

#[test]
fn relative_times_read_naturally() {
    let t = |minutes| now() + TimeDelta::minutes(minutes);
    assert_eq!(relative(now(), now()), "just now");
    assert_eq!(relative(t(-14), now()), "14 min ago");
    assert_eq!(relative(t(90), now()), "in 1 h 30 min");
    assert_eq!(relative(t(-60 * 49), now()), "2 d 1 h ago");
}
