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
use tokio::sync::Mutex;
use url::Url;

use super::{
    Broker, BrokerError, MessageId, OutgoingMessage, Producer, Timeouts, TokenError, TokenSource,
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

/// Why a send did not complete.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The tenant's token could not be obtained.
    #[error(transparent)]
    Token(#[from] TokenError),
    /// The broker refused or failed. In a batch, the messages before the
    /// failing one may already be persisted; their event ids are stable
    /// under an `Idempotency-Key`, so a retried batch can be deduplicated.
    #[error(transparent)]
    Broker(BrokerError),
}

/// How close to its expiry a cached token is looked up again.
const EXPIRY_MARGIN: Duration = Duration::from_secs(30);

/// Reads a role's token through the (cached) secret source on every connect.
struct SecretToken {
    secrets: Arc<dyn SecretSource>,
    secret: String,
    role: String,
}

impl SecretToken {
    async fn current(&self) -> Result<TenantToken, TokenError> {
        let mut token = self.read().await?;
        // A cached token about to expire was probably rotated already:
        // look again rather than hand the broker a token it will drop.
        if token.expires_within(EXPIRY_MARGIN) {
            self.secrets.invalidate(&self.secret).await;
            token = self.read().await?;
        }
        Ok(token)
    }

    async fn read(&self) -> Result<TenantToken, TokenError> {
        let value = self.secrets.get(&self.secret).await?;
        let token = TenantToken::parse(&self.secret, &value)?;
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

    /// Sends `messages` in order to `topic` as the tenant role, returning one
    /// receipt per message. When the broker rejects the credentials (the token
    /// was rotated or expired), the cached secret and client are dropped and
    /// the unsent remainder is retried once with a fresh token.
    ///
    /// Gives up after `budget`. A client that timed out is dropped (and its
    /// token re-read) so the next request starts clean: pulsar-rs keeps
    /// reconnecting with whatever token its provider returns, so a token the
    /// broker rejects before its `exp` (a rotated signing key) would otherwise
    /// stall every request on this warm instance.
    pub async fn send(
        &self,
        credentials: TenantCredentials<'_>,
        topic: &TopicName,
        messages: Vec<OutgoingMessage>,
        budget: Duration,
    ) -> Result<Vec<MessageId>, SendError> {
        match tokio::time::timeout(budget, self.send_with_refresh(credentials, topic, messages))
            .await
        {
            Ok(result) => result,
            Err(_) => {
                self.forget(credentials).await;
                Err(SendError::Broker(BrokerError::Timeout))
            }
        }
    }

    async fn send_with_refresh(
        &self,
        credentials: TenantCredentials<'_>,
        topic: &TopicName,
        messages: Vec<OutgoingMessage>,
    ) -> Result<Vec<MessageId>, SendError> {
        let topic = topic.to_string();
        let mut sent = Vec::with_capacity(messages.len());
        let mut refreshed = false;
        loop {
            match self
                .send_from(credentials, &topic, &messages, &mut sent)
                .await
            {
                Ok(()) => return Ok(sent),
                Err(SendError::Broker(source)) if source.is_credentials() && !refreshed => {
                    refreshed = true;
                    tracing::info!(
                        role = credentials.role,
                        "broker rejected the tenant token; refreshing it and retrying once"
                    );
                    self.forget(credentials).await;
                }
                Err(SendError::Broker(source)) => {
                    if source.is_credentials() {
                        self.forget(credentials).await;
                    }
                    return Err(SendError::Broker(source));
                }
                Err(other) => return Err(other),
            }
        }
    }

    async fn send_from(
        &self,
        credentials: TenantCredentials<'_>,
        topic: &str,
        messages: &[OutgoingMessage],
        sent: &mut Vec<MessageId>,
    ) -> Result<(), SendError> {
        let client = self.client(credentials).await?;
        let key = (credentials.role.to_owned(), topic.to_owned());
        let producer = self
            .producer(&client, &key)
            .await
            .map_err(SendError::Broker)?;
        let mut producer = producer.lock().await;
        for message in &messages[sent.len()..] {
            match producer.send(message.clone()).await {
                Ok(id) => sent.push(id),
                Err(source) => {
                    // A producer that failed may be wedged; make the next
                    // request build a fresh one.
                    drop(producer);
                    self.producers.lock().await.open.remove(&key);
                    return Err(SendError::Broker(source));
                }
            }
        }
        Ok(())
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
                });
                // Surface a missing or malformed secret as what it is, not
                // as a broker authentication failure.
                tokens.current().await?;
                let broker = Broker::connect(&self.service_url, tokens, self.timeouts)
                    .await
                    .map_err(SendError::Broker)?;
                Ok::<_, SendError>(Arc::new(RoleClient { broker }))
            })
            .await?;
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

    async fn forget(&self, credentials: TenantCredentials<'_>) {
        self.secrets.invalidate(credentials.token_secret).await;
        self.clients.lock().await.remove(credentials.role);
        self.producers.lock().await.remove_role(credentials.role);
    }
}
