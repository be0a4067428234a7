//! How long to wait before the next attempt to reach Redis.

use std::time::Duration;

/// Doubling delays from `FIRST` to `MAX`, each with up to a quarter of
/// random jitter (so that the processes of a cluster do not all knock at
/// the same moment when Redis comes back); reset after a success.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
}

const FIRST: Duration = Duration::from_millis(100);
const MAX: Duration = Duration::from_secs(5);

impl Backoff {
    pub fn new() -> Self {
        Backoff { next: FIRST }
    }

    /// The delay before the next attempt; the one after is longer.
    pub fn next_delay(&mut self) -> Duration {
        let base = self.next;
        self.next = (self.next * 2).min(MAX);
        let jitter = base.as_millis() as u64 / 4;
        base + Duration::from_millis(rand::random::<u64>() % (jitter + 1))
    }

    pub fn reset(&mut self) {
        self.next = FIRST;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap_and_reset() {
        let mut backoff = Backoff::new();
        let first = backoff.next_delay();
        assert!(first >= FIRST && first <= FIRST + FIRST / 4);
        for _ in 0..20 {
            assert!(backoff.next_delay() <= MAX + MAX / 4);
        }
        assert!(backoff.next_delay() >= MAX);
        backoff.reset();
        assert!(backoff.next_delay() < FIRST * 2);
    }
}
