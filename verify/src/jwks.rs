//! The JSON Web Key Set the gateway publishes at `…/.well-known/jwks.json`:
//! P-256 public keys only (`kty` `EC`, `crv` `P-256`, `alg` `ES256`, `use`
//! `sig`), each named by its `kid`. Retired keys stay listed for the
//! deployment's retention, so old messages keep verifying.

use serde::{Deserialize, Serialize};

/// One public key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwk {
    /// Always `EC`.
    pub kty: String,
    /// Always `P-256`.
    pub crv: String,
    /// The point's x coordinate, base64url (32 bytes).
    pub x: String,
    /// The point's y coordinate, base64url (32 bytes).
    pub y: String,
    /// The key's id, the JWS header's `kid`.
    pub kid: String,
    /// Always `ES256`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alg: Option<String>,
    /// Always `sig`.
    #[serde(rename = "use", default, skip_serializing_if = "Option::is_none")]
    pub use_: Option<String>,
}

impl Jwk {
    /// A P-256 signing key's public half.
    pub fn p256(kid: impl Into<String>, x: impl Into<String>, y: impl Into<String>) -> Self {
        Self {
            kty: "EC".into(),
            crv: "P-256".into(),
            x: x.into(),
            y: y.into(),
            kid: kid.into(),
            alg: Some("ES256".into()),
            use_: Some("sig".into()),
        }
    }
}

/// A key set (`{"keys": [...]}`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwks {
    /// The keys, newest first.
    pub keys: Vec<Jwk>,
}

impl Jwks {
    /// The key named `kid`.
    pub fn find(&self, kid: &str) -> Option<&Jwk> {
        self.keys.iter().find(|k| k.kid == kid)
    }
}
