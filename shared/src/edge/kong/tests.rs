use super::*;
use proptest::prelude::*;
use serde_json::json;

const KONG: &str = include_str!("../../../../events/publish-kong.json");
const KONG_NDJSON: &str = include_str!("../../../../events/publish-kong-ndjson.json");
const V1: &str = include_str!("../../../../events/publish-apigw-v1.json");
const V2: &str = include_str!("../../../../events/publish-http-v2.json");
const LEGACY: &str = include_str!("../../../../events/publish-kong-legacy.json");

const LIMIT: usize = 1024 * 1024;
const BODY: &str = r#"{"orderId":"1001","amount":42.5,"currency":"EUR"}"#;

fn fixture(text: &str) -> Value {
    serde_json::from_str(text).unwrap()
}

fn parse(event: &Value) -> Result<HttpRequest, PayloadError> {
    parse_request(event, LIMIT)
}

fn sorted(mut query: Vec<(String, String)>) -> Vec<(String, String)> {
    query.sort();
    query
}

fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn assert_malformed(event: Value, expected: &str) {
    match parse(&event) {
        Err(PayloadError::Malformed { field, .. }) => assert_eq!(field, expected),
        other => panic!("expected Malformed({expected}), got {other:?}"),
    }
}

// --- shapes -----------------------------------------------------------

#[test]
fn kong_fixture_is_parsed() {
    let req = parse(&fixture(KONG)).unwrap();
    assert_eq!(req.shape, PayloadShape::Kong);
    assert_eq!(req.method, "POST");
    assert_eq!(req.path, "/events/payments/orders/order-created");
    assert_eq!(req.body, BODY.as_bytes());
    assert_eq!(
        req.headers.get("Authorization"),
        Some("Bearer eyJ...placeholder")
    );
    assert_eq!(req.headers.get("x-event-key"), Some("order-1001"));
    assert_eq!(
        req.headers.get_all("accept").collect::<Vec<_>>(),
        ["application/json", "application/problem+json"]
    );
    assert_eq!(
        req.request_id.as_deref(),
        Some("7c9e4a2b-3f1d-4e8a-9b6c-0d2e5f7a1b3c#42")
    );
    assert_eq!(
        sorted(req.query),
        pairs(&[("dry-run", "true"), ("source", "checkout")])
    );
}

#[test]
fn kong_base64_body_is_decoded() {
    let req = parse(&fixture(KONG_NDJSON)).unwrap();
    assert_eq!(req.shape, PayloadShape::Kong);
    assert_eq!(
        req.body,
        b"{\"orderId\":\"1001\"}\n{\"orderId\":\"1002\"}\n"
    );
    assert_eq!(
        req.headers.get("content-type"),
        Some("application/x-ndjson")
    );
    assert!(req.query.is_empty());
}

#[test]
fn every_shape_parses_to_the_same_request() {
    let kong = parse(&fixture(KONG)).unwrap();
    let v1 = parse(&fixture(V1)).unwrap();
    let v2 = parse(&fixture(V2)).unwrap();
    assert_eq!(v1.shape, PayloadShape::ApiGatewayV1);
    assert_eq!(v2.shape, PayloadShape::HttpApiV2);
    for req in [&v1, &v2] {
        assert_eq!(req.method, kong.method);
        assert_eq!(req.path, kong.path);
        assert_eq!(req.body, kong.body);
        assert_eq!(req.request_id, kong.request_id);
        assert_eq!(sorted(req.query.clone()), sorted(kong.query.clone()));
        for name in [
            "authorization",
            "content-type",
            "content-length",
            "x-event-key",
            "x-event-time",
            "idempotency-key",
            "traceparent",
            "host",
        ] {
            assert_eq!(req.headers.get(name), kong.headers.get(name), "{name}");
        }
    }
    // v1 keeps the repeated header apart; payload 2.0 has it comma-joined.
    assert_eq!(v1.headers.get_all("accept").count(), 2);
    assert_eq!(
        v2.headers.get_all("accept").collect::<Vec<_>>(),
        ["application/json,application/problem+json"]
    );
}

#[test]
fn request_id_falls_back_to_the_request_context() {
    let mut v1 = fixture(V1);
    v1["headers"]
        .as_object_mut()
        .unwrap()
        .remove("kong-request-id");
    v1["multiValueHeaders"]
        .as_object_mut()
        .unwrap()
        .remove("kong-request-id");
    let req = parse(&v1).unwrap();
    assert_eq!(
        req.request_id.as_deref(),
        Some("5d8f0a6e2b4c4f1e9a7d3c2b1e0f9a8d")
    );

    let mut v2 = fixture(V2);
    v2["headers"]
        .as_object_mut()
        .unwrap()
        .remove("kong-request-id");
    let req = parse(&v2).unwrap();
    assert_eq!(
        req.request_id.as_deref(),
        Some("0b5f7c9e-1d3a-4b6c-8e0f-2a4c6e8b0d1f")
    );

    let mut kong = fixture(KONG);
    let headers = kong["request_headers"].as_object_mut().unwrap();
    headers.remove("kong-request-id");
    headers.insert("x-kong-request-id".into(), json!("abc123"));
    assert_eq!(parse(&kong).unwrap().request_id.as_deref(), Some("abc123"));

    let mut kong = fixture(KONG);
    kong["request_headers"]["kong-request-id"] = json!("has spaces\nand a newline");
    assert_eq!(parse(&kong).unwrap().request_id, None);
}

#[test]
fn header_names_are_lower_cased_in_every_shape() {
    let mut kong = fixture(KONG);
    kong["request_headers"]["X-Event-Key"] = json!("upper");
    kong["request_headers"]
        .as_object_mut()
        .unwrap()
        .remove("x-event-key");
    assert_eq!(
        parse(&kong).unwrap().headers.get("x-event-key"),
        Some("upper")
    );

    // AWS REST APIs keep the client's casing.
    let v1 = json!({
        "httpMethod": "post",
        "path": "/e",
        "headers": {"Content-Type": "text/plain", "X-Only-Single": "s"},
        "multiValueHeaders": {"Content-Type": ["text/plain"], "X-Event-Key": ["a", "b"]},
        "body": null,
        "isBase64Encoded": false
    });
    let req = parse(&v1).unwrap();
    assert_eq!(req.method, "POST");
    assert!(req.headers.iter().all(|(n, _)| n == n.to_ascii_lowercase()));
    assert_eq!(
        req.headers.get_all("x-event-key").collect::<Vec<_>>(),
        ["a", "b"]
    );
    assert_eq!(req.headers.get("x-only-single"), Some("s"));
    assert_eq!(req.headers.get_all("content-type").count(), 1);

    let mut v2 = fixture(V2);
    v2["headers"]["X-Mixed-Case"] = json!("v");
    let req = parse(&v2).unwrap();
    assert_eq!(
        req.headers
            .iter()
            .find(|(n, _)| *n == "x-mixed-case")
            .map(|p| p.1),
        Some("v")
    );
}

#[test]
fn v1_multi_value_headers_win_over_headers() {
    let mut v1 = fixture(V1);
    v1["headers"]["x-event-key"] = json!("from-headers");
    v1["multiValueHeaders"]["x-event-key"] = json!(["from-multi", "second"]);
    let req = parse(&v1).unwrap();
    assert_eq!(
        req.headers.get_all("x-event-key").collect::<Vec<_>>(),
        ["from-multi", "second"]
    );
}

#[test]
fn v1_without_multi_value_maps_uses_the_single_ones() {
    let mut v1 = fixture(V1);
    let obj = v1.as_object_mut().unwrap();
    obj.remove("multiValueHeaders");
    obj.remove("multiValueQueryStringParameters");
    let req = parse(&v1).unwrap();
    assert_eq!(
        req.headers.get_all("accept").collect::<Vec<_>>(),
        ["application/json"]
    );
    assert_eq!(
        sorted(req.query),
        pairs(&[("dry-run", "true"), ("source", "checkout")])
    );
}

#[test]
fn v1_strips_a_query_string_and_falls_back_to_request_context_path() {
    let mut v1 = fixture(V1);
    v1["path"] = json!("/events/t/ns/topic?x=1");
    assert_eq!(parse(&v1).unwrap().path, "/events/t/ns/topic");
    v1.as_object_mut().unwrap().remove("path");
    assert_eq!(
        parse(&v1).unwrap().path,
        "/events/payments/orders/order-created"
    );
}

#[test]
fn v2_cookies_become_a_cookie_header() {
    let mut v2 = fixture(V2);
    v2["cookies"] = json!(["a=1", "b=2"]);
    let req = parse(&v2).unwrap();
    assert_eq!(req.headers.get("cookie"), Some("a=1; b=2"));
    // Debug output must not leak credentials.
    let debug = format!("{:?}", req.headers);
    assert!(!debug.contains("a=1"));
    assert!(!debug.contains("eyJ"));
    assert!(debug.contains("x-event-key"));
}

#[test]
fn v2_without_raw_query_string_uses_query_string_parameters() {
    let mut v2 = fixture(V2);
    v2.as_object_mut().unwrap().remove("rawQueryString");
    v2["queryStringParameters"] = json!({"a": "1,2", "b": "x"});
    assert_eq!(
        sorted(parse(&v2).unwrap().query),
        pairs(&[("a", "1,2"), ("b", "x")])
    );
}

#[test]
fn v2_path_falls_back_to_request_context() {
    let mut v2 = fixture(V2);
    v2.as_object_mut().unwrap().remove("rawPath");
    assert_eq!(
        parse(&v2).unwrap().path,
        "/events/payments/orders/order-created"
    );
}

// --- query --------------------------------------------------------------

#[test]
fn kong_query_arrays_and_booleans() {
    let mut kong = fixture(KONG);
    kong["request_uri_args"] = json!({
        "flag": true,
        "multi": ["first", "second", true],
        "empty": ""
    });
    let req = parse(&kong).unwrap();
    assert_eq!(
        sorted(req.query),
        pairs(&[
            ("empty", ""),
            ("flag", "true"),
            ("multi", "first"),
            ("multi", "second"),
            ("multi", "true"),
        ])
    );
}

#[test]
fn kong_query_falls_back_to_the_raw_uri() {
    let mut kong = fixture(KONG);
    kong.as_object_mut().unwrap().remove("request_uri_args");
    kong["request_uri"] = json!("/events/a/b/c?x=hello%20world&flag&x=two+words&e=");
    let req = parse(&kong).unwrap();
    assert_eq!(req.path, "/events/a/b/c");
    assert_eq!(
        req.query,
        pairs(&[
            ("x", "hello world"),
            ("flag", "true"),
            ("x", "two words"),
            ("e", "")
        ])
    );
}

#[test]
fn v1_query_booleans_as_kong_sends_them() {
    let mut v1 = fixture(V1);
    v1["multiValueQueryStringParameters"] = json!({"boolean": [true], "multi": ["a", "b"]});
    v1["queryStringParameters"] = json!({"boolean": true, "multi": "a", "only-single": "s"});
    assert_eq!(
        sorted(parse(&v1).unwrap().query),
        pairs(&[
            ("boolean", "true"),
            ("multi", "a"),
            ("multi", "b"),
            ("only-single", "s")
        ])
    );
}

#[test]
fn v2_raw_query_keeps_repeats() {
    let mut v2 = fixture(V2);
    v2["rawQueryString"] = json!("a=1&a=2&flag&&b=%2F");
    assert_eq!(
        parse(&v2).unwrap().query,
        pairs(&[("a", "1"), ("a", "2"), ("flag", "true"), ("b", "/")])
    );
}

#[test]
fn absolute_form_request_uri() {
    let mut kong = fixture(KONG);
    kong["request_uri"] = json!("http://api.example.com/events/a/b/c?x=1");
    assert_eq!(parse(&kong).unwrap().path, "/events/a/b/c");
    kong["request_uri"] = json!("HTTPS://api.example.com");
    assert_eq!(parse(&kong).unwrap().path, "/");
}

// --- bodies -----------------------------------------------------------

#[test]
fn plain_and_base64_bodies() {
    let mut kong = fixture(KONG);
    kong["request_body"] = json!("some text");
    kong["request_headers"]["content-length"] = json!("9");
    assert_eq!(parse(&kong).unwrap().body, b"some text");

    kong["request_body"] = json!(b64(b"some text"));
    kong["request_body_base64"] = json!(true);
    assert_eq!(parse(&kong).unwrap().body, b"some text");

    // Padding is optional.
    kong["request_body"] = json!(b64(b"some text").trim_end_matches('='));
    assert_eq!(parse(&kong).unwrap().body, b"some text");

    let mut v2 = fixture(V2);
    v2["body"] = json!(b64(BODY.as_bytes()));
    v2["isBase64Encoded"] = json!(true);
    assert_eq!(parse(&v2).unwrap().body, BODY.as_bytes());
}

#[test]
fn invalid_utf8_body_bytes_survive() {
    let bytes = [0xff, 0xfe, 0x00, 0x80, b'{'];
    let mut v1 = fixture(V1);
    v1["body"] = json!(b64(&bytes));
    v1["headers"]["content-length"] = json!("5");
    v1["multiValueHeaders"]["content-length"] = json!(["5"]);
    assert_eq!(parse(&v1).unwrap().body, bytes);
}

#[test]
fn empty_body_without_content_length_is_fine() {
    let v2 = json!({
        "version": "2.0",
        "rawPath": "/events/a/b/c",
        "requestContext": {"http": {"method": "GET"}},
        "isBase64Encoded": false
    });
    let req = parse(&v2).unwrap();
    assert!(req.body.is_empty());
    assert!(req.headers.is_empty());
    assert_eq!(req.request_id, None);

    // API Gateway REST sends `"body": null` on a GET; Kong sends "" with
    // isBase64Encoded true when ngx.encode_base64 got no body.
    let mut v1 = fixture(V1);
    v1["body"] = json!("");
    v1["headers"]
        .as_object_mut()
        .unwrap()
        .remove("content-length");
    v1["multiValueHeaders"]
        .as_object_mut()
        .unwrap()
        .remove("content-length");
    assert!(parse(&v1).unwrap().body.is_empty());
    v1["body"] = Value::Null;
    assert!(parse(&v1).unwrap().body.is_empty());
}

#[test]
fn body_dropped_by_kong_is_reported() {
    // skip_large_bodies: Kong sends "" (v1) or nothing (Kong format, JSON).
    let mut v1 = fixture(V1);
    v1["body"] = json!("");
    assert!(matches!(
        parse(&v1),
        Err(PayloadError::BodyNotForwarded { content_length: 49 })
    ));
    let mut kong = fixture(KONG);
    let obj = kong.as_object_mut().unwrap();
    obj.remove("request_body");
    obj.remove("request_body_args");
    assert!(matches!(
        parse(&kong),
        Err(PayloadError::BodyNotForwarded { .. })
    ));
}

#[test]
fn invalid_base64_is_rejected() {
    let mut kong = fixture(KONG_NDJSON);
    kong["request_body"] = json!("not base64!!");
    assert!(matches!(parse(&kong), Err(PayloadError::InvalidBase64)));
    let mut v1 = fixture(V1);
    v1["body"] = json!("%%%%");
    assert!(matches!(parse(&v1), Err(PayloadError::InvalidBase64)));
}

#[test]
fn body_over_the_limit_is_rejected() {
    let limit = 16;
    let big = "x".repeat(limit + 1);
    let exact = "x".repeat(limit);

    // Plain.
    let mut v2 = fixture(V2);
    v2["headers"]
        .as_object_mut()
        .unwrap()
        .remove("content-length");
    v2["body"] = json!(big);
    assert!(matches!(
        parse_request(&v2, limit),
        Err(PayloadError::BodyTooLarge { limit: 16 })
    ));
    v2["body"] = json!(exact);
    assert_eq!(parse_request(&v2, limit).unwrap().body.len(), limit);

    // Base64 whose decoded length is just over the limit.
    v2["isBase64Encoded"] = json!(true);
    v2["body"] = json!(b64(big.as_bytes()));
    assert!(matches!(
        parse_request(&v2, limit),
        Err(PayloadError::BodyTooLarge { .. })
    ));
    v2["body"] = json!(b64(exact.as_bytes()));
    assert_eq!(parse_request(&v2, limit).unwrap().body.len(), limit);

    // A huge encoded body is refused on its length, before decoding: it
    // is not even valid base64, yet the answer is BodyTooLarge.
    v2["body"] = json!("!".repeat(10 * limit));
    assert!(matches!(
        parse_request(&v2, limit),
        Err(PayloadError::BodyTooLarge { .. })
    ));

    // A declared content-length over the limit is refused up front.
    let kong = fixture(KONG);
    assert!(matches!(
        parse_request(&kong, 10),
        Err(PayloadError::BodyTooLarge { limit: 10 })
    ));
}

// --- rejections ---------------------------------------------------------

#[test]
fn legacy_payload_is_rejected_with_the_flags_to_turn_on() {
    let err = parse(&fixture(LEGACY)).unwrap_err();
    assert!(matches!(err, PayloadError::Legacy));
    let message = err.to_string();
    for flag in [
        "forward_request_method",
        "forward_request_uri",
        "forward_request_headers",
        "forward_request_body",
    ] {
        assert!(message.contains(flag), "{message}");
    }
    // A legacy payload whose caller picked marker-like argument names.
    for event in [
        json!({"version": "2.0"}),
        json!({"httpMethod": "GET", "x": "1"}),
        json!({"request_body": "x", "a": "b"}),
    ] {
        let result = parse(&event);
        assert!(
            matches!(
                result,
                Err(PayloadError::Legacy) | Err(PayloadError::Unrecognized)
            ),
            "{event}: {result:?}"
        );
    }
}

#[test]
fn partial_forward_flags_are_legacy() {
    // forward_request_uri off (spec/03-plugins/27-aws-lambda/99-access_spec.lua).
    let mut kong = fixture(KONG);
    let obj = kong.as_object_mut().unwrap();
    obj.remove("request_uri");
    obj.remove("request_uri_args");
    assert!(matches!(parse(&kong), Err(PayloadError::Legacy)));

    // forward_request_headers off.
    let mut kong = fixture(KONG);
    kong.as_object_mut().unwrap().remove("request_headers");
    assert!(matches!(parse(&kong), Err(PayloadError::Legacy)));
}

#[test]
fn non_http_payloads_are_unrecognized() {
    for event in [
        json!({}),
        json!([]),
        json!([{"request_method": "POST"}]),
        json!("POST /events/a/b/c"),
        json!(null),
        json!(42),
        json!(true),
        // EventBridge scheduled event, Secrets Manager rotation, SQS.
        json!({"version": "0", "detail-type": "Scheduled Event", "source": "aws.events", "detail": {}}),
        json!({"Step": "createSecret", "SecretId": "arn", "ClientRequestToken": "t"}),
        json!({"Records": []}),
    ] {
        assert!(
            matches!(parse(&event), Err(PayloadError::Unrecognized)),
            "{event}"
        );
    }
}

#[test]
fn wrong_field_types_are_malformed() {
    let with = |text: &str, key: &str, value: Value| {
        let mut event = fixture(text);
        event[key] = value;
        event
    };
    assert_malformed(
        with(KONG, "request_headers", json!("authorization: x")),
        "request_headers",
    );
    assert_malformed(
        with(KONG, "request_headers", json!({"a": 1})),
        "request_headers",
    );
    assert_malformed(
        with(KONG, "request_headers", json!({"a": ["x", 2]})),
        "request_headers",
    );
    assert_malformed(with(KONG, "request_method", json!(1)), "request_method");
    assert_malformed(
        with(KONG, "request_method", json!("PO ST")),
        "request_method",
    );
    assert_malformed(with(KONG, "request_method", json!("")), "request_method");
    assert_malformed(with(KONG, "request_uri", json!(["/"])), "request_uri");
    assert_malformed(with(KONG, "request_uri", json!("")), "request_uri");
    assert_malformed(
        with(KONG, "request_uri_args", json!("a=b")),
        "request_uri_args",
    );
    assert_malformed(
        with(KONG, "request_uri_args", json!({"a": 1})),
        "request_uri_args",
    );
    assert_malformed(
        with(KONG, "request_uri_args", json!({"a": [{"b": 1}]})),
        "request_uri_args",
    );
    assert_malformed(with(KONG, "request_body", json!({"a": 1})), "request_body");
    assert_malformed(
        with(KONG, "request_body_base64", json!("true")),
        "request_body_base64",
    );

    assert_malformed(with(V1, "httpMethod", json!(null)), "httpMethod");
    assert_malformed(with(V1, "headers", json!("x")), "headers");
    assert_malformed(
        with(V1, "multiValueHeaders", json!({"a": [1]})),
        "multiValueHeaders",
    );
    assert_malformed(
        with(V1, "queryStringParameters", json!([1])),
        "queryStringParameters",
    );
    assert_malformed(with(V1, "isBase64Encoded", json!("yes")), "isBase64Encoded");
    assert_malformed(with(V1, "body", json!(12)), "body");
    assert_malformed(with(V1, "requestContext", json!("ctx")), "requestContext");
    assert_malformed(with(V1, "path", json!("")), "path");

    assert_malformed(with(V2, "headers", json!(["a"])), "headers");
    assert_malformed(with(V2, "cookies", json!("a=1")), "cookies");
    assert_malformed(with(V2, "rawQueryString", json!(1)), "rawQueryString");
    assert_malformed(
        with(V2, "requestContext", json!({"http": {}})),
        "requestContext.http.method",
    );
    assert_malformed(
        with(V2, "requestContext", json!({"http": "POST"})),
        "requestContext.http",
    );
    assert_malformed(
        with(
            V2,
            "requestContext",
            json!({"http": {"method": "POST"}, "requestId": 7}),
        ),
        "requestContext.requestId",
    );
}

#[test]
fn null_fields_count_as_absent() {
    let v1 = json!({
        "httpMethod": "POST",
        "path": "/events/a/b/c",
        "headers": null,
        "multiValueHeaders": null,
        "queryStringParameters": null,
        "multiValueQueryStringParameters": null,
        "pathParameters": null,
        "requestContext": null,
        "body": null,
        "isBase64Encoded": null
    });
    let req = parse(&v1).unwrap();
    assert!(req.headers.is_empty() && req.query.is_empty() && req.body.is_empty());

    // cjson may encode an empty Lua table as [].
    let mut kong = fixture(KONG);
    kong["request_uri_args"] = json!([]);
    assert!(parse(&kong).unwrap().query.is_empty());
}

#[test]
fn errors_never_echo_header_values() {
    let mut kong = fixture(KONG);
    kong["request_headers"]["authorization"] = json!(["Bearer secret-token", 1]);
    let message = parse(&kong).unwrap_err().to_string();
    assert!(!message.contains("secret-token"), "{message}");
    assert!(message.contains("authorization"), "{message}");
}

// --- Headers ------------------------------------------------------------

#[test]
fn headers_api() {
    let headers = Headers::from_pairs([("Accept", "a"), ("X-Two", "1"), ("accept", "b")]);
    assert_eq!(headers.get("ACCEPT"), Some("a"));
    assert_eq!(headers.get_all("Accept").collect::<Vec<_>>(), ["a", "b"]);
    assert_eq!(headers.get("missing"), None);
    assert_eq!(
        headers.iter().collect::<Vec<_>>(),
        [("accept", "a"), ("x-two", "1"), ("accept", "b")]
    );
    assert_eq!(headers.len(), 3);
    // The iterator outlives the name it was asked for.
    let values = {
        let name = String::from("x-two");
        headers.get_all(&name)
    };
    assert_eq!(values.collect::<Vec<_>>(), ["1"]);
}

// --- ProxyResponse ------------------------------------------------------

#[test]
fn proxy_response_serialises_camel_case() {
    let response = ProxyResponse::json(202, &json!({"topic": "persistent://t/ns/x"}))
        .with_header("X-Request-Id", "abc");
    let value = serde_json::to_value(&response).unwrap();
    assert_eq!(
        value,
        json!({
            "statusCode": 202,
            "headers": {"content-type": "application/json", "x-request-id": "abc"},
            "body": "{\"topic\":\"persistent://t/ns/x\"}",
            "isBase64Encoded": false,
            "cookies": []
        })
    );
    let back: ProxyResponse = serde_json::from_value(value).unwrap();
    assert_eq!(back, response);
}

#[test]
fn with_header_replaces_regardless_of_case() {
    let response = ProxyResponse::json(400, &json!({}))
        .with_header("Content-Type", "application/problem+json");
    assert_eq!(response.headers.len(), 1);
    assert_eq!(response.headers["content-type"], "application/problem+json");
}

// --- never panics -------------------------------------------------------

const INTERESTING_KEYS: &[&str] = &[
    "request_method",
    "request_uri",
    "request_uri_args",
    "request_headers",
    "request_body",
    "request_body_args",
    "request_body_base64",
    "version",
    "rawPath",
    "rawQueryString",
    "httpMethod",
    "path",
    "headers",
    "multiValueHeaders",
    "queryStringParameters",
    "multiValueQueryStringParameters",
    "body",
    "isBase64Encoded",
    "requestContext",
    "http",
    "method",
    "requestId",
    "cookies",
    "content-length",
    "kong-request-id",
];

fn arb_key() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(INTERESTING_KEYS).prop_map(str::to_owned),
        "[a-zA-Z_-]{0,6}",
    ]
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        prop_oneof![
            Just("2.0".to_owned()),
            Just("POST".to_owned()),
            Just("/events/a/b/c?x&y=1".to_owned()),
            Just("eyJhIjoxfQ==".to_owned()),
            Just("http://".to_owned()),
            ".{0,12}",
        ]
        .prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(arb_key(), inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #[test]
    fn arbitrary_json_never_panics(event in arb_json(), limit in 0usize..64) {
        let _ = parse_request(&event, limit);
    }

    #[test]
    fn mutated_fixtures_never_panic(
        which in 0usize..4,
        key in arb_key(),
        value in arb_json(),
        limit in 0usize..128,
    ) {
        let mut event = fixture([KONG, KONG_NDJSON, V1, V2][which]);
        event[key.as_str()] = value.clone();
        let _ = parse_request(&event, limit);
        if let Some(ctx) = event.get_mut("requestContext").and_then(Value::as_object_mut) {
            ctx.insert(key, value);
        }
        let _ = parse_request(&event, limit);
    }

    #[test]
    fn base64_bodies_round_trip(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let mut v2 = fixture(V2);
        v2["headers"].as_object_mut().unwrap().remove("content-length");
        v2["body"] = json!(b64(&bytes));
        v2["isBase64Encoded"] = json!(true);
        let limit = 200;
        match parse_request(&v2, limit) {
            Ok(req) => prop_assert_eq!(req.body, bytes),
            Err(PayloadError::BodyTooLarge { .. }) => prop_assert!(bytes.len() > limit),
            Err(other) => prop_assert!(false, "unexpected {other:?}"),
        }
    }
}
