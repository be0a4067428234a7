//! What presence reads from this process's connections, and how its
//! join/leave events reach them: frames without an id (not in the
//! history, never replayed), like a heartbeat.

use std::collections::{BTreeMap, BTreeSet};

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
    pub users: BTreeMap<UserId, (String, usize)>,
    pub channels: BTreeMap<Tag, BTreeSet<UserId>>,
}

impl Registry {
    /// Reads every connection once: O(connections), under the read lock.
    pub fn presence_snapshot(&self) -> PresenceSnapshot {
        let indexes = self.read();
        let mut snapshot = PresenceSnapshot::default();
        for entry in indexes.clients.values() {
            let user = snapshot
                .users
                .entry(entry.user.clone())
                .or_insert_with(|| (entry.username.to_string(), 0));
            user.1 += 1;
            for tag in entry.tags.iter() {
                if RESERVED_TAG_KEYS.contains(&tag.key()) {
                    continue;
                }
                snapshot
                    .channels
                    .entry(tag.clone())
                    .or_default()
                    .insert(entry.user.clone());
            }
        }
        snapshot
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
