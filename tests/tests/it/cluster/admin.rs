//! The rotate function against the multi-broker test cluster, through the
//! Lambda Invoke API: with `PULSAR_ADMIN_URL` set to the broker that does
//! *not* own a topic, the schema reconciliation that broker redirects still
//! lands (the admin client follows a redirect to another broker of the
//! policy's cluster), and so it does through the Pulsar proxy, which
//! follows the redirect itself. A token rotated through one broker's admin
//! API (and tested by `rotate` through the other) produces through either
//! broker, each to a topic it owns.
//!
//! What the rotate function did is checked through the witness admin
//! client (`kp_tests::Admin`) and the brokers themselves, never through the
//! product's own client.

use kp_tests::cluster::BrokerId;
use kp_tests::lambda::{Function, temp_file};
use kp_tests::{cluster, secrets, unique};
use serde_json::{Value, json};
use url::Url;

/// The topic the policy gives a JSON Schema.
const SCHEMA_TOPIC: &str = "order-created";

/// A tenant made on the cluster before `rotate` runs, so its topics have
/// owners to point `rotate` away from (a lookup places a bundle; with
/// automatic shedding off, it stays there).
struct Tenant {
    name: String,
    role: String,
    token_secret: String,
}

impl Tenant {
    async fn create() -> Self {
        let name = unique("cl-admin");
        let admin = cluster().proxy.admin();
        // What the policy asks for (no admin roles, the cluster), so the
        // reconciler leaves the tenant as it is.
        admin.create_tenant(&name, &[]).await.unwrap();
        admin.create_namespace(&name, "orders").await.unwrap();
        Self {
            token_secret: format!("kong-pulsar/tokens/{name}"),
            role: unique("cl-admin-gw"),
            name,
        }
    }

    fn topic(&self, topic: &str) -> String {
        format!("persistent://{}/orders/{topic}", self.name)
    }

    /// A `rotate` function for a policy managing this tenant, with the
    /// cluster's signing key and super-user token in Secrets Manager.
    async fn rotate(&self, admin_url: &Url, service_url: &Url) -> Rotate {
        let proxy = &cluster().proxy;
        let sm = aws_sdk_secretsmanager::Client::new(&proxy.aws_config().await);
        let (signing, admin) = (unique("kong-pulsar/signing"), unique("kong-pulsar/admin"));
        let key = base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            proxy.token_secret(),
        );
        for (name, value) in [
            (&signing, json!({ "alg": "HS256", "key": key })),
            (&admin, json!({ "token": proxy.superuser_token() })),
        ] {
            kp_tests::app::put_secret(name, &value.to_string()).await;
        }
        let policy = format!(
            r#"version: 1
pulsar: {{ cluster: {cluster}, admin_roles: [], token_signing_secret: {signing} }}
tenants:
  {tenant}:
    role: {role}
    token_secret: {token_secret}
    token_ttl: 24h
    namespaces:
      orders:
        schemas:
          {SCHEMA_TOPIC}: {{ type: object, required: [orderId], properties: {{ orderId: {{ type: string }} }} }}
rules:
  - name: anyone-produces
    when: {{ any: true }}
    allow: {{ tenant: {tenant}, namespaces: [orders], topics: ["*"], actions: [produce] }}
"#,
            cluster = cluster().name,
            tenant = self.name,
            role = self.role,
            token_secret = self.token_secret,
        );
        let policy = temp_file("kp-cluster-admin", "policy.yaml", &policy);
        let function = Function::start(
            "rotate",
            &[
                ("KP_POLICY_FILE", policy.display().to_string()),
                ("PULSAR_SERVICE_URL", service_url.to_string()),
                ("PULSAR_ADMIN_URL", admin_url.to_string()),
                ("KP_ADMIN_TOKEN_SECRET", admin),
                ("AWS_ENDPOINT_URL", proxy.aws_endpoint.clone()),
                ("AWS_REGION", proxy.aws_region.clone()),
                ("AWS_ACCESS_KEY_ID", "testing".into()),
                ("AWS_SECRET_ACCESS_KEY", "testing".into()),
            ],
        );
        Rotate { function, sm }
    }
}

struct Rotate {
    function: Function,
    sm: aws_sdk_secretsmanager::Client,
}

impl Rotate {
    async fn invoke(&self, payload: Value) -> Value {
        let (status, out) = self.function.invoke(&payload).await;
        assert_eq!(
            status,
            200,
            "rotate failed: {out}\n{}",
            self.function.logs()
        );
        out
    }

    async fn current_token(&self, secret: &str) -> String {
        let (_, text) = secrets::staged(&self.sm, secret, "AWSCURRENT")
            .await
            .expect("the token secret has an AWSCURRENT version");
        let value: Value = serde_json::from_str(&text).unwrap();
        value["token"].as_str().expect("a token").to_owned()
    }
}

/// The reconcile report has no failures; the kinds of its changes.
fn change_kinds(reconcile: &Value) -> Vec<String> {
    assert_eq!(reconcile["failures"], json!([]), "{reconcile:#}");
    reconcile["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["kind"].as_str().map(str::to_owned))
        .collect()
}

/// What `admin_url` answers a schema read for `topic` with, following
/// nothing: the status and the `Location`'s `host:port`.
async fn schema_answer(admin_url: &Url, tenant: &Tenant, topic: &str) -> (u16, Option<String>) {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let response = http
        .get(format!(
            "{}/admin/v2/schemas/{}/orders/{topic}/schema",
            admin_url.as_str().trim_end_matches('/'),
            tenant.name
        ))
        .bearer_auth(cluster().proxy.superuser_token())
        .send()
        .await
        .unwrap();
    let location = response
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| Url::parse(v.to_str().ok()?).ok())
        .map(|url| url.authority().to_owned());
    (response.status().as_u16(), location)
}

/// The registry's schema for the tenant's schema topic, read through the
/// proxy as the witness.
async fn stored_schema(tenant: &Tenant) -> Value {
    cluster()
        .proxy
        .admin()
        .get(&format!(
            "/admin/v2/schemas/{}/orders/{SCHEMA_TOPIC}/schema",
            tenant.name
        ))
        .await
        .unwrap_or_else(|e| panic!("no schema for {}: {e}", tenant.name))
}

#[tokio::test]
async fn rotate_reconciles_a_schema_through_the_broker_that_does_not_own_its_topic_and_through_the_proxy()
 {
    let _lease = cluster().shared().await;
    for through_proxy in [false, true] {
        let tenant = Tenant::create().await;
        let topic = tenant.topic(SCHEMA_TOPIC);
        let owner = cluster().owner(&topic).await;
        let owner_url = &cluster().broker(owner).admin_url;
        let admin_url = if through_proxy {
            &cluster().proxy.admin_url
        } else {
            let other = &cluster().broker(owner.other()).admin_url;
            // The premise: this broker sends the schema call elsewhere.
            assert_eq!(
                schema_answer(other, &tenant, SCHEMA_TOPIC).await,
                (307, Some(owner_url.authority().to_owned())),
                "{other} should redirect {topic}'s schema to its owner {owner:?}"
            );
            other
        };
        let rotate = tenant.rotate(admin_url, &cluster().proxy.service_url).await;

        let report = rotate.invoke(json!({ "action": "reconcile" })).await;
        let kinds = change_kinds(&report["reconcile"]);
        assert!(
            kinds.iter().any(|k| k == "upload_schema"),
            "{admin_url}: {report:#}"
        );
        let stored = stored_schema(&tenant).await;
        assert_eq!(stored["type"], "NONE", "{stored}");
        assert_eq!(
            stored["properties"]["kp-schema-format"], "json-schema",
            "{stored}"
        );
        let definition: Value = serde_json::from_str(stored["data"].as_str().unwrap()).unwrap();
        assert_eq!(definition["required"], json!(["orderId"]), "{stored}");

        // The second run reads the schema back through the same redirect and
        // finds nothing to do.
        let again = rotate.invoke(json!({ "action": "reconcile" })).await;
        assert_eq!(change_kinds(&again["reconcile"]), Vec::<String>::new());
        assert_eq!(
            cluster().owner(&topic).await,
            owner,
            "{topic} moved during the test, so it proved less than it says"
        );
        assert!(
            !rotate
                .function
                .logs()
                .contains(cluster().proxy.superuser_token()),
            "the super-user token reached the log"
        );
    }
}

/// Topics of the tenant's namespace, one owned by each broker: names are
/// looked up until each broker owns one (the namespace's four bundles are
/// spread over both); when one broker owns every bundle, one is moved.
async fn topic_owned_by_each(tenant: &Tenant) -> [String; 2] {
    let names: Vec<String> = (0..16)
        .map(|i| tenant.topic(&format!("probe-{i}")))
        .collect();
    for _ in 0..2 {
        let mut found: [Option<String>; 2] = [None, None];
        for topic in &names {
            let owner = cluster().owner(topic).await;
            found[owner.index()].get_or_insert_with(|| topic.clone());
            if let [Some(one), Some(two)] = &found {
                return [one.clone(), two.clone()];
            }
        }
        let missing = if found[0].is_none() {
            BrokerId::One
        } else {
            BrokerId::Two
        };
        cluster().place(&names[0], missing).await;
    }
    panic!("no topic of {} is owned by each broker", tenant.name);
}

#[tokio::test]
async fn a_token_rotated_through_one_broker_produces_through_both() {
    let _lease = cluster().shared().await;
    let tenant = Tenant::create().await;
    let topics = topic_owned_by_each(&tenant).await;
    // Administered through the broker that does not own the schema topic, so
    // the cycle's reconcile crosses a redirect too; tokens are tested through
    // the other broker.
    let admin = cluster().owner(&tenant.topic(SCHEMA_TOPIC)).await.other();
    let rotate = tenant
        .rotate(
            &cluster().broker(admin).admin_url,
            &cluster().broker(admin.other()).service_url,
        )
        .await;

    let first = rotate.invoke(json!({ "action": "cycle" })).await;
    assert_eq!(first["failedTenants"], json!([]), "{first:#}");
    change_kinds(&first["reconcile"]);
    assert_eq!(first["tokens"][0]["outcome"], "created", "{first:#}");
    let created = rotate.current_token(&tenant.token_secret).await;

    let forced = rotate
        .invoke(json!({ "action": "cycle", "force": true }))
        .await;
    assert_eq!(forced["failedTenants"], json!([]), "{forced:#}");
    assert_eq!(forced["tokens"][0]["outcome"], "rotated", "{forced:#}");
    let rotated = rotate.current_token(&tenant.token_secret).await;
    assert_ne!(rotated, created, "AWSCURRENT did not move");

    for id in [BrokerId::One, BrokerId::Two] {
        let topic = &topics[id.index()];
        assert_eq!(cluster().owner(topic).await, id, "{topic} moved");
        cluster()
            .broker(id)
            .produce_as(&rotated, topic)
            .await
            .unwrap_or_else(|e| panic!("the rotated token on {id:?} ({topic}): {e}"));
    }
    // A role the policy does not name gets nothing on either broker, so
    // the produce above is the tenant role's grant at work.
    let stranger = cluster().proxy.mint_token(&unique("stranger"));
    for id in [BrokerId::One, BrokerId::Two] {
        assert!(
            cluster()
                .broker(id)
                .produce_as(&stranger, &topics[id.index()])
                .await
                .is_err(),
            "{id:?} let an ungranted role produce"
        );
    }
}
