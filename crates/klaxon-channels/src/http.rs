//! One HTTP attempt, and the bounded retry loop around it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{CONTENT_TYPE, RETRY_AFTER, USER_AGENT};
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::time::{Instant, timeout_at};

use crate::backoff::seed_from;
use crate::config::{HttpSpec, Secret};
use crate::connect::Connector;
use crate::error::error_chain;
use crate::signature::{IDEMPOTENCY_KEY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, signature_header};
use crate::{AttemptFailure, Delivery, Error};

/// Most bytes of a response body read (the rest is dropped, unread).
pub const RESPONSE_BODY_BYTES_MAX: usize = 64 * 1024;
/// Most bytes of a response body quoted in an error.
pub const BODY_EXCERPT_BYTES_MAX: usize = 512;

const IDLE_CONNECTIONS_PER_HOST_MAX: usize = 8;
const IDLE_CONNECTION_TIMEOUT: Duration = Duration::from_secs(30);
const USER_AGENT_VALUE: &str = concat!("klaxon-channels/", env!("CARGO_PKG_VERSION"));

/// A pooled HTTP/1 client: one shared by the channels of one
/// [`crate::Channels`] that trust the system's roots only, one more for
/// each channel with a `ca_file` of its own.
pub(crate) type HttpClient = Client<Connector, Full<Bytes>>;

/// A client speaking `http`, and `https` when given TLS settings.
pub(crate) fn client(tls: Option<std::sync::Arc<rustls::ClientConfig>>) -> HttpClient {
    let connector = Connector::new(tls);
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(IDLE_CONNECTIONS_PER_HOST_MAX)
        .pool_idle_timeout(IDLE_CONNECTION_TIMEOUT)
        .pool_timer(TokioTimer::new())
        .build(connector)
}

/// How a request proves itself to the receiver.
#[derive(Clone, Copy)]
pub(crate) enum Credentials<'a> {
    /// Nothing (the URL is the credential: incoming webhooks).
    None,
    /// The signature headers of [`crate::signature`].
    Sign(&'a Secret),
    /// `Authorization: Bearer <token>` (Slack's Web API).
    Bearer(&'a Secret),
}

/// What a `2xx` answer must say to count as delivered.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expect {
    /// Any `2xx` is a delivery.
    Any,
    /// Slack's Web API answers `200` with `{"ok": false, "error": …}` on
    /// failure: `ok` must be true, and `ts` is the message's thread id.
    SlackApi,
}

/// Slack Web API errors worth retrying (the others will not change).
const SLACK_RETRYABLE_ERRORS: &[&str] =
    &["ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"];

/// How one attempt ended.
enum Outcome {
    Delivered { status: u16, thread: Option<String> },
    Permanent { status: u16, body_excerpt: String },
    Retryable { failure: AttemptFailure, retry_after: Option<Duration> },
}

/// Posts `body` up to `spec.attempts_max` times, signing each attempt when
/// asked to. The idempotency key and body are the same on every attempt;
/// the timestamp (and so the signature) is fresh for each. The delivery's
/// `thread` is the `ts` of a Slack Web API answer, else `None`.
pub(crate) async fn post(
    client: &HttpClient,
    channel: &str,
    spec: &HttpSpec,
    credentials: Credentials<'_>,
    expect: Expect,
    idempotency_key: &str,
    body: Bytes,
) -> Result<Delivery, Error> {
    let seed = seed_from(idempotency_key.as_bytes());
    let limits = &spec.limits;
    let mut attempts = 0;
    loop {
        attempts += 1;
        match attempt(client, spec, credentials, expect, idempotency_key, body.clone()).await {
            Outcome::Delivered { status, thread } => {
                tracing::debug!(channel, idempotency_key, attempts, status, "notification delivered");
                return Ok(Delivery { attempts, status, thread });
            }
            Outcome::Permanent { status, body_excerpt } => {
                tracing::warn!(channel, idempotency_key, attempts, status, "notification refused, not retrying");
                return Err(Error::Permanent { channel: channel.to_string(), status, body_excerpt });
            }
            Outcome::Retryable { failure, retry_after } => {
                if attempts >= limits.attempts_max {
                    tracing::warn!(channel, idempotency_key, attempts, %failure, "notification undelivered, giving up");
                    return Err(Error::Exhausted { channel: channel.to_string(), attempts, last: failure });
                }
                let delay = match retry_after {
                    Some(requested) => limits.backoff.bounded(requested),
                    None => limits.backoff.delay(attempts - 1, seed),
                };
                tracing::info!(
                    channel,
                    idempotency_key,
                    attempts,
                    %failure,
                    delay_ms = delay.as_millis() as u64,
                    "notification attempt failed, retrying"
                );
                tokio::time::sleep(delay).await;
            }
        }
    }
}

async fn attempt(
    client: &HttpClient,
    spec: &HttpSpec,
    credentials: Credentials<'_>,
    expect: Expect,
    idempotency_key: &str,
    body: Bytes,
) -> Outcome {
    let content_type = match expect {
        Expect::Any => "application/json",
        Expect::SlackApi => "application/json; charset=utf-8",
    };
    let mut request = Request::post(spec.uri.clone())
        .header(CONTENT_TYPE, content_type)
        .header(USER_AGENT, USER_AGENT_VALUE)
        .header(IDEMPOTENCY_KEY_HEADER, idempotency_key);
    match credentials {
        Credentials::None => {}
        Credentials::Sign(secret) => {
            let timestamp = unix_seconds().to_string();
            let signature = signature_header(secret.bytes(), &timestamp, &body);
            request = request.header(TIMESTAMP_HEADER, timestamp).header(SIGNATURE_HEADER, signature);
        }
        Credentials::Bearer(token) => {
            request = request.header(http::header::AUTHORIZATION, format!("Bearer {}", token.text()));
        }
    }
    // The URI and token were validated at configuration and the key is
    // checked to be visible ASCII before any attempt, so building cannot fail.
    let request = request.body(Full::new(body)).expect("validated URI and header values");

    let deadline = Instant::now() + spec.limits.timeout;
    let timeout_ms = spec.limits.timeout.as_millis() as u64;
    let response = match timeout_at(deadline, client.request(request)).await {
        Err(_elapsed) => {
            return Outcome::Retryable { failure: AttemptFailure::Timeout { timeout_ms }, retry_after: None };
        }
        Ok(Err(e)) => {
            let message = error_chain(&e);
            let failure = if e.is_connect() {
                AttemptFailure::Connect { message }
            } else {
                AttemptFailure::Transport { message }
            };
            return Outcome::Retryable { failure, retry_after: None };
        }
        Ok(Ok(response)) => response,
    };

    let status = response.status();
    let retry_after = retry_after(response.headers());
    // Read (a bounded prefix of) the body within the same deadline: for an
    // excerpt on failure, and so the connection can be reused on success.
    // A body that does not arrive in time does not change the verdict.
    let body = timeout_at(deadline, read_prefix(response.into_body(), RESPONSE_BODY_BYTES_MAX))
        .await
        .unwrap_or_else(|_elapsed| b"<response body timed out>".to_vec());

    if status.is_success() && expect == Expect::SlackApi {
        slack_answer(status.as_u16(), &body)
    } else if status.is_success() {
        Outcome::Delivered { status: status.as_u16(), thread: None }
    } else if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
        Outcome::Retryable {
            failure: AttemptFailure::Status { status: status.as_u16(), body_excerpt: excerpt(&body) },
            retry_after,
        }
    } else {
        Outcome::Permanent { status: status.as_u16(), body_excerpt: excerpt(&body) }
    }
}

/// Judges a `2xx` answer of Slack's Web API: `{"ok": true, "ts": "…"}` is
/// a delivery in thread `ts`; `{"ok": false, "error": "…"}` a failure,
/// retried only for Slack's transient errors.
fn slack_answer(status: u16, body: &[u8]) -> Outcome {
    #[derive(serde::Deserialize)]
    struct Answer {
        ok: bool,
        ts: Option<String>,
        error: Option<String>,
    }
    let body_excerpt = excerpt(body);
    match serde_json::from_slice::<Answer>(body) {
        Ok(Answer { ok: true, ts, .. }) => Outcome::Delivered { status, thread: ts },
        Ok(Answer { error: Some(error), .. }) if SLACK_RETRYABLE_ERRORS.contains(&error.as_str()) => {
            Outcome::Retryable { failure: AttemptFailure::Status { status, body_excerpt }, retry_after: None }
        }
        // `ok: false`, or not Slack's answer at all: the URL is wrong.
        _ => Outcome::Permanent { status, body_excerpt },
    }
}

/// Reads at most `limit` bytes of `body`; a transport error ends the read
/// with what arrived so far.
async fn read_prefix<B>(mut body: B, limit: usize) -> Vec<u8>
where
    B: BodyExt<Data = Bytes> + Unpin,
{
    let mut out = Vec::new();
    while out.len() < limit {
        let Some(Ok(frame)) = body.frame().await else { break };
        if let Ok(data) = frame.into_data() {
            let room = limit - out.len();
            out.extend_from_slice(&data[..data.len().min(room)]);
        }
    }
    out
}

/// `Retry-After` in its delay-seconds form; the HTTP-date form is ignored
/// (the backoff schedule applies instead).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let seconds: u64 = headers.get(RETRY_AFTER)?.to_str().ok()?.trim().parse().ok()?;
    Some(Duration::from_secs(seconds))
}

fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(BODY_EXCERPT_BYTES_MAX)]);
    // Lossy decoding may grow the text; cut back on a char boundary.
    let mut end = text.len().min(BODY_EXCERPT_BYTES_MAX);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].trim().to_string()
}

fn unix_seconds() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}
