//! The registry's side of the Redis bus: the history follows the Redis
//! stream (positions from the stream, restarts when the stream changes or
//! cannot be followed), and the other processes' connections count toward
//! the per-user limit.

use std::collections::HashMap;
use std::sync::PoisonError;
use std::time::Instant;

use bytes::Bytes;

use super::history::{History, ResetReason};
use super::registration::reset_frame;
use super::{DisconnectReason, Registry, frame};
use crate::event::Event;
use crate::event_id::{Epoch, EventId, Position, StreamId};
use crate::event_id::{InboxId, InboxSeq, InboxStamp};
use crate::target::{Target, UserId};

/// An event the history holds: its position, target and content.
#[cfg_attr(not(feature = "redis"), allow(dead_code))] // used by the Redis bus
pub(crate) type Recent = (Position, Target, Event, Option<InboxStamp>);

/// A recent event framed for the history: position, target, frame, the
/// inbox row it carries, and the inbox position after it.
pub(super) type Framed = (Position, Target, Bytes, Option<InboxId>, InboxSeq);

#[cfg_attr(not(feature = "redis"), allow(dead_code))] // the Redis bus's
impl Registry {
    /// Delivers an event that came back from the bus's shared stream, at
    /// the position the stream gave it. An id from another history than
    /// the one followed so far restarts the history first (every client
    /// gets an `sse-reset`).
    #[cfg_attr(not(feature = "redis"), allow(dead_code))] // used by the Redis bus
    pub(crate) fn deliver(
        &self,
        partition: usize,
        id: EventId,
        target: &Target,
        event: &Event,
        inbox: Option<InboxStamp>,
    ) -> usize {
        let started = self.metrics.is_some().then(Instant::now);
        let mut history = self.lock_history(partition);
        if history.epoch() != id.epoch || !history.is_following() {
            let before = id.position.before();
            self.restart_locked(
                (partition, &mut history),
                (id.epoch, before, true),
                Vec::new(),
                true,
            );
        }
        if id.position <= history.last() {
            // Already delivered (a catch-up overlapping the live read).
            return 0;
        }
        if let Some(metrics) = &self.metrics {
            // A stream entry's position is its id: append time (ms), seq.
            metrics.bus_lag(id.position.major);
        }
        self.publish_locked(
            (partition, history),
            id.position,
            target,
            event,
            inbox,
            started,
        )
    }

    /// Follows another history from now on: `epoch`, complete after
    /// `last`, holding `recent` (already framed, in order, not delivered
    /// again). Every connected client of the partition is sent an
    /// `sse-reset`: what it missed cannot be told apart from what it saw.
    pub(crate) fn restart_history(&self, partition: usize, from: EventId, recent: Vec<Recent>) {
        self.restart_following(partition, from, recent, true);
    }

    /// Forgets what the history holds up to `from` (a later resume from
    /// before it gets `sse-reset`), without telling connected clients:
    /// for a gap they were already told about.
    pub(crate) fn forget_before(&self, partition: usize, from: EventId) {
        self.restart_following(partition, from, Vec::new(), false);
    }

    fn restart_following(&self, partition: usize, from: EventId, recent: Vec<Recent>, tell: bool) {
        let mut history = self.lock_history(partition);
        // Each entry at the inbox position after it (never back).
        let mut seq = history.seq();
        let framed = recent
            .into_iter()
            .map(|(position, target, event, inbox)| {
                let id = EventId {
                    epoch: from.epoch,
                    position,
                };
                if let Some(stamp) = inbox {
                    seq = Some(seq.map_or(stamp.seq, |now| now.max(stamp.seq)));
                }
                let id = StreamId::new(id, seq).with_inbox(inbox.map(|s| s.id));
                let row = inbox.map(|s| s.id);
                (
                    position,
                    target,
                    frame(id, &event),
                    row,
                    seq.unwrap_or_default(),
                )
            })
            .collect();
        self.restart_locked(
            (partition, &mut history),
            (from.epoch, from.position, true),
            framed,
            tell,
        );
    }

    /// The history followed now, the position up to which it holds
    /// nothing any more (a resume from before it needs the bus's older
    /// entries, or an `sse-reset`), and whether it is the bus's.
    pub fn history_floor(&self, partition: usize) -> (EventId, bool) {
        let mut history = self.lock_history(partition);
        let floor = history.floor(Instant::now());
        (history.id(floor), history.is_following())
    }

    /// Moves the history's newest position up to `id` without an entry:
    /// this process has every entry up to it that its clients need (the
    /// own-clients read, after a barrier), so a client registered now
    /// receives every event after it, and an id up to it is one to
    /// resume from.
    pub(crate) fn read_up_to(&self, partition: usize, id: EventId) {
        let mut history = self.lock_history(partition);
        if history.epoch() == id.epoch && history.is_following() {
            history.skip_to(id.position);
        }
    }

    /// Moves the inbox position up to `seq` (servers with an inbox): the
    /// own-clients read, after a barrier, has every stored notification
    /// its streams need up to the stream's newest entry, and `seq` is the
    /// highest published by then (what a process reading the whole stream
    /// would have seen).
    pub(crate) fn advance_inbox_seq(&self, partition: usize, seq: InboxSeq) {
        let mut history = self.lock_history(partition);
        if history.seq().is_some() {
            history.advance_seq(seq);
        }
    }

    /// The history followed now and its newest position.
    pub fn history_head(&self, partition: usize) -> (EventId, bool) {
        let history = self.lock_history(partition);
        (history.id(history.last()), history.is_following())
    }

    /// Restarts the history as `(epoch, last, shared)` holding `recent`
    /// (framed, not delivered again); with `tell`, every connected client
    /// of the history's partition is sent an `sse-reset` from the new
    /// history's newest position (the other partitions' lost nothing).
    pub(super) fn restart_locked(
        &self,
        (partition, history): (usize, &mut History),
        (epoch, last, following): (Epoch, Position, bool),
        recent: Vec<Framed>,
        tell: bool,
    ) {
        history.restart(epoch, last, following);
        let now = Instant::now();
        for (position, target, frame, inbox, seq) in recent {
            if inbox.is_some() {
                history.advance_seq(seq);
            }
            history.record(position, target, frame, inbox, now);
        }
        if !tell {
            return;
        }
        let last = history.last();
        let reset = reset_frame(
            ResetReason::HistoryLost,
            StreamId::new(history.id(last), history.seq()),
        );
        let mut overflowed = Vec::new();
        let mut told = 0;
        let partitioned = self.partitions.count() > 1;
        for (client, entry) in &self.read().clients {
            if partitioned && usize::from(entry.partition) != partition {
                continue;
            }
            match entry.link.queue.push(reset.clone()) {
                Ok(()) => told += 1,
                Err(_) => overflowed.push(*client),
            }
        }
        self.count_reset(ResetReason::HistoryLost, told);
        for client in overflowed {
            self.disconnect(client, DisconnectReason::QueueOverflow);
        }
    }

    /// The users with at least `min` connections here, most first, at
    /// most `max` of them (what this process reports to the others).
    pub fn busy_users(&self, min: usize, max: usize) -> Vec<(UserId, usize)> {
        let mut busy: Vec<(UserId, usize)> = self
            .read()
            .by_user
            .iter()
            .filter(|(_, ids)| ids.len() >= min)
            .map(|(user, ids)| (user.clone(), ids.len()))
            .collect();
        if busy.len() > max {
            busy.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
            busy.truncate(max);
        }
        busy
    }

    /// The other processes' connections per user, as last reported; the
    /// per-user limit counts them. Approximate by design: reports are a
    /// report interval old, and list only users with several connections.
    pub fn set_remote_users(&self, counts: HashMap<UserId, usize>) {
        *self
            .remote_users
            .write()
            .unwrap_or_else(PoisonError::into_inner) = counts;
    }

    pub(super) fn remote_connections(&self, user: &UserId) -> usize {
        self.remote_users
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(user)
            .copied()
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests;
