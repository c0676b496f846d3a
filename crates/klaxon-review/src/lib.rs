//! Klaxon's post-incident review service: reviewers see exactly what was
//! known at any moment and learn from it.
//!
//! It follows the log, folds every incident with its page and review events
//! (`klaxon_domain::review`), opens a review when a Sev-1 or Sev-2 is resolved
//! (`review.opened.v1`, id derived from the resolution, so a replay opens
//! nothing twice), and serves timelines (also as of a log position or a
//! time), per-incident metrics, review editing, action items across
//! incidents, the Markdown postmortem and trend reports, and posts cadenced
//! trend reports to channels.
//!
//! What it must never do: keep state the log cannot rebuild, or show an
//! "as of" state that was never true.
//!
//! Modules:
//! - `service`: [`Reviews`] (the component) and its [`Handle`].
//! - `grpc`: the `klaxon.v1.Review` server and its error mapping.
//! - `reporter`: [`Reporter`], the cadenced trend reports (`[[reports]]`)
//!   posted to channels once per period, by one replica (a claim).

pub mod grpc;
mod reporter;
mod service;

pub use reporter::{CLAIM_SERVICE, Reporter};
pub use service::{AUDIT_READ, AUDIT_SCAN_MAX, AuditEntry, Error, Handle, Reviews};
