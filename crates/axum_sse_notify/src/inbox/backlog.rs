//! What a stream gets from the inbox before live events.
//!
//! **Backlog** (a stream that starts without a position): an `inbox`
//! summary, then the user's newest unread notifications, oldest first.
//! Only rows published up to the stream's inbox position are read; the
//! ones after it were published after the client was registered, so they
//! reach it live. The live copy of a row that is in both (with several
//! processes, stored notifications may reach a history slightly out of
//! order) is dropped, recognised by its inbox id ([`Backlog::ids`]).
//!
//! **Resume** (a client back with an inbox position the history cannot
//! resume from, e.g. after a restart): exactly the stored notifications
//! for it published after its position and up to the stream's, read or
//! not, in publish order, each with its own position on its id (a client
//! that leaves halfway gets the rest next time); then live events, which
//! all come after. An `sse-reset` first says the stored part was resumed.

use std::sync::Arc;

use bytes::Bytes;

use super::shared_read::{self, Turn, Unread};
use super::types::{InboxId, InboxSummary};
use super::{Inbox, InboxError};
use crate::event::{EventName, write_frame};
use crate::event_id::{InboxSeq, StreamId};
use crate::metrics::{DbOp, timed};
use crate::registry::{StoredGap, reset_frame_with};
use crate::target::UserId;

/// The frames to write before live events, and the inbox ids they carry.
pub struct Backlog {
    pub frames: Bytes,
    pub ids: Vec<InboxId>,
}

impl Inbox {
    /// The backlog of a stream that starts at `start`: every frame has
    /// `start` as its id (with the inbox id), so a reconnect resumes
    /// after it.
    pub async fn backlog(
        &self,
        user: &UserId,
        start: StreamId,
        max: usize,
    ) -> Result<Backlog, InboxError> {
        let (items, unread) = self.unread_shared(user, start.seq, max).await?;
        // A stored name that is no longer acceptable (e.g. reserved since)
        // stays in the inbox listing but is not streamed.
        let items: Vec<_> = items
            .iter()
            .filter_map(|item| Some((EventName::new(item.event.clone()).ok()?, item)))
            .collect();
        let mut out = Vec::new();
        let summary = InboxSummary {
            unread,
            replayed: items.len() as u64,
            ..InboxSummary::default()
        };
        write_summary(&mut out, start, &summary);
        let mut ids = Vec::with_capacity(items.len());
        for (name, item) in items {
            let id = start.with_inbox(Some(item.id)).to_string();
            write_frame(&mut out, Some(&id), &name, &item.payload);
            ids.push(item.id);
        }
        Ok(Backlog {
            frames: Bytes::from(out),
            ids,
        })
    }

    /// The stored part of a resume (see the module's doc): its `sse-reset`
    /// if the history could not resume the stream, the `inbox` summary,
    /// then the notifications of `gap` (the newest `max` of them if there
    /// are more: the reset says how many were left out). `start`: the
    /// stream's start, at the client's inbox position.
    pub async fn resume(
        &self,
        user: &UserId,
        start: StreamId,
        gap: &StoredGap,
        max: usize,
    ) -> Result<Backlog, InboxError> {
        let permit = self.reader().await?;
        let metrics = self.inner.bus.registry().metrics();
        let (items, total) = if gap.after < gap.upto {
            let read = self
                .inner
                .store
                .published_between(user, gap.after, gap.upto, max);
            timed(metrics, DbOp::InboxRead, read)
                .await
                .map_err(InboxError::store)?
        } else {
            (Vec::new(), 0)
        };
        let count = self.inner.store.unread_count(user);
        let unread = timed(metrics, DbOp::InboxRead, count)
            .await
            .map_err(InboxError::store)?;
        drop(permit);
        let read = items.len() as u64;
        let items: Vec<_> = items
            .into_iter()
            .filter(|(item, _)| !gap.replayed.contains(&item.id))
            .filter_map(|(item, seq)| Some((EventName::new(item.event.clone()).ok()?, item, seq)))
            .collect();
        // Left out as beyond the limit; not those the replay sends.
        let skipped = total.saturating_sub(read);
        let mut out = Vec::new();
        if let Some(reason) = gap.reset {
            let resumed = (items.len() as u64, skipped);
            out.extend_from_slice(&reset_frame_with(reason, start, Some(resumed)));
        }
        let summary = InboxSummary {
            unread,
            // Read ones among them too: the count is the summary's.
            replayed: items.len() as u64,
            ..InboxSummary::default()
        };
        write_summary(&mut out, start, &summary);
        let mut ids = Vec::with_capacity(items.len());
        for (name, item, seq) in items {
            // Its own position: a client that leaves after it gets the
            // rest of the gap, not the whole of it, next time.
            let id = StreamId::new(start.event, Some(seq)).with_inbox(Some(item.id));
            write_frame(&mut out, Some(&id.to_string()), &name, &item.payload);
            ids.push(item.id);
        }
        Ok(Backlog {
            frames: Bytes::from(out),
            ids,
        })
    }

    /// The user's unread rows up to `upto`, read once for every backlog
    /// that wants the same and has not started reading (`shared_read`).
    async fn unread_shared(&self, user: &UserId, upto: Option<InboxSeq>, max: usize) -> Unread {
        match self.inner.backlog_reads.turn(user, upto, max) {
            Turn::Lead(mut lead) => {
                let permit = self.reader().await?;
                lead.started();
                let unread = self.unread_alone(user, upto, max).await;
                drop(permit);
                lead.finish(&unread);
                unread
            }
            Turn::Join(rx) => match shared_read::joined(rx).await {
                Some(unread) => unread,
                // The read was abandoned before it ran: read alone.
                None => {
                    let _permit = self.reader().await?;
                    self.unread_alone(user, upto, max).await
                }
            },
        }
    }

    async fn unread_alone(&self, user: &UserId, upto: Option<InboxSeq>, max: usize) -> Unread {
        let read = self.inner.store.unread(user, upto, max);
        let metrics = self.inner.bus.registry().metrics();
        let (items, unread) = timed(metrics, DbOp::InboxRead, read)
            .await
            .map_err(InboxError::store)?;
        Ok((Arc::new(items), unread))
    }

    /// One of the places for reads at the start of a stream (see
    /// `InboxState::backlog_readers`).
    async fn reader(&self) -> Result<tokio::sync::SemaphorePermit<'_>, InboxError> {
        self.inner
            .backlog_readers
            .acquire()
            .await
            .map_err(|_| InboxError::Stopped)
    }
}

fn write_summary(out: &mut Vec<u8>, start: StreamId, summary: &InboxSummary) {
    let data = serde_json::to_string(summary).unwrap_or_default();
    write_frame(
        out,
        Some(&start.to_string()),
        &EventName::reserved(InboxSummary::EVENT),
        &data,
    );
}

#[cfg(all(test, feature = "sqlite"))]
mod tests {
    use std::time::Duration;

    use serde::{Deserialize, Serialize};

    use crate::{Audience, BusConfig, InboxConfig, Notifier, SseConfig, SseEvent, UserId};

    #[derive(Serialize, Deserialize)]
    struct Note {
        n: u32,
    }

    impl SseEvent for Note {
        const NAME: &'static str = "note";
        const PERSISTENT: bool = true;
    }

    /// A backlog read whose request goes away while it waits for a reader
    /// slot lets the backlogs that joined it read on their own: they get
    /// every row, and nothing is left waiting.
    #[tokio::test]
    async fn joiners_of_an_abandoned_read_read_alone() {
        let dir = std::env::temp_dir().join(format!("backlog-test-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.join("inbox.db").display());
        let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
        crate::inbox::schema::migrate_sqlite(&pool).await.unwrap();
        let notifier = Notifier::start_with_inbox(
            SseConfig::default(),
            &BusConfig::default(),
            pool,
            InboxConfig::default(),
        )
        .unwrap();
        let user = UserId::new("u");
        for n in 0..3 {
            notifier
                .notify(Audience::user(user.clone()), &Note { n })
                .await
                .unwrap();
        }
        let inbox = notifier.inbox().unwrap().clone();
        // Every reader slot taken: both reads below wait.
        let slots = inbox.inner.backlog_readers.available_permits() as u32;
        let held = inbox
            .inner
            .backlog_readers
            .acquire_many(slots)
            .await
            .unwrap();
        let leader = {
            let (inbox, user) = (inbox.clone(), user.clone());
            tokio::spawn(async move { inbox.unread_shared(&user, None, 100).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        let joiner = {
            let (inbox, user) = (inbox.clone(), user.clone());
            tokio::spawn(async move { inbox.unread_shared(&user, None, 100).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(inbox.inner.backlog_reads.joiners(&user, None, 100), 1);
        leader.abort();
        assert!(leader.await.unwrap_err().is_cancelled());
        drop(held);
        let (rows, unread) = tokio::time::timeout(Duration::from_secs(5), joiner)
            .await
            .expect("the joiner is not left waiting")
            .unwrap()
            .unwrap();
        assert_eq!((rows.len(), unread), (3, 3));
        assert_eq!(inbox.inner.backlog_reads.waiting_len(), 0);
        let _ = std::fs::remove_dir_all(dir);
    }
}
