//! Sealing messages in `publish`: the key set is read through the same
//! per-instance secret cache as the tenant tokens (one Secrets Manager call
//! per `KP_SECRET_TTL`, none on a warm invocation) and parsed once per value;
//! each message then costs one claims serialisation and one ES256 signature.
//! The JWKS the function serves comes from the same parsed value, so an
//! instance never signs with a key its own JWKS does not list.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use kong_pulsar_verify::claims::{BOUND_PROPERTIES, Claims, caller_properties_digest};
use kong_pulsar_verify::{PROPERTY, TYP, payload_digest};

use super::keys::{KeySet, KeySetError};
use crate::policy::ProvenanceSettings;
use crate::pulsar::broker::OutgoingMessage;
use crate::secrets::{SecretSource, SecretValue, SecretsError};

/// Why a message could not be sealed (and so is not published).
#[derive(Debug, thiserror::Error)]
pub enum ProvenanceError {
    /// The key set could not be read from Secrets Manager.
    #[error("the provenance signing key could not be read")]
    Unavailable(#[source] SecretsError),
    /// The key set was read but is unusable.
    #[error("the provenance signing key is unusable")]
    Malformed(#[source] KeySetError),
    /// A property every sealed message carries is missing (a bug upstream).
    #[error("the message lacks property {0}, which the signature must bind")]
    Incomplete(&'static str),
    /// Signing failed.
    #[error("the message could not be signed")]
    Sign(#[source] KeySetError),
}

impl ProvenanceError {
    /// The signing key is missing or unusable, rather than a fault here:
    /// the caller may retry once an operator (or `rotate`) fixes the secret.
    pub fn is_key_unavailable(&self) -> bool {
        matches!(self, Self::Unavailable(_) | Self::Malformed(_))
    }
}

/// Fewest messages worth a thread of their own in [`SigningKeys::seal_all`]:
/// about 1 ms of signing, against tens of µs to start a thread.
const MIN_PER_THREAD: usize = 32;

/// The cores this process may use, read once (it reads cgroup files).
fn cores() -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, usize::from))
}

/// The signer of one deployment (`provenance:` in the policy).
pub struct Signer {
    issuer: String,
    secret: String,
    retain: Duration,
    secrets: Arc<dyn SecretSource>,
    parsed: Mutex<Option<Arc<SigningKeys>>>,
}

impl Signer {
    /// Reads the key set named by `settings` through `secrets` (a cache).
    pub fn new(settings: &ProvenanceSettings, secrets: Arc<dyn SecretSource>) -> Self {
        Self {
            issuer: settings.issuer.clone(),
            secret: settings.signing_secret.clone(),
            retain: settings.retain_retired,
            secrets,
            parsed: Mutex::new(None),
        }
    }

    /// The keys to seal this request's messages with, and to serve the JWKS
    /// from. Parsed again only when the secret's value changed.
    pub async fn keys(&self) -> Result<Arc<SigningKeys>, ProvenanceError> {
        let value = self
            .secrets
            .get(&self.secret)
            .await
            .map_err(ProvenanceError::Unavailable)?;
        if let Some(keys) = self.lock().as_ref()
            && keys.value == value
        {
            return Ok(keys.clone());
        }
        let keys = match SigningKeys::new(value, &self.issuer, self.retain) {
            Ok(keys) => Arc::new(keys),
            Err(err) => {
                // Not kept for the cache's TTL: a fixed secret (or rotate's
                // next cycle) takes effect on the next request.
                self.secrets.invalidate(&self.secret).await;
                return Err(err);
            }
        };
        *self.lock() = Some(keys.clone());
        Ok(keys)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Arc<SigningKeys>>> {
        // Only ever holds a finished value: a panic elsewhere cannot leave
        // it half-written, so a poisoned lock is still sound to use.
        self.parsed.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One parsed key set, ready to sign with.
pub struct SigningKeys {
    value: SecretValue,
    keys: KeySet,
    issuer: String,
    /// `base64url({"alg":"ES256","typ":…,"kid":…})`, the same for every message.
    header: String,
    retain: Duration,
}

impl SigningKeys {
    fn new(value: SecretValue, issuer: &str, retain: Duration) -> Result<Self, ProvenanceError> {
        let keys = KeySet::parse(&value).map_err(ProvenanceError::Malformed)?;
        let header = serde_json::json!({ "alg": "ES256", "typ": TYP, "kid": keys.active_kid() });
        Ok(Self {
            header: URL_SAFE_NO_PAD.encode(header.to_string()),
            retain,
            issuer: issuer.to_owned(),
            value,
            keys,
        })
    }

    /// The JWKS document (`{"keys":[…]}`, public keys only) as of now:
    /// retired keys leave it when their retention ends, even while the
    /// stored value (and so this parse of it) stays the same.
    pub fn jwks_json(&self) -> String {
        serde_json::to_string(&self.keys.jwks(chrono::Utc::now(), self.retain))
            .expect("a JWKS serialises")
    }

    /// The id of the key that signs.
    pub fn kid(&self) -> &str {
        self.keys.active_kid()
    }

    /// Signs `message` as published to `topic` (its full name) and adds the
    /// JWS as its `kp-provenance` property. Every other property must
    /// already be set: the claims are taken from the message itself, so the
    /// signature covers exactly what is sent.
    pub fn seal(
        &self,
        topic: &str,
        message: &mut OutgoingMessage,
        iat: i64,
    ) -> Result<(), ProvenanceError> {
        let claims = self.claims(topic, message, iat)?;
        let payload = serde_json::to_vec(&claims).expect("claims serialise");
        let mut jws = String::with_capacity(self.header.len() + payload.len() * 4 / 3 + 100);
        jws.push_str(&self.header);
        jws.push('.');
        URL_SAFE_NO_PAD.encode_string(&payload, &mut jws);
        let signature = self
            .keys
            .sign(jws.as_bytes())
            .map_err(ProvenanceError::Sign)?;
        jws.push('.');
        URL_SAFE_NO_PAD.encode_string(signature, &mut jws);
        message.properties.insert(PROPERTY.to_owned(), jws);
        Ok(())
    }

    /// Seals every message of one request. A batch big enough to pay for
    /// the threads is signed on every core the instance has (a Lambda
    /// function gets a second vCPU above 1,769 MB): signing is about half a
    /// signed batch's CPU and nothing is sent until it is done. Any failure
    /// fails the whole request, before anything is sent.
    pub fn seal_all(
        &self,
        topic: &str,
        messages: &mut [OutgoingMessage],
        iat: i64,
    ) -> Result<(), ProvenanceError> {
        let seal = |part: &mut [OutgoingMessage]| {
            part.iter_mut()
                .try_for_each(|message| self.seal(topic, message, iat))
        };
        let threads = cores().min(messages.len() / MIN_PER_THREAD);
        if threads <= 1 {
            return seal(messages);
        }
        let (first, rest) = messages.split_at_mut(messages.len().div_ceil(threads));
        std::thread::scope(|scope| {
            let others: Vec<_> = rest
                .chunks_mut(first.len())
                .map(|part| scope.spawn(move || seal(part)))
                .collect();
            let mine = seal(first);
            others
                .into_iter()
                .map(|handle| {
                    handle
                        .join()
                        .unwrap_or_else(|p| std::panic::resume_unwind(p))
                })
                .fold(mine, Result::and)
        })
    }

    fn claims(
        &self,
        topic: &str,
        message: &OutgoingMessage,
        iat: i64,
    ) -> Result<Claims, ProvenanceError> {
        let property = |name: &'static str| message.properties.get(name).cloned();
        let required = |name: &'static str| property(name).ok_or(ProvenanceError::Incomplete(name));
        let claims = Claims {
            iss: self.issuer.clone(),
            iat,
            event_id: required("kp-event-id")?,
            tenant: required("kp-tenant")?,
            topic: topic.to_owned(),
            source_id: required("kp-source-id")?,
            service_tag: property("kp-service-tag"),
            auth_method: required("kp-auth-method")?,
            auth_issuer: required("kp-issuer")?,
            request_id: required("kp-request-id")?,
            received_at: required("kp-received-at")?,
            traceparent: required("traceparent")?,
            // Consumers read an empty key and an event time of 0 as none.
            key: message.key.clone().filter(|k| !k.is_empty()),
            event_time: message.event_time_ms.filter(|t| *t != 0),
            idempotency_key: property("kp-idempotency-key"),
            ce_id: property("ce_id"),
            ce_source: property("ce_source"),
            ce_type: property("ce_type"),
            payload_sha256: payload_digest(&message.payload),
            properties_sha256: caller_properties_digest(
                message
                    .properties
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str())),
            ),
        };
        // Every bound property the message carries is in the claims: a new
        // gateway property added without a claim would go unsigned.
        debug_assert!(BOUND_PROPERTIES.iter().all(|(name, claim)| {
            message.properties.get(*name).map(String::as_str) == claim(&claims)
        }));
        Ok(claims)
    }
}

#[cfg(test)]
mod tests;
