//! The RPC layer: connecting to klaxond, one generic path that sends any
//! request and returns its reply (a finite stream, the timeline replay, is
//! read to its end), the bridge session of `join` and the status feed of
//! `watch`.

use std::time::Duration;

use klaxon_proto::v1;
use klaxon_proto::v1::bridge_client::BridgeClient;
use klaxon_proto::v1::incidents_client::IncidentsClient;
use klaxon_proto::v1::paging_client::PagingClient;
use klaxon_proto::v1::review_client::ReviewClient;
use klaxon_proto::v1::severity_evaluator_client::SeverityEvaluatorClient;
use klaxon_proto::v1::status_feed_client::StatusFeedClient;
use tokio::sync::mpsc;
use tonic::metadata::AsciiMetadataValue;
use tonic::transport::{Channel, Endpoint};

use crate::error::Error;

/// How long establishing the connection may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one request may take (not applied to `join` and `watch`).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `join` waits for the server to end the stream after `leave`.
pub const LEAVE_TIMEOUT: Duration = Duration::from_secs(5);
/// The most stdin lines buffered before `join` stops reading.
const NOTE_BUFFER_MAX: usize = 16;

/// What one invocation asks of the server.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// One unary RPC (or, for `list --all-pages`, one per page).
    Call(Rpc),
    /// A bridge session. Its notes get the request ids `note_ids.1`,
    /// `note_ids.2`, … in the order they are typed, so that the same
    /// invocation run again (with the same `--request-id`) writes no note
    /// twice.
    Join {
        /// The join message.
        join: v1::JoinBridge,
        /// The base of the notes' request ids.
        note_ids: String,
    },
    /// A subscription to the status feed, until it ends or Ctrl-C.
    Watch(v1::FeedFilter),
    /// `klaxon policy lint`: of a file, locally (no server), or of the
    /// server's running configuration (`SeverityEvaluator.LintPolicy`).
    Lint {
        /// The file to lint; `None`: the server's running configuration.
        config: Option<crate::cli::ConfigFile>,
        /// How many days ahead to look for coverage holes.
        days: u32,
        /// Whether every finding fails.
        strict: bool,
    },
}

/// A request of the `Incidents`, `SeverityEvaluator`, `Paging` or `Review`
/// service (all served at `--server`), ready to send.
#[derive(Debug, Clone, PartialEq)]
#[allow(missing_docs)] // Each variant is named after its RPC.
pub enum Rpc {
    Report(v1::ReportRequest),
    Declare(v1::DeclareRequest),
    OverrideSeverity(v1::OverrideSeverityRequest),
    AssignCommander(v1::AssignCommanderRequest),
    RequestHandoff(v1::RequestHandoffRequest),
    AcceptHandoff(v1::AcceptHandoffRequest),
    DeclineHandoff(v1::DeclineHandoffRequest),
    CancelHandoff(v1::CancelHandoffRequest),
    AssignRole(v1::AssignRoleRequest),
    RemoveRole(v1::RemoveRoleRequest),
    PostUpdate(v1::PostUpdateRequest),
    RecordCustomerImpact(v1::RecordCustomerImpactRequest),
    Mitigate(v1::MitigateRequest),
    Resolve(v1::ResolveRequest),
    Reopen(v1::ReopenRequest),
    ValidateResolution(v1::ValidateResolutionRequest),
    GetIncident(v1::GetIncidentRequest),
    /// With `all_pages`, every page is fetched and the replies concatenated.
    ListIncidents {
        request: v1::ListIncidentsRequest,
        all_pages: bool,
    },
    GetHistory(v1::GetHistoryRequest),
    ExplainSeverity(v1::ExplainSeverityRequest),
    Acknowledge(v1::AcknowledgeRequest),
    WhoIsOnCall(v1::WhoIsOnCallRequest),
    ChangeSchedule(v1::ChangeScheduleRequest),
    Coverage(v1::CoverageRequest),
    ListPages(v1::ListPagesRequest),
    MarkNoise(v1::MarkNoiseRequest),
    PageResponder(v1::PageResponderRequest),
    /// Server streaming, read to its end.
    ReplayTimeline(v1::ReplayTimelineRequest),
    GetMetrics(v1::GetMetricsRequest),
    GetReview(v1::GetReviewRequest),
    EditReview(v1::EditReviewRequest),
    ListActionItems(v1::ListActionItemsRequest),
    ExportMarkdown(v1::ExportMarkdownRequest),
    /// With `csv`, the CSV rendering of the report is printed.
    Trends {
        request: v1::TrendsRequest,
        csv: bool,
    },
    /// `klaxon policy test`, printed in `format`.
    TestPolicy {
        request: v1::TestPolicyRequest,
        format: crate::cli::Format,
    },
    /// Every page of the audit trail, followed to the log's end; printed
    /// as `format` (default: the table, or JSON with `--json`).
    Audit {
        request: v1::AuditRequest,
        format: Option<crate::cli::AuditFormat>,
    },
}

impl Rpc {
    /// Checks the request's free text by the server's own rule
    /// ([`klaxon_proto::text::check_text`]), so that a bad title or note is
    /// refused here, in the server's words, before anything is sent.
    pub fn check_text(&self) -> Result<(), klaxon_domain::Error> {
        use klaxon_proto::text::check_text;
        match self {
            Rpc::Report(m) => check_text(m),
            Rpc::OverrideSeverity(m) => check_text(m),
            Rpc::DeclineHandoff(m) => check_text(m),
            Rpc::CancelHandoff(m) => check_text(m),
            Rpc::PostUpdate(m) => check_text(m),
            Rpc::RecordCustomerImpact(m) => check_text(m),
            Rpc::Mitigate(m) => check_text(m),
            Rpc::Resolve(m) => check_text(m),
            Rpc::Reopen(m) => check_text(m),
            Rpc::ValidateResolution(m) => check_text(m),
            Rpc::MarkNoise(m) => check_text(m),
            Rpc::PageResponder(m) => check_text(m),
            Rpc::EditReview(m) => check_text(m),
            Rpc::ExplainSeverity(v1::ExplainSeverityRequest { report: Some(report), .. }) => check_text(report),
            Rpc::Declare(_)
            | Rpc::AssignCommander(_)
            | Rpc::RequestHandoff(_)
            | Rpc::AcceptHandoff(_)
            | Rpc::AssignRole(_)
            | Rpc::RemoveRole(_)
            | Rpc::GetIncident(_)
            | Rpc::ListIncidents { .. }
            | Rpc::GetHistory(_)
            | Rpc::ExplainSeverity(_)
            | Rpc::Acknowledge(_)
            | Rpc::WhoIsOnCall(_)
            | Rpc::ChangeSchedule(_)
            | Rpc::Coverage(_)
            | Rpc::ListPages(_)
            | Rpc::ReplayTimeline(_)
            | Rpc::GetMetrics(_)
            | Rpc::GetReview(_)
            | Rpc::ListActionItems(_)
            | Rpc::ExportMarkdown(_)
            | Rpc::Trends { .. }
            | Rpc::TestPolicy { .. }
            | Rpc::Audit { .. } => Ok(()),
        }
    }
}

/// The answer to an [`Rpc`].
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// From `Report`.
    Report(v1::ReportResponse),
    /// From every other command.
    Command(v1::CommandResponse),
    /// From `GetIncident`.
    Incident(v1::Incident),
    /// From `ListIncidents`.
    List(v1::ListIncidentsResponse),
    /// From `GetHistory`.
    History(v1::GetHistoryResponse),
    /// From `SeverityEvaluator.Explain`.
    Explanation(v1::SeverityExplanation),
    /// From `Paging.Acknowledge`.
    Acknowledged(v1::AcknowledgeResponse),
    /// From `Paging.WhoIsOnCall`.
    OnCall(v1::WhoIsOnCallResponse),
    /// From `Paging.ListPages`.
    Pages(v1::ListPagesResponse),
    /// From `Paging.ChangeSchedule`.
    ScheduleChanged(v1::ChangeScheduleResponse),
    /// From `Paging.Coverage`.
    Coverage(v1::CoverageResponse),
    /// From `Review.ReplayTimeline`: every entry in log order, and the
    /// incident's state at the `as_of` moment when one was asked for.
    Timeline {
        /// The entries.
        entries: Vec<v1::TimelineEntry>,
        /// The incident as it was then.
        state: Option<v1::Incident>,
    },
    /// From `Review.GetMetrics`.
    Metrics(v1::IncidentMetrics),
    /// From `Review.GetReview` and `Review.EditReview`.
    Review(v1::ReviewView),
    /// From `Review.ListActionItems`.
    ActionItems(v1::ListActionItemsResponse),
    /// From `Review.ExportMarkdown`.
    Markdown(v1::ExportMarkdownResponse),
    /// From `Review.Trends`.
    Trends(v1::TrendsResponse),
    /// From `SeverityEvaluator.TestPolicy`.
    PolicyTest(v1::PolicyTestReport),
    /// From `Review.Audit`: the entries of every page.
    Audit(Vec<v1::AuditEntry>),
}

/// How to reach an `https://` server (ignored for `http://`). Not `Debug`:
/// it holds a private key.
#[derive(Clone, Default)]
pub struct Tls {
    /// The CA to trust (`--ca-cert`); https needs it.
    pub ca_cert: Option<std::path::PathBuf>,
    /// The client certificate and key (`--client-cert`, `--client-key`),
    /// for servers that require one.
    pub identity: Option<tonic::transport::Identity>,
}

/// A connection to klaxond plus the caller's credentials.
pub struct Connection {
    channel: Channel,
    credentials: Option<AsciiMetadataValue>,
}

impl Connection {
    /// Connects to `server`, or to the first of a comma-separated list of
    /// servers (gateway or intake replicas) that answers, each within
    /// [`CONNECT_TIMEOUT`]. `request_timeout` bounds every unary request;
    /// `None` for streams.
    pub async fn open(
        servers: &str,
        tls: &Tls,
        credentials: Option<AsciiMetadataValue>,
        request_timeout: Option<Duration>,
    ) -> Result<Self, Error> {
        let mut failures = Vec::new();
        for server in servers.split(',').map(str::trim) {
            match Connection::open_one(server, tls, credentials.clone(), request_timeout).await {
                Ok(connection) => return Ok(connection),
                Err(Error::Unreachable { server, detail }) => failures.push((server, detail)),
                Err(e) => return Err(e),
            }
        }
        match failures.len() {
            1 => {
                let (server, detail) = failures.remove(0);
                Err(Error::Unreachable { server, detail })
            }
            _ => {
                let detail = failures.iter().map(|(s, d)| format!("{s}: {d}")).collect::<Vec<_>>().join("; ");
                Err(Error::Unreachable { server: servers.to_string(), detail })
            }
        }
    }

    async fn open_one(
        server: &str,
        tls: &Tls,
        credentials: Option<AsciiMetadataValue>,
        request_timeout: Option<Duration>,
    ) -> Result<Self, Error> {
        let unreachable = |detail: String| Error::Unreachable { server: server.to_string(), detail };
        let mut endpoint = Endpoint::from_shared(server.to_string())
            .map_err(|e| unreachable(e.to_string()))?
            .connect_timeout(CONNECT_TIMEOUT);
        if server.starts_with("https://") {
            let Some(path) = &tls.ca_cert else {
                return Err(unreachable("an https server needs --ca-cert (or KLAXON_CA_CERT)".into()));
            };
            let pem = std::fs::read(path).map_err(|e| unreachable(format!("cannot read {}: {e}", path.display())))?;
            let mut config =
                tonic::transport::ClientTlsConfig::new().ca_certificate(tonic::transport::Certificate::from_pem(pem));
            if let Some(identity) = &tls.identity {
                config = config.identity(identity.clone());
            }
            endpoint = endpoint.tls_config(config).map_err(|e| unreachable(root_cause(&e)))?;
        }
        if let Some(t) = request_timeout {
            endpoint = endpoint.timeout(t);
        }
        let channel = endpoint.connect().await.map_err(|e| unreachable(root_cause(&e)))?;
        Ok(Connection { channel, credentials })
    }

    /// `SeverityEvaluator.LintPolicy`: the lint of the configuration the
    /// server runs.
    pub async fn lint_policy(&self, request: v1::LintPolicyRequest) -> Result<v1::PolicyLintReport, tonic::Status> {
        let mut c = SeverityEvaluatorClient::new(self.channel.clone());
        Ok(c.lint_policy(self.request(request)).await?.into_inner())
    }

    /// Wraps a message with the credentials.
    fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        if let Some(credentials) = &self.credentials {
            request.metadata_mut().insert("authorization", credentials.clone());
        }
        request
    }

    fn paging(&self) -> PagingClient<Channel> {
        PagingClient::new(self.channel.clone())
    }

    fn review(&self) -> ReviewClient<Channel> {
        ReviewClient::new(self.channel.clone())
    }

    /// Sends one request and returns the server's answer.
    pub async fn call(&self, rpc: Rpc) -> Result<Reply, tonic::Status> {
        let mut c = IncidentsClient::new(self.channel.clone());
        Ok(match rpc {
            Rpc::Report(m) => Reply::Report(c.report(self.request(m)).await?.into_inner()),
            Rpc::Declare(m) => Reply::Command(c.declare(self.request(m)).await?.into_inner()),
            Rpc::OverrideSeverity(m) => Reply::Command(c.override_severity(self.request(m)).await?.into_inner()),
            Rpc::AssignCommander(m) => Reply::Command(c.assign_commander(self.request(m)).await?.into_inner()),
            Rpc::RequestHandoff(m) => Reply::Command(c.request_handoff(self.request(m)).await?.into_inner()),
            Rpc::AcceptHandoff(m) => Reply::Command(c.accept_handoff(self.request(m)).await?.into_inner()),
            Rpc::DeclineHandoff(m) => Reply::Command(c.decline_handoff(self.request(m)).await?.into_inner()),
            Rpc::CancelHandoff(m) => Reply::Command(c.cancel_handoff(self.request(m)).await?.into_inner()),
            Rpc::AssignRole(m) => Reply::Command(c.assign_role(self.request(m)).await?.into_inner()),
            Rpc::RemoveRole(m) => Reply::Command(c.remove_role(self.request(m)).await?.into_inner()),
            Rpc::PostUpdate(m) => Reply::Command(c.post_update(self.request(m)).await?.into_inner()),
            Rpc::RecordCustomerImpact(m) => {
                Reply::Command(c.record_customer_impact(self.request(m)).await?.into_inner())
            }
            Rpc::Mitigate(m) => Reply::Command(c.mitigate(self.request(m)).await?.into_inner()),
            Rpc::Resolve(m) => Reply::Command(c.resolve(self.request(m)).await?.into_inner()),
            Rpc::Reopen(m) => Reply::Command(c.reopen(self.request(m)).await?.into_inner()),
            Rpc::ValidateResolution(m) => Reply::Command(c.validate_resolution(self.request(m)).await?.into_inner()),
            Rpc::GetIncident(m) => Reply::Incident(c.get_incident(self.request(m)).await?.into_inner()),
            Rpc::GetHistory(m) => Reply::History(c.get_history(self.request(m)).await?.into_inner()),
            Rpc::ListIncidents { mut request, all_pages } => {
                let mut all = c.list_incidents(self.request(request.clone())).await?.into_inner();
                while all_pages && !all.next_page_token.is_empty() {
                    request.page_token = std::mem::take(&mut all.next_page_token);
                    let page = c.list_incidents(self.request(request.clone())).await?.into_inner();
                    all.incidents.extend(page.incidents);
                    all.next_page_token = page.next_page_token;
                }
                Reply::List(all)
            }
            Rpc::ExplainSeverity(m) => {
                let mut c = SeverityEvaluatorClient::new(self.channel.clone());
                Reply::Explanation(c.explain(self.request(m)).await?.into_inner())
            }
            Rpc::TestPolicy { request, .. } => {
                let mut c = SeverityEvaluatorClient::new(self.channel.clone());
                Reply::PolicyTest(c.test_policy(self.request(request)).await?.into_inner())
            }
            Rpc::Acknowledge(m) => Reply::Acknowledged(self.paging().acknowledge(self.request(m)).await?.into_inner()),
            Rpc::WhoIsOnCall(m) => Reply::OnCall(self.paging().who_is_on_call(self.request(m)).await?.into_inner()),
            Rpc::ListPages(m) => Reply::Pages(self.paging().list_pages(self.request(m)).await?.into_inner()),
            Rpc::ChangeSchedule(m) => {
                Reply::ScheduleChanged(self.paging().change_schedule(self.request(m)).await?.into_inner())
            }
            Rpc::Coverage(m) => Reply::Coverage(self.paging().coverage(self.request(m)).await?.into_inner()),
            Rpc::MarkNoise(m) => Reply::Command(c.mark_noise(self.request(m)).await?.into_inner()),
            Rpc::PageResponder(m) => Reply::Command(c.page_responder(self.request(m)).await?.into_inner()),
            Rpc::ReplayTimeline(m) => {
                use v1::timeline_message::Message;
                let mut stream = self.review().replay_timeline(self.request(m)).await?.into_inner();
                let (mut entries, mut state) = (Vec::new(), None);
                while let Some(v1::TimelineMessage { message }) = stream.message().await? {
                    match message {
                        Some(Message::Entry(e)) => entries.push(e),
                        Some(Message::State(i)) => state = Some(i),
                        None => {}
                    }
                }
                Reply::Timeline { entries, state }
            }
            Rpc::GetMetrics(m) => Reply::Metrics(self.review().get_metrics(self.request(m)).await?.into_inner()),
            Rpc::GetReview(m) => Reply::Review(self.review().get_review(self.request(m)).await?.into_inner()),
            Rpc::EditReview(m) => Reply::Review(self.review().edit_review(self.request(m)).await?.into_inner()),
            Rpc::ListActionItems(m) => {
                Reply::ActionItems(self.review().list_action_items(self.request(m)).await?.into_inner())
            }
            Rpc::ExportMarkdown(m) => {
                Reply::Markdown(self.review().export_markdown(self.request(m)).await?.into_inner())
            }
            Rpc::Trends { request, .. } => {
                Reply::Trends(self.review().trends(self.request(request)).await?.into_inner())
            }
            Rpc::Audit { mut request, .. } => {
                // Each page is bounded by the server; `next` only grows,
                // so this ends at the log's end.
                let mut entries = Vec::new();
                loop {
                    let page = self.review().audit(self.request(request.clone())).await?.into_inner();
                    entries.extend(page.entries);
                    if page.next == 0 || page.next <= request.after {
                        break;
                    }
                    request.after = page.next;
                }
                Reply::Audit(entries)
            }
        })
    }

    /// Runs a bridge session: sends `join`, hands every server message to
    /// `on_message`, sends each non-empty stdin line as a note (request id
    /// `note_ids.N` for the N-th), and on stdin EOF sends `leave` and waits
    /// at most [`LEAVE_TIMEOUT`] for the server to end the stream. A note
    /// the text rule refuses ends the session with [`Error::Refused`], as
    /// the server would, before it is sent. Returns [`Error::Interrupted`]
    /// on Ctrl-C, and [`Error::Ended`] when the server ends the session
    /// first (stopping: it records the participant's leave).
    pub async fn join(
        &self,
        join: v1::JoinBridge,
        note_ids: &str,
        mut on_message: impl FnMut(v1::bridge_response::Message) -> Result<(), Error>,
    ) -> Result<(), Error> {
        use v1::bridge_request::Message;
        let status = Error::from;
        let (outbound, rx) = mpsc::channel(NOTE_BUFFER_MAX);
        let mut outbound = Some(outbound);
        let mut notes = 0u64;
        let incident = join.incident_id.clone();
        send(&outbound, Message::Join(join), String::new()).await;
        let mut client = BridgeClient::new(self.channel.clone());
        let mut inbound = client
            .join(self.request(tokio_stream::wrappers::ReceiverStream::new(rx)))
            .await
            .map_err(status)?
            .into_inner();
        let mut lines = stdin_lines();
        let ctrl_c = tokio::signal::ctrl_c();
        tokio::pin!(ctrl_c);
        let leave_deadline = tokio::time::sleep(Duration::MAX);
        tokio::pin!(leave_deadline);
        let mut leaving = false;
        loop {
            tokio::select! {
                message = inbound.message() => match message.map_err(status)? {
                    Some(v1::BridgeResponse { message: Some(m) }) => on_message(m)?,
                    Some(v1::BridgeResponse { message: None }) => {}
                    None if leaving => return Ok(()),
                    None => {
                        return Err(Error::Ended {
                            what: format!(
                                "the bridge of {incident} (is it stopping or restarting?); you have left it: join \
                                 again with `klaxon join {incident}`"
                            ),
                        })
                    }
                },
                line = lines.recv(), if !leaving => match line {
                    Some(text) if text.trim().is_empty() => {}
                    Some(text) => {
                        notes += 1;
                        let note = v1::BridgeRequest {
                            message: Some(Message::Note(text)),
                            request_id: format!("{note_ids}.{notes}"),
                        };
                        klaxon_proto::text::check_text(&note).map_err(Error::Refused)?;
                        send(&outbound, note.message.expect("a note"), note.request_id).await;
                    }
                    None => {
                        send(&outbound, Message::Leave(v1::LeaveBridge {}), String::new()).await;
                        outbound = None; // Half-closes the request stream.
                        leaving = true;
                        leave_deadline.as_mut().reset(tokio::time::Instant::now() + LEAVE_TIMEOUT);
                    }
                },
                () = &mut leave_deadline, if leaving => return Ok(()),
                _ = &mut ctrl_c => return Err(Error::Interrupted),
            }
        }
    }

    /// Subscribes to the status feed, calls `on_open` once the server took
    /// the subscription, and hands every item to `on_item` until the server
    /// ends the stream or the connection is lost ([`Watched::Cut`]) or
    /// `on_item` answers `false` (stdout was closed: [`Watched::Reader`]).
    /// A subscription refused or unreachable is `Err`, and Ctrl-C is
    /// [`Error::Interrupted`].
    pub async fn watch(
        &self,
        filter: v1::FeedFilter,
        on_open: impl FnOnce(),
        mut on_item: impl FnMut(v1::FeedItem) -> Result<bool, Error>,
    ) -> Result<Watched, Error> {
        let ctrl_c = tokio::signal::ctrl_c();
        tokio::pin!(ctrl_c);
        let mut client = StatusFeedClient::new(self.channel.clone());
        let mut items = tokio::select! {
            response = client.subscribe(self.request(filter)) => response?.into_inner(),
            _ = &mut ctrl_c => return Err(Error::Interrupted),
        };
        on_open();
        loop {
            tokio::select! {
                item = items.message() => match item.map_err(Error::from) {
                    Ok(Some(item)) => if !on_item(item)? {
                        return Ok(Watched::Reader);
                    },
                    Ok(None) => return Ok(Watched::Cut(None)),
                    Err(e) if e.exit() == crate::error::Exit::Unreachable => return Ok(Watched::Cut(Some(e))),
                    Err(e) => return Err(e),
                },
                _ = &mut ctrl_c => return Err(Error::Interrupted),
            }
        }
    }
}

/// How a status feed that was open ended.
#[derive(Debug)]
pub enum Watched {
    /// Whoever reads the output went away (stdout closed).
    Reader,
    /// The server ended the feed (`None`: stopping or restarting), or the
    /// connection to it was lost.
    Cut(Option<Error>),
}

/// Queues one bridge message; if the stream is already gone, the next read
/// of the server's side reports why.
async fn send(
    outbound: &Option<mpsc::Sender<v1::BridgeRequest>>,
    message: v1::bridge_request::Message,
    request_id: String,
) {
    if let Some(tx) = outbound {
        let _ = tx.send(v1::BridgeRequest { message: Some(message), request_id }).await;
    }
}

/// Reads stdin lines on a plain thread (a blocked read must never keep the
/// runtime from shutting down); the channel closes at EOF or on a read error.
fn stdin_lines() -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel(NOTE_BUFFER_MAX);
    std::thread::spawn(move || {
        for line in std::io::stdin().lines() {
            let Ok(line) = line else { break };
            if tx.blocking_send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// The innermost cause of an error, which names what actually failed
/// (for example "Connection refused (os error 111)").
pub fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}
