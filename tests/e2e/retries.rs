//! Every write is safe to retry: sent again with the same request id (or,
//! for the HTTP intake, as the same delivery), at once and after a restart
//! of `klaxond`, it returns the first answer and writes nothing.
//!
//! The table has one row per RPC of the protocol files, read from the
//! descriptor set (a new RPC without a row fails the test: say whether it
//! writes and, if it does, how it is retried), and one per HTTP endpoint.
//! Reads are marked as reads. Each write row sets up the state its write
//! needs, then the write is sent three times with one request id: first,
//! again at once, and again after `klaxond` (and the log server) restarted;
//! the answers must be the first one and the log head must not move.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use klaxon_proto::v1;
use klaxon_tests::Klaxond;
use klaxon_tests::alertmanager::http_as;
use klaxon_tests::auth::{SERVICE, as_person, token};
use klaxon_tests::config::Paged;
use klaxon_tests::metrics::scrape;
use klaxon_tests::nats::NatsServer;
use prost::Message;
use tonic::transport::Channel;

/// The two processes of the test and what the rows share.
struct Env<'a> {
    runtime: &'a tokio::runtime::Runtime,
    /// `klaxond up`: every public service and the HTTP intake.
    up: Channel,
    up_http: String,
    /// `klaxond serve log`: `klaxon.v1.EventLog`.
    log: Channel,
    log_http: String,
    /// Incidents that page: the barrier waits for their deliveries.
    paging: RefCell<Vec<String>>,
}

/// Which process a row writes to.
#[derive(Clone, Copy, Debug)]
enum Server {
    Up,
    Log,
}

/// The first send, or a retry of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pass {
    First,
    Retry,
}

/// What a write answered, reduced to what a retry must repeat: the ids and
/// log positions it names (a command's answer also shows the incident as it
/// is now, which later reactions change), or the whole answer where nothing
/// else changes it. `deduplicated` is the answer's own flag, when it has one.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Answer {
    text: String,
    deduplicated: Option<bool>,
}

/// Puts a row's target in the state its write needs; returns the target.
type Setup = fn(&Env) -> String;
/// Sends the row's write to the target with a request id.
type Send = fn(&Env, &str, &str, Pass) -> Answer;

enum Row {
    /// Writes nothing: nothing to retry.
    Read,
    /// A write: retried, it must answer the same and leave the log head
    /// where it was.
    Write { server: Server, setup: Setup, send: Send },
    /// The bridge: joining and leaving are writes of their own (a new
    /// session), so only the note inside is retried; `send` checks the head
    /// around it.
    Session { setup: Setup, send: Send },
}

fn ctx(request_id: &str) -> Option<v1::CommandContext> {
    Some(v1::CommandContext { request_id: request_id.into(), expected_version: None })
}

/// A typed client of `klaxond up` presenting `who`'s token.
macro_rules! client {
    ($env:expr, $who:expr, $module:ident :: $client:ident) => {
        v1::$module::$client::with_interceptor($env.up.clone(), as_person($who))
    };
}

fn write(server: Server, setup: Setup, send: Send) -> Row {
    Row::Write { server, setup, send }
}

/// The answer of a call, or its refusal as the answer (which the first
/// pass does not accept, and a retry must not turn into).
fn answered<T>(response: Result<tonic::Response<T>, tonic::Status>, answer: impl FnOnce(T) -> Answer) -> Answer {
    match response {
        Ok(r) => answer(r.into_inner()),
        Err(s) => Answer { text: format!("refused: {:?} {}", s.code(), s.message()), deduplicated: None },
    }
}

fn command(response: Result<tonic::Response<v1::CommandResponse>, tonic::Status>) -> Answer {
    answered(response, |r| {
        let incident = r.incident.expect("the incident").id;
        Answer {
            text: format!("{incident} {}..{}", r.first_position, r.last_position),
            deduplicated: Some(r.deduplicated),
        }
    })
}

/// One row per method of the protocol files.
fn row(method: &str) -> Row {
    use Server::{Log, Up};
    match method {
        "/klaxon.v1.Incidents/Report" => write(
            Up,
            |_| String::new(),
            |e, _, id, _| {
                let mut c = client!(e, "monitor", incidents_client::IncidentsClient);
                let request = v1::ReportRequest {
                    context: ctx(id),
                    title: "Retried report".into(),
                    service: "payments".into(),
                    ..Default::default()
                };
                answered(e.runtime.block_on(c.report(request)), |r| {
                    let result = r.result.expect("a result");
                    Answer {
                        text: format!(
                            "{} merged={} {}..{}",
                            r.incident_id, r.merged, result.first_position, result.last_position
                        ),
                        deduplicated: Some(result.deduplicated),
                    }
                })
            },
        ),
        "/klaxon.v1.Incidents/Declare" => write(Up, reported, |e, t, id, _| {
            let request =
                v1::DeclareRequest { context: ctx(id), incident_id: t.into(), severity: v1::Severity::Sev3 as i32 };
            command(e.runtime.block_on(client!(e, "maria", incidents_client::IncidentsClient).declare(request)))
        }),
        "/klaxon.v1.Incidents/OverrideSeverity" => write(Up, declared, |e, t, id, _| {
            let request = v1::OverrideSeverityRequest {
                context: ctx(id),
                incident_id: t.into(),
                severity: v1::Severity::Sev4 as i32,
                reason: "less than it looked".into(),
            };
            command(
                e.runtime.block_on(client!(e, "maria", incidents_client::IncidentsClient).override_severity(request)),
            )
        }),
        "/klaxon.v1.Incidents/AssignCommander" => write(Up, declared, |e, t, id, _| {
            let request =
                v1::AssignCommanderRequest { context: ctx(id), incident_id: t.into(), commander: "maria".into() };
            command(
                e.runtime.block_on(client!(e, "maria", incidents_client::IncidentsClient).assign_commander(request)),
            )
        }),
        "/klaxon.v1.Incidents/RequestHandoff" => write(Up, commanded, |e, t, id, _| {
            let request = v1::RequestHandoffRequest { context: ctx(id), incident_id: t.into(), to: "omar".into() };
            command(e.runtime.block_on(client!(e, "maria", incidents_client::IncidentsClient).request_handoff(request)))
        }),
        "/klaxon.v1.Incidents/AcceptHandoff" => write(Up, handing_off, |e, t, id, _| {
            let request = v1::AcceptHandoffRequest { context: ctx(id), incident_id: t.into() };
            command(e.runtime.block_on(client!(e, "omar", incidents_client::IncidentsClient).accept_handoff(request)))
        }),
        "/klaxon.v1.Incidents/DeclineHandoff" => write(Up, handing_off, |e, t, id, _| {
            let request =
                v1::DeclineHandoffRequest { context: ctx(id), incident_id: t.into(), reason: "on leave".into() };
            command(e.runtime.block_on(client!(e, "omar", incidents_client::IncidentsClient).decline_handoff(request)))
        }),
        "/klaxon.v1.Incidents/CancelHandoff" => write(Up, handing_off, |e, t, id, _| {
            let request =
                v1::CancelHandoffRequest { context: ctx(id), incident_id: t.into(), reason: "staying".into() };
            command(e.runtime.block_on(client!(e, "maria", incidents_client::IncidentsClient).cancel_handoff(request)))
        }),
        "/klaxon.v1.Incidents/AssignRole" => write(Up, declared_and_watched, |e, t, id, _| {
            let request = v1::AssignRoleRequest {
                context: ctx(id),
                incident_id: t.into(),
                role: v1::IncidentRole::Scribe as i32,
                person: "li".into(),
                replaces: String::new(),
            };
            command(e.runtime.block_on(client!(e, "maria", incidents_client::IncidentsClient).assign_role(request)))
        }),
        "/klaxon.v1.Incidents/RemoveRole" => write(Up, with_scribe, |e, t, id, _| {
            let request = v1::RemoveRoleRequest {
                context: ctx(id),
                incident_id: t.into(),
                role: v1::IncidentRole::Scribe as i32,
                person: "li".into(),
            };
            command(e.runtime.block_on(client!(e, "maria", incidents_client::IncidentsClient).remove_role(request)))
        }),
        "/klaxon.v1.Incidents/PostUpdate" => write(Up, reported, |e, t, id, _| {
            let request = v1::PostUpdateRequest {
                context: ctx(id),
                incident_id: t.into(),
                audience: v1::Audience::Internal as i32,
                text: "Looking into it".into(),
            };
            command(e.runtime.block_on(client!(e, "ana", incidents_client::IncidentsClient).post_update(request)))
        }),
        "/klaxon.v1.Incidents/RecordCustomerImpact" => write(Up, reported, |e, t, id, _| {
            let request = v1::RecordCustomerImpactRequest {
                context: ctx(id),
                incident_id: t.into(),
                customers_affected: 1,
                customers: vec!["acme".into()],
                multi_customer: false,
                summary: "Acme cannot pay".into(),
            };
            command(
                e.runtime
                    .block_on(client!(e, "maria", incidents_client::IncidentsClient).record_customer_impact(request)),
            )
        }),
        "/klaxon.v1.Incidents/Mitigate" => write(Up, declared, |e, t, id, _| {
            let request =
                v1::MitigateRequest { context: ctx(id), incident_id: t.into(), summary: "rolled back".into() };
            command(e.runtime.block_on(client!(e, "maria", incidents_client::IncidentsClient).mitigate(request)))
        }),
        "/klaxon.v1.Incidents/Resolve" => write(Up, declared, |e, t, id, _| {
            let request = v1::ResolveRequest { context: ctx(id), incident_id: t.into(), summary: "fixed".into() };
            command(e.runtime.block_on(client!(e, "maria", incidents_client::IncidentsClient).resolve(request)))
        }),
        "/klaxon.v1.Incidents/Reopen" => write(Up, resolved, |e, t, id, _| {
            let request = v1::ReopenRequest { context: ctx(id), incident_id: t.into(), reason: "it is back".into() };
            command(e.runtime.block_on(client!(e, "maria", incidents_client::IncidentsClient).reopen(request)))
        }),
        "/klaxon.v1.Incidents/ValidateResolution" => write(Up, resolved, |e, t, id, _| {
            let request = v1::ValidateResolutionRequest {
                context: ctx(id),
                incident_id: t.into(),
                note: "dashboards green".into(),
            };
            command(
                e.runtime.block_on(client!(e, "maria", incidents_client::IncidentsClient).validate_resolution(request)),
            )
        }),
        "/klaxon.v1.Incidents/MarkNoise" => write(Up, reported, |e, t, id, _| {
            let request =
                v1::MarkNoiseRequest { context: ctx(id), incident_id: t.into(), reason: "flapping probe".into() };
            command(e.runtime.block_on(client!(e, "rita", incidents_client::IncidentsClient).mark_noise(request)))
        }),
        "/klaxon.v1.Incidents/PageResponder" => write(Up, declared_and_watched, |e, t, id, _| {
            let request = v1::PageResponderRequest {
                context: ctx(id),
                incident_id: t.into(),
                target: Some(v1::page_responder_request::Target::Person("li".into())),
                reason: "needs a database expert".into(),
            };
            command(e.runtime.block_on(client!(e, "maria", incidents_client::IncidentsClient).page_responder(request)))
        }),
        // A command of a stream is retried like its unary call (here an
        // update), on a new stream each time.
        "/klaxon.v1.Incidents/Execute" => write(Up, declared, |e, t, id, _| {
            use v1::command_outcome::Outcome;
            let update = v1::PostUpdateRequest {
                context: ctx(id),
                incident_id: t.into(),
                audience: v1::Audience::Internal as i32,
                text: "retried over a stream".into(),
            };
            let envelope =
                v1::CommandEnvelope { tag: 7, command: Some(v1::command_envelope::Command::PostUpdate(update)) };
            let mut c = client!(e, "maria", incidents_client::IncidentsClient);
            let outcome = e.runtime.block_on(async move {
                let mut outcomes = c.execute(tokio_stream::iter([envelope])).await?.into_inner();
                Ok::<_, tonic::Status>(outcomes.message().await?.expect("an outcome"))
            });
            command(outcome.and_then(|o| match o.outcome {
                Some(Outcome::Command(r)) => Ok(tonic::Response::new(r)),
                Some(Outcome::Error(e)) => Err(klaxon_proto::status::from_command_error(&e)),
                other => panic!("an update's outcome: {other:?}"),
            }))
        }),
        "/klaxon.v1.Incidents/GetIncident"
        | "/klaxon.v1.Incidents/ListIncidents"
        | "/klaxon.v1.Incidents/GetHistory"
        | "/klaxon.v1.SeverityEvaluator/Explain"
        | "/klaxon.v1.SeverityEvaluator/TestPolicy"
        | "/klaxon.v1.SeverityEvaluator/LintPolicy"
        | "/klaxon.v1.Paging/WhoIsOnCall"
        | "/klaxon.v1.Paging/ListPages"
        | "/klaxon.v1.Paging/Coverage"
        | "/klaxon.v1.StatusFeed/Subscribe"
        | "/klaxon.v1.Review/ReplayTimeline"
        | "/klaxon.v1.Review/GetMetrics"
        | "/klaxon.v1.Review/GetReview"
        | "/klaxon.v1.Review/ListActionItems"
        | "/klaxon.v1.Review/ExportMarkdown"
        | "/klaxon.v1.Review/Trends"
        | "/klaxon.v1.Review/Audit"
        | "/klaxon.v1.EventLog/ReadAll"
        | "/klaxon.v1.EventLog/ReadStream"
        | "/klaxon.v1.EventLog/ReadOne"
        | "/klaxon.v1.EventLog/Locate"
        | "/klaxon.v1.EventLog/StreamVersion"
        | "/klaxon.v1.EventLog/Head"
        | "/klaxon.v1.EventLog/Subscribe"
        | "/klaxon.v1.EventLog/LoadCheckpoint" => Row::Read,
        // The log group (klaxon-raft) writes no event itself: Raft's own
        // messages are made harmless to repeat by the protocol (terms and
        // log indexes), Status reads, and a membership change names its
        // effect, so repeating it changes nothing (adding a member again,
        // removing one that is gone: tests/e2e/log_group.rs). Appends reach
        // a group through EventLog/Append, the row above.
        "/klaxon.v1.LogGroup/AppendEntries"
        | "/klaxon.v1.LogGroup/Vote"
        | "/klaxon.v1.LogGroup/InstallSnapshot"
        | "/klaxon.v1.LogGroup/Status"
        | "/klaxon.v1.LogGroup/AddNode"
        | "/klaxon.v1.LogGroup/RemoveNode" => Row::Read,
        "/klaxon.v1.Bridge/Join" => Row::Session { setup: declared, send: bridge_note },
        "/klaxon.v1.Paging/Acknowledge" => write(Up, paged, |e, t, id, _| {
            let request = v1::AcknowledgeRequest { page_id: t.into(), request_id: id.into() };
            let r = e.runtime.block_on(client!(e, "ana", paging_client::PagingClient).acknowledge(request));
            answered(r, |r| Answer { text: format!("{r:?}"), deduplicated: None })
        }),
        // A schedule change's event id comes from its request id.
        "/klaxon.v1.Paging/ChangeSchedule" => write(
            Up,
            |_| String::new(),
            |e, _, id, _| {
                // 2100-01-01, an hour: far from every other row's pages.
                let from = chrono::DateTime::from_timestamp(4_102_444_800, 0).expect("a time");
                let request = v1::ChangeScheduleRequest {
                    request_id: id.into(),
                    schedule: "payments-primary".into(),
                    change: Some(v1::change_schedule_request::Change::AddOverride(v1::AddOverride {
                        who: "carl".into(),
                        from: Some(klaxon_proto::convert::timestamp(from)),
                        until: Some(klaxon_proto::convert::timestamp(from + chrono::TimeDelta::hours(1))),
                    })),
                };
                let r = e.runtime.block_on(client!(e, "maria", paging_client::PagingClient).change_schedule(request));
                answered(r, |r| Answer { text: format!("{r:?}"), deduplicated: None })
            },
        ),
        "/klaxon.v1.Review/EditReview" => write(Up, reviewed, |e, t, id, _| {
            let request = v1::EditReviewRequest {
                context: ctx(id),
                incident_id: t.into(),
                edit: Some(v1::edit_review_request::Edit::AddActionItem("Canary config pushes".into())),
            };
            let r = e.runtime.block_on(client!(e, "rita", review_client::ReviewClient).edit_review(request));
            answered(r, |r| Answer { text: format!("{r:?}"), deduplicated: None })
        }),
        // The log server's writes: an event id is stored once; a checkpoint
        // saved again is the same checkpoint.
        "/klaxon.v1.EventLog/Append" => write(
            Log,
            |_| String::new(),
            |e, _, id, _| {
                let event = v1::LogNewEvent {
                    id: uuid_of(id),
                    kind: "test.retried.v1".into(),
                    data: "{}".into(),
                    metadata: None,
                };
                let request = v1::LogAppendRequest {
                    stream: "retries".into(),
                    expected: "any".into(),
                    expected_version: 0,
                    events: vec![event],
                };
                let mut c = v1::event_log_client::EventLogClient::with_interceptor(e.log.clone(), as_person(SERVICE));
                answered(e.runtime.block_on(c.append(request)), |r| Answer {
                    text: format!("{}..{} next {}", r.first, r.last, r.next_version),
                    deduplicated: Some(r.deduplicated),
                })
            },
        ),
        "/klaxon.v1.EventLog/SaveCheckpoint" => write(
            Log,
            |_| String::new(),
            |e, _, _, _| {
                let request = v1::LogSaveCheckpointRequest { name: "retries".into(), position: 1 };
                let mut c = v1::event_log_client::EventLogClient::with_interceptor(e.log.clone(), as_person(SERVICE));
                answered(e.runtime.block_on(c.save_checkpoint(request)), |r| Answer {
                    text: format!("{r:?}"),
                    deduplicated: None,
                })
            },
        ),
        other => panic!("no row for {other}: add one saying whether it writes and, if it does, how it is retried"),
    }
}

/// The HTTP intake's writes: a delivery sent again is the same delivery.
fn http_rows() -> Vec<(String, Row)> {
    let alertmanager: Send = |e, _, _, _| {
        let body = serde_json::json!({
            "version": "4", "groupKey": "{}:{alertname=\"Retried\"}", "status": "firing", "receiver": "klaxon",
            "groupLabels": {"alertname": "Retried"},
            "alerts": [{"status": "firing", "labels": {"alertname": "Retried", "instance": "db-1"},
                        "annotations": {"summary": "Retried alert"},
                        "startsAt": "2026-11-25T10:00:00Z", "fingerprint": "f1"}],
        });
        let body = serde_json::to_vec(&body).unwrap();
        let (status, text) = http_as(&e.up_http, Some(token("alertmanager")), "POST", "/v1/alertmanager", &body)
            .expect("reach the HTTP intake");
        if status != 200 {
            return Answer { text: format!("refused: {status} {text}"), deduplicated: None };
        }
        // The answer counts the alerts written and those deduplicated: a
        // redelivery moves every alert from one count to the other.
        let answer: serde_json::Value = serde_json::from_str(&text).expect("a JSON answer");
        let count = |key: &str| answer[key].as_u64().unwrap_or_else(|| panic!("{key} in {answer}"));
        Answer {
            text: format!("{status} {} {} alerts", answer["incident"], count("written") + count("deduplicated")),
            deduplicated: Some(count("written") == 0 && count("deduplicated") > 0),
        }
    };
    let pagerduty: Send = |e, _, _, _| {
        let body = serde_json::json!({
            "routing_key": token("pagerduty"), "event_action": "trigger", "dedup_key": "retried/disk",
            "payload": {"summary": "Disk full on db-1", "source": "db-1", "severity": "critical"},
        });
        let body = serde_json::to_vec(&body).unwrap();
        let (status, text) = http_as(&e.up_http, None, "POST", "/v2/enqueue", &body).expect("reach the HTTP intake");
        let refused = if status == 202 { "" } else { "refused: " };
        Answer { text: format!("{refused}{status} {text}"), deduplicated: None }
    };
    vec![
        (
            "POST /v1/alertmanager".into(),
            Row::Write { server: Server::Up, setup: |_| String::new(), send: alertmanager },
        ),
        ("POST /v2/enqueue".into(), Row::Write { server: Server::Up, setup: |_| String::new(), send: pagerduty }),
    ]
}

/// A UUID (as text) derived from a row's request id, so every pass sends
/// the same event id.
fn uuid_of(request_id: &str) -> String {
    use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
    let hash = BuildHasherDefault::<DefaultHasher>::default().hash_one(request_id);
    format!("00000000-0000-4000-8000-{:012x}", hash & 0xffff_ffff_ffff)
}

// --- targets ----------------------------------------------------------------

fn reported(e: &Env) -> String {
    let request = v1::ReportRequest { title: "Retry target".into(), service: "payments".into(), ..Default::default() };
    e.runtime
        .block_on(client!(e, "monitor", incidents_client::IncidentsClient).report(request))
        .expect("reported")
        .into_inner()
        .incident_id
}

fn declared(e: &Env) -> String {
    let id = reported(e);
    let request = v1::DeclareRequest { context: None, incident_id: id.clone(), severity: v1::Severity::Sev3 as i32 };
    e.runtime.block_on(client!(e, "maria", incidents_client::IncidentsClient).declare(request)).expect("declared");
    id
}

/// A declared Sev-3 whose pages the barrier waits for (someone is pulled
/// into it).
fn declared_and_watched(e: &Env) -> String {
    let id = declared(e);
    e.paging.borrow_mut().push(id.clone());
    id
}

/// A declared incident whose scribe is li (who is told so).
fn with_scribe(e: &Env) -> String {
    let id = declared_and_watched(e);
    let request = v1::AssignRoleRequest {
        context: None,
        incident_id: id.clone(),
        role: v1::IncidentRole::Scribe as i32,
        person: "li".into(),
        replaces: String::new(),
    };
    e.runtime.block_on(client!(e, "maria", incidents_client::IncidentsClient).assign_role(request)).expect("assigned");
    id
}

fn commanded(e: &Env) -> String {
    let id = declared(e);
    let request = v1::AssignCommanderRequest { context: None, incident_id: id.clone(), commander: "maria".into() };
    e.runtime
        .block_on(client!(e, "maria", incidents_client::IncidentsClient).assign_commander(request))
        .expect("assigned");
    id
}

fn handing_off(e: &Env) -> String {
    let id = commanded(e);
    let request = v1::RequestHandoffRequest { context: None, incident_id: id.clone(), to: "omar".into() };
    e.runtime.block_on(client!(e, "maria", incidents_client::IncidentsClient).request_handoff(request)).expect("asked");
    id
}

fn resolved(e: &Env) -> String {
    let id = declared(e);
    let request = v1::ResolveRequest { context: None, incident_id: id.clone(), summary: "fixed".into() };
    e.runtime.block_on(client!(e, "maria", incidents_client::IncidentsClient).resolve(request)).expect("resolved");
    id
}

/// A Sev-1 (two customers on tier-1 payments) whose first page to ana is
/// delivered; returns the page.
fn paged(e: &Env) -> String {
    let request = v1::ReportRequest {
        title: "Checkout down".into(),
        service: "payments".into(),
        customers: vec!["acme".into(), "globex".into()],
        ..Default::default()
    };
    let mut incidents = client!(e, "monitor", incidents_client::IncidentsClient);
    let id = e.runtime.block_on(incidents.report(request)).expect("reported").into_inner().incident_id;
    e.paging.borrow_mut().push(id.clone());
    let page = eventually("the first page is delivered", || {
        let request = v1::ListPagesRequest { incident_id: id.clone() };
        let pages = e.runtime.block_on(client!(e, "victor", paging_client::PagingClient).list_pages(request));
        pages.ok().and_then(|p| p.into_inner().pages.into_iter().find(|p| p.delivery == "delivered"))
    });
    page.page_id
}

/// A resolved Sev-2 whose review is open; returns the incident.
fn reviewed(e: &Env) -> String {
    let id = reported(e);
    e.paging.borrow_mut().push(id.clone());
    let mut incidents = client!(e, "maria", incidents_client::IncidentsClient);
    let declare = v1::DeclareRequest { context: None, incident_id: id.clone(), severity: v1::Severity::Sev2 as i32 };
    e.runtime.block_on(incidents.declare(declare)).expect("declared");
    let resolve = v1::ResolveRequest { context: None, incident_id: id.clone(), summary: "config reverted".into() };
    e.runtime.block_on(incidents.resolve(resolve)).expect("resolved");
    eventually("the review opens", || {
        let request = v1::GetReviewRequest { incident_id: id.clone() };
        let review = e.runtime.block_on(client!(e, "rita", review_client::ReviewClient).get_review(request));
        review.ok().filter(|r| r.get_ref().opened).map(|_| ())
    });
    id
}

/// One bridge session as ana: join, the note with its request id, leave.
/// On a retry, the note must leave the head where it was (the join and the
/// leave are this session's own writes).
fn bridge_note(e: &Env, incident: &str, request_id: &str, pass: Pass) -> Answer {
    use v1::bridge_request::Message as Out;
    use v1::bridge_response::Message as In;
    let message =
        |message, request_id: &str| v1::BridgeRequest { message: Some(message), request_id: request_id.into() };
    e.runtime.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(30);
        let (tx, mut inbound) = loop {
            let (tx, rx) = tokio::sync::mpsc::channel(4);
            let join = v1::JoinBridge { incident_id: incident.into(), participant: String::new(), role: 0 };
            tx.send(message(Out::Join(join), "")).await.unwrap();
            let mut bridge = v1::bridge_client::BridgeClient::with_interceptor(e.up.clone(), as_person("ana"));
            match bridge.join(tokio_stream::wrappers::ReceiverStream::new(rx)).await {
                Ok(stream) => break (tx, stream.into_inner()),
                // The last session's departure is not recorded yet.
                Err(s) if s.message().contains("bridge.already_joined") && Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(s) => panic!("join: {s:?}"),
            }
        };
        assert!(matches!(
            next_message(&mut inbound).await,
            Some(v1::BridgeResponse { message: Some(In::Snapshot(_)) })
        ));
        let before = head(&e.up_http);
        tx.send(message(Out::Note("Rolling back".into()), request_id)).await.unwrap();
        let recorded = loop {
            if let Some(v1::BridgeResponse { message: Some(In::NoteRecorded(r)) }) = next_message(&mut inbound).await {
                break r;
            }
        };
        let after = head(&e.up_http);
        // Told in the answer, so that the table reports it with the others.
        let moved = if pass == Pass::Retry && after != before {
            format!(", moving the head from {before} to {after}")
        } else {
            String::new()
        };
        tx.send(message(Out::Leave(v1::LeaveBridge {}), "")).await.unwrap();
        drop(tx);
        // The server ends the stream once the departure is recorded.
        while next_message(&mut inbound).await.is_some() {}
        Answer {
            text: format!("note {} at {}{moved}", recorded.request_id, recorded.position),
            deduplicated: Some(recorded.deduplicated),
        }
    })
}

/// The next message of a bridge, waiting at most 10 s; `None` when the
/// server ended the stream.
async fn next_message(inbound: &mut tonic::Streaming<v1::BridgeResponse>) -> Option<v1::BridgeResponse> {
    let message = tokio::time::timeout(Duration::from_secs(10), inbound.message());
    message.await.expect("a message within 10 s").expect("the bridge is open")
}

// --- the barrier --------------------------------------------------------------

fn head(http: &str) -> f64 {
    scrape(http)["klaxon_log_head"]
}

/// Polls `probe` (every 50 ms, at most 30 s) until it gives a value.
fn eventually<T>(what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(value) = probe() {
            return value;
        }
        assert!(Instant::now() < deadline, "{what} did not happen within 30 s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until `klaxond up` has done everything the writes so far call for:
/// every service has folded the log head, every page of the paging
/// incidents is delivered and recorded, and the head is where it was at
/// the last look. Returns the head.
fn settle(e: &Env) -> f64 {
    let mut last = -1.0;
    eventually("klaxond settles", || {
        let m = scrape(&e.up_http);
        let lagging = m.iter().any(|(k, v)| k.starts_with("klaxon_consumer_lag_records") && *v != 0.0);
        let mut pending = 0;
        for id in e.paging.borrow().iter() {
            let request = v1::ListPagesRequest { incident_id: id.clone() };
            let pages = e.runtime.block_on(client!(e, "victor", paging_client::PagingClient).list_pages(request));
            // A page acknowledged, or of an incident resolved, before it
            // went out is never sent (no page after either): not waited for.
            let owed = |p: &&v1::Page| p.delivery == "pending" && p.acknowledged_at.is_none();
            let unsent = pages.map_or(1, |p| p.into_inner().pages.iter().filter(owed).count());
            if unsent > 0 {
                let request = v1::GetIncidentRequest { incident_id: id.clone() };
                let incident =
                    e.runtime.block_on(client!(e, "victor", incidents_client::IncidentsClient).get_incident(request));
                let stopped = [v1::IncidentStatus::Resolved as i32, v1::IncidentStatus::Closed as i32];
                if !incident.is_ok_and(|i| stopped.contains(&i.into_inner().status)) {
                    pending += unsent;
                }
            }
        }
        let head = m["klaxon_log_head"];
        let settled = !lagging && pending == 0 && head == last;
        last = head;
        settled.then_some(head)
    })
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

fn connect(runtime: &tokio::runtime::Runtime, url: &str) -> Channel {
    let url = url.to_owned();
    runtime.block_on(async move { tonic::transport::Endpoint::from_shared(url).unwrap().connect().await.unwrap() })
}

#[test]
fn every_write_retried_with_its_request_id_answers_the_same_and_writes_nothing_also_after_a_restart() {
    let rows: Vec<(String, Row)> =
        proto_methods().into_iter().map(|m| (m.clone(), row(&m))).chain(http_rows()).collect();
    let writes = rows.iter().filter(|(_, r)| !matches!(r, Row::Read)).count();

    let paged = Paged::start(600, false, "");
    let dir = paged.dir.path();
    let (up_data, log_data, nats_store) = (dir.join("data"), dir.join("log"), dir.join("nats"));
    let start_up = || Klaxond::start_with_env(&up_data, &paged.config_args(), &paged.env());
    let nats = NatsServer::start(&nats_store);
    let log_data_arg = log_data.display().to_string();
    let [config_flag, config] = paged.config_args();
    let log_args =
        [config_flag, config, "--data-dir", &log_data_arg, "--nats", &nats.url, "--metrics-listen", "127.0.0.1:0"];
    let start_log = || Klaxond::serve("log", &log_args, &paged.env());
    let env_of = |up: &Klaxond, log: &Klaxond| Env {
        runtime: &paged.runtime,
        up: connect(&paged.runtime, &up.url),
        up_http: up.http_address.clone().expect("up's HTTP address"),
        log: connect(&paged.runtime, &log.url),
        log_http: log.http_address.clone().expect("the log server's metrics address"),
        paging: RefCell::new(Vec::new()),
    };
    let (up, log) = (start_up(), start_log());
    let env = env_of(&up, &log);

    // Each write's target, then its first answer.
    let targets: Vec<String> = rows
        .iter()
        .map(|(_, row)| match row {
            Row::Read => String::new(),
            Row::Write { setup, .. } | Row::Session { setup, .. } => setup(&env),
        })
        .collect();
    let request_id = |method: &str| format!("retry {method}");
    let mut first = Vec::new();
    for ((method, row), target) in rows.iter().zip(&targets) {
        first.push(match row {
            Row::Read => None,
            Row::Write { send, .. } | Row::Session { send, .. } => {
                let answer = send(&env, target, &request_id(method), Pass::First);
                assert!(!answer.text.starts_with("refused"), "{method}: the first send was {}", answer.text);
                assert_ne!(answer.deduplicated, Some(true), "{method}: the first send was not new: {answer:?}");
                Some(answer)
            }
        });
    }

    // Sends every write again and checks each: the first answer, no write.
    let retry_all = |env: &Env, when: &str| {
        let mut failures = Vec::new();
        for (((method, row), target), first) in rows.iter().zip(&targets).zip(&first) {
            let (send, server) = match row {
                Row::Read => continue,
                Row::Write { send, server, .. } => (send, Some(*server)),
                Row::Session { send, .. } => (send, None),
            };
            let http = |server| match server {
                Server::Up => env.up_http.as_str(),
                Server::Log => env.log_http.as_str(),
            };
            let before = server.map(|s| head(http(s)));
            let answer = send(env, target, &request_id(method), Pass::Retry);
            let after = server.map(|s| head(http(s)));
            let first = first.as_ref().expect("a write's first answer");
            if answer.text != first.text {
                failures.push(format!("{method} {when}: answered {:?}, first {:?}", answer.text, first.text));
            }
            if answer.deduplicated == Some(false) {
                failures.push(format!("{method} {when}: not marked as a retry"));
            }
            if before != after {
                failures.push(format!("{method} {when}: the log head moved from {before:?} to {after:?}"));
            }
        }
        assert!(failures.is_empty(), "{} failures over {writes} writes:\n{}", failures.len(), failures.join("\n"));
    };

    settle(&env);
    retry_all(&env, "sent again at once");
    let heads = (settle(&env), head(&env.log_http));

    // Restart both processes on the same data; the restart itself writes
    // nothing, and every retry still finds its first write.
    let paging = env.paging.take();
    drop(env);
    assert!(up.stop().success());
    assert!(log.stop().success());
    let (up, log) = (start_up(), start_log());
    let env = env_of(&up, &log);
    env.paging.replace(paging);
    assert_eq!((settle(&env), head(&env.log_http)), heads, "the restart wrote something");
    retry_all(&env, "sent again after a restart");
    eprintln!(
        "retry table: {} rows ({} writes, {} reads), each write sent 3 times, once after a restart",
        rows.len(),
        writes,
        rows.len() - writes
    );
    drop(env);
    assert!(up.stop().success());
    assert!(log.stop().success());
    drop(nats);
}
