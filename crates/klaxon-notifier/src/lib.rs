//! Klaxon's executive notifier: executives know about every Sev-1 without
//! asking.
//!
//! It runs on the reactor shell (`klaxon_reactor`), folding every incident
//! with its notification history (`klaxon_domain::notifier`), which also
//! decides what is told and writes the messages. When an incident reaches a notifying
//! severity, executives are told through the configured channels, which
//! then follow it (coalesced follow-ups of every status, commander,
//! severity and executive-update change, in the first post's thread where
//! the channel threads); multi-customer incidents are also posted
//! company-wide, followed until the all-clear. Each delivery is recorded as
//! `notify.executives_notified.v1` (or `notify.delivery_failed.v1`) in
//! `notify-INC-n`, so the audit shows who was told what and when. When a Sev-1 goes without an
//! executive-audience update for its cadence, `notify.update_overdue.v1` is
//! recorded and the commander is reminded. `StatusFeed.Subscribe` streams a
//! snapshot of the matching open incidents, then coalesced live items.
//!
//! What it must never do: decide before it has folded the whole log, hold
//! unbounded memory for a slow feed subscriber, or keep state the log cannot
//! rebuild.
//!
//! Modules:
//! - `service`: [`Notifier`] (the component: [`Notifying`], its fold and
//!   decision, on the reactor shell) and its [`Handle`].
//! - `feed`: the per-subscriber feed task (snapshot, coalescing, lag).
//! - `budget`: [`budget::FeedBudget`], the one count of live feeds per
//!   principal that gRPC feeds and status page streams share.
//! - `grpc`: the `klaxon.v1.StatusFeed` server.
//! - `status_page`: `/status` (executives, signed in with their token) and
//!   `/status/public` (customers), live through Server-Sent Events.

pub mod budget;
pub mod feed;
pub mod grpc;
mod service;
pub mod status_page;

pub use feed::Sent;
pub use service::{Error, Handle, Notifier, NotifierOptions, Notifying, Recording, State};
