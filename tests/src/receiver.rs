//! A real HTTP webhook receiver on loopback, standing in for a pager or
//! chat system: it records every request, checks Klaxon's HMAC signature,
//! and can be told to fail the first requests or to answer slowly.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use tokio_util::sync::CancellationToken;

/// One request as received.
#[derive(Clone, Debug)]
pub struct Received {
    /// The `Idempotency-Key` header.
    pub idempotency_key: String,
    /// Whether the signature verified with the receiver's secret.
    pub signature_ok: bool,
    /// The JSON body.
    pub body: serde_json::Value,
    /// The status the receiver answered.
    pub status: u16,
}

#[derive(Default)]
struct Shared {
    secret: Vec<u8>,
    requests: Mutex<Vec<Received>>,
    fail_first: AtomicUsize,
    /// Milliseconds to hold each answer after recording the request.
    answer_after_ms: std::sync::atomic::AtomicU64,
}

/// The receiver; stops when dropped.
pub struct Receiver {
    /// `http://127.0.0.1:<port>/hook`.
    pub url: String,
    shared: Arc<Shared>,
    stop: CancellationToken,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Receiver {
    /// Starts a receiver on a free loopback port, verifying signatures made
    /// with `secret`. Must be called inside a tokio runtime.
    pub async fn start(secret: &str) -> Receiver {
        let shared = Arc::new(Shared { secret: secret.as_bytes().to_vec(), ..Shared::default() });
        let app = axum::Router::new().route("/hook", axum::routing::post(receive)).with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the receiver");
        let address: SocketAddr = listener.local_addr().expect("an address");
        let stop = CancellationToken::new();
        let until = stop.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).with_graceful_shutdown(until.cancelled_owned()).await;
        });
        Receiver { url: format!("http://{address}/hook"), shared, stop }
    }

    /// [`Receiver::start`] over TLS: `https://127.0.0.1:<port>/hook`,
    /// serving the certificate chain in `cert` (PEM) with the key in `key`,
    /// for clients that trust its CA.
    pub async fn start_tls(secret: &str, cert: &Path, key: &Path) -> Receiver {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_file_iter(cert).expect("a PEM file").collect::<Result<_, _>>().expect("certificates");
        let key = PrivateKeyDer::from_pem_file(key).expect("a PEM key");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .expect("a certificate and its key");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let shared = Arc::new(Shared { secret: secret.as_bytes().to_vec(), ..Shared::default() });
        let app = axum::Router::new().route("/hook", axum::routing::post(receive)).with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the receiver");
        let address: SocketAddr = listener.local_addr().expect("an address");
        let stop = CancellationToken::new();
        let until = stop.clone();
        tokio::spawn(async move {
            loop {
                let (tcp, _) = tokio::select! {
                    () = until.cancelled() => return,
                    accepted = listener.accept() => match accepted {
                        Ok(accepted) => accepted,
                        Err(_) => return,
                    },
                };
                let (acceptor, app, until) = (acceptor.clone(), app.clone(), until.clone());
                tokio::spawn(async move {
                    // A client that refuses the certificate ends here.
                    let Ok(tls) = acceptor.accept(tcp).await else { return };
                    let service = hyper_util::service::TowerToHyperService::new(app);
                    let connection = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tls), service);
                    tokio::select! {
                        () = until.cancelled() => {}
                        _ = connection => {}
                    }
                });
            }
        });
        Receiver { url: format!("https://127.0.0.1:{}/hook", address.port()), shared, stop }
    }

    /// Answers 500 to the next `n` requests.
    pub fn fail_next(&self, n: usize) {
        self.shared.fail_first.store(n, Ordering::SeqCst);
    }

    /// Holds every later answer for `delay` after recording its request
    /// (a slow receiver: the request is in [`Receiver::requests`] while the
    /// sender still waits).
    pub fn answer_after(&self, delay: Duration) {
        self.shared.answer_after_ms.store(delay.as_millis() as u64, Ordering::SeqCst);
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Received> {
        self.shared.requests.lock().expect("requests").clone()
    }

    /// Waits (at most `limit`) until `count` requests were answered 2xx.
    pub async fn wait_for_delivered(&self, count: usize, limit: Duration) -> Vec<Received> {
        let deadline = Instant::now() + limit;
        loop {
            let ok: Vec<Received> = self.requests().into_iter().filter(|r| r.status < 300).collect();
            if ok.len() >= count || Instant::now() > deadline {
                return ok;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

async fn receive(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let signature_ok = klaxon_channels::verify_signature(
        &shared.secret,
        &header(klaxon_channels::TIMESTAMP_HEADER),
        &body,
        &header(klaxon_channels::SIGNATURE_HEADER),
    );
    let failing = shared.fail_first.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok();
    let status = if failing { StatusCode::INTERNAL_SERVER_ERROR } else { StatusCode::OK };
    shared.requests.lock().expect("requests").push(Received {
        idempotency_key: header(klaxon_channels::IDEMPOTENCY_KEY_HEADER),
        signature_ok,
        body: serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
        status: status.as_u16(),
    });
    let delay = shared.answer_after_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    status
}
