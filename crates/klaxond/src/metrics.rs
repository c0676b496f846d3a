//! `GET /metrics`: Prometheus text exposition (format 0.0.4) of what this
//! process runs. Every value is read at scrape time from the components
//! themselves: the log's own counters, each service's folded position, and
//! counts that paging folds from the log (so they survive restarts and are
//! the same in every topology).
//!
//! - `klaxon_log_append_duration_seconds` (histogram), `klaxon_log_group_commit_appends`
//!   (histogram), `klaxon_log_head` — where the log is in this process.
//! - `klaxon_consumer_lag_records{service}` — log head minus the service's
//!   folded position.
//! - `klaxon_processed_position{service}` — the last position the service
//!   has fully processed: folded, decided, carried out and folded back (the
//!   barrier end-to-end tests wait on before asserting nothing else happened).
//! - `klaxon_snapshot_resumed_position{service}` — the snapshot position
//!   the service resumed from at start (0: it rebuilt from position 1), and
//!   `klaxon_snapshot_position{service}` — its last snapshot saved.
//! - `klaxon_pages_delivered_total`, `klaxon_pages_delivery_failed_total`,
//!   `klaxon_pages_acknowledged_total`, `klaxon_pages_escalated_total`,
//!   `klaxon_slo_breaches_total` — where paging runs.
//! - `klaxon_feed_subscribers` — where the notifier runs.
//! - `klaxon_email_messages_total{outcome}` — messages the e-mail intake
//!   answered (and senders it refused at `MAIL FROM`), by outcome, since
//!   the process started; where the e-mail intake runs.
//! - `klaxon_config_reloads_total{result}` — SIGHUP reloads since the
//!   process started, `applied` or `refused` (`up` and the service roles
//!   started with `--config`).
//! - `klaxon_claims_won_total{service,replica}`, `klaxon_claims_lost_total{service,replica}`
//!   — deliveries this replica claimed and made, and those it found claimed
//!   by another replica (`klaxond serve paging|notifier`).

use std::fmt::Write;
use std::sync::Arc;

use klaxon_bus::Bus;
use klaxon_log::{HistogramSnapshot, Log, Position};

/// A service's folded and processed positions, read at scrape time.
type Positions = Arc<dyn Fn() -> (Position, Position) + Send + Sync>;
/// A service's claim counts, read at scrape time.
type ClaimCounts = Arc<dyn Fn() -> klaxon_reactor::ClaimCounts + Send + Sync>;

/// What one process exposes.
#[derive(Clone, Default)]
pub struct Metrics {
    log: Option<Log>,
    bus: Option<Bus>,
    consumers: Vec<(&'static str, Positions)>,
    snapshots: Vec<(&'static str, Positions)>,
    claims: Vec<(&'static str, String, ClaimCounts)>,
    paging: Option<klaxon_paging::Handle>,
    notifier: Option<klaxon_notifier::Handle>,
    email: Option<Arc<klaxon_intake::smtp::EmailCounts>>,
    reloads: Option<Arc<crate::reload::ReloadCounts>>,
}

impl Metrics {
    /// The log of this process (embedded, or the log server).
    pub fn with_log(mut self, log: Log) -> Metrics {
        self.log = Some(log);
        self
    }

    /// The bus the services use: where the head comes from without a local log.
    pub fn with_bus(mut self, bus: Bus) -> Metrics {
        self.bus = Some(bus);
        self
    }

    /// A service consuming the log, by name: its folded and processed
    /// positions.
    pub fn with_consumer(
        mut self,
        name: &'static str,
        positions: impl Fn() -> (Position, Position) + Send + Sync + 'static,
    ) -> Metrics {
        self.consumers.push((name, Arc::new(positions)));
        self
    }

    /// A service's snapshot positions, by name: the one it resumed from at
    /// start and the last one saved.
    pub fn with_snapshots(
        mut self,
        name: &'static str,
        positions: impl Fn() -> (Position, Position) + Send + Sync + 'static,
    ) -> Metrics {
        self.snapshots.push((name, Arc::new(positions)));
        self
    }

    /// A service running on the reactor shell, by name.
    pub fn with_reactor<S: klaxon_reactor::Service>(
        self,
        name: &'static str,
        reactor: klaxon_reactor::Handle<S>,
    ) -> Metrics {
        let mut metrics = self;
        if let Some(replica) = reactor.replica() {
            let (replica, counts) = (replica.to_string(), reactor.clone());
            metrics.claims.push((name, replica, Arc::new(move || counts.claim_counts())));
        }
        let snapshots = reactor.clone();
        metrics
            .with_consumer(name, move || {
                let progress = reactor.progress();
                (progress.applied, progress.processed)
            })
            .with_snapshots(name, move || {
                let progress = snapshots.progress();
                (progress.resumed, progress.snapshot)
            })
    }

    /// Paging's counts.
    pub fn with_paging(mut self, paging: klaxon_paging::Handle) -> Metrics {
        self.paging = Some(paging);
        self
    }

    /// The notifier's feed subscribers.
    pub fn with_notifier(mut self, notifier: klaxon_notifier::Handle) -> Metrics {
        self.notifier = Some(notifier);
        self
    }

    /// The e-mail intake's counts.
    pub fn with_email(mut self, counts: Arc<klaxon_intake::smtp::EmailCounts>) -> Metrics {
        self.email = Some(counts);
        self
    }

    /// The configuration reloads' counts.
    pub fn with_reloads(mut self, counts: Arc<crate::reload::ReloadCounts>) -> Metrics {
        self.reloads = Some(counts);
        self
    }

    /// The exposition text.
    pub async fn render(&self) -> String {
        let mut out = String::new();
        let head = match (&self.log, &self.bus) {
            (Some(log), _) => Some(log.head()),
            (None, Some(bus)) => bus.head().await.ok(),
            (None, None) => None,
        };
        if let Some(log) = &self.log {
            let stats = log.stats();
            histogram(
                &mut out,
                "klaxon_log_append_duration_seconds",
                "Time from an append call to its answer (durable or refused).",
                &stats.append_micros.snapshot(),
                1e-6,
            );
            histogram(
                &mut out,
                "klaxon_log_group_commit_appends",
                "Appends committed by one group commit (one fsync).",
                &stats.group_appends.snapshot(),
                1.0,
            );
            gauge(&mut out, "klaxon_log_head", "Position of the last durable record.", log.head().0);
        }
        if !self.consumers.is_empty() {
            header(&mut out, "klaxon_consumer_lag_records", "Records in the log not yet folded by a service.", "gauge");
            if let Some(head) = head {
                for (service, positions) in &self.consumers {
                    let lag = head.0.saturating_sub(positions().0.0);
                    let _ = writeln!(out, "klaxon_consumer_lag_records{{service=\"{service}\"}} {lag}");
                }
            }
            header(
                &mut out,
                "klaxon_processed_position",
                "The last log position a service has folded, decided on, carried out and folded back.",
                "gauge",
            );
            for (service, positions) in &self.consumers {
                let _ = writeln!(out, "klaxon_processed_position{{service=\"{service}\"}} {}", positions().1.0);
            }
        }
        if !self.snapshots.is_empty() {
            let families = [
                (
                    "klaxon_snapshot_resumed_position",
                    "The snapshot position a service resumed from at start (0: rebuilt).",
                ),
                ("klaxon_snapshot_position", "The position of a service's last snapshot saved."),
            ];
            for (i, (family, help)) in families.into_iter().enumerate() {
                header(&mut out, family, help, "gauge");
                for (service, positions) in &self.snapshots {
                    let (resumed, saved) = positions();
                    let value = if i == 0 { resumed.0 } else { saved.0 };
                    let _ = writeln!(out, "{family}{{service=\"{service}\"}} {value}");
                }
            }
        }
        if !self.claims.is_empty() {
            let families = [
                ("klaxon_claims_won_total", "Deliveries this replica claimed through the log and made."),
                ("klaxon_claims_lost_total", "Deliveries this replica found claimed by another replica."),
            ];
            for (i, (name, help)) in families.into_iter().enumerate() {
                header(&mut out, name, help, "counter");
                for (service, replica, counts) in &self.claims {
                    let c = counts();
                    let value = if i == 0 { c.won } else { c.lost };
                    let _ = writeln!(out, "{name}{{service=\"{service}\",replica=\"{replica}\"}} {value}");
                }
            }
        }
        if let Some(paging) = &self.paging {
            let c = paging.counts();
            counter(&mut out, "klaxon_pages_delivered_total", "Pages delivered to a channel.", c.delivered);
            counter(&mut out, "klaxon_pages_delivery_failed_total", "Pages whose delivery failed.", c.delivery_failed);
            counter(&mut out, "klaxon_pages_acknowledged_total", "Pages acknowledged.", c.acknowledged);
            counter(&mut out, "klaxon_pages_escalated_total", "Escalations to the next level.", c.escalated);
            counter(&mut out, "klaxon_slo_breaches_total", "Service level objectives missed.", c.slo_breaches);
        }
        if let Some(notifier) = &self.notifier {
            gauge(&mut out, "klaxon_feed_subscribers", "Status feeds open now.", notifier.feed_subscribers() as u64);
        }
        if let Some(email) = &self.email {
            let name = "klaxon_email_messages_total";
            header(&mut out, name, "Messages the e-mail intake answered, by outcome.", "counter");
            for (outcome, count) in email.snapshot() {
                let _ = writeln!(out, "{name}{{outcome=\"{}\"}} {count}", outcome.as_str());
            }
        }
        if let Some(reloads) = &self.reloads {
            use std::sync::atomic::Ordering::Relaxed;
            let name = "klaxon_config_reloads_total";
            header(&mut out, name, "Configuration reloads (SIGHUP) since the start, by result.", "counter");
            for (result, count) in [("applied", &reloads.applied), ("refused", &reloads.refused)] {
                let _ = writeln!(out, "{name}{{result=\"{result}\"}} {}", count.load(Relaxed));
            }
        }
        out
    }

    /// An HTTP router serving `GET /metrics` to bearers of a token whose
    /// role may scrape (see [`klaxon_auth::policy::METRICS_READERS`]).
    pub fn router(self, auth: klaxon_auth::Auth) -> axum::Router {
        use axum::response::IntoResponse;
        let metrics = Arc::new(self);
        axum::Router::new().route(
            PATH,
            axum::routing::get(move |headers: http::HeaderMap| {
                let metrics = metrics.clone();
                let auth = auth.clone();
                async move {
                    let principal = match auth.tokens.authenticate_header(headers.get(http::header::AUTHORIZATION)) {
                        Ok(principal) => principal,
                        Err(e) => {
                            let challenge = (http::header::WWW_AUTHENTICATE, "Bearer");
                            return (http::StatusCode::UNAUTHORIZED, [challenge], e.to_string()).into_response();
                        }
                    };
                    if !klaxon_auth::policy::METRICS_READERS.contains(&principal.role) {
                        let refusal = format!("{principal} may not read metrics; they are for managers and services");
                        return (http::StatusCode::FORBIDDEN, refusal).into_response();
                    }
                    ([(http::header::CONTENT_TYPE, CONTENT_TYPE)], metrics.render().await).into_response()
                }
            }),
        )
    }
}

/// Where the metrics are served.
pub const PATH: &str = "/metrics";
/// Prometheus' text format.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

fn header(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn gauge(out: &mut String, name: &str, help: &str, value: u64) {
    header(out, name, help, "gauge");
    let _ = writeln!(out, "{name} {value}");
}

fn counter(out: &mut String, name: &str, help: &str, value: u64) {
    header(out, name, help, "counter");
    let _ = writeln!(out, "{name} {value}");
}

/// A histogram whose raw values are multiplied by `unit` (µs -> s).
fn histogram(out: &mut String, name: &str, help: &str, h: &HistogramSnapshot, unit: f64) {
    header(out, name, help, "histogram");
    for (bound, count) in h.bounds.iter().zip(&h.cumulative) {
        let _ = writeln!(out, "{name}_bucket{{le=\"{}\"}} {count}", *bound as f64 * unit);
    }
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", h.cumulative.last().copied().unwrap_or(0));
    let _ = writeln!(out, "{name}_sum {}", h.sum as f64 * unit);
    let _ = writeln!(out, "{name}_count {}", h.count);
}

/// The log server's metrics (`serve log`, alone or as a log group node) on
/// `at`, when `metrics_listen` is set.
pub async fn serve_log(
    at: Option<std::net::SocketAddr>,
    log: &klaxon_log::Log,
    auth: &klaxon_auth::Auth,
    shutdown: &tokio_util::sync::CancellationToken,
) -> anyhow::Result<Option<tokio::task::JoinHandle<std::io::Result<()>>>> {
    let Some(at) = at else { return Ok(None) };
    let metrics = Metrics::default().with_log(log.clone());
    Ok(Some(serve(at, None, metrics, auth.clone(), shutdown.clone()).await?))
}

/// Serves `GET /metrics` on `listen` until `shutdown`, beside `other` (what
/// the roles of the process serve over HTTP, such as the status page);
/// prints where.
pub async fn serve(
    listen: std::net::SocketAddr,
    other: Option<axum::Router>,
    metrics: Metrics,
    auth: klaxon_auth::Auth,
    shutdown: tokio_util::sync::CancellationToken,
) -> anyhow::Result<tokio::task::JoinHandle<std::io::Result<()>>> {
    let (listener, address) = crate::process::bind(listen, " (metrics_listen)").await?;
    println!("klaxond metrics on {address} ({PATH})");
    let router = metrics.router(auth);
    let router = match other {
        Some(other) => other.merge(router),
        None => router,
    };
    Ok(crate::process::serve_http(listener, router, shutdown))
}
