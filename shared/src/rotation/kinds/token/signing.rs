//! The token signing key (`pulsar.token_signing_secret`, DESIGN §5) and the
//! Pulsar tokens minted with it.
//!
//! Pulsar's token provider checks a JWT's signature with `tokenSecretKey`
//! (HS256: the raw key bytes) or `tokenPublicKey` (RS256), takes the role from
//! `sub` and refuses it after `exp`. Nothing else is registered broker-side,
//! so minting here is all it takes to create a credential.

use std::fmt;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::Value;

use crate::secrets::SecretValue;
use crate::secrets::store::{AWSCURRENT, Select, Store, StoreError};

/// RFC 7518 §3.2: an HS256 key must be at least as long as the hash output.
/// A shorter one is either truncated or a mistake (a password, a file name).
const MIN_HS256_KEY_BYTES: usize = 32;

/// Standard base64, with or without padding: keys written by hand or by
/// `openssl rand -base64` differ only in that.
const KEY_BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// A key that signs Pulsar tokens the broker accepts. `Debug` names only the
/// algorithm.
#[derive(Clone)]
pub struct SigningKey {
    algorithm: Algorithm,
    key: EncodingKey,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKey({:?})", self.algorithm)
    }
}

/// Why a signing key could not be loaded, or a token not minted. Messages
/// name the secret and the problem, never any key material.
#[derive(Debug, thiserror::Error)]
pub enum SigningKeyError {
    /// The secret does not hold one of the two documented forms.
    #[error(
        "secret {name} is not a token signing key ({reason}); expected \
         {{\"alg\":\"HS256\",\"key\":\"<base64>\"}} or \
         {{\"alg\":\"RS256\",\"private_key_pem\":\"…\"}}"
    )]
    Malformed {
        /// The signing key secret.
        name: String,
        /// What is wrong with it, without its content.
        reason: String,
    },
    /// The key is well-formed but cannot sign (a broken PEM, a short key).
    #[error("the key in secret {name} cannot sign tokens: {reason}")]
    Unusable {
        /// The signing key secret.
        name: String,
        /// Why it cannot sign.
        reason: String,
    },
    /// Signing failed.
    #[error("the token could not be signed")]
    Sign(#[source] jsonwebtoken::errors::Error),
    /// `now + ttl` is not a representable expiry.
    #[error("a token lifetime of {0:?} is out of range")]
    TtlOutOfRange(Duration),
    /// The signing key secret could not be read.
    #[error("the token signing key could not be read")]
    Read(#[source] StoreError),
    /// The signing key secret has no current value.
    #[error("secret {name} (the token signing key) does not exist or has no AWSCURRENT value")]
    Missing {
        /// The signing key secret.
        name: String,
    },
}

#[derive(serde::Serialize)]
struct Claims<'a> {
    sub: &'a str,
    iat: i64,
    exp: i64,
    /// Unique per token, so two tokens minted in the same second differ and
    /// each version can be told apart in audits (Pulsar ignores it).
    #[serde(skip_serializing_if = "Option::is_none")]
    jti: Option<String>,
}

impl SigningKey {
    /// Reads and parses the current version of the signing key secret `name`.
    pub(super) async fn load(store: Store<'_>, name: &str) -> Result<Self, SigningKeyError> {
        let current = store
            .get(name, Select::Stage(AWSCURRENT))
            .await
            .map_err(|err| match err {
                StoreError::NotFound { .. } => SigningKeyError::Missing {
                    name: name.to_owned(),
                },
                other => SigningKeyError::Read(other),
            })?
            .ok_or_else(|| SigningKeyError::Missing {
                name: name.to_owned(),
            })?;
        Self::from_secret(name, &current.value)
    }

    /// Parses the value of the signing key secret `name`.
    pub fn from_secret(name: &str, value: &SecretValue) -> Result<Self, SigningKeyError> {
        let malformed = |reason: &str| SigningKeyError::Malformed {
            name: name.to_owned(),
            reason: reason.to_owned(),
        };
        let unusable = |reason: String| SigningKeyError::Unusable {
            name: name.to_owned(),
            reason,
        };
        // Through `Value`, not a typed struct: serde's messages quote the
        // offending input, and the input here is key material.
        let document: Value =
            serde_json::from_str(value.expose()).map_err(|_| malformed("not JSON"))?;
        let Value::Object(fields) = document else {
            return Err(malformed("not a JSON object"));
        };
        let field = |key: &str| match fields.get(key) {
            Some(Value::String(text)) if !text.trim().is_empty() => Ok(text.as_str()),
            Some(_) => Err(malformed(&format!("`{key}` is not a non-empty string"))),
            None => Err(malformed(&format!("`{key}` is missing"))),
        };
        let signing = match field("alg")? {
            "HS256" => {
                let bytes = KEY_BASE64
                    .decode(field("key")?.trim())
                    .map_err(|_| malformed("`key` is not base64"))?;
                if bytes.len() < MIN_HS256_KEY_BYTES {
                    return Err(unusable(format!(
                        "an HS256 key needs at least {MIN_HS256_KEY_BYTES} bytes, this one has {}",
                        bytes.len()
                    )));
                }
                Self {
                    algorithm: Algorithm::HS256,
                    key: EncodingKey::from_secret(&bytes),
                }
            }
            "RS256" => {
                let key = EncodingKey::from_rsa_pem(field("private_key_pem")?.as_bytes()).map_err(
                    |e| unusable(format!("`private_key_pem` is not an RSA private key ({e})")),
                )?;
                Self {
                    algorithm: Algorithm::RS256,
                    key,
                }
            }
            _ => return Err(malformed("`alg` must be HS256 or RS256")),
        };
        // A PEM can parse and still hold a key the signer rejects; find out
        // now, once, rather than at every tenant's mint.
        signing
            .sign(&Claims {
                sub: "kp-signing-key-check",
                iat: 0,
                exp: 0,
                jti: None,
            })
            .map_err(|e| unusable(super::error_chain(&e)))?;
        Ok(signing)
    }

    /// The JWS algorithm this key signs with.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// Mints a token for `role`: `sub` = role, `iat` = `now`, `exp` = `now + ttl`.
    pub fn mint(
        &self,
        role: &str,
        ttl: Duration,
        now: DateTime<Utc>,
    ) -> Result<MintedToken, SigningKeyError> {
        // Whole seconds: JWT times are integral, and the stored `expires_at`
        // must equal the token's `exp` exactly.
        let issued_at = DateTime::from_timestamp(now.timestamp(), 0)
            .ok_or(SigningKeyError::TtlOutOfRange(ttl))?;
        let expires_at = chrono::Duration::from_std(ttl)
            .ok()
            .and_then(|ttl| issued_at.checked_add_signed(ttl))
            .ok_or(SigningKeyError::TtlOutOfRange(ttl))?;
        let token = self.sign(&Claims {
            sub: role,
            iat: issued_at.timestamp(),
            exp: expires_at.timestamp(),
            jti: Some(uuid::Uuid::new_v4().to_string()),
        })?;
        Ok(MintedToken {
            token: SecretValue::new(token),
            role: role.to_owned(),
            expires_at,
        })
    }

    fn sign(&self, claims: &Claims<'_>) -> Result<String, SigningKeyError> {
        // No `kid`: the broker has exactly one key and ignores it.
        jsonwebtoken::encode(&Header::new(self.algorithm), claims, &self.key)
            .map_err(SigningKeyError::Sign)
    }
}

/// A freshly minted tenant token.
#[derive(Debug, Clone)]
pub struct MintedToken {
    /// The JWT.
    pub token: SecretValue,
    /// Its `sub`.
    pub role: String,
    /// Its `exp`.
    pub expires_at: DateTime<Utc>,
}

impl MintedToken {
    /// The token secret's content (DESIGN §5):
    /// `{"token":"<jwt>","role":"<role>","expires_at":"<RFC 3339>"}`.
    pub fn secret_value(&self) -> SecretValue {
        let document = serde_json::json!({
            "token": self.token.expose(),
            "role": self.role,
            "expires_at": self.expires_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        });
        SecretValue::new(document.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secrets::TenantToken;
    use jsonwebtoken::{DecodingKey, Validation};

    #[derive(Debug, serde::Deserialize)]
    struct Decoded {
        sub: String,
        iat: i64,
        exp: i64,
    }

    fn hs256_secret(key: &[u8]) -> SecretValue {
        SecretValue::new(
            serde_json::json!({"alg": "HS256", "key": KEY_BASE64.encode(key)}).to_string(),
        )
    }

    #[test]
    fn hs256_tokens_verify_with_the_raw_key_bytes() {
        let raw = [7u8; 32];
        let key = SigningKey::from_secret("kp/signing", &hs256_secret(&raw)).unwrap();
        assert_eq!(key.algorithm(), Algorithm::HS256);
        let now = Utc::now();
        let minted = key
            .mint("payments-gw", Duration::from_secs(3600), now)
            .unwrap();

        let decoded = jsonwebtoken::decode::<Decoded>(
            minted.token.expose(),
            &DecodingKey::from_secret(&raw),
            &Validation::new(Algorithm::HS256),
        )
        .unwrap();
        assert_eq!(decoded.header.alg, Algorithm::HS256);
        assert_eq!(decoded.claims.sub, "payments-gw");
        assert_eq!(decoded.claims.iat, now.timestamp());
        assert_eq!(decoded.claims.exp, now.timestamp() + 3600);
        assert_eq!(minted.expires_at.timestamp(), decoded.claims.exp);

        // Another key must not verify it.
        assert!(
            jsonwebtoken::decode::<Decoded>(
                minted.token.expose(),
                &DecodingKey::from_secret(&[8u8; 32]),
                &Validation::new(Algorithm::HS256),
            )
            .is_err()
        );
    }

    #[test]
    fn rs256_tokens_verify_with_the_public_key() {
        use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der, PublicKeyX509Der};
        use aws_lc_rs::signature::{KeyPair as _, RsaKeyPair};
        let pair = RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
        let private = AsDer::<Pkcs8V1Der<'static>>::as_der(&pair).unwrap();
        let public = AsDer::<PublicKeyX509Der<'static>>::as_der(pair.public_key()).unwrap();
        let secret = SecretValue::new(
            serde_json::json!({
                "alg": "RS256",
                "private_key_pem": pem("PRIVATE KEY", private.as_ref()),
            })
            .to_string(),
        );
        let key = SigningKey::from_secret("kp/signing", &secret).unwrap();
        assert_eq!(key.algorithm(), Algorithm::RS256);
        let minted = key
            .mint("billing-gw", Duration::from_secs(600), Utc::now())
            .unwrap();

        let public =
            DecodingKey::from_rsa_pem(pem("PUBLIC KEY", public.as_ref()).as_bytes()).unwrap();
        let decoded = jsonwebtoken::decode::<Decoded>(
            minted.token.expose(),
            &public,
            &Validation::new(Algorithm::RS256),
        )
        .unwrap();
        assert_eq!(decoded.header.alg, Algorithm::RS256);
        assert_eq!(decoded.claims.sub, "billing-gw");
        assert_eq!(decoded.claims.exp - decoded.claims.iat, 600);
    }

    #[test]
    fn the_stored_form_parses_back_as_a_tenant_token() {
        let key = SigningKey::from_secret("kp/signing", &hs256_secret(&[1u8; 48])).unwrap();
        let minted = key.mint("r", Duration::from_secs(90), Utc::now()).unwrap();
        let parsed = TenantToken::parse("kp/tokens/t", &minted.secret_value()).unwrap();
        assert_eq!(parsed.token, minted.token);
        assert_eq!(parsed.role.as_deref(), Some("r"));
        assert_eq!(parsed.expires_at, Some(minted.expires_at));
    }

    #[test]
    fn unusable_keys_are_refused_without_echoing_them() {
        let cases = [
            ("not json at all: hunter2", "not JSON"),
            (r#""hunter2""#, "not a JSON object"),
            (r#"{"alg":"HS512","key":"aHVudGVyMg=="}"#, "`alg` must be"),
            (r#"{"alg":"HS256"}"#, "`key` is missing"),
            (r#"{"alg":"HS256","key":"hunter2!!"}"#, "not base64"),
            (
                r#"{"alg":"HS256","key":"aHVudGVyMg=="}"#,
                "at least 32 bytes",
            ),
            (
                r#"{"alg":"RS256","private_key_pem":"hunter2"}"#,
                "not an RSA private key",
            ),
            (
                r#"{"alg":"RS256","key":"aHVudGVyMg=="}"#,
                "`private_key_pem` is missing",
            ),
        ];
        for (value, expected) in cases {
            let err = SigningKey::from_secret("kp/signing", &SecretValue::new(value)).unwrap_err();
            let shown = err.to_string();
            assert!(shown.contains(expected), "{value}: {shown}");
            assert!(shown.contains("kp/signing"), "{shown}");
            assert!(
                !shown.contains("hunter2") && !shown.contains("aHVudGVyMg"),
                "{shown}"
            );
        }
    }

    #[test]
    fn debug_shows_only_the_algorithm() {
        let key = SigningKey::from_secret("s", &hs256_secret(&[9u8; 32])).unwrap();
        assert_eq!(format!("{key:?}"), "SigningKey(HS256)");
    }

    fn pem(label: &str, der: &[u8]) -> String {
        let body = base64::engine::general_purpose::STANDARD.encode(der);
        let lines: Vec<&str> = body
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect();
        format!(
            "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
            lines.join("\n")
        )
    }
}
