use tonic::Code;

use super::{CURRENT_VERSION_TRAILER, Error, Exit};

#[test]
fn every_status_code_has_its_exit_code() {
    let cases = [
        (Code::Ok, Exit::Success),
        (Code::InvalidArgument, Exit::Refused),
        (Code::NotFound, Exit::Refused),
        (Code::FailedPrecondition, Exit::Refused),
        (Code::PermissionDenied, Exit::Refused),
        (Code::Unauthenticated, Exit::Refused),
        (Code::ResourceExhausted, Exit::Refused),
        (Code::AlreadyExists, Exit::Refused),
        (Code::Aborted, Exit::Conflict),
        (Code::Unavailable, Exit::Unreachable),
        (Code::DeadlineExceeded, Exit::Unreachable),
        (Code::Cancelled, Exit::Other),
        (Code::Unknown, Exit::Other),
        (Code::OutOfRange, Exit::Other),
        (Code::Unimplemented, Exit::Other),
        (Code::Internal, Exit::Other),
        (Code::DataLoss, Exit::Other),
    ];
    for (code, exit) in cases {
        assert_eq!(Exit::from_code(code), exit, "{code:?}");
    }
    let numbers = [Exit::Success, Exit::Refused, Exit::Usage, Exit::Conflict, Exit::Unreachable, Exit::Other];
    assert_eq!(numbers.map(|e| e as u8), [0, 1, 2, 3, 4, 5]);
}

fn message(status: tonic::Status) -> String {
    Error::from(status).message("http://127.0.0.1:7600")
}

#[test]
fn refusals_print_the_server_message_as_is() {
    let m = message(tonic::Status::failed_precondition("rule resolve.already_resolved forbids this"));
    assert_eq!(m, "rule resolve.already_resolved forbids this");
    assert_eq!(message(tonic::Status::new(Code::Internal, "")), "Internal error");
    assert_eq!(message(tonic::Status::invalid_argument("bad\ntitle")), "bad title");
}

#[test]
fn a_version_conflict_names_the_current_version() {
    let mut status = tonic::Status::aborted("INC-3 is at another version than expected");
    status.metadata_mut().insert(CURRENT_VERSION_TRAILER, "12".parse().unwrap());
    assert_eq!(message(status), "INC-3 is at another version than expected (current version: 12)");
    let from_text = message(tonic::Status::aborted("expected version 3, current version is 5"));
    assert!(from_text.ends_with("(current version: 5)"), "{from_text}");
    assert_eq!(message(tonic::Status::aborted("conflict")), "conflict");
}

#[test]
fn unreachable_and_unavailable_name_the_server() {
    let unreachable = Error::Unreachable { server: "http://127.0.0.1:9".into(), detail: "Connection refused".into() };
    assert_eq!(unreachable.exit(), Exit::Unreachable);
    assert!(
        unreachable
            .message("ignored")
            .starts_with("cannot reach the server at http://127.0.0.1:9: Connection refused;")
    );
    let lost = Error::ConnectionLost { detail: "connection closed".into() };
    assert_eq!(lost.exit(), Exit::Unreachable);
    let text = lost.message("https://127.0.0.1:7600");
    assert!(text.starts_with("the connection to the server at https://127.0.0.1:7600 failed: connection closed;"));
    assert!(text.contains("--client-cert"), "{text}");
    let plain = lost.message("http://127.0.0.1:7600");
    assert_eq!(plain, "the connection to the server at http://127.0.0.1:7600 failed: connection closed");
    // A server's own answer is its verdict, whatever its code.
    assert!(matches!(Error::from(tonic::Status::cancelled("stop")), Error::Status(_)));
    let unavailable = message(tonic::Status::unavailable("shutting down"));
    assert!(
        unavailable.starts_with("the server at http://127.0.0.1:7600 is unavailable: shutting down;"),
        "{unavailable}"
    );
    assert!(unavailable.contains("--server"));
}
