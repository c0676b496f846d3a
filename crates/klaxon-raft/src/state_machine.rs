//! The state machine: the event log itself.
//!
//! Applying a batch of committed entries is one [`Log::apply`]: every
//! append and checkpoint of the batch plus the applied mark (last applied
//! log id and membership), in one atomic sled batch, one flush and one
//! `fdatasync`. So after any crash the mark says exactly which entries the
//! records hold, and no entry is ever applied twice by a node (which would
//! not be harmless: see `docs/replication.md`).
//!
//! Snapshots are copies of the log (see [`crate::snapshot`]). Installing
//! one imports the records this node lacks, then writes the mark; if that
//! is interrupted, [`StateMachine::open`] finishes it from the snapshot,
//! which was made the current one before the import began.

use std::io;
use std::path::PathBuf;

use klaxon_log::{Log, Mark, Position};
use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{EntryPayload, ErrorSubject, ErrorVerb, OptionalSend, RaftSnapshotBuilder, SnapshotMeta};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::snapshot::{Header, SnapshotDir, SnapshotFile, SnapshotReader};
use crate::types::{Entry, LogId, Node, NodeId, Reply, StorageError, StoredMembership, TypeConfig, storage_error};

/// The name of the applied mark in the event log.
pub const APPLIED_MARK: &str = "raft-applied";
/// Records imported per atomic batch when installing a snapshot.
const IMPORT_RECORDS_MAX: usize = 2048;

/// What the applied mark holds.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Applied {
    last: Option<LogId>,
    membership: StoredMembership,
}

/// Snapshots this node installed from the leader (rather than built), for
/// tests and status: their last Raft index.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Installed {
    /// How many snapshots were installed since start.
    pub count: u64,
    /// The last installed snapshot's last index.
    pub last_index: Option<u64>,
}

/// The event log as openraft's state machine.
pub struct StateMachine {
    log: Log,
    applied: Applied,
    snapshots: SnapshotDir,
    /// Builds so far, to make snapshot ids unique.
    builds: u64,
    installed: watch::Sender<Installed>,
}

impl StateMachine {
    /// Opens the state machine over `log`, with snapshots in `dir`. Finishes
    /// a snapshot installation a crash interrupted.
    pub async fn open(log: Log, dir: PathBuf) -> io::Result<StateMachine> {
        let snapshots = SnapshotDir::open(dir)?;
        let applied = match log.load_mark(APPLIED_MARK).map_err(io::Error::other)? {
            Some(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("the applied mark: {e}")))?,
            None => Applied::default(),
        };
        let mut machine =
            StateMachine { log, applied, snapshots, builds: 0, installed: watch::channel(Installed::default()).0 };
        if let Some(path) = machine.snapshots.current()? {
            let header = crate::snapshot::check(&path)?;
            if header.meta.last_log_id > machine.applied.last {
                tracing::warn!(
                    snapshot = %path.display(),
                    "finishing the installation of a snapshot that a crash interrupted"
                );
                machine.import(path).await?;
            }
        }
        tracing::info!(applied = ?machine.applied.last, head = machine.log.head().0, "raft state machine open");
        Ok(machine)
    }

    /// Snapshots installed from the leader since start, as they happen.
    pub fn installed(&self) -> watch::Receiver<Installed> {
        self.installed.subscribe()
    }

    /// Imports the records of the checked snapshot at `path` that this node
    /// lacks, then its checkpoints and the mark.
    async fn import(&mut self, path: PathBuf) -> io::Result<()> {
        let mut reader = SnapshotReader::open(&path)?;
        let header = reader.header.clone();
        let applied = Applied { last: header.meta.last_log_id, membership: header.meta.last_membership.clone() };
        // Skip what is certainly here already, but still compare the last
        // local record: the prefixes must be the same.
        let local = self.log.head().0.min(header.head);
        let mut skipped = 0;
        while skipped + 1 < local {
            let step = ((local - 1 - skipped) as usize).min(IMPORT_RECORDS_MAX);
            let (back, records) = tokio::task::spawn_blocking(move || {
                let records = reader.next_records(step);
                (reader, records)
            })
            .await
            .map_err(io::Error::other)?;
            reader = back;
            skipped += records?.len() as u64;
        }
        loop {
            let (back, records) = tokio::task::spawn_blocking(move || {
                let records = reader.next_records(IMPORT_RECORDS_MAX);
                (reader, records)
            })
            .await
            .map_err(io::Error::other)?;
            reader = back;
            let records = records?;
            let last = records.last().is_none_or(|r| r.position.0 >= header.head);
            let (checkpoints, mark) = if last {
                let checkpoints = header.checkpoints.iter().map(|(n, p)| (n.clone(), Position(*p))).collect();
                (checkpoints, Some(mark(&applied)?))
            } else {
                (Vec::new(), None)
            };
            self.log.import(records, checkpoints, mark).await.map_err(io::Error::other)?;
            if last {
                break;
            }
        }
        self.applied = applied;
        Ok(())
    }
}

fn mark(applied: &Applied) -> io::Result<Mark> {
    Ok(Mark { name: APPLIED_MARK.into(), value: serde_json::to_vec(applied).map_err(io::Error::other)? })
}

/// Builds a snapshot of the log as it was when the builder was made.
pub struct Builder {
    log: Log,
    snapshots: SnapshotDir,
    header: Header,
}

impl RaftSnapshotBuilder<TypeConfig> for Builder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let (log, snapshots, header) = (self.log.clone(), self.snapshots.clone(), self.header.clone());
        let signature = header.meta.signature();
        let error = |e: io::Error| storage_error(ErrorSubject::Snapshot(Some(signature.clone())), ErrorVerb::Write, &e);
        let path = tokio::task::spawn_blocking(move || -> io::Result<PathBuf> {
            let tmp = snapshots.write(&log, &header)?;
            let path = snapshots.final_path(&header.meta);
            snapshots.install(&tmp, &path)?;
            Ok(path)
        })
        .await
        .map_err(|e| error(io::Error::other(e)))?
        .map_err(error)?;
        tracing::info!(snapshot = %path.display(), head = self.header.head, "snapshot built");
        let file = SnapshotFile::open(path).await.map_err(error)?;
        Ok(Snapshot { meta: self.header.meta.clone(), snapshot: Box::new(file) })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = Builder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        Ok((self.applied.last, self.applied.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Reply>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut applied = self.applied.clone();
        let mut writes = Vec::new();
        // Per entry: whether it was a batch, and per write of it the index
        // of its write, or its reply when it has none.
        let mut slots: Vec<(bool, Vec<Result<usize, Reply>>)> = Vec::new();
        for entry in entries {
            applied.last = Some(entry.log_id);
            match entry.payload {
                EntryPayload::Blank => slots.push((false, vec![Err(Reply::Nothing)])),
                EntryPayload::Membership(membership) => {
                    applied.membership = StoredMembership::new(Some(entry.log_id), membership);
                    slots.push((false, vec![Err(Reply::Nothing)]));
                }
                EntryPayload::Normal(command) => {
                    let batch = matches!(command, crate::types::Command::Batch(_));
                    let mut slot = Vec::new();
                    for write in command.into_writes() {
                        match write {
                            Ok(write) => {
                                slot.push(Ok(writes.len()));
                                writes.push(write);
                            }
                            Err(e) => slot.push(Err(Reply::from_outcome(klaxon_log::Outcome::Refused(e)))),
                        }
                    }
                    slots.push((batch, slot));
                }
            }
        }
        let error = |e: &dyn std::fmt::Display| {
            storage_error(ErrorSubject::StateMachine, ErrorVerb::Write, &io::Error::other(e.to_string()))
        };
        let mark = mark(&applied).map_err(|e| error(&e))?;
        let outcomes = self.log.apply(writes, Some(mark)).await.map_err(|e| error(&e))?;
        let mut outcomes: Vec<Option<Reply>> = outcomes.into_iter().map(|o| Some(Reply::from_outcome(o))).collect();
        self.applied = applied;
        let mut reply = |slot: Result<usize, Reply>| match slot {
            Ok(i) => outcomes[i].take().expect("one outcome per write"),
            Err(reply) => reply,
        };
        Ok(slots
            .into_iter()
            .map(|(batch, slot)| {
                if batch {
                    Reply::Batch(slot.into_iter().map(&mut reply).collect())
                } else {
                    slot.into_iter().map(&mut reply).next().unwrap_or(Reply::Nothing)
                }
            })
            .collect())
    }

    async fn get_snapshot_builder(&mut self) -> Builder {
        self.builds += 1;
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let last = self.applied.last;
        let snapshot_id = match last {
            Some(l) => format!("{}x{}x{}x{nanos}", l.leader_id.term, l.index, self.builds),
            None => format!("0x0x{}x{nanos}", self.builds),
        };
        let checkpoints = self
            .log
            .checkpoints()
            .unwrap_or_else(|e| {
                tracing::error!(error = %e, "cannot list checkpoints for a snapshot; it holds none");
                Vec::new()
            })
            .into_iter()
            .map(|(n, p)| (n, p.0))
            .collect();
        let header = Header {
            meta: SnapshotMeta { last_log_id: last, last_membership: self.applied.membership.clone(), snapshot_id },
            head: self.log.head().0,
            checkpoints,
        };
        Builder { log: self.log.clone(), snapshots: self.snapshots.clone(), header }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<SnapshotFile>, StorageError> {
        let path = self.snapshots.incoming();
        SnapshotFile::create(path)
            .await
            .map(Box::new)
            .map_err(|e| storage_error(ErrorSubject::Snapshot(None), ErrorVerb::Write, &e))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, Node>,
        snapshot: Box<SnapshotFile>,
    ) -> Result<(), StorageError> {
        let error = |e: io::Error| storage_error(ErrorSubject::Snapshot(Some(meta.signature())), ErrorVerb::Write, &e);
        let received = snapshot.finish().await.map_err(error)?;
        let snapshots = self.snapshots.clone();
        let target = snapshots.final_path(meta);
        let path = tokio::task::spawn_blocking(move || -> io::Result<PathBuf> {
            let header = crate::snapshot::check(&received)?;
            if header.meta.last_log_id.is_none() {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "a snapshot without a last log id"));
            }
            snapshots.install(&received, &target)?;
            Ok(target)
        })
        .await
        .map_err(|e| error(io::Error::other(e)))?
        .map_err(error)?;
        self.import(path.clone()).await.map_err(error)?;
        let index = meta.last_log_id.map(|l| l.index);
        self.installed.send_modify(|i| {
            i.count += 1;
            i.last_index = index;
        });
        tracing::info!(snapshot = %path.display(), head = self.log.head().0, "snapshot installed");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let error = |e: io::Error| storage_error(ErrorSubject::Snapshot(None), ErrorVerb::Read, &e);
        let Some(path) = self.snapshots.current().map_err(error)? else { return Ok(None) };
        let header = {
            let path = path.clone();
            tokio::task::spawn_blocking(move || SnapshotReader::open(&path).map(|r| r.header))
                .await
                .map_err(|e| error(io::Error::other(e)))?
                .map_err(error)?
        };
        let file = SnapshotFile::open(path).await.map_err(error)?;
        Ok(Some(Snapshot { meta: header.meta, snapshot: Box::new(file) }))
    }
}
