//! Runs the built `klaxon` binary as a user would. No server is started
//! here: these cases cover what the binary must do on its own (usage errors,
//! an unreachable server). The end-to-end tests against a real `klaxond`
//! live with the workspace's end-to-end suite.

use std::net::TcpListener;
use std::process::{Command, Output, Stdio};

/// Runs `klaxon` with `args`, stdin closed, and no Klaxon variables from the
/// environment leaking in.
fn klaxon(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_klaxon"))
        .args(args)
        .env_remove("KLAXON_SERVER")
        .env_remove("KLAXON_TOKEN")
        .env_remove("KLAXON_TOKEN_FILE")
        .stdin(Stdio::null())
        .output()
        .expect("the klaxon binary runs")
}

/// The address of a local port nothing listens on (bound, then released).
fn dead_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    format!("http://127.0.0.1:{port}")
}

fn stderr(out: &Output) -> String {
    String::from_utf8(out.stderr.clone()).unwrap()
}

#[test]
fn an_unreachable_server_exits_4_with_one_line_naming_it() {
    let server = dead_server();
    let cases: &[&[&str]] = &[
        &["show", "INC-1"],
        &["--json", "declare", "INC-1", "--severity", "1"],
        &["list", "--all-pages"],
        &["join", "INC-1"],
        &["severity", "explain", "INC-1"],
        &["ack", "INC-1-P1"],
        &["--json", "oncall", "--at", "2025-03-01T10:00:00Z"],
        &["pages", "INC-1"],
        &["noise", "INC-1", "--reason", "flapping"],
        &["watch", "--min-severity", "2"],
        &["--json", "timeline", "INC-1", "--as-of-position", "3"],
        &["metrics", "INC-1"],
        &["review", "show", "INC-1"],
        &["review", "action", "done", "INC-1-A1"],
        &["review", "export", "INC-1"],
        &["actions", "--open"],
        &["trends", "--from", "2026-11-01", "--to", "2026-12-01", "--csv"],
    ];
    for args in cases {
        let argv: Vec<&str> = ["--server", server.as_str()].iter().chain(args.iter()).copied().collect();
        let out = klaxon(&argv);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(4), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("klaxon: ") && err.contains(&server), "{args:?}: {err}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
}

#[test]
fn the_server_can_come_from_the_environment() {
    let server = dead_server();
    let out = Command::new(env!("CARGO_BIN_EXE_klaxon"))
        .args(["history", "INC-2"])
        .env("KLAXON_SERVER", &server)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4));
    assert!(stderr(&out).contains(&server));
}

#[test]
fn usage_errors_exit_2() {
    let cases: &[(&[&str], &str)] = &[
        (&["declare"], "<INCIDENT>"),
        (&["declare", "INC-1"], "--severity"),
        (&["declare", "INC-1", "--severity", "7"], "--severity"),
        (&["handoff", "request", "INC-1"], "--to"),
        (&["ack", "INC-1"], "<PAGE>"),
        (&["oncall", "--at", "soon"], "--at"),
        (&["noise", "INC-1"], "--reason"),
        (&["watch", "--min-severity", "0"], "--min-severity"),
        (&["timeline", "INC-1", "--as-of", "noon"], "--as-of"),
        (&["review", "action", "assign", "INC-1", "ana"], "<ITEM>"),
        (&["review", "action", "due", "INC-1-A1", "2026-02-30"], "<DUE>"),
        (&["trends", "--from", "2026-11-01", "--to", "later"], "--to"),
        (&[], "Usage"),
    ];
    for (args, named) in cases {
        let out = klaxon(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(stderr(&out).contains(named), "{args:?}: {}", stderr(&out));
    }
}

/// `export KLAXON_TOKEN=$(klaxond token create …)` whose command failed
/// leaves the variable empty: the error names the variable, exits 2 and
/// sends nothing.
#[test]
fn an_empty_token_variable_is_named() {
    let out = Command::new(env!("CARGO_BIN_EXE_klaxon"))
        .args(["--server", &dead_server(), "show", "INC-1"])
        .env("KLAXON_TOKEN", "")
        .env_remove("KLAXON_TOKEN_FILE")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("is empty: set KLAXON_TOKEN"), "{}", stderr(&out));
    let out = klaxon(&["--token", " x y", "show", "INC-1"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("printable ASCII, no spaces"), "{}", stderr(&out));
}

#[test]
fn help_lists_every_command_and_the_exit_codes() {
    let out = klaxon(&["--help"]);
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8(out.stdout).unwrap();
    for word in [
        "report",
        "declare",
        "severity",
        "assign",
        "handoff",
        "role",
        "update",
        "impact",
        "mitigate",
        "resolve",
        "reopen",
        "validate",
        "show",
        "list",
        "history",
        "join",
        "pages",
        "ack",
        "oncall",
        "noise",
        "watch",
        "timeline",
        "metrics",
        "review",
        "actions",
        "trends",
        "Exit codes:",
    ] {
        assert!(help.contains(word), "--help lacks {word}");
    }
}
