//! One instance, many requests: the `publish` process started with
//! `AWS_LAMBDA_MAX_CONCURRENCY` (as Lambda Managed Instances start it) and
//! invoked through the Lambda Invoke API of `cargo lambda watch`, which hands
//! each pending `/next` poll its own invocation, so the requests really are
//! in flight in one process at once. Not timed: overlap is proven by a gate
//! in front of Secrets Manager that lets the tenants' token reads through only
//! once all of them are waiting at it.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::response::Response;
use futures::future::join_all;
use kong_pulsar_verify::Jwks;
use kong_pulsar_verify::verify::{Received, Verifier};
use kp_tests::app::{
    AUDIENCE, AppOptions, PublishApp, kong_event, properties, put_secret, receive, token_secret,
};
use kp_tests::lambda::{Function, temp_file};
use kp_tests::oidc::{Provider, TEST_CLIENT_ID, TestIssuer};
use kp_tests::{stack, unique};
use pulsar::consumer::{ConsumerOptions, InitialPosition};
use pulsar::{SubType, TokioExecutor};
use serde_json::{Value, json};

/// Tenants, callers and concurrent requests of the test; also the
/// function's `AWS_LAMBDA_MAX_CONCURRENCY`.
const N: usize = 64;

/// Lets Secrets Manager reads of secrets whose name contains `pattern`
/// through only when `target` of them are waiting at once (or, so a broken
/// build fails instead of hanging, after `give_up`).
struct Gate {
    pattern: String,
    target: usize,
    give_up: Duration,
    arrived: AtomicUsize,
    opened_by_count: AtomicBool,
    open: tokio::sync::watch::Sender<bool>,
}

impl Gate {
    async fn pass(&self) {
        let mut open = self.open.subscribe();
        if self.arrived.fetch_add(1, Ordering::SeqCst) + 1 >= self.target {
            self.opened_by_count.store(true, Ordering::SeqCst);
            self.open.send_replace(true);
        }
        let _ = tokio::time::timeout(self.give_up, open.wait_for(|open| *open)).await;
    }
}

/// A pass-through proxy to moto with a [`Gate`] on `GetSecretValue`.
struct AwsProxy {
    upstream: String,
    http: reqwest::Client,
    gate: Gate,
}

async fn forward(State(proxy): State<Arc<AwsProxy>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = to_bytes(body, usize::MAX).await.expect("request body");
    let target = parts.headers.get("x-amz-target").map(|v| v.as_bytes());
    if target == Some(b"secretsmanager.GetSecretValue")
        && String::from_utf8_lossy(&body).contains(&proxy.gate.pattern)
    {
        proxy.gate.pass().await;
    }
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut upstream = proxy
        .http
        .request(parts.method, format!("{}{path}", proxy.upstream))
        .body(body);
    for (name, value) in &parts.headers {
        if name != "host" && name != "content-length" {
            upstream = upstream.header(name, value);
        }
    }
    let answer = upstream.send().await.expect("moto answers");
    let mut response = Response::builder().status(answer.status());
    for (name, value) in answer.headers() {
        if name != "content-length" && name != "transfer-encoding" {
            response = response.header(name, value);
        }
    }
    let bytes = answer.bytes().await.expect("moto body");
    response.body(Body::from(bytes)).unwrap()
}

async fn start_proxy(gate: Gate) -> (String, Arc<AwsProxy>) {
    let proxy = Arc::new(AwsProxy {
        upstream: stack().aws_endpoint.trim_end_matches('/').to_owned(),
        http: reqwest::Client::new(),
        gate,
    });
    let app = axum::Router::new()
        .fallback(forward)
        .with_state(proxy.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, proxy)
}

/// One tenant of the test, its caller and what the caller sends.
struct Tenant {
    name: String,
    caller: String,
    topic: String,
    body: String,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_of_many_tenants_each_land_in_their_own_tenant_with_their_identity() {
    let stack = stack();
    let admin = stack.admin();
    let issuer = TestIssuer::start().await;
    let run = unique("cc");
    let tenants: Vec<Tenant> = (0..N)
        .map(|i| {
            let name = format!("{run}-t{i}");
            Tenant {
                topic: format!("persistent://{name}/orders/order-created"),
                caller: format!("caller-{i}"),
                body: json!({ "orderId": format!("{run}-{i}"), "tenant": i }).to_string(),
                name,
            }
        })
        .collect();

    // Broker side: a tenant, a namespace and a produce grant per role; a
    // token per role in its own secret.
    let mut tenant_yaml = String::new();
    let mut rules_yaml = String::new();
    for (i, t) in tenants.iter().enumerate() {
        let role = format!("{run}-role{i}");
        let secret = format!("kong-pulsar/tokens/{run}-{i}");
        admin.create_tenant(&t.name, &[]).await.unwrap();
        admin.create_namespace(&t.name, "orders").await.unwrap();
        admin
            .grant(&t.name, "orders", &role, &["produce"])
            .await
            .unwrap();
        let ttl = Duration::from_secs(3600);
        put_secret(&secret, &token_secret(&stack.mint_token(&role), &role, ttl)).await;
        tenant_yaml.push_str(&format!(
            "  {}:\n    role: {role}\n    token_secret: {secret}\n    token_ttl: 24h\n    namespaces:\n      orders: {{}}\n",
            t.name
        ));
        rules_yaml.push_str(&format!(
            "  - name: group-{i}-produces-to-its-tenant\n    when: {{ issuer: \"{}\", groups_any: [group-{i}] }}\n    allow: {{ tenant: {}, namespaces: [orders], topics: [\"*\"], actions: [produce] }}\n",
            issuer.issuer(),
            t.name
        ));
    }
    // The provenance key set: every event is signed by the one shared signer.
    let provenance_secret = format!("kong-pulsar/provenance/{run}");
    let provenance_issuer = format!("{run}-deployment");
    let set = kong_pulsar::provenance::KeySet::first(chrono::Utc::now()).unwrap();
    put_secret(&provenance_secret, set.to_secret_value().expose()).await;
    let policy = format!(
        r#"version: 1
pulsar: {{ cluster: standalone, admin_roles: [], token_signing_secret: kong-pulsar/token-signing-key }}
identity:
  oidc:
    - issuer: "{issuer}"
      audiences: [{AUDIENCE}]
      algorithms: [RS256, ES256]
      claims: {{ subject: sub, groups: groups, service: cid }}
tenants:
{tenant_yaml}rules:
{rules_yaml}provenance: {{ issuer: {provenance_issuer}, signing_secret: {provenance_secret}, publish_lead: 1h }}
"#,
        issuer = issuer.issuer(),
    );
    let policy_path = temp_file("kp-policy", "policy.yaml", &policy);

    // Only the tenants' token reads are gated: each cold role reads its own
    // secret once, so all N are at the gate together only if N invocations
    // are in flight in the process at once and nothing on their way there
    // (the secret cache, the role pool) serialises them.
    let (aws_endpoint, proxy) = start_proxy(Gate {
        pattern: format!("kong-pulsar/tokens/{run}-"),
        target: N,
        give_up: Duration::from_secs(8),
        arrived: AtomicUsize::new(0),
        opened_by_count: AtomicBool::new(false),
        open: tokio::sync::watch::channel(false).0,
    })
    .await;
    let function = Function::start(
        "publish",
        &[
            ("KP_POLICY_FILE", policy_path.display().to_string()),
            ("PULSAR_SERVICE_URL", stack.service_url.to_string()),
            ("AWS_ENDPOINT_URL", aws_endpoint),
            ("AWS_REGION", stack.aws_region.clone()),
            ("AWS_ACCESS_KEY_ID", "testing".into()),
            ("AWS_SECRET_ACCESS_KEY", "testing".into()),
            ("AWS_LAMBDA_MAX_CONCURRENCY", N.to_string()),
        ],
    );

    // Caller i sends one event to its own tenant and tries one into the
    // next tenant's topic; all 2N requests at once.
    let token = |i: usize| {
        issuer.sign(&issuer.claims_for(
            Provider::Okta,
            &tenants[i].caller,
            &[&format!("group-{i}")],
            AUDIENCE,
        ))
    };
    let event = |i: usize, into: &Tenant| {
        let bearer = format!("Bearer {}", token(i));
        let request_id = format!("{run}-req-{i}-{}", into.name);
        kong_event(
            "POST",
            &format!("/events/{}/orders/order-created", into.name),
            &[
                ("authorization", &bearer),
                ("content-type", "application/json"),
                ("kong-request-id", &request_id),
            ],
            tenants[i].body.as_bytes(),
        )
    };
    let own: Vec<Value> = (0..N).map(|i| event(i, &tenants[i])).collect();
    let foreign: Vec<Value> = (0..N).map(|i| event(i, &tenants[(i + 1) % N])).collect();
    let (own, foreign) = tokio::join!(
        join_all(own.iter().map(|e| function.invoke(e))),
        join_all(foreign.iter().map(|e| function.invoke(e))),
    );

    assert!(
        proxy.gate.opened_by_count.load(Ordering::SeqCst),
        "only {} of {N} token reads reached the gate before it gave up: the invocations did not overlap in one process, or something on their way (secret cache, role pool) serialised them; function log:\n{}",
        proxy.gate.arrived.load(Ordering::SeqCst),
        function.logs()
    );
    let mut message_ids = HashMap::new();
    for (i, (status, out)) in own.iter().enumerate() {
        assert_eq!(*status, 200, "{out}");
        let body: Value = serde_json::from_str(out["body"].as_str().unwrap_or("")).unwrap();
        assert_eq!(out["statusCode"], 202, "caller {i}: {body}");
        assert_eq!(body["topic"], tenants[i].topic.as_str(), "caller {i}");
        message_ids.insert(i, body["messageId"].as_str().unwrap().to_owned());
    }
    for (i, (status, out)) in foreign.iter().enumerate() {
        assert_eq!(*status, 200, "{out}");
        assert_eq!(
            out["statusCode"], 403,
            "caller {i} into another tenant: {out}"
        );
    }

    // Read back, per tenant: exactly one message, the one its caller sent,
    // carrying its caller's identity and a signature that binds it.
    let jwks = {
        let (status, out) = function
            .invoke(&kong_event(
                "GET",
                "/events/.well-known/jwks.json",
                &[],
                b"",
            ))
            .await;
        assert_eq!((status, &out["statusCode"]), (200, &json!(200)), "{out}");
        serde_json::from_str::<Jwks>(out["body"].as_str().unwrap()).unwrap()
    };
    let reader = stack.broker_as(stack.superuser_token()).await.unwrap();
    let verifier = Verifier::default().with_issuer(&provenance_issuer);
    let idp = issuer.issuer();
    for (i, t) in tenants.iter().enumerate() {
        let mut consumer: pulsar::Consumer<Vec<u8>, TokioExecutor> = reader
            .client()
            .consumer()
            .with_topic(&t.topic)
            .with_subscription(unique("sub"))
            .with_subscription_type(SubType::Exclusive)
            .with_options(
                ConsumerOptions::default().with_initial_position(InitialPosition::Earliest),
            )
            .build()
            .await
            .unwrap();
        let msg = receive(&mut consumer).await;
        assert_eq!(msg.payload.data, t.body.as_bytes(), "tenant {i}");
        let props = properties(&msg);
        let expected = [
            ("kp-source-id", t.caller.as_str()),
            ("kp-tenant", t.name.as_str()),
            ("kp-auth-method", "oidc"),
            ("kp-issuer", idp.as_str()),
            ("kp-service-tag", TEST_CLIENT_ID),
            ("kp-request-id", &format!("{run}-req-{i}-{}", t.name)),
        ];
        for (name, value) in expected {
            assert_eq!(
                props.get(name).map(String::as_str),
                Some(value),
                "tenant {i}: {name}"
            );
        }
        let id = &msg.message_id.id;
        assert_eq!(
            message_ids[&i],
            format!(
                "{}:{}:{}:{}",
                id.ledger_id,
                id.entry_id,
                id.partition.unwrap_or(-1),
                id.batch_index.unwrap_or(-1)
            ),
            "tenant {i}: the receipt names this message"
        );
        let verified = verifier
            .verify(
                &Received {
                    topic: &msg.topic,
                    payload: &msg.payload.data,
                    key: msg.payload.metadata.partition_key.as_deref(),
                    event_time_ms: msg.payload.metadata.event_time,
                    properties: &props,
                },
                &jwks,
            )
            .unwrap_or_else(|e| panic!("tenant {i}: {e}"));
        assert_eq!(verified.claims.source_id, t.caller, "tenant {i}");
        assert_eq!(verified.claims.tenant, t.name, "tenant {i}");
        // Nothing else landed there: not the refused attempt into it.
        assert_eq!(
            topic_entries(&t.topic).await,
            1,
            "tenant {i} holds exactly its caller's event"
        );
    }
}

/// Entries `topic` has stored (its `internalStats`).
async fn topic_entries(topic: &str) -> u64 {
    let path = topic.replace("persistent://", "/admin/v2/persistent/") + "/internalStats";
    stack().admin().get(&path).await.unwrap()["entriesAddedCounter"]
        .as_u64()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_retries_under_one_idempotency_key_publish_once() {
    let app = PublishApp::spawn_with(AppOptions {
        max_concurrency: Some(16),
        ..AppOptions::default()
    })
    .await;
    let topic = app.topic(&app.tenant_b, "orders", "invoices");
    let bearer = format!("Bearer {}", app.token("billing-svc", &["billing"]));
    let event = kong_event(
        "POST",
        &format!("/events/{}/orders/invoices", app.tenant_b),
        &[
            ("authorization", &bearer),
            ("content-type", "application/json"),
            ("idempotency-key", "invoice-2025-0042"),
        ],
        br#"{"invoice":42}"#,
    );
    let answers = join_all((0..16).map(|_| app.call(&event))).await;
    let first = &answers[0].body["messageId"];
    for answer in &answers {
        assert_eq!(answer.status, 202, "{:?}", answer.body);
        assert_eq!(
            &answer.body["messageId"], first,
            "every retry gets the first receipt"
        );
    }
    let replayed = answers
        .iter()
        .filter(|a| a.headers["idempotent-replayed"] == "true")
        .count();
    assert_eq!(
        replayed, 15,
        "one attempt published, the others replayed it"
    );
    assert_eq!(app.stored(&topic).await, 1, "published once");
}
