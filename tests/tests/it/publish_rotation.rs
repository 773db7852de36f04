//! Rotation seen from the publisher: a warm function keeps publishing with
//! zero failures while the tenant's token secret is replaced and the old
//! token expires (the broker re-checks tokens every 5 s and drops or
//! challenges connections whose token has expired).

use std::time::Duration;

use kp_tests::app::{AppOptions, PublishApp, kong_event};

#[tokio::test]
async fn a_warm_publisher_survives_token_rotation_and_expiry_with_zero_failures() {
    let old_token_ttl = Duration::from_secs(12);
    let app = PublishApp::spawn_with(AppOptions {
        // Long cache TTL on purpose: the refresh must come from the token's
        // own expiry and the broker's rejection, not from the cache expiring.
        secret_ttl: "5m",
        token_a_ttl: old_token_ttl,
        ..AppOptions::default()
    })
    .await;
    let topic = app.topic(&app.tenant_a, "orders", "order-created");
    let token = app.token("alice", &["checkout"]);
    let app = &app;
    let (ok, failures) = app
        .publish_through_token_a_rotation(old_token_ttl, Duration::from_millis(200), |n| {
            let event = kong_event(
                "POST",
                &format!("/events/{}/orders/order-created", app.tenant_a),
                &[
                    ("authorization", &format!("Bearer {token}")),
                    ("content-type", "application/json"),
                ],
                format!(r#"{{"orderId":"{n}"}}"#).as_bytes(),
            );
            async move { app.call(&event).await }
        })
        .await;
    assert!(
        failures.is_empty(),
        "{} failed publishes:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(ok > 50, "only {ok} publishes");
    assert_eq!(
        app.stored(&topic).await as usize,
        ok,
        "every accepted event is in Pulsar"
    );
}

#[tokio::test]
async fn a_rejected_tenant_token_is_reread_once_then_reported_and_recovers_without_waiting_for_the_cache()
 {
    let app = PublishApp::spawn().await;
    let forged = kp_tests::sign_hs256(
        b"a-key-the-broker-does-not-know-about",
        &serde_json::json!({ "sub": app.role_a, "exp": kp_tests::unix_now() + 3600 }),
    );
    app.replace_token_a(&forged, Duration::from_secs(3600))
        .await;
    let token = app.token("alice", &["checkout"]);
    let event = kong_event(
        "POST",
        &format!("/events/{}/orders/order-created", app.tenant_a),
        &[
            ("authorization", &format!("Bearer {token}")),
            ("content-type", "application/json"),
        ],
        br#"{"orderId":"1"}"#,
    );
    let resp = app.call(&event).await;
    assert_eq!(
        (resp.status, resp.body["code"].as_str()),
        (503, Some("credentials_unavailable")),
        "{:?}",
        resp.body
    );
    assert!(resp.headers["retry-after"].is_string());
    // Our side of the problem: the caller learns nothing about the token.
    assert!(!resp.body.to_string().contains(&forged[..20]));

    // Fixing the secret is picked up at once, not after the 5 min cache TTL,
    // because the rejection dropped the cached value.
    app.rotate_token_a(Duration::from_secs(3600)).await;
    let resp = app.call(&event).await;
    assert_eq!(resp.status, 202, "{:?}", resp.body);
    let topic = app.topic(&app.tenant_a, "orders", "order-created");
    assert_eq!(app.stored(&topic).await, 1);
}
