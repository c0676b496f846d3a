//! Why an invocation failed, the one line printed for it, and its exit code.
//!
//! The mapping is by gRPC status code only, never by message text; the
//! server's message is printed as is, since it already names the field or
//! the rule.

use std::fmt;

#[cfg(test)]
mod tests;

/// The trailer in which the server puts the incident's current version when
/// it answers ABORTED (set by the servers' one mapping).
pub use klaxon_proto::status::CURRENT_VERSION_TRAILER;

/// The process exit codes, as documented in `klaxon --help`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Exit {
    /// The command did what was asked.
    Success = 0,
    /// The server refused the request: invalid argument, unknown incident,
    /// a lifecycle rule, permissions, limits, a duplicate.
    Refused = 1,
    /// The command line was wrong (clap's own exit code).
    Usage = 2,
    /// `--expect-version` was stale.
    Conflict = 3,
    /// The server could not be reached or is unavailable.
    Unreachable = 4,
    /// Anything else: an internal server error, an unimplemented RPC, a
    /// local output error.
    Other = 5,
    /// `klaxon policy lint` found problems (or the file does not validate).
    Lint = 6,
    /// `klaxon join` or `klaxon watch` was interrupted by Ctrl-C (the shell
    /// convention).
    Interrupted = 130,
}

impl Exit {
    /// The exit code for a gRPC status code.
    pub fn from_code(code: tonic::Code) -> Exit {
        use tonic::Code;
        match code {
            Code::Ok => Exit::Success,
            Code::InvalidArgument
            | Code::NotFound
            | Code::FailedPrecondition
            | Code::PermissionDenied
            | Code::Unauthenticated
            | Code::ResourceExhausted
            | Code::AlreadyExists => Exit::Refused,
            Code::Aborted => Exit::Conflict,
            Code::Unavailable | Code::DeadlineExceeded => Exit::Unreachable,
            Code::Cancelled
            | Code::Unknown
            | Code::OutOfRange
            | Code::Unimplemented
            | Code::Internal
            | Code::DataLoss => Exit::Other,
        }
    }
}

impl From<Exit> for std::process::ExitCode {
    fn from(e: Exit) -> std::process::ExitCode {
        std::process::ExitCode::from(e as u8)
    }
}

/// Why an invocation failed.
#[derive(Debug)]
pub enum Error {
    /// The connection could not be established.
    Unreachable {
        /// The `--server` address.
        server: String,
        /// The innermost cause, such as "Connection refused (os error 111)".
        detail: String,
    },
    /// The connection failed after it was opened, before an answer came:
    /// the server closed it (a server requiring client certificates does so
    /// when the TLS handshake ends without an acceptable one) or went away.
    ConnectionLost {
        /// The innermost cause, such as "connection closed".
        detail: String,
    },
    /// Something answered, over HTTP, but not as a gRPC server: the
    /// address is another server's (often klaxond's own HTTP address).
    NotGrpc {
        /// What it answered, such as "HTTP 404 Not Found".
        answered: String,
    },
    /// The server ended a stream the client had not ended (the bridge):
    /// it is stopping or restarting.
    Ended {
        /// What ended, and what to do: "the bridge of INC-7 (is it stopping
        /// or restarting?); you have left it: join again with `klaxon join
        /// INC-7`".
        what: String,
    },
    /// The server answered with an error status.
    Status(Box<tonic::Status>),
    /// The request was refused before it was sent, by the rule the server
    /// applies too (free text): the same words, the same exit code as the
    /// server's `INVALID_ARGUMENT`.
    Refused(klaxon_domain::Error),
    /// Ctrl-C during `join` or `watch`.
    Interrupted,
    /// Writing the output failed.
    Output(std::io::Error),
    /// `klaxon policy lint` found problems in the file at `path` (each
    /// `key: problem`), or the file does not validate (its one problem).
    Lint {
        /// The file linted.
        path: String,
        /// What fails the lint.
        problems: Vec<String>,
    },
}

impl Error {
    /// The exit code of this failure.
    pub fn exit(&self) -> Exit {
        match self {
            Error::Unreachable { .. } | Error::ConnectionLost { .. } | Error::NotGrpc { .. } | Error::Ended { .. } => {
                Exit::Unreachable
            }
            Error::Status(s) => Exit::from_code(s.code()),
            Error::Refused(_) => Exit::Refused,
            Error::Interrupted => Exit::Interrupted,
            Error::Output(_) => Exit::Other,
            Error::Lint { .. } => Exit::Lint,
        }
    }

    /// The one line printed on stderr after `klaxon: `; `server` is the
    /// `--server` address, named whenever the server could not be reached.
    pub fn message(&self, server: &str) -> String {
        const HINT: &str = "is klaxond running there? Set --server or KLAXON_SERVER to its address";
        let line = match self {
            Error::Unreachable { server, detail } => format!("cannot reach the server at {server}: {detail}; {HINT}"),
            Error::ConnectionLost { detail } if server.starts_with("https://") => format!(
                "the connection to the server at {server} failed: {detail}; a server that requires client \
                 certificates closes it when --client-cert is missing or not signed by a CA it trusts"
            ),
            Error::ConnectionLost { detail } => format!("the connection to the server at {server} failed: {detail}"),
            Error::Ended { what } => format!("the server at {server} ended {what}"),
            Error::NotGrpc { answered } => format!(
                "{server} is not Klaxon's gRPC API (it answered {answered}); klaxond's HTTP address (Alertmanager, \
                 /metrics, /status) is another port than its gRPC one (--listen, 127.0.0.1:7600 by default). Set \
                 --server or KLAXON_SERVER to the gRPC address"
            ),
            Error::Status(s) => {
                let text =
                    if s.message().is_empty() { s.code().description().to_string() } else { s.message().to_string() };
                match s.code() {
                    tonic::Code::Unavailable | tonic::Code::DeadlineExceeded => {
                        format!("the server at {server} is unavailable: {text}; {HINT}")
                    }
                    tonic::Code::Aborted => match current_version(s) {
                        Some(v) => {
                            format!("{text} (current version: {v})")
                        }
                        None => text,
                    },
                    _ => text,
                }
            }
            Error::Refused(e) => e.to_string(),
            Error::Interrupted => "interrupted".to_string(),
            Error::Output(e) => format!("cannot write the output: {e}"),
            Error::Lint { path, problems } => match problems.as_slice() {
                [one] => format!("{path}: {one}"),
                many => format!("{path}: {} problems, the first: {}", many.len(), many[0]),
            },
        };
        // One line, whatever the server put in its message.
        line.replace(['\r', '\n'], " ")
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message("the server"))
    }
}

impl From<tonic::Status> for Error {
    /// A status tonic made itself from a failed connection (its source is
    /// the transport error; a server's answer never has one) is a lost
    /// connection, not the server's verdict.
    fn from(s: tonic::Status) -> Error {
        let transport = std::error::Error::source(&s).and_then(|e| e.downcast_ref::<tonic::transport::Error>());
        match transport {
            Some(e) => Error::ConnectionLost { detail: crate::commands::root_cause(e) },
            None => match not_grpc(&s) {
                Some(answered) => Error::NotGrpc { answered },
                None => Error::Status(Box::new(s)),
            },
        }
    }
}

/// What a plain HTTP server answered, when tonic made `status` from a
/// response that was not gRPC: its HTTP status, which tonic names in the
/// message ("… while receiving response with status: 404 Not Found", or
/// "… mapped from HTTP status code 404").
fn not_grpc(status: &tonic::Status) -> Option<String> {
    let message = status.message();
    let http = ["while receiving response with status: ", "mapped from HTTP status code "]
        .iter()
        .find_map(|marker| message.split_once(marker).map(|(_, rest)| rest.trim()))?;
    Some(format!("HTTP {http}"))
}

/// The incident's current version from a version conflict: the
/// [`CURRENT_VERSION_TRAILER`], else the number after "current version" in
/// the message.
pub fn current_version(status: &tonic::Status) -> Option<u64> {
    let from_trailer =
        status.metadata().get(CURRENT_VERSION_TRAILER).and_then(|v| v.to_str().ok()?.trim().parse().ok());
    from_trailer.or_else(|| {
        let lower = status.message().to_ascii_lowercase();
        let rest = &lower[lower.find("current version")? + "current version".len()..];
        let digits: String =
            rest.trim_start_matches([' ', ':', '=', 'i', 's']).chars().take_while(char::is_ascii_digit).collect();
        digits.parse().ok()
    })
}
