//! A real SMTP server process for the e-mail tests: Debian's aiosmtpd
//! (package `python3-aiosmtpd`) driven by `smtp_server.py`, which the
//! test writes into its temporary folder with a JSON configuration. It
//! saves every message it accepts; the tests read them back. TLS uses a
//! certificate generated for the run (rcgen) for 127.0.0.1.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::json;

const SCRIPT: &str = include_str!("smtp_server.py");

/// The login the server requires when started with [`Auth::Required`].
pub const USER: &str = "klaxon";

/// How the server secures connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tls {
    Starttls,
    Implicit,
    None,
}

impl Tls {
    fn name(self) -> &'static str {
        match self {
            Tls::Starttls => "starttls",
            Tls::Implicit => "implicit",
            Tls::None => "none",
        }
    }
}

/// What the server is told to do.
pub struct Options {
    pub tls: Tls,
    /// The password it requires of [`USER`], if any.
    pub password: Option<String>,
    /// Recipients it refuses with `550`.
    pub refuse: Vec<String>,
    /// How many `DATA` commands it answers `451` before accepting.
    pub defer_data: u32,
}

/// One saved message.
#[derive(Debug)]
pub struct Saved {
    /// The raw message as received after `DATA`.
    pub raw: String,
    /// The envelope and session: `mail_from`, `rcpt_tos`, `tls`, `authenticated`.
    pub meta: serde_json::Value,
}

impl Saved {
    /// The value of header `name` (unfolded), if present.
    pub fn header(&self, name: &str) -> Option<String> {
        header(&self.raw, name)
    }
}

/// The value of header `name` in the header section of `raw`.
pub fn header(raw: &str, name: &str) -> Option<String> {
    let head = raw.split("\r\n\r\n").next()?;
    let mut value: Option<String> = None;
    for line in head.split("\r\n") {
        if let Some(current) = value.as_mut() {
            if line.starts_with([' ', '\t']) {
                current.push(' ');
                current.push_str(line.trim());
                continue;
            }
            return value;
        }
        if let Some((key, rest)) = line.split_once(':') {
            if key.eq_ignore_ascii_case(name) {
                value = Some(rest.trim().to_owned());
            }
        }
    }
    value
}

/// The running server; killed when dropped.
pub struct SmtpServer {
    child: Child,
    pub port: u16,
    folder: PathBuf,
    /// The CA that signed the server's certificate (PEM file).
    pub ca_file: PathBuf,
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A Python 3 that has aiosmtpd: `KLAXON_PYTHON`, else Debian's
/// `/usr/bin/python3` (a `python3` earlier on the path may be another
/// installation without Debian's packages).
fn python() -> String {
    if let Ok(python) = std::env::var("KLAXON_PYTHON") {
        return python;
    }
    for candidate in ["/usr/bin/python3", "python3"] {
        let ok = Command::new(candidate)
            .args(["-c", "import aiosmtpd"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return candidate.to_owned();
        }
    }
    panic!("no python3 with aiosmtpd: install Debian's python3-aiosmtpd (scripts/test does) or set KLAXON_PYTHON");
}

impl SmtpServer {
    /// Starts the server with `options`, its files in `dir`.
    pub fn start(dir: &Path, options: Options) -> SmtpServer {
        let folder = dir.join("mail");
        std::fs::create_dir_all(&folder).unwrap();
        let (ca_file, cert, key) = certificates(dir);
        let script = dir.join("smtp_server.py");
        std::fs::write(&script, SCRIPT).unwrap();
        let config = dir.join("smtp_server.json");
        let mut value = json!({
            "folder": folder,
            "tls": options.tls.name(),
            "cert": cert,
            "key": key,
            "refuse": options.refuse,
            "defer_data": options.defer_data,
        });
        if let Some(password) = &options.password {
            value["user"] = json!(USER);
            value["password"] = json!(password);
        }
        std::fs::write(&config, value.to_string()).unwrap();
        let mut child = Command::new(python())
            .arg(&script)
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the SMTP server");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).expect("the server's port");
        let port = line.trim().parse().unwrap_or_else(|_| panic!("the SMTP server did not start: {line:?}"));
        SmtpServer { child, port, folder, ca_file }
    }

    /// The messages accepted so far, in order.
    pub fn messages(&self) -> Vec<Saved> {
        (1..)
            .map_while(|n| {
                let raw = std::fs::read_to_string(self.folder.join(format!("message-{n}.eml"))).ok()?;
                let meta = std::fs::read_to_string(self.folder.join(format!("message-{n}.json"))).ok()?;
                Some(Saved { raw, meta: serde_json::from_str(&meta).unwrap() })
            })
            .collect()
    }

    /// The messages answered `451` so far, in order.
    pub fn deferred(&self) -> Vec<String> {
        (1..).map_while(|n| std::fs::read_to_string(self.folder.join(format!("deferred-{n}.eml"))).ok()).collect()
    }
}

/// A CA and a certificate it signed for 127.0.0.1 and localhost, as PEM
/// files in `dir`: (CA, certificate, key).
pub(crate) fn certificates(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "Klaxon SMTP test CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::from_params(&ca, &ca_key);
    let key = KeyPair::generate().unwrap();
    let mut leaf = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
    leaf.distinguished_name.push(DnType::CommonName, "localhost");
    let cert = leaf.signed_by(&key, &issuer).unwrap();
    let files = (dir.join("ca.pem"), dir.join("smtp.pem"), dir.join("smtp.key"));
    std::fs::write(&files.0, ca_cert.pem()).unwrap();
    std::fs::write(&files.1, cert.pem()).unwrap();
    std::fs::write(&files.2, key.serialize_pem()).unwrap();
    files
}
