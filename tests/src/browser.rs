//! A real browser for the status page tests: Debian's headless Chromium
//! driven over WebDriver by `chromedriver` (packages `chromium` and
//! `chromium-driver`), through the `fantoccini` client. Chromium runs with
//! a fresh profile in the test's folder and with every background
//! connection off, so it talks to nothing but the loopback server under
//! test. Everything started here stops when dropped.
//!
//! Also a raw HTTP/1.1 helper for what a browser does not let a test
//! choose (a forged `Origin`, many event streams at once).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder};

/// Chromium's flags: headless, no sandbox (tests may run as root), and no
/// connection of its own (updates, sync, QUIC probes) on a closed network.
pub const CHROMIUM_FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
];

/// A running `chromedriver` and one browser session. [`Browser::close`]
/// ends the session; dropping it (also when a test fails) kills the
/// process group the driver was started in, which holds the Chromium it
/// launched and nothing else.
pub struct Browser {
    /// The WebDriver session.
    pub client: Client,
    driver: Child,
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The group's id is the driver's pid (`process_group(0)`).
        let _ = Command::new("kill").args(["-KILL", "--", &format!("-{}", self.driver.id())]).status();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn program(env: &str, default: &str) -> String {
    std::env::var(env).unwrap_or_else(|_| default.to_owned())
}

impl Browser {
    /// Starts `chromedriver` on a free loopback port and opens a headless
    /// Chromium session with its profile in `dir`, `width` × `height`
    /// pixels. `CHROMEDRIVER` and `CHROMIUM` name other binaries.
    pub async fn start(dir: &Path, width: u32, height: u32) -> Browser {
        let port = crate::ports::reserve();
        let mut driver = Command::new(program("CHROMEDRIVER", "chromedriver"))
            .arg(format!("--port={port}"))
            // Its own process group, so that the Chromium it starts can be
            // stopped with it and only with it.
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver (Debian package chromium-driver)");
        let stdout = driver.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = rx.recv_timeout(left).expect("chromedriver starts within 30 s");
            if line.contains("started successfully") {
                break;
            }
        }
        let profile = dir.join("chromium-profile");
        std::fs::create_dir_all(&profile).unwrap();
        let mut args: Vec<String> = CHROMIUM_FLAGS.iter().map(|s| (*s).to_owned()).collect();
        args.push(format!("--user-data-dir={}", profile.display()));
        args.push(format!("--window-size={width},{height}"));
        let mut options = serde_json::json!({ "args": args });
        if let Ok(binary) = std::env::var("CHROMIUM") {
            options["binary"] = binary.into();
        } else if Path::new("/usr/bin/chromium").exists() {
            options["binary"] = "/usr/bin/chromium".into();
        }
        let mut capabilities = serde_json::Map::new();
        capabilities.insert("goog:chromeOptions".to_owned(), options);
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(capabilities)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .expect("a Chromium session through chromedriver");
        Browser { client, driver }
    }

    /// Ends the session (Chromium quits), then the driver.
    pub async fn close(self) {
        let _ = tokio::time::timeout(Duration::from_secs(20), self.client.clone().close()).await;
    }

    /// The visible text of the page's body.
    /// (Read by script in one step, so a page being replaced mid-read
    /// gives the old or the new text, never a stale element.)
    pub async fn text(&self) -> String {
        let text = self
            .client
            .execute("return document.body ? document.body.innerText : '';", vec![])
            .await
            .expect("the body's text");
        text.as_str().unwrap_or_default().to_owned()
    }

    /// Waits (at most `limit`, polling every 50 ms) until the page's text
    /// satisfies `accept`; returns the text it saw last.
    pub async fn wait_for_text(&self, limit: Duration, accept: impl Fn(&str) -> bool) -> Result<String, String> {
        let deadline = Instant::now() + limit;
        loop {
            let text = self.text().await;
            if accept(&text) {
                return Ok(text);
            }
            if Instant::now() > deadline {
                return Err(text);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Saves a PNG screenshot of the window to `path`.
    pub async fn screenshot(&self, path: &Path) {
        let png = self.client.screenshot().await.expect("a screenshot");
        std::fs::write(path, png).expect("write the screenshot");
    }
}

/// A raw HTTP/1.1 response: status, header lines, and the body read so far.
pub struct Raw {
    /// The status code.
    pub status: u16,
    /// The header section.
    pub head: String,
    /// The body (all of it, unless the response is an event stream).
    pub body: String,
    /// The connection, kept open for an event stream.
    pub stream: TcpStream,
}

impl Raw {
    /// The value of the first header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case(name).then(|| value.trim())
        })
    }
}

/// Sends one request to `address` with extra `headers` and `body`. Reads
/// the whole body unless the answer is `text/event-stream`, whose
/// connection stays open in [`Raw::stream`]. Bounded: 10 s per read.
pub fn request(address: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Raw {
    let mut stream = TcpStream::connect(address).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {address}\r\nContent-Length: {}\r\n", body.len());
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("Connection: close\r\n\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body.as_bytes()).unwrap();
    let mut received = Vec::new();
    let mut byte = [0u8; 1];
    while !received.ends_with(b"\r\n\r\n") {
        let n = stream.read(&mut byte).expect("a response head");
        assert!(n > 0, "connection closed before the response head");
        received.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&received).into_owned();
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).expect("a status");
    let mut raw = Raw { status, head, body: String::new(), stream };
    if raw.header("content-type") != Some("text/event-stream") {
        let mut body = Vec::new();
        let _ = raw.stream.read_to_end(&mut body);
        raw.body = String::from_utf8_lossy(&body).into_owned();
    }
    raw
}
