//! Pipelined NDJSON batches when not every line makes it: the per-line
//! results of the problem response must match what the broker really holds,
//! read back with a consumer.
//!
//! The broker refuses one line for real: the topic gets a topic-level
//! `maxMessageSize` policy (the stack runs with `topicLevelPoliciesEnabled`)
//! far below the function's own body limit, and the 3rd line is over it. The
//! broker answers that message alone with a send error and goes on
//! persisting the next ones on the same producer.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use kong_pulsar::pulsar::broker::{BrokerError, OutgoingMessage};
use kp_tests::app::{PublishApp, kong_event, properties};
use kp_tests::{stack, unique};
use lambda_runtime::{Context, LambdaEvent};
use pulsar::consumer::Message;
use serde_json::{Value, json};

/// The topic's `maxMessageSize` (payload and metadata together).
const LIMIT: usize = 4096;
const PROBE: &[u8] = b"probe:";

/// A fresh topic of tenant A whose messages may be at most [`LIMIT`] bytes,
/// once the broker enforces it (topic policies travel through a system
/// topic, so that is not at once). Returns the topic and how many probe
/// messages landed before the policy took hold.
async fn sized_topic(app: &PublishApp) -> (String, u64) {
    let name = unique("sized");
    let topic = app.topic(&app.tenant_a, "orders", &name);
    let path = format!("/admin/v2/persistent/{}/orders/{name}", app.tenant_a);
    let admin = stack().admin();
    admin.put(&path, json!({})).await.expect("create the topic");
    admin
        .post(&format!("{path}/maxMessageSize"), json!(LIMIT))
        .await
        .expect("set the topic's maxMessageSize");
    let broker = stack()
        .broker_as(stack().superuser_token())
        .await
        .expect("super-user client");
    let mut producer = broker.producer(&topic).await.expect("super-user producer");
    let mut landed = 0;
    let give_up = Instant::now() + Duration::from_secs(30);
    loop {
        let mut payload = PROBE.to_vec();
        payload.resize(2 * LIMIT, b'p');
        match producer
            .send(OutgoingMessage {
                payload,
                ..OutgoingMessage::default()
            })
            .await
        {
            Err(BrokerError::Rejected(_)) => return (topic, landed),
            Ok(_) => landed += 1,
            Err(e) => panic!("probing the size limit: {e:?}"),
        }
        assert!(
            Instant::now() < give_up,
            "the broker did not enforce maxMessageSize"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// An NDJSON body of `lines` events `{"n":i,"run":…}`, line `big` padded
/// past [`LIMIT`].
fn batch(run: &str, lines: usize, big: Option<usize>) -> String {
    (0..lines)
        .map(|n| {
            let mut event = json!({ "n": n, "run": run });
            if big == Some(n) {
                event["pad"] = "x".repeat(2 * LIMIT).into();
            }
            format!("{event}\n")
        })
        .collect()
}

fn request(app: &PublishApp, topic: &str, body: &str) -> Value {
    let name = topic.rsplit('/').next().unwrap();
    let token = app.token("svc-batch", &["checkout"]);
    kong_event(
        "POST",
        &format!("/events/{}/orders/{name}", app.tenant_a),
        &[
            ("authorization", &format!("Bearer {token}")),
            ("content-type", "application/x-ndjson"),
            ("idempotency-key", &unique("batch")),
        ],
        body.as_bytes(),
    )
}

/// What the broker holds of run `run`, by line: (message id, kp-event-id),
/// read until the topic has been quiet for `quiet`.
async fn landed(
    app: &PublishApp,
    topic: &str,
    run: &str,
    quiet: Duration,
) -> HashMap<u64, (String, String)> {
    let mut consumer = app.consumer(topic).await;
    let mut found = HashMap::new();
    let mut order = Vec::new();
    while let Ok(Some(msg)) = tokio::time::timeout(quiet, consumer.next()).await {
        let msg: Message<Vec<u8>> = msg.expect("message");
        consumer.ack(&msg).await.expect("ack");
        if msg.payload.data.starts_with(PROBE) {
            continue;
        }
        let event: Value = serde_json::from_slice(&msg.payload.data).expect("JSON event");
        if event["run"] != run {
            continue;
        }
        let n = event["n"].as_u64().unwrap();
        let id = &msg.message_id.id;
        let message_id = format!(
            "{}:{}:{}:{}",
            id.ledger_id,
            id.entry_id,
            id.partition.unwrap_or(-1),
            id.batch_index.unwrap_or(-1)
        );
        order.push(n);
        let previous = found.insert(n, (message_id, properties(&msg)["kp-event-id"].clone()));
        assert!(previous.is_none(), "line {n} was published twice");
    }
    let mut sorted = order.clone();
    sorted.sort();
    assert_eq!(order, sorted, "the broker holds the lines in order");
    found
}

#[tokio::test]
async fn a_batch_whose_third_event_the_broker_refuses_reports_per_line_what_the_broker_holds() {
    let app = PublishApp::spawn().await;
    let (topic, probes) = sized_topic(&app).await;
    let run = unique("run");

    let resp = app
        .call(&request(&app, &topic, &batch(&run, 5, Some(2))))
        .await;
    assert_eq!(
        (resp.status, resp.body["code"].as_str()),
        (422, Some("bad_request")),
        "{:?}",
        resp.body
    );
    assert_eq!(resp.headers["content-type"], "application/problem+json");
    let results = resp.body["results"].as_array().expect("results per line");
    assert_eq!(results.len(), 5, "{results:?}");
    for (i, result) in results.iter().enumerate() {
        assert_eq!(result["index"], i);
        assert!(result["eventId"].is_string(), "{result}");
        if i == 2 {
            assert_eq!(result["error"], "bad_request", "{result}");
            assert!(result.get("messageId").is_none(), "{result}");
        } else {
            assert!(result["messageId"].is_string(), "{result}");
            assert!(result.get("error").is_none(), "{result}");
        }
    }

    // Every receipt arrived before the answer: nothing more can land later.
    let held = landed(&app, &topic, &run, Duration::from_secs(2)).await;
    let mut lines: Vec<_> = held.keys().copied().collect();
    lines.sort();
    assert_eq!(
        lines,
        [0, 1, 3, 4],
        "the lines after the refused one were persisted too"
    );
    for (n, (message_id, event_id)) in &held {
        let result = &results[*n as usize];
        assert_eq!(result["messageId"], message_id.as_str(), "line {n}");
        assert_eq!(result["eventId"], event_id.as_str(), "line {n}");
    }
    assert_eq!(app.stored(&topic).await, probes + 4);
}

/// Epoch milliseconds `ahead` from now, as Lambda sets an invocation deadline.
fn deadline_in(ahead: Duration) -> u64 {
    (SystemTime::now().duration_since(UNIX_EPOCH).unwrap() + ahead).as_millis() as u64
}

#[tokio::test]
async fn a_batch_cut_off_by_the_deadline_is_a_504_that_claims_nothing_it_cannot_prove() {
    let app = PublishApp::spawn().await;
    let topic = app.topic(&app.tenant_a, "orders", &unique("deadline"));
    let publisher = Box::pin(app.in_process()).await;
    let mut context = Context::default();
    context.request_id = "warm".into();

    // Warm: client, producer, tenant token and JWKS cached.
    // Boxed: the handler's future is large in debug builds.
    let warm = Box::pin(publisher.handle(LambdaEvent::new(
        request(&app, &topic, &batch("warm-up", 1, None)),
        context.clone(),
    )))
    .await;
    assert_eq!(warm.status_code, 202, "{}", warm.body);

    // The function stops waiting 300 ms before its deadline: this leaves the
    // send no time at all, so no receipt can have arrived when it answers.
    let run = unique("run");
    context.deadline = deadline_in(Duration::from_millis(300));
    let resp = Box::pin(publisher.handle(LambdaEvent::new(
        request(&app, &topic, &batch(&run, 5, None)),
        context,
    )))
    .await;
    let body: Value = serde_json::from_str(&resp.body).unwrap();
    assert_eq!(
        (resp.status_code, body["code"].as_str()),
        (504, Some("timeout")),
        "{body}"
    );
    let results = body["results"].as_array().expect("results per line");
    assert_eq!(results.len(), 5, "{results:?}");

    let held = landed(&app, &topic, &run, Duration::from_secs(3)).await;
    for (n, result) in results.iter().enumerate() {
        let n = n as u64;
        match (result["messageId"].as_str(), result["error"].as_str()) {
            (Some(id), None) => assert_eq!(held[&n].0, id, "line {n} is where it was said to be"),
            // Never handed to the broker.
            (None, Some("timeout")) => assert!(
                !held.contains_key(&n),
                "line {n} said not persisted, but landed"
            ),
            // May be either; pulsar-rs goes on waiting for it after the answer.
            (None, Some("unknown")) => {}
            other => panic!("line {n}: {other:?} in {result}"),
        }
    }
    eprintln!(
        "cut off by the deadline: {:?}; landed afterwards: {:?}",
        results
            .iter()
            .map(|r| r.get("error").cloned().unwrap_or(json!("ok")))
            .collect::<Vec<_>>(),
        held.keys().collect::<Vec<_>>()
    );
}
