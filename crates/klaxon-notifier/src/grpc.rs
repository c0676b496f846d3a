//! The `klaxon.v1.StatusFeed` server.

use klaxon_domain::notifier::{FeedFilter, FeedItem};
use klaxon_proto::convert;
use klaxon_proto::status::from as to_status;
use klaxon_proto::v1::{self, status_feed_server};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

pub use crate::budget::FEEDS_PER_PRINCIPAL_DEFAULT;
use crate::{Handle, Sent};

/// The gRPC server of the status feed.
#[derive(Clone)]
pub struct FeedService {
    handle: Handle,
    shutdown: CancellationToken,
}

impl FeedService {
    /// Serves feeds through `handle`; open feeds end on `shutdown`.
    pub fn new(handle: Handle, shutdown: CancellationToken) -> FeedService {
        FeedService { handle, shutdown }
    }

    /// How many live feeds one authenticated principal may have open at
    /// once, gRPC feeds and status page streams together (it sets the
    /// handle's [`crate::budget::FeedBudget`]); one more is refused with
    /// `RESOURCE_EXHAUSTED`. Unauthenticated servers (in-process tests)
    /// count nothing.
    pub fn with_per_principal_max(self, max: usize) -> FeedService {
        self.handle.feed_budget().set_max(max);
        self
    }

    /// The tonic server to add to a router.
    pub fn into_server(self) -> status_feed_server::StatusFeedServer<FeedService> {
        status_feed_server::StatusFeedServer::new(self)
    }
}

fn filter_from_wire(f: &v1::FeedFilter) -> Result<FeedFilter, klaxon_domain::Error> {
    Ok(FeedFilter {
        min_severity: if f.min_severity == 0 { None } else { Some(convert::severity("min_severity", f.min_severity)?) },
        services: f.services.iter().map(|s| convert::parse("services", s)).collect::<Result<_, _>>()?,
        customers: f.customers.iter().map(|c| convert::parse("customers", c)).collect::<Result<_, _>>()?,
        include_company_wide: f.include_company_wide,
    })
}

/// A feed item as the API shows it.
pub fn item_to_wire(item: &FeedItem, snapshot: bool) -> v1::FeedItem {
    v1::FeedItem {
        incident_id: item.incident.to_string(),
        title: item.title.clone(),
        severity: item.severity.map_or(v1::Severity::Unspecified, convert::severity_to_wire) as i32,
        status: convert::status_to_wire(item.status) as i32,
        commander: item.commander.as_ref().map(|c| c.to_string()).unwrap_or_default(),
        customers_affected: item.customers_affected,
        multi_customer: item.multi_customer,
        customers: item.customers.iter().map(|c| c.to_string()).collect(),
        impact_summary: item.impact_summary.clone().unwrap_or_default(),
        latest_executive_update: item.latest_executive_update.as_ref().map(|u| v1::StatusUpdate {
            audience: v1::Audience::Executive as i32,
            text: u.text.clone(),
            by: u.by.to_string(),
            at: Some(convert::timestamp(u.at)),
        }),
        next_update_due: item.next_update_due.map(convert::timestamp),
        at: Some(convert::timestamp(item.at)),
        service: item.service.as_ref().map(|s| s.to_string()).unwrap_or_default(),
        snapshot,
        company_wide_post: item.company_wide_post.clone().unwrap_or_default(),
        roles: item
            .roles
            .iter()
            .map(|(role, people)| v1::RoleHolders {
                role: convert::role_to_wire(*role) as i32,
                people: people.iter().map(|p| p.to_string()).collect(),
            })
            .collect(),
    }
}

#[tonic::async_trait]
impl status_feed_server::StatusFeed for FeedService {
    type SubscribeStream = ReceiverStream<Result<v1::FeedItem, Status>>;

    async fn subscribe(&self, request: Request<v1::FeedFilter>) -> Result<Response<Self::SubscribeStream>, Status> {
        let filter = filter_from_wire(request.get_ref()).map_err(to_status)?;
        let counted = match request.extensions().get::<klaxon_auth::Grant>() {
            Some(grant) => Some(self.handle.feed_budget().take(&grant.principal.name).map_err(to_status)?),
            None => None,
        };
        let mut items = self.handle.subscribe(filter, self.shutdown.clone()).map_err(to_status)?;
        let (tx, rx) = tokio::sync::mpsc::channel(crate::feed::ITEMS_BUFFER);
        tokio::spawn(async move {
            // Counted until the feed ends or the client leaves.
            let _counted = counted;
            loop {
                let sent = tokio::select! {
                    sent = items.recv() => sent,
                    () = tx.closed() => return,
                };
                let Some(Sent { item, snapshot }) = sent else { return };
                if tx.send(Ok(item_to_wire(&item, snapshot))).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}
