//! The publish function end to end: Kong-shaped payloads (the shipped
//! `events/` samples) invoked through the Lambda Invoke API served by
//! `cargo lambda watch`, against the real broker (authn + authz on), moto and
//! an OIDC issuer; a consumer reads back what really landed in Pulsar.

use std::time::Duration;

use kp_tests::app::{AppOptions, PublishApp, kong_event, properties, receive, sample_event};
use kp_tests::unix_now;

const ORDER: &str = r#"{"orderId":"1001","amount":42.5,"currency":"EUR"}"#;

#[tokio::test]
async fn each_kong_payload_shape_publishes_with_key_time_and_every_kp_property() {
    let app = PublishApp::spawn().await;
    let topic = app.topic(&app.tenant_a, "orders", "order-created");
    let mut consumer = app.consumer(&topic).await;

    for (i, sample) in [
        "publish-kong.json",
        "publish-apigw-v1.json",
        "publish-http-v2.json",
    ]
    .into_iter()
    .enumerate()
    {
        let token = app.token("user-42", &["checkout"]);
        let mut event = sample_event(sample, &app.tenant_a, &token);
        // Distinct idempotency keys so the three shapes are three events.
        let key = format!("checkout-7f3c2a1e-{i}");
        for field in ["request_headers", "headers"] {
            if let Some(h) = event.get_mut(field).and_then(|h| h.as_object_mut()) {
                h.insert("idempotency-key".into(), key.clone().into());
                h.insert("x-event-property-region".into(), "eu-west-1".into());
            }
        }
        if let Some(h) = event
            .get_mut("multiValueHeaders")
            .and_then(|h| h.as_object_mut())
        {
            h.insert("idempotency-key".into(), serde_json::json!([key]));
            h.insert(
                "x-event-property-region".into(),
                serde_json::json!(["eu-west-1"]),
            );
        }

        let resp = app.call(&event).await;
        assert_eq!(resp.status, 202, "{sample}: {:?}", resp.body);
        assert_eq!(resp.body["topic"], topic.as_str());
        let message_id = resp.body["messageId"].as_str().unwrap().to_owned();
        let event_id = resp.body["eventId"].as_str().unwrap().to_owned();

        let msg = receive(&mut consumer).await;
        assert_eq!(msg.payload.data, ORDER.as_bytes(), "{sample}");
        let meta = &msg.payload.metadata;
        assert_eq!(
            meta.partition_key.as_deref(),
            Some("order-1001"),
            "{sample}"
        );
        assert_eq!(meta.event_time, Some(1_748_781_296_789), "{sample}");
        let id = &msg.message_id.id;
        assert_eq!(
            message_id,
            format!(
                "{}:{}:{}:{}",
                id.ledger_id,
                id.entry_id,
                id.partition.unwrap_or(-1),
                id.batch_index.unwrap_or(-1)
            )
        );

        let p = properties(&msg);
        assert_eq!(p["kp-event-id"], event_id, "{sample}");
        assert_eq!(p["kp-source-id"], "user-42");
        assert_eq!(p["kp-service-tag"], kp_tests::oidc::TEST_CLIENT_ID);
        assert_eq!(p["kp-auth-method"], "oidc");
        assert_eq!(p["kp-issuer"], app.issuer.issuer());
        assert_eq!(p["kp-tenant"], app.tenant_a);
        assert!(!p["kp-request-id"].is_empty());
        assert_eq!(p["kp-idempotency-key"], key);
        assert_eq!(
            p["traceparent"],
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        );
        assert_eq!(p["region"], "eu-west-1");
        let received = chrono::DateTime::parse_from_rfc3339(&p["kp-received-at"]).unwrap();
        assert!((chrono::Utc::now() - received.to_utc()).num_seconds().abs() < 60);
        assert_eq!(
            p["kp-received-at"].len(),
            "2025-06-01T12:34:56.789Z".len(),
            "millisecond precision"
        );
    }
    // Kong's own request id is carried when Kong sends one.
    let token = app.token("user-42", &["checkout"]);
    let resp = app
        .call(&sample_event("publish-kong.json", &app.tenant_a, &token))
        .await;
    assert_eq!(resp.status, 202);
    let p = properties(&receive(&mut consumer).await);
    assert_eq!(
        p["kp-request-id"],
        "7c9e4a2b-3f1d-4e8a-9b6c-0d2e5f7a1b3c#42"
    );
}

#[tokio::test]
async fn an_ndjson_batch_is_published_in_order_with_a_result_per_line() {
    let app = PublishApp::spawn().await;
    let topic = app.topic(&app.tenant_a, "orders", "order-created");
    let mut consumer = app.consumer(&topic).await;
    let token = app.token("svc-batch", &["checkout"]);
    let body = "{\"orderId\":\"a\"}\n{\"orderId\":\"b\"}\r\n{\"orderId\":\"c\"}\n";
    let event = kong_event(
        "POST",
        &format!("/v1/events/{}/orders/order-created", app.tenant_a),
        &[
            ("authorization", &format!("Bearer {token}")),
            ("content-type", "application/x-ndjson"),
        ],
        body.as_bytes(),
    );
    let resp = app.call(&event).await;
    assert_eq!(resp.status, 202, "{:?}", resp.body);
    let results = resp.body["results"].as_array().unwrap();
    assert_eq!(results.len(), 3);
    for (i, expected) in ["a", "b", "c"].iter().enumerate() {
        assert_eq!(results[i]["index"], i);
        let msg = receive(&mut consumer).await;
        assert_eq!(
            msg.payload.data,
            format!("{{\"orderId\":\"{expected}\"}}").as_bytes()
        );
        assert_eq!(
            properties(&msg)["kp-event-id"],
            results[i]["eventId"].as_str().unwrap()
        );
    }
}

#[tokio::test]
async fn authorization_is_deny_by_default_and_tenant_scoped_and_the_broker_is_a_second_wall() {
    let app = PublishApp::spawn().await;
    let publish = |tenant: &str, ns: &str, token: &str| {
        kong_event(
            "POST",
            &format!("/events/{tenant}/{ns}/things"),
            &[
                ("authorization", &format!("Bearer {token}")),
                ("content-type", "application/json"),
            ],
            b"{\"x\":1}",
        )
    };
    // Wrong group: 403 and nothing published.
    let outsider = app.token("mallory", &["marketing"]);
    let resp = app.call(&publish(&app.tenant_a, "orders", &outsider)).await;
    assert_eq!(
        (resp.status, resp.body["code"].as_str()),
        (403, Some("forbidden"))
    );
    assert_eq!(
        app.stored(&app.topic(&app.tenant_a, "orders", "things"))
            .await,
        0
    );

    // A rule for tenant A never reaches tenant B.
    let checkout = app.token("alice", &["checkout"]);
    let resp = app.call(&publish(&app.tenant_b, "orders", &checkout)).await;
    assert_eq!(resp.status, 403);
    assert_eq!(
        app.stored(&app.topic(&app.tenant_b, "orders", "things"))
            .await,
        0
    );
    let billing = app.token("bob", &["billing"]);
    let resp = app.call(&publish(&app.tenant_b, "orders", &billing)).await;
    assert_eq!(resp.status, 202, "{:?}", resp.body);
    assert_eq!(
        app.stored(&app.topic(&app.tenant_b, "orders", "things"))
            .await,
        1
    );

    // The policy allows `ungranted`, the broker has no grant for the role:
    // the broker refuses, and the caller gets a typed 403, not a 500.
    let resp = app
        .call(&publish(&app.tenant_a, "ungranted", &checkout))
        .await;
    assert_eq!(
        (resp.status, resp.body["code"].as_str()),
        (403, Some("forbidden")),
        "{:?}",
        resp.body
    );
    assert_eq!(
        app.stored(&app.topic(&app.tenant_a, "ungranted", "things"))
            .await,
        0
    );
}

#[tokio::test]
async fn a_retry_with_the_same_idempotency_key_does_not_publish_twice() {
    let app = PublishApp::spawn().await;
    let topic = app.topic(&app.tenant_a, "orders", "order-created");
    let token = app.token("alice", &["checkout"]);
    let event = |body: &str| {
        kong_event(
            "POST",
            &format!("/events/{}/orders/order-created", app.tenant_a),
            &[
                ("authorization", &format!("Bearer {token}")),
                ("content-type", "application/json"),
                ("idempotency-key", "order-1001-attempt"),
            ],
            body.as_bytes(),
        )
    };
    let first = app.call(&event(ORDER)).await;
    let again = app.call(&event(ORDER)).await;
    assert_eq!(first.status, 202);
    assert_eq!(again.status, 202);
    assert_eq!(first.body, again.body, "the retry gets the first receipt");
    assert_eq!(again.headers["idempotent-replayed"], "true");
    assert_eq!(app.stored(&topic).await, 1);
    // The same key for a different request is refused, not silently replayed.
    let other = app.call(&event(r#"{"orderId":"other"}"#)).await;
    assert_eq!(other.status, 400, "{:?}", other.body);
    assert_eq!(app.stored(&topic).await, 1);
}

#[tokio::test]
async fn a_plain_http_request_through_the_function_url_route_is_published() {
    let app = PublishApp::spawn().await;
    let topic = app.topic(&app.tenant_a, "orders", "order-created");
    let mut consumer = app.consumer(&topic).await;
    let token = app.token("carol", &["checkout"]);
    let resp = app
        .function
        .http(
            reqwest::Method::POST,
            &format!("/events/{}/orders/order-created", app.tenant_a),
            &[
                ("authorization", &format!("Bearer {token}")),
                ("content-type", "application/json"),
                ("x-event-key", "k-1"),
            ],
            ORDER.as_bytes().to_vec(),
        )
        .await;
    assert_eq!(resp.status(), 202);
    let body: serde_json::Value = resp.json().await.unwrap();
    let msg = receive(&mut consumer).await;
    assert_eq!(msg.payload.data, ORDER.as_bytes());
    assert_eq!(msg.payload.metadata.partition_key.as_deref(), Some("k-1"));
    assert_eq!(
        properties(&msg)["kp-event-id"],
        body["eventId"].as_str().unwrap()
    );

    // Errors come back as real HTTP problem responses too.
    let resp = app
        .function
        .http(
            reqwest::Method::POST,
            &format!("/events/{}/orders/order-created", app.tenant_a),
            &[("content-type", "application/json")],
            ORDER.as_bytes().to_vec(),
        )
        .await;
    assert_eq!(resp.status(), 401);
    assert_eq!(resp.headers()["content-type"], "application/problem+json");
    assert!(resp.headers().contains_key("www-authenticate"));
}

/// The function remembers verified tokens; a remembered one must still stop
/// working at its `exp` (leeway 0 here, so that is the moment full
/// verification refuses it too).
#[tokio::test]
async fn a_cached_token_is_refused_once_it_expires() {
    let app = PublishApp::spawn_with(AppOptions {
        oidc_leeway_seconds: Some(0),
        ..AppOptions::default()
    })
    .await;
    let topic = app.topic(&app.tenant_a, "orders", "order-created");
    let uri = format!("/events/{}/orders/order-created", app.tenant_a);
    let publish = |token: &str| {
        let authorization = format!("Bearer {token}");
        kong_event(
            "POST",
            &uri,
            &[
                ("authorization", &authorization),
                ("content-type", "application/json"),
            ],
            ORDER.as_bytes(),
        )
    };
    // Pay the cold start (keys, tenant token, producer) with another token,
    // so the short-lived one is used well inside its lifetime.
    let warm = app.token("user-42", &["checkout"]);
    assert_eq!(app.call(&publish(&warm)).await.status, 202);

    let exp = unix_now() + 3;
    let brief = app.token_expiring("user-42", &["checkout"], exp);
    for _ in 0..2 {
        let resp = app.call(&publish(&brief)).await;
        assert_eq!(resp.status, 202, "{:?}", resp.body);
    }
    let before = app.stored(&topic).await;
    assert_eq!(before, 3);

    while unix_now() <= exp {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for _ in 0..2 {
        let resp = app.call(&publish(&brief)).await;
        assert_eq!(resp.status, 401, "{:?}", resp.body);
        assert_eq!(resp.body["code"], "invalid_token");
    }
    assert_eq!(
        app.stored(&topic).await,
        before,
        "nothing more was published"
    );
    assert_eq!(app.call(&publish(&warm)).await.status, 202);
}
