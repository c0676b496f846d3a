//! A real HTTP receiver on loopback that records every request, verifies
//! webhook signatures with the crate's public `verify_signature`, and answers
//! from a script (then `200 OK` once the script runs out).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use klaxon_channels::{SIGNATURE_HEADER, TIMESTAMP_HEADER, verify_signature};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// The HMAC key tests configure (through the env lookup) and the receiver verifies with.
pub const SECRET: &str = "test-secret-0123456789";
pub const SECRET_ENV: &str = "KLAXON_TEST_WEBHOOK_SECRET";

/// One scripted answer.
#[derive(Debug, Clone)]
pub struct Reply {
    status: u16,
    delay: Duration,
    retry_after: Option<&'static str>,
    body: String,
}

impl Reply {
    pub fn status(status: u16) -> Reply {
        Reply { status, delay: Duration::ZERO, retry_after: None, body: String::new() }
    }

    /// Answers `200` only after `delay` (longer than the client's timeout).
    pub fn slow(delay: Duration) -> Reply {
        Reply { delay, ..Reply::status(200) }
    }

    pub fn retry_after(self, value: &'static str) -> Reply {
        Reply { retry_after: Some(value), ..self }
    }

    pub fn body(self, body: impl Into<String>) -> Reply {
        Reply { body: body.into(), ..self }
    }
}

/// One request as received.
#[derive(Debug, Clone)]
pub struct Received {
    pub at: Instant,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// `Some(valid)` when the receiver has a secret to check with.
    pub signature_ok: Option<bool>,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

struct Shared {
    secret: Option<Vec<u8>>,
    script: Mutex<VecDeque<Reply>>,
    received: Mutex<Vec<Received>>,
}

pub struct Receiver {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: oneshot::Sender<()>,
    task: JoinHandle<std::io::Result<()>>,
}

impl Receiver {
    /// Starts a receiver that verifies signatures with [`SECRET`].
    pub async fn signed(script: Vec<Reply>) -> Receiver {
        Receiver::start(Some(SECRET.as_bytes().to_vec()), script).await
    }

    /// Starts a receiver that checks no signature.
    pub async fn unsigned(script: Vec<Reply>) -> Receiver {
        Receiver::start(None, script).await
    }

    async fn start(secret: Option<Vec<u8>>, script: Vec<Reply>) -> Receiver {
        let shared = Arc::new(Shared { secret, script: Mutex::new(script.into()), received: Mutex::new(Vec::new()) });
        let app = Router::new().route("/hook", post(handle)).with_state(Arc::clone(&shared));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await
        });
        Receiver { addr, shared, stop, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    pub fn received(&self) -> Vec<Received> {
        self.shared.received.lock().unwrap().clone()
    }

    /// Stops serving; a scripted slow reply still in flight is cut short.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        let mut task = self.task;
        if tokio::time::timeout(Duration::from_secs(2), &mut task).await.is_err() {
            task.abort();
        }
    }
}

async fn handle(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let signature_ok = shared.secret.as_ref().map(|secret| {
        let timestamp = headers.get(TIMESTAMP_HEADER).and_then(|v| v.to_str().ok()).unwrap_or_default();
        let signature = headers.get(SIGNATURE_HEADER).and_then(|v| v.to_str().ok()).unwrap_or_default();
        verify_signature(secret, timestamp, &body, signature)
    });
    shared.received.lock().unwrap().push(Received { at: Instant::now(), headers, body, signature_ok });
    let reply = shared.script.lock().unwrap().pop_front().unwrap_or(Reply::status(200));
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    let mut response_headers = HeaderMap::new();
    if let Some(value) = reply.retry_after {
        response_headers.insert("retry-after", HeaderValue::from_static(value));
    }
    (StatusCode::from_u16(reply.status).unwrap(), response_headers, reply.body).into_response()
}
