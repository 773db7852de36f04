//! The functions against a real multi-broker cluster (`stack.sh
//! cluster-up`: two brokers, a bookie, ZooKeeper, a Pulsar proxy), shared
//! by every test here through `kp_tests::cluster()`: through each broker
//! directly (lookups redirect to the owner) and through the proxy;
//! partitioned topics spread over both brokers; and brokers killed or
//! paused under load (`faults`, which hold the cluster exclusively).
//!
//! What really landed is read back with the official Python client
//! (`tests/stack/partition_witness.py`), never with the crates under test.

mod faults;
mod publish;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::Duration;

use kp_tests::app::{AppOptions, PublishApp, kong_event};
use kp_tests::cluster::BrokerId;
use kp_tests::{Stack, cluster, workspace_root};
use serde_json::{Value, json};

/// A way into the cluster.
#[derive(Debug, Clone, Copy)]
enum Via {
    Proxy,
    Broker(BrokerId),
}

impl Via {
    const ALL: [Via; 3] = [
        Via::Proxy,
        Via::Broker(BrokerId::One),
        Via::Broker(BrokerId::Two),
    ];

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
    let topic = app.topic(&app.tenant_a, "orders", name);
    app.pulsar
        .admin()
        .put(
            &format!(
                "/admin/v2/persistent/{}/orders/{name}/partitions",
                app.tenant_a
            ),
            json!(partitions),
        )
        .await
        .unwrap();
    let mut owners = Vec::new();
    for p in 0..partitions {
        owners.push(cluster().owner(&format!("{topic}-partition-{p}")).await);
    }
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

/// Posts one JSON event with `key` to tenant A's `orders/{topic}`.
async fn publish(app: &PublishApp, topic: &str, key: &str, body: &str) -> kp_tests::app::Response {
    let bearer = format!("Bearer {}", app.token("alice", &["checkout"]));
    app.call(&kong_event(
        "POST",
        &app.orders_path(topic),
        &[
            ("authorization", &bearer),
            ("content-type", "application/json"),
            ("x-event-key", key),
        ],
        body.as_bytes(),
    ))
    .await
}

/// What the official client finds on `topic` through the proxy: one JSON
/// object per message (`partition`, `key`, `data`, `properties`,
/// `messageId`), expecting `count`.
async fn witness(topic: &str, count: usize) -> Vec<Value> {
    witness_with_keys(topic, count, &[]).await
}

/// [`witness`], after the witness produced one `witness:<key>` message per
/// key of `keys` itself, routed as the official clients' Murmur3_32Hash
/// scheme routes them (`count` includes them).
async fn witness_with_keys(topic: &str, count: usize, keys: &[String]) -> Vec<Value> {
    let root = workspace_root();
    let mut python = Command::new(root.join(".venv/bin/python"));
    python
        .arg(root.join("tests/stack/partition_witness.py"))
        .args([
            cluster().proxy.service_url.as_str(),
            "KP_READER",
            topic,
            &count.to_string(),
            "10",
        ])
        .env("KP_READER", cluster().proxy.superuser_token())
        .env("KP_WITNESS_KEYS", keys.join(","));
    let out = tokio::task::spawn_blocking(move || python.output().expect("run the witness"))
        .await
        .unwrap();
    let found: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("witness: {e}: {l}")))
        .collect();
    assert!(
        out.status.success(),
        "the witness read {} of {count} messages of {topic}: {}",
        found.len(),
        String::from_utf8_lossy(&out.stderr)
    );
    found
}

/// The distinct values of `field` in `found`.
fn distinct(found: &[Value], field: &str) -> BTreeSet<String> {
    found.iter().map(|m| m[field].to_string()).collect()
}

/// Waits up to `limit` for `check` to hold, polling every 200 ms.
async fn eventually<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let until = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < until {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
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
