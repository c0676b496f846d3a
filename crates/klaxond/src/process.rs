//! Process plumbing, the same for `up` and every `serve` role: signals,
//! the gRPC server with its health, reflection and authentication, the HTTP
//! server, and the supervision of the process's services: a service task
//! that ends before the stop stops the process, non-zero, naming the
//! service; a stop signal drains in order (gRPC, HTTP, then the services).

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;
use tonic::service::RoutesBuilder;
use tonic::transport::server::TcpIncoming;
use tonic_health::server::HealthReporter;

/// How long a stop waits for in-flight HTTP requests.
const HTTP_DRAIN: Duration = Duration::from_secs(10);

/// How long a stop waits for gRPC calls to finish and clients to close
/// their connections.
const GRPC_DRAIN: Duration = Duration::from_secs(10);

/// A background task of the process (a service, the relay), by name.
pub struct Task {
    /// What it is, in log lines and errors: `the paging service`.
    name: String,
    work: std::pin::Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>>,
}

impl Task {
    /// `work`, called `name`; it runs once the process runs.
    pub fn new<E>(name: &str, work: impl Future<Output = Result<(), E>> + Send + 'static) -> Task
    where
        E: Into<anyhow::Error> + Send + 'static,
    {
        Task { name: name.to_owned(), work: Box::pin(async move { work.await.map_err(Into::into) }) }
    }
}

/// Health and reflection, which every server of ours carries.
pub fn base_routes() -> anyhow::Result<(RoutesBuilder, HealthReporter)> {
    let (health, health_service) = tonic_health::server::health_reporter();
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(klaxon_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let mut routes = RoutesBuilder::default();
    routes.add_service(health_service).add_service(reflection);
    Ok((routes, health))
}

/// Binds `listen`; `what` names it in the error.
pub async fn bind(listen: SocketAddr, what: &str) -> anyhow::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(listen).await.with_context(|| format!("cannot listen on {listen}{what}"))?;
    let address = listener.local_addr()?;
    Ok((listener, address))
}

/// Serves an HTTP router until `shutdown`, then lets in-flight requests
/// finish. A path no route serves is answered 404 with a line naming it
/// (the routes of a process are merged from its roles, so this is the one
/// place that sees them all).
pub fn serve_http(
    listener: TcpListener,
    router: axum::Router,
    shutdown: CancellationToken,
) -> JoinHandle<std::io::Result<()>> {
    let router = router.fallback(not_found);
    tokio::spawn(async move { axum::serve(listener, router).with_graceful_shutdown(shutdown.cancelled_owned()).await })
}

/// The answer to a request for a path that no route serves.
async fn not_found(method: http::Method, uri: http::Uri) -> (http::StatusCode, String) {
    (http::StatusCode::NOT_FOUND, format!("klaxond has no HTTP endpoint at {method} {}\n", uri.path()))
}

/// Waits (at most [`HTTP_DRAIN`]) for an HTTP server to finish its
/// in-flight requests after its stop; later ones fail as unavailable and
/// the senders retry.
async fn stop_http(task: JoinHandle<std::io::Result<()>>) -> anyhow::Result<()> {
    match tokio::time::timeout(HTTP_DRAIN, task).await {
        Ok(Ok(result)) => result.context("the HTTP server failed"),
        Ok(Err(e)) => anyhow::bail!("the HTTP server panicked: {e}"),
        Err(_) => {
            tracing::warn!("HTTP requests still in flight after {HTTP_DRAIN:?}; stopping anyway");
            Ok(())
        }
    }
}

/// Runs a gRPC `server` to its end. Once `shutdown` is cancelled it has
/// [`GRPC_DRAIN`] to finish in-flight calls and see its connections closed;
/// after that the stop goes on without it, so that a client holding an idle
/// connection open (or not answering at all) cannot hold the stop up. A
/// call cut short then was not answered, so nothing acknowledged is lost.
pub async fn drain<E>(server: impl Future<Output = Result<(), E>>, shutdown: &CancellationToken) -> Result<(), E> {
    let deadline = async {
        shutdown.cancelled().await;
        tokio::time::sleep(GRPC_DRAIN).await;
    };
    tokio::select! {
        served = server => served,
        () = deadline => {
            tracing::warn!("gRPC connections still open {GRPC_DRAIN:?} after the stop began; stopping anyway");
            Ok(())
        }
    }
}

/// Cancels `shutdown` at SIGINT or SIGTERM; a second signal exits at once.
pub async fn watch_signals(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        tracing::error!("cannot install signal handlers");
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    tracing::info!("signal received: stopping (a second signal exits at once)");
    shutdown.cancel();
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    eprintln!("klaxond: second signal, exiting without a clean stop");
    std::process::exit(130);
}

/// Keeps SIGHUP from ending the process (its default action): processes
/// with a configuration to reload (`crate::reload`) listen for it too;
/// the others (the log server, the gateway) only say there is nothing.
/// Installed at once, so that no SIGHUP after the start ends the process.
fn hold_hangups() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::hangup()) {
        Ok(mut hangup) => {
            tokio::spawn(async move {
                while hangup.recv().await.is_some() {
                    tracing::debug!("SIGHUP received");
                }
            });
        }
        Err(e) => tracing::error!(error = %e, "cannot install the SIGHUP handler"),
    }
}

/// What one process serves: its gRPC routes, its HTTP server (if any) and
/// its background tasks, all stopped by one `shutdown` (the signals), the
/// tasks by `services` after the servers.
pub struct Process {
    /// Cancelled by a signal or by a task that ended early: the servers stop.
    pub shutdown: CancellationToken,
    /// Cancelled after the servers stopped: the tasks stop.
    pub services: CancellationToken,
}

impl Process {
    /// A process that stops at SIGINT or SIGTERM.
    pub fn new() -> Process {
        let shutdown = CancellationToken::new();
        tokio::spawn(watch_signals(shutdown.clone()));
        hold_hangups();
        Process { shutdown, services: CancellationToken::new() }
    }

    /// Serves `routes` on `listener` with `server` (TLS or not), behind the
    /// authentication layer when given `auth`, runs `http` and `tasks`, and
    /// supervises them until the stop. A task that ends before the stop
    /// (whatever its result) stops the process: the error names it, and the
    /// exit is non-zero.
    pub async fn run(
        &self,
        mut server: tonic::transport::Server,
        auth: Option<klaxon_auth::Auth>,
        routes: tonic::service::Routes,
        listener: TcpListener,
        http: Option<JoinHandle<std::io::Result<()>>>,
        tasks: Vec<Task>,
    ) -> anyhow::Result<()> {
        let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
        let shutdown = self.shutdown.clone().cancelled_owned();
        type Served = std::pin::Pin<Box<dyn Future<Output = Result<(), tonic::transport::Error>> + Send>>;
        let served: Served = match auth {
            Some(auth) => Box::pin(
                server
                    .layer(klaxon_auth::AuthLayer::new(auth))
                    .add_routes(routes)
                    .serve_with_incoming_shutdown(incoming, shutdown),
            ),
            None => Box::pin(server.add_routes(routes).serve_with_incoming_shutdown(incoming, shutdown)),
        };
        let served = drain(served, &self.shutdown);
        tokio::pin!(served);
        let mut running = JoinSet::new();
        let names: HashMap<tokio::task::Id, String> =
            tasks.into_iter().map(|task| (running.spawn(task.work).id(), task.name)).collect();
        let name = |id: &tokio::task::Id| names.get(id).map_or("a task", String::as_str);
        let ended = |joined: Result<(tokio::task::Id, anyhow::Result<()>), tokio::task::JoinError>| match joined {
            Ok((_, Ok(()))) => None,
            Ok((id, Err(e))) => Some(e.context(format!("{} failed", name(&id)))),
            Err(e) => Some(anyhow::anyhow!("{} panicked: {e}", name(&e.id()))),
        };
        let early = tokio::select! {
            served = &mut served => { served.context("the gRPC server failed")?; None }
            Some(joined) = running.join_next_with_id() => {
                let stopped = joined.as_ref().ok().map(|(id, _)| name(id).to_owned());
                Some(ended(joined).unwrap_or_else(|| anyhow::anyhow!("{} stopped unexpectedly", stopped.unwrap_or_default())))
            }
        };
        if let Some(failure) = early {
            tracing::error!(error = %format!("{failure:#}"), "a service stopped; stopping the process");
            self.shutdown.cancel();
            let _ = served.await;
            if let Some(http) = http {
                let _ = stop_http(http).await;
            }
            self.services.cancel();
            while running.join_next().await.is_some() {}
            return Err(failure);
        }
        if let Some(http) = http {
            stop_http(http).await?;
        }
        tracing::info!("stopped accepting; stopping the services");
        self.services.cancel();
        let mut failure = None;
        while let Some(joined) = running.join_next_with_id().await {
            if let Some(e) = ended(joined) {
                failure.get_or_insert(e);
            }
        }
        failure.map_or(Ok(()), Err)
    }
}
