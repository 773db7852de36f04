//! Steady publish load through a publish function, recording every answer:
//! what the cluster fault tests and the soak run (`src/bin/soak.rs`) measure
//! a broker failure with.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kong_pulsar::pulsar::broker::partition_for_key;

use crate::app::PublishApp;

/// One request of the load and what came of it.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// When it was sent, from the start of the load.
    pub at: Duration,
    pub took: Duration,
    /// The partition its key routes to.
    pub partition: u32,
    pub body: String,
    pub status: u16,
    /// The problem's `code`, for a refusal.
    pub code: Option<String>,
}

impl Outcome {
    /// Publishes `body` with `key` to tenant A's `orders/{topic}` and
    /// records the answer, `at` counted from `since`.
    pub async fn publish(
        app: &PublishApp,
        topic: &str,
        key: &str,
        body: String,
        partition: u32,
        since: Instant,
    ) -> Self {
        let at = since.elapsed();
        let resp = app.publish_keyed(topic, key, &body).await;
        Self {
            at,
            took: since.elapsed() - at,
            partition,
            body,
            status: resp.status,
            code: resp.body["code"].as_str().map(str::to_owned),
        }
    }
}

/// What the official client found of a load, against its answers.
#[derive(Debug)]
pub struct Tally {
    /// Events answered 202.
    pub accepted: usize,
    /// Of those, the ones not in the topic.
    pub lost: Vec<String>,
    /// Events in the topic that were not answered 202 (sent, answered
    /// `timeout`, persisted anyway).
    pub unanswered_landed: usize,
}

/// Reads everything `topic` holds through `via` with the official client
/// and compares it with `outcomes`.
pub async fn tally(via: &crate::Stack, topic: &str, outcomes: &[Outcome]) -> Tally {
    let accepted: BTreeSet<&str> = outcomes
        .iter()
        .filter(|o| o.status == 202)
        .map(|o| o.body.as_str())
        .collect();
    let found = crate::witness::everything_on(via, topic, accepted.len(), outcomes.len()).await;
    let found: BTreeSet<&str> = found.iter().filter_map(|m| m["data"].as_str()).collect();
    Tally {
        accepted: accepted.len(),
        lost: accepted
            .iter()
            .filter(|b| !found.contains(**b))
            .map(|b| (*b).to_owned())
            .collect(),
        unanswered_landed: found.difference(&accepted).count(),
    }
}

/// `workers` loops publishing keyed events (`{"worker":w,"n":n}`, key
/// `w{w}-{n}`) to tenant A's `orders/{topic}` of `partitions` partitions
/// for `length`, each request after the previous one's answer. `meanwhile`
/// runs alongside (the fault), and the load stops when both are done.
pub async fn steady_load<F: std::future::Future<Output = ()>>(
    app: &PublishApp,
    topic: &str,
    partitions: u32,
    workers: usize,
    length: Duration,
    meanwhile: F,
) -> Vec<Outcome> {
    let started = Instant::now();
    let outcomes = Arc::new(Mutex::new(Vec::new()));
    let loops = (0..workers).map(|w| {
        let outcomes = outcomes.clone();
        async move {
            let mut n = 0;
            while started.elapsed() < length {
                let key = format!("w{w}-{n}");
                let body = format!(r#"{{"worker":{w},"n":{n}}}"#);
                let partition = partition_for_key(&key, partitions);
                let outcome = Outcome::publish(app, topic, &key, body, partition, started).await;
                outcomes.lock().unwrap().push(outcome);
                n += 1;
            }
        }
    });
    tokio::join!(futures::future::join_all(loops), meanwhile);
    let mut all = outcomes.lock().unwrap().clone();
    all.sort_by_key(|o| o.at);
    all
}

/// How many answers had each status and problem code.
pub fn by_status(outcomes: &[Outcome]) -> BTreeMap<(u16, Option<String>), usize> {
    let mut counts = BTreeMap::new();
    for o in outcomes {
        *counts.entry((o.status, o.code.clone())).or_default() += 1;
    }
    counts
}

/// Per partition, from `from` until a request sent after it was accepted
/// (one sent before could have waited the outage through); `None` when none
/// was.
pub fn outage_per_partition(
    outcomes: &[Outcome],
    partitions: u32,
    from: Duration,
) -> BTreeMap<u32, Option<Duration>> {
    (0..partitions)
        .map(|p| {
            let back = outcomes
                .iter()
                .filter(|o| o.partition == p && o.status == 202 && o.at >= from)
                .map(|o| o.at + o.took - from)
                .min();
            (p, back)
        })
        .collect()
}
