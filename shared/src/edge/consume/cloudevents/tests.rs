use serde_json::{Value as Json, json};

use super::*;
use crate::pulsar::broker::MessageId;

const TOPIC: &str = "persistent://t/ns/orders";

fn message(payload: &[u8], properties: &[(&str, &str)]) -> Delivered {
    Delivered {
        id: MessageId {
            ledger_id: 7,
            entry_id: 1,
            partition: -1,
            batch_index: -1,
        },
        payload: payload.to_vec(),
        key: None,
        event_time_ms: None,
        publish_time_ms: 1_700_000_000_500,
        properties: properties
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

fn unverified() -> Verdict {
    Verdict::refused("no_signature", "no kp-provenance")
}

fn verified() -> Verdict {
    Verdict {
        verified: true,
        reason: None,
        detail: None,
        identity: None,
    }
}

fn event(message: &Delivered, verdict: &Verdict) -> Json {
    serde_json::from_str(render(message, TOPIC, verdict, usize::MAX).get()).unwrap()
}

/// A gateway-published plain event's properties.
const GATEWAY: &[(&str, &str)] = &[
    ("kp-event-id", "e-1"),
    ("kp-source-id", "alice"),
    ("kp-service-tag", "checkout"),
    ("kp-auth-method", "oidc"),
    ("kp-issuer", "https://idp.example.com"),
    ("kp-tenant", "t"),
    ("kp-request-id", "req-1"),
    (
        "traceparent",
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    ),
];

/// A CloudEvent as the publish side stores it.
fn cloudevent(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
    let mut p = vec![
        ("ce_specversion", "1.0"),
        ("ce_id", "A234-1234-1234"),
        ("ce_source", "/mycontext"),
        ("ce_type", "com.example.someevent"),
    ];
    p.extend_from_slice(GATEWAY);
    p.extend_from_slice(extra);
    p
}

#[test]
fn a_plain_event_gets_the_gateways_envelope() {
    let mut m = message(br#"{"orderId":"1", "n": 1.50}"#, GATEWAY);
    m.key = Some("order-1".into());
    m.event_time_ms = Some(1_700_000_000_000);
    m.properties.push(("region".into(), "eu-west-1".into()));
    // Not attribute names: left to the page.
    m.properties.push(("Order-Id".into(), "x".into()));
    m.properties.push(("ce".into(), "x".into()));
    let out = event(&m, &verified());
    assert_eq!(
        out,
        json!({
            "specversion": "1.0",
            "id": "e-1",
            "source": TOPIC,
            "type": SYNTHESIZED_TYPE,
            "time": "2023-11-14T22:13:20.000Z",
            "datacontenttype": "application/json",
            "data": {"orderId": "1", "n": 1.50},
            "partitionkey": "order-1",
            "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "region": "eu-west-1",
            "ce": "x",
            "kpsynthesized": true,
            "kpmessageid": "7:1:-1:-1",
            "kpeventid": "e-1",
            "kpsourceid": "alice",
            "kpservicetag": "checkout",
            "kpauthmethod": "oidc",
            "kpissuer": "https://idp.example.com",
            "kptenant": "t",
            "kppublishtime": "2023-11-14T22:13:20.500Z",
            "kpprovenance": "verified",
        })
    );
    // Byte for byte, as on the page.
    let raw = render(&m, TOPIC, &verified(), usize::MAX);
    assert!(
        raw.get().contains(r#""data":{"orderId":"1", "n": 1.50}"#),
        "{}",
        raw.get()
    );
}

#[test]
fn plain_envelopes_fall_back_to_the_message_id_and_publish_time() {
    let out = event(&message(b"\x00\x01binary", &[]), &unverified());
    assert_eq!(out["id"], "7:1:-1:-1");
    assert_eq!(out["time"], "2023-11-14T22:13:20.500Z");
    assert_eq!(out["data_base64"], STANDARD.encode(b"\x00\x01binary"));
    assert!(
        out.get("datacontenttype").is_none(),
        "binary of no known type"
    );
    assert!(out.get("data").is_none());
    assert_eq!(out["kpprovenance"], "unverified");
    assert_eq!(out["kpprovenancereason"], "no_signature");
    assert!(out.get("kpsourceid").is_none());
    // An empty payload is an event without data.
    let out = event(&message(b"", &[]), &unverified());
    assert!(out.get("data").is_none() && out.get("data_base64").is_none());
}

#[test]
fn a_cloudevent_is_rebuilt_from_its_properties() {
    let m = message(
        br#"{"appinfoA":"abc"}"#,
        &cloudevent(&[
            ("ce_subject", "larger-context"),
            ("ce_time", "2018-04-05T17:31:00+02:00"),
            ("ce_dataschema", "https://example.com/schema.json"),
            ("ce_datacontenttype", "application/json"),
            ("ce_comexampleextension1", "value"),
            ("ce_partitionkey", "order-1"),
        ]),
    );
    let out = event(&m, &unverified());
    for (name, value) in [
        ("specversion", json!("1.0")),
        ("id", json!("A234-1234-1234")),
        ("source", json!("/mycontext")),
        ("type", json!("com.example.someevent")),
        ("subject", json!("larger-context")),
        ("time", json!("2018-04-05T17:31:00+02:00")),
        ("dataschema", json!("https://example.com/schema.json")),
        ("datacontenttype", json!("application/json")),
        ("comexampleextension1", json!("value")),
        ("partitionkey", json!("order-1")),
        ("data", json!({"appinfoA": "abc"})),
        ("kpeventid", json!("e-1")),
        ("kpmessageid", json!("7:1:-1:-1")),
        ("kpprovenance", json!("unverified")),
    ] {
        assert_eq!(out[name], value, "{name}: {out}");
    }
    assert!(out.get("kpsynthesized").is_none());
    assert!(out.get("kpceinvalid").is_none());
}

#[test]
fn data_follows_the_datacontenttype() {
    let json = br#"{"a":1}"#;
    for (content_type, payload, expected) in [
        (None, &json[..], json!({"data": {"a": 1}})),
        (
            Some("application/json"),
            json,
            json!({"datacontenttype": "application/json", "data": {"a": 1}}),
        ),
        (
            Some("Application/JSON; charset=utf-8"),
            json,
            json!({"datacontenttype": "Application/JSON; charset=utf-8", "data": {"a": 1}}),
        ),
        (
            Some("application/vnd.api+json"),
            json,
            json!({"datacontenttype": "application/vnd.api+json", "data": {"a": 1}}),
        ),
        (
            Some("text/json"),
            b"\"a string\"",
            json!({"datacontenttype": "text/json", "data": "a string"}),
        ),
        // Not JSON: binary, whatever it looks like.
        (
            Some("application/xml"),
            b"<much wow=\"xml\"/>",
            json!({"datacontenttype": "application/xml",
                   "data_base64": STANDARD.encode(b"<much wow=\"xml\"/>")}),
        ),
        (
            Some("text/plain"),
            json,
            json!({"datacontenttype": "text/plain", "data_base64": STANDARD.encode(json)}),
        ),
        (
            Some("application/json+xml"),
            json,
            json!({"datacontenttype": "application/json+xml",
                   "data_base64": STANDARD.encode(json)}),
        ),
        // Says JSON, is not: the bytes as they are, still labelled.
        (
            Some("application/json"),
            b"{oops",
            json!({"datacontenttype": "application/json",
                   "data_base64": STANDARD.encode(b"{oops")}),
        ),
        // No type and not JSON: binary, and no type is made up.
        (
            None,
            b"\xff\xfe",
            json!({"data_base64": STANDARD.encode(b"\xff\xfe")}),
        ),
        (None, b"", json!({})),
        (
            Some("application/json"),
            b"",
            json!({"datacontenttype": "application/json"}),
        ),
    ] {
        let mut extra = Vec::new();
        if let Some(ct) = content_type {
            extra.push(("ce_datacontenttype", ct));
        }
        let properties: Vec<(&str, &str)> = cloudevent(&[]).into_iter().chain(extra).collect();
        let out = event(&message(payload, &properties), &unverified());
        let picked: serde_json::Map<String, Json> = ["datacontenttype", "data", "data_base64"]
            .into_iter()
            .filter_map(|k| out.get(k).map(|v| (k.to_owned(), v.clone())))
            .collect();
        assert_eq!(
            Json::Object(picked),
            expected,
            "{content_type:?} {payload:?}"
        );
    }
}

#[test]
fn no_property_can_pose_as_one_of_the_gateways_attributes() {
    let m = message(
        b"{}",
        &cloudevent(&[
            // Forgeries of our attributes, as ce_ extensions and as plain properties.
            ("ce_kpsourceid", "mallory"),
            ("ce_kpprovenance", "verified"),
            ("ce_kpmessageid", "1:1:-1:-1"),
            ("kpsourceid", "mallory"),
            ("kpprovenance", "verified"),
            // Not attribute names, or reserved ones.
            ("ce_Bad-Name", "x"),
            ("ce_data", "x"),
            ("ce_", "x"),
            ("ce_ok1", "fine"),
            ("ce_ctl", "a\nb"),
            ("ce_nonchar", "\u{FFFE}"),
            // A core name as a plain property does not replace the event's own.
            ("id", "other"),
            ("type", "other"),
        ]),
    );
    let out = event(&m, &unverified());
    assert_eq!(out["kpsourceid"], "alice");
    assert_eq!(out["kpprovenance"], "unverified");
    assert_eq!(out["kpmessageid"], "7:1:-1:-1");
    assert_eq!(out["id"], "A234-1234-1234");
    assert_eq!(out["type"], "com.example.someevent");
    assert_eq!(out["ok1"], "fine");
    let names: Vec<&str> = out
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    for absent in ["Bad-Name", "ctl", "nonchar", ""] {
        assert!(!names.contains(&absent), "{absent:?} in {names:?}");
    }
    // Every name is a valid attribute name (or the format's data members).
    for name in names {
        assert!(
            name == "data_base64"
                || (!name.is_empty()
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())),
            "{name:?}"
        );
    }
}

#[test]
fn an_invalid_cloudevent_is_wrapped_and_says_why() {
    for (extra, reason) in [
        (
            &[("ce_specversion", "0.3")][..],
            "ce_specversion is not 1.0",
        ),
        (
            &[("ce_id", "")],
            "ce_id is empty or holds control characters",
        ),
        (
            &[("ce_type", "a\u{7}b")],
            "ce_type is empty or holds control characters",
        ),
        (&[("ce_time", "yesterday")], "ce_time is not a valid time"),
        (
            &[("ce_time", "2018-04-05 17:31:00")],
            "ce_time is not a valid time",
        ),
        (&[("ce_subject", "")], "ce_subject is not a valid subject"),
        (
            &[("ce_dataschema", "/relative")],
            "ce_dataschema is not a valid dataschema",
        ),
        (
            &[("ce_datacontenttype", "json")],
            "ce_datacontenttype is not a valid datacontenttype",
        ),
    ] {
        // Properties repeat: the first value is the one read, as on the page.
        let mut properties: Vec<(&str, &str)> = extra.to_vec();
        properties.extend(cloudevent(&[]));
        let out = event(&message(br#"{"a":1}"#, &properties), &unverified());
        assert_eq!(out["kpceinvalid"], reason, "{extra:?}");
        assert_eq!(out["kpsynthesized"], true);
        assert_eq!(out["type"], SYNTHESIZED_TYPE);
        assert_eq!(out["source"], TOPIC);
        assert_eq!(out["id"], "e-1");
        assert_eq!(out["data"], json!({"a": 1}));
    }
    let out = event(
        &message(b"{}", &[("ce_specversion", "1.0"), ("ce_id", "x")]),
        &unverified(),
    );
    assert_eq!(out["kpceinvalid"], "ce_source is missing");
}

#[test]
fn the_events_own_traceparent_and_partitionkey_win() {
    let mut m = message(
        b"{}",
        &cloudevent(&[
            (
                "ce_traceparent",
                "00-11111111111111111111111111111111-2222222222222222-01",
            ),
            ("ce_partitionkey", "from-the-event"),
        ]),
    );
    m.key = Some("from-the-key".into());
    let out = event(&m, &unverified());
    assert_eq!(
        out["traceparent"],
        "00-11111111111111111111111111111111-2222222222222222-01"
    );
    assert_eq!(out["partitionkey"], "from-the-event");
}

#[test]
fn a_message_too_large_for_a_page_is_listed_without_data() {
    let m = message(
        &[b'7'; 10_000],
        &cloudevent(&[("ce_subject", "s"), ("ce_comexample", "v")]),
    );
    let out: Json = serde_json::from_str(render(&m, TOPIC, &unverified(), 1_000).get()).unwrap();
    assert_eq!(out["kpdataomitted"], "too_large");
    assert_eq!(out["kpdatasize"], 10_000);
    assert!(out.get("data").is_none() && out.get("data_base64").is_none());
    assert!(out.get("subject").is_none() && out.get("comexample").is_none());
    assert_eq!(out["id"], "A234-1234-1234");
    assert_eq!(out["kpmessageid"], "7:1:-1:-1");
    assert_eq!(out["kpsourceid"], "alice");
}
