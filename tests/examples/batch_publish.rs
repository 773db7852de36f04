//! One-off measurement (not a timed test, not the batch bench of issue 11):
//! wall time of NDJSON requests of `N` events (~200 B each) through
//! `Publisher::handle` in-process, against the running local stack, next to a
//! bare pulsar-rs producer sending the same events pipelined
//! (`send_non_blocking` for all, then the receipts).
//!
//! ```text
//! cargo run -p kp-tests --example batch_publish [-- N [ROUNDS]]   # default 500 events, 5 rounds
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use kong_pulsar::config::{Config, PolicySource};
use kong_pulsar::edge::publish::Publisher;
use kong_pulsar::policy::Policy;
use kong_pulsar::pulsar::broker::{Broker, Timeouts};
use kong_pulsar::secrets::{SecretValue, SecretsManager};
use kp_tests::app::kong_event;
use kp_tests::oidc::{Provider, TestIssuer};
use kp_tests::{stack, unique, unix_now};
use lambda_runtime::{Context, LambdaEvent};
use pulsar::producer::ProducerOptions;
use serde_json::json;

const AUDIENCE: &str = "kong-pulsar";
const PAYLOAD: &str = r#"{"orderId":"ord-20250601-000123","customerId":"cus-4711","amount":42.5,"currency":"EUR","items":[{"sku":"SKU-1001","qty":2},{"sku":"SKU-2002","qty":1}],"shippingCountry":"DE","createdAt":"2025-06-01T12:34:56.789Z"}"#;

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let events: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(500);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(5);
    let stack = stack();
    let (tenant, role) = (unique("batch"), unique("batch-role"));
    let secret = format!("kong-pulsar/tokens/{tenant}");
    let admin = stack.admin();
    admin.create_tenant(&tenant, &[]).await.unwrap();
    admin.create_namespace(&tenant, "orders").await.unwrap();
    admin
        .grant(&tenant, "orders", &role, &["produce"])
        .await
        .unwrap();
    let sdk = stack.aws_config().await;
    let expires = chrono::DateTime::from_timestamp((unix_now() + 3600) as i64, 0).unwrap();
    aws_sdk_secretsmanager::Client::new(&sdk)
        .create_secret()
        .name(&secret)
        .secret_string(
            json!({ "token": stack.mint_token(&role), "role": role, "expires_at": expires.to_rfc3339() })
                .to_string(),
        )
        .send()
        .await
        .unwrap();
    let issuer = TestIssuer::start().await;
    let policy = format!(
        r#"version: 1
pulsar: {{ cluster: standalone, admin_roles: [], token_signing_secret: kong-pulsar/token-signing-key }}
identity:
  oidc:
    - issuer: "{iss}"
      audiences: [{AUDIENCE}]
      algorithms: [RS256]
      claims: {{ subject: sub, groups: groups, service: cid }}
  kong: {{ trusted: false }}
tenants:
  {tenant}:
    role: {role}
    token_secret: {secret}
    token_ttl: 24h
    namespaces:
      orders:
        schemas:
          order-created: {{ type: object, required: [orderId], properties: {{ orderId: {{ type: string }} }} }}
rules:
  - name: checkout-produces
    when: {{ issuer: "{iss}", groups_any: [checkout] }}
    allow: {{ tenant: {tenant}, namespaces: [orders], topics: ["*"], actions: [produce] }}
"#,
        iss = issuer.issuer(),
    );
    let config = Config {
        policy: PolicySource::Inline(policy.clone()),
        pulsar_service_url: stack.service_url.clone(),
        pulsar_admin_url: None,
        admin_token_secret: None,
        secret_ttl: Duration::from_secs(300),
        max_body_bytes: 1 << 20,
        max_batch: events.max(1),
        max_producers: kong_pulsar::config::DEFAULT_MAX_PRODUCERS,
        metadata: kong_pulsar::config::MetadataLimits::default(),
    };
    let publisher = Publisher::build_with(
        &config,
        Policy::from_str(&policy, None).unwrap(),
        SecretsManager::from_conf(&sdk),
    )
    .unwrap();
    let body: String = (0..events).map(|_| format!("{PAYLOAD}\n")).collect();
    let request = |token: &str| {
        kong_event(
            "POST",
            &format!("/v1/events/{tenant}/orders/order-created"),
            &[
                ("authorization", &format!("Bearer {token}")),
                ("content-type", "application/x-ndjson"),
            ],
            body.as_bytes(),
        )
    };
    let token = issuer.sign(&issuer.claims_for(Provider::Okta, "svc", &["checkout"], AUDIENCE));
    let mut context = Context::default();
    context.request_id = "batch".into();

    let topic = format!("persistent://{tenant}/orders/order-created");
    let bare = Broker::connect(
        &stack.service_url,
        Arc::new(SecretValue::new(stack.mint_token(&role))),
        Timeouts::default(),
    )
    .await
    .unwrap();
    // pulsar-rs fails a send with `SlowDown` once 100 messages wait in the
    // connection's outbound channel, unless told to wait for room.
    let mut producer = bare
        .client()
        .producer()
        .with_topic(&topic)
        .with_options(ProducerOptions {
            block_queue_if_full: true,
            ..ProducerOptions::default()
        })
        .build()
        .await
        .unwrap();

    // Warm-up: the handler's client, producer, token, JWKS.
    let warm = publisher
        .handle(LambdaEvent::new(request(&token), context.clone()))
        .await;
    assert_eq!(warm.status_code, 202, "{}", warm.body);
    eprintln!(
        "{events} events × {} B per request, {rounds} rounds",
        PAYLOAD.len()
    );
    let (mut handler, mut native) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let t = Instant::now();
        let response = publisher
            .handle(LambdaEvent::new(request(&token), context.clone()))
            .await;
        handler.push(t.elapsed());
        assert_eq!(response.status_code, 202, "{}", response.body);

        let t = Instant::now();
        let mut receipts = Vec::with_capacity(events);
        for _ in 0..events {
            receipts.push(
                producer
                    .send_non_blocking(PAYLOAD.as_bytes().to_vec())
                    .await
                    .unwrap(),
            );
        }
        for r in receipts {
            r.await.unwrap();
        }
        native.push(t.elapsed());
    }
    let median = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let (h, n) = (median(&mut handler), median(&mut native));
    eprintln!(
        "Publisher::handle: median {:.1} ms  (all: {:?})",
        h.as_secs_f64() * 1e3,
        handler
    );
    eprintln!(
        "bare pulsar-rs pipelined: median {:.1} ms  (all: {:?})",
        n.as_secs_f64() * 1e3,
        native
    );
    eprintln!("ratio {:.2}×", h.as_secs_f64() / n.as_secs_f64());
}
