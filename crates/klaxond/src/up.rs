//! `klaxond up`: the embedded topology, the log and every service in one
//! process.

use klaxon_bus::{Bus, Fanout};

use crate::config::{Config, Validated};
use std::sync::Arc;

use crate::process::{self, Process, Task};
use crate::reload::{ReloadCounts, Reloader};
use crate::roles::{Service, Wiring};

/// Runs until SIGINT or SIGTERM, then stops in order: stop accepting and
/// finish in-flight requests, gRPC then HTTP, each within 10 s (bridges end
/// and record their participants' departure), stop the services, then close
/// the log, which commits and syncs every queued append. A second signal
/// exits at once. A service that stops by itself stops the process, with
/// an error naming it.
///
/// With a configuration `file`, it records the configuration it starts
/// with and reloads the file at SIGHUP ([`crate::reload`]).
pub async fn run(config: Config, validated: Validated, file: Option<&std::path::Path>) -> anyhow::Result<()> {
    let auth = config.auth(&validated)?;
    let (data_dir, log) = config.open_log()?;
    let (listener, address) = process::bind(config.listen, "").await?;
    let (http_listener, http_address) = process::bind(config.http_listen, " (http_listen)").await?;
    let process = Process::new();
    // The services keep their snapshots beside the log they fold.
    let mut wiring = Wiring::new(&config)?.with_snapshots_in(&data_dir);
    let reloads = Arc::new(ReloadCounts::default());
    // One reader of the log for every service's fold: each record is read
    // from sled once, its event decoded once (in the shared record's slot),
    // and the services take it in lockstep.
    let fanout = Fanout::new(log.clone());
    for service in Service::ALL {
        if service == Service::Paging && validated.paging.is_none() {
            continue;
        }
        let bus = Bus::embedded_shared(log.clone(), fanout.clone());
        wiring.service(service, &config, &validated, bus, &auth, &process).await?;
    }
    let tokens = crate::tokens_audit::TokenAudit::start(Bus::embedded(log.clone()), config.tokens_file()).await;
    wiring.tasks.push(Task::new("the token audit", tokens.run(process.services.clone())));
    if let Some(file) = file {
        let reloader = Reloader::new(file, wiring.live(&validated), Bus::embedded(log.clone()), reloads.clone())?
            .with_teams(auth.teams.clone());
        reloader.record_start().await;
        wiring.tasks.push(Task::new("the configuration reloader", reloader.run(process.services.clone())));
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
    let Wiring { routes, metrics, tasks, http, .. } = wiring;
    let metrics = metrics.with_log(log.clone()).with_reloads(reloads).router(auth.clone());
    let http_router = http.expect("intake serves the HTTP intake").merge(metrics);
    let http = crate::roles::serve_intake_http(&process, http_listener, http_address, http_router);
    let served = process.run(config.tls.grpc_server()?, Some(auth), routes.routes(), listener, Some(http), tasks).await;
    log.close().await;
    let reads = fanout.stats();
    tracing::info!(
        shared_read = reads.shared_read,
        shared_taken = reads.shared_taken,
        private_read = reads.private_read,
        detached = reads.detached,
        decoded = reads.derived,
        "the services' reads of the log"
    );
    tracing::info!(head = log.head().0, "event log closed; bye");
    served
}
