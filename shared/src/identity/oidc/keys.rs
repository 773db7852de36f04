//! The issuers' signing keys: discovery, JWKS fetching and the per-issuer
//! cache with its refetch rate limit and stale-while-failing fallback. The
//! only part of OIDC verification that talks to the network.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError, RwLock, Weak};
use std::time::{Duration, Instant};

use jsonwebtoken::Algorithm;
use serde::Deserialize;
use serde_json::Value;
use url::Url;

use super::config::{is_asymmetric, is_secure_url};
use super::jws::{Jwk, VerifyingKey};
use super::{IssuerConfig, KeyFetchError, OidcError, OidcVerifier, echo};
use crate::http::{BodyError, read_body};

/// Largest discovery document or JWKS accepted, in bytes.
const MAX_DOCUMENT_BYTES: usize = 256 * 1024;

impl OidcVerifier {
    /// The key for `kid`/`alg`: from the cache when it is fresh and has it,
    /// else after (at most) one rate-limited, coalesced refetch.
    pub(super) async fn key_for(
        &self,
        issuer: &IssuerState,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<Arc<VerifyingKey>, OidcError> {
        let cached = issuer.snapshot();
        if let Some(set) = &cached {
            let now = Instant::now();
            if set.age(now) < self.jwks_ttl(issuer) {
                match set.select(kid, alg) {
                    Selected::Missing => {}
                    other => return issuer.resolve(other, kid, alg),
                }
            } else if let Ok(refresh) = issuer.refresh.try_lock() {
                return self.refresh_and_select(issuer, refresh, kid, alg).await;
            } else if set.age(now) < self.stale_limit(issuer) {
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
            && set.age(now) < self.jwks_ttl(issuer)
        {
            match set.select(kid, alg) {
                Selected::Missing => {}
                other => return issuer.resolve(other, kid, alg),
            }
        }
        let stale = cached
            .as_ref()
            .filter(|set| set.age(now) < self.stale_limit(issuer));

        let rate_limited = refresh
            .last_attempt
            .is_some_and(|at| now.duration_since(at) < self.min_refetch_interval(issuer));
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

    /// How long `issuer`'s fetched keys are used before they are fetched again.
    pub(super) fn jwks_ttl(&self, issuer: &IssuerState) -> Duration {
        issuer.config.jwks_ttl.unwrap_or(self.options.jwks_ttl)
    }

    fn min_refetch_interval(&self, issuer: &IssuerState) -> Duration {
        issuer
            .config
            .min_refetch_interval
            .unwrap_or(self.options.min_refetch_interval)
    }

    /// Expired keys stay usable this long after their fetch when refreshing
    /// them fails: one more TTL. The bound on how long a key the issuer has
    /// withdrawn, or that an outage hides the withdrawal of, is trusted.
    fn stale_limit(&self, issuer: &IssuerState) -> Duration {
        self.jwks_ttl(issuer).saturating_mul(2)
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
        let jwks_uri = Url::parse(&document.jwks_uri).map_err(|source| KeyFetchError::JwksUri {
            value: echo(&document.jwks_uri),
            source,
        })?;
        check_discovered_jwks_uri(&url, jwks_uri)
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
        let response = self
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
        read_body(response, MAX_DOCUMENT_BYTES)
            .await
            .map_err(|error| match error {
                BodyError::TooLarge { limit } => KeyFetchError::TooLarge {
                    url: url.clone(),
                    limit,
                },
                BodyError::Read(source) => request_error(source),
            })
    }
}

/// A `jwks_uri` read from the discovery document at `discovery` (on the
/// issuer's own host). A loopback issuer (local development, tests) may keep
/// its keys on loopback; any other issuer pointing at a loopback or
/// link-local host is refused.
pub(super) fn check_discovered_jwks_uri(discovery: &Url, jwks: Url) -> Result<Url, KeyFetchError> {
    if is_internal_host(&jwks) && !crate::http::is_loopback_host(discovery) {
        return Err(KeyFetchError::UnsafeJwksUri { url: jwks });
    }
    Ok(jwks)
}

/// Loopback, link-local (169.254.0.0/16, where cloud metadata services
/// live; fe80::/10) or unspecified (0.0.0.0 and `::` reach the local host)
/// addresses, and `localhost`. Names are not resolved: a DNS name pointing
/// at such an address is not caught here.
pub(super) fn is_internal_host(url: &Url) -> bool {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    let internal = |ip: IpAddr| match ip {
        IpAddr::V4(v4) => v4.is_loopback() || v4.is_link_local() || v4.is_unspecified(),
        IpAddr::V6(v6) => {
            v6.is_loopback()
                || v6.is_unspecified()
                || (v6.segments()[0] & 0xffc0) == 0xfe80
                || v6.to_ipv4_mapped().is_some_and(|v4: Ipv4Addr| {
                    v4.is_loopback() || v4.is_link_local() || v4.is_unspecified()
                })
        }
    };
    match url.host() {
        Some(url::Host::Ipv4(ip)) => internal(IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => internal(IpAddr::V6(ip)),
        Some(url::Host::Domain(domain)) => {
            let domain = domain.trim_end_matches('.');
            domain.eq_ignore_ascii_case("localhost")
                || domain.to_ascii_lowercase().ends_with(".localhost")
                || domain.parse::<IpAddr>().is_ok_and(internal)
                || domain
                    .parse::<Ipv6Addr>()
                    .is_ok_and(|ip| internal(IpAddr::V6(ip)))
        }
        None => false,
    }
}

/// One configured issuer and its key cache.
pub(super) struct IssuerState {
    pub(super) config: IssuerConfig,
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
    pub(super) fn new(mut config: IssuerConfig) -> Self {
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

    pub(super) fn store(&self, set: Arc<KeySet>) {
        *self.keys.write().unwrap_or_else(PoisonError::into_inner) = Some(set);
    }

    /// True when the current key set is younger than `ttl` and selects
    /// exactly `key` for `kid`/`alg`: what a cached verification needs to be
    /// served again. A refetch builds new keys, so after one every cached
    /// entry is verified once more (even if its key is still listed, even if
    /// its `kid` now names other material), and an expired set is never
    /// trusted here, so the scheduled refresh still happens when every
    /// request is a cache hit.
    pub(super) fn still_selects(
        &self,
        kid: Option<&str>,
        alg: Algorithm,
        key: &Weak<VerifyingKey>,
        ttl: Duration,
    ) -> bool {
        let Some(set) = self.snapshot() else {
            return false;
        };
        set.age(Instant::now()) < ttl
            && matches!(set.select(kid, alg), Selected::Key(current) if std::ptr::eq(Arc::as_ptr(&current), key.as_ptr()))
    }

    /// The configured algorithm the header names. Compared by name so that
    /// `none`, unknown names and case variants fall out the same way.
    pub(super) fn pin(&self, alg: &str) -> Result<Algorithm, OidcError> {
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
}

/// An issuer's keys, indexed once per fetch.
pub(super) struct KeySet {
    pub(super) by_kid: HashMap<String, Vec<Arc<VerifyingKey>>>,
    all: Vec<Arc<VerifyingKey>>,
    fetched_at: Instant,
}

pub(super) enum Selected {
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
    pub(super) fn from_jwks(
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

    pub(super) fn len(&self) -> usize {
        self.all.len()
    }

    fn is_empty(&self) -> bool {
        self.all.is_empty()
    }

    fn age(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.fetched_at)
    }

    pub(super) fn select(&self, kid: Option<&str>, alg: Algorithm) -> Selected {
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
