//! CloudEvents out of the consume routes, through the Lambda Invoke API
//! against the real broker: plain events published through the real
//! `publish` function, and CloudEvent-shaped messages (`ce_*` properties,
//! as the publish side stores a CloudEvent) produced straight to the broker,
//! read back with `Accept: application/cloudevents-batch+json`. What we
//! render is judged twice: by these assertions, and by the Python witness
//! (`tests/stack/cloudevents_witness.py`: the CloudEvents SDK and the spec's
//! batch and naming rules), whose reading must match ours.

use std::collections::HashMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use kong_pulsar::pulsar::broker::OutgoingMessage;
use kp_tests::app::{
    AppOptions, ConsumeOptions, ProvenanceOptions, PublishApp, kong_event, kong_get,
};
use kp_tests::lambda::{Function, temp_file};
use kp_tests::{stack, unique};
use serde_json::{Value, json};

const BATCH: &str = "application/cloudevents-batch+json";

/// What the function answered, with the body as the text it sent.
struct Raw {
    status: u16,
    headers: Value,
    text: String,
}

impl Raw {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("{e}: {}", self.text))
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers[name].as_str()
    }
}

/// A read of `path` with `query`, as bearer `token`, with these `Accept`
/// headers (none when empty).
async fn read(
    f: &Function,
    path: &str,
    query: &[(&str, &str)],
    token: &str,
    accept: &[&str],
) -> Raw {
    let mut event = kong_get(path, query, token);
    if let Some(a) = accept.first() {
        // Kong hands a repeated header over as a list.
        event["request_headers"]["accept"] = if accept.len() == 1 {
            json!(a)
        } else {
            json!(accept)
        };
    }
    let (invoke_status, out) = f.invoke(&event).await;
    assert_eq!(invoke_status, 200, "the function crashed: {out}");
    Raw {
        status: out["statusCode"].as_u64().unwrap() as u16,
        headers: out["headers"].clone(),
        text: out["body"].as_str().unwrap_or_default().to_owned(),
    }
}

fn path(app: &PublishApp, topic: &str) -> String {
    app.orders_path(topic)
}

/// Produces `payload` with `properties` straight to the broker, as the
/// super-user: what a producer outside the gateway can write.
async fn produce(topic: &str, payload: &[u8], key: Option<&str>, properties: &[(&str, &str)]) {
    let broker = stack().broker_as(stack().superuser_token()).await.unwrap();
    let mut producer = broker.producer(topic).await.unwrap();
    producer
        .send(OutgoingMessage {
            payload: payload.to_vec(),
            key: key.map(String::from),
            event_time_ms: None,
            properties: properties
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<HashMap<_, _>>(),
        })
        .await
        .unwrap();
}

/// The witness's reading of `body`: exit status and one line per event.
async fn witness(body: &str, content_type: &str) -> (Option<i32>, Vec<Value>, String) {
    let file = temp_file("ce-witness", "batch.json", body);
    let root = kp_tests::workspace_root();
    let mut python = std::process::Command::new(root.join(".venv/bin/python"));
    python
        .arg(root.join("tests/stack/cloudevents_witness.py"))
        .arg(&file)
        .arg(content_type);
    let out =
        tokio::task::spawn_blocking(move || python.output().expect("run cloudevents_witness.py"))
            .await
            .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("witness: {e}: {l}")))
        .collect();
    (
        out.status.code(),
        lines,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Our event's attributes: every member but the format's data members.
fn attributes(event: &Value) -> Value {
    let mut a = event.as_object().unwrap().clone();
    a.remove("data");
    a.remove("data_base64");
    Value::Object(a)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloudevents_are_rebuilt_plain_events_wrapped_and_the_sdk_reads_them_alike() {
    let app = PublishApp::spawn_with(AppOptions {
        provenance: Some(ProvenanceOptions::default()),
        ..AppOptions::default()
    })
    .await;
    let consume = app.consume_function(ConsumeOptions::default()).await;
    let topic = unique("ce-out");
    let full = app.topic(&app.tenant_a, "orders", &topic);
    let token = app.token("alice", &["checkout"]);
    let bearer = format!("Bearer {token}");

    // 0: a plain event through the gateway (signed).
    let r = app
        .call(&kong_event(
            "POST",
            &path(&app, &topic),
            &[
                ("authorization", &bearer),
                ("content-type", "application/json"),
                ("x-event-key", "order-1001"),
                ("x-event-time", "2026-12-02T10:00:00.250Z"),
                ("x-event-property-region", "eu-west-1"),
            ],
            br#"{"orderId":"1001","total": 1.50}"#,
        ))
        .await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    let event_id = r.body["eventId"].as_str().unwrap().to_owned();
    // 1: a CloudEvent as the publish side stores it, but produced by someone
    // else, who also claims our attributes.
    produce(
        &full,
        br#"{"appinfoA":"abc","appinfoB":123}"#,
        Some("order-7"),
        &[
            ("ce_specversion", "1.0"),
            ("ce_id", "C234-1234-1234"),
            ("ce_source", "https://example.com/orders"),
            ("ce_type", "com.example.order.created"),
            ("ce_subject", "order-7"),
            ("ce_time", "2018-04-05T17:31:00Z"),
            ("ce_datacontenttype", "application/json"),
            ("ce_comexampleextension1", "value"),
            ("ce_partitionkey", "order-7"),
            ("ce_kpsourceid", "mallory"),
            ("ce_kpprovenance", "verified"),
            ("ce_Bad-Name", "x"),
            ("kp-source-id", "alice"),
            ("kp-event-id", "forged-1"),
        ],
    )
    .await;
    // 2: a binary CloudEvent.
    produce(
        &full,
        b"\x00\x01\x02\xff",
        None,
        &[
            ("ce_specversion", "1.0"),
            ("ce_id", "B234"),
            ("ce_source", "/sensors/1"),
            ("ce_type", "com.example.reading"),
            ("ce_datacontenttype", "application/octet-stream"),
        ],
    )
    .await;
    // 3: a ce_* set that is no CloudEvent 1.0.
    produce(
        &full,
        b"{}",
        None,
        &[
            ("ce_specversion", "0.3"),
            ("ce_id", "old"),
            ("ce_source", "/x"),
            ("ce_type", "t"),
        ],
    )
    .await;

    let r = read(&consume, &path(&app, &topic), &[], &token, &[BATCH]).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.header("content-type"), Some(BATCH));
    assert_eq!(r.header("vary"), Some("accept"));
    let cursor = r.header("kp-cursor").expect("a cursor header").to_owned();
    let events = r.json();
    let events = events.as_array().expect("a bare array");
    assert_eq!(events.len(), 4, "{}", r.text);

    let plain = &events[0];
    for (name, value) in [
        ("specversion", json!("1.0")),
        ("id", json!(event_id)),
        ("source", json!(full)),
        ("type", json!("kong-pulsar.event")),
        ("time", json!("2026-12-02T10:00:00.250Z")),
        ("datacontenttype", json!("application/json")),
        ("data", json!({"orderId": "1001", "total": 1.50})),
        ("partitionkey", json!("order-1001")),
        ("region", json!("eu-west-1")),
        ("kpsynthesized", json!(true)),
        ("kpeventid", json!(event_id)),
        ("kpsourceid", json!("alice")),
        ("kpservicetag", json!("kp-test-client")),
        ("kpauthmethod", json!("oidc")),
        ("kptenant", json!(app.tenant_a)),
        ("kpprovenance", json!("verified")),
    ] {
        assert_eq!(plain[name], value, "{name}: {plain}");
    }
    assert!(plain["traceparent"].as_str().unwrap().starts_with("00-"));
    assert!(plain.get("kpprovenancereason").is_none());
    assert!(
        r.text
            .contains(r#""data":{"orderId":"1001","total": 1.50}"#),
        "JSON data byte for byte: {}",
        r.text
    );

    let rebuilt = &events[1];
    for (name, value) in [
        ("id", json!("C234-1234-1234")),
        ("source", json!("https://example.com/orders")),
        ("type", json!("com.example.order.created")),
        ("subject", json!("order-7")),
        ("time", json!("2018-04-05T17:31:00Z")),
        ("comexampleextension1", json!("value")),
        ("partitionkey", json!("order-7")),
        ("data", json!({"appinfoA": "abc", "appinfoB": 123})),
        // Forged: shown as the properties say, and judged unverified.
        ("kpsourceid", json!("alice")),
        ("kpeventid", json!("forged-1")),
        ("kpprovenance", json!("unverified")),
        ("kpprovenancereason", json!("no_signature")),
    ] {
        assert_eq!(rebuilt[name], value, "{name}: {rebuilt}");
    }
    assert!(rebuilt.get("kpsynthesized").is_none());
    assert!(
        !r.text.contains("mallory") && !r.text.contains("Bad-Name"),
        "a ce_kp* or malformed property became an attribute: {}",
        r.text
    );

    let binary = &events[2];
    assert_eq!(binary["datacontenttype"], "application/octet-stream");
    assert_eq!(binary["data_base64"], STANDARD.encode(b"\x00\x01\x02\xff"));
    assert!(binary.get("data").is_none());
    assert!(binary.get("time").is_none(), "the event had no time");

    let invalid = &events[3];
    assert_eq!(invalid["kpceinvalid"], "ce_specversion is not 1.0");
    assert_eq!(invalid["type"], "kong-pulsar.event");
    assert_eq!(invalid["source"], json!(full));

    // Each event names its message, for cursors and acknowledgements.
    let ids: Vec<&str> = events
        .iter()
        .map(|e| e["kpmessageid"].as_str().unwrap())
        .collect();
    assert_eq!(cursor, ids[3]);

    // The witness reads the same batch the same way.
    let (status, lines, stderr) = witness(&r.text, r.header("content-type").unwrap()).await;
    assert_eq!(status, Some(0), "the witness objected: {stderr}");
    assert_eq!(lines.len(), 4, "{stderr}");
    for (ours, theirs) in events.iter().zip(&lines) {
        assert_eq!(theirs["attributes"], attributes(ours), "{stderr}");
        match (ours.get("data"), ours.get("data_base64")) {
            (Some(data), None) => assert_eq!(&theirs["data"], data),
            (None, Some(b64)) => assert_eq!(&theirs["dataBase64"], b64),
            other => panic!("{other:?}"),
        }
    }
    // The SDK fills in a missing time; nothing else was missing.
    assert_eq!(lines[2]["addedBySdk"], json!(["time"]));
    assert!(lines[0].get("addedBySdk").is_none());

    // The cursor header continues where the batch ended.
    let r = read(
        &consume,
        &path(&app, &topic),
        &[("after", &cursor)],
        &token,
        &[BATCH],
    )
    .await;
    assert_eq!((r.status, r.text.as_str()), (200, "[]"));
    assert_eq!(r.header("kp-cursor"), Some(cursor.as_str()));
    let (status, lines, stderr) = witness(&r.text, BATCH).await;
    assert_eq!((status, lines.len()), (Some(0), 0), "{stderr}");

    // provenance=required drops the three unsigned ones and counts them.
    let r = read(
        &consume,
        &path(&app, &topic),
        &[("provenance", "required")],
        &token,
        &[BATCH],
    )
    .await;
    let events = r.json();
    assert_eq!(events.as_array().unwrap().len(), 1, "{}", r.text);
    assert_eq!(events[0]["kpprovenance"], "verified");
    assert_eq!(r.header("kp-dropped"), Some("3"));
    assert_eq!(r.header("kp-cursor"), Some(cursor.as_str()));
}

#[tokio::test]
async fn accept_chooses_the_page_the_batch_or_a_406() {
    let app = PublishApp::spawn().await;
    let consume = app.consume_function(ConsumeOptions::default()).await;
    let topic = unique("ce-accept");
    let token = app.token("alice", &["checkout"]);
    let bearer = format!("Bearer {token}");
    for i in 0..3 {
        let r = app
            .call(&kong_event(
                "POST",
                &path(&app, &topic),
                &[
                    ("authorization", &bearer),
                    ("content-type", "application/json"),
                ],
                json!({ "n": i }).to_string().as_bytes(),
            ))
            .await;
        assert_eq!(r.status, 202, "{:?}", r.body);
    }
    let p = path(&app, &topic);
    for (accept, expected) in [
        (&[][..], "application/json"),
        (&["application/json"], "application/json"),
        (&["*/*"], "application/json"),
        (
            &["application/json, application/cloudevents-batch+json"],
            BATCH,
        ),
        (&["application/json;q=0, */*"], BATCH),
        (
            &["application/cloudevents-batch+json;q=0.4, application/json;q=0.5"],
            "application/json",
        ),
        (&["text/html", "application/cloudevents-batch+json"], BATCH),
    ] {
        let r = read(&consume, &p, &[("max", "2")], &token, accept).await;
        assert_eq!(r.status, 200, "{accept:?}: {}", r.text);
        assert_eq!(r.header("content-type"), Some(expected), "{accept:?}");
        assert_eq!(r.header("vary"), Some("accept"));
        let body = r.json();
        let n: Vec<u64> = if expected == BATCH {
            assert!(r.header("kp-cursor").is_some());
            body.as_array()
                .unwrap()
                .iter()
                .map(|e| e["data"]["n"].as_u64().unwrap())
                .collect()
        } else {
            assert!(body["cursor"].is_string() && r.header("kp-cursor").is_none());
            body["messages"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["data"]["n"].as_u64().unwrap())
                .collect()
        };
        assert_eq!(n, [0, 1], "{accept:?}");
    }
    // Neither allowed: 406, decided before the credentials are even looked at.
    for token in [token.as_str(), ""] {
        let r = read(
            &consume,
            &p,
            &[],
            token,
            &["text/html, application/xml;q=0.9"],
        )
        .await;
        assert_eq!(r.status, 406, "{}", r.text);
        assert_eq!(r.header("content-type"), Some("application/problem+json"));
        assert_eq!(r.json()["code"], "not_acceptable");
    }

    // A subscription read in the batch shape: no cursor, and each event's
    // kpmessageid acknowledges it.
    let sub = [
        ("subscription", "checkout-ce"),
        ("max", "3"),
        ("waitMs", "2000"),
    ];
    let r = read(&consume, &p, &sub, &token, &[BATCH]).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.header("kp-cursor").is_none());
    let ids: Vec<String> = r
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kpmessageid"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 3, "{}", r.text);
    let ack = consume
        .call(&kong_event(
            "POST",
            &format!("{p}/acks"),
            &[
                ("authorization", &bearer),
                ("content-type", "application/json"),
            ],
            json!({ "subscription": "checkout-ce", "messageIds": ids })
                .to_string()
                .as_bytes(),
        ))
        .await;
    assert_eq!(
        (ack.status, &ack.body["acknowledged"]),
        (200, &json!(3)),
        "{:?}",
        ack.body
    );
}

#[tokio::test]
async fn batches_stop_below_the_byte_cap_and_the_cursor_header_picks_up_the_rest() {
    let cap = 8 * 1024;
    let app = PublishApp::spawn().await;
    let consume = app
        .consume_function(ConsumeOptions {
            max_response_bytes: Some(cap),
            ..ConsumeOptions::default()
        })
        .await;
    let topic = unique("ce-capped");
    let token = app.token("alice", &["checkout"]);
    let p = path(&app, &topic);
    // 20 events of ~1 KiB, then one of 20 KiB (larger than any page).
    let mut body = String::new();
    for i in 0..20 {
        body.push_str(&json!({ "n": i, "pad": "x\"".repeat(400) }).to_string());
        body.push('\n');
    }
    body.push_str(&json!({ "n": 20, "pad": "y".repeat(20_000) }).to_string());
    body.push('\n');
    let r = app
        .post_as(
            "alice",
            "checkout",
            &topic,
            &[("content-type", "application/x-ndjson")],
            body.as_bytes(),
        )
        .await;
    assert_eq!(r.status, 202, "{:?}", r.body);

    let (mut seen, mut omitted) = (Vec::new(), Vec::new());
    let mut cursor = "earliest".to_owned();
    for _ in 0..30 {
        let r = read(&consume, &p, &[("after", &cursor)], &token, &[BATCH]).await;
        assert_eq!(r.status, 200, "{}", r.text);
        // As it travels inside Lambda's answer: a JSON string.
        let escaped = serde_json::to_string(&r.text).unwrap().len();
        assert!(escaped <= cap, "a batch of {escaped} bytes");
        let events = r.json().as_array().unwrap().clone();
        if events.is_empty() {
            break;
        }
        assert!(events.len() < 20, "the cap did not cut the batch");
        for e in events {
            match e.get("data") {
                Some(data) => seen.push(data["n"].as_u64().unwrap()),
                None => {
                    assert_eq!(e["kpdataomitted"], "too_large");
                    omitted.push(e["kpdatasize"].as_u64().unwrap());
                }
            }
        }
        cursor = r.header("kp-cursor").unwrap().to_owned();
    }
    assert_eq!(seen, (0..20).collect::<Vec<u64>>());
    assert_eq!(
        omitted.len(),
        1,
        "the oversized event is listed, without data"
    );
    assert!(omitted[0] > 20_000);
}
