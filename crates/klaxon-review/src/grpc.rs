//! The `klaxon.v1.Review` server.

use klaxon_domain::class::Class;
use klaxon_domain::ids::{ActorId, RequestKey, RequestScope, ServiceName};
use klaxon_domain::review::{self, ActionItem, ActionItemId, IncidentAsOf, Review, ReviewCommand, TrendFilter};
use klaxon_proto::convert;
use klaxon_proto::status::{self, from as to_status};
use klaxon_proto::text::check_text;
use klaxon_proto::v1::{self, edit_review_request, replay_timeline_request, review_server, timeline_message};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::Handle;

/// The gRPC server of the review service.
#[derive(Clone)]
pub struct ReviewService {
    handle: Handle,
}

impl ReviewService {
    /// Serves reviews through `handle`.
    pub fn new(handle: Handle) -> ReviewService {
        ReviewService { handle }
    }

    /// The tonic server to add to a router.
    pub fn into_server(self) -> review_server::ReviewServer<ReviewService> {
        review_server::ReviewServer::new(self)
    }
}

/// A malformed request (its message names the field) as `INVALID_ARGUMENT`.
fn invalid(e: impl std::fmt::Display) -> Status {
    status::refuse(Class::InvalidArgument, e.to_string())
}

fn incident(value: &str) -> Result<klaxon_domain::ids::IncidentId, Status> {
    convert::incident_id("incident_id", value).map_err(invalid)
}

fn item_to_wire(item: &ActionItem) -> v1::ActionItem {
    v1::ActionItem {
        item_id: item.id().to_string(),
        incident_id: item.id().incident().to_string(),
        title: item.title().to_string(),
        owner: item.owner().map(|o| o.to_string()).unwrap_or_default(),
        due: item.due().map(|d| d.to_string()).unwrap_or_default(),
        completed: item.is_completed(),
    }
}

fn review_to_wire(id: klaxon_domain::ids::IncidentId, review: Option<&Review>) -> v1::ReviewView {
    match review {
        None => v1::ReviewView { incident_id: id.to_string(), ..Default::default() },
        Some(r) => v1::ReviewView {
            incident_id: id.to_string(),
            opened: true,
            published: r.is_published(),
            summary: r.summary().unwrap_or_default().to_string(),
            impact: r.impact().unwrap_or_default().to_string(),
            contributing_factors: r.contributing_factors().to_vec(),
            action_items: r.action_items().map(item_to_wire).collect(),
            version: r.version(),
        },
    }
}

fn item_id(value: &str) -> Result<ActionItemId, Status> {
    value.parse().map_err(|e| status::invalid("item_id", e))
}

fn owner(value: &str) -> Result<ActorId, Status> {
    ActorId::new(value).map_err(|e| invalid(format!("invalid owner: {e}")))
}

fn due(value: &str) -> Result<chrono::NaiveDate, Status> {
    value.parse().map_err(|e| invalid(format!("invalid due: {e}; expected YYYY-MM-DD")))
}

fn command(edit: &edit_review_request::Edit) -> Result<ReviewCommand, Status> {
    use edit_review_request::Edit;
    Ok(match edit {
        Edit::WriteSummary(s) => ReviewCommand::WriteSummary { summary: s.clone() },
        Edit::WriteImpact(s) => ReviewCommand::WriteImpact { impact: s.clone() },
        Edit::AddContributingFactor(s) => ReviewCommand::AddContributingFactor { factor: s.clone() },
        Edit::AddActionItem(s) => ReviewCommand::AddActionItem { title: s.clone(), owner: None, due: None },
        Edit::NewActionItem(n) => ReviewCommand::AddActionItem {
            title: n.title.clone(),
            owner: (!n.owner.is_empty()).then(|| owner(&n.owner)).transpose()?,
            due: (!n.due.is_empty()).then(|| due(&n.due)).transpose()?,
        },
        Edit::AssignActionItem(a) => {
            ReviewCommand::AssignActionItem { item: item_id(&a.item_id)?, owner: owner(&a.owner)? }
        }
        Edit::SetActionItemDue(d) => ReviewCommand::SetActionItemDue { item: item_id(&d.item_id)?, due: due(&d.due)? },
        Edit::CompleteActionItem(i) => ReviewCommand::CompleteActionItem { item: item_id(i)? },
        Edit::Publish(_) => ReviewCommand::Publish,
    })
}

#[tonic::async_trait]
impl review_server::Review for ReviewService {
    type ReplayTimelineStream = ReceiverStream<Result<v1::TimelineMessage, Status>>;

    async fn replay_timeline(
        &self,
        request: Request<v1::ReplayTimelineRequest>,
    ) -> Result<Response<Self::ReplayTimelineStream>, Status> {
        let r = request.get_ref();
        let id = incident(&r.incident_id)?;
        let as_of = match &r.as_of {
            None => None,
            Some(replay_timeline_request::AsOf::AsOfPosition(p)) => Some(IncidentAsOf::Position(*p)),
            Some(replay_timeline_request::AsOf::AsOfTime(t)) => Some(IncidentAsOf::Time(
                convert::from_timestamp("as_of_time", Some(t)).map_err(invalid)?.expect("a timestamp was given"),
            )),
        };
        let (entries, state) = self.handle.timeline(id, as_of).await.map_err(to_status)?;
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        tokio::spawn(async move {
            for e in entries {
                let entry = v1::TimelineEntry {
                    position: e.position,
                    at: Some(convert::timestamp(e.at)),
                    by: e.by.to_string(),
                    kind: e.kind.to_string(),
                    summary: e.summary,
                    source: e.source.as_str().to_string(),
                };
                let message = v1::TimelineMessage { message: Some(timeline_message::Message::Entry(entry)) };
                if tx.send(Ok(message)).await.is_err() {
                    return;
                }
            }
            if let Some(state) = state {
                let message = v1::TimelineMessage {
                    message: Some(timeline_message::Message::State(convert::incident_to_wire(&state))),
                };
                let _ = tx.send(Ok(message)).await;
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn get_metrics(
        &self,
        request: Request<v1::GetMetricsRequest>,
    ) -> Result<Response<v1::IncidentMetrics>, Status> {
        let id = incident(&request.get_ref().incident_id)?;
        let m = self.handle.metrics(id).await.map_err(to_status)?;
        let seconds = |d: Option<chrono::TimeDelta>| d.map(|d| d.num_seconds());
        Ok(Response::new(v1::IncidentMetrics {
            incident_id: id.to_string(),
            time_to_detect_seconds: seconds(m.time_to_detect),
            time_to_acknowledge_seconds: seconds(m.time_to_acknowledge),
            time_to_assign_seconds: seconds(m.time_to_assign),
            time_to_mitigate_seconds: seconds(m.time_to_mitigate),
            time_to_resolve_seconds: seconds(m.time_to_resolve),
            escalations: m.escalations,
            handoffs: m.handoffs,
            slo_breaches: m.slo_breaches.total(),
            pages: m.pages,
            noise: m.noise,
            pulled_in_pages: m.pulled_in_pages,
        }))
    }

    async fn get_review(&self, request: Request<v1::GetReviewRequest>) -> Result<Response<v1::ReviewView>, Status> {
        let id = incident(&request.get_ref().incident_id)?;
        let review = self.handle.review(id).await.map_err(to_status)?;
        Ok(Response::new(review_to_wire(id, review.as_ref())))
    }

    async fn edit_review(&self, request: Request<v1::EditReviewRequest>) -> Result<Response<v1::ReviewView>, Status> {
        let actor = convert::actor(request.metadata()).map_err(invalid)?;
        let r = request.get_ref();
        let id = incident(&r.incident_id)?;
        if let Some(grant) = klaxon_auth::Grant::scoped(&request) {
            let service = self.handle.incident_service(id).await.map_err(to_status)?;
            grant.permit(service.as_ref().map(|s| s.as_str()))?;
        }
        let edit = r.edit.as_ref().ok_or_else(|| status::invalid("edit", "is required"))?;
        check_text(r).map_err(invalid)?;
        let request_id = r.context.as_ref().map_or("", |c| c.request_id.as_str());
        let key = RequestKey::new(RequestScope::Review, &actor, "context.request_id", request_id).map_err(invalid)?;
        let expected_version = r.context.as_ref().and_then(|c| c.expected_version);
        let command = command(edit)?;
        // An action item's owner is a person the server knows now (with
        // authentication; without, it knows nobody): a mistyped name would
        // leave the item to nobody.
        let owner = match &command {
            ReviewCommand::AssignActionItem { owner, .. } | ReviewCommand::AddActionItem { owner: Some(owner), .. } => {
                Some(owner)
            }
            _ => None,
        };
        if let (Some(owner), Some(grant)) = (owner, request.extensions().get::<klaxon_auth::Grant>()) {
            grant.check_person("owner", owner.as_str()).map_err(|e| status::to_status(&e))?;
        }
        let review = self.handle.edit(id, command, &actor, key.as_ref(), expected_version).await.map_err(to_status)?;
        Ok(Response::new(review_to_wire(id, Some(&review))))
    }

    async fn list_action_items(
        &self,
        request: Request<v1::ListActionItemsRequest>,
    ) -> Result<Response<v1::ListActionItemsResponse>, Status> {
        let items = self.handle.action_items(request.get_ref().open_only).await.map_err(to_status)?;
        Ok(Response::new(v1::ListActionItemsResponse { items: items.iter().map(item_to_wire).collect() }))
    }

    async fn export_markdown(
        &self,
        request: Request<v1::ExportMarkdownRequest>,
    ) -> Result<Response<v1::ExportMarkdownResponse>, Status> {
        let id = incident(&request.get_ref().incident_id)?;
        let markdown = self.handle.markdown(id).await.map_err(to_status)?;
        Ok(Response::new(v1::ExportMarkdownResponse { markdown }))
    }

    async fn trends(&self, request: Request<v1::TrendsRequest>) -> Result<Response<v1::TrendsResponse>, Status> {
        let r = request.get_ref();
        let from = convert::from_timestamp("from", r.from.as_ref()).map_err(invalid)?;
        let to = convert::from_timestamp("to", r.to.as_ref()).map_err(invalid)?;
        let (Some(from), Some(to)) = (from, to) else {
            return Err(status::invalid("from/to", "both are required"));
        };
        if to <= from {
            return Err(status::invalid("to", "must be after from"));
        }
        let filter = trend_filter(r)?;
        let report = self.handle.trends(from, to, &filter).await.map_err(to_status)?;
        Ok(Response::new(v1::TrendsResponse {
            table: review::render_table(&report),
            json: serde_json::to_string_pretty(&report).map_err(|e| status::refuse(Class::Internal, e.to_string()))?,
            csv: review::to_csv(&report),
        }))
    }

    async fn audit(&self, request: Request<v1::AuditRequest>) -> Result<Response<v1::AuditResponse>, Status> {
        let r = request.get_ref();
        let from = convert::from_timestamp("from", r.from.as_ref()).map_err(invalid)?;
        let until = convert::from_timestamp("until", r.until.as_ref()).map_err(invalid)?;
        if let (Some(from), Some(until)) = (from, until) {
            if until <= from {
                return Err(status::invalid("until", "must be after from"));
            }
        }
        let limit = match r.limit {
            0 => AUDIT_LIMIT_DEFAULT,
            n if n as usize > AUDIT_LIMIT_MAX => {
                return Err(status::invalid("limit", format!("must be at most {AUDIT_LIMIT_MAX}")));
            }
            n => n as usize,
        };
        let filter = klaxon_domain::audit::Filter {
            actor: (!r.actor.is_empty()).then(|| r.actor.clone()),
            from,
            until,
            kind_prefix: (!r.kind_prefix.is_empty()).then(|| r.kind_prefix.clone()),
        };
        let (entries, next) = self.handle.audit(&filter, r.after, limit).await.map_err(to_status)?;
        let entries = entries
            .into_iter()
            .map(|e| v1::AuditEntry {
                position: e.position,
                at: Some(convert::timestamp(e.at)),
                actor: e.actor,
                kind: e.kind,
                stream: e.stream,
                summary: e.summary,
            })
            .collect();
        Ok(Response::new(v1::AuditResponse { entries, next: next.unwrap_or(0) }))
    }
}

/// The filters of a trends request; empty fields filter nothing.
fn trend_filter(r: &v1::TrendsRequest) -> Result<TrendFilter, Status> {
    let service = match r.service.as_str() {
        "" => None,
        s => Some(ServiceName::new(s).map_err(|e| status::invalid("service", e))?),
    };
    let team = match r.team.as_str() {
        "" => None,
        t if t.len() > TEAM_BYTES_MAX || t.chars().any(char::is_control) => {
            return Err(status::invalid("team", format!("{t:?} is not a team name")));
        }
        t => Some(t.to_owned()),
    };
    let severity = match r.severity {
        0 => None,
        s => Some(convert::severity("severity", s).map_err(invalid)?),
    };
    Ok(TrendFilter { service, team, severity })
}

/// The longest team name a filter may carry.
const TEAM_BYTES_MAX: usize = 128;

/// Entries of an audit page when the request names no limit.
pub const AUDIT_LIMIT_DEFAULT: usize = 100;
/// Entries of an audit page at most.
pub const AUDIT_LIMIT_MAX: usize = 1000;
