//! Fixed-window attempt counters (sign-in per username, per address).
//!
//! Bounded: at most `max_keys` keys are tracked; when full, expired windows
//! are dropped, and if that is not enough the attempt is refused (failing
//! closed beats forgetting an attacker).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

pub struct RateLimiter {
    limit: u32,
    window: Duration,
    max_keys: usize,
    windows: Mutex<HashMap<String, (Instant, u32)>>,
}

impl RateLimiter {
    pub fn new(limit: u32, window: Duration, max_keys: usize) -> Self {
        RateLimiter {
            limit,
            window,
            max_keys,
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// Counts one attempt for `key`; `Err(wait)` if over the limit.
    pub fn attempt(&self, key: &str) -> Result<(), Duration> {
        self.attempt_at(key, Instant::now())
    }

    fn attempt_at(&self, key: &str, now: Instant) -> Result<(), Duration> {
        let mut windows = self.windows.lock().unwrap_or_else(PoisonError::into_inner);
        if !windows.contains_key(key) && windows.len() >= self.max_keys {
            let window = self.window;
            windows.retain(|_, (start, _)| now.duration_since(*start) < window);
            if windows.len() >= self.max_keys {
                return Err(self.window);
            }
        }
        let (start, count) = windows.entry(key.to_string()).or_insert((now, 0));
        let age = now.duration_since(*start);
        if age >= self.window {
            *start = now;
            *count = 0;
        }
        if *count >= self.limit {
            return Err(self.window.saturating_sub(now.duration_since(*start)));
        }
        *count += 1;
        Ok(())
    }

    /// Number of keys tracked (for tests and stats).
    pub fn tracked(&self) -> usize {
        self.windows
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

/// Users whose sends are counted at once, at most (beyond, and with no
/// window expired, a send is refused rather than a user forgotten).
const SEND_KEYS_MAX: usize = 100_000;

/// The per-user send rate of the send server functions: one user cannot
/// flood the others' streams and inboxes. Cheap to clone.
#[derive(Clone)]
pub struct SendLimit(Arc<RateLimiter>);

impl SendLimit {
    pub fn new(per_user: u32, window: Duration) -> Self {
        SendLimit(Arc::new(RateLimiter::new(per_user, window, SEND_KEYS_MAX)))
    }

    /// Counts one send by `user`; `Err(wait)` if over the rate.
    pub fn check(&self, user: &str) -> Result<(), Duration> {
        self.0.attempt(user)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_per_key_and_resets_after_the_window() {
        let limiter = RateLimiter::new(2, Duration::from_secs(60), 100);
        let t0 = Instant::now();
        assert!(limiter.attempt_at("a", t0).is_ok());
        assert!(limiter.attempt_at("a", t0).is_ok());
        let wait = limiter
            .attempt_at("a", t0 + Duration::from_secs(10))
            .unwrap_err();
        assert_eq!(wait, Duration::from_secs(50));
        assert!(limiter.attempt_at("b", t0).is_ok());
        assert!(
            limiter
                .attempt_at("a", t0 + Duration::from_secs(60))
                .is_ok()
        );
    }

    #[test]
    fn tracked_keys_are_bounded() {
        let limiter = RateLimiter::new(5, Duration::from_secs(60), 3);
        let t0 = Instant::now();
        for key in ["a", "b", "c"] {
            limiter.attempt_at(key, t0).unwrap();
        }
        assert!(
            limiter.attempt_at("d", t0).is_err(),
            "full: refuse new keys"
        );
        assert!(
            limiter.attempt_at("a", t0).is_ok(),
            "known keys still count"
        );
        assert!(
            limiter
                .attempt_at("d", t0 + Duration::from_secs(61))
                .is_ok(),
            "expired keys are dropped"
        );
        assert_eq!(limiter.tracked(), 1);
    }
}
