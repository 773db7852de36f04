//! The policy file exactly as written: the serde shapes of DESIGN §4, before
//! any cross-field check. `deny_unknown_fields` everywhere, so a misspelt
//! field fails with serde_yaml_ng's own line and column instead of being
//! silently ignored (a typo in `groups_any` must not widen a rule).

use std::fmt;
use std::marker::PhantomData;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, MapAccess, Visitor};

use super::Action;
use crate::identity::AuthMethod;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Document {
    pub version: u32,
    pub pulsar: PulsarDoc,
    #[serde(default)]
    pub identity: IdentityDoc,
    #[serde(default)]
    pub tenants: UniqueMap<TenantDoc>,
    #[serde(default)]
    pub rules: Vec<RuleDoc>,
    #[serde(default)]
    pub certificates: Vec<CertificateDoc>,
    #[serde(default)]
    pub provenance: Option<ProvenanceDoc>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PulsarDoc {
    pub cluster: String,
    #[serde(default)]
    pub admin_roles: Vec<String>,
    pub token_signing_secret: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct IdentityDoc {
    #[serde(default)]
    pub oidc: Vec<OidcDoc>,
    #[serde(default)]
    pub iam: Option<IamDoc>,
    #[serde(default)]
    pub kong: KongDoc,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct OidcDoc {
    pub issuer: String,
    pub audiences: Vec<String>,
    #[serde(default)]
    pub audience_claim: Option<String>,
    pub algorithms: Vec<String>,
    #[serde(default)]
    pub jwks_uri: Option<String>,
    #[serde(default)]
    pub claims: ClaimsDoc,
    #[serde(default)]
    pub leeway_seconds: Option<u64>,
    #[serde(default)]
    pub jwks_cache_seconds: Option<u64>,
    #[serde(default)]
    pub jwks_refetch_seconds: Option<u64>,
    #[serde(default)]
    pub token_types: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ClaimsDoc {
    #[serde(default)]
    pub subject: Option<String>,
    #[serde(default)]
    pub groups: Option<String>,
    #[serde(default)]
    pub service: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct IamDoc {
    pub sts_endpoint: String,
    pub server_id: String,
    pub max_age_seconds: u64,
    /// Required (no default): an IAM method without it would admit every
    /// AWS account in the world.
    pub allowed_accounts: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct KongDoc {
    #[serde(default)]
    pub trusted: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TenantDoc {
    pub role: String,
    pub token_secret: String,
    pub token_ttl: DurationDoc,
    #[serde(default)]
    pub rotate_before: Option<DurationDoc>,
    #[serde(default)]
    pub namespaces: UniqueMap<NamespaceDoc>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NamespaceDoc {
    #[serde(default)]
    pub deduplication: bool,
    /// Topic -> inline schema (object or boolean) or a path (string); which
    /// one is decided when the policy is built, so the message can say why.
    #[serde(default)]
    pub schemas: UniqueMap<serde_json::Value>,
    #[serde(default)]
    pub retention: Option<RetentionDoc>,
}

/// Both limits are required: Pulsar refuses a retention with one limit 0
/// and the other not, and a default for the missing one would be a guess.
#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping like { time: 7d, size: 10GiB }"
)]
pub(super) struct RetentionDoc {
    pub time: DurationDoc,
    pub size: SizeDoc,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RuleDoc {
    pub name: String,
    pub when: WhenDoc,
    pub allow: AllowDoc,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct WhenDoc {
    #[serde(default)]
    pub any: Option<bool>,
    #[serde(default)]
    pub issuer: Option<String>,
    #[serde(default)]
    pub subject: Option<String>,
    #[serde(default)]
    pub groups_any: Option<Vec<String>>,
    #[serde(default)]
    pub service: Option<String>,
    #[serde(default)]
    pub iam_arn: Option<String>,
    #[serde(default)]
    pub kong_consumer: Option<String>,
    #[serde(default)]
    pub auth_method: Option<AuthMethod>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AllowDoc {
    pub tenant: String,
    pub namespaces: Vec<String>,
    pub topics: Vec<String>,
    pub actions: Vec<Action>,
    #[serde(default)]
    pub subscriptions: Vec<String>,
    #[serde(default)]
    pub ce_sources: Vec<String>,
    #[serde(default)]
    pub ce_types: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CertificateDoc {
    pub name: String,
    pub role: String,
    #[serde(default)]
    pub sans: Vec<String>,
    pub validity: DurationDoc,
    pub renew_before: DurationDoc,
    pub secret: String,
    pub ca_secret: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ProvenanceDoc {
    pub issuer: String,
    pub signing_secret: String,
    #[serde(default)]
    pub rotate_every: Option<DurationDoc>,
    #[serde(default)]
    pub retain_retired: Option<DurationDoc>,
    #[serde(default)]
    pub publish_lead: Option<DurationDoc>,
}

/// A duration as written: `24h`, `"90s"` or a bare number of seconds. YAML
/// reads `token_ttl: 3600` as an integer, which should not be an error.
#[derive(Debug)]
pub(super) struct DurationDoc(pub String);

impl<'de> Deserialize<'de> for DurationDoc {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_any(ScalarText("a duration like 90s, 15m, 24h or 7d"))
            .map(DurationDoc)
    }
}

/// A size as written: `512MiB`, `10GiB` or a bare number of MiB.
#[derive(Debug)]
pub(super) struct SizeDoc(pub String);

impl<'de> Deserialize<'de> for SizeDoc {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_any(ScalarText("a size like 512MiB, 10GiB or 1TiB"))
            .map(SizeDoc)
    }
}

/// A string, or an integer read as its digits; its meaning is checked when
/// the policy is built, where the message can name the key.
struct ScalarText(&'static str);

impl Visitor<'_> for ScalarText {
    type Value = String;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        Ok(v.to_owned())
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<String, E> {
        Ok(v.to_string())
    }
}

/// A string-keyed mapping that keeps document order and refuses duplicate
/// keys. serde's maps keep the last of two equal keys, which would let a
/// second `payments:` block silently replace the first.
#[derive(Debug)]
pub(super) struct UniqueMap<V>(pub Vec<(String, V)>);

impl<V> Default for UniqueMap<V> {
    fn default() -> Self {
        Self(Vec::new())
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for UniqueMap<V> {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MapVisitor<V>(PhantomData<V>);
        impl<'de, V: Deserialize<'de>> Visitor<'de> for MapVisitor<V> {
            type Value = UniqueMap<V>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<UniqueMap<V>, A::Error> {
                let mut entries: Vec<(String, V)> = Vec::new();
                while let Some(key) = map.next_key_seed(NewKey(&entries))? {
                    let value = map.next_value()?;
                    entries.push((key, value));
                }
                Ok(UniqueMap(entries))
            }
        }
        deserializer.deserialize_map(MapVisitor(PhantomData))
    }
}

/// Deserializes one key and refuses it if already seen. The check runs inside
/// the key's own visitor so serde_yaml_ng reports the duplicate's position,
/// not the start of the mapping.
struct NewKey<'a, V>(&'a [(String, V)]);

impl<'de, V> DeserializeSeed<'de> for NewKey<'_, V> {
    type Value = String;
    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<String, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<V> Visitor<'_> for NewKey<'_, V> {
    type Value = String;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string key")
    }
    fn visit_str<E: de::Error>(self, key: &str) -> Result<String, E> {
        if self.0.iter().any(|(seen, _)| seen == key) {
            return Err(E::custom(format!(
                "duplicate key {key:?}: each name may appear only once here"
            )));
        }
        Ok(key.to_owned())
    }
}
