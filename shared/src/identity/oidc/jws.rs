//! The compact JWS and the JWK: parsing a token into header, claims and
//! signing input without trusting any of it yet, and turning JWKS entries into
//! verifying keys. Everything here is pure (no network, no clock): what
//! arrives from the token or the JWKS is only decoded and checked against
//! the limits and algorithm rules in `config`.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::config::{MAX_TOKEN_BYTES, MalformedToken, is_asymmetric};

/// Smallest RSA modulus accepted in a JWKS, in bits.
const MIN_RSA_BITS: usize = 2048;

/// The parts of a compact JWS, decoded but not yet verified.
pub(super) struct ParsedToken<'a> {
    pub(super) header: Header,
    pub(super) claims: Map<String, Value>,
    /// `base64url(header) . base64url(payload)`: what the signature covers.
    pub(super) signing_input: &'a str,
    pub(super) signature: &'a str,
}

#[derive(Deserialize)]
pub(super) struct Header {
    pub(super) alg: String,
    #[serde(default)]
    pub(super) kid: Option<String>,
    /// Only compared with the issuer's `token_types`; any JSON type is read,
    /// so an odd `typ` is refused there rather than as malformed.
    #[serde(default)]
    pub(super) typ: Option<serde_json::Value>,
    #[serde(default)]
    crit: Option<serde::de::IgnoredAny>,
}

impl<'a> ParsedToken<'a> {
    pub(super) fn parse(token: &'a str) -> Result<Self, MalformedToken> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(MalformedToken::TooLong);
        }
        let (signing_input, signature) = token.rsplit_once('.').ok_or(MalformedToken::Segments)?;
        let (header_b64, payload_b64) = signing_input
            .split_once('.')
            .ok_or(MalformedToken::Segments)?;
        if payload_b64.contains('.') {
            return Err(MalformedToken::Segments);
        }
        let decode = |part: &'static str, text: &str| {
            URL_SAFE_NO_PAD
                .decode(text)
                .map_err(|source| MalformedToken::Base64 { part, source })
        };
        let header: Header =
            serde_json::from_slice(&decode("header", header_b64)?).map_err(|source| {
                MalformedToken::Json {
                    part: "header",
                    source,
                }
            })?;
        if header.crit.is_some() {
            return Err(MalformedToken::Critical);
        }
        let claims: Map<String, Value> = serde_json::from_slice(&decode("payload", payload_b64)?)
            .map_err(|source| MalformedToken::Json {
            part: "payload",
            source,
        })?;
        // Decoded here (and again by the verifier: a few hundred bytes) so a
        // garbled signature is reported as malformed, not as a wrong one.
        URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|source| MalformedToken::Base64 {
                part: "signature",
                source,
            })?;
        Ok(Self {
            header,
            claims,
            signing_input,
            signature,
        })
    }
}

/// A public key from the issuer's JWKS, ready to verify.
pub(super) struct VerifyingKey {
    pub(super) kid: Option<String>,
    kind: KeyKind,
    /// The JWK's own `alg`, which then is the only algorithm it verifies.
    alg: Option<Algorithm>,
    /// Built once per fetch, never per token.
    pub(super) decoding: DecodingKey,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyKind {
    Rsa,
    P256,
    P384,
    Ed25519,
}

impl VerifyingKey {
    pub(super) fn fits(&self, alg: Algorithm) -> bool {
        self.alg.is_none_or(|own| own == alg)
            && match self.kind {
                KeyKind::Rsa => matches!(
                    alg,
                    Algorithm::RS256
                        | Algorithm::RS384
                        | Algorithm::RS512
                        | Algorithm::PS256
                        | Algorithm::PS384
                        | Algorithm::PS512
                ),
                KeyKind::P256 => alg == Algorithm::ES256,
                KeyKind::P384 => alg == Algorithm::ES384,
                KeyKind::Ed25519 => alg == Algorithm::EdDSA,
            }
    }

    /// A JWK as a verifying key, or why it is not one we would ever use.
    pub(super) fn from_jwk(jwk: Jwk) -> Result<Self, &'static str> {
        if jwk.use_.as_deref().is_some_and(|u| u != "sig") {
            return Err("not a signature key (use)");
        }
        if jwk
            .key_ops
            .as_ref()
            .is_some_and(|ops| !ops.iter().any(|op| op == "verify"))
        {
            return Err("not a verification key (key_ops)");
        }
        let alg = match jwk.alg.as_deref() {
            None => None,
            Some(name) => Some(
                name.parse::<Algorithm>()
                    .ok()
                    .filter(|a| is_asymmetric(*a))
                    .ok_or("unsupported alg")?,
            ),
        };
        let bytes = |field: Option<&String>| -> Result<Vec<u8>, &'static str> {
            URL_SAFE_NO_PAD
                .decode(field.ok_or("missing key component")?)
                .map_err(|_| "key component is not base64url")
        };
        let (kind, decoding) = match (jwk.kty.as_str(), jwk.crv.as_deref()) {
            ("RSA", _) => {
                let n = bytes(jwk.n.as_ref())?;
                let e = bytes(jwk.e.as_ref())?;
                let n_trimmed = n.iter().position(|b| *b != 0).map_or(&[][..], |i| &n[i..]);
                let bits = n_trimmed.len() * 8
                    - n_trimmed.first().map_or(0, |b| b.leading_zeros() as usize);
                if bits < MIN_RSA_BITS {
                    return Err("RSA key shorter than 2048 bits");
                }
                if e.is_empty() {
                    return Err("RSA exponent is empty");
                }
                (
                    KeyKind::Rsa,
                    DecodingKey::from_rsa_raw_components(n_trimmed, &e),
                )
            }
            ("EC", Some(crv @ ("P-256" | "P-384"))) => {
                let (kind, len) = if crv == "P-256" {
                    (KeyKind::P256, 32)
                } else {
                    (KeyKind::P384, 48)
                };
                let x = bytes(jwk.x.as_ref())?;
                let y = bytes(jwk.y.as_ref())?;
                if x.len() != len || y.len() != len {
                    return Err("EC coordinates do not fit the curve");
                }
                // Uncompressed SEC1 point, what the EC verifier expects.
                let mut point = Vec::with_capacity(1 + 2 * len);
                point.push(0x04);
                point.extend_from_slice(&x);
                point.extend_from_slice(&y);
                (kind, DecodingKey::from_ec_der(&point))
            }
            ("OKP", Some("Ed25519")) => {
                let x = bytes(jwk.x.as_ref())?;
                if x.len() != 32 {
                    return Err("Ed25519 key is not 32 bytes");
                }
                (KeyKind::Ed25519, DecodingKey::from_ed_der(&x))
            }
            // `oct` (HMAC secrets) and anything else: never a signing key we
            // trust, whatever the token says.
            _ => return Err("unsupported key type"),
        };
        let key = Self {
            kid: jwk.kid,
            kind,
            alg,
            decoding,
        };
        if let Some(alg) = alg
            && !key.fits(alg)
        {
            return Err("alg does not fit the key type");
        }
        Ok(key)
    }
}

#[derive(Deserialize)]
pub(super) struct Jwk {
    kty: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    alg: Option<String>,
    #[serde(default, rename = "use")]
    use_: Option<String>,
    #[serde(default)]
    key_ops: Option<Vec<String>>,
    #[serde(default)]
    crv: Option<String>,
    #[serde(default)]
    n: Option<String>,
    #[serde(default)]
    e: Option<String>,
    #[serde(default)]
    x: Option<String>,
    #[serde(default)]
    y: Option<String>,
}
