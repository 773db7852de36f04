//! The provenance signing key as a secret kind: `provenance.signing_secret`
//! holds the key set of [`crate::provenance::keys`], and rotating it promotes
//! the key that every JWKS already lists.
//!
//! * judge: the set parses (every key P-256, every kid its thumbprint) and
//!   its active key has signed for less than `rotate_every`;
//! * mint: from the current set (read through the store), `next` becomes
//!   active, a fresh key becomes `next`, the old active key is retired (its
//!   public half kept for `retain_retired`); refused while `next` has been
//!   listed for less than `publish_lead`. No usable current set: a first one;
//! * test: the new set parses, its active key signs and its own JWKS verifies
//!   the signature, and the key about to sign is the current set's `next` —
//!   the one consumers have been offered since the last rotation.
//!
//! The key authenticates as no Pulsar role, so the forbidden-roles guard has
//! nothing to check; the kid (public) identifies values in reports.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::policy::ProvenanceSettings;
use crate::provenance::{KeySet, KeySetError, verifies_with};
use crate::rotation::kind::{KindError, Labels, MintError, Minted, SecretKind, Verdict};
use crate::rotation::report::Reason;
use crate::secrets::SecretValue;
use crate::secrets::store::{AWSCURRENT, Select, Store};

/// Why a staged key set did not pass the test step.
#[derive(Debug, thiserror::Error)]
pub enum KeyTestError {
    /// The value is not a usable key set.
    #[error(transparent)]
    KeySet(#[from] KeySetError),
    /// The active key's signature does not verify with its own JWKS entry.
    #[error("a signature by key {kid} does not verify with the key set's JWKS")]
    SelfCheck {
        /// The active key.
        kid: String,
    },
    /// The key about to sign was never offered in a JWKS.
    #[error(
        "the new active key {new} is not the current set's next key {listed}: consumers \
         would see events signed with a key no JWKS listed before"
    )]
    NotListed {
        /// The staged set's active key.
        new: String,
        /// The current set's next key.
        listed: String,
    },
}

/// The policy's provenance key, when it has one.
pub struct ProvenanceKeyKind<'p> {
    settings: Option<&'p ProvenanceSettings>,
}

impl<'p> ProvenanceKeyKind<'p> {
    /// The key named by `settings` (none: the kind has no secrets).
    pub fn new(settings: Option<&'p ProvenanceSettings>) -> Self {
        Self { settings }
    }
}

/// The current set, when there is a usable one.
async fn current(store: Store<'_>, secret: &str) -> Result<Option<KeySet>, KindError> {
    let stored = store.get(secret, Select::Stage(AWSCURRENT)).await?;
    Ok(stored.and_then(|s| KeySet::parse(&s.value).ok()))
}

#[async_trait]
impl SecretKind for ProvenanceKeyKind<'_> {
    type Item = ProvenanceSettings;

    fn kind(&self) -> &'static str {
        "provenance_key"
    }

    fn items(&self) -> Vec<&ProvenanceSettings> {
        self.settings.into_iter().collect()
    }

    fn labels<'a>(&self, item: &'a ProvenanceSettings) -> Labels<'a> {
        Labels {
            name: &item.issuer,
            role: None,
            secret: &item.signing_secret,
        }
    }

    fn description(&self, item: &ProvenanceSettings) -> String {
        format!(
            "Provenance signing keys (ES256) of kong-pulsar deployment {}, minted and rotated \
             by kong-pulsar",
            item.issuer
        )
    }

    async fn judge(
        &self,
        _store: Store<'_>,
        item: &ProvenanceSettings,
        value: &SecretValue,
        now: DateTime<Utc>,
    ) -> Verdict {
        let Ok(set) = KeySet::parse(value) else {
            return Verdict::Replace {
                reason: Reason::Malformed,
                expires_at: None,
                fingerprint: None,
            };
        };
        let expires_at = chrono::Duration::from_std(item.rotate_every)
            .ok()
            .and_then(|every| set.activated_at().checked_add_signed(every))
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        let fingerprint = set.active_kid().to_owned();
        if expires_at <= now {
            Verdict::Replace {
                reason: Reason::Expiring,
                expires_at: Some(expires_at),
                fingerprint: Some(fingerprint),
            }
        } else {
            Verdict::Keep {
                expires_at,
                fingerprint,
            }
        }
    }

    async fn mint(
        &self,
        store: Store<'_>,
        item: &ProvenanceSettings,
        now: DateTime<Utc>,
    ) -> Result<Minted, MintError> {
        let current = current(store, &item.signing_secret)
            .await
            .map_err(MintError::Issuer)?;
        let set = match current {
            Some(current) => current.rotated(now, item.publish_lead, item.retain_retired),
            None => KeySet::first(now),
        }
        .map_err(|e| MintError::Mint(e.into()))?;
        Ok(Minted {
            value: set.to_secret_value(),
            expires_at: chrono::Duration::from_std(item.rotate_every)
                .ok()
                .and_then(|every| now.checked_add_signed(every))
                .unwrap_or(DateTime::<Utc>::MAX_UTC),
            fingerprint: set.active_kid().to_owned(),
        })
    }

    async fn test(
        &self,
        store: Store<'_>,
        item: &ProvenanceSettings,
        value: &SecretValue,
        now: DateTime<Utc>,
    ) -> Result<Value, KindError> {
        let set = KeySet::parse(value).map_err(KeyTestError::from)?;
        self_check(&set, now, item)?;
        if let Some(current) = current(store, &item.signing_secret).await?
            && current.active_kid() != set.active_kid()
            && current.next_kid() != set.active_kid()
        {
            return Err(KeyTestError::NotListed {
                new: set.active_kid().to_owned(),
                listed: current.next_kid().to_owned(),
            }
            .into());
        }
        Ok(json!({
            "active": set.active_kid(),
            "next": set.next_kid(),
            "retired": set.retired_kids().collect::<Vec<_>>(),
        }))
    }
}

/// Signs a probe with the active key and verifies it with the set's own
/// JWKS entry, as a consumer would.
fn self_check(
    set: &KeySet,
    now: DateTime<Utc>,
    item: &ProvenanceSettings,
) -> Result<(), KeyTestError> {
    let probe = b"kong-pulsar provenance self-check";
    let signature = set.sign(probe)?;
    let jwks = set.jwks(now, item.retain_retired);
    match jwks.find(set.active_kid()) {
        Some(jwk) if verifies_with(jwk, probe, &signature) => Ok(()),
        _ => Err(KeyTestError::SelfCheck {
            kid: set.active_kid().to_owned(),
        }),
    }
}
