//! What the rotation engine needs to know about a kind of secret, and
//! nothing more: which secrets of the policy are of this kind, whether a
//! stored value may stay, how to mint a new one, and how to prove a value
//! works against the real system before readers get it.
//!
//! The engine ([`super::cycle()`], [`super::protocol`]) owns everything that is
//! the same for every kind — the Secrets Manager stages, the order of
//! mint → stage → test → promote, unstaging on failure, refusing secrets
//! scheduled for deletion, the one `force` rule, the report vocabulary — so
//! a new kind (the provenance signing key) is one more implementation of
//! [`SecretKind`] and no change to the engine.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;

use super::report::Reason;
use super::secret_matches;
use crate::secrets::SecretValue;
use crate::secrets::store::Store;

/// A kind-specific error, kept whole (with its sources) for reports, logs and
/// tests that need to look inside it.
pub type KindError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// How one secret of a kind is named in reports and logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Labels<'a> {
    /// The policy entry: a tenant's name, a `certificates:` entry's name.
    pub name: &'a str,
    /// The Pulsar role the value authenticates as; `None` for a secret that
    /// authenticates as no role (the provenance signing key), which the
    /// forbidden-roles guard then has nothing to check.
    pub role: Option<&'a str>,
    /// The Secrets Manager secret that holds it.
    pub secret: &'a str,
}

/// Whether a stored value may stay. The kind judges only the value; the
/// engine applies `force` on top (a value the kind would replace anyway is
/// reported with the kind's reason, so the report says what was wrong).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Usable and outside its rotation window, which closes at `expires_at`.
    Keep {
        /// When the value expires.
        expires_at: DateTime<Utc>,
        /// Which value it is (never the value).
        fingerprint: String,
    },
    /// Must be replaced.
    Replace {
        /// Why.
        reason: Reason,
        /// Its expiry, when it could be read.
        expires_at: Option<DateTime<Utc>>,
        /// Which value it is, when it could be read.
        fingerprint: Option<String>,
    },
}

/// A freshly minted value, not yet stored anywhere.
#[derive(Debug, Clone)]
pub struct Minted {
    /// The secret value in its stored form.
    pub value: SecretValue,
    /// When it expires.
    pub expires_at: DateTime<Utc>,
    /// Which value it is (never the value).
    pub fingerprint: String,
}

/// Why no value could be minted: what mints (a signing key, a CA) could not
/// be loaded, or minting itself failed. Reports tell the two apart.
#[derive(Debug, thiserror::Error)]
pub enum MintError {
    /// The signing key, CA or other issuer is missing or unusable.
    #[error("the issuer could not be loaded")]
    Issuer(#[source] KindError),
    /// The issuer refused to mint this entry.
    #[error("the value could not be minted")]
    Mint(#[source] KindError),
}

/// One kind of secret the engine rotates. `Item` is the policy entry a
/// secret belongs to; implementations borrow the policy for the run.
#[async_trait]
pub trait SecretKind: Send + Sync {
    /// The policy entry one secret of this kind belongs to.
    type Item: Send + Sync;

    /// The kind's name in reports (`"token"`, `"certificate"`).
    fn kind(&self) -> &'static str;

    /// Every secret of this kind the policy names, in a stable order.
    fn items(&self) -> Vec<&Self::Item>;

    /// The names of one secret, for reports and logs.
    fn labels<'a>(&self, item: &'a Self::Item) -> Labels<'a>;

    /// The description a newly created secret gets.
    fn description(&self, item: &Self::Item) -> String;

    /// Whether the stored value may stay (before `force`). A kind that judges
    /// against something else kept in Secrets Manager (the CA that must have
    /// issued a certificate) reads it through `store`.
    async fn judge(
        &self,
        store: Store<'_>,
        item: &Self::Item,
        value: &SecretValue,
        now: DateTime<Utc>,
    ) -> Verdict;

    /// Mints a new value for `item`. A kind that mints with something read
    /// from Secrets Manager (a signing key, a CA) loads it through `store`.
    async fn mint(
        &self,
        store: Store<'_>,
        item: &Self::Item,
        now: DateTime<Utc>,
    ) -> Result<Minted, MintError>;

    /// Proves `value` works for `item` against the real system (the broker
    /// accepts the token; the certificate chains to the CA and says what the
    /// policy says). The answer is what was confirmed, for the report.
    async fn test(
        &self,
        store: Store<'_>,
        item: &Self::Item,
        value: &SecretValue,
        now: DateTime<Utc>,
    ) -> Result<Value, KindError>;

    /// The item whose secret is this one (by name, or by the ARN Secrets
    /// Manager events carry).
    fn item_for_secret(&self, name: &str, arn: Option<&str>) -> Option<&Self::Item> {
        self.items()
            .into_iter()
            .find(|item| secret_matches(self.labels(item).secret, name, arn))
    }
}
