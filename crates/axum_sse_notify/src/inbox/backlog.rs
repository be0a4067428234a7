//! What a stream that starts without a position gets first: an `inbox`
//! summary, then the user's newest unread notifications, oldest first.
//!
//! The switch-over to live events: the client is registered (its queue
//! fills with live events) before the unread rows are read. A
//! notification committed before the read and published after the
//! registration is in both; the stream drops the live copy, recognised by
//! its inbox id ([`Backlog::ids`]). One published before the registration
//! was committed before the read, so it is in the rows: never neither.

use bytes::Bytes;

use super::types::{InboxId, InboxSummary};
use super::{Inbox, InboxError};
use crate::event::{EventName, write_frame};
use crate::event_id::EventId;
use crate::metrics::{DbOp, timed};
use crate::target::UserId;

/// The frames to write before live events, and the inbox ids they carry.
pub struct Backlog {
    pub frames: Bytes,
    pub ids: Vec<InboxId>,
}

impl Inbox {
    /// The backlog of a stream that starts at `start`: every frame has
    /// `start` as its position, so a reconnect resumes after it.
    pub async fn backlog(
        &self,
        user: &UserId,
        start: EventId,
        max: usize,
    ) -> Result<Backlog, InboxError> {
        let permit = self
            .inner
            .backlog_readers
            .acquire()
            .await
            .map_err(|_| InboxError::Stopped)?;
        let read = self.inner.store.unread(user, max);
        let metrics = self.inner.bus.registry().metrics();
        let (items, unread) = timed(metrics, DbOp::InboxRead, read)
            .await
            .map_err(InboxError::store)?;
        drop(permit);
        // A stored name that is no longer acceptable (e.g. reserved since)
        // stays in the inbox listing but is not streamed.
        let items: Vec<_> = items
            .into_iter()
            .filter_map(|item| Some((EventName::new(item.event.clone()).ok()?, item)))
            .collect();
        let start = start.to_string();
        let mut out = Vec::new();
        let summary = InboxSummary {
            unread,
            replayed: items.len() as u64,
            ..InboxSummary::default()
        };
        let data = serde_json::to_string(&summary).unwrap_or_default();
        write_frame(
            &mut out,
            Some(&start),
            &EventName::reserved(InboxSummary::EVENT),
            &data,
        );
        let mut ids = Vec::with_capacity(items.len());
        for (name, item) in items {
            let id = format!("{start}:{}", item.id);
            write_frame(&mut out, Some(&id), &name, &item.payload);
            ids.push(item.id);
        }
        Ok(Backlog {
            frames: Bytes::from(out),
            ids,
        })
    }
}
