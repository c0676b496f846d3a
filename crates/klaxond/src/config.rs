//! The configuration file: one TOML document, every key optional. Every
//! value is checked at start; an error names the file, the key and the
//! problem.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;

use klaxon_domain::catalog::{ServiceCatalog, ServiceCatalogConfig};
use klaxon_domain::oncall::{Schedules, SchedulesConfig};
use klaxon_domain::paging::{CustomerConfig, EscalationPolicyConfig, PagingConfig, PagingSectionConfig, SloTables};
use klaxon_domain::policy::{ChannelName, Sections};
use klaxon_domain::severity::{Rules, SeverityConfig};
use serde::Deserialize;

#[cfg(test)]
mod tests;

/// Everything `klaxond` can be configured with, as written in the file.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where gRPC listens.
    pub listen: SocketAddr,
    /// Where the HTTP intake (Alertmanager webhook, PagerDuty Events API v2)
    /// listens: `klaxond up` and `klaxond serve intake`, which also serve
    /// `GET /metrics` there.
    pub http_listen: SocketAddr,
    /// Where the other `klaxond serve` roles serve `GET /metrics`; none by
    /// default.
    pub metrics_listen: Option<SocketAddr>,
    /// The event log's folder.
    pub data_dir: PathBuf,
    /// Limits and tuning of the event log.
    pub log: klaxon_log::Options,
    /// The intake service.
    pub intake: klaxon_intake::Options,
    /// The HTTP intake's limits and throttle (`[http]`).
    pub http: klaxon_intake::http::HttpOptions,
    /// The service catalog (`[[services]]`).
    pub services: ServiceCatalogConfig,
    /// Severity rules (`[severity]`); without it every report is SEV4.
    pub severity: Option<SeverityConfig>,
    /// On-call schedules (`[[schedules]]`).
    pub schedules: SchedulesConfig,
    /// On-call checks (`[oncall]`).
    pub oncall: OncallConfig,
    /// Paging (`[paging]`); without it nobody is paged.
    pub paging: Option<PagingSectionConfig>,
    /// Shift notices (`[shift_notices]`), sent beside paging; off unless
    /// `enabled = true`.
    pub shift_notices: klaxon_domain::oncall::notices::NoticesSectionConfig,
    /// Service levels per severity (`[slo.sev1]`, …) and per customer tier
    /// (`[slo.tier.gold]`).
    pub slo: SloTables,
    /// Customers and their tiers (`[[customers]]`).
    pub customers: Vec<CustomerConfig>,
    /// Escalation policies (`[[escalation_policies]]`).
    pub escalation_policies: Vec<EscalationPolicyConfig>,
    /// Outbound notification channels (`[[channels]]`); secrets come from
    /// the environment variables they name.
    pub channels: Vec<klaxon_channels::ChannelConfig>,
    /// The executive notifier (`[notifier]`); defaults notify nobody but
    /// still serve status feeds.
    pub notifier: Option<klaxon_domain::notifier::NotifierSectionConfig>,
    /// Cadenced trend reports (`[[reports]]`), posted by the review
    /// service to channels once per period.
    pub reports: Vec<klaxon_domain::review::reports::ReportConfig>,
    /// The distributed topology (`[cluster]`): NATS and where each
    /// `klaxond serve` process listens. `klaxond up` ignores it.
    pub cluster: ClusterConfig,
    /// TLS for gRPC (`[tls]`).
    pub tls: TlsConfig,
    /// Authentication (`[auth]`).
    pub auth: AuthConfig,
    /// What one caller may send and hold (`[limits]`).
    pub limits: LimitsConfig,
    /// The live status page (`[status_page]`), served on the HTTP address
    /// where the notifier runs.
    pub status_page: klaxon_notifier::status_page::StatusPageOptions,
    /// This log server as one node of a replicated log (`[log_group]`,
    /// see `docs/replication.md`); without it `serve log` is a single log
    /// server. `klaxond up` ignores it.
    pub log_group: Option<klaxon_raft::Options>,
    /// This process as one replica of its role (`[replica]`): its id in
    /// the claims of paging and the notifier, and how long a claim holds.
    pub replica: ReplicaConfig,
    /// Projection snapshots (`[snapshots]`): where each service saves its
    /// folded state and how often, so that a restart folds only the log's
    /// tail.
    pub snapshots: SnapshotsConfig,
    /// What the reacting services keep in memory (`[memory]`).
    pub memory: MemoryConfig,
}

/// `[memory]`: the reacting services (severity, paging, the notifier,
/// review) keep in memory only open work and recent history. An incident
/// resolved or closed for `evict_closed_after` (since its latest event),
/// with nothing left to do, leaves their memory; it is read back from the
/// log when something about it happens again (a reopen, a late
/// acknowledgement, a postmortem edit) or a query asks for it.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MemoryConfig {
    /// How long a finished incident stays in memory: a whole number and a
    /// unit (`s`, `m`, `h`, `d`), several added up (`"1h30m"`, `"1d 12h"`),
    /// from `"0s"` (leaves at the next look, within a minute) to
    /// [`EVICT_CLOSED_AFTER_MAX_DAYS`] days. At least
    /// `[status_page] public_resolved_hours` while the status page is on
    /// (it shows recently resolved incidents from memory). Default `"24h"`.
    pub evict_closed_after: String,
}

/// The longest `[memory] evict_closed_after`, in days (ten years).
pub const EVICT_CLOSED_AFTER_MAX_DAYS: u64 = 3650;

impl Default for MemoryConfig {
    fn default() -> Self {
        MemoryConfig { evict_closed_after: "24h".to_owned() }
    }
}

impl MemoryConfig {
    /// `evict_closed_after` as a duration, or what is wrong with it.
    pub fn evict_closed_after(&self) -> Result<std::time::Duration, String> {
        let bad = |reason: &str| format!("memory.evict_closed_after: {:?} {reason}", self.evict_closed_after);
        let text = self.evict_closed_after.trim();
        if text.is_empty() {
            return Err(bad("is empty; write a number and a unit (s, m, h, d), such as \"24h\""));
        }
        let mut seconds: u64 = 0;
        let mut rest = text;
        while !rest.is_empty() {
            let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
            if digits == 0 {
                return Err(bad("must be numbers each followed by a unit (s, m, h, d), such as \"24h\" or \"1h30m\""));
            }
            let n: u64 = rest[..digits].parse().map_err(|_| bad("has a number too large"))?;
            rest = &rest[digits..];
            let unit_len = rest.find(|c: char| !c.is_ascii_alphabetic()).unwrap_or(rest.len());
            let unit = match &rest[..unit_len] {
                "s" => 1,
                "m" => 60,
                "h" => 3600,
                "d" => 86_400,
                "" => return Err(bad("has a number without a unit (s, m, h, d)")),
                other => return Err(bad(&format!("has an unknown unit {other:?}: use s, m, h or d"))),
            };
            rest = rest[unit_len..].trim_start();
            seconds = n.checked_mul(unit).and_then(|s| seconds.checked_add(s)).ok_or_else(|| bad("is too long"))?;
        }
        if seconds > EVICT_CLOSED_AFTER_MAX_DAYS * 86_400 {
            return Err(bad(&format!("is longer than {EVICT_CLOSED_AFTER_MAX_DAYS} days")));
        }
        Ok(std::time::Duration::from_secs(seconds))
    }
}

/// `[snapshots]`: each service (intake, severity, paging, the notifier,
/// review) saves its projection every `every_records` records folded and
/// at a clean stop, to `<dir>/<role>.snap` (`<role>-<replica id>.snap` with
/// `[replica] id`), and resumes from it at start. `klaxond up` keeps them
/// in `data_dir` by default; `klaxond serve` only with `dir`. A snapshot is a cache:
/// delete the folder (or set `enabled = false`) and the next start rebuilds
/// every projection from the log.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SnapshotsConfig {
    /// Whether services save and resume from snapshots. Default on.
    pub enabled: bool,
    /// Where the snapshots are. `klaxond up`: default `snapshots` in
    /// `data_dir`. `klaxond serve ROLE`: none by default (every start
    /// rebuilds); give each service process a folder of its own here.
    pub dir: Option<PathBuf>,
    /// Records folded between two snapshots (1 to 100000000). Default 10000.
    pub every_records: u64,
}

/// Most records between two snapshots.
pub const SNAPSHOT_EVERY_RECORDS_MAX: u64 = 100_000_000;

impl Default for SnapshotsConfig {
    fn default() -> Self {
        SnapshotsConfig { enabled: true, dir: None, every_records: 10_000 }
    }
}

impl SnapshotsConfig {
    fn validate(&self) -> Result<(), String> {
        if !(1..=SNAPSHOT_EVERY_RECORDS_MAX).contains(&self.every_records) {
            return Err(format!(
                "snapshots.every_records: {} must be from 1 to {SNAPSHOT_EVERY_RECORDS_MAX}",
                self.every_records
            ));
        }
        Ok(())
    }
}

impl Config {
    /// Where service `role` keeps its snapshot (`[snapshots] dir`, else
    /// `default_dir`), and every how many records it saves one; none when
    /// snapshots are off or there is no folder for them.
    pub fn snapshot(
        &self,
        role: &str,
        default_dir: Option<&std::path::Path>,
    ) -> Option<(klaxon_reactor::SnapshotFile, std::num::NonZeroU64)> {
        if !self.snapshots.enabled {
            return None;
        }
        let dir = self.snapshots.dir.clone().or_else(|| default_dir.map(std::path::Path::to_path_buf))?;
        let name = match &self.replica.id {
            Some(replica) => format!("{role}-{replica}.snap"),
            None => format!("{role}.snap"),
        };
        let every = std::num::NonZeroU64::new(self.snapshots.every_records)?;
        Some((klaxon_reactor::SnapshotFile::new(dir.join(name)), every))
    }
}

/// `[oncall]`: what loading the configuration checks about schedules.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OncallConfig {
    /// Loading the configuration warns (on stderr, without refusing it)
    /// about every hole (nobody on call) of a configured schedule in the
    /// next this many days; 0 turns the check off. At most 92.
    pub coverage_warning_days: u32,
}

/// The longest look-ahead of `[oncall] coverage_warning_days`.
pub const COVERAGE_WARNING_DAYS_MAX: u32 = 92;

impl Default for OncallConfig {
    fn default() -> Self {
        OncallConfig { coverage_warning_days: 14 }
    }
}

/// The most hole warnings printed per schedule (the rest are counted).
const HOLE_WARNINGS_MAX: usize = 5;

/// One warning line per hole of `schedules` in `[now, now + days)`, at most
/// [`HOLE_WARNINGS_MAX`] per schedule plus a count of the rest. The
/// configured schedules only: overrides and swaps made since live in the
/// log (`klaxon oncall coverage` applies them).
pub fn coverage_warnings(schedules: &Schedules, now: chrono::DateTime<chrono::Utc>, days: u32) -> Vec<String> {
    if days == 0 {
        return Vec::new();
    }
    let until = now + chrono::TimeDelta::days(i64::from(days.min(COVERAGE_WARNING_DAYS_MAX)));
    let mut lines = Vec::new();
    for schedule in schedules.iter() {
        let holes = schedule.holes(now, until);
        for hole in holes.iter().take(HOLE_WARNINGS_MAX) {
            lines.push(format!(
                "warning: schedules: {} has nobody on call during {}",
                schedule.name(),
                klaxon_domain::oncall::roster::interval(hole.from, hole.until)
            ));
        }
        if holes.len() > HOLE_WARNINGS_MAX {
            lines.push(format!(
                "warning: schedules: {} has {} more holes in the next {days} days (`klaxon oncall coverage` lists them)",
                schedule.name(),
                holes.len() - HOLE_WARNINGS_MAX
            ));
        }
    }
    lines
}

/// `[replica]`: how replicas of paging and the notifier share deliveries.
/// Each delivery is claimed through the log first (see
/// `docs/ARCHITECTURE.md`, "Claims and leases"); a claim holds for
/// `claim_lease_ms`, after which another replica may take it over.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReplicaConfig {
    /// This replica's id in its claims (ASCII letters, digits and
    /// `-_.:@`); default `<hostname>-<pid>`. Give each replica its own.
    pub id: Option<String>,
    /// How long a claim holds, in milliseconds (1000 to 3600000): longer
    /// than a channel's bounded retries take, or a slow but live replica
    /// is taken over and the message sent twice (same idempotency key).
    pub claim_lease_ms: u64,
}

/// Shortest claim lease.
pub const CLAIM_LEASE_MS_MIN: u64 = 1_000;
/// Longest claim lease.
pub const CLAIM_LEASE_MS_MAX: u64 = 3_600_000;

impl Default for ReplicaConfig {
    fn default() -> Self {
        ReplicaConfig { id: None, claim_lease_ms: klaxon_reactor::claim::LEASE_DEFAULT_MS }
    }
}

impl ReplicaConfig {
    fn validate(&self) -> Result<(), String> {
        if let Some(id) = &self.id {
            klaxon_reactor::ReplicaId::new(id.as_str()).map_err(|e| format!("replica.id: {e}"))?;
        }
        if !(CLAIM_LEASE_MS_MIN..=CLAIM_LEASE_MS_MAX).contains(&self.claim_lease_ms) {
            return Err(format!(
                "replica.claim_lease_ms: {} must be from {CLAIM_LEASE_MS_MIN} to {CLAIM_LEASE_MS_MAX}",
                self.claim_lease_ms
            ));
        }
        Ok(())
    }

    /// The claims of this process: its id (or `<hostname>-<pid>`) and lease.
    pub fn claims(&self) -> anyhow::Result<klaxon_reactor::Claims> {
        let replica = match &self.id {
            Some(id) => klaxon_reactor::ReplicaId::new(id.as_str()).map_err(|e| anyhow::anyhow!("replica.id: {e}"))?,
            None => klaxon_reactor::ReplicaId::from_host_and_pid(&hostname(), std::process::id()),
        };
        Ok(klaxon_reactor::Claims::new(replica, self.claim_lease_ms))
    }
}

/// The machine's name, as the kernel has it (empty when unknown).
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_default()
}

/// `[limits]`: what one caller may send and hold. Each limit hit is a
/// precise status that writes nothing: `OUT_OF_RANGE` (tonic's) naming both
/// sizes for a message, `RESOURCE_EXHAUSTED` for the rate and feeds. (Field
/// lengths are the domain's; bridge participants are `[intake]
/// bridge_participants_max`.)
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Largest gRPC request message a client may send, in bytes.
    pub message_bytes_max: usize,
    /// Requests per second each principal may sustain (role `service`
    /// excepted); 0 turns the limit off.
    pub requests_per_second: u32,
    /// Requests a principal may make at once above that rate.
    pub request_burst: u32,
    /// Status feeds one principal may have open at once.
    pub feeds_per_principal: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            message_bytes_max: 4 * 1024 * 1024,
            requests_per_second: 50,
            request_burst: 100,
            feeds_per_principal: klaxon_notifier::grpc::FEEDS_PER_PRINCIPAL_DEFAULT,
        }
    }
}

impl LimitsConfig {
    fn validate(&self) -> Result<(), String> {
        if !(1024..=64 * 1024 * 1024).contains(&self.message_bytes_max) {
            return Err(format!("limits.message_bytes_max: {} must be from 1024 to 67108864", self.message_bytes_max));
        }
        if self.requests_per_second > 0 && self.request_burst == 0 {
            return Err("limits.request_burst: must be at least 1 while requests_per_second is set".into());
        }
        if self.feeds_per_principal == 0 {
            return Err("limits.feeds_per_principal: must be at least 1".into());
        }
        Ok(())
    }

    /// The request rate, when limited.
    fn rate(&self) -> Option<Arc<klaxon_auth::RateLimit>> {
        let per_second = std::num::NonZeroU32::new(self.requests_per_second)?;
        let burst = std::num::NonZeroU32::new(self.request_burst)?;
        Some(Arc::new(klaxon_auth::RateLimit::new(per_second, burst)))
    }
}

/// `[auth]`: where the tokens are. Every gRPC call (but health checking
/// and reflection) and every HTTP endpoint needs a bearer token; see
/// `klaxond token`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// The token file (SHA-256 hashes only), reread when it changes.
    /// Default: `tokens.toml` in `data_dir`. In the distributed topology
    /// every process must read the same file (or a copy).
    pub tokens_file: Option<PathBuf>,
    /// A file holding this process's own token, of role `service`, which
    /// the services of the distributed topology present to the log server.
    pub service_token_file: Option<PathBuf>,
    /// The principals whose reports may carry the source `help_desk` (for
    /// severity rules keyed on it); any other principal claiming it is
    /// refused. Default: none.
    pub help_desk_reporters: Vec<String>,
}

impl Config {
    /// The token file in use.
    pub fn tokens_file(&self) -> PathBuf {
        self.auth.tokens_file.clone().unwrap_or_else(|| self.data_dir.join("tokens.toml"))
    }

    /// What the gRPC servers (and the HTTP endpoints) authenticate with.
    pub fn auth(&self, validated: &Validated) -> anyhow::Result<klaxon_auth::Auth> {
        let path = self.tokens_file();
        let tokens = klaxon_auth::TokenStore::open(&path).context("auth.tokens_file")?;
        if tokens.is_empty() {
            tracing::warn!(
                path = %path.display(),
                "no API tokens yet: every call will be refused until `klaxond token create` makes one"
            );
        }
        Ok(klaxon_auth::Auth {
            tokens: Arc::new(tokens),
            teams: klaxon_auth::SharedTeams::new(teams(&validated.catalog)),
            rate: self.limits.rate(),
            help_desk: Arc::new(self.auth.help_desk_reporters.iter().cloned().collect()),
        })
    }

    /// The status pages of `notifier` (`[status_page]`, `[limits]
    /// feeds_per_principal`), to merge into the HTTP router; open event
    /// streams end on `shutdown`.
    pub fn status_page(
        &self,
        notifier: klaxon_notifier::Handle,
        auth: &klaxon_auth::Auth,
        catalog: klaxon_reactor::Live<ServiceCatalog>,
        shutdown: tokio_util::sync::CancellationToken,
    ) -> axum::Router {
        let options = self.status_page.clone();
        klaxon_notifier::status_page::StatusPage::new(notifier, auth.tokens.clone(), catalog, options, shutdown)
            .with_feeds_per_principal(self.limits.feeds_per_principal)
            .router()
    }

    /// The absolute data folder and the event log opened in it. A folder
    /// another process holds is refused naming what to do.
    pub fn open_log(&self) -> anyhow::Result<(PathBuf, klaxon_log::Log)> {
        let data_dir = std::path::absolute(&self.data_dir).unwrap_or(self.data_dir.clone());
        match klaxon_log::Log::open(&data_dir, self.log.clone()) {
            Ok(log) => Ok((data_dir, log)),
            Err(e @ klaxon_log::Error::Locked { .. }) => Err(anyhow::Error::new(e).context(format!(
                "cannot open the event log in {}: is another klaxond running on it? Stop it, or give this one \
                 another --data-dir",
                data_dir.display()
            ))),
            Err(e) => {
                Err(anyhow::Error::new(e).context(format!("cannot open the event log in {}", data_dir.display())))
            }
        }
    }

    /// This process's own token for the log server, when configured.
    pub fn service_token(&self) -> anyhow::Result<Option<String>> {
        let Some(path) = &self.auth.service_token_file else { return Ok(None) };
        let token = std::fs::read_to_string(path)
            .with_context(|| format!("auth.service_token_file: cannot read {}", path.display()))?;
        let token = token.trim();
        anyhow::ensure!(!token.is_empty(), "auth.service_token_file: {} is empty", path.display());
        Ok(Some(token.to_owned()))
    }
}

/// What the command line (or its environment variables) says beyond the
/// configuration file. [`Overrides::apply`] is the one place a flag
/// overrides the file.
#[derive(Debug, Default)]
pub struct Overrides {
    /// Where gRPC listens: `listen` for `up` and the gateway, the role's own
    /// `[cluster]` address for the other `serve` roles.
    pub listen: Option<SocketAddr>,
    /// `data_dir`.
    pub data_dir: Option<PathBuf>,
    /// `http_listen`.
    pub http_listen: Option<SocketAddr>,
    /// `[intake] smtp_listen`: turns the e-mail intake on.
    pub smtp_listen: Option<SocketAddr>,
    /// `metrics_listen`.
    pub metrics_listen: Option<SocketAddr>,
    /// `[auth] tokens_file`.
    pub tokens_file: Option<PathBuf>,
    /// `[auth] service_token_file`.
    pub service_token_file: Option<PathBuf>,
    /// `[cluster] nats_url`.
    pub nats: Option<String>,
    /// `[cluster] log`.
    pub log_server: Option<String>,
    /// `service=address` pairs: `[cluster] <service>`.
    pub routes: Vec<(String, String)>,
    /// `[log_group] node_id` (`serve log`), so that every node of a group
    /// can share one file.
    pub node_id: Option<u64>,
    /// `[replica] id`.
    pub replica_id: Option<String>,
}

impl Overrides {
    /// Applies them to `config`. `role` is the `serve` role running (none
    /// for `up`): its `--listen` is its own `[cluster]` address.
    pub fn apply(self, config: &mut Config, role: Option<&str>) -> anyhow::Result<()> {
        if let Some(listen) = self.listen {
            match role.filter(|r| *r != "gateway") {
                None => config.listen = listen,
                Some(role) => *config.cluster.address_mut(role)? = listen.to_string(),
            }
        }
        if let Some(dir) = self.data_dir {
            config.data_dir = dir;
        }
        if let Some(address) = self.http_listen {
            config.http_listen = address;
        }
        if let Some(address) = self.smtp_listen {
            config.intake.smtp_listen = Some(address);
        }
        if let Some(address) = self.metrics_listen {
            config.metrics_listen = Some(address);
        }
        if let Some(path) = self.tokens_file {
            config.auth.tokens_file = Some(path);
        }
        if let Some(path) = self.service_token_file {
            config.auth.service_token_file = Some(path);
        }
        if let Some(nats) = self.nats {
            config.cluster.nats_url = nats;
        }
        if let Some(log) = self.log_server {
            config.cluster.log = log;
        }
        for (service, address) in self.routes {
            *config.cluster.address_mut(&service).map_err(|e| anyhow::anyhow!("--route {service}=…: {e}"))? = address;
        }
        if let Some(id) = self.node_id {
            let group = config.log_group.as_mut().ok_or_else(|| {
                anyhow::anyhow!("--node-id is for `serve log` with a [log_group] table in the configuration")
            })?;
            group.node_id = id;
        }
        if let Some(id) = self.replica_id {
            klaxon_reactor::ReplicaId::new(id.as_str()).map_err(|e| anyhow::anyhow!("--replica-id: {e}"))?;
            config.replica.id = Some(id);
        }
        Ok(())
    }
}

/// `[cluster]`: how the processes of the distributed topology find each
/// other. Each address is where that process listens and where the others
/// (and the gateway) reach it.
/// A role run as several replicas lists each one's address, separated by
/// commas; each replica then gets its own with `--listen`.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// The NATS server (JetStream enabled).
    pub nats_url: String,
    /// Names in NATS: stream `KLAXON`, subjects `klaxon.log` and
    /// `klaxon.head` for the default `klaxon`.
    pub prefix: String,
    /// `klaxond serve log`; for a log group, every node's address,
    /// separated by commas (clients follow the leader).
    pub log: String,
    /// `klaxond serve intake`.
    pub intake: String,
    /// `klaxond serve severity`.
    pub severity: String,
    /// `klaxond serve paging`.
    pub paging: String,
    /// `klaxond serve notifier`.
    pub notifier: String,
    /// `klaxond serve review`.
    pub review: String,
}

impl ClusterConfig {
    /// Where the process of `role` listens (and the others reach it).
    pub fn address(&self, role: &str) -> anyhow::Result<String> {
        self.clone().address_mut(role).map(|a| a.clone())
    }

    fn address_mut(&mut self, role: &str) -> anyhow::Result<&mut String> {
        Ok(match role {
            "log" => &mut self.log,
            "intake" => &mut self.intake,
            "severity" => &mut self.severity,
            "paging" => &mut self.paging,
            "notifier" => &mut self.notifier,
            "review" => &mut self.review,
            other => anyhow::bail!("no such service {other:?} (log, intake, severity, paging, notifier, review)"),
        })
    }
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            nats_url: "nats://127.0.0.1:4222".into(),
            prefix: "klaxon".into(),
            log: "127.0.0.1:7601".into(),
            intake: "127.0.0.1:7611".into(),
            severity: "127.0.0.1:7612".into(),
            paging: "127.0.0.1:7613".into(),
            notifier: "127.0.0.1:7614".into(),
            review: "127.0.0.1:7615".into(),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 7600)),
            http_listen: SocketAddr::from(([127, 0, 0, 1], 7680)),
            metrics_listen: None,
            data_dir: PathBuf::from("klaxon-data"),
            log: klaxon_log::Options::default(),
            intake: klaxon_intake::Options::default(),
            http: klaxon_intake::http::HttpOptions::default(),
            services: ServiceCatalogConfig::default(),
            severity: None,
            schedules: SchedulesConfig::default(),
            oncall: OncallConfig::default(),
            paging: None,
            shift_notices: Default::default(),
            slo: SloTables::default(),
            customers: Vec::new(),
            escalation_policies: Vec::new(),
            channels: Vec::new(),
            reports: Vec::new(),
            notifier: None,
            cluster: ClusterConfig::default(),
            tls: TlsConfig::default(),
            auth: AuthConfig::default(),
            limits: LimitsConfig::default(),
            status_page: klaxon_notifier::status_page::StatusPageOptions::default(),
            log_group: None,
            replica: ReplicaConfig::default(),
            snapshots: SnapshotsConfig::default(),
            memory: MemoryConfig::default(),
        }
    }
}

/// The catalog's team of each service, for the scope checks of
/// principals limited to teams.
pub fn teams(catalog: &ServiceCatalog) -> klaxon_auth::Teams {
    catalog.services().map(|s| (s.name().to_string(), s.team().to_owned())).collect()
}

/// The checked, ready-to-use parts of the configuration.
pub struct Validated {
    /// The service catalog.
    pub catalog: Arc<ServiceCatalog>,
    /// The severity rules.
    pub rules: Arc<Rules>,
    /// The on-call schedules.
    pub schedules: Arc<Schedules>,
    /// Paging, when configured.
    pub paging: Option<Arc<PagingConfig>>,
    /// The outbound channels.
    pub channels: Arc<klaxon_channels::Channels>,
    /// The executive notifier.
    pub notifier: Arc<klaxon_domain::notifier::NotifierConfig>,
    /// The cadenced trend reports.
    pub reports: Vec<klaxon_domain::review::reports::Report>,
    /// How long a finished incident stays in the reacting services' memory
    /// (`[memory] evict_closed_after`).
    pub evict_closed_after: std::time::Duration,
    /// The shift notices (`[shift_notices]`).
    pub shift_notices: Arc<klaxon_domain::oncall::notices::NoticesConfig>,
}

impl Config {
    /// Reads `path`, or the defaults without one. Errors name the file, the
    /// key and the problem.
    pub fn load(path: Option<&Path>) -> anyhow::Result<(Config, Validated)> {
        let (config, name) = match path {
            None => (Config::default(), "the default configuration".to_string()),
            Some(path) => {
                let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
                let config = toml::from_str(&text)
                    .map_err(|e| anyhow::anyhow!("{}: {}", path.display(), e.to_string().trim_end()))?;
                (config, path.display().to_string())
            }
        };
        let validated = config.validate().map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
        let days = config.oncall.coverage_warning_days;
        for line in coverage_warnings(&validated.schedules, chrono::Utc::now(), days) {
            eprintln!("{name}: {line}");
        }
        Ok((config, validated))
    }

    fn validate(&self) -> Result<Validated, String> {
        self.tls.server().map_err(|e| format!("{e:#}"))?;
        self.tls.client().map_err(|e| format!("{e:#}"))?;
        let c = &self.cluster;
        if c.prefix.is_empty() || !c.prefix.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == '-') {
            return Err(format!("cluster.prefix: {:?} must be letters, digits, '-' or '_'", c.prefix));
        }
        for (i, address) in c.log.split(',').map(str::trim).enumerate() {
            let port = address.rsplit_once(':').and_then(|(host, port)| (!host.is_empty()).then_some(port));
            if port.and_then(|p| p.parse::<u16>().ok()).is_none() {
                return Err(format!("cluster.log: address {} ({address:?}) is not host:port", i + 1));
            }
        }
        if let Some(group) = &self.log_group {
            // node_id may come from `serve log --node-id`; the node checks it.
            group.validate_shared()?;
        }
        for (key, address) in [
            ("intake", &c.intake),
            ("severity", &c.severity),
            ("paging", &c.paging),
            ("notifier", &c.notifier),
            ("review", &c.review),
        ] {
            // Several replicas of a role are listed with commas.
            for address in address.split(',').map(str::trim) {
                let port = address.rsplit_once(':').and_then(|(host, port)| (!host.is_empty()).then_some(port));
                if port.and_then(|p| p.parse::<u16>().ok()).is_none() {
                    return Err(format!("cluster.{key}: {address:?} is not host:port"));
                }
            }
        }
        self.http.validate()?;
        self.intake.email.validate()?;
        if self.intake.smtp_listen.is_some() && self.intake.email.senders.is_empty() {
            return Err("intake.email.senders: the e-mail intake (intake.smtp_listen) needs at least one sender".into());
        }
        self.limits.validate()?;
        self.replica.validate()?;
        self.snapshots.validate()?;
        if self.oncall.coverage_warning_days > COVERAGE_WARNING_DAYS_MAX {
            return Err(format!(
                "oncall.coverage_warning_days: {} must be at most {COVERAGE_WARNING_DAYS_MAX}",
                self.oncall.coverage_warning_days
            ));
        }
        self.status_page.check()?;
        let evict_closed_after = self.memory.evict_closed_after()?;
        let shown = std::time::Duration::from_secs(self.status_page.public_resolved_hours.saturating_mul(3600));
        if self.status_page.enabled && evict_closed_after < shown {
            return Err(format!(
                "memory.evict_closed_after: {:?} is shorter than status_page.public_resolved_hours ({} h), \
                 for which the public status page shows a resolved incident from memory",
                self.memory.evict_closed_after, self.status_page.public_resolved_hours
            ));
        }
        // The policy sections are validated by the domain, the same way a
        // candidate of `klaxon policy test` and `klaxon policy lint` is.
        let sections = self.policy_sections();
        let policy = sections.validate().map_err(|e| e.to_string())?;
        let channels = klaxon_channels::Channels::from_env(&self.channels).map_err(|e| e.to_string())?;
        sections.check_channels().map_err(|e| e.to_string())?;
        let paging = policy.paging.map(Arc::new);
        let notifier_section: klaxon_domain::notifier::NotifierSectionConfig = match &self.notifier {
            Some(n) => n.clone(),
            // An empty table: every key has its default.
            None => toml::from_str("").map_err(|e| e.to_string())?,
        };
        let notifier = notifier_section.validate("notifier").map_err(|e| e.to_string())?;
        let reports =
            klaxon_domain::review::reports::validate_reports(&self.reports, "reports", &policy.catalog, &|c| {
                channels.get(c).is_some()
            })
            .map_err(|e| e.to_string())?;
        // Reminders go to people, through the channels pages take.
        let people = paging.as_ref().map(|p| p.channels().to_vec()).unwrap_or_default();
        let shift_notices = self
            .shift_notices
            .validate("shift_notices", &people, &|c| channels.get(c).is_some())
            .map_err(|e| e.to_string())?;
        if shift_notices.enabled() && paging.is_none() {
            return Err("shift_notices: notices run beside paging, which needs a [paging] table".into());
        }
        let notifier = notifier.with_people_channels(people);
        Ok(Validated {
            notifier: Arc::new(notifier),
            catalog: Arc::new(policy.catalog),
            rules: Arc::new(policy.rules),
            schedules: Arc::new(policy.schedules),
            paging,
            channels: Arc::new(channels),
            reports,
            evict_closed_after,
            shift_notices: Arc::new(shift_notices),
        })
    }

    /// The policy sections of the file (`klaxon_domain::policy::Sections`),
    /// which the domain validates.
    pub fn policy_sections(&self) -> Sections {
        Sections {
            services: self.services.clone(),
            severity: self.severity.clone(),
            schedules: self.schedules.clone(),
            paging: self.paging.clone(),
            slo: self.slo.clone(),
            customers: self.customers.clone(),
            escalation_policies: self.escalation_policies.clone(),
            channels: self.channels.iter().map(|c| ChannelName { name: c.name.clone() }).collect(),
            notifier: self.notifier.clone(),
            reports: self.reports.clone(),
            shift_notices: self.shift_notices.clone(),
        }
    }
}

/// `[tls]`: serve gRPC over TLS (rustls) with this certificate, trust
/// `ca_file` when this process calls another (the log server, a service
/// behind the gateway), and, with `client_ca_file`, require a client
/// certificate (mutual TLS). Without the table everything is plaintext on
/// loopback.
///
/// One certificate is this process's identity both ways: it serves with
/// it, and presents it as its client certificate when it calls another
/// process. So with one CA, one certificate per process (usable for both
/// `serverAuth` and `clientAuth`) and `ca_file` = `client_ca_file` = that
/// CA, every internal call of the distributed topology is mutual TLS.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain of this process: its server certificate, and
    /// its client certificate when it calls another process.
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file`.
    pub key_file: Option<PathBuf>,
    /// PEM certificate authority that signed the other processes'
    /// certificates (the distributed topology's internal calls).
    pub ca_file: Option<PathBuf>,
    /// PEM certificate authority that must have signed the certificate of
    /// every client of this process's gRPC servers; a client without one is
    /// refused during the TLS handshake, before any token is looked at.
    /// Needs `cert_file` and `key_file`.
    pub client_ca_file: Option<PathBuf>,
}

impl TlsConfig {
    /// The server side, when a certificate is configured; it requires
    /// client certificates signed by `client_ca_file` when that is set.
    pub fn server(&self) -> anyhow::Result<Option<tonic::transport::ServerTlsConfig>> {
        let Some(identity) = self.identity()? else {
            anyhow::ensure!(
                self.client_ca_file.is_none(),
                "tls.client_ca_file: client certificates are only checked over TLS; set tls.cert_file and tls.key_file"
            );
            return Ok(None);
        };
        let mut tls = tonic::transport::ServerTlsConfig::new().identity(identity);
        if let Some(path) = &self.client_ca_file {
            // Required, not optional: false is tonic's default, said here
            // so that it never changes unnoticed.
            tls = tls.client_ca_root(certificate_authority(path, "tls.client_ca_file")?).client_auth_optional(false);
        }
        Ok(Some(tls))
    }

    /// A gRPC server builder, serving TLS when a certificate is configured:
    /// what every server of a process starts from.
    pub fn grpc_server(&self) -> anyhow::Result<tonic::transport::Server> {
        let builder = tonic::transport::Server::builder();
        match self.server()? {
            Some(tls) => builder.tls_config(tls).context("tls: the certificate or key is not usable"),
            None => Ok(builder),
        }
    }

    /// The client side for calls to other Klaxon processes, when a CA is
    /// configured: it trusts `ca_file` and presents this process's
    /// certificate, when it has one, to servers that ask for it.
    pub fn client(&self) -> anyhow::Result<Option<tonic::transport::ClientTlsConfig>> {
        let Some(ca) = &self.ca_file else { return Ok(None) };
        let mut tls =
            tonic::transport::ClientTlsConfig::new().ca_certificate(certificate_authority(ca, "tls.ca_file")?);
        if let Some(identity) = self.identity()? {
            tls = tls.identity(identity);
        }
        Ok(Some(tls))
    }

    /// This process's certificate and key, checked to be PEM.
    fn identity(&self) -> anyhow::Result<Option<tonic::transport::Identity>> {
        use rustls_pki_types::PrivateKeyDer;
        use rustls_pki_types::pem::PemObject;
        let (cert_path, key_path) = match (&self.cert_file, &self.key_file) {
            (None, None) => return Ok(None),
            (Some(cert), Some(key)) => (cert, key),
            _ => anyhow::bail!("tls: cert_file and key_file go together"),
        };
        let cert = read(cert_path, "tls.cert_file")?;
        certificates(&cert, cert_path, "tls.cert_file")?;
        let key = read(key_path, "tls.key_file")?;
        PrivateKeyDer::from_pem_slice(&key)
            .map_err(|e| anyhow::anyhow!("tls.key_file: {} holds no PEM private key ({e})", key_path.display()))?;
        // Whether the key matches the certificate is rustls's to check, when
        // the server or a client is built.
        Ok(Some(tonic::transport::Identity::from_pem(cert, key)))
    }
}

/// A CA file as tonic takes it, checked to hold PEM certificates.
fn certificate_authority(path: &Path, key: &str) -> anyhow::Result<tonic::transport::Certificate> {
    let pem = read(path, key)?;
    certificates(&pem, path, key)?;
    Ok(tonic::transport::Certificate::from_pem(pem))
}

/// Checks that `pem` holds at least one certificate and nothing malformed.
fn certificates(pem: &[u8], path: &Path, key: &str) -> anyhow::Result<()> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let mut count = 0;
    for certificate in CertificateDer::pem_slice_iter(pem) {
        certificate.map_err(|e| anyhow::anyhow!("{key}: {} is not valid PEM ({e})", path.display()))?;
        count += 1;
    }
    anyhow::ensure!(count > 0, "{key}: {} holds no PEM certificate", path.display());
    Ok(())
}

fn read(path: &Path, key: &str) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("{key}: cannot read {}", path.display()))
}
