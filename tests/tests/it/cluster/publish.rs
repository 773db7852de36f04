//! Publishing on the cluster: through the proxy and through each broker
//! (whose lookups redirect the function to the owner of each partition), to
//! topics partitioned over both brokers, with keys routed to one partition
//! each, and a tenant token rotated under a warm instance's connections to
//! every broker.

use kp_tests::app::AppOptions;
use kp_tests::cluster::BrokerId;
use kp_tests::{cluster, unique};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

use super::{Via, app_via, distinct, owners, publish, spread_topic, witness_with_keys};

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
            let resp = publish(&app, &name, &key, &body).await;
            assert_eq!(resp.status, 202, "{via:?} event {n}: {:?}", resp.body);
            ids.insert(body, resp.body["messageId"].as_str().unwrap().to_owned());
        }

        let key_names: Vec<String> = (0..keys).map(|k| format!("customer-{k}")).collect();
        let found = witness_with_keys(&topic, events + keys, &key_names).await;
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
