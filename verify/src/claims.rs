//! The claims of a `kp-provenance` JWS and the canonical forms its digests
//! are computed over. This is a public contract: consumers in other
//! languages recompute the same digests from the message they hold, so every
//! form here is byte-exact and written out in the README ("Provenance").
//!
//! * `payload_sha256`: SHA-256 of the message payload bytes, base64url
//!   without padding.
//! * `properties_sha256`: SHA-256 over the *caller* properties (every
//!   property whose name does not start with `kp-` and is not `traceparent`),
//!   sorted by name as bytes; each contributes `len(name)` as a 4-byte
//!   big-endian integer, the name's UTF-8 bytes, `len(value)` the same way,
//!   the value's bytes. No caller properties: the digest of no bytes.
//! * Every `kp-*` property the gateway sets, and `traceparent`, has a claim
//!   of its own ([`BOUND_PROPERTIES`]) that must equal it; a property the
//!   claims leave out (an optional one) must be absent from the message.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The message property that carries the JWS.
pub const PROPERTY: &str = "kp-provenance";

/// The JWS `typ` header of a provenance signature.
pub const TYP: &str = "kp-provenance+jwt";

/// What the gateway verified about one message. Optional claims are left out
/// of the JSON when absent (never `null`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The deployment that signed (the policy's `provenance.issuer`).
    pub iss: String,
    /// When the gateway signed, seconds since the epoch.
    pub iat: i64,
    /// `kp-event-id`.
    pub event_id: String,
    /// `kp-tenant`.
    pub tenant: String,
    /// The full topic name the gateway published to
    /// (`persistent://tenant/namespace/topic`), never a partition's name.
    pub topic: String,
    /// `kp-source-id`: the verified principal.
    pub source_id: String,
    /// `kp-service-tag`, when the credential names a client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_tag: Option<String>,
    /// `kp-auth-method`: `oidc`, `aws-iam` or `kong`.
    pub auth_method: String,
    /// `kp-issuer`: the identity's issuer (an OIDC issuer URL, `aws-iam`,
    /// `kong`), not the signer.
    pub auth_issuer: String,
    /// `kp-request-id`.
    pub request_id: String,
    /// `kp-received-at`.
    pub received_at: String,
    /// `traceparent`.
    pub traceparent: String,
    /// The message key, when the message has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// The message's event time in milliseconds since the epoch, when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_time: Option<u64>,
    /// `kp-idempotency-key`, when the caller sent one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// [`payload_digest`] of the payload.
    pub payload_sha256: String,
    /// [`caller_properties_digest`] of the message's properties.
    pub properties_sha256: String,
    /// `ce_id`, `ce_source`, `ce_type`: a CloudEvent's identity, as the
    /// gateway accepted it (checked against the matched rule's `ce_sources`
    /// and `ce_types`). Absent for events that were not CloudEvents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ce_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ce_source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ce_type: Option<String>,
}

/// Reads one claim (`None`: an optional claim that is absent).
pub type ClaimOf = fn(&Claims) -> Option<&str>;

/// Each gateway-set property and the claim it must equal.
pub const BOUND_PROPERTIES: &[(&str, ClaimOf)] = &[
    ("kp-event-id", |c| Some(&c.event_id)),
    ("kp-tenant", |c| Some(&c.tenant)),
    ("kp-source-id", |c| Some(&c.source_id)),
    ("kp-service-tag", |c| c.service_tag.as_deref()),
    ("kp-auth-method", |c| Some(&c.auth_method)),
    ("kp-issuer", |c| Some(&c.auth_issuer)),
    ("kp-request-id", |c| Some(&c.request_id)),
    ("kp-received-at", |c| Some(&c.received_at)),
    ("traceparent", |c| Some(&c.traceparent)),
    ("kp-idempotency-key", |c| c.idempotency_key.as_deref()),
    // Caller-sent, and so also under `properties_sha256`; named claims all
    // the same, so a consumer reads a CloudEvent's verified source and type
    // from the claims without recomputing the digest.
    ("ce_id", |c| c.ce_id.as_deref()),
    ("ce_source", |c| c.ce_source.as_deref()),
    ("ce_type", |c| c.ce_type.as_deref()),
];

/// Whether a property is the caller's (covered by `properties_sha256`)
/// rather than the gateway's.
pub fn is_caller_property(name: &str) -> bool {
    !name.starts_with("kp-") && name != "traceparent"
}

/// `payload_sha256`: SHA-256 of the payload bytes, base64url, no padding.
pub fn payload_digest(payload: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(payload))
}

/// `properties_sha256` over the caller properties among `properties` (any
/// order in; gateway properties are skipped), in the canonical form the
/// module documents.
pub fn caller_properties_digest<'a, I>(properties: I) -> String
where
    I: IntoIterator<Item = (&'a str, &'a str)>,
{
    let mut caller: Vec<(&str, &str)> = properties
        .into_iter()
        .filter(|(name, _)| is_caller_property(name))
        .collect();
    caller.sort_unstable();
    let mut h = Sha256::new();
    for (name, value) in caller {
        for part in [name, value] {
            // Properties are bounded far below 4 GiB by the gateway; a
            // larger one cannot have been signed, so saturating is harmless.
            let len = u32::try_from(part.len()).unwrap_or(u32::MAX);
            h.update(len.to_be_bytes());
            h.update(part.as_bytes());
        }
    }
    URL_SAFE_NO_PAD.encode(h.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fixed vectors: other languages' verifiers can test against these.
    #[test]
    fn digests_match_the_documented_vectors() {
        assert_eq!(
            payload_digest(br#"{"orderId":"1001"}"#),
            URL_SAFE_NO_PAD.encode(Sha256::digest(br#"{"orderId":"1001"}"#))
        );
        // No caller properties: SHA-256 of no bytes.
        assert_eq!(
            caller_properties_digest([("kp-event-id", "x"), ("traceparent", "y")]),
            "47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU"
        );
        let mut bytes = Vec::new();
        for part in ["a", "1", "b", "22"] {
            bytes.extend_from_slice(&(part.len() as u32).to_be_bytes());
            bytes.extend_from_slice(part.as_bytes());
        }
        let expected = URL_SAFE_NO_PAD.encode(Sha256::digest(&bytes));
        assert_eq!(
            caller_properties_digest([("b", "22"), ("kp-tenant", "t"), ("a", "1")]),
            expected
        );
    }

    #[test]
    fn the_digest_tells_apart_what_concatenation_would_not() {
        let one = caller_properties_digest([("ab", "c")]);
        let other = caller_properties_digest([("a", "bc")]);
        assert_ne!(one, other);
        assert_ne!(
            caller_properties_digest([("a", "")]),
            caller_properties_digest([])
        );
    }

    #[test]
    fn optional_claims_are_left_out_rather_than_null() {
        let claims = Claims {
            iss: "kong-pulsar".into(),
            iat: 1,
            event_id: "e".into(),
            tenant: "t".into(),
            topic: "persistent://t/n/x".into(),
            source_id: "s".into(),
            service_tag: None,
            auth_method: "oidc".into(),
            auth_issuer: "https://idp".into(),
            request_id: "r".into(),
            received_at: "2026-12-02T00:00:00.000Z".into(),
            traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into(),
            key: None,
            event_time: None,
            idempotency_key: None,
            ce_id: None,
            ce_source: None,
            ce_type: None,
            payload_sha256: payload_digest(b""),
            properties_sha256: caller_properties_digest([]),
        };
        let json = serde_json::to_value(&claims).unwrap();
        for absent in [
            "service_tag",
            "key",
            "event_time",
            "idempotency_key",
            "ce_id",
            "ce_source",
            "ce_type",
        ] {
            assert!(json.get(absent).is_none(), "{absent} must be omitted");
        }
        let back: Claims = serde_json::from_value(json).unwrap();
        assert_eq!(back, claims);
    }
}
