//! Klaxon's severity evaluator: every incoming report is triaged.
//!
//! The evaluator runs on the reactor shell (`klaxon_reactor`). It folds
//! every incident; whenever one changes, the domain
//! (`klaxon_domain::severity::assess`) says whether the configured rules
//! call for a new severity, and the shell appends that
//! `incident.severity_assessed.v1` to the incident's stream. The event id
//! is derived from the incident's latest record, so a replay after a crash
//! or a restart writes nothing twice. It assesses only Reported incidents: a
//! severity set by a person (declared, then overridden) is never changed by
//! the evaluator, and an assessment that lands after the declaration is kept
//! in the log but changes nothing.
//!
//! What it must never do: change a declared or overridden severity, react to the same
//! event twice with different ids, or keep state the log cannot rebuild
//! (its only own state is a checkpoint).
//!
//! Modules:
//! - `service`: [`Evaluator`] (the component: [`Assessing`], its fold and
//!   decision, on the shell) and its [`Handle`] (explain, the policy dry
//!   run, and the lint of the running configuration, [`RunningPolicy`]).
//! - `grpc`: the `klaxon.v1.SeverityEvaluator` server and its error mapping.

pub mod grpc;
mod service;

pub use service::{ACTOR, Assessing, CONSUMER, Error, Evaluator, Handle, LINT_DAYS_DEFAULT, RunningPolicy, State};
