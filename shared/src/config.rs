//! The functions' configuration: environment variables read once at cold
//! start into one typed [`Config`]. A missing or malformed value fails
//! start-up with an error that names the variable.

use std::path::PathBuf;
use std::time::Duration;

use url::Url;

/// Where the policy comes from (`KP_POLICY_FILE` wins over `KP_POLICY`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicySource {
    /// `KP_POLICY_FILE`: a path to a YAML or JSON file.
    File(PathBuf),
    /// `KP_POLICY`: the policy document itself.
    Inline(String),
}

/// Everything a function reads from its environment.
#[derive(Debug, Clone)]
pub struct Config {
    /// `KP_POLICY_FILE` / `KP_POLICY`.
    pub policy: PolicySource,
    /// `PULSAR_SERVICE_URL`: `pulsar://` or `pulsar+ssl://`.
    pub pulsar_service_url: Url,
    /// `PULSAR_ADMIN_URL`: the broker's admin REST API (rotate only).
    pub pulsar_admin_url: Option<Url>,
    /// `KP_ADMIN_TOKEN_SECRET`: the secret holding a super-user token (rotate only).
    pub admin_token_secret: Option<String>,
    /// `KP_SECRET_TTL`: how long a secret read stays cached (default 5 min).
    pub secret_ttl: Duration,
    /// `KP_MAX_BODY_BYTES`: largest accepted request body (default 1 MiB).
    pub max_body_bytes: usize,
    /// `KP_MAX_BATCH`: most events in one NDJSON batch (default 500).
    pub max_batch: usize,
    /// `KP_MAX_PRODUCERS`: most Pulsar producers one instance keeps open
    /// (default [`DEFAULT_MAX_PRODUCERS`]).
    pub max_producers: usize,
    /// The caller-supplied message metadata bounds (`KP_MAX_PROPERTIES`, …).
    pub metadata: MetadataLimits,
    /// The read side's settings (consume only).
    pub consume: ConsumeSettings,
}

/// What only the consume function reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumeSettings {
    /// `KP_PROVENANCE_JWKS_URL`: the gateway's public key set (publish's
    /// `…/.well-known/jwks.json` through Kong); required when the policy
    /// has `provenance:`. Consume verifies with public keys only.
    pub provenance_jwks_url: Option<String>,
    /// `KP_VISIBILITY_TIMEOUT`: how long a message read from a subscription
    /// stays hidden from the subscription's other consumers unless
    /// acknowledged (default 30 s).
    pub visibility_timeout: Duration,
    /// `KP_MAX_RESPONSE_BYTES`: the largest response body, as it travels
    /// (JSON-escaped in Lambda's answer), default 4 MiB, below Lambda's
    /// 6 MB response limit.
    pub max_response_bytes: usize,
    /// `KP_MAX_CONSUMERS`: most subscription consumers one instance keeps
    /// open (default 64).
    pub max_consumers: usize,
}

impl Default for ConsumeSettings {
    fn default() -> Self {
        Self {
            provenance_jwks_url: None,
            visibility_timeout: Duration::from_secs(30),
            max_response_bytes: 4 << 20,
            max_consumers: 64,
        }
    }
}

/// Bounds on what a caller may attach to a message besides its payload:
/// `X-Event-Property-*` headers, `X-Event-Key` and `Idempotency-Key`. Every
/// message carries them into the broker (and to every consumer), so without a
/// bound a single request could attach thousands of properties or a key
/// hundreds of kilobytes long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetadataLimits {
    /// `KP_MAX_PROPERTIES`: most `X-Event-Property-*` headers (default 32).
    pub max_properties: usize,
    /// `KP_MAX_PROPERTY_NAME_BYTES`: longest property name, after the
    /// `X-Event-Property-` prefix (default 256).
    pub max_property_name_bytes: usize,
    /// `KP_MAX_PROPERTY_VALUE_BYTES`: longest property value (default 4 KiB).
    pub max_property_value_bytes: usize,
    /// `KP_MAX_METADATA_BYTES`: property names and values, event key and
    /// idempotency key together (default 16 KiB).
    pub max_metadata_bytes: usize,
    /// `KP_MAX_EVENT_KEY_BYTES`: longest `X-Event-Key` (default 1 KiB).
    pub max_event_key_bytes: usize,
}

/// The longest `Idempotency-Key` (printable ASCII): a protocol constant
/// rather than a knob, as in the IETF Idempotency-Key draft's examples.
pub const MAX_IDEMPOTENCY_KEY_BYTES: usize = 255;

impl Default for MetadataLimits {
    fn default() -> Self {
        Self {
            max_properties: 32,
            max_property_name_bytes: 256,
            max_property_value_bytes: 4 * 1024,
            max_metadata_bytes: 16 * 1024,
            max_event_key_bytes: 1024,
        }
    }
}

/// Open producers per publish instance unless `KP_MAX_PRODUCERS` says
/// otherwise: far more topics than one instance serves in practice, far fewer
/// than would strain its memory (each producer holds buffers and a broker
/// slot).
pub const DEFAULT_MAX_PRODUCERS: usize = 100;

/// A configuration variable that is missing or malformed.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0} is not set")]
    Missing(&'static str),
    #[error("{name} is invalid: {reason}")]
    Invalid { name: &'static str, reason: String },
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads variables through `lookup`, so tests need not touch the process
    /// environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &'static str| lookup(name).filter(|v| !v.trim().is_empty());

        let policy = match (get("KP_POLICY_FILE"), get("KP_POLICY")) {
            (Some(path), _) => PolicySource::File(PathBuf::from(path)),
            (None, Some(doc)) => PolicySource::Inline(doc),
            (None, None) => return Err(ConfigError::Missing("KP_POLICY_FILE or KP_POLICY")),
        };
        let pulsar_service_url = get("PULSAR_SERVICE_URL")
            .ok_or(ConfigError::Missing("PULSAR_SERVICE_URL"))
            .and_then(|v| parse_url("PULSAR_SERVICE_URL", &v, &["pulsar", "pulsar+ssl"]))?;
        let pulsar_admin_url = get("PULSAR_ADMIN_URL")
            .map(|v| parse_url("PULSAR_ADMIN_URL", &v, &["http", "https"]))
            .transpose()?;
        let secret_ttl = get("KP_SECRET_TTL")
            .map(|v| {
                parse_duration(&v).map_err(|reason| ConfigError::Invalid {
                    name: "KP_SECRET_TTL",
                    reason,
                })
            })
            .transpose()?
            .unwrap_or(Duration::from_secs(300));
        let max_body_bytes = parse_count(get("KP_MAX_BODY_BYTES"), "KP_MAX_BODY_BYTES", 1 << 20)?;
        let max_batch = parse_count(get("KP_MAX_BATCH"), "KP_MAX_BATCH", 500)?;
        let max_producers = parse_count(
            get("KP_MAX_PRODUCERS"),
            "KP_MAX_PRODUCERS",
            DEFAULT_MAX_PRODUCERS,
        )?;
        let d = MetadataLimits::default();
        let metadata = MetadataLimits {
            max_properties: parse_count(
                get("KP_MAX_PROPERTIES"),
                "KP_MAX_PROPERTIES",
                d.max_properties,
            )?,
            max_property_name_bytes: parse_count(
                get("KP_MAX_PROPERTY_NAME_BYTES"),
                "KP_MAX_PROPERTY_NAME_BYTES",
                d.max_property_name_bytes,
            )?,
            max_property_value_bytes: parse_count(
                get("KP_MAX_PROPERTY_VALUE_BYTES"),
                "KP_MAX_PROPERTY_VALUE_BYTES",
                d.max_property_value_bytes,
            )?,
            max_metadata_bytes: parse_count(
                get("KP_MAX_METADATA_BYTES"),
                "KP_MAX_METADATA_BYTES",
                d.max_metadata_bytes,
            )?,
            max_event_key_bytes: parse_count(
                get("KP_MAX_EVENT_KEY_BYTES"),
                "KP_MAX_EVENT_KEY_BYTES",
                d.max_event_key_bytes,
            )?,
        };

        let c = ConsumeSettings::default();
        let consume = ConsumeSettings {
            provenance_jwks_url: get("KP_PROVENANCE_JWKS_URL"),
            visibility_timeout: get("KP_VISIBILITY_TIMEOUT")
                .map(|v| {
                    parse_duration(&v)
                        .ok()
                        .filter(|d| !d.is_zero())
                        .ok_or_else(|| ConfigError::Invalid {
                            name: "KP_VISIBILITY_TIMEOUT",
                            reason: format!(
                                "expected a positive duration like 30s or 5m, got {v:?}"
                            ),
                        })
                })
                .transpose()?
                .unwrap_or(c.visibility_timeout),
            max_response_bytes: parse_count(
                get("KP_MAX_RESPONSE_BYTES"),
                "KP_MAX_RESPONSE_BYTES",
                c.max_response_bytes,
            )?,
            max_consumers: parse_count(
                get("KP_MAX_CONSUMERS"),
                "KP_MAX_CONSUMERS",
                c.max_consumers,
            )?,
        };

        Ok(Self {
            consume,
            policy,
            pulsar_service_url,
            pulsar_admin_url,
            admin_token_secret: get("KP_ADMIN_TOKEN_SECRET"),
            secret_ttl,
            max_body_bytes,
            max_batch,
            max_producers,
            metadata,
        })
    }
}

impl Config {
    /// The configured URLs that travel in plaintext (`pulsar://`, `http://`)
    /// to a host other than loopback, each as `(variable, url)`: tokens and
    /// events would cross the network readable. Plaintext stays allowed (a
    /// broker in the same private network, a local stack), but is warned
    /// about at cold start ([`Config::warn_if_plaintext`]).
    pub fn plaintext_urls(&self) -> Vec<(&'static str, &Url)> {
        let mut found = Vec::new();
        if is_plaintext_remote(&self.pulsar_service_url) {
            found.push(("PULSAR_SERVICE_URL", &self.pulsar_service_url));
        }
        if let Some(admin) = self
            .pulsar_admin_url
            .as_ref()
            .filter(|u| is_plaintext_remote(u))
        {
            found.push(("PULSAR_ADMIN_URL", admin));
        }
        found
    }

    /// Logs one warning per [`Config::plaintext_urls`] entry (the URL has no
    /// credentials in it: the functions' URLs carry none).
    pub fn warn_if_plaintext(&self) {
        for (name, url) in self.plaintext_urls() {
            tracing::warn!(
                event = "plaintext_pulsar",
                variable = name,
                host = url.host_str().unwrap_or_default(),
                scheme = url.scheme(),
                "{name} is not encrypted and its host is not loopback: tokens and events cross \
                 the network in plaintext; use pulsar+ssl:// and https://"
            );
        }
    }
}

/// `pulsar://` or `http://` to a host that is not loopback.
fn is_plaintext_remote(url: &Url) -> bool {
    let plaintext = matches!(url.scheme(), "pulsar" | "http");
    let loopback = match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        // Non-special schemes (pulsar://) leave even an IP address a "domain".
        Some(url::Host::Domain(name)) => match name.parse::<std::net::IpAddr>() {
            Ok(ip) => ip.is_loopback(),
            Err(_) => {
                let name = name.to_ascii_lowercase();
                name == "localhost" || name.ends_with(".localhost")
            }
        },
        None => false,
    };
    plaintext && !loopback
}

fn parse_url(name: &'static str, value: &str, schemes: &[&str]) -> Result<Url, ConfigError> {
    let url = Url::parse(value.trim()).map_err(|e| ConfigError::Invalid {
        name,
        reason: e.to_string(),
    })?;
    if !schemes.contains(&url.scheme()) {
        return Err(ConfigError::Invalid {
            name,
            reason: format!("scheme must be one of {}", schemes.join(", ")),
        });
    }
    Ok(url)
}

fn parse_count(
    value: Option<String>,
    name: &'static str,
    default: usize,
) -> Result<usize, ConfigError> {
    match value {
        None => Ok(default),
        Some(v) => match v.trim().parse::<usize>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(ConfigError::Invalid {
                name,
                reason: format!("expected a positive whole number, got {v:?}"),
            }),
        },
    }
}

/// Parses a duration written as a whole number with an optional unit:
/// `90` or `90s`, `15m`, `24h`, `7d`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("expected a duration like 90s, 15m, 24h or 7d, got {text:?}"))?;
    let seconds_per_unit = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => {
            return Err(format!(
                "unknown duration unit {unit:?} in {text:?} (use s, m, h or d)"
            ));
        }
    };
    n.checked_mul(seconds_per_unit)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("duration {text:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|name| vars.get(name).cloned())
    }

    const BASE: [(&str, &str); 2] = [
        ("KP_POLICY_FILE", "/var/task/policy.yaml"),
        ("PULSAR_SERVICE_URL", "pulsar://127.0.0.1:6650"),
    ];

    #[test]
    fn defaults_apply_when_only_the_required_variables_are_set() {
        let c = config(&BASE).unwrap();
        assert_eq!(c.policy, PolicySource::File("/var/task/policy.yaml".into()));
        assert_eq!(c.secret_ttl, Duration::from_secs(300));
        assert_eq!(c.max_body_bytes, 1 << 20);
        assert_eq!(c.max_batch, 500);
        assert_eq!(c.max_producers, DEFAULT_MAX_PRODUCERS);
        assert_eq!(c.metadata, MetadataLimits::default());
        assert!(c.pulsar_admin_url.is_none());
    }

    #[test]
    fn missing_variables_are_named() {
        let err = config(&[("PULSAR_SERVICE_URL", "pulsar://h:6650")]).unwrap_err();
        assert_eq!(err.to_string(), "KP_POLICY_FILE or KP_POLICY is not set");
        let err = config(&[("KP_POLICY", "version: 1")]).unwrap_err();
        assert_eq!(err.to_string(), "PULSAR_SERVICE_URL is not set");
    }

    #[test]
    fn malformed_values_are_named() {
        for (name, value) in [
            ("PULSAR_SERVICE_URL", "http://h:8080"),
            ("PULSAR_SERVICE_URL", "not a url"),
            ("PULSAR_ADMIN_URL", "pulsar://h:6650"),
            ("KP_SECRET_TTL", "5 fortnights"),
            ("KP_MAX_BODY_BYTES", "-1"),
            ("KP_MAX_BATCH", "0"),
            ("KP_MAX_PRODUCERS", "0"),
            ("KP_MAX_PRODUCERS", "many"),
            ("KP_MAX_PROPERTIES", "0"),
            ("KP_MAX_PROPERTY_NAME_BYTES", "x"),
            ("KP_MAX_PROPERTY_VALUE_BYTES", "-4"),
            ("KP_MAX_METADATA_BYTES", "1.5"),
            ("KP_MAX_EVENT_KEY_BYTES", "0"),
        ] {
            let mut vars = BASE.to_vec();
            vars.retain(|(k, _)| *k != name);
            vars.push((name, value));
            let err = config(&vars).unwrap_err();
            assert!(err.to_string().starts_with(name), "{name}={value}: {err}");
        }
    }

    #[test]
    fn plaintext_urls_to_remote_hosts_are_flagged_and_loopback_is_not() {
        let with = |service: &str, admin: &str| {
            let mut vars = BASE.to_vec();
            vars.retain(|(k, _)| *k != "PULSAR_SERVICE_URL");
            vars.push(("PULSAR_SERVICE_URL", service));
            vars.push(("PULSAR_ADMIN_URL", admin));
            let c = config(&vars).unwrap();
            c.plaintext_urls()
                .into_iter()
                .map(|(name, _)| name)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            with("pulsar://broker.internal:6650", "http://10.0.0.5:8080"),
            ["PULSAR_SERVICE_URL", "PULSAR_ADMIN_URL"]
        );
        assert!(with("pulsar+ssl://broker:6651", "https://broker:8443").is_empty());
        for local in [
            ("pulsar://127.0.0.1:6650", "http://127.0.0.1:8080"),
            ("pulsar://localhost:6650", "http://[::1]:8080"),
            ("pulsar://LOCALHOST:6650", "http://127.8.9.10:8080"),
        ] {
            assert!(with(local.0, local.1).is_empty(), "{local:?}");
        }
        // A host that only looks local is remote.
        assert_eq!(
            with("pulsar://localhost.evil.example:6650", "https://b"),
            ["PULSAR_SERVICE_URL"]
        );
        assert_eq!(
            with("pulsar+ssl://b:6651", "http://127.0.0.1.nip.io:8080"),
            ["PULSAR_ADMIN_URL"]
        );
    }

    #[test]
    fn metadata_limits_are_read_from_their_variables() {
        type Field = fn(&MetadataLimits) -> usize;
        let cases: [(&str, Field); 5] = [
            ("KP_MAX_PROPERTIES", |m| m.max_properties),
            ("KP_MAX_PROPERTY_NAME_BYTES", |m| m.max_property_name_bytes),
            ("KP_MAX_PROPERTY_VALUE_BYTES", |m| {
                m.max_property_value_bytes
            }),
            ("KP_MAX_METADATA_BYTES", |m| m.max_metadata_bytes),
            ("KP_MAX_EVENT_KEY_BYTES", |m| m.max_event_key_bytes),
        ];
        for (name, field) in cases {
            let mut vars = BASE.to_vec();
            vars.push((name, "7"));
            let c = config(&vars).unwrap();
            assert_eq!(field(&c.metadata), 7, "{name}");
        }
    }

    #[test]
    fn durations_accept_units() {
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("15m").unwrap(), Duration::from_secs(900));
        assert_eq!(parse_duration("24h").unwrap(), Duration::from_secs(86_400));
        assert_eq!(parse_duration("7d").unwrap(), Duration::from_secs(604_800));
        assert!(parse_duration("h").is_err());
        assert!(parse_duration("99999999999999999999d").is_err());
    }
}
