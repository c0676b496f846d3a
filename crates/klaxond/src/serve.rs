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
//! The service code and its wiring ([`crate::roles`]) are the same as in
//! `klaxond up`; only the [`Bus`] differs.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use klaxon_bus::jetstream::{self, Names};
use klaxon_bus::{Bus, JetStreamSource, RemoteLog};

use crate::config::{Config, Validated};
use crate::process::{self, Process, Task};
use crate::reload::{ReloadCounts, Reloader};
use crate::roles::{Service, Wiring};

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
        match self.service() {
            Some(service) => service.name(),
            None if self == Role::Log => "log",
            None => "gateway",
        }
    }

    /// The service it runs, if it is one.
    fn service(self) -> Option<Service> {
        match self {
            Role::Intake => Some(Service::Intake),
            Role::Severity => Some(Service::Severity),
            Role::Paging => Some(Service::Paging),
            Role::Notifier => Some(Service::Notifier),
            Role::Review => Some(Service::Review),
            Role::Log | Role::Gateway => None,
        }
    }
}

/// Runs `role` until SIGINT or SIGTERM (or until its service stops).
/// A service role with a configuration `file` records the configuration
/// it starts with and reloads the file at SIGHUP ([`crate::reload`]).
pub async fn run(role: Role, config: Config, validated: Validated, file: Option<&Path>) -> anyhow::Result<()> {
    if role == Role::Log && config.log_group.is_some() {
        // One node of a replicated log. `cluster.log` lists every node for
        // the clients; a single address there is this node's `--listen`,
        // otherwise it listens on its own address in `[log_group] nodes`.
        let listen = config.cluster.address("log")?.parse().ok();
        return crate::log_group::serve(config, validated, listen, &Process::new()).await;
    }
    let listen = match role {
        Role::Gateway => config.listen,
        role => {
            let address = config.cluster.address(role.name())?;
            if address.contains(',') {
                anyhow::bail!(
                    "cluster.{} lists several replicas ({address:?}); give this one its address with --listen",
                    role.name()
                );
            }
            address
                .parse()
                .with_context(|| format!("cluster.{}: {address:?} is not an IP address and port", role.name()))?
        }
    };
    let process = Process::new();
    match role.service() {
        // The gateway forwards each call with its token to the process that
        // owns it, which authenticates it.
        None if role == Role::Gateway => {
            let max = config.limits.message_bytes_max;
            crate::gateway::run(&config.cluster, &config.tls, listen, max, &process).await
        }
        None => serve_log(config, validated, listen, &process).await,
        Some(service) => serve_service(service, config, validated, listen, &process, file).await,
    }
}

async fn serve_log(config: Config, validated: Validated, listen: SocketAddr, process: &Process) -> anyhow::Result<()> {
    let auth = config.auth(&validated)?;
    let (data_dir, log) = config.open_log()?;
    let (listener, address) = process::bind(listen, "").await?;
    let client = jetstream::connect(&config.cluster.nats_url, "klaxon-log")
        .await
        .with_context(|| format!("cannot connect to NATS at {}", config.cluster.nats_url))?;
    let relay = klaxon_bus::relay::Relay::new(log.clone(), client, Names::with_prefix(&config.cluster.prefix));
    let mut wiring = Wiring::new(&config)?;
    wiring.log(&log, Some(relay), process).await?;
    let tokens = crate::tokens_audit::TokenAudit::start(Bus::embedded(log.clone()), config.tokens_file()).await;
    wiring.tasks.push(Task::new("the token audit", tokens.run(process.services.clone())));
    tracing::info!(%address, data_dir = %data_dir.display(), head = log.head().0, nats = %config.cluster.nats_url, "klaxond serve log");
    println!("klaxond listening on {address} (gRPC: log server); data in {}", data_dir.display());
    let metrics = crate::metrics::serve_log(config.metrics_listen, &log, &auth, &process.shutdown).await?;
    let Wiring { routes, tasks, .. } = wiring;
    let served = process.run(config.tls.grpc_server()?, Some(auth), routes.routes(), listener, metrics, tasks).await;
    log.close().await;
    tracing::info!(head = log.head().0, "event log closed; bye");
    served
}

async fn serve_service(
    service: Service,
    config: Config,
    validated: Validated,
    listen: SocketAddr,
    process: &Process,
    file: Option<&Path>,
) -> anyhow::Result<()> {
    let auth = config.auth(&validated)?;
    let cluster = &config.cluster;
    let remote = RemoteLog::connect_lazy_tls(&cluster.log, config.tls.client()?, config.service_token()?.as_deref())
        .with_context(|| format!("cluster.log {:?}", cluster.log))?;
    let name = service.name();
    let client = jetstream::connect(&cluster.nats_url, &format!("klaxon-{name}"))
        .await
        .with_context(|| format!("cannot connect to NATS at {}", cluster.nats_url))?;
    let bus =
        Bus::distributed(remote.clone(), JetStreamSource::new(client, remote, Names::with_prefix(&cluster.prefix)));
    let (listener, address) = process::bind(listen, "").await?;
    // Intake also serves the HTTP intake (bound before the wiring, so that
    // a taken port fails the start).
    let http_listener = match service {
        Service::Intake => Some(process::bind(config.http_listen, " (http_listen)").await?),
        _ => None,
    };
    let claims = config.replica.claims()?;
    tracing::info!(replica = %claims.replica, lease_ms = config.replica.claim_lease_ms, "claiming deliveries as this replica");
    let mut wiring = Wiring::new(&config)?.with_claims(claims);
    wiring.service(service, &config, &validated, bus.clone(), &auth, process).await?;
    let reloads = Arc::new(ReloadCounts::default());
    if let Some(file) = file {
        let reloader =
            Reloader::new(file, wiring.live(&validated), bus.clone(), reloads.clone())?.with_teams(auth.teams.clone());
        reloader.record_start().await;
        wiring.tasks.push(Task::new("the configuration reloader", reloader.run(process.services.clone())));
    }
    tracing::info!(%address, log_server = %cluster.log, nats = %cluster.nats_url, "klaxond serve {name}");
    println!("klaxond listening on {address} (gRPC: {name})");
    let Wiring { routes, metrics, tasks, http, .. } = wiring;
    let metrics = metrics.with_bus(bus).with_reloads(reloads);
    // Intake serves the metrics on its HTTP address; the others on
    // metrics_listen when set, with what they serve over HTTP (the
    // notifier's status page).
    let http = match (http_listener, http, config.metrics_listen) {
        (Some((listener, address)), Some(router), _) => Some(crate::roles::serve_intake_http(
            process,
            listener,
            address,
            router.merge(metrics.router(auth.clone())),
        )),
        (_, http, Some(at)) => {
            Some(crate::metrics::serve(at, http, metrics, auth.clone(), process.shutdown.clone()).await?)
        }
        _ => None,
    };
    process.run(config.tls.grpc_server()?, Some(auth), routes.routes(), listener, http, tasks).await
}
