//! Tokens created and revoked, recorded in the log (`token.created.v1`,
//! `token.revoked.v1` in stream `tokens`): never the token nor its hash.
//!
//! The token file is the truth of who may call; the log records its
//! changes by reconciliation: what the file holds is compared with what
//! the stream says, and the difference is appended. Ids are derived from
//! the token (through its hash, which stays out of the event) and, for a
//! revocation, from the creation's record, so every path that records the
//! same change (`klaxond token` itself, a running server that noticed the
//! file change, the next start) writes it once.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use klaxon_auth::tokens::{TokenEntry, TokenFile};
use klaxon_bus::Bus;
use klaxon_domain::audit::{self, TokenChanged};
use klaxon_log::{EventData, EventKind, ExpectedVersion, Metadata, NewEvent, StreamId, StreamVersion};

/// How often a running server looks at the token file.
pub const POLL: Duration = Duration::from_secs(1);

/// The id of the record of `entry`'s creation.
fn created_id(entry: &TokenEntry) -> uuid::Uuid {
    uuid::Uuid::new_v5(&klaxon_domain::ids::KLAXON_NAMESPACE, format!("token.created:{}", entry.sha256).as_bytes())
}

/// The id of the revocation of the token created by record `created`.
fn revoked_id(created: uuid::Uuid) -> uuid::Uuid {
    uuid::Uuid::new_v5(&klaxon_domain::ids::KLAXON_NAMESPACE, format!("token.revoked:{created}").as_bytes())
}

/// Appends what changed between the stream `tokens` and `file`, as
/// `actor`. Returns how many events were written.
pub async fn reconcile(bus: &Bus, file: &TokenFile, actor: &str) -> anyhow::Result<usize> {
    let stream = StreamId::new(audit::TOKENS_STREAM)?;
    for _ in 0..5 {
        // name -> (id of its creation's record, what it recorded)
        let mut live: BTreeMap<String, (uuid::Uuid, TokenChanged)> = BTreeMap::new();
        let mut version = StreamVersion(0);
        loop {
            let records = bus.read_stream(&stream, StreamVersion(version.0 + 1), 512).await?;
            if records.is_empty() {
                break;
            }
            for record in records {
                version = record.version;
                let change: TokenChanged = record
                    .data
                    .parse()
                    .with_context(|| format!("the token record at position {} does not decode", record.position.0))?;
                if record.kind.as_str() == audit::TOKEN_CREATED {
                    live.insert(change.name.clone(), (record.id, change));
                } else {
                    live.remove(&change.name);
                }
            }
        }
        let mut events = Vec::new();
        let event = |kind: &str, id: uuid::Uuid, change: &TokenChanged| -> anyhow::Result<NewEvent> {
            Ok(NewEvent {
                id,
                kind: EventKind::new(kind)?,
                data: EventData::from_value(change)?,
                metadata: Metadata { actor: Some(actor.to_owned()), ..Metadata::default() },
            })
        };
        let in_file: BTreeMap<&str, &TokenEntry> = file.entries.iter().map(|e| (e.name.as_str(), e)).collect();
        for (name, (created, change)) in &live {
            if in_file.get(name.as_str()).is_none_or(|e| created_id(e) != *created) {
                events.push(event(audit::TOKEN_REVOKED, revoked_id(*created), change)?);
            }
        }
        for entry in &file.entries {
            if live.get(&entry.name).is_none_or(|(created, _)| *created != created_id(entry)) {
                let change =
                    TokenChanged { name: entry.name.clone(), role: entry.role.to_string(), teams: entry.teams.clone() };
                events.push(event(audit::TOKEN_CREATED, created_id(entry), &change)?);
            }
        }
        // One append per change: each is a fact of its own.
        let mut written = 0;
        let mut conflict = false;
        for event in events {
            let expected = if version.0 == 0 { ExpectedVersion::NoStream } else { ExpectedVersion::Exact(version) };
            match bus.append(&stream, expected, vec![event]).await {
                Ok(appended) => {
                    version = StreamVersion(appended.next_version.0 - 1);
                    written += usize::from(!appended.deduplicated);
                }
                Err(klaxon_log::Error::WrongExpectedVersion { .. }) => {
                    conflict = true;
                    break;
                }
                Err(e) => return Err(e.into()),
            }
        }
        if !conflict {
            return Ok(written);
        }
    }
    anyhow::bail!("the token stream kept changing while recording; try again")
}

/// `klaxond token create|revoke`: records the change in the event log of
/// `data_dir` when this command can open it. Says what it did.
pub fn record_now(data_dir: &Path, options: klaxon_log::Options, file: &TokenFile) -> String {
    if !klaxon_log::Log::exists_in(data_dir) {
        return format!("no event log in {}: the change is recorded when klaxond starts there", data_dir.display());
    }
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => return format!("not recorded: {e}"),
    };
    let result = runtime.block_on(async {
        let log = match klaxon_log::Log::open(data_dir, options) {
            Ok(log) => log,
            Err(klaxon_log::Error::Locked { .. }) => {
                return Ok(None);
            }
            Err(e) => {
                return Err(
                    anyhow::Error::new(e).context(format!("cannot open the event log in {}", data_dir.display()))
                );
            }
        };
        let written = reconcile(&Bus::embedded(log.clone()), file, &crate::reload::os_user()).await;
        log.close().await;
        written.map(Some)
    });
    match result {
        Ok(Some(n)) => format!("recorded in the event log ({n} events)"),
        Ok(None) => "the running klaxond holds the event log: it records the change itself".to_owned(),
        Err(e) => format!("not recorded: {e:#}"),
    }
}

/// When the token file last changed, as far as the watch can tell.
type Stamp = Option<(Option<std::time::SystemTime>, u64)>;

fn stamp(path: &Path) -> Stamp {
    std::fs::metadata(path).ok().map(|m| (m.modified().ok(), m.len()))
}

/// A running server's watch of the token file: reconciles at start
/// ([`TokenAudit::start`], before the server serves) and whenever the
/// file changes ([`TokenAudit::run`]). A file that does not read is
/// skipped (the token store keeps its last good tokens too).
pub struct TokenAudit {
    bus: Bus,
    path: PathBuf,
    actor: String,
    seen: Stamp,
}

impl TokenAudit {
    /// Reconciles the file at `path` with the log behind `bus` now.
    pub async fn start(bus: Bus, path: PathBuf) -> TokenAudit {
        let mut audit = TokenAudit { bus, path, actor: crate::reload::os_user(), seen: None };
        audit.check().await;
        audit
    }

    async fn check(&mut self) {
        let now = stamp(&self.path);
        if now == self.seen {
            return;
        }
        match TokenFile::read(&self.path) {
            Ok(file) => match reconcile(&self.bus, &file, &self.actor).await {
                Ok(n) => {
                    if n > 0 {
                        tracing::info!(events = n, path = %self.path.display(), "token changes recorded");
                    }
                    self.seen = now;
                }
                Err(e) => tracing::error!(error = %format!("{e:#}"), "cannot record token changes (will retry)"),
            },
            Err(e) => {
                tracing::warn!(error = %e, "the token file does not read; its changes are not recorded");
                self.seen = now;
            }
        }
    }

    /// Looks at the file every [`POLL`] until `stop`.
    pub async fn run(mut self, stop: tokio_util::sync::CancellationToken) -> anyhow::Result<()> {
        loop {
            tokio::select! {
                () = stop.cancelled() => return Ok(()),
                () = tokio::time::sleep(POLL) => self.check().await,
            }
        }
    }
}
