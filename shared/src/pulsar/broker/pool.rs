//! Warm Pulsar clients for the publish path: one client per tenant role
//! (authenticating with that role's token from Secrets Manager), one producer
//! per topic, both kept across invocations of a warm Lambda instance.
//!
//! Producers are bounded per instance (`KP_MAX_PRODUCERS`, default
//! [`DEFAULT_MAX_PRODUCERS`]): a caller allowed `topics: ["*"]` could otherwise open
//! one per name it invents until the instance runs out of memory (and the
//! broker out of producer slots). Past the bound the least recently used
//! producer is dropped, which closes it on the broker; a later publish to its
//! topic opens a new one.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::FutureExt;
use tokio::sync::Mutex;
use tokio::time::{Instant, timeout_at};
use url::Url;

use super::ledger::{Ledger, SendFailure};
use super::{
    Broker, BrokerError, MessageId, OutgoingMessage, Producer, ReceiptError, Timeouts, TokenError,
    TokenSource,
};
use crate::config::DEFAULT_MAX_PRODUCERS;
use crate::pulsar::topic::TopicName;
use crate::secrets::{SecretSource, SecretValue, TenantToken};

/// Which role to act as, and where its token lives (from the policy).
#[derive(Debug, Clone, Copy)]
pub struct TenantCredentials<'a> {
    pub role: &'a str,
    pub token_secret: &'a str,
}

/// Why a send (or one message of it) did not complete. Cheap to clone: one
/// failure can be the reason for several messages of a batch.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SendError {
    /// The tenant's token could not be obtained.
    #[error(transparent)]
    Token(Arc<TokenError>),
    /// The broker refused or failed.
    #[error(transparent)]
    Broker(BrokerError),
}

impl From<TokenError> for SendError {
    fn from(err: TokenError) -> Self {
        Self::Token(Arc::new(err))
    }
}

impl SendError {
    /// The broker rejected the credentials: a fresh token might fix it.
    pub fn is_credentials(&self) -> bool {
        matches!(self, Self::Broker(e) if e.is_credentials())
    }

    /// The budget ran out.
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::Broker(BrokerError::Timeout))
    }
}

/// How close to its expiry a cached token is looked up again; and, while
/// Secrets Manager cannot be reached, how close to its expiry a warm client
/// stops using its token (the broker would drop the connection at `exp`).
pub const EXPIRY_MARGIN: Duration = Duration::from_secs(30);

/// Reads a role's token through the (cached) secret source on every connect.
struct SecretToken {
    secrets: Arc<dyn SecretSource>,
    secret: String,
    role: String,
    /// The latest token given out (to a connect, a broker challenge or a
    /// [`Self::check`]): the one the role's connections hold, or will be
    /// handed at their next challenge.
    latest: std::sync::Mutex<Option<TenantToken>>,
}

impl SecretToken {
    /// The token to present now: the cached one, or one read again when it
    /// is within [`EXPIRY_MARGIN`] of its expiry. While Secrets Manager
    /// cannot be reached, the last token read stands in past the cache's TTL
    /// until it too is within the margin; then this fails.
    async fn current(&self) -> Result<TenantToken, TokenError> {
        let mut token = self.read().await?;
        // A cached token about to expire was probably rotated already:
        // look again rather than hand the broker a token it will drop.
        if token.expires_within(EXPIRY_MARGIN) {
            self.secrets.invalidate(&self.secret).await;
            token = self.read().await?;
        }
        *self.latest() = Some(token.clone());
        Ok(token)
    }

    /// Before each use of a warm client, whose connections keep the token
    /// they authenticated with until the broker challenges it after its
    /// `exp` (and only this source can answer that challenge): nothing to do
    /// (no Secrets Manager call) while the latest token given out is not
    /// within [`EXPIRY_MARGIN`] of its expiry; then the token is looked up
    /// again, and when no token that outlives the margin can be had
    /// (Secrets Manager unreachable), this fails, so the request is refused
    /// as `credentials_unavailable` rather than sent on a connection the
    /// broker is about to drop.
    async fn check(&self) -> Result<(), TokenError> {
        let near_expiry = self
            .latest()
            .as_ref()
            .is_some_and(|token| token.expires_within(EXPIRY_MARGIN));
        if near_expiry {
            self.current().await?;
        }
        Ok(())
    }

    fn latest(&self) -> std::sync::MutexGuard<'_, Option<TenantToken>> {
        // Only ever holds a whole value: a panic elsewhere cannot leave it
        // half-written, so a poisoned lock is still sound to use.
        self.latest.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn read(&self) -> Result<TenantToken, TokenError> {
        // The token is as good from an old read as from a new one (the
        // broker checks its signature and `exp`, nothing else), so an
        // unreachable Secrets Manager need not stop a tenant until then.
        let usable = |value: &SecretValue| {
            self.parse(value)
                .is_ok_and(|token| !token.expires_within(EXPIRY_MARGIN))
        };
        let value = self.secrets.get_or_stale(&self.secret, &usable).await?;
        self.parse(&value)
    }

    fn parse(&self, value: &SecretValue) -> Result<TenantToken, TokenError> {
        let token = TenantToken::parse(&self.secret, value)?;
        match &token.role {
            Some(found) if *found != self.role => Err(TokenError::RoleMismatch {
                secret: self.secret.clone(),
                expected: self.role.clone(),
                found: found.clone(),
            }),
            _ => Ok(token),
        }
    }
}

#[async_trait]
impl TokenSource for SecretToken {
    async fn token(&self) -> Result<SecretValue, TokenError> {
        Ok(self.current().await?.token)
    }
}

struct RoleClient {
    broker: Broker,
    tokens: Arc<SecretToken>,
}

/// A pooled producer and the client it was opened on: after a role's client
/// is replaced (a rejected token), producers of the old one are stale.
struct Pooled {
    client: Arc<RoleClient>,
    producer: Arc<Mutex<Producer>>,
    last_used: u64,
}

/// Producers by (role, topic), least recently used dropped first.
#[derive(Default)]
struct Producers {
    open: HashMap<(String, String), Pooled>,
    clock: u64,
}

impl Producers {
    fn get(
        &mut self,
        client: &Arc<RoleClient>,
        key: &(String, String),
    ) -> Option<Arc<Mutex<Producer>>> {
        self.clock += 1;
        let clock = self.clock;
        let pooled = self
            .open
            .get_mut(key)
            .filter(|p| Arc::ptr_eq(&p.client, client))?;
        pooled.last_used = clock;
        Some(pooled.producer.clone())
    }

    /// Adds a producer, first dropping the least recently used ones so that
    /// at most `max` stay open.
    fn insert(
        &mut self,
        max: usize,
        client: Arc<RoleClient>,
        key: (String, String),
        producer: Arc<Mutex<Producer>>,
    ) {
        self.open.remove(&key);
        // A scan is enough: `max` is small, and this runs only when a
        // producer is opened, which costs a broker round trip anyway.
        while self.open.len() >= max.max(1) {
            let Some(oldest) = self
                .open
                .iter()
                .min_by_key(|(_, p)| p.last_used)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            tracing::debug!(
                role = oldest.0,
                topic = oldest.1,
                "closing the least recently used producer"
            );
            self.open.remove(&oldest);
        }
        self.clock += 1;
        self.open.insert(
            key,
            Pooled {
                client,
                producer,
                last_used: self.clock,
            },
        );
    }

    /// Drops `producer` from the pool, unless another one replaced it meanwhile.
    fn remove(&mut self, key: &(String, String), producer: &Arc<Mutex<Producer>>) {
        if self
            .open
            .get(key)
            .is_some_and(|p| Arc::ptr_eq(&p.producer, producer))
        {
            self.open.remove(key);
        }
    }

    fn remove_role(&mut self, role: &str) {
        self.open.retain(|(r, _), _| r != role);
    }
}

/// The per-instance pool of tenant clients and producers.
pub struct TenantBrokers {
    service_url: Url,
    secrets: Arc<dyn SecretSource>,
    timeouts: Timeouts,
    max_producers: usize,
    /// One cell per role, filled by its first connect.
    clients: Mutex<HashMap<String, Arc<tokio::sync::OnceCell<Arc<RoleClient>>>>>,
    producers: Mutex<Producers>,
}

impl TenantBrokers {
    /// An empty pool; clients connect lazily on first use of a role. At most
    /// [`DEFAULT_MAX_PRODUCERS`] producers stay open (see
    /// [`Self::with_max_producers`]).
    pub fn new(service_url: Url, secrets: Arc<dyn SecretSource>, timeouts: Timeouts) -> Self {
        Self {
            service_url,
            secrets,
            timeouts,
            max_producers: DEFAULT_MAX_PRODUCERS,
            clients: Mutex::new(HashMap::new()),
            producers: Mutex::new(Producers::default()),
        }
    }

    /// At most `max` producers open at once (at least one).
    pub fn with_max_producers(mut self, max: usize) -> Self {
        self.max_producers = max.max(1);
        self
    }

    /// How many producers are open now.
    pub async fn open_producers(&self) -> usize {
        self.producers.lock().await.open.len()
    }

    /// Sends `messages` in order to `topic` as the tenant role: every
    /// message is enqueued without waiting, then every receipt is awaited, so
    /// a batch costs about one broker round trip instead of one per message.
    /// `Ok` means every message is persisted; otherwise the failure says, per
    /// message, whether it is persisted, not persisted, or of unknown fate
    /// (every receipt is awaited even after one failed: later messages may
    /// have been persisted).
    ///
    /// When the broker rejects the credentials (the token was rotated or
    /// expired), the cached secret and client are dropped and the messages
    /// known not to be persisted are sent once more with a fresh token; one
    /// that may be persisted (its receipt was lost) is never sent again.
    ///
    /// Gives up after `budget`: messages whose receipt has not arrived by then
    /// are of unknown fate. A client that timed out is dropped (and its token
    /// re-read) so the next request starts clean: pulsar-rs keeps
    /// reconnecting with whatever token its provider returns, so a token the
    /// broker rejects before its `exp` (a rotated signing key) would otherwise
    /// stall every request on this warm instance.
    pub async fn send(
        &self,
        credentials: TenantCredentials<'_>,
        topic: &TopicName,
        messages: Vec<OutgoingMessage>,
        budget: Duration,
    ) -> Result<Vec<MessageId>, SendFailure> {
        let deadline = Instant::now() + budget;
        let topic = topic.to_string();
        let mut ledger = Ledger::new(messages.len());
        self.attempt(credentials, &topic, &messages, &mut ledger, deadline)
            .await;
        if ledger.credentials_failed() && !ledger.timed_out() {
            tracing::info!(
                role = credentials.role,
                "broker rejected the tenant token; refreshing it and retrying once"
            );
            self.forget(credentials).await;
            self.attempt(credentials, &topic, &messages, &mut ledger, deadline)
                .await;
        }
        if ledger.credentials_failed() || ledger.timed_out() {
            self.forget(credentials).await;
        }
        ledger.finish()
    }

    /// Sends the messages the ledger says are to be sent, and records what
    /// became of each.
    async fn attempt(
        &self,
        credentials: TenantCredentials<'_>,
        topic: &str,
        messages: &[OutgoingMessage],
        ledger: &mut Ledger,
        deadline: Instant,
    ) {
        let lines = ledger.to_send();
        if lines.is_empty() {
            return;
        }
        let key = (credentials.role.to_owned(), topic.to_owned());
        let opened = async {
            let client = self.client(credentials).await?;
            self.producer(&client, &key)
                .await
                .map_err(SendError::Broker)
        };
        let producer = match timeout_at(deadline, opened).await {
            Ok(Ok(producer)) => producer,
            Ok(Err(e)) => {
                return lines
                    .iter()
                    .for_each(|&i| ledger.not_persisted(i, e.clone()));
            }
            Err(_) => {
                return lines
                    .iter()
                    .for_each(|&i| ledger.not_persisted(i, timed_out()));
            }
        };

        // Enqueue everything, in order, holding the producer only that long.
        let mut receipts = Vec::with_capacity(lines.len());
        let mut rest = lines.iter().copied();
        let mut stopped: Option<SendError> = None;
        let mut wedged = false;
        match timeout_at(deadline, producer.lock()).await {
            Err(_) => stopped = Some(timed_out()),
            Ok(mut guard) => {
                for i in rest.by_ref() {
                    match timeout_at(deadline, guard.enqueue(messages[i].clone())).await {
                        Ok(Ok(receipt)) => receipts.push((i, receipt)),
                        Ok(Err(e)) => {
                            let e = SendError::Broker(e);
                            ledger.not_persisted(i, e.clone());
                            stopped = Some(e);
                            wedged = true;
                            break;
                        }
                        Err(_) => {
                            // Cut short mid-enqueue: say "unknown" rather
                            // than rely on where pulsar-rs was cut.
                            ledger.unknown(i, timed_out());
                            stopped = Some(timed_out());
                            break;
                        }
                    }
                }
            }
        }
        // Later messages are not sent after one could not be: they would
        // most likely fail alike, and the order would have a hole.
        if let Some(error) = stopped {
            rest.for_each(|i| ledger.not_persisted(i, error.clone()));
        }

        // Then every receipt, in order, each bounded by the deadline; past
        // it, those already arrived are still counted.
        let mut receipts = receipts.into_iter();
        for (i, receipt) in receipts.by_ref() {
            match timeout_at(deadline, receipt).await {
                Ok(result) => wedged |= record(ledger, i, result),
                Err(_) => {
                    ledger.unknown(i, timed_out());
                    break;
                }
            }
        }
        for (i, receipt) in receipts {
            match receipt.now_or_never() {
                Some(result) => wedged |= record(ledger, i, result),
                None => ledger.unknown(i, timed_out()),
            }
        }
        if wedged {
            // A producer that lost a receipt or could not send may be
            // wedged; make the next request build a fresh one.
            self.producers.lock().await.remove(&key, &producer);
        }
    }

    /// The role's connected client (connecting it on first use), for the
    /// read side, which opens readers and consumers on it.
    pub async fn broker(&self, credentials: TenantCredentials<'_>) -> Result<Broker, SendError> {
        Ok(self.client(credentials).await?.broker.clone())
    }

    async fn client(
        &self,
        credentials: TenantCredentials<'_>,
    ) -> Result<Arc<RoleClient>, SendError> {
        // One connect per role at a time: concurrent first uses share it,
        // while other roles' requests (concurrent invocations) neither wait
        // for it nor for each other. A failed connect leaves the cell empty
        // for the next request to try again.
        let cell = self
            .clients
            .lock()
            .await
            .entry(credentials.role.to_owned())
            .or_default()
            .clone();
        let client = cell
            .get_or_try_init(|| async {
                let tokens = Arc::new(SecretToken {
                    secrets: self.secrets.clone(),
                    secret: credentials.token_secret.to_owned(),
                    role: credentials.role.to_owned(),
                    latest: std::sync::Mutex::new(None),
                });
                // Surface a missing or malformed secret as what it is, not
                // as a broker authentication failure.
                tokens.current().await?;
                let broker = Broker::connect(&self.service_url, tokens.clone(), self.timeouts)
                    .await
                    .map_err(SendError::Broker)?;
                Ok::<_, SendError>(Arc::new(RoleClient { broker, tokens }))
            })
            .await?;
        // Costs nothing until the token nears its expiry; then it decides
        // whether this request may still use the connections (see `check`).
        client.tokens.check().await?;
        Ok(client.clone())
    }

    async fn producer(
        &self,
        client: &Arc<RoleClient>,
        key: &(String, String),
    ) -> Result<Arc<Mutex<Producer>>, BrokerError> {
        if let Some(p) = self.producers.lock().await.get(client, key) {
            return Ok(p);
        }
        // Opened without the lock, so a slow broker does not stall sends to
        // topics whose producers are open; if two first sends race, the
        // first to finish is kept and the other producer is dropped (closed).
        let opened = Arc::new(Mutex::new(client.broker.producer(&key.1).await?));
        let mut producers = self.producers.lock().await;
        if let Some(p) = producers.get(client, key) {
            return Ok(p);
        }
        producers.insert(
            self.max_producers,
            client.clone(),
            key.clone(),
            opened.clone(),
        );
        Ok(opened)
    }

    /// Drops the role's cached token and client (the broker rejected the
    /// token): the next use reads the secret again and reconnects.
    pub async fn forget(&self, credentials: TenantCredentials<'_>) {
        self.secrets.invalidate(credentials.token_secret).await;
        self.clients.lock().await.remove(credentials.role);
        self.producers.lock().await.remove_role(credentials.role);
    }
}

/// Records one receipt; true when it was lost (the producer may be wedged).
fn record(ledger: &mut Ledger, index: usize, result: Result<MessageId, ReceiptError>) -> bool {
    match result {
        Ok(id) => ledger.persisted(index, id),
        Err(ReceiptError::Refused(e)) => ledger.not_persisted(index, SendError::Broker(e)),
        Err(ReceiptError::Lost(e)) => {
            ledger.unknown(index, SendError::Broker(e));
            return true;
        }
    }
    false
}

fn timed_out() -> SendError {
    SendError::Broker(BrokerError::Timeout)
}
