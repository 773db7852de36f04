//! Reading through the gateway: the `consume` function served through the
//! Lambda Invoke API against the real broker, with events published through
//! the real `publish` function (and, for forgeries, straight to the broker).
//! Cursor reads, durable Shared subscriptions with their visibility timeout
//! (including an instance frozen with SIGSTOP), the policy's and the
//! broker's walls, provenance verdicts, and the response byte cap.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use kong_pulsar::pulsar::broker::OutgoingMessage;
use kp_tests::app::{
    AppOptions, ConsumeOptions, ProvenanceOptions, PublishApp, Response, kong_event, kong_get,
};
use kp_tests::lambda::Function;
use kp_tests::{stack, unique};
use serde_json::{Value, json};

/// Publishes `n` events `{"n": i}` (i from `from`) to tenant A's `orders/{topic}`
/// through the publish function, in NDJSON batches.
async fn publish_numbers(app: &PublishApp, topic: &str, from: usize, n: usize) {
    let mut i = from;
    while i < from + n {
        let end = (i + 50).min(from + n);
        let body: String = (i..end).map(|k| format!("{{\"n\":{k}}}\n")).collect();
        let r = app
            .post_as("alice", "checkout", topic, &[NDJSON], body.as_bytes())
            .await;
        assert_eq!(r.status, 202, "{:?}", r.body);
        i = end;
    }
}

const NDJSON: (&str, &str) = ("content-type", "application/x-ndjson");

fn path(app: &PublishApp, topic: &str) -> String {
    app.orders_path(topic)
}

async fn read(f: &Function, path: &str, query: &[(&str, &str)], token: &str) -> Response {
    f.call(&kong_get(path, query, token)).await
}

fn numbers(r: &Response) -> Vec<u64> {
    assert_eq!(r.status, 200, "{:?}", r.body);
    r.body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["data"]["n"].as_u64().expect("a JSON payload {\"n\": …}"))
        .collect()
}

fn ids(r: &Response) -> Vec<String> {
    r.body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["messageId"].as_str().unwrap().to_owned())
        .collect()
}

async fn ack(
    f: &Function,
    path: &str,
    token: &str,
    subscription: &str,
    ids: &[String],
) -> Response {
    let bearer = format!("Bearer {token}");
    f.call(&kong_event(
        "POST",
        &format!("{path}/acks"),
        &[
            ("authorization", &bearer),
            ("content-type", "application/json"),
        ],
        json!({ "subscription": subscription, "messageIds": ids })
            .to_string()
            .as_bytes(),
    ))
    .await
}

#[tokio::test]
async fn cursor_reads_page_through_a_thousand_events_in_order_without_gap_or_duplicate() {
    let app = PublishApp::spawn_with(AppOptions {
        max_batch: 500,
        ..AppOptions::default()
    })
    .await;
    let consume = app.consume_function(ConsumeOptions::default()).await;
    let topic = unique("pages");
    publish_numbers(&app, &topic, 0, 1000).await;
    let token = app.token("alice", &["checkout"]);

    let mut seen = Vec::new();
    let mut cursor = "earliest".to_owned();
    let mut pages = 0;
    loop {
        let r = read(
            &consume,
            &path(&app, &topic),
            &[("after", &cursor), ("max", "100")],
            &token,
        )
        .await;
        let page = numbers(&r);
        cursor = r.body["cursor"].as_str().unwrap().to_owned();
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 100);
        seen.extend(page);
        pages += 1;
        assert!(pages <= 20, "no end in sight");
    }
    assert_eq!(
        seen,
        (0..1000).collect::<Vec<u64>>(),
        "in order, no gap, no duplicate"
    );
    assert_eq!(pages, 10);
    // Each message says who published it and when.
    let r = read(&consume, &path(&app, &topic), &[("max", "1")], &token).await;
    let m = &r.body["messages"][0];
    assert_eq!(m["properties"]["kp-source-id"], "alice");
    assert_eq!(m["eventId"], m["properties"]["kp-event-id"]);
    assert!(m["publishTime"].as_str().unwrap().ends_with('Z'));
    assert_eq!(m["provenance"]["verified"], false, "this app signs nothing");
    assert_eq!(m["provenance"]["reason"], "not_configured");
}

#[tokio::test]
async fn latest_then_a_publish_then_a_read_returns_just_the_new_event() {
    let app = PublishApp::spawn().await;
    let consume = app.consume_function(ConsumeOptions::default()).await;
    let topic = unique("latest");
    let token = app.token("alice", &["checkout"]);
    // An empty topic: latest is "before anything".
    let r = read(
        &consume,
        &path(&app, &topic),
        &[("after", "latest")],
        &token,
    )
    .await;
    assert_eq!(numbers(&r), Vec::<u64>::new());
    publish_numbers(&app, &topic, 0, 3).await;
    let r = read(
        &consume,
        &path(&app, &topic),
        &[("after", "latest")],
        &token,
    )
    .await;
    assert_eq!(numbers(&r), Vec::<u64>::new());
    let cursor = r.body["cursor"].as_str().unwrap().to_owned();
    assert_ne!(cursor, "latest", "latest resolves to a position");
    publish_numbers(&app, &topic, 3, 1).await;
    let r = read(&consume, &path(&app, &topic), &[("after", &cursor)], &token).await;
    assert_eq!(numbers(&r), vec![3]);
    // And the position it returns continues from there.
    let cursor = r.body["cursor"].as_str().unwrap().to_owned();
    let r = read(&consume, &path(&app, &topic), &[("after", &cursor)], &token).await;
    assert_eq!(numbers(&r), Vec::<u64>::new());
    assert_eq!(r.body["cursor"], cursor);
}

#[tokio::test]
async fn a_long_poll_returns_as_soon_as_an_event_arrives() {
    let app = PublishApp::spawn().await;
    let consume = app.consume_function(ConsumeOptions::default()).await;
    let topic = unique("poll");
    publish_numbers(&app, &topic, 0, 1).await;
    let token = app.token("alice", &["checkout"]);
    let r = read(
        &consume,
        &path(&app, &topic),
        &[("after", "latest")],
        &token,
    )
    .await;
    let cursor = r.body["cursor"].as_str().unwrap().to_owned();

    let started = Instant::now();
    let p = path(&app, &topic);
    let query = [("after", cursor.as_str()), ("waitMs", "15000")];
    let poll = read(&consume, &p, &query, &token);
    let publish = async {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        publish_numbers(&app, &topic, 1, 1).await;
    };
    let (r, ()) = tokio::join!(poll, publish);
    let took = started.elapsed();
    assert_eq!(numbers(&r), vec![1]);
    assert!(
        took >= Duration::from_millis(1500),
        "answered before the event: {took:?}"
    );
    assert!(
        took < Duration::from_secs(6),
        "waited past the event: {took:?}"
    );

    // Nothing arrives: an empty page once waitMs is up.
    let cursor = r.body["cursor"].as_str().unwrap().to_owned();
    let started = Instant::now();
    let r = read(
        &consume,
        &path(&app, &topic),
        &[("after", &cursor), ("waitMs", "1000")],
        &token,
    )
    .await;
    assert_eq!(numbers(&r), Vec::<u64>::new());
    assert!(started.elapsed() >= Duration::from_millis(1000));
}

#[tokio::test]
async fn two_consumers_on_one_subscription_split_the_messages_and_acked_ones_never_return() {
    let app = PublishApp::spawn().await;
    let visibility = ConsumeOptions {
        visibility: "3s",
        ..ConsumeOptions::default()
    };
    let a = app.consume_function(visibility.clone()).await;
    let b = app.consume_function(visibility).await;
    let topic = unique("work");
    publish_numbers(&app, &topic, 0, 30).await;
    let token = app.token("alice", &["checkout"]);
    let p = path(&app, &topic);
    let sub = [("subscription", "checkout-workers"), ("max", "10")];

    let first = read(&a, &p, &sub, &token).await;
    let second = read(&b, &p, &sub, &token).await;
    let (x, y): (BTreeSet<u64>, BTreeSet<u64>) = (
        numbers(&first).into_iter().collect(),
        numbers(&second).into_iter().collect(),
    );
    assert_eq!((x.len(), y.len()), (10, 10), "{x:?} {y:?}");
    assert!(
        x.is_disjoint(&y),
        "both instances got {:?}",
        x.intersection(&y)
    );
    assert_eq!(first.body["subscription"], "checkout-workers");
    assert!(first.body.get("cursor").is_none());

    // Acknowledged through the *other* instance: the subscription's, not the
    // consumer's.
    for (reader, other) in [(&first, &b), (&second, &a)] {
        let r = ack(other, &p, &token, "checkout-workers", &ids(reader)).await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        assert_eq!(r.body["acknowledged"], 10);
    }
    // Past the visibility timeout, only the ten nobody acknowledged remain.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let mut rest = BTreeSet::new();
    let give_up = Instant::now() + Duration::from_secs(20);
    while rest.len() < 10 && Instant::now() < give_up {
        let r = read(
            &a,
            &p,
            &[
                ("subscription", "checkout-workers"),
                ("max", "10"),
                ("waitMs", "2000"),
            ],
            &token,
        )
        .await;
        let got = numbers(&r);
        let r2 = ack(&a, &p, &token, "checkout-workers", &ids(&r)).await;
        assert!(got.is_empty() || r2.status == 200, "{:?}", r2.body);
        rest.extend(got);
    }
    assert!(
        rest.is_disjoint(&x) && rest.is_disjoint(&y),
        "an acknowledged message came back: {rest:?}"
    );
    let all: BTreeSet<u64> = x.iter().chain(&y).chain(&rest).copied().collect();
    assert_eq!(all, (0..30).collect(), "nothing lost");
    tokio::time::sleep(Duration::from_secs(4)).await;
    let r = read(
        &b,
        &p,
        &[("subscription", "checkout-workers"), ("waitMs", "1500")],
        &token,
    )
    .await;
    assert_eq!(
        numbers(&r),
        Vec::<u64>::new(),
        "acknowledged messages never come back"
    );
}

#[tokio::test]
async fn an_unacknowledged_message_comes_back_after_the_visibility_timeout() {
    let app = PublishApp::spawn().await;
    let options = ConsumeOptions {
        visibility: "3s",
        ..ConsumeOptions::default()
    };
    let a = app.consume_function(options.clone()).await;
    let b = app.consume_function(options).await;
    let topic = unique("redeliver");
    publish_numbers(&app, &topic, 0, 1).await;
    let token = app.token("alice", &["checkout"]);
    let p = path(&app, &topic);
    let sub = |wait: &'static str| [("subscription", "checkout-retry"), ("waitMs", wait)];

    let taken = read(&a, &p, &sub("0"), &token).await;
    assert_eq!(numbers(&taken), vec![0]);
    let started = Instant::now();
    // Hidden while the timeout runs...
    let r = read(&b, &p, &sub("1000"), &token).await;
    assert_eq!(
        numbers(&r),
        Vec::<u64>::new(),
        "delivered twice within the timeout"
    );
    // ...and back after it.
    let r = read(&b, &p, &sub("10000"), &token).await;
    let back = started.elapsed();
    assert_eq!(ids(&r), ids(&taken), "the same message, redelivered");
    assert!(back >= Duration::from_secs(2), "back after {back:?}");
    assert!(back < Duration::from_secs(8), "back only after {back:?}");
}

#[tokio::test]
async fn a_frozen_instance_gives_its_messages_back_within_the_keepalive_bound() {
    let app = PublishApp::spawn().await;
    // A's timeout is far longer than the bound: what brings its messages
    // back is the broker dropping the frozen instance's connection. B's is
    // short: each of its reads may hold up to two messages it did not
    // return (the one-permit prefetch), and those must come back to its
    // next reads within the test.
    let a = app
        .consume_function(ConsumeOptions {
            visibility: "120s",
            ..ConsumeOptions::default()
        })
        .await;
    let b = app
        .consume_function(ConsumeOptions {
            visibility: "2s",
            ..ConsumeOptions::default()
        })
        .await;
    let topic = unique("frozen");
    publish_numbers(&app, &topic, 0, 5).await;
    let token = app.token("alice", &["checkout"]);
    let p = path(&app, &topic);
    let sub = [("subscription", "checkout-frozen"), ("max", "5")];
    let taken = read(&a, &p, &sub, &token).await;
    assert_eq!(numbers(&taken), vec![0, 1, 2, 3, 4]);

    let pid = a.pid().to_string();
    let signal = |sig: &str| {
        let status = std::process::Command::new("kill")
            .args([sig, &pid])
            .status()
            .unwrap();
        assert!(status.success(), "kill {sig} {pid}");
    };
    signal("-STOP");
    let frozen = Instant::now();
    let mut back = BTreeSet::new();
    while back.len() < 5 && frozen.elapsed() < Duration::from_secs(30) {
        let r = read(
            &b,
            &p,
            &[
                ("subscription", "checkout-frozen"),
                ("max", "5"),
                ("waitMs", "3000"),
            ],
            &token,
        )
        .await;
        back.extend(numbers(&r));
    }
    let took = frozen.elapsed();
    signal("-CONT");
    assert_eq!(
        back,
        (0..5).collect(),
        "the frozen instance kept its messages"
    );
    // The stack's broker runs keepAliveIntervalSeconds=5: dropped within 10 s.
    assert!(took < Duration::from_secs(15), "back only after {took:?}");
}

#[tokio::test]
async fn the_policy_and_the_broker_both_wall_off_other_tenants_and_subscriptions() {
    let app = PublishApp::spawn().await;
    let consume = app.consume_function(ConsumeOptions::default()).await;
    let topic = unique("walls");
    publish_numbers(&app, &topic, 0, 1).await;
    let checkout = app.token("alice", &["checkout"]);
    let billing = app.token("bob", &["billing"]);
    let a = path(&app, &topic);
    let b = format!("/events/{}/orders/{topic}", app.tenant_b);
    for (case, path, query, token, status) in [
        (
            "a caller of A reading B",
            b.as_str(),
            &[][..],
            checkout.as_str(),
            403,
        ),
        (
            "a caller of B reading A",
            a.as_str(),
            &[],
            billing.as_str(),
            403,
        ),
        (
            "another team's subscription",
            a.as_str(),
            &[("subscription", "billing-main")],
            &checkout,
            403,
        ),
        // The policy lets billing read B, but B's role has no consume grant.
        (
            "the broker refuses a role without consume",
            b.as_str(),
            &[],
            &billing,
            403,
        ),
        (
            "the broker refuses it for a subscription too",
            b.as_str(),
            &[("subscription", "any")],
            &billing,
            403,
        ),
        ("no credentials", a.as_str(), &[], "", 401),
        (
            "a forged token",
            a.as_str(),
            &[],
            "eyJhbGciOiJub25lIn0.e30.",
            401,
        ),
    ] {
        let r = read(&consume, path, query, token).await;
        assert_eq!(r.status, status, "{case}: {:?}", r.body);
        assert!(r.body.get("messages").is_none(), "{case}: {:?}", r.body);
    }
    // The broker's refusal is the same 403 as the policy's, and says nothing more.
    let r = read(&consume, &b, &[], &billing).await;
    assert_eq!(r.body["code"], "forbidden");
    // A subscription outside the caller's patterns cannot be acknowledged on either.
    let r = ack(
        &consume,
        &a,
        &checkout,
        "billing-main",
        &["1:0:-1:-1".into()],
    )
    .await;
    assert_eq!(r.status, 403, "{:?}", r.body);
}

#[tokio::test]
async fn hostile_reads_and_acknowledgements_are_refused_before_anything_is_read() {
    let app = PublishApp::spawn().await;
    let consume = app.consume_function(ConsumeOptions::default()).await;
    let topic = unique("hostile");
    publish_numbers(&app, &topic, 0, 3).await;
    let token = app.token("alice", &["checkout"]);
    let p = path(&app, &topic);
    let long = "9".repeat(5000);
    for (query, code) in [
        (&[("after", "not-a-cursor")][..], "invalid_cursor"),
        (&[("after", long.as_str())], "invalid_cursor"),
        (&[("after", "1:2:3")], "invalid_cursor"),
        (&[("max", "0")], "invalid_query"),
        (&[("max", "1000000")], "invalid_query"),
        (&[("waitMs", "-5")], "invalid_query"),
        (&[("waitMs", "3600000")], "invalid_query"),
        (&[("subscription", "checkout-a/b")], "invalid_subscription"),
        (&[("subscription", "__compaction")], "invalid_subscription"),
        (
            &[("subscription", "checkout-x"), ("after", "earliest")],
            "invalid_query",
        ),
        (&[("limit", "5")], "invalid_query"),
        (&[("provenance", "maybe")], "invalid_query"),
    ] {
        let r = read(&consume, &p, query, &token).await;
        assert_eq!(
            (r.status, r.body["code"].as_str()),
            (400, Some(code)),
            "{query:?}: {:?}",
            r.body
        );
    }
    // Paths: system topics and single partitions are not readable.
    for bad in ["__change_events", "x-partition-0"] {
        let r = read(&consume, &path(&app, bad), &[], &token).await;
        assert_eq!(r.body["code"], "reserved_name", "{bad}");
    }

    // Acknowledgements: malformed bodies, too many ids, a position the
    // topic does not hold yet (acknowledging it would skip a future message).
    let bearer = format!("Bearer {token}");
    let post = |body: Vec<u8>, content_type: &'static str| {
        kong_event(
            "POST",
            &format!("{p}/acks"),
            &[
                ("authorization", bearer.as_str()),
                ("content-type", content_type),
            ],
            &body,
        )
    };
    let too_many: Vec<String> = (0..1001).map(|i| format!("1:{i}:-1:-1")).collect();
    for (body, content_type, code) in [
        (b"{".to_vec(), "application/json", "invalid_json"),
        (b"[]".to_vec(), "application/json", "invalid_json"),
        (
            br#"{"subscription":"checkout-x"}"#.to_vec(),
            "application/json",
            "invalid_json",
        ),
        (
            br#"{"subscription":"checkout-x","messageIds":[],"extra":1}"#.to_vec(),
            "application/json",
            "invalid_json",
        ),
        (
            br#"{"subscription":"checkout-x","messageIds":[]}"#.to_vec(),
            "application/json",
            "invalid_message_id",
        ),
        (
            br#"{"subscription":"checkout-x","messageIds":["x"]}"#.to_vec(),
            "application/json",
            "invalid_message_id",
        ),
        (
            json!({"subscription":"checkout-x","messageIds":too_many})
                .to_string()
                .into_bytes(),
            "application/json",
            "invalid_message_id",
        ),
        (
            br#"{"subscription":"../x","messageIds":["1:0:-1:-1"]}"#.to_vec(),
            "application/json",
            "invalid_subscription",
        ),
        (
            br#"{"subscription":"checkout-x","messageIds":["1:0:-1:-1"]}"#.to_vec(),
            "text/plain",
            "unsupported_media_type",
        ),
        (
            br#"{"subscription":"checkout-x","messageIds":["999999999:0:-1:-1"]}"#.to_vec(),
            "application/json",
            "invalid_message_id",
        ),
    ] {
        let r = consume.call(&post(body.clone(), content_type)).await;
        assert_eq!(
            r.body["code"].as_str(),
            Some(code),
            "{}: {:?}",
            String::from_utf8_lossy(&body[..body.len().min(80)]),
            r.body
        );
        assert!((400..500).contains(&r.status));
    }
    // Nothing was acknowledged by any of that: the subscription still has all three.
    let r = read(
        &consume,
        &p,
        &[("subscription", "checkout-x"), ("waitMs", "2000")],
        &token,
    )
    .await;
    assert_eq!(numbers(&r), vec![0, 1, 2]);
    assert!(
        !consume.logs().contains(&token),
        "a bearer token reached the logs"
    );
}

#[tokio::test]
async fn provenance_is_judged_per_message_and_forgeries_can_be_dropped() {
    let app = PublishApp::spawn_with(AppOptions {
        provenance: Some(ProvenanceOptions::default()),
        ..AppOptions::default()
    })
    .await;
    let consume = app.consume_function(ConsumeOptions::default()).await;
    let topic = unique("signed");
    publish_numbers(&app, &topic, 0, 1).await;
    // A forgery straight to the broker with the tenant's token: every kp-*
    // property claims a verified caller, and there is no valid signature.
    let broker = stack().broker_as(stack().superuser_token()).await.unwrap();
    let mut producer = broker
        .producer(&app.topic(&app.tenant_a, "orders", &topic))
        .await
        .unwrap();
    let forged = [
        ("kp-source-id", "alice"),
        ("kp-auth-method", "oidc"),
        ("kp-event-id", "forged-1"),
    ];
    producer
        .send(OutgoingMessage {
            payload: br#"{"n":1}"#.to_vec(),
            properties: forged
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..OutgoingMessage::default()
        })
        .await
        .unwrap();
    publish_numbers(&app, &topic, 2, 1).await;
    let token = app.token("alice", &["checkout"]);
    let p = path(&app, &topic);

    let r = read(&consume, &p, &[], &token).await;
    let verdicts: Vec<&Value> = r.body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| &m["provenance"])
        .collect();
    assert_eq!(verdicts.len(), 3, "{:?}", r.body);
    assert_eq!(verdicts[0]["verified"], true, "{:?}", verdicts[0]);
    assert_eq!(verdicts[0]["identity"]["sourceId"], "alice");
    assert_eq!(verdicts[0]["identity"]["authMethod"], "oidc");
    assert_eq!(
        verdicts[0]["identity"]["issuer"],
        app.provenance_issuer.as_str()
    );
    assert_eq!(verdicts[1]["verified"], false);
    assert_eq!(verdicts[1]["reason"], "no_signature");
    assert!(verdicts[1].get("identity").is_none());
    assert_eq!(verdicts[2]["verified"], true);

    // With provenance=required the forgery is dropped, listed, and the
    // cursor still moves past it.
    let r = read(&consume, &p, &[("provenance", "required")], &token).await;
    assert_eq!(numbers(&r), vec![0, 2]);
    let dropped = r.body["dropped"].as_array().unwrap();
    assert_eq!(dropped.len(), 1);
    assert_eq!(dropped[0]["reason"], "no_signature");
    let cursor = r.body["cursor"].as_str().unwrap().to_owned();
    let r = read(
        &consume,
        &p,
        &[("provenance", "required"), ("after", &cursor)],
        &token,
    )
    .await;
    assert_eq!(numbers(&r), Vec::<u64>::new());
}

#[tokio::test]
async fn pages_stop_below_the_byte_cap_and_the_cursor_picks_up_the_rest() {
    let app = PublishApp::spawn().await;
    let consume = app
        .consume_function(ConsumeOptions {
            max_response_bytes: Some(8 * 1024),
            ..ConsumeOptions::default()
        })
        .await;
    let topic = unique("capped");
    let token = app.token("alice", &["checkout"]);
    let p = path(&app, &topic);
    // 20 events of ~1 KiB, then one of 20 KiB (larger than any page).
    let mut body = String::new();
    for i in 0..20 {
        body.push_str(&json!({ "n": i, "pad": "x".repeat(1000) }).to_string());
        body.push('\n');
    }
    body.push_str(&json!({ "n": 20, "pad": "y".repeat(20_000) }).to_string());
    body.push('\n');
    let r = app
        .post_as("alice", "checkout", &topic, &[NDJSON], body.as_bytes())
        .await;
    assert_eq!(r.status, 202, "{:?}", r.body);

    let mut seen = Vec::new();
    let mut omitted = Vec::new();
    let mut cursor = "earliest".to_owned();
    for _ in 0..30 {
        let r = read(&consume, &p, &[("after", &cursor)], &token).await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        let text = serde_json::to_string(&r.body).unwrap();
        assert!(text.len() <= 8 * 1024, "a page of {} bytes", text.len());
        let messages = r.body["messages"].as_array().unwrap().clone();
        if messages.is_empty() {
            break;
        }
        assert!(messages.len() < 20, "the cap did not cut the page");
        for m in messages {
            match m.get("data") {
                Some(data) => seen.push(data["n"].as_u64().unwrap()),
                None => {
                    assert_eq!(m["dataOmitted"], "too_large");
                    omitted.push(m["size"].as_u64().unwrap());
                }
            }
        }
        cursor = r.body["cursor"].as_str().unwrap().to_owned();
    }
    assert_eq!(seen, (0..20).collect::<Vec<u64>>());
    assert_eq!(
        omitted.len(),
        1,
        "the oversized event is listed, without its payload"
    );
    assert!(omitted[0] > 20_000);
}

/// `event` (any payload shape) with its query replaced by `query`.
fn with_query(mut event: Value, query: &[(&str, &str)]) -> Value {
    let map: serde_json::Map<String, Value> = query
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect();
    let raw: Vec<String> = query.iter().map(|(k, v)| format!("{k}={v}")).collect();
    if let Some(uri) = event["request_uri"].as_str() {
        let path = uri.split('?').next().unwrap().to_owned();
        event["request_uri"] = json!(format!("{path}?{}", raw.join("&")));
        event["request_uri_args"] = map.into();
    } else if event.get("rawQueryString").is_some() {
        event["rawQueryString"] = json!(raw.join("&"));
        event["queryStringParameters"] = map.into();
    } else {
        event["multiValueQueryStringParameters"] = query
            .iter()
            .map(|(k, v)| (k.to_string(), json!([v])))
            .collect::<serde_json::Map<_, _>>()
            .into();
        event["queryStringParameters"] = map.into();
    }
    event
}

#[tokio::test]
async fn every_payload_shape_and_shipped_sample_reads_through_the_function() {
    use kp_tests::app::sample_event;
    let app = PublishApp::spawn().await;
    let consume = app.consume_function(ConsumeOptions::default()).await;
    let token = app.token("alice", &["checkout"]);
    let bearer = format!("Bearer {token}");
    let topic = format!("/events/{}/orders/order-created", app.tenant_a);
    // Four: a subscription read may hold two more than it returns.
    for i in 0..4 {
        let r = app
            .call(&kong_event(
                "POST",
                &topic,
                &[
                    ("authorization", &bearer),
                    ("content-type", "application/json"),
                ],
                json!({ "orderId": format!("shape-{i}") })
                    .to_string()
                    .as_bytes(),
            ))
            .await;
        assert_eq!(r.status, 202, "{:?}", r.body);
    }
    let sample = |name| sample_event(name, &app.tenant_a, &token);
    let mut ids = Vec::new();
    for (name, query) in [
        (
            "consume-kong-cursor.json",
            &[("after", "earliest"), ("max", "10")][..],
        ),
        (
            "consume-apigw-v1-cursor.json",
            &[("after", "earliest"), ("max", "10")],
        ),
        (
            "consume-kong-subscription.json",
            &[("subscription", "checkout-shapes"), ("max", "1")],
        ),
        (
            "consume-http-v2-subscription.json",
            &[("subscription", "checkout-shapes"), ("max", "1")],
        ),
    ] {
        let r = consume.call(&with_query(sample(name), query)).await;
        assert_eq!(r.status, 200, "{name}: {:?}", r.body);
        let got: Vec<&str> = r.body["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["data"]["orderId"].as_str().unwrap())
            .collect();
        if name.contains("cursor") {
            assert_eq!(got, ["shape-0", "shape-1", "shape-2", "shape-3"], "{name}");
        } else {
            assert_eq!(got.len(), 1, "{name}");
            ids.extend(
                r.body["messages"][0]["messageId"]
                    .as_str()
                    .map(String::from),
            );
        }
    }
    assert_ne!(
        ids[0], ids[1],
        "the two subscription reads shared the messages"
    );
    let mut acks = sample("consume-kong-acks.json");
    let body = json!({ "subscription": "checkout-shapes", "messageIds": ids }).to_string();
    acks["request_body"] = json!(body);
    acks["request_headers"]["content-length"] = json!(body.len().to_string());
    let r = consume.call(&acks).await;
    assert_eq!(
        (r.status, &r.body["acknowledged"]),
        (200, &json!(2)),
        "{:?}",
        r.body
    );
}

#[tokio::test]
async fn a_broker_that_cannot_be_reached_is_a_503_with_retry_after() {
    let app = PublishApp::spawn().await;
    let consume = Function::start(
        "consume",
        &app.env_with(&[(
            "PULSAR_SERVICE_URL",
            format!("pulsar://127.0.0.1:{}", kp_tests::free_port()),
        )]),
    );
    let token = app.token("alice", &["checkout"]);
    for query in [&[][..], &[("subscription", "checkout-down")]] {
        let r = read(&consume, &path(&app, "down"), query, &token).await;
        assert_eq!(
            (r.status, r.body["code"].as_str()),
            (503, Some("broker_unavailable")),
            "{:?}",
            r.body
        );
        assert_eq!(r.headers["retry-after"], "1");
    }
}
