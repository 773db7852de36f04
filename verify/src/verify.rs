//! Checking one received message against the gateway's key set: the
//! signature first (algorithm pinned to ES256, never read from the token),
//! then every claim against the message actually held — payload, topic,
//! caller properties, each gateway property, key and event time. A valid
//! signature on its own proves nothing about *this* message; the claims
//! comparison is what binds it.
//!
//! Every refusal is its own [`VerifyError`] variant with a stable
//! [`VerifyError::code`], the word consumers and tools report.

use std::collections::HashMap;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};

use crate::claims::{
    BOUND_PROPERTIES, Claims, PROPERTY, TYP, caller_properties_digest, payload_digest,
};
use crate::jwks::{Jwk, Jwks};

/// The largest `kp-provenance` value looked at. The gateway's signatures are
/// a few KiB at most (its metadata limit is 16 KiB); anything longer is not
/// one of them and is refused before any decoding.
pub const MAX_SIGNATURE_BYTES: usize = 16 * 1024;

/// Longest stretch of a token-chosen string (a `kid`) echoed in an error.
const MAX_ECHO: usize = 64;

/// A message as a consumer received it.
#[derive(Debug, Clone, Copy)]
pub struct Received<'a> {
    /// The full topic name the message was read from
    /// (`persistent://t/ns/x`, or `…/x-partition-<n>` for one partition).
    pub topic: &'a str,
    pub payload: &'a [u8],
    /// The message key; `None` and `""` are the same (clients differ in
    /// how they report "no key").
    pub key: Option<&'a str>,
    /// Event time in ms since the epoch; `None` and `0` are the same (0 is
    /// Pulsar's "not set").
    pub event_time_ms: Option<u64>,
    /// All properties, the gateway's and the caller's (see
    /// [`properties_from_pairs`] for building this from a wire list).
    pub properties: &'a HashMap<String, String>,
}

/// A message whose provenance checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The key that signed it.
    pub kid: String,
    /// What the gateway verified; every claim matched the message.
    pub claims: Claims,
}

/// Why a message's provenance does not hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("the message has no {PROPERTY} property")]
    NoSignature,
    #[error("the {PROPERTY} property is not a valid provenance signature: {0}")]
    Malformed(&'static str),
    #[error("no usable key {kid:?} in the key set")]
    UnknownKey { kid: String },
    #[error("the signature does not verify with key {kid:?}")]
    BadSignature { kid: String },
    #[error("signed by {signed:?}, not the expected signer {expected:?}")]
    IssuerMismatch { signed: String, expected: String },
    #[error("the payload is not the one that was signed")]
    PayloadMismatch,
    #[error("the caller properties are not the ones that were signed")]
    PropertiesMismatch,
    #[error("signed for topic {signed:?}, received on {received:?}")]
    TopicMismatch { signed: String, received: String },
    #[error("{what} differs from what was signed")]
    ClaimMismatch { what: &'static str },
    #[error("property {name:?} occurs more than once")]
    DuplicateProperty { name: String },
}

impl VerifyError {
    /// The stable code for this refusal.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NoSignature => "no_signature",
            Self::Malformed(_) => "malformed",
            Self::UnknownKey { .. } => "unknown_key",
            Self::BadSignature { .. } => "bad_signature",
            Self::IssuerMismatch { .. } => "issuer_mismatch",
            Self::PayloadMismatch => "payload_mismatch",
            Self::PropertiesMismatch => "properties_mismatch",
            Self::TopicMismatch { .. } => "topic_mismatch",
            Self::ClaimMismatch { .. } => "claim_mismatch",
            Self::DuplicateProperty { .. } => "duplicate_property",
        }
    }
}

/// Verifies with no expectation about the signer's `iss` (any key in
/// `jwks` is trusted to speak for it).
pub fn verify(message: &Received, jwks: &Jwks) -> Result<Verified, VerifyError> {
    Verifier::default().verify(message, jwks)
}

/// A verifier, optionally pinned to one signer.
#[derive(Debug, Clone, Default)]
pub struct Verifier {
    issuer: Option<String>,
}

impl Verifier {
    /// Also require the claims' `iss` (the deployment's
    /// `provenance.issuer`) to be `issuer`: for consumers that trust a key
    /// set shared by several deployments.
    pub fn with_issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuer = Some(issuer.into());
        self
    }

    /// The `kid` a message's signature names, when it has a readable one:
    /// lets a caching key-set fetcher decide whether to refetch before
    /// verifying.
    pub fn kid_of(message: &Received) -> Option<String> {
        let token = message.properties.get(PROPERTY)?;
        header(token).ok().map(|h| h.kid)
    }

    pub fn verify(&self, message: &Received, jwks: &Jwks) -> Result<Verified, VerifyError> {
        let token = message
            .properties
            .get(PROPERTY)
            .ok_or(VerifyError::NoSignature)?;
        let Header { kid } = header(token)?;
        let jwk = jwks
            .find(&kid)
            .ok_or_else(|| VerifyError::UnknownKey { kid: echo(&kid) })?;
        let key = decoding_key(jwk).ok_or_else(|| VerifyError::UnknownKey { kid: echo(&kid) })?;
        let claims = signed_claims(token, &key, &kid)?;
        self.check_claims(message, &claims)?;
        Ok(Verified { kid, claims })
    }

    fn check_claims(&self, message: &Received, claims: &Claims) -> Result<(), VerifyError> {
        if let Some(expected) = &self.issuer
            && claims.iss != *expected
        {
            return Err(VerifyError::IssuerMismatch {
                signed: claims.iss.clone(),
                expected: expected.clone(),
            });
        }
        if !topic_matches(&claims.topic, message.topic) {
            return Err(VerifyError::TopicMismatch {
                signed: claims.topic.clone(),
                received: message.topic.to_owned(),
            });
        }
        if payload_digest(message.payload) != claims.payload_sha256 {
            return Err(VerifyError::PayloadMismatch);
        }
        let props = message
            .properties
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()));
        if caller_properties_digest(props) != claims.properties_sha256 {
            return Err(VerifyError::PropertiesMismatch);
        }
        for (name, claim) in BOUND_PROPERTIES {
            if message.properties.get(*name).map(String::as_str) != claim(claims) {
                return Err(VerifyError::ClaimMismatch { what: name });
            }
        }
        let key = |k: Option<&str>| k.filter(|k| !k.is_empty()).map(str::to_owned);
        if key(message.key) != key(claims.key.as_deref()) {
            return Err(VerifyError::ClaimMismatch { what: "key" });
        }
        let time = |t: Option<u64>| t.filter(|t| *t != 0);
        if time(message.event_time_ms) != time(claims.event_time) {
            return Err(VerifyError::ClaimMismatch { what: "event_time" });
        }
        Ok(())
    }
}

/// Builds a property map from the list a message carries on the wire,
/// refusing a name that occurs twice: clients disagree on which of two
/// values wins, so a duplicate could show one consumer the signed value and
/// another a forged one.
pub fn properties_from_pairs<I, K, V>(pairs: I) -> Result<HashMap<String, String>, VerifyError>
where
    I: IntoIterator<Item = (K, V)>,
    K: Into<String>,
    V: Into<String>,
{
    let mut map = HashMap::new();
    for (name, value) in pairs {
        let name = name.into();
        if map.contains_key(&name) {
            return Err(VerifyError::DuplicateProperty { name: echo(&name) });
        }
        map.insert(name, value.into());
    }
    Ok(map)
}

/// Whether `received` is `signed` itself or one of its partitions
/// (`signed-partition-<digits>`), and nothing else.
pub fn topic_matches(signed: &str, received: &str) -> bool {
    if received == signed {
        return true;
    }
    received
        .strip_prefix(signed)
        .and_then(|rest| rest.strip_prefix("-partition-"))
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// What is needed from the protected header, after checking it is one.
struct Header {
    kid: String,
}

/// Reads and checks the JWS protected header, before any key is chosen: a
/// compact serialization (three base64url parts), `alg` exactly ES256,
/// `typ` exactly [`TYP`], a `kid`, and no `crit` (no extension is
/// understood here, so none may be required).
fn header(token: &str) -> Result<Header, VerifyError> {
    if token.len() > MAX_SIGNATURE_BYTES {
        return Err(VerifyError::Malformed("longer than any signature"));
    }
    let parts: Vec<&str> = token.split('.').collect();
    let [head, _, _] = parts[..] else {
        return Err(VerifyError::Malformed("not a compact JWS"));
    };
    let bytes = URL_SAFE_NO_PAD
        .decode(head)
        .map_err(|_| VerifyError::Malformed("header is not base64url"))?;
    let value: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|_| VerifyError::Malformed("header is not JSON"))?;
    let obj = value
        .as_object()
        .ok_or(VerifyError::Malformed("header is not a JSON object"))?;
    if obj.get("alg").and_then(|v| v.as_str()) != Some("ES256") {
        return Err(VerifyError::Malformed("alg is not ES256"));
    }
    if obj.get("typ").and_then(|v| v.as_str()) != Some(TYP) {
        return Err(VerifyError::Malformed("typ is not kp-provenance+jwt"));
    }
    if obj.contains_key("crit") {
        return Err(VerifyError::Malformed("header has crit"));
    }
    let kid = obj
        .get("kid")
        .and_then(|v| v.as_str())
        .ok_or(VerifyError::Malformed("header has no kid"))?;
    Ok(Header {
        kid: kid.to_owned(),
    })
}

/// The verifying key of a JWKS entry, when it is a P-256 signing key.
fn decoding_key(jwk: &Jwk) -> Option<DecodingKey> {
    let fits = jwk.kty == "EC"
        && jwk.crv == "P-256"
        && jwk.alg.as_deref().is_none_or(|a| a == "ES256")
        && jwk.use_.as_deref().is_none_or(|u| u == "sig");
    let coordinate = |c: &str| URL_SAFE_NO_PAD.decode(c).is_ok_and(|b| b.len() == 32);
    if !fits || !coordinate(&jwk.x) || !coordinate(&jwk.y) {
        return None;
    }
    DecodingKey::from_ec_components(&jwk.x, &jwk.y).ok()
}

/// Verifies the signature with `key` (ES256 only) and reads the claims.
fn signed_claims(token: &str, key: &DecodingKey, kid: &str) -> Result<Claims, VerifyError> {
    let mut validation = Validation::new(Algorithm::ES256);
    // A provenance signature must verify for the topic's whole retention:
    // no expiry, no audience, no registered claim required.
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    match jsonwebtoken::decode::<Claims>(token, key, &validation) {
        Ok(data) => Ok(data.claims),
        Err(e) => Err(match e.kind() {
            ErrorKind::InvalidSignature | ErrorKind::InvalidEcdsaKey => {
                VerifyError::BadSignature { kid: echo(kid) }
            }
            ErrorKind::Base64(_) => VerifyError::Malformed("a part is not base64url"),
            ErrorKind::Json(_) | ErrorKind::Utf8(_) => {
                VerifyError::Malformed("claims are not the provenance claims")
            }
            _ => VerifyError::Malformed("not a verifiable ES256 JWS"),
        }),
    }
}

/// A token-chosen string, cut short for an error message.
fn echo(s: &str) -> String {
    let mut end = s.len().min(MAX_ECHO);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

#[cfg(test)]
mod tests;
