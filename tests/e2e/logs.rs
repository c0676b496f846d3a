//! `klaxond`'s own log as an operator reads it: written to a file (as under
//! systemd, a container runtime or `> klaxond.log`), it is plain text, with
//! no terminal colour codes in it.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use klaxon_tests::binary;

/// Kills the child when the test ends, also when it fails.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_log_written_to_a_file_holds_no_colour_codes() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("klaxond.log");
    let mut child = Command::new(binary("klaxond"))
        .args(["up", "--listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data"))
        .env("RUST_LOG", "info")
        .env_remove("NO_COLOR")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("spawn klaxond");
    let stdout = child.stdout.take().unwrap();
    let _running = Running(child);
    // Serving means the start's log lines (a first start rebuilds every
    // projection, at INFO) are written.
    let serving = BufReader::new(stdout).lines().map_while(Result::ok).any(|l| l.starts_with("klaxond http on "));
    assert!(serving, "klaxond serves");
    let deadline = Instant::now() + Duration::from_secs(30);
    let text = loop {
        let text = std::fs::read_to_string(&log).unwrap();
        if text.contains("rebuilding from the log") || Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        text.contains(" INFO ") && text.contains("rebuilding from the log"),
        "the start is logged at INFO:\n{text}"
    );
    assert!(!text.contains('\u{1b}'), "no escape codes in a log file:\n{text:?}");
}
