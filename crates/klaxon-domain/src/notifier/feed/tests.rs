//! Feed items from incidents, filters, and the coalescer's guarantees
//! (rate, last state wins, bounded memory), by example and by property.

use std::collections::BTreeMap;

use chrono::TimeDelta;
use expect_test::expect;
use proptest::prelude::*;

use super::*;
use crate::ids::ReportSource;
use crate::incident::{
    Change, CommanderAssigned, CustomerImpactRecorded, Declared, IncidentEvent, Reported, StatusUpdatePosted, evolve,
};

fn base() -> DateTime<Utc> {
    "2026-03-02T09:00:00Z".parse().unwrap()
}

fn actor(name: &str) -> ActorId {
    ActorId::new(name).unwrap()
}

fn customers(names: &[&str]) -> BTreeSet<CustomerId> {
    names.iter().map(|n| CustomerId::new(*n).unwrap()).collect()
}

/// INC-`n` on `service`, declared `severity` (if any), with `affected`
/// customers named.
fn incident(n: u64, service: Option<&str>, severity: Option<Severity>, affected: &[&str]) -> Incident {
    let id = IncidentId::from_number(n).unwrap();
    let event = |minutes: i64, by: &str, change| IncidentEvent {
        incident: id,
        at: base() + TimeDelta::minutes(minutes),
        by: actor(by),
        change,
    };
    let mut events = vec![event(
        0,
        "svc:alertmanager",
        Change::Reported(Reported {
            source: ReportSource::Alertmanager,
            reporter: actor("svc:alertmanager"),
            title: "Checkout is down".into(),
            description: "internal detail".into(),
            service: service.map(|s| ServiceName::new(s).unwrap()),
            customers: Default::default(),
            labels: Default::default(),
            dedup_key: None,
            started_at: None,
            catalogued: None,
        }),
    )];
    if let Some(severity) = severity {
        events.push(event(1, "maria", Change::Declared(Declared { severity, catalogued: None })));
    }
    if !affected.is_empty() {
        events.push(event(
            2,
            "maria",
            Change::CustomerImpactRecorded(CustomerImpactRecorded {
                customers_affected: u32::try_from(affected.len()).unwrap() * 10,
                customers: customers(affected),
                multi_customer: affected.len() > 1,
                summary: "Card payments fail".into(),
            }),
        ));
    }
    events.iter().fold(None, evolve).unwrap()
}

#[test]
fn a_feed_item_shows_what_executives_may_read() {
    let id = IncidentId::from_number(7).unwrap();
    let at = |minutes| base() + TimeDelta::minutes(minutes);
    let event = |minutes, by: &str, change| IncidentEvent { incident: id, at: at(minutes), by: actor(by), change };
    let update = |audience, text: &str| Change::StatusUpdatePosted(StatusUpdatePosted { audience, text: text.into() });
    let events = [
        event(
            0,
            "svc:alertmanager",
            Change::Reported(Reported {
                source: ReportSource::Alertmanager,
                reporter: actor("svc:alertmanager"),
                title: "Checkout is down".into(),
                description: "internal detail".into(),
                service: Some(ServiceName::new("payments").unwrap()),
                customers: customers(&["acme"]),
                labels: [("alertname".to_owned(), "CheckoutErrors".to_owned())].into(),
                dedup_key: None,
                started_at: None,
                catalogued: None,
            }),
        ),
        event(1, "maria", Change::Declared(Declared { severity: Severity::Sev1, catalogued: None })),
        event(2, "maria", Change::CommanderAssigned(CommanderAssigned { commander: actor("ana"), previous: None })),
        event(3, "ana", update(Audience::Internal, "rolling back build 4711")),
        event(4, "ana", update(Audience::Executive, "Card payments fail in the EU; rollback under way.")),
        event(5, "ana", update(Audience::CompanyWide, "Checkout is degraded for EU customers.")),
        event(6, "ana", update(Audience::Customer, "Some card payments fail; we are working on it.")),
    ];
    let state = events.iter().fold(None, evolve).unwrap();
    let item = FeedItem::of(&state, at(6), Some(at(34)));
    expect![[r#"
        {
          "incident": "INC-7",
          "title": "Checkout is down",
          "severity": "sev1",
          "status": "declared",
          "commander": "ana",
          "customers_affected": 1,
          "multi_customer": false,
          "customers": [
            "acme"
          ],
          "impact_summary": null,
          "latest_executive_update": {
            "text": "Card payments fail in the EU; rollback under way.",
            "by": "ana",
            "at": "2026-03-02T09:04:00Z"
          },
          "next_update_due": "2026-03-02T09:34:00Z",
          "service": "payments",
          "at": "2026-03-02T09:06:00Z",
          "company_wide_post": "Checkout is degraded for EU customers.",
          "latest_customer_update": {
            "text": "Some card payments fail; we are working on it.",
            "by": "ana",
            "at": "2026-03-02T09:06:00Z"
          },
          "reported_at": "2026-03-02T09:00:00Z",
          "declared_at": "2026-03-02T09:01:00Z",
          "resolved_at": null,
          "roles": {}
        }"#]]
    .assert_eq(&serde_json::to_string_pretty(&item).unwrap());
}

#[test]
fn filters_match_by_severity_service_and_customer() {
    let item =
        |n, service, severity, affected: &[&str]| FeedItem::of(&incident(n, service, severity, affected), base(), None);
    let items = [
        item(1, Some("payments"), Some(Severity::Sev1), &["acme"]),
        item(2, Some("search"), Some(Severity::Sev2), &["acme", "globex"]),
        item(3, None, Some(Severity::Sev3), &[]),
        item(4, Some("payments"), None, &[]),
        item(5, Some("search"), Some(Severity::Sev1), &["initech"]),
    ];
    let services = |names: &[&str]| names.iter().map(|n| ServiceName::new(*n).unwrap()).collect::<Vec<_>>();
    let named = |names: &[&str]| customers(names).into_iter().collect::<Vec<_>>();
    let filters = [
        ("default", FeedFilter::default()),
        ("sev1+", FeedFilter { min_severity: Some(Severity::Sev1), ..Default::default() }),
        ("sev2+", FeedFilter { min_severity: Some(Severity::Sev2), ..Default::default() }),
        ("payments", FeedFilter { services: services(&["payments"]), ..Default::default() }),
        ("payments+search", FeedFilter { services: services(&["payments", "search"]), ..Default::default() }),
        ("acme", FeedFilter { customers: named(&["acme"]), ..Default::default() }),
        ("globex|initech", FeedFilter { customers: named(&["globex", "initech"]), ..Default::default() }),
        (
            "payments&acme",
            FeedFilter { services: services(&["payments"]), customers: named(&["acme"]), ..Default::default() },
        ),
        (
            "payments+company-wide",
            FeedFilter { services: services(&["payments"]), include_company_wide: true, ..Default::default() },
        ),
        (
            "sev1+ payments+company-wide",
            FeedFilter {
                min_severity: Some(Severity::Sev1),
                services: services(&["payments"]),
                include_company_wide: true,
                ..Default::default()
            },
        ),
    ];
    let got: Vec<String> = filters
        .iter()
        .map(|(name, filter)| {
            let matching: Vec<String> =
                items.iter().filter(|i| filter.matches(i)).map(|i| i.incident.to_string()).collect();
            format!("{name}: {}", matching.join(" "))
        })
        .collect();
    expect![[r#"
        [
            "default: INC-1 INC-2 INC-3 INC-4 INC-5",
            "sev1+: INC-1 INC-5",
            "sev2+: INC-1 INC-2 INC-5",
            "payments: INC-1 INC-4",
            "payments+search: INC-1 INC-2 INC-4 INC-5",
            "acme: INC-1 INC-2",
            "globex|initech: INC-2 INC-5",
            "payments&acme: INC-1",
            "payments+company-wide: INC-1 INC-2 INC-4",
            "sev1+ payments+company-wide: INC-1",
        ]
    "#]]
    .assert_debug_eq(&got);
}

#[test]
fn filters_have_limits() {
    let service = ServiceName::new("payments").unwrap();
    let too_many = FeedFilter { services: vec![service; FILTER_SERVICES_MAX + 1], ..Default::default() };
    assert_eq!(
        too_many.check().unwrap_err().to_string(),
        format!("services is too large: {} > {FILTER_SERVICES_MAX}", FILTER_SERVICES_MAX + 1)
    );
    let customer = CustomerId::new("acme").unwrap();
    let too_many = FeedFilter { customers: vec![customer; FILTER_CUSTOMERS_MAX + 1], ..Default::default() };
    assert!(too_many.check().is_err());
    assert_eq!(FeedFilter::default().check(), Ok(()));
}

// ----- coalescing -------------------------------------------------------------

/// The item of INC-`n` whose title is `version`, so items are told apart.
fn version(n: u64, version: &str) -> FeedItem {
    let mut item = FeedItem::of(&incident(n, None, Some(Severity::Sev1), &[]), base(), None);
    item.title = version.to_owned();
    item
}

fn ms(n: u64) -> DateTime<Utc> {
    base() + Duration::from_millis(n)
}

/// Runs `script` (`<ms> offer <incident> <version>` or `<ms> due`) against
/// a 1000 ms coalescer and returns what was emitted when.
fn run(script: &str) -> String {
    let mut coalescer = Coalescer::new(Duration::from_secs(1));
    let mut out = String::new();
    for line in script.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let words: Vec<&str> = line.split_whitespace().collect();
        let now = ms(words[0].parse().unwrap());
        let emitted = match words[1] {
            "offer" => coalescer.offer(version(words[2].parse().unwrap(), words[3]), now).into_iter().collect(),
            "due" => coalescer.due(now),
            other => panic!("unknown command {other}"),
        };
        let shown: Vec<String> = emitted.iter().map(|i| format!("{} {}", i.incident, i.title)).collect();
        let next = coalescer.next_due().map_or("-".to_owned(), |t| (t - base()).num_milliseconds().to_string());
        out.push_str(&format!(
            "{line:<22} -> [{}] pending {} tracked {} next {next}\n",
            shown.join(", "),
            coalescer.pending(),
            coalescer.tracked()
        ));
    }
    out
}

#[test]
fn a_burst_emits_its_first_and_last_state() {
    expect![[r#"
        0 offer 1 a            -> [INC-1 a] pending 0 tracked 1 next -
        100 offer 1 b          -> [] pending 1 tracked 1 next 1000
        200 offer 2 x          -> [INC-2 x] pending 1 tracked 2 next 1000
        900 offer 1 c          -> [] pending 1 tracked 2 next 1000
        999 due                -> [] pending 1 tracked 2 next 1000
        1000 due               -> [INC-1 c] pending 0 tracked 2 next -
        1500 offer 1 d         -> [] pending 1 tracked 2 next 2000
        1999 due               -> [] pending 1 tracked 1 next 2000
        2000 due               -> [INC-1 d] pending 0 tracked 1 next -
        2100 offer 2 y         -> [INC-2 y] pending 0 tracked 2 next -
        3000 due               -> [] pending 0 tracked 1 next -
        3300 due               -> [] pending 0 tracked 0 next -
    "#]]
    .assert_eq(&run("
        0 offer 1 a
        100 offer 1 b
        200 offer 2 x
        900 offer 1 c
        999 due
        1000 due
        1500 offer 1 d
        1999 due
        2000 due
        2100 offer 2 y
        3000 due
        3300 due
    "));
}

#[test]
fn an_offer_after_the_interval_supersedes_a_pending_item() {
    expect![[r#"
        0 offer 1 a            -> [INC-1 a] pending 0 tracked 1 next -
        500 offer 1 b          -> [] pending 1 tracked 1 next 1000
        1200 offer 1 c         -> [INC-1 c] pending 0 tracked 1 next -
        2200 due               -> [] pending 0 tracked 0 next -
        2300 due               -> [] pending 0 tracked 0 next -
    "#]]
    .assert_eq(&run("
        0 offer 1 a
        500 offer 1 b
        1200 offer 1 c
        2200 due
        2300 due
    "));
}

proptest! {
    /// Random bursts of updates to a few incidents at random times, with
    /// `due` called at random moments: per incident, emissions are at least
    /// an interval apart and in offer order, memory stays bounded, and after
    /// a final `due` far enough ahead the last emitted item of every
    /// incident is the last one offered.
    #[test]
    fn bursts_are_thinned_but_their_last_state_is_emitted(
        interval_ms in 1_u64..2_000,
        ops in prop::collection::vec((1_u64..=4, 0_u64..1_500, any::<bool>()), 1..200),
    ) {
        let interval = Duration::from_millis(interval_ms);
        let mut coalescer = Coalescer::new(interval);
        let mut now = base();
        let mut offered: BTreeMap<IncidentId, Vec<String>> = BTreeMap::new();
        let mut emitted: BTreeMap<IncidentId, Vec<(DateTime<Utc>, String)>> = BTreeMap::new();
        let mut emit = |items: Vec<FeedItem>, at: DateTime<Utc>| {
            for item in items {
                emitted.entry(item.incident).or_default().push((at, item.title));
            }
        };
        for (i, (n, gap_ms, call_due)) in ops.iter().enumerate() {
            now += Duration::from_millis(*gap_ms);
            let item = version(*n, &format!("v{i}"));
            offered.entry(item.incident).or_default().push(item.title.clone());
            emit(coalescer.offer(item, now).into_iter().collect(), now);
            if *call_due {
                emit(coalescer.due(now), now);
            }
            prop_assert!(coalescer.pending() <= coalescer.tracked());
            prop_assert!(coalescer.tracked() <= 4);
            if let Some(next) = coalescer.next_due() {
                prop_assert!(next > now || !*call_due, "due left behind an item ready at {next}");
            }
        }
        let end = now + interval;
        emit(coalescer.due(end), end);
        prop_assert_eq!(coalescer.pending(), 0);
        prop_assert_eq!(coalescer.next_due(), None);
        for (incident, versions) in &offered {
            let emitted = &emitted[incident];
            for pair in emitted.windows(2) {
                prop_assert!(pair[1].0 >= pair[0].0 + interval, "{incident}: {:?} then {:?}", pair[0], pair[1]);
            }
            let order: Vec<usize> =
                emitted.iter().map(|(_, v)| versions.iter().position(|o| o == v).unwrap()).collect();
            prop_assert!(order.windows(2).all(|w| w[0] < w[1]), "{incident}: emitted out of order {order:?}");
            prop_assert_eq!(&emitted.last().unwrap().1, versions.last().unwrap());
        }
        prop_assert_eq!(coalescer.due(end + interval), []);
        prop_assert_eq!(coalescer.tracked(), 0, "idle incidents are forgotten");
    }
}
