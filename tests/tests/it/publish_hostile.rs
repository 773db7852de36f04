//! Bad input of every kind, through the real Invoke API: each case gets a 4xx
//! `application/problem+json` answer, nothing reaches Pulsar, the function
//! keeps running (no panic), and no token or signature appears in its logs.

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use kp_tests::app::{AUDIENCE, AppOptions, PublishApp, kong_event, sample_event};
use kp_tests::oidc::{Kid, Provider, SignOptions, Typ, unsecured};
use kp_tests::unix_now;
use serde_json::{Value, json};

struct Case {
    name: &'static str,
    event: Value,
    status: u16,
    code: &'static str,
}

#[tokio::test]
async fn hostile_and_malformed_requests_are_refused_and_publish_nothing() {
    let app = PublishApp::spawn_with(AppOptions {
        max_body_bytes: 16 * 1024,
        max_batch: 5,
        ..AppOptions::default()
    })
    .await;
    let tenant = app.tenant_a.clone();
    let target = app.topic(&tenant, "orders", "order-created");
    let uri = format!("/events/{tenant}/orders/order-created");
    let good = app.token("alice", &["checkout"]);
    let bearer = format!("Bearer {good}");
    let json_ct = ("content-type", "application/json");
    let auth = ("authorization", bearer.as_str());
    let order = br#"{"orderId":"1"}"#;
    let ev = |headers: &[(&str, &str)], body: &[u8]| kong_event("POST", &uri, headers, body);
    let claims = || {
        app.issuer.claims_for(
            Provider::Okta,
            "alice",
            &["checkout"],
            kp_tests::app::AUDIENCE,
        )
    };
    let with_claims = |patch: Value| {
        let mut c = claims();
        for (k, v) in patch.as_object().unwrap() {
            c[k] = v.clone();
        }
        format!("Bearer {}", app.issuer.sign(&c))
    };
    let now = unix_now();
    let hs256_with_public_key = {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(app.issuer.current_key().kid().to_owned());
        let key = EncodingKey::from_secret(app.issuer.public_key_pem().as_bytes());
        format!(
            "Bearer {}",
            jsonwebtoken::encode(&header, &claims(), &key).unwrap()
        )
    };
    let unknown_kid = format!(
        "Bearer {}",
        app.issuer.sign_with(
            &claims(),
            &SignOptions {
                kid: Kid::Named("not-a-key".into()),
                ..SignOptions::default()
            }
        )
    );
    let huge = format!("Bearer {}", "A".repeat(100_000));
    let oversize = vec![b' '; 17 * 1024];
    let batch_too_big = "{\"orderId\":\"1\"}\n".repeat(6);
    let mut legacy = kp_tests::lambda::event("publish-kong-legacy.json");
    legacy["authorization"] = json!(bearer);

    let cases = vec![
        Case {
            name: "no credentials",
            event: ev(&[json_ct], order),
            status: 401,
            code: "missing_credentials",
        },
        Case {
            name: "token in x-api-key",
            event: ev(&[json_ct, ("x-api-key", &good)], order),
            status: 401,
            code: "missing_credentials",
        },
        Case {
            name: "token in the query string",
            event: kong_event(
                "POST",
                &format!("{uri}?access_token={good}"),
                &[json_ct],
                order,
            ),
            status: 401,
            code: "missing_credentials",
        },
        Case {
            name: "garbled bearer",
            event: ev(&[json_ct, ("authorization", "Bearer abc.def")], order),
            status: 401,
            code: "invalid_token",
        },
        Case {
            name: "empty bearer",
            event: ev(&[json_ct, ("authorization", "Bearer ")], order),
            status: 401,
            code: "invalid_token",
        },
        Case {
            name: "basic auth",
            event: ev(&[json_ct, ("authorization", "Basic YWxpY2U6cHc=")], order),
            status: 401,
            code: "invalid_token",
        },
        Case {
            name: "alg none",
            event: ev(
                &[
                    json_ct,
                    (
                        "authorization",
                        &format!(
                            "Bearer {}",
                            unsecured(&claims(), Some(app.issuer.current_key().kid()))
                        ),
                    ),
                ],
                order,
            ),
            status: 401,
            code: "invalid_token",
        },
        Case {
            name: "HS256 signed with the public key",
            event: ev(&[json_ct, ("authorization", &hs256_with_public_key)], order),
            status: 401,
            code: "invalid_token",
        },
        Case {
            name: "expired",
            event: ev(
                &[
                    json_ct,
                    ("authorization", &with_claims(json!({"exp": now - 600}))),
                ],
                order,
            ),
            status: 401,
            code: "invalid_token",
        },
        Case {
            name: "not yet valid",
            event: ev(
                &[
                    json_ct,
                    ("authorization", &with_claims(json!({"nbf": now + 600}))),
                ],
                order,
            ),
            status: 401,
            code: "invalid_token",
        },
        Case {
            name: "wrong audience",
            event: ev(
                &[
                    json_ct,
                    (
                        "authorization",
                        &with_claims(json!({"aud": "someone-else"})),
                    ),
                ],
                order,
            ),
            status: 401,
            code: "invalid_token",
        },
        Case {
            name: "unknown issuer",
            event: ev(
                &[
                    json_ct,
                    (
                        "authorization",
                        &with_claims(json!({"iss": "https://idp.evil.test"})),
                    ),
                ],
                order,
            ),
            status: 401,
            code: "invalid_token",
        },
        Case {
            name: "unknown kid",
            event: ev(&[json_ct, ("authorization", &unknown_kid)], order),
            status: 401,
            code: "invalid_token",
        },
        Case {
            name: "100 KB token",
            event: ev(&[json_ct, ("authorization", &huge)], order),
            status: 401,
            code: "invalid_token",
        },
        Case {
            name: "two Authorization headers",
            event: {
                let mut e = ev(&[json_ct], order);
                e["request_headers"]["authorization"] = json!([bearer, bearer]);
                e
            },
            status: 400,
            code: "bad_request",
        },
        Case {
            name: "path traversal",
            event: kong_event(
                "POST",
                &format!("/events/{tenant}/../orders"),
                &[json_ct, auth],
                order,
            ),
            status: 400,
            code: "bad_request",
        },
        Case {
            name: "encoded traversal",
            event: kong_event(
                "POST",
                &format!("/events/{tenant}/%2e%2e/order-created"),
                &[json_ct, auth],
                order,
            ),
            status: 400,
            code: "bad_request",
        },
        Case {
            name: "encoded slash",
            event: kong_event(
                "POST",
                &format!("/events/{tenant}/orders/a%2Fb"),
                &[json_ct, auth],
                order,
            ),
            status: 400,
            code: "bad_request",
        },
        Case {
            name: "illegal characters",
            event: kong_event(
                "POST",
                &format!("/events/{tenant}/orders/top*ic"),
                &[json_ct, auth],
                order,
            ),
            status: 400,
            code: "bad_request",
        },
        Case {
            name: "overlong topic",
            event: kong_event(
                "POST",
                &format!("/events/{tenant}/orders/{}", "t".repeat(300)),
                &[json_ct, auth],
                order,
            ),
            status: 400,
            code: "bad_request",
        },
        Case {
            name: "GET",
            event: kong_event("GET", &uri, &[auth], b""),
            status: 405,
            code: "method_not_allowed",
        },
        Case {
            name: "other path",
            event: kong_event("POST", "/admin/v2/tenants", &[json_ct, auth], order),
            status: 404,
            code: "not_found",
        },
        Case {
            name: "reserved kp- property",
            event: ev(
                &[json_ct, auth, ("x-event-property-kp-source-id", "admin")],
                order,
            ),
            status: 400,
            code: "reserved_property",
        },
        Case {
            name: "reserved traceparent property",
            event: ev(
                &[json_ct, auth, ("x-event-property-traceparent", "x")],
                order,
            ),
            status: 400,
            code: "reserved_property",
        },
        Case {
            name: "bad event time",
            event: ev(&[json_ct, auth, ("x-event-time", "yesterday")], order),
            status: 400,
            code: "bad_request",
        },
        Case {
            name: "text/plain",
            event: ev(&[("content-type", "text/plain"), auth], order),
            status: 415,
            code: "unsupported_media_type",
        },
        Case {
            name: "no content type",
            event: ev(&[auth], order),
            status: 415,
            code: "unsupported_media_type",
        },
        Case {
            name: "body over the limit",
            event: ev(&[json_ct, auth], &oversize),
            status: 413,
            code: "payload_too_large",
        },
        Case {
            name: "not JSON",
            event: ev(&[json_ct, auth], b"orderId=1"),
            status: 400,
            code: "invalid_json",
        },
        Case {
            name: "empty body",
            event: ev(&[json_ct, auth], b""),
            status: 400,
            code: "invalid_json",
        },
        Case {
            name: "invalid UTF-8",
            event: ev(&[json_ct, auth], b"{\"orderId\":\"\xff\xfe\"}"),
            status: 400,
            code: "invalid_json",
        },
        Case {
            name: "schema violation",
            event: ev(&[json_ct, auth], br#"{"orderId":5}"#),
            status: 422,
            code: "schema_violation",
        },
        Case {
            name: "NDJSON with one bad line",
            event: ev(
                &[("content-type", "application/x-ndjson"), auth],
                b"{\"orderId\":\"1\"}\n{oops\n{\"orderId\":\"3\"}\n",
            ),
            status: 400,
            code: "invalid_json",
        },
        Case {
            name: "NDJSON with one schema violation",
            event: ev(
                &[("content-type", "application/x-ndjson"), auth],
                b"{\"orderId\":\"1\"}\n{\"orderId\":2}\n",
            ),
            status: 422,
            code: "schema_violation",
        },
        Case {
            name: "NDJSON over the batch limit",
            event: ev(
                &[("content-type", "application/x-ndjson"), auth],
                batch_too_big.as_bytes(),
            ),
            status: 413,
            code: "payload_too_large",
        },
        Case {
            name: "Kong legacy mode",
            event: legacy,
            status: 400,
            code: "unsupported_payload",
        },
        Case {
            name: "empty payload",
            event: json!({}),
            status: 400,
            code: "bad_request",
        },
        Case {
            name: "null payload",
            event: Value::Null,
            status: 400,
            code: "bad_request",
        },
        Case {
            name: "an SQS event",
            event: json!({"Records": [{"eventSource": "aws:sqs", "body": "{}"}]}),
            status: 400,
            code: "bad_request",
        },
        Case {
            name: "request_headers of the wrong type",
            event: {
                let mut e = ev(&[json_ct, auth], order);
                e["request_headers"] = json!("authorization: Bearer x");
                e
            },
            status: 400,
            code: "bad_request",
        },
    ];

    let mut failures = Vec::new();
    for case in &cases {
        let resp = app.call(&case.event).await;
        let code = resp.body["code"].as_str().unwrap_or("");
        if resp.status != case.status || code != case.code {
            failures.push(format!(
                "{}: got {} {code} ({}), want {} {}",
                case.name, resp.status, resp.body["detail"], case.status, case.code
            ));
            continue;
        }
        if resp.headers["content-type"] != "application/problem+json"
            || resp.body["requestId"].as_str().is_none_or(str::is_empty)
        {
            failures.push(format!(
                "{}: not a problem response: {:?} {:?}",
                case.name, resp.headers, resp.body
            ));
        }
        if resp.status == 401 && resp.headers["www-authenticate"].as_str().is_none() {
            failures.push(format!("{}: 401 without WWW-Authenticate", case.name));
        }
    }
    assert!(
        failures.is_empty(),
        "{} case(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );

    // Details that callers rely on.
    let resp = app
        .call(&ev(
            &[("content-type", "application/x-ndjson"), auth],
            b"{\"orderId\":\"1\"}\n{\"orderId\":2}\n",
        ))
        .await;
    assert_eq!(resp.body["violations"][0]["index"], 1);
    assert_eq!(resp.body["violations"][0]["pointer"], "/orderId");
    let resp = app
        .call(&ev(
            &[("content-type", "application/x-ndjson"), auth],
            b"{\"orderId\":\"1\"}\n{oops\n",
        ))
        .await;
    assert!(
        resp.body["detail"].as_str().unwrap().contains("line 2"),
        "{:?}",
        resp.body
    );
    let resp = app
        .call(&kp_tests::lambda::event("publish-kong-legacy.json"))
        .await;
    let detail = resp.body["detail"].as_str().unwrap();
    assert!(
        detail.contains("forward_request_headers") && detail.contains("forward_request_body"),
        "{detail}"
    );
    let resp = app.call(&kong_event("GET", &uri, &[auth], b"")).await;
    assert_eq!(resp.headers["allow"], "POST");

    // Nothing reached Pulsar, and the function is still the same warm process.
    assert_eq!(app.stored(&target).await, 0);
    let ok = app
        .call(&sample_event("publish-kong.json", &tenant, &good))
        .await;
    assert_eq!(ok.status, 202, "{:?}", ok.body);
    assert_eq!(app.stored(&target).await, 1);

    // No token, signature or key material in the logs.
    let logs = app.function.logs();
    assert!(logs.contains("\"publish\""), "audit lines are logged");
    for secret in app.secrets_issued() {
        let signature = secret.rsplit('.').next().unwrap();
        assert!(!logs.contains(&secret), "a token was logged");
        assert!(!logs.contains(signature), "a token signature was logged");
    }
    assert!(!logs.contains("BEGIN PUBLIC KEY") && !logs.contains(&"A".repeat(64)));
}

#[tokio::test]
async fn an_id_token_cannot_publish_where_only_access_tokens_are_accepted() {
    let app = PublishApp::spawn_with(AppOptions {
        oidc_token_types: Some("[at+jwt]"),
        ..AppOptions::default()
    })
    .await;
    let topic = app.topic(&app.tenant_a, "orders", "order-created");
    let claims = app
        .issuer
        .claims_for(Provider::Okta, "alice", &["checkout"], AUDIENCE);
    let bearer = |typ: Typ| {
        format!(
            "Bearer {}",
            app.issuer.sign_with(
                &claims,
                &SignOptions {
                    typ,
                    ..SignOptions::default()
                }
            )
        )
    };
    let event = |authorization: &str| {
        kong_event(
            "POST",
            &format!("/events/{}/orders/order-created", app.tenant_a),
            &[
                ("authorization", authorization),
                ("content-type", "application/json"),
            ],
            br#"{"orderId":"typed"}"#,
        )
    };

    // Same issuer, keys, audience and groups: an ID-token-shaped `typ` (or
    // none) is refused with its own code, and nothing is published.
    for typ in [Typ::Jwt, Typ::Absent] {
        let resp = app.call(&event(&bearer(typ))).await;
        assert_eq!(
            (resp.status, resp.body["code"].as_str()),
            (401, Some("token_type_not_allowed")),
            "{:?}",
            resp.body
        );
    }
    assert_eq!(app.stored(&topic).await, 0);
    let resp = app
        .call(&event(&bearer(Typ::Named("at+jwt".to_owned()))))
        .await;
    assert_eq!(resp.status, 202, "{:?}", resp.body);
    assert_eq!(app.stored(&topic).await, 1);
}
