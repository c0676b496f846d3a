//! The gRPC surface of intake: `klaxon.v1.Incidents` and `klaxon.v1.Bridge`.
//!
//! Each RPC only parses its request into a domain command (naming any bad
//! field), calls the [`Handle`], and renders the result; errors go through
//! the one mapping, `klaxon_proto::status`.
//!
//! `Incidents/Execute` carries the same commands as messages of one
//! bidirectional stream: each goes through the very function of its unary
//! call (`IncidentsService::command`, `IncidentsService::report`), is
//! authorized as that call would be (with `klaxon_auth::Reauth`, the
//! stream's token checked again per command), and is answered with a tagged
//! outcome, a refusal being the unary call's status as a message. At most
//! [`EXECUTE_IN_FLIGHT_MAX`] commands of a stream run at once.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use klaxon_auth::{Grant, Reauth};
use klaxon_domain::class::Class;
use klaxon_domain::ids::{ActorId, Audience, IncidentId, ReportSource, RequestKey, RequestScope};
use klaxon_domain::incident::{Change, Command, PageTarget};
use klaxon_log::{Position, StreamVersion};
use klaxon_proto::convert;
use klaxon_proto::status;
use klaxon_proto::text::{FreeText, check_text};
use klaxon_proto::v1::{self, bridge_request, bridge_response};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};
use tracing::Instrument;

use crate::{CommandContext, Error, Handle, ListFilter, Outcome, stage};

/// The request header naming the acting person (see [`convert::actor`]).
pub use klaxon_proto::convert::ACTOR_HEADER;
/// An intake error as its gRPC status (through the one mapping).
fn to_status(error: Error) -> Status {
    status::to_status(&error)
}

/// Default page size of `ListIncidents`.
pub const LIST_PAGE_SIZE_DEFAULT: usize = 50;
/// How long a new bridge stream may take to send its `join`.
const BRIDGE_JOIN_TIMEOUT: Duration = Duration::from_secs(10);
/// Responses buffered per bridge participant before the forwarder waits.
const BRIDGE_BUFFER: usize = 64;

/// The `klaxon.v1.Incidents` server.
#[derive(Clone)]
pub struct IncidentsService {
    handle: Handle,
    shutdown: CancellationToken,
}

/// Commands of one `Execute` stream in flight at once: the server reads the
/// next envelope once one of them has been answered.
pub const EXECUTE_IN_FLIGHT_MAX: usize = 64;

impl IncidentsService {
    /// Serves commands and queries through `handle`.
    pub fn new(handle: Handle) -> IncidentsService {
        IncidentsService { handle, shutdown: CancellationToken::new() }
    }

    /// Open `Execute` streams stop reading commands when `shutdown` is
    /// cancelled: they answer those they read and end, so that a graceful
    /// stop does not wait for their clients (as [`BridgeService`]'s bridges).
    pub fn with_shutdown(self, shutdown: CancellationToken) -> IncidentsService {
        IncidentsService { shutdown, ..self }
    }

    /// The tonic server to add to a router.
    pub fn into_server(self) -> v1::incidents_server::IncidentsServer<IncidentsService> {
        v1::incidents_server::IncidentsServer::new(self)
    }

    /// Runs one command other than a report for `caller`, as its unary call
    /// and as a command of an `Execute` stream: parse, check who may act on
    /// the incident, execute, answer once durable.
    async fn command<R: IncidentRequest>(
        &self,
        caller: &Caller<'_>,
        message: &R,
    ) -> Result<v1::CommandResponse, Status> {
        let parse = tracing::trace_span!(stage::PARSE);
        let (ctx, id) = parse.in_scope(|| {
            let ctx = context(caller.metadata, message.context()).map_err(to_status)?;
            let id = convert::incident_id("incident_id", message.incident_id()).map_err(|e| to_status(e.into()))?;
            Ok::<_, Status>((ctx, id))
        })?;
        // Who may act on it comes before what is wrong with the command.
        check_scope(&self.handle, caller.scoped(), id).await?;
        let (command, ctx, span) = parse.in_scope(|| {
            check_text(message).map_err(|e| to_status(e.into()))?;
            let command = message.build(&self.handle).map_err(|e| to_status(e.into()))?;
            let span = tracing::info_span!(parent: None, "intake.command", command = R::COMMAND, incident = %id);
            let (ctx, span) = ctx.traced(span);
            Ok::<_, Status>((command, ctx, span))
        })?;
        drop(parse);
        check_named(&self.handle, caller.grant, id, &command).await?;
        let outcome = self.handle.execute(id, command, &ctx).instrument(span).await.map_err(to_status)?;
        Ok(tracing::trace_span!(stage::RESPOND).in_scope(|| command_response(&outcome)))
    }

    /// Runs one report for `caller`, as the unary `Report` and as a report
    /// of an `Execute` stream.
    async fn report(&self, caller: &Caller<'_>, r: &v1::ReportRequest) -> Result<v1::ReportResponse, Status> {
        let parse = tracing::trace_span!(stage::PARSE).entered();
        let ctx = context(caller.metadata, r.context.as_ref()).map_err(to_status)?;
        if let Some(grant) = caller.grant {
            grant.permit((!r.service.is_empty()).then_some(r.service.as_str()))?;
        }
        let source = earned_source(caller.grant, r).map_err(to_status)?;
        if ctx.expected_version.is_some() {
            // Refused rather than ignored: a report opens an incident or
            // merges into one the client cannot name in advance.
            return Err(to_status(Error::InvalidRequest {
                field: "context.expected_version",
                reason: "a report has no incident version to expect; leave it unset".into(),
            }));
        }
        check_text(r).map_err(|e| to_status(e.into()))?;
        let service = convert::parse_optional("service", &r.service).map_err(|e| to_status(e.into()))?;
        let notices = self.handle.service_notice(service.as_ref()).into_iter().collect();
        let command = (|| {
            Ok::<_, klaxon_domain::Error>(Command::ReportIssue {
                source,
                reporter: ctx.actor.clone(),
                title: r.title.clone(),
                description: r.description.clone(),
                service,
                customers: r.customers.iter().map(|c| convert::parse("customers", c)).collect::<Result<_, _>>()?,
                labels: r.labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
                dedup_key: convert::parse_optional("dedup_key", &r.dedup_key)?,
                started_at: convert::from_timestamp("started_at", r.started_at.as_ref())?,
            })
        })()
        .map_err(|e| to_status(e.into()))?;
        let span = tracing::info_span!(parent: None, "intake.report", incident = tracing::field::Empty);
        let (ctx, span) = ctx.traced(span);
        drop(parse);
        let report = self.handle.report(command, &ctx).instrument(span.clone()).await.map_err(to_status)?;
        span.record("incident", tracing::field::display(report.incident));
        let _respond = tracing::trace_span!(stage::RESPOND).entered();
        Ok(v1::ReportResponse {
            incident_id: report.incident.to_string(),
            merged: report.merged,
            result: Some(command_response(&report.outcome)),
            notices,
        })
    }

    /// A unary command call.
    async fn unary<R: IncidentRequest>(&self, request: Request<R>) -> Result<Response<v1::CommandResponse>, Status> {
        self.command(&Caller::of(&request), request.get_ref()).await.map(Response::new)
    }

    /// One command of an `Execute` stream, authorized as its unary call,
    /// answered with its outcome (never an error: a refusal is an outcome).
    async fn stream_command(&self, stream: &StreamCaller, envelope: v1::CommandEnvelope) -> v1::CommandOutcome {
        use v1::command_envelope::Command as C;
        use v1::command_outcome::Outcome;
        let tag = envelope.tag;
        let Some(command) = envelope.command else {
            let refused = to_status(Error::InvalidRequest {
                field: "command",
                reason: "the envelope carries no command; set one of report, declare, ...".into(),
            });
            return v1::CommandOutcome { tag, outcome: Some(Outcome::Error(status::to_command_error(&refused))) };
        };
        macro_rules! dispatch {
            ($($variant:ident),* $(,)?) => {
                match command {
                    C::Report(r) => self.stream_report(stream, &r).await.map(Outcome::Report),
                    $(C::$variant(r) => self.stream_one(stream, &r).await.map(Outcome::Command),)*
                }
            };
        }
        let result = dispatch!(
            Declare,
            OverrideSeverity,
            AssignCommander,
            RequestHandoff,
            AcceptHandoff,
            DeclineHandoff,
            CancelHandoff,
            AssignRole,
            RemoveRole,
            PostUpdate,
            RecordCustomerImpact,
            Mitigate,
            Resolve,
            Reopen,
            ValidateResolution,
            MarkNoise,
            PageResponder,
        );
        let outcome = result.unwrap_or_else(|refused| Outcome::Error(status::to_command_error(&refused)));
        v1::CommandOutcome { tag, outcome: Some(outcome) }
    }

    async fn stream_one<R: IncidentRequest>(
        &self,
        stream: &StreamCaller,
        message: &R,
    ) -> Result<v1::CommandResponse, Status> {
        let grant = stream.authorize(R::METHOD)?;
        self.command(&Caller { metadata: &stream.metadata, grant: grant.as_ref() }, message).await
    }

    async fn stream_report(&self, stream: &StreamCaller, r: &v1::ReportRequest) -> Result<v1::ReportResponse, Status> {
        let grant = stream.authorize(REPORT_METHOD)?;
        self.report(&Caller { metadata: &stream.metadata, grant: grant.as_ref() }, r).await
    }
}

/// The outcomes of one `Execute` stream, polled by the server's task of
/// that stream: reads envelopes while fewer than [`EXECUTE_IN_FLIGHT_MAX`]
/// commands are in flight, runs them concurrently, and yields each outcome
/// as it is ready. It ends when the client half-closed and every command
/// read is answered (OK), or, once the server stops, after answering the
/// commands read with `UNAVAILABLE`; a broken inbound stream ends it at
/// once (nobody to answer).
pub struct ExecuteStream {
    service: IncidentsService,
    caller: Arc<StreamCaller>,
    inbound: Streaming<v1::CommandEnvelope>,
    running: futures::stream::FuturesUnordered<futures::future::BoxFuture<'static, v1::CommandOutcome>>,
    stop: std::pin::Pin<Box<tokio_util::sync::WaitForCancellationFutureOwned>>,
    reading: bool,
    stopped: bool,
    ended: bool,
}

impl futures::Stream for ExecuteStream {
    type Item = Result<v1::CommandOutcome, Status>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        use std::task::Poll;

        use futures::StreamExt;
        let this = &mut *self;
        if this.ended {
            return Poll::Ready(None);
        }
        if this.reading && this.stop.as_mut().poll(cx).is_ready() {
            (this.reading, this.stopped) = (false, true);
        }
        while this.reading && this.running.len() < EXECUTE_IN_FLIGHT_MAX {
            match this.inbound.poll_next_unpin(cx) {
                Poll::Ready(Some(Ok(envelope))) => {
                    let (service, caller) = (this.service.clone(), this.caller.clone());
                    this.running.push(Box::pin(async move { service.stream_command(&caller, envelope).await }));
                }
                // Half-closed: answer what was read, then end.
                Poll::Ready(None) => this.reading = false,
                // The stream broke (a reset, a bad frame): nobody to answer.
                Poll::Ready(Some(Err(_))) => {
                    this.ended = true;
                    return Poll::Ready(None);
                }
                Poll::Pending => break,
            }
        }
        match this.running.poll_next_unpin(cx) {
            Poll::Ready(Some(outcome)) => return Poll::Ready(Some(Ok(outcome))),
            Poll::Ready(None) | Poll::Pending if this.reading || !this.running.is_empty() => return Poll::Pending,
            _ => {}
        }
        this.ended = true;
        if this.stopped {
            let status = status::refuse(
                Class::Unavailable,
                "the server is stopping: every command read was answered; commands sent after the last outcome were not read",
            );
            return Poll::Ready(Some(Err(status)));
        }
        Poll::Ready(None)
    }
}

/// The gRPC path of the unary `Report`: the policy row of a stream's reports.
const REPORT_METHOD: &str = "/klaxon.v1.Incidents/Report";

/// Who sends a command: the metadata of its call (the actor header, the
/// trace context) and the grant the authentication layer left, if any.
struct Caller<'a> {
    metadata: &'a tonic::metadata::MetadataMap,
    grant: Option<&'a Grant>,
}

impl<'a> Caller<'a> {
    fn of<T>(request: &'a Request<T>) -> Caller<'a> {
        Caller { metadata: request.metadata(), grant: request.extensions().get::<Grant>() }
    }

    /// The grant of a principal limited to teams (see [`Grant::scoped`]).
    fn scoped(&self) -> Option<&'a Grant> {
        self.grant.filter(|grant| grant.principal.is_scoped())
    }
}

/// What an `Execute` stream's commands are sent with: the stream's metadata,
/// and how each command is authorized.
struct StreamCaller {
    metadata: tonic::metadata::MetadataMap,
    /// Behind the authentication layer: each command authorized as its
    /// unary call, the token checked again.
    reauth: Option<Reauth>,
    /// The grant of the stream's opening: only whether the stream was
    /// authenticated at all (`None` without authentication).
    grant: Option<Grant>,
}

impl StreamCaller {
    /// Fails closed: an authenticated stream whose layer left no
    /// [`Reauth`] has commands nobody authorized (the opening grant only
    /// says who may open a stream), so each is refused.
    fn authorize(&self, method: &str) -> Result<Option<Grant>, Status> {
        match (&self.reauth, &self.grant) {
            (Some(reauth), _) => reauth.authorize(method).map(Some),
            (None, None) => Ok(None),
            (None, Some(grant)) => Err(status::refuse(
                Class::PermissionDenied,
                format!("{method} over a stream cannot be authorized for {}: no per-command check", grant.principal),
            )),
        }
    }
}

/// Refuses, with `PERMISSION_DENIED`, a principal whose team scope does not
/// cover the incident's service. Only scoped principals cost a lookup of
/// the incident (see [`Grant::scoped`]).
async fn check_scope(handle: &Handle, scoped: Option<&Grant>, id: IncidentId) -> Result<(), Status> {
    let Some(grant) = scoped else { return Ok(()) };
    let incident = handle.get(id).await.map_err(to_status)?;
    grant.check_service(incident.service().map(|s| s.as_str())).map_err(|e| to_status(e.into()))
}

/// Refuses, with `INVALID_ARGUMENT` naming the field, a command that gives
/// an incident role or a page to someone who cannot hold it: a commander or
/// a handoff's recipient who is not a principal that may command this
/// incident (see [`Grant::commander`]), a person paged directly who may not
/// acknowledge its page ([`Grant::responder`]), a scribe or expert who is
/// not a person. Checked against the principals the server knows now, so
/// only with authentication (a server without it knows nobody).
async fn check_named(handle: &Handle, grant: Option<&Grant>, id: IncidentId, command: &Command) -> Result<(), Status> {
    let Some(grant) = grant else { return Ok(()) };
    let invalid = |e: klaxon_domain::Error| to_status(e.into());
    let (field, named) = match command {
        Command::AssignCommander { commander } => ("commander", grant.commander("commander", commander.as_str())),
        Command::RequestHandoff { to } => ("to", grant.commander("to", to.as_str())),
        Command::PageResponder { target: PageTarget::Person(person), .. } => {
            ("person", grant.responder("person", person.as_str()))
        }
        Command::AssignRole { person, .. } | Command::ReplaceRole { to: person, .. } => {
            return grant.check_person("person", person.as_str()).map_err(invalid);
        }
        _ => return Ok(()),
    };
    let named = named.map_err(invalid)?;
    if !named.is_scoped() {
        return Ok(());
    }
    let incident = handle.get(id).await.map_err(to_status)?;
    grant.check_named_scope(field, named, incident.service().map(|s| s.as_str())).map_err(invalid)
}

fn command_response(outcome: &Outcome) -> v1::CommandResponse {
    v1::CommandResponse {
        incident: Some(convert::incident_to_wire(&outcome.incident)),
        first_position: outcome.first.0,
        last_position: outcome.last.0,
        deduplicated: outcome.deduplicated,
    }
}

/// Reads the actor header, the trace context and the command context.
fn context(
    metadata: &tonic::metadata::MetadataMap,
    context: Option<&v1::CommandContext>,
) -> Result<CommandContext, Error> {
    let actor = convert::actor(metadata)?;
    let traceparent = metadata.get("traceparent").and_then(|v| v.to_str().ok()).map(str::to_string);
    Ok(CommandContext {
        actor,
        request_id: context.map(|c| c.request_id.clone()).filter(|r| !r.is_empty()),
        expected_version: context.and_then(|c| c.expected_version),
        // An invalid traceparent is dropped rather than refused: tracing must
        // never make a command fail.
        traceparent: traceparent.filter(|t| klaxon_log::is_traceparent(t)),
    })
}

/// The source of a report: the one the caller's principal has earned
/// ([`Grant::report_source`]); refused with `PERMISSION_DENIED` when it
/// claims another. Without authentication (the in-process tests of this
/// crate) the claim stands, unspecified meaning `api`.
fn earned_source(grant: Option<&Grant>, request: &v1::ReportRequest) -> Result<ReportSource, Error> {
    let wire = request.source;
    let claimed =
        if wire == v1::ReportSource::Unspecified as i32 { None } else { Some(convert::source("source", wire)?) };
    match grant {
        Some(grant) => Ok(grant.report_source(claimed)?),
        None => Ok(claimed.unwrap_or(ReportSource::Api)),
    }
}

/// The requests of the commands other than a report: each carries a
/// command context and an incident id, and parses into a domain command.
trait IncidentRequest: FreeText + Send + Sync + 'static {
    /// The command's name on its `intake.command` span.
    const COMMAND: &'static str;
    /// Its unary method's gRPC path: the policy row that authorizes it,
    /// also when it comes over an `Execute` stream.
    const METHOD: &'static str;
    fn context(&self) -> Option<&v1::CommandContext>;
    fn incident_id(&self) -> &str;
    /// The domain command, or the field that is wrong.
    fn build(&self, handle: &Handle) -> Result<Command, klaxon_domain::Error>;
}

macro_rules! incident_requests {
    ($($t:ident => $command:literal, $method:literal, |$r:pat_param, $h:pat_param| $build:expr;)*) => {$(
        impl IncidentRequest for v1::$t {
            const COMMAND: &'static str = $command;
            const METHOD: &'static str = concat!("/klaxon.v1.Incidents/", $method);
            fn context(&self) -> Option<&v1::CommandContext> {
                self.context.as_ref()
            }
            fn incident_id(&self) -> &str {
                &self.incident_id
            }
            fn build(&self, handle: &Handle) -> Result<Command, klaxon_domain::Error> {
                let ($r, $h) = (self, handle);
                $build
            }
        }
    )*};
}

incident_requests! {
    DeclareRequest => "declare", "Declare", |r, _|
        Ok(Command::DeclareIncident { severity: convert::severity("severity", r.severity)? });
    OverrideSeverityRequest => "override_severity", "OverrideSeverity", |r, _|
        Ok(Command::OverrideSeverity { severity: convert::severity("severity", r.severity)?, reason: r.reason.clone() });
    AssignCommanderRequest => "assign_commander", "AssignCommander", |r, _|
        Ok(Command::AssignCommander { commander: person("commander", &r.commander)? });
    RequestHandoffRequest => "request_handoff", "RequestHandoff", |r, _|
        Ok(Command::RequestHandoff { to: person("to", &r.to)? });
    AcceptHandoffRequest => "accept_handoff", "AcceptHandoff", |_, _| Ok(Command::AcceptHandoff);
    DeclineHandoffRequest => "decline_handoff", "DeclineHandoff", |r, _|
        Ok(Command::DeclineHandoff { reason: r.reason.clone() });
    CancelHandoffRequest => "cancel_handoff", "CancelHandoff", |r, _|
        Ok(Command::CancelHandoff { reason: r.reason.clone() });
    AssignRoleRequest => "assign_role", "AssignRole", |r, _| {
        let (role, to) = (convert::role("role", r.role)?, person("person", &r.person)?);
        if r.replaces.is_empty() {
            Ok(Command::AssignRole { role, person: to })
        } else {
            Ok(Command::ReplaceRole { role, from: person("replaces", &r.replaces)?, to })
        }
    };
    RemoveRoleRequest => "remove_role", "RemoveRole", |r, _|
        Ok(Command::RemoveRole { role: convert::role("role", r.role)?, person: person("person", &r.person)? });
    PostUpdateRequest => "post_update", "PostUpdate", |r, _|
        Ok(Command::PostUpdate { audience: convert::audience("audience", r.audience)?, text: r.text.clone() });
    RecordCustomerImpactRequest => "record_customer_impact", "RecordCustomerImpact", |r, _|
        Ok(Command::RecordCustomerImpact {
            customers_affected: r.customers_affected,
            customers: r.customers.iter().map(|c| convert::parse("customers", c)).collect::<Result<_, _>>()?,
            multi_customer: r.multi_customer,
            summary: r.summary.clone(),
        });
    MitigateRequest => "mitigate", "Mitigate", |r, _| Ok(Command::Mitigate { summary: r.summary.clone() });
    ResolveRequest => "resolve", "Resolve", |r, _| Ok(Command::Resolve { summary: r.summary.clone() });
    ReopenRequest => "reopen", "Reopen", |r, _| Ok(Command::Reopen { reason: r.reason.clone() });
    ValidateResolutionRequest => "validate_resolution", "ValidateResolution", |r, _|
        Ok(Command::ValidateResolution { note: r.note.clone() });
    MarkNoiseRequest => "mark_noise", "MarkNoise", |r, _| Ok(Command::MarkNoise { reason: r.reason.clone() });
    PageResponderRequest => "page_responder", "PageResponder", |r, handle| {
        use v1::page_responder_request::Target;
        let (field, target) = match &r.target {
            Some(Target::Person(p)) => ("person", PageTarget::Person(person("person", p)?)),
            Some(Target::Schedule(s)) => ("schedule", PageTarget::named("schedule", false, s)?),
            Some(Target::Team(t)) => ("team", PageTarget::named("team", true, t)?),
            None => {
                return Err(klaxon_domain::Error::InvalidField {
                    field: "target",
                    reason: "name a person, a schedule or a team".into(),
                });
            }
        };
        handle.directory().check(field, &target)?;
        Ok(Command::PageResponder { target, reason: r.reason.clone() })
    };
}

fn person(field: &'static str, value: &str) -> Result<ActorId, klaxon_domain::Error> {
    convert::field(field, ActorId::new(value))
}

#[tonic::async_trait]
impl v1::incidents_server::Incidents for IncidentsService {
    async fn report(&self, request: Request<v1::ReportRequest>) -> Result<Response<v1::ReportResponse>, Status> {
        IncidentsService::report(self, &Caller::of(&request), request.get_ref()).await.map(Response::new)
    }

    async fn declare(&self, request: Request<v1::DeclareRequest>) -> Result<Response<v1::CommandResponse>, Status> {
        self.unary(request).await
    }

    async fn override_severity(
        &self,
        request: Request<v1::OverrideSeverityRequest>,
    ) -> Result<Response<v1::CommandResponse>, Status> {
        self.unary(request).await
    }

    async fn assign_commander(
        &self,
        request: Request<v1::AssignCommanderRequest>,
    ) -> Result<Response<v1::CommandResponse>, Status> {
        self.unary(request).await
    }

    async fn request_handoff(
        &self,
        request: Request<v1::RequestHandoffRequest>,
    ) -> Result<Response<v1::CommandResponse>, Status> {
        self.unary(request).await
    }

    async fn accept_handoff(
        &self,
        request: Request<v1::AcceptHandoffRequest>,
    ) -> Result<Response<v1::CommandResponse>, Status> {
        self.unary(request).await
    }

    async fn decline_handoff(
        &self,
        request: Request<v1::DeclineHandoffRequest>,
    ) -> Result<Response<v1::CommandResponse>, Status> {
        self.unary(request).await
    }

    async fn cancel_handoff(
        &self,
        request: Request<v1::CancelHandoffRequest>,
    ) -> Result<Response<v1::CommandResponse>, Status> {
        self.unary(request).await
    }

    async fn assign_role(
        &self,
        request: Request<v1::AssignRoleRequest>,
    ) -> Result<Response<v1::CommandResponse>, Status> {
        self.unary(request).await
    }

    async fn remove_role(
        &self,
        request: Request<v1::RemoveRoleRequest>,
    ) -> Result<Response<v1::CommandResponse>, Status> {
        self.unary(request).await
    }

    async fn post_update(
        &self,
        request: Request<v1::PostUpdateRequest>,
    ) -> Result<Response<v1::CommandResponse>, Status> {
        self.unary(request).await
    }

    async fn record_customer_impact(
        &self,
        request: Request<v1::RecordCustomerImpactRequest>,
    ) -> Result<Response<v1::CommandResponse>, Status> {
        self.unary(request).await
    }

    async fn mitigate(&self, request: Request<v1::MitigateRequest>) -> Result<Response<v1::CommandResponse>, Status> {
        self.unary(request).await
    }

    async fn resolve(&self, request: Request<v1::ResolveRequest>) -> Result<Response<v1::CommandResponse>, Status> {
        self.unary(request).await
    }

    async fn reopen(&self, request: Request<v1::ReopenRequest>) -> Result<Response<v1::CommandResponse>, Status> {
        self.unary(request).await
    }

    async fn validate_resolution(
        &self,
        request: Request<v1::ValidateResolutionRequest>,
    ) -> Result<Response<v1::CommandResponse>, Status> {
        self.unary(request).await
    }

    async fn mark_noise(
        &self,
        request: Request<v1::MarkNoiseRequest>,
    ) -> Result<Response<v1::CommandResponse>, Status> {
        self.unary(request).await
    }

    async fn page_responder(
        &self,
        request: Request<v1::PageResponderRequest>,
    ) -> Result<Response<v1::CommandResponse>, Status> {
        self.unary(request).await
    }

    type ExecuteStream = ExecuteStream;

    async fn execute(
        &self,
        request: Request<Streaming<v1::CommandEnvelope>>,
    ) -> Result<Response<Self::ExecuteStream>, Status> {
        // Who sends the commands is settled when the stream opens: without
        // an actor, no command of it could run.
        convert::actor(request.metadata()).map_err(|e| to_status(e.into()))?;
        let stream = StreamCaller {
            metadata: request.metadata().clone(),
            reauth: request.extensions().get::<Reauth>().cloned(),
            grant: request.extensions().get::<Grant>().cloned(),
        };
        Ok(Response::new(ExecuteStream {
            service: self.clone(),
            caller: Arc::new(stream),
            inbound: request.into_inner(),
            running: Default::default(),
            stop: Box::pin(self.shutdown.clone().cancelled_owned()),
            reading: true,
            stopped: false,
            ended: false,
        }))
    }

    async fn get_incident(&self, request: Request<v1::GetIncidentRequest>) -> Result<Response<v1::Incident>, Status> {
        let id =
            convert::incident_id("incident_id", &request.get_ref().incident_id).map_err(|e| to_status(e.into()))?;
        let incident = self.handle.get(id).await.map_err(to_status)?;
        Ok(Response::new(self.handle.with_runbook(convert::incident_to_wire(&incident))))
    }

    async fn list_incidents(
        &self,
        request: Request<v1::ListIncidentsRequest>,
    ) -> Result<Response<v1::ListIncidentsResponse>, Status> {
        let r = request.get_ref();
        let filter = (|| {
            Ok::<_, klaxon_domain::Error>(ListFilter {
                statuses: r.statuses.iter().map(|s| convert::status("statuses", *s)).collect::<Result<_, _>>()?,
                severities: r
                    .severities
                    .iter()
                    .map(|s| convert::severity("severities", *s))
                    .collect::<Result<_, _>>()?,
                service: convert::parse_optional("service", &r.service)?,
            })
        })()
        .map_err(|e| to_status(e.into()))?;
        let below = match r.page_token.as_str() {
            "" => None,
            token => Some(token.parse::<u64>().map_err(|_| {
                to_status(Error::InvalidRequest {
                    field: "page_token",
                    reason: "is not a token returned by ListIncidents".into(),
                })
            })?),
        };
        let page_size = if r.page_size == 0 { LIST_PAGE_SIZE_DEFAULT } else { r.page_size as usize };
        if r.order == v1::ListOrder::Attention as i32 {
            let rows = self.handle.queue(&filter, page_size).await.map_err(to_status)?;
            let now = self.handle.now();
            let queue = rows
                .iter()
                .map(|(i, row)| v1::QueueRow {
                    incident_id: i.id().to_string(),
                    unowned_sev1: row.unowned_sev1,
                    deadline: row.next.map(|(d, _)| d.as_str().to_string()).unwrap_or_default(),
                    due_at: row.next.map(|(_, at)| convert::timestamp(at)),
                    seconds_left: row.left(now).map_or(0, |left| left.num_seconds()),
                })
                .collect();
            return Ok(Response::new(v1::ListIncidentsResponse {
                incidents: rows.iter().map(|(i, _)| convert::incident_to_wire(i)).collect(),
                next_page_token: String::new(),
                queue,
            }));
        }
        if r.order != v1::ListOrder::Newest as i32 {
            return Err(to_status(Error::InvalidRequest {
                field: "order",
                reason: format!("{} is not an order", r.order),
            }));
        }
        let (incidents, next) = self.handle.list(&filter, page_size, below).await.map_err(to_status)?;
        Ok(Response::new(v1::ListIncidentsResponse {
            incidents: incidents.iter().map(convert::incident_to_wire).collect(),
            next_page_token: next.map(|n| n.to_string()).unwrap_or_default(),
            queue: Vec::new(),
        }))
    }

    async fn get_history(
        &self,
        request: Request<v1::GetHistoryRequest>,
    ) -> Result<Response<v1::GetHistoryResponse>, Status> {
        let id =
            convert::incident_id("incident_id", &request.get_ref().incident_id).map_err(|e| to_status(e.into()))?;
        let history = self.handle.history(id).await.map_err(to_status)?;
        let entries = history
            .iter()
            .map(|(record, event)| {
                convert::history_entry(record.position.0, record.version.0, event, record.data.as_str())
            })
            .collect();
        Ok(Response::new(v1::GetHistoryResponse { entries }))
    }
}

/// The `klaxon.v1.Bridge` server.
#[derive(Clone)]
pub struct BridgeService {
    handle: Handle,
    shutdown: CancellationToken,
}

impl BridgeService {
    /// Serves bridges through `handle`; open bridges end when `shutdown` is
    /// cancelled, so that a graceful stop does not wait for them.
    pub fn new(handle: Handle, shutdown: CancellationToken) -> BridgeService {
        BridgeService { handle, shutdown }
    }

    /// The tonic server to add to a router.
    pub fn into_server(self) -> v1::bridge_server::BridgeServer<BridgeService> {
        v1::bridge_server::BridgeServer::new(self)
    }
}

#[tonic::async_trait]
impl v1::bridge_server::Bridge for BridgeService {
    type JoinStream = ReceiverStream<Result<v1::BridgeResponse, Status>>;

    async fn join(&self, request: Request<Streaming<v1::BridgeRequest>>) -> Result<Response<Self::JoinStream>, Status> {
        let caller = context(request.metadata(), None).map_err(to_status)?;
        let extensions = request.extensions().clone();
        let mut inbound = request.into_inner();
        let invalid =
            |field: &'static str, reason: &str| to_status(Error::InvalidRequest { field, reason: reason.into() });
        let first = tokio::time::timeout(BRIDGE_JOIN_TIMEOUT, inbound.message())
            .await
            .map_err(|_| invalid("join", "was not sent within 10 s of opening the bridge"))??;
        let Some(v1::BridgeRequest { message: Some(bridge_request::Message::Join(join)), .. }) = first else {
            return Err(invalid("join", "must be the first message on the bridge"));
        };
        let domain = |e: klaxon_domain::Error| to_status(e.into());
        let id = convert::incident_id("join.incident_id", &join.incident_id).map_err(domain)?;
        // The participant is whoever authenticated; a name in the message
        // may only repeat it.
        let participant = caller.actor.clone();
        if !join.participant.is_empty() && join.participant != participant.as_str() {
            return Err(status::refuse(
                Class::PermissionDenied,
                format!(
                    "join.participant {:?}: this call is authenticated as {participant}, who joins as themselves",
                    join.participant
                ),
            ));
        }
        let role = convert::optional_role("join.role", join.role).map_err(domain)?;

        let incident = self.handle.get(id).await.map_err(to_status)?;
        if let Some(grant) = extensions.get::<Grant>() {
            grant.check_service(incident.service().map(|s| s.as_str())).map_err(|e| to_status(e.into()))?;
        }
        let max = self.handle.options().bridge_participants_max;
        if incident.participants().len() >= max && !incident.participants().contains(&participant) {
            return Err(to_status(Error::BridgeFull { incident: id, max }));
        }
        let ctx = CommandContext { traceparent: caller.traceparent, ..CommandContext::by(participant.clone()) };
        let (ctx, span) = ctx.traced(tracing::info_span!(parent: None, "intake.bridge.join", incident = %id));
        let joined = self
            .handle
            .execute(id, Command::JoinBridge { participant: participant.clone(), role }, &ctx)
            .instrument(span)
            .await
            .map_err(to_status)?;
        let join_version = self.handle.log().read_one(joined.last).await.map_err(|e| to_status(e.into()))?.version;
        let snapshot = self
            .handle
            .incident_at(id, join_version)
            .await
            .map_err(to_status)?
            .ok_or_else(|| to_status(Error::Domain(klaxon_domain::Error::UnknownIncident(id))))?;

        let (tx, rx) = mpsc::channel(BRIDGE_BUFFER);
        let first = v1::BridgeResponse {
            message: Some(bridge_response::Message::Snapshot(
                self.handle.with_runbook(convert::incident_to_wire(&snapshot)),
            )),
        };
        tx.send(Ok(first)).await.map_err(|_| status::refuse(Class::Unavailable, "the client left"))?;
        let session = Session { handle: self.handle.clone(), id, ctx, tx, join_version };
        tokio::spawn(session.run(inbound, joined.last.next(), self.shutdown.clone()));
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

/// One participant's bridge: forwards the incident's events in log order and
/// records the participant's notes and departure.
struct Session {
    handle: Handle,
    id: IncidentId,
    ctx: CommandContext,
    tx: mpsc::Sender<Result<v1::BridgeResponse, Status>>,
    join_version: StreamVersion,
}

impl Session {
    async fn run(self, mut inbound: Streaming<v1::BridgeRequest>, from: Position, shutdown: CancellationToken) {
        let stream = klaxon_reactor::streams::incident(self.id);
        let mut events = self.handle.log().subscribe(from);
        let mut leaving = false;
        let mut recorded_leave = false;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = self.tx.closed() => break,
                next = events.next() => {
                    let record = match next {
                        Some(Ok(record)) => record,
                        Some(Err(e)) => {
                            let _ = self.tx.send(Err(to_status(e.into()))).await;
                            break;
                        }
                        None => break,
                    };
                    if record.stream != stream || record.version <= self.join_version {
                        continue;
                    }
                    let event = match klaxon_reactor::decode::incident(&record).map_err(Error::from) {
                        Ok(Some(event)) => event,
                        Ok(None) => continue,
                        Err(e) => {
                            let _ = self.tx.send(Err(to_status(e))).await;
                            break;
                        }
                    };
                    let own_leave = matches!(&event.change, Change::ParticipantLeft(p) if p.participant == self.ctx.actor);
                    let entry = convert::history_entry(record.position.0, record.version.0, &event, record.data.as_str());
                    let message = v1::BridgeResponse { message: Some(bridge_response::Message::Event(entry)) };
                    if self.tx.send(Ok(message)).await.is_err() {
                        break;
                    }
                    if own_leave && leaving {
                        // The participant saw their own departure: the session is over.
                        return;
                    }
                }
                message = inbound.message(), if !leaving => match message {
                    Ok(Some(request @ v1::BridgeRequest { message: Some(bridge_request::Message::Note(_)), .. })) => {
                        if let Err(e) = self.note(&request).await {
                            let _ = self.tx.send(Err(to_status(e))).await;
                            break;
                        }
                    }
                    Ok(Some(v1::BridgeRequest { message: Some(bridge_request::Message::Leave(_)), .. })) => {
                        leaving = true;
                        recorded_leave = self.leave().await;
                        if !recorded_leave {
                            break;
                        }
                    }
                    Ok(Some(_)) => {
                        let status = to_status(Error::InvalidRequest {
                            field: "message",
                            reason: "after join, only notes and leave are accepted".into(),
                        });
                        let _ = self.tx.send(Err(status)).await;
                        break;
                    }
                    // The client closed its side or dropped.
                    Ok(None) | Err(_) => break,
                },
            }
        }
        if !recorded_leave {
            self.leave().await;
        }
    }

    /// Records a note as an internal update, under its request id when it
    /// has one (so that a note sent again writes nothing), and answers with
    /// where it was recorded.
    async fn note(&self, request: &v1::BridgeRequest) -> Result<(), Error> {
        let Some(bridge_request::Message::Note(text)) = &request.message else { return Ok(()) };
        RequestKey::new(RequestScope::Incident, &self.ctx.actor, "request_id", &request.request_id)?;
        check_text(request)?;
        let ctx = CommandContext {
            request_id: Some(request.request_id.clone()).filter(|r| !r.is_empty()),
            ..self.ctx.clone()
        };
        let note = Command::PostUpdate { audience: Audience::Internal, text: text.clone() };
        let outcome = self.handle.execute(self.id, note, &ctx).await?;
        let recorded = v1::NoteRecorded {
            request_id: request.request_id.clone(),
            position: outcome.last.0,
            deduplicated: outcome.deduplicated,
        };
        let message = v1::BridgeResponse { message: Some(bridge_response::Message::NoteRecorded(recorded)) };
        // A client that left no longer needs the answer.
        let _ = self.tx.send(Ok(message)).await;
        Ok(())
    }

    /// Records that the participant left; false when that failed.
    async fn leave(&self) -> bool {
        let command = Command::LeaveBridge { participant: self.ctx.actor.clone() };
        match self.handle.execute(self.id, command, &self.ctx).await {
            Ok(_) => true,
            Err(e) => {
                tracing::warn!(incident = %self.id, participant = %self.ctx.actor, error = %e, "recording a bridge departure failed");
                false
            }
        }
    }
}
