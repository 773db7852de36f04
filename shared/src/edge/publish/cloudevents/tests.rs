use super::*;
use crate::edge::kong::PayloadShape;

fn request(content_type: &str, headers: &[(&str, &str)], body: &[u8]) -> HttpRequest {
    let mut h: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    h.push(("content-type".into(), content_type.into()));
    HttpRequest {
        shape: PayloadShape::Kong,
        method: "POST".into(),
        path: "/events/t/ns/x".into(),
        headers: Headers::from_pairs(h),
        query: Vec::new(),
        body: body.to_vec(),
        request_id: None,
    }
}

fn parsed(r: &HttpRequest) -> Result<Vec<CloudEvent>, ApiError> {
    let media = crate::edge::publish::media_type(&r.headers);
    let mode = mode(&media, &r.headers)?.expect("a CloudEvents request");
    parse(r, mode, 10, &MetadataLimits::default())
}

const BASIC: &str =
    r#"{"specversion":"1.0","id":"e-1","source":"urn:checkout","type":"com.example.order.created""#;

#[test]
fn structured_events_become_properties_and_their_data_the_payload() {
    let body = format!(
        r#"{BASIC},"subject":"order/1","time":"2026-01-02T03:04:05.678Z","dataschema":"https://example.com/s","datacontenttype":"application/json","partitionkey":"order-1","priority":7,"replay":true,"data":{{"orderId": "1", "n": 1.50}}}}"#
    );
    let events = parsed(&request(STRUCTURED, &[], body.as_bytes())).unwrap();
    let e = &events[0];
    assert_eq!(
        e.data, br#"{"orderId": "1", "n": 1.50}"#,
        "data byte for byte"
    );
    assert_eq!(e.partition_key(), Some("order-1"));
    assert_eq!(e.time.as_ref().unwrap().1, 1_767_323_045_678);
    let props: std::collections::HashMap<_, _> = e.properties().into_iter().collect();
    for (k, v) in [
        ("ce_specversion", "1.0"),
        ("ce_id", "e-1"),
        ("ce_source", "urn:checkout"),
        ("ce_type", "com.example.order.created"),
        ("ce_subject", "order/1"),
        ("ce_time", "2026-01-02T03:04:05.678Z"),
        ("ce_dataschema", "https://example.com/s"),
        ("ce_datacontenttype", "application/json"),
        ("ce_partitionkey", "order-1"),
        ("ce_priority", "7"),
        ("ce_replay", "true"),
    ] {
        assert_eq!(props.get(k).map(String::as_str), Some(v), "{k}");
    }
    assert_eq!(props.len(), 11);
}

#[test]
fn data_base64_and_non_json_strings_are_the_payload_bytes() {
    let b64 = format!(
        r#"{BASIC},"datacontenttype":"application/octet-stream","data_base64":"AAEC/w=="}}"#
    );
    assert_eq!(
        parsed(&request(STRUCTURED, &[], b64.as_bytes())).unwrap()[0].data,
        [0, 1, 2, 255]
    );
    let text = format!(r#"{BASIC},"datacontenttype":"text/plain","data":"hello \"world\""}}"#);
    let e = &parsed(&request(STRUCTURED, &[], text.as_bytes())).unwrap()[0];
    assert_eq!(e.data, br#"hello "world""#);
    assert!(!e.json_data());
    let none = format!("{BASIC}}}");
    assert!(
        parsed(&request(STRUCTURED, &[], none.as_bytes())).unwrap()[0]
            .data
            .is_empty()
    );
}

#[test]
fn binary_events_take_their_attributes_from_percent_decoded_headers() {
    let r = request(
        "application/json; charset=utf-8",
        &[
            ("ce-specversion", "1.0"),
            ("ce-id", "e-2"),
            ("ce-source", "urn:checkout"),
            ("ce-type", "order.created"),
            ("ce-subject", "caf%C3%A9%20order"),
            ("ce-partitionkey", "k1"),
        ],
        br#"{"orderId":"2"}"#,
    );
    let e = &parsed(&r).unwrap()[0];
    assert_eq!(e.subject.as_deref(), Some("café order"));
    assert_eq!(
        e.datacontenttype.as_deref(),
        Some("application/json; charset=utf-8")
    );
    assert_eq!(e.data, br#"{"orderId":"2"}"#);
    assert_eq!(e.partition_key(), Some("k1"));
}

#[test]
fn the_same_event_as_binary_and_as_structured_has_the_same_properties() {
    let binary = request(
        "application/json",
        &[
            ("ce-specversion", "1.0"),
            ("ce-id", "e-3"),
            ("ce-source", "urn:checkout"),
            ("ce-type", "order.created"),
            ("ce-traceid", "abc"),
        ],
        br#"{"orderId":"3"}"#,
    );
    let structured = request(
        STRUCTURED,
        &[],
        br#"{"specversion":"1.0","id":"e-3","source":"urn:checkout","type":"order.created","traceid":"abc","datacontenttype":"application/json","data":{"orderId":"3"}}"#,
    );
    let (b, s) = (
        &parsed(&binary).unwrap()[0],
        &parsed(&structured).unwrap()[0],
    );
    let sorted = |e: &CloudEvent| {
        let mut p = e.properties();
        p.sort();
        p
    };
    assert_eq!(sorted(b), sorted(s));
    assert_eq!(b.data, s.data);
}

#[test]
fn a_batch_is_checked_whole_and_names_the_bad_item() {
    let body = format!(r#"[{BASIC}}}, {BASIC},"id":"e-2"}}]"#);
    // Two members named id in item 1: refused, naming the item.
    let err = parsed(&request(BATCH, &[], body.as_bytes())).unwrap_err();
    assert!(
        matches!(err, ApiError::InvalidCloudEvent { index: Some(1), .. }),
        "{err}"
    );
    let good = format!(r#"[{BASIC}}}, {BASIC}}}]"#);
    assert_eq!(
        parsed(&request(BATCH, &[], good.as_bytes())).unwrap().len(),
        2
    );
    let many = format!("[{}]", vec![format!("{BASIC}}}"); 11].join(","));
    assert_eq!(
        parsed(&request(BATCH, &[], many.as_bytes()))
            .unwrap_err()
            .code(),
        "payload_too_large"
    );
    assert_eq!(
        parsed(&request(BATCH, &[], b"[]")).unwrap_err().code(),
        "bad_request"
    );
}

#[test]
fn hostile_events_are_refused_naming_the_attribute() {
    let s =
        |rest: &str| format!(r#"{{"specversion":"1.0","id":"e","source":"s","type":"t"{rest}}}"#);
    let cases: Vec<(String, &str)> = vec![
        (
            r#"{"id":"e","source":"s","type":"t"}"#.into(),
            "specversion",
        ),
        (
            r#"{"specversion":"0.3","id":"e","source":"s","type":"t"}"#.into(),
            "specversion",
        ),
        (
            r#"{"specversion":1.0,"id":"e","source":"s","type":"t"}"#.into(),
            "specversion",
        ),
        (
            r#"{"specversion":"1.0","source":"s","type":"t"}"#.into(),
            "id",
        ),
        (
            r#"{"specversion":"1.0","id":"","source":"s","type":"t"}"#.into(),
            "id",
        ),
        (
            r#"{"specversion":"1.0","id":5,"source":"s","type":"t"}"#.into(),
            "id",
        ),
        (
            r#"{"specversion":"1.0","id":"e","source":"","type":"t"}"#.into(),
            "source",
        ),
        (
            r#"{"specversion":"1.0","id":"e","source":"a b","type":"t"}"#.into(),
            "source",
        ),
        (
            r#"{"specversion":"1.0","id":"e","source":"s"}"#.into(),
            "type",
        ),
        (s(r#","subject":"""#), "subject"),
        (s(r#","time":"yesterday""#), "time"),
        (s(r#","time":"1969-12-31T23:59:59Z""#), "time"),
        (s(r#","datacontenttype":"json""#), "datacontenttype"),
        (s(r#","kpsourceid":"alice""#), "kpsourceid"),
        (s(r#","Traceid":"x""#), "Traceid"),
        (s(r#","trace_id":"x""#), "trace_id"),
        (
            s(r#","averyveryverylongname1":"x""#),
            "averyveryverylongname1",
        ),
        (s(r#","ext":{"a":1}"#), "ext"),
        (s(r#","ext":null"#), "ext"),
        (s(r#","ext":1.5"#), "ext"),
        (s(r#","data_base64":"not base64!""#), "data_base64"),
        (s(r#","data_base64":7"#), "data_base64"),
        (s(r#","data":1,"data_base64":"AA==""#), "data_base64"),
        (
            s(r#","datacontenttype":"text/plain","data":{"a":1}"#),
            "data",
        ),
        (s(r#","source":"other""#), "data"),
        (format!("[{}]", s("")), "data"),
        ("not json".into(), "data"),
    ];
    for (body, attribute) in cases {
        match parsed(&request(STRUCTURED, &[], body.as_bytes())) {
            Err(ApiError::InvalidCloudEvent { attribute: a, .. }) => {
                assert_eq!(a, attribute, "{body}")
            }
            other => panic!("{body}: {other:?}"),
        }
    }
}

#[test]
fn hostile_binary_headers_are_refused() {
    let base = [
        ("ce-specversion", "1.0"),
        ("ce-id", "e"),
        ("ce-source", "s"),
        ("ce-type", "t"),
    ];
    for (extra, attribute) in [
        (("ce-datacontenttype", "text/plain"), "datacontenttype"),
        (("ce-subject", "bad%zz"), "subject"),
        (("ce-subject", "%ff%fe"), "subject"),
        (("ce-kpprovenance", "forged"), "kpprovenance"),
        (("ce-specversion", "0.3"), "specversion"),
    ] {
        let mut headers: Vec<(&str, &str)> = base.to_vec();
        headers.retain(|(k, _)| *k != extra.0);
        headers.push(extra);
        match parsed(&request("application/json", &headers, b"{}")) {
            Err(ApiError::InvalidCloudEvent { attribute: a, .. }) => {
                assert_eq!(a, attribute, "{extra:?}")
            }
            other => panic!("{extra:?}: {other:?}"),
        }
    }
    // ce- headers without ce-specversion, or beside a structured body.
    let no_version = request("application/json", &[("ce-id", "e")], b"{}");
    assert!(mode("application/json", &no_version.headers).is_err());
    let both = request(STRUCTURED, &[("ce-id", "e")], b"{}");
    assert!(mode(STRUCTURED, &both.headers).is_err());
    let keyed = request(STRUCTURED, &[("x-event-key", "k")], b"{}");
    assert_eq!(
        mode(STRUCTURED, &keyed.headers).unwrap_err().code(),
        "bad_request"
    );
    // Plain requests are not CloudEvents.
    let plain = request("application/json", &[("x-event-key", "k")], b"{}");
    assert_eq!(mode("application/json", &plain.headers).unwrap(), None);
}

#[test]
fn attributes_stay_within_the_metadata_limits() {
    let limits = MetadataLimits {
        max_property_value_bytes: 16,
        ..MetadataLimits::default()
    };
    let body = format!(r#"{BASIC},"subject":"{}"}}"#, "x".repeat(17));
    let r = request(STRUCTURED, &[], body.as_bytes());
    let err = parse(&r, Mode::Structured, 10, &limits).unwrap_err();
    assert_eq!(err.code(), "property_too_large");
    let many: String = (0..40).map(|i| format!(r#","e{i}":"v""#)).collect();
    let body = format!("{BASIC}{many}}}");
    let r = request(STRUCTURED, &[], body.as_bytes());
    let err = parse(&r, Mode::Structured, 10, &MetadataLimits::default()).unwrap_err();
    assert_eq!(err.code(), "too_many_properties");
}
