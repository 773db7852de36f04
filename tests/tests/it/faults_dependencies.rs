//! What a WARM function does when one of its dependencies goes away, and
//! that it recovers when the dependency comes back: Secrets Manager, STS and
//! the OIDC provider behind a `publish` function, Pulsar's admin API behind
//! `rotate`. Each dependency is reached through a `kp_tests::outage::Switch`
//! (connection refused and established connections reset while it is off),
//! the functions are invoked through the Lambda Invoke API, and the tenants
//! live on the multi-broker test cluster, reached through its Pulsar proxy.
//!
//! Every test holds the cluster's shared lease for its whole length: the
//! broker fault tests take it exclusively while they kill brokers. Waits are
//! kept to seconds by the knobs the product has for them (`KP_SECRET_TTL`,
//! a token's own lifetime, the issuer's `jwks_cache_seconds` and
//! `jwks_refetch_seconds`), never by sleeping through the defaults.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use kong_pulsar::pulsar::broker::EXPIRY_MARGIN;
use kong_pulsar::secrets::FAILED_READ_MEMORY;
use kp_tests::app::{AppOptions, PublishApp, Response, Switches, kong_event};
use kp_tests::oidc::{KeyType, Provider};
use kp_tests::outage::Switch;
use kp_tests::{cluster, unix_now};
use serde_json::{Value, json};

/// An app on the cluster whose Secrets Manager, STS and issuer are switched.
async fn switched_app(options: AppOptions) -> PublishApp {
    PublishApp::spawn_with(AppOptions {
        pulsar: &cluster().proxy,
        switched: true,
        ..options
    })
    .await
}

fn switches(app: &PublishApp) -> &Switches {
    app.switches.as_ref().expect("a switched app")
}

/// Publishes one JSON event to tenant A's `orders/{topic}` as `authorization`.
async fn publish(app: &PublishApp, authorization: &str, topic: &str, order: &str) -> Response {
    app.call(&kong_event(
        "POST",
        &app.orders_path(topic),
        &[
            ("authorization", authorization),
            ("content-type", "application/json"),
        ],
        format!(r#"{{"orderId":"{order}"}}"#).as_bytes(),
    ))
    .await
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

#[track_caller]
fn assert_accepted(resp: &Response, step: &str) {
    assert_eq!(resp.status, 202, "{step}: {:?}", resp.body);
}

/// The status, the problem's `code`, and for a 503 its `Retry-After`.
#[track_caller]
fn assert_problem(resp: &Response, status: u16, code: &str, step: &str) {
    assert_eq!(
        (resp.status, resp.body["code"].as_str()),
        (status, Some(code)),
        "{step}: {:?}",
        resp.body
    );
    if status == 503 {
        assert!(
            resp.headers["retry-after"].is_string(),
            "{step}: a 503 says when to retry: {:?}",
            resp.headers
        );
        // Server-side failures carry no detail beyond their title.
        assert_eq!(resp.body["detail"], resp.body["title"], "{step}");
    }
}

/// No token, IAM credential or token signature the app handed out (nor
/// `extra` ones) appears in `logs`.
#[track_caller]
fn assert_no_secret_logged(logs: &str, app: &PublishApp, extra: &[&str]) {
    let issued = app.secrets_issued();
    let all = issued
        .iter()
        .map(String::as_str)
        .chain(extra.iter().copied());
    for secret in all {
        // The part that is secret: a JWT's signature, an IAM header's
        // signed request.
        let tail = match secret.strip_prefix("KP-AWS-IAM ") {
            Some(credential) => credential,
            None => secret.rsplit('.').next().unwrap_or(secret),
        };
        assert!(!logs.contains(secret), "a credential was logged");
        assert!(!logs.contains(tail), "part of a credential was logged");
    }
}

/// A topic of tenant A's `orders` (its short name and full name) in another
/// namespace bundle than `topic`, so it can be moved to another broker alone.
async fn topic_in_another_bundle(app: &PublishApp, topic: &str) -> (String, String) {
    let bundle = |topic: String| async move {
        let path = topic.replacen("://", "/", 1);
        cluster()
            .proxy
            .admin()
            .get_text(&format!("/lookup/v2/topic/{path}/bundle"))
            .await
            .unwrap_or_else(|e| panic!("bundle of {topic}: {e}"))
    };
    let taken = bundle(topic.to_owned()).await;
    for i in 0..32 {
        let name = format!("moved-{i}");
        let full = app.topic(&app.tenant_a, "orders", &name);
        if bundle(full.clone()).await != taken {
            return (name, full);
        }
    }
    panic!("32 topic names all hash into the bundle of {topic}");
}

async fn sleep_until(at: Instant) {
    tokio::time::sleep_until(at.into()).await;
}

#[tokio::test]
async fn secrets_manager_unreachable_keeps_cached_tokens_until_near_expiry_then_503() {
    let _lease = cluster().shared().await;
    // The tenant token is within EXPIRY_MARGIN of its `exp` this long after
    // it is minted (inside spawn): the window in which Secrets Manager's
    // absence must not show.
    let usable_for = Duration::from_secs(10);
    let before_spawn = Instant::now();
    let app = switched_app(AppOptions {
        secret_ttl: "1s",
        token_a_ttl: EXPIRY_MARGIN + usable_for,
        ..AppOptions::default()
    })
    .await;
    let spawned = Instant::now();
    let sm = &switches(&app).secrets_manager;
    let caller = bearer(&app.token("alice", &["checkout"]));
    let warm_topic = app.topic(&app.tenant_a, "orders", "warm");

    assert_accepted(&publish(&app, &caller, "warm", "1").await, "warm-up");
    // A topic owned by the other broker: publishing to it opens a new
    // connection, which must authenticate, so it needs the token then.
    let (moved, moved_topic) = topic_in_another_bundle(&app, &warm_topic).await;
    let other = cluster().owner(&warm_topic).await.other();
    cluster().place(&moved_topic, other).await;
    assert_ne!(cluster().owner(&warm_topic).await, other);

    sm.off().await;
    // Past KP_SECRET_TTL: the cached token is stale, and cannot be re-read.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let resp = publish(&app, &caller, &moved, "2").await;
    assert_accepted(&resp, "a new connection while Secrets Manager is down");
    assert_accepted(
        &publish(&app, &caller, "warm", "3").await,
        "the warm connection while Secrets Manager is down",
    );
    assert!(
        before_spawn.elapsed() < usable_for - Duration::from_secs(1),
        "too slow: the token neared its expiry before the stale-token steps were done \
         ({:?}); raise usable_for",
        before_spawn.elapsed()
    );
    let logs = app.function.logs();
    let stale = logs
        .lines()
        .find(|l| l.contains("secret_served_stale"))
        .unwrap_or_else(|| panic!("no secret_served_stale line in:\n{logs}"));
    assert!(stale.contains(&app.secret_a), "{stale}");

    // Near expiry, with no way to a newer token: refused as ours, at once.
    sleep_until(spawned + usable_for + Duration::from_millis(300)).await;
    let stored = app.stored(&warm_topic).await;
    for attempt in ["first", "second"] {
        let resp = publish(&app, &caller, "warm", "4").await;
        assert_problem(
            &resp,
            503,
            "credentials_unavailable",
            &format!("{attempt} publish near expiry"),
        );
    }
    assert_eq!(app.stored(&warm_topic).await, stored, "nothing was sent");

    // Back, with the token rotated meanwhile: picked up by the next request
    // once the failed read is no longer taken at its word.
    sm.on().await;
    app.rotate_token_a(Duration::from_secs(3600)).await;
    tokio::time::sleep(FAILED_READ_MEMORY + Duration::from_millis(100)).await;
    assert_accepted(&publish(&app, &caller, "warm", "5").await, "recovered");
    assert_accepted(&publish(&app, &caller, &moved, "6").await, "recovered");
    assert_eq!(app.stored(&warm_topic).await, stored + 1);
    assert_eq!(app.stored(&moved_topic).await, 2);
    assert_no_secret_logged(&app.function.logs(), &app, &[]);
}

#[tokio::test]
async fn sts_unreachable_keeps_cached_iam_identities_and_refuses_new_ones_with_503() {
    let _lease = cluster().shared().await;
    let app = switched_app(AppOptions::default()).await;
    let sts = &switches(&app).sts;
    let topic = app.topic(&app.tenant_a, "orders", "iam");
    let known = app.iam_authorization(&app.iam_role, "known").await;

    assert_accepted(&publish(&app, &known, "iam", "1").await, "warm-up");
    let sts_calls = sts.requests();
    assert_eq!(sts_calls, 1, "the first use of a credential asks STS");

    sts.off().await;
    assert_accepted(
        &publish(&app, &known, "iam", "2").await,
        "a verified identity while STS is down",
    );
    // A credential never verified: STS cannot be asked, which is not the
    // caller's fault (401) but ours, and not remembered as a refusal.
    let new = app.iam_authorization(&app.iam_role, "new").await;
    for attempt in ["first", "second"] {
        let resp = publish(&app, &new, "iam", "3").await;
        assert_problem(
            &resp,
            503,
            "credentials_unavailable",
            &format!("{attempt} new credential while STS is down"),
        );
    }
    assert_eq!(app.stored(&topic).await, 2);

    sts.on().await;
    assert_accepted(
        &publish(&app, &new, "iam", "4").await,
        "the new one, STS back",
    );
    assert_accepted(&publish(&app, &known, "iam", "5").await, "the known one");
    assert_eq!(
        sts.requests(),
        sts_calls + 1,
        "only the new credential went to STS"
    );
    assert_eq!(app.stored(&topic).await, 4);
    assert_no_secret_logged(&app.function.logs(), &app, &[]);
}

#[tokio::test]
async fn idp_unreachable_keeps_known_keys_for_twice_their_cache_time_and_unknown_keys_are_503() {
    let _lease = cluster().shared().await;
    let cache = Duration::from_secs(3);
    let refetch = Duration::from_secs(1);
    let app = switched_app(AppOptions {
        oidc_jwks_cache_seconds: Some(cache.as_secs()),
        oidc_jwks_refetch_seconds: Some(refetch.as_secs()),
        ..AppOptions::default()
    })
    .await;
    let idp = &switches(&app).idp;
    let topic = app.topic(&app.tenant_a, "orders", "oidc");
    // A fresh token each time: a token verified before would be served from
    // the verified-token cache, and this is about the keys.
    let known = || bearer(&app.token("alice", &["checkout"]));
    let added = app.issuer.new_key(KeyType::Rs256);
    let mut claims = app
        .issuer
        .claims_for(Provider::Okta, "bob", &["checkout"], "kong-pulsar");
    claims["exp"] = json!(unix_now() + 300);
    let by_added_key = added.sign(&claims);

    assert_accepted(&publish(&app, &known(), "oidc", "1").await, "warm-up");
    // A key the issuer does not publish, asked about while it can answer:
    // the caller's fault. It also starts the key cache's clock now.
    tokio::time::sleep(refetch).await;
    let resp = publish(&app, &bearer(&by_added_key), "oidc", "x").await;
    let fetched = Instant::now();
    assert_problem(&resp, 401, "invalid_token", "an unknown key, issuer up");

    idp.off().await;
    app.issuer.publish(added.clone());
    assert_accepted(
        &publish(&app, &known(), "oidc", "2").await,
        "a known key, issuer down, keys fresh",
    );
    // The issuer now lists the key, but cannot be asked: ours, not a 401.
    sleep_until(fetched + refetch + Duration::from_millis(100)).await;
    for attempt in ["first", "second (rate-limited)"] {
        let resp = publish(&app, &bearer(&by_added_key), "oidc", "y").await;
        assert_problem(
            &resp,
            503,
            "credentials_unavailable",
            &format!("{attempt} unknown key, issuer down"),
        );
    }
    // Past the cache time the old keys are still trusted...
    sleep_until(fetched + cache + Duration::from_millis(300)).await;
    assert_accepted(
        &publish(&app, &known(), "oidc", "3").await,
        "a known key, issuer down, keys stale",
    );
    assert!(
        fetched.elapsed() < cache * 2,
        "too slow to see the stale window ({:?})",
        fetched.elapsed()
    );
    // ...but not past twice that.
    sleep_until(fetched + cache * 2 + Duration::from_millis(300)).await;
    let resp = publish(&app, &known(), "oidc", "z").await;
    assert_problem(
        &resp,
        503,
        "credentials_unavailable",
        "a known key, issuer down past twice the cache time",
    );
    assert_eq!(app.stored(&topic).await, 3);

    idp.on().await;
    tokio::time::sleep(refetch + Duration::from_millis(100)).await;
    assert_accepted(
        &publish(&app, &bearer(&by_added_key), "oidc", "4").await,
        "the added key, issuer back",
    );
    assert_accepted(&publish(&app, &known(), "oidc", "5").await, "the old key");
    assert_eq!(app.stored(&topic).await, 5);
    assert_no_secret_logged(&app.function.logs(), &app, &[&by_added_key]);
}

/// Runs one scheduled cycle and returns its report.
async fn cycle(rotate: &kp_tests::lambda::Function, step: &str) -> Value {
    let (status, report) = rotate
        .invoke(&kp_tests::lambda::event("rotate-scheduled.json"))
        .await;
    assert_eq!(status, 200, "{step}: {report}");
    assert!(report["reconcile"].is_object(), "{step}: {report}");
    report
}

/// `failedTenants`, which names each tenant once.
fn failed_tenants(report: &Value) -> BTreeSet<String> {
    let listed: Vec<String> = report["failedTenants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_owned())
        .collect();
    let tenants: BTreeSet<String> = listed.iter().cloned().collect();
    assert_eq!(listed.len(), tenants.len(), "{listed:?}");
    tenants
}

fn steps_failed(report: &Value) -> Vec<(Option<String>, String)> {
    report["reconcile"]["failures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            assert!(f["error"].as_str().is_some_and(|e| !e.is_empty()), "{f}");
            (
                f["tenant"].as_str().map(str::to_owned),
                f["step"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// The roles granted on `tenant/namespace` and their actions, as the
/// broker's admin API (not the product's client) reports them.
async fn grants(tenant: &str, namespace: &str) -> Value {
    cluster()
        .proxy
        .admin()
        .get(&format!(
            "/admin/v2/namespaces/{tenant}/{namespace}/permissions"
        ))
        .await
        .unwrap()
}

fn actions(grants: &Value, role: &str) -> BTreeSet<String> {
    grants[role]
        .as_array()
        .map(|a| a.iter().map(|x| x.as_str().unwrap().to_owned()).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn admin_api_down_during_a_rotate_cycle_is_reported_and_the_next_cycle_converges() {
    let _lease = cluster().shared().await;
    let app = PublishApp::spawn_with(AppOptions {
        pulsar: &cluster().proxy,
        ..AppOptions::default()
    })
    .await;
    let admin_url = &cluster().proxy.admin_url;
    let admin = Switch::in_front_of(admin_url).await;
    let rotate = app
        .rotate_function_with_admin(&admin.url_for(admin_url))
        .await;
    let (a, b) = (app.tenant_a.as_str(), app.tenant_b.as_str());
    let role_b = grants(b, "orders")
        .await
        .as_object()
        .and_then(|g| g.keys().next().cloned())
        .expect("tenant B's role holds a grant");
    let both: BTreeSet<String> = [a.to_owned(), b.to_owned()].into();
    let full: BTreeSet<String> = ["consume".to_owned(), "produce".to_owned()].into();
    let schema = format!("/admin/v2/schemas/{a}/orders/order-created/schema");
    let witness = cluster().proxy.admin();

    // Down before the cycle: nothing is read, so nothing is changed or minted.
    admin.off().await;
    let report = cycle(&rotate, "admin API down").await;
    let failed = steps_failed(&report);
    assert!(
        failed.contains(&(None, "read_superusers".to_owned())),
        "{failed:?}"
    );
    for tenant in [a, b] {
        assert!(
            failed.contains(&(Some(tenant.to_owned()), "read_tenant".to_owned())),
            "{failed:?}"
        );
    }
    assert_eq!(report["reconcile"]["changes"], json!([]), "{report}");
    for token in report["tokens"].as_array().unwrap() {
        assert_eq!(
            (token["outcome"].as_str(), token["step"].as_str()),
            (Some("failed"), Some("forbidden_role")),
            "nothing is minted while the super-users are unknown: {token}"
        );
    }
    assert_eq!(failed_tenants(&report), both);
    assert!(actions(&grants(a, "ungranted").await, &app.role_a).is_empty());
    assert!(witness.get(&schema).await.is_err(), "no schema uploaded");

    // Back for a few calls, then gone in the middle of the cycle: whatever
    // was applied is reported as applied, the rest as failed.
    admin.on().await;
    admin.cut_after_requests(8);
    let report = cycle(&rotate, "admin API cut mid-cycle").await;
    assert!(
        !admin.is_on(),
        "the cut happened inside the cycle: {report}"
    );
    let changes = report["reconcile"]["changes"].as_array().unwrap();
    assert!(!changes.is_empty(), "some changes went through: {report}");
    assert!(!steps_failed(&report).is_empty(), "{report}");
    assert!(!failed_tenants(&report).is_empty(), "{report}");

    // Back for good: the next cycle applies the rest, the one after finds
    // nothing left to do.
    admin.on().await;
    let report = cycle(&rotate, "admin API back").await;
    assert_eq!(steps_failed(&report), vec![], "{report}");
    assert_eq!(failed_tenants(&report), BTreeSet::new(), "{report}");
    for token in report["tokens"].as_array().unwrap() {
        assert_ne!(token["outcome"], "failed", "{token}");
    }
    let report = cycle(&rotate, "converged").await;
    assert_eq!(report["reconcile"]["changes"], json!([]), "{report}");
    assert_eq!(steps_failed(&report), vec![], "{report}");

    // What the policy says, as the broker itself reports it.
    for (tenant, namespace, role) in [
        (a, "orders", app.role_a.as_str()),
        (a, "ungranted", app.role_a.as_str()),
        (b, "orders", role_b.as_str()),
    ] {
        let granted = grants(tenant, namespace).await;
        assert_eq!(
            actions(&granted, role),
            full,
            "{tenant}/{namespace}: {granted}"
        );
        let dedup = witness
            .get(&format!(
                "/admin/v2/namespaces/{tenant}/{namespace}/deduplication"
            ))
            .await
            .unwrap();
        assert_eq!(dedup, json!(false), "{tenant}/{namespace}");
    }
    let stored = witness.get(&schema).await.unwrap();
    assert_eq!(stored["type"], "NONE", "{stored}");
    assert_eq!(stored["properties"]["kp-schema-format"], "json-schema");

    // Neither the super-user's token nor the tokens the cycles minted.
    let logs = rotate.logs();
    let minted = current_token(&app.secret_a).await;
    assert!(
        !app.secrets_issued().contains(&minted),
        "tenant A's token was rotated"
    );
    assert_no_secret_logged(&logs, &app, &[cluster().proxy.superuser_token(), &minted]);
}

/// The token in `secret`'s current version, read from moto directly.
async fn current_token(secret: &str) -> String {
    let client = aws_sdk_secretsmanager::Client::new(&kp_tests::stack().aws_config().await);
    let value = client
        .get_secret_value()
        .secret_id(secret)
        .version_stage("AWSCURRENT")
        .send()
        .await
        .unwrap()
        .secret_string
        .unwrap();
    serde_json::from_str::<Value>(&value).unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned()
}
