//! Klaxon's service kit: what every service needs between the log and its
//! pure domain, written once.
//!
//! What it must never do: decide anything (decisions are the domain's),
//! read the time except through the injected [`Clock`], spawn a task that
//! nothing tracks, or keep state the log cannot rebuild.
//!
//! Every reacting service (severity, paging, the notifier, review) is a
//! [`Service`] (a pure fold and a pure decision returning [`Effect`]s) run
//! by a [`Reactor`], the one shell: replay then live, dirty incidents,
//! timers, work in flight, bounded deliveries, the drain, eviction of
//! finished incidents (read back from the log when needed), the processed
//! position and the barrier tests wait on.
//!
//! Modules:
//! - [`shell`]: [`Service`], [`Reactor`], its [`Handle`] and [`Progress`].
//! - [`effect`]: what a decision asks for: [`Append`], [`Deliver`], with
//!   derived [`Ids`] and a [`Trace`].
//! - [`snapshot`]: a service's state saved at a log position
//!   ([`SnapshotFile`]), checked on reading, ignored when in doubt.
//! - [`table`]: rows of incidents no longer held in memory, one
//!   checksummed slot per incident number in a file beside the snapshot.
//! - [`claim`]: how replicas share deliveries: a claim through the log
//!   that only one replica wins, held for a lease ([`Claims`]).
//! - [`clock`]: [`Clock`], [`SystemClock`] and the [`ManualClock`] tests
//!   move by hand.
//! - [`streams`]: the log streams of an incident and its correlation id.
//! - [`decode`]: records back into domain events ([`Decoded`]), loudly.
//! - [`live`]: [`Live`], a configuration the binary replaces at a reload
//!   while services read it once per decision.

pub mod claim;
pub mod clock;
pub mod decode;
pub mod effect;
mod error;
pub mod live;
pub mod shell;
pub mod snapshot;
pub mod streams;
pub mod table;

pub use claim::{Claim, Claims, ReplicaId};
pub use clock::{Clock, ManualClock, SystemClock, system_clock};
pub use decode::Decoded;
pub use effect::{Append, Cause, Deliver, Effect, Ids, Pending, Trace};
pub use error::Error;
pub use live::Live;
pub use shell::{ClaimCounts, Handle, Progress, Reactor, Service, note_latest};
pub use snapshot::SnapshotFile;
pub use table::{Row, Table};
