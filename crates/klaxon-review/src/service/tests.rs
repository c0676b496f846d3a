//! The compact trend rows evicted incidents leave behind: the facts a row
//! gives back (and its saved form) are exactly those its summary gave.

use chrono::{DateTime, TimeDelta, Utc};
use klaxon_domain::catalog::{ServiceCatalog, ServiceCatalogConfig, ServiceConfig};
use klaxon_domain::ids::{IncidentId, Severity};
use klaxon_domain::review::{IncidentFacts, IncidentMetrics, SloBreaches};

use klaxon_reactor::Row;

use super::{TrendRow, TrendRows};

fn catalog() -> ServiceCatalog {
    let service = ServiceConfig {
        name: "payments".into(),
        team: "money".into(),
        tier: 1,
        runbook: None,
        public_name: None,
        escalation_policy: "p".into(),
    };
    ServiceCatalogConfig(vec![service]).validate("services").unwrap()
}

/// Facts with sub-second times and durations, every count different, and
/// the two noise marks apart.
fn facts(n: u64, service: Option<&str>, catalog: &ServiceCatalog) -> IncidentFacts {
    let at: DateTime<Utc> = "2026-03-01T10:00:00.123456789Z".parse().unwrap();
    let service = service.map(|s| s.parse().unwrap());
    let ms = |m: i64| Some(TimeDelta::milliseconds(m) + TimeDelta::nanoseconds(7));
    IncidentFacts {
        id: IncidentId::from_number(n).unwrap(),
        severity: (n % 2 == 0).then_some(Severity::Sev2),
        team: service.as_ref().and_then(|s| catalog.team(s)).map(str::to_owned),
        service,
        first_reported_at: at + TimeDelta::seconds(n as i64),
        metrics: IncidentMetrics {
            time_to_detect: ms(240_001),
            time_to_acknowledge: None,
            time_to_assign: ms(0),
            time_to_mitigate: ms(600_500),
            time_to_resolve: (n % 3 != 0).then(|| TimeDelta::days(3)),
            escalations: 1,
            handoffs: 2,
            slo_breaches: SloBreaches { ack: 3, assign: 4, update_cadence: 5, resolve: 6 },
            pages: 7,
            noise: n % 2 == 1,
            pulled_in_pages: 8,
        },
        noise: n % 3 == 1,
    }
}

#[test]
fn a_row_gives_back_the_facts_it_was_made_of_also_once_saved_and_loaded() {
    let catalog = catalog();
    let mut rows = TrendRows::default();
    let all: Vec<IncidentFacts> = [Some("payments"), None, Some("search"), Some("payments"), Some("search"), None]
        .into_iter()
        .zip(1..)
        .map(|(service, n)| facts(n, service, &catalog))
        .collect();
    // Each row through its bytes in the rows table, and the interned
    // services through the state's saved form.
    let mut encoded = Vec::new();
    for f in &all {
        let row = rows.row(f, None).expect("fits");
        let mut bytes = vec![0u8; TrendRow::LEN];
        row.encode(&mut bytes);
        assert_eq!(TrendRow::decode(&bytes), Some(row));
        encoded.push((f.id, bytes));
    }
    assert_eq!(rows.services.len(), 2, "each service interned once");
    let back = |rows: &TrendRows| {
        let facts: Vec<IncidentFacts> =
            encoded.iter().map(|(id, bytes)| rows.facts(*id, &TrendRow::decode(bytes).unwrap(), &catalog)).collect();
        facts
    };
    assert_eq!(back(&rows), all);
    let saved = serde_json::to_string(&rows).unwrap();
    let loaded: TrendRows = serde_json::from_str(&saved).unwrap();
    assert_eq!(back(&loaded), all, "{saved}");
    assert!(saved.len() < 120, "the state keeps no row: {saved}");
}

#[test]
fn bytes_that_are_no_row_do_not_decode() {
    let catalog = catalog();
    let row = TrendRows::default().row(&facts(2, None, &catalog), None).unwrap();
    let mut bytes = vec![0u8; TrendRow::LEN];
    row.encode(&mut bytes);
    bytes[0] = 9;
    assert_eq!(TrendRow::decode(&bytes), None, "no fifth severity");
    assert_eq!(TrendRow::decode(&bytes[..10]), None, "short");
}

#[test]
fn facts_a_row_cannot_hold_exactly_are_refused() {
    let catalog = catalog();
    let mut f = facts(1, Some("payments"), &catalog);
    f.metrics.time_to_resolve = Some(TimeDelta::days(365 * 300));
    assert_eq!(TrendRows::default().row(&f, None), None, "a duration past i64 nanoseconds keeps its summary");
}

/// A row keeps the team the incident's events recorded: given back as it
/// was, whatever the catalog says at query time, also through its bytes and
/// once the state is saved and loaded; a row without one takes the
/// catalog's of the moment.
#[test]
fn a_row_keeps_its_recorded_team_and_one_without_takes_the_catalog_in_effect() {
    let catalog = catalog();
    let mut rows = TrendRows::default();
    let mut recorded = facts(1, Some("payments"), &catalog);
    recorded.team = Some("checkout".into());
    let unrecorded = facts(2, Some("payments"), &catalog);
    let mut encoded = Vec::new();
    for (f, team) in [(&recorded, Some("checkout")), (&unrecorded, None)] {
        let mut bytes = vec![0u8; TrendRow::LEN];
        rows.row(f, team).expect("fits").encode(&mut bytes);
        encoded.push((f.id, bytes));
    }
    let moved = ServiceCatalogConfig(vec![ServiceConfig {
        name: "payments".into(),
        team: "ledger".into(),
        tier: 2,
        runbook: None,
        public_name: None,
        escalation_policy: "p".into(),
    }])
    .validate("services")
    .unwrap();
    let loaded: TrendRows = serde_json::from_str(&serde_json::to_string(&rows).unwrap()).unwrap();
    for rows in [&rows, &loaded] {
        let teams: Vec<Option<String>> =
            encoded.iter().map(|(id, bytes)| rows.facts(*id, &TrendRow::decode(bytes).unwrap(), &moved).team).collect();
        assert_eq!(teams, [Some("checkout".to_owned()), Some("ledger".to_owned())]);
    }
}
