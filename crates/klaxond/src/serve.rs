//! `klaxond serve <role>`: the distributed topology, one process per role.
//!
//! - `log` owns the sled folder, serves it over gRPC and relays every
//!   committed record to NATS JetStream; with `[log_group]` it is one node
//!   of a replicated log (see [`crate::log_group`]).
//! - `intake`, `severity`, `paging`, `notifier`, `review` each run one
//!   service on a [`Bus`] made of the log server (gRPC) and JetStream, and
//!   serve that service's client-facing gRPC (`intake` also the HTTP
//!   intake on `http_listen`).
//! - `gateway` is the one address clients need: it routes each call by its
//!   gRPC service name to the process that owns it (see [`crate::gateway`]).
//!
//! The service code is the same as in `klaxond up`; only the [`Bus`] differs.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use klaxon_bus::jetstream::{self, Names};
use klaxon_bus::{Bus, JetStreamSource, RemoteLog};
use klaxon_log::Log;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::service::RoutesBuilder;
use tonic::transport::server::TcpIncoming;
use tonic_health::server::HealthReporter;

use crate::config::{Config, Validated};
use crate::metrics::Metrics;

/// A process of the distributed topology.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Role {
    /// The log server and the relay to JetStream.
    Log,
    /// Incident commands, queries and the bridge.
    Intake,
    /// The severity evaluator.
    Severity,
    /// Paging and escalation.
    Paging,
    /// The executive notifier and status feeds.
    Notifier,
    /// Post-incident reviews.
    Review,
    /// The single client-facing address, routing to the others.
    Gateway,
}

impl Role {
    /// Its name on the command line and in logs.
    pub fn name(self) -> &'static str {
        match self {
            Role::Log => "log",
            Role::Intake => "intake",
            Role::Severity => "severity",
            Role::Paging => "paging",
            Role::Notifier => "notifier",
            Role::Review => "review",
            Role::Gateway => "gateway",
        }
    }
}

/// What the command line says beyond the configuration file.
pub struct Overrides {
    /// Where to listen instead of the role's `[cluster]` address.
    pub listen: Option<SocketAddr>,
    /// The log's folder (`log` only).
    pub data_dir: Option<PathBuf>,
    /// The NATS server.
    pub nats: Option<String>,
    /// The log server.
    pub log_server: Option<String>,
    /// Where to serve `GET /metrics` (intake serves it on its HTTP address).
    pub metrics_listen: Option<SocketAddr>,
    /// `service=address` routes (`gateway` only).
    pub routes: Vec<(String, String)>,
}

/// Runs `role` until SIGINT or SIGTERM.
pub async fn run(role: Role, mut config: Config, validated: Validated, o: Overrides) -> anyhow::Result<()> {
    if let Some(nats) = o.nats {
        config.cluster.nats_url = nats;
    }
    if let Some(log) = o.log_server {
        config.cluster.log = log;
    }
    for (service, address) in o.routes {
        let slot = match service.as_str() {
            "log" => &mut config.cluster.log,
            "intake" => &mut config.cluster.intake,
            "severity" => &mut config.cluster.severity,
            "paging" => &mut config.cluster.paging,
            "notifier" => &mut config.cluster.notifier,
            "review" => &mut config.cluster.review,
            other => {
                anyhow::bail!("--route {other}=…: no such service (log, intake, severity, paging, notifier, review)")
            }
        };
        *slot = address;
    }
    let shutdown = CancellationToken::new();
    if role == Role::Log && config.log_group.is_some() {
        // One node of a replicated log (`log_group.rs`).
        tokio::spawn(crate::up::watch_signals(shutdown.clone()));
        if let Some(data_dir) = o.data_dir {
            config.data_dir = data_dir;
        }
        let auth = config.auth(&validated)?;
        return crate::log_group::serve(config, auth, o.listen, o.metrics_listen, shutdown).await;
    }
    let listen = match (o.listen, role) {
        (Some(listen), _) => listen,
        (None, Role::Gateway) => config.listen,
        (None, role) => own_address(&config, role)?,
    };
    tokio::spawn(crate::up::watch_signals(shutdown.clone()));
    if let Some(data_dir) = o.data_dir {
        config.data_dir = data_dir;
    }
    match role {
        // The gateway forwards each call with its token to the process that
        // owns it, which authenticates it.
        Role::Gateway => crate::gateway::run(&config.cluster, &config.tls, listen, shutdown).await,
        Role::Log => {
            let auth = config.auth(&validated)?;
            serve_log(config, auth, listen, o.metrics_listen, shutdown).await
        }
        role => {
            let auth = config.auth(&validated)?;
            serve_service(role, config, validated, auth, listen, o.metrics_listen, shutdown).await
        }
    }
}

fn own_address(config: &Config, role: Role) -> anyhow::Result<SocketAddr> {
    let c = &config.cluster;
    let address = match role {
        Role::Log => &c.log,
        Role::Intake => &c.intake,
        Role::Severity => &c.severity,
        Role::Paging => &c.paging,
        Role::Notifier => &c.notifier,
        Role::Review => &c.review,
        Role::Gateway => unreachable!("the gateway listens on `listen`"),
    };
    address.parse().with_context(|| format!("cluster.{}: {address:?} is not an IP address and port", role.name()))
}

pub(crate) async fn bind(listen: SocketAddr) -> anyhow::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(listen).await.with_context(|| format!("cannot listen on {listen}"))?;
    let address = listener.local_addr()?;
    Ok((listener, address))
}

/// Health and reflection, which every server of ours carries.
pub(crate) fn base_routes() -> anyhow::Result<(RoutesBuilder, HealthReporter)> {
    let (health, health_service) = tonic_health::server::health_reporter();
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(klaxon_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let mut routes = RoutesBuilder::default();
    routes.add_service(health_service).add_service(reflection);
    Ok((routes, health))
}

/// A gRPC server to run: its services, its socket, and the server itself.
pub(crate) struct Grpc {
    pub(crate) routes: RoutesBuilder,
    pub(crate) listener: TcpListener,
    /// The server to run them on (TLS or not, see [`crate::config::TlsConfig`]).
    pub(crate) server: tonic::transport::Server,
    /// Who may call what.
    pub(crate) auth: klaxon_auth::Auth,
}

/// Serves `routes` until `shutdown`, or until `task` ends (its failure
/// stops the process: a service that stopped must not keep answering).
/// The `http` server (intake's) stops after gRPC and before the service.
pub(crate) async fn serve_until(
    grpc: Grpc,
    shutdown: CancellationToken,
    what: &str,
    mut task: JoinHandle<anyhow::Result<()>>,
    services: CancellationToken,
    http: Option<JoinHandle<std::io::Result<()>>>,
) -> anyhow::Result<()> {
    let Grpc { routes, listener, server, auth } = grpc;
    let server =
        server.layer(klaxon_auth::AuthLayer::new(auth)).add_routes(routes.routes()).serve_with_incoming_shutdown(
            TcpIncoming::from(listener).with_nodelay(Some(true)),
            shutdown.clone().cancelled_owned(),
        );
    let server = crate::up::drain(server, &shutdown);
    tokio::pin!(server);
    let early = tokio::select! {
        served = &mut server => { served.context("the gRPC server failed")?; None }
        ended = &mut task => Some(ended),
    };
    let ended = match early {
        Some(ended) => {
            // The service stopped by itself: stop serving too.
            shutdown.cancel();
            let _ = server.await;
            if let Some(http) = http {
                let _ = crate::up::stop_http(http).await;
            }
            ended
        }
        None => {
            if let Some(http) = http {
                crate::up::stop_http(http).await?;
            }
            tracing::info!("stopped accepting; stopping {what}");
            services.cancel();
            task.await
        }
    };
    match ended {
        Ok(Ok(())) if !shutdown.is_cancelled() => anyhow::bail!("{what} stopped unexpectedly"),
        Ok(result) => result.with_context(|| format!("{what} failed")),
        Err(e) => anyhow::bail!("{what} panicked: {e}"),
    }
}

async fn serve_log(
    config: Config,
    auth: klaxon_auth::Auth,
    listen: SocketAddr,
    metrics_listen: Option<SocketAddr>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let data_dir = std::path::absolute(&config.data_dir).unwrap_or(config.data_dir.clone());
    let log = Log::open(&data_dir, config.log.clone())
        .with_context(|| format!("cannot open the event log in {}", data_dir.display()))?;
    let (listener, address) = bind(listen).await?;
    let client = jetstream::connect(&config.cluster.nats_url, "klaxon-log")
        .await
        .with_context(|| format!("cannot connect to NATS at {}", config.cluster.nats_url))?;
    let services = CancellationToken::new();
    let relay = klaxon_bus::relay::Relay::new(log.clone(), client, Names::with_prefix(&config.cluster.prefix));
    let relay_task = tokio::spawn({
        let services = services.clone();
        async move { relay.run(services).await.map_err(anyhow::Error::from) }
    });
    let (mut routes, health) = base_routes()?;
    health.set_serving::<klaxon_proto::v1::event_log_server::EventLogServer<klaxon_bus::server::LogServer>>().await;
    routes.add_service(klaxon_bus::server::LogServer::new(log.clone(), shutdown.clone()).into_server());
    tracing::info!(%address, data_dir = %data_dir.display(), head = log.head().0, nats = %config.cluster.nats_url, "klaxond serve log");
    println!("klaxond listening on {address} (gRPC: log server); data in {}", data_dir.display());
    let metrics = match metrics_listen {
        Some(at) => Some(
            crate::metrics::serve(at, Metrics::default().with_log(log.clone()), auth.clone(), shutdown.clone()).await?,
        ),
        None => None,
    };
    let grpc = Grpc { routes, listener, server: config.tls.grpc_server()?, auth };
    let served = serve_until(grpc, shutdown, "the relay", relay_task, services, metrics).await;
    log.close().await;
    tracing::info!(head = log.head().0, "event log closed; bye");
    served
}

async fn serve_service(
    role: Role,
    config: Config,
    validated: Validated,
    auth: klaxon_auth::Auth,
    listen: SocketAddr,
    metrics_listen: Option<SocketAddr>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let cluster = &config.cluster;
    let message_bytes_max = config.limits.message_bytes_max;
    let remote = RemoteLog::connect_lazy_tls(&cluster.log, config.tls.client()?, config.service_token()?.as_deref())
        .with_context(|| format!("cluster.log {:?}", cluster.log))?;
    let client = jetstream::connect(&cluster.nats_url, &format!("klaxon-{}", role.name()))
        .await
        .with_context(|| format!("cannot connect to NATS at {}", cluster.nats_url))?;
    let bus =
        Bus::distributed(remote.clone(), JetStreamSource::new(client, remote, Names::with_prefix(&cluster.prefix)));
    let (listener, address) = bind(listen).await?;
    let (mut routes, health) = base_routes()?;
    let services = CancellationToken::new();
    let clock = Arc::new(klaxon_paging::SystemClock);
    let mut http = None;
    let mut metrics = Metrics::default().with_bus(bus.clone());
    let task: JoinHandle<anyhow::Result<()>> = match role {
        Role::Intake => {
            let intake = klaxon_intake::Intake::new(bus, config.intake.clone(), klaxon_intake::system_clock());
            let handle = intake.handle();
            let h = handle.clone();
            metrics = metrics.with_consumer("intake", move || h.applied());
            let (http_listener, http_address) = crate::up::bind_http(config.http_listen).await?;
            let router = klaxon_intake::http::router(handle.clone(), config.http.clone(), Some(auth.clone()));
            http = Some((http_listener, http_address, router));
            use klaxon_intake::grpc::{BridgeService, IncidentsService};
            health.set_serving::<klaxon_proto::v1::incidents_server::IncidentsServer<IncidentsService>>().await;
            health.set_serving::<klaxon_proto::v1::bridge_server::BridgeServer<BridgeService>>().await;
            routes.add_service(
                IncidentsService::new(handle.clone()).into_server().max_decoding_message_size(message_bytes_max),
            );
            routes.add_service(
                BridgeService::new(handle, shutdown.clone()).into_server().max_decoding_message_size(message_bytes_max),
            );
            let services = services.clone();
            tokio::spawn(async move { intake.run(services).await.map_err(anyhow::Error::from) })
        }
        Role::Severity => {
            let evaluator = klaxon_severity::Evaluator::new(bus, validated.rules.clone(), validated.catalog.clone());
            let h = evaluator.handle();
            metrics = metrics.with_consumer("severity", move || h.applied());
            use klaxon_severity::grpc::SeverityService;
            health
                .set_serving::<klaxon_proto::v1::severity_evaluator_server::SeverityEvaluatorServer<SeverityService>>()
                .await;
            routes.add_service(
                SeverityService::new(evaluator.handle()).into_server().max_decoding_message_size(message_bytes_max),
            );
            let services = services.clone();
            tokio::spawn(async move { evaluator.run(services).await.map_err(anyhow::Error::from) })
        }
        Role::Paging => {
            let paging =
                validated.paging.clone().context("`serve paging` needs a [paging] table in the configuration")?;
            let pager = klaxon_paging::Pager::new(
                bus,
                klaxon_paging::PagerConfig {
                    paging,
                    catalog: validated.catalog.clone(),
                    schedules: validated.schedules.clone(),
                    channels: validated.channels.clone(),
                },
                clock,
            );
            let h = pager.handle();
            metrics = metrics.with_consumer("paging", move || h.applied()).with_paging(pager.handle());
            use klaxon_paging::grpc::PagingService;
            health.set_serving::<klaxon_proto::v1::paging_server::PagingServer<PagingService>>().await;
            routes.add_service(
                PagingService::new(pager.handle()).into_server().max_decoding_message_size(message_bytes_max),
            );
            let services = services.clone();
            tokio::spawn(async move { pager.run(services).await.map_err(anyhow::Error::from) })
        }
        Role::Notifier => {
            let notifier = klaxon_notifier::Notifier::new(
                bus,
                klaxon_notifier::NotifierOptions {
                    notifier: validated.notifier.clone(),
                    paging: validated.paging.clone(),
                    channels: validated.channels.clone(),
                    feed_lag_max: klaxon_notifier::feed::CHANGES_BUFFER,
                },
                clock,
            );
            let h = notifier.handle();
            metrics = metrics.with_consumer("notifier", move || h.applied()).with_notifier(notifier.handle());
            use klaxon_notifier::grpc::FeedService;
            health.set_serving::<klaxon_proto::v1::status_feed_server::StatusFeedServer<FeedService>>().await;
            routes.add_service(
                FeedService::new(notifier.handle(), shutdown.clone())
                    .with_per_principal_max(config.limits.feeds_per_principal)
                    .into_server()
                    .max_decoding_message_size(message_bytes_max),
            );
            let services = services.clone();
            tokio::spawn(async move { notifier.run(services).await.map_err(anyhow::Error::from) })
        }
        Role::Review => {
            let reviews = klaxon_review::Reviews::new(bus, clock);
            let h = reviews.handle();
            metrics = metrics.with_consumer("review", move || h.applied());
            use klaxon_review::grpc::ReviewService;
            health.set_serving::<klaxon_proto::v1::review_server::ReviewServer<ReviewService>>().await;
            routes.add_service(
                ReviewService::new(reviews.handle()).into_server().max_decoding_message_size(message_bytes_max),
            );
            let services = services.clone();
            tokio::spawn(async move { reviews.run(services).await.map_err(anyhow::Error::from) })
        }
        Role::Log | Role::Gateway => unreachable!("served elsewhere"),
    };
    let name = role.name();
    tracing::info!(%address, log_server = %cluster.log, nats = %cluster.nats_url, "klaxond serve {name}");
    println!("klaxond listening on {address} (gRPC: {name})");
    // Intake serves the metrics on its HTTP address; the others on
    // --metrics-listen when given.
    let http = match (http, metrics_listen) {
        (Some((listener, address, router)), _) => {
            Some(crate::up::serve_http(listener, address, router.merge(metrics.router(auth.clone())), shutdown.clone()))
        }
        (None, Some(at)) => Some(crate::metrics::serve(at, metrics, auth.clone(), shutdown.clone()).await?),
        (None, None) => None,
    };
    let grpc = Grpc { routes, listener, server: config.tls.grpc_server()?, auth };
    serve_until(grpc, shutdown, name, task, services, http).await
}
