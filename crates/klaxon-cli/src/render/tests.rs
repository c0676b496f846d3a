use std::collections::HashMap;

use expect_test::{Expect, expect};
use klaxon_proto::v1;

use super::{bridge_message, duration, feed_item, reply, verbatim, watching};
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
fn one_is_singular() {
    let one = v1::Incident { customers_affected: 1, customers: vec!["acme".into()], reopen_count: 1, ..bare() };
    check(
        show(),
        Reply::Incident(one.clone()),
        false,
        expect![[r#"
            INC-8  Slow search
              status:       reported (version 1)
              severity:     -
              service:      -
              commander:    -
              participants: -
              impact:       1 customer affected (acme)
              reported:     by zed via manual, 1 report
              reopened:     1 time
              timestamps:
                first reported 2025-03-01T10:50:00Z
                last seen      2025-03-01T10:50:00Z"#]],
    );
    let impact = Rpc::RecordCustomerImpact(v1::RecordCustomerImpactRequest {
        incident_id: "INC-8".into(),
        ..Default::default()
    });
    let reply = Reply::Command(v1::CommandResponse { incident: Some(one), ..Default::default() });
    check(impact, reply, false, expect!["INC-8 impact recorded: 1 customer affected (version 1)"]);
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
    let page = v1::ListIncidentsResponse {
        incidents: vec![bare(), incident()],
        next_page_token: "p2".into(),
        queue: Vec::new(),
    };
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
        entries: vec![
            entry(1, 0, "zed reported \"Slow search\""),
            entry(10, 3, "alice declared SEV1"),
            entry(11, 4, "alice posted an executive update: Rolled back.\n\nNext update at 11:00."),
        ],
    };
    check(
        Rpc::GetHistory(v1::GetHistoryRequest { incident_id: "INC-8".into() }),
        Reply::History(h.clone()),
        false,
        expect![[r#"
            2025-03-01T10:00:00Z  v1   zed reported "Slow search"
            2025-03-01T10:03:00Z  v10  alice declared SEV1
            2025-03-01T10:04:00Z  v11  alice posted an executive update: Rolled back.

                                       Next update at 11:00."#]],
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
        replaces: String::new(),
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
    let new =
        v1::ReportResponse { incident_id: "INC-7".into(), merged: false, result: result.clone(), ..Default::default() };
    check(report.clone(), Reply::Report(new), false, expect!["INC-7"]);
    let merged = v1::ReportResponse { incident_id: "INC-7".into(), merged: true, result, ..Default::default() };
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
    .assert_eq(&bridge_message(&snapshot, false).unwrap());
    let event = Message::Event(v1::HistoryEntry {
        version: 13,
        at: at(61),
        summary: "dave: checking the load balancer".into(),
        ..Default::default()
    });
    expect!["11:01:00  dave: checking the load balancer"].assert_eq(&bridge_message(&event, false).unwrap());
    let note = Message::Event(v1::HistoryEntry {
        version: 14,
        at: at(62),
        summary: "dave: the balancer drops EU traffic\nrestarting it".into(),
        ..Default::default()
    });
    expect![[r#"
        11:02:00  dave: the balancer drops EU traffic
                  restarting it"#]]
    .assert_eq(&bridge_message(&note, false).unwrap());
    expect![[
        r#"{"event":{"position":0,"version":13,"kind":"","at":"2025-03-01T11:01:00Z","by":"","summary":"dave: checking the load balancer","data":null}}"#
    ]]
    .assert_eq(&bridge_message(&event, true).unwrap());
    assert!(bridge_message(&snapshot, true).unwrap().starts_with(r#"{"snapshot":{"id":"INC-7","#));
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
    Rpc::ExplainSeverity(v1::ExplainSeverityRequest { incident_id: "INC-7".into(), report: None })
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
        level: Some(n),
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
    let ack = Rpc::Acknowledge(v1::AcknowledgeRequest { page_id: "INC-7-P1".into(), request_id: String::new() });
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
            r#"{"position":57,"page":{"page_id":"INC-7-P1","incident_id":"INC-7","responder":"ana","level":1,"round":1,"reason":"SEV1 declared","paged_at":"2025-03-01T10:03:00Z","deadline":"2025-03-01T10:08:00Z","acknowledged_at":"2025-03-01T10:04:00Z","acknowledged_by":"ana","delivery":"delivered","delivery_note":null}}"#
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
            v1::Page {
                delivery: "cancelled".into(),
                delivery_note: "INC-7 was resolved before it was sent".into(),
                ..page(5, "erin", 20)
            },
            // The duty manager's page on an SLO breach: no level, no deadline.
            v1::Page { level: None, reason: "slo_breach".into(), deadline: None, ..page(6, "omar", 22) },
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
            INC-7-P4  dave           4      1      SEV1 declared                      2025-03-01T10:18:00Z  2025-03-01T10:23:00Z  -                            -
            INC-7-P5  erin           5      1      SEV1 declared                      2025-03-01T10:20:00Z  2025-03-01T10:25:00Z  -                            cancelled: INC-7 was resolved before it was sent
            INC-7-P6  omar           -      1      slo_breach                         2025-03-01T10:22:00Z  -                     -                            delivered"#]],
    );
    check(pages_of("INC-8"), Reply::Pages(v1::ListPagesResponse::default()), false, expect!["no pages"]);
    check(
        pages_of("INC-7"),
        Reply::Pages(v1::ListPagesResponse { pages: vec![list.pages[1].clone(), list.pages[5].clone()] }),
        true,
        expect![[
            r#"{"pages":[{"page_id":"INC-7-P2","incident_id":"INC-7","responder":"bob","level":2,"round":1,"reason":"SEV1 declared","paged_at":"2025-03-01T10:08:00Z","deadline":"2025-03-01T10:13:00Z","acknowledged_at":null,"acknowledged_by":null,"delivery":"failed","delivery_note":null},{"page_id":"INC-7-P6","incident_id":"INC-7","responder":"omar","level":null,"round":1,"reason":"slo_breach","paged_at":"2025-03-01T10:22:00Z","deadline":null,"acknowledged_at":null,"acknowledged_by":null,"delivery":"delivered","delivery_note":null}]}"#
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

/// An item of the status feed for INC-7 at 10:00 plus `minutes`.
fn feed(minutes: i64) -> v1::FeedItem {
    v1::FeedItem {
        incident_id: "INC-7".into(),
        title: "Checkout returns 500 for EU customers".into(),
        severity: v1::Severity::Sev1 as i32,
        status: v1::IncidentStatus::Declared as i32,
        commander: "maria".into(),
        customers_affected: 40,
        multi_customer: true,
        customers: vec!["acme".into(), "globex".into()],
        impact_summary: "EU checkout failing".into(),
        latest_executive_update: Some(v1::StatusUpdate {
            audience: v1::Audience::Executive as i32,
            text: "Rolling back; \"ETA\" 30 min".into(),
            by: "carol".into(),
            at: at(minutes - 2),
        }),
        next_update_due: at(minutes + 28),
        at: at(minutes),
        service: "checkout".into(),
        snapshot: false,
        company_wide_post: String::new(),
        roles: Vec::new(),
    }
}

#[test]
fn feed_lines() {
    expect![[r#"11:05:00  INC-7 SEV1 declared  commander=maria  customers=40 (multi)  "Rolling back; \"ETA\" 30 min"  next update due 11:33"#]]
        .assert_eq(&feed_item(&feed(65), false));
    let snapshot = v1::FeedItem { snapshot: true, ..feed(0) };
    expect![[r#"* 10:00:00  INC-7 SEV1 declared  commander=maria  customers=40 (multi)  "Rolling back; \"ETA\" 30 min"  next update due 10:28"#]]
        .assert_eq(&feed_item(&snapshot, false));
    let bare = v1::FeedItem {
        incident_id: "INC-8".into(),
        status: v1::IncidentStatus::Reported as i32,
        snapshot: true,
        at: at(50),
        ..Default::default()
    };
    expect!["* 10:50:00  INC-8 - reported  commander=-  customers=0"].assert_eq(&feed_item(&bare, false));
    let company_wide = v1::FeedItem {
        latest_executive_update: None,
        next_update_due: None,
        company_wide_post: "Checkout is degraded in the EU.\nWe are on it.".into(),
        ..feed(70)
    };
    expect![[r#"11:10:00  INC-7 SEV1 declared  commander=maria  customers=40 (multi)  company-wide: "Checkout is degraded in the EU.\nWe are on it.""#]]
        .assert_eq(&feed_item(&company_wide, false));
    expect![[r#"{"incident_id":"INC-7","snapshot":false,"at":"2025-03-01T11:05:00Z","title":"Checkout returns 500 for EU customers","service":"checkout","severity":"sev1","status":"declared","commander":"maria","customers_affected":40,"multi_customer":true,"customers":["acme","globex"],"impact_summary":"EU checkout failing","latest_executive_update":{"audience":"executive","text":"Rolling back; \"ETA\" 30 min","by":"carol","at":"2025-03-01T11:03:00Z"},"next_update_due":"2025-03-01T11:33:00Z","company_wide_post":null}"#]].assert_eq(&feed_item(&feed(65), true));
    expect![[r#"{"incident_id":"INC-8","snapshot":true,"at":"2025-03-01T10:50:00Z","title":"","service":null,"severity":null,"status":"reported","commander":null,"customers_affected":0,"multi_customer":false,"customers":[],"impact_summary":null,"latest_executive_update":null,"next_update_due":null,"company_wide_post":null}"#]].assert_eq(&feed_item(&bare, true));
}

#[test]
fn what_watch_follows() {
    expect![
        "(watching the status feed: every incident; the open incidents first, marked *, then every change; Ctrl-C ends)"
    ]
    .assert_eq(&watching(&v1::FeedFilter::default()));
    let narrow = v1::FeedFilter {
        min_severity: v1::Severity::Sev2 as i32,
        services: vec!["payments".into(), "search".into()],
        customers: vec!["acme".into()],
        include_company_wide: true,
    };
    expect!["(watching the status feed: SEV1 to SEV2; services payments, search; customers acme; company-wide posts; the open incidents first, marked *, then every change; Ctrl-C ends)"]
        .assert_eq(&watching(&narrow));
    let sev1 = v1::FeedFilter { min_severity: v1::Severity::Sev1 as i32, ..Default::default() };
    expect![
        "(watching the status feed: SEV1 only; the open incidents first, marked *, then every change; Ctrl-C ends)"
    ]
    .assert_eq(&watching(&sev1));
}

fn timeline_of(as_of: Option<v1::replay_timeline_request::AsOf>) -> Rpc {
    Rpc::ReplayTimeline(v1::ReplayTimelineRequest { incident_id: "INC-7".into(), as_of })
}

fn timeline_entries() -> Vec<v1::TimelineEntry> {
    let entry = |position: u64, minutes: i64, source: &str, by: &str, summary: &str| v1::TimelineEntry {
        position,
        at: at(minutes),
        by: by.into(),
        kind: format!("{source}.x.v1"),
        summary: summary.into(),
        source: source.into(),
    };
    vec![
        entry(3, 0, "incident", "zed", "zed reported \"Checkout returns 500\""),
        entry(9, 3, "incident", "maria", "maria declared SEV1"),
        entry(12, 4, "page", "ana", "ana acknowledged INC-7-P1"),
        entry(130, 90, "review", "maria", "maria added action item INC-7-A1"),
        entry(131, 91, "incident", "maria", "maria posted an internal update: Rolled back.\nWatching errors."),
    ]
}

#[test]
fn timeline_lines() {
    use v1::replay_timeline_request::AsOf;
    let entries = timeline_entries();
    check(
        timeline_of(None),
        Reply::Timeline { entries: entries.clone(), state: None },
        false,
        expect![[r#"
        2025-03-01T10:00:00Z  #3    incident  zed reported "Checkout returns 500"
        2025-03-01T10:03:00Z  #9    incident  maria declared SEV1
        2025-03-01T10:04:00Z  #12   page      ana acknowledged INC-7-P1
        2025-03-01T11:30:00Z  #130  review    maria added action item INC-7-A1
        2025-03-01T11:31:00Z  #131  incident  maria posted an internal update: Rolled back.
                                              Watching errors."#]],
    );
    let then = v1::Incident { commander: "maria".into(), version: 2, severity_overridden: false, ..incident() };
    check(
        timeline_of(Some(AsOf::AsOfPosition(12))),
        Reply::Timeline { entries: entries[..3].to_vec(), state: Some(then.clone()) },
        false,
        expect![[r#"
            2025-03-01T10:00:00Z  #3   incident  zed reported "Checkout returns 500"
            2025-03-01T10:03:00Z  #9   incident  maria declared SEV1
            2025-03-01T10:04:00Z  #12  page      ana acknowledged INC-7-P1

            INC-7 as of position #12:
              status:     declared (version 2)
              severity:   SEV1
              commander:  maria"#]],
    );
    check(
        timeline_of(Some(AsOf::AsOfTime(at(1).unwrap()))),
        Reply::Timeline { entries: entries[..1].to_vec(), state: Some(bare()) },
        false,
        expect![[r#"
            2025-03-01T10:00:00Z  #3  incident  zed reported "Checkout returns 500"

            INC-8 as of 2025-03-01T10:01:00Z:
              status:     reported (version 1)
              severity:   -
              commander:  -"#]],
    );
    check(
        timeline_of(Some(AsOf::AsOfTime(at(-60).unwrap()))),
        Reply::Timeline { entries: vec![], state: None },
        false,
        expect!["no timeline entries"],
    );
    check(
        timeline_of(None),
        Reply::Timeline { entries: entries[2..3].to_vec(), state: None },
        true,
        expect![[
            r#"{"entries":[{"position":12,"at":"2025-03-01T10:04:00Z","by":"ana","source":"page","kind":"page.x.v1","summary":"ana acknowledged INC-7-P1"}],"state":null}"#
        ]],
    );
    let json = reply(
        &timeline_of(Some(AsOf::AsOfPosition(12))),
        &Reply::Timeline { entries: vec![], state: Some(then) },
        true,
    );
    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!((value["state"]["id"].as_str(), value["state"]["version"].as_u64()), (Some("INC-7"), Some(2)));
}

#[test]
fn durations() {
    let cases = [
        (None, "-"),
        (Some(0), "0s"),
        (Some(59), "59s"),
        (Some(60), "1m 0s"),
        (Some(3_599), "59m 59s"),
        (Some(3_600), "1h 0m 0s"),
        (Some(3_723), "1h 2m 3s"),
        (Some(93_784), "26h 3m 4s"),
        (Some(-75), "-1m 15s"),
    ];
    for (seconds, text) in cases {
        assert_eq!(duration(seconds), text, "{seconds:?}");
    }
}

#[test]
fn metrics_lines() {
    let metrics = v1::IncidentMetrics {
        incident_id: "INC-7".into(),
        time_to_detect_seconds: Some(300),
        time_to_acknowledge_seconds: Some(45),
        time_to_assign_seconds: Some(240),
        time_to_mitigate_seconds: Some(3_723),
        time_to_resolve_seconds: None,
        escalations: 1,
        handoffs: 2,
        slo_breaches: 0,
        pages: 3,
        noise: false,
        pulled_in_pages: 1,
    };
    let rpc = Rpc::GetMetrics(v1::GetMetricsRequest { incident_id: "INC-7".into() });
    check(
        rpc.clone(),
        Reply::Metrics(metrics.clone()),
        false,
        expect![[r#"
            INC-7
              time to detect:      5m 0s
              time to acknowledge: 45s
              time to assign:      4m 0s
              time to mitigate:    1h 2m 3s
              time to resolve:     -
              pages:               3
              pulled in:           1
              escalations:         1
              handoffs:            2
              SLO breaches:        0
              noise:               no"#]],
    );
    check(
        rpc,
        Reply::Metrics(metrics),
        true,
        expect![[
            r#"{"incident_id":"INC-7","time_to_detect_seconds":300,"time_to_acknowledge_seconds":45,"time_to_assign_seconds":240,"time_to_mitigate_seconds":3723,"time_to_resolve_seconds":null,"pages":3,"pulled_in_pages":1,"escalations":1,"handoffs":2,"slo_breaches":0,"noise":false}"#
        ]],
    );
}

fn action_item(n: u32, title: &str, owner: &str, due: &str, completed: bool) -> v1::ActionItem {
    v1::ActionItem {
        item_id: format!("INC-7-A{n}"),
        incident_id: "INC-7".into(),
        title: title.into(),
        owner: owner.into(),
        due: due.into(),
        completed,
    }
}

fn written_review() -> v1::ReviewView {
    v1::ReviewView {
        incident_id: "INC-7".into(),
        opened: true,
        published: false,
        summary: "A config push disabled the EU payment provider.\nRolled back after 62 minutes.".into(),
        impact: "40 customers could not check out.".into(),
        contributing_factors: vec!["No canary for config pushes".into(), "Alert only on total error rate".into()],
        action_items: vec![
            action_item(1, "Canary config pushes", "ana", "2026-12-01", true),
            action_item(2, "Alert on EU 5xx rate", "", "", false),
        ],
        version: 6,
    }
}

#[test]
fn review_views() {
    let show = Rpc::GetReview(v1::GetReviewRequest { incident_id: "INC-7".into() });
    check(
        show.clone(),
        Reply::Review(written_review()),
        false,
        expect![[r#"
        INC-7 review: draft (version 6)
          summary:  A config push disabled the EU payment provider.
                    Rolled back after 62 minutes.
          impact:   40 customers could not check out.
          contributing factors:
            - No canary for config pushes
            - Alert only on total error rate
          action items:
            ITEM      TITLE                 OWNER  DUE         STATUS
            INC-7-A1  Canary config pushes  ana    2026-12-01  done
            INC-7-A2  Alert on EU 5xx rate  -      -           open"#]],
    );
    let empty = v1::ReviewView { incident_id: "INC-8".into(), ..Default::default() };
    check(
        show.clone(),
        Reply::Review(empty),
        false,
        expect![[r#"
        INC-8 review: not started (version 0)
          summary:  -
          impact:   -
          contributing factors: -
          action items: -"#]],
    );
    let published = v1::ReviewView { published: true, action_items: vec![], ..written_review() };
    check(
        show,
        Reply::Review(published),
        true,
        expect![[
            r#"{"incident_id":"INC-7","version":6,"opened":true,"published":true,"summary":"A config push disabled the EU payment provider.\nRolled back after 62 minutes.","impact":"40 customers could not check out.","contributing_factors":["No canary for config pushes","Alert only on total error rate"],"action_items":[]}"#
        ]],
    );
}

#[test]
fn review_edit_confirmations() {
    use v1::edit_review_request::Edit;
    let edit = |incident: &str, edit: Edit| {
        Rpc::EditReview(v1::EditReviewRequest { context: None, incident_id: incident.into(), edit: Some(edit) })
    };
    let review = written_review();
    let cases = [
        (
            edit("INC-7", Edit::WriteSummary("s".into())),
            expect![[r#"
            INC-7 review summary written (version 6)
              draft: summary written, impact written, 2 contributing factors, 2 action items (1 open)"#]],
        ),
        (
            edit("INC-7", Edit::WriteImpact("i".into())),
            expect![[r#"
            INC-7 review impact written (version 6)
              draft: summary written, impact written, 2 contributing factors, 2 action items (1 open)"#]],
        ),
        (
            edit("INC-7", Edit::AddContributingFactor("f".into())),
            expect![[r#"
            INC-7 contributing factor added (version 6)
              draft: summary written, impact written, 2 contributing factors, 2 action items (1 open)"#]],
        ),
        (
            edit("INC-7", Edit::AddActionItem("Alert on EU 5xx rate".into())),
            expect![[r#"
            INC-7-A2 added: Alert on EU 5xx rate (version 6)
              draft: summary written, impact written, 2 contributing factors, 2 action items (1 open)"#]],
        ),
        (
            edit(
                "INC-7",
                Edit::NewActionItem(v1::NewActionItem {
                    title: "Alert on EU 5xx rate".into(),
                    owner: "bob".into(),
                    due: "2026-12-01".into(),
                }),
            ),
            expect![[r#"
                INC-7-A2 added: Alert on EU 5xx rate, owned by bob, due 2026-12-01 (version 6)
                  draft: summary written, impact written, 2 contributing factors, 2 action items (1 open)"#]],
        ),
        (
            edit(
                "INC-7",
                Edit::NewActionItem(v1::NewActionItem {
                    title: "Alert on EU 5xx rate".into(),
                    owner: String::new(),
                    due: "2026-12-01".into(),
                }),
            ),
            expect![[r#"
                INC-7-A2 added: Alert on EU 5xx rate, due 2026-12-01 (version 6)
                  draft: summary written, impact written, 2 contributing factors, 2 action items (1 open)"#]],
        ),
        (
            edit("INC-7", Edit::AddActionItem("Not in the reply".into())),
            expect![[r#"
            INC-7 action item added: Not in the reply (version 6)
              draft: summary written, impact written, 2 contributing factors, 2 action items (1 open)"#]],
        ),
        (
            edit(
                "INC-7",
                Edit::AssignActionItem(v1::AssignActionItem { item_id: "INC-7-A2".into(), owner: "bob".into() }),
            ),
            expect![[r#"
                INC-7-A2 assigned to bob (version 6)
                  draft: summary written, impact written, 2 contributing factors, 2 action items (1 open)"#]],
        ),
        (
            edit(
                "INC-7",
                Edit::SetActionItemDue(v1::SetActionItemDue { item_id: "INC-7-A2".into(), due: "2026-12-01".into() }),
            ),
            expect![[r#"
                INC-7-A2 due 2026-12-01 (version 6)
                  draft: summary written, impact written, 2 contributing factors, 2 action items (1 open)"#]],
        ),
        (
            edit("INC-7", Edit::CompleteActionItem("INC-7-A1".into())),
            expect![[r#"
            INC-7-A1 done (version 6)
              draft: summary written, impact written, 2 contributing factors, 2 action items (1 open)"#]],
        ),
        (
            edit("INC-7", Edit::Publish(true)),
            expect![[r#"
            INC-7 review published (version 6)
              draft: summary written, impact written, 2 contributing factors, 2 action items (1 open)"#]],
        ),
    ];
    for (rpc, expected) in cases {
        check(rpc, Reply::Review(review.clone()), false, expected);
    }
    let one = v1::ReviewView {
        published: true,
        contributing_factors: vec!["x".into()],
        action_items: vec![],
        summary: String::new(),
        ..review
    };
    check(
        edit("INC-7", Edit::Publish(true)),
        Reply::Review(one),
        false,
        expect![[r#"
        INC-7 review published (version 6)
          published: summary missing, impact written, 1 contributing factor, 0 action items (0 open)"#]],
    );
}

#[test]
fn action_items_table() {
    let all = Rpc::ListActionItems(v1::ListActionItemsRequest { open_only: false });
    let open = Rpc::ListActionItems(v1::ListActionItemsRequest { open_only: true });
    let items = v1::ListActionItemsResponse {
        items: vec![
            action_item(1, "Canary config pushes", "ana", "2026-12-01", true),
            action_item(2, "Alert on EU 5xx rate", "", "", false),
            v1::ActionItem {
                item_id: "INC-12-A1".into(),
                incident_id: "INC-12".into(),
                ..action_item(1, "Runbook for search", "bob", "2027-01-15", false)
            },
        ],
    };
    check(
        all.clone(),
        Reply::ActionItems(items.clone()),
        false,
        expect![[r#"
        ITEM       INCIDENT  TITLE                 OWNER  DUE         STATUS
        INC-7-A1   INC-7     Canary config pushes  ana    2026-12-01  done
        INC-7-A2   INC-7     Alert on EU 5xx rate  -      -           open
        INC-12-A1  INC-12    Runbook for search    bob    2027-01-15  open"#]],
    );
    check(all.clone(), Reply::ActionItems(v1::ListActionItemsResponse::default()), false, expect!["no action items"]);
    check(open, Reply::ActionItems(v1::ListActionItemsResponse::default()), false, expect!["no open action items"]);
    check(
        all,
        Reply::ActionItems(v1::ListActionItemsResponse { items: items.items[1..2].to_vec() }),
        true,
        expect![[
            r#"{"items":[{"item_id":"INC-7-A2","incident_id":"INC-7","title":"Alert on EU 5xx rate","owner":null,"due":null,"completed":false}]}"#
        ]],
    );
}

#[test]
fn documents_are_printed_as_the_server_rendered_them() {
    let export = Rpc::ExportMarkdown(v1::ExportMarkdownRequest { incident_id: "INC-7".into() });
    let markdown = "# INC-7: Checkout returns 500\n\n## Summary\n\nA config push.\n";
    let reply_md = Reply::Markdown(v1::ExportMarkdownResponse { markdown: markdown.into() });
    assert_eq!(reply(&export, &reply_md, false), markdown);
    assert!(verbatim(&export, false));
    assert!(!verbatim(&export, true));
    check(
        export,
        reply_md,
        true,
        expect![[
            r##"{"incident_id":"INC-7","markdown":"# INC-7: Checkout returns 500\n\n## Summary\n\nA config push.\n"}"##
        ]],
    );
    let trends =
        v1::TrendsResponse { table: "TABLE\n".into(), json: "{\"json\":1}\n".into(), csv: "a,b\n1,2\n".into() };
    let rpc = |csv: bool| Rpc::Trends { request: v1::TrendsRequest::default(), csv };
    assert_eq!(reply(&rpc(false), &Reply::Trends(trends.clone()), false), "TABLE\n");
    assert_eq!(reply(&rpc(false), &Reply::Trends(trends.clone()), true), "{\"json\":1}\n");
    assert_eq!(reply(&rpc(true), &Reply::Trends(trends.clone()), false), "a,b\n1,2\n");
    assert_eq!(reply(&rpc(true), &Reply::Trends(trends), true), "a,b\n1,2\n");
    assert!(verbatim(&rpc(false), false) && verbatim(&rpc(true), true));
    let show = Rpc::GetIncident(v1::GetIncidentRequest { incident_id: "INC-7".into() });
    assert!(!verbatim(&show, false));
}

#[test]
fn noise_confirmation() {
    let noise =
        Rpc::MarkNoise(v1::MarkNoiseRequest { context: None, incident_id: "INC-8".into(), reason: "flapping".into() });
    let response = v1::CommandResponse { incident: Some(bare()), ..Default::default() };
    check(
        noise,
        Reply::Command(response),
        false,
        expect!["INC-8 marked as noise; trend reports leave it out (version 1)"],
    );
}
