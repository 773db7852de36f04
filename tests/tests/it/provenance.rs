//! Provenance end to end (issue 12): every event `publish` sends carries a
//! `kp-provenance` JWS that a consumer can check against the JWKS the same
//! function serves; the key set lives in Secrets Manager (moto) and `rotate`
//! rotates it. Functions run behind the real Lambda Invoke API; the broker is
//! the real one; the independent witnesses are the Python Pulsar client with
//! PyJWT (`tests/stack/provenance_witness.py`) and the `kong-pulsar-verify`
//! crate.

use std::time::Duration;

use aws_sdk_secretsmanager::Client;
use kong_pulsar::policy::ProvenanceSettings;
use kong_pulsar::provenance::{KeySet, Signer, SigningKeys};
use kong_pulsar::pulsar::broker::OutgoingMessage;
use kong_pulsar::secrets::{SecretSource, SecretValue, SecretsError};
use kong_pulsar_verify::verify::{Received, Verifier};
use kong_pulsar_verify::{Jwks, PROPERTY};
use kp_tests::app::{AppOptions, ProvenanceOptions, PublishApp, kong_event, put_secret};
use kp_tests::lambda::event;
use kp_tests::witness::both_verdicts;
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
    put_secret(&app.provenance_secret, r#"{"alg":"ES256","active":{}}"#).await;
    let response = app.call(&publish_event(&app, &topic, &token)).await;
    assert_eq!(response.status, 503, "{:?}", response.body);
    assert_eq!(app.stored(&full).await, 0);

    // Failures are not cached: once the key set exists, publishing works.
    let set = KeySet::first(chrono::Utc::now()).unwrap();
    put_secret(&app.provenance_secret, set.to_secret_value().expose()).await;
    let response = app.call(&publish_event(&app, &topic, &token)).await;
    assert_eq!(response.status, 202, "{:?}", response.body);
    assert_eq!(app.stored(&full).await, 1);
}

#[tokio::test]
async fn rotate_creates_the_key_set_and_the_secrets_manager_steps_rotate_it() {
    let app = PublishApp::spawn_with(with_provenance(ProvenanceOptions {
        seed: false,
        publish_lead: "5s",
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

    // Forcing it before its next key has been listed for publish_lead
    // would sign with a key no JWKS offered yet: refused, nothing changed.
    // (publish_lead is 5 s here; two invocations take far less.)
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
    assert_eq!(stored_key_set(&app).await.active_kid(), first.active_kid());

    // The four Secrets Manager steps promote the listed next key.
    tokio::time::sleep(Duration::from_millis(5100)).await;
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

    assert!(
        !rotate.logs().contains("PRIVATE KEY"),
        "key material logged"
    );
}

/// The JWKS the function serves now, and the file the Python witness reads.
async fn served_jwks(app: &PublishApp) -> (Jwks, std::path::PathBuf) {
    let response = app.call(&jwks_event()).await;
    assert_eq!(response.status, 200, "{:?}", response.body);
    let jwks: Jwks = serde_json::from_value(response.body.clone()).unwrap();
    let file = kp_tests::lambda::temp_file("kp-jwks", "jwks.json", &response.body.to_string());
    (jwks, file)
}

/// Checks one received message with the crate, as a consumer would.
fn crate_verdict(
    jwks: &Jwks,
    issuer: &str,
    message: &pulsar::consumer::Message<Vec<u8>>,
) -> Result<kong_pulsar_verify::verify::Verified, kong_pulsar_verify::verify::VerifyError> {
    let properties = kp_tests::app::properties(message);
    let received = Received {
        topic: &message.topic,
        payload: &message.payload.data,
        key: message.payload.metadata.partition_key.as_deref(),
        event_time_ms: message.payload.metadata.event_time,
        properties: &properties,
    };
    Verifier::default()
        .with_issuer(issuer)
        .verify(&received, jwks)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_published_through_the_gateway_verify_with_the_crate_and_with_pyjwt() {
    let app = PublishApp::spawn_with(with_provenance(ProvenanceOptions::default())).await;
    let topic = kp_tests::unique("signed");
    let full = app.topic(&app.tenant_a, "orders", &topic);
    let mut consumer = app.consumer(&full).await;
    let token = app.token("alice", &["checkout"]);
    let uri = format!("/events/{}/orders/{topic}", app.tenant_a);
    let bearer = format!("Bearer {token}");

    // One event with every optional field, and a batch of three.
    let single = kong_event(
        "POST",
        &uri,
        &[
            ("authorization", &bearer),
            ("content-type", "application/json"),
            ("x-event-key", "order-1001"),
            ("x-event-time", "2026-12-02T10:00:00.123Z"),
            ("x-event-property-region", "eu-west-1"),
            ("idempotency-key", "prov-1"),
        ],
        br#"{"orderId":"1001"}"#,
    );
    assert_eq!(app.call(&single).await.status, 202);
    let batch = kong_event(
        "POST",
        &uri,
        &[
            ("authorization", &bearer),
            ("content-type", "application/x-ndjson"),
        ],
        b"{\"orderId\":\"1\"}\n{\"orderId\":\"2\"}\n{\"orderId\":\"3\"}\n",
    );
    assert_eq!(app.call(&batch).await.status, 202);

    let (jwks, jwks_file) = served_jwks(&app).await;
    let set = stored_key_set(&app).await;
    let mut messages = Vec::new();
    for _ in 0..4 {
        messages.push(kp_tests::app::receive(&mut consumer).await);
    }
    for message in &messages {
        let verified = crate_verdict(&jwks, &app.provenance_issuer, message)
            .unwrap_or_else(|e| panic!("{} does not verify: {e}", message.topic));
        assert_eq!(verified.kid, set.active_kid());
        assert_eq!(verified.claims.source_id, "alice");
        assert_eq!(verified.claims.auth_method, "oidc");
        assert_eq!(verified.claims.auth_issuer, app.issuer.issuer());
        assert_eq!(verified.claims.tenant, app.tenant_a);
        assert_eq!(verified.claims.topic, full);
    }
    let first = crate_verdict(&jwks, &app.provenance_issuer, &messages[0]).unwrap();
    assert_eq!(first.claims.key.as_deref(), Some("order-1001"));
    assert_eq!(first.claims.idempotency_key.as_deref(), Some("prov-1"));
    assert!(first.claims.event_time.is_some());
    // A key set from another deployment (another signer name) is not ours.
    assert_eq!(
        crate_verdict(&jwks, "someone-else", &messages[0])
            .unwrap_err()
            .code(),
        "issuer_mismatch"
    );

    // The independent witnesses read the same topic themselves.
    for (who, status, lines) in both_verdicts(&full, 4, &jwks_file, &app.provenance_issuer).await {
        assert_eq!(status, Some(0), "{who}: {lines:#?}");
        for line in &lines {
            assert_eq!(line["verified"], true, "{who}: {line}");
            assert_eq!(line["sourceId"], "alice", "{who}: {line}");
            assert_eq!(line["kid"], set.active_kid(), "{who}: {line}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_message_copied_straight_to_the_broker_fails_verification() {
    let app = PublishApp::spawn_with(with_provenance(ProvenanceOptions::default())).await;
    let topic = kp_tests::unique("original");
    let full = app.topic(&app.tenant_a, "orders", &topic);
    let other = app.topic(&app.tenant_a, "orders", &kp_tests::unique("elsewhere"));
    let mut consumer = app.consumer(&full).await;
    let token = app.token("alice", &["checkout"]);
    let response = app
        .call(&kong_event(
            "POST",
            &format!("/events/{}/orders/{topic}", app.tenant_a),
            &[
                ("authorization", &format!("Bearer {token}")),
                ("content-type", "application/json"),
                ("x-event-property-region", "eu-west-1"),
            ],
            br#"{"orderId":"1001","amount":10}"#,
        ))
        .await;
    assert_eq!(response.status, 202);
    let original = kp_tests::app::receive(&mut consumer).await;
    let (jwks, jwks_file) = served_jwks(&app).await;
    crate_verdict(&jwks, &app.provenance_issuer, &original).expect("the original verifies");

    // What a holder of the tenant's own token can do at the broker: copy the
    // gateway's properties, signature included, onto other messages of the
    // same topic (or the same message onto another topic).
    let copy = || OutgoingMessage {
        payload: original.payload.data.clone(),
        key: original.payload.metadata.partition_key.clone(),
        event_time_ms: original.payload.metadata.event_time,
        properties: kp_tests::app::properties(&original),
    };
    let foreign = KeySet::first(chrono::Utc::now()).unwrap();
    let mut cases: Vec<(&str, OutgoingMessage, &str)> = Vec::new();
    let mut m = copy();
    m.payload = br#"{"orderId":"1001","amount":10000}"#.to_vec();
    cases.push(("one payload byte changed", m, "payload_mismatch"));
    let mut m = copy();
    m.properties.insert("region".into(), "us-east-1".into());
    cases.push(("a caller property changed", m, "properties_mismatch"));
    let mut m = copy();
    m.properties.insert("kp-source-id".into(), "admin".into());
    cases.push(("the identity changed", m, "claim_mismatch"));
    let mut m = copy();
    m.properties.remove(PROPERTY);
    cases.push(("the signature removed", m, "no_signature"));
    let mut m = copy();
    m.properties.remove(PROPERTY);
    m.properties.insert("kp-source-id".into(), "admin".into());
    let foreign_keys = signing_keys(&foreign, &app.provenance_issuer).await;
    foreign_keys.seal(&full, &mut m, 1).unwrap();
    cases.push(("signed by a key not in the JWKS", m, "unknown_key"));

    let role_token = stack().mint_token(&app.role_a);
    let broker = stack().broker_as(&role_token).await.unwrap();
    let mut producer = Box::pin(broker.producer(&full)).await.unwrap();
    for (_, message, _) in &cases {
        Box::pin(producer.send(message.clone())).await.unwrap();
    }
    // The exact copy, republished to another topic.
    let mut elsewhere = Box::pin(broker.producer(&other)).await.unwrap();
    Box::pin(elsewhere.send(copy())).await.unwrap();

    let issuer = &app.provenance_issuer;
    for (who, _, lines) in both_verdicts(&full, 1 + cases.len(), &jwks_file, issuer).await {
        assert_eq!(
            lines[0]["verified"], true,
            "{who}: the original: {}",
            lines[0]
        );
        for ((what, _, code), line) in cases.iter().zip(&lines[1..]) {
            assert_eq!(line["verified"], false, "{who}: {what}: {line}");
            assert_eq!(line["code"], *code, "{who}: {what}: {line}");
        }
    }
    for (who, _, lines) in both_verdicts(&other, 1, &jwks_file, issuer).await {
        assert_eq!(lines[0]["code"], "topic_mismatch", "{who}: {}", lines[0]);
    }
}

/// Signing keys for `set`, as a publish instance would hold them.
async fn signing_keys(set: &KeySet, issuer: &str) -> std::sync::Arc<SigningKeys> {
    struct Fixed(SecretValue);
    #[async_trait::async_trait]
    impl SecretSource for Fixed {
        async fn get(&self, _: &str) -> Result<SecretValue, SecretsError> {
            Ok(self.0.clone())
        }
    }
    let settings = ProvenanceSettings {
        issuer: issuer.into(),
        signing_secret: "unused".into(),
        rotate_every: Duration::from_secs(86_400),
        retain_retired: Duration::from_secs(86_400),
        publish_lead: Duration::from_secs(60),
    };
    Signer::new(&settings, std::sync::Arc::new(Fixed(set.to_secret_value())))
        .keys()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_rotation_under_steady_load_fails_no_publish_and_every_event_verifies() {
    // Short enough for a test: publish re-reads the key set every second and
    // a next key may sign two seconds after it was listed.
    let app = std::sync::Arc::new(
        PublishApp::spawn_with(AppOptions {
            secret_ttl: "1s",
            ..with_provenance(ProvenanceOptions {
                seed: true,
                publish_lead: "2s",
            })
        })
        .await,
    );
    let rotate = app.rotate_function().await;
    let before = stored_key_set(&app).await;
    let (jwks_before, _) = served_jwks(&app).await;
    let topic = kp_tests::unique("steady");
    let full = app.topic(&app.tenant_a, "orders", &topic);
    let mut consumer = app.consumer(&full).await;

    // Steady load: one publish after another until told to stop.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let (app, stop, topic) = (app.clone(), stop.clone(), topic.clone());
        tokio::spawn(async move {
            let token = app.token("alice", &["checkout"]);
            let mut statuses = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                statuses.push(app.call(&publish_event(&app, &topic, &token)).await.status);
            }
            statuses
        })
    };
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (status, report) = rotate
        .invoke(&json!({"action": "rotate", "force": true}))
        .await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["provenance"][0]["outcome"], "rotated", "{report:#}");
    let after = stored_key_set(&app).await;
    assert_eq!(after.active_kid(), before.next_kid());
    // Keep publishing until the instance has signed with the new key a while.
    tokio::time::sleep(Duration::from_millis(3000)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let statuses = load.await.unwrap();
    assert!(
        statuses.len() > 10,
        "too little load to mean anything: {}",
        statuses.len()
    );
    assert!(
        statuses.iter().all(|s| *s == 202),
        "a publish failed: {statuses:?}"
    );

    // Every event verifies against the JWKS fetched after the rotation.
    let (jwks_after, jwks_file) = served_jwks(&app).await;
    let verdicts = both_verdicts(&full, statuses.len(), &jwks_file, &app.provenance_issuer).await;
    for (who, _, lines) in verdicts {
        assert!(
            lines.iter().all(|l| l["verified"] == true),
            "{who}: {lines:#?}"
        );
    }
    let mut kids = Vec::new();
    for _ in &statuses {
        let message = kp_tests::app::receive(&mut consumer).await;
        let verified = crate_verdict(&jwks_after, &app.provenance_issuer, &message)
            .unwrap_or_else(|e| panic!("an event does not verify after the rotation: {e}"));
        kids.push(verified.kid);
    }
    // Old key first, then the new one, never back: the instance switched once.
    let switch = kids
        .iter()
        .position(|k| k == after.active_kid())
        .expect("some events were signed with the new key");
    assert!(switch > 0, "no event was signed before the rotation");
    assert!(
        kids[..switch].iter().all(|k| k == before.active_kid()),
        "{kids:?}"
    );
    assert!(
        kids[switch..].iter().all(|k| k == after.active_kid()),
        "{kids:?}"
    );
    // The JWKS served before the rotation (before the first event signed
    // with the new key) already listed that key.
    assert!(jwks_before.find(after.active_kid()).is_some());
    // And the old key is still listed after, so earlier events keep verifying.
    assert!(jwks_after.find(before.active_kid()).is_some());
}

#[tokio::test]
async fn a_staged_key_set_whose_signing_key_was_never_listed_fails_the_test_step() {
    let app = PublishApp::spawn_with(with_provenance(ProvenanceOptions::default())).await;
    let rotate = app.rotate_function().await;
    let sm = secrets_manager().await;
    let current = stored_key_set(&app).await;
    let request = secrets::begin_native_rotation(&sm, &app.provenance_secret).await;
    // Someone stages a fresh set by hand: its active key is in no JWKS.
    let unlisted = KeySet::first(chrono::Utc::now()).unwrap();
    sm.put_secret_value()
        .secret_id(&app.provenance_secret)
        .client_request_token(&request)
        .secret_string(unlisted.to_secret_value().expose())
        .version_stages("AWSPENDING")
        .send()
        .await
        .unwrap();
    let mut payload = event("rotate-step-testSecret.json");
    payload["SecretId"] = json!(app.provenance_secret);
    payload["ClientRequestToken"] = json!(request);
    let (status, out) = rotate.invoke(&payload).await;
    assert_ne!(status, 200, "{out}");
    assert!(out.to_string().contains("testSecret failed"), "{out}");
    assert!(rotate.logs().contains("NotListed"), "{}", rotate.logs());
    // Nothing was promoted: the current set still signs.
    assert_eq!(
        stored_key_set(&app).await.active_kid(),
        current.active_kid()
    );
}
