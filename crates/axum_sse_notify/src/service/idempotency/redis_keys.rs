//! Idempotency keys in Redis, shared by every process on the bus. One
//! script claims a key (`SET NX` with a short expiry while in flight) or
//! reads what it holds, in one round trip; completing sets the result for
//! the whole window.

use std::time::Duration;

use super::{Claim, KeyError};
use crate::bus::BusConfig;
use crate::redis_link::RedisLink;

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
    link: RedisLink,
    window: Duration,
    script: redis::Script,
}

impl RedisKeys {
    pub(crate) fn new(bus: &BusConfig, window: Duration) -> Result<Self, String> {
        Ok(RedisKeys {
            link: RedisLink::new(bus)?,
            window,
            script: redis::Script::new(CLAIM),
        })
    }

    fn key(&self, key: &str) -> String {
        format!("{}idem:{key}", self.link.prefix)
    }

    pub(crate) async fn claim(&self, key: &str) -> Result<Claim, KeyError> {
        let mut conn = self
            .link
            .connection()
            .await
            .map_err(KeyError::Unavailable)?;
        let held: Option<String> = self
            .script
            .key(self.key(key))
            .arg(IN_FLIGHT.as_millis() as u64)
            .invoke_async(&mut conn)
            .await
            .map_err(|e| {
                self.link.failed();
                KeyError::Unavailable(e.to_string())
            })?;
        Ok(match held {
            None => Claim::Fresh,
            Some(value) if value.is_empty() => Claim::InFlight,
            Some(value) => Claim::Done(value),
        })
    }

    pub(crate) async fn complete(&self, key: &str, result: String) {
        let Ok(mut conn) = self.link.connection().await else {
            tracing::warn!(
                "idempotency key not recorded (Redis unreachable): a retry within {IN_FLIGHT:?} gets 409, later ones publish again"
            );
            return;
        };
        let set: redis::RedisResult<()> = redis::cmd("SET")
            .arg(self.key(key))
            .arg(result)
            .arg("PX")
            .arg(self.window.as_millis() as u64)
            .query_async(&mut conn)
            .await;
        if let Err(e) = set {
            self.link.failed();
            tracing::warn!(error = %e, "idempotency key not recorded: a retry within {IN_FLIGHT:?} gets 409, later ones publish again");
        }
    }

    pub(crate) async fn release(&self, key: &str) {
        let Ok(mut conn) = self.link.connection().await else {
            return;
        };
        let deleted: redis::RedisResult<()> = redis::cmd("DEL")
            .arg(self.key(key))
            .query_async(&mut conn)
            .await;
        if deleted.is_err() {
            self.link.failed();
        }
    }
}
