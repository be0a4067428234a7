//! Each service token's rate: events per minute, counted in fixed
//! one-minute windows in this process. A batch counts as its events, and
//! is taken whole or refused whole.
//!
//! Per process: with N processes behind a balancer a token may reach N
//! times its rate in all (see docs/sse.md).

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

const WINDOW: Duration = Duration::from_secs(60);
/// Tokens tracked at once, at most (then windows that ended are dropped).
const MAX_TRACKED: usize = 10_000;

#[derive(Default)]
pub(crate) struct Rates {
    windows: Mutex<HashMap<String, (Instant, u64)>>,
}

impl Rates {
    /// Takes `events` from `token`'s minute, or says how long until its
    /// next window.
    pub(crate) fn take(&self, token: &str, per_minute: u32, events: u64) -> Result<(), Duration> {
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
