//! The `klaxon` command line: every incident command and query of Klaxon's
//! gRPC API (`proto/klaxon/v1/incidents.proto`), the severity explanation
//! (`severity.proto`), paging (`paging.proto`: `ack`, `oncall`, `pages`),
//! the executive status feed (`feed.proto`: `watch`) and post-incident
//! review (`review.proto`: `timeline`, `metrics`, `review ...`, `actions`,
//! `trends`), for incident managers, responders and executives at a terminal
//! and for scripts (`--json`). All services are served at the one `--server`
//! address.
//!
//! What it must never do: decide anything about an incident. It checks the
//! shape of its arguments (incident, page and action item ids, enums, dates,
//! times) and, by the server's own rule, the free text of the request
//! (refusing in the server's words, exit 1), sends exactly one request per command (one per page for `list
//! --all-pages`), and prints the server's answer or its error message as is.
//! Documents the server renders (the Markdown postmortem, trend reports) are
//! printed byte for byte (only given a final newline should they lack one).
//!
//! Every call carries the API token as `authorization: Bearer …`
//! (`KLAXON_TOKEN`, `--token`, else `--token-file`/`KLAXON_TOKEN_FILE`); the
//! server records the token's principal as the actor. Commands carry a
//! `CommandContext` with `--request-id` (a fresh UUIDv4 by default) and
//! `--expect-version`; `ack` carries the request id too, and `join` numbers
//! its notes' ids from it, so that any invocation run again with the same
//! `--request-id` writes nothing twice. Connecting times out after 5 s, each request after
//! 30 s (`join` and `watch` have no request timeout).
//!
//! Exit codes: 0 success; 1 the server refused the request (InvalidArgument,
//! NotFound, FailedPrecondition, PermissionDenied, Unauthenticated,
//! ResourceExhausted, AlreadyExists); 2 usage error; 3 version conflict
//! (Aborted; the current version is printed); 4 server unreachable or
//! unavailable (connection refused, Unavailable, DeadlineExceeded); 5
//! anything else; 6 `policy lint` found problems (in the file, or without
//! `--config` in the server's running configuration); 130 `join` or `watch`
//! interrupted by Ctrl-C. Errors are
//! one line on stderr: `klaxon: <message>`.
//!
//! Modules:
//! - [`cli`]: the clap definitions, value parsers, and one pure
//!   request-building function per subcommand.
//! - [`commands`]: connecting, the one generic "send this request" path, the
//!   bridge session of `join` and the feed subscription of `watch`.
//! - [`render`]: human text and JSON views of the replies.
//! - [`error`]: failures, their one-line messages, and exit codes.

pub mod cli;
pub mod commands;
pub mod error;
pub mod render;

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use klaxon_proto::v1;

use crate::cli::Cli;
use crate::commands::{Action, Connection, REQUEST_TIMEOUT, Tls, Watched};
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
    let credentials = global.credentials();
    let tls = global.tls();
    match command.action(global.context()) {
        Action::Call(rpc) => {
            rpc.check_text().map_err(Error::Refused)?;
            let connection = Connection::open(&global.server, &tls, credentials, Some(REQUEST_TIMEOUT)).await?;
            let reply = connection.call(rpc.clone()).await?;
            let text = render::reply(&rpc, &reply, global.json);
            // Said beside the answer, which stays one line for scripts.
            if let commands::Reply::Report(report) = &reply {
                report.notices.iter().for_each(|notice| eprintln!("klaxon: note: {notice}"));
            }
            if render::verbatim(&rpc, global.json) { print_verbatim(&text) } else { print_line(&text) }
        }
        Action::Join { join, note_ids } => {
            let connection = Connection::open(&global.server, &tls, credentials, None).await?;
            let hint = !global.json && std::io::stdin().is_terminal();
            connection
                .join(join, &note_ids, |message| {
                    if let Some(line) = render::bridge_message(&message, global.json) {
                        print_line(&line)?;
                    }
                    if hint && matches!(message, v1::bridge_response::Message::Snapshot(_)) {
                        eprintln!("(joined: each line you type is posted as a note; Ctrl-D leaves)");
                    }
                    Ok(())
                })
                .await
        }
        Action::Watch(filter) => {
            let mut connection = Connection::open(&global.server, &tls, credentials.clone(), None).await?;
            // Nothing may be open: say at once that the feed is followed.
            let hint = (!global.json).then(|| render::watching(&filter));
            let mut cut = false;
            let mut pause = RECONNECT_PAUSE_MIN;
            loop {
                let on_open = || match (cut, &hint) {
                    (true, _) => {
                        eprintln!("klaxon: back on the status feed: the open incidents again, then every change")
                    }
                    (false, Some(line)) => eprintln!("{line}"),
                    (false, None) => {}
                };
                let watched = connection
                    .watch(filter.clone(), on_open, |item| write_stdout(&render::feed_item(&item, global.json), true))
                    .await;
                let why = match watched {
                    Ok(Watched::Reader) => return Ok(()),
                    Ok(Watched::Cut(None)) => "the server ended it (is it stopping or restarting?)".to_owned(),
                    Ok(Watched::Cut(Some(e))) => e.message(&global.server),
                    // Not reachable again yet (the feed's service may still be
                    // starting): the reconnecting goes on.
                    Err(e) if cut && e.exit() == Exit::Unreachable => {
                        connection = reconnect(&global.server, &tls, &credentials, &mut pause).await?;
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                eprintln!("klaxon: the status feed was cut: {why}; reconnecting until Ctrl-C");
                cut = true;
                // The feed was open: a new outage starts with a short pause.
                pause = RECONNECT_PAUSE_MIN;
                connection = reconnect(&global.server, &tls, &credentials, &mut pause).await?;
            }
        }
        Action::Lint { config: Some(config), days, strict } => lint(&config, days, strict, global.json),
        Action::Lint { config: None, days, strict } => {
            let connection = Connection::open(&global.server, &tls, credentials, Some(REQUEST_TIMEOUT)).await?;
            let report = connection.lint_policy(v1::LintPolicyRequest { days }).await?;
            let findings = report
                .findings
                .into_iter()
                .map(|f| {
                    let kind = klaxon_domain::policy::FindingKind::parse(&f.kind).ok_or_else(|| {
                        Error::Refused(klaxon_domain::Error::InvalidField {
                            field: "kind",
                            reason: format!("the server sent a finding of an unknown kind {:?}", f.kind),
                        })
                    })?;
                    Ok(klaxon_domain::policy::Finding { kind, key: f.key, message: f.message })
                })
                .collect::<Result<Vec<_>, Error>>()?;
            print_findings(&findings, strict, global.json, &format!("the configuration of {}", global.server))
        }
    }
}

/// Pauses between attempts to reach the server again for `watch`.
const RECONNECT_PAUSE_MIN: Duration = Duration::from_millis(500);
const RECONNECT_PAUSE_MAX: Duration = Duration::from_secs(5);

/// Opens a connection to one of `servers` again after `pause`, doubling
/// it (up to [`RECONNECT_PAUSE_MAX`]) for each attempt, until one answers,
/// one refuses for another reason, or Ctrl-C. `pause` carries over to the
/// next call: a feed whose service stays down is asked less and less often.
async fn reconnect(
    servers: &str,
    tls: &Tls,
    credentials: &Option<tonic::metadata::AsciiMetadataValue>,
    pause: &mut Duration,
) -> Result<Connection, Error> {
    loop {
        tokio::select! {
            () = tokio::time::sleep(*pause) => {}
            _ = tokio::signal::ctrl_c() => return Err(Error::Interrupted),
        }
        *pause = (*pause * 2).min(RECONNECT_PAUSE_MAX);
        match Connection::open(servers, tls, credentials.clone(), None).await {
            Ok(connection) => return Ok(connection),
            Err(e) if e.exit() == Exit::Unreachable => {}
            Err(e) => return Err(e),
        }
    }
}

/// `klaxon policy lint --config FILE`: parses and validates the file as
/// the server would (a problem is named by its key), lints it from now on,
/// prints every finding, and fails when one counts ([`print_findings`]).
fn lint(config: &cli::ConfigFile, days: u32, strict: bool, json: bool) -> Result<(), Error> {
    use klaxon_domain::policy;
    let (sections, policy) = policy::parse(&config.text)
        .map_err(|error| Error::Lint { path: config.path.clone(), problems: vec![error.to_string()] })?;
    let findings = policy::lint(&sections, &policy, chrono::Utc::now(), days);
    print_findings(&findings, strict, json, &config.path)
}

/// Prints the findings of a lint of `what` ([`render::findings`]) and
/// fails (exit 6) when one counts: any with `strict`, else those always
/// wrong (shadowed rules, severities that page nobody).
fn print_findings(
    findings: &[klaxon_domain::policy::Finding],
    strict: bool,
    json: bool,
    what: &str,
) -> Result<(), Error> {
    print_line(&render::findings(findings, json))?;
    let failing: Vec<String> = findings
        .iter()
        .filter(|f| strict || f.kind.always_wrong())
        .map(|f| format!("{}: {}", f.key, f.message))
        .collect();
    if failing.is_empty() { Ok(()) } else { Err(Error::Lint { path: what.to_owned(), problems: failing }) }
}

/// Prints one line (or block) on stdout and flushes it, so `join` output
/// appears at once; a closed pipe (`klaxon list | head`) is not an error.
fn print_line(text: &str) -> Result<(), Error> {
    write_stdout(text, true).map(drop)
}

/// Prints a document the server rendered exactly as it is, only ending it
/// with a newline should it lack one.
fn print_verbatim(text: &str) -> Result<(), Error> {
    write_stdout(text, !text.is_empty() && !text.ends_with('\n')).map(drop)
}

/// Writes `text` (and a newline) on stdout and flushes it; `false` when
/// stdout is a closed pipe (`klaxon watch | head`), which is not an error.
fn write_stdout(text: &str, newline: bool) -> Result<bool, Error> {
    let mut out = std::io::stdout().lock();
    let written = out.write_all(text.as_bytes()).and_then(|()| if newline { out.write_all(b"\n") } else { Ok(()) });
    match written.and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(Error::Output(e)),
        Ok(()) => Ok(true),
    }
}
