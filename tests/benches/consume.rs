//! Read throughput (consume): pages of `max` = 1, 100 and 1000 events
//! (~200 B each, with the properties publish stamps) read from a backlog
//! published once at set-up, through `Reader::handle` in-process (Kong
//! `GET …/events/{tenant}/orders/order-created?after=<cursor>&max=N`,
//! bearer token from the fixture's issuer), against a bare pulsar-rs
//! non-durable reader doing the least such a read can: open at the same
//! position (batch size max + 1), take the same `max` messages, close. Same
//! topic of the running local stack, same run, round by round; the two arms
//! swap order every round, so neither always finds the entries in the
//! broker's cache the other just warmed. Both page forward from `earliest`
//! with the handler's cursor (the bare reader's last message is checked to
//! be that cursor), and start over at `earliest` before the backlog runs out.
//!
//! Per size: median wall time per request, events/s (`max` / median), the
//! ratio handler / native, and process CPU per event (current-thread
//! runtime: the broker wait is idle).
//!
//! Also, with no ratio and no target: durable Shared subscription reads
//! through the handler (`?subscription=bench-…&max=N`) for the same sizes,
//! each followed by a `POST …/acks` of what it returned. By design (one
//! permit per consumer, so a frozen instance holds at most two messages it
//! never returned) they take a broker round trip per message, so they are
//! not comparable with a cursor read of the same size.
//!
//! The reader runs without `provenance:`: every message's verdict is
//! `not_configured`, rendered but not verified. A signed deployment adds a
//! signature check per message on top of these figures. No target exists
//! for reads; the figures are ratios only.
//!
//! ```text
//! cargo bench -p kp-tests --bench consume [-- --quick] 2>&1 >/dev/null
//! ```
//!
//! Results go to stderr (stdout carries the handler's EMF lines). `cargo
//! bench` builds with `[profile.bench]` (release without cross-crate LTO);
//! both arms are in this binary.

use std::collections::HashMap;
use std::time::Instant;

use futures::StreamExt;
use kong_pulsar::edge::consume::Reader;
use kong_pulsar::pulsar::broker::MessageId;
use kp_tests::app::{kong_event, kong_get};
use kp_tests::bench::{
    CALLS_PER_TOKEN, Fixture, NAMESPACE, PAYLOAD, Stats, TOPIC, cpu_ns, human, lambda_event, nanos,
    progress, quick,
};
use pulsar::consumer::{ConsumerOptions, InitialPosition};
use pulsar::message::proto::MessageIdData;
use pulsar::producer::{Message, ProducerOptions};
use pulsar::{Pulsar, TokioExecutor};
use serde_json::{Value, json};

const SIZES: [usize; 3] = [1, 100, 1000];

/// Wall and process-CPU time of each request of one arm, nanoseconds, and
/// the events each returned.
#[derive(Default)]
struct Arm {
    wall: Vec<u64>,
    cpu: Vec<u64>,
    events: Vec<u64>,
}

impl Arm {
    fn push(&mut self, wall: u64, cpu: u64, events: usize) {
        self.wall.push(wall);
        self.cpu.push(cpu);
        self.events.push(events as u64);
    }

    /// Mean process CPU per event returned.
    fn cpu_per_event(&self) -> f64 {
        self.cpu.iter().sum::<u64>() as f64 / self.events.iter().sum::<u64>().max(1) as f64
    }
}

/// One size's results.
struct Size {
    max: usize,
    handler: Arm,
    native: Arm,
    read: Arm,
    ack: Arm,
}

/// Where the next round's cursor reads start: the handler's cursor, and
/// the same position for the bare reader.
struct Cursor {
    text: String,
    start: Option<MessageIdData>,
    /// Messages of the backlog before it.
    offset: usize,
}

impl Cursor {
    fn earliest() -> Self {
        Self {
            text: "earliest".to_owned(),
            start: None,
            offset: 0,
        }
    }
}

/// A subscription of the fixture's `bench-*`, and how much of the backlog
/// it has taken; a fresh one (made by its first read, at the oldest message)
/// takes over before it runs dry.
struct Subscription {
    name: String,
    taken: usize,
    fresh: bool,
}

impl Subscription {
    fn new(max: usize, generation: &mut usize) -> Self {
        *generation += 1;
        Self {
            name: format!("bench-{max}-{generation}"),
            taken: 0,
            fresh: true,
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let quick = quick();
    let (rounds, backlog) = if quick { (5, 5_000) } else { (30, 20_000) };
    let started = Instant::now();
    progress("setting up tenant, grants, token secret, issuer, reader, bare client…");
    let fixture = Fixture::setup("consume").await;
    let reader = fixture.reader().await;
    let broker = fixture.bare_broker().await;
    let client = broker.client();
    progress(&format!(
        "publishing the backlog: {backlog} events, pipelined…"
    ));
    let published = Instant::now();
    publish_backlog(client, &fixture, backlog).await;
    let published = published.elapsed();

    eprintln!(
        "\nKong Pulsar consume benchmark: read throughput ({} mode, {rounds} rounds per size)\n\
         Backlog of {backlog} × {} B events (key + the 7 kp-* properties publish stamps;\n\
         published in {:.1} s by a bare producer), topic {}.\n\
         Cursor reads of max N through Reader::handle vs a bare pulsar-rs reader (open at\n\
         the same position, batch size N+1, take N, close); arms swap order every round,\n\
         both page forward with the handler's cursor; tokio current-thread runtime.\n\
         Provenance OFF: every message's verdict is not_configured (rendered, not verified).",
        if quick { "quick" } else { "full" },
        PAYLOAD.len(),
        published.as_secs_f64(),
        fixture.topic,
    );

    let path = format!("/v1/events/{}/{NAMESPACE}/{TOPIC}", fixture.tenant);
    let mut token = fixture.token();
    let mut calls = 0usize;
    let mut generation = 0usize;
    let mut results = Vec::new();
    for &max in &SIZES {
        progress(&format!("max {max}: warm-up, then {rounds} rounds…"));
        let mut size = Size {
            max,
            handler: Arm::default(),
            native: Arm::default(),
            read: Arm::default(),
            ack: Arm::default(),
        };
        let mut cursor = Cursor::earliest();
        let mut subscription = Subscription::new(max, &mut generation);
        for round in 0..=rounds {
            if calls >= CALLS_PER_TOKEN {
                token = fixture.token();
                calls = 0;
            }
            calls += 3;
            if cursor.offset + max > backlog {
                cursor = Cursor::earliest();
            }
            // Round 0 warms every arm (connections, the tenant's client,
            // the verified-token cache).
            let request = kong_get(
                &path,
                &[("after", &cursor.text), ("max", &max.to_string())],
                &token,
            );
            let (h, n) = if round % 2 == 0 {
                let h = handler_read(&reader, &request, max).await;
                let n = native_read(client, &fixture.topic, cursor.start.clone(), max).await;
                (h, n)
            } else {
                let n = native_read(client, &fixture.topic, cursor.start.clone(), max).await;
                let h = handler_read(&reader, &request, max).await;
                (h, n)
            };
            assert_eq!(
                n.last.to_string(),
                h.cursor,
                "both arms read the same {max} messages"
            );

            // Keep a margin for the messages parked consumers hold.
            if subscription.taken + max + 200 > backlog {
                subscription = Subscription::new(max, &mut generation);
            }
            let (read, ack) = subscription_read(&reader, &path, &token, &subscription, max).await;
            subscription.taken += read.events;

            if round > 0 {
                size.handler.push(h.wall, h.cpu, max);
                size.native.push(n.wall, n.cpu, max);
                // The read that made its subscription also paid for that.
                if !subscription.fresh {
                    size.read.push(read.wall, read.cpu, read.events);
                    size.ack.push(ack.wall, ack.cpu, read.events);
                }
            }
            subscription.fresh = false;
            cursor = Cursor {
                start: Some(n.last.to_data()),
                text: h.cursor,
                offset: cursor.offset + max,
            };
        }
        results.push(size);
    }

    eprintln!(
        "\n  Cursor reads (GET ?after=<cursor>&max=N)\n   {:>5} {:>26} {:>26} {:>8} {:>14} {:>13}",
        "max",
        "handler median (events/s)",
        "native median (events/s)",
        "ratio",
        "handler CPU/ev",
        "native CPU/ev"
    );
    for size in &results {
        let (h, n) = (Stats::of(&size.handler.wall), Stats::of(&size.native.wall));
        let per_s = |ns: f64| size.max as f64 / (ns / 1e9);
        eprintln!(
            "   {:>5} {:>26} {:>26} {:>7.2}x {:>14} {:>13}",
            size.max,
            format!("{} ({:.0})", human(h.p50), per_s(h.p50)),
            format!("{} ({:.0})", human(n.p50), per_s(n.p50)),
            h.p50 / n.p50,
            human(size.handler.cpu_per_event()),
            human(size.native.cpu_per_event()),
        );
    }
    eprintln!(
        "   ratio = handler median / native median (no target); p90 handler/native: {}",
        results
            .iter()
            .map(|s| format!(
                "{} {}/{}",
                s.max,
                human(Stats::of(&s.handler.wall).p90),
                human(Stats::of(&s.native.wall).p90)
            ))
            .collect::<Vec<_>>()
            .join(", ")
    );

    eprintln!(
        "\n  Subscription reads (GET ?subscription=bench-…&max=N, then POST …/acks of what it\n  \
         returned): one permit per consumer, so one broker round trip per message by design;\n  \
         reported without a target or baseline\n   {:>5} {:>10} {:>14} {:>14} {:>12} {:>12} {:>12}",
        "max", "events/read", "read median", "ack median", "events/s", "read CPU/ev", "ack CPU/ev"
    );
    for size in &results {
        if size.read.wall.is_empty() {
            eprintln!("   {:>5} (no sample)", size.max);
            continue;
        }
        let events: u64 = size.read.events.iter().sum();
        let wall: u64 = size.read.wall.iter().chain(&size.ack.wall).sum();
        eprintln!(
            "   {:>5} {:>10.0} {:>14} {:>14} {:>12.0} {:>12} {:>12}",
            size.max,
            Stats::of(&size.read.events).p50,
            human(Stats::of(&size.read.wall).p50),
            human(Stats::of(&size.ack.wall).p50),
            events as f64 / (wall as f64 / 1e9),
            human(size.read.cpu_per_event()),
            human(size.ack.cpu_per_event()),
        );
    }
    eprintln!(
        "   events/s = events read / (read + ack wall time), over all rounds; the read that\n   \
         creates a subscription is not counted"
    );
    eprintln!(
        "\ndone in {:.1} s ({} mode)",
        started.elapsed().as_secs_f64(),
        if quick { "quick" } else { "full" }
    );
}

/// `n` copies of [`PAYLOAD`] with a key and the properties publish stamps
/// (what a read renders), enqueued on a bare producer, then every receipt
/// awaited.
async fn publish_backlog(client: &Pulsar<TokioExecutor>, fixture: &Fixture, n: usize) {
    // Without `block_queue_if_full`, pulsar-rs fails a send with `SlowDown`
    // once 100 messages wait in the connection's outbound channel.
    let mut producer = client
        .producer()
        .with_topic(&fixture.topic)
        .with_options(ProducerOptions {
            block_queue_if_full: true,
            ..ProducerOptions::default()
        })
        .build()
        .await
        .expect("the backlog producer");
    let now_ms = chrono::Utc::now().timestamp_millis() as u64;
    let mut receipts = Vec::with_capacity(n);
    for i in 0..n {
        let properties: HashMap<String, String> = [
            ("kp-event-id", uuid::Uuid::now_v7().to_string()),
            ("kp-source-id", "svc-checkout".to_owned()),
            ("kp-auth-method", "oidc".to_owned()),
            ("kp-issuer", fixture.issuer.issuer()),
            ("kp-tenant", fixture.tenant.clone()),
            ("kp-request-id", format!("bench-{i}")),
            ("kp-received-at", "2025-06-01T12:34:56.789Z".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let message = Message {
            payload: PAYLOAD.as_bytes().to_vec(),
            properties,
            partition_key: Some("ord-20250601-000123".to_owned()),
            event_time: Some(now_ms),
            ..Message::default()
        };
        receipts.push(producer.send_non_blocking(message).await.expect("enqueued"));
    }
    for receipt in receipts {
        receipt.await.expect("persisted");
    }
}

/// One handler request's cost and what it returned.
struct Handled {
    wall: u64,
    cpu: u64,
    cursor: String,
}

/// One cursor read through the handler; it must return `max` messages.
async fn handler_read(reader: &Reader, request: &Value, max: usize) -> Handled {
    let event = lambda_event(request);
    let cpu = cpu_ns();
    let t = Instant::now();
    let response = reader.handle(event).await;
    let wall = nanos(t.elapsed());
    let cpu = cpu_ns() - cpu;
    assert_eq!(response.status_code, 200, "{}", response.body);
    let page: Value = serde_json::from_str(&response.body).expect("a JSON page");
    let got = page["messages"].as_array().map_or(0, Vec::len);
    assert_eq!(got, max, "a full page from the backlog");
    Handled {
        wall,
        cpu,
        cursor: page["cursor"].as_str().expect("a cursor").to_owned(),
    }
}

/// One bare read's cost and the last message it took.
struct Native {
    wall: u64,
    cpu: u64,
    last: MessageId,
}

/// A bare non-durable reader at `start` (`None`: the earliest message),
/// `max` messages after it taken, the reader closed.
async fn native_read(
    client: &Pulsar<TokioExecutor>,
    topic: &str,
    start: Option<MessageIdData>,
    max: usize,
) -> Native {
    let after = start.as_ref().map(|s| (s.ledger_id, s.entry_id));
    let cpu = cpu_ns();
    let t = Instant::now();
    let mut reader = client
        .reader()
        .with_topic(topic)
        .with_subscription(format!("bench-native-{}", uuid::Uuid::new_v4().simple()))
        .with_batch_size(u32::try_from(max + 1).expect("a small max"))
        .with_options(ConsumerOptions {
            start_message_id: start,
            initial_position: InitialPosition::Earliest,
            durable: Some(false),
            ..ConsumerOptions::default()
        })
        .into_reader::<Vec<u8>>()
        .await
        .expect("the bare reader");
    let mut taken = 0;
    let mut last = None;
    while taken < max {
        let message = reader
            .next()
            .await
            .expect("the reader is open")
            .expect("a message");
        let id = message.message_id();
        // A reader starts at the position itself: it was read already.
        if after.is_some_and(|a| (id.ledger_id, id.entry_id) <= a) {
            continue;
        }
        last = Some(MessageId::from(id));
        taken += 1;
    }
    drop(reader);
    Native {
        wall: nanos(t.elapsed()),
        cpu: cpu_ns() - cpu,
        last: last.expect("max ≥ 1"),
    }
}

/// One request's cost (and events read, for the read).
struct Timed {
    wall: u64,
    cpu: u64,
    events: usize,
}

/// A subscription read through the handler, then the acknowledgement of
/// what it returned (none when it returned nothing).
async fn subscription_read(
    reader: &Reader,
    path: &str,
    token: &str,
    subscription: &Subscription,
    max: usize,
) -> (Timed, Timed) {
    let request = kong_get(
        path,
        &[
            ("subscription", &subscription.name),
            ("max", &max.to_string()),
        ],
        token,
    );
    let event = lambda_event(&request);
    let cpu = cpu_ns();
    let t = Instant::now();
    let response = reader.handle(event).await;
    let read_wall = nanos(t.elapsed());
    let read_cpu = cpu_ns() - cpu;
    assert_eq!(response.status_code, 200, "{}", response.body);
    let page: Value = serde_json::from_str(&response.body).expect("a JSON page");
    let ids: Vec<&str> = page["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["messageId"].as_str().expect("a message id"))
        .collect();
    let read = Timed {
        wall: read_wall,
        cpu: read_cpu,
        events: ids.len(),
    };
    if ids.is_empty() {
        return (
            read,
            Timed {
                wall: 0,
                cpu: 0,
                events: 0,
            },
        );
    }
    let body = json!({ "subscription": subscription.name, "messageIds": ids }).to_string();
    let bearer = format!("Bearer {token}");
    let request = kong_event(
        "POST",
        &format!("{path}/acks"),
        &[
            ("authorization", &bearer),
            ("content-type", "application/json"),
            ("content-length", &body.len().to_string()),
        ],
        body.as_bytes(),
    );
    let event = lambda_event(&request);
    let cpu = cpu_ns();
    let t = Instant::now();
    let response = reader.handle(event).await;
    let ack = Timed {
        wall: nanos(t.elapsed()),
        cpu: cpu_ns() - cpu,
        events: 0,
    };
    assert_eq!(response.status_code, 200, "{}", response.body);
    (read, ack)
}
