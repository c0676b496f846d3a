//! A real Prometheus Alertmanager for tests: its own loopback port, storage
//! folder and configuration (one route to a webhook receiver), clustering
//! off, killed when dropped. Plus the little HTTP client the tests need to
//! talk to it and to Klaxon's HTTP intake.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The Alertmanager binary: `ALERTMANAGER_BIN` when set, else the first of
/// `PATH`, `/usr/bin` and `/usr/sbin` that has `prometheus-alertmanager`
/// (Debian's name) or `alertmanager`. The test command (`scripts/test`)
/// installs Debian's package when it is missing.
pub fn alertmanager_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("ALERTMANAGER_BIN") {
        return PathBuf::from(path);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs: Vec<PathBuf> =
        std::env::split_paths(&path).chain([PathBuf::from("/usr/bin"), PathBuf::from("/usr/sbin")]).collect();
    ["prometheus-alertmanager", "alertmanager"]
        .iter()
        .flat_map(|name| dirs.iter().map(move |dir| dir.join(name)))
        .find(|p| p.exists())
        .expect(
            "Prometheus Alertmanager is not installed: scripts/test installs it \
             (apt-get install prometheus-alertmanager), or set ALERTMANAGER_BIN",
        )
}

/// A running Alertmanager on 127.0.0.1 that sends every group to one
/// webhook.
pub struct Alertmanager {
    child: Option<Child>,
    /// `127.0.0.1:<port>`.
    pub address: String,
    log: PathBuf,
}

impl Alertmanager {
    /// Starts one in `dir` (configuration, storage, log) that routes every
    /// alert, grouped by `alertname`, to `webhook` with `send_resolved` and
    /// the `alertmanager` test principal's bearer token, with 1 s group wait
    /// and interval; waits (at most 30 s) until it is ready.
    pub fn start(dir: &Path, webhook: &str) -> Alertmanager {
        std::fs::create_dir_all(dir.join("storage")).expect("create the storage folder");
        let config = dir.join("alertmanager.yml");
        std::fs::write(
            &config,
            format!(
                "route:\n  receiver: klaxon\n  group_by: [alertname]\n  group_wait: 1s\n  group_interval: 1s\n  \
                 repeat_interval: 1h\nreceivers:\n  - name: klaxon\n    webhook_configs:\n      - url: {webhook}\n        \
                 send_resolved: true\n        http_config:\n          authorization:\n            credentials: {token}\n",
                token = crate::auth::token("alertmanager"),
            ),
        )
        .expect("write the configuration");
        let port = crate::ports::reserve();
        let address = format!("127.0.0.1:{port}");
        let log = dir.join("alertmanager.log");
        let child = Command::new(alertmanager_bin())
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.path={}", dir.join("storage").display()))
            .arg(format!("--web.listen-address={address}"))
            .arg("--cluster.listen-address=")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("create the log file"))
            .spawn()
            .expect("spawn Alertmanager");
        let mut alertmanager = Alertmanager { child: Some(child), address, log };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok((200, _)) = http(&alertmanager.address, "GET", "/-/ready", b"") {
                return alertmanager;
            }
            let exited = alertmanager.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(Some(_))));
            assert!(
                !exited && Instant::now() < deadline,
                "Alertmanager was not ready within 30 s (exited: {exited}); its log:\n{}",
                alertmanager.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Posts alerts (a JSON array of `{labels, annotations, startsAt,
    /// endsAt}`) to its API v2, as Prometheus does.
    pub fn post_alerts(&self, alerts: &serde_json::Value) {
        let body = serde_json::to_vec(alerts).expect("JSON");
        let (status, text) = http(&self.address, "POST", "/api/v2/alerts", &body).expect("reach Alertmanager");
        assert_eq!(status, 200, "POST /api/v2/alerts: {text}\nlog:\n{}", self.log());
    }

    /// What it logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// One HTTP/1.1 request with `Connection: close` (JSON body when not
/// empty); returns the status and the body. Bounded: 10 s to connect, read
/// or write.
pub fn http(address: &str, method: &str, path: &str, body: &[u8]) -> std::io::Result<(u16, String)> {
    http_as(address, None, method, path, body)
}

/// Like [`http`], with `authorization: Bearer <token>` when given.
pub fn http_as(
    address: &str,
    token: Option<&str>,
    method: &str,
    path: &str,
    body: &[u8],
) -> std::io::Result<(u16, String)> {
    let socket = address.parse().map_err(std::io::Error::other)?;
    let mut stream = TcpStream::connect_timeout(&socket, Duration::from_secs(10))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.set_write_timeout(Some(Duration::from_secs(10)))?;
    let authorization = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         {authorization}Connection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let text = String::from_utf8_lossy(&response).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP response: {head:?}")))?;
    Ok((status, body.to_owned()))
}

/// `time` in RFC 3339 (UTC, whole seconds), as Alertmanager's API takes it.
pub fn rfc3339(time: SystemTime) -> String {
    let seconds = time.duration_since(UNIX_EPOCH).expect("after 1970").as_secs();
    let (days, rest) = (seconds / 86_400, seconds % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rest / 3600, rest % 3600 / 60, rest % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_formats_utc_dates() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(UNIX_EPOCH + Duration::from_secs(951_782_400)), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(UNIX_EPOCH + Duration::from_secs(1_795_000_000)), "2026-11-18T11:06:40Z");
    }
}
