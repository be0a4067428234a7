//! Who each session is, remembered for a few seconds, for stream
//! connects only.
//!
//! Every `GET /api/sse` reads its session from the database (one query
//! through SQLite's worker thread or a Postgres round trip), and the same
//! sign-in connects again and again: each tab, each reconnect, a restart's
//! storm. This remembers the answer for `ttl` (at most [`MAX_TTL`]), and
//! only that route uses it. What ends a session ends what is remembered of
//! it: a sign-out or new sign-in in this process (the session store says
//! so, before and after its write), a sign-out anywhere in the cluster
//! (the registry says so when the kick arrives over the bus, and also
//! refuses that session's new streams for two minutes), a role change
//! (the role watcher forgets the user before it ends the user's streams).
//! While the bus is not connected, kicks from other processes may not
//! arrive: then nothing is remembered, and every connect reads the
//! database. Left: a process that lost Redis while this one kept it holds
//! its sign-outs' kicks until it is back; this process admits that
//! session's new streams for at most `ttl` after its last read (its open
//! streams, as before this cache, until the kick arrives). Pages and
//! server functions always read the database.

use std::collections::hash_map::Entry as MapEntry;
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tower_sessions::session::Id;

use super::CurrentUser;
use crate::sse::{Identity, SessionId};

/// Whether what is remembered may be used now (see [`StreamSessions::trust_while`]).
type Gate = Box<dyn Fn() -> bool + Send + Sync>;

/// The longest `auth.stream_session_cache` accepted: well below the
/// registry's two-minute memory of ended sessions, the second barrier
/// (beside the kick making every process forget) against a session
/// signed out on another process.
pub const MAX_TTL: Duration = Duration::from_secs(60);

/// The answers kept, by session id. Cheap to share behind an `Arc`.
pub struct StreamSessions {
    ttl: Duration,
    max: usize,
    state: Mutex<State>,
    /// False while kicks from other processes may be missed.
    gate: std::sync::OnceLock<Gate>,
}

#[derive(Default)]
struct State {
    entries: HashMap<Id, Entry>,
    /// Each remembered sign-in's handle (what a kick names) → its session.
    handles: HashMap<SessionId, Id>,
    /// When each entry was put, oldest first: expiry and eviction order.
    /// An item whose entry was replaced or forgotten since is skipped.
    order: VecDeque<(Instant, Id)>,
    /// Bumped by every forget: an answer read from the database before a
    /// forget may be stale, and is not kept (see [`Ticket`]).
    epoch: u64,
}

struct Entry {
    user: CurrentUser,
    identity: Identity,
    put_at: Instant,
    until: Instant,
}

/// Taken before the database is read; an answer is kept only if nothing
/// was forgotten since, so a sign-out racing the read cannot be undone.
#[derive(Debug, Clone, Copy)]
pub struct Ticket(u64);

impl StreamSessions {
    /// `ttl` zero turns the cache off; `max` bounds the entries.
    pub fn new(ttl: Duration, max: usize) -> Self {
        StreamSessions {
            ttl: ttl.min(MAX_TTL),
            max,
            state: Mutex::new(State::default()),
            gate: std::sync::OnceLock::new(),
        }
    }

    pub fn enabled(&self) -> bool {
        !self.ttl.is_zero() && self.max > 0
    }

    /// Uses what is remembered only while `trusted()` says so (the bus is
    /// connected: kicks from other processes arrive); when it does not,
    /// everything is forgotten and every connect reads the database.
    pub fn trust_while(&self, trusted: impl Fn() -> bool + Send + Sync + 'static) {
        let _ = self.gate.set(Box::new(trusted));
    }

    /// Whether what is remembered may be used now; forgets it all if not.
    /// Asked under the lock, so nothing is put while it says no.
    fn trusted(&self, state: &mut State) -> bool {
        let trusted = self.gate.get().is_none_or(|gate| gate());
        if !trusted && !state.order.is_empty() {
            state.epoch += 1;
            state.entries.clear();
            state.handles.clear();
            state.order.clear();
        }
        trusted
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic under the lock leaves the maps consistent (every step
        // is one map operation); the data stays usable.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The remembered answer for `id`, if it is still fresh.
    pub fn get(&self, id: &Id, now: Instant) -> Option<(CurrentUser, Identity)> {
        if !self.enabled() {
            return None;
        }
        let mut state = self.state();
        if !self.trusted(&mut state) {
            return None;
        }
        let entry = state.entries.get(id)?;
        (now < entry.until).then(|| (entry.user.clone(), entry.identity.clone()))
    }

    pub fn ticket(&self) -> Ticket {
        Ticket(self.state().epoch)
    }

    /// Keeps an answer read after `ticket` was taken, until `ttl` from now
    /// or the session's own expiry, whichever is sooner.
    pub fn put(
        &self,
        ticket: Ticket,
        id: Id,
        answer: (CurrentUser, Identity),
        expires: Option<Instant>,
        now: Instant,
    ) {
        if !self.enabled() {
            return;
        }
        let until = expires.map_or(now + self.ttl, |at| at.min(now + self.ttl));
        let mut state = self.state();
        if !self.trusted(&mut state) || state.epoch != ticket.0 || until <= now {
            return;
        }
        state.expire(now, self.ttl);
        while state.order.len() >= self.max {
            state.evict_oldest();
        }
        let (user, identity) = answer;
        let handle = identity.session.clone();
        let replaced = state.entries.insert(
            id,
            Entry {
                user,
                identity,
                put_at: now,
                until,
            },
        );
        if let Some(old) = replaced {
            state.unlink(&old.identity.session, &id);
        }
        state.handles.insert(handle, id);
        state.order.push_back((now, id));
    }

    /// The session ended or changed (sign-out, a new sign-in, a save).
    pub fn forget(&self, id: &Id) {
        let mut state = self.state();
        state.epoch += 1;
        state.remove(id);
    }

    /// The sign-in with this handle ended (a kick, from any process).
    pub fn forget_handle(&self, handle: &SessionId) {
        let mut state = self.state();
        state.epoch += 1;
        if let Some(id) = state.handles.get(handle).copied() {
            state.remove(&id);
        }
    }

    /// The account's role changed: none of its sessions' answers hold.
    pub fn forget_user(&self, user_id: &str) {
        let mut state = self.state();
        state.epoch += 1;
        let ids: Vec<Id> = state
            .entries
            .iter()
            .filter(|(_, entry)| entry.user.id == user_id)
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            state.remove(&id);
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        let state = self.state();
        assert!(state.handles.len() <= state.entries.len());
        state.entries.len()
    }
}

impl State {
    /// Drops the answers put more than `ttl` ago.
    fn expire(&mut self, now: Instant, ttl: Duration) {
        while let Some((at, _)) = self.order.front() {
            if now.saturating_duration_since(*at) < ttl {
                break;
            }
            self.evict_oldest();
        }
    }

    fn evict_oldest(&mut self) {
        if let Some((at, id)) = self.order.pop_front()
            && let MapEntry::Occupied(entry) = self.entries.entry(id)
            && entry.get().put_at == at
        {
            let gone = entry.remove();
            self.unlink(&gone.identity.session, &id);
        }
    }

    fn remove(&mut self, id: &Id) {
        if let Some(gone) = self.entries.remove(id) {
            self.unlink(&gone.identity.session, id);
        }
    }

    /// Drops `handle`'s link if it still leads to `id`.
    fn unlink(&mut self, handle: &SessionId, id: &Id) {
        if self.handles.get(handle) == Some(id) {
            self.handles.remove(handle);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sse::{SessionId, UserId};

    fn answer(user: &str, handle: &str) -> (CurrentUser, Identity) {
        (
            CurrentUser {
                id: user.into(),
                username: format!("name-{user}"),
                is_admin: false,
            },
            Identity {
                user: UserId::new(user),
                username: format!("name-{user}"),
                session: SessionId::new(handle),
                tags: Vec::new(),
                since: None,
            },
        )
    }

    fn id(n: i128) -> Id {
        Id(n)
    }

    #[test]
    fn an_answer_is_kept_for_the_ttl_or_the_session_s_expiry() {
        let cache = StreamSessions::new(Duration::from_secs(5), 10);
        let t0 = Instant::now();
        cache.put(cache.ticket(), id(1), answer("u1", "h1"), None, t0);
        let (user, identity) = cache.get(&id(1), t0).expect("kept");
        assert_eq!((user.id.as_str(), identity.session.as_str()), ("u1", "h1"));
        assert!(
            cache
                .get(&id(1), t0 + Duration::from_millis(4_999))
                .is_some()
        );
        assert!(cache.get(&id(1), t0 + Duration::from_secs(5)).is_none());
        assert!(cache.get(&id(2), t0).is_none(), "another session: nothing");

        // A session expiring in 1 s is kept 1 s, not 5.
        cache.put(
            cache.ticket(),
            id(3),
            answer("u3", "h3"),
            Some(t0 + Duration::from_secs(1)),
            t0,
        );
        assert!(cache.get(&id(3), t0 + Duration::from_millis(999)).is_some());
        assert!(cache.get(&id(3), t0 + Duration::from_secs(1)).is_none());
        // One already expired is not kept at all.
        cache.put(cache.ticket(), id(4), answer("u4", "h4"), Some(t0), t0);
        assert!(cache.get(&id(4), t0).is_none());
    }

    #[test]
    fn forgetting_wins_over_a_read_that_began_before_it() {
        let cache = StreamSessions::new(Duration::from_secs(5), 10);
        let t0 = Instant::now();
        cache.put(cache.ticket(), id(1), answer("u1", "h1"), None, t0);
        cache.forget(&id(1));
        assert!(cache.get(&id(1), t0).is_none());

        // Read from the database, then a sign-out, then the answer arrives.
        let ticket = cache.ticket();
        cache.forget(&id(2));
        cache.put(ticket, id(2), answer("u2", "h2"), None, t0);
        assert!(
            cache.get(&id(2), t0).is_none(),
            "a stale answer is not kept"
        );

        // A role change forgets every session of the user, only them.
        let ticket = cache.ticket();
        cache.put(ticket, id(5), answer("u5", "a"), None, t0);
        cache.put(ticket, id(6), answer("u5", "b"), None, t0);
        cache.put(ticket, id(7), answer("u7", "c"), None, t0);
        cache.forget_user("u5");
        assert!(cache.get(&id(5), t0).is_none());
        assert!(cache.get(&id(6), t0).is_none());
        assert!(cache.get(&id(7), t0).is_some());
        cache.put(ticket, id(5), answer("u5", "a"), None, t0);
        assert!(cache.get(&id(5), t0).is_none(), "read before the change");
    }

    #[test]
    fn a_kick_of_the_sign_in_forgets_it() {
        let cache = StreamSessions::new(Duration::from_secs(5), 10);
        let t0 = Instant::now();
        cache.put(cache.ticket(), id(1), answer("u1", "h1"), None, t0);
        cache.put(cache.ticket(), id(2), answer("u1", "h2"), None, t0);
        cache.forget_handle(&SessionId::new("h1"));
        assert!(cache.get(&id(1), t0).is_none());
        assert!(cache.get(&id(2), t0).is_some(), "the user's other sign-in");
        cache.forget_handle(&SessionId::new("unknown"));
        assert_eq!(cache.len(), 1);
        // Put again (read again from the database): still found by its handle.
        cache.put(cache.ticket(), id(2), answer("u1", "h2"), None, t0);
        cache.forget_handle(&SessionId::new("h2"));
        assert!(cache.get(&id(2), t0).is_none());
        assert_eq!(cache.len(), 0);
        // A read that began before the kick is not kept.
        let ticket = cache.ticket();
        cache.forget_handle(&SessionId::new("h3"));
        cache.put(ticket, id(3), answer("u3", "h3"), None, t0);
        assert!(cache.get(&id(3), t0).is_none());
    }

    #[test]
    fn nothing_is_used_while_kicks_may_be_missed() {
        let cache = StreamSessions::new(Duration::from_secs(5), 10);
        let connected = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let bus = connected.clone();
        cache.trust_while(move || bus.load(std::sync::atomic::Ordering::Relaxed));
        let t0 = Instant::now();
        cache.put(cache.ticket(), id(1), answer("u1", "h1"), None, t0);
        assert!(cache.get(&id(1), t0).is_some());
        connected.store(false, std::sync::atomic::Ordering::Relaxed);
        assert!(cache.get(&id(1), t0).is_none());
        cache.put(cache.ticket(), id(2), answer("u2", "h2"), None, t0);
        connected.store(true, std::sync::atomic::Ordering::Relaxed);
        // Back: what was remembered before is gone, nothing was kept meanwhile.
        assert!(cache.get(&id(1), t0).is_none());
        assert!(cache.get(&id(2), t0).is_none());
        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn the_cache_is_bounded_and_can_be_off() {
        let cache = StreamSessions::new(Duration::from_secs(5), 3);
        let t0 = Instant::now();
        for n in 0..10 {
            let at = t0 + Duration::from_millis(n as u64);
            cache.put(cache.ticket(), id(n), answer("u", "h"), None, at);
        }
        assert_eq!(cache.len(), 3);
        let late = t0 + Duration::from_millis(20);
        assert!(cache.get(&id(6), late).is_none(), "the oldest went first");
        assert!(cache.get(&id(9), late).is_some());
        // Expired answers leave with the next put.
        let later = t0 + Duration::from_secs(6);
        cache.put(cache.ticket(), id(20), answer("u", "h"), None, later);
        assert_eq!(cache.len(), 1);

        let off = StreamSessions::new(Duration::ZERO, 100);
        off.put(off.ticket(), id(1), answer("u", "h"), None, t0);
        assert!(!off.enabled());
        assert!(off.get(&id(1), t0).is_none());
        assert!(StreamSessions::new(Duration::from_secs(600), 1).ttl <= MAX_TTL);
    }
}
