//! What the policy tells the OIDC verifier (issuers, their claim mapping,
//! tuning), the rules no configuration can loosen (token size, asymmetric
//! algorithms only, https), and every way verification can fail. Kept apart
//! from the verifier so that the policy module (which builds
//! [`IssuerConfig`]) and the edge (which maps [`OidcError`] onto a status)
//! depend on these types only, never on how keys are fetched. Depends on no
//! other part of OIDC verification.

use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::Algorithm;
use url::Url;

/// Longest token accepted, in bytes. Real access tokens are a few KiB even
/// with a hundred groups; anything much larger is refused before decoding so
/// an attacker cannot make us base64-decode and parse megabytes per request.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

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
    /// How long this issuer's JWKS is used before it is fetched again (and,
    /// while a refetch fails, how much longer it is still trusted); `None`
    /// uses [`VerifierOptions::jwks_ttl`].
    pub jwks_ttl: Option<Duration>,
    /// Least time between two key fetches for this issuer; `None` uses
    /// [`VerifierOptions::min_refetch_interval`].
    pub min_refetch_interval: Option<Duration>,
    /// Accepted token types, as [`normalise_token_type`] writes them (the
    /// JWS `typ` header, e.g. RFC 9068's `at+jwt`; Cognito's `token_use`
    /// claim, e.g. `access`). Empty: any type. Otherwise a token must declare
    /// at least one type, and every type it declares must be listed, so an
    /// ID token cannot pass where access tokens are expected.
    pub token_types: Vec<String>,
}

/// A token type as compared: lower case (RFC 7515 §4.1.9 makes `typ` media
/// types case-insensitive) without the optional `application/` prefix.
pub fn normalise_token_type(text: &str) -> String {
    let lower = text.trim().to_ascii_lowercase();
    match lower.strip_prefix("application/") {
        Some(rest) => rest.to_owned(),
        None => lower,
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
            jwks_ttl: None,
            min_refetch_interval: None,
            token_types: Vec::new(),
        }
    }

    /// Checks what can be checked without the network, so a bad policy fails
    /// at start-up rather than on the first request.
    /// [`OidcVerifier::new`](super::OidcVerifier::new) never trusts an
    /// invalid configuration either (it drops symmetric algorithms and
    /// refuses insecure URLs at fetch time), but it cannot report the
    /// mistake.
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

/// Where an issuer puts the claims [`Identity`](crate::identity::Identity)
/// is made of. Each name is either a JSON pointer (RFC 6901, starting with
/// `/`: `/realm_access/roles`) or a claim name; a claim name that no
/// top-level claim has is read as a dotted path into nested objects
/// (`realm_access.roles`), so a namespaced claim such as
/// `https://example.com/groups` still works as a plain name.
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
    #[cfg(test)]
    pub(super) fn okta() -> Self {
        Self::named("sub", "groups", "cid")
    }

    /// Cognito user-pool tokens: `cognito:groups` and `client_id`.
    #[cfg(test)]
    pub(super) fn cognito() -> Self {
        Self::named("sub", "cognito:groups", "client_id")
    }

    /// Keycloak: realm roles (`realm_access.roles`) and `azp`.
    #[cfg(test)]
    pub(super) fn keycloak() -> Self {
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

/// Tuning for [`OidcVerifier`](super::OidcVerifier).
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
    /// Most tokens remembered as verified (keyed by their SHA-256, served
    /// only before `exp` and while their signing key is current). Default
    /// 10,000; 0 turns the cache off.
    pub verified_tokens: usize,
    /// Most bytes of token those entries may stand for (the sum of the
    /// tokens' lengths, a proxy for their claims' memory). Default 4 MiB:
    /// 10,000 tokens of 400 bytes, or 256 of the longest accepted.
    pub verified_token_bytes: usize,
}

impl Default for VerifierOptions {
    fn default() -> Self {
        Self {
            leeway: Duration::from_secs(30),
            jwks_ttl: Duration::from_secs(3600),
            min_refetch_interval: Duration::from_secs(30),
            http_timeout: Duration::from_secs(3),
            verified_tokens: 10_000,
            verified_token_bytes: 4 * 1024 * 1024,
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
    /// The token's type (`typ` header, `token_use` claim) is not one the
    /// issuer's `token_types` allows, or it declares none: e.g. an ID token
    /// where only access tokens are accepted.
    #[error("token type {found} is not accepted for issuer {issuer}")]
    TokenTypeNotAllowed {
        /// The configured issuer.
        issuer: String,
        /// What the token declared (sanitised), or `none`.
        found: String,
    },
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
    /// The discovery document points the keys at a loopback or link-local
    /// host (a cloud metadata service, a sidecar) while the issuer itself is
    /// not on loopback: a compromised or spoofed document must not turn the
    /// function into a client of its own host's services.
    #[error("discovered jwks_uri {url} is on a loopback or link-local host")]
    UnsafeJwksUri {
        /// The discovered URL.
        url: Url,
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

/// https, or http to a loopback host (local identity providers in tests and
/// development). Keys fetched over plain http from anywhere else could be
/// swapped by anyone on the path.
pub(super) fn is_secure_url(url: &Url) -> bool {
    match url.scheme() {
        "https" => true,
        "http" => crate::http::is_loopback_host(url),
        _ => false,
    }
}

pub(super) fn is_asymmetric(alg: Algorithm) -> bool {
    !matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
}
