//! The `klaxon.v1.Paging` server.

use klaxon_domain::ids::{ActorId, RequestKey, RequestScope};
use klaxon_domain::oncall::Source;
use klaxon_domain::oncall::roster::{Acting, RosterChange, RosterCommand};
use klaxon_domain::paging::{Page, PageId};
use klaxon_proto::convert;
use klaxon_proto::status::{self, from as to_status};
use klaxon_proto::v1::{self, paging_server};
use tonic::{Request, Response, Status};

use crate::{DeliveryStatus, Handle};

/// The gRPC server of the paging service.
#[derive(Clone)]
pub struct PagingService {
    handle: Handle,
}

impl PagingService {
    /// Serves acknowledgements and queries through `handle`.
    pub fn new(handle: Handle) -> PagingService {
        PagingService { handle }
    }

    /// The tonic server to add to a router.
    pub fn into_server(self) -> paging_server::PagingServer<PagingService> {
        paging_server::PagingServer::new(self)
    }
}

fn page_to_wire((page, delivery): &(Page, DeliveryStatus)) -> v1::Page {
    let (acknowledged_by, acknowledged_at) = match page.acknowledged() {
        Some((by, at)) => (by.to_string(), Some(convert::timestamp(at))),
        None => (String::new(), None),
    };
    v1::Page {
        page_id: page.id().to_string(),
        incident_id: page.id().incident().to_string(),
        responder: page.responder().to_string(),
        level: page.level(),
        round: page.round(),
        reason: page.reason().as_str().to_string(),
        paged_at: Some(convert::timestamp(page.paged_at())),
        deadline: page.deadline().map(convert::timestamp),
        acknowledged_at,
        acknowledged_by,
        delivery: delivery.as_str().to_string(),
        delivery_note: match delivery {
            DeliveryStatus::Unsent(unsent) => unsent.describe(page.id()),
            _ => String::new(),
        },
    }
}

#[tonic::async_trait]
impl paging_server::Paging for PagingService {
    async fn acknowledge(
        &self,
        request: Request<v1::AcknowledgeRequest>,
    ) -> Result<Response<v1::AcknowledgeResponse>, Status> {
        let actor = convert::actor(request.metadata()).map_err(to_status)?;
        let page: PageId = request.get_ref().page_id.parse().map_err(|e| status::invalid("page_id", e))?;
        if let Some(grant) = klaxon_auth::Grant::scoped(&request) {
            let service = self.handle.page_service(page).await.map_err(to_status)?;
            grant.permit(service.as_ref().map(|s| s.as_str()))?;
        }
        let key = RequestKey::new(RequestScope::Acknowledgement, &actor, "request_id", &request.get_ref().request_id)
            .map_err(to_status)?;
        let (page, position) = self.handle.acknowledge(page, &actor, key.as_ref()).await.map_err(to_status)?;
        Ok(Response::new(v1::AcknowledgeResponse {
            page: Some(page_to_wire(&(page.clone(), self.handle.delivery_status(&page)))),
            position: position.0,
        }))
    }

    async fn who_is_on_call(
        &self,
        request: Request<v1::WhoIsOnCallRequest>,
    ) -> Result<Response<v1::WhoIsOnCallResponse>, Status> {
        let r = request.get_ref();
        let at = convert::from_timestamp("at", r.at.as_ref()).map_err(to_status)?;
        let schedule = (!r.schedule.is_empty()).then_some(r.schedule.as_str());
        let answers = self.handle.who_is_on_call(schedule, at).await.map_err(to_status)?;
        let on_call = answers
            .into_iter()
            .map(|(schedule, on_call)| match on_call {
                Some(o) => v1::OnCall {
                    schedule,
                    who: o.who.to_string(),
                    source: match &o.source {
                        Source::Override(_) => "override".to_string(),
                        Source::Added(n) => format!("override O{n}"),
                        Source::Swap(n) => format!("swap S{n}"),
                        Source::Layer(name) => name.to_string(),
                    },
                    from: Some(convert::timestamp(o.from)),
                    until: Some(convert::timestamp(o.until)),
                },
                None => v1::OnCall { schedule, ..Default::default() },
            })
            .collect();
        Ok(Response::new(v1::WhoIsOnCallResponse { on_call }))
    }

    async fn change_schedule(
        &self,
        request: Request<v1::ChangeScheduleRequest>,
    ) -> Result<Response<v1::ChangeScheduleResponse>, Status> {
        use v1::change_schedule_request::Change;
        let actor = convert::actor(request.metadata()).map_err(to_status)?;
        // With authentication, the token's role decides; without, the
        // configured managers are managers (as for acknowledgements).
        let manager = match request.extensions().get::<klaxon_auth::Grant>() {
            Some(grant) => grant.principal.role == klaxon_auth::Role::Manager,
            None => self.handle.is_manager(&actor),
        };
        let r = request.get_ref();
        if r.schedule.is_empty() {
            return Err(status::invalid("schedule", "is required"));
        }
        // Someone named (not the caller) takes shifts, so must be able to
        // acknowledge their pages: checked against the principals the
        // server knows now (with authentication; without, it knows nobody).
        let grant = request.extensions().get::<klaxon_auth::Grant>();
        let person = |field: &'static str, raw: &str| -> Result<ActorId, Status> {
            if raw.is_empty() {
                return Ok(actor.clone());
            }
            let who = ActorId::new(raw).map_err(|e| status::invalid(field, e))?;
            if let Some(grant) = grant.filter(|_| who != actor) {
                grant.responder(field, raw).map_err(|e| status::to_status(&e))?;
            }
            Ok(who)
        };
        let time = |field: &'static str, t: Option<&prost_types::Timestamp>| {
            convert::from_timestamp(field, t).map_err(to_status)?.ok_or_else(|| status::invalid(field, "is required"))
        };
        let command = match &r.change {
            None => return Err(status::invalid("change", "is required")),
            Some(Change::AddOverride(o)) => {
                if o.who.is_empty() {
                    return Err(status::invalid("add_override.who", "is required"));
                }
                RosterCommand::AddOverride {
                    who: person("add_override.who", &o.who)?,
                    from: time("add_override.from", o.from.as_ref())?,
                    until: time("add_override.until", o.until.as_ref())?,
                }
            }
            Some(Change::RemoveOverride(id)) => RosterCommand::RemoveOverride { id: *id },
            Some(Change::RequestSwap(s)) => RosterCommand::RequestSwap {
                requester: person("request_swap.requester", &s.requester)?,
                from: time("request_swap.from", s.from.as_ref())?,
                until: time("request_swap.until", s.until.as_ref())?,
            },
            Some(Change::TakeSwap(t)) => {
                RosterCommand::TakeSwap { id: t.swap_id, taker: person("take_swap.taker", &t.taker)? }
            }
            Some(Change::CancelSwap(id)) => RosterCommand::CancelSwap { id: *id },
            Some(Change::UndoSwap(id)) => RosterCommand::UndoSwap { id: *id },
        };
        let key = RequestKey::new(RequestScope::Schedule, &actor, "request_id", &r.request_id).map_err(to_status)?;
        let acting = Acting { actor, manager };
        let (event, position) =
            self.handle.change_schedule(&r.schedule, &acting, &command, key.as_ref()).await.map_err(to_status)?;
        let number = match &event.change {
            RosterChange::OverrideAdded(c) => c.override_id,
            RosterChange::OverrideRemoved(c) => c.override_id,
            RosterChange::SwapRequested(c) => c.swap_id,
            RosterChange::SwapTaken(c) => c.swap_id,
            RosterChange::SwapCancelled(c) | RosterChange::SwapUndone(c) => c.swap_id,
        };
        Ok(Response::new(v1::ChangeScheduleResponse {
            kind: event.kind().to_string(),
            summary: event.summary(),
            number,
            position: position.0,
        }))
    }

    async fn coverage(&self, request: Request<v1::CoverageRequest>) -> Result<Response<v1::CoverageResponse>, Status> {
        let r = request.get_ref();
        let from = convert::from_timestamp("from", r.from.as_ref()).map_err(to_status)?;
        let to = convert::from_timestamp("to", r.to.as_ref()).map_err(to_status)?;
        let (from, to) = match (from, to) {
            (Some(from), Some(to)) => (from, to),
            (None, _) => return Err(status::invalid("from", "is required")),
            (_, None) => return Err(status::invalid("to", "is required")),
        };
        let holes = self.handle.coverage(from, to).await.map_err(to_status)?;
        let holes = holes
            .into_iter()
            .map(|(schedule, hole)| v1::Hole {
                schedule,
                from: Some(convert::timestamp(hole.from)),
                until: Some(convert::timestamp(hole.until)),
            })
            .collect();
        Ok(Response::new(v1::CoverageResponse { holes }))
    }

    async fn list_pages(
        &self,
        request: Request<v1::ListPagesRequest>,
    ) -> Result<Response<v1::ListPagesResponse>, Status> {
        let id = convert::incident_id("incident_id", &request.get_ref().incident_id).map_err(to_status)?;
        let pages = self.handle.pages_with_delivery(id).await.map_err(to_status)?;
        Ok(Response::new(v1::ListPagesResponse { pages: pages.iter().map(page_to_wire).collect() }))
    }
}
