//! Klaxon's replicated event log: a group of log servers on Raft.
//!
//! A log group is three (or five) `klaxond serve log` processes holding the
//! same [`klaxon_log::Log`]. Consensus is openraft 0.9; this crate gives it
//! durable storage, the log as its state machine, and a gRPC transport, and
//! gives the log server a [`Group`] to send writes through
//! ([`klaxon_bus::server::Writes`]). `docs/replication.md` says why it is
//! safe; in short:
//!
//! - An append is acknowledged only once committed (durable on a majority's
//!   Raft logs) and applied on the leader (durable in its sled log).
//! - Positions are assigned in apply, by every node, from the same
//!   committed entries: the same records at the same positions everywhere,
//!   gapless across leader changes. The expected-version and idempotency
//!   checks run there too; a refusal is an outcome, not a divergence.
//! - The applied mark is written in the same atomic batch as the records,
//!   so no node applies an entry twice; client retries are new entries
//!   whose event ids deduplicate.
//!
//! What it must never do: acknowledge a write before a majority has it on
//! disk, decide anything in apply from the clock or from a node's own
//! configuration, or depend on a service crate.
//!
//! Modules:
//! - `types`: the [`Command`]s in Raft's log, the [`Reply`] of applying
//!   one, openraft's [`TypeConfig`].
//! - `log_store`: Raft's log and vote in segment files, `fdatasync`ed before
//!   openraft is told ([`LogStore`]).
//! - `state_machine`: the event log as openraft's state machine, snapshots
//!   built and installed ([`StateMachine`]).
//! - `snapshot`: the snapshot file format and folder.
//! - `network`: Raft's messages over gRPC, client side ([`Network`]).
//! - `service`: `klaxon.v1.LogGroup`, server side ([`GroupService`]).
//! - `group`: one node: start, writes, leadership, membership, status
//!   ([`Group`], [`Options`]).

mod group;
mod log_store;
mod network;
mod service;
mod snapshot;
mod state_machine;
mod types;

pub use group::{Group, Member, NodeOptions, Options, Status};
pub use log_store::LogStore;
pub use network::{Client, Network};
pub use service::GroupService;
pub use state_machine::{APPLIED_MARK, Installed, StateMachine};
pub use types::{Command, Event, NodeId, Reply, TypeConfig};

/// Why a node could not start or do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A configuration value is wrong.
    #[error("{0}")]
    Config(String),
    /// Reading or writing Raft's files failed.
    #[error("raft storage: {0}")]
    Io(#[from] std::io::Error),
    /// openraft refused or stopped.
    #[error("raft: {0}")]
    Raft(String),
}

impl klaxon_domain::class::Classify for Error {
    fn class(&self) -> klaxon_domain::class::Class {
        use klaxon_domain::class::Class;
        match self {
            Error::Config(_) => Class::InvalidArgument,
            Error::Io(_) => Class::Internal,
            Error::Raft(_) => Class::Unavailable,
        }
    }
}
