//! The publish path's producer pool is bounded per instance: a caller allowed
//! `topics: ["*"]` who publishes to ever new topic names cannot make one warm
//! instance hold a producer per name. The witness is the broker's own topic
//! stats (its list of connected publishers), not the pool's bookkeeping.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kong_pulsar::pulsar::broker::{OutgoingMessage, TenantBrokers, TenantCredentials, Timeouts};
use kong_pulsar::pulsar::topic::TopicName;
use kong_pulsar::secrets::SecretsManager;
use kp_tests::app::token_secret;
use kp_tests::{stack, unique};

/// Connected publishers the broker reports for `topic`.
async fn publishers(topic: &str) -> usize {
    let path = format!(
        "/admin/v2/{}/stats",
        topic.replacen("persistent://", "persistent/", 1)
    );
    let stats = stack().admin().get(&path).await.unwrap();
    stats["publishers"].as_array().map_or(0, Vec::len)
}

#[tokio::test]
async fn publishing_to_many_topic_names_keeps_at_most_the_bound_of_producers_open() {
    const BOUND: usize = 3;
    const TOPICS: usize = 7;
    let admin = stack().admin();
    let ns = admin.test_namespace().await;
    let role = unique("pool-role");
    admin
        .grant(&ns.tenant, &ns.namespace, &role, &["produce"])
        .await
        .unwrap();
    let secret = unique("kong-pulsar/tokens/pool");
    let client = aws_sdk_secretsmanager::Client::new(&stack().aws_config().await);
    let ttl = Duration::from_secs(3600);
    client
        .create_secret()
        .name(&secret)
        .secret_string(token_secret(&stack().mint_token(&role), &role, ttl))
        .send()
        .await
        .unwrap();
    let brokers = TenantBrokers::new(
        stack().service_url.clone(),
        Arc::new(SecretsManager::new(client)),
        Timeouts::default(),
    )
    .with_max_producers(BOUND);
    let credentials = TenantCredentials {
        role: &role,
        token_secret: &secret,
    };

    let names: Vec<TopicName> = (0..TOPICS)
        .map(|i| TopicName::parse(&ns.tenant, &ns.namespace, &format!("t{i}")).unwrap())
        .collect();
    let topics: Vec<String> = names.iter().map(ToString::to_string).collect();
    for (name, topic) in names.iter().zip(&topics) {
        let message = OutgoingMessage {
            payload: br#"{"n":1}"#.to_vec(),
            key: None,
            event_time_ms: None,
            properties: Default::default(),
        };
        let ids = brokers
            .send(credentials, name, vec![message], Duration::from_secs(20))
            .await
            .unwrap_or_else(|e| panic!("publish to {topic}: {e:?}"));
        assert_eq!(ids.len(), 1, "every publish is acknowledged");
        assert!(brokers.open_producers().await <= BOUND);
    }

    // Closing an evicted producer is asynchronous on the broker side: wait
    // (bounded) for its stats to settle, then count.
    let deadline = Instant::now() + Duration::from_secs(20);
    let counts = loop {
        let mut counts = Vec::new();
        for topic in &topics {
            counts.push(publishers(topic).await);
        }
        if counts.iter().sum::<usize>() <= BOUND || Instant::now() > deadline {
            break counts;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(counts.iter().sum::<usize>(), BOUND, "{counts:?}");
    // The most recently used topics are the ones still open.
    assert_eq!(counts[TOPICS - BOUND..], [1; BOUND], "{counts:?}");

    // An evicted topic still publishes: a new producer is opened for it.
    let again = OutgoingMessage {
        payload: br#"{"n":2}"#.to_vec(),
        key: None,
        event_time_ms: None,
        properties: Default::default(),
    };
    brokers
        .send(credentials, &names[0], vec![again], Duration::from_secs(20))
        .await
        .unwrap();
    assert_eq!(brokers.open_producers().await, BOUND);
}
