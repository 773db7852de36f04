//! Consumers a Kong auth plugin authenticated: trusted only when the policy
//! says so, anonymous means nobody, and two identities in one request are
//! refused rather than one silently winning.

use kp_tests::app::{AppOptions, PublishApp, kong_event, properties, receive};

const CONSUMER: [(&str, &str); 4] = [
    ("x-consumer-id", "8a1d2c3e-0000-4000-8000-000000000001"),
    ("x-consumer-username", "checkout-svc"),
    ("x-credential-identifier", "key-42"),
    ("x-consumer-groups", "checkout, ops"),
];

fn event(app: &PublishApp, extra: &[(&str, &str)]) -> serde_json::Value {
    let mut headers = vec![("content-type", "application/json")];
    headers.extend_from_slice(extra);
    kong_event(
        "POST",
        &format!("/events/{}/orders/order-created", app.tenant_a),
        &headers,
        br#"{"orderId":"k1"}"#,
    )
}

#[tokio::test]
async fn a_trusted_kong_consumer_publishes_as_itself() {
    let app = PublishApp::spawn_with(AppOptions {
        kong_trusted: true,
        ..AppOptions::default()
    })
    .await;
    let topic = app.topic(&app.tenant_a, "orders", "order-created");
    let mut consumer = app.consumer(&topic).await;

    let resp = app.call(&event(&app, &CONSUMER)).await;
    assert_eq!(resp.status, 202, "{:?}", resp.body);
    let p = properties(&receive(&mut consumer).await);
    assert_eq!(p["kp-auth-method"], "kong");
    assert_eq!(p["kp-issuer"], "kong");
    assert_eq!(p["kp-source-id"], "8a1d2c3e-0000-4000-8000-000000000001");
    assert_eq!(p["kp-service-tag"], "checkout-svc");

    // Kong's basic-auth / key-auth leave their credential in place: it defers
    // to the consumer Kong authenticated.
    let mut with_basic = CONSUMER.to_vec();
    with_basic.push(("authorization", "Basic Y2hlY2tvdXQ6cHc="));
    assert_eq!(app.call(&event(&app, &with_basic)).await.status, 202);

    // Another consumer has no rule.
    let other = [
        ("x-consumer-id", "other-id"),
        ("x-consumer-username", "marketing-svc"),
    ];
    let resp = app.call(&event(&app, &other)).await;
    assert_eq!(
        (resp.status, resp.body["code"].as_str()),
        (403, Some("forbidden"))
    );

    // Kong's anonymous consumer is nobody.
    let mut anonymous = CONSUMER.to_vec();
    anonymous.push(("x-anonymous-consumer", "true"));
    let resp = app.call(&event(&app, &anonymous)).await;
    assert_eq!(
        (resp.status, resp.body["code"].as_str()),
        (401, Some("missing_credentials"))
    );

    // Our own bearer token plus a Kong consumer: two identities, refused.
    let token = app.token("alice", &["checkout"]);
    let bearer = format!("Bearer {token}");
    let mut both = CONSUMER.to_vec();
    both.push(("authorization", &bearer));
    let resp = app.call(&event(&app, &both)).await;
    assert_eq!(resp.status, 400, "{:?}", resp.body);
    assert!(
        resp.body["detail"]
            .as_str()
            .unwrap()
            .contains("two identities")
    );
    assert_eq!(app.stored(&topic).await, 2);
}

#[tokio::test]
async fn kong_consumer_headers_are_ignored_unless_kong_is_trusted() {
    let app = PublishApp::spawn().await; // identity.kong.trusted: false
    let resp = app.call(&event(&app, &CONSUMER)).await;
    assert_eq!(
        (resp.status, resp.body["code"].as_str()),
        (401, Some("missing_credentials"))
    );
    let topic = app.topic(&app.tenant_a, "orders", "order-created");
    assert_eq!(app.stored(&topic).await, 0);
}
