//! `klaxond up`: the embedded topology, everything in one process.

use anyhow::Context;
use klaxon_intake::grpc::{BridgeService, IncidentsService};
use klaxon_intake::{Intake, system_clock};
use klaxon_log::Log;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::TcpIncoming;

use crate::config::{Config, Validated};

/// Runs until SIGINT or SIGTERM, then stops in order: stop accepting and
/// finish in-flight requests, gRPC then HTTP, each within 10 s (bridges end
/// and record their participants' departure), stop the services, then close
/// the log, which commits and syncs every queued append. A second signal
/// exits at once.
pub async fn run(config: Config, validated: Validated) -> anyhow::Result<()> {
    let auth = config.auth(&validated)?;
    let message_bytes_max = config.limits.message_bytes_max;
    let data_dir = std::path::absolute(&config.data_dir).unwrap_or(config.data_dir.clone());
    let log = Log::open(&data_dir, config.log.clone())
        .with_context(|| format!("cannot open the event log in {}", data_dir.display()))?;
    let listener =
        TcpListener::bind(config.listen).await.with_context(|| format!("cannot listen on {}", config.listen))?;
    let address = listener.local_addr()?;
    let (http_listener, http_address) = bind_http(config.http_listen).await?;

    let shutdown = CancellationToken::new();
    let services = CancellationToken::new();
    tokio::spawn(watch_signals(shutdown.clone()));

    let intake = Intake::new(log.clone(), config.intake.clone(), system_clock());
    let handle = intake.handle();
    let intake_task = tokio::spawn(intake.run(services.clone()));
    let evaluator = klaxon_severity::Evaluator::new(log.clone(), validated.rules.clone(), validated.catalog.clone());
    let evaluator_handle = evaluator.handle();
    let evaluator_task = tokio::spawn(evaluator.run(services.clone()));
    let pager = validated.paging.clone().map(|paging| {
        let config = klaxon_paging::PagerConfig {
            paging,
            catalog: validated.catalog.clone(),
            schedules: validated.schedules.clone(),
            channels: validated.channels.clone(),
        };
        let pager = klaxon_paging::Pager::new(log.clone(), config, std::sync::Arc::new(klaxon_paging::SystemClock));
        let handle = pager.handle();
        (handle, tokio::spawn(pager.run(services.clone())))
    });

    let notifier = klaxon_notifier::Notifier::new(
        log.clone(),
        klaxon_notifier::NotifierOptions {
            notifier: validated.notifier.clone(),
            paging: validated.paging.clone(),
            channels: validated.channels.clone(),
            feed_lag_max: klaxon_notifier::feed::CHANGES_BUFFER,
        },
        std::sync::Arc::new(klaxon_paging::SystemClock),
    );
    let notifier_handle = notifier.handle();
    let notifier_task = tokio::spawn(notifier.run(services.clone()));

    let reviews = klaxon_review::Reviews::new(log.clone(), std::sync::Arc::new(klaxon_paging::SystemClock));
    let reviews_handle = reviews.handle();
    let reviews_task = tokio::spawn(reviews.run(services.clone()));

    let (mut routes, health) = crate::serve::base_routes()?;
    health.set_serving::<klaxon_proto::v1::incidents_server::IncidentsServer<IncidentsService>>().await;
    health.set_serving::<klaxon_proto::v1::bridge_server::BridgeServer<BridgeService>>().await;
    health
        .set_serving::<klaxon_proto::v1::severity_evaluator_server::SeverityEvaluatorServer<klaxon_severity::grpc::SeverityService>>()
        .await;
    health
        .set_serving::<klaxon_proto::v1::status_feed_server::StatusFeedServer<klaxon_notifier::grpc::FeedService>>()
        .await;
    health.set_serving::<klaxon_proto::v1::review_server::ReviewServer<klaxon_review::grpc::ReviewService>>().await;
    if pager.is_some() {
        health.set_serving::<klaxon_proto::v1::paging_server::PagingServer<klaxon_paging::grpc::PagingService>>().await;
    }

    tracing::info!(
        %address,
        data_dir = %data_dir.display(),
        head = log.head().0,
        services = validated.catalog.len(),
        schedules = validated.schedules.len(),
        "klaxond up"
    );
    println!("klaxond listening on {address} (gRPC); data in {}", data_dir.display());
    let mut metrics = crate::metrics::Metrics::default()
        .with_log(log.clone())
        .with_consumer("intake", {
            let h = handle.clone();
            move || h.applied()
        })
        .with_consumer("severity", {
            let h = evaluator_handle.clone();
            move || h.applied()
        })
        .with_consumer("notifier", {
            let h = notifier_handle.clone();
            move || h.applied()
        })
        .with_consumer("review", {
            let h = reviews_handle.clone();
            move || h.applied()
        })
        .with_notifier(notifier_handle.clone());
    if let Some((pager, _)) = &pager {
        let h = pager.clone();
        metrics = metrics.with_consumer("paging", move || h.applied()).with_paging(pager.clone());
    }
    let http_router = klaxon_intake::http::router(handle.clone(), config.http.clone(), Some(auth.clone()))
        .merge(metrics.router(auth.clone()))
        .merge(config.status_page(notifier_handle.clone(), &auth, &validated, shutdown.clone()));
    let http_task = serve_http(http_listener, http_address, http_router, shutdown.clone());

    routes
        .add_service(IncidentsService::new(handle.clone()).into_server().max_decoding_message_size(message_bytes_max))
        .add_service(
            BridgeService::new(handle, shutdown.clone()).into_server().max_decoding_message_size(message_bytes_max),
        )
        .add_service(
            klaxon_severity::grpc::SeverityService::new(evaluator_handle)
                .into_server()
                .max_decoding_message_size(message_bytes_max),
        )
        .add_service(
            klaxon_notifier::grpc::FeedService::new(notifier_handle, shutdown.clone())
                .with_per_principal_max(config.limits.feeds_per_principal)
                .into_server()
                .max_decoding_message_size(message_bytes_max),
        )
        .add_service(
            klaxon_review::grpc::ReviewService::new(reviews_handle)
                .into_server()
                .max_decoding_message_size(message_bytes_max),
        );
    if let Some((pager, _)) = &pager {
        routes.add_service(
            klaxon_paging::grpc::PagingService::new(pager.clone())
                .into_server()
                .max_decoding_message_size(message_bytes_max),
        );
    }
    let server = config
        .tls
        .grpc_server()?
        .layer(klaxon_auth::AuthLayer::new(auth))
        .add_routes(routes.routes())
        .serve_with_incoming_shutdown(
            TcpIncoming::from(listener).with_nodelay(Some(true)),
            shutdown.clone().cancelled_owned(),
        );

    drain(server, &shutdown).await.context("the gRPC server failed")?;
    stop_http(http_task).await?;
    tracing::info!("stopped accepting; stopping services");
    services.cancel();
    match intake_task.await {
        Ok(result) => result.context("the intake service failed")?,
        Err(e) => anyhow::bail!("the intake service panicked: {e}"),
    }
    match reviews_task.await {
        Ok(result) => result.context("the review service failed")?,
        Err(e) => anyhow::bail!("the review service panicked: {e}"),
    }
    match notifier_task.await {
        Ok(result) => result.context("the executive notifier failed")?,
        Err(e) => anyhow::bail!("the executive notifier panicked: {e}"),
    }
    match evaluator_task.await {
        Ok(result) => result.context("the severity evaluator failed")?,
        Err(e) => anyhow::bail!("the severity evaluator panicked: {e}"),
    }
    if let Some((_, task)) = pager {
        match task.await {
            Ok(result) => result.context("the paging service failed")?,
            Err(e) => anyhow::bail!("the paging service panicked: {e}"),
        }
    }
    log.close().await;
    tracing::info!(head = log.head().0, "event log closed; bye");
    Ok(())
}

/// Binds the HTTP intake's address (`http_listen`).
pub(crate) async fn bind_http(listen: std::net::SocketAddr) -> anyhow::Result<(TcpListener, std::net::SocketAddr)> {
    let listener =
        TcpListener::bind(listen).await.with_context(|| format!("cannot listen on {listen} (http_listen)"))?;
    let address = listener.local_addr()?;
    Ok((listener, address))
}

/// Serves the HTTP intake until `shutdown`, then lets in-flight requests
/// finish. Prints where it listens (after the gRPC line, which tests parse
/// first).
pub(crate) fn serve_http(
    listener: TcpListener,
    address: std::net::SocketAddr,
    router: axum::Router,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<std::io::Result<()>> {
    use klaxon_intake::http::{ALERTMANAGER_PATH, PAGERDUTY_PATH};
    tracing::info!(%address, "HTTP intake up");
    println!(
        "klaxond http on {address} (Alertmanager: {ALERTMANAGER_PATH}, PagerDuty: {PAGERDUTY_PATH}, metrics: {})",
        crate::metrics::PATH
    );
    tokio::spawn(async move { axum::serve(listener, router).with_graceful_shutdown(shutdown.cancelled_owned()).await })
}

/// Waits (at most [`HTTP_DRAIN`]) for the HTTP intake to finish its
/// in-flight requests after `shutdown`; later ones fail as unavailable and
/// the senders retry.
pub(crate) async fn stop_http(task: tokio::task::JoinHandle<std::io::Result<()>>) -> anyhow::Result<()> {
    match tokio::time::timeout(HTTP_DRAIN, task).await {
        Ok(Ok(result)) => result.context("the HTTP intake failed"),
        Ok(Err(e)) => anyhow::bail!("the HTTP intake panicked: {e}"),
        Err(_) => {
            tracing::warn!("HTTP requests still in flight after {HTTP_DRAIN:?}; stopping anyway");
            Ok(())
        }
    }
}

/// How long a stop waits for in-flight HTTP intake requests.
const HTTP_DRAIN: std::time::Duration = std::time::Duration::from_secs(10);

/// How long a stop waits for gRPC calls to finish and clients to close
/// their connections.
const GRPC_DRAIN: std::time::Duration = std::time::Duration::from_secs(10);

/// Runs a gRPC `server` to its end. Once `shutdown` is cancelled it has
/// [`GRPC_DRAIN`] to finish in-flight calls and see its connections closed;
/// after that the stop goes on without it, so that a client holding an idle
/// connection open (or not answering at all) cannot hold the stop up. A
/// call cut short then was not answered, so nothing acknowledged is lost.
pub(crate) async fn drain<E>(
    server: impl std::future::Future<Output = Result<(), E>>,
    shutdown: &CancellationToken,
) -> Result<(), E> {
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

pub(crate) async fn watch_signals(shutdown: CancellationToken) {
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
