//! Warm Pulsar clients for the publish path: one client per tenant role
//! (authenticating with that role's token from Secrets Manager), one producer
//! per topic, both kept across invocations of a warm Lambda instance.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Mutex;
use url::Url;

use super::{
    Broker, BrokerError, MessageId, OutgoingMessage, Producer, Timeouts, TokenError, TokenSource,
};
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
    producers: Mutex<HashMap<String, Arc<Mutex<Producer>>>>,
}

/// The per-instance pool of tenant clients and producers.
pub struct TenantBrokers {
    service_url: Url,
    secrets: Arc<dyn SecretSource>,
    timeouts: Timeouts,
    clients: Mutex<HashMap<String, Arc<RoleClient>>>,
}

impl TenantBrokers {
    /// An empty pool; clients connect lazily on first use of a role.
    pub fn new(service_url: Url, secrets: Arc<dyn SecretSource>, timeouts: Timeouts) -> Self {
        Self {
            service_url,
            secrets,
            timeouts,
            clients: Mutex::new(HashMap::new()),
        }
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
        let producer = self
            .producer(&client, topic)
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
                    client.producers.lock().await.remove(topic);
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
        // One connect per role at a time: concurrent first uses share it.
        let mut clients = self.clients.lock().await;
        if let Some(client) = clients.get(credentials.role) {
            return Ok(client.clone());
        }
        let tokens = Arc::new(SecretToken {
            secrets: self.secrets.clone(),
            secret: credentials.token_secret.to_owned(),
            role: credentials.role.to_owned(),
        });
        // Surface a missing or malformed secret as what it is, not as a
        // broker authentication failure.
        tokens.current().await?;
        let broker = Broker::connect(&self.service_url, tokens, self.timeouts)
            .await
            .map_err(SendError::Broker)?;
        let client = Arc::new(RoleClient {
            broker,
            producers: Mutex::new(HashMap::new()),
        });
        clients.insert(credentials.role.to_owned(), client.clone());
        Ok(client)
    }

    async fn producer(
        &self,
        client: &RoleClient,
        topic: &str,
    ) -> Result<Arc<Mutex<Producer>>, BrokerError> {
        let mut producers = client.producers.lock().await;
        if let Some(p) = producers.get(topic) {
            return Ok(p.clone());
        }
        let producer = Arc::new(Mutex::new(client.broker.producer(topic).await?));
        producers.insert(topic.to_owned(), producer.clone());
        Ok(producer)
    }

    async fn forget(&self, credentials: TenantCredentials<'_>) {
        self.secrets.invalidate(credentials.token_secret).await;
        self.clients.lock().await.remove(credentials.role);
    }
}
