//! A client for the part of Pulsar's admin REST API (v2) the reconciler
//! needs: tenants, namespaces, namespace permissions, deduplication,
//! retention, `schemaValidationEnforced` and the schema registry.
//!
//! Every call authenticates with a bearer token (a super-user's, read from
//! Secrets Manager); the token is only ever handed to `reqwest` and never
//! appears in errors or logs.
//!
//! Redirects: a broker of a multi-broker cluster answers a call about a topic
//! it does not own (the schema registry's) with `307` to the owner. The
//! client follows such a redirect itself, and only to a broker of the
//! cluster it was given ([`AdminClient::within_cluster`]), as the configured
//! admin URL lists them: the token goes to the cluster's own brokers and
//! nowhere else. `reqwest` follows nothing. The rules, and why, are in
//! [`redirect`]; without a cluster every redirect is refused.
//!
//! Errors are one typed enum ([`AdminError`]) that keeps the broker's own
//! `reason` (e.g. "Clusters do not exist"), because that is what an operator
//! reading a reconcile report needs.
//!
//! Retries: transport errors and 5xx answers are retried a few times with a
//! short, bounded backoff, but only for calls that are safe to repeat: GETs,
//! PUTs and DELETEs, and the POSTs that *set* a value to what the body says
//! (grant, deduplication, retention, schema validation, tenant update), which Pulsar
//! implements as replacements. Uploading a schema is never retried: a new
//! version is a side effect worth surfacing rather than repeating blindly.
//! A retried create (PUT) can answer 409 when the first attempt did land;
//! callers treat [`AdminError::Conflict`] on create as "already there".
//!
//! Names arrive as plain strings (the broker hands them back that way) and are
//! percent-encoded as single path segments, so a role containing `/` or `%`
//! can never address a different resource.

pub mod redirect;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use url::Url;

use crate::secrets::SecretValue;

pub use redirect::{MAX_HOPS, Refusal};

/// A failed admin call. `request` is `METHOD /path` (never the token);
/// `reason` is the broker's explanation when it gave one.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// 401: the token was missing, malformed, expired or not trusted. Pulsar
    /// also answers 401 when an authenticated role lacks the right for a
    /// tenant- or broker-level operation (the reason says "Unauthorized to
    /// validate…"); namespace-level refusals are 403.
    #[error("{request}: the admin API rejected the token (401){}", show(reason))]
    Unauthorized { request: String, reason: String },
    /// 403: the token's role may not do this.
    #[error(
        "{request}: forbidden for the admin token's role (403){}",
        show(reason)
    )]
    Forbidden { request: String, reason: String },
    /// 404: the tenant, namespace, schema… does not exist.
    #[error("{request}: not found (404){}", show(reason))]
    NotFound { request: String, reason: String },
    /// 409: it exists already, or (schemas) the upload is incompatible.
    #[error("{request}: conflict (409){}", show(reason))]
    Conflict { request: String, reason: String },
    /// 412: a precondition failed (e.g. the cluster does not exist).
    #[error("{request}: precondition failed (412){}", show(reason))]
    PreconditionFailed { request: String, reason: String },
    /// Any other 4xx (400, 405, 422 for an invalid schema definition…).
    #[error("{request}: rejected ({status}){}", show(reason))]
    Rejected {
        request: String,
        status: u16,
        reason: String,
    },
    /// 5xx, after the retries the call was allowed.
    #[error("{request}: broker error ({status}){}", show(reason))]
    Server {
        request: String,
        status: u16,
        reason: String,
    },
    /// The broker could not be reached or the connection broke (after retries).
    #[error("{request}: the admin API could not be reached")]
    Transport {
        request: String,
        #[source]
        source: reqwest::Error,
    },
    /// A redirect the client would not follow (see [`redirect`]); it was
    /// sent nowhere. `location` is shown without its query.
    #[error("{request}: redirect ({status}) to {location} not followed: {refused}")]
    Redirect {
        request: String,
        status: u16,
        location: String,
        refused: Refusal,
    },
    /// A broker redirected the call, and the cluster's broker list, needed
    /// to judge where to, could not be read from the admin URL.
    #[error(
        "{request}: redirect ({status}) to {location} not followed: the cluster's brokers \
         could not be listed"
    )]
    BrokersUnknown {
        request: String,
        status: u16,
        location: String,
        #[source]
        source: Box<AdminError>,
    },
    /// The answer was not the JSON the API documents.
    #[error("{request}: unexpected answer from the admin API")]
    Decode {
        request: String,
        #[source]
        source: serde_json::Error,
    },
    /// The base URL cannot take path segments (e.g. `mailto:`).
    #[error("the admin URL {0} cannot be used as a base URL")]
    BadBaseUrl(Url),
    /// The HTTP client could not be built (TLS set-up).
    #[error("the admin HTTP client could not be built")]
    Client(#[source] reqwest::Error),
}

fn show(reason: &str) -> String {
    if reason.is_empty() {
        String::new()
    } else {
        format!(": {reason}")
    }
}

impl AdminError {
    /// The HTTP status the broker answered with, when it answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Unauthorized { .. } => Some(401),
            Self::Forbidden { .. } => Some(403),
            Self::NotFound { .. } => Some(404),
            Self::Conflict { .. } => Some(409),
            Self::PreconditionFailed { .. } => Some(412),
            Self::Rejected { status, .. }
            | Self::Server { status, .. }
            | Self::Redirect { status, .. }
            | Self::BrokersUnknown { status, .. } => Some(*status),
            Self::Transport { .. }
            | Self::Decode { .. }
            | Self::BadBaseUrl(_)
            | Self::Client(_) => None,
        }
    }

    /// Worth repeating the call for. A refused redirect is not: the broker
    /// would send us to the same place again.
    fn is_transient(&self) -> bool {
        matches!(self, Self::Server { .. } | Self::Transport { .. })
    }

    fn from_status(request: String, status: StatusCode, reason: String) -> Self {
        match status.as_u16() {
            401 => Self::Unauthorized { request, reason },
            403 => Self::Forbidden { request, reason },
            404 => Self::NotFound { request, reason },
            409 => Self::Conflict { request, reason },
            412 => Self::PreconditionFailed { request, reason },
            s if s >= 500 => Self::Server {
                request,
                status: s,
                reason,
            },
            s => Self::Rejected {
                request,
                status: s,
                reason,
            },
        }
    }
}

/// A tenant's settings (`GET /admin/v2/tenants/{tenant}`). Sets, so that two
/// settings compare equal whatever order the broker lists them in.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TenantInfo {
    /// Roles that administer the tenant.
    #[serde(default)]
    pub admin_roles: BTreeSet<String>,
    /// Clusters the tenant's namespaces may use.
    #[serde(default)]
    pub allowed_clusters: BTreeSet<String>,
}

/// Namespace permissions: role → actions (`produce`, `consume`, `functions`,
/// …). An action name the broker could not parse (it stores those as `null`)
/// appears as [`UNKNOWN_ACTION`], so such a grant never looks like the one the
/// policy wants.
pub type Permissions = BTreeMap<String, BTreeSet<String>>;

/// How an unparseable action the broker lists as `null` is shown.
pub const UNKNOWN_ACTION: &str = "(unknown)";

/// A topic's latest schema in the registry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SchemaInfo {
    /// The registry version (0 for the first).
    #[serde(default)]
    pub version: i64,
    /// The schema type (`JSON`, `AVRO`, `NONE`, …). The registry stores
    /// `BYTES` as `NONE`.
    #[serde(rename = "type")]
    pub schema_type: String,
    /// The schema definition.
    #[serde(default)]
    pub data: String,
    /// Free-form properties stored with the schema.
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

/// A schema to upload (`POST /admin/v2/schemas/{t}/{ns}/{topic}/schema`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SchemaUpload {
    /// The schema type (`JSON`, `AVRO`, `BYTES`, …).
    #[serde(rename = "type")]
    pub schema_type: String,
    /// The schema definition, as a string.
    pub schema: String,
    /// Free-form properties stored with the schema.
    pub properties: BTreeMap<String, String>,
}

/// A namespace's retention (`…/namespaces/{t}/{ns}/retention`): `-1` is no
/// limit on that axis, `0` and `0` no retention. Pulsar's "MB" is a MiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RetentionPolicies {
    /// Age limit in minutes.
    pub retention_time_in_minutes: i64,
    /// Size limit in MiB.
    #[serde(rename = "retentionSizeInMB")]
    pub retention_size_in_mb: i64,
}

/// Retry bounds for calls that are safe to repeat.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (1 = no retry).
    pub attempts: u32,
    /// Wait before the first retry; doubled for each further one.
    pub backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 3,
            backoff: Duration::from_millis(200),
        }
    }
}

/// Whether a call may be repeated after a transient failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Repeat {
    Safe,
    Once,
}

/// Whether a call may follow a broker's redirect (see [`redirect`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Redirects {
    Follow,
    /// For the broker list, which decides what may be followed.
    Refuse,
}

/// Pulsar's admin REST API (v2), as the holder of one token.
#[derive(Clone)]
pub struct AdminClient {
    base: Url,
    token: SecretValue,
    http: reqwest::Client,
    retry: RetryPolicy,
    /// The cluster whose brokers redirects may lead to; `None`: none.
    cluster: Option<String>,
    brokers: redirect::Brokers,
}

impl fmt::Debug for AdminClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminClient")
            .field("base", &self.base.as_str())
            .field("token", &self.token)
            .field("cluster", &self.cluster)
            .finish_non_exhaustive()
    }
}

/// Default per-request timeout: the rotate function has minutes, but a hung
/// broker must not eat all of them.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Reasons are broker text; keep reports and logs bounded.
const MAX_REASON: usize = 300;

impl AdminClient {
    /// A client for the admin API at `base` (e.g. `http://broker:8080`),
    /// with default timeouts and retries.
    pub fn new(base: Url, token: SecretValue) -> Result<Self, AdminError> {
        // A redirect could carry the bearer token to another host.
        let http = crate::http::redirect_free_client()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(AdminError::Client)?;
        Self::with_http(base, token, http)
    }

    /// Like [`AdminClient::new`], with a caller-built HTTP client.
    pub fn with_http(
        base: Url,
        token: SecretValue,
        http: reqwest::Client,
    ) -> Result<Self, AdminError> {
        if base.cannot_be_a_base() {
            return Err(AdminError::BadBaseUrl(base));
        }
        Ok(Self {
            base,
            token,
            http,
            retry: RetryPolicy::default(),
            cluster: None,
            brokers: redirect::Brokers::default(),
        })
    }

    /// The same client, following a broker's `307`/`308` to another broker
    /// of `cluster` (the policy's `pulsar.cluster`), and to nothing else.
    /// Needed when the base URL is one broker of a multi-broker cluster.
    pub fn within_cluster(mut self, cluster: impl Into<String>) -> Self {
        self.cluster = Some(cluster.into());
        self.brokers = redirect::Brokers::default();
        self
    }

    /// Tenant names.
    pub async fn tenants(&self) -> Result<Vec<String>, AdminError> {
        self.get_json(&["tenants"]).await
    }

    /// A tenant's settings.
    pub async fn tenant(&self, tenant: &str) -> Result<TenantInfo, AdminError> {
        self.get_json(&["tenants", tenant]).await
    }

    /// Creates a tenant ([`AdminError::Conflict`] when it exists,
    /// [`AdminError::PreconditionFailed`] when a cluster does not).
    pub async fn create_tenant(&self, tenant: &str, info: &TenantInfo) -> Result<(), AdminError> {
        self.send(Method::PUT, &["tenants", tenant], Some(info), Repeat::Safe)
            .await
            .map(drop)
    }

    /// Replaces an existing tenant's settings.
    pub async fn update_tenant(&self, tenant: &str, info: &TenantInfo) -> Result<(), AdminError> {
        self.send(Method::POST, &["tenants", tenant], Some(info), Repeat::Safe)
            .await
            .map(drop)
    }

    /// The names of a tenant's namespaces, without the `tenant/` prefix.
    pub async fn namespaces(&self, tenant: &str) -> Result<Vec<String>, AdminError> {
        let full: Vec<String> = self.get_json(&["namespaces", tenant]).await?;
        Ok(full
            .into_iter()
            .map(|name| match name.split_once('/') {
                Some((_, ns)) => ns.to_owned(),
                None => name,
            })
            .collect())
    }

    /// Creates `tenant/namespace` with the broker's default policies.
    pub async fn create_namespace(&self, tenant: &str, namespace: &str) -> Result<(), AdminError> {
        self.send::<()>(
            Method::PUT,
            &["namespaces", tenant, namespace],
            None,
            Repeat::Safe,
        )
        .await
        .map(drop)
    }

    /// Who may do what in `tenant/namespace` (namespace-wide grants only;
    /// topic-level grants are not included).
    pub async fn permissions(
        &self,
        tenant: &str,
        namespace: &str,
    ) -> Result<Permissions, AdminError> {
        let raw: BTreeMap<String, Vec<Option<String>>> = self
            .get_json(&["namespaces", tenant, namespace, "permissions"])
            .await?;
        Ok(raw
            .into_iter()
            .map(|(role, actions)| {
                let actions = actions
                    .into_iter()
                    .map(|a| a.unwrap_or_else(|| UNKNOWN_ACTION.to_owned()))
                    .collect();
                (role, actions)
            })
            .collect())
    }

    /// Sets `role`'s actions on `tenant/namespace` to exactly `actions`
    /// (Pulsar replaces the role's previous set).
    pub async fn grant(
        &self,
        tenant: &str,
        namespace: &str,
        role: &str,
        actions: &[&str],
    ) -> Result<(), AdminError> {
        self.send(
            Method::POST,
            &["namespaces", tenant, namespace, "permissions", role],
            Some(&actions),
            Repeat::Safe,
        )
        .await
        .map(drop)
    }

    /// Removes every namespace-wide action of `role` on `tenant/namespace`
    /// (a no-op when it has none).
    pub async fn revoke(
        &self,
        tenant: &str,
        namespace: &str,
        role: &str,
    ) -> Result<(), AdminError> {
        self.send::<()>(
            Method::DELETE,
            &["namespaces", tenant, namespace, "permissions", role],
            None,
            Repeat::Safe,
        )
        .await
        .map(drop)
    }

    /// The namespace's deduplication setting; `None` when the namespace does
    /// not set it and the broker default applies.
    pub async fn deduplication(
        &self,
        tenant: &str,
        namespace: &str,
    ) -> Result<Option<bool>, AdminError> {
        self.get_json(&["namespaces", tenant, namespace, "deduplication"])
            .await
    }

    /// Switches deduplication on or off for the namespace.
    pub async fn set_deduplication(
        &self,
        tenant: &str,
        namespace: &str,
        enabled: bool,
    ) -> Result<(), AdminError> {
        self.send(
            Method::POST,
            &["namespaces", tenant, namespace, "deduplication"],
            Some(&enabled),
            Repeat::Safe,
        )
        .await
        .map(drop)
    }

    /// The namespace's retention; `None` when the namespace does not set one
    /// and the broker default applies.
    pub async fn retention(
        &self,
        tenant: &str,
        namespace: &str,
    ) -> Result<Option<RetentionPolicies>, AdminError> {
        self.get_json(&["namespaces", tenant, namespace, "retention"])
            .await
    }

    /// Sets the namespace's retention.
    pub async fn set_retention(
        &self,
        tenant: &str,
        namespace: &str,
        retention: RetentionPolicies,
    ) -> Result<(), AdminError> {
        self.send(
            Method::POST,
            &["namespaces", tenant, namespace, "retention"],
            Some(&retention),
            Repeat::Safe,
        )
        .await
        .map(drop)
    }

    /// Whether producers must declare a schema compatible with the topic's.
    pub async fn schema_validation_enforced(
        &self,
        tenant: &str,
        namespace: &str,
    ) -> Result<bool, AdminError> {
        let value: Option<bool> = self
            .get_json(&["namespaces", tenant, namespace, "schemaValidationEnforced"])
            .await?;
        Ok(value.unwrap_or(false))
    }

    /// Sets `schemaValidationEnforced` for the namespace.
    pub async fn set_schema_validation_enforced(
        &self,
        tenant: &str,
        namespace: &str,
        enforced: bool,
    ) -> Result<(), AdminError> {
        self.send(
            Method::POST,
            &["namespaces", tenant, namespace, "schemaValidationEnforced"],
            Some(&enforced),
            Repeat::Safe,
        )
        .await
        .map(drop)
    }

    /// The latest schema of `tenant/namespace/topic`, or `None` when the
    /// registry has none (or it was deleted).
    pub async fn schema(
        &self,
        tenant: &str,
        namespace: &str,
        topic: &str,
    ) -> Result<Option<SchemaInfo>, AdminError> {
        match self
            .get_json(&["schemas", tenant, namespace, topic, "schema"])
            .await
        {
            Ok(schema) => Ok(Some(schema)),
            Err(AdminError::NotFound { .. }) => Ok(None),
            Err(other) => Err(other),
        }
    }

    /// Uploads a new schema version for `tenant/namespace/topic` and returns
    /// the version the registry gave it (when it says). An identical schema
    /// returns the existing version; an incompatible one fails with
    /// [`AdminError::Conflict`]; a definition the broker cannot parse with
    /// [`AdminError::Rejected`] (422).
    pub async fn upload_schema(
        &self,
        tenant: &str,
        namespace: &str,
        topic: &str,
        schema: &SchemaUpload,
    ) -> Result<Option<i64>, AdminError> {
        let body = self
            .send(
                Method::POST,
                &["schemas", tenant, namespace, topic, "schema"],
                Some(schema),
                Repeat::Once,
            )
            .await?;
        // `{"version":{"version":N}}` on Pulsar 4; older brokers differ, and
        // the version is informative only.
        let value: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        Ok(value
            .pointer("/version/version")
            .or_else(|| value.get("version"))
            .and_then(serde_json::Value::as_i64))
    }

    /// The broker's super-user roles (from its runtime configuration), which
    /// the reconciler must never revoke. Needs a super-user token.
    pub async fn superuser_roles(&self) -> Result<BTreeSet<String>, AdminError> {
        let config: BTreeMap<String, String> = self
            .get_json(&["brokers", "configuration", "runtime"])
            .await?;
        // Java's `Set.toString()`: `[a, b]`.
        Ok(config
            .get("superUserRoles")
            .map(|list| {
                list.trim()
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .split(',')
                    .map(str::trim)
                    .filter(|r| !r.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn get_json<T: DeserializeOwned>(&self, segments: &[&str]) -> Result<T, AdminError> {
        self.get_json_via(segments, Redirects::Follow).await
    }

    /// A GET that follows no redirect, whatever the cluster.
    async fn get_json_unredirected<T: DeserializeOwned>(
        &self,
        segments: &[&str],
    ) -> Result<T, AdminError> {
        self.get_json_via(segments, Redirects::Refuse).await
    }

    async fn get_json_via<T: DeserializeOwned>(
        &self,
        segments: &[&str],
        redirects: Redirects,
    ) -> Result<T, AdminError> {
        let body = self
            .send_via::<()>(Method::GET, segments, None, Repeat::Safe, redirects)
            .await?;
        // Pulsar answers "not set" with an empty 200 (e.g. deduplication).
        let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
            b"null"
        } else {
            &body
        };
        serde_json::from_slice(body).map_err(|source| AdminError::Decode {
            request: format!("GET {}", self.path(segments)),
            source,
        })
    }

    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        // Checked in the constructor: the base URL takes path segments.
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(["admin", "v2"]).extend(segments);
        }
        url
    }

    fn path(&self, segments: &[&str]) -> String {
        self.url(segments).path().to_owned()
    }

    async fn send<B: Serialize + ?Sized>(
        &self,
        method: Method,
        segments: &[&str],
        body: Option<&B>,
        repeat: Repeat,
    ) -> Result<Vec<u8>, AdminError> {
        self.send_via(method, segments, body, repeat, Redirects::Follow)
            .await
    }

    async fn send_via<B: Serialize + ?Sized>(
        &self,
        method: Method,
        segments: &[&str],
        body: Option<&B>,
        repeat: Repeat,
        redirects: Redirects,
    ) -> Result<Vec<u8>, AdminError> {
        let url = self.url(segments);
        let request = format!("{method} {}", url.path());
        let attempts = match repeat {
            Repeat::Safe => self.retry.attempts.max(1),
            Repeat::Once => 1,
        };
        let mut backoff = self.retry.backoff;
        let mut attempt = 1;
        loop {
            let result = self.attempt(&method, &url, &request, body, redirects).await;
            match result {
                Err(err) if err.is_transient() && attempt < attempts => {
                    tracing::debug!(
                        target: "reconcile",
                        request = %request,
                        attempt,
                        error = %err,
                        "admin call failed; retrying"
                    );
                    tokio::time::sleep(backoff).await;
                    backoff = backoff.saturating_mul(2);
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// One call: a request, and the same request again (method, body and
    /// token) wherever an allowed redirect sends it.
    async fn attempt<B: Serialize + ?Sized>(
        &self,
        method: &Method,
        url: &Url,
        request: &str,
        body: Option<&B>,
        redirects: Redirects,
    ) -> Result<Vec<u8>, AdminError> {
        let mut url = url.clone();
        let mut hops = 0;
        loop {
            let (status, location, bytes) = self.exchange(method, &url, request, body).await?;
            if status.is_success() {
                return Ok(bytes);
            }
            if !status.is_redirection() {
                return Err(AdminError::from_status(
                    request.to_owned(),
                    status,
                    reason(&bytes),
                ));
            }
            url = match redirects {
                Redirects::Follow => {
                    self.next_hop(request, &url, status, location.as_deref(), hops)
                        .await?
                }
                Redirects::Refuse => {
                    return Err(AdminError::Redirect {
                        request: request.to_owned(),
                        status: status.as_u16(),
                        location: redirect::shown(&url, location.as_deref()),
                        refused: Refusal::ListRedirected,
                    });
                }
            };
            hops += 1;
        }
    }

    /// One HTTP request: the status, the `Location` (when it is text) and
    /// the body.
    async fn exchange<B: Serialize + ?Sized>(
        &self,
        method: &Method,
        url: &Url,
        request: &str,
        body: Option<&B>,
    ) -> Result<(StatusCode, Option<String>, Vec<u8>), AdminError> {
        let mut builder = self
            .http
            .request(method.clone(), url.clone())
            .bearer_auth(self.token.expose())
            .header(reqwest::header::ACCEPT, "application/json");
        if let Some(body) = body {
            builder = builder.json(body);
        } else if *method == Method::PUT || *method == Method::POST {
            // Jersey refuses a body-less PUT without a content type.
            builder = builder.header(reqwest::header::CONTENT_TYPE, "application/json");
        }
        let transport = |source| AdminError::Transport {
            request: request.to_owned(),
            source,
        };
        let response = builder.send().await.map_err(transport)?;
        let status = response.status();
        let location = response
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let bytes = response.bytes().await.map_err(transport)?;
        Ok((status, location, bytes.to_vec()))
    }
}

/// The broker's explanation in an error body: `{"reason": "..."}` from
/// Pulsar's handlers, `{"message": "..."}` from Jetty's JSON error page, or
/// the `<title>` of its HTML one.
fn reason(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    let found = if text.starts_with('{') {
        serde_json::from_str::<serde_json::Value>(text)
            .ok()
            .and_then(|v| {
                // Pulsar's handlers say `reason`; Jetty's own error page (e.g.
                // an exception mapped to 409) says `message`.
                let text = v.get("reason").or_else(|| v.get("message"))?;
                text.as_str().map(str::to_owned)
            })
            .unwrap_or_default()
    } else if let Some(start) = text.find("<title>") {
        let rest = &text[start + "<title>".len()..];
        let title = rest.split("</title>").next().unwrap_or_default();
        // "Error 422 Invalid schema definition…": the status is shown anyway.
        let mut words = title.splitn(3, ' ');
        match (words.next(), words.next(), words.next()) {
            (Some("Error"), Some(code), Some(message)) if code.parse::<u16>().is_ok() => {
                message.to_owned()
            }
            _ => title.to_owned(),
        }
    } else {
        String::new()
    };
    // An unexpected broker exception comes back as a stack trace; its
    // `Message:` line is the part worth reporting.
    let found = match found.split_once("\nMessage: ") {
        Some((_, rest)) => rest.lines().next().unwrap_or_default(),
        None => found.trim(),
    };
    match found.char_indices().nth(MAX_REASON) {
        Some((cut, _)) => format!("{}…", &found[..cut]),
        None => found.to_owned(),
    }
}
