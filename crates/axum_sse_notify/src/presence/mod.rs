//! Presence: who is online now, per user and per channel, in every
//! process; and `sse-presence` join/leave events to the streams that ask
//! for them (`?presence=true`), on the channels they are on.
//!
//! Nothing is done per connect or disconnect: the registry's indexes
//! already know this process's members. Every `presence_interval` each
//! process reads them once (O(its connections)) and, with the Redis bus,
//! writes them to Redis (one key per process, expiring after three
//! intervals) and reads the other processes' (two round trips). Each
//! process compares the whole membership with the last it saw and tells
//! its own subscribers what changed, so every subscriber hears each change
//! once, from the process it is connected to. A member gone for less
//! than `presence_debounce` (a page reload, a flapping network) is not
//! announced as leaving, nor as joining again. A process killed without
//! a goodbye drops out when its key expires: its members leave within
//! three intervals plus the debounce plus one interval.

#[cfg(feature = "redis")]
mod shared;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::bus::Bus;
use crate::event::Event;
use crate::registry::{PresenceSnapshot, Registry};
use crate::target::{PRESENCE_KEY, Tag, Target, UserId};

/// A user on a channel.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Member {
    pub user: UserId,
    /// The display name its streams carry.
    pub name: String,
}

/// A channel's members now, in every process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChannelPresence {
    pub channel: Tag,
    pub members: Vec<Member>,
}

/// Whether a user has a stream open, in any process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UserPresence {
    pub user: UserId,
    pub online: bool,
    pub connections: usize,
}

/// The payload of an `sse-presence` event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
struct Change<'a> {
    channel: &'a Tag,
    user: &'a UserId,
    name: &'a str,
    action: &'static str,
}

/// Presence of one process (and, with Redis, of the others). Cheap to
/// clone.
#[derive(Clone)]
pub struct Presence {
    inner: Arc<State>,
}

struct State {
    registry: Arc<Registry>,
    /// The other processes' members, as last read from Redis.
    remote: RwLock<PresenceSnapshot>,
    #[cfg(feature = "redis")]
    shared: Option<shared::SharedPresence>,
}

impl Presence {
    pub(crate) fn new(bus: &Bus) -> Self {
        Presence {
            inner: Arc::new(State {
                registry: bus.registry().clone(),
                remote: RwLock::new(PresenceSnapshot::default()),
                #[cfg(feature = "redis")]
                shared: shared::SharedPresence::for_bus(bus),
            }),
        }
    }

    fn remote(&self) -> std::sync::RwLockReadGuard<'_, PresenceSnapshot> {
        self.inner
            .remote
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// `channel`'s members: this process's now (its index entry only),
    /// the others' as of their last report (at most one interval old).
    pub fn channel(&self, channel: &Tag) -> ChannelPresence {
        let mut members: BTreeMap<UserId, String> = self
            .inner
            .registry
            .channel_members(channel)
            .into_iter()
            .map(|(user, name)| (user, name.to_string()))
            .collect();
        let remote = self.remote();
        for user in remote.channels.get(channel).into_iter().flatten() {
            let name = remote
                .users
                .get(user)
                .map_or_else(|| user.to_string(), |(name, _)| name.to_string());
            members.entry(user.clone()).or_insert(name);
        }
        ChannelPresence {
            channel: channel.clone(),
            members: members
                .into_iter()
                .map(|(user, name)| Member { user, name })
                .collect(),
        }
    }

    /// Whether `user` is online, and with how many streams.
    pub fn user(&self, user: &UserId) -> UserPresence {
        let here = self.inner.registry.user_connections(user);
        let there = self.remote().users.get(user).map_or(0, |(_, n)| *n);
        UserPresence {
            user: user.clone(),
            online: here + there > 0,
            connections: here + there,
        }
    }

    /// Starts the loop that shares this process's members and announces
    /// joins and leaves (on the current runtime). Without it, queries see
    /// this process only and no events are sent.
    pub fn spawn(&self) -> tokio::task::JoinHandle<()> {
        let presence = self.clone();
        let config = self.inner.registry.config();
        let (interval, debounce) = (config.presence_interval, config.presence_debounce);
        tokio::spawn(async move {
            if interval.is_zero() {
                return;
            }
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut changes = Changes::new(debounce);
            loop {
                tick.tick().await;
                let local = presence.inner.registry.presence_snapshot();
                #[cfg(feature = "redis")]
                if let Some(shared) = &presence.inner.shared
                    && let Some(others) = shared.exchange(&local, interval).await
                {
                    *presence
                        .inner
                        .remote
                        .write()
                        .unwrap_or_else(PoisonError::into_inner) = others;
                }
                let members = members(&local, &presence.remote());
                for (key, name, action) in changes.update(members, Instant::now()) {
                    presence.announce(&key.0, &key.1, &name, action);
                }
            }
        })
    }

    /// Tells this process's streams on `channel` that asked for presence.
    fn announce(&self, channel: &Tag, user: &UserId, name: &str, action: &'static str) {
        let Ok(asked) = Tag::new(PRESENCE_KEY, "on") else {
            return;
        };
        let target = Target::all().with(channel.clone()).with(asked);
        let change = Change {
            channel,
            user,
            name,
            action,
        };
        let event = Event::reserved("sse-presence", &change);
        self.inner.registry.send_transient(&target, &event);
    }
}

type Key = (Tag, UserId);

/// Every (channel, user) pair of the cluster, with the user's name.
fn members(local: &PresenceSnapshot, remote: &PresenceSnapshot) -> HashMap<Key, String> {
    let mut out = HashMap::new();
    for snapshot in [local, remote] {
        for (channel, users) in &snapshot.channels {
            for user in users {
                let name = local
                    .users
                    .get(user)
                    .or_else(|| remote.users.get(user))
                    .map_or_else(|| user.to_string(), |(name, _)| name.to_string());
                out.insert((channel.clone(), user.clone()), name);
            }
        }
    }
    out
}

/// What was announced, and who has been missing since when.
struct Changes {
    debounce: Duration,
    /// `None` until the first look: what is there then is not news.
    announced: Option<HashMap<Key, String>>,
    missing: HashMap<Key, Instant>,
}

impl Changes {
    fn new(debounce: Duration) -> Self {
        Changes {
            debounce,
            announced: None,
            missing: HashMap::new(),
        }
    }

    /// The joins and leaves to announce, given the members now.
    fn update(
        &mut self,
        now_members: HashMap<Key, String>,
        now: Instant,
    ) -> Vec<(Key, String, &'static str)> {
        let Some(announced) = &mut self.announced else {
            self.announced = Some(now_members);
            return Vec::new();
        };
        let mut out = Vec::new();
        for (key, name) in &now_members {
            // Back within the debounce: neither a leave nor a join.
            self.missing.remove(key);
            if !announced.contains_key(key) {
                announced.insert(key.clone(), name.clone());
                out.push((key.clone(), name.clone(), "join"));
            }
        }
        let gone: Vec<Key> = announced
            .keys()
            .filter(|key| !now_members.contains_key(*key))
            .cloned()
            .collect();
        for key in gone {
            let since = *self.missing.entry(key.clone()).or_insert(now);
            if now.duration_since(since) >= self.debounce {
                self.missing.remove(&key);
                if let Some(name) = announced.remove(&key) {
                    out.push((key, name, "leave"));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(channel: &str, user: &str) -> Key {
        (Tag::parse(channel).unwrap(), UserId::new(user))
    }

    fn members(pairs: &[(&str, &str)]) -> HashMap<Key, String> {
        pairs
            .iter()
            .map(|(c, u)| (key(c, u), u.to_string()))
            .collect()
    }

    fn actions(out: Vec<(Key, String, &'static str)>) -> Vec<(String, &'static str)> {
        let mut v: Vec<_> = out
            .into_iter()
            .map(|((c, u), _, a)| (format!("{c}/{u}"), a))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn joins_and_leaves_are_announced_once_and_flapping_is_not() {
        let mut changes = Changes::new(Duration::from_secs(2));
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        // The first look is the starting point.
        assert!(changes.update(members(&[("room:a", "ann")]), t0).is_empty());
        assert_eq!(
            actions(changes.update(members(&[("room:a", "ann"), ("room:a", "bob")]), t0 + s)),
            [("room:a/bob".to_string(), "join")]
        );
        // Ann is gone for one look, then back: nothing.
        assert!(
            changes
                .update(members(&[("room:a", "bob")]), t0 + 2 * s)
                .is_empty()
        );
        assert!(
            changes
                .update(members(&[("room:a", "ann"), ("room:a", "bob")]), t0 + 3 * s)
                .is_empty()
        );
        // Bob is gone for the debounce: one leave.
        assert!(
            changes
                .update(members(&[("room:a", "ann")]), t0 + 4 * s)
                .is_empty()
        );
        assert!(
            changes
                .update(members(&[("room:a", "ann")]), t0 + 5 * s)
                .is_empty()
        );
        assert_eq!(
            actions(changes.update(members(&[("room:a", "ann")]), t0 + 6 * s)),
            [("room:a/bob".to_string(), "leave")]
        );
        assert!(
            changes
                .update(members(&[("room:a", "ann")]), t0 + 7 * s)
                .is_empty()
        );
        assert!(changes.missing.is_empty());
    }
}
