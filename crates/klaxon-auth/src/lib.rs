//! Who may do what.
//!
//! - [`tokens`]: bearer tokens (`klx_…`, 256 random bits), stored only as
//!   SHA-256 hashes in a TOML file that `klaxond token` manages and a
//!   running server rereads on change.
//! - [`Principal`] and [`Role`]: an authenticated name with one role of
//!   DESIGN.md's table (manager, engineer, executive, reviewer, service)
//!   or `integration` (monitoring tools: report and read metrics, never
//!   the log), optionally scoped to teams.
//! - [`policy`]: the one table of which role may call which gRPC method.
//! - [`AuthLayer`]: the tower layer in front of every gRPC server. It
//!   answers `UNAUTHENTICATED` without a valid token and
//!   `PERMISSION_DENIED` for a role the table does not allow, before any
//!   handler runs (so a refused call writes nothing); otherwise it leaves a
//!   [`Grant`] for the handlers, which check team scopes where a command
//!   touches a service's incident, and sets the actor to the principal. It
//!   also holds each principal to a request rate ([`RateLimit`]),
//!   answering `RESOURCE_EXHAUSTED` over it. On a call that carries many
//!   commands (`Incidents/Execute`) it also leaves a [`Reauth`], with
//!   which the handler authorizes each command as its unary call.
//! - [`sources`]: which report source a principal has earned (executives
//!   report escalations, the listed help-desk principals report as the help
//!   desk), so that severity rules keyed on the source can trust it.

pub mod layer;
pub mod policy;
mod principal;
pub mod sources;
pub mod tokens;

pub use layer::{ACTOR_HEADER, Auth, AuthLayer, RateLimit, Reauth, SharedTeams};
pub use principal::{Grant, OutOfScope, Principal, Role, Teams};
pub use sources::{HelpDesk, SourceNotEarned};
pub use tokens::TokenStore;
