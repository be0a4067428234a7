//! Service mode: other services publish over HTTP with service tokens,
//! and clients without the host's session open streams with stream
//! tokens.
//!
//! - [`token`]: service tokens (hashed at rest, scoped, revocable), what
//!   `POST /api/publish` and `POST /api/tokens/stream` authenticate with.
//! - [`publish`]: the publish API's request and answer, checked exactly
//!   as the Rust API checks its sends.
//! - [`idempotency`]: keys that make a retried publish deliver nothing
//!   again (across processes with the Redis bus).
//! - [`stream_token`]: short-lived signed tokens for streams.
//! - `rate`: each token's events per minute (across processes with Redis).

pub mod idempotency;
pub mod publish;
mod rate;
mod store;
pub mod stream_token;
pub mod token;

use std::sync::Arc;
use std::time::Duration;

use crate::bus::Bus;
use crate::inbox::InboxPool;
use idempotency::Keys;
use store::ServiceStore;
use stream_token::{MintedToken, StreamKey, StreamTokenError, StreamTokenRequest};
use token::ServiceTokens;

/// Limits of service mode. Every number bounds something.
#[derive(Clone, PartialEq, Eq)]
pub struct ServiceConfig {
    /// Events in one batch publish, at most.
    pub batch_max: usize,
    /// Users (or client ids) one publication may name, at most.
    pub max_targets: usize,
    /// How long an idempotency key is remembered.
    pub idempotency_window: Duration,
    /// Keys remembered at once in one process (without the Redis bus); one
    /// more is refused (503) until the oldest expire.
    pub idempotency_max_keys: usize,
    /// The key stream tokens are signed with (at least 32 bytes). `None`:
    /// a random key made once and kept in the database, shared by every
    /// process on it. Set it to mint tokens outside this server.
    pub stream_key: Option<Vec<u8>>,
    /// A minted stream token's lifetime when the request names none.
    pub stream_token_ttl: Duration,
    /// The longest lifetime a stream token may have.
    pub stream_token_max_ttl: Duration,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig {
            batch_max: 1000,
            max_targets: 1000,
            idempotency_window: Duration::from_secs(24 * 3600),
            idempotency_max_keys: 100_000,
            stream_key: None,
            stream_token_ttl: Duration::from_secs(300),
            stream_token_max_ttl: Duration::from_secs(3600),
        }
    }
}

impl std::fmt::Debug for ServiceConfig {
    /// Without the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceConfig")
            .field("batch_max", &self.batch_max)
            .field("max_targets", &self.max_targets)
            .field("idempotency_window", &self.idempotency_window)
            .field("idempotency_max_keys", &self.idempotency_max_keys)
            .field("stream_key", &self.stream_key.as_ref().map(|_| "…"))
            .field("stream_token_ttl", &self.stream_token_ttl)
            .field("stream_token_max_ttl", &self.stream_token_max_ttl)
            .finish()
    }
}

/// Why service mode could not start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    StreamKey(#[from] StreamTokenError),
    #[error("cannot read or store the stream token key: {0}")]
    Store(String),
    #[error("cannot use the Redis bus for idempotency keys: {0}")]
    Redis(String),
}

/// Service mode's state, shared by the routes. Cheap to clone.
#[derive(Clone)]
pub struct Service {
    inner: Arc<ServiceState>,
}

pub(crate) struct ServiceState {
    pub config: ServiceConfig,
    pub tokens: ServiceTokens,
    pub key: StreamKey,
    pub keys: Keys,
    pub rates: rate::Rates,
}

impl Service {
    /// Service mode on `pool`'s database (its tables made by
    /// [`crate::inbox::schema::migrate`]); idempotency keys in Redis when
    /// `bus` goes through Redis, else in this process.
    pub async fn start(
        pool: impl Into<InboxPool>,
        bus: &Bus,
        config: ServiceConfig,
    ) -> Result<Service, ServiceError> {
        let pool = pool.into();
        let secret = match &config.stream_key {
            Some(key) => key.clone(),
            None => stored_key(&ServiceStore::new(pool.clone())).await?,
        };
        let key = StreamKey::new(&secret, config.stream_token_max_ttl)?;
        let (keys, rates) = shared_state(bus, &config)?;
        Ok(Service {
            inner: Arc::new(ServiceState {
                tokens: ServiceTokens::new(pool),
                key,
                keys,
                rates,
                config,
            }),
        })
    }

    pub fn config(&self) -> &ServiceConfig {
        &self.inner.config
    }

    /// The service tokens (create, list, revoke).
    pub fn tokens(&self) -> &ServiceTokens {
        &self.inner.tokens
    }

    /// Signs a stream token: what `POST /api/tokens/stream` does, for a
    /// host that hands tokens out itself.
    pub fn mint(&self, request: &StreamTokenRequest) -> Result<MintedToken, StreamTokenError> {
        self.inner.key.mint(request)
    }

    pub fn stream_key(&self) -> &StreamKey {
        &self.inner.key
    }

    pub(crate) fn state(&self) -> &ServiceState {
        &self.inner
    }

    /// Takes `events` from `token`'s rate, or says how long to wait.
    pub(crate) async fn take_rate(
        &self,
        token: &token::ServiceToken,
        events: u64,
    ) -> Result<(), Duration> {
        self.inner
            .rates
            .take(&token.name, token.rate_per_minute, events)
            .await
    }
}

/// Idempotency keys and token rates: in Redis beside the bus when it goes
/// through Redis (shared by every process), else in this process.
#[cfg(feature = "redis")]
fn shared_state(bus: &Bus, config: &ServiceConfig) -> Result<(Keys, rate::Rates), ServiceError> {
    match bus.redis_config() {
        Some(redis) => Ok((
            Keys::redis(redis, config.idempotency_window).map_err(ServiceError::Redis)?,
            rate::Rates::shared(redis).map_err(ServiceError::Redis)?,
        )),
        None => Ok((
            Keys::local(config.idempotency_window, config.idempotency_max_keys),
            rate::Rates::default(),
        )),
    }
}

#[cfg(not(feature = "redis"))]
fn shared_state(_: &Bus, config: &ServiceConfig) -> Result<(Keys, rate::Rates), ServiceError> {
    Ok((
        Keys::local(config.idempotency_window, config.idempotency_max_keys),
        rate::Rates::default(),
    ))
}

/// The database's signing key, made on first use.
async fn stored_key(store: &ServiceStore) -> Result<Vec<u8>, ServiceError> {
    use rand::RngCore;
    let mut fresh = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut fresh);
    let fresh: String = fresh.iter().map(|b| format!("{b:02x}")).collect();
    let now = crate::registry::unix_millis_now() as i64;
    let stored = store
        .signing_key(&fresh, now)
        .await
        .map_err(|e| ServiceError::Store(e.to_string()))?;
    decode_hex(&stored).ok_or_else(|| ServiceError::Store("the stored key is not hex".into()))
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}
