//! The names of the `TRACE` spans that mark the stages of a command, so
//! that a profiler (the commands bench's stage table) can tell where a
//! command's CPU goes. They cost one disabled-callsite check each when
//! nothing listens at `TRACE` (the default).
//!
//! A command runs `parse`, `decide`, `encode`, `append`, `answer` and
//! `respond` on the gRPC worker that serves it; `read` and `fold` run in
//! intake's one fold loop, once per record, off the command's path.

/// Request to command: actor, context, incident id, field checks
/// (`grpc`).
pub const PARSE: &str = "intake.parse";
/// The incident's current state, and the domain's decision on it.
pub const DECIDE: &str = "intake.decide";
/// Domain events to the log's new events (their JSON).
pub const ENCODE: &str = "intake.encode";
/// The append until the log acknowledges it durable (CPU of the calling
/// task only: the log's writer and sync threads count as theirs).
pub const APPEND: &str = "intake.append";
/// The incident after the command's events, kept for the next command.
pub const ANSWER: &str = "intake.answer";
/// The answer to the gRPC response message (`grpc`).
pub const RESPOND: &str = "intake.respond";
/// The fold loop reading the next record back from the log.
pub const READ: &str = "intake.read";
/// The fold loop folding one record into the projection.
pub const FOLD: &str = "intake.fold";
