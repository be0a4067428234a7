//! Each service token's rate: events per minute, counted in fixed
//! one-minute windows. A batch counts as its events, and is taken whole
//! or refused whole.
//!
//! With the Redis bus the count is the cluster's (one counter per token
//! and wall-clock minute in Redis), so N processes do not give a token N
//! times its rate; when Redis does not answer, this process's own count
//! decides meanwhile (a limit never makes publishing depend on Redis more
//! than publishing itself does).

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

const WINDOW: Duration = Duration::from_secs(60);
/// Tokens tracked at once, at most (then windows that ended are dropped).
const MAX_TRACKED: usize = 10_000;

#[derive(Default)]
pub(crate) struct Rates {
    windows: Mutex<HashMap<String, (Instant, u64)>>,
    #[cfg(feature = "redis")]
    shared: Option<shared::SharedRates>,
}

impl Rates {
    /// Counted in Redis, beside the bus.
    #[cfg(feature = "redis")]
    pub(crate) fn shared(bus: &crate::bus::BusConfig) -> Result<Self, String> {
        Ok(Rates {
            shared: Some(shared::SharedRates::new(bus)?),
            ..Rates::default()
        })
    }

    /// Takes `events` from `token`'s minute, or says how long until its
    /// next window.
    pub(crate) async fn take(
        &self,
        token: &str,
        per_minute: u32,
        events: u64,
    ) -> Result<(), Duration> {
        #[cfg(feature = "redis")]
        if let Some(shared) = &self.shared
            && let Some(verdict) = shared.take(token, per_minute, events).await
        {
            return verdict;
        }
        self.take_at(token, per_minute, events, Instant::now())
    }

    fn take_at(
        &self,
        token: &str,
        per_minute: u32,
        events: u64,
        now: Instant,
    ) -> Result<(), Duration> {
        let mut windows = self.windows.lock().unwrap_or_else(PoisonError::into_inner);
        if windows.len() >= MAX_TRACKED && !windows.contains_key(token) {
            windows.retain(|_, (start, _)| now.duration_since(*start) < WINDOW);
        }
        let (start, used) = windows.entry(token.to_string()).or_insert((now, 0));
        if now.duration_since(*start) >= WINDOW {
            *start = now;
            *used = 0;
        }
        if *used + events > u64::from(per_minute) {
            return Err(WINDOW.saturating_sub(now.duration_since(*start)));
        }
        *used += events;
        Ok(())
    }
}

#[cfg(feature = "redis")]
mod shared {
    use std::time::Duration;

    use crate::redis_link::RedisLink;

    const WINDOW_MS: u64 = 60_000;

    /// Adds `ARGV[1]` events to `KEYS[1]` unless that passes `ARGV[2]`;
    /// the key lives a little longer than its minute.
    const TAKE: &str = r"
local n = redis.call('INCRBY', KEYS[1], ARGV[1])
if n == tonumber(ARGV[1]) then redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
if n > tonumber(ARGV[2]) then
  redis.call('DECRBY', KEYS[1], ARGV[1])
  return 0
end
return 1
";

    pub(super) struct SharedRates {
        link: RedisLink,
        script: redis::Script,
    }

    impl SharedRates {
        pub(super) fn new(bus: &crate::bus::BusConfig) -> Result<Self, String> {
            Ok(SharedRates {
                link: RedisLink::new(bus)?,
                script: redis::Script::new(TAKE),
            })
        }

        /// `None`: Redis did not answer (the caller counts locally).
        pub(super) async fn take(
            &self,
            token: &str,
            per_minute: u32,
            events: u64,
        ) -> Option<Result<(), Duration>> {
            let now = crate::registry::unix_millis_now();
            let minute = now / WINDOW_MS;
            let mut conn = self.link.connection().await.ok()?;
            let taken: redis::RedisResult<i64> = self
                .script
                .key(format!("{}rate:{token}:{minute}", self.link.prefix))
                .arg(events)
                .arg(per_minute)
                .arg(WINDOW_MS + 5_000)
                .invoke_async(&mut conn)
                .await;
            match taken {
                Ok(1) => Some(Ok(())),
                Ok(_) => Some(Err(Duration::from_millis(WINDOW_MS - now % WINDOW_MS))),
                Err(e) => {
                    self.link.failed();
                    tracing::warn!(error = %e, "token rate counted per process while Redis does not answer");
                    None
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minute_holds_the_rate_and_no_more() {
        let rates = Rates::default();
        let t0 = Instant::now();
        assert!(rates.take_at("a", 10, 6, t0).is_ok());
        assert!(rates.take_at("a", 10, 4, t0).is_ok());
        let wait = rates
            .take_at("a", 10, 1, t0 + Duration::from_secs(20))
            .unwrap_err();
        assert_eq!(wait, Duration::from_secs(40));
        // Another token has its own minute.
        assert!(rates.take_at("b", 10, 10, t0).is_ok());
        // A batch larger than what is left is refused whole.
        assert!(rates.take_at("a", 10, 11, t0 + WINDOW).is_err());
        assert!(rates.take_at("a", 10, 10, t0 + WINDOW).is_ok());
    }
}
