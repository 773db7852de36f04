//! A minimal client for Pulsar's admin REST API (v2), for setting up and
//! inspecting test fixtures as the super-user. Deliberately independent of
//! the product's `kong_pulsar::pulsar::admin::AdminClient`: the reconciler's tests
//! check what it did through this witness, not through its own client.

use serde_json::{Value, json};
use url::Url;

/// Admin API calls as one role.
pub struct Admin {
    base: Url,
    token: String,
    http: reqwest::Client,
    /// The cluster tenants it creates may use.
    cluster: String,
}

/// A tenant and namespace made for one test, removed when dropped is not
/// needed: every stack start uses a fresh broker.
#[derive(Debug, Clone)]
pub struct TestNamespace {
    pub tenant: String,
    pub namespace: String,
}

impl TestNamespace {
    /// `persistent://tenant/namespace/{topic}`.
    pub fn topic(&self, topic: &str) -> String {
        format!("persistent://{}/{}/{topic}", self.tenant, self.namespace)
    }
}

impl Admin {
    pub fn new(base: Url, token: String) -> Self {
        Self {
            base,
            token,
            http: reqwest::Client::new(),
            cluster: "standalone".into(),
        }
    }

    /// The same client, creating tenants allowed on `cluster`.
    pub fn for_cluster(mut self, cluster: &str) -> Self {
        self.cluster = cluster.to_owned();
        self
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, String> {
        let text = self.call_text(method, path, body).await?;
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// A GET whose answer is plain text (e.g. a topic's bundle range).
    pub async fn get_text(&self, path: &str) -> Result<String, String> {
        self.call_text(reqwest::Method::GET, path, None).await
    }

    async fn call_text(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<String, String> {
        let url = self.base.join(path).map_err(|e| e.to_string())?;
        let mut req = self
            .http
            .request(method.clone(), url)
            .bearer_auth(&self.token);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| format!("{method} {path}: {e}"))?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        if !status.is_success() {
            return Err(format!("{method} {path}: {status} {text}"));
        }
        Ok(text)
    }

    pub async fn get(&self, path: &str) -> Result<Value, String> {
        self.call(reqwest::Method::GET, path, None).await
    }

    pub async fn put(&self, path: &str, body: Value) -> Result<Value, String> {
        self.call(reqwest::Method::PUT, path, Some(body)).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Result<Value, String> {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    /// Creates a tenant (allowed on this client's cluster).
    pub async fn create_tenant(&self, tenant: &str, admin_roles: &[&str]) -> Result<(), String> {
        self.put(
            &format!("/admin/v2/tenants/{tenant}"),
            json!({ "adminRoles": admin_roles, "allowedClusters": [self.cluster] }),
        )
        .await
        .map(drop)
    }

    /// Creates `tenant/namespace`, with retention: the witnesses read what
    /// was published afterwards, with non-durable readers, and Pulsar keeps
    /// nothing of a topic without subscriptions past a ledger roll unless
    /// its namespace retains it (a failover rolls the ledger: without
    /// retention the new owner may trim the old one, events acknowledged
    /// before the failover with it).
    pub async fn create_namespace(&self, tenant: &str, namespace: &str) -> Result<(), String> {
        self.put(
            &format!("/admin/v2/namespaces/{tenant}/{namespace}"),
            json!({
                "retention_policies": { "retentionTimeInMinutes": 60, "retentionSizeInMB": 64 }
            }),
        )
        .await
        .map(drop)
    }

    /// Grants `role` the `actions` (`produce`, `consume`, …) on `tenant/namespace`.
    pub async fn grant(
        &self,
        tenant: &str,
        namespace: &str,
        role: &str,
        actions: &[&str],
    ) -> Result<(), String> {
        self.post(
            &format!("/admin/v2/namespaces/{tenant}/{namespace}/permissions/{role}"),
            json!(actions),
        )
        .await
        .map(drop)
    }

    /// A fresh tenant with one namespace, both uniquely named.
    pub async fn test_namespace(&self) -> TestNamespace {
        let ns = TestNamespace {
            tenant: crate::unique("t"),
            namespace: crate::unique("ns"),
        };
        self.create_tenant(&ns.tenant, &[])
            .await
            .expect("create tenant");
        self.create_namespace(&ns.tenant, &ns.namespace)
            .await
            .expect("create namespace");
        ns
    }
}
