//! Klaxon's pure domain model: the vocabulary every service shares and the
//! decisions about an incident's lifecycle.
//!
//! This crate must never do IO: no tokio, sled, gRPC, NATS, files or network,
//! no clock reads (time is always passed in) and no randomness. Everything
//! here is a function of its inputs, so it is tested without servers and the
//! same code runs in every topology. Wire formats other than the persisted
//! event JSON live at the edges, not here.
//!
//! Modules:
//!
//! - [`ids`]: validated newtypes for ids and levels (`IncidentId`, `Severity`,
//!   `ActorId`, ...) and the deterministic UUIDv5 event-id helpers.
//! - [`class`]: the one classification of every error ([`class::Class`],
//!   [`class::Classify`]) that the edge maps to gRPC and HTTP status.
//! - [`audit`]: the audit trail's pure parts: a configuration's diff by
//!   section and key (`config.applied.v1`), token changes, the filter of
//!   `klaxon audit` and a one-line summary of any record.
//! - [`catalog`]: the service catalog (team, tier, runbook and escalation
//!   policy of each service), read by severity rules, paging and auth.
//! - [`envelope`]: the envelope all persisted events share (`incident`, `at`,
//!   `by` around a family's change) and its JSON log format.
//! - [`incident`]: the incident as a decider, with its commands, events,
//!   limits, rules, `decide`, `evolve` and the persisted event format.
//! - [`oncall`]: on-call schedules (layered rotations in an IANA time zone,
//!   overrides): who is on call at an instant, across DST changes.
//! - [`severity`]: ordered severity rules over an incident's facts, with an
//!   explanation of which rule matched and why the others did not.
//! - [`paging`]: escalation policies, SLOs, page events, and the pure
//!   decision of whom to page, when to escalate and which SLO is breached.
//! - [`policy`]: the policy sections of a configuration as one unit: parsed
//!   and validated once, linted, and replayed against recorded history.
//! - [`queue`]: the open incidents ordered by what needs attention first
//!   (unowned Sev-1s, the soonest SLO deadline, severity).
//! - [`outbox`]: messages to people outside (pure data), their outcome, and
//!   the [`outbox::Outbox`] port the service kit delivers them through.
//! - [`notifier`]: whom executives and the company-wide group are told about
//!   and when, the executive update cadence, and filtered, coalesced feeds.
//! - [`review`]: post-incident reviews, timelines, metrics, trend reports.
//! - [`text`]: the one rule for free text (titles, notes, summaries, …) on
//!   every path, and its lenient form for monitoring webhooks.
//!
//! Errors are [`Error`] for rejected input or commands and [`DecodeError`] for
//! stored records that cannot be read back.

pub mod audit;
pub mod catalog;
pub mod class;
pub mod envelope;
mod error;
pub mod ids;
pub mod incident;
pub mod notifier;
pub mod oncall;
pub mod outbox;
pub mod paging;
pub mod policy;
pub mod queue;
pub mod review;
pub mod severity;
pub mod text;

pub use error::{ConfigError, DecodeError, Error};
