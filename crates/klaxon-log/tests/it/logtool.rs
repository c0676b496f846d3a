//! `klaxon-logtool verify` and `dump` as an operator runs them on a backup.

use std::process::{Command, Output};

use klaxon_log::{ExpectedVersion, Log, Options};

use crate::support::{event, sid};

fn logtool(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_klaxon-logtool")).args(args).output().expect("run klaxon-logtool")
}

/// A mistyped path, or a folder without a log, is refused and left as it
/// was: `verify` used to open (so create) an empty log there and report
/// it sound.
#[tokio::test]
async fn verify_and_dump_refuse_a_folder_without_a_log_and_create_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("klaxon-log-2026-12-07");
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    for command in ["verify", "dump"] {
        for (folder, why) in [(&missing, "no such folder"), (&empty, "no event log in it")] {
            let out = logtool(&[command, folder.to_str().unwrap()]);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{command} {}: {stderr}", folder.display());
            assert!(stderr.contains(why) && stderr.contains(folder.to_str().unwrap()), "{stderr}");
            assert!(out.stdout.is_empty());
        }
        assert!(!missing.exists(), "{command} created nothing");
        assert_eq!(std::fs::read_dir(&empty).unwrap().count(), 0, "{command} wrote nothing into the empty folder");
    }

    // A real log, stopped: verified and dumped.
    let real = dir.path().join("log");
    let log = Log::open(&real, Options::default()).unwrap();
    log.append(&sid("backup-1"), ExpectedVersion::NoStream, vec![event(1), event(2)]).await.unwrap();
    log.close().await;
    drop(log);
    let out = logtool(&["verify", real.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["records"], 2, "{report}");
    let out = logtool(&["dump", real.to_str().unwrap()]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 2);
}
