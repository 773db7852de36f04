//! Reading on the cluster through the proxy: a non-partitioned topic's
//! cursor reads and subscription reads work wherever its owner is; a
//! partitioned topic's cursor reads cover every partition (a position per
//! partition in the cursor), and its subscriptions are refused with a clear
//! 501 rather than served from one partition as if it were the topic.

use kp_tests::app::{AppOptions, ConsumeOptions, PublishApp, kong_event, kong_get};
use kp_tests::lambda::Function;
use kp_tests::{cluster, unique};
use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::{Via, app_via, spread_topic};

/// A publish app on the cluster (through the proxy), its consume function,
/// and a token of a caller who may publish and read tenant A's orders.
async fn reading_app() -> (PublishApp, Function, String) {
    let app = app_via(Via::Proxy, AppOptions::default()).await;
    let reader = app.consume_function(ConsumeOptions::default()).await;
    let token = app.token("alice", &["checkout"]);
    (app, reader, token)
}

#[tokio::test]
async fn consume_reads_a_topic_on_either_broker_through_the_proxy() {
    let _lease = cluster().shared().await;
    let (app, reader, token) = reading_app().await;
    for owner in [
        kp_tests::cluster::BrokerId::One,
        kp_tests::cluster::BrokerId::Two,
    ] {
        let name = unique("read");
        let topic = app.topic(&app.tenant_a, "orders", &name);
        let resp = app.publish_keyed(&name, "k", r#"{"n":0}"#).await;
        assert_eq!(resp.status, 202, "{:?}", resp.body);
        cluster().place(&topic, owner).await;
        for n in 1..5 {
            let resp = app
                .publish_keyed(&name, "k", &format!(r#"{{"n":{n}}}"#))
                .await;
            assert_eq!(resp.status, 202, "{:?}", resp.body);
        }
        let page = reader
            .call(&kong_get(
                &app.orders_path(&name),
                &[("after", "earliest")],
                &token,
            ))
            .await;
        assert_eq!(page.status, 200, "{owner:?}: {:?}", page.body);
        let data: Vec<i64> = page.body["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["data"]["n"].as_i64().unwrap())
            .collect();
        assert_eq!(data, [0, 1, 2, 3, 4], "{owner:?}");
        let taken = reader
            .call(&kong_get(
                &app.orders_path(&name),
                &[("subscription", "checkout-cluster"), ("max", "10")],
                &token,
            ))
            .await;
        assert_eq!(taken.status, 200, "{owner:?}: {:?}", taken.body);
        assert_eq!(
            taken.body["messages"].as_array().unwrap().len(),
            5,
            "{owner:?}"
        );
    }
}

/// Reads `path` from `after` to the end, `max` at a time, following each
/// page's cursor: every message, and the cursor the last (empty) page gave.
async fn read_to_the_end(
    reader: &Function,
    path: &str,
    token: &str,
    after: &str,
    max: &str,
) -> (Vec<Value>, String) {
    let (mut all, mut cursor) = (Vec::new(), after.to_owned());
    loop {
        let page = reader
            .call(&kong_get(path, &[("after", &cursor), ("max", max)], token))
            .await;
        assert_eq!(page.status, 200, "after {cursor}: {:?}", page.body);
        let messages = page.body["messages"].as_array().unwrap().clone();
        cursor = page.body["cursor"].as_str().unwrap().to_owned();
        if messages.is_empty() {
            return (all, cursor);
        }
        assert!(messages.len() <= max.parse().unwrap());
        all.extend(messages);
    }
}

#[tokio::test]
async fn consume_reads_a_partitioned_topic_on_both_brokers_with_a_position_per_partition() {
    let _lease = cluster().shared().await;
    let (app, reader, token) = reading_app().await;
    let name = unique("parted");
    spread_topic(&app, &name, 4).await;
    let path = app.orders_path(&name);
    let mut ids = BTreeMap::new();
    for n in 0..40 {
        let resp = app
            .publish_keyed(&name, &format!("k{}", n % 10), &format!(r#"{{"n":{n}}}"#))
            .await;
        assert_eq!(resp.status, 202, "{:?}", resp.body);
        ids.insert(n, resp.body["messageId"].as_str().unwrap().to_owned());
    }

    // Pages of 15 from the start: every event once, under the id its
    // publish answer gave, each key's events in order.
    let (all, end) = read_to_the_end(&reader, &path, &token, "earliest", "15").await;
    let got: BTreeMap<i64, String> = all
        .iter()
        .map(|m| {
            (
                m["data"]["n"].as_i64().unwrap(),
                m["messageId"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(all.len(), 40, "no event twice");
    assert_eq!(
        got.into_iter().collect::<Vec<_>>(),
        ids.clone().into_iter().collect::<Vec<_>>()
    );
    let mut last_of_key: BTreeMap<String, i64> = BTreeMap::new();
    for m in &all {
        let n = m["data"]["n"].as_i64().unwrap();
        let previous = last_of_key.insert(m["key"].as_str().unwrap().to_owned(), n);
        assert!(
            previous.is_none_or(|p| p < n),
            "key order: {previous:?} then {n}"
        );
    }
    let partitions_named = end.split(',').count();
    assert!(
        partitions_named >= 2,
        "the cursor names each partition read: {end}"
    );

    // `latest`, then one more event: that one alone, wherever it went.
    let page = reader
        .call(&kong_get(&path, &[("after", "latest")], &token))
        .await;
    assert_eq!(page.status, 200, "{:?}", page.body);
    assert_eq!(page.body["messages"].as_array().unwrap().len(), 0);
    let latest = page.body["cursor"].as_str().unwrap().to_owned();
    // Every partition that holds a message is resolved to its last one (an
    // empty partition is read from its start: nothing to skip there), which
    // is where the full read ended.
    assert_eq!(latest, end);
    // A long poll from there wakes on a publish to any partition.
    let long_poll = kong_get(&path, &[("after", &latest), ("waitMs", "8000")], &token);
    let poll = reader.call(&long_poll);
    let publish = async {
        tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
        app.publish_keyed(&name, "late", r#"{"n":40}"#).await
    };
    let started = std::time::Instant::now();
    let (page, late) = tokio::join!(poll, publish);
    assert_eq!(late.status, 202, "{:?}", late.body);
    assert_eq!(page.status, 200, "{:?}", page.body);
    let messages = page.body["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 1, "{:?}", page.body);
    assert_eq!(messages[0]["messageId"], late.body["messageId"]);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );

    // Cursors of another topic's shape are refused, not guessed at.
    for bad in ["12:3:-1:-1", "12:3:7:-1", "12:3:0:-1,12:4:0:-1"] {
        let resp = reader
            .call(&kong_get(&path, &[("after", bad)], &token))
            .await;
        assert_eq!(
            (resp.status, resp.body["code"].as_str()),
            (400, Some("invalid_cursor")),
            "{bad}: {:?}",
            resp.body
        );
    }
}

#[tokio::test]
async fn a_partition_cursor_on_a_topic_that_is_not_partitioned_is_refused() {
    let _lease = cluster().shared().await;
    let (app, reader, token) = reading_app().await;
    let name = unique("plain");
    let resp = app.publish_keyed(&name, "k", r#"{"n":0}"#).await;
    assert_eq!(resp.status, 202, "{:?}", resp.body);
    let resp = reader
        .call(&kong_get(
            &app.orders_path(&name),
            &[("after", "12:3:1:-1")],
            &token,
        ))
        .await;
    assert_eq!(
        (resp.status, resp.body["code"].as_str()),
        (400, Some("invalid_cursor")),
        "{:?}",
        resp.body
    );
}

#[tokio::test]
async fn subscriptions_and_acks_on_a_partitioned_topic_are_501() {
    let _lease = cluster().shared().await;
    let (app, reader, token) = reading_app().await;
    let name = unique("parted");
    spread_topic(&app, &name, 4).await;
    let resp = app.publish_keyed(&name, "k", r#"{"n":0}"#).await;
    assert_eq!(resp.status, 202, "{:?}", resp.body);
    let path = app.orders_path(&name);
    let bearer = format!("Bearer {token}");
    let ack = kong_event(
        "POST",
        &format!("{path}/acks"),
        &[
            ("authorization", &bearer),
            ("content-type", "application/json"),
        ],
        json!({ "subscription": "checkout-x", "messageIds": ["1:2:0:-1"] })
            .to_string()
            .as_bytes(),
    );
    for (what, event) in [
        (
            "subscription",
            kong_get(&path, &[("subscription", "checkout-x")], &token),
        ),
        ("ack", ack),
    ] {
        let resp = reader.call(&event).await;
        assert_eq!(
            (resp.status, resp.body["code"].as_str()),
            (501, Some("partitioned_topic_unsupported")),
            "{what}: {:?}",
            resp.body
        );
        assert!(
            resp.body["detail"]
                .as_str()
                .unwrap()
                .contains("4 partitions"),
            "{what}: {:?}",
            resp.body
        );
    }
}
