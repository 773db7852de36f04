//! AWS IAM callers: turns `Authorization: KP-AWS-IAM <base64url(JSON)>` into
//! an [`Identity`], and (in [`client`]) makes such a credential from the
//! caller's own AWS credentials.
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

use std::collections::{BTreeMap, HashMap};
use std::error::Error as StdError;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use serde::Deserialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use url::Url;

use super::{AuthMethod, Identity};
use crate::telemetry::fingerprint;

/// The `Authorization` scheme of an IAM credential.
pub const SCHEME: &str = "KP-AWS-IAM";

/// The [`Identity::issuer`] of IAM callers.
pub const ISSUER: &str = "aws-iam";

/// The signed header naming the service a credential is meant for.
pub const SERVER_ID_HEADER: &str = "x-kp-server-id";

/// Longest credential accepted (the encoded part after the scheme). A real one
/// is 1–3 KiB, most of it the session token; anything larger is refused before
/// it is decoded.
pub const MAX_CREDENTIAL_BYTES: usize = 16 * 1024;

/// How far in the future `X-Amz-Date` may be (clock skew between the caller
/// and this function).
pub const MAX_FUTURE_SKEW: Duration = Duration::from_secs(5 * 60);

/// Most identities the cache holds.
pub const CACHE_CAPACITY: usize = 10_000;

/// How long a credential STS refused is refused again without asking STS
/// (bounded by the credential's own expiry).
pub const REFUSAL_TTL: Duration = Duration::from_secs(30);

/// The only body a credential may carry.
pub const GET_CALLER_IDENTITY_BODY: &str = "Action=GetCallerIdentity&Version=2011-06-15";

/// Headers copied from the credential to the STS request. Nothing else from
/// the token reaches STS, whatever the token says (no `Cookie`, no
/// `X-Forwarded-*`, no `Transfer-Encoding`).
pub const FORWARDED_HEADERS: [&str; 5] = [
    "authorization",
    "content-type",
    "x-amz-date",
    "x-amz-security-token",
    SERVER_ID_HEADER,
];

/// Headers a credential may list in `SignedHeaders`: the forwarded ones plus
/// `host` and `content-length`, which are checked and then recomputed
/// identically by the HTTP client.
pub const SIGNABLE_HEADERS: [&str; 6] = [
    "content-length",
    "content-type",
    "host",
    "x-amz-date",
    "x-amz-security-token",
    SERVER_ID_HEADER,
];

/// Time allowed for one STS call, body included.
const STS_TIMEOUT: Duration = Duration::from_secs(3);

/// Largest STS answer read, in bytes (a real one is under 1 KiB).
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// Longest attacker- or STS-supplied string echoed in an error.
const MAX_ECHO_CHARS: usize = 64;

const CONTENT_TYPE: &str = "application/x-www-form-urlencoded";

/// The credential's encoding: base64url, with or without padding (Vault's
/// clients pad, ours does not).
const BASE64URL: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// STS error codes meaning "this signed request is not valid": the caller's
/// fault, 401.
const REJECTION_CODES: [&str; 11] = [
    "AccessDenied",
    "AuthFailure",
    "ExpiredToken",
    "IncompleteSignature",
    "InvalidAccessKeyId",
    "InvalidClientTokenId",
    "MissingAuthenticationToken",
    "RegionDisabledException",
    "RequestExpired",
    "SignatureDoesNotMatch",
    "UnrecognizedClientException",
];

/// STS error codes meaning "try later": STS's fault, 503.
const UNAVAILABLE_CODES: [&str; 5] = [
    "InternalFailure",
    "RequestLimitExceeded",
    "ServiceUnavailable",
    "Throttling",
    "ThrottlingException",
];

/// The IAM method as the policy configures it (`identity.iam`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IamConfig {
    /// The only STS endpoint a credential may name, and the one it is sent to.
    pub sts_endpoint: Url,
    /// Required value of the signed `x-kp-server-id` header.
    pub server_id: String,
    /// Oldest accepted signature; also how long a verified identity is cached
    /// after its `X-Amz-Date`.
    pub max_age: Duration,
}

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
        if self.max_age.is_zero() {
            return Err(IamError::InvalidConfig("max_age must be positive"));
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

/// The credential in an `Authorization` header value: what follows
/// `KP-AWS-IAM ` (the scheme compared case-insensitively, as RFC 9110 says).
pub fn credential(authorization: &str) -> Option<&str> {
    let (scheme, rest) = authorization.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case(SCHEME)
        .then(|| rest.trim_start_matches(' '))
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

    /// An HTTP client fit for STS (and OIDC) calls: redirects are never
    /// followed, so an answer can only come from the configured endpoint.
    /// Each STS request also carries its own timeout.
    pub fn http_client() -> reqwest::Result<reqwest::Client> {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(STS_TIMEOUT)
            .build()
    }

    /// How many requests this verifier has sent to STS: verifying a cached
    /// credential again must not move it.
    pub fn sts_call_count(&self) -> u64 {
        self.sts_calls.load(Ordering::Relaxed)
    }

    /// Verifies `credential` (the part after `KP-AWS-IAM `) and returns the
    /// caller.
    pub async fn verify(&self, credential: &str) -> Result<Identity, IamError> {
        let result = self.verify_at(credential, SystemTime::now()).await;
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

    /// Every check that needs no network, in the order the module docs give.
    fn check(&self, credential: &str, now: SystemTime) -> Result<Checked, IamError> {
        let json = BASE64URL
            .decode(credential)
            .map_err(|e| IamError::malformed_by("not base64url", e))?;
        let request: SignedRequest = serde_json::from_slice(&json)
            .map_err(|e| IamError::malformed_by("not the expected JSON object", e))?;
        self.check_url(&request.url)?;
        if request.method != "POST" {
            return Err(IamError::WrongMethod);
        }
        check_body(&request.body)?;
        let headers = request.headers.into_map()?;
        let header = |name: &str| headers.get(name).map(String::as_str);
        let auth = SigV4Authorization::parse(
            header("authorization")
                .ok_or_else(|| IamError::malformed("no Authorization header"))?,
        )?;

        if !header("host").is_some_and(|h| h.eq_ignore_ascii_case(&self.authority)) {
            return Err(IamError::WrongEndpoint);
        }
        if !header("content-type").is_some_and(is_form_content_type) {
            return Err(IamError::WrongBody);
        }
        if header("content-length").is_some_and(|len| len != request.body.len().to_string()) {
            return Err(IamError::WrongBody);
        }

        let server_id = header(SERVER_ID_HEADER).ok_or(IamError::MissingServerId)?;
        if !auth.signs(SERVER_ID_HEADER) {
            return Err(IamError::ServerIdNotSigned);
        }
        if server_id != self.config.server_id {
            return Err(IamError::WrongServerId {
                found: echo(server_id),
            });
        }

        for name in &auth.signed_headers {
            if !SIGNABLE_HEADERS.contains(name) {
                return Err(IamError::HeaderNotAllowed(echo(name)));
            }
            if !headers.contains_key(*name) {
                return Err(IamError::malformed("a signed header is missing"));
            }
        }
        if !auth.signs("host") {
            return Err(IamError::malformed("host is not signed"));
        }

        let date = header("x-amz-date").ok_or_else(|| IamError::malformed("no X-Amz-Date"))?;
        if !auth.signs("x-amz-date") {
            return Err(IamError::malformed("X-Amz-Date is not signed"));
        }
        let signed_at = parse_amz_date(date)?;
        if !date.starts_with(auth.scope_date) {
            return Err(IamError::malformed(
                "the credential scope's date is not X-Amz-Date's",
            ));
        }
        if signed_at > now + MAX_FUTURE_SKEW {
            return Err(IamError::NotYetValid);
        }
        let expires_at = signed_at + self.config.max_age;
        if now >= expires_at {
            return Err(IamError::Stale);
        }

        let forward = FORWARDED_HEADERS
            .iter()
            .filter_map(|&name| Some((name, headers.get(name)?.clone())))
            .collect();
        Ok(Checked {
            forward,
            body: request.body,
            expires_at,
        })
    }

    /// The token's URL must be the configured endpoint. It is only compared,
    /// never requested.
    fn check_url(&self, raw: &str) -> Result<(), IamError> {
        let url = Url::parse(raw).map_err(|_| IamError::WrongEndpoint)?;
        let expected = &self.config.sts_endpoint;
        let same = url.scheme() == expected.scheme()
            && url.username().is_empty()
            && url.password().is_none()
            && url.host() == expected.host()
            && url.port_or_known_default() == expected.port_or_known_default()
            && url.path() == "/"
            && url.query().is_none()
            && url.fragment().is_none();
        if same {
            Ok(())
        } else {
            Err(IamError::WrongEndpoint)
        }
    }

    /// Replays a checked request to the configured endpoint and reads the
    /// caller from the answer.
    async fn call_sts(&self, checked: &Checked) -> Result<Identity, IamError> {
        let endpoint = &self.config.sts_endpoint;
        if let Some(why) = endpoint_problem(endpoint) {
            return Err(IamError::InvalidConfig(why));
        }
        self.sts_calls.fetch_add(1, Ordering::Relaxed);
        let unavailable = |reason: &str, source| IamError::StsUnavailable {
            reason: reason.to_owned(),
            source,
        };
        let mut request = self
            .http
            .post(endpoint.clone())
            .timeout(STS_TIMEOUT)
            .body(checked.body.clone());
        for (name, value) in &checked.forward {
            request = request.header(*name, value);
        }
        let mut response = request
            .send()
            .await
            .map_err(|e| unavailable("request failed", Some(e)))?;
        let status = response.status().as_u16();
        if response.url() != endpoint {
            // Only possible with a client that follows redirects: whatever
            // answered is not the endpoint we trust.
            return Err(IamError::UnexpectedResponse {
                status,
                reason: "redirected away from the configured endpoint".to_owned(),
            });
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| unavailable("reading the answer failed", Some(e)))?
        {
            if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err(IamError::UnexpectedResponse {
                    status,
                    reason: format!("answer larger than {MAX_RESPONSE_BYTES} bytes"),
                });
            }
            body.extend_from_slice(&chunk);
        }
        let body = String::from_utf8_lossy(&body);
        let result = if status == 200 {
            parse_caller_identity(&body).and_then(CallerIdentity::into_identity)
        } else {
            Err(classify_error(status, &body))
        };
        match &result {
            Ok(identity) => {
                tracing::debug!(principal = %identity.principal, "verified an IAM caller with STS");
            }
            Err(error) if error.is_unavailable() => {
                tracing::warn!(error = %crate::telemetry::error_chain(error), "STS call failed");
            }
            Err(_) => {}
        }
        result
    }
}

/// A credential that passed every local check: what to send to STS and how
/// long the answer may be cached. No `Debug`: it holds the signature and the
/// session token.
struct Checked {
    forward: Vec<(&'static str, String)>,
    body: String,
    expires_at: SystemTime,
}

/// The credential's JSON. Unknown and duplicate fields are refused.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignedRequest {
    method: String,
    url: String,
    headers: RawHeaders,
    body: String,
}

/// The `headers` object in the order given, duplicates kept so they can be
/// refused (a map would silently keep one of them).
struct RawHeaders(Vec<(String, HeaderValue)>);

/// A header value: a string, or (as Go's `http.Header` serialises, which
/// Vault-style clients send) a list holding exactly one string.
#[derive(Deserialize)]
#[serde(untagged)]
enum HeaderValue {
    One(String),
    Many(Vec<String>),
}

impl<'de> Deserialize<'de> for RawHeaders {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = RawHeaders;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of header names to values")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<RawHeaders, A::Error> {
                let mut headers = Vec::new();
                while let Some(entry) = map.next_entry::<String, HeaderValue>()? {
                    headers.push(entry);
                }
                Ok(RawHeaders(headers))
            }
        }
        deserializer.deserialize_map(Visitor)
    }
}

impl RawHeaders {
    /// Lower-case names to trimmed values. A name given twice (in any case)
    /// or with several values is refused: which one STS would see is not
    /// something to leave to chance.
    fn into_map(self) -> Result<BTreeMap<String, String>, IamError> {
        let mut map = BTreeMap::new();
        for (name, value) in self.0 {
            if !is_token(&name) {
                return Err(IamError::malformed("invalid header name"));
            }
            let value = match value {
                HeaderValue::One(v) => v,
                HeaderValue::Many(mut v) if v.len() == 1 => v.remove(0),
                HeaderValue::Many(_) => {
                    return Err(IamError::malformed("a header has several values"));
                }
            };
            if !is_header_value(&value) {
                return Err(IamError::malformed("invalid header value"));
            }
            // SigV4 signs trimmed values, so trimming changes nothing STS sees.
            let value = value.trim_matches([' ', '\t']).to_owned();
            if map.insert(name.to_ascii_lowercase(), value).is_some() {
                return Err(IamError::malformed("a header is given twice"));
            }
        }
        Ok(map)
    }
}

/// `AWS4-HMAC-SHA256 Credential=AKID/20261126/us-east-1/sts/aws4_request,
/// SignedHeaders=a;b;c, Signature=<64 hex>`, parsed only as far as our checks
/// need (STS verifies the signature).
struct SigV4Authorization<'a> {
    scope_date: &'a str,
    signed_headers: Vec<&'a str>,
}

impl<'a> SigV4Authorization<'a> {
    fn parse(value: &'a str) -> Result<Self, IamError> {
        let bad = || IamError::malformed("Authorization is not an AWS4-HMAC-SHA256 signature");
        let rest = value.strip_prefix("AWS4-HMAC-SHA256 ").ok_or_else(bad)?;
        let (mut credential, mut signed, mut signature) = (None, None, None);
        for part in rest.split(',') {
            let (key, value) = part.trim().split_once('=').ok_or_else(bad)?;
            let slot = match key {
                "Credential" => &mut credential,
                "SignedHeaders" => &mut signed,
                "Signature" => &mut signature,
                _ => return Err(bad()),
            };
            if slot.replace(value).is_some() {
                return Err(bad());
            }
        }
        let (credential, signed, signature) = (
            credential.ok_or_else(bad)?,
            signed.ok_or_else(bad)?,
            signature.ok_or_else(bad)?,
        );
        let scope: Vec<&str> = credential.split('/').collect();
        let [access_key, date, region, service, terminator] = scope[..] else {
            return Err(bad());
        };
        if access_key.is_empty()
            || region.is_empty()
            || date.len() != 8
            || !date.bytes().all(|b| b.is_ascii_digit())
            || terminator != "aws4_request"
        {
            return Err(bad());
        }
        if service != "sts" {
            return Err(IamError::WrongEndpoint);
        }
        if signature.len() != 64 || !signature.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad());
        }
        let signed_headers: Vec<&str> = signed.split(';').collect();
        let well_formed = signed_headers
            .iter()
            .all(|h| is_token(h) && !h.bytes().any(|b| b.is_ascii_uppercase()));
        let mut unique = signed_headers.clone();
        unique.sort_unstable();
        unique.dedup();
        if !well_formed || unique.len() != signed_headers.len() {
            return Err(bad());
        }
        Ok(Self {
            scope_date: date,
            signed_headers,
        })
    }

    fn signs(&self, header: &str) -> bool {
        self.signed_headers.contains(&header)
    }
}

/// The body must be the two GetCallerIdentity parameters, in either order,
/// byte for byte: no other action, no extra or repeated parameter, no
/// alternative encoding.
fn check_body(body: &str) -> Result<(), IamError> {
    let mut params: Vec<&str> = body.split('&').collect();
    params.sort_unstable();
    if params == ["Action=GetCallerIdentity", "Version=2011-06-15"] {
        Ok(())
    } else {
        Err(IamError::WrongBody)
    }
}

/// `application/x-www-form-urlencoded`, optionally with `charset=utf-8`.
fn is_form_content_type(value: &str) -> bool {
    let mut parts = value.split(';').map(str::trim);
    parts
        .next()
        .is_some_and(|media| media.eq_ignore_ascii_case(CONTENT_TYPE))
        && parts.all(|p| p.eq_ignore_ascii_case("charset=utf-8"))
}

/// `X-Amz-Date` (`20261126T071500Z`) as a time.
fn parse_amz_date(value: &str) -> Result<SystemTime, IamError> {
    let bad = |e| IamError::malformed_by("X-Amz-Date is not yyyymmddThhmmssZ", e);
    let shape_ok = value.len() == 16
        && value.bytes().enumerate().all(|(i, b)| match i {
            8 => b == b'T',
            15 => b == b'Z',
            _ => b.is_ascii_digit(),
        });
    if !shape_ok {
        return Err(IamError::malformed("X-Amz-Date is not yyyymmddThhmmssZ"));
    }
    let parsed = chrono::NaiveDateTime::parse_from_str(value, "%Y%m%dT%H%M%SZ").map_err(bad)?;
    let seconds = u64::try_from(parsed.and_utc().timestamp())
        .map_err(|_| IamError::malformed("X-Amz-Date is before 1970"))?;
    Ok(UNIX_EPOCH + Duration::from_secs(seconds))
}

/// RFC 9110 `token`: what a header name may be made of.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Printable ASCII, spaces and tabs: no line breaks to smuggle a header, no
/// bytes the HTTP client would refuse at send time (which would otherwise
/// look like an STS outage).
fn is_header_value(s: &str) -> bool {
    !s.trim().is_empty() && s.bytes().all(|b| b == b'\t' || (b' '..=b'~').contains(&b))
}

/// `host[:port]` as a `host` header carries it (default ports omitted).
fn authority(url: &Url) -> String {
    match (url.host_str(), url.port()) {
        (Some(host), Some(port)) => format!("{host}:{port}"),
        (Some(host), None) => host.to_owned(),
        (None, _) => String::new(),
    }
}

/// Why `url` cannot be the STS endpoint, if it cannot.
fn endpoint_problem(url: &Url) -> Option<&'static str> {
    if url.host().is_none() {
        return Some("sts_endpoint has no host");
    }
    let loopback = crate::http::is_loopback_host(url);
    match url.scheme() {
        "https" => {}
        "http" if loopback => {}
        _ => return Some("sts_endpoint must be https (plain http only for a loopback host)"),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Some("sts_endpoint must not carry credentials");
    }
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
        return Some("sts_endpoint must have path / and no query or fragment");
    }
    None
}

/// What GetCallerIdentity says about the signer.
#[derive(Debug, Clone, PartialEq, Eq)]
struct CallerIdentity {
    arn: String,
    user_id: String,
    account: String,
}

/// Reads a `GetCallerIdentityResponse`.
fn parse_caller_identity(xml: &str) -> Result<CallerIdentity, IamError> {
    let unexpected = |reason: &str| IamError::UnexpectedResponse {
        status: 200,
        reason: reason.to_owned(),
    };
    if !xml.contains("<GetCallerIdentityResponse") {
        return Err(unexpected("not a GetCallerIdentityResponse"));
    }
    let result = xml_element(xml, "GetCallerIdentityResult")
        .ok_or_else(|| unexpected("no GetCallerIdentityResult"))?;
    let field = |name: &str| {
        xml_element(result, name)
            .and_then(xml_unescape)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| unexpected(&format!("no single {name}")))
    };
    Ok(CallerIdentity {
        arn: field("Arn")?,
        user_id: field("UserId")?,
        account: field("Account")?,
    })
}

/// Maps a non-200 STS answer onto the error the caller gets.
fn classify_error(status: u16, xml: &str) -> IamError {
    let code = xml_element(xml, "Code").and_then(xml_unescape);
    let code_is = |codes: &[&str]| code.as_deref().is_some_and(|c| codes.contains(&c));
    if status >= 500 || status == 429 || code_is(&UNAVAILABLE_CODES) {
        return IamError::StsUnavailable {
            reason: format!(
                "HTTP {status} {}",
                code.as_deref().map(echo).unwrap_or_default()
            )
            .trim_end()
            .to_owned(),
            source: None,
        };
    }
    if status == 401 || status == 403 || code_is(&REJECTION_CODES) {
        return IamError::BadSignature {
            code: code
                .as_deref()
                .map_or_else(|| format!("HTTP {status}"), echo),
        };
    }
    IamError::UnexpectedResponse {
        status,
        reason: code
            .as_deref()
            .map_or_else(|| "no error code".to_owned(), echo),
    }
}

/// The text inside the only `<name>…</name>` of `xml`. STS's answers are
/// small, flat and namespace-prefix free, so a substring search is enough;
/// anything irregular (the element twice, nested markup) is `None`.
fn xml_element<'a>(xml: &'a str, name: &str) -> Option<&'a str> {
    let open = format!("<{name}>");
    let close = format!("</{name}>");
    let start = xml.find(&open)? + open.len();
    let len = xml[start..].find(&close)?;
    let inner = &xml[start..start + len];
    let after = &xml[start + len + close.len()..];
    if after.contains(&open) || inner.contains(&open) {
        return None;
    }
    Some(inner)
}

/// Decodes the five predefined XML entities; text with any other markup is
/// `None`.
fn xml_unescape(text: &str) -> Option<String> {
    if !text.contains(['<', '&']) {
        return Some(text.trim().to_owned());
    }
    if text.contains('<') {
        return None;
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        let end = rest[at..].find(';')? + at;
        out.push(match &rest[at + 1..end] {
            "amp" => '&',
            "lt" => '<',
            "gt" => '>',
            "quot" => '"',
            "apos" => '\'',
            _ => return None,
        });
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    Some(out.trim().to_owned())
}

impl CallerIdentity {
    /// The identity of the signer. Assumed roles become their role (the
    /// session name, chosen by whoever assumed the role, is only a detail);
    /// IAM users, the account root and federated users keep their ARN. Any
    /// other ARN shape is refused rather than guessed at.
    fn into_identity(self) -> Result<Identity, IamError> {
        let unexpected = |reason: &str| IamError::UnexpectedResponse {
            status: 200,
            reason: reason.to_owned(),
        };
        let parts: Vec<&str> = self.arn.splitn(6, ':').collect();
        let [arn, partition, service, region, account, resource] = parts[..] else {
            return Err(unexpected("the caller ARN is not an ARN"));
        };
        let partition_ok = !partition.is_empty()
            && partition
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if arn != "arn" || !partition_ok || !region.is_empty() {
            return Err(unexpected("the caller ARN is not an ARN"));
        }
        if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
            return Err(unexpected("the caller ARN has no account id"));
        }
        if account != self.account {
            return Err(unexpected("the caller ARN names another account"));
        }
        let mut claims = Map::new();
        let segments: Vec<&str> = resource.split('/').collect();
        let (principal, service_tag) = match (service, segments.as_slice()) {
            ("sts", &["assumed-role", role, session])
                if is_iam_name(role) && is_iam_name(session) =>
            {
                claims.insert("session_name".to_owned(), Value::from(session));
                (
                    format!("arn:{partition}:iam::{account}:role/{role}"),
                    Some(role.to_owned()),
                )
            }
            ("iam", &["user", ref path @ .., user])
                if path.iter().chain([&user]).all(|s| is_iam_name(s)) =>
            {
                (self.arn.clone(), Some(user.to_owned()))
            }
            ("iam", &["root"]) => (self.arn.clone(), None),
            ("sts", &["federated-user", user]) if is_iam_name(user) => {
                (self.arn.clone(), Some(user.to_owned()))
            }
            _ => {
                return Err(unexpected(
                    "the caller ARN is not a role, user, root or federated user",
                ));
            }
        };
        claims.insert("account".to_owned(), Value::from(self.account));
        claims.insert("user_id".to_owned(), Value::from(self.user_id));
        claims.insert("arn".to_owned(), Value::from(self.arn));
        Ok(Identity {
            iam_arn: Some(principal.clone()),
            principal,
            service: service_tag,
            groups: Vec::new(),
            method: AuthMethod::Iam,
            issuer: ISSUER.to_owned(),
            kong_consumer: None,
            claims,
        })
    }
}

/// IAM's name alphabet (roles, users, path segments, session names):
/// alphanumerics and `+=,.@_-`. Nothing a glob or a log would trip over.
fn is_iam_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-".contains(&b))
}

/// Verified identities by SHA-256 of the credential. Each slot is a
/// once-cell so concurrent first uses of one credential wait for one STS call.
struct Cache {
    slots: Mutex<CacheState>,
    capacity: usize,
}

struct CacheState {
    by_key: HashMap<[u8; 32], Arc<Slot>>,
    next_seq: u64,
    /// Credentials STS refused: its error code, and until when.
    refused: HashMap<[u8; 32], (String, SystemTime)>,
}

struct Slot {
    identity: tokio::sync::OnceCell<Identity>,
    expires_at: SystemTime,
    /// Insertion order, to evict the oldest when nothing has expired.
    seq: u64,
}

impl Cache {
    fn new(capacity: usize) -> Self {
        Self {
            slots: Mutex::new(CacheState {
                by_key: HashMap::new(),
                next_seq: 0,
                refused: HashMap::new(),
            }),
            capacity,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CacheState> {
        // The lock is never held across a panic point that could leave the
        // map half-updated, so poisoning is safe to ignore.
        self.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A verified identity for `key` that is still valid at `now`.
    fn fresh(&self, key: &[u8; 32], now: SystemTime) -> Option<Identity> {
        let state = self.lock();
        let slot = state.by_key.get(key)?;
        if slot.expires_at <= now {
            return None;
        }
        slot.identity.get().cloned()
    }

    /// The slot to verify `key` in: the live one (possibly being verified by
    /// someone else right now) or a new one.
    fn slot(&self, key: [u8; 32], expires_at: SystemTime, now: SystemTime) -> Arc<Slot> {
        let mut state = self.lock();
        if let Some(slot) = state.by_key.get(&key)
            && slot.expires_at > now
        {
            return slot.clone();
        }
        if state.by_key.len() >= self.capacity && !state.by_key.contains_key(&key) {
            state.by_key.retain(|_, slot| slot.expires_at > now);
            if state.by_key.len() >= self.capacity
                && let Some(oldest) = state
                    .by_key
                    .iter()
                    .min_by_key(|(_, slot)| slot.seq)
                    .map(|(key, _)| *key)
            {
                state.by_key.remove(&oldest);
            }
        }
        state.next_seq += 1;
        let slot = Arc::new(Slot {
            identity: tokio::sync::OnceCell::new(),
            expires_at,
            seq: state.next_seq,
        });
        state.by_key.insert(key, slot.clone());
        slot
    }

    /// STS's code if it refused the credential `key` and that still stands
    /// at `now`.
    fn refused(&self, key: &[u8; 32], now: SystemTime) -> Option<String> {
        let state = self.lock();
        let (code, until) = state.refused.get(key)?;
        (*until > now).then(|| code.clone())
    }

    /// Remembers that STS refused `key`, until `until`. Bounded like the
    /// identities: expired refusals go first, and when every entry is live
    /// the new one is simply not remembered (it costs an STS call, no more).
    fn refuse(&self, key: [u8; 32], code: &str, until: SystemTime, now: SystemTime) {
        let mut state = self.lock();
        if state.refused.len() >= self.capacity {
            state.refused.retain(|_, (_, until)| *until > now);
            if state.refused.len() >= self.capacity {
                return;
            }
        }
        state.refused.insert(key, (code.to_owned(), until));
    }

    /// Drops a slot whose verification failed, unless someone has since
    /// replaced it or filled it.
    fn forget(&self, key: &[u8; 32], slot: &Arc<Slot>) {
        let mut state = self.lock();
        if state
            .by_key
            .get(key)
            .is_some_and(|s| Arc::ptr_eq(s, slot) && s.identity.get().is_none())
        {
            state.by_key.remove(key);
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().by_key.len()
    }
}

/// An untrusted string made safe for an error or a log ([`crate::telemetry::echo`]).
fn echo(text: &str) -> String {
    crate::telemetry::echo(text, MAX_ECHO_CHARS)
}

pub mod client {
    //! The caller's side: makes a `KP-AWS-IAM` credential by signing an
    //! `sts:GetCallerIdentity` request with the caller's own AWS credentials.
    //! The request is never sent; the verifier replays it. The
    //! `kong-pulsar-token` binary is a thin shell around [`authorization_header`].

    use std::time::SystemTime;

    use aws_credential_types::Credentials;
    use aws_sigv4::http_request::{
        SignableBody, SignableRequest, SigningError, SigningSettings, sign,
    };
    use aws_sigv4::sign::v4;
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use serde_json::{Map, Value, json};
    use url::Url;

    use super::{
        CONTENT_TYPE, GET_CALLER_IDENTITY_BODY, SCHEME, SERVER_ID_HEADER, authority,
        is_header_value,
    };

    /// The environment variables naming the STS endpoint, most specific
    /// first, as the AWS SDKs read them.
    pub const ENDPOINT_VARIABLES: [&str; 2] = ["AWS_ENDPOINT_URL_STS", "AWS_ENDPOINT_URL"];

    /// What a credential is made for.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct TokenRequest {
        /// The `x-kp-server-id` the verifier expects (`identity.iam.server_id`).
        pub server_id: String,
        /// The signing region (the endpoint's region).
        pub region: String,
        /// The STS endpoint the verifier is configured with.
        pub sts_endpoint: Url,
    }

    /// Why no credential could be made.
    #[derive(Debug, thiserror::Error)]
    pub enum TokenError {
        /// The server id cannot be a header value.
        #[error("the server id must be non-empty printable ASCII")]
        ServerId,
        /// The region is not a region name.
        #[error("{0:?} is not an AWS region")]
        Region(String),
        /// The STS endpoint is not an http(s) URL with path `/`.
        #[error("{value:?} is not an STS endpoint URL (http(s), path /)")]
        Endpoint {
            /// The value given.
            value: String,
            /// The parsing error, when it did not parse at all.
            #[source]
            source: Option<url::ParseError>,
        },
        /// The signing parameters are incomplete.
        #[error("cannot sign: {0}")]
        Params(#[source] v4::signing_params::BuildError),
        /// SigV4 signing failed.
        #[error("cannot sign the request")]
        Signing(#[source] SigningError),
    }

    /// `https://sts.{region}.amazonaws.com/` (`.amazonaws.com.cn` in China).
    pub fn default_sts_endpoint(region: &str) -> Result<Url, TokenError> {
        check_region(region)?;
        let suffix = if region.starts_with("cn-") {
            "amazonaws.com.cn"
        } else {
            "amazonaws.com"
        };
        parse_endpoint(&format!("https://sts.{region}.{suffix}/"))
    }

    /// The endpoint to sign for: `explicit` if given, else the first of
    /// [`ENDPOINT_VARIABLES`] that `env` has (unless
    /// `AWS_IGNORE_CONFIGURED_ENDPOINT_URLS` is `true`), else
    /// [`default_sts_endpoint`]. `env` is `std::env::var` in the binary.
    pub fn resolve_sts_endpoint(
        explicit: Option<&str>,
        region: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Url, TokenError> {
        if let Some(url) = explicit {
            return parse_endpoint(url);
        }
        let ignore = env("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS")
            .is_some_and(|v| v.eq_ignore_ascii_case("true"));
        if !ignore
            && let Some(url) = ENDPOINT_VARIABLES
                .iter()
                .filter_map(|name| env(name))
                .find(|v| !v.is_empty())
        {
            return parse_endpoint(&url);
        }
        default_sts_endpoint(region)
    }

    /// The base64url credential: a SigV4-signed GetCallerIdentity request for
    /// `request`, signed at `time` with `credentials`.
    pub fn build_token(
        credentials: &Credentials,
        request: &TokenRequest,
        time: SystemTime,
    ) -> Result<String, TokenError> {
        if !is_header_value(&request.server_id) || request.server_id.trim() != request.server_id {
            return Err(TokenError::ServerId);
        }
        check_region(&request.region)?;
        let url = parse_endpoint(request.sts_endpoint.as_str())?;
        let host = authority(&url);
        let content_type = format!("{CONTENT_TYPE}; charset=utf-8");
        // `host` is given explicitly so that the value signed is the value
        // the verifier compares and STS sees.
        let signed = [
            ("host", host.as_str()),
            ("content-type", content_type.as_str()),
            (SERVER_ID_HEADER, request.server_id.as_str()),
        ];
        let signable = SignableRequest::new(
            "POST",
            url.as_str(),
            signed.iter().copied(),
            SignableBody::Bytes(GET_CALLER_IDENTITY_BODY.as_bytes()),
        )
        .map_err(TokenError::Signing)?;
        let identity = credentials.clone().into();
        let params: aws_sigv4::http_request::SigningParams<'_> = v4::SigningParams::builder()
            .identity(&identity)
            .region(&request.region)
            .name("sts")
            .time(time)
            .settings(SigningSettings::default())
            .build()
            .map_err(TokenError::Params)?
            .into();
        let (instructions, _signature) = sign(signable, &params)
            .map_err(TokenError::Signing)?
            .into_parts();
        let mut headers = Map::new();
        for (name, value) in signed.iter().copied().chain(instructions.headers()) {
            headers.insert(name.to_ascii_lowercase(), Value::from(value));
        }
        let json = json!({
            "method": "POST",
            "url": url.as_str(),
            "headers": headers,
            "body": GET_CALLER_IDENTITY_BODY,
        });
        Ok(URL_SAFE_NO_PAD.encode(json.to_string()))
    }

    /// `KP-AWS-IAM <credential>`: the whole `Authorization` header value.
    pub fn authorization_header(
        credentials: &Credentials,
        request: &TokenRequest,
        time: SystemTime,
    ) -> Result<String, TokenError> {
        Ok(format!(
            "{SCHEME} {}",
            build_token(credentials, request, time)?
        ))
    }

    fn check_region(region: &str) -> Result<(), TokenError> {
        let ok = !region.is_empty()
            && region
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if ok {
            Ok(())
        } else {
            Err(TokenError::Region(super::echo(region)))
        }
    }

    fn parse_endpoint(value: &str) -> Result<Url, TokenError> {
        let url = Url::parse(value).map_err(|source| TokenError::Endpoint {
            value: super::echo(value),
            source: Some(source),
        })?;
        let ok = matches!(url.scheme(), "https" | "http")
            && url.has_host()
            && url.username().is_empty()
            && url.password().is_none()
            && url.path() == "/"
            && url.query().is_none()
            && url.fragment().is_none();
        if ok {
            Ok(url)
        } else {
            Err(TokenError::Endpoint {
                value: super::echo(value),
                source: None,
            })
        }
    }
}

#[cfg(test)]
mod tests;
