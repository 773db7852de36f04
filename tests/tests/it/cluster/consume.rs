//! Reading on the cluster through the proxy: a non-partitioned topic's
//! cursor reads and subscription reads work wherever its owner is; a
//! partitioned topic is refused with a clear 501 rather than read as if its
//! first partition were all of it.

use kp_tests::app::{AppOptions, ConsumeOptions, kong_event, kong_get};
use kp_tests::{cluster, unique};
use serde_json::json;

use super::{Via, app_via, spread_topic};

#[tokio::test]
async fn consume_reads_a_topic_on_either_broker_through_the_proxy() {
    let _lease = cluster().shared().await;
    let app = app_via(Via::Proxy, AppOptions::default()).await;
    let reader = app.consume_function(ConsumeOptions::default()).await;
    let token = app.token("alice", &["checkout"]);
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

#[tokio::test]
async fn consume_refuses_a_partitioned_topic_with_501_for_reads_subscriptions_and_acks() {
    let _lease = cluster().shared().await;
    let app = app_via(Via::Proxy, AppOptions::default()).await;
    let reader = app.consume_function(ConsumeOptions::default()).await;
    let token = app.token("alice", &["checkout"]);
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
        ("cursor", kong_get(&path, &[("after", "earliest")], &token)),
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
