//! One node of a log group: openraft wired to Klaxon's storage, state
//! machine and network, and what the log server and the operator ask of it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use futures_util::future::BoxFuture;
use klaxon_bus::server::{WriteError, Writes};
use klaxon_log::{Appended, ExpectedVersion, Log, NewEvent, Position, StreamId};
use openraft::error::{ClientWriteError, RaftError};
use openraft::{ChangeMembers, ServerState, SnapshotPolicy};
use serde::{Deserialize, Serialize};
use tokio::sync::{Semaphore, mpsc, oneshot, watch};

use crate::Error;
use crate::log_store::LogStore;
use crate::network::Network;
use crate::state_machine::{Installed, StateMachine};
use crate::types::{Command, LogId, Node, NodeId, Raft, Reply};

/// `[log_group]`: this node, the group it starts with, and its timing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Options {
    /// This node's id (not 0); `klaxond serve log --node-id` overrides it,
    /// so that one file can serve every node.
    pub node_id: NodeId,
    /// The group it starts with. A node listed here whose Raft state is
    /// empty initializes the group with this list (the same everywhere);
    /// a node not listed waits to be added (`klaxond log-group add`).
    pub nodes: Vec<NodeOptions>,
    /// How often the leader sends heartbeats.
    pub heartbeat_interval_ms: u64,
    /// A follower that hears nothing from its leader for
    /// `election_timeout_max_ms` (openraft's leader lease) plus a random time
    /// in [min, max] starts an election: 0.9 to 1.2 s with the defaults.
    pub election_timeout_min_ms: u64,
    /// See `election_timeout_min_ms`.
    pub election_timeout_max_ms: u64,
    /// How long the leader waits for an append to be committed and applied
    /// before answering `UNAVAILABLE` (the client then retries; ids make
    /// that safe).
    pub append_timeout_ms: u64,
    /// A snapshot is taken after this many applied entries.
    pub snapshot_every_entries: u64,
    /// Entries kept in Raft's log behind a snapshot, for followers only a
    /// little behind.
    pub purge_keep_entries: u64,
}

/// One node of the group as the configuration names it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeOptions {
    /// Its id (not 0).
    pub id: NodeId,
    /// Where clients and the other nodes reach it (`host:port`).
    pub address: String,
    /// Where *this* node sends it Raft messages, when that differs from
    /// `address` (a proxy, another interface); local to this node.
    #[serde(default)]
    pub raft_address: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            node_id: 0,
            nodes: Vec::new(),
            heartbeat_interval_ms: 100,
            election_timeout_min_ms: 300,
            election_timeout_max_ms: 600,
            append_timeout_ms: 5000,
            snapshot_every_entries: 20_000,
            purge_keep_entries: 1000,
        }
    }
}

impl Options {
    /// Checks the options; the error names the key.
    pub fn validate(&self) -> Result<(), String> {
        if self.node_id == 0 {
            return Err("log_group.node_id: must be set (or --node-id given), and not 0".into());
        }
        self.validate_shared()
    }

    /// Checks everything but `node_id`: what a configuration file shared by
    /// every node (each given its id on the command line) must get right.
    pub fn validate_shared(&self) -> Result<(), String> {
        let mut ids = BTreeSet::new();
        for (i, node) in self.nodes.iter().enumerate() {
            if node.id == 0 || !ids.insert(node.id) {
                return Err(format!("log_group.nodes[{i}].id: {} is 0 or listed twice", node.id));
            }
            for (key, address) in [("address", Some(&node.address)), ("raft_address", node.raft_address.as_ref())] {
                let Some(address) = address else { continue };
                let port = address.rsplit_once(':').and_then(|(host, port)| (!host.is_empty()).then_some(port));
                if port.and_then(|p| p.parse::<u16>().ok()).is_none() {
                    return Err(format!("log_group.nodes[{i}].{key}: {address:?} is not host:port"));
                }
            }
        }
        if !(self.heartbeat_interval_ms > 0
            && self.heartbeat_interval_ms < self.election_timeout_min_ms
            && self.election_timeout_min_ms < self.election_timeout_max_ms)
        {
            return Err(format!(
                "log_group: need 0 < heartbeat_interval_ms ({}) < election_timeout_min_ms ({}) < election_timeout_max_ms ({})",
                self.heartbeat_interval_ms, self.election_timeout_min_ms, self.election_timeout_max_ms
            ));
        }
        if self.append_timeout_ms == 0 || self.snapshot_every_entries == 0 {
            return Err("log_group: append_timeout_ms and snapshot_every_entries must be at least 1".into());
        }
        Ok(())
    }

    /// This node's address, when listed.
    pub fn own_address(&self) -> Option<&str> {
        self.nodes.iter().find(|n| n.id == self.node_id).map(|n| n.address.as_str())
    }

    /// Where this node sends Raft messages when not to a member's address.
    pub fn raft_addresses(&self) -> HashMap<NodeId, String> {
        self.nodes.iter().filter_map(|n| Some((n.id, n.raft_address.clone()?))).collect()
    }

    fn raft_config(&self) -> Result<openraft::Config, Error> {
        let config = openraft::Config {
            cluster_name: "klaxon-log".into(),
            heartbeat_interval: self.heartbeat_interval_ms,
            election_timeout_min: self.election_timeout_min_ms,
            election_timeout_max: self.election_timeout_max_ms,
            // A snapshot's last chunk includes installing it (importing the
            // records), which takes time on a large log.
            install_snapshot_timeout: 120_000,
            snapshot_max_chunk_size: 4 * 1024 * 1024,
            // An entry is a batch of up to BATCH_BYTES_MAX (or one append
            // of up to the log server's message limit): keep one
            // AppendEntries well under network::MESSAGE_BYTES_MAX.
            max_payload_entries: 8,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(self.snapshot_every_entries),
            max_in_snapshot_log_to_keep: self.purge_keep_entries,
            replication_lag_threshold: self.snapshot_every_entries.saturating_mul(2),
            ..Default::default()
        };
        config.validate().map_err(|e| Error::Config(format!("log_group: {e}")))
    }
}

/// Writes waiting to be proposed; beyond this, writers wait
/// (back-pressure).
const PROPOSALS_QUEUED_MAX: usize = 4096;
/// Batches proposed and not yet applied, at most: while they are made
/// durable, replicated and applied, the next batch gathers. This is the
/// group's group commit: openraft 0.9 makes its log durable once per
/// proposal, so one proposal per write would cost one `fdatasync` each.
const BATCHES_IN_FLIGHT_MAX: usize = 2;
/// Writes in one batch at most.
const BATCH_WRITES_MAX: usize = 1024;
/// Bytes of events in one batch at most (a larger write goes alone).
const BATCH_BYTES_MAX: usize = 4 * 1024 * 1024;

/// A write waiting to be proposed, and who waits for its reply.
struct Proposal {
    command: Command,
    size: usize,
    reply: oneshot::Sender<Result<Reply, WriteError>>,
}

/// Proposes waiting writes in batches, [`BATCHES_IN_FLIGHT_MAX`] at a time,
/// and hands each write its own reply. Ends when every [`Group`] is gone.
async fn propose(raft: Raft, mut queue: mpsc::Receiver<Proposal>, timeout: Duration) {
    let in_flight = Arc::new(Semaphore::new(BATCHES_IN_FLIGHT_MAX));
    let mut carried: Option<Proposal> = None;
    loop {
        let permit = in_flight.clone().acquire_owned().await.expect("the semaphore is never closed");
        let first = match carried.take() {
            Some(p) => p,
            None => match queue.recv().await {
                Some(p) => p,
                None => return,
            },
        };
        let mut bytes = first.size;
        let mut batch = vec![first];
        while batch.len() < BATCH_WRITES_MAX {
            match queue.try_recv() {
                Ok(p) if bytes + p.size > BATCH_BYTES_MAX => {
                    carried = Some(p);
                    break;
                }
                Ok(p) => {
                    bytes += p.size;
                    batch.push(p);
                }
                Err(_) => break,
            }
        }
        let single = batch.len() == 1;
        let (command, replies): (Command, Vec<_>) = if single {
            let p = batch.pop().expect("one");
            (p.command, vec![p.reply])
        } else {
            let (commands, replies) = batch.into_iter().map(|p| (p.command, p.reply)).unzip();
            (Command::Batch(commands), replies)
        };
        let receiver = match raft.client_write_ff(command).await {
            Ok(receiver) => receiver,
            Err(e) => {
                let reason = format!("this log group node has stopped: {e}");
                for reply in replies {
                    let _ = reply.send(Err(WriteError::Log(klaxon_log::Error::Unavailable { reason: reason.clone() })));
                }
                continue;
            }
        };
        tokio::spawn(async move {
            let result = tokio::time::timeout(timeout, receiver).await;
            drop(permit);
            let failure = |e: &WriteError| match e {
                WriteError::NotLeader { leader } => WriteError::NotLeader { leader: leader.clone() },
                WriteError::Log(e) => WriteError::Log(klaxon_log::Error::Unavailable { reason: e.to_string() }),
            };
            let outcome = match result {
                Ok(Ok(Ok(response))) => Ok(response.data),
                Ok(Ok(Err(e))) => Err(client_write_error(e)),
                Ok(Err(_)) => Err(WriteError::Log(klaxon_log::Error::Unavailable {
                    reason: "this log group node stopped before the write was applied; retry".into(),
                })),
                Err(_) => Err(WriteError::Log(klaxon_log::Error::Unavailable {
                    reason: format!(
                        "the log group did not commit the write within {} ms (this node may have lost its majority); retry",
                        timeout.as_millis()
                    ),
                })),
            };
            match outcome {
                Ok(Reply::Batch(each)) if !single && each.len() == replies.len() => {
                    for (reply, answer) in replies.into_iter().zip(each) {
                        let _ = reply.send(Ok(answer));
                    }
                }
                Ok(answer) if single => {
                    let _ = replies.into_iter().next().expect("one").send(Ok(answer));
                }
                Ok(other) => {
                    tracing::error!(?other, writes = replies.len(), "a batch was answered with the wrong reply");
                    for reply in replies {
                        let _ = reply.send(Err(WriteError::Log(klaxon_log::Error::Unavailable {
                            reason: "a batch was answered with the wrong reply".into(),
                        })));
                    }
                }
                Err(e) => {
                    for reply in replies {
                        let _ = reply.send(Err(failure(&e)));
                    }
                }
            }
        });
    }
}

/// How long `add_node` waits for the new node to catch up.
const CATCH_UP_FOR: Duration = Duration::from_secs(600);

/// One node of the log group. Cheap to clone.
#[derive(Clone)]
pub struct Group {
    inner: Arc<Inner>,
}

struct Inner {
    raft: Raft,
    log: Log,
    options: Options,
    network: Network,
    proposals: mpsc::Sender<Proposal>,
    ready: watch::Receiver<bool>,
    installed: watch::Receiver<Installed>,
    rejoin: Mutex<Rejoin>,
}

/// Whether this node may vote. A node that started with empty Raft state
/// in a group that already exists (a wiped or replaced node) has forgotten
/// what it acknowledged and voted: it must not help elect a leader that
/// lacks an entry the group had committed when it came back. It learns
/// that point from the first leader it hears from, and from then on votes
/// for a candidate whose log reaches it (such a log holds every entry
/// committed up to it: Raft's leader completeness and log matching), and
/// for anyone once its own log reaches it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Rejoin {
    /// It votes (it kept its state, or has caught up).
    Done,
    /// It has not yet heard from a leader: it votes for nobody.
    Waiting,
    /// The leader's commit when it first heard from one (`None`: nothing
    /// was committed yet).
    Until(Option<LogId>),
}

impl Group {
    /// Starts this node over `log` (its state machine), with Raft's log,
    /// vote and snapshots in `raft_dir`, and initializes the group from
    /// `options.nodes` when this node is listed and has no Raft state yet.
    pub async fn start(options: Options, log: Log, raft_dir: &Path, network: Network) -> Result<Group, Error> {
        options.validate().map_err(Error::Config)?;
        let config = Arc::new(options.raft_config()?);
        let mut log_store = LogStore::open(raft_dir)?;
        let mut machine = StateMachine::open(log.clone(), raft_dir.join("snapshots")).await?;
        let pristine = {
            use openraft::storage::{RaftLogStorage, RaftStateMachine};
            let storage = |e: openraft::StorageError<NodeId>| Error::Raft(e.to_string());
            log_store.read_vote().await.map_err(storage)?.is_none()
                && log_store.get_log_state().await.map_err(storage)?.last_log_id.is_none()
                && machine.applied_state().await.map_err(storage)?.0.is_none()
        };
        let installed = machine.installed();
        let raft = Raft::new(options.node_id, config, network.clone().of_node(options.node_id), log_store, machine)
            .await
            .map_err(|e| Error::Raft(e.to_string()))?;
        let listed = options.nodes.iter().any(|n| n.id == options.node_id);
        let mut rejoin = Rejoin::Done;
        if pristine {
            let peer = if listed { initialized_peer(&options, &network).await } else { None };
            match (listed, peer) {
                (true, None) => {
                    let members: BTreeMap<NodeId, Node> =
                        options.nodes.iter().map(|n| (n.id, Node { addr: n.address.clone() })).collect();
                    match raft.initialize(members).await {
                        Ok(()) => {
                            tracing::info!(nodes = options.nodes.len(), "log group initialized from the configuration")
                        }
                        Err(RaftError::APIError(e)) => tracing::info!(reason = %e, "log group already initialized"),
                        Err(e) => return Err(Error::Raft(e.to_string())),
                    }
                }
                (_, peer) => {
                    tracing::warn!(
                        ?peer,
                        "this node has no Raft state but the group exists: it catches up from the leader and \
                         votes only once it holds everything the group had committed"
                    );
                    rejoin = Rejoin::Waiting;
                }
            }
        }
        let (ready_tx, ready) = watch::channel(false);
        let lease = Duration::from_millis(options.election_timeout_max_ms);
        tokio::spawn(track_readiness(raft.metrics(), ready_tx, lease));
        let rejoin = Mutex::new(rejoin);
        let (proposals, queue) = mpsc::channel(PROPOSALS_QUEUED_MAX);
        tokio::spawn(propose(raft.clone(), queue, Duration::from_millis(options.append_timeout_ms)));
        Ok(Group { inner: Arc::new(Inner { raft, log, options, network, proposals, ready, installed, rejoin }) })
    }

    /// Notes the leader's commit from a replication message, while
    /// rejoining.
    pub(crate) fn heard_from_leader(&self, leader_commit: Option<LogId>) {
        let mut rejoin = self.inner.rejoin.lock().expect("rejoin lock");
        if *rejoin == Rejoin::Waiting {
            *rejoin = Rejoin::Until(leader_commit);
        }
    }

    /// Whether this node may grant its vote to a candidate whose last log
    /// entry is `candidate_last` (see [`Rejoin`]); openraft then decides as
    /// always. A rejoining node that has not caught up yet still votes for a
    /// candidate holding everything committed when it came back: else, with
    /// the leader lost before it caught up, the others could never elect
    /// anyone (it declines them, and they refuse it for its shorter log),
    /// and the group would wait for the old leader to return.
    pub(crate) fn may_vote_for(&self, candidate_last: Option<&LogId>) -> bool {
        let mut rejoin = self.inner.rejoin.lock().expect("rejoin lock");
        let target = match *rejoin {
            Rejoin::Done => return true,
            Rejoin::Waiting => return false,
            Rejoin::Until(target) => target,
        };
        let last = self.inner.raft.metrics().borrow().last_log_index;
        if target.is_none_or(|t| last.is_some_and(|l| l >= t.index)) {
            tracing::info!(caught_up_to = ?target, "this node has caught up with the group; it votes again");
            *rejoin = Rejoin::Done;
            return true;
        }
        candidate_last >= target.as_ref()
    }

    /// The openraft node (metrics, tests).
    pub fn raft(&self) -> &Raft {
        &self.inner.raft
    }

    /// The event log this node applies to.
    pub fn log(&self) -> &Log {
        &self.inner.log
    }

    /// This node's id.
    pub fn node_id(&self) -> NodeId {
        self.inner.options.node_id
    }

    /// True while this node is the leader, has applied an entry of its own
    /// term (so its log holds everything committed before it) and has heard
    /// from a majority within the last `election_timeout_max_ms`: when the
    /// relay may run. The channel closes when this node's Raft
    /// stops (a fatal storage error, or [`Group::shutdown`]).
    pub fn leading(&self) -> watch::Receiver<bool> {
        self.inner.ready.clone()
    }

    /// Snapshots installed from the leader since start.
    pub fn installed(&self) -> watch::Receiver<Installed> {
        self.inner.installed.clone()
    }

    /// The network this node uses (for clients of other nodes).
    pub fn network(&self) -> &Network {
        &self.inner.network
    }

    /// Proposes `command` (in a batch with whatever else is waiting) and
    /// waits for its reply, at most `append_timeout_ms` once proposed.
    async fn propose(&self, command: Command) -> Result<Reply, WriteError> {
        let (reply, answer) = oneshot::channel();
        let size = command.size();
        let stopped =
            || WriteError::Log(klaxon_log::Error::Unavailable { reason: "this log group node has stopped".into() });
        self.inner.proposals.send(Proposal { command, size, reply }).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    /// Adds node `id` at `address`: as a learner until it has caught up,
    /// then as a voter. Only the leader does it.
    pub async fn add_node(&self, id: NodeId, address: String) -> Result<(), WriteError> {
        if id == 0 {
            return Err(rejected("node id 0 is not allowed"));
        }
        let raft = &self.inner.raft;
        let learner = tokio::time::timeout(CATCH_UP_FOR, raft.add_learner(id, Node { addr: address }, true));
        match learner.await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(write_error(e)),
            Err(_) => return Err(rejected(format!("node {id} did not catch up within {CATCH_UP_FOR:?}"))),
        }
        raft.change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false).await.map_err(write_error)?;
        Ok(())
    }

    /// Removes node `id` (a voter or a learner). Only the leader does it.
    /// Removing a node that is not in the group changes nothing (a retry of
    /// a removal that was done answers as the first one).
    pub async fn remove_node(&self, id: NodeId) -> Result<(), WriteError> {
        let metrics = self.inner.raft.metrics().borrow().clone();
        if metrics.current_leader != Some(metrics.id) {
            let leader = metrics.current_leader.and_then(|l| metrics.membership_config.membership().get_node(&l));
            return Err(WriteError::NotLeader { leader: leader.map(|n| n.addr.clone()) });
        }
        let membership = metrics.membership_config.membership();
        let change = if membership.voter_ids().any(|v| v == id) {
            ChangeMembers::RemoveVoters(BTreeSet::from([id]))
        } else if membership.learner_ids().any(|l| l == id) {
            ChangeMembers::RemoveNodes(BTreeSet::from([id]))
        } else {
            return Ok(());
        };
        self.inner.raft.change_membership(change, false).await.map_err(write_error)?;
        Ok(())
    }

    /// This node's view of the group.
    pub fn status(&self) -> Status {
        let m = self.inner.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let members = membership
            .nodes()
            .map(|(id, node)| Member {
                id: *id,
                address: node.addr.clone(),
                voter: voters.contains(id),
                matched_index: m.replication.as_ref().and_then(|r| r.get(id).cloned()).flatten().map(|l| l.index),
            })
            .collect();
        let leader_address = m.current_leader.and_then(|l| membership.get_node(&l)).map(|n| n.addr.clone());
        Status {
            node_id: m.id,
            state: match m.state {
                ServerState::Leader => "leader",
                ServerState::Follower => "follower",
                ServerState::Candidate => "candidate",
                ServerState::Learner => "learner",
                ServerState::Shutdown => "shutdown",
            },
            term: m.current_term,
            leader_id: m.current_leader,
            leader_address,
            last_log_index: m.last_log_index.unwrap_or(0),
            applied_index: m.last_applied.map_or(0, |l| l.index),
            snapshot_index: m.snapshot.map_or(0, |l| l.index),
            purged_index: m.purged.map_or(0, |l| l.index),
            head: self.inner.log.head().0,
            members,
            snapshots_installed: self.inner.installed.borrow().count,
        }
    }

    /// Stops this node's Raft (the log stays open).
    pub async fn shutdown(&self) {
        if let Err(e) = self.inner.raft.shutdown().await {
            tracing::warn!(error = %e, "raft did not stop cleanly");
        }
    }
}

/// A node's view of the group ([`Group::status`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    /// This node.
    pub node_id: NodeId,
    /// leader, follower, candidate, learner or shutdown.
    pub state: &'static str,
    /// The current term.
    pub term: u64,
    /// The leader, when known.
    pub leader_id: Option<NodeId>,
    /// Its address.
    pub leader_address: Option<String>,
    /// The last index in this node's Raft log.
    pub last_log_index: u64,
    /// The last applied index.
    pub applied_index: u64,
    /// The last index in this node's snapshot.
    pub snapshot_index: u64,
    /// The last purged index.
    pub purged_index: u64,
    /// The event log's head on this node.
    pub head: u64,
    /// Every member.
    pub members: Vec<Member>,
    /// Snapshots installed from a leader since start.
    pub snapshots_installed: u64,
}

/// A member of the group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// Its id.
    pub id: NodeId,
    /// Its address.
    pub address: String,
    /// A voter (or a learner).
    pub voter: bool,
    /// On the leader: the last index known on that node.
    pub matched_index: Option<u64>,
}

/// The first listed peer that reports a group that has committed entries
/// (past its initial membership), if any answers within a second. A group
/// only just initialized by its first nodes has committed nothing a
/// returning node could have acknowledged: joining it is bootstrapping.
async fn initialized_peer(options: &Options, network: &Network) -> Option<NodeId> {
    let overrides = options.raft_addresses();
    let probes = options.nodes.iter().filter(|n| n.id != options.node_id).map(|n| {
        let address = overrides.get(&n.id).cloned().unwrap_or_else(|| n.address.clone());
        async move {
            let mut client = network.client(&address).ok()?;
            let probe = client.status(klaxon_proto::v1::LogGroupStatusRequest {});
            let status = tokio::time::timeout(Duration::from_secs(1), probe).await.ok()?.ok()?.into_inner();
            (status.applied_index > 0).then_some(n.id)
        }
    });
    futures_util::future::join_all(probes).await.into_iter().flatten().next()
}

/// Sends `true` while the node leads, has applied an entry of its term,
/// and a majority acknowledged its leadership within `lease` (the last
/// excludes a leader that lost its majority, and one that openraft restored
/// as leader at restart before anyone confirmed it: its term may be long
/// over). Ends (closing the channel) when openraft stops, normally or on a
/// fatal error such as a failed disk: whoever watches it must stop the
/// process.
async fn track_readiness(
    mut metrics: watch::Receiver<openraft::RaftMetrics<NodeId, Node>>,
    ready: watch::Sender<bool>,
    lease: Duration,
) {
    loop {
        let (now, stopped) = {
            let m = metrics.borrow_and_update();
            let now = m.state == ServerState::Leader
                && m.current_leader == Some(m.id)
                && m.last_applied.is_some_and(|l| l.leader_id.term == m.current_term)
                && m.millis_since_quorum_ack.is_some_and(|ms| u128::from(ms) <= lease.as_millis());
            (now, m.running_state.is_err() || m.state == ServerState::Shutdown)
        };
        if stopped {
            tracing::error!("this log group node's Raft stopped");
            ready.send_replace(false);
            return;
        }
        ready.send_if_modified(|r| std::mem::replace(r, now) != now);
        // Metrics change with every heartbeat; the timer re-checks a leader
        // that stopped hearing from its followers.
        tokio::select! {
            changed = metrics.changed() => {
                if changed.is_err() {
                    ready.send_replace(false);
                    return;
                }
            }
            _ = tokio::time::sleep(lease / 4) => {}
        }
    }
}

fn rejected(message: impl Into<String>) -> WriteError {
    WriteError::Log(klaxon_log::Error::Rejected { message: message.into() })
}

/// A write's failure: a follower's refusal with the leader's address, or
/// the group being unable to take it now.
fn write_error(e: RaftError<NodeId, ClientWriteError<NodeId, Node>>) -> WriteError {
    match e {
        RaftError::APIError(e) => client_write_error(e),
        RaftError::Fatal(e) => {
            WriteError::Log(klaxon_log::Error::Unavailable { reason: format!("this log group node has stopped: {e}") })
        }
    }
}

fn client_write_error(e: ClientWriteError<NodeId, Node>) -> WriteError {
    match e {
        ClientWriteError::ForwardToLeader(f) => WriteError::NotLeader { leader: f.leader_node.map(|n| n.addr) },
        ClientWriteError::ChangeMembershipError(e) => rejected(e.to_string()),
    }
}

impl Writes for Group {
    fn append<'a>(
        &'a self,
        stream: &'a StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> BoxFuture<'a, Result<Appended, WriteError>> {
        Box::pin(async move {
            // Bad input is refused here, with this node's limits, and never
            // enters the group's log.
            self.inner.log.check(stream, &events)?;
            let reply = self.propose(Command::append(stream, expected, &events, Utc::now())).await?;
            Ok(reply.into_appended()?)
        })
    }

    fn save_checkpoint<'a>(&'a self, name: &'a str, position: Position) -> BoxFuture<'a, Result<(), WriteError>> {
        Box::pin(async move {
            // The name is checked here too (loading validates it).
            self.inner.log.load_checkpoint(name)?;
            match self.propose(Command::SaveCheckpoint { name: name.to_owned(), position: position.0 }).await? {
                Reply::CheckpointSaved => Ok(()),
                Reply::Refused(e) => Err(WriteError::Log(klaxon_bus::wire::from_wire(e))),
                other => Err(WriteError::Log(klaxon_log::Error::Unavailable {
                    reason: format!("a checkpoint was answered with {other:?}"),
                })),
            }
        })
    }
}
