//! Bad input on every RPC: a precise status, and the log head did not move.

use std::future::Future;
use std::pin::Pin;

use klaxon_proto::v1::{self, Severity, incidents_client::IncidentsClient};
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

use crate::support::{Server, by, ctx, sev1};

type Client = IncidentsClient<Channel>;
type Outcome = Pin<Box<dyn Future<Output = Result<(), Status>> + Send>>;

/// Each case gets a client and two incidents: a declared Sev-1 without a
/// commander (`open`) and a resolved one (`done`).
struct Case {
    name: &'static str,
    call: fn(Client, String, String) -> Outcome,
    code: Code,
    says: &'static str,
}

fn m<T: Send + 'static>(f: impl Future<Output = Result<tonic::Response<T>, Status>> + Send + 'static) -> Outcome {
    Box::pin(async move { f.await.map(|_| ()) })
}

fn maria<T>(message: T) -> Request<T> {
    by("maria", message)
}

#[tokio::test]
async fn every_rpc_refuses_bad_input_precisely_and_writes_nothing() {
    let cases: Vec<Case> = vec![
        Case {
            name: "report without title",
            code: Code::InvalidArgument,
            says: "title",
            call: |mut c, _, _| {
                m(async move { c.report(maria(v1::ReportRequest { title: "  ".into(), ..Default::default() })).await })
            },
        },
        Case {
            name: "report with a title of control characters",
            code: Code::InvalidArgument,
            says: "invalid title: must be one line of text without control characters; character 1 is U+0000",
            call: |mut c, _, _| {
                m(async move {
                    c.report(maria(v1::ReportRequest { title: "\u{0}\u{1}\u{2}".into(), ..Default::default() })).await
                })
            },
        },
        Case {
            name: "report with an expected version",
            code: Code::InvalidArgument,
            says: "invalid context.expected_version: a report has no incident version to expect",
            call: |mut c, _, _| {
                m(async move {
                    c.report(maria(v1::ReportRequest {
                        title: "t".into(),
                        context: ctx("", Some(1)),
                        ..Default::default()
                    }))
                    .await
                })
            },
        },
        Case {
            name: "report with a label value on two lines",
            code: Code::InvalidArgument,
            says: "invalid labels",
            call: |mut c, _, _| {
                m(async move {
                    c.report(maria(v1::ReportRequest {
                        title: "t".into(),
                        labels: [("k".to_owned(), "a\nb".to_owned())].into(),
                        ..Default::default()
                    }))
                    .await
                })
            },
        },
        Case {
            name: "an update with an escape sequence",
            code: Code::InvalidArgument,
            says: "invalid text: must be text without control characters other than newline and tab; character 1 is U+001B",
            call: |mut c, open, _| {
                m(async move {
                    c.post_update(maria(v1::PostUpdateRequest {
                        incident_id: open,
                        audience: v1::Audience::Internal as i32,
                        text: "\u{1b}[31mred".into(),
                        context: None,
                    }))
                    .await
                })
            },
        },
        Case {
            name: "report with a bad service",
            code: Code::InvalidArgument,
            says: "invalid service",
            call: |mut c, _, _| {
                m(async move {
                    c.report(maria(v1::ReportRequest {
                        title: "t".into(),
                        service: "Pay Ments".into(),
                        ..Default::default()
                    }))
                    .await
                })
            },
        },
        Case {
            name: "report with too many customers",
            code: Code::InvalidArgument,
            says: "customers",
            call: |mut c, _, _| {
                m(async move {
                    c.report(maria(v1::ReportRequest {
                        title: "t".into(),
                        customers: (0..1001).map(|i| format!("c{i}")).collect(),
                        ..Default::default()
                    }))
                    .await
                })
            },
        },
        Case {
            name: "report with an unknown source",
            code: Code::InvalidArgument,
            says: "source",
            call: |mut c, _, _| {
                m(async move {
                    c.report(maria(v1::ReportRequest { title: "t".into(), source: 77, ..Default::default() })).await
                })
            },
        },
        Case {
            name: "no actor header",
            code: Code::InvalidArgument,
            says: "klaxon-actor header",
            call: |mut c, _, _| {
                m(
                    async move {
                        c.report(Request::new(v1::ReportRequest { title: "t".into(), ..Default::default() })).await
                    },
                )
            },
        },
        Case {
            name: "request id too long",
            code: Code::InvalidArgument,
            says: "context.request_id",
            call: |mut c, _, _| {
                m(async move {
                    c.report(maria(v1::ReportRequest {
                        title: "t".into(),
                        context: ctx(&"r".repeat(129), None),
                        ..Default::default()
                    }))
                    .await
                })
            },
        },
        Case {
            name: "declare an unknown incident",
            code: Code::NotFound,
            says: "unknown incident INC-99",
            call: |mut c, _, _| {
                m(async move {
                    c.declare(maria(v1::DeclareRequest {
                        incident_id: "INC-99".into(),
                        severity: Severity::Sev1 as i32,
                        context: None,
                    }))
                    .await
                })
            },
        },
        Case {
            name: "declare a malformed id",
            code: Code::InvalidArgument,
            says: "incident_id",
            call: |mut c, _, _| {
                m(async move {
                    c.declare(maria(v1::DeclareRequest {
                        incident_id: "INC-x".into(),
                        severity: Severity::Sev1 as i32,
                        context: None,
                    }))
                    .await
                })
            },
        },
        Case {
            name: "declare without severity",
            code: Code::InvalidArgument,
            says: "severity: is required",
            call: |mut c, open, _| {
                m(async move {
                    c.declare(maria(v1::DeclareRequest { incident_id: open, severity: 0, context: None })).await
                })
            },
        },
        Case {
            name: "declare with an invalid severity",
            code: Code::InvalidArgument,
            says: "severity: 9 is not a known value",
            call: |mut c, open, _| {
                m(async move {
                    c.declare(maria(v1::DeclareRequest { incident_id: open, severity: 9, context: None })).await
                })
            },
        },
        Case {
            name: "declare twice",
            code: Code::FailedPrecondition,
            says: "declare.only_reported",
            call: |mut c, open, _| {
                m(async move {
                    c.declare(maria(v1::DeclareRequest {
                        incident_id: open,
                        severity: Severity::Sev2 as i32,
                        context: None,
                    }))
                    .await
                })
            },
        },
        Case {
            name: "override to the same severity",
            code: Code::FailedPrecondition,
            says: "override.same_severity",
            call: |mut c, open, _| {
                m(async move {
                    c.override_severity(maria(v1::OverrideSeverityRequest {
                        incident_id: open,
                        severity: Severity::Sev1 as i32,
                        reason: "r".into(),
                        context: None,
                    }))
                    .await
                })
            },
        },
        Case {
            name: "assign nobody",
            code: Code::InvalidArgument,
            says: "commander",
            call: |mut c, open, _| {
                m(async move {
                    c.assign_commander(maria(v1::AssignCommanderRequest {
                        incident_id: open,
                        commander: String::new(),
                        context: None,
                    }))
                    .await
                })
            },
        },
        Case {
            name: "hand off without commander",
            code: Code::FailedPrecondition,
            says: "handoff.no_commander",
            call: |mut c, open, _| {
                m(async move {
                    c.request_handoff(maria(v1::RequestHandoffRequest {
                        incident_id: open,
                        to: "omar".into(),
                        context: None,
                    }))
                    .await
                })
            },
        },
        Case {
            name: "accept a handoff nobody asked for",
            code: Code::FailedPrecondition,
            says: "handoff.none_pending",
            call: |mut c, open, _| {
                m(async move {
                    c.accept_handoff(maria(v1::AcceptHandoffRequest { incident_id: open, context: None })).await
                })
            },
        },
        Case {
            name: "decline a handoff nobody asked for",
            code: Code::FailedPrecondition,
            says: "handoff.none_pending",
            call: |mut c, open, _| {
                m(async move {
                    c.decline_handoff(maria(v1::DeclineHandoffRequest {
                        incident_id: open,
                        reason: "r".into(),
                        context: None,
                    }))
                    .await
                })
            },
        },
        Case {
            name: "cancel a handoff nobody asked for",
            code: Code::FailedPrecondition,
            says: "handoff.none_pending",
            call: |mut c, open, _| {
                m(async move {
                    c.cancel_handoff(maria(v1::CancelHandoffRequest {
                        incident_id: open,
                        reason: "r".into(),
                        context: None,
                    }))
                    .await
                })
            },
        },
        Case {
            name: "assign the commander role as a role",
            code: Code::FailedPrecondition,
            says: "role.commander_reserved",
            call: |mut c, open, _| {
                m(async move {
                    c.assign_role(maria(v1::AssignRoleRequest {
                        incident_id: open,
                        role: v1::IncidentRole::Commander as i32,
                        person: "omar".into(),
                        replaces: String::new(),
                        context: None,
                    }))
                    .await
                })
            },
        },
        Case {
            name: "oversized update",
            code: Code::InvalidArgument,
            says: "text is too large",
            call: |mut c, open, _| {
                m(async move {
                    c.post_update(maria(v1::PostUpdateRequest {
                        incident_id: open,
                        audience: v1::Audience::Internal as i32,
                        text: "x".repeat(4001),
                        context: None,
                    }))
                    .await
                })
            },
        },
        Case {
            name: "update without audience",
            code: Code::InvalidArgument,
            says: "audience",
            call: |mut c, open, _| {
                m(async move {
                    c.post_update(maria(v1::PostUpdateRequest {
                        incident_id: open,
                        audience: 0,
                        text: "x".into(),
                        context: None,
                    }))
                    .await
                })
            },
        },
        Case {
            name: "update on a closed incident",
            code: Code::FailedPrecondition,
            says: "update.closed",
            call: |mut c, _, done| {
                m(async move {
                    c.post_update(maria(v1::PostUpdateRequest {
                        incident_id: done,
                        audience: v1::Audience::Internal as i32,
                        text: "x".into(),
                        context: None,
                    }))
                    .await
                })
            },
        },
        Case {
            name: "impact with a bad customer",
            code: Code::InvalidArgument,
            says: "customers",
            call: |mut c, open, _| {
                m(async move {
                    c.record_customer_impact(maria(v1::RecordCustomerImpactRequest {
                        incident_id: open,
                        customers_affected: 1,
                        customers: vec![" ".into()],
                        multi_customer: false,
                        summary: "s".into(),
                        context: None,
                    }))
                    .await
                })
            },
        },
        Case {
            name: "mitigate without summary",
            code: Code::InvalidArgument,
            says: "summary",
            call: |mut c, open, _| {
                m(async move {
                    c.mitigate(maria(v1::MitigateRequest { incident_id: open, summary: String::new(), context: None }))
                        .await
                })
            },
        },
        Case {
            name: "resolve twice",
            code: Code::FailedPrecondition,
            says: "resolve.already_resolved",
            call: |mut c, _, done| {
                m(async move {
                    c.resolve(maria(v1::ResolveRequest { incident_id: done, summary: "again".into(), context: None }))
                        .await
                })
            },
        },
        Case {
            name: "reopen an open incident",
            code: Code::FailedPrecondition,
            says: "reopen.only_resolved_or_closed",
            call: |mut c, open, _| {
                m(async move {
                    c.reopen(maria(v1::ReopenRequest { incident_id: open, reason: "r".into(), context: None })).await
                })
            },
        },
        Case {
            name: "validate an unresolved incident",
            code: Code::FailedPrecondition,
            says: "validate.only_resolved",
            call: |mut c, open, _| {
                m(async move {
                    c.validate_resolution(maria(v1::ValidateResolutionRequest {
                        incident_id: open,
                        note: "n".into(),
                        context: None,
                    }))
                    .await
                })
            },
        },
        Case {
            name: "stale expected version",
            code: Code::Aborted,
            says: "is at version 2, not 1",
            call: |mut c, open, _| {
                m(async move {
                    c.mitigate(maria(v1::MitigateRequest {
                        incident_id: open,
                        summary: "s".into(),
                        context: ctx("", Some(1)),
                    }))
                    .await
                })
            },
        },
        Case {
            name: "get an unknown incident",
            code: Code::NotFound,
            says: "INC-404",
            call: |mut c, _, _| {
                m(async move { c.get_incident(v1::GetIncidentRequest { incident_id: "INC-404".into() }).await })
            },
        },
        Case {
            name: "history of an unknown incident",
            code: Code::NotFound,
            says: "INC-404",
            call: |mut c, _, _| {
                m(async move { c.get_history(v1::GetHistoryRequest { incident_id: "INC-404".into() }).await })
            },
        },
        Case {
            name: "list with a forged page token",
            code: Code::InvalidArgument,
            says: "page_token",
            call: |mut c, _, _| {
                m(async move {
                    c.list_incidents(v1::ListIncidentsRequest { page_token: "zzz".into(), ..Default::default() }).await
                })
            },
        },
        Case {
            name: "list with an unknown status",
            code: Code::InvalidArgument,
            says: "statuses",
            call: |mut c, _, _| {
                m(async move {
                    c.list_incidents(v1::ListIncidentsRequest { statuses: vec![42], ..Default::default() }).await
                })
            },
        },
    ];

    let server = Server::start(Default::default()).await;
    let mut client = server.client().await;
    let open = sev1(&mut client, "open incident").await;
    let done = sev1(&mut client, "closed incident").await;
    client
        .resolve(maria(v1::ResolveRequest { incident_id: done.clone(), summary: "s".into(), context: None }))
        .await
        .unwrap();
    client
        .validate_resolution(maria(v1::ValidateResolutionRequest {
            incident_id: done.clone(),
            note: "n".into(),
            context: None,
        }))
        .await
        .unwrap();
    for case in cases {
        let head = server.log.head();
        let status = (case.call)(client.clone(), open.clone(), done.clone()).await.expect_err(case.name);
        assert_eq!(status.code(), case.code, "{}: {}", case.name, status.message());
        assert!(
            status.message().contains(case.says),
            "{}: {:?} does not say {:?}",
            case.name,
            status.message(),
            case.says
        );
        assert_eq!(server.log.head(), head, "{}: the log head moved", case.name);
    }
}
