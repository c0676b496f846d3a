//! Klaxon's service kit: what every service needs between the log and its
//! pure domain, written once.
//!
//! What it must never do: decide anything (decisions are the domain's),
//! read the time except through the injected [`Clock`], spawn a task that
//! nothing tracks, or keep state the log cannot rebuild.
//!
//! Modules:
//! - [`clock`]: [`Clock`], [`SystemClock`] and the [`ManualClock`] tests
//!   move by hand.
//! - [`streams`]: the log streams of an incident and its correlation id.
//! - [`decode`]: records back into domain events ([`Decoded`]), loudly.

pub mod clock;
pub mod decode;
mod error;
pub mod streams;

pub use clock::{Clock, ManualClock, SystemClock, system_clock};
pub use decode::Decoded;
pub use error::Error;
