//! `klaxond backup`: a running log server's log copied while it is written,
//! into a folder that is then a log of its own (what a restore puts in
//! place).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use klaxon_bus::RemoteLog;
use klaxon_bus::source::EventLog as _;
use klaxon_log::{EventData, EventKind, ExpectedVersion, Log, Metadata, NewEvent, Options, Position, Record, StreamId};
use klaxon_tests::nats::NatsServer;
use klaxon_tests::{Klaxond, auth, binary};

fn event(n: u64) -> NewEvent {
    NewEvent {
        id: uuid::Uuid::new_v4(),
        kind: EventKind::new("backup.tested.v1").unwrap(),
        data: EventData::from_value(&serde_json::json!({ "n": n, "pad": "x".repeat(200) })).unwrap(),
        metadata: Metadata { actor: Some("backup-test".into()), ..Metadata::default() },
    }
}

/// `klaxond backup DEST --server SERVER` with the service token in `token_file`.
fn backup(dest: &Path, server: &str, token_file: &Path) -> Output {
    Command::new(binary("klaxond"))
        .arg("backup")
        .arg(dest)
        .args(["--server", server, "--service-token-file"])
        .arg(token_file)
        .env("RUST_LOG", "warn")
        .env_remove("KLAXON_CONFIG")
        .output()
        .expect("run klaxond backup")
}

/// The last position the backup says it holds.
fn backed_up(out: &Output) -> u64 {
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "backup failed: {stdout}{}", String::from_utf8_lossy(&out.stderr));
    let rest = stdout.split("backed up positions 1 to ").nth(1).unwrap_or_else(|| panic!("{stdout}"));
    rest.split_whitespace().next().unwrap().parse().unwrap()
}

/// Every record of `remote` from 1 to `head`.
async fn records(remote: &RemoteLog, head: u64) -> Vec<Record> {
    let mut out = Vec::new();
    while (out.len() as u64) < head {
        let next = Position(out.len() as u64 + 1);
        out.extend(remote.read_all(next, 1000).await.unwrap());
    }
    out.truncate(head as usize);
    out
}

/// The backup folder opened as a log: verified whole, and its records.
fn open_backup(dest: &Path) -> (Log, Vec<Record>) {
    let log = Log::open(dest, Options::default()).expect("the backup opens as a log");
    let report = log.verify().expect("the backup verifies");
    let records = log.read_all(Position(1), usize::MAX).unwrap();
    assert_eq!(report.records, records.len() as u64);
    (log, records)
}

/// A log server (with its NATS) in a temporary folder, the services' token
/// in a file, and a client of it.
struct Served {
    dir: tempfile::TempDir,
    _nats: NatsServer,
    server: Klaxond,
    token_file: PathBuf,
    remote: RemoteLog,
}

impl Served {
    fn start() -> Served {
        let dir = tempfile::tempdir().unwrap();
        let nats = NatsServer::start(&dir.path().join("nats"));
        let data = dir.path().join("log");
        let server = Klaxond::serve("log", &["--data-dir", data.to_str().unwrap(), "--nats", &nats.url], &[]);
        let token_file = dir.path().join("service.token");
        std::fs::write(&token_file, auth::token(auth::SERVICE)).unwrap();
        let remote = RemoteLog::connect_lazy_tls(&server.address, None, Some(auth::token(auth::SERVICE))).unwrap();
        Served { dir, _nats: nats, server, token_file, remote }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_while_the_log_is_written_is_a_prefix_of_it_and_a_second_run_adds_what_came_since() {
    let Served { dir, _nats, server, token_file, remote } = Served::start();

    // 1,500 events over 50 streams, in appends of 3.
    let mut n = 0;
    for round in 0..10 {
        for s in 0..50 {
            let stream = StreamId::new(format!("s-{s}")).unwrap();
            let events = (0..3).map(|_| {
                n += 1;
                event(n)
            });
            let expected = if round == 0 { ExpectedVersion::NoStream } else { ExpectedVersion::Any };
            remote.append(&stream, expected, events.collect()).await.unwrap();
        }
    }
    // And a writer that goes on while the backup runs.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (remote, stop) = (remote.clone(), stop.clone());
        tokio::spawn(async move {
            let stream = StreamId::new("during").unwrap();
            let mut n = 100_000;
            while !stop.load(Ordering::SeqCst) {
                n += 1;
                remote.append(&stream, ExpectedVersion::Any, vec![event(n)]).await.unwrap();
            }
        })
    };

    let dest = dir.path().join("backup");
    let first = {
        let (dest, address, token_file) = (dest.clone(), server.address.clone(), token_file.clone());
        tokio::task::spawn_blocking(move || backup(&dest, &address, &token_file)).await.unwrap()
    };
    let copied = backed_up(&first);
    assert!(copied >= 1500, "the backup stops at the head it found, which held the first 1,500: {copied}");
    assert!(String::from_utf8_lossy(&first.stdout).contains(&format!("({copied} new)")));
    let (log, backed) = open_backup(&dest);
    assert_eq!(backed, records(&remote, copied).await, "the backup is the log's prefix, record for record");
    log.close().await;
    drop(log);

    // Later: what was written since is added, and the folder is again the
    // log's prefix; every event id is known to the copy (a retry of any of
    // them after a restore is a duplicate).
    stop.store(true, Ordering::SeqCst);
    writer.await.unwrap();
    let head = remote.head().await.unwrap().0;
    assert!(head > copied, "the writer wrote during and after the first backup");
    let second = backup(&dest, &server.address, &token_file);
    assert_eq!(backed_up(&second), head);
    assert!(String::from_utf8_lossy(&second.stdout).contains(&format!("({} new)", head - copied)));
    let all = records(&remote, head).await;
    let (log, backed) = open_backup(&dest);
    assert_eq!(backed, all);
    for record in [&all[0], &all[head as usize / 2], &all[head as usize - 1]] {
        assert_eq!(log.locate(record.id).unwrap().map(|(p, _, _)| p), Some(record.position));
    }
    log.close().await;
    drop(log);

    // A third run with nothing new writes nothing.
    let third = backup(&dest, &server.address, &token_file);
    assert_eq!(backed_up(&third), head);
    assert!(String::from_utf8_lossy(&third.stdout).contains("(0 new)"));
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_into_another_logs_folder_or_without_a_service_token_is_refused_and_writes_nothing() {
    let Served { dir, _nats, server, token_file, remote } = Served::start();
    let stream = StreamId::new("s").unwrap();
    remote.append(&stream, ExpectedVersion::NoStream, (1..=5).map(event).collect()).await.unwrap();

    // A folder holding another log (same positions, other events).
    let other = dir.path().join("other");
    {
        let log = Log::open(&other, Options::default()).unwrap();
        log.append(&stream, ExpectedVersion::NoStream, (1..=2).map(event).collect()).await.unwrap();
        log.close().await;
    }
    let refused = backup(&other, &server.address, &token_file);
    assert_eq!(refused.status.code(), Some(1), "{refused:?}");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("holds another log than"), "{stderr}");
    assert!(stderr.contains("position 2"), "{stderr}");
    let (log, kept) = open_backup(&other);
    assert_eq!(kept.len(), 2, "the other log's folder was not written");
    log.close().await;

    // A folder further than the server's head (its own records: the
    // tokens and configuration it started with, and the 5) is not a backup
    // of it either.
    let longer = dir.path().join("longer");
    let head = remote.head().await.unwrap().0;
    {
        let log = Log::open(&longer, Options::default()).unwrap();
        log.append(&stream, ExpectedVersion::NoStream, (1..=head + 1).map(event).collect()).await.unwrap();
        log.close().await;
    }
    let refused = backup(&longer, &server.address, &token_file);
    assert_eq!(refused.status.code(), Some(1), "{refused:?}");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains(&format!("holds positions up to {}, beyond", head + 1)), "{stderr}");

    // A person's token may not read the log.
    let person = dir.path().join("maria.token");
    std::fs::write(&person, auth::token("maria")).unwrap();
    let dest = dir.path().join("backup");
    let refused = backup(&dest, &server.address, &person);
    assert_eq!(refused.status.code(), Some(1), "{refused:?}");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("maria (manager) may not call /klaxon.v1.EventLog/Head"), "{stderr}");
    assert!(!dest.exists(), "a refused backup made its folder");
    drop(server);
}

/// A backup killed with SIGKILL leaves a folder that is a log and a prefix
/// of the server's (each batch is written atomically and durably), and the
/// next run completes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_killed_midway_leaves_a_prefix_that_the_next_run_completes() {
    let Served { dir, _nats, server, token_file, remote } = Served::start();
    // 20,000 events in appends of 100: twenty batches of the backup.
    let mut n = 0;
    for s in 0..200 {
        let stream = StreamId::new(format!("s-{s}")).unwrap();
        let events: Vec<NewEvent> = (0..100)
            .map(|_| {
                n += 1;
                event(n)
            })
            .collect();
        remote.append(&stream, ExpectedVersion::NoStream, events).await.unwrap();
    }
    let head = remote.head().await.unwrap().0;

    // Killed once some batches are on disk (sled's file has grown past a
    // megabyte of the about six), at whatever point it has reached.
    let dest = dir.path().join("backup");
    let mut child = Command::new(binary("klaxond"))
        .arg("backup")
        .arg(&dest)
        .args(["--server", &server.address, "--service-token-file"])
        .arg(&token_file)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("start klaxond backup");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let written = || std::fs::metadata(dest.join("db")).map_or(0, |m| m.len());
    while written() < 1_000_000 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    child.kill().unwrap();
    child.wait().unwrap();

    let all = records(&remote, head).await;
    if dest.exists() {
        let (log, kept) = open_backup(&dest);
        assert_eq!(kept[..], all[..kept.len()], "the killed backup's folder is a prefix of the log");
        log.close().await;
        drop(log);
    }
    let rerun = backup(&dest, &server.address, &token_file);
    assert_eq!(backed_up(&rerun), head);
    let (log, backed) = open_backup(&dest);
    assert_eq!(backed, all);
    log.close().await;
    drop(server);
}
