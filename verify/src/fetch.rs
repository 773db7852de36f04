//! The gateway's key set over HTTPS, cached: what a long-running consumer
//! verifies against. The cache follows the server's `Cache-Control:
//! max-age` within [`MIN_TTL`]..[`MAX_TTL`] ([`DEFAULT_TTL`] without one),
//! and a signature naming a `kid` the cached set lacks (a key the gateway
//! just rotated in) refetches at once — but at most once per
//! [`UNKNOWN_KID_INTERVAL`], so a stream of forged kids cannot turn every
//! message into a request to the gateway.
//!
//! The URL must be HTTPS (plain HTTP only to a loopback address: a key set
//! read in clear text could be swapped on the way), the body is bounded,
//! every request has timeouts, and redirects stay on the same host and
//! scheme.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use reqwest::Url;
use reqwest::header::{CACHE_CONTROL, HeaderMap};

use crate::jwks::Jwks;
use crate::verify::{Received, Verified, Verifier, VerifyError};

/// Shortest time a fetched key set is kept, whatever the server says.
pub const MIN_TTL: Duration = Duration::from_secs(60);
/// Longest time a fetched key set is kept, whatever the server says.
pub const MAX_TTL: Duration = Duration::from_secs(3600);
/// How long a key set is kept when the server names no `max-age`.
pub const DEFAULT_TTL: Duration = Duration::from_secs(300);
/// At most one refetch for an unknown `kid` per this interval.
pub const UNKNOWN_KID_INTERVAL: Duration = Duration::from_secs(30);
/// The largest key-set body read.
pub const MAX_BODY_BYTES: usize = 256 * 1024;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_REDIRECTS: usize = 3;

/// Why the key set could not be had.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{0}")]
    Url(String),
    #[error("fetching the key set failed: {0}")]
    Http(#[from] reqwest::Error),
    #[error("the key set answer was HTTP {0}")]
    Status(u16),
    #[error("the key set is larger than {MAX_BODY_BYTES} bytes")]
    TooLarge,
    #[error("the key set is not a JWKS: {0}")]
    Json(#[from] serde_json::Error),
}

/// A cached key set at one URL.
pub struct JwksFetcher {
    url: Url,
    http: reqwest::Client,
    unknown_kid_interval: Duration,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    jwks: Option<Arc<Jwks>>,
    fresh_until: Option<Instant>,
    fetched_at: Option<Instant>,
}

impl JwksFetcher {
    /// A fetcher for `url` (`https://…/.well-known/jwks.json`). Nothing is
    /// fetched until a key set is asked for.
    pub fn new(url: &str) -> Result<Self, FetchError> {
        let url = Url::parse(url).map_err(|e| FetchError::Url(format!("{url:?}: {e}")))?;
        match url.scheme() {
            "https" => {}
            "http" if is_loopback(&url) => {}
            _ => {
                return Err(FetchError::Url(format!(
                    "{url}: the key set must be fetched over https"
                )));
            }
        }
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .redirect(reqwest::redirect::Policy::custom(|attempt| {
                let first = &attempt.previous()[0];
                let same = attempt.url().scheme() == first.scheme()
                    && attempt.url().host_str() == first.host_str()
                    && attempt.url().port_or_known_default() == first.port_or_known_default();
                if attempt.previous().len() > MAX_REDIRECTS {
                    attempt.error("too many redirects")
                } else if same {
                    attempt.follow()
                } else {
                    attempt.error("redirect to another origin")
                }
            }))
            .build()?;
        Ok(Self {
            url,
            http,
            unknown_kid_interval: UNKNOWN_KID_INTERVAL,
            state: Mutex::new(State::default()),
        })
    }

    /// Changes [`UNKNOWN_KID_INTERVAL`] (tests, or a consumer that can
    /// afford more requests).
    pub fn with_unknown_kid_interval(mut self, interval: Duration) -> Self {
        self.unknown_kid_interval = interval;
        self
    }

    /// The key set: the cached one while fresh, else fetched.
    pub async fn jwks(&self) -> Result<Arc<Jwks>, FetchError> {
        self.jwks_for(None).await
    }

    /// The key set to verify a signature naming `kid` with: the cached one
    /// while fresh and (when `kid` is given) holding that key; refetched
    /// when stale, or when it lacks `kid` and the last fetch is older than
    /// the unknown-kid interval.
    pub async fn jwks_for(&self, kid: Option<&str>) -> Result<Arc<Jwks>, FetchError> {
        let now = Instant::now();
        {
            let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(jwks) = &state.jwks {
                let fresh = state.fresh_until.is_some_and(|t| now < t);
                let lacks = kid.is_some_and(|kid| jwks.find(kid).is_none());
                let may_refetch = state
                    .fetched_at
                    .is_none_or(|t| now.duration_since(t) >= self.unknown_kid_interval);
                if fresh && !(lacks && may_refetch) {
                    return Ok(jwks.clone());
                }
            }
        }
        let (jwks, ttl) = self.fetch().await?;
        let jwks = Arc::new(jwks);
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        *state = State {
            jwks: Some(jwks.clone()),
            fresh_until: Some(Instant::now() + ttl),
            fetched_at: Some(Instant::now()),
        };
        Ok(jwks)
    }

    /// Verifies `message` against the key set, refetching it first if the
    /// signature names a key it lacks (within the interval). The outer
    /// error is "no key set to judge with", not a verdict on the message.
    pub async fn verify(
        &self,
        verifier: &Verifier,
        message: &Received<'_>,
    ) -> Result<Result<Verified, VerifyError>, FetchError> {
        let kid = Verifier::kid_of(message);
        let jwks = self.jwks_for(kid.as_deref()).await?;
        Ok(verifier.verify(message, &jwks))
    }

    async fn fetch(&self) -> Result<(Jwks, Duration), FetchError> {
        let mut response = self
            .http
            .get(self.url.clone())
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await?;
        if !response.status().is_success() {
            return Err(FetchError::Status(response.status().as_u16()));
        }
        if response
            .content_length()
            .is_some_and(|n| n > MAX_BODY_BYTES as u64)
        {
            return Err(FetchError::TooLarge);
        }
        let ttl = ttl(response.headers());
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await? {
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(FetchError::TooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        Ok((serde_json::from_slice(&body)?, ttl))
    }
}

/// How long an answer with these headers is kept: its `max-age` bounded to
/// [`MIN_TTL`]..[`MAX_TTL`], [`DEFAULT_TTL`] without one. `no-cache` and
/// `no-store` get the minimum: refetching for every message is not on offer.
pub fn ttl(headers: &HeaderMap) -> Duration {
    let mut ttl = None;
    for value in headers.get_all(CACHE_CONTROL) {
        let Ok(value) = value.to_str() else { continue };
        for directive in value.split(',') {
            let directive = directive.trim();
            let (name, arg) = directive.split_once('=').unwrap_or((directive, ""));
            match name.trim().to_ascii_lowercase().as_str() {
                "max-age" => {
                    if let Ok(secs) = arg.trim().trim_matches('"').parse::<u64>() {
                        ttl = Some(Duration::from_secs(secs));
                    }
                }
                "no-cache" | "no-store" => return MIN_TTL,
                _ => {}
            }
        }
    }
    ttl.unwrap_or(DEFAULT_TTL).clamp(MIN_TTL, MAX_TTL)
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

#[cfg(test)]
mod tests;
