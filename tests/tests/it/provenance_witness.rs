//! The provenance contract against the real broker, judged twice: messages
//! produced straight to a topic (no gateway) — one signed in-test exactly as
//! the contract says, the others tampered the ways an attacker with produce
//! rights would — are read back by the `kong-pulsar-verify` CLI (pulsar-rs,
//! our verifier, the key set over HTTP) and by the Python witness (the C++
//! client, PyJWT, digests of its own, the key set from a file), and both
//! must give every message the same verdict.

use std::collections::HashMap;
use std::process::Output;

use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
use axum::routing::get;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use kong_pulsar::pulsar::broker::OutgoingMessage;
use kong_pulsar_verify::{Claims, Jwk, Jwks, PROPERTY, TYP};
use kp_tests::lambda::temp_file;
use kp_tests::witness::{both_verdicts, judge_both, verdicts};
use kp_tests::{stack, unique};

const SIGNER: &str = "kong-pulsar-it";

struct Key {
    kid: String,
    encoding: EncodingKey,
    jwk: Jwk,
}

impl Key {
    fn new(kid: &str) -> Self {
        let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
        let point = pair.public_key().as_ref();
        let (x, y) = point[1..].split_at(32);
        Self {
            kid: kid.into(),
            encoding: EncodingKey::from_ec_der(pair.to_pkcs8v1().unwrap().as_ref()),
            jwk: Jwk::p256(kid, URL_SAFE_NO_PAD.encode(x), URL_SAFE_NO_PAD.encode(y)),
        }
    }

    fn sign(&self, claims: &Claims) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.typ = Some(TYP.into());
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding).unwrap()
    }
}

/// A message as the gateway publishes it: its gateway properties, the
/// caller's, and the claims that bind them (unsigned yet).
fn gateway_message(tenant: &str, topic: &str, source: &str) -> (OutgoingMessage, Claims) {
    let event_id = uuid::Uuid::now_v7().to_string();
    let traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let mut properties: HashMap<String, String> = [
        ("kp-event-id", event_id.as_str()),
        ("kp-tenant", tenant),
        ("kp-source-id", source),
        ("kp-service-tag", "checkout"),
        ("kp-auth-method", "oidc"),
        ("kp-issuer", "https://idp.example.com"),
        ("kp-request-id", "req-1"),
        ("kp-received-at", "2026-12-02T00:00:00.000Z"),
        ("traceparent", traceparent),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    properties.insert("region".into(), "eu-west-1".into());
    let payload = br#"{"orderId":"1001"}"#.to_vec();
    let claims = Claims {
        iss: SIGNER.into(),
        iat: kp_tests::unix_now() as i64,
        event_id,
        tenant: tenant.into(),
        topic: topic.into(),
        source_id: source.into(),
        service_tag: Some("checkout".into()),
        auth_method: "oidc".into(),
        auth_issuer: "https://idp.example.com".into(),
        request_id: "req-1".into(),
        received_at: "2026-12-02T00:00:00.000Z".into(),
        traceparent: traceparent.into(),
        key: Some("order-1001".into()),
        event_time: Some(1_764_633_600_123),
        idempotency_key: None,
        ce_id: None,
        ce_source: None,
        ce_type: None,
        payload_sha256: kong_pulsar_verify::payload_digest(&payload),
        properties_sha256: kong_pulsar_verify::caller_properties_digest(
            properties.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        ),
    };
    let message = OutgoingMessage {
        payload,
        key: claims.key.clone(),
        event_time_ms: claims.event_time,
        properties,
    };
    (message, claims)
}

fn signed(mut message: OutgoingMessage, claims: &Claims, key: &Key) -> OutgoingMessage {
    message.properties.insert(PROPERTY.into(), key.sign(claims));
    message
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_and_the_python_witness_tell_forgeries_from_the_signed_message() {
    let admin = stack().admin();
    let ns = admin.test_namespace().await;
    let topic = ns.topic(&unique("prov"));
    let elsewhere = ns.topic(&unique("other"));
    let reader = unique("auditor");
    admin
        .grant(&ns.tenant, &ns.namespace, &reader, &["consume"])
        .await
        .unwrap();

    let key = Key::new("kp-1");
    let impostor = Key::new("kp-1");
    let stranger = Key::new("kp-9");
    let jwks = Jwks {
        keys: vec![Key::new("kp-0").jwk, key.jwk.clone()],
    };
    let jwks_json = serde_json::to_string(&jwks).unwrap();
    let jwks_file = temp_file("kp-prov", "jwks.json", &jwks_json);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let jwks_url = format!(
        "http://{}/.well-known/jwks.json",
        listener.local_addr().unwrap()
    );
    let app = axum::Router::new().route(
        "/.well-known/jwks.json",
        get(move || async move { jwks_json.clone() }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });

    // (what, message, expected code; None = verified)
    let good = || gateway_message(&ns.tenant, &topic, "checkout-api");
    let mut cases: Vec<(&str, OutgoingMessage, Option<&str>)> = Vec::new();
    let (m, c) = good();
    cases.push(("signed by the gateway", signed(m, &c, &key), None));
    let (m, c) = good();
    let mut m = signed(m, &c, &key);
    m.payload = br#"{"orderId":"9999"}"#.to_vec();
    cases.push(("payload changed", m, Some("payload_mismatch")));
    let (m, _) = gateway_message(&ns.tenant, &topic, "admin");
    cases.push(("forged kp-* properties, unsigned", m, Some("no_signature")));
    let (m, c) = gateway_message(&ns.tenant, &topic, "admin");
    cases.push((
        "forged, signed by another key under the gateway's kid",
        signed(m, &c, &impostor),
        Some("bad_signature"),
    ));
    let (m, c) = gateway_message(&ns.tenant, &topic, "admin");
    cases.push((
        "forged, signed by a key the set lacks",
        signed(m, &c, &stranger),
        Some("unknown_key"),
    ));
    let (m, c) = gateway_message(&ns.tenant, &elsewhere, "checkout-api");
    cases.push((
        "republished from another topic",
        signed(m, &c, &key),
        Some("topic_mismatch"),
    ));
    let (m, c) = good();
    let mut m = signed(m, &c, &key);
    m.properties.insert("region".into(), "us-east-1".into());
    cases.push(("caller property changed", m, Some("properties_mismatch")));
    let (m, c) = good();
    let mut m = signed(m, &c, &key);
    m.properties.insert("kp-source-id".into(), "admin".into());
    cases.push(("kp-source-id changed", m, Some("claim_mismatch")));
    let (m, mut c) = good();
    let mut m = m;
    (m.key, m.event_time_ms, c.key, c.event_time) = (None, None, None, None);
    m.properties.remove("kp-service-tag");
    c.service_tag = None;
    cases.push(("signed, no key, time or tag", signed(m, &c, &key), None));

    let broker = stack().broker_as(stack().superuser_token()).await.unwrap();
    let mut producer = Box::pin(broker.producer(&topic)).await.unwrap();
    for (_, message, _) in &cases {
        Box::pin(producer.send(message.clone())).await.unwrap();
    }

    let token = stack().mint_token(&reader);
    let (cli, python) = judge_both(
        &topic,
        cases.len(),
        &token,
        &["--jwks-url", &jwks_url],
        &jwks_file,
        SIGNER,
    )
    .await;
    let stderr = |o: &Output| String::from_utf8_lossy(&o.stderr).into_owned();
    // 1: some message did not verify (as intended); 2 would be a failure to run.
    assert_eq!(cli.status.code(), Some(1), "cli: {}", stderr(&cli));
    assert_eq!(python.status.code(), Some(0), "python: {}", stderr(&python));

    for (who, out) in [("cli", &cli), ("python", &python)] {
        let lines = verdicts(who, out);
        assert_eq!(lines.len(), cases.len(), "{who}: {lines:#?}");
        for ((what, message, code), line) in cases.iter().zip(&lines) {
            assert_eq!(line["topic"], topic.as_str(), "{who}: {what}: {line}");
            assert!(line["messageId"].is_string(), "{who}: {what}: {line}");
            match code {
                None => {
                    assert_eq!(line["verified"], true, "{who}: {what}: {line}");
                    assert_eq!(line["sourceId"], "checkout-api", "{who}: {what}");
                    assert_eq!(line["authMethod"], "oidc", "{who}: {what}");
                    assert_eq!(line["authIssuer"], "https://idp.example.com");
                    assert_eq!(line["kid"], "kp-1", "{who}: {what}");
                    assert_eq!(
                        line["eventId"], message.properties["kp-event-id"],
                        "{who}: {what}"
                    );
                }
                Some(code) => {
                    assert_eq!(line["verified"], false, "{who}: {what}: {line}");
                    assert_eq!(line["code"], *code, "{who}: {what}: {line}");
                    assert!(line["reason"].is_string(), "{who}: {what}: {line}");
                }
            }
        }
        // A verdict line never carries the signature itself.
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(!text.contains(&cases[0].1.properties[PROPERTY]), "{who}");
    }
    assert_eq!(verdicts("cli", &cli)[0]["serviceTag"], "checkout");
    assert_eq!(verdicts("python", &python)[0]["serviceTag"], "checkout");
    assert!(verdicts("cli", &cli)[8]["serviceTag"].is_null());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_read_from_a_partition_verifies_against_its_topic() {
    let admin = stack().admin();
    let ns = admin.test_namespace().await;
    let name = unique("parts");
    let topic = ns.topic(&name);
    admin
        .put(
            &format!(
                "/admin/v2/persistent/{}/{}/{name}/partitions",
                ns.tenant, ns.namespace
            ),
            serde_json::json!(2),
        )
        .await
        .unwrap();
    let key = Key::new("kp-1");
    let jwks_file = temp_file(
        "kp-prov",
        "jwks.json",
        &serde_json::to_string(&Jwks {
            keys: vec![key.jwk.clone()],
        })
        .unwrap(),
    );
    let broker = stack().broker_as(stack().superuser_token()).await.unwrap();
    let mut producer = Box::pin(broker.producer(&topic)).await.unwrap();
    let (m, c) = gateway_message(&ns.tenant, &topic, "checkout-api");
    Box::pin(producer.send(signed(m, &c, &key))).await.unwrap();

    for (who, status, lines) in both_verdicts(&topic, 1, &jwks_file, SIGNER).await {
        assert_eq!(status, Some(0), "{who}: {lines:?}");
        let line = &lines[0];
        assert_eq!(line["verified"], true, "{who}: {line}");
        let read_from = line["topic"].as_str().unwrap();
        assert!(
            read_from.starts_with(&format!("{topic}-partition-")),
            "{who}: {line}"
        );
    }
}
