//! The Slack-compatible incoming webhook.

use klaxon_channels::{ChannelConfig, Channels, Delivery};
use serde_json::json;

use crate::receiver::{Receiver, Reply};
use crate::webhook::notification;

fn slack(url: &str) -> Channels {
    let config = ChannelConfig {
        name: "slack-incidents".to_string(),
        kind: "slack".to_string(),
        url: Some(url.to_string()),
        secret_env: None,
        timeout_ms: Some(2_000),
        attempts_max: Some(3),
        backoff_initial_ms: Some(1),
        backoff_max_ms: Some(5),
        ..ChannelConfig::default()
    };
    Channels::new(&[config], |_| None).unwrap()
}

#[tokio::test]
async fn posts_a_text_message() {
    let receiver = Receiver::unsigned(vec![]).await;
    let channels = slack(&receiver.url());

    let delivery = channels.deliver("slack-incidents", &notification()).await.unwrap();

    assert_eq!(delivery, Delivery { attempts: 1, status: 200, thread: None });
    let received = receiver.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].header("content-type"), Some("application/json"));
    assert_eq!(received[0].header("idempotency-key"), Some("incident-7/page/alice/1"));
    assert_eq!(received[0].header("x-klaxon-signature"), None);
    assert_eq!(
        received[0].json(),
        json!({"text": "*Sev-1: checkout down*\nError rate 87% on checkout-api.\n*incident_id*: incident-7\n*severity*: 1"})
    );
    receiver.stop().await;
}

#[tokio::test]
async fn rate_limits_are_retried() {
    let receiver = Receiver::unsigned(vec![Reply::status(429).retry_after("0").body("rate_limited")]).await;
    let channels = slack(&receiver.url());

    let delivery = channels.deliver("slack-incidents", &notification()).await.unwrap();

    assert_eq!(delivery, Delivery { attempts: 2, status: 200, thread: None });
    let received = receiver.received();
    assert_eq!(received[0].body, received[1].body);
    receiver.stop().await;
}

const TOKEN_ENV: &str = "KLAXON_TEST_SLACK_TOKEN";

/// A Slack Web API channel (`chat.postMessage`) to `url`, posting to C0123.
fn slack_api(url: &str, token: &str) -> Channels {
    let config = ChannelConfig {
        name: "slack-api".to_string(),
        kind: "slack".to_string(),
        url: Some(url.to_string()),
        token_env: Some(TOKEN_ENV.to_string()),
        slack_channel: Some("C0123".to_string()),
        attempts_max: Some(3),
        backoff_initial_ms: Some(1),
        backoff_max_ms: Some(5),
        ..ChannelConfig::default()
    };
    let token = token.to_string();
    Channels::new(&[config], move |var| (var == TOKEN_ENV).then(|| token.clone())).unwrap()
}

fn ok(ts: &str) -> Reply {
    Reply::status(200).body(json!({"ok": true, "channel": "C0123", "ts": ts, "message": {"text": "…"}}).to_string())
}

#[tokio::test]
async fn the_web_api_returns_the_first_posts_ts_and_follow_ups_reply_in_its_thread() {
    let receiver = Receiver::unsigned(vec![ok("1700000000.000100"), ok("1700000042.000200")]).await;
    let token = format!("xoxb-test-{}", std::process::id());
    let channels = slack_api(&receiver.url(), &token);

    let first = channels.deliver("slack-api", &notification()).await.unwrap();
    let follow_up = klaxon_channels::Notification {
        idempotency_key: "incident-7/update/2".to_string(),
        text: "Mitigated.".to_string(),
        thread: first.thread.clone(),
        ..notification()
    };
    let second = channels.deliver("slack-api", &follow_up).await.unwrap();

    assert_eq!(first, Delivery { attempts: 1, status: 200, thread: Some("1700000000.000100".to_string()) });
    assert_eq!(second.thread.as_deref(), Some("1700000000.000100"), "the thread stays the first post's ts");
    let received = receiver.received();
    assert_eq!(received[0].header("authorization"), Some(format!("Bearer {token}").as_str()));
    assert_eq!(received[0].json()["channel"], json!("C0123"));
    assert_eq!(received[0].json().get("thread_ts"), None);
    assert_eq!(received[1].json()["thread_ts"], json!("1700000000.000100"));
    assert_eq!(received[1].json()["channel"], json!("C0123"));
    receiver.stop().await;
}

#[tokio::test]
async fn a_web_api_error_in_a_200_is_a_failure_retried_only_when_transient() {
    let receiver = Receiver::unsigned(vec![
        Reply::status(200).body(r#"{"ok":false,"error":"internal_error"}"#),
        ok("1700000000.000300"),
        Reply::status(200).body(r#"{"ok":false,"error":"channel_not_found"}"#),
    ])
    .await;
    let channels = slack_api(&receiver.url(), "xoxb-test");

    let retried = channels.deliver("slack-api", &notification()).await.unwrap();
    let refused = channels.deliver("slack-api", &notification()).await.unwrap_err();

    assert_eq!(retried.attempts, 2);
    match refused {
        klaxon_channels::Error::Permanent { status: 200, body_excerpt, .. } => {
            assert!(body_excerpt.contains("channel_not_found"), "{body_excerpt}");
        }
        other => panic!("expected a permanent failure, got {other:?}"),
    }
    assert_eq!(receiver.received().len(), 3, "channel_not_found is not retried");
    receiver.stop().await;
}

#[tokio::test]
async fn an_incoming_webhook_gives_no_thread_but_passes_one_given_as_thread_ts() {
    let receiver = Receiver::unsigned(vec![Reply::status(200).body("ok"), Reply::status(200).body("ok")]).await;
    let channels = slack(&receiver.url());

    let first = channels.deliver("slack-incidents", &notification()).await.unwrap();
    let follow_up = klaxon_channels::Notification { thread: Some("1700000000.000100".to_string()), ..notification() };
    let second = channels.deliver("slack-incidents", &follow_up).await.unwrap();

    assert_eq!(first.thread, None, "an incoming webhook answers `ok`, with no ts");
    assert_eq!(second.thread.as_deref(), Some("1700000000.000100"));
    let received = receiver.received();
    assert_eq!(received[0].json().get("thread_ts"), None);
    assert_eq!(received[1].json()["thread_ts"], json!("1700000000.000100"));
    receiver.stop().await;
}
