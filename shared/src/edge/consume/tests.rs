use super::*;
use crate::edge::kong::PayloadShape;
use crate::http::Headers;

fn request(method: &str, path: &str) -> HttpRequest {
    HttpRequest {
        shape: PayloadShape::Kong,
        method: method.into(),
        path: path.into(),
        headers: Headers::default(),
        query: Vec::new(),
        body: Vec::new(),
        request_id: None,
    }
}

#[test]
fn routes_are_reads_and_acknowledgements_and_nothing_else() {
    let topic = TopicName::parse("t", "ns", "orders").unwrap();
    for (method, path, expected) in [
        ("GET", "/events/t/ns/orders", Ok(Route::Read(topic.clone()))),
        (
            "GET",
            "/prefix/events/t/ns/orders/",
            Ok(Route::Read(topic.clone())),
        ),
        (
            "POST",
            "/events/t/ns/orders/acks",
            Ok(Route::Acknowledge(topic.clone())),
        ),
        // A topic called "acks" is read like any other.
        (
            "GET",
            "/events/t/ns/acks",
            Ok(Route::Read(TopicName::parse("t", "ns", "acks").unwrap())),
        ),
        ("POST", "/events/t/ns/orders", Err("method_not_allowed")),
        ("GET", "/events/t/ns/orders/acks", Err("method_not_allowed")),
        ("DELETE", "/events/t/ns/orders", Err("method_not_allowed")),
        ("GET", "/events/t/ns", Err("not_found")),
        ("GET", "/events/.well-known/jwks.json", Err("not_found")),
        ("GET", "/events/t/ns/orders/extra/more", Err("not_found")),
        ("GET", "/events/t/ns/%2e%2e", Err("bad_request")),
        ("GET", "/events/t/ns/__change_events", Err("reserved_name")),
        (
            "GET",
            "/events/t/ns/orders-partition-0",
            Err("reserved_name"),
        ),
        (
            "POST",
            "/events/__system/ns/orders/acks",
            Err("reserved_name"),
        ),
    ] {
        let got = route(&request(method, path)).map_err(|e| e.code());
        assert_eq!(got, expected, "{method} {path}");
    }
}

#[test]
fn escaping_counts_what_a_json_string_adds() {
    assert_eq!(escaped_len("{}"), 2);
    assert_eq!(escaped_len(r#"{"a":"\n"}"#), 10 + 5);
}

fn delivered(payload: &[u8]) -> Delivered {
    Delivered {
        id: MessageId {
            ledger_id: 7,
            entry_id: 1,
            partition: -1,
            batch_index: -1,
        },
        payload: payload.to_vec(),
        key: Some("k".into()),
        event_time_ms: Some(1_700_000_000_000),
        publish_time_ms: 1_700_000_000_500,
        properties: vec![
            ("kp-event-id".into(), "e-1".into()),
            ("color".into(), "blue".into()),
        ],
    }
}

fn rendered(message: &Delivered, room: usize) -> Value {
    let verdict = Verdict::refused("no_signature", "x");
    serde_json::from_str(render(message, verdict, room).get()).unwrap()
}

#[test]
fn json_payloads_are_embedded_as_sent_and_others_in_base64() {
    let json = rendered(&delivered(br#"{"orderId":"1", "n": 1.50}"#), usize::MAX);
    assert_eq!(json["data"], serde_json::json!({"orderId": "1", "n": 1.50}));
    assert!(json.get("dataBase64").is_none());
    assert_eq!(json["messageId"], "7:1:-1:-1");
    assert_eq!(json["eventId"], "e-1");
    assert_eq!(json["key"], "k");
    assert_eq!(json["eventTime"], "2023-11-14T22:13:20.000Z");
    assert_eq!(json["publishTime"], "2023-11-14T22:13:20.500Z");
    assert_eq!(json["properties"]["color"], "blue");
    assert_eq!(json["provenance"]["verified"], false);
    // Byte for byte: the raw JSON text, not a re-serialization.
    let raw = render(
        &delivered(br#"{"n": 1.50}"#),
        Verdict::refused("x", "y"),
        usize::MAX,
    );
    assert!(raw.get().contains(r#""data":{"n": 1.50}"#), "{}", raw.get());

    for not_json in [&b"\xff\xfe binary"[..], b"{\"truncated\":", b"", b"1 2"] {
        let out = rendered(&delivered(not_json), usize::MAX);
        assert!(out.get("data").is_none(), "{not_json:?}");
        assert_eq!(
            STANDARD
                .decode(out["dataBase64"].as_str().unwrap())
                .unwrap(),
            not_json
        );
    }
}

#[test]
fn a_message_larger_than_the_room_left_is_listed_without_its_payload() {
    let big = delivered(&vec![b'7'; 10_000]);
    let out = rendered(&big, 1_000);
    assert_eq!(out["dataOmitted"], "too_large");
    assert_eq!(out["size"], 10_000);
    assert!(out.get("data").is_none() && out.get("properties").is_none());
    assert_eq!(out["messageId"], "7:1:-1:-1");
}
