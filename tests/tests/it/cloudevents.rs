//! CloudEvents into the gateway, through the Lambda Invoke API and the real
//! broker: the three HTTP modes, what lands in Pulsar (read back by the
//! Python client, which also checks the provenance signature with claims of
//! its own), the policy's `ce_sources` / `ce_types`, hostile events, and
//! source + id as the idempotency key.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use kp_tests::app::{AppOptions, ProvenanceOptions, PublishApp, Response, kong_event};
use kp_tests::unique;
use kp_tests::witness::both_verdicts;
use serde_json::{Value, json};

async fn signing_app() -> PublishApp {
    PublishApp::spawn_with(AppOptions {
        provenance: Some(ProvenanceOptions::default()),
        ..AppOptions::default()
    })
    .await
}

/// Posts `body` to tenant A's `orders/{topic}` as a caller in `group`.
async fn post(
    app: &PublishApp,
    group: &str,
    topic: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    app.post_as("svc", group, topic, headers, body).await
}

fn structured(id: &str, extra: Value) -> Value {
    let mut event = json!({
        "specversion": "1.0",
        "id": id,
        "source": "urn:checkout:web",
        "type": "com.example.order.created",
        "subject": "order/1",
        "time": "2026-01-02T03:04:05.678Z",
        "datacontenttype": "application/json",
        "partitionkey": "order-1",
        "data": { "orderId": id },
    });
    event
        .as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    event
}

const BINARY: [(&str, &str); 8] = [
    ("content-type", "application/json"),
    ("ce-specversion", "1.0"),
    ("ce-id", "b-1"),
    ("ce-source", "urn:checkout:web"),
    ("ce-type", "com.example.order.created"),
    ("ce-subject", "order/1"),
    ("ce-time", "2026-01-02T03:04:05.678Z"),
    ("ce-partitionkey", "order-1"),
];

/// What the Python client read from `topic` (and its provenance verdict).
async fn witnessed(app: &PublishApp, topic: &str, count: usize) -> Vec<Value> {
    let response = app
        .call(&kong_event(
            "GET",
            "/events/.well-known/jwks.json",
            &[],
            b"",
        ))
        .await;
    let jwks = kp_tests::lambda::temp_file("kp-ce", "jwks.json", &response.body.to_string());
    let full = app.topic(&app.tenant_a, "orders", topic);
    let [_, (_, status, lines)] = both_verdicts(&full, count, &jwks, &app.provenance_issuer).await;
    assert_eq!(status, Some(0), "python read {} of {count}", lines.len());
    lines
}

fn ce_properties(line: &Value) -> BTreeMap<String, String> {
    line["properties"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| k.starts_with("ce_"))
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
        .collect()
}

#[tokio::test]
async fn each_mode_publishes_and_the_python_client_reads_attributes_as_properties() {
    let app = signing_app().await;
    let topic = unique("ce-modes");
    let r = post(
        &app,
        "ce-checkout",
        &topic,
        &BINARY,
        br#"{"orderId":"b-1"}"#,
    )
    .await;
    assert_eq!(r.status, 202, "binary: {:?}", r.body);
    let body = structured("s-1", json!({})).to_string();
    let r = post(
        &app,
        "ce-checkout",
        &topic,
        &[("content-type", "application/cloudevents+json")],
        body.as_bytes(),
    )
    .await;
    assert_eq!(r.status, 202, "structured: {:?}", r.body);
    let batch = json!([
        structured("m-1", json!({})),
        structured("m-2", json!({"priority": 3}))
    ])
    .to_string();
    let r = post(
        &app,
        "ce-checkout",
        &topic,
        &[("content-type", "application/cloudevents-batch+json")],
        batch.as_bytes(),
    )
    .await;
    assert_eq!(r.status, 202, "batch: {:?}", r.body);
    assert_eq!(
        r.body["results"].as_array().unwrap().len(),
        2,
        "a result per item"
    );

    let lines = witnessed(&app, &topic, 4).await;
    for (line, id) in lines.iter().zip(["b-1", "s-1", "m-1", "m-2"]) {
        let ce = ce_properties(line);
        assert_eq!(ce["ce_specversion"], "1.0");
        assert_eq!(ce["ce_id"], id);
        assert_eq!(ce["ce_source"], "urn:checkout:web");
        assert_eq!(ce["ce_type"], "com.example.order.created");
        assert_eq!(ce["ce_subject"], "order/1");
        assert_eq!(ce["ce_time"], "2026-01-02T03:04:05.678Z");
        assert_eq!(line["key"], "order-1", "partitionkey is the message key");
        assert_eq!(
            line["eventTimestamp"], 1_767_323_045_678u64,
            "time is the event time"
        );
        let payload = STANDARD
            .decode(line["payloadBase64"].as_str().unwrap())
            .unwrap();
        let data: Value = serde_json::from_slice(&payload).unwrap();
        assert_eq!(data, json!({ "orderId": id }), "data is the payload");
        // The gateway's identity and signature as for any event, the
        // signature naming the CloudEvent's source and type.
        assert_eq!(line["properties"]["kp-source-id"], "svc");
        assert_eq!(line["verified"], true, "{line}");
        assert_eq!(line["ceSource"], "urn:checkout:web");
        assert_eq!(line["ceType"], "com.example.order.created");
    }
    assert_eq!(
        ce_properties(&lines[3])["ce_priority"],
        "3",
        "extensions too"
    );
}

#[tokio::test]
async fn the_same_event_as_binary_and_as_structured_lands_with_identical_properties() {
    let app = signing_app().await;
    let (t1, t2) = (unique("ce-binary"), unique("ce-structured"));
    let trace = (
        "traceparent",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    );
    let mut headers = BINARY.to_vec();
    headers.push(trace);
    let r = post(&app, "ce-checkout", &t1, &headers, br#"{"orderId":"b-1"}"#).await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    let body = structured("b-1", json!({})).to_string();
    let r = post(
        &app,
        "ce-checkout",
        &t2,
        &[("content-type", "application/cloudevents+json"), trace],
        body.as_bytes(),
    )
    .await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    let (a, b) = (witnessed(&app, &t1, 1).await, witnessed(&app, &t2, 1).await);
    let comparable = |line: &Value| -> BTreeMap<String, String> {
        line["properties"]
            .as_object()
            .unwrap()
            .iter()
            // Per request or per topic by nature: when it arrived, which
            // request it was, and the signature over the topic.
            .filter(|(k, _)| {
                !matches!(
                    k.as_str(),
                    "kp-request-id" | "kp-received-at" | "kp-provenance"
                )
            })
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
            .collect()
    };
    assert_eq!(comparable(&a[0]), comparable(&b[0]));
    assert_eq!(a[0]["payloadBase64"], b[0]["payloadBase64"]);
    assert_eq!(
        a[0]["eventId"], b[0]["eventId"],
        "the same event: the same kp-event-id"
    );
}

#[tokio::test]
async fn hostile_cloudevents_are_refused_and_publish_nothing() {
    let app = PublishApp::spawn().await;
    let topic = unique("ce-hostile");
    let st = [("content-type", "application/cloudevents+json")];
    let batch = [("content-type", "application/cloudevents-batch+json")];
    let ev = |extra: Value| structured("h-1", extra).to_string().into_bytes();
    let without = |name: &str| {
        let mut e = structured("h-1", json!({}));
        e.as_object_mut().unwrap().remove(name);
        e.to_string().into_bytes()
    };
    let with_base64 = |text: &str| {
        let mut e = structured("h-1", json!({ "data_base64": text }));
        e.as_object_mut().unwrap().remove("data");
        e.to_string().into_bytes()
    };
    let binary_with = |name: &'static str, value: &'static str| {
        let mut h: Vec<(&str, &str)> = BINARY.iter().copied().filter(|(k, _)| *k != name).collect();
        h.push((name, value));
        h
    };
    // (case, headers, body, status, code)
    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, Vec<u8>, u16, &'a str);
    let cases: Vec<Case> = vec![
        (
            "no id",
            st.to_vec(),
            without("id"),
            400,
            "invalid_cloudevent",
        ),
        (
            "no source",
            st.to_vec(),
            without("source"),
            400,
            "invalid_cloudevent",
        ),
        (
            "no type",
            st.to_vec(),
            without("type"),
            400,
            "invalid_cloudevent",
        ),
        (
            "empty id",
            st.to_vec(),
            ev(json!({"id": ""})),
            400,
            "invalid_cloudevent",
        ),
        (
            "specversion 0.3",
            st.to_vec(),
            ev(json!({"specversion": "0.3"})),
            400,
            "invalid_cloudevent",
        ),
        (
            "a kp extension",
            st.to_vec(),
            ev(json!({"kpsourceid": "admin"})),
            400,
            "invalid_cloudevent",
        ),
        (
            "an extension with invalid characters",
            st.to_vec(),
            ev(json!({"bad-name": "x"})),
            400,
            "invalid_cloudevent",
        ),
        (
            "data_base64 not base64",
            st.to_vec(),
            with_base64("%%%"),
            400,
            "invalid_cloudevent",
        ),
        (
            "time not RFC 3339",
            st.to_vec(),
            ev(json!({"time": "tomorrow"})),
            400,
            "invalid_cloudevent",
        ),
        (
            "a structured body that is an array",
            st.to_vec(),
            json!([structured("h", json!({}))]).to_string().into_bytes(),
            400,
            "invalid_cloudevent",
        ),
        (
            "a batch with one bad item",
            batch.to_vec(),
            json!([structured("ok", json!({})), structured("", json!({}))])
                .to_string()
                .into_bytes(),
            400,
            "invalid_cloudevent",
        ),
        (
            "binary: a kp extension header",
            binary_with("ce-kpprovenance", "forged"),
            br#"{"orderId":"1"}"#.to_vec(),
            400,
            "invalid_cloudevent",
        ),
        (
            "binary: specversion 0.3",
            binary_with("ce-specversion", "0.3"),
            br#"{"orderId":"1"}"#.to_vec(),
            400,
            "invalid_cloudevent",
        ),
        (
            "binary: an invalid extension name",
            binary_with("ce-bad_name", "x"),
            br#"{"orderId":"1"}"#.to_vec(),
            400,
            "invalid_cloudevent",
        ),
        (
            "binary: JSON data that is not JSON",
            BINARY.to_vec(),
            b"{not json".to_vec(),
            400,
            "invalid_json",
        ),
        (
            "a source outside the rule's patterns",
            st.to_vec(),
            ev(json!({"source": "urn:billing:web"})),
            403,
            "forbidden",
        ),
        (
            "a type outside the rule's patterns",
            st.to_vec(),
            ev(json!({"type": "com.example.refund.issued"})),
            403,
            "forbidden",
        ),
        (
            "one item of a batch claiming another source",
            batch.to_vec(),
            json!([
                structured("a", json!({})),
                structured("b", json!({"source": "urn:billing:x"}))
            ])
            .to_string()
            .into_bytes(),
            403,
            "forbidden",
        ),
    ];
    for (case, headers, body, status, code) in cases {
        let r = post(&app, "ce-checkout", &topic, &headers, &body).await;
        assert_eq!(
            (r.status, r.body["code"].as_str()),
            (status, Some(code)),
            "{case}: {:?}",
            r.body
        );
        if code == "invalid_cloudevent" {
            assert!(
                r.body["attribute"].is_string(),
                "{case}: names the attribute: {:?}",
                r.body
            );
        }
    }
    // A plain publish cannot dress up as a CloudEvent.
    let r = post(
        &app,
        "checkout",
        &topic,
        &[
            ("content-type", "application/json"),
            ("x-event-property-ce_source", "urn:checkout:web"),
        ],
        b"{}",
    )
    .await;
    assert_eq!(r.body["code"], "reserved_property");
    assert_eq!(
        app.stored(&app.topic(&app.tenant_a, "orders", &topic))
            .await,
        0,
        "nothing was published"
    );

    // The topic's schema applies to data as to a plain body.
    let r = post(
        &app,
        "ce-checkout",
        "order-created",
        &st,
        &ev(json!({"data": {"nope": 1}})),
    )
    .await;
    assert_eq!(r.body["code"], "schema_violation");
    let r = post(
        &app,
        "ce-checkout",
        "order-created",
        &st,
        &ev(json!({"datacontenttype": "text/plain", "data": "hello"})),
    )
    .await;
    assert_eq!(r.body["code"], "schema_violation");
    let r = post(&app, "ce-checkout", "order-created", &st, &ev(json!({}))).await;
    assert_eq!(r.status, 202, "{:?}", r.body);
}

#[tokio::test]
async fn a_retry_of_the_same_source_and_id_publishes_once_and_keeps_its_event_id() {
    let app = PublishApp::spawn().await;
    let topic = unique("ce-retry");
    let st = [("content-type", "application/cloudevents+json")];
    let body = structured("r-1", json!({})).to_string();
    let first = post(&app, "ce-checkout", &topic, &st, body.as_bytes()).await;
    let again = post(&app, "ce-checkout", &topic, &st, body.as_bytes()).await;
    assert_eq!(
        (first.status, again.status),
        (202, 202),
        "{:?} {:?}",
        first.body,
        again.body
    );
    assert_eq!(again.headers["idempotent-replayed"], "true");
    assert_eq!(first.body["eventId"], again.body["eventId"]);
    // The same pair with another body is another event claiming its id.
    let other = structured("r-1", json!({"subject": "order/2"})).to_string();
    let r = post(&app, "ce-checkout", &topic, &st, other.as_bytes()).await;
    assert_eq!(r.body["code"], "idempotency_key_reused");
    // The same event inside a batch keeps the same kp-event-id.
    let batch = json!([structured("r-1", json!({})), structured("r-2", json!({}))]).to_string();
    let r = post(
        &app,
        "ce-checkout",
        &topic,
        &[("content-type", "application/cloudevents-batch+json")],
        batch.as_bytes(),
    )
    .await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    assert_eq!(r.body["results"][0]["eventId"], first.body["eventId"]);
    let full = app.topic(&app.tenant_a, "orders", &topic);
    assert_eq!(app.stored(&full).await, 3, "one, then the batch of two");
    let mut consumer = app.consumer(&full).await;
    let mut event_ids = Vec::new();
    for _ in 0..3 {
        let msg = kp_tests::app::receive(&mut consumer).await;
        event_ids.push(kp_tests::app::properties(&msg)["kp-event-id"].clone());
    }
    assert_eq!(
        event_ids[0], event_ids[1],
        "the resent event keeps its kp-event-id everywhere"
    );
    assert_ne!(event_ids[1], event_ids[2]);
}

#[tokio::test]
async fn every_shipped_cloudevents_sample_publishes_through_the_function() {
    use kp_tests::app::sample_event;
    let app = PublishApp::spawn().await;
    let token = app.token("svc", &["checkout"]);
    for (name, events) in [
        ("publish-kong-ce-binary.json", 1),
        ("publish-kong-ce-structured.json", 1),
        ("publish-kong-ce-batch.json", 2),
    ] {
        let r = app.call(&sample_event(name, &app.tenant_a, &token)).await;
        assert_eq!(r.status, 202, "{name}: {:?}", r.body);
        let results = r.body["results"].as_array().map_or(1, Vec::len);
        assert_eq!(results, events, "{name}");
    }
    let full = app.topic(&app.tenant_a, "orders", "order-created");
    assert_eq!(app.stored(&full).await, 4);
}
