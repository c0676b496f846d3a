//! The e-mail intake over real SMTP on loopback, against a real intake on
//! a real log: the protocol's limits, the log being unavailable, and the
//! stop. (Reports, notes, refusals and deduplication through real SMTP
//! clients, `swaks` and `lettre`, are in the end-to-end tests.)

use std::net::SocketAddr;
use std::sync::Arc;

use klaxon_intake::Intake;
use klaxon_intake::smtp::{EmailOptions, SmtpIntake};
use klaxon_log::Log;
use tempfile::TempDir;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio_util::sync::CancellationToken;

/// Intake and its SMTP listener on a free loopback port; stops when dropped.
struct SmtpServer {
    address: SocketAddr,
    log: Log,
    shutdown: CancellationToken,
    stopped: tokio::task::JoinHandle<std::io::Result<()>>,
    _dir: Arc<TempDir>,
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl SmtpServer {
    async fn start() -> SmtpServer {
        let dir = Arc::new(tempfile::tempdir().unwrap());
        let log = Log::open(dir.path(), klaxon_log::Options::default()).unwrap();
        let intake = Intake::new(log.clone(), Default::default(), klaxon_reactor::system_clock());
        let handle = intake.handle();
        let shutdown = CancellationToken::new();
        tokio::spawn(intake.run(shutdown.clone()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let mut options = EmailOptions { message_bytes_max: 2048, ..EmailOptions::default() };
        options.senders.insert("desk@example.com".into(), "desk".into());
        let smtp = SmtpIntake::new(handle, options, None);
        let stopped = tokio::spawn(smtp.run(listener, shutdown.clone()));
        SmtpServer { address, log, shutdown, stopped, _dir: dir }
    }
}

/// A raw SMTP client: one command, one reply.
struct Client {
    read: BufReader<OwnedReadHalf>,
    write: OwnedWriteHalf,
}

impl Client {
    async fn connect(address: SocketAddr) -> (Client, String) {
        let (read, write) = TcpStream::connect(address).await.unwrap().into_split();
        let mut client = Client { read: BufReader::new(read), write };
        let greeting = client.reply().await;
        (client, greeting)
    }

    /// Reads one (possibly multi-line) reply; its lines joined by `|`.
    async fn reply(&mut self) -> String {
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            if self.read.read_line(&mut line).await.unwrap() == 0 {
                lines.push("<closed>".to_owned());
                break;
            }
            let line = line.trim_end().to_owned();
            let last = line.as_bytes().get(3) != Some(&b'-');
            lines.push(line);
            if last {
                break;
            }
        }
        lines.join("|")
    }

    async fn send(&mut self, bytes: &[u8]) -> String {
        self.write.write_all(bytes).await.unwrap();
        self.reply().await
    }

    async fn command(&mut self, line: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes()).await
    }
}

fn message(subject: &str, body: &str) -> String {
    format!(
        "From: desk@example.com\r\nTo: klaxon@example.com\r\nSubject: {subject}\r\nMessage-ID: <{subject}@desk>\r\n\r\n{body}\r\n.\r\n"
    )
}

#[tokio::test]
async fn limits_are_enforced_where_rfc_5321_puts_them_and_the_session_goes_on() {
    let server = SmtpServer::start().await;
    let (mut client, greeting) = Client::connect(server.address).await;
    assert!(greeting.starts_with("220 klaxon "), "{greeting}");
    let ehlo = client.command("EHLO tester").await;
    assert!(ehlo.contains("250-SIZE 2048"), "the limit is announced: {ehlo}");

    let long = format!("NOOP {}", "x".repeat(600));
    assert!(client.command(&long).await.starts_with("500 5.5.2"), "a command line over 512 bytes");
    assert!(client.command("NOOP").await.starts_with("250 "), "the session goes on after a long line");

    let head = server.log.head();
    assert!(client.command("MAIL FROM:<desk@example.com> SIZE=4096").await.starts_with("552 5.3.4"));
    assert!(client.command("MAIL FROM:<eve@example.com>").await.starts_with("550 5.7.1"));
    assert!(client.command("MAIL FROM:<desk@example.com> SIZE=100").await.starts_with("250 2.1.0"));
    assert!(client.command("RCPT TO:<klaxon@example.com>").await.starts_with("250 2.1.5"));
    assert!(client.command("DATA").await.starts_with("354"));
    // Over the limit but under the drain bound: read to its end, refused,
    // and the connection stays usable.
    let big = message("big", &vec!["y".repeat(70); 50].join("\r\n"));
    assert!(client.send(big.as_bytes()).await.starts_with("552 5.3.4"), "the message is over 2048 bytes");
    assert_eq!(server.log.head(), head, "a refused message writes nothing");

    // A line over 1000 bytes is a malformed message.
    assert!(client.command("MAIL FROM:<desk@example.com>").await.starts_with("250"));
    assert!(client.command("RCPT TO:<klaxon@example.com>").await.starts_with("250"));
    assert!(client.command("DATA").await.starts_with("354"));
    let wide = message("wide", &"z".repeat(1200));
    assert!(client.send(wide.as_bytes()).await.starts_with("550 5.6.0"));
    assert_eq!(server.log.head(), head, "a refused message writes nothing");

    // A fine message is reported, and a dot-stuffed line keeps its text.
    assert!(client.command("MAIL FROM:<desk@example.com>").await.starts_with("250"));
    assert!(client.command("RCPT TO:<klaxon@example.com>").await.starts_with("250"));
    assert!(client.command("DATA").await.starts_with("354"));
    let fine = message("fine", "..leading dot");
    let answer = client.send(fine.as_bytes()).await;
    assert_eq!(answer, "250 2.0.0 reported as INC-1");
    assert!(server.log.head() > head);
    assert_eq!(client.command("QUIT").await, "221 2.0.0 klaxon closing");
}

#[tokio::test]
async fn a_closed_log_is_answered_451_so_that_the_mta_retries_and_nothing_is_written() {
    let server = SmtpServer::start().await;
    let (mut client, _) = Client::connect(server.address).await;
    client.command("EHLO tester").await;
    client.command("MAIL FROM:<desk@example.com>").await;
    client.command("RCPT TO:<klaxon@example.com>").await;
    assert!(client.command("DATA").await.starts_with("354"));
    let head = server.log.head();
    server.log.close().await;
    let answer = client.send(message("while-closed", "the log is gone").as_bytes()).await;
    assert!(answer.starts_with("451 4.3.0 "), "{answer}");
    assert_eq!(server.log.head(), head);
}

#[tokio::test]
async fn a_stop_tells_idle_sessions_421_and_ends_the_listener() {
    let mut server = SmtpServer::start().await;
    let (mut client, _) = Client::connect(server.address).await;
    client.command("EHLO tester").await;
    server.shutdown.cancel();
    assert!(client.reply().await.starts_with("421 4.3.2"), "an idle session is told the intake stops");
    tokio::time::timeout(std::time::Duration::from_secs(5), &mut server.stopped).await.unwrap().unwrap().unwrap();
}
