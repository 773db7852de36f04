//! Signs messages in-process with fresh P-256 keys and shows each refusal.

use std::collections::HashMap;

use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{EncodingKey, Header as JwtHeader};
use serde_json::json;

use super::*;

const TOPIC: &str = "persistent://payments/orders/order-created";
const PAYLOAD: &[u8] = br#"{"orderId":"1001"}"#;

struct Signer {
    kid: String,
    encoding: EncodingKey,
    jwk: Jwk,
}

impl Signer {
    fn new(kid: &str) -> Self {
        let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
        let pkcs8 = pair.to_pkcs8v1().unwrap();
        let point = pair.public_key().as_ref();
        assert_eq!(point[0], 0x04, "uncompressed point");
        let (x, y) = point[1..].split_at(32);
        Self {
            kid: kid.into(),
            encoding: EncodingKey::from_ec_der(pkcs8.as_ref()),
            jwk: Jwk::p256(kid, URL_SAFE_NO_PAD.encode(x), URL_SAFE_NO_PAD.encode(y)),
        }
    }

    fn sign(&self, claims: &Claims) -> String {
        self.sign_json(&serde_json::to_value(claims).unwrap())
    }

    fn sign_json(&self, claims: &serde_json::Value) -> String {
        let mut header = JwtHeader::new(Algorithm::ES256);
        header.typ = Some(TYP.into());
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding).unwrap()
    }
}

/// A message as the gateway would publish it, and its claims.
struct Message {
    topic: String,
    payload: Vec<u8>,
    key: Option<String>,
    event_time_ms: Option<u64>,
    properties: HashMap<String, String>,
}

impl Message {
    fn received(&self) -> Received<'_> {
        Received {
            topic: &self.topic,
            payload: &self.payload,
            key: self.key.as_deref(),
            event_time_ms: self.event_time_ms,
            properties: &self.properties,
        }
    }
}

fn claims_for(properties: &HashMap<String, String>) -> Claims {
    Claims {
        iss: "kong-pulsar-test".into(),
        iat: 1_764_633_600,
        event_id: properties["kp-event-id"].clone(),
        tenant: "payments".into(),
        topic: TOPIC.into(),
        source_id: "checkout-api".into(),
        service_tag: Some("checkout".into()),
        auth_method: "oidc".into(),
        auth_issuer: "https://idp.example.com".into(),
        request_id: "req-1".into(),
        received_at: "2026-12-02T00:00:00.000Z".into(),
        traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into(),
        key: Some("order-1001".into()),
        event_time: Some(1_764_633_600_123),
        idempotency_key: None,
        ce_id: None,
        ce_source: None,
        ce_type: None,
        payload_sha256: payload_digest(PAYLOAD),
        properties_sha256: caller_properties_digest(
            properties.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        ),
    }
}

fn gateway_properties() -> HashMap<String, String> {
    [
        ("kp-event-id", "0193e0a4-0000-7000-8000-000000000001"),
        ("kp-tenant", "payments"),
        ("kp-source-id", "checkout-api"),
        ("kp-service-tag", "checkout"),
        ("kp-auth-method", "oidc"),
        ("kp-issuer", "https://idp.example.com"),
        ("kp-request-id", "req-1"),
        ("kp-received-at", "2026-12-02T00:00:00.000Z"),
        (
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        ),
        ("region", "eu-west-1"),
        ("schema", "v2"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// A correctly signed message from `signer`.
fn signed(signer: &Signer) -> (Message, Claims) {
    let mut properties = gateway_properties();
    let claims = claims_for(&properties);
    properties.insert(PROPERTY.into(), signer.sign(&claims));
    let message = Message {
        topic: TOPIC.into(),
        payload: PAYLOAD.to_vec(),
        key: claims.key.clone(),
        event_time_ms: claims.event_time,
        properties,
    };
    (message, claims)
}

fn jwks(signers: &[&Signer]) -> Jwks {
    Jwks {
        keys: signers.iter().map(|s| s.jwk.clone()).collect(),
    }
}

#[test]
fn a_message_the_gateway_signed_verifies() {
    let signer = Signer::new("k1");
    let other = Signer::new("k0");
    let (message, claims) = signed(&signer);
    let verified = verify(&message.received(), &jwks(&[&other, &signer])).unwrap();
    assert_eq!(verified.kid, "k1");
    assert_eq!(verified.claims, claims);
    Verifier::default()
        .with_issuer("kong-pulsar-test")
        .verify(&message.received(), &jwks(&[&signer]))
        .unwrap();
}

#[test]
fn a_partition_of_the_signed_topic_is_the_signed_topic() {
    let signer = Signer::new("k1");
    let (mut message, _) = signed(&signer);
    for partition in ["-partition-0", "-partition-17"] {
        message.topic = format!("{TOPIC}{partition}");
        verify(&message.received(), &jwks(&[&signer])).unwrap();
    }
    for (signed, received, ok) in [
        (TOPIC, TOPIC, true),
        (TOPIC, &*format!("{TOPIC}-partition-3"), true),
        (TOPIC, &*format!("{TOPIC}-partition-"), false),
        (TOPIC, &*format!("{TOPIC}-partition-1a"), false),
        (TOPIC, &*format!("{TOPIC}-partition--1"), false),
        (TOPIC, &*format!("{TOPIC}x"), false),
        (TOPIC, &*format!("{TOPIC}-partition-1-partition-2"), false),
        (TOPIC, "persistent://payments/orders/order", false),
        (
            TOPIC,
            "non-persistent://payments/orders/order-created",
            false,
        ),
    ] {
        assert_eq!(topic_matches(signed, received), ok, "{received}");
    }
}

/// What a tamperer does to a correctly signed message, and the code it earns.
type Tamper = fn(&mut Message, &Signer);

#[test]
fn every_tampering_is_refused_with_its_code() {
    let cases: &[(&str, Tamper, &str)] = &[
        (
            "no signature",
            |m, _| drop(m.properties.remove(PROPERTY)),
            "no_signature",
        ),
        (
            "a changed payload byte",
            |m, _| m.payload[3] ^= 1,
            "payload_mismatch",
        ),
        (
            "a changed caller property",
            |m, _| drop(m.properties.insert("region".into(), "us-east-1".into())),
            "properties_mismatch",
        ),
        (
            "an added caller property",
            |m, _| drop(m.properties.insert("extra".into(), "".into())),
            "properties_mismatch",
        ),
        (
            "a removed caller property",
            |m, _| drop(m.properties.remove("schema")),
            "properties_mismatch",
        ),
        (
            "a removed kp-* property",
            |m, _| drop(m.properties.remove("kp-source-id")),
            "claim_mismatch",
        ),
        (
            "a changed kp-* property",
            |m, _| drop(m.properties.insert("kp-source-id".into(), "admin".into())),
            "claim_mismatch",
        ),
        (
            "an added optional kp-* property",
            |m, _| drop(m.properties.insert("kp-idempotency-key".into(), "k".into())),
            "claim_mismatch",
        ),
        (
            "a changed traceparent",
            |m, _| drop(m.properties.insert("traceparent".into(), "00-x".into())),
            "claim_mismatch",
        ),
        (
            "republished to another topic",
            |m, _| m.topic = "persistent://payments/orders/refunds".into(),
            "topic_mismatch",
        ),
        (
            "republished to a look-alike topic",
            |m, _| m.topic = format!("{TOPIC}-partition-x"),
            "topic_mismatch",
        ),
        (
            "another key",
            |m, _| m.key = Some("order-1002".into()),
            "claim_mismatch",
        ),
        ("no key", |m, _| m.key = None, "claim_mismatch"),
        (
            "another event time",
            |m, _| m.event_time_ms = Some(1),
            "claim_mismatch",
        ),
        (
            "another key with the same kid",
            |m, _| {
                let (forged, _) = signed(&Signer::new("k1"));
                m.properties = forged.properties;
            },
            "bad_signature",
        ),
        (
            "a kid not in the key set",
            |m, _| {
                let (forged, _) = signed(&Signer::new("k9"));
                m.properties = forged.properties;
            },
            "unknown_key",
        ),
        (
            "a changed signature byte",
            |m, _| {
                // Well inside the signature part, clear of base64's
                // trailing bits.
                let token = m.properties.get_mut(PROPERTY).unwrap();
                let at = token.len() - 10;
                let flipped = if &token[at..=at] == "A" { "B" } else { "A" };
                token.replace_range(at..=at, flipped);
            },
            "bad_signature",
        ),
        (
            "claims swapped under the signature",
            |m, s| {
                let mut claims = claims_for(&m.properties);
                claims.source_id = "admin".into();
                let forged = s.sign(&claims);
                let real = m.properties[PROPERTY].clone();
                let (_, forged_body) = forged.split_once('.').unwrap();
                let (real_head, real_rest) = real.split_once('.').unwrap();
                let (_, real_sig) = real_rest.split_once('.').unwrap();
                let (forged_body, _) = forged_body.split_once('.').unwrap();
                m.properties.insert(
                    PROPERTY.into(),
                    format!("{real_head}.{forged_body}.{real_sig}"),
                );
            },
            "bad_signature",
        ),
        (
            "an HS256 token keyed with the public x",
            |m, s| {
                let mut header = JwtHeader::new(Algorithm::HS256);
                header.typ = Some(TYP.into());
                header.kid = Some(s.kid.clone());
                let token = jsonwebtoken::encode(
                    &header,
                    &claims_for(&m.properties),
                    &EncodingKey::from_secret(s.jwk.x.as_bytes()),
                )
                .unwrap();
                m.properties.insert(PROPERTY.into(), token);
            },
            "malformed",
        ),
        (
            "alg none",
            |m, s| {
                let head = URL_SAFE_NO_PAD
                    .encode(json!({"alg": "none", "typ": TYP, "kid": s.kid}).to_string());
                let body =
                    URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims_for(&m.properties)).unwrap());
                m.properties
                    .insert(PROPERTY.into(), format!("{head}.{body}."));
            },
            "malformed",
        ),
        (
            "another typ",
            |m, s| {
                let head = URL_SAFE_NO_PAD
                    .encode(json!({"alg": "ES256", "typ": "JWT", "kid": s.kid}).to_string());
                let token = m.properties[PROPERTY].clone();
                let (_, rest) = token.split_once('.').unwrap();
                m.properties
                    .insert(PROPERTY.into(), format!("{head}.{rest}"));
            },
            "malformed",
        ),
        (
            "a crit header",
            |m, s| {
                let head = URL_SAFE_NO_PAD.encode(
                    json!({"alg": "ES256", "typ": TYP, "kid": s.kid, "crit": ["b64"]}).to_string(),
                );
                let token = m.properties[PROPERTY].clone();
                let (_, rest) = token.split_once('.').unwrap();
                m.properties
                    .insert(PROPERTY.into(), format!("{head}.{rest}"));
            },
            "malformed",
        ),
        (
            "no kid",
            |m, _| {
                let head = URL_SAFE_NO_PAD.encode(json!({"alg": "ES256", "typ": TYP}).to_string());
                let token = m.properties[PROPERTY].clone();
                let (_, rest) = token.split_once('.').unwrap();
                m.properties
                    .insert(PROPERTY.into(), format!("{head}.{rest}"));
            },
            "malformed",
        ),
        (
            "signed claims that are not provenance claims",
            |m, s| {
                let token = s.sign_json(&json!({"sub": "admin"}));
                m.properties.insert(PROPERTY.into(), token);
            },
            "malformed",
        ),
        (
            "a JWS with four parts",
            |m, _| {
                let token = m.properties.get_mut(PROPERTY).unwrap();
                token.push_str(".AAAA");
            },
            "malformed",
        ),
        (
            "garbage",
            |m, _| drop(m.properties.insert(PROPERTY.into(), "\u{0}..é.".into())),
            "malformed",
        ),
        (
            "an oversized signature",
            |m, _| drop(m.properties.insert(PROPERTY.into(), "a.".repeat(1 << 20))),
            "malformed",
        ),
        (
            "empty",
            |m, _| drop(m.properties.insert(PROPERTY.into(), String::new())),
            "malformed",
        ),
    ];
    let signer = Signer::new("k1");
    let keys = jwks(&[&signer]);
    for (what, tamper, code) in cases {
        let (mut message, _) = signed(&signer);
        tamper(&mut message, &signer);
        let err = verify(&message.received(), &keys).expect_err(what);
        assert_eq!(err.code(), *code, "{what}: {err}");
    }
}

#[test]
fn claim_mismatch_names_the_claim() {
    let signer = Signer::new("k1");
    let keys = jwks(&[&signer]);
    for (what, tamper) in [
        (
            "kp-tenant",
            (|m| drop(m.properties.insert("kp-tenant".into(), "x".into()))) as fn(&mut Message),
        ),
        ("kp-service-tag", |m| {
            drop(m.properties.remove("kp-service-tag"))
        }),
        ("key", |m| m.key = None),
        ("event_time", |m| m.event_time_ms = None),
    ] {
        let (mut message, _) = signed(&signer);
        tamper(&mut message);
        assert_eq!(
            verify(&message.received(), &keys),
            Err(VerifyError::ClaimMismatch { what })
        );
    }
}

#[test]
fn absent_means_absent_on_both_sides() {
    // A message with no key and no event time, and a claim set without
    // them, verifies whichever way the client reports "none".
    let signer = Signer::new("k1");
    let mut properties = gateway_properties();
    let mut claims = claims_for(&properties);
    claims.key = None;
    claims.event_time = None;
    claims.service_tag = None;
    properties.remove("kp-service-tag");
    properties.insert(PROPERTY.into(), signer.sign(&claims));
    for (key, event_time_ms) in [(None, None), (Some(""), Some(0))] {
        let message = Received {
            topic: TOPIC,
            payload: PAYLOAD,
            key,
            event_time_ms,
            properties: &properties,
        };
        verify(&message, &jwks(&[&signer])).unwrap();
    }
    // And the optional property present while its claim is absent is refused.
    properties.insert("kp-service-tag".into(), "checkout".into());
    let message = Received {
        topic: TOPIC,
        payload: PAYLOAD,
        key: None,
        event_time_ms: None,
        properties: &properties,
    };
    assert_eq!(
        verify(&message, &jwks(&[&signer])),
        Err(VerifyError::ClaimMismatch {
            what: "kp-service-tag"
        })
    );
}

#[test]
fn the_signer_can_be_pinned() {
    let signer = Signer::new("k1");
    let (message, _) = signed(&signer);
    let err = Verifier::default()
        .with_issuer("another-deployment")
        .verify(&message.received(), &jwks(&[&signer]))
        .unwrap_err();
    assert_eq!(err.code(), "issuer_mismatch");
}

#[test]
fn keys_that_are_not_p256_signing_keys_are_not_used() {
    let signer = Signer::new("k1");
    let (message, _) = signed(&signer);
    let spoil: &[fn(&mut Jwk)] = &[
        |k| k.kty = "RSA".into(),
        |k| k.crv = "P-384".into(),
        |k| k.alg = Some("HS256".into()),
        |k| k.use_ = Some("enc".into()),
        |k| k.x = "AAAA".into(),
        |k| k.y = "not base64!".into(),
    ];
    for spoil in spoil {
        let mut keys = jwks(&[&signer]);
        spoil(&mut keys.keys[0]);
        let err = verify(&message.received(), &keys).unwrap_err();
        assert_eq!(err.code(), "unknown_key", "{keys:?}");
    }
}

#[test]
fn errors_echo_little_of_what_the_token_chose() {
    let signer = Signer::new(&"k".repeat(10_000));
    let (message, _) = signed(&signer);
    let err = verify(&message.received(), &Jwks::default()).unwrap_err();
    assert!(err.to_string().len() < 200, "{err}");
}

#[test]
fn garbage_properties_do_not_panic() {
    let signer = Signer::new("k1");
    let keys = jwks(&[&signer]);
    let (mut message, _) = signed(&signer);
    message.properties.insert("big".into(), "x".repeat(4 << 20));
    message
        .properties
        .insert("\u{0}\u{ffff}".into(), "\u{1f600}".into());
    message
        .properties
        .insert("kp-received-at".into(), "\u{0}".repeat(100_000));
    assert!(verify(&message.received(), &keys).is_err());
    for value in [
        "....",
        ".",
        "a.b.c",
        "e30.e30.",
        "e30.e30.e30",
        &"é".repeat(9000),
    ] {
        message.properties.insert(PROPERTY.into(), value.into());
        assert_eq!(
            verify(&message.received(), &keys).unwrap_err().code(),
            "malformed",
            "{value:.20}"
        );
    }
}

#[test]
fn duplicate_wire_properties_are_refused() {
    let ok = properties_from_pairs([("a", "1"), ("b", "2")]).unwrap();
    assert_eq!(ok.len(), 2);
    let err = properties_from_pairs([("kp-source-id", "a"), ("x", "1"), ("kp-source-id", "b")])
        .unwrap_err();
    assert_eq!(err.code(), "duplicate_property");
}
