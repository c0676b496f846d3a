//! Klaxon's intake service: incident commands and queries, the incident
//! projection, and the incident bridge.
//!
//! Commands are decided by `klaxon-domain` against the incident's current
//! state and appended to the log with an exact expected version, so two
//! managers acting at once never lose an update: without an expected version
//! the later command is decided again on the new state, with one it fails
//! with a conflict naming the current version. Client request ids become
//! deterministic event ids, so a retried command writes nothing twice and
//! returns the first result. Every answer waits until the events are durable.
//! A command answers with the incident as its own events leave it (the
//! state it was decided on with them folded in, which the exact expected
//! version makes the incident at the new version) without waiting for the
//! projection to fold them, and the next command on that incident decides
//! on it; queries wait for the projection to reach the log head, so a
//! client always reads its own writes.
//!
//! What it must never do: keep state that the log cannot rebuild, answer
//! before the log acknowledged, or write to sled itself.
//!
//! Modules:
//! - `service`: [`Intake`] (the component: `new`, `run`) and its [`Handle`]
//!   (commands, queries), with [`Options`] and [`CommandContext`].
//! - `memory`: what is kept of incidents evicted from memory (Resolved or
//!   Closed for `evict_closed_after`), which are read from the log on demand.
//! - `grpc`: the `klaxon.v1.Incidents` and `klaxon.v1.Bridge` servers.
//! - `http`: the HTTP intake of existing monitoring: the Alertmanager
//!   webhook receiver and a PagerDuty Events API v2 compatible endpoint.
//! - `smtp`: the e-mail intake for help desks: an SMTP listener whose
//!   messages become reports, and replies to an incident's mail notes.
//! - `stage`: the names of the `TRACE` spans marking a command's stages
//!   (parse, decide, encode, append, answer, respond; read and fold).
//!
//! Errors are [`Error`]; their class (`klaxon_domain::class`) is mapped to
//! gRPC status, HTTP status and SMTP replies by `klaxon_proto::status`, the
//! one mapping.

mod error;
pub mod grpc;
pub mod http;
mod memory;
mod service;
pub mod smtp;
pub mod stage;

pub use error::Error;
pub use service::{
    CommandContext, Handle, Intake, ListFilter, Options, Outcome, Projection, REQUEST_ID_BYTES_MAX, ReportOutcome,
    Validation,
};
