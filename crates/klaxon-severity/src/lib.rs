//! Klaxon's severity evaluator: every incoming report is triaged.
//!
//! The evaluator follows the log. For every incident event it folds the
//! incident and asks the configured rules (`klaxon_domain::severity`) what
//! its severity should be; when the answer changes, it appends
//! `incident.severity_assessed.v1` to the incident's stream. The event id is
//! derived from the event that caused it, so a replay after a crash or a
//! restart writes nothing twice. A manager's override always wins, and after
//! a declaration the evaluator only raises the severity.
//!
//! What it must never do: change an overridden severity, react to the same
//! event twice with different ids, or keep state the log cannot rebuild
//! (its only own state is a checkpoint).
//!
//! Modules:
//! - `service`: [`Evaluator`] (the component) and its [`Handle`] (explain).
//! - `grpc`: the `klaxon.v1.SeverityEvaluator` server and its error mapping.

pub mod grpc;
mod service;

pub use service::{ACTOR, CONSUMER, Error, Evaluator, Handle};
