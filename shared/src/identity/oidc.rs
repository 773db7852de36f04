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
//! 5. Signature, then the token type when the issuer lists `token_types`
//!    (the `typ` header and Cognito's `token_use` claim: every type the token
//!    declares must be listed, and it must declare one), then `exp`
//!    (required), `nbf` (if present), and the audience claim, with a small
//!    configurable clock leeway.
//!
//! A discovered `jwks_uri` on a loopback or link-local host is refused unless
//! the issuer itself is on loopback.
//!
//! Keys are cached per issuer for [`VerifierOptions::jwks_ttl`] (or the
//! issuer's own [`IssuerConfig::jwks_ttl`]). An unknown `kid` triggers a
//! refetch at most once per [`VerifierOptions::min_refetch_interval`] (or the
//! issuer's), so random `kid`s cannot turn the function into a traffic
//! amplifier against the identity provider, and concurrent misses share one
//! fetch. When a refresh fails the previous keys keep working for up to one
//! more TTL, so a short identity-provider outage does not become an outage
//! here; past twice the TTL after their fetch they are no longer trusted. An
//! unknown `kid` while the last fetch failed is [`OidcError::KeysUnavailable`]
//! (a 503: the provider could not be asked), not [`OidcError::UnknownKey`].
//!
//! A token that passed all of the above is remembered (by its SHA-256, in
//! `verified`) and served again without re-checking its signature, but only
//! strictly before its `exp`, only while the issuer's current, unexpired key
//! set still selects the very key that verified it, and never when its `nbf`
//! is in the future. Everything else the rules check (`iss`, the audience,
//! `token_types`, the pinned algorithms, the claim mapping) depends only on
//! the token's bytes, which the digest pins, and on per-issuer configuration
//! fixed for the verifier's life, so a cached result cannot go stale on
//! them. Failures are never cached.
//!
//! Layout, each file depending only on those before it: `config` holds what
//! the policy configures, the fixed limits and the errors; `jws` parses
//! tokens and JWKs; `keys` fetches and caches the issuers' keys; `verified`
//! stores verified tokens; `claims` maps verified claims onto the identity.
//! This file strings them together in the order above.

mod claims;
mod config;
mod jws;
mod keys;
mod verified;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;

use super::Identity;
use crate::telemetry::fingerprint;
use jws::ParsedToken;
use keys::IssuerState;
use verified::{TokenDigest, Verified, VerifiedTokens};

pub use config::{
    ClaimMapping, ConfigError, IssuerConfig, KeyFetchError, MAX_TOKEN_BYTES, MalformedToken,
    OidcError, VerifierOptions, normalise_token_type,
};

/// Longest attacker-supplied string (issuer, `alg`, `kid`) echoed in an error.
const MAX_ECHO_CHARS: usize = 128;

/// Verifies OIDC bearer tokens against the configured issuers. Build one per
/// process (it holds the key caches) and share it.
pub struct OidcVerifier {
    issuers: HashMap<String, IssuerState>,
    http: reqwest::Client,
    options: VerifierOptions,
    fetches: AtomicU64,
    verified: VerifiedTokens,
}

impl fmt::Debug for OidcVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OidcVerifier")
            .field("issuers", &self.issuers.keys().collect::<Vec<_>>())
            .field("options", &self.options)
            .field("fetches", &self.fetch_count())
            .field("cache_hits", &self.cache_hits())
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
            verified: VerifiedTokens::new(options.verified_tokens, options.verified_token_bytes),
            options,
            fetches: AtomicU64::new(0),
        }
    }

    /// How many discovery and JWKS requests this verifier has sent: a warm
    /// verification must not move it.
    pub fn fetch_count(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    /// How many verifications were answered from the verified-token cache
    /// (benchmarks and tests read it).
    pub fn cache_hits(&self) -> u64 {
        self.verified.hits()
    }

    /// True when `token` parses as a JWT whose (unverified) `iss` is one of
    /// the configured issuers: the only question the authenticator asks
    /// before deciding a bearer token is ours rather than one a Kong auth
    /// plugin already consumed. Never a substitute for [`Self::verify`].
    pub(crate) fn is_ours(&self, token: &str) -> bool {
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
        // An over-long token cannot have been verified: refuse it in `parse`
        // without hashing it first.
        let digest = (self.verified.enabled() && token.len() <= MAX_TOKEN_BYTES)
            .then(|| verified::digest(token));
        if let Some(digest) = &digest
            && let Some(identity) = self.cached(digest, unix_now())
        {
            return Ok(identity);
        }
        let verified = self.verify_signed(token).await?;
        let identity = verified.identity.clone();
        if let Some(digest) = digest
            && cacheable(&verified, unix_now())
        {
            self.verified.insert(digest, verified);
        }
        Ok(identity)
    }

    /// The cached identity for `digest`, when the entry may still be served:
    /// before `exp` (checked by the store) and while the issuer's current key
    /// set still selects the key that verified it. Checked on every hit,
    /// because the key set changes only when the JWKS is refetched: a key
    /// rotated out stops working here as soon as the refetch that drops it,
    /// under the same TTL and refetch rules as without the cache.
    fn cached(&self, digest: &TokenDigest, now: f64) -> Option<Identity> {
        let entry = self.verified.get(digest, now)?;
        let current = self.issuers.get(entry.issuer()).is_some_and(|issuer| {
            issuer.still_selects(
                entry.kid.as_deref(),
                entry.alg,
                &entry.key,
                self.jwks_ttl(issuer),
            )
        });
        if !current {
            self.verified.forget(digest, &entry);
            return None;
        }
        self.verified.served();
        Some(entry.identity.clone())
    }

    /// The full verification (rules 1 to 5 of the module docs).
    async fn verify_signed(&self, token: &str) -> Result<Verified, OidcError> {
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
        issuer.check_token_type(parsed.header.typ.as_ref(), &parsed.claims)?;
        let leeway = issuer.config.leeway.unwrap_or(self.options.leeway);
        // The clock is read after the key fetch (which may take seconds), so
        // a token that expired while we waited for keys does not pass.
        issuer.check_claims(&parsed.claims, unix_now(), leeway)?;
        let identity = issuer.identity(parsed.claims)?;
        Ok(Verified {
            // `check_claims` made sure `exp` is a number.
            exp: identity
                .claims
                .get("exp")
                .and_then(Value::as_f64)
                .unwrap_or(f64::NEG_INFINITY),
            kid: parsed.header.kid,
            alg,
            key: Arc::downgrade(&key),
            weight: token.len(),
            identity,
        })
    }
}

/// Whether a verified token may be remembered: not when it was only accepted
/// thanks to the leeway (`exp` passed, or `nbf` still ahead), so the cache
/// never widens the window the leeway gives.
fn cacheable(verified: &Verified, now: f64) -> bool {
    let nbf_ahead = verified
        .identity
        .claims
        .get("nbf")
        .and_then(Value::as_f64)
        .is_some_and(|nbf| nbf > now);
    now < verified.exp && !nbf_ahead
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
mod tests;
