//! The trust holes an attacker found against the real broker, closed: each
//! attack, sent through the real Lambda Invoke API, is a 4xx problem with a
//! stable code and leaves nothing in Pulsar (the broker's own entry counters
//! and a super-user consumer are the witnesses), while the legitimate
//! neighbour of each attack still publishes.

use std::collections::BTreeSet;

use kp_tests::app::{PublishApp, Response, kong_event, properties, receive};
use kp_tests::{stack, unique};
use serde_json::Value;

/// Asserts a problem response with `status` and `code`.
fn assert_problem(resp: &Response, status: u16, code: &str, attack: &str) {
    assert_eq!(
        (resp.status, resp.body["code"].as_str().unwrap_or("")),
        (status, code),
        "{attack}: {:?}",
        resp.body
    );
    assert_eq!(
        resp.headers["content-type"], "application/problem+json",
        "{attack}"
    );
}

/// Entries stored on every partition of a partitioned topic.
async fn stored_in_partitions(app: &PublishApp, topic: &str, partitions: usize) -> u64 {
    let mut total = 0;
    for i in 0..partitions {
        total += app.stored(&format!("{topic}-partition-{i}")).await;
    }
    total
}

#[tokio::test]
async fn a_partition_name_is_no_side_door_around_the_topic_schema() {
    let app = PublishApp::spawn().await;
    let tenant = app.tenant_a.clone();
    // `order-created` has a schema (orderId: string); make it partitioned.
    let base = app.topic(&tenant, "orders", "order-created");
    stack()
        .admin()
        .put(
            &format!("/admin/v2/persistent/{tenant}/orders/order-created/partitions"),
            serde_json::json!(4),
        )
        .await
        .expect("create a 4-partition topic");
    let bearer = format!("Bearer {}", app.token("alice", &["checkout"]));
    let headers = [
        ("authorization", bearer.as_str()),
        ("content-type", "application/json"),
        ("x-event-key", "order-7"),
    ];
    let violating = br#"{"orderId":42}"#;

    for partition in ["order-created-partition-0", "order-created-partition-3"] {
        let uri = format!("/events/{tenant}/orders/{partition}");
        let resp = app
            .call(&kong_event("POST", &uri, &headers, violating))
            .await;
        assert_problem(&resp, 400, "reserved_name", partition);
        assert!(
            resp.body["detail"]
                .as_str()
                .unwrap()
                .contains("-partition-<n>"),
            "the detail names the rule: {:?}",
            resp.body
        );
    }
    assert_eq!(stored_in_partitions(&app, &base, 4).await, 0);

    // Through the base name the schema applies...
    let uri = format!("/events/{tenant}/orders/order-created");
    let resp = app
        .call(&kong_event("POST", &uri, &headers, violating))
        .await;
    assert_problem(&resp, 422, "schema_violation", "base name, bad body");
    assert_eq!(stored_in_partitions(&app, &base, 4).await, 0);

    // ...and a valid event with a key lands on the partitioned topic.
    let mut consumer = app.consumer(&base).await;
    let resp = app
        .call(&kong_event("POST", &uri, &headers, br#"{"orderId":"7"}"#))
        .await;
    assert_eq!(resp.status, 202, "{:?}", resp.body);
    assert_eq!(resp.body["topic"], base);
    let msg = receive(&mut consumer).await;
    assert_eq!(msg.payload.data, br#"{"orderId":"7"}"#);
    assert_eq!(
        msg.payload.metadata.partition_key.as_deref(),
        Some("order-7")
    );
    assert_eq!(stored_in_partitions(&app, &base, 4).await, 1);
}

#[tokio::test]
async fn system_topics_and_double_underscore_names_are_refused() {
    let app = PublishApp::spawn().await;
    let tenant = app.tenant_a.clone();
    let bearer = format!("Bearer {}", app.token("alice", &["checkout"]));
    let headers = [
        ("authorization", bearer.as_str()),
        ("content-type", "application/json"),
    ];
    let targets = [
        (tenant.clone(), "orders", "__change_events"),
        (tenant.clone(), "orders", "__transaction_buffer_snapshot"),
        (tenant.clone(), "orders", "__anything"),
        (tenant.clone(), "__orders", "x"),
        ("__system".to_owned(), "orders", "x"),
    ];
    let mut before = Vec::new();
    for (t, ns, topic) in &targets {
        before.push(app.stored(&app.topic(t, ns, topic)).await);
    }
    for (t, ns, topic) in &targets {
        let resp = app
            .call(&kong_event(
                "POST",
                &format!("/events/{t}/{ns}/{topic}"),
                &headers,
                br#"{"any":"event"}"#,
            ))
            .await;
        assert_problem(&resp, 400, "reserved_name", &format!("{t}/{ns}/{topic}"));
        assert!(
            resp.body["detail"].as_str().unwrap().contains("'__'"),
            "{:?}",
            resp.body
        );
    }
    for ((t, ns, topic), count) in targets.iter().zip(before) {
        assert_eq!(app.stored(&app.topic(t, ns, topic)).await, count, "{topic}");
    }
    // Unauthenticated, the answer is the same 400 (the name rule comes first
    // and costs no key fetch).
    let resp = app
        .call(&kong_event(
            "POST",
            &format!("/events/{tenant}/orders/__change_events"),
            &[("content-type", "application/json")],
            b"{}",
        ))
        .await;
    assert_problem(&resp, 400, "reserved_name", "unauthenticated");

    // A single underscore is an ordinary name.
    let resp = app
        .call(&kong_event(
            "POST",
            &format!("/events/{tenant}/orders/_private"),
            &headers,
            b"{}",
        ))
        .await;
    assert_eq!(resp.status, 202, "{:?}", resp.body);
}

#[tokio::test]
async fn oversized_caller_metadata_is_refused_and_publishes_nothing() {
    let app = PublishApp::spawn().await;
    let tenant = app.tenant_a.clone();
    let topic = app.topic(&tenant, "orders", "metadata");
    let uri = format!("/events/{tenant}/orders/metadata");
    let bearer = format!("Bearer {}", app.token("alice", &["checkout"]));
    let base = [
        ("authorization".to_owned(), bearer.clone()),
        ("content-type".to_owned(), "application/json".to_owned()),
    ];
    let with = |extra: Vec<(String, String)>| {
        let headers: Vec<(String, String)> = base.iter().cloned().chain(extra).collect();
        let refs: Vec<(&str, &str)> = headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        kong_event("POST", &uri, &refs, b"{}")
    };
    let props = |n: usize, value: &str| -> Vec<(String, String)> {
        (0..n)
            .map(|i| (format!("x-event-property-p{i}"), value.to_owned()))
            .collect()
    };
    let attacks = [
        (
            "2,000 properties",
            with(props(2000, "v")),
            "too_many_properties",
        ),
        ("33 properties", with(props(33, "v")), "too_many_properties"),
        (
            "a 300 kB property value",
            with(vec![("x-event-property-blob".into(), "v".repeat(300_000))]),
            "property_too_large",
        ),
        (
            "a 257-byte property name",
            with(vec![(
                format!("x-event-property-{}", "n".repeat(257)),
                "v".into(),
            )]),
            "property_too_large",
        ),
        (
            "a 100 kB event key",
            with(vec![("x-event-key".into(), "k".repeat(100_000))]),
            "event_key_too_large",
        ),
        (
            "32 properties of 4 KiB (each within its limit, 128 KiB in all)",
            with(props(32, &"v".repeat(4096))),
            "metadata_too_large",
        ),
    ];
    for (attack, event, code) in &attacks {
        let resp = app.call(event).await;
        assert_problem(&resp, 431, code, attack);
    }
    let resp = app
        .call(&with(vec![("idempotency-key".into(), "k".repeat(256))]))
        .await;
    assert_problem(&resp, 400, "invalid_idempotency_key", "a 256-byte key");
    let resp = app
        .call(&with(vec![("idempotency-key".into(), "clé\u{7}".into())]))
        .await;
    assert_problem(&resp, 400, "invalid_idempotency_key", "a non-ASCII key");
    // The same limits on an NDJSON batch: its lines share the headers.
    let mut batch = with(props(40, "v"));
    batch["request_headers"]["content-type"] = "application/x-ndjson".into();
    batch["request_body"] = base64_of(b"{}\n{}\n{}\n");
    let resp = app.call(&batch).await;
    assert_problem(&resp, 431, "too_many_properties", "NDJSON batch");
    assert_eq!(app.stored(&topic).await, 0, "an attack reached the broker");

    // Within the limits every property lands with its value.
    let mut consumer = app.consumer(&topic).await;
    let mut legit: Vec<(String, String)> = (0..31)
        .map(|i| (format!("x-event-property-p{i}"), format!("value-{i}")))
        .collect();
    legit.push(("x-event-property-big".into(), "b".repeat(4096)));
    legit.push(("x-event-key".into(), "k".repeat(1024)));
    let resp = app.call(&with(legit)).await;
    assert_eq!(resp.status, 202, "{:?}", resp.body);
    let msg = receive(&mut consumer).await;
    let got = properties(&msg);
    for i in 0..31 {
        assert_eq!(got[&format!("p{i}")], format!("value-{i}"));
    }
    assert_eq!(got["big"], "b".repeat(4096));
    assert_eq!(msg.payload.metadata.partition_key, Some("k".repeat(1024)));
    assert_eq!(app.stored(&topic).await, 1);
}

fn base64_of(bytes: &[u8]) -> Value {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .encode(bytes)
        .into()
}

#[tokio::test]
async fn a_reused_idempotency_key_cannot_smuggle_new_metadata() {
    let app = PublishApp::spawn().await;
    let tenant = app.tenant_a.clone();
    let topic = app.topic(&tenant, "orders", "idem");
    let uri = format!("/events/{tenant}/orders/idem");
    let bearer = format!("Bearer {}", app.token("alice", &["checkout"]));
    let key = unique("idem");
    let send = |extra: &[(&str, &str)]| {
        let mut headers = vec![
            ("authorization", bearer.as_str()),
            ("content-type", "application/json"),
            ("idempotency-key", key.as_str()),
            ("x-event-key", "order-1"),
            ("x-event-property-region", "eu"),
        ];
        for (n, v) in extra {
            headers.retain(|(h, _)| h != n);
            headers.push((n, v));
        }
        kong_event("POST", &uri, &headers, br#"{"orderId":"1"}"#)
    };
    let mut consumer = app.consumer(&topic).await;
    let first = app.call(&send(&[])).await;
    assert_eq!(first.status, 202, "{:?}", first.body);
    assert_eq!(app.stored(&topic).await, 1);

    for (attack, change) in [
        ("another event key", ("x-event-key", "order-2")),
        ("another property value", ("x-event-property-region", "us")),
        ("an added property", ("x-event-property-extra", "1")),
        ("an event time", ("x-event-time", "2026-01-01T00:00:00Z")),
        (
            "another content type",
            ("content-type", "application/x-ndjson"),
        ),
    ] {
        let resp = app.call(&send(&[change])).await;
        assert_problem(&resp, 400, "idempotency_key_reused", attack);
        assert!(resp.headers.get("idempotent-replayed").is_none());
    }
    assert_eq!(app.stored(&topic).await, 1, "a changed retry was published");

    // The same request replays the first answer and publishes nothing.
    let again = app.call(&send(&[])).await;
    assert_eq!(again.status, 202);
    assert_eq!(again.headers["idempotent-replayed"], "true");
    assert_eq!(again.body, first.body);
    assert_eq!(app.stored(&topic).await, 1);
    let msg = receive(&mut consumer).await;
    assert_eq!(
        msg.payload.metadata.partition_key.as_deref(),
        Some("order-1")
    );
    assert_eq!(properties(&msg)["region"], "eu");
}

#[tokio::test]
async fn unauthenticated_random_paths_mint_no_metric_dimensions() {
    let app = PublishApp::spawn().await;
    let tenant = app.tenant_a.clone();
    let mut invented = Vec::new();
    for i in 0..20 {
        let (t, ns, topic) = (unique("rt"), format!("ns{i}"), unique("topic"));
        let resp = app
            .call(&kong_event(
                "POST",
                &format!("/events/{t}/{ns}/{topic}"),
                &[("content-type", "application/json")],
                b"{}",
            ))
            .await;
        assert_problem(&resp, 401, "missing_credentials", "random path");
        invented.push(topic);
    }
    // An authenticated caller outside its grant: denied, no dimension either.
    let billing = format!("Bearer {}", app.token("bob", &["billing"]));
    let denied = unique("denied");
    let resp = app
        .call(&kong_event(
            "POST",
            &format!("/events/{tenant}/orders/{denied}"),
            &[
                ("authorization", billing.as_str()),
                ("content-type", "application/json"),
            ],
            b"{}",
        ))
        .await;
    assert_problem(&resp, 403, "forbidden", "denied");
    invented.push(denied);
    // The legitimate request does get its Topic dimension.
    let bearer = format!("Bearer {}", app.token("alice", &["checkout"]));
    let resp = app
        .call(&kong_event(
            "POST",
            &format!("/events/{tenant}/orders/metrics"),
            &[
                ("authorization", bearer.as_str()),
                ("content-type", "application/json"),
            ],
            b"{}",
        ))
        .await;
    assert_eq!(resp.status, 202, "{:?}", resp.body);

    let logs = app.function.logs();
    let records: Vec<Value> = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .collect();
    let emf: Vec<&Value> = records.iter().filter(|r| r.get("_aws").is_some()).collect();
    assert_eq!(emf.len(), 22, "one EMF record per request");
    let topics: BTreeSet<&str> = emf.iter().filter_map(|r| r["Topic"].as_str()).collect();
    assert_eq!(
        topics,
        BTreeSet::from([format!("{tenant}/orders/metrics").as_str()]),
        "only the authorized request has a Topic dimension"
    );
    let outcomes: BTreeSet<&str> = emf.iter().filter_map(|r| r["Outcome"].as_str()).collect();
    assert_eq!(
        outcomes,
        BTreeSet::from(["missing_credentials", "forbidden", "published"])
    );
    // The audit lines still name what was asked for.
    for topic in &invented {
        assert!(
            records
                .iter()
                .any(|r| r["fields"]["topic"].as_str() == Some(topic.as_str())
                    || r["topic"].as_str() == Some(topic.as_str())),
            "the audit line lost topic {topic}"
        );
    }
}
