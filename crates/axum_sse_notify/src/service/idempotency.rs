//! Idempotency keys: a publish that carries a key already seen within the
//! window answers what the first one answered and delivers nothing again.
//!
//! Keys are per service token (two services may pick the same key). In
//! one process they live in a bounded map; with the Redis bus, in Redis,
//! so a retry that lands on another process is recognised too. A key is
//! claimed before its event is published ("in flight": a concurrent retry
//! gets 409) and completed with the result right after; a publish that
//! fails gives its key back, so a retry can try again.

#[cfg(feature = "redis")]
mod redis_keys;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Longest key, in bytes.
pub const MAX_KEY_LEN: usize = 200;

/// What a claim found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Claim {
    /// Not seen: publish, then complete.
    Fresh,
    /// Published before; its result (JSON).
    Done(String),
    /// Another request is publishing it now.
    InFlight,
}

/// Why a key could not be checked; nothing is published then.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum KeyError {
    #[error("{0} idempotency keys are held within the window; try again later")]
    Full(usize),
    #[error("the idempotency store (Redis) did not answer: {0}")]
    #[cfg_attr(not(feature = "redis"), allow(dead_code))] // only Redis can be away
    Unavailable(String),
}

/// Whether `key` is a usable idempotency key: 1 to [`MAX_KEY_LEN`] bytes
/// of visible ASCII.
pub fn valid_key(key: &str) -> bool {
    !key.is_empty() && key.len() <= MAX_KEY_LEN && key.bytes().all(|b| b.is_ascii_graphic())
}

#[derive(Clone)]
pub(crate) enum Keys {
    Local(Arc<Mutex<LocalKeys>>),
    #[cfg(feature = "redis")]
    Redis(Arc<redis_keys::RedisKeys>),
}

impl Keys {
    pub(crate) fn local(window: Duration, max: usize) -> Self {
        Keys::Local(Arc::new(Mutex::new(LocalKeys::new(window, max))))
    }

    #[cfg(feature = "redis")]
    pub(crate) fn redis(bus: &crate::bus::BusConfig, window: Duration) -> Result<Self, String> {
        Ok(Keys::Redis(Arc::new(redis_keys::RedisKeys::new(
            bus, window,
        )?)))
    }

    /// `scope` is the token's name.
    pub(crate) async fn claim(&self, scope: &str, key: &str) -> Result<Claim, KeyError> {
        match self {
            Keys::Local(keys) => lock(keys).claim(&full_key(scope, key), Instant::now()),
            #[cfg(feature = "redis")]
            Keys::Redis(keys) => keys.claim(&full_key(scope, key)).await,
        }
    }

    pub(crate) async fn complete(&self, scope: &str, key: &str, result: String) {
        match self {
            Keys::Local(keys) => lock(keys).complete(&full_key(scope, key), result, Instant::now()),
            #[cfg(feature = "redis")]
            Keys::Redis(keys) => keys.complete(&full_key(scope, key), result).await,
        }
    }

    pub(crate) async fn release(&self, scope: &str, key: &str) {
        match self {
            Keys::Local(keys) => lock(keys).release(&full_key(scope, key)),
            #[cfg(feature = "redis")]
            Keys::Redis(keys) => keys.release(&full_key(scope, key)).await,
        }
    }
}

fn lock(keys: &Mutex<LocalKeys>) -> std::sync::MutexGuard<'_, LocalKeys> {
    keys.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Token names never contain `:`, so the pair cannot be confused.
fn full_key(scope: &str, key: &str) -> String {
    format!("{scope}:{key}")
}

/// The in-process store: every key with its expiry, oldest first.
pub(crate) struct LocalKeys {
    window: Duration,
    max: usize,
    entries: HashMap<String, Entry>,
    /// (expiry, key) in claim order; an entry completed later keeps its
    /// place (its expiry moves by at most one publish).
    order: VecDeque<(Instant, String)>,
}

struct Entry {
    expires: Instant,
    result: Option<String>,
}

impl LocalKeys {
    fn new(window: Duration, max: usize) -> Self {
        LocalKeys {
            window,
            max: max.max(1),
            entries: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    fn purge(&mut self, now: Instant) {
        while let Some((expires, _)) = self.order.front() {
            if *expires > now {
                break;
            }
            if let Some((_, key)) = self.order.pop_front()
                && self.entries.get(&key).is_some_and(|e| e.expires <= now)
            {
                self.entries.remove(&key);
            }
        }
    }

    fn claim(&mut self, key: &str, now: Instant) -> Result<Claim, KeyError> {
        self.purge(now);
        if let Some(entry) = self.entries.get(key) {
            return Ok(match &entry.result {
                Some(result) => Claim::Done(result.clone()),
                None => Claim::InFlight,
            });
        }
        if self.entries.len() >= self.max {
            return Err(KeyError::Full(self.max));
        }
        let expires = now + self.window;
        self.entries.insert(
            key.to_string(),
            Entry {
                expires,
                result: None,
            },
        );
        self.order.push_back((expires, key.to_string()));
        Ok(Claim::Fresh)
    }

    fn complete(&mut self, key: &str, result: String, now: Instant) {
        if let Some(entry) = self.entries.get_mut(key) {
            entry.result = Some(result);
            entry.expires = entry.expires.max(now);
        }
    }

    fn release(&mut self, key: &str) {
        // Its place in `order` goes when it comes up: a key claimed again
        // meanwhile has a later expiry there too.
        self.entries.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_fresh_once_then_in_flight_then_done_until_the_window_ends() {
        let mut keys = LocalKeys::new(Duration::from_secs(60), 10);
        let t0 = Instant::now();
        assert_eq!(keys.claim("t:a", t0), Ok(Claim::Fresh));
        assert_eq!(keys.claim("t:a", t0), Ok(Claim::InFlight));
        keys.complete("t:a", "{\"n\":1}".into(), t0);
        assert_eq!(keys.claim("t:a", t0), Ok(Claim::Done("{\"n\":1}".into())));
        assert_eq!(keys.claim("u:a", t0), Ok(Claim::Fresh));
        let later = t0 + Duration::from_secs(61);
        assert_eq!(keys.claim("t:a", later), Ok(Claim::Fresh));
    }

    #[test]
    fn a_released_key_is_fresh_again_and_the_map_is_bounded() {
        let mut keys = LocalKeys::new(Duration::from_secs(60), 2);
        let t0 = Instant::now();
        assert_eq!(keys.claim("t:a", t0), Ok(Claim::Fresh));
        keys.release("t:a");
        assert_eq!(keys.claim("t:a", t0), Ok(Claim::Fresh));
        assert_eq!(keys.claim("t:b", t0), Ok(Claim::Fresh));
        assert_eq!(keys.claim("t:c", t0), Err(KeyError::Full(2)));
        // Once the window has passed, room again.
        let later = t0 + Duration::from_secs(60);
        assert_eq!(keys.claim("t:c", later), Ok(Claim::Fresh));
        assert_eq!(keys.entries.len(), 1);
        assert_eq!(keys.order.len(), 1);
    }

    #[test]
    fn keys_are_visible_ascii() {
        assert!(valid_key("order-17/retry:2"));
        for bad in ["", "a b", "é", &"k".repeat(MAX_KEY_LEN + 1)] {
            assert!(!valid_key(bad), "{bad}");
        }
    }
}
