//! What presence reads from this process's connections, and how its
//! join/leave events reach them: frames without an id (not in the
//! history, never replayed), like a heartbeat.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use bytes::Bytes;

use super::queue::Full;
use super::{DisconnectReason, Registry};
use crate::event::{Event, write_frame};
use crate::target::{RESERVED_TAG_KEYS, Tag, Target, UserId};

/// This process's members: users with their name and open streams, and
/// each channel's users. Channels are the tags under keys that are not
/// reserved.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PresenceSnapshot {
    pub users: HashMap<UserId, (Arc<str>, usize)>,
    pub channels: HashMap<Tag, BTreeSet<UserId>>,
}

impl Registry {
    /// Reads the user and tag indexes once. Under the read lock only what
    /// is copied out (reference counts, no strings); the maps are built
    /// after it is released, so registrations wait for the copy at most.
    pub fn presence_snapshot(&self) -> PresenceSnapshot {
        let (users, channels) = {
            let indexes = self.read();
            let users: Vec<(UserId, Arc<str>, usize)> = indexes
                .by_user
                .iter()
                .filter_map(|(user, clients)| {
                    let entry = indexes.clients.get(clients.first()?)?;
                    Some((user.clone(), entry.username.clone(), clients.len()))
                })
                .collect();
            let channels: Vec<(Tag, Vec<UserId>)> = indexes
                .by_tag
                .iter()
                .filter(|(tag, _)| !RESERVED_TAG_KEYS.contains(&tag.key()))
                .map(|(tag, clients)| {
                    let members = clients
                        .iter()
                        .filter_map(|client| indexes.clients.get(client))
                        .map(|entry| entry.user.clone())
                        .collect();
                    (tag.clone(), members)
                })
                .collect();
            (users, channels)
        };
        PresenceSnapshot {
            users: users
                .into_iter()
                .map(|(user, name, n)| (user, (name, n)))
                .collect(),
            channels: channels
                .into_iter()
                .map(|(tag, members)| (tag, members.into_iter().collect()))
                .collect(),
        }
    }

    /// One channel's users here, with their names: that channel's index
    /// entry only.
    pub fn channel_members(&self, channel: &Tag) -> Vec<(UserId, Arc<str>)> {
        let indexes = self.read();
        let Some(clients) = indexes.by_tag.get(channel) else {
            return Vec::new();
        };
        clients
            .iter()
            .filter_map(|client| indexes.clients.get(client))
            .map(|entry| (entry.user.clone(), entry.username.clone()))
            .collect()
    }

    /// How many streams `user` has open here.
    pub fn user_connections(&self, user: &UserId) -> usize {
        self.read().by_user.get(user).map_or(0, Vec::len)
    }

    /// Queues `event` without an id for the clients `target` selects:
    /// not kept for replay. Returns the clients reached.
    pub(crate) fn send_transient(&self, target: &Target, event: &Event) -> usize {
        let mut out = Vec::with_capacity(event.data().len() + 64);
        write_frame(&mut out, None, event.name(), event.data());
        let frame = Bytes::from(out);
        let mut delivered = 0;
        let mut overflowed = Vec::new();
        self.read().for_each_match(target, |client, entry| {
            match entry.link.queue.push(frame.clone()) {
                Ok(()) => delivered += 1,
                Err(Full) => overflowed.push(client),
            }
        });
        for client in overflowed {
            self.disconnect(client, DisconnectReason::QueueOverflow);
        }
        delivered
    }
}
