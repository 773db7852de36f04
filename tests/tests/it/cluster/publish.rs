//! Publishing on the cluster: through the proxy and through each broker
//! (whose lookups redirect the function to the owner of each partition), to
//! topics partitioned over both brokers, with keys routed to one partition
//! each, and a tenant token rotated under a warm instance's connections to
//! every broker.

use std::time::Duration;

use kp_tests::app::{AppOptions, kong_event};
use kp_tests::cluster::BrokerId;
use kp_tests::{cluster, unique};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

use super::{Via, app_via, connections, distinct, owners, spread_topic, witness};

#[tokio::test]
async fn each_way_in_publishes_to_partitions_on_both_brokers_routing_keys_as_the_official_clients()
{
    let _lease = cluster().shared().await;
    // 3 partitions through the proxy: a count that is not a power of two is
    // where a key hash that keeps its sign bit goes astray.
    for (via, partitions) in [
        (Via::Proxy, 3),
        (Via::Broker(BrokerId::One), 4),
        (Via::Broker(BrokerId::Two), 4),
    ] {
        let app = app_via(via, AppOptions::default()).await;
        let name = unique("spread");
        let topic = spread_topic(&app, &name, partitions).await;
        // 13 keys over 52 events: no key count that lines up with round robin.
        let (events, keys) = (52, 13);
        let mut ids = BTreeMap::new();
        for n in 0..events {
            let key = format!("customer-{}", n % keys);
            let body = format!(r#"{{"n":{n}}}"#);
            let resp = app.publish_keyed(&name, &key, &body).await;
            assert_eq!(resp.status, 202, "{via:?} event {n}: {:?}", resp.body);
            ids.insert(body, resp.body["messageId"].as_str().unwrap().to_owned());
        }

        let key_names: Vec<String> = (0..keys).map(|k| format!("customer-{k}")).collect();
        let found =
            kp_tests::witness::partitions(&cluster().proxy, &topic, events + keys, &key_names)
                .await;
        let (theirs, ours): (Vec<&Value>, Vec<&Value>) = found
            .iter()
            .partition(|m| m["data"].as_str().unwrap().starts_with("witness:"));
        let data: BTreeSet<&str> = ours.iter().map(|m| m["data"].as_str().unwrap()).collect();
        let sent: BTreeSet<&str> = ids.keys().map(String::as_str).collect();
        assert_eq!(data, sent, "{via:?}: every event, once");
        for m in &ours {
            // The id the caller got names the partition, so it is the
            // message's id for any reader (and for consume's cursors).
            assert_eq!(
                m["messageId"].as_str(),
                ids.get(m["data"].as_str().unwrap()).map(String::as_str),
                "{via:?}: {m}"
            );
        }
        let mut partitions_of_key: BTreeMap<&str, BTreeSet<i64>> = BTreeMap::new();
        for m in &found {
            partitions_of_key
                .entry(m["key"].as_str().unwrap())
                .or_default()
                .insert(m["partition"].as_i64().unwrap());
        }
        for (key, seen) in &partitions_of_key {
            assert_eq!(
                seen.len(),
                1,
                "{via:?}: key {key} in partitions {seen:?} (the witness's own message included)"
            );
        }
        assert_eq!(theirs.len(), keys, "{via:?}");
        let owner = owners(&topic, partitions).await;
        let brokers_used: BTreeSet<_> = ours
            .iter()
            .map(|m| owner[m["partition"].as_u64().unwrap() as usize])
            .collect();
        assert_eq!(
            brokers_used.len(),
            2,
            "{via:?}: partitions used {:?}, owners {owner:?}",
            distinct(&found, "partition")
        );
    }
}

#[tokio::test]
async fn a_batch_to_a_partitioned_topic_persists_every_line_round_robin_with_its_partition() {
    let _lease = cluster().shared().await;
    let app = app_via(Via::Proxy, AppOptions::default()).await;
    let name = unique("batch");
    let topic = spread_topic(&app, &name, 4).await;
    let lines: Vec<String> = (0..40).map(|n| format!(r#"{{"line":{n}}}"#)).collect();
    let bearer = format!("Bearer {}", app.token("svc-batch", &["checkout"]));
    let resp = app
        .call(&kong_event(
            "POST",
            &app.orders_path(&name),
            &[
                ("authorization", &bearer),
                ("content-type", "application/x-ndjson"),
            ],
            lines.join("\n").as_bytes(),
        ))
        .await;
    assert_eq!(resp.status, 202, "{:?}", resp.body);
    let results = resp.body["results"].as_array().expect("a result per line");
    assert_eq!(results.len(), lines.len());
    let ids: BTreeMap<&str, &str> = results
        .iter()
        .map(|r| {
            let index = r["index"].as_u64().unwrap() as usize;
            (lines[index].as_str(), r["messageId"].as_str().unwrap())
        })
        .collect();

    let found = witness(&topic, lines.len()).await;
    for m in &found {
        assert_eq!(
            ids.get(m["data"].as_str().unwrap()).copied(),
            m["messageId"].as_str(),
            "{m}"
        );
    }
    // No key: the lines take turns, so every partition holds a quarter.
    let mut per_partition = BTreeMap::new();
    for m in &found {
        *per_partition
            .entry(m["partition"].as_i64().unwrap())
            .or_insert(0) += 1;
    }
    assert_eq!(
        per_partition,
        BTreeMap::from([(0, 10), (1, 10), (2, 10), (3, 10)])
    );
}

/// Publishes keyed events through `via` for the old token's lifetime plus
/// the broker's 5 s re-check, replacing the token after 3 s; returns the
/// failures, the count accepted, the topic and the instance's connections.
async fn publish_through_a_rotation(
    via: Via,
) -> (Vec<String>, usize, String, BTreeMap<u16, usize>) {
    let old_token_ttl = Duration::from_secs(12);
    let app = app_via(
        via,
        AppOptions {
            // The refresh must come from the token's expiry and the
            // brokers' (or the proxy's) re-check, not from the cache.
            secret_ttl: "5m",
            token_a_ttl: old_token_ttl,
            ..AppOptions::default()
        },
    )
    .await;
    let name = unique("rotation");
    let topic = spread_topic(&app, &name, 4).await;
    let (app, name) = (&app, &name);
    let (ok, failures) = app
        .publish_through_token_a_rotation(old_token_ttl, Duration::from_millis(150), |n| {
            let (key, body) = (format!("k{n}"), format!(r#"{{"n":{n}}}"#));
            async move { app.publish_keyed(name, &key, &body).await }
        })
        .await;
    let held = connections(app.function.pid());
    (failures, ok, topic, held)
}

#[tokio::test]
async fn a_warm_instance_keeps_publishing_through_a_token_rotation_on_every_broker_connection() {
    let _lease = cluster().shared().await;
    let (through_proxy, through_broker) = tokio::join!(
        publish_through_a_rotation(Via::Proxy),
        publish_through_a_rotation(Via::Broker(BrokerId::One)),
    );
    for (via, (failures, ok, topic, held)) in [
        (Via::Proxy, through_proxy),
        (Via::Broker(BrokerId::One), through_broker),
    ] {
        assert!(
            failures.is_empty(),
            "{via:?}: {} failed publishes:\n{}",
            failures.len(),
            failures.join("\n")
        );
        assert!(ok > 40, "{via:?}: only {ok} publishes");
        let found = witness(&topic, ok).await;
        assert_eq!(
            found.len(),
            ok,
            "{via:?}: every accepted event is in Pulsar"
        );
        let owner = owners(&topic, 4).await;
        let brokers: BTreeSet<_> = found
            .iter()
            .map(|m| owner[m["partition"].as_u64().unwrap() as usize])
            .collect();
        assert_eq!(brokers.len(), 2, "{via:?}: the events went to both brokers");
        eprintln!("{via:?}: connections held by the instance, by port: {held:?}");
        let to_pulsar: usize = held
            .iter()
            .filter(|(port, _)| cluster_ports().contains(port))
            .map(|(_, n)| n)
            .sum();
        // One per broker it produces to (lookups reuse them); through the
        // proxy, one proxy connection per broker behind it.
        assert_eq!(
            to_pulsar, 2,
            "{via:?}: connections to Pulsar, by port: {held:?}"
        );
    }
}

/// The binary-protocol ports of the proxy and both brokers.
fn cluster_ports() -> Vec<u16> {
    std::iter::once(&cluster().proxy)
        .chain(cluster().brokers.iter())
        .map(|s| s.service_url.port().expect("a port"))
        .collect()
}
