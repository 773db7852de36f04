//! Secrets: reading them from AWS Secrets Manager, caching them per warm
//! instance (and, for readers that can tell an old value is still good,
//! standing in with it while Secrets Manager cannot be reached), and keeping
//! their values out of `Debug` output and logs.

pub mod store;

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

/// Whether a value read earlier may stand in for the current one (see
/// [`SecretSource::get_or_stale`]).
pub type StaleCheck<'a> = dyn Fn(&SecretValue) -> bool + Send + Sync + 'a;

/// Where secrets come from: the seam between the functions and AWS.
#[async_trait]
pub trait SecretSource: Send + Sync {
    /// The current (`AWSCURRENT`) value of the secret called `name`.
    async fn get(&self, name: &str) -> Result<SecretValue, SecretsError>;

    /// As [`get`](Self::get), except when the source cannot be reached
    /// ([`SecretsError::Unavailable`]): then a value read earlier and kept
    /// past its freshness is returned instead, if `usable` accepts it. For
    /// values that carry their own expiry (tokens), whose reader can tell
    /// whether an old copy is still good; every other error still fails.
    /// A source that keeps nothing has nothing older to offer and just reads.
    async fn get_or_stale(
        &self,
        name: &str,
        _usable: &StaleCheck<'_>,
    ) -> Result<SecretValue, SecretsError> {
        self.get(name).await
    }

    /// Forgets anything cached about `name` (a no-op for uncached sources).
    async fn invalidate(&self, _name: &str) {}
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
            // Explicit, because moto (unlike AWS) keeps answering the old
            // version without a stage after AWSCURRENT moves.
            .version_stage("AWSCURRENT")
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

/// How long an unreachable Secrets Manager is taken at its word before it is
/// asked again, by callers that have no stale value to fall back on; as long
/// as the `Retry-After` of the 503 they answer.
pub const FAILED_READ_MEMORY: Duration = Duration::from_secs(1);

/// A per-instance cache in front of a [`SecretSource`]: a warm function reads
/// each secret at most once per `ttl`, never once per invocation.
///
/// Concurrent invocations (multi-concurrency) share it. Each secret has its
/// own slot: concurrent misses of one secret wait for one read, while a slow
/// read of one secret never holds up reads of another (a cold instance
/// serving many tenants at once fetches their tokens in parallel).
///
/// Past its `ttl` a value is read again. While Secrets Manager cannot be
/// reached, [`SecretSource::get_or_stale`] hands out the last value read
/// (when its reader accepts it) and asks again only one `ttl` later, so an
/// outage costs one failed read per secret per `ttl`, not one per request;
/// [`SecretSource::get`] never serves a stale value. A read that failed so
/// is remembered for [`FAILED_READ_MEMORY`]: callers with nothing to stand
/// in are refused at once meanwhile, instead of each waiting out the SDK's
/// retries against an endpoint that just refused.
pub struct CachedSecrets<S> {
    source: S,
    ttl: Duration,
    /// Held only to find or add a slot, never across an await.
    slots: std::sync::Mutex<HashMap<String, Arc<Slot>>>,
}

/// One secret's cache.
#[derive(Default)]
struct Slot {
    /// Held across a read from the source, so concurrent misses of this
    /// secret make one read.
    reading: Mutex<()>,
    /// Only ever held to look or to store, never across an await.
    entry: std::sync::Mutex<Entry>,
}

#[derive(Default)]
struct Entry {
    /// The last value read: kept after it goes stale, as the stand-in
    /// while the source is unreachable.
    value: Option<Cached>,
    /// Bumped by `invalidate`: a value read before (or by a read that was
    /// already under way) is no longer fresh.
    generation: u64,
    /// The last read, if it failed because the source could not be
    /// reached: when, and why (kept as text: the SDK's error is not `Clone`).
    failed: Option<(Instant, String)>,
}

struct Cached {
    value: SecretValue,
    read_at: Instant,
    generation: u64,
}

impl Slot {
    fn entry(&self) -> std::sync::MutexGuard<'_, Entry> {
        // Only ever updated by whole-field stores: a panic cannot leave the
        // entry half-written, so a poisoned lock is still sound to use.
        self.entry.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn fresh(&self, ttl: Duration) -> Option<SecretValue> {
        let entry = self.entry();
        entry
            .value
            .as_ref()
            .filter(|c| c.generation == entry.generation && c.read_at.elapsed() < ttl)
            .map(|c| c.value.clone())
    }
}

impl<S: SecretSource> CachedSecrets<S> {
    /// A cache whose entries live for `ttl`.
    pub fn new(source: S, ttl: Duration) -> Self {
        Self {
            source,
            ttl,
            slots: std::sync::Mutex::new(HashMap::new()),
        }
    }

    fn slot(&self, name: &str) -> Arc<Slot> {
        // Only ever updated by single map operations: a panic cannot leave
        // the map half-written, so a poisoned lock is still sound to use.
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        slots.entry(name.to_owned()).or_default().clone()
    }

    async fn read(
        &self,
        name: &str,
        usable: Option<&StaleCheck<'_>>,
    ) -> Result<SecretValue, SecretsError> {
        let slot = self.slot(name);
        if let Some(value) = slot.fresh(self.ttl) {
            return Ok(value);
        }
        // Misses are rare (once per TTL), so waiting here for another
        // caller's read of this secret costs little; other secrets have
        // slots of their own.
        let _reading = slot.reading.lock().await;
        if let Some(value) = slot.fresh(self.ttl) {
            return Ok(value);
        }
        let (stand_in, failed, generation) = {
            let entry = slot.entry();
            let stand_in = usable.and_then(|usable| {
                entry
                    .value
                    .as_ref()
                    .filter(|c| usable(&c.value))
                    .map(|c| (c.value.clone(), c.read_at))
            });
            (stand_in, entry.failed.clone(), entry.generation)
        };
        if let Some((at, why)) = failed {
            match &stand_in {
                Some((value, _)) if at.elapsed() < self.ttl => return Ok(value.clone()),
                None if at.elapsed() < FAILED_READ_MEMORY => {
                    return Err(SecretsError::Unavailable {
                        name: name.to_owned(),
                        source: format!("{why} (a moment ago; not asked again yet)").into(),
                    });
                }
                _ => {}
            }
        }
        match self.source.get(name).await {
            Ok(value) => {
                let mut entry = slot.entry();
                entry.value = Some(Cached {
                    value: value.clone(),
                    read_at: Instant::now(),
                    generation,
                });
                entry.failed = None;
                Ok(value)
            }
            Err(error @ SecretsError::Unavailable { .. }) => {
                let why = crate::telemetry::error_chain(&error);
                slot.entry().failed = Some((Instant::now(), why.clone()));
                let Some((value, read_at)) = stand_in else {
                    return Err(error);
                };
                tracing::warn!(
                    secret = name,
                    value = %value.fingerprint(),
                    age_seconds = read_at.elapsed().as_secs(),
                    retry_in_seconds = self.ttl.as_secs(),
                    error = %why,
                    "secret_served_stale"
                );
                Ok(value)
            }
            Err(error) => {
                slot.entry().failed = None;
                Err(error)
            }
        }
    }
}

#[async_trait]
impl<S: SecretSource> SecretSource for CachedSecrets<S> {
    async fn get(&self, name: &str) -> Result<SecretValue, SecretsError> {
        self.read(name, None).await
    }

    async fn get_or_stale(
        &self,
        name: &str,
        usable: &StaleCheck<'_>,
    ) -> Result<SecretValue, SecretsError> {
        self.read(name, Some(usable)).await
    }

    /// Makes the next read go to the source (used when the broker rejects a
    /// token that may have been rotated). The value stays only as a stand-in
    /// for [`SecretSource::get_or_stale`] while the source is unreachable; a
    /// read already under way does not make it fresh again.
    async fn invalidate(&self, name: &str) {
        let slot = self.slot(name);
        // The failure memory stays: invalidating does not make an
        // unreachable Secrets Manager reachable.
        slot.entry().generation += 1;
    }
}

/// A tenant's Pulsar token as stored in its secret: either
/// `{"token":"<jwt>","role":"<role>","expires_at":"<RFC 3339>"}` or the bare JWT.
#[derive(Debug, Clone)]
pub struct TenantToken {
    /// The JWT the broker authenticates.
    pub token: SecretValue,
    /// The Pulsar role it was minted for, when the secret says.
    pub role: Option<String>,
    /// When it expires, when the secret says.
    pub expires_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// A token secret whose content is neither form.
#[derive(Debug, thiserror::Error)]
#[error("secret {name} does not hold a Pulsar token (expected a JWT or {{\"token\":…}})")]
pub struct MalformedTokenSecret {
    pub name: String,
}

impl TenantToken {
    /// Parses the secret `name`'s value.
    pub fn parse(name: &str, value: &SecretValue) -> Result<Self, MalformedTokenSecret> {
        #[derive(serde::Deserialize)]
        struct Stored {
            token: String,
            role: Option<String>,
            expires_at: Option<chrono::DateTime<chrono::Utc>>,
        }
        let text = value.expose().trim();
        let malformed = || MalformedTokenSecret {
            name: name.to_owned(),
        };
        if text.starts_with('{') {
            let stored: Stored = serde_json::from_str(text).map_err(|_| malformed())?;
            if !looks_like_jwt(&stored.token) {
                return Err(malformed());
            }
            // The JWT's own `exp` is what the broker enforces; a stale or
            // hand-written `expires_at` must not make us trust it longer.
            let expires_at = match (stored.expires_at, jwt_expiry(&stored.token)) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            return Ok(Self {
                token: SecretValue::new(stored.token),
                role: stored.role,
                expires_at,
            });
        }
        if looks_like_jwt(text) {
            return Ok(Self {
                token: SecretValue::new(text),
                role: None,
                expires_at: jwt_expiry(text),
            });
        }
        Err(malformed())
    }

    /// True when the token expires within `margin` from now.
    pub fn expires_within(&self, margin: Duration) -> bool {
        self.expires_at.is_some_and(|at| {
            let margin = chrono::Duration::from_std(margin).unwrap_or(chrono::Duration::MAX);
            at <= chrono::Utc::now() + margin
        })
    }
}

/// The `exp` claim of a JWT, read without verifying it: only to decide when
/// to fetch the secret again, never to trust the token.
fn jwt_expiry(token: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::from_timestamp(unverified_claims(token)?.get("exp")?.as_i64()?, 0)
}

/// A JWT's payload, decoded but NOT verified: for bookkeeping about tokens we
/// minted or stored ourselves (when to refresh, which role), never for trust.
pub(crate) fn unverified_claims(token: &str) -> Option<serde_json::Value> {
    use base64::Engine;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

fn looks_like_jwt(text: &str) -> bool {
    let parts: Vec<&str> = text.split('.').collect();
    parts.len() == 3
        && parts[..2].iter().all(|p| !p.is_empty())
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'='))
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

    /// Answers `slow` only when told to; every other secret at once.
    struct Gated {
        slow: &'static str,
        gate: tokio::sync::Notify,
        reads: AtomicUsize,
    }

    #[async_trait]
    impl SecretSource for Gated {
        async fn get(&self, name: &str) -> Result<SecretValue, SecretsError> {
            self.reads.fetch_add(1, Ordering::SeqCst);
            if name == self.slow {
                self.gate.notified().await;
            }
            Ok(SecretValue::new(format!("{name}-value")))
        }
    }

    #[tokio::test]
    async fn a_slow_miss_holds_up_only_readers_of_the_same_secret() {
        let cache = Arc::new(CachedSecrets::new(
            Gated {
                slow: "slow",
                gate: tokio::sync::Notify::new(),
                reads: AtomicUsize::new(0),
            },
            Duration::from_secs(60),
        ));
        let waiting: Vec<_> = (0..3)
            .map(|_| {
                let cache = cache.clone();
                tokio::spawn(async move { cache.get("slow").await.unwrap() })
            })
            .collect();
        while cache.source.reads.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        // While "slow" is being read, another secret is read and served
        // (bounded: a cache-wide lock would make this wait forever).
        let fast = tokio::time::timeout(Duration::from_secs(5), cache.get("fast"))
            .await
            .expect("not held up by the slow read");
        assert_eq!(fast.unwrap().expose(), "fast-value");
        cache.source.gate.notify_one();
        for task in waiting {
            assert_eq!(task.await.unwrap().expose(), "slow-value");
        }
        // Three concurrent misses of "slow" were one read.
        assert_eq!(cache.source.reads.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn cache_expires_entries_after_the_ttl() {
        let cache = CachedSecrets::new(Counting(AtomicUsize::new(0)), Duration::ZERO);
        cache.get("a").await.unwrap();
        cache.get("a").await.unwrap();
        assert_eq!(cache.source.0.load(Ordering::SeqCst), 2);
    }

    type Failure = fn(&str) -> SecretsError;

    /// Answers `value-{n}` for the n-th read, or fails as an unreachable
    /// Secrets Manager (or with another error) when told to.
    #[derive(Default)]
    struct Flaky {
        reads: AtomicUsize,
        failing: std::sync::Mutex<Option<Failure>>,
    }

    impl Flaky {
        fn fail_with(&self, error: Option<Failure>) {
            *self.failing.lock().unwrap() = error;
        }
    }

    fn unreachable(name: &str) -> SecretsError {
        SecretsError::Unavailable {
            name: name.into(),
            source: "connection refused".into(),
        }
    }

    fn denied(name: &str) -> SecretsError {
        SecretsError::AccessDenied { name: name.into() }
    }

    #[async_trait]
    impl SecretSource for Flaky {
        async fn get(&self, name: &str) -> Result<SecretValue, SecretsError> {
            let n = self.reads.fetch_add(1, Ordering::SeqCst);
            match *self.failing.lock().unwrap() {
                Some(error) => Err(error(name)),
                None => Ok(SecretValue::new(format!("value-{n}"))),
            }
        }
    }

    const ANY: &StaleCheck<'static> = &|_| true;
    const NONE: &StaleCheck<'static> = &|_| false;

    #[tokio::test]
    async fn a_stale_value_stands_in_only_when_unreachable_and_only_if_its_reader_accepts_it() {
        let ttl = Duration::from_millis(50);
        let cache = CachedSecrets::new(Flaky::default(), ttl);
        assert_eq!(cache.get("s").await.unwrap().expose(), "value-0");
        cache.source.fail_with(Some(unreachable));
        tokio::time::sleep(ttl * 2).await;

        // The strict read never serves it.
        assert!(matches!(
            cache.get("s").await,
            Err(SecretsError::Unavailable { .. })
        ));
        let reads = || cache.source.reads.load(Ordering::SeqCst);
        assert_eq!(reads(), 2);
        // A reader that cannot use it is refused at once, without a read:
        // the source just failed.
        assert!(cache.get_or_stale("s", NONE).await.is_err());
        assert_eq!(reads(), 2);
        // One that can gets it, and the source is not asked again for a TTL
        // after the failure.
        assert_eq!(
            cache.get_or_stale("s", ANY).await.unwrap().expose(),
            "value-0"
        );
        assert_eq!(reads(), 2);
        tokio::time::sleep(ttl * 2).await;
        assert_eq!(
            cache.get_or_stale("s", ANY).await.unwrap().expose(),
            "value-0"
        );
        assert_eq!(reads(), 3);

        // Back: the next read past the backoff is fresh again.
        cache.source.fail_with(None);
        tokio::time::sleep(ttl * 2).await;
        let fresh = cache.get_or_stale("s", ANY).await.unwrap();
        assert_eq!(fresh.expose(), "value-3");
        assert_eq!(cache.get("s").await.unwrap(), fresh);
    }

    #[tokio::test]
    async fn a_deliberate_refusal_is_never_papered_over() {
        let cache = CachedSecrets::new(Flaky::default(), Duration::ZERO);
        cache.get("s").await.unwrap();
        cache.source.fail_with(Some(denied));
        assert!(matches!(
            cache.get_or_stale("s", ANY).await,
            Err(SecretsError::AccessDenied { .. })
        ));
    }

    #[tokio::test]
    async fn invalidate_forces_a_read_but_keeps_the_stand_in() {
        let cache = CachedSecrets::new(Flaky::default(), Duration::from_secs(60));
        cache.get("s").await.unwrap();
        cache.invalidate("s").await;
        assert_eq!(cache.get("s").await.unwrap().expose(), "value-1");
        cache.source.fail_with(Some(unreachable));
        cache.invalidate("s").await;
        assert!(cache.get("s").await.is_err());
        assert_eq!(
            cache.get_or_stale("s", ANY).await.unwrap().expose(),
            "value-1"
        );
    }

    #[test]
    fn tenant_tokens_parse_in_both_forms() {
        let json = SecretValue::new(
            r#"{"token":"aaa.bbb.ccc","role":"payments-gw","expires_at":"2030-01-01T00:00:00Z"}"#,
        );
        let t = TenantToken::parse("s", &json).unwrap();
        assert_eq!(t.token.expose(), "aaa.bbb.ccc");
        assert_eq!(t.role.as_deref(), Some("payments-gw"));
        assert!(t.expires_at.is_some());
        let bare = TenantToken::parse("s", &SecretValue::new(" aaa.bbb.ccc\n")).unwrap();
        assert_eq!(bare.token.expose(), "aaa.bbb.ccc");
        assert!(bare.role.is_none());
    }

    #[test]
    fn expiry_comes_from_the_secret_or_the_jwt() {
        use base64::Engine;
        let b64 = |v: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
        let soon = chrono::Utc::now().timestamp() + 5;
        let jwt = format!(
            "{}.{}.sig",
            b64(r#"{"alg":"HS256"}"#),
            b64(&format!(r#"{{"sub":"r","exp":{soon}}}"#))
        );
        let t = TenantToken::parse("s", &SecretValue::new(jwt.clone())).unwrap();
        assert_eq!(t.expires_at.unwrap().timestamp(), soon);
        assert!(t.expires_within(Duration::from_secs(10)));
        assert!(!t.expires_within(Duration::ZERO));
        let no_exp = format!(
            "{}.{}.sig",
            b64(r#"{"alg":"HS256"}"#),
            b64(r#"{"sub":"r"}"#)
        );
        let t = TenantToken::parse("s", &SecretValue::new(no_exp)).unwrap();
        assert!(t.expires_at.is_none() && !t.expires_within(Duration::from_secs(3600)));
    }

    #[test]
    fn malformed_token_secrets_are_refused_without_echoing_them() {
        for bad in [
            "",
            "hunter2",
            r#"{"role":"r"}"#,
            r#"{"token":"not a jwt"}"#,
            "a.b",
            "{",
        ] {
            let err = TenantToken::parse("kp/t", &SecretValue::new(bad)).unwrap_err();
            let shown = err.to_string();
            assert!(shown.starts_with("secret kp/t"), "{shown}");
            assert!(
                !shown.contains("hunter2") && !shown.contains("not a jwt"),
                "{shown}"
            );
        }
    }

    #[test]
    fn debug_never_shows_the_value() {
        let v = SecretValue::new("super-secret-token");
        let shown = format!("{v:?}");
        assert!(!shown.contains("super-secret"), "{shown}");
        assert!(shown.contains(&v.fingerprint()));
    }
}
