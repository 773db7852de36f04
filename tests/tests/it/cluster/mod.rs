//! The functions against a real multi-broker cluster (`stack.sh
//! cluster-up`: two brokers, a bookie, ZooKeeper, a Pulsar proxy), shared
//! by every test here through `kp_tests::cluster()`: through each broker
//! directly (lookups redirect to the owner) and through the proxy;
//! partitioned topics spread over both brokers; and brokers killed or
//! paused under load (`faults`, which hold the cluster exclusively).
//!
//! What really landed is read back with the official Python client
//! (`tests/stack/partition_witness.py`), never with the crates under test.

mod admin;
mod consume;
mod faults;
mod publish;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use kp_tests::app::{AppOptions, PublishApp};
use kp_tests::cluster::BrokerId;
use kp_tests::{Stack, cluster};
use serde_json::Value;

/// A way into the cluster.
#[derive(Debug, Clone, Copy)]
enum Via {
    Proxy,
    Broker(BrokerId),
}

impl Via {
    fn stack(self) -> &'static Stack {
        match self {
            Via::Proxy => &cluster().proxy,
            Via::Broker(id) => cluster().broker(id),
        }
    }
}

/// A publish app whose tenants live on the cluster and whose function
/// connects `via` the proxy or one broker.
async fn app_via(via: Via, options: AppOptions) -> PublishApp {
    PublishApp::spawn_with(AppOptions {
        pulsar: via.stack(),
        ..options
    })
    .await
}

/// Creates `persistent://{tenant A}/orders/{name}` with `partitions`
/// partitions and makes sure both brokers own some of them (moving one
/// partition's bundle when the load balancer put them all on one).
async fn spread_topic(app: &PublishApp, name: &str, partitions: u32) -> String {
    let topic = app.create_partitioned(name, partitions).await;
    let owners = owners(&topic, partitions).await;
    if owners.iter().all(|o| *o == owners[0]) {
        let last = format!("{topic}-partition-{}", partitions - 1);
        cluster().place(&last, owners[0].other()).await;
    }
    topic
}

/// Which broker owns each partition of `topic`.
async fn owners(topic: &str, partitions: u32) -> Vec<BrokerId> {
    let mut owners = Vec::new();
    for p in 0..partitions {
        owners.push(cluster().owner(&format!("{topic}-partition-{p}")).await);
    }
    owners
}

/// What the official client finds on `topic` through the proxy (see
/// [`kp_tests::witness::partitions`]).
async fn witness(topic: &str, count: usize) -> Vec<Value> {
    kp_tests::witness::partitions(&cluster().proxy, topic, count, &[]).await
}

/// The distinct values of `field` in `found`.
fn distinct(found: &[Value], field: &str) -> BTreeSet<String> {
    found.iter().map(|m| m[field].to_string()).collect()
}

/// The established TCP connections process `pid` holds, by remote port.
fn connections(pid: u32) -> BTreeMap<u16, usize> {
    let out = Command::new("ss")
        .args(["-Htnp", "state", "established"])
        .output()
        .expect("ss runs");
    let marker = format!("pid={pid},");
    let mut by_port = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        if !line.contains(&marker) {
            continue;
        }
        // Recv-Q Send-Q Local:Port Peer:Port Process
        let peer = line.split_whitespace().nth(3).unwrap_or_default();
        if let Some(port) = peer.rsplit(':').next().and_then(|p| p.parse().ok()) {
            *by_port.entry(port).or_insert(0) += 1;
        }
    }
    by_port
}
