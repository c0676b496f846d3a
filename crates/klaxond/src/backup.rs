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
use std::time::Duration;

use anyhow::Context as _;
use klaxon_bus::RemoteLog;
use klaxon_bus::source::EventLog as _;
use klaxon_log::{Log, Options, Position};

use crate::config::Config;

/// Records read and written per batch.
const BATCH: usize = 1_000;
/// How long the backup waits for the node it reads from to hold a record
/// below the head it began with: after a log group's failover the node
/// answering may still be applying what was committed.
const CATCH_UP_WAIT: Duration = Duration::from_secs(30);
/// How often it asks again meanwhile.
const CATCH_UP_POLL: Duration = Duration::from_millis(200);

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
    let copied = copy(&remote, &log, target, server, dest, CATCH_UP_WAIT).await;
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

/// Copies `remote`'s records from the folder's last one up to `target`,
/// waiting up to `patience` for a node that lacks a record below `target`.
async fn copy(
    remote: &RemoteLog,
    log: &Log,
    target: Position,
    server: &str,
    dest: &Path,
    patience: Duration,
) -> anyhow::Result<Copied> {
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
    // Since when the node answering has lacked record `next`.
    let mut lacking: Option<tokio::time::Instant> = None;
    while next <= target.0 {
        let mut records = remote
            .read_all(Position(next), BATCH)
            .await
            .with_context(|| format!("cannot read {server} from position {next}"))?;
        records.retain(|r| r.position <= target);
        let Some(last) = records.last().map(|r| r.position) else {
            let since = *lacking.get_or_insert_with(|| {
                tracing::info!(
                    node = %remote.current_address(),
                    position = next,
                    head = %target,
                    "the node answering lacks a record below the head; waiting for it to catch up"
                );
                tokio::time::Instant::now()
            });
            if since.elapsed() >= patience {
                let holds = match log.head() {
                    Position::ZERO => "holds no record".to_owned(),
                    head => format!("holds positions 1 to {head}"),
                };
                anyhow::bail!(
                    "{server} has no record at position {next}, below the head {target} the backup began with, after \
                     waiting {patience:?} for {} to catch up; {} {holds}: run the backup again",
                    remote.current_address(),
                    dest.display(),
                );
            }
            tokio::time::sleep(CATCH_UP_POLL).await;
            continue;
        };
        lacking = None;
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

#[cfg(test)]
mod tests {
    use klaxon_bus::server::LogServer;
    use klaxon_log::{EventData, EventKind, ExpectedVersion, Metadata, NewEvent, StreamId};
    use tokio_util::sync::CancellationToken;

    use super::*;

    async fn append(log: &Log, stream: &StreamId, from: u64, count: u64) {
        let events = (0..count)
            .map(|n| NewEvent {
                id: uuid::Uuid::new_v4(),
                kind: EventKind::new("test.appended.v1").unwrap(),
                data: EventData::from_value(&serde_json::json!({ "n": from + n })).unwrap(),
                metadata: Metadata::default(),
            })
            .collect();
        let expected =
            if from == 0 { ExpectedVersion::NoStream } else { ExpectedVersion::Exact(klaxon_log::StreamVersion(from)) };
        log.append(stream, expected, events).await.unwrap();
    }

    /// A node behind the head the backup began with (a log group's node
    /// answering after a failover, still applying) is waited for, within
    /// the patience; past it the error says where the folder stands.
    #[tokio::test]
    async fn a_node_behind_the_head_is_waited_for() {
        let dir = tempfile::tempdir().unwrap();
        let served = Log::open(dir.path().join("server"), Options::default()).unwrap();
        let stream = StreamId::new("backup-test").unwrap();
        append(&served, &stream, 0, 100).await;
        let shutdown = CancellationToken::new();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let service = LogServer::new(served.clone(), shutdown.clone()).into_server();
        let serving = tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        let remote = RemoteLog::connect_lazy(&address).unwrap().with_retry_for(Duration::from_secs(5));
        let dest_dir = dir.path().join("backup");
        let dest = Log::open(&dest_dir, Options::default()).unwrap();

        // The head was 150 on the node that answered first; this one has
        // 100 and catches up 300 ms later.
        let later = served.clone();
        let stream_later = stream.clone();
        let catching_up = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            append(&later, &stream_later, 100, 50).await;
        });
        let copied = copy(&remote, &dest, Position(150), &address, &dest_dir, Duration::from_secs(30)).await.unwrap();
        catching_up.await.unwrap();
        assert_eq!(copied, Copied { head: Position(150), new: 150 });

        // Nothing comes: refused after the patience, naming the position,
        // the head and what the folder holds.
        let error = copy(&remote, &dest, Position(160), &address, &dest_dir, Duration::from_millis(400))
            .await
            .unwrap_err()
            .to_string();
        assert!(error.contains("no record at position 151, below the head 160"), "{error}");
        assert!(error.contains("holds positions 1 to 150: run the backup again"), "{error}");
        assert_eq!(dest.head(), Position(150), "the folder keeps what it copied");

        dest.close().await;
        shutdown.cancel();
        serving.abort();
        served.close().await;
    }
}
