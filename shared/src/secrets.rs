//! Secrets: reading them from AWS Secrets Manager, caching them per warm
//! instance, and keeping their values out of `Debug` output and logs.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_sdk_secretsmanager::error::{DisplayErrorContext, SdkError};
use aws_sdk_secretsmanager::operation::get_secret_value::GetSecretValueError;
use tokio::sync::Mutex;

use crate::telemetry::fingerprint;

/// A secret's value. `Debug` and `Display` show only a fingerprint.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(Arc<str>);

impl SecretValue {
    /// Wraps a value read from a secret store.
    pub fn new(value: impl Into<Arc<str>>) -> Self {
        Self(value.into())
    }

    /// The value itself: call only where it is handed to its consumer.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// A short fingerprint that is safe to log.
    pub fn fingerprint(&self) -> String {
        fingerprint(self.0.as_bytes())
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretValue(sha256:{}…)", self.fingerprint())
    }
}

/// Why a secret could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error("secret {name} does not exist")]
    NotFound { name: String },
    #[error("access to secret {name} was denied")]
    AccessDenied { name: String },
    #[error("secret {name} has no string value")]
    NotAString { name: String },
    #[error("Secrets Manager could not be reached for secret {name}")]
    Unavailable {
        name: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// Where secrets come from: the seam between the functions and AWS.
#[async_trait]
pub trait SecretSource: Send + Sync {
    /// The current (`AWSCURRENT`) value of the secret called `name`.
    async fn get(&self, name: &str) -> Result<SecretValue, SecretsError>;
}

/// AWS Secrets Manager, through the SDK (honours `AWS_ENDPOINT_URL`).
#[derive(Clone)]
pub struct SecretsManager {
    client: aws_sdk_secretsmanager::Client,
}

impl SecretsManager {
    /// Wraps an SDK client built once at cold start.
    pub fn new(client: aws_sdk_secretsmanager::Client) -> Self {
        Self { client }
    }

    /// Builds the client from shared AWS configuration.
    pub fn from_conf(sdk: &aws_config::SdkConfig) -> Self {
        Self::new(aws_sdk_secretsmanager::Client::new(sdk))
    }
}

#[async_trait]
impl SecretSource for SecretsManager {
    async fn get(&self, name: &str) -> Result<SecretValue, SecretsError> {
        let out = self
            .client
            .get_secret_value()
            .secret_id(name)
            .send()
            .await
            .map_err(|err| classify(name, err))?;
        out.secret_string
            .map(SecretValue::new)
            .ok_or_else(|| SecretsError::NotAString { name: name.into() })
    }
}

fn classify(name: &str, err: SdkError<GetSecretValueError>) -> SecretsError {
    let name = name.to_owned();
    match err.as_service_error() {
        Some(GetSecretValueError::ResourceNotFoundException(_)) => SecretsError::NotFound { name },
        Some(e) if e.meta().code() == Some("AccessDeniedException") => {
            SecretsError::AccessDenied { name }
        }
        _ => SecretsError::Unavailable {
            name,
            source: DisplayErrorContext(err).to_string().into(),
        },
    }
}

/// A per-instance cache in front of a [`SecretSource`]: a warm function reads
/// each secret at most once per `ttl`, never once per invocation.
pub struct CachedSecrets<S> {
    source: S,
    ttl: Duration,
    entries: Mutex<HashMap<String, (Instant, SecretValue)>>,
}

impl<S: SecretSource> CachedSecrets<S> {
    /// A cache whose entries live for `ttl`.
    pub fn new(source: S, ttl: Duration) -> Self {
        Self {
            source,
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// Drops the cached value, so the next read goes to the source (used when
    /// the broker rejects a token that may have been rotated).
    pub async fn invalidate(&self, name: &str) {
        self.entries.lock().await.remove(name);
    }
}

#[async_trait]
impl<S: SecretSource> SecretSource for CachedSecrets<S> {
    async fn get(&self, name: &str) -> Result<SecretValue, SecretsError> {
        // Holding the lock across the fetch coalesces concurrent misses into
        // one Secrets Manager call; misses are rare (once per TTL).
        let mut entries = self.entries.lock().await;
        if let Some((at, value)) = entries.get(name)
            && at.elapsed() < self.ttl
        {
            return Ok(value.clone());
        }
        let value = self.source.get(name).await?;
        entries.insert(name.to_owned(), (Instant::now(), value.clone()));
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct Counting(AtomicUsize);

    #[async_trait]
    impl SecretSource for Counting {
        async fn get(&self, name: &str) -> Result<SecretValue, SecretsError> {
            let n = self.0.fetch_add(1, Ordering::SeqCst);
            Ok(SecretValue::new(format!("{name}-v{n}")))
        }
    }

    #[tokio::test]
    async fn cache_serves_repeat_reads_and_refetches_after_invalidate() {
        let cache = CachedSecrets::new(Counting(AtomicUsize::new(0)), Duration::from_secs(60));
        assert_eq!(cache.get("a").await.unwrap().expose(), "a-v0");
        assert_eq!(cache.get("a").await.unwrap().expose(), "a-v0");
        assert_eq!(cache.source.0.load(Ordering::SeqCst), 1);
        cache.invalidate("a").await;
        assert_eq!(cache.get("a").await.unwrap().expose(), "a-v1");
    }

    #[tokio::test]
    async fn cache_expires_entries_after_the_ttl() {
        let cache = CachedSecrets::new(Counting(AtomicUsize::new(0)), Duration::ZERO);
        cache.get("a").await.unwrap();
        cache.get("a").await.unwrap();
        assert_eq!(cache.source.0.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn debug_never_shows_the_value() {
        let v = SecretValue::new("super-secret-token");
        let shown = format!("{v:?}");
        assert!(!shown.contains("super-secret"), "{shown}");
        assert!(shown.contains(&v.fingerprint()));
    }
}
