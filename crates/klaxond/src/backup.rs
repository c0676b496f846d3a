//! `klaxond backup`: a copy of a running log server's log, taken without
//! stopping it.
//!
//! The log is append-only, so every prefix of it is a consistent state.
//! The backup asks the server for its durable head, then reads every record
//! up to it over the log server's API (as a service does, with a token of
//! role `service`) and writes them into the destination folder with
//! [`Log::import`]: verbatim, at their positions, each checked (checksum,
//! consecutive positions, stream versions) before a batch is written, and
//! each batch atomic and durable. So the folder always holds a prefix of the
//! log, also after a crash or kill of the backup.
//!
//! Run again on the same folder, it adds what was written since: it starts
//! by importing again the folder's last record, which must be the server's
//! record at that position byte for byte; a folder that holds another log is
//! refused before anything is written.

use std::path::Path;

use anyhow::Context as _;
use klaxon_bus::RemoteLog;
use klaxon_bus::source::EventLog as _;
use klaxon_log::{Log, Options, Position};

use crate::config::Config;

/// Records read and written per batch.
const BATCH: usize = 1_000;

/// What one backup did.
#[derive(Debug, PartialEq, Eq)]
pub struct Copied {
    /// The last position the folder holds: the server's head when the
    /// backup began.
    pub head: Position,
    /// Records written by this run.
    pub new: u64,
}

/// Copies the log of the log server at `server` into `dest` (created when
/// missing) up to the server's durable head at the start, and says so on
/// stdout.
///
/// `klaxond up` serves no log API (its services use the log in process),
/// so this is for the distributed topology and log groups.
pub async fn run(config: &Config, server: &str, dest: &Path) -> anyhow::Result<()> {
    let remote = RemoteLog::connect_lazy_tls(server, config.tls.client()?, config.service_token()?.as_deref())
        .with_context(|| format!("log server {server:?}"))?
        // An operator's command: fail within seconds, not after a service's patience.
        .with_retry_for(std::time::Duration::from_secs(5));
    // Asked first, so that an unreachable or refusing server leaves no folder.
    let target = remote.head().await.with_context(|| {
        format!(
            "cannot ask {server} for its head (the log server of the distributed topology: `klaxond up` serves \
             no log API; stop it and copy its folder, docs/operations.md \"Backup\")"
        )
    })?;
    let log = Log::open(dest, Options::default())
        .with_context(|| format!("cannot open the backup folder {}", dest.display()))?;
    let copied = copy(&remote, &log, target, server, dest).await;
    log.close().await;
    let copied = copied?;
    println!(
        "backed up positions 1 to {} of {server} in {} ({} new); check it with `klaxon-logtool verify {}`",
        copied.head,
        dest.display(),
        copied.new,
        dest.display()
    );
    Ok(())
}

async fn copy(remote: &RemoteLog, log: &Log, target: Position, server: &str, dest: &Path) -> anyhow::Result<Copied> {
    let held = log.head();
    anyhow::ensure!(
        held <= target,
        "{} holds positions up to {held}, beyond {server}'s head {target}: it is not a backup of this log; back up \
         into a new folder",
        dest.display()
    );
    // From the folder's last record: importing it again checks that the
    // folder holds this server's log.
    let mut next = held.0.max(1);
    let mut new = 0;
    while next <= target.0 {
        let mut records = remote
            .read_all(Position(next), BATCH)
            .await
            .with_context(|| format!("cannot read {server} from position {next}"))?;
        records.retain(|r| r.position <= target);
        let Some(last) = records.last().map(|r| r.position) else {
            anyhow::bail!("{server} has no record at position {next}, below its head {target}");
        };
        let first = records[0].position;
        log.import(records, Vec::new(), None).await.map_err(|e| match e {
            klaxon_log::Error::Corrupt { position, .. } if position <= held => anyhow::anyhow!(
                "{} holds another log than {server}: its record at position {position} differs from the \
                 server's; back up into a new folder",
                dest.display()
            ),
            e => anyhow::Error::new(e)
                .context(format!("cannot write positions {first} to {last} into {}", dest.display())),
        })?;
        new += last.0.saturating_sub(held.0.max(first.0.saturating_sub(1)));
        next = last.0 + 1;
    }
    Ok(Copied { head: log.head(), new })
}
