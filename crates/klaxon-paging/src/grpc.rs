//! The `klaxon.v1.Paging` server.

use klaxon_domain::ids::{RequestKey, RequestScope};
use klaxon_domain::paging::{Page, PageId};
use klaxon_proto::convert;
use klaxon_proto::status::{self, from as to_status};
use klaxon_proto::v1::{self, paging_server};
use tonic::{Request, Response, Status};

use crate::Handle;

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

fn page_to_wire(page: &Page) -> v1::Page {
    let (acknowledged_by, acknowledged_at) = match page.acknowledged() {
        Some((by, at)) => (by.to_string(), Some(convert::timestamp(at))),
        None => (String::new(), None),
    };
    v1::Page {
        page_id: page.id().to_string(),
        incident_id: page.id().incident().to_string(),
        responder: page.responder().to_string(),
        level: page.level().unwrap_or(u32::MAX),
        round: page.round(),
        reason: page.reason().as_str().to_string(),
        paged_at: Some(convert::timestamp(page.paged_at())),
        deadline: page.deadline().map(convert::timestamp),
        acknowledged_at,
        acknowledged_by,
        delivery: Handle::delivery_of(page).to_string(),
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
        Ok(Response::new(v1::AcknowledgeResponse { page: Some(page_to_wire(&page)), position: position.0 }))
    }

    async fn who_is_on_call(
        &self,
        request: Request<v1::WhoIsOnCallRequest>,
    ) -> Result<Response<v1::WhoIsOnCallResponse>, Status> {
        let r = request.get_ref();
        let at = convert::from_timestamp("at", r.at.as_ref()).map_err(to_status)?;
        let schedule = (!r.schedule.is_empty()).then_some(r.schedule.as_str());
        let answers = self.handle.who_is_on_call(schedule, at).map_err(to_status)?;
        let on_call = answers
            .into_iter()
            .map(|(schedule, on_call)| match on_call {
                Some(o) => v1::OnCall {
                    schedule,
                    who: o.who.to_string(),
                    source: match &o.source {
                        klaxon_domain::oncall::Source::Override(_) => "override".to_string(),
                        klaxon_domain::oncall::Source::Layer(name) => name.to_string(),
                    },
                    from: Some(convert::timestamp(o.from)),
                    until: Some(convert::timestamp(o.until)),
                },
                None => v1::OnCall { schedule, ..Default::default() },
            })
            .collect();
        Ok(Response::new(v1::WhoIsOnCallResponse { on_call }))
    }

    async fn list_pages(
        &self,
        request: Request<v1::ListPagesRequest>,
    ) -> Result<Response<v1::ListPagesResponse>, Status> {
        let id = convert::incident_id("incident_id", &request.get_ref().incident_id).map_err(to_status)?;
        let pages = self.handle.pages(id).await.map_err(to_status)?;
        Ok(Response::new(v1::ListPagesResponse { pages: pages.iter().map(page_to_wire).collect() }))
    }
}
