use super::envelope::{new_traceparent, valid_traceparent};
use super::*;

#[test]
fn traceparents_are_validated() {
    assert!(valid_traceparent(
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    ));
    assert!(valid_traceparent(&new_traceparent()));
    for bad in [
        "",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
    ] {
        assert!(!valid_traceparent(bad), "{bad}");
    }
}

fn identity(method: crate::identity::AuthMethod, issuer: &str, principal: &str) -> Identity {
    Identity {
        principal: principal.into(),
        service: None,
        groups: Vec::new(),
        method,
        issuer: issuer.into(),
        iam_arn: None,
        kong_consumer: None,
        claims: Default::default(),
    }
}

#[test]
fn event_ids_are_stable_per_caller_and_key_and_unique_otherwise() {
    use crate::identity::AuthMethod::{Kong, Oidc};
    let alice = identity(Oidc, "https://idp", "alice");
    let a = event_id(&alice, Some("k1"), None);
    assert_eq!(a, event_id(&alice, Some("k1"), None));
    assert_ne!(
        a,
        event_id(&identity(Oidc, "https://idp", "bob"), Some("k1"), None)
    );
    // The same principal name from another issuer or method is someone else.
    assert_ne!(
        a,
        event_id(&identity(Oidc, "https://other", "alice"), Some("k1"), None)
    );
    assert_ne!(
        a,
        event_id(&identity(Kong, "https://idp", "alice"), Some("k1"), None)
    );
    assert_ne!(a, event_id(&alice, Some("k2"), None));
    assert_ne!(
        event_id(&alice, Some("k1"), Some(0)),
        event_id(&alice, Some("k1"), Some(1))
    );
    assert_ne!(event_id(&alice, None, None), event_id(&alice, None, None));
    assert_eq!(uuid::Uuid::parse_str(&a).unwrap().get_version_num(), 8);
}

fn small_limits() -> MetadataLimits {
    MetadataLimits {
        max_properties: 3,
        max_property_name_bytes: 8,
        max_property_value_bytes: 16,
        max_metadata_bytes: 40,
        max_event_key_bytes: 10,
    }
}

fn envelope_code(headers: &[(String, String)], limits: &MetadataLimits) -> Result<(), String> {
    Envelope::from_headers(&Headers::from_pairs(headers.iter().cloned()), limits)
        .map(|_| ())
        .map_err(|e| {
            let (status, code, _) = e.status();
            format!("{status} {code}")
        })
}

fn h(name: &str, value: &str) -> (String, String) {
    (name.to_owned(), value.to_owned())
}

#[test]
fn caller_metadata_past_a_limit_is_refused_with_its_code() {
    let limits = small_limits();
    let p = |n: usize| -> Vec<(String, String)> {
        (0..n)
            .map(|i| h(&format!("x-event-property-p{i}"), "v"))
            .collect()
    };
    let with = |mut base: Vec<(String, String)>, extra: &[(String, String)]| {
        base.extend_from_slice(extra);
        base
    };
    type Case = (
        &'static str,
        Vec<(String, String)>,
        Result<(), &'static str>,
    );
    let cases: Vec<Case> = vec![
        ("nothing", vec![], Ok(())),
        ("properties at the limit", p(3), Ok(())),
        (
            "one property too many",
            p(4),
            Err("431 too_many_properties"),
        ),
        ("2,000 properties", p(2000), Err("431 too_many_properties")),
        (
            "name at the limit",
            vec![h("x-event-property-abcdefgh", "v")],
            Ok(()),
        ),
        (
            "name one byte long",
            vec![h("x-event-property-abcdefghi", "v")],
            Err("431 property_too_large"),
        ),
        (
            "value at the limit",
            vec![h("x-event-property-a", &"v".repeat(16))],
            Ok(()),
        ),
        (
            "value one byte long",
            vec![h("x-event-property-a", &"v".repeat(17))],
            Err("431 property_too_large"),
        ),
        (
            "300 kB value",
            vec![h("x-event-property-a", &"v".repeat(300_000))],
            Err("431 property_too_large"),
        ),
        (
            "key at the limit",
            vec![h("x-event-key", &"k".repeat(10))],
            Ok(()),
        ),
        (
            "key one byte long",
            vec![h("x-event-key", &"k".repeat(11))],
            Err("431 event_key_too_large"),
        ),
        (
            "100 kB key",
            vec![h("x-event-key", &"k".repeat(100_000))],
            Err("431 event_key_too_large"),
        ),
        (
            // 3 × (1 + 10) + 7 = 40: exactly the total.
            "total at the limit",
            vec![
                h("x-event-property-a", &"v".repeat(10)),
                h("x-event-property-b", &"v".repeat(10)),
                h("x-event-property-c", &"v".repeat(10)),
                h("x-event-key", "kkkkkkk"),
            ],
            Ok(()),
        ),
        (
            "total one byte over, each item within its own limit",
            vec![
                h("x-event-property-a", &"v".repeat(10)),
                h("x-event-property-b", &"v".repeat(10)),
                h("x-event-property-c", &"v".repeat(10)),
                h("x-event-key", "kkkkkkkk"),
            ],
            Err("431 metadata_too_large"),
        ),
        (
            "the idempotency key counts towards the total",
            with(
                vec![
                    h("x-event-property-a", &"v".repeat(10)),
                    h("x-event-property-b", &"v".repeat(10)),
                    h("x-event-property-c", &"v".repeat(10)),
                ],
                &[h("idempotency-key", "12345678")],
            ),
            Err("431 metadata_too_large"),
        ),
        (
            "reserved kp- property",
            vec![h("x-event-property-kp-x", "x")],
            Err("400 reserved_property"),
        ),
        (
            "empty property name",
            vec![h("x-event-property-", "x")],
            Err("400 bad_request"),
        ),
    ];
    for (name, headers, want) in cases {
        assert_eq!(
            envelope_code(&headers, &limits),
            want.map_err(str::to_owned),
            "{name}"
        );
    }
}

#[test]
fn idempotency_keys_must_be_short_printable_ascii() {
    let limits = MetadataLimits {
        max_metadata_bytes: 1 << 20,
        ..MetadataLimits::default()
    };
    let cases: Vec<(&str, String, Result<(), &str>)> = vec![
        (
            "a uuid",
            "0193e7a2-7c1b-7cc3-9a52-5f0c3c1b2a10".into(),
            Ok(()),
        ),
        ("255 bytes", "k".repeat(255), Ok(())),
        ("with a space", "order 1001".into(), Ok(())),
        (
            "256 bytes",
            "k".repeat(256),
            Err("400 invalid_idempotency_key"),
        ),
        ("empty", "".into(), Err("400 invalid_idempotency_key")),
        ("blank", "   ".into(), Err("400 invalid_idempotency_key")),
        (
            "non-ASCII",
            "clé".into(),
            Err("400 invalid_idempotency_key"),
        ),
        (
            "control character",
            "a\u{1b}[31mb".into(),
            Err("400 invalid_idempotency_key"),
        ),
        (
            "tab inside",
            "a\tb".into(),
            Err("400 invalid_idempotency_key"),
        ),
    ];
    for (name, key, want) in cases {
        assert_eq!(
            envelope_code(&[h("idempotency-key", &key)], &limits),
            want.map_err(str::to_owned),
            "{name}"
        );
    }
}

#[test]
fn the_limits_apply_the_same_in_every_payload_shape() {
    use crate::edge::kong::parse_request;
    use serde_json::json;
    let mut headers = serde_json::Map::new();
    headers.insert("content-type".into(), json!("application/json"));
    for i in 0..40 {
        headers.insert(format!("x-event-property-p{i}"), json!("v"));
    }
    let path = "/events/t/ns/topic";
    let shapes = [
        json!({
            "request_method": "POST", "request_uri": path,
            "request_headers": headers, "request_body": "{}",
        }),
        json!({
            "httpMethod": "POST", "path": path, "headers": headers,
            "requestContext": { "requestId": "r" }, "body": "{}", "isBase64Encoded": false,
        }),
        json!({
            "version": "2.0", "rawPath": path, "headers": headers,
            "requestContext": { "requestId": "r", "http": { "method": "POST", "path": path } },
            "body": "{}", "isBase64Encoded": false,
        }),
    ];
    for event in shapes {
        let request = parse_request(&event, 1 << 20).unwrap();
        let err = Envelope::from_headers(&request.headers, &MetadataLimits::default())
            .err()
            .unwrap_or_else(|| panic!("{}: 40 properties accepted", request.shape));
        assert_eq!(err.code(), "too_many_properties", "{}", request.shape);
    }
}

#[test]
fn the_request_fingerprint_covers_everything_that_shapes_the_message() {
    let topic = TopicName::parse("t", "ns", "orders").unwrap();
    let base: Vec<(String, String)> = vec![
        h("content-type", "application/json"),
        h("x-event-key", "order-1"),
        h("x-event-time", "2026-01-01T00:00:00Z"),
        h("x-event-property-a", "1"),
        h("x-event-property-b", "2"),
    ];
    let fp = |topic: &TopicName, headers: &[(String, String)], body: &[u8]| {
        let request = HttpRequest {
            shape: crate::edge::kong::PayloadShape::Kong,
            method: "POST".into(),
            path: "/".into(),
            headers: Headers::from_pairs(headers.iter().cloned()),
            query: Vec::new(),
            body: body.to_vec(),
            request_id: None,
        };
        let envelope =
            Envelope::from_headers(&request.headers, &MetadataLimits::default()).unwrap();
        request_fingerprint(topic, &request, &envelope)
    };
    let replace = |name: &str, value: Option<&str>| {
        let mut headers: Vec<_> = base.iter().filter(|(n, _)| n != name).cloned().collect();
        if let Some(v) = value {
            headers.push(h(name, v));
        }
        headers
    };
    let original = fp(&topic, &base, b"{}");
    // Header order, trace context and the idempotency key itself do not
    // shape the message.
    let mut reordered = base.clone();
    reordered.reverse();
    reordered.push(h(
        "traceparent",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    ));
    assert_eq!(fp(&topic, &reordered, b"{}"), original);
    for (what, other) in [
        (
            "topic",
            fp(
                &TopicName::parse("t", "ns", "refunds").unwrap(),
                &base,
                b"{}",
            ),
        ),
        ("body", fp(&topic, &base, b"{ }")),
        (
            "content type",
            fp(
                &topic,
                &replace("content-type", Some("application/x-ndjson")),
                b"{}",
            ),
        ),
        (
            "event key",
            fp(&topic, &replace("x-event-key", Some("order-2")), b"{}"),
        ),
        (
            "no event key",
            fp(&topic, &replace("x-event-key", None), b"{}"),
        ),
        (
            "event time",
            fp(
                &topic,
                &replace("x-event-time", Some("2026-01-01T00:00:01Z")),
                b"{}",
            ),
        ),
        (
            "no event time",
            fp(&topic, &replace("x-event-time", None), b"{}"),
        ),
        (
            "property value",
            fp(&topic, &replace("x-event-property-b", Some("3")), b"{}"),
        ),
        (
            "property dropped",
            fp(&topic, &replace("x-event-property-b", None), b"{}"),
        ),
        (
            "property added",
            fp(&topic, &replace("x-event-property-c", Some("3")), b"{}"),
        ),
        // Length-prefixed fields: moving bytes between two does not collide.
        (
            "name/value boundary",
            fp(
                &topic,
                &[
                    base[..3].to_vec(),
                    vec![h("x-event-property-a1", ""), h("x-event-property-b", "2")],
                ]
                .concat(),
                b"{}",
            ),
        ),
    ] {
        assert_ne!(other, original, "{what} is not in the fingerprint");
    }
}
