//! Places held for connections still being prepared, and sign-ins that
//! ended.
//!
//! With the Redis bus a stream request may wait (for this process to read
//! the shared stream far enough) and read Redis (the part of a resume older
//! than the history) before it registers. An [`Admission`] is taken first:
//! it counts against `max_clients`, `per_user_max` and `per_address_max`
//! exactly like an open stream, so a flood of requests is refused before
//! any of them costs a wait or a Redis read.
//!
//! A request may also still be on its way to registering when its sign-in
//! ends (sign-out). [`EndedSessions`] remembers, for a while, the sessions
//! whose streams were ended, so such a request is refused instead of
//! streaming on behalf of a session that no longer exists.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Registry;
use crate::target::{SessionId, UserId};

/// Admissions not yet registered, counted like open streams.
#[derive(Default)]
pub(super) struct Pending {
    pub(super) total: usize,
    by_user: HashMap<UserId, usize>,
    by_addr: HashMap<IpAddr, usize>,
}

impl Pending {
    pub(super) fn of_user(&self, user: &UserId) -> usize {
        self.by_user.get(user).copied().unwrap_or(0)
    }

    pub(super) fn of_addr(&self, addr: &IpAddr) -> usize {
        self.by_addr.get(addr).copied().unwrap_or(0)
    }

    pub(super) fn hold(&mut self, user: &UserId, addr: Option<IpAddr>) {
        self.total += 1;
        *self.by_user.entry(user.clone()).or_default() += 1;
        if let Some(addr) = addr {
            *self.by_addr.entry(addr).or_default() += 1;
        }
    }

    pub(super) fn release(&mut self, user: &UserId, addr: Option<IpAddr>) {
        self.total = self.total.saturating_sub(1);
        decrement(&mut self.by_user, user);
        if let Some(addr) = addr {
            decrement(&mut self.by_addr, &addr);
        }
    }
}

fn decrement<K: std::hash::Hash + Eq>(map: &mut HashMap<K, usize>, key: &K) {
    if let Some(n) = map.get_mut(key) {
        *n -= 1;
        if *n == 0 {
            map.remove(key);
        }
    }
}

/// A place held for one connection, from [`Registry::admit`]: register it
/// with [`Registry::register_admitted`], or drop it to give the place back.
pub struct Admission {
    pub(super) registry: Arc<Registry>,
    pub(super) user: UserId,
    pub(super) addr: Option<IpAddr>,
    /// Given back (registered, or dropped).
    pub(super) released: bool,
}

impl Drop for Admission {
    fn drop(&mut self) {
        if !self.released {
            self.registry.write().pending.release(&self.user, self.addr);
        }
    }
}

/// How long an ended session is remembered: longer than any request can
/// spend between reading its identity and registering (a catch-up wait
/// and an older-part read, each bounded by `bus.timeout`).
const ENDED_FOR: Duration = Duration::from_secs(120);

/// Sessions whose streams were ended (sign-out, a new sign-in), recently.
/// Bounded by age and by count: past `max`, the oldest are forgotten.
pub(super) struct EndedSessions {
    set: HashSet<SessionId>,
    order: VecDeque<(Instant, SessionId)>,
    max: usize,
}

impl EndedSessions {
    pub(super) fn new(max: usize) -> Self {
        EndedSessions {
            set: HashSet::new(),
            order: VecDeque::new(),
            max: max.max(1),
        }
    }

    pub(super) fn record(&mut self, session: SessionId, now: Instant) {
        self.trim(now);
        if self.set.insert(session.clone()) {
            self.order.push_back((now, session));
        }
        while self.order.len() > self.max {
            if let Some((_, old)) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
    }

    pub(super) fn contains(&mut self, session: &SessionId, now: Instant) -> bool {
        self.trim(now);
        self.set.contains(session)
    }

    fn trim(&mut self, now: Instant) {
        while let Some((at, _)) = self.order.front() {
            if now.saturating_duration_since(*at) <= ENDED_FOR {
                break;
            }
            if let Some((_, old)) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.set.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ended_sessions_are_bounded_by_count_and_age() {
        let mut ended = EndedSessions::new(2);
        let t0 = Instant::now();
        for s in ["a", "b", "c"] {
            ended.record(SessionId::new(s), t0);
        }
        assert_eq!(ended.len(), 2);
        assert!(!ended.contains(&SessionId::new("a"), t0));
        assert!(ended.contains(&SessionId::new("c"), t0));
        let later = t0 + ENDED_FOR + Duration::from_secs(1);
        assert!(!ended.contains(&SessionId::new("c"), later));
        assert_eq!(ended.len(), 0);
    }
}
