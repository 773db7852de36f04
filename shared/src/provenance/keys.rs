//! The provenance key set as Secrets Manager keeps it, and how it rotates.
//!
//! One secret holds every key a deployment needs at once:
//!
//! ```json
//! {"alg": "ES256",
//!  "active":  {"kid": "…", "private_key_pem": "-----BEGIN PRIVATE KEY-----…", "created_at": "…", "activated_at": "…"},
//!  "next":    {"kid": "…", "private_key_pem": "…", "created_at": "…"},
//!  "retired": [{"kid": "…", "x": "…", "y": "…", "retired_at": "…"}]}
//! ```
//!
//! `active` signs. `next` is already in the JWKS but signs nothing yet: a
//! rotation promotes it, mints a new `next`, and retires the old `active`
//! (its private half is dropped; only the public point stays, for
//! `retain_retired`). So a key is listed in every JWKS a publish instance
//! serves for a whole rotation period before the first event is signed with
//! it, and nothing needs two secrets (or two reads) to stay consistent.
//! Key ids are RFC 7638 thumbprints, so a kid names exactly one public key.

use std::fmt;
use std::time::Duration;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use kong_pulsar_verify::{Jwk, Jwks};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::secrets::SecretValue;

/// The only algorithm a key set holds.
const ALG: &str = "ES256";

/// Why a stored key set cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeySetError {
    /// The value is not the key set's JSON shape.
    #[error("the secret does not hold a provenance key set: {0}")]
    Shape(String),
    /// A private key is not a P-256 PKCS#8 key.
    #[error("key {kid:?} is not a P-256 private key in PKCS#8 PEM")]
    BadKey {
        /// The key's stored id.
        kid: String,
    },
    /// A stored id is not the thumbprint of its key: the value was edited.
    #[error("key id {kid:?} is not the thumbprint of its key")]
    KidMismatch {
        /// The key's stored id.
        kid: String,
    },
    /// `next` has not been listed long enough to sign.
    #[error(
        "the next key was published {listed_secs}s ago; it may sign only after publish_lead \
         ({lead_secs}s), so every JWKS lists it first"
    )]
    TooSoon {
        /// How long `next` has been listed.
        listed_secs: i64,
        /// The policy's `publish_lead`.
        lead_secs: u64,
    },
    /// The system random generator failed.
    #[error("a P-256 key could not be generated")]
    Generate,
}

/// One private key with its public half.
struct PrivateKey {
    kid: String,
    jwk: Jwk,
    pair: EcdsaKeyPair,
    pem: String,
    created_at: DateTime<Utc>,
    activated_at: Option<DateTime<Utc>>,
}

impl PrivateKey {
    fn generate(now: DateTime<Utc>) -> Result<Self, KeySetError> {
        let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
            .map_err(|_| KeySetError::Generate)?;
        let der = pair.to_pkcs8v1().map_err(|_| KeySetError::Generate)?;
        let pem = pem_encode(der.as_ref());
        Self::from_parts(None, pem, now, None)
    }

    /// Parses a stored key; `kid`, when given, must be its thumbprint.
    fn from_parts(
        kid: Option<&str>,
        pem: String,
        created_at: DateTime<Utc>,
        activated_at: Option<DateTime<Utc>>,
    ) -> Result<Self, KeySetError> {
        let bad = || KeySetError::BadKey {
            kid: kid.unwrap_or("(new)").to_owned(),
        };
        let der = pem_decode(&pem).ok_or_else(bad)?;
        let pair =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &der).map_err(|_| bad())?;
        let point = pair.public_key().as_ref();
        // Uncompressed SEC1 point: 0x04 || X (32) || Y (32).
        if point.len() != 65 || point[0] != 4 {
            return Err(bad());
        }
        let (x, y) = (
            URL_SAFE_NO_PAD.encode(&point[1..33]),
            URL_SAFE_NO_PAD.encode(&point[33..]),
        );
        let thumbprint = thumbprint(&x, &y);
        if let Some(kid) = kid
            && kid != thumbprint
        {
            return Err(KeySetError::KidMismatch {
                kid: kid.to_owned(),
            });
        }
        Ok(Self {
            jwk: Jwk::p256(thumbprint.clone(), x, y),
            kid: thumbprint,
            pair,
            pem,
            created_at,
            activated_at,
        })
    }

    fn stored(&self) -> StoredPrivate {
        StoredPrivate {
            kid: self.kid.clone(),
            private_key_pem: self.pem.clone(),
            created_at: self.created_at,
            activated_at: self.activated_at,
        }
    }
}

/// A retired key: only its public half is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RetiredKey {
    jwk: Jwk,
    retired_at: DateTime<Utc>,
}

/// A usable key set. `Debug` names the keys by id only.
pub struct KeySet {
    active: PrivateKey,
    next: PrivateKey,
    retired: Vec<RetiredKey>,
}

impl fmt::Debug for KeySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeySet")
            .field("active", &self.active.kid)
            .field("next", &self.next.kid)
            .field(
                "retired",
                &self.retired.iter().map(|r| &r.jwk.kid).collect::<Vec<_>>(),
            )
            .finish()
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Stored {
    alg: String,
    active: StoredPrivate,
    next: StoredPrivate,
    #[serde(default)]
    retired: Vec<StoredRetired>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredPrivate {
    kid: String,
    private_key_pem: String,
    created_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    activated_at: Option<DateTime<Utc>>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredRetired {
    kid: String,
    x: String,
    y: String,
    retired_at: DateTime<Utc>,
}

impl KeySet {
    /// A first key set: a fresh key that signs now (nothing was signed
    /// before, so no JWKS can be missing it) and a fresh `next`.
    pub fn first(now: DateTime<Utc>) -> Result<Self, KeySetError> {
        let mut active = PrivateKey::generate(now)?;
        active.activated_at = Some(now);
        Ok(Self {
            active,
            next: PrivateKey::generate(now)?,
            retired: Vec::new(),
        })
    }

    /// Reads a stored key set, checking every key and id.
    pub fn parse(value: &SecretValue) -> Result<Self, KeySetError> {
        let stored: Stored = serde_json::from_str(value.expose())
            // serde's message names the field, never the value.
            .map_err(|e| KeySetError::Shape(e.to_string()))?;
        if stored.alg != ALG {
            return Err(KeySetError::Shape(format!(
                "alg is {:?}; only {ALG} is supported",
                stored.alg
            )));
        }
        let private = |p: StoredPrivate| {
            PrivateKey::from_parts(
                Some(&p.kid),
                p.private_key_pem,
                p.created_at,
                p.activated_at,
            )
        };
        let active = private(stored.active)?;
        let next = private(stored.next)?;
        let mut retired = Vec::with_capacity(stored.retired.len());
        for r in stored.retired {
            if thumbprint(&r.x, &r.y) != r.kid {
                return Err(KeySetError::KidMismatch { kid: r.kid });
            }
            retired.push(RetiredKey {
                jwk: Jwk::p256(r.kid, r.x, r.y),
                retired_at: r.retired_at,
            });
        }
        if active.kid == next.kid || retired.iter().any(|r| r.jwk.kid == next.kid) {
            return Err(KeySetError::Shape("a key id appears twice".into()));
        }
        Ok(Self {
            active,
            next,
            retired,
        })
    }

    /// The stored form.
    pub fn to_secret_value(&self) -> SecretValue {
        let stored = Stored {
            alg: ALG.to_owned(),
            active: self.active.stored(),
            next: self.next.stored(),
            retired: self
                .retired
                .iter()
                .map(|r| StoredRetired {
                    kid: r.jwk.kid.clone(),
                    x: r.jwk.x.clone(),
                    y: r.jwk.y.clone(),
                    retired_at: r.retired_at,
                })
                .collect(),
        };
        SecretValue::new(serde_json::to_string(&stored).expect("the key set serialises"))
    }

    /// The next key set: `next` signs from `now`, a fresh key becomes `next`,
    /// the active key is retired and retired keys past `retain` are dropped.
    /// Refused while `next` has been listed for less than `lead`.
    pub fn rotated(
        &self,
        now: DateTime<Utc>,
        lead: Duration,
        retain: Duration,
    ) -> Result<Self, KeySetError> {
        let listed = now - self.next.created_at;
        if listed < chrono::Duration::from_std(lead).unwrap_or(chrono::Duration::MAX) {
            return Err(KeySetError::TooSoon {
                listed_secs: listed.num_seconds(),
                lead_secs: lead.as_secs(),
            });
        }
        let active = PrivateKey::from_parts(
            Some(&self.next.kid),
            self.next.pem.clone(),
            self.next.created_at,
            Some(now),
        )?;
        let mut retired = vec![RetiredKey {
            jwk: self.active.jwk.clone(),
            retired_at: now,
        }];
        retired.extend(self.retained(now, retain).cloned());
        Ok(Self {
            active,
            next: PrivateKey::generate(now)?,
            retired,
        })
    }

    fn retained(&self, now: DateTime<Utc>, retain: Duration) -> impl Iterator<Item = &RetiredKey> {
        let retain = chrono::Duration::from_std(retain).unwrap_or(chrono::Duration::MAX);
        self.retired.iter().filter(move |r| {
            r.retired_at
                .checked_add_signed(retain)
                .is_none_or(|t| t > now)
        })
    }

    /// The public keys consumers verify with: active, next, and the retired
    /// keys still inside `retain` at `now`, newest first. Never a private key.
    pub fn jwks(&self, now: DateTime<Utc>, retain: Duration) -> Jwks {
        let mut keys = vec![self.active.jwk.clone(), self.next.jwk.clone()];
        keys.extend(self.retained(now, retain).map(|r| r.jwk.clone()));
        Jwks { keys }
    }

    /// The signing key's id.
    pub fn active_kid(&self) -> &str {
        &self.active.kid
    }

    /// The next key's id.
    pub fn next_kid(&self) -> &str {
        &self.next.kid
    }

    /// The ids of the retired keys kept.
    pub fn retired_kids(&self) -> impl Iterator<Item = &str> {
        self.retired.iter().map(|r| r.jwk.kid.as_str())
    }

    /// When the active key started signing (its creation, for a key set
    /// written by hand without `activated_at`).
    pub fn activated_at(&self) -> DateTime<Utc> {
        self.active.activated_at.unwrap_or(self.active.created_at)
    }

    /// Signs `message` with the active key: ES256, the fixed 64-byte `r || s`
    /// form JWS uses.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, KeySetError> {
        let rng = SystemRandom::new();
        self.active
            .pair
            .sign(&rng, message)
            .map(|s| s.as_ref().to_vec())
            .map_err(|_| KeySetError::Generate)
    }
}

/// Whether `signature` (ES256, `r || s`) over `message` verifies with the
/// public key `jwk`, as a consumer holding only the JWKS would check it.
pub fn verifies_with(jwk: &Jwk, message: &[u8], signature: &[u8]) -> bool {
    let coordinate = |c: &str| URL_SAFE_NO_PAD.decode(c).ok().filter(|b| b.len() == 32);
    let (Some(x), Some(y)) = (coordinate(&jwk.x), coordinate(&jwk.y)) else {
        return false;
    };
    let point = [&[4u8][..], &x, &y].concat();
    aws_lc_rs::signature::UnparsedPublicKey::new(
        &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED,
        point,
    )
    .verify(message, signature)
    .is_ok()
}

/// RFC 7638 thumbprint of a P-256 public key: SHA-256 over the required
/// members in lexicographic order, no whitespace, base64url.
fn thumbprint(x: &str, y: &str) -> String {
    let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
    URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
}

const PEM_BEGIN: &str = "-----BEGIN PRIVATE KEY-----";
const PEM_END: &str = "-----END PRIVATE KEY-----";

fn pem_encode(der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem = String::with_capacity(b64.len() + 80);
    pem.push_str(PEM_BEGIN);
    pem.push('\n');
    for line in b64.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        pem.push('\n');
    }
    pem.push_str(PEM_END);
    pem.push('\n');
    pem
}

fn pem_decode(pem: &str) -> Option<Vec<u8>> {
    let body = pem.trim().strip_prefix(PEM_BEGIN)?.strip_suffix(PEM_END)?;
    let b64: String = body.split_whitespace().collect();
    base64::engine::general_purpose::STANDARD.decode(b64).ok()
}

#[cfg(test)]
mod tests;
