//! Helpers for Klaxon's end-to-end tests: find (or build once) the real
//! binaries, start `klaxond` on a free loopback port with its own data
//! folder, run the `klaxon` CLI against it, and stop everything the test
//! started, also when the test fails.
//!
//! What it must never do: fake a Klaxon component. Every test here talks to
//! real processes over real sockets.

pub mod alertmanager;
pub mod auth;
pub mod browser;
pub mod cluster;
pub mod config;
pub mod group;
pub mod metrics;
pub mod nats;
pub mod otlp;
pub mod ports;
pub mod proxy;
pub mod receiver;
pub mod seed;
pub mod tls;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::Once;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The path of a workspace binary (`klaxond`, `klaxon`), built once with
/// cargo when it is missing or older than a source file of the workspace's
/// crates (so `cargo nextest run -p klaxon-tests` after an edit never tests
/// a stale server).
pub fn binary(name: &str) -> PathBuf {
    static BUILD: Once = Once::new();
    let dir = target_dir();
    let path = dir.join(name);
    if is_stale(&path) {
        BUILD.call_once(|| {
            let workspace = concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.toml");
            let status = Command::new(env!("CARGO"))
                .args(["build", "--manifest-path", workspace, "-p", "klaxond", "-p", "klaxon-cli", "--bins"])
                .status()
                .expect("run cargo build");
            assert!(status.success(), "cargo build of the binaries failed");
        });
    }
    assert!(path.exists(), "{} was not built", path.display());
    path
}

/// Whether `binary` is missing or older than the newest `.rs`, `.proto` or
/// `Cargo.toml` below `crates/` and `proto/`.
fn is_stale(binary: &Path) -> bool {
    fn newest(dir: &Path, latest: &mut std::time::SystemTime) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                if path.file_name().is_none_or(|n| n != "target") {
                    newest(&path, latest);
                }
            } else if path.extension().is_some_and(|e| e == "rs" || e == "proto")
                || path.file_name().is_some_and(|n| n == "Cargo.toml")
            {
                *latest = meta.modified().map_or(*latest, |m| m.max(*latest));
            }
        }
    }
    let Ok(built) = std::fs::metadata(binary).and_then(|m| m.modified()) else { return true };
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut sources = std::time::SystemTime::UNIX_EPOCH;
    for dir in ["crates", "proto"] {
        newest(&root.join(dir), &mut sources);
    }
    sources > built
}

/// Builds the `klaxond` a benchmark runs, in that executable's profile:
/// the helpers only build it when it is missing, and a stale one would be
/// measured silently.
pub fn build_klaxond_for_bench() {
    let exe = std::env::current_exe().unwrap();
    let profile = exe.parent().and_then(Path::parent).and_then(Path::file_name).unwrap().to_string_lossy().into_owned();
    let workspace = concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.toml");
    let mut cargo = Command::new(env!("CARGO"));
    cargo.args(["build", "--manifest-path", workspace, "-p", "klaxond", "--bin", "klaxond"]);
    // What cargo set for this executable (its package's name, folder, …)
    // would look changed to build scripts that watch those variables
    // (ring's), and rebuild them on every run.
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        let package = ["CARGO_PKG_", "CARGO_MANIFEST_", "CARGO_CRATE_", "CARGO_BIN_", "CARGO_PRIMARY_PACKAGE"];
        if package.iter().any(|p| key.starts_with(p)) || key == "CARGO_TARGET_TMPDIR" || key == "OUT_DIR" {
            cargo.env_remove(key.as_ref());
        }
    }
    // `cargo bench` builds into `release` with the `bench` profile; building
    // klaxond with the same profile shares its dependencies' artifacts.
    match profile.as_str() {
        "debug" => {}
        "release" => {
            cargo.args(["--profile", "bench"]);
        }
        other => {
            cargo.args(["--profile", other]);
        }
    }
    assert!(cargo.status().expect("run cargo build").success(), "cargo build -p klaxond failed");
}

/// `target/<profile>`, from this test executable's own path
/// (`target/<profile>/deps/e2e-…`).
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    exe.parent().and_then(Path::parent).expect("target/<profile>/deps").to_path_buf()
}

/// A running `klaxond up`, killed with SIGKILL when dropped unless stopped.
pub struct Klaxond {
    child: Option<Child>,
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    /// `127.0.0.1:<port>`.
    pub address: String,
    /// Its data folder.
    pub data_dir: PathBuf,
    /// `127.0.0.1:<port>` of the HTTP intake (Alertmanager, PagerDuty), for
    /// `up` and `serve intake`, which get `--http-listen 127.0.0.1:0` unless
    /// the caller passes `--http-listen`.
    pub http_address: Option<String>,
    /// `127.0.0.1:<port>` of the e-mail intake (SMTP), when the process
    /// runs it (`--smtp-listen` or `[intake] smtp_listen`).
    pub smtp_address: Option<String>,
    lines: mpsc::Receiver<String>,
}

/// Where a spawned `klaxond` writes its log: inherited, or with
/// `KLAXON_TEST_LOG_DIR` set, a file of its own there named by its role,
/// the test process's id and a sequence number (`serve-paging-4242-7.log`),
/// so that a failing run's processes can be told apart.
fn stderr_for(args: &[std::ffi::OsString]) -> Stdio {
    static SPAWNED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let Some(dir) = std::env::var_os("KLAXON_TEST_LOG_DIR") else { return Stdio::inherit() };
    let n = SPAWNED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let role: Vec<String> = args.iter().take(2).map(|a| a.to_string_lossy().into_owned()).collect();
    let path = PathBuf::from(dir).join(format!("{}-{}-{n}.log", role.join("-"), std::process::id()));
    match std::fs::File::create(&path) {
        Ok(file) => Stdio::from(file),
        Err(_) => Stdio::inherit(),
    }
}

impl Klaxond {
    /// Starts `klaxond up` on a free loopback port with `data_dir`, and waits
    /// (at most 60 s) until it says where it listens.
    pub fn start(data_dir: &Path) -> Klaxond {
        Self::start_with(data_dir, &[])
    }

    /// Like [`Klaxond::start`], with extra arguments to `up`.
    pub fn start_with(data_dir: &Path, extra: &[&str]) -> Klaxond {
        Self::start_with_env(data_dir, extra, &[])
    }

    /// `klaxond up` on `address` (again, after a stop) with `data_dir`.
    pub fn start_on(address: &str, data_dir: &Path) -> Klaxond {
        let args: Vec<std::ffi::OsString> =
            vec!["up".into(), "--listen".into(), address.into(), "--data-dir".into(), data_dir.into()];
        Self::launch(&args, &[], data_dir)
    }

    /// Like [`Klaxond::start_with`], with extra environment variables.
    pub fn start_with_env(data_dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Klaxond {
        let mut args: Vec<std::ffi::OsString> = vec!["up".into(), "--listen".into(), "127.0.0.1:0".into()];
        args.push("--data-dir".into());
        args.push(data_dir.into());
        args.extend(extra.iter().map(Into::into));
        Self::launch(&args, env, data_dir)
    }

    /// `klaxond serve <role>` on a free loopback port with extra arguments
    /// (`--nats`, `--log-server`, `--route`, `--data-dir`, `--config`).
    pub fn serve(role: &str, extra: &[&str], env: &[(&str, &str)]) -> Klaxond {
        Self::serve_on(role, "127.0.0.1:0", extra, env)
    }

    /// `klaxond serve <role>` again on a given address (after a kill).
    pub fn serve_on(role: &str, address: &str, extra: &[&str], env: &[(&str, &str)]) -> Klaxond {
        let mut args: Vec<std::ffi::OsString> = vec!["serve".into(), role.into(), "--listen".into(), address.into()];
        args.extend(extra.iter().map(Into::into));
        let data_dir = extra.iter().position(|a| *a == "--data-dir").map(|i| PathBuf::from(extra[i + 1]));
        Self::launch(&args, env, &data_dir.unwrap_or_default())
    }

    /// Runs `klaxond` with `args` and waits (at most 60 s) until it says
    /// where it listens (gRPC, and HTTP for the processes that serve it).
    fn launch(args: &[std::ffi::OsString], env: &[(&str, &str)], data_dir: &Path) -> Klaxond {
        let serves_http = args.first().is_some_and(|a| a == "up")
            || (args.first().is_some_and(|a| a == "serve") && args.get(1).is_some_and(|a| a == "intake"));
        // Other roles serve HTTP (metrics only) when asked to.
        let serves_metrics = !serves_http && args.iter().any(|a| a == "--metrics-listen");
        let mut args = args.to_vec();
        // Every test person's token, unless the test brings its own file: in
        // the data folder, where `up` and `serve log` look by default.
        let own_tokens =
            args.iter().any(|a| a == "--tokens-file") || env.iter().any(|(k, _)| *k == "KLAXON_TOKENS_FILE");
        if !own_tokens && !data_dir.as_os_str().is_empty() {
            std::fs::create_dir_all(data_dir).expect("create the data folder");
            auth::write_tokens(&data_dir.join("tokens.toml"));
        }
        // A free port, so that parallel tests never fight over the default.
        if serves_http && !args.iter().any(|a| a == "--http-listen") {
            args.extend(["--http-listen".into(), "127.0.0.1:0".into()]);
        }
        let mut child = Command::new(binary("klaxond"))
            .args(&args)
            .envs(env.iter().copied())
            .env("RUST_LOG", std::env::var("KLAXON_TEST_LOG").unwrap_or_else(|_| "warn".into()))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr_for(&args))
            .spawn()
            .expect("spawn klaxond");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut server = Klaxond {
            child: Some(child),
            url: String::new(),
            address: String::new(),
            data_dir: data_dir.to_path_buf(),
            http_address: None,
            smtp_address: None,
            lines,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = server.lines.recv_timeout(left).expect("klaxond says where it listens within 60 s");
            if let Some(rest) = line.strip_prefix("klaxond smtp on ") {
                server.smtp_address = Some(rest.split_whitespace().next().expect("an address").to_owned());
            } else if let Some(rest) = line.strip_prefix("klaxond listening on ") {
                let address = rest.split_whitespace().next().expect("an address");
                server.url = format!("http://{address}");
                server.address = address.to_owned();
                if !serves_http && !serves_metrics {
                    return server;
                }
            } else if let Some(rest) =
                line.strip_prefix("klaxond http on ").or_else(|| line.strip_prefix("klaxond metrics on "))
            {
                server.http_address = Some(rest.split_whitespace().next().expect("an address").to_owned());
                return server;
            }
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Sends SIGTERM and waits (at most 30 s) for the exit status.
    pub fn stop(mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        signal(child.id(), "TERM");
        wait_with_timeout(&mut child, Duration::from_secs(30))
    }

    /// Kills it with SIGKILL and waits.
    pub fn kill(mut self) {
        let mut child = self.child.take().expect("running");
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Whether it is still running (it did not exit on its own).
    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }
}

impl Drop for Klaxond {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Sends a signal by name (`TERM`, `INT`) with the system's `kill`.
pub fn signal(pid: u32, name: &str) {
    let status = Command::new("kill").arg(format!("-{name}")).arg(pid.to_string()).status().expect("run kill");
    assert!(status.success(), "kill -{name} {pid} failed");
}

fn wait_with_timeout(child: &mut Child, limit: Duration) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("wait for child") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("process {} did not exit within {limit:?}", child.id());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The `klaxon` CLI acting as `actor` (with their token) against `server`.
pub fn klaxon_command(server: &str, actor: &str) -> Command {
    let mut command = Command::new(binary("klaxon"));
    command
        .args(["--server", server])
        .env("KLAXON_TOKEN", auth::token(actor))
        .env_remove("KLAXON_TOKEN_FILE")
        .stdin(Stdio::null());
    command
}

/// Runs the `klaxon` CLI against `server` as `actor`.
pub fn klaxon(server: &str, actor: &str, args: &[&str]) -> Output {
    klaxon_command(server, actor).args(args).output().expect("run klaxon")
}

/// Runs the CLI and returns its stdout, failing the test with stderr when it
/// does not exit 0.
pub fn klaxon_ok(server: &str, actor: &str, args: &[&str]) -> String {
    let out = klaxon(server, actor, args);
    assert!(
        out.status.success(),
        "klaxon {args:?} exited {:?}: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// Runs the CLI with `--json` and parses its output.
pub fn klaxon_json(server: &str, actor: &str, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    serde_json::from_str(&klaxon_ok(server, actor, &all)).expect("JSON output")
}

/// A running `klaxon --json <args>` that prints lines (`watch`, `join`),
/// read on a thread; killed when dropped.
pub struct Lines {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Lines {
    /// Starts `klaxon --server <server> --json <args>` as `actor`.
    pub fn start(server: &str, actor: &str, args: &[&str]) -> Lines {
        let mut child = klaxon_command(server, actor)
            .arg("--json")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn klaxon");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Lines { child, lines }
    }

    /// The next line as JSON, waiting at most `limit`; `None` when none came.
    pub fn next(&self, limit: Duration) -> Option<serde_json::Value> {
        let line = self.lines.recv_timeout(limit).ok()?;
        Some(serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
    }

    /// The first line for which `accept` holds, waiting at most `limit` in all.
    pub fn find(&self, limit: Duration, accept: impl Fn(&serde_json::Value) -> bool) -> Option<serde_json::Value> {
        let deadline = Instant::now() + limit;
        loop {
            let line = self.next(deadline.saturating_duration_since(Instant::now()))?;
            if accept(&line) {
                return Some(line);
            }
        }
    }
}

impl Drop for Lines {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
