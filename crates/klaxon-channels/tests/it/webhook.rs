//! The signed generic webhook: headers, body, signature, retries, limits.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use klaxon_channels::{AttemptFailure, ChannelConfig, Channels, Delivery, Error, Notification};
use serde_json::json;
use tokio::time::Instant;

use crate::receiver::{Receiver, Reply, SECRET, SECRET_ENV};

pub fn notification() -> Notification {
    Notification {
        idempotency_key: "incident-7/page/alice/1".to_string(),
        kind: "page".to_string(),
        title: "Sev-1: checkout down".to_string(),
        text: "Error rate 87% on checkout-api.".to_string(),
        fields: BTreeMap::from([("incident_id".to_string(), json!("incident-7")), ("severity".to_string(), json!(1))]),
        recipient: Some("alice".to_string()),
        thread: None,
    }
}

/// A webhook channel named "hook" to `url` with small, test-sized limits.
pub fn webhook(
    url: &str,
    attempts_max: u32,
    timeout_ms: u64,
    backoff_initial_ms: u64,
    backoff_max_ms: u64,
) -> Channels {
    let config = ChannelConfig {
        name: "hook".to_string(),
        kind: "webhook".to_string(),
        url: Some(url.to_string()),
        secret_env: Some(SECRET_ENV.to_string()),
        timeout_ms: Some(timeout_ms),
        attempts_max: Some(attempts_max),
        backoff_initial_ms: Some(backoff_initial_ms),
        backoff_max_ms: Some(backoff_max_ms),
        ..ChannelConfig::default()
    };
    Channels::new(&[config], |var| (var == SECRET_ENV).then(|| SECRET.to_string())).unwrap()
}

#[tokio::test]
async fn first_try_success_sends_signed_json_with_idempotency_key() {
    let receiver = Receiver::signed(vec![]).await;
    let channels = webhook(&receiver.url(), 3, 2_000, 10, 100);

    let delivery = channels.deliver("hook", &notification()).await.unwrap();

    assert_eq!(delivery, Delivery { attempts: 1, status: 200, thread: None });
    let received = receiver.received();
    assert_eq!(received.len(), 1);
    let request = &received[0];
    assert_eq!(request.signature_ok, Some(true));
    assert_eq!(request.header("content-type"), Some("application/json"));
    assert_eq!(request.header("idempotency-key"), Some("incident-7/page/alice/1"));
    let timestamp: u64 = request.header("x-klaxon-timestamp").unwrap().parse().unwrap();
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    assert!(now.abs_diff(timestamp) <= 60, "timestamp {timestamp} far from now {now}");
    assert!(request.header("x-klaxon-signature").unwrap().starts_with("sha256="));
    assert_eq!(
        std::str::from_utf8(&request.body).unwrap(),
        r#"{"idempotency_key":"incident-7/page/alice/1","kind":"page","title":"Sev-1: checkout down","text":"Error rate 87% on checkout-api.","recipient":"alice","fields":{"incident_id":"incident-7","severity":1}}"#
    );
    // Receivers can read the body back into the same type.
    assert_eq!(serde_json::from_slice::<Notification>(&request.body).unwrap(), notification());
    receiver.stop().await;
}

#[tokio::test]
async fn server_errors_are_retried_with_the_same_idempotency_key_and_body() {
    let receiver = Receiver::signed(vec![Reply::status(500), Reply::status(503)]).await;
    let channels = webhook(&receiver.url(), 5, 2_000, 50, 50);

    let delivery = channels.deliver("hook", &notification()).await.unwrap();

    assert_eq!(delivery, Delivery { attempts: 3, status: 200, thread: None });
    let received = receiver.received();
    assert_eq!(received.len(), 3);
    for request in &received {
        assert_eq!(request.header("idempotency-key"), Some("incident-7/page/alice/1"));
        assert_eq!(request.body, received[0].body);
        assert_eq!(request.signature_ok, Some(true));
    }
    for pair in received.windows(2) {
        let gap = pair[1].at - pair[0].at;
        assert!(gap >= Duration::from_millis(40), "retried after {gap:?}, backoff is 50 ms -20%");
    }
    receiver.stop().await;
}

#[tokio::test]
async fn timeouts_are_retried() {
    let receiver = Receiver::signed(vec![Reply::slow(Duration::from_secs(3))]).await;
    let channels = webhook(&receiver.url(), 3, 200, 1, 1);
    let started = Instant::now();

    let delivery = channels.deliver("hook", &notification()).await.unwrap();

    assert_eq!(delivery, Delivery { attempts: 2, status: 200, thread: None });
    assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
    let received = receiver.received();
    assert_eq!(received.len(), 2);
    assert_eq!(received[0].header("idempotency-key"), received[1].header("idempotency-key"));
    receiver.stop().await;
}

#[tokio::test]
async fn client_errors_are_permanent_after_one_attempt() {
    let receiver = Receiver::signed(vec![Reply::status(400).body("bad payload: missing title")]).await;
    let channels = webhook(&receiver.url(), 5, 2_000, 1, 1);

    let error = channels.deliver("hook", &notification()).await.unwrap_err();

    assert!(
        matches!(&error, Error::Permanent { status: 400, body_excerpt, .. } if body_excerpt == "bad payload: missing title"),
        "{error:?}"
    );
    assert_eq!(error.to_string(), r#"channel "hook": permanent failure: HTTP 400: "bad payload: missing title""#);
    assert_eq!(receiver.received().len(), 1);
    receiver.stop().await;
}

#[tokio::test]
async fn redirects_are_not_followed_and_not_retried() {
    let receiver = Receiver::signed(vec![Reply::status(301)]).await;
    let channels = webhook(&receiver.url(), 5, 2_000, 1, 1);

    let error = channels.deliver("hook", &notification()).await.unwrap_err();

    assert!(matches!(error, Error::Permanent { status: 301, .. }), "{error:?}");
    assert_eq!(receiver.received().len(), 1);
    receiver.stop().await;
}

#[tokio::test]
async fn exhausting_attempts_reports_the_count_and_last_failure() {
    let script = vec![Reply::status(500).body("down"); 5];
    let receiver = Receiver::signed(script).await;
    let channels = webhook(&receiver.url(), 3, 2_000, 1, 5);

    let error = channels.deliver("hook", &notification()).await.unwrap_err();

    match &error {
        Error::Exhausted { channel, attempts, last } => {
            assert_eq!(channel, "hook");
            assert_eq!(*attempts, 3);
            assert_eq!(*last, AttemptFailure::Status { status: 500, body_excerpt: "down".to_string() });
        }
        other => panic!("expected Exhausted, got {other:?}"),
    }
    assert_eq!(error.to_string(), r#"channel "hook": gave up after 3 attempts; last: HTTP 500: "down""#);
    assert_eq!(receiver.received().len(), 3);
    receiver.stop().await;
}

#[tokio::test]
async fn refused_connections_are_retried_then_exhausted() {
    // A port that was just free: nothing listens there.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    drop(listener);
    let channels = webhook(&url, 2, 1_000, 1, 1);

    let error = channels.deliver("hook", &notification()).await.unwrap_err();

    assert!(matches!(&error, Error::Exhausted { attempts: 2, last: AttemptFailure::Connect { .. }, .. }), "{error:?}");
}

#[tokio::test]
async fn too_many_requests_honours_retry_after() {
    let receiver = Receiver::signed(vec![Reply::status(429).retry_after("1")]).await;
    // Backoff alone would retry after ~1 ms; Retry-After asks for 1 s.
    let channels = webhook(&receiver.url(), 3, 2_000, 1, 5_000);

    let delivery = channels.deliver("hook", &notification()).await.unwrap();

    assert_eq!(delivery, Delivery { attempts: 2, status: 200, thread: None });
    let received = receiver.received();
    let gap = received[1].at - received[0].at;
    assert!(gap >= Duration::from_millis(950), "retried after {gap:?}, Retry-After was 1 s");
    receiver.stop().await;
}

#[tokio::test]
async fn retry_after_is_capped_by_backoff_max() {
    let receiver = Receiver::signed(vec![Reply::status(429).retry_after("3600")]).await;
    let channels = webhook(&receiver.url(), 3, 2_000, 1, 200);

    let delivery = channels.deliver("hook", &notification()).await.unwrap();

    assert_eq!(delivery, Delivery { attempts: 2, status: 200, thread: None });
    let received = receiver.received();
    let gap = received[1].at - received[0].at;
    assert!(gap >= Duration::from_millis(190) && gap < Duration::from_secs(2), "retried after {gap:?}");
    receiver.stop().await;
}

#[tokio::test]
async fn response_bodies_are_read_only_up_to_the_limit() {
    let huge = "x".repeat(1024 * 1024);
    let receiver = Receiver::signed(vec![Reply::status(422).body(huge)]).await;
    let channels = webhook(&receiver.url(), 1, 2_000, 1, 1);

    let error = channels.deliver("hook", &notification()).await.unwrap_err();

    match error {
        Error::Permanent { status: 422, body_excerpt, .. } => {
            assert_eq!(body_excerpt.len(), klaxon_channels::BODY_EXCERPT_BYTES_MAX);
        }
        other => panic!("expected Permanent, got {other:?}"),
    }
    receiver.stop().await;
}

#[tokio::test]
async fn invalid_notifications_are_refused_before_sending() {
    let receiver = Receiver::signed(vec![]).await;
    let channels = webhook(&receiver.url(), 3, 2_000, 1, 1);
    let mut bad = notification();
    bad.idempotency_key = "two words".to_string();

    let error = channels.deliver("hook", &bad).await.unwrap_err();

    assert!(matches!(error, Error::InvalidNotification { .. }), "{error:?}");
    assert!(receiver.received().is_empty());
    receiver.stop().await;
}

#[tokio::test]
async fn unknown_channel_names_are_an_error() {
    let channels = webhook("http://127.0.0.1:9/hook", 1, 100, 1, 1);

    let error = channels.deliver("pager", &notification()).await.unwrap_err();

    assert_eq!(error.to_string(), r#"no channel named "pager""#);
}
