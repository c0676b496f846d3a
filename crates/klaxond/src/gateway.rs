//! `klaxond serve gateway`: one client-facing address for the distributed
//! topology. It routes every gRPC call by its service name
//! (`/klaxon.v1.Paging/…` → the paging process) and streams requests and
//! responses through untouched, so unary calls, the bridge (bidirectional)
//! and feeds (server streaming) all work, with their metadata and trailers.
//!
//! It answers health checks itself: a service is `SERVING` while a
//! process that owns it says so (checked every second), and reflection
//! describes the whole API. An unreachable owner is `UNAVAILABLE` naming it.
//!
//! **Replicas.** Each `[cluster]` role address may list several replicas,
//! separated by commas. A call goes to the first replica that answered its
//! last health check (the first listed when none did). When the connection
//! to it fails, a call that sends one message (unary and server-streaming,
//! held in memory up to the message limit) is sent to the next replica; a
//! bridge (a stream of messages) is not replayed, its client reconnects.
//! Commands carry request ids, so a call replayed after a replica took it
//! and then failed is answered idempotently.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
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

/// The replicas of an upstream role and the gRPC services they own.
struct Upstream {
    role: &'static str,
    replicas: Vec<Replica>,
    services: &'static [&'static str],
}

/// One process of a role.
struct Replica {
    address: String,
    channel: Channel,
    /// Whether it answered the last health check (and no call to it failed
    /// to connect since).
    healthy: AtomicBool,
}

impl Upstream {
    /// The replicas in the order a call tries them: those healthy first,
    /// each group in the configured order.
    fn in_order(&self) -> impl Iterator<Item = &Replica> {
        let healthy = self.replicas.iter().filter(|r| r.healthy.load(Ordering::Relaxed));
        healthy.chain(self.replicas.iter().filter(|r| !r.healthy.load(Ordering::Relaxed)))
    }
}

/// The services whose calls are a stream of request messages, which the
/// gateway does not replay at another replica.
const STREAMING_REQUESTS: &[&str] = &["klaxon.v1.Bridge"];

/// Runs the gateway until `shutdown`.
pub async fn run(
    cluster: &ClusterConfig,
    tls: &TlsConfig,
    listen: SocketAddr,
    message_bytes_max: usize,
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
    for (role, addresses, services) in table {
        let mut replicas = Vec::new();
        for address in addresses.split(',').map(str::trim) {
            let scheme = if client_tls.is_some() { "https" } else { "http" };
            let url = if address.contains("://") { address.to_owned() } else { format!("{scheme}://{address}") };
            let mut endpoint = Endpoint::from_shared(url)
                .with_context(|| format!("cluster.{role}: {address:?} is not an address"))?
                .connect_timeout(Duration::from_secs(2))
                .tcp_nodelay(true)
                .http2_keep_alive_interval(Duration::from_secs(10));
            if let Some(tls) = &client_tls {
                endpoint =
                    endpoint.tls_config(tls.clone()).context("tls: ca_file, cert_file or key_file is not usable")?;
            }
            let channel = endpoint.connect_lazy();
            replicas.push(Replica { address: address.to_owned(), channel, healthy: AtomicBool::new(false) });
        }
        upstreams.push(Arc::new(Upstream { role, replicas, services }));
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
        async move { Ok::<_, Infallible>(forward(&routes, request, message_bytes_max).await) }
    });
    let router = local.routes().into_axum_router().fallback_service(proxy);

    let (listener, address) = crate::process::bind(listen, "").await?;
    tracing::info!(%address, "klaxond serve gateway");
    println!("klaxond listening on {address} (gRPC: gateway)");
    let routes = tonic::service::Routes::from(router);
    process.run(tls.grpc_server()?, None, routes, listener, None, vec![watching]).await.context("the gateway failed")
}

/// Sends the call to a replica of the process owning its service: the
/// first healthy one, then (a call of one message) the next ones while the
/// connection fails.
async fn forward(
    routes: &HashMap<&'static str, Arc<Upstream>>,
    request: http::Request<axum::body::Body>,
    message_bytes_max: usize,
) -> http::Response<axum::body::Body> {
    let service = request.uri().path().trim_start_matches('/').split('/').next().unwrap_or_default().to_owned();
    let Some(upstream) = routes.get(service.as_str()) else {
        let status = status::refuse(Class::Unimplemented, format!("no service {service:?} behind this gateway"));
        return status.into_http::<axum::body::Body>();
    };
    if STREAMING_REQUESTS.contains(&service.as_str()) || upstream.replicas.len() == 1 {
        let replica = upstream.in_order().next().expect("a role has at least one address");
        return match replica.channel.clone().oneshot(request.map(tonic::body::Body::new)).await {
            Ok(response) => response.map(axum::body::Body::new),
            Err(e) => unreachable(upstream, replica, &e),
        };
    }
    // One message: held so that it can be sent again. The gRPC frame
    // header adds 5 bytes; the owner enforces the message limit itself.
    let (parts, body) = request.into_parts();
    let body = match axum::body::to_bytes(body, message_bytes_max.saturating_add(5)).await {
        Ok(body) => body,
        Err(e) => {
            let status =
                status::refuse(Class::TooLarge, format!("the request is larger than {message_bytes_max} bytes: {e}"));
            return status.into_http::<axum::body::Body>();
        }
    };
    let mut failures = Vec::new();
    for replica in upstream.in_order() {
        let mut attempt = http::Request::new(tonic::body::Body::new(axum::body::Body::from(body.clone())));
        *attempt.method_mut() = parts.method.clone();
        *attempt.uri_mut() = parts.uri.clone();
        *attempt.version_mut() = parts.version;
        *attempt.headers_mut() = parts.headers.clone();
        match replica.channel.clone().oneshot(attempt).await {
            Ok(response) => return response.map(axum::body::Body::new),
            Err(e) => {
                replica.healthy.store(false, Ordering::Relaxed);
                tracing::warn!(role = upstream.role, address = %replica.address, error = %e, "replica unreachable; trying the next");
                failures.push(format!("{} ({e})", replica.address));
            }
        }
    }
    let status = status::refuse(
        Class::Unavailable,
        format!("every {} replica is unreachable: {}", upstream.role, failures.join(", ")),
    );
    status.into_http::<axum::body::Body>()
}

/// `UNAVAILABLE` naming the role and the replica; it is marked unhealthy.
fn unreachable(
    upstream: &Upstream,
    replica: &Replica,
    error: &dyn std::fmt::Display,
) -> http::Response<axum::body::Body> {
    replica.healthy.store(false, Ordering::Relaxed);
    let status =
        status::refuse(Class::Unavailable, format!("{} ({}) is unreachable: {error}", upstream.role, replica.address));
    status.into_http::<axum::body::Body>()
}

/// Failed health checks in a row (one a second) before the gateway's log
/// says a replica is not serving: a restart or a slow start says nothing.
const NOT_SERVING_SAID_AFTER: u32 = 3;

/// Mirrors each owner's health into the gateway's, every second, and says
/// in the log, once each way, when a replica stops serving and when it
/// serves again.
async fn watch_health(
    upstreams: Vec<Arc<Upstream>>,
    health: tonic_health::server::HealthReporter,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let mut every = tokio::time::interval(Duration::from_secs(1));
    // Per upstream and replica: failed checks in a row (said once at
    // NOT_SERVING_SAID_AFTER).
    let mut failing: Vec<Vec<u32>> = upstreams.iter().map(|u| vec![0; u.replicas.len()]).collect();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            _ = every.tick() => {}
        }
        for (upstream, failing) in upstreams.iter().zip(&mut failing) {
            let mut any = vec![false; upstream.services.len()];
            for (replica, failed) in upstream.replicas.iter().zip(failing.iter_mut()) {
                let mut client = HealthClient::new(replica.channel.clone());
                let mut all = true;
                for (i, service) in upstream.services.iter().enumerate() {
                    let request = HealthCheckRequest { service: (*service).to_owned() };
                    let serving = matches!(
                        tokio::time::timeout(Duration::from_secs(1), client.check(request)).await,
                        Ok(Ok(answer)) if answer.get_ref().status == tonic_health::pb::health_check_response::ServingStatus::Serving as i32
                    );
                    any[i] |= serving;
                    all &= serving;
                }
                replica.healthy.store(all, Ordering::Relaxed);
                let (role, address) = (upstream.role, &replica.address);
                if all {
                    if *failed >= NOT_SERVING_SAID_AFTER {
                        tracing::info!(role, %address, "serving again");
                    }
                    *failed = 0;
                } else {
                    *failed = failed.saturating_add(1);
                    if *failed == NOT_SERVING_SAID_AFTER {
                        tracing::warn!(
                            role,
                            %address,
                            "not serving (unreachable or not ready); its calls go to another replica, or fail with \
                             UNAVAILABLE naming it"
                        );
                    }
                }
            }
            for (service, serving) in upstream.services.iter().zip(any) {
                let status = if serving { ServingStatus::Serving } else { ServingStatus::NotServing };
                health.set_service_status(*service, status).await;
            }
        }
    }
}
