//! What the benches in `tests/benches/` share: the run mode (`--quick`), the
//! clocks and statistics they report with, and [`Fixture`], one tenant on the
//! running stack that a publisher (in-process or a spawned `publish` binary)
//! and a bare pulsar-rs client both publish to (and a [`Reader`] and a bare
//! reader both read from), so every ratio compares the two on the same
//! broker, topic and payload in the same run.
//!
//! Results go to stderr (stdout carries the handler's EMF lines); a target
//! that is missed prints MISS and never fails the run.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use kong_pulsar::config::Config;
use kong_pulsar::edge::consume::Reader;
use kong_pulsar::edge::publish::Publisher;
use kong_pulsar::pulsar::broker::{Broker, Timeouts};
use kong_pulsar::secrets::SecretValue;
use lambda_runtime::{Context, LambdaEvent};
use rustix::time::{ClockId, clock_gettime};
use serde_json::{Value, json};

use crate::app::{AUDIENCE, kong_event};
use crate::lambda::temp_file;
use crate::oidc::{Provider, TestIssuer};
use crate::{stack, unique, unix_now};

/// One order event (~200 B) that satisfies the fixture topic's schema.
pub const PAYLOAD: &str = r#"{"orderId":"ord-20250601-000123","customerId":"cus-4711","amount":42.5,"currency":"EUR","items":[{"sku":"SKU-1001","qty":2},{"sku":"SKU-2002","qty":1}],"shippingCountry":"DE","createdAt":"2025-06-01T12:34:56.789Z"}"#;
/// The fixture's namespace and topic.
pub const NAMESPACE: &str = "orders";
pub const TOPIC: &str = "order-created";
/// Test-issuer tokens live five minutes: benches sign a fresh one this often.
pub const CALLS_PER_TOKEN: usize = 250;
/// The durable subscriptions the fixture's consume rule allows (`bench-*`).
pub const SUBSCRIPTIONS: &str = "bench-*";

/// `--quick` on the command line (cargo passes `--bench` too; anything else
/// is ignored).
pub fn quick() -> bool {
    std::env::args().skip(1).any(|a| a == "--quick")
}

/// One tenant with produce and consume grants, its token secret in moto, an
/// RS256 test issuer whose group `checkout` may produce to it and read it
/// (cursor reads, and the [`SUBSCRIPTIONS`]), and a seeded provenance key
/// set (`KeySet::first`), so a publisher can run with or without
/// `provenance:` against the same topic.
pub struct Fixture {
    pub tenant: String,
    pub role: String,
    /// `persistent://{tenant}/orders/order-created`.
    pub topic: String,
    pub issuer: TestIssuer,
    pub token_secret: String,
    pub provenance_secret: String,
    pub provenance_issuer: String,
}

impl Fixture {
    pub async fn setup(prefix: &str) -> Self {
        let stack = stack();
        let tenant = unique(prefix);
        let role = unique(&format!("{prefix}-role"));
        let admin = stack.admin();
        admin.create_tenant(&tenant, &[]).await.expect("tenant");
        admin
            .create_namespace(&tenant, NAMESPACE)
            .await
            .expect("namespace");
        admin
            .grant(&tenant, NAMESPACE, &role, &["produce", "consume"])
            .await
            .expect("grant produce and consume");
        let token_secret = format!("kong-pulsar/tokens/{tenant}");
        let expires =
            chrono::DateTime::from_timestamp((unix_now() + 3600) as i64, 0).expect("a valid time");
        let token = json!({
            "token": stack.mint_token(&role),
            "role": role,
            "expires_at": expires.to_rfc3339(),
        });
        let provenance_secret = format!("kong-pulsar/provenance/{tenant}");
        let keys = kong_pulsar::provenance::KeySet::first(chrono::Utc::now()).expect("a key set");
        let sm = aws_sdk_secretsmanager::Client::new(&stack.aws_config().await);
        for (name, value) in [
            (&token_secret, token.to_string()),
            (
                &provenance_secret,
                keys.to_secret_value().expose().to_owned(),
            ),
        ] {
            sm.create_secret()
                .name(name)
                .secret_string(value)
                .send()
                .await
                .expect("create a secret in moto");
        }
        Self {
            topic: format!("persistent://{tenant}/{NAMESPACE}/{TOPIC}"),
            issuer: TestIssuer::start().await,
            provenance_issuer: unique("kp-bench"),
            tenant,
            role,
            token_secret,
            provenance_secret,
        }
    }

    /// The policy: the issuer, the tenant with a schema on the topic, a
    /// produce rule and a consume rule (after it, so a publish decision
    /// matches the first rule as before), and `provenance:` when `signed`.
    pub fn policy(&self, signed: bool) -> String {
        self.policy_with(signed, &[])
    }

    /// [`Fixture::policy`] that also trusts `others` (each an issuer of
    /// ES256 tokens, with the fixture issuer's claim mapping and no rule).
    pub fn policy_with(&self, signed: bool, others: &[&TestIssuer]) -> String {
        let others: String = others
            .iter()
            .map(|other| {
                format!(
                    "    - issuer: \"{}\"\n      audiences: [{AUDIENCE}]\n      algorithms: [ES256]\n      claims: {{ subject: sub, groups: groups, service: cid }}\n",
                    other.issuer()
                )
            })
            .collect();
        let provenance = if signed {
            format!(
                "provenance: {{ issuer: {}, signing_secret: {} }}\n",
                self.provenance_issuer, self.provenance_secret
            )
        } else {
            String::new()
        };
        format!(
            r#"version: 1
pulsar: {{ cluster: standalone, admin_roles: [], token_signing_secret: kong-pulsar/token-signing-key }}
identity:
  oidc:
    - issuer: "{iss}"
      audiences: [{AUDIENCE}]
      algorithms: [RS256]
      claims: {{ subject: sub, groups: groups, service: cid }}
{others}  kong: {{ trusted: false }}
tenants:
  {tenant}:
    role: {role}
    token_secret: {secret}
    token_ttl: 24h
    namespaces:
      {NAMESPACE}:
        schemas:
          {TOPIC}:
            type: object
            required: [orderId, amount, currency]
            properties:
              orderId: {{ type: string }}
              customerId: {{ type: string }}
              amount: {{ type: number, minimum: 0 }}
              currency: {{ type: string, minLength: 3, maxLength: 3 }}
              items:
                type: array
                items: {{ type: object, required: [sku, qty], properties: {{ sku: {{ type: string }}, qty: {{ type: integer, minimum: 1 }} }} }}
rules:
  - name: checkout-produces
    when: {{ issuer: "{iss}", groups_any: [checkout] }}
    allow: {{ tenant: {tenant}, namespaces: [{NAMESPACE}], topics: ["*"], actions: [produce] }}
  - name: checkout-consumes
    when: {{ issuer: "{iss}", groups_any: [checkout] }}
    allow: {{ tenant: {tenant}, namespaces: [{NAMESPACE}], topics: ["*"], actions: [consume], subscriptions: ["{SUBSCRIPTIONS}"] }}
{provenance}"#,
            iss = self.issuer.issuer(),
            tenant = self.tenant,
            role = self.role,
            secret = self.token_secret,
        )
    }

    /// The `publish` function's environment for this fixture (policy in a
    /// temporary file), as `tests/src/app.rs` starts it; batches up to 500.
    pub fn function_env(&self, signed: bool) -> Vec<(&'static str, String)> {
        let stack = stack();
        let policy: PathBuf = temp_file("kp-bench-policy", "policy.yaml", &self.policy(signed));
        vec![
            ("KP_POLICY_FILE", policy.display().to_string()),
            ("PULSAR_SERVICE_URL", stack.service_url.to_string()),
            ("AWS_ENDPOINT_URL", stack.aws_endpoint.clone()),
            ("AWS_REGION", stack.aws_region.clone()),
            ("AWS_ACCESS_KEY_ID", "testing".into()),
            ("AWS_SECRET_ACCESS_KEY", "testing".into()),
            ("KP_SECRET_TTL", "5m".into()),
            ("KP_MAX_BATCH", "500".into()),
        ]
    }

    /// A publisher built in this process from [`Self::function_env`], as
    /// the function's `main` builds it.
    pub async fn publisher(&self, signed: bool) -> Publisher {
        let env = self.function_env(signed);
        let config = Config::from_lookup(|name| {
            env.iter().find(|(k, _)| *k == name).map(|(_, v)| v.clone())
        })
        .expect("a valid configuration");
        Publisher::build(&config, &stack().aws_config().await).expect("the publisher builds")
    }

    /// A reader built in this process from [`Self::function_env`] without
    /// `provenance:` (so it needs no key set URL), as the consume
    /// function's `main` builds it: every message's verdict is
    /// `not_configured`, rendered but not checked.
    pub async fn reader(&self) -> Reader {
        let env = self.function_env(false);
        let config = Config::from_lookup(|name| {
            env.iter().find(|(k, _)| *k == name).map(|(_, v)| v.clone())
        })
        .expect("a valid configuration");
        Reader::build(&config, &stack().aws_config().await).expect("the reader builds")
    }

    /// A fresh caller token (RS256, group `checkout`), valid five minutes.
    pub fn token(&self) -> String {
        self.issuer.sign(&self.issuer.claims_for(
            Provider::Okta,
            "svc-checkout",
            &["checkout"],
            AUDIENCE,
        ))
    }

    /// A Kong-format request publishing `events` copies of [`PAYLOAD`]:
    /// one JSON event when `events` is `None`, else an NDJSON batch.
    pub fn request(&self, token: &str, events: Option<usize>) -> Value {
        let (body, media) = match events {
            None => (PAYLOAD.to_owned(), "application/json"),
            Some(n) => (ndjson(n), "application/x-ndjson"),
        };
        kong_event(
            "POST",
            &format!("/v1/events/{}/{NAMESPACE}/{TOPIC}", self.tenant),
            &[
                ("host", "api.example.com"),
                ("user-agent", "checkout-service/2.3.1"),
                ("content-type", media),
                ("content-length", &body.len().to_string()),
                ("authorization", &format!("Bearer {token}")),
                ("x-event-key", "ord-20250601-000123"),
                ("x-forwarded-for", "203.0.113.7"),
            ],
            body.as_bytes(),
        )
    }

    /// A bare pulsar-rs client as the tenant's role (a token minted here).
    pub async fn bare_broker(&self) -> Broker {
        Broker::connect(
            &stack().service_url,
            Arc::new(SecretValue::new(stack().mint_token(&self.role))),
            Timeouts::default(),
        )
        .await
        .expect("the bare client connects")
    }
}

/// `n` copies of [`PAYLOAD`], one per line.
pub fn ndjson(n: usize) -> String {
    (0..n).map(|_| format!("{PAYLOAD}\n")).collect()
}

/// `request` as a Lambda event with a request id and no deadline.
pub fn lambda_event(request: &Value) -> LambdaEvent<Value> {
    let mut context = Context::default();
    context.request_id = "bench".to_owned();
    LambdaEvent::new(request.clone(), context)
}

// ---------------------------------------------------------------------------
// Clocks and statistics

/// CPU time of the whole process so far, in nanoseconds.
pub fn cpu_ns() -> u64 {
    let t = clock_gettime(ClockId::ProcessCPUTime);
    (t.tv_sec as u64) * 1_000_000_000 + t.tv_nsec as u64
}

/// The calling thread's CPU time so far, in nanoseconds.
pub fn thread_cpu_ns() -> u64 {
    let t = clock_gettime(ClockId::ThreadCPUTime);
    (t.tv_sec as u64) * 1_000_000_000 + t.tv_nsec as u64
}

/// The calling thread's CPU clock, for timing pure-CPU steps: unlike wall
/// time it does not count the time the thread was preempted.
#[derive(Debug, Clone, Copy)]
pub struct CpuClock {
    /// What one reading costs (median of back-to-back pairs), subtracted.
    overhead: u64,
}

impl CpuClock {
    pub fn calibrate() -> Self {
        let mut pairs: Vec<u64> = (0..1_001)
            .map(|_| {
                let a = thread_cpu_ns();
                thread_cpu_ns() - a
            })
            .collect();
        pairs.sort_unstable();
        Self {
            overhead: pairs[pairs.len() / 2],
        }
    }

    pub fn start(&self) -> u64 {
        thread_cpu_ns()
    }

    pub fn stop(&self, start: u64) -> u64 {
        (thread_cpu_ns() - start).saturating_sub(self.overhead)
    }
}

pub fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Summary of one sample set (nanoseconds, or any unit).
#[derive(Debug, Clone, Copy)]
pub struct Stats {
    pub n: usize,
    pub mean: f64,
    pub min: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
}

impl Stats {
    pub fn of(samples: &[u64]) -> Self {
        let mut sorted = samples.to_vec();
        sorted.sort_unstable();
        let n = sorted.len();
        assert!(n > 0, "no samples");
        // Nearest rank.
        let rank = |q: f64| sorted[((q * n as f64).ceil() as usize).clamp(1, n) - 1] as f64;
        Self {
            n,
            mean: sorted.iter().map(|&s| s as f64).sum::<f64>() / n as f64,
            min: sorted[0] as f64,
            p50: rank(0.50),
            p90: rank(0.90),
            p99: rank(0.99),
        }
    }
}

/// Nanoseconds, human-scaled.
pub fn human(ns: f64) -> String {
    let sign = if ns < 0.0 { "-" } else { "" };
    let ns = ns.abs();
    if ns >= 1e9 {
        format!("{sign}{:.2} s", ns / 1e9)
    } else if ns >= 1e6 {
        format!("{sign}{:.2} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{sign}{:.1} µs", ns / 1e3)
    } else {
        format!("{sign}{ns:.0} ns")
    }
}

pub fn verdict(ok: bool) -> &'static str {
    if ok { "PASS" } else { "MISS" }
}

/// `PASS ≤1.05` / `MISS ≤1.05` for a ratio against its target.
pub fn target(ratio: f64, limit: f64) -> String {
    format!("{} ≤{limit:.2}", verdict(ratio <= limit))
}

/// A progress line (stderr).
pub fn progress(what: &str) {
    eprintln!("  … {what}");
}

/// The packages the benches spawn release builds of. Always built together:
/// a different set could unify dependency features differently, and a
/// changed feature set means another fat-LTO link of every binary.
pub const RELEASE_PACKAGES: [&str; 3] = ["publish", "rotate", "hello-lambda"];

/// Builds [`RELEASE_PACKAGES`] with the `release` profile (`cargo build
/// --release`, with the cargo running this bench: `$CARGO`) and returns the
/// path of each one's binary, in that order, with the build's wall time.
/// The benches that spawn release binaries call this first, so what they
/// measure is always the code of this checkout; cargo has released its
/// build lock by the time a bench runs, and the build is incremental (a
/// second or two when nothing changed).
pub fn release_binaries() -> (Vec<PathBuf>, Duration) {
    let packages = RELEASE_PACKAGES;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = std::process::Command::new(cargo);
    command
        .current_dir(crate::workspace_root())
        .args(["build", "--release", "--quiet"]);
    for package in packages {
        command.args(["-p", package]);
    }
    progress(&format!(
        "cargo build --release -p {} (fat LTO: minutes when the code changed)…",
        packages.join(" -p ")
    ));
    let started = std::time::Instant::now();
    let status = command.status().expect("run cargo build --release");
    assert!(status.success(), "cargo build --release failed: {status}");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::workspace_root().join("target"));
    let paths = packages
        .iter()
        .map(|p| target.join("release").join(p))
        .collect();
    (paths, started.elapsed())
}
