//! Idempotency keys in Redis, shared by every process on the bus. One
//! script claims a key (`SET NX` with a short expiry while in flight) or
//! reads what it holds, in one round trip; completing sets the result for
//! the whole window.

use std::sync::Mutex;
use std::time::Duration;

use redis::AsyncConnectionConfig;
use redis::aio::MultiplexedConnection;

use super::{Claim, KeyError};
use crate::bus::BusConfig;

/// How long a claimed key stays "in flight" if its process never
/// completes or releases it (killed mid-publish): then it may be retried.
const IN_FLIGHT: Duration = Duration::from_secs(30);

/// Claims `KEYS[1]` (empty value, expiring in `ARGV[1]` ms) and returns
/// nil, or returns what it holds.
const CLAIM: &str = r"
if redis.call('SET', KEYS[1], '', 'NX', 'PX', ARGV[1]) then
  return false
end
return redis.call('GET', KEYS[1])
";

pub(crate) struct RedisKeys {
    client: redis::Client,
    prefix: String,
    window: Duration,
    timeout: Duration,
    script: redis::Script,
    conn: Mutex<Option<MultiplexedConnection>>,
}

impl RedisKeys {
    pub(crate) fn new(bus: &BusConfig, window: Duration) -> Result<Self, String> {
        Ok(RedisKeys {
            client: redis::Client::open(bus.url.as_str()).map_err(|e| e.to_string())?,
            // Beside the bus's keys, under its hash tag.
            prefix: format!("{{{}}}:idem:", bus.prefix),
            window,
            timeout: bus.timeout,
            script: redis::Script::new(CLAIM),
            conn: Mutex::new(None),
        })
    }

    async fn connection(&self) -> Result<MultiplexedConnection, KeyError> {
        let held = self
            .conn
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
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
        .map_err(|_| KeyError::Unavailable("no connection within bus.timeout".into()))?
        .map_err(unavailable)?;
        *self
            .conn
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(conn.clone());
        Ok(conn)
    }

    /// Forgets a connection that failed, so the next call reconnects.
    fn drop_connection(&self) {
        *self
            .conn
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
    }

    pub(crate) async fn claim(&self, key: &str) -> Result<Claim, KeyError> {
        let mut conn = self.connection().await?;
        let held: Option<String> = self
            .script
            .key(format!("{}{key}", self.prefix))
            .arg(IN_FLIGHT.as_millis() as u64)
            .invoke_async(&mut conn)
            .await
            .map_err(|e| {
                self.drop_connection();
                unavailable(e)
            })?;
        Ok(match held {
            None => Claim::Fresh,
            Some(value) if value.is_empty() => Claim::InFlight,
            Some(value) => Claim::Done(value),
        })
    }

    pub(crate) async fn complete(&self, key: &str, result: String) {
        let Ok(mut conn) = self.connection().await else {
            tracing::warn!(
                "idempotency key not recorded (Redis unreachable): a retry within {IN_FLIGHT:?} gets 409, later ones publish again"
            );
            return;
        };
        let set: redis::RedisResult<()> = redis::cmd("SET")
            .arg(format!("{}{key}", self.prefix))
            .arg(result)
            .arg("PX")
            .arg(self.window.as_millis() as u64)
            .query_async(&mut conn)
            .await;
        if let Err(e) = set {
            self.drop_connection();
            tracing::warn!(error = %e, "idempotency key not recorded: a retry within {IN_FLIGHT:?} gets 409, later ones publish again");
        }
    }

    pub(crate) async fn release(&self, key: &str) {
        let Ok(mut conn) = self.connection().await else {
            return;
        };
        let deleted: redis::RedisResult<()> = redis::cmd("DEL")
            .arg(format!("{}{key}", self.prefix))
            .query_async(&mut conn)
            .await;
        if deleted.is_err() {
            self.drop_connection();
        }
    }
}

fn unavailable(error: redis::RedisError) -> KeyError {
    KeyError::Unavailable(error.to_string())
}
