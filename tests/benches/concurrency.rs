//! One instance, many requests (issue 11): K = 1, 4, 16, 64 single-event
//! requests in flight against one `Publisher` (shared through an `Arc`, on a
//! multi-thread tokio runtime), which is what Lambda's multi-concurrency mode
//! runs in one instance: concurrent `handle` calls sharing the producer pool,
//! the secret cache and the key set. The publisher signs (`provenance:`).
//!
//! Per K: events/s, p50 / p99 latency per request, and the scaling ratio
//! against K = 1. The same run measures a bare pulsar-rs producer with K
//! sends in flight (one producer, each send enqueued under a lock and its
//! receipt awaited outside it, as the publisher's pool does), which is how
//! far the broker and this machine go; where the handler's curve bends
//! before that one, the handler is the bottleneck. No target: the report
//! says where the knee is.
//!
//! ```text
//! cargo bench -p kp-tests --bench concurrency [-- --quick] 2>&1 >/dev/null
//! ```
//!
//! Results on stderr (stdout carries the handler's EMF lines).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use kong_pulsar::edge::publish::Publisher;
use kong_pulsar::pulsar::broker::{OutgoingMessage, Producer};
use kp_tests::bench::{
    Fixture, PAYLOAD, Stats, cpu_ns, human, lambda_event, nanos, progress, quick,
};
use serde_json::Value;
use tokio::sync::Mutex;

const LEVELS: [usize; 4] = [1, 4, 16, 64];

/// One level's outcome: latency per request (ns), the level's wall time and
/// the process CPU time it used (ns, every thread: handler, pulsar-rs
/// connection tasks, the test issuer).
struct Level {
    latency: Vec<u64>,
    wall: u64,
    cpu: u64,
}

impl Level {
    fn per_second(&self) -> f64 {
        self.latency.len() as f64 / (self.wall as f64 / 1e9)
    }

    /// CPU cores this process kept busy during the level.
    fn cores(&self) -> f64 {
        self.cpu as f64 / self.wall as f64
    }
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let quick = quick();
    let requests = if quick { 400 } else { 4_000 };
    let started = Instant::now();
    progress("setting up tenant, token secret, key set, issuer, publisher…");
    let fixture = Fixture::setup("conc").await;
    let publisher = Arc::new(fixture.publisher(true).await);
    let broker = fixture.bare_broker().await;
    let producer = Arc::new(Mutex::new(
        broker
            .producer(&fixture.topic)
            .await
            .expect("bare producer"),
    ));
    let workers = tokio::runtime::Handle::current().metrics().num_workers();
    eprintln!(
        "\nKong Pulsar concurrency benchmark: issue 11 ({} mode, {requests} requests per level)\n\
         One Publisher (provenance on) on a {workers}-worker tokio runtime, K single-event\n\
         requests in flight; a bare pulsar-rs producer with K sends in flight alongside;\n\
         {} logical CPUs, broker on the same machine; topic {}",
        if quick { "quick" } else { "full" },
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        fixture.topic,
    );

    let mut rows = Vec::new();
    for &k in &LEVELS {
        // A fresh token per level: test tokens live five minutes.
        let request = Arc::new(fixture.request(&fixture.token(), None));
        progress(&format!("K = {k}: warm-up, then {requests} requests…"));
        handler_level(&publisher, &request, k, k * 4).await;
        let handler = handler_level(&publisher, &request, k, requests).await;
        bare_level(&producer, k, k * 4).await;
        let bare = bare_level(&producer, k, requests).await;
        rows.push((k, handler, bare));
    }

    let base_h = rows[0].1.per_second();
    let base_b = rows[0].2.per_second();
    eprintln!(
        "\n   {:>3} {:>12} {:>8} {:>10} {:>10} {:>6}   {:>10} {:>8} {:>10} {:>6}",
        "K",
        "handler ev/s",
        "scaling",
        "p50",
        "p99",
        "cores",
        "bare ev/s",
        "scaling",
        "p50",
        "cores"
    );
    for (k, handler, bare) in &rows {
        let (h, b) = (Stats::of(&handler.latency), Stats::of(&bare.latency));
        eprintln!(
            "   {:>3} {:>12.0} {:>7.2}x {:>10} {:>10} {:>6.2}   {:>10.0} {:>7.2}x {:>10} {:>6.2}",
            k,
            handler.per_second(),
            handler.per_second() / base_h,
            human(h.p50),
            human(h.p99),
            handler.cores(),
            bare.per_second(),
            bare.per_second() / base_b,
            human(b.p50),
            bare.cores(),
        );
    }
    // The knee: the first level that adds less than 25% over the one before.
    let knee = rows
        .windows(2)
        .find(|w| w[1].1.per_second() < 1.25 * w[0].1.per_second())
        .map(|w| w[0].0);
    match knee {
        Some(k) => eprintln!(
            "   knee: K = {k} (the next level adds < 25% throughput; latency grows instead)"
        ),
        None => eprintln!("   knee: not reached by K = 64"),
    }
    eprintln!(
        "   scaling = events/s at K / events/s at K = 1; cores = this process's CPU time /\n   \
         wall time (the broker, on the same {} cores, is not counted); handler/bare at\n   \
         K = 64: {:.2}x throughput; handler CPU per event at K = 1: {}, at K = 64: {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        rows[3].1.per_second() / rows[3].2.per_second(),
        human(rows[0].1.cpu as f64 / rows[0].1.latency.len() as f64),
        human(rows[3].1.cpu as f64 / rows[3].1.latency.len() as f64),
    );
    eprintln!(
        "\ndone in {:.1} s ({} mode)",
        started.elapsed().as_secs_f64(),
        if quick { "quick" } else { "full" }
    );
}

/// `total` requests through the shared publisher, `k` at a time.
async fn handler_level(
    publisher: &Arc<Publisher>,
    request: &Arc<Value>,
    k: usize,
    total: usize,
) -> Level {
    let next = Arc::new(AtomicUsize::new(0));
    let (t, cpu) = (Instant::now(), cpu_ns());
    let tasks: Vec<_> = (0..k)
        .map(|_| {
            let (publisher, request, next) = (publisher.clone(), request.clone(), next.clone());
            tokio::spawn(async move {
                let mut latency = Vec::new();
                while next.fetch_add(1, Ordering::Relaxed) < total {
                    let event = lambda_event(&request);
                    let t = Instant::now();
                    let response = publisher.handle(event).await;
                    latency.push(nanos(t.elapsed()));
                    assert_eq!(response.status_code, 202, "{}", response.body);
                }
                latency
            })
        })
        .collect();
    collect(tasks, t, cpu).await
}

/// `total` bare sends, `k` in flight: each enqueued under the producer's
/// lock, its receipt awaited outside it.
async fn bare_level(producer: &Arc<Mutex<Producer>>, k: usize, total: usize) -> Level {
    let next = Arc::new(AtomicUsize::new(0));
    let (t, cpu) = (Instant::now(), cpu_ns());
    let tasks: Vec<_> = (0..k)
        .map(|_| {
            let (producer, next) = (producer.clone(), next.clone());
            tokio::spawn(async move {
                let mut latency = Vec::new();
                while next.fetch_add(1, Ordering::Relaxed) < total {
                    let t = Instant::now();
                    let receipt = producer
                        .lock()
                        .await
                        .enqueue(OutgoingMessage {
                            payload: PAYLOAD.as_bytes().to_vec(),
                            ..OutgoingMessage::default()
                        })
                        .await
                        .expect("enqueued");
                    receipt.await.expect("persisted");
                    latency.push(nanos(t.elapsed()));
                }
                latency
            })
        })
        .collect();
    collect(tasks, t, cpu).await
}

async fn collect(
    tasks: Vec<tokio::task::JoinHandle<Vec<u64>>>,
    started: Instant,
    cpu: u64,
) -> Level {
    let mut latency = Vec::new();
    for task in tasks {
        latency.extend(task.await.expect("a request task"));
    }
    Level {
        latency,
        wall: nanos(started.elapsed()),
        cpu: cpu_ns() - cpu,
    }
}
