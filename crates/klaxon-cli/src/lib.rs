//! The `klaxon` command line: every incident command and query of Klaxon's
//! gRPC API (`proto/klaxon/v1/incidents.proto`), the severity explanation
//! (`severity.proto`) and paging (`paging.proto`: `ack`, `oncall`, `pages`),
//! for incident managers and responders at a terminal and for scripts
//! (`--json`). All services are served at the one `--server` address.
//!
//! What it must never do: decide anything about an incident. It checks the
//! shape of its arguments (incident and page ids, enums, times), sends exactly one request per
//! command (one per page for `list --all-pages`), and prints the server's
//! answer or its error message as is.
//!
//! Every call carries the acting person in the `klaxon-actor` header
//! (`--as`, `KLAXON_ACTOR`, else `$USER`) and, for commands, a
//! `CommandContext` with `--request-id` (a fresh UUIDv4 by default) and
//! `--expect-version`. Connecting times out after 5 s, each request after
//! 30 s (`join` has no request timeout).
//!
//! Exit codes: 0 success; 1 the server refused the request (InvalidArgument,
//! NotFound, FailedPrecondition, PermissionDenied, Unauthenticated,
//! ResourceExhausted, AlreadyExists); 2 usage error; 3 version conflict
//! (Aborted; the current version is printed); 4 server unreachable or
//! unavailable (connection refused, Unavailable, DeadlineExceeded); 5
//! anything else; 130 `join` interrupted by Ctrl-C. Errors are one line on
//! stderr: `klaxon: <message>`.
//!
//! Modules:
//! - [`cli`]: the clap definitions, value parsers, and one pure
//!   request-building function per subcommand.
//! - [`commands`]: connecting, the one generic "send this request" path, and
//!   the bridge session of `join`.
//! - [`render`]: human text and JSON views of the replies.
//! - [`error`]: failures, their one-line messages, and exit codes.

pub mod cli;
pub mod commands;
pub mod error;
pub mod render;

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use clap::Parser;
use klaxon_proto::v1;

use crate::cli::Cli;
use crate::commands::{Action, Connection, REQUEST_TIMEOUT};
use crate::error::{Error, Exit};

/// Parses `args` (exiting 2 on a usage error, as clap does), runs the
/// command, prints the result or the error, and returns the exit code.
pub fn main_with_args(args: impl IntoIterator<Item = std::ffi::OsString>) -> ExitCode {
    let cli = Cli::parse_from(args);
    let server = cli.global.server.clone();
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("klaxon: cannot start the async runtime: {e}");
            return Exit::Other.into();
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => Exit::Success.into(),
        Err(e) => {
            eprintln!("klaxon: {}", e.message(&server));
            e.exit().into()
        }
    }
}

/// Runs one parsed command line against the server.
pub async fn run(cli: Cli) -> Result<(), Error> {
    let Cli { global, command } = cli;
    let actor = global.actor();
    let participant = actor.to_str().unwrap_or("unknown").to_string();
    match command.action(global.context(), &participant) {
        Action::Call(rpc) => {
            let connection = Connection::open(&global.server, actor, Some(REQUEST_TIMEOUT)).await?;
            let reply = connection.call(rpc.clone()).await?;
            print_line(&render::reply(&rpc, &reply, global.json))
        }
        Action::Join(join) => {
            let connection = Connection::open(&global.server, actor, None).await?;
            let hint = !global.json && std::io::stdin().is_terminal();
            connection
                .join(join, |message| {
                    print_line(&render::bridge_message(&message, global.json))?;
                    if hint && matches!(message, v1::bridge_response::Message::Snapshot(_)) {
                        eprintln!("(joined as {participant}: each line you type is posted as a note; Ctrl-D leaves)");
                    }
                    Ok(())
                })
                .await
        }
    }
}

/// Prints one line (or block) on stdout and flushes it, so `join` output
/// appears at once; a closed pipe (`klaxon list | head`) is not an error.
fn print_line(text: &str) -> Result<(), Error> {
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{text}").and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(Error::Output(e)),
        _ => Ok(()),
    }
}
