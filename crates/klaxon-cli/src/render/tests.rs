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

/// The explanation of INC-7: the second of three rules chose SEV1.
fn explanation() -> v1::SeverityExplanation {
    let condition = |condition: &str, held: bool, detail: &str| v1::ConditionCheck {
        condition: condition.into(),
        held,
        detail: detail.into(),
    };
    v1::SeverityExplanation {
        incident_id: "INC-7".into(),
        assessed: v1::Severity::Sev1 as i32,
        rule_id: "tier1-multi-customer".into(),
        reason: "several customers of a tier-1 service".into(),
        reasons: vec!["service checkout is tier 1".into(), "multi-customer impact".into()],
        current: v1::Severity::Sev1 as i32,
        overridden: false,
        rules: vec![
            v1::RuleCheck {
                id: "executive-escalation".into(),
                severity: v1::Severity::Sev1 as i32,
                matched: false,
                chosen: false,
                conditions: vec![condition("source", false, "reported via pager_duty, not executive")],
            },
            v1::RuleCheck {
                id: "tier1-multi-customer".into(),
                severity: v1::Severity::Sev1 as i32,
                matched: true,
                chosen: true,
                conditions: vec![
                    condition("tier", true, "service checkout is tier 1"),
                    condition("multi_customer", true, "multi-customer impact"),
                ],
            },
            v1::RuleCheck {
                id: "catch-all".into(),
                severity: v1::Severity::Sev3 as i32,
                matched: true,
                chosen: false,
                conditions: vec![],
            },
        ],
        lines: vec![
            "SEV1 by rule tier1-multi-customer: several customers of a tier-1 service".into(),
            "  because service checkout is tier 1; multi-customer impact".into(),
            "Rules, in order (the first that matches wins):".into(),
            "  1. executive-escalation (SEV1): does not match".into(),
            "       no  source: reported via pager_duty, not executive".into(),
            "  2. tier1-multi-customer (SEV1): matches, chosen".into(),
            "       yes tier: service checkout is tier 1".into(),
            "       yes multi_customer: multi-customer impact".into(),
            "  3. catch-all (SEV3): matches too, but an earlier rule won".into(),
            "       (no conditions: matches everything)".into(),
        ],
    }
}

fn explain() -> Rpc {
    Rpc::ExplainSeverity(v1::ExplainSeverityRequest { incident_id: "INC-7".into() })
}

#[test]
fn severity_explanation() {
    check(
        explain(),
        Reply::Explanation(explanation()),
        false,
        expect![[r#"
            INC-7: assessed SEV1 by rule tier1-multi-customer (current SEV1)
            SEV1 by rule tier1-multi-customer: several customers of a tier-1 service
              because service checkout is tier 1; multi-customer impact
            Rules, in order (the first that matches wins):
              1. executive-escalation (SEV1): does not match
                   no  source: reported via pager_duty, not executive
              2. tier1-multi-customer (SEV1): matches, chosen
                   yes tier: service checkout is tier 1
                   yes multi_customer: multi-customer impact
              3. catch-all (SEV3): matches too, but an earlier rule won
                   (no conditions: matches everything)"#]],
    );
    let overridden = v1::SeverityExplanation {
        assessed: v1::Severity::Sev3 as i32,
        rule_id: String::new(),
        reason: "no rule matched".into(),
        reasons: vec![],
        current: v1::Severity::Sev2 as i32,
        overridden: true,
        rules: vec![],
        lines: vec!["SEV3 by default: no rule matched".into(), "No rules are configured.".into()],
        ..explanation()
    };
    check(
        explain(),
        Reply::Explanation(overridden.clone()),
        false,
        expect![[r#"
            INC-7: assessed SEV3 by default (current SEV2)
            A manager's override is in force: the severity stays SEV2 whatever the rules assess.
            SEV3 by default: no rule matched
            No rules are configured."#]],
    );
    check(
        explain(),
        Reply::Explanation(overridden),
        true,
        expect![[
            r#"{"incident_id":"INC-7","assessed":"sev3","rule_id":null,"reason":"no rule matched","reasons":[],"current":"sev2","overridden":true,"rules":[],"lines":["SEV3 by default: no rule matched","No rules are configured."]}"#
        ]],
    );
    check(
        explain(),
        Reply::Explanation(explanation()),
        true,
        expect![[
            r#"{"incident_id":"INC-7","assessed":"sev1","rule_id":"tier1-multi-customer","reason":"several customers of a tier-1 service","reasons":["service checkout is tier 1","multi-customer impact"],"current":"sev1","overridden":false,"rules":[{"id":"executive-escalation","severity":"sev1","matched":false,"chosen":false,"conditions":[{"condition":"source","held":false,"detail":"reported via pager_duty, not executive"}]},{"id":"tier1-multi-customer","severity":"sev1","matched":true,"chosen":true,"conditions":[{"condition":"tier","held":true,"detail":"service checkout is tier 1"},{"condition":"multi_customer","held":true,"detail":"multi-customer impact"}]},{"id":"catch-all","severity":"sev3","matched":true,"chosen":false,"conditions":[]}],"lines":["SEV1 by rule tier1-multi-customer: several customers of a tier-1 service","  because service checkout is tier 1; multi-customer impact","Rules, in order (the first that matches wins):","  1. executive-escalation (SEV1): does not match","       no  source: reported via pager_duty, not executive","  2. tier1-multi-customer (SEV1): matches, chosen","       yes tier: service checkout is tier 1","       yes multi_customer: multi-customer impact","  3. catch-all (SEV3): matches too, but an earlier rule won","       (no conditions: matches everything)"]}"#
        ]],
    );
}

/// Page `n` of INC-7, paged `minutes` after 10:00, with a 5-minute deadline.
fn page(n: u32, responder: &str, minutes: i64) -> v1::Page {
    v1::Page {
        page_id: format!("INC-7-P{n}"),
        incident_id: "INC-7".into(),
        responder: responder.into(),
        level: n,
        round: 1,
        reason: "SEV1 declared".into(),
        paged_at: at(minutes),
        deadline: at(minutes + 5),
        delivery: "delivered".into(),
        ..Default::default()
    }
}

fn acked(p: v1::Page, by: &str, minutes: i64) -> v1::Page {
    v1::Page { acknowledged_by: by.into(), acknowledged_at: at(minutes), ..p }
}

#[test]
fn acknowledge_confirmation() {
    let ack = Rpc::Acknowledge(v1::AcknowledgeRequest { page_id: "INC-7-P1".into() });
    let response = v1::AcknowledgeResponse { page: Some(acked(page(1, "ana", 3), "ana", 4)), position: 57 };
    check(ack.clone(), Reply::Acknowledged(response.clone()), false, expect!["INC-7-P1 acknowledged by ana"]);
    let by_manager = v1::AcknowledgeResponse { page: Some(acked(page(1, "ana", 3), "alice", 4)), position: 58 };
    check(ack.clone(), Reply::Acknowledged(by_manager), false, expect!["INC-7-P1 acknowledged by alice"]);
    check(
        ack.clone(),
        Reply::Acknowledged(v1::AcknowledgeResponse { page: None, position: 59 }),
        false,
        expect!["INC-7-P1 acknowledged by -"],
    );
    check(
        ack,
        Reply::Acknowledged(response),
        true,
        expect![[
            r#"{"position":57,"page":{"page_id":"INC-7-P1","incident_id":"INC-7","responder":"ana","level":1,"round":1,"reason":"SEV1 declared","paged_at":"2025-03-01T10:03:00Z","deadline":"2025-03-01T10:08:00Z","acknowledged_at":"2025-03-01T10:04:00Z","acknowledged_by":"ana","delivery":"delivered"}}"#
        ]],
    );
}

fn pages_of(incident: &str) -> Rpc {
    Rpc::ListPages(v1::ListPagesRequest { incident_id: incident.into() })
}

#[test]
fn pages_table() {
    let failed = v1::Page { delivery: "failed".into(), ..page(2, "bob", 8) };
    let escalated =
        v1::Page { round: 2, reason: "INC-7-P2 not acknowledged in time".into(), ..page(3, "carol-manager", 13) };
    let list = v1::ListPagesResponse {
        pages: vec![
            acked(page(1, "ana", 3), "ana", 4),
            failed,
            escalated,
            v1::Page { delivery: String::new(), ..page(4, "dave", 18) },
        ],
    };
    check(
        pages_of("INC-7"),
        Reply::Pages(list.clone()),
        false,
        expect![[r#"
            PAGE      RESPONDER      LEVEL  ROUND  REASON                             PAGED                 DEADLINE              ACK                          DELIVERY
            INC-7-P1  ana            1      1      SEV1 declared                      2025-03-01T10:03:00Z  2025-03-01T10:08:00Z  ana at 2025-03-01T10:04:00Z  delivered
            INC-7-P2  bob            2      1      SEV1 declared                      2025-03-01T10:08:00Z  2025-03-01T10:13:00Z  -                            failed
            INC-7-P3  carol-manager  3      2      INC-7-P2 not acknowledged in time  2025-03-01T10:13:00Z  2025-03-01T10:18:00Z  -                            delivered
            INC-7-P4  dave           4      1      SEV1 declared                      2025-03-01T10:18:00Z  2025-03-01T10:23:00Z  -                            -"#]],
    );
    check(pages_of("INC-8"), Reply::Pages(v1::ListPagesResponse::default()), false, expect!["no pages"]);
    check(
        pages_of("INC-7"),
        Reply::Pages(v1::ListPagesResponse { pages: list.pages[1..2].to_vec() }),
        true,
        expect![[
            r#"{"pages":[{"page_id":"INC-7-P2","incident_id":"INC-7","responder":"bob","level":2,"round":1,"reason":"SEV1 declared","paged_at":"2025-03-01T10:08:00Z","deadline":"2025-03-01T10:13:00Z","acknowledged_at":null,"acknowledged_by":null,"delivery":"failed"}]}"#
        ]],
    );
}

#[test]
fn on_call_table() {
    let on_call = |schedule: &str, who: &str, source: &str, until: Option<prost_types::Timestamp>| v1::OnCall {
        schedule: schedule.into(),
        who: who.into(),
        source: source.into(),
        from: at(-120),
        until,
    };
    let response = v1::WhoIsOnCallResponse {
        on_call: vec![
            on_call("checkout-primary", "ana", "weekdays", at(8 * 60)),
            on_call(
                "payments",
                "bob",
                "override",
                Some(prost_types::Timestamp { seconds: 1_740_830_400, nanos: 750_000_000 }),
            ),
            on_call("search", "", "", None),
            on_call("infra", "carol", "follow-the-sun", None),
        ],
    };
    let rpc = Rpc::WhoIsOnCall(v1::WhoIsOnCallRequest::default());
    check(
        rpc.clone(),
        Reply::OnCall(response.clone()),
        false,
        expect![[r#"
            SCHEDULE          ON CALL  SOURCE          UNTIL
            checkout-primary  ana      weekdays        2025-03-01T18:00:00Z
            payments          bob      override        2025-03-01T12:00:00Z
            search            -        -               -
            infra             carol    follow-the-sun  -"#]],
    );
    check(rpc.clone(), Reply::OnCall(v1::WhoIsOnCallResponse::default()), false, expect!["no schedules"]);
    check(
        rpc,
        Reply::OnCall(v1::WhoIsOnCallResponse { on_call: response.on_call[1..3].to_vec() }),
        true,
        expect![[
            r#"{"on_call":[{"schedule":"payments","who":"bob","source":"override","from":"2025-03-01T08:00:00Z","until":"2025-03-01T12:00:00.750Z"},{"schedule":"search","who":null,"source":null,"from":"2025-03-01T08:00:00Z","until":null}]}"#
        ]],
    );
}
