//! Klaxon's paging service: when an incident reaches a paging severity, the
//! on-call responders of its service's escalation policy are paged, and
//! paging escalates until someone acknowledges.
//!
//! Every decision comes from `klaxon_domain::paging` (pure) over state folded
//! from the log: whom to page and when to escalate (`decide`, `next_due`),
//! which pages to deliver and their message (`deliveries`). This crate
//! supplies the fold and hands the decisions to the reactor shell
//! (`klaxon_reactor`), which runs them at the time of its injected clock,
//! appends the page events to the incident's `pages-INC-n` stream with an
//! exact expected version, delivers new pages through the configured
//! channels (the page id is the idempotency key) and records each delivery
//! as an event. Timers are never kept anywhere else: after a restart the
//! state is rebuilt from the log and everything overdue fires, exactly once.
//! The configuration is read through a `Live` view a reload replaces; an
//! episode keeps the escalation policy its first page recorded.
//!
//! What it must never do: decide before it has folded the whole log (that
//! would page for incidents resolved later in the log), deliver a page as a
//! new page twice, or keep state the log cannot rebuild.
//!
//! Modules:
//! - `service`: [`Pager`] (the component: [`Paging`], its fold and decision,
//!   on the shell) and its [`Handle`] (ack, queries).
//! - `grpc`: the `klaxon.v1.Paging` server and its error mapping.
//! - `broken` (feature `sim-variants` only, hidden): deliberately broken
//!   folds the simulation runs to show its invariants catch them.
//! - `shifts`: [`shifts::ShiftNotifier`], the shift notices (`[shift_notices]`)
//!   that run beside the pager: starts, ends, moved shifts, weekly summaries.

#[cfg(feature = "sim-variants")]
#[doc(hidden)]
pub mod broken;
pub mod grpc;
mod service;
pub mod shifts;

pub use service::{Counts, DeliveryStatus, Error, Handle, Pager, PagerConfig, Paging, State};
