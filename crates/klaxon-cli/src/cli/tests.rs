use std::collections::HashMap;

use clap::Parser;
use clap::error::ErrorKind;
use klaxon_proto::v1;

use super::Cli;
use crate::commands::{Action, Rpc};

/// The context every case is built with (`--request-id req-1`).
fn ctx() -> Option<v1::CommandContext> {
    Some(v1::CommandContext { request_id: "req-1".into(), expected_version: None })
}

/// Parses `klaxon --request-id req-1 <argv>` into its action.
fn action(argv: &[&str]) -> Result<Action, clap::Error> {
    let args = ["klaxon", "--request-id", "req-1"].iter().chain(argv);
    let cli = Cli::try_parse_from(args)?;
    let context = cli.global.context();
    Ok(cli.command.action(context))
}

fn check(argv: &[&str], expected: Rpc) {
    let got = action(argv).unwrap_or_else(|e| panic!("{argv:?} did not parse: {e}"));
    assert_eq!(got, Action::Call(expected), "argv: {argv:?}");
}

#[test]
fn every_subcommand_builds_its_request() {
    use v1::*;
    let id = || "INC-1".to_string();
    let cases: Vec<(&[&str], Rpc)> = vec![
        (
            &["report", "--title", "Checkout down"],
            Rpc::Report(ReportRequest {
                context: ctx(),
                source: ReportSource::Unspecified as i32,
                title: "Checkout down".into(),
                ..Default::default()
            }),
        ),
        (
            &[
                "report",
                "--title",
                "T",
                "--description",
                "D",
                "--service",
                "checkout",
                "--customer",
                "acme",
                "--customer",
                "globex",
                "--label",
                "env=prod",
                "--label",
                "region=eu=west",
                "--dedup-key",
                "k1",
                "--source",
                "pager_duty",
                "--started-at",
                "2025-03-01T11:00:00+01:00",
            ],
            Rpc::Report(ReportRequest {
                context: ctx(),
                source: ReportSource::Pagerduty as i32,
                title: "T".into(),
                description: "D".into(),
                service: "checkout".into(),
                customers: vec!["acme".into(), "globex".into()],
                labels: HashMap::from([("env".into(), "prod".into()), ("region".into(), "eu=west".into())]),
                dedup_key: "k1".into(),
                started_at: Some(prost_types::Timestamp { seconds: 1_740_823_200, nanos: 0 }),
            }),
        ),
        (
            &["declare", "INC-1", "--severity", "sev-1"],
            Rpc::Declare(DeclareRequest { context: ctx(), incident_id: id(), severity: Severity::Sev1 as i32 }),
        ),
        (
            &["declare", "inc-1", "--severity", "2"],
            Rpc::Declare(DeclareRequest { context: ctx(), incident_id: id(), severity: Severity::Sev2 as i32 }),
        ),
        (
            &["severity", "set", "INC-1", "SEV3", "--reason", "only EU"],
            Rpc::OverrideSeverity(OverrideSeverityRequest {
                context: ctx(),
                incident_id: id(),
                severity: Severity::Sev3 as i32,
                reason: "only EU".into(),
            }),
        ),
        (
            &["assign", "INC-1", "alice"],
            Rpc::AssignCommander(AssignCommanderRequest {
                context: ctx(),
                incident_id: id(),
                commander: "alice".into(),
            }),
        ),
        (
            &["handoff", "request", "INC-1", "--to", "bob"],
            Rpc::RequestHandoff(RequestHandoffRequest { context: ctx(), incident_id: id(), to: "bob".into() }),
        ),
        (
            &["handoff", "accept", "INC-1"],
            Rpc::AcceptHandoff(AcceptHandoffRequest { context: ctx(), incident_id: id() }),
        ),
        (
            &["handoff", "decline", "INC-1", "--reason", "off shift"],
            Rpc::DeclineHandoff(DeclineHandoffRequest {
                context: ctx(),
                incident_id: id(),
                reason: "off shift".into(),
            }),
        ),
        (
            &["handoff", "cancel", "INC-1", "--reason", "stayed"],
            Rpc::CancelHandoff(CancelHandoffRequest { context: ctx(), incident_id: id(), reason: "stayed".into() }),
        ),
        (
            &["role", "INC-1", "communications-lead", "carol"],
            Rpc::AssignRole(AssignRoleRequest {
                context: ctx(),
                incident_id: id(),
                role: IncidentRole::CommunicationsLead as i32,
                person: "carol".into(),
                replaces: String::new(),
            }),
        ),
        (
            &["role", "INC-1", "scribe", "dan", "--replaces", "carol"],
            Rpc::AssignRole(AssignRoleRequest {
                context: ctx(),
                incident_id: id(),
                role: IncidentRole::Scribe as i32,
                person: "dan".into(),
                replaces: "carol".into(),
            }),
        ),
        (
            &["role", "INC-1", "scribe", "dan", "--remove"],
            Rpc::RemoveRole(RemoveRoleRequest {
                context: ctx(),
                incident_id: id(),
                role: IncidentRole::Scribe as i32,
                person: "dan".into(),
            }),
        ),
        (
            &["page", "INC-1", "--team", "search", "--reason", "owners"],
            Rpc::PageResponder(PageResponderRequest {
                context: ctx(),
                incident_id: id(),
                target: Some(page_responder_request::Target::Team("search".into())),
                reason: "owners".into(),
            }),
        ),
        (
            &["update", "INC-1", "Rolling back"],
            Rpc::PostUpdate(PostUpdateRequest {
                context: ctx(),
                incident_id: id(),
                audience: Audience::Internal as i32,
                text: "Rolling back".into(),
            }),
        ),
        (
            &["update", "INC-1", "ETA 30 min", "--audience", "company_wide"],
            Rpc::PostUpdate(PostUpdateRequest {
                context: ctx(),
                incident_id: id(),
                audience: Audience::CompanyWide as i32,
                text: "ETA 30 min".into(),
            }),
        ),
        (
            &[
                "impact",
                "INC-1",
                "--customers-affected",
                "1200",
                "--customer",
                "acme",
                "--multi-customer",
                "--summary",
                "EU checkout",
            ],
            Rpc::RecordCustomerImpact(RecordCustomerImpactRequest {
                context: ctx(),
                incident_id: id(),
                customers_affected: 1200,
                customers: vec!["acme".into()],
                multi_customer: true,
                summary: "EU checkout".into(),
            }),
        ),
        (
            &["mitigate", "INC-1", "--summary", "rolled back"],
            Rpc::Mitigate(MitigateRequest { context: ctx(), incident_id: id(), summary: "rolled back".into() }),
        ),
        (
            &["resolve", "INC-1", "--summary", "fixed"],
            Rpc::Resolve(ResolveRequest { context: ctx(), incident_id: id(), summary: "fixed".into() }),
        ),
        (
            &["reopen", "INC-1", "--reason", "back again"],
            Rpc::Reopen(ReopenRequest { context: ctx(), incident_id: id(), reason: "back again".into() }),
        ),
        (
            &["validate", "INC-1", "--note", "error rate flat"],
            Rpc::ValidateResolution(ValidateResolutionRequest {
                context: ctx(),
                incident_id: id(),
                note: "error rate flat".into(),
            }),
        ),
        (&["show", "INC-1"], Rpc::GetIncident(GetIncidentRequest { incident_id: id() })),
        (&["history", "INC-1"], Rpc::GetHistory(GetHistoryRequest { incident_id: id() })),
        (&["list"], Rpc::ListIncidents { request: ListIncidentsRequest::default(), all_pages: false }),
        (
            &[
                "list",
                "--status",
                "declared",
                "--status",
                "Mitigated",
                "--severity",
                "1",
                "--severity",
                "sev2",
                "--service",
                "checkout",
                "--limit",
                "20",
                "--all-pages",
            ],
            Rpc::ListIncidents {
                request: ListIncidentsRequest {
                    statuses: vec![IncidentStatus::Declared as i32, IncidentStatus::Mitigated as i32],
                    severities: vec![Severity::Sev1 as i32, Severity::Sev2 as i32],
                    service: "checkout".into(),
                    page_size: 20,
                    page_token: String::new(),
                    order: ListOrder::Newest as i32,
                },
                all_pages: true,
            },
        ),
        (
            &["queue", "--service", "checkout"],
            Rpc::ListIncidents {
                request: ListIncidentsRequest {
                    service: "checkout".into(),
                    order: ListOrder::Attention as i32,
                    ..Default::default()
                },
                all_pages: false,
            },
        ),
        (
            &["severity", "explain", "inc-1"],
            Rpc::ExplainSeverity(ExplainSeverityRequest { incident_id: id(), report: None }),
        ),
        (&["pages", "INC-1"], Rpc::ListPages(ListPagesRequest { incident_id: id() })),
        (
            &["ack", "INC-7-P1"],
            Rpc::Acknowledge(AcknowledgeRequest { page_id: "INC-7-P1".into(), request_id: "req-1".into() }),
        ),
        (
            &["ack", "inc-12-p30"],
            Rpc::Acknowledge(AcknowledgeRequest { page_id: "INC-12-P30".into(), request_id: "req-1".into() }),
        ),
        (&["oncall"], Rpc::WhoIsOnCall(WhoIsOnCallRequest { schedule: String::new(), at: None })),
        (&["oncall", "--at", "now"], Rpc::WhoIsOnCall(WhoIsOnCallRequest { schedule: String::new(), at: None })),
        (
            &["oncall", "payments-primary", "--at", "NOW"],
            Rpc::WhoIsOnCall(WhoIsOnCallRequest { schedule: "payments-primary".into(), at: None }),
        ),
        (
            &["oncall", "--at", "2025-03-01T11:00:00+01:00", "checkout"],
            Rpc::WhoIsOnCall(WhoIsOnCallRequest {
                schedule: "checkout".into(),
                at: Some(prost_types::Timestamp { seconds: 1_740_823_200, nanos: 0 }),
            }),
        ),
        (
            &["oncall", "checkout", "--at", "2025-03-01T10:00:00.5Z"],
            Rpc::WhoIsOnCall(WhoIsOnCallRequest {
                schedule: "checkout".into(),
                at: Some(prost_types::Timestamp { seconds: 1_740_823_200, nanos: 500_000_000 }),
            }),
        ),
    ];
    for (argv, expected) in cases {
        check(argv, expected);
    }
}

/// 2026-11-25T00:00:00Z.
const NOV_25: i64 = 1_795_564_800;

fn ts(seconds: i64) -> Option<prost_types::Timestamp> {
    Some(prost_types::Timestamp { seconds, nanos: 0 })
}

#[test]
fn noise_and_review_subcommands_build_their_requests() {
    use v1::edit_review_request::Edit;
    use v1::replay_timeline_request::AsOf;
    use v1::*;
    let edit = |incident: &str, edit: Edit| {
        Rpc::EditReview(EditReviewRequest { context: ctx(), incident_id: incident.into(), edit: Some(edit) })
    };
    let cases: Vec<(&[&str], Rpc)> = vec![
        (
            &["noise", "inc-7", "--reason", "flapping alert"],
            Rpc::MarkNoise(MarkNoiseRequest {
                context: ctx(),
                incident_id: "INC-7".into(),
                reason: "flapping alert".into(),
            }),
        ),
        (
            &["timeline", "INC-7"],
            Rpc::ReplayTimeline(ReplayTimelineRequest { incident_id: "INC-7".into(), as_of: None }),
        ),
        (
            &["timeline", "INC-7", "--as-of", "2026-11-25T11:00:00+01:00"],
            Rpc::ReplayTimeline(ReplayTimelineRequest {
                incident_id: "INC-7".into(),
                as_of: Some(AsOf::AsOfTime(ts(NOV_25 + 36_000).unwrap())),
            }),
        ),
        (
            &["timeline", "--as-of-position", "57", "inc-7"],
            Rpc::ReplayTimeline(ReplayTimelineRequest {
                incident_id: "INC-7".into(),
                as_of: Some(AsOf::AsOfPosition(57)),
            }),
        ),
        (&["metrics", "INC-7"], Rpc::GetMetrics(GetMetricsRequest { incident_id: "INC-7".into() })),
        (&["review", "show", "inc-7"], Rpc::GetReview(GetReviewRequest { incident_id: "INC-7".into() })),
        (&["review", "summary", "INC-7", "A bad deploy"], edit("INC-7", Edit::WriteSummary("A bad deploy".into()))),
        (
            &["review", "impact", "INC-7", "EU checkout down"],
            edit("INC-7", Edit::WriteImpact("EU checkout down".into())),
        ),
        (&["review", "factor", "INC-7", "No canary"], edit("INC-7", Edit::AddContributingFactor("No canary".into()))),
        (
            &["review", "action", "add", "INC-7", "Add a canary stage"],
            edit("INC-7", Edit::AddActionItem("Add a canary stage".into())),
        ),
        (
            &["review", "action", "add", "INC-7", "Add a canary stage", "--owner", "ana", "--due", "2026-12-01"],
            edit(
                "INC-7",
                Edit::NewActionItem(v1::NewActionItem {
                    title: "Add a canary stage".into(),
                    owner: "ana".into(),
                    due: "2026-12-01".into(),
                }),
            ),
        ),
        (
            &["review", "action", "assign", "inc-12-a3", "ana"],
            edit(
                "INC-12",
                Edit::AssignActionItem(AssignActionItem { item_id: "INC-12-A3".into(), owner: "ana".into() }),
            ),
        ),
        (
            &["review", "action", "due", "INC-7-A1", "2026-12-01"],
            edit(
                "INC-7",
                Edit::SetActionItemDue(SetActionItemDue { item_id: "INC-7-A1".into(), due: "2026-12-01".into() }),
            ),
        ),
        (
            &["review", "action", "due", "INC-7-A1", "2026-2-3"],
            edit(
                "INC-7",
                Edit::SetActionItemDue(SetActionItemDue { item_id: "INC-7-A1".into(), due: "2026-02-03".into() }),
            ),
        ),
        (&["review", "action", "done", "INC-7-A10"], edit("INC-7", Edit::CompleteActionItem("INC-7-A10".into()))),
        (&["review", "publish", "INC-7"], edit("INC-7", Edit::Publish(true))),
        (&["review", "export", "inc-7"], Rpc::ExportMarkdown(ExportMarkdownRequest { incident_id: "INC-7".into() })),
        (&["actions"], Rpc::ListActionItems(ListActionItemsRequest { open_only: false })),
        (&["actions", "--open"], Rpc::ListActionItems(ListActionItemsRequest { open_only: true })),
        (
            &["trends", "--from", "2026-11-25", "--to", "2026-12-01T00:00:00Z"],
            Rpc::Trends {
                request: TrendsRequest { from: ts(NOV_25), to: ts(NOV_25 + 6 * 86_400), ..Default::default() },
                csv: false,
            },
        ),
        (
            &[
                "trends",
                "--from",
                "2026-11-25",
                "--until",
                "2026-11-26",
                "--service",
                "payments",
                "--team",
                "money",
                "--severity",
                "sev2",
            ],
            Rpc::Trends {
                request: TrendsRequest {
                    from: ts(NOV_25),
                    to: ts(NOV_25 + 86_400),
                    service: "payments".into(),
                    team: "money".into(),
                    severity: v1::Severity::Sev2.into(),
                },
                csv: false,
            },
        ),
        (
            &["trends", "--csv", "--to", "2026-11-25T12:30:00+02:00", "--from", "2026-11-25T00:00:00.25Z"],
            Rpc::Trends {
                request: TrendsRequest {
                    from: Some(prost_types::Timestamp { seconds: NOV_25, nanos: 250_000_000 }),
                    to: ts(NOV_25 + 37_800),
                    ..Default::default()
                },
                csv: true,
            },
        ),
        (
            &["--json", "trends", "--from", "2026-11-25", "--to", "2026-11-26", "--csv"],
            Rpc::Trends {
                request: TrendsRequest { from: ts(NOV_25), to: ts(NOV_25 + 86_400), ..Default::default() },
                csv: true,
            },
        ),
    ];
    for (argv, expected) in cases {
        check(argv, expected);
    }
}

#[test]
fn oncall_subcommands_change_schedules_and_list_holes() {
    use v1::change_schedule_request::Change;
    let change = |change: Change| {
        Rpc::ChangeSchedule(v1::ChangeScheduleRequest {
            request_id: "req-1".into(),
            schedule: "payments-primary".into(),
            change: Some(change),
        })
    };
    const FROM: &str = "2026-11-25T00:00:00Z";
    const UNTIL: &str = "2026-11-25T08:00:00+01:00";
    let cases: Vec<(&[&str], Rpc)> = vec![
        (
            &["oncall", "who", "payments-primary"],
            Rpc::WhoIsOnCall(v1::WhoIsOnCallRequest { schedule: "payments-primary".into(), at: None }),
        ),
        (
            &[
                "oncall",
                "override",
                "--schedule",
                "payments-primary",
                "--who",
                "carl",
                "--from",
                FROM,
                "--until",
                UNTIL,
            ],
            change(Change::AddOverride(v1::AddOverride {
                who: "carl".into(),
                from: ts(NOV_25),
                until: ts(NOV_25 + 7 * 3600),
            })),
        ),
        (&["oncall", "override", "remove", "--schedule", "payments-primary", "O3"], change(Change::RemoveOverride(3))),
        (
            &["oncall", "swap", "request", "--schedule", "payments-primary", "--from", FROM, "--until", UNTIL],
            change(Change::RequestSwap(v1::RequestSwap {
                requester: String::new(),
                from: ts(NOV_25),
                until: ts(NOV_25 + 7 * 3600),
            })),
        ),
        (
            &[
                "oncall",
                "swap",
                "request",
                "--schedule",
                "payments-primary",
                "--for",
                "ana",
                "--from",
                FROM,
                "--until",
                UNTIL,
            ],
            change(Change::RequestSwap(v1::RequestSwap {
                requester: "ana".into(),
                from: ts(NOV_25),
                until: ts(NOV_25 + 7 * 3600),
            })),
        ),
        (
            &["oncall", "swap", "take", "--schedule", "payments-primary", "S2"],
            change(Change::TakeSwap(v1::TakeSwap { swap_id: 2, taker: String::new() })),
        ),
        (
            &["oncall", "swap", "take", "--schedule", "payments-primary", "2", "--for", "carl"],
            change(Change::TakeSwap(v1::TakeSwap { swap_id: 2, taker: "carl".into() })),
        ),
        (&["oncall", "swap", "cancel", "--schedule", "payments-primary", "s2"], change(Change::CancelSwap(2))),
        (&["oncall", "swap", "undo", "--schedule", "payments-primary", "S2"], change(Change::UndoSwap(2))),
        (
            &["oncall", "coverage", "--from", FROM, "--to", UNTIL],
            Rpc::Coverage(v1::CoverageRequest { from: ts(NOV_25), to: ts(NOV_25 + 7 * 3600) }),
        ),
    ];
    for (argv, expected) in cases {
        check(argv, expected);
    }
    for (argv, flag) in [
        (&["oncall", "override", "--schedule", "payments-primary", "--who", "carl", "--from", FROM][..], "--until"),
        (&["oncall", "swap", "undo", "--schedule", "payments-primary", "X2"][..], "NUMBER"),
        (&["oncall", "swap", "undo", "--schedule", "payments-primary", "0"][..], "NUMBER"),
        (&["oncall", "coverage", "--from", "yesterday", "--to", UNTIL][..], "--from"),
    ] {
        let err = action(argv).unwrap_err();
        assert!(err.to_string().contains(flag), "{argv:?}: {err}");
    }
}

#[test]
fn watch_subscribes_with_its_filter() {
    let all = v1::FeedFilter::default();
    assert_eq!(action(&["watch"]).unwrap(), Action::Watch(all));
    let filtered = v1::FeedFilter {
        min_severity: v1::Severity::Sev2 as i32,
        services: vec!["checkout".into(), "search".into()],
        customers: vec!["acme".into()],
        include_company_wide: true,
    };
    let argv = [
        "watch",
        "--min-severity",
        "sev2",
        "--service",
        "checkout",
        "--customer",
        "acme",
        "--service",
        "search",
        "--company-wide",
    ];
    assert_eq!(action(&argv).unwrap(), Action::Watch(filtered));
}

#[test]
fn global_flags_fill_the_context_and_may_follow_the_subcommand() {
    let cli = Cli::try_parse_from(["klaxon", "mitigate", "INC-9", "--summary", "s", "--expect-version", "7", "--json"])
        .unwrap();
    assert!(cli.global.json);
    let context = cli.global.context();
    assert_eq!(context.expected_version, Some(7));
    let id = uuid::Uuid::parse_str(&context.request_id).expect("a fresh request id is a UUID");
    assert_eq!(id.get_version_num(), 4);
}

#[test]
fn join_leaves_the_participant_to_the_server() {
    let expected = v1::JoinBridge {
        incident_id: "INC-4".into(),
        participant: String::new(),
        role: v1::IncidentRole::Scribe as i32,
    };
    let join = |join| Action::Join { join, note_ids: "req-1".into() };
    assert_eq!(action(&["join", "INC-4", "--role", "scribe"]).unwrap(), join(expected.clone()));
    let without_role = v1::JoinBridge { role: v1::IncidentRole::Unspecified as i32, ..expected };
    assert_eq!(action(&["join", "INC-4"]).unwrap(), join(without_role));
}

#[test]
fn bad_values_are_usage_errors_naming_the_flag() {
    let cases: &[(&[&str], &str)] = &[
        (&["declare", "INC-1", "--severity", "7"], "--severity"),
        (&["declare", "INC-1"], "--severity"),
        (&["declare", "INC-01", "--severity", "1"], "<INCIDENT>"),
        (&["show", "42"], "<INCIDENT>"),
        (&["severity", "set", "INC-1", "sev5", "--reason", "r"], "<SEVERITY>"),
        (&["role", "INC-1", "chef", "carol"], "<ROLE>"),
        (&["update", "INC-1", "t", "--audience", "everyone"], "--audience"),
        (&["report", "--title", "t", "--source", "fax"], "--source"),
        (&["report", "--title", "t", "--label", "=v"], "--label"),
        (&["report", "--title", "t", "--started-at", "yesterday"], "--started-at"),
        (&["report"], "--title"),
        (&["list", "--status", "open"], "--status"),
        (&["list", "--limit", "0"], "--limit"),
        (&["list", "--limit", "501"], "--limit"),
        (&["impact", "INC-1", "--customers-affected", "-3", "--summary", "s"], "--customers-affected"),
        (&["--server", "127.0.0.1:7600", "list"], "--server"),
        (&["--server", "ftp://klaxon.example", "list"], "--server"),
        (&["--as", "", "list"], "--as"),
        (&["--as", "zoë", "list"], "--as"),
        (&["--expect-version", "x", "list"], "--expect-version"),
        (&["frobnicate"], "frobnicate"),
        (&["severity", "explain", "INC-x"], "[INCIDENT]"),
        (&["severity", "explain"], "<INCIDENT>"),
        (&["severity", "explain", "INC-1", "--report", "Cargo.toml"], "--report"),
        (&["severity", "explain", "--report", "/nonexistent/report.json"], "--report"),
        (&["policy", "test"], "--config"),
        (&["policy", "test", "--config", "/nonexistent/klaxon.toml"], "--config"),
        (&["policy", "test", "--config", "Cargo.toml", "--format", "xml"], "--format"),
        (&["policy", "test", "--config", "Cargo.toml", "--from", "yesterday"], "--from"),
        (&["policy", "lint", "--config", "Cargo.toml", "--days", "0"], "--days"),
        (&["pages", "INC-0"], "<INCIDENT>"),
        (&["pages"], "<INCIDENT>"),
        (&["ack"], "<PAGE>"),
        (&["ack", "INC-7"], "<PAGE>"),
        (&["ack", "INC-7-P0"], "<PAGE>"),
        (&["ack", "INC-7-P01"], "<PAGE>"),
        (&["ack", "INC-07-P1"], "<PAGE>"),
        (&["ack", "INC-7-P"], "<PAGE>"),
        (&["ack", "INC-7-X1"], "<PAGE>"),
        (&["ack", "INC-7-P1x"], "<PAGE>"),
        (&["ack", "INC-7-P-1"], "<PAGE>"),
        (&["ack", "7-P1"], "<PAGE>"),
        (&["ack", "INC-7-P99999999999999999999"], "<PAGE>"),
        (&["oncall", ""], "[SCHEDULE]"),
        (&["oncall", "--at", "tomorrow"], "--at"),
        (&["oncall", "--at", "2025-03-01 10:00"], "--at"),
        (&["oncall", "--at"], "--at"),
        (&["oncall", "a", "b"], "b"),
        (&["noise", "INC-7"], "--reason"),
        (&["noise", "7", "--reason", "r"], "<INCIDENT>"),
        (&["watch", "--min-severity", "5"], "--min-severity"),
        (&["watch", "--min-severity"], "--min-severity"),
        (&["watch", "INC-7"], "INC-7"),
        (&["timeline"], "<INCIDENT>"),
        (&["timeline", "INC-7-A1"], "<INCIDENT>"),
        (&["timeline", "INC-7", "--as-of", "2026-11-25"], "--as-of"),
        (&["timeline", "INC-7", "--as-of", "yesterday"], "--as-of"),
        (&["timeline", "INC-7", "--as-of-position", "x"], "--as-of-position"),
        (&["timeline", "INC-7", "--as-of-position", "3", "--as-of", "2026-11-25T10:00:00Z"], "--as-of"),
        (&["metrics", "INC-0"], "<INCIDENT>"),
        (&["review"], "review"),
        (&["review", "show", "INC-x"], "<INCIDENT>"),
        (&["review", "summary", "INC-7"], "<TEXT>"),
        (&["review", "impact", "incident-7", "t"], "<INCIDENT>"),
        (&["review", "factor", "INC-7-A1", "t"], "<INCIDENT>"),
        (&["review", "action", "add", "INC-7"], "<TITLE>"),
        (&["review", "action", "add", "INC-7-A1", "t"], "<INCIDENT>"),
        (&["review", "action", "assign", "INC-7", "ana"], "<ITEM>"),
        (&["review", "action", "assign", "INC-7-A1"], "<OWNER>"),
        (&["review", "action", "assign", "INC-7-P1", "ana"], "<ITEM>"),
        (&["review", "action", "assign", "INC-7-A0", "ana"], "<ITEM>"),
        (&["review", "action", "assign", "INC-7-A01", "ana"], "<ITEM>"),
        (&["review", "action", "assign", "INC-07-A1", "ana"], "<ITEM>"),
        (&["review", "action", "assign", "INC-7-A", "ana"], "<ITEM>"),
        (&["review", "action", "done", "INC-7-A4294967296"], "<ITEM>"),
        (&["review", "action", "done", "7-A1"], "<ITEM>"),
        (&["review", "action", "due", "INC-7-A1", "2026-02-30"], "<DUE>"),
        (&["review", "action", "due", "INC-7-A1", "2026-12-01T00:00:00Z"], "<DUE>"),
        (&["review", "action", "due", "INC-7-A1", "next week"], "<DUE>"),
        (&["review", "action", "due", "INC-7-A1"], "<DUE>"),
        (&["review", "action", "frob", "INC-7-A1"], "frob"),
        (&["review", "publish", "INC-7-A1"], "<INCIDENT>"),
        (&["review", "export"], "<INCIDENT>"),
        (&["actions", "--open", "yes"], "yes"),
        (&["trends", "--to", "2026-12-01"], "--from"),
        (&["trends", "--from", "2026-11-25"], "--to"),
        (&["trends", "--from", "2026-13-01", "--to", "2026-12-01"], "--from"),
        (&["trends", "--from", "2026-11-25", "--to", "December"], "--to"),
        (&["trends", "--from", "2026-11-25", "--to", "2026-12-01", "--severity", "5"], "--severity"),
        (&["trends", "--from", "2026-11-25", "--to", "2026-12-01 10:00"], "--to"),
    ];
    for (argv, flag) in cases {
        let err = action(argv).expect_err(&format!("{argv:?} should be a usage error"));
        assert_eq!(err.exit_code(), 2, "{argv:?}");
        assert_ne!(err.kind(), ErrorKind::DisplayHelp, "{argv:?}");
        let text = err.to_string();
        assert!(text.contains(flag), "{argv:?}: {text:?} should name {flag}");
    }
}

#[test]
fn the_token_becomes_a_bearer_header_from_the_flag_or_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, "klx_fromfile\n").unwrap();
    let file = file.to_str().unwrap();
    let parse = |argv: &[&str]| Cli::try_parse_from(["klaxon"].iter().chain(argv));
    let header = |cli: Cli| cli.global.credentials().map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(header(parse(&["--token", "klx_flag", "list"]).unwrap()).as_deref(), Some("Bearer klx_flag"));
    assert_eq!(header(parse(&["--token-file", file, "list"]).unwrap()).as_deref(), Some("Bearer klx_fromfile"));
    let both = parse(&["--token", "klx_flag", "--token-file", file, "list"]).unwrap();
    assert_eq!(header(both).as_deref(), Some("Bearer klx_flag"), "the token itself wins over the file");
    for bad in [&["--token", "has space", "list"][..], &["--token-file", "/nonexistent/token", "list"]] {
        let err = parse(bad).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ValueValidation, "{bad:?}");
    }
}

#[test]
fn client_certificate_files_are_read_and_checked_while_parsing() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_owned()
    };
    // PEM sections (the DER inside is rustls's to judge, at the handshake).
    let cert = write("client.pem", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n");
    let key = write("client.key", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n");
    let junk = write("junk.pem", "not PEM at all\n");
    let parse = |argv: &[&str]| Cli::try_parse_from(["klaxon"].iter().chain(argv));

    let cli = parse(&["list", "--client-cert", &cert, "--client-key", &key]).unwrap();
    assert!(cli.global.tls().identity.is_some());
    assert!(parse(&["list"]).unwrap().global.tls().identity.is_none());

    let missing = "/nonexistent/client.pem";
    let cases: &[(&[&str], ErrorKind, &str)] = &[
        (&["--client-cert", missing, "--client-key", &key, "list"], ErrorKind::ValueValidation, "--client-cert"),
        (&["--client-cert", &cert, "--client-key", missing, "list"], ErrorKind::ValueValidation, "--client-key"),
        (&["--client-cert", &junk, "--client-key", &key, "list"], ErrorKind::ValueValidation, "--client-cert"),
        (&["--client-cert", &cert, "--client-key", &junk, "list"], ErrorKind::ValueValidation, "--client-key"),
        // A certificate is not a key.
        (&["--client-cert", &cert, "--client-key", &cert, "list"], ErrorKind::ValueValidation, "--client-key"),
        (&["--client-cert", &cert, "list"], ErrorKind::MissingRequiredArgument, "--client-key"),
        (&["list", "--client-key", &key], ErrorKind::MissingRequiredArgument, "--client-cert"),
    ];
    for (argv, kind, flag) in cases {
        let err = parse(argv).expect_err(&format!("{argv:?} should be a usage error"));
        assert_eq!((err.kind(), err.exit_code()), (*kind, 2), "{argv:?}: {err}");
        let text = err.to_string();
        assert!(text.contains(flag), "{argv:?}: {text:?} should name {flag}");
    }
}

#[test]
fn help_documents_the_exit_codes() {
    let err = Cli::try_parse_from(["klaxon", "--help"]).unwrap_err();
    let help = err.to_string();
    for code in ["0 ", "1 ", "2 ", "3 ", "4 ", "5 "] {
        assert!(help.contains(&format!("\n  {code}")), "exit code {code} missing from --help");
    }
}

/// A subcommand's help lists its own options first and the flags every
/// subcommand takes after them, under their own heading.
#[test]
fn help_puts_a_subcommands_own_options_before_the_global_ones() {
    let help = Cli::try_parse_from(["klaxon", "timeline", "--help"]).unwrap_err().to_string();
    let at = |text: &str| help.find(text).unwrap_or_else(|| panic!("{text:?} missing from:\n{help}"));
    let global = at("\nGlobal options:\n");
    assert!(at("--as-of <TIME>") < global && at("--as-of-position <N>") < global, "{help}");
    assert!(at("--server <URL>") > global && at("--json") > global && at("--request-id <ID>") > global, "{help}");
}

#[test]
fn clap_definitions_are_consistent() {
    use clap::CommandFactory;
    Cli::command().debug_assert();
}

/// Free text is refused before sending, by the server's rule and in its
/// words; everything else about a request is the server's to judge.
#[test]
fn free_text_is_checked_by_the_servers_rule_before_sending() {
    let refused = |argv: &[&str]| match action(argv).unwrap() {
        Action::Call(rpc) => rpc.check_text().err().map(|e| e.to_string()),
        other => panic!("{other:?}"),
    };
    assert_eq!(
        refused(&["report", "--title", "\u{0}\u{1}\u{2}"]).as_deref(),
        Some("invalid title: must be one line of text without control characters; character 1 is U+0000")
    );
    assert_eq!(refused(&["report", "--title", "   "]).as_deref(), Some("invalid title: must not be blank"));
    assert_eq!(
        refused(&["update", "INC-1", "bell\u{7}"]).as_deref(),
        Some("invalid text: must be text without control characters other than newline and tab; character 5 is U+0007")
    );
    assert_eq!(
        refused(&["review", "action", "add", "INC-1", "two\nlines"]).as_deref(),
        Some("invalid add_action_item: must be one line of text without control characters; character 4 is U+000A")
    );
    let long = "x".repeat(4001);
    assert_eq!(
        refused(&["resolve", "INC-1", "--summary", &long]).as_deref(),
        Some("summary is too large: 4001 > 4000")
    );
    assert_eq!(refused(&["update", "INC-1", "line one\n\tline two"]), None);
    assert_eq!(refused(&["declare", "INC-1", "--severity", "1"]), None);
    assert_eq!(refused(&["report", "--title", "  Checkout down  "]), None, "trimming is the server's");
}
