//! The configuration while the process runs: `klaxond config check`, the
//! reload at SIGHUP, and the audit record of every configuration a process
//! accepts (`config.applied.v1` in stream `config`).
//!
//! A reload rereads the file and validates it as at start. A broken file
//! is refused with its file, key and problem, and the running
//! configuration stays; so is a file that changes a key that cannot
//! change while running (anything outside [`RELOADABLE`]: addresses, the
//! data folder, tokens, …), naming those keys. Otherwise the new values
//! are put into the [`Live`] views the services read once per decision
//! (a paging episode in flight keeps the escalation policy its first event
//! recorded, so an edit never changes pages already under way), and the
//! change is recorded: its diff against the configuration the log
//! last recorded, its hash and who applied it (the process's OS user; the
//! event says `via: reload`). The first start records the configuration
//! too (`via: start`). Ids come from the previous and the new hash, so
//! each process of the distributed topology, reloading the same file,
//! records it once, and a restart with the same file records nothing.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context;
use klaxon_bus::Bus;
use klaxon_channels::Channels;
use klaxon_domain::audit::{self, ConfigApplied};
use klaxon_domain::catalog::ServiceCatalog;
use klaxon_domain::oncall::Schedules;
use klaxon_domain::outbox::{Message, Outbox, Outcome};
use klaxon_domain::paging::{Directory, PagingConfig};
use klaxon_domain::severity::Rules;
use klaxon_domain::text::counted;
use klaxon_log::{EventData, EventKind, ExpectedVersion, Metadata, NewEvent, Position, StreamId};
use klaxon_paging::PagerConfig;
use klaxon_reactor::Live;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::config::{Config, Validated};

/// The top-level keys a reload may change; a change anywhere else is
/// refused (restart to apply it).
///
/// - `severity`: the rules, read by the severity evaluator per decision.
/// - `paging`, `slo`, `escalation_policies`, `customers`, `schedules`: read
///   by paging per decision (an episode in flight keeps the policy its
///   first event recorded; the paging severities paging folds from this
///   reload's `config.applied.v1`, so open incidents start or stop paging
///   at it), by intake (the queue's SLOs, the schedules and
///   teams a manager may pull in) and by the notifier (update cadences).
///   Adding or removing the whole `[paging]` table is refused: whether
///   paging runs at all is decided at start.
/// - `channels`: rebuilt from the file (secrets read again from the
///   environment and files they name) and read at each delivery by paging,
///   the notifier, the trend reports and the shift notices; a delivery
///   under way finishes on the set it began with. A channel that something
///   still names (`[paging] channels`, a policy, the notifier, a report,
///   `[shift_notices]`) cannot be removed or renamed: the file is refused
///   by the same validation as at start, naming the key.
/// - `services`: the service catalog, read per decision by intake (a
///   report and a declaration record the team and tier it gives the
///   incident's service; the runbook shown), the severity evaluator (the
///   tier of a report that recorded none), paging (a new episode's
///   policy), reviews (the team of an incident whose events recorded
///   none, and which `--team` exists) and the public status page (public
///   names), and the scope checks of principals limited to teams
///   ([`Reloader::with_teams`]). An incident keeps the team and tier its events recorded, so
///   a reload files new reports under the new team and tier and leaves
///   past incidents where they are, as a rebuild from the log does
///   (incidents recorded before intake recorded teams follow the catalog
///   in effect, before and after a rebuild alike). A service that
///   something still names (a severity rule, an escalation policy's
///   team, a report's filter, …) cannot be removed or renamed: the file
///   is refused by the same validation as at start, naming the key.
///
/// Everything else stays fixed while the process runs: listen addresses,
/// the data folder, the log, Raft and NATS settings, authentication and
/// tokens (a token scoped to teams is checked against the teams of the
/// catalog in force: a reload moves them with it), the notifier, reports,
/// `[shift_notices]`, limits and snapshots.
pub const RELOADABLE: &[&str] =
    &["severity", "paging", "slo", "escalation_policies", "customers", "schedules", "channels", "services"];

/// A configuration file as the audit sees it.
#[derive(Clone, Debug)]
pub struct Canonical {
    /// SHA-256 (hex) of the canonical form: the TOML parsed and written
    /// as JSON with sorted keys (comments, order and layout do not count).
    pub hash: String,
    /// The configuration as JSON, with anything secret (a channel's `url`,
    /// which for Slack and Teams holds a credential; any `*password*`,
    /// `*secret*`, `*token*` value but `*_env` and `*_file` names) replaced
    /// by `sha256:` and 16 hex digits of its hash, so that a change still
    /// shows.
    pub public: Value,
    /// The file, as given.
    pub file: String,
}

impl Canonical {
    /// The canonical form of `text`, read from `path`.
    pub fn of(path: &Path, text: &str) -> anyhow::Result<Canonical> {
        let value: toml::Table =
            toml::from_str(text).map_err(|e| anyhow::anyhow!("{}: {}", path.display(), e.to_string().trim_end()))?;
        let json = to_json(&toml::Value::Table(value));
        let hash = hex(&serde_json::to_vec(&json)?);
        Ok(Canonical { hash, public: redact("", json), file: path.display().to_string() })
    }
}

fn hex(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

/// TOML as JSON, tables with sorted keys, dates as their TOML text.
fn to_json(value: &toml::Value) -> Value {
    match value {
        toml::Value::String(s) => Value::String(s.clone()),
        toml::Value::Integer(i) => Value::from(*i),
        toml::Value::Float(f) => Value::from(*f),
        toml::Value::Boolean(b) => Value::Bool(*b),
        toml::Value::Datetime(d) => Value::String(d.to_string()),
        toml::Value::Array(items) => Value::Array(items.iter().map(to_json).collect()),
        toml::Value::Table(table) => {
            let sorted: std::collections::BTreeMap<&String, &toml::Value> = table.iter().collect();
            Value::Object(sorted.into_iter().map(|(k, v)| (k.clone(), to_json(v))).collect())
        }
    }
}

fn is_secret(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    if key.ends_with("_env") || key.ends_with("_file") {
        return false;
    }
    key == "url" || ["password", "secret", "token"].iter().any(|s| key.contains(s))
}

fn redact(key: &str, value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(map.into_iter().map(|(k, v)| (k.clone(), redact(&k, v))).collect()),
        Value::Array(items) => Value::Array(items.into_iter().map(|v| redact(key, v)).collect()),
        Value::String(s) if is_secret(key) => Value::String(format!("sha256:{}", &hex(s.as_bytes())[..16])),
        other => other,
    }
}

/// `klaxond config check FILE`: validates it as a start would, applies
/// nothing, and says what it holds. The error names the file, the key and
/// the problem.
pub fn check(path: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let (config, validated) = Config::load(Some(path))?;
    let canonical = Canonical::of(path, &text)?;
    let policies = validated.paging.as_ref().map_or(0, |p| p.policies().count());
    let n = |count: usize| count as u64;
    let holds = [
        counted(n(validated.catalog.len()), "service"),
        counted(n(validated.rules.rules().len()), "severity rule"),
        counted(n(validated.schedules.len()), "schedule"),
        if policies == 1 { "1 escalation policy".to_owned() } else { format!("{policies} escalation policies") },
        counted(n(config.channels.len()), "channel"),
    ];
    Ok(format!("{}: ok, sha256 {}: {}", path.display(), canonical.hash, holds.join(", ")))
}

/// Who applies a configuration this process reads: its OS user (`$USER`,
/// else the name `/etc/passwd` gives its uid, else `uid-N`).
pub fn os_user() -> String {
    for var in ["USER", "LOGNAME"] {
        if let Ok(user) = std::env::var(var) {
            if !user.is_empty() && !user.chars().any(char::is_control) {
                return user;
            }
        }
    }
    let uid = std::fs::read_to_string("/proc/self/status").ok().and_then(|s| {
        s.lines().find_map(|l| l.strip_prefix("Uid:").and_then(|r| r.split_whitespace().next().map(str::to_owned)))
    });
    let Some(uid) = uid else { return "uid-unknown".to_owned() };
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    passwd
        .lines()
        .find_map(|l| {
            let mut fields = l.split(':');
            let name = fields.next()?;
            (fields.nth(1)? == uid && !name.is_empty()).then(|| name.to_owned())
        })
        .unwrap_or_else(|| format!("uid-{uid}"))
}

/// Appends `config.applied.v1` for `canonical` unless it is the
/// configuration the log recorded last. Returns where, when written.
pub async fn record(bus: &Bus, canonical: &Canonical, via: &str, actor: &str) -> anyhow::Result<Option<Position>> {
    let stream = StreamId::new(audit::CONFIG_STREAM)?;
    // Another process may record the same change at the same moment: the
    // exact version makes one of us lose, then find its hash recorded.
    for _ in 0..5 {
        let version = bus.stream_version(&stream).await?;
        let last = match version.0 {
            0 => None,
            _ => match bus.read_stream(&stream, version, 1).await?.first() {
                Some(record) => Some(record.data.parse::<ConfigApplied>().with_context(|| {
                    format!("the configuration record at position {} does not decode", record.position.0)
                })?),
                None => None,
            },
        };
        if last.as_ref().is_some_and(|l| l.hash == canonical.hash) {
            return Ok(None);
        }
        let previous = last.as_ref().map(|l| l.hash.clone());
        let changes = last.as_ref().map(|l| audit::diff(&l.config, &canonical.public)).unwrap_or_default();
        let applied = ConfigApplied {
            hash: canonical.hash.clone(),
            previous: previous.clone(),
            file: canonical.file.clone(),
            via: via.to_owned(),
            changes,
            config: canonical.public.clone(),
        };
        let event = NewEvent {
            id: audit::config_event_id(previous.as_deref(), &canonical.hash),
            kind: EventKind::new(audit::CONFIG_APPLIED)?,
            data: EventData::from_value(&applied)?,
            metadata: Metadata { actor: Some(actor.to_owned()), ..Metadata::default() },
        };
        let expected = if version.0 == 0 { ExpectedVersion::NoStream } else { ExpectedVersion::Exact(version) };
        match bus.append(&stream, expected, vec![event]).await {
            Ok(appended) => return Ok((!appended.deduplicated).then_some(appended.first)),
            Err(klaxon_log::Error::WrongExpectedVersion { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    anyhow::bail!("the configuration stream kept changing while recording; try again")
}

/// The parts of the configuration services read live.
#[derive(Clone)]
pub struct LiveConfig {
    /// The severity rules.
    pub rules: Live<Rules>,
    /// Paging's configuration (policies, SLOs, schedules, …), when the
    /// configuration has a `[paging]` table.
    pub pager: Option<Live<PagerConfig>>,
    /// The paging configuration alone, for intake's queue and the
    /// notifier's update cadences.
    pub paging: Live<Option<Arc<PagingConfig>>>,
    /// The schedules and teams managers may pull in (intake).
    pub directory: Live<Directory>,
    /// The configured schedules (the shift notices).
    pub schedules: Live<Schedules>,
    /// The outbound channels (the notifier, the trend reports and the
    /// shift notices deliver through [`LiveConfig::outbox`]; paging reads
    /// its own `pager` view's).
    pub channels: Live<Channels>,
    /// The service catalog (intake, the severity evaluator, reviews, the
    /// public status page; paging reads its own `pager` view's).
    pub catalog: Live<ServiceCatalog>,
}

/// The channels in force at each delivery: a delivery takes the set once,
/// when it begins, and finishes on it (retries included) even if a reload
/// replaces the set meanwhile; the next delivery takes the new set.
struct LiveOutbox(Live<Channels>);

impl Outbox for LiveOutbox {
    fn deliver<'a>(
        &'a self,
        channel: &'a str,
        message: &'a Message,
    ) -> std::pin::Pin<Box<dyn Future<Output = Outcome> + Send + 'a>> {
        let channels = self.0.get();
        Box::pin(async move { Outbox::deliver(&*channels, channel, message).await })
    }
}

impl LiveConfig {
    /// The views of `validated`.
    pub fn new(validated: &Validated) -> LiveConfig {
        LiveConfig {
            rules: Live::new(validated.rules.clone()),
            pager: pager_config(validated).map(|c| Live::new(Arc::new(c))),
            paging: Live::new(Arc::new(validated.paging.clone())),
            directory: Live::new(Arc::new(directory(validated))),
            schedules: Live::new(validated.schedules.clone()),
            channels: Live::new(validated.channels.clone()),
            catalog: Live::new(validated.catalog.clone()),
        }
    }

    /// The channels as an outbox that follows reloads.
    pub fn outbox(&self) -> Arc<dyn Outbox> {
        Arc::new(LiveOutbox(self.channels.clone()))
    }

    fn set(&self, validated: &Validated) {
        self.rules.set(validated.rules.clone());
        if let (Some(live), Some(config)) = (&self.pager, pager_config(validated)) {
            live.set(Arc::new(config));
        }
        self.paging.set(Arc::new(validated.paging.clone()));
        self.directory.set(Arc::new(directory(validated)));
        self.schedules.set(validated.schedules.clone());
        self.channels.set(validated.channels.clone());
        self.catalog.set(validated.catalog.clone());
    }
}

/// What paging runs with, when the configuration has a `[paging]` table.
pub fn pager_config(validated: &Validated) -> Option<PagerConfig> {
    Some(PagerConfig {
        paging: validated.paging.clone()?,
        catalog: validated.catalog.clone(),
        schedules: validated.schedules.clone(),
        channels: validated.channels.clone(),
    })
}

/// The schedules and teams managers may pull in (none without paging).
fn directory(validated: &Validated) -> Directory {
    match &validated.paging {
        Some(paging) => Directory::new(paging, &validated.catalog, &validated.schedules),
        None => Directory::default(),
    }
}

/// Reloads seen, by result, for `klaxon_config_reloads_total{result}`.
#[derive(Debug, Default)]
pub struct ReloadCounts {
    /// Applied (recorded when new).
    pub applied: AtomicU64,
    /// Refused: broken, or changing a key that cannot change while running.
    pub refused: AtomicU64,
}

/// The reloader of one process.
pub struct Reloader {
    path: PathBuf,
    running: Canonical,
    live: LiveConfig,
    bus: Bus,
    counts: Arc<ReloadCounts>,
    hangup: tokio::signal::unix::Signal,
    teams: Option<klaxon_auth::SharedTeams>,
}

impl Reloader {
    /// Reloads `path` (read at start as `text`) into `live`, recording in
    /// `bus`.
    pub fn new(path: &Path, live: LiveConfig, bus: Bus, counts: Arc<ReloadCounts>) -> anyhow::Result<Reloader> {
        use tokio::signal::unix::{SignalKind, signal};
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        // Listening from now on, before the process serves: a SIGHUP right
        // after the start is a reload, not lost.
        let hangup = signal(SignalKind::hangup()).context("cannot install the SIGHUP handler")?;
        let running = Canonical::of(path, &text)?;
        Ok(Reloader { path: path.to_path_buf(), running, live, bus, counts, hangup, teams: None })
    }

    /// Also replaces the teams the process's authentication checks scoped
    /// principals with (from the reloaded service catalog).
    pub fn with_teams(self, teams: klaxon_auth::SharedTeams) -> Reloader {
        Reloader { teams: Some(teams), ..self }
    }

    /// Records the configuration the process starts with (before it
    /// serves, so that the record comes first); a failure is logged, and
    /// the configuration stays applied.
    pub async fn record_start(&self) {
        match record(&self.bus, &self.running, "start", &os_user()).await {
            Ok(Some(at)) => tracing::info!(hash = %self.running.hash, position = at.0, "configuration recorded"),
            Ok(None) => {}
            Err(e) => tracing::error!(error = %format!("{e:#}"), "cannot record the configuration (it stays applied)"),
        }
    }

    /// Reloads at every SIGHUP until `stop`.
    pub async fn run(mut self, stop: tokio_util::sync::CancellationToken) -> anyhow::Result<()> {
        let user = os_user();
        loop {
            tokio::select! {
                () = stop.cancelled() => return Ok(()),
                got = self.hangup.recv() => if got.is_none() { return Ok(()) },
            }
            match self.reload(&user).await {
                Ok(message) => {
                    self.counts.applied.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(file = %self.path.display(), "configuration reloaded: {message}");
                }
                Err(e) => {
                    self.counts.refused.fetch_add(1, Ordering::Relaxed);
                    tracing::error!("configuration reload refused, the running configuration stays: {e:#}");
                }
            }
        }
    }

    async fn reload(&mut self, user: &str) -> anyhow::Result<String> {
        let text =
            std::fs::read_to_string(&self.path).with_context(|| format!("cannot read {}", self.path.display()))?;
        let (_, validated) = Config::load(Some(&self.path))?;
        let candidate = Canonical::of(&self.path, &text)?;
        let fixed: Vec<String> = audit::diff(&self.running.public, &candidate.public)
            .into_iter()
            .map(|c| c.key)
            .filter(|key| !RELOADABLE.contains(&key.split(['.', '[']).next().unwrap_or_default()))
            .collect();
        if !fixed.is_empty() {
            anyhow::bail!(
                "{}: {} cannot change while klaxond runs (only {} can); restart to apply",
                self.path.display(),
                fixed.join(", "),
                RELOADABLE.join(", ")
            );
        }
        let had_paging = self.running.public.get("paging").is_some();
        if had_paging != validated.paging.is_some() {
            let change = if had_paging { "removed" } else { "added" };
            anyhow::bail!(
                "{}: paging cannot be {change} while klaxond runs (whether paging runs is decided at start); restart to apply",
                self.path.display()
            );
        }
        self.live.set(&validated);
        if let Some(teams) = &self.teams {
            teams.set(crate::config::teams(&validated.catalog));
        }
        let recorded = record(&self.bus, &candidate, "reload", user).await;
        let hash = candidate.hash.clone();
        self.running = candidate;
        match recorded {
            Ok(Some(at)) => Ok(format!("sha256 {hash}, recorded at position {}", at.0)),
            Ok(None) => Ok(format!("sha256 {hash}, already recorded")),
            Err(e) => Ok(format!("sha256 {hash}, applied but not recorded: {e:#}")),
        }
    }
}
