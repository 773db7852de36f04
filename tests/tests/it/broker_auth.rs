//! The local broker really enforces authentication and authorization, and the
//! library's broker client surfaces each refusal as a typed error. These are
//! the walls the product relies on behind its own policy.

use std::time::Duration;

use futures::StreamExt;
use kong_pulsar::pulsar::broker::{BrokerError, OutgoingMessage};
use kp_tests::{sign_hs256, stack, unique, unix_now};
use pulsar::consumer::{ConsumerOptions, InitialPosition};
use pulsar::{Consumer, SubType};
use serde_json::json;

fn message(payload: &str) -> OutgoingMessage {
    OutgoingMessage {
        payload: payload.as_bytes().to_vec(),
        key: Some("order-42".into()),
        event_time_ms: Some(1_700_000_000_000),
        properties: [("kp-test".to_owned(), "yes".to_owned())].into(),
    }
}

#[tokio::test]
async fn granted_role_publishes_and_a_consumer_reads_it_back() {
    let stack = stack();
    let admin = stack.admin();
    let ns = admin.test_namespace().await;
    let role = unique("producer");
    admin
        .grant(&ns.tenant, &ns.namespace, &role, &["produce"])
        .await
        .unwrap();
    let topic = ns.topic("orders");

    // Subscribe first (as the super-user) so the message is retained for us.
    let reader = stack.broker_as(stack.superuser_token()).await.unwrap();
    let mut consumer: Consumer<Vec<u8>, _> = reader
        .client()
        .consumer()
        .with_topic(&topic)
        .with_subscription(unique("sub"))
        .with_subscription_type(SubType::Exclusive)
        .with_options(ConsumerOptions::default().with_initial_position(InitialPosition::Earliest))
        .build()
        .await
        .unwrap();

    let broker = stack.broker_as(&stack.mint_token(&role)).await.unwrap();
    let mut producer = broker.producer(&topic).await.unwrap();
    let id = producer.send(message(r#"{"orderId":"42"}"#)).await.unwrap();

    let received = tokio::time::timeout(Duration::from_secs(10), consumer.next())
        .await
        .expect("message within 10 s")
        .expect("stream open")
        .unwrap();
    consumer.ack(&received).await.unwrap();
    assert_eq!(received.payload.data, br#"{"orderId":"42"}"#);
    let meta = &received.payload.metadata;
    assert_eq!(meta.partition_key.as_deref(), Some("order-42"));
    assert_eq!(meta.event_time, Some(1_700_000_000_000));
    assert!(
        meta.properties
            .iter()
            .any(|kv| kv.key == "kp-test" && kv.value == "yes")
    );
    assert_eq!(received.message_id.id.ledger_id, id.ledger_id);
    assert_eq!(received.message_id.id.entry_id, id.entry_id);
}

#[tokio::test]
async fn role_without_a_grant_is_refused_by_the_broker() {
    let stack = stack();
    let admin = stack.admin();
    let ns = admin.test_namespace().await;
    let granted_elsewhere = unique("other");
    // The namespace has permissions, just not for our role.
    admin
        .grant(&ns.tenant, &ns.namespace, &granted_elsewhere, &["produce"])
        .await
        .unwrap();

    let broker = stack
        .broker_as(&stack.mint_token(&unique("nogrant")))
        .await
        .unwrap();
    let err = broker
        .producer(&ns.topic("orders"))
        .await
        .err()
        .expect("refused");
    assert!(matches!(err, BrokerError::Forbidden(_)), "{err:?}");
}

#[tokio::test]
async fn consume_grant_does_not_allow_produce() {
    let stack = stack();
    let admin = stack.admin();
    let ns = admin.test_namespace().await;
    let role = unique("reader");
    admin
        .grant(&ns.tenant, &ns.namespace, &role, &["consume"])
        .await
        .unwrap();

    let broker = stack.broker_as(&stack.mint_token(&role)).await.unwrap();
    let err = broker
        .producer(&ns.topic("orders"))
        .await
        .err()
        .expect("refused");
    assert!(matches!(err, BrokerError::Forbidden(_)), "{err:?}");
}

#[tokio::test]
async fn token_signed_with_another_key_is_refused_at_connect() {
    let stack = stack();
    let forged = sign_hs256(
        b"not-the-broker-key-not-the-broker-key",
        &json!({ "sub": stack.superuser_role, "exp": unix_now() + 3600 }),
    );
    let err = stack.broker_as(&forged).await.err().expect("refused");
    assert!(matches!(err, BrokerError::Unauthenticated(_)), "{err:?}");
    assert!(err.is_credentials());
}

#[tokio::test]
async fn expired_token_is_refused_at_connect() {
    let stack = stack();
    let expired = stack.mint_token_expiring(&stack.superuser_role, Duration::from_secs(120), false);
    let err = stack.broker_as(&expired).await.err().expect("refused");
    assert!(matches!(err, BrokerError::Unauthenticated(_)), "{err:?}");
}

#[tokio::test]
async fn garbage_token_is_refused_at_connect() {
    let err = stack().broker_as("not-a-jwt").await.err().expect("refused");
    assert!(matches!(err, BrokerError::Unauthenticated(_)), "{err:?}");
}

#[tokio::test]
async fn an_unreachable_broker_is_unavailable_not_a_credentials_error() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("pulsar://{}", closed.local_addr().unwrap());
    drop(closed);
    let err = kong_pulsar::pulsar::broker::Broker::connect(
        &url.parse().unwrap(),
        std::sync::Arc::new(kong_pulsar::secrets::SecretValue::new(
            stack().mint_token("r"),
        )),
        kong_pulsar::pulsar::broker::Timeouts::default(),
    )
    .await
    .err()
    .expect("no broker there");
    assert!(matches!(err, BrokerError::Unavailable(_)), "{err:?}");
    assert!(!err.is_credentials());
}
