//! Provenance end to end (issue 12): every event `publish` sends carries a
//! `kp-provenance` JWS that a consumer can check against the JWKS the same
//! function serves; the key set lives in Secrets Manager (moto) and `rotate`
//! rotates it. Functions run behind the real Lambda Invoke API; the broker is
//! the real one; the independent witnesses are the Python Pulsar client with
//! PyJWT (`tests/stack/provenance_witness.py`) and the `kong-pulsar-verify`
//! crate.

use std::time::Duration;

use aws_sdk_secretsmanager::Client;
use kong_pulsar::provenance::KeySet;
use kong_pulsar::secrets::SecretValue;
use kp_tests::app::{AppOptions, ProvenanceOptions, PublishApp, kong_event};
use kp_tests::lambda::event;
use kp_tests::{secrets, stack};
use serde_json::{Value, json};

fn with_provenance(provenance: ProvenanceOptions) -> AppOptions {
    AppOptions {
        provenance: Some(provenance),
        ..AppOptions::default()
    }
}

async fn secrets_manager() -> Client {
    Client::new(&stack().aws_config().await)
}

/// The key set currently stored for the app.
async fn stored_key_set(app: &PublishApp) -> KeySet {
    let (_, value) = secrets::staged(
        &secrets_manager().await,
        &app.provenance_secret,
        "AWSCURRENT",
    )
    .await
    .expect("the key set exists");
    KeySet::parse(&SecretValue::new(value)).unwrap()
}

fn publish_event(app: &PublishApp, topic: &str, token: &str) -> Value {
    kong_event(
        "POST",
        &format!("/events/{}/orders/{topic}", app.tenant_a),
        &[
            ("authorization", &format!("Bearer {token}")),
            ("content-type", "application/json"),
        ],
        br#"{"orderId":"1001"}"#,
    )
}

fn jwks_event() -> Value {
    kong_event("GET", "/events/.well-known/jwks.json", &[], b"")
}

#[tokio::test]
async fn the_jwks_lists_the_public_keys_without_credentials_and_nothing_else() {
    let app = PublishApp::spawn_with(with_provenance(ProvenanceOptions::default())).await;
    let set = stored_key_set(&app).await;

    // Through a Kong payload, no Authorization header at all.
    let response = app.call(&jwks_event()).await;
    assert_eq!(response.status, 200, "{:?}", response.body);
    assert_eq!(response.headers["content-type"], "application/jwk-set+json");
    assert_eq!(response.headers["cache-control"], "public, max-age=300");
    let kids: Vec<&str> = response.body["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    // The signing key and the next one, which is listed before it signs.
    assert_eq!(kids, [set.active_kid(), set.next_kid()]);
    for key in response.body["keys"].as_array().unwrap() {
        let mut members: Vec<&str> = key
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        members.sort_unstable();
        assert_eq!(
            members,
            ["alg", "crv", "kid", "kty", "use", "x", "y"],
            "{key}"
        );
    }

    // Through a real HTTP request (payload 2.0, any prefix), the same body.
    let http = app
        .function
        .http(
            reqwest::Method::GET,
            "/gw/events/.well-known/jwks.json",
            &[],
            vec![],
        )
        .await;
    assert_eq!(http.status(), 200);
    let body: Value = http.json().await.unwrap();
    assert_eq!(body, response.body);

    // Only GET: the route cannot be used to publish or probe.
    for method in ["POST", "PUT", "DELETE"] {
        let response = app
            .call(&kong_event(
                method,
                "/events/.well-known/jwks.json",
                &[],
                b"{}",
            ))
            .await;
        assert_eq!(response.status, 405, "{method}");
        assert_eq!(response.headers["allow"], "GET", "{method}");
    }
    let response = app
        .call(&kong_event(
            "GET",
            &format!("/events/{}/orders/x", app.tenant_a),
            &[],
            b"",
        ))
        .await;
    assert_eq!(response.status, 405);
    assert_eq!(response.headers["allow"], "POST");
    // The audit line of a JWKS request is written, and no key material is logged.
    let logs = app.function.logs();
    assert!(!logs.contains("PRIVATE KEY"), "{logs}");
}

#[tokio::test]
async fn without_provenance_configured_there_is_no_jwks_and_no_signature() {
    let app = PublishApp::spawn().await;
    let response = app.call(&jwks_event()).await;
    assert_eq!(response.status, 404, "{:?}", response.body);

    let topic = kp_tests::unique("unsigned");
    let full = app.topic(&app.tenant_a, "orders", &topic);
    let mut consumer = app.consumer(&full).await;
    let token = app.token("alice", &["checkout"]);
    let response = app.call(&publish_event(&app, &topic, &token)).await;
    assert_eq!(response.status, 202, "{:?}", response.body);
    let message = kp_tests::app::receive(&mut consumer).await;
    assert!(!kp_tests::app::properties(&message).contains_key("kp-provenance"));
}

#[tokio::test]
async fn without_its_key_publish_answers_503_and_publishes_nothing() {
    let app = PublishApp::spawn_with(with_provenance(ProvenanceOptions {
        seed: false,
        ..ProvenanceOptions::default()
    }))
    .await;
    let topic = kp_tests::unique("nokey");
    let full = app.topic(&app.tenant_a, "orders", &topic);
    let token = app.token("alice", &["checkout"]);

    let response = app.call(&publish_event(&app, &topic, &token)).await;
    assert_eq!(response.status, 503, "{:?}", response.body);
    assert_eq!(response.body["code"], "credentials_unavailable");
    assert_eq!(response.headers["retry-after"], "1");
    // No detail for a server-side failure: nothing about which secret.
    assert_eq!(response.body["detail"], "Credentials unavailable");
    let response = app.call(&jwks_event()).await;
    assert_eq!(response.status, 503);
    assert_eq!(
        app.stored(&full).await,
        0,
        "an unsigned event was published"
    );

    // A malformed key set is no better than none.
    put(&app.provenance_secret, r#"{"alg":"ES256","active":{}}"#).await;
    let response = app.call(&publish_event(&app, &topic, &token)).await;
    assert_eq!(response.status, 503, "{:?}", response.body);
    assert_eq!(app.stored(&full).await, 0);

    // Failures are not cached: once the key set exists, publishing works.
    let set = KeySet::first(chrono::Utc::now()).unwrap();
    put(&app.provenance_secret, set.to_secret_value().expose()).await;
    let response = app.call(&publish_event(&app, &topic, &token)).await;
    assert_eq!(response.status, 202, "{:?}", response.body);
    assert_eq!(app.stored(&full).await, 1);
}

async fn put(secret: &str, value: &str) {
    let sm = secrets_manager().await;
    if sm.describe_secret().secret_id(secret).send().await.is_ok() {
        sm.put_secret_value()
            .secret_id(secret)
            .secret_string(value)
            .send()
            .await
            .unwrap();
    } else {
        sm.create_secret()
            .name(secret)
            .secret_string(value)
            .send()
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn rotate_creates_the_key_set_and_the_secrets_manager_steps_rotate_it() {
    let app = PublishApp::spawn_with(with_provenance(ProvenanceOptions {
        seed: false,
        publish_lead: "3s",
    }))
    .await;
    let rotate = app.rotate_function().await;
    let sm = secrets_manager().await;

    // The first cycle creates it.
    let (status, report) = rotate.invoke(&json!({"action": "rotate"})).await;
    assert_eq!(status, 200, "{report}\n{}", rotate.logs());
    let entry = &report["provenance"][0];
    assert_eq!(entry["kind"], "provenance_key", "{report:#}");
    assert_eq!(entry["outcome"], "created", "{report:#}");
    assert_eq!(entry["secret"], app.provenance_secret.as_str());
    assert!(
        entry.get("role").is_none(),
        "the key is no Pulsar role: {entry}"
    );
    let first = stored_key_set(&app).await;
    assert_eq!(entry["fingerprint"], first.active_kid());

    // A second cycle keeps it.
    let (_, report) = rotate.invoke(&json!({"action": "rotate"})).await;
    assert_eq!(report["provenance"][0]["outcome"], "fresh", "{report:#}");

    // The four Secrets Manager steps promote the listed next key.
    tokio::time::sleep(Duration::from_millis(3100)).await;
    let request = secrets::begin_native_rotation(&sm, &app.provenance_secret).await;
    for step in ["createSecret", "setSecret", "testSecret", "finishSecret"] {
        let mut payload = event(&format!("rotate-step-{step}.json"));
        payload["SecretId"] = json!(app.provenance_secret);
        payload["ClientRequestToken"] = json!(request);
        let (status, out) = rotate.invoke(&payload).await;
        assert_eq!(status, 200, "{step}: {out}\n{}", rotate.logs());
        assert_eq!(out["step"]["kind"], "provenance_key", "{out:#}");
    }
    let second = stored_key_set(&app).await;
    assert_eq!(second.active_kid(), first.next_kid());
    assert_eq!(
        second.retired_kids().collect::<Vec<_>>(),
        [first.active_kid()]
    );
    let stages = secrets::stages(&sm, &app.provenance_secret).await;
    assert_eq!(stages[&request], ["AWSCURRENT"]);

    // Forcing again before the new next key has been listed for
    // publish_lead would sign with a key no JWKS offered: refused, nothing
    // changed. (publish_lead is 3 s here; the steps took less.)
    let (_, report) = rotate
        .invoke(&json!({"action": "rotate", "force": true}))
        .await;
    let entry = &report["provenance"][0];
    assert_eq!(entry["outcome"], "failed", "{report:#}");
    assert_eq!(entry["step"], "mint", "{report:#}");
    assert!(
        entry["error"].as_str().unwrap().contains("publish_lead"),
        "{entry}"
    );
    assert_eq!(stored_key_set(&app).await.active_kid(), second.active_kid());
    assert!(
        !rotate.logs().contains("PRIVATE KEY"),
        "key material logged"
    );
}
