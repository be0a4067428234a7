//! A fixed-window counter kept in Redis, so that a limit holds across
//! every server process of a cluster (with the Redis bus), not once per
//! process.
//!
//! Approximate by design: windows are aligned to the wall clock (each
//! process's), and when Redis cannot be reached in time the caller falls
//! back to its own per-process count for a while rather than failing or
//! waiting: a limit must never make sends depend on Redis more than the
//! sends themselves do.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use redis::AsyncConnectionConfig;
use redis::aio::MultiplexedConnection;

/// How long the counter is not asked again after Redis failed to answer.
const PAUSE_AFTER_FAILURE: Duration = Duration::from_secs(5);

pub struct SharedCount {
    client: redis::Client,
    /// `{prefix}:sends:` — under the bus's hash tag, beside its keys.
    key_prefix: String,
    limit: u32,
    window: Duration,
    timeout: Duration,
    conn: Mutex<Option<MultiplexedConnection>>,
    paused_until: Mutex<Option<Instant>>,
}

/// What Redis said about one more attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    /// Over the limit for the rest of this window.
    Refused(Duration),
    /// Redis did not answer (in time): the caller's own count decides.
    Unknown,
}

impl SharedCount {
    /// A counter of at most `limit` per `window` per key, in the Redis at
    /// `url` under `prefix`. Fails only on a malformed URL.
    pub fn new(
        url: &str,
        prefix: &str,
        limit: u32,
        window: Duration,
        timeout: Duration,
    ) -> Result<Self, String> {
        let client = redis::Client::open(url).map_err(|e| e.to_string())?;
        Ok(SharedCount {
            client,
            key_prefix: format!("{{{prefix}}}:sends:"),
            limit,
            window: window.max(Duration::from_millis(1)),
            timeout,
            conn: Mutex::new(None),
            paused_until: Mutex::new(None),
        })
    }

    /// Counts one attempt by `key` in the current window, across the
    /// cluster.
    pub async fn attempt(&self, key: &str) -> Verdict {
        let paused = *self
            .paused_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if paused.is_some_and(|until| Instant::now() < until) {
            return Verdict::Unknown;
        }
        let window_ms = u64::try_from(self.window.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let window_no = now_ms / window_ms;
        let ends = window_no.saturating_add(1).saturating_mul(window_ms);
        let left = Duration::from_millis(ends.saturating_sub(now_ms));
        let redis_key = format!("{}{key}:{window_no}", self.key_prefix);
        let expire_ms = window_ms.saturating_mul(2);
        match tokio::time::timeout(self.timeout, self.incr(&redis_key, expire_ms)).await {
            Ok(Ok(count)) if count > u64::from(self.limit) => Verdict::Refused(left),
            Ok(Ok(_)) => Verdict::Allowed,
            failed => {
                tracing::debug!(
                    ?failed,
                    "send limit: Redis did not answer; counting in this process only"
                );
                *self.conn.lock().unwrap_or_else(PoisonError::into_inner) = None;
                *self
                    .paused_until
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) =
                    Some(Instant::now() + PAUSE_AFTER_FAILURE);
                Verdict::Unknown
            }
        }
    }

    /// `INCR` and `PEXPIRE` in one round trip (the key outlives its
    /// window a little, whatever the Redis version).
    async fn incr(&self, key: &str, expire_ms: u64) -> redis::RedisResult<u64> {
        let mut conn = self.connection().await?;
        let (count, _): (u64, i64) = redis::pipe()
            .atomic()
            .cmd("INCR")
            .arg(key)
            .cmd("PEXPIRE")
            .arg(key)
            .arg(expire_ms)
            .query_async(&mut conn)
            .await?;
        Ok(count)
    }

    async fn connection(&self) -> redis::RedisResult<MultiplexedConnection> {
        let cached = self
            .conn
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some(conn) = cached {
            return Ok(conn);
        }
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout));
        let conn = self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        *self.conn.lock().unwrap_or_else(PoisonError::into_inner) = Some(conn.clone());
        Ok(conn)
    }
}
