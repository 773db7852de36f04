//! `PublishApp`: a `publish` function served through the Lambda Invoke API,
//! wired to the real broker, moto and an in-process OIDC issuer, with two
//! uniquely named tenants of its own (the `spawn_app` of these tests).
//!
//! Tenant A (`role_a`) has namespaces `orders` (broker grant: produce) and
//! `ungranted` (in the policy, but *no* broker grant). Tenant B has `orders`.
//! Callers in group `checkout` may produce to A, `billing` to B.

use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use kong_pulsar::config::Config;
use kong_pulsar::edge::publish::Publisher;
use pulsar::consumer::{ConsumerOptions, InitialPosition};
use pulsar::{Consumer, SubType, TokioExecutor};
use serde_json::{Value, json};

use crate::lambda::{Function, temp_file};
use crate::oidc::{Provider, TestIssuer};
use crate::outage::Switch;
use crate::{Stack, stack, unique, unix_now};

/// The audience the test policy accepts.
pub const AUDIENCE: &str = "kong-pulsar";
/// The `identity.iam.server_id` of the test policy.
pub const IAM_SERVER_ID: &str = "kong-pulsar";
/// The one AWS account the app's policy allows (moto's default account).
pub const IAM_ACCOUNT: &str = "123456789012";
/// An AWS account the app's policy does not allow.
pub const FOREIGN_ACCOUNT: &str = "444455556666";

/// Knobs for [`PublishApp::spawn_with`].
#[derive(Debug, Clone)]
pub struct AppOptions {
    /// `KP_SECRET_TTL` of the function.
    pub secret_ttl: &'static str,
    /// `KP_MAX_BODY_BYTES` of the function.
    pub max_body_bytes: usize,
    /// `KP_MAX_BATCH` of the function.
    pub max_batch: usize,
    /// Lifetime of tenant A's first token.
    pub token_a_ttl: Duration,
    /// The policy's `identity.kong.trusted`.
    pub kong_trusted: bool,
    /// The OIDC issuer's `token_types` (a YAML list), if any.
    pub oidc_token_types: Option<&'static str>,
    /// The OIDC issuer's `leeway_seconds` (the policy's default when `None`).
    pub oidc_leeway_seconds: Option<u64>,
    /// The OIDC issuer's `jwks_cache_seconds` and `jwks_refetch_seconds`
    /// (the policy's defaults when `None`).
    pub oidc_jwks_cache_seconds: Option<u64>,
    pub oidc_jwks_refetch_seconds: Option<u64>,
    /// The policy's `provenance:` section (off when `None`).
    pub provenance: Option<ProvenanceOptions>,
    /// `AWS_LAMBDA_MAX_CONCURRENCY` of the function (unset: one at a time).
    pub max_concurrency: Option<u32>,
    /// The Pulsar the app's tenants live on and its functions connect to: the
    /// standalone broker, or one way into the test cluster.
    pub pulsar: &'static Stack,
    /// Reach Secrets Manager, STS and the OIDC issuer through a [`Switch`]
    /// each ([`PublishApp::switches`]), so a test can take them away.
    pub switched: bool,
}

/// The switches in front of a [`PublishApp`]'s dependencies
/// ([`AppOptions::switched`]).
pub struct Switches {
    /// moto's Secrets Manager, as the function's `AWS_ENDPOINT_URL`.
    pub secrets_manager: Switch,
    /// moto's STS, as the policy's `identity.iam.sts_endpoint`.
    pub sts: Switch,
    /// The OIDC issuer: discovery and JWKS.
    pub idp: Switch,
}

/// How [`PublishApp`] signs events.
#[derive(Debug, Clone)]
pub struct ProvenanceOptions {
    /// Store a first key set before the function starts (`false`: the
    /// secret does not exist).
    pub seed: bool,
    /// The policy's `publish_lead`.
    pub publish_lead: &'static str,
}

impl Default for ProvenanceOptions {
    fn default() -> Self {
        Self {
            seed: true,
            publish_lead: "1h",
        }
    }
}

impl Default for AppOptions {
    fn default() -> Self {
        Self {
            secret_ttl: "5m",
            max_body_bytes: 64 * 1024,
            max_batch: 50,
            token_a_ttl: Duration::from_secs(3600),
            kong_trusted: false,
            oidc_token_types: None,
            oidc_leeway_seconds: None,
            provenance: None,
            max_concurrency: None,
            pulsar: stack(),
            switched: false,
            oidc_jwks_cache_seconds: None,
            oidc_jwks_refetch_seconds: None,
        }
    }
}

pub struct PublishApp {
    pub function: Function,
    /// Where its tenants live (see [`AppOptions::pulsar`]).
    pub pulsar: &'static Stack,
    /// The function's environment.
    env: Vec<(&'static str, String)>,
    pub issuer: TestIssuer,
    pub tenant_a: String,
    pub role_a: String,
    pub secret_a: String,
    pub tenant_b: String,
    /// The IAM role a rule lets produce to tenant A.
    pub iam_role: String,
    /// The STS endpoint the policy names (IAM credentials are made for it).
    pub sts_endpoint: url::Url,
    /// In front of the dependencies, when [`AppOptions::switched`].
    pub switches: Option<Switches>,
    /// The provenance key set's secret and the deployment's issuer name
    /// (set even when provenance is off, unused then).
    pub provenance_secret: String,
    pub provenance_issuer: String,
    policy_path: std::path::PathBuf,
    tokens_issued: std::sync::Mutex<Vec<String>>,
    signs: bool,
}

/// Knobs for [`PublishApp::consume_function`].
#[derive(Debug, Clone)]
pub struct ConsumeOptions {
    /// `KP_VISIBILITY_TIMEOUT`.
    pub visibility: &'static str,
    /// `KP_MAX_RESPONSE_BYTES` (the function's default when `None`).
    pub max_response_bytes: Option<usize>,
}

impl Default for ConsumeOptions {
    fn default() -> Self {
        Self {
            visibility: "30s",
            max_response_bytes: None,
        }
    }
}

impl PublishApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(AppOptions::default()).await
    }

    pub async fn spawn_with(options: AppOptions) -> Self {
        let stack = options.pulsar;
        let admin = stack.admin();
        let moto = url::Url::parse(&stack.aws_endpoint).expect("AWS_ENDPOINT_URL is a URL");
        let (issuer, switches) = if options.switched {
            let (issuer, idp) = TestIssuer::behind_switch().await;
            let switches = Switches {
                secrets_manager: Switch::in_front_of(&moto).await,
                sts: Switch::in_front_of(&moto).await,
                idp,
            };
            (issuer, Some(switches))
        } else {
            (TestIssuer::start().await, None)
        };
        let (aws_endpoint, sts_endpoint) = match &switches {
            Some(s) => (s.secrets_manager.url_for(&moto), s.sts.url_for(&moto)),
            None => (moto.clone(), moto.clone()),
        };
        let aws_endpoint = aws_endpoint.as_str().trim_end_matches('/').to_owned();
        let (tenant_a, tenant_b) = (unique("ta"), unique("tb"));
        let (role_a, role_b) = (unique("role-a"), unique("role-b"));
        let iam_role = unique("caller-role");
        let (secret_a, secret_b) = (
            format!("kong-pulsar/tokens/{tenant_a}"),
            format!("kong-pulsar/tokens/{tenant_b}"),
        );
        for (tenant, role, namespaces) in [
            (&tenant_a, &role_a, &["orders", "ungranted"][..]),
            (&tenant_b, &role_b, &["orders"][..]),
        ] {
            admin.create_tenant(tenant, &[]).await.unwrap();
            for ns in namespaces {
                admin.create_namespace(tenant, ns).await.unwrap();
            }
            // Tenant A's role may read its orders; tenant B's may not (the
            // broker's wall behind the policy's, for reads).
            let actions: &[&str] = if *tenant == tenant_a {
                &["produce", "consume"]
            } else {
                &["produce"]
            };
            admin.grant(tenant, "orders", role, actions).await.unwrap();
        }
        let token_a = stack.mint_token_expiring(&role_a, options.token_a_ttl, true);
        put_secret(
            &secret_a,
            &token_secret(&token_a, &role_a, options.token_a_ttl),
        )
        .await;
        put_secret(
            &secret_b,
            &token_secret(
                &stack.mint_token(&role_b),
                &role_b,
                Duration::from_secs(3600),
            ),
        )
        .await;

        let provenance_secret = format!("kong-pulsar/provenance/{tenant_a}");
        let provenance_issuer = unique("kp-deployment");
        if let Some(p) = &options.provenance
            && p.seed
        {
            let set = kong_pulsar::provenance::KeySet::first(chrono::Utc::now()).unwrap();
            put_secret(&provenance_secret, set.to_secret_value().expose()).await;
        }
        let provenance = options
            .provenance
            .as_ref()
            .map(|p| {
                format!(
                    "provenance: {{ issuer: {provenance_issuer}, signing_secret: {provenance_secret}, publish_lead: {} }}\n",
                    p.publish_lead
                )
            })
            .unwrap_or_default();
        let signing_secret = format!("kong-pulsar/token-signing-key/{tenant_a}");
        put_secret(
            &signing_secret,
            &json!({ "alg": "HS256", "key": STANDARD.encode(stack.token_secret()) }).to_string(),
        )
        .await;
        let policy = format!(
            r#"version: 1
pulsar: {{ cluster: {cluster}, admin_roles: [], token_signing_secret: {signing_secret} }}
identity:
  oidc:
    - issuer: "{issuer}"
      audiences: [{AUDIENCE}]
      algorithms: [RS256, ES256]
      claims: {{ subject: sub, groups: groups, service: cid }}{token_types}{leeway}{jwks_cache}
  iam: {{ sts_endpoint: "{sts}", server_id: {IAM_SERVER_ID}, max_age_seconds: 900, allowed_accounts: ["{IAM_ACCOUNT}"] }}
  kong: {{ trusted: {kong_trusted} }}
tenants:
  {tenant_a}:
    role: {role_a}
    token_secret: {secret_a}
    token_ttl: 24h
    namespaces:
      orders:
        schemas:
          order-created: {{ type: object, required: [orderId], properties: {{ orderId: {{ type: string }} }} }}
      ungranted: {{}}
  {tenant_b}:
    role: {role_b}
    token_secret: {secret_b}
    token_ttl: 24h
    namespaces:
      orders: {{}}
rules:
  - name: checkout-produces-a
    when: {{ issuer: "{issuer}", groups_any: [checkout] }}
    allow: {{ tenant: {tenant_a}, namespaces: [orders, ungranted], topics: ["*"], actions: [produce] }}
  - name: billing-produces-b
    when: {{ issuer: "{issuer}", groups_any: [billing] }}
    allow: {{ tenant: {tenant_b}, namespaces: [orders], topics: ["*"], actions: [produce] }}
  - name: iam-role-produces-a
    when: {{ auth_method: iam, iam_arn: "arn:aws:iam::{IAM_ACCOUNT}:role/{iam_role}" }}
    allow: {{ tenant: {tenant_a}, namespaces: [orders], topics: ["*"], actions: [produce] }}
  - name: ce-checkout-produces-a
    when: {{ issuer: "{issuer}", groups_any: [ce-checkout] }}
    allow: {{ tenant: {tenant_a}, namespaces: [orders], topics: ["*"], actions: [produce], ce_sources: ["urn:checkout:*"], ce_types: ["com.example.order.*"] }}
  - name: checkout-reads-a
    when: {{ issuer: "{issuer}", groups_any: [checkout] }}
    allow: {{ tenant: {tenant_a}, namespaces: [orders, ungranted], topics: ["*"], actions: [consume], subscriptions: ["checkout-*"] }}
  - name: billing-reads-b
    when: {{ issuer: "{issuer}", groups_any: [billing] }}
    allow: {{ tenant: {tenant_b}, namespaces: [orders], topics: ["*"], actions: [consume], subscriptions: ["*"] }}
  - name: kong-checkout-consumer-produces-a
    when: {{ auth_method: kong, kong_consumer: checkout-svc }}
    allow: {{ tenant: {tenant_a}, namespaces: [orders], topics: ["*"], actions: [produce] }}
{provenance}"#,
            issuer = issuer.issuer(),
            cluster = stack.cluster_name,
            kong_trusted = options.kong_trusted,
            token_types = options
                .oidc_token_types
                .map(|types| format!("\n      token_types: {types}"))
                .unwrap_or_default(),
            leeway = options
                .oidc_leeway_seconds
                .map(|seconds| format!("\n      leeway_seconds: {seconds}"))
                .unwrap_or_default(),
            jwks_cache = [
                ("jwks_cache_seconds", options.oidc_jwks_cache_seconds),
                ("jwks_refetch_seconds", options.oidc_jwks_refetch_seconds),
            ]
            .iter()
            .filter_map(|(key, value)| value.map(|v| format!("\n      {key}: {v}")))
            .collect::<String>(),
            sts = sts_endpoint,
        );
        let policy_path = temp_file("kp-policy", "policy.yaml", &policy);
        let mut env = vec![
            ("KP_POLICY_FILE", policy_path.display().to_string()),
            ("PULSAR_SERVICE_URL", stack.service_url.to_string()),
            ("AWS_ENDPOINT_URL", aws_endpoint),
            ("AWS_REGION", stack.aws_region.clone()),
            ("AWS_ACCESS_KEY_ID", "testing".into()),
            ("AWS_SECRET_ACCESS_KEY", "testing".into()),
            ("KP_SECRET_TTL", options.secret_ttl.into()),
            ("KP_MAX_BODY_BYTES", options.max_body_bytes.to_string()),
            ("KP_MAX_BATCH", options.max_batch.to_string()),
        ];
        if let Some(n) = options.max_concurrency {
            env.push(("AWS_LAMBDA_MAX_CONCURRENCY", n.to_string()));
        }
        let function = Function::start("publish", &env);
        Self {
            function,
            pulsar: stack,
            env,
            issuer,
            tenant_a,
            role_a,
            secret_a,
            tenant_b,
            iam_role,
            sts_endpoint,
            switches,
            provenance_secret,
            provenance_issuer,
            policy_path,
            tokens_issued: std::sync::Mutex::new(vec![token_a]),
            signs: options.provenance.is_some(),
        }
    }

    /// The same publisher, built in this process from the function's own
    /// environment, for what the Invoke API emulator cannot do: it sends a
    /// fixed invocation deadline, so a real one can only be set in-process.
    pub async fn in_process(&self) -> Publisher {
        let config = Config::from_lookup(|name| {
            self.env
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.clone())
        })
        .expect("the function's environment is a valid configuration");
        Publisher::build(&config, &stack().aws_config().await).expect("the publisher builds")
    }

    /// A valid Okta-shaped access token for `subject` in `groups`.
    pub fn token(&self, subject: &str, groups: &[&str]) -> String {
        self.token_expiring(subject, groups, unix_now() + 300)
    }

    /// As [`Self::token`], with `exp` (Unix seconds) set to `exp`.
    pub fn token_expiring(&self, subject: &str, groups: &[&str], exp: u64) -> String {
        let mut claims = self
            .issuer
            .claims_for(Provider::Okta, subject, groups, AUDIENCE);
        claims["exp"] = json!(exp);
        let token = self.issuer.sign(&claims);
        self.tokens_issued.lock().unwrap().push(token.clone());
        token
    }

    /// An `Authorization: KP-AWS-IAM …` value signed with credentials of IAM
    /// role `role` (from moto's `sts:AssumeRole`), as the client helper makes it.
    pub async fn iam_authorization(&self, role: &str, session: &str) -> String {
        self.iam_authorization_in(IAM_ACCOUNT, role, session).await
    }

    /// As [`Self::iam_authorization`], for role `role` of AWS account
    /// `account` (moto hands out credentials for any account, and its
    /// GetCallerIdentity then names that account).
    pub async fn iam_authorization_in(&self, account: &str, role: &str, session: &str) -> String {
        use aws_credential_types::Credentials;
        use kong_pulsar::identity::iam::client::{TokenRequest, authorization_header};
        let sts = aws_sdk_sts::Client::new(&stack().aws_config().await);
        let out = sts
            .assume_role()
            .role_arn(format!("arn:aws:iam::{account}:role/{role}"))
            .role_session_name(session)
            .send()
            .await
            .expect("moto AssumeRole");
        let c = out.credentials().expect("credentials");
        let credentials = Credentials::new(
            c.access_key_id(),
            c.secret_access_key(),
            Some(c.session_token().to_owned()),
            None,
            "moto-assume-role",
        );
        let request = TokenRequest {
            server_id: IAM_SERVER_ID.to_owned(),
            region: stack().aws_region.clone(),
            sts_endpoint: self.sts_endpoint.clone(),
        };
        let header = authorization_header(&credentials, &request, std::time::SystemTime::now())
            .expect("signing");
        self.tokens_issued.lock().unwrap().push(header.clone());
        header
    }

    /// A `rotate` function with the app's policy, its own admin-token secret
    /// (the stack's super-user) and the stack's broker and admin API.
    pub async fn rotate_function(&self) -> Function {
        self.rotate_function_with_admin(&self.pulsar.admin_url)
            .await
    }

    /// As [`Self::rotate_function`], reaching the admin API at `admin_url`
    /// (e.g. through a [`Switch`]).
    pub async fn rotate_function_with_admin(&self, admin_url: &url::Url) -> Function {
        let stack = self.pulsar;
        let admin = unique("kong-pulsar/admin");
        put_secret(
            &admin,
            &json!({ "token": stack.superuser_token() }).to_string(),
        )
        .await;
        Function::start(
            "rotate",
            &[
                ("KP_POLICY_FILE", self.policy_path.display().to_string()),
                ("PULSAR_SERVICE_URL", stack.service_url.to_string()),
                ("PULSAR_ADMIN_URL", admin_url.to_string()),
                ("KP_ADMIN_TOKEN_SECRET", admin),
                ("AWS_ENDPOINT_URL", stack.aws_endpoint.clone()),
                ("AWS_REGION", stack.aws_region.clone()),
                ("AWS_ACCESS_KEY_ID", "testing".into()),
                ("AWS_SECRET_ACCESS_KEY", "testing".into()),
            ],
        )
    }

    /// The publish function's environment with `overrides` replacing (or
    /// adding) variables, to start another function against the same policy.
    pub fn env_with(&self, overrides: &[(&'static str, String)]) -> Vec<(&'static str, String)> {
        let mut env: Vec<_> = self
            .env
            .iter()
            .filter(|(k, _)| !overrides.iter().any(|(o, _)| o == k))
            .cloned()
            .collect();
        env.extend(overrides.iter().cloned());
        env
    }

    /// A `consume` function with the app's policy and environment. When the
    /// app signs, it verifies against the publish function's JWKS, served
    /// over HTTP the way Kong's JWKS route serves it.
    pub async fn consume_function(&self, options: ConsumeOptions) -> Function {
        let mut env = self.env.clone();
        env.push(("KP_VISIBILITY_TIMEOUT", options.visibility.into()));
        if let Some(n) = options.max_response_bytes {
            env.push(("KP_MAX_RESPONSE_BYTES", n.to_string()));
        }
        if self.signs {
            env.push(("KP_PROVENANCE_JWKS_URL", self.jwks_gateway().await));
        }
        Function::start("consume", &env)
    }

    /// `http://127.0.0.1:{port}/events/.well-known/jwks.json`, answered by
    /// invoking the publish function's JWKS route (a one-route Kong).
    async fn jwks_gateway(&self) -> String {
        let invoke = self.function.invoke_url();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let route = axum::routing::get(move || {
            let invoke = invoke.clone();
            async move {
                let event = kong_event("GET", "/events/.well-known/jwks.json", &[], b"");
                let out: Value = reqwest::Client::new()
                    .post(&invoke)
                    .json(&event)
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                let status = axum::http::StatusCode::from_u16(
                    out["statusCode"].as_u64().unwrap_or(502) as u16,
                )
                .unwrap();
                let cache = out["headers"]["cache-control"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned();
                (
                    status,
                    [(axum::http::header::CACHE_CONTROL, cache)],
                    out["body"].as_str().unwrap_or_default().to_owned(),
                )
            }
        });
        let router = axum::Router::new().route("/events/.well-known/jwks.json", route);
        tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        format!("http://127.0.0.1:{port}/events/.well-known/jwks.json")
    }

    /// Every secret value this app handed out (tokens), for log checks.
    pub fn secrets_issued(&self) -> Vec<String> {
        self.tokens_issued.lock().unwrap().clone()
    }

    /// Replaces tenant A's token secret with a fresh token valid for `ttl`.
    pub async fn rotate_token_a(&self, ttl: Duration) -> String {
        let token = self.pulsar.mint_token_expiring(&self.role_a, ttl, true);
        self.replace_token_a(&token, ttl).await;
        token
    }

    /// Publishes with `send(n)` (`n`: how many were accepted so far) every
    /// `interval`, from before tenant A's token is replaced (after 3 s) until
    /// well past the old one's expiry (`old_token_ttl`, plus 10 s for the
    /// broker's 5 s re-check of expired tokens). Returns how many were
    /// accepted, and a line per failure.
    pub async fn publish_through_token_a_rotation<F, Fut>(
        &self,
        old_token_ttl: Duration,
        interval: Duration,
        mut send: F,
    ) -> (usize, Vec<String>)
    where
        F: FnMut(usize) -> Fut,
        Fut: std::future::Future<Output = Response>,
    {
        let started = Instant::now();
        let (mut rotated, mut ok, mut failures) = (false, 0, Vec::new());
        while started.elapsed() < old_token_ttl + Duration::from_secs(10) {
            if !rotated && started.elapsed() > Duration::from_secs(3) {
                self.rotate_token_a(Duration::from_secs(3600)).await;
                rotated = true;
            }
            let resp = send(ok).await;
            if resp.status == 202 {
                ok += 1;
            } else {
                failures.push(format!(
                    "{:.1}s: {} {:?}",
                    started.elapsed().as_secs_f64(),
                    resp.status,
                    resp.body
                ));
            }
            tokio::time::sleep(interval).await;
        }
        (ok, failures)
    }

    /// Stores `token` as tenant A's current token.
    pub async fn replace_token_a(&self, token: &str, ttl: Duration) {
        put_secret(&self.secret_a, &token_secret(token, &self.role_a, ttl)).await;
        self.tokens_issued.lock().unwrap().push(token.to_owned());
    }

    /// `persistent://{tenant}/{namespace}/{topic}`.
    pub fn topic(&self, tenant: &str, namespace: &str, topic: &str) -> String {
        format!("persistent://{tenant}/{namespace}/{topic}")
    }

    /// `/events/{tenant A}/orders/{topic}`: the path of tenant A's topic.
    pub fn orders_path(&self, topic: &str) -> String {
        format!("/events/{}/orders/{topic}", self.tenant_a)
    }

    /// Posts `body` with `headers` to tenant A's `orders/{topic}` through the
    /// publish function, as `subject` in `group`.
    pub async fn post_as(
        &self,
        subject: &str,
        group: &str,
        topic: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Response {
        let bearer = format!("Bearer {}", self.token(subject, &[group]));
        let mut all = vec![("authorization", bearer.as_str())];
        all.extend_from_slice(headers);
        self.call(&kong_event("POST", &self.orders_path(topic), &all, body))
            .await
    }

    /// Creates tenant A's `orders/{topic}` with `partitions` partitions and
    /// returns its full name.
    pub async fn create_partitioned(&self, topic: &str, partitions: u32) -> String {
        self.pulsar
            .admin()
            .put(
                &format!(
                    "/admin/v2/persistent/{}/orders/{topic}/partitions",
                    self.tenant_a
                ),
                json!(partitions),
            )
            .await
            .unwrap_or_else(|e| panic!("create {topic} with {partitions} partitions: {e}"));
        self.topic(&self.tenant_a, "orders", topic)
    }

    /// Posts one JSON event with message key `key` to tenant A's
    /// `orders/{topic}`, as `alice` in `checkout`.
    pub async fn publish_keyed(&self, topic: &str, key: &str, body: &str) -> Response {
        self.post_as(
            "alice",
            "checkout",
            topic,
            &[("content-type", "application/json"), ("x-event-key", key)],
            body.as_bytes(),
        )
        .await
    }

    /// Invokes the publish function and returns the proxy response.
    pub async fn call(&self, event: &Value) -> Response {
        self.function.call(event).await
    }

    /// A consumer (as the super-user) that sees everything published to
    /// `topic` from now on.
    pub async fn consumer(&self, topic: &str) -> Consumer<Vec<u8>, TokioExecutor> {
        let broker = self
            .pulsar
            .broker_as(self.pulsar.superuser_token())
            .await
            .unwrap();
        broker
            .client()
            .consumer()
            .with_topic(topic)
            .with_subscription(unique("sub"))
            .with_subscription_type(SubType::Exclusive)
            .with_options(
                ConsumerOptions::default().with_initial_position(InitialPosition::Earliest),
            )
            .build()
            .await
            .unwrap()
    }

    /// How many entries `topic` has stored (0 when it was never created):
    /// the proof that a rejected request published nothing.
    pub async fn stored(&self, topic: &str) -> u64 {
        let path = topic.replace("persistent://", "/admin/v2/persistent/") + "/internalStats";
        match self.pulsar.admin().get(&path).await {
            Ok(stats) => stats["entriesAddedCounter"].as_u64().unwrap_or(0),
            Err(e) if e.contains("404") => 0,
            Err(e) => panic!("{e}"),
        }
    }
}

/// What the function answered.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Value,
    pub body: Value,
}

/// A Kong-format (`forward_request_*` on) payload.
pub fn kong_event(method: &str, uri: &str, headers: &[(&str, &str)], body: &[u8]) -> Value {
    let mut h = serde_json::Map::new();
    for (k, v) in headers {
        h.insert(k.to_ascii_lowercase(), json!(v));
    }
    json!({
        "request_method": method,
        "request_uri": uri,
        "request_uri_args": {},
        "request_headers": h,
        "request_body": STANDARD.encode(body),
        "request_body_base64": true,
    })
}

/// A Kong-format `GET` of `path` with query arguments `query`, as a caller
/// holding bearer `token` sends it.
pub fn kong_get(path: &str, query: &[(&str, &str)], token: &str) -> Value {
    let raw: Vec<String> = query.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let uri = if raw.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{}", raw.join("&"))
    };
    let bearer = format!("Bearer {token}");
    let mut event = kong_event("GET", &uri, &[("authorization", &bearer)], b"");
    event["request_uri_args"] = query
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect::<serde_json::Map<_, _>>()
        .into();
    event
}

/// The JSON form of a tenant token secret (DESIGN §5).
pub fn token_secret(token: &str, role: &str, ttl: Duration) -> String {
    let expires = chrono::DateTime::from_timestamp((unix_now() + ttl.as_secs()) as i64, 0).unwrap();
    json!({ "token": token, "role": role, "expires_at": expires.to_rfc3339() }).to_string()
}

/// Creates secret `name` in moto with `value`, or makes `value` its current one.
pub async fn put_secret(name: &str, value: &str) {
    let client = aws_sdk_secretsmanager::Client::new(&stack().aws_config().await);
    if client
        .describe_secret()
        .secret_id(name)
        .send()
        .await
        .is_ok()
    {
        client
            .put_secret_value()
            .secret_id(name)
            .secret_string(value)
            .send()
            .await
            .unwrap();
    } else {
        client
            .create_secret()
            .name(name)
            .secret_string(value)
            .send()
            .await
            .unwrap();
    }
}

/// A shipped sample event from `events/`, pointed at `tenant` and carrying
/// `token`: every "/events/payments/" becomes "/events/{tenant}/" and the
/// placeholder bearer token becomes the real one, wherever they appear.
pub fn sample_event(name: &str, tenant: &str, token: &str) -> Value {
    fn walk(v: &mut Value, tenant: &str, token: &str) {
        match v {
            Value::String(s) => {
                *s = s
                    .replace("/events/payments/", &format!("/events/{tenant}/"))
                    .replace("eyJ...placeholder", token);
            }
            Value::Array(items) => items.iter_mut().for_each(|i| walk(i, tenant, token)),
            Value::Object(map) => map.values_mut().for_each(|i| walk(i, tenant, token)),
            _ => {}
        }
    }
    let mut event = crate::lambda::event(name);
    walk(&mut event, tenant, token);
    event
}

/// Receives one message within 10 s.
pub async fn receive(
    consumer: &mut Consumer<Vec<u8>, TokioExecutor>,
) -> pulsar::consumer::Message<Vec<u8>> {
    use futures::StreamExt;
    let msg = tokio::time::timeout(Duration::from_secs(10), consumer.next())
        .await
        .expect("a message within 10 s")
        .expect("consumer stream open")
        .expect("message");
    consumer.ack(&msg).await.expect("ack");
    msg
}

/// A message's properties as a map.
pub fn properties(
    msg: &pulsar::consumer::Message<Vec<u8>>,
) -> std::collections::HashMap<String, String> {
    msg.payload
        .metadata
        .properties
        .iter()
        .map(|kv| (kv.key.clone(), kv.value.clone()))
        .collect()
}
