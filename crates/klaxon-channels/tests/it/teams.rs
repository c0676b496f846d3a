//! The Microsoft Teams Workflows webhook: one Adaptive Card per
//! notification, checked against the shape the Adaptive Card schema
//! requires and the envelope Workflows expects.

use klaxon_channels::{ChannelConfig, ChannelKind, Channels, Delivery, Notification, TEAMS_CARD_CONTENT_TYPE};
use serde_json::{Value, json};

use crate::receiver::{Receiver, Reply};
use crate::webhook::notification;

fn teams(url: &str) -> Channels {
    let config = ChannelConfig {
        name: "exec-teams".to_string(),
        kind: "teams".to_string(),
        url: Some(url.to_string()),
        attempts_max: Some(3),
        backoff_initial_ms: Some(1),
        backoff_max_ms: Some(5),
        ..ChannelConfig::default()
    };
    Channels::new(&[config], |_| None).unwrap()
}

/// What a Workflows "post card" flow and the Adaptive Card schema (1.x)
/// require of a request: problems found, empty when the card is valid.
fn card_problems(message: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let mut need = |ok: bool, what: &str| {
        if !ok {
            problems.push(what.to_owned());
        }
    };
    need(message["type"] == "message", "type must be \"message\"");
    let attachments = message["attachments"].as_array();
    need(attachments.is_some_and(|a| a.len() == 1), "exactly one attachment");
    let Some(attachment) = attachments.and_then(|a| a.first()) else { return problems };
    need(attachment["contentType"] == TEAMS_CARD_CONTENT_TYPE, "contentType of an Adaptive Card");
    let card = &attachment["content"];
    need(card["type"] == "AdaptiveCard", "content.type must be AdaptiveCard");
    need(card["$schema"] == "http://adaptivecards.io/schemas/adaptive-card.json", "the schema URL");
    let version = card["version"].as_str().unwrap_or_default();
    let minor = version.strip_prefix("1.").and_then(|m| m.parse::<u32>().ok());
    need(minor.is_some_and(|m| m <= 5), "version 1.0 to 1.5 (what Teams renders)");
    let body = card["body"].as_array();
    need(body.is_some_and(|b| !b.is_empty()), "a non-empty body");
    for (i, element) in body.into_iter().flatten().enumerate() {
        match element["type"].as_str() {
            Some("TextBlock") => need(element["text"].is_string(), &format!("body[{i}]: a TextBlock needs text")),
            Some("FactSet") => {
                let facts = element["facts"].as_array();
                need(facts.is_some_and(|f| !f.is_empty()), &format!("body[{i}]: a FactSet needs facts"));
                for fact in facts.into_iter().flatten() {
                    need(
                        fact["title"].is_string() && fact["value"].is_string(),
                        &format!("body[{i}]: facts have string title and value"),
                    );
                }
            }
            other => need(false, &format!("body[{i}]: unexpected element type {other:?}")),
        }
    }
    problems
}

#[tokio::test]
async fn posts_one_valid_adaptive_card_per_notification() {
    // Workflows answers 202 Accepted with no body.
    let receiver = Receiver::unsigned(vec![Reply::status(202), Reply::status(202)]).await;
    let channels = teams(&receiver.url());
    assert_eq!(channels.get("exec-teams").unwrap().kind(), ChannelKind::Teams);

    let first = channels.deliver("exec-teams", &notification()).await.unwrap();
    let follow_up = Notification {
        idempotency_key: "incident-7/update/2".to_string(),
        title: "Sev-1: checkout <b>down</b>".to_string(),
        text: "Mitigated.".to_string(),
        thread: Some("any".to_string()),
        ..notification()
    };
    let second = channels.deliver("exec-teams", &follow_up).await.unwrap();

    assert_eq!(first, Delivery { attempts: 1, status: 202, thread: None }, "Workflows gives no message id");
    assert_eq!(second.thread, None);
    let received = receiver.received();
    assert_eq!(received.len(), 2);
    for request in &received {
        assert_eq!(request.header("content-type"), Some("application/json"));
        let problems = card_problems(&request.json());
        assert!(problems.is_empty(), "{problems:?} in {}", request.json());
    }
    let card = &received[0].json()["attachments"][0]["content"];
    assert_eq!(card["body"][0]["text"], json!("Sev-1: checkout down"));
    assert_eq!(card["body"][1]["text"], json!("Error rate 87% on checkout-api."));
    assert_eq!(
        card["body"][2]["facts"],
        json!([{"title": "incident_id", "value": "incident-7"}, {"title": "severity", "value": "1"}])
    );
    let follow = &received[1].json()["attachments"][0]["content"];
    assert_eq!(follow["body"][0]["text"], json!("Sev-1: checkout <b>down</b>"), "text, never markup");
    assert_eq!(follow["body"][1]["text"], json!("Follow-up"));
    receiver.stop().await;
}

#[tokio::test]
async fn the_checker_catches_a_card_without_the_envelope() {
    // The check itself must be able to fail.
    let bare = json!({"type": "AdaptiveCard", "version": "1.4", "body": []});
    assert!(!card_problems(&bare).is_empty());
    let wrong = json!({"type": "message", "attachments": [{"contentType": "application/json", "content": {}}]});
    assert!(card_problems(&wrong).len() >= 3);
}

#[tokio::test]
async fn an_oversized_card_is_refused_before_sending() {
    let receiver = Receiver::unsigned(vec![]).await;
    let channels = teams(&receiver.url());
    let huge = Notification { text: "x".repeat(klaxon_channels::TEAMS_BODY_BYTES_MAX), ..notification() };

    let error = channels.deliver("exec-teams", &huge).await.unwrap_err();

    assert!(matches!(error, klaxon_channels::Error::InvalidNotification { .. }), "{error:?}");
    assert!(receiver.received().is_empty());
    receiver.stop().await;
}
