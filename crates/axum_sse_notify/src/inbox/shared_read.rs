//! One backlog read for the concurrent connects of one user.
//!
//! A fresh stream reads its user's unread notifications up to its inbox
//! position. Several streams of one user opening together (tabs after a
//! deploy, a reconnect storm) would read the same rows once each; here a
//! read that has not started yet is joined by the others that want exactly
//! the same (user, position, limit), and its rows go to all of them.
//!
//! Only a read that has not started is joined: every stream that gets its
//! rows was registered before the query ran, so whatever changes after
//! the query (a new notification, a read mark) reaches it live, as it
//! would had it read alone. A joined read that is abandoned (its request
//! went away) leaves the others to read alone.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::watch;

use super::InboxError;
use super::types::InboxItem;
use crate::event_id::InboxSeq;
use crate::target::UserId;

/// The rows and the user's unread count, as every joined stream gets them.
pub(crate) type Unread = Result<(Arc<Vec<InboxItem>>, u64), InboxError>;

type Key = (UserId, Option<InboxSeq>, usize);
type Slot = Arc<watch::Sender<Option<Unread>>>;

/// Reads waiting to start, by what they read.
#[derive(Default)]
pub(crate) struct SharedReads {
    waiting: Mutex<HashMap<Key, Slot>>,
}

/// What a caller does: lead a read (and tell the others), or wait for one.
pub(crate) enum Turn<'a> {
    Lead(Lead<'a>),
    Join(watch::Receiver<Option<Unread>>),
}

/// A read others may still join until [`Lead::started`]; its result goes
/// to them with [`Lead::finish`]. Dropped unfinished, the joiners are let
/// go (they read alone).
pub(crate) struct Lead<'a> {
    reads: &'a SharedReads,
    key: Option<Key>,
    slot: Slot,
}

impl SharedReads {
    fn waiting(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Slot>> {
        // Each step under the lock is one map operation: a panic leaves
        // the map consistent.
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn turn(&self, user: &UserId, upto: Option<InboxSeq>, max: usize) -> Turn<'_> {
        let key = (user.clone(), upto, max);
        let mut waiting = self.waiting();
        if let Some(slot) = waiting.get(&key) {
            return Turn::Join(slot.subscribe());
        }
        let slot = Arc::new(watch::channel(None).0);
        waiting.insert(key.clone(), slot.clone());
        Turn::Lead(Lead {
            reads: self,
            key: Some(key),
            slot,
        })
    }

    #[cfg(test)]
    pub(crate) fn waiting_len(&self) -> usize {
        self.waiting().len()
    }

    /// How many wait on the read of (user, upto, max), if one is waiting.
    #[cfg(test)]
    pub(crate) fn joiners(&self, user: &UserId, upto: Option<InboxSeq>, max: usize) -> usize {
        self.waiting()
            .get(&(user.clone(), upto, max))
            .map_or(0, |slot| slot.receiver_count())
    }
}

impl Lead<'_> {
    /// The query is about to run: no one joins from here on.
    pub(crate) fn started(&mut self) {
        if let Some(key) = self.key.take() {
            let mut waiting = self.reads.waiting();
            if waiting
                .get(&key)
                .is_some_and(|slot| Arc::ptr_eq(slot, &self.slot))
            {
                waiting.remove(&key);
            }
        }
    }

    pub(crate) fn finish(mut self, unread: &Unread) {
        self.started();
        self.slot.send_replace(Some(unread.clone()));
    }
}

impl Drop for Lead<'_> {
    fn drop(&mut self) {
        self.started();
    }
}

/// What the joined read gave, or `None` if it was abandoned.
pub(crate) async fn joined(mut rx: watch::Receiver<Option<Unread>>) -> Option<Unread> {
    let done = rx.wait_for(Option::is_some).await.ok()?;
    done.clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(n: i64) -> Unread {
        let item = |id| InboxItem {
            id: super::super::types::InboxId(id),
            event: "e".into(),
            payload: "{}".into(),
            created_at: 0,
            read_at: None,
            broadcast: false,
        };
        Ok((Arc::new((1..=n).map(item).collect()), n as u64))
    }

    fn user(name: &str) -> UserId {
        UserId::new(name)
    }

    #[tokio::test]
    async fn reads_not_yet_started_are_joined_by_exactly_the_same_wish() {
        let reads = SharedReads::default();
        let Turn::Lead(mut lead) = reads.turn(&user("u"), Some(InboxSeq(5)), 100) else {
            panic!("the first leads");
        };
        let Turn::Join(same) = reads.turn(&user("u"), Some(InboxSeq(5)), 100) else {
            panic!("the same wish joins");
        };
        // Another user, position or limit is another read.
        for (who, upto, max) in [
            ("v", Some(InboxSeq(5)), 100),
            ("u", Some(InboxSeq(6)), 100),
            ("u", None, 100),
            ("u", Some(InboxSeq(5)), 10),
        ] {
            assert!(matches!(reads.turn(&user(who), upto, max), Turn::Lead(_)));
        }
        lead.started();
        // Started: a later wish reads again, it may not join.
        let Turn::Lead(later) = reads.turn(&user("u"), Some(InboxSeq(5)), 100) else {
            panic!("a started read is not joined");
        };
        lead.finish(&rows(3));
        let got = joined(same).await.expect("the lead's rows");
        assert_eq!(got.expect("rows").0.len(), 3);
        drop(later);
        assert_eq!(reads.waiting_len(), 0, "nothing left behind");
    }

    #[tokio::test]
    async fn an_abandoned_read_lets_its_joiners_go() {
        let reads = SharedReads::default();
        let Turn::Lead(lead) = reads.turn(&user("u"), None, 100) else {
            panic!("leads");
        };
        let Turn::Join(rx) = reads.turn(&user("u"), None, 100) else {
            panic!("joins");
        };
        drop(lead);
        assert!(joined(rx).await.is_none());
        assert_eq!(reads.waiting_len(), 0);
        // And a failed read's error reaches its joiners.
        let Turn::Lead(lead) = reads.turn(&user("u"), None, 100) else {
            panic!("leads");
        };
        let Turn::Join(rx) = reads.turn(&user("u"), None, 100) else {
            panic!("joins");
        };
        lead.finish(&Err(InboxError::Store("down".into())));
        assert_eq!(
            joined(rx).await,
            Some(Err(InboxError::Store("down".into())))
        );
    }
}
