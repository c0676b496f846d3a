//! `https://` channels against a real HTTPS receiver on 127.0.0.1 whose
//! certificate a CA made for the run signed (the same generator as the
//! SMTP tests), trusted through the channel's `ca_file`.

use std::path::Path;
use std::sync::{Arc, Mutex};

use klaxon_channels::{AttemptFailure, ChannelConfig, Channels, Delivery, Error, verify_signature};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::receiver::{SECRET, SECRET_ENV};
use crate::webhook::notification;

/// The receiver's accept loop, ended when dropped.
struct Stop(tokio::task::JoinHandle<()>);

impl Drop for Stop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One request as the HTTPS receiver read it.
struct Got {
    head: String,
    body: Vec<u8>,
}

impl Got {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.trim().eq_ignore_ascii_case(name).then(|| value.trim())
        })
    }
}

/// An HTTPS server on 127.0.0.1 (rustls) answering every request with
/// `200` and `answer`, keeping what it got.
struct HttpsReceiver {
    port: u16,
    got: Arc<Mutex<Vec<Got>>>,
    _stop: Stop,
}

impl HttpsReceiver {
    async fn start(cert: &Path, key: &Path, answer: &'static str) -> HttpsReceiver {
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_file_iter(cert).unwrap().collect::<Result<_, _>>().unwrap();
        let key = PrivateKeyDer::from_pem_file(key).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let got: Arc<Mutex<Vec<Got>>> = Arc::default();
        let kept = got.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else { return };
                let (acceptor, kept) = (acceptor.clone(), kept.clone());
                tokio::spawn(async move {
                    // A client that refuses the certificate ends the handshake.
                    let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                    let mut read = Vec::new();
                    let mut buf = [0u8; 4096];
                    let head_end = loop {
                        if let Some(end) = read.windows(4).position(|w| w == b"\r\n\r\n") {
                            break end + 4;
                        }
                        match tls.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => read.extend_from_slice(&buf[..n]),
                        }
                    };
                    let head = String::from_utf8_lossy(&read[..head_end]).into_owned();
                    let mut got = Got { head, body: Vec::new() };
                    let length: usize = got.header("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
                    while read.len() < head_end + length {
                        match tls.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => read.extend_from_slice(&buf[..n]),
                        }
                    }
                    got.body = read[head_end..head_end + length].to_vec();
                    kept.lock().unwrap().push(got);
                    let response = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
                        answer.len()
                    );
                    let _ = tls.write_all(response.as_bytes()).await;
                    let _ = tls.shutdown().await;
                });
            }
        });
        HttpsReceiver { port, got, _stop: Stop(task) }
    }

    fn got(&self) -> std::sync::MutexGuard<'_, Vec<Got>> {
        self.got.lock().unwrap()
    }
}

fn channel(kind: &str, url: String, ca_file: Option<&Path>) -> ChannelConfig {
    ChannelConfig {
        name: "secure".to_string(),
        kind: kind.to_string(),
        url: Some(url),
        ca_file: ca_file.map(|p| p.to_str().unwrap().to_string()),
        attempts_max: Some(1),
        timeout_ms: Some(5_000),
        ..ChannelConfig::default()
    }
}

#[tokio::test]
async fn a_signed_webhook_reaches_an_https_receiver_whose_private_ca_is_the_channels_ca_file() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = crate::smtp::certificates(dir.path());
    let receiver = HttpsReceiver::start(&cert, &key, "{}").await;
    let config = ChannelConfig {
        secret_env: Some(SECRET_ENV.to_string()),
        ..channel("webhook", format!("https://127.0.0.1:{}/hooks/pages", receiver.port), Some(&ca))
    };
    let channels = Channels::new(&[config], |var| (var == SECRET_ENV).then(|| SECRET.to_string())).unwrap();

    let delivery = channels.deliver("secure", &notification()).await.unwrap();

    assert_eq!(delivery, Delivery { attempts: 1, status: 200, thread: None });
    let got = receiver.got();
    assert_eq!(got.len(), 1);
    assert!(got[0].head.starts_with("POST /hooks/pages HTTP/1.1\r\n"), "{}", got[0].head);
    assert_eq!(got[0].header("idempotency-key"), Some("incident-7/page/alice/1"));
    let timestamp = got[0].header("x-klaxon-timestamp").unwrap();
    let signature = got[0].header("x-klaxon-signature").unwrap();
    assert!(verify_signature(SECRET.as_bytes(), timestamp, &got[0].body, signature), "signed over TLS as over TCP");
    let body: serde_json::Value = serde_json::from_slice(&got[0].body).unwrap();
    assert_eq!(body["idempotency_key"], "incident-7/page/alice/1");
}

#[tokio::test]
async fn a_slack_api_over_https_names_the_thread_and_follow_ups_reply_in_it() {
    const TOKEN_ENV: &str = "KLAXON_TEST_HTTPS_SLACK_TOKEN";
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = crate::smtp::certificates(dir.path());
    let receiver =
        HttpsReceiver::start(&cert, &key, r#"{"ok":true,"channel":"C0EXEC","ts":"1764000000.000100"}"#).await;
    let config = ChannelConfig {
        token_env: Some(TOKEN_ENV.to_string()),
        slack_channel: Some("C0EXEC".to_string()),
        ..channel("slack", format!("https://localhost:{}/api/chat.postMessage", receiver.port), Some(&ca))
    };
    let token = format!("xoxb-{}", std::process::id());
    let env_token = token.clone();
    let channels = Channels::new(&[config], move |var| (var == TOKEN_ENV).then(|| env_token.clone())).unwrap();

    let first = channels.deliver("secure", &notification()).await.unwrap();
    assert_eq!(first.thread.as_deref(), Some("1764000000.000100"));
    let follow_up = klaxon_channels::Notification { thread: first.thread.clone(), ..notification() };
    channels.deliver("secure", &follow_up).await.unwrap();

    let got = receiver.got();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].header("authorization"), Some(format!("Bearer {token}").as_str()));
    let reply: serde_json::Value = serde_json::from_slice(&got[1].body).unwrap();
    assert_eq!(reply["thread_ts"], "1764000000.000100");
    assert_eq!(reply["channel"], "C0EXEC");
}

#[tokio::test]
async fn an_https_receiver_whose_certificate_no_trusted_root_signed_is_refused_and_nothing_is_sent() {
    let dir = tempfile::tempdir().unwrap();
    let (_ca, cert, key) = crate::smtp::certificates(dir.path());
    let receiver = HttpsReceiver::start(&cert, &key, "{}").await;
    // Another run's CA as ca_file, and no ca_file at all: neither signed it.
    let other = tempfile::tempdir().unwrap();
    let (other_ca, _, _) = crate::smtp::certificates(other.path());
    for ca_file in [Some(other_ca.as_path()), None] {
        let config = channel("teams", format!("https://127.0.0.1:{}/workflows/x", receiver.port), ca_file);
        let channels = Channels::new(&[config], |_| None).unwrap();
        let error = channels.deliver("secure", &notification()).await.unwrap_err();
        match &error {
            Error::Exhausted { attempts: 1, last: AttemptFailure::Connect { message }, .. } => {
                assert!(message.to_lowercase().contains("certificate"), "{message}");
            }
            other => panic!("expected a refused certificate, got {other:?}"),
        }
    }
    assert_eq!(receiver.got().len(), 0, "no request crossed an unverified connection");
}
