//! `klaxond serve gateway`: one client-facing address for the distributed
//! topology. It routes every gRPC call by its service name
//! (`/klaxon.v1.Paging/…` → the paging process) and streams requests and
//! responses through untouched, so unary calls, the bridge (bidirectional)
//! and feeds (server streaming) all work, with their metadata and trailers.
//!
//! It answers health checks itself: a service is `SERVING` while the
//! process that owns it says so (checked every second), and reflection
//! describes the whole API. An unreachable owner is `UNAVAILABLE` naming it.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use klaxon_domain::class::Class;
use klaxon_proto::status;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel, Endpoint};
use tonic_health::ServingStatus;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;
use tower::ServiceExt;

use crate::config::{ClusterConfig, TlsConfig};
use crate::process::{Process, Task};

/// An upstream process and the gRPC services it owns.
struct Upstream {
    role: &'static str,
    address: String,
    channel: Channel,
    services: &'static [&'static str],
}

/// Runs the gateway until `shutdown`.
pub async fn run(
    cluster: &ClusterConfig,
    tls: &TlsConfig,
    listen: SocketAddr,
    process: &Process,
) -> anyhow::Result<()> {
    let client_tls = tls.client()?;
    let table: [(&'static str, &String, &'static [&'static str]); 5] = [
        ("intake", &cluster.intake, &["klaxon.v1.Incidents", "klaxon.v1.Bridge"]),
        ("severity", &cluster.severity, &["klaxon.v1.SeverityEvaluator"]),
        ("paging", &cluster.paging, &["klaxon.v1.Paging"]),
        ("notifier", &cluster.notifier, &["klaxon.v1.StatusFeed"]),
        ("review", &cluster.review, &["klaxon.v1.Review"]),
    ];
    let mut upstreams = Vec::new();
    for (role, address, services) in table {
        let scheme = if client_tls.is_some() { "https" } else { "http" };
        let url = if address.contains("://") { address.clone() } else { format!("{scheme}://{address}") };
        let mut endpoint = Endpoint::from_shared(url)
            .with_context(|| format!("cluster.{role}: {address:?} is not an address"))?
            .connect_timeout(Duration::from_secs(2))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(10));
        if let Some(tls) = &client_tls {
            endpoint = endpoint.tls_config(tls.clone()).context("tls: ca_file, cert_file or key_file is not usable")?;
        }
        let channel = endpoint.connect_lazy();
        upstreams.push(Arc::new(Upstream { role, address: address.clone(), channel, services }));
    }
    let routes: Arc<HashMap<&'static str, Arc<Upstream>>> =
        Arc::new(upstreams.iter().flat_map(|u| u.services.iter().map(move |s| (*s, u.clone()))).collect());

    let (local, health) = crate::process::base_routes()?;
    for upstream in &upstreams {
        for service in upstream.services {
            health.set_service_status(*service, ServingStatus::NotServing).await;
        }
    }
    let watching = Task::new("the health watch", watch_health(upstreams.clone(), health, process.services.clone()));
    let proxy = tower::service_fn(move |request: http::Request<axum::body::Body>| {
        let routes = routes.clone();
        async move { Ok::<_, Infallible>(forward(&routes, request).await) }
    });
    let router = local.routes().into_axum_router().fallback_service(proxy);

    let (listener, address) = crate::process::bind(listen, "").await?;
    tracing::info!(%address, "klaxond serve gateway");
    println!("klaxond listening on {address} (gRPC: gateway)");
    let routes = tonic::service::Routes::from(router);
    process.run(tls.grpc_server()?, None, routes, listener, None, vec![watching]).await.context("the gateway failed")
}

/// Sends the call to the process owning its service.
async fn forward(
    routes: &HashMap<&'static str, Arc<Upstream>>,
    request: http::Request<axum::body::Body>,
) -> http::Response<axum::body::Body> {
    let service = request.uri().path().trim_start_matches('/').split('/').next().unwrap_or_default().to_owned();
    let Some(upstream) = routes.get(service.as_str()) else {
        let status = status::refuse(Class::Unimplemented, format!("no service {service:?} behind this gateway"));
        return status.into_http::<axum::body::Body>();
    };
    let request = request.map(tonic::body::Body::new);
    match upstream.channel.clone().oneshot(request).await {
        Ok(response) => response.map(axum::body::Body::new),
        Err(e) => {
            let status = status::refuse(
                Class::Unavailable,
                format!("{} ({}) is unreachable: {e}", upstream.role, upstream.address),
            );
            status.into_http::<axum::body::Body>()
        }
    }
}

/// Mirrors each owner's health into the gateway's, every second.
async fn watch_health(
    upstreams: Vec<Arc<Upstream>>,
    health: tonic_health::server::HealthReporter,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let mut every = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            _ = every.tick() => {}
        }
        for upstream in &upstreams {
            let mut client = HealthClient::new(upstream.channel.clone());
            for service in upstream.services {
                let request = HealthCheckRequest { service: (*service).to_owned() };
                let serving = matches!(
                    tokio::time::timeout(Duration::from_secs(1), client.check(request)).await,
                    Ok(Ok(answer)) if answer.get_ref().status == tonic_health::pb::health_check_response::ServingStatus::Serving as i32
                );
                let status = if serving { ServingStatus::Serving } else { ServingStatus::NotServing };
                health.set_service_status(*service, status).await;
            }
        }
    }
}
