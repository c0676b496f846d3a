//! Unit tests of the pure parts: backoff schedule, signatures, rendering.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::backoff::{Backoff, seed_from};
use crate::{Error, Notification, signature_header, verify_signature};

#[test]
fn backoff_doubles_caps_and_jitters_within_20_percent() {
    let backoff = Backoff { initial_ms: 200, max_ms: 5_000 };
    for seed in 0..200u64 {
        let mut previous_base = 0;
        for retry in 0..12u32 {
            let base = (200u64 << retry).min(5_000);
            let ms = backoff.delay(retry, seed).as_millis() as u64;
            assert!(ms >= base * 8 / 10, "seed {seed} retry {retry}: {ms} < 80% of {base}");
            assert!(ms <= (base * 12 / 10).min(5_000), "seed {seed} retry {retry}: {ms} > bound of {base}");
            assert!(base >= previous_base);
            previous_base = base;
        }
    }
}

#[test]
fn backoff_is_deterministic_per_seed_and_varies_across_seeds() {
    let backoff = Backoff { initial_ms: 1_000, max_ms: 60_000 };
    let schedule = |seed| (0..5).map(|retry| backoff.delay(retry, seed)).collect::<Vec<_>>();
    let a = seed_from(b"incident-1/page-1");
    let b = seed_from(b"incident-1/page-2");
    assert_eq!(schedule(a), schedule(a));
    assert_ne!(schedule(a), schedule(b));
}

#[test]
fn backoff_zero_initial_means_immediate_retries() {
    let backoff = Backoff { initial_ms: 0, max_ms: 0 };
    assert_eq!(backoff.delay(0, 7), Duration::ZERO);
    assert_eq!(backoff.delay(19, 7), Duration::ZERO);
    assert_eq!(backoff.bounded(Duration::from_secs(30)), Duration::ZERO);
}

#[test]
fn retry_after_is_capped_by_backoff_max() {
    let backoff = Backoff { initial_ms: 10, max_ms: 250 };
    assert_eq!(backoff.bounded(Duration::from_secs(3600)), Duration::from_millis(250));
    assert_eq!(backoff.bounded(Duration::from_millis(100)), Duration::from_millis(100));
}

#[test]
fn signature_round_trips_and_rejects_tampering() {
    let secret = b"0123456789abcdef-secret";
    let body = br#"{"idempotency_key":"k"}"#;
    let header = signature_header(secret, "1700000000", body);
    assert!(header.starts_with("sha256="));
    assert_eq!(header.len(), "sha256=".len() + 64);
    assert!(verify_signature(secret, "1700000000", body, &header));
    assert!(verify_signature(secret, "1700000000", body, &header.to_uppercase().replace("SHA256=", "sha256=")));
    assert!(!verify_signature(secret, "1700000001", body, &header));
    assert!(!verify_signature(secret, "1700000000", br#"{"idempotency_key":"K"}"#, &header));
    assert!(!verify_signature(b"another-secret-of-16+", "1700000000", body, &header));
    assert!(!verify_signature(secret, "1700000000", body, &header[7..]));
    assert!(!verify_signature(secret, "1700000000", body, "sha256=zz"));
    assert!(!verify_signature(secret, "1700000000", body, ""));
}

#[test]
fn signature_matches_an_independent_implementation() {
    // Python: hmac.new(b"key", b"1.x", hashlib.sha256).hexdigest()
    let expected = "sha256=fc4913c41a7bf793267e2a384f3261c9436ec2cd097bd745e7b0d99113f510ec";
    assert_eq!(signature_header(b"key", "1", b"x"), expected);
}

fn notification() -> Notification {
    Notification {
        idempotency_key: "inc-42/page/1".to_string(),
        kind: "page".to_string(),
        title: "Checkout <down> & out".to_string(),
        text: "p99 > 5s".to_string(),
        fields: BTreeMap::from([
            ("severity".to_string(), serde_json::json!("sev1")),
            ("customers".to_string(), serde_json::json!(12)),
        ]),
        recipient: Some("alice".to_string()),
        thread: None,
    }
}

#[test]
fn webhook_body_has_the_documented_field_order() {
    let body = String::from_utf8(notification().webhook_body().unwrap()).unwrap();
    assert_eq!(
        body,
        r#"{"idempotency_key":"inc-42/page/1","kind":"page","title":"Checkout <down> & out","text":"p99 > 5s","recipient":"alice","fields":{"customers":12,"severity":"sev1"}}"#
    );
}

#[test]
fn slack_body_escapes_control_characters() {
    let body: serde_json::Value = serde_json::from_slice(&notification().slack_body(None).unwrap()).unwrap();
    assert_eq!(
        body,
        serde_json::json!({"text": "*Checkout &lt;down&gt; &amp; out*\np99 &gt; 5s\n*customers*: 12\n*severity*: sev1"})
    );
}

#[test]
fn notification_limits_are_checked() {
    let check = |edit: fn(&mut Notification), expected: &str| {
        let mut n = notification();
        edit(&mut n);
        match n.validate() {
            Err(e @ Error::InvalidNotification { .. }) => assert_eq!(e.to_string(), expected),
            other => panic!("expected InvalidNotification, got {other:?}"),
        }
    };
    check(
        |n| n.idempotency_key.clear(),
        "notification rejected before delivery: idempotency_key must be 1 to 200 bytes, got 0",
    );
    check(
        |n| n.idempotency_key = "a".repeat(201),
        "notification rejected before delivery: idempotency_key must be 1 to 200 bytes, got 201",
    );
    check(
        |n| n.idempotency_key = "has space".to_string(),
        "notification rejected before delivery: idempotency_key must be visible ASCII without spaces",
    );
    check(|n| n.kind.clear(), "notification rejected before delivery: kind must be 1 to 64 bytes, got 0");
    assert!(notification().validate().is_ok());

    let mut huge = notification();
    huge.text = "x".repeat(crate::NOTIFICATION_BODY_BYTES_MAX);
    assert!(matches!(huge.webhook_body(), Err(Error::InvalidNotification { .. })));
}
