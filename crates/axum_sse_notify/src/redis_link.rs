//! One lazily opened Redis connection beside the bus's own (presence
//! snapshots, service mode's idempotency keys and token rates), every
//! command bounded by `bus.timeout`; a connection that failed is dropped
//! and the next call reconnects.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use redis::AsyncConnectionConfig;
use redis::aio::MultiplexedConnection;

use crate::bus::BusConfig;

pub(crate) struct RedisLink {
    client: redis::Client,
    /// `{prefix}:` — the bus's hash tag, so every key sits beside its.
    pub(crate) prefix: String,
    timeout: Duration,
    conn: Mutex<Option<MultiplexedConnection>>,
}

impl RedisLink {
    pub(crate) fn new(bus: &BusConfig) -> Result<Self, String> {
        Ok(RedisLink {
            client: redis::Client::open(bus.primary_url()).map_err(|e| e.to_string())?,
            prefix: format!("{{{}}}:", bus.prefix),
            timeout: bus.timeout,
            conn: Mutex::new(None),
        })
    }

    pub(crate) async fn connection(&self) -> Result<MultiplexedConnection, String> {
        let held = self
            .conn
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some(conn) = held {
            return Ok(conn);
        }
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout));
        let conn = tokio::time::timeout(
            self.timeout,
            self.client
                .get_multiplexed_async_connection_with_config(&config),
        )
        .await
        .map_err(|_| "no connection within bus.timeout".to_string())?
        .map_err(|e| e.to_string())?;
        *self.conn.lock().unwrap_or_else(PoisonError::into_inner) = Some(conn.clone());
        Ok(conn)
    }

    /// Forgets a connection that failed, so the next call reconnects.
    pub(crate) fn failed(&self) {
        *self.conn.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }
}
