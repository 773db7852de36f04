use std::collections::HashMap;

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::Utc;
use kong_pulsar_verify::Jwks;
use serde_json::Value;

use super::*;
use crate::provenance::KeySet;

/// A secret source holding one value (or none), counting reads.
struct OneSecret(Mutex<Option<SecretValue>>, std::sync::atomic::AtomicUsize);

#[async_trait]
impl SecretSource for OneSecret {
    async fn get(&self, name: &str) -> Result<SecretValue, SecretsError> {
        self.1.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.0
            .lock()
            .unwrap()
            .clone()
            .ok_or_else(|| SecretsError::NotFound { name: name.into() })
    }
}

fn settings() -> ProvenanceSettings {
    ProvenanceSettings {
        issuer: "kp-test".into(),
        signing_secret: "kp/provenance".into(),
        rotate_every: Duration::from_secs(86_400),
        retain_retired: Duration::from_secs(86_400),
        publish_lead: Duration::from_secs(60),
    }
}

fn message() -> OutgoingMessage {
    let properties: HashMap<String, String> = [
        ("kp-event-id", "e-1"),
        ("kp-tenant", "payments"),
        ("kp-source-id", "alice"),
        ("kp-auth-method", "oidc"),
        ("kp-issuer", "https://idp.example.com"),
        ("kp-request-id", "r-1"),
        ("kp-received-at", "2026-12-02T00:00:00.000Z"),
        (
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        ),
        ("region", "eu"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    OutgoingMessage {
        payload: br#"{"orderId":"1001"}"#.to_vec(),
        key: Some("order-1001".into()),
        event_time_ms: Some(1_700_000_000_000),
        properties,
    }
}

fn decode(part: &str) -> Value {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

#[tokio::test]
async fn a_sealed_message_carries_a_jws_over_what_it_holds() {
    let set = KeySet::first(Utc::now()).unwrap();
    let source = Arc::new(OneSecret(
        Mutex::new(Some(set.to_secret_value())),
        Default::default(),
    ));
    let signer = Signer::new(&settings(), source.clone());
    let keys = signer.keys().await.unwrap();
    let mut message = message();
    keys.seal(
        "persistent://payments/orders/order-created",
        &mut message,
        42,
    )
    .unwrap();

    let jws = &message.properties[PROPERTY];
    let parts: Vec<&str> = jws.split('.').collect();
    assert_eq!(parts.len(), 3);
    let header = decode(parts[0]);
    assert_eq!(header["alg"], "ES256");
    assert_eq!(header["typ"], TYP);
    assert_eq!(header["kid"], set.active_kid());
    let claims: Claims = serde_json::from_value(decode(parts[1])).unwrap();
    assert_eq!(claims.iss, "kp-test");
    assert_eq!(claims.iat, 42);
    assert_eq!(claims.topic, "persistent://payments/orders/order-created");
    assert_eq!(claims.source_id, "alice");
    assert_eq!(claims.key.as_deref(), Some("order-1001"));
    assert_eq!(claims.event_time, Some(1_700_000_000_000));
    assert_eq!(claims.payload_sha256, payload_digest(&message.payload));
    assert_eq!(
        claims.properties_sha256,
        caller_properties_digest([("region", "eu")])
    );

    // The signature verifies with the key the served JWKS lists.
    let jwks: Jwks = serde_json::from_str(&keys.jwks_json()).unwrap();
    let jwk = jwks.find(set.active_kid()).unwrap();
    assert!(crate::provenance::verifies_with(
        jwk,
        format!("{}.{}", parts[0], parts[1]).as_bytes(),
        &URL_SAFE_NO_PAD.decode(parts[2]).unwrap(),
    ));
}

#[tokio::test]
async fn keys_are_parsed_once_per_value_and_again_when_it_changes() {
    let first = KeySet::first(Utc::now()).unwrap();
    let source = Arc::new(OneSecret(
        Mutex::new(Some(first.to_secret_value())),
        Default::default(),
    ));
    let signer = Signer::new(&settings(), source.clone());
    let a = signer.keys().await.unwrap();
    let b = signer.keys().await.unwrap();
    assert!(Arc::ptr_eq(&a, &b));
    let second = first
        .rotated(
            Utc::now() + chrono::Duration::hours(1),
            Duration::from_secs(60),
            Duration::from_secs(86_400),
        )
        .unwrap();
    *source.0.lock().unwrap() = Some(second.to_secret_value());
    let c = signer.keys().await.unwrap();
    assert_eq!(c.kid(), first.next_kid());
}

#[tokio::test]
async fn a_missing_or_unusable_key_is_unavailable_not_a_bug() {
    let source = Arc::new(OneSecret(Mutex::new(None), Default::default()));
    let signer = Signer::new(&settings(), source.clone());
    let err = signer.keys().await.err().unwrap();
    assert!(err.is_key_unavailable(), "{err}");
    *source.0.lock().unwrap() = Some(SecretValue::new(r#"{"alg":"ES256"}"#));
    let err = signer.keys().await.err().unwrap();
    assert!(matches!(err, ProvenanceError::Malformed(_)), "{err}");
}

#[tokio::test]
async fn a_message_without_the_gateway_properties_is_not_signed() {
    let set = KeySet::first(Utc::now()).unwrap();
    let source = Arc::new(OneSecret(
        Mutex::new(Some(set.to_secret_value())),
        Default::default(),
    ));
    let keys = Signer::new(&settings(), source).keys().await.unwrap();
    let mut message = message();
    message.properties.remove("kp-source-id");
    let err = keys
        .seal("persistent://t/n/x", &mut message, 1)
        .unwrap_err();
    assert!(matches!(err, ProvenanceError::Incomplete("kp-source-id")));
    assert!(!message.properties.contains_key(PROPERTY));
}

/// Each of `count` messages with its own event id and payload.
fn batch(count: usize) -> Vec<OutgoingMessage> {
    (0..count)
        .map(|i| {
            let mut m = message();
            m.properties.insert("kp-event-id".into(), format!("e-{i}"));
            m.payload = format!(r#"{{"orderId":"{i}"}}"#).into_bytes();
            m
        })
        .collect()
}

#[tokio::test]
async fn a_batch_sealed_across_threads_gives_each_message_its_own_valid_seal() {
    let set = KeySet::first(Utc::now()).unwrap();
    let source = Arc::new(OneSecret(
        Mutex::new(Some(set.to_secret_value())),
        Default::default(),
    ));
    let keys = Signer::new(&settings(), source).keys().await.unwrap();
    let jwks: Jwks = serde_json::from_str(&keys.jwks_json()).unwrap();
    let jwk = jwks.find(set.active_kid()).unwrap();
    // Below, at and well above the size that is split across threads (a
    // single-core machine signs them all on one; the result is the same).
    for count in [1, MIN_PER_THREAD * 2, MIN_PER_THREAD * 7 + 3] {
        let mut messages = batch(count);
        keys.seal_all(
            "persistent://payments/orders/order-created",
            &mut messages,
            7,
        )
        .unwrap();
        for (i, m) in messages.iter().enumerate() {
            let parts: Vec<&str> = m.properties[PROPERTY].split('.').collect();
            let claims: Claims = serde_json::from_value(decode(parts[1])).unwrap();
            assert_eq!(claims.event_id, format!("e-{i}"), "{count} messages");
            assert_eq!(claims.payload_sha256, payload_digest(&m.payload));
            assert!(crate::provenance::verifies_with(
                jwk,
                format!("{}.{}", parts[0], parts[1]).as_bytes(),
                &URL_SAFE_NO_PAD.decode(parts[2]).unwrap(),
            ));
        }
    }
}

#[tokio::test]
async fn one_message_of_a_batch_that_cannot_be_sealed_fails_the_whole_batch() {
    let set = KeySet::first(Utc::now()).unwrap();
    let source = Arc::new(OneSecret(
        Mutex::new(Some(set.to_secret_value())),
        Default::default(),
    ));
    let keys = Signer::new(&settings(), source).keys().await.unwrap();
    // The faulty message in the first, a middle and the last thread's share.
    for faulty in [0, 100, 199] {
        let mut messages = batch(200);
        messages[faulty].properties.remove("kp-request-id");
        let err = keys
            .seal_all("persistent://t/n/x", &mut messages, 1)
            .unwrap_err();
        assert!(
            matches!(err, ProvenanceError::Incomplete("kp-request-id")),
            "message {faulty}: {err}"
        );
    }
}
