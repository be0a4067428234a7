//! The users a process follows with the own-clients read (see
//! [`super::subscribe`]): each held by the user's streams here, with the
//! position from which this process's history holds the user's events.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::event_id::EventId;
use crate::target::{Scope, Target, UserId};

/// One user this process follows: held by each of the user's streams
/// here (the count of holders is the `Arc`'s).
pub(super) struct Interest {
    held: Arc<()>,
    /// From where this process's history holds every event of the user
    /// (`None`: not yet known; the history's newest position counts).
    floor: Option<EventId>,
    /// Since when no stream holds it.
    idle_since: Option<Instant>,
}

/// The users followed, shared by the handle (which adds) and the task
/// (which subscribes and drops).
#[derive(Default)]
pub(super) struct Followed {
    users: HashMap<UserId, Interest>,
    /// Whether a subscription connection serves requests now. Changed
    /// under the same lock that adds users, so a user added is either in
    /// the next connection's first subscription (and what it missed is
    /// read from the stream) or asked of a connection that will answer
    /// (or drop the request when it fails).
    accepting: bool,
}

/// What [`Followed::hold`] found.
pub(super) struct Held {
    pub(super) held: Arc<()>,
    /// The user's floor is known (its channel is subscribed).
    pub(super) known: bool,
    /// A request sent now will be answered.
    pub(super) accepting: bool,
}

impl Followed {
    /// Holds `user` (added if new).
    pub(super) fn hold(&mut self, user: &UserId) -> Held {
        let interest = self.users.entry(user.clone()).or_insert_with(|| Interest {
            held: Arc::new(()),
            floor: None,
            idle_since: None,
        });
        interest.idle_since = None;
        Held {
            held: interest.held.clone(),
            known: interest.floor.is_some(),
            accepting: self.accepting,
        }
    }

    /// The user's floor: `None` if the user is not followed (its events
    /// are not read here at all).
    pub(super) fn floor(&self, user: &UserId) -> Option<Option<EventId>> {
        self.users.get(user).map(|i| i.floor)
    }

    /// A new subscription connection serves requests from now on; the
    /// users to subscribe first (every one followed).
    pub(super) fn accept(&mut self) -> Vec<UserId> {
        self.accepting = true;
        self.users.keys().cloned().collect()
    }

    /// The connection is gone: nobody new waits for it.
    pub(super) fn refuse(&mut self) {
        self.accepting = false;
    }

    /// Every subscribed user without a floor (in this history) gets
    /// `cursor`: the history holds each of its events after it (its
    /// channel was subscribed before the stream's newest id was read).
    pub(super) fn settle(&mut self, subscribed: &HashSet<UserId>, cursor: EventId) {
        for (user, interest) in &mut self.users {
            if interest
                .floor
                .is_none_or(|floor| floor.epoch != cursor.epoch)
                && subscribed.contains(user)
            {
                interest.floor = Some(cursor);
            }
        }
    }

    pub(super) fn wants(&self, target: &Target) -> bool {
        match target.scope() {
            Scope::User(user) => self.users.contains_key(user),
            _ => true,
        }
    }

    /// Drops the users no stream has held for `after` (counted from the
    /// first look that found none); returns them.
    pub(super) fn drop_idle(&mut self, now: Instant, after: Duration) -> Vec<UserId> {
        let mut gone = Vec::new();
        self.users.retain(|user, interest| {
            if Arc::strong_count(&interest.held) > 1 {
                interest.idle_since = None;
                return true;
            }
            let since = *interest.idle_since.get_or_insert(now);
            let keep = now.duration_since(since) < after;
            if !keep {
                gone.push(user.clone());
            }
            keep
        });
        gone
    }

    pub(super) fn len(&self) -> usize {
        self.users.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_are_wanted_while_followed_and_wider_targets_always() {
        let mut followed = Followed::default();
        let Held {
            held,
            known,
            accepting,
        } = followed.hold(&UserId::new("a"));
        assert!(!known && !accepting);
        assert!(followed.wants(&Target::user(UserId::new("a"))));
        assert!(!followed.wants(&Target::user(UserId::new("b"))));
        assert!(followed.wants(&Target::all()));
        assert!(followed.wants(&Target::tag("page", "home")));
        assert_eq!(followed.floor(&UserId::new("b")), None);
        assert_eq!(followed.floor(&UserId::new("a")), Some(None));
        assert_eq!(Arc::strong_count(&held), 2);
        drop(held);
        assert_eq!(
            Arc::strong_count(&followed.users[&UserId::new("a")].held),
            1
        );
    }
}
