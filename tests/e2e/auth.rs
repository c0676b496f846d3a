//! Authentication and authorization against real processes: the full
//! RPC × role × scope matrix, tokens made and revoked with `klaxond token`,
//! the actor taken from the token, and the HTTP endpoints.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use klaxon_auth::Role;
use klaxon_auth::policy::{RULES, Rule};
use klaxon_proto::v1;
use klaxon_tests::alertmanager::http_as;
use klaxon_tests::auth::{SERVICE, token};
use klaxon_tests::config::Paged;
use klaxon_tests::nats::NatsServer;
use klaxon_tests::{Klaxond, binary, klaxon, klaxon_json, klaxon_ok};
use prost::Message;
use tonic::Code;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::transport::Channel;

/// A second team's service next to the paging fixture's payments (team
/// payments, tier 1, ana on call, a Sev-1 rule and a webhook for pages).
const SEARCH: &str = r#"
[[services]]
name = "search"
team = "search"
tier = 2
escalation_policy = "payments"
"#;

/// Passes messages through as bytes, so that one client calls any method.
#[derive(Clone, Copy, Default)]
struct Raw;

impl Codec for Raw {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = Raw;
    type Decoder = Raw;
    fn encoder(&mut self) -> Raw {
        Raw
    }
    fn decoder(&mut self) -> Raw {
        Raw
    }
}

impl Encoder for Raw {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        use bytes::BufMut;
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for Raw {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, tonic::Status> {
        use bytes::Buf;
        Ok(Some(src.copy_to_bytes(src.remaining()).to_vec()))
    }
}

/// How a method is called.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shape {
    Unary,
    ServerStream,
    Bidi,
}

/// What the matrix targets: an incident of team payments and its page.
struct Target {
    incident: String,
    page: String,
}

/// A request for `method`, touching the target where the method takes one.
fn request(method: &str, t: &Target) -> (Shape, Vec<u8>) {
    let id = t.incident.clone();
    let ctx = || Some(v1::CommandContext { request_id: String::new(), expected_version: None });
    let name = method.rsplit('/').next().expect("a method name");
    let service = method.trim_start_matches('/').split('/').next().expect("a service");
    let unary = |m: &dyn Fn() -> Vec<u8>| (Shape::Unary, m());
    match (service, name) {
        ("klaxon.v1.Incidents", "Report") => unary(&|| {
            v1::ReportRequest { title: "matrix".into(), service: "payments".into(), ..Default::default() }
                .encode_to_vec()
        }),
        ("klaxon.v1.Incidents", "Declare") => unary(&|| {
            v1::DeclareRequest { incident_id: id.clone(), severity: v1::Severity::Sev2 as i32, context: ctx() }
                .encode_to_vec()
        }),
        ("klaxon.v1.Incidents", "OverrideSeverity") => unary(&|| {
            v1::OverrideSeverityRequest {
                incident_id: id.clone(),
                severity: v1::Severity::Sev1 as i32,
                reason: "matrix".into(),
                context: ctx(),
            }
            .encode_to_vec()
        }),
        ("klaxon.v1.Incidents", "AssignCommander") => unary(&|| {
            v1::AssignCommanderRequest { incident_id: id.clone(), commander: "maria".into(), context: ctx() }
                .encode_to_vec()
        }),
        ("klaxon.v1.Incidents", "RequestHandoff") => unary(&|| {
            v1::RequestHandoffRequest { incident_id: id.clone(), to: "omar".into(), context: ctx() }.encode_to_vec()
        }),
        ("klaxon.v1.Incidents", "AcceptHandoff") => {
            unary(&|| v1::AcceptHandoffRequest { incident_id: id.clone(), context: ctx() }.encode_to_vec())
        }
        ("klaxon.v1.Incidents", "DeclineHandoff") => unary(&|| {
            v1::DeclineHandoffRequest { incident_id: id.clone(), reason: "busy".into(), context: ctx() }.encode_to_vec()
        }),
        ("klaxon.v1.Incidents", "CancelHandoff") => unary(&|| {
            v1::CancelHandoffRequest { incident_id: id.clone(), reason: "stay".into(), context: ctx() }.encode_to_vec()
        }),
        ("klaxon.v1.Incidents", "AssignRole") => unary(&|| {
            v1::AssignRoleRequest {
                incident_id: id.clone(),
                role: v1::IncidentRole::Scribe as i32,
                person: "li".into(),
                replaces: String::new(),
                context: ctx(),
            }
            .encode_to_vec()
        }),
        ("klaxon.v1.Incidents", "RemoveRole") => unary(&|| {
            v1::RemoveRoleRequest {
                incident_id: id.clone(),
                role: v1::IncidentRole::Scribe as i32,
                person: "li".into(),
                context: ctx(),
            }
            .encode_to_vec()
        }),
        ("klaxon.v1.Incidents", "PostUpdate") => unary(&|| {
            v1::PostUpdateRequest {
                incident_id: id.clone(),
                audience: v1::Audience::Internal as i32,
                text: "matrix".into(),
                context: ctx(),
            }
            .encode_to_vec()
        }),
        ("klaxon.v1.Incidents", "RecordCustomerImpact") => unary(&|| {
            v1::RecordCustomerImpactRequest {
                incident_id: id.clone(),
                customers_affected: 3,
                summary: "matrix".into(),
                context: ctx(),
                ..Default::default()
            }
            .encode_to_vec()
        }),
        ("klaxon.v1.Incidents", "Mitigate") => unary(&|| {
            v1::MitigateRequest { incident_id: id.clone(), summary: "matrix".into(), context: ctx() }.encode_to_vec()
        }),
        ("klaxon.v1.Incidents", "Resolve") => unary(&|| {
            v1::ResolveRequest { incident_id: id.clone(), summary: "matrix".into(), context: ctx() }.encode_to_vec()
        }),
        ("klaxon.v1.Incidents", "Reopen") => unary(&|| {
            v1::ReopenRequest { incident_id: id.clone(), reason: "matrix".into(), context: ctx() }.encode_to_vec()
        }),
        ("klaxon.v1.Incidents", "ValidateResolution") => unary(&|| {
            v1::ValidateResolutionRequest { incident_id: id.clone(), note: "matrix".into(), context: ctx() }
                .encode_to_vec()
        }),
        ("klaxon.v1.Incidents", "MarkNoise") => unary(&|| {
            v1::MarkNoiseRequest { incident_id: id.clone(), reason: "matrix".into(), context: ctx() }.encode_to_vec()
        }),
        ("klaxon.v1.Incidents", "PageResponder") => unary(&|| {
            v1::PageResponderRequest {
                incident_id: id.clone(),
                target: Some(v1::page_responder_request::Target::Person("li".into())),
                reason: "matrix".into(),
                context: ctx(),
            }
            .encode_to_vec()
        }),
        ("klaxon.v1.Incidents", "GetIncident") => {
            unary(&|| v1::GetIncidentRequest { incident_id: id.clone() }.encode_to_vec())
        }
        ("klaxon.v1.Incidents", "ListIncidents") => unary(&|| v1::ListIncidentsRequest::default().encode_to_vec()),
        ("klaxon.v1.Incidents", "GetHistory") => {
            unary(&|| v1::GetHistoryRequest { incident_id: id.clone() }.encode_to_vec())
        }
        // Opened by every role that sends a command; the command it carries
        // (a report) is judged by its own row (see `judged_by`).
        ("klaxon.v1.Incidents", "Execute") => {
            let report = v1::ReportRequest { title: "matrix".into(), service: "payments".into(), ..Default::default() };
            let envelope = v1::CommandEnvelope { tag: 1, command: Some(v1::command_envelope::Command::Report(report)) };
            (Shape::Bidi, envelope.encode_to_vec())
        }
        ("klaxon.v1.Bridge", "Join") => {
            let join = v1::JoinBridge { incident_id: id.clone(), participant: String::new(), role: 0 };
            let message =
                v1::BridgeRequest { message: Some(v1::bridge_request::Message::Join(join)), request_id: String::new() };
            (Shape::Bidi, message.encode_to_vec())
        }
        ("klaxon.v1.SeverityEvaluator", "Explain") => {
            unary(&|| v1::ExplainSeverityRequest { incident_id: id.clone(), report: None }.encode_to_vec())
        }
        // An empty candidate: INVALID_ARGUMENT once through, nothing read.
        ("klaxon.v1.SeverityEvaluator", "TestPolicy") => unary(&|| v1::TestPolicyRequest::default().encode_to_vec()),
        // Reads the running configuration and the schedules' streams; writes nothing.
        ("klaxon.v1.SeverityEvaluator", "LintPolicy") => unary(&|| v1::LintPolicyRequest::default().encode_to_vec()),
        ("klaxon.v1.Paging", "Acknowledge") => {
            unary(&|| v1::AcknowledgeRequest { page_id: t.page.clone(), request_id: String::new() }.encode_to_vec())
        }
        ("klaxon.v1.Paging", "WhoIsOnCall") => unary(&|| v1::WhoIsOnCallRequest::default().encode_to_vec()),
        ("klaxon.v1.Paging", "ListPages") => {
            unary(&|| v1::ListPagesRequest { incident_id: id.clone() }.encode_to_vec())
        }
        // Cancelling a swap that does not exist: reaches paging, writes nothing.
        ("klaxon.v1.Paging", "ChangeSchedule") => unary(&|| {
            v1::ChangeScheduleRequest {
                request_id: String::new(),
                schedule: "payments-primary".into(),
                change: Some(v1::change_schedule_request::Change::CancelSwap(1)),
            }
            .encode_to_vec()
        }),
        ("klaxon.v1.Paging", "Coverage") => unary(&|| {
            let from = prost_types::Timestamp { seconds: 1_795_564_800, nanos: 0 };
            let to = prost_types::Timestamp { seconds: 1_795_564_800 + 3600, nanos: 0 };
            v1::CoverageRequest { from: Some(from), to: Some(to) }.encode_to_vec()
        }),
        ("klaxon.v1.StatusFeed", "Subscribe") => (Shape::ServerStream, v1::FeedFilter::default().encode_to_vec()),
        ("klaxon.v1.Review", "ReplayTimeline") => {
            (Shape::ServerStream, v1::ReplayTimelineRequest { incident_id: id.clone(), as_of: None }.encode_to_vec())
        }
        ("klaxon.v1.Review", "GetMetrics") => {
            unary(&|| v1::GetMetricsRequest { incident_id: id.clone() }.encode_to_vec())
        }
        ("klaxon.v1.Review", "GetReview") => {
            unary(&|| v1::GetReviewRequest { incident_id: id.clone() }.encode_to_vec())
        }
        ("klaxon.v1.Review", "EditReview") => unary(&|| {
            v1::EditReviewRequest {
                context: ctx(),
                incident_id: id.clone(),
                edit: Some(v1::edit_review_request::Edit::WriteSummary("matrix".into())),
            }
            .encode_to_vec()
        }),
        ("klaxon.v1.Review", "ListActionItems") => unary(&|| v1::ListActionItemsRequest::default().encode_to_vec()),
        ("klaxon.v1.Review", "ExportMarkdown") => {
            unary(&|| v1::ExportMarkdownRequest { incident_id: id.clone() }.encode_to_vec())
        }
        ("klaxon.v1.Review", "Trends") => unary(&|| v1::TrendsRequest::default().encode_to_vec()),
        ("klaxon.v1.Review", "Audit") => unary(&|| v1::AuditRequest::default().encode_to_vec()),
        ("klaxon.v1.EventLog", "Subscribe") => {
            (Shape::ServerStream, v1::LogSubscribeRequest { from: 1 }.encode_to_vec())
        }
        // The log server's other methods: an empty request is a valid call
        // (or a precise InvalidArgument), which is all the matrix needs.
        ("klaxon.v1.EventLog", _) => unary(&Vec::new),
        // The log group's: an empty Raft message does not decode, node 0
        // cannot be added or removed; Status answers. Nothing changes.
        ("klaxon.v1.LogGroup", _) => unary(&Vec::new),
        other => panic!("no request for {other:?}: add one so the matrix covers it"),
    }
}

/// What came of one call.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Outcome {
    /// The authentication layer refused it: no or an unknown token.
    Unauthenticated,
    /// The policy refused it: the role, or the team scope.
    Denied,
    /// It reached the service (whatever the service then answered).
    Reached(Code),
}

/// The principal for a role in or out of the target's team (payments).
fn principal(role: Role, in_scope: bool) -> String {
    format!("{}-{}", role.name(), if in_scope { "payments" } else { "search" })
}

/// Calls `method` with `authorization` (none, or a header value).
async fn call(channel: Channel, method: &str, shape: Shape, body: Vec<u8>, authorization: Option<&str>) -> Outcome {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.expect("the channel is ready");
    let path: http::uri::PathAndQuery = method.parse().expect("a method path");
    let authorize = |metadata: &mut tonic::metadata::MetadataMap| {
        if let Some(value) = authorization {
            metadata.insert("authorization", value.parse().expect("header text"));
        }
    };
    let answer = match shape {
        Shape::Unary => {
            let mut request = tonic::Request::new(body);
            authorize(request.metadata_mut());
            grpc.unary(request, path, Raw).await.map(|_| ())
        }
        Shape::ServerStream => {
            let mut request = tonic::Request::new(body);
            authorize(request.metadata_mut());
            grpc.server_streaming(request, path, Raw).await.map(|_| ())
        }
        Shape::Bidi => {
            // The stream stays open until the answer came.
            let (tx, rx) = tokio::sync::mpsc::channel(1);
            tx.send(body).await.expect("queue the join");
            let mut request = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(rx));
            authorize(request.metadata_mut());
            let answer = grpc.streaming(request, path, Raw).await;
            let answer = match answer {
                Ok(mut stream) => match stream.get_mut().message().await {
                    // A command of a stream is refused in its outcome.
                    Ok(Some(first)) if method == EXECUTE => {
                        match v1::CommandOutcome::decode(first.as_slice()).expect("an outcome").outcome {
                            Some(v1::command_outcome::Outcome::Error(e)) => {
                                Err(klaxon_proto::status::from_command_error(&e))
                            }
                            _ => Ok(()),
                        }
                    }
                    other => other.map(|_| ()),
                },
                Err(status) => Err(status),
            };
            drop(tx);
            answer
        }
    };
    match answer {
        Ok(()) => Outcome::Reached(Code::Ok),
        Err(s) if s.code() == Code::Unauthenticated => Outcome::Unauthenticated,
        // The policy's refusals name the principal and the rule; a service's
        // own PermissionDenied (paging: "only they or a paging manager") is
        // a call that got through.
        Err(s)
            if s.code() == Code::PermissionDenied
                && (s.message().contains(" may not call ") || s.message().contains(" may not act on ")) =>
        {
            Outcome::Denied
        }
        Err(s) => Outcome::Reached(s.code()),
    }
}

const EXECUTE: &str = "/klaxon.v1.Incidents/Execute";

/// The row a call is judged by: its own, but for `Execute`'s cells that of
/// the command they carry (a report), as each command of a stream is
/// authorized as its unary call.
fn judged_by(rule: &'static Rule) -> &'static Rule {
    if rule.method == EXECUTE {
        return klaxon_auth::policy::rule_of("/klaxon.v1.Incidents/Report").expect("Report's row");
    }
    rule
}

/// What the table says a cell must be.
fn expected(rule: &Rule, role: Role, in_scope: bool) -> Outcome {
    if !rule.roles.contains(&role) || (rule.scoped && !in_scope) { Outcome::Denied } else { Outcome::Reached(Code::Ok) }
}

/// Every method of `klaxon.v1` in the protocol files, as `/pkg.Service/Method`.
fn proto_methods() -> BTreeSet<String> {
    let set = prost_types::FileDescriptorSet::decode(klaxon_proto::FILE_DESCRIPTOR_SET).expect("the descriptor set");
    let mut methods = BTreeSet::new();
    for file in set.file {
        for service in &file.service {
            for method in &service.method {
                methods.insert(format!("/{}.{}/{}", file.package(), service.name(), method.name()));
            }
        }
    }
    methods
}

fn head(metrics_address: &str) -> f64 {
    klaxon_tests::metrics::scrape(metrics_address)["klaxon_log_head"]
}

/// The barrier: waits until every service has processed the log (the
/// services' reactions to the setup have landed).
fn settle(metrics_address: &str) -> f64 {
    klaxon_tests::metrics::settle(metrics_address, &[metrics_address]) as f64
}

#[test]
fn every_rpc_role_and_scope_gets_what_the_table_says_and_refusals_write_nothing() {
    // Every method in the protocol files has exactly one row.
    let table: BTreeSet<String> = RULES.iter().map(|r| r.method.to_owned()).collect();
    assert_eq!(proto_methods(), table, "the policy table and the protocol files list different methods");

    let paged = Paged::start(600, false, SEARCH);
    let dir = paged.dir.path();
    let up = Klaxond::start_with_env(&dir.join("data"), &paged.config_args(), &paged.env());
    let metrics = up.http_address.clone().expect("up serves metrics on its HTTP address");
    // The log server, for klaxon.v1.EventLog (not served by `up`).
    let nats = NatsServer::start(&dir.join("nats"));
    let log_data = dir.join("log").display().to_string();
    let [config_flag, config] = paged.config_args();
    let log = Klaxond::serve(
        "log",
        &[config_flag, config, "--data-dir", &log_data, "--nats", &nats.url, "--metrics-listen", "127.0.0.1:0"],
        &paged.env(),
    );
    let log_metrics = log.http_address.clone().expect("the log server serves metrics");
    // A log group of one, for klaxon.v1.LogGroup.
    let group_address = klaxon_tests::ports::address();
    let group_config = dir.join("group.toml");
    std::fs::write(
        &group_config,
        // Its own NATS prefix: the log server above relays its records
        // (the tokens it recorded at start) to the default one.
        format!(
            "[cluster]\nprefix = \"group\"\n\n[log_group]\nnode_id = 1\nnodes = [{{ id = 1, address = \"{group_address}\" }}]\n"
        ),
    )
    .unwrap();
    let (group_config, group_data) = (group_config.display().to_string(), dir.join("group").display().to_string());
    let group = Klaxond::serve_on(
        "log",
        &group_address,
        &["--config", &group_config, "--data-dir", &group_data, "--nats", &nats.url, "--metrics-listen", "127.0.0.1:0"],
        &[],
    );
    let group_metrics = group.http_address.clone().expect("the group node serves metrics");

    // The target: a payments Sev-1 with a page to ana.
    let out = klaxon_ok(
        &up.url,
        "monitor",
        &["report", "--title", "checkout down", "--service", "payments", "--customer", "acme", "--customer", "globex"],
    );
    let incident = out.split_whitespace().next().expect("the incident id").to_owned();
    let deadline = Instant::now() + Duration::from_secs(30);
    let page = loop {
        let pages = klaxon_json(&up.url, "maria", &["pages", &incident]);
        if let Some(id) = pages["pages"][0]["page_id"].as_str() {
            break id.to_owned();
        }
        assert!(Instant::now() < deadline, "no page for {incident}: {pages}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let target = Target { incident, page };

    let runtime = &paged.runtime;
    let channel = |url: &str| {
        let url = url.to_owned();
        runtime.block_on(async move { tonic::transport::Endpoint::from_shared(url).unwrap().connect().await.unwrap() })
    };
    let (up_channel, log_channel, group_channel) = (channel(&up.url), channel(&log.url), channel(&group.url));
    let where_ = |method: &str| {
        if method.starts_with("/klaxon.v1.LogGroup/") {
            (group_channel.clone(), group_metrics.as_str())
        } else if method.starts_with("/klaxon.v1.EventLog/") {
            (log_channel.clone(), log_metrics.as_str())
        } else {
            (up_channel.clone(), metrics.as_str())
        }
    };

    // Each cell: (method, caller, expected). Callers: each role in and out
    // of the target's team, no token, and a token nobody issued.
    let bad = format!("Bearer {}", klaxon_auth::tokens::generate());
    let mut cells = Vec::new();
    for rule in RULES {
        for role in Role::ALL {
            for in_scope in [true, false] {
                let caller = format!("Bearer {}", token(&principal(role, in_scope)));
                cells.push((
                    rule,
                    format!("{} ({})", principal(role, in_scope), role),
                    Some(caller),
                    expected(judged_by(rule), role, in_scope),
                ));
            }
        }
        cells.push((rule, "no token".into(), None, Outcome::Unauthenticated));
        cells.push((rule, "an unknown token".into(), Some(bad.clone()), Outcome::Unauthenticated));
    }
    let total = cells.len();
    assert_eq!(total, RULES.len() * (Role::ALL.len() * 2 + 2));

    // Refusals first, while nothing else writes: each must leave both logs
    // where they were.
    settle(&metrics);
    let (mut refused, mut reached) = (0, 0);
    let (mut failures, mut allowed) = (Vec::new(), Vec::new());
    let heads = (head(&metrics), head(&log_metrics), head(&group_metrics));
    for (rule, who, authorization, want) in &cells {
        if matches!(want, Outcome::Reached(_)) {
            allowed.push((rule, who, authorization));
            continue;
        }
        let (channel, _) = where_(rule.method);
        let (shape, body) = request(rule.method, &target);
        let got = runtime.block_on(call(channel, rule.method, shape, body, authorization.as_deref()));
        if &got != want {
            failures.push(format!("{} as {who}: expected {want:?}, got {got:?}", rule.method));
        }
        refused += 1;
    }
    assert_eq!((head(&metrics), head(&log_metrics), head(&group_metrics)), heads, "a refused call wrote to the log");

    // Then the allowed cells: each must get through to the service.
    for (rule, who, authorization) in allowed {
        let (channel, _) = where_(rule.method);
        let (shape, body) = request(rule.method, &target);
        match runtime.block_on(call(channel, rule.method, shape, body, authorization.as_deref())) {
            Outcome::Reached(_) => reached += 1,
            got => failures.push(format!("{} as {who}: expected to reach the service, got {got:?}", rule.method)),
        }
    }
    assert!(failures.is_empty(), "{} of {total} cells wrong:\n{}", failures.len(), failures.join("\n"));
    assert_eq!(refused + reached, total);
    eprintln!(
        "authorization matrix: {total} cells ({} methods × {} callers), {refused} refused, {reached} allowed",
        RULES.len(),
        Role::ALL.len() * 2 + 2
    );
    // Open connections would make the stop wait out its 10 s drain.
    drop((up_channel, log_channel, group_channel));
    drop(log);
    drop(group);
    drop(nats);
    assert!(up.stop().success());
}

/// A token file of its own, so that the test controls every token.
fn klaxond_token(tokens: &std::path::Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(binary("klaxond"))
        .arg("token")
        .args(args)
        .arg("--tokens-file")
        .arg(tokens)
        .output()
        .expect("run klaxond token")
}

#[test]
fn tokens_made_and_revoked_with_klaxond_token_take_effect_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens.toml");
    let tokens_arg = tokens.display().to_string();
    let created = klaxond_token(&tokens, &["create", "--name", "zoe", "--role", "engineer", "--team", "payments"]);
    assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stderr));
    let zoe = String::from_utf8(created.stdout).unwrap().trim().to_owned();
    assert!(zoe.starts_with("klx_"), "{zoe:?}");
    let file = std::fs::read_to_string(&tokens).unwrap();
    assert!(!file.contains(&zoe[4..]), "the token file holds hashes only:\n{file}");
    let again = klaxond_token(&tokens, &["create", "--name", "zoe", "--role", "manager"]);
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("zoe already has a token"));
    let bad_role = klaxond_token(&tokens, &["create", "--name", "x", "--role", "admin"]);
    assert_eq!(bad_role.status.code(), Some(2), "a usage error");
    let listed = String::from_utf8(klaxond_token(&tokens, &["list"]).stdout).unwrap();
    assert!(listed.starts_with("zoe\tengineer\tpayments\t"), "{listed:?}");

    let paged = Paged::start(600, false, SEARCH);
    let [config_flag, config] = paged.config_args();
    let server = Klaxond::start_with_env(
        &dir.path().join("data"),
        &[config_flag, config, "--tokens-file", &tokens_arg],
        &paged.env(),
    );
    let as_zoe = |args: &[&str]| {
        std::process::Command::new(binary("klaxon"))
            .args(["--server", &server.url])
            .args(args)
            .env("KLAXON_TOKEN", &zoe)
            .env_remove("KLAXON_TOKEN_FILE")
            .output()
            .unwrap()
    };
    let out = as_zoe(&["report", "--title", "card declines", "--service", "payments"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = as_zoe(&["--json", "show", "INC-1"]);
    let shown: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let incident = shown.get("incident").unwrap_or(&shown);
    assert_eq!(incident["reporter"], "zoe", "the actor is the token's principal: {shown:#}");

    // Scoped to payments: a search report is refused and writes nothing.
    let out = as_zoe(&["report", "--title", "slow search", "--service", "search"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("zoe (engineer of team payments) may not act on service search"), "{stderr}");
    let out = as_zoe(&["--json", "list"]);
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list["incidents"].as_array().unwrap().len(), 1, "{list:#}");

    // Revoked: refused on the next call, with no restart.
    let revoked = klaxond_token(&tokens, &["revoke", "zoe"]);
    assert!(revoked.status.success(), "{}", String::from_utf8_lossy(&revoked.stderr));
    let out = as_zoe(&["list"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not valid here (revoked"), "{out:?}");
    assert!(String::from_utf8(klaxond_token(&tokens, &["list"]).stdout).unwrap().is_empty());

    // Without any token: refused, naming what to do.
    let out = std::process::Command::new(binary("klaxon"))
        .args(["--server", &server.url, "list"])
        .env_remove("KLAXON_TOKEN")
        .env_remove("KLAXON_TOKEN_FILE")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("klaxond token create"), "{out:?}");
    assert!(server.stop().success());
}

#[test]
fn the_actor_is_the_token_principal_never_a_name_the_client_sends() {
    let dir = tempfile::tempdir().unwrap();
    let server = Klaxond::start(&dir.path().join("data"));
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let channel = tonic::transport::Endpoint::from_shared(server.url.clone()).unwrap().connect().await.unwrap();
        let mut incidents = v1::incidents_client::IncidentsClient::new(channel.clone());
        let mut request = tonic::Request::new(v1::ReportRequest { title: "spoofed".into(), ..Default::default() });
        request.metadata_mut().insert("authorization", klaxon_tests::auth::bearer("ana"));
        request.metadata_mut().insert("klaxon-actor", "maria".parse().unwrap());
        let id = incidents.report(request).await.unwrap().into_inner().incident_id;

        // The bridge: joining under another name is refused.
        let mut bridge = v1::bridge_client::BridgeClient::new(channel);
        let join = v1::JoinBridge { incident_id: id.clone(), participant: "maria".into(), role: 0 };
        let first =
            v1::BridgeRequest { message: Some(v1::bridge_request::Message::Join(join)), request_id: String::new() };
        let mut request = tonic::Request::new(tokio_stream::iter([first]));
        request.metadata_mut().insert("authorization", klaxon_tests::auth::bearer("ana"));
        let refused = bridge.join(request).await.unwrap_err();
        assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
        assert!(refused.message().contains("authenticated as ana"), "{refused:?}");
    });
    // Its connections would make the stop wait out its 10 s drain.
    drop(runtime);
    // The barrier: the evaluator's assessment has landed, and nothing else.
    settle(server.http_address.as_deref().expect("up serves metrics"));
    let history = klaxon_json(&server.url, "maria", &["history", "INC-1"]);
    let entries = history["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 2, "the report and its assessment; the refused join wrote nothing: {history:#}");
    assert!(entries[0]["summary"].as_str().unwrap().starts_with("ana reported INC-1"), "{history:#}");
    assert!(server.stop().success());
}

#[test]
fn the_http_endpoints_need_a_token_of_a_role_that_may_use_them() {
    let dir = tempfile::tempdir().unwrap();
    let server = Klaxond::start(&dir.path().join("data"));
    let http = server.http_address.clone().unwrap();
    let event = |routing_key: &str| {
        serde_json::json!({
            "routing_key": routing_key,
            "event_action": "trigger",
            "payload": { "summary": "disk full", "source": "db-1", "severity": "critical" }
        })
        .to_string()
    };
    let post = |token: Option<&str>, path: &str, body: &str| {
        http_as(&http, token, "POST", path, body.as_bytes()).expect("reach the HTTP intake")
    };
    let head = || klaxon_tests::metrics::scrape(&http)["klaxon_log_head"];
    let before = head();

    // PagerDuty: an unknown routing key, an executive's token, no token.
    let (status, body) = post(None, "/v2/enqueue", &event("R0UT1NGKEY"));
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("\"status\":\"invalid event\"") && body.contains("not valid here"), "{body}");
    let (status, body) = post(None, "/v2/enqueue", &event(token("ceo")));
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("ceo (executive) may not report"), "{body}");
    let (status, body) = post(None, "/v1/alertmanager", "{}");
    assert_eq!(status, 401, "{body}");
    // Told where Alertmanager takes the token, not only the CLI's variable.
    assert!(body.contains("http_config.authorization"), "{body}");
    // Metrics: no token, then an engineer's.
    let (status, _) = http_as(&http, None, "GET", "/metrics", b"").unwrap();
    assert_eq!(status, 401);
    let (status, body) = http_as(&http, Some(token("ana")), "GET", "/metrics", b"").unwrap();
    assert_eq!(status, 403, "{body}");
    assert_eq!(head(), before, "refused deliveries write nothing");

    // The routing key as the token (what PagerDuty senders send), and the
    // header: both report, as the token's principal.
    let (status, body) = post(None, "/v2/enqueue", &event(token("pagerduty")));
    assert_eq!(status, 202, "{body}");
    let (status, body) = post(Some(token(SERVICE)), "/v2/enqueue", &event("any-routing-key"));
    assert_eq!(status, 202, "{body}");
    let history = klaxon_json(&server.url, "maria", &["history", "INC-1"]);
    assert!(history["entries"][0]["summary"].as_str().unwrap().starts_with("pagerduty reported"), "{history:#}");
    let out = klaxon(&server.url, "maria", &["--json", "list"]);
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list["incidents"].as_array().unwrap().len(), 2, "{list:#}");
    assert!(server.stop().success());
}

#[test]
fn a_command_names_for_an_incident_role_a_page_or_a_shift_only_someone_who_can_hold_it() {
    let paged = Paged::start(600, false, SEARCH);
    let server = Klaxond::start_with_env(&paged.dir.path().join("data"), &paged.config_args(), &paged.env());
    let metrics = server.http_address.clone().expect("up serves metrics");
    let id = klaxon_ok(&server.url, "monitor", &["report", "--title", "Checkout down", "--service", "payments"]);
    let id = id.trim();
    klaxon_ok(&server.url, "maria", &["declare", id, "--severity", "2"]);
    // A resolved Sev-1 has a review, for an action item's owner.
    let resolved = klaxon_ok(&server.url, "monitor", &["report", "--title", "Cart down", "--service", "payments"]);
    let resolved = resolved.trim();
    klaxon_ok(&server.url, "maria", &["declare", resolved, "--severity", "1"]);
    klaxon_ok(&server.url, "maria", &["resolve", resolved, "--summary", "restarted"]);
    settle(&metrics);
    let item = klaxon_ok(&server.url, "rita", &["review", "action", "add", resolved, "Add a canary"]);
    let item = item.split_whitespace().next().expect("the item's id").to_owned();
    let before = settle(&metrics);
    let refused = |args: &[&str]| {
        let out = klaxon(&server.url, "maria", args);
        assert_eq!(out.status.code(), Some(1), "{args:?} is refused: {out:?}");
        String::from_utf8(out.stderr).unwrap()
    };
    // Each refusal names the field and why, the way the server's one error
    // language does.
    let (from, until) = ("2100-01-01T00:00:00Z", "2100-01-02T00:00:00Z");
    let cases: [(&[&str], &str); 12] = [
        (
            &["assign", id, "mraia"],
            "invalid commander: no principal is named mraia (`klaxond token list` shows them; revoked ones are gone)",
        ),
        (&["assign", id, "ana"], "invalid commander: ana (engineer) cannot command an incident: only managers can"),
        (
            &["assign", id, "manager-search"],
            "invalid commander: manager-search (manager of team search) may not act on service payments: \
             it belongs to team payments, so they cannot take this incident on",
        ),
        (&["handoff", "request", id, "--to", "carl"], "invalid to: carl (engineer) cannot command an incident"),
        (&["role", id, "scribe", "monitor"], "invalid person: monitor (integration) is a program, not a person"),
        (&["role", id, "scribe", "nobody", "--replaces", "ana"], "invalid person: no principal is named nobody"),
        // A page, or a shift, for someone who could not acknowledge it.
        (&["page", id, "--person", "mraia", "--reason", "db"], "invalid person: no principal is named mraia"),
        (
            &["page", id, "--person", "ceo", "--reason", "db"],
            "invalid person: ceo (executive) cannot acknowledge a page: only managers and engineers can",
        ),
        (
            &["page", id, "--person", "engineer-search", "--reason", "db"],
            "invalid person: engineer-search (engineer of team search) may not act on service payments",
        ),
        (
            &[
                "oncall",
                "override",
                "--schedule",
                "payments-primary",
                "--who",
                "mraia",
                "--from",
                from,
                "--until",
                until,
            ],
            "invalid add_override.who: no principal is named mraia",
        ),
        (
            &[
                "oncall",
                "override",
                "--schedule",
                "payments-primary",
                "--who",
                "rita",
                "--from",
                from,
                "--until",
                until,
            ],
            "invalid add_override.who: rita (reviewer) cannot acknowledge a page",
        ),
        // An action item's owner.
        (&["review", "action", "assign", &item, "mraia"], "invalid owner: no principal is named mraia"),
    ];
    for (args, message) in cases {
        let stderr = refused(args);
        assert!(stderr.contains(message), "{args:?}: {stderr}");
    }
    assert_eq!(head(&metrics), before, "a refused command wrote nothing");

    // Those who can hold the role get it: a manager of the service's team,
    // any person as scribe, and a handoff to a manager.
    assert!(
        klaxon_ok(&server.url, "maria", &["assign", id, "manager-payments"]).contains("commander is manager-payments")
    );
    klaxon_ok(&server.url, "maria", &["role", id, "scribe", "ana"]);
    klaxon_ok(&server.url, "manager-payments", &["handoff", "request", id, "--to", "omar"]);
    klaxon_ok(&server.url, "maria", &["page", id, "--person", "engineer-payments", "--reason", "db"]);
    let args =
        ["oncall", "override", "--schedule", "payments-primary", "--who", "carl", "--from", from, "--until", until];
    klaxon_ok(&server.url, "maria", &args);
    klaxon_ok(&server.url, "rita", &["review", "action", "assign", &item, "carl"]);
    let shown = klaxon_json(&server.url, "maria", &["show", id]);
    let incident = shown.get("incident").unwrap_or(&shown);
    assert_eq!(incident["commander"], "manager-payments", "{shown:#}");
    assert!(server.stop().success());
}
