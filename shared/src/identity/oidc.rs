//! OIDC bearer tokens: turns `Authorization: Bearer <JWT>` from a configured
//! issuer (Okta, Cognito, Keycloak, any OpenID Provider) into an [`Identity`].
//!
//! This module owns everything between the raw token and the identity:
//! choosing the issuer, pinning the signature algorithm, finding the issuer's
//! signing keys (discovery document, JWKS) and caching them, checking the
//! signature and the registered claims (`exp`, `nbf`, `iss`, audience), and
//! mapping the issuer's claims onto [`Identity`]. The policy module owns the
//! YAML and converts it into [`IssuerConfig`].
//!
//! The rules, in the order they are applied:
//!
//! 1. The token must look like a compact JWS of at most [`MAX_TOKEN_BYTES`]
//!    (three base64url segments, JSON header and payload, no `crit`).
//! 2. The *unverified* `iss` only selects one configured issuer (exact string
//!    match); an unknown issuer is refused before any network traffic.
//! 3. The header `alg` must be one of that issuer's configured algorithms.
//!    Symmetric (`HS*`) algorithms and `none` are never accepted, whatever the
//!    configuration says, and nothing from the token or the JWK widens the
//!    list. `jku`, `x5u`, `jwk` and other key-carrying header parameters are
//!    ignored: keys only ever come from the issuer's own JWKS.
//! 4. The key is chosen by `kid` from the cached JWKS; its type (and its own
//!    `alg`, when present) must fit the header `alg`. A token without `kid` is
//!    accepted only when exactly one key can verify it.
//! 5. Signature, then `exp` (required), `nbf` (if present), and the audience
//!    claim, with a small configurable clock leeway.
//!
//! Keys are cached per issuer for [`VerifierOptions::jwks_ttl`]. An unknown
//! `kid` triggers a refetch at most once per
//! [`VerifierOptions::min_refetch_interval`], so random `kid`s cannot turn the
//! function into a traffic amplifier against the identity provider, and
//! concurrent misses share one fetch. When a refresh fails the previous keys
//! keep working for up to one more TTL, so a short identity-provider outage
//! does not become an outage here.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;
use serde_json::{Map, Value};
use url::Url;

use super::{AuthMethod, Identity};
use crate::telemetry::fingerprint;

/// Longest token accepted, in bytes. Real access tokens are a few KiB even
/// with a hundred groups; anything much larger is refused before decoding so
/// an attacker cannot make us base64-decode and parse megabytes per request.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Largest discovery document or JWKS accepted, in bytes.
const MAX_DOCUMENT_BYTES: usize = 256 * 1024;

/// Smallest RSA modulus accepted in a JWKS, in bits.
const MIN_RSA_BITS: usize = 2048;

/// Longest attacker-supplied string (issuer, `alg`, `kid`) echoed in an error.
const MAX_ECHO_CHARS: usize = 128;

/// One trusted token issuer, as the policy configures it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuerConfig {
    /// The issuer identifier, compared byte for byte with the token's `iss`
    /// and with the discovery document's `issuer`.
    pub issuer: String,
    /// Accepted audiences: the token's audience claim must name at least one.
    pub audiences: Vec<String>,
    /// Signature algorithms accepted from this issuer. Symmetric algorithms
    /// are ignored (and rejected by [`IssuerConfig::validate`]).
    pub algorithms: Vec<Algorithm>,
    /// The JWKS location; `None` reads it from
    /// `{issuer}/.well-known/openid-configuration`.
    pub jwks_uri: Option<Url>,
    /// Which claims hold the subject, the groups and the calling service.
    pub claims: ClaimMapping,
    /// The claim holding the audience: `aud` normally; Cognito access tokens
    /// have no `aud` and carry the app client id in `client_id` instead.
    pub audience_claim: String,
    /// Clock leeway for this issuer; `None` uses [`VerifierOptions::leeway`].
    pub leeway: Option<Duration>,
}

impl From<&crate::policy::OidcIssuer> for IssuerConfig {
    /// The verifier's view of an issuer the policy configures.
    fn from(p: &crate::policy::OidcIssuer) -> Self {
        let path = |c: &Option<crate::policy::ClaimPath>| {
            c.as_ref()
                .map(|c| c.as_str().to_owned())
                .unwrap_or_default()
        };
        Self {
            issuer: p.issuer.clone(),
            audiences: p.audiences.clone(),
            algorithms: p.algorithms.clone(),
            jwks_uri: p.jwks_uri.clone(),
            claims: ClaimMapping {
                subject: p.claims.subject.as_str().to_owned(),
                groups: path(&p.claims.groups),
                service: path(&p.claims.service),
            },
            audience_claim: p.audience_claim.clone(),
            leeway: Some(Duration::from_secs(p.leeway_seconds)),
        }
    }
}

impl IssuerConfig {
    /// An issuer with the usual defaults: RS256, `aud`, discovery, and the
    /// default [`ClaimMapping`].
    pub fn new<A: Into<String>>(
        issuer: impl Into<String>,
        audiences: impl IntoIterator<Item = A>,
    ) -> Self {
        Self {
            issuer: issuer.into(),
            audiences: audiences.into_iter().map(Into::into).collect(),
            algorithms: vec![Algorithm::RS256],
            jwks_uri: None,
            claims: ClaimMapping::default(),
            audience_claim: "aud".to_owned(),
            leeway: None,
        }
    }

    /// Checks what can be checked without the network, so a bad policy fails
    /// at start-up rather than on the first request. [`OidcVerifier::new`]
    /// never trusts an invalid configuration either (it drops symmetric
    /// algorithms and refuses insecure URLs at fetch time), but it cannot
    /// report the mistake.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let issuer = || self.issuer.clone();
        let url = Url::parse(&self.issuer).map_err(|source| ConfigError::IssuerUrl {
            issuer: issuer(),
            source,
        })?;
        if !is_secure_url(&url) {
            return Err(ConfigError::InsecureUrl {
                issuer: issuer(),
                url: self.issuer.clone(),
            });
        }
        if let Some(jwks) = &self.jwks_uri
            && !is_secure_url(jwks)
        {
            return Err(ConfigError::InsecureUrl {
                issuer: issuer(),
                url: jwks.to_string(),
            });
        }
        if self.audiences.iter().all(|a| a.is_empty()) {
            return Err(ConfigError::NoAudiences { issuer: issuer() });
        }
        if self.algorithms.is_empty() {
            return Err(ConfigError::NoAlgorithms { issuer: issuer() });
        }
        if let Some(&alg) = self.algorithms.iter().find(|a| !is_asymmetric(**a)) {
            return Err(ConfigError::SymmetricAlgorithm {
                issuer: issuer(),
                alg,
            });
        }
        for (what, claim) in [
            ("subject", &self.claims.subject),
            ("audience", &self.audience_claim),
        ] {
            if claim.is_empty() {
                return Err(ConfigError::EmptyClaimName {
                    issuer: issuer(),
                    what,
                });
            }
        }
        Ok(())
    }

    /// [`IssuerConfig::validate`] for every issuer, plus duplicates.
    pub fn validate_all(issuers: &[IssuerConfig]) -> Result<(), ConfigError> {
        for (i, config) in issuers.iter().enumerate() {
            config.validate()?;
            if issuers[..i].iter().any(|c| c.issuer == config.issuer) {
                return Err(ConfigError::Duplicate {
                    issuer: config.issuer.clone(),
                });
            }
        }
        Ok(())
    }
}

/// Where an issuer puts the claims [`Identity`] is made of. Each name is
/// either a JSON pointer (RFC 6901, starting with `/`: `/realm_access/roles`)
/// or a claim name; a claim name that no top-level claim has is read as a
/// dotted path into nested objects (`realm_access.roles`), so a namespaced
/// claim such as `https://example.com/groups` still works as a plain name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimMapping {
    /// The principal; must be a non-empty string. Default `sub`.
    pub subject: String,
    /// Group memberships: an array of strings or a single string. Default
    /// `groups`; Cognito `cognito:groups`; Keycloak `realm_access.roles`.
    /// Empty: the issuer's tokens carry no groups.
    pub groups: String,
    /// The calling client. Default `azp`; Okta `cid`; Cognito `client_id`.
    /// Empty: no service is taken from the token.
    pub service: String,
}

impl Default for ClaimMapping {
    fn default() -> Self {
        Self::named("sub", "groups", "azp")
    }
}

impl ClaimMapping {
    /// Okta: `groups` (a groups claim on the authorization server) and `cid`.
    pub fn okta() -> Self {
        Self::named("sub", "groups", "cid")
    }

    /// Cognito user-pool tokens: `cognito:groups` and `client_id`.
    pub fn cognito() -> Self {
        Self::named("sub", "cognito:groups", "client_id")
    }

    /// Keycloak: realm roles (`realm_access.roles`) and `azp`.
    pub fn keycloak() -> Self {
        Self::named("sub", "realm_access.roles", "azp")
    }

    fn named(subject: &str, groups: &str, service: &str) -> Self {
        Self {
            subject: subject.to_owned(),
            groups: groups.to_owned(),
            service: service.to_owned(),
        }
    }
}

/// Tuning for [`OidcVerifier`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifierOptions {
    /// Clock skew tolerated on `exp` and `nbf`. Default 30 s.
    pub leeway: Duration,
    /// How long a fetched JWKS is used before it is fetched again. Default 1 h.
    pub jwks_ttl: Duration,
    /// Least time between two key fetches for one issuer, however many
    /// unknown `kid`s arrive. Default 30 s.
    pub min_refetch_interval: Duration,
    /// Timeout of one discovery or JWKS request, body included. Default 3 s.
    pub http_timeout: Duration,
}

impl Default for VerifierOptions {
    fn default() -> Self {
        Self {
            leeway: Duration::from_secs(30),
            jwks_ttl: Duration::from_secs(3600),
            min_refetch_interval: Duration::from_secs(30),
            http_timeout: Duration::from_secs(3),
        }
    }
}

/// Why a token was refused. Every variant is a 401 except
/// [`OidcError::KeysUnavailable`], which is the identity provider's fault
/// (503); [`OidcError::is_unavailable`] tells them apart.
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    /// Not a JWT at all: wrong shape, bad base64url or JSON, too long.
    #[error("malformed token: {0}")]
    Malformed(#[from] MalformedToken),
    /// The token's `iss` is not a configured issuer.
    #[error("issuer {0:?} is not trusted")]
    UnknownIssuer(String),
    /// The header `alg` is not one the issuer is pinned to (always the case
    /// for `none` and `HS*`).
    #[error("algorithm {alg:?} is not allowed for issuer {issuer}")]
    AlgorithmNotAllowed {
        /// The configured issuer.
        issuer: String,
        /// The token's `alg`, sanitised.
        alg: String,
    },
    /// The key named by `kid` cannot verify the header `alg` (wrong key type,
    /// or the JWK names another `alg`).
    #[error("key {kid:?} of issuer {issuer} is not a key for {alg:?}")]
    KeyAlgorithmMismatch {
        /// The configured issuer.
        issuer: String,
        /// The key id.
        kid: String,
        /// The token's algorithm.
        alg: Algorithm,
    },
    /// No key in the issuer's JWKS matches (after the refetch the rate limit
    /// allowed); with `kid: None`, the JWKS does not hold exactly one key for
    /// the algorithm.
    #[error("no signing key {kid:?} for issuer {issuer}")]
    UnknownKey {
        /// The configured issuer.
        issuer: String,
        /// The token's `kid`, sanitised.
        kid: Option<String>,
    },
    /// `exp` is in the past (beyond the leeway).
    #[error("token expired")]
    Expired,
    /// `nbf` is in the future (beyond the leeway).
    #[error("token not valid yet")]
    NotYetValid,
    /// The audience claim names none of the configured audiences.
    #[error("token audience is not accepted")]
    WrongAudience,
    /// The signature does not verify with the issuer's key.
    #[error("invalid token signature")]
    InvalidSignature,
    /// A required claim is absent or not of the expected type.
    #[error("missing or invalid claim {0:?}")]
    MissingClaim(String),
    /// The issuer's keys cannot be fetched (network, HTTP status, invalid
    /// document): the caller may be fine, we cannot tell. A 503.
    #[error("signing keys of issuer {issuer} are unavailable")]
    KeysUnavailable {
        /// The configured issuer.
        issuer: String,
        /// What went wrong with the last fetch.
        #[source]
        source: Arc<KeyFetchError>,
    },
}

impl OidcError {
    /// True when the identity provider, not the caller, is at fault (503
    /// rather than 401).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::KeysUnavailable { .. })
    }
}

/// How a token fails to be a JWT.
#[derive(Debug, thiserror::Error)]
pub enum MalformedToken {
    /// Longer than [`MAX_TOKEN_BYTES`].
    #[error("longer than {MAX_TOKEN_BYTES} bytes")]
    TooLong,
    /// Not three `.`-separated segments.
    #[error("not three dot-separated segments")]
    Segments,
    /// A segment is not unpadded base64url.
    #[error("{part} is not base64url")]
    Base64 {
        /// `header`, `payload` or `signature`.
        part: &'static str,
        /// The decoding error.
        #[source]
        source: base64::DecodeError,
    },
    /// The header or payload is not the JSON object it must be.
    #[error("{part} is not a valid JSON object")]
    Json {
        /// `header` or `payload`.
        part: &'static str,
        /// The parsing error.
        #[source]
        source: serde_json::Error,
    },
    /// The header has `crit`: we implement no extension, so RFC 7515 says
    /// refuse.
    #[error("critical header extensions are not supported")]
    Critical,
}

/// Why the keys of an issuer could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum KeyFetchError {
    /// Plain `http` to a host other than loopback.
    #[error("refusing plain-http key material from {0} (https required)")]
    InsecureUrl(Url),
    /// The issuer is not a URL, so it has no discovery document.
    #[error("issuer {issuer:?} is not a URL")]
    IssuerUrl {
        /// The configured issuer.
        issuer: String,
        /// The parsing error.
        #[source]
        source: url::ParseError,
    },
    /// The request failed (connection, TLS, timeout, body).
    #[error("GET {url} failed")]
    Request {
        /// The URL requested.
        url: Url,
        /// The transport error.
        #[source]
        source: reqwest::Error,
    },
    /// The server answered with a non-success status.
    #[error("GET {url} returned HTTP {status}")]
    Status {
        /// The URL requested.
        url: Url,
        /// The HTTP status.
        status: u16,
    },
    /// The body exceeds the size limit.
    #[error("{url} is larger than {limit} bytes")]
    TooLarge {
        /// The URL requested.
        url: Url,
        /// The limit.
        limit: usize,
    },
    /// The body is not the expected JSON document.
    #[error("{url} is not a valid {what}")]
    Document {
        /// The URL requested.
        url: Url,
        /// `discovery document` or `JWKS`.
        what: &'static str,
        /// The parsing error.
        #[source]
        source: serde_json::Error,
    },
    /// The discovery document speaks for another issuer (OpenID Connect
    /// Discovery §4.3: it must be refused).
    #[error("discovery document names issuer {found:?}, expected {expected:?}")]
    IssuerMismatch {
        /// The configured issuer.
        expected: String,
        /// The document's `issuer`.
        found: String,
    },
    /// The discovery document's `jwks_uri` is not a URL.
    #[error("jwks_uri {value:?} is not a URL")]
    JwksUri {
        /// The value found.
        value: String,
        /// The parsing error.
        #[source]
        source: url::ParseError,
    },
    /// The JWKS holds no key usable with the configured algorithms.
    #[error("{url} has no signing key usable with the configured algorithms")]
    NoUsableKeys {
        /// The JWKS URL.
        url: Url,
    },
}

/// A policy mistake [`IssuerConfig::validate`] reports.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The issuer is not an absolute URL.
    #[error("OIDC issuer {issuer:?} is not a URL")]
    IssuerUrl {
        /// The configured issuer.
        issuer: String,
        /// The parsing error.
        #[source]
        source: url::ParseError,
    },
    /// An issuer or JWKS URL is plain http to a non-loopback host.
    #[error("OIDC issuer {issuer}: {url} must be https (http only for loopback hosts)")]
    InsecureUrl {
        /// The configured issuer.
        issuer: String,
        /// The offending URL.
        url: String,
    },
    /// No audience: every token would be refused.
    #[error("OIDC issuer {issuer}: audiences must not be empty")]
    NoAudiences {
        /// The configured issuer.
        issuer: String,
    },
    /// No algorithm: every token would be refused.
    #[error("OIDC issuer {issuer}: algorithms must not be empty")]
    NoAlgorithms {
        /// The configured issuer.
        issuer: String,
    },
    /// An HMAC algorithm: the "key" would be public (or shared with the IdP).
    #[error(
        "OIDC issuer {issuer}: {alg:?} is symmetric; only RS*, PS*, ES256, ES384 and EdDSA are accepted"
    )]
    SymmetricAlgorithm {
        /// The configured issuer.
        issuer: String,
        /// The algorithm.
        alg: Algorithm,
    },
    /// A claim name is empty.
    #[error("OIDC issuer {issuer}: the {what} claim name must not be empty")]
    EmptyClaimName {
        /// The configured issuer.
        issuer: String,
        /// Which claim.
        what: &'static str,
    },
    /// Two entries for one issuer.
    #[error("OIDC issuer {issuer} is configured twice")]
    Duplicate {
        /// The issuer.
        issuer: String,
    },
}

/// Verifies OIDC bearer tokens against the configured issuers. Build one per
/// process (it holds the key caches) and share it.
pub struct OidcVerifier {
    issuers: HashMap<String, IssuerState>,
    http: reqwest::Client,
    options: VerifierOptions,
    fetches: AtomicU64,
}

impl fmt::Debug for OidcVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OidcVerifier")
            .field("issuers", &self.issuers.keys().collect::<Vec<_>>())
            .field("options", &self.options)
            .field("fetches", &self.fetch_count())
            .finish_non_exhaustive()
    }
}

impl OidcVerifier {
    /// A verifier for `issuers`. No network traffic happens here: keys are
    /// fetched on first use. Symmetric algorithms are dropped from each
    /// issuer's list; a repeated issuer keeps its first entry. Run
    /// [`IssuerConfig::validate_all`] first to report such mistakes.
    pub fn new(
        issuers: Vec<IssuerConfig>,
        http: reqwest::Client,
        options: VerifierOptions,
    ) -> Self {
        let mut states = HashMap::with_capacity(issuers.len());
        for config in issuers {
            if states.contains_key(&config.issuer) {
                tracing::warn!(issuer = %config.issuer, "OIDC issuer configured twice; keeping the first");
                continue;
            }
            states.insert(config.issuer.clone(), IssuerState::new(config));
        }
        Self {
            issuers: states,
            http,
            options,
            fetches: AtomicU64::new(0),
        }
    }

    /// How many discovery and JWKS requests this verifier has sent: a warm
    /// verification must not move it.
    pub fn fetch_count(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    /// True when `token` parses as a JWT whose (unverified) `iss` is one of
    /// the configured issuers: the only question the authenticator asks
    /// before deciding a bearer token is ours rather than one a Kong auth
    /// plugin already consumed. Never a substitute for [`Self::verify`].
    pub fn is_ours(&self, token: &str) -> bool {
        ParsedToken::parse(token).is_ok_and(|parsed| {
            parsed
                .claims
                .get("iss")
                .and_then(Value::as_str)
                .is_some_and(|iss| self.issuers.contains_key(iss))
        })
    }

    /// Verifies `token` (the part after `Bearer `) and returns the caller.
    pub async fn verify(&self, token: &str) -> Result<Identity, OidcError> {
        let result = self.verify_token(token).await;
        if let Err(error) = &result {
            // Field expressions are only evaluated when debug is enabled, so
            // the fingerprint costs nothing in production.
            tracing::debug!(token = %fingerprint(token.as_bytes()), %error, "bearer token refused");
        }
        result
    }

    async fn verify_token(&self, token: &str) -> Result<Identity, OidcError> {
        let parsed = ParsedToken::parse(token)?;
        let iss = parsed
            .claims
            .get("iss")
            .and_then(Value::as_str)
            .ok_or_else(|| OidcError::MissingClaim("iss".to_owned()))?;
        let issuer = self
            .issuers
            .get(iss)
            .ok_or_else(|| OidcError::UnknownIssuer(echo(iss)))?;
        let alg = issuer.pin(&parsed.header.alg)?;
        let key = self
            .key_for(issuer, parsed.header.kid.as_deref(), alg)
            .await?;
        // The signature covers the exact header and payload bytes we parsed,
        // so the unverified claims become verified claims once this passes.
        match jsonwebtoken::crypto::verify(
            parsed.signature,
            parsed.signing_input.as_bytes(),
            &key.decoding,
            alg,
        ) {
            Ok(true) => {}
            Ok(false) | Err(_) => return Err(OidcError::InvalidSignature),
        }
        let leeway = issuer.config.leeway.unwrap_or(self.options.leeway);
        issuer.check_claims(&parsed.claims, unix_now(), leeway)?;
        issuer.identity(parsed.claims)
    }

    /// The key for `kid`/`alg`: from the cache when it is fresh and has it,
    /// else after (at most) one rate-limited, coalesced refetch.
    async fn key_for(
        &self,
        issuer: &IssuerState,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<Arc<VerifyingKey>, OidcError> {
        let cached = issuer.snapshot();
        if let Some(set) = &cached {
            let now = Instant::now();
            if set.age(now) < self.options.jwks_ttl {
                match set.select(kid, alg) {
                    Selected::Missing => {}
                    other => return issuer.resolve(other, kid, alg),
                }
            } else if let Ok(refresh) = issuer.refresh.try_lock() {
                return self.refresh_and_select(issuer, refresh, kid, alg).await;
            } else if set.age(now) < self.stale_limit() {
                // Someone is refreshing the expired set right now; the old
                // keys are still good enough not to make this caller wait.
                if let Selected::Key(key) = set.select(kid, alg) {
                    return Ok(key);
                }
            }
        }
        let refresh = issuer.refresh.lock().await;
        self.refresh_and_select(issuer, refresh, kid, alg).await
    }

    /// Under the issuer's refresh lock: re-checks the cache (another caller
    /// may just have refreshed it), then fetches if the rate limit allows.
    async fn refresh_and_select(
        &self,
        issuer: &IssuerState,
        mut refresh: tokio::sync::MutexGuard<'_, RefreshState>,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<Arc<VerifyingKey>, OidcError> {
        let now = Instant::now();
        let cached = issuer.snapshot();
        if let Some(set) = &cached
            && set.age(now) < self.options.jwks_ttl
        {
            match set.select(kid, alg) {
                Selected::Missing => {}
                other => return issuer.resolve(other, kid, alg),
            }
        }
        let stale = cached
            .as_ref()
            .filter(|set| set.age(now) < self.stale_limit());

        let rate_limited = refresh
            .last_attempt
            .is_some_and(|at| now.duration_since(at) < self.options.min_refetch_interval);
        if rate_limited {
            if let Some(set) = stale {
                match set.select(kid, alg) {
                    Selected::Missing => {}
                    other => return issuer.resolve(other, kid, alg),
                }
            }
            return Err(match &refresh.last_error {
                Some(source) => issuer.unavailable(source.clone()),
                None => issuer.unknown_key(kid),
            });
        }

        let started = Instant::now();
        let result = self.fetch_keys(issuer, &mut refresh).await;
        // Recorded only once the fetch completes, so a caller cancelled
        // mid-fetch does not leave the rate limit blocking without a result.
        refresh.last_attempt = Some(started);
        match result {
            Ok(set) => {
                tracing::info!(issuer = %issuer.config.issuer, keys = set.len(), "fetched OIDC signing keys");
                refresh.last_error = None;
                let set = Arc::new(set);
                issuer.store(set.clone());
                match set.select(kid, alg) {
                    Selected::Missing => Err(issuer.unknown_key(kid)),
                    other => issuer.resolve(other, kid, alg),
                }
            }
            Err(error) => {
                tracing::warn!(
                    issuer = %issuer.config.issuer,
                    error = %crate::telemetry::error_chain(&error),
                    "cannot fetch OIDC signing keys",
                );
                let error = Arc::new(error);
                refresh.last_error = Some(error.clone());
                if let Some(set) = stale
                    && let Selected::Key(key) = set.select(kid, alg)
                {
                    return Ok(key);
                }
                Err(issuer.unavailable(error))
            }
        }
    }

    /// Expired keys stay usable this long after their fetch when refreshing
    /// them fails.
    fn stale_limit(&self) -> Duration {
        self.options.jwks_ttl.saturating_mul(2)
    }

    async fn fetch_keys(
        &self,
        issuer: &IssuerState,
        refresh: &mut RefreshState,
    ) -> Result<KeySet, KeyFetchError> {
        let jwks_uri = match (&issuer.config.jwks_uri, &refresh.discovered_jwks_uri) {
            (Some(configured), _) => configured.clone(),
            (None, Some(discovered)) => discovered.clone(),
            (None, None) => {
                let discovered = self.discover(issuer).await?;
                refresh.discovered_jwks_uri = Some(discovered.clone());
                discovered
            }
        };
        let result = self.fetch_jwks(issuer, &jwks_uri).await;
        if result.is_err() {
            // The provider may have moved its JWKS: rediscover next time.
            refresh.discovered_jwks_uri = None;
        }
        result
    }

    async fn discover(&self, issuer: &IssuerState) -> Result<Url, KeyFetchError> {
        #[derive(Deserialize)]
        struct Discovery {
            issuer: String,
            jwks_uri: String,
        }

        let expected = &issuer.config.issuer;
        // OpenID Connect Discovery §4: strip a trailing `/` before appending.
        let url = Url::parse(&format!(
            "{}/.well-known/openid-configuration",
            expected.trim_end_matches('/')
        ))
        .map_err(|source| KeyFetchError::IssuerUrl {
            issuer: expected.clone(),
            source,
        })?;
        let body = self.get(&url).await?;
        let document: Discovery =
            serde_json::from_slice(&body).map_err(|source| KeyFetchError::Document {
                url: url.clone(),
                what: "discovery document",
                source,
            })?;
        if document.issuer != *expected {
            return Err(KeyFetchError::IssuerMismatch {
                expected: expected.clone(),
                found: echo(&document.issuer),
            });
        }
        Url::parse(&document.jwks_uri).map_err(|source| KeyFetchError::JwksUri {
            value: echo(&document.jwks_uri),
            source,
        })
    }

    async fn fetch_jwks(&self, issuer: &IssuerState, url: &Url) -> Result<KeySet, KeyFetchError> {
        let body = self.get(url).await?;
        let set = KeySet::from_jwks(&body, &issuer.config.algorithms, Instant::now()).map_err(
            |source| KeyFetchError::Document {
                url: url.clone(),
                what: "JWKS",
                source,
            },
        )?;
        if set.is_empty() {
            return Err(KeyFetchError::NoUsableKeys { url: url.clone() });
        }
        Ok(set)
    }

    /// GETs a small JSON document over https (or loopback http), bounded in
    /// time and size.
    async fn get(&self, url: &Url) -> Result<Vec<u8>, KeyFetchError> {
        if !is_secure_url(url) {
            return Err(KeyFetchError::InsecureUrl(url.clone()));
        }
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let request_error = |source| KeyFetchError::Request {
            url: url.clone(),
            source,
        };
        let mut response = self
            .http
            .get(url.clone())
            .header(reqwest::header::ACCEPT, "application/json")
            .timeout(self.options.http_timeout)
            .send()
            .await
            .map_err(request_error)?;
        // A redirect must not downgrade us to plain http either.
        if !is_secure_url(response.url()) {
            return Err(KeyFetchError::InsecureUrl(response.url().clone()));
        }
        let status = response.status();
        if !status.is_success() {
            return Err(KeyFetchError::Status {
                url: url.clone(),
                status: status.as_u16(),
            });
        }
        let too_large = || KeyFetchError::TooLarge {
            url: url.clone(),
            limit: MAX_DOCUMENT_BYTES,
        };
        if response
            .content_length()
            .is_some_and(|len| len > MAX_DOCUMENT_BYTES as u64)
        {
            return Err(too_large());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(request_error)? {
            if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

/// One configured issuer and its key cache.
struct IssuerState {
    config: IssuerConfig,
    /// The current JWKS. A plain lock around an `Arc` keeps the warm path to
    /// one uncontended read lock and a reference-count increment.
    keys: RwLock<Option<Arc<KeySet>>>,
    /// Held while fetching, so concurrent misses wait for one fetch instead
    /// of each starting their own.
    refresh: tokio::sync::Mutex<RefreshState>,
}

#[derive(Default)]
struct RefreshState {
    last_attempt: Option<Instant>,
    last_error: Option<Arc<KeyFetchError>>,
    discovered_jwks_uri: Option<Url>,
}

impl IssuerState {
    fn new(mut config: IssuerConfig) -> Self {
        let before = config.algorithms.len();
        config.algorithms.retain(|alg| is_asymmetric(*alg));
        config.algorithms.dedup();
        if config.algorithms.len() < before {
            tracing::warn!(issuer = %config.issuer, "ignoring symmetric algorithms configured for an OIDC issuer");
        }
        Self {
            config,
            keys: RwLock::new(None),
            refresh: tokio::sync::Mutex::new(RefreshState::default()),
        }
    }

    fn snapshot(&self) -> Option<Arc<KeySet>> {
        // The lock only guards an `Arc` swap: a panic elsewhere cannot leave
        // it half-written, so poisoning is safe to ignore.
        self.keys
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn store(&self, set: Arc<KeySet>) {
        *self.keys.write().unwrap_or_else(PoisonError::into_inner) = Some(set);
    }

    /// The configured algorithm the header names. Compared by name so that
    /// `none`, unknown names and case variants fall out the same way.
    fn pin(&self, alg: &str) -> Result<Algorithm, OidcError> {
        // jsonwebtoken's names are exact and case-sensitive; `none` and
        // unknown names do not parse.
        alg.parse::<Algorithm>()
            .ok()
            .filter(|a| self.config.algorithms.contains(a))
            .ok_or_else(|| OidcError::AlgorithmNotAllowed {
                issuer: self.config.issuer.clone(),
                alg: echo(alg),
            })
    }

    fn resolve(
        &self,
        selected: Selected,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<Arc<VerifyingKey>, OidcError> {
        match selected {
            Selected::Key(key) => Ok(key),
            Selected::Mismatch => Err(OidcError::KeyAlgorithmMismatch {
                issuer: self.config.issuer.clone(),
                kid: echo(kid.unwrap_or_default()),
                alg,
            }),
            Selected::Missing | Selected::Ambiguous => Err(self.unknown_key(kid)),
        }
    }

    fn unknown_key(&self, kid: Option<&str>) -> OidcError {
        OidcError::UnknownKey {
            issuer: self.config.issuer.clone(),
            kid: kid.map(echo),
        }
    }

    fn unavailable(&self, source: Arc<KeyFetchError>) -> OidcError {
        OidcError::KeysUnavailable {
            issuer: self.config.issuer.clone(),
            source,
        }
    }

    /// `exp`, `nbf` and the audience of signature-verified claims. `iss` was
    /// matched exactly when the issuer was chosen.
    fn check_claims(
        &self,
        claims: &Map<String, Value>,
        now: f64,
        leeway: Duration,
    ) -> Result<(), OidcError> {
        let leeway = leeway.as_secs_f64();
        let exp = claims
            .get("exp")
            .and_then(Value::as_f64)
            .ok_or_else(|| OidcError::MissingClaim("exp".to_owned()))?;
        if now >= exp + leeway {
            return Err(OidcError::Expired);
        }
        if let Some(nbf) = claims.get("nbf") {
            let nbf = nbf
                .as_f64()
                .ok_or_else(|| OidcError::MissingClaim("nbf".to_owned()))?;
            if nbf > now + leeway {
                return Err(OidcError::NotYetValid);
            }
        }
        let claim = &self.config.audience_claim;
        let audience = claims
            .get(claim)
            .ok_or_else(|| OidcError::MissingClaim(claim.clone()))?;
        let accepted = |aud: &str| self.config.audiences.iter().any(|a| a == aud);
        let ok = match audience {
            Value::String(aud) => accepted(aud),
            Value::Array(auds) => auds.iter().filter_map(Value::as_str).any(accepted),
            _ => false,
        };
        if ok {
            Ok(())
        } else {
            Err(OidcError::WrongAudience)
        }
    }

    fn identity(&self, claims: Map<String, Value>) -> Result<Identity, OidcError> {
        let mapping = &self.config.claims;
        let principal = lookup(&claims, &mapping.subject)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| OidcError::MissingClaim(mapping.subject.clone()))?
            .to_owned();
        let service = lookup(&claims, &mapping.service)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned);
        let groups = match lookup(&claims, &mapping.groups) {
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
            Some(Value::String(group)) if !group.is_empty() => vec![group.clone()],
            _ => Vec::new(),
        };
        Ok(Identity {
            principal,
            service,
            groups,
            method: AuthMethod::Oidc,
            issuer: self.config.issuer.clone(),
            iam_arn: None,
            kong_consumer: None,
            claims,
        })
    }
}

/// A claim by JSON pointer, by name, or by dotted path when no top-level
/// claim has that name (see [`ClaimMapping`]). An empty name finds nothing.
fn lookup<'a>(claims: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    if let Some(pointer) = name.strip_prefix('/') {
        let mut tokens = pointer.split('/');
        let mut value = claims.get(unescape_pointer(tokens.next()?).as_ref())?;
        for token in tokens {
            let token = unescape_pointer(token);
            value = match value {
                Value::Object(map) => map.get(token.as_ref())?,
                Value::Array(items) => items.get(token.parse::<usize>().ok()?)?,
                _ => return None,
            };
        }
        return Some(value);
    }
    if name.is_empty() {
        return None;
    }
    if let Some(value) = claims.get(name) {
        return Some(value);
    }
    let mut segments = name.split('.');
    let mut value = claims.get(segments.next()?)?;
    for segment in segments {
        value = value.as_object()?.get(segment)?;
    }
    Some(value)
}

fn unescape_pointer(token: &str) -> std::borrow::Cow<'_, str> {
    if token.contains('~') {
        token.replace("~1", "/").replace("~0", "~").into()
    } else {
        token.into()
    }
}

/// The parts of a compact JWS, decoded but not yet verified.
struct ParsedToken<'a> {
    header: Header,
    claims: Map<String, Value>,
    /// `base64url(header) . base64url(payload)`: what the signature covers.
    signing_input: &'a str,
    signature: &'a str,
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    crit: Option<serde::de::IgnoredAny>,
}

impl<'a> ParsedToken<'a> {
    fn parse(token: &'a str) -> Result<Self, MalformedToken> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(MalformedToken::TooLong);
        }
        let (signing_input, signature) = token.rsplit_once('.').ok_or(MalformedToken::Segments)?;
        let (header_b64, payload_b64) = signing_input
            .split_once('.')
            .ok_or(MalformedToken::Segments)?;
        if payload_b64.contains('.') {
            return Err(MalformedToken::Segments);
        }
        let decode = |part: &'static str, text: &str| {
            URL_SAFE_NO_PAD
                .decode(text)
                .map_err(|source| MalformedToken::Base64 { part, source })
        };
        let header: Header =
            serde_json::from_slice(&decode("header", header_b64)?).map_err(|source| {
                MalformedToken::Json {
                    part: "header",
                    source,
                }
            })?;
        if header.crit.is_some() {
            return Err(MalformedToken::Critical);
        }
        let claims: Map<String, Value> = serde_json::from_slice(&decode("payload", payload_b64)?)
            .map_err(|source| MalformedToken::Json {
            part: "payload",
            source,
        })?;
        // Decoded here (and again by the verifier: a few hundred bytes) so a
        // garbled signature is reported as malformed, not as a wrong one.
        URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|source| MalformedToken::Base64 {
                part: "signature",
                source,
            })?;
        Ok(Self {
            header,
            claims,
            signing_input,
            signature,
        })
    }
}

/// A public key from the issuer's JWKS, ready to verify.
struct VerifyingKey {
    kid: Option<String>,
    kind: KeyKind,
    /// The JWK's own `alg`, which then is the only algorithm it verifies.
    alg: Option<Algorithm>,
    /// Built once per fetch, never per token.
    decoding: DecodingKey,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyKind {
    Rsa,
    P256,
    P384,
    Ed25519,
}

impl VerifyingKey {
    fn fits(&self, alg: Algorithm) -> bool {
        self.alg.is_none_or(|own| own == alg)
            && match self.kind {
                KeyKind::Rsa => matches!(
                    alg,
                    Algorithm::RS256
                        | Algorithm::RS384
                        | Algorithm::RS512
                        | Algorithm::PS256
                        | Algorithm::PS384
                        | Algorithm::PS512
                ),
                KeyKind::P256 => alg == Algorithm::ES256,
                KeyKind::P384 => alg == Algorithm::ES384,
                KeyKind::Ed25519 => alg == Algorithm::EdDSA,
            }
    }

    /// A JWK as a verifying key, or why it is not one we would ever use.
    fn from_jwk(jwk: Jwk) -> Result<Self, &'static str> {
        if jwk.use_.as_deref().is_some_and(|u| u != "sig") {
            return Err("not a signature key (use)");
        }
        if jwk
            .key_ops
            .as_ref()
            .is_some_and(|ops| !ops.iter().any(|op| op == "verify"))
        {
            return Err("not a verification key (key_ops)");
        }
        let alg = match jwk.alg.as_deref() {
            None => None,
            Some(name) => Some(
                name.parse::<Algorithm>()
                    .ok()
                    .filter(|a| is_asymmetric(*a))
                    .ok_or("unsupported alg")?,
            ),
        };
        let bytes = |field: Option<&String>| -> Result<Vec<u8>, &'static str> {
            URL_SAFE_NO_PAD
                .decode(field.ok_or("missing key component")?)
                .map_err(|_| "key component is not base64url")
        };
        let (kind, decoding) = match (jwk.kty.as_str(), jwk.crv.as_deref()) {
            ("RSA", _) => {
                let n = bytes(jwk.n.as_ref())?;
                let e = bytes(jwk.e.as_ref())?;
                let n_trimmed = n.iter().position(|b| *b != 0).map_or(&[][..], |i| &n[i..]);
                let bits = n_trimmed.len() * 8
                    - n_trimmed.first().map_or(0, |b| b.leading_zeros() as usize);
                if bits < MIN_RSA_BITS {
                    return Err("RSA key shorter than 2048 bits");
                }
                if e.is_empty() {
                    return Err("RSA exponent is empty");
                }
                (
                    KeyKind::Rsa,
                    DecodingKey::from_rsa_raw_components(n_trimmed, &e),
                )
            }
            ("EC", Some(crv @ ("P-256" | "P-384"))) => {
                let (kind, len) = if crv == "P-256" {
                    (KeyKind::P256, 32)
                } else {
                    (KeyKind::P384, 48)
                };
                let x = bytes(jwk.x.as_ref())?;
                let y = bytes(jwk.y.as_ref())?;
                if x.len() != len || y.len() != len {
                    return Err("EC coordinates do not fit the curve");
                }
                // Uncompressed SEC1 point, what the EC verifier expects.
                let mut point = Vec::with_capacity(1 + 2 * len);
                point.push(0x04);
                point.extend_from_slice(&x);
                point.extend_from_slice(&y);
                (kind, DecodingKey::from_ec_der(&point))
            }
            ("OKP", Some("Ed25519")) => {
                let x = bytes(jwk.x.as_ref())?;
                if x.len() != 32 {
                    return Err("Ed25519 key is not 32 bytes");
                }
                (KeyKind::Ed25519, DecodingKey::from_ed_der(&x))
            }
            // `oct` (HMAC secrets) and anything else: never a signing key we
            // trust, whatever the token says.
            _ => return Err("unsupported key type"),
        };
        let key = Self {
            kid: jwk.kid,
            kind,
            alg,
            decoding,
        };
        if let Some(alg) = alg
            && !key.fits(alg)
        {
            return Err("alg does not fit the key type");
        }
        Ok(key)
    }
}

#[derive(Deserialize)]
struct Jwk {
    kty: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    alg: Option<String>,
    #[serde(default, rename = "use")]
    use_: Option<String>,
    #[serde(default)]
    key_ops: Option<Vec<String>>,
    #[serde(default)]
    crv: Option<String>,
    #[serde(default)]
    n: Option<String>,
    #[serde(default)]
    e: Option<String>,
    #[serde(default)]
    x: Option<String>,
    #[serde(default)]
    y: Option<String>,
}

/// An issuer's keys, indexed once per fetch.
struct KeySet {
    by_kid: HashMap<String, Vec<Arc<VerifyingKey>>>,
    all: Vec<Arc<VerifyingKey>>,
    fetched_at: Instant,
}

enum Selected {
    Key(Arc<VerifyingKey>),
    /// The `kid` exists but none of its keys fits the algorithm.
    Mismatch,
    /// No such `kid` (or, without `kid`, no key fits).
    Missing,
    /// No `kid`, and more than one key fits.
    Ambiguous,
}

impl KeySet {
    /// Parses a JWKS, keeping only keys usable with one of `algorithms`. A
    /// key we cannot use is skipped, not fatal: providers publish encryption
    /// keys and new key types next to the signing keys we need.
    fn from_jwks(
        body: &[u8],
        algorithms: &[Algorithm],
        fetched_at: Instant,
    ) -> Result<Self, serde_json::Error> {
        #[derive(Deserialize)]
        struct Document {
            keys: Vec<Value>,
        }

        let document: Document = serde_json::from_slice(body)?;
        let mut set = Self {
            by_kid: HashMap::new(),
            all: Vec::new(),
            fetched_at,
        };
        for raw in document.keys {
            let key = serde_json::from_value::<Jwk>(raw)
                .map_err(|_| "not a JWK")
                .and_then(VerifyingKey::from_jwk)
                .and_then(|key| {
                    if algorithms.iter().any(|alg| key.fits(*alg)) {
                        Ok(key)
                    } else {
                        Err("fits none of the configured algorithms")
                    }
                });
            match key {
                Ok(key) => set.insert(key),
                Err(why) => tracing::debug!(why, "skipping JWKS entry"),
            }
        }
        Ok(set)
    }

    fn insert(&mut self, key: VerifyingKey) {
        let key = Arc::new(key);
        if let Some(kid) = &key.kid {
            self.by_kid
                .entry(kid.clone())
                .or_default()
                .push(key.clone());
        }
        self.all.push(key);
    }

    fn len(&self) -> usize {
        self.all.len()
    }

    fn is_empty(&self) -> bool {
        self.all.is_empty()
    }

    fn age(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.fetched_at)
    }

    fn select(&self, kid: Option<&str>, alg: Algorithm) -> Selected {
        match kid {
            Some(kid) => match self.by_kid.get(kid) {
                None => Selected::Missing,
                Some(keys) => keys
                    .iter()
                    .find(|key| key.fits(alg))
                    .map_or(Selected::Mismatch, |key| Selected::Key(key.clone())),
            },
            None => {
                let mut fitting = self.all.iter().filter(|key| key.fits(alg));
                match (fitting.next(), fitting.next()) {
                    (Some(key), None) => Selected::Key(key.clone()),
                    (None, _) => Selected::Missing,
                    (Some(_), Some(_)) => Selected::Ambiguous,
                }
            }
        }
    }
}

fn is_asymmetric(alg: Algorithm) -> bool {
    !matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
}

/// https, or http to a loopback host (local identity providers in tests and
/// development). Keys fetched over plain http from anywhere else could be
/// swapped by anyone on the path.
fn is_secure_url(url: &Url) -> bool {
    match url.scheme() {
        "https" => true,
        "http" => crate::http::is_loopback_host(url),
        _ => false,
    }
}

/// An untrusted string made safe for an error or a log ([`crate::telemetry::echo`]).
fn echo(text: &str) -> String {
    crate::telemetry::echo(text, MAX_ECHO_CHARS)
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::error::Error as _;

    const ISS: &str = "https://idp.example.com/oauth2/default";

    fn b64(value: &Value) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap())
    }

    fn token(header: Value, claims: Value) -> String {
        format!("{}.{}.c2lnbmF0dXJl", b64(&header), b64(&claims))
    }

    fn now() -> f64 {
        unix_now()
    }

    fn claims(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    fn issuer(config: IssuerConfig) -> IssuerState {
        IssuerState::new(config)
    }

    fn verifier(configs: Vec<IssuerConfig>) -> OidcVerifier {
        OidcVerifier::new(configs, reqwest::Client::new(), VerifierOptions::default())
    }

    fn rsa_jwk(kid: Option<&str>, alg: Option<&str>, bits: usize) -> Value {
        let mut n = vec![0xA5u8; bits / 8];
        n[0] = 0xC3;
        let mut jwk = json!({ "kty": "RSA", "n": URL_SAFE_NO_PAD.encode(&n), "e": "AQAB" });
        if let Some(kid) = kid {
            jwk["kid"] = json!(kid);
        }
        if let Some(alg) = alg {
            jwk["alg"] = json!(alg);
        }
        jwk
    }

    fn ec_jwk(kid: &str, crv: &str, len: usize) -> Value {
        let coord = URL_SAFE_NO_PAD.encode(vec![7u8; len]);
        json!({ "kty": "EC", "kid": kid, "crv": crv, "x": coord, "y": coord })
    }

    fn key_set(keys: Vec<Value>, algorithms: &[Algorithm]) -> KeySet {
        let body = serde_json::to_vec(&json!({ "keys": keys })).unwrap();
        KeySet::from_jwks(&body, algorithms, Instant::now()).unwrap()
    }

    fn malformed(token: &str) -> MalformedToken {
        match ParsedToken::parse(token) {
            Err(e) => e,
            Ok(_) => panic!("{token:?} parsed"),
        }
    }

    #[test]
    fn a_well_formed_token_parses_into_header_claims_and_signing_input() {
        let t = token(
            json!({"alg": "RS256", "kid": "k1", "typ": "JWT"}),
            json!({"iss": ISS}),
        );
        let parsed = ParsedToken::parse(&t).unwrap();
        assert_eq!(parsed.header.alg, "RS256");
        assert_eq!(parsed.header.kid.as_deref(), Some("k1"));
        assert_eq!(parsed.claims["iss"], ISS);
        assert_eq!(parsed.signature, "c2lnbmF0dXJl");
        assert_eq!(format!("{}.c2lnbmF0dXJl", parsed.signing_input), t);
    }

    #[test]
    fn structural_garbage_is_malformed() {
        assert!(matches!(malformed(""), MalformedToken::Segments));
        assert!(matches!(malformed("abc"), MalformedToken::Segments));
        assert!(matches!(malformed("a.b"), MalformedToken::Segments));
        assert!(matches!(malformed("a.b.c.d"), MalformedToken::Segments));
        assert!(matches!(malformed(".."), MalformedToken::Json { .. }));
        assert!(matches!(
            malformed("!!!.e30.sig"),
            MalformedToken::Base64 { part: "header", .. }
        ));
        // Padding is not part of JWS base64url.
        let padded = format!("{}=.e30.sig", b64(&json!({"alg": "RS256"})));
        assert!(matches!(malformed(&padded), MalformedToken::Base64 { .. }));
        let not_json = format!("{}.e30.sig", URL_SAFE_NO_PAD.encode("nope"));
        assert!(matches!(
            malformed(&not_json),
            MalformedToken::Json { part: "header", .. }
        ));
        let array_payload = format!("{}.{}.sig", b64(&json!({"alg": "RS256"})), b64(&json!([1])));
        assert!(matches!(
            malformed(&array_payload),
            MalformedToken::Json {
                part: "payload",
                ..
            }
        ));
        let no_alg = token(json!({"kid": "k"}), json!({}));
        assert!(matches!(malformed(&no_alg), MalformedToken::Json { .. }));
        let bad_sig = format!(
            "{}.{}.si+g/",
            b64(&json!({"alg": "RS256"})),
            b64(&json!({}))
        );
        assert!(matches!(
            malformed(&bad_sig),
            MalformedToken::Base64 {
                part: "signature",
                ..
            }
        ));
    }

    #[test]
    fn oversized_tokens_are_refused_before_decoding() {
        let huge = "a".repeat(MAX_TOKEN_BYTES + 1);
        assert!(matches!(malformed(&huge), MalformedToken::TooLong));
    }

    #[test]
    fn critical_header_extensions_are_refused() {
        let t = token(json!({"alg": "RS256", "crit": ["exp"]}), json!({}));
        assert!(matches!(malformed(&t), MalformedToken::Critical));
    }

    #[test]
    fn the_algorithm_is_pinned_by_configuration_and_never_symmetric() {
        let mut config = IssuerConfig::new(ISS, ["api"]);
        config.algorithms = vec![Algorithm::RS256, Algorithm::HS256, Algorithm::ES256];
        let state = issuer(config);
        assert_eq!(state.pin("RS256").unwrap(), Algorithm::RS256);
        assert_eq!(state.pin("ES256").unwrap(), Algorithm::ES256);
        for refused in ["HS256", "none", "None", "rs256", "RS512", "", "PS256"] {
            assert!(
                matches!(
                    state.pin(refused),
                    Err(OidcError::AlgorithmNotAllowed { .. })
                ),
                "{refused}"
            );
        }
    }

    #[tokio::test]
    async fn unknown_issuer_and_unpinned_algorithms_are_refused_without_network() {
        let v = verifier(vec![IssuerConfig::new(ISS, ["api"])]);
        let other = token(
            json!({"alg": "RS256", "kid": "k"}),
            json!({"iss": "https://evil.example.com"}),
        );
        assert!(matches!(
            v.verify(&other).await,
            Err(OidcError::UnknownIssuer(iss)) if iss == "https://evil.example.com"
        ));
        let none = format!(
            "{}.{}.",
            b64(&json!({"alg": "none"})),
            b64(&json!({"iss": ISS}))
        );
        assert!(matches!(
            v.verify(&none).await,
            Err(OidcError::AlgorithmNotAllowed { alg, .. }) if alg == "none"
        ));
        let hs = token(json!({"alg": "HS256"}), json!({"iss": ISS}));
        assert!(matches!(
            v.verify(&hs).await,
            Err(OidcError::AlgorithmNotAllowed { .. })
        ));
        let no_iss = token(json!({"alg": "RS256"}), json!({"sub": "x"}));
        assert!(matches!(v.verify(&no_iss).await, Err(OidcError::MissingClaim(c)) if c == "iss"));
        let array_iss = token(json!({"alg": "RS256"}), json!({"iss": [ISS]}));
        assert!(
            matches!(v.verify(&array_iss).await, Err(OidcError::MissingClaim(c)) if c == "iss")
        );
        assert_eq!(v.fetch_count(), 0);
    }

    #[tokio::test]
    async fn a_plain_http_issuer_is_never_fetched_from() {
        let mut config = IssuerConfig::new("http://idp.example.com", ["api"]);
        config.algorithms = vec![Algorithm::RS256];
        let v = verifier(vec![config]);
        let t = token(
            json!({"alg": "RS256", "kid": "k"}),
            json!({"iss": "http://idp.example.com"}),
        );
        let err = v.verify(&t).await.unwrap_err();
        assert!(err.is_unavailable(), "{err:?}");
        assert!(matches!(
            err,
            OidcError::KeysUnavailable { ref source, .. } if matches!(**source, KeyFetchError::InsecureUrl(_))
        ));
        assert_eq!(v.fetch_count(), 0);
    }

    #[test]
    fn expiry_and_not_before_honour_the_leeway() {
        let state = issuer(IssuerConfig::new(ISS, ["api"]));
        let leeway = Duration::from_secs(30);
        let t = now();
        let check = |c: Value| state.check_claims(&claims(c), t, leeway);
        assert!(check(json!({"exp": t + 60.0, "aud": "api"})).is_ok());
        assert!(check(json!({"exp": t - 10.0, "aud": "api"})).is_ok());
        assert!(check(json!({"exp": (t + 60.5), "aud": "api"})).is_ok());
        assert!(matches!(
            check(json!({"exp": t - 31.0, "aud": "api"})),
            Err(OidcError::Expired)
        ));
        assert!(matches!(
            check(json!({"aud": "api"})),
            Err(OidcError::MissingClaim(c)) if c == "exp"
        ));
        assert!(matches!(
            check(json!({"exp": "tomorrow", "aud": "api"})),
            Err(OidcError::MissingClaim(c)) if c == "exp"
        ));
        assert!(check(json!({"exp": t + 60.0, "nbf": t + 20.0, "aud": "api"})).is_ok());
        assert!(matches!(
            check(json!({"exp": t + 600.0, "nbf": t + 60.0, "aud": "api"})),
            Err(OidcError::NotYetValid)
        ));
        assert!(matches!(
            check(json!({"exp": t + 600.0, "nbf": "soon", "aud": "api"})),
            Err(OidcError::MissingClaim(c)) if c == "nbf"
        ));
    }

    #[test]
    fn the_audience_must_intersect_the_configured_ones() {
        let state = issuer(IssuerConfig::new(ISS, ["api", "other"]));
        let exp = now() + 60.0;
        let check = |c: Value| state.check_claims(&claims(c), now(), Duration::ZERO);
        assert!(check(json!({"exp": exp, "aud": "other"})).is_ok());
        assert!(check(json!({"exp": exp, "aud": ["x", "api"]})).is_ok());
        for wrong in [
            json!("x"),
            json!(["x", "y"]),
            json!([]),
            json!(7),
            json!({"a": "api"}),
        ] {
            assert!(
                matches!(
                    check(json!({"exp": exp, "aud": wrong})),
                    Err(OidcError::WrongAudience)
                ),
                "{wrong}"
            );
        }
        assert!(matches!(
            check(json!({"exp": exp})),
            Err(OidcError::MissingClaim(c)) if c == "aud"
        ));
    }

    #[test]
    fn a_custom_audience_claim_replaces_aud() {
        let mut config = IssuerConfig::new(ISS, ["app-client"]);
        config.audience_claim = "client_id".to_owned();
        let state = issuer(config);
        let exp = now() + 60.0;
        let check = |c: Value| state.check_claims(&claims(c), now(), Duration::ZERO);
        assert!(check(json!({"exp": exp, "client_id": "app-client"})).is_ok());
        assert!(matches!(
            check(json!({"exp": exp, "aud": "app-client"})),
            Err(OidcError::MissingClaim(c)) if c == "client_id"
        ));
    }

    #[test]
    fn claims_map_onto_the_identity_for_each_provider_shape() {
        let mut okta = IssuerConfig::new(ISS, ["api"]);
        okta.claims = ClaimMapping::okta();
        let id = issuer(okta)
            .identity(claims(json!({
                "sub": "alice@example.com", "cid": "0oa1", "groups": ["checkout", 7, "ops"],
                "scp": ["publish"],
            })))
            .unwrap();
        assert_eq!(id.principal, "alice@example.com");
        assert_eq!(id.service.as_deref(), Some("0oa1"));
        assert_eq!(id.groups, ["checkout", "ops"]);
        assert_eq!(id.method, AuthMethod::Oidc);
        assert_eq!(id.issuer, ISS);
        assert_eq!(id.claims["scp"], json!(["publish"]));
        assert!(id.iam_arn.is_none() && id.kong_consumer.is_none());

        let mut cognito = IssuerConfig::new(ISS, ["api"]);
        cognito.claims = ClaimMapping::cognito();
        let id = issuer(cognito)
            .identity(claims(
                json!({"sub": "u-1", "client_id": "c-1", "cognito:groups": "admins"}),
            ))
            .unwrap();
        assert_eq!(
            (id.service.as_deref(), id.groups),
            (Some("c-1"), vec!["admins".to_owned()])
        );

        let mut keycloak = IssuerConfig::new(ISS, ["api"]);
        keycloak.claims = ClaimMapping::keycloak();
        let id = issuer(keycloak)
            .identity(claims(json!({
                "sub": "kc-1", "azp": "gateway", "realm_access": {"roles": ["producer"]},
            })))
            .unwrap();
        assert_eq!(
            (id.service.as_deref(), id.groups),
            (Some("gateway"), vec!["producer".to_owned()])
        );
    }

    #[test]
    fn a_missing_or_empty_subject_is_refused_and_odd_groups_become_none() {
        let state = issuer(IssuerConfig::new(ISS, ["api"]));
        for bad in [json!({}), json!({"sub": ""}), json!({"sub": 42})] {
            assert!(
                matches!(state.identity(claims(bad.clone())), Err(OidcError::MissingClaim(c)) if c == "sub"),
                "{bad}"
            );
        }
        let id = state
            .identity(claims(json!({"sub": "s", "groups": {"a": 1}, "azp": 3})))
            .unwrap();
        assert!(id.groups.is_empty());
        assert_eq!(id.service, None);
    }

    #[test]
    fn claim_lookup_prefers_literal_names_then_dotted_paths() {
        let c = claims(json!({
            "https://example.com/groups": ["literal"],
            "realm_access": {"roles": ["nested"]},
            "a.b": "literal-dot",
            "a": {"b": "path"},
        }));
        assert_eq!(
            lookup(&c, "https://example.com/groups"),
            Some(&json!(["literal"]))
        );
        assert_eq!(lookup(&c, "realm_access.roles"), Some(&json!(["nested"])));
        assert_eq!(lookup(&c, "a.b"), Some(&json!("literal-dot")));
        assert_eq!(lookup(&c, "realm_access.missing"), None);
        assert_eq!(lookup(&c, "realm_access.roles.deeper"), None);
        assert_eq!(lookup(&c, "nothing"), None);
        assert_eq!(lookup(&c, ""), None);
    }

    #[test]
    fn claim_lookup_follows_json_pointers() {
        let c = claims(json!({
            "realm_access": {"roles": ["nested"]},
            "a/b": {"~x": "escaped"},
            "list": ["zero", "one"],
            "https://example.com/groups": ["namespaced"],
        }));
        assert_eq!(lookup(&c, "/realm_access/roles"), Some(&json!(["nested"])));
        assert_eq!(lookup(&c, "/a~1b/~0x"), Some(&json!("escaped")));
        assert_eq!(lookup(&c, "/list/1"), Some(&json!("one")));
        assert_eq!(lookup(&c, "/list/9"), None);
        assert_eq!(lookup(&c, "/realm_access/roles/x"), None);
        assert_eq!(lookup(&c, "/missing"), None);
        assert_eq!(
            lookup(&c, "https://example.com/groups"),
            Some(&json!(["namespaced"]))
        );
    }

    #[test]
    fn unmapped_groups_and_service_stay_empty() {
        let mut config = IssuerConfig::new(ISS, ["api"]);
        config.claims.groups.clear();
        config.claims.service.clear();
        let id = issuer(config)
            .identity(claims(json!({"sub": "s", "groups": ["g"], "azp": "c"})))
            .unwrap();
        assert!(id.groups.is_empty());
        assert_eq!(id.service, None);
    }

    #[test]
    fn jwks_parsing_keeps_only_keys_we_would_trust() {
        let all = [
            Algorithm::RS256,
            Algorithm::ES256,
            Algorithm::ES384,
            Algorithm::EdDSA,
        ];
        let set = key_set(
            vec![
                rsa_jwk(Some("rsa"), Some("RS256"), 2048),
                rsa_jwk(Some("weak"), None, 1024),
                json!({"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"}),
                {
                    let mut enc = rsa_jwk(Some("enc"), None, 2048);
                    enc["use"] = json!("enc");
                    enc
                },
                {
                    let mut ops = rsa_jwk(Some("ops"), None, 2048);
                    ops["key_ops"] = json!(["encrypt"]);
                    ops
                },
                rsa_jwk(Some("rsa-oaep"), Some("RSA-OAEP"), 2048),
                rsa_jwk(Some("rsa-as-es"), Some("ES256"), 2048),
                ec_jwk("p256", "P-256", 32),
                ec_jwk("p256-short", "P-256", 31),
                ec_jwk("p384", "P-384", 48),
                ec_jwk("p521", "P-521", 66),
                json!({"kty": "OKP", "kid": "ed", "crv": "Ed25519", "x": URL_SAFE_NO_PAD.encode([1u8; 32])}),
                json!({"kty": "RSA", "kid": "no-n", "e": "AQAB"}),
                json!("not even an object"),
            ],
            &all,
        );
        let mut kids: Vec<_> = set.by_kid.keys().map(String::as_str).collect();
        kids.sort_unstable();
        assert_eq!(kids, ["ed", "p256", "p384", "rsa"]);
    }

    #[test]
    fn keys_not_usable_with_the_configured_algorithms_are_dropped() {
        let set = key_set(
            vec![
                rsa_jwk(Some("rsa"), None, 2048),
                ec_jwk("p256", "P-256", 32),
            ],
            &[Algorithm::ES256],
        );
        assert_eq!(set.len(), 1);
        assert!(set.by_kid.contains_key("p256"));
    }

    #[test]
    fn key_selection_checks_kid_alg_and_key_type() {
        let algs = [Algorithm::RS256, Algorithm::PS256, Algorithm::ES256];
        let set = key_set(
            vec![
                rsa_jwk(Some("rs"), Some("RS256"), 2048),
                ec_jwk("ec", "P-256", 32),
            ],
            &algs,
        );
        assert!(matches!(
            set.select(Some("rs"), Algorithm::RS256),
            Selected::Key(_)
        ));
        // The JWK pins RS256: the same RSA key must not verify PS256.
        assert!(matches!(
            set.select(Some("rs"), Algorithm::PS256),
            Selected::Mismatch
        ));
        assert!(matches!(
            set.select(Some("ec"), Algorithm::RS256),
            Selected::Mismatch
        ));
        assert!(matches!(
            set.select(Some("nope"), Algorithm::RS256),
            Selected::Missing
        ));
        // Without kid: exactly one key fits RS256, one fits ES256, none PS256.
        assert!(matches!(
            set.select(None, Algorithm::RS256),
            Selected::Key(_)
        ));
        assert!(matches!(
            set.select(None, Algorithm::ES256),
            Selected::Key(_)
        ));
        assert!(matches!(
            set.select(None, Algorithm::PS256),
            Selected::Missing
        ));

        let two = key_set(
            vec![rsa_jwk(Some("a"), None, 2048), rsa_jwk(None, None, 2048)],
            &algs,
        );
        assert!(matches!(
            two.select(None, Algorithm::RS256),
            Selected::Ambiguous
        ));
        assert!(matches!(
            two.select(Some("a"), Algorithm::RS256),
            Selected::Key(_)
        ));
    }

    #[test]
    fn only_https_or_loopback_http_is_fetched_from() {
        for ok in [
            "https://idp.example.com/x",
            "http://127.0.0.1:8080/",
            "http://[::1]:9/",
            "http://localhost/",
        ] {
            assert!(is_secure_url(&Url::parse(ok).unwrap()), "{ok}");
        }
        for bad in [
            "http://idp.example.com/",
            "http://10.0.0.1/",
            "ftp://idp.example.com/",
            "file:///etc/passwd",
        ] {
            assert!(!is_secure_url(&Url::parse(bad).unwrap()), "{bad}");
        }
    }

    #[test]
    fn configuration_mistakes_are_reported() {
        let good = IssuerConfig::new(ISS, ["api"]);
        assert!(good.validate().is_ok());
        let with = |f: fn(&mut IssuerConfig)| {
            let mut c = good.clone();
            f(&mut c);
            c.validate()
        };
        assert!(matches!(
            with(|c| c.algorithms = vec![Algorithm::HS256]),
            Err(ConfigError::SymmetricAlgorithm { .. })
        ));
        assert!(matches!(
            with(|c| c.algorithms.clear()),
            Err(ConfigError::NoAlgorithms { .. })
        ));
        assert!(matches!(
            with(|c| c.audiences.clear()),
            Err(ConfigError::NoAudiences { .. })
        ));
        assert!(matches!(
            with(|c| c.issuer = "http://idp.example.com".into()),
            Err(ConfigError::InsecureUrl { .. })
        ));
        assert!(matches!(
            with(|c| c.jwks_uri = Some(Url::parse("http://idp.example.com/jwks").unwrap())),
            Err(ConfigError::InsecureUrl { .. })
        ));
        assert!(matches!(
            with(|c| c.issuer = "not a url".into()),
            Err(ConfigError::IssuerUrl { .. })
        ));
        assert!(matches!(
            with(|c| c.claims.subject.clear()),
            Err(ConfigError::EmptyClaimName {
                what: "subject",
                ..
            })
        ));
        assert!(matches!(
            with(|c| c.audience_claim.clear()),
            Err(ConfigError::EmptyClaimName {
                what: "audience",
                ..
            })
        ));
        assert!(with(|c| c.claims.groups.clear()).is_ok(), "groups unmapped");
        assert!(matches!(
            IssuerConfig::validate_all(&[good.clone(), good.clone()]),
            Err(ConfigError::Duplicate { .. })
        ));
    }

    #[test]
    fn attacker_strings_are_sanitised_before_being_echoed() {
        assert_eq!(echo("iss\n\u{1b}[31mx"), "iss??[31mx");
        let long = echo(&"a".repeat(1000));
        assert_eq!(long.chars().count(), MAX_ECHO_CHARS + 1);
    }

    #[test]
    fn errors_keep_their_sources() {
        let err = OidcError::from(malformed("!.e30.x"));
        let source = err.source().unwrap();
        assert!(source.source().is_some(), "the base64 error is kept");
        assert!(!err.is_unavailable());
    }
}
