//! The soak run of issue 15 (not part of `make test`): steady publish load
//! through the Lambda Invoke API into a topic partitioned over both brokers
//! of the test cluster, through its proxy, while one broker is killed
//! (SIGKILL) and restarted every `interval`, the two taking turns. Prints,
//! per failover, how long each partition took to accept an event again, and
//! at the end what was acknowledged, what of that the official client could
//! not find (lost), and the failures by status and code.
//!
//!   tests/stack/stack.sh up && tests/stack/stack.sh cluster-up
//!   cargo build --workspace --bins && target/debug/soak [seconds] [interval-seconds]
//!
//! Defaults: 300 s, a kill every 60 s (the first 30 s in). It holds the
//! cluster exclusively, so cluster tests wait for it.

use std::time::{Duration, Instant};

use kp_tests::app::{AppOptions, PublishApp};
use kp_tests::cluster::BrokerId;
use kp_tests::load::{by_status, outage_per_partition, steady_load, tally};
use kp_tests::{cluster, unique};

const PARTITIONS: u32 = 4;
const WORKERS: usize = 4;

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1).map(|a| {
        a.parse::<u64>()
            .unwrap_or_else(|_| panic!("usage: soak [seconds] [interval-seconds]; got {a:?}"))
    });
    let length = Duration::from_secs(args.next().unwrap_or(300));
    let interval = Duration::from_secs(args.next().unwrap_or(60));
    let _lease = cluster().exclusive().await;
    let app = PublishApp::spawn_with(AppOptions {
        pulsar: &cluster().proxy,
        ..AppOptions::default()
    })
    .await;
    let name = unique("soak");
    let topic = app.create_partitioned(&name, PARTITIONS).await;
    eprintln!(
        "soak: {length:?} of load ({WORKERS} workers) into {topic} ({PARTITIONS} partitions) \
         through the proxy, a broker killed and restarted every {interval:?}"
    );

    let started = Instant::now();
    let mut kills = Vec::new();
    let faults = async {
        let mut victim = BrokerId::One;
        let mut next = interval / 2;
        while next + Duration::from_secs(15) < length {
            tokio::time::sleep(next.saturating_sub(started.elapsed())).await;
            let at = started.elapsed();
            cluster().signal(victim, "KILL");
            let back = cluster().restart(victim).await;
            eprintln!(
                "{at:>8.1?}: killed {victim:?}; restarted and the cluster whole in {back:.1?}"
            );
            kills.push((at, victim));
            victim = victim.other();
            next += interval;
        }
    };
    let outcomes = steady_load(&app, &name, PARTITIONS, WORKERS, length, faults).await;

    let tally = tally(&cluster().proxy, &topic, &outcomes).await;
    for (at, victim) in &kills {
        let outage = outage_per_partition(&outcomes, PARTITIONS, *at);
        let longest = outage.values().flatten().max();
        eprintln!(
            "failover at {at:.1?} ({victim:?} killed): longest outage {longest:.1?}, by partition {outage:.1?}"
        );
    }
    println!(
        "{} requests: {} acknowledged, {} of them lost, {} more found than acknowledged \
         (sent, answered 504, landed); answers by status and code: {:?}",
        outcomes.len(),
        tally.accepted,
        tally.lost.len(),
        tally.unanswered_landed,
        by_status(&outcomes)
    );
    if !tally.lost.is_empty() {
        std::process::exit(1);
    }
}
