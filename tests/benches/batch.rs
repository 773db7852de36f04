//! Batch throughput (issue 11): NDJSON requests of 1, 10, 100 and 500 events
//! (~200 B each) through `Publisher::handle` in-process, against a bare
//! pulsar-rs producer sending the same events pipelined (`send_non_blocking`
//! for every event, then every receipt awaited), on the same topic of the
//! running local stack, round by round in the same run. The publisher signs
//! (`provenance:` with a key set seeded by `KeySet::first`); for 500 events a
//! second, unsigned publisher on the same topic shows what signing costs.
//!
//! Per size: median wall time per request (receipts awaited: the 202 means
//! every event is persisted), events/s, the ratio handler / native, and
//! process CPU per event (current-thread runtime: the broker wait is idle).
//! Target: 500 events within 2× the native client.
//!
//! ```text
//! cargo bench -p kp-tests --bench batch [-- --quick] 2>&1 >/dev/null
//! ```
//!
//! Results go to stderr (stdout carries the handler's EMF lines). A missed
//! target prints MISS and does not fail the run. `cargo bench` builds with
//! `[profile.bench]` (release without cross-crate LTO); both arms are in
//! this binary.

use std::time::Instant;

use kong_pulsar::edge::publish::Publisher;
use kp_tests::bench::{
    CALLS_PER_TOKEN, Fixture, PAYLOAD, Stats, cpu_ns, human, lambda_event, nanos, progress, quick,
    target,
};
use pulsar::producer::ProducerOptions;
use pulsar::{Producer, TokioExecutor};
use serde_json::Value;

const SIZES: [usize; 4] = [1, 10, 100, 500];
const TARGET_500: f64 = 2.0;

/// Wall and process-CPU time of each request of one arm, nanoseconds.
#[derive(Default)]
struct Arm {
    wall: Vec<u64>,
    cpu: Vec<u64>,
}

impl Arm {
    fn push(&mut self, (wall, cpu): (u64, u64)) {
        self.wall.push(wall);
        self.cpu.push(cpu);
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let quick = quick();
    let rounds = if quick { 5 } else { 30 };
    let started = Instant::now();
    progress("setting up tenant, token secret, key set, issuer, publishers, native producer…");
    let fixture = Fixture::setup("batch").await;
    let signed = fixture.publisher(true).await;
    let unsigned = fixture.publisher(false).await;
    let broker = fixture.bare_broker().await;
    // pulsar-rs fails a send with `SlowDown` once 100 messages wait in the
    // connection's outbound channel, unless told to wait for room (the
    // publisher's own producers are built the same way).
    let mut native = broker
        .client()
        .producer()
        .with_topic(&fixture.topic)
        .with_options(ProducerOptions {
            block_queue_if_full: true,
            ..ProducerOptions::default()
        })
        .build()
        .await
        .expect("the native producer");

    eprintln!(
        "\nKong Pulsar batch benchmark: issue 11 ({} mode, {rounds} rounds per size)\n\
         NDJSON of N × {} B events through Publisher::handle (provenance on) vs a bare\n\
         pulsar-rs producer sending the same N payloads pipelined (send_non_blocking all,\n\
         then every receipt); same topic {}, same run, arms alternating per round;\n\
         tokio current-thread runtime.",
        if quick { "quick" } else { "full" },
        PAYLOAD.len(),
        fixture.topic,
    );

    let mut token = fixture.token();
    let mut calls = 0usize;
    let mut results = Vec::new();
    for &n in &SIZES {
        progress(&format!("{n} events: warm-up, then {rounds} rounds…"));
        let (mut handler, mut bare, mut plain) = (Arm::default(), Arm::default(), Arm::default());
        for round in 0..=rounds {
            if calls >= CALLS_PER_TOKEN {
                token = fixture.token();
                calls = 0;
            }
            calls += 3;
            let request = fixture.request(&token, Some(n));
            // Round 0 warms every arm (connections, producers, key set).
            let h = handle(&signed, &request).await;
            let b = pipelined(&mut native, n).await;
            let u = if n == 500 {
                Some(handle(&unsigned, &request).await)
            } else {
                None
            };
            if round > 0 {
                handler.push(h);
                bare.push(b);
                if let Some(u) = u {
                    plain.push(u);
                }
            }
        }
        results.push((n, handler, bare, plain));
    }

    eprintln!(
        "\n   {:>6} {:>26} {:>26} {:>8} {:>13} {:>13}",
        "events",
        "handler median (events/s)",
        "native median (events/s)",
        "ratio",
        "handler CPU/ev",
        "native CPU/ev"
    );
    for (n, handler, bare, plain) in &results {
        let row = |name: &str, arm: &Arm| {
            let h = Stats::of(&arm.wall);
            let b = Stats::of(&bare.wall);
            let ratio = h.p50 / b.p50;
            let per_s = |ns: f64| *n as f64 / (ns / 1e9);
            eprintln!(
                "   {:>6} {:>26} {:>26} {:>7.2}x {:>13} {:>13}{}",
                name,
                format!("{} ({:.0})", human(h.p50), per_s(h.p50)),
                format!("{} ({:.0})", human(b.p50), per_s(b.p50)),
                ratio,
                human(Stats::of(&arm.cpu).mean / *n as f64),
                human(Stats::of(&bare.cpu).mean / *n as f64),
                if *n == 500 {
                    format!("  {}", target(ratio, TARGET_500))
                } else {
                    String::new()
                }
            );
        };
        row(&n.to_string(), handler);
        if !plain.wall.is_empty() {
            row(&format!("{n} off"), plain);
            let (on, off) = (Stats::of(&handler.cpu).mean, Stats::of(&plain.cpu).mean);
            eprintln!(
                "   provenance at 500 events: {} CPU per event for signing ({:.1}% of the\n   \
                 signed handler's CPU); median wall {} signed vs {} unsigned",
                human((on - off) / *n as f64),
                100.0 * (on - off) / on,
                human(Stats::of(&handler.wall).p50),
                human(Stats::of(&plain.wall).p50),
            );
        }
    }
    eprintln!(
        "   (\"500 off\": the same requests through a publisher without provenance)\n   \
         ratio = handler median / native median; target (500 events, provenance on) ≤{TARGET_500:.1}x"
    );
    eprintln!(
        "\ndone in {:.1} s ({} mode)",
        started.elapsed().as_secs_f64(),
        if quick { "quick" } else { "full" }
    );
}

/// One request through the handler: (wall ns, process CPU ns).
async fn handle(publisher: &Publisher, request: &Value) -> (u64, u64) {
    let event = lambda_event(request);
    let cpu = cpu_ns();
    let t = Instant::now();
    let response = publisher.handle(event).await;
    let wall = nanos(t.elapsed());
    let cpu = cpu_ns() - cpu;
    assert_eq!(response.status_code, 202, "{}", response.body);
    (wall, cpu)
}

/// `n` payloads enqueued on the native producer, then every receipt
/// awaited: (wall ns, process CPU ns).
async fn pipelined(producer: &mut Producer<TokioExecutor>, n: usize) -> (u64, u64) {
    let cpu = cpu_ns();
    let t = Instant::now();
    let mut receipts = Vec::with_capacity(n);
    for _ in 0..n {
        receipts.push(
            producer
                .send_non_blocking(PAYLOAD.as_bytes().to_vec())
                .await
                .expect("enqueued"),
        );
    }
    for receipt in receipts {
        receipt.await.expect("persisted");
    }
    (nanos(t.elapsed()), cpu_ns() - cpu)
}
