//! Fixed-window counters: sign-in attempts (per client address, per
//! username and address), failed sign-ins per username (a throttle), and
//! sends per user.
//!
//! Bounded: at most `max_keys` keys are tracked; when full, expired windows
//! are dropped, and if that is not enough the attempt is refused (failing
//! closed beats forgetting an attacker).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

pub use super::shared_count::SharedCount;
use super::shared_count::Verdict;

type Windows = HashMap<String, (Instant, u32)>;

pub struct RateLimiter {
    limit: u32,
    window: Duration,
    max_keys: usize,
    windows: Mutex<Windows>,
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

    fn lock(&self) -> std::sync::MutexGuard<'_, Windows> {
        self.windows.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts one attempt for `key`; `Err(wait)` if over the limit.
    pub fn attempt(&self, key: &str) -> Result<(), Duration> {
        self.attempt_at(key, Instant::now())
    }

    fn attempt_at(&self, key: &str, now: Instant) -> Result<(), Duration> {
        let mut windows = self.lock();
        let Some((start, count)) = self.window_of(&mut windows, key, now) else {
            return Err(self.window);
        };
        if *count >= self.limit {
            return Err(self.window.saturating_sub(now.duration_since(*start)));
        }
        *count += 1;
        Ok(())
    }

    /// [`RateLimiter::attempt`], but a key the full table cannot track is
    /// let through instead of refused: for a limit that another one,
    /// failing closed, already bounds (per username and address, under
    /// the per-address limit). Refusing there would let anyone who fills
    /// the table with made-up pairs refuse every sign-in.
    pub fn attempt_or_untracked(&self, key: &str) -> Result<(), Duration> {
        let now = Instant::now();
        let mut windows = self.lock();
        let Some((start, count)) = self.window_of(&mut windows, key, now) else {
            return Ok(());
        };
        if *count >= self.limit {
            return Err(self.window.saturating_sub(now.duration_since(*start)));
        }
        *count += 1;
        Ok(())
    }

    /// Counts one for `key` whatever the limit (a tally). With the table
    /// full of live windows it is not counted: [`RateLimiter::count`]
    /// then answers "over" for that key anyway.
    pub fn record(&self, key: &str) {
        self.record_at(key, Instant::now());
    }

    fn record_at(&self, key: &str, now: Instant) {
        let mut windows = self.lock();
        if let Some((_, count)) = self.window_of(&mut windows, key, now) {
            *count = count.saturating_add(1);
        }
    }

    /// What `key` counted in its current window, without counting. A key
    /// that cannot be tracked (the table is full) answers `u32::MAX`.
    pub fn count(&self, key: &str) -> u32 {
        self.count_at(key, Instant::now())
    }

    fn count_at(&self, key: &str, now: Instant) -> u32 {
        let mut windows = self.lock();
        if let Some((start, count)) = windows.get(key) {
            return if now.duration_since(*start) < self.window {
                *count
            } else {
                0
            };
        }
        if windows.len() >= self.max_keys {
            self.drop_expired(&mut windows, now);
            if windows.len() >= self.max_keys {
                return u32::MAX;
            }
        }
        0
    }

    /// The current window of `key` (a new one if it had none or its
    /// window ended); `None` when the table is full of live windows.
    fn window_of<'a>(
        &self,
        windows: &'a mut Windows,
        key: &str,
        now: Instant,
    ) -> Option<&'a mut (Instant, u32)> {
        if !windows.contains_key(key) && windows.len() >= self.max_keys {
            self.drop_expired(windows, now);
            if windows.len() >= self.max_keys {
                return None;
            }
        }
        let entry = windows.entry(key.to_string()).or_insert((now, 0));
        if now.duration_since(entry.0) >= self.window {
            *entry = (now, 0);
        }
        Some(entry)
    }

    fn drop_expired(&self, windows: &mut Windows, now: Instant) {
        let window = self.window;
        windows.retain(|_, (start, _)| now.duration_since(*start) < window);
    }

    /// Number of keys tracked (for tests and stats).
    pub fn tracked(&self) -> usize {
        self.lock().len()
    }
}

/// Users whose sends are counted at once, at most (beyond, and with no
/// window expired, a send is refused rather than a user forgotten).
const SEND_KEYS_MAX: usize = 100_000;

/// The per-user send rate of the send server functions: one user cannot
/// flood the others' streams and inboxes. Counted in this process, and
/// with the Redis bus also across the cluster ([`SharedCount`]), so that
/// several processes do not multiply the rate. Cheap to clone.
#[derive(Clone)]
pub struct SendLimit {
    local: Arc<RateLimiter>,
    cluster: Option<Arc<SharedCount>>,
}

impl SendLimit {
    pub fn new(per_user: u32, window: Duration) -> Self {
        SendLimit {
            local: Arc::new(RateLimiter::new(per_user, window, SEND_KEYS_MAX)),
            cluster: None,
        }
    }

    /// Also counted in `cluster` (the bus's Redis), shared by every process.
    pub fn across(mut self, cluster: SharedCount) -> Self {
        self.cluster = Some(Arc::new(cluster));
        self
    }

    /// Counts one send by `user`; `Err(wait)` if over the rate. This
    /// process's own count first (no process alone goes past the rate,
    /// even without Redis), then the cluster's.
    pub async fn check(&self, user: &str) -> Result<(), Duration> {
        self.local.attempt(user)?;
        match &self.cluster {
            Some(cluster) => match cluster.attempt(user).await {
                Verdict::Refused(wait) => Err(wait),
                Verdict::Allowed | Verdict::Unknown => Ok(()),
            },
            None => Ok(()),
        }
    }
}

/// How long each sign-in attempt for a name under attack waits before its
/// password is checked.
pub const LOGIN_SLOWDOWN: Duration = Duration::from_secs(1);

/// Failed sign-ins per username from every address together. A name past
/// `after` failures in a window is under attack: each sign-in attempt for
/// it waits [`LOGIN_SLOWDOWN`] first, which slows guessing down without
/// ever refusing the owner (OWASP: throttle, do not lock out). Refusing is
/// left to the per-address and per-(username, address) limits, which an
/// attacker elsewhere cannot spend for the owner.
pub struct LoginSlowdown {
    failures: RateLimiter,
    after: u32,
    delay: Duration,
}

impl LoginSlowdown {
    pub fn new(after: u32, delay: Duration, window: Duration, max_keys: usize) -> Self {
        LoginSlowdown {
            failures: RateLimiter::new(u32::MAX, window, max_keys),
            after,
            delay,
        }
    }

    /// The wait before checking a password for `name`, if any. With the
    /// table full every name waits: slower for all, locked out for none.
    pub fn delay_for(&self, name: &str) -> Option<Duration> {
        (self.failures.count(name) >= self.after && !self.delay.is_zero()).then_some(self.delay)
    }

    /// Counts a failed sign-in for `name`.
    pub fn failed(&self, name: &str) {
        self.failures.record(name);
    }
}

/// The key a client address is counted under: IPv4 addresses one by one,
/// IPv6 ones by their /64 (one host usually holds a whole /64, and would
/// otherwise count as 2^64 clients).
pub fn address_key(addr: IpAddr) -> String {
    match addr.to_canonical() {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !u128::from(u64::MAX);
            format!("{}/64", std::net::Ipv6Addr::from(prefix))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_pair_table_lets_untracked_keys_through() {
        let limiter = RateLimiter::new(1, Duration::from_secs(60), 2);
        assert!(limiter.attempt_or_untracked("a 1").is_ok());
        assert!(limiter.attempt_or_untracked("b 1").is_ok());
        // Full: a third pair is not tracked, and not refused either.
        assert!(limiter.attempt_or_untracked("c 1").is_ok());
        assert!(limiter.attempt_or_untracked("c 1").is_ok());
        // Tracked pairs keep their limit.
        assert!(limiter.attempt_or_untracked("a 1").is_err());
        // The failing-closed form refuses what it cannot track.
        assert!(limiter.attempt("c 1").is_err());
    }

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

    #[test]
    fn a_tally_counts_past_the_limit_and_a_full_table_counts_as_over() {
        let tally = RateLimiter::new(1, Duration::from_secs(60), 2);
        let t0 = Instant::now();
        for _ in 0..3 {
            tally.record_at("a", t0);
        }
        assert_eq!(tally.count_at("a", t0), 3);
        assert_eq!(tally.count_at("b", t0), 0, "counting does not count");
        tally.record_at("b", t0);
        assert_eq!(tally.count_at("c", t0), u32::MAX, "full");
        assert_eq!(tally.count_at("a", t0 + Duration::from_secs(60)), 0);
        assert_eq!(tally.count_at("c", t0 + Duration::from_secs(61)), 0);
    }

    #[test]
    fn a_name_is_slowed_down_after_its_failures_never_refused() {
        let slowdown = LoginSlowdown::new(2, LOGIN_SLOWDOWN, Duration::from_secs(60), 100);
        assert_eq!(slowdown.delay_for("vera"), None);
        slowdown.failed("vera");
        assert_eq!(slowdown.delay_for("vera"), None);
        slowdown.failed("vera");
        assert_eq!(slowdown.delay_for("vera"), Some(LOGIN_SLOWDOWN));
        assert_eq!(slowdown.delay_for("wanda"), None);
    }

    #[test]
    fn ipv6_addresses_count_by_their_64() {
        let key = |a: &str| address_key(a.parse().unwrap());
        assert_eq!(key("192.0.2.7"), "192.0.2.7");
        assert_eq!(key("::ffff:192.0.2.7"), "192.0.2.7");
        assert_eq!(key("2001:db8:1:2:aaaa::1"), "2001:db8:1:2::/64");
        assert_eq!(key("2001:db8:1:2:bbbb::9"), key("2001:db8:1:2::"));
        assert_ne!(key("2001:db8:1:3::1"), key("2001:db8:1:2::1"));
    }
}
