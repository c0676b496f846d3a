//! Each role wired once, from its configuration and a [`Bus`]: the
//! component, its gRPC services (marked serving in health checks), what it
//! shows in `/metrics`, and its task. `klaxond up` wires every service role
//! over the embedded log; `klaxond serve ROLE` wires one over the
//! distributed bus (or the log server itself, [`Wiring::log`]).

use std::convert::Infallible;
use std::sync::Arc;

use klaxon_bus::Bus;
use klaxon_log::Log;
use klaxon_reactor::Clock;
use tonic::server::NamedService;
use tonic::service::RoutesBuilder;
use tonic_health::server::HealthReporter;

use crate::config::{Config, Validated};
use crate::metrics::Metrics;
use crate::process::{Process, Task};

/// A service role: what `klaxond serve` runs besides the log and the gateway.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Service {
    /// Incident commands, queries, the bridge and the HTTP intake.
    Intake,
    /// The severity evaluator.
    Severity,
    /// Paging and escalation.
    Paging,
    /// The executive notifier and status feeds.
    Notifier,
    /// Post-incident reviews.
    Review,
}

impl Service {
    /// Every service, in the order `up` starts them.
    pub const ALL: [Service; 5] =
        [Service::Intake, Service::Severity, Service::Paging, Service::Notifier, Service::Review];

    /// Its name on the command line, in metrics and in logs.
    pub fn name(self) -> &'static str {
        match self {
            Service::Intake => "intake",
            Service::Severity => "severity",
            Service::Paging => "paging",
            Service::Notifier => "notifier",
            Service::Review => "review",
        }
    }
}

/// Everything the roles of one process add up to.
pub struct Wiring {
    /// The gRPC services.
    pub routes: RoutesBuilder,
    /// Their health.
    pub health: HealthReporter,
    /// What `/metrics` shows.
    pub metrics: Metrics,
    /// The background tasks, supervised by the process.
    pub tasks: Vec<Task>,
    /// What the roles serve over HTTP: the HTTP intake (Alertmanager,
    /// PagerDuty) when intake runs here, the status page when the notifier
    /// does.
    pub http: Option<axum::Router>,
    message_bytes_max: usize,
    feeds_per_principal: usize,
    clock: Arc<dyn Clock>,
    claims: Option<klaxon_reactor::Claims>,
    /// Where snapshots go when `[snapshots] dir` does not say.
    snapshot_dir: Option<std::path::PathBuf>,
    live: Option<crate::reload::LiveConfig>,
}

impl Wiring {
    /// Nothing wired yet, with health and reflection.
    pub fn new(config: &Config) -> anyhow::Result<Wiring> {
        let (routes, health) = crate::process::base_routes()?;
        Ok(Wiring {
            routes,
            health,
            metrics: Metrics::default(),
            tasks: Vec::new(),
            http: None,
            message_bytes_max: config.limits.message_bytes_max,
            feeds_per_principal: config.limits.feeds_per_principal,
            clock: klaxon_reactor::system_clock(),
            claims: None,
            snapshot_dir: None,
            live: None,
        })
    }

    /// Claims deliveries through the log (paging, the notifier and the
    /// trend reports of review), so that
    /// replicas of a role side by side deliver each message once. `klaxond
    /// serve` always does; `klaxond up` runs one of each and does not.
    pub fn with_claims(mut self, claims: klaxon_reactor::Claims) -> Wiring {
        self.claims = Some(claims);
        self
    }

    /// Keeps the services' snapshots in `snapshots` under `data_dir` unless
    /// `[snapshots] dir` says otherwise (`klaxond up`: beside its log).
    /// Without it, only `[snapshots] dir` enables them: a `serve` process
    /// has no data folder of its own to put them in.
    pub fn with_snapshots_in(mut self, data_dir: &std::path::Path) -> Wiring {
        self.snapshot_dir = Some(data_dir.join("snapshots"));
        self
    }

    /// The live views of the configuration the wired services read, which
    /// a reload replaces (made from the first service's `validated`).
    pub fn live(&mut self, validated: &Validated) -> crate::reload::LiveConfig {
        self.live.get_or_insert_with(|| crate::reload::LiveConfig::new(validated)).clone()
    }

    /// Adds a gRPC service and marks it serving.
    async fn serve<S>(&mut self, service: S)
    where
        S: tower::Service<http::Request<tonic::body::Body>, Error = Infallible>
            + NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Response: axum::response::IntoResponse,
        S::Future: Send + 'static,
    {
        self.health.set_serving::<S>().await;
        self.routes.add_service(service);
    }

    /// Adds `router` to what this process serves over HTTP.
    fn add_http(&mut self, router: axum::Router) {
        self.http = Some(match self.http.take() {
            Some(http) => http.merge(router),
            None => router,
        });
    }

    /// Wires `service` over `bus`. Its bridges and feeds end at the
    /// process's stop; its task at the services' stop.
    pub async fn service(
        &mut self,
        service: Service,
        config: &Config,
        validated: &Validated,
        bus: Bus,
        auth: &klaxon_auth::Auth,
        process: &Process,
    ) -> anyhow::Result<()> {
        let (max, name) = (self.message_bytes_max, service.name());
        let stop = process.services.clone();
        match service {
            Service::Intake => {
                use klaxon_intake::grpc::{BridgeService, IncidentsService};
                let live = self.live(validated);
                let mut intake = klaxon_intake::Intake::new(bus, config.intake.clone(), self.clock.clone())
                    .with_live_catalog(live.catalog)
                    .with_live_queue(live.paging, validated.notifier.cadence_severities().clone())
                    .with_live_directory(live.directory);
                if let Some((file, every)) = config.snapshot(name, self.snapshot_dir.as_deref()) {
                    intake = intake.with_snapshots(file, every);
                }
                intake = intake.with_evict_closed_after(validated.evict_closed_after);
                let handle = intake.handle();
                let h = handle.clone();
                let metrics = std::mem::take(&mut self.metrics).with_consumer(name, move || (h.applied(), h.applied()));
                let h = handle.clone();
                self.metrics = metrics.with_snapshots(name, move || (h.resumed(), h.snapshot()));
                self.add_http(klaxon_intake::http::router(handle.clone(), config.http.clone(), Some(auth.clone())));
                if let Some(listen) = config.intake.smtp_listen {
                    self.smtp(listen, handle.clone(), config, auth, process).await?;
                }
                let incidents = IncidentsService::new(handle.clone()).with_shutdown(process.shutdown.clone());
                self.serve(incidents.into_server().max_decoding_message_size(max)).await;
                let bridge = BridgeService::new(handle, process.shutdown.clone());
                self.serve(bridge.into_server().max_decoding_message_size(max)).await;
                self.tasks.push(Task::new("the intake service", intake.run(stop)));
            }
            Service::Severity => {
                use klaxon_severity::grpc::SeverityService;
                let live = self.live(validated);
                let (rules, catalog) = (live.rules, live.catalog);
                // What `LintPolicy` lints: the file's policy as validated at
                // start (the evaluator takes the rules live, the schedules'
                // overrides from the log).
                let running = klaxon_severity::RunningPolicy {
                    sections: config.policy_sections(),
                    policy: klaxon_domain::policy::Policy {
                        catalog: (*validated.catalog).clone(),
                        rules: (*validated.rules).clone(),
                        schedules: (*validated.schedules).clone(),
                        paging: validated.paging.as_deref().cloned(),
                    },
                };
                let mut evaluator =
                    klaxon_severity::Evaluator::new(bus, rules, catalog, self.clock.clone()).with_running(running);
                evaluator = evaluator.with_eviction(validated.evict_closed_after);
                if let Some((file, every)) = config.snapshot(name, self.snapshot_dir.as_deref()) {
                    evaluator = evaluator.with_snapshots(file, every);
                }
                let h = evaluator.handle();
                self.metrics = std::mem::take(&mut self.metrics).with_reactor(name, h.reactor().clone());
                self.serve(SeverityService::new(h).into_server().max_decoding_message_size(max)).await;
                self.tasks.push(Task::new("the severity evaluator", evaluator.run(stop)));
            }
            Service::Paging => {
                use klaxon_paging::grpc::PagingService;
                let Some(pager_config) = self.live(validated).pager else {
                    anyhow::bail!("paging needs a [paging] table in the configuration");
                };
                let mut pager = klaxon_paging::Pager::new(bus.clone(), pager_config, self.clock.clone());
                pager = pager.with_eviction(validated.evict_closed_after);
                if let Some(claims) = &self.claims {
                    pager = pager.with_claims(claims.clone());
                }
                if let Some((file, every)) = config.snapshot(name, self.snapshot_dir.as_deref()) {
                    pager = pager.with_snapshots(file, every);
                }
                let h = pager.handle();
                let metrics = std::mem::take(&mut self.metrics).with_reactor(name, h.reactor().clone());
                self.metrics = metrics.with_paging(h.clone());
                self.serve(PagingService::new(h).into_server().max_decoding_message_size(max)).await;
                if validated.shift_notices.enabled() {
                    // The schedules a reload replaces; `[shift_notices]`
                    // itself is fixed while the process runs.
                    let shifts_config = klaxon_paging::shifts::ShiftsConfig {
                        notices: validated.shift_notices.clone(),
                        schedules: self.live(validated).schedules,
                    };
                    let outbox = self.live(validated).outbox();
                    let mut shifts = klaxon_paging::shifts::ShiftNotifier::new(
                        bus.clone(),
                        shifts_config,
                        outbox,
                        self.clock.clone(),
                    );
                    if let Some(claims) = &self.claims {
                        shifts = shifts.with_claims(claims.clone());
                    }
                    self.tasks.push(Task::new("the shift notices", shifts.run(stop.clone())));
                }
                self.tasks.push(Task::new("the paging service", pager.run(stop)));
            }
            Service::Notifier => {
                use klaxon_notifier::grpc::FeedService;
                let options = klaxon_notifier::NotifierOptions {
                    notifier: validated.notifier.clone(),
                    paging: validated.paging.clone(),
                    channels: self.live(validated).outbox(),
                    feed_lag_max: klaxon_notifier::feed::CHANGES_BUFFER,
                };
                let paging = self.live(validated).paging;
                let mut notifier =
                    klaxon_notifier::Notifier::with_live_paging(bus, options, paging, self.clock.clone());
                notifier = notifier.with_eviction(validated.evict_closed_after);
                if let Some(claims) = &self.claims {
                    notifier = notifier.with_claims(claims.clone());
                }
                if let Some((file, every)) = config.snapshot(name, self.snapshot_dir.as_deref()) {
                    notifier = notifier.with_snapshots(file, every);
                }
                let h = notifier.handle();
                let metrics = std::mem::take(&mut self.metrics).with_reactor(name, h.reactor().clone());
                self.metrics = metrics.with_notifier(h.clone());
                let catalog = self.live(validated).catalog;
                self.add_http(config.status_page(h.clone(), auth, catalog, process.shutdown.clone()));
                let feeds =
                    FeedService::new(h, process.shutdown.clone()).with_per_principal_max(self.feeds_per_principal);
                self.serve(feeds.into_server().max_decoding_message_size(max)).await;
                self.tasks.push(Task::new("the executive notifier", notifier.run(stop)));
            }
            Service::Review => {
                use klaxon_review::grpc::ReviewService;
                let catalog = self.live(validated).catalog;
                let mut reviews = klaxon_review::Reviews::new(bus, catalog, self.clock.clone());
                reviews = reviews.with_eviction(validated.evict_closed_after);
                if let Some((file, every)) = config.snapshot(name, self.snapshot_dir.as_deref()) {
                    reviews = reviews.with_snapshots(file, every);
                }
                let h = reviews.handle();
                self.metrics = std::mem::take(&mut self.metrics).with_reactor(name, h.reactor().clone());
                if !validated.reports.is_empty() {
                    let outbox = self.live(validated).outbox();
                    let mut reporter =
                        klaxon_review::Reporter::new(h.clone(), validated.reports.clone(), outbox, self.clock.clone());
                    if let Some(claims) = &self.claims {
                        reporter = reporter.with_claims(claims.clone());
                    }
                    self.tasks.push(Task::new("the trend reports", reporter.run(stop.clone())));
                }
                self.serve(ReviewService::new(h).into_server().max_decoding_message_size(max)).await;
                self.tasks.push(Task::new("the review service", reviews.run(stop)));
            }
        }
        Ok(())
    }

    /// Wires the e-mail intake on `listen` (bound now, so that a taken
    /// port fails the start) and says where it listens. It stops accepting
    /// at the process's stop and ends with the services.
    async fn smtp(
        &mut self,
        listen: std::net::SocketAddr,
        handle: klaxon_intake::Handle,
        config: &Config,
        auth: &klaxon_auth::Auth,
        process: &Process,
    ) -> anyhow::Result<()> {
        let (listener, address) = crate::process::bind(listen, " (intake.smtp_listen)").await?;
        let smtp = klaxon_intake::smtp::SmtpIntake::new(handle, config.intake.email.clone(), Some(auth.clone()));
        self.metrics = std::mem::take(&mut self.metrics).with_email(smtp.counts());
        let (shutdown, services) = (process.shutdown.clone(), process.services.clone());
        self.tasks.push(Task::new("the e-mail intake", async move {
            smtp.run(listener, shutdown).await?;
            services.cancelled().await;
            Ok::<_, std::io::Error>(())
        }));
        tracing::info!(%address, senders = config.intake.email.senders.len(), "e-mail intake up");
        println!("klaxond smtp on {address} (e-mail intake)");
        Ok(())
    }

    /// Wires the log server: the `klaxon.v1.EventLog` service over `log`
    /// and, when given a NATS client, the relay to JetStream.
    pub async fn log(
        &mut self,
        log: &Log,
        relay: Option<klaxon_bus::relay::Relay>,
        process: &Process,
    ) -> anyhow::Result<()> {
        self.serve(klaxon_bus::server::LogServer::new(log.clone(), process.shutdown.clone()).into_server()).await;
        if let Some(relay) = relay {
            self.tasks.push(Task::new("the relay", relay.run(process.services.clone())));
        }
        Ok(())
    }
}

impl Wiring {
    /// Wires one node of a log group over `log`: the log server, whose
    /// writes go through `group` (a follower refuses them with the leader's
    /// address), the group's own service, and `relay` (the relay while
    /// this node leads).
    pub async fn log_group_node(
        &mut self,
        log: &Log,
        group: &klaxon_raft::Group,
        relay: impl Future<Output = anyhow::Result<()>> + Send + 'static,
        process: &Process,
    ) {
        let writes: Arc<dyn klaxon_bus::server::Writes> = Arc::new(group.clone());
        let server = klaxon_bus::server::LogServer::with_writes(log.clone(), writes, process.shutdown.clone());
        self.serve(server.into_server()).await;
        self.serve(klaxon_raft::GroupService::new(group.clone()).into_server()).await;
        self.tasks.push(Task::new("the relay (while leading)", relay));
    }
}

/// Serves the HTTP intake (with the metrics) and prints where, after the
/// gRPC line, which tests parse first.
pub fn serve_intake_http(
    process: &Process,
    listener: tokio::net::TcpListener,
    address: std::net::SocketAddr,
    router: axum::Router,
) -> tokio::task::JoinHandle<std::io::Result<()>> {
    use klaxon_intake::http::{ALERTMANAGER_PATH, PAGERDUTY_PATH};
    tracing::info!(%address, "HTTP intake up");
    println!(
        "klaxond http on {address} (Alertmanager: {ALERTMANAGER_PATH}, PagerDuty: {PAGERDUTY_PATH}, metrics: {})",
        crate::metrics::PATH
    );
    crate::process::serve_http(listener, router, process.shutdown.clone())
}
