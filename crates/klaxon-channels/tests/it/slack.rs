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
