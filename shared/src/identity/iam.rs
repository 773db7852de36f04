//! AWS IAM callers: turns `Authorization: KP-AWS-IAM <base64url(JSON)>` into
//! an [`Identity`]. The caller's side, making such a credential from AWS
//! credentials, is [`client`].
//!
//! The credential is a SigV4-signed `sts:GetCallerIdentity` request that the
//! caller did not send: `{"method","url","headers","body"}`, the scheme
//! HashiCorp Vault's `aws` auth method uses. We replay it to STS; STS checks
//! the signature and answers with the signer's ARN. This module owns
//! everything between the raw credential and the identity: the strict checks
//! made before any network traffic, the replay, reading STS's answer, turning
//! the ARN into a principal, and the cache. The policy module owns the YAML
//! and converts it into [`IamConfig`].
//!
//! The rules, in the order they are applied (all before the network):
//!
//! 1. At most [`MAX_CREDENTIAL_BYTES`], base64url (padded or not), a JSON
//!    object with exactly `method`, `url`, `headers` and `body`.
//! 2. `url` is the configured STS endpoint once normalised: same scheme (http
//!    only if the configured endpoint is http), host and port, path `/`, no
//!    query, fragment or userinfo. The URL is only *compared*: the request is
//!    always sent to the configured endpoint, never to one from the token.
//! 3. `method` is `POST`; `body` is exactly `Action=GetCallerIdentity` and
//!    `Version=2011-06-15` in either order, so a token can never make us
//!    perform any other STS action.
//! 4. Headers (names case-insensitive, each at most once): an
//!    `AWS4-HMAC-SHA256` `Authorization` whose credential scope is `sts`;
//!    `host` equal to the endpoint's; a form-urlencoded `content-type`;
//!    `x-kp-server-id` present, *signed* and equal to the configured server id,
//!    so a token made for another service cannot be replayed here; a signed
//!    `X-Amz-Date` no older than `max_age` and at most [`MAX_FUTURE_SKEW`]
//!    ahead. A signed header outside [`SIGNABLE_HEADERS`] is refused (STS
//!    would refuse it anyway, we never forward it); other headers are dropped.
//!
//! Then the request goes to STS with only [`FORWARDED_HEADERS`] (`host` and
//! `content-length` are recomputed by the HTTP client), redirects are never
//! followed, and the XML answer is parsed. `arn:aws:sts::A:assumed-role/R/S`
//! becomes the role `arn:aws:iam::A:role/R` with service `R` (the session name
//! stays in the claims); IAM users, the account root and federated users keep
//! their ARN. A verified identity is cached, keyed by the SHA-256 of the
//! credential, until `X-Amz-Date + max_age`, so a warm function calls STS once
//! per distinct credential; concurrent first uses of one credential share one
//! STS call. A credential STS *refused* (bad signature, unknown or expired
//! keys) is refused again without asking STS for [`REFUSAL_TTL`] (never past
//! its own expiry), so a client retrying with bad keys costs one STS call per
//! window rather than one per request; the window is short because IAM is
//! eventually consistent and a brand-new access key can be refused for a few
//! seconds. STS being unavailable is never cached.
//!
//! The credential, its signature and the session token are never logged:
//! only [`fingerprint`]s are.
//!
//! Layout: `credential` owns the wire format and every local check, `sts`
//! the replay and STS's answers, `arn` what an ARN means as a principal,
//! `cache` the verified and refused credentials; [`client`] shares only the
//! wire format. This file holds the configuration, the errors and the
//! order in which the others run.

mod arn;
mod cache;
pub mod client;
mod credential;
mod sts;

use std::error::Error as StdError;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};
use url::Url;

use super::Identity;
use crate::telemetry::fingerprint;
use cache::Cache;
use credential::{authority, is_header_value};
use sts::{STS_TIMEOUT, endpoint_problem};

pub use cache::{CACHE_CAPACITY, REFUSAL_TTL};
pub use credential::{
    FORWARDED_HEADERS, GET_CALLER_IDENTITY_BODY, MAX_CREDENTIAL_BYTES, MAX_FUTURE_SKEW,
    SERVER_ID_HEADER, SIGNABLE_HEADERS,
};

/// The `Authorization` scheme of an IAM credential.
pub const SCHEME: &str = "KP-AWS-IAM";

/// The [`Identity::issuer`] of IAM callers.
pub const ISSUER: &str = "aws-iam";

/// Longest attacker- or STS-supplied string echoed in an error.
const MAX_ECHO_CHARS: usize = 64;

/// The IAM method as the policy configures it (`identity.iam`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IamConfig {
    /// The only STS endpoint a credential may name, and the one it is sent to.
    pub sts_endpoint: Url,
    /// Required value of the signed `x-kp-server-id` header.
    pub server_id: String,
    /// Oldest accepted signature (at most [`MAX_AGE`]); also how long a
    /// verified identity is cached after its `X-Amz-Date`.
    pub max_age: Duration,
    /// The AWS accounts (12-digit ids) whose callers are accepted. A caller
    /// STS places in any other account is refused ([`IamError::AccountNotAllowed`])
    /// before any rule is consulted: rule names such as a role name are only
    /// meaningful inside accounts we know.
    pub allowed_accounts: Vec<String>,
}

/// Longest [`IamConfig::max_age`]: STS refuses SigV4 signatures older than
/// 15 minutes, so an identity kept longer would outlive what STS accepts.
pub const MAX_AGE: Duration = Duration::from_secs(900);

impl IamConfig {
    /// Checks what the policy's own validation does not, so a bad endpoint
    /// fails at start-up: https (plain http only to a loopback host, which is
    /// how tests point at a local STS), path `/`, no query, fragment or
    /// userinfo, and a server id that can be a header value.
    /// [`IamVerifier::verify`] refuses to call an endpoint that fails this.
    pub fn validate(&self) -> Result<(), IamError> {
        endpoint_problem(&self.sts_endpoint)
            .map_or(Ok(()), |why| Err(IamError::InvalidConfig(why)))?;
        if !is_header_value(&self.server_id) || self.server_id.trim() != self.server_id {
            return Err(IamError::InvalidConfig(
                "server_id must be non-empty printable ASCII without surrounding spaces",
            ));
        }
        if self.max_age.is_zero() || self.max_age > MAX_AGE {
            return Err(IamError::InvalidConfig(
                "max_age must be positive and at most 900 seconds",
            ));
        }
        if self.allowed_accounts.is_empty()
            || !self
                .allowed_accounts
                .iter()
                .all(|a| a.len() == 12 && a.bytes().all(|b| b.is_ascii_digit()))
        {
            return Err(IamError::InvalidConfig(
                "allowed_accounts must list at least one 12-digit AWS account id",
            ));
        }
        Ok(())
    }
}

/// Why an IAM credential was refused. [`IamError::status`] gives the HTTP
/// status: 401 for everything the caller got wrong (including what STS
/// refused), 503 when STS cannot be reached, 502 when it answers nonsense,
/// 500 for a misconfiguration.
#[derive(Debug, thiserror::Error)]
pub enum IamError {
    /// Not base64url, not JSON, not the expected JSON shape, or a header that
    /// cannot be parsed.
    #[error("malformed KP-AWS-IAM credential: {reason}")]
    Malformed {
        /// What is wrong.
        reason: &'static str,
        /// The decoding or parsing error, when there is one.
        #[source]
        source: Option<Box<dyn StdError + Send + Sync>>,
    },
    /// Longer than [`MAX_CREDENTIAL_BYTES`].
    #[error("KP-AWS-IAM credential is longer than {MAX_CREDENTIAL_BYTES} bytes")]
    Oversized,
    /// The URL or `host` header is not the configured STS endpoint.
    #[error("the signed request is not for the configured STS endpoint")]
    WrongEndpoint,
    /// The method is not `POST`.
    #[error("the signed request's method must be POST")]
    WrongMethod,
    /// The body (or its content type or length) is not exactly a
    /// GetCallerIdentity call.
    #[error("the signed request is not exactly sts:GetCallerIdentity")]
    WrongBody,
    /// No `x-kp-server-id` header.
    #[error("the signed request has no {SERVER_ID_HEADER} header")]
    MissingServerId,
    /// `x-kp-server-id` is there but not in `SignedHeaders`, so anyone could
    /// have added it to a token made for another service.
    #[error("{SERVER_ID_HEADER} is not among the signed headers")]
    ServerIdNotSigned,
    /// `x-kp-server-id` names another service.
    #[error("the credential was made for server id {found:?}")]
    WrongServerId {
        /// The value found, sanitised.
        found: String,
    },
    /// A header outside [`SIGNABLE_HEADERS`] is signed: it would not be
    /// forwarded, so STS could never accept the signature.
    #[error("signed header {0:?} is not allowed")]
    HeaderNotAllowed(String),
    /// `X-Amz-Date` is older than the configured maximum age.
    #[error("the signature is older than the accepted maximum age")]
    Stale,
    /// `X-Amz-Date` is further in the future than [`MAX_FUTURE_SKEW`].
    #[error("the signature's date is in the future")]
    NotYetValid,
    /// STS refused the signed request (bad signature, unknown or expired
    /// keys, …).
    #[error("STS refused the signed request ({code})")]
    BadSignature {
        /// STS's error code, e.g. `SignatureDoesNotMatch`.
        code: String,
    },
    /// STS verified the caller, but in an AWS account outside
    /// [`IamConfig::allowed_accounts`]: a 403. The verified principal is kept
    /// so the audit line can say who (and which account) was turned away.
    #[error("AWS account {account} is not allowed")]
    AccountNotAllowed {
        /// The caller's account, from STS's verified answer.
        account: String,
        /// The verified caller (its principal names the account).
        identity: Box<Identity>,
    },
    /// STS could not be reached, timed out, throttled us or failed.
    #[error("STS is unavailable: {reason}")]
    StsUnavailable {
        /// What happened.
        reason: String,
        /// The transport error, when there is one.
        #[source]
        source: Option<reqwest::Error>,
    },
    /// STS answered something that is neither an identity nor a known error
    /// (or an identity whose ARN is not a caller we understand).
    #[error("unexpected answer from STS (HTTP {status}): {reason}")]
    UnexpectedResponse {
        /// The HTTP status of the answer.
        status: u16,
        /// What is unexpected.
        reason: String,
    },
    /// The configured endpoint or server id is unusable (see
    /// [`IamConfig::validate`]).
    #[error("invalid IAM configuration: {0}")]
    InvalidConfig(&'static str),
}

impl IamError {
    /// The HTTP status this refusal deserves.
    pub fn status(&self) -> u16 {
        match self {
            Self::StsUnavailable { .. } => 503,
            Self::UnexpectedResponse { .. } => 502,
            Self::InvalidConfig(_) => 500,
            Self::AccountNotAllowed { .. } => 403,
            _ => 401,
        }
    }

    /// True when STS or the configuration, not the caller, is at fault.
    pub fn is_unavailable(&self) -> bool {
        self.status() >= 500
    }

    fn malformed(reason: &'static str) -> Self {
        Self::Malformed {
            reason,
            source: None,
        }
    }

    fn malformed_by(reason: &'static str, source: impl StdError + Send + Sync + 'static) -> Self {
        Self::Malformed {
            reason,
            source: Some(Box::new(source)),
        }
    }
}

/// Verifies `KP-AWS-IAM` credentials against STS. Build one per cold start
/// (it holds the cache) and share it.
pub struct IamVerifier {
    config: IamConfig,
    /// `host[:port]` of the configured endpoint, as a signed `host` header
    /// must carry it.
    authority: String,
    http: reqwest::Client,
    cache: Cache,
    sts_calls: AtomicU64,
}

impl fmt::Debug for IamVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IamVerifier")
            .field("config", &self.config)
            .field("sts_calls", &self.sts_call_count())
            .finish_non_exhaustive()
    }
}

impl IamVerifier {
    /// A verifier for `config` sending through `http`, which must not follow
    /// redirects (use [`IamVerifier::http_client`]). No network traffic
    /// happens here. Run [`IamConfig::validate`] first to report a bad
    /// endpoint at start-up.
    pub fn new(config: IamConfig, http: reqwest::Client) -> Self {
        let authority = authority(&config.sts_endpoint);
        Self {
            config,
            authority,
            http,
            cache: Cache::new(CACHE_CAPACITY),
            sts_calls: AtomicU64::new(0),
        }
    }

    /// An HTTP client fit for STS (and OIDC) calls:
    /// [`crate::http::redirect_free_client`] with STS's timeout, so an answer
    /// can only come from the configured endpoint. Each STS request also
    /// carries its own timeout.
    pub fn http_client() -> reqwest::Result<reqwest::Client> {
        crate::http::redirect_free_client()
            .timeout(STS_TIMEOUT)
            .build()
    }

    /// How many requests this verifier has sent to STS: verifying a cached
    /// credential again must not move it.
    pub fn sts_call_count(&self) -> u64 {
        self.sts_calls.load(Ordering::Relaxed)
    }

    /// Verifies `credential` (the part after `KP-AWS-IAM `) and returns the
    /// caller, if it is in one of the allowed accounts.
    pub async fn verify(&self, credential: &str) -> Result<Identity, IamError> {
        let result = self
            .verify_at(credential, SystemTime::now())
            .await
            .and_then(|identity| self.check_account(identity));
        if let Err(error) = &result {
            // Field expressions are only evaluated when debug is enabled, so
            // the fingerprint costs nothing in production.
            tracing::debug!(credential = %fingerprint(credential.as_bytes()), %error, "KP-AWS-IAM credential refused");
        }
        result
    }

    async fn verify_at(&self, credential: &str, now: SystemTime) -> Result<Identity, IamError> {
        if credential.len() > MAX_CREDENTIAL_BYTES {
            return Err(IamError::Oversized);
        }
        let key: [u8; 32] = Sha256::digest(credential.as_bytes()).into();
        if let Some(identity) = self.cache.fresh(&key, now) {
            return Ok(identity);
        }
        let checked = self.check(credential, now)?;
        let slot = self.cache.slot(key, checked.expires_at, now);
        let result = slot
            .identity
            .get_or_try_init(|| async {
                // Also read by callers that waited on this slot while the
                // first one's STS call was refused: they fail without a call.
                if let Some(code) = self.cache.refused(&key, now) {
                    return Err(IamError::BadSignature { code });
                }
                let result = self.call_sts(&checked).await;
                if let Err(IamError::BadSignature { code }) = &result {
                    let until = checked.expires_at.min(now + REFUSAL_TTL);
                    self.cache.refuse(key, code, until, now);
                }
                result
            })
            .await
            .cloned();
        if result.is_err() {
            self.cache.forget(&key, &slot);
        }
        result
    }
}

impl IamVerifier {
    /// Refuses a verified caller outside the allowed accounts. Applied to
    /// cached identities too, so the cache can never widen the list. The
    /// account is STS's own `Account` (checked equal to the ARN's by `arn`).
    fn check_account(&self, identity: Identity) -> Result<Identity, IamError> {
        let account = identity
            .claims
            .get("account")
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default();
        if self.config.allowed_accounts.iter().any(|a| a == account) {
            return Ok(identity);
        }
        tracing::warn!(
            account,
            principal = %identity.principal,
            "IAM caller from an AWS account that is not allowed"
        );
        Err(IamError::AccountNotAllowed {
            account: account.to_owned(),
            identity: Box::new(identity),
        })
    }
}

/// An untrusted string made safe for an error or a log ([`crate::telemetry::echo`]).
fn echo(text: &str) -> String {
    crate::telemetry::echo(text, MAX_ECHO_CHARS)
}

#[cfg(test)]
mod tests;
