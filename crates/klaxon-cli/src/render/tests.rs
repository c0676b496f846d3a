use std::collections::HashMap;

use expect_test::{Expect, expect};
use klaxon_proto::v1;

use super::{bridge_message, reply};
use crate::commands::{Reply, Rpc};

/// 2025-03-01T10:00:00Z plus `minutes`.
fn at(minutes: i64) -> Option<prost_types::Timestamp> {
    Some(prost_types::Timestamp { seconds: 1_740_823_200 + minutes * 60, nanos: 0 })
}

/// A declared SEV1 with everything filled in.
fn incident() -> v1::Incident {
    v1::Incident {
        id: "INC-7".into(),
        version: 12,
        status: v1::IncidentStatus::Declared as i32,
        title: "Checkout returns 500 for EU customers".into(),
        description: "Error rate above 20% since the 09:55 deploy.".into(),
        service: "checkout".into(),
        severity: v1::Severity::Sev1 as i32,
        severity_overridden: true,
        commander: "alice".into(),
        pending_handoff: Some(v1::Handoff { from: "alice".into(), to: "bob".into(), requested_at: at(40) }),
        roles: vec![
            v1::RoleHolders { role: v1::IncidentRole::CommunicationsLead as i32, people: vec!["carol".into()] },
            v1::RoleHolders { role: v1::IncidentRole::Scribe as i32, people: vec!["dave".into(), "erin".into()] },
        ],
        participants: vec!["alice".into(), "carol".into(), "dave".into()],
        customers_affected: 1200,
        customers: vec!["acme".into(), "globex".into()],
        multi_customer: true,
        impact_summary: "EU checkout failing".into(),
        dedup_key: "checkout-5xx".into(),
        report_count: 3,
        source: v1::ReportSource::Pagerduty as i32,
        reporter: "pd-bridge".into(),
        labels: HashMap::from([("region".into(), "eu".into()), ("env".into(), "prod".into())]),
        latest_updates: vec![v1::StatusUpdate {
            audience: v1::Audience::Executive as i32,
            text: "Rolling back the 09:55 deploy.".into(),
            by: "carol".into(),
            at: at(30),
        }],
        first_reported_at: at(0),
        last_seen_at: at(12),
        started_at: at(-5),
        declared_at: at(3),
        commander_assigned_at: at(4),
        ..Default::default()
    }
}

/// A freshly reported issue: most fields empty.
fn bare() -> v1::Incident {
    v1::Incident {
        id: "INC-8".into(),
        version: 1,
        status: v1::IncidentStatus::Reported as i32,
        title: "Slow search".into(),
        report_count: 1,
        source: v1::ReportSource::Manual as i32,
        reporter: "zed".into(),
        first_reported_at: at(50),
        last_seen_at: at(50),
        ..Default::default()
    }
}

fn check(rpc: Rpc, r: Reply, json: bool, expected: Expect) {
    expected.assert_eq(&reply(&rpc, &r, json));
}

fn show() -> Rpc {
    Rpc::GetIncident(v1::GetIncidentRequest { incident_id: "INC-7".into() })
}

fn list() -> Rpc {
    Rpc::ListIncidents { request: v1::ListIncidentsRequest::default(), all_pages: false }
}

#[test]
fn show_full_incident() {
    check(
        show(),
        Reply::Incident(incident()),
        false,
        expect![[r#"
            INC-7  Checkout returns 500 for EU customers
              status:       declared (version 12)
              severity:     SEV1 (overridden)
              service:      checkout
              commander:    alice
              handoff:      alice -> bob (pending, requested 2025-03-01T10:40:00Z)
              roles:        communications_lead carol; scribe dave, erin
              participants: alice, carol, dave
              impact:       1200 customers affected, multi-customer (acme, globex): EU checkout failing
              reported:     by pd-bridge via pager_duty, 3 reports, dedup key checkout-5xx
              labels:       env=prod, region=eu
              description:  Error rate above 20% since the 09:55 deploy.
              latest updates:
                [executive] 2025-03-01T10:30:00Z carol: Rolling back the 09:55 deploy.
              timestamps:
                started        2025-03-01T09:55:00Z
                first reported 2025-03-01T10:00:00Z
                last seen      2025-03-01T10:12:00Z
                declared       2025-03-01T10:03:00Z
                commander set  2025-03-01T10:04:00Z"#]],
    );
}

#[test]
fn show_bare_incident() {
    check(
        show(),
        Reply::Incident(bare()),
        false,
        expect![[r#"
            INC-8  Slow search
              status:       reported (version 1)
              severity:     -
              service:      -
              commander:    -
              participants: -
              impact:       0 customers affected
              reported:     by zed via manual, 1 report
              timestamps:
                first reported 2025-03-01T10:50:00Z
                last seen      2025-03-01T10:50:00Z"#]],
    );
}

#[test]
fn list_table() {
    let page = v1::ListIncidentsResponse { incidents: vec![bare(), incident()], next_page_token: "p2".into() };
    check(
        list(),
        Reply::List(page),
        false,
        expect![[r#"
            ID     SEV   STATUS    COMMANDER  SERVICE   TITLE
            INC-8  -     reported  -          -         Slow search
            INC-7  SEV1  declared  alice      checkout  Checkout returns 500 for EU customers
            (more incidents: use --all-pages)"#]],
    );
    check(list(), Reply::List(v1::ListIncidentsResponse::default()), false, expect!["no incidents"]);
}

#[test]
fn history_lines() {
    let entry = |version: u64, minutes: i64, summary: &str| v1::HistoryEntry {
        position: 100 + version,
        version,
        kind: "incident.x.v1".into(),
        at: at(minutes),
        by: "alice".into(),
        summary: summary.into(),
        data_json: r#"{"a":1}"#.into(),
    };
    let h = v1::GetHistoryResponse {
        entries: vec![entry(1, 0, "zed reported \"Slow search\""), entry(10, 3, "alice declared SEV1")],
    };
    check(
        Rpc::GetHistory(v1::GetHistoryRequest { incident_id: "INC-8".into() }),
        Reply::History(h.clone()),
        false,
        expect![[r#"
            2025-03-01T10:00:00Z  v1   zed reported "Slow search"
            2025-03-01T10:03:00Z  v10  alice declared SEV1"#]],
    );
    check(
        Rpc::GetHistory(v1::GetHistoryRequest { incident_id: "INC-8".into() }),
        Reply::History(v1::GetHistoryResponse { entries: h.entries[..1].to_vec() }),
        true,
        expect![[
            r#"{"entries":[{"position":101,"version":1,"kind":"incident.x.v1","at":"2025-03-01T10:00:00Z","by":"alice","summary":"zed reported \"Slow search\"","data":{"a":1}}]}"#
        ]],
    );
}

#[test]
fn command_confirmations() {
    let response = |i: v1::Incident| v1::CommandResponse {
        incident: Some(i),
        first_position: 40,
        last_position: 41,
        deduplicated: false,
    };
    let ctx = || Some(v1::CommandContext { request_id: "r".into(), expected_version: None });
    let declare = Rpc::Declare(v1::DeclareRequest { context: ctx(), incident_id: "INC-7".into(), severity: 1 });
    check(declare.clone(), Reply::Command(response(incident())), false, expect!["INC-7 declared SEV1 (version 12)"]);
    let retried = v1::CommandResponse { deduplicated: true, ..response(incident()) };
    check(
        declare,
        Reply::Command(retried),
        false,
        expect!["INC-7 declared SEV1 (version 12; a retry, nothing new written)"],
    );
    let handoff = Rpc::RequestHandoff(v1::RequestHandoffRequest {
        context: ctx(),
        incident_id: "INC-7".into(),
        to: "bob".into(),
    });
    check(
        handoff,
        Reply::Command(response(incident())),
        false,
        expect!["INC-7 handoff to bob requested; alice stays commander until accepted (version 12)"],
    );
    let role = Rpc::AssignRole(v1::AssignRoleRequest {
        context: ctx(),
        incident_id: "INC-7".into(),
        role: v1::IncidentRole::Scribe as i32,
        person: "erin".into(),
    });
    check(role, Reply::Command(response(incident())), false, expect!["INC-7 erin is scribe (version 12)"]);
    let mitigate =
        Rpc::Mitigate(v1::MitigateRequest { context: ctx(), incident_id: "INC-8".into(), summary: "s".into() });
    check(
        mitigate,
        Reply::Command(response(bare())),
        true,
        expect![[
            r#"{"incident_id":"INC-8","version":1,"first_position":40,"last_position":41,"deduplicated":false,"incident":{"id":"INC-8","version":1,"status":"reported","title":"Slow search","description":"","service":null,"severity":null,"severity_overridden":false,"commander":null,"pending_handoff":null,"roles":{},"participants":[],"customers_affected":0,"customers":[],"multi_customer":false,"impact_summary":null,"dedup_key":null,"report_count":1,"source":"manual","reporter":"zed","labels":{},"latest_updates":[],"first_reported_at":"2025-03-01T10:50:00Z","last_seen_at":"2025-03-01T10:50:00Z","started_at":null,"declared_at":null,"commander_assigned_at":null,"mitigated_at":null,"resolved_at":null,"closed_at":null,"mitigation_summary":null,"resolution_summary":null,"reopen_count":0}}"#
        ]],
    );
}

#[test]
fn report_prints_the_id_first() {
    let report = Rpc::Report(v1::ReportRequest::default());
    let result = Some(v1::CommandResponse { incident: Some(incident()), ..Default::default() });
    let new = v1::ReportResponse { incident_id: "INC-7".into(), merged: false, result: result.clone() };
    check(report.clone(), Reply::Report(new), false, expect!["INC-7"]);
    let merged = v1::ReportResponse { incident_id: "INC-7".into(), merged: true, result };
    check(report.clone(), Reply::Report(merged.clone()), false, expect!["INC-7 (merged into INC-7, 3 reports)"]);
    let json = reply(&report, &Reply::Report(merged), true);
    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!((value["incident_id"].as_str(), value["merged"].as_bool()), (Some("INC-7"), Some(true)));
    assert_eq!(value["incident"]["severity"], "sev1");
    assert_eq!(value["incident"]["roles"]["scribe"], serde_json::json!(["dave", "erin"]));
    assert_eq!(value["incident"]["latest_updates"][0]["audience"], "executive");
}

#[test]
fn bridge_lines() {
    use v1::bridge_response::Message;
    let snapshot = Message::Snapshot(incident());
    expect![
        "INC-7 [SEV1 declared] Checkout returns 500 for EU customers; commander alice; 3 participants (version 12)"
    ]
    .assert_eq(&bridge_message(&snapshot, false));
    let event = Message::Event(v1::HistoryEntry {
        version: 13,
        at: at(61),
        summary: "dave: checking the load balancer".into(),
        ..Default::default()
    });
    expect!["11:01:00  dave: checking the load balancer"].assert_eq(&bridge_message(&event, false));
    expect![[
        r#"{"event":{"position":0,"version":13,"kind":"","at":"2025-03-01T11:01:00Z","by":"","summary":"dave: checking the load balancer","data":null}}"#
    ]]
    .assert_eq(&bridge_message(&event, true));
    assert!(bridge_message(&snapshot, true).starts_with(r#"{"snapshot":{"id":"INC-7","#));
}
