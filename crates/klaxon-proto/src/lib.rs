//! Klaxon's public gRPC API and its conversions to and from the domain.
//!
//! The API is defined in `proto/klaxon/v1/*.proto`; the code in [`v1`] is
//! generated from it by this crate's build script (tonic 0.14 with
//! prost), using a vendored protoc. Wire types never leak into the domain:
//! [`convert`] is the one place that turns them into domain types (checking
//! every field and naming the offending one) and back.
//!
//! What it must never do: hold business rules. It parses and formats; the
//! domain decides.
//!
//! Modules:
//! - [`v1`]: the generated messages, clients and servers of `klaxon.v1`.
//! - [`convert`]: domain <-> wire conversions for ids, enums, timestamps,
//!   incidents and history entries.
//! - [`status`]: the one mapping of an error's class to a gRPC status
//!   and an HTTP status, used by every server and the HTTP intake.
//! - [`text`]: which request fields are free text, of which kind, and the
//!   one check of them ([`text::check_text`]) that servers and the CLI run.

pub mod convert;
pub mod status;
pub mod text;

/// The generated code of package `klaxon.v1`.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod v1 {
    tonic::include_proto!("klaxon.v1");
}

/// The encoded file descriptor set of `klaxon.v1`, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("klaxon_v1_descriptor");
