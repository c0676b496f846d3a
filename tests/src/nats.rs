//! A real `nats-server` with JetStream for tests: its own loopback port and
//! store folder, killed when dropped.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The `nats-server` binary: `NATS_SERVER_BIN` when set, else the first of
/// `PATH`, `/usr/sbin` and `/usr/bin` that has it. The test command
/// (`scripts/test`) installs Debian's package when it is missing.
pub fn nats_server_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("NATS_SERVER_BIN") {
        return PathBuf::from(path);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")])
        .map(|dir| dir.join("nats-server"))
        .find(|p| p.exists())
        .expect("nats-server is installed (scripts/test installs it; or set NATS_SERVER_BIN)")
}

/// A running `nats-server -js` on 127.0.0.1.
pub struct NatsServer {
    child: Option<Child>,
    /// Its port.
    pub port: u16,
    /// `nats://127.0.0.1:<port>`.
    pub url: String,
    store: PathBuf,
}

impl NatsServer {
    /// Starts one on a free port with JetStream storing in `store`, and
    /// waits (at most 10 s) until it accepts connections.
    pub fn start(store: &Path) -> NatsServer {
        let port = crate::ports::reserve();
        let mut server =
            NatsServer { child: None, port, url: format!("nats://127.0.0.1:{port}"), store: store.to_path_buf() };
        server.start_again();
        server
    }

    /// Starts it again on the same port and store (after [`NatsServer::kill`]).
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "nats-server is already running");
        let child = Command::new(nats_server_bin())
            .args(["-js", "-a", "127.0.0.1", "-p", &self.port.to_string(), "-sd"])
            .arg(&self.store)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn nats-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not listen on {} within 10 s", self.port);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills it with SIGKILL and waits for it to exit.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}
